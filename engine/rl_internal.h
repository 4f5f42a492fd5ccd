/* engine/rl_internal.h - what the engine, the op front ends and the backends
 * share but users do not: op attributes, the records of the tape (their op is
 * an index into ops/'s table, which the engine never reads), the backend
 * vtable, and the arena and scratch allocators the op layer builds on.
 */
#ifndef RL_INTERNAL_H
#define RL_INTERNAL_H

#include "rl_engine.h"

#include <stdbool.h>

/* Attributes of an op call. Which fields an op reads is documented at its
 * front end in ops/. */
typedef struct rl_attrs {
    int axis;                     /* reductions, slice, concat, gather, scatter_add */
    int keepdim;                  /* reductions */
    int trans_a, trans_b;         /* matmul */
    int64_t ints[RL_MAX_DIMS];    /* a shape or permutation (n_ints long); slice start/end */
    int n_ints;                   /* the length of a list attribute in ints */
    double f[2];                  /* clamp lo/hi, pow exponent, layernorm eps, attention scale */
} rl_attrs;

#define RL_MAX_SAVED 2

/* One recorded op: out = op(in[0..n_in), attrs). The context stores these
 * records (rl_ctx_tape_append); ops/tape.c makes them and walks them. */
typedef struct rl_node {
    int op;                       /* an rl_op (ops/rl_ops.h) */
    int n_in;
    rl_tensor **in;               /* arena array of n_in inputs */
    rl_tensor *out;
    rl_tensor *saved[RL_MAX_SAVED]; /* extra forward values kept for backward */
    rl_attrs attrs;
    int backward;                 /* recorded while running backward (create_graph) */
} rl_node;

/* A kernel computes n->out (already allocated with its shape and dtype) from
 * n->in and n->attrs; it fills n->saved[i] when they are not NULL (they are
 * allocated only when the node is recorded for backward). */
typedef void (*rl_kernel_fn)(void *bctx, const rl_node *n);

/* The backend interface: a vtable plus a context pointer (as ggml_backend_i).
 * The kernel table is indexed by op (ops/ops.def order) and has n_kernels
 * slots; a NULL slot means "not supported here" and gives an error naming the
 * op and the backend. */
typedef struct rl_backend_i {
    const char *name;
    int host_memory;              /* tensor data is host memory (rl_tensor_host_data) */
    void *(*buffer_alloc)(void *bctx, size_t bytes);       /* 64-byte aligned, or NULL */
    void (*buffer_free)(void *bctx, void *ptr);
    void (*copy_to_device)(void *bctx, void *dst, const void *host, size_t bytes);
    void (*copy_to_host)(void *bctx, void *host, const void *src, size_t bytes);
    void (*copy)(void *bctx, void *dst, const void *src, size_t bytes);
    void (*memset_zero)(void *bctx, void *dst, size_t bytes);
    /* dst += src elementwise (same dtype and numel); gradient accumulation. */
    void (*accumulate)(void *bctx, rl_tensor *dst, const rl_tensor *src);
    /* fills every element with value */
    void (*fill)(void *bctx, rl_tensor *dst, double value);
    void (*synchronize)(void *bctx);
    void (*free_context)(void *bctx);
    const rl_kernel_fn *kernels;
    int n_kernels;
} rl_backend_i;

struct rl_backend {
    const rl_backend_i *iface;
    void *ctx;
};

/* A context on a given backend (malloc'ed; the context takes ownership).
 * rl_ctx_new (ops/rl_ops.h) finds backends by name. */
rl_ctx *rl_ctx_new_backend(rl_backend *be);

/* Checks an input of an op front end: not NULL (false; silent when an error
 * is already recorded, since the NULL came from it), alive, not from a reset
 * arena. */
bool rl_check_input(rl_ctx *ctx, const char *opname, int index, const rl_tensor *t);

/* The node that produced t (NULL for leaves). */
const rl_node *rl_tensor_node(const rl_ctx *ctx, const rl_tensor *t);
const rl_node *rl_ctx_node(const rl_ctx *ctx, int i);

/* Arena tensor with uninitialised data (op outputs, constants). */
rl_tensor *rl_arena_tensor(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape);
/* Appends a zeroed slot to the tape (NULL on out of memory). */
rl_node *rl_ctx_tape_append(rl_ctx *ctx);
int rl_ctx_create_graph(const rl_ctx *ctx);
/* True while rl_backward runs backward rules. */
int rl_ctx_in_backward(const rl_ctx *ctx);
void rl_ctx_set_in_backward(rl_ctx *ctx, int on);

/* Arena allocation of raw bytes (64-byte aligned, backend memory). */
void *rl_arena_alloc_bytes(rl_ctx *ctx, size_t bytes);
/* Arena allocation of host scratch (never on the device). */
void *rl_ctx_scratch(rl_ctx *ctx, size_t bytes);

int64_t rl_shape_numel(int ndim, const int64_t *shape);
/* Row-major strides in elements. */
void rl_shape_strides(int ndim, const int64_t *shape, int64_t *strides);
/* NumPy broadcasting of two shapes; false if incompatible. */
bool rl_shape_broadcast(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                        int64_t *out);

#endif
