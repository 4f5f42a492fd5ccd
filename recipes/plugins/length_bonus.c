/* recipes/plugins/length_bonus.c - an example plug-in for recipe externs
 * (recipes/examples/length_bonus.recipe), written against the C ABI of
 * docs/recipes.md ("Externs: the C ABI"). Built by CMake as
 * <build>/plugins/liblength_bonus.so. It needs nothing from rlhf: a plug-in
 * is plain C over arrays.
 *
 *   length_bonus(i32[B, T] ids, i32[B, T] mask, f32 target, f32 width, i32 end_id) -> f32[B]
 *       a rule-based reward: exp(-((len - target) / width)^2) for a response
 *       of len tokens (mask = 1), plus 0.5 when its last token is end_id (a
 *       format rule: the response was finished, not cut off). No gradient.
 *
 *   soft_excess(f32[N] x, f32 t) -> f32[N]    backward soft_excess_bwd
 *       softplus(x - t) = log(1 + exp(x - t)): a smooth hinge that penalises
 *       x above t, differentiable in x and t. The _f64 variants serve f64
 *       runs (gradient checks); without them the engine would convert to
 *       float and back, and a central-difference check could not pass.
 *
 *   masked_moments(f32[B, T] x, i32[B, T] mask) -> (f32[B], f32[B])    backward masked_moments_bwd
 *       the mean and the (population) variance of each row's masked
 *       elements: a differentiable function with two results, whose backward
 *       receives the gradients of both (0 for a row without mask).
 *
 * Each function returns 0, or nonzero for an error the engine reports with
 * the extern's name. The NAME_signature strings let the engine check a
 * recipe's declaration against the library when it loads it.
 */
#include <math.h>
#include <stdint.h>

#define EXPORT __attribute__((visibility("default")))

/* the format bonus of a response that ends with end_id */
#define FORMAT_BONUS 0.5f

EXPORT const char length_bonus_signature[] = "(i32[B, T], i32[B, T], f32, f32, i32) -> f32[B]";
EXPORT const char soft_excess_signature[] = "(f32[N], f32) -> f32[N]";
EXPORT const char masked_moments_signature[] = "(f32[B, T], i32[B, T]) -> (f32[B], f32[B])";

EXPORT int length_bonus(int64_t B, int64_t T, const int32_t *ids, const int32_t *mask, float target, float width,
                        int32_t end_id, float *bonus) {
    if (!(width > 0)) return 1; /* the Gaussian needs a positive width */
    for (int64_t b = 0; b < B; b++) {
        int64_t len = 0, last = -1;
        for (int64_t t = 0; t < T; t++)
            if (mask[b * T + t]) len++, last = t;
        float z = ((float)len - target) / width;
        bonus[b] = expf(-z * z);
        if (last >= 0 && ids[b * T + last] == end_id) bonus[b] += FORMAT_BONUS;
    }
    return 0;
}

/* softplus(z) without overflow: max(z, 0) + log1p(exp(-|z|)) */
#define SOFT_EXCESS(SUFFIX, REAL, EXP, LOG1P, FABS)                                               \
    EXPORT int soft_excess##SUFFIX(int64_t N, const REAL *x, REAL t, REAL *y) {                   \
        for (int64_t i = 0; i < N; i++) {                                                          \
            REAL z = x[i] - t;                                                                     \
            y[i] = (z > 0 ? z : 0) + LOG1P(EXP(-FABS(z)));                                         \
        }                                                                                          \
        return 0;                                                                                  \
    }                                                                                              \
    /* dx = dy * sigmoid(x - t), dt = -sum(dy * sigmoid(x - t)) */                                 \
    EXPORT int soft_excess_bwd##SUFFIX(int64_t N, const REAL *x, REAL t, const REAL *dy, REAL *dx, \
                                       REAL *dt) {                                                 \
        REAL sum = 0;                                                                              \
        for (int64_t i = 0; i < N; i++) {                                                          \
            REAL z = x[i] - t;                                                                     \
            REAL s = z >= 0 ? 1 / (1 + EXP(-z)) : EXP(z) / (1 + EXP(z));                           \
            dx[i] = dy[i] * s;                                                                     \
            sum += dy[i] * s;                                                                      \
        }                                                                                          \
        *dt = -sum;                                                                                \
        return 0;                                                                                  \
    }

SOFT_EXCESS(, float, expf, log1pf, fabsf)
SOFT_EXCESS(_f64, double, exp, log1p, fabs)

/* mean_b = sum_t m x / n_b, var_b = sum_t m (x - mean_b)^2 / n_b. Backward:
 * dx = m (dmean + 2 dvar (x - mean)) / n (the mean's own dependence on x
 * cancels in var's gradient because sum_t m (x - mean) = 0). */
#define MASKED_MOMENTS(SUFFIX, REAL)                                                                   \
    EXPORT int masked_moments##SUFFIX(int64_t B, int64_t T, const REAL *x, const int32_t *m, REAL *mean, \
                                      REAL *var) {                                                    \
        for (int64_t b = 0; b < B; b++) {                                                             \
            REAL n = 0, s = 0, q = 0;                                                                 \
            for (int64_t t = 0; t < T; t++)                                                           \
                if (m[b * T + t]) n += 1, s += x[b * T + t];                                          \
            mean[b] = n > 0 ? s / n : 0;                                                              \
            for (int64_t t = 0; t < T; t++)                                                           \
                if (m[b * T + t]) q += (x[b * T + t] - mean[b]) * (x[b * T + t] - mean[b]);           \
            var[b] = n > 0 ? q / n : 0;                                                               \
        }                                                                                             \
        return 0;                                                                                     \
    }                                                                                                 \
    EXPORT int masked_moments_bwd##SUFFIX(int64_t B, int64_t T, const REAL *x, const int32_t *m,      \
                                          const REAL *dmean, const REAL *dvar, REAL *dx) {            \
        for (int64_t b = 0; b < B; b++) {                                                             \
            REAL n = 0, s = 0;                                                                        \
            for (int64_t t = 0; t < T; t++)                                                           \
                if (m[b * T + t]) n += 1, s += x[b * T + t];                                          \
            if (n == 0) continue;                                                                     \
            REAL mu = s / n;                                                                          \
            for (int64_t t = 0; t < T; t++)                                                           \
                if (m[b * T + t]) dx[b * T + t] = (dmean[b] + 2 * dvar[b] * (x[b * T + t] - mu)) / n; \
        }                                                                                             \
        return 0;                                                                                     \
    }

MASKED_MOMENTS(, float)
MASKED_MOMENTS(_f64, double)
