/* models/tokenizer_internal.h - what the tokenizer files share and nothing
 * else includes: the tokenizer object, the character classes of the
 * pre-tokenizers, and the byte-level BPE core (byte alphabet, vocabulary and
 * merge maps, merging one word with its cache) that models/tokenizer.c
 * implements. models/tokenizer_hf.c loads a Hugging Face tokenizer.json into
 * the same object, so GPT-2's vocab.json + merges.txt and a tokenizer.json
 * run the same merge code.
 */
#ifndef RL_TOKENIZER_INTERNAL_H
#define RL_TOKENIZER_INTERNAL_H

#include "rl_tokenizer.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <utf8proc.h>

/* The pre-tokenizer patterns a tokenizer.json may name (tokenizer_hf.c). */
enum {
    RL_TOK_SPLIT_GPT2 = 0, /* ByteLevel use_regex: rl_pretokenizer_next */
    RL_TOK_SPLIT_LLAMA3,   /* Split with Llama 3's pattern (\p{N}{1,3}) */
    RL_TOK_SPLIT_QWEN2,    /* the same with single digits (Qwen2, 2.5, 3) */
};

/* What a tokenizer.json adds; all zero for the other tokenizers. */
typedef struct {
    int on;            /* 1: loaded from a tokenizer.json */
    int split;         /* RL_TOK_SPLIT_* */
    int nfc;           /* the normalizer is NFC */
    int ignore_merges; /* a pre-token that is in the vocabulary is one id, unmerged */
    uint32_t first[257]; /* added tokens starting with byte c: special[first[c] .. first[c + 1]) */
    int32_t *prefix, *suffix; /* the post-processor's template around one sequence */
    size_t nprefix, nsuffix;
    char *norm;          /* scratch for the NFC of a stretch of text */
    size_t norm_cap;
} rl_tok_hf;

typedef struct {
    int32_t id;
    uint32_t len;
    const char *text; /* points into the decode pool */
    int is_special;   /* tokenizer.json's "special" (others match even without RL_TOKENIZE_SPECIAL) */
} special_tok;

typedef struct {
    uint64_t key;  /* (left id << 32) | right id; UINT64_MAX when empty */
    int32_t rank;
    int32_t id;    /* the merged token */
} merge_slot;

typedef struct {
    uint64_t hash;
    uint32_t koff, klen; /* klen == 0: empty (words are never empty) */
    uint32_t voff, vlen;
} cache_slot;

typedef struct {
    int32_t rank, pos, a, b, id; /* pair (a, b) at pos merges into id */
} heap_ent;

#define CACHE_SLOTS (1u << 15)
#define CACHE_MAX_WORD 256
#define SMALL_WORD 64 /* symbols: longer words use the priority queue */

struct rl_tokenizer {
    rl_tokenizer_kind kind;
    int32_t vocab_size;
    int32_t eos_id;
    int32_t bos_id, pad_id; /* -1: none */
    int reference_mode;
    char err[512];
    /* Decoding: token i is pool[off[i] .. off[i+1]). */
    char *pool;
    uint32_t *off;
    special_tok *special; /* longest first, for matching (tokenizer.json: by first byte, then longest) */
    int nspecial;
    /* BPE only. */
    int32_t byte_id[256];
    int32_t *tok_map; /* raw bytes -> id, open addressing over ids; -1 empty */
    size_t tok_cap;
    merge_slot *merges;
    size_t merge_cap;
    /* Word cache. */
    cache_slot *cache;
    size_t cache_count;
    char *ckeys;
    size_t ckeys_len, ckeys_cap;
    int32_t *cvals;
    size_t cvals_len, cvals_cap;
    /* Scratch for merging one word. */
    int32_t *w_tok, *w_next, *w_prev;
    size_t w_cap;
    heap_ent *heap, *pending;
    size_t heap_cap, pending_cap;
    rl_tok_hf hf;
};


/* The growing output of an encode call. */
typedef struct {
    int32_t *v;
    size_t n, cap;
} rl_tok_ids;

/* Room for extra more ids; 0, or -1 when out of memory. */
int rl_tok_ids_reserve(rl_tok_ids *b, size_t extra);

static inline size_t rl_tok_pow2(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

/* Sets the tokenizer's error message. */
void rl_tok_fail(rl_tokenizer *tok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Shows a token for a message: printable ASCII as is, other bytes as \xNN,
 * cut at about 40 bytes. */
const char *rl_tok_show(const char *s, size_t n, char *buf, size_t bufn);
/* GPT-2's byte <-> unicode alphabet (encoder.py's bytes_to_unicode). */
void rl_tok_byte_alphabet(uint32_t byte_to_cp[256], int16_t cp_to_byte[324]);
/* An alphabet string (UTF-8) to the raw bytes it stands for: their number, or
 * -1 with *bad = the offending code point (-1: invalid UTF-8). out needs len bytes. */
long rl_tok_alphabet_to_bytes(const int16_t cp_to_byte[324], const char *s, size_t len, uint8_t *out,
                              long *bad);
/* The vocabulary map (tok_map, tok_cap): the id of raw bytes, or -1; insert
 * an id whose bytes are in the pool. */
int32_t rl_tok_lookup(const rl_tokenizer *tok, const void *s, size_t len);
void rl_tok_insert(rl_tokenizer *tok, int32_t id);
/* The merge map (merges, merge_cap, all keys UINT64_MAX at first): a later
 * rank for the same pair replaces the earlier one. */
void rl_tok_merge_insert(rl_tokenizer *tok, int32_t a, int32_t b, int32_t rank, int32_t id);
/* BPE of one pre-token into out (room for len ids): the count, or -1 (memory). */
long rl_tok_bpe_word(rl_tokenizer *tok, const char *s, size_t len, int32_t *out);

/* tokenizer_hf.c: encodes text with a tokenizer.json's added tokens,
 * normalizer, pre-tokenizer and template; 0, or -1 when out of memory. */
int rl_tok_hf_encode(rl_tokenizer *tok, const char *text, size_t len, unsigned flags, rl_tok_ids *b);
/* (tokenizer_hf.c's loader is rl_tokenizer_hf_load, in rl_tokenizer.h.) */

/* ---- character classes of the pre-tokenizers ------------------------------ */

enum { CL_OTHER = 0, CL_LETTER, CL_NUMBER, CL_SPACE };

/* \s of the `regex` module (which encoder.py imports as re) is the Unicode
 * White_Space property; it is stable since Unicode 6.3 (when U+180E left it). */
static inline int is_white_space(int32_t cp) {
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0D);
    if (cp < 0x85) return 0;
    return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
           cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

static inline int class_of_cp(int32_t cp) {
    if (is_white_space(cp)) return CL_SPACE;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return CL_LETTER;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return CL_NUMBER;
    default:
        return CL_OTHER;
    }
}

/* ASCII, the common case, without a table lookup in utf8proc. */
static inline int ascii_class(uint8_t c) {
    if ((uint8_t)((c | 0x20) - 'a') < 26) return CL_LETTER;
    if ((uint8_t)(c - '0') < 10) return CL_NUMBER;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return CL_SPACE;
    return CL_OTHER;
}

/* Class of the character at s[pos] and its width in bytes. Bytes that are
 * not valid UTF-8 (stray continuation bytes, overlong forms, surrogates,
 * truncated sequences) are symbols of width 1. */
static inline int rl_tok_char_class(const uint8_t *s, size_t len, size_t pos, size_t *w) {
    uint8_t c = s[pos];
    if (c < 0x80) { *w = 1; return ascii_class(c); }
    utf8proc_int32_t cp;
    utf8proc_ssize_t n = utf8proc_iterate(s + pos, (utf8proc_ssize_t)(len - pos), &cp);
    if (n <= 0) { *w = 1; return CL_OTHER; }
    *w = (size_t)n;
    return class_of_cp(cp);
}

/* End of the run of characters of class cl starting at pos. */
static inline size_t rl_tok_run_end(const uint8_t *s, size_t len, size_t pos, int cl) {
    while (pos < len) {
        size_t w;
        if (rl_tok_char_class(s, len, pos, &w) != cl) break;
        pos += w;
    }
    return pos;
}


#endif
