/* ops/reduce.c - reductions (sum, mean, max, logsumexp over one axis or all
 * of them), softmax and log_softmax over the last axis, and rl_sum_to (the
 * adjoint of broadcasting, used by rl_grad_accumulate): front ends (axis and
 * dtype checks, output shapes), backward rules written with ops, and
 * gradient-check cases. Kernels are in ops/cpu/reduce.c.
 *
 * Attributes: axis (normalised to [0, ndim), or RL_AXIS_ALL) and keepdim.
 * The output has the reduced axis removed, or kept as size 1 with keepdim;
 * RL_AXIS_ALL gives a 0-d tensor (all-ones shape of the same ndim with
 * keepdim).
 */
#include "common.h"

#include <stdlib.h>

/* ---- front ends ------------------------------------------------------------ */

/* The shared front end of sum, mean, max and logsumexp: checks, the output
 * shape, and the attributes the kernel and the backward rule read. */
static rl_tensor *rl_reduce(rl_ctx *ctx, rl_op op, rl_tensor *x, int axis, int keepdim) {
    const char *name = rl_op_table[op].name;
    if (!rl_check_input(ctx, name, 0, x) || !rl_check_float(ctx, name, 0, x)) return NULL;
    rl_attrs at = {.axis = RL_AXIS_ALL, .keepdim = keepdim != 0};
    int nd = 0;
    int64_t shape[RL_MAX_DIMS];
    int64_t count = x->numel; /* elements reduced into each output */
    if (axis == RL_AXIS_ALL) {
        if (keepdim)
            for (nd = 0; nd < x->ndim; nd++) shape[nd] = 1;
    } else {
        if (x->ndim == 0) {
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "%s: axis %d given for a 0-d tensor; use RL_AXIS_ALL to reduce a scalar",
                        name, axis);
            return NULL;
        }
        int a = rl_norm_axis(ctx, name, axis, x->ndim);
        if (a < 0) return NULL;
        at.axis = a;
        count = x->shape[a];
        for (int i = 0; i < x->ndim; i++) {
            if (i != a) shape[nd++] = x->shape[i];
            else if (keepdim) shape[nd++] = 1;
        }
    }
    if (op == RL_OP_MAX && count == 0 && rl_shape_numel(nd, shape) > 0) {
        char d[96];
        rl_ctx_fail(ctx, RL_ERR_ARG, "max: cannot reduce %s over an empty axis (no maximum exists)",
                    rl_tensor_describe(x, d, sizeof d));
        return NULL;
    }
    rl_tensor *in[1] = {x};
    return rl_op_run(ctx, op, 1, in, &at, x->dtype, nd, shape, 0, NULL);
}

rl_tensor *rl_sum(rl_ctx *ctx, rl_tensor *x, int axis, int keepdim) {
    return rl_reduce(ctx, RL_OP_SUM, x, axis, keepdim);
}

rl_tensor *rl_mean(rl_ctx *ctx, rl_tensor *x, int axis, int keepdim) {
    return rl_reduce(ctx, RL_OP_MEAN, x, axis, keepdim);
}

rl_tensor *rl_max(rl_ctx *ctx, rl_tensor *x, int axis, int keepdim) {
    return rl_reduce(ctx, RL_OP_MAX, x, axis, keepdim);
}

rl_tensor *rl_logsumexp(rl_ctx *ctx, rl_tensor *x, int axis, int keepdim) {
    return rl_reduce(ctx, RL_OP_LOGSUMEXP, x, axis, keepdim);
}

/* softmax and log_softmax: over the last axis, same shape out. attrs.axis
 * records that axis (for graph labels); the kernels only need the shape. */
static rl_tensor *rl_softmax_any(rl_ctx *ctx, rl_op op, rl_tensor *x) {
    const char *name = rl_op_table[op].name;
    if (!rl_check_input(ctx, name, 0, x) || !rl_check_float(ctx, name, 0, x)) return NULL;
    if (x->ndim == 0) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: the input is 0-d; %s works over the last axis and needs at least 1 dim",
                    name, name);
        return NULL;
    }
    rl_attrs at = {.axis = x->ndim - 1};
    rl_tensor *in[1] = {x};
    return rl_op_run(ctx, op, 1, in, &at, x->dtype, x->ndim, x->shape, 0, NULL);
}

rl_tensor *rl_softmax(rl_ctx *ctx, rl_tensor *x) { return rl_softmax_any(ctx, RL_OP_SOFTMAX, x); }
rl_tensor *rl_log_softmax(rl_ctx *ctx, rl_tensor *x) { return rl_softmax_any(ctx, RL_OP_LOG_SOFTMAX, x); }

/* Sums g down to `shape` (aligned from the right, as in broadcasting):
 * leading extra axes of g are summed away (one rl_sum over axis 0 each), then
 * every axis where the target is 1 and g is not is summed with keepdim. A
 * target with extra leading axes of size 1 (a gradient that came back
 * squeezed) gets them back with a reshape at the end. */
rl_tensor *rl_sum_to(rl_ctx *ctx, rl_tensor *g, int ndim, const int64_t *shape) {
    if (!rl_check_input(ctx, "sum_to", 0, g)) return NULL;
    bool ok = ndim >= 0 && ndim <= RL_MAX_DIMS && (ndim == 0 || shape);
    for (int i = 0; ok && i < ndim; i++) {
        int gi = g->ndim - ndim + i; /* g's axis aligned with target axis i */
        int64_t gs = gi < 0 ? 1 : g->shape[gi];
        ok = shape[i] >= 0 && (gs == shape[i] || shape[i] == 1);
    }
    if (!ok) {
        char dg[96], dt[96] = "[";
        size_t k = 1;
        for (int i = 0; i < ndim && i < RL_MAX_DIMS && k < sizeof dt; i++)
            k += (size_t)snprintf(dt + k, sizeof dt - k, i ? ", %lld" : "%lld", (long long)shape[i]);
        if (k < sizeof dt) snprintf(dt + k, sizeof dt - k, "]");
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "sum_to: cannot sum %s down to %s (aligned from the right, each axis of the "
                    "target must equal g's or be 1)",
                    rl_tensor_describe(g, dg, sizeof dg), dt);
        return NULL;
    }
    if (rl_shape_equal(g->ndim, g->shape, ndim, shape)) return g;
    /* everything into one element (a loss, a scalar scale): a single pass */
    if (rl_shape_numel(ndim, shape) == 1 && (ndim == 0 || ndim == g->ndim))
        return rl_sum(ctx, g, RL_AXIS_ALL, ndim > 0);
    if (g->ndim > ndim + 1) {
        /* g's extra leading axes as one (a view, no copy), so they are summed
         * in one pass (one rounding) rather than one axis at a time */
        int extra = g->ndim - ndim;
        int64_t folded[RL_MAX_DIMS], lead_n = 1;
        for (int i = 0; i < extra; i++) lead_n *= g->shape[i];
        folded[0] = lead_n;
        for (int i = extra; i < g->ndim; i++) folded[i - extra + 1] = g->shape[i];
        g = rl_reshape(ctx, g, ndim + 1, folded);
    }
    while (g && g->ndim > ndim) g = rl_sum(ctx, g, 0, 0);
    int lead = g ? ndim - g->ndim : 0; /* target axes g lacks (all of size 1) */
    for (int i = 0; g && i < g->ndim; i++)
        if (shape[lead + i] == 1 && g->shape[i] != 1) g = rl_sum(ctx, g, i, 1);
    return g && lead > 0 ? rl_reshape(ctx, g, ndim, shape) : g;
}

/* ---- backward rules (written with ops) -------------------------------------- */

#define X (n->in[0])
#define Y (n->out)

/* Elements reduced into each output of a reduction node. */
static int64_t rl_reduce_count(const rl_node *n) {
    return n->attrs.axis == RL_AXIS_ALL ? X->numel : X->shape[n->attrs.axis];
}

/* t (shaped like the node's output) with the reduced axis kept as size 1, so
 * that it broadcasts against the input. A removed leading axis (or the 0-d
 * result of RL_AXIS_ALL) already broadcasts, right-aligned; only an inner
 * axis needs a reshape. */
static rl_tensor *rl_reduce_keepdim(rl_ctx *ctx, const rl_node *n, rl_tensor *t) {
    int axis = n->attrs.axis;
    if (!t || n->attrs.keepdim || axis == RL_AXIS_ALL || axis == 0) return t;
    int64_t shape[RL_MAX_DIMS];
    for (int i = 0; i < X->ndim; i++) shape[i] = i == axis ? 1 : X->shape[i];
    return rl_reshape(ctx, t, X->ndim, shape);
}

/* g * scale (on the small, reduced shape) broadcast to the input's shape:
 * rl_grad_accumulate only sums gradients down, never spreads them out. */
static rl_tensor *rl_reduce_expand(rl_ctx *ctx, const rl_node *n, rl_tensor *g, double scale) {
    if (scale != 1) g = rl_mul(ctx, g, rl_scalar_like(ctx, g, scale));
    if (!g || rl_shape_equal(g->ndim, g->shape, X->ndim, X->shape)) return g;
    return rl_broadcast_to(ctx, g, X->ndim, X->shape);
}

void rl_grad_sum(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    if (!RL_NEEDS_GRAD(X)) return;
    rl_grad_accumulate(ctx, X, rl_reduce_expand(ctx, n, rl_reduce_keepdim(ctx, n, dy), 1));
}

void rl_grad_mean(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    if (!RL_NEEDS_GRAD(X)) return;
    double inv = 1.0 / (double)rl_reduce_count(n);
    rl_grad_accumulate(ctx, X, rl_reduce_expand(ctx, n, rl_reduce_keepdim(ctx, n, dy), inv));
}

void rl_grad_max(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* dy goes to the elements equal to the maximum, split evenly among ties
     * (a subgradient; with no tie it is the gradient) */
    if (!RL_NEEDS_GRAD(X)) return;
    rl_tensor *hit = rl_eq(ctx, X, rl_reduce_keepdim(ctx, n, Y));
    rl_tensor *ties = rl_sum(ctx, hit, n->attrs.axis, 1);
    rl_tensor *share = rl_div(ctx, rl_reduce_keepdim(ctx, n, dy), ties);
    rl_grad_accumulate(ctx, X, rl_mul(ctx, hit, share));
}

void rl_grad_logsumexp(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* d lse / dx = exp(x - lse) = softmax(x) along the axis */
    if (!RL_NEEDS_GRAD(X)) return;
    rl_tensor *p = rl_exp(ctx, rl_sub(ctx, X, rl_reduce_keepdim(ctx, n, Y)));
    rl_grad_accumulate(ctx, X, rl_mul(ctx, rl_reduce_keepdim(ctx, n, dy), p));
}

void rl_grad_softmax(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* dx = y * (dy - sum(dy * y)) along the last axis */
    if (!RL_NEEDS_GRAD(X)) return;
    rl_tensor *dot = rl_sum(ctx, rl_mul(ctx, dy, Y), -1, 1);
    rl_grad_accumulate(ctx, X, rl_mul(ctx, Y, rl_sub(ctx, dy, dot)));
}

void rl_grad_log_softmax(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* dx = dy - softmax(x) * sum(dy) along the last axis; softmax = exp(y) */
    if (!RL_NEEDS_GRAD(X)) return;
    rl_tensor *tot = rl_sum(ctx, dy, -1, 1);
    rl_grad_accumulate(ctx, X, rl_sub(ctx, dy, rl_mul(ctx, rl_exp(ctx, Y), tot)));
}

#undef X
#undef Y

/* ---- gradient-check cases ----------------------------------------------------- */

static rl_tensor *gc_sum(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { return rl_sum(c, in[0], k->attrs.axis, k->attrs.keepdim); }
static rl_tensor *gc_mean(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { return rl_mean(c, in[0], k->attrs.axis, k->attrs.keepdim); }
static rl_tensor *gc_max(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { return rl_max(c, in[0], k->attrs.axis, k->attrs.keepdim); }
static rl_tensor *gc_logsumexp(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { return rl_logsumexp(c, in[0], k->attrs.axis, k->attrs.keepdim); }
static rl_tensor *gc_softmax(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_softmax(c, in[0]); }
static rl_tensor *gc_log_softmax(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_log_softmax(c, in[0]); }

/* Replaces the drawn values by their ranks on a grid of 0.001 (centred on
 * 0): all distinct and at least 0.001 apart (10^3 finite-difference steps,
 * and thousands of f32 ulps at these magnitudes), in random order, so max has
 * no ties and stays away from them. A fine grid keeps the values small, and
 * with them the rounding noise of the numeric side on large outputs. */
static void gc_prep_distinct(double **v, const rl_gc_case *c) {
    int64_t n = rl_gc_numel(&c->in[0]);
    double *rank = malloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!rank) return;
    for (int64_t i = 0; i < n; i++) {
        int64_t r = 0;
        for (int64_t j = 0; j < n; j++) r += v[0][j] < v[0][i] || (v[0][j] == v[0][i] && j < i);
        rank[i] = 0.001 * (double)r - 0.0005 * (double)n;
    }
    for (int64_t i = 0; i < n; i++) v[0][i] = rank[i];
    free(rank);
}

/* Distinct values, then in every row of the last axis the runner-up is set
 * equal to the maximum: an exact two-way tie. Central differences then see
 * half the slope at each tied element, which is what splitting dy evenly
 * gives. */
static void gc_prep_pair_ties(double **v, const rl_gc_case *c) {
    gc_prep_distinct(v, c);
    const rl_gc_input *in = &c->in[0];
    int64_t len = in->shape[in->ndim - 1], rows = rl_gc_numel(in) / len;
    for (int64_t r = 0; r < rows; r++) {
        double *x = v[0] + r * len;
        int64_t best = 0, second = -1;
        for (int64_t i = 1; i < len; i++)
            if (x[i] > x[best]) best = i;
        for (int64_t i = 0; i < len; i++)
            if (i != best && (second < 0 || x[i] > x[second])) second = i;
        x[second] = x[best];
    }
}

#define RL_GC_AX(a, k) {.axis = (a), .keepdim = (k)}

/* Every axis (positive and negative) of 1-D to 4-D inputs, all axes, keepdim
 * on and off, a size-1 axis and a scalar; then the kernels' other paths: rows
 * longer than RL_RED_PAIRWISE (256, pairwise summation) and an inner size
 * crossing RL_RED_BLOCK (1024 columns reduced at a time). */
#define RED_CASES(fn, lo, hi, prep)                                                                   \
    {"[7] axis 0", 1, {RL_GC_F(lo, hi, 1, 7)}, fn, prep, RL_GC_AX(0, 0), 0},                          \
    {"[7] axis -1 keepdim", 1, {RL_GC_F(lo, hi, 1, 7)}, fn, prep, RL_GC_AX(-1, 1), 0},                \
    {"[7] all", 1, {RL_GC_F(lo, hi, 1, 7)}, fn, prep, RL_GC_AX(RL_AXIS_ALL, 0), 0},                   \
    {"[3,5] axis 0", 1, {RL_GC_F(lo, hi, 2, 3, 5)}, fn, prep, RL_GC_AX(0, 0), 0},                     \
    {"[3,5] axis 1", 1, {RL_GC_F(lo, hi, 2, 3, 5)}, fn, prep, RL_GC_AX(1, 0), 0},                     \
    {"[3,5] axis -1 keepdim", 1, {RL_GC_F(lo, hi, 2, 3, 5)}, fn, prep, RL_GC_AX(-1, 1), 0},           \
    {"[3,5] axis -2 keepdim", 1, {RL_GC_F(lo, hi, 2, 3, 5)}, fn, prep, RL_GC_AX(-2, 1), 0},           \
    {"[3,5] all keepdim", 1, {RL_GC_F(lo, hi, 2, 3, 5)}, fn, prep, RL_GC_AX(RL_AXIS_ALL, 1), 0},      \
    {"[2,3,4] axis 0 keepdim", 1, {RL_GC_F(lo, hi, 3, 2, 3, 4)}, fn, prep, RL_GC_AX(0, 1), 0},        \
    {"[2,3,4] axis 1", 1, {RL_GC_F(lo, hi, 3, 2, 3, 4)}, fn, prep, RL_GC_AX(1, 0), 0},                \
    {"[2,3,4] axis 1 keepdim", 1, {RL_GC_F(lo, hi, 3, 2, 3, 4)}, fn, prep, RL_GC_AX(1, 1), 0},        \
    {"[2,3,4] axis 2", 1, {RL_GC_F(lo, hi, 3, 2, 3, 4)}, fn, prep, RL_GC_AX(2, 0), 0},                \
    {"[2,3,4] axis -3", 1, {RL_GC_F(lo, hi, 3, 2, 3, 4)}, fn, prep, RL_GC_AX(-3, 0), 0},              \
    {"[2,3,4] axis -2", 1, {RL_GC_F(lo, hi, 3, 2, 3, 4)}, fn, prep, RL_GC_AX(-2, 0), 0},              \
    {"[2,3,4] axis -1 keepdim", 1, {RL_GC_F(lo, hi, 3, 2, 3, 4)}, fn, prep, RL_GC_AX(-1, 1), 0},      \
    {"[2,3,4] all", 1, {RL_GC_F(lo, hi, 3, 2, 3, 4)}, fn, prep, RL_GC_AX(RL_AXIS_ALL, 0), 0},         \
    {"[2,3,2,3] axis 0", 1, {RL_GC_F(lo, hi, 4, 2, 3, 2, 3)}, fn, prep, RL_GC_AX(0, 0), 0},           \
    {"[2,3,2,3] axis 1 keepdim", 1, {RL_GC_F(lo, hi, 4, 2, 3, 2, 3)}, fn, prep, RL_GC_AX(1, 1), 0},   \
    {"[2,3,2,3] axis 2", 1, {RL_GC_F(lo, hi, 4, 2, 3, 2, 3)}, fn, prep, RL_GC_AX(2, 0), 0},           \
    {"[2,3,2,3] axis 3", 1, {RL_GC_F(lo, hi, 4, 2, 3, 2, 3)}, fn, prep, RL_GC_AX(3, 0), 0},           \
    {"[2,3,2,3] axis -3", 1, {RL_GC_F(lo, hi, 4, 2, 3, 2, 3)}, fn, prep, RL_GC_AX(-3, 0), 0},         \
    {"[2,3,2,3] axis -1 keepdim", 1, {RL_GC_F(lo, hi, 4, 2, 3, 2, 3)}, fn, prep, RL_GC_AX(-1, 1), 0}, \
    {"[2,3,2,3] all keepdim", 1, {RL_GC_F(lo, hi, 4, 2, 3, 2, 3)}, fn, prep, RL_GC_AX(RL_AXIS_ALL, 1), 0}, \
    {"[4,1,3] size-1 axis 1", 1, {RL_GC_F(lo, hi, 3, 4, 1, 3)}, fn, prep, RL_GC_AX(1, 0), 0},         \
    {"[4,1,3] size-1 axis 1 keepdim", 1, {RL_GC_F(lo, hi, 3, 4, 1, 3)}, fn, prep, RL_GC_AX(1, 1), 0}, \
    {"scalar all", 1, {RL_GC_F(lo, hi, 0, 0)}, fn, prep, RL_GC_AX(RL_AXIS_ALL, 0), 0},                \
    {"long rows [3,700] axis 1", 1, {RL_GC_F(lo, hi, 2, 3, 700)}, fn, prep, RL_GC_AX(1, 0), 0},      \
    {"wide [2,3,1030] axis 1", 1, {RL_GC_F(lo, hi, 3, 2, 3, 1030)}, fn, prep, RL_GC_AX(1, 0), 0}

RL_GC_CASES(sum, RED_CASES(gc_sum, -1, 1, NULL));
RL_GC_CASES(mean, RED_CASES(gc_mean, -1, 1, NULL));
RL_GC_CASES(max, RED_CASES(gc_max, -1, 1, gc_prep_distinct),
    {"[4,6] axis -1, two-way ties", 1, {RL_GC_F(-1, 1, 2, 4, 6)}, gc_max, gc_prep_pair_ties, RL_GC_AX(-1, 0), 0});
RL_GC_CASES(logsumexp, RED_CASES(gc_logsumexp, -3, 3, NULL),
    /* exp would overflow without subtracting the maximum (f32 above ~88) */
    {"large |x| [3,8] axis 1", 1, {RL_GC_F(-200, 200, 2, 3, 8)}, gc_logsumexp, NULL, RL_GC_AX(1, 0), 0},
    {"large |x| [8,3] axis 0", 1, {RL_GC_F(-200, 200, 2, 8, 3)}, gc_logsumexp, NULL, RL_GC_AX(0, 0), 0});

#define SOFTMAX_CASES(fn)                                                                  \
    {"[7]", 1, {RL_GC_F(-3, 3, 1, 7)}, fn, NULL, {0}, 0},                                  \
    {"[3,5]", 1, {RL_GC_F(-3, 3, 2, 3, 5)}, fn, NULL, {0}, 0},                             \
    {"[2,3,4]", 1, {RL_GC_F(-3, 3, 3, 2, 3, 4)}, fn, NULL, {0}, 0},                        \
    {"[2,3,2,3]", 1, {RL_GC_F(-3, 3, 4, 2, 3, 2, 3)}, fn, NULL, {0}, 0},                   \
    {"[4,1] (rows of one)", 1, {RL_GC_F(-3, 3, 2, 4, 1)}, fn, NULL, {0}, 0},               \
    {"long rows [2,500]", 1, {RL_GC_F(-3, 3, 2, 2, 500)}, fn, NULL, {0}, 0},               \
    /* exp would overflow without subtracting the maximum */                              \
    {"large |x| [3,8]", 1, {RL_GC_F(-40, 40, 2, 3, 8)}, fn, NULL, {0}, 0}

RL_GC_CASES(softmax, SOFTMAX_CASES(gc_softmax));
RL_GC_CASES(log_softmax, SOFTMAX_CASES(gc_log_softmax),
    {"very large |x| [3,8]", 1, {RL_GC_F(-200, 200, 2, 3, 8)}, gc_log_softmax, NULL, {0}, 0});
