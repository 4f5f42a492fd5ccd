/* models/tokenizer.c - the tokenizers of rl_tokenizer.h: byte-level, and
 * GPT-2's byte-level BPE (vocab.json + merges.txt), with GPT-2's
 * pre-tokenizer written as a hand-made scanner (no regex library).
 *
 * Reference behaviour is OpenAI's gpt-2/src/encoder.py: bytes_to_unicode(),
 * the pre-tokenizer pattern, and Encoder.bpe(), which repeatedly takes the
 * adjacent pair with the lowest merge rank and merges all its occurrences
 * left to right. Here the merge runs on token ids, with merges looked up in
 * a hash map keyed by the pair of ids: short words keep their pairs' ranks in
 * an array (bpe_merge_small), long ones use a priority queue so that a long
 * run of letters costs O(n log n) (bpe_merge_heap), and a word cache skips
 * the merging of words seen recently, as encoder.py's self.cache does. The
 * plain loop of encoder.py is kept as a reference mode the tests compare
 * against (bpe_merge_reference).
 *
 * This BPE core is shared through tokenizer_internal.h with tokenizer_hf.c,
 * which loads Hugging Face tokenizer.json files into the same object; the
 * library's merge (a queue of (rank, position), new pairs competing at once)
 * gives the same ids as encoder.py's passes whenever a merge's parts rank
 * below it, as in every trained vocabulary (checked on Llama 3 and Qwen3).
 */
#include "rl_file.h"
#include "rl_tokenizer.h"
#include "tokenizer_internal.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

/* ---- small helpers ----------------------------------------------------- */

/* A fast, non-cryptographic hash of a byte string (hash maps only). */
static uint64_t hash_bytes(const void *p, size_t n) {
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xFF51AFD7ED558CCDull;
        h ^= h >> 32;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)s[i] << (8 * i);
    h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
    h ^= h >> 29;
    h *= 0x94D049BB133111EBull;
    h ^= h >> 32;
    return h;
}

static uint64_t hash_u64(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

/* Shows a token for a message: printable ASCII as is, other bytes as \xNN,
 * cut at about 40 bytes. */
const char *rl_tok_show(const char *s, size_t n, char *buf, size_t bufn) {
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < bufn; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i >= 40) { o += (size_t)snprintf(buf + o, bufn - o, "..."); break; }
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') buf[o++] = (char)c;
        else o += (size_t)snprintf(buf + o, bufn - o, "\\x%02X", c);
    }
    buf[o] = 0;
    return buf;
}

/* ---- GPT-2's byte <-> unicode alphabet ---------------------------------- */

/* encoder.py's bytes_to_unicode(): the printable bytes 33..126, 161..172 and
 * 174..255 stand for themselves; the other 68 bytes get the code points
 * 256, 257, ... in byte order, so every byte is a visible character and
 * vocab.json / merges.txt never contain spaces or control characters. */
void rl_tok_byte_alphabet(uint32_t byte_to_cp[256], int16_t cp_to_byte[324]) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        byte_to_cp[b] = keep ? (uint32_t)b : (uint32_t)(256 + n++);
    }
    for (int c = 0; c < 324; c++) cp_to_byte[c] = -1;
    for (int b = 0; b < 256; b++) cp_to_byte[byte_to_cp[b]] = (int16_t)b;
}

/* Converts a string of the alphabet (UTF-8) to the raw bytes it stands for.
 * Returns the number of bytes, or -1 with *bad set to the offending code
 * point (-1 for invalid UTF-8). out needs room for len bytes. */
long rl_tok_alphabet_to_bytes(const int16_t cp_to_byte[324], const char *s, size_t len,
                              uint8_t *out, long *bad) {
    size_t i = 0;
    long n = 0;
    while (i < len) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t w = utf8proc_iterate((const utf8proc_uint8_t *)s + i,
                                              (utf8proc_ssize_t)(len - i), &cp);
        if (w <= 0) { *bad = -1; return -1; }
        if (cp >= 324 || cp_to_byte[cp] < 0) { *bad = cp; return -1; }
        out[n++] = (uint8_t)cp_to_byte[cp];
        i += (size_t)w;
    }
    return n;
}

/* ---- GPT-2's pre-tokenizer ---------------------------------------------------- */

/* One match of
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * at pos. The alternatives are tried in order, as the regex engine does; the
 * last three classes plus \s cover every character, so matches tile the text. */
size_t rl_pretokenizer_next(const char *text, size_t len, size_t pos) {
    const uint8_t *s = (const uint8_t *)text;
    if (pos >= len) return len;
    /* Contractions: ASCII apostrophe, lower case only ("I'LL" is "I", "'", "LL"). */
    if (s[pos] == '\'' && pos + 1 < len) {
        uint8_t a = s[pos + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return pos + 2;
        if (pos + 2 < len) {
            uint8_t b = s[pos + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
                return pos + 3;
        }
    }
    size_t w;
    int cl = rl_tok_char_class(s, len, pos, &w);
    /* " ?X+": one optional leading SPACE (not any whitespace) joins the word. */
    if (s[pos] == ' ' && pos + 1 < len) {
        size_t w1;
        int cl1 = rl_tok_char_class(s, len, pos + 1, &w1);
        if (cl1 != CL_SPACE) return rl_tok_run_end(s, len, pos + 1 + w1, cl1);
    }
    if (cl != CL_SPACE) return rl_tok_run_end(s, len, pos + w, cl);
    /* \s+(?!\S): a whitespace run that ends the text is taken whole; one that
     * is followed by a non-space gives back its last character (which then
     * prefixes the next word, when it is a space). A lone whitespace
     * character before a non-space is matched by the final \s+. */
    size_t last = pos, e = pos + w;
    while (e < len) {
        size_t w2;
        if (rl_tok_char_class(s, len, e, &w2) != CL_SPACE) break;
        last = e;
        e += w2;
    }
    if (e == len || last == pos) return e;
    return last;
}

/* ---- the tokenizer object ------------------------------------------------------ */

void rl_tok_fail(rl_tokenizer *tok, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tok->err, sizeof tok->err, fmt, ap);
    va_end(ap);
}

void rl_tokenizer_free(rl_tokenizer *tok) {
    if (!tok) return;
    free(tok->pool);
    free(tok->off);
    free(tok->special);
    free(tok->tok_map);
    free(tok->merges);
    free(tok->cache);
    free(tok->ckeys);
    free(tok->cvals);
    free(tok->w_tok);
    free(tok->w_next);
    free(tok->w_prev);
    free(tok->heap);
    free(tok->pending);
    free(tok->hf.prefix);
    free(tok->hf.suffix);
    free(tok->hf.norm);
    free(tok);
}

static const char *token_bytes(const rl_tokenizer *tok, int32_t id, uint32_t *len) {
    *len = tok->off[id + 1] - tok->off[id];
    return tok->pool + tok->off[id];
}

/* Special tokens look like "<|name|>"; sorted longest first so that one that
 * is a prefix of another never wins. */
static int cmp_special(const void *a, const void *b) {
    const special_tok *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id - y->id;
}

static int collect_specials(rl_tokenizer *tok) {
    int n = 0;
    for (int32_t i = 0; i < tok->vocab_size; i++) {
        uint32_t len;
        const char *s = token_bytes(tok, i, &len);
        if (len >= 4 && s[0] == '<' && s[1] == '|' && s[len - 2] == '|' && s[len - 1] == '>') n++;
    }
    tok->special = calloc((size_t)n + 1, sizeof *tok->special);
    if (!tok->special) return -1;
    for (int32_t i = 0; i < tok->vocab_size; i++) {
        uint32_t len;
        const char *s = token_bytes(tok, i, &len);
        if (len >= 4 && s[0] == '<' && s[1] == '|' && s[len - 2] == '|' && s[len - 1] == '>')
            tok->special[tok->nspecial++] = (special_tok){i, len, s};
    }
    qsort(tok->special, (size_t)tok->nspecial, sizeof *tok->special, cmp_special);
    return 0;
}

/* ---- the byte-level tokenizer ------------------------------------------------ */

rl_tokenizer *rl_tokenizer_bytes_new(void) {
    static const char *names[RL_TOK_BYTES_VOCAB - 256] = {
        "<|endoftext|>", "<|pad|>", "<|sep|>", "<|reserved_3|>",
        "<|reserved_4|>", "<|reserved_5|>", "<|reserved_6|>", "<|reserved_7|>",
    };
    rl_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) return NULL;
    tok->kind = RL_TOKENIZER_BYTES;
    tok->vocab_size = RL_TOK_BYTES_VOCAB;
    tok->eos_id = RL_TOK_BYTES_EOS;
    tok->bos_id = -1;
    tok->pad_id = RL_TOK_BYTES_EOS;
    size_t total = 256;
    for (int i = 0; i < RL_TOK_BYTES_VOCAB - 256; i++) total += strlen(names[i]);
    tok->pool = malloc(total);
    tok->off = malloc((RL_TOK_BYTES_VOCAB + 1) * sizeof *tok->off);
    if (!tok->pool || !tok->off) { rl_tokenizer_free(tok); return NULL; }
    uint32_t o = 0;
    for (int b = 0; b < 256; b++) { tok->off[b] = o; tok->pool[o++] = (char)b; }
    for (int i = 0; i < RL_TOK_BYTES_VOCAB - 256; i++) {
        size_t l = strlen(names[i]);
        tok->off[256 + i] = o;
        memcpy(tok->pool + o, names[i], l);
        o += (uint32_t)l;
    }
    tok->off[RL_TOK_BYTES_VOCAB] = o;
    for (int b = 0; b < 256; b++) tok->byte_id[b] = b;
    if (collect_specials(tok) != 0) { rl_tokenizer_free(tok); return NULL; }
    return tok;
}

/* ---- BPE: hash maps ----------------------------------------------------------- */

int32_t rl_tok_lookup(const rl_tokenizer *tok, const void *s, size_t len) {
    if (!tok->tok_map) return -1;
    size_t mask = tok->tok_cap - 1;
    for (size_t i = hash_bytes(s, len) & mask;; i = (i + 1) & mask) {
        int32_t id = tok->tok_map[i];
        if (id < 0) return -1;
        uint32_t l;
        const char *t = token_bytes(tok, id, &l);
        if (l == len && memcmp(t, s, len) == 0) return id;
    }
}

void rl_tok_insert(rl_tokenizer *tok, int32_t id) {
    size_t mask = tok->tok_cap - 1;
    uint32_t l;
    const char *t = token_bytes(tok, id, &l);
    size_t i = hash_bytes(t, l) & mask;
    while (tok->tok_map[i] >= 0) i = (i + 1) & mask;
    tok->tok_map[i] = id;
}

static inline merge_slot *merge_find(const rl_tokenizer *tok, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = tok->merge_cap - 1;
    for (size_t i = hash_u64(key) & mask;; i = (i + 1) & mask) {
        merge_slot *m = &tok->merges[i];
        if (m->key == key) return m;
        if (m->key == UINT64_MAX) return NULL;
    }
}

/* encoder.py builds its ranks with dict(zip(merges, range(...))), so a pair
 * listed twice keeps its later rank; this does the same. */
void rl_tok_merge_insert(rl_tokenizer *tok, int32_t a, int32_t b, int32_t rank, int32_t id) {
    uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
    size_t mask = tok->merge_cap - 1;
    size_t i = hash_u64(key) & mask;
    while (tok->merges[i].key != UINT64_MAX && tok->merges[i].key != key) i = (i + 1) & mask;
    tok->merges[i] = (merge_slot){key, rank, id};
}

/* ---- BPE: loading ------------------------------------------------------------- */

static char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        rl_errf(err, errlen, RL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap + 1);
        if (!nb) { free(buf); buf = NULL; }
        else buf = nb;
    }
    if (!buf) {
        fclose(f);
        rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory reading the file", path);
        return NULL;
    }
    if (ferror(f)) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: read error: %s", path, strerror(errno));
        fclose(f);
        free(buf);
        return NULL;
    }
    fclose(f);
    buf[n] = 0;
    *len = n;
    return buf;
}

static int load_vocab(rl_tokenizer *tok, const char *path, const int16_t cp_to_byte[324],
                      const uint32_t byte_to_cp[256], char *err, size_t errlen) {
    FILE *probe = fopen(path, "rb");
    if (!probe) {
        rl_errf(err, errlen, RL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    fclose(probe);
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: not valid JSON: %s (line %d, column %d)", path, jerr.text,
                jerr.line, jerr.column);
        return -1;
    }
    int rc = -1;
    char buf[200];
    if (!json_is_object(root)) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: not a JSON object (expected {\"token\": id, ...})", path);
        goto out;
    }
    size_t n = json_object_size(root);
    if (n == 0 || n > (1u << 24)) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: has %zu tokens; expected 1 to 16777216", path, n);
        goto out;
    }
    tok->vocab_size = (int32_t)n;
    uint32_t *lens = calloc(n, sizeof *lens);
    tok->off = calloc(n + 1, sizeof *tok->off);
    if (!lens || !tok->off) { free(lens); rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path); goto out; }
    /* Pass 1: ids dense and unique, lengths. */
    size_t total = 0;
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        size_t klen = strlen(key); /* keys with NUL bytes cannot be alphabet strings anyway */
        if (!json_is_integer(val)) {
            rl_errf(err, errlen, RL_ERR_ARG, "%s: the id of token \"%s\" is not an integer", path,
                    rl_tok_show(key, klen, buf, sizeof buf));
            free(lens);
            goto out;
        }
        json_int_t id = json_integer_value(val);
        if (id < 0 || (size_t)id >= n) {
            rl_errf(err, errlen, RL_ERR_ARG, "%s: token \"%s\" has id %lld, outside [0, %zu) (ids must be 0..N-1 for N tokens)",
                    path, rl_tok_show(key, klen, buf, sizeof buf), (long long)id, n);
            free(lens);
            goto out;
        }
        if (lens[id]) {
            rl_errf(err, errlen, RL_ERR_ARG, "%s: id %lld is given to two tokens (one is \"%s\")", path,
                    (long long)id, rl_tok_show(key, klen, buf, sizeof buf));
            free(lens);
            goto out;
        }
        if (klen == 0) {
            rl_errf(err, errlen, RL_ERR_ARG, "%s: the empty string is not a token (id %lld)", path, (long long)id);
            free(lens);
            goto out;
        }
        lens[id] = (uint32_t)klen; /* upper bound of the raw length */
        total += klen;
    }
    free(lens);
    tok->pool = malloc(total + 1);
    if (!tok->pool) { rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path); goto out; }
    /* Pass 2: the raw bytes of each token, laid out in id order. */
    const char **src = calloc(n, sizeof *src);
    if (!src) { rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path); goto out; }
    json_object_foreach(root, key, val) src[json_integer_value(val)] = key;
    uint32_t o = 0;
    for (size_t i = 0; i < n; i++) {
        long bad = 0;
        long r = rl_tok_alphabet_to_bytes(cp_to_byte, src[i], strlen(src[i]), (uint8_t *)tok->pool + o, &bad);
        if (r < 0) {
            if (bad < 0)
                rl_errf(err, errlen, RL_ERR_ARG, "%s: token \"%s\" (id %zu) is not valid UTF-8", path,
                        rl_tok_show(src[i], strlen(src[i]), buf, sizeof buf), i);
            else
                rl_errf(err, errlen, RL_ERR_ARG, "%s: token \"%s\" (id %zu) has the character U+%04lX, which is "
                        "not in GPT-2's byte-to-unicode alphabet", path,
                        rl_tok_show(src[i], strlen(src[i]), buf, sizeof buf), i, (unsigned long)bad);
            free(src);
            goto out;
        }
        tok->off[i] = o;
        o += (uint32_t)r;
    }
    tok->off[n] = o;
    free(src);
    /* The lookup map; the alphabet is a bijection, so distinct strings have
     * distinct bytes. */
    tok->tok_cap = rl_tok_pow2(2 * n);
    tok->tok_map = malloc(tok->tok_cap * sizeof *tok->tok_map);
    if (!tok->tok_map) { rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path); goto out; }
    memset(tok->tok_map, 0xff, tok->tok_cap * sizeof *tok->tok_map);
    for (size_t i = 0; i < n; i++) rl_tok_insert(tok, (int32_t)i);
    /* Byte-level BPE can encode anything only if every byte is a token. */
    for (int b = 0; b < 256; b++) {
        uint8_t c = (uint8_t)b;
        tok->byte_id[b] = rl_tok_lookup(tok, &c, 1);
        if (tok->byte_id[b] < 0) {
            utf8proc_uint8_t u[8];
            utf8proc_ssize_t ul = utf8proc_encode_char((utf8proc_int32_t)byte_to_cp[b], u);
            u[ul] = 0;
            rl_errf(err, errlen, RL_ERR_ARG, "%s: has no token for byte 0x%02X (\"%s\" in GPT-2's byte-to-unicode "
                    "alphabet); a byte-level BPE vocabulary needs all 256 bytes", path, b, (char *)u);
            goto out;
        }
    }
    tok->eos_id = rl_tok_lookup(tok, "<|endoftext|>", 13);
    if (tok->eos_id < 0) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: has no \"<|endoftext|>\" token (needed as end of sequence and padding)", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(root);
    return rc;
}

static int load_merges(rl_tokenizer *tok, const char *path, const int16_t cp_to_byte[324],
                       char *err, size_t errlen) {
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    if (!text) return -1;
    int rc = -1;
    char b1[200], b2[200];
    /* Count lines for the map's size. */
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    tok->merge_cap = rl_tok_pow2(2 * lines);
    tok->merges = malloc(tok->merge_cap * sizeof *tok->merges);
    uint8_t *raw = malloc(len + 1);
    if (!tok->merges || !raw) { rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path); goto out; }
    memset(tok->merges, 0xff, tok->merge_cap * sizeof *tok->merges);
    int32_t rank = 0;
    size_t pos = 0;
    for (long lineno = 1; pos < len; lineno++) {
        char *line = text + pos;
        char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl != NULL);
        if (ll > 0 && line[ll - 1] == '\r') ll--;
        /* encoder.py drops the first line ("#version: 0.2"); so do we when it
         * is such a header. Blank lines (the end of the file) are skipped. */
        if (lineno == 1 && ll >= 8 && memcmp(line, "#version", 8) == 0) continue;
        if (ll == 0) continue;
        char *sp = memchr(line, ' ', ll);
        size_t l1 = sp ? (size_t)(sp - line) : ll;
        size_t l2 = sp ? ll - l1 - 1 : 0;
        if (!sp || l1 == 0 || l2 == 0 || memchr(sp + 1, ' ', l2) || memchr(line, '\t', ll)) {
            rl_errf(err, errlen, RL_ERR_ARG, "%s line %ld: malformed merge \"%s\" (expected two tokens separated by one space)",
                    path, lineno, rl_tok_show(line, ll, b1, sizeof b1));
            goto out;
        }
        int32_t ids[3];
        size_t rl[2];
        const char *part[2] = {line, sp + 1};
        size_t plen[2] = {l1, l2};
        for (int k = 0; k < 2; k++) {
            long bad = 0;
            long r = rl_tok_alphabet_to_bytes(cp_to_byte, part[k], plen[k], raw + (k ? rl[0] : 0), &bad);
            if (r < 0) {
                if (bad < 0)
                    rl_errf(err, errlen, RL_ERR_ARG, "%s line %ld: \"%s\" is not valid UTF-8", path, lineno,
                            rl_tok_show(part[k], plen[k], b1, sizeof b1));
                else
                    rl_errf(err, errlen, RL_ERR_ARG, "%s line %ld: \"%s\" has the character U+%04lX, which is not in "
                            "GPT-2's byte-to-unicode alphabet", path, lineno,
                            rl_tok_show(part[k], plen[k], b1, sizeof b1), (unsigned long)bad);
                goto out;
            }
            rl[k] = (size_t)r;
            ids[k] = rl_tok_lookup(tok, raw + (k ? rl[0] : 0), rl[k]);
            if (ids[k] < 0) {
                rl_errf(err, errlen, RL_ERR_ARG, "%s line %ld: \"%s\" is not in the vocabulary", path, lineno,
                        rl_tok_show(part[k], plen[k], b1, sizeof b1));
                goto out;
            }
        }
        ids[2] = rl_tok_lookup(tok, raw, rl[0] + rl[1]);
        if (ids[2] < 0) {
            rl_errf(err, errlen, RL_ERR_ARG, "%s line %ld: the merge of \"%s\" and \"%s\" is not in the vocabulary",
                    path, lineno, rl_tok_show(part[0], plen[0], b1, sizeof b1), rl_tok_show(part[1], plen[1], b2, sizeof b2));
            goto out;
        }
        rl_tok_merge_insert(tok, ids[0], ids[1], rank++, ids[2]);
    }
    rc = 0;
out:
    free(raw);
    free(text);
    return rc;
}

rl_tokenizer *rl_tokenizer_bpe_load(const char *vocab_json, const char *merges_txt, char *err,
                                    size_t errlen) {
    rl_errf(err, errlen, RL_ERR_ARG, "%s", "");
    if (!vocab_json || !merges_txt) {
        rl_errf(err, errlen, RL_ERR_ARG, "rl_tokenizer_bpe_load: a file name is NULL");
        return NULL;
    }
    uint32_t byte_to_cp[256];
    int16_t cp_to_byte[324];
    rl_tok_byte_alphabet(byte_to_cp, cp_to_byte);
    rl_tokenizer *tok = calloc(1, sizeof *tok);
    if (!tok) { rl_errf(err, errlen, RL_ERR_MEMORY, "out of memory"); return NULL; }
    tok->kind = RL_TOKENIZER_BPE;
    if (load_vocab(tok, vocab_json, cp_to_byte, byte_to_cp, err, errlen) != 0 ||
        load_merges(tok, merges_txt, cp_to_byte, err, errlen) != 0) {
        rl_tokenizer_free(tok);
        return NULL;
    }
    if (collect_specials(tok) != 0) {
        rl_errf(err, errlen, RL_ERR_MEMORY, "out of memory");
        rl_tokenizer_free(tok);
        return NULL;
    }
    tok->bos_id = -1;
    tok->pad_id = tok->eos_id;
    return tok;
}

rl_tokenizer *rl_tokenizer_bpe_load_dir(const char *dir, char *err, size_t errlen) {
    if (!dir) { rl_errf(err, errlen, RL_ERR_ARG, "rl_tokenizer_bpe_load_dir: dir is NULL"); return NULL; }
    size_t n = strlen(dir) + 16;
    char *v = malloc(n), *m = malloc(n);
    rl_tokenizer *tok = NULL;
    if (v && m) {
        snprintf(v, n, "%s/vocab.json", dir);
        snprintf(m, n, "%s/merges.txt", dir);
        tok = rl_tokenizer_bpe_load(v, m, err, errlen);
    } else {
        rl_errf(err, errlen, RL_ERR_MEMORY, "out of memory");
    }
    free(v);
    free(m);
    return tok;
}

rl_tokenizer *rl_tokenizer_open(const char *spec, char *err, size_t errlen) {
    if (spec && strcmp(spec, "bytes") == 0) {
        rl_tokenizer *t = rl_tokenizer_bytes_new();
        if (!t) rl_errf(err, errlen, RL_ERR_MEMORY, "out of memory");
        return t;
    }
    if (!spec) { rl_errf(err, errlen, RL_ERR_ARG, "rl_tokenizer_open: spec is NULL"); return NULL; }
    struct stat st;
    if (stat(spec, &st) == 0 && !S_ISDIR(st.st_mode)) return rl_tokenizer_hf_load(spec, err, errlen);
    /* A directory: its tokenizer.json wins over vocab.json + merges.txt (a
     * Hugging Face checkpoint may hold both; tokenizer.json has the added
     * tokens and the exact pre-tokenizer). */
    size_t n = strlen(spec) + 24;
    char *p = malloc(n);
    if (!p) { rl_errf(err, errlen, RL_ERR_MEMORY, "out of memory"); return NULL; }
    rl_tokenizer *tok = NULL;
    int found = 0;
    static const char *const names[] = {"tokenizer.json", "tokenizer.json.gz"};
    for (int k = 0; k < 2 && !found; k++) {
        snprintf(p, n, "%s/%s", spec, names[k]);
        if (stat(p, &st) == 0) { found = 1; tok = rl_tokenizer_hf_load(p, err, errlen); }
    }
    free(p);
    return found ? tok : rl_tokenizer_bpe_load_dir(spec, err, errlen);
}

/* ---- BPE: merging one word ------------------------------------------------- */

/* GROW(ptr, cap, need) makes room for need elements in a scratch array
 * (doubling its capacity); 0, or -1 with the array unchanged. It needs a
 * `void *tmp_` in scope. */
static void *grow_to(void *p, size_t *cap, size_t need, size_t elem) {
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *np = realloc(p, c * elem);
    if (np) *cap = c;
    return np;
}
#define GROW(ptr, cap, need)                                                              \
    ((need) <= (cap) ? 0                                                                  \
     : (tmp_ = grow_to((ptr), &(cap), (need), sizeof *(ptr))) ? ((ptr) = tmp_, 0) : -1)

static inline int heap_less(const heap_ent *x, const heap_ent *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--*n];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && heap_less(&h[c + 1], &h[c])) c++;
        if (!heap_less(&h[c], &last)) break;
        h[i] = h[c];
        i = c;
    }
    if (m > 0) h[i] = last;
    return top;
}

/* encoder.py's Encoder.bpe, literally: find the ranked pair with the lowest
 * rank, merge each of its occurrences left to right, repeat. O(n^2). */
static size_t bpe_merge_reference(const rl_tokenizer *tok, int32_t *w, size_t n) {
    while (n > 1) {
        int32_t best = INT32_MAX, a = 0, b = 0, id = 0;
        for (size_t i = 0; i + 1 < n; i++) {
            merge_slot *m = merge_find(tok, w[i], w[i + 1]);
            if (m && m->rank < best) { best = m->rank; a = w[i]; b = w[i + 1]; id = m->id; }
        }
        if (best == INT32_MAX) break;
        size_t o = 0;
        for (size_t i = 0; i < n;) {
            if (i + 1 < n && w[i] == a && w[i + 1] == b) { w[o++] = id; i += 2; }
            else w[o++] = w[i++];
        }
        n = o;
    }
    return n;
}

/* The same result for short words with fewer hash lookups: the rank of
 * each adjacent pair is kept in an array and looked up again only next to a
 * merge. A pass finds the lowest rank and merges every pair that has it,
 * left to right, compacting in place; equal ranks mean equal pairs, and a
 * merge never creates a pair of the rank being merged (the merged token
 * would have to equal one of its parts), so this is encoder.py's pass. */
static size_t bpe_merge_small(const rl_tokenizer *tok, int32_t *w, size_t n) {
    int32_t rank[SMALL_WORD], mid[SMALL_WORD];
    uint8_t merged[SMALL_WORD];
    for (size_t i = 0; i + 1 < n; i++) {
        merge_slot *m = merge_find(tok, w[i], w[i + 1]);
        rank[i] = m ? m->rank : INT32_MAX;
        mid[i] = m ? m->id : -1;
    }
    while (n > 1) {
        int32_t r = INT32_MAX;
        for (size_t i = 0; i + 1 < n; i++) if (rank[i] < r) r = rank[i];
        if (r == INT32_MAX) break;
        size_t o = 0;
        for (size_t i = 0; i < n; o++) {
            if (i + 1 < n && rank[i] == r) {
                w[o] = mid[i];
                merged[o] = 1;
                i += 2;
            } else { /* rank[o] stays right unless a neighbour was merged */
                w[o] = w[i];
                rank[o] = rank[i];
                mid[o] = mid[i];
                merged[o] = 0;
                i++;
            }
        }
        n = o;
        for (size_t i = 0; i + 1 < n; i++) {
            if (!merged[i] && !merged[i + 1]) continue;
            merge_slot *m = merge_find(tok, w[i], w[i + 1]);
            rank[i] = m ? m->rank : INT32_MAX;
            mid[i] = m ? m->id : -1;
        }
    }
    return n;
}

/* The same result in O(n log n): the symbols form a linked list; a heap
 * holds every adjacent ranked pair as (rank, position), checked for staleness
 * when popped. All occurrences of the lowest rank are merged in position
 * order, as encoder.py's pass does; pairs created meanwhile are held back
 * until that rank is done (encoder.py would only see them in its next pass,
 * which matters only for merge files whose ranks are not in dependency
 * order). A new pair can never have the current rank: that would need the
 * merged token to equal one of its own parts. */
static int bpe_merge_heap(rl_tokenizer *tok, int32_t *w, size_t *np) {
    size_t n = *np;
    if (n > tok->w_cap) { /* the three per-symbol arrays share one capacity */
        size_t c = rl_tok_pow2(n);
        int32_t *a = realloc(tok->w_tok, c * sizeof *a);
        if (a) tok->w_tok = a;
        int32_t *b = realloc(tok->w_next, c * sizeof *b);
        if (b) tok->w_next = b;
        int32_t *d = realloc(tok->w_prev, c * sizeof *d);
        if (d) tok->w_prev = d;
        if (!a || !b || !d) return -1;
        tok->w_cap = c;
    }
    int32_t *nx = tok->w_next, *pv = tok->w_prev;
    int32_t *t = tok->w_tok;
    size_t hn = 0, pn = 0;
    void *tmp_;
    if (GROW(tok->heap, tok->heap_cap, 2 * n) != 0 || GROW(tok->pending, tok->pending_cap, 2 * n) != 0)
        return -1;
    heap_ent *h = tok->heap, *pend = tok->pending;
    for (size_t i = 0; i < n; i++) {
        t[i] = w[i];
        nx[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        pv[i] = (int32_t)i - 1;
    }
    for (size_t i = 0; i + 1 < n; i++) {
        merge_slot *m = merge_find(tok, t[i], t[i + 1]);
        if (m) heap_push(h, &hn, (heap_ent){m->rank, (int32_t)i, t[i], t[i + 1], m->id});
    }
    /* Each merge removes a symbol and adds at most two pairs, so the heap
     * never holds more than (n - 1) + 2 (n - 1) entries; 2n is not enough in
     * theory, so check as we go. */
    while (hn > 0) {
        int32_t rank = h[0].rank;
        while (hn > 0 && h[0].rank == rank) {
            heap_ent e = heap_pop(h, &hn);
            int32_t p = e.pos, q = nx[p];
            if (t[p] != e.a || q < 0 || t[q] != e.b) continue; /* stale */
            t[p] = e.id;
            t[q] = -1;
            nx[p] = nx[q];
            if (nx[q] >= 0) pv[nx[q]] = p;
            if (pn + 2 > tok->pending_cap) {
                if (GROW(tok->pending, tok->pending_cap, pn + 2) != 0) return -1;
                pend = tok->pending;
            }
            if (pv[p] >= 0) {
                merge_slot *l = merge_find(tok, t[pv[p]], t[p]);
                if (l) pend[pn++] = (heap_ent){l->rank, pv[p], t[pv[p]], t[p], l->id};
            }
            if (nx[p] >= 0) {
                merge_slot *r = merge_find(tok, t[p], t[nx[p]]);
                if (r) pend[pn++] = (heap_ent){r->rank, p, t[p], t[nx[p]], r->id};
            }
        }
        if (hn + pn > tok->heap_cap) {
            if (GROW(tok->heap, tok->heap_cap, hn + pn) != 0) return -1;
            h = tok->heap;
        }
        for (size_t i = 0; i < pn; i++) heap_push(h, &hn, pend[i]);
        pn = 0;
    }
    size_t o = 0;
    for (int32_t i = 0; i >= 0; i = nx[i]) w[o++] = t[i];
    *np = o;
    return 0;
}

/* ---- the word cache -------------------------------------------------------- */

static void cache_clear(rl_tokenizer *tok) {
    if (tok->cache) memset(tok->cache, 0, CACHE_SLOTS * sizeof *tok->cache);
    tok->cache_count = 0;
    tok->ckeys_len = 0;
    tok->cvals_len = 0;
}

static cache_slot *cache_find(rl_tokenizer *tok, const char *s, size_t len, uint64_t h) {
    size_t mask = CACHE_SLOTS - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        cache_slot *c = &tok->cache[i];
        if (c->klen == 0) return c;
        if (c->hash == h && c->klen == len && memcmp(tok->ckeys + c->koff, s, len) == 0) return c;
    }
}

/* Remembers a word's ids; a full cache (half its slots) starts over. */
static void cache_put(rl_tokenizer *tok, const char *s, size_t len, uint64_t h, const int32_t *ids, size_t n) {
    if (tok->cache_count >= CACHE_SLOTS / 2) cache_clear(tok);
    void *tmp_;
    if (GROW(tok->ckeys, tok->ckeys_cap, tok->ckeys_len + len) != 0 ||
        GROW(tok->cvals, tok->cvals_cap, tok->cvals_len + n) != 0)
        return; /* the cache is an optimisation: skip it */
    cache_slot *c = cache_find(tok, s, len, h);
    if (c->klen) return;
    *c = (cache_slot){h, (uint32_t)tok->ckeys_len, (uint32_t)len, (uint32_t)tok->cvals_len, (uint32_t)n};
    memcpy(tok->ckeys + tok->ckeys_len, s, len);
    memcpy(tok->cvals + tok->cvals_len, ids, n * sizeof *ids);
    tok->ckeys_len += len;
    tok->cvals_len += n;
    tok->cache_count++;
}

/* ---- encoding ---------------------------------------------------------------- */

/* Encodes one pre-token into out (room for len ids); returns the count or -1. */
long rl_tok_bpe_word(rl_tokenizer *tok, const char *s, size_t len, int32_t *out) {
    for (size_t i = 0; i < len; i++) out[i] = tok->byte_id[(uint8_t)s[i]];
    if (len == 1) return 1;
    int use_cache = !tok->reference_mode && len <= CACHE_MAX_WORD;
    uint64_t h = 0;
    if (use_cache) {
        if (!tok->cache) {
            tok->cache = calloc(CACHE_SLOTS, sizeof *tok->cache);
            if (!tok->cache) use_cache = 0;
        }
    }
    if (use_cache) {
        h = hash_bytes(s, len);
        cache_slot *c = cache_find(tok, s, len, h);
        if (c->klen) {
            memcpy(out, tok->cvals + c->voff, c->vlen * sizeof *out);
            return c->vlen;
        }
    }
    size_t n = len;
    if (tok->reference_mode) n = bpe_merge_reference(tok, out, n);
    else if (n <= SMALL_WORD) n = bpe_merge_small(tok, out, n);
    else if (bpe_merge_heap(tok, out, &n) != 0) return -1;
    if (use_cache) cache_put(tok, s, len, h, out, n);
    return (long)n;
}

int rl_tok_ids_reserve(rl_tok_ids *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t c = b->cap ? b->cap : 16;
    while (c < b->n + extra) c *= 2;
    int32_t *nv = realloc(b->v, c * sizeof *nv);
    if (!nv) return -1;
    b->v = nv;
    b->cap = c;
    return 0;
}

/* Encodes a stretch of text without special tokens; 0 or -1 (memory). */
static int encode_plain(rl_tokenizer *tok, const char *s, size_t len, rl_tok_ids *b) {
    if (len == 0) return 0; /* s may be NULL */
    if (tok->kind == RL_TOKENIZER_BYTES) {
        if (rl_tok_ids_reserve(b, len) != 0) return -1;
        for (size_t i = 0; i < len; i++) b->v[b->n + i] = (uint8_t)s[i];
        b->n += len;
        return 0;
    }
    for (size_t p = 0; p < len;) {
        size_t e = rl_pretokenizer_next(s, len, p);
        /* a word never has more ids than bytes */
        if (rl_tok_ids_reserve(b, e - p) != 0) return -1;
        long k = rl_tok_bpe_word(tok, s + p, e - p, b->v + b->n);
        if (k < 0) return -1;
        b->n += (size_t)k;
        p = e;
    }
    return 0;
}

rl_status rl_tokenizer_encode_ex(rl_tokenizer *tok, const char *text, size_t len, unsigned flags,
                                 int32_t **ids, int64_t *n) {
    if (!tok || !ids || !n || (!text && len)) {
        if (tok) rl_tok_fail(tok, "rl_tokenizer_encode: NULL argument");
        return RL_ERR_ARG;
    }
    *ids = NULL;
    *n = 0;
    if (len > (size_t)INT32_MAX) { /* positions inside a word are int32_t */
        rl_tok_fail(tok, "rl_tokenizer_encode: %zu bytes of text in one call; the limit is 2 GiB", len);
        return RL_ERR_ARG;
    }
    /* GPT-2 averages about 4 bytes a token on English text; the buffer grows
     * when the guess is short (CJK, symbols) */
    rl_tok_ids b = {0};
    if (rl_tok_ids_reserve(&b, tok->kind == RL_TOKENIZER_BYTES ? len + 1 : len / 3 + 16) != 0) goto oom;
    size_t start = 0;
    if (tok->hf.on) {
        if (rl_tok_hf_encode(tok, text, len, flags, &b) != 0) goto oom;
        start = len;
    } else if ((flags & RL_TOKENIZE_SPECIAL) && len > 0) {
        for (size_t p = 0; p + 1 < len;) {
            const char *lt = memchr(text + p, '<', len - p - 1);
            if (!lt) break;
            p = (size_t)(lt - text);
            int hit = -1;
            if (text[p + 1] == '|')
                for (int k = 0; k < tok->nspecial; k++) {
                    const special_tok *sp = &tok->special[k];
                    if (sp->len <= len - p && memcmp(text + p, sp->text, sp->len) == 0) { hit = k; break; }
                }
            if (hit < 0) { p++; continue; }
            if (encode_plain(tok, text + start, p - start, &b) != 0 || rl_tok_ids_reserve(&b, 1) != 0) goto oom;
            b.v[b.n++] = tok->special[hit].id;
            p += tok->special[hit].len;
            start = p;
        }
    }
    if (len > start && encode_plain(tok, text + start, len - start, &b) != 0) goto oom;
    if (b.n < b.cap / 2 && b.cap > 1024) {
        int32_t *shrunk = realloc(b.v, (b.n ? b.n : 1) * sizeof *b.v);
        if (shrunk) b.v = shrunk;
    }
    *ids = b.v;
    *n = (int64_t)b.n;
    return RL_OK;
oom:
    free(b.v);
    rl_tok_fail(tok, "rl_tokenizer_encode: out of memory (text of %zu bytes)", len);
    return RL_ERR_MEMORY;
}

rl_status rl_tokenizer_encode(rl_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                              int64_t *n) {
    return rl_tokenizer_encode_ex(tok, text, len, 0, ids, n);
}

rl_status rl_tokenizer_decode(rl_tokenizer *tok, const int32_t *ids, int64_t n, char **text,
                              size_t *len) {
    if (!tok || !text || !len || n < 0 || (!ids && n)) {
        if (tok) rl_tok_fail(tok, "rl_tokenizer_decode: NULL argument or negative count");
        return RL_ERR_ARG;
    }
    *text = NULL;
    *len = 0;
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->vocab_size) {
            rl_tok_fail(tok, "rl_tokenizer_decode: id %ld at position %lld is outside [0, %ld)",
                     (long)ids[i], (long long)i, (long)tok->vocab_size);
            return RL_ERR_ARG;
        }
        total += tok->off[ids[i] + 1] - tok->off[ids[i]];
    }
    char *out = malloc(total + 1);
    if (!out) {
        rl_tok_fail(tok, "rl_tokenizer_decode: out of memory for %zu bytes", total);
        return RL_ERR_MEMORY;
    }
    size_t o = 0;
    for (int64_t i = 0; i < n; i++) {
        uint32_t l;
        const char *s = token_bytes(tok, ids[i], &l);
        memcpy(out + o, s, l);
        o += l;
    }
    out[o] = 0;
    *text = out;
    *len = o;
    return RL_OK;
}

rl_tokenizer_kind rl_tokenizer_kind_of(const rl_tokenizer *tok) { return tok ? tok->kind : RL_TOKENIZER_BYTES; }
int32_t rl_tokenizer_vocab_size(const rl_tokenizer *tok) { return tok ? tok->vocab_size : 0; }
int32_t rl_tokenizer_eos_id(const rl_tokenizer *tok) { return tok ? tok->eos_id : -1; }
int32_t rl_tokenizer_bos_id(const rl_tokenizer *tok) { return tok ? tok->bos_id : -1; }
int32_t rl_tokenizer_pad_id(const rl_tokenizer *tok) { return tok ? tok->pad_id : -1; }
const char *rl_tokenizer_error(const rl_tokenizer *tok) { return tok ? tok->err : "NULL tokenizer"; }

int32_t rl_tokenizer_token_id(const rl_tokenizer *tok, const char *token, size_t len) {
    if (!tok || (!token && len)) return -1;
    /* a tokenizer.json's added tokens are not in the vocabulary map */
    for (int k = 0; k < tok->nspecial && tok->hf.on; k++)
        if (tok->special[k].len == len && memcmp(tok->special[k].text, token, len) == 0)
            return tok->special[k].id;
    if (tok->kind == RL_TOKENIZER_BPE) return rl_tok_lookup(tok, token, len);
    if (len == 1) return (uint8_t)token[0];
    for (int k = 0; k < tok->nspecial; k++)
        if (tok->special[k].len == len && memcmp(tok->special[k].text, token, len) == 0)
            return tok->special[k].id;
    return -1;
}

void rl_tokenizer_set_reference_mode(rl_tokenizer *tok, int on) {
    if (tok) tok->reference_mode = on != 0;
}

char *rl_utf8_sanitize(const char *s, size_t n) {
    char *out = malloc(3 * n + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k =
            utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0 || cp == 0) {
            memcpy(o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            memcpy(o, s + i, (size_t)k);
            o += k;
            i += (size_t)k;
        }
    }
    *o = 0;
    return out;
}
