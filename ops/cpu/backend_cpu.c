/* ops/cpu/backend_cpu.c - the CPU backend: host memory buffers and the kernel
 * table, generated from ops/ops.def so that every op has a CPU kernel.
 */
#include "cpu.h"

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

static void rl_cpu_memset_zero(void *bctx, void *dst, size_t bytes) {
    (void)bctx;
    if (bytes) memset(dst, 0, bytes);
}

static void rl_cpu_accumulate(void *bctx, rl_tensor *dst, const rl_tensor *src) {
    (void)bctx;
    int64_t n = dst->numel;
    if (dst->dtype == RL_F32) {
        float *d = dst->data;
        const float *s = src->data;
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
    } else if (dst->dtype == RL_F64) {
        double *d = dst->data;
        const double *s = src->data;
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
    } else {
        int32_t *d = dst->data;
        const int32_t *s = src->data;
        for (int64_t i = 0; i < n; i++) d[i] += s[i];
    }
}

static void rl_cpu_fill(void *bctx, rl_tensor *dst, double value) {
    (void)bctx;
    int64_t n = dst->numel;
    if (dst->dtype == RL_F32) {
        float *d = dst->data;
        for (int64_t i = 0; i < n; i++) d[i] = (float)value;
    } else if (dst->dtype == RL_F64) {
        double *d = dst->data;
        for (int64_t i = 0; i < n; i++) d[i] = value;
    } else {
        int32_t *d = dst->data;
        for (int64_t i = 0; i < n; i++) d[i] = (int32_t)value;
    }
}

static void rl_cpu_synchronize(void *bctx) { (void)bctx; }

static const rl_backend_i rl_cpu_iface = {
    .name = "cpu",
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
    .kernels = {
#define OP(e, name, sym, arity, flags) [RL_OP_##e] = rl_cpu_##name,
#include "../ops.def"
#undef OP
    },
};

rl_backend *rl_backend_cpu_new(void) {
    rl_backend *b = malloc(sizeof(*b));
    if (!b) return NULL;
    b->iface = &rl_cpu_iface;
    b->ctx = NULL;
    return b;
}
