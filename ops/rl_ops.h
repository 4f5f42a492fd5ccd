/* ops/rl_ops.h - the op layer over the engine: the op table (an enum and
 * metadata generated from ops/ops.def), the tape's entry point (rl_op_run)
 * and backward, the backend registry (rl_ctx_new), and the op front ends
 * (shape and dtype checks, then rl_op_run): one function per row of
 * ops/ops.def, plus a few conveniences written as compositions of those rows.
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

/* The op table as an enum (ops/ops.def). */
typedef enum {
#define OP(e, name, ...) RL_OP_##e,
#include "ops.def"
#undef OP
    RL_OP_COUNT
} rl_op;

/* Op flags (column 5 of ops/ops.def). */
enum {
    OPF_BROADCAST     = 1u << 0, /* inputs broadcast NumPy-style */
    OPF_NOGRAD        = 1u << 1, /* output never requires a gradient */
    OPF_BACKWARD_ONLY = 1u << 2, /* used by backward rules; checked through its parent */
    /* A view (reshape): the output aliases its single input's data instead of
     * getting its own, and no kernel runs; rl_op_run gives it a header of its
     * own (shape, node, grad) in the current arena. This is safe because
     * arena tensors are never written by the engine after the kernel that
     * made them. A view of a persistent tensor (a parameter) sees later
     * in-place writes to it, optimizer updates included, as PyTorch views do;
     * rl_tensor_write/set/fill on either side of a view change both. The view
     * lives until the next rl_ctx_reset like any arena tensor. */
    OPF_VIEW          = 1u << 3,
    /* The recipe checker folds a call whose inputs are all numbers by running
     * the op on 0-d f64 tensors (elementwise ops). */
    OPF_FOLD          = 1u << 4,
};

typedef struct rl_op_info {
    const char *name;    /* as in recipes: "logsigmoid" */
    const char *symbol;  /* for graph labels: "logσ" */
    int arity;           /* -1: variadic */
    unsigned flags;
} rl_op_info;

extern const rl_op_info rl_op_table[RL_OP_COUNT];
/* Op id by name, or -1. */
int rl_op_find(const char *name);

/* ---- recipe signatures and calls by id (ops/op_call.c) ------------------- */

/* The signature column of ops/ops.def, parsed (once, on first use). */
#define RL_OP_MAX_IN 8
#define RL_OP_MAX_ATTRS 4
typedef enum { RL_ATTR_INT, RL_ATTR_NUMBER, RL_ATTR_BOOL, RL_ATTR_AXIS, RL_ATTR_INTS } rl_attr_type;
/* Where an attribute lands in rl_attrs. */
typedef enum {
    RL_AF_AXIS, RL_AF_KEEPDIM, RL_AF_TRANS_A, RL_AF_TRANS_B, RL_AF_F0, RL_AF_F1, RL_AF_I0, RL_AF_I1, RL_AF_INTS
} rl_attr_field;

typedef struct rl_op_attr_sig {
    char name[24];
    rl_attr_type type;
    rl_attr_field field;
    int required;
    double def;              /* RL_AXIS_ALL for `= all` */
    char def_text[24];       /* the default as written: "all", "false", "1e-5" */
} rl_op_attr_sig;

typedef struct rl_op_sig {
    int n_in;                /* variadic: the one input type, repeated */
    int variadic;
    char in_type[RL_OP_MAX_IN]; /* 'F' f32, 'I' i32, 'A' tensor, 'N' f32|i32 */
    char in_name[RL_OP_MAX_IN][24];
    int result_like;         /* -1: the result is f32; else the input whose dtype it has */
    int n_attr;
    rl_op_attr_sig attr[RL_OP_MAX_ATTRS];
    char text[200];          /* "sum(x, axis = all, keepdim = false)" */
} rl_op_sig;

/* The op's signature, or NULL when recipes cannot call it (no signature,
 * backward-only). A malformed row aborts with its text: a build error that
 * every test run shows. */
const rl_op_sig *rl_op_signature(int op);
/* Stores / reads an attribute value in its field (lists: rl_attrs.ints). */
void rl_attrs_set(rl_attrs *at, rl_attr_field field, double value);
double rl_attrs_get(const rl_attrs *at, rl_attr_field field);
/* Runs op on inputs and attributes through its call column: the C front end
 * with the arguments the signature describes. Ops without a call fail. */
rl_tensor *rl_op_call(rl_ctx *ctx, int op, int n_in, rl_tensor *const *in, const rl_attrs *at);

/* ---- backends ----------------------------------------------------------- */

/* Makes a backend, or returns NULL with the reason in err. */
typedef rl_backend *(*rl_backend_create_fn)(char *err, size_t n);
/* Adds a backend to the registry (a later registration of a name replaces
 * the earlier one). "cpu" is always registered. */
rl_status rl_backend_register(const char *name, rl_backend_create_fn create);
/* Registered backends, in registration order. */
int rl_backend_count(void);
const char *rl_backend_name_at(int i);
/* Creates a context on the backend registered as `name` ("cpu" when NULL).
 * Returns NULL and prints why (an unknown name lists the registered ones)
 * when the backend cannot be made. */
rl_ctx *rl_ctx_new(const char *backend_name);

/* ---- the tape (ops/tape.c) ------------------------------------------------ */

/* Every op call goes through here: checks that inputs are live, allocates the
 * output (and `n_saved` saved tensors of the given shapes) from the arena,
 * runs the backend kernel, and records a tape node when gradients are on and
 * any input requires one (unless the op is OPF_NOGRAD). Returns the output or
 * NULL with the context's error set. */
typedef struct rl_saved_spec {
    rl_dtype dtype;
    int ndim;
    int64_t shape[RL_MAX_DIMS];
} rl_saved_spec;

rl_tensor *rl_op_run(rl_ctx *ctx, rl_op op, int n_in, rl_tensor *const *in,
                     const rl_attrs *attrs, rl_dtype out_dtype, int out_ndim,
                     const int64_t *out_shape, int n_saved, const rl_saved_spec *saved);

/* Backward rule: given the node and the gradient of its output, adds the
 * gradients of its inputs with rl_grad_accumulate. Written with ops. */
typedef void (*rl_grad_fn)(rl_ctx *ctx, const rl_node *n, rl_tensor *dout);
extern const rl_grad_fn rl_op_grad[RL_OP_COUNT];
/* Adds g into t's gradient, summing broadcast axes down to t's shape. No-op
 * when t does not require a gradient. */
void rl_grad_accumulate(rl_ctx *ctx, rl_tensor *t, rl_tensor *g);

/* Walks the tape in reverse from a scalar loss (numel 1) and accumulates
 * gradients into every tensor that requires one: parameters' persistent .grad
 * (added to what is there) and arena tensors' .grad (fresh each step). */
rl_status rl_backward(rl_ctx *ctx, rl_tensor *loss);
/* As rl_backward, seeding the gradient of `out` with `seed` (same shape). */
rl_status rl_backward_seeded(rl_ctx *ctx, rl_tensor *out, rl_tensor *seed);

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
/* log(1 + exp(x)), without overflow: max(x, 0) + log1p(exp(-|x|)). */
rl_tensor *rl_softplus(rl_ctx *ctx, rl_tensor *x);
rl_tensor *rl_relu(rl_ctx *ctx, rl_tensor *x);
/* GPT-2's tanh approximation: 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))). */
rl_tensor *rl_gelu(rl_ctx *ctx, rl_tensor *x);
/* SiLU (swish): x * sigmoid(x), the activation of Llama's gated MLP. */
rl_tensor *rl_silu(rl_ctx *ctx, rl_tensor *x);
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
/* The same with the permutation as a list of n entries (n must be x's ndim). */
rl_tensor *rl_permute_list(rl_ctx *ctx, rl_tensor *x, int n, const int64_t *perm);
/* Swaps two axes (a permute). */
rl_tensor *rl_transpose(rl_ctx *ctx, rl_tensor *x, int axis0, int axis1);
/* x[..., start:end, ...] along axis. */
rl_tensor *rl_slice(rl_ctx *ctx, rl_tensor *x, int axis, int64_t start, int64_t end);
rl_tensor *rl_concat(rl_ctx *ctx, int n, rl_tensor *const *xs, int axis);
/* n tensors of one dtype and shape along a new axis (in [-(ndim + 1), ndim]):
 * [B] x 3 with axis -1 gives [B, 3]; scalars give [n]. */
rl_tensor *rl_stack(rl_ctx *ctx, int n, rl_tensor *const *xs, int axis);
rl_tensor *rl_broadcast_to(rl_ctx *ctx, rl_tensor *x, int ndim, const int64_t *shape);
/* take_along_dim: out[..i..] = x[.. index[..i..] along axis ..]; index is i32
 * with x's ndim and x's sizes on every other axis. */
rl_tensor *rl_gather(rl_ctx *ctx, rl_tensor *x, rl_tensor *index, int axis);
/* table [V, C], ids i32 [...] -> [..., C]. */
rl_tensor *rl_embedding(rl_ctx *ctx, rl_tensor *table, rl_tensor *ids);

/* ---- fused primitives ---------------------------------------------------- */
/* Over the last axis: (x - mean) / sqrt(var + eps) * w + b; w, b are [C]. */
rl_tensor *rl_layernorm(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, rl_tensor *b, double eps);
/* Over the last axis: x / sqrt(mean(x^2) + eps) * w; w is [C] (Llama's
 * RMSNorm; the statistic is accumulated in double for f32 inputs). */
rl_tensor *rl_rmsnorm(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, double eps);
/* Rotary position embedding in the Hugging Face convention (rotate_half:
 * each head's first half pairs with its second half, not interleaved):
 * x [B, T, H, D], cos and sin [B, T, D/2] (one angle per row, position and
 * frequency, shared by the heads); with x1, x2 the halves of a head,
 *   y1 = x1 cos - x2 sin,  y2 = x2 cos + x1 sin.
 * The model computes cos and sin from each row's positions and its
 * inv_freq (rope_theta, rope_scaling), so the op knows no convention. */
rl_tensor *rl_rope(rl_ctx *ctx, rl_tensor *x, rl_tensor *cos, rl_tensor *sin);
/* logits [..., V], targets i32 [...] -> per-position loss [...] =
 * logsumexp(logits) - logits[target]; positions with target < 0 give 0. */
rl_tensor *rl_cross_entropy(rl_ctx *ctx, rl_tensor *logits, rl_tensor *targets);
/* Causal self-attention softmax(q k^T * scale + causal mask) v; q is
 * [B, H, T, D], k and v [B, Hkv, T, D] with Hkv dividing H (grouped-query
 * attention: kv head j serves the H/Hkv consecutive query heads j*H/Hkv ..,
 * as Hugging Face's repeat_kv; Hkv = H is multi-head attention); the result
 * is q's shape. scale <= 0 means 1/sqrt(D). */
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
/* dx of rmsnorm given x, w, rstd [rows] and dy. */
rl_tensor *rl_rmsnorm_grad(rl_ctx *ctx, rl_tensor *x, rl_tensor *w, rl_tensor *rstd, rl_tensor *dy);
/* dlogits = (softmax(logits) - onehot(target)) * dloss, 0 on ignored rows. */
rl_tensor *rl_cross_entropy_grad(rl_ctx *ctx, rl_tensor *logits, rl_tensor *targets,
                                 rl_tensor *lse, rl_tensor *dloss);
/* d(qkv) [B, T, 3C] of rl_attention_qkv, in qkv's layout. */
rl_tensor *rl_attention_qkv_grad(rl_ctx *ctx, rl_tensor *qkv, rl_tensor *out, rl_tensor *lse,
                                 rl_tensor *dout, int64_t n_head, double scale);
/* Packed [B*H + 2*B*Hkv, T, D]: dq [B, H], dk and dv [B, Hkv] stacked along
 * axis 0 (each block in its tensor's layout). */
rl_tensor *rl_attention_grad(rl_ctx *ctx, rl_tensor *q, rl_tensor *k, rl_tensor *v,
                             rl_tensor *out, rl_tensor *lse, rl_tensor *dout, double scale);

/* ---- compositions --------------------------------------------------------- */
/* Sums g down to the given shape (the adjoint of broadcasting). */
rl_tensor *rl_sum_to(rl_ctx *ctx, rl_tensor *g, int ndim, const int64_t *shape);
/* a scalar constant in x's dtype */
rl_tensor *rl_scalar_like(rl_ctx *ctx, const rl_tensor *x, double v);

#ifdef __cplusplus
}
#endif
#endif
