/* ops/cpu/matmul.c - CPU kernel of matmul in f32 and f64: calls to
 * rl_cpu_gemm_f32/f64 (OpenBLAS's cblas_sgemm / cblas_dgemm split across the
 * OpenMP threads, ops/cpu/gemm.c) on the tensors' own buffers (no packing or
 * copies of ours), one call per batch element, or a single call when b is a
 * 2-D matrix shared by the whole batch and a is not transposed (the x @ W
 * case: a's batch and row axes are then one [batch*M, K] matrix).
 * The front end (ops/matmul.c) has checked shapes and that every size fits
 * BLAS's int.
 */
#include "cpu.h"

#include <string.h>

void rl_cpu_matmul(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *a = n->in[0], *b = n->in[1];
    rl_tensor *y = n->out;
    const int ta = n->attrs.trans_a, tb = n->attrs.trans_b;
    if (y->numel == 0) return;
    int64_t M = y->shape[y->ndim - 2], N = y->shape[y->ndim - 1];
    int64_t K = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
    if (K == 0) {
        /* an empty sum; BLAS would also give 0 but rejects lda = 0 */
        memset(y->data, 0, (size_t)y->numel * rl_dtype_size(y->dtype));
        return;
    }
    int64_t batch = y->numel / (M * N);
    const int shared = b->ndim == 2;
    /* leading dimensions of the matrices as stored (row-major) */
    const int lda = (int)(ta ? M : K), ldb = (int)(tb ? K : N), ldy = (int)N;
    const int64_t step_a = M * K, step_b = shared ? 0 : K * N, step_y = M * N;
    if (shared && !ta) {
        /* rows of every batch element are consecutive: one GEMM */
        M *= batch;
        batch = 1;
    }
    /* a batch of small products runs one product per thread; otherwise each
     * product is split across the threads (rl_cpu_gemm_*) */
    const int par_batch = batch > 1 && M * N * K < 256 * 256 * 256;
    if (y->dtype == RL_F32) {
        const float *pa = a->data, *pb = b->data;
        float *py = y->data;
        if (par_batch) {
            RL_PAR_FOR_W(i, batch, M * N * K / 8,
                           rl_cpu_gemm_f32(ta, tb, (int)M, (int)N, (int)K, 1.0f, pa + i * step_a,
                                           lda, pb + i * step_b, ldb, 0.0f, py + i * step_y, ldy););
        } else {
            for (int64_t i = 0; i < batch; i++)
                rl_cpu_gemm_f32(ta, tb, (int)M, (int)N, (int)K, 1.0f, pa + i * step_a, lda,
                                pb + i * step_b, ldb, 0.0f, py + i * step_y, ldy);
        }
    } else {
        const double *pa = a->data, *pb = b->data;
        double *py = y->data;
        if (par_batch) {
            RL_PAR_FOR_W(i, batch, M * N * K / 8,
                           rl_cpu_gemm_f64(ta, tb, (int)M, (int)N, (int)K, 1.0, pa + i * step_a,
                                           lda, pb + i * step_b, ldb, 0.0, py + i * step_y, ldy););
        } else {
            for (int64_t i = 0; i < batch; i++)
                rl_cpu_gemm_f64(ta, tb, (int)M, (int)N, (int)K, 1.0, pa + i * step_a, lda,
                                pb + i * step_b, ldb, 0.0, py + i * step_y, ldy);
        }
    }
}
