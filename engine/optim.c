/* engine/optim.c - optimizers (AdamW, SGD), global-norm gradient clipping and
 * learning-rate schedules (API and formulas in engine/rl_optim.h).
 *
 * Every touch of parameter, gradient and state memory goes through one
 * function, rl_optim_apply(), which takes a batch of per-tensor updates
 * (the shape of a "multi-tensor apply"). It runs host loops for the CPU
 * backend and refuses other backends with a message naming them, so a CUDA
 * backend can later replace that one function without touching the rest.
 */
#include "rl_optim.h"

#include "rl_internal.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_PI 3.14159265358979323846

/* ---- the one place that touches tensor memory ------------------------------ */

typedef enum {
    RL_UPD_ADAMW, /* p, g, s0 = m, s1 = v */
    RL_UPD_SGD,   /* p, g, s0 = momentum buffer or NULL */
    RL_UPD_SUMSQ, /* g: result = sum of g^2 */
    RL_UPD_SCALE, /* g *= scale */
} rl_upd_kind;

typedef struct rl_upd {
    rl_upd_kind kind;
    rl_tensor *p, *g, *s0, *s1;
    double lr, wd;
    double beta1, beta2, eps, bc1, bc2; /* AdamW; bc = 1 - beta^t */
    double momentum;                    /* SGD */
    int nesterov;
    double scale;                       /* SCALE */
    double result;                      /* SUMSQ (output) */
} rl_upd;

/* Each loop reads in the tensor's type and computes in double, so f32
 * parameters get one rounding per stored value and f64 ones lose nothing. */
#define RL_ADAMW_LOOP(T)                                                            \
    do {                                                                            \
        T *p = u->p->data, *m = u->s0->data, *v = u->s1->data;                      \
        const T *g = u->g->data;                                                    \
        const double decay = 1.0 - u->lr * u->wd;                                   \
        for (int64_t i = 0; i < u->p->numel; i++) {                                 \
            double gi = g[i];                                                       \
            double mi = u->beta1 * (double)m[i] + (1.0 - u->beta1) * gi;            \
            double vi = u->beta2 * (double)v[i] + (1.0 - u->beta2) * gi * gi;       \
            double pi = (double)p[i] * decay;                                       \
            pi -= u->lr * (mi / u->bc1) / (sqrt(vi / u->bc2) + u->eps);             \
            m[i] = (T)mi;                                                           \
            v[i] = (T)vi;                                                           \
            p[i] = (T)pi;                                                           \
        }                                                                           \
    } while (0)

/* The f32 AdamW loop above as a function over a range, compiled for
 * SSE2 (the baseline), AVX2 and AVX-512F and picked at run time (as
 * ops/cpu/vec.c does), and split across the OpenMP threads for large
 * tensors. The arithmetic is RL_ADAMW_LOOP's, operation for operation, in
 * double (same bits on every path: no FMA contraction in ISO C mode, and
 * the pragma below for clang): it only runs wider and on more cores.
 * Measured on the gpt2 preset (124M parameters, 2-core AMD EPYC): 443 ms
 * per step before, see tools/bench_model.sh for the current figure. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

typedef struct rl_adamw_k {
    double b1, b2, lr, bc1, bc2, eps, decay;
} rl_adamw_k;

#define RL_ADAMW_F32_DEFINE(SFX, ATTR)                                                   \
    ATTR static void rl_adamw_f32_##SFX(float *p, const float *g, float *m, float *v,   \
                                        int64_t n, const rl_adamw_k *k) {               \
        const double b1 = k->b1, b2 = k->b2, lr = k->lr, bc1 = k->bc1, bc2 = k->bc2;    \
        const double eps = k->eps, decay = k->decay;                                   \
        const double c1 = 1.0 - b1, c2 = 1.0 - b2;                                     \
        for (int64_t i = 0; i < n; i++) {                                              \
            double gi = g[i];                                                          \
            double mi = b1 * (double)m[i] + c1 * gi;                                   \
            double vi = b2 * (double)v[i] + c2 * gi * gi;                              \
            double pi = (double)p[i] * decay;                                          \
            pi -= lr * (mi / bc1) / (sqrt(vi / bc2) + eps);                            \
            m[i] = (float)mi;                                                          \
            v[i] = (float)vi;                                                          \
            p[i] = (float)pi;                                                          \
        }                                                                              \
    }

RL_ADAMW_F32_DEFINE(base, )
#if defined(__x86_64__) || defined(__i386__)
RL_ADAMW_F32_DEFINE(avx2, __attribute__((target("avx2"))))
RL_ADAMW_F32_DEFINE(avx512, __attribute__((target("avx512f"))))
#endif

static void rl_adamw_f32_range(float *p, const float *g, float *m, float *v, int64_t n,
                               const rl_adamw_k *k) {
#if defined(__x86_64__) || defined(__i386__)
    if (__builtin_cpu_supports("avx512f")) {
        rl_adamw_f32_avx512(p, g, m, v, n, k);
        return;
    }
    if (__builtin_cpu_supports("avx2")) {
        rl_adamw_f32_avx2(p, g, m, v, n, k);
        return;
    }
#endif
    rl_adamw_f32_base(p, g, m, v, n, k);
}

/* Tensors below this many elements are updated by one thread (waking the
 * others costs more than the update). */
#define RL_OPTIM_PAR_MIN 65536

static void rl_adamw_f32(const rl_upd *u) {
    rl_adamw_k k = {u->beta1, u->beta2, u->lr, u->bc1, u->bc2, u->eps, 1.0 - u->lr * u->wd};
    float *p = u->p->data, *m = u->s0->data, *v = u->s1->data;
    const float *g = u->g->data;
    const int64_t n = u->p->numel;
    if (n < RL_OPTIM_PAR_MIN) {
        rl_adamw_f32_range(p, g, m, v, n, &k);
        return;
    }
#pragma omp parallel
    {
        const int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t per = (n + nt - 1) / nt;
        per = (per + 15) & ~(int64_t)15; /* whole vectors per thread */
        const int64_t lo = t * per < n ? t * per : n, hi = lo + per < n ? lo + per : n;
        if (hi > lo) rl_adamw_f32_range(p + lo, g + lo, m + lo, v + lo, hi - lo, &k);
    }
}

#define RL_SGD_LOOP(T)                                                              \
    do {                                                                            \
        T *p = u->p->data, *buf = u->s0 ? u->s0->data : NULL;                       \
        const T *g = u->g->data;                                                    \
        for (int64_t i = 0; i < u->p->numel; i++) {                                 \
            double d = (double)g[i] + u->wd * (double)p[i];                         \
            if (buf) {                                                              \
                double b = u->momentum * (double)buf[i] + d;                        \
                buf[i] = (T)b;                                                      \
                d = u->nesterov ? d + u->momentum * b : b;                          \
            }                                                                       \
            p[i] = (T)((double)p[i] - u->lr * d);                                   \
        }                                                                           \
    } while (0)

#define RL_SUMSQ_LOOP(T)                                                            \
    do {                                                                            \
        const T *g = u->g->data;                                                    \
        double s = 0.0;                                                             \
        for (int64_t i = 0; i < u->g->numel; i++) s += (double)g[i] * (double)g[i]; \
        u->result = s;                                                              \
    } while (0)

#define RL_SCALE_LOOP(T)                                                            \
    do {                                                                            \
        T *g = u->g->data;                                                          \
        for (int64_t i = 0; i < u->g->numel; i++) g[i] = (T)((double)g[i] * u->scale); \
    } while (0)

static bool rl_upd_on_host(rl_ctx *ctx, const char *who, const rl_tensor *t) {
    if (!t) return true;
    const char *be = t->backend && t->backend->iface ? t->backend->iface->name : "(none)";
    if (strcmp(be, "cpu") != 0) {
        rl_ctx_fail(ctx, RL_ERR_BACKEND,
                    "%s: tensor '%s' is on the '%s' backend; optimizer updates and gradient "
                    "clipping run on host memory (the cpu backend) only: the '%s' backend "
                    "needs its own rl_optim_apply",
                    who, t->name[0] ? t->name : "unnamed", be, be);
        return false;
    }
    return true;
}

/* Runs n updates. Checks every tensor first so a refusal changes nothing. */
static rl_status rl_optim_apply(rl_ctx *ctx, const char *who, rl_upd *upd, int n) {
    for (int k = 0; k < n; k++) {
        const rl_upd *u = &upd[k];
        if (!rl_upd_on_host(ctx, who, u->p) || !rl_upd_on_host(ctx, who, u->g) ||
            !rl_upd_on_host(ctx, who, u->s0) || !rl_upd_on_host(ctx, who, u->s1))
            return rl_ctx_status(ctx);
    }
    for (int k = 0; k < n; k++) {
        rl_upd *u = &upd[k];
        bool f32 = u->g->dtype == RL_F32;
        switch (u->kind) {
        case RL_UPD_ADAMW:
            if (f32) rl_adamw_f32(u); else RL_ADAMW_LOOP(double);
            break;
        case RL_UPD_SGD:
            if (f32) RL_SGD_LOOP(float); else RL_SGD_LOOP(double);
            break;
        case RL_UPD_SUMSQ:
            if (f32) RL_SUMSQ_LOOP(float); else RL_SUMSQ_LOOP(double);
            break;
        case RL_UPD_SCALE:
            if (f32) RL_SCALE_LOOP(float); else RL_SCALE_LOOP(double);
            break;
        }
    }
    return RL_OK;
}

/* ---- argument checks ----------------------------------------------------------- */

/* Checks a parameter list: live RL_TF_PARAM tensors of a float dtype whose
 * .grad matches them; with check_dups, each at most once (quadratic, so done
 * when the list is given, not at every step). */
static bool rl_optim_check_params(rl_ctx *ctx, const char *who, rl_tensor **params, int n,
                                  bool check_dups) {
    if (!params) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: the parameter array is NULL; pass an array of n "
                                     "tensors made with rl_param_new", who);
        return false;
    }
    if (n <= 0) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: n is %d; pass at least one parameter", who, n);
        return false;
    }
    for (int i = 0; i < n; i++) {
        const rl_tensor *p = params[i];
        char d[96], dg[96];
        if (!p) {
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "%s: params[%d] is NULL (was it created? rl_param_new returns NULL on "
                        "error)", who, i);
            return false;
        }
        if (p->magic != RL_TENSOR_MAGIC) {
            rl_ctx_fail(ctx, RL_ERR_STATE,
                        "%s: params[%d] is not a live tensor (freed, or not a tensor at all)", who, i);
            return false;
        }
        const char *name = p->name[0] ? p->name : "unnamed";
        if (!(p->flags & RL_TF_PARAM)) {
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "%s: params[%d] ('%s', %s) is not a parameter: it is %s; create "
                        "trainable tensors with rl_param_new",
                        who, i, name, rl_tensor_describe(p, d, sizeof d),
                        (p->flags & RL_TF_PERSISTENT)
                            ? "a persistent tensor without RL_TF_PARAM"
                            : "an arena tensor (a constant or an op output, gone at rl_ctx_reset)");
            return false;
        }
        if (!rl_dtype_is_float(p->dtype)) {
            rl_ctx_fail(ctx, RL_ERR_ARG, "%s: params[%d] ('%s') is %s; parameters must be f32 or f64",
                        who, i, name, rl_dtype_name(p->dtype));
            return false;
        }
        if (!p->grad || p->grad->magic != RL_TENSOR_MAGIC) {
            rl_ctx_fail(ctx, RL_ERR_STATE, "%s: params[%d] ('%s') has no live .grad", who, i, name);
            return false;
        }
        if (p->grad->dtype != p->dtype ||
            !rl_shape_equal(p->grad->ndim, p->grad->shape, p->ndim, p->shape)) {
            rl_ctx_fail(ctx, RL_ERR_STATE,
                        "%s: params[%d] ('%s') is %s but its .grad is %s; the gradient must "
                        "match the parameter's dtype and shape",
                        who, i, name, rl_tensor_describe(p, d, sizeof d),
                        rl_tensor_describe(p->grad, dg, sizeof dg));
            return false;
        }
        if (check_dups)
            for (int j = 0; j < i; j++)
                if (params[j] == p) {
                    rl_ctx_fail(ctx, RL_ERR_ARG,
                                "%s: params[%d] and params[%d] are the same tensor ('%s'); each "
                                "parameter may appear once (it would be updated twice)",
                                who, j, i, name);
                    return false;
                }
    }
    return true;
}

static bool rl_check_range(rl_ctx *ctx, const char *who, const char *what, double v, double lo,
                           bool lo_open, double hi, bool hi_open) {
    bool ok = isfinite(v) && (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
    if (!ok)
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: %s is %g; it must be in %c%g, %g%c", who, what, v,
                    lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']');
    return ok;
}

/* ---- optimizers --------------------------------------------------------------- */

typedef enum { RL_OPTIM_ADAMW, RL_OPTIM_SGD } rl_optim_type;

struct rl_optim {
    rl_ctx *ctx;
    rl_optim_type type;
    int n;
    rl_tensor **params;
    double *wd;          /* per-parameter weight decay */
    int n_state;         /* state tensors per parameter */
    rl_tensor **state;   /* [n][n_state] */
    rl_upd *upd;         /* [n], reused by every step: no allocation per step */
    int64_t step;
    rl_adamw_cfg adamw;
    rl_sgd_cfg sgd;
};

rl_adamw_cfg rl_adamw_cfg_default(void) {
    return (rl_adamw_cfg){.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.0};
}

static const char *const rl_adamw_state_names[] = {"exp_avg", "exp_avg_sq"};
static const char *const rl_sgd_state_names[] = {"momentum_buffer"};

static rl_optim *rl_optim_create(rl_ctx *ctx, const char *who, rl_optim_type type,
                                 rl_tensor **params, int n, int n_state, double wd) {
    if (!rl_optim_check_params(ctx, who, params, n, true)) return NULL;
    rl_optim *o = calloc(1, sizeof(*o));
    if (o) {
        o->params = malloc((size_t)n * sizeof(*o->params));
        o->wd = malloc((size_t)n * sizeof(*o->wd));
        o->state = n_state ? calloc((size_t)n * (size_t)n_state, sizeof(*o->state)) : NULL;
        o->upd = calloc((size_t)n, sizeof(*o->upd));
    }
    if (!o || !o->params || !o->wd || (n_state && !o->state) || !o->upd) {
        if (o) {
            free(o->params);
            free(o->wd);
            free(o->state);
            free(o->upd);
            free(o);
        }
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "%s: out of memory for %d parameters", who, n);
        return NULL;
    }
    o->ctx = ctx;
    o->type = type;
    o->n = n;
    o->n_state = n_state;
    memcpy(o->params, params, (size_t)n * sizeof(*params));
    const char *const *names = type == RL_OPTIM_ADAMW ? rl_adamw_state_names : rl_sgd_state_names;
    for (int i = 0; i < n; i++) {
        rl_tensor *p = params[i];
        o->wd[i] = wd;
        for (int k = 0; k < n_state; k++) {
            rl_tensor *s = rl_tensor_new(ctx, p->dtype, p->ndim, p->shape, NULL);
            if (!s) {
                rl_optim_free(o);
                return NULL;
            }
            /* "exp_avg.w": readable in error messages and checkpoints */
            char nm[96];
            snprintf(nm, sizeof nm, "%s.%s", names[k], p->name);
            rl_tensor_set_name(s, nm); /* truncated to the name field */
            o->state[(size_t)i * (size_t)n_state + (size_t)k] = s;
        }
    }
    return o;
}

rl_optim *rl_optim_adamw_new(rl_ctx *ctx, rl_tensor **params, int n, const rl_adamw_cfg *cfg) {
    if (!ctx) return NULL;
    const char *who = "rl_optim_adamw_new";
    rl_adamw_cfg c = cfg ? *cfg : rl_adamw_cfg_default();
    if (!rl_check_range(ctx, who, "beta1", c.beta1, 0.0, false, 1.0, true) ||
        !rl_check_range(ctx, who, "beta2", c.beta2, 0.0, false, 1.0, true) ||
        !rl_check_range(ctx, who, "eps", c.eps, 0.0, false, INFINITY, true) ||
        !rl_check_range(ctx, who, "weight_decay", c.weight_decay, 0.0, false, INFINITY, true))
        return NULL;
    rl_optim *o = rl_optim_create(ctx, who, RL_OPTIM_ADAMW, params, n, 2, c.weight_decay);
    if (o) o->adamw = c;
    return o;
}

rl_optim *rl_optim_sgd_new(rl_ctx *ctx, rl_tensor **params, int n, const rl_sgd_cfg *cfg) {
    if (!ctx) return NULL;
    const char *who = "rl_optim_sgd_new";
    rl_sgd_cfg c = cfg ? *cfg : (rl_sgd_cfg){0};
    if (!rl_check_range(ctx, who, "momentum", c.momentum, 0.0, false, INFINITY, true) ||
        !rl_check_range(ctx, who, "weight_decay", c.weight_decay, 0.0, false, INFINITY, true))
        return NULL;
    if (c.nesterov && c.momentum <= 0.0) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: nesterov needs momentum > 0 (momentum is %g)", who,
                    c.momentum);
        return NULL;
    }
    rl_optim *o = rl_optim_create(ctx, who, RL_OPTIM_SGD, params, n, c.momentum > 0.0 ? 1 : 0,
                                  c.weight_decay);
    if (o) o->sgd = c;
    return o;
}

void rl_optim_free(rl_optim *o) {
    if (!o) return;
    if (o->state)
        for (int i = 0; i < o->n * o->n_state; i++) rl_tensor_free(o->ctx, o->state[i]);
    free(o->state);
    free(o->params);
    free(o->wd);
    free(o->upd);
    free(o);
}

rl_status rl_optim_step(rl_optim *o, double lr) {
    if (!o) return RL_ERR_ARG;
    rl_ctx *ctx = o->ctx;
    const char *who = "rl_optim_step";
    /* a failed forward/backward leaves partial gradients: do not apply them */
    if (rl_ctx_status(ctx)) return rl_ctx_status(ctx);
    if (!isfinite(lr) || lr < 0.0)
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "%s: lr is %g; it must be finite and >= 0 (rl_lr_schedule gives nan "
                           "for an invalid schedule or a negative step: see rl_lr_sched_check)",
                           who, lr);
    /* parameters may have been freed or had their gradient swapped since creation */
    if (!rl_optim_check_params(ctx, who, o->params, o->n, false)) return rl_ctx_status(ctx);
    int64_t t = o->step + 1;
    for (int i = 0; i < o->n; i++) {
        rl_upd *u = &o->upd[i];
        memset(u, 0, sizeof(*u));
        u->p = o->params[i];
        u->g = o->params[i]->grad;
        u->lr = lr;
        u->wd = o->wd[i];
        if (o->type == RL_OPTIM_ADAMW) {
            u->kind = RL_UPD_ADAMW;
            u->s0 = o->state[2 * i];
            u->s1 = o->state[2 * i + 1];
            u->beta1 = o->adamw.beta1;
            u->beta2 = o->adamw.beta2;
            u->eps = o->adamw.eps;
            u->bc1 = 1.0 - pow(o->adamw.beta1, (double)t);
            u->bc2 = 1.0 - pow(o->adamw.beta2, (double)t);
        } else {
            u->kind = RL_UPD_SGD;
            u->s0 = o->n_state ? o->state[i] : NULL;
            u->momentum = o->sgd.momentum;
            u->nesterov = o->sgd.nesterov;
        }
    }
    rl_status s = rl_optim_apply(ctx, who, o->upd, o->n);
    if (s == RL_OK) o->step = t;
    return s;
}

void rl_optim_zero_grad(rl_optim *o) {
    if (!o) return;
    for (int i = 0; i < o->n; i++) rl_tensor_zero_grad(o->ctx, o->params[i]);
}

rl_status rl_optim_set_weight_decay(rl_optim *o, int i, double wd) {
    if (!o) return RL_ERR_ARG;
    if (i < 0 || i >= o->n)
        return rl_ctx_fail(o->ctx, RL_ERR_ARG,
                           "rl_optim_set_weight_decay: parameter index %d is out of range [0, %d)",
                           i, o->n);
    if (!rl_check_range(o->ctx, "rl_optim_set_weight_decay", "weight_decay", wd, 0.0, false,
                        INFINITY, true))
        return RL_ERR_ARG;
    o->wd[i] = wd;
    return RL_OK;
}

const char *rl_optim_kind(const rl_optim *o) {
    if (!o) return NULL;
    return o->type == RL_OPTIM_ADAMW ? "adamw" : "sgd";
}

int rl_optim_n_params(const rl_optim *o) { return o ? o->n : 0; }

rl_tensor *rl_optim_param(const rl_optim *o, int i) {
    return (o && i >= 0 && i < o->n) ? o->params[i] : NULL;
}

int rl_optim_n_state(const rl_optim *o) { return o ? o->n_state : 0; }

const char *rl_optim_state_name(const rl_optim *o, int k) {
    if (!o || k < 0 || k >= o->n_state) return NULL;
    return o->type == RL_OPTIM_ADAMW ? rl_adamw_state_names[k] : rl_sgd_state_names[k];
}

rl_tensor *rl_optim_state(const rl_optim *o, int i, int k) {
    if (!o || i < 0 || i >= o->n || k < 0 || k >= o->n_state) return NULL;
    return o->state[(size_t)i * (size_t)o->n_state + (size_t)k];
}

int64_t rl_optim_step_count(const rl_optim *o) { return o ? o->step : 0; }

rl_status rl_optim_set_step_count(rl_optim *o, int64_t count) {
    if (!o) return RL_ERR_ARG;
    if (count < 0)
        return rl_ctx_fail(o->ctx, RL_ERR_ARG, "rl_optim_set_step_count: count is %lld; it must be >= 0",
                           (long long)count);
    o->step = count;
    return RL_OK;
}

/* ---- gradient clipping ----------------------------------------------------------- */

double rl_grad_clip_norm(rl_ctx *ctx, rl_tensor **params, int n, double max_norm) {
    const char *who = "rl_grad_clip_norm";
    if (!ctx) return -1.0;
    if (rl_ctx_status(ctx)) return -1.0;
    if (!rl_check_range(ctx, who, "max_norm", max_norm, 0.0, true, INFINITY, true)) return -1.0;
    if (!rl_optim_check_params(ctx, who, params, n, true)) return -1.0;
    rl_upd *upd = calloc((size_t)n, sizeof(*upd));
    if (!upd) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "%s: out of memory for %d parameters", who, n);
        return -1.0;
    }
    double norm = -1.0;
    for (int i = 0; i < n; i++) {
        upd[i].kind = RL_UPD_SUMSQ;
        upd[i].g = params[i]->grad;
    }
    if (rl_optim_apply(ctx, who, upd, n) == RL_OK) {
        double total = 0.0;
        for (int i = 0; i < n; i++) total += upd[i].result;
        norm = sqrt(total);
        if (isfinite(norm) && norm > max_norm) {
            double scale = max_norm / (norm + 1e-6);
            for (int i = 0; i < n; i++) {
                upd[i].kind = RL_UPD_SCALE;
                upd[i].scale = scale;
            }
            if (rl_optim_apply(ctx, who, upd, n) != RL_OK) norm = -1.0;
        }
    }
    free(upd);
    return norm;
}

/* ---- learning-rate schedules -------------------------------------------------------- */

rl_lr_sched rl_lr_constant(double lr) {
    return (rl_lr_sched){.kind = RL_LR_CONSTANT, .lr = lr, .min_lr = lr};
}

rl_lr_sched rl_lr_warmup_constant(double lr, int64_t warmup_steps) {
    return (rl_lr_sched){.kind = RL_LR_WARMUP_CONSTANT, .lr = lr, .min_lr = lr,
                         .warmup_steps = warmup_steps};
}

rl_lr_sched rl_lr_warmup_cosine(double lr, double min_lr, int64_t warmup_steps,
                                int64_t total_steps) {
    return (rl_lr_sched){.kind = RL_LR_WARMUP_COSINE, .lr = lr, .min_lr = min_lr,
                         .warmup_steps = warmup_steps, .total_steps = total_steps};
}

/* Why s is invalid, written into buf, or NULL when it is valid. */
static const char *rl_lr_sched_problem(const rl_lr_sched *s, char *buf, size_t n) {
    if (!s) return "the schedule is NULL";
    if (s->kind != RL_LR_CONSTANT && s->kind != RL_LR_WARMUP_CONSTANT &&
        s->kind != RL_LR_WARMUP_COSINE) {
        snprintf(buf, n, "unknown schedule kind %d", (int)s->kind);
        return buf;
    }
    if (!isfinite(s->lr) || s->lr < 0.0) {
        snprintf(buf, n, "lr is %g; it must be finite and >= 0", s->lr);
        return buf;
    }
    if (s->kind == RL_LR_CONSTANT) return NULL;
    if (s->warmup_steps < 0) {
        snprintf(buf, n, "warmup_steps is %lld; it must be >= 0", (long long)s->warmup_steps);
        return buf;
    }
    if (s->kind == RL_LR_WARMUP_COSINE) {
        if (!isfinite(s->min_lr) || s->min_lr < 0.0 || s->min_lr > s->lr) {
            snprintf(buf, n, "min_lr is %g; it must be in [0, lr = %g]", s->min_lr, s->lr);
            return buf;
        }
        if (s->total_steps <= s->warmup_steps) {
            snprintf(buf, n,
                     "total_steps (%lld) must be greater than warmup_steps (%lld): the cosine "
                     "decays over the steps in between",
                     (long long)s->total_steps, (long long)s->warmup_steps);
            return buf;
        }
    }
    return NULL;
}

rl_status rl_lr_sched_check(rl_ctx *ctx, const rl_lr_sched *s) {
    char buf[256];
    const char *why = rl_lr_sched_problem(s, buf, sizeof buf);
    if (!why) return RL_OK;
    if (ctx) rl_ctx_fail(ctx, RL_ERR_ARG, "learning-rate schedule: %s", why);
    return RL_ERR_ARG;
}

double rl_lr_schedule(const rl_lr_sched *s, int64_t k) {
    char buf[256];
    if (rl_lr_sched_problem(s, buf, sizeof buf) || k < 0) return NAN;
    if (s->kind == RL_LR_CONSTANT) return s->lr;
    int64_t w = s->warmup_steps;
    if (k < w) return s->lr * (double)(k + 1) / (double)w;
    if (s->kind == RL_LR_WARMUP_CONSTANT) return s->lr;
    if (k >= s->total_steps) return s->min_lr;
    double progress = (double)(k - w) / (double)(s->total_steps - w);
    return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(RL_PI * progress));
}
