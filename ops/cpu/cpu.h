/* ops/cpu/cpu.h - helpers shared by the CPU kernels: broadcasting index
 * setup and the kernel prototypes generated from the op table.
 */
#ifndef RL_CPU_H
#define RL_CPU_H

#include "rl_ops.h"

#include <omp.h>

/* The CPU backend (backend_cpu.c), registered as "cpu" (ops/backends.c). */
rl_backend *rl_backend_cpu_new(char *err, size_t n);

/* Every op has a CPU kernel rl_cpu_<name> (a missing one fails to link). */
#define OP(e, name, ...) void rl_cpu_##name(void *bctx, const rl_node *n);
#include "ops.def"
#undef OP

/* Loops over fewer elements than this stay on one thread: below it the
 * cost of waking the OpenMP team exceeds the work. */
#define RL_PAR_GRAIN 32768
/* for (i = 0; i < N; i++) { body } split across threads when N is large.
 * The branch is explicit because entering an OpenMP parallel region costs
 * about a microsecond even when its if() clause is false. */
#define RL_PAR_FOR(i, N, ...) RL_PAR_FOR_W(i, N, 1, __VA_ARGS__)
/* The same for loops whose iterations each cost about W simple element
 * operations (a row of W elements, a small matrix product): threaded when
 * the whole loop is worth more than RL_PAR_GRAIN and has at least 2
 * iterations. Each iteration runs on one thread, so per-row results do not
 * depend on the thread count. */
#define RL_PAR_FOR_W(i, N, W, ...)                                              \
    do {                                                                        \
        const int64_t n_ = (N);                                                 \
        if (n_ > 1 && (double)n_ * (double)(W) > (double)RL_PAR_GRAIN) {       \
            _Pragma("omp parallel for schedule(static)")                        \
            for (int64_t i = 0; i < n_; i++) { __VA_ARGS__ }                    \
        } else {                                                                \
            for (int64_t i = 0; i < n_; i++) { __VA_ARGS__ }                    \
        }                                                                       \
    } while (0)

/* Splits [0, N) into one contiguous range [lo, hi) per thread and runs
 * body on each (when the loop is worth threading, as RL_PAR_FOR_W), else
 * runs body once with lo = 0, hi = N. For loops that call an array function
 * (ops/cpu/vec.c) on a range rather than an expression per element. */
#define RL_PAR_RANGE(lo, hi, N, W, ...)                                         \
    do {                                                                        \
        const int64_t n_ = (N);                                                 \
        if (n_ > 1 && (double)n_ * (double)(W) > (double)RL_PAR_GRAIN) {       \
            _Pragma("omp parallel")                                             \
            {                                                                   \
                const int64_t nt_ = omp_get_num_threads(), t_ = omp_get_thread_num(); \
                const int64_t per_ = (n_ + nt_ - 1) / nt_;                      \
                const int64_t lo = t_ * per_ < n_ ? t_ * per_ : n_;             \
                const int64_t hi = lo + per_ < n_ ? lo + per_ : n_;             \
                if (hi > lo) { __VA_ARGS__ }                                    \
            }                                                                   \
        } else {                                                                \
            const int64_t lo = 0, hi = n_;                                      \
            __VA_ARGS__                                                         \
        }                                                                       \
    } while (0)

/* f32 array loops with run-time dispatch to AVX-512 / AVX2 / SSE2
 * (ops/cpu/vec.c); every path gives the same bits.
 *   rl_vexp_f32:  y = exp(x - shift) * scale (x == y allowed)
 *   rl_vgelu_f32: y = gelu(x); rl_vgelu_grad_f32: y = gelu'(x) * dy
 *   rl_vmax_f32:  the maximum, NaN winning, -inf for n = 0
 *   rl_vsum_f32:  the sum in double, pairwise over 8 lanes (the same order
 *                 and result as ops/cpu/reduce.c's row sums) */
void rl_vexp_f32(const float *x, float *y, int64_t n, float shift, float scale);
void rl_vgelu_f32(const float *x, float *y, int64_t n);
void rl_vgelu_grad_f32(const float *x, const float *dy, float *y, int64_t n);
float rl_vmax_f32(const float *x, int64_t n);
double rl_vsum_f32(const float *x, int64_t n);
/* Layernorm of `rows` rows of C (ops/cpu/nn.c has the formulas; st holds
 * (mean, rstd) per row, may be NULL in the forward), and column sums:
 * acc[i] += x[i] in double. */
void rl_vln_fwd_f32(const float *x, const float *w, const float *b, float *y, float *st,
                    int64_t rows, int64_t C, float eps);
void rl_vln_bwd_f32(const float *x, const float *w, const float *st, const float *dy, float *dx,
                    int64_t rows, int64_t C);
void rl_vacc_f32(double *acc, const float *x, int64_t n);
/* Row passes of causal attention over rows i0..i0+m-1 of an [m, nc] score
 * slab (row r sees columns 0..i0+r; the rest are set to 0):
 *   rl_vattn_softmax_f32: S = exp(S - rowmax) in place, lse[r] (if lse) and
 *                         rinv[r] = 1 / rowsum (sums in double)
 *   rl_vattn_probs_f32:   S = exp(S - lse[r])
 *   rl_vattn_dscores_f32: dP = P * (dP - delta[r]) over all nc columns */
void rl_vattn_softmax_f32(float *S, int64_t m, int64_t nc, int64_t i0, float *lse, float *rinv);
void rl_vattn_probs_f32(float *S, int64_t m, int64_t nc, int64_t i0, const float *lse);
void rl_vattn_dscores_f32(const float *P, float *dP, int64_t m, int64_t nc, const float *delta);

/* Matrix products (ops/cpu/gemm.c): row-major cblas_?gemm with the same
 * arguments (ta/tb: op(A)/op(B) transposed), split across the OpenMP threads
 * when large enough; OpenBLAS itself runs single-threaded (rl_cpu_blas_init,
 * called when the CPU backend is created). Called from inside a parallel
 * region they run serially. */
void rl_cpu_blas_init(void);
void rl_cpu_gemm_f32(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc);
void rl_cpu_gemm_f64(int ta, int tb, int M, int N, int K, double alpha, const double *A, int lda,
                     const double *B, int ldb, double beta, double *C, int ldc);

/* Shapes padded to 4 dims, with per-operand element strides where broadcast
 * axes have stride 0. */
typedef struct rl_bcast {
    int64_t shape[RL_MAX_DIMS];
    int64_t stride[3][RL_MAX_DIMS];
} rl_bcast;

static inline void rl_bcast_setup(rl_bcast *b, const rl_tensor *out, int n_in,
                                  rl_tensor *const *in) {
    int pad = RL_MAX_DIMS - out->ndim;
    for (int d = 0; d < RL_MAX_DIMS; d++) b->shape[d] = d < pad ? 1 : out->shape[d - pad];
    for (int k = 0; k < n_in; k++) {
        const rl_tensor *t = in[k];
        int64_t st[RL_MAX_DIMS], s = 1;
        int tp = RL_MAX_DIMS - t->ndim;
        for (int d = RL_MAX_DIMS - 1; d >= 0; d--) {
            int64_t size = d < tp ? 1 : t->shape[d - tp];
            st[d] = (size == 1) ? 0 : s;
            s *= size;
        }
        for (int d = 0; d < RL_MAX_DIMS; d++) b->stride[k][d] = st[d];
    }
}

/* True when every input has exactly the output's element count (no broadcast). */
static inline int rl_same_numel(const rl_tensor *out, int n_in, rl_tensor *const *in) {
    for (int k = 0; k < n_in; k++)
        if (in[k]->numel != out->numel) return 0;
    return 1;
}

#endif
