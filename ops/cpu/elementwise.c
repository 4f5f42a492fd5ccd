/* ops/cpu/elementwise.c - CPU kernels of the elementwise ops, in f32 and f64
 * (comparisons also in i32). Broadcasting is done by stride-0 axes; the
 * common cases (same shape, scalar operand) get straight loops the compiler
 * vectorises.
 */
#include "cpu.h"
#include "vmath.h"

#include <math.h>

/* True when t broadcasts against out as a repeated row: t's shape, without
 * leading 1s, is out's trailing axes (a bias [C] or [1, C] against [..., C]),
 * with more than one element and more than one row. */
static inline int rl_is_row_bcast(const rl_tensor *out, const rl_tensor *t) {
    int lead = 0;
    while (lead < t->ndim && t->shape[lead] == 1) lead++;
    int k = t->ndim - lead;
    if (k == 0 || k > out->ndim || t->numel < 2 || t->numel >= out->numel) return 0;
    for (int d = 0; d < k; d++)
        if (t->shape[lead + d] != out->shape[out->ndim - k + d]) return 0;
    return 1;
}

/* out = EXPR(x, y) with x from in[0], y from in[1], broadcasting. */
#define RL_BIN_LOOP(T, EXPR)                                                                  \
    do {                                                                                      \
        const T *pa = n->in[0]->data, *pb = n->in[1]->data;                                   \
        T *po = n->out->data;                                                                 \
        int64_t N = n->out->numel;                                                            \
        if (rl_same_numel(n->out, 2, n->in)) {                                                \
            RL_PAR_FOR(i, N, T x = pa[i]; T y = pb[i]; po[i] = (EXPR););                      \
        } else if (n->in[1]->numel == 1 && n->in[0]->numel == N) {                            \
            T y = pb[0];                                                                      \
            RL_PAR_FOR(i, N, T x = pa[i]; po[i] = (EXPR););                                   \
        } else if (n->in[0]->numel == 1 && n->in[1]->numel == N) {                            \
            T x = pa[0];                                                                      \
            RL_PAR_FOR(i, N, T y = pb[i]; po[i] = (EXPR););                                   \
        } else if (n->in[0]->numel == N && rl_is_row_bcast(n->out, n->in[1])) {               \
            /* x [..., C] op y [C] (a bias): rows of C with y reused */                       \
            const int64_t C = n->in[1]->numel;                                                \
            RL_PAR_FOR_W(r, N / C, C, {                                                       \
                const T *ra = pa + r * C;                                                     \
                T *ro = po + r * C;                                                           \
                for (int64_t c = 0; c < C; c++) {                                             \
                    T x = ra[c], y = pb[c];                                                   \
                    ro[c] = (EXPR);                                                           \
                }                                                                             \
            });                                                                               \
        } else if (n->in[1]->numel == N && rl_is_row_bcast(n->out, n->in[0])) {               \
            const int64_t C = n->in[0]->numel;                                                \
            RL_PAR_FOR_W(r, N / C, C, {                                                       \
                const T *rb = pb + r * C;                                                     \
                T *ro = po + r * C;                                                           \
                for (int64_t c = 0; c < C; c++) {                                             \
                    T x = pa[c], y = rb[c];                                                   \
                    ro[c] = (EXPR);                                                           \
                }                                                                             \
            });                                                                               \
        } else {                                                                              \
            rl_bcast b;                                                                       \
            rl_bcast_setup(&b, n->out, 2, n->in);                                             \
            const int64_t *sa = b.stride[0], *sb = b.stride[1];                               \
            int64_t o = 0;                                                                    \
            for (int64_t i0 = 0; i0 < b.shape[0]; i0++)                                       \
                for (int64_t i1 = 0; i1 < b.shape[1]; i1++)                                   \
                    for (int64_t i2 = 0; i2 < b.shape[2]; i2++) {                             \
                        const T *ra = pa + i0 * sa[0] + i1 * sa[1] + i2 * sa[2];              \
                        const T *rb = pb + i0 * sb[0] + i1 * sb[1] + i2 * sb[2];              \
                        for (int64_t i3 = 0; i3 < b.shape[3]; i3++) {                         \
                            T x = ra[i3 * sa[3]], y = rb[i3 * sb[3]];                         \
                            po[o++] = (EXPR);                                                 \
                        }                                                                     \
                    }                                                                         \
        }                                                                                     \
    } while (0)

#define RL_BIN_KERNEL(name, EXPR)                                              \
    void rl_cpu_##name(void *bctx, const rl_node *n) {                         \
        (void)bctx;                                                            \
        if (n->out->dtype == RL_F32) RL_BIN_LOOP(float, EXPR);                 \
        else if (n->out->dtype == RL_F64) RL_BIN_LOOP(double, EXPR);           \
        else RL_BIN_LOOP(int32_t, EXPR);                                       \
    }

RL_BIN_KERNEL(add, x + y)
RL_BIN_KERNEL(sub, x - y)
RL_BIN_KERNEL(mul, x * y)
RL_BIN_KERNEL(div, x / y)
RL_BIN_KERNEL(minimum, x <= y ? x : y)
RL_BIN_KERNEL(maximum, x >= y ? x : y)
RL_BIN_KERNEL(gt, x > y)
RL_BIN_KERNEL(ge, x >= y)
RL_BIN_KERNEL(lt, x < y)
RL_BIN_KERNEL(le, x <= y)
RL_BIN_KERNEL(eq, x == y)

#define RL_WHERE_LOOP(T, TC)                                                                  \
    do {                                                                                      \
        rl_bcast b;                                                                           \
        rl_bcast_setup(&b, n->out, 3, n->in);                                                 \
        const TC *pc = n->in[0]->data;                                                        \
        const T *pa = n->in[1]->data, *pb = n->in[2]->data;                                   \
        T *po = n->out->data;                                                                 \
        const int64_t *sc = b.stride[0], *sa = b.stride[1], *sb = b.stride[2];                \
        int64_t o = 0;                                                                        \
        for (int64_t i0 = 0; i0 < b.shape[0]; i0++)                                           \
            for (int64_t i1 = 0; i1 < b.shape[1]; i1++)                                       \
                for (int64_t i2 = 0; i2 < b.shape[2]; i2++) {                                 \
                    int64_t oc = i0 * sc[0] + i1 * sc[1] + i2 * sc[2];                        \
                    int64_t oa = i0 * sa[0] + i1 * sa[1] + i2 * sa[2];                        \
                    int64_t ob = i0 * sb[0] + i1 * sb[1] + i2 * sb[2];                        \
                    for (int64_t i3 = 0; i3 < b.shape[3]; i3++)                               \
                        po[o++] = pc[oc + i3 * sc[3]] != 0 ? pa[oa + i3 * sa[3]]              \
                                                           : pb[ob + i3 * sb[3]];             \
                }                                                                             \
    } while (0)

#define RL_WHERE_COND(T)                                                       \
    do {                                                                       \
        switch (n->in[0]->dtype) {                                             \
        case RL_F32: RL_WHERE_LOOP(T, float); break;                           \
        case RL_F64: RL_WHERE_LOOP(T, double); break;                          \
        default: RL_WHERE_LOOP(T, int32_t); break;                             \
        }                                                                      \
    } while (0)

void rl_cpu_where(void *bctx, const rl_node *n) {
    (void)bctx;
    if (n->out->dtype == RL_F32) RL_WHERE_COND(float);
    else RL_WHERE_COND(double);
}

/* out = EXPR(x) elementwise; p and q are the op's float attributes. */
#define RL_UN_LOOP(T, EXPR)                                                    \
    do {                                                                       \
        const T *px = n->in[0]->data;                                          \
        T *po = n->out->data;                                                  \
        const T p = (T)n->attrs.f[0], q = (T)n->attrs.f[1];                    \
        (void)p;                                                               \
        (void)q;                                                               \
        RL_PAR_FOR(i, n->out->numel, T x = px[i]; po[i] = (EXPR););           \
    } while (0)

/* F is the f32 libm name and D the f64 one, e.g. expf / exp. */
#define RL_UN_KERNEL(name, EXPR32, EXPR64)                                     \
    void rl_cpu_##name(void *bctx, const rl_node *n) {                         \
        (void)bctx;                                                            \
        if (n->out->dtype == RL_F32) RL_UN_LOOP(float, EXPR32);                \
        else if (n->out->dtype == RL_F64) RL_UN_LOOP(double, EXPR64);          \
        else RL_UN_LOOP(int32_t, x); /* i32 reaches only stop_gradient */     \
    }

#define RL_GELU_C 0.7978845608028654 /* sqrt(2/pi) */

RL_UN_KERNEL(neg, -x, -x)
static RL_UN_KERNEL(exp_any, rl_expf(x), exp(x))
RL_UN_KERNEL(log, logf(x), log(x))
RL_UN_KERNEL(log1p, log1pf(x), log1p(x))
RL_UN_KERNEL(sqrt, sqrtf(x), sqrt(x))
RL_UN_KERNEL(square, x * x, x * x)
RL_UN_KERNEL(abs, fabsf(x), fabs(x))
RL_UN_KERNEL(tanh, tanhf(x), tanh(x))
/* two-sided form so exp never overflows */
RL_UN_KERNEL(sigmoid, x >= 0 ? 1.0f / (1.0f + rl_expf(-x)) : rl_expf(x) / (1.0f + rl_expf(x)),
             x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)))
/* log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)) (objectives.md) */
RL_UN_KERNEL(logsigmoid, fminf(x, 0.0f) - log1pf(expf(-fabsf(x))), fmin(x, 0.0) - log1p(exp(-fabs(x))))
/* softplus(x) = max(x, 0) + log1p(exp(-|x|)): exp never overflows */
RL_UN_KERNEL(softplus, fmaxf(x, 0.0f) + log1pf(rl_expf(-fabsf(x))), fmax(x, 0.0) + log1p(exp(-fabs(x))))
RL_UN_KERNEL(relu, x > 0 ? x : 0, x > 0 ? x : 0)
/* x * sigmoid(x), with sigmoid's two-sided form */
RL_UN_KERNEL(silu, x >= 0 ? x / (1.0f + rl_expf(-x)) : x * rl_expf(x) / (1.0f + rl_expf(x)),
             x >= 0 ? x / (1.0 + exp(-x)) : x * exp(x) / (1.0 + exp(x)))
static RL_UN_KERNEL(gelu_any, rl_geluf(x), 0.5 * x * (1.0 + tanh(RL_GELU_C * (x + 0.044715 * x * x * x))))

/* f32 exp and GELU go through the dispatched array loops (ops/cpu/vec.c);
 * GELU in f32 is x * sigmoid(2u), the same function without tanhf
 * (ops/cpu/vmath.h). */
void rl_cpu_exp(void *bctx, const rl_node *n) {
    if (n->out->dtype != RL_F32) {
        rl_cpu_exp_any(bctx, n);
        return;
    }
    const float *px = n->in[0]->data;
    float *po = n->out->data;
    RL_PAR_RANGE(lo, hi, n->out->numel, 4, rl_vexp_f32(px + lo, po + lo, hi - lo, 0.0f, 1.0f););
}

void rl_cpu_gelu(void *bctx, const rl_node *n) {
    if (n->out->dtype != RL_F32) {
        rl_cpu_gelu_any(bctx, n);
        return;
    }
    const float *px = n->in[0]->data;
    float *po = n->out->data;
    RL_PAR_RANGE(lo, hi, n->out->numel, 4, rl_vgelu_f32(px + lo, po + lo, hi - lo););
}
RL_UN_KERNEL(clamp, x < p ? p : (x > q ? q : x), x < p ? p : (x > q ? q : x))
RL_UN_KERNEL(pow, powf(x, p), pow(x, p))
RL_UN_KERNEL(stop_gradient, x, x)

/* d gelu(x) / dx * dy, with t = tanh(c (x + 0.044715 x^3)):
 * 0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2); f32 takes the
 * sigmoid form of ops/cpu/vmath.h (rl_gelu_gradf). */
void rl_cpu_gelu_grad(void *bctx, const rl_node *n) {
    (void)bctx;
    if (n->out->dtype == RL_F32) {
        const float *px = n->in[0]->data, *pd = n->in[1]->data;
        float *po = n->out->data;
        RL_PAR_RANGE(lo, hi, n->out->numel, 4, rl_vgelu_grad_f32(px + lo, pd + lo, po + lo, hi - lo););
    } else {
        const double *px = n->in[0]->data, *pd = n->in[1]->data;
        double *po = n->out->data;
        const double c = RL_GELU_C, k = 0.044715;
        RL_PAR_FOR_W(i, n->out->numel, 8, double x = px[i]; double t = tanh(c * (x + k * x * x * x));
                     double d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * k * x * x);
                     po[i] = d * pd[i];);
    }
}
