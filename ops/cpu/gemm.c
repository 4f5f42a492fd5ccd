/* ops/cpu/gemm.c - the CPU backend's matrix products: cblas_?gemm split
 * across the engine's OpenMP threads, with OpenBLAS itself single-threaded.
 *
 * Why not let OpenBLAS thread its own products: the engine's other kernels
 * are threaded with OpenMP, and two thread pools on the same cores fight.
 * After a threaded OpenBLAS call its pthread workers spin (sched_yield) for
 * up to 2^28 cycles waiting for the next job, and after an OpenMP region the
 * OpenMP workers spin too, so each pool's idle threads steal the cores the
 * other pool is computing on. On the 2-core machine this was measured on
 * (tools/bench_model.sh, small preset), 2 threads were SLOWER than 1 (452 ms
 * vs 421 ms per SFT step) with 25% of the time in sched_yield and libgomp's
 * spin loop. With one pool (OpenMP) and OpenBLAS run serially inside it,
 * every core does useful work.
 *
 * A product C[M, N] = op(A) op(B) is split into row blocks of C (or column
 * blocks when N is the larger side), one per thread; each block is an
 * ordinary cblas call on sub-matrices of the same row-major buffers, so no
 * data is copied and every element of C is the same sum in the same order as
 * one serial call would give. Small products stay in one call.
 *
 * OpenBLAS is set to one thread when the CPU backend is created
 * (rl_cpu_blas_init); that setting is process-wide in OpenBLAS, so other
 * cblas calls in the process run serially too (call
 * openblas_set_num_threads to change it back: the engine's products stay
 * correct either way, only slower when the pools fight).
 */
#include "cpu.h"

#include <cblas.h>
#include <omp.h>

/* Products with fewer multiply-adds than this run as one serial call: below
 * it waking the second thread costs more than it saves (64^3). */
#define RL_GEMM_PAR_MIN (64 * 64 * 64)
/* Block boundaries are multiples of this (a multiple of every OpenBLAS
 * micro-kernel's tile height/width), so the split never creates thin edge
 * tiles in the middle of C. */
#define RL_GEMM_ALIGN 32

void rl_cpu_blas_init(void) {
    /* process-wide in OpenBLAS; see the comment at the top */
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

/* [lo, hi) of part `t` of `n` split in `parts` aligned blocks. */
static void rl_gemm_part(int n, int parts, int t, int *lo, int *hi) {
    int per = (n + parts - 1) / parts;
    per = (per + RL_GEMM_ALIGN - 1) / RL_GEMM_ALIGN * RL_GEMM_ALIGN;
    *lo = t * per < n ? t * per : n;
    *hi = *lo + per < n ? *lo + per : n;
}

/* Number of threads worth using for a product of these sizes. */
static int rl_gemm_threads(int M, int N, int K) {
    if (omp_in_parallel()) return 1; /* already inside a parallel kernel */
    if ((double)M * (double)N * (double)K < (double)RL_GEMM_PAR_MIN) return 1;
    int nt = omp_get_max_threads();
    int side = M > N ? M : N;
    int most = (side + RL_GEMM_ALIGN - 1) / RL_GEMM_ALIGN;
    return nt < most ? nt : most;
}

#define RL_GEMM_DEFINE(T, SFX, GEMM)                                                        \
    void rl_cpu_gemm_##SFX(int ta, int tb, int M, int N, int K, T alpha, const T *A,       \
                           int lda, const T *B, int ldb, T beta, T *C, int ldc) {          \
        const enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans;                    \
        const enum CBLAS_TRANSPOSE opb = tb ? CblasTrans : CblasNoTrans;                    \
        const int nt = rl_gemm_threads(M, N, K);                                            \
        if (nt <= 1) {                                                                      \
            GEMM(CblasRowMajor, opa, opb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);    \
            return;                                                                         \
        }                                                                                   \
        const int by_rows = M >= N;                                                         \
        _Pragma("omp parallel num_threads(nt)")                                             \
        {                                                                                   \
            int lo, hi;                                                                     \
            rl_gemm_part(by_rows ? M : N, omp_get_num_threads(), omp_get_thread_num(), &lo, \
                         &hi);                                                              \
            if (hi > lo) {                                                                  \
                if (by_rows) /* rows lo..hi of op(A) and of C */                            \
                    GEMM(CblasRowMajor, opa, opb, hi - lo, N, K, alpha,                     \
                         A + (ta ? (int64_t)lo : (int64_t)lo * lda), lda, B, ldb, beta,     \
                         C + (int64_t)lo * ldc, ldc);                                       \
                else /* columns lo..hi of op(B) and of C */                                 \
                    GEMM(CblasRowMajor, opa, opb, M, hi - lo, K, alpha, A, lda,             \
                         B + (tb ? (int64_t)lo * ldb : (int64_t)lo), ldb, beta, C + lo,     \
                         ldc);                                                              \
            }                                                                               \
        }                                                                                   \
    }

RL_GEMM_DEFINE(float, f32, cblas_sgemm)
RL_GEMM_DEFINE(double, f64, cblas_dgemm)
