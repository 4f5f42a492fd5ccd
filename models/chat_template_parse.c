/* models/chat_template_parse.c - the front half of the chat template
 * renderer: a lexer that applies Jinja2's whitespace rules as transformers
 * configures them (trim_blocks, lstrip_blocks) and a recursive-descent parser
 * to the AST of chat_template_impl.h that refuses anything outside the subset
 * listed in rl_chat_template.h, naming the construct and its line:column.
 * Every allocation is from the template's arena; errors unwind with longjmp
 * to rl_chat_template_parse, which frees the arena.
 */
#include <errno.h>

#include "chat_template_impl.h"

/* ---- lexer --------------------------------------------------------------- */

enum { T_EOF, T_DATA, T_VBEGIN, T_VEND, T_BBEGIN, T_BEND, T_NAME, T_STR, T_INT, T_FLOAT, T_OP };

typedef struct {
    int kind;
    size_t pos;
    const char *s; /* DATA, NAME, OP: points into the source; STR: decoded */
    size_t n;
    int64_t i;
    double f;
} tok;

typedef struct {
    const char *src;
    size_t len;
    const char *origin;
    arena *ar;
    jmp_buf jb;
    char *err;
    size_t errlen;
    tok *toks;
    size_t ntok, captok, at;
    int loop_depth;
    int depth; /* recursion depth, so that hostile nesting fails instead of overflowing the stack */
} P;

static _Noreturn void pfail(P *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void pfail(P *p, size_t pos, const char *fmt, ...) {
    if (p->err && p->errlen) {
        int line, col;
        locate(p->src, p->len, pos, &line, &col);
        int k = snprintf(p->err, p->errlen, "%s:%d:%d: ", p->origin, line, col);
        if (k >= 0 && (size_t)k < p->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + k, p->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    longjmp(p->jb, RL_ERR_ARG);
}

static tok *emit(P *p, int kind, size_t pos, const char *s, size_t n) {
    if (p->ntok == p->captok) {
        size_t cap = p->captok ? p->captok * 2 : 256;
        tok *t = ar_alloc(p->ar, cap * sizeof *t);
        if (p->ntok) memcpy(t, p->toks, p->ntok * sizeof *t);
        p->toks = t;
        p->captok = cap;
    }
    tok *t = &p->toks[p->ntok++];
    *t = (tok){kind, pos, s, n, 0, 0};
    return t;
}

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* A string literal at p->src[pos] (the quote); returns the offset after it.
 * Escapes follow Python's unicode-escape, which Jinja2 applies. */
static size_t lex_string(P *p, size_t pos) {
    const char *s = p->src;
    char q = s[pos];
    size_t i = pos + 1;
    sbuf b = {.a = p->ar};
    sb_put(&b, "", 0);
    for (;;) {
        if (i >= p->len) pfail(p, pos, "unterminated string literal");
        char c = s[i];
        if (c == q) break;
        if (c != '\\') {
            size_t j = i;
            while (j < p->len && s[j] != q && s[j] != '\\') j++;
            sb_put(&b, s + i, j - i);
            i = j;
            continue;
        }
        if (i + 1 >= p->len) pfail(p, pos, "unterminated string literal");
        char e = s[i + 1];
        i += 2;
        const char *simple = NULL;
        switch (e) {
        case '\\': simple = "\\"; break;
        case '\'': simple = "'"; break;
        case '"': simple = "\""; break;
        case 'a': simple = "\a"; break;
        case 'b': simple = "\b"; break;
        case 'f': simple = "\f"; break;
        case 'n': simple = "\n"; break;
        case 'r': simple = "\r"; break;
        case 't': simple = "\t"; break;
        case 'v': simple = "\v"; break;
        case '\n': simple = ""; break;
        default: break;
        }
        if (simple) {
            sb_puts(&b, simple);
            continue;
        }
        int32_t cp = -1;
        if (e >= '0' && e <= '7') {
            cp = e - '0';
            for (int k = 0; k < 2 && i < p->len && s[i] >= '0' && s[i] <= '7'; k++) cp = cp * 8 + (s[i++] - '0');
        } else if (e == 'x' || e == 'u' || e == 'U') {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            cp = 0;
            for (int k = 0; k < digits; k++) {
                int h = i < p->len ? hexval((unsigned char)s[i]) : -1;
                if (h < 0) pfail(p, i - 2 - (size_t)k, "truncated \\%c escape in a string literal", e);
                cp = cp * 16 + h;
                i++;
            }
            if (cp > 0x10ffff) pfail(p, i, "escape \\%c out of the Unicode range", e);
        } else if (e == 'N') {
            pfail(p, i - 2, "\\N{...} escapes are not supported");
        } else { /* Python keeps unknown escapes as they are */
            char two[2] = {'\\', e};
            sb_put(&b, two, 2);
            continue;
        }
        utf8proc_uint8_t u8[4];
        utf8proc_ssize_t k = utf8proc_encode_char(cp, u8);
        if (k <= 0) { /* a surrogate: Python would keep it; UTF-8 cannot */
            pfail(p, i, "escape gives a surrogate code point");
        }
        sb_put(&b, (const char *)u8, (size_t)k);
    }
    tok *t = emit(p, T_STR, pos, b.p, b.n);
    (void)t;
    return i + 1;
}

static const char *const OPS2[] = {"//", "**", "==", "!=", ">=", "<=", NULL};
static const char OPS1[] = "+-*/%~[](){}<>=.:|,";

/* Tokens of one {{ }} or {% %} tag starting after its opening; returns the
 * offset after the closing delimiter and sets *strip (1: '-', 2: '+'). */
static size_t lex_tag(P *p, size_t pos, int block, size_t open_pos, int *strip) {
    const char *s = p->src;
    size_t n = p->len;
    int depth = 0;
    char stack[256];
    for (;;) {
        pos += py_space_prefix(s + pos, n - pos);
        if (pos >= n)
            pfail(p, open_pos, "unclosed '%s': expected '%s' before the end of the template",
                  block ? "{%" : "{{", block ? "%}" : "}}");
        const char *c = s + pos;
        size_t left = n - pos;
        if (depth == 0) {
            const char *end = block ? "%}" : "}}";
            if (left >= 3 && c[0] == '-' && !memcmp(c + 1, end, 2)) {
                *strip = 1;
                emit(p, block ? T_BEND : T_VEND, pos, c, 3);
                return pos + 3;
            }
            if (block && left >= 3 && c[0] == '+' && !memcmp(c + 1, end, 2)) {
                *strip = 2;
                emit(p, T_BEND, pos, c, 3);
                return pos + 3;
            }
            if (left >= 2 && !memcmp(c, end, 2)) {
                *strip = 0;
                emit(p, block ? T_BEND : T_VEND, pos, c, 2);
                return pos + 2;
            }
        }
        unsigned char ch = (unsigned char)*c;
        if (ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')) {
            size_t j = pos + 1;
            while (j < n && (s[j] == '_' || (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= 'A' && s[j] <= 'Z') ||
                             (s[j] >= '0' && s[j] <= '9')))
                j++;
            emit(p, T_NAME, pos, c, j - pos);
            pos = j;
            continue;
        }
        if (ch >= '0' && ch <= '9') {
            /* after '.', digits are an attribute index (x.0), never a float */
            int after_dot = p->ntok && p->toks[p->ntok - 1].kind == T_OP && p->toks[p->ntok - 1].n == 1 &&
                            p->toks[p->ntok - 1].s[0] == '.';
            size_t j = pos;
            char num[128];
            size_t k = 0;
            int isf = 0;
            while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == '_')) {
                if (s[j] != '_' && k < sizeof num - 1) num[k++] = s[j];
                j++;
            }
            if (!after_dot && j + 1 < n && s[j] == '.' && s[j + 1] >= '0' && s[j + 1] <= '9') {
                isf = 1;
                if (k < sizeof num - 1) num[k++] = s[j];
                j++;
                while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == '_')) {
                    if (s[j] != '_' && k < sizeof num - 1) num[k++] = s[j];
                    j++;
                }
            }
            if (!after_dot && j < n && (s[j] == 'e' || s[j] == 'E')) {
                size_t e = j + 1;
                if (e < n && (s[e] == '+' || s[e] == '-')) e++;
                if (e < n && s[e] >= '0' && s[e] <= '9') {
                    isf = 1;
                    while (j < e && k < sizeof num - 1) num[k++] = s[j++];
                    while (j < n && s[j] >= '0' && s[j] <= '9') {
                        if (k < sizeof num - 1) num[k++] = s[j];
                        j++;
                    }
                }
            }
            num[k] = 0;
            tok *t = emit(p, isf ? T_FLOAT : T_INT, pos, c, j - pos);
            if (isf) {
                t->f = strtod(num, NULL);
            } else {
                errno = 0;
                unsigned long long u = strtoull(num, NULL, 10);
                if (errno || u > INT64_MAX) pfail(p, pos, "integer literal too large (integers are 64-bit here)");
                t->i = (int64_t)u;
            }
            pos = j;
            continue;
        }
        if (ch == '\'' || ch == '"') {
            pos = lex_string(p, pos);
            continue;
        }
        int matched = 0;
        for (int k = 0; OPS2[k]; k++)
            if (left >= 2 && !memcmp(c, OPS2[k], 2)) {
                emit(p, T_OP, pos, c, 2);
                pos += 2;
                matched = 1;
                break;
            }
        if (matched) continue;
        if (ch && strchr(OPS1, ch)) {
            if (ch == '(' || ch == '[' || ch == '{') {
                if (depth == (int)sizeof stack) pfail(p, pos, "brackets nested too deeply");
                stack[depth++] = ch == '(' ? ')' : ch == '[' ? ']' : '}';
            } else if (ch == ')' || ch == ']' || ch == '}') {
                if (depth == 0) pfail(p, pos, "unexpected '%c'", ch);
                if (stack[--depth] != (char)ch) pfail(p, pos, "unexpected '%c', expected '%c'", ch, stack[depth]);
            }
            emit(p, T_OP, pos, c, 1);
            pos++;
            continue;
        }
        pfail(p, pos, "unexpected character '%.*s' in a tag", (int)(ch < 0x80 ? 1 : 0), c);
    }
}

/* The whole template into p->toks, with Jinja2's whitespace rules applied to
 * the text between tags (see jinja2/lexer.py, tokeniter). */
static void lex(P *p) {
    const char *s = p->src;
    size_t n = p->len, pos = 0;
    int line_starting = 1;
    while (pos < n) {
        size_t q = pos;
        int kind = 0; /* '{', '%', '#' */
        for (; q + 1 < n; q++)
            if (s[q] == '{' && (s[q + 1] == '{' || s[q + 1] == '%' || s[q + 1] == '#')) {
                kind = s[q + 1];
                break;
            }
        if (!kind) {
            emit(p, T_DATA, pos, s + pos, n - pos);
            break;
        }
        size_t tlen = q - pos;
        char sign = q + 2 < n && (s[q + 2] == '-' || s[q + 2] == '+') ? s[q + 2] : 0;
        if (sign == '-') {
            tlen = py_rstrip_len(s + pos, tlen);
        } else if (sign != '+' && kind != '{') { /* lstrip_blocks */
            size_t l = tlen;
            while (l > 0 && s[pos + l - 1] != '\n') l--;
            if ((l > 0 || line_starting) && l < tlen && py_space_prefix(s + pos + l, tlen - l) == tlen - l)
                tlen = l;
        }
        if (tlen) emit(p, T_DATA, pos, s + pos, tlen);
        size_t after = q + 2 + (sign ? 1 : 0);
        int strip = 0;
        if (kind == '#') {
            size_t e = after;
            while (e + 1 < n && !(s[e] == '#' && s[e + 1] == '}')) e++;
            if (e + 1 >= n) pfail(p, q, "unclosed comment: missing '#}'");
            if (e > after && s[e - 1] == '-') strip = 1;
            else if (e > after && s[e - 1] == '+') strip = 2;
            pos = e + 2;
        } else {
            if (kind == '%') {
                size_t w = after + py_space_prefix(s + after, n - after);
                if (n - w >= 3 && !memcmp(s + w, "raw", 3) &&
                    (w + 3 >= n || !(s[w + 3] == '_' || (unsigned)((s[w + 3] | 32) - 'a') < 26u || (unsigned)(s[w + 3] - '0') < 10u)))
                    pfail(p, q, "unsupported tag 'raw' (supported tags: if, for, set, break, continue, generation)");
            }
            emit(p, kind == '{' ? T_VBEGIN : T_BBEGIN, q, s + q, after - q);
            pos = lex_tag(p, after, kind == '%', q, &strip);
        }
        if (strip == 1) {
            pos += py_space_prefix(s + pos, n - pos);
        } else if (strip == 0 && kind != '{' && pos < n && s[pos] == '\n') { /* trim_blocks */
            pos++;
        }
        line_starting = pos > 0 && s[pos - 1] == '\n';
    }
    emit(p, T_EOF, n, s + n, 0);
}

/* ---- parser -------------------------------------------------------------- */

static tok *cur(P *p) { return &p->toks[p->at]; }
static tok *peek(P *p, size_t k) {
    size_t i = p->at + k;
    return &p->toks[i < p->ntok ? i : p->ntok - 1];
}
static void next(P *p) {
    if (p->toks[p->at].kind != T_EOF) p->at++;
}
static int is_op(tok *t, const char *op) {
    return t->kind == T_OP && t->n == strlen(op) && !memcmp(t->s, op, t->n);
}
static int is_name(tok *t, const char *name) {
    return t->kind == T_NAME && t->n == strlen(name) && !memcmp(t->s, name, t->n);
}

static const char *tok_desc(P *p, tok *t) {
    switch (t->kind) {
    case T_EOF: return "the end of the template";
    case T_DATA: return "template text";
    case T_VBEGIN: return "'{{'";
    case T_VEND: return "'}}'";
    case T_BBEGIN: return "'{%'";
    case T_BEND: return "'%}'";
    case T_STR: return "a string";
    case T_INT: return "an integer";
    case T_FLOAT: return "a float";
    default: {
        char *d = ar_alloc(p->ar, t->n + 3);
        d[0] = '\'';
        memcpy(d + 1, t->s, t->n);
        d[t->n + 1] = '\'';
        d[t->n + 2] = 0;
        return d;
    }
    }
}

static void expect_op(P *p, const char *op) {
    if (!is_op(cur(p), op)) pfail(p, cur(p)->pos, "expected '%s', got %s", op, tok_desc(p, cur(p)));
    next(p);
}
static void expect_bend(P *p) {
    if (cur(p)->kind != T_BEND) pfail(p, cur(p)->pos, "expected '%%}', got %s", tok_desc(p, cur(p)));
    next(p);
}
static const char *expect_ident(P *p, const char *what) {
    tok *t = cur(p);
    if (t->kind != T_NAME) pfail(p, t->pos, "expected %s, got %s", what, tok_desc(p, t));
    next(p);
    return ar_strndup(p->ar, t->s, t->n);
}

static node *mk(P *p, int kind, size_t pos) {
    node *n = ar_alloc(p->ar, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->pos = pos;
    return n;
}

/* Growable node lists while parsing. */
typedef struct {
    node **v;
    const char **kw;
    int *ops;
    size_t n, cap;
} nvec;

static void nv_push(P *p, nvec *v, node *x, const char *kw, int op) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 8;
        node **nv = ar_alloc(p->ar, cap * sizeof *nv);
        const char **nk = ar_alloc(p->ar, cap * sizeof *nk);
        int *no = ar_alloc(p->ar, cap * sizeof *no);
        if (v->n) {
            memcpy(nv, v->v, v->n * sizeof *nv);
            memcpy(nk, v->kw, v->n * sizeof *nk);
            memcpy(no, v->ops, v->n * sizeof *no);
        }
        v->v = nv;
        v->kw = nk;
        v->ops = no;
        v->cap = cap;
    }
    v->v[v->n] = x;
    v->kw[v->n] = kw;
    v->ops[v->n] = op;
    v->n++;
}
static void nv_to(node *n, nvec *v) {
    n->v = v->v;
    n->kw = v->kw;
    n->ops = v->ops;
    n->nv = v->n;
}

static int in_list(const char *s, size_t n, const char *const *list) {
    for (; *list; list++)
        if (strlen(*list) == n && !memcmp(*list, s, n)) return 1;
    return 0;
}

static const char *const FILTERS[] = {"trim", "length", "count", "tojson", "string", "upper", "lower",
                                      "default", "d", "first", "last", "join", "items", "list", "selectattr",
                                      "rejectattr", NULL};
static const char *const TESTS[] = {"defined", "undefined", "none", "string", "mapping", "iterable",
                                    "sequence", "number", "integer", "float", "boolean", "true",
                                    "false", "odd", "even", "eq", "equalto", "ne", NULL};
static const char *const FUNCS[] = {"namespace", "raise_exception", "strftime_now", "range", NULL};
static const char *const METHODS[] = {"startswith", "endswith", "strip", "lstrip", "rstrip", "split",
                                      "replace", "upper", "lower", "items", "get", "keys", "values", NULL};

static node *parse_expr(P *p);
static node *parse_or(P *p);
static node *parse_unary(P *p, int with_filter);

enum { MAX_DEPTH = 200 };
static void enter(P *p) {
    if (++p->depth > MAX_DEPTH) pfail(p, cur(p)->pos, "template nested too deeply (more than %d levels)", MAX_DEPTH);
}

/* (args) of a call, filter or test, into n. */
static void parse_args(P *p, node *n) {
    nvec v = {0};
    expect_op(p, "(");
    while (!is_op(cur(p), ")")) {
        if (is_op(cur(p), "*") || is_op(cur(p), "**"))
            pfail(p, cur(p)->pos, "*args and **kwargs in calls are not supported");
        const char *kw = NULL;
        if (cur(p)->kind == T_NAME && is_op(peek(p, 1), "=")) {
            kw = ar_strndup(p->ar, cur(p)->s, cur(p)->n);
            next(p);
            next(p);
        } else if (v.n && v.kw[v.n - 1]) {
            pfail(p, cur(p)->pos, "a positional argument follows a keyword argument");
        }
        nv_push(p, &v, parse_expr(p), kw, 0);
        if (!is_op(cur(p), ",")) break;
        next(p);
    }
    expect_op(p, ")");
    nv_to(n, &v);
}

static node *parse_primary(P *p) {
    tok *t = cur(p);
    node *n;
    switch (t->kind) {
    case T_NAME:
        next(p);
        n = mk(p, N_CONST, t->pos);
        if (is_name(t, "true") || is_name(t, "True")) n->k = v_bool(1);
        else if (is_name(t, "false") || is_name(t, "False")) n->k = v_bool(0);
        else if (is_name(t, "none") || is_name(t, "None")) n->k = v_none();
        else {
            n->kind = N_NAME;
            n->s = ar_strndup(p->ar, t->s, t->n);
            n->n = t->n;
        }
        return n;
    case T_STR: { /* adjacent literals concatenate, as in Python */
        sbuf b = {.a = p->ar};
        sb_put(&b, "", 0);
        while (cur(p)->kind == T_STR) {
            sb_put(&b, cur(p)->s, cur(p)->n);
            next(p);
        }
        n = mk(p, N_CONST, t->pos);
        n->k = v_str(b.p, b.n);
        return n;
    }
    case T_INT:
    case T_FLOAT:
        next(p);
        n = mk(p, N_CONST, t->pos);
        n->k = t->kind == T_INT ? v_int(t->i) : v_float(t->f);
        return n;
    case T_OP:
        if (is_op(t, "(")) {
            next(p);
            if (is_op(cur(p), ")")) {
                next(p);
                n = mk(p, N_LIST, t->pos);
                n->op = 1;
                return n;
            }
            node *e = parse_expr(p);
            if (is_op(cur(p), ",")) {
                nvec v = {0};
                nv_push(p, &v, e, NULL, 0);
                while (is_op(cur(p), ",")) {
                    next(p);
                    if (is_op(cur(p), ")")) break;
                    nv_push(p, &v, parse_expr(p), NULL, 0);
                }
                e = mk(p, N_LIST, t->pos);
                e->op = 1;
                nv_to(e, &v);
            }
            expect_op(p, ")");
            return e;
        }
        if (is_op(t, "[") || is_op(t, "{")) {
            int isdict = is_op(t, "{");
            next(p);
            nvec v = {0};
            while (!is_op(cur(p), isdict ? "}" : "]")) {
                nv_push(p, &v, parse_expr(p), NULL, 0);
                if (isdict) {
                    expect_op(p, ":");
                    nv_push(p, &v, parse_expr(p), NULL, 0);
                }
                if (!is_op(cur(p), ",")) break;
                next(p);
            }
            expect_op(p, isdict ? "}" : "]");
            n = mk(p, isdict ? N_DICT : N_LIST, t->pos);
            nv_to(n, &v);
            return n;
        }
        break;
    default:
        break;
    }
    pfail(p, t->pos, "expected an expression, got %s", tok_desc(p, t));
}

static node *parse_postfix(P *p, node *n) {
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, ".")) {
            next(p);
            tok *a = cur(p);
            if (a->kind == T_NAME) {
                next(p);
                node *x = mk(p, N_ATTR, t->pos);
                x->a = n;
                x->s = ar_strndup(p->ar, a->s, a->n);
                x->n = a->n;
                n = x;
            } else if (a->kind == T_INT) {
                next(p);
                node *x = mk(p, N_INDEX, t->pos);
                x->a = n;
                x->b = mk(p, N_CONST, a->pos);
                x->b->k = v_int(a->i);
                n = x;
            } else {
                pfail(p, a->pos, "expected an attribute name after '.', got %s", tok_desc(p, a));
            }
        } else if (is_op(t, "[")) {
            next(p);
            node *part[3] = {NULL, NULL, NULL};
            int slice = 0;
            if (!is_op(cur(p), ":")) part[0] = parse_expr(p);
            if (is_op(cur(p), ":")) {
                slice = 1;
                next(p);
                if (!is_op(cur(p), "]") && !is_op(cur(p), ":")) part[1] = parse_expr(p);
                if (is_op(cur(p), ":")) {
                    next(p);
                    if (!is_op(cur(p), "]")) part[2] = parse_expr(p);
                }
            }
            expect_op(p, "]");
            node *x = mk(p, slice ? N_SLICE : N_INDEX, t->pos);
            x->a = n;
            x->b = part[0];
            x->c = part[1];
            x->d = part[2];
            n = x;
        } else if (is_op(t, "(")) {
            node *x = mk(p, N_CALL, n->pos);
            if (n->kind == N_NAME) {
                if (!in_list(n->s, n->n, FUNCS))
                    pfail(p, n->pos, "unsupported function '%s' (supported: namespace, raise_exception, "
                                     "strftime_now, range)", n->s);
            } else if (n->kind == N_ATTR) {
                if (!in_list(n->s, n->n, METHODS))
                    pfail(p, n->pos, "unsupported method '%s' (supported: startswith, endswith, strip, "
                                     "lstrip, rstrip, split, replace, upper, lower, items, get, keys, values)",
                          n->s);
            } else {
                pfail(p, t->pos, "only functions and methods can be called here");
            }
            x->a = n;
            parse_args(p, x);
            n = x;
        } else {
            return n;
        }
    }
}

static node *parse_filter_expr(P *p, node *n) {
    for (;;) {
        tok *t = cur(p);
        if (is_op(t, "|")) {
            next(p);
            tok *f = cur(p);
            if (f->kind != T_NAME) pfail(p, f->pos, "expected a filter name after '|', got %s", tok_desc(p, f));
            if (!in_list(f->s, f->n, FILTERS))
                pfail(p, f->pos, "unsupported filter '%.*s' (supported: trim, length, count, tojson, string, "
                                 "upper, lower, default, d, first, last, join, items, list, selectattr, rejectattr)", (int)f->n, f->s);
            next(p);
            node *x = mk(p, N_FILTER, f->pos);
            x->a = n;
            x->s = ar_strndup(p->ar, f->s, f->n);
            x->n = f->n;
            if (is_op(cur(p), "(")) parse_args(p, x);
            n = x;
        } else if (is_name(t, "is")) {
            next(p);
            node *x = mk(p, N_TEST, t->pos);
            if (is_name(cur(p), "not")) {
                x->neg = 1;
                next(p);
            }
            tok *f = cur(p);
            if (f->kind != T_NAME)
                pfail(p, f->pos, "expected a test name after 'is', got %s", tok_desc(p, f));
            if (!in_list(f->s, f->n, TESTS))
                pfail(p, f->pos, "unsupported test '%.*s' (supported: defined, undefined, none, string, mapping, "
                                 "iterable, sequence, number, integer, float, boolean, true, false, odd, even, "
                                 "eq, equalto, ne)", (int)f->n, f->s);
            next(p);
            x->a = n;
            x->s = ar_strndup(p->ar, f->s, f->n);
            x->n = f->n;
            tok *a = cur(p);
            if (is_op(a, "(")) {
                parse_args(p, x);
            } else if ((a->kind == T_NAME || a->kind == T_STR || a->kind == T_INT || a->kind == T_FLOAT ||
                        is_op(a, "[") || is_op(a, "{")) &&
                       !is_name(a, "else") && !is_name(a, "or") && !is_name(a, "and") && !is_name(a, "if")) {
                /* Jinja2's one-argument form: x is divisibleby 3 */
                nvec v = {0};
                nv_push(p, &v, parse_postfix(p, parse_primary(p)), NULL, 0);
                nv_to(x, &v);
            }
            n = x;
        } else {
            return n;
        }
    }
}

static node *parse_unary(P *p, int with_filter) {
    enter(p);
    tok *t = cur(p);
    node *n;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(p);
        n = mk(p, is_op(t, "-") ? N_NEG : N_POS, t->pos);
        n->a = parse_unary(p, 0);
    } else {
        n = parse_primary(p);
    }
    n = parse_postfix(p, n);
    if (with_filter) n = parse_filter_expr(p, n);
    p->depth--;
    return n;
}

static node *bin(P *p, int op, size_t pos, node *a, node *b) {
    node *n = mk(p, N_BIN, pos);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static node *parse_pow(P *p) {
    node *n = parse_unary(p, 1);
    while (is_op(cur(p), "**")) {
        size_t pos = cur(p)->pos;
        next(p);
        n = bin(p, OP_POW, pos, n, parse_unary(p, 1));
    }
    return n;
}
static node *parse_math2(P *p) {
    node *n = parse_pow(p);
    for (;;) {
        tok *t = cur(p);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV
                                                                  : is_op(t, "%") ? OP_MOD : -1;
        if (op < 0) return n;
        next(p);
        n = bin(p, op, t->pos, n, parse_pow(p));
    }
}
static node *parse_concat(P *p) {
    node *n = parse_math2(p);
    while (is_op(cur(p), "~")) {
        size_t pos = cur(p)->pos;
        next(p);
        n = bin(p, OP_CONCAT, pos, n, parse_math2(p));
    }
    return n;
}
static node *parse_math1(P *p) {
    node *n = parse_concat(p);
    for (;;) {
        tok *t = cur(p);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
        if (op < 0) return n;
        next(p);
        n = bin(p, op, t->pos, n, parse_concat(p));
    }
}
static node *parse_compare(P *p) {
    node *first = parse_math1(p);
    nvec v = {0};
    size_t pos = cur(p)->pos;
    for (;;) {
        tok *t = cur(p);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT : is_op(t, ">") ? OP_GT
               : is_op(t, "<=") ? OP_LE : is_op(t, ">=") ? OP_GE : is_name(t, "in") ? OP_IN : -1;
        if (op < 0 && is_name(t, "not") && is_name(peek(p, 1), "in")) {
            op = OP_NOTIN;
            next(p);
        }
        if (op < 0) break;
        next(p);
        nv_push(p, &v, parse_math1(p), NULL, op);
    }
    if (!v.n) return first;
    node *n = mk(p, N_CMP, pos);
    n->a = first;
    nv_to(n, &v);
    return n;
}
static node *parse_not(P *p) {
    if (is_name(cur(p), "not")) {
        node *n = mk(p, N_NOT, cur(p)->pos);
        next(p);
        enter(p);
        n->a = parse_not(p);
        p->depth--;
        return n;
    }
    return parse_compare(p);
}
static node *parse_and(P *p) {
    node *n = parse_not(p);
    while (is_name(cur(p), "and")) {
        node *x = mk(p, N_AND, cur(p)->pos);
        next(p);
        x->a = n;
        x->b = parse_not(p);
        n = x;
    }
    return n;
}
static node *parse_or(P *p) {
    node *n = parse_and(p);
    while (is_name(cur(p), "or")) {
        node *x = mk(p, N_OR, cur(p)->pos);
        next(p);
        x->a = n;
        x->b = parse_and(p);
        n = x;
    }
    return n;
}
/* a if c else b (the else part optional: undefined when c is false) */
static node *parse_expr(P *p) {
    enter(p);
    node *n = parse_or(p);
    while (is_name(cur(p), "if")) {
        node *x = mk(p, N_COND, cur(p)->pos);
        next(p);
        x->a = parse_or(p);
        x->b = n;
        if (is_name(cur(p), "else")) {
            next(p);
            x->c = parse_expr(p);
        }
        n = x;
    }
    p->depth--;
    return n;
}
/* An expression, or a tuple of them when commas follow (as in {{ a, b }}). */
static node *parse_tuple(P *p) {
    node *e = parse_expr(p);
    if (!is_op(cur(p), ",")) return e;
    nvec v = {0};
    nv_push(p, &v, e, NULL, 0);
    node *n = mk(p, N_LIST, e->pos);
    while (is_op(cur(p), ",")) {
        next(p);
        if (cur(p)->kind == T_VEND || cur(p)->kind == T_BEND) break;
        nv_push(p, &v, parse_expr(p), NULL, 0);
    }
    n->op = 1;
    nv_to(n, &v);
    return n;
}

static const char *const UNSUPPORTED_TAGS[] = {"macro", "call", "filter", "include", "import", "from",
                                               "extends", "block", "with", "autoescape", "do", "trans",
                                               "print", NULL};

static node *subparse(P *p, const char *const *ends, const char *opener, size_t open_pos);

static node *parse_if(P *p, size_t pos) {
    static const char *const IF_ENDS[] = {"elif", "else", "endif", NULL};
    static const char *const ENDIF[] = {"endif", NULL};
    node *n = mk(p, N_IF, pos);
    n->a = parse_tuple(p);
    expect_bend(p);
    n->b = subparse(p, IF_ENDS, "if", pos);
    tok *t = cur(p);
    if (is_name(t, "elif")) {
        next(p);
        n->c = parse_if(p, t->pos); /* consumes the endif */
        return n;
    }
    if (is_name(t, "else")) {
        next(p);
        expect_bend(p);
        n->c = subparse(p, ENDIF, "if", pos);
    }
    next(p); /* endif */
    expect_bend(p);
    return n;
}

static node *parse_for(P *p, size_t pos) {
    static const char *const FOR_ENDS[] = {"else", "endfor", NULL};
    static const char *const ENDFOR[] = {"endfor", NULL};
    node *n = mk(p, N_FOR, pos);
    const char *names[8];
    size_t k = 0;
    int paren = is_op(cur(p), "(");
    if (paren) next(p);
    for (;;) {
        if (k == 8) pfail(p, cur(p)->pos, "too many loop targets");
        names[k++] = expect_ident(p, "a loop variable name");
        if (!is_op(cur(p), ",")) break;
        next(p);
    }
    if (paren) expect_op(p, ")");
    n->names = ar_alloc(p->ar, k * sizeof *n->names);
    memcpy(n->names, names, k * sizeof *names);
    n->nnames = k;
    if (!is_name(cur(p), "in")) pfail(p, cur(p)->pos, "expected 'in' in a for loop, got %s", tok_desc(p, cur(p)));
    next(p);
    n->a = parse_or(p); /* no inline if: 'if' here filters the loop */
    if (is_name(cur(p), "if")) {
        next(p);
        n->b = parse_expr(p);
    }
    if (is_name(cur(p), "recursive")) pfail(p, cur(p)->pos, "unsupported construct: recursive loops");
    expect_bend(p);
    p->loop_depth++;
    n->c = subparse(p, FOR_ENDS, "for", pos);
    p->loop_depth--;
    if (is_name(cur(p), "else")) {
        next(p);
        expect_bend(p);
        n->d = subparse(p, ENDFOR, "for", pos);
    }
    next(p); /* endfor */
    expect_bend(p);
    return n;
}

static node *parse_set(P *p, size_t pos) {
    node *n = mk(p, N_SET, pos);
    n->s = expect_ident(p, "a variable name after 'set'");
    if (is_op(cur(p), ".")) {
        next(p);
        n->s2 = expect_ident(p, "an attribute name");
    }
    if (is_op(cur(p), ",")) pfail(p, cur(p)->pos, "unsupported construct: tuple assignment in set");
    if (cur(p)->kind == T_BEND)
        pfail(p, cur(p)->pos, "unsupported construct: block set ({%% set x %%}...{%% endset %%})");
    expect_op(p, "=");
    n->a = parse_tuple(p);
    expect_bend(p);
    return n;
}

static node *parse_statement(P *p) {
    static const char *const ENDGEN[] = {"endgeneration", NULL};
    tok *t = cur(p);
    size_t pos = t->pos;
    if (t->kind != T_NAME) pfail(p, pos, "expected a tag name after '{%%', got %s", tok_desc(p, t));
    next(p);
    if (is_name(t, "if")) return parse_if(p, pos);
    if (is_name(t, "for")) return parse_for(p, pos);
    if (is_name(t, "set")) return parse_set(p, pos);
    if (is_name(t, "break") || is_name(t, "continue")) {
        if (!p->loop_depth) pfail(p, pos, "'%.*s' outside a for loop", (int)t->n, t->s);
        expect_bend(p);
        return mk(p, is_name(t, "break") ? N_BREAK : N_CONTINUE, pos);
    }
    if (is_name(t, "generation")) { /* transformers' assistant-mask tag: renders its body */
        expect_bend(p);
        node *b = subparse(p, ENDGEN, "generation", pos);
        next(p);
        expect_bend(p);
        return b;
    }
    if (in_list(t->s, t->n, UNSUPPORTED_TAGS))
        pfail(p, pos, "unsupported tag '%.*s' (supported tags: if, for, set, break, continue, generation)",
              (int)t->n, t->s);
    if (is_name(t, "elif") || is_name(t, "else") || (t->n > 3 && !memcmp(t->s, "end", 3)))
        pfail(p, pos, "unexpected '%.*s' (no open tag that it closes)", (int)t->n, t->s);
    pfail(p, pos, "unknown tag '%.*s' (supported tags: if, for, set, break, continue, generation)", (int)t->n,
          t->s);
}

/* Statements until a {% NAME %} with NAME in ends (left as the current
 * token), or the end of the template when ends is NULL. */
static node *subparse(P *p, const char *const *ends, const char *opener, size_t open_pos) {
    nvec v = {0};
    node *body = mk(p, N_BODY, cur(p)->pos);
    enter(p);
    for (;;) {
        tok *t = cur(p);
        if (t->kind == T_EOF) {
            if (ends)
                pfail(p, open_pos, "unclosed '%s' tag: expected '{%% end%s %%}' before the end of the template",
                      opener, opener);
            break;
        }
        if (t->kind == T_DATA) {
            node *x = mk(p, N_TEXT, t->pos);
            x->s = t->s;
            x->n = t->n;
            nv_push(p, &v, x, NULL, 0);
            next(p);
        } else if (t->kind == T_VBEGIN) {
            next(p);
            node *x = mk(p, N_OUT, t->pos);
            x->a = parse_tuple(p);
            if (cur(p)->kind != T_VEND) pfail(p, cur(p)->pos, "expected '}}', got %s", tok_desc(p, cur(p)));
            next(p);
            nv_push(p, &v, x, NULL, 0);
        } else if (t->kind == T_BBEGIN) {
            next(p);
            tok *name = cur(p);
            if (ends && name->kind == T_NAME && in_list(name->s, name->n, ends)) break;
            nv_push(p, &v, parse_statement(p), NULL, 0);
        } else {
            pfail(p, t->pos, "unexpected %s", tok_desc(p, t));
        }
    }
    nv_to(body, &v);
    p->depth--;
    return body;
}

rl_chat_template *rl_chat_template_parse(const char *src, size_t len, const char *origin, char *err,
                                         size_t errlen) {
    set_err(err, errlen, "%s", "");
    if (!src && len) {
        set_err(err, errlen, "rl_chat_template_parse: NULL source");
        return NULL;
    }
    rl_chat_template *t = calloc(1, sizeof *t);
    P *p = calloc(1, sizeof *p);
    if (!t || !p) {
        free(t);
        free(p);
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    t->ar.jb = &p->jb;
    t->ar.msg = err;
    t->ar.msglen = errlen;
    if (setjmp(p->jb)) {
        free(p);
        rl_chat_template_free(t);
        return NULL;
    }
    /* Jinja2 turns \r\n and \r into \n and drops one trailing newline */
    char *s = ar_alloc(&t->ar, len + 1);
    size_t k = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[k++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            s[k++] = src[i];
        }
    }
    if (k && s[k - 1] == '\n') k--;
    s[k] = 0;
    t->src = s;
    t->len = k;
    t->origin = ar_strndup(&t->ar, origin ? origin : "<template>", strlen(origin ? origin : "<template>"));
    p->src = t->src;
    p->len = t->len;
    p->origin = t->origin;
    p->ar = &t->ar;
    p->err = err;
    p->errlen = errlen;
    lex(p);
    p->at = 0;
    t->root = subparse(p, NULL, NULL, 0);
    t->ar.jb = NULL; /* nothing allocates in the template's arena after parsing */
    t->ar.msg = NULL;
    free(p);
    return t;
}

