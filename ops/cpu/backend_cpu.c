/* ops/cpu/backend_cpu.c - the CPU backend: host memory buffers and the kernel
 * table, generated from ops/ops.def so that every op has a CPU kernel.
 *
 * Folder ops/cpu/: the CPU backend (OpenBLAS, OpenMP), one kernel per ops.def row;
 * may include ops/ and engine/. Start here, then cpu.h.
 */
#include "cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *rl_cpu_buffer_alloc(void *bctx, size_t bytes) {
    (void)bctx;
    return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
}

static void rl_cpu_buffer_free(void *bctx, void *ptr) {
    (void)bctx;
    free(ptr);
}

static void rl_cpu_copy(void *bctx, void *dst, const void *src, size_t bytes) {
    (void)bctx;
    if (bytes) memmove(dst, src, bytes);
}

/* Zeroing, accumulation and fill are memory-bound; large ones are split
 * across the threads (zero_grad of GPT-2 124M clears 0.5 GB). */
static void rl_cpu_memset_zero(void *bctx, void *dst, size_t bytes) {
    (void)bctx;
    char *d = dst;
    RL_PAR_RANGE(lo, hi, (int64_t)bytes, 0.25, memset(d + lo, 0, (size_t)(hi - lo)););
}

static void rl_cpu_accumulate(void *bctx, rl_tensor *dst, const rl_tensor *src) {
    (void)bctx;
    int64_t n = dst->numel;
    if (dst->dtype == RL_F32) {
        float *d = dst->data;
        const float *s = src->data;
        RL_PAR_FOR(i, n, d[i] += s[i];);
    } else if (dst->dtype == RL_F64) {
        double *d = dst->data;
        const double *s = src->data;
        RL_PAR_FOR(i, n, d[i] += s[i];);
    } else {
        int32_t *d = dst->data;
        const int32_t *s = src->data;
        RL_PAR_FOR(i, n, d[i] += s[i];);
    }
}

static void rl_cpu_fill(void *bctx, rl_tensor *dst, double value) {
    (void)bctx;
    int64_t n = dst->numel;
    if (dst->dtype == RL_F32) {
        float *d = dst->data;
        const float v = (float)value;
        RL_PAR_FOR(i, n, d[i] = v;);
    } else if (dst->dtype == RL_F64) {
        double *d = dst->data;
        RL_PAR_FOR(i, n, d[i] = value;);
    } else {
        int32_t *d = dst->data;
        const int32_t v = (int32_t)value;
        RL_PAR_FOR(i, n, d[i] = v;);
    }
}

static void rl_cpu_synchronize(void *bctx) { (void)bctx; }

/* Every op has a CPU kernel (a row of ops/ops.def without rl_cpu_<name>
 * fails to link). */
static const rl_kernel_fn rl_cpu_kernels[RL_OP_COUNT] = {
#define OP(e, name, ...) [RL_OP_##e] = rl_cpu_##name,
#include "ops.def"
#undef OP
};

static const rl_backend_i rl_cpu_iface = {
    .name = "cpu",
    .host_memory = 1,
    .buffer_alloc = rl_cpu_buffer_alloc,
    .buffer_free = rl_cpu_buffer_free,
    .copy_to_device = rl_cpu_copy, /* host memory is device memory here */
    .copy_to_host = rl_cpu_copy,
    .copy = rl_cpu_copy,
    .memset_zero = rl_cpu_memset_zero,
    .accumulate = rl_cpu_accumulate,
    .fill = rl_cpu_fill,
    .synchronize = rl_cpu_synchronize,
    .free_context = NULL,
    .kernels = rl_cpu_kernels,
    .n_kernels = RL_OP_COUNT,
};

rl_backend *rl_backend_cpu_new(char *err, size_t n) {
    rl_backend *b = malloc(sizeof(*b));
    if (!b) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    rl_cpu_blas_init(); /* one thread pool: see ops/cpu/gemm.c */
    b->iface = &rl_cpu_iface;
    b->ctx = NULL;
    return b;
}
