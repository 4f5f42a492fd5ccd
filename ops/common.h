/* ops/common.h - small helpers shared by the op front ends, backward rules
 * and gradient-check cases in the ops/ sources (not part of the public API).
 */
#ifndef RL_OPS_COMMON_H
#define RL_OPS_COMMON_H

#include "rl_gradcheck.h"
#include "rl_ops.h"

#include <stdio.h>

/* Does t need a gradient? Rules skip work for inputs that do not. */
#define RL_NEEDS_GRAD(t) ((t) && ((t)->flags & RL_TF_REQUIRES_GRAD))

/* Defines the backward rule of an op that never records a node. */
#define RL_GRAD_NONE(name)                                                      \
    void rl_grad_##name(rl_ctx *ctx, const rl_node *n, rl_tensor *dout) {      \
        (void)n;                                                                \
        (void)dout;                                                             \
        rl_ctx_fail(ctx, RL_ERR_STATE, "op '%s' has no gradient", #name);       \
    }

/* Defines the backward rule of a backward-only kernel: differentiating it
 * again (create_graph through a fused op) is not supported. */
#define RL_GRAD_MISSING(name)                                                   \
    void rl_grad_##name(rl_ctx *ctx, const rl_node *n, rl_tensor *dout) {      \
        (void)n;                                                                \
        (void)dout;                                                             \
        rl_ctx_fail(ctx, RL_ERR_STATE,                                          \
                    "op '%s' has no backward rule: higher-order gradients "     \
                    "through fused kernels are not supported",                  \
                    #name);                                                     \
    }

/* Normalises an axis in [-ndim, ndim); returns -1 (and records an error)
 * when out of range. */
static inline int rl_norm_axis(rl_ctx *ctx, const char *op, int axis, int ndim) {
    int a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: axis %d is out of range for a tensor of %d dims", op,
                    axis, ndim);
        return -1;
    }
    return a;
}

/* Records "op: input i must be f32 or f64, got i32" and returns false. */
static inline bool rl_check_float(rl_ctx *ctx, const char *op, int i, const rl_tensor *t) {
    if (!rl_dtype_is_float(t->dtype)) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: input %d ('%s') is %s; it must be f32 or f64", op, i,
                    t->name[0] ? t->name : "unnamed", rl_dtype_name(t->dtype));
        return false;
    }
    return true;
}

static inline bool rl_check_same_dtype(rl_ctx *ctx, const char *op, const rl_tensor *a,
                                       const rl_tensor *b) {
    if (a->dtype != b->dtype) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: dtypes differ (%s and %s); both inputs must have the same dtype", op,
                    rl_dtype_name(a->dtype), rl_dtype_name(b->dtype));
        return false;
    }
    return true;
}

static inline bool rl_check_i32(rl_ctx *ctx, const char *op, int i, const rl_tensor *t) {
    if (t->dtype != RL_I32) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: input %d ('%s') is %s; it must be i32 (indices)", op, i,
                    t->name[0] ? t->name : "unnamed", rl_dtype_name(t->dtype));
        return false;
    }
    return true;
}

/* Helpers for gradient-check case tables. */
#define RL_GC_F(lo_, hi_, nd, ...) \
    { .dtype = RL_F64, .ndim = nd, .shape = {__VA_ARGS__}, .lo = lo_, .hi = hi_ }
#define RL_GC_I(lo_, hi_, nd, ...) \
    { .dtype = RL_I32, .ndim = nd, .shape = {__VA_ARGS__}, .lo = lo_, .hi = hi_ }
#define RL_GC_CASES(name, ...)                                                     \
    static const rl_gc_case rl_gc_case_list_##name[] = {__VA_ARGS__};              \
    const rl_gc_cases rl_gc_cases_##name = {                                       \
        (int)(sizeof rl_gc_case_list_##name / sizeof rl_gc_case_list_##name[0]),   \
        rl_gc_case_list_##name}

/* Number of elements of a gradient-check input. */
static inline int64_t rl_gc_numel(const rl_gc_input *in) { return rl_shape_numel(in->ndim, in->shape); }

#endif
