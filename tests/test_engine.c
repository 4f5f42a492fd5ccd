/* tests/test_engine.c - the engine's contract: tensors, the step arena and
 * its reset, the tape and backward (accumulation, no-grad mode, higher-order
 * gradients), and bad input: every misuse gives a message that says what was
 * wrong and how to fix it, never a crash.
 */
#include "rl_test.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_file.h"
#include "rl_internal.h"
#include "rl_ops.h"
#include "cpu.h"

#define setup rl_test_setup_ctx
#define teardown rl_test_teardown_ctx

static rl_tensor *vec(rl_ctx *ctx, int64_t n, const double *v) {
    return rl_const(ctx, RL_F64, 1, &n, v);
}

static void test_tensor_basics(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *t = rl_tensor_new(ctx, RL_F32, 3, (int64_t[]){2, 3, 4}, "t");
    assert_non_null(t);
    assert_int_equal(t->numel, 24);
    assert_int_equal(rl_dtype_size(RL_F64), 8);
    char buf[64];
    assert_string_equal(rl_tensor_describe(t, buf, sizeof buf), "f32 [2, 3, 4]");
    assert_true(rl_tensor_get(ctx, t, 5) == 0.0); /* zero-filled */
    rl_tensor_set(ctx, t, 5, 2.5);
    assert_true(rl_tensor_get(ctx, t, 5) == 2.5);
    rl_tensor *s = rl_scalar(ctx, RL_F64, 3.0);
    assert_int_equal(s->ndim, 0);
    assert_int_equal(s->numel, 1);
    rl_tensor *i = rl_full(ctx, RL_I32, 1, (int64_t[]){3}, 7);
    assert_true(rl_tensor_get(ctx, i, 2) == 7.0);
    rl_tensor_free(ctx, t);
    assert_null(rl_ctx_error(ctx));
}

static void test_too_many_dims(void **state) {
    rl_ctx *ctx = *state;
    assert_null(rl_tensor_new(ctx, RL_F32, 5, (int64_t[]){1, 2, 3, 4, 5}, "big"));
    assert_error_contains(ctx, "0 to 4 dims");
}

static void test_write_size_mismatch(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *t = rl_tensor_new(ctx, RL_F32, 1, (int64_t[]){4}, "w");
    float v[3] = {1, 2, 3};
    assert_int_equal(rl_tensor_write(ctx, t, v, sizeof v), RL_ERR_ARG);
    assert_error_contains(ctx, "16 bytes, but 12 were given");
    rl_tensor_free(ctx, t);
}

static void test_arena_reset_reuses_memory(void **state) {
    rl_ctx *ctx = *state;
    size_t cap = 0;
    for (int step = 0; step < 5; step++) {
        /* more than one arena chunk's worth (4 MiB) per step */
        for (int i = 0; i < 6; i++) assert_non_null(rl_full(ctx, RL_F32, 1, (int64_t[]){1 << 18}, 1.0));
        assert_true(rl_ctx_arena_used(ctx) >= 6u * (1u << 20));
        rl_ctx_reset(ctx);
        assert_int_equal(rl_ctx_arena_used(ctx), 0);
        if (step == 1) cap = rl_ctx_arena_capacity(ctx);
        if (step > 1) assert_int_equal(rl_ctx_arena_capacity(ctx), cap); /* steady state: no growth */
    }
}

static void test_stale_tensor_is_caught(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *x = rl_full(ctx, RL_F64, 1, (int64_t[]){3}, 1.0);
    rl_tensor_set_name(x, "activations");
    rl_ctx_reset(ctx);
    assert_null(rl_exp(ctx, x));
    assert_error_contains(ctx, "'activations') was used after its arena was reset");
    assert_error_contains(ctx, "persistent tensor");
}

static void test_shape_mismatch(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *a = rl_full(ctx, RL_F32, 2, (int64_t[]){2, 3}, 1.0);
    rl_tensor *b = rl_full(ctx, RL_F32, 1, (int64_t[]){4}, 1.0);
    assert_null(rl_add(ctx, a, b));
    assert_error_contains(ctx, "add: shapes f32 [2, 3] and f32 [4] do not broadcast");
}

static void test_dtype_mismatch(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *a = rl_full(ctx, RL_F32, 1, (int64_t[]){3}, 1.0);
    rl_tensor *b = rl_full(ctx, RL_F64, 1, (int64_t[]){3}, 1.0);
    assert_null(rl_mul(ctx, a, b));
    assert_error_contains(ctx, "mul: dtypes differ (f32 and f64)");
    rl_ctx_clear_error(ctx);
    rl_tensor *i = rl_full(ctx, RL_I32, 1, (int64_t[]){3}, 1.0);
    assert_null(rl_exp(ctx, i));
    assert_error_contains(ctx, "exp: input 0");
    assert_error_contains(ctx, "must be f32 or f64");
}

static void test_first_error_wins_and_null_propagates(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *a = rl_full(ctx, RL_F32, 1, (int64_t[]){2}, 1.0);
    rl_tensor *b = rl_full(ctx, RL_F32, 1, (int64_t[]){3}, 1.0);
    rl_tensor *bad = rl_add(ctx, a, b);
    rl_tensor *worse = rl_exp(ctx, rl_mul(ctx, bad, a));
    assert_null(worse);
    assert_error_contains(ctx, "add: shapes");
    assert_int_equal(rl_ctx_status(ctx), RL_ERR_ARG);
}

static void test_backward_needs_scalar(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *p = rl_param_new(ctx, RL_F64, 1, (int64_t[]){3}, "p");
    rl_tensor *y = rl_exp(ctx, p);
    rl_tensor_set_name(y, "y");
    assert_int_equal(rl_backward(ctx, y), RL_ERR_ARG);
    assert_error_contains(ctx, "the loss 'y' is f64 [3]; backward needs a scalar");
    rl_tensor_free(ctx, p);
}

static void test_backward_without_grad(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *c = rl_full(ctx, RL_F64, 0, NULL, 2.0);
    rl_tensor *y = rl_exp(ctx, c);
    assert_int_equal(rl_backward(ctx, y), RL_ERR_STATE);
    assert_error_contains(ctx, "did you forget to create parameters with rl_param_new");
}

static void test_no_grad_mode(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *p = rl_param_new(ctx, RL_F64, 1, (int64_t[]){2}, "p");
    int prev = rl_ctx_set_grad(ctx, 0);
    assert_int_equal(prev, 1);
    rl_tensor *y = rl_exp(ctx, p);
    assert_false(y->flags & RL_TF_REQUIRES_GRAD);
    assert_int_equal(rl_ctx_tape_len(ctx), 0);
    rl_ctx_set_grad(ctx, 1);
    y = rl_exp(ctx, p);
    assert_true(y->flags & RL_TF_REQUIRES_GRAD);
    assert_int_equal(rl_ctx_tape_len(ctx), 1);
    /* constants alone are never recorded */
    rl_exp(ctx, rl_full(ctx, RL_F64, 1, (int64_t[]){2}, 1.0));
    assert_int_equal(rl_ctx_tape_len(ctx), 1);
    rl_tensor_free(ctx, p);
}

/* y = x*x + x*x*c uses x four times; dy/dx = 2x + 2cx. Two backward passes
 * add into the parameter's gradient. */
static void test_backward_accumulates(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *x = rl_param_new(ctx, RL_F64, 1, (int64_t[]){2}, "x");
    double xv[2] = {1.5, -2.0};
    rl_tensor_write(ctx, x, xv, sizeof xv);
    for (int pass = 1; pass <= 2; pass++) {
        rl_tensor *c = rl_scalar(ctx, RL_F64, 3.0);
        rl_tensor *y = rl_add(ctx, rl_mul(ctx, x, x), rl_mul(ctx, rl_mul(ctx, x, x), c));
        /* reduce with a dot against ones, written with elementwise ops only */
        rl_tensor *w = vec(ctx, 2, (double[]){1, 1});
        rl_tensor *y0 = rl_mul(ctx, y, w);
        rl_tensor *seed = vec(ctx, 2, (double[]){1, 1});
        assert_int_equal(rl_backward_seeded(ctx, y0, seed), RL_OK);
        for (int i = 0; i < 2; i++)
            assert_near(rl_tensor_get(ctx, x->grad, i), pass * (2 * xv[i] + 6 * xv[i]), 1e-12);
        rl_ctx_reset(ctx);
    }
    rl_tensor_zero_grad(ctx, x);
    assert_true(rl_tensor_get(ctx, x->grad, 0) == 0.0);
    rl_tensor_free(ctx, x);
}

/* Second derivative through the tape: z = x*1 (an arena tensor), y = z^3.
 * Backward with create_graph gives dz = 3z^2 as a recorded expression; its
 * own backward gives d(sum dz)/dx = 6x. */
static void test_higher_order(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *x = rl_param_new(ctx, RL_F64, 1, (int64_t[]){2}, "x");
    double xv[2] = {0.5, -1.5};
    rl_tensor_write(ctx, x, xv, sizeof xv);
    rl_tensor *z = rl_mul(ctx, x, rl_scalar(ctx, RL_F64, 1.0));
    rl_tensor *y = rl_pow(ctx, z, 3.0);
    rl_ctx_set_create_graph(ctx, 1);
    assert_int_equal(rl_backward_seeded(ctx, y, vec(ctx, 2, (double[]){1, 1})), RL_OK);
    rl_ctx_set_create_graph(ctx, 0);
    rl_tensor *dz = z->grad;
    assert_non_null(dz);
    assert_true(dz->flags & RL_TF_REQUIRES_GRAD);
    for (int i = 0; i < 2; i++) assert_near(rl_tensor_get(ctx, dz, i), 3 * xv[i] * xv[i], 1e-12);
    /* some nodes were recorded during backward and are marked so */
    int nb = 0;
    for (int i = 0; i < rl_ctx_tape_len(ctx); i++) nb += rl_ctx_node(ctx, i)->backward;
    assert_true(nb > 0);
    rl_tensor_zero_grad(ctx, x);
    assert_int_equal(rl_backward_seeded(ctx, dz, vec(ctx, 2, (double[]){1, 1})), RL_OK);
    for (int i = 0; i < 2; i++) assert_near(rl_tensor_get(ctx, x->grad, i), 6 * xv[i], 1e-12);
    rl_tensor_free(ctx, x);
}

/* Differentiating a fused kernel's backward again names the op. */
static void test_missing_rule_names_op(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *x = rl_param_new(ctx, RL_F64, 1, (int64_t[]){2}, "x");
    rl_tensor *z = rl_mul(ctx, x, rl_scalar(ctx, RL_F64, 1.0));
    rl_tensor *y = rl_gelu(ctx, z);
    rl_ctx_set_create_graph(ctx, 1);
    assert_int_equal(rl_backward_seeded(ctx, y, vec(ctx, 2, (double[]){1, 1})), RL_OK);
    rl_ctx_set_create_graph(ctx, 0);
    assert_int_not_equal(rl_backward_seeded(ctx, z->grad, vec(ctx, 2, (double[]){1, 1})), RL_OK);
    assert_error_contains(ctx, "op 'gelu_grad' has no backward rule");
    rl_tensor_free(ctx, x);
}

/* A CPU backend whose kernel table lacks exp, registered by name. */
static rl_kernel_fn g_partial_kernels[RL_OP_COUNT];
static rl_backend_i g_partial;
static rl_backend *partial_backend_new(char *err, size_t n) {
    rl_backend *cpu = rl_backend_cpu_new(err, n);
    if (!cpu) return NULL;
    g_partial = *cpu->iface;
    memcpy(g_partial_kernels, cpu->iface->kernels, sizeof g_partial_kernels);
    g_partial_kernels[RL_OP_EXP] = NULL;
    g_partial.name = "partial";
    g_partial.kernels = g_partial_kernels;
    cpu->iface = &g_partial;
    return cpu;
}

/* A backend that lacks a kernel gives an error naming the op and backend;
 * backends are found by name in the registry. */
static void test_backend_missing_kernel(void **state) {
    (void)state;
    assert_int_equal(rl_backend_register("partial", partial_backend_new), RL_OK);
    int found = 0;
    for (int i = 0; i < rl_backend_count(); i++) found += strcmp(rl_backend_name_at(i), "partial") == 0;
    assert_int_equal(found, 1);
    assert_string_equal(rl_backend_name_at(0), "cpu");
    rl_ctx *ctx = rl_ctx_new("partial");
    assert_non_null(ctx);
    assert_string_equal(rl_ctx_backend_name(ctx), "partial");
    rl_tensor *x = rl_full(ctx, RL_F32, 1, (int64_t[]){2}, 1.0);
    assert_non_null(rl_neg(ctx, x));
    assert_null(rl_exp(ctx, x));
    assert_error_contains(ctx, "op 'exp' is not implemented by the partial backend");
    rl_ctx_free(ctx);
    assert_null(rl_ctx_new("no-such-backend"));
}

/* rl_tensor_copy, its ranges and clones keep dtypes and check sizes. */
static void test_tensor_copy(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *a = vec(ctx, 4, (double[]){1, 2, 3, 4});
    rl_tensor *b = rl_full(ctx, RL_F64, 2, (int64_t[]){2, 2}, 0.0);
    assert_int_equal(rl_tensor_copy(ctx, b, a), RL_OK);
    for (int i = 0; i < 4; i++) assert_true(rl_tensor_get(ctx, b, i) == i + 1);
    assert_int_equal(rl_tensor_copy_range(ctx, b, 1, a, 2, 2), RL_OK);
    assert_true(rl_tensor_get(ctx, b, 0) == 1 && rl_tensor_get(ctx, b, 1) == 3 && rl_tensor_get(ctx, b, 2) == 4);
    assert_int_equal(rl_tensor_copy_range(ctx, b, 3, a, 0, 2), RL_ERR_ARG);
    assert_error_contains(ctx, "out of range");
    rl_ctx_clear_error(ctx);
    rl_tensor *f = rl_full(ctx, RL_F32, 1, (int64_t[]){4}, 0.0);
    assert_int_equal(rl_tensor_copy(ctx, f, a), RL_ERR_ARG);
    assert_error_contains(ctx, "copies keep the dtype");
    rl_ctx_clear_error(ctx);
    rl_tensor *c = rl_tensor_clone(ctx, b, "kept");
    assert_non_null(c);
    assert_true(c->flags & RL_TF_PERSISTENT);
    assert_string_equal(c->name, "kept");
    rl_ctx_reset(ctx);
    assert_true(rl_tensor_get(ctx, c, 1) == 3);
    assert_true(rl_tensor_host_data(c) == c->data); /* the CPU backend keeps host memory */
    rl_tensor_free(ctx, c);
}

static void test_logsigmoid_is_stable(void **state) {
    rl_ctx *ctx = *state;
    double v[4] = {-800, -30, 30, 800};
    rl_tensor *y = rl_logsigmoid(ctx, vec(ctx, 4, v));
    assert_near(rl_tensor_get(ctx, y, 0), -800.0, 1e-9);
    assert_near(rl_tensor_get(ctx, y, 1), -30.0 - log1p(exp(-30.0)), 1e-12);
    assert_near(rl_tensor_get(ctx, y, 2), -log1p(exp(-30.0)), 1e-18);
    assert_true(rl_tensor_get(ctx, y, 3) == 0.0);
    rl_tensor *yf = rl_logsigmoid(ctx, rl_full(ctx, RL_F32, 0, NULL, -200.0));
    assert_true(isfinite(rl_tensor_get(ctx, yf, 0)));
}

/* softplus(x) = log(1 + exp(x)) against the closed form, and at |x| where
 * the naive formula overflows (exp(800) = inf) or loses everything. */
static void test_softplus_is_stable(void **state) {
    rl_ctx *ctx = *state;
    double v[6] = {-800, -30, -0.5, 0.5, 30, 800};
    rl_tensor *y = rl_softplus(ctx, vec(ctx, 6, v));
    assert_true(rl_tensor_get(ctx, y, 0) == 0.0);
    assert_near(rl_tensor_get(ctx, y, 1), exp(-30.0), 1e-25);
    assert_near(rl_tensor_get(ctx, y, 2), log1p(exp(-0.5)), 1e-15);
    assert_near(rl_tensor_get(ctx, y, 3), log1p(exp(0.5)), 1e-15);
    assert_near(rl_tensor_get(ctx, y, 4), 30.0 + log1p(exp(-30.0)), 1e-12);
    assert_true(rl_tensor_get(ctx, y, 5) == 800.0);
    rl_tensor *yf = rl_softplus(ctx, rl_full(ctx, RL_F32, 0, NULL, 200.0));
    assert_near(rl_tensor_get(ctx, yf, 0), 200.0, 1e-4);
}

static void read_back(const char *path, char *buf, size_t n) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t k = fread(buf, 1, n - 1, f);
    buf[k] = 0;
    fclose(f);
}

/* A file is replaced whole on commit, untouched on abort, and a missing
 * directory is an error that names the path. */
static void test_atomic_file(void **state) {
    (void)state;
    char path[700], dir[512], buf[64], err[900];
    snprintf(dir, sizeof dir, "%s/atomic_test/a/b", RLHF_TEST_TMP);
    assert_true(rl_path_mkdirs(dir));
    assert_true(rl_path_mkdirs(dir)); /* existing: fine */
    snprintf(path, sizeof path, "%s/x.json", dir);
    rl_atomic_file a;
    FILE *f = rl_atomic_open(&a, path, err, sizeof err);
    assert_non_null(f);
    fputs("first", f);
    assert_int_equal(rl_atomic_commit(&a, err, sizeof err), RL_OK);
    read_back(path, buf, sizeof buf);
    assert_string_equal(buf, "first");
    f = rl_atomic_open(&a, path, err, sizeof err);
    assert_non_null(f);
    fputs("second, unfinished", f);
    char tmp[sizeof a.tmp];
    memcpy(tmp, a.tmp, sizeof tmp);
    rl_atomic_abort(&a);
    read_back(path, buf, sizeof buf);
    assert_string_equal(buf, "first");
    errno = 0;
    assert_null(fopen(tmp, "r")); /* the temporary is gone */
    snprintf(path, sizeof path, "%s/atomic_test/missing/x.json", RLHF_TEST_TMP);
    assert_null(rl_atomic_open(&a, path, err, sizeof err));
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "cannot create the temporary file"));
    assert_int_equal(rl_errf(err, sizeof err, RL_ERR_IO, "%s %d", "n", 3), RL_ERR_IO);
    assert_string_equal(err, "n 3");
    assert_int_equal(rl_errf(NULL, 0, RL_ERR_ARG, "ignored"), RL_ERR_ARG);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_tensor_basics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_dims, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_size_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_arena_reset_reuses_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_tensor_is_caught, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shape_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dtype_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_error_wins_and_null_propagates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backward_needs_scalar, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backward_without_grad, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_grad_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backward_accumulates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_higher_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_rule_names_op, setup, teardown),
        cmocka_unit_test(test_backend_missing_kernel),
        cmocka_unit_test_setup_teardown(test_tensor_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logsigmoid_is_stable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_softplus_is_stable, setup, teardown),
        cmocka_unit_test(test_atomic_file),
    };
    return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
