/* recipes/lang/check.c - the checker and compiler, statement by statement: the
 * declarations (inputs, models and their optimizers, hypers with their --set
 * overrides, params, externs, fn functions), assignments, tuples, losses
 * and metrics, phases (rollout / loss), the recipe-level rules (a loss is
 * needed, online recipes need a rollout block) and the unused-name warnings.
 * Expressions are compiled by expr.c and calls.c into the flat instruction
 * list that eval.c runs. Shapes are not checked here: dryrun.c runs the
 * instructions on tiny data whose symbolic dims are distinct primes.
 *
 * Values are compile-time constants (numbers, strings), models, or run-time
 * slots (tensors, token batches).
 */
#include "check_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- declarations ------------------------------------------------------------------------------------- */

static rl_ent *define(rl_ck *c, const char *name, rl_span sp, int nk, rl_val v) {
    rl_grow(&c->ents, &c->cap_ents, c->n_ents + 1, sizeof(rl_ent));
    rl_ent *en = &c->ents[c->n_ents++];
    memset(en, 0, sizeof *en);
    en->name = name;
    en->sp = sp;
    en->nk = nk;
    en->v = v;
    en->phase = c->phase;
    en->stmt = c->stmt;
    for (int i = 0; i < c->n_early; i++)
        if (strcmp(c->early[i], name) == 0) en->used = true; /* already reported as too early */
    return en;
}

/* False (after an error) when name is already a value. */
static bool fresh_name(rl_ck *c, const char *name, rl_span sp) {
    rl_ent *en = rl_ck_find_ent(c, name);
    if (!en) return true;
    char hint[140];
    snprintf(hint, sizeof hint, "'%s' is defined at %d:%d; names are assigned once, so pick a new name",
             name, en->sp.line, en->sp.col);
    rl_ck_err(c, sp, hint, "'%s' is already defined", name);
    return false;
}

/* Evaluates a constant expression (declarations); false after an error. */
static bool const_eval(rl_ck *c, const rl_ast *e, const char *what, rl_val *out) {
    c->const_mode = true;
    c->const_what = what;
    rl_val v = rl_ck_expr(c, e);
    c->const_mode = false;
    if (v.kind == VK_ERR) return false;
    if (v.kind != VK_NUM && v.kind != VK_STR) {
        rl_ck_err(c, e->sp, "constants are numbers, strings, hypers and arithmetic on them",
               "%s must be a constant expression", what);
        return false;
    }
    *out = v;
    return true;
}

static bool const_num(rl_ck *c, const rl_ast *e, const char *what, double *out) {
    rl_val v;
    if (!const_eval(c, e, what, &v)) return false;
    if (v.kind != VK_NUM) {
        rl_ck_err(c, e->sp, NULL, "%s must be a number, got a string", what);
        return false;
    }
    *out = v.num;
    return true;
}

/* Resolves a declared type's dims: integer hypers become sizes; symbolic
 * names are registered as dims of the program (unless allow_sym is false). */
static bool resolve_type(rl_ck *c, const rl_type_ast *t, rl_recipe_type *out, bool allow_sym,
                         const char *what) {
    memset(out, 0, sizeof *out);
    out->tokens = t->tokens;
    out->is_int = t->is_int;
    out->ndim = t->ndim;
    for (int i = 0; i < t->ndim; i++) {
        out->sizes[i] = t->size[i];
        if (!t->dim[i]) {
            rl_ck_note_literal(c->p, (double)t->size[i]);
            continue;
        }
        rl_ent *en = rl_ck_find_ent(c, t->dim[i]);
        if (en && en->nk == NK_HYPER && en->v.kind == VK_NUM) {
            double x = en->v.num;
            en->used = true;
            if (x != floor(x) || x < 0 || x > 1048576) {
                rl_ck_err(c, t->dsp[i], NULL, "dim '%s' is the hyper %g; dims must be integers in [0, 1048576]",
                       t->dim[i], x);
                return false;
            }
            out->sizes[i] = (int64_t)x;
            continue;
        }
        if (!allow_sym) {
            rl_ck_err(c, t->dsp[i], "use numbers or integer hypers, e.g. param w : f32[4] = 0 : sgd(lr = 0.1)",
                   "%s: dim '%s' is not a number or an integer hyper", what, t->dim[i]);
            return false;
        }
        out->dims[i] = t->dim[i];
        out->sizes[i] = -1;
        rl_program_dim(c->p, t->dim[i]);
    }
    return true;
}

/* Validates an optimizer clause into o. */
static bool check_optim(rl_ck *c, const rl_optim_ast *oa, rl_recipe_optim *o) {
    memset(o, 0, sizeof *o);
    static const char *const kinds[] = {"adamw", "sgd"};
    if (!oa) {
        o->kind = "adamw";
        o->lr = 1e-5, o->beta1 = 0.9, o->beta2 = 0.999, o->eps = 1e-8;
        return true;
    }
    bool adam = strcmp(oa->name, "adamw") == 0;
    if (!adam && strcmp(oa->name, "sgd") != 0) {
        const char *s = rl_suggest(oa->name, kinds, 2);
        char hint[100];
        snprintf(hint, sizeof hint, "expected adamw or sgd%s%s%s", s ? "; did you mean '" : "",
                 s ? s : "", s ? "'?" : "");
        rl_ck_err(c, oa->sp, hint, "unknown optimizer '%s'", oa->name);
        return false;
    }
    o->kind = adam ? "adamw" : "sgd";
    o->lr = adam ? 1e-5 : 1e-2;
    o->beta1 = 0.9, o->beta2 = 0.999, o->eps = 1e-8;
    static const char *const akeys[] = {"lr", "beta1", "beta2", "eps", "wd", "clip"};
    static const char *const skeys[] = {"lr", "momentum", "wd", "nesterov", "clip"};
    const char *const *keys = adam ? akeys : skeys;
    int nk = adam ? 6 : 5;
    bool ok = true;
    for (int i = 0; i < oa->n; i++) {
        int w = -1;
        for (int k = 0; k < nk; k++)
            if (strcmp(oa->key[i], keys[k]) == 0) w = k;
        if (w < 0) {
            const char *s = rl_suggest(oa->key[i], keys, nk);
            char hint[160];
            snprintf(hint, sizeof hint, "%s takes %s%s%s%s", o->kind,
                     adam ? "lr, beta1, beta2, eps, wd, clip" : "lr, momentum, wd, nesterov, clip",
                     s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
            rl_ck_err(c, oa->ksp[i], hint, "unknown option '%s' of %s", oa->key[i], o->kind);
            ok = false;
            continue;
        }
        char what[64];
        snprintf(what, sizeof what, "option '%s'", oa->key[i]);
        double x;
        if (!const_num(c, oa->val[i], what, &x)) {
            ok = false;
            continue;
        }
        const char *k = keys[w];
        const char *bad = NULL;
        if (!isfinite(x)) bad = "a finite number";
        else if (strcmp(k, "beta1") == 0 || strcmp(k, "beta2") == 0) {
            if (x < 0 || x >= 1) bad = "in [0, 1)";
        } else if (strcmp(k, "eps") == 0) {
            if (x <= 0) bad = "> 0";
        } else if (x < 0) bad = ">= 0";
        if (bad) {
            rl_ck_err(c, oa->val[i]->sp, NULL, "option '%s' of %s must be %s, got %g", k, o->kind, bad, x);
            ok = false;
            continue;
        }
        if (strcmp(k, "lr") == 0) o->lr = x;
        else if (strcmp(k, "beta1") == 0) o->beta1 = x;
        else if (strcmp(k, "beta2") == 0) o->beta2 = x;
        else if (strcmp(k, "eps") == 0) o->eps = x;
        else if (strcmp(k, "wd") == 0) o->weight_decay = x;
        else if (strcmp(k, "clip") == 0) o->clip = x;
        else if (strcmp(k, "momentum") == 0) o->momentum = x;
        else o->nesterov = x != 0;
    }
    if (ok && o->nesterov && o->momentum <= 0) {
        rl_ck_err(c, oa->sp, "add momentum = 0.9 (for example)", "nesterov needs momentum > 0");
        ok = false;
    }
    return ok;
}

static void decl_input(rl_ck *c, const rl_stmt *st) {
    if (!st->names[0] || !fresh_name(c, st->names[0], st->nsp[0])) return;
    rl_recipe_program *p = c->p;
    rl_recipe_type ty;
    bool ok = st->has_type && resolve_type(c, &st->type, &ty, true, "input");
    if (!ok) {
        define(c, st->names[0], st->nsp[0], NK_INPUT, rl_ck_verr());
        return;
    }
    rl_grow(&p->inputs, &p->cap_inputs, p->n_inputs + 1, sizeof(rl_input_decl));
    rl_input_decl *d = &p->inputs[p->n_inputs];
    memset(d, 0, sizeof *d);
    d->info.name = st->names[0];
    d->info.type = ty;
    d->sp = st->nsp[0];
    d->info.line = st->nsp[0].line, d->info.col = st->nsp[0].col;
    if (st->lib) {
        /* a column gives one value per row: a token row, or a number [B] */
        if (!ty.tokens && ty.ndim != 1)
            rl_ck_err(c, st->libsp, "declare it tokens (text), f32[B] (numbers, booleans as 0/1) or i32[B]",
                      "input '%s' reads the column \"%s\", which gives one value per row, but it is declared "
                      "with %d dims", st->names[0], st->lib, ty.ndim);
        bool empty = !st->lib[0] || st->lib[0] == '.' || st->lib[strlen(st->lib) - 1] == '.' || strstr(st->lib, "..");
        if (empty)
            rl_ck_err(c, st->libsp, "a column is a field name, or a.b for the field b of the object a",
                      "'%s' is not a column name", st->lib);
        d->info.from = st->lib;
        d->info.from_line = st->libsp.line, d->info.from_col = st->libsp.col;
    }
    rl_vk k = ty.tokens ? VK_TOKENS : VK_TENSOR;
    bool ii = ty.is_int;
    rl_ir *in = rl_ck_emit(c, IR_INPUT, p->n_inputs, 0, NULL, NULL, 1, &k, &ii, st->nsp[0]);
    if (!in) return;
    d->slot = in->out;
    p->slots[in->out].name = st->names[0];
    p->n_inputs++;
    define(c, st->names[0], st->nsp[0], NK_INPUT, rl_ck_slot_val(c, in->out));
}

static void decl_model(rl_ck *c, const rl_stmt *st) {
    if (!st->names[0] || !fresh_name(c, st->names[0], st->nsp[0])) return;
    rl_recipe_program *p = c->p;
    static const char *const kinds[] = {"lm", "score", "value"};
    int kind = -1;
    for (int i = 0; st->mkind && i < 3; i++)
        if (strcmp(st->mkind, kinds[i]) == 0) kind = i;
    bool ok = st->mkind != NULL;
    if (st->mkind && kind < 0) {
        const char *s = rl_suggest(st->mkind, kinds, 3);
        char hint[100];
        snprintf(hint, sizeof hint, "expected lm, score or value%s%s%s", s ? "; did you mean '" : "",
                 s ? s : "", s ? "'?" : "");
        rl_ck_err(c, st->mksp, hint, "unknown model kind '%s'", st->mkind);
        ok = false;
    }
    rl_recipe_optim o;
    memset(&o, 0, sizeof o);
    if (!st->trainable && st->optim) {
        rl_ck_err(c, st->optim->sp, "remove the optimizer, or make the model trainable",
               "a frozen model has no optimizer");
        ok = false;
    } else if (st->trainable && !check_optim(c, st->optim, &o)) {
        ok = false;
    }
    if (!ok) {
        define(c, st->names[0], st->nsp[0], NK_MODEL, rl_ck_verr());
        return;
    }
    rl_grow(&p->models, &p->cap_models, p->n_models + 1, sizeof(rl_model_decl));
    rl_model_decl *d = &p->models[p->n_models];
    memset(d, 0, sizeof *d);
    d->info.name = st->names[0];
    d->info.kind = (rl_recipe_model_kind)kind;
    d->info.trainable = st->trainable;
    d->info.optim = o;
    d->sp = st->nsp[0];
    d->trainable_id = -1;
    if (st->trainable) {
        rl_grow(&p->train, &p->cap_train, p->n_train + 1, sizeof(rl_trainable));
        p->train[p->n_train] = (rl_trainable){st->names[0], false, p->n_models, st->nsp[0]};
        d->trainable_id = p->n_train++;
    }
    rl_vk k = VK_MODEL;
    bool f = false;
    rl_ir *in = rl_ck_emit(c, IR_MODEL, p->n_models, 0, NULL, NULL, 1, &k, &f, st->nsp[0]);
    if (!in) return;
    in->model = p->n_models;
    d->slot = in->out;
    p->slots[in->out].model = p->n_models;
    p->slots[in->out].name = st->names[0];
    p->n_models++;
    define(c, st->names[0], st->nsp[0], NK_MODEL, rl_ck_slot_val(c, in->out));
}

static const rl_override *find_override(rl_ck *c, const char *name) {
    for (int i = c->r->n_ov - 1; i >= 0; i--)
        if (strcmp(c->r->ov[i].name, name) == 0) return &c->r->ov[i];
    return NULL;
}

/* `hyper mode = "a" in ["a", "b"]`: the choices are a list of strings or
 * numbers, and the value (the recipe's or --set's) must be one of them. */
static bool hyper_in_choices(rl_ck *c, const rl_stmt *st, const rl_override *ov, const rl_val *v) {
    const rl_ast *l = st->choices;
    if (l->kind != AST_LIST || l->n < 1) {
        rl_ck_err(c, l->sp, "write e.g. hyper mode = \"a\" in [\"a\", \"b\"]",
                  "the choices of hyper '%s' must be a list of strings or numbers", st->names[0]);
        return false;
    }
    char text[300] = "";
    bool found = false;
    for (int i = 0; i < l->n; i++) {
        const rl_ast *a = l->args[i];
        bool is_str = a->kind == AST_STR;
        if ((a->kind != AST_STR && a->kind != AST_NUM) || is_str != (v->kind == VK_STR)) {
            rl_ck_err(c, a->sp, NULL, "a choice of hyper '%s' must be %s like its value", st->names[0],
                      v->kind == VK_STR ? "a string" : "a number");
            return false;
        }
        found = found || (is_str ? strcmp(a->s, v->str) == 0 : a->num == v->num);
        size_t k = strlen(text);
        if (is_str) snprintf(text + k, sizeof text - k, "%s%s", i ? ", " : "", a->s);
        else snprintf(text + k, sizeof text - k, "%s%g", i ? ", " : "", a->num);
    }
    if (found) return true;
    char hint[340], val[120];
    snprintf(hint, sizeof hint, "one of: %s", text);
    if (v->kind == VK_STR) snprintf(val, sizeof val, "\"%s\"", v->str);
    else snprintf(val, sizeof val, "%g", v->num);
    if (ov) rl_diag_add(c->r, &ov->src, RL_DIAG_ERROR, ov->vsp, hint, "--set %s=%s is not a choice", st->names[0], val);
    else rl_ck_err(c, st->expr->sp, hint, "hyper '%s' is %s, which is not a choice", st->names[0], val);
    return false;
}

static void decl_hyper(rl_ck *c, const rl_stmt *st) {
    if (!st->names[0] || !fresh_name(c, st->names[0], st->nsp[0])) return;
    rl_recipe_program *p = c->p;
    char what[120];
    snprintf(what, sizeof what, "the value of hyper '%s'", st->names[0]);
    rl_val v = rl_ck_verr();
    bool ok = st->expr && const_eval(c, st->expr, what, &v);
    const rl_override *ov = find_override(c, st->names[0]);
    if (ov && ok) {
        bool is_str = v.kind == VK_STR;
        const rl_source *saved = c->asrc;
        c->asrc = &ov->src;
        rl_val w = rl_ck_verr();
        if (is_str && ov->bare) {
            w.kind = VK_STR;
            w.str = ov->word;
        } else if (ov->expr) {
            snprintf(what, sizeof what, "the value of --set %s", st->names[0]);
            if (!const_eval(c, ov->expr, what, &w)) ok = false;
        } else {
            ok = false; /* a syntax error, reported by rl_recipe_set */
        }
        if (ok && (w.kind == VK_STR) != is_str) {
            rl_diag_add(c->r, &ov->src, RL_DIAG_ERROR, ov->vsp,
                        is_str ? "this hyper takes a string, e.g. --set kl=k3"
                               : "this hyper takes a number or a constant expression",
                        "bad value for hyper '%s': expected %s", st->names[0],
                        is_str ? "a string" : "a number");
            ok = false;
        }
        c->asrc = saved;
        if (ok) v = w;
    }
    if (!ok) {
        define(c, st->names[0], st->nsp[0], NK_HYPER, rl_ck_verr());
        return;
    }
    if (st->choices && !hyper_in_choices(c, st, ov, &v)) {
        define(c, st->names[0], st->nsp[0], NK_HYPER, rl_ck_verr());
        return;
    }
    rl_grow(&p->hypers, &p->cap_hypers, p->n_hypers + 1, sizeof(rl_recipe_hyper_info));
    rl_recipe_hyper_info *h = &p->hypers[p->n_hypers++];
    h->name = st->names[0];
    h->num = v.kind == VK_NUM ? v.num : 0;
    h->str = v.kind == VK_STR ? rl_rpool_strdup(&p->pool, v.str) : NULL;
    rl_ent *en = define(c, st->names[0], st->nsp[0], NK_HYPER, v);
    en->phase = PH_DECL;
    en->used = true; /* hypers may be read by the runner (batch sizes, epochs) */
}

static void decl_param(rl_ck *c, const rl_stmt *st) {
    if (!st->names[0] || !fresh_name(c, st->names[0], st->nsp[0])) return;
    rl_recipe_program *p = c->p;
    const char *name = st->names[0];
    rl_recipe_type ty = {0};
    bool ok = true;
    if (st->has_type) {
        char what[80];
        snprintf(what, sizeof what, "param '%s'", name);
        ok = resolve_type(c, &st->type, &ty, false, what);
        if (ok && (ty.tokens || ty.is_int)) {
            rl_ck_err(c, st->type.sp, "params are float tensors: f32 or f32[dims]",
                   "param '%s' must be f32", name);
            ok = false;
        }
        double numel = 1;
        for (int i = 0; ok && i < ty.ndim; i++) numel *= (double)ty.sizes[i];
        if (ok && numel > 16777216) {
            rl_ck_err(c, st->type.sp, NULL, "param '%s' is too large (more than 2^24 elements)", name);
            ok = false;
        }
    }
    char what[120];
    snprintf(what, sizeof what, "the initial value of param '%s'", name);
    double init = 0, mn = -INFINITY, mx = INFINITY;
    if (!st->expr || !const_num(c, st->expr, what, &init)) ok = false;
    rl_recipe_optim o;
    if (!st->optim || !check_optim(c, st->optim, &o)) ok = false;
    snprintf(what, sizeof what, "the bound min of param '%s'", name);
    if (st->min && !const_num(c, st->min, what, &mn)) ok = false;
    snprintf(what, sizeof what, "the bound max of param '%s'", name);
    if (st->max && !const_num(c, st->max, what, &mx)) ok = false;
    if (ok && !(mn <= mx)) {
        rl_ck_err(c, st->max->sp, NULL, "param '%s': min (%g) is above max (%g)", name, mn, mx);
        ok = false;
    }
    if (ok && (init < mn || init > mx)) {
        rl_ck_err(c, st->expr->sp, "start inside [min, max]",
               "param '%s' starts at %g, outside its bounds [%g, %g]", name, init, mn, mx);
        ok = false;
    }
    if (ok && !isfinite(init)) {
        rl_ck_err(c, st->expr->sp, NULL, "param '%s' starts at %g; it must be finite", name, init);
        ok = false;
    }
    if (!ok) {
        define(c, name, st->nsp[0], NK_PARAM, rl_ck_verr());
        return;
    }
    rl_grow(&p->params, &p->cap_params, p->n_params + 1, sizeof(rl_param_decl));
    rl_param_decl *d = &p->params[p->n_params];
    memset(d, 0, sizeof *d);
    d->info.name = name;
    d->info.optim = o;
    d->info.has_min = st->min != NULL;
    d->info.has_max = st->max != NULL;
    d->info.min = mn;
    d->info.max = mx;
    d->sp = st->nsp[0];
    d->ndim = ty.ndim;
    for (int i = 0; i < ty.ndim; i++) d->shape[i] = ty.sizes[i];
    d->init = init;
    rl_grow(&p->train, &p->cap_train, p->n_train + 1, sizeof(rl_trainable));
    p->train[p->n_train] = (rl_trainable){name, true, p->n_params, st->nsp[0]};
    d->trainable_id = p->n_train++;
    rl_vk k = VK_TENSOR;
    bool f = false;
    rl_ir *in = rl_ck_emit(c, IR_PARAM, p->n_params, 0, NULL, NULL, 1, &k, &f, st->nsp[0]);
    if (!in) return;
    d->slot = in->out;
    p->slots[in->out].name = name;
    p->n_params++;
    define(c, name, st->nsp[0], NK_PARAM, rl_ck_slot_val(c, in->out));
}

static void decl_extern(rl_ck *c, const rl_stmt *st) {
    rl_recipe_program *p = c->p;
    const char *name = st->names[0];
    if (!name) return;
    const char *bk = rl_ck_builtin_kind(c, name);
    if (bk || rl_ck_find_ufn(c, name) || rl_ck_find_extern(c, name) >= 0) {
        rl_ck_err(c, st->nsp[0], "pick another name", "'%s' is already a function (%s)", name,
               bk ? bk : "declared above");
        return;
    }
    if (!st->lib || !st->lib[0]) {
        rl_ck_err(c, st->libsp, "name the shared library, e.g. \"librules.so\"",
               "extern '%s' has an empty library name", name);
        return;
    }
    rl_recipe_type *pt = rl_rpool_alloc(&p->pool, sizeof(rl_recipe_type) * (size_t)(st->n_types + 1));
    rl_recipe_type *rt = rl_rpool_alloc(&p->pool, sizeof(rl_recipe_type) * (size_t)(st->n_rtypes + 1));
    bool ok = true;
    for (int i = 0; i < st->n_types; i++) {
        if (st->types[i].tokens) {
            rl_ck_err(c, st->types[i].sp, "pass token fields: i32[B, T]",
                   "extern arguments are tensors (f32[...] or i32[...]), not tokens");
            ok = false;
            continue;
        }
        /* extern dims are names local to the signature: not registered as data dims */
        memset(&pt[i], 0, sizeof pt[i]);
        pt[i].is_int = st->types[i].is_int;
        pt[i].ndim = st->types[i].ndim;
        for (int d = 0; d < pt[i].ndim; d++) {
            pt[i].dims[d] = st->types[i].dim[d];
            pt[i].sizes[d] = st->types[i].size[d];
        }
    }
    for (int i = 0; i < st->n_rtypes; i++) {
        if (st->rtypes[i].tokens) {
            rl_ck_err(c, st->rtypes[i].sp, NULL, "extern results are tensors, not tokens");
            ok = false;
            continue;
        }
        memset(&rt[i], 0, sizeof rt[i]);
        rt[i].is_int = st->rtypes[i].is_int;
        rt[i].ndim = st->rtypes[i].ndim;
        for (int d = 0; d < rt[i].ndim; d++) {
            rt[i].dims[d] = st->rtypes[i].dim[d];
            rt[i].sizes[d] = st->rtypes[i].size[d];
            if (!rt[i].dims[d]) continue;
            bool bound = false;
            for (int a = 0; a < st->n_types; a++)
                for (int k = 0; k < st->types[a].ndim; k++)
                    if (st->types[a].dim[k] && strcmp(st->types[a].dim[k], rt[i].dims[d]) == 0)
                        bound = true;
            if (!bound) {
                rl_ck_err(c, st->rtypes[i].dsp[d], "result dims must appear in an argument type, or be numbers",
                       "result dim '%s' of extern '%s' is not bound by any argument", rt[i].dims[d], name);
                ok = false;
            }
        }
    }
    if (!ok) return;
    rl_grow(&p->externs, &p->cap_externs, p->n_externs + 1, sizeof(rl_extern_decl *));
    rl_extern_decl *x = rl_rpool_alloc(&p->pool, sizeof(rl_extern_decl));
    p->externs[p->n_externs] = x;
    x->info.name = name;
    x->info.lib = st->lib;
    x->info.backward = st->backward;
    x->info.n_params = st->n_types;
    x->info.params = pt;
    x->info.n_results = st->n_rtypes;
    x->info.results = rt;
    x->info.line = st->sp.line;
    x->info.col = st->sp.col;
    x->sp = st->nsp[0];
    rl_recipe_fn *fn = &x->fn;
    fn->name = name;
    fn->doc = rl_rpool_printf(&p->pool, "extern %s from %s, declared at %d:%d", name, st->lib, st->nsp[0].line,
                              st->nsp[0].col);
    fn->n_params = st->n_types;
    for (int i = 0; i < st->n_types; i++) {
        fn->params[i].name = rl_rpool_printf(&p->pool, "arg%d", i + 1);
        fn->params[i].type = pt[i].is_int ? RL_RP_INT : RL_RP_FLOAT;
    }
    fn->n_results = st->n_rtypes;
    for (int i = 0; i < st->n_rtypes; i++) fn->results[i] = rt[i].is_int ? RL_RR_INT : RL_RR_FLOAT;
    fn->flags = st->backward ? 0 : RL_RFN_NOGRAD;
    fn->call = NULL; /* through the caller's extern bridge (opts.externs) */
    p->n_externs++;
    rl_grow(&p->fnv, &p->cap_fnv, p->n_fnv + 1, sizeof(*p->fnv));
    rl_grow(&p->fnv_user, &p->cap_fnv_user, p->n_fnv + 1, sizeof(void *));
    p->fnv_user[p->n_fnv] = NULL;
    p->fnv[p->n_fnv++] = fn;
}

/* Checks that a fn body uses only its parameters, hypers and models, and
 * calls only functions defined above it. */
static void check_fn_body(rl_ck *c, const rl_stmt *st, const rl_ast *e) {
    if (!e) return;
    switch (e->kind) {
    case AST_NAME: {
        for (int i = 0; i < st->n_fparams; i++)
            if (strcmp(st->fparams[i], e->s) == 0) return;
        rl_ent *en = rl_ck_find_ent(c, e->s);
        if (en && (en->nk == NK_HYPER || en->nk == NK_MODEL)) {
            en->used = true;
            return;
        }
        char hint[200];
        snprintf(hint, sizeof hint, "a function body may use its parameters (%s), hypers and models",
                 st->n_fparams ? "" : "none");
        if (st->n_fparams) {
            int k = snprintf(hint, sizeof hint, "a function body may use its parameters (");
            for (int i = 0; i < st->n_fparams && k < (int)sizeof hint; i++)
                k += snprintf(hint + k, sizeof hint - (size_t)k, "%s%s", i ? ", " : "", st->fparams[i]);
            if (k < (int)sizeof hint) snprintf(hint + k, sizeof hint - (size_t)k, "), hypers and models");
        }
        rl_ck_err(c, e->sp, hint, "'%s' is not a parameter of fn '%s'", e->s, st->names[0]);
        return;
    }
    case AST_CALL: {
        const char *n = e->s;
        if (strcmp(n, st->names[0]) == 0) {
            rl_ck_err(c, e->nsp, "functions cannot call themselves", "fn '%s' calls itself", n);
        } else if (!rl_ck_is_special(n) && !rl_ck_find_ufn(c, n) && rl_ck_find_extern(c, n) < 0 && !rl_ck_find_native(n) &&
                   !rl_ck_find_model_fn(c, n) && rl_op_find(n) < 0) {
            bool later = false;
            for (int i = c->stmt + 1; i < c->r->n_stmts; i++)
                if (c->r->stmts[i]->kind == ST_FN && c->r->stmts[i]->names[0] &&
                    strcmp(c->r->stmts[i]->names[0], n) == 0)
                    later = true;
            if (later)
                rl_ck_err(c, e->nsp, "move its definition above this one",
                       "'%s' is defined after fn '%s'; a function may call only functions defined above it",
                       n, st->names[0]);
            else rl_ck_unknown_fn(c, e);
        }
        for (int i = 0; i < e->n; i++) check_fn_body(c, st, e->args[i]);
        return;
    }
    case AST_MEMBER: case AST_NEG: check_fn_body(c, st, e->a); return;
    case AST_BIN:
        check_fn_body(c, st, e->a);
        check_fn_body(c, st, e->b);
        return;
    case AST_LIST:
        for (int i = 0; i < e->n; i++) check_fn_body(c, st, e->args[i]);
        return;
    default: return;
    }
}

static void decl_fn(rl_ck *c, const rl_stmt *st, bool prelude) {
    const char *name = st->names[0];
    if (!name) return;
    const char *bk = rl_ck_builtin_kind(c, name);
    const rl_ufn *old = rl_ck_find_ufn(c, name);
    if (bk || old || rl_ck_find_extern(c, name) >= 0) {
        char hint[120];
        snprintf(hint, sizeof hint, "pick another name%s", old && old->prelude ? " (the prelude defines it)" : "");
        rl_ck_err(c, st->nsp[0], hint, "'%s' is already a function (%s)", name,
               bk ? bk : old && old->prelude ? "in the prelude" : "declared above");
        return;
    }
    for (int i = 0; i < st->n_fparams; i++)
        for (int j = 0; j < i; j++)
            if (strcmp(st->fparams[i], st->fparams[j]) == 0) {
                rl_ck_err(c, st->fpsp[i], NULL, "parameter '%s' appears twice", st->fparams[i]);
                return;
            }
    int errors = c->r->n_errors;
    check_fn_body(c, st, st->expr);
    /* instructions name the function they were inlined from: the name must
     * outlive the prelude's syntax tree (freed at the end of the check) */
    name = rl_rpool_strdup(&c->p->pool, name);
    rl_grow(&c->ufns, &c->cap_ufns, c->n_ufns + 1, sizeof(rl_ufn));
    c->ufns[c->n_ufns] = (rl_ufn){name, st, prelude, c->r->n_errors > errors, c->n_ufns};
    c->n_ufns++;
}

/* ---- statements ------------------------------------------------------------------------------ */

bool rl_is_loss_name(const char *name) {
    return strcmp(name, "loss") == 0 || strncmp(name, "loss_", 5) == 0;
}

static void stmt_assign(rl_ck *c, const rl_stmt *st) {
    rl_recipe_program *p = c->p;
    bool ok = true;
    for (int i = 0; i < st->n_names; i++)
        if (!st->names[i]) return; /* a syntax error before the name (reported) */
    if (st->n_names == 0) return;
    bool dup[RL_RECIPE_MAX_FN_RESULTS] = {false};
    /* `log x = x` logs a value under its own name: the metric takes the
     * name without defining it a second time */
    const bool self_log = st->kind == ST_LOG && st->n_names == 1 && st->expr && st->expr->kind == AST_NAME &&
                          strcmp(st->expr->s, st->names[0]) == 0 && rl_ck_find_ent(c, st->names[0]);
    for (int i = 0; i < st->n_names; i++) {
        for (int j = 0; j < i; j++)
            if (strcmp(st->names[i], st->names[j]) == 0) {
                rl_ck_err(c, st->nsp[i], NULL, "'%s' appears twice on the left of '='", st->names[i]);
                ok = false;
                dup[i] = true;
            }
        if (!dup[i] && !self_log && !fresh_name(c, st->names[i], st->nsp[i])) ok = false, dup[i] = true;
        if (rl_is_loss_name(st->names[i]) &&
            ((c->phase == PH_ROLLOUT && !c->r->block_unclosed) || st->kind == ST_LOG)) {
            rl_ck_err(c, st->nsp[i],
                   st->kind == ST_LOG ? "pick a metric name that does not start with 'loss'"
                                      : "compute losses in the loss block; the rollout block runs "
                                        "without gradients",
                   "'%s' is a loss name, not allowed %s", st->names[i],
                   st->kind == ST_LOG ? "for a logged metric" : "in the rollout block");
            ok = false;
        }
    }
    rl_val vals[RL_RECIPE_MAX_FN_RESULTS];
    for (int i = 0; i < RL_RECIPE_MAX_FN_RESULTS; i++) vals[i] = rl_ck_verr();
    if (st->expr && ok) {
        c->assign_name = st->n_names == 1 ? st->names[0] : NULL;
        c->assign_rhs = st->expr;
        rl_val v = rl_ck_expr(c, st->expr);
        c->assign_rhs = NULL;
        c->assign_name = NULL;
        int nv = v.kind == VK_ERR ? 0 : v.n > 1 ? v.n : 1;
        if (v.kind != VK_ERR && nv != st->n_names) {
            const rl_recipe_fn *fn = st->expr->kind == AST_CALL ? rl_ck_find_native(st->expr->s) : NULL;
            if (!fn && st->expr->kind == AST_CALL) fn = rl_ck_find_model_fn(c, st->expr->s);
            char hint[160] = "";
            if (fn && fn->result_names)
                snprintf(hint, sizeof hint, "write: %s = %s(...)", fn->result_names, fn->name);
            if (nv > 1)
                rl_ck_err(c, st->expr->sp, hint[0] ? hint : NULL,
                       "'%s' returns %d values, but %d name%s assigned",
                       st->expr->kind == AST_CALL ? st->expr->s : rl_ck_snip(c, st->expr), nv, st->n_names,
                       st->n_names == 1 ? " is" : "s are");
            else
                rl_ck_err(c, st->expr->sp, NULL, "%d names are assigned, but '%s' is one value",
                       st->n_names, rl_ck_snip(c, st->expr));
        } else if (v.kind != VK_ERR) {
            for (int i = 0; i < nv; i++) {
                vals[i] = v;
                vals[i].n = 1;
                if (nv > 1) vals[i] = rl_ck_slot_val(c, v.slot + i);
            }
        }
    }
    for (int i = 0; i < st->n_names; i++) {
        rl_val v = vals[i];
        const char *name = st->names[i];
        if (dup[i]) continue;
        bool is_out = st->kind == ST_LOG || rl_is_loss_name(name);
        if (is_out && v.kind == VK_NUM) {
            int s = rl_ck_emit_const(c, v.num, false, st->expr->sp);
            v = s < 0 ? rl_ck_verr() : rl_ck_slot_val(c, s);
        }
        if (is_out && v.kind != VK_ERR && (v.kind != VK_TENSOR || v.is_int)) {
            rl_ck_err(c, st->expr->sp, "losses and metrics are float scalars",
                   "%s '%s' must be a float tensor, got %s", st->kind == ST_LOG ? "metric" : "loss",
                   name, rl_ck_val_desc(&v));
            v = rl_ck_verr();
        }
        if (v.kind == VK_TENSOR || v.kind == VK_TOKENS) {
            if (!p->slots[v.slot].name) p->slots[v.slot].name = name;
        }
        if (!self_log) {
            rl_ent *en = define(c, name, st->nsp[i], NK_VALUE, v);
            en->is_out = is_out;
        }
        if (v.kind == VK_ERR || !is_out) continue;
        if (st->kind == ST_LOG) {
            rl_grow(&p->metrics, &p->cap_metrics, p->n_metrics + 1, sizeof(rl_metric));
            p->metrics[p->n_metrics++] = (rl_metric){name, v.slot, st->expr->sp, NULL};
        } else {
            rl_grow(&p->losses, &p->cap_losses, p->n_losses + 1, sizeof(rl_loss));
            rl_loss *l = &p->losses[p->n_losses++];
            memset(l, 0, sizeof *l);
            l->info.name = name;
            l->slot = v.slot;
            l->stmt = c->stmt;
            l->sp = st->expr->sp;
        }
    }
}

void rl_check(rl_recipe_program *p) {
    rl_recipe *r = p->r;
    rl_ck ck;
    memset(&ck, 0, sizeof ck);
    rl_ck *c = &ck;
    c->p = p;
    c->r = r;
    c->asrc = &r->src;
    c->phase = PH_DECL;
    /* the prelude's functions come first */
    c->prelude = rl_prelude_parse();
    c->r = c->prelude;
    c->asrc = &c->prelude->src;
    for (int i = 0; i < c->prelude->n_stmts; i++) {
        c->stmt = i;
        decl_fn(c, c->prelude->stmts[i], true);
    }
    c->r = r;
    c->asrc = &r->src;
    bool online = r->kind == RL_RECIPE_ONLINE;
    if (r->has_header && online && !r->has_rollout)
        rl_ck_err(c, r->hsp, "write rollout { seq = generate(policy, prompts, max_new = 32) ... }",
               "an online recipe needs a rollout { } block");
    if (r->has_header && !online && r->has_rollout)
        rl_ck_err(c, r->rollout_sp, "make the recipe online (recipe NAME : online) to generate data",
               "rollout blocks exist only in online recipes (this recipe is %s)",
               rl_recipe_kind_name(r->kind));
    for (int i = 0; i < r->n_stmts; i++) {
        const rl_stmt *st = r->stmts[i];
        c->stmt = i;
        c->phase = PH_DECL;
        if (st->broken) {
            /* a syntax error was reported: its names exist, silently broken */
            for (int k = 0; k < st->n_names; k++) {
                if (!st->names[k]) continue;
                if (st->kind == ST_FN || st->kind == ST_EXTERN) {
                    if (rl_ck_find_ufn(c, st->names[k]) || rl_ck_find_extern(c, st->names[k]) >= 0) continue;
                    rl_grow(&c->ufns, &c->cap_ufns, c->n_ufns + 1, sizeof(rl_ufn));
                    c->ufns[c->n_ufns] = (rl_ufn){st->names[k], st, false, true, c->n_ufns};
                    c->n_ufns++;
                } else if (!rl_ck_find_ent(c, st->names[k])) {
                    rl_ent *en = define(c, st->names[k], st->nsp[k], NK_VALUE, rl_ck_verr());
                    en->is_out = true;
                }
            }
            continue;
        }
        switch (st->kind) {
        case ST_INPUT: decl_input(c, st); break;
        case ST_MODEL: decl_model(c, st); break;
        case ST_HYPER: decl_hyper(c, st); break;
        case ST_PARAM: decl_param(c, st); break;
        case ST_EXTERN: decl_extern(c, st); break;
        case ST_FN: decl_fn(c, st, false); break;
        case ST_ASSIGN:
        case ST_LOG:
            c->phase = st->block == BLK_ROLLOUT && online ? PH_ROLLOUT : PH_LOSS;
            stmt_assign(c, st);
            break;
        }
    }
    c->phase = PH_DECL;
    if (r->has_header && p->n_losses == 0) {
        bool any = false; /* a loss whose statement failed still counts */
        for (int i = 0; i < c->n_ents; i++)
            if (c->ents[i].nk == NK_VALUE && rl_is_loss_name(c->ents[i].name)) any = true;
        if (!any)
            rl_ck_err(c, r->hsp, "assign a scalar to 'loss' (or to names starting with 'loss_')",
                   "recipe '%s' defines no loss", r->name ? r->name : "?");
    }
    /* unused things */
    for (int i = 0; i < c->n_ents; i++) {
        const rl_ent *en = &c->ents[i];
        if (en->used || en->mentioned || en->is_out || en->v.kind == VK_ERR) continue;
        if (en->nk == NK_INPUT)
            rl_ck_warn(c, en->sp, "remove it, or use it in an expression", "input '%s' is never used",
                    en->name);
        else if (en->nk == NK_MODEL)
            rl_ck_warn(c, en->sp, "remove it, or pass it to a model function", "model '%s' is never used",
                    en->name);
        else if (en->nk == NK_VALUE && en->v.kind != VK_NUM && en->v.kind != VK_STR)
            rl_ck_warn(c, en->sp, "remove it, or log it (log NAME = ...)", "'%s' is assigned but never used",
                    en->name);
    }
    for (int i = 0; i < p->n_inputs; i++) {
        rl_ent *en = rl_ck_find_ent(c, p->inputs[i].info.name);
        p->inputs[i].used = en && en->used;
    }
    for (int i = 0; i < p->n_models; i++) {
        rl_ent *en = rl_ck_find_ent(c, p->models[i].info.name);
        p->models[i].used = en && en->used;
    }
    /* names of values, for rl_recipe_value_of */
    for (int i = 0; i < c->n_ents; i++) {
        const rl_ent *en = &c->ents[i];
        rl_grow(&p->named, &p->cap_named, p->n_named + 1, sizeof(rl_named));
        int slot = (en->v.kind == VK_TENSOR || en->v.kind == VK_TOKENS) ? en->v.slot : -1;
        p->named[p->n_named++] = (rl_named){en->name, slot, en->stmt};
    }
    free(c->ents);
    free(c->ufns);
    free(c->early);
    if (c->fold_ctx) rl_ctx_free(c->fold_ctx);
    rl_recipe_free(c->prelude);
}
