/* models/generate.c - batched text generation: greedy and sampled decoding
 * (temperature, top-k, nucleus top-p, per-row EOS) with a KV cache, for
 * prompts of different lengths in one batch, returning the tokens, masks and
 * the log-probabilities PPO needs. The contract and the layout are in
 * models/rl_gpt2.h (rl_gpt2_generate). The driver here knows no model: a
 * family supplies its forward, LM head and cached step through
 * models/generate_internal.h; GPT-2's is at the end of this file, the Llama
 * family's in models/llama.c (rl_llama_generate).
 *
 * Why right padding with per-row positions (not HF's left padding with
 * position_ids = cumsum(mask) - 1): the engine's fused attention is causal
 * with no key mask, so a left-padded batch could not be re-scored by the
 * training forward without its real tokens attending to the pads. With every
 * row at positions 0..len-1 and pads only after its end, the plain forward
 * reproduces generation exactly, and the score head's "last real token =
 * sum(mask) - 1" holds for generated batches as they are.
 *
 * Why a preallocated cache written in place (not arena tensors grown with
 * concat): concat would copy the whole cache every token (quadratic copies);
 * here each token writes its B*H key and value rows with the backend's copy
 * (device memory on any backend), and attention reads the cache as it lies.
 * Attending over all cap slots with a -inf mask, instead of slicing the
 * first Tk, avoids copying [B, H, Tk, D] per layer per token; the extra work
 * is at most cap / Tk, and cap is the longest prompt + max_new_tokens, not
 * n_ctx.
 */
#include "generate_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_internal.h"
#include "rl_ops.h"

rl_gen_cfg rl_gen_cfg_default(void) {
    rl_gen_cfg c = {.max_new_tokens = 32,
                    .greedy = 0,
                    .temperature = 1.0,
                    .top_k = 0,
                    .top_p = 1.0,
                    .eos_id = -1,
                    .pad_id = 0,
                    .use_cache = 1};
    return c;
}

void rl_gen_out_free(rl_gen_out *o) {
    if (!o) return;
    free(o->tokens);
    free(o->response_mask);
    free(o->attention_mask);
    free(o->logprobs);
    free(o->sample_logprobs);
    free(o->prompt_len);
    free(o->len);
    memset(o, 0, sizeof *o);
}

/* ---- sampling (host, in double) --------------------------------------------------- */

typedef struct rl_gen_cand {
    double z;   /* tempered logit */
    int32_t i;  /* token id */
} rl_gen_cand;

/* Descending by z, then ascending token id (a total order: deterministic). */
static int rl_gen_cand_cmp(const void *pa, const void *pb) {
    const rl_gen_cand *a = pa, *b = pb;
    if (a->z != b->z) return a->z > b->z ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* The k-th largest of a[0..n) (1 <= k <= n), reordering a (quickselect with
 * Hoare partitioning: O(n) on average, so top-k never sorts the vocabulary). */
static double rl_gen_kth_largest(double *a, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, target = k - 1;
    while (lo < hi) {
        double pivot = a[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                double t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        /* now a[lo..j] >= pivot >= a[i..hi] and a(j..i) == pivot */
        if (target <= j) hi = j;
        else if (target >= i) lo = i;
        else return a[target];
    }
    return a[target];
}

/* Scratch for one row's choice (V entries each). */
typedef struct rl_gen_scratch {
    double *vals;
    rl_gen_cand *cand;
} rl_gen_scratch;

/* Picks the next token of one row from its logits l[0..V). *lp gets
 * log softmax(l)[tok] (the unmodified policy); *slp the log-probability under
 * the distribution sampled from (0 for greedy). Follows HF generate's logits
 * processing order: temperature, then top-k (TopKLogitsWarper: keeps every
 * logit >= the k-th largest), then top-p (TopPLogitsWarper: drops the
 * least likely tokens whose cumulative mass is <= 1 - top_p, keeping at least
 * one, i.e. keeps the most likely tokens until their mass reaches top_p).
 * Returns -1 when the logits are not all finite. */
static int32_t rl_gen_pick(const double *l, int64_t V, const rl_gen_cfg *cfg, rl_rng *rng,
                           rl_gen_scratch *s, double *lp, double *slp) {
    int64_t arg = 0;
    for (int64_t i = 0; i < V; i++) {
        if (!isfinite(l[i])) return -1;
        if (l[i] > l[arg]) arg = i; /* the first maximum, as torch.argmax */
    }
    double sum = 0;
    for (int64_t i = 0; i < V; i++) sum += exp(l[i] - l[arg]);
    const double lse = l[arg] + log(sum);
    if (cfg->greedy) {
        *lp = l[arg] - lse;
        *slp = 0;
        return (int32_t)arg;
    }
    const double inv_t = 1.0 / cfg->temperature, zmax = l[arg] * inv_t;
    rl_gen_cand *c = s->cand;
    int64_t n = 0;
    if (cfg->top_k > 0 && cfg->top_k < V) {
        for (int64_t i = 0; i < V; i++) s->vals[i] = l[i] * inv_t;
        double thr = rl_gen_kth_largest(s->vals, V, cfg->top_k);
        for (int64_t i = 0; i < V; i++)
            if (l[i] * inv_t >= thr) c[n++] = (rl_gen_cand){l[i] * inv_t, (int32_t)i};
    } else {
        for (int64_t i = 0; i < V; i++) c[n++] = (rl_gen_cand){l[i] * inv_t, (int32_t)i};
    }
    if (cfg->top_p < 1.0) {
        qsort(c, (size_t)n, sizeof *c, rl_gen_cand_cmp);
        double tot = 0;
        for (int64_t j = 0; j < n; j++) tot += exp(c[j].z - zmax);
        double cum = 0;
        int64_t keep = 0;
        while (keep < n && (keep == 0 || cum < cfg->top_p)) cum += exp(c[keep++].z - zmax) / tot;
        n = keep;
    }
    double w = 0;
    for (int64_t j = 0; j < n; j++) w += exp(c[j].z - zmax);
    double u = rl_rng_uniform(rng) * w, acc = 0;
    int64_t pick = n - 1; /* rounding can leave u just above the last partial sum */
    for (int64_t j = 0; j < n; j++) {
        acc += exp(c[j].z - zmax);
        if (u < acc) {
            pick = j;
            break;
        }
    }
    int32_t tok = c[pick].i;
    *lp = l[tok] - lse;
    *slp = (c[pick].z - zmax) - log(w);
    return tok;
}

/* ---- state of one generate call ----------------------------------------------------- */

typedef struct rl_gen {
    rl_ctx *ctx;
    const rl_gen_family *f;
    const rl_gen_cfg *cfg;
    int64_t B, V, C, Hkv, D, L; /* C: width of the family's hidden states */
    int64_t cap;          /* positions per row in the cache and in seq */
    size_t es;            /* element size of the model's dtype */
    rl_tensor **kc, **vc; /* per layer [B, Hkv, cap, D] */
    int32_t *seq;         /* [B, cap]: each row's tokens at positions 0..cur-1 */
    int64_t *cur;         /* [B]: tokens so far */
    double *logits;       /* [B, V]: the next-token logits of each row */
    void *host;           /* [B * max(V, cap)] elements of the dtype: reads, masks */
    int32_t *ibuf;        /* [B * max(cap, C)] i32 staging */
} rl_gen;

/* Copies a tensor's data (dtype of the model) to g->logits as doubles. */
static rl_status rl_gen_read_logits(rl_gen *g, rl_tensor *logits) {
    /* a failed op anywhere in the step (even one whose NULL did not reach
     * the logits, e.g. a layer loop cut short) is recorded in the context */
    if (rl_ctx_status(g->ctx)) return rl_ctx_status(g->ctx);
    if (!logits) return rl_ctx_fail(g->ctx, RL_ERR_STATE, "%s: a step produced no logits", g->f->name);
    const int64_t n = g->B * g->V;
    rl_status s = rl_tensor_read(g->ctx, logits, g->host, (size_t)n * g->es);
    if (s) return s;
    for (int64_t i = 0; i < n; i++)
        g->logits[i] = g->es == 4 ? (double)((float *)g->host)[i] : ((double *)g->host)[i];
    return RL_OK;
}

/* The prefill's kv hook: copies k and v [B, Hkv, T, D] into the caches' first
 * T slots of every (batch, head) row (one contiguous T*D block each). */
static void rl_gen_store_kv(rl_ctx *ctx, int layer, rl_tensor *k, rl_tensor *v, void *user) {
    rl_gen *g = user;
    const int64_t T = k->shape[2];
    const int64_t blk = T * g->D, row = g->cap * g->D;
    for (int64_t bh = 0; bh < g->B * g->Hkv; bh++) {
        rl_tensor_copy_range(ctx, g->kc[layer], bh * row, k, bh * blk, blk);
        rl_tensor_copy_range(ctx, g->vc[layer], bh * row, v, bh * blk, blk);
    }
}

/* Full forward over every row's tokens so far (right-padded to the longest,
 * positions 0..T-1), keeping the logits at each row's last token. With
 * store_kv it is the prefill and fills the caches. */
static rl_status rl_gen_full_step(rl_gen *g, int store_kv) {
    rl_ctx *ctx = g->ctx;
    int64_t T = 0;
    for (int64_t b = 0; b < g->B; b++) T = g->cur[b] > T ? g->cur[b] : T;
    for (int64_t b = 0; b < g->B; b++)
        for (int64_t t = 0; t < T; t++)
            g->ibuf[b * T + t] = t < g->cur[b] ? g->seq[b * g->cap + t] : g->cfg->pad_id;
    rl_tensor *ids = rl_const(ctx, RL_I32, 2, (int64_t[]){g->B, T}, g->ibuf);
    rl_tensor *h = ids ? g->f->forward(ctx, g->f->model, ids, store_kv ? rl_gen_store_kv : NULL, g) : NULL;
    /* only the last real position of each row is needed: gather those hidden
     * states ([B, 1, C]) before the LM head instead of computing [B, T, V] */
    for (int64_t b = 0; b < g->B; b++)
        for (int64_t c = 0; c < g->C; c++) g->ibuf[b * g->C + c] = (int32_t)(g->cur[b] - 1);
    rl_tensor *idx = rl_const(ctx, RL_I32, 3, (int64_t[]){g->B, 1, g->C}, g->ibuf);
    rl_tensor *last = rl_gather(ctx, h, idx, 1);
    rl_status s = rl_gen_read_logits(g, last ? g->f->lm_head(ctx, g->f->model, last) : NULL);
    rl_ctx_reset(ctx);
    return s;
}

void rl_gen_store_slot(rl_ctx *ctx, const rl_gen_step *s, int layer, int64_t Hkv, int64_t D, const rl_tensor *k,
                       int64_t k_off, const rl_tensor *v, int64_t v_off, int64_t row) {
    if (!k || !v) return; /* an earlier op failed; the context has the message */
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t hh = 0; hh < Hkv; hh++) {
            int64_t dst = ((b * Hkv + hh) * s->cap + s->pos[b]) * D, off = b * row + hh * D;
            rl_tensor_copy_range(ctx, s->kc[layer], dst, k, k_off + off, D);
            rl_tensor_copy_range(ctx, s->vc[layer], dst, v, v_off + off, D);
        }
}

rl_tensor *rl_gen_attend(rl_ctx *ctx, const rl_gen_step *s, int layer, rl_tensor *q, int64_t H, int64_t Hkv,
                         int64_t D) {
    const int64_t B = s->B;
    /* with T = 1, [B, 1, H*D] and [B, Hkv, H/Hkv, D] are the same layout:
     * the query is a reshape, and the output goes back with a reshape */
    q = rl_reshape(ctx, q, 4, (int64_t[]){B, Hkv, H / Hkv, D});
    rl_tensor *sc = rl_matmul(ctx, rl_mul(ctx, q, s->scale), s->kc[layer], 0, 1); /* [B, Hkv, H/Hkv, cap] */
    rl_tensor *p = rl_softmax(ctx, rl_add(ctx, sc, s->mask));
    rl_tensor *a = rl_matmul(ctx, p, s->vc[layer], 0, 0);                          /* [B, Hkv, H/Hkv, D] */
    return rl_reshape(ctx, a, 3, (int64_t[]){B, 1, H * D});
}

/* One cached decoding step: feeds each row's newest token (finished rows: a
 * pad at a slot past their end, whose output is ignored) at its own position;
 * the family writes its keys and values into the caches and attends over them. */
static rl_status rl_gen_cached_step(rl_gen *g, const int *done) {
    rl_ctx *ctx = g->ctx;
    const int64_t B = g->B, cap = g->cap;
    int32_t *tok = g->ibuf, *pos = g->ibuf + B;
    for (int64_t b = 0; b < B; b++) {
        if (done[b]) {
            /* any slot past the row's end is free; a row that filled the cache
             * overwrites its last slot, harmless since it is never read again */
            pos[b] = (int32_t)(g->cur[b] < cap ? g->cur[b] : cap - 1);
            tok[b] = g->cfg->pad_id;
        } else {
            pos[b] = (int32_t)(g->cur[b] - 1);
            tok[b] = g->seq[b * cap + pos[b]];
        }
    }
    /* additive key mask [B, 1, 1, cap]: slot j is visible to row b iff j <= pos[b] */
    for (int64_t b = 0; b < B; b++)
        for (int64_t j = 0; j < cap; j++) {
            double v = j <= pos[b] ? 0.0 : -INFINITY;
            if (g->es == 4) ((float *)g->host)[b * cap + j] = (float)v;
            else ((double *)g->host)[b * cap + j] = v;
        }
    rl_dtype dt = g->f->dtype;
    rl_gen_step st = {.B = B, .cap = cap, .kc = g->kc, .vc = g->vc, .pos = pos};
    st.mask = rl_const(ctx, dt, 4, (int64_t[]){B, 1, 1, cap}, g->host);
    st.ids = rl_const(ctx, RL_I32, 2, (int64_t[]){B, 1}, tok);
    st.pos_ids = rl_const(ctx, RL_I32, 2, (int64_t[]){B, 1}, pos);
    st.scale = rl_scalar(ctx, dt, 1.0 / sqrt((double)g->D));
    rl_tensor *logits = NULL;
    if (st.mask && st.ids && st.pos_ids && st.scale) logits = g->f->step(ctx, g->f->model, &st);
    rl_status s = rl_gen_read_logits(g, logits);
    rl_ctx_reset(ctx);
    return s;
}

/* Checks the family-independent arguments; records why not. */
static rl_status rl_gen_check(rl_ctx *ctx, const rl_gen_family *f, const int32_t *prompts,
                              const int64_t *prompt_len, int64_t B, int64_t stride,
                              const rl_gen_cfg *cfg, const rl_rng *rng) {
    const char *fn = f->name;
    if (!f->model || !prompts || !prompt_len || !cfg)
        return rl_ctx_fail(ctx, RL_ERR_ARG, "%s: the model, prompts, prompt lengths and config are required", fn);
    if (B < 1 || stride < 1)
        return rl_ctx_fail(ctx, RL_ERR_ARG, "%s: batch %lld and stride %lld must be at least 1", fn,
                           (long long)B, (long long)stride);
    const int64_t V = f->vocab, n_ctx = f->n_ctx;
    for (int64_t b = 0; b < B; b++) {
        int64_t n = prompt_len[b];
        if (n < 1 || n > stride || n > n_ctx)
            return rl_ctx_fail(ctx, RL_ERR_ARG,
                               "%s: prompt %lld has length %lld; lengths must be in [1, min(stride "
                               "%lld, %s %lld)] (a prompt needs at least one token to condition on)",
                               fn, (long long)b, (long long)n, (long long)stride, f->ctx_name, (long long)n_ctx);
        for (int64_t t = 0; t < n; t++) {
            int32_t id = prompts[b * stride + t];
            if (id < 0 || id >= V)
                return rl_ctx_fail(ctx, RL_ERR_ARG, "%s: prompt %lld token %lld is %d; ids must be in [0, %lld)",
                                   fn, (long long)b, (long long)t, id, (long long)V);
        }
    }
    if (cfg->max_new_tokens < 0)
        return rl_ctx_fail(ctx, RL_ERR_ARG, "%s: max_new_tokens is %lld; it must be >= 0", fn,
                           (long long)cfg->max_new_tokens);
    if (cfg->pad_id < 0 || cfg->pad_id >= V || cfg->eos_id >= V)
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "%s: pad_id %d must be in [0, %lld) and eos_id %d below %lld (negative: none)",
                           fn, cfg->pad_id, (long long)V, cfg->eos_id, (long long)V);
    if (!cfg->greedy) {
        if (!(cfg->temperature > 0) || !isfinite(cfg->temperature))
            return rl_ctx_fail(ctx, RL_ERR_ARG,
                               "%s: temperature is %g; sampling needs a finite temperature > 0 (set "
                               "greedy for argmax decoding)",
                               fn, cfg->temperature);
        if (cfg->top_k < 0 || !(cfg->top_p > 0 && cfg->top_p <= 1))
            return rl_ctx_fail(ctx, RL_ERR_ARG,
                               "%s: top_k %lld must be >= 0 (0: off) and top_p %g in (0, 1] (1: off)",
                               fn, (long long)cfg->top_k, cfg->top_p);
        if (!rng) return rl_ctx_fail(ctx, RL_ERR_ARG, "%s: sampling needs an rl_rng (only greedy may pass NULL)", fn);
    }
    return RL_OK;
}

static void rl_gen_release(rl_gen *g) {
    for (int64_t l = 0; l < g->L; l++) {
        if (g->kc) rl_tensor_free(g->ctx, g->kc[l]);
        if (g->vc) rl_tensor_free(g->ctx, g->vc[l]);
    }
    free(g->kc), free(g->vc), free(g->seq), free(g->cur), free(g->logits), free(g->host), free(g->ibuf);
}

rl_status rl_gen_run(rl_ctx *ctx, const rl_gen_family *f, const int32_t *prompts, const int64_t *prompt_len,
                     int64_t B, int64_t stride, const rl_gen_cfg *cfg, rl_rng *rng, rl_gen_out *out) {
    if (!out) return rl_ctx_fail(ctx, RL_ERR_ARG, "%s: no output struct was given", f->name);
    memset(out, 0, sizeof *out);
    if (rl_ctx_status(ctx)) return rl_ctx_status(ctx); /* a pending error: do nothing */
    rl_status s = rl_gen_check(ctx, f, prompts, prompt_len, B, stride, cfg, rng);
    if (s) return s;

    const int64_t n_ctx = f->n_ctx;
    rl_gen g = {.ctx = ctx, .f = f, .cfg = cfg, .B = B, .V = f->vocab, .C = f->hidden,
                .Hkv = f->n_kv_head, .D = f->head_dim, .L = f->n_layer, .es = rl_dtype_size(f->dtype)};
    int64_t lmax = 0;
    for (int64_t b = 0; b < B; b++) lmax = prompt_len[b] > lmax ? prompt_len[b] : lmax;
    g.cap = lmax + cfg->max_new_tokens < n_ctx ? lmax + cfg->max_new_tokens : n_ctx;
    const int64_t cap = g.cap, V = g.V;
    const int64_t hostn = B * (V > cap ? V : cap), ibn = B * (cap > g.C ? cap : g.C) + 2 * B;
    g.seq = malloc(sizeof *g.seq * (size_t)(B * cap));
    g.cur = malloc(sizeof *g.cur * (size_t)B);
    g.logits = malloc(sizeof *g.logits * (size_t)(B * V));
    g.host = malloc(g.es * (size_t)hostn);
    g.ibuf = malloc(sizeof *g.ibuf * (size_t)ibn);
    double *lp = calloc((size_t)(B * cap), sizeof *lp), *slp = calloc((size_t)(B * cap), sizeof *slp);
    int *done = calloc((size_t)B, sizeof *done);
    int64_t *ngen = calloc((size_t)B, sizeof *ngen);
    rl_gen_scratch scr = {malloc(sizeof(double) * (size_t)V), malloc(sizeof(rl_gen_cand) * (size_t)V)};
    if (cfg->use_cache) {
        g.kc = calloc((size_t)g.L, sizeof *g.kc);
        g.vc = calloc((size_t)g.L, sizeof *g.vc);
    }
    bool ok = g.seq && g.cur && g.logits && g.host && g.ibuf && lp && slp && done && ngen &&
              scr.vals && scr.cand && (!cfg->use_cache || (g.kc && g.vc));
    if (!ok) s = rl_ctx_fail(ctx, RL_ERR_MEMORY, "%s: out of memory", f->name);
    for (int64_t l = 0; s == RL_OK && cfg->use_cache && l < g.L; l++) {
        int64_t shape[4] = {B, g.Hkv, cap, g.D};
        g.kc[l] = rl_tensor_new(ctx, f->dtype, 4, shape, "k_cache");
        g.vc[l] = rl_tensor_new(ctx, f->dtype, 4, shape, "v_cache");
        if (!g.kc[l] || !g.vc[l]) s = rl_ctx_status(ctx);
    }
    int prev_grad = rl_ctx_set_grad(ctx, 0);
    rl_ctx_reset(ctx);
    if (s == RL_OK) {
        int n_done = 0;
        for (int64_t b = 0; b < B; b++) {
            memcpy(g.seq + b * cap, prompts + b * stride, sizeof(int32_t) * (size_t)prompt_len[b]);
            g.cur[b] = prompt_len[b];
            done[b] = cfg->max_new_tokens == 0 || g.cur[b] >= n_ctx;
            n_done += done[b];
        }
        if (n_done < B) s = rl_gen_full_step(&g, cfg->use_cache); /* the prefill */
        while (s == RL_OK && n_done < B) {
            for (int64_t b = 0; b < B && s == RL_OK; b++) {
                if (done[b]) continue;
                double l1, l2;
                int32_t t = rl_gen_pick(g.logits + b * V, V, cfg, rng, &scr, &l1, &l2);
                if (t < 0) {
                    s = rl_ctx_fail(ctx, RL_ERR_STATE,
                                    "%s: row %lld's logits are not finite (NaN or inf) at position %lld",
                                    f->name, (long long)b, (long long)g.cur[b]);
                    break;
                }
                int64_t p = g.cur[b]++;
                g.seq[b * cap + p] = t;
                lp[b * cap + p] = l1;
                slp[b * cap + p] = l2;
                ngen[b]++;
                if (cfg->on_token) cfg->on_token(cfg->on_token_user, b, t); /* streaming (rlhf generate) */
                if (t == cfg->eos_id || ngen[b] == cfg->max_new_tokens || g.cur[b] >= n_ctx) {
                    done[b] = 1;
                    n_done++;
                }
            }
            if (s != RL_OK || n_done == B) break;
            s = cfg->use_cache ? rl_gen_cached_step(&g, done) : rl_gen_full_step(&g, 0);
        }
    }
    rl_ctx_reset(ctx);
    rl_ctx_set_grad(ctx, prev_grad);
    if (s == RL_OK) {
        int64_t T = 0;
        for (int64_t b = 0; b < B; b++) T = g.cur[b] > T ? g.cur[b] : T;
        out->B = B;
        out->T = T;
        size_t n = (size_t)(B * T);
        out->tokens = malloc(sizeof(int32_t) * n);
        out->response_mask = malloc(sizeof(int32_t) * n);
        out->attention_mask = malloc(sizeof(int32_t) * n);
        out->logprobs = malloc(sizeof(double) * n);
        out->sample_logprobs = malloc(sizeof(double) * n);
        out->prompt_len = malloc(sizeof(int64_t) * (size_t)B);
        out->len = malloc(sizeof(int64_t) * (size_t)B);
        if (!out->tokens || !out->response_mask || !out->attention_mask || !out->logprobs ||
            !out->sample_logprobs || !out->prompt_len || !out->len) {
            rl_gen_out_free(out);
            s = rl_ctx_fail(ctx, RL_ERR_MEMORY, "%s: out of memory", f->name);
        } else {
            for (int64_t b = 0; b < B; b++) {
                out->prompt_len[b] = prompt_len[b];
                out->len[b] = g.cur[b];
                for (int64_t t = 0; t < T; t++) {
                    size_t i = (size_t)(b * T + t);
                    int real = t < g.cur[b], gen = real && t >= prompt_len[b];
                    out->tokens[i] = real ? g.seq[b * cap + t] : cfg->pad_id;
                    out->attention_mask[i] = real;
                    out->response_mask[i] = gen;
                    out->logprobs[i] = gen ? lp[b * cap + t] : 0.0;
                    out->sample_logprobs[i] = gen ? slp[b * cap + t] : 0.0;
                }
            }
        }
    }
    rl_gen_release(&g);
    free(lp), free(slp), free(done), free(ngen), free(scr.vals), free(scr.cand);
    return s;
}

/* ---- the GPT-2 family ------------------------------------------------------------------ */

static rl_tensor *rl_gpt2_gen_forward(rl_ctx *ctx, const void *model, rl_tensor *ids, rl_gen_kv_fn fn,
                                     void *user) {
    return rl_gpt2_forward_hidden_kv(ctx, model, ids, NULL, fn, user);
}

static rl_tensor *rl_gpt2_gen_lm_head(rl_ctx *ctx, const void *model, rl_tensor *hidden) {
    return rl_gpt2_lm_head(ctx, model, hidden);
}

/* The cached step: positions come from the learned table (wpe[pos[b]]); the
 * packed q|k|v [B, 1, 3C] holds row b's head h of k at column C + h*D and of
 * v at 2C + h*D, copied into the caches without slicing. */
static rl_tensor *rl_gpt2_gen_step(rl_ctx *ctx, const void *model, const rl_gen_step *s) {
    const rl_gpt2 *m = model;
    const int64_t C = m->cfg.n_embd, H = m->cfg.n_head, D = C / H;
    rl_tensor *x = rl_gpt2_embed(ctx, m, s->ids, s->pos_ids);
    for (int l = 0; l < (int)m->cfg.n_layer; l++) {
        rl_tensor *qkv = rl_gpt2_block_qkv(ctx, m, l, x); /* [B, 1, 3C] */
        if (!qkv) break;
        rl_gen_store_slot(ctx, s, l, H, D, qkv, C, qkv, 2 * C, 3 * C);
        rl_tensor *a = rl_gen_attend(ctx, s, l, rl_slice(ctx, qkv, 2, 0, C), H, H, D);
        x = rl_gpt2_block_finish(ctx, m, l, x, a);
    }
    rl_tensor *h = rl_layernorm(ctx, x, m->ln_f_w, m->ln_f_b, m->cfg.layer_norm_epsilon);
    return rl_gpt2_lm_head(ctx, m, h);
}

rl_status rl_gpt2_generate(rl_ctx *ctx, const rl_gpt2 *m, const int32_t *prompts,
                           const int64_t *prompt_len, int64_t B, int64_t stride,
                           const rl_gen_cfg *cfg, rl_rng *rng, rl_gen_out *out) {
    rl_gen_family f = {.name = "gpt2 generate", .ctx_name = "n_ctx", .model = m};
    if (m) {
        f.dtype = m->dtype;
        f.vocab = m->cfg.vocab, f.n_ctx = m->cfg.n_ctx, f.hidden = m->cfg.n_embd;
        f.n_layer = m->cfg.n_layer, f.n_kv_head = m->cfg.n_head, f.head_dim = m->cfg.n_embd / m->cfg.n_head;
    }
    f.forward = rl_gpt2_gen_forward, f.lm_head = rl_gpt2_gen_lm_head, f.step = rl_gpt2_gen_step;
    return rl_gen_run(ctx, &f, prompts, prompt_len, B, stride, cfg, rng, out);
}
