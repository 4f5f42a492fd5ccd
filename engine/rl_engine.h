/* engine/rl_engine.h - public API of the autodiff engine: tensors, the
 * context (arena + tape + backend), backward, and error reporting.
 *
 * Folder engine/: the bottom room: tensors, arenas, the tape, contexts, optimizers, files;
 * includes nothing of the project above it. Start reading here.
 *
 * The engine knows no op: ops/ (rl_ops.h) adds them, and rl_ctx_new (its
 * backend registry) makes a context on a backend by name.
 *
 * Model of use:
 *   rl_ctx *ctx = rl_ctx_new(NULL);               // CPU backend (ops/rl_ops.h)
 *   rl_tensor *w = rl_param_new(ctx, RL_F32, 2, (int64_t[]){4, 3}, "w");
 *   ... each step:
 *   rl_tensor *loss = rl_mean(ctx, rl_matmul(ctx, x, w, 0, 0), RL_AXIS_ALL, 0);
 *   if (rl_backward(ctx, loss) != RL_OK) fprintf(stderr, "%s\n", rl_ctx_error(ctx));
 *   ... optimizer step ...
 *   rl_ctx_reset(ctx);                            // frees activations in O(1)
 *
 * Errors: an op given bad arguments returns NULL and records a message in the
 * context (the first one wins). An op given a NULL input returns NULL; it
 * records nothing new when an error is already recorded (the NULL came from
 * it), so a chain of calls can be checked once at the end with rl_ctx_error().
 *
 * Higher-order gradients: with rl_ctx_set_create_graph(ctx, 1), gradients of
 * arena tensors are recorded expressions that can be differentiated again;
 * parameters' persistent .grad buffers are plain accumulators and are not.
 * Set RL_ABORT_ON_ERROR=1 in the environment to abort at the first error
 * (useful under a debugger).
 */
#ifndef RL_ENGINE_H
#define RL_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define RL_VERSION "0.1.0"
#define RL_MAX_DIMS 4
#define RL_AXIS_ALL 64 /* reduce over every axis */

typedef enum { RL_F32 = 0, RL_F64 = 1, RL_I32 = 2, RL_DTYPE_COUNT } rl_dtype;

typedef enum {
    RL_OK = 0,
    RL_ERR_ARG,      /* bad shapes, dtypes, arguments */
    RL_ERR_STATE,    /* misuse: stale tensor, backward without a loss, ... */
    RL_ERR_MEMORY,   /* allocation failed */
    RL_ERR_IO,       /* a file could not be read or written */
    RL_ERR_BACKEND,  /* an op is not supported by the backend */
} rl_status;

typedef struct rl_ctx rl_ctx;
typedef struct rl_arena rl_arena;
typedef struct rl_backend rl_backend;

/* Tensor flags. */
enum {
    RL_TF_REQUIRES_GRAD = 1u << 0, /* gradients flow into this tensor */
    RL_TF_PARAM         = 1u << 1, /* persistent, owns a persistent .grad */
    RL_TF_PERSISTENT    = 1u << 2, /* allocated outside the step arena */
    RL_TF_CONST         = 1u << 3, /* a leaf created in the arena (data, constants) */
};

/* A dense, contiguous, row-major tensor. Fields are readable by everyone;
 * only the engine writes them. */
typedef struct rl_tensor {
    uint32_t magic;              /* RL_TENSOR_MAGIC while alive */
    rl_dtype dtype;
    int ndim;                    /* 0..4; 0 is a scalar */
    int64_t shape[RL_MAX_DIMS];
    int64_t numel;
    void *data;                  /* backend memory (host memory on the CPU) */
    struct rl_tensor *grad;      /* accumulated gradient (same shape), or NULL */
    uint32_t flags;
    uint32_t gen;                /* arena generation at creation (arena tensors) */
    rl_arena *arena;             /* NULL for persistent tensors */
    rl_backend *backend;
    int node;                    /* index of the tape node that made it, or -1 */
    char name[40];               /* for messages and graph pictures */
} rl_tensor;

#define RL_TENSOR_MAGIC 0x7e450123u

/* ---- context ---------------------------------------------------------- */

/* Contexts are made by name with rl_ctx_new (ops/rl_ops.h: the backend
 * registry), or on a given backend with rl_ctx_new_backend (rl_internal.h). */
void rl_ctx_free(rl_ctx *ctx);
/* Frees every arena tensor and the tape in O(1). Persistent tensors stay. */
void rl_ctx_reset(rl_ctx *ctx);
/* Enables/disables tape recording; returns the previous setting. */
int rl_ctx_set_grad(rl_ctx *ctx, int enabled);
int rl_ctx_grad_enabled(const rl_ctx *ctx);
/* Caps the elements of any op output (0: no cap). An op whose output would
 * be larger fails with "<op> would make a tensor of N elements <why> (more
 * than max)"; the recipe shape check sets it, since its sizes are small and
 * a huge tensor there means broadcasting by mistake. */
void rl_ctx_set_max_numel(rl_ctx *ctx, int64_t max, const char *why);
int64_t rl_ctx_max_numel(const rl_ctx *ctx, const char **why);
rl_backend *rl_ctx_backend(rl_ctx *ctx);
/* The name of the context's backend ("cpu"). */
const char *rl_ctx_backend_name(const rl_ctx *ctx);
/* First error message since the last rl_ctx_clear_error, or NULL. */
const char *rl_ctx_error(const rl_ctx *ctx);
rl_status rl_ctx_status(const rl_ctx *ctx);
void rl_ctx_clear_error(rl_ctx *ctx);
/* Records an error (printf-style); returns status for convenience. */
rl_status rl_ctx_fail(rl_ctx *ctx, rl_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Bytes in use in the step arena and its capacity. */
size_t rl_ctx_arena_used(const rl_ctx *ctx);
size_t rl_ctx_arena_capacity(const rl_ctx *ctx);
/* Number of nodes recorded on the tape since the last reset. */
int rl_ctx_tape_len(const rl_ctx *ctx);

/* ---- tensors ---------------------------------------------------------- */

const char *rl_dtype_name(rl_dtype dt);
size_t rl_dtype_size(rl_dtype dt);
static inline int rl_dtype_is_float(rl_dtype dt) { return dt == RL_F32 || dt == RL_F64; }

/* Persistent tensor (outlives rl_ctx_reset), zero-filled. Free with rl_tensor_free. */
rl_tensor *rl_tensor_new(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape,
                         const char *name);
/* Persistent trainable parameter with a persistent zeroed .grad. */
rl_tensor *rl_param_new(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape,
                        const char *name);
void rl_tensor_free(rl_ctx *ctx, rl_tensor *t);
/* Arena tensor filled from host memory (data may be NULL: zeros). Lives until
 * the next rl_ctx_reset; does not require a gradient. */
rl_tensor *rl_const(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape,
                    const void *host_data);
/* Arena tensor of the given shape with every element = value. */
rl_tensor *rl_full(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape, double value);
/* A 0-d arena constant, for broadcasting against anything. */
rl_tensor *rl_scalar(rl_ctx *ctx, rl_dtype dt, double value);

/* Host <-> tensor copies; n must equal numel. Return RL_OK or an error. */
rl_status rl_tensor_write(rl_ctx *ctx, rl_tensor *t, const void *host, size_t nbytes);
rl_status rl_tensor_read(rl_ctx *ctx, const rl_tensor *t, void *host, size_t nbytes);
/* Copies src's data into dst: same dtype and numel (shapes may differ). */
rl_status rl_tensor_copy(rl_ctx *ctx, rl_tensor *dst, const rl_tensor *src);
/* Copies n elements src[src_off .. src_off + n) to dst[dst_off .. dst_off + n)
 * (flat, row-major element offsets; same dtype). */
rl_status rl_tensor_copy_range(rl_ctx *ctx, rl_tensor *dst, int64_t dst_off, const rl_tensor *src,
                               int64_t src_off, int64_t n);
/* A persistent copy of t (any tensor, arena or persistent) named `name`
 * (t's name when NULL); free with rl_tensor_free. NULL with ctx's error set. */
rl_tensor *rl_tensor_clone(rl_ctx *ctx, const rl_tensor *t, const char *name);
/* t's data as host memory when its backend keeps tensors in host memory
 * (the CPU backend), else NULL (read it with rl_tensor_read). */
const void *rl_tensor_host_data(const rl_tensor *t);
/* Element i as a double (any dtype); for tests and small reads. */
double rl_tensor_get(rl_ctx *ctx, const rl_tensor *t, int64_t i);
void rl_tensor_set(rl_ctx *ctx, rl_tensor *t, int64_t i, double v);
/* Fills with value / zeroes a tensor in place. */
void rl_tensor_fill(rl_ctx *ctx, rl_tensor *t, double value);
void rl_tensor_set_name(rl_tensor *t, const char *name);
/* Marks a persistent tensor as needing gradients (allocates .grad). */
rl_status rl_tensor_requires_grad(rl_ctx *ctx, rl_tensor *t);
/* Zeroes the .grad of a parameter. */
void rl_tensor_zero_grad(rl_ctx *ctx, rl_tensor *t);
/* "f32 [2, 3]" into buf; returns buf. */
char *rl_tensor_describe(const rl_tensor *t, char *buf, size_t n);
int rl_shape_equal(int na, const int64_t *a, int nb, const int64_t *b);

/* ---- gradient mode ------------------------------------------------------ */

/* When set, backward rules are themselves recorded, so gradients can be
 * differentiated again (higher-order gradients). Default off. */
void rl_ctx_set_create_graph(rl_ctx *ctx, int enabled);

#ifdef __cplusplus
}
#endif
#endif
