/* engine/ctx.c - the context: error reporting, the step arena (backend memory
 * for activations), host pools for tensor headers and scratch, and the
 * creation, reading and writing of tensors.
 *
 * Why two header pools: tensor headers of step g live in pool g%2. Resetting
 * to step g+1 rewinds pool (g+1)%2, so the headers of step g stay readable for
 * one more step and a tensor kept by mistake across rl_ctx_reset is caught by
 * its generation number instead of silently aliasing a new tensor.
 */
#include "rl_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- host bump pools ---------------------------------------------------- */

typedef struct rl_pool_block {
    struct rl_pool_block *next;
    size_t size, used;
    _Alignas(64) unsigned char data[];
} rl_pool_block;

typedef struct rl_pool {
    rl_pool_block *first, *cur;
    size_t block_size;
} rl_pool;

static void *rl_pool_alloc(rl_pool *p, size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    for (;;) {
        rl_pool_block *b = p->cur;
        if (b && b->size - b->used >= bytes) {
            void *r = b->data + b->used;
            b->used += bytes;
            return r;
        }
        if (b && b->next) { /* reuse the blocks of earlier steps in order */
            p->cur = b->next;
            p->cur->used = 0;
            continue;
        }
        size_t sz = bytes > p->block_size ? bytes : p->block_size;
        rl_pool_block *nb = aligned_alloc(64, (sizeof(rl_pool_block) + sz + 63) & ~(size_t)63);
        if (!nb) return NULL;
        nb->next = NULL;
        nb->size = sz;
        nb->used = 0;
        if (b) {
            /* insert after cur so later blocks keep their order */
            nb->next = b->next;
            b->next = nb;
        } else {
            p->first = nb;
        }
        p->cur = nb;
    }
}

static void rl_pool_rewind(rl_pool *p) {
    p->cur = p->first;
    if (p->cur) p->cur->used = 0;
}

static void rl_pool_destroy(rl_pool *p) {
    rl_pool_block *b = p->first;
    while (b) {
        rl_pool_block *n = b->next;
        free(b);
        b = n;
    }
    p->first = p->cur = NULL;
}

/* ---- the step arena (backend memory) ------------------------------------ */

typedef struct rl_chunk {
    void *ptr;
    size_t size, used;
} rl_chunk;

struct rl_arena {
    uint32_t gen;
    rl_chunk *chunks;
    int n_chunks, cur, cap_chunks;
    size_t peak;
};

struct rl_ctx {
    rl_backend *backend;
    rl_arena arena;
    rl_pool headers[2];
    rl_pool scratch;
    rl_node *tape;
    int tape_len, tape_cap;
    int grad_enabled;
    int64_t max_numel;            /* rl_ctx_set_max_numel; 0: none */
    const char *max_numel_why;
    int create_graph;
    int in_backward;
    int abort_on_error;
    rl_status status;
    char err[2048];
};

#define RL_ARENA_MIN_CHUNK ((size_t)1 << 22)

static void *rl_arena_alloc(rl_ctx *ctx, size_t bytes) {
    rl_arena *a = &ctx->arena;
    bytes = (bytes + 63) & ~(size_t)63;
    if (bytes == 0) bytes = 64;
    while (a->cur < a->n_chunks) {
        rl_chunk *c = &a->chunks[a->cur];
        if (c->size - c->used >= bytes) {
            void *r = (char *)c->ptr + c->used;
            c->used += bytes;
            return r;
        }
        a->cur++;
        if (a->cur < a->n_chunks) a->chunks[a->cur].used = 0;
    }
    if (a->n_chunks == a->cap_chunks) {
        int nc = a->cap_chunks ? 2 * a->cap_chunks : 8;
        rl_chunk *n = realloc(a->chunks, (size_t)nc * sizeof(*n));
        if (!n) return NULL;
        a->chunks = n;
        a->cap_chunks = nc;
    }
    size_t last = a->n_chunks ? a->chunks[a->n_chunks - 1].size : 0;
    size_t sz = 2 * last;
    if (sz < RL_ARENA_MIN_CHUNK) sz = RL_ARENA_MIN_CHUNK;
    if (sz < bytes) sz = bytes;
    void *p = ctx->backend->iface->buffer_alloc(ctx->backend->ctx, sz);
    if (!p) return NULL;
    a->chunks[a->n_chunks] = (rl_chunk){p, sz, bytes};
    a->cur = a->n_chunks++;
    return p;
}

void *rl_arena_alloc_bytes(rl_ctx *ctx, size_t bytes) {
    void *p = rl_arena_alloc(ctx, bytes);
    if (!p) rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory: the step arena could not grow by %zu bytes", bytes);
    return p;
}

void *rl_ctx_scratch(rl_ctx *ctx, size_t bytes) {
    void *p = rl_pool_alloc(&ctx->scratch, bytes);
    if (!p) rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory: host scratch of %zu bytes", bytes);
    return p;
}

static size_t rl_arena_used_bytes(const rl_arena *a) {
    size_t u = 0;
    for (int i = 0; i <= a->cur && i < a->n_chunks; i++) u += a->chunks[i].used;
    return u;
}

void rl_ctx_reset(rl_ctx *ctx) {
    rl_arena *a = &ctx->arena;
    size_t used = rl_arena_used_bytes(a);
    if (used > a->peak) a->peak = used;
    if (a->n_chunks > 1) {
        /* Coalesce into one chunk big enough for the whole last step, so the
         * steady state is a single allocation and no allocation per step. */
        size_t total = used + used / 8; /* the last step's need, with room to vary */
        if (total < RL_ARENA_MIN_CHUNK) total = RL_ARENA_MIN_CHUNK;
        for (int i = 0; i < a->n_chunks; i++)
            ctx->backend->iface->buffer_free(ctx->backend->ctx, a->chunks[i].ptr);
        a->n_chunks = 0;
        void *p = ctx->backend->iface->buffer_alloc(ctx->backend->ctx, total);
        if (p) a->chunks[a->n_chunks++] = (rl_chunk){p, total, 0};
    }
    a->cur = 0;
    if (a->n_chunks) a->chunks[0].used = 0;
    a->gen++;
    rl_pool_rewind(&ctx->headers[a->gen & 1]);
    rl_pool_rewind(&ctx->scratch);
    ctx->tape_len = 0;
}

/* ---- context ------------------------------------------------------------ */

rl_ctx *rl_ctx_new_backend(rl_backend *be) {
    if (!be) return NULL;
    rl_ctx *ctx = calloc(1, sizeof(*ctx));
    if (!ctx) {
        if (be->iface->free_context) be->iface->free_context(be->ctx);
        free(be);
        return NULL;
    }
    ctx->backend = be;
    ctx->arena.gen = 1;
    ctx->headers[0].block_size = ctx->headers[1].block_size = 1024 * sizeof(rl_tensor);
    ctx->scratch.block_size = (size_t)1 << 16;
    ctx->grad_enabled = 1;
    const char *ab = getenv("RL_ABORT_ON_ERROR");
    ctx->abort_on_error = ab && *ab && strcmp(ab, "0") != 0;
    return ctx;
}

void rl_ctx_free(rl_ctx *ctx) {
    if (!ctx) return;
    for (int i = 0; i < ctx->arena.n_chunks; i++)
        ctx->backend->iface->buffer_free(ctx->backend->ctx, ctx->arena.chunks[i].ptr);
    free(ctx->arena.chunks);
    rl_pool_destroy(&ctx->headers[0]);
    rl_pool_destroy(&ctx->headers[1]);
    rl_pool_destroy(&ctx->scratch);
    free(ctx->tape);
    if (ctx->backend->iface->free_context) ctx->backend->iface->free_context(ctx->backend->ctx);
    free(ctx->backend);
    free(ctx);
}

int rl_ctx_set_grad(rl_ctx *ctx, int enabled) {
    int old = ctx->grad_enabled;
    ctx->grad_enabled = enabled != 0;
    return old;
}
int rl_ctx_grad_enabled(const rl_ctx *ctx) { return ctx->grad_enabled; }
void rl_ctx_set_max_numel(rl_ctx *ctx, int64_t max, const char *why) {
    ctx->max_numel = max > 0 ? max : 0;
    ctx->max_numel_why = why;
}
int64_t rl_ctx_max_numel(const rl_ctx *ctx, const char **why) {
    if (why) *why = ctx->max_numel_why;
    return ctx->max_numel;
}
void rl_ctx_set_create_graph(rl_ctx *ctx, int enabled) { ctx->create_graph = enabled != 0; }
int rl_ctx_create_graph(const rl_ctx *ctx) { return ctx->create_graph; }
int rl_ctx_in_backward(const rl_ctx *ctx) { return ctx->in_backward; }
void rl_ctx_set_in_backward(rl_ctx *ctx, int on) { ctx->in_backward = on; }
rl_backend *rl_ctx_backend(rl_ctx *ctx) { return ctx->backend; }
const char *rl_ctx_backend_name(const rl_ctx *ctx) { return ctx->backend->iface->name; }
const char *rl_ctx_error(const rl_ctx *ctx) { return ctx->status ? ctx->err : NULL; }
rl_status rl_ctx_status(const rl_ctx *ctx) { return ctx->status; }
void rl_ctx_clear_error(rl_ctx *ctx) {
    ctx->status = RL_OK;
    ctx->err[0] = 0;
}
size_t rl_ctx_arena_used(const rl_ctx *ctx) { return rl_arena_used_bytes(&ctx->arena); }
size_t rl_ctx_arena_capacity(const rl_ctx *ctx) {
    size_t c = 0;
    for (int i = 0; i < ctx->arena.n_chunks; i++) c += ctx->arena.chunks[i].size;
    return c;
}
int rl_ctx_tape_len(const rl_ctx *ctx) { return ctx->tape_len; }

rl_status rl_ctx_fail(rl_ctx *ctx, rl_status status, const char *fmt, ...) {
    if (ctx->status == RL_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
        va_end(ap);
        ctx->status = status;
        if (ctx->abort_on_error) {
            fprintf(stderr, "rlhf: %s\n(aborting because RL_ABORT_ON_ERROR is set)\n", ctx->err);
            abort();
        }
    }
    return status;
}

/* ---- the tape's storage (the logic is in tape.c) ------------------------- */

rl_node *rl_ctx_tape_append(rl_ctx *ctx) {
    if (ctx->tape_len == ctx->tape_cap) {
        int nc = ctx->tape_cap ? 2 * ctx->tape_cap : 256;
        rl_node *n = realloc(ctx->tape, (size_t)nc * sizeof(*n));
        if (!n) {
            rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory: the tape could not grow past %d nodes",
                        ctx->tape_len);
            return NULL;
        }
        ctx->tape = n;
        ctx->tape_cap = nc;
    }
    return &ctx->tape[ctx->tape_len++];
}

const rl_node *rl_ctx_node(const rl_ctx *ctx, int i) {
    return (i >= 0 && i < ctx->tape_len) ? &ctx->tape[i] : NULL;
}

const rl_node *rl_tensor_node(const rl_ctx *ctx, const rl_tensor *t) {
    if (!t || !t->arena || t->gen != ctx->arena.gen) return NULL;
    return rl_ctx_node(ctx, t->node);
}

/* ---- shapes --------------------------------------------------------------- */

const char *rl_dtype_name(rl_dtype dt) {
    switch (dt) {
    case RL_F32: return "f32";
    case RL_F64: return "f64";
    case RL_I32: return "i32";
    default: return "?";
    }
}

size_t rl_dtype_size(rl_dtype dt) { return dt == RL_F64 ? 8 : 4; }

int64_t rl_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

void rl_shape_strides(int ndim, const int64_t *shape, int64_t *strides) {
    int64_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shape[i];
    }
}

int rl_shape_equal(int na, const int64_t *a, int nb, const int64_t *b) {
    if (na != nb) return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

bool rl_shape_broadcast(int na, const int64_t *a, int nb, const int64_t *b, int *nout,
                        int64_t *out) {
    int n = na > nb ? na : nb;
    for (int i = 0; i < n; i++) {
        int64_t da = i < n - na ? 1 : a[i - (n - na)];
        int64_t db = i < n - nb ? 1 : b[i - (n - nb)];
        if (da != db && da != 1 && db != 1) return false;
        out[i] = da == 1 ? db : da;
    }
    *nout = n;
    return true;
}

char *rl_tensor_describe(const rl_tensor *t, char *buf, size_t n) {
    if (!t) {
        snprintf(buf, n, "(null)");
        return buf;
    }
    size_t k = (size_t)snprintf(buf, n, "%s [", rl_dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

/* ---- tensors -------------------------------------------------------------- */

static bool rl_check_shape(rl_ctx *ctx, const char *what, rl_dtype dt, int ndim,
                           const int64_t *shape) {
    if (dt < 0 || dt >= RL_DTYPE_COUNT) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: unknown dtype %d (use RL_F32, RL_F64 or RL_I32)", what,
                    (int)dt);
        return false;
    }
    if (ndim < 0 || ndim > RL_MAX_DIMS) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: %d dims requested; tensors have 0 to %d dims", what, ndim,
                    RL_MAX_DIMS);
        return false;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            rl_ctx_fail(ctx, RL_ERR_ARG, "%s: dim %d is %lld; sizes must be >= 0", what, i,
                        (long long)shape[i]);
            return false;
        }
    return true;
}

static void rl_tensor_init(rl_tensor *t, rl_dtype dt, int ndim, const int64_t *shape) {
    memset(t, 0, sizeof(*t));
    t->magic = RL_TENSOR_MAGIC;
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = rl_shape_numel(ndim, shape);
    t->node = -1;
}

/* Arena tensor with uninitialised data; used by rl_op_run and constants. */
rl_tensor *rl_arena_tensor(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape) {
    if (!rl_check_shape(ctx, "tensor", dt, ndim, shape)) return NULL;
    rl_tensor *t = rl_pool_alloc(&ctx->headers[ctx->arena.gen & 1], sizeof(rl_tensor));
    if (!t) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory: tensor header");
        return NULL;
    }
    rl_tensor_init(t, dt, ndim, shape);
    t->data = rl_arena_alloc_bytes(ctx, (size_t)t->numel * rl_dtype_size(dt));
    if (!t->data) return NULL;
    t->arena = &ctx->arena;
    t->gen = ctx->arena.gen;
    t->backend = ctx->backend;
    return t;
}

rl_tensor *rl_tensor_new(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape,
                         const char *name) {
    if (!rl_check_shape(ctx, "rl_tensor_new", dt, ndim, shape)) return NULL;
    rl_tensor *t = malloc(sizeof(*t));
    if (!t) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory: tensor header");
        return NULL;
    }
    rl_tensor_init(t, dt, ndim, shape);
    size_t bytes = (size_t)t->numel * rl_dtype_size(dt);
    t->data = ctx->backend->iface->buffer_alloc(ctx->backend->ctx, bytes ? bytes : 64);
    if (!t->data) {
        free(t);
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory: tensor '%s' of %zu bytes",
                    name ? name : "?", bytes);
        return NULL;
    }
    ctx->backend->iface->memset_zero(ctx->backend->ctx, t->data, bytes);
    t->flags = RL_TF_PERSISTENT;
    t->backend = ctx->backend;
    if (name) rl_tensor_set_name(t, name);
    return t;
}

rl_status rl_tensor_requires_grad(rl_ctx *ctx, rl_tensor *t) {
    if (!t) return rl_ctx_status(ctx) ? rl_ctx_status(ctx) : RL_ERR_ARG;
    if (!rl_dtype_is_float(t->dtype))
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "tensor '%s' is %s: only f32 and f64 tensors can have gradients",
                           t->name, rl_dtype_name(t->dtype));
    if (!(t->flags & RL_TF_PERSISTENT))
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "tensor '%s' lives in the step arena: only persistent tensors "
                           "(rl_tensor_new/rl_param_new) can be marked as needing gradients",
                           t->name);
    if (!t->grad) {
        t->grad = rl_tensor_new(ctx, t->dtype, t->ndim, t->shape, NULL);
        if (!t->grad) return rl_ctx_status(ctx);
        snprintf(t->grad->name, sizeof t->grad->name, "d%.38s", t->name);
    }
    t->flags |= RL_TF_REQUIRES_GRAD;
    return RL_OK;
}

rl_tensor *rl_param_new(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape,
                        const char *name) {
    rl_tensor *t = rl_tensor_new(ctx, dt, ndim, shape, name);
    if (!t) return NULL;
    if (rl_tensor_requires_grad(ctx, t) != RL_OK) {
        rl_tensor_free(ctx, t);
        return NULL;
    }
    t->flags |= RL_TF_PARAM;
    return t;
}

void rl_tensor_free(rl_ctx *ctx, rl_tensor *t) {
    if (!t) return;
    if (!(t->flags & RL_TF_PERSISTENT)) return; /* arena tensors go with rl_ctx_reset */
    if (t->grad) rl_tensor_free(ctx, t->grad);
    ctx->backend->iface->buffer_free(ctx->backend->ctx, t->data);
    t->magic = 0;
    free(t);
}

void rl_tensor_set_name(rl_tensor *t, const char *name) {
    if (!t) return;
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
}

rl_tensor *rl_const(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape,
                    const void *host_data) {
    rl_tensor *t = rl_arena_tensor(ctx, dt, ndim, shape);
    if (!t) return NULL;
    size_t bytes = (size_t)t->numel * rl_dtype_size(dt);
    if (host_data)
        ctx->backend->iface->copy_to_device(ctx->backend->ctx, t->data, host_data, bytes);
    else
        ctx->backend->iface->memset_zero(ctx->backend->ctx, t->data, bytes);
    t->flags |= RL_TF_CONST;
    return t;
}

rl_tensor *rl_full(rl_ctx *ctx, rl_dtype dt, int ndim, const int64_t *shape, double value) {
    rl_tensor *t = rl_arena_tensor(ctx, dt, ndim, shape);
    if (!t) return NULL;
    ctx->backend->iface->fill(ctx->backend->ctx, t, value);
    t->flags |= RL_TF_CONST;
    return t;
}

rl_tensor *rl_scalar(rl_ctx *ctx, rl_dtype dt, double value) {
    return rl_full(ctx, dt, 0, NULL, value);
}

bool rl_check_input(rl_ctx *ctx, const char *opname, int index, const rl_tensor *t) {
    if (!t) {
        if (ctx->status == RL_OK)
            rl_ctx_fail(ctx, RL_ERR_ARG, "%s: input %d is NULL (was it created?)", opname, index);
        return false;
    }
    if (t->magic != RL_TENSOR_MAGIC) {
        rl_ctx_fail(ctx, RL_ERR_STATE,
                    "%s: input %d is not a live tensor (freed, or not a tensor at all)", opname,
                    index);
        return false;
    }
    if (t->arena && (t->arena != &ctx->arena || t->gen != ctx->arena.gen)) {
        rl_ctx_fail(ctx, RL_ERR_STATE,
                    "%s: input %d ('%s') was used after its arena was reset by rl_ctx_reset; "
                    "keep values across steps in a persistent tensor (rl_tensor_new) or read "
                    "them out before the reset",
                    opname, index, t->name[0] ? t->name : "unnamed");
        return false;
    }
    return true;
}

static rl_status rl_check_io(rl_ctx *ctx, const char *what, const rl_tensor *t, size_t nbytes) {
    if (!rl_check_input(ctx, what, 0, t)) return rl_ctx_status(ctx);
    size_t want = (size_t)t->numel * rl_dtype_size(t->dtype);
    if (nbytes != want) {
        char d[96];
        return rl_ctx_fail(ctx, RL_ERR_ARG, "%s: tensor '%s' is %s = %zu bytes, but %zu were given",
                           what, t->name, rl_tensor_describe(t, d, sizeof d), want, nbytes);
    }
    return RL_OK;
}

rl_status rl_tensor_write(rl_ctx *ctx, rl_tensor *t, const void *host, size_t nbytes) {
    rl_status s = rl_check_io(ctx, "rl_tensor_write", t, nbytes);
    if (s) return s;
    ctx->backend->iface->copy_to_device(ctx->backend->ctx, t->data, host, nbytes);
    return RL_OK;
}

rl_status rl_tensor_read(rl_ctx *ctx, const rl_tensor *t, void *host, size_t nbytes) {
    rl_status s = rl_check_io(ctx, "rl_tensor_read", t, nbytes);
    if (s) return s;
    ctx->backend->iface->copy_to_host(ctx->backend->ctx, host, t->data, nbytes);
    return RL_OK;
}

double rl_tensor_get(rl_ctx *ctx, const rl_tensor *t, int64_t i) {
    if (!rl_check_input(ctx, "rl_tensor_get", 0, t) || i < 0 || i >= t->numel) return 0.0;
    size_t es = rl_dtype_size(t->dtype);
    union { float f; double d; int32_t i; } v;
    ctx->backend->iface->copy_to_host(ctx->backend->ctx, &v, (const char *)t->data + (size_t)i * es, es);
    switch (t->dtype) {
    case RL_F32: return v.f;
    case RL_F64: return v.d;
    default: return v.i;
    }
}

void rl_tensor_set(rl_ctx *ctx, rl_tensor *t, int64_t i, double x) {
    if (!rl_check_input(ctx, "rl_tensor_set", 0, t) || i < 0 || i >= t->numel) return;
    size_t es = rl_dtype_size(t->dtype);
    union { float f; double d; int32_t i; } v;
    switch (t->dtype) {
    case RL_F32: v.f = (float)x; break;
    case RL_F64: v.d = x; break;
    default: v.i = (int32_t)x; break;
    }
    ctx->backend->iface->copy_to_device(ctx->backend->ctx, (char *)t->data + (size_t)i * es, &v, es);
}

rl_status rl_tensor_copy_range(rl_ctx *ctx, rl_tensor *dst, int64_t dst_off, const rl_tensor *src,
                               int64_t src_off, int64_t n) {
    if (!rl_check_input(ctx, "rl_tensor_copy", 0, dst) || !rl_check_input(ctx, "rl_tensor_copy", 1, src))
        return rl_ctx_status(ctx);
    if (dst->dtype != src->dtype)
        return rl_ctx_fail(ctx, RL_ERR_ARG, "rl_tensor_copy: '%s' is %s but '%s' is %s; copies keep the dtype",
                           dst->name, rl_dtype_name(dst->dtype), src->name, rl_dtype_name(src->dtype));
    if (n < 0 || dst_off < 0 || src_off < 0 || dst_off + n > dst->numel || src_off + n > src->numel)
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "rl_tensor_copy: elements [%lld, %lld) of '%s' (%lld elements) to [%lld, %lld) of "
                           "'%s' (%lld elements) are out of range",
                           (long long)src_off, (long long)(src_off + n), src->name, (long long)src->numel,
                           (long long)dst_off, (long long)(dst_off + n), dst->name, (long long)dst->numel);
    size_t es = rl_dtype_size(dst->dtype);
    if (n) ctx->backend->iface->copy(ctx->backend->ctx, (char *)dst->data + (size_t)dst_off * es,
                                     (const char *)src->data + (size_t)src_off * es, (size_t)n * es);
    return RL_OK;
}

rl_status rl_tensor_copy(rl_ctx *ctx, rl_tensor *dst, const rl_tensor *src) {
    if (dst && src && dst->numel != src->numel) {
        char a[96], b[96];
        return rl_ctx_fail(ctx, RL_ERR_ARG, "rl_tensor_copy: '%s' is %s but '%s' is %s; a copy needs equal sizes",
                           dst->name, rl_tensor_describe(dst, a, sizeof a), src->name,
                           rl_tensor_describe(src, b, sizeof b));
    }
    return rl_tensor_copy_range(ctx, dst, 0, src, 0, src ? src->numel : 0);
}

rl_tensor *rl_tensor_clone(rl_ctx *ctx, const rl_tensor *t, const char *name) {
    if (!rl_check_input(ctx, "rl_tensor_clone", 0, t)) return NULL;
    rl_tensor *c = rl_tensor_new(ctx, t->dtype, t->ndim, t->shape, name ? name : t->name);
    if (!c) return NULL;
    if (rl_tensor_copy(ctx, c, t) != RL_OK) {
        rl_tensor_free(ctx, c);
        return NULL;
    }
    return c;
}

const void *rl_tensor_host_data(const rl_tensor *t) {
    return t && t->backend && t->backend->iface->host_memory ? t->data : NULL;
}

void rl_tensor_fill(rl_ctx *ctx, rl_tensor *t, double value) {
    if (!rl_check_input(ctx, "rl_tensor_fill", 0, t)) return;
    ctx->backend->iface->fill(ctx->backend->ctx, t, value);
}

void rl_tensor_zero_grad(rl_ctx *ctx, rl_tensor *t) {
    if (t && t->grad)
        ctx->backend->iface->memset_zero(ctx->backend->ctx, t->grad->data,
                                         (size_t)t->grad->numel * rl_dtype_size(t->dtype));
}
