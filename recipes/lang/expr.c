/* recipes/lang/expr.c - the checker's expressions: the helpers every check uses
 * (diagnostics that follow inlining back to the call site, instruction and
 * slot emission, making a value a tensor of the wanted dtype), constant
 * folding, applying an op (dtype rules: numbers become 0-d constants of the
 * run dtype; i32 meeting a float operation is converted; two i32 compared
 * stay i32), name resolution (single assignment, definition before use,
 * phases) and the expression walker. Calls are in calls.c.
 */
#include "check_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reports an error or warning at sp of the current AST's source; while
 * inlining, at the call site in the recipe, prefixed with the function. */
static void ck_vdiag(rl_ck *c, rl_diag_severity sev, rl_span sp, const char *hint, const char *fmt,
                     va_list ap) {
    const rl_source *src = c->asrc;
    char msg[600];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (c->depth > 0) {
        const rl_frame *f = &c->frames[c->depth - 1];
        if (sev == RL_DIAG_WARNING && f->fn->prelude) return; /* the prelude is not the user's code */
        rl_diag_add(c->r, &c->r->src, sev, c->site, hint, "in %s: %s", f->fn->name, msg);
        return;
    }
    rl_diag_add(c->r, src, sev, sp, hint, "%s", msg);
}

void rl_ck_err(rl_ck *c, rl_span sp, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void rl_ck_err(rl_ck *c, rl_span sp, const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ck_vdiag(c, RL_DIAG_ERROR, sp, hint, fmt, ap);
    va_end(ap);
}

void rl_ck_warn(rl_ck *c, rl_span sp, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void rl_ck_warn(rl_ck *c, rl_span sp, const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ck_vdiag(c, RL_DIAG_WARNING, sp, hint, fmt, ap);
    va_end(ap);
}

/* The source text of an expression, shortened, for messages. */
const char *rl_ck_snip(rl_ck *c, const rl_ast *e) {
    int len = e->sp.end - e->sp.start;
    const char *t = c->asrc->text + e->sp.start;
    if (len > 40) return rl_rpool_printf(&c->p->pool, "%.37s...", t);
    return rl_rpool_printf(&c->p->pool, "%.*s", len, t);
}

const char *rl_ck_ord(int i) {
    static const char *const o[] = {"1st", "2nd", "3rd", "4th", "5th", "6th", "7th", "8th", "9th"};
    return i >= 0 && i < 9 ? o[i] : "nth";
}

/* "a f32 tensor", "a token batch", ... */
const char *rl_ck_val_desc(const rl_val *v) {
    switch (v->kind) {
    case VK_NUM: return "a number";
    case VK_STR: return "a string";
    case VK_TENSOR: return v->is_int ? "an i32 tensor" : "a f32 tensor";
    case VK_TOKENS: return "a token batch";
    case VK_MODEL: return "a model";
    default: return "an invalid value";
    }
}

/* ---- instructions and slots --------------------------------------------------------------- */

static int new_slot(rl_ck *c, rl_vk kind, bool is_int, int ir, int k) {
    rl_recipe_program *p = c->p;
    rl_grow(&p->slots, &p->cap_slots, p->n_slots + 1, sizeof(rl_slot));
    rl_slot *s = &p->slots[p->n_slots];
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->is_int = is_int;
    s->phase = c->phase;
    s->ir = ir;
    s->k = k;
    s->conv = -1;
    s->model = -1;
    return p->n_slots++;
}

/* The span an instruction records: its own text, or the call site while inlining. */
static rl_span ir_span(rl_ck *c, rl_span sp) { return c->depth > 0 ? c->site : sp; }

/* Appends an instruction with n_out output slots; NULL when the program is
 * too large or while checking a constant expression (reported here). */
rl_ir *rl_ck_emit(rl_ck *c, rl_ir_code code, int op, int n_args, const int *args,
                   const rl_span *asp, int n_out, const rl_vk *okind, const bool *oint, rl_span sp) {
    rl_recipe_program *p = c->p;
    if (c->const_mode) {
        rl_ck_err(c, sp, "constants are numbers, strings, hypers and arithmetic on them",
               "%s must be a constant expression", c->const_what);
        return NULL;
    }
    if (p->n_ir >= RL_MAX_IR) {
        if (!c->too_big)
            rl_ck_err(c, sp, "split the recipe, or call functions less deeply nested",
                   "the recipe is too large: more than %d operations after inlining functions",
                   RL_MAX_IR);
        c->too_big = true;
        return NULL;
    }
    rl_grow(&p->ir, &p->cap_ir, p->n_ir + 1, sizeof(rl_ir));
    int idx = p->n_ir++;
    rl_ir *in = &p->ir[idx];
    memset(in, 0, sizeof *in);
    in->code = code;
    in->op = op;
    in->n_args = n_args;
    in->args = rl_rpool_alloc(&p->pool, sizeof(int) * (size_t)(n_args ? n_args : 1));
    in->arg_sp = rl_rpool_alloc(&p->pool, sizeof(rl_span) * (size_t)(n_args ? n_args : 1));
    if (n_args) {
        memcpy(in->args, args, sizeof(int) * (size_t)n_args);
        memcpy(in->arg_sp, asp, sizeof(rl_span) * (size_t)n_args);
    }
    in->phase = c->phase;
    in->sp = ir_span(c, sp);
    in->stmt = c->stmt;
    in->model = -1;
    if (c->depth > 0) {
        in->in_fn = c->frames[c->depth - 1].fn->name;
        in->from_prelude = c->frames[c->depth - 1].fn->prelude;
    }
    in->out = p->n_slots;
    in->n_out = n_out;
    for (int k = 0; k < n_out; k++) new_slot(c, okind[k], oint[k], idx, k);
    return &p->ir[idx];
}

rl_val rl_ck_slot_val(rl_ck *c, int slot) {
    rl_val v = rl_ck_verr();
    const rl_slot *s = &c->p->slots[slot];
    v.kind = s->kind;
    v.is_int = s->is_int;
    v.slot = slot;
    v.model = s->model;
    return v;
}

/* A 0-d constant (float of the run dtype, or i32). */
int rl_ck_emit_const(rl_ck *c, double x, bool is_int, rl_span sp) {
    rl_vk k = VK_TENSOR;
    rl_ir *in = rl_ck_emit(c, IR_CONST, 0, 0, NULL, NULL, 1, &k, &is_int, sp);
    if (!in) return -1;
    in->num = x;
    in->is_int = is_int;
    return in->out;
}

/* The float conversion of an i32 slot (one per slot). */
static int emit_convert(rl_ck *c, int slot, rl_span sp) {
    rl_recipe_program *p = c->p;
    int memo = p->slots[slot].conv;
    if (memo >= 0 && p->slots[memo].phase == c->phase) return memo;
    rl_vk k = VK_TENSOR;
    bool f = false;
    rl_ir *in = rl_ck_emit(c, IR_CONVERT, 0, 1, &slot, &sp, 1, &k, &f, sp);
    if (!in) return -1;
    p->slots[slot].conv = in->out;
    return in->out;
}

/* The span recorded for an argument: a fn parameter's call-site text, or the
 * argument's own text, or (inside an inlined body) the call site. */
rl_span rl_ck_arg_span(rl_ck *c, const rl_ast *e, const rl_val *v) {
    if (v->has_use) return v->use;
    return c->depth > 0 ? c->site : e->sp;
}

/* Makes v a tensor slot of the wanted kind: 'F' float (i32 converted,
 * numbers become constants), 'I' i32, 'A' either. -1 after an error
 * (reported, naming `what`). */
int rl_ck_as_tensor(rl_ck *c, const rl_val *v, char want, const rl_ast *e, const char *what) {
    switch (v->kind) {
    case VK_ERR: return -1;
    case VK_NUM:
        if (want == 'I') {
            if (v->num != floor(v->num) || fabs(v->num) > 2147483647.0) {
                rl_ck_err(c, e->sp, "indices are i32 tensors", "%s must be an i32 tensor, got %g", what,
                       v->num);
                return -1;
            }
            return rl_ck_emit_const(c, v->num, true, e->sp);
        }
        return rl_ck_emit_const(c, v->num, false, e->sp);
    case VK_TENSOR:
        if (want == 'F' && v->is_int) return emit_convert(c, v->slot, rl_ck_arg_span(c, e, v));
        if (want == 'I' && !v->is_int) {
            rl_ck_err(c, e->sp, "indices (and targets) are i32: an input declared i32, or a token field",
                   "dtype mismatch: %s must be i32, got f32 ('%s')", what, rl_ck_snip(c, e));
            return -1;
        }
        return v->slot;
    case VK_TOKENS: {
        const char *s = rl_ck_snip(c, e);
        char hint[200];
        snprintf(hint, sizeof hint, "pass one of its fields: %s.ids, %s.mask or %s.attn", s, s, s);
        rl_ck_err(c, e->sp, hint, "'%s' is a token batch, but %s must be a tensor", s, what);
        return -1;
    }
    case VK_MODEL:
        rl_ck_err(c, e->sp, "models are passed to model functions, e.g. token_logprobs(policy, seq)",
               "'%s' is a model, but %s must be a tensor", rl_ck_snip(c, e), what);
        return -1;
    case VK_STR:
        rl_ck_err(c, e->sp, NULL, "%s must be a tensor, got a string", what);
        return -1;
    }
    return -1;
}

/* ---- constant folding ------------------------------------------------------------------------- */

/* Folds an op whose inputs are all numbers by running it on 0-d f64 tensors,
 * so a folded constant is what the op itself computes; false when it fails. */
static bool fold(rl_ck *c, rl_op op, const rl_opargs *a, double *out) {
    if (!c->fold_ctx && !(c->fold_ctx = rl_ctx_new(NULL))) return false;
    rl_ctx *ctx = c->fold_ctx;
    int was = rl_ctx_set_grad(ctx, 0);
    rl_tensor *in[8];
    for (int i = 0; i < a->n; i++) in[i] = rl_scalar(ctx, RL_F64, a->v[i].num);
    rl_tensor *y = rl_op_call(ctx, op, a->n, in, &a->at);
    bool ok = y && y->numel == 1 && rl_tensor_read(ctx, y, out, sizeof *out) == RL_OK;
    rl_ctx_set_grad(ctx, was);
    rl_ctx_clear_error(ctx);
    rl_ctx_reset(ctx);
    return ok;
}

/* ---- applying an op ------------------------------------------------------------------------------ */

/* Emits op over the (already compiled) inputs in a; folds numbers. */
rl_val rl_ck_apply_op(rl_ck *c, rl_op op, rl_opargs *a, rl_span sp) {
    const rl_op_sig *sig = rl_op_signature(op);
    const char *name = rl_op_table[op].name;
    bool all_num = true;
    for (int i = 0; i < a->n; i++) {
        if (a->v[i].kind == VK_ERR) return rl_ck_verr();
        if (a->v[i].kind != VK_NUM) all_num = false;
    }
    if (all_num && (rl_op_table[op].flags & OPF_FOLD)) {
        double out;
        if (fold(c, op, a, &out)) {
            if (op == RL_OP_STOP_GRADIENT)
                rl_ck_warn(c, sp, "remove stop(): a number carries no gradient",
                        "stop() around a constant");
            return rl_ck_vnum(out);
        }
    }
    /* dtypes: f32 inputs convert i32 arguments; f32|i32 ones stay i32 when
     * every one of them is an i32 tensor (comparisons of indices) */
    bool all_int = true;
    for (int i = 0; i < a->n; i++) {
        char t = sig->variadic ? sig->in_type[0] : sig->in_type[i];
        if (t == 'N' && !(a->v[i].kind == VK_TENSOR && a->v[i].is_int)) all_int = false;
    }
    int slots[8];
    rl_span asp[8];
    for (int i = 0; i < a->n; i++) {
        char want = sig->variadic ? sig->in_type[0] : sig->in_type[i];
        if (want == 'N') want = all_int ? 'A' : 'F';
        char what[96];
        if (a->n == 1) snprintf(what, sizeof what, "the argument of %s", name);
        else snprintf(what, sizeof what, "the %s argument of %s", rl_ck_ord(i), name);
        slots[i] = rl_ck_as_tensor(c, &a->v[i], want, a->e[i], what);
        if (slots[i] < 0) return rl_ck_verr();
        asp[i] = rl_ck_arg_span(c, a->e[i], &a->v[i]);
    }
    /* the result is f32, or has the dtype of the input the signature names */
    bool out_int = sig->result_like >= 0 && c->p->slots[slots[sig->result_like]].is_int;
    if (sig->variadic && sig->in_type[0] == 'A') {
        for (int i = 1; i < a->n; i++)
            if (c->p->slots[slots[i]].is_int != c->p->slots[slots[0]].is_int) {
                bool first_int = c->p->slots[slots[0]].is_int;
                rl_ck_err(c, a->e[i]->sp, "pass tensors of one dtype",
                       "dtype mismatch: the %s argument of %s is %s but the 1st is %s", rl_ck_ord(i), name,
                       c->p->slots[slots[i]].is_int ? "i32" : "f32", first_int ? "i32" : "f32");
                return rl_ck_verr();
            }
    }
    rl_vk k = VK_TENSOR;
    rl_ir *in = rl_ck_emit(c, IR_OP, op, a->n, slots, asp, 1, &k, &out_int, sp);
    if (!in) return rl_ck_verr();
    in->at = a->at;
    return rl_ck_slot_val(c, in->out);
}

static rl_val apply2(rl_ck *c, rl_op op, rl_val x, const rl_ast *ex, rl_val y, const rl_ast *ey,
                     rl_span sp) {
    rl_opargs a = {0};
    a.n = 2;
    a.v[0] = x, a.v[1] = y;
    a.e[0] = ex, a.e[1] = ey;
    return rl_ck_apply_op(c, op, &a, sp);
}

rl_val rl_ck_apply1(rl_ck *c, rl_op op, rl_val x, const rl_ast *ex, rl_span sp) {
    rl_opargs a = {0};
    a.n = 1;
    a.v[0] = x;
    a.e[0] = ex;
    const rl_op_sig *sig = rl_op_signature(op);
    for (int i = 0; sig && i < sig->n_attr; i++) /* the defaults: sum(x) is over all axes */
        if (!sig->attr[i].required) rl_attrs_set(&a.at, sig->attr[i].field, sig->attr[i].def);
    return rl_ck_apply_op(c, op, &a, sp);
}

/* ---- names -------------------------------------------------------------------------------------- */

rl_ent *rl_ck_find_ent(rl_ck *c, const char *name) {
    for (int i = c->n_ents - 1; i >= 0; i--)
        if (strcmp(c->ents[i].name, name) == 0) return &c->ents[i];
    return NULL;
}

const rl_ufn *rl_ck_find_ufn(rl_ck *c, const char *name) {
    for (int i = 0; i < c->n_ufns; i++)
        if (strcmp(c->ufns[i].name, name) == 0) return &c->ufns[i];
    return NULL;
}

const rl_recipe_fn *rl_ck_find_native(const char *name) {
    for (int i = 0; i < rl_recipe_n_natives(); i++)
        if (strcmp(rl_recipe_native_at(i)->name, name) == 0) return rl_recipe_native_at(i);
    return NULL;
}

const rl_recipe_fn *rl_ck_find_model_fn(rl_ck *c, const char *name) {
    for (int i = 0; i < c->p->fns.n_fns; i++)
        if (strcmp(c->p->fns.fns[i].name, name) == 0) return &c->p->fns.fns[i];
    return NULL;
}

int rl_ck_find_extern(rl_ck *c, const char *name) {
    for (int i = 0; i < c->p->n_externs; i++)
        if (strcmp(c->p->externs[i]->info.name, name) == 0) return i;
    return -1;
}

bool rl_ck_is_special(const char *name) {
    return strcmp(name, "stop") == 0 || strcmp(name, "float") == 0 || strcmp(name, "min") == 0 ||
           strcmp(name, "max") == 0 || strcmp(name, "if") == 0;
}

/* What kind of built-in `name` is, for messages about clashes; NULL if none. */
const char *rl_ck_builtin_kind(rl_ck *c, const char *name) {
    if (rl_ck_is_special(name)) return "a built-in function";
    int op = rl_op_find(name);
    if (op >= 0) return "an op of the engine";
    if (rl_ck_find_native(name)) return "a built-in function";
    if (rl_ck_find_model_fn(c, name)) return "a model function";
    return NULL;
}

/* Every callable name (for suggestions): malloc'ed array. */
static const char **callable_names(rl_ck *c, int *n) {
    int cap = RL_OP_COUNT + rl_recipe_n_natives() + c->p->fns.n_fns + c->n_ufns + c->p->n_externs + 8;
    const char **v = rl_xrealloc(NULL, sizeof(char *) * (size_t)cap);
    int k = 0;
    static const char *const sp[] = {"stop", "float", "min", "max", "if"};
    for (int i = 0; i < 5; i++) v[k++] = sp[i];
    for (int i = 0; i < RL_OP_COUNT; i++)
        if (rl_op_signature(i)) v[k++] = rl_op_table[i].name;
    for (int i = 0; i < rl_recipe_n_natives(); i++) v[k++] = rl_recipe_native_at(i)->name;
    for (int i = 0; i < c->p->fns.n_fns; i++) v[k++] = c->p->fns.fns[i].name;
    for (int i = 0; i < c->n_ufns; i++) v[k++] = c->ufns[i].name;
    for (int i = 0; i < c->p->n_externs; i++) v[k++] = c->p->externs[i]->info.name;
    *n = k;
    return v;
}

void rl_ck_unknown_fn(rl_ck *c, const rl_ast *e) {
    int n;
    const char **v = callable_names(c, &n);
    const char *s = rl_suggest(e->s, v, n);
    char hint[200];
    if (c->p->fns.n_fns == 0 && c->p->n_models > 0)
        /* a model function (token_logprobs, generate, ...) without a table */
        snprintf(hint, sizeof hint, "this program was compiled without model functions: pass them in "
                                    "opts.fns (rl_recipe_opts_models gives GPT-2's)");
    else if (s) snprintf(hint, sizeof hint, "did you mean '%s'?", s);
    else snprintf(hint, sizeof hint, "functions are ops, model functions, natives, externs and fn declarations");
    free(v);
    rl_ck_err(c, e->nsp, hint, "unknown function '%s'", e->s);
}

/* Where a name that is not (yet) defined is defined later, or -1. */
static const rl_stmt *defined_later(rl_ck *c, const char *name) {
    for (int i = c->stmt + 1; i < c->r->n_stmts; i++) {
        const rl_stmt *s = c->r->stmts[i];
        if (s->kind == ST_FN || s->kind == ST_EXTERN) continue;
        for (int k = 0; k < s->n_names; k++)
            if (s->names[k] && strcmp(s->names[k], name) == 0) return s;
    }
    return NULL;
}

static void undefined_name(rl_ck *c, const rl_ast *e) {
    if (c->undef_stmt != c->stmt) c->undef_stmt = c->stmt, c->n_undef = 0;
    for (int i = 0; i < c->n_undef; i++)
        if (strcmp(c->undef[i], e->s) == 0) return; /* once per statement */
    if (c->n_undef < 16) c->undef[c->n_undef++] = e->s;
    const rl_stmt *later = c->depth == 0 ? defined_later(c, e->s) : NULL;
    if (later) {
        rl_grow(&c->early, &c->cap_early, c->n_early + 1, sizeof(char *));
        c->early[c->n_early++] = e->s;
        char hint[120];
        snprintf(hint, sizeof hint, "it is defined at %d:%d; move that definition above this use",
                 later->sp.line, later->sp.col);
        rl_ck_err(c, e->sp, hint, "'%s' is used before its definition", e->s);
        return;
    }
    const char **v = rl_xrealloc(NULL, sizeof(char *) * (size_t)(c->n_ents + 1));
    for (int i = 0; i < c->n_ents; i++) v[i] = c->ents[i].name;
    const char *s = rl_suggest(e->s, v, c->n_ents);
    char hint[160];
    if (s) snprintf(hint, sizeof hint, "did you mean '%s'?", s);
    free(v);
    if (rl_op_find(e->s) >= 0 || rl_ck_find_native(e->s) || rl_ck_find_model_fn(c, e->s))
        snprintf(hint, sizeof hint, "'%s' is a function: call it, %s(...)", e->s, e->s);
    rl_ck_err(c, e->sp, s || rl_op_find(e->s) >= 0 ? hint : NULL, "undefined name '%s'", e->s);
}

static rl_val cx_name(rl_ck *c, const rl_ast *e) {
    if (c->depth > 0) {
        const rl_frame *f = &c->frames[c->depth - 1];
        for (int i = 0; i < f->fn->st->n_fparams; i++)
            if (strcmp(f->fn->st->fparams[i], e->s) == 0) return f->args[i];
    }
    rl_ent *en = rl_ck_find_ent(c, e->s);
    if (en && c->depth > 0 && en->nk != NK_HYPER && en->nk != NK_MODEL) en = NULL;
    if (!en) {
        if (c->depth > 0) {
            rl_ck_err(c, e->sp, NULL, "undefined name '%s'", e->s);
            return rl_ck_verr();
        }
        undefined_name(c, e);
        return rl_ck_verr();
    }
    en->used = true;
    if (en->v.kind == VK_ERR) return rl_ck_verr();
    if (c->const_mode && en->v.kind != VK_NUM && en->v.kind != VK_STR) {
        rl_ck_err(c, e->sp, "constants are numbers, strings, hypers and arithmetic on them",
               "%s must be a constant expression; '%s' is %s", c->const_what, e->s,
               rl_ck_val_desc(&en->v));
        return rl_ck_verr();
    }
    if (c->phase == PH_ROLLOUT && en->phase == PH_LOSS) {
        rl_ck_err(c, e->sp, "the rollout block runs first, once per batch; it can use inputs, models, "
                         "params, hypers and rollout values",
               "'%s' is computed in the loss phase; the rollout block cannot use it", e->s);
        return rl_ck_verr();
    }
    rl_val v = en->v;
    if (en->nk == NK_HYPER && v.kind == VK_NUM) v.hyper = en->name; /* a size parameter makes it a dim */
    return v;
}

void rl_ck_mention(rl_ck *c, const rl_ast *e) {
    if (!e) return;
    switch (e->kind) {
    case AST_NAME: {
        if (c->depth > 0) {
            /* a fn body: check_fn_body has already vetted its names */
            rl_ent *en = rl_ck_find_ent(c, e->s);
            if (en) en->mentioned = true;
            return;
        }
        rl_ent *en = rl_ck_find_ent(c, e->s);
        if (en) en->mentioned = true;
        else undefined_name(c, e);
        return;
    }
    case AST_CALL:
        if (c->depth == 0 && !rl_ck_is_special(e->s) && !rl_ck_find_ufn(c, e->s) && rl_ck_find_extern(c, e->s) < 0 &&
            !rl_ck_find_native(e->s) && !rl_ck_find_model_fn(c, e->s) && rl_op_find(e->s) < 0)
            rl_ck_unknown_fn(c, e);
        for (int i = 0; i < e->n; i++) rl_ck_mention(c, e->args[i]);
        return;
    case AST_MEMBER: case AST_NEG: rl_ck_mention(c, e->a); return;
    case AST_BIN:
        rl_ck_mention(c, e->a);
        rl_ck_mention(c, e->b);
        return;
    case AST_LIST:
        for (int i = 0; i < e->n; i++) rl_ck_mention(c, e->args[i]);
        return;
    default: return;
    }
}

static rl_val cx_member(rl_ck *c, const rl_ast *e) {
    rl_val b = rl_ck_expr(c, e->a);
    if (b.kind == VK_ERR) return b;
    if (b.kind != VK_TOKENS) {
        rl_ck_err(c, e->a->sp, "only token batches (inputs declared 'tokens', or generate's result) "
                            "have fields: ids, mask, attn",
               "'%s' is %s, not a token batch", rl_ck_snip(c, e->a), rl_ck_val_desc(&b));
        return rl_ck_verr();
    }
    static const char *const fields[] = {"ids", "mask", "attn"};
    int f = -1;
    for (int i = 0; i < 3; i++)
        if (strcmp(e->s, fields[i]) == 0) f = i;
    if (f < 0) {
        const char *s = rl_suggest(e->s, fields, 3);
        char hint[120];
        snprintf(hint, sizeof hint, "token batches have ids, mask and attn%s%s%s",
                 s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
        rl_ck_err(c, e->nsp, hint, "unknown field '%s' of a token batch", e->s);
        return rl_ck_verr();
    }
    rl_vk k = VK_TENSOR;
    bool t = true;
    rl_span asp = rl_ck_arg_span(c, e->a, &b);
    rl_ir *in = rl_ck_emit(c, IR_FIELD, f, 1, &b.slot, &asp, 1, &k, &t, e->sp);
    if (!in) return rl_ck_verr();
    return rl_ck_slot_val(c, in->out);
}

/* ---- tensor literals ------------------------------------------------------------------------------- */

/* Checks that list e at depth d has the literal's shape and collects its
 * constant numbers into vals; false after an error. */
static bool literal_collect(rl_ck *c, const rl_ast *e, int d, int ndim, const int64_t *shape, double *vals,
                            int *n) {
    if (d == ndim) {
        if (e->kind == AST_LIST) {
            rl_ck_err(c, e->sp, "every item at one depth is a number, or every one a list", "a tensor literal "
                      "mixes lists and numbers at depth %d", d + 1);
            return false;
        }
        rl_val v = rl_ck_expr(c, e);
        if (v.kind == VK_ERR) return false;
        if (v.kind != VK_NUM) {
            rl_ck_err(c, e->sp, "items are numbers, hypers or constant expressions of them; stack(a, b) "
                      "joins tensors",
                      "'%s' is %s, not a constant number", rl_ck_snip(c, e), rl_ck_val_desc(&v));
            return false;
        }
        vals[(*n)++] = v.num;
        return true;
    }
    if (e->kind != AST_LIST) {
        rl_ck_err(c, e->sp, "every item at one depth is a number, or every one a list",
                  "a tensor literal mixes lists and numbers at depth %d", d + 1);
        return false;
    }
    if (e->n != shape[d]) {
        rl_ck_err(c, e->sp, "every row of a tensor literal has the same length",
                  "this list has %d item%s, but the first at its depth has %lld", e->n, e->n == 1 ? "" : "s",
                  (long long)shape[d]);
        return false;
    }
    for (int i = 0; i < e->n; i++)
        if (!literal_collect(c, e->args[i], d + 1, ndim, shape, vals, n)) return false;
    return true;
}

/* [1, 0.5] or [[1, 0], [0, 1]]: a constant float tensor of the run dtype
 * (lists nest up to 4 deep, rows of equal length). It compiles to 0-d
 * constants reshaped to [1] and concatenated along axis 0 (in groups, as
 * an op takes at most 8 inputs), then reshaped to the literal's shape. */
static rl_val cx_literal(rl_ck *c, const rl_ast *e) {
    int64_t shape[RL_MAX_DIMS];
    int ndim = 0;
    for (const rl_ast *x = e; x->kind == AST_LIST; x = x->args[0]) {
        if (x->n == 0) {
            rl_ck_err(c, x->sp, "a tensor literal has at least one item", "an empty list is not a tensor");
            return rl_ck_verr();
        }
        if (ndim == RL_MAX_DIMS) {
            rl_ck_err(c, e->sp, "tensors have at most 4 dims", "a tensor literal nests more than 4 deep");
            return rl_ck_verr();
        }
        shape[ndim++] = x->n;
    }
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) numel *= shape[d], rl_ck_note_literal(c->p, (double)shape[d]);
    if (numel > RL_LITERAL_MAX_ELEMS) {
        rl_ck_err(c, e->sp, "a larger constant belongs in an input", "a tensor literal of %lld elements, more than %d",
                  (long long)numel, RL_LITERAL_MAX_ELEMS);
        return rl_ck_verr();
    }
    double *vals = rl_xrealloc(NULL, sizeof(double) * (size_t)numel);
    int *slots = rl_xrealloc(NULL, sizeof(int) * (size_t)numel);
    int n = 0;
    rl_val out = rl_ck_verr();
    if (!literal_collect(c, e, 0, ndim, shape, vals, &n)) goto done;
    /* each number as a [1] tensor */
    for (int i = 0; i < n; i++) {
        int s = rl_ck_emit_const(c, vals[i], false, e->sp);
        if (s < 0) goto done;
        rl_opargs a = {0};
        a.n = 1;
        a.v[0] = rl_ck_slot_val(c, s);
        a.e[0] = e;
        a.at.n_ints = 1;
        a.at.ints[0] = 1;
        rl_val r = rl_ck_apply_op(c, RL_OP_RESHAPE, &a, e->sp);
        if (r.kind == VK_ERR) goto done;
        slots[i] = r.slot;
    }
    /* concatenated, at most 8 at a time */
    while (n > 1) {
        int m = 0;
        for (int i = 0; i < n; i += 8) {
            int k = n - i < 8 ? n - i : 8;
            if (k == 1) {
                slots[m++] = slots[i];
                continue;
            }
            rl_opargs a = {0};
            a.n = k;
            for (int j = 0; j < k; j++) a.v[j] = rl_ck_slot_val(c, slots[i + j]), a.e[j] = e;
            a.at.axis = 0;
            rl_val r = rl_ck_apply_op(c, RL_OP_CONCAT, &a, e->sp);
            if (r.kind == VK_ERR) goto done;
            slots[m++] = r.slot;
        }
        n = m;
    }
    out = rl_ck_slot_val(c, slots[0]);
    if (ndim > 1) {
        rl_opargs a = {0};
        a.n = 1;
        a.v[0] = out;
        a.e[0] = e;
        a.at.n_ints = ndim;
        for (int d = 0; d < ndim; d++) a.at.ints[d] = shape[d];
        out = rl_ck_apply_op(c, RL_OP_RESHAPE, &a, e->sp);
    }
done:
    free(vals);
    free(slots);
    return out;
}

/* ---- expressions ------------------------------------------------------------------------------------ */

/* Remembers an integer written in the recipe (the shape check binds no
 * symbolic dim to a prime equal to one, so sizes map back to names). */
void rl_ck_note_literal(rl_recipe_program *p, double x) {
    if (x < 2 || x > 1e6) return;
    rl_grow(&p->lits, &p->cap_lits, p->n_lits + 1, sizeof(int64_t));
    p->lits[p->n_lits++] = (int64_t)x;
}

rl_val rl_ck_expr(rl_ck *c, const rl_ast *e) {
    if (!e) return rl_ck_verr();
    switch (e->kind) {
    case AST_NUM:
        if (e->is_int) rl_ck_note_literal(c->p, e->num);
        return rl_ck_vnum(e->num);
    case AST_STR: {
        rl_val v = rl_ck_verr();
        v.kind = VK_STR;
        v.str = e->s;
        return v;
    }
    case AST_NAME: return cx_name(c, e);
    case AST_MEMBER: return cx_member(c, e);
    case AST_CALL: {
        rl_val v = rl_ck_call(c, e);
        return v;
    }
    case AST_LIST: return cx_literal(c, e);
    case AST_NEG: {
        rl_val a = rl_ck_expr(c, e->a);
        if (a.kind == VK_NUM) return rl_ck_vnum(-a.num);
        if (a.n > 1) {
            rl_ck_err(c, e->a->sp, "assign the results to names first: a, b = f(...)",
                   "'%s' returns several values", rl_ck_snip(c, e->a));
            return rl_ck_verr();
        }
        return rl_ck_apply1(c, RL_OP_NEG, a, e->a, e->sp);
    }
    case AST_BIN: {
        rl_val a = rl_ck_expr(c, e->a);
        rl_val b = rl_ck_expr(c, e->b);
        if (a.kind == VK_ERR || b.kind == VK_ERR) return rl_ck_verr();
        const rl_ast *multi = a.n > 1 ? e->a : b.n > 1 ? e->b : NULL;
        if (multi) {
            rl_ck_err(c, multi->sp, "assign the results to names first: a, b = f(...)",
                   "'%s' returns several values", rl_ck_snip(c, multi));
            return rl_ck_verr();
        }
        if (e->op == TK_CARET) {
            if (b.kind != VK_NUM) {
                rl_ck_err(c, e->b->sp, "for a tensor exponent write exp(y * log(x))",
                       "the exponent of '^' must be a constant");
                return rl_ck_verr();
            }
            rl_opargs o = {0};
            o.n = 1;
            o.v[0] = a;
            o.e[0] = e->a;
            o.at.f[0] = b.num;
            return rl_ck_apply_op(c, RL_OP_POW, &o, e->sp);
        }
        rl_op op;
        switch (e->op) {
        case TK_PLUS: op = RL_OP_ADD; break;
        case TK_MINUS: op = RL_OP_SUB; break;
        case TK_STAR: op = RL_OP_MUL; break;
        case TK_SLASH: op = RL_OP_DIV; break;
        case TK_GT: op = RL_OP_GT; break;
        case TK_GE: op = RL_OP_GE; break;
        case TK_LT: op = RL_OP_LT; break;
        case TK_LE: op = RL_OP_LE; break;
        default: op = RL_OP_EQ; break;
        }
        if ((a.kind == VK_STR || b.kind == VK_STR) && op == RL_OP_EQ && a.kind == b.kind)
            return rl_ck_vnum(strcmp(a.str, b.str) == 0);
        return apply2(c, op, a, e->a, b, e->b, e->sp);
    }
    }
    return rl_ck_verr();
}
