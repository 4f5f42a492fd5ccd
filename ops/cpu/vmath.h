/* ops/cpu/vmath.h - a branch-free f32 exp that compilers vectorise, and the
 * f32 functions built on it (sigmoid, GELU's tanh form), for the CPU
 * kernels' hot loops. glibc's expf/tanhf are scalar calls, so a loop over
 * them runs one element at a time: GELU and its gradient were a third of an
 * SFT step of the small preset, the softmax/cross-entropy exps most of the
 * rest of the non-GEMM time.
 *
 * Method (Cephes expf, S. L. Moshier, Cephes Mathematical Library, 1984-1992;
 * the same polynomial as Pommier's sse_mathfun and Eigen's pexp):
 *   n = round(x / ln 2), r = x - n ln 2 with ln 2 split in two parts
 *   (Cody-Waite: C1 = 0.693359375 has few bits so n * C1 is exact), so
 *   |r| <= ln(2) / 2; exp(r) = 1 + r + r^2 P(r) with Cephes's degree-5
 *   minimax P; exp(x) = 2^n exp(r), the power built in the exponent bits.
 * Accuracy: within 1 ulp of the exact exp (0.99 ulp worst, checked
 * exhaustively against double exp for every f32 in [-104, 89], denormal
 * results included; tests/test_vmath.c repeats a strided sweep). 2^n is applied as two factors 2^(n/2) 2^(n - n/2) so
 * that results near overflow and in the denormal range come out right
 * rather than flushing: x >= 88.73 gives +inf, x <= -104 gives 0, NaN stays
 * NaN, -inf gives 0, +inf gives +inf.
 *
 * Every operation is a plain IEEE add/multiply/compare/select (no library
 * call, no branch), so loops over these inline functions vectorise with the
 * baseline SSE2 as well as with wider targets, and, as nothing is
 * contracted into FMA (GCC does not in ISO C mode; RL_NO_CONTRACT below
 * tells clang), give the same bits whichever vector width runs them.
 */
#ifndef RL_VMATH_H
#define RL_VMATH_H

#include <stdint.h>
#include <string.h>

/* clang contracts a * b + c into an FMA by default (-ffp-contract=on) where
 * the target has one, which would make the AVX2/AVX-512 builds of these
 * functions round differently from the SSE2 one (and from GCC, which does
 * not contract in ISO C mode); each body below opts out. */
#if defined(__clang__)
#define RL_NO_CONTRACT _Pragma("clang fp contract(off)")
#else
#define RL_NO_CONTRACT
#endif

static inline float rl_bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* exp(x) for f32, see the comment at the top. */
static inline float rl_expf(float x) {
    RL_NO_CONTRACT
    const float log2e = 1.44269504088896341f;
    const float c1 = 0.693359375f, c2 = -2.12194440e-4f; /* c1 + c2 = ln 2 */
    const float magic = 12582912.0f;                    /* 1.5 * 2^23: rounds to an integer */
    /* clamp; NaN becomes 0 here (converting NaN to an integer is undefined)
     * and is put back at the end */
    float xc = x > 88.8f ? 88.8f : x;
    xc = xc < -104.0f ? -104.0f : xc;
    xc = x != x ? 0.0f : xc;
    /* n = round(xc * log2e) as a float, exactly an integer in [-150, 128] */
    float t = xc * log2e + magic;
    float n = t - magic;
    float r = xc - n * c1;
    r = r - n * c2;
    float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    /* 2^n = 2^n1 * 2^n2, each factor a normal float (n1, n2 in [-75, 64]) */
    int32_t ni = (int32_t)n;
    int32_t n1 = ni / 2, n2 = ni - n1;
    float s1 = rl_bits_to_float((uint32_t)(n1 + 127) << 23);
    float s2 = rl_bits_to_float((uint32_t)(n2 + 127) << 23);
    float e = p * s1 * s2;
    return x != x ? x : e;
}

/* 1 / (1 + exp(-x)); saturates to 0 and 1 without overflow trouble (exp of
 * a large argument is +inf and 1 / inf is 0). */
static inline float rl_sigmoidf(float x) {
    RL_NO_CONTRACT
    return 1.0f / (1.0f + rl_expf(-x));
}

#define RL_GELU_C_F 0.7978845608028654f /* sqrt(2 / pi) */
#define RL_GELU_K_F 0.044715f

/* GPT-2's GELU, 0.5 x (1 + tanh(u)) with u = sqrt(2/pi) (x + 0.044715 x^3),
 * written as x * sigmoid(2u) (the same function: 0.5 (1 + tanh(u)) =
 * sigmoid(2u)), which needs one exp and no tanh, and for very negative x
 * avoids the cancellation in 1 + tanh(u). */
static inline float rl_geluf(float x) {
    RL_NO_CONTRACT
    float u = RL_GELU_C_F * (x + RL_GELU_K_F * x * x * x);
    return x * rl_sigmoidf(2.0f * u);
}

/* d gelu / dx: with e = exp(-2u) and s = sigmoid(2u) = 1 / (1 + e) (so
 * tanh(u) = 2s - 1 and 1 - tanh(u)^2 = 4 s (1 - s)),
 * 0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) u' = s + 2 x s (1 - s) u',
 * u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2). 1 - s is taken as e s, which does
 * not cancel when s is near 1 (max abs error 2e-7 against f64 over
 * [-40, 40], where 0.5 (1 - tanh^2) in f32 gave 6e-7). -2u is capped at 80
 * so e stays finite (inf * 0 would be NaN); beyond it s (1 - s) < 2e-35. */
static inline float rl_gelu_gradf(float x) {
    RL_NO_CONTRACT
    float u = RL_GELU_C_F * (x + RL_GELU_K_F * x * x * x);
    float a = -2.0f * u;
    a = a > 80.0f ? 80.0f : a;
    float e = rl_expf(a);
    float s = 1.0f / (1.0f + e);
    float du = RL_GELU_C_F * (1.0f + 3.0f * RL_GELU_K_F * x * x);
    return s + 2.0f * x * (e * s * s) * du;
}

#endif
