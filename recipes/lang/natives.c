/* recipes/lang/natives.c - the built-in functions that are not single ops and
 * cannot be written in the recipe language itself (they need host loops,
 * state, or a string choice), available to every recipe:
 *
 *   at_end(x, tokens)           x [B] placed at each row's last response token -> [B, T]
 *   gae(r, v, mask, gamma, lam) generalized advantage estimation -> (adv, ret), no gradient
 *   whiten(x, mask, shift_mean) masked whitening (TRL's masked_whiten)
 *   window_mean(x, n)           mean of the last n values seen (stateful), no gradient
 *   kl(d, kind)                 a KL estimator of d = lp - lref: "k1", "k2" or "k3"
 *   adaptive_beta(kl, init, target, horizon)
 *                               Ziegler et al.'s adaptive KL coefficient (stateful, rollout only)
 *   step()                      the program's policy-step counter (rl_recipe_step)
 *   group_mean, group_sum, group_std, group_loo, group_broadcast (x, n)
 *                               over each prompt's n adjacent samples (generate's n = G)
 *   agg_loss(x, mask, mode, norm) a per-token loss reduced as verl's loss_agg_mode says
 *
 * Token-aligned convention (models/rl_gpt2.h and model_fns.c): position t of
 * a [B, T] value belongs to token t; the state in which token t is chosen is
 * the prefix ids[<t]. Rewards, values and advantages all follow it.
 */
#include "recipe_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Reads a tensor into a new array of doubles (NULL with ctx's error set). */
static double *read_doubles(rl_ctx *ctx, const rl_tensor *t) {
    size_t n = (size_t)t->numel;
    double *d = malloc(sizeof(double) * (n ? n : 1));
    void *raw = malloc(rl_dtype_size(t->dtype) * (n ? n : 1));
    if (!d || !raw) {
        free(d), free(raw);
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory reading %zu elements", n);
        return NULL;
    }
    if (rl_tensor_read(ctx, t, raw, rl_dtype_size(t->dtype) * n) != RL_OK) {
        free(d), free(raw);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        if (t->dtype == RL_F64) d[i] = ((double *)raw)[i];
        else if (t->dtype == RL_F32) d[i] = ((float *)raw)[i];
        else d[i] = ((int32_t *)raw)[i];
    }
    free(raw);
    return d;
}

/* An arena tensor of dtype dt from doubles. */
static rl_tensor *from_doubles(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape,
                               const double *v) {
    int64_t n = rl_shape_numel(ndim, shape);
    if (dt == RL_F64) return rl_const(ctx, dt, ndim, shape, v);
    float *f = malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!f) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
    rl_tensor *t = rl_const(ctx, dt, ndim, shape, f);
    free(f);
    return t;
}

/* ---- at_end ------------------------------------------------------------------- */

static rl_status native_at_end(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    rl_tensor *x = c->args[0].t, *mask = c->args[1].tok.mask;
    if (!mask) return rl_ctx_fail(ctx, RL_ERR_ARG, "at_end: the token batch has no mask");
    char dx[96], dm[96];
    if (x->ndim != 1 || mask->ndim != 2 || x->shape[0] != mask->shape[0])
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "at_end: x is %s but the tokens are %s; x must have one value per row",
                           rl_tensor_describe(x, dx, sizeof dx), rl_tensor_describe(mask, dm, sizeof dm));
    const int64_t B = mask->shape[0], T = mask->shape[1];
    double *m = read_doubles(ctx, mask);
    if (!m) return rl_ctx_status(ctx);
    /* one-hot of each row's last response token (rows without one stay 0) */
    for (int64_t b = 0; b < B; b++) {
        int64_t last = -1;
        for (int64_t t = 0; t < T; t++)
            if (m[b * T + t] != 0) last = t;
        for (int64_t t = 0; t < T; t++) m[b * T + t] = t == last;
    }
    rl_tensor *oh = from_doubles(ctx, x->dtype, 2, mask->shape, m);
    free(m);
    /* x [B] -> [B, 1] * onehot [B, T]: differentiable in x */
    out->kind = RL_RV_TENSOR;
    out->t = rl_mul(ctx, rl_reshape(ctx, x, 2, (int64_t[]){B, 1}), oh);
    return out->t ? RL_OK : rl_ctx_status(ctx);
}

/* ---- gae ---------------------------------------------------------------------- */

static rl_status native_gae(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    rl_tensor *r = c->args[0].t, *v = c->args[1].t, *mask = c->args[2].t;
    double gamma = c->args[3].num, lam = c->args[4].num;
    char d0[96], d1[96], d2[96];
    if (r->ndim != 2 || !rl_shape_equal(r->ndim, r->shape, v->ndim, v->shape) ||
        !rl_shape_equal(r->ndim, r->shape, mask->ndim, mask->shape))
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "gae: r is %s, v is %s and mask is %s; all three must be [B, T]",
                           rl_tensor_describe(r, d0, sizeof d0), rl_tensor_describe(v, d1, sizeof d1),
                           rl_tensor_describe(mask, d2, sizeof d2));
    const int64_t B = r->shape[0], T = r->shape[1];
    double *hr = read_doubles(ctx, r), *hv = read_doubles(ctx, v), *hm = read_doubles(ctx, mask);
    double *adv = calloc((size_t)(B * T) + 1, sizeof(double));
    double *ret = calloc((size_t)(B * T) + 1, sizeof(double));
    rl_status st = RL_OK;
    if (!hr || !hv || !hm || !adv || !ret) {
        st = rl_ctx_status(ctx) ? rl_ctx_status(ctx) : rl_ctx_fail(ctx, RL_ERR_MEMORY, "gae: out of memory");
        goto done;
    }
    /* backwards over each row's action tokens; V after the last one is 0:
     *   delta_t = r_t + gamma V_next - V_t,  A_t = delta_t + gamma lam A_next,  Ret_t = A_t + V_t */
    for (int64_t b = 0; b < B; b++) {
        double next_v = 0, next_a = 0;
        for (int64_t t = T - 1; t >= 0; t--) {
            int64_t i = b * T + t;
            if (hm[i] == 0) continue;
            double delta = hr[i] + gamma * next_v - hv[i];
            double a = delta + gamma * lam * next_a;
            adv[i] = a;
            ret[i] = a + hv[i];
            next_v = hv[i];
            next_a = a;
        }
    }
    out[0].kind = out[1].kind = RL_RV_TENSOR;
    out[0].t = from_doubles(ctx, r->dtype, 2, r->shape, adv);
    out[1].t = from_doubles(ctx, r->dtype, 2, r->shape, ret);
    if (!out[0].t || !out[1].t) st = rl_ctx_status(ctx);
done:
    free(hr), free(hv), free(hm), free(adv), free(ret);
    return st;
}

/* ---- whiten --------------------------------------------------------------------- */

static rl_status native_whiten(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    rl_tensor *x = c->args[0].t, *m = c->args[1].t;
    bool shift = c->args[2].num != 0;
    /* TRL masked_whiten: masked mean, unbiased masked variance, then
     * (x - mean) / sqrt(var + 1e-8); the mean is added back unless shift_mean */
    rl_tensor *n = rl_sum(ctx, m, RL_AXIS_ALL, 0);
    rl_tensor *mean = rl_div(ctx, rl_sum(ctx, rl_mul(ctx, x, m), RL_AXIS_ALL, 0), n);
    rl_tensor *cen = rl_sub(ctx, x, mean);
    rl_tensor *var = rl_div(ctx, rl_sum(ctx, rl_mul(ctx, rl_square(ctx, cen), m), RL_AXIS_ALL, 0),
                            rl_sub(ctx, n, rl_scalar_like(ctx, x, 1.0)));
    rl_tensor *w = rl_mul(ctx, cen, rl_pow(ctx, rl_add(ctx, var, rl_scalar_like(ctx, x, 1e-8)), -0.5));
    if (!shift) w = rl_add(ctx, w, mean);
    out->kind = RL_RV_TENSOR;
    out->t = w;
    return w ? RL_OK : rl_ctx_status(ctx);
}

/* ---- var, std -------------------------------------------------------------------------- */

/* sum((x - mean(x))^2) / (n - correction) over axis (RL_AXIS_ALL: every
 * element), n the number of elements reduced; correction 1 (the default) is
 * the unbiased estimator, as torch.var's default, 0 the population
 * variance, as numpy.var's. Written with ops, so gradients flow. */
static rl_tensor *variance(rl_ctx *ctx, rl_tensor *x, int axis, int keepdim, double correction, const char *who) {
    if (!x) return NULL;
    if (axis != RL_AXIS_ALL && x->ndim == 0) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: axis %d is out of range: x is a scalar (omit axis)", who, axis);
        return NULL;
    }
    if (axis != RL_AXIS_ALL && (axis < -x->ndim || axis >= x->ndim)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: axis %d is out of range for x of %d dims (use -%d .. %d)", who, axis,
                    x->ndim, x->ndim, x->ndim - 1);
        return NULL;
    }
    rl_tensor *mean = rl_mean(ctx, x, axis, 1);
    if (!mean) return NULL;
    int64_t n = x->numel / (mean->numel > 0 ? mean->numel : 1);
    if (!(n - correction > 0)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: %lld element%s per reduction leave%s no degrees of freedom with "
                                     "correction = %g (use correction = 0, or reduce over more elements)",
                    who, (long long)n, n == 1 ? "" : "s", n == 1 ? "s" : "", correction);
        return NULL;
    }
    rl_tensor *ss = rl_sum(ctx, rl_square(ctx, rl_sub(ctx, x, mean)), axis, keepdim);
    return rl_div(ctx, ss, rl_scalar_like(ctx, x, (double)n - correction));
}

static rl_status native_var(const rl_recipe_call *c, rl_recipe_value *out) {
    out->kind = RL_RV_TENSOR;
    out->t = variance(c->ctx, c->args[0].t, (int)c->args[1].num, c->args[2].num != 0, c->args[3].num, "var");
    return out->t ? RL_OK : rl_ctx_status(c->ctx);
}

static rl_status native_std(const rl_recipe_call *c, rl_recipe_value *out) {
    out->kind = RL_RV_TENSOR;
    out->t = rl_sqrt(c->ctx, variance(c->ctx, c->args[0].t, (int)c->args[1].num, c->args[2].num != 0,
                                      c->args[3].num, "std"));
    return out->t ? RL_OK : rl_ctx_status(c->ctx);
}

/* ---- window_mean --------------------------------------------------------------------- */

typedef struct rl_window {
    int64_t cap, n, head;
    double buf[];
} rl_window;

static void window_free(void *s) { free(s); }

/* Checkpoint form: cap, n, head, then the cap buffered values. */
static double *window_save(const void *s, size_t *n) {
    const rl_window *w = s;
    *n = 3 + (size_t)w->cap;
    double *v = malloc(sizeof(double) * *n);
    if (!v) return NULL;
    v[0] = (double)w->cap, v[1] = (double)w->n, v[2] = (double)w->head;
    memcpy(v + 3, w->buf, sizeof(double) * (size_t)w->cap);
    return v;
}

static void *window_load(const double *v, size_t n) {
    if (n < 4 || v[0] < 1 || v[0] > 1e7 || (size_t)v[0] + 3 != n || v[1] < 0 || v[1] > v[0] ||
        v[2] < 0 || v[2] >= v[0])
        return NULL;
    rl_window *w = calloc(1, sizeof(rl_window) + sizeof(double) * (n - 3));
    if (!w) return NULL;
    w->cap = (int64_t)v[0], w->n = (int64_t)v[1], w->head = (int64_t)v[2];
    memcpy(w->buf, v + 3, sizeof(double) * (n - 3));
    return w;
}

static rl_status native_window_mean(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    rl_tensor *x = c->args[0].t;
    double nd = c->args[1].num;
    if (nd < 1 || nd > 1e7)
        return rl_ctx_fail(ctx, RL_ERR_ARG, "window_mean: n is %g; it must be in [1, 1e7]", nd);
    int64_t cap = (int64_t)nd;
    rl_window *w = *c->state;
    if (!w || w->cap != cap) {
        free(w);
        w = calloc(1, sizeof(rl_window) + sizeof(double) * (size_t)cap);
        *c->state = w;
        if (!w) return rl_ctx_fail(ctx, RL_ERR_MEMORY, "window_mean: out of memory");
        w->cap = cap;
    }
    double *h = read_doubles(ctx, x);
    if (!h) return rl_ctx_status(ctx);
    for (int64_t i = 0; i < x->numel; i++) {
        w->buf[w->head] = h[i];
        w->head = (w->head + 1) % w->cap;
        if (w->n < w->cap) w->n++;
    }
    free(h);
    double s = 0;
    for (int64_t i = 0; i < w->n; i++) s += w->buf[i];
    out->kind = RL_RV_TENSOR;
    out->t = rl_scalar(ctx, x->dtype, w->n ? s / (double)w->n : 0.0);
    return out->t ? RL_OK : rl_ctx_status(ctx);
}

/* ---- kl ---------------------------------------------------------------------------------- */

static rl_status native_kl(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    rl_tensor *d = c->args[0].t;
    const char *k = c->args[1].str ? c->args[1].str : "k3";
    rl_tensor *r;
    if (strcmp(k, "k1") == 0) r = rl_mul(ctx, d, rl_scalar_like(ctx, d, 1.0));
    else if (strcmp(k, "k2") == 0) r = rl_mul(ctx, rl_square(ctx, d), rl_scalar_like(ctx, d, 0.5));
    else if (strcmp(k, "k3") == 0)
        r = rl_add(ctx, rl_sub(ctx, rl_exp(ctx, rl_neg(ctx, d)), rl_scalar_like(ctx, d, 1.0)), d);
    else return rl_ctx_fail(ctx, RL_ERR_ARG, "kl: unknown estimator \"%s\" (k1, k2 or k3)", k);
    out->kind = RL_RV_TENSOR;
    out->t = r;
    return r ? RL_OK : rl_ctx_status(ctx);
}

/* ---- adaptive_beta ------------------------------------------------------------------------ */

/* The adaptive KL controller of Ziegler et al. 2019 ("Fine-Tuning Language
 * Models from Human Preferences", section 2.2; lm-human-preferences and TRL's
 * AdaptiveKLController): after a batch of n samples whose mean KL is KL,
 *   e = clip(KL / target - 1, -0.2, 0.2),   beta *= 1 + e * n / horizon.
 * A call returns the coefficient for this batch, then folds this batch's KL
 * into the state for the next one: TRL computes the rewards with the current
 * value and updates after the step, with the KL of the same rollout (which
 * does not depend on beta). One state per call site, so it must run once per
 * batch: the function is rollout-only. */
typedef struct rl_kl_ctl {
    double init, beta;
} rl_kl_ctl;

static void kl_ctl_free(void *s) { free(s); }

/* Checkpoint form: init, beta. */
static double *kl_ctl_save(const void *s, size_t *n) {
    const rl_kl_ctl *k = s;
    double *v = malloc(2 * sizeof(double));
    if (!v) return NULL;
    v[0] = k->init, v[1] = k->beta, *n = 2;
    return v;
}

static void *kl_ctl_load(const double *v, size_t n) {
    if (n != 2 || !(v[0] > 0) || !isfinite(v[1])) return NULL;
    rl_kl_ctl *k = malloc(sizeof *k);
    if (k) k->init = v[0], k->beta = v[1];
    return k;
}

static rl_status native_adaptive_beta(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    rl_tensor *x = c->args[0].t;
    double init = c->args[1].num, target = c->args[2].num, horizon = c->args[3].num;
    if (!(init > 0) || !(target > 0) || !(horizon > 0) || !isfinite(init) || !isfinite(target) ||
        !isfinite(horizon))
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "adaptive_beta: init (%g), target (%g) and horizon (%g) must be positive and finite",
                           init, target, horizon);
    if (x->numel < 1) return rl_ctx_fail(ctx, RL_ERR_ARG, "adaptive_beta: the KL has no elements");
    rl_kl_ctl *st = *c->state;
    if (!st || st->init != init) {
        free(st);
        st = malloc(sizeof *st);
        *c->state = st;
        if (!st) return rl_ctx_fail(ctx, RL_ERR_MEMORY, "adaptive_beta: out of memory");
        st->init = st->beta = init;
    }
    double *h = read_doubles(ctx, x);
    if (!h) return rl_ctx_status(ctx);
    double kl = 0;
    for (int64_t i = 0; i < x->numel; i++) kl += h[i];
    free(h);
    kl /= (double)x->numel;
    double now = st->beta;
    double e = kl / target - 1;
    e = e < -0.2 ? -0.2 : e > 0.2 ? 0.2 : e;
    if (isfinite(e)) st->beta *= 1 + e * (double)x->numel / horizon;
    out->kind = RL_RV_TENSOR;
    out->t = rl_scalar(ctx, x->dtype, now);
    return out->t ? RL_OK : rl_ctx_status(ctx);
}

/* ---- groups ------------------------------------------------------------------------------- */

/* Groups are rows: generate(policy, prompts, n = G) gives B*G rows, each
 * prompt's G samples adjacent (rows b*G .. b*G + G - 1). x [R, ...] is seen
 * as [R / n, n, ...], the samples of each prompt on axis 1. Written with
 * ops, so gradients flow where x carries them. */
static rl_tensor *group_view(rl_ctx *ctx, rl_tensor *x, double n_arg, const char *who) {
    int64_t n = (int64_t)n_arg;
    if (x->ndim == 0 || x->ndim >= RL_MAX_DIMS) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: x has %d dims; groups are the rows of x [B*G] .. [B*G, T, V]", who,
                    x->ndim);
        return NULL;
    }
    if (n < 1 || x->shape[0] % n != 0) {
        /* sizes in brackets, so that the shape check names them: [B] ... [G] */
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: x has [%lld] rows, not a multiple of the group size [%lld] "
                                     "(x must have B*G rows, each prompt's G samples adjacent, as "
                                     "generate(..., n = G) gives)",
                    who, (long long)x->shape[0], (long long)n);
        return NULL;
    }
    int64_t shape[RL_MAX_DIMS];
    shape[0] = x->shape[0] / n, shape[1] = n;
    for (int k = 1; k < x->ndim; k++) shape[k + 1] = x->shape[k];
    return rl_reshape(ctx, x, x->ndim + 1, shape);
}

static rl_status tensor_out(const rl_recipe_call *c, rl_recipe_value *out, rl_tensor *t) {
    out->kind = RL_RV_TENSOR;
    out->t = t;
    return t ? RL_OK : rl_ctx_status(c->ctx) ? rl_ctx_status(c->ctx) : RL_ERR_STATE;
}

static rl_status native_group_mean(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_tensor *g = group_view(c->ctx, c->args[0].t, c->args[1].num, "group_mean");
    return tensor_out(c, out, g ? rl_mean(c->ctx, g, 1, 0) : NULL);
}

static rl_status native_group_sum(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_tensor *g = group_view(c->ctx, c->args[0].t, c->args[1].num, "group_sum");
    return tensor_out(c, out, g ? rl_sum(c->ctx, g, 1, 0) : NULL);
}

static rl_status native_group_std(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_tensor *g = group_view(c->ctx, c->args[0].t, c->args[1].num, "group_std");
    return tensor_out(c, out, g ? rl_sqrt(c->ctx, variance(c->ctx, g, 1, 0, c->args[2].num, "group_std")) : NULL);
}

/* RLOO's baseline (Ahmadian et al. 2024): for each sample, the mean of the
 * other n - 1 samples of its group, (sum - x) / (n - 1). */
static rl_status native_group_loo(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    rl_tensor *x = c->args[0].t;
    int64_t n = (int64_t)c->args[1].num;
    if (n < 2) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "group_loo: a group of %lld has no other samples to average; use n >= 2",
                    (long long)n);
        return RL_ERR_ARG;
    }
    rl_tensor *g = group_view(ctx, x, (double)n, "group_loo");
    if (!g) return rl_ctx_status(ctx);
    rl_tensor *others = rl_sub(ctx, rl_sum(ctx, g, 1, 1), g); /* [R/n, n, ...] */
    rl_tensor *loo = rl_div(ctx, others, rl_scalar_like(ctx, x, (double)(n - 1)));
    return tensor_out(c, out, loo ? rl_reshape(ctx, loo, x->ndim, x->shape) : NULL);
}

/* v [B, ...] -> [B*n, ...]: each row repeated n times, adjacent (a
 * per-prompt value for each of its samples). */
static rl_status native_group_broadcast(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    rl_tensor *v = c->args[0].t;
    int64_t n = (int64_t)c->args[1].num;
    if (v->ndim == 0 || v->ndim >= RL_MAX_DIMS)
        return rl_ctx_fail(ctx, RL_ERR_ARG, "group_broadcast: v has %d dims; it must be [B] .. [B, T, V]",
                           v->ndim);
    int64_t one[RL_MAX_DIMS], wide[RL_MAX_DIMS], flat[RL_MAX_DIMS];
    one[0] = wide[0] = v->shape[0], one[1] = 1, wide[1] = n;
    flat[0] = v->shape[0] * n;
    for (int k = 1; k < v->ndim; k++) one[k + 1] = wide[k + 1] = flat[k] = v->shape[k];
    rl_tensor *w = rl_broadcast_to(ctx, rl_reshape(ctx, v, v->ndim + 1, one), v->ndim + 1, wide);
    return tensor_out(c, out, w ? rl_reshape(ctx, w, v->ndim, flat) : NULL);
}

/* ---- loss aggregation --------------------------------------------------------------------- */

/* verl's agg_loss modes over a [rows, T] per-token loss x and its mask m:
 *   token_mean               sum(x m) / sum(m)              (DAPO; TRL's "dapo"; split-dependent)
 *   seq_mean_token_mean      mean_b sum_t(x m) / sum_t(m)   (GRPO's paper)
 *   seq_mean_token_sum       mean_b sum_t(x m)
 *   seq_mean_token_sum_norm  sum(x m) / (rows * norm)       (Dr.GRPO and TRL's "dr_grpo"; verl's mode of
 *                            this name divides by norm alone; norm 0: T, the batch's length)
 * A row without a mask token counts as a mean of 0 (its count is taken as 1). */
static rl_status native_agg_loss(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    rl_tensor *x = c->args[0].t, *m = c->args[1].t;
    const char *mode = c->args[2].str;
    double norm = c->args[3].num;
    if (x->ndim != 2) return rl_ctx_fail(ctx, RL_ERR_ARG, "agg_loss: x has %d dims; it must be [B, T]", x->ndim);
    rl_tensor *xm = rl_mul(ctx, x, m);
    rl_tensor *t = NULL;
    if (!strcmp(mode, "token_mean")) {
        t = rl_div(ctx, rl_sum(ctx, xm, RL_AXIS_ALL, 0), rl_sum(ctx, m, RL_AXIS_ALL, 0));
    } else if (!strcmp(mode, "seq_mean_token_mean")) {
        rl_tensor *cnt = rl_maximum(ctx, rl_sum(ctx, rl_broadcast_to(ctx, m, 2, x->shape), -1, 0),
                                    rl_scalar_like(ctx, x, 1.0));
        t = rl_mean(ctx, rl_div(ctx, rl_sum(ctx, xm, -1, 0), cnt), RL_AXIS_ALL, 0);
    } else if (!strcmp(mode, "seq_mean_token_sum")) {
        t = rl_mean(ctx, rl_sum(ctx, xm, -1, 0), RL_AXIS_ALL, 0);
    } else {
        double d = norm > 0 ? norm : (double)x->shape[1];
        t = rl_div(ctx, rl_sum(ctx, xm, RL_AXIS_ALL, 0), rl_scalar_like(ctx, x, (double)x->shape[0] * d));
    }
    return tensor_out(c, out, t);
}

/* ---- step ------------------------------------------------------------------------------------ */

static rl_status native_step(const rl_recipe_call *c, rl_recipe_value *out) {
    const rl_recipe_program *p = c->user;
    double k = p && !c->dry ? (double)p->step : 0.0;
    out->kind = RL_RV_TENSOR;
    out->t = rl_scalar(c->ctx, p ? p->opts.dtype : RL_F32, k);
    return out->t ? RL_OK : rl_ctx_status(c->ctx);
}

/* ---- the table ------------------------------------------------------------------------------ */

static const rl_recipe_fn rl_natives[] = {
    {.name = "at_end",
     .doc = "at_end(x, tokens) -> f32[B, T]: x[b] at row b's last response token (tokens.mask), 0 elsewhere",
     .n_params = 2,
     .params = {{"x", RL_RP_FLOAT}, {"tokens", RL_RP_TOKENS}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_at_end},
    {.name = "gae",
     .doc = "adv, ret = gae(r, v, mask, gamma = 1, lam = 0.95): generalized advantage estimation over "
            "each row's mask tokens (token-aligned r and v; no gradient)",
     .n_params = 5,
     .params = {{"r", RL_RP_FLOAT},
                {"v", RL_RP_FLOAT},
                {"mask", RL_RP_ANY},
                {"gamma", RL_RP_NUMBER, 1, 1.0},
                {"lam", RL_RP_NUMBER, 1, 0.95}},
     .n_results = 2,
     .results = {RL_RR_FLOAT, RL_RR_FLOAT},
     .result_names = "adv, ret",
     .flags = RL_RFN_NOGRAD,
     .call = native_gae},
    {.name = "whiten",
     .doc = "whiten(x, mask, shift_mean = true): (x - mean) / sqrt(var + 1e-8) over mask (unbiased "
            "variance; the mean is added back when shift_mean is false)",
     .n_params = 3,
     .params = {{"x", RL_RP_FLOAT}, {"mask", RL_RP_FLOAT}, {"shift_mean", RL_RP_NUMBER, 1, 1.0}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_whiten},
    {.name = "var",
     .doc = "var(x, axis = all, keepdim = false, correction = 1): sum((x - mean)^2) / (n - correction) over "
            "axis; correction 1 is the unbiased estimator (torch.var), 0 the population variance",
     .n_params = 4,
     .params = {{"x", RL_RP_FLOAT},
                {"axis", RL_RP_NUMBER, 1, RL_AXIS_ALL, NULL, NULL, 1},
                {"keepdim", RL_RP_NUMBER, 1, 0.0},
                {"correction", RL_RP_NUMBER, 1, 1.0}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_var},
    {.name = "std",
     .doc = "std(x, axis = all, keepdim = false, correction = 1): sqrt(var(x, axis, keepdim, correction))",
     .n_params = 4,
     .params = {{"x", RL_RP_FLOAT},
                {"axis", RL_RP_NUMBER, 1, RL_AXIS_ALL, NULL, NULL, 1},
                {"keepdim", RL_RP_NUMBER, 1, 0.0},
                {"correction", RL_RP_NUMBER, 1, 1.0}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_std},
    {.name = "group_mean",
     .doc = "group_mean(x, n) -> [B, ...]: the mean over each prompt's n samples; x [B*n, ...] with each "
            "prompt's samples adjacent (generate(..., n = G))",
     .n_params = 2,
     .params = {{"x", RL_RP_FLOAT}, {"n", RL_RP_NUMBER, 0, 0, NULL, NULL, 1, 1}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_group_mean},
    {.name = "group_sum",
     .doc = "group_sum(x, n) -> [B, ...]: the sum over each prompt's n samples (x [B*n, ...])",
     .n_params = 2,
     .params = {{"x", RL_RP_FLOAT}, {"n", RL_RP_NUMBER, 0, 0, NULL, NULL, 1, 1}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_group_sum},
    {.name = "group_std",
     .doc = "group_std(x, n, correction = 1) -> [B, ...]: the standard deviation over each prompt's n samples, "
            "sqrt(sum((x - mean)^2) / (n - correction)); 1 is the unbiased estimator (torch.std, TRL's GRPO), "
            "0 the population one",
     .n_params = 3,
     .params = {{"x", RL_RP_FLOAT}, {"n", RL_RP_NUMBER, 0, 0, NULL, NULL, 1, 1}, {"correction", RL_RP_NUMBER, 1, 1.0}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_group_std},
    {.name = "group_loo",
     .doc = "group_loo(x, n) -> [B*n, ...]: for each sample, the mean of the other n - 1 samples of its group "
            "(RLOO's baseline)",
     .n_params = 2,
     .params = {{"x", RL_RP_FLOAT}, {"n", RL_RP_NUMBER, 0, 0, NULL, NULL, 1, 1}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_group_loo},
    {.name = "group_broadcast",
     .doc = "group_broadcast(v, n) -> [B*n, ...]: each prompt's value v [B, ...] for each of its n samples",
     .n_params = 2,
     .params = {{"v", RL_RP_FLOAT}, {"n", RL_RP_NUMBER, 0, 0, NULL, NULL, 1, 1}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_group_broadcast},
    {.name = "agg_loss",
     .doc = "agg_loss(x, mask, mode = \"token_mean\", norm = 0) -> f32: a per-token loss x [B, T] reduced to "
            "one number: token_mean = sum(x m) / sum(m); seq_mean_token_mean = mean over rows of each row's "
            "masked mean; seq_mean_token_sum = mean over rows of each row's masked sum; "
            "seq_mean_token_sum_norm = sum(x m) / (B * norm), norm 0 meaning T (Dr.GRPO) (verl's modes)",
     .n_params = 4,
     .params = {{"x", RL_RP_FLOAT},
                {"mask", RL_RP_FLOAT},
                {"mode", RL_RP_STRING, 1, 0, "token_mean",
                 "token_mean|seq_mean_token_mean|seq_mean_token_sum|seq_mean_token_sum_norm"},
                {"norm", RL_RP_NUMBER, 1, 0.0}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_agg_loss},
    {.name = "window_mean",
     .doc = "window_mean(x, n) -> f32: the mean of the last n values of x seen at this call site "
            "(across batches; no gradient)",
     .n_params = 2,
     .params = {{"x", RL_RP_FLOAT}, {"n", RL_RP_NUMBER, 0, 0, NULL, NULL, 1}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .flags = RL_RFN_NOGRAD | RL_RFN_STATEFUL,
     .call = native_window_mean,
     .free_state = window_free,
     .save_state = window_save,
     .load_state = window_load},
    {.name = "kl",
     .doc = "kl(d, kind = \"k3\"): KL estimator of d = lp - lref: k1 = d, k2 = d^2/2, k3 = exp(-d) - 1 + d",
     .n_params = 2,
     .params = {{"d", RL_RP_FLOAT}, {"kind", RL_RP_STRING, 1, 0, "k3", "k1|k2|k3"}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = native_kl},
    {.name = "adaptive_beta",
     .doc = "adaptive_beta(kl, init, target = 6, horizon = 10000) -> f32: the KL coefficient for this "
            "batch (Ziegler et al.); then beta *= 1 + clip(mean(kl) / target - 1, -0.2, 0.2) * n / horizon "
            "with n = numel(kl) (rollout only; no gradient)",
     .n_params = 4,
     .params = {{"kl", RL_RP_FLOAT},
                {"init", RL_RP_NUMBER},
                {"target", RL_RP_NUMBER, 1, 6.0},
                {"horizon", RL_RP_NUMBER, 1, 10000.0}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .flags = RL_RFN_NOGRAD | RL_RFN_STATEFUL | RL_RFN_ROLLOUT_ONLY,
     .call = native_adaptive_beta,
     .free_state = kl_ctl_free,
     .save_state = kl_ctl_save,
     .load_state = kl_ctl_load},
    {.name = "step",
     .doc = "step() -> f32: the number of policy steps taken so far (rl_recipe_backward calls; "
            "rl_recipe_set_step restores it); no gradient",
     .n_params = 0,
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .flags = RL_RFN_NOGRAD,
     .call = native_step},
};

int rl_recipe_n_natives(void) { return (int)(sizeof rl_natives / sizeof rl_natives[0]); }

const rl_recipe_fn *rl_recipe_native_at(int i) {
    return i >= 0 && i < rl_recipe_n_natives() ? &rl_natives[i] : NULL;
}
