/* models/gpt2.c - GPT-2 (Hugging Face modeling_gpt2 semantics) on the engine:
 * configuration presets, parameter creation and initialisation under HF
 * names, the forward pass written with the engine's ops, and the LM, score
 * and value heads with the losses RLHF needs. See models/rl_gpt2.h for the
 * contracts and conventions (right padding, token-aligned log-probs).
 *
 * Copies: c_attn is one GEMM over [B*T, C] (shared 2-D weight), and its
 * [B, T, 3C] output goes straight into rl_attention_qkv, which reads each
 * head's q, k, v in place and writes the heads merged as [B, T, C]: no
 * reshape, permute or slice copies in the forward or the backward. Only the
 * forward with a key/value callback (generation's prefill, which caches k
 * and v as [B, H, T, D]) takes the slower route: one reshape (a view), one
 * permute to [B, 3H, T, D], three slices along the head axis, rl_attention,
 * and one permute and reshape back. The LM head is
 * one GEMM against wte read transposed (trans_b), so no transposed copy.
 */
#include "rl_gpt2.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_heads.h"
#include "rl_internal.h"
#include "rl_ops.h"

/* ---- configuration ----------------------------------------------------------------- */

rl_status rl_gpt2_config_preset(const char *name, rl_gpt2_config *out) {
    /* {vocab, n_ctx, n_layer, n_head, n_embd, eps}; eps 1e-5 as HF GPT2Config */
    static const struct {
        const char *name;
        rl_gpt2_config cfg;
    } presets[] = {
        {"tiny", {64, 32, 2, 2, 32, 1e-5}},
        /* 256 byte tokens + 8 specials; D = 64 per head as in GPT-2 */
        {"small", {264, 256, 4, 4, 256, 1e-5}},
        /* the demo pipeline's model: small's depth at half its width (0.8M parameters), four
           times cheaper a step, so a 2-core machine affords the steps the world needs */
        {"mini", {264, 256, 4, 4, 128, 1e-5}},
        /* OpenAI's 124M checkpoint (HF "gpt2") */
        {"gpt2", {50257, 1024, 12, 12, 768, 1e-5}},
    };
    if (!name || !out) return RL_ERR_ARG;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (strcmp(name, presets[i].name) == 0) {
            *out = presets[i].cfg;
            return RL_OK;
        }
    return RL_ERR_ARG;
}

rl_status rl_gpt2_config_check(rl_ctx *ctx, const rl_gpt2_config *c) {
    if (!c) return rl_ctx_fail(ctx, RL_ERR_ARG, "gpt2: no configuration was given");
    if (c->vocab < 1 || c->n_ctx < 1 || c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1)
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "gpt2: configuration vocab %lld, n_ctx %lld, n_layer %lld, n_head %lld, "
                           "n_embd %lld: every size must be at least 1",
                           (long long)c->vocab, (long long)c->n_ctx, (long long)c->n_layer,
                           (long long)c->n_head, (long long)c->n_embd);
    if (c->n_embd % c->n_head != 0)
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "gpt2: n_embd %lld is not a multiple of n_head %lld (each head gets "
                           "n_embd / n_head columns)",
                           (long long)c->n_embd, (long long)c->n_head);
    if (c->vocab > INT32_MAX || c->n_ctx > INT32_MAX)
        return rl_ctx_fail(ctx, RL_ERR_ARG, "gpt2: vocab %lld / n_ctx %lld must fit i32 ids",
                           (long long)c->vocab, (long long)c->n_ctx);
    if (!(c->layer_norm_epsilon >= 0) || !isfinite(c->layer_norm_epsilon))
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "gpt2: layer_norm_epsilon is %g; it must be finite and >= 0 (1e-5 in GPT-2)",
                           c->layer_norm_epsilon);
    return RL_OK;
}

int64_t rl_gpt2_config_num_params(const rl_gpt2_config *c, rl_gpt2_kind kind) {
    if (!c || c->vocab < 1 || c->n_ctx < 1 || c->n_layer < 1 || c->n_head < 1 || c->n_embd < 1 ||
        c->n_embd % c->n_head)
        return -1;
    const int64_t C = c->n_embd;
    /* per block: ln_1 2C, c_attn 3C^2 + 3C, attn.c_proj C^2 + C, ln_2 2C,
     * c_fc 4C^2 + 4C, mlp.c_proj 4C^2 + C: 12C^2 + 13C */
    int64_t n = c->vocab * C + c->n_ctx * C + c->n_layer * (12 * C * C + 13 * C) + 2 * C;
    if (kind == RL_GPT2_SCORE) n += C;
    else if (kind == RL_GPT2_VALUE) n += C + 1;
    return n;
}

/* ---- creation ----------------------------------------------------------------------- */

/* How a tensor is initialised. */
typedef enum { INIT_NORMAL, INIT_ZEROS, INIT_ONES } rl_gpt2_init;

/* Creates parameter `name` and appends it to m->tensors; its initialisation
 * (kind and std) is recorded in inits/stds at the same index. */
static rl_tensor *rl_gpt2_add(rl_ctx *ctx, rl_gpt2 *m, int ndim, const int64_t *shape,
                              const char *name, rl_gpt2_init init, double std,
                              rl_gpt2_init *inits, double *stds) {
    rl_tensor *t = rl_param_new(ctx, m->dtype, ndim, shape, name);
    if (!t) return NULL;
    inits[m->n_tensors] = init;
    stds[m->n_tensors] = std;
    m->tensors[m->n_tensors++] = t;
    return t;
}

/* Number of tensors of a model: wte, wpe, 12 per block, ln_f, the head. */
static int rl_gpt2_count_tensors(const rl_gpt2_config *c, rl_gpt2_kind kind) {
    return (int)(2 + 12 * c->n_layer + 2 + (kind == RL_GPT2_SCORE ? 1 : kind == RL_GPT2_VALUE ? 2 : 0));
}

/* Allocates the struct and every parameter (zero-filled), recording how each
 * is to be initialised. */
static rl_gpt2 *rl_gpt2_alloc(rl_ctx *ctx, const rl_gpt2_config *cfg, rl_gpt2_kind kind,
                              rl_dtype dtype, rl_gpt2_init **inits_out, double **stds_out) {
    if (rl_gpt2_config_check(ctx, cfg) != RL_OK) return NULL;
    if (dtype != RL_F32 && dtype != RL_F64) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "gpt2: dtype %s; a model is f32 or f64", rl_dtype_name(dtype));
        return NULL;
    }
    if (kind != RL_GPT2_LM && kind != RL_GPT2_SCORE && kind != RL_GPT2_VALUE) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "gpt2: unknown model kind %d", (int)kind);
        return NULL;
    }
    int nt = rl_gpt2_count_tensors(cfg, kind);
    rl_gpt2 *m = calloc(1, sizeof *m);
    rl_gpt2_init *inits = malloc(sizeof *inits * (size_t)nt);
    double *stds = malloc(sizeof *stds * (size_t)nt);
    if (m) {
        m->h = calloc((size_t)cfg->n_layer, sizeof *m->h);
        m->tensors = calloc((size_t)nt, sizeof *m->tensors);
    }
    if (!m || !inits || !stds || !m->h || !m->tensors) {
        if (m) free(m->h), free(m->tensors);
        free(m), free(inits), free(stds);
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "gpt2: out of memory");
        return NULL;
    }
    m->cfg = *cfg;
    m->kind = kind;
    m->dtype = dtype;
    const int64_t V = cfg->vocab, C = cfg->n_embd, L = cfg->n_layer;
    /* HF: initializer_range 0.02; "Scale the weights of residual layers at
     * initialization by a factor of 1/sqrt(N) where N is the # of residual
     * layers" (GPT-2 paper 2.3), N = 2 per block: c_proj weights get
     * 0.02 / sqrt(2 * n_layer) (GPT2PreTrainedModel._init_weights). */
    const double std = 0.02, std_proj = 0.02 / sqrt(2.0 * (double)L);
    /* lm-human-preferences' reward head: N(0, 1/sqrt(C + 1)) */
    const double std_head = 1.0 / sqrt((double)C + 1.0);
    bool ok = true;
#define ADD(field, nd, name, init, sd, ...)                                                   \
    do {                                                                                      \
        if (ok) {                                                                             \
            field = rl_gpt2_add(ctx, m, nd, (int64_t[]){__VA_ARGS__}, name, init, sd, inits, \
                                stds);                                                        \
            ok = field != NULL;                                                               \
        }                                                                                     \
    } while (0)
    ADD(m->wte, 2, "wte.weight", INIT_NORMAL, std, V, C);
    ADD(m->wpe, 2, "wpe.weight", INIT_NORMAL, std, cfg->n_ctx, C);
    for (int64_t l = 0; l < L && ok; l++) {
        rl_gpt2_block *b = &m->h[l];
        char nm[64]; /* names fit rl_tensor.name (39 chars) for any n_layer < 10^16 */
#define NM(suffix) (snprintf(nm, sizeof nm, "h.%lld." suffix, (long long)l), nm)
        ADD(b->ln_1_w, 1, NM("ln_1.weight"), INIT_ONES, 0, C);
        ADD(b->ln_1_b, 1, NM("ln_1.bias"), INIT_ZEROS, 0, C);
        ADD(b->attn_w, 2, NM("attn.c_attn.weight"), INIT_NORMAL, std, C, 3 * C);
        ADD(b->attn_b, 1, NM("attn.c_attn.bias"), INIT_ZEROS, 0, 3 * C);
        ADD(b->attn_proj_w, 2, NM("attn.c_proj.weight"), INIT_NORMAL, std_proj, C, C);
        ADD(b->attn_proj_b, 1, NM("attn.c_proj.bias"), INIT_ZEROS, 0, C);
        ADD(b->ln_2_w, 1, NM("ln_2.weight"), INIT_ONES, 0, C);
        ADD(b->ln_2_b, 1, NM("ln_2.bias"), INIT_ZEROS, 0, C);
        ADD(b->fc_w, 2, NM("mlp.c_fc.weight"), INIT_NORMAL, std, C, 4 * C);
        ADD(b->fc_b, 1, NM("mlp.c_fc.bias"), INIT_ZEROS, 0, 4 * C);
        ADD(b->mlp_proj_w, 2, NM("mlp.c_proj.weight"), INIT_NORMAL, std_proj, 4 * C, C);
        ADD(b->mlp_proj_b, 1, NM("mlp.c_proj.bias"), INIT_ZEROS, 0, C);
#undef NM
    }
    ADD(m->ln_f_w, 1, "ln_f.weight", INIT_ONES, 0, C);
    ADD(m->ln_f_b, 1, "ln_f.bias", INIT_ZEROS, 0, C);
    if (kind == RL_GPT2_SCORE) ADD(m->score_w, 2, "score.weight", INIT_NORMAL, std_head, 1, C);
    if (kind == RL_GPT2_VALUE) {
        ADD(m->v_head_w, 2, "v_head.summary.weight", INIT_NORMAL, std_head, 1, C);
        ADD(m->v_head_b, 1, "v_head.summary.bias", INIT_ZEROS, 0, 1);
    }
#undef ADD
    if (!ok) {
        rl_gpt2_free(ctx, m);
        free(inits), free(stds);
        return NULL;
    }
    *inits_out = inits;
    *stds_out = stds;
    return m;
}

/* Draws tensor t's values (numel from rng) and writes them; zeros and ones
 * draw nothing. */
static rl_status rl_gpt2_init_tensor(rl_ctx *ctx, rl_tensor *t, rl_gpt2_init init, double std,
                                     rl_rng *rng) {
    if (init == INIT_ZEROS) return RL_OK; /* rl_param_new zero-fills */
    if (init == INIT_ONES) {
        rl_tensor_fill(ctx, t, 1.0);
        return RL_OK;
    }
    size_t es = rl_dtype_size(t->dtype);
    void *buf = malloc((size_t)t->numel * es);
    if (!buf) return rl_ctx_fail(ctx, RL_ERR_MEMORY, "gpt2: out of memory initialising '%s'", t->name);
    /* Box-Muller using both outputs of each pair of uniforms (rl_rng_normal
     * keeps one): half the draws and transcendental calls, which is most of
     * the 124M model's initialisation time */
    for (int64_t i = 0; i < t->numel; i += 2) {
        double u1 = rl_rng_uniform(rng), u2 = rl_rng_uniform(rng);
        if (u1 < 1e-300) u1 = 1e-300;
        double r = std * sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
        double z[2] = {r * cos(a), r * sin(a)};
        for (int k = 0; k < 2 && i + k < t->numel; k++) {
            if (t->dtype == RL_F32) ((float *)buf)[i + k] = (float)z[k];
            else ((double *)buf)[i + k] = z[k];
        }
    }
    rl_status s = rl_tensor_write(ctx, t, buf, (size_t)t->numel * es);
    free(buf);
    return s;
}

rl_gpt2 *rl_gpt2_new(rl_ctx *ctx, const rl_gpt2_config *cfg, rl_gpt2_kind kind, rl_dtype dtype,
                     uint64_t seed) {
    rl_gpt2_init *inits;
    double *stds;
    rl_gpt2 *m = rl_gpt2_alloc(ctx, cfg, kind, dtype, &inits, &stds);
    if (!m) return NULL;
    rl_rng rng;
    rl_rng_seed(&rng, seed);
    rl_status s = RL_OK;
    for (int i = 0; i < m->n_tensors && s == RL_OK; i++)
        s = rl_gpt2_init_tensor(ctx, m->tensors[i], inits[i], stds[i], &rng);
    free(inits), free(stds);
    if (s != RL_OK) {
        rl_gpt2_free(ctx, m);
        return NULL;
    }
    return m;
}

rl_gpt2 *rl_gpt2_new_from(rl_ctx *ctx, const rl_gpt2 *src, rl_gpt2_kind kind, uint64_t seed) {
    if (!src) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "gpt2: rl_gpt2_new_from was given no source model");
        return NULL;
    }
    rl_gpt2_init *inits;
    double *stds;
    rl_gpt2 *m = rl_gpt2_alloc(ctx, &src->cfg, kind, src->dtype, &inits, &stds);
    if (!m) return NULL;
    rl_rng rng;
    rl_rng_seed(&rng, seed);
    rl_status s = RL_OK;
    for (int i = 0; i < m->n_tensors && s == RL_OK; i++) {
        rl_tensor *t = m->tensors[i];
        const rl_tensor *from = rl_gpt2_find(src, t->name);
        if (from) /* same name means same shape and dtype: same config and dtype */
            s = rl_tensor_copy(ctx, t, from);
        else
            s = rl_gpt2_init_tensor(ctx, t, inits[i], stds[i], &rng);
    }
    free(inits), free(stds);
    if (s != RL_OK) {
        rl_gpt2_free(ctx, m);
        return NULL;
    }
    return m;
}

void rl_gpt2_free(rl_ctx *ctx, rl_gpt2 *m) {
    if (!m) return;
    for (int i = 0; i < m->n_tensors; i++) rl_tensor_free(ctx, m->tensors[i]);
    free(m->tensors);
    free(m->h);
    free(m);
}

int rl_gpt2_n_tensors(const rl_gpt2 *m) { return m ? m->n_tensors : 0; }

rl_tensor *rl_gpt2_tensor(const rl_gpt2 *m, int i) {
    return m && i >= 0 && i < m->n_tensors ? m->tensors[i] : NULL;
}

rl_tensor *rl_gpt2_find(const rl_gpt2 *m, const char *name) {
    if (!m || !name) return NULL;
    for (int i = 0; i < m->n_tensors; i++)
        if (strcmp(m->tensors[i]->name, name) == 0) return m->tensors[i];
    return NULL;
}

int64_t rl_gpt2_num_params(const rl_gpt2 *m) {
    int64_t n = 0;
    for (int i = 0; m && i < m->n_tensors; i++) n += m->tensors[i]->numel;
    return n;
}

char *rl_gpt2_describe(const rl_gpt2 *m, char *buf, size_t n) {
    static const char *const kinds[] = {"LM", "SCORE", "VALUE"};
    const rl_gpt2_config *c = &m->cfg;
    snprintf(buf, n, "gpt2 %s %s: L %lld, H %lld, C %lld, V %lld, ctx %lld, %lld parameters",
             kinds[m->kind], rl_dtype_name(m->dtype), (long long)c->n_layer, (long long)c->n_head,
             (long long)c->n_embd, (long long)c->vocab, (long long)c->n_ctx,
             (long long)rl_gpt2_num_params(m));
    return buf;
}

/* ---- forward ---------------------------------------------------------------------- */

/* ids i32 [B, T] with 1 <= T <= n_ctx, and a companion mask (rl_heads.h). */
static bool rl_gpt2_check_ids(rl_ctx *ctx, const rl_gpt2 *m, const char *fn, rl_tensor *ids,
                              rl_tensor *mask, const char *mask_name) {
    if (!m) {
        if (!rl_ctx_status(ctx)) rl_ctx_fail(ctx, RL_ERR_ARG, "%s: no model was given", fn);
        return false;
    }
    return rl_heads_check_ids(ctx, fn, ids, m->cfg.n_ctx, mask, mask_name);
}

rl_tensor *rl_gpt2_embed(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *pos_ids) {
    if (!rl_gpt2_check_ids(ctx, m, "gpt2 embed", ids, NULL, NULL)) return NULL;
    const int64_t T = ids->shape[1];
    rl_tensor *pe;
    if (pos_ids) {
        if (!rl_check_input(ctx, "gpt2 embed", 1, pos_ids)) return NULL;
        bool ok = pos_ids->dtype == RL_I32 &&
                  ((pos_ids->ndim == 1 && pos_ids->shape[0] == T) ||
                   rl_shape_equal(pos_ids->ndim, pos_ids->shape, 2, ids->shape));
        if (!ok) {
            char dp[96], di[96];
            rl_ctx_fail(ctx, RL_ERR_ARG, "gpt2: pos_ids are %s for ids %s; they must be i32 [T] or [B, T]",
                        rl_tensor_describe(pos_ids, dp, sizeof dp),
                        rl_tensor_describe(ids, di, sizeof di));
            return NULL;
        }
        pe = rl_embedding(ctx, m->wpe, pos_ids); /* [T, C] or [B, T, C] */
    } else {
        pe = rl_slice(ctx, m->wpe, 0, 0, T); /* positions 0..T-1: [T, C] */
    }
    /* [B, T, C] + [T, C] broadcasts over the batch */
    return rl_add(ctx, rl_embedding(ctx, m->wte, ids), pe);
}

/* HF Conv1D: x [..., in] @ w [in, out] + b [out]. One GEMM (w is 2-D and
 * shared by the batch), then the broadcast bias add. */
static rl_tensor *rl_gpt2_conv1d(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, rl_tensor *b) {
    return rl_add(ctx, rl_matmul(ctx, x, w, 0, 0), b);
}

/* Checks a layer index; records why not. */
static bool rl_gpt2_check_layer(rl_ctx *ctx, const rl_gpt2 *m, int layer) {
    if (!m) return false;
    if (layer < 0 || layer >= m->cfg.n_layer) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "gpt2: layer %d is out of range (the model has %lld)", layer,
                    (long long)m->cfg.n_layer);
        return false;
    }
    return true;
}

rl_tensor *rl_gpt2_block_qkv(rl_ctx *ctx, const rl_gpt2 *m, int layer, rl_tensor *x) {
    if (!rl_gpt2_check_layer(ctx, m, layer)) return NULL;
    const rl_gpt2_block *b = &m->h[layer];
    rl_tensor *a = rl_layernorm(ctx, x, b->ln_1_w, b->ln_1_b, m->cfg.layer_norm_epsilon);
    return rl_gpt2_conv1d(ctx, a, b->attn_w, b->attn_b);
}

rl_tensor *rl_gpt2_block_finish(rl_ctx *ctx, const rl_gpt2 *m, int layer, rl_tensor *x,
                                rl_tensor *a) {
    if (!rl_gpt2_check_layer(ctx, m, layer)) return NULL;
    const rl_gpt2_block *b = &m->h[layer];
    /* HF GPT2Block: residual = hidden; hidden = attn(ln_1(hidden)) + residual;
     * residual = hidden; hidden = mlp(ln_2(hidden)) + residual. Attention and
     * residual dropout are identity (no dropout here). */
    x = rl_add(ctx, x, rl_gpt2_conv1d(ctx, a, b->attn_proj_w, b->attn_proj_b));
    rl_tensor *h = rl_layernorm(ctx, x, b->ln_2_w, b->ln_2_b, m->cfg.layer_norm_epsilon);
    /* GPT2MLP: c_proj(act(c_fc(h))), act = "gelu_new", the tanh approximation */
    h = rl_gelu(ctx, rl_gpt2_conv1d(ctx, h, b->fc_w, b->fc_b));
    return rl_add(ctx, x, rl_gpt2_conv1d(ctx, h, b->mlp_proj_w, b->mlp_proj_b));
}

rl_tensor *rl_gpt2_forward_hidden_kv(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids,
                                     rl_tensor *pos_ids, rl_gpt2_kv_fn fn, void *user) {
    rl_tensor *x = rl_gpt2_embed(ctx, m, ids, pos_ids);
    if (!x) return NULL;
    const int64_t B = ids->shape[0], T = ids->shape[1];
    const int64_t C = m->cfg.n_embd, H = m->cfg.n_head, D = C / H;
    for (int l = 0; l < (int)m->cfg.n_layer; l++) {
        rl_tensor *qkv = rl_gpt2_block_qkv(ctx, m, l, x);          /* [B, T, 3C] */
        if (!fn) {
            /* the fused op reads the heads in place and merges them: no copies */
            rl_tensor *a = rl_attention_qkv(ctx, qkv, H, 0); /* [B, T, C], scale 1/sqrt(D) */
            x = rl_gpt2_block_finish(ctx, m, l, x, a);
            continue;
        }
        /* generation's prefill also needs each block's k and v as [B, H, T, D]:
         * column j of the 3C: block j / C (q, k, v), head (j % C) / D, then
         * d: as [B, T, 3H, D] that is head index 3H-wide; one permute makes
         * [B, 3H, T, D], where q, k, v are contiguous runs of H heads. */
        qkv = rl_reshape(ctx, qkv, 4, (int64_t[]){B, T, 3 * H, D});
        qkv = rl_permute(ctx, qkv, (int[]){0, 2, 1, 3});
        rl_tensor *q = rl_slice(ctx, qkv, 1, 0, H);
        rl_tensor *k = rl_slice(ctx, qkv, 1, H, 2 * H);
        rl_tensor *v = rl_slice(ctx, qkv, 1, 2 * H, 3 * H);
        if (fn && k && v) fn(ctx, l, k, v, user);
        rl_tensor *a = rl_attention(ctx, q, k, v, 0); /* scale 1/sqrt(D) */
        /* HF _merge_heads: [B, H, T, D] -> [B, T, H*D] */
        a = rl_reshape(ctx, rl_permute(ctx, a, (int[]){0, 2, 1, 3}), 3, (int64_t[]){B, T, C});
        x = rl_gpt2_block_finish(ctx, m, l, x, a);
    }
    return rl_layernorm(ctx, x, m->ln_f_w, m->ln_f_b, m->cfg.layer_norm_epsilon);
}

rl_tensor *rl_gpt2_forward_hidden(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids,
                                  rl_tensor *pos_ids) {
    return rl_gpt2_forward_hidden_kv(ctx, m, ids, pos_ids, NULL, NULL);
}

rl_tensor *rl_gpt2_lm_head(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *hidden) {
    if (!m) return NULL;
    /* GPT2LMHeadModel: lm_head.weight is wte.weight (tie_word_embeddings) */
    return rl_matmul(ctx, hidden, m->wte, 0, 1);
}

rl_tensor *rl_gpt2_logits(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *pos_ids) {
    return rl_gpt2_lm_head(ctx, m, rl_gpt2_forward_hidden(ctx, m, ids, pos_ids));
}

rl_tensor *rl_gpt2_score_head(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *hidden, rl_tensor *mask) {
    const char *fn = "gpt2 score head";
    if (!m || !rl_heads_check_hidden(ctx, fn, hidden, m->cfg.n_embd)) return NULL;
    if (!m->score_w) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: the model has no score head (make it with kind RL_GPT2_SCORE)", fn);
        return NULL;
    }
    return rl_heads_score_at_end(ctx, fn, hidden, m->score_w, mask);
}

rl_tensor *rl_gpt2_end_score(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *mask) {
    if (!rl_gpt2_check_ids(ctx, m, "gpt2 end score", ids, mask, "mask")) return NULL;
    return rl_gpt2_score_head(ctx, m, rl_gpt2_forward_hidden(ctx, m, ids, NULL), mask);
}

rl_tensor *rl_gpt2_value_head(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *hidden) {
    const char *fn = "gpt2 value head";
    if (!m || !rl_heads_check_hidden(ctx, fn, hidden, m->cfg.n_embd)) return NULL;
    if (!m->v_head_w) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: the model has no value head (make it with kind RL_GPT2_VALUE)", fn);
        return NULL;
    }
    return rl_heads_value(ctx, hidden, m->v_head_w, m->v_head_b);
}

rl_tensor *rl_gpt2_values(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *pos_ids) {
    return rl_gpt2_value_head(ctx, m, rl_gpt2_forward_hidden(ctx, m, ids, pos_ids));
}

rl_tensor *rl_gpt2_logprobs_of_logits(rl_ctx *ctx, rl_tensor *logits, rl_tensor *ids,
                                      rl_tensor *mask) {
    return rl_heads_logprobs(ctx, logits, ids, mask);
}

rl_tensor *rl_gpt2_token_logprobs(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids,
                                  rl_tensor *mask) {
    if (!rl_gpt2_check_ids(ctx, m, "gpt2 token logprobs", ids, mask, "mask")) return NULL;
    return rl_gpt2_logprobs_of_logits(ctx, rl_gpt2_logits(ctx, m, ids, NULL), ids, mask);
}

rl_tensor *rl_gpt2_sft_loss(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *loss_mask) {
    const char *fn = "gpt2 sft loss";
    if (!rl_gpt2_check_ids(ctx, m, fn, ids, loss_mask, "loss_mask")) return NULL;
    return rl_heads_sft_loss(ctx, fn, rl_gpt2_logits(ctx, m, ids, NULL), ids, loss_mask);
}
