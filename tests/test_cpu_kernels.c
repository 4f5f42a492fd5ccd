/* tests/test_cpu_kernels.c - the CPU backend's performance paths keep the
 * numbers: the vectorised f32 exp (ops/cpu/vmath.h) against double exp, the
 * dispatched array loops (ops/cpu/vec.c) against the scalar functions bit for
 * bit, the threaded GEMM split (ops/cpu/gemm.c) against a reference product,
 * threaded kernels giving the same bits with 1 thread and with several, and
 * reshape as a zero-copy view (OPF_VIEW).
 */
#include "rl_test.h"

#include <omp.h>
#include <stdlib.h>

#include "cpu.h"
#include "vmath.h"

#define setup rl_test_setup_ctx
#define teardown rl_test_teardown_ctx

static float rl_test_bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Error of got against the exact value in units of the f32 ulp at ref
 * (denormal ulp below 2^-126). */
static double ulp_error(float got, double ref) {
    int e;
    frexp(fabs(ref), &e);
    double ulp = ldexp(1.0, e - 24);
    if (ulp < ldexp(1.0, -149)) ulp = ldexp(1.0, -149);
    return fabs((double)got - ref) / ulp;
}

/* rl_expf is within 1 ulp of exp over the f32 range (every 61st f32
 * between -104 and 88.72; the comment in vmath.h gives the exhaustive check),
 * and right at the edges: overflow, underflow, infinities, NaN. */
static void test_expf_accuracy(void **state) {
    (void)state;
    double worst = 0;
    for (int sign = 0; sign < 2; sign++)
        for (uint32_t b = 0; b < 0x42b17000u; b += 61) { /* |x| < 88.72: exp(x) < FLT_MAX */
            float x = rl_test_bits_float(b | ((uint32_t)sign << 31));
            if (x < -104.0f) continue;
            double err = ulp_error(rl_expf(x), exp((double)x));
            if (err > worst) worst = err;
        }
    if (worst > 1.0) fail_msg("rl_expf is %.3f ulp from exp", worst);
    assert_true(isinf(rl_expf(89.0f)) && rl_expf(89.0f) > 0);
    assert_true(isinf(rl_expf(INFINITY)));
    assert_true(rl_expf(-INFINITY) == 0.0f);
    assert_true(rl_expf(-200.0f) == 0.0f);
    assert_true(isnan(rl_expf(NAN)));
    assert_true(rl_expf(0.0f) == 1.0f);
    /* the largest finite result and a denormal one */
    assert_true(ulp_error(rl_expf(88.72f), exp((double)88.72f)) <= 1.0);
    assert_true(ulp_error(rl_expf(-100.0f), exp(-100.0)) <= 1.0);
}

/* GELU and its gradient in their sigmoid forms against the tanh definition
 * in double. */
static void test_gelu_forms(void **state) {
    (void)state;
    const double c = 0.7978845608028654, k = 0.044715;
    double wf = 0, wg = 0;
    for (double x = -20; x <= 20; x += 1.0 / 1024) {
        float xf = (float)x;
        double xd = xf, t = tanh(c * (xd + k * xd * xd * xd));
        double f = 0.5 * xd * (1 + t);
        double g = 0.5 * (1 + t) + 0.5 * xd * (1 - t * t) * c * (1 + 3 * k * xd * xd);
        double ef = fabs(rl_geluf(xf) - f) / fmax(fabs(f), 1.0);
        double eg = fabs(rl_gelu_gradf(xf) - g);
        wf = ef > wf ? ef : wf;
        wg = eg > wg ? eg : wg;
    }
    if (wf > 4e-7 || wg > 4e-7) fail_msg("gelu error %g, gradient error %g", wf, wg);
    assert_true(isnan(rl_geluf(NAN)) && isnan(rl_gelu_gradf(NAN)));
    /* saturation: 0 (within 1e-30: the capped exp) and exactly 1 */
    assert_true(fabsf(rl_gelu_gradf(-30.0f)) < 1e-30f && rl_gelu_gradf(30.0f) == 1.0f);
}

static float *random_floats(int64_t n, float lo, float hi, uint32_t seed) {
    float *p = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = lo + (hi - lo) * (float)((seed >> 8) * (1.0 / 16777216.0));
    }
    return p;
}

/* The dispatched loops (AVX-512 / AVX2 / SSE2, whichever this CPU has) give
 * exactly the bits of the scalar inline functions, at every length
 * (vector bodies and remainders). */
static void test_vec_loops_match_scalar(void **state) {
    (void)state;
    const int64_t n = 1000;
    float *x = random_floats(n, -30, 30, 1), *dy = random_floats(n, -2, 2, 2);
    float *y = malloc(sizeof(float) * n);
    x[17] = NAN;
    x[18] = INFINITY;
    x[19] = -INFINITY;
    for (int64_t len = 0; len <= n; len += len < 40 ? 1 : 97) {
        rl_vexp_f32(x, y, len, 0.5f, 2.0f);
        for (int64_t i = 0; i < len; i++) {
            float want = rl_expf(x[i] - 0.5f) * 2.0f;
            if (memcmp(&want, &y[i], 4)) fail_msg("vexp[%lld] of %g: %g != %g", (long long)i, x[i], y[i], want);
        }
        rl_vgelu_f32(x, y, len);
        for (int64_t i = 0; i < len; i++) {
            float want = rl_geluf(x[i]);
            /* NaN in gives NaN out; its sign bit may differ between vector and scalar code */
            if (memcmp(&want, &y[i], 4) && !(isnan(want) && isnan(y[i]))) fail_msg("vgelu[%lld]", (long long)i);
        }
        rl_vgelu_grad_f32(x, dy, y, len);
        for (int64_t i = 0; i < len; i++) {
            float want = rl_gelu_gradf(x[i]) * dy[i];
            if (memcmp(&want, &y[i], 4) && !(isnan(want) && isnan(y[i])))
                fail_msg("vgelu_grad[%lld]", (long long)i);
        }
    }
    /* max: NaN wins; sum: in double over lanes */
    assert_true(isnan(rl_vmax_f32(x, n)));
    assert_true(rl_vmax_f32(x, 17) == rl_vmax_f32(x, 17)); /* no NaN in the first 17 */
    assert_true(isinf(rl_vmax_f32(x + 18, 2)) && rl_vmax_f32(x + 18, 2) > 0);
    assert_true(rl_vmax_f32(x, 0) == -INFINITY);
    double s = 0;
    for (int64_t i = 20; i < n; i++) s += x[i];
    assert_near(rl_vsum_f32(x + 20, n - 20), s, 1e-9 * (n - 20) * 30);
    free(x), free(dy), free(y);
}

/* The threaded GEMM split gives the product of every transpose combination
 * and awkward size (not multiples of the split alignment, one side tiny). */
static void test_gemm_split(void **state) {
    (void)state;
    const int shapes[][3] = {{1, 1, 1}, {7, 5, 3}, {33, 65, 17}, {300, 70, 40}, {64, 513, 31}, {2, 1000, 9}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ta = 0; ta < 2; ta++)
            for (int tb = 0; tb < 2; tb++) {
                const int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float *a = random_floats((int64_t)M * K, -1, 1, 3), *b = random_floats((int64_t)K * N, -1, 1, 4);
                float *c = random_floats((int64_t)M * N, -1, 1, 5); /* beta = 0.5 reads it */
                double *want = malloc(sizeof(double) * (size_t)M * N);
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double acc = 0;
                        for (int k = 0; k < K; k++)
                            acc += (double)(ta ? a[k * M + i] : a[i * K + k]) *
                                   (double)(tb ? b[j * K + k] : b[k * N + j]);
                        want[i * N + j] = 1.5 * acc + 0.5 * c[i * N + j];
                    }
                rl_cpu_gemm_f32(ta, tb, M, N, K, 1.5f, a, ta ? M : K, b, tb ? K : N, 0.5f, c, N);
                for (int i = 0; i < M * N; i++)
                    if (fabs(c[i] - want[i]) > 1e-5 * (K + 1))
                        fail_msg("gemm %dx%dx%d ta %d tb %d: [%d] %g != %g", M, N, K, ta, tb, i, c[i], want[i]);
                free(a), free(b), free(c), free(want);
            }
}

/* Threaded kernels (rows, column blocks, (b, h) pairs) give the same bits
 * with one thread as with several: each row is always computed by one
 * thread in one order. */
static void run_kernels(rl_ctx *ctx, rl_tensor *one, const float *xv, float *out, int64_t *pos) {
    const int64_t B = 2, H = 3, T = 40, D = 16, R = 512, C = 300;
    rl_tensor *x = rl_const(ctx, RL_F32, 2, (int64_t[]){R, C}, xv);
    rl_tensor *w = rl_full(ctx, RL_F32, 1, &C, 1.25), *bias = rl_full(ctx, RL_F32, 1, &C, 0.5);
    int32_t tg[512];
    for (int i = 0; i < R; i++) tg[i] = (i * 7) % (int32_t)C - (i % 5 == 0); /* some -1 */
    rl_tensor *t = rl_const(ctx, RL_I32, 1, &R, tg);
    /* q * one (a parameter equal to 1) needs a gradient, so attention is
     * recorded and saves the lse its backward kernel reads */
    rl_tensor *q = rl_mul(ctx, rl_const(ctx, RL_F32, 4, (int64_t[]){B, H, T, D}, xv), one);
    rl_tensor *k = rl_const(ctx, RL_F32, 4, (int64_t[]){B, H, T, D}, xv + 5000);
    rl_tensor *v = rl_const(ctx, RL_F32, 4, (int64_t[]){B, H, T, D}, xv + 9000);
    rl_tensor *dout = rl_const(ctx, RL_F32, 4, (int64_t[]){B, H, T, D}, xv + 20000);
    rl_tensor *att = rl_attention(ctx, q, k, v, 0);
    const rl_node *an = rl_tensor_node(ctx, att);
    /* grouped-query: the three query heads share one kv head, so the
     * backward's dK and dV sum over heads on one thread */
    rl_tensor *k1 = rl_const(ctx, RL_F32, 4, (int64_t[]){B, 1, T, D}, xv + 30000);
    rl_tensor *v1 = rl_const(ctx, RL_F32, 4, (int64_t[]){B, 1, T, D}, xv + 32000);
    rl_tensor *gqa = rl_attention(ctx, q, k1, v1, 0);
    const rl_node *gn = rl_tensor_node(ctx, gqa);
    rl_tensor *rx = rl_const(ctx, RL_F32, 4, (int64_t[]){B, T, H, D}, xv + 40000);
    rl_tensor *rc = rl_const(ctx, RL_F32, 3, (int64_t[]){B, T, D / 2}, xv + 50000);
    rl_tensor *rs = rl_const(ctx, RL_F32, 3, (int64_t[]){B, T, D / 2}, xv + 51000);
    rl_tensor *outs[] = {
        rl_sum(ctx, x, 0, 0), rl_sum(ctx, x, 1, 0), rl_logsumexp(ctx, x, 1, 0), rl_softmax(ctx, x),
        rl_layernorm(ctx, x, w, bias, 1e-5), rl_cross_entropy(ctx, x, t), rl_add(ctx, x, bias),
        rl_gelu(ctx, x), rl_exp(ctx, x), att,
        rl_attention_grad(ctx, q, k, v, att, an->saved[0], dout, 0), gqa,
        rl_attention_grad(ctx, q, k1, v1, gqa, gn->saved[0], dout, 0), rl_rmsnorm(ctx, x, w, 1e-6),
        rl_rope(ctx, rx, rc, rs),
    };
    *pos = 0;
    for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
        assert_non_null(outs[i]);
        memcpy(out + *pos, outs[i]->data, sizeof(float) * (size_t)outs[i]->numel);
        *pos += outs[i]->numel;
    }
}

static void test_threads_same_bits(void **state) {
    rl_ctx *ctx = *state;
    const int64_t R = 512, C = 300;
    float *xv = random_floats(R * C, -6, 6, 9);
    rl_tensor *p = rl_param_new(ctx, RL_F32, 1, (int64_t[]){1}, "one");
    rl_tensor_set(ctx, p, 0, 1.0);
    const size_t cap = 8u << 20;
    float *o1 = malloc(sizeof(float) * cap), *o2 = malloc(sizeof(float) * cap);
    int64_t n1, n2;
    const int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    run_kernels(ctx, p, xv, o1, &n1);
    rl_ctx_reset(ctx);
    omp_set_num_threads(saved > 1 ? saved : 2);
    run_kernels(ctx, p, xv, o2, &n2);
    omp_set_num_threads(saved);
    assert_ok(ctx);
    assert_int_equal(n1, n2);
    assert_true(n1 > R * C * 5);
    for (int64_t i = 0; i < n1; i++)
        if (memcmp(&o1[i], &o2[i], 4)) fail_msg("element %lld: %.9g (1 thread) != %.9g", (long long)i, o1[i], o2[i]);
    rl_tensor_free(ctx, p);
    free(xv), free(o1), free(o2);
}

/* attention_qkv on GPT-2's packed [B, T, 3C] equals slicing q, k, v out of
 * it, permuting to [B, H, T, D], rl_attention and merging the heads back,
 * forward and backward, in f64 and f32 (the same kernels, other strides). */
static void check_attention_qkv(rl_ctx *ctx, rl_dtype dt, int64_t B, int64_t T, int64_t H,
                                int64_t D, double tol) {
    const int64_t C = H * D;
    rl_tensor *w = rl_param_new(ctx, dt, 3, (int64_t[]){B, T, 3 * C}, "qkv");
    float *v = random_floats(w->numel, -2, 2, 11);
    for (int64_t i = 0; i < w->numel; i++) rl_tensor_set(ctx, w, i, v[i]);
    double *out = malloc(sizeof(double) * (size_t)(B * T * C)), *grad = malloc(sizeof(double) * (size_t)w->numel);
    for (int route = 0; route < 2; route++) {
        rl_tensor *up = rl_const(ctx, dt, 3, (int64_t[]){B, T, C}, NULL);
        for (int64_t i = 0; i < up->numel; i++) rl_tensor_set(ctx, up, i, v[(i * 7) % w->numel]);
        rl_tensor *a;
        if (route == 0) {
            a = rl_attention_qkv(ctx, w, H, 0);
        } else {
            rl_tensor *t = rl_permute(ctx, rl_reshape(ctx, w, 4, (int64_t[]){B, T, 3 * H, D}), (int[]){0, 2, 1, 3});
            a = rl_attention(ctx, rl_slice(ctx, t, 1, 0, H), rl_slice(ctx, t, 1, H, 2 * H),
                             rl_slice(ctx, t, 1, 2 * H, 3 * H), 0);
            a = rl_reshape(ctx, rl_permute(ctx, a, (int[]){0, 2, 1, 3}), 3, (int64_t[]){B, T, C});
        }
        rl_tensor_zero_grad(ctx, w);
        if (rl_backward(ctx, rl_sum(ctx, rl_mul(ctx, a, up), RL_AXIS_ALL, 0)) != RL_OK)
            fail_msg("backward: %s", rl_ctx_error(ctx));
        for (int64_t i = 0; i < a->numel; i++) {
            double x = rl_tensor_get(ctx, a, i);
            if (route == 0) out[i] = x;
            else if (fabs(x - out[i]) > tol) fail_msg("out[%lld]: %g != %g", (long long)i, out[i], x);
        }
        for (int64_t i = 0; i < w->numel; i++) {
            double g = rl_tensor_get(ctx, w->grad, i);
            if (route == 0) grad[i] = g;
            else if (fabs(g - grad[i]) > tol) fail_msg("d qkv[%lld]: %g != %g", (long long)i, grad[i], g);
        }
        rl_ctx_reset(ctx);
    }
    assert_ok(ctx);
    rl_tensor_free(ctx, w);
    free(v), free(out), free(grad);
}

static void test_attention_qkv_matches_attention(void **state) {
    rl_ctx *ctx = *state;
    check_attention_qkv(ctx, RL_F64, 2, 9, 3, 4, 1e-12);
    check_attention_qkv(ctx, RL_F64, 1, 200, 2, 8, 1e-12); /* two row blocks */
    check_attention_qkv(ctx, RL_F32, 3, 64, 4, 16, 1e-5);  /* threaded over (b, h) */
}

/* reshape shares its input's memory (no copy, no kernel), keeps its own
 * shape and node, and its gradient flows; a view of a parameter sees
 * in-place updates of the parameter; a view goes stale with its arena. */
static void test_reshape_is_a_view(void **state) {
    rl_ctx *ctx = *state;
    rl_tensor *w = rl_param_new(ctx, RL_F64, 2, (int64_t[]){2, 3}, "w");
    for (int i = 0; i < 6; i++) rl_tensor_set(ctx, w, i, i + 1);
    rl_tensor *x = rl_exp(ctx, w);
    rl_tensor *r = rl_reshape(ctx, x, 1, (int64_t[]){6});
    assert_non_null(r);
    assert_ptr_equal(r->data, x->data);
    assert_int_equal(r->ndim, 1);
    assert_int_equal(r->shape[0], 6);
    assert_int_equal(x->ndim, 2); /* the input keeps its shape */
    rl_tensor *loss = rl_sum(ctx, rl_mul(ctx, r, rl_const(ctx, RL_F64, 1, (int64_t[]){6},
                                                           (double[]){1, 2, 3, 4, 5, 6})),
                             RL_AXIS_ALL, 0);
    assert_int_equal(rl_backward(ctx, loss), RL_OK);
    for (int i = 0; i < 6; i++) assert_near(rl_tensor_get(ctx, w->grad, i), (i + 1) * exp(i + 1.0), 1e-9);
    /* a view of the parameter itself follows its later writes */
    rl_tensor *wv = rl_reshape(ctx, w, 2, (int64_t[]){3, 2});
    assert_ptr_equal(wv->data, w->data);
    rl_tensor_set(ctx, w, 4, 42.0);
    assert_true(rl_tensor_get(ctx, wv, 4) == 42.0);
    rl_ctx_reset(ctx);
    assert_null(rl_exp(ctx, wv));
    assert_error_contains(ctx, "was used after its arena was reset");
    rl_tensor_free(ctx, w);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_accuracy),
        cmocka_unit_test(test_gelu_forms),
        cmocka_unit_test(test_vec_loops_match_scalar),
        cmocka_unit_test(test_gemm_split),
        cmocka_unit_test_setup_teardown(test_threads_same_bits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attention_qkv_matches_attention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reshape_is_a_view, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
