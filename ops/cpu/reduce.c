/* ops/cpu/reduce.c - CPU kernels of the reductions (sum, mean, max and
 * logsumexp over one axis or all of them) and of softmax / log_softmax over
 * the last axis, in f32 and f64.
 *
 * A reduction views its input as [outer, n, inner] with n the reduced axis
 * (RL_AXIS_ALL is [1, numel, 1]); the output is [outer, inner] in the same
 * order whatever keepdim says. Contiguous rows (inner == 1: the last axis, or
 * all) are the common case and get their own loop; other axes are reduced a
 * block of RL_RED_BLOCK columns at a time so the inner loop is a straight
 * vectorisable pass over a contiguous row.
 *
 * Accuracy: every sum accumulates in double (f32 inputs too), pairwise for
 * rows, so f32 results stay within rounding of the f64 ones; exp-based ops
 * subtract the maximum first so nothing overflows.
 */
#include "cpu.h"
#include "vmath.h"

#include <math.h>

/* Columns reduced together when inner > 1 (the accumulators live on the stack). */
#define RL_RED_BLOCK 1024
/* Independent partial sums / maxima per row (a power of two). */
#define RL_RED_LANES 8
/* max(v, m) where a NaN v wins, and a NaN m stays. Bitwise | (not ||) so
 * both comparisons always run: the compiler can then turn the select into
 * vector blends (with a branch, it would not vectorise). */
#define RL_MAX_NAN(v, m) ((((v) > (m)) | ((v) != (v))) ? (v) : (m))
/* Rows no longer than this are summed directly; longer ones are split in two
 * (pairwise summation: error grows with log n instead of n). */
#define RL_RED_PAIRWISE 256

typedef struct rl_red_dims {
    int64_t outer, n, inner;
} rl_red_dims;

/* [outer, n, inner] of the node's input for its (normalised) axis. */
static rl_red_dims rl_red_dims_get(const rl_node *nd) {
    const rl_tensor *x = nd->in[0];
    rl_red_dims d = {1, x->numel, 1};
    int axis = nd->attrs.axis;
    if (axis == RL_AXIS_ALL) return d;
    d.n = x->shape[axis];
    for (int i = 0; i < axis; i++) d.outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) d.inner *= x->shape[i];
    return d;
}

static inline int64_t rl_red_min(int64_t a, int64_t b) { return a < b ? a : b; }

/* Width of the column blocks of a reduction over a non-last axis: at most
 * RL_RED_BLOCK, and narrow enough that every thread gets a block when the
 * reduction is big enough to thread (multiples of 16 columns). */
static int64_t rl_red_block_width(rl_red_dims d) {
    int64_t nt = omp_get_max_threads();
    int64_t w = RL_RED_BLOCK;
    if (d.outer < nt && (double)d.outer * (double)d.n * (double)d.inner > RL_PAR_GRAIN) {
        int64_t per = (d.inner + nt - 1) / nt;
        per = (per + 15) / 16 * 16;
        if (per < w) w = per;
    }
    return w;
}

/* Row primitives of the f64 path: pairwise sum, maximum, sum of exp(x - m),
 * and y = exp(x - m). The f32 ones are the dispatched array loops of
 * ops/cpu/vec.c (rl_vsum_f32 and rl_vmax_f32 are these same algorithms;
 * vectorised 16 wide on AVX-512 where this file's loops get SSE2). */

/* Pairwise sum of a contiguous row, in double. The base case keeps
 * RL_RED_LANES independent partial sums, which the compiler turns into
 * vector adds (one running sum would be a serial chain it may not
 * reorder). */
static double rl_row_sum_f64(const double *x, int64_t n) {
    if (n > RL_RED_PAIRWISE) {
        int64_t h = (n / 2 + RL_RED_LANES - 1) & ~(int64_t)(RL_RED_LANES - 1);
        return rl_row_sum_f64(x, h) + rl_row_sum_f64(x + h, n - h);
    }
    double a[RL_RED_LANES] = {0};
    int64_t i = 0;
    for (; i + RL_RED_LANES <= n; i += RL_RED_LANES)
        for (int l = 0; l < RL_RED_LANES; l++) a[l] += x[i + l];
    for (; i < n; i++) a[0] += x[i];
    double s = 0;
    for (int l = 0; l < RL_RED_LANES; l++) s += a[l];
    return s;
}

/* Maximum of a row, in RL_RED_LANES lanes (vectorised); a NaN wins (once a
 * lane holds NaN nothing compares greater) and an empty row gives -inf. */
static double rl_row_max_f64(const double *x, int64_t n) {
    double m[RL_RED_LANES];
    for (int l = 0; l < RL_RED_LANES; l++) m[l] = -INFINITY;
    int64_t i = 0;
    for (; i + RL_RED_LANES <= n; i += RL_RED_LANES)
        for (int l = 0; l < RL_RED_LANES; l++) m[l] = RL_MAX_NAN(x[i + l], m[l]);
    for (; i < n; i++) m[0] = RL_MAX_NAN(x[i], m[0]);
    double r = m[0];
    for (int l = 1; l < RL_RED_LANES; l++) r = RL_MAX_NAN(m[l], r);
    return r;
}

static void rl_row_exp_f64(const double *x, double *y, int64_t n, double m) {
    for (int64_t i = 0; i < n; i++) y[i] = exp(x[i] - m);
}

/* acc[c] += x[c] for the column sums of a non-last axis */
static void rl_col_acc_f64(double *acc, const double *x, int64_t n) {
    for (int64_t c = 0; c < n; c++) acc[c] += x[c];
}
static inline void rl_col_acc_f32(double *acc, const float *x, int64_t n) { rl_vacc_f32(acc, x, n); }

static inline double rl_row_sum_f32(const float *x, int64_t n) { return rl_vsum_f32(x, n); }
static inline float rl_row_max_f32(const float *x, int64_t n) { return rl_vmax_f32(x, n); }
static inline void rl_row_exp_f32(const float *x, float *y, int64_t n, float m) {
    rl_vexp_f32(x, y, n, m, 1.0f);
}

/* Generates the per-dtype helpers and kernels. T is the element type, SFX
 * the name suffix, EXP the exp of that precision (log runs in double on the
 * double sums). */
#define RL_RED_DEFINE(T, SFX, EXP)                                                               \
    /* sum(exp(x - m)) of a row, in double. The exponentials go through a                        \
     * small buffer and are summed in lanes, so the exp calls do not wait on                     \
     * one running sum. */                                                                       \
    static double rl_row_sumexp_##SFX(const T *x, int64_t n, T m) {                              \
        T e[RL_RED_PAIRWISE];                                                                    \
        double s = 0;                                                                            \
        for (int64_t i0 = 0; i0 < n; i0 += RL_RED_PAIRWISE) {                                    \
            int64_t w = rl_red_min(RL_RED_PAIRWISE, n - i0);                                     \
            rl_row_exp_##SFX(x + i0, e, w, m);                                                   \
            s += rl_row_sum_##SFX(e, w);                                                         \
        }                                                                                        \
        return s;                                                                                \
    }                                                                                            \
                                                                                                 \
    /* log(sum(exp(x))) = m + log(sum(exp(x - m))); a non-finite maximum is                      \
     * the answer itself (all -inf or empty: -inf; +inf; NaN), which also                        \
     * avoids inf - inf. */                                                                      \
    static T rl_row_lse_##SFX(const T *x, int64_t n) {                                           \
        T m = rl_row_max_##SFX(x, n);                                                            \
        if (!isfinite(m)) return m;                                                              \
        return (T)((double)m + log(rl_row_sumexp_##SFX(x, n, m)));                               \
    }                                                                                            \
                                                                                                 \
    /* Sum (or mean) over the middle axis of [outer, n, inner]. */                               \
    static void rl_red_sum_##SFX(const T *x, T *y, rl_red_dims d, int mean) {                    \
        double div = mean ? (double)d.n : 1.0; /* mean of nothing: 0/0 = NaN */                  \
        if (d.inner == 1) {                                                                      \
            RL_PAR_FOR_W(o, d.outer, d.n, y[o] = (T)(rl_row_sum_##SFX(x + o * d.n, d.n) / div););\
            return;                                                                              \
        }                                                                                        \
        /* column blocks of every outer index are independent tasks; the                         \
         * columns of one block are summed row after row (the same order                         \
         * whatever the block width, so the width may follow the threads) */                     \
        const int64_t bw = rl_red_block_width(d);                                                \
        const int64_t nb = (d.inner + bw - 1) / bw;                                              \
        RL_PAR_FOR_W(task, d.outer * nb, d.n * bw, {                                             \
            const int64_t o = task / nb, c0 = task % nb * bw;                                    \
            const int64_t w = rl_red_min(bw, d.inner - c0);                                      \
            double acc[RL_RED_BLOCK];                                                            \
            for (int64_t c = 0; c < w; c++) acc[c] = 0;                                          \
            for (int64_t j = 0; j < d.n; j++)                                                    \
                rl_col_acc_##SFX(acc, x + (o * d.n + j) * d.inner + c0, w);                      \
            T *yo = y + o * d.inner + c0;                                                        \
            for (int64_t c = 0; c < w; c++) yo[c] = (T)(acc[c] / div);                           \
        });                                                                                      \
    }                                                                                            \
                                                                                                 \
    /* Maximum over the middle axis (the front end rejects n == 0). */                           \
    static void rl_red_max_##SFX(const T *x, T *y, rl_red_dims d) {                              \
        if (d.inner == 1) {                                                                      \
            RL_PAR_FOR_W(o, d.outer, d.n, y[o] = rl_row_max_##SFX(x + o * d.n, d.n););          \
            return;                                                                              \
        }                                                                                        \
        for (int64_t o = 0; o < d.outer; o++) {                                                  \
            T *yo = y + o * d.inner;                                                             \
            for (int64_t c = 0; c < d.inner; c++) yo[c] = (T)-INFINITY;                          \
            for (int64_t j = 0; j < d.n; j++) {                                                  \
                const T *r = x + (o * d.n + j) * d.inner;                                        \
                for (int64_t c = 0; c < d.inner; c++) yo[c] = RL_MAX_NAN(r[c], yo[c]);           \
            }                                                                                    \
        }                                                                                        \
    }                                                                                            \
                                                                                                 \
    /* logsumexp over the middle axis: a max pass, then a sum-of-exp pass. */                    \
    static void rl_red_lse_##SFX(const T *x, T *y, rl_red_dims d) {                              \
        if (d.inner == 1) {                                                                      \
            RL_PAR_FOR_W(o, d.outer, 4 * d.n, y[o] = rl_row_lse_##SFX(x + o * d.n, d.n););      \
            return;                                                                              \
        }                                                                                        \
        T m[RL_RED_BLOCK];                                                                       \
        double s[RL_RED_BLOCK];                                                                  \
        for (int64_t o = 0; o < d.outer; o++)                                                    \
            for (int64_t c0 = 0; c0 < d.inner; c0 += RL_RED_BLOCK) {                             \
                int64_t w = rl_red_min(RL_RED_BLOCK, d.inner - c0);                              \
                const T *base = x + o * d.n * d.inner + c0;                                      \
                for (int64_t c = 0; c < w; c++) m[c] = (T)-INFINITY, s[c] = 0;                   \
                for (int64_t j = 0; j < d.n; j++)                                                \
                    for (int64_t c = 0; c < w; c++)                                              \
                        m[c] = RL_MAX_NAN(base[j * d.inner + c], m[c]);                          \
                for (int64_t j = 0; j < d.n; j++)                                                \
                    for (int64_t c = 0; c < w; c++)                                              \
                        if (isfinite(m[c])) s[c] += EXP(base[j * d.inner + c] - m[c]);           \
                T *yo = y + o * d.inner + c0;                                                    \
                for (int64_t c = 0; c < w; c++)                                                  \
                    yo[c] = isfinite(m[c]) ? (T)((double)m[c] + log(s[c])) : m[c];               \
            }                                                                                    \
    }                                                                                            \
                                                                                                 \
    /* softmax (or log_softmax) of each row of n contiguous elements. A row                      \
     * that is all -inf gives NaN, as in NumPy and PyTorch. */                                   \
    static void rl_softmax_rows_##SFX(const T *x, T *y, int64_t rows, int64_t n, int as_log) {   \
        RL_PAR_FOR_W(r, rows, 4 * n, {                                                          \
            const T *xr = x + r * n;                                                             \
            T *yr = y + r * n;                                                                   \
            T m = rl_row_max_##SFX(xr, n);                                                       \
            if (as_log) {                                                                        \
                T lse = (T)log(rl_row_sumexp_##SFX(xr, n, m));                                   \
                for (int64_t i = 0; i < n; i++) yr[i] = (xr[i] - m) - lse;                       \
            } else {                                                                             \
                rl_row_exp_##SFX(xr, yr, n, m);                                                  \
                T inv = (T)(1.0 / rl_row_sum_##SFX(yr, n));                                      \
                for (int64_t i = 0; i < n; i++) yr[i] *= inv;                                    \
            }                                                                                    \
        });                                                                                      \
    }

RL_RED_DEFINE(float, f32, rl_expf)
RL_RED_DEFINE(double, f64, exp)

/* ---- kernels (the op table's entries) ------------------------------------ */

void rl_cpu_sum(void *bctx, const rl_node *n) {
    (void)bctx;
    rl_red_dims d = rl_red_dims_get(n);
    if (n->out->dtype == RL_F32) rl_red_sum_f32(n->in[0]->data, n->out->data, d, 0);
    else rl_red_sum_f64(n->in[0]->data, n->out->data, d, 0);
}

void rl_cpu_mean(void *bctx, const rl_node *n) {
    (void)bctx;
    rl_red_dims d = rl_red_dims_get(n);
    if (n->out->dtype == RL_F32) rl_red_sum_f32(n->in[0]->data, n->out->data, d, 1);
    else rl_red_sum_f64(n->in[0]->data, n->out->data, d, 1);
}

void rl_cpu_max(void *bctx, const rl_node *n) {
    (void)bctx;
    rl_red_dims d = rl_red_dims_get(n);
    if (n->out->dtype == RL_F32) rl_red_max_f32(n->in[0]->data, n->out->data, d);
    else rl_red_max_f64(n->in[0]->data, n->out->data, d);
}

void rl_cpu_logsumexp(void *bctx, const rl_node *n) {
    (void)bctx;
    rl_red_dims d = rl_red_dims_get(n);
    if (n->out->dtype == RL_F32) rl_red_lse_f32(n->in[0]->data, n->out->data, d);
    else rl_red_lse_f64(n->in[0]->data, n->out->data, d);
}

/* softmax and log_softmax work on rows of the last axis (the front end
 * guarantees ndim >= 1). */
static void rl_cpu_softmax_any(const rl_node *n, int as_log) {
    const rl_tensor *x = n->in[0];
    int64_t len = x->shape[x->ndim - 1];
    if (len == 0 || x->numel == 0) return;
    int64_t rows = x->numel / len;
    if (x->dtype == RL_F32) rl_softmax_rows_f32(x->data, n->out->data, rows, len, as_log);
    else rl_softmax_rows_f64(x->data, n->out->data, rows, len, as_log);
}

void rl_cpu_softmax(void *bctx, const rl_node *n) {
    (void)bctx;
    rl_cpu_softmax_any(n, 0);
}

void rl_cpu_log_softmax(void *bctx, const rl_node *n) {
    (void)bctx;
    rl_cpu_softmax_any(n, 1);
}
