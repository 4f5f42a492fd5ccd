/* recipes/lang/calls.c - the checker's calls: ops bound against the
 * signatures of ops/ops.def (rl_op_signature: inputs, their dtypes,
 * attributes with defaults), positional and keyword arguments (one binder for
 * ops, table functions and `fn` functions), constant attributes, table
 * functions (natives, model functions, externs: model kinds, token batches,
 * string choices, rollout-only functions, several results) and inlining of
 * `fn` functions (the prelude's and the recipe's).
 */
#include "check_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- calls -------------------------------------------------------------------------------------- */

/* Splits a call's arguments into positional and keyword ones. */
typedef struct rl_callargs {
    int n_pos;
    const rl_ast *pos[16];
    int n_kw;
    const char *kw[16];
} rl_callargs;

static bool split_args(rl_ck *c, const rl_ast *e, rl_callargs *ca) {
    memset(ca, 0, sizeof *ca);
    if (e->n > 16) {
        rl_ck_err(c, e->sp, NULL, "too many arguments to '%s' (%d)", e->s, e->n);
        return false;
    }
    for (int i = 0; i < e->n; i++) {
        if (e->kw[i]) {
            for (int j = 0; j < ca->n_kw; j++)
                if (strcmp(ca->kw[j], e->kw[i]) == 0) {
                    rl_ck_err(c, e->kwsp[i], NULL, "argument '%s' is given twice", e->kw[i]);
                    return false;
                }
            ca->kw[ca->n_kw++] = e->kw[i];
        } else {
            ca->pos[ca->n_pos++] = e->args[i];
        }
    }
    return true;
}

/* A constant attribute value: a number (an integer for int and axis), or a
 * list of integers (at most RL_MAX_DIMS, into list/n_list). */
static bool const_attr(rl_ck *c, const rl_ast *e, rl_attr_type type, const char *fname, const char *aname,
                       double *num, int64_t *list, int *n_list) {
    if (type == RL_ATTR_INTS) {
        if (e->kind != AST_LIST) {
            rl_ck_err(c, e->sp, "write a list of integers, e.g. [-1] or [1, 0]",
                   "the '%s' argument of %s must be a list", aname, fname);
            return false;
        }
        if (e->n > RL_MAX_DIMS) {
            rl_ck_err(c, e->sp, "tensors have at most 4 dims",
                      "the '%s' argument of %s has %d items, more than 4", aname, fname, e->n);
            return false;
        }
        double prod = 1;
        for (int i = 0; i < e->n; i++) {
            rl_val v = rl_ck_expr(c, e->args[i]);
            if (v.kind == VK_ERR) return false;
            /* what the items mean (-1 inferred in a shape, negative axes in a
             * perm) is the op's to check, when the shape check runs it */
            if (v.kind != VK_NUM || v.num != floor(v.num) || fabs(v.num) > 2147483647.0) {
                rl_ck_err(c, e->args[i]->sp, "list items are constant integers, e.g. [-1] or [1, 0]",
                       "item %d of '%s' must be a constant integer", i + 1, aname);
                return false;
            }
            list[i] = (int64_t)v.num;
            if (v.num > 0) prod *= v.num;
        }
        if (prod > 1099511627776.0) {
            rl_ck_err(c, e->sp, NULL, "the '%s' argument of %s describes more than 2^40 elements",
                   aname, fname);
            return false;
        }
        *n_list = e->n;
        return true;
    }
    rl_val v = rl_ck_expr(c, e);
    if (v.kind == VK_ERR) return false;
    if (v.kind != VK_NUM) {
        rl_ck_err(c, e->sp, "attributes are numbers, hypers or arithmetic on them",
               "the '%s' argument of %s must be a constant, got %s", aname, fname, rl_ck_val_desc(&v));
        return false;
    }
    if (type == RL_ATTR_INT || type == RL_ATTR_AXIS) {
        if (v.num != floor(v.num) || fabs(v.num) > 9007199254740992.0) {
            rl_ck_err(c, e->sp, NULL, "the '%s' argument of %s must be an integer, got %g", aname,
                   fname, v.num);
            return false;
        }
        if (type == RL_ATTR_AXIS && (v.num < -RL_MAX_DIMS || v.num >= RL_MAX_DIMS)) {
            rl_ck_err(c, e->sp, "tensors have at most 4 dims; negative axes count from the end",
                   "axis must be in [-4, 3], got %g", v.num);
            return false;
        }
    }
    *num = v.num;
    return true;
}

bool rl_ck_bind_keywords(rl_ck *c, const rl_ast *e, const char *fname, const char *const *names,
                         int first, int n, const char *sig, const rl_ast **given) {
    for (int i = 0; i < e->n; i++) {
        if (!e->kw[i]) continue;
        int w = -1;
        for (int j = first; j < n; j++)
            if (strcmp(names[j], e->kw[i]) == 0) w = j;
        if (w < 0) {
            const char *s = rl_suggest(e->kw[i], names + first, n - first);
            char hint[400];
            if (s) snprintf(hint, sizeof hint, "did you mean '%s'? (%s)", s, sig);
            else snprintf(hint, sizeof hint, "%s", sig);
            rl_ck_err(c, e->kwsp[i], hint, "'%s' has no argument '%s'", fname, e->kw[i]);
            return false;
        }
        if (given[w]) {
            rl_ck_err(c, e->kwsp[i], sig, "argument '%s' of '%s' is given twice", e->kw[i], fname);
            return false;
        }
        given[w] = e->args[i];
    }
    return true;
}

/* Binds a call of op `op` (called as `fname`) against its signature and
 * compiles its inputs and attributes into a. */
static bool bind_op(rl_ck *c, int op, const char *fname, const rl_ast *e, rl_opargs *a) {
    const rl_op_sig *sig = rl_op_signature(op);
    rl_callargs ca;
    if (!split_args(c, e, &ca)) return false;
    int n_in = sig->variadic ? ca.n_pos : sig->n_in;
    int max_pos = sig->variadic ? 16 : n_in + sig->n_attr;
    if (ca.n_pos < (sig->variadic ? 1 : n_in) || ca.n_pos > max_pos) {
        char want[64];
        if (sig->variadic) snprintf(want, sizeof want, "at least 1");
        else if (max_pos == n_in) snprintf(want, sizeof want, "%d", n_in);
        else snprintf(want, sizeof want, "%d to %d", n_in, max_pos);
        rl_ck_err(c, e->nsp, sig->text, "wrong number of arguments to '%s': expected %s, got %d",
               fname, want, ca.n_pos + ca.n_kw);
        return false;
    }
    if (n_in > 8) {
        rl_ck_err(c, e->nsp, NULL, "'%s' takes at most 8 inputs", fname);
        return false;
    }
    /* inputs are positional; attributes positional after them, or by keyword */
    const char *names[8 + RL_OP_MAX_ATTRS];
    const rl_ast *given[8 + RL_OP_MAX_ATTRS] = {0};
    for (int i = 0; i < n_in; i++) names[i] = sig->variadic ? sig->in_name[0] : sig->in_name[i];
    for (int i = 0; i < sig->n_attr; i++) names[n_in + i] = sig->attr[i].name;
    for (int i = 0; i < ca.n_pos; i++) given[i] = ca.pos[i];
    if (!rl_ck_bind_keywords(c, e, fname, names, n_in, n_in + sig->n_attr, sig->text, given)) return false;
    for (int i = 0; i < sig->n_attr; i++)
        if (sig->attr[i].required && !given[n_in + i]) {
            rl_ck_err(c, e->nsp, sig->text, "'%s' needs the argument '%s'", fname, sig->attr[i].name);
            return false;
        }
    memset(a, 0, sizeof *a);
    bool ok = true;
    a->n = n_in;
    for (int i = 0; i < n_in; i++) {
        a->e[i] = ca.pos[i];
        a->v[i] = rl_ck_expr(c, ca.pos[i]);
        if (a->v[i].kind == VK_ERR) ok = false;
        else if (a->v[i].n > 1) {
            rl_ck_err(c, ca.pos[i]->sp, NULL, "'%s' returns %d values; an argument is one value",
                   rl_ck_snip(c, ca.pos[i]), a->v[i].n);
            ok = false;
        }
    }
    for (int i = 0; i < sig->n_attr; i++) {
        const rl_op_attr_sig *as = &sig->attr[i];
        double num = as->def;
        const rl_ast *ge = given[n_in + i];
        if (ge && !const_attr(c, ge, as->type, fname, as->name, &num, a->at.ints, &a->at.n_ints)) ok = false;
        if (as->type != RL_ATTR_INTS) rl_attrs_set(&a->at, as->field, num);
    }
    return ok;
}

static const char *model_kinds_text(unsigned kinds) {
    static char buf[64];
    buf[0] = 0;
    const char *names[] = {"lm", "score", "value"};
    int n = 0;
    for (int k = 0; k < 3; k++)
        if (kinds & (1u << k)) {
            strcat(buf, n ? " or " : "");
            strcat(buf, names[k]);
            n++;
        }
    return buf;
}

/* A call of a table function (native, model function, extern). want_n: the
 * number of names assigned (1 in expressions). */
static rl_val call_fn(rl_ck *c, const rl_recipe_fn *fn, int fn_index, const rl_ast *e) {
    rl_callargs ca;
    if (fn->n_results < 1) return rl_ck_verr();
    if (!split_args(c, e, &ca)) return rl_ck_verr();
    const int np = fn->n_params;
    const rl_ast *given[RL_RECIPE_MAX_FN_PARAMS] = {0};
    char sig[300];
    int k = snprintf(sig, sizeof sig, "%s(", fn->name);
    for (int i = 0; i < np && k < (int)sizeof sig; i++)
        k += snprintf(sig + k, sizeof sig - (size_t)k, "%s%s", i ? ", " : "", fn->params[i].name);
    if (k < (int)sizeof sig) snprintf(sig + k, sizeof sig - (size_t)k, ")");
    if (ca.n_pos > np) {
        rl_ck_err(c, e->nsp, fn->doc ? fn->doc : sig,
               "wrong number of arguments to '%s': expected at most %d, got %d", fn->name, np,
               ca.n_pos + ca.n_kw);
        return rl_ck_verr();
    }
    for (int i = 0; i < ca.n_pos; i++) given[i] = ca.pos[i];
    const char *names[RL_RECIPE_MAX_FN_PARAMS];
    for (int i = 0; i < np; i++) names[i] = fn->params[i].name;
    if (!rl_ck_bind_keywords(c, e, fn->name, names, 0, np, sig, given)) return rl_ck_verr();
    for (int i = 0; i < np; i++) {
        const rl_recipe_param *pp = &fn->params[i];
        bool constant = pp->type == RL_RP_NUMBER || pp->type == RL_RP_STRING;
        if (!given[i] && !(constant && pp->optional)) {
            rl_ck_err(c, e->nsp, fn->doc ? fn->doc : sig,
                   "wrong number of arguments to '%s': missing '%s' (%s)", fn->name, pp->name, sig);
            return rl_ck_verr();
        }
    }
    if ((fn->flags & RL_RFN_ROLLOUT_ONLY) && c->phase != PH_ROLLOUT) {
        rl_ck_err(c, e->nsp,
               c->p->kind == RL_RECIPE_ONLINE
                   ? "move it into the rollout { } block; the loss block uses its results"
                   : "rollout blocks exist only in online recipes",
               "'%s' can only be called in a rollout block", fn->name);
        return rl_ck_verr();
    }
    /* compile the arguments */
    int pslot[RL_RECIPE_MAX_FN_PARAMS];
    rl_recipe_value cv[RL_RECIPE_MAX_FN_PARAMS];
    memset(cv, 0, sizeof cv);
    int slots[RL_RECIPE_MAX_FN_PARAMS];
    rl_span asp[RL_RECIPE_MAX_FN_PARAMS];
    int n_slots = 0, model = -1;
    int dimarg[RL_RECIPE_MAX_FN_PARAMS];
    bool ok = true, any_dim = false;
    for (int i = 0; i < np; i++) {
        const rl_recipe_param *pp = &fn->params[i];
        pslot[i] = -1;
        dimarg[i] = -1;
        if (!given[i]) {
            cv[i].kind = pp->type == RL_RP_STRING ? RL_RV_STRING : RL_RV_NUMBER;
            cv[i].num = pp->def;
            cv[i].str = pp->sdef;
            continue;
        }
        rl_val v = rl_ck_expr(c, given[i]);
        if (v.kind == VK_ERR) {
            ok = false;
            continue;
        }
        if (v.n > 1) {
            rl_ck_err(c, given[i]->sp, NULL, "'%s' returns %d values; an argument is one value",
                   rl_ck_snip(c, given[i]), v.n);
            ok = false;
            continue;
        }
        char what[120];
        snprintf(what, sizeof what, "the %s argument of %s ('%s')", rl_ck_ord(i), fn->name, pp->name);
        switch (pp->type) {
        case RL_RP_MODEL:
            if (v.kind != VK_MODEL) {
                rl_ck_err(c, given[i]->sp, fn->doc, "%s must be a model, got %s", what, rl_ck_val_desc(&v));
                ok = false;
            } else if (fn->model_kinds &&
                       !(fn->model_kinds & (1u << c->p->models[v.model].info.kind))) {
                rl_recipe_model_kind mk = c->p->models[v.model].info.kind;
                rl_ck_err(c, given[i]->sp, fn->doc, "'%s' needs a %s model; '%s' is %s %s model",
                       fn->name, model_kinds_text(fn->model_kinds), c->p->models[v.model].info.name,
                       mk == RL_MODEL_LM ? "an" : "a", rl_recipe_model_kind_name(mk));
                ok = false;
            } else {
                pslot[i] = v.slot;
                model = v.model;
            }
            break;
        case RL_RP_TOKENS:
            if (v.kind != VK_TOKENS) {
                rl_ck_err(c, given[i]->sp, fn->doc, "%s must be a token batch, got %s", what,
                       rl_ck_val_desc(&v));
                ok = false;
            } else {
                pslot[i] = v.slot;
            }
            break;
        case RL_RP_NUMBER:
            if (v.kind != VK_NUM) {
                rl_ck_err(c, given[i]->sp, fn->doc, "%s must be a constant number, got %s", what,
                       rl_ck_val_desc(&v));
                ok = false;
            } else if (pp->integer && (v.num != floor(v.num) || fabs(v.num) > 1e15)) {
                rl_ck_err(c, given[i]->sp, fn->doc, "%s must be an integer, got %g", what, v.num);
                ok = false;
            } else if (pp->size && v.num < 1) {
                rl_ck_err(c, given[i]->sp, fn->doc, "%s is a size; it must be >= 1, got %g", what, v.num);
                ok = false;
            } else {
                cv[i].kind = RL_RV_NUMBER;
                cv[i].num = v.num;
                /* a hyper given as a size is a dim of the shape check (generate's
                 * n = G): bound to a prime there, so that B*G rows never equal
                 * another dim's size by accident, and --set G=8 changes it */
                if (pp->size && v.hyper) {
                    int d = rl_program_dim(c->p, v.hyper);
                    if (c->p->dims[d].fixed == 0) c->p->dims[d].fixed = (int64_t)v.num;
                    dimarg[i] = d;
                }
            }
            break;
        case RL_RP_STRING:
            if (v.kind != VK_STR) {
                rl_ck_err(c, given[i]->sp, fn->doc, "%s must be a string, got %s", what, rl_ck_val_desc(&v));
                ok = false;
            } else {
                bool found = !pp->choices;
                if (pp->choices) {
                    size_t ln = strlen(v.str);
                    const char *q = pp->choices;
                    while (*q) {
                        const char *bar = strchr(q, '|');
                        size_t l = bar ? (size_t)(bar - q) : strlen(q);
                        if (l == ln && strncmp(q, v.str, l) == 0) found = true;
                        q += l + (bar ? 1 : 0);
                    }
                }
                if (!found) {
                    char hint[120];
                    snprintf(hint, sizeof hint, "one of: %s", pp->choices);
                    rl_ck_err(c, given[i]->sp, hint, "%s is \"%s\", which is not a choice", what, v.str);
                    ok = false;
                }
                cv[i].kind = RL_RV_STRING;
                cv[i].str = v.str;
            }
            break;
        default: {
            char want = pp->type == RL_RP_FLOAT ? 'F' : pp->type == RL_RP_INT ? 'I' : 'A';
            int s = rl_ck_as_tensor(c, &v, want, given[i], what);
            if (s < 0) ok = false;
            else pslot[i] = s;
            break;
        }
        }
        if (pslot[i] >= 0) {
            slots[n_slots] = pslot[i];
            asp[n_slots] = rl_ck_arg_span(c, given[i], &v);
            n_slots++;
        }
    }
    if (!ok) return rl_ck_verr();
    rl_vk ok_[RL_RECIPE_MAX_FN_RESULTS];
    bool oi[RL_RECIPE_MAX_FN_RESULTS];
    for (int i = 0; i < fn->n_results; i++) {
        ok_[i] = fn->results[i] == RL_RR_TOKENS ? VK_TOKENS : VK_TENSOR;
        oi[i] = fn->results[i] == RL_RR_INT;
    }
    rl_ir *in = rl_ck_emit(c, IR_FN, fn_index, n_slots, slots, asp, fn->n_results, ok_, oi, e->sp);
    if (!in) return rl_ck_verr();
    in->consts = rl_rpool_alloc(&c->p->pool, sizeof(rl_recipe_value) * (size_t)(np ? np : 1));
    in->pslot = rl_rpool_alloc(&c->p->pool, sizeof(int) * (size_t)(np ? np : 1));
    for (int i = 0; i < np; i++) any_dim = any_dim || dimarg[i] >= 0;
    if (any_dim) {
        in->dimarg = rl_rpool_alloc(&c->p->pool, sizeof(int) * (size_t)np);
        memcpy(in->dimarg, dimarg, sizeof(int) * (size_t)np);
    }
    for (int i = 0; i < np; i++) {
        in->pslot[i] = pslot[i];
        in->consts[i] = cv[i];
        if (cv[i].str) in->consts[i].str = rl_rpool_strdup(&c->p->pool, cv[i].str);
    }
    in->model = model;
    for (int i = 0; i < fn->n_results; i++)
        if (fn->results[i] == RL_RR_TOKENS) {
            if (c->assign_rhs == e && c->assign_name)
                in->fresh = rl_rpool_printf(&c->p->pool, "T_%s", c->assign_name);
            else in->fresh = rl_rpool_printf(&c->p->pool, "T%d", ++c->fresh_count);
        }
    rl_val r = rl_ck_slot_val(c, in->out);
    r.n = fn->n_results;
    return r;
}

/* Inlines a `fn` function. */
static rl_val call_ufn(rl_ck *c, const rl_ufn *u, const rl_ast *e) {
    const rl_stmt *st = u->st;
    if (u->broken || st->kind != ST_FN) return rl_ck_verr(); /* its definition is broken (reported) */
    rl_callargs ca;
    if (!split_args(c, e, &ca)) return rl_ck_verr();
    const rl_ast *given[RL_RECIPE_MAX_FN_PARAMS] = {0};
    char sig[300];
    int k = snprintf(sig, sizeof sig, "%s(", u->name);
    for (int i = 0; i < st->n_fparams && k < (int)sizeof sig; i++)
        k += snprintf(sig + k, sizeof sig - (size_t)k, "%s%s", i ? ", " : "", st->fparams[i]);
    if (k < (int)sizeof sig) snprintf(sig + k, sizeof sig - (size_t)k, ")");
    if (ca.n_pos > st->n_fparams) {
        rl_ck_err(c, e->nsp, sig, "wrong number of arguments to '%s': expected %d, got %d", u->name,
               st->n_fparams, ca.n_pos + ca.n_kw);
        return rl_ck_verr();
    }
    for (int i = 0; i < ca.n_pos; i++) given[i] = ca.pos[i];
    if (!rl_ck_bind_keywords(c, e, u->name, (const char *const *)st->fparams, 0, st->n_fparams, sig, given))
        return rl_ck_verr();
    for (int i = 0; i < st->n_fparams; i++)
        if (!given[i]) {
            rl_ck_err(c, e->nsp, sig, "wrong number of arguments to '%s': expected %d, got %d", u->name,
                   st->n_fparams, ca.n_pos + ca.n_kw);
            return rl_ck_verr();
        }
    if (!st->expr) return rl_ck_verr();
    if (c->depth >= RL_MAX_INLINE_DEPTH) {
        rl_ck_err(c, e->sp, NULL, "functions nested more than %d deep", RL_MAX_INLINE_DEPTH);
        return rl_ck_verr();
    }
    rl_frame fr;
    memset(&fr, 0, sizeof fr);
    fr.fn = u;
    bool ok = true;
    for (int i = 0; i < st->n_fparams; i++) {
        fr.args[i] = rl_ck_expr(c, given[i]);
        if (fr.args[i].kind == VK_ERR) ok = false;
        else if (fr.args[i].n > 1) {
            rl_ck_err(c, given[i]->sp, NULL, "'%s' returns %d values; an argument is one value",
                   rl_ck_snip(c, given[i]), fr.args[i].n);
            ok = false;
        }
        rl_span use = rl_ck_arg_span(c, given[i], &fr.args[i]);
        fr.args[i].has_use = true;
        fr.args[i].use = use;
    }
    if (!ok) return rl_ck_verr();
    const rl_source *saved_src = c->asrc;
    if (c->depth == 0) c->site = e->sp;
    c->frames[c->depth++] = fr;
    c->asrc = u->prelude ? &c->prelude->src : &c->r->src;
    const rl_ast *saved_rhs = c->assign_rhs;
    c->assign_rhs = NULL;
    rl_val v = rl_ck_expr(c, st->expr);
    c->assign_rhs = saved_rhs;
    c->depth--;
    c->asrc = saved_src;
    v.has_use = false;
    return v;
}

rl_val rl_ck_call(rl_ck *c, const rl_ast *e) {
    const char *name = e->s;
    /* stop(x): the stop_gradient op */
    if (strcmp(name, "stop") == 0 || strcmp(name, "stop_gradient") == 0) {
        rl_opargs a;
        if (!bind_op(c, RL_OP_STOP_GRADIENT, name, e, &a)) return rl_ck_verr();
        return rl_ck_apply_op(c, RL_OP_STOP_GRADIENT, &a, e->sp);
    }
    /* if(cond, a, b): a choice made when the recipe is compiled (cond is a
     * constant: hypers, so --set switches parts of a recipe on and off). Only
     * the branch taken is compiled; the other is checked for names only, so
     * an input it alone uses need not be bound. */
    if (strcmp(name, "if") == 0) {
        bool kw = false;
        for (int i = 0; i < e->n; i++) kw = kw || e->kw[i];
        if (e->n != 3 || kw) {
            rl_ck_err(c, e->nsp, "if(cond, a, b)", "wrong number of arguments to 'if': expected 3, got %d",
                      e->n);
            return rl_ck_verr();
        }
        rl_val cv = rl_ck_expr(c, e->args[0]);
        if (cv.kind == VK_ERR) return rl_ck_verr();
        if (cv.kind != VK_NUM) {
            rl_ck_err(c, e->args[0]->sp,
                      "if() chooses when the recipe is compiled (write a hyper, e.g. if(use_margin, m, 0)); "
                      "for a choice per element use where(cond, a, b)",
                      "the condition of 'if' must be a constant, got %s", rl_ck_val_desc(&cv));
            return rl_ck_verr();
        }
        bool take_a = cv.num != 0;
        rl_ck_mention(c, e->args[take_a ? 2 : 1]);
        return rl_ck_expr(c, e->args[take_a ? 1 : 2]);
    }
    if (strcmp(name, "float") == 0) {
        if (e->n != 1 || e->kw[0]) {
            rl_ck_err(c, e->nsp, "float(x)", "wrong number of arguments to 'float': expected 1, got %d",
                   e->n);
            return rl_ck_verr();
        }
        rl_val v = rl_ck_expr(c, e->args[0]);
        if (v.kind == VK_NUM || v.kind == VK_ERR) return v;
        int s = rl_ck_as_tensor(c, &v, 'F', e->args[0], "the argument of float");
        return s < 0 ? rl_ck_verr() : rl_ck_slot_val(c, s);
    }
    /* min/max: two positional arguments are elementwise (minimum, maximum);
     * one is a reduction (min(x) = -max(-x)) */
    if (strcmp(name, "min") == 0 || strcmp(name, "max") == 0) {
        int n_pos = 0;
        for (int i = 0; i < e->n; i++) n_pos += !e->kw[i];
        bool is_max = name[1] == 'a';
        if (n_pos == 2 && e->n == 2) {
            rl_op op = is_max ? RL_OP_MAXIMUM : RL_OP_MINIMUM;
            rl_opargs a;
            if (!bind_op(c, op, name, e, &a)) return rl_ck_verr();
            return rl_ck_apply_op(c, op, &a, e->sp);
        }
        rl_opargs a;
        if (!bind_op(c, RL_OP_MAX, name, e, &a)) return rl_ck_verr();
        if (is_max) return rl_ck_apply_op(c, RL_OP_MAX, &a, e->sp);
        if (a.v[0].kind == VK_NUM) return a.v[0];
        a.v[0] = rl_ck_apply1(c, RL_OP_NEG, a.v[0], a.e[0], e->sp);
        rl_val m = rl_ck_apply_op(c, RL_OP_MAX, &a, e->sp);
        return rl_ck_apply1(c, RL_OP_NEG, m, e, e->sp);
    }
    const rl_ufn *u = rl_ck_find_ufn(c, name);
    if (u) return call_ufn(c, u, e);
    int xi = rl_ck_find_extern(c, name);
    if (xi >= 0) {
        rl_recipe_program *p = c->p;
        for (int i = 0; i < p->n_fnv; i++)
            if (p->fnv[i] == &p->externs[xi]->fn) return call_fn(c, p->fnv[i], i, e);
    }
    const rl_recipe_fn *fn = rl_ck_find_native(name);
    if (!fn) fn = rl_ck_find_model_fn(c, name);
    if (fn) {
        rl_recipe_program *p = c->p;
        int idx = -1;
        for (int i = 0; i < p->n_fnv; i++)
            if (p->fnv[i] == fn) idx = i;
        if (idx < 0) {
            rl_grow(&p->fnv, &p->cap_fnv, p->n_fnv + 1, sizeof(*p->fnv));
            rl_grow(&p->fnv_user, &p->cap_fnv_user, p->n_fnv + 1, sizeof(void *));
            idx = p->n_fnv;
            /* natives get the program (step() reads its step counter) */
            p->fnv_user[idx] = rl_ck_find_native(name) ? (void *)p : p->fns.user;
            p->fnv[p->n_fnv++] = fn;
        }
        return call_fn(c, fn, idx, e);
    }
    int op = rl_op_find(name);
    if (op >= 0) {
        if (!rl_op_signature(op)) {
            rl_ck_err(c, e->nsp,
                   op == RL_OP_FOREIGN ? "it runs C functions: declare one with extern \"lib.so\" name(f32[B]) -> f32[B]"
                                       : "backward-only kernels are used by backward rules, not by recipes",
                   "'%s' cannot be called from a recipe", name);
            return rl_ck_verr();
        }
        rl_opargs a;
        if (!bind_op(c, op, name, e, &a)) return rl_ck_verr();
        return rl_ck_apply_op(c, op, &a, e->sp);
    }
    rl_ck_unknown_fn(c, e);
    return rl_ck_verr();
}
