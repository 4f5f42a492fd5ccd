/* tests/test_optim.c - optimizers, gradient clipping and learning-rate
 * schedules (engine/rl_optim.h) against formulas evaluated here with plain
 * doubles, and against numbers worked out by hand in the comments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rl_optim.h"
#include "rl_ops.h"

/* ---- helpers ---------------------------------------------------------------- */

static rl_tensor *make_param(rl_ctx *ctx, rl_dtype dt, int64_t n, const double *v, const char *name) {
    rl_tensor *p = rl_param_new(ctx, dt, 1, (int64_t[]){n}, name);
    assert_non_null(p);
    for (int64_t i = 0; i < n; i++) rl_tensor_set(ctx, p, i, v[i]);
    return p;
}

static void set_grad(rl_ctx *ctx, rl_tensor *p, const double *g) {
    for (int64_t i = 0; i < p->numel; i++) rl_tensor_set(ctx, p->grad, i, g[i]);
}

/* |a - b| <= tol * max(1, |b|) */
static void assert_close(double got, double want, double tol, const char *what) {
    double err = fabs(got - want) / fmax(1.0, fabs(want));
    if (!(err <= tol)) fail_msg("%s: got %.17g, want %.17g (rel err %.3g > %.3g)", what, got, want, err, tol);
}

static void assert_error_contains(rl_ctx *ctx, const char *needle) {
    const char *e = rl_ctx_error(ctx);
    if (!e) fail_msg("expected an error containing '%s', got none", needle);
    if (!strstr(e, needle)) fail_msg("error '%s' does not contain '%s'", e, needle);
}

/* Scalar re-implementations, written from the formulas, element by element. */
static void ref_adamw(double *p, double *m, double *v, const double *g, int n, int64_t t, double lr,
                      double b1, double b2, double eps, double wd) {
    for (int i = 0; i < n; i++) {
        p[i] = p[i] - lr * wd * p[i];
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        double mh = m[i] / (1 - pow(b1, (double)t));
        double vh = v[i] / (1 - pow(b2, (double)t));
        p[i] = p[i] - lr * mh / (sqrt(vh) + eps);
    }
}

static void ref_sgd(double *p, double *buf, const double *g, int n, double lr, double mu, double wd,
                    int nesterov) {
    for (int i = 0; i < n; i++) {
        double d = g[i] + wd * p[i];
        if (mu > 0) {
            buf[i] = mu * buf[i] + d;
            d = nesterov ? d + mu * buf[i] : buf[i];
        }
        p[i] -= lr * d;
    }
}

/* ---- AdamW ------------------------------------------------------------------ */

static void check_adamw(rl_dtype dt, double wd, double tol) {
    rl_ctx *ctx = rl_ctx_new(NULL);
    double p0[3] = {0.5, -1.0, 2.0};
    double grads[3][3] = {{0.2, 0.3, -1.5}, {-0.4, 0.3, 0.01}, {0.1, -2.0, 0.7}};
    rl_tensor *p = make_param(ctx, dt, 3, p0, "w");
    rl_adamw_cfg cfg = rl_adamw_cfg_default();
    cfg.weight_decay = wd;
    rl_optim *opt = rl_optim_adamw_new(ctx, &p, 1, &cfg);
    assert_non_null(opt);
    assert_string_equal(rl_optim_kind(opt), "adamw");
    assert_int_equal(rl_optim_n_state(opt), 2);
    assert_string_equal(rl_optim_state_name(opt, 0), "exp_avg");
    assert_string_equal(rl_optim_state_name(opt, 1), "exp_avg_sq");
    assert_null(rl_optim_state_name(opt, 2));

    double rp[3], rm[3] = {0}, rv[3] = {0};
    memcpy(rp, p0, sizeof rp);
    double lrs[3] = {0.1, 0.05, 0.1}; /* the lr changes too, as under a schedule */
    for (int s = 0; s < 3; s++) {
        set_grad(ctx, p, grads[s]);
        assert_int_equal(rl_optim_step(opt, lrs[s]), RL_OK);
        ref_adamw(rp, rm, rv, grads[s], 3, s + 1, lrs[s], 0.9, 0.999, 1e-8, wd);
        assert_int_equal(rl_optim_step_count(opt), s + 1);
        for (int i = 0; i < 3; i++) {
            assert_close(rl_tensor_get(ctx, p, i), rp[i], tol, "adamw param");
            assert_close(rl_tensor_get(ctx, rl_optim_state(opt, 0, 0), i), rm[i], tol, "adamw m");
            assert_close(rl_tensor_get(ctx, rl_optim_state(opt, 0, 1), i), rv[i], tol, "adamw v");
        }
        if (s == 0 && wd == 0.0) {
            /* By hand, step 1, element 0 (g = 0.2, lr = 0.1): m = 0.1*0.2 = 0.02,
             * v = 0.001*0.04 = 4e-5, m_hat = 0.02/0.1 = 0.2, v_hat = 4e-5/0.001 =
             * 0.04, sqrt = 0.2: p = 0.5 - 0.1*0.2/(0.2 + 1e-8) = 0.5 - 0.1*(1 - 5e-8)
             * = 0.400000005 (the first Adam step moves by lr * sign(g)). */
            assert_close(rl_tensor_get(ctx, p, 0), 0.400000005, tol, "adamw step 1 by hand");
            assert_close(rl_tensor_get(ctx, rl_optim_state(opt, 0, 0), 0), 0.02, tol, "m by hand");
            assert_close(rl_tensor_get(ctx, rl_optim_state(opt, 0, 1), 0), 4e-5, tol, "v by hand");
            /* element 1 moves by -lr, element 2 (g < 0) by +lr */
            assert_close(rl_tensor_get(ctx, p, 1), -1.1, 1e-6, "adamw step 1 sign");
            assert_close(rl_tensor_get(ctx, p, 2), 2.1, 1e-6, "adamw step 1 sign");
        }
        if (s == 0 && wd > 0.0) {
            /* By hand, decay first with the current lr: 0.5*(1 - 0.1*0.01) = 0.4995,
             * then the Adam step of 0.0999999950: p = 0.399500005. */
            assert_close(rl_tensor_get(ctx, p, 0), 0.399500005, tol, "adamw+wd step 1 by hand");
        }
        if (s == 1 && wd == 0.0) {
            /* By hand, step 2, element 0 (g = -0.4, lr = 0.05):
             * m = 0.9*0.02 + 0.1*(-0.4) = -0.022; v = 0.999*4e-5 + 0.001*0.16 = 1.9996e-4;
             * bias corrections 1 - 0.81 = 0.19 and 1 - 0.998001 = 0.001999;
             * m_hat = -0.022/0.19 = -0.115789473684; v_hat = 1.9996e-4/0.001999 =
             * 0.100030015008, sqrt = 0.316275220;
             * p = 0.400000005 + 0.05*0.115789473684/(0.316275220 + 1e-8) = 0.418305181. */
            assert_close(rl_tensor_get(ctx, p, 0), 0.418305181, dt == RL_F32 ? 1e-6 : 1e-8,
                         "adamw step 2 by hand");
        }
    }
    rl_optim_free(opt);
    rl_tensor_free(ctx, p);
    assert_null(rl_ctx_error(ctx));
    rl_ctx_free(ctx);
}

static void test_adamw_f64(void **state) {
    (void)state;
    check_adamw(RL_F64, 0.0, 1e-12);
    check_adamw(RL_F64, 0.01, 1e-12);
}

static void test_adamw_f32(void **state) {
    (void)state;
    check_adamw(RL_F32, 0.0, 2e-6);
    check_adamw(RL_F32, 0.01, 2e-6);
}

/* Two parameters of different dtypes in one optimizer, with per-parameter
 * weight decay (the bias gets none). */
static void test_adamw_mixed_and_per_param_decay(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    double w0[2] = {1.0, -2.0}, b0[1] = {0.5};
    rl_tensor *params[2] = {make_param(ctx, RL_F32, 2, w0, "w"), make_param(ctx, RL_F64, 1, b0, "b")};
    rl_adamw_cfg cfg = {.beta1 = 0.8, .beta2 = 0.99, .eps = 1e-6, .weight_decay = 0.1};
    rl_optim *opt = rl_optim_adamw_new(ctx, params, 2, &cfg);
    assert_non_null(opt);
    assert_int_equal(rl_optim_set_weight_decay(opt, 1, 0.0), RL_OK);
    double rw[2] = {1.0, -2.0}, rb[1] = {0.5}, mw[2] = {0}, vw[2] = {0}, mb[1] = {0}, vb[1] = {0};
    double gw[2][2] = {{0.5, -0.25}, {1.0, 2.0}}, gb[2][1] = {{-3.0}, {0.125}};
    for (int s = 0; s < 2; s++) {
        set_grad(ctx, params[0], gw[s]);
        set_grad(ctx, params[1], gb[s]);
        assert_int_equal(rl_optim_step(opt, 0.01), RL_OK);
        ref_adamw(rw, mw, vw, gw[s], 2, s + 1, 0.01, 0.8, 0.99, 1e-6, 0.1);
        ref_adamw(rb, mb, vb, gb[s], 1, s + 1, 0.01, 0.8, 0.99, 1e-6, 0.0);
    }
    for (int i = 0; i < 2; i++) assert_close(rl_tensor_get(ctx, params[0], i), rw[i], 2e-6, "w");
    assert_close(rl_tensor_get(ctx, params[1], 0), rb[0], 1e-12, "b");
    /* state tensors follow each parameter's dtype and shape */
    assert_int_equal(rl_optim_state(opt, 0, 1)->dtype, RL_F32);
    assert_int_equal(rl_optim_state(opt, 1, 0)->dtype, RL_F64);
    assert_int_equal(rl_optim_state(opt, 0, 0)->numel, 2);
    assert_null(rl_optim_state(opt, 2, 0));
    assert_null(rl_optim_state(opt, 0, 2));
    assert_ptr_equal(rl_optim_param(opt, 1), params[1]);
    assert_int_equal(rl_optim_n_params(opt), 2);
    rl_optim_free(opt);
    rl_tensor_free(ctx, params[0]);
    rl_tensor_free(ctx, params[1]);
    rl_ctx_free(ctx);
}

/* Saving and restoring (m, v, t) through the accessors resumes exactly:
 * a fresh optimizer given the state of one that took 3 steps takes the same
 * 4th step. Without the step count, its bias correction would be step 1's. */
static void test_adamw_state_roundtrip(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    double p0[2] = {0.3, -0.7};
    double g[4][2] = {{0.1, 0.2}, {-0.3, 0.4}, {0.5, -0.6}, {0.05, 0.05}};
    rl_tensor *a = make_param(ctx, RL_F64, 2, p0, "a");
    rl_tensor *b = make_param(ctx, RL_F64, 2, p0, "b");
    rl_optim *oa = rl_optim_adamw_new(ctx, &a, 1, NULL);
    for (int s = 0; s < 3; s++) {
        set_grad(ctx, a, g[s]);
        assert_int_equal(rl_optim_step(oa, 1e-2), RL_OK);
    }
    rl_optim *ob = rl_optim_adamw_new(ctx, &b, 1, NULL);
    double buf[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(rl_tensor_read(ctx, rl_optim_state(oa, 0, k), buf, sizeof buf), RL_OK);
        assert_int_equal(rl_tensor_write(ctx, rl_optim_state(ob, 0, k), buf, sizeof buf), RL_OK);
    }
    assert_int_equal(rl_tensor_read(ctx, a, buf, sizeof buf), RL_OK);
    assert_int_equal(rl_tensor_write(ctx, b, buf, sizeof buf), RL_OK);
    assert_int_equal(rl_optim_set_step_count(ob, rl_optim_step_count(oa)), RL_OK);
    assert_int_equal(rl_optim_step_count(ob), 3);
    set_grad(ctx, a, g[3]);
    set_grad(ctx, b, g[3]);
    assert_int_equal(rl_optim_step(oa, 1e-2), RL_OK);
    assert_int_equal(rl_optim_step(ob, 1e-2), RL_OK);
    for (int i = 0; i < 2; i++) assert_true(rl_tensor_get(ctx, a, i) == rl_tensor_get(ctx, b, i));

    /* a wrong step count gives a different update: the count is really used */
    assert_int_equal(rl_optim_set_step_count(ob, 0), RL_OK);
    assert_int_equal(rl_optim_step(oa, 1e-2), RL_OK);
    assert_int_equal(rl_optim_step(ob, 1e-2), RL_OK);
    assert_true(rl_tensor_get(ctx, a, 0) != rl_tensor_get(ctx, b, 0));

    assert_int_equal(rl_optim_set_step_count(ob, -1), RL_ERR_ARG);
    assert_error_contains(ctx, "rl_optim_set_step_count");
    rl_optim_free(oa);
    rl_optim_free(ob);
    rl_tensor_free(ctx, a);
    rl_tensor_free(ctx, b);
    rl_ctx_free(ctx);
}

/* ---- SGD ------------------------------------------------------------------------ */

static void check_sgd(rl_dtype dt, double mu, double wd, int nesterov, double tol) {
    rl_ctx *ctx = rl_ctx_new(NULL);
    double p0[2] = {1.0, -0.5};
    double grads[3][2] = {{0.5, 0.25}, {-1.0, 0.5}, {2.0, -0.125}};
    rl_tensor *p = make_param(ctx, dt, 2, p0, "w");
    rl_sgd_cfg cfg = {.momentum = mu, .weight_decay = wd, .nesterov = nesterov};
    rl_optim *opt = rl_optim_sgd_new(ctx, &p, 1, &cfg);
    assert_non_null(opt);
    assert_string_equal(rl_optim_kind(opt), "sgd");
    assert_int_equal(rl_optim_n_state(opt), mu > 0 ? 1 : 0);
    double rp[2] = {1.0, -0.5}, rb[2] = {0};
    for (int s = 0; s < 3; s++) {
        set_grad(ctx, p, grads[s]);
        assert_int_equal(rl_optim_step(opt, 0.1), RL_OK);
        ref_sgd(rp, rb, grads[s], 2, 0.1, mu, wd, nesterov);
        for (int i = 0; i < 2; i++) assert_close(rl_tensor_get(ctx, p, i), rp[i], tol, "sgd param");
        if (mu > 0)
            for (int i = 0; i < 2; i++)
                assert_close(rl_tensor_get(ctx, rl_optim_state(opt, 0, 0), i), rb[i], tol, "sgd buf");
    }
    /* By hand, element 0 (p = 1, g = 0.5, -1, 2, lr = 0.1):
     *   plain:        1 - 0.05 + 0.1 - 0.2                        = 0.85
     *   momentum 0.9: buf = 0.5, -0.55, 1.505; p = 0.95, 1.005, 0.8545
     *   wd 0.1 (no momentum): g' = 0.6 -> p = 0.94; g' = -0.906 -> 1.0306;
     *                         g' = 2.10306 -> 0.820294
     *   nesterov 0.9: buf = 0.5, d = 0.95 -> 0.905; buf = -0.55, d = -1.495 -> 1.0545;
     *                 buf = 1.505, d = 3.3545 -> 0.71905 */
    double want = mu == 0 && wd == 0 ? 0.85 : mu > 0 && !nesterov ? 0.8545 : mu == 0 ? 0.820294 : 0.71905;
    assert_close(rl_tensor_get(ctx, p, 0), want, dt == RL_F32 ? 1e-6 : 1e-12, "sgd by hand");
    assert_int_equal(rl_optim_step_count(opt), 3);
    rl_optim_free(opt);
    rl_tensor_free(ctx, p);
    rl_ctx_free(ctx);
}

static void test_sgd(void **state) {
    (void)state;
    for (int dt = RL_F32; dt <= RL_F64; dt++) {
        double tol = dt == RL_F32 ? 1e-6 : 1e-13;
        check_sgd((rl_dtype)dt, 0.0, 0.0, 0, tol);
        check_sgd((rl_dtype)dt, 0.9, 0.0, 0, tol);
        check_sgd((rl_dtype)dt, 0.0, 0.1, 0, tol);
        check_sgd((rl_dtype)dt, 0.9, 0.0, 1, tol);
    }
}

/* The optimizer on gradients from a real backward: loss = p*p, dloss/dp = 2p,
 * so SGD with lr 0.25 halves p each step (3 -> 1.5 -> 0.75 -> 0.375), which
 * only holds if zero_grad clears the accumulated gradient between steps. */
static void test_sgd_with_backward(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    double p0[1] = {3.0};
    rl_tensor *p = make_param(ctx, RL_F64, 1, p0, "p");
    rl_optim *opt = rl_optim_sgd_new(ctx, &p, 1, NULL);
    assert_non_null(opt);
    double want[3] = {1.5, 0.75, 0.375};
    for (int s = 0; s < 3; s++) {
        rl_optim_zero_grad(opt);
        rl_tensor *loss = rl_mul(ctx, p, p);
        assert_int_equal(rl_backward(ctx, loss), RL_OK);
        assert_close(rl_tensor_get(ctx, p->grad, 0), 2 * (s == 0 ? 3.0 : want[s - 1]), 1e-15, "grad");
        assert_int_equal(rl_optim_step(opt, 0.25), RL_OK);
        assert_close(rl_tensor_get(ctx, p, 0), want[s], 1e-15, "p");
        rl_ctx_reset(ctx);
    }
    rl_optim_zero_grad(opt);
    assert_true(rl_tensor_get(ctx, p->grad, 0) == 0.0);
    rl_optim_free(opt);
    rl_tensor_free(ctx, p);
    rl_ctx_free(ctx);
}

/* ---- clipping --------------------------------------------------------------------- */

static void test_clip(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    double z[2] = {0, 0};
    rl_tensor *params[2] = {make_param(ctx, RL_F64, 2, z, "a"), make_param(ctx, RL_F32, 1, z, "b")};
    /* gradients (3, 4) and (12): norm sqrt(9 + 16 + 144) = 13 */
    double ga[2] = {3, 4}, gb[1] = {12};
    set_grad(ctx, params[0], ga);
    set_grad(ctx, params[1], gb);

    /* above the threshold: scaled by 6.5 / (13 + 1e-6) = 0.499999961538... */
    double norm = rl_grad_clip_norm(ctx, params, 2, 6.5);
    assert_close(norm, 13.0, 1e-15, "pre-clip norm");
    double s = 6.5 / (13.0 + 1e-6);
    assert_close(rl_tensor_get(ctx, params[0]->grad, 0), 3 * s, 1e-15, "clipped a0");
    assert_close(rl_tensor_get(ctx, params[0]->grad, 1), 4 * s, 1e-15, "clipped a1");
    assert_close(rl_tensor_get(ctx, params[1]->grad, 0), 12 * s, 1e-7, "clipped b0");
    /* by hand: 1.5 * (1 - 1e-6/13) = 1.49999988461... */
    assert_close(rl_tensor_get(ctx, params[0]->grad, 0), 1.4999998846153937, 1e-14, "by hand");
    /* the clipped norm is max_norm (up to the 1e-6) */
    double again = rl_grad_clip_norm(ctx, params, 2, 100.0);
    assert_close(again, 6.5, 1e-6, "norm after clipping");

    /* below and at the threshold: unchanged (and the norm is still reported) */
    set_grad(ctx, params[0], ga);
    set_grad(ctx, params[1], gb);
    assert_close(rl_grad_clip_norm(ctx, params, 2, 20.0), 13.0, 1e-15, "norm below");
    assert_close(rl_grad_clip_norm(ctx, params, 2, 13.0), 13.0, 1e-15, "norm equal");
    assert_true(rl_tensor_get(ctx, params[0]->grad, 0) == 3.0);
    assert_true(rl_tensor_get(ctx, params[0]->grad, 1) == 4.0);
    assert_true(rl_tensor_get(ctx, params[1]->grad, 0) == 12.0);

    /* one parameter alone */
    assert_close(rl_grad_clip_norm(ctx, params, 1, 1.0), 5.0, 1e-15, "norm of a");
    assert_close(rl_tensor_get(ctx, params[0]->grad, 1), 4.0 / (5.0 + 1e-6), 1e-15, "a1 alone");
    assert_true(rl_tensor_get(ctx, params[1]->grad, 0) == 12.0);

    /* non-finite gradients: the norm says so and nothing is scaled */
    set_grad(ctx, params[0], ga);
    rl_tensor_set(ctx, params[1]->grad, 0, INFINITY);
    assert_true(isinf(rl_grad_clip_norm(ctx, params, 2, 1.0)));
    assert_true(rl_tensor_get(ctx, params[0]->grad, 0) == 3.0);
    rl_tensor_set(ctx, params[1]->grad, 0, NAN);
    assert_true(isnan(rl_grad_clip_norm(ctx, params, 2, 1.0)));
    assert_true(rl_tensor_get(ctx, params[0]->grad, 1) == 4.0);
    assert_null(rl_ctx_error(ctx));
    set_grad(ctx, params[1], gb);
    /* a pending error: nothing happens */
    rl_ctx_fail(ctx, RL_ERR_STATE, "earlier failure");
    assert_true(rl_grad_clip_norm(ctx, params, 2, 1.0) < 0);
    assert_true(rl_tensor_get(ctx, params[0]->grad, 0) == 3.0);
    assert_string_equal(rl_ctx_error(ctx), "earlier failure");
    rl_ctx_clear_error(ctx);

    /* bad max_norm */
    assert_true(rl_grad_clip_norm(ctx, params, 2, 0.0) < 0);
    assert_error_contains(ctx, "max_norm");
    rl_ctx_clear_error(ctx);
    assert_true(rl_grad_clip_norm(ctx, params, 2, NAN) < 0);
    assert_error_contains(ctx, "max_norm");
    rl_ctx_clear_error(ctx);
    /* duplicates would count a gradient twice */
    rl_tensor *dup[2] = {params[0], params[0]};
    assert_true(rl_grad_clip_norm(ctx, dup, 2, 1.0) < 0);
    assert_error_contains(ctx, "same tensor");
    rl_ctx_clear_error(ctx);

    rl_tensor_free(ctx, params[0]);
    rl_tensor_free(ctx, params[1]);
    rl_ctx_free(ctx);
}

/* ---- schedules -------------------------------------------------------------------- */

static void test_schedules(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    rl_lr_sched c = rl_lr_constant(3e-4);
    assert_int_equal(rl_lr_sched_check(ctx, &c), RL_OK);
    assert_true(rl_lr_schedule(&c, 0) == 3e-4);
    assert_true(rl_lr_schedule(&c, 123456789) == 3e-4);

    /* warm-up over W = 4 steps, counted from 0: lr/4, lr/2, 3lr/4, lr, lr, ... */
    rl_lr_sched w = rl_lr_warmup_constant(1.0, 4);
    assert_int_equal(rl_lr_sched_check(ctx, &w), RL_OK);
    assert_close(rl_lr_schedule(&w, 0), 0.25, 1e-15, "warmup 0");
    assert_close(rl_lr_schedule(&w, 1), 0.5, 1e-15, "warmup 1");
    assert_close(rl_lr_schedule(&w, 2), 0.75, 1e-15, "warmup 2");
    assert_close(rl_lr_schedule(&w, 3), 1.0, 1e-15, "warmup 3 (last warm-up step)");
    assert_close(rl_lr_schedule(&w, 4), 1.0, 1e-15, "after warmup");
    assert_close(rl_lr_schedule(&w, 1000000), 1.0, 1e-15, "long after warmup");
    rl_lr_sched w0 = rl_lr_warmup_constant(2.0, 0);
    assert_close(rl_lr_schedule(&w0, 0), 2.0, 1e-15, "no warmup");

    /* cosine: lr 1, min 0.1, W = 10, T = 110 (100 decay steps) */
    rl_lr_sched k = rl_lr_warmup_cosine(1.0, 0.1, 10, 110);
    assert_int_equal(rl_lr_sched_check(ctx, &k), RL_OK);
    assert_close(rl_lr_schedule(&k, 0), 0.1, 1e-15, "cos warmup 0");    /* 1 * 1/10 */
    assert_close(rl_lr_schedule(&k, 4), 0.5, 1e-15, "cos warmup 4");    /* 5/10 */
    assert_close(rl_lr_schedule(&k, 9), 1.0, 1e-15, "cos warmup 9");    /* 10/10 */
    assert_close(rl_lr_schedule(&k, 10), 1.0, 1e-15, "cos start");      /* cos(0) = 1 */
    /* quarter: 0.1 + 0.45 * (1 + cos(pi/4)) = 0.1 + 0.45 * 1.70710678 = 0.868198052 */
    assert_close(rl_lr_schedule(&k, 35), 0.868198052, 1e-9, "cos quarter");
    assert_close(rl_lr_schedule(&k, 60), 0.55, 1e-15, "cos half");      /* (1 + 0.1) / 2 */
    /* one step before the end: 0.1 + 0.45 * (1 + cos(0.99 pi)) = 0.1 + 0.45 * 4.9344e-4 */
    assert_close(rl_lr_schedule(&k, 109), 0.1 + 0.45 * (1 + cos(0.99 * M_PI)), 1e-15, "cos 109");
    assert_true(rl_lr_schedule(&k, 109) > 0.1 && rl_lr_schedule(&k, 109) < 0.1003);
    assert_close(rl_lr_schedule(&k, 110), 0.1, 1e-15, "cos end");
    assert_close(rl_lr_schedule(&k, 5000), 0.1, 1e-15, "past the end");
    for (int64_t s = 10; s < 110; s++)
        assert_true(rl_lr_schedule(&k, s + 1) < rl_lr_schedule(&k, s)); /* strictly decreasing */
    rl_lr_sched k0 = rl_lr_warmup_cosine(2.0, 0.0, 0, 4);
    assert_close(rl_lr_schedule(&k0, 0), 2.0, 1e-15, "cos no warmup 0");
    assert_close(rl_lr_schedule(&k0, 2), 1.0, 1e-15, "cos no warmup half");
    assert_close(rl_lr_schedule(&k0, 4), 0.0, 1e-15, "cos no warmup end");

    /* invalid schedules give nan and a reason */
    rl_lr_sched bad = rl_lr_warmup_cosine(1.0, 0.1, 10, 10);
    assert_true(isnan(rl_lr_schedule(&bad, 3)));
    assert_int_equal(rl_lr_sched_check(ctx, &bad), RL_ERR_ARG);
    assert_error_contains(ctx, "total_steps");
    rl_ctx_clear_error(ctx);
    bad = rl_lr_warmup_cosine(1.0, 2.0, 0, 10);
    assert_int_equal(rl_lr_sched_check(ctx, &bad), RL_ERR_ARG);
    assert_error_contains(ctx, "min_lr");
    rl_ctx_clear_error(ctx);
    bad = rl_lr_warmup_constant(1.0, -1);
    assert_true(isnan(rl_lr_schedule(&bad, 0)));
    assert_int_equal(rl_lr_sched_check(ctx, &bad), RL_ERR_ARG);
    assert_error_contains(ctx, "warmup_steps");
    rl_ctx_clear_error(ctx);
    bad = rl_lr_constant(-1.0);
    assert_int_equal(rl_lr_sched_check(ctx, &bad), RL_ERR_ARG);
    assert_error_contains(ctx, "lr is -1");
    rl_ctx_clear_error(ctx);
    assert_true(isnan(rl_lr_schedule(&c, -1)));
    assert_true(isnan(rl_lr_schedule(NULL, 0)));
    rl_ctx_free(ctx);
}

/* ---- errors ------------------------------------------------------------------------- */

static void test_errors(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    double v[2] = {1, 2};
    rl_tensor *p = make_param(ctx, RL_F32, 2, v, "w");
    rl_tensor *q = make_param(ctx, RL_F64, 2, v, "q");

    assert_null(rl_optim_adamw_new(ctx, NULL, 1, NULL));
    assert_error_contains(ctx, "NULL");
    rl_ctx_clear_error(ctx);

    assert_null(rl_optim_sgd_new(ctx, &p, 0, NULL));
    assert_error_contains(ctx, "n is 0");
    rl_ctx_clear_error(ctx);

    rl_tensor *with_null[2] = {p, NULL};
    assert_null(rl_optim_adamw_new(ctx, with_null, 2, NULL));
    assert_error_contains(ctx, "params[1] is NULL");
    rl_ctx_clear_error(ctx);

    /* a persistent tensor that is not a parameter */
    rl_tensor *plain = rl_tensor_new(ctx, RL_F32, 1, (int64_t[]){2}, "plain");
    rl_tensor *list1[2] = {p, plain};
    assert_null(rl_optim_adamw_new(ctx, list1, 2, NULL));
    assert_error_contains(ctx, "params[1] ('plain', f32 [2]) is not a parameter");
    assert_error_contains(ctx, "rl_param_new");
    rl_ctx_clear_error(ctx);
    /* an arena tensor (data) */
    rl_tensor *data = rl_const(ctx, RL_F32, 1, (int64_t[]){2}, NULL);
    rl_tensor_set_name(data, "x");
    assert_null(rl_optim_sgd_new(ctx, &data, 1, NULL));
    assert_error_contains(ctx, "arena tensor");
    rl_ctx_clear_error(ctx);
    assert_true(rl_grad_clip_norm(ctx, &data, 1, 1.0) < 0);
    assert_error_contains(ctx, "is not a parameter");
    rl_ctx_clear_error(ctx);

    /* the same parameter twice */
    rl_tensor *dup[3] = {p, q, p};
    assert_null(rl_optim_adamw_new(ctx, dup, 3, NULL));
    assert_error_contains(ctx, "params[0] and params[2] are the same tensor ('w')");
    rl_ctx_clear_error(ctx);

    /* bad hyper-parameters */
    rl_adamw_cfg cfg = rl_adamw_cfg_default();
    cfg.beta2 = 1.0;
    assert_null(rl_optim_adamw_new(ctx, &p, 1, &cfg));
    assert_error_contains(ctx, "beta2 is 1");
    rl_ctx_clear_error(ctx);
    cfg = rl_adamw_cfg_default();
    cfg.weight_decay = -0.1;
    assert_null(rl_optim_adamw_new(ctx, &p, 1, &cfg));
    assert_error_contains(ctx, "weight_decay");
    rl_ctx_clear_error(ctx);
    rl_sgd_cfg sc = {.nesterov = 1};
    assert_null(rl_optim_sgd_new(ctx, &p, 1, &sc));
    assert_error_contains(ctx, "nesterov needs momentum");
    rl_ctx_clear_error(ctx);

    /* mismatched dtypes: a gradient that does not match its parameter (the
     * engine never makes one; a broken checkpoint loader could) */
    rl_tensor *params[2] = {p, q};
    rl_optim *opt = rl_optim_adamw_new(ctx, params, 2, NULL);
    assert_non_null(opt);
    rl_tensor *pg = p->grad;
    p->grad = q->grad; /* f64 gradient on an f32 parameter */
    assert_int_equal(rl_optim_step(opt, 0.1), RL_ERR_STATE);
    assert_error_contains(ctx, "params[0] ('w') is f32 [2] but its .grad is f64 [2]");
    rl_ctx_clear_error(ctx);
    assert_true(rl_grad_clip_norm(ctx, params, 2, 1.0) < 0);
    assert_error_contains(ctx, "but its .grad is f64");
    rl_ctx_clear_error(ctx);
    p->grad = pg;
    assert_int_equal(rl_optim_step_count(opt), 0); /* nothing was applied */
    assert_true(rl_tensor_get(ctx, p, 0) == 1.0);

    /* bad learning rates */
    assert_int_equal(rl_optim_step(opt, -0.1), RL_ERR_ARG);
    assert_error_contains(ctx, "lr is -0.1");
    rl_ctx_clear_error(ctx);
    rl_lr_sched bad = rl_lr_warmup_cosine(1.0, 0.1, 10, 5);
    assert_int_equal(rl_optim_step(opt, rl_lr_schedule(&bad, 0)), RL_ERR_ARG);
    assert_error_contains(ctx, "lr is nan");
    rl_ctx_clear_error(ctx);

    /* a pending error (e.g. a failed backward) blocks the step */
    rl_ctx_fail(ctx, RL_ERR_STATE, "backward failed earlier");
    assert_int_equal(rl_optim_step(opt, 0.1), RL_ERR_STATE);
    assert_string_equal(rl_ctx_error(ctx), "backward failed earlier");
    assert_true(rl_tensor_get(ctx, p, 0) == 1.0);
    rl_ctx_clear_error(ctx);

    /* a parameter on another backend: refused with the backend's name, and
     * no parameter is touched (params[0] comes first and stays as it was) */
    rl_backend_i fake_iface = *q->backend->iface;
    fake_iface.name = "fakegpu";
    rl_backend fake = {&fake_iface, NULL};
    rl_backend *saved = q->backend;
    q->backend = &fake;
    q->grad->backend = &fake;
    rl_tensor_set(ctx, p->grad, 0, 1.0);
    assert_int_equal(rl_optim_step(opt, 0.1), RL_ERR_BACKEND);
    assert_error_contains(ctx, "'fakegpu' backend");
    assert_error_contains(ctx, "'q'");
    assert_true(rl_tensor_get(ctx, p, 0) == 1.0);
    rl_ctx_clear_error(ctx);
    assert_true(rl_grad_clip_norm(ctx, params, 2, 1.0) < 0);
    assert_error_contains(ctx, "'dq' is on the 'fakegpu' backend");
    rl_ctx_clear_error(ctx);
    q->backend = saved;
    q->grad->backend = saved;

    /* and after all that, a normal step works */
    assert_int_equal(rl_optim_step(opt, 0.1), RL_OK);
    assert_close(rl_tensor_get(ctx, p, 0), 0.9, 1e-6, "step after errors");
    assert_int_equal(rl_optim_set_weight_decay(opt, 2, 0.1), RL_ERR_ARG);
    assert_error_contains(ctx, "out of range");
    rl_ctx_clear_error(ctx);

    rl_optim_free(opt);
    rl_tensor_free(ctx, plain);
    rl_tensor_free(ctx, p);
    rl_tensor_free(ctx, q);
    rl_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_f64),
        cmocka_unit_test(test_adamw_f32),
        cmocka_unit_test(test_adamw_mixed_and_per_param_decay),
        cmocka_unit_test(test_adamw_state_roundtrip),
        cmocka_unit_test(test_sgd),
        cmocka_unit_test(test_sgd_with_backward),
        cmocka_unit_test(test_clip),
        cmocka_unit_test(test_schedules),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("optimizers", tests, NULL, NULL);
}
