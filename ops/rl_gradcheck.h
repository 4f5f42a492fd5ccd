/* ops/rl_gradcheck.h - gradient checking against central differences in
 * float64, for single ops (cases generated from the op table), and for any
 * function of tensors (recipes, models, user plug-ins).
 *
 * Method: pick a fixed random cotangent R of the output's shape; the analytic
 * side is backward seeded with R (so it checks J^T R for every input); the
 * numeric side perturbs each input element by +-h and differentiates the
 * scalar <f(x), R> by central differences. Agreement per element:
 *   |analytic - numeric| <= atol + rtol * max(|analytic|, |numeric|).
 */
#ifndef RL_GRADCHECK_H
#define RL_GRADCHECK_H

#include "rl_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RL_GC_MAX_IN 6

/* One input of a gradient-check case. Float inputs are drawn uniformly in
 * [lo, hi]; i32 inputs uniformly among the integers in [lo, hi). */
typedef struct rl_gc_input {
    rl_dtype dtype;          /* RL_F64 (float input, run as f64 and f32) or RL_I32 */
    int ndim;
    int64_t shape[RL_MAX_DIMS];
    double lo, hi;
    int no_grad;             /* a float input that is not differentiated (a condition) */
} rl_gc_input;

struct rl_gc_case;
/* Builds the output from the inputs (arena tensors or persistent ones). */
typedef rl_tensor *(*rl_gc_apply_fn)(rl_ctx *ctx, rl_tensor **in, const struct rl_gc_case *c);
/* Adjusts the drawn host values (one double array per input) before the
 * check, e.g. to keep points away from kinks or ties. */
typedef void (*rl_gc_prepare_fn)(double **vals, const struct rl_gc_case *c);

typedef struct rl_gc_case {
    const char *label;       /* "broadcast [2,3] + [3]" */
    int n_in;
    rl_gc_input in[RL_GC_MAX_IN];
    rl_gc_apply_fn apply;
    rl_gc_prepare_fn prepare; /* optional */
    rl_attrs attrs;          /* the op's attributes, as rl_op_call takes them */
    double f32_tol;          /* f32 vs f64 tolerance; 0 means the default */
    int composite;           /* apply is not the op's own call (rl_transpose, a
                                backward-only kernel through its parent): the
                                recipe-interpreter test skips it */
} rl_gc_case;

typedef struct rl_gc_cases {
    int n;
    const rl_gc_case *cases;
} rl_gc_cases;

typedef struct rl_gc_opts {
    double h;                /* finite-difference step (default 1e-6) */
    double atol, rtol;       /* default 1e-6, 1e-5 */
    int max_elems;           /* elements checked per input, sampled (default 64) */
    uint64_t seed;
    int verbose;             /* print each failing element */
} rl_gc_opts;

typedef struct rl_gc_result {
    int n_checked;           /* elements compared */
    double max_abs, max_rel; /* worst analytic-vs-numeric errors */
    double f32_max_err;      /* worst |f32 - f64| / (1 + |f64|), forward and backward */
    int passed;
    char msg[512];           /* why it failed (first reason) */
} rl_gc_result;

void rl_gc_opts_default(rl_gc_opts *o);

/* Generic check: `inputs` are persistent f64 tensors (or i32 ones); those with
 * RL_TF_REQUIRES_GRAD are checked. fn builds the output each call. */
typedef rl_tensor *(*rl_gc_fn)(rl_ctx *ctx, rl_tensor **inputs, void *user);
rl_status rl_gradcheck_fn(rl_ctx *ctx, rl_gc_fn fn, void *user, int n, rl_tensor **inputs,
                          const rl_gc_opts *opts, rl_gc_result *res);

/* One case of an op (runs f64 gradcheck and the f32-vs-f64 comparison). */
rl_status rl_gradcheck_case(rl_op op, const rl_gc_case *c, const rl_gc_opts *opts,
                            rl_gc_result *res);
/* Every case of an op; res gets the worst figures. */
rl_status rl_gradcheck_op(rl_op op, const rl_gc_opts *opts, rl_gc_result *res);

/* The cases of each op (generated from ops/ops.def). */
extern const rl_gc_cases *const rl_op_gc_cases[RL_OP_COUNT];

#ifdef __cplusplus
}
#endif
#endif
