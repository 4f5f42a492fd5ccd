/* recipes/lang/program.c - the public API of the recipe language (rl_recipe.h):
 * parsing entry points, --set overrides, the compile driver (check, audit,
 * shape check), binding inputs and models, running the rollout and loss
 * phases, and read-only views of what a program declares. This file checks
 * the caller's arguments; the passes behind it trust their inputs.
 */
#include "recipe_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rl_recipe_kind_name(rl_recipe_kind k) {
    static const char *const n[] = {"supervised", "pairwise", "online", "fullbatch"};
    return k >= 0 && k <= RL_RECIPE_FULLBATCH ? n[k] : "?";
}

const char *rl_recipe_model_kind_name(rl_recipe_model_kind k) {
    static const char *const n[] = {"lm", "score", "value"};
    return k >= 0 && k <= RL_MODEL_VALUE ? n[k] : "?";
}

/* ---- parsing ------------------------------------------------------------------------ */

rl_recipe *rl_recipe_parse(const char *src, size_t len, const char *file) {
    rl_recipe *r = calloc(1, sizeof(rl_recipe));
    if (!r) return NULL;
    if (len > (size_t)1 << 30) len = (size_t)1 << 30; /* offsets are ints */
    r->src.name = rl_rpool_strdup(&r->pool, file ? file : "<recipe>");
    r->src.text = rl_rpool_strndup(&r->pool, src ? src : "", src ? len : 0);
    r->src.len = src ? (int)len : 0;
    r->name = "";
    rl_parse(r);
    return r;
}

rl_recipe *rl_recipe_load(const char *path, const char **err) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (err) *err = strerror(errno);
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) free(buf);
            buf = nb;
            cap *= 2;
        }
    }
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad) {
        free(buf);
        if (err) *err = bad ? "read error" : "out of memory";
        return NULL;
    }
    rl_recipe *r = rl_recipe_parse(buf, n, path);
    free(buf);
    return r;
}

void rl_recipe_free(rl_recipe *r) {
    if (!r) return;
    free(r->stmts);
    free(r->diags);
    free(r->lex_err_lines);
    free(r->ov);
    rl_rpool_free(&r->pool);
    free(r);
}

const char *rl_recipe_name(const rl_recipe *r) { return r && r->name ? r->name : ""; }

/* ---- --set --------------------------------------------------------------------------- */

static const rl_stmt *find_decl(const rl_recipe *r, const char *name, rl_stmt_kind *kind) {
    for (int i = 0; i < r->n_stmts; i++) {
        const rl_stmt *s = r->stmts[i];
        for (int k = 0; k < s->n_names; k++)
            if (s->names[k] && strcmp(s->names[k], name) == 0) {
                *kind = s->kind;
                return s;
            }
    }
    return NULL;
}

rl_status rl_recipe_set(rl_recipe *r, const char *name, const char *value) {
    if (!r || !name || !value) return RL_ERR_ARG;
    rl_override ov;
    memset(&ov, 0, sizeof ov);
    size_t ln = strlen(name);
    char *text = rl_rpool_printf(&r->pool, "%s=%s", name, value);
    ov.src.name = "--set";
    ov.src.text = text;
    ov.src.len = (int)strlen(text);
    ov.nsp = (rl_span){0, (int)ln, 1, 1};
    ov.vsp = (rl_span){(int)ln + 1, ov.src.len, 1, (int)ln + 2};
    rl_override *slot = NULL;
    rl_grow(&r->ov, &r->cap_ov, r->n_ov + 1, sizeof(rl_override));
    slot = &r->ov[r->n_ov]; /* filled below on success */
    rl_stmt_kind kind = ST_HYPER;
    const rl_stmt *decl = find_decl(r, name, &kind);
    if (!decl || kind != ST_HYPER) {
        if (decl) {
            static const char *const what[] = {"an input", "a model", "a hyper", "a param",
                                               "an extern", "a function", "a value", "a metric"};
            rl_diag_add(r, &ov.src, RL_DIAG_ERROR, ov.nsp,
                        kind == ST_PARAM ? "give the param's initial value a hyper: param w = w0 : sgd(...)"
                                         : "only hypers can be set",
                        "'%s' is %s, not a hyper", name, what[kind]);
            return RL_ERR_ARG;
        }
        const char *cands[256];
        int n = 0;
        char list[300] = "";
        size_t k = 0;
        for (int i = 0; i < r->n_stmts && n < 256; i++)
            if (r->stmts[i]->kind == ST_HYPER && r->stmts[i]->names[0]) {
                cands[n++] = r->stmts[i]->names[0];
                if (k < sizeof list)
                    k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", n > 1 ? ", " : "",
                                          r->stmts[i]->names[0]);
            }
        const char *s = rl_suggest(name, cands, n);
        char hint[400];
        if (s) snprintf(hint, sizeof hint, "did you mean '%s'?", s);
        else if (n) snprintf(hint, sizeof hint, "this recipe's hypers: %s", list);
        else snprintf(hint, sizeof hint, "this recipe declares no hypers");
        rl_diag_add(r, &ov.src, RL_DIAG_ERROR, ov.nsp, hint, "unknown hyper '%s'", name);
        return RL_ERR_ARG;
    }
    bool is_str = decl->expr && decl->expr->kind == AST_STR;
    /* lex and parse "name=value" in a scratch recipe first, so that a bad value
     * gives one message of ours instead of the parser's */
    rl_recipe *tmp = calloc(1, sizeof(rl_recipe));
    if (!tmp) return RL_ERR_MEMORY;
    rl_token *toks = NULL;
    int nt = rl_lex(tmp, &ov.src, &toks);
    int pos = 2;
    rl_ast *e = NULL;
    if (tmp->n_errors == 0 && nt > 2 && toks[2].kind != TK_EOF) {
        e = rl_parse_expr_tokens(tmp, &ov.src, toks, nt, &pos);
        if (e && toks[pos].kind != TK_EOF) e = NULL;
    }
    bool bare = nt == 4 && toks[2].kind == TK_NAME;
    const char *why = NULL;
    if (nt <= 3) why = "the value is empty";
    else if (is_str && !bare && !(nt == 4 && toks[2].kind == TK_STR)) why = "expected a string (a word such as k3)";
    else if (!is_str && !e) why = "expected a number or a constant expression (0.05, 1/20, log(5))";
    else if (!is_str && bare) {
        rl_stmt_kind k2 = ST_HYPER;
        const rl_stmt *other = find_decl(r, toks[2].s, &k2);
        bool is_bool = strcmp(toks[2].s, "true") == 0 || strcmp(toks[2].s, "false") == 0;
        if (!is_bool && (!other || k2 != ST_HYPER)) why = "expected a number";
    }
    if (why) {
        rl_diag_add(r, &ov.src, RL_DIAG_ERROR, ov.vsp,
                    is_str ? "e.g. --set kl=k3" : "e.g. --set beta=0.05",
                    "bad value '%s' for hyper '%s': %s", value, name, why);
        free(toks);
        rl_recipe_free(tmp);
        return RL_ERR_ARG;
    }
    /* parse again for keeps, in r's pool */
    ov.name = rl_rpool_strdup(&r->pool, name);
    ov.bare = bare;
    ov.word = bare ? rl_rpool_strdup(&r->pool, toks[2].s) : NULL;
    if (nt == 4 && toks[2].kind == TK_STR) {
        ov.bare = true;
        ov.word = rl_rpool_strdup(&r->pool, toks[2].s);
    }
    free(toks);
    rl_recipe_free(tmp);
    toks = NULL;
    rl_recipe *r2 = r; /* re-lex into r's pool (no errors: it lexed cleanly above) */
    nt = rl_lex(r2, &ov.src, &toks);
    pos = 2;
    ov.expr = rl_parse_expr_tokens(r2, &ov.src, toks, nt, &pos);
    free(toks);
    for (int i = 0; i < r->n_ov; i++)
        if (strcmp(r->ov[i].name, ov.name) == 0) {
            r->ov[i] = ov; /* the last --set of a name wins */
            return RL_OK;
        }
    *slot = ov;
    r->n_ov++;
    return RL_OK;
}

rl_status rl_recipe_set_arg(rl_recipe *r, const char *arg) {
    if (!r || !arg) return RL_ERR_ARG;
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        rl_source src = {"--set", rl_rpool_strdup(&r->pool, arg), (int)strlen(arg)};
        rl_diag_add(r, &src, RL_DIAG_ERROR, (rl_span){0, src.len, 1, 1}, "write --set name=value",
                    "expected name=value, got '%s'", arg);
        return RL_ERR_ARG;
    }
    char *name = rl_rpool_strndup(&r->pool, arg, (size_t)(eq - arg));
    return rl_recipe_set(r, name, eq + 1);
}

/* ---- compiling ------------------------------------------------------------------------- */

rl_recipe_opts rl_recipe_opts_default(void) {
    rl_recipe_opts o;
    memset(&o, 0, sizeof o);
    o.dtype = RL_F32;
    return o;
}

static void build_nodes(rl_recipe_program *p) {
    p->nodes = rl_rpool_alloc(&p->pool, sizeof(rl_recipe_node) * (size_t)(p->n_ir + 1));
    static const char *const fields[] = {"ids", "mask", "attn"};
    for (int i = 0; i < p->n_ir; i++) {
        const rl_ir *in = &p->ir[i];
        rl_recipe_node *n = &p->nodes[i];
        switch (in->code) {
        case IR_INPUT: n->op = "input"; break;
        case IR_PARAM: n->op = "param"; break;
        case IR_MODEL: n->op = "model"; break;
        case IR_CONST: n->op = rl_rpool_printf(&p->pool, "%g", in->num); break;
        case IR_FIELD: n->op = fields[in->op]; break;
        case IR_CONVERT: n->op = "float"; break;
        case IR_OP: n->op = rl_op_table[in->op].name; break;
        case IR_FN: n->op = p->fnv[in->op]->name; break;
        }
        n->name = p->slots[in->out].name;
        int *ins = rl_rpool_alloc(&p->pool, sizeof(int) * (size_t)(in->n_args + 1));
        for (int a = 0; a < in->n_args; a++) ins[a] = p->slots[in->args[a]].ir;
        n->n_in = in->n_args;
        n->in = ins;
        n->phase = in->phase;
        n->line = in->sp.line;
        n->col = in->sp.col;
        n->start = in->sp.start;
        n->end = in->sp.end;
        n->shape = p->slots[in->out].shape;
    }
}

/* Binds every extern through the caller's bridge (opts.externs); what it
 * cannot bind is an error at the part of the declaration it names. */
static void bind_externs(rl_recipe_program *p) {
    const rl_recipe_extern_bridge *b = p->opts.externs;
    rl_recipe *r = p->r;
    if (!b || !b->bind) return;
    for (int i = 0; i < p->n_externs; i++) {
        rl_extern_decl *x = p->externs[i];
        const rl_stmt *st = NULL;
        for (int k = 0; k < r->n_stmts && !st; k++)
            if (r->stmts[k]->kind == ST_EXTERN && r->stmts[k]->names[0] &&
                strcmp(r->stmts[k]->names[0], x->info.name) == 0)
                st = r->stmts[k];
        rl_recipe_extern_error err;
        memset(&err, 0, sizeof err);
        x->handle = b->bind(b->user, &x->info, r->src.name, p->opts.dtype, &err);
        if (x->handle || !st) continue;
        rl_span sp = err.at == RL_EXTERN_AT_LIB ? st->libsp : err.at == RL_EXTERN_AT_BACKWARD ? st->bsp : st->nsp[0];
        if (err.msg[0])
            rl_diag_add(r, &r->src, RL_DIAG_ERROR, sp, err.hint[0] ? err.hint : NULL, "%s", err.msg);
        else
            rl_diag_add(r, &r->src, RL_DIAG_ERROR, sp, NULL, "extern '%s' cannot be bound", x->info.name);
    }
}

rl_recipe_program *rl_recipe_compile(rl_recipe *r, rl_ctx *ctx, const rl_recipe_opts *opts) {
    if (!r || !ctx) return NULL;
    int errors0 = r->n_errors;
    rl_recipe_program *p = calloc(1, sizeof(rl_recipe_program));
    if (!p) return NULL;
    p->r = r;
    p->ctx = ctx;
    p->opts = opts ? *opts : rl_recipe_opts_default();
    if (p->opts.dtype != RL_F64) p->opts.dtype = RL_F32;
    p->fns = p->opts.fns;
    p->kind = r->kind;
    p->name = r->name ? r->name : "";
    rl_check(p);
    /* externs bind only through the caller's bridge */
    bind_externs(p);
    /* the audit and the shape check need a complete program: no errors at all
     * (syntax errors included) */
    if (r->n_errors == 0) rl_audit(p);
    if (r->n_errors == 0 && !p->opts.no_dry_run) rl_dry_run(p);
    if (r->n_errors > errors0 || r->n_errors > 0) {
        rl_recipe_program_free(p);
        return NULL;
    }
    /* the params, in the caller's context */
    for (int i = 0; i < p->n_params; i++) {
        rl_param_decl *d = &p->params[i];
        d->info.tensor = rl_param_new(ctx, p->opts.dtype, d->ndim, d->shape, d->info.name);
        if (!d->info.tensor) {
            rl_recipe_program_free(p);
            return NULL;
        }
        rl_tensor_fill(ctx, d->info.tensor, d->init);
    }
    build_nodes(p);
    p->vals = calloc((size_t)p->n_slots + 1, sizeof(rl_recipe_value));
    p->roll = calloc((size_t)p->n_slots + 1, sizeof(rl_recipe_value));
    if (!p->vals || !p->roll) {
        rl_recipe_program_free(p);
        return NULL;
    }
    return p;
}

static void free_kept(rl_recipe_program *p) {
    for (int i = 0; i < p->n_kept; i++) rl_tensor_free(p->kept_ctx, p->kept[i]);
    p->n_kept = 0;
}

void rl_recipe_program_free(rl_recipe_program *p) {
    if (!p) return;
    free_kept(p);
    const rl_recipe_extern_bridge *b = p->opts.externs;
    for (int i = 0; i < p->n_externs; i++)
        if (p->externs[i]->handle && b && b->release) b->release(p->externs[i]->handle);
    for (int i = 0; i < p->n_ir; i++)
        if (p->ir[i].state && p->ir[i].code == IR_FN && p->fnv[p->ir[i].op]->free_state)
            p->fnv[p->ir[i].op]->free_state(p->ir[i].state);
    for (int i = 0; i < p->n_params; i++) rl_tensor_free(p->ctx, p->params[i].info.tensor);
    free(p->inputs);
    free(p->models);
    free(p->params);
    free(p->hypers);
    free(p->externs);
    free(p->train);
    free(p->fnv);
    free(p->fnv_user);
    free(p->lits);
    free(p->ir);
    free(p->slots);
    free(p->named);
    free(p->losses);
    free(p->metrics);
    free(p->dims);
    free(p->vals);
    free(p->roll);
    free(p->kept);
    free(p->err);
    rl_rpool_free(&p->pool);
    free(p);
}

/* ---- what a program declares ------------------------------------------------------------ */

rl_recipe_kind rl_recipe_program_kind(const rl_recipe_program *p) { return p->kind; }
const char *rl_recipe_program_name(const rl_recipe_program *p) { return p->name; }
int rl_recipe_n_inputs(const rl_recipe_program *p) { return p->n_inputs; }
const rl_recipe_input_info *rl_recipe_input_at(const rl_recipe_program *p, int i) {
    return i >= 0 && i < p->n_inputs ? &p->inputs[i].info : NULL;
}
int rl_recipe_n_models(const rl_recipe_program *p) { return p->n_models; }
const rl_recipe_model_info *rl_recipe_model_at(const rl_recipe_program *p, int i) {
    return i >= 0 && i < p->n_models ? &p->models[i].info : NULL;
}
int rl_recipe_n_params(const rl_recipe_program *p) { return p->n_params; }
const rl_recipe_param_info *rl_recipe_param_at(const rl_recipe_program *p, int i) {
    return i >= 0 && i < p->n_params ? &p->params[i].info : NULL;
}
int rl_recipe_n_hypers(const rl_recipe_program *p) { return p->n_hypers; }
const rl_recipe_hyper_info *rl_recipe_hyper_at(const rl_recipe_program *p, int i) {
    return i >= 0 && i < p->n_hypers ? &p->hypers[i] : NULL;
}
const rl_recipe_hyper_info *rl_recipe_hyper(const rl_recipe_program *p, const char *name) {
    for (int i = 0; name && i < p->n_hypers; i++)
        if (strcmp(p->hypers[i].name, name) == 0) return &p->hypers[i];
    return NULL;
}
int rl_recipe_n_losses(const rl_recipe_program *p) { return p->n_losses; }
const rl_recipe_loss_info *rl_recipe_loss_at(const rl_recipe_program *p, int i) {
    return i >= 0 && i < p->n_losses ? &p->losses[i].info : NULL;
}
int rl_recipe_n_metrics(const rl_recipe_program *p) { return p->n_metrics; }
const char *rl_recipe_metric_name(const rl_recipe_program *p, int i) {
    return i >= 0 && i < p->n_metrics ? p->metrics[i].name : NULL;
}
int rl_recipe_n_externs(const rl_recipe_program *p) { return p->n_externs; }
const rl_recipe_extern *rl_recipe_extern_at(const rl_recipe_program *p, int i) {
    return i >= 0 && i < p->n_externs ? &p->externs[i]->info : NULL;
}
int rl_recipe_n_nodes(const rl_recipe_program *p) { return p->n_ir; }
const rl_recipe_node *rl_recipe_node_at(const rl_recipe_program *p, int i) {
    return i >= 0 && i < p->n_ir ? &p->nodes[i] : NULL;
}

/* ---- run-time errors --------------------------------------------------------------------- */

/* Records "file:line:col: error: msg" with the source line and a caret. */
static rl_status fail_at(rl_recipe_program *p, rl_status st, const rl_span *sp, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static rl_status fail_at(rl_recipe_program *p, rl_status st, const rl_span *sp, const char *fmt, ...) {
    char msg[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    free(p->err);
    p->err = NULL;
    if (!sp) {
        size_t n = strlen(msg) + strlen(p->r->src.name) + 16;
        p->err = malloc(n);
        if (p->err) snprintf(p->err, n, "%s: error: %s\n", p->r->src.name, msg);
        return st;
    }
    const rl_source *src = &p->r->src;
    int ls = sp->start, le = sp->start;
    while (ls > 0 && src->text[ls - 1] != '\n') ls--;
    while (le < src->len && src->text[le] != '\n') le++;
    char *line = strndup(src->text + ls, (size_t)(le - ls));
    rl_recipe_diag d = {RL_DIAG_ERROR, src->name, sp->line, sp->col,
                        sp->col + (sp->end > le ? le : sp->end) - sp->start, msg, NULL, line};
    if (d.end_col <= d.col) d.end_col = d.col + 1;
    int need = rl_recipe_format_diag(&d, NULL, 0);
    p->err = malloc((size_t)need + 1);
    if (p->err) rl_recipe_format_diag(&d, p->err, (size_t)need + 1);
    free(line);
    return st;
}

const char *rl_recipe_program_error(const rl_recipe_program *p) { return p ? p->err : NULL; }

/* ---- binding --------------------------------------------------------------------------------- */

static rl_input_decl *find_input(rl_recipe_program *p, const char *name) {
    for (int i = 0; name && i < p->n_inputs; i++)
        if (strcmp(p->inputs[i].info.name, name) == 0) return &p->inputs[i];
    return NULL;
}

rl_status rl_recipe_bind_model(rl_recipe_program *p, const char *name, void *model) {
    if (!p || !name) return RL_ERR_ARG;
    for (int i = 0; i < p->n_models; i++)
        if (strcmp(p->models[i].info.name, name) == 0) {
            p->models[i].handle = model;
            return RL_OK;
        }
    return fail_at(p, RL_ERR_ARG, NULL, "no model called '%s' is declared", name);
}

/* Checks t against a declared type (dtype, ndim, literal sizes). */
static rl_status check_bound(rl_recipe_program *p, const rl_input_decl *d, const char *field,
                             const rl_tensor *t) {
    const rl_recipe_type *ty = &d->info.type;
    char desc[96];
    if (!t || t->magic != RL_TENSOR_MAGIC)
        return fail_at(p, RL_ERR_ARG, NULL, "input '%s%s%s': no live tensor was given", d->info.name,
                       field ? "." : "", field ? field : "");
    rl_dtype want = ty->tokens || ty->is_int ? RL_I32 : p->opts.dtype;
    bool ok = t->dtype == want && t->ndim == ty->ndim;
    for (int k = 0; ok && k < ty->ndim; k++)
        if (!ty->dims[k] && ty->sizes[k] != t->shape[k]) ok = false;
    if (!ok) {
        rl_tensor_describe(t, desc, sizeof desc);
        char w[96];
        int k = snprintf(w, sizeof w, "%s [", rl_dtype_name(want));
        for (int i = 0; i < ty->ndim && k < (int)sizeof w; i++) {
            if (ty->dims[i]) k += snprintf(w + k, sizeof w - (size_t)k, i ? ", %s" : "%s", ty->dims[i]);
            else k += snprintf(w + k, sizeof w - (size_t)k, i ? ", %lld" : "%lld", (long long)ty->sizes[i]);
        }
        if (k < (int)sizeof w) snprintf(w + k, sizeof w - (size_t)k, "]");
        return fail_at(p, RL_ERR_ARG, &d->sp, "input '%s%s%s' is %s, but the recipe declares %s",
                       d->info.name, field ? "." : "", field ? field : "", desc, w);
    }
    return RL_OK;
}

rl_status rl_recipe_bind_tensor(rl_recipe_program *p, const char *name, rl_tensor *t) {
    if (!p) return RL_ERR_ARG;
    rl_input_decl *d = find_input(p, name);
    if (!d) return fail_at(p, RL_ERR_ARG, NULL, "no input called '%s' is declared", name ? name : "?");
    if (d->info.type.tokens)
        return fail_at(p, RL_ERR_ARG, &d->sp, "input '%s' is a token batch: bind it with rl_recipe_bind_tokens",
                       name);
    rl_status st = check_bound(p, d, NULL, t);
    if (st) return st;
    d->bound.kind = RL_RV_TENSOR;
    d->bound.t = t;
    return RL_OK;
}

rl_status rl_recipe_bind_tokens(rl_recipe_program *p, const char *name, rl_tensor *ids,
                                rl_tensor *mask, rl_tensor *attn) {
    if (!p) return RL_ERR_ARG;
    rl_input_decl *d = find_input(p, name);
    if (!d) return fail_at(p, RL_ERR_ARG, NULL, "no input called '%s' is declared", name ? name : "?");
    if (!d->info.type.tokens)
        return fail_at(p, RL_ERR_ARG, &d->sp, "input '%s' is a tensor: bind it with rl_recipe_bind_tensor",
                       name);
    rl_status st = check_bound(p, d, "ids", ids);
    if (!st && mask) st = check_bound(p, d, "mask", mask);
    if (!st) st = check_bound(p, d, "attn", attn);
    if (st) return st;
    if ((mask && !rl_shape_equal(2, mask->shape, 2, ids->shape)) || !rl_shape_equal(2, attn->shape, 2, ids->shape))
        return fail_at(p, RL_ERR_ARG, &d->sp, "input '%s': ids, mask and attn must have one shape [B, T]",
                       name);
    d->bound.kind = RL_RV_TOKENS;
    d->bound.tok = (rl_recipe_tokens){ids, mask, attn};
    return RL_OK;
}

/* Symbolic dims must agree across the inputs of a run. */
static rl_status check_dims(rl_recipe_program *p) {
    for (int d = 0; d < p->n_dims; d++) p->dims[d].size = p->dims[d].fixed > 0 ? p->dims[d].fixed : -1;
    const char **who = calloc((size_t)p->n_dims + 1, sizeof(char *));
    if (!who) return RL_ERR_MEMORY;
    rl_status st = RL_OK;
    for (int i = 0; i < p->n_inputs && !st; i++) {
        const rl_input_decl *in = &p->inputs[i];
        if (!in->used) continue;
        const rl_recipe_value *v = &in->bound;
        if (v->kind == RL_RV_NONE) {
            st = fail_at(p, RL_ERR_STATE, &in->sp, "input '%s' is not bound", in->info.name);
            break;
        }
        const rl_tensor *t = v->kind == RL_RV_TENSOR ? v->t : v->tok.ids;
        for (int k = 0; k < in->info.type.ndim; k++) {
            const char *nm = in->info.type.dims[k];
            if (!nm) continue;
            for (int d = 0; d < p->n_dims; d++) {
                if (strcmp(p->dims[d].name, nm) != 0) continue;
                if (p->dims[d].size < 0) {
                    p->dims[d].size = t->shape[k];
                    who[d] = in->info.name;
                } else if (p->dims[d].size != t->shape[k] && !who[d]) {
                    st = fail_at(p, RL_ERR_ARG, &in->sp, "input '%s' has %s = %lld, but the hyper %s is %lld",
                                 in->info.name, nm, (long long)t->shape[k], nm, (long long)p->dims[d].size);
                } else if (p->dims[d].size != t->shape[k]) {
                    st = fail_at(p, RL_ERR_ARG, &in->sp,
                                 "input '%s' has %s = %lld, but input '%s' has %s = %lld", in->info.name,
                                 nm, (long long)t->shape[k], who[d], nm, (long long)p->dims[d].size);
                }
            }
        }
    }
    free(who);
    return st;
}

static rl_status check_models(rl_recipe_program *p) {
    for (int i = 0; i < p->n_models; i++)
        if (p->models[i].used && !p->models[i].handle)
            return fail_at(p, RL_ERR_STATE, &p->models[i].sp,
                           "model '%s' is not bound (rl_recipe_bind_model)", p->models[i].info.name);
    return RL_OK;
}

/* Rows [r0, r1) of the batch (prompts) of a value whose first dim is B or,
 * for groups, B*G: then rows [r0 * G, r1 * G), each prompt's G samples. */
static rl_status slice_rows(const rl_recipe_program *p, rl_ctx *ctx, int slot, rl_recipe_value *v, int64_t r0,
                            int64_t r1) {
    int g = p->slots[slot].batch_group;
    if (g >= 0) {
        int64_t G = p->dims[g].fixed > 0 ? p->dims[g].fixed : 1;
        r0 *= G, r1 *= G;
    }
    if (v->kind == RL_RV_TENSOR) v->t = rl_slice(ctx, v->t, 0, r0, r1);
    else if (v->kind == RL_RV_TOKENS) {
        v->tok.ids = rl_slice(ctx, v->tok.ids, 0, r0, r1);
        if (v->tok.mask) v->tok.mask = rl_slice(ctx, v->tok.mask, 0, r0, r1);
        v->tok.attn = rl_slice(ctx, v->tok.attn, 0, r0, r1);
    }
    return rl_ctx_status(ctx);
}

/* Fills the leaves (inputs, params, models) of a pass. */
static rl_status fill_leaves(rl_recipe_program *p, rl_ctx *ctx, bool use_kept, int64_t r0, int64_t r1) {
    for (int i = 0; i < p->n_inputs; i++) {
        rl_input_decl *in = &p->inputs[i];
        rl_recipe_value v = use_kept && in->kept.kind ? in->kept : in->bound;
        if (r0 >= 0 && p->slots[in->slot].batch && v.kind != RL_RV_NONE) {
            rl_status st = slice_rows(p, ctx, in->slot, &v, r0, r1);
            if (st) return st;
        }
        p->vals[in->slot] = v;
    }
    for (int i = 0; i < p->n_params; i++) {
        p->vals[p->params[i].slot].kind = RL_RV_TENSOR;
        p->vals[p->params[i].slot].t = p->params[i].info.tensor;
    }
    for (int i = 0; i < p->n_models; i++) {
        rl_recipe_value *v = &p->vals[p->models[i].slot];
        v->kind = RL_RV_MODEL;
        v->model = p->models[i].handle;
        v->model_kind = p->models[i].info.kind;
    }
    return RL_OK;
}

rl_status rl_recipe_run_rollout(rl_recipe_program *p, rl_ctx *ctx) {
    if (!p || !ctx) return RL_ERR_ARG;
    if (p->kind != RL_RECIPE_ONLINE) return RL_OK;
    rl_status st = check_dims(p);
    if (!st) st = check_models(p);
    if (st) return st;
    free_kept(p);
    memset(p->roll, 0, sizeof(rl_recipe_value) * (size_t)p->n_slots);
    /* the inputs are copied first: generation resets the arena */
    for (int i = 0; i < p->n_inputs; i++) {
        rl_input_decl *in = &p->inputs[i];
        in->kept = in->bound;
        rl_recipe_value *v = &in->kept;
        rl_tensor **ts[3] = {&v->t, &v->tok.ids, &v->tok.attn};
        rl_tensor **tm = &v->tok.mask;
        for (int k = 0; k < 4; k++) {
            rl_tensor **t = k < 3 ? ts[k] : tm;
            if (!*t || ((*t)->flags & RL_TF_PERSISTENT)) continue;
            rl_tensor *c = rl_tensor_clone(ctx, *t, NULL);
            if (!c) return fail_at(p, rl_ctx_status(ctx), &in->sp, "%s", rl_ctx_error(ctx));
            rl_grow(&p->kept, &p->cap_kept, p->n_kept + 1, sizeof(rl_tensor *));
            p->kept[p->n_kept++] = c;
            p->kept_ctx = ctx;
            *t = c;
        }
    }
    fill_leaves(p, ctx, true, -1, -1);
    int bad = -1;
    char msg[1200];
    st = rl_eval_phase(p, ctx, PH_ROLLOUT, NULL, NULL, &bad, msg, sizeof msg);
    if (st) {
        p->rolled_out = false;
        const rl_ir *in = &p->ir[bad];
        if (in->in_fn) return fail_at(p, st, &in->sp, "in %s: %s", in->in_fn, msg);
        return fail_at(p, st, &in->sp, "%s", msg);
    }
    for (int s = 0; s < p->n_slots; s++)
        if (p->slots[s].phase == PH_ROLLOUT) p->roll[s] = p->vals[s];
    p->rolled_out = true;
    return RL_OK;
}

rl_status rl_recipe_run_loss(rl_recipe_program *p, rl_ctx *ctx, int64_t row0, int64_t row1) {
    if (!p || !ctx) return RL_ERR_ARG;
    bool online = p->kind == RL_RECIPE_ONLINE;
    if (online && !p->rolled_out)
        return fail_at(p, RL_ERR_STATE, NULL, "run the rollout (rl_recipe_run_rollout) before the loss");
    rl_status st = online ? RL_OK : check_dims(p);
    if (!st) st = check_models(p);
    if (st) return st;
    if (row0 >= 0 || row1 >= 0) {
        int64_t B = -1;
        for (int d = 0; d < p->n_dims; d++)
            if (strcmp(p->dims[d].name, "B") == 0) B = p->dims[d].size;
        if (B < 0)
            return fail_at(p, RL_ERR_ARG, NULL, "rows were given but the recipe's inputs have no dim B");
        if (row0 < 0 || row1 > B || row0 >= row1)
            return fail_at(p, RL_ERR_ARG, NULL, "rows [%lld, %lld) are not a non-empty range within B = %lld",
                           (long long)row0, (long long)row1, (long long)B);
    } else {
        row0 = row1 = -1;
    }
    st = fill_leaves(p, ctx, online, row0, row1);
    for (int s = 0; !st && s < p->n_slots; s++) {
        if (p->slots[s].phase != PH_ROLLOUT) continue;
        p->vals[s] = p->roll[s];
        if (row0 >= 0 && p->slots[s].batch) st = slice_rows(p, ctx, s, &p->vals[s], row0, row1);
    }
    if (st) return fail_at(p, st, NULL, "%s", rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "slicing rows failed");
    for (int i = 0; i < p->n_losses; i++) p->losses[i].value = NULL;
    for (int i = 0; i < p->n_metrics; i++) p->metrics[i].value = NULL;
    int bad = -1;
    char msg[1200];
    st = rl_eval_phase(p, ctx, PH_LOSS, NULL, NULL, &bad, msg, sizeof msg);
    if (st) {
        const rl_ir *in = &p->ir[bad];
        if (in->in_fn) return fail_at(p, st, &in->sp, "in %s: %s", in->in_fn, msg);
        return fail_at(p, st, &in->sp, "%s", msg);
    }
    for (int i = 0; i < p->n_losses; i++) {
        if (p->only && !p->only[p->slots[p->losses[i].slot].ir]) continue; /* not asked for */
        rl_tensor *t = p->vals[p->losses[i].slot].t;
        if (!t || t->numel != 1)
            return fail_at(p, RL_ERR_ARG, &p->losses[i].sp, "loss '%s' is not a scalar",
                           p->losses[i].info.name);
        p->losses[i].value = t;
    }
    for (int i = 0; i < p->n_metrics; i++) p->metrics[i].value = p->vals[p->metrics[i].slot].t;
    return RL_OK;
}

rl_tensor *rl_recipe_loss(const rl_recipe_program *p, int i) {
    return p && i >= 0 && i < p->n_losses ? p->losses[i].value : NULL;
}

rl_tensor *rl_recipe_metric(const rl_recipe_program *p, int i) {
    return p && i >= 0 && i < p->n_metrics ? p->metrics[i].value : NULL;
}

rl_tensor *rl_recipe_value_of(const rl_recipe_program *p, const char *name) {
    if (!p || !name || !p->vals) return NULL;
    for (int i = p->n_named - 1; i >= 0; i--)
        if (strcmp(p->named[i].name, name) == 0) {
            int s = p->named[i].slot;
            if (s < 0) return NULL;
            const rl_recipe_value *v = &p->vals[s];
            return v->kind == RL_RV_TENSOR ? v->t : v->kind == RL_RV_TOKENS ? v->tok.ids : NULL;
        }
    return NULL;
}

rl_status rl_recipe_backward(rl_recipe_program *p, rl_ctx *ctx) {
    if (!p || !ctx) return RL_ERR_ARG;
    rl_tensor *total = NULL;
    for (int i = 0; i < p->n_losses; i++) {
        rl_tensor *l = p->losses[i].value;
        if (!l) return fail_at(p, RL_ERR_STATE, NULL, "run the loss (rl_recipe_run_loss) before backward");
        if (l->ndim != 0) l = rl_reshape(ctx, l, 0, NULL);
        total = total ? rl_add(ctx, total, l) : l;
    }
    if (!total) return fail_at(p, RL_ERR_STATE, NULL, "the recipe has no loss");
    rl_status st = rl_backward(ctx, total);
    if (st) return fail_at(p, st, NULL, "backward: %s", rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "failed");
    p->step++; /* one policy step (safe-rlhf's global_step): what step() reads */
    return RL_OK;
}

int64_t rl_recipe_step(const rl_recipe_program *p) { return p ? p->step : 0; }

void rl_recipe_set_step(rl_recipe_program *p, int64_t step) {
    if (p) p->step = step < 0 ? 0 : step;
}

rl_status rl_recipe_project_params(rl_recipe_program *p, rl_ctx *ctx) {
    if (!p || !ctx) return RL_ERR_ARG;
    for (int i = 0; i < p->n_params; i++) {
        const rl_recipe_param_info *pi = &p->params[i].info;
        if (!pi->has_min && !pi->has_max) continue;
        for (int64_t e = 0; e < pi->tensor->numel; e++) {
            double x = rl_tensor_get(ctx, pi->tensor, e);
            double y = x < pi->min ? pi->min : x > pi->max ? pi->max : x;
            if (y != x) rl_tensor_set(ctx, pi->tensor, e, y);
        }
    }
    return RL_OK;
}

/* ---- state of stateful functions ------------------------------------------------------------ */

/* The instruction of stateful call site i, or -1. */
static int state_ir(const rl_recipe_program *p, int i) {
    for (int k = 0, seen = 0; p && k < p->n_ir; k++) {
        const rl_ir *in = &p->ir[k];
        if (in->code != IR_FN || !(p->fnv[in->op]->flags & RL_RFN_STATEFUL)) continue;
        if (seen++ == i) return k;
    }
    return -1;
}

int rl_recipe_n_states(const rl_recipe_program *p) {
    int n = 0;
    while (state_ir(p, n) >= 0) n++;
    return n;
}

const char *rl_recipe_state_name(const rl_recipe_program *p, int i) {
    int k = i >= 0 ? state_ir(p, i) : -1;
    if (k < 0) return NULL;
    const rl_ir *in = &p->ir[k];
    /* a pool copy per call is fine: checkpoints ask a few times per run */
    return rl_rpool_printf((rl_rpool *)&p->pool, "%s@%d:%d", p->fnv[in->op]->name, in->sp.line, in->sp.col);
}

rl_status rl_recipe_state_save(const rl_recipe_program *p, int i, double **out, size_t *n) {
    if (!out || !n) return RL_ERR_ARG;
    *out = NULL, *n = 0;
    int k = i >= 0 ? state_ir(p, i) : -1;
    if (k < 0) return RL_ERR_ARG;
    const rl_recipe_fn *fn = p->fnv[p->ir[k].op];
    if (!p->ir[k].state || !fn->save_state) return RL_OK;
    *out = fn->save_state(p->ir[k].state, n);
    return *out ? RL_OK : RL_ERR_MEMORY;
}

rl_status rl_recipe_state_load(rl_recipe_program *p, int i, const double *v, size_t n) {
    int k = i >= 0 ? state_ir(p, i) : -1;
    if (k < 0 || (n && !v)) return RL_ERR_ARG;
    rl_ir *in = &p->ir[k];
    const rl_recipe_fn *fn = p->fnv[in->op];
    void *s = NULL;
    if (n) {
        if (!fn->load_state) return RL_ERR_ARG;
        if (!(s = fn->load_state(v, n))) return RL_ERR_ARG;
    }
    if (in->state && fn->free_state) fn->free_state(in->state);
    in->state = s;
    return RL_OK;
}
