/* ops/elementwise.c - elementwise ops: front ends (dtype and broadcast
 * checks), backward rules written with ops, and gradient-check cases.
 * Kernels are in ops/cpu/elementwise.c.
 */
#include "common.h"

#include <math.h>

rl_tensor *rl_scalar_like(rl_ctx *ctx, const rl_tensor *x, double v) {
    return rl_scalar(ctx, x ? x->dtype : RL_F64, v);
}

/* ---- front ends ------------------------------------------------------------ */

static rl_tensor *rl_binary(rl_ctx *ctx, rl_op op, rl_tensor *a, rl_tensor *b) {
    const char *name = rl_op_table[op].name;
    if (!rl_check_input(ctx, name, 0, a) || !rl_check_input(ctx, name, 1, b)) return NULL;
    bool cmp = rl_op_table[op].flags & OPF_NOGRAD;
    if (!cmp && (!rl_check_float(ctx, name, 0, a) || !rl_check_float(ctx, name, 1, b))) return NULL;
    if (!rl_check_same_dtype(ctx, name, a, b)) return NULL;
    int nd;
    int64_t shape[RL_MAX_DIMS];
    if (!rl_shape_broadcast(a->ndim, a->shape, b->ndim, b->shape, &nd, shape)) {
        char da[96], db[96];
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: shapes %s and %s do not broadcast (each axis, aligned from the right, "
                    "must be equal or 1)",
                    name, rl_tensor_describe(a, da, sizeof da), rl_tensor_describe(b, db, sizeof db));
        return NULL;
    }
    rl_tensor *in[2] = {a, b};
    return rl_op_run(ctx, op, 2, in, NULL, a->dtype, nd, shape, 0, NULL);
}

rl_tensor *rl_add(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_ADD, a, b); }
rl_tensor *rl_sub(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_SUB, a, b); }
rl_tensor *rl_mul(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_MUL, a, b); }
rl_tensor *rl_div(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_DIV, a, b); }
rl_tensor *rl_minimum(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_MINIMUM, a, b); }
rl_tensor *rl_maximum(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_MAXIMUM, a, b); }
rl_tensor *rl_gt(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_GT, a, b); }
rl_tensor *rl_ge(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_GE, a, b); }
rl_tensor *rl_lt(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_LT, a, b); }
rl_tensor *rl_le(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_LE, a, b); }
rl_tensor *rl_eq(rl_ctx *ctx, rl_tensor *a, rl_tensor *b) { return rl_binary(ctx, RL_OP_EQ, a, b); }

rl_tensor *rl_where(rl_ctx *ctx, rl_tensor *cond, rl_tensor *a, rl_tensor *b) {
    if (!rl_check_input(ctx, "where", 0, cond) || !rl_check_input(ctx, "where", 1, a) ||
        !rl_check_input(ctx, "where", 2, b))
        return NULL;
    if (!rl_check_float(ctx, "where", 1, a) || !rl_check_float(ctx, "where", 2, b) ||
        !rl_check_same_dtype(ctx, "where", a, b))
        return NULL;
    int nd, nd2;
    int64_t s1[RL_MAX_DIMS], s2[RL_MAX_DIMS];
    if (!rl_shape_broadcast(a->ndim, a->shape, b->ndim, b->shape, &nd, s1) ||
        !rl_shape_broadcast(cond->ndim, cond->shape, nd, s1, &nd2, s2)) {
        char dc[96], da[96], db[96];
        rl_ctx_fail(ctx, RL_ERR_ARG, "where: shapes %s (cond), %s and %s do not broadcast",
                    rl_tensor_describe(cond, dc, sizeof dc), rl_tensor_describe(a, da, sizeof da),
                    rl_tensor_describe(b, db, sizeof db));
        return NULL;
    }
    rl_tensor *in[3] = {cond, a, b};
    return rl_op_run(ctx, RL_OP_WHERE, 3, in, NULL, a->dtype, nd2, s2, 0, NULL);
}

static rl_tensor *rl_unary(rl_ctx *ctx, rl_op op, rl_tensor *x, const rl_attrs *at) {
    const char *name = rl_op_table[op].name;
    if (!rl_check_input(ctx, name, 0, x)) return NULL;
    if (op != RL_OP_STOP_GRADIENT && !rl_check_float(ctx, name, 0, x)) return NULL;
    rl_tensor *in[1] = {x};
    return rl_op_run(ctx, op, 1, in, at, x->dtype, x->ndim, x->shape, 0, NULL);
}

rl_tensor *rl_neg(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_NEG, x, NULL); }
rl_tensor *rl_exp(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_EXP, x, NULL); }
rl_tensor *rl_log(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_LOG, x, NULL); }
rl_tensor *rl_log1p(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_LOG1P, x, NULL); }
rl_tensor *rl_sqrt(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_SQRT, x, NULL); }
rl_tensor *rl_square(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_SQUARE, x, NULL); }
rl_tensor *rl_abs(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_ABS, x, NULL); }
rl_tensor *rl_tanh(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_TANH, x, NULL); }
rl_tensor *rl_sigmoid(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_SIGMOID, x, NULL); }
rl_tensor *rl_logsigmoid(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_LOGSIGMOID, x, NULL); }
rl_tensor *rl_softplus(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_SOFTPLUS, x, NULL); }
rl_tensor *rl_relu(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_RELU, x, NULL); }
rl_tensor *rl_gelu(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_GELU, x, NULL); }
rl_tensor *rl_silu(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_SILU, x, NULL); }
rl_tensor *rl_stop_gradient(rl_ctx *ctx, rl_tensor *x) { return rl_unary(ctx, RL_OP_STOP_GRADIENT, x, NULL); }

rl_tensor *rl_clamp(rl_ctx *ctx, rl_tensor *x, double lo, double hi) {
    if (!(lo <= hi)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "clamp: lo (%g) must not exceed hi (%g)", lo, hi);
        return NULL;
    }
    rl_attrs at = {.f = {lo, hi}};
    return rl_unary(ctx, RL_OP_CLAMP, x, &at);
}

rl_tensor *rl_pow(rl_ctx *ctx, rl_tensor *x, double p) {
    rl_attrs at = {.f = {p, 0}};
    return rl_unary(ctx, RL_OP_POW, x, &at);
}

rl_tensor *rl_gelu_grad(rl_ctx *ctx, rl_tensor *x, rl_tensor *dy) {
    if (!rl_check_input(ctx, "gelu_grad", 0, x) || !rl_check_input(ctx, "gelu_grad", 1, dy)) return NULL;
    if (!rl_check_float(ctx, "gelu_grad", 0, x) || !rl_check_same_dtype(ctx, "gelu_grad", x, dy)) return NULL;
    if (!rl_shape_equal(x->ndim, x->shape, dy->ndim, dy->shape)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "gelu_grad: x and dy must have the same shape");
        return NULL;
    }
    rl_tensor *in[2] = {x, dy};
    return rl_op_run(ctx, RL_OP_GELU_GRAD, 2, in, NULL, x->dtype, x->ndim, x->shape, 0, NULL);
}

/* ---- backward rules (written with ops) -------------------------------------- */

#define A (n->in[0])
#define B (n->in[1])
#define Y (n->out)
#define K(v) rl_scalar_like(ctx, Y, (v))

void rl_grad_add(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, dy);
    rl_grad_accumulate(ctx, B, dy);
}

void rl_grad_sub(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, dy);
    if (RL_NEEDS_GRAD(B)) rl_grad_accumulate(ctx, B, rl_neg(ctx, dy));
}

void rl_grad_mul(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    if (RL_NEEDS_GRAD(A)) rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, B));
    if (RL_NEEDS_GRAD(B)) rl_grad_accumulate(ctx, B, rl_mul(ctx, dy, A));
}

void rl_grad_div(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* y = a / b: da = dy / b, db = -dy * y / b */
    if (RL_NEEDS_GRAD(A)) rl_grad_accumulate(ctx, A, rl_div(ctx, dy, B));
    if (RL_NEEDS_GRAD(B)) rl_grad_accumulate(ctx, B, rl_neg(ctx, rl_div(ctx, rl_mul(ctx, dy, Y), B)));
}

void rl_grad_minimum(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* ties go to a */
    if (RL_NEEDS_GRAD(A)) rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, rl_le(ctx, A, B)));
    if (RL_NEEDS_GRAD(B)) rl_grad_accumulate(ctx, B, rl_mul(ctx, dy, rl_gt(ctx, A, B)));
}

void rl_grad_maximum(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    if (RL_NEEDS_GRAD(A)) rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, rl_ge(ctx, A, B)));
    if (RL_NEEDS_GRAD(B)) rl_grad_accumulate(ctx, B, rl_mul(ctx, dy, rl_lt(ctx, A, B)));
}

RL_GRAD_NONE(gt)
RL_GRAD_NONE(ge)
RL_GRAD_NONE(lt)
RL_GRAD_NONE(le)
RL_GRAD_NONE(eq)
RL_GRAD_NONE(stop_gradient)

void rl_grad_where(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_tensor *c = n->in[0], *a = n->in[1], *b = n->in[2];
    rl_tensor *zero = K(0);
    if (RL_NEEDS_GRAD(a)) rl_grad_accumulate(ctx, a, rl_where(ctx, c, dy, zero));
    if (RL_NEEDS_GRAD(b)) rl_grad_accumulate(ctx, b, rl_where(ctx, c, zero, dy));
}

void rl_grad_neg(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_neg(ctx, dy));
}

void rl_grad_exp(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, Y));
}

void rl_grad_log(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_div(ctx, dy, A));
}

void rl_grad_log1p(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_div(ctx, dy, rl_add(ctx, A, K(1))));
}

void rl_grad_sqrt(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_div(ctx, rl_mul(ctx, dy, K(0.5)), Y));
}

void rl_grad_square(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, rl_mul(ctx, A, K(2))));
}

void rl_grad_abs(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_tensor *sign = rl_sub(ctx, rl_gt(ctx, A, K(0)), rl_lt(ctx, A, K(0)));
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, sign));
}

void rl_grad_tanh(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, rl_sub(ctx, K(1), rl_square(ctx, Y))));
}

void rl_grad_sigmoid(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, rl_mul(ctx, Y, rl_sub(ctx, K(1), Y))));
}

void rl_grad_logsigmoid(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* d/dx log sigmoid(x) = sigmoid(-x), exact for large |x| too */
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, rl_sigmoid(ctx, rl_neg(ctx, A))));
}

void rl_grad_softplus(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* d/dx log(1 + exp(x)) = sigmoid(x) */
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, rl_sigmoid(ctx, A)));
}

void rl_grad_relu(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, rl_gt(ctx, A, K(0))));
}

void rl_grad_gelu(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_grad_accumulate(ctx, A, rl_gelu_grad(ctx, A, dy));
}

RL_GRAD_MISSING(gelu_grad)

void rl_grad_silu(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    /* d/dx x s(x) = s + x s (1 - s) = s (1 + x (1 - s)), s = sigmoid(x); with
     * ops, so that the backward is itself differentiable */
    rl_tensor *s = rl_sigmoid(ctx, A);
    rl_tensor *d = rl_mul(ctx, s, rl_add(ctx, K(1), rl_mul(ctx, A, rl_sub(ctx, K(1), s))));
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, d));
}

void rl_grad_clamp(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_tensor *inside = rl_mul(ctx, rl_ge(ctx, A, K(n->attrs.f[0])), rl_le(ctx, A, K(n->attrs.f[1])));
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, inside));
}

void rl_grad_pow(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    double p = n->attrs.f[0];
    rl_grad_accumulate(ctx, A, rl_mul(ctx, dy, rl_mul(ctx, K(p), rl_pow(ctx, A, p - 1))));
}

#undef A
#undef B
#undef Y
#undef K

/* ---- gradient-check cases ----------------------------------------------------- */

static rl_tensor *gc_add(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_add(c, in[0], in[1]); }
static rl_tensor *gc_sub(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_sub(c, in[0], in[1]); }
static rl_tensor *gc_mul(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_mul(c, in[0], in[1]); }
static rl_tensor *gc_div(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_div(c, in[0], in[1]); }
static rl_tensor *gc_minimum(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_minimum(c, in[0], in[1]); }
static rl_tensor *gc_maximum(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_maximum(c, in[0], in[1]); }
static rl_tensor *gc_gt(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_gt(c, in[0], in[1]); }
static rl_tensor *gc_ge(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_ge(c, in[0], in[1]); }
static rl_tensor *gc_lt(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_lt(c, in[0], in[1]); }
static rl_tensor *gc_le(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_le(c, in[0], in[1]); }
static rl_tensor *gc_eq(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_eq(c, in[0], in[1]); }
static rl_tensor *gc_where(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_where(c, in[0], in[1], in[2]); }

/* Puts a on the grid 0.1*i + 0.05 and b on 0.1*j, so |a - b| >= 0.05:
 * minimum/maximum/comparisons are then away from ties. */
static void gc_prep_apart(double **v, const rl_gc_case *c) {
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < rl_gc_numel(&c->in[k]); i++)
            v[k][i] = round(v[k][i] * 10) / 10 + (k == 0 ? 0.05 : 0);
}

/* For eq: values on a coarse grid so that some pairs are equal. */
static void gc_prep_grid(double **v, const rl_gc_case *c) {
    for (int k = 0; k < 2; k++)
        for (int64_t i = 0; i < rl_gc_numel(&c->in[k]); i++) v[k][i] = round(v[k][i] * 2) / 2;
}

/* Condition of where: 0/1 values. */
static void gc_prep_cond(double **v, const rl_gc_case *c) {
    for (int64_t i = 0; i < rl_gc_numel(&c->in[0]); i++) v[0][i] = v[0][i] > 0.5 ? 1 : 0;
}

#define BIN_CASES(fn, lo, hi, prep)                                                              \
    {"same shape [3,4]", 2, {RL_GC_F(lo, hi, 2, 3, 4), RL_GC_F(lo, hi, 2, 3, 4)}, fn, prep, {0}, 0}, \
    {"broadcast [2,3,4] . [4]", 2, {RL_GC_F(lo, hi, 3, 2, 3, 4), RL_GC_F(lo, hi, 1, 4)}, fn, prep, {0}, 0}, \
    {"broadcast [3,1] . [1,4]", 2, {RL_GC_F(lo, hi, 2, 3, 1), RL_GC_F(lo, hi, 2, 1, 4)}, fn, prep, {0}, 0}, \
    {"scalar . [2,3]", 2, {RL_GC_F(lo, hi, 0, 0), RL_GC_F(lo, hi, 2, 2, 3)}, fn, prep, {0}, 0},   \
    {"4-d [2,1,3,2] . [2,3,1]", 2, {RL_GC_F(lo, hi, 4, 2, 1, 3, 2), RL_GC_F(lo, hi, 3, 2, 3, 1)}, fn, prep, {0}, 0}

RL_GC_CASES(add, BIN_CASES(gc_add, -1, 1, NULL));
RL_GC_CASES(sub, BIN_CASES(gc_sub, -1, 1, NULL));
RL_GC_CASES(mul, BIN_CASES(gc_mul, -1, 1, NULL));
RL_GC_CASES(div, BIN_CASES(gc_div, 0.5, 2, NULL));
RL_GC_CASES(minimum, BIN_CASES(gc_minimum, -1, 1, gc_prep_apart));
RL_GC_CASES(maximum, BIN_CASES(gc_maximum, -1, 1, gc_prep_apart));
RL_GC_CASES(gt, BIN_CASES(gc_gt, -1, 1, gc_prep_apart));
RL_GC_CASES(ge, BIN_CASES(gc_ge, -1, 1, gc_prep_grid));
RL_GC_CASES(lt, BIN_CASES(gc_lt, -1, 1, gc_prep_apart));
RL_GC_CASES(le, BIN_CASES(gc_le, -1, 1, gc_prep_grid));
RL_GC_CASES(eq, BIN_CASES(gc_eq, -1, 1, gc_prep_grid));
RL_GC_CASES(where,
    {"same shape [3,4]", 3, {{.dtype = RL_F64, .ndim = 2, .shape = {3, 4}, .lo = 0, .hi = 1, .no_grad = 1},
                             RL_GC_F(-1, 1, 2, 3, 4), RL_GC_F(-1, 1, 2, 3, 4)}, gc_where, gc_prep_cond, {0}, 0},
    {"broadcast cond [4], a [3,4], b scalar", 3,
     {{.dtype = RL_F64, .ndim = 1, .shape = {4}, .lo = 0, .hi = 1, .no_grad = 1},
      RL_GC_F(-1, 1, 2, 3, 4), RL_GC_F(-1, 1, 0, 0)}, gc_where, gc_prep_cond, {0}, 0},
    {"broadcast cond [2,3,1], a [3,4], b [2,1,4]", 3,
     {{.dtype = RL_F64, .ndim = 3, .shape = {2, 3, 1}, .lo = 0, .hi = 1, .no_grad = 1},
      RL_GC_F(-1, 1, 2, 3, 4), RL_GC_F(-1, 1, 3, 2, 1, 4)}, gc_where, gc_prep_cond, {0}, 0});

static rl_tensor *gc_neg(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_neg(c, in[0]); }
static rl_tensor *gc_exp(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_exp(c, in[0]); }
static rl_tensor *gc_log(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_log(c, in[0]); }
static rl_tensor *gc_log1p(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_log1p(c, in[0]); }
static rl_tensor *gc_sqrt(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_sqrt(c, in[0]); }
static rl_tensor *gc_square(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_square(c, in[0]); }
static rl_tensor *gc_abs(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_abs(c, in[0]); }
static rl_tensor *gc_tanh(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_tanh(c, in[0]); }
static rl_tensor *gc_sigmoid(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_sigmoid(c, in[0]); }
static rl_tensor *gc_logsigmoid(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_logsigmoid(c, in[0]); }
static rl_tensor *gc_softplus(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_softplus(c, in[0]); }
static rl_tensor *gc_relu(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_relu(c, in[0]); }
static rl_tensor *gc_gelu(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_gelu(c, in[0]); }
static rl_tensor *gc_silu(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_silu(c, in[0]); }
static rl_tensor *gc_clamp(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { return rl_clamp(c, in[0], k->attrs.f[0], k->attrs.f[1]); }
static rl_tensor *gc_pow(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { return rl_pow(c, in[0], k->attrs.f[0]); }
static rl_tensor *gc_stop(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) { (void)k; return rl_stop_gradient(c, in[0]); }
/* gelu_grad is checked through gelu's backward (its only user) */
static rl_tensor *gc_gelu_via_parent(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    (void)k;
    return rl_mul(c, rl_gelu(c, in[0]), in[1]);
}

/* Moves x away from 0 (kinks of abs and relu): |x| >= 0.1. */
static void gc_prep_nonzero(double **v, const rl_gc_case *c) {
    for (int64_t i = 0; i < rl_gc_numel(&c->in[0]); i++)
        v[0][i] = v[0][i] < 0 ? v[0][i] - 0.1 : v[0][i] + 0.1;
}

/* Keeps x at least 0.05 away from clamp's bounds (grid of 0.1 offset by 0.05). */
static void gc_prep_clamp(double **v, const rl_gc_case *c) {
    for (int64_t i = 0; i < rl_gc_numel(&c->in[0]); i++) v[0][i] = round(v[0][i] * 10) / 10 + 0.05;
}

#define UN_CASES(fn, lo, hi, prep)                                                          \
    {"[3,4]", 1, {RL_GC_F(lo, hi, 2, 3, 4)}, fn, prep, {0}, 0},                             \
    {"[2,3,5]", 1, {RL_GC_F(lo, hi, 3, 2, 3, 5)}, fn, prep, {0}, 0},                        \
    {"scalar", 1, {RL_GC_F(lo, hi, 0, 0)}, fn, prep, {0}, 0},                               \
    {"[2,2,2,3]", 1, {RL_GC_F(lo, hi, 4, 2, 2, 2, 3)}, fn, prep, {0}, 0}

RL_GC_CASES(neg, UN_CASES(gc_neg, -2, 2, NULL));
RL_GC_CASES(exp, UN_CASES(gc_exp, -2, 2, NULL));
RL_GC_CASES(log, UN_CASES(gc_log, 0.2, 3, NULL));
RL_GC_CASES(log1p, UN_CASES(gc_log1p, -0.5, 3, NULL));
RL_GC_CASES(sqrt, UN_CASES(gc_sqrt, 0.2, 3, NULL));
RL_GC_CASES(square, UN_CASES(gc_square, -2, 2, NULL));
RL_GC_CASES(abs, UN_CASES(gc_abs, -2, 2, gc_prep_nonzero));
RL_GC_CASES(tanh, UN_CASES(gc_tanh, -2, 2, NULL));
RL_GC_CASES(sigmoid, UN_CASES(gc_sigmoid, -4, 4, NULL));
RL_GC_CASES(logsigmoid, UN_CASES(gc_logsigmoid, -6, 6, NULL),
    /* large magnitudes: the naive log(sigmoid(x)) would give -inf here */
    {"large |x|", 1, {RL_GC_F(-60, 60, 1, 16)}, gc_logsigmoid, NULL, {0}, 0});
RL_GC_CASES(softplus, UN_CASES(gc_softplus, -6, 6, NULL),
    /* large magnitudes: log(1 + exp(x)) computed naively overflows at x > 710 */
    {"large |x|", 1, {RL_GC_F(-800, 800, 1, 16)}, gc_softplus, NULL, {0}, 0});
RL_GC_CASES(relu, UN_CASES(gc_relu, -2, 2, gc_prep_nonzero));
RL_GC_CASES(gelu, UN_CASES(gc_gelu, -3, 3, NULL));
RL_GC_CASES(silu, UN_CASES(gc_silu, -4, 4, NULL),
    /* large magnitudes: sigmoid's two-sided form keeps exp from overflowing */
    {"large |x|", 1, {RL_GC_F(-60, 60, 1, 16)}, gc_silu, NULL, {0}, 0});
RL_GC_CASES(clamp,
    {"[3,4] in [-0.5, 0.5]", 1, {RL_GC_F(-1, 1, 2, 3, 4)}, gc_clamp, gc_prep_clamp, {.f = {-0.5, 0.5}}, 0},
    {"[2,3,5] in [0, 0.3]", 1, {RL_GC_F(-1, 1, 3, 2, 3, 5)}, gc_clamp, gc_prep_clamp, {.f = {0, 0.3}}, 0});
RL_GC_CASES(pow,
    {"[3,4] ^ 3", 1, {RL_GC_F(-2, 2, 2, 3, 4)}, gc_pow, NULL, {.f = {3, 0}}, 0},
    {"[3,4] ^ 0.5", 1, {RL_GC_F(0.2, 2, 2, 3, 4)}, gc_pow, NULL, {.f = {0.5, 0}}, 0},
    {"[2,3,5] ^ -1.5", 1, {RL_GC_F(0.3, 2, 3, 2, 3, 5)}, gc_pow, NULL, {.f = {-1.5, 0}}, 0});
RL_GC_CASES(stop_gradient, UN_CASES(gc_stop, -2, 2, NULL));
RL_GC_CASES(gelu_grad,
    {"through gelu [3,4]", 2, {RL_GC_F(-3, 3, 2, 3, 4), RL_GC_F(-1, 1, 2, 3, 4)}, gc_gelu_via_parent, NULL, {0}, 0},
    {"through gelu [2,3,5]", 2, {RL_GC_F(-3, 3, 3, 2, 3, 5), RL_GC_F(-1, 1, 3, 2, 3, 5)}, gc_gelu_via_parent, NULL, {0}, 0});
