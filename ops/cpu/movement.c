/* ops/cpu/movement.c - CPU kernels of the movement ops. Pure data movement
 * (reshape, permute, slice, concat, stack, broadcast_to, gather, embedding) is
 * written per element size rather than per dtype: a 4-byte copy serves f32
 * and i32, an 8-byte copy f64, bit for bit. The kernels that add
 * (scatter_add, embedding_grad) are written per float dtype.
 *
 * Large copies are split across the OpenMP threads by outer index (each
 * output element is written by one thread, so the bits do not change).
 *
 * Index kernels skip (gather, embedding: write zero; scatter_add,
 * embedding_grad: add nothing) an index out of range rather than touch memory
 * outside the tensor; the CPU front ends have already rejected such indices
 * with a message (see ops/movement.c).
 */
#include "cpu.h"

#include <string.h>

/* Splits a shape around `axis` into outer (axes before), the axis size and
 * inner (axes after), so any axis op works on a [outer, D, inner] view. */
static void rl_split_axis(const rl_tensor *t, int axis, int64_t *outer, int64_t *inner) {
    int64_t o = 1, i = 1;
    for (int d = 0; d < axis; d++) o *= t->shape[d];
    for (int d = axis + 1; d < t->ndim; d++) i *= t->shape[d];
    *outer = o;
    *inner = i;
}

/* reshape is a view (OPF_VIEW, ops/rl_ops.h): rl_op_run gives its
 * output the input's data and never calls this kernel. It stays in the table
 * as the copying fallback the table requires. */
void rl_cpu_reshape(void *bctx, const rl_node *n) {
    (void)bctx;
    size_t bytes = (size_t)n->out->numel * rl_dtype_size(n->out->dtype);
    if (bytes) memcpy(n->out->data, n->in[0]->data, bytes);
}

/* out[i0,i1,i2,i3] = x[i0*s0 + i1*s1 + i2*s2 + i3*s3] with the strides of x
 * reordered by the permutation; rows whose last axis stays last are memcpy'd. */
#define RL_PERMUTE_LOOP(T)                                                                 \
    do {                                                                                   \
        const T *px = x->data;                                                             \
        T *po = y->data;                                                                   \
        /* the two outer output axes are split across the threads */                       \
        RL_PAR_FOR_W(i01, sh[0] * sh[1], sh[2] * sh[3], {                                  \
            const int64_t i0 = i01 / sh[1], i1 = i01 % sh[1];                              \
            int64_t o = i01 * sh[2] * sh[3];                                               \
            for (int64_t i2 = 0; i2 < sh[2]; i2++) {                                       \
                const T *r = px + i0 * st[0] + i1 * st[1] + i2 * st[2];                    \
                if (st[3] == 1) {                                                          \
                    memcpy(po + o, r, sizeof(T) * (size_t)sh[3]);                          \
                    o += sh[3];                                                            \
                } else {                                                                   \
                    for (int64_t i3 = 0; i3 < sh[3]; i3++) po[o++] = r[i3 * st[3]];        \
                }                                                                          \
            }                                                                              \
        });                                                                                \
    } while (0)

void rl_cpu_permute(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0];
    rl_tensor *y = n->out;
    if (y->numel == 0) return;
    int64_t xs[RL_MAX_DIMS], sh[RL_MAX_DIMS], st[RL_MAX_DIMS];
    rl_shape_strides(x->ndim, x->shape, xs);
    int pad = RL_MAX_DIMS - y->ndim;
    for (int d = 0; d < RL_MAX_DIMS; d++) {
        sh[d] = d < pad ? 1 : y->shape[d - pad];
        st[d] = d < pad ? 0 : xs[n->attrs.ints[d - pad]];
    }
    if (rl_dtype_size(y->dtype) == 8) RL_PERMUTE_LOOP(uint64_t);
    else RL_PERMUTE_LOOP(uint32_t);
}

void rl_cpu_slice(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0];
    rl_tensor *y = n->out;
    int ax = n->attrs.axis;
    int64_t outer, inner;
    rl_split_axis(x, ax, &outer, &inner);
    size_t es = rl_dtype_size(y->dtype);
    size_t src_row = (size_t)(x->shape[ax] * inner) * es;
    size_t dst_row = (size_t)(y->shape[ax] * inner) * es;
    if (dst_row == 0) return;
    const char *src = (const char *)x->data + (size_t)(n->attrs.ints[0] * inner) * es;
    char *dst = y->data;
    RL_PAR_FOR_W(o, outer, dst_row / 4,
                 memcpy(dst + (size_t)o * dst_row, src + (size_t)o * src_row, dst_row););
}

void rl_cpu_concat(void *bctx, const rl_node *n) {
    (void)bctx;
    rl_tensor *y = n->out;
    int ax = n->attrs.axis;
    int64_t outer, inner;
    rl_split_axis(y, ax, &outer, &inner);
    size_t es = rl_dtype_size(y->dtype);
    char *dst = y->data;
    const size_t out_row = (size_t)(y->shape[ax] * inner) * es; /* one outer index of y */
    RL_PAR_FOR_W(o, outer, out_row / 4, {
        char *d = dst + (size_t)o * out_row;
        for (int k = 0; k < n->n_in; k++) {
            size_t row = (size_t)(n->in[k]->shape[ax] * inner) * es;
            if (!row) continue;
            memcpy(d, (const char *)n->in[k]->data + (size_t)o * row, row);
            d += row;
        }
    });
}

/* y's row o (the axes before the new one) holds input k's row o at k * inner. */
void rl_cpu_stack(void *bctx, const rl_node *n) {
    (void)bctx;
    rl_tensor *y = n->out;
    int64_t outer, inner;
    rl_split_axis(y, n->attrs.axis, &outer, &inner);
    size_t es = rl_dtype_size(y->dtype);
    const size_t row = (size_t)inner * es; /* one outer index of an input */
    if (!row) return;
    char *dst = y->data;
    const int k_in = n->n_in;
    RL_PAR_FOR_W(o, outer, row * (size_t)k_in / 4, {
        char *d = dst + (size_t)o * row * (size_t)k_in;
        for (int k = 0; k < k_in; k++) memcpy(d + (size_t)k * row, (const char *)n->in[k]->data + (size_t)o * row, row);
    });
}

/* Stride-0 axes repeat x; when x's last axis is not broadcast rows are copied whole. */
#define RL_BCAST_LOOP(T)                                                                   \
    do {                                                                                   \
        const T *px = n->in[0]->data;                                                      \
        T *po = y->data;                                                                   \
        const int64_t *st = b.stride[0];                                                   \
        int64_t o = 0;                                                                     \
        for (int64_t i0 = 0; i0 < b.shape[0]; i0++)                                        \
            for (int64_t i1 = 0; i1 < b.shape[1]; i1++)                                    \
                for (int64_t i2 = 0; i2 < b.shape[2]; i2++) {                              \
                    const T *r = px + i0 * st[0] + i1 * st[1] + i2 * st[2];                \
                    if (st[3] == 1) {                                                      \
                        memcpy(po + o, r, sizeof(T) * (size_t)b.shape[3]);                 \
                        o += b.shape[3];                                                   \
                    } else {                                                               \
                        T v = r[0]; /* st[3] == 0: one value along the row */              \
                        for (int64_t i3 = 0; i3 < b.shape[3]; i3++) po[o++] = v;           \
                    }                                                                      \
                }                                                                          \
    } while (0)

void rl_cpu_broadcast_to(void *bctx, const rl_node *n) {
    (void)bctx;
    rl_tensor *y = n->out;
    if (y->numel == 0) return;
    rl_bcast b;
    rl_bcast_setup(&b, y, 1, n->in);
    if (rl_dtype_size(y->dtype) == 8) RL_BCAST_LOOP(uint64_t);
    else RL_BCAST_LOOP(uint32_t);
}

/* x viewed as [outer, Dx, inner], index and out as [outer, Di, inner]. */
#define RL_GATHER_LOOP(T)                                                                  \
    do {                                                                                   \
        const T *px = x->data;                                                             \
        const int32_t *pi = idx->data;                                                     \
        T *po = y->data;                                                                   \
        for (int64_t o = 0; o < outer; o++)                                                \
            for (int64_t j = 0; j < Di; j++) {                                             \
                int64_t base = (o * Di + j) * inner;                                       \
                for (int64_t i = 0; i < inner; i++) {                                      \
                    int32_t k = pi[base + i];                                              \
                    po[base + i] = (k >= 0 && k < Dx) ? px[(o * Dx + k) * inner + i] : 0;  \
                }                                                                          \
            }                                                                              \
    } while (0)

void rl_cpu_gather(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *x = n->in[0], *idx = n->in[1];
    rl_tensor *y = n->out;
    int ax = n->attrs.axis;
    int64_t outer, inner;
    rl_split_axis(idx, ax, &outer, &inner);
    int64_t Dx = x->shape[ax], Di = idx->shape[ax];
    if (y->dtype == RL_F64) RL_GATHER_LOOP(double);
    else RL_GATHER_LOOP(float);
}

/* out viewed as [outer, Do, inner] (zeroed), index and src as [outer, Di, inner]. */
#define RL_SCATTER_LOOP(T)                                                                 \
    do {                                                                                   \
        const T *ps = src->data;                                                           \
        const int32_t *pi = idx->data;                                                     \
        T *po = y->data;                                                                   \
        RL_PAR_RANGE(lo, hi, y->numel, 0.25, memset(po + lo, 0, sizeof(T) * (size_t)(hi - lo)););\
        for (int64_t o = 0; o < outer; o++)                                                \
            for (int64_t j = 0; j < Di; j++) {                                             \
                int64_t base = (o * Di + j) * inner;                                       \
                for (int64_t i = 0; i < inner; i++) {                                      \
                    int32_t k = pi[base + i];                                              \
                    if (k >= 0 && k < Do) po[(o * Do + k) * inner + i] += ps[base + i];    \
                }                                                                          \
            }                                                                              \
    } while (0)

void rl_cpu_scatter_add(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *idx = n->in[0], *src = n->in[1];
    rl_tensor *y = n->out;
    int ax = n->attrs.axis;
    int64_t outer, inner;
    rl_split_axis(idx, ax, &outer, &inner);
    int64_t Do = y->shape[ax], Di = idx->shape[ax];
    if (y->dtype == RL_F64) RL_SCATTER_LOOP(double);
    else RL_SCATTER_LOOP(float);
}

void rl_cpu_embedding(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *table = n->in[0], *ids = n->in[1];
    rl_tensor *y = n->out;
    int64_t V = table->shape[0], C = table->shape[1];
    size_t row = (size_t)C * rl_dtype_size(y->dtype);
    if (!row) return;
    const int32_t *pi = ids->data;
    const char *pt = table->data;
    char *po = y->data;
    RL_PAR_FOR_W(i, ids->numel, row / 4, {
        int32_t k = pi[i];
        char *dst = po + (size_t)i * row;
        if (k >= 0 && k < V) memcpy(dst, pt + (size_t)k * row, row);
        else memset(dst, 0, row); /* all-zero bits are 0.0 in f32 and f64 */
    });
}

/* The [V, C] output is zeroed in parallel chunks first: for GPT-2's wte
 * (50257 x 768) that is 154 MB, against a few hundred rows scattered. */
#define RL_EMBEDDING_GRAD_LOOP(T)                                                          \
    do {                                                                                   \
        const T *pd = dy->data;                                                            \
        T *po = y->data;                                                                   \
        RL_PAR_RANGE(lo, hi, y->numel, 0.25, memset(po + lo, 0, sizeof(T) * (size_t)(hi - lo)););\
        for (int64_t i = 0; i < ids->numel; i++) {                                         \
            int32_t k = pi[i];                                                             \
            if (k < 0 || k >= V) continue;                                                 \
            T *r = po + (int64_t)k * C;                                                    \
            const T *s = pd + i * C;                                                       \
            for (int64_t c = 0; c < C; c++) r[c] += s[c];                                  \
        }                                                                                  \
    } while (0)

void rl_cpu_embedding_grad(void *bctx, const rl_node *n) {
    (void)bctx;
    const rl_tensor *ids = n->in[0], *dy = n->in[1];
    rl_tensor *y = n->out;
    int64_t V = y->shape[0], C = y->shape[1];
    const int32_t *pi = ids->data;
    if (y->dtype == RL_F64) RL_EMBEDDING_GRAD_LOOP(double);
    else RL_EMBEDDING_GRAD_LOOP(float);
}
