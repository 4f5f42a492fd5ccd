/* models/checkpoint.c - GPT-2 checkpoints in safetensors with Hugging Face
 * names, alone or as a model directory with config.json (see
 * rl_checkpoint.h for what is accepted and refused).
 */
#include "rl_file.h"
#include "rl_checkpoint.h"

#include "rl_safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int ck_is_dir(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

static int ck_exists(const char *path) {
    struct stat s;
    return stat(path, &s) == 0;
}

/* dir + "/" + name into a fresh string. */
static char *ck_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* The directory part of a path ("." when there is none). */
static char *ck_dirname(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 2);
    if (!d) return NULL;
    if (n == 0) {
        strcpy(d, "/");
    } else {
        memcpy(d, path, n);
        d[n] = 0;
    }
    return d;
}

/* ---- config ------------------------------------------------------------------ */

static const char *const ck_arch[] = {"GPT2LMHeadModel", "GPT2ForSequenceClassification",
                                      "GPT2ForTokenClassification"};

/* Reads an integer field that must be present and positive. */
static int ck_json_int(json_t *o, const char *key, int64_t *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0) return 0;
    *out = json_integer_value(v);
    return 1;
}

rl_status rl_gpt2_config_load_json(const char *path, rl_gpt2_config *cfg, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return rl_errf(err, errlen, RL_ERR_IO, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    rl_status st = RL_OK;
    memset(cfg, 0, sizeof *cfg);
    const char *keys[] = {"vocab_size", "n_positions", "n_layer", "n_head", "n_embd"};
    int64_t *dst[] = {&cfg->vocab, &cfg->n_ctx, &cfg->n_layer, &cfg->n_head, &cfg->n_embd};
    if (!json_is_object(root)) {
        st = rl_errf(err, errlen, RL_ERR_IO, "%s: the config is not a JSON object", path);
        goto done;
    }
    for (int i = 0; i < 5; i++)
        if (!ck_json_int(root, keys[i], dst[i])) {
            st = rl_errf(err, errlen, RL_ERR_IO,
                         "%s: '%s' is missing or not a positive integer (a GPT-2 config needs "
                         "vocab_size, n_positions, n_layer, n_head, n_embd)",
                         path, keys[i]);
            goto done;
        }
    json_t *eps = json_object_get(root, "layer_norm_epsilon");
    cfg->layer_norm_epsilon = json_is_number(eps) ? json_number_value(eps) : 1e-5;
    json_t *mt = json_object_get(root, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "gpt2") != 0)) {
        st = rl_errf(err, errlen, RL_ERR_IO, "%s: model_type is %s, not \"gpt2\"", path,
                     json_is_string(mt) ? json_string_value(mt) : "not a string");
        goto done;
    }
    if (cfg->n_embd % cfg->n_head)
        st = rl_errf(err, errlen, RL_ERR_IO, "%s: n_embd %lld is not a multiple of n_head %lld", path,
                     (long long)cfg->n_embd, (long long)cfg->n_head);
done:
    json_decref(root);
    return st;
}

static json_t *ck_config_json(const rl_gpt2_config *cfg, rl_gpt2_kind kind) {
    json_t *o = json_object();
    json_object_set_new(o, "model_type", json_string("gpt2"));
    json_object_set_new(o, "architectures", json_pack("[s]", ck_arch[kind]));
    json_object_set_new(o, "vocab_size", json_integer(cfg->vocab));
    json_object_set_new(o, "n_positions", json_integer(cfg->n_ctx));
    json_object_set_new(o, "n_ctx", json_integer(cfg->n_ctx));
    json_object_set_new(o, "n_embd", json_integer(cfg->n_embd));
    json_object_set_new(o, "n_layer", json_integer(cfg->n_layer));
    json_object_set_new(o, "n_head", json_integer(cfg->n_head));
    json_object_set_new(o, "n_inner", json_null());
    json_object_set_new(o, "layer_norm_epsilon", json_real(cfg->layer_norm_epsilon));
    json_object_set_new(o, "activation_function", json_string("gelu_new"));
    json_object_set_new(o, "resid_pdrop", json_real(0.0));
    json_object_set_new(o, "embd_pdrop", json_real(0.0));
    json_object_set_new(o, "attn_pdrop", json_real(0.0));
    json_object_set_new(o, "tie_word_embeddings", json_true());
    if (kind != RL_GPT2_LM) {
        json_object_set_new(o, "num_labels", json_integer(1));
        json_object_set_new(o, "pad_token_id", json_integer(cfg->vocab - 1));
    }
    return o;
}

rl_status rl_gpt2_config_save_json(const char *path, const rl_gpt2_config *cfg, rl_gpt2_kind kind,
                                   char *err, size_t errlen) {
    json_t *o = ck_config_json(cfg, kind);
    rl_atomic_file a;
    FILE *f = rl_atomic_open(&a, path, err, errlen);
    if (!f) {
        json_decref(o);
        return RL_ERR_IO;
    }
    int rc = json_dumpf(o, f, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    json_decref(o);
    if (rc != 0) {
        rl_atomic_abort(&a);
        return rl_errf(err, errlen, RL_ERR_IO, "%s: cannot write the config: %s", path, strerror(errno));
    }
    return rl_atomic_commit(&a, err, errlen);
}

/* ---- loading -------------------------------------------------------------------- */

/* Config from the file's __metadata__ (written by rl_gpt2_save); 0 if absent. */
static int ck_config_from_meta(rl_st_file *f, rl_gpt2_config *cfg) {
    const char *keys[] = {"vocab_size", "n_positions", "n_layer", "n_head", "n_embd"};
    int64_t *dst[] = {&cfg->vocab, &cfg->n_ctx, &cfg->n_layer, &cfg->n_head, &cfg->n_embd};
    for (int i = 0; i < 5; i++) {
        const char *v = rl_st_meta_get(f, keys[i]);
        char *end;
        if (!v) return 0;
        long long x = strtoll(v, &end, 10);
        if (*end || x <= 0) return 0;
        *dst[i] = x;
    }
    const char *eps = rl_st_meta_get(f, "layer_norm_epsilon");
    cfg->layer_norm_epsilon = eps ? strtod(eps, NULL) : 1e-5;
    return 1;
}

/* Maps a file's tensor name to the model's name: strips "transformer.";
 * returns NULL for the buffers every GPT-2 export may carry and we rebuild. */
static const char *ck_model_name(const char *name) {
    if (strncmp(name, "transformer.", 12) == 0) name += 12;
    const char *dot = strrchr(name, '.');
    if (strncmp(name, "h.", 2) == 0 && dot &&
        (strcmp(dot, ".masked_bias") == 0 || (strcmp(dot, ".bias") == 0 && dot - name >= 5 &&
                                               strncmp(dot - 5, ".attn", 5) == 0)))
        return NULL; /* h.N.attn.bias / h.N.attn.masked_bias: causal-mask buffers */
    return name;
}

static int ck_is_head_name(const char *name) {
    return strcmp(name, "score.weight") == 0 || strcmp(name, "score.bias") == 0 ||
           strncmp(name, "v_head.", 7) == 0;
}

static void ck_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Copies one file tensor into a model tensor (converting the dtype). */
static rl_status ck_read_into(rl_ctx *ctx, rl_st_file *f, const rl_st_tensor *src, rl_tensor *dst,
                              char *err, size_t errlen) {
    const char *path = rl_st_path(f);
    if (!rl_shape_equal(src->ndim, src->shape, dst->ndim, dst->shape)) {
        char a[96], b[96];
        ck_shape_str(src->ndim, src->shape, a, sizeof a);
        ck_shape_str(dst->ndim, dst->shape, b, sizeof b);
        return rl_errf(err, errlen, RL_ERR_IO,
                       "%s: tensor '%s' has shape %s but the config needs %s", path, src->name, a, b);
    }
    if (src->dtype != RL_ST_F32 && src->dtype != RL_ST_F64 && src->dtype != RL_ST_F16 &&
        src->dtype != RL_ST_BF16)
        return rl_errf(err, errlen, RL_ERR_IO,
                       "%s: tensor '%s' is %s; model weights must be F32, F64, F16 or BF16", path,
                       src->name, rl_st_dtype_name(src->dtype));
    size_t n = (size_t)dst->numel;
    size_t bytes = n * rl_dtype_size(dst->dtype);
    void *buf = malloc(bytes ? bytes : 8);
    if (!buf) return rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory reading '%s'", path, src->name);
    rl_status st = dst->dtype == RL_F64 ? rl_st_read_f64(f, src->name, buf, n)
                                        : rl_st_read_f32(f, src->name, buf, n);
    if (st == RL_OK) st = rl_tensor_write(ctx, dst, buf, bytes);
    if (st != RL_OK)
        rl_errf(err, errlen, st, "%s: tensor '%s': %s", path, src->name,
                rl_st_error(f) ? rl_st_error(f) : (rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "read failed"));
    free(buf);
    return st;
}

/* lm_head.weight, when present, must equal wte (GPT-2 ties them). */
static rl_status ck_check_tied(rl_st_file *f, const rl_st_tensor *head, const rl_st_tensor *wte,
                               char *err, size_t errlen) {
    const char *path = rl_st_path(f);
    if (!wte || !rl_shape_equal(head->ndim, head->shape, wte->ndim, wte->shape))
        return rl_errf(err, errlen, RL_ERR_IO,
                       "%s: tensor '%s' does not match wte.weight; rlhf's GPT-2 ties the LM head "
                       "to the token embedding",
                       path, head->name);
    size_t n = (size_t)head->numel;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float));
    rl_status st = RL_OK;
    if (!a || !b) {
        st = rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path);
    } else if (rl_st_read_f32(f, head->name, a, n) != RL_OK || rl_st_read_f32(f, wte->name, b, n) != RL_OK) {
        st = rl_errf(err, errlen, RL_ERR_IO, "%s: %s", path, rl_st_error(f));
    } else if (memcmp(a, b, n * sizeof(float)) != 0) {
        st = rl_errf(err, errlen, RL_ERR_IO,
                     "%s: tensor '%s' differs from wte.weight; untied LM heads are not supported "
                     "(GPT-2 ties them)",
                     path, head->name);
    }
    free(a);
    free(b);
    return st;
}

rl_status rl_gpt2_load(rl_ctx *ctx, const char *path, rl_gpt2_kind kind, rl_dtype dtype,
                       uint64_t seed, rl_gpt2 **out, char *err, size_t errlen) {
    *out = NULL;
    char *st_path = NULL, *cfg_path = NULL;
    if (ck_is_dir(path)) {
        st_path = ck_join(path, "model.safetensors");
        cfg_path = ck_join(path, "config.json");
        if (!ck_exists(st_path)) {
            rl_status s = rl_errf(err, errlen, RL_ERR_IO,
                                  "%s: no model.safetensors in this directory", path);
            free(st_path);
            free(cfg_path);
            return s;
        }
    } else {
        st_path = strdup(path);
        char *dir = ck_dirname(path);
        cfg_path = dir ? ck_join(dir, "config.json") : NULL;
        free(dir);
    }
    rl_st_file *f = NULL;
    rl_status st = rl_st_open(st_path, &f, err, errlen);
    rl_gpt2_config cfg;
    rl_gpt2 *m = NULL;
    const rl_st_tensor **by_model = NULL;
    if (st != RL_OK) goto done;
    if (!ck_config_from_meta(f, &cfg)) {
        if (!cfg_path || !ck_exists(cfg_path)) {
            st = rl_errf(err, errlen, RL_ERR_IO,
                         "%s: the file records no GPT-2 config (n_embd, n_layer, n_head, ...) in its "
                         "metadata and there is no config.json beside it; load the model directory "
                         "instead",
                         st_path);
            goto done;
        }
        st = rl_gpt2_config_load_json(cfg_path, &cfg, err, errlen);
        if (st != RL_OK) goto done;
    }
    m = rl_gpt2_new(ctx, &cfg, kind, dtype, seed);
    if (!m) {
        st = rl_errf(err, errlen, rl_ctx_status(ctx) ? rl_ctx_status(ctx) : RL_ERR_ARG, "%s: %s",
                     st_path, rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "cannot build the model");
        goto done;
    }
    /* match every file tensor to a model tensor */
    by_model = calloc((size_t)m->n_tensors, sizeof(*by_model));
    const rl_st_tensor *lm_head = NULL, *wte_src = NULL;
    for (size_t i = 0; i < rl_st_count(f); i++) {
        const rl_st_tensor *t = rl_st_at(f, i);
        const char *name = ck_model_name(t->name);
        if (!name) continue;
        if (strcmp(name, "lm_head.weight") == 0) {
            lm_head = t;
            continue;
        }
        int k = -1;
        for (int j = 0; j < m->n_tensors; j++)
            if (strcmp(m->tensors[j]->name, name) == 0) k = j;
        if (k < 0) {
            if (ck_is_head_name(name)) continue; /* another kind's head: not ours to load */
            st = rl_errf(err, errlen, RL_ERR_IO,
                         "%s: tensor '%s' is not part of a GPT-2 model with this config (%lld layers)",
                         st_path, t->name, (long long)cfg.n_layer);
            goto done;
        }
        if (by_model[k]) {
            st = rl_errf(err, errlen, RL_ERR_IO, "%s: tensors '%s' and '%s' both give '%s'", st_path,
                         by_model[k]->name, t->name, name);
            goto done;
        }
        by_model[k] = t;
        if (strcmp(name, "wte.weight") == 0) wte_src = t;
    }
    for (int j = 0; j < m->n_tensors; j++) {
        rl_tensor *dst = m->tensors[j];
        if (!by_model[j]) {
            if (ck_is_head_name(dst->name)) continue; /* fresh head (e.g. reward model from an LM) */
            st = rl_errf(err, errlen, RL_ERR_IO,
                         "%s: tensor '%s' is missing (a GPT-2 with %lld layers needs it)", st_path,
                         dst->name, (long long)cfg.n_layer);
            goto done;
        }
        st = ck_read_into(ctx, f, by_model[j], dst, err, errlen);
        if (st != RL_OK) goto done;
    }
    if (lm_head) st = ck_check_tied(f, lm_head, wte_src, err, errlen);
done:
    free(by_model);
    rl_st_close(f);
    free(st_path);
    free(cfg_path);
    if (st != RL_OK) {
        if (m) rl_gpt2_free(ctx, m);
        return st;
    }
    *out = m;
    return RL_OK;
}

/* ---- saving ------------------------------------------------------------------- */

static int ck_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

rl_status rl_gpt2_save(rl_ctx *ctx, const rl_gpt2 *m, const char *path, char *err, size_t errlen) {
    int one_file = ck_ends_with(path, ".safetensors");
    char *st_path = NULL, *cfg_path = NULL;
    if (one_file) {
        st_path = strdup(path);
    } else {
        if (!ck_is_dir(path) && mkdir(path, 0777) != 0)
            return rl_errf(err, errlen, RL_ERR_IO, "%s: cannot create the directory: %s", path,
                           strerror(errno));
        st_path = ck_join(path, "model.safetensors");
        cfg_path = ck_join(path, "config.json");
    }
    rl_st_writer *w = rl_st_writer_new();
    void **bufs = calloc((size_t)m->n_tensors, sizeof(*bufs));
    rl_status st = RL_OK;
    /* Hugging Face's head classes keep the trunk under "transformer."; the
     * LM checkpoint on the hub has no prefix. Both load here and there. */
    const char *prefix = m->kind == RL_GPT2_LM ? "" : "transformer.";
    rl_st_dtype sd = m->dtype == RL_F64 ? RL_ST_F64 : RL_ST_F32;
    for (int j = 0; j < m->n_tensors && st == RL_OK; j++) {
        rl_tensor *t = m->tensors[j];
        size_t bytes = (size_t)t->numel * rl_dtype_size(t->dtype);
        bufs[j] = malloc(bytes ? bytes : 8);
        if (!bufs[j] || rl_tensor_read(ctx, t, bufs[j], bytes) != RL_OK) {
            st = rl_errf(err, errlen, RL_ERR_MEMORY, "%s: cannot read tensor '%s'", st_path, t->name);
            break;
        }
        char name[96];
        snprintf(name, sizeof name, "%s%s", ck_is_head_name(t->name) ? "" : prefix, t->name);
        st = rl_st_writer_add(w, name, sd, t->ndim, t->shape, bufs[j], bytes);
        if (st != RL_OK) rl_errf(err, errlen, st, "%s: %s", st_path, rl_st_writer_error(w));
    }
    if (st == RL_OK) {
        char v[64];
        const rl_gpt2_config *c = &m->cfg;
        rl_st_writer_set_meta(w, "format", "pt");
        rl_st_writer_set_meta(w, "model_type", "gpt2");
        rl_st_writer_set_meta(w, "architecture", ck_arch[m->kind]);
        const char *keys[] = {"vocab_size", "n_positions", "n_layer", "n_head", "n_embd"};
        const int64_t vals[] = {c->vocab, c->n_ctx, c->n_layer, c->n_head, c->n_embd};
        for (int i = 0; i < 5; i++) {
            snprintf(v, sizeof v, "%lld", (long long)vals[i]);
            rl_st_writer_set_meta(w, keys[i], v);
        }
        snprintf(v, sizeof v, "%.17g", c->layer_norm_epsilon);
        rl_st_writer_set_meta(w, "layer_norm_epsilon", v);
        st = rl_st_writer_write(w, st_path);
        if (st != RL_OK) rl_errf(err, errlen, st, "%s", rl_st_writer_error(w));
    }
    if (st == RL_OK && cfg_path) st = rl_gpt2_config_save_json(cfg_path, &m->cfg, m->kind, err, errlen);
    for (int j = 0; j < m->n_tensors; j++) free(bufs[j]);
    free(bufs);
    rl_st_writer_free(w);
    free(st_path);
    free(cfg_path);
    return st;
}
