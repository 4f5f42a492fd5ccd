/* ops/movement.c - the movement ops (reshape, permute/transpose, slice,
 * concat, stack, broadcast_to, gather, embedding) and the backward-only kernels
 * their rules use (scatter_add, embedding_grad): front ends with shape
 * checks, backward rules written with ops, and gradient-check cases.
 * Kernels are in ops/cpu/movement.c.
 *
 * Every op makes a new contiguous tensor (copy semantics, no views), so an
 * output never aliases its input and in-place updates of one (an optimizer
 * step on a parameter) never show through the other.
 *
 * Pure movement ops (reshape, permute, slice, concat, broadcast_to) accept
 * any dtype, i32 included; gather and embedding need a float table and i32
 * indices.
 *
 * Index checks: on the CPU backend tensors live in host memory, so the front
 * ends of gather, scatter_add, embedding and embedding_grad read every index
 * and reject one out of range with a message (O(n) next to an O(n) op). On
 * other backends that read would be a device sync and is skipped; kernels
 * must then make an out-of-range index contribute zero (the CPU kernels do
 * the same, as a second line of defence) instead of touching memory outside
 * the tensor.
 */
#include "common.h"

#include <string.h>

/* "[2, 3, 4]" into buf; returns buf. */
static char *rl_shape_format(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* Checks that every element of the i32 tensor idx is in [0, hi) when the
 * data can be read cheaply (CPU backend: host memory). `what` describes the
 * valid range for the message. */
static bool rl_check_index_range(rl_ctx *ctx, const char *op, const rl_tensor *idx, int64_t hi,
                                 const char *what) {
    (void)ctx;
    const int32_t *p = rl_tensor_host_data(idx);
    if (!p) return true;
    for (int64_t i = 0; i < idx->numel; i++)
        if (p[i] < 0 || p[i] >= hi) {
            rl_ctx_fail(ctx, RL_ERR_ARG, "%s: index element %lld is %d; %s must be in [0, %lld)", op,
                        (long long)i, (int)p[i], what, (long long)hi);
            return false;
        }
    return true;
}

/* ---- reshape ---------------------------------------------------------------- */

/* One entry of shape may be -1: it is inferred so the element counts match
 * (as in NumPy). Every other entry must be >= 0. */
rl_tensor *rl_reshape(rl_ctx *ctx, rl_tensor *x, int ndim, const int64_t *shape) {
    if (!rl_check_input(ctx, "reshape", 0, x)) return NULL;
    if (ndim < 0 || ndim > RL_MAX_DIMS || (ndim > 0 && !shape)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "reshape: %d dims requested; tensors have 0 to %d dims", ndim,
                    RL_MAX_DIMS);
        return NULL;
    }
    char dx[96], ds[96];
    rl_tensor_describe(x, dx, sizeof dx);
    rl_shape_format(ndim, shape, ds, sizeof ds);
    int64_t out[RL_MAX_DIMS];
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < ndim; i++) {
        out[i] = shape[i];
        if (shape[i] == -1 && infer < 0) {
            infer = i;
        } else if (shape[i] < 0) {
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "reshape: target shape %s is invalid: sizes must be >= 0, and at most one "
                        "may be -1 (inferred)", ds);
            return NULL;
        } else {
            known *= shape[i];
        }
    }
    if (infer >= 0) {
        if (known == 0 || x->numel % known != 0) {
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "reshape: cannot infer the -1 in %s for x %s (%lld elements): the other "
                        "sizes' product (%lld) must divide the element count",
                        ds, dx, (long long)x->numel, (long long)known);
            return NULL;
        }
        out[infer] = x->numel / known;
    }
    int64_t numel = rl_shape_numel(ndim, out);
    if (numel != x->numel) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "reshape: cannot reshape x %s (%lld elements) to %s (%lld elements); the "
                    "element counts must match",
                    dx, (long long)x->numel, ds, (long long)numel);
        return NULL;
    }
    rl_tensor *in[1] = {x};
    return rl_op_run(ctx, RL_OP_RESHAPE, 1, in, NULL, x->dtype, ndim, out, 0, NULL);
}

/* ---- permute / transpose ---------------------------------------------------------- */

/* perm has x->ndim entries (negative ones count from the end); output axis i
 * is input axis perm[i]. Attribute: ints[] = the normalised permutation. */
rl_tensor *rl_permute_list(rl_ctx *ctx, rl_tensor *x, int n, const int64_t *perm) {
    if (!rl_check_input(ctx, "permute", 0, x)) return NULL;
    if (n != x->ndim) {
        char dx[96];
        rl_ctx_fail(ctx, RL_ERR_ARG, "permute: perm has %d entries but x %s has %d dims", n,
                    rl_tensor_describe(x, dx, sizeof dx), x->ndim);
        return NULL;
    }
    int p[RL_MAX_DIMS];
    for (int i = 0; i < n; i++) p[i] = (int)perm[i];
    return rl_permute(ctx, x, p);
}

rl_tensor *rl_permute(rl_ctx *ctx, rl_tensor *x, const int *perm) {
    if (!rl_check_input(ctx, "permute", 0, x)) return NULL;
    int nd = x->ndim;
    rl_attrs at = {0};
    int64_t shape[RL_MAX_DIMS];
    bool seen[RL_MAX_DIMS] = {0};
    for (int i = 0; i < nd; i++) {
        int p = perm ? (perm[i] < 0 ? perm[i] + nd : perm[i]) : -1;
        if (p < 0 || p >= nd || seen[p]) {
            char dx[96], dp[64] = "(null)";
            size_t k = 0;
            for (int j = 0; perm && j < nd && k < sizeof dp; j++)
                k += (size_t)snprintf(dp + k, sizeof dp - k, j ? ", %d" : "(%d", perm[j]);
            if (perm && k < sizeof dp) snprintf(dp + k, sizeof dp - k, ")");
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "permute: %s is not a permutation of the %d axes of x %s; each axis in "
                        "[-%d, %d) must appear exactly once",
                        dp, nd, rl_tensor_describe(x, dx, sizeof dx), nd, nd);
            return NULL;
        }
        seen[p] = true;
        at.ints[i] = p;
        shape[i] = x->shape[p];
    }
    rl_tensor *in[1] = {x};
    return rl_op_run(ctx, RL_OP_PERMUTE, 1, in, &at, x->dtype, nd, shape, 0, NULL);
}

rl_tensor *rl_transpose(rl_ctx *ctx, rl_tensor *x, int axis0, int axis1) {
    if (!rl_check_input(ctx, "transpose", 0, x)) return NULL;
    int a0 = rl_norm_axis(ctx, "transpose", axis0, x->ndim);
    int a1 = a0 < 0 ? -1 : rl_norm_axis(ctx, "transpose", axis1, x->ndim);
    if (a1 < 0) return NULL;
    int perm[RL_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[a0] = a1;
    perm[a1] = a0;
    return rl_permute(ctx, x, perm);
}

/* ---- slice ------------------------------------------------------------------------- */

/* Python semantics: negative start/end count from the end, then both are
 * clamped to [0, size] and an end before the start gives an empty slice, so
 * x[-k:] style slices never fail. Attributes: axis, ints[0] = start,
 * ints[1] = end (normalised). */
rl_tensor *rl_slice(rl_ctx *ctx, rl_tensor *x, int axis, int64_t start, int64_t end) {
    if (!rl_check_input(ctx, "slice", 0, x)) return NULL;
    int ax = rl_norm_axis(ctx, "slice", axis, x->ndim);
    if (ax < 0) return NULL;
    int64_t D = x->shape[ax];
    if (start < 0) start += D;
    if (end < 0) end += D;
    start = start < 0 ? 0 : (start > D ? D : start);
    end = end < start ? start : (end > D ? D : end);
    rl_attrs at = {.axis = ax, .ints = {start, end}};
    int64_t shape[RL_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[ax] = end - start;
    rl_tensor *in[1] = {x};
    return rl_op_run(ctx, RL_OP_SLICE, 1, in, &at, x->dtype, x->ndim, shape, 0, NULL);
}

/* ---- concat ------------------------------------------------------------------------ */

/* Attribute: axis (normalised). */
/* The checks concat and stack share: at least one input, each a valid tensor. */
static bool rl_check_inputs(rl_ctx *ctx, const char *op, int n, rl_tensor *const *xs) {
    if (n < 1 || !xs) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: needs at least one input (got n = %d)", op, n);
        return false;
    }
    for (int i = 0; i < n; i++)
        if (!rl_check_input(ctx, op, i, xs[i])) return false;
    return true;
}

rl_tensor *rl_concat(rl_ctx *ctx, int n, rl_tensor *const *xs, int axis) {
    if (!rl_check_inputs(ctx, "concat", n, xs)) return NULL;
    const rl_tensor *x0 = xs[0];
    char d0[96], di[96];
    if (x0->ndim == 0) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "concat: input 0 is a scalar; reshape scalars to [1] first");
        return NULL;
    }
    int ax = rl_norm_axis(ctx, "concat", axis, x0->ndim);
    if (ax < 0) return NULL;
    int64_t shape[RL_MAX_DIMS];
    memcpy(shape, x0->shape, sizeof shape);
    shape[ax] = 0;
    for (int i = 0; i < n; i++) {
        const rl_tensor *x = xs[i];
        bool ok = x->dtype == x0->dtype && x->ndim == x0->ndim;
        for (int d = 0; ok && d < x->ndim; d++) ok = d == ax || x->shape[d] == x0->shape[d];
        if (!ok) {
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "concat: input %d is %s but input 0 is %s; all inputs must have the same "
                        "dtype and number of dims, and equal sizes on every axis but axis %d",
                        i, rl_tensor_describe(x, di, sizeof di), rl_tensor_describe(x0, d0, sizeof d0),
                        ax);
            return NULL;
        }
        shape[ax] += x->shape[ax];
    }
    rl_attrs at = {.axis = ax};
    return rl_op_run(ctx, RL_OP_CONCAT, n, xs, &at, x0->dtype, x0->ndim, shape, 0, NULL);
}

/* ---- stack ------------------------------------------------------------------------- */

/* Attribute: axis (normalised, of the output). */
rl_tensor *rl_stack(rl_ctx *ctx, int n, rl_tensor *const *xs, int axis) {
    if (!rl_check_inputs(ctx, "stack", n, xs)) return NULL;
    const rl_tensor *x0 = xs[0];
    char d0[96], di[96];
    if (x0->ndim >= RL_MAX_DIMS) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "stack: input 0 is %s; stacking adds an axis, and tensors have at most %d dims",
                    rl_tensor_describe(x0, d0, sizeof d0), RL_MAX_DIMS);
        return NULL;
    }
    int ax = rl_norm_axis(ctx, "stack", axis, x0->ndim + 1);
    if (ax < 0) return NULL;
    for (int i = 1; i < n; i++) {
        const rl_tensor *x = xs[i];
        if (x->dtype != x0->dtype || !rl_shape_equal(x->ndim, x->shape, x0->ndim, x0->shape)) {
            rl_ctx_fail(ctx, RL_ERR_ARG, "stack: input %d is %s but input 0 is %s; all inputs must have the same "
                                         "dtype and shape", i, rl_tensor_describe(x, di, sizeof di),
                        rl_tensor_describe(x0, d0, sizeof d0));
            return NULL;
        }
    }
    int64_t shape[RL_MAX_DIMS];
    for (int d = 0, k = 0; d <= x0->ndim; d++) shape[d] = d == ax ? n : x0->shape[k++];
    rl_attrs at = {.axis = ax};
    return rl_op_run(ctx, RL_OP_STACK, n, xs, &at, x0->dtype, x0->ndim + 1, shape, 0, NULL);
}

/* ---- broadcast_to ------------------------------------------------------------------- */

rl_tensor *rl_broadcast_to(rl_ctx *ctx, rl_tensor *x, int ndim, const int64_t *shape) {
    if (!rl_check_input(ctx, "broadcast_to", 0, x)) return NULL;
    char dx[96], ds[96];
    if (ndim < x->ndim || ndim > RL_MAX_DIMS || (ndim > 0 && !shape)) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "broadcast_to: cannot broadcast x %s to %d dims; the target needs between %d "
                    "and %d dims",
                    rl_tensor_describe(x, dx, sizeof dx), ndim, x->ndim, RL_MAX_DIMS);
        return NULL;
    }
    int pad = ndim - x->ndim;
    for (int i = 0; i < ndim; i++) {
        int64_t xd = i < pad ? 1 : x->shape[i - pad];
        if (shape[i] < 0 || (xd != shape[i] && xd != 1)) {
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "broadcast_to: cannot broadcast x %s to %s: aligned from the right, each "
                        "axis of x must equal the target's or be 1 (target axis %d is %lld, x has "
                        "%lld there)",
                        rl_tensor_describe(x, dx, sizeof dx), rl_shape_format(ndim, shape, ds, sizeof ds),
                        i, (long long)shape[i], (long long)xd);
            return NULL;
        }
    }
    rl_tensor *in[1] = {x};
    return rl_op_run(ctx, RL_OP_BROADCAST_TO, 1, in, NULL, x->dtype, ndim, shape, 0, NULL);
}

/* ---- gather / scatter_add ------------------------------------------------------------- */

/* Checks an index tensor against the shape it indexes: same number of dims
 * and equal sizes on every axis but `ax` (take_along_dim's rule). */
static bool rl_check_along(rl_ctx *ctx, const char *op, const rl_tensor *index, int ndim,
                           const int64_t *shape, int ax, const char *shape_name) {
    bool ok = index->ndim == ndim;
    for (int d = 0; ok && d < ndim; d++) ok = d == ax || index->shape[d] == shape[d];
    if (!ok) {
        char di[96], ds[96];
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: index is %s and %s is %s; they must have the same number of dims and "
                    "equal sizes on every axis but axis %d",
                    op, rl_tensor_describe(index, di, sizeof di), shape_name,
                    rl_shape_format(ndim, shape, ds, sizeof ds), ax);
    }
    return ok;
}

/* Attribute: axis (normalised). */
rl_tensor *rl_gather(rl_ctx *ctx, rl_tensor *x, rl_tensor *index, int axis) {
    if (!rl_check_input(ctx, "gather", 0, x) || !rl_check_input(ctx, "gather", 1, index)) return NULL;
    if (!rl_check_float(ctx, "gather", 0, x) || !rl_check_i32(ctx, "gather", 1, index)) return NULL;
    int ax = rl_norm_axis(ctx, "gather", axis, x->ndim);
    if (ax < 0 || !rl_check_along(ctx, "gather", index, x->ndim, x->shape, ax, "x")) return NULL;
    char what[64];
    snprintf(what, sizeof what, "indices along axis %d", ax);
    if (!rl_check_index_range(ctx, "gather", index, x->shape[ax], what)) return NULL;
    rl_attrs at = {.axis = ax};
    rl_tensor *in[2] = {x, index};
    return rl_op_run(ctx, RL_OP_GATHER, 2, in, &at, x->dtype, index->ndim, index->shape, 0, NULL);
}

/* Attribute: axis (normalised). */
rl_tensor *rl_scatter_add(rl_ctx *ctx, rl_tensor *index, rl_tensor *src, int axis, int ndim,
                          const int64_t *shape) {
    if (!rl_check_input(ctx, "scatter_add", 0, index) || !rl_check_input(ctx, "scatter_add", 1, src))
        return NULL;
    if (!rl_check_i32(ctx, "scatter_add", 0, index) || !rl_check_float(ctx, "scatter_add", 1, src))
        return NULL;
    if (!rl_shape_equal(index->ndim, index->shape, src->ndim, src->shape)) {
        char di[96], ds[96];
        rl_ctx_fail(ctx, RL_ERR_ARG, "scatter_add: index is %s and src is %s; they must have the same shape",
                    rl_tensor_describe(index, di, sizeof di), rl_tensor_describe(src, ds, sizeof ds));
        return NULL;
    }
    if (ndim < 0 || ndim > RL_MAX_DIMS || (ndim > 0 && !shape)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "scatter_add: %d dims requested; tensors have 0 to %d dims",
                    ndim, RL_MAX_DIMS);
        return NULL;
    }
    int ax = rl_norm_axis(ctx, "scatter_add", axis, ndim);
    if (ax < 0 || !rl_check_along(ctx, "scatter_add", index, ndim, shape, ax, "the output")) return NULL;
    char what[64];
    snprintf(what, sizeof what, "indices along axis %d", ax);
    if (!rl_check_index_range(ctx, "scatter_add", index, shape[ax], what)) return NULL;
    rl_attrs at = {.axis = ax};
    rl_tensor *in[2] = {index, src};
    return rl_op_run(ctx, RL_OP_SCATTER_ADD, 2, in, &at, src->dtype, ndim, shape, 0, NULL);
}

/* ---- embedding ------------------------------------------------------------------------ */

rl_tensor *rl_embedding(rl_ctx *ctx, rl_tensor *table, rl_tensor *ids) {
    if (!rl_check_input(ctx, "embedding", 0, table) || !rl_check_input(ctx, "embedding", 1, ids))
        return NULL;
    if (!rl_check_float(ctx, "embedding", 0, table) || !rl_check_i32(ctx, "embedding", 1, ids))
        return NULL;
    char dt[96], di[96];
    if (table->ndim != 2 || ids->ndim > RL_MAX_DIMS - 1) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "embedding: table is %s and ids are %s; the table must be [V, C] and ids have "
                    "at most %d dims",
                    rl_tensor_describe(table, dt, sizeof dt), rl_tensor_describe(ids, di, sizeof di),
                    RL_MAX_DIMS - 1);
        return NULL;
    }
    if (!rl_check_index_range(ctx, "embedding", ids, table->shape[0], "ids (rows of the table)"))
        return NULL;
    int64_t shape[RL_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof(int64_t) * (size_t)ids->ndim);
    shape[ids->ndim] = table->shape[1];
    rl_tensor *in[2] = {table, ids};
    return rl_op_run(ctx, RL_OP_EMBEDDING, 2, in, NULL, table->dtype, ids->ndim + 1, shape, 0, NULL);
}

/* Attribute: ints[0] = vocab (informational: the kernel reads n->out). */
rl_tensor *rl_embedding_grad(rl_ctx *ctx, rl_tensor *ids, rl_tensor *dy, int64_t vocab) {
    if (!rl_check_input(ctx, "embedding_grad", 0, ids) || !rl_check_input(ctx, "embedding_grad", 1, dy))
        return NULL;
    if (!rl_check_i32(ctx, "embedding_grad", 0, ids) || !rl_check_float(ctx, "embedding_grad", 1, dy))
        return NULL;
    bool ok = dy->ndim == ids->ndim + 1 && vocab >= 0;
    for (int d = 0; ok && d < ids->ndim; d++) ok = dy->shape[d] == ids->shape[d];
    if (!ok) {
        char di[96], dd[96];
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "embedding_grad: ids are %s, dy is %s and vocab is %lld; dy must be "
                    "[ids..., C] and vocab >= 0",
                    rl_tensor_describe(ids, di, sizeof di), rl_tensor_describe(dy, dd, sizeof dd),
                    (long long)vocab);
        return NULL;
    }
    if (!rl_check_index_range(ctx, "embedding_grad", ids, vocab, "ids (rows of the table)")) return NULL;
    rl_attrs at = {.ints = {vocab}};
    int64_t shape[2] = {vocab, dy->shape[dy->ndim - 1]};
    rl_tensor *in[2] = {ids, dy};
    return rl_op_run(ctx, RL_OP_EMBEDDING_GRAD, 2, in, &at, dy->dtype, 2, shape, 0, NULL);
}

/* ---- backward rules (written with ops) ---------------------------------------------------- */

#define X (n->in[0])

void rl_grad_reshape(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, X, rl_reshape(ctx, dy, X->ndim, X->shape));
}

void rl_grad_permute(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    int inv[RL_MAX_DIMS];
    for (int i = 0; i < X->ndim; i++) inv[n->attrs.ints[i]] = i;
    rl_grad_accumulate(ctx, X, rl_permute(ctx, dy, inv));
}

/* dx is dy with zero blocks before and after it along the axis. */
void rl_grad_slice(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    int ax = n->attrs.axis;
    int64_t start = n->attrs.ints[0], end = n->attrs.ints[1], D = X->shape[ax];
    rl_tensor *parts[3];
    int np = 0;
    int64_t shape[RL_MAX_DIMS];
    memcpy(shape, X->shape, sizeof shape);
    if (start > 0) {
        shape[ax] = start;
        parts[np++] = rl_full(ctx, dy->dtype, X->ndim, shape, 0.0);
    }
    if (end > start) parts[np++] = dy;
    if (D > end) {
        shape[ax] = D - end;
        parts[np++] = rl_full(ctx, dy->dtype, X->ndim, shape, 0.0);
    }
    /* x was empty along the axis: its gradient is empty too */
    rl_tensor *dx = np == 0 ? rl_full(ctx, dy->dtype, X->ndim, X->shape, 0.0)
                  : np == 1 ? parts[0] : rl_concat(ctx, np, parts, ax);
    rl_grad_accumulate(ctx, X, dx);
}

void rl_grad_concat(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    int ax = n->attrs.axis;
    int64_t off = 0;
    for (int i = 0; i < n->n_in; i++) {
        rl_tensor *x = n->in[i];
        int64_t len = x->shape[ax];
        if (RL_NEEDS_GRAD(x)) rl_grad_accumulate(ctx, x, rl_slice(ctx, dy, ax, off, off + len));
        off += len;
    }
}

/* input i's gradient: dy's slice i on the stacked axis, without that axis */
void rl_grad_stack(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    int ax = n->attrs.axis;
    for (int i = 0; i < n->n_in; i++) {
        rl_tensor *x = n->in[i];
        if (RL_NEEDS_GRAD(x)) rl_grad_accumulate(ctx, x, rl_reshape(ctx, rl_slice(ctx, dy, ax, i, i + 1), x->ndim, x->shape));
    }
}

void rl_grad_broadcast_to(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, X, rl_sum_to(ctx, dy, X->ndim, X->shape));
}

void rl_grad_gather(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* index (in[1]) is i32 and never needs a gradient */
    rl_grad_accumulate(ctx, X, rl_scatter_add(ctx, n->in[1], dy, n->attrs.axis, X->ndim, X->shape));
}

void rl_grad_scatter_add(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* out = scatter of src, so dsrc reads dy back at the same places */
    rl_grad_accumulate(ctx, n->in[1], rl_gather(ctx, dy, n->in[0], n->attrs.axis));
}

void rl_grad_embedding(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, X, rl_embedding_grad(ctx, n->in[1], dy, X->shape[0]));
}

void rl_grad_embedding_grad(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* out[ids[i]] += src[i], so dsrc[i] = dout[ids[i]]: an embedding lookup */
    rl_grad_accumulate(ctx, n->in[1], rl_embedding(ctx, dy, n->in[0]));
}

#undef X

/* ---- gradient-check cases ------------------------------------------------------------------ */

#define RL_UNPAREN(...) __VA_ARGS__

/* reshape, broadcast_to and permute read their list from attrs (ints,
 * n_ints), as the recipe interpreter passes it. */
static rl_tensor *gc_reshape(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_reshape(c, in[0], k->attrs.n_ints, k->attrs.ints);
}
static rl_tensor *gc_broadcast_to(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_broadcast_to(c, in[0], k->attrs.n_ints, k->attrs.ints);
}
static rl_tensor *gc_permute(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    int perm[RL_MAX_DIMS];
    for (int i = 0; i < RL_MAX_DIMS; i++) perm[i] = (int)k->attrs.ints[i];
    return rl_permute(c, in[0], perm);
}
/* transpose: ints[0], ints[1] = the two axes */
static rl_tensor *gc_transpose(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_transpose(c, in[0], (int)k->attrs.ints[0], (int)k->attrs.ints[1]);
}
/* slice: axis, ints[0] = start, ints[1] = end (as given, before normalising) */
static rl_tensor *gc_slice(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_slice(c, in[0], k->attrs.axis, k->attrs.ints[0], k->attrs.ints[1]);
}
static rl_tensor *gc_concat(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_concat(c, k->n_in, in, k->attrs.axis);
}
static rl_tensor *gc_stack(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_stack(c, k->n_in, in, k->attrs.axis);
}
static rl_tensor *gc_gather(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_gather(c, in[0], in[1], k->attrs.axis);
}
/* scatter_add: the output is index's shape with ints[0] on the axis */
static rl_tensor *gc_scatter_add(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    int64_t shape[RL_MAX_DIMS];
    memcpy(shape, in[0]->shape, sizeof shape);
    int ax = k->attrs.axis < 0 ? k->attrs.axis + in[0]->ndim : k->attrs.axis;
    shape[ax] = k->attrs.ints[0];
    return rl_scatter_add(c, in[0], in[1], k->attrs.axis, in[0]->ndim, shape);
}
static rl_tensor *gc_embedding(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    (void)k;
    return rl_embedding(c, in[0], in[1]);
}
/* embedding_grad: ints[0] = vocab */
static rl_tensor *gc_embedding_grad(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_embedding_grad(c, in[0], in[1], k->attrs.ints[0]);
}

/* x drawn in [-1, 1] with nd dims of shape sh (a parenthesised list) */
#define XF(nd, sh) RL_GC_F(-1, 1, nd, RL_UNPAREN sh)
#define SHAPE_CASE(label, fn, nd, sh, tnd, tsh) \
    {label, 1, {XF(nd, sh)}, fn, NULL, {.n_ints = tnd, .ints = {RL_UNPAREN tsh}}, 0}
/* transpose is a permute, but not one the recipe call permute(x, perm) makes */
#define TRANSPOSE_CASE(label, nd, sh, a0, a1) \
    {label, 1, {XF(nd, sh)}, gc_transpose, NULL, {.ints = {a0, a1}}, 0, .composite = 1}

RL_GC_CASES(reshape,
    SHAPE_CASE("[2,3,4] -> [6,4]", gc_reshape, 3, (2, 3, 4), 2, (6, 4)),
    SHAPE_CASE("[3,4] -> [-1]", gc_reshape, 2, (3, 4), 1, (-1)),
    SHAPE_CASE("[2,3,4] -> [4,-1,2]", gc_reshape, 3, (2, 3, 4), 3, (4, -1, 2)),
    SHAPE_CASE("scalar -> [1,1]", gc_reshape, 0, (0), 2, (1, 1)),
    SHAPE_CASE("[2,3,2,2] -> [3,8]", gc_reshape, 4, (2, 3, 2, 2), 2, (3, 8)),
    SHAPE_CASE("[12] -> [2,2,3,1]", gc_reshape, 1, (12), 4, (2, 2, 3, 1)));

RL_GC_CASES(permute,
    SHAPE_CASE("[3,4] (1,0)", gc_permute, 2, (3, 4), 2, (1, 0)),
    SHAPE_CASE("[2,3,4] (2,0,1)", gc_permute, 3, (2, 3, 4), 3, (2, 0, 1)),
    SHAPE_CASE("[2,3,4] negative (-1,-3,-2)", gc_permute, 3, (2, 3, 4), 3, (-1, -3, -2)),
    SHAPE_CASE("[2,3,4,5] (0,2,1,3)", gc_permute, 4, (2, 3, 4, 5), 4, (0, 2, 1, 3)),
    SHAPE_CASE("[2,3,4,5] (3,2,1,0)", gc_permute, 4, (2, 3, 4, 5), 4, (3, 2, 1, 0)),
    SHAPE_CASE("[2,3,4,5] (1,3,0,2)", gc_permute, 4, (2, 3, 4, 5), 4, (1, 3, 0, 2)),
    TRANSPOSE_CASE("transpose [2,3,4,5] (-1,-2)", 4, (2, 3, 4, 5), -1, -2),
    TRANSPOSE_CASE("transpose [2,3,4] (0,2)", 3, (2, 3, 4), 0, 2));

#define SLICE_CASE(label, nd, sh, ax, s, e) \
    {label, 1, {XF(nd, sh)}, gc_slice, NULL, {.axis = ax, .ints = {s, e}}, 0}

RL_GC_CASES(slice,
    SLICE_CASE("[5,4] axis 0 [1:4]", 2, (5, 4), 0, 1, 4),
    SLICE_CASE("[5,4] axis 1 [-3:-1]", 2, (5, 4), 1, -3, -1),
    SLICE_CASE("[2,5,3] axis 1 [0:2]", 3, (2, 5, 3), 1, 0, 2),
    SLICE_CASE("[2,3,6] axis -1 [2:100] (end clamped)", 3, (2, 3, 6), -1, 2, 100),
    SLICE_CASE("[3,2,3,2] axis 0 [1:2]", 4, (3, 2, 3, 2), 0, 1, 2),
    SLICE_CASE("[2,4,3,2] axis 1 [1:4]", 4, (2, 4, 3, 2), 1, 1, 4),
    SLICE_CASE("[2,3,4,5] axis 2 [1:3]", 4, (2, 3, 4, 5), 2, 1, 3),
    SLICE_CASE("[2,3,4,5] axis -1 [0:5] (whole)", 4, (2, 3, 4, 5), -1, 0, 5),
    SLICE_CASE("[2,3,4,5] axis -4 [-1:2]", 4, (2, 3, 4, 5), -4, -1, 2));

#define CAT2(label, nd, s0, s1, ax) {label, 2, {XF(nd, s0), XF(nd, s1)}, gc_concat, NULL, {.axis = ax}, 0}

RL_GC_CASES(concat,
    CAT2("[2,3] + [4,3] axis 0", 2, (2, 3), (4, 3), 0),
    {"[2,3] + [2,1] + [2,2] axis 1", 3, {XF(2, (2, 3)), XF(2, (2, 1)), XF(2, (2, 2))}, gc_concat, NULL,
     {.axis = 1}, 0},
    CAT2("[2,3,4] + [2,2,4] axis -2", 3, (2, 3, 4), (2, 2, 4), -2),
    CAT2("[2,3,4] + [2,3,1] axis 2", 3, (2, 3, 4), (2, 3, 1), 2),
    CAT2("[1,2,3,2] + [2,2,3,2] axis 0", 4, (1, 2, 3, 2), (2, 2, 3, 2), 0),
    CAT2("[2,1,3,2] + [2,3,3,2] axis 1", 4, (2, 1, 3, 2), (2, 3, 3, 2), 1),
    CAT2("[2,2,3,2] + [2,2,1,2] axis 2", 4, (2, 2, 3, 2), (2, 2, 1, 2), 2),
    {"[2,2,3,2] x 3 axis -1", 3, {XF(4, (2, 2, 3, 2)), XF(4, (2, 2, 3, 1)), XF(4, (2, 2, 3, 3))},
     gc_concat, NULL, {.axis = -1}, 0},
    {"one input [3,4]", 1, {XF(2, (3, 4))}, gc_concat, NULL, {.axis = 0}, 0});

#define STACK2(label, nd, sh, ax) {label, 2, {XF(nd, sh), XF(nd, sh)}, gc_stack, NULL, {.axis = ax}, 0}

RL_GC_CASES(stack,
    {"3 scalars -> [3]", 3, {XF(0, (0)), XF(0, (0)), XF(0, (0))}, gc_stack, NULL, {.axis = 0}, 0},
    STACK2("[3] x 2 axis 0", 1, (3), 0),
    STACK2("[3] x 2 axis -1 -> [3,2]", 1, (3), -1),
    {"[2,3] x 3 axis 1", 3, {XF(2, (2, 3)), XF(2, (2, 3)), XF(2, (2, 3))}, gc_stack, NULL, {.axis = 1}, 0},
    STACK2("[2,3,4] x 2 axis 3", 3, (2, 3, 4), 3),
    STACK2("[2,3,4] x 2 axis -4", 3, (2, 3, 4), -4),
    STACK2("[2,3,2] x 2 axis 2", 3, (2, 3, 2), 2),
    {"one input [3,4] axis 1", 1, {XF(2, (3, 4))}, gc_stack, NULL, {.axis = 1}, 0});

RL_GC_CASES(broadcast_to,
    SHAPE_CASE("[3] -> [2,3]", gc_broadcast_to, 1, (3), 2, (2, 3)),
    SHAPE_CASE("[3,1] -> [3,4]", gc_broadcast_to, 2, (3, 1), 2, (3, 4)),
    SHAPE_CASE("[1,4] -> [2,3,4]", gc_broadcast_to, 2, (1, 4), 3, (2, 3, 4)),
    SHAPE_CASE("scalar -> [2,3]", gc_broadcast_to, 0, (0), 2, (2, 3)),
    SHAPE_CASE("[2,1,3,1] -> [2,4,3,5]", gc_broadcast_to, 4, (2, 1, 3, 1), 4, (2, 4, 3, 5)),
    SHAPE_CASE("[3,1,2] -> [2,3,4,2]", gc_broadcast_to, 3, (3, 1, 2), 4, (2, 3, 4, 2)),
    SHAPE_CASE("[2,3] -> [2,3] (identity)", gc_broadcast_to, 2, (2, 3), 2, (2, 3)));

/* index values in [0, size of x along the axis); the index may be longer or
 * shorter than x on the axis, and repeats, so scatter_add's sums are checked */
#define GATHER_CASE(label, nd, xs, is, hi, ax) \
    {label, 2, {XF(nd, xs), RL_GC_I(0, hi, nd, RL_UNPAREN is)}, gc_gather, NULL, {.axis = ax}, 0}

RL_GC_CASES(gather,
    GATHER_CASE("x [4,3] index [5,3] axis 0", 2, (4, 3), (5, 3), 4, 0),
    GATHER_CASE("x [3,4] index [3,6] axis 1", 2, (3, 4), (3, 6), 4, 1),
    GATHER_CASE("x [3,4] index [3,1] axis -1", 2, (3, 4), (3, 1), 4, -1),
    GATHER_CASE("x [3,2,3] index [2,2,3] axis 0", 3, (3, 2, 3), (2, 2, 3), 3, 0),
    GATHER_CASE("x [2,5,3] index [2,4,3] axis 1", 3, (2, 5, 3), (2, 4, 3), 5, 1),
    GATHER_CASE("x [2,3,4] index [2,3,2] axis -1", 3, (2, 3, 4), (2, 3, 2), 4, -1),
    GATHER_CASE("x [2,3,2,2] index [4,3,2,2] axis 0", 4, (2, 3, 2, 2), (4, 3, 2, 2), 2, 0),
    GATHER_CASE("x [2,3,2,2] index [2,2,2,2] axis 1", 4, (2, 3, 2, 2), (2, 2, 2, 2), 3, 1),
    GATHER_CASE("x [2,2,4,3] index [2,2,3,3] axis 2", 4, (2, 2, 4, 3), (2, 2, 3, 3), 4, 2),
    GATHER_CASE("x [2,2,3,5] index [2,2,3,2] axis 3", 4, (2, 2, 3, 5), (2, 2, 3, 2), 5, 3));

/* scatter_add directly: ints[0] = output size along the axis = index range */
#define SCATTER_CASE(label, nd, is, size, ax) \
    {label, 2, {RL_GC_I(0, size, nd, RL_UNPAREN is), XF(nd, is)}, gc_scatter_add, NULL, \
     {.axis = ax, .ints = {size}}, 0}

RL_GC_CASES(scatter_add,
    SCATTER_CASE("[5,3] -> [4,3] axis 0", 2, (5, 3), 4, 0),
    SCATTER_CASE("[3,6] -> [3,4] axis -1", 2, (3, 6), 4, -1),
    SCATTER_CASE("[2,3,4] -> [2,5,4] axis 1", 3, (2, 3, 4), 5, 1),
    SCATTER_CASE("[2,3,4] -> [2,3,2] axis 2", 3, (2, 3, 4), 2, 2),
    SCATTER_CASE("[3,2,2,3] -> [2,2,2,3] axis 0", 4, (3, 2, 2, 3), 2, 0),
    SCATTER_CASE("[2,2,3,4] -> [2,2,3,3] axis -1", 4, (2, 2, 3, 4), 3, -1));

#define EMB_CASE(label, V, C, nd, is) \
    {label, 2, {XF(2, (V, C)), RL_GC_I(0, V, nd, RL_UNPAREN is)}, gc_embedding, NULL, {0}, 0}

RL_GC_CASES(embedding,
    EMB_CASE("table [5,3] ids [4]", 5, 3, 1, (4)),
    EMB_CASE("table [4,2] ids [2,3]", 4, 2, 2, (2, 3)),
    EMB_CASE("table [3,4] ids [2,2,3]", 3, 4, 3, (2, 2, 3)),
    EMB_CASE("table [6,3] ids scalar", 6, 3, 0, (0)),
    EMB_CASE("table [2,5] ids [8] (repeats)", 2, 5, 1, (8)));

#define EMBG_CASE(label, V, nd, is, ds) \
    {label, 2, {RL_GC_I(0, V, nd, RL_UNPAREN is), XF(nd + 1, ds)}, gc_embedding_grad, NULL, \
     {.ints = {V}}, 0}

RL_GC_CASES(embedding_grad,
    EMBG_CASE("ids [4] dy [4,3] V 5", 5, 1, (4), (4, 3)),
    EMBG_CASE("ids [2,3] dy [2,3,2] V 4", 4, 2, (2, 3), (2, 3, 2)),
    EMBG_CASE("ids [2,2,2] dy [2,2,2,3] V 3", 3, 3, (2, 2, 2), (2, 2, 2, 3)),
    EMBG_CASE("ids [8] dy [8,2] V 2 (repeats)", 2, 1, (8), (8, 2)));
