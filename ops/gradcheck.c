/* ops/gradcheck.c - gradient checking in float64 against central
 * differences, and the f32-vs-f64 comparison of every op (forward and
 * backward). See rl_gradcheck.h for the method.
 */
#include "rl_gradcheck.h"

#include "rl_ops.h"
#include "rl_rng.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rl_gc_opts_default(rl_gc_opts *o) {
    o->h = 1e-6;
    o->atol = 1e-6;
    o->rtol = 1e-5;
    o->max_elems = 64;
    o->seed = 1234;
    o->verbose = 0;
}

static void rl_gc_fail(rl_gc_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rl_gc_fail(rl_gc_result *res, const char *fmt, ...) {
    if (!res->passed) return; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    va_end(ap);
    res->passed = 0;
}

/* Reads a tensor into a fresh array of doubles. */
static double *rl_gc_read(rl_ctx *ctx, const rl_tensor *t) {
    double *v = malloc(sizeof(double) * (size_t)(t->numel ? t->numel : 1));
    if (!v) return NULL;
    size_t bytes = (size_t)t->numel * rl_dtype_size(t->dtype);
    void *raw = malloc(bytes ? bytes : 8);
    if (!raw) {
        free(v);
        return NULL;
    }
    rl_tensor_read(ctx, t, raw, bytes);
    for (int64_t i = 0; i < t->numel; i++)
        v[i] = t->dtype == RL_F64 ? ((double *)raw)[i]
             : t->dtype == RL_F32 ? ((float *)raw)[i] : ((int32_t *)raw)[i];
    free(raw);
    return v;
}

static void rl_gc_write(rl_ctx *ctx, rl_tensor *t, const double *v) {
    size_t bytes = (size_t)t->numel * rl_dtype_size(t->dtype);
    void *raw = malloc(bytes ? bytes : 8);
    if (!raw) return;
    for (int64_t i = 0; i < t->numel; i++) {
        if (t->dtype == RL_F64) ((double *)raw)[i] = v[i];
        else if (t->dtype == RL_F32) ((float *)raw)[i] = (float)v[i];
        else ((int32_t *)raw)[i] = (int32_t)v[i];
    }
    rl_tensor_write(ctx, t, raw, bytes);
    free(raw);
}

static double rl_gc_dot(rl_ctx *ctx, const rl_tensor *out, const double *r) {
    double *o = rl_gc_read(ctx, out);
    if (!o) return NAN;
    double s = 0;
    for (int64_t i = 0; i < out->numel; i++) s += o[i] * r[i];
    free(o);
    return s;
}

rl_status rl_gradcheck_fn(rl_ctx *ctx, rl_gc_fn fn, void *user, int n, rl_tensor **inputs,
                          const rl_gc_opts *opts_in, rl_gc_result *res) {
    rl_gc_opts opts;
    if (opts_in) opts = *opts_in;
    else rl_gc_opts_default(&opts);
    memset(res, 0, sizeof *res);
    res->passed = 1;
    rl_rng rng;
    rl_rng_seed(&rng, opts.seed ^ 0x5eedull);

    rl_ctx_reset(ctx);
    int prev_grad = rl_ctx_set_grad(ctx, 1);
    for (int i = 0; i < n; i++) rl_tensor_zero_grad(ctx, inputs[i]);
    rl_tensor *out = fn(ctx, inputs, user);
    if (!out) {
        rl_gc_fail(res, "building the output failed: %s", rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "?");
        rl_ctx_set_grad(ctx, prev_grad);
        return RL_ERR_ARG;
    }
    if (out->dtype != RL_F64) {
        rl_gc_fail(res, "the output is %s; gradient checks run in f64", rl_dtype_name(out->dtype));
        rl_ctx_set_grad(ctx, prev_grad);
        return RL_ERR_ARG;
    }
    int64_t m = out->numel;
    double *r = malloc(sizeof(double) * (size_t)(m ? m : 1));
    for (int64_t i = 0; i < m; i++) r[i] = 2 * rl_rng_uniform(&rng) - 1;
    rl_tensor *seed = rl_const(ctx, RL_F64, out->ndim, out->shape, r);
    if (!(out->flags & RL_TF_REQUIRES_GRAD)) {
        rl_gc_fail(res, "the output does not depend on any input that requires a gradient");
        free(r);
        rl_ctx_set_grad(ctx, prev_grad);
        return RL_ERR_STATE;
    }
    if (rl_backward_seeded(ctx, out, seed) != RL_OK) {
        rl_gc_fail(res, "backward failed: %s", rl_ctx_error(ctx));
        free(r);
        rl_ctx_set_grad(ctx, prev_grad);
        return rl_ctx_status(ctx);
    }
    rl_ctx_set_grad(ctx, 0);
    for (int k = 0; k < n && res->passed; k++) {
        rl_tensor *x = inputs[k];
        if (!(x->flags & RL_TF_REQUIRES_GRAD)) continue;
        double *ana = rl_gc_read(ctx, x->grad);
        double *xv = rl_gc_read(ctx, x);
        int64_t cnt = x->numel < opts.max_elems ? x->numel : opts.max_elems;
        for (int64_t j = 0; j < cnt; j++) {
            int64_t e = x->numel <= opts.max_elems ? j : (int64_t)(rl_rng_uniform(&rng) * (double)x->numel);
            double x0 = xv[e];
            xv[e] = x0 + opts.h;
            rl_gc_write(ctx, x, xv);
            rl_ctx_reset(ctx);
            rl_tensor *o1 = fn(ctx, inputs, user);
            double fp = o1 ? rl_gc_dot(ctx, o1, r) : NAN;
            xv[e] = x0 - opts.h;
            rl_gc_write(ctx, x, xv);
            rl_ctx_reset(ctx);
            rl_tensor *o2 = fn(ctx, inputs, user);
            double fm = o2 ? rl_gc_dot(ctx, o2, r) : NAN;
            xv[e] = x0;
            rl_gc_write(ctx, x, xv);
            double num = (fp - fm) / (2 * opts.h);
            double a = ana[e];
            double err = fabs(a - num);
            double scale = fmax(fabs(a), fabs(num));
            double rel = scale > 0 ? err / scale : 0;
            res->n_checked++;
            if (err > res->max_abs) res->max_abs = err;
            if (scale >= 1e-4 && rel > res->max_rel) res->max_rel = rel; /* rel of tiny values is noise */
            if (!(err <= opts.atol + opts.rtol * scale)) {
                if (opts.verbose)
                    fprintf(stderr, "  %s[%lld]: analytic %.10g numeric %.10g\n", x->name,
                            (long long)e, a, num);
                rl_gc_fail(res, "input %d ('%s') element %lld: analytic %.10g, numeric %.10g", k,
                           x->name, (long long)e, a, num);
            }
        }
        free(ana);
        free(xv);
    }
    free(r);
    rl_ctx_reset(ctx);
    rl_ctx_set_grad(ctx, prev_grad);
    if (rl_ctx_status(ctx)) {
        rl_gc_fail(res, "%s", rl_ctx_error(ctx));
        return rl_ctx_status(ctx);
    }
    return RL_OK;
}

/* ---- op cases ------------------------------------------------------------ */

typedef struct rl_gc_case_run {
    const rl_gc_case *c;
} rl_gc_case_run;

static rl_tensor *rl_gc_case_apply(rl_ctx *ctx, rl_tensor **in, void *user) {
    const rl_gc_case *c = ((rl_gc_case_run *)user)->c;
    return c->apply(ctx, in, c);
}

/* Creates persistent inputs of dtype `fdt` for float inputs from host values. */
static int rl_gc_make_inputs(rl_ctx *ctx, const rl_gc_case *c, double **vals, rl_dtype fdt,
                             int with_grad, rl_tensor **in) {
    for (int i = 0; i < c->n_in; i++) {
        const rl_gc_input *gi = &c->in[i];
        rl_dtype dt = gi->dtype == RL_I32 ? RL_I32 : fdt;
        char name[16];
        snprintf(name, sizeof name, "in%d", i);
        in[i] = rl_tensor_new(ctx, dt, gi->ndim, gi->shape, name);
        if (!in[i]) return -1;
        rl_gc_write(ctx, in[i], vals[i]);
        if (with_grad && dt != RL_I32 && !gi->no_grad && rl_tensor_requires_grad(ctx, in[i]) != RL_OK)
            return -1;
    }
    return 0;
}

static void rl_gc_free_inputs(rl_ctx *ctx, int n, rl_tensor **in) {
    for (int i = 0; i < n; i++) rl_tensor_free(ctx, in[i]), in[i] = NULL;
}

static double rl_gc_cmp(const double *a32, const double *a64, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(a32[i] - a64[i]) / (1 + fabs(a64[i]));
        if (!(e <= worst)) worst = e; /* NaN propagates as worst */
    }
    return worst;
}

/* Runs forward (+ backward seeded with r when the op has a gradient) in one
 * dtype and returns the output and the input gradients as doubles. */
static int rl_gc_run_dtype(rl_ctx *ctx, rl_op op, const rl_gc_case *c, double **vals, rl_dtype dt,
                           const double *r, double **out_v, int64_t *out_n, double **grads) {
    rl_tensor *in[RL_GC_MAX_IN] = {0};
    int ok = -1;
    bool has_grad = !(rl_op_table[op].flags & OPF_NOGRAD);
    rl_ctx_reset(ctx);
    if (rl_gc_make_inputs(ctx, c, vals, dt, has_grad, in) == 0) {
        rl_tensor *out = c->apply(ctx, in, c);
        if (out) {
            *out_n = out->numel;
            *out_v = rl_gc_read(ctx, out);
            ok = 0;
            if (has_grad && r && (out->flags & RL_TF_REQUIRES_GRAD)) {
                double *rr = malloc(sizeof(double) * (size_t)(out->numel ? out->numel : 1));
                memcpy(rr, r, sizeof(double) * (size_t)out->numel);
                rl_tensor *seed = rl_const(ctx, RL_F64, out->ndim, out->shape, rr);
                if (dt == RL_F32) {
                    /* the seed must match the output's dtype */
                    float *rf = malloc(sizeof(float) * (size_t)(out->numel ? out->numel : 1));
                    for (int64_t i = 0; i < out->numel; i++) rf[i] = (float)rr[i];
                    seed = rl_const(ctx, RL_F32, out->ndim, out->shape, rf);
                    free(rf);
                }
                free(rr);
                if (rl_backward_seeded(ctx, out, seed) == RL_OK) {
                    for (int i = 0; i < c->n_in; i++)
                        grads[i] = in[i]->grad ? rl_gc_read(ctx, in[i]->grad) : NULL;
                } else {
                    ok = -1;
                }
            }
        }
    }
    rl_ctx_reset(ctx);
    rl_gc_free_inputs(ctx, c->n_in, in);
    return ok;
}

rl_status rl_gradcheck_case(rl_op op, const rl_gc_case *c, const rl_gc_opts *opts_in,
                            rl_gc_result *res) {
    rl_gc_opts opts;
    if (opts_in) opts = *opts_in;
    else rl_gc_opts_default(&opts);
    memset(res, 0, sizeof *res);
    res->passed = 1;
    rl_ctx *ctx = rl_ctx_new("cpu");
    if (!ctx) {
        rl_gc_fail(res, "could not create a cpu context");
        return RL_ERR_BACKEND;
    }
    /* draw the inputs */
    rl_rng rng;
    rl_rng_seed(&rng, opts.seed);
    double *vals[RL_GC_MAX_IN] = {0};
    for (int i = 0; i < c->n_in; i++) {
        const rl_gc_input *gi = &c->in[i];
        int64_t n = rl_shape_numel(gi->ndim, gi->shape);
        vals[i] = malloc(sizeof(double) * (size_t)(n ? n : 1));
        for (int64_t j = 0; j < n; j++) {
            double u = rl_rng_uniform(&rng);
            vals[i][j] = gi->dtype == RL_I32 ? floor(gi->lo + u * (gi->hi - gi->lo))
                                             : gi->lo + u * (gi->hi - gi->lo);
        }
    }
    if (c->prepare) c->prepare(vals, c);

    bool has_grad = !(rl_op_table[op].flags & OPF_NOGRAD);
    rl_status st = RL_OK;
    /* 1. f64 gradient check against central differences */
    if (has_grad) {
        rl_tensor *in[RL_GC_MAX_IN] = {0};
        if (rl_gc_make_inputs(ctx, c, vals, RL_F64, 1, in) == 0) {
            rl_gc_case_run run = {c};
            st = rl_gradcheck_fn(ctx, rl_gc_case_apply, &run, c->n_in, in, &opts, res);
        } else {
            rl_gc_fail(res, "could not create inputs: %s", rl_ctx_error(ctx));
            st = RL_ERR_ARG;
        }
        rl_gc_free_inputs(ctx, c->n_in, in);
    } else {
        /* no gradient: the output must not be recorded on the tape */
        rl_tensor *in[RL_GC_MAX_IN] = {0};
        if (rl_gc_make_inputs(ctx, c, vals, RL_F64, 1, in) == 0) {
            rl_tensor *out = c->apply(ctx, in, c);
            if (!out) rl_gc_fail(res, "forward failed: %s", rl_ctx_error(ctx));
            else if (out->flags & RL_TF_REQUIRES_GRAD)
                rl_gc_fail(res, "'%s' has no gradient but its output was recorded as needing one",
                           rl_op_table[op].name);
        }
        rl_ctx_reset(ctx);
        rl_gc_free_inputs(ctx, c->n_in, in);
    }
    /* 2. f32 against f64, forward and backward */
    if (res->passed) {
        rl_rng_seed(&rng, opts.seed ^ 0xf32ull);
        double *o64 = NULL, *o32 = NULL, *g64[RL_GC_MAX_IN] = {0}, *g32[RL_GC_MAX_IN] = {0};
        int64_t n64 = 0, n32 = 0;
        double *r = NULL;
        /* first a forward to learn the output size for the cotangent */
        if (rl_gc_run_dtype(ctx, op, c, vals, RL_F64, NULL, &o64, &n64, g64) == 0) {
            free(o64);
            o64 = NULL;
            r = malloc(sizeof(double) * (size_t)(n64 ? n64 : 1));
            for (int64_t i = 0; i < n64; i++) r[i] = 2 * rl_rng_uniform(&rng) - 1;
        }
        if (!r || rl_gc_run_dtype(ctx, op, c, vals, RL_F64, r, &o64, &n64, g64) ||
            rl_gc_run_dtype(ctx, op, c, vals, RL_F32, r, &o32, &n32, g32)) {
            rl_gc_fail(res, "f32/f64 comparison run failed: %s",
                       rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "?");
        } else {
            double tol = c->f32_tol > 0 ? c->f32_tol : 1e-4;
            double e = rl_gc_cmp(o32, o64, n64);
            res->f32_max_err = e;
            if (!(e <= tol)) rl_gc_fail(res, "f32 forward differs from f64 by %.3g (tolerance %.3g)", e, tol);
            for (int i = 0; i < c->n_in; i++) {
                if (!g64[i] || !g32[i]) continue;
                int64_t gn = rl_shape_numel(c->in[i].ndim, c->in[i].shape);
                double ge = rl_gc_cmp(g32[i], g64[i], gn);
                if (!(ge <= res->f32_max_err)) res->f32_max_err = ge;
                if (!(ge <= tol))
                    rl_gc_fail(res, "f32 gradient of input %d differs from f64 by %.3g (tolerance %.3g)",
                               i, ge, tol);
            }
        }
        free(r);
        free(o64);
        free(o32);
        for (int i = 0; i < RL_GC_MAX_IN; i++) free(g64[i]), free(g32[i]);
    }
    for (int i = 0; i < c->n_in; i++) free(vals[i]);
    if (rl_ctx_status(ctx) && res->passed) rl_gc_fail(res, "%s", rl_ctx_error(ctx));
    rl_ctx_free(ctx);
    if (!res->passed && st == RL_OK) st = RL_ERR_STATE;
    return st;
}

rl_status rl_gradcheck_op(rl_op op, const rl_gc_opts *opts, rl_gc_result *res) {
    memset(res, 0, sizeof *res);
    res->passed = 1;
    const rl_gc_cases *cs = rl_op_gc_cases[op];
    if (!cs || cs->n == 0) {
        snprintf(res->msg, sizeof res->msg, "op '%s' has no gradient-check cases",
                 rl_op_table[op].name);
        res->passed = 0;
        return RL_ERR_STATE;
    }
    rl_status st = RL_OK;
    for (int i = 0; i < cs->n; i++) {
        rl_gc_result r;
        rl_status s = rl_gradcheck_case(op, &cs->cases[i], opts, &r);
        res->n_checked += r.n_checked;
        if (r.max_abs > res->max_abs) res->max_abs = r.max_abs;
        if (r.max_rel > res->max_rel) res->max_rel = r.max_rel;
        if (!(r.f32_max_err <= res->f32_max_err)) res->f32_max_err = r.f32_max_err;
        if (!r.passed && res->passed) {
            res->passed = 0;
            snprintf(res->msg, sizeof res->msg, "case '%.60s': %.400s", cs->cases[i].label, r.msg);
            st = s ? s : RL_ERR_STATE;
        }
    }
    return st;
}
