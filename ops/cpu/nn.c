/* ops/cpu/nn.c - CPU kernels of the fused neural-network primitives, in f32
 * and f64: layernorm, cross_entropy, causal attention, and their backward-only
 * kernels (layernorm_grad, cross_entropy_grad, attention_grad). The front
 * ends (ops/nn.c) have checked shapes, dtypes, target ranges and that the
 * attention sizes fit BLAS's int; the kernels trust them.
 *
 * Each kernel body is written once as a macro that defines a static function
 * per element type (float / double, with the matching libm and BLAS names),
 * like ops/cpu/elementwise.c does with its loops.
 */
#include "cpu.h"

#include <cblas.h>
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
 * (dw and db are sums over rows, done with ops in the backward rule.) */

#define RL_LN_FWD(T, SQRT)                                                                  \
    static void rl_ln_fwd_##T(const T *x, const T *w, const T *b, T *y, T *st, int64_t rows, \
                              int64_t C, T eps) {                                           \
        for (int64_t r = 0; r < rows; r++) {                                                \
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
        }                                                                                   \
    }

#define RL_LN_BWD(T)                                                                        \
    static void rl_ln_bwd_##T(const T *x, const T *w, const T *st, const T *dy, T *dx,      \
                              int64_t rows, int64_t C) {                                    \
        for (int64_t r = 0; r < rows; r++) {                                                \
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
        }                                                                                   \
    }

RL_LN_FWD(float, sqrtf)
RL_LN_FWD(double, sqrt)
RL_LN_BWD(float)
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

/* ---- cross_entropy ---------------------------------------------------------------
 * Forward, per row of V logits: lse = max + log(sum(exp(x - max))) (the max
 * shift keeps exp from overflowing), loss = lse - x[target], 0 when target < 0.
 * lse is saved for every row, ignored ones included.
 * Backward: d loss / d x_j = softmax_j - [j == target], with softmax_j =
 * exp(x_j - lse); times the incoming dloss; an ignored row gets zeros.
 * Targets >= V were rejected by the front end; should one reach a kernel
 * anyway (another caller), the row gives NaN rather than reading out of
 * bounds. */

#define RL_CE_FWD(T, EXP, LOG)                                                              \
    static void rl_ce_fwd_##T(const T *x, const int32_t *tg, T *loss, T *lse, int64_t rows, \
                              int64_t V) {                                                  \
        for (int64_t r = 0; r < rows; r++) {                                                \
            const T *xr = x + r * V;                                                        \
            T mx = xr[0];                                                                   \
            for (int64_t j = 1; j < V; j++) mx = xr[j] > mx ? xr[j] : mx;                   \
            T s = 0;                                                                        \
            for (int64_t j = 0; j < V; j++) s += EXP(xr[j] - mx);                           \
            T l = mx + LOG(s);                                                              \
            if (lse) lse[r] = l;                                                            \
            int32_t t = tg[r];                                                              \
            loss[r] = t < 0 ? (T)0 : t < V ? l - xr[t] : (T)NAN;                            \
        }                                                                                   \
    }

#define RL_CE_BWD(T, EXP)                                                                   \
    static void rl_ce_bwd_##T(const T *x, const int32_t *tg, const T *lse, const T *dl,     \
                              T *dx, int64_t rows, int64_t V) {                             \
        for (int64_t r = 0; r < rows; r++) {                                                \
            const T *xr = x + r * V;                                                        \
            T *dr = dx + r * V;                                                             \
            int32_t t = tg[r];                                                              \
            if (t < 0) {                                                                    \
                memset(dr, 0, (size_t)V * sizeof(T));                                       \
                continue;                                                                   \
            }                                                                               \
            const T l = lse[r], d = dl[r];                                                  \
            for (int64_t j = 0; j < V; j++) dr[j] = EXP(xr[j] - l) * d;                     \
            if (t < V) dr[t] -= d;                                                          \
            else                                                                            \
                for (int64_t j = 0; j < V; j++) dr[j] = (T)NAN;                             \
        }                                                                                   \
    }

RL_CE_FWD(float, expf, logf)
RL_CE_FWD(double, exp, log)
RL_CE_BWD(float, expf)
RL_CE_BWD(double, exp)

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
 * cblas_?gemm on the tensors' own row-major buffers; only the [block, i1]
 * score slab (and dP in the backward) is scratch. */

#define RL_ATTN_BLOCK 128

#define RL_ATTN_FWD(T, EXP, LOG, GEMM)                                                      \
    static void rl_attn_fwd_##T(const T *q, const T *k, const T *v, T *o, T *lse,           \
                                int64_t BH, int64_t Tn, int64_t D, T scale, T *S) {         \
        const int d = (int)D;                                                               \
        T rinv[RL_ATTN_BLOCK];                                                              \
        for (int64_t bh = 0; bh < BH; bh++) {                                               \
            const T *Q = q + bh * Tn * D, *K = k + bh * Tn * D, *Vv = v + bh * Tn * D;      \
            T *O = o + bh * Tn * D, *L = lse ? lse + bh * Tn : NULL;                        \
            for (int64_t i0 = 0; i0 < Tn; i0 += RL_ATTN_BLOCK) {                            \
                const int64_t i1 = i0 + RL_ATTN_BLOCK < Tn ? i0 + RL_ATTN_BLOCK : Tn;       \
                const int m = (int)(i1 - i0), nc = (int)i1;                                 \
                /* S[m, i1] = scale * Q[i0:i1] K[0:i1]^T */                                 \
                GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, m, nc, d, scale, Q + i0 * D, \
                     d, K, d, (T)0, S, nc);                                                 \
                for (int r = 0; r < m; r++) {                                               \
                    const int64_t i = i0 + r;                                               \
                    T *row = S + (int64_t)r * nc;                                           \
                    T mx = row[0];                                                          \
                    for (int64_t j = 1; j <= i; j++) mx = row[j] > mx ? row[j] : mx;        \
                    T sum = 0;                                                              \
                    for (int64_t j = 0; j <= i; j++) {                                      \
                        row[j] = EXP(row[j] - mx);                                          \
                        sum += row[j];                                                      \
                    }                                                                       \
                    if (L) L[i] = mx + LOG(sum);                                            \
                    rinv[r] = (T)1 / sum;                                                   \
                    for (int64_t j = i + 1; j < i1; j++) row[j] = 0;                        \
                }                                                                           \
                /* O[i0:i1] = P[m, i1] V[0:i1], normalising the D outputs of a row  \
                 * rather than its i1 probabilities */                                      \
                GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, d, nc, (T)1, S, nc, Vv, \
                     d, (T)0, O + i0 * D, d);                                               \
                for (int r = 0; r < m; r++)                                                 \
                    for (int64_t c = 0; c < D; c++) O[(i0 + r) * D + c] *= rinv[r];         \
            }                                                                               \
        }                                                                                   \
    }

#define RL_ATTN_BWD(T, EXP, GEMM)                                                           \
    static void rl_attn_bwd_##T(const T *q, const T *k, const T *v, const T *o,             \
                                const T *lse, const T *dout, T *dq, T *dk, T *dv,           \
                                int64_t BH, int64_t Tn, int64_t D, T scale, T *S, T *dP,    \
                                T *delta) {                                                 \
        const int d = (int)D;                                                               \
        for (int64_t bh = 0; bh < BH; bh++) {                                               \
            const int64_t off = bh * Tn * D;                                                \
            const T *Q = q + off, *K = k + off, *Vv = v + off, *O = o + off;                \
            const T *dO = dout + off, *L = lse + bh * Tn;                                   \
            T *dQ = dq + off, *dK = dk + off, *dV = dv + off;                               \
            for (int64_t i = 0; i < Tn; i++) {                                              \
                T s = 0;                                                                    \
                for (int64_t c = 0; c < D; c++) s += dO[i * D + c] * O[i * D + c];          \
                delta[i] = s;                                                               \
            }                                                                               \
            /* dK and dV sum over every row block at or below theirs. The blocks run   \
             * last first: the last one spans all keys [0, T), so its products     \
             * initialise dK and dV (beta = 0) and later ones add (beta = 1). */    \
            const int64_t last = (Tn - 1) / RL_ATTN_BLOCK * RL_ATTN_BLOCK;                  \
            for (int64_t i0 = last; i0 >= 0; i0 -= RL_ATTN_BLOCK) {                         \
                const int64_t i1 = i0 + RL_ATTN_BLOCK < Tn ? i0 + RL_ATTN_BLOCK : Tn;       \
                const int m = (int)(i1 - i0), nc = (int)i1;                                 \
                const T beta = i0 == last ? (T)0 : (T)1;                                    \
                /* P = exp(scale * Q[i0:i1] K[0:i1]^T - lse), 0 above the diagonal */       \
                GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, m, nc, d, scale, Q + i0 * D, \
                     d, K, d, (T)0, S, nc);                                                 \
                for (int r = 0; r < m; r++) {                                               \
                    const int64_t i = i0 + r;                                               \
                    T *row = S + (int64_t)r * nc;                                           \
                    const T l = L[i];                                                       \
                    for (int64_t j = 0; j <= i; j++) row[j] = EXP(row[j] - l);              \
                    for (int64_t j = i + 1; j < i1; j++) row[j] = 0;                        \
                }                                                                           \
                /* dV[0:i1] += P^T dO[i0:i1] */                                             \
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, nc, d, m, (T)1, S, nc,       \
                     dO + i0 * D, d, beta, dV, d);                                          \
                /* dP = dO[i0:i1] V[0:i1]^T */                                              \
                GEMM(CblasRowMajor, CblasNoTrans, CblasTrans, m, nc, d, (T)1, dO + i0 * D, \
                     d, Vv, d, (T)0, dP, nc);                                               \
                /* dS = P * (dP - Delta), in place of dP */                                 \
                for (int r = 0; r < m; r++) {                                               \
                    const T *prow = S + (int64_t)r * nc;                                    \
                    T *grow = dP + (int64_t)r * nc;                                         \
                    const T dl = delta[i0 + r];                                             \
                    for (int64_t j = 0; j < nc; j++) grow[j] = prow[j] * (grow[j] - dl);    \
                }                                                                           \
                /* dQ[i0:i1] = scale * dS K[0:i1]; dK[0:i1] += scale * dS^T Q[i0:i1] */    \
                GEMM(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, d, nc, scale, dP, nc, K,\
                     d, (T)0, dQ + i0 * D, d);                                              \
                GEMM(CblasRowMajor, CblasTrans, CblasNoTrans, nc, d, m, scale, dP, nc,     \
                     Q + i0 * D, d, beta, dK, d);                                           \
            }                                                                               \
        }                                                                                   \
    }

RL_ATTN_FWD(float, expf, logf, cblas_sgemm)
RL_ATTN_FWD(double, exp, log, cblas_dgemm)
RL_ATTN_BWD(float, expf, cblas_sgemm)
RL_ATTN_BWD(double, exp, cblas_dgemm)

/* Kernels have no error channel: should scratch allocation fail, the output
 * is filled with NaN so the failure shows in the loss instead of silently. */
static void rl_attn_fill_nan(rl_tensor *t) {
    if (t->dtype == RL_F32)
        for (int64_t i = 0; i < t->numel; i++) ((float *)t->data)[i] = NAN;
    else
        for (int64_t i = 0; i < t->numel; i++) ((double *)t->data)[i] = NAN;
}

/* in: q, k, v [B, H, T, D]; attrs.f[0] = scale (resolved by the front end);
 * out [B, H, T, D]; saved[0] = lse [B, H, T] */
void rl_cpu_attention(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *q = n->in[0];
    const int64_t BH = q->shape[0] * q->shape[1], Tn = q->shape[2], D = q->shape[3];
    if (n->out->numel == 0) {
        /* D = 0 would leave lse to fill; the front end rejects it, T or B*H = 0 has none */
        return;
    }
    const int64_t blk = Tn < RL_ATTN_BLOCK ? Tn : RL_ATTN_BLOCK;
    const size_t es = rl_dtype_size(q->dtype);
    void *S = malloc((size_t)(blk * Tn) * es);
    if (!S) {
        rl_attn_fill_nan(n->out);
        return;
    }
    void *lse = n->saved[0] ? n->saved[0]->data : NULL;
    if (q->dtype == RL_F32)
        rl_attn_fwd_float(q->data, n->in[1]->data, n->in[2]->data, n->out->data, lse, BH, Tn, D,
                          (float)n->attrs.f[0], S);
    else
        rl_attn_fwd_double(q->data, n->in[1]->data, n->in[2]->data, n->out->data, lse, BH, Tn,
                           D, n->attrs.f[0], S);
    free(S);
}

/* in: q, k, v, out [B, H, T, D], lse [B, H, T], dout [B, H, T, D];
 * attrs.f[0] = scale; out: [3B, H, T, D] = dq, dk, dv stacked on axis 0 */
void rl_cpu_attention_grad(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *q = n->in[0];
    const int64_t BH = q->shape[0] * q->shape[1], Tn = q->shape[2], D = q->shape[3];
    const int64_t N = q->numel;
    if (N == 0) return;
    const int64_t blk = Tn < RL_ATTN_BLOCK ? Tn : RL_ATTN_BLOCK;
    const size_t es = rl_dtype_size(q->dtype);
    char *scratch = malloc((size_t)(2 * blk * Tn + Tn) * es);
    if (!scratch) {
        rl_attn_fill_nan(n->out);
        return;
    }
    char *S = scratch, *dP = S + (size_t)(blk * Tn) * es, *delta = dP + (size_t)(blk * Tn) * es;
    char *g = n->out->data;
    char *dq = g, *dk = g + (size_t)N * es, *dv = g + (size_t)(2 * N) * es;
    if (q->dtype == RL_F32)
        rl_attn_bwd_float(q->data, n->in[1]->data, n->in[2]->data, n->in[3]->data,
                          n->in[4]->data, n->in[5]->data, (float *)dq, (float *)dk, (float *)dv,
                          BH, Tn, D, (float)n->attrs.f[0], (float *)S, (float *)dP,
                          (float *)delta);
    else
        rl_attn_bwd_double(q->data, n->in[1]->data, n->in[2]->data, n->in[3]->data,
                           n->in[4]->data, n->in[5]->data, (double *)dq, (double *)dk,
                           (double *)dv, BH, Tn, D, n->attrs.f[0], (double *)S, (double *)dP,
                           (double *)delta);
    free(scratch);
}
