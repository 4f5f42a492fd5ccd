/* tools/cmd_logits.c - `rlhf logits --model DIR|FILE --ids IDS -o OUT`:
 * runs a checkpoint of any family (GPT-2, Llama, Qwen2, ...) on given token ids and writes the logits and the
 * mean next-token cross-entropy, so users can compare with another
 * implementation (tools/gpt2_ref.py, tools/llama_ref.py or transformers).
 */
#include "cli.h"

#include "rl_model.h"
#include "rl_safetensors.h"
#include "rl_ops.h"

#include <stdlib.h>
#include <string.h>

static void rl_logits_usage(FILE *f) {
    fprintf(f,
            "usage: rlhf logits --model DIR|FILE.safetensors --ids IDS -o OUT.safetensors [--f64]\n"
            "  IDS: a safetensors file with an integer tensor 'ids' [B, T], or a comma list of\n"
            "       token ids (rows separated by ';', all rows the same length)\n"
            "  OUT gets 'logits' [B, T, V] and 'loss' (mean next-token cross-entropy)\n");
}

/* Parses "1,2,3;4,5,6" into a [B, T] array. */
static int rl_parse_ids_list(const char *s, int32_t **ids, int64_t *B, int64_t *T, char *err, size_t n) {
    int64_t cap = 16, cnt = 0, rows = 1, cols = -1, in_row = 0;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)cap);
    const char *p = s;
    while (*p) {
        char *end;
        long x = strtol(p, &end, 10);
        if (end == p || x < 0 || x > INT32_MAX) {
            snprintf(err, n, "--ids: expected a token id at column %d of '%s'", (int)(p - s) + 1, s);
            free(v);
            return 0;
        }
        if (cnt == cap) v = realloc(v, sizeof(int32_t) * (size_t)(cap *= 2));
        v[cnt++] = (int32_t)x;
        in_row++;
        p = end;
        if (*p == ',') p++;
        else if (*p == ';' || *p == 0) {
            if (cols >= 0 && in_row != cols) {
                snprintf(err, n, "--ids: row %lld has %lld ids but row 1 has %lld", (long long)rows,
                         (long long)in_row, (long long)cols);
                free(v);
                return 0;
            }
            cols = in_row;
            in_row = 0;
            if (*p == ';') p++, rows++;
        } else {
            snprintf(err, n, "--ids: unexpected '%c' at column %d", *p, (int)(p - s) + 1);
            free(v);
            return 0;
        }
    }
    if (cnt == 0) {
        snprintf(err, n, "--ids: no token ids given");
        free(v);
        return 0;
    }
    *ids = v;
    *B = rows;
    *T = cols;
    return 1;
}

static int rl_read_ids_file(const char *path, int32_t **ids, int64_t *B, int64_t *T, char *err, size_t n) {
    rl_st_file *f = NULL;
    if (rl_st_open(path, &f, err, n) != RL_OK) return 0;
    const rl_st_tensor *t = rl_st_find(f, "ids");
    int ok = 0;
    if (!t) snprintf(err, n, "%s: no tensor named 'ids'", path);
    else if (t->ndim != 2) snprintf(err, n, "%s: tensor 'ids' has %d dims; expected [B, T]", path, t->ndim);
    else if (t->dtype != RL_ST_I32 && t->dtype != RL_ST_I64)
        snprintf(err, n, "%s: tensor 'ids' is %s; expected I32 or I64", path, rl_st_dtype_name(t->dtype));
    else {
        *B = t->shape[0];
        *T = t->shape[1];
        *ids = malloc(sizeof(int32_t) * (size_t)(t->numel ? t->numel : 1));
        for (int64_t i = 0; i < t->numel; i++) {
            int64_t x;
            if (t->dtype == RL_ST_I32) {
                int32_t y;
                memcpy(&y, (const char *)t->data + 4 * i, 4);
                x = y;
            } else {
                memcpy(&x, (const char *)t->data + 8 * i, 8);
            }
            (*ids)[i] = (int32_t)x;
        }
        ok = 1;
    }
    rl_st_close(f);
    return ok;
}

int rl_cmd_logits(int argc, char **argv) {
    const char *model = NULL, *ids_arg = NULL, *out = NULL;
    int f64 = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) model = argv[++i];
        else if (strcmp(argv[i], "--ids") == 0 && i + 1 < argc) ids_arg = argv[++i];
        else if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--f64") == 0) f64 = 1;
        else if (strcmp(argv[i], "--help") == 0) {
            rl_logits_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "rlhf logits: unknown argument '%s'\n", argv[i]);
            rl_logits_usage(stderr);
            return 2;
        }
    }
    if (!model || !ids_arg || !out) {
        rl_logits_usage(stderr);
        return 2;
    }
    char err[1024];
    int32_t *ids = NULL;
    int64_t B = 0, T = 0;
    int ok = strstr(ids_arg, ".safetensors") ? rl_read_ids_file(ids_arg, &ids, &B, &T, err, sizeof err)
                                             : rl_parse_ids_list(ids_arg, &ids, &B, &T, err, sizeof err);
    if (!ok) {
        fprintf(stderr, "rlhf logits: %s\n", err);
        return 1;
    }
    rl_ctx *ctx = rl_ctx_new("cpu");
    rl_model *m = NULL;
    rl_dtype dt = f64 ? RL_F64 : RL_F32;
    if (rl_model_load(ctx, model, RL_HEAD_LM, dt, 0, &m, err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf logits: %s\n", err);
        free(ids);
        rl_ctx_free(ctx);
        return 1;
    }
    int rc = 1;
    for (int64_t i = 0; i < B * T; i++)
        if (ids[i] < 0 || ids[i] >= m->vocab) {
            fprintf(stderr, "rlhf logits: token id %d at row %lld, position %lld is outside the vocabulary (%lld)\n",
                    ids[i], (long long)(i / T), (long long)(i % T), (long long)m->vocab);
            goto done;
        }
    if (T > m->n_ctx) {
        fprintf(stderr, "rlhf logits: %lld tokens per row exceed the model's context of %lld\n",
                (long long)T, (long long)m->n_ctx);
        goto done;
    }
    rl_ctx_set_grad(ctx, 0);
    rl_tensor *tids = rl_const(ctx, RL_I32, 2, (int64_t[]){B, T}, ids);
    rl_tensor *logits = rl_model_logits(ctx, m, tids);
    /* mean next-token cross-entropy over every position but the last */
    int32_t *mask = malloc(sizeof(int32_t) * (size_t)(B * T));
    for (int64_t i = 0; i < B * T; i++) mask[i] = 1;
    rl_tensor *loss = T > 1 ? rl_model_sft_loss(ctx, m, tids, rl_const(ctx, RL_I32, 2, (int64_t[]){B, T}, mask)) : NULL;
    free(mask);
    if (!logits || (T > 1 && !loss)) {
        fprintf(stderr, "rlhf logits: %s\n", rl_ctx_error(ctx));
        goto done;
    }
    size_t bytes = (size_t)logits->numel * rl_dtype_size(dt);
    void *lbuf = malloc(bytes);
    rl_tensor_read(ctx, logits, lbuf, bytes);
    double ce = loss ? rl_tensor_get(ctx, loss, 0) : 0.0;
    float cef = (float)ce;
    rl_st_writer *w = rl_st_writer_new();
    rl_st_writer_add(w, "logits", f64 ? RL_ST_F64 : RL_ST_F32, 3, logits->shape, lbuf, bytes);
    rl_st_writer_add(w, "loss", f64 ? RL_ST_F64 : RL_ST_F32, 0, NULL, f64 ? (void *)&ce : (void *)&cef,
                     f64 ? 8 : 4);
    rl_st_writer_add(w, "ids", RL_ST_I32, 2, (int64_t[]){B, T}, ids, sizeof(int32_t) * (size_t)(B * T));
    rl_st_writer_set_meta(w, "model", model);
    if (rl_st_writer_write(w, out) != RL_OK) {
        fprintf(stderr, "rlhf logits: %s\n", rl_st_writer_error(w));
    } else {
        printf("logits [%lld, %lld, %lld] written to %s\nmean next-token cross-entropy %.10f\n",
               (long long)B, (long long)T, (long long)m->vocab, out, ce);
        rc = 0;
    }
    rl_st_writer_free(w);
    free(lbuf);
done:
    free(ids);
    rl_model_free(ctx, m);
    rl_ctx_free(ctx);
    return rc;
}
