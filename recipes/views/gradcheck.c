/* recipes/views/gradcheck.c - the gradient check of a whole recipe (see
 * rl_recipe_gradcheck.h for what is checked and why the setting avoids the
 * kinks of PPO's clipping): compile in f64, bind tiny GPT-2 models and random
 * data of the declared shapes, run the rollout once, then compare every
 * loss's tape gradient with central differences, tensor by tensor, through
 * engine/rl_gradcheck.h. The command line (`rlhf gradcheck RECIPE`) and the
 * tests call this one function, so they check the same thing.
 */
#include "rl_recipe_gradcheck.h"

#include "rl_file.h"

#include "rl_gradcheck.h"
#include "rl_model.h"
#include "recipe_int.h"
#include "rl_recipe_bind.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void rl_recipe_gc_opts_default(rl_recipe_gc_opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = 1;
    o->batch = 3;
    o->len = 6;
    o->gen_len = 6;
    o->model_elems = 6;
    o->perturb = 0.001;
    rl_gc_opts go;
    rl_gc_opts_default(&go);
    o->h = go.h;
    o->atol = go.atol;
    o->rtol = go.rtol;
}

static void set_msg(rl_recipe_gc_result *res, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_msg(rl_recipe_gc_result *res, const char *fmt, ...) {
    if (res->msg[0]) return; /* keep the first */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->msg, sizeof res->msg, fmt, ap);
    va_end(ap);
}

/* Everything the check allocates, freed in one place. */
typedef struct gc_state {
    rl_ctx *ctx;
    rl_recipe_program *p;
    rl_model **models;         /* per declared model */
    rl_tensor **owned;         /* input tensors */
    int n_owned, cap_owned;
    int64_t step0;             /* step() is held here */
    bool *only;                /* the instructions of the loss being checked */
    int loss;                  /* the loss being checked */
    char err[600];             /* a run-time failure inside the loss function */
} gc_state;

static void own(gc_state *s, rl_tensor *t) {
    rl_grow(&s->owned, &s->cap_owned, s->n_owned + 1, sizeof(rl_tensor *));
    s->owned[s->n_owned++] = t;
}

/* The size of a symbolic dim: B and T from the options, any other 4. */
static int64_t dim_size(const rl_recipe_gc_opts *o, const char *name) {
    if (strcmp(name, "B") == 0) return o->batch;
    if (strcmp(name, "T") == 0) return o->len;
    return 4;
}

static void shape_of(const rl_recipe_gc_opts *o, const rl_recipe_type *ty, int64_t *shape) {
    for (int k = 0; k < ty->ndim; k++) shape[k] = ty->dims[k] ? dim_size(o, ty->dims[k]) : ty->sizes[k];
}

/* A right-padded token batch: row lengths in [max(2, T - 2), T], a prompt of
 * at least one token, then a response (mask = 1) of at least one. */
static rl_status make_tokens(gc_state *s, rl_rng *rng, int64_t B, int64_t T, int64_t vocab,
                             rl_tensor **ids, rl_tensor **mask, rl_tensor **attn) {
    if (T < 2) return rl_ctx_fail(s->ctx, RL_ERR_ARG, "a token input needs T >= 2 (a prompt and a response)");
    size_t n = (size_t)(B * T);
    int32_t *hi = calloc(n + 1, sizeof(int32_t)), *hm = calloc(n + 1, sizeof(int32_t)),
            *ha = calloc(n + 1, sizeof(int32_t));
    rl_status st = RL_OK;
    if (!hi || !hm || !ha) {
        st = rl_ctx_fail(s->ctx, RL_ERR_MEMORY, "out of memory");
        goto done;
    }
    for (int64_t b = 0; b < B; b++) {
        int64_t lo = T - 2 < 2 ? 2 : T - 2;
        int64_t len = lo + (int64_t)(rl_rng_next(rng) % (uint64_t)(T - lo + 1));
        int64_t resp = 1 + (int64_t)(rl_rng_next(rng) % (uint64_t)(len - 1)); /* in [1, len - 1] */
        for (int64_t t = 0; t < T; t++) {
            size_t k = (size_t)(b * T + t);
            ha[k] = t < len;
            hm[k] = t < len && t >= resp;
            hi[k] = t < len ? (int32_t)(rl_rng_next(rng) % (uint64_t)vocab) : 0;
        }
    }
    int64_t shape[2] = {B, T};
    rl_tensor **out[3] = {ids, mask, attn};
    int32_t *src[3] = {hi, hm, ha};
    for (int k = 0; k < 3 && !st; k++) {
        *out[k] = rl_tensor_new(s->ctx, RL_I32, 2, shape, k == 0 ? "ids" : k == 1 ? "mask" : "attn");
        if (!*out[k]) {
            st = rl_ctx_status(s->ctx);
            break;
        }
        own(s, *out[k]);
        st = rl_tensor_write(s->ctx, *out[k], src[k], sizeof(int32_t) * n);
    }
done:
    free(hi), free(hm), free(ha);
    return st;
}

/* Binds every declared input to random data of its declared type. */
static rl_status bind_inputs(gc_state *s, const rl_recipe_gc_opts *o, rl_rng *rng, int64_t vocab) {
    rl_recipe_program *p = s->p;
    for (int i = 0; i < rl_recipe_n_inputs(p); i++) {
        const rl_recipe_input_info *in = rl_recipe_input_at(p, i);
        int64_t shape[RL_MAX_DIMS];
        shape_of(o, &in->type, shape);
        rl_status st;
        if (in->type.tokens) {
            rl_tensor *ids, *mask, *attn;
            st = make_tokens(s, rng, shape[0], shape[1], vocab, &ids, &mask, &attn);
            if (!st) st = rl_recipe_bind_tokens(p, in->name, ids, mask, attn);
        } else if (in->type.is_int) {
            rl_tensor *t = rl_tensor_new(s->ctx, RL_I32, in->type.ndim, shape, in->name);
            if (!t) return rl_ctx_status(s->ctx);
            own(s, t);
            for (int64_t e = 0; e < t->numel; e++) rl_tensor_set(s->ctx, t, e, rl_rng_next(rng) & 1 ? 1 : -1);
            st = rl_recipe_bind_tensor(p, in->name, t);
        } else {
            /* a persistent f64 tensor that requires a gradient: checked like a param */
            rl_tensor *t = rl_param_new(s->ctx, RL_F64, in->type.ndim, shape, in->name);
            if (!t) return rl_ctx_status(s->ctx);
            own(s, t);
            for (int64_t e = 0; e < t->numel; e++) rl_tensor_set(s->ctx, t, e, 2 * rl_rng_uniform(rng) - 1);
            st = rl_recipe_bind_tensor(p, in->name, t);
        }
        if (st) return st;
    }
    return RL_OK;
}

/* Does loss li's gradient reach input slot `slot`? The audit's rule
 * (audit.c), for inputs: loss-phase instructions pass gradients unless the
 * op has none (stop, comparisons) or the function is NOGRAD or a frozen
 * model's. */
static bool loss_reaches_input(const rl_recipe_program *p, int li, int slot) {
    bool *r = calloc((size_t)p->n_slots + 1, 1);
    if (!r) abort();
    r[slot] = true;
    for (int i = 0; i < p->n_ir; i++) {
        const rl_ir *in = &p->ir[i];
        if (in->phase != PH_LOSS) continue;
        bool passes = false;
        if (in->code == IR_OP) passes = !(rl_op_table[in->op].flags & OPF_NOGRAD);
        else if (in->code == IR_FN)
            passes = !(p->fnv[in->op]->flags & RL_RFN_NOGRAD) &&
                     !(in->model >= 0 && !p->models[in->model].info.trainable);
        if (!passes) continue;
        bool any = false;
        for (int a = 0; a < in->n_args; a++) any = any || r[in->args[a]];
        for (int k = 0; any && k < in->n_out; k++) r[in->out + k] = true;
    }
    bool hit = r[p->losses[li].slot];
    free(r);
    return hit;
}

/* Marks the instructions loss li depends on (its whole dataflow, gradient or
 * not), so that a check evaluates only what that loss needs: checking a
 * critic's loss need not run the policy. */
static void mark_loss(const rl_recipe_program *p, int li, bool *only) {
    memset(only, 0, (size_t)p->n_ir + 1);
    int *stack = malloc(sizeof(int) * ((size_t)p->n_ir + 1));
    if (!stack) abort();
    int top = 0, root = p->slots[p->losses[li].slot].ir;
    only[root] = true;
    stack[top++] = root;
    while (top) {
        const rl_ir *in = &p->ir[stack[--top]];
        for (int a = 0; a < in->n_args; a++) {
            int w = p->slots[in->args[a]].ir;
            if (!only[w]) only[w] = true, stack[top++] = w;
        }
    }
    free(stack);
}

static rl_tensor *loss_fn(rl_ctx *ctx, rl_tensor **in, void *user) {
    (void)in;
    gc_state *s = user;
    rl_recipe_set_step(s->p, s->step0); /* backward advanced it: step() stays put */
    if (rl_recipe_run_loss(s->p, ctx, -1, -1) != RL_OK) {
        const char *e = rl_recipe_program_error(s->p);
        snprintf(s->err, sizeof s->err, "%s", e ? e : "the loss failed");
        return NULL;
    }
    return rl_recipe_loss(s->p, s->loss);
}

/* One (loss, tensor) check: a line of output and the running totals. */
static void check_tensor(gc_state *s, const rl_recipe_gc_opts *o, rl_recipe_gc_result *res, int li,
                         rl_tensor *t, const char *label, int max_elems) {
    rl_gc_opts go;
    rl_gc_opts_default(&go);
    go.h = o->h;
    go.atol = o->atol;
    go.rtol = o->rtol;
    go.max_elems = max_elems;
    go.seed = o->seed * 1000003u + (uint64_t)res->n_tensors;
    go.verbose = o->verbose;
    rl_gc_result gr;
    s->loss = li;
    s->err[0] = 0;
    rl_tensor *in[1] = {t};
    mark_loss(s->p, li, s->only);
    s->p->only = s->only;
    /* stop(x) of a loss-phase x (KTO's z0) is a constant to the tape: the
     * differences must hold it at its value here too */
    s->p->stop_mode = 1;
    rl_tensor *base = loss_fn(s->ctx, NULL, s);
    rl_ctx_reset(s->ctx);
    s->p->stop_mode = 2;
    rl_status st = base ? rl_gradcheck_fn(s->ctx, loss_fn, s, 1, in, &go, &gr) : RL_ERR_STATE;
    if (!base) memset(&gr, 0, sizeof gr);
    s->p->stop_mode = 0;
    for (int i = 0; i < s->p->n_ir; i++) {
        rl_tensor_free(s->ctx, s->p->ir[i].stop_val);
        s->p->ir[i].stop_val = NULL;
    }
    s->p->only = NULL;
    rl_ctx_clear_error(s->ctx);
    const char *lname = rl_recipe_loss_at(s->p, li)->name;
    bool ok = st == RL_OK && gr.passed && gr.n_checked > 0;
    res->n_tensors++;
    res->n_elems += gr.n_checked;
    if (gr.max_abs > res->max_abs) res->max_abs = gr.max_abs;
    if (gr.max_rel > res->max_rel) res->max_rel = gr.max_rel;
    if (!ok) {
        res->n_failed++;
        set_msg(res, "loss '%s', %s: %s", lname, label,
                s->err[0] ? s->err : gr.msg[0] ? gr.msg : "no element was compared");
    }
    if (o->out) {
        fprintf(o->out, "  %-20s %-36s %5d   %9.2e %9.2e   %s\n", lname, label, gr.n_checked, gr.max_abs,
                gr.max_rel, ok ? "PASS" : "FAIL");
        if (!ok) fprintf(o->out, "      %s\n", s->err[0] ? s->err : gr.msg);
    }
}

/* Moves every trainable model's weights by N(0, sigma) (online recipes,
 * after the rollout: see the header). */
static void perturb_models(gc_state *s, rl_rng *rng, double sigma) {
    rl_recipe_program *p = s->p;
    for (int i = 0; i < rl_recipe_n_models(p); i++) {
        if (!rl_recipe_model_at(p, i)->trainable || !s->models[i]) continue;
        rl_model *m = s->models[i];
        for (int k = 0; k < m->n_tensors; k++) {
            rl_tensor *t = m->tensors[k];
            for (int64_t e = 0; e < t->numel; e++)
                rl_tensor_set(s->ctx, t, e, rl_tensor_get(s->ctx, t, e) + sigma * rl_rng_normal(rng));
        }
    }
}

/* ---- the batch-split check -------------------------------------------------------------------- */

/* The tensors loss li trains, in order: every tensor of its trainable
 * models, then its params. */
static int split_targets(gc_state *s, int li, rl_tensor **out, int cap) {
    rl_recipe_program *p = s->p;
    const rl_recipe_loss_info *l = rl_recipe_loss_at(p, li);
    int n = 0;
    for (int k = 0; k < l->n_trainables; k++) {
        for (int i = 0; i < rl_recipe_n_models(p); i++)
            if (strcmp(rl_recipe_model_at(p, i)->name, l->trainables[k]) == 0)
                for (int j = 0; j < s->models[i]->n_tensors && n < cap; j++) out[n++] = s->models[i]->tensors[j];
        for (int i = 0; i < rl_recipe_n_params(p); i++)
            if (strcmp(rl_recipe_param_at(p, i)->name, l->trainables[k]) == 0 && n < cap)
                out[n++] = rl_recipe_param_at(p, i)->tensor;
    }
    return n;
}

/* Runs loss li over rows [r0, r1) and adds w * its value and w * its
 * gradients (into acc, laid out tensor after tensor) to the totals. */
static rl_status split_accumulate(gc_state *s, int li, int64_t r0, int64_t r1, double w, rl_tensor **tg, int nt,
                                  double *loss, double *acc) {
    rl_ctx *ctx = s->ctx;
    for (int i = 0; i < nt; i++) rl_tensor_zero_grad(ctx, tg[i]);
    rl_recipe_set_step(s->p, s->step0);
    rl_status st = rl_recipe_run_loss(s->p, ctx, r0, r1);
    if (st) {
        const char *e = rl_recipe_program_error(s->p);
        snprintf(s->err, sizeof s->err, "%s", e ? e : rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "the loss failed");
        rl_ctx_reset(ctx);
        return st;
    }
    rl_tensor *v = rl_recipe_loss(s->p, li);
    *loss += w * rl_tensor_get(ctx, v, 0);
    if ((st = rl_backward(ctx, v)) != RL_OK) {
        snprintf(s->err, sizeof s->err, "backward: %s", rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "failed");
        rl_ctx_reset(ctx);
        return st;
    }
    int64_t k = 0;
    for (int i = 0; i < nt; i++)
        for (int64_t e = 0; e < tg[i]->numel; e++, k++)
            acc[k] += tg[i]->grad ? w * rl_tensor_get(ctx, tg[i]->grad, e) : 0;
    rl_ctx_reset(ctx);
    return RL_OK;
}

/* One loss, every micro-batch size m | B (m < B): a line per split. */
static rl_status split_check_loss(gc_state *s, const rl_recipe_gc_opts *o, rl_recipe_gc_result *res, int li) {
    rl_tensor *tg[512];
    int nt = split_targets(s, li, tg, 512);
    int64_t numel = 0;
    for (int i = 0; i < nt; i++) numel += tg[i]->numel;
    double *full = calloc((size_t)numel + 1, sizeof(double)), *part = calloc((size_t)numel + 1, sizeof(double));
    if (!full || !part) {
        free(full), free(part);
        return RL_ERR_MEMORY;
    }
    const char *lname = rl_recipe_loss_at(s->p, li)->name;
    const int64_t B = o->batch;
    double lf = 0;
    rl_status st = split_accumulate(s, li, -1, -1, 1.0, tg, nt, &lf, full);
    for (int64_t m = B - 1; !st && m >= 1; m--) {
        if (B % m) continue;
        const int64_t k = B / m;
        double lp = 0;
        memset(part, 0, sizeof(double) * (size_t)numel);
        for (int64_t i = 0; !st && i < k; i++) st = split_accumulate(s, li, i * m, (i + 1) * m, 1.0 / (double)k, tg, nt, &lp, part);
        if (st) break;
        double gmax = 0, gdiff = 0, gk = 0, gkmax = 0;
        for (int64_t e = 0; e < numel; e++) {
            gmax = fmax(gmax, fabs(full[e]));
            gdiff = fmax(gdiff, fabs(full[e] - part[e]));
            gk = fmax(gk, fabs(full[e] - (double)k * part[e]));
            gkmax = fmax(gkmax, fabs(full[e]));
        }
        const double tol = 1e-9;
        double lrel = fabs(lf - lp) / fmax(fabs(lf), 1e-300), grel = gdiff / fmax(gmax, 1e-300);
        bool same = fabs(lf - lp) <= tol * fmax(1.0, fabs(lf)) && gdiff <= tol * fmax(1.0, gmax);
        bool sum_like = !same && fabs(lf - (double)k * lp) <= tol * fmax(1.0, fabs(lf)) && gk <= tol * fmax(1.0, gkmax);
        res->n_splits++;
        res->n_split_dependent += !same;
        if (o->out) {
            char split[64];
            snprintf(split, sizeof split, "%lld x %lld rows", (long long)k, (long long)m);
            fprintf(o->out, "  %-20s %-16s loss %+.6e vs %+.6e  rel %.1e  grad rel %.1e  %s\n", lname, split, lp, lf,
                    lrel, grel, same ? "same" : "DEPENDS");
            if (!same)
                fprintf(o->out, "      %s\n",
                        sum_like ? "a sum over rows: micro-batches average it, so the accumulated loss and gradient "
                                   "are 1/k of the batch's; use a mean over rows (or scale by k)"
                                 : "the loss normalises by a batch statistic (a global token mean divides by each "
                                   "micro-batch's own token count; whitening, std or group statistics use each "
                                   "micro-batch's moments); per-row means (seq_masked_mean) do not depend on the split");
        }
    }
    if (st && o->out) fprintf(o->out, "  %-20s split check failed: %s\n", lname, s->err);
    if (st) set_msg(res, "loss '%s', split check: %s", lname, s->err);
    free(full);
    free(part);
    return st;
}

rl_status rl_recipe_gradcheck(rl_recipe *r, const rl_recipe_gc_opts *opts, rl_recipe_gc_result *res) {
    rl_recipe_gc_opts o;
    if (opts) o = *opts;
    else rl_recipe_gc_opts_default(&o);
    memset(res, 0, sizeof *res);
    if (!r) {
        set_msg(res, "no recipe");
        return RL_ERR_ARG;
    }
    if (o.batch < 1 || o.len < 2 || o.gen_len < 1 || o.model_elems < 1 || !(o.h > 0)) {
        set_msg(res, "bad options: batch %lld, len %lld, gen_len %lld, model_elems %d, h %g",
                (long long)o.batch, (long long)o.len, (long long)o.gen_len, o.model_elems, o.h);
        return RL_ERR_ARG;
    }
    double t0 = rl_now();
    gc_state s;
    memset(&s, 0, sizeof s);
    s.ctx = rl_ctx_new(NULL);
    if (!s.ctx) {
        set_msg(res, "cannot create a context");
        return RL_ERR_MEMORY;
    }
    rl_status st = RL_OK;
    int nm = 0;
    rl_recipe_model_env env;
    rl_recipe_model_env_init(&env, o.seed);
    /* GPT-2's model functions; user plug-ins are checked like any op */
    rl_recipe_opts ro = rl_recipe_opts_models(&env);
    ro.dtype = RL_F64;
    s.p = rl_recipe_compile(r, s.ctx, &ro);
    if (!s.p) {
        const rl_recipe_diag *d = rl_recipe_first_error(r);
        if (d) set_msg(res, "%s:%d:%d: error: %s", d->file, d->line, d->col, d->msg);
        else set_msg(res, "the recipe does not compile");
        st = RL_ERR_ARG;
        goto done;
    }
    rl_recipe_program *p = s.p;
    s.only = calloc((size_t)p->n_ir + 1, 1);
    if (!s.only) {
        st = RL_ERR_MEMORY;
        set_msg(res, "out of memory");
        goto done;
    }
    rl_rng rng;
    rl_rng_seed(&rng, o.seed ^ 0x9c0ffeeull);

    /* tiny models with room for the longest token input plus the rollout */
    rl_model_config cfg;
    if (rl_model_config_preset(o.preset ? o.preset : "tiny", &cfg) != RL_OK) {
        st = RL_ERR_ARG;
        set_msg(res, "unknown preset '%s' (%s)", o.preset, rl_model_preset_names());
        goto done;
    }
    int64_t tmax = 2;
    for (int i = 0; i < rl_recipe_n_inputs(p); i++) {
        const rl_recipe_input_info *in = rl_recipe_input_at(p, i);
        if (!in->type.tokens) continue;
        int64_t shape[RL_MAX_DIMS];
        shape_of(&o, &in->type, shape);
        if (shape[1] > tmax) tmax = shape[1];
    }
    rl_model_config_set_ctx(&cfg, tmax + o.gen_len);
    nm = rl_recipe_n_models(p);
    s.models = calloc((size_t)nm + 1, sizeof(rl_model *));
    if (!s.models) {
        st = RL_ERR_MEMORY;
        set_msg(res, "out of memory");
        goto done;
    }
    for (int i = 0; i < nm; i++) {
        const rl_recipe_model_info *mi = rl_recipe_model_at(p, i);
        rl_model_head k = mi->kind == RL_MODEL_SCORE ? RL_HEAD_SCORE
                        : mi->kind == RL_MODEL_VALUE ? RL_HEAD_VALUE : RL_HEAD_LM;
        s.models[i] = rl_model_new(s.ctx, &cfg, k, RL_F64, o.seed * 7919u + (uint64_t)i + 1);
        if (!s.models[i]) {
            st = rl_ctx_status(s.ctx);
            set_msg(res, "model '%s': %s", mi->name, rl_ctx_error(s.ctx) ? rl_ctx_error(s.ctx) : "failed");
            goto done;
        }
        rl_recipe_bind_model(p, mi->name, s.models[i]);
    }
    st = bind_inputs(&s, &o, &rng, rl_model_config_vocab(&cfg));
    if (st) {
        set_msg(res, "binding inputs: %s",
                rl_recipe_program_error(p) ? rl_recipe_program_error(p)
                : rl_ctx_error(s.ctx)      ? rl_ctx_error(s.ctx) : "failed");
        goto done;
    }
    bool online = rl_recipe_program_kind(p) == RL_RECIPE_ONLINE;
    if (online) {
        st = rl_recipe_run_rollout(p, s.ctx);
        if (st) {
            set_msg(res, "the rollout failed: %s", rl_recipe_program_error(p));
            goto done;
        }
        rl_ctx_reset(s.ctx);
        perturb_models(&s, &rng, o.perturb);
    }
    s.step0 = rl_recipe_step(p);

    if (o.out) {
        fprintf(o.out, "recipe %s (%s): float64 central differences, h %.0e, atol %.0e, rtol %.0e, seed %llu\n",
                rl_recipe_program_name(p), rl_recipe_kind_name(rl_recipe_program_kind(p)), o.h, o.atol, o.rtol,
                (unsigned long long)o.seed);
        if (nm)
            fprintf(o.out, "  %s f64 models (n_ctx %lld), B %lld, T %lld; %d sampled elements per model tensor%s\n",
                    o.preset ? o.preset : "tiny", (long long)rl_model_config_ctx(&cfg), (long long)o.batch, (long long)o.len, o.model_elems,
                    online ? "; rollout once, then trainable models perturbed" : "");
        fprintf(o.out, "  %-20s %-36s %5s   %9s %9s   %s\n", "loss", "tensor", "elems", "max abs", "max rel",
                "result");
    }
    /* each loss against the trainables it trains */
    for (int li = 0; li < rl_recipe_n_losses(p); li++) {
        const rl_recipe_loss_info *l = rl_recipe_loss_at(p, li);
        for (int k = 0; k < l->n_trainables; k++) {
            const char *tn = l->trainables[k];
            for (int i = 0; i < nm; i++) {
                if (strcmp(rl_recipe_model_at(p, i)->name, tn) != 0) continue;
                rl_model *m = s.models[i];
                for (int j = 0; j < m->n_tensors; j++) {
                    char label[160];
                    snprintf(label, sizeof label, "%s:%s", tn, m->tensors[j]->name);
                    check_tensor(&s, &o, res, li, m->tensors[j], label, o.model_elems);
                }
            }
            for (int i = 0; i < rl_recipe_n_params(p); i++) {
                const rl_recipe_param_info *pi = rl_recipe_param_at(p, i);
                if (strcmp(pi->name, tn) != 0) continue;
                char label[160];
                snprintf(label, sizeof label, "param %s", tn);
                int n = pi->tensor->numel > 1 << 20 ? 1 << 20 : (int)pi->tensor->numel;
                check_tensor(&s, &o, res, li, pi->tensor, label, n);
            }
        }
    }
    /* each loss against the float inputs its gradient reaches */
    for (int i = 0; i < p->n_inputs; i++) {
        const rl_input_decl *in = &p->inputs[i];
        if (in->info.type.tokens || in->info.type.is_int || !in->used) continue;
        rl_tensor *t = in->bound.t;
        for (int li = 0; li < p->n_losses; li++) {
            if (!loss_reaches_input(p, li, in->slot)) continue;
            char label[160];
            snprintf(label, sizeof label, "input %s", in->info.name);
            int n = t->numel > 1 << 20 ? 1 << 20 : (int)t->numel;
            check_tensor(&s, &o, res, li, t, label, n);
        }
    }
    if (res->n_tensors == 0) set_msg(res, "nothing to check: no loss reaches a trainable or a float input");
    if (o.splits) {
        if (o.out)
            fprintf(o.out, "batch split (B = %lld; micro-batches averaged with equal weights, as --minibatch):\n",
                    (long long)o.batch);
        for (int li = 0; li < p->n_losses && st == RL_OK; li++) st = split_check_loss(&s, &o, res, li);
        if (o.out && st == RL_OK)
            fprintf(o.out, "%s: %d splits, %d split-dependent\n", rl_recipe_program_name(p), res->n_splits,
                    res->n_split_dependent);
        if (st) goto done;
    }
    res->seconds = rl_now() - t0;
    if (o.out)
        fprintf(o.out, "%s: %d tensors, %d failed, %d elements; max abs err %.2e, max rel err %.2e; %.2f s: %s\n",
                rl_recipe_program_name(p), res->n_tensors, res->n_failed, res->n_elems, res->max_abs, res->max_rel,
                res->seconds, res->n_failed == 0 && res->n_tensors > 0 ? "PASS" : "FAIL");
    if (res->n_tensors == 0) res->n_failed = 1;
done:
    rl_recipe_program_free(s.p);
    for (int i = 0; s.models && i < nm; i++)
        if (s.models[i]) rl_model_free(s.ctx, s.models[i]);
    free(s.models);
    for (int i = 0; i < s.n_owned; i++) rl_tensor_free(s.ctx, s.owned[i]);
    free(s.owned);
    free(s.only);
    rl_ctx_free(s.ctx);
    res->seconds = rl_now() - t0;
    return st;
}
