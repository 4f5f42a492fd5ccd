/* ops/nn.c - the fused neural-network primitives (layernorm, rmsnorm, rotary
 * embeddings, cross_entropy, causal attention with grouped-query heads) and
 * their backward-only kernels: front ends (shape, dtype and range checks),
 * backward rules written with ops, and gradient-check cases. Kernels are in
 * ops/cpu/nn.c.
 *
 * attention_qkv is attention on GPT-2's packed c_attn output: it reads q, k
 * and v of every head straight from qkv [B, T, 3C] and writes the heads
 * merged, [B, T, C], so the model needs no reshape, permute or slices around
 * it (and its backward writes d(qkv) in the same packed layout, so no
 * zero-padded slice gradients either).
 *
 * Each primitive saves one small forward statistic (layernorm: per-row mean
 * and rstd; cross_entropy: per-row logsumexp; attention: per-row logsumexp of
 * the scores) so that its backward is a single fused kernel instead of a
 * chain of elementwise ops.
 */
#include "common.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------ */

/* True when t is [C] (1-D of size C); otherwise records an error naming `what`. */
static bool rl_nn_check_vec(rl_ctx *ctx, const char *op, const char *what, const rl_tensor *t,
                            int64_t C) {
    if (t->ndim == 1 && t->shape[0] == C) return true;
    char d[96];
    rl_ctx_fail(ctx, RL_ERR_ARG, "%s: %s is %s but it must be [%lld] (x's last axis)", op, what,
                rl_tensor_describe(t, d, sizeof d), (long long)C);
    return false;
}

/* True when a and b have the same shape; otherwise records an error. */
static bool rl_nn_check_same_shape(rl_ctx *ctx, const char *op, const char *an,
                                   const rl_tensor *a, const char *bn, const rl_tensor *b) {
    if (rl_shape_equal(a->ndim, a->shape, b->ndim, b->shape)) return true;
    char da[96], db[96];
    rl_ctx_fail(ctx, RL_ERR_ARG, "%s: %s is %s and %s is %s; they must have the same shape", op,
                an, rl_tensor_describe(a, da, sizeof da), bn, rl_tensor_describe(b, db, sizeof db));
    return false;
}

/* ---- layernorm ----------------------------------------------------------------- */

rl_tensor *rl_layernorm(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, rl_tensor *b, double eps) {
    const char *op = "layernorm";
    if (!rl_check_input(ctx, op, 0, x) || !rl_check_input(ctx, op, 1, w) ||
        !rl_check_input(ctx, op, 2, b))
        return NULL;
    if (!rl_check_float(ctx, op, 0, x) || !rl_check_same_dtype(ctx, op, x, w) ||
        !rl_check_same_dtype(ctx, op, x, b))
        return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1) {
        char d[96];
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "layernorm: x is %s; it needs at least one axis with at least one feature "
                    "(normalisation is over the last axis)",
                    rl_tensor_describe(x, d, sizeof d));
        return NULL;
    }
    int64_t C = x->shape[x->ndim - 1];
    if (!rl_nn_check_vec(ctx, op, "w", w, C) || !rl_nn_check_vec(ctx, op, "b", b, C)) return NULL;
    if (!(eps >= 0) || !isfinite(eps)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "layernorm: eps is %g; it must be finite and >= 0 (1e-5 is usual)",
                    eps);
        return NULL;
    }
    rl_attrs at = {.f = {eps, 0}};
    rl_saved_spec st = {x->dtype, 2, {x->numel / C, 2}};
    rl_tensor *in[3] = {x, w, b};
    return rl_op_run(ctx, RL_OP_LAYERNORM, 3, in, &at, x->dtype, x->ndim, x->shape, 1, &st);
}

rl_tensor *rl_layernorm_grad(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, rl_tensor *stats,
                             rl_tensor *dy) {
    const char *op = "layernorm_grad";
    if (!rl_check_input(ctx, op, 0, x) || !rl_check_input(ctx, op, 1, w) ||
        !rl_check_input(ctx, op, 2, stats) || !rl_check_input(ctx, op, 3, dy))
        return NULL;
    if (!rl_check_float(ctx, op, 0, x) || !rl_check_same_dtype(ctx, op, x, w) ||
        !rl_check_same_dtype(ctx, op, x, stats) || !rl_check_same_dtype(ctx, op, x, dy))
        return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "layernorm_grad: x needs a non-empty last axis");
        return NULL;
    }
    int64_t C = x->shape[x->ndim - 1];
    if (!rl_nn_check_vec(ctx, op, "w", w, C) || !rl_nn_check_same_shape(ctx, op, "x", x, "dy", dy))
        return NULL;
    if (stats->ndim != 2 || stats->shape[0] != x->numel / C || stats->shape[1] != 2) {
        char d[96];
        rl_ctx_fail(ctx, RL_ERR_ARG, "layernorm_grad: stats is %s; it must be [%lld, 2] (mean, rstd per row)",
                    rl_tensor_describe(stats, d, sizeof d), (long long)(x->numel / C));
        return NULL;
    }
    rl_tensor *in[4] = {x, w, stats, dy};
    return rl_op_run(ctx, RL_OP_LAYERNORM_GRAD, 4, in, NULL, x->dtype, x->ndim, x->shape, 0, NULL);
}

/* ---- rmsnorm -------------------------------------------------------------------- */

rl_tensor *rl_rmsnorm(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, double eps) {
    const char *op = "rmsnorm";
    if (!rl_check_input(ctx, op, 0, x) || !rl_check_input(ctx, op, 1, w)) return NULL;
    if (!rl_check_float(ctx, op, 0, x) || !rl_check_same_dtype(ctx, op, x, w)) return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1) {
        char d[96];
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "rmsnorm: x is %s; it needs at least one axis with at least one feature "
                    "(normalisation is over the last axis)",
                    rl_tensor_describe(x, d, sizeof d));
        return NULL;
    }
    int64_t C = x->shape[x->ndim - 1];
    if (!rl_nn_check_vec(ctx, op, "w", w, C)) return NULL;
    if (!(eps >= 0) || !isfinite(eps)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "rmsnorm: eps is %g; it must be finite and >= 0 (1e-6 or 1e-5 is usual)",
                    eps);
        return NULL;
    }
    rl_attrs at = {.f = {eps, 0}};
    rl_saved_spec st = {x->dtype, 1, {x->numel / C}};
    rl_tensor *in[2] = {x, w};
    return rl_op_run(ctx, RL_OP_RMSNORM, 2, in, &at, x->dtype, x->ndim, x->shape, 1, &st);
}

rl_tensor *rl_rmsnorm_grad(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, rl_tensor *rstd, rl_tensor *dy) {
    const char *op = "rmsnorm_grad";
    if (!rl_check_input(ctx, op, 0, x) || !rl_check_input(ctx, op, 1, w) ||
        !rl_check_input(ctx, op, 2, rstd) || !rl_check_input(ctx, op, 3, dy))
        return NULL;
    if (!rl_check_float(ctx, op, 0, x) || !rl_check_same_dtype(ctx, op, x, w) ||
        !rl_check_same_dtype(ctx, op, x, rstd) || !rl_check_same_dtype(ctx, op, x, dy))
        return NULL;
    if (x->ndim < 1 || x->shape[x->ndim - 1] < 1) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "rmsnorm_grad: x needs a non-empty last axis");
        return NULL;
    }
    int64_t C = x->shape[x->ndim - 1];
    if (!rl_nn_check_vec(ctx, op, "w", w, C) || !rl_nn_check_same_shape(ctx, op, "x", x, "dy", dy))
        return NULL;
    if (rstd->ndim != 1 || rstd->shape[0] != x->numel / C) {
        char d[96];
        rl_ctx_fail(ctx, RL_ERR_ARG, "rmsnorm_grad: rstd is %s; it must be [%lld] (one per row)",
                    rl_tensor_describe(rstd, d, sizeof d), (long long)(x->numel / C));
        return NULL;
    }
    rl_tensor *in[4] = {x, w, rstd, dy};
    return rl_op_run(ctx, RL_OP_RMSNORM_GRAD, 4, in, NULL, x->dtype, x->ndim, x->shape, 0, NULL);
}

/* ---- rope ------------------------------------------------------------------------ */

rl_tensor *rl_rope(rl_ctx *ctx, rl_tensor *x, rl_tensor *cos, rl_tensor *sin) {
    const char *op = "rope";
    if (!rl_check_input(ctx, op, 0, x) || !rl_check_input(ctx, op, 1, cos) ||
        !rl_check_input(ctx, op, 2, sin))
        return NULL;
    if (!rl_check_float(ctx, op, 0, x) || !rl_check_same_dtype(ctx, op, x, cos) ||
        !rl_check_same_dtype(ctx, op, x, sin))
        return NULL;
    char d[96], dc[96];
    if (x->ndim != 4 || x->shape[3] < 2 || x->shape[3] % 2 != 0) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "rope: x is %s; it must be [B, T, H, D] with an even head size D (the first "
                    "half of each head rotates with the second)",
                    rl_tensor_describe(x, d, sizeof d));
        return NULL;
    }
    const int64_t want[3] = {x->shape[0], x->shape[1], x->shape[3] / 2};
    if (!rl_shape_equal(cos->ndim, cos->shape, 3, want) || !rl_shape_equal(sin->ndim, sin->shape, 3, want)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "rope: x is %s and cos %s; cos and sin must be [B, T, D/2] = [%lld, %lld, %lld]",
                    rl_tensor_describe(x, d, sizeof d), rl_tensor_describe(cos, dc, sizeof dc),
                    (long long)want[0], (long long)want[1], (long long)want[2]);
        return NULL;
    }
    rl_tensor *in[3] = {x, cos, sin};
    return rl_op_run(ctx, RL_OP_ROPE, 3, in, NULL, x->dtype, 4, x->shape, 0, NULL);
}

/* ---- cross_entropy --------------------------------------------------------------- */

/* Checks logits [..., V] against targets i32 [...]; returns V or -1. */
static int64_t rl_ce_check_shapes(rl_ctx *ctx, const char *op, const rl_tensor *logits,
                                  const rl_tensor *targets) {
    if (!rl_check_float(ctx, op, 0, logits) || !rl_check_i32(ctx, op, 1, targets)) return -1;
    char dl[96], dt[96];
    if (logits->ndim < 1 || logits->shape[logits->ndim - 1] < 1) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: logits are %s; they need a non-empty last axis (classes)",
                    op, rl_tensor_describe(logits, dl, sizeof dl));
        return -1;
    }
    if (!rl_shape_equal(logits->ndim - 1, logits->shape, targets->ndim, targets->shape)) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: logits are %s and targets %s; targets must have the logits' shape "
                    "without its last axis (one class id per position)",
                    op, rl_tensor_describe(logits, dl, sizeof dl),
                    rl_tensor_describe(targets, dt, sizeof dt));
        return -1;
    }
    if (logits->shape[logits->ndim - 1] > INT32_MAX) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: %lld classes do not fit i32 targets", op,
                    (long long)logits->shape[logits->ndim - 1]);
        return -1;
    }
    return logits->shape[logits->ndim - 1];
}

/* Rejects targets >= V, naming the first offending position. Targets are read
 * in place on the CPU backend and copied to host scratch on any other. */
static bool rl_ce_check_targets(rl_ctx *ctx, const rl_tensor *targets, int64_t V) {
    const int32_t *ids = rl_tensor_host_data(targets);
    if (!ids) {
        size_t bytes = (size_t)targets->numel * sizeof(int32_t);
        int32_t *h = rl_ctx_scratch(ctx, bytes ? bytes : 1);
        if (!h || rl_tensor_read(ctx, targets, h, bytes) != RL_OK) return false;
        ids = h;
    }
    for (int64_t i = 0; i < targets->numel; i++) {
        if (ids[i] < V) continue;
        /* the position as a multi-index, e.g. [1, 17] */
        char pos[96];
        int len = 0;
        int64_t rem = i, idx[RL_MAX_DIMS] = {0};
        for (int d = targets->ndim - 1; d >= 0; d--) {
            idx[d] = rem % targets->shape[d];
            rem /= targets->shape[d];
        }
        len += snprintf(pos + len, sizeof pos - (size_t)len, "[");
        for (int d = 0; d < targets->ndim; d++)
            len += snprintf(pos + len, sizeof pos - (size_t)len, "%s%lld", d ? ", " : "",
                            (long long)idx[d]);
        snprintf(pos + len, sizeof pos - (size_t)len, "]");
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "cross_entropy: target %d at position %s (flat index %lld) is out of range "
                    "for %lld classes; targets must be in [0, %lld), or negative to ignore the "
                    "position",
                    ids[i], pos, (long long)i, (long long)V, (long long)V);
        return false;
    }
    return true;
}

rl_tensor *rl_cross_entropy(rl_ctx *ctx, rl_tensor *logits, rl_tensor *targets) {
    const char *op = "cross_entropy";
    if (!rl_check_input(ctx, op, 0, logits) || !rl_check_input(ctx, op, 1, targets)) return NULL;
    int64_t V = rl_ce_check_shapes(ctx, op, logits, targets);
    if (V < 0 || !rl_ce_check_targets(ctx, targets, V)) return NULL;
    rl_saved_spec lse = {logits->dtype, 1, {targets->numel}};
    rl_tensor *in[2] = {logits, targets};
    return rl_op_run(ctx, RL_OP_CROSS_ENTROPY, 2, in, NULL, logits->dtype, targets->ndim,
                     targets->shape, 1, &lse);
}

rl_tensor *rl_cross_entropy_grad(rl_ctx *ctx, rl_tensor *logits, rl_tensor *targets,
                                 rl_tensor *lse, rl_tensor *dloss) {
    const char *op = "cross_entropy_grad";
    if (!rl_check_input(ctx, op, 0, logits) || !rl_check_input(ctx, op, 1, targets) ||
        !rl_check_input(ctx, op, 2, lse) || !rl_check_input(ctx, op, 3, dloss))
        return NULL;
    if (rl_ce_check_shapes(ctx, op, logits, targets) < 0) return NULL;
    if (!rl_check_same_dtype(ctx, op, logits, lse) || !rl_check_same_dtype(ctx, op, logits, dloss))
        return NULL;
    if (lse->numel != targets->numel) {
        char d[96];
        rl_ctx_fail(ctx, RL_ERR_ARG, "cross_entropy_grad: lse is %s; it needs one value per position (%lld)",
                    rl_tensor_describe(lse, d, sizeof d), (long long)targets->numel);
        return NULL;
    }
    if (!rl_nn_check_same_shape(ctx, op, "dloss", dloss, "targets", targets)) return NULL;
    rl_tensor *in[4] = {logits, targets, lse, dloss};
    return rl_op_run(ctx, RL_OP_CROSS_ENTROPY_GRAD, 4, in, NULL, logits->dtype, logits->ndim,
                     logits->shape, 0, NULL);
}

/* ---- attention ---------------------------------------------------------------------- */

/* Checks that q (and the others) are [B, H, T, D] of one float dtype, with
 * sizes BLAS can index (T * T and T * D must fit its int); ts[1] and ts[2]
 * (k and v) may have Hkv heads instead, Hkv dividing H. */
static bool rl_attn_check(rl_ctx *ctx, const char *op, int n, rl_tensor *const *ts,
                          const char *const *names) {
    for (int i = 0; i < n; i++)
        if (!rl_check_input(ctx, op, i, ts[i])) return false;
    const rl_tensor *q = ts[0];
    if (!rl_check_float(ctx, op, 0, q)) return false;
    char d[96];
    if (q->ndim != 4) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: q is %s; q, k and v must be [B, H, T, D]", op,
                    rl_tensor_describe(q, d, sizeof d));
        return false;
    }
    for (int i = 1; i < n; i++) {
        if (!rl_check_same_dtype(ctx, op, q, ts[i])) return false;
        if (i > 2) {
            if (!rl_nn_check_same_shape(ctx, op, names[0], q, names[i], ts[i])) return false;
            continue;
        }
        /* k and v: [B, Hkv, T, D], the same shape as each other */
        const rl_tensor *t = ts[i];
        const int64_t H = q->shape[1], Hkv = t->ndim == 4 ? t->shape[1] : 0;
        if (t->ndim != 4 || t->shape[0] != q->shape[0] || t->shape[2] != q->shape[2] ||
            t->shape[3] != q->shape[3] || Hkv < 1 || H % Hkv != 0 ||
            (i == 2 && !rl_shape_equal(4, ts[1]->shape, 4, t->shape))) {
            char dq[96];
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "%s: q is %s and %s %s; k and v must be [B, Hkv, T, D] with q's B, T and "
                        "D and a number of heads Hkv that divides q's H (grouped-query attention)",
                        op, rl_tensor_describe(q, dq, sizeof dq), names[i],
                        rl_tensor_describe(t, d, sizeof d));
            return false;
        }
    }
    int64_t Tn = q->shape[2], D = q->shape[3];
    if (D < 1) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: q is %s; the head size D must be at least 1", op,
                    rl_tensor_describe(q, d, sizeof d));
        return false;
    }
    if (Tn > 0 && (Tn > INT_MAX / Tn || Tn > INT_MAX / D)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: q is %s; T = %lld is too long for the CPU kernel (T*T must fit an int)",
                    op, rl_tensor_describe(q, d, sizeof d), (long long)Tn);
        return false;
    }
    return true;
}

/* scale <= 0 means 1/sqrt(D); NaN or inf is an error (returns NAN). */
static double rl_attn_scale(rl_ctx *ctx, const char *op, double scale, int64_t D) {
    if (!isfinite(scale)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: scale is %g; it must be finite (<= 0 means 1/sqrt(D))",
                    op, scale);
        return NAN;
    }
    return scale > 0 ? scale : 1.0 / sqrt((double)D);
}

rl_tensor *rl_attention(rl_ctx *ctx, rl_tensor *q, rl_tensor *k, rl_tensor *v, double scale) {
    rl_tensor *in[3] = {q, k, v};
    static const char *const names[3] = {"q", "k", "v"};
    if (!rl_attn_check(ctx, "attention", 3, in, names)) return NULL;
    double s = rl_attn_scale(ctx, "attention", scale, q->shape[3]);
    if (isnan(s)) return NULL;
    /* the resolved scale is stored, so the backward does not re-derive it */
    rl_attrs at = {.f = {s, 0}};
    rl_saved_spec lse = {q->dtype, 3, {q->shape[0], q->shape[1], q->shape[2]}};
    return rl_op_run(ctx, RL_OP_ATTENTION, 3, in, &at, q->dtype, 4, q->shape, 1, &lse);
}

rl_tensor *rl_attention_grad(rl_ctx *ctx, rl_tensor *q, rl_tensor *k, rl_tensor *v,
                             rl_tensor *out, rl_tensor *lse, rl_tensor *dout, double scale) {
    const char *op = "attention_grad";
    rl_tensor *qkvo[5] = {q, k, v, out, dout};
    static const char *const names[5] = {"q", "k", "v", "out", "dout"};
    rl_tensor *in[6] = {q, k, v, out, lse, dout};
    for (int i = 0; i < 6; i++)
        if (!rl_check_input(ctx, op, i, in[i])) return NULL;
    if (!rl_attn_check(ctx, op, 5, qkvo, names)) return NULL;
    if (!rl_check_same_dtype(ctx, op, q, lse)) return NULL;
    if (!rl_shape_equal(lse->ndim, lse->shape, 3, q->shape)) {
        char d[96];
        rl_ctx_fail(ctx, RL_ERR_ARG, "attention_grad: lse is %s; it must be [B, H, T] = [%lld, %lld, %lld]",
                    rl_tensor_describe(lse, d, sizeof d), (long long)q->shape[0],
                    (long long)q->shape[1], (long long)q->shape[2]);
        return NULL;
    }
    double s = rl_attn_scale(ctx, op, scale, q->shape[3]);
    if (isnan(s)) return NULL;
    rl_attrs at = {.f = {s, 0}};
    /* dq, dk, dv stacked on axis 0 of [B*H + 2*B*Hkv, T, D] */
    int64_t shape[3] = {q->shape[0] * (q->shape[1] + 2 * k->shape[1]), q->shape[2], q->shape[3]};
    return rl_op_run(ctx, RL_OP_ATTENTION_GRAD, 6, in, &at, q->dtype, 3, shape, 0, NULL);
}

/* ---- attention on packed q|k|v ------------------------------------------------------ */

/* Checks qkv [B, T, 3C] with H heads dividing C and the sizes the CPU
 * kernel's BLAS calls index with int (T*T, 3C); returns C or -1. */
static int64_t rl_attn_qkv_check(rl_ctx *ctx, const char *op, const rl_tensor *qkv, int64_t H) {
    if (!rl_check_float(ctx, op, 0, qkv)) return -1;
    char d[96];
    if (qkv->ndim != 3 || qkv->shape[2] % 3 != 0 || qkv->shape[2] == 0) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: qkv is %s; it must be [B, T, 3C] (q, k and v as three C-wide column "
                    "blocks, as GPT-2's c_attn output)",
                    op, rl_tensor_describe(qkv, d, sizeof d));
        return -1;
    }
    const int64_t C = qkv->shape[2] / 3, Tn = qkv->shape[1];
    if (H < 1 || C % H != 0) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: n_head is %lld; it must be >= 1 and divide C = %lld", op,
                    (long long)H, (long long)C);
        return -1;
    }
    if (Tn > 0 && (Tn > INT_MAX / Tn || 3 * C > INT_MAX)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: qkv is %s; T or C is too large for the CPU kernel", op,
                    rl_tensor_describe(qkv, d, sizeof d));
        return -1;
    }
    return C;
}

rl_tensor *rl_attention_qkv(rl_ctx *ctx, rl_tensor *qkv, int64_t n_head, double scale) {
    const char *op = "attention_qkv";
    if (!rl_check_input(ctx, op, 0, qkv)) return NULL;
    int64_t C = rl_attn_qkv_check(ctx, op, qkv, n_head);
    if (C < 0) return NULL;
    double s = rl_attn_scale(ctx, op, scale, C / n_head);
    if (isnan(s)) return NULL;
    rl_attrs at = {.ints = {n_head}, .f = {s, 0}};
    rl_saved_spec lse = {qkv->dtype, 3, {qkv->shape[0], n_head, qkv->shape[1]}};
    int64_t shape[3] = {qkv->shape[0], qkv->shape[1], C};
    rl_tensor *in[1] = {qkv};
    return rl_op_run(ctx, RL_OP_ATTENTION_QKV, 1, in, &at, qkv->dtype, 3, shape, 1, &lse);
}

rl_tensor *rl_attention_qkv_grad(rl_ctx *ctx, rl_tensor *qkv, rl_tensor *out, rl_tensor *lse,
                                 rl_tensor *dout, int64_t n_head, double scale) {
    const char *op = "attention_qkv_grad";
    rl_tensor *in[4] = {qkv, out, lse, dout};
    for (int i = 0; i < 4; i++)
        if (!rl_check_input(ctx, op, i, in[i])) return NULL;
    int64_t C = rl_attn_qkv_check(ctx, op, qkv, n_head);
    if (C < 0) return NULL;
    for (int i = 1; i < 4; i++)
        if (!rl_check_same_dtype(ctx, op, qkv, in[i])) return NULL;
    const int64_t B = qkv->shape[0], Tn = qkv->shape[1];
    const int64_t want[3] = {B, Tn, C}, want_lse[3] = {B, n_head, Tn};
    if (!rl_shape_equal(out->ndim, out->shape, 3, want) ||
        !rl_shape_equal(dout->ndim, dout->shape, 3, want) ||
        !rl_shape_equal(lse->ndim, lse->shape, 3, want_lse)) {
        char d1[96], d2[96], d3[96];
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "attention_qkv_grad: out is %s, dout %s and lse %s; they must be [%lld, %lld, "
                    "%lld], [%lld, %lld, %lld] and [%lld, %lld, %lld]",
                    rl_tensor_describe(out, d1, sizeof d1), rl_tensor_describe(dout, d2, sizeof d2),
                    rl_tensor_describe(lse, d3, sizeof d3), (long long)B, (long long)Tn,
                    (long long)C, (long long)B, (long long)Tn, (long long)C, (long long)B,
                    (long long)n_head, (long long)Tn);
        return NULL;
    }
    double s = rl_attn_scale(ctx, op, scale, C / n_head);
    if (isnan(s)) return NULL;
    rl_attrs at = {.ints = {n_head}, .f = {s, 0}};
    return rl_op_run(ctx, RL_OP_ATTENTION_QKV_GRAD, 4, in, &at, qkv->dtype, 3, qkv->shape, 0, NULL);
}

/* ---- backward rules (written with ops) ------------------------------------------------ */

void rl_grad_layernorm(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    if (RL_NEEDS_GRAD(x)) rl_grad_accumulate(ctx, x, rl_layernorm_grad(ctx, x, w, n->saved[0], dy));
    if (RL_NEEDS_GRAD(w)) {
        /* dw = sum over rows of dy * xhat. xhat is recomputed by the layernorm
         * kernel itself with w = 1, b = 0 (one fused pass, bit-identical to the
         * forward's normalisation), rather than from the saved stats, which
         * would take a slice, a reshape and two broadcasting ops. */
        int64_t C = w->shape[0];
        rl_tensor *ones = rl_full(ctx, x->dtype, 1, &C, 1.0);
        rl_tensor *zeros = rl_full(ctx, x->dtype, 1, &C, 0.0);
        rl_tensor *xhat = rl_layernorm(ctx, x, ones, zeros, n->attrs.f[0]);
        rl_grad_accumulate(ctx, w, rl_sum_to(ctx, rl_mul(ctx, dy, xhat), 1, w->shape));
    }
    /* db = sum over rows of dy */
    if (RL_NEEDS_GRAD(b)) rl_grad_accumulate(ctx, b, rl_sum_to(ctx, dy, 1, b->shape));
}

void rl_grad_rmsnorm(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_tensor *x = n->in[0], *w = n->in[1];
    if (RL_NEEDS_GRAD(x)) rl_grad_accumulate(ctx, x, rl_rmsnorm_grad(ctx, x, w, n->saved[0], dy));
    if (RL_NEEDS_GRAD(w)) {
        /* dw = sum over rows of dy * xhat, xhat recomputed by the kernel with
         * w = 1 (as layernorm's rule does) */
        int64_t C = w->shape[0];
        rl_tensor *xhat = rl_rmsnorm(ctx, x, rl_full(ctx, x->dtype, 1, &C, 1.0), n->attrs.f[0]);
        rl_grad_accumulate(ctx, w, rl_sum_to(ctx, rl_mul(ctx, dy, xhat), 1, w->shape));
    }
}

void rl_grad_rope(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_tensor *x = n->in[0], *cs = n->in[1], *sn = n->in[2];
    /* the rotation's adjoint is the rotation by -angle */
    if (RL_NEEDS_GRAD(x)) rl_grad_accumulate(ctx, x, rl_rope(ctx, dy, cs, rl_neg(ctx, sn)));
    if (!RL_NEEDS_GRAD(cs) && !RL_NEEDS_GRAD(sn)) return;
    /* dcos = sum over heads of dy1 x1 + dy2 x2, dsin = sum of dy2 x1 - dy1 x2
     * (a model's angles are constants; recipes and the checks may not be) */
    const int64_t h = x->shape[3] / 2;
    rl_tensor *x1 = rl_slice(ctx, x, 3, 0, h), *x2 = rl_slice(ctx, x, 3, h, 2 * h);
    rl_tensor *d1 = rl_slice(ctx, dy, 3, 0, h), *d2 = rl_slice(ctx, dy, 3, h, 2 * h);
    if (RL_NEEDS_GRAD(cs))
        rl_grad_accumulate(ctx, cs, rl_sum(ctx, rl_add(ctx, rl_mul(ctx, d1, x1), rl_mul(ctx, d2, x2)), 2, 0));
    if (RL_NEEDS_GRAD(sn))
        rl_grad_accumulate(ctx, sn, rl_sum(ctx, rl_sub(ctx, rl_mul(ctx, d2, x1), rl_mul(ctx, d1, x2)), 2, 0));
}

void rl_grad_cross_entropy(rl_ctx *ctx, const rl_node *n, rl_tensor *dloss) {
    rl_tensor *logits = n->in[0], *targets = n->in[1];
    if (RL_NEEDS_GRAD(logits))
        rl_grad_accumulate(ctx, logits,
                           rl_cross_entropy_grad(ctx, logits, targets, n->saved[0], dloss));
}

void rl_grad_attention(rl_ctx *ctx, const rl_node *n, rl_tensor *dout) {
    rl_tensor *q = n->in[0], *k = n->in[1], *v = n->in[2];
    /* one fused kernel gives dq, dk, dv packed on axis 0; slice out each */
    rl_tensor *g = rl_attention_grad(ctx, q, k, v, n->out, n->saved[0], dout, n->attrs.f[0]);
    if (!g) return;
    const int64_t nq = q->shape[0] * q->shape[1], nkv = k->shape[0] * k->shape[1];
    if (RL_NEEDS_GRAD(q))
        rl_grad_accumulate(ctx, q, rl_reshape(ctx, rl_slice(ctx, g, 0, 0, nq), 4, q->shape));
    if (RL_NEEDS_GRAD(k))
        rl_grad_accumulate(ctx, k, rl_reshape(ctx, rl_slice(ctx, g, 0, nq, nq + nkv), 4, k->shape));
    if (RL_NEEDS_GRAD(v))
        rl_grad_accumulate(ctx, v, rl_reshape(ctx, rl_slice(ctx, g, 0, nq + nkv, nq + 2 * nkv), 4, v->shape));
}

void rl_grad_attention_qkv(rl_ctx *ctx, const rl_node *n, rl_tensor *dout) {
    rl_tensor *qkv = n->in[0];
    /* one fused kernel writes d(qkv) in qkv's packed layout: no slices */
    if (RL_NEEDS_GRAD(qkv))
        rl_grad_accumulate(ctx, qkv,
                           rl_attention_qkv_grad(ctx, qkv, n->out, n->saved[0], dout,
                                                 n->attrs.ints[0], n->attrs.f[0]));
}

RL_GRAD_MISSING(layernorm_grad)
RL_GRAD_MISSING(rmsnorm_grad)
RL_GRAD_MISSING(cross_entropy_grad)
RL_GRAD_MISSING(attention_grad)
RL_GRAD_MISSING(attention_qkv_grad)

/* ---- gradient-check cases --------------------------------------------------------------- */

static rl_tensor *gc_layernorm(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_layernorm(c, in[0], in[1], in[2], k->attrs.f[0]);
}
static rl_tensor *gc_cross_entropy(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    (void)k;
    return rl_cross_entropy(c, in[0], in[1]);
}
static rl_tensor *gc_attention(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_attention(c, in[0], in[1], in[2], k->attrs.f[0]);
}
/* The backward-only kernels are checked through their parents' backward (their
 * only user); the output is multiplied by one more input so the cotangent the
 * fused kernel receives is itself a varying function of an input. */
static rl_tensor *gc_layernorm_via_parent(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_mul(c, rl_layernorm(c, in[0], in[1], in[2], k->attrs.f[0]), in[3]);
}
static rl_tensor *gc_cross_entropy_via_parent(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    (void)k;
    return rl_mul(c, rl_cross_entropy(c, in[0], in[1]), in[2]);
}
static rl_tensor *gc_attention_via_parent(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_mul(c, rl_attention(c, in[0], in[1], in[2], k->attrs.f[0]), in[3]);
}

/* Ignores every third position (target -1), starting with the second. */
static void gc_prep_ignore(double **v, const rl_gc_case *c) {
    for (int64_t i = 1; i < rl_gc_numel(&c->in[1]); i += 3) v[1][i] = -1;
}

/* x in [-1, 1] (unit scale, so eps = 1e-5 is negligible and the finite
 * differences well conditioned), w around 1, b around 0. */
#define LN_IN(nd, C, ...) \
    RL_GC_F(-1, 1, nd, __VA_ARGS__), RL_GC_F(0.5, 1.5, 1, C), RL_GC_F(-0.5, 0.5, 1, C)

RL_GC_CASES(layernorm,
    {"[4,8]", 3, {LN_IN(2, 8, 4, 8)}, gc_layernorm, NULL, {.f = {1e-5, 0}}, 0},
    {"[2,3,5]", 3, {LN_IN(3, 5, 2, 3, 5)}, gc_layernorm, NULL, {.f = {1e-5, 0}}, 0},
    {"[2,2,3,4]", 3, {LN_IN(4, 4, 2, 2, 3, 4)}, gc_layernorm, NULL, {.f = {1e-5, 0}}, 0},
    {"[6] one row", 3, {LN_IN(1, 6, 6)}, gc_layernorm, NULL, {.f = {1e-5, 0}}, 0},
    /* a large eps makes eps's place in rstd matter to the gradient */
    {"[3,6] eps 0.1", 3, {LN_IN(2, 6, 3, 6)}, gc_layernorm, NULL, {.f = {0.1, 0}}, 0});
RL_GC_CASES(layernorm_grad,
    {"through layernorm [4,8]", 4, {LN_IN(2, 8, 4, 8), RL_GC_F(-1, 1, 2, 4, 8)},
     gc_layernorm_via_parent, NULL, {.f = {1e-5, 0}}, 0},
    {"through layernorm [2,3,5]", 4, {LN_IN(3, 5, 2, 3, 5), RL_GC_F(-1, 1, 3, 2, 3, 5)},
     gc_layernorm_via_parent, NULL, {.f = {1e-5, 0}}, 0});

static rl_tensor *gc_rmsnorm(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_rmsnorm(c, in[0], in[1], k->attrs.f[0]);
}
static rl_tensor *gc_rmsnorm_via_parent(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_mul(c, rl_rmsnorm(c, in[0], in[1], k->attrs.f[0]), in[2]);
}
/* x in [-1, 1], w around 1 */
#define RMS_IN(nd, C, ...) RL_GC_F(-1, 1, nd, __VA_ARGS__), RL_GC_F(0.5, 1.5, 1, C)

RL_GC_CASES(rmsnorm,
    {"[4,8]", 2, {RMS_IN(2, 8, 4, 8)}, gc_rmsnorm, NULL, {.f = {1e-6, 0}}, 0},
    {"[2,3,5]", 2, {RMS_IN(3, 5, 2, 3, 5)}, gc_rmsnorm, NULL, {.f = {1e-6, 0}}, 0},
    {"[2,2,3,4]", 2, {RMS_IN(4, 4, 2, 2, 3, 4)}, gc_rmsnorm, NULL, {.f = {1e-5, 0}}, 0},
    {"[6] one row", 2, {RMS_IN(1, 6, 6)}, gc_rmsnorm, NULL, {.f = {1e-6, 0}}, 0},
    /* a large eps makes eps's place in rstd matter to the gradient */
    {"[3,6] eps 0.1", 2, {RMS_IN(2, 6, 3, 6)}, gc_rmsnorm, NULL, {.f = {0.1, 0}}, 0});
RL_GC_CASES(rmsnorm_grad,
    {"through rmsnorm [4,8]", 3, {RMS_IN(2, 8, 4, 8), RL_GC_F(-1, 1, 2, 4, 8)}, gc_rmsnorm_via_parent,
     NULL, {.f = {1e-6, 0}}, 0},
    {"through rmsnorm [2,3,5] eps 0.1", 3, {RMS_IN(3, 5, 2, 3, 5), RL_GC_F(-1, 1, 3, 2, 3, 5)},
     gc_rmsnorm_via_parent, NULL, {.f = {0.1, 0}}, 0});

/* rope: x [B, T, H, D], cos and sin [B, T, D/2] (any values: the op is
 * bilinear in x and (cos, sin), so the check needs no real angles) */
static rl_tensor *gc_rope(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    (void)k;
    return rl_rope(c, in[0], in[1], in[2]);
}
/* the backward's rope(dy, cos, -sin) and the angle sums, through a varying cotangent */
static rl_tensor *gc_rope_via_cotangent(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    (void)k;
    return rl_mul(c, rl_rope(c, in[0], in[1], in[2]), in[3]);
}
#define ROPE_IN(B, T, H, D) \
    RL_GC_F(-1, 1, 4, B, T, H, D), RL_GC_F(-1, 1, 3, B, T, (D) / 2), RL_GC_F(-1, 1, 3, B, T, (D) / 2)

RL_GC_CASES(rope,
    {"[1,3,1,4]", 3, {ROPE_IN(1, 3, 1, 4)}, gc_rope, NULL, {0}, 0},
    {"[2,4,3,6]", 3, {ROPE_IN(2, 4, 3, 6)}, gc_rope, NULL, {0}, 0},
    {"[1,5,2,2] D = 2", 3, {ROPE_IN(1, 5, 2, 2)}, gc_rope, NULL, {0}, 0},
    {"[2,3,2,8] times a cotangent", 4, {ROPE_IN(2, 3, 2, 8), RL_GC_F(-1, 1, 4, 2, 3, 2, 8)},
     gc_rope_via_cotangent, NULL, {0}, 0, 1});

RL_GC_CASES(cross_entropy,
    {"[6,5], 2 ignored", 2, {RL_GC_F(-2, 2, 2, 6, 5), RL_GC_I(0, 5, 1, 6)}, gc_cross_entropy,
     gc_prep_ignore, {0}, 0},
    {"[2,3,7], 2 ignored", 2, {RL_GC_F(-2, 2, 3, 2, 3, 7), RL_GC_I(0, 7, 2, 2, 3)},
     gc_cross_entropy, gc_prep_ignore, {0}, 0},
    {"[7] one position", 2, {RL_GC_F(-2, 2, 1, 7), RL_GC_I(0, 7, 0, 0)}, gc_cross_entropy, NULL,
     {0}, 0},
    /* large logits: exp would overflow without the max shift (f64 up to 709) */
    {"[4,6] logits in [-800, 800]", 2, {RL_GC_F(-800, 800, 2, 4, 6), RL_GC_I(0, 6, 1, 4)},
     gc_cross_entropy, NULL, {0}, 0});
RL_GC_CASES(cross_entropy_grad,
    {"through cross_entropy [6,5]", 3,
     {RL_GC_F(-2, 2, 2, 6, 5), RL_GC_I(0, 5, 1, 6), RL_GC_F(-1, 1, 1, 6)},
     gc_cross_entropy_via_parent, gc_prep_ignore, {0}, 0},
    {"through cross_entropy [2,3,7]", 3,
     {RL_GC_F(-2, 2, 3, 2, 3, 7), RL_GC_I(0, 7, 2, 2, 3), RL_GC_F(-1, 1, 2, 2, 3)},
     gc_cross_entropy_via_parent, gc_prep_ignore, {0}, 0});

#define ATT_IN(B, H, T, D) \
    RL_GC_F(-1, 1, 4, B, H, T, D), RL_GC_F(-1, 1, 4, B, H, T, D), RL_GC_F(-1, 1, 4, B, H, T, D)
/* grouped-query: q with H heads, k and v with Hkv */
#define GQA_IN(B, H, HKV, T, D) \
    RL_GC_F(-1, 1, 4, B, H, T, D), RL_GC_F(-1, 1, 4, B, HKV, T, D), RL_GC_F(-1, 1, 4, B, HKV, T, D)

RL_GC_CASES(attention,
    {"[1,1,4,3]", 3, {ATT_IN(1, 1, 4, 3)}, gc_attention, NULL, {0}, 0},
    {"[2,2,5,4]", 3, {ATT_IN(2, 2, 5, 4)}, gc_attention, NULL, {0}, 0},
    {"[1,3,7,8]", 3, {ATT_IN(1, 3, 7, 8)}, gc_attention, NULL, {0}, 0},
    {"[2,1,6,4] scale 0.8", 3, {ATT_IN(2, 1, 6, 4)}, gc_attention, NULL, {.f = {0.8, 0}}, 0},
    /* T spans five row blocks of the CPU kernel (4 x 64, then 4) */
    {"[1,1,260,3] row blocks", 3, {ATT_IN(1, 1, 260, 3)}, gc_attention, NULL, {0}, 0},
    {"GQA [2,4,5,3], 2 kv heads", 3, {GQA_IN(2, 4, 2, 5, 3)}, gc_attention, NULL, {0}, 0},
    {"GQA [1,6,4,4], 1 kv head (multi-query)", 3, {GQA_IN(1, 6, 1, 4, 4)}, gc_attention, NULL, {0}, 0},
    {"GQA [1,4,70,2], 2 kv heads, row blocks", 3, {GQA_IN(1, 4, 2, 70, 2)}, gc_attention, NULL, {0}, 0});
RL_GC_CASES(attention_grad,
    {"through attention [2,2,5,4]", 4, {ATT_IN(2, 2, 5, 4), RL_GC_F(-1, 1, 4, 2, 2, 5, 4)},
     gc_attention_via_parent, NULL, {0}, 0},
    {"through attention [1,2,130,4] scale 0.3", 4,
     {ATT_IN(1, 2, 130, 4), RL_GC_F(-1, 1, 4, 1, 2, 130, 4)}, gc_attention_via_parent, NULL,
     {.f = {0.3, 0}}, 0},
    {"through GQA attention [2,6,5,4], 3 kv heads", 4,
     {GQA_IN(2, 6, 3, 5, 4), RL_GC_F(-1, 1, 4, 2, 6, 5, 4)}, gc_attention_via_parent, NULL, {0}, 0});

/* attention_qkv: qkv [B, T, 3C]; attrs.ints[0] = n_head, f[0] = scale */
static rl_tensor *gc_attention_qkv(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_attention_qkv(c, in[0], k->attrs.ints[0], k->attrs.f[0]);
}
static rl_tensor *gc_attention_qkv_via_parent(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_mul(c, rl_attention_qkv(c, in[0], k->attrs.ints[0], k->attrs.f[0]), in[1]);
}

RL_GC_CASES(attention_qkv,
    {"[1,4,3*6] 2 heads", 1, {RL_GC_F(-1, 1, 3, 1, 4, 18)}, gc_attention_qkv, NULL, {.ints = {2}}, 0},
    {"[2,5,3*8] 2 heads", 1, {RL_GC_F(-1, 1, 3, 2, 5, 24)}, gc_attention_qkv, NULL, {.ints = {2}}, 0},
    {"[2,7,3*6] 3 heads scale 0.7", 1, {RL_GC_F(-1, 1, 3, 2, 7, 18)}, gc_attention_qkv, NULL,
     {.ints = {3}, .f = {0.7, 0}}, 0},
    {"[1,6,3*4] 1 head", 1, {RL_GC_F(-1, 1, 3, 1, 6, 12)}, gc_attention_qkv, NULL, {.ints = {1}}, 0},
    /* T spans five row blocks of the CPU kernel (4 x 64, then 4) */
    {"[1,260,3*4] 2 heads, row blocks", 1, {RL_GC_F(-1, 1, 3, 1, 260, 12)}, gc_attention_qkv, NULL,
     {.ints = {2}}, 0});
RL_GC_CASES(attention_qkv_grad,
    {"through attention_qkv [2,5,3*8]", 2, {RL_GC_F(-1, 1, 3, 2, 5, 24), RL_GC_F(-1, 1, 3, 2, 5, 8)},
     gc_attention_qkv_via_parent, NULL, {.ints = {2}}, 0},
    {"through attention_qkv [1,130,3*8] scale 0.3", 2,
     {RL_GC_F(-1, 1, 3, 1, 130, 24), RL_GC_F(-1, 1, 3, 1, 130, 8)}, gc_attention_qkv_via_parent,
     NULL, {.ints = {2}, .f = {0.3, 0}}, 0});
