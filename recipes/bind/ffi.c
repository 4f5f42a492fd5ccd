/* recipes/bind/ffi.c - the libffi bridge of `extern "lib.so" name(types) ->
 * types [backward name_bwd]`: loading plug-ins, checking them against their
 * declarations, and calling them (docs/recipes.md, "Externs: the C ABI").
 *
 * A program compiled with opts.externs = rl_recipe_ffi_bridge() calls
 * ffi_bind for each extern at compile time: it dlopens the library and
 * resolves its symbols, so that a missing library or function is a compile
 * error at the declaration, like any other recipe mistake, and not a failure
 * in the middle of training. Loading native code is opt-in: a program
 * compiled without the bridge never dlopens anything (the recipe fuzzer
 * relies on that).
 *
 * Calls copy tensors to host buffers (converting f64 to f32 when the library
 * has no f64 variant), build the argument list with libffi from the
 * declaration, and copy results back. A differentiable extern is joined to
 * the tape with the foreign op (ops/rl_foreign.h): one node per float result,
 * whose backward calls the plug-in's backward with that result's gradient
 * (the others zero). By linearity the sum over results is the exact
 * vector-Jacobian product, with no Jacobian ever formed.
 */
#include "rl_recipe_bind.h"

#include "rl_foreign.h"

#include <dlfcn.h>
#include <ffi.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_DIMS_SIG (RL_RECIPE_MAX_FN_PARAMS * RL_MAX_DIMS)
#define MAX_ARGS (MAX_DIMS_SIG + 2 * RL_RECIPE_MAX_FN_PARAMS + 2 * RL_RECIPE_MAX_FN_RESULTS)

typedef struct ffi_ext ffi_ext;

typedef struct vjp_ctx {
    ffi_ext *e;
    int result;   /* the float result whose gradient this node carries */
} vjp_ctx;

struct ffi_ext {
    const rl_recipe_extern *x; /* the program's declaration (outlives the handle) */
    void *lib;
    bool f64;            /* the library's functions take double (NAME_f64) */
    bool convert;        /* the run is f64 but the functions take float */
    rl_dtype run_dt;
    void *fwd, *bwd;
    ffi_cif cif_fwd, cif_bwd;
    ffi_type *at_fwd[MAX_ARGS], *at_bwd[MAX_ARGS];
    int n_dims;
    const char *dims[MAX_DIMS_SIG];
    rl_foreign_fn vjp[RL_RECIPE_MAX_FN_RESULTS];
    vjp_ctx vctx[RL_RECIPE_MAX_FN_RESULTS];
};

/* ---- the declaration, written out --------------------------------------------------------- */

static int type_text(const rl_recipe_type *t, char *buf, size_t cap) {
    int k = snprintf(buf, cap, "%s", t->is_int ? "i32" : "f32");
    if (t->ndim == 0) return k;
    k += snprintf(buf + k, cap > (size_t)k ? cap - (size_t)k : 0, "[");
    for (int d = 0; d < t->ndim; d++) {
        size_t left = cap > (size_t)k ? cap - (size_t)k : 0;
        if (t->dims[d]) k += snprintf(buf + k, left, "%s%s", d ? ", " : "", t->dims[d]);
        else k += snprintf(buf + k, left, "%s%lld", d ? ", " : "", (long long)t->sizes[d]);
    }
    k += snprintf(buf + k, cap > (size_t)k ? cap - (size_t)k : 0, "]");
    return k;
}

/* "(i32[B, T], f32) -> f32[B]" */
static void decl_text(const rl_recipe_extern *x, char *buf, size_t cap) {
    size_t k = (size_t)snprintf(buf, cap, "(");
    for (int i = 0; i < x->n_params && k < cap; i++) {
        if (i) k += (size_t)snprintf(buf + k, cap - k, ", ");
        if (k < cap) k += (size_t)type_text(&x->params[i], buf + k, cap - k);
    }
    if (k < cap) k += (size_t)snprintf(buf + k, cap - k, ") -> %s", x->n_results > 1 ? "(" : "");
    for (int i = 0; i < x->n_results && k < cap; i++) {
        if (i) k += (size_t)snprintf(buf + k, cap - k, ", ");
        if (k < cap) k += (size_t)type_text(&x->results[i], buf + k, cap - k);
    }
    if (k < cap && x->n_results > 1) snprintf(buf + k, cap - k, ")");
}

/* A signature in a canonical form, so that a plug-in's own description
 * compares equal to a declaration that renames its dims or spaces it
 * differently: no spaces, results in parentheses, "f32[]" as "f32", and
 * each dim name replaced by its order of first appearance ("#0"). */
static void canon(const char *s, char *out, size_t cap) {
    char flat[512];
    size_t k = 0;
    for (; *s && k + 1 < sizeof flat; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n') flat[k++] = *s;
    flat[k] = 0;
    char *arrow = strstr(flat, "->");
    char tmp[600];
    if (arrow && arrow[2] != '(') {
        *arrow = 0;
        snprintf(tmp, sizeof tmp, "%s->(%s)", flat, arrow + 2);
    } else {
        snprintf(tmp, sizeof tmp, "%s", flat);
    }
    const char *names[64];
    size_t lens[64];
    int n = 0;
    size_t o = 0;
    bool in_br = false;
    for (size_t i = 0; tmp[i] && o + 8 < cap;) {
        char c = tmp[i];
        if (c == '[' && tmp[i + 1] == ']') {
            i += 2;
            continue;
        }
        if (c == '[') in_br = true;
        if (c == ']') in_br = false;
        bool id0 = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
        if (in_br && id0) {
            size_t j = i;
            while ((tmp[j] >= 'A' && tmp[j] <= 'Z') || (tmp[j] >= 'a' && tmp[j] <= 'z') ||
                   (tmp[j] >= '0' && tmp[j] <= '9') || tmp[j] == '_')
                j++;
            int idx = -1;
            for (int q = 0; q < n; q++)
                if (lens[q] == j - i && strncmp(names[q], tmp + i, j - i) == 0) idx = q;
            if (idx < 0 && n < 64) names[n] = tmp + i, lens[n] = j - i, idx = n++;
            o += (size_t)snprintf(out + o, cap - o, "#%d", idx);
            i = j;
            continue;
        }
        out[o++] = c;
        i++;
    }
    out[o] = 0;
}

/* ---- finding the library ----------------------------------------------------------------------- */

static void *try_open(const char *path, char *why, size_t n, bool *found) {
    if (access(path, F_OK) != 0) return NULL;
    *found = true;
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!h) snprintf(why, n, "%s", dlerror());
    return h;
}

/* Searches, in order: the recipe file's directory (a name with a '/' is
 * taken relative to it, or as is when absolute), each directory of
 * $RLHF_PLUGIN_DIR, the running program's directory and its plugins/, the
 * build tree's plugin directory, and last the system's library path
 * (dlopen of the bare name: LD_LIBRARY_PATH, the ld.so cache). */
static void *open_lib(const char *file, const char *lib, char *where, size_t wn, char *why, size_t yn) {
    char dir[PATH_MAX], path[PATH_MAX * 2];
    if (!file) file = "";
    const char *slash = strrchr(file, '/');
    if (slash) snprintf(dir, sizeof dir, "%.*s", (int)(slash - file), file);
    else snprintf(dir, sizeof dir, ".");
    if (slash == file) snprintf(dir, sizeof dir, "/");
    bool found = false;
    void *h;
    why[0] = 0;
    if (lib[0] == '/') {
        snprintf(where, wn, "%s", lib);
        return try_open(lib, why, yn, &found);
    }
    snprintf(path, sizeof path, "%s/%s", dir, lib);
    snprintf(where, wn, "%s", path);
    if ((h = try_open(path, why, yn, &found)) || found || strchr(lib, '/')) return h;
    const char *env = getenv("RLHF_PLUGIN_DIR");
    char list[PATH_MAX * 2];
    int k = snprintf(list, sizeof list, "%s (the recipe's directory)", dir);
    if (env && env[0]) {
        char *copy = strdup(env), *save = NULL;
        for (char *d = copy ? strtok_r(copy, ":", &save) : NULL; d; d = strtok_r(NULL, ":", &save)) {
            snprintf(path, sizeof path, "%s/%s", d, lib);
            if ((h = try_open(path, why, yn, &found)) || found) {
                snprintf(where, wn, "%s", path);
                free(copy);
                return h;
            }
            if (k < (int)sizeof list) k += snprintf(list + k, sizeof list - (size_t)k, ", %s", d);
        }
        free(copy);
    } else if (k < (int)sizeof list) {
        k += snprintf(list + k, sizeof list - (size_t)k, ", $RLHF_PLUGIN_DIR (unset)");
    }
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        char *s = strrchr(exe, '/');
        if (s) *s = 0;
        const char *sub[2] = {"", "/plugins"};
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "%s%s/%s", exe, sub[i], lib);
            if ((h = try_open(path, why, yn, &found)) || found) {
                snprintf(where, wn, "%s", path);
                return h;
            }
            if (k < (int)sizeof list) k += snprintf(list + k, sizeof list - (size_t)k, ", %s%s", exe, sub[i]);
        }
    }
#ifdef RLHF_PLUGIN_BUILD_DIR
    snprintf(path, sizeof path, "%s/%s", RLHF_PLUGIN_BUILD_DIR, lib);
    if ((h = try_open(path, why, yn, &found)) || found) {
        snprintf(where, wn, "%s", path);
        return h;
    }
    if (k < (int)sizeof list) k += snprintf(list + k, sizeof list - (size_t)k, ", %s", RLHF_PLUGIN_BUILD_DIR);
#endif
    h = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
    if (h) {
        snprintf(where, wn, "%s", lib);
        return h;
    }
    const char *e = dlerror();
    /* "cannot open shared object file" only says it was not found */
    if (e && !strstr(e, "No such file")) snprintf(why, yn, "%s", e);
    snprintf(where, wn, "%s, and the system's library path", list);
    return NULL;
}

/* ---- binding at compile time ---------------------------------------------------------------------- */

static void *sym(void *lib, const char *name, const char *suffix) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s%s", name, suffix);
    dlerror();
    return dlsym(lib, buf);
}

/* The libffi argument types of the forward (bwd = false) or backward call. */
static int arg_types(const ffi_ext *e, bool bwd, ffi_type **at) {
    const rl_recipe_extern *x = e->x;
    ffi_type *fl = e->f64 ? &ffi_type_double : &ffi_type_float;
    int n = 0;
    for (int d = 0; d < e->n_dims; d++) at[n++] = &ffi_type_sint64;
    for (int i = 0; i < x->n_params; i++)
        at[n++] = x->params[i].ndim > 0 ? &ffi_type_pointer : x->params[i].is_int ? &ffi_type_sint32 : fl;
    if (!bwd) {
        for (int i = 0; i < x->n_results; i++) at[n++] = &ffi_type_pointer;
    } else {
        for (int i = 0; i < x->n_results; i++)
            if (!x->results[i].is_int) at[n++] = &ffi_type_pointer; /* d result */
        for (int i = 0; i < x->n_params; i++)
            if (!x->params[i].is_int) at[n++] = &ffi_type_pointer; /* d param */
    }
    return n;
}

static rl_status ffi_vjp(rl_ctx *ctx, void *user, int n_in, rl_tensor *const *in, const rl_tensor *dout,
                         rl_tensor **din);

static void ffi_release(void *handle) {
    ffi_ext *e = handle;
    if (!e) return;
    if (e->lib) dlclose(e->lib);
    free(e);
}

/* Fails a bind: err gets the message, its hint and where it points. */
#define BIND_FAIL(part, hint_text, ...)                                      \
    do {                                                                     \
        err->at = (part);                                                    \
        snprintf(err->hint, sizeof err->hint, "%s", (hint_text) ? (hint_text) : ""); \
        snprintf(err->msg, sizeof err->msg, __VA_ARGS__);                    \
        ffi_release(e);                                                      \
        return NULL;                                                         \
    } while (0)

static void *ffi_bind(void *user, const rl_recipe_extern *xi, const char *recipe_file, rl_dtype dtype,
                      rl_recipe_extern_error *err) {
    (void)user;
    ffi_ext *e = NULL;
    char where[PATH_MAX * 3], why[1024];
    void *lib = open_lib(recipe_file, xi->lib, where, sizeof where, why, sizeof why);
    if (!lib) {
        if (why[0])
            BIND_FAIL(RL_EXTERN_AT_LIB, "is it built for this machine, with its dependencies installed?",
                      "cannot load '%s' for extern '%s': %.1000s", xi->lib, xi->name, why);
        BIND_FAIL(RL_EXTERN_AT_LIB,
                  "build the plug-in, or put its directory in RLHF_PLUGIN_DIR (a path relative to the "
                  "recipe's directory also works)",
                  "cannot find '%s' for extern '%s' (looked in: %.3000s)", xi->lib, xi->name, where);
    }
    e = calloc(1, sizeof(ffi_ext));
    if (!e) abort();
    e->x = xi;
    e->lib = lib;
    e->run_dt = dtype;
    void *f32 = sym(lib, xi->name, ""), *f64 = sym(lib, xi->name, "_f64");
    void *b32 = xi->backward ? sym(lib, xi->backward, "") : NULL;
    void *b64 = xi->backward ? sym(lib, xi->backward, "_f64") : NULL;
    if (!f32)
        BIND_FAIL(RL_EXTERN_AT_NAME,
                  f64 ? "the float variant NAME is required; NAME_f64 is only used in f64 runs (gradient checks)"
                      : "export it under this exact name (extern \"C\", not static); nm -D lists a library's functions",
                  "'%s' (%.3000s) has no function '%s'", xi->lib, where, xi->name);
    if (xi->backward && !b32)
        BIND_FAIL(RL_EXTERN_AT_BACKWARD, "export it, or drop 'backward' (the extern then carries no gradient)",
                  "'%s' has no function '%s' (the backward of extern '%s')", xi->lib, xi->backward, xi->name);
    /* a plug-in may describe its own functions:
     * const char NAME_signature[] = "(f32[N], f32) -> f32[N]"; */
    const char *sig = sym(lib, xi->name, "_signature");
    if (sig) {
        char decl[512], a[600], b[600];
        decl_text(xi, decl, sizeof decl);
        canon(decl, a, sizeof a);
        canon(sig, b, sizeof b);
        if (strcmp(a, b) != 0)
            BIND_FAIL(RL_EXTERN_AT_NAME, "make the declaration match the library's (dim names may differ)",
                      "extern '%s' is declared %s, but '%s' says its function takes %s", xi->name, decl,
                      xi->lib, sig);
    }
    /* f64 runs use the NAME_f64 variants when the library has all of them */
    e->f64 = dtype == RL_F64 && f64 && (!xi->backward || b64);
    e->convert = dtype == RL_F64 && !e->f64;
    e->fwd = e->f64 ? f64 : f32;
    e->bwd = xi->backward ? (e->f64 ? b64 : b32) : NULL;
    /* the signature's dims, in order of first appearance among the arguments */
    for (int i = 0; i < xi->n_params; i++)
        for (int d = 0; d < xi->params[i].ndim; d++) {
            const char *nm = xi->params[i].dims[d];
            if (!nm) continue;
            bool seen = false;
            for (int k = 0; k < e->n_dims; k++) seen |= strcmp(e->dims[k], nm) == 0;
            if (!seen && e->n_dims < MAX_DIMS_SIG) e->dims[e->n_dims++] = nm;
        }
    int na = arg_types(e, false, e->at_fwd);
    int nb = arg_types(e, true, e->at_bwd);
    if (ffi_prep_cif(&e->cif_fwd, FFI_DEFAULT_ABI, (unsigned)na, &ffi_type_sint32, e->at_fwd) != FFI_OK ||
        (e->bwd && ffi_prep_cif(&e->cif_bwd, FFI_DEFAULT_ABI, (unsigned)nb, &ffi_type_sint32, e->at_bwd) != FFI_OK))
        BIND_FAIL(RL_EXTERN_AT_NAME, NULL, "libffi cannot describe a call of extern '%s'", xi->name);
    for (int j = 0; j < xi->n_results; j++) {
        e->vctx[j] = (vjp_ctx){e, j};
        e->vjp[j] = (rl_foreign_fn){xi->name, ffi_vjp, &e->vctx[j]};
    }
    return e;
}
#undef BIND_FAIL

/* ---- calling ------------------------------------------------------------------------------------- */

/* Host copies of a call's tensors and the libffi argument list over them. */
typedef struct frame {
    int64_t dims[MAX_DIMS_SIG];
    void *buf[2 * RL_RECIPE_MAX_FN_PARAMS + 2 * RL_RECIPE_MAX_FN_RESULTS]; /* malloc'ed host arrays */
    int n_buf;
    union { float f; double d; int32_t i; } scal[RL_RECIPE_MAX_FN_PARAMS];
    void *ptr[MAX_ARGS];
    void *argv[MAX_ARGS];
    int argc;
} frame;

static void frame_free(frame *fr) {
    for (int i = 0; i < fr->n_buf; i++) free(fr->buf[i]);
}

static size_t fsize(const ffi_ext *e) { return e->f64 ? sizeof(double) : sizeof(float); }

/* A zeroed host array of n elements of size sz, owned by the frame. */
static void *frame_alloc(frame *fr, int64_t n, size_t sz) {
    void *b = calloc((size_t)(n > 0 ? n : 1), sz);
    if (!b) return NULL;
    fr->buf[fr->n_buf++] = b;
    return b;
}

static void push_ptr(frame *fr, void *p) {
    fr->ptr[fr->argc] = p;
    fr->argv[fr->argc] = &fr->ptr[fr->argc];
    fr->argc++;
}

/* Reads tensor t (the run's dtype, or i32) into a host array of the
 * library's element type. */
static void *host_copy(rl_ctx *ctx, const ffi_ext *e, frame *fr, const rl_tensor *t) {
    size_t es = t->dtype == RL_I32 ? sizeof(int32_t) : fsize(e);
    size_t raw = rl_dtype_size(t->dtype);
    void *b = frame_alloc(fr, t->numel, es > raw ? es : raw);
    if (!b) return NULL;
    if (rl_tensor_read(ctx, t, b, (size_t)t->numel * raw) != RL_OK) return NULL;
    if (t->dtype == RL_F64 && !e->f64) { /* in place: floats are narrower */
        double *d = b;
        float *f = b;
        for (int64_t i = 0; i < t->numel; i++) f[i] = (float)d[i];
    }
    return b;
}

/* A tensor of the run dtype (or i32) from a host array of the library's type. */
static rl_tensor *from_host(rl_ctx *ctx, const ffi_ext *e, bool is_int, int ndim, const int64_t *shape, void *b) {
    if (is_int) return rl_const(ctx, RL_I32, ndim, shape, b);
    if (!e->convert) return rl_const(ctx, e->run_dt, ndim, shape, b);
    int64_t n = rl_shape_numel(ndim, shape);
    double *d = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
    if (!d) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory");
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) d[i] = ((float *)b)[i];
    rl_tensor *t = rl_const(ctx, RL_F64, ndim, shape, d);
    free(d);
    return t;
}

/* Writes a host array of the library's type into t (the run's float dtype). */
static rl_status write_host(rl_ctx *ctx, const ffi_ext *e, rl_tensor *t, void *b) {
    if (!e->convert) return rl_tensor_write(ctx, t, b, (size_t)t->numel * rl_dtype_size(t->dtype));
    double *d = malloc(sizeof(double) * (size_t)(t->numel > 0 ? t->numel : 1));
    if (!d) return rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory");
    for (int64_t i = 0; i < t->numel; i++) d[i] = ((float *)b)[i];
    rl_status st = rl_tensor_write(ctx, t, d, sizeof(double) * (size_t)t->numel);
    free(d);
    return st;
}

/* Binds the signature's dims from the arguments (they may differ from the
 * shape check's: this is real data) and checks every argument. */
static rl_status bind_dims(rl_ctx *ctx, const ffi_ext *e, rl_tensor *const *args, int64_t *dims) {
    const rl_recipe_extern *x = e->x;
    int from[MAX_DIMS_SIG];
    for (int d = 0; d < e->n_dims; d++) dims[d] = -1, from[d] = -1;
    for (int i = 0; i < x->n_params; i++) {
        const rl_recipe_type *ty = &x->params[i];
        const rl_tensor *t = args[i];
        bool ok = t->ndim == ty->ndim;
        const char *bad = NULL;
        int bad_from = -1;
        int64_t bad_v = 0;
        for (int k = 0; ok && k < ty->ndim; k++) {
            if (!ty->dims[k]) {
                ok = t->shape[k] == ty->sizes[k];
                continue;
            }
            for (int d = 0; d < e->n_dims; d++) {
                if (strcmp(e->dims[d], ty->dims[k]) != 0) continue;
                if (dims[d] < 0) dims[d] = t->shape[k], from[d] = i;
                else if (dims[d] != t->shape[k]) ok = false, bad = e->dims[d], bad_from = from[d], bad_v = dims[d];
            }
        }
        if (!ok) {
            char have[96], want[96], also[160] = "";
            rl_tensor_describe(t, have, sizeof have);
            type_text(ty, want, sizeof want);
            if (bad)
                snprintf(also, sizeof also, " (%s = %lld from argument %d)", bad, (long long)bad_v, bad_from + 1);
            return rl_ctx_fail(ctx, RL_ERR_ARG, "argument %d of extern '%s' is %s, but its declaration says %s%s", i + 1,
                               x->name, have, want, also);
        }
    }
    return RL_OK;
}

static void result_shape(const ffi_ext *e, int j, const int64_t *dims, int64_t *shape) {
    const rl_recipe_type *ty = &e->x->results[j];
    for (int k = 0; k < ty->ndim; k++) {
        shape[k] = ty->sizes[k];
        for (int d = 0; ty->dims[k] && d < e->n_dims; d++)
            if (strcmp(e->dims[d], ty->dims[k]) == 0) shape[k] = dims[d];
    }
}

/* The arguments every call starts with: the dims, then the inputs. */
static rl_status push_inputs(rl_ctx *ctx, const ffi_ext *e, frame *fr, rl_tensor *const *args) {
    const rl_recipe_extern *x = e->x;
    for (int d = 0; d < e->n_dims; d++) fr->argv[fr->argc++] = &fr->dims[d];
    for (int i = 0; i < x->n_params; i++) {
        const rl_tensor *t = args[i];
        if (x->params[i].ndim == 0) { /* by value */
            double v = rl_tensor_get(ctx, t, 0);
            if (x->params[i].is_int) fr->scal[i].i = (int32_t)v;
            else if (e->f64) fr->scal[i].d = v;
            else fr->scal[i].f = (float)v;
            fr->argv[fr->argc++] = &fr->scal[i];
            continue;
        }
        void *b = host_copy(ctx, e, fr, t);
        if (!b) return rl_ctx_status(ctx) ? rl_ctx_status(ctx) : rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory");
        push_ptr(fr, b);
    }
    return RL_OK;
}

static rl_status check_rc(rl_ctx *ctx, const ffi_ext *e, ffi_arg rc, bool bwd) {
    int32_t v = (int32_t)rc;
    if (v == 0) return RL_OK;
    const rl_recipe_extern *x = e->x;
    return rl_ctx_fail(ctx, RL_ERR_STATE, "extern '%s': %s() in %s returned %d (0 means success)", x->name,
                       bwd ? x->backward : x->name, x->lib, (int)v);
}

static rl_status ffi_call_extern(void *handle, const rl_recipe_extern *ext, const rl_recipe_call *call,
                                 rl_recipe_value *out) {
    rl_ctx *ctx = call->ctx;
    ffi_ext *e = handle;
    rl_tensor *args[RL_RECIPE_MAX_FN_PARAMS];
    for (int i = 0; i < ext->n_params; i++) args[i] = call->args[i].t;
    frame fr;
    memset(&fr, 0, sizeof fr);
    rl_status st = bind_dims(ctx, e, args, fr.dims);
    if (!st) st = push_inputs(ctx, e, &fr, args);
    int64_t shapes[RL_RECIPE_MAX_FN_RESULTS][RL_MAX_DIMS];
    void *res[RL_RECIPE_MAX_FN_RESULTS] = {0};
    for (int j = 0; !st && j < ext->n_results; j++) {
        result_shape(e, j, fr.dims, shapes[j]);
        res[j] = frame_alloc(&fr, rl_shape_numel(ext->results[j].ndim, shapes[j]),
                             ext->results[j].is_int ? sizeof(int32_t) : fsize(e));
        if (!res[j]) st = rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory");
        else push_ptr(&fr, res[j]);
    }
    if (!st) {
        ffi_arg rc = 0;
        ffi_call(&e->cif_fwd, FFI_FN(e->fwd), &rc, fr.argv);
        st = check_rc(ctx, e, rc, false);
    }
    bool grad = false;
    if (!st && e->bwd && rl_ctx_grad_enabled(ctx))
        for (int i = 0; i < ext->n_params; i++)
            if (!ext->params[i].is_int && (args[i]->flags & RL_TF_REQUIRES_GRAD)) grad = true;
    for (int j = 0; !st && j < ext->n_results; j++) {
        out[j].kind = RL_RV_TENSOR;
        out[j].t = from_host(ctx, e, ext->results[j].is_int, ext->results[j].ndim, shapes[j], res[j]);
        if (!out[j].t) st = rl_ctx_status(ctx);
        else if (grad && !ext->results[j].is_int)
            if (!(out[j].t = rl_foreign(ctx, &e->vjp[j], ext->n_params, args, out[j].t))) st = rl_ctx_status(ctx);
    }
    frame_free(&fr);
    return st;
}

/* The backward of one float result: the plug-in's backward with that
 * result's gradient and zeros for the others. */
static rl_status ffi_vjp(rl_ctx *ctx, void *user, int n_in, rl_tensor *const *in, const rl_tensor *dout,
                         rl_tensor **din) {
    const vjp_ctx *v = user;
    ffi_ext *e = v->e;
    const rl_recipe_extern *x = e->x;
    (void)n_in;
    frame fr;
    memset(&fr, 0, sizeof fr);
    rl_status st = bind_dims(ctx, e, in, fr.dims);
    if (!st) st = push_inputs(ctx, e, &fr, in);
    for (int j = 0; !st && j < x->n_results; j++) {
        if (x->results[j].is_int) continue;
        int64_t shape[RL_MAX_DIMS];
        result_shape(e, j, fr.dims, shape);
        void *b = j == v->result ? host_copy(ctx, e, &fr, dout)
                                 : frame_alloc(&fr, rl_shape_numel(x->results[j].ndim, shape), fsize(e));
        if (!b) st = rl_ctx_status(ctx) ? rl_ctx_status(ctx) : rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory");
        else push_ptr(&fr, b);
    }
    void *dp[RL_RECIPE_MAX_FN_PARAMS] = {0};
    for (int i = 0; !st && i < x->n_params; i++) {
        if (x->params[i].is_int) continue;
        dp[i] = frame_alloc(&fr, in[i]->numel, fsize(e));
        if (!dp[i]) st = rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory");
        else push_ptr(&fr, dp[i]);
    }
    if (!st) {
        ffi_arg rc = 0;
        ffi_call(&e->cif_bwd, FFI_FN(e->bwd), &rc, fr.argv);
        st = check_rc(ctx, e, rc, true);
    }
    for (int i = 0; !st && i < x->n_params; i++)
        if (din[i] && dp[i]) st = write_host(ctx, e, din[i], dp[i]);
    frame_free(&fr);
    return st;
}

const rl_recipe_extern_bridge *rl_recipe_ffi_bridge(void) {
    static const rl_recipe_extern_bridge bridge = {ffi_bind, ffi_call_extern, ffi_release, NULL};
    return &bridge;
}
