/* models/rl_tokenizer.h - text <-> token ids, behind one interface so the
 * data pipeline does not care which tokenizer it holds:
 *
 *   - the byte-level tokenizer: one token per byte (id = byte value) plus a
 *     few special tokens (ids 256..263, below); no files needed;
 *   - GPT-2's byte-level BPE, read from the standard vocab.json + merges.txt,
 *     encoding exactly as OpenAI's gpt-2/src/encoder.py does;
 *   - a Hugging Face tokenizer.json (or tokenizer.json.gz) with a byte-level
 *     BPE model, as Llama 3 and Qwen2/2.5/3 publish it, encoding exactly as
 *     the Hugging Face `tokenizers` library does (models/tokenizer_hf.c says
 *     which fields and values it supports; anything else is refused with a
 *     message naming the file and the field).
 *
 *   char err[512];
 *   rl_tokenizer *tok = rl_tokenizer_open("models/gpt2", err, sizeof err);   // or "bytes"
 *   if (!tok) { fprintf(stderr, "%s\n", err); ... }
 *   int32_t *ids; int64_t n;
 *   if (rl_tokenizer_encode(tok, text, strlen(text), &ids, &n) != RL_OK) ...
 *   char *back; size_t len;
 *   rl_tokenizer_decode(tok, ids, n, &back, &len);   // back[0..len) == text
 *   free(ids); free(back);
 *   rl_tokenizer_free(tok);
 *
 * Round trip: decode(encode(x)) == x byte for byte, for any bytes, including
 * invalid UTF-8 and NUL bytes (lengths are explicit).
 *
 * tokenizer.json: its added tokens are the special tokens here. Without
 * RL_TOKENIZE_SPECIAL those marked "special" are plain text, but the others
 * (Qwen3's <think>, <tool_call>, ...) are still split out, as the library
 * does with encode_special_tokens (transformers' split_special_tokens=True);
 * with it, all of them are (the library's default, longest match first).
 * RL_TOKENIZE_ADD_BOS adds what the file's post_processor template puts
 * around one sequence (Llama 3: <|begin_of_text|> in front), i.e. the
 * library's add_special_tokens=True; it does nothing for other tokenizers.
 * With an NFC normalizer (Qwen2/3), decode(encode(x)) is NFC(x), not x.
 *
 * Special tokens (<|endoftext|> and, for the byte tokenizer, <|pad|>, <|sep|>)
 * are NOT recognised in the text by rl_tokenizer_encode: the text
 * "<|endoftext|>" is encoded as ordinary characters, so user-supplied text
 * cannot inject an end-of-sequence (GPT-2's encoder.py behaves the same way).
 * The pipeline appends rl_tokenizer_eos_id() itself, or calls
 * rl_tokenizer_encode_ex(..., RL_TOKENIZE_SPECIAL, ...) on trusted text (a
 * prompt template) to have the special tokens' text turned into their ids.
 * Decoding a special id gives its text ("<|endoftext|>").
 *
 * End of sequence and padding: both use rl_tokenizer_eos_id() (the GPT-2
 * convention; padding is masked out anyway). A BPE vocab.json must contain
 * "<|endoftext|>". Other special ids are found with rl_tokenizer_token_id().
 * A tokenizer.json takes eos/bos/pad from tokenizer_config.json beside it
 * (eos_token, bos_token, pad_token: a string, {"content": ...} or null);
 * without that file, or where a field is absent (or eos_token null), eos is
 * the first of <|endoftext|>, <|end_of_text|>, </s> among the added tokens,
 * bos <|begin_of_text|> or <s> among them (else -1), and pad is eos. A null
 * bos_token or pad_token means none (bos -1, pad = eos).
 *
 * GPT-2 pre-tokenization (rl_pretokenizer_next) follows the pattern of
 * encoder.py, which uses the `regex` module (not Python's `re`):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * with \p{L} = Lu Ll Lt Lm Lo, \p{N} = Nd Nl No (from utf8proc's tables) and
 * \s = the Unicode White_Space property, which is what `regex` uses:
 * U+0009..U+000D, U+0020, U+0085, U+00A0, U+1680, U+2000..U+200A, U+2028,
 * U+2029, U+202F, U+205F, U+3000. (Python's `re` would add U+001C..U+001F;
 * JavaScript's \s drops U+0085 and adds U+FEFF; tiktoken and Hugging Face's
 * tokenizers agree with `regex`.) Bytes that are not valid UTF-8 count as
 * symbols (neither letter, number nor space), one per byte.
 *
 * Errors: functions return an rl_status (RL_ERR_IO: a file cannot be read or
 * is malformed; RL_ERR_ARG: bad arguments, e.g. an id out of range given to
 * decode; RL_ERR_MEMORY). Loaders write a message naming the file (and the
 * line, for parse errors) into the caller's buffer and return NULL; later
 * failures keep their message in rl_tokenizer_error(tok).
 *
 * A tokenizer is not safe to use from two threads at once (encode keeps a
 * cache of recently seen words); give each thread its own.
 */
#ifndef RL_TOKENIZER_H
#define RL_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "rl_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_tokenizer rl_tokenizer;

typedef enum { RL_TOKENIZER_BYTES = 0, RL_TOKENIZER_BPE = 1 } rl_tokenizer_kind;

/* The byte-level tokenizer's ids: 0..255 are the bytes, then special tokens.
 * 259..263 are reserved (they decode to "<|reserved_N|>") so that new special
 * tokens can be given ids later without changing the vocabulary size, and
 * with it the shape of a model's embedding. */
enum {
    RL_TOK_BYTES_EOS = 256,   /* "<|endoftext|>": end of sequence, also padding */
    RL_TOK_BYTES_PAD = 257,   /* "<|pad|>" */
    RL_TOK_BYTES_SEP = 258,   /* "<|sep|>": between prompt and response */
    RL_TOK_BYTES_VOCAB = 264, /* vocabulary size: 256 bytes + 8 specials */
};

/* Flags of rl_tokenizer_encode_ex. */
enum {
    RL_TOKENIZE_SPECIAL = 1u << 0, /* turn special tokens' text into their ids */
    RL_TOKENIZE_ADD_BOS = 1u << 1, /* tokenizer.json: add the post-processor's template (BOS) */
};

/* The byte-level tokenizer (never fails but for memory: NULL). */
rl_tokenizer *rl_tokenizer_bytes_new(void);
/* GPT-2 BPE from vocab.json and merges.txt. NULL with a message in err
 * (which may be NULL) on failure. */
rl_tokenizer *rl_tokenizer_bpe_load(const char *vocab_json, const char *merges_txt,
                                    char *err, size_t errlen);
/* The same from DIR/vocab.json and DIR/merges.txt. */
rl_tokenizer *rl_tokenizer_bpe_load_dir(const char *dir, char *err, size_t errlen);
/* A Hugging Face tokenizer.json, or tokenizer.json.gz (gzip). NULL with a
 * message in err naming the file (and the field) on failure. */
rl_tokenizer *rl_tokenizer_hf_load(const char *path, char *err, size_t errlen);
/* "bytes" gives the byte-level tokenizer; a file is a tokenizer.json(.gz)
 * for rl_tokenizer_hf_load; a directory gives its tokenizer.json (or
 * tokenizer.json.gz) when it has one, else it goes to
 * rl_tokenizer_bpe_load_dir. For command lines and recipe files. */
rl_tokenizer *rl_tokenizer_open(const char *spec, char *err, size_t errlen);
void rl_tokenizer_free(rl_tokenizer *tok);

/* Encodes text[0..len) into a malloc'ed array *ids of *n ids (the caller
 * frees it; *ids is non-NULL even when *n == 0). Special tokens' text is
 * encoded as plain text. */
rl_status rl_tokenizer_encode(rl_tokenizer *tok, const char *text, size_t len,
                              int32_t **ids, int64_t *n);
/* The same with RL_TOKENIZE_* flags. */
rl_status rl_tokenizer_encode_ex(rl_tokenizer *tok, const char *text, size_t len,
                                 unsigned flags, int32_t **ids, int64_t *n);
/* Decodes n ids into a malloc'ed buffer *text of *len bytes, NUL-terminated
 * for convenience (text may contain NUL bytes itself). An id outside
 * [0, vocab_size) is RL_ERR_ARG, with the id and its position in the message. */
/* A malloc'ed, NUL-terminated copy of s[0..n) that JSON can hold: every byte
 * that is not part of a valid UTF-8 character, and NUL, becomes U+FFFD (an
 * untrained model emits arbitrary bytes). NULL when out of memory. */
char *rl_utf8_sanitize(const char *s, size_t n);

rl_status rl_tokenizer_decode(rl_tokenizer *tok, const int32_t *ids, int64_t n,
                              char **text, size_t *len);

rl_tokenizer_kind rl_tokenizer_kind_of(const rl_tokenizer *tok);
int32_t rl_tokenizer_vocab_size(const rl_tokenizer *tok);
int32_t rl_tokenizer_eos_id(const rl_tokenizer *tok);
/* Beginning of sequence (-1: none; the GPT-2 and byte tokenizers have none). */
int32_t rl_tokenizer_bos_id(const rl_tokenizer *tok);
/* Padding: tokenizer_config.json's pad_token, else eos. */
int32_t rl_tokenizer_pad_id(const rl_tokenizer *tok);
/* The id of a token given by its text (a special token such as "<|pad|>", a
 * byte token's single byte, or a BPE vocabulary entry as raw bytes), or -1. */
int32_t rl_tokenizer_token_id(const rl_tokenizer *tok, const char *token, size_t len);
/* The most recent failure's message ("" when none). */
const char *rl_tokenizer_error(const rl_tokenizer *tok);

/* GPT-2's pre-tokenizer as a scanner: the end (exclusive) of the piece that
 * starts at pos (< len). The pieces tile the text: start with pos = 0 and
 * continue from each end until len. */
size_t rl_pretokenizer_next(const char *text, size_t len, size_t pos);

/* For tests: 1 makes a BPE tokenizer merge with the plain O(n^2) loop of
 * encoder.py instead of the priority queue, and skip the word cache. */
void rl_tokenizer_set_reference_mode(rl_tokenizer *tok, int on);

#ifdef __cplusplus
}
#endif
#endif
