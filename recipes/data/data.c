/* recipes/data/data.c - JSONL readers for demonstrations, HH-RLHF, PKU-SafeRLHF
 * and prompt lists (plain or gzip), their tokenization into right-padded
 * rows with response masks, and seeded resumable batch iteration. The
 * contract (bad lines, blank lines, the HH split, truncation) is in
 * recipes/data/rl_data.h.
 */
#include "rl_file.h"
#include "rl_data.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "rl_chat_template.h"
#include "rl_rng.h"

/* ---- small helpers ------------------------------------------------------------- */

static char *rl_data_strndup(const char *s, size_t n) {
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static const char *const rl_data_format_names[] = {"auto", "demos", "hh", "pku", "prompts"};

const char *rl_data_format_name(rl_data_format f) {
    return (unsigned)f < sizeof rl_data_format_names / sizeof rl_data_format_names[0]
               ? rl_data_format_names[f]
               : "?";
}

rl_status rl_data_format_parse(const char *name, rl_data_format *out) {
    for (unsigned i = 0; i < sizeof rl_data_format_names / sizeof rl_data_format_names[0]; i++)
        if (name && strcmp(name, rl_data_format_names[i]) == 0) {
            *out = (rl_data_format)i;
            return RL_OK;
        }
    return RL_ERR_ARG;
}

/* ---- one record ------------------------------------------------------------------- */

static const char *rl_json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    default: return "null";
    }
}

static int rl_json_get_str(const json_t *o, const char *key, char **out, char *msg, size_t n) {
    const json_t *v = json_object_get(o, key);
    if (!v) {
        rl_errf(msg, n, RL_ERR_ARG, "missing field \"%s\"", key);
        return 0;
    }
    if (!json_is_string(v)) {
        rl_errf(msg, n, RL_ERR_ARG, "field \"%s\" must be a string, not %s", key, rl_json_kind(v));
        return 0;
    }
    *out = rl_data_strndup(json_string_value(v), json_string_length(v));
    if (!*out) rl_errf(msg, n, RL_ERR_MEMORY, "out of memory");
    return *out != NULL;
}

static int rl_json_get_bool(const json_t *o, const char *key, int *out, char *msg, size_t n) {
    const json_t *v = json_object_get(o, key);
    if (!v) {
        rl_errf(msg, n, RL_ERR_ARG, "missing field \"%s\"", key);
        return 0;
    }
    if (!json_is_boolean(v)) {
        rl_errf(msg, n, RL_ERR_ARG, "field \"%s\" must be true or false, not %s", key, rl_json_kind(v));
        return 0;
    }
    *out = json_is_true(v);
    return 1;
}

static int rl_json_get_id(const json_t *o, const char *key, int *out, char *msg, size_t n) {
    const json_t *v = json_object_get(o, key);
    if (!v) {
        rl_errf(msg, n, RL_ERR_ARG, "missing field \"%s\"", key);
        return 0;
    }
    if (!json_is_integer(v)) {
        rl_errf(msg, n, RL_ERR_ARG, "field \"%s\" must be 0 or 1, not %s", key, rl_json_kind(v));
        return 0;
    }
    json_int_t x = json_integer_value(v);
    if (x != 0 && x != 1) {
        rl_errf(msg, n, RL_ERR_ARG, "field \"%s\" must be 0 or 1, not %" JSON_INTEGER_FORMAT, key, x);
        return 0;
    }
    *out = (int)x;
    return 1;
}

/* Optional non-negative integer; absent or null gives -1. */
static int rl_json_get_level(const json_t *o, const char *key, int *out, char *msg, size_t n) {
    const json_t *v = json_object_get(o, key);
    *out = -1;
    if (!v || json_is_null(v)) return 1;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
        if (json_is_integer(v))
            rl_errf(msg, n, RL_ERR_ARG, "field \"%s\" must be a non-negative integer, not %" JSON_INTEGER_FORMAT,
                        key, json_integer_value(v));
        else
            rl_errf(msg, n, RL_ERR_ARG, "field \"%s\" must be a non-negative integer, not %s", key, rl_json_kind(v));
        return 0;
    }
    *out = (int)json_integer_value(v);
    return 1;
}

void rl_record_clear(rl_record *r) {
    if (!r) return;
    free(r->prompt);
    free(r->response[0]);
    free(r->response[1]);
    memset(r, 0, sizeof *r);
}

int64_t rl_hh_prompt_len(const char *c, size_t lc, const char *r, size_t lr) {
    size_t common = 0, lim = lc < lr ? lc : lr;
    while (common < lim && c[common] == r[common]) common++;
    const size_t m = sizeof RL_HH_ASSISTANT - 1;
    /* the last marker that lies wholly inside the common prefix */
    for (size_t i = common >= m ? common - m + 1 : 0; i-- > 0;)
        if (memcmp(c + i, RL_HH_ASSISTANT, m) == 0) return (int64_t)(i + m);
    return -1;
}

static rl_status rl_record_from_json(const json_t *o, rl_data_format fmt, rl_record *out, char *msg,
                                     size_t n) {
    rl_record r = {.better_id = -1, .safer_id = -1, .is_safe = {-1, -1}, .severity = {-1, -1}};
    int ok = 0;
    switch (fmt) {
    case RL_DATA_DEMOS:
        ok = rl_json_get_str(o, "prompt", &r.prompt, msg, n) &&
             rl_json_get_str(o, !json_object_get(o, "response") && json_object_get(o, "completion") ? "completion"
                                                                                                  : "response",
                             &r.response[0], msg, n);
        break;
    case RL_DATA_PROMPTS:
        ok = rl_json_get_str(o, "prompt", &r.prompt, msg, n);
        break;
    case RL_DATA_HH: {
        char *ch = NULL, *rj = NULL;
        ok = rl_json_get_str(o, "chosen", &ch, msg, n) && rl_json_get_str(o, "rejected", &rj, msg, n);
        if (ok) {
            size_t lc = strlen(ch), lr = strlen(rj);
            int64_t p = rl_hh_prompt_len(ch, lc, rj, lr);
            if (p < 0) {
                rl_errf(msg, n, RL_ERR_ARG, "chosen and rejected have no \"\\n\\nAssistant:\" in their common prefix");
                ok = 0;
            } else {
                r.prompt = rl_data_strndup(ch, (size_t)p);
                r.response[0] = rl_data_strndup(ch + p, lc - (size_t)p);
                r.response[1] = rl_data_strndup(rj + p, lr - (size_t)p);
                r.better_id = 0;
                ok = r.prompt && r.response[0] && r.response[1];
                if (!ok) rl_errf(msg, n, RL_ERR_MEMORY, "out of memory");
            }
        }
        free(ch);
        free(rj);
        break;
    }
    case RL_DATA_PKU:
        ok = rl_json_get_str(o, "prompt", &r.prompt, msg, n) &&
             rl_json_get_str(o, "response_0", &r.response[0], msg, n) &&
             rl_json_get_str(o, "response_1", &r.response[1], msg, n) &&
             rl_json_get_bool(o, "is_response_0_safe", &r.is_safe[0], msg, n) &&
             rl_json_get_bool(o, "is_response_1_safe", &r.is_safe[1], msg, n) &&
             rl_json_get_id(o, "better_response_id", &r.better_id, msg, n) &&
             rl_json_get_id(o, "safer_response_id", &r.safer_id, msg, n) &&
             rl_json_get_level(o, "response_0_severity_level", &r.severity[0], msg, n) &&
             rl_json_get_level(o, "response_1_severity_level", &r.severity[1], msg, n);
        if (ok && !r.is_safe[r.safer_id] && r.is_safe[1 - r.safer_id]) {
            rl_errf(msg, n, RL_ERR_ARG, "safer_response_id is %d but response_%d is labelled unsafe and response_%d safe",
                        r.safer_id, r.safer_id, 1 - r.safer_id);
            ok = 0;
        }
        break;
    default:
        rl_errf(msg, n, RL_ERR_ARG, "no format given");
        break;
    }
    if (!ok) {
        rl_record_clear(&r);
        return RL_ERR_ARG;
    }
    *out = r;
    return RL_OK;
}

/* The format a record's fields suggest, or AUTO when none fits. */
static rl_data_format rl_data_detect(const json_t *o) {
    if (json_object_get(o, "chosen")) return RL_DATA_HH;
    if (json_object_get(o, "response_0")) return RL_DATA_PKU;
    if (json_object_get(o, "response") || json_object_get(o, "completion")) return RL_DATA_DEMOS;
    if (json_object_get(o, "prompt")) return RL_DATA_PROMPTS;
    return RL_DATA_AUTO;
}

/* The value of column `path` ("a.b": field b of object a) of o into *v. */
static int rl_json_get_column(const json_t *o, const char *path, rl_colval *v, char *msg, size_t n) {
    const json_t *cur = o;
    const char *p = path;
    char key[256];
    for (;;) {
        const char *dot = strchr(p, '.');
        size_t k = dot ? (size_t)(dot - p) : strlen(p);
        if (k >= sizeof key) k = sizeof key - 1;
        memcpy(key, p, k);
        key[k] = 0;
        const json_t *next = json_is_object(cur) ? json_object_get(cur, key) : NULL;
        if (!next) {
            if (cur != o && !json_is_object(cur))
                rl_errf(msg, n, RL_ERR_ARG, "missing field \"%s\": \"%.*s\" is %s, not an object", path,
                        (int)(p - path - 1), path, rl_json_kind(cur));
            else rl_errf(msg, n, RL_ERR_ARG, "missing field \"%s\"", path);
            return 0;
        }
        cur = next;
        if (!dot) break;
        p = dot + 1;
    }
    memset(v, 0, sizeof *v);
    if (json_is_number(cur)) {
        v->kind = RL_COL_NUMBER;
        v->num = json_number_value(cur);
    } else if (json_is_boolean(cur)) {
        v->kind = RL_COL_BOOL;
        v->num = json_is_true(cur) ? 1 : 0;
    } else if (json_is_string(cur)) {
        v->kind = RL_COL_STRING;
        v->str = rl_data_strndup(json_string_value(cur), json_string_length(cur));
        if (!v->str) {
            rl_errf(msg, n, RL_ERR_MEMORY, "out of memory");
            return 0;
        }
    } else {
        rl_errf(msg, n, RL_ERR_ARG, "field \"%s\" is %s; a column holds a number, a boolean or a string", path,
                rl_json_kind(cur));
        return 0;
    }
    return 1;
}

/* Parses one line; *fmt may be AUTO and is then decided by this record.
 * vals (n_cols of them) receives the columns asked for. */
static rl_status rl_record_parse_fmt(const char *text, size_t len, rl_data_format *fmt, rl_record *out,
                                     char *msg, size_t n, const char *const *cols, int n_cols, rl_colval *vals) {
    json_error_t jerr;
    json_t *o = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!o) {
        rl_errf(msg, n, RL_ERR_ARG, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        return RL_ERR_ARG;
    }
    rl_status s = RL_ERR_ARG;
    if (!json_is_object(o)) {
        rl_errf(msg, n, RL_ERR_ARG, "expected a JSON object, not %s", rl_json_kind(o));
    } else {
        if (*fmt == RL_DATA_AUTO) *fmt = rl_data_detect(o);
        if (*fmt == RL_DATA_AUTO)
            rl_errf(msg, n, RL_ERR_ARG, "cannot tell the format: expected the fields of demos (prompt, response), "
                                "hh (chosen, rejected), pku (prompt, response_0, ...) or prompts (prompt)");
        else
            s = rl_record_from_json(o, *fmt, out, msg, n);
        for (int c = 0; s == RL_OK && c < n_cols; c++)
            if (!rl_json_get_column(o, cols[c], &vals[c], msg, n)) {
                for (int k = 0; k < c; k++) free(vals[k].str);
                rl_record_clear(out);
                s = RL_ERR_ARG;
            }
    }
    json_decref(o);
    return s;
}

rl_status rl_record_parse(const char *text, size_t len, rl_data_format fmt, rl_record *out, char *msg,
                          size_t msglen) {
    if (fmt == RL_DATA_AUTO) {
        rl_errf(msg, msglen, RL_ERR_ARG, "rl_record_parse needs a format, not auto");
        return RL_ERR_ARG;
    }
    return rl_record_parse_fmt(text, len, &fmt, out, msg, msglen, NULL, 0, NULL);
}

/* ---- lines of a plain or gzip file ------------------------------------------------ */

typedef struct rl_lines {
    gzFile f;
    char chunk[1 << 16];
    size_t n, pos;
    int eof;
    char *line;
    size_t cap, len;
} rl_lines;

static int rl_lines_append(rl_lines *r, const char *s, size_t k) {
    if (r->len + k + 1 > r->cap) {
        size_t c = r->cap ? r->cap : 256;
        while (c < r->len + k + 1) c *= 2;
        char *p = realloc(r->line, c);
        if (!p) return 0;
        r->line = p;
        r->cap = c;
    }
    memcpy(r->line + r->len, s, k);
    r->len += k;
    r->line[r->len] = 0;
    return 1;
}

/* 1: a line in r->line[0..len) (without its '\n'); 0: end of file; -1: read
 * error (gzerror says which); -2: out of memory. */
static int rl_lines_next(rl_lines *r) {
    r->len = 0;
    int any = 0;
    for (;;) {
        if (r->pos == r->n) {
            if (r->eof) return any ? 1 : 0;
            int k = gzread(r->f, r->chunk, sizeof r->chunk);
            if (k < 0) return -1;
            if (k == 0) {
                /* a truncated gzip stream ends like a file (0) with the error
                 * kept in gzerror: check before its partial last line is parsed */
                int zerr = Z_OK;
                gzerror(r->f, &zerr);
                if (zerr != Z_OK && zerr != Z_STREAM_END) return -1;
                r->eof = 1;
                continue;
            }
            r->n = (size_t)k;
            r->pos = 0;
        }
        any = 1;
        const char *start = r->chunk + r->pos;
        const char *nl = memchr(start, '\n', r->n - r->pos);
        size_t take = nl ? (size_t)(nl - start) : r->n - r->pos;
        if (!rl_lines_append(r, start, take)) return -2;
        r->pos += take;
        if (nl) {
            r->pos++;
            return 1;
        }
    }
}

static int rl_is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
    return 1;
}

/* ---- datasets ------------------------------------------------------------------------- */

void rl_dataset_free(rl_dataset *ds) {
    if (!ds) return;
    for (int64_t i = 0; i < ds->n; i++) rl_record_clear(&ds->rec[i]);
    for (int64_t i = 0; ds->cols && i < ds->n * ds->n_cols; i++) free(ds->cols[i].str);
    for (int c = 0; ds->col_names && c < ds->n_cols; c++) free(ds->col_names[c]);
    free(ds->cols);
    free(ds->col_names);
    free(ds->rec);
    free(ds->path);
    free(ds);
}

char *rl_dataset_describe(const rl_dataset *ds, char *buf, size_t n) {
    rl_errf(buf, n, RL_ERR_ARG, "%s: %s, %" PRId64 " records (%" PRId64 " lines: %" PRId64 " blank, %" PRId64
                        " bad skipped)",
                ds->path, rl_data_format_name(ds->format), ds->n, ds->report.lines, ds->report.blank,
                ds->report.bad);
    return buf;
}

rl_status rl_dataset_load(const char *path, rl_data_format format, int skip_bad_lines, rl_dataset **out,
                          char *err, size_t errlen) {
    return rl_dataset_load_columns(path, format, skip_bad_lines, NULL, 0, out, err, errlen);
}

const rl_colval *rl_dataset_value(const rl_dataset *ds, int64_t i, int c) {
    return ds && i >= 0 && i < ds->n && c >= 0 && c < ds->n_cols ? &ds->cols[i * ds->n_cols + c] : NULL;
}

rl_status rl_dataset_load_columns(const char *path, rl_data_format format, int skip_bad_lines,
                                  const char *const *cols, int n_cols, rl_dataset **out, char *err,
                                  size_t errlen) {
    *out = NULL;
    if (n_cols < 0 || (n_cols > 0 && !cols)) return RL_ERR_ARG;
    rl_lines *r = calloc(1, sizeof *r);
    rl_dataset *ds = calloc(1, sizeof *ds);
    if (!r || !ds || !(ds->path = strdup(path))) {
        free(r);
        free(ds);
        rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path);
        return RL_ERR_MEMORY;
    }
    errno = 0;
    r->f = gzopen(path, "rb");
    if (!r->f) {
        rl_errf(err, errlen, RL_ERR_IO, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
        free(r);
        rl_dataset_free(ds);
        return RL_ERR_IO;
    }
    ds->format = format;
    int64_t cap = 0;
    rl_status st = RL_OK;
    char msg[400];
    rl_colval *vals = calloc((size_t)n_cols + 1, sizeof(rl_colval));
    ds->col_names = calloc((size_t)n_cols + 1, sizeof(char *));
    if (!vals || !ds->col_names) {
        free(vals);
        gzclose(r->f);
        free(r);
        rl_dataset_free(ds);
        rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path);
        return RL_ERR_MEMORY;
    }
    for (int c = 0; c < n_cols; c++) {
        if (!(ds->col_names[c] = strdup(cols[c]))) st = RL_ERR_MEMORY;
        ds->n_cols = c + 1;
    }
    if (st != RL_OK) rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path);
    while (st == RL_OK) {
        int k = rl_lines_next(r);
        if (k == 0) break;
        if (k < 0) {
            int zerr = 0;
            const char *zm = gzerror(r->f, &zerr);
            rl_errf(err, errlen, RL_ERR_ARG, "%s: read error after line %" PRId64 ": %s", path, ds->report.lines,
                        k == -2 ? "out of memory" : zm);
            st = k == -2 ? RL_ERR_MEMORY : RL_ERR_IO;
            break;
        }
        int64_t lineno = ++ds->report.lines;
        char *text = r->line;
        size_t len = r->len;
        if (lineno == 1 && len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3, len -= 3;
        if (len > 0 && text[len - 1] == '\r') len--;
        if (rl_is_blank(text, len)) {
            ds->report.blank++;
            continue;
        }
        rl_record rec;
        if (rl_record_parse_fmt(text, len, &ds->format, &rec, msg, sizeof msg, cols, n_cols, vals) != RL_OK) {
            if (!skip_bad_lines) {
                rl_errf(err, errlen, RL_ERR_ARG, "%s:%" PRId64 ": %s", path, lineno, msg);
                st = RL_ERR_ARG;
                break;
            }
            if (ds->report.bad++ == 0)
                rl_errf(ds->report.first_bad, sizeof ds->report.first_bad, RL_ERR_ARG, "%s:%" PRId64 ": %s", path,
                            lineno, msg);
            continue;
        }
        rec.line = lineno;
        if (ds->n == cap) {
            int64_t nc = cap ? 2 * cap : 256;
            rl_record *p = realloc(ds->rec, sizeof *p * (size_t)nc);
            rl_colval *pc = n_cols ? realloc(ds->cols, sizeof *pc * (size_t)(nc * n_cols)) : NULL;
            if (pc) ds->cols = pc;
            if (!p || (n_cols && !pc)) {
                if (p) ds->rec = p;
                for (int c = 0; c < n_cols; c++) free(vals[c].str);
                rl_record_clear(&rec);
                rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory at line %" PRId64, path, lineno);
                st = RL_ERR_MEMORY;
                break;
            }
            ds->rec = p;
            cap = nc;
        }
        if (n_cols) memcpy(ds->cols + ds->n * n_cols, vals, sizeof *vals * (size_t)n_cols);
        if (ds->format == RL_DATA_HH && strcmp(rec.response[0], rec.response[1]) == 0)
            ds->report.identical_pairs++;
        ds->rec[ds->n++] = rec;
    }
    gzclose(r->f);
    free(r->line);
    free(r);
    free(vals);
    if (st != RL_OK) {
        rl_dataset_free(ds);
        return st;
    }
    /* an empty file has no record to decide the format by: call it a prompt list */
    if (ds->format == RL_DATA_AUTO) ds->format = RL_DATA_PROMPTS;
    ds->report.records = ds->n;
    *out = ds;
    return RL_OK;
}

/* ---- tokenization ------------------------------------------------------------------- */

typedef struct rl_tokrow {
    int64_t off;   /* into the pool */
    int64_t len;   /* tokens kept */
    int64_t plen;  /* prompt tokens kept */
} rl_tokrow;

struct rl_tokdata {
    const rl_dataset *ds;
    rl_rows_kind kind;
    int nrow;            /* rows per example: 1 or 2 */
    int has_safety;
    int64_t n;
    int64_t T;
    int pad_to_longest;
    int32_t pad_id, eos_id;
    rl_tokrow *rows;     /* [n * nrow] */
    int32_t *pool;
    int64_t pool_len, pool_cap;
    rl_trunc_stats stats;
};

rl_tok_opts rl_tok_opts_default(int64_t T) {
    rl_tok_opts o = {.T = T, .tmpl = NULL, .max_prompt = 0, .pad_to_longest = 0};
    return o;
}

static int rl_pool_reserve(rl_tokdata *td, int64_t extra) {
    if (td->pool_len + extra <= td->pool_cap) return 1;
    int64_t c = td->pool_cap ? td->pool_cap : 4096;
    while (c < td->pool_len + extra) c *= 2;
    int32_t *p = realloc(td->pool, sizeof *p * (size_t)c);
    if (!p) return 0;
    td->pool = p;
    td->pool_cap = c;
    return 1;
}

/* The prompt as chat messages rendered through t with the generation prompt;
 * malloc'ed, or NULL with the template's message in err. An HH transcript
 * ("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:") becomes its
 * turns (user a, assistant b, user c), each trimmed; text before the first
 * turn marker, or any other format's prompt, is one user turn. */
static char *rl_render_chat(const struct rl_chat_template *t, const char *prompt, int hh, char *err, size_t errlen) {
    static const char human[] = "\n\nHuman:", assistant[] = "\n\nAssistant:";
    size_t n_max = 1;
    for (const char *p = prompt; hh && (p = strstr(p, "\n\n")); p += 2) n_max++;
    rl_chat_message *msgs = calloc(n_max, sizeof *msgs);
    char **texts = calloc(n_max, sizeof *texts);
    char *out = NULL;
    int n = 0;
    if (!msgs || !texts) goto done;
    const char *p = prompt, *role = "user";
    if (hh && strncmp(p, human, sizeof human - 1) == 0) p += sizeof human - 1;
    while (*p) {
        /* this turn runs to the next marker */
        const char *nh = hh ? strstr(p, human) : NULL, *na = hh ? strstr(p, assistant) : NULL;
        const char *end = nh && (!na || nh < na) ? nh : na ? na : p + strlen(p);
        const char *a = p, *b = end;
        while (a < b && strchr(" \t\r\n", *a)) a++;
        while (b > a && strchr(" \t\r\n", b[-1])) b--;
        if (b > a || *end) {
            if (!(texts[n] = malloc((size_t)(b - a) + 1))) goto done;
            memcpy(texts[n], a, (size_t)(b - a));
            texts[n][b - a] = 0;
            msgs[n] = (rl_chat_message){role, texts[n]};
            n++;
        }
        if (!*end) break;
        role = end == nh ? "user" : "assistant";
        p = end + (end == nh ? sizeof human - 1 : sizeof assistant - 1);
    }
    /* the transcript ends on "Assistant:": that turn is the one to generate */
    if (n > 0 && !strcmp(msgs[n - 1].role, "assistant") && !msgs[n - 1].content[0]) n--;
    if (n == 0) msgs[n++] = (rl_chat_message){"user", ""};
    size_t len;
    if (rl_chat_template_render(t, msgs, n, true, &out, &len, err, errlen) != RL_OK) out = NULL;
done:
    for (size_t i = 0; texts && i < n_max; i++) free(texts[i]);
    free(texts), free(msgs);
    if (!out && err && !err[0]) snprintf(err, errlen, "out of memory");
    return out;
}

/* tmpl with every "{prompt}" replaced by prompt; malloc'ed. */
static char *rl_render(const char *tmpl, const char *prompt) {
    static const char key[] = "{prompt}";
    size_t kl = sizeof key - 1, pl = strlen(prompt), n = 0;
    for (const char *p = tmpl; (p = strstr(p, key)); p += kl) n++;
    size_t out_len = strlen(tmpl) + n * pl - n * kl;
    char *out = malloc(out_len + 1), *o = out;
    if (!out) return NULL;
    for (const char *p = tmpl;;) {
        const char *q = strstr(p, key);
        size_t k = q ? (size_t)(q - p) : strlen(p);
        memcpy(o, p, k);
        o += k;
        if (!q) break;
        memcpy(o, prompt, pl);
        o += pl;
        p = q + kl;
    }
    *o = 0;
    return out;
}

/* Appends one row (prompt ids p[0..P), response ids r[0..R) then EOS unless
 * r is NULL) to the pool, truncated by the rule of rl_data.h. */
static int rl_tokdata_add_row(rl_tokdata *td, const int32_t *p, int64_t P, const int32_t *r, int64_t R,
                              int64_t max_prompt, rl_tokrow *row) {
    const int64_t T = td->T;
    int64_t keep_p, keep_r, full_r = r ? R + 1 : 0;
    if (!r) {
        keep_p = P < max_prompt ? P : max_prompt;
        keep_r = 0;
    } else if (P + full_r <= T) {
        keep_p = P;
        keep_r = full_r;
    } else {
        int64_t room = T - P > T / 2 ? T - P : T / 2;
        keep_r = full_r < room ? full_r : room;
        keep_p = T - keep_r;
        if (keep_p > P) keep_p = P;
    }
    if (!rl_pool_reserve(td, keep_p + keep_r)) return 0;
    row->off = td->pool_len;
    row->len = keep_p + keep_r;
    row->plen = keep_p;
    int32_t *d = td->pool + td->pool_len;
    memcpy(d, p + (P - keep_p), sizeof *d * (size_t)keep_p);
    for (int64_t i = 0; i < keep_r; i++) d[keep_p + i] = i < R ? r[i] : td->eos_id;
    td->pool_len += row->len;
    rl_trunc_stats *s = &td->stats;
    s->rows++;
    if (P + full_r > s->max_len) s->max_len = P + full_r;
    if (keep_p < P || keep_r < full_r) {
        s->rows_truncated++;
        s->prompt_tokens_dropped += P - keep_p;
        s->response_tokens_dropped += full_r - keep_r;
        if (r && keep_r < full_r) s->eos_dropped++;
    }
    return 1;
}

void rl_tokdata_free(rl_tokdata *td) {
    if (!td) return;
    free(td->rows);
    free(td->pool);
    free(td);
}

rl_tokdata *rl_tokdata_new(const rl_dataset *ds, rl_tokenizer *tok, rl_rows_kind kind,
                           const rl_tok_opts *opts, char *err, size_t errlen) {
    if (!ds || !tok || !opts) {
        rl_errf(err, errlen, RL_ERR_ARG, "rl_tokdata_new: dataset, tokenizer and options are required");
        return NULL;
    }
    if (opts->T < 2) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: context length T = %" PRId64 " is too small (need >= 2)", ds->path,
                    opts->T);
        return NULL;
    }
    if (opts->max_prompt < 0 || opts->max_prompt > opts->T) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: max_prompt %" PRId64 " must be in [0, T = %" PRId64 "]", ds->path,
                    opts->max_prompt, opts->T);
        return NULL;
    }
    int pairs_ok = ds->format == RL_DATA_HH || ds->format == RL_DATA_PKU;
    if ((kind == RL_ROWS_PAIRS && !pairs_ok) || (kind == RL_ROWS_SFT && ds->format == RL_DATA_PROMPTS) ||
        (unsigned)kind > RL_ROWS_PROMPTS) {
        rl_errf(err, errlen, RL_ERR_ARG, "%s: a %s file has no %s", ds->path, rl_data_format_name(ds->format),
                    kind == RL_ROWS_PAIRS ? "response pairs (use an hh or pku file)"
                                          : "responses (use a demos, hh or pku file)");
        return NULL;
    }
    const char *tmpl = opts->tmpl ? opts->tmpl
                                  : ds->format == RL_DATA_HH ? RL_DATA_TEMPLATE_NONE : RL_DATA_TEMPLATE;
    if (!strstr(tmpl, "{prompt}")) {
        rl_errf(err, errlen, RL_ERR_ARG, "prompt template \"%s\" has no {prompt}", tmpl);
        return NULL;
    }
    rl_tokdata *td = calloc(1, sizeof *td);
    if (!td) goto oom;
    td->ds = ds;
    td->kind = kind;
    td->nrow = kind == RL_ROWS_PAIRS ? 2 : 1;
    td->has_safety = kind == RL_ROWS_PAIRS && ds->format == RL_DATA_PKU;
    td->n = ds->n;
    td->T = opts->T;
    td->pad_to_longest = opts->pad_to_longest;
    td->eos_id = rl_tokenizer_eos_id(tok);
    td->pad_id = rl_tokenizer_token_id(tok, "<|pad|>", 7);
    if (td->pad_id < 0) td->pad_id = td->eos_id;
    td->rows = calloc((size_t)(ds->n * td->nrow + 1), sizeof *td->rows);
    if (!td->rows) goto oom;
    int64_t max_prompt = opts->max_prompt ? opts->max_prompt : opts->T;
    char chat_err[512] = "";
    for (int64_t i = 0; i < ds->n; i++) {
        const rl_record *rec = &ds->rec[i];
        char *text = opts->chat ? rl_render_chat(opts->chat, rec->prompt, ds->format == RL_DATA_HH, chat_err,
                                                 sizeof chat_err)
                                : rl_render(tmpl, rec->prompt);
        if (!text && opts->chat) {
            rl_errf(err, errlen, RL_ERR_ARG, "%s:%" PRId64 ": chat template: %s", ds->path, rec->line, chat_err);
            rl_tokdata_free(td);
            return NULL;
        }
        if (!text) goto oom;
        int32_t *pids = NULL;
        int64_t P = 0;
        rl_status s = rl_tokenizer_encode_ex(tok, text, strlen(text), opts->chat ? RL_TOKENIZE_SPECIAL : 0, &pids, &P);
        free(text);
        if (s != RL_OK) {
            rl_errf(err, errlen, RL_ERR_ARG, "%s:%" PRId64 ": prompt: %s", ds->path, rec->line, rl_tokenizer_error(tok));
            free(pids);
            rl_tokdata_free(td);
            return NULL;
        }
        if (P == 0) {
            int32_t *q = realloc(pids, sizeof *q);
            if (!q) {
                free(pids);
                goto oom;
            }
            pids = q;
            pids[P++] = td->eos_id;
        }
        for (int j = 0; j < td->nrow; j++) {
            int which = kind == RL_ROWS_PAIRS ? j : (rec->better_id > 0 ? rec->better_id : 0);
            int32_t *rids = NULL;
            int64_t R = 0;
            if (kind != RL_ROWS_PROMPTS) {
                const char *resp = rec->response[which];
                if (opts->chat) resp += strspn(resp, " \t\r\n"); /* the template puts the turn's own separator */
                if (rl_tokenizer_encode(tok, resp, strlen(resp), &rids, &R) != RL_OK) {
                    rl_errf(err, errlen, RL_ERR_ARG, "%s:%" PRId64 ": response: %s", ds->path, rec->line,
                                rl_tokenizer_error(tok));
                    free(pids);
                    free(rids);
                    rl_tokdata_free(td);
                    return NULL;
                }
            }
            int ok = rl_tokdata_add_row(td, pids, P, kind == RL_ROWS_PROMPTS ? NULL : rids, R, max_prompt,
                                        &td->rows[i * td->nrow + j]);
            free(rids);
            if (!ok) {
                free(pids);
                goto oom;
            }
        }
        free(pids);
    }
    return td;
oom:
    rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory while tokenizing", ds->path);
    rl_tokdata_free(td);
    return NULL;
}

int64_t rl_tokdata_size(const rl_tokdata *td) { return td->n; }
int rl_tokdata_has_safety(const rl_tokdata *td) { return td->has_safety; }
rl_trunc_stats rl_tokdata_stats(const rl_tokdata *td) { return td->stats; }
int32_t rl_tokdata_pad_id(const rl_tokdata *td) { return td->pad_id; }
int32_t rl_tokdata_eos_id(const rl_tokdata *td) { return td->eos_id; }
const rl_record *rl_tokdata_record(const rl_tokdata *td, int64_t i) { return &td->ds->rec[i]; }

/* ---- batches ----------------------------------------------------------------------- */

static int rl_rows_alloc(rl_rows *r, int64_t cap, int64_t T) {
    size_t n = (size_t)(cap * T);
    r->ids = malloc(sizeof(int32_t) * n);
    r->attn = malloc(sizeof(int32_t) * n);
    r->mask = malloc(sizeof(int32_t) * n);
    r->len = malloc(sizeof(int64_t) * (size_t)cap);
    r->prompt_len = malloc(sizeof(int64_t) * (size_t)cap);
    return r->ids && r->attn && r->mask && r->len && r->prompt_len;
}

static void rl_rows_release(rl_rows *r) {
    free(r->ids);
    free(r->attn);
    free(r->mask);
    free(r->len);
    free(r->prompt_len);
}

void rl_data_batch_free(rl_data_batch *b) {
    if (!b) return;
    rl_rows_release(&b->rows);
    rl_rows_release(&b->chosen);
    rl_rows_release(&b->rejected);
    rl_rows_release(&b->safer);
    rl_rows_release(&b->unsafer);
    free(b->index);
    free(b->better_id);
    free(b->safer_id);
    free(b->is_safe0);
    free(b->is_safe1);
    free(b->sign_s);
    free(b->sign_u);
    free(b);
}

rl_data_batch *rl_data_batch_new(const rl_tokdata *td, int64_t cap) {
    if (cap < 1) return NULL;
    rl_data_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->kind = td->kind;
    b->cap = cap;
    b->has_safety = td->has_safety;
    int ok = (b->index = malloc(sizeof(int64_t) * (size_t)cap)) != NULL;
    if (td->kind == RL_ROWS_PAIRS) {
        ok = ok && rl_rows_alloc(&b->chosen, cap, td->T) && rl_rows_alloc(&b->rejected, cap, td->T);
        if (td->has_safety) {
            ok = ok && rl_rows_alloc(&b->safer, cap, td->T) && rl_rows_alloc(&b->unsafer, cap, td->T);
            ok = ok && (b->better_id = malloc(sizeof(int32_t) * (size_t)cap)) &&
                 (b->safer_id = malloc(sizeof(int32_t) * (size_t)cap)) &&
                 (b->is_safe0 = malloc(sizeof(int32_t) * (size_t)cap)) &&
                 (b->is_safe1 = malloc(sizeof(int32_t) * (size_t)cap)) &&
                 (b->sign_s = malloc(sizeof(float) * (size_t)cap)) &&
                 (b->sign_u = malloc(sizeof(float) * (size_t)cap));
        }
    } else {
        ok = ok && rl_rows_alloc(&b->rows, cap, td->T);
    }
    if (!ok) {
        rl_data_batch_free(b);
        return NULL;
    }
    return b;
}

/* Writes row src (a prompt of plen tokens, then response tokens) as row b of
 * dst, width W. */
static void rl_rows_put(const rl_tokdata *td, rl_rows *dst, int64_t b, int64_t W, const rl_tokrow *src) {
    int32_t *ids = dst->ids + b * W, *attn = dst->attn + b * W, *mask = dst->mask + b * W;
    const int32_t *tok = td->pool + src->off;
    for (int64_t t = 0; t < W; t++) {
        int real = t < src->len;
        ids[t] = real ? tok[t] : td->pad_id;
        attn[t] = real;
        mask[t] = real && t >= src->plen;
    }
    dst->len[b] = src->len;
    dst->prompt_len[b] = src->plen;
}

rl_status rl_data_batch_fill(const rl_tokdata *td, const int64_t *index, int64_t n, rl_data_batch *b) {
    if (n < 1 || n > b->cap || b->kind != td->kind) return RL_ERR_ARG;
    int64_t W = td->T;
    if (td->pad_to_longest) {
        W = 1;
        for (int64_t k = 0; k < n; k++)
            for (int j = 0; j < td->nrow; j++) {
                if (index[k] < 0 || index[k] >= td->n) return RL_ERR_ARG;
                int64_t l = td->rows[index[k] * td->nrow + j].len;
                if (l > W) W = l;
            }
    }
    b->B = n;
    rl_rows *sets[] = {&b->rows, &b->chosen, &b->rejected, &b->safer, &b->unsafer};
    for (int s = 0; s < 5; s++) sets[s]->B = n, sets[s]->T = W;
    for (int64_t k = 0; k < n; k++) {
        int64_t i = index[k];
        if (i < 0 || i >= td->n) return RL_ERR_ARG;
        b->index[k] = i;
        const rl_tokrow *r = &td->rows[i * td->nrow];
        if (td->kind != RL_ROWS_PAIRS) {
            rl_rows_put(td, &b->rows, k, W, r);
            continue;
        }
        const rl_record *rec = &td->ds->rec[i];
        int better = rec->better_id > 0 ? 1 : 0;
        rl_rows_put(td, &b->chosen, k, W, &r[better]);
        rl_rows_put(td, &b->rejected, k, W, &r[1 - better]);
        if (td->has_safety) {
            int s = rec->safer_id;
            rl_rows_put(td, &b->safer, k, W, &r[s]);
            rl_rows_put(td, &b->unsafer, k, W, &r[1 - s]);
            b->better_id[k] = better;
            b->safer_id[k] = s;
            b->is_safe0[k] = rec->is_safe[0];
            b->is_safe1[k] = rec->is_safe[1];
            b->sign_s[k] = rec->is_safe[s] ? -1.0f : 1.0f;
            b->sign_u[k] = rec->is_safe[1 - s] ? -1.0f : 1.0f;
        }
    }
    return RL_OK;
}

/* ---- iteration -------------------------------------------------------------------------- */

struct rl_batcher {
    const rl_tokdata *td;
    int64_t B;
    int shuffle;
    rl_data_cursor cur;
    int64_t perm_epoch;  /* the epoch perm holds, or -1 */
    int64_t group;       /* length grouping: windows of group * B examples (0: off) */
    int64_t *perm;
    int64_t *idx;
    rl_data_batch *batch;
};

/* Uniform in [0, n) without modulo bias (Lemire's multiply-and-reject). */
static uint64_t rl_rng_below(rl_rng *r, uint64_t n) {
    unsigned __int128 m = (unsigned __int128)rl_rng_next(r) * n;
    uint64_t lo = (uint64_t)m;
    if (lo < n) {
        uint64_t t = -n % n;
        while (lo < t) {
            m = (unsigned __int128)rl_rng_next(r) * n;
            lo = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

void rl_data_epoch_order(uint64_t seed, int64_t epoch, int shuffle, int64_t n, int64_t *perm) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (!shuffle) return;
    rl_rng r;
    /* splitmix inside rl_rng_seed decorrelates nearby (seed, epoch) pairs */
    rl_rng_seed(&r, seed ^ (0xd1b54a32d192ed03ull * (uint64_t)(epoch + 1)));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rl_rng_below(&r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

rl_batcher *rl_batcher_new(const rl_tokdata *td, int64_t B, uint64_t seed, int shuffle) {
    if (!td || td->n < 1 || B < 1) return NULL;
    rl_batcher *it = calloc(1, sizeof *it);
    if (!it) return NULL;
    it->td = td;
    it->B = B;
    it->shuffle = shuffle;
    it->cur = (rl_data_cursor){.seed = seed, .epoch = 0, .pos = 0};
    it->perm_epoch = -1;
    it->perm = malloc(sizeof(int64_t) * (size_t)td->n);
    it->idx = malloc(sizeof(int64_t) * (size_t)B);
    it->batch = rl_data_batch_new(td, B);
    if (!it->perm || !it->idx || !it->batch) {
        rl_batcher_free(it);
        return NULL;
    }
    return it;
}

void rl_batcher_free(rl_batcher *it) {
    if (!it) return;
    free(it->perm);
    free(it->idx);
    rl_data_batch_free(it->batch);
    free(it);
}

/* The longest row of example i (pairs: the longer of its two rows). */
static int64_t rl_example_len(const rl_tokdata *td, int64_t i) {
    int64_t m = 0;
    for (int k = 0; k < td->nrow; k++)
        if (td->rows[i * td->nrow + k].len > m) m = td->rows[i * td->nrow + k].len;
    return m;
}

typedef struct rl_len_key {
    int64_t len, idx;
} rl_len_key;

/* By length, then by example index (a total order: the sort is deterministic). */
static int rl_cmp_len_key(const void *a, const void *b) {
    const rl_len_key *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

/* Length grouping (as in Hugging Face's group_by_length): within each window
 * of group * B examples of the shuffled order, examples are sorted by length
 * so that a batch holds rows of similar length and pads little; then the
 * window's batches are put in a random order, so lengths do not rise through
 * an epoch. Deterministic in (seed, epoch, B, group), so resume still works. */
static void rl_batcher_group_by_length(rl_batcher *it) {
    const int64_t n = it->td->n, B = it->B, W = it->group * B;
    rl_rng r;
    rl_rng_seed(&r, it->cur.seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(it->cur.epoch + 7)));
    rl_len_key *key = malloc(sizeof(rl_len_key) * (size_t)W);
    int64_t *order = malloc(sizeof(int64_t) * (size_t)it->group);
    if (!key || !order) { /* out of memory: plain shuffled order, still a valid epoch */
        free(key);
        free(order);
        return;
    }
    for (int64_t w0 = 0; w0 < n; w0 += W) {
        int64_t m = n - w0 < W ? n - w0 : W;
        for (int64_t i = 0; i < m; i++) key[i] = (rl_len_key){rl_example_len(it->td, it->perm[w0 + i]), it->perm[w0 + i]};
        qsort(key, (size_t)m, sizeof *key, rl_cmp_len_key);
        int64_t nb = m / B; /* whole batches are permuted; a tail shorter than B stays last, sorted */
        for (int64_t b = 0; b < nb; b++) order[b] = b;
        for (int64_t b = nb - 1; nb >= 2 && b > 0; b--) {
            int64_t j = (int64_t)rl_rng_below(&r, (uint64_t)b + 1), t = order[b];
            order[b] = order[j];
            order[j] = t;
        }
        for (int64_t b = 0; b < nb; b++)
            for (int64_t k = 0; k < B; k++) it->perm[w0 + b * B + k] = key[order[b] * B + k].idx;
        for (int64_t i = nb * B; i < m; i++) it->perm[w0 + i] = key[i].idx;
    }
    free(key);
    free(order);
}

void rl_batcher_set_length_groups(rl_batcher *it, int64_t group) {
    it->group = group > 1 ? group : 0;
    it->perm_epoch = -1;
}

const rl_data_batch *rl_batcher_next(rl_batcher *it) {
    const int64_t n = it->td->n;
    for (int64_t k = 0; k < it->B; k++) {
        if (it->cur.pos >= n) {
            it->cur.epoch++;
            it->cur.pos = 0;
        }
        if (it->perm_epoch != it->cur.epoch) {
            rl_data_epoch_order(it->cur.seed, it->cur.epoch, it->shuffle, n, it->perm);
            if (it->group > 1) rl_batcher_group_by_length(it);
            it->perm_epoch = it->cur.epoch;
        }
        it->idx[k] = it->perm[it->cur.pos++];
    }
    /* normalise so a cursor saved at an epoch's end reads as the next epoch's start */
    if (it->cur.pos >= n) {
        it->cur.epoch++;
        it->cur.pos = 0;
    }
    if (rl_data_batch_fill(it->td, it->idx, it->B, it->batch) != RL_OK) return NULL;
    return it->batch;
}

rl_data_cursor rl_batcher_cursor(const rl_batcher *it) { return it->cur; }

rl_status rl_batcher_seek(rl_batcher *it, rl_data_cursor c) {
    if (c.epoch < 0 || c.pos < 0 || c.pos > it->td->n) return RL_ERR_ARG;
    if (c.seed != it->cur.seed) it->perm_epoch = -1;
    it->cur = c;
    return RL_OK;
}

char *rl_data_cursor_format(const rl_data_cursor *c, char *buf, size_t n) {
    rl_errf(buf, n, RL_ERR_ARG, "seed=%" PRIu64 " epoch=%" PRId64 " pos=%" PRId64, c->seed, c->epoch, c->pos);
    return buf;
}

rl_status rl_data_cursor_parse(const char *s, rl_data_cursor *c) {
    uint64_t seed;
    int64_t epoch, pos;
    int used = 0;
    if (!s || sscanf(s, "seed=%" SCNu64 " epoch=%" SCNd64 " pos=%" SCNd64 "%n", &seed, &epoch, &pos, &used) != 3 ||
        s[used] != 0 || epoch < 0 || pos < 0)
        return RL_ERR_ARG;
    c->seed = seed;
    c->epoch = epoch;
    c->pos = pos;
    return RL_OK;
}

/* mkdir -p: every missing component of path, 0777 before the umask */
