/* models/tokenizer_hf.c - Hugging Face tokenizer.json files with a byte-level
 * BPE model (Llama 3, Qwen2/2.5/3, GPT-2's own tokenizer.json), loaded into
 * the tokenizer object of models/tokenizer.c so that they share its byte
 * alphabet, vocabulary map, merge map, merge loops and word cache.
 *
 * Reference behaviour is the Rust `tokenizers` library (0.22): encode(text)
 * splits the text on added tokens first (longest match at the leftmost
 * position), normalizes each remaining stretch, pre-tokenizes it, and runs
 * BPE on each piece; the post-processor's template is added only with
 * add_special_tokens. What is supported, field by field (anything else is
 * refused with a message naming the file and the field, because ids that
 * silently differ from the library's are worse than no tokenizer):
 *   model:          type "BPE"; vocab {token: id}; merges as "a b" strings or
 *                   ["a", "b"] arrays; ignore_merges; dropout null;
 *                   byte_fallback false; continuing_subword_prefix and
 *                   end_of_word_suffix null or "". All 256 bytes must be
 *                   tokens (byte-level), so unk_token is never used.
 *   added_tokens:   id, content, special; lstrip, rstrip, single_word false;
 *                   normalized true only without a normalizer (where it makes
 *                   no difference).
 *   normalizer:     null, or NFC (utf8proc; Qwen2/3).
 *   pre_tokenizer:  ByteLevel with use_regex (GPT-2's pattern), or Sequence
 *                   [Split(pattern, Isolated), ByteLevel(use_regex false)]
 *                   where the pattern is Llama 3's or Qwen2's, each run by a
 *                   hand-written scanner (no regex engine); add_prefix_space
 *                   false.
 *   post_processor: null, ByteLevel, TemplateProcessing (its "single"
 *                   template), or a Sequence of those.
 *   decoder:        ByteLevel. Decoding gives the raw bytes (the library
 *                   would replace invalid UTF-8 by U+FFFD).
 *   truncation, padding: null.
 * Special ids come from tokenizer_config.json beside the file (see
 * rl_tokenizer.h). The file may be gzip-compressed (zlib reads either).
 */
#include "rl_file.h"
#include "rl_tokenizer.h"
#include "tokenizer_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include <zlib.h>

/* The Split patterns known here, exactly as the published files spell them. */
static const char LLAMA3_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---- the Llama 3 / Qwen2 pre-tokenizer ------------------------------------ */

static inline int lower_is(uint8_t c, char want) { return (c | 0x20) == (uint8_t)want; }

/* One match of Llama 3's pattern (digits = 3) or Qwen2's (digits = 1) at pos:
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d) | [^\r\n\p{L}\p{N}]?\p{L}+ | \p{N}{1,digits}
 *   | ?[^\s\p{L}\p{N}]+[\r\n]* | \s*[\r\n]+ | \s+(?!\S) | \s+
 * tried in order as a backtracking engine (Oniguruma, in the library) does.
 * \s, \p{L} and \p{N} are those of rl_pretokenizer_next; Oniguruma's \s is
 * the same White_Space set. The alternatives cover every character, so the
 * matches tile the text and Split(Isolated) keeps each match as a piece. */
static size_t split_next(const uint8_t *s, size_t len, size_t pos, int digits) {
    if (s[pos] == '\'' && pos + 1 < len) {
        uint8_t a = s[pos + 1];
        if (lower_is(a, 's') || lower_is(a, 't') || lower_is(a, 'm') || lower_is(a, 'd')) return pos + 2;
        /* case-insensitive matching folds U+017F (long s) to s */
        if (a == 0xC5 && pos + 2 < len && s[pos + 2] == 0xBF) return pos + 3;
        if (pos + 2 < len) {
            uint8_t b = s[pos + 2];
            if ((lower_is(a, 'r') && lower_is(b, 'e')) || (lower_is(a, 'v') && lower_is(b, 'e')) ||
                (lower_is(a, 'l') && lower_is(b, 'l')))
                return pos + 3;
        }
    }
    size_t w;
    int cl = rl_tok_char_class(s, len, pos, &w);
    if (cl == CL_LETTER) return rl_tok_run_end(s, len, pos + w, CL_LETTER);
    /* [^\r\n\p{L}\p{N}]?\p{L}+: any one other character (space, tab,
     * punctuation) joins the letters after it */
    if (cl != CL_NUMBER && s[pos] != '\r' && s[pos] != '\n' && pos + w < len) {
        size_t w1;
        if (rl_tok_char_class(s, len, pos + w, &w1) == CL_LETTER)
            return rl_tok_run_end(s, len, pos + w + w1, CL_LETTER);
    }
    if (cl == CL_NUMBER) {
        size_t e = pos + w;
        for (int k = 1; k < digits && e < len; k++) {
            size_t w2;
            if (rl_tok_char_class(s, len, e, &w2) != CL_NUMBER) break;
            e += w2;
        }
        return e;
    }
    /* " ?[^\s\p{L}\p{N}]+[\r\n]*": symbols, with one leading space and the
     * line breaks right after them */
    size_t q = pos;
    int cq = cl;
    if (s[pos] == ' ' && pos + 1 < len) {
        size_t w1;
        if (rl_tok_char_class(s, len, pos + 1, &w1) == CL_OTHER) { q = pos + 1; cq = CL_OTHER; }
    }
    if (cq == CL_OTHER) {
        size_t e = rl_tok_run_end(s, len, q, CL_OTHER);
        while (e < len && (s[e] == '\r' || s[e] == '\n')) e++;
        return e;
    }
    /* whitespace: the run [pos, e) */
    size_t last = pos, e = pos, after_nl = 0;
    while (e < len) {
        size_t w2;
        if (rl_tok_char_class(s, len, e, &w2) != CL_SPACE) break;
        if (s[e] == '\r' || s[e] == '\n') after_nl = e + 1;
        last = e;
        e += w2;
    }
    /* \s*[\r\n]+: backtracking gives the run up to its last line break */
    if (after_nl) return after_nl;
    /* \s+(?!\S): all of it at the end of the text, else all but the last */
    if (e == len || last == pos) return e;
    return last;
}

/* ---- encoding ---------------------------------------------------------------- */

/* text[0..len) with each stretch of valid UTF-8 in NFC, into tok->hf.norm;
 * invalid bytes (which the library never sees: it takes Rust strings) are
 * kept as they are. The length, or -1 when out of memory. */
static long nfc_into(rl_tokenizer *tok, const char *text, size_t len) {
    size_t o = 0;
    for (size_t p = 0; p < len;) {
        size_t q = p;
        while (q < len) { /* the valid run [p, q) */
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)text + q, (utf8proc_ssize_t)(len - q), &cp);
            if (k <= 0) break;
            q += (size_t)k;
        }
        utf8proc_uint8_t *m = NULL;
        utf8proc_ssize_t ml = 0;
        if (q > p) {
            ml = utf8proc_map((const utf8proc_uint8_t *)text + p, (utf8proc_ssize_t)(q - p), &m,
                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (ml < 0) return -1; /* valid input: only memory can fail */
        }
        size_t need = o + (size_t)ml + 1;
        if (need > tok->hf.norm_cap) {
            size_t c = tok->hf.norm_cap ? tok->hf.norm_cap : 256;
            while (c < need) c *= 2;
            char *nb = realloc(tok->hf.norm, c);
            if (!nb) { free(m); return -1; }
            tok->hf.norm = nb;
            tok->hf.norm_cap = c;
        }
        if (ml) memcpy(tok->hf.norm + o, m, (size_t)ml);
        free(m);
        o += (size_t)ml;
        if (q < len) tok->hf.norm[o++] = text[q++]; /* one invalid byte */
        p = q;
    }
    return (long)o;
}

/* Normalizes, pre-tokenizes and merges a stretch without added tokens. */
static int encode_stretch(rl_tokenizer *tok, const char *s, size_t len, rl_tok_ids *b) {
    if (len == 0) return 0;
    if (tok->hf.nfc) {
        int ascii = 1; /* ASCII is its own NFC */
        for (size_t i = 0; i < len && ascii; i++) ascii = (uint8_t)s[i] < 0x80;
        if (!ascii) {
            long n = nfc_into(tok, s, len);
            if (n < 0) return -1;
            s = tok->hf.norm;
            len = (size_t)n;
        }
    }
    const uint8_t *u = (const uint8_t *)s;
    for (size_t p = 0; p < len;) {
        size_t e = tok->hf.split == RL_TOK_SPLIT_GPT2    ? rl_pretokenizer_next(s, len, p)
                   : tok->hf.split == RL_TOK_SPLIT_LLAMA3 ? split_next(u, len, p, 3)
                                                          : split_next(u, len, p, 1);
        if (rl_tok_ids_reserve(b, e - p) != 0) return -1;
        int32_t whole = tok->hf.ignore_merges && e - p > 1 ? rl_tok_lookup(tok, s + p, e - p) : -1;
        if (whole >= 0) {
            b->v[b->n++] = whole;
        } else {
            long k = rl_tok_bpe_word(tok, s + p, e - p, b->v + b->n);
            if (k < 0) return -1;
            b->n += (size_t)k;
        }
        p = e;
    }
    return 0;
}

static int append_ids(rl_tok_ids *b, const int32_t *ids, size_t n) {
    if (n == 0) return 0;
    if (rl_tok_ids_reserve(b, n) != 0) return -1;
    memcpy(b->v + b->n, ids, n * sizeof *ids);
    b->n += n;
    return 0;
}

int rl_tok_hf_encode(rl_tokenizer *tok, const char *text, size_t len, unsigned flags, rl_tok_ids *b) {
    const rl_tok_hf *hf = &tok->hf;
    if ((flags & RL_TOKENIZE_ADD_BOS) && append_ids(b, hf->prefix, hf->nprefix) != 0) return -1;
    int all = (flags & RL_TOKENIZE_SPECIAL) != 0;
    size_t start = 0;
    for (size_t p = 0; p < len;) {
        uint8_t c = (uint8_t)text[p];
        int hit = -1;
        /* the candidates are sorted longest first: the first hit is the
         * longest match at the leftmost position */
        for (uint32_t k = hf->first[c]; k < hf->first[c + 1]; k++) {
            const special_tok *sp = &tok->special[k];
            if (sp->is_special && !all) continue;
            if (sp->len <= len - p && memcmp(text + p, sp->text, sp->len) == 0) { hit = (int)k; break; }
        }
        if (hit < 0) { p++; continue; }
        if (encode_stretch(tok, text + start, p - start, b) != 0 || rl_tok_ids_reserve(b, 1) != 0) return -1;
        b->v[b->n++] = tok->special[hit].id;
        p += tok->special[hit].len;
        start = p;
    }
    if (encode_stretch(tok, text + start, len - start, b) != 0) return -1;
    if ((flags & RL_TOKENIZE_ADD_BOS) && append_ids(b, hf->suffix, hf->nsuffix) != 0) return -1;
    return 0;
}

/* ---- loading -------------------------------------------------------------------- */

/* The whole file, plain or gzip (zlib reads plain files as they are). */
static char *read_all(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        rl_errf(err, errlen, RL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    fclose(probe);
    gzFile f = gzopen(path, "rb");
    if (!f) {
        rl_errf(err, errlen, RL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    for (;;) {
        if (!buf) break;
        if (n == cap) {
            char *nb = cap < ((size_t)1 << 31) ? realloc(buf, 2 * cap + 1) : NULL;
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        unsigned want = (unsigned)(cap - n < (1u << 30) ? cap - n : (1u << 30));
        int k = gzread(f, buf + n, want);
        if (k < 0) break;
        if (k == 0) break;
        n += (size_t)k;
    }
    if (!buf) {
        gzclose(f);
        rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory reading the file", path);
        return NULL;
    }
    int zerr = Z_OK;
    const char *zm = gzerror(f, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) { /* a truncated gzip stream ends in Z_BUF_ERROR */
        rl_errf(err, errlen, RL_ERR_IO, "%s: cannot read: %s (a truncated or corrupt gzip file?)", path,
                zerr == Z_ERRNO ? strerror(errno) : zm);
        gzclose(f);
        free(buf);
        return NULL;
    }
    gzclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

typedef struct {
    const char *path;
    char *err;
    size_t errlen;
    char b1[200], b2[200];
} hf_load;

static int hf_fail(hf_load *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int hf_fail(hf_load *L, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rl_errf(L->err, L->errlen, RL_ERR_ARG, "%s: %s", L->path, msg);
    return -1;
}

/* A boolean field: absent or null gives def; -1 when it is not a boolean. */
static int get_bool(json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return def;
    return json_is_boolean(v) ? json_is_true(v) : -1;
}

static const char *get_str(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

/* A field that must be absent, null, or the empty string. */
static int null_or_empty(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    return !v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0);
}

static int cmp_added(const void *a, const void *b) {
    const special_tok *x = a, *y = b;
    uint8_t cx = (uint8_t)x->text[0], cy = (uint8_t)y->text[0];
    if (cx != cy) return cx < cy ? -1 : 1;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id - y->id;
}

/* The vocabulary, the added tokens and the pool of every id's bytes. */
static int load_tokens(rl_tokenizer *tok, hf_load *L, json_t *model, json_t *added, int have_normalizer) {
    uint32_t byte_to_cp[256];
    int16_t cp_to_byte[324];
    rl_tok_byte_alphabet(byte_to_cp, cp_to_byte);
    json_t *vocab = json_object_get(model, "vocab");
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return hf_fail(L, "model.vocab: expected a non-empty object {\"token\": id, ...}");
    if (added && !json_is_null(added) && !json_is_array(added))
        return hf_fail(L, "added_tokens: expected an array");
    size_t nadded = json_is_array(added) ? json_array_size(added) : 0;
    /* The number of ids: one more than the largest. */
    json_int_t maxid = -1;
    const char *key;
    json_t *val;
    json_object_foreach(vocab, key, val) {
        if (!json_is_integer(val) || json_integer_value(val) < 0 || json_integer_value(val) >= (1 << 24))
            return hf_fail(L, "model.vocab: the id of \"%s\" is not an integer in [0, 16777216)",
                           rl_tok_show(key, strlen(key), L->b1, sizeof L->b1));
        if (json_integer_value(val) > maxid) maxid = json_integer_value(val);
    }
    for (size_t i = 0; i < nadded; i++) {
        json_t *a = json_array_get(added, i), *id = json_object_get(a, "id");
        json_t *content = json_object_get(a, "content");
        if (!json_is_object(a) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (1 << 24) || !json_is_string(content) || json_string_length(content) == 0)
            return hf_fail(L, "added_tokens[%zu]: expected {\"id\": integer in [0, 16777216), \"content\": "
                           "non-empty string, ...}", i);
        if (json_integer_value(id) > maxid) maxid = json_integer_value(id);
        static const char *const off_flags[] = {"lstrip", "rstrip", "single_word"};
        for (int k = 0; k < 3; k++) {
            int v = get_bool(a, off_flags[k], 0);
            if (v != 0)
                return hf_fail(L, "added_tokens[%zu] (\"%s\"): %s is %s; only false is supported", i,
                               rl_tok_show(json_string_value(content), json_string_length(content), L->b1, sizeof L->b1),
                               off_flags[k], v < 0 ? "not a boolean" : "true");
        }
        int norm = get_bool(a, "normalized", 0), special = get_bool(a, "special", 0);
        if (norm < 0 || special < 0)
            return hf_fail(L, "added_tokens[%zu]: normalized and special must be booleans", i);
        if (norm && have_normalizer)
            return hf_fail(L, "added_tokens[%zu] (\"%s\"): normalized true with a normalizer is not supported "
                           "(tokens matched after normalization)", i,
                           rl_tok_show(json_string_value(content), json_string_length(content), L->b1, sizeof L->b1));
    }
    size_t n = (size_t)maxid + 1;
    int rc = -1;
    const char **src = calloc(n, sizeof *src);
    uint32_t *slen = calloc(n, sizeof *slen);
    uint8_t *from = calloc(n, 1); /* 1: model.vocab, 2: added_tokens only */
    tok->special = calloc(nadded + 1, sizeof *tok->special);
    tok->off = calloc(n + 1, sizeof *tok->off);
    if (!src || !slen || !from || !tok->special || !tok->off) {
        rl_errf(L->err, L->errlen, RL_ERR_MEMORY, "%s: out of memory", L->path);
        goto out;
    }
    size_t total = 0;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (from[id]) {
            hf_fail(L, "model.vocab: id %lld is given to two tokens (one is \"%s\")", (long long)id,
                    rl_tok_show(key, strlen(key), L->b1, sizeof L->b1));
            goto out;
        }
        from[id] = 1;
        src[id] = key;
        slen[id] = (uint32_t)strlen(key);
        total += slen[id];
    }
    for (size_t i = 0; i < nadded; i++) {
        json_t *a = json_array_get(added, i), *content = json_object_get(a, "content");
        json_int_t id = json_integer_value(json_object_get(a, "id"));
        if (from[id] == 2) {
            hf_fail(L, "added_tokens[%zu]: id %lld is given to two added tokens", i, (long long)id);
            goto out;
        }
        if (from[id] == 0) {
            from[id] = 2;
            src[id] = json_string_value(content);
            slen[id] = (uint32_t)json_string_length(content);
            total += slen[id];
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!from[i]) {
            hf_fail(L, "id %zu has no token (neither in model.vocab nor in added_tokens); ids must be 0..N-1", i);
            goto out;
        }
    tok->vocab_size = (int32_t)n;
    tok->pool = malloc(total + 1);
    if (!tok->pool) { rl_errf(L->err, L->errlen, RL_ERR_MEMORY, "%s: out of memory", L->path); goto out; }
    uint32_t o = 0;
    for (size_t i = 0; i < n; i++) {
        tok->off[i] = o;
        if (from[i] == 2) { /* added tokens are raw text, not the byte alphabet */
            memcpy(tok->pool + o, src[i], slen[i]);
            o += slen[i];
            continue;
        }
        long bad = 0;
        long r = rl_tok_alphabet_to_bytes(cp_to_byte, src[i], slen[i], (uint8_t *)tok->pool + o, &bad);
        if (r < 0) {
            if (bad < 0) hf_fail(L, "model.vocab: token \"%s\" (id %zu) is not valid UTF-8", rl_tok_show(src[i], slen[i], L->b1, sizeof L->b1), i);
            else hf_fail(L, "model.vocab: token \"%s\" (id %zu) has the character U+%04lX, which is not in the "
                         "byte-level alphabet (is this a byte-level BPE?)", rl_tok_show(src[i], slen[i], L->b1, sizeof L->b1), i,
                         (unsigned long)bad);
            goto out;
        }
        o += (uint32_t)r;
    }
    tok->off[n] = o;
    tok->tok_cap = rl_tok_pow2(2 * n);
    tok->tok_map = malloc(tok->tok_cap * sizeof *tok->tok_map);
    if (!tok->tok_map) { rl_errf(L->err, L->errlen, RL_ERR_MEMORY, "%s: out of memory", L->path); goto out; }
    memset(tok->tok_map, 0xff, tok->tok_cap * sizeof *tok->tok_map);
    /* only model.vocab: the BPE never produces an added token */
    for (size_t i = 0; i < n; i++)
        if (from[i] == 1) {
            uint32_t l = tok->off[i + 1] - tok->off[i];
            if (rl_tok_lookup(tok, tok->pool + tok->off[i], l) >= 0) {
                hf_fail(L, "model.vocab: two tokens stand for the same bytes (one is id %zu)", i);
                goto out;
            }
            rl_tok_insert(tok, (int32_t)i);
        }
    for (int c = 0; c < 256; c++) {
        uint8_t ch = (uint8_t)c;
        tok->byte_id[c] = rl_tok_lookup(tok, &ch, 1);
        if (tok->byte_id[c] < 0) {
            utf8proc_uint8_t u[8];
            utf8proc_ssize_t ul = utf8proc_encode_char((utf8proc_int32_t)byte_to_cp[c], u);
            u[ul] = 0;
            hf_fail(L, "model.vocab: has no token for byte 0x%02X (\"%s\"); a byte-level BPE needs all 256 bytes",
                    c, (char *)u);
            goto out;
        }
    }
    /* The added tokens, for matching in the text. One that is also in the
     * vocabulary (GPT-2's <|endoftext|>) must be the same bytes there. */
    for (size_t i = 0; i < nadded; i++) {
        json_t *a = json_array_get(added, i), *content = json_object_get(a, "content");
        int32_t id = (int32_t)json_integer_value(json_object_get(a, "id"));
        uint32_t l = (uint32_t)json_string_length(content);
        if (tok->off[id + 1] - tok->off[id] != l || memcmp(tok->pool + tok->off[id], json_string_value(content), l) != 0) {
            hf_fail(L, "added_tokens[%zu]: \"%s\" has id %ld, which model.vocab gives to another token", i,
                    rl_tok_show(json_string_value(content), l, L->b1, sizeof L->b1), (long)id);
            goto out;
        }
        tok->special[tok->nspecial++] =
            (special_tok){id, l, tok->pool + tok->off[id], get_bool(a, "special", 0) == 1};
    }
    qsort(tok->special, (size_t)tok->nspecial, sizeof *tok->special, cmp_added);
    {
        int k = 0;
        for (int c = 0; c <= 256; c++) {
            while (k < tok->nspecial && (uint8_t)tok->special[k].text[0] < c) k++;
            tok->hf.first[c] = (uint32_t)k;
        }
        tok->hf.first[256] = (uint32_t)tok->nspecial;
    }
    rc = 0;
out:
    free(src);
    free(slen);
    free(from);
    return rc;
}

static int load_merges(rl_tokenizer *tok, hf_load *L, json_t *model) {
    uint32_t byte_to_cp[256];
    int16_t cp_to_byte[324];
    rl_tok_byte_alphabet(byte_to_cp, cp_to_byte);
    json_t *merges = json_object_get(model, "merges");
    if (!json_is_array(merges)) return hf_fail(L, "model.merges: expected an array");
    size_t n = json_array_size(merges);
    tok->merge_cap = rl_tok_pow2(2 * n + 2);
    tok->merges = malloc(tok->merge_cap * sizeof *tok->merges);
    if (!tok->merges) {
        rl_errf(L->err, L->errlen, RL_ERR_MEMORY, "%s: out of memory", L->path);
        return -1;
    }
    memset(tok->merges, 0xff, tok->merge_cap * sizeof *tok->merges);
    uint8_t *raw = NULL;
    size_t raw_cap = 0;
    int rc = -1;
    for (size_t i = 0; i < n; i++) {
        json_t *m = json_array_get(merges, i);
        const char *part[2];
        size_t plen[2];
        if (json_is_string(m)) { /* "a b" */
            const char *s = json_string_value(m);
            size_t l = json_string_length(m);
            const char *sp = memchr(s, ' ', l);
            if (!sp || sp == s || sp + 1 == s + l || memchr(sp + 1, ' ', l - (size_t)(sp - s) - 1)) {
                hf_fail(L, "model.merges[%zu]: \"%s\" is not two tokens separated by one space", i,
                        rl_tok_show(s, l, L->b1, sizeof L->b1));
                goto out;
            }
            part[0] = s;
            plen[0] = (size_t)(sp - s);
            part[1] = sp + 1;
            plen[1] = l - plen[0] - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) { /* ["a", "b"] */
            for (int k = 0; k < 2; k++) {
                part[k] = json_string_value(json_array_get(m, k));
                plen[k] = json_string_length(json_array_get(m, k));
            }
        } else {
            hf_fail(L, "model.merges[%zu]: expected \"a b\" or [\"a\", \"b\"]", i);
            goto out;
        }
        if (plen[0] + plen[1] > raw_cap) {
            raw_cap = 2 * (plen[0] + plen[1]) + 64;
            free(raw);
            raw = malloc(raw_cap);
            if (!raw) { rl_errf(L->err, L->errlen, RL_ERR_MEMORY, "%s: out of memory", L->path); goto out; }
        }
        int32_t ids[3];
        size_t rl[2] = {0, 0};
        for (int k = 0; k < 2; k++) {
            long bad = 0;
            long r = rl_tok_alphabet_to_bytes(cp_to_byte, part[k], plen[k], raw + (k ? rl[0] : 0), &bad);
            ids[k] = r < 0 ? -1 : rl_tok_lookup(tok, raw + (k ? rl[0] : 0), (size_t)r);
            if (ids[k] < 0) {
                hf_fail(L, "model.merges[%zu]: \"%s\" is not in model.vocab", i,
                        rl_tok_show(part[k], plen[k], L->b1, sizeof L->b1));
                goto out;
            }
            rl[k] = (size_t)r;
        }
        ids[2] = rl_tok_lookup(tok, raw, rl[0] + rl[1]);
        if (ids[2] < 0) {
            hf_fail(L, "model.merges[%zu]: the merge of \"%s\" and \"%s\" is not in model.vocab", i,
                    rl_tok_show(part[0], plen[0], L->b1, sizeof L->b1), rl_tok_show(part[1], plen[1], L->b2, sizeof L->b2));
            goto out;
        }
        rl_tok_merge_insert(tok, ids[0], ids[1], (int32_t)i, ids[2]);
    }
    rc = 0;
out:
    free(raw);
    return rc;
}

static int check_model(hf_load *L, json_t *model, int *ignore_merges) {
    if (!json_is_object(model)) return hf_fail(L, "model: expected an object");
    const char *type = get_str(model, "type");
    if (!type) return hf_fail(L, "model.type: missing (only \"BPE\" is supported)");
    if (strcmp(type, "BPE") != 0) return hf_fail(L, "model.type: \"%s\" is not supported (only \"BPE\")", type);
    json_t *dropout = json_object_get(model, "dropout");
    if (dropout && !json_is_null(dropout)) return hf_fail(L, "model.dropout: only null is supported");
    if (get_bool(model, "byte_fallback", 0) != 0) return hf_fail(L, "model.byte_fallback: only false is supported");
    if (!null_or_empty(model, "continuing_subword_prefix"))
        return hf_fail(L, "model.continuing_subword_prefix: only null or \"\" is supported");
    if (!null_or_empty(model, "end_of_word_suffix"))
        return hf_fail(L, "model.end_of_word_suffix: only null or \"\" is supported");
    *ignore_merges = get_bool(model, "ignore_merges", 0);
    if (*ignore_merges < 0) return hf_fail(L, "model.ignore_merges: expected a boolean");
    return 0;
}

/* ByteLevel as the pre-tokenizer: add_prefix_space false, use_regex as given. */
static int check_byte_level(hf_load *L, json_t *b, const char *where, int *use_regex) {
    if (get_bool(b, "add_prefix_space", 0) != 0)
        return hf_fail(L, "%s.add_prefix_space: only false is supported", where);
    *use_regex = get_bool(b, "use_regex", 1);
    if (*use_regex < 0) return hf_fail(L, "%s.use_regex: expected a boolean", where);
    return 0;
}

static int check_pre_tokenizer(rl_tokenizer *tok, hf_load *L, json_t *pt) {
    const char *type = json_is_object(pt) ? get_str(pt, "type") : NULL;
    if (!type) return hf_fail(L, "pre_tokenizer: expected a ByteLevel or a Sequence [Split, ByteLevel]");
    int use_regex;
    if (strcmp(type, "ByteLevel") == 0) {
        if (check_byte_level(L, pt, "pre_tokenizer", &use_regex) != 0) return -1;
        if (!use_regex) return hf_fail(L, "pre_tokenizer.use_regex: a ByteLevel alone must use its regex");
        tok->hf.split = RL_TOK_SPLIT_GPT2;
        return 0;
    }
    json_t *list = json_object_get(pt, "pretokenizers");
    if (strcmp(type, "Sequence") != 0 || !json_is_array(list) || json_array_size(list) != 2)
        return hf_fail(L, "pre_tokenizer: type \"%s\" is not supported (ByteLevel, or a Sequence of Split and "
                       "ByteLevel)", type);
    json_t *split = json_array_get(list, 0), *bl = json_array_get(list, 1);
    const char *t0 = json_is_object(split) ? get_str(split, "type") : NULL;
    const char *t1 = json_is_object(bl) ? get_str(bl, "type") : NULL;
    if (!t0 || !t1 || strcmp(t0, "Split") != 0 || strcmp(t1, "ByteLevel") != 0)
        return hf_fail(L, "pre_tokenizer.pretokenizers: expected [Split, ByteLevel], got [%s, %s]",
                       t0 ? t0 : "?", t1 ? t1 : "?");
    if (check_byte_level(L, bl, "pre_tokenizer.pretokenizers[1]", &use_regex) != 0) return -1;
    if (use_regex) return hf_fail(L, "pre_tokenizer.pretokenizers[1].use_regex: only false is supported after a Split");
    const char *behavior = get_str(split, "behavior");
    if (!behavior || strcmp(behavior, "Isolated") != 0)
        return hf_fail(L, "pre_tokenizer.pretokenizers[0].behavior: \"%s\" is not supported (only \"Isolated\")",
                       behavior ? behavior : "?");
    if (get_bool(split, "invert", 0) != 0)
        return hf_fail(L, "pre_tokenizer.pretokenizers[0].invert: only false is supported");
    json_t *pat = json_object_get(split, "pattern");
    const char *re = json_is_object(pat) ? get_str(pat, "Regex") : NULL;
    if (!re) return hf_fail(L, "pre_tokenizer.pretokenizers[0].pattern: expected {\"Regex\": ...}");
    if (strcmp(re, LLAMA3_PATTERN) == 0) tok->hf.split = RL_TOK_SPLIT_LLAMA3;
    else if (strcmp(re, QWEN2_PATTERN) == 0) tok->hf.split = RL_TOK_SPLIT_QWEN2;
    else
        return hf_fail(L, "pre_tokenizer.pretokenizers[0].pattern: the regex \"%.300s\" is not one of the known "
                       "patterns (Llama 3's, Qwen2's); there is no general regex engine here", re);
    return 0;
}

/* Appends the ids of a TemplateProcessing "single" template around $A. */
static int load_template(rl_tokenizer *tok, hf_load *L, json_t *tp, const char *where) {
    json_t *single = json_object_get(tp, "single"), *specials = json_object_get(tp, "special_tokens");
    if (!json_is_array(single)) return hf_fail(L, "%s.single: expected an array", where);
    int seen_a = 0;
    for (size_t i = 0; i < json_array_size(single); i++) {
        json_t *it = json_array_get(single, i), *st = json_object_get(it, "SpecialToken");
        if (json_is_object(json_object_get(it, "Sequence"))) {
            const char *id = get_str(json_object_get(it, "Sequence"), "id");
            if (!id || strcmp(id, "A") != 0 || seen_a)
                return hf_fail(L, "%s.single[%zu]: only one Sequence, \"A\", is supported", where, i);
            seen_a = 1;
            continue;
        }
        const char *name = json_is_object(st) ? get_str(st, "id") : NULL;
        json_t *def = name ? json_object_get(specials, name) : NULL;
        json_t *ids = json_object_get(def, "ids");
        if (!name || !json_is_array(ids))
            return hf_fail(L, "%s.single[%zu]: expected a SpecialToken listed in special_tokens with its ids", where, i);
        size_t k = json_array_size(ids);
        int32_t **dst = seen_a ? &tok->hf.suffix : &tok->hf.prefix;
        size_t *dn = seen_a ? &tok->hf.nsuffix : &tok->hf.nprefix;
        int32_t *nv = realloc(*dst, (*dn + k + 1) * sizeof *nv);
        if (!nv) { rl_errf(L->err, L->errlen, RL_ERR_MEMORY, "%s: out of memory", L->path); return -1; }
        *dst = nv;
        for (size_t j = 0; j < k; j++) {
            json_t *v = json_array_get(ids, j);
            if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= tok->vocab_size)
                return hf_fail(L, "%s.special_tokens[\"%s\"].ids[%zu]: not an id of this tokenizer", where, name, j);
            nv[(*dn)++] = (int32_t)json_integer_value(v);
        }
    }
    if (!seen_a) return hf_fail(L, "%s.single: has no Sequence \"A\"", where);
    return 0;
}

static int check_post_processor(rl_tokenizer *tok, hf_load *L, json_t *pp, const char *where) {
    if (!pp || json_is_null(pp)) return 0;
    const char *type = json_is_object(pp) ? get_str(pp, "type") : NULL;
    if (!type) return hf_fail(L, "%s: expected an object with a type", where);
    if (strcmp(type, "ByteLevel") == 0) return 0; /* offsets only */
    if (strcmp(type, "TemplateProcessing") == 0) return load_template(tok, L, pp, where);
    if (strcmp(type, "Sequence") == 0) {
        json_t *list = json_object_get(pp, "processors");
        if (!json_is_array(list)) return hf_fail(L, "%s.processors: expected an array", where);
        for (size_t i = 0; i < json_array_size(list); i++) {
            char w[96];
            snprintf(w, sizeof w, "%s.processors[%zu]", where, i);
            if (check_post_processor(tok, L, json_array_get(list, i), w) != 0) return -1;
        }
        return 0;
    }
    return hf_fail(L, "%s: type \"%s\" is not supported (ByteLevel, TemplateProcessing, Sequence)", where, type);
}

/* tokenizer_config.json's eos_token etc.: a string, {"content": ...}, or null
 * (none: no fallback either). 1 when the field is there, 0 when not, -1 on error. */
static int config_token(rl_tokenizer *tok, json_t *cfg, const char *cfg_path, const char *field, int32_t *id,
                        char *err, size_t errlen) {
    json_t *v = json_object_get(cfg, field);
    if (!v) return 0;
    if (json_is_null(v)) return 1;
    if (json_is_object(v)) v = json_object_get(v, "content");
    if (!json_is_string(v)) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: %s: expected a string, {\"content\": string} or null", cfg_path, field);
        return -1;
    }
    int32_t t = rl_tokenizer_token_id(tok, json_string_value(v), json_string_length(v));
    if (t < 0) {
        char b[200];
        rl_errf(err, errlen, RL_ERR_ARG, "%s: %s \"%s\" is not a token of the tokenizer.json beside it", cfg_path,
                field, rl_tok_show(json_string_value(v), json_string_length(v), b, sizeof b));
        return -1;
    }
    *id = t;
    return 1;
}

/* The first of names among the added tokens (not the vocabulary: Qwen's BPE
 * has an ordinary token "<s>"). */
static int32_t first_token(const rl_tokenizer *tok, const char *const *names) {
    for (; *names; names++)
        for (int k = 0; k < tok->nspecial; k++)
            if (tok->special[k].len == strlen(*names) && memcmp(tok->special[k].text, *names, tok->special[k].len) == 0)
                return tok->special[k].id;
    return -1;
}

static int load_special_ids(rl_tokenizer *tok, const char *path, char *err, size_t errlen) {
    static const char *const eos_names[] = {"<|endoftext|>", "<|end_of_text|>", "</s>", NULL};
    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", NULL};
    tok->eos_id = tok->bos_id = tok->pad_id = -1;
    const char *slash = strrchr(path, '/');
    size_t dl = slash ? (size_t)(slash - path) + 1 : 0;
    char *cfg_path = malloc(dl + 32);
    if (!cfg_path) { rl_errf(err, errlen, RL_ERR_MEMORY, "out of memory"); return -1; }
    memcpy(cfg_path, path, dl);
    strcpy(cfg_path + dl, "tokenizer_config.json");
    int rc = -1, have_eos = 0, have_bos = 0, have_pad = 0;
    FILE *probe = fopen(cfg_path, "rb");
    if (probe) {
        fclose(probe);
        json_error_t je;
        /* transformers writes model_max_length as 1e30 in full: too big an integer for jansson */
        json_t *cfg = json_load_file(cfg_path, JSON_DECODE_INT_AS_REAL, &je);
        if (!cfg || !json_is_object(cfg)) {
            rl_errf(err, errlen, RL_ERR_ARG, "%s: not a valid JSON object: %s (line %d, column %d)", cfg_path,
                    cfg ? "not an object" : je.text, cfg ? 1 : je.line, cfg ? 1 : je.column);
            json_decref(cfg);
            goto out;
        }
        have_eos = config_token(tok, cfg, cfg_path, "eos_token", &tok->eos_id, err, errlen);
        have_bos = have_eos < 0 ? -1 : config_token(tok, cfg, cfg_path, "bos_token", &tok->bos_id, err, errlen);
        have_pad = have_bos < 0 ? -1 : config_token(tok, cfg, cfg_path, "pad_token", &tok->pad_id, err, errlen);
        json_decref(cfg);
        if (have_pad < 0) goto out;
    }
    /* eos cannot be missing (the pipeline ends sequences with it) */
    if (tok->eos_id < 0) tok->eos_id = first_token(tok, eos_names);
    if (!have_bos) tok->bos_id = first_token(tok, bos_names);
    (void)have_pad;
    if (tok->eos_id < 0) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: no end-of-sequence token: give eos_token in %s, or have one of "
                "<|endoftext|>, <|end_of_text|>, </s> among the tokens", path, cfg_path);
        goto out;
    }
    if (tok->pad_id < 0) tok->pad_id = tok->eos_id;
    rc = 0;
out:
    free(cfg_path);
    return rc;
}

rl_tokenizer *rl_tokenizer_hf_load(const char *path, char *err, size_t errlen) {
    rl_errf(err, errlen, RL_ERR_ARG, "%s", "");
    if (!path) {
        rl_errf(err, errlen, RL_ERR_ARG, "rl_tokenizer_hf_load: path is NULL");
        return NULL;
    }
    size_t len;
    char *text = read_all(path, &len, err, errlen);
    if (!text) return NULL;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: not valid JSON: %s (line %d, column %d)", path, je.text, je.line,
                je.column);
        return NULL;
    }
    rl_tokenizer *tok = calloc(1, sizeof *tok);
    hf_load L = {.path = path, .err = err, .errlen = errlen};
    int ok = 0;
    if (!tok) {
        rl_errf(err, errlen, RL_ERR_MEMORY, "out of memory");
        goto out;
    }
    tok->kind = RL_TOKENIZER_BPE;
    tok->hf.on = 1;
    if (!json_is_object(root)) { hf_fail(&L, "not a JSON object"); goto out; }
    static const char *const unset[] = {"truncation", "padding"};
    for (int k = 0; k < 2; k++) {
        json_t *v = json_object_get(root, unset[k]);
        if (v && !json_is_null(v)) {
            hf_fail(&L, "%s: only null is supported (it changes the ids of every encode)", unset[k]);
            goto out;
        }
    }
    json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        const char *t = json_is_object(norm) ? get_str(norm, "type") : NULL;
        if (!t || strcmp(t, "NFC") != 0) {
            hf_fail(&L, "normalizer: type \"%s\" is not supported (null or NFC)", t ? t : "?");
            goto out;
        }
        tok->hf.nfc = 1;
    }
    json_t *model = json_object_get(root, "model");
    if (check_model(&L, model, &tok->hf.ignore_merges) != 0) goto out;
    if (check_pre_tokenizer(tok, &L, json_object_get(root, "pre_tokenizer")) != 0) goto out;
    json_t *dec = json_object_get(root, "decoder");
    const char *dt = json_is_object(dec) ? get_str(dec, "type") : NULL;
    if (!dt || strcmp(dt, "ByteLevel") != 0) {
        hf_fail(&L, "decoder: type \"%s\" is not supported (only ByteLevel)", dt ? dt : "null");
        goto out;
    }
    if (load_tokens(tok, &L, model, json_object_get(root, "added_tokens"), tok->hf.nfc) != 0) goto out;
    if (load_merges(tok, &L, model) != 0) goto out;
    if (check_post_processor(tok, &L, json_object_get(root, "post_processor"), "post_processor") != 0) goto out;
    if (load_special_ids(tok, path, err, errlen) != 0) goto out;
    ok = 1;
out:
    json_decref(root);
    if (!ok) {
        rl_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}
