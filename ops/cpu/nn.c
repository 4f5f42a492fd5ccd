/* ops/cpu/nn.c - CPU kernels of the fused neural-network primitives, in f32
 * and f64: layernorm, rmsnorm, rope, cross_entropy, causal attention (with
 * grouped-query heads), and their backward-only kernels (layernorm_grad,
 * rmsnorm_grad, cross_entropy_grad, attention_grad). The front
 * ends (ops/nn.c) have checked shapes, dtypes, target ranges and that the
 * attention sizes fit BLAS's int; the kernels trust them.
 *
 * Each kernel body is written once as a macro that defines a static function
 * per element type (float / double, with the matching libm and BLAS names),
 * like ops/cpu/elementwise.c does with its loops.
 */
#include "cpu.h"
#include "vmath.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- layernorm ----------------------------------------------------------------
 * Forward, per row of C features (GPT-2 / PyTorch definition, biased variance):
 *   mean = sum(x) / C, var = sum((x - mean)^2) / C, rstd = 1 / sqrt(var + eps),
 *   y = (x - mean) * rstd * w + b.
 * The variance is taken in two passes (around the mean) rather than as
 * E[x^2] - mean^2, which cancels catastrophically in f32 when |mean| >> std.
 * stats[row] = (mean, rstd) is saved for the backward.
 *
 * Backward for dx (as llm.c's layernorm_backward), with xhat = (x - mean) * rstd
 * and g = dy * w:
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)).
 * (dw and db are sums over rows, done with ops in the backward rule.)
 * Rows are spread over the threads, each row on one thread. */

#define RL_LN_FWD(T, SQRT)                                                                  \
    static void rl_ln_fwd_##T(const T *x, const T *w, const T *b, T *y, T *st, int64_t rows, \
                              int64_t C, T eps) {                                           \
        RL_PAR_FOR_W(r, rows, 4 * C, {                                                      \
            const T *xr = x + r * C;                                                        \
            T *yr = y + r * C;                                                              \
            T s = 0;                                                                        \
            for (int64_t c = 0; c < C; c++) s += xr[c];                                     \
            T mean = s / (T)C;                                                              \
            T v = 0;                                                                        \
            for (int64_t c = 0; c < C; c++) {                                               \
                T d = xr[c] - mean;                                                         \
                v += d * d;                                                                 \
            }                                                                               \
            T rstd = (T)1 / SQRT(v / (T)C + eps);                                           \
            for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - mean) * rstd * w[c] + b[c];    \
            if (st) {                                                                       \
                st[2 * r] = mean;                                                           \
                st[2 * r + 1] = rstd;                                                       \
            }                                                                               \
        });                                                                                 \
    }

#define RL_LN_BWD(T)                                                                        \
    static void rl_ln_bwd_##T(const T *x, const T *w, const T *st, const T *dy, T *dx,      \
                              int64_t rows, int64_t C) {                                    \
        RL_PAR_FOR_W(r, rows, 4 * C, {                                                      \
            const T *xr = x + r * C, *dyr = dy + r * C;                                     \
            T *dxr = dx + r * C;                                                            \
            const T mean = st[2 * r], rstd = st[2 * r + 1];                                 \
            T sg = 0, sgx = 0; /* sum(g), sum(g * xhat) */                                  \
            for (int64_t c = 0; c < C; c++) {                                               \
                T g = dyr[c] * w[c];                                                        \
                sg += g;                                                                    \
                sgx += g * (xr[c] - mean) * rstd;                                           \
            }                                                                               \
            const T mg = sg / (T)C, mgx = sgx / (T)C;                                       \
            for (int64_t c = 0; c < C; c++) {                                               \
                T xhat = (xr[c] - mean) * rstd;                                             \
                dxr[c] = rstd * (dyr[c] * w[c] - mg - xhat * mgx);                          \
            }                                                                               \
        });                                                                                 \
    }

/* f32 rows go to the dispatched loops of ops/cpu/vec.c (same formulas, sums
 * over 8 double lanes instead of one f32 running sum), split across threads */
static void rl_ln_fwd_float(const float *x, const float *w, const float *b, float *y, float *st,
                            int64_t rows, int64_t C, float eps) {
    RL_PAR_RANGE(lo, hi, rows, 6 * C,
                 rl_vln_fwd_f32(x + lo * C, w, b, y + lo * C, st ? st + 2 * lo : NULL, hi - lo, C,
                                eps););
}
static void rl_ln_bwd_float(const float *x, const float *w, const float *st, const float *dy,
                            float *dx, int64_t rows, int64_t C) {
    RL_PAR_RANGE(lo, hi, rows, 6 * C,
                 rl_vln_bwd_f32(x + lo * C, w, st + 2 * lo, dy + lo * C, dx + lo * C, hi - lo, C););
}
RL_LN_FWD(double, sqrt)
RL_LN_BWD(double)

/* in: x [..., C], w [C], b [C]; attrs.f[0] = eps; saved[0] = stats [rows, 2] */
void rl_cpu_layernorm(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0];
    int64_t C = x->shape[x->ndim - 1];
    int64_t rows = C ? x->numel / C : 0;
    void *st = n->saved[0] ? n->saved[0]->data : NULL;
    if (x->dtype == RL_F32)
        rl_ln_fwd_float(x->data, n->in[1]->data, n->in[2]->data, n->out->data, st, rows, C,
                        (float)n->attrs.f[0]);
    else
        rl_ln_fwd_double(x->data, n->in[1]->data, n->in[2]->data, n->out->data, st, rows, C,
                         n->attrs.f[0]);
}

/* in: x [..., C], w [C], stats [rows, 2], dy [..., C]; out: dx [..., C] */
void rl_cpu_layernorm_grad(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0];
    int64_t C = x->shape[x->ndim - 1];
    int64_t rows = C ? x->numel / C : 0;
    if (x->dtype == RL_F32)
        rl_ln_bwd_float(x->data, n->in[1]->data, n->in[2]->data, n->in[3]->data, n->out->data,
                        rows, C);
    else
        rl_ln_bwd_double(x->data, n->in[1]->data, n->in[2]->data, n->in[3]->data, n->out->data,
                         rows, C);
}

/* ---- rmsnorm ---------------------------------------------------------------------
 * Forward, per row of C features (Llama / Hugging Face LlamaRMSNorm):
 *   rstd = 1 / sqrt(sum(x^2) / C + eps), y = x * rstd * w.
 * The sum of squares is accumulated in double for f32 too (HF computes the
 * statistic in float32 for bf16 weights; a float running sum over C = 4096
 * would lose more than that). rstd is saved per row.
 * Backward for dx, with xhat = x * rstd and g = dy * w:
 *   dx = rstd * (g - xhat * mean(g * xhat)).
 * (dw is a sum over rows, done with ops in the backward rule.) */

#define RL_RMS_KERNELS(T, SQRT)                                                             \
    static void rl_rms_fwd_##T(const T *x, const T *w, T *y, T *st, int64_t rows, int64_t C, \
                               double eps) {                                                \
        RL_PAR_FOR_W(r, rows, 3 * C, {                                                      \
            const T *xr = x + r * C;                                                        \
            T *yr = y + r * C;                                                              \
            double ss = 0;                                                                  \
            for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * (double)xr[c];            \
            const T rstd = (T)(1.0 / SQRT(ss / (double)C + eps));                          \
            for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * rstd * w[c];                    \
            if (st) st[r] = rstd;                                                           \
        });                                                                                 \
    }                                                                                       \
    static void rl_rms_bwd_##T(const T *x, const T *w, const T *st, const T *dy, T *dx,     \
                               int64_t rows, int64_t C) {                                   \
        RL_PAR_FOR_W(r, rows, 4 * C, {                                                      \
            const T *xr = x + r * C, *dyr = dy + r * C;                                     \
            T *dxr = dx + r * C;                                                            \
            const T rstd = st[r];                                                           \
            double sgx = 0; /* sum(g * xhat) */                                             \
            for (int64_t c = 0; c < C; c++) sgx += (double)(dyr[c] * w[c]) * (double)(xr[c] * rstd); \
            const T mgx = (T)(sgx / (double)C);                                             \
            for (int64_t c = 0; c < C; c++) dxr[c] = rstd * (dyr[c] * w[c] - xr[c] * rstd * mgx); \
        });                                                                                 \
    }
RL_RMS_KERNELS(float, sqrt)
RL_RMS_KERNELS(double, sqrt)

/* in: x [..., C], w [C]; attrs.f[0] = eps; saved[0] = rstd [rows] */
void rl_cpu_rmsnorm(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0];
    int64_t C = x->shape[x->ndim - 1];
    int64_t rows = C ? x->numel / C : 0;
    void *st = n->saved[0] ? n->saved[0]->data : NULL;
    if (x->dtype == RL_F32)
        rl_rms_fwd_float(x->data, n->in[1]->data, n->out->data, st, rows, C, n->attrs.f[0]);
    else
        rl_rms_fwd_double(x->data, n->in[1]->data, n->out->data, st, rows, C, n->attrs.f[0]);
}

/* in: x [..., C], w [C], rstd [rows], dy [..., C]; out: dx [..., C] */
void rl_cpu_rmsnorm_grad(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0];
    int64_t C = x->shape[x->ndim - 1];
    int64_t rows = C ? x->numel / C : 0;
    if (x->dtype == RL_F32)
        rl_rms_bwd_float(x->data, n->in[1]->data, n->in[2]->data, n->in[3]->data, n->out->data, rows, C);
    else
        rl_rms_bwd_double(x->data, n->in[1]->data, n->in[2]->data, n->in[3]->data, n->out->data, rows, C);
}

/* ---- rope -------------------------------------------------------------------------
 * x [B, T, H, D], cos and sin [B, T, D/2]: for each (b, t) the H heads rotate
 * by the same angles, y1 = x1 cos - x2 sin, y2 = x2 cos + x1 sin, with x1 the
 * first D/2 features of a head and x2 the rest (HF rotate_half). Rows (b, t)
 * are spread over the threads. */

#define RL_ROPE_KERNEL(T)                                                                   \
    static void rl_rope_##T(const T *x, const T *cs, const T *sn, T *y, int64_t BT, int64_t H, \
                            int64_t D) {                                                    \
        const int64_t h = D / 2;                                                            \
        RL_PAR_FOR_W(r, BT, 3 * H * D, {                                                    \
            const T *c = cs + r * h, *s = sn + r * h;                                       \
            for (int64_t hd = 0; hd < H; hd++) {                                            \
                const T *x1 = x + (r * H + hd) * D, *x2 = x1 + h;                           \
                T *y1 = y + (r * H + hd) * D, *y2 = y1 + h;                                 \
                for (int64_t i = 0; i < h; i++) {                                           \
                    const T a = x1[i], b = x2[i];                                           \
                    y1[i] = a * c[i] - b * s[i];                                            \
                    y2[i] = b * c[i] + a * s[i];                                            \
                }                                                                           \
            }                                                                               \
        });                                                                                 \
    }
RL_ROPE_KERNEL(float)
RL_ROPE_KERNEL(double)

/* in: x [B, T, H, D], cos, sin [B, T, D/2]; out [B, T, H, D] */
void rl_cpu_rope(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0];
    const int64_t BT = x->shape[0] * x->shape[1], H = x->shape[2], D = x->shape[3];
    if (x->dtype == RL_F32)
        rl_rope_float(x->data, n->in[1]->data, n->in[2]->data, n->out->data, BT, H, D);
    else
        rl_rope_double(x->data, n->in[1]->data, n->in[2]->data, n->out->data, BT, H, D);
}

/* ---- cross_entropy ---------------------------------------------------------------
 * Forward, per row of V logits: lse = max + log(sum(exp(x - max))) (the max
 * shift keeps exp from overflowing), loss = lse - x[target], 0 when target < 0.
 * lse is saved for every row, ignored ones included.
 * Backward: d loss / d x_j = softmax_j - [j == target], with softmax_j =
 * exp(x_j - lse); times the incoming dloss; an ignored row gets zeros.
 * Targets >= V were rejected by the front end; should one reach a kernel
 * anyway (another caller), the row gives NaN rather than reading out of
 * bounds. */

/* Row primitives shared by cross-entropy and attention: the maximum, the
 * sum of exp(x - m) (in double, as ops/cpu/reduce.c's logsumexp) and
 * y = exp(x - shift) * scale. f32 uses the dispatched array loops of
 * ops/cpu/vec.c (AVX-512 / AVX2 / SSE2, same bits on each); f64 plain loops. */
#define RL_NN_SUMEXP_BUF 256

static inline float rl_nn_max_float(const float *x, int64_t n) { return rl_vmax_f32(x, n); }
static inline void rl_nn_exp_float(const float *x, float *y, int64_t n, float shift, float scale) {
    rl_vexp_f32(x, y, n, shift, scale);
}
static double rl_nn_sumexp_float(const float *x, int64_t n, float m) {
    float e[RL_NN_SUMEXP_BUF];
    double s = 0;
    for (int64_t i0 = 0; i0 < n; i0 += RL_NN_SUMEXP_BUF) {
        int64_t w = n - i0 < RL_NN_SUMEXP_BUF ? n - i0 : RL_NN_SUMEXP_BUF;
        rl_vexp_f32(x + i0, e, w, m, 1.0f);
        s += rl_vsum_f32(e, w);
    }
    return s;
}
/* NaN wins, as rl_vmax_f32 */
static double rl_nn_max_double(const double *x, int64_t n) {
    double m = -INFINITY;
    for (int64_t j = 0; j < n; j++) m = (x[j] > m || x[j] != x[j]) ? x[j] : m;
    return m;
}
static void rl_nn_exp_double(const double *x, double *y, int64_t n, double shift, double scale) {
    for (int64_t j = 0; j < n; j++) y[j] = exp(x[j] - shift) * scale;
}
static double rl_nn_sumexp_double(const double *x, int64_t n, double m) {
    double s = 0;
    for (int64_t j = 0; j < n; j++) s += exp(x[j] - m);
    return s;
}

/* Rows are independent, so they are spread over the threads (each row on
 * one thread: results do not depend on the thread count). */
#define RL_CE_FWD(T)                                                                        \
    static void rl_ce_fwd_##T(const T *x, const int32_t *tg, T *loss, T *lse, int64_t rows, \
                              int64_t V) {                                                  \
        RL_PAR_FOR_W(r, rows, 4 * V, {                                                      \
            const T *xr = x + r * V;                                                        \
            T mx = (T)rl_nn_max_##T(xr, V);                                                 \
            T l = isfinite(mx) ? (T)((double)mx + log(rl_nn_sumexp_##T(xr, V, mx))) : mx;   \
            if (lse) lse[r] = l;                                                            \
            int32_t t = tg[r];                                                              \
            loss[r] = t < 0 ? (T)0 : t < V ? l - xr[t] : (T)NAN;                            \
        });                                                                                 \
    }

#define RL_CE_BWD(T)                                                                        \
    static void rl_ce_bwd_##T(const T *x, const int32_t *tg, const T *lse, const T *dl,     \
                              T *dx, int64_t rows, int64_t V) {                             \
        RL_PAR_FOR_W(r, rows, 2 * V, {                                                      \
            const T *xr = x + r * V;                                                        \
            T *dr = dx + r * V;                                                             \
            int32_t t = tg[r];                                                              \
            if (t < 0) {                                                                    \
                memset(dr, 0, (size_t)V * sizeof(T));                                       \
            } else {                                                                        \
                const T l = lse[r], d = dl[r];                                              \
                rl_nn_exp_##T(xr, dr, V, l, d); /* softmax_j * d */                         \
                if (t < V) dr[t] -= d;                                                      \
                else                                                                        \
                    for (int64_t j = 0; j < V; j++) dr[j] = (T)NAN;                         \
            }                                                                               \
        });                                                                                 \
    }

RL_CE_FWD(float)
RL_CE_FWD(double)
RL_CE_BWD(float)
RL_CE_BWD(double)

/* in: logits [..., V], targets i32 [...]; out: loss [...]; saved[0] = lse [rows] */
void rl_cpu_cross_entropy(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0];
    int64_t V = x->shape[x->ndim - 1];
    int64_t rows = n->out->numel;
    void *lse = n->saved[0] ? n->saved[0]->data : NULL;
    if (V == 0) return; /* the front end rejects V = 0; nothing to read */
    if (x->dtype == RL_F32)
        rl_ce_fwd_float(x->data, n->in[1]->data, n->out->data, lse, rows, V);
    else
        rl_ce_fwd_double(x->data, n->in[1]->data, n->out->data, lse, rows, V);
}

/* in: logits [..., V], targets i32 [...], lse [rows], dloss [...]; out: dlogits */
void rl_cpu_cross_entropy_grad(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0];
    int64_t V = x->shape[x->ndim - 1];
    int64_t rows = n->in[1]->numel;
    if (V == 0) return;
    if (x->dtype == RL_F32)
        rl_ce_bwd_float(x->data, n->in[1]->data, n->in[2]->data, n->in[3]->data, n->out->data,
                        rows, V);
    else
        rl_ce_bwd_double(x->data, n->in[1]->data, n->in[2]->data, n->in[3]->data, n->out->data,
                         rows, V);
}

/* ---- causal attention -------------------------------------------------------------
 * Per (batch, head), with Q, K, V, O of [T, D] and s = scale:
 *   S = s Q K^T, S_ij masked (-inf) for j > i, lse_i = logsumexp_j S_ij,
 *   P = exp(S - lse), O = P V.
 * Backward (FlashAttention paper, Dao et al. 2022, Alg. 4 / FlashAttention-2
 * Alg. 2, without their tiling over keys: a [block, T] score slab is small):
 *   Delta_i = sum_d dO_id O_id  (= rowsum(P * dP), cheaper from O),
 *   dV = P^T dO, dP = dO V^T, dS = P * (dP - Delta), dQ = s dS K, dK = s dS^T Q.
 * P is recomputed from Q, K and the saved lse instead of being stored, so the
 * forward keeps one value per query row, not the T x T probabilities.
 *
 * Causality is exploited by blocks of query rows: rows [i0, i1) only see keys
 * [0, i1), so each block's GEMMs run over i1 columns, not T (about half the
 * flops of the full products at T = 1024). Inside a block the few entries
 * j > i are zeroed in P, which also zeroes them in dS. Every product is one
 * rl_cpu_gemm_* (cblas_?gemm) on the tensors' own row-major buffers; only
 * the [block, i1] score slab (and dP in the backward) is scratch. */

/* Query rows per block. 64 rather than 128: at T = 128 (D = 64) the causal
 * skip then saves a quarter of the products, which outweighs the smaller
 * GEMMs (attention_qkv fwd + bwd of the small preset, 8 x 128 x 768:
 * 2.8 ms with 128, 2.0 ms with 64, 2.2 ms with 32 on SkylakeX kernels;
 * equal at T = 1024). */
#define RL_ATTN_BLOCK 64

/* Layout: each pair's Q, K, V, O (and dQ, dK, dV, dO) is a [T, D] matrix
 * with its own leading dimension (row stride): D for attention's [B, H, T, D]
 * tensors, 3C (qkv) and C (out) for attention_qkv, which reads the heads in
 * place from GPT-2's packed [B, T, 3C] projection. BLAS takes the strides
 * as they are, so neither layout is copied.
 *
 * Threads: the (batch, head) pairs are spread over the OpenMP threads, each
 * with its own score scratch, and the products inside run as serial BLAS
 * calls (rl_cpu_gemm_* inside a parallel region); with a single pair the
 * products themselves are split instead. A pair's results never depend on
 * the thread that computed them. */

/* Row passes (see rl_vattn_* in ops/cpu/cpu.h): f32 dispatched, f64 here. */
static void rl_attn_softmax_double(double *S, int64_t m, int64_t nc, int64_t i0, double *lse,
                                   double *rinv) {
    for (int64_t r = 0; r < m; r++) {
        double *row = S + r * nc;
        const int64_t len = i0 + r + 1;
        const double mx = rl_nn_max_double(row, len);
        double sum = 0;
        for (int64_t j = 0; j < len; j++) {
            row[j] = exp(row[j] - mx);
            sum += row[j];
        }
        if (lse) lse[r] = mx + log(sum);
        rinv[r] = 1.0 / sum;
        for (int64_t j = len; j < nc; j++) row[j] = 0;
    }
}
static void rl_attn_probs_double(double *S, int64_t m, int64_t nc, int64_t i0, const double *lse) {
    for (int64_t r = 0; r < m; r++) {
        double *row = S + r * nc;
        const int64_t len = i0 + r + 1;
        for (int64_t j = 0; j < len; j++) row[j] = exp(row[j] - lse[r]);
        for (int64_t j = len; j < nc; j++) row[j] = 0;
    }
}
static void rl_attn_dscores_double(const double *P, double *dP, int64_t m, int64_t nc,
                                   const double *delta) {
    for (int64_t r = 0; r < m; r++)
        for (int64_t j = 0; j < nc; j++) dP[r * nc + j] = P[r * nc + j] * (dP[r * nc + j] - delta[r]);
}
static inline void rl_attn_softmax_float(float *S, int64_t m, int64_t nc, int64_t i0, float *lse,
                                         float *rinv) {
    rl_vattn_softmax_f32(S, m, nc, i0, lse, rinv);
}
static inline void rl_attn_probs_float(float *S, int64_t m, int64_t nc, int64_t i0, const float *lse) {
    rl_vattn_probs_f32(S, m, nc, i0, lse);
}
static inline void rl_attn_dscores_float(const float *P, float *dP, int64_t m, int64_t nc,
                                         const float *delta) {
    rl_vattn_dscores_f32(P, dP, m, nc, delta);
}

/* One pair's forward: Q, K, V with leading dimension ldi, O with ldo. */
#define RL_ATTN_FWD(T, GEMM)                                                                \
    static void rl_attn_fwd1_##T(const T *Q, const T *K, const T *Vv, int ldi, T *O,        \
                                 int ldo, T *L, int64_t Tn, int64_t D, T scale, T *S) {     \
        const int d = (int)D;                                                               \
        T rinv[RL_ATTN_BLOCK];                                                              \
        for (int64_t i0 = 0; i0 < Tn; i0 += RL_ATTN_BLOCK) {                                \
            const int64_t i1 = i0 + RL_ATTN_BLOCK < Tn ? i0 + RL_ATTN_BLOCK : Tn;           \
            const int m = (int)(i1 - i0), nc = (int)i1;                                     \
            /* S[m, i1] = scale * Q[i0:i1] K[0:i1]^T */                                     \
            GEMM(0, 1, m, nc, d, scale, Q + i0 * ldi, ldi, K, ldi, (T)0, S, nc);            \
            rl_attn_softmax_##T(S, m, nc, i0, L ? L + i0 : NULL, rinv);                     \
            /* O[i0:i1] = P[m, i1] V[0:i1], normalising the D outputs of a row              \
             * rather than its i1 probabilities */                                          \
            GEMM(0, 0, m, d, nc, (T)1, S, nc, Vv, ldi, (T)0, O + i0 * ldo, ldo);            \
            for (int r = 0; r < m; r++)                                                     \
                for (int64_t c = 0; c < D; c++) O[(i0 + r) * ldo + c] *= rinv[r];           \
        }                                                                                   \
    }

/* One pair's backward: Q, K, V, dQ, dK, dV with leading dimension ldi; O and
 * dO with ldo. */
#define RL_ATTN_BWD(T, GEMM)                                                                \
    static void rl_attn_bwd1_##T(const T *Q, const T *K, const T *Vv, int ldi, const T *O,  \
                                 const T *dO, int ldo, const T *L, T *dQ, T *dK, T *dV,     \
                                 int64_t Tn, int64_t D, T scale, T *S, T *dP, T *delta,     \
                                 int acc) {                                                 \
        const int d = (int)D;                                                               \
        for (int64_t i = 0; i < Tn; i++) {                                                  \
            T s = 0;                                                                        \
            for (int64_t c = 0; c < D; c++) s += dO[i * ldo + c] * O[i * ldo + c];          \
            delta[i] = s;                                                                   \
        }                                                                                   \
        /* dK and dV sum over every row block at or below theirs. The blocks run            \
         * last first: the last one spans all keys [0, T), so its products                  \
         * initialise dK and dV (beta = 0) and later ones add (beta = 1); with              \
         * acc (a later query head of a kv group) every block adds. */                      \
        const int64_t last = (Tn - 1) / RL_ATTN_BLOCK * RL_ATTN_BLOCK;                      \
        for (int64_t i0 = last; i0 >= 0; i0 -= RL_ATTN_BLOCK) {                             \
            const int64_t i1 = i0 + RL_ATTN_BLOCK < Tn ? i0 + RL_ATTN_BLOCK : Tn;           \
            const int m = (int)(i1 - i0), nc = (int)i1;                                     \
            const T beta = i0 == last && !acc ? (T)0 : (T)1;                                \
            /* P = exp(scale * Q[i0:i1] K[0:i1]^T - lse), 0 above the diagonal */           \
            GEMM(0, 1, m, nc, d, scale, Q + i0 * ldi, ldi, K, ldi, (T)0, S, nc);            \
            rl_attn_probs_##T(S, m, nc, i0, L + i0);                                        \
            /* dV[0:i1] += P^T dO[i0:i1] */                                                 \
            GEMM(1, 0, nc, d, m, (T)1, S, nc, dO + i0 * ldo, ldo, beta, dV, ldi);           \
            /* dP = dO[i0:i1] V[0:i1]^T */                                                  \
            GEMM(0, 1, m, nc, d, (T)1, dO + i0 * ldo, ldo, Vv, ldi, (T)0, dP, nc);          \
            /* dS = P * (dP - Delta), in place of dP */                                     \
            rl_attn_dscores_##T(S, dP, m, nc, delta + i0);                                  \
            /* dQ[i0:i1] = scale * dS K[0:i1]; dK[0:i1] += scale * dS^T Q[i0:i1] */        \
            GEMM(0, 0, m, d, nc, scale, dP, nc, K, ldi, (T)0, dQ + i0 * ldi, ldi);          \
            GEMM(1, 0, nc, d, m, scale, dP, nc, Q + i0 * ldi, ldi, beta, dK, ldi);          \
        }                                                                                   \
    }

RL_ATTN_FWD(float, rl_cpu_gemm_f32)
RL_ATTN_FWD(double, rl_cpu_gemm_f64)
RL_ATTN_BWD(float, rl_cpu_gemm_f32)
RL_ATTN_BWD(double, rl_cpu_gemm_f64)

/* Kernels have no error channel: should scratch allocation fail, the output
 * is filled with NaN so the failure shows in the loss instead of silently. */
static void rl_attn_fill_nan(rl_tensor *t) {
    if (t->dtype == RL_F32)
        for (int64_t i = 0; i < t->numel; i++) ((float *)t->data)[i] = NAN;
    else
        for (int64_t i = 0; i < t->numel; i++) ((double *)t->data)[i] = NAN;
}

/* Threads for BH pairs of about T^2 D multiply-adds each: at least 2 pairs
 * and enough work to pay for the region, else 1. */
static int rl_attn_threads(int64_t BH, int64_t Tn, int64_t D) {
    if (BH < 2 || (double)BH * (double)Tn * (double)Tn * (double)D < 64.0 * RL_PAR_GRAIN) return 1;
    int nt = omp_get_max_threads();
    return BH < nt ? (int)BH : nt;
}

/* Where pair bh's matrices start, in elements, for the two layouts. */
typedef struct rl_attn_layout {
    int64_t H, Hkv, Tn, D;
    int packed;  /* 0: [B, H, T, D] q, [B, Hkv, T, D] k, v; 1: qkv [B, T, 3C], out [B, T, C] */
    int ldi, ldo;
} rl_attn_layout;

static rl_attn_layout rl_attn_layout_of(int packed, int64_t H, int64_t Hkv, int64_t Tn, int64_t D) {
    rl_attn_layout l = {H, Hkv, Tn, D, packed, (int)(packed ? 3 * H * D : D), (int)(packed ? H * D : D)};
    return l;
}
/* offset of Q (K, V are + C, + 2C in the packed layout, separate tensors otherwise) */
static inline int64_t rl_attn_in_off(const rl_attn_layout *l, int64_t bh) {
    const int64_t b = bh / l->H, h = bh % l->H;
    return l->packed ? b * l->Tn * l->ldi + h * l->D : bh * l->Tn * l->D;
}
/* offset of the K and V that query pair bh reads: kv head h / (H / Hkv) */
static inline int64_t rl_attn_kv_off(const rl_attn_layout *l, int64_t bh) {
    if (l->packed) return rl_attn_in_off(l, bh);
    const int64_t b = bh / l->H, h = bh % l->H;
    return (b * l->Hkv + h / (l->H / l->Hkv)) * l->Tn * l->D;
}
static inline int64_t rl_attn_out_off(const rl_attn_layout *l, int64_t bh) {
    const int64_t b = bh / l->H, h = bh % l->H;
    return l->packed ? b * l->Tn * l->ldo + h * l->D : bh * l->Tn * l->D;
}

/* Runs `pair(bh, thread)` for every pair, threaded when worth it. The branch
 * is explicit: an OpenMP region costs about a microsecond even when its if()
 * clause is false (ops/cpu/cpu.h). */
#define RL_ATTN_FOR_PAIRS(nt, BH, ...)                                                      \
    do {                                                                                    \
        if ((nt) > 1) {                                                                     \
            _Pragma("omp parallel for schedule(dynamic, 1) num_threads(nt)")                \
            for (int64_t bh = 0; bh < (BH); bh++) {                                         \
                const int tid = omp_get_thread_num();                                       \
                __VA_ARGS__                                                                 \
            }                                                                               \
        } else {                                                                            \
            for (int64_t bh = 0; bh < (BH); bh++) {                                         \
                const int tid = 0;                                                          \
                __VA_ARGS__                                                                 \
            }                                                                               \
        }                                                                                   \
    } while (0)

/* The forward of both layouts: q, k, v (the same tensor when packed, with
 * kofs/vofs the column offsets of k and v), out, lse (NULL when not recorded). */
static void rl_attn_forward(const rl_attn_layout *l, rl_dtype dt, int64_t BH, const void *q,
                            const void *k, const void *v, void *out, void *lse, double scale,
                            rl_tensor *nan_on_fail) {
    const int64_t Tn = l->Tn, D = l->D;
    const int64_t blk = Tn < RL_ATTN_BLOCK ? Tn : RL_ATTN_BLOCK;
    const size_t es = rl_dtype_size(dt);
    const int nt = rl_attn_threads(BH, Tn, D);
    char *S = malloc((size_t)nt * (size_t)(blk * Tn) * es); /* one slab per thread */
    if (!S) {
        rl_attn_fill_nan(nan_on_fail);
        return;
    }
    RL_ATTN_FOR_PAIRS(nt, BH, {
        const int64_t io = rl_attn_in_off(l, bh), ko = rl_attn_kv_off(l, bh), oo = rl_attn_out_off(l, bh);
        char *slab = S + (size_t)tid * (size_t)(blk * Tn) * es;
        if (dt == RL_F32)
            rl_attn_fwd1_float((const float *)q + io, (const float *)k + ko, (const float *)v + ko,
                               l->ldi, (float *)out + oo, l->ldo,
                               lse ? (float *)lse + bh * Tn : NULL, Tn, D, (float)scale,
                               (float *)slab);
        else
            rl_attn_fwd1_double((const double *)q + io, (const double *)k + ko,
                                (const double *)v + ko, l->ldi, (double *)out + oo, l->ldo,
                                lse ? (double *)lse + bh * Tn : NULL, Tn, D, scale,
                                (double *)slab);
    });
    free(S);
}

/* The backward of both layouts; dq, dk, dv are laid out as q, k, v. The
 * threads take kv pairs (B * Hkv, which is B * H without grouping): the
 * query heads of one kv head run one after another on its thread, the first
 * writing its dK and dV and the others adding, so no two threads write the
 * same rows and the sums do not depend on the thread count. */
static void rl_attn_backward(const rl_attn_layout *l, rl_dtype dt, int64_t BH, const void *q,
                             const void *k, const void *v, const void *o, const void *lse,
                             const void *dout, void *dq, void *dk, void *dv, double scale,
                             rl_tensor *nan_on_fail) {
    const int64_t Tn = l->Tn, D = l->D;
    const int64_t blk = Tn < RL_ATTN_BLOCK ? Tn : RL_ATTN_BLOCK;
    const size_t es = rl_dtype_size(dt);
    const int64_t grp = l->H / l->Hkv, BKV = BH / grp;
    const int nt = rl_attn_threads(BKV, Tn, D * grp);
    const size_t per = (size_t)(2 * blk * Tn + Tn) * es; /* S, dP, delta of one thread */
    char *scratch = malloc((size_t)nt * per);
    if (!scratch) {
        rl_attn_fill_nan(nan_on_fail);
        return;
    }
    /* the pair loop's index is a kv pair here; its query pairs follow */
    RL_ATTN_FOR_PAIRS(nt, BKV, {
        char *mine = scratch + (size_t)tid * per;
        const int64_t b = bh / l->Hkv, hk = bh % l->Hkv;
        for (int64_t j = 0; j < grp; j++) {
            const int64_t qp = b * l->H + hk * grp + j;
            const int64_t io = rl_attn_in_off(l, qp), ko = rl_attn_kv_off(l, qp), oo = rl_attn_out_off(l, qp);
            if (dt == RL_F32) {
                float *w = (float *)mine;
                rl_attn_bwd1_float((const float *)q + io, (const float *)k + ko, (const float *)v + ko,
                                   l->ldi, (const float *)o + oo, (const float *)dout + oo, l->ldo,
                                   (const float *)lse + qp * Tn, (float *)dq + io, (float *)dk + ko,
                                   (float *)dv + ko, Tn, D, (float)scale, w, w + blk * Tn,
                                   w + 2 * blk * Tn, j > 0);
            } else {
                double *w = (double *)mine;
                rl_attn_bwd1_double((const double *)q + io, (const double *)k + ko,
                                    (const double *)v + ko, l->ldi, (const double *)o + oo,
                                    (const double *)dout + oo, l->ldo, (const double *)lse + qp * Tn,
                                    (double *)dq + io, (double *)dk + ko, (double *)dv + ko, Tn, D,
                                    scale, w, w + blk * Tn, w + 2 * blk * Tn, j > 0);
            }
        }
    });
    free(scratch);
}

/* in: q [B, H, T, D], k, v [B, Hkv, T, D]; attrs.f[0] = scale (resolved by
 * the front end); out [B, H, T, D]; saved[0] = lse [B, H, T] */
void rl_cpu_attention(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *q = n->in[0];
    /* T or B*H = 0 has nothing to do; the front end rejects D = 0 */
    if (n->out->numel == 0) return;
    rl_attn_layout l = rl_attn_layout_of(0, q->shape[1], n->in[1]->shape[1], q->shape[2], q->shape[3]);
    rl_attn_forward(&l, q->dtype, q->shape[0] * q->shape[1], q->data, n->in[1]->data,
                    n->in[2]->data, n->out->data, n->saved[0] ? n->saved[0]->data : NULL,
                    n->attrs.f[0], n->out);
}

/* in: q [B, H, T, D], k, v [B, Hkv, T, D], out [B, H, T, D], lse [B, H, T],
 * dout [B, H, T, D]; attrs.f[0] = scale; out: [B*H + 2*B*Hkv, T, D] = dq,
 * dk, dv stacked on axis 0 */
void rl_cpu_attention_grad(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *q = n->in[0];
    const int64_t N = q->numel, Nkv = n->in[1]->numel;
    if (N == 0) return;
    rl_attn_layout l = rl_attn_layout_of(0, q->shape[1], n->in[1]->shape[1], q->shape[2], q->shape[3]);
    const size_t es = rl_dtype_size(q->dtype);
    char *g = n->out->data;
    rl_attn_backward(&l, q->dtype, q->shape[0] * q->shape[1], q->data, n->in[1]->data,
                     n->in[2]->data, n->in[3]->data, n->in[4]->data, n->in[5]->data, g,
                     g + (size_t)N * es, g + (size_t)(N + Nkv) * es, n->attrs.f[0], n->out);
}

/* in: qkv [B, T, 3C]; attrs.ints[0] = H, f[0] = scale; out [B, T, C];
 * saved[0] = lse [B, H, T] */
void rl_cpu_attention_qkv(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *qkv = n->in[0];
    if (n->out->numel == 0) return;
    const int64_t H = n->attrs.ints[0], C = qkv->shape[2] / 3;
    rl_attn_layout l = rl_attn_layout_of(1, H, H, qkv->shape[1], C / H);
    const size_t es = rl_dtype_size(qkv->dtype);
    const char *p = qkv->data;
    rl_attn_forward(&l, qkv->dtype, qkv->shape[0] * H, p, p + (size_t)C * es,
                    p + (size_t)(2 * C) * es, n->out->data,
                    n->saved[0] ? n->saved[0]->data : NULL, n->attrs.f[0], n->out);
}

/* in: qkv [B, T, 3C], out [B, T, C], lse [B, H, T], dout [B, T, C];
 * attrs as attention_qkv; out: d(qkv) [B, T, 3C] */
void rl_cpu_attention_qkv_grad(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *qkv = n->in[0];
    if (qkv->numel == 0) return;
    const int64_t H = n->attrs.ints[0], C = qkv->shape[2] / 3;
    rl_attn_layout l = rl_attn_layout_of(1, H, H, qkv->shape[1], C / H);
    const size_t es = rl_dtype_size(qkv->dtype);
    const char *p = qkv->data;
    char *g = n->out->data;
    rl_attn_backward(&l, qkv->dtype, qkv->shape[0] * H, p, p + (size_t)C * es,
                     p + (size_t)(2 * C) * es, n->in[1]->data, n->in[2]->data, n->in[3]->data, g,
                     g + (size_t)C * es, g + (size_t)(2 * C) * es, n->attrs.f[0], n->out);
}
