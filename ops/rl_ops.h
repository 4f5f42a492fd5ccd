/* ops/rl_ops.h - the op front ends (shape and dtype checks, then rl_op_run)
 * and the op table's metadata. One function per row of ops/ops.def, plus a few
 * conveniences written as compositions of those rows.
 *
 * Conventions: inputs may be NULL (an earlier error): the result is then NULL.
 * Float ops accept f32 and f64; both inputs of a binary op must share a dtype.
 * Axes may be negative (counted from the end).
 */
#ifndef RL_OPS_H
#define RL_OPS_H

#include "rl_internal.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Op flags (column 5 of ops/ops.def). */
enum {
    OPF_BROADCAST     = 1u << 0, /* inputs broadcast NumPy-style */
    OPF_NOGRAD        = 1u << 1, /* output never requires a gradient */
    OPF_BACKWARD_ONLY = 1u << 2, /* used by backward rules; checked through its parent */
};

typedef struct rl_op_info {
    const char *name;    /* as in recipes: "logsigmoid" */
    const char *symbol;  /* for graph labels: "logσ" */
    int arity;           /* -1: variadic */
    unsigned flags;
} rl_op_info;

extern const rl_op_info rl_op_table[RL_OP_COUNT];
extern const rl_grad_fn rl_op_grad[RL_OP_COUNT];
/* Op id by name, or -1. */
int rl_op_find(const char *name);

/* ---- elementwise binary (broadcasting) --------------------------------- */
rl_tensor *rl_add(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
rl_tensor *rl_sub(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
rl_tensor *rl_mul(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
rl_tensor *rl_div(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
rl_tensor *rl_minimum(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
rl_tensor *rl_maximum(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
/* Comparisons give 0/1 in the inputs' dtype and carry no gradient. */
rl_tensor *rl_gt(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
rl_tensor *rl_ge(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
rl_tensor *rl_lt(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
rl_tensor *rl_le(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
rl_tensor *rl_eq(rl_ctx *ctx, rl_tensor *a, rl_tensor *b);
/* cond != 0 ? a : b; cond may be any dtype; a and b share a float dtype. */
rl_tensor *rl_where(rl_ctx *ctx, rl_tensor *cond, rl_tensor *a, rl_tensor *b);

/* ---- elementwise unary ------------------------------------------------- */
rl_tensor *rl_neg(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_exp(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_log(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_log1p(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_sqrt(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_square(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_abs(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_tanh(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_sigmoid(rl_ctx *ctx, rl_tensor *x);
/* log(sigmoid(x)) = min(x,0) - log1p(exp(-|x|)), never overflowing. */
rl_tensor *rl_logsigmoid(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_relu(rl_ctx *ctx, rl_tensor *x);
/* GPT-2's tanh approximation: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))). */
rl_tensor *rl_gelu(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_clamp(rl_ctx *ctx, rl_tensor *x, double lo, double hi);
rl_tensor *rl_pow(rl_ctx *ctx, rl_tensor *x, double p);
/* Identity forward; blocks gradients. */
rl_tensor *rl_stop_gradient(rl_ctx *ctx, rl_tensor *x);

/* ---- reductions ---------------------------------------------------------- */
/* axis in [-ndim, ndim) or RL_AXIS_ALL; keepdim keeps the reduced axis as 1. */
rl_tensor *rl_sum(rl_ctx *ctx, rl_tensor *x, int axis, int keepdim);
rl_tensor *rl_mean(rl_ctx *ctx, rl_tensor *x, int axis, int keepdim);
rl_tensor *rl_max(rl_ctx *ctx, rl_tensor *x, int axis, int keepdim);
rl_tensor *rl_logsumexp(rl_ctx *ctx, rl_tensor *x, int axis, int keepdim);
/* Over the last axis. */
rl_tensor *rl_softmax(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_log_softmax(rl_ctx *ctx, rl_tensor *x);

/* ---- linear algebra ------------------------------------------------------ */
/* a [..., M, K] @ b [..., K, N] -> [..., M, N] (trans_a/trans_b read a/b as
 * transposed in their last two axes). Batch axes must match, or b may be 2-D
 * (shared across the batch). */
rl_tensor *rl_matmul(rl_ctx *ctx, rl_tensor *a, rl_tensor *b, int trans_a, int trans_b);

/* ---- movement ------------------------------------------------------------ */
rl_tensor *rl_reshape(rl_ctx *ctx, rl_tensor *x, int ndim, const int64_t *shape);
rl_tensor *rl_permute(rl_ctx *ctx, rl_tensor *x, const int *perm);
/* Swaps two axes (a permute). */
rl_tensor *rl_transpose(rl_ctx *ctx, rl_tensor *x, int axis0, int axis1);
/* x[..., start:end, ...] along axis. */
rl_tensor *rl_slice(rl_ctx *ctx, rl_tensor *x, int axis, int64_t start, int64_t end);
rl_tensor *rl_concat(rl_ctx *ctx, int n, rl_tensor *const *xs, int axis);
rl_tensor *rl_broadcast_to(rl_ctx *ctx, rl_tensor *x, int ndim, const int64_t *shape);
/* take_along_dim: out[..i..] = x[.. index[..i..] along axis ..]; index is i32
 * with x's ndim and x's sizes on every other axis. */
rl_tensor *rl_gather(rl_ctx *ctx, rl_tensor *x, rl_tensor *index, int axis);
/* table [V, C], ids i32 [...] -> [..., C]. */
rl_tensor *rl_embedding(rl_ctx *ctx, rl_tensor *table, rl_tensor *ids);

/* ---- fused primitives ---------------------------------------------------- */
/* Over the last axis: (x - mean) / sqrt(var + eps) * w + b; w, b are [C]. */
rl_tensor *rl_layernorm(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, rl_tensor *b, double eps);
/* logits [..., V], targets i32 [...] -> per-position loss [...] =
 * logsumexp(logits) - logits[target]; positions with target < 0 give 0. */
rl_tensor *rl_cross_entropy(rl_ctx *ctx, rl_tensor *logits, rl_tensor *targets);
/* Causal self-attention softmax(q k^T * scale + causal mask) v; q, k, v are
 * [B, H, T, D]; scale <= 0 means 1/sqrt(D). */
rl_tensor *rl_attention(rl_ctx *ctx, rl_tensor *q, rl_tensor *k, rl_tensor *v, double scale);
/* The same on GPT-2's packed projection: qkv [B, T, 3C] holds q, k, v as
 * three C-wide column blocks, each split into n_head heads of D = C / n_head
 * consecutive columns (HF c_attn / _split_heads); the result is [B, T, C]
 * with the heads merged back (HF _merge_heads). Equal to slicing, permuting
 * and calling rl_attention, without any of the copies. */
rl_tensor *rl_attention_qkv(rl_ctx *ctx, rl_tensor *qkv, int64_t n_head, double scale);

/* ---- backward-only kernels (called by backward rules) --------------------- */
rl_tensor *rl_gelu_grad(rl_ctx *ctx, rl_tensor *x, rl_tensor *dy);
/* zeros of `shape`, then out[.. index[..i..] along axis ..] += src[..i..]. */
rl_tensor *rl_scatter_add(rl_ctx *ctx, rl_tensor *index, rl_tensor *src, int axis, int ndim,
                          const int64_t *shape);
/* ids i32 [...], dy [..., C] -> dtable [V, C]. */
rl_tensor *rl_embedding_grad(rl_ctx *ctx, rl_tensor *ids, rl_tensor *dy, int64_t vocab);
/* dx of layernorm given x, w, stats [rows, 2] (mean, rstd) and dy. */
rl_tensor *rl_layernorm_grad(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, rl_tensor *stats,
                             rl_tensor *dy);
/* dlogits = (softmax(logits) - onehot(target)) * dloss, 0 on ignored rows. */
rl_tensor *rl_cross_entropy_grad(rl_ctx *ctx, rl_tensor *logits, rl_tensor *targets,
                                 rl_tensor *lse, rl_tensor *dloss);
/* d(qkv) [B, T, 3C] of rl_attention_qkv, in qkv's layout. */
rl_tensor *rl_attention_qkv_grad(rl_ctx *ctx, rl_tensor *qkv, rl_tensor *out, rl_tensor *lse,
                                 rl_tensor *dout, int64_t n_head, double scale);
/* Packed [3B, H, T, D]: dq, dk, dv stacked along axis 0. */
rl_tensor *rl_attention_grad(rl_ctx *ctx, rl_tensor *q, rl_tensor *k, rl_tensor *v,
                             rl_tensor *out, rl_tensor *lse, rl_tensor *dout, double scale);

/* ---- compositions --------------------------------------------------------- */
/* Sums g down to the given shape (the adjoint of broadcasting). */
rl_tensor *rl_sum_to(rl_ctx *ctx, rl_tensor *g, int ndim, const int64_t *shape);
/* sum(x * mask) / sum(mask) over all elements. */
rl_tensor *rl_masked_mean(rl_ctx *ctx, rl_tensor *x, rl_tensor *mask);
/* a scalar constant in x's dtype */
rl_tensor *rl_scalar_like(rl_ctx *ctx, const rl_tensor *x, double v);

#ifdef __cplusplus
}
#endif
#endif
