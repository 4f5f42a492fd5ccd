/* engine/rl_internal.h - what the engine, the op front ends and the backends
 * share but users do not: op attributes, tape nodes, the backend vtable, and
 * the one entry point every op goes through (rl_op_run).
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
    int64_t ints[RL_MAX_DIMS];    /* permutation; slice start/end */
    double f[2];                  /* clamp lo/hi, pow exponent, layernorm eps, attention scale */
} rl_attrs;

#define RL_MAX_SAVED 2

/* One recorded op: out = op(in[0..n_in), attrs). */
typedef struct rl_node {
    rl_op op;
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
 * A NULL kernel slot means "not supported here" and gives an error naming the
 * op and the backend. */
typedef struct rl_backend_i {
    const char *name;
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
    rl_kernel_fn kernels[RL_OP_COUNT];
} rl_backend_i;

struct rl_backend {
    const rl_backend_i *iface;
    void *ctx;
};

/* The CPU backend (ops/cpu/backend_cpu.c). */
rl_backend *rl_backend_cpu_new(void);
/* A context on a given backend (malloc'ed; the context takes ownership). */
rl_ctx *rl_ctx_new_backend(rl_backend *be);

/* View ops (flag OPF_VIEW in column 5 of ops/ops.def, e.g. reshape): the
 * output aliases its single input's data instead of getting its own, and no
 * kernel runs; rl_op_run gives it a header of its own (shape, node, grad) in
 * the current arena. This is safe because arena tensors are never written by
 * the engine after the kernel that made them. A view of a persistent tensor
 * (a parameter) sees later in-place writes to it, optimizer updates included,
 * as PyTorch views do; rl_tensor_write/set/fill on either side of a view
 * change both. The view lives until the next rl_ctx_reset like any arena
 * tensor. (OPF_* values 1 << 0..2 are in ops/rl_ops.h.) */
enum { OPF_VIEW = 1u << 3 };

/* Every op call goes through here: checks that inputs are live, allocates the
 * output (and `n_saved` saved tensors of the given shapes) from the arena,
 * runs the backend kernel, and records a tape node when gradients are on and
 * any input requires one (unless the op is OPF_NOGRAD). Returns the output or
 * NULL with the context's error set. */
typedef struct rl_saved_spec {
    rl_dtype dtype;
    int ndim;
    int64_t shape[RL_MAX_DIMS];
} rl_saved_spec;

rl_tensor *rl_op_run(rl_ctx *ctx, rl_op op, int n_in, rl_tensor *const *in,
                     const rl_attrs *attrs, rl_dtype out_dtype, int out_ndim,
                     const int64_t *out_shape, int n_saved, const rl_saved_spec *saved);

/* Checks an input of an op front end: not NULL (false; silent when an error
 * is already recorded, since the NULL came from it), alive, not from a reset
 * arena. */
bool rl_check_input(rl_ctx *ctx, const char *opname, int index, const rl_tensor *t);

/* The node that produced t (NULL for leaves). */
const rl_node *rl_tensor_node(const rl_ctx *ctx, const rl_tensor *t);
const rl_node *rl_ctx_node(const rl_ctx *ctx, int i);

/* Backward rule: given the node and the gradient of its output, adds the
 * gradients of its inputs with rl_grad_accumulate. Written with ops. */
typedef void (*rl_grad_fn)(rl_ctx *ctx, const rl_node *n, rl_tensor *dout);
/* Adds g into t's gradient, summing broadcast axes down to t's shape. No-op
 * when t does not require a gradient. */
void rl_grad_accumulate(rl_ctx *ctx, rl_tensor *t, rl_tensor *g);

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
