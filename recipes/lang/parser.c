/* recipes/lang/parser.c - recursive-descent parser: tokens -> the header, the
 * declarations and the statements of a recipe (grammar in docs/recipes.md).
 *
 * Statements are not separated by newlines or ';': an expression ends where
 * the next token cannot continue it (two statements may share a line, and a
 * line that starts with an operator continues the previous expression).
 * After a syntax error the parser records one message and skips to the next
 * token that starts a line with a name (or to a '}'), so one file reports
 * every broken statement, not only the first.
 */
#include "recipe_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RL_MAX_NESTING 200
/* Operators in one statement: a long chain a + b + c ... is a left-deep tree
 * that the checker walks recursively, so its length is bounded too. */
#define RL_MAX_OPERATORS 4000

typedef struct rl_parser {
    rl_recipe *r;
    const rl_source *src;
    rl_token *t;
    int n, pos;
    bool err;       /* the current statement has an error (already reported) */
    int err_tok;    /* the token of the last syntax error, or -1 */
    int depth;      /* expression nesting */
    int n_ops;      /* binary operators in the current statement */
    int block;      /* BLK_* */
    rl_span block_sp;
} rl_parser;

static rl_token *cur(rl_parser *p) { return &p->t[p->pos]; }
static rl_token *peek(rl_parser *p, int k) {
    int i = p->pos + k;
    return &p->t[i < p->n ? i : p->n - 1];
}
static void adv(rl_parser *p) {
    if (p->pos < p->n - 1) p->pos++;
}
static bool is(rl_parser *p, rl_tk k) { return cur(p)->kind == k; }
static bool is_name(rl_parser *p, const char *s) {
    return cur(p)->kind == TK_NAME && strcmp(cur(p)->s, s) == 0;
}

/* "'loss'", "'('", "end of file": what was found, for messages. */
static const char *tok_desc(rl_parser *p, const rl_token *t) {
    if (t->kind == TK_EOF) return "end of file";
    int len = t->sp.end - t->sp.start;
    if (len > 30) len = 30;
    return rl_rpool_printf(&p->r->pool, "'%.*s'", len, p->src->text + t->sp.start);
}

/* Reports a syntax error at the current token (once per statement). */
static void perr(rl_parser *p, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void perr(rl_parser *p, const char *hint, const char *fmt, ...) {
    if (p->err) return;
    p->err = true;
    p->err_tok = p->pos;
    for (int i = 0; i < p->r->n_lex_err_lines; i++)
        if (p->r->lex_err_lines[i] == cur(p)->sp.line && p->src == &p->r->src) return;
    va_list ap;
    va_start(ap, fmt);
    rl_diag_vadd(p->r, p->src, RL_DIAG_ERROR, cur(p)->sp, hint, fmt, ap);
    va_end(ap);
}

static bool expect(rl_parser *p, rl_tk k, const char *what) {
    if (is(p, k)) {
        adv(p);
        return true;
    }
    perr(p, NULL, "expected %s %s, got %s", rl_tk_text(k), what, tok_desc(p, cur(p)));
    return false;
}

static rl_span join(rl_span a, rl_span b) {
    rl_span s = a;
    if (b.end > s.end) s.end = b.end;
    return s;
}

/* The span from token `from` to the last consumed token. */
static rl_span span_from(rl_parser *p, int from) {
    int last = p->pos > from ? p->pos - 1 : from;
    return join(p->t[from].sp, p->t[last].sp);
}

static rl_ast *new_ast(rl_parser *p, rl_ast_kind k, rl_span sp) {
    rl_ast *a = rl_rpool_alloc(&p->r->pool, sizeof(rl_ast));
    a->kind = k;
    a->sp = sp;
    a->nsp = sp;
    return a;
}

/* ---- expressions --------------------------------------------------------------- */

static rl_ast *parse_expr(rl_parser *p);

static rl_ast *parse_call(rl_parser *p, int from) {
    rl_token *name = &p->t[from];
    int open = p->pos;
    adv(p); /* '(' */
    rl_ast **args = NULL;
    const char **kw = NULL;
    rl_span *kwsp = NULL;
    int n = 0, cap_a = 0, cap_k = 0, cap_s = 0;
    bool seen_kw = false;
    if (!is(p, TK_RPAREN)) {
        for (;;) {
            const char *k = NULL;
            rl_span ks = {0};
            if (is(p, TK_NAME) && peek(p, 1)->kind == TK_ASSIGN) {
                k = cur(p)->s;
                ks = cur(p)->sp;
                adv(p), adv(p);
                seen_kw = true;
            } else if (seen_kw) {
                perr(p, "write positional arguments first, then name = value ones",
                     "positional argument after a keyword argument");
                free(args), free(kw), free(kwsp);
                return NULL;
            }
            rl_ast *a = parse_expr(p);
            if (!a) {
                free(args), free(kw), free(kwsp);
                return NULL;
            }
            rl_grow(&args, &cap_a, n + 1, sizeof(rl_ast *));
            rl_grow(&kw, &cap_k, n + 1, sizeof(char *));
            rl_grow(&kwsp, &cap_s, n + 1, sizeof(rl_span));
            args[n] = a, kw[n] = k, kwsp[n] = ks;
            n++;
            if (is(p, TK_COMMA)) {
                adv(p);
                continue;
            }
            break;
        }
    }
    if (!is(p, TK_RPAREN)) {
        rl_token *o = &p->t[open];
        perr(p, NULL, "expected ')' to close the call of '%s' at %d:%d, got %s", name->s, o->sp.line,
             o->sp.col, tok_desc(p, cur(p)));
        free(args), free(kw), free(kwsp);
        return NULL;
    }
    adv(p);
    rl_ast *c = new_ast(p, AST_CALL, span_from(p, from));
    c->s = name->s;
    c->nsp = name->sp;
    c->n = n;
    /* move the argument arrays into the pool */
    c->args = rl_rpool_alloc(&p->r->pool, sizeof(rl_ast *) * (size_t)(n ? n : 1));
    c->kw = rl_rpool_alloc(&p->r->pool, sizeof(char *) * (size_t)(n ? n : 1));
    c->kwsp = rl_rpool_alloc(&p->r->pool, sizeof(rl_span) * (size_t)(n ? n : 1));
    if (n) {
        memcpy(c->args, args, sizeof(rl_ast *) * (size_t)n);
        memcpy(c->kw, kw, sizeof(char *) * (size_t)n);
        memcpy(c->kwsp, kwsp, sizeof(rl_span) * (size_t)n);
    }
    free(args), free(kw), free(kwsp);
    return c;
}

static rl_ast *parse_primary(rl_parser *p) {
    int from = p->pos;
    rl_token *t = cur(p);
    switch (t->kind) {
    case TK_NUM: {
        adv(p);
        rl_ast *a = new_ast(p, AST_NUM, t->sp);
        a->num = t->num;
        a->is_int = t->is_int;
        return a;
    }
    case TK_STR: {
        adv(p);
        rl_ast *a = new_ast(p, AST_STR, t->sp);
        a->s = t->s;
        return a;
    }
    case TK_NAME: {
        adv(p);
        if (is(p, TK_LPAREN)) return parse_call(p, from);
        if (strcmp(t->s, "true") == 0 || strcmp(t->s, "false") == 0) {
            rl_ast *a = new_ast(p, AST_NUM, t->sp);
            a->num = t->s[0] == 't';
            a->is_int = true;
            return a;
        }
        rl_ast *a = new_ast(p, AST_NAME, t->sp);
        a->s = t->s;
        return a;
    }
    case TK_LPAREN: {
        adv(p);
        rl_ast *e = parse_expr(p);
        if (!e) return NULL;
        if (!is(p, TK_RPAREN)) {
            perr(p, NULL, "expected ')' to close the '(' at %d:%d, got %s", t->sp.line, t->sp.col,
                 tok_desc(p, cur(p)));
            return NULL;
        }
        adv(p);
        e->sp = span_from(p, from); /* the parentheses belong to the expression's text */
        return e;
    }
    case TK_LBRACK: {
        adv(p);
        rl_ast *l = new_ast(p, AST_LIST, t->sp);
        rl_ast *items[RL_LIST_MAX_ITEMS];
        int n = 0;
        if (!is(p, TK_RBRACK)) {
            for (;;) {
                if (n == RL_LIST_MAX_ITEMS) {
                    perr(p, "a longer constant belongs in a data column or an input",
                         "lists have at most %d items", RL_LIST_MAX_ITEMS);
                    return NULL;
                }
                rl_ast *e = parse_expr(p);
                if (!e) return NULL;
                items[n++] = e;
                if (!is(p, TK_COMMA)) break;
                adv(p);
            }
        }
        if (!is(p, TK_RBRACK)) {
            perr(p, NULL, "expected ']' to close the '[' at %d:%d, got %s", t->sp.line, t->sp.col,
                 tok_desc(p, cur(p)));
            return NULL;
        }
        adv(p);
        l->sp = span_from(p, from);
        l->n = n;
        l->args = rl_rpool_alloc(&p->r->pool, sizeof(rl_ast *) * (size_t)(n ? n : 1));
        memcpy(l->args, items, sizeof(rl_ast *) * (size_t)n);
        return l;
    }
    default:
        perr(p, NULL, "expected an expression, got %s", tok_desc(p, t));
        return NULL;
    }
}

static rl_ast *parse_postfix(rl_parser *p) {
    int from = p->pos;
    rl_ast *a = parse_primary(p);
    while (a && is(p, TK_DOT)) {
        adv(p);
        if (!is(p, TK_NAME)) {
            perr(p, "fields of a token batch: ids, mask, attn",
                 "expected a field name after '.', got %s", tok_desc(p, cur(p)));
            return NULL;
        }
        rl_ast *m = new_ast(p, AST_MEMBER, a->sp);
        m->a = a;
        m->s = cur(p)->s;
        m->nsp = cur(p)->sp;
        adv(p);
        m->sp = span_from(p, from);
        a = m;
    }
    return a;
}

static rl_ast *parse_unary(rl_parser *p);

static rl_ast *parse_power(rl_parser *p) {
    int from = p->pos;
    rl_ast *a = parse_postfix(p);
    if (a && is(p, TK_CARET)) {
        rl_span op = cur(p)->sp;
        adv(p);
        rl_ast *b = parse_unary(p); /* right-associative: 2^3^2 = 2^(3^2); 2^-1 works */
        if (!b) return NULL;
        rl_ast *e = new_ast(p, AST_BIN, span_from(p, from));
        e->op = TK_CARET;
        e->nsp = op;
        e->a = a, e->b = b;
        return e;
    }
    return a;
}

static rl_ast *parse_unary(rl_parser *p) {
    if (++p->depth > RL_MAX_NESTING) {
        perr(p, "split it into named parts", "expression nested too deeply (more than %d levels)",
             RL_MAX_NESTING);
        p->depth--;
        return NULL;
    }
    rl_ast *r;
    if (is(p, TK_MINUS)) {
        int from = p->pos;
        adv(p);
        rl_ast *a = parse_unary(p);
        if (!a) {
            p->depth--;
            return NULL;
        }
        r = new_ast(p, AST_NEG, span_from(p, from));
        r->nsp = p->t[from].sp;
        r->a = a;
    } else {
        r = parse_power(p);
    }
    p->depth--;
    return r;
}

/* Binary levels, loosest first: == ; < <= > >= ; + - ; * / */
static int bin_level(rl_tk k) {
    switch (k) {
    case TK_EQ: return 0;
    case TK_LT: case TK_LE: case TK_GT: case TK_GE: return 1;
    case TK_PLUS: case TK_MINUS: return 2;
    case TK_STAR: case TK_SLASH: return 3;
    default: return -1;
    }
}

static rl_ast *parse_level(rl_parser *p, int level) {
    if (level > 3) return parse_unary(p);
    int from = p->pos;
    rl_ast *a = parse_level(p, level + 1);
    while (a && bin_level(cur(p)->kind) == level) {
        rl_token *op = cur(p);
        if (++p->n_ops > RL_MAX_OPERATORS) {
            perr(p, "split it into named parts", "expression too long (more than %d operators)",
                 RL_MAX_OPERATORS);
            return NULL;
        }
        adv(p);
        rl_tk nk = cur(p)->kind;
        if (cur(p)->bol && nk == TK_NAME && (peek(p, 1)->kind == TK_ASSIGN || peek(p, 1)->kind == TK_COMMA)) {
            /* "x = a +" then "y = ..." on the next line: the operator has no right side */
            p->pos--;
            perr(p, "a line that ends with an operator continues on the next line",
                 "expected an expression after %s, but the next line starts a new statement",
                 rl_tk_text(op->kind));
            p->pos++;
            return NULL;
        }
        if (nk != TK_NUM && nk != TK_STR && nk != TK_NAME && nk != TK_LPAREN && nk != TK_LBRACK &&
            nk != TK_MINUS) {
            perr(p, NULL, "expected an expression after %s, got %s", rl_tk_text(op->kind),
                 tok_desc(p, cur(p)));
            return NULL;
        }
        rl_ast *b = parse_level(p, level + 1);
        if (!b) return NULL;
        rl_ast *e = new_ast(p, AST_BIN, span_from(p, from));
        e->op = op->kind;
        e->nsp = op->sp;
        e->a = a, e->b = b;
        a = e;
    }
    return a;
}

static rl_ast *parse_expr(rl_parser *p) {
    if (p->err) return NULL;
    return parse_level(p, 0);
}

rl_ast *rl_parse_expr_tokens(rl_recipe *r, const rl_source *src, rl_token *toks, int n, int *pos) {
    rl_parser p = {.r = r, .src = src, .t = toks, .n = n, .pos = *pos, .err_tok = -1};
    rl_ast *e = parse_expr(&p);
    *pos = p.pos;
    return e;
}

/* ---- declarations ------------------------------------------------------------------ */

static bool expect_name(rl_parser *p, const char *what, const char **name, rl_span *sp) {
    if (!is(p, TK_NAME)) {
        perr(p, NULL, "expected %s, got %s", what, tok_desc(p, cur(p)));
        return false;
    }
    *name = cur(p)->s;
    *sp = cur(p)->sp;
    adv(p);
    return true;
}

static rl_stmt *new_stmt(rl_parser *p, rl_stmt_kind k, int from) {
    rl_stmt *s = rl_rpool_alloc(&p->r->pool, sizeof(rl_stmt));
    s->kind = k;
    s->block = p->block;
    s->sp = p->t[from].sp;
    s->n_names = 1;
    s->names = rl_rpool_alloc(&p->r->pool, sizeof(char *));
    s->nsp = rl_rpool_alloc(&p->r->pool, sizeof(rl_span));
    rl_recipe *r = p->r;
    rl_grow(&r->stmts, &r->cap_stmts, r->n_stmts + 1, sizeof(rl_stmt *));
    r->stmts[r->n_stmts++] = s;
    return s;
}

/* tokens [ '[' dim ',' dim ']' ] | (f32|i32) [ '[' dim {',' dim} ']' ] */
static bool parse_type(rl_parser *p, rl_type_ast *ty) {
    memset(ty, 0, sizeof *ty);
    int from = p->pos;
    if (!is(p, TK_NAME)) {
        perr(p, "types: tokens, f32, i32, f32[B], i32[B, T], tokens[B, T2]",
             "expected a type, got %s", tok_desc(p, cur(p)));
        return false;
    }
    const char *w = cur(p)->s;
    if (strcmp(w, "tokens") == 0) ty->tokens = true;
    else if (strcmp(w, "i32") == 0) ty->is_int = true;
    else if (strcmp(w, "f64") == 0 || strcmp(w, "f16") == 0 || strcmp(w, "bf16") == 0) {
        perr(p, "write f32: in a recipe it means the run's float dtype (f64 under gradcheck)",
             "unknown type '%s'", w);
        return false;
    } else if (strcmp(w, "f32") != 0) {
        perr(p, "types: tokens, f32, i32, f32[B], i32[B, T], tokens[B, T2]", "unknown type '%s'", w);
        return false;
    }
    adv(p);
    if (ty->tokens) {
        ty->ndim = 2;
        ty->dim[0] = "B", ty->dim[1] = "T";
        ty->size[0] = ty->size[1] = -1;
        ty->dsp[0] = ty->dsp[1] = p->t[from].sp;
    }
    if (is(p, TK_LBRACK)) {
        ty->dims_written = true;
        int open = p->pos;
        adv(p);
        int nd = 0;
        for (;;) {
            if (nd == RL_MAX_DIMS) {
                perr(p, NULL, "a type has at most %d dims", RL_MAX_DIMS);
                return false;
            }
            if (is(p, TK_NAME)) {
                ty->dim[nd] = cur(p)->s;
                ty->size[nd] = -1;
            } else if (is(p, TK_NUM) && cur(p)->is_int) {
                ty->dim[nd] = NULL;
                ty->size[nd] = (int64_t)cur(p)->num;
                if (cur(p)->num > 1048576) {
                    perr(p, "literal dims are at most 1048576; use a name (B, T, V) for data sizes",
                         "dimension %s is too large", tok_desc(p, cur(p)));
                    return false;
                }
            } else {
                perr(p, "a dim is a name (B, T, V) or an integer", "expected a dimension, got %s",
                     tok_desc(p, cur(p)));
                return false;
            }
            ty->dsp[nd] = cur(p)->sp;
            nd++;
            adv(p);
            if (!is(p, TK_COMMA)) break;
            adv(p);
        }
        if (!is(p, TK_RBRACK)) {
            perr(p, NULL, "expected ']' to close the '[' at %d:%d, got %s", p->t[open].sp.line,
                 p->t[open].sp.col, tok_desc(p, cur(p)));
            return false;
        }
        adv(p);
        if (ty->tokens && nd != 2) {
            p->pos = open;
            perr(p, "token batches are [B, T]", "tokens have 2 dims, got %d", nd);
            return false;
        }
        ty->ndim = nd;
    }
    ty->sp = span_from(p, from);
    return true;
}

/* NAME '(' [NAME '=' expr {',' NAME '=' expr}] ')' */
static rl_optim_ast *parse_optim(rl_parser *p) {
    rl_optim_ast *o = rl_rpool_alloc(&p->r->pool, sizeof(rl_optim_ast));
    if (!is(p, TK_NAME)) {
        perr(p, "optimizers: adamw(lr = 1e-5, wd = 0) or sgd(lr = 0.1)",
             "expected an optimizer, got %s", tok_desc(p, cur(p)));
        return NULL;
    }
    o->name = cur(p)->s;
    o->sp = cur(p)->sp;
    adv(p);
    if (!expect(p, TK_LPAREN, "after the optimizer's name")) return NULL;
    const char *keys[16];
    rl_span ksp[16];
    rl_ast *vals[16];
    int n = 0;
    while (!is(p, TK_RPAREN)) {
        if (n == 16) {
            perr(p, NULL, "too many optimizer options");
            return NULL;
        }
        if (!expect_name(p, "an option name (lr, wd, ...)", &keys[n], &ksp[n])) return NULL;
        if (!expect(p, TK_ASSIGN, "after the option name")) return NULL;
        vals[n] = parse_expr(p);
        if (!vals[n]) return NULL;
        n++;
        if (!is(p, TK_COMMA)) break;
        adv(p);
    }
    if (!expect(p, TK_RPAREN, "to close the optimizer's options")) return NULL;
    o->n = n;
    o->key = rl_rpool_alloc(&p->r->pool, sizeof(char *) * (size_t)(n + 1));
    o->ksp = rl_rpool_alloc(&p->r->pool, sizeof(rl_span) * (size_t)(n + 1));
    o->val = rl_rpool_alloc(&p->r->pool, sizeof(rl_ast *) * (size_t)(n + 1));
    memcpy(o->key, keys, sizeof(char *) * (size_t)n);
    memcpy(o->ksp, ksp, sizeof(rl_span) * (size_t)n);
    memcpy(o->val, vals, sizeof(rl_ast *) * (size_t)n);
    return o;
}

static void parse_input(rl_parser *p, int from) {
    rl_stmt *s = new_stmt(p, ST_INPUT, from);
    if (!expect_name(p, "the input's name after 'input'", &s->names[0], &s->nsp[0])) return;
    if (!expect(p, TK_COLON, "and a type after the input's name")) return;
    if (parse_type(p, &s->type)) s->has_type = true;
    else return;
    if (is_name(p, "from") && !cur(p)->bol) { /* input label : f32[B] from "label": the data column it reads */
        adv(p);
        if (!is(p, TK_STR)) {
            perr(p, "write the column's name in quotes, e.g. input label : f32[B] from \"label\"",
                 "expected a column name (a string) after 'from', got %s", tok_desc(p, cur(p)));
            return;
        }
        s->lib = cur(p)->s;
        s->libsp = cur(p)->sp;
        adv(p);
        /* a text field (and the mismatched rows) is as long as its own text:
         * tokens[B, T_answer], not the rows' T */
        if (s->type.tokens && !s->type.dims_written &&
            (!rl_recipe_is_row_column(s->lib) || !strcmp(s->lib, "mismatched")))
            s->type.dim[1] = rl_rpool_printf(&p->r->pool, "T_%s", s->names[0]);
    }
}

static void parse_model(rl_parser *p, int from) {
    rl_stmt *s = new_stmt(p, ST_MODEL, from);
    if (!expect_name(p, "the model's name after 'model'", &s->names[0], &s->nsp[0])) return;
    if (!expect(p, TK_COLON, "and a kind (lm, score or value) after the model's name")) return;
    if (!expect_name(p, "a model kind (lm, score or value)", &s->mkind, &s->mksp)) return;
    if (is_name(p, "trainable")) s->trainable = true;
    else if (!is_name(p, "frozen")) {
        perr(p, "write 'trainable' (updated by a loss) or 'frozen' (a constant)",
             "expected 'trainable' or 'frozen' after the model kind, got %s", tok_desc(p, cur(p)));
        return;
    }
    adv(p);
    if (is(p, TK_COMMA)) {
        adv(p);
        s->optim = parse_optim(p);
    }
}

static void parse_hyper(rl_parser *p, int from) {
    for (;;) {
        rl_stmt *s = new_stmt(p, ST_HYPER, from);
        if (!expect_name(p, "a hyperparameter name", &s->names[0], &s->nsp[0])) return;
        if (!expect(p, TK_ASSIGN, "and a value after the hyperparameter's name")) return;
        s->expr = parse_expr(p);
        if (!s->expr) return;
        if (is_name(p, "in") && !cur(p)->bol) { /* hyper mode = "a" in ["a", "b"]: the values --set may give */
            adv(p);
            s->choices = parse_expr(p);
            if (!s->choices) return;
        }
        if (!is(p, TK_COMMA)) return;
        adv(p);
        from = p->pos;
    }
}

static void parse_param(rl_parser *p, int from) {
    rl_stmt *s = new_stmt(p, ST_PARAM, from);
    if (!expect_name(p, "the param's name after 'param'", &s->names[0], &s->nsp[0])) return;
    if (is(p, TK_COLON)) {
        adv(p);
        if (!parse_type(p, &s->type)) return;
        s->has_type = true;
    }
    if (!expect(p, TK_ASSIGN, "and an initial value (param w = 0 : sgd(lr = 0.1))")) return;
    s->expr = parse_expr(p);
    if (!s->expr) return;
    if (!is(p, TK_COLON)) {
        perr(p, "write e.g. param w = 0 : sgd(lr = 0.1), min = 0",
             "expected ':' and an optimizer after the param's initial value, got %s",
             tok_desc(p, cur(p)));
        return;
    }
    adv(p);
    s->optim = parse_optim(p);
    if (!s->optim) return;
    while (is(p, TK_COMMA)) {
        adv(p);
        bool mn = is_name(p, "min"), mx = is_name(p, "max");
        if (!mn && !mx) {
            perr(p, "bounds: , min = 0, max = log(5)", "expected 'min' or 'max', got %s",
                 tok_desc(p, cur(p)));
            return;
        }
        adv(p);
        if (!expect(p, TK_ASSIGN, mn ? "after 'min'" : "after 'max'")) return;
        rl_ast *e = parse_expr(p);
        if (!e) return;
        if (mn) s->min = e;
        else s->max = e;
    }
}

static rl_type_ast *copy_types(rl_parser *p, const rl_type_ast *v, int n) {
    rl_type_ast *c = rl_rpool_alloc(&p->r->pool, sizeof(rl_type_ast) * (size_t)(n ? n : 1));
    memcpy(c, v, sizeof(rl_type_ast) * (size_t)n);
    return c;
}

static void parse_extern(rl_parser *p, int from) {
    rl_stmt *s = new_stmt(p, ST_EXTERN, from);
    if (!is(p, TK_STR)) {
        perr(p, "write extern \"librules.so\" name(f32[B]) -> f32[B]",
             "expected the library's file name as a string, got %s", tok_desc(p, cur(p)));
        return;
    }
    s->lib = cur(p)->s;
    s->libsp = cur(p)->sp;
    adv(p);
    if (!expect_name(p, "the function's name", &s->names[0], &s->nsp[0])) return;
    if (!expect(p, TK_LPAREN, "before the argument types")) return;
    rl_type_ast tv[RL_RECIPE_MAX_FN_PARAMS];
    int n = 0;
    while (!is(p, TK_RPAREN)) {
        if (n == RL_RECIPE_MAX_FN_PARAMS) {
            perr(p, NULL, "an extern takes at most %d arguments", RL_RECIPE_MAX_FN_PARAMS);
            return;
        }
        if (!parse_type(p, &tv[n])) return;
        n++;
        if (!is(p, TK_COMMA)) break;
        adv(p);
    }
    if (!expect(p, TK_RPAREN, "after the argument types")) return;
    s->types = copy_types(p, tv, n);
    s->n_types = n;
    if (!expect(p, TK_ARROW, "and the result type(s)")) return;
    n = 0;
    if (is(p, TK_LPAREN)) {
        adv(p);
        for (;;) {
            if (n == RL_RECIPE_MAX_FN_RESULTS) {
                perr(p, NULL, "an extern returns at most %d values", RL_RECIPE_MAX_FN_RESULTS);
                return;
            }
            if (!parse_type(p, &tv[n])) return;
            n++;
            if (!is(p, TK_COMMA)) break;
            adv(p);
        }
        if (!expect(p, TK_RPAREN, "after the result types")) return;
    } else {
        if (!parse_type(p, &tv[0])) return;
        n = 1;
    }
    s->rtypes = copy_types(p, tv, n);
    s->n_rtypes = n;
    if (is_name(p, "backward")) {
        adv(p);
        expect_name(p, "the backward function's name", &s->backward, &s->bsp);
    }
}

static void parse_fn(rl_parser *p, int from) {
    rl_stmt *s = new_stmt(p, ST_FN, from);
    if (!expect_name(p, "the function's name after 'fn'", &s->names[0], &s->nsp[0])) return;
    if (!expect(p, TK_LPAREN, "before the parameter names")) return;
    const char *names[RL_RECIPE_MAX_FN_PARAMS];
    rl_span sps[RL_RECIPE_MAX_FN_PARAMS];
    int n = 0;
    while (!is(p, TK_RPAREN)) {
        if (n == RL_RECIPE_MAX_FN_PARAMS) {
            perr(p, NULL, "a function takes at most %d parameters", RL_RECIPE_MAX_FN_PARAMS);
            return;
        }
        if (!expect_name(p, "a parameter name", &names[n], &sps[n])) return;
        n++;
        if (!is(p, TK_COMMA)) break;
        adv(p);
    }
    if (!expect(p, TK_RPAREN, "after the parameters")) return;
    s->fparams = rl_rpool_alloc(&p->r->pool, sizeof(char *) * (size_t)(n + 1));
    s->fpsp = rl_rpool_alloc(&p->r->pool, sizeof(rl_span) * (size_t)(n + 1));
    memcpy(s->fparams, names, sizeof(char *) * (size_t)n);
    memcpy(s->fpsp, sps, sizeof(rl_span) * (size_t)n);
    s->n_fparams = n;
    if (!expect(p, TK_ASSIGN, "and the body after the parameters")) return;
    s->expr = parse_expr(p);
}

/* NAME {',' NAME} '=' expr */
static void parse_assign(rl_parser *p, int from) {
    rl_stmt *s = new_stmt(p, ST_ASSIGN, from);
    const char *names[RL_RECIPE_MAX_FN_RESULTS];
    rl_span sps[RL_RECIPE_MAX_FN_RESULTS];
    int n = 0;
    for (;;) {
        if (n == RL_RECIPE_MAX_FN_RESULTS) {
            perr(p, NULL, "at most %d names on the left of '='", RL_RECIPE_MAX_FN_RESULTS);
            break;
        }
        if (!is(p, TK_NAME)) {
            perr(p, NULL, "expected a name, got %s", tok_desc(p, cur(p)));
            break;
        }
        names[n] = cur(p)->s;
        sps[n] = cur(p)->sp;
        n++;
        adv(p);
        if (!is(p, TK_COMMA)) break;
        adv(p);
    }
    s->n_names = n;
    s->names = rl_rpool_alloc(&p->r->pool, sizeof(char *) * (size_t)(n + 1));
    s->nsp = rl_rpool_alloc(&p->r->pool, sizeof(rl_span) * (size_t)(n + 1));
    memcpy(s->names, names, sizeof(char *) * (size_t)n);
    memcpy(s->nsp, sps, sizeof(rl_span) * (size_t)n);
    if (p->err) return;
    if (!is(p, TK_ASSIGN)) {
        perr(p, "statements are NAME = expression (or a declaration: input, model, hyper, param, "
                "extern, fn, log)",
             "expected '=' after '%s', got %s", names[n - 1], tok_desc(p, cur(p)));
        return;
    }
    adv(p);
    s->expr = parse_expr(p);
}

static void parse_log(rl_parser *p, int from) {
    for (;;) {
        rl_stmt *s = new_stmt(p, ST_LOG, from);
        if (!expect_name(p, "a metric name", &s->names[0], &s->nsp[0])) return;
        if (!expect(p, TK_ASSIGN, "after the metric's name")) return;
        s->expr = parse_expr(p);
        if (!s->expr || !is(p, TK_COMMA)) return;
        adv(p);
        from = p->pos;
    }
}

/* After an error in the statement that starts at token `from`: skip to a '}'
 * or to a name that starts a line (at least one token, so that the loop
 * moves on). */
static void sync(rl_parser *p, int from) {
    if (p->pos == from) adv(p);
    while (!is(p, TK_EOF) && !is(p, TK_RBRACE) && !(cur(p)->bol && is(p, TK_NAME))) adv(p);
    p->err = false;
}

static bool is_decl_word(const char *w) {
    static const char *const words[] = {"input", "model", "hyper", "param", "extern", "fn"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcmp(w, words[i]) == 0) return true;
    return false;
}

static void parse_header(rl_parser *p) {
    rl_recipe *r = p->r;
    if (!is_name(p, "recipe")) {
        perr(p, "the first line names the recipe and its kind, e.g. recipe dpo : pairwise",
             "a recipe starts with 'recipe NAME : KIND', got %s", tok_desc(p, cur(p)));
        r->hsp = cur(p)->sp;
        p->err = false; /* parse the rest anyway */
        return;
    }
    int from = p->pos;
    r->hsp = cur(p)->sp;
    adv(p);
    const char *name, *kind;
    rl_span nsp, ksp;
    if (!expect_name(p, "the recipe's name after 'recipe'", &name, &nsp)) goto out;
    r->name = name;
    if (!expect(p, TK_COLON, "and a kind after the recipe's name")) goto out;
    if (!expect_name(p, "a recipe kind (supervised, pairwise, online or fullbatch)", &kind, &ksp))
        goto out;
    static const char *const kinds[] = {"supervised", "pairwise", "online", "fullbatch"};
    int k = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(kind, kinds[i]) == 0) k = i;
    if (k < 0) {
        const char *s = rl_suggest(kind, kinds, 4);
        char hint[160];
        snprintf(hint, sizeof hint, "expected supervised, pairwise, online or fullbatch%s%s%s",
                 s ? "; did you mean '" : "", s ? s : "", s ? "'?" : "");
        rl_diag_add(r, p->src, RL_DIAG_ERROR, ksp, hint, "unknown recipe kind '%s'", kind);
        p->err = true;
        goto out;
    }
    r->kind = (rl_recipe_kind)k;
    r->has_header = true;
    r->hsp = span_from(p, from);
    return;
out:
    r->hsp = span_from(p, from);
    if (p->err) sync(p, from);
}

void rl_parse(rl_recipe *r) {
    rl_token *toks = NULL;
    int n = rl_lex(r, &r->src, &toks);
    rl_parser p = {.r = r, .src = &r->src, .t = toks, .n = n, .err_tok = -1};
    if (!r->prelude) parse_header(&p);
    while (!is(&p, TK_EOF)) {
        int from = p.pos;
        rl_token *t = cur(&p);
        p.n_ops = 0;
        if (t->kind == TK_RBRACE) {
            if (p.block == BLK_TOP) {
                if (p.err_tok == p.pos) { /* the statement before already failed here */
                    adv(&p);
                    continue;
                }
                perr(&p, NULL, "unexpected '}' (no block is open)");
                sync(&p, from);
                continue;
            }
            p.block = BLK_TOP;
            adv(&p);
            continue;
        }
        if (t->kind != TK_NAME) {
            perr(&p, "statements are NAME = expression or declarations (input, model, hyper, param, "
                     "extern, fn, log)",
                 "expected a statement, got %s", tok_desc(&p, t));
            sync(&p, from);
            continue;
        }
        const char *w = t->s;
        rl_tk next = peek(&p, 1)->kind;
        if (r->prelude && strcmp(w, "fn") != 0) {
            perr(&p, NULL, "the prelude holds only fn declarations");
            sync(&p, from);
            continue;
        }
        if (strcmp(w, "recipe") == 0 && next == TK_NAME) {
            perr(&p, "a file holds one recipe", "a second 'recipe' header");
            sync(&p, from);
            continue;
        }
        if ((strcmp(w, "rollout") == 0 || strcmp(w, "loss") == 0) && next == TK_LBRACE) {
            bool roll = w[0] == 'r';
            if (p.block != BLK_TOP) {
                perr(&p, "close the open block with '}' first", "blocks do not nest");
                sync(&p, from);
                continue;
            }
            if (roll ? r->has_rollout : r->has_loss_block) {
                perr(&p, "merge the statements into one block", "a second %s block", w);
                sync(&p, from);
                continue;
            }
            if (roll) r->has_rollout = true, r->rollout_sp = t->sp;
            else r->has_loss_block = true;
            p.block = roll ? BLK_ROLLOUT : BLK_LOSS;
            p.block_sp = join(t->sp, peek(&p, 1)->sp);
            adv(&p), adv(&p);
            continue;
        }
        int first_stmt = r->n_stmts;
        if (is_decl_word(w) && next != TK_ASSIGN && next != TK_COMMA) {
            if (p.block != BLK_TOP) {
                perr(&p, "move it above the block", "declarations belong at the top level, outside "
                                                    "rollout { } and loss { }");
                p.err = false; /* still parse it, for further messages */
            }
            adv(&p);
            switch (w[0]) {
            case 'i': parse_input(&p, from); break;
            case 'm': parse_model(&p, from); break;
            case 'h': parse_hyper(&p, from); break;
            case 'p': parse_param(&p, from); break;
            case 'e': parse_extern(&p, from); break;
            default: parse_fn(&p, from); break;
            }
        } else if (strcmp(w, "log") == 0 && next == TK_NAME) {
            adv(&p);
            parse_log(&p, from);
        } else {
            parse_assign(&p, from);
        }
        if (p.err) {
            for (int i = first_stmt; i < r->n_stmts; i++) r->stmts[i]->broken = true;
            sync(&p, from);
        }
    }
    if (p.block != BLK_TOP) {
        r->block_unclosed = true;
        rl_diag_add(r, &r->src, RL_DIAG_ERROR, p.block_sp, "close it with '}'",
                    "the %s block is never closed", p.block == BLK_ROLLOUT ? "rollout" : "loss");
    }
    free(toks);
}
