/* ops/cpu/vec.c - f32 array loops of the CPU kernels' hot paths (exp, GELU
 * and its gradient, row max and row sum, layernorm rows, column sums, the row
 * passes of causal attention),
 * compiled three times, for SSE2
 * (the build's baseline), AVX2 and AVX-512F, and dispatched at run time on
 * what the CPU supports.
 *
 * Why: the build targets baseline x86-64 (no -march), so the compiler
 * vectorises these loops 4 floats wide; on an AVX-512 machine the same loop
 * over rl_expf runs 4x faster 16 wide (measured: 16M exps in 35 ms with
 * SSE2, 14 ms AVX2, 8.5 ms AVX-512, one core of an AMD EPYC, Zen 5).
 *
 * Same bits on every path: each loop body is plain IEEE adds, multiplies,
 * compares and selects (ops/cpu/vmath.h), sums keep explicit lanes (so the
 * order of additions does not depend on the vector width), and nothing is
 * contracted into FMA (GCC in ISO C mode does not contract; for clang the
 * pragma below says so), so AVX-512, AVX2 and SSE2 give identical results.
 */
#include "cpu.h"
#include "vmath.h"

#include <math.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* Independent partial sums per row (as ops/cpu/reduce.c). */
#define RL_VEC_LANES 8
/* Rows longer than this are summed as two halves (pairwise summation). */
#define RL_VEC_PAIRWISE 256
/* max(v, m) where a NaN v wins and a NaN m stays (ops/cpu/reduce.c). */
#define RL_VEC_MAX_NAN(v, m) ((((v) > (m)) | ((v) != (v))) ? (v) : (m))

#if defined(__x86_64__) || defined(__i386__)
#define RL_VEC_X86 1
#define RL_VEC_TARGET(t) __attribute__((target(t)))
#else
#define RL_VEC_X86 0
#define RL_VEC_TARGET(t)
#endif

#define RL_VEC_DEFINE(SFX, ATTR)                                                            \
    ATTR static void rl_vexp_##SFX(const float *x, float *y, int64_t n, float shift,       \
                                   float scale) {                                          \
        for (int64_t i = 0; i < n; i++) y[i] = rl_expf(x[i] - shift) * scale;              \
    }                                                                                      \
    ATTR static void rl_vgelu_##SFX(const float *x, float *y, int64_t n) {                 \
        for (int64_t i = 0; i < n; i++) y[i] = rl_geluf(x[i]);                             \
    }                                                                                      \
    ATTR static void rl_vgelu_grad_##SFX(const float *x, const float *dy, float *y,        \
                                         int64_t n) {                                      \
        for (int64_t i = 0; i < n; i++) y[i] = rl_gelu_gradf(x[i]) * dy[i];                \
    }                                                                                      \
    ATTR static float rl_vmax_##SFX(const float *x, int64_t n) {                           \
        float m[RL_VEC_LANES];                                                             \
        for (int l = 0; l < RL_VEC_LANES; l++) m[l] = -INFINITY;                           \
        int64_t i = 0;                                                                     \
        for (; i + RL_VEC_LANES <= n; i += RL_VEC_LANES)                                   \
            for (int l = 0; l < RL_VEC_LANES; l++) m[l] = RL_VEC_MAX_NAN(x[i + l], m[l]);  \
        for (; i < n; i++) m[0] = RL_VEC_MAX_NAN(x[i], m[0]);                              \
        float r = m[0];                                                                    \
        for (int l = 1; l < RL_VEC_LANES; l++) r = RL_VEC_MAX_NAN(m[l], r);                \
        return r;                                                                          \
    }                                                                                      \
    ATTR static double rl_vsum_##SFX(const float *x, int64_t n) {                          \
        if (n > RL_VEC_PAIRWISE) {                                                         \
            int64_t h = (n / 2 + RL_VEC_LANES - 1) & ~(int64_t)(RL_VEC_LANES - 1);         \
            return rl_vsum_##SFX(x, h) + rl_vsum_##SFX(x + h, n - h);                      \
        }                                                                                  \
        double a[RL_VEC_LANES] = {0};                                                      \
        int64_t i = 0;                                                                     \
        for (; i + RL_VEC_LANES <= n; i += RL_VEC_LANES)                                   \
            for (int l = 0; l < RL_VEC_LANES; l++) a[l] += x[i + l];                       \
        for (; i < n; i++) a[0] += x[i];                                                   \
        double s = 0;                                                                      \
        for (int l = 0; l < RL_VEC_LANES; l++) s += a[l];                                  \
        return s;                                                                          \
    }                                                                                      \
    /* layernorm forward of `rows` rows of C (as ops/cpu/nn.c describes),             \
     * sums over 8 double lanes */                                                         \
    ATTR static void rl_vln_fwd_##SFX(const float *x, const float *w, const float *b,      \
                                      float *y, float *st, int64_t rows, int64_t C,        \
                                      float eps) {                                         \
        for (int64_t r = 0; r < rows; r++) {                                               \
            const float *xr = x + r * C;                                                   \
            float *yr = y + r * C;                                                         \
            const float mean = (float)(rl_vsum_##SFX(xr, C) / (double)C);                  \
            double a[RL_VEC_LANES] = {0};                                                  \
            int64_t c = 0;                                                                 \
            for (; c + RL_VEC_LANES <= C; c += RL_VEC_LANES)                               \
                for (int l = 0; l < RL_VEC_LANES; l++) {                                   \
                    const double d = (double)(xr[c + l] - mean);                           \
                    a[l] += d * d;                                                         \
                }                                                                          \
            for (; c < C; c++) {                                                           \
                const double d = (double)(xr[c] - mean);                                   \
                a[0] += d * d;                                                             \
            }                                                                              \
            double v = 0;                                                                  \
            for (int l = 0; l < RL_VEC_LANES; l++) v += a[l];                              \
            const float rstd = 1.0f / sqrtf((float)(v / (double)C) + eps);                 \
            for (c = 0; c < C; c++) yr[c] = (xr[c] - mean) * rstd * w[c] + b[c];           \
            if (st) {                                                                      \
                st[2 * r] = mean;                                                          \
                st[2 * r + 1] = rstd;                                                      \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    /* layernorm backward for dx: g = dy w, xhat = (x - mean) rstd,                        \
     * dx = rstd (g - mean(g) - xhat mean(g xhat)), sums over 8 double lanes */            \
    ATTR static void rl_vln_bwd_##SFX(const float *x, const float *w, const float *st,     \
                                      const float *dy, float *dx, int64_t rows,            \
                                      int64_t C) {                                         \
        for (int64_t r = 0; r < rows; r++) {                                               \
            const float *xr = x + r * C, *dyr = dy + r * C;                                \
            float *dxr = dx + r * C;                                                       \
            const float mean = st[2 * r], rstd = st[2 * r + 1];                            \
            double a[RL_VEC_LANES] = {0}, bsum[RL_VEC_LANES] = {0};                        \
            int64_t c = 0;                                                                 \
            for (; c + RL_VEC_LANES <= C; c += RL_VEC_LANES)                               \
                for (int l = 0; l < RL_VEC_LANES; l++) {                                   \
                    const float g = dyr[c + l] * w[c + l];                                 \
                    a[l] += (double)g;                                                     \
                    bsum[l] += (double)(g * ((xr[c + l] - mean) * rstd));                  \
                }                                                                          \
            for (; c < C; c++) {                                                           \
                const float g = dyr[c] * w[c];                                             \
                a[0] += (double)g;                                                         \
                bsum[0] += (double)(g * ((xr[c] - mean) * rstd));                          \
            }                                                                              \
            double sg = 0, sgx = 0;                                                        \
            for (int l = 0; l < RL_VEC_LANES; l++) sg += a[l], sgx += bsum[l];             \
            const float mg = (float)(sg / (double)C), mgx = (float)(sgx / (double)C);      \
            for (c = 0; c < C; c++) {                                                      \
                const float xhat = (xr[c] - mean) * rstd;                                  \
                dxr[c] = rstd * (dyr[c] * w[c] - mg - xhat * mgx);                         \
            }                                                                              \
        }                                                                                  \
    }                                                                                      \
    /* acc[c] += x[c] in double (column sums) */                                           \
    ATTR static void rl_vacc_##SFX(double *acc, const float *x, int64_t n) {               \
        for (int64_t i = 0; i < n; i++) acc[i] += (double)x[i];                            \
    }                                                                                      \
    /* causal softmax of rows i0..i0+m-1 of a score slab (row r keeps                      \
     * columns 0..i0+r, the rest are zeroed): unnormalised exp in place, the                \
     * row's lse and 1 / sum out */                                                        \
    ATTR static void rl_vattn_softmax_##SFX(float *S, int64_t m, int64_t nc, int64_t i0,   \
                                            float *lse, float *rinv) {                     \
        for (int64_t r = 0; r < m; r++) {                                                  \
            float *row = S + r * nc;                                                       \
            const int64_t len = i0 + r + 1;                                                \
            const float mx = rl_vmax_##SFX(row, len);                                      \
            for (int64_t j = 0; j < len; j++) row[j] = rl_expf(row[j] - mx);               \
            const double sum = rl_vsum_##SFX(row, len);                                    \
            if (lse) lse[r] = (float)((double)mx + log(sum));                              \
            rinv[r] = (float)(1.0 / sum);                                                  \
            for (int64_t j = len; j < nc; j++) row[j] = 0;                                 \
        }                                                                                  \
    }                                                                                      \
    /* P = exp(S - lse) on the causal part of rows i0..i0+m-1, 0 above it */               \
    ATTR static void rl_vattn_probs_##SFX(float *S, int64_t m, int64_t nc, int64_t i0,     \
                                          const float *lse) {                              \
        for (int64_t r = 0; r < m; r++) {                                                  \
            float *row = S + r * nc;                                                       \
            const int64_t len = i0 + r + 1;                                                \
            const float l = lse[r];                                                        \
            for (int64_t j = 0; j < len; j++) row[j] = rl_expf(row[j] - l);                \
            for (int64_t j = len; j < nc; j++) row[j] = 0;                                 \
        }                                                                                  \
    }                                                                                      \
    /* dS = P * (dP - delta_r), in place of dP */                                          \
    ATTR static void rl_vattn_dscores_##SFX(const float *P, float *dP, int64_t m,          \
                                            int64_t nc, const float *delta) {              \
        for (int64_t r = 0; r < m; r++) {                                                  \
            const float *prow = P + r * nc;                                                \
            float *grow = dP + r * nc;                                                     \
            const float dl = delta[r];                                                     \
            for (int64_t j = 0; j < nc; j++) grow[j] = prow[j] * (grow[j] - dl);           \
        }                                                                                  \
    }

RL_VEC_DEFINE(base, )
#if RL_VEC_X86
RL_VEC_DEFINE(avx2, RL_VEC_TARGET("avx2"))
RL_VEC_DEFINE(avx512, RL_VEC_TARGET("avx512f"))
#endif

/* 2: AVX-512F, 1: AVX2, 0: baseline. __builtin_cpu_supports reads a table
 * filled once at start-up, so asking on every call costs a load and a test. */
static inline int rl_vec_level(void) {
#if RL_VEC_X86
    if (__builtin_cpu_supports("avx512f")) return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
#endif
    return 0;
}

#if RL_VEC_X86
#define RL_VEC_DISPATCH(ret, name, ...)                                                     \
    switch (rl_vec_level()) {                                                              \
    case 2: ret rl_##name##_avx512(__VA_ARGS__); break;                                    \
    case 1: ret rl_##name##_avx2(__VA_ARGS__); break;                                      \
    default: ret rl_##name##_base(__VA_ARGS__); break;                                     \
    }
#else
#define RL_VEC_DISPATCH(ret, name, ...) ret rl_##name##_base(__VA_ARGS__);
#endif

void rl_vexp_f32(const float *x, float *y, int64_t n, float shift, float scale) {
    RL_VEC_DISPATCH(, vexp, x, y, n, shift, scale)
}

void rl_vgelu_f32(const float *x, float *y, int64_t n) { RL_VEC_DISPATCH(, vgelu, x, y, n) }

void rl_vgelu_grad_f32(const float *x, const float *dy, float *y, int64_t n) {
    RL_VEC_DISPATCH(, vgelu_grad, x, dy, y, n)
}

float rl_vmax_f32(const float *x, int64_t n) {
    float r = 0;
    RL_VEC_DISPATCH(r =, vmax, x, n)
    return r;
}

double rl_vsum_f32(const float *x, int64_t n) {
    double r = 0;
    RL_VEC_DISPATCH(r =, vsum, x, n)
    return r;
}

void rl_vattn_softmax_f32(float *S, int64_t m, int64_t nc, int64_t i0, float *lse, float *rinv) {
    RL_VEC_DISPATCH(, vattn_softmax, S, m, nc, i0, lse, rinv)
}

void rl_vattn_probs_f32(float *S, int64_t m, int64_t nc, int64_t i0, const float *lse) {
    RL_VEC_DISPATCH(, vattn_probs, S, m, nc, i0, lse)
}

void rl_vattn_dscores_f32(const float *P, float *dP, int64_t m, int64_t nc, const float *delta) {
    RL_VEC_DISPATCH(, vattn_dscores, P, dP, m, nc, delta)
}

void rl_vln_fwd_f32(const float *x, const float *w, const float *b, float *y, float *st,
                    int64_t rows, int64_t C, float eps) {
    RL_VEC_DISPATCH(, vln_fwd, x, w, b, y, st, rows, C, eps)
}

void rl_vln_bwd_f32(const float *x, const float *w, const float *st, const float *dy, float *dx,
                    int64_t rows, int64_t C) {
    RL_VEC_DISPATCH(, vln_bwd, x, w, st, dy, dx, rows, C)
}

void rl_vacc_f32(double *acc, const float *x, int64_t n) { RL_VEC_DISPATCH(, vacc, acc, x, n) }
