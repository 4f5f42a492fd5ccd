/* models/llama.c - the Llama family (models/rl_llama.h): config.json,
 * Hugging Face safetensors directories in and out, random initialisation,
 * rotary tables and the forward pass written with the engine's ops (rmsnorm,
 * rope, grouped-query attention, silu), so autodiff, gradient checks and the
 * backends come for free; and the family's part of batched generation with a
 * KV cache (rl_llama_generate; the driver is models/generate.c).
 */
#include "rl_llama.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate_internal.h"
#include "rl_file.h"
#include "rl_ops.h"
#include "rl_rng.h"
#include "rl_safetensors.h"

static const char *const rl_llama_family_names[] = {"llama", "mistral", "qwen2", "qwen3"};

int64_t rl_llama_ctx_limit(const rl_llama_config *c) {
    return c->sliding_window && c->sliding_window < c->max_pos ? c->sliding_window : c->max_pos;
}

const char *rl_llama_family_name(rl_llama_family f) {
    return (unsigned)f < 4 ? rl_llama_family_names[f] : "?";
}

/* ---- config.json ------------------------------------------------------------------- */

/* A positive integer field (an integral real such as 32.0 is accepted, as
 * Python's json writes none but hand-edited files may); def < 0: required. */
static int cfg_int(json_t *o, const char *key, int64_t def, int64_t *out, const char *path, char *err,
                   size_t n) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (def < 0) {
            rl_errf(err, n, RL_ERR_IO, "%s: \"%s\" is missing; it must be a positive integer", path, key);
            return 0;
        }
        *out = def;
        return 1;
    }
    double d = json_is_integer(v) ? (double)json_integer_value(v) : json_is_real(v) ? json_real_value(v) : NAN;
    if (!(d >= 1) || d != floor(d) || d > 1e12) {
        rl_errf(err, n, RL_ERR_IO, "%s: \"%s\" must be a positive integer", path, key);
        return 0;
    }
    *out = (int64_t)d;
    return 1;
}

static int cfg_num(json_t *o, const char *key, double def, double *out, const char *path, char *err, size_t n) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (isnan(def)) {
            rl_errf(err, n, RL_ERR_IO, "%s: \"%s\" is missing; it must be a number", path, key);
            return 0;
        }
        *out = def;
        return 1;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        rl_errf(err, n, RL_ERR_IO, "%s: \"%s\" must be a finite number", path, key);
        return 0;
    }
    *out = json_number_value(v);
    return 1;
}

static int cfg_bool(json_t *o, const char *key, int def) {
    json_t *v = json_object_get(o, key);
    return v && json_is_boolean(v) ? json_is_true(v) : def;
}

/* bos/eos ids: an integer, a list (the first), or null/absent (-1) */
static int32_t cfg_token(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (v && json_is_array(v)) v = json_array_get(v, 0);
    return v && json_is_integer(v) ? (int32_t)json_integer_value(v) : -1;
}

static rl_status rl_llama_config_check(const rl_llama_config *c, const char *path, char *err, size_t n) {
    if (c->n_head % c->n_kv_head != 0)
        return rl_errf(err, n, RL_ERR_IO, "%s: num_attention_heads (%lld) must be a multiple of num_key_value_heads (%lld)",
                       path, (long long)c->n_head, (long long)c->n_kv_head);
    if (c->head_dim % 2 != 0)
        return rl_errf(err, n, RL_ERR_IO, "%s: the head size %lld must be even (rotary pairs its halves)", path,
                       (long long)c->head_dim);
    if (c->vocab > INT32_MAX) return rl_errf(err, n, RL_ERR_IO, "%s: vocab_size does not fit i32 ids", path);
    /* config.json can only say this: qwen2 has q/k/v biases and none on
     * o_proj; the other families' attention_bias puts one on all four */
    if (c->family == RL_LLAMA_FAMILY_QWEN2 ? (!c->qkv_bias || c->o_bias) : c->qkv_bias != c->o_bias)
        return rl_errf(err, n, RL_ERR_IO,
                       "%s: %s attention with q/k/v biases %s and an o_proj bias %s cannot be written as config.json "
                       "(qwen2: q/k/v only; the others: attention_bias sets all four)",
                       path, rl_llama_family_name(c->family), c->qkv_bias ? "on" : "off", c->o_bias ? "on" : "off");
    if (!(c->rms_eps >= 0) || !(c->rope_theta > 0))
        return rl_errf(err, n, RL_ERR_IO, "%s: rms_norm_eps must be >= 0 and rope_theta > 0", path);
    return RL_OK;
}

rl_status rl_llama_config_load(const char *path, rl_llama_config *cfg, char *err, size_t n) {
    json_error_t je;
    json_t *o = json_load_file(path, 0, &je);
    if (!o) return rl_errf(err, n, RL_ERR_IO, "%s:%d:%d: %s", path, je.line, je.column, je.text);
    rl_status st = RL_ERR_IO;
    rl_llama_config c;
    memset(&c, 0, sizeof c);
    if (!json_is_object(o)) {
        rl_errf(err, n, RL_ERR_IO, "%s: not a JSON object", path);
        goto done;
    }
    json_t *mt = json_object_get(o, "model_type");
    const char *type = json_is_string(mt) ? json_string_value(mt) : NULL;
    int fam = -1;
    for (int i = 0; type && i < 4; i++)
        if (strcmp(type, rl_llama_family_names[i]) == 0) fam = i;
    if (fam < 0) {
        rl_errf(err, n, RL_ERR_IO,
                "%s: model_type %s%s%s is not one this loader knows (llama, mistral, qwen2, qwen3; "
                "GPT-2 directories are read by the GPT-2 loader)",
                path, type ? "\"" : "", type ? type : "(missing)", type ? "\"" : "");
        goto done;
    }
    c.family = (rl_llama_family)fam;
    if (!cfg_int(o, "vocab_size", -1, &c.vocab, path, err, n) ||
        !cfg_int(o, "hidden_size", -1, &c.hidden, path, err, n) ||
        !cfg_int(o, "num_hidden_layers", -1, &c.n_layer, path, err, n) ||
        !cfg_int(o, "num_attention_heads", -1, &c.n_head, path, err, n) ||
        !cfg_int(o, "intermediate_size", -1, &c.intermediate, path, err, n) ||
        !cfg_int(o, "num_key_value_heads", c.n_head, &c.n_kv_head, path, err, n) ||
        !cfg_int(o, "max_position_embeddings", 2048, &c.max_pos, path, err, n) ||
        !cfg_num(o, "rms_norm_eps", 1e-6, &c.rms_eps, path, err, n) ||
        !cfg_num(o, "rope_theta", 10000.0, &c.rope_theta, path, err, n))
        goto done;
    if (c.hidden % c.n_head != 0 && !json_object_get(o, "head_dim")) {
        rl_errf(err, n, RL_ERR_IO, "%s: hidden_size %lld is not a multiple of num_attention_heads %lld and there is no head_dim",
                path, (long long)c.hidden, (long long)c.n_head);
        goto done;
    }
    if (!cfg_int(o, "head_dim", c.hidden / c.n_head, &c.head_dim, path, err, n)) goto done;
    json_t *act = json_object_get(o, "hidden_act");
    if (act && !(json_is_string(act) && (strcmp(json_string_value(act), "silu") == 0 ||
                                        strcmp(json_string_value(act), "swish") == 0))) {
        rl_errf(err, n, RL_ERR_IO, "%s: hidden_act must be \"silu\" (the gated MLP of this family)", path);
        goto done;
    }
    if (cfg_bool(o, "mlp_bias", 0)) {
        rl_errf(err, n, RL_ERR_IO, "%s: mlp_bias true is not supported", path);
        goto done;
    }
    /* A sliding window changes nothing for sequences no longer than it (every
     * key is inside every query's window), so such models load and are used
     * up to the window: rl_llama_ctx_limit. Mistral applies it whenever it is
     * set; Qwen2/Qwen3 only with use_sliding_window. */
    json_t *sw = json_object_get(o, "sliding_window");
    if (sw && !json_is_null(sw) && cfg_bool(o, "use_sliding_window", c.family == RL_LLAMA_FAMILY_MISTRAL)) {
        if (!json_is_integer(sw) || json_integer_value(sw) < 1) {
            rl_errf(err, n, RL_ERR_IO, "%s: sliding_window must be null or a positive integer", path);
            goto done;
        }
        c.sliding_window = json_integer_value(sw);
    }
    /* transformers' PretrainedConfig defaults tie_word_embeddings to true, but
     * LlamaConfig, MistralConfig, Qwen2Config and Qwen3Config all default it to false */
    c.tie = cfg_bool(o, "tie_word_embeddings", 0);
    int ab = cfg_bool(o, "attention_bias", 0);
    c.qkv_bias = c.family == RL_LLAMA_FAMILY_QWEN2 ? 1 : ab;
    c.o_bias = c.family == RL_LLAMA_FAMILY_QWEN2 ? 0 : ab;
    c.qk_norm = c.family == RL_LLAMA_FAMILY_QWEN3;
    json_t *rs = json_object_get(o, "rope_scaling");
    if (rs && !json_is_null(rs)) {
        json_t *t = json_object_get(rs, "rope_type");
        if (!t) t = json_object_get(rs, "type");
        const char *ty = json_is_string(t) ? json_string_value(t) : "(none)";
        if (strcmp(ty, "default") != 0) {
            if (strcmp(ty, "llama3") != 0) {
                rl_errf(err, n, RL_ERR_IO, "%s: rope_scaling type \"%s\" is not supported (only \"llama3\")", path, ty);
                goto done;
            }
            c.rope_llama3 = 1;
            if (!cfg_num(rs, "factor", NAN, &c.rope_factor, path, err, n) ||
                !cfg_num(rs, "low_freq_factor", NAN, &c.rope_low_freq, path, err, n) ||
                !cfg_num(rs, "high_freq_factor", NAN, &c.rope_high_freq, path, err, n) ||
                !cfg_int(rs, "original_max_position_embeddings", -1, &c.rope_orig_max_pos, path, err, n))
                goto done;
            if (!(c.rope_factor > 0) || !(c.rope_high_freq > c.rope_low_freq) || !(c.rope_low_freq > 0)) {
                rl_errf(err, n, RL_ERR_IO, "%s: rope_scaling needs factor > 0 and high_freq_factor > low_freq_factor > 0", path);
                goto done;
            }
        }
    }
    c.bos_id = cfg_token(o, "bos_token_id");
    c.eos_id = cfg_token(o, "eos_token_id");
    st = rl_llama_config_check(&c, path, err, n);
    if (st == RL_OK) *cfg = c;
done:
    json_decref(o);
    return st;
}

rl_status rl_llama_config_preset(const char *name, rl_llama_config *cfg) {
    rl_llama_config c;
    memset(&c, 0, sizeof c);
    c.rope_theta = 10000;
    c.bos_id = c.eos_id = -1;
    if (strcmp(name, "llama-tiny") == 0) {
        c.family = RL_LLAMA_FAMILY_LLAMA;
        c.vocab = 64, c.hidden = 32, c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.head_dim = 8;
        c.intermediate = 48, c.max_pos = 64, c.rms_eps = 1e-5;
    } else if (strcmp(name, "llama-mini") == 0) {
        /* the size of GPT-2's "mini" (0.8M parameters at V 264) for the main
         * job on the Llama family: tied like SmolLM2, MLP width ~8/3 C */
        c.family = RL_LLAMA_FAMILY_LLAMA;
        c.vocab = 264, c.hidden = 128, c.n_layer = 4, c.n_head = 4, c.n_kv_head = 2, c.head_dim = 32;
        c.intermediate = 352, c.max_pos = 256, c.rms_eps = 1e-5, c.tie = 1;
    } else if (strcmp(name, "smollm2-135m") == 0) {
        /* HuggingFaceTB/SmolLM2-135M config.json */
        c.family = RL_LLAMA_FAMILY_LLAMA;
        c.vocab = 49152, c.hidden = 576, c.n_layer = 30, c.n_head = 9, c.n_kv_head = 3, c.head_dim = 64;
        c.intermediate = 1536, c.max_pos = 8192, c.rms_eps = 1e-5, c.rope_theta = 100000, c.tie = 1;
    } else if (strcmp(name, "qwen2.5-0.5b") == 0) {
        /* Qwen/Qwen2.5-0.5B config.json */
        c.family = RL_LLAMA_FAMILY_QWEN2;
        c.vocab = 151936, c.hidden = 896, c.n_layer = 24, c.n_head = 14, c.n_kv_head = 2, c.head_dim = 64;
        c.intermediate = 4864, c.max_pos = 32768, c.rms_eps = 1e-6, c.rope_theta = 1000000, c.tie = 1;
        c.qkv_bias = 1;
    } else {
        return RL_ERR_ARG;
    }
    *cfg = c;
    return RL_OK;
}

/* ---- rotary frequencies ----------------------------------------------------------------- */

/* inv_freq[i] = theta^(-2i/hd), then llama3's wavelength-based rescaling:
 * wavelengths shorter than orig/high_freq_factor are kept, longer than
 * orig/low_freq_factor divided by factor, and in between interpolated with
 * smooth = (orig / wavelen - low) / (high - low) (transformers'
 * _compute_llama3_parameters). */
static void rl_llama_inv_freq(const rl_llama_config *c, double *f) {
    const int64_t h = c->head_dim / 2;
    for (int64_t i = 0; i < h; i++) {
        double v = 1.0 / pow(c->rope_theta, (double)(2 * i) / (double)c->head_dim);
        if (c->rope_llama3) {
            const double orig = (double)c->rope_orig_max_pos, wl = 2 * M_PI / v;
            const double low_wl = orig / c->rope_low_freq, high_wl = orig / c->rope_high_freq;
            if (wl > low_wl) v = v / c->rope_factor;
            else if (wl >= high_wl) {
                const double s = (orig / wl - c->rope_low_freq) / (c->rope_high_freq - c->rope_low_freq);
                v = (1 - s) * v / c->rope_factor + s * v;
            }
        }
        f[i] = v;
    }
}

rl_status rl_llama_rope_tables(rl_ctx *ctx, const rl_llama *m, int64_t B, int64_t T, const int32_t *pos,
                               rl_tensor **cos_out, rl_tensor **sin_out) {
    const int64_t h = m->cfg.head_dim / 2, N = B * T * h;
    double *c = malloc(sizeof(double) * (size_t)(N ? N : 1)), *s = malloc(sizeof(double) * (size_t)(N ? N : 1));
    if (!c || !s) {
        free(c), free(s);
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "llama: out of memory for the rotary tables");
        return RL_ERR_MEMORY;
    }
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const double p = pos ? (double)pos[b * T + t] : (double)t;
            for (int64_t i = 0; i < h; i++) {
                const double a = p * m->inv_freq[i];
                c[(b * T + t) * h + i] = cos(a);
                s[(b * T + t) * h + i] = sin(a);
            }
        }
    if (m->dtype == RL_F32) /* narrowed in place: the angles themselves were taken in double */
        for (int64_t i = 0; i < N; i++) ((float *)c)[i] = (float)c[i], ((float *)s)[i] = (float)s[i];
    const int64_t shape[3] = {B, T, h};
    rl_tensor *tc = rl_const(ctx, m->dtype, 3, shape, c), *ts = rl_const(ctx, m->dtype, 3, shape, s);
    free(c), free(s);
    *cos_out = tc, *sin_out = ts;
    return tc && ts ? RL_OK : rl_ctx_status(ctx);
}

/* ---- construction ------------------------------------------------------------------------ */

/* The parameters in state-dict order: each entry's name, shape and where
 * the model keeps it. */
typedef struct rl_llama_spec {
    char name[96];
    int ndim;
    int64_t shape[2];
    rl_tensor **slot;
    int is_norm, is_bias;
} rl_llama_spec;

static int rl_llama_specs(rl_llama *m, rl_llama_spec *sp) {
    const rl_llama_config *c = &m->cfg;
    const int64_t C = c->hidden, hd = c->head_dim, Q = c->n_head * hd, KV = c->n_kv_head * hd, I = c->intermediate;
    int k = 0;
#define RL_SPEC(nm, nd, s0, s1, sl, norm, bias)                                                     \
    do {                                                                                            \
        snprintf(sp[k].name, sizeof sp[k].name, "%s", nm);                                          \
        sp[k].ndim = nd, sp[k].shape[0] = s0, sp[k].shape[1] = s1, sp[k].slot = sl;                 \
        sp[k].is_norm = norm, sp[k].is_bias = bias, k++;                                            \
    } while (0)
    RL_SPEC("model.embed_tokens.weight", 2, c->vocab, C, &m->embed, 0, 0);
    char nm[96];
    for (int64_t l = 0; l < c->n_layer; l++) {
        rl_llama_layer *L = &m->layers[l];
#define RL_LAYER(suffix, nd, s0, s1, field, norm, bias)                                             \
    do {                                                                                            \
        snprintf(nm, sizeof nm, "model.layers.%lld.%s", (long long)l, suffix);                      \
        RL_SPEC(nm, nd, s0, s1, &L->field, norm, bias);                                             \
    } while (0)
        RL_LAYER("input_layernorm.weight", 1, C, 0, in_norm, 1, 0);
        RL_LAYER("self_attn.q_proj.weight", 2, Q, C, q_w, 0, 0);
        if (c->qkv_bias) RL_LAYER("self_attn.q_proj.bias", 1, Q, 0, q_b, 0, 1);
        RL_LAYER("self_attn.k_proj.weight", 2, KV, C, k_w, 0, 0);
        if (c->qkv_bias) RL_LAYER("self_attn.k_proj.bias", 1, KV, 0, k_b, 0, 1);
        RL_LAYER("self_attn.v_proj.weight", 2, KV, C, v_w, 0, 0);
        if (c->qkv_bias) RL_LAYER("self_attn.v_proj.bias", 1, KV, 0, v_b, 0, 1);
        RL_LAYER("self_attn.o_proj.weight", 2, C, Q, o_w, 0, 0);
        if (c->o_bias) RL_LAYER("self_attn.o_proj.bias", 1, C, 0, o_b, 0, 1);
        if (c->qk_norm) {
            RL_LAYER("self_attn.q_norm.weight", 1, hd, 0, q_norm, 1, 0);
            RL_LAYER("self_attn.k_norm.weight", 1, hd, 0, k_norm, 1, 0);
        }
        RL_LAYER("mlp.gate_proj.weight", 2, I, C, gate_w, 0, 0);
        RL_LAYER("mlp.up_proj.weight", 2, I, C, up_w, 0, 0);
        RL_LAYER("mlp.down_proj.weight", 2, C, I, down_w, 0, 0);
        RL_LAYER("post_attention_layernorm.weight", 1, C, 0, post_norm, 1, 0);
#undef RL_LAYER
    }
    RL_SPEC("model.norm.weight", 1, C, 0, &m->norm, 1, 0);
    if (!c->tie) RL_SPEC("lm_head.weight", 2, c->vocab, C, &m->lm_head, 0, 0);
#undef RL_SPEC
    return k;
}

static int rl_llama_max_specs(const rl_llama_config *c) { return (int)(3 + 16 * c->n_layer); }

/* Allocates the model's parameters (uninitialised); NULL on failure. */
static rl_llama *rl_llama_alloc(rl_ctx *ctx, const rl_llama_config *cfg, rl_dtype dtype, rl_llama_spec **specs,
                                int *n_specs) {
    if (dtype != RL_F32 && dtype != RL_F64) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "llama: the model's dtype must be f32 or f64");
        return NULL;
    }
    rl_llama *m = calloc(1, sizeof *m);
    rl_llama_spec *sp = calloc((size_t)rl_llama_max_specs(cfg), sizeof *sp);
    if (m) m->cfg = *cfg, m->dtype = dtype;
    if (m) m->layers = calloc((size_t)cfg->n_layer, sizeof *m->layers);
    if (m) m->inv_freq = malloc(sizeof(double) * (size_t)(cfg->head_dim / 2));
    if (!m || !sp || !m->layers || !m->inv_freq) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "llama: out of memory");
        free(sp);
        rl_llama_free(ctx, m);
        return NULL;
    }
    rl_llama_inv_freq(cfg, m->inv_freq);
    int k = rl_llama_specs(m, sp);
    m->tensors = calloc((size_t)k, sizeof *m->tensors);
    m->names = calloc((size_t)k, sizeof *m->names);
    if (!m->tensors || !m->names) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "llama: out of memory");
        free(sp);
        rl_llama_free(ctx, m);
        return NULL;
    }
    for (int i = 0; i < k; i++) {
        rl_tensor *t = rl_param_new(ctx, dtype, sp[i].ndim, sp[i].shape, sp[i].name);
        m->names[i] = strdup(sp[i].name);
        if (!t || !m->names[i]) {
            if (t) rl_tensor_free(ctx, t);
            free(sp);
            rl_llama_free(ctx, m);
            return NULL;
        }
        *sp[i].slot = t;
        m->tensors[m->n_tensors++] = t;
    }
    if (cfg->tie) m->lm_head = m->embed;
    *specs = sp;
    *n_specs = k;
    return m;
}

rl_llama *rl_llama_new(rl_ctx *ctx, const rl_llama_config *cfg, rl_dtype dtype, uint64_t seed) {
    char err[256];
    if (rl_llama_config_check(cfg, "llama config", err, sizeof err) != RL_OK) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s", err);
        return NULL;
    }
    rl_llama_spec *sp;
    int k;
    rl_llama *m = rl_llama_alloc(ctx, cfg, dtype, &sp, &k);
    if (!m) return NULL;
    rl_rng rng;
    rl_rng_seed(&rng, seed);
    for (int i = 0; i < k; i++) {
        rl_tensor *t = *sp[i].slot;
        double *v = malloc(sizeof(double) * (size_t)t->numel);
        if (!v) {
            rl_ctx_fail(ctx, RL_ERR_MEMORY, "llama: out of memory");
            free(sp);
            rl_llama_free(ctx, m);
            return NULL;
        }
        for (int64_t e = 0; e < t->numel; e++)
            v[e] = sp[i].is_norm ? 1.0 : sp[i].is_bias ? 0.0 : 0.02 * rl_rng_normal(&rng);
        for (int64_t e = 0; e < t->numel; e++) rl_tensor_set(ctx, t, e, v[e]);
        free(v);
    }
    free(sp);
    return m;
}

void rl_llama_free(rl_ctx *ctx, rl_llama *m) {
    if (!m) return;
    for (int i = 0; i < m->n_tensors; i++) rl_tensor_free(ctx, m->tensors[i]);
    if (m->names)
        for (int i = 0; i < m->n_tensors; i++) free(m->names[i]);
    free(m->names);
    free(m->tensors);
    free(m->layers);
    free(m->inv_freq);
    free(m);
}

/* ---- loading ------------------------------------------------------------------------------- */

/* The weight files of a directory: one model.safetensors, or the shards of
 * the index (each opened once). */
typedef struct rl_llama_files {
    int n;
    char **paths;
    rl_st_file **files;
    json_t *weight_map; /* NULL for a single file */
} rl_llama_files;

static void rl_llama_files_close(rl_llama_files *fs) {
    for (int i = 0; i < fs->n; i++) {
        rl_st_close(fs->files[i]);
        free(fs->paths[i]);
    }
    free(fs->files), free(fs->paths);
    json_decref(fs->weight_map);
    memset(fs, 0, sizeof *fs);
}

static rl_status rl_llama_files_add(rl_llama_files *fs, const char *path, char *err, size_t n) {
    for (int i = 0; i < fs->n; i++)
        if (strcmp(fs->paths[i], path) == 0) return RL_OK;
    char **p = realloc(fs->paths, sizeof *p * (size_t)(fs->n + 1));
    if (p) fs->paths = p;
    rl_st_file **f = realloc(fs->files, sizeof *f * (size_t)(fs->n + 1));
    if (f) fs->files = f;
    if (!p || !f) return rl_errf(err, n, RL_ERR_MEMORY, "%s: out of memory", path);
    rl_st_file *sf;
    rl_status st = rl_st_open(path, &sf, err, n);
    if (st != RL_OK) return st;
    fs->paths[fs->n] = strdup(path);
    fs->files[fs->n++] = sf;
    return RL_OK;
}

static rl_status rl_llama_files_open(const char *dir, rl_llama_files *fs, char *err, size_t n) {
    memset(fs, 0, sizeof *fs);
    char path[4096], idx[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    snprintf(idx, sizeof idx, "%s/model.safetensors.index.json", dir);
    FILE *f = fopen(path, "rb");
    if (f) {
        fclose(f);
        return rl_llama_files_add(fs, path, err, n);
    }
    json_error_t je;
    json_t *o = json_load_file(idx, 0, &je);
    if (!o) {
        FILE *g = fopen(idx, "rb");
        if (!g)
            return rl_errf(err, n, RL_ERR_IO, "%s: neither model.safetensors nor model.safetensors.index.json is there", dir);
        fclose(g);
        return rl_errf(err, n, RL_ERR_IO, "%s:%d:%d: %s", idx, je.line, je.column, je.text);
    }
    json_t *wm = json_object_get(o, "weight_map");
    if (!json_is_object(wm)) {
        json_decref(o);
        return rl_errf(err, n, RL_ERR_IO, "%s: \"weight_map\" must be an object of tensor name -> file", idx);
    }
    fs->weight_map = json_incref(wm);
    json_decref(o);
    const char *key;
    json_t *v;
    json_object_foreach(fs->weight_map, key, v) {
        if (!json_is_string(v) || strchr(json_string_value(v), '/')) {
            rl_errf(err, n, RL_ERR_IO, "%s: weight_map[\"%s\"] must be a file name in the directory", idx, key);
            rl_llama_files_close(fs);
            return RL_ERR_IO;
        }
        snprintf(path, sizeof path, "%s/%s", dir, json_string_value(v));
        rl_status st = rl_llama_files_add(fs, path, err, n);
        if (st != RL_OK) {
            rl_llama_files_close(fs);
            return st;
        }
    }
    return RL_OK;
}

/* The file holding tensor `name`, or NULL with the error naming it. */
static rl_st_file *rl_llama_files_find(rl_llama_files *fs, const char *dir, const char *name, char *err, size_t n) {
    if (fs->weight_map) {
        json_t *v = json_object_get(fs->weight_map, name);
        if (v) {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", dir, json_string_value(v));
            for (int i = 0; i < fs->n; i++)
                if (strcmp(fs->paths[i], path) == 0 && rl_st_find(fs->files[i], name)) return fs->files[i];
            rl_errf(err, n, RL_ERR_IO, "%s: tensor \"%s\" is missing (model.safetensors.index.json says it is here)", path, name);
            return NULL;
        }
        rl_errf(err, n, RL_ERR_IO, "%s/model.safetensors.index.json: tensor \"%s\" is missing from weight_map", dir, name);
        return NULL;
    }
    if (rl_st_find(fs->files[0], name)) return fs->files[0];
    rl_errf(err, n, RL_ERR_IO, "%s: tensor \"%s\" is missing", fs->paths[0], name);
    return NULL;
}

rl_llama *rl_llama_load(rl_ctx *ctx, const char *dir, rl_dtype dtype, char *err, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    rl_llama_config cfg;
    if (rl_llama_config_load(path, &cfg, err, n) != RL_OK) return NULL;
    rl_llama_files fs;
    if (rl_llama_files_open(dir, &fs, err, n) != RL_OK) return NULL;
    rl_llama_spec *sp = NULL;
    int k = 0;
    rl_llama *m = rl_llama_alloc(ctx, &cfg, dtype, &sp, &k);
    if (!m) {
        rl_errf(err, n, RL_ERR_MEMORY, "%s: %s", dir, rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "out of memory");
        rl_llama_files_close(&fs);
        return NULL;
    }
    for (int i = 0; i < k; i++) {
        rl_st_file *f = rl_llama_files_find(&fs, dir, sp[i].name, err, n);
        const rl_st_tensor *st = f ? rl_st_find(f, sp[i].name) : NULL;
        rl_tensor *t = *sp[i].slot;
        if (st && !(st->ndim == sp[i].ndim && st->shape[0] == sp[i].shape[0] &&
                    (sp[i].ndim == 1 || st->shape[1] == sp[i].shape[1]))) {
            rl_errf(err, n, RL_ERR_IO, "%s: tensor \"%s\" has shape [%lld%s%lld], config.json says [%lld%s%lld]",
                    rl_st_path(f), sp[i].name, (long long)(st->ndim ? st->shape[0] : 0), st->ndim > 1 ? ", " : "",
                    (long long)(st->ndim > 1 ? st->shape[1] : 0), (long long)sp[i].shape[0],
                    sp[i].ndim > 1 ? ", " : "", (long long)(sp[i].ndim > 1 ? sp[i].shape[1] : 0));
            st = NULL;
        }
        rl_status rs = RL_ERR_IO;
        if (st) {
            const size_t nb = rl_dtype_size(dtype) * (size_t)t->numel;
            void *host = malloc(nb ? nb : 1);
            if (!host) rs = rl_errf(err, n, RL_ERR_MEMORY, "%s: out of memory", sp[i].name);
            else if (dtype == RL_F64) rs = rl_st_read_f64(f, sp[i].name, host, (size_t)t->numel);
            else rs = rl_st_read_f32(f, sp[i].name, host, (size_t)t->numel);
            if (host && rs != RL_OK) rl_errf(err, n, rs, "%s", rl_st_error(f));
            if (rs == RL_OK && (rs = rl_tensor_write(ctx, t, host, nb)) != RL_OK)
                rl_errf(err, n, rs, "%s: %s", sp[i].name, rl_ctx_error(ctx));
            free(host);
        }
        if (rs != RL_OK) {
            free(sp);
            rl_llama_free(ctx, m);
            rl_llama_files_close(&fs);
            return NULL;
        }
    }
    free(sp);
    rl_llama_files_close(&fs);
    return m;
}

rl_status rl_llama_read_extra(rl_ctx *ctx, const char *dir, rl_tensor *const *dst, int n_dst, int *found, char *err,
                              size_t n) {
    rl_llama_files fs;
    if (rl_llama_files_open(dir, &fs, err, n) != RL_OK) return RL_ERR_IO;
    rl_status rs = RL_OK;
    for (int i = 0; i < n_dst && rs == RL_OK; i++) {
        rl_tensor *t = dst[i];
        found[i] = 0;
        const rl_st_tensor *st = NULL;
        rl_st_file *f = NULL;
        for (int k = 0; k < fs.n && !st; k++)
            if ((st = rl_st_find(fs.files[k], t->name)) != NULL) f = fs.files[k];
        if (!st) continue; /* a head the checkpoint lacks: the caller keeps its fresh one */
        int64_t numel = 1;
        for (int d = 0; d < st->ndim; d++) numel *= st->shape[d];
        if (st->ndim != t->ndim || numel != t->numel || (st->ndim >= 1 && st->shape[st->ndim - 1] != t->shape[t->ndim - 1])) {
            char dd[96];
            rs = rl_errf(err, n, RL_ERR_IO, "%s: tensor \"%s\" has %d dims and %lld elements; this model needs %s",
                         rl_st_path(f), t->name, st->ndim, (long long)numel, rl_tensor_describe(t, dd, sizeof dd));
            break;
        }
        const size_t nb = rl_dtype_size(t->dtype) * (size_t)t->numel;
        void *host = malloc(nb ? nb : 1);
        if (!host) rs = rl_errf(err, n, RL_ERR_MEMORY, "%s: out of memory", t->name);
        else if ((rs = t->dtype == RL_F64 ? rl_st_read_f64(f, t->name, host, (size_t)t->numel)
                                          : rl_st_read_f32(f, t->name, host, (size_t)t->numel)) != RL_OK)
            rl_errf(err, n, rs, "%s", rl_st_error(f));
        else if ((rs = rl_tensor_write(ctx, t, host, nb)) != RL_OK)
            rl_errf(err, n, rs, "%s: %s", t->name, rl_ctx_error(ctx));
        free(host);
        found[i] = rs == RL_OK;
    }
    rl_llama_files_close(&fs);
    return rs;
}

/* ---- saving ---------------------------------------------------------------------------------- */

static json_t *rl_llama_config_json(const rl_llama_config *c) {
    static const char *const arch[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                       "Qwen3ForCausalLM"};
    json_t *o = json_object();
    json_object_set_new(o, "architectures", json_pack("[s]", arch[c->family]));
    json_object_set_new(o, "model_type", json_string(rl_llama_family_name(c->family)));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_head));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_pos));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie));
    if (c->family != RL_LLAMA_FAMILY_QWEN2) json_object_set_new(o, "attention_bias", json_boolean(c->qkv_bias));
    json_object_set_new(o, "hidden_act", json_string("silu"));
    json_object_set_new(o, "torch_dtype", json_string("float32"));
    if (c->family != RL_LLAMA_FAMILY_LLAMA)
        json_object_set_new(o, "sliding_window", c->sliding_window ? json_integer(c->sliding_window) : json_null());
    if (c->sliding_window && c->family != RL_LLAMA_FAMILY_MISTRAL)
        json_object_set_new(o, "use_sliding_window", json_true());
    if (c->rope_llama3)
        json_object_set_new(o, "rope_scaling",
                            json_pack("{s:s,s:f,s:f,s:f,s:I}", "rope_type", "llama3", "factor", c->rope_factor,
                                      "low_freq_factor", c->rope_low_freq, "high_freq_factor", c->rope_high_freq,
                                      "original_max_position_embeddings", (json_int_t)c->rope_orig_max_pos));
    else
        json_object_set_new(o, "rope_scaling", json_null());
    json_object_set_new(o, "bos_token_id", c->bos_id >= 0 ? json_integer(c->bos_id) : json_null());
    json_object_set_new(o, "eos_token_id", c->eos_id >= 0 ? json_integer(c->eos_id) : json_null());
    return o;
}

rl_status rl_llama_save(rl_ctx *ctx, const rl_llama *m, const char *dir, char *err, size_t n) {
    return rl_llama_save_with(ctx, m, NULL, 0, dir, err, n);
}

rl_status rl_llama_save_with(rl_ctx *ctx, const rl_llama *m, rl_tensor *const *extra, int n_extra, const char *dir,
                             char *err, size_t n) {
    if (!rl_path_mkdirs(dir)) return rl_errf(err, n, RL_ERR_IO, "%s: cannot create the directory: %s", dir, strerror(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *o = rl_llama_config_json(&m->cfg);
    char *text = o ? json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(17)) : NULL;
    json_decref(o);
    if (!text) return rl_errf(err, n, RL_ERR_MEMORY, "%s: out of memory", path);
    rl_atomic_file a;
    FILE *f = rl_atomic_open(&a, path, err, n);
    if (!f) {
        free(text);
        return RL_ERR_IO;
    }
    int ok = fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    free(text);
    if (!ok) {
        rl_atomic_abort(&a);
        return rl_errf(err, n, RL_ERR_IO, "%s: write failed", path);
    }
    rl_status st = rl_atomic_commit(&a, err, n);
    if (st != RL_OK) return st;
    /* the weights as F32, in one buffer the writer points into */
    int64_t total = 0;
    for (int i = 0; i < m->n_tensors; i++) total += m->tensors[i]->numel;
    for (int i = 0; i < n_extra; i++) total += extra[i]->numel;
    float *buf = malloc(sizeof(float) * (size_t)(total ? total : 1));
    rl_st_writer *w = rl_st_writer_new();
    if (!buf || !w) {
        free(buf), rl_st_writer_free(w);
        return rl_errf(err, n, RL_ERR_MEMORY, "%s: out of memory", dir);
    }
    rl_st_writer_set_meta(w, "format", "pt");
    int64_t off = 0;
    for (int i = 0; i < m->n_tensors; i++) {
        const rl_tensor *t = m->tensors[i];
        for (int64_t e = 0; e < t->numel; e++) buf[off + e] = (float)rl_tensor_get(ctx, t, e);
        rl_st_writer_add(w, m->names[i], RL_ST_F32, t->ndim, t->shape, buf + off, sizeof(float) * (size_t)t->numel);
        off += t->numel;
    }
    for (int i = 0; i < n_extra; i++) {
        const rl_tensor *t = extra[i];
        for (int64_t e = 0; e < t->numel; e++) buf[off + e] = (float)rl_tensor_get(ctx, t, e);
        rl_st_writer_add(w, t->name, RL_ST_F32, t->ndim, t->shape, buf + off, sizeof(float) * (size_t)t->numel);
        off += t->numel;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    st = rl_st_writer_write(w, path);
    if (st != RL_OK) rl_errf(err, n, st, "%s", rl_st_writer_error(w));
    rl_st_writer_free(w);
    free(buf);
    return st;
}

/* ---- forward ---------------------------------------------------------------------------------- */

/* x [B, T, in] @ W^T (+ b) */
static rl_tensor *rl_llama_linear(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, rl_tensor *b) {
    rl_tensor *y = rl_matmul(ctx, x, w, 0, 1);
    return b ? rl_add(ctx, y, b) : y;
}

/* Layer l's attention inputs from x [B, T, C]: q [B, T, H, hd] and k, v
 * [B, T, Hkv, hd], with qwen3's q/k norms and rotary (cos, sin [B, T, hd/2])
 * applied, so k is what attention reads and what a KV cache stores. */
static void rl_llama_layer_qkv(rl_ctx *ctx, const rl_llama *m, int64_t l, rl_tensor *x, rl_tensor *cs,
                               rl_tensor *sn, rl_tensor **q_out, rl_tensor **k_out, rl_tensor **v_out) {
    const rl_llama_config *c = &m->cfg;
    const rl_llama_layer *L = &m->layers[l];
    const int64_t B = x ? x->shape[0] : 0, T = x ? x->shape[1] : 0, H = c->n_head, Hkv = c->n_kv_head,
                  hd = c->head_dim;
    rl_tensor *h = rl_rmsnorm(ctx, x, L->in_norm, c->rms_eps);
    rl_tensor *q = rl_reshape(ctx, rl_llama_linear(ctx, h, L->q_w, L->q_b), 4, (int64_t[]){B, T, H, hd});
    rl_tensor *k = rl_reshape(ctx, rl_llama_linear(ctx, h, L->k_w, L->k_b), 4, (int64_t[]){B, T, Hkv, hd});
    rl_tensor *v = rl_reshape(ctx, rl_llama_linear(ctx, h, L->v_w, L->v_b), 4, (int64_t[]){B, T, Hkv, hd});
    if (c->qk_norm) {
        q = rl_rmsnorm(ctx, q, L->q_norm, c->rms_eps);
        k = rl_rmsnorm(ctx, k, L->k_norm, c->rms_eps);
    }
    *q_out = rl_rope(ctx, q, cs, sn);
    *k_out = rl_rope(ctx, k, cs, sn);
    *v_out = v;
}

/* The rest of layer l given the merged attention output a [B, T, H hd]:
 * o_proj with its residual, then the gated MLP with its residual. */
static rl_tensor *rl_llama_layer_finish(rl_ctx *ctx, const rl_llama *m, int64_t l, rl_tensor *x, rl_tensor *a) {
    const rl_llama_layer *L = &m->layers[l];
    x = rl_add(ctx, x, rl_llama_linear(ctx, a, L->o_w, L->o_b));
    rl_tensor *h = rl_rmsnorm(ctx, x, L->post_norm, m->cfg.rms_eps);
    rl_tensor *g = rl_silu(ctx, rl_llama_linear(ctx, h, L->gate_w, NULL));
    rl_tensor *u = rl_llama_linear(ctx, h, L->up_w, NULL);
    return rl_add(ctx, x, rl_llama_linear(ctx, rl_mul(ctx, g, u), L->down_w, NULL));
}

rl_tensor *rl_llama_hidden_kv(rl_ctx *ctx, const rl_llama *m, rl_tensor *ids, rl_llama_kv_fn fn, void *user) {
    if (!ids) return NULL;
    if (ids->ndim != 2) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "llama: ids must be i32 [B, T]");
        return NULL;
    }
    const rl_llama_config *c = &m->cfg;
    const int64_t B = ids->shape[0], T = ids->shape[1], H = c->n_head, hd = c->head_dim;
    rl_tensor *cs, *sn;
    if (rl_llama_rope_tables(ctx, m, B, T, NULL, &cs, &sn) != RL_OK) return NULL;
    static const int to_heads[4] = {0, 2, 1, 3}; /* [B, T, H, hd] <-> [B, H, T, hd] */
    rl_tensor *x = rl_embedding(ctx, m->embed, ids);
    for (int64_t l = 0; l < c->n_layer; l++) {
        rl_tensor *q, *k, *v;
        rl_llama_layer_qkv(ctx, m, l, x, cs, sn, &q, &k, &v);
        q = rl_permute(ctx, q, to_heads);
        k = rl_permute(ctx, k, to_heads);
        v = rl_permute(ctx, v, to_heads);
        if (fn && k && v) fn(ctx, (int)l, k, v, user);
        rl_tensor *a = rl_permute(ctx, rl_attention(ctx, q, k, v, 0), to_heads);
        x = rl_llama_layer_finish(ctx, m, l, x, rl_reshape(ctx, a, 3, (int64_t[]){B, T, H * hd}));
    }
    return rl_rmsnorm(ctx, x, m->norm, c->rms_eps);
}

rl_tensor *rl_llama_hidden(rl_ctx *ctx, const rl_llama *m, rl_tensor *ids) {
    return rl_llama_hidden_kv(ctx, m, ids, NULL, NULL);
}

rl_tensor *rl_llama_logits(rl_ctx *ctx, const rl_llama *m, rl_tensor *ids) {
    return rl_llama_linear(ctx, rl_llama_hidden(ctx, m, ids), m->lm_head, NULL);
}

/* ---- generation (the driver is models/generate.c) --------------------------------------- */

static rl_tensor *rl_llama_gen_forward(rl_ctx *ctx, const void *model, rl_tensor *ids, rl_gen_kv_fn fn,
                                       void *user) {
    return rl_llama_hidden_kv(ctx, model, ids, fn, user);
}

static rl_tensor *rl_llama_gen_lm_head(rl_ctx *ctx, const void *model, rl_tensor *hidden) {
    const rl_llama *m = model;
    return rl_llama_linear(ctx, hidden, m->lm_head, NULL);
}

/* One token per row at its own position: the rotary angles are pos[b] *
 * inv_freq, so the key stored in slot pos[b] is the one a full forward would
 * compute there. With T = 1, [B, 1, Hkv, hd] is the cache's per-row head
 * order, so k and v are copied head by head without a permute. */
static rl_tensor *rl_llama_gen_step(rl_ctx *ctx, const void *model, const rl_gen_step *s) {
    const rl_llama *m = model;
    const rl_llama_config *c = &m->cfg;
    const int64_t H = c->n_head, Hkv = c->n_kv_head, hd = c->head_dim;
    rl_tensor *cs, *sn;
    if (rl_llama_rope_tables(ctx, m, s->B, 1, s->pos, &cs, &sn) != RL_OK) return NULL;
    rl_tensor *x = rl_embedding(ctx, m->embed, s->ids); /* [B, 1, C] */
    for (int64_t l = 0; l < c->n_layer; l++) {
        rl_tensor *q, *k, *v;
        rl_llama_layer_qkv(ctx, m, l, x, cs, sn, &q, &k, &v);
        if (!q || !k || !v) return NULL;
        rl_gen_store_slot(ctx, s, (int)l, Hkv, hd, k, 0, v, 0, Hkv * hd);
        x = rl_llama_layer_finish(ctx, m, l, x, rl_gen_attend(ctx, s, (int)l, q, H, Hkv, hd));
    }
    return rl_llama_linear(ctx, rl_rmsnorm(ctx, x, m->norm, c->rms_eps), m->lm_head, NULL);
}

rl_status rl_llama_generate(rl_ctx *ctx, const rl_llama *m, const int32_t *prompts, const int64_t *prompt_len,
                            int64_t B, int64_t stride, const rl_gen_cfg *cfg, rl_rng *rng, rl_gen_out *out) {
    rl_gen_family f = {.name = "llama generate", .ctx_name = "max_position_embeddings", .model = m,
                       .forward = rl_llama_gen_forward, .lm_head = rl_llama_gen_lm_head, .step = rl_llama_gen_step};
    if (m) {
        f.dtype = m->dtype;
        f.vocab = m->cfg.vocab, f.n_ctx = rl_llama_ctx_limit(&m->cfg), f.hidden = m->cfg.hidden;
        f.n_layer = m->cfg.n_layer, f.n_kv_head = m->cfg.n_kv_head, f.head_dim = m->cfg.head_dim;
    }
    return rl_gen_run(ctx, &f, prompts, prompt_len, B, stride, cfg, rng, out);
}
