/* recipes/lang/eval.c - runs a compiled recipe: one pass over the
 * instructions of a phase, calling ops through the op table (rl_op_call) and
 * the function tables, so that every value lands on the engine's tape exactly
 * as if the recipe had been written in C. The same code runs real steps and
 * the shape check (dryrun.c); in the check a failing instruction poisons its
 * results and the pass goes on, so independent statements are all checked.
 *
 * Rollout values are copied into persistent tensors as soon as they are
 * computed: generation resets the arena, and the loss block reads them for
 * several minibatches across rl_ctx_reset.
 */
#include "recipe_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The largest tensor the shape check makes (its sizes are small primes; a
 * recipe that asks for more is probably broadcasting by mistake). */
#define RL_DRY_MAX_NUMEL ((int64_t)1 << 22)

void rl_eval_describe(const rl_recipe_program *p, const rl_tensor *t, char *buf, size_t n) {
    (void)p;
    size_t k = (size_t)snprintf(buf, n, "%s [", t->dtype == RL_I32 ? "i32" : "f32");
    for (int i = 0; i < t->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)t->shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
}

/* Keeps a persistent copy of an arena tensor (owned by the program). */
static rl_tensor *keep(rl_recipe_program *p, rl_ctx *ctx, rl_tensor *t) {
    if (!t || (t->flags & RL_TF_PERSISTENT)) return t;
    rl_tensor *c = rl_tensor_clone(ctx, t, NULL);
    if (!c) return NULL;
    rl_grow(&p->kept, &p->cap_kept, p->n_kept + 1, sizeof(rl_tensor *));
    p->kept[p->n_kept++] = c;
    p->kept_ctx = ctx;
    return c;
}

static bool keep_value(rl_recipe_program *p, rl_ctx *ctx, rl_recipe_value *v) {
    if (v->kind == RL_RV_TENSOR) return (v->t = keep(p, ctx, v->t)) != NULL;
    if (v->kind == RL_RV_TOKENS) {
        v->tok.ids = keep(p, ctx, v->tok.ids);
        v->tok.mask = keep(p, ctx, v->tok.mask);
        v->tok.attn = keep(p, ctx, v->tok.attn);
        return v->tok.ids && v->tok.mask && v->tok.attn;
    }
    return true;
}

/* i32 -> the run's float dtype, through host memory (i32 data never needs a
 * gradient, so this is a plain data copy). */
static rl_tensor *convert(rl_recipe_program *p, rl_ctx *ctx, rl_tensor *x) {
    if (x->dtype != RL_I32) return x;
    size_t n = (size_t)x->numel;
    int32_t *h = malloc(sizeof(int32_t) * (n ? n : 1));
    void *o = malloc(rl_dtype_size(p->opts.dtype) * (n ? n : 1));
    if (!h || !o) {
        free(h), free(o);
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory converting a tensor of %zu elements", n);
        return NULL;
    }
    rl_tensor *r = NULL;
    if (rl_tensor_read(ctx, x, h, sizeof(int32_t) * n) == RL_OK) {
        for (size_t i = 0; i < n; i++) {
            if (p->opts.dtype == RL_F64) ((double *)o)[i] = h[i];
            else ((float *)o)[i] = (float)h[i];
        }
        r = rl_const(ctx, p->opts.dtype, x->ndim, x->shape, o);
    }
    free(h), free(o);
    return r;
}

/* Runs one engine op over tensors a through the op table's call column. */
static rl_tensor *run_op(rl_recipe_program *p, rl_ctx *ctx, const rl_ir *in, rl_tensor **a) {
    char d0[96], d1[96], d2[96];
    /* the broadcast message names the shapes as the recipe sees them */
    if (rl_op_table[in->op].flags & OPF_BROADCAST) {
        int nd, nd2;
        int64_t s1[RL_MAX_DIMS], s2[RL_MAX_DIMS];
        bool ok = rl_shape_broadcast(a[0]->ndim, a[0]->shape, a[1]->ndim, a[1]->shape, &nd, s1);
        if (ok && in->n_args == 3) ok = rl_shape_broadcast(nd, s1, a[2]->ndim, a[2]->shape, &nd2, s2);
        if (!ok) {
            rl_eval_describe(p, a[0], d0, sizeof d0);
            rl_eval_describe(p, a[1], d1, sizeof d1);
            if (in->n_args == 3) {
                rl_eval_describe(p, a[2], d2, sizeof d2);
                rl_ctx_fail(ctx, RL_ERR_ARG, "shapes %s, %s and %s do not broadcast", d0, d1, d2);
            } else {
                rl_ctx_fail(ctx, RL_ERR_ARG, "shapes %s and %s do not broadcast", d0, d1);
            }
            return NULL;
        }
    }
    if (p->dry) rl_ctx_set_max_numel(ctx, RL_DRY_MAX_NUMEL, "even with the check's small sizes");
    rl_tensor *r = rl_op_call(ctx, in->op, in->n_args, a, &in->at);
    if (p->dry) rl_ctx_set_max_numel(ctx, 0, NULL);
    return r;
}

static const rl_extern_decl *extern_of(const rl_recipe_program *p, const rl_recipe_fn *fn) {
    for (int i = 0; i < p->n_externs; i++)
        if (&p->externs[i]->fn == fn) return p->externs[i];
    return NULL;
}

/* The shape check's stand-in for an extern: matches the arguments' shapes
 * against the declared types (names bind on first use) and returns zeros of
 * the declared result shapes. */
static rl_status extern_dry(const rl_recipe_program *p, const rl_extern_decl *x,
                            const rl_recipe_call *call, rl_recipe_value *out) {
    rl_ctx *ctx = call->ctx;
    const char *names[RL_RECIPE_MAX_FN_PARAMS * RL_MAX_DIMS];
    int64_t sizes[RL_RECIPE_MAX_FN_PARAMS * RL_MAX_DIMS];
    int nb = 0;
    char d[96];
    for (int i = 0; i < x->info.n_params; i++) {
        const rl_recipe_type *ty = &x->info.params[i];
        const rl_tensor *t = call->args[i].t;
        bool ok = t->ndim == ty->ndim;
        for (int k = 0; ok && k < ty->ndim; k++) {
            if (!ty->dims[k]) {
                ok = t->shape[k] == ty->sizes[k];
                continue;
            }
            int b = -1;
            for (int j = 0; j < nb; j++)
                if (strcmp(names[j], ty->dims[k]) == 0) b = j;
            if (b < 0) names[nb] = ty->dims[k], sizes[nb++] = t->shape[k];
            else ok = sizes[b] == t->shape[k];
        }
        if (!ok) {
            char want[96];
            int k = snprintf(want, sizeof want, "%s [", ty->is_int ? "i32" : "f32");
            for (int j = 0; j < ty->ndim && k < (int)sizeof want; j++) {
                if (ty->dims[j]) k += snprintf(want + k, sizeof want - (size_t)k, j ? ", %s" : "%s", ty->dims[j]);
                else
                    k += snprintf(want + k, sizeof want - (size_t)k, j ? ", %lld" : "%lld",
                                  (long long)ty->sizes[j]);
            }
            if (k < (int)sizeof want) snprintf(want + k, sizeof want - (size_t)k, "]");
            rl_eval_describe(p, t, d, sizeof d);
            return rl_ctx_fail(ctx, RL_ERR_ARG, "argument %d of extern '%s' is %s, but its declaration says %s",
                               i + 1, x->info.name, d, want);
        }
    }
    for (int i = 0; i < x->info.n_results; i++) {
        const rl_recipe_type *ty = &x->info.results[i];
        int64_t shape[RL_MAX_DIMS];
        for (int k = 0; k < ty->ndim; k++) {
            shape[k] = ty->sizes[k];
            for (int j = 0; ty->dims[k] && j < nb; j++)
                if (strcmp(names[j], ty->dims[k]) == 0) shape[k] = sizes[j];
        }
        out[i].kind = RL_RV_TENSOR;
        out[i].t = rl_full(ctx, ty->is_int ? RL_I32 : p->opts.dtype, ty->ndim, shape, 0.0);
        if (!out[i].t) return rl_ctx_status(ctx);
    }
    return RL_OK;
}

/* Checks what a table function returned against its declaration. */
static rl_status check_results(rl_recipe_program *p, rl_ctx *ctx, const rl_recipe_fn *fn,
                               rl_recipe_value *out) {
    for (int k = 0; k < fn->n_results; k++) {
        rl_recipe_value *v = &out[k];
        if (fn->results[k] == RL_RR_TOKENS) {
            bool ok = v->kind == RL_RV_TOKENS && v->tok.ids && v->tok.mask && v->tok.attn &&
                      v->tok.ids->dtype == RL_I32 && v->tok.ids->ndim == 2;
            if (!ok)
                return rl_ctx_fail(ctx, RL_ERR_STATE, "%s returned no token batch (result %d)",
                                   fn->name, k + 1);
            continue;
        }
        rl_dtype want = fn->results[k] == RL_RR_INT ? RL_I32 : p->opts.dtype;
        if (v->kind != RL_RV_TENSOR || !v->t || v->t->dtype != want)
            return rl_ctx_fail(ctx, RL_ERR_STATE, "%s returned %s for result %d; %s was expected",
                               fn->name, v->kind == RL_RV_TENSOR && v->t ? rl_dtype_name(v->t->dtype) : "nothing",
                               k + 1, rl_dtype_name(want));
    }
    return RL_OK;
}

static rl_status run_fn(rl_recipe_program *p, rl_ctx *ctx, rl_ir *in) {
    const rl_recipe_fn *fn = p->fnv[in->op];
    rl_recipe_value args[RL_RECIPE_MAX_FN_PARAMS];
    for (int i = 0; i < fn->n_params; i++) args[i] = in->pslot[i] >= 0 ? p->vals[in->pslot[i]] : in->consts[i];
    /* a size given by a hyper (generate's n = G) is its dim's prime in the shape check */
    for (int i = 0; p->dry && in->dimarg && i < fn->n_params; i++)
        if (in->dimarg[i] >= 0) args[i].num = (double)p->dims[in->dimarg[i]].prime;
    rl_recipe_value out[RL_RECIPE_MAX_FN_RESULTS];
    memset(out, 0, sizeof out);
    rl_recipe_call call = {
        .ctx = ctx,
        .fn = fn,
        .args = args,
        .dry = p->dry,
        .dtype = p->opts.dtype,
        .dry_len = in->dry_len,
        .state = p->dry ? &in->dry_state : &in->state,
        .user = p->fnv_user[in->op],
    };
    /* frozen models run with gradients off: constants by construction */
    bool frozen = in->model >= 0 && !p->models[in->model].info.trainable;
    int was = rl_ctx_grad_enabled(ctx);
    if (frozen) rl_ctx_set_grad(ctx, 0);
    rl_status st;
    const rl_extern_decl *x = extern_of(p, fn);
    if (x) {
        if (p->dry) st = extern_dry(p, x, &call, out);
        else if (x->handle) st = p->opts.externs->call(x->handle, &x->info, &call, out);
        else
            st = rl_ctx_fail(ctx, RL_ERR_STATE,
                             "extern '%s' cannot be called: the recipe was compiled without an extern bridge "
                             "to load %s (opts.externs = rl_recipe_ffi_bridge())",
                             fn->name, x->info.lib);
    } else {
        st = fn->call(&call, out);
    }
    if (frozen) rl_ctx_set_grad(ctx, was);
    if (st == RL_OK && rl_ctx_status(ctx)) st = rl_ctx_status(ctx);
    if (st == RL_OK) st = check_results(p, ctx, fn, out);
    if (st != RL_OK) {
        if (!rl_ctx_status(ctx)) rl_ctx_fail(ctx, st, "%s failed", fn->name);
        return st;
    }
    for (int k = 0; k < fn->n_results; k++) p->vals[in->out + k] = out[k];
    return RL_OK;
}

static rl_status run_ir(rl_recipe_program *p, rl_ctx *ctx, rl_ir *in) {
    rl_recipe_value *o = &p->vals[in->out];
    switch (in->code) {
    case IR_INPUT: case IR_PARAM: case IR_MODEL: return RL_OK; /* leaves: filled by the caller */
    case IR_CONST:
        o->kind = RL_RV_TENSOR;
        o->t = rl_scalar(ctx, in->is_int ? RL_I32 : p->opts.dtype, in->num);
        break;
    case IR_FIELD: {
        const rl_recipe_value *tk = &p->vals[in->args[0]];
        rl_tensor *f = in->op == 0 ? tk->tok.ids : in->op == 1 ? tk->tok.mask : tk->tok.attn;
        if (!f && tk->tok.ids) f = rl_full(ctx, RL_I32, tk->tok.ids->ndim, tk->tok.ids->shape, 0);
        o->kind = RL_RV_TENSOR;
        o->t = f;
        break;
    }
    case IR_CONVERT:
        o->kind = RL_RV_TENSOR;
        o->t = convert(p, ctx, p->vals[in->args[0]].t);
        break;
    case IR_OP: {
        rl_tensor *a[16];
        for (int i = 0; i < in->n_args && i < 16; i++) a[i] = p->vals[in->args[i]].t;
        o->kind = RL_RV_TENSOR;
        if (p->stop_mode == 2 && in->op == RL_OP_STOP_GRADIENT && in->stop_val) {
            o->t = in->stop_val;
            break;
        }
        o->t = run_op(p, ctx, in, a);
        if (p->stop_mode == 1 && in->op == RL_OP_STOP_GRADIENT && o->t) {
            rl_tensor_free(ctx, in->stop_val);
            in->stop_val = rl_tensor_new(ctx, o->t->dtype, o->t->ndim, o->t->shape, "stop");
            size_t nb = rl_dtype_size(o->t->dtype) * (size_t)o->t->numel;
            void *buf = malloc(nb ? nb : 1);
            if (!in->stop_val || !buf || rl_tensor_read(ctx, o->t, buf, nb) || rl_tensor_write(ctx, in->stop_val, buf, nb))
                rl_ctx_fail(ctx, RL_ERR_MEMORY, "recording stop(): out of memory");
            free(buf);
        }
        break;
    }
    case IR_FN: return run_fn(p, ctx, in);
    }
    if (!o->t) {
        o->kind = RL_RV_NONE;
        return rl_ctx_status(ctx) ? rl_ctx_status(ctx) : RL_ERR_STATE;
    }
    return RL_OK;
}

rl_status rl_eval_phase(rl_recipe_program *p, rl_ctx *ctx, int phase, rl_eval_error_fn on_error,
                        void *user, int *failed_ir, char *msg, size_t msg_n) {
    /* the rollout never records; the loss block keeps the caller's setting
     * (on by default; a gradient check turns it off for its numeric side) */
    int was = rl_ctx_grad_enabled(ctx);
    if (phase == PH_ROLLOUT) rl_ctx_set_grad(ctx, 0);
    rl_status result = RL_OK;
    for (int i = 0; i < p->n_ir; i++) {
        rl_ir *in = &p->ir[i];
        if (in->phase != phase) continue;
        if (p->only && !p->only[i]) {
            for (int k = 0; k < in->n_out; k++) memset(&p->vals[in->out + k], 0, sizeof(rl_recipe_value));
            continue;
        }
        bool poisoned = false;
        for (int a = 0; a < in->n_args; a++)
            if (p->vals[in->args[a]].kind == RL_RV_NONE) poisoned = true;
        for (int k = 0; k < in->n_out; k++) memset(&p->vals[in->out + k], 0, sizeof(rl_recipe_value));
        if (poisoned) continue; /* only in the shape check: an earlier error */
        rl_status st = run_ir(p, ctx, in);
        if (st == RL_OK && phase == PH_ROLLOUT)
            for (int k = 0; k < in->n_out; k++)
                if (!keep_value(p, ctx, &p->vals[in->out + k])) st = rl_ctx_status(ctx);
        if (st != RL_OK) {
            const char *e = rl_ctx_error(ctx);
            char m[1024];
            snprintf(m, sizeof m, "%s", e ? e : "failed");
            rl_ctx_clear_error(ctx);
            for (int k = 0; k < in->n_out; k++) memset(&p->vals[in->out + k], 0, sizeof(rl_recipe_value));
            if (on_error) {
                on_error(p, i, m, user);
                continue;
            }
            if (failed_ir) *failed_ir = i;
            if (msg) snprintf(msg, msg_n, "%s", m);
            result = st;
            break;
        }
        if (p->dry) {
            for (int k = 0; k < in->n_out; k++) {
                rl_slot *s = &p->slots[in->out + k];
                const rl_recipe_value *v = &p->vals[in->out + k];
                const rl_tensor *t = v->kind == RL_RV_TENSOR ? v->t : v->kind == RL_RV_TOKENS ? v->tok.ids : NULL;
                if (!t) continue;
                char raw[96];
                rl_eval_describe(p, t, raw, sizeof raw);
                rl_dry_symbolize(p, raw, s->shape, sizeof s->shape);
                s->has_shape = true;
            }
        }
    }
    rl_ctx_set_grad(ctx, was);
    return result;
}
