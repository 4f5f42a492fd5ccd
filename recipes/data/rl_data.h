/* recipes/data/rl_data.h - the training data: JSONL readers for the public
 * schemas (demonstrations, HH-RLHF, PKU-SafeRLHF, prompt lists), their
 * tokenization into fixed-layout rows, and seeded, resumable batch iteration.
 *
 * Folder recipes/data/: data files in the public schemas, token rows, batching;
 * may include models/ and below. Start reading here.
 *
 *   char err[512];
 *   rl_dataset *ds;
 *   if (rl_dataset_load("hh.jsonl.gz", RL_DATA_AUTO, 0, &ds, err, sizeof err) != RL_OK)
 *       { fprintf(stderr, "%s\n", err); ... }            // "hh.jsonl.gz:17: missing field \"rejected\""
 *   rl_tok_opts o = rl_tok_opts_default(128);
 *   rl_tokdata *td = rl_tokdata_new(ds, tok, RL_ROWS_PAIRS, &o, err, sizeof err);
 *   rl_batcher *it = rl_batcher_new(td, 32, seed, 1);
 *   const rl_data_batch *b = rl_batcher_next(it);       // b->chosen.ids [B, T] ...
 *   rl_data_cursor cur = rl_batcher_cursor(it);          // save with the checkpoint
 *   ...
 *   rl_batcher_free(it); rl_tokdata_free(td); rl_dataset_free(ds);
 *
 * Files: one JSON object per line, plain or gzip-compressed (zlib reads both
 * transparently; the name does not matter). A UTF-8 byte-order mark before the
 * first line is ignored; "\r\n" line ends are accepted. Strings must be valid
 * UTF-8 without NUL characters (jansson's rules).
 *
 * Bad lines. A line that is not a JSON object, lacks a field, has a field of
 * the wrong type or value, or (PKU) names as safer a response labelled unsafe
 * while the other is labelled safe (safe-rlhf raises on such pairs) is
 * reported as "FILE:LINE: what is wrong". By default the load stops at the
 * first one and fails with that message. With skip_bad_lines the line is
 * skipped and counted (report.bad), and the first message is kept
 * (report.first_bad). Fields not in the schema are ignored.
 *
 * Blank lines (empty or only whitespace) are not records and not errors:
 * they are skipped and counted apart (report.blank), because editors and
 * concatenation leave them, and refusing a file for a trailing blank line
 * helps nobody. Nothing else is ever dropped.
 *
 * HH-RLHF prompt split (objectives.md): the prompt is the longest common
 * prefix of "chosen" and "rejected" cut back to just after its LAST
 * "\n\nAssistant:" (the marker belongs to the prompt); each response is the
 * rest of its transcript (usually beginning with a space). A pair whose
 * common prefix holds no "\n\nAssistant:" is a bad line. Identical
 * transcripts are kept (they are valid, if useless) and counted
 * (report.identical_pairs).
 *
 * Token rows. A row is  prompt ids + response ids + EOS, right-padded with
 * the PAD id (the tokenizer's "<|pad|>" if it has one, else EOS):
 *   ids  i32 [T]   the tokens,
 *   attn i32 [T]   1 on real tokens (prompt, response, EOS), 0 on padding,
 *   mask i32 [T]   1 on response tokens including EOS: the tokens whose
 *                  log-probability is trained (token-aligned, rl_gpt2.h).
 * The prompt is first rendered through a template ("{prompt}" is replaced
 * by the record's prompt). HH prompts are already transcripts and use
 * "{prompt}"; the other formats default to RL_DATA_TEMPLATE, HH's own turn
 * format, so that every format yields the same token layout. An empty
 * rendered prompt gets the EOS id as a beginning-of-text token (GPT-2's
 * convention), so that the first response token has a log-probability.
 *
 * Truncation to T (the rule, so that the trained tokens stay meaningful):
 * when prompt + response + EOS exceed T, the response keeps
 * r = min(R, max(T - P, T / 2)) of its R tokens (EOS counted in R), from its
 * start; the prompt keeps its LAST T - r tokens (the turn being answered).
 * So the response is never dropped whole, a long response cannot push the
 * prompt below T - T/2 tokens, and a cut response loses its EOS (a model
 * must not learn to stop where text was cut). Prompt-only rows keep the last
 * max_prompt tokens of the prompt. Every cut is counted (rl_trunc_stats).
 */
#ifndef RL_DATA_H
#define RL_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "rl_engine.h"
#include "rl_file.h" /* rl_path_mkdirs, rl_atomic_* */
#include "rl_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* HH-RLHF's turn format, the default template of formats whose prompt is
 * plain text (demonstrations, PKU-SafeRLHF, prompt lists). */
#define RL_DATA_TEMPLATE "\n\nHuman: {prompt}\n\nAssistant:"
/* The template that uses the prompt as it is. */
#define RL_DATA_TEMPLATE_NONE "{prompt}"
/* The marker an HH-RLHF prompt ends with. */
#define RL_HH_ASSISTANT "\n\nAssistant:"

typedef enum {
    RL_DATA_AUTO = 0, /* decided by the first record's fields (see rl_dataset_load) */
    RL_DATA_DEMOS,    /* {"prompt": str, "response": str}; "completion" for "response" (TRL's
                       * prompt-completion format, unpaired preference data with a "label") */
    RL_DATA_HH,       /* {"chosen": str, "rejected": str}: full transcripts */
    RL_DATA_PKU,      /* PKU-SafeRLHF: prompt, response_0/1, is_response_0/1_safe, better/safer_response_id */
    RL_DATA_PROMPTS,  /* {"prompt": str} */
} rl_data_format;

/* "auto", "demos", "hh", "pku", "prompts". */
const char *rl_data_format_name(rl_data_format f);
/* The inverse of rl_data_format_name; RL_ERR_ARG for an unknown name. */
rl_status rl_data_format_parse(const char *name, rl_data_format *out);

/* One record. Strings are NUL-terminated, malloc'ed, owned by the dataset. */
typedef struct rl_record {
    int64_t line;        /* 1-based line of the file it came from */
    char *prompt;        /* HH: the transcript through the last "\n\nAssistant:" */
    char *response[2];   /* DEMOS: [0] (and [1] NULL); HH: [0] chosen, [1] rejected;
                          * PKU: response_0, response_1; PROMPTS: both NULL */
    int better_id;       /* HH: 0 (chosen); PKU: better_response_id; else -1 */
    int safer_id;        /* PKU: safer_response_id; else -1 */
    int is_safe[2];      /* PKU: is_response_k_safe (0/1); else -1 */
    int severity[2];     /* PKU (newer releases): response_k_severity_level, -1 when absent */
} rl_record;

/* What a load saw. */
typedef struct rl_data_report {
    int64_t lines;            /* lines read (blank ones included) */
    int64_t records;          /* records kept */
    int64_t blank;            /* blank lines skipped */
    int64_t bad;              /* malformed lines skipped (skip_bad_lines only) */
    int64_t identical_pairs;  /* HH pairs whose transcripts are equal (kept) */
    char first_bad[512];      /* the first skipped line's "FILE:LINE: message" */
} rl_data_report;

/* A value of a column a recipe declares (input label : f32[B] from "label"). */
typedef enum { RL_COL_NUMBER = 1, RL_COL_BOOL, RL_COL_STRING } rl_col_kind;
typedef struct rl_colval {
    rl_col_kind kind;
    double num;               /* NUMBER; BOOL: 0 or 1 */
    char *str;                /* STRING (malloc'ed, owned by the dataset) */
} rl_colval;

typedef struct rl_dataset {
    rl_data_format format;    /* never RL_DATA_AUTO once loaded */
    char *path;
    int64_t n;                /* records */
    rl_record *rec;
    rl_data_report report;
    int n_cols;               /* the columns asked for (rl_dataset_load_columns) */
    char **col_names;
    rl_colval *cols;          /* [n * n_cols]: record i's value of column c at i * n_cols + c */
} rl_dataset;

/* Reads a JSONL file (plain or gzip) of the given format. RL_DATA_AUTO picks
 * the format from the first record's fields: "chosen" -> HH, "response_0" ->
 * PKU, "response" -> demos, else "prompt" -> prompts. On failure returns
 * RL_ERR_IO (file) or RL_ERR_ARG (a bad line, without skip_bad_lines) with
 * "FILE: ..." or "FILE:LINE: ..." in err, and *out = NULL. An empty file is a
 * valid dataset of 0 records (format "prompts" when AUTO had nothing to go by). */
rl_status rl_dataset_load(const char *path, rl_data_format format, int skip_bad_lines,
                          rl_dataset **out, char *err, size_t errlen);
/* rl_dataset_load, and also the columns cols[0 .. n_cols): fields of each
 * record ("a.b" is the field b of the object a), each a number, a boolean or
 * a string. A record without one (or with null, an object or an array
 * there) is a bad line: "FILE:LINE: missing field \"label\"". */
rl_status rl_dataset_load_columns(const char *path, rl_data_format format, int skip_bad_lines,
                                  const char *const *cols, int n_cols, rl_dataset **out, char *err,
                                  size_t errlen);
/* Record i's value of column c (0 <= c < ds->n_cols). */
const rl_colval *rl_dataset_value(const rl_dataset *ds, int64_t i, int c);
void rl_dataset_free(rl_dataset *ds);
/* A one-line summary: "hh.jsonl: hh, 1000 records (1002 lines: 2 blank, 0 bad skipped)". */
char *rl_dataset_describe(const rl_dataset *ds, char *buf, size_t n);

/* Parses one line's text (without its newline) as a record of format fmt
 * (not AUTO). On failure returns RL_ERR_ARG with the message (no FILE:LINE
 * prefix) in msg; *out is untouched. Strings in *out are the caller's to free
 * (rl_record_clear). For tests and fuzzing. */
rl_status rl_record_parse(const char *text, size_t len, rl_data_format fmt, rl_record *out,
                          char *msg, size_t msglen);
void rl_record_clear(rl_record *r);

/* HH-RLHF: the length of the prompt of a pair of transcripts (the common
 * prefix cut back to just after its last "\n\nAssistant:"), or -1 when the
 * common prefix holds no such marker. */
int64_t rl_hh_prompt_len(const char *chosen, size_t chosen_len, const char *rejected,
                         size_t rejected_len);

/* ---- tokenization ----------------------------------------------------------- */

/* What rows to make of a dataset. */
typedef enum {
    RL_ROWS_SFT = 0, /* one row per record: demos' response, HH's chosen, PKU's better */
    RL_ROWS_PAIRS,   /* two aligned rows per record: HH or PKU only */
    RL_ROWS_PROMPTS, /* the prompt alone (no response, no EOS), from any format */
} rl_rows_kind;

typedef struct rl_tok_opts {
    int64_t T;              /* row width: the context length; >= 2 */
    const char *tmpl;       /* prompt template with "{prompt}"; NULL: the format's default */
    int64_t max_prompt;     /* PROMPTS rows: keep at most this many (the last); 0: T */
    int pad_to_longest;     /* 1: a batch is as wide as its longest row, not T */
    /* A chat template (models/rl_chat_template.h), or NULL. When set, tmpl is
     * not used: the prompt becomes messages (an HH transcript's "Human:" /
     * "Assistant:" turns, each trimmed, as user / assistant; any other
     * format's prompt as one user turn), rendered with the generation prompt
     * and encoded with its special tokens; the response follows as plain
     * text, stripped of leading whitespace, then EOS (which for a chat model
     * is its end-of-turn token, e.g. <|im_end|>, <|eot_id|>), as TRL's
     * trainers split apply_chat_template's output into prompt and completion. */
    const struct rl_chat_template *chat;
} rl_tok_opts;

/* T, the default template, max_prompt 0, fixed width. */
rl_tok_opts rl_tok_opts_default(int64_t T);

/* What truncation cut, over all rows made. */
typedef struct rl_trunc_stats {
    int64_t rows;                    /* rows made (a pair is two rows) */
    int64_t rows_truncated;          /* rows that lost any token */
    int64_t prompt_tokens_dropped;
    int64_t response_tokens_dropped; /* EOS included */
    int64_t eos_dropped;             /* rows whose EOS was cut */
    int64_t max_len;                 /* the longest row before truncation */
} rl_trunc_stats;

/* A tokenized dataset (opaque): every row computed once, so batches are
 * copies. It refers to its dataset's records: free it before the dataset. */
typedef struct rl_tokdata rl_tokdata;

/* Tokenizes ds into rows of the given kind. NULL with a message in err for a
 * kind the format cannot give (pairs from demos), a bad template (no
 * "{prompt}"), T < 2, or a tokenizer failure (naming FILE:LINE of the record). */
rl_tokdata *rl_tokdata_new(const rl_dataset *ds, rl_tokenizer *tok, rl_rows_kind kind,
                           const rl_tok_opts *opts, char *err, size_t errlen);
void rl_tokdata_free(rl_tokdata *td);
/* Examples: records (a pair is one example). */
int64_t rl_tokdata_size(const rl_tokdata *td);
/* 1 when pairs carry safety labels (PKU). */
int rl_tokdata_has_safety(const rl_tokdata *td);
rl_trunc_stats rl_tokdata_stats(const rl_tokdata *td);
int32_t rl_tokdata_pad_id(const rl_tokdata *td);
int32_t rl_tokdata_eos_id(const rl_tokdata *td);
/* The dataset record example i came from. */
const rl_record *rl_tokdata_record(const rl_tokdata *td, int64_t i);

/* B rows of width T, row-major, host memory. */
typedef struct rl_rows {
    int64_t B, T;
    int32_t *ids, *attn, *mask;  /* [B, T] */
    int64_t *len;                /* [B] real tokens (prompt + response kept) */
    int64_t *prompt_len;         /* [B] prompt tokens kept */
} rl_rows;

/* A batch. Which parts are filled depends on the kind; arrays are allocated
 * once for `cap` examples and reused. */
typedef struct rl_data_batch {
    rl_rows_kind kind;
    int64_t B;                   /* examples in this batch (<= cap) */
    int64_t cap;
    int64_t *index;              /* [B] example indices */
    rl_rows rows;                /* SFT, PROMPTS */
    rl_rows chosen, rejected;    /* PAIRS: aligned by pair (same prompt); PKU: better, worse */
    /* PAIRS with safety labels (PKU), the cost model's layout (objectives.md):
     * s = the safer response, u = the other; cost_sign +1 unsafe, -1 safe. */
    int has_safety;
    rl_rows safer, unsafer;
    int32_t *better_id, *safer_id;    /* [B] 0/1 */
    int32_t *is_safe0, *is_safe1;     /* [B] 0/1 */
    float *sign_s, *sign_u;           /* [B] +1 / -1 */
} rl_data_batch;

rl_data_batch *rl_data_batch_new(const rl_tokdata *td, int64_t cap);
void rl_data_batch_free(rl_data_batch *b);
/* Fills b with the n (<= b->cap) examples index[0..n). */
rl_status rl_data_batch_fill(const rl_tokdata *td, const int64_t *index, int64_t n, rl_data_batch *b);

/* ---- batch iteration ---------------------------------------------------------- */

/* Where an iteration is: everything needed to resume it exactly. The order
 * of epoch e is a function of (seed, e) alone, so no permutation is stored. */
typedef struct rl_data_cursor {
    uint64_t seed;
    int64_t epoch;  /* 0-based */
    int64_t pos;    /* next example's position within the epoch's order */
} rl_data_cursor;

typedef struct rl_batcher rl_batcher;

/* Batches of exactly B examples; when an epoch runs out mid-batch the batch
 * is completed from the next epoch's order (constant shapes for the tape).
 * shuffle 0 keeps file order (every epoch). NULL for an empty dataset or B < 1. */
rl_batcher *rl_batcher_new(const rl_tokdata *td, int64_t B, uint64_t seed, int shuffle);
/* Length grouping: each window of group * B examples of an epoch's order is
 * sorted by length and its batches shuffled, so batches pad little (with
 * pad_to_longest). group <= 1 turns it off (the default). Set it before the
 * first batch, and the same way when resuming. */
void rl_batcher_set_length_groups(rl_batcher *it, int64_t group);
void rl_batcher_free(rl_batcher *it);
/* The next batch (owned by the iterator, valid until the next call). */
const rl_data_batch *rl_batcher_next(rl_batcher *it);
rl_data_cursor rl_batcher_cursor(const rl_batcher *it);
/* Resumes at a saved cursor (its seed included). RL_ERR_ARG when pos is
 * outside [0, size] or epoch < 0. */
rl_status rl_batcher_seek(rl_batcher *it, rl_data_cursor c);
/* The order of an epoch: perm[0..n) gets a permutation of 0..n-1 (Fisher-Yates
 * driven by rl_rng seeded from seed and epoch). */
void rl_data_epoch_order(uint64_t seed, int64_t epoch, int shuffle, int64_t n, int64_t *perm);
/* "seed=S epoch=E pos=P" (for checkpoint metadata); returns buf. */
char *rl_data_cursor_format(const rl_data_cursor *c, char *buf, size_t n);
rl_status rl_data_cursor_parse(const char *s, rl_data_cursor *c);


#ifdef __cplusplus
}
#endif
#endif
