/* models/chat_template.c - Hugging Face chat templates (a Jinja2 subset, listed
 * in rl_chat_template.h) interpreted in C: a lexer that applies Jinja2's
 * whitespace rules as transformers configures them (trim_blocks,
 * lstrip_blocks), a recursive-descent parser to an AST that refuses anything
 * outside the subset, and a tree-walking evaluator over a small value type
 * that follows Python's semantics where the published templates rely on them.
 *
 * Memory: the AST lives in the template's arena; every value a render makes
 * lives in that render's arena, freed at once when it ends. Errors unwind
 * with longjmp to the entry point, which is safe because nothing between
 * owns memory outside those arenas (the output buffer is freed there).
 */
#include "rl_chat_template.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- arena ------------------------------------------------------------- */

typedef struct chunk {
    struct chunk *next;
    size_t used, cap;
    max_align_t data[];
} chunk;

typedef struct {
    chunk *head;
    jmp_buf *jb;  /* where an allocation failure unwinds to */
    char *msg;    /* and where it says so */
    size_t msglen;
} arena;

static void arena_free(arena *a) {
    for (chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    a->head = NULL;
}

static void *ar_alloc(arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    chunk *c = a->head;
    if (!c || c->cap - c->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        c = malloc(sizeof *c + cap);
        if (!c) {
            if (a->msg && a->msglen) snprintf(a->msg, a->msglen, "out of memory");
            longjmp(*a->jb, RL_ERR_MEMORY);
        }
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = (char *)c->data + c->used;
    c->used += n;
    return p;
}

static char *ar_strndup(arena *a, const char *s, size_t n) {
    char *p = ar_alloc(a, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* A growable byte buffer in an arena (growth copies; the old block is the
 * arena's to free). */
typedef struct {
    char *p;
    size_t n, cap;
    arena *a;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = ar_alloc(b->a, cap);
        if (b->n) memcpy(p, b->p, b->n);
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* ---- UTF-8 and Python's notion of whitespace ---------------------------- */

/* Decodes the code point at s[0..n) (n >= 1) into *cp; returns its length. A
 * byte that starts no valid sequence counts as one code point of its own, so
 * that any bytes survive slicing. */
static size_t u8_next(const char *s, size_t n, int32_t *cp) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    if (k <= 0) {
        *cp = 0xDC00 + (unsigned char)s[0];
        return 1;
    }
    *cp = c;
    return (size_t)k;
}

static size_t u8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
        int32_t cp;
        i += u8_next(s + i, n - i, &cp);
    }
    return k;
}

/* Python's str.isspace, which str.strip() and the regex \s of Jinja2's lexer use. */
static int py_isspace(int32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The byte length of the whitespace run at the start of s[0..n). */
static size_t py_space_prefix(const char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        int32_t cp;
        size_t k = u8_next(s + i, n - i, &cp);
        if (!py_isspace(cp)) break;
        i += k;
    }
    return i;
}

/* The start of the whitespace run that ends s[0..n). */
static size_t py_rstrip_len(const char *s, size_t n) {
    while (n > 0) {
        size_t st = n - 1;
        while (st > 0 && n - st < 4 && ((unsigned char)s[st] & 0xc0) == 0x80) st--;
        int32_t cp;
        size_t k = u8_next(s + st, n - st, &cp);
        if (st + k != n) { /* not one whole code point: take the last byte alone */
            st = n - 1;
            u8_next(s + st, 1, &cp);
        }
        if (!py_isspace(cp)) break;
        n = st;
    }
    return n;
}

/* ---- values ------------------------------------------------------------ */

enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_LOOP, V_FUNC };
enum { F_NAMESPACE, F_RAISE, F_STRFTIME, F_RANGE };

typedef struct list list;
typedef struct dict dict;
typedef struct loopinfo loopinfo;

typedef struct value {
    int t;
    union {
        int b;
        int64_t i;
        double f;
        struct {
            const char *p; /* V_STR: the bytes; V_UNDEF: Jinja2's message, or NULL */
            size_t n;
        } s;
        list *l;
        dict *d;
        loopinfo *loop;
        int fn;
    } u;
} value;

struct list {
    value *v;
    size_t n;
    int tuple; /* renders as (a, b) */
};

struct dict { /* insertion-ordered, as Python's */
    value *k, *v;
    size_t n, cap;
};

struct loopinfo {
    int64_t index0, length;
    value prev, next;
};

static value v_undef(const char *hint) {
    value v = {V_UNDEF};
    v.u.s.p = hint;
    return v;
}
static value v_none(void) { return (value){V_NONE}; }
static value v_bool(int b) {
    value v = {V_BOOL};
    v.u.b = !!b;
    return v;
}
static value v_int(int64_t i) {
    value v = {V_INT};
    v.u.i = i;
    return v;
}
static value v_float(double f) {
    value v = {V_FLOAT};
    v.u.f = f;
    return v;
}
static value v_str(const char *p, size_t n) {
    value v = {V_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}

/* ---- AST ----------------------------------------------------------------- */

enum {
    /* statements */
    N_BODY, N_TEXT, N_OUT, N_IF, N_FOR, N_SET, N_BREAK, N_CONTINUE,
    /* expressions */
    N_CONST, N_NAME, N_LIST, N_DICT, N_ATTR, N_INDEX, N_SLICE, N_CALL, N_FILTER, N_TEST,
    N_NOT, N_NEG, N_POS, N_BIN, N_AND, N_OR, N_CMP, N_COND,
};

/* binary and comparison operators */
enum { OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
       OP_EQ, OP_NE, OP_LT, OP_GT, OP_LE, OP_GE, OP_IN, OP_NOTIN };

typedef struct node node;
struct node {
    int kind;
    size_t pos;         /* byte offset in the source, for line:column */
    node *a, *b, *c, *d;
    node **v;           /* body statements, items, call arguments, comparison operands */
    const char **kw;    /* N_CALL/N_FILTER/N_TEST: keyword of each argument, or NULL */
    int *ops;           /* N_CMP: the operator before each operand */
    size_t nv;
    const char *s;      /* names, filter/test/method names, text */
    size_t n;
    const char *s2;     /* N_SET: the namespace attribute; N_FOR: second target */
    const char **names; /* N_FOR: targets */
    size_t nnames;
    int op, neg;
    value k;            /* N_CONST */
};

struct rl_chat_template {
    arena ar;           /* the AST and the source */
    char *src;          /* normalised source */
    size_t len;
    char *origin;
    node *root;
    /* variables set by the caller: name -> string, or boolean when is_bool */
    struct var {
        char *name, *str;
        int is_bool, b;
    } *vars;
    size_t nvars;
    int has_time;
    struct tm time;
};

/* "origin:line:col" for a byte offset of the source. */
static void locate(const char *src, size_t len, size_t pos, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < pos && i < len; i++) {
        if (src[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)src[i] & 0xc0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}

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
                                      "default", "d", "first", "last", "join", "items", "list", NULL};
static const char *const TESTS[] = {"defined", "undefined", "none", "string", "mapping", "iterable",
                                    "sequence", "number", "integer", "float", "boolean", "true",
                                    "false", "odd", "even", "eq", "equalto", "==", "ne", "!=", NULL};
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
                                 "upper, lower, default, d, first, last, join, items, list)", (int)f->n, f->s);
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
            if (!(f->kind == T_NAME || is_op(f, "==") || is_op(f, "!=")))
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

/* ---- rendering: state, errors, scopes ------------------------------------ */

typedef struct scope {
    struct scope *up;
    const char **names;
    value *vals;
    size_t n, cap;
} scope;

typedef struct {
    const rl_chat_template *t;
    arena ar;
    jmp_buf jb;
    char *err;
    size_t errlen;
    scope *sc;
    int ctl; /* 1: break, 2: continue, pending */
    int depth; /* of eval_node and repr/json recursion: left-deep chains (a+b+...) and
                * self-containing namespaces must fail, not overflow the stack */
    size_t at;  /* the expression being evaluated, for errors without a node */
    char *out;
    size_t outn, outcap;
    struct tm now;
} R;

static _Noreturn void rfail(R *r, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static _Noreturn void rfail(R *r, size_t pos, const char *fmt, ...) {
    if (r->err && r->errlen) {
        int line, col;
        locate(r->t->src, r->t->len, pos, &line, &col);
        int k = snprintf(r->err, r->errlen, "%s:%d:%d: ", r->t->origin, line, col);
        if (k >= 0 && (size_t)k < r->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(r->err + k, r->errlen - (size_t)k, fmt, ap);
            va_end(ap);
        }
    }
    longjmp(r->jb, RL_ERR_ARG);
}

/* Jinja2's UndefinedError for a use of an undefined that needs a value. */
static _Noreturn void undef_fail(R *r, size_t pos, value v) {
    rfail(r, pos, "%s", v.u.s.p ? v.u.s.p : "undefined value");
}

static char *rprintf(R *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *rprintf(R *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = ar_alloc(&r->ar, (size_t)k + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)k + 1, fmt, ap);
    va_end(ap);
    return s;
}

static value *lookup(R *r, const char *name) {
    for (scope *s = r->sc; s; s = s->up)
        for (size_t i = s->n; i-- > 0;)
            if (!strcmp(s->names[i], name)) return &s->vals[i];
    return NULL;
}

static void scope_set(R *r, scope *s, const char *name, value v) {
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->names[i], name)) {
            s->vals[i] = v;
            return;
        }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        const char **nn = ar_alloc(&r->ar, cap * sizeof *nn);
        value *nv = ar_alloc(&r->ar, cap * sizeof *nv);
        if (s->n) {
            memcpy(nn, s->names, s->n * sizeof *nn);
            memcpy(nv, s->vals, s->n * sizeof *nv);
        }
        s->names = nn;
        s->vals = nv;
        s->cap = cap;
    }
    s->names[s->n] = name;
    s->vals[s->n++] = v;
}

static scope *scope_push(R *r) {
    scope *s = ar_alloc(&r->ar, sizeof *s);
    memset(s, 0, sizeof *s);
    s->up = r->sc;
    r->sc = s;
    return s;
}

static void out_put(R *r, const char *s, size_t n) {
    if (r->outn + n + 1 > r->outcap) {
        size_t cap = r->outcap ? r->outcap * 2 : 1024;
        while (cap < r->outn + n + 1) cap *= 2;
        char *p = realloc(r->out, cap);
        if (!p) {
            if (r->err && r->errlen) snprintf(r->err, r->errlen, "out of memory");
            longjmp(r->jb, RL_ERR_MEMORY);
        }
        r->out = p;
        r->outcap = cap;
    }
    if (n) memcpy(r->out + r->outn, s, n);
    r->outn += n;
    r->out[r->outn] = 0;
}

/* ---- values: lists, dicts, names of types -------------------------------- */

static value mk_list(R *r, size_t n, int tuple) {
    list *l = ar_alloc(&r->ar, sizeof *l);
    l->v = ar_alloc(&r->ar, (n ? n : 1) * sizeof *l->v);
    l->n = n;
    l->tuple = tuple;
    value v = {V_LIST};
    v.u.l = l;
    return v;
}

static value mk_dict(R *r, int t) {
    dict *d = ar_alloc(&r->ar, sizeof *d);
    memset(d, 0, sizeof *d);
    value v = {t};
    v.u.d = d;
    return v;
}

static int veq(value a, value b);

static value *dict_find(dict *d, value k) {
    for (size_t i = 0; i < d->n; i++)
        if (veq(d->k[i], k)) return &d->v[i];
    return NULL;
}

static value *dict_find_str(dict *d, const char *s, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == V_STR && d->k[i].u.s.n == n && !memcmp(d->k[i].u.s.p, s, n)) return &d->v[i];
    return NULL;
}

static void dict_set(R *r, dict *d, value k, value v) {
    value *slot = dict_find(d, k);
    if (slot) {
        *slot = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        value *nk = ar_alloc(&r->ar, cap * sizeof *nk), *nv = ar_alloc(&r->ar, cap * sizeof *nv);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

/* Python's type(x).__name__, for TypeError messages. */
static const char *pytype(value v) {
    switch (v.t) {
    case V_UNDEF: return "Undefined";
    case V_NONE: return "NoneType";
    case V_BOOL: return "bool";
    case V_INT: return "int";
    case V_FLOAT: return "float";
    case V_STR: return "str";
    case V_LIST: return v.u.l->tuple ? "tuple" : "list";
    case V_DICT: return "dict";
    case V_NS: return "Namespace";
    case V_LOOP: return "LoopContext";
    default: return "function";
    }
}

/* Jinja2's object_type_repr, for undefined hints. */
static const char *type_repr(value v) {
    switch (v.t) {
    case V_NONE: return "None";
    case V_BOOL: return "bool object";
    case V_INT: return "int object";
    case V_FLOAT: return "float object";
    case V_STR: return "str object";
    case V_LIST: return v.u.l->tuple ? "tuple object" : "list object";
    case V_DICT: return "dict object";
    case V_NS: return "jinja2.utils.Namespace object";
    case V_LOOP: return "jinja2.runtime.LoopContext object";
    default: return "builtin_function_or_method object";
    }
}

static int truthy(value v) {
    switch (v.t) {
    case V_UNDEF:
    case V_NONE: return 0;
    case V_BOOL: return v.u.b;
    case V_INT: return v.u.i != 0;
    case V_FLOAT: return v.u.f != 0;
    case V_STR: return v.u.s.n != 0;
    case V_LIST: return v.u.l->n != 0;
    case V_DICT: return v.u.d->n != 0;
    default: return 1;
    }
}

static int is_num(value v) { return v.t == V_BOOL || v.t == V_INT || v.t == V_FLOAT; }
static double num_f(value v) { return v.t == V_FLOAT ? v.u.f : v.t == V_INT ? (double)v.u.i : v.u.b; }
static int64_t num_i(value v) { return v.t == V_INT ? v.u.i : v.u.b; }

static int veq(value a, value b) {
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT) return num_i(a) == num_i(b);
        return num_f(a) == num_f(b);
    }
    if (a.t != b.t) return 0;
    switch (a.t) {
    case V_UNDEF:
    case V_NONE: return 1;
    case V_STR: return a.u.s.n == b.u.s.n && !memcmp(a.u.s.p, b.u.s.p, a.u.s.n);
    case V_LIST:
        if (a.u.l->tuple != b.u.l->tuple || a.u.l->n != b.u.l->n) return 0;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!veq(a.u.l->v[i], b.u.l->v[i])) return 0;
        return 1;
    case V_DICT:
        if (a.u.d->n != b.u.d->n) return 0;
        for (size_t i = 0; i < a.u.d->n; i++) {
            value *o = dict_find(b.u.d, a.u.d->k[i]);
            if (!o || !veq(a.u.d->v[i], *o)) return 0;
        }
        return 1;
    case V_NS: return a.u.d == b.u.d;
    case V_LOOP: return a.u.loop == b.u.loop;
    default: return a.u.fn == b.u.fn;
    }
}

/* a < b as -1/0/1, or a TypeError as Python gives. */
static int vcmp(R *r, size_t pos, value a, value b, const char *op) {
    if (a.t == V_UNDEF) undef_fail(r, pos, a);
    if (b.t == V_UNDEF) undef_fail(r, pos, b);
    if (is_num(a) && is_num(b)) {
        if (a.t != V_FLOAT && b.t != V_FLOAT) return num_i(a) < num_i(b) ? -1 : num_i(a) > num_i(b);
        double x = num_f(a), y = num_f(b);
        return x < y ? -1 : x > y;
    }
    if (a.t == V_STR && b.t == V_STR) { /* UTF-8 byte order is code point order */
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int c = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;
        if (c) return c < 0 ? -1 : 1;
        return a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n;
    }
    if (a.t == V_LIST && b.t == V_LIST && a.u.l->tuple == b.u.l->tuple) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++)
            if (!veq(a.u.l->v[i], b.u.l->v[i])) return vcmp(r, pos, a.u.l->v[i], b.u.l->v[i], op);
        return a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
    }
    rfail(r, pos, "'%s' not supported between instances of '%s' and '%s'", op, pytype(a), pytype(b));
}

/* ---- str() and repr() as Python writes them -------------------------------- */

static void py_float(double d, char *out) {
    if (isnan(d)) {
        strcpy(out, "nan");
        return;
    }
    if (isinf(d)) {
        strcpy(out, d < 0 ? "-inf" : "inf");
        return;
    }
    char buf[48];
    for (int prec = 1; prec <= 17; prec++) { /* the shortest digits that read back exactly */
        snprintf(buf, sizeof buf, "%.*e", prec - 1, d);
        if (strtod(buf, NULL) == d) break;
    }
    char digits[24];
    int nd = 0;
    const char *q = buf;
    char *o = out;
    if (*q == '-') {
        *o++ = '-';
        q++;
    }
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9' && nd < 20) digits[nd++] = *q;
    int e = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (e >= -4 && e < 16) {
        if (e < 0) {
            *o++ = '0';
            *o++ = '.';
            for (int i = 0; i < -e - 1; i++) *o++ = '0';
            for (int i = 0; i < nd; i++) *o++ = digits[i];
        } else {
            for (int i = 0; i <= e; i++) *o++ = i < nd ? digits[i] : '0';
            *o++ = '.';
            if (nd > e + 1)
                for (int i = e + 1; i < nd; i++) *o++ = digits[i];
            else
                *o++ = '0';
        }
        *o = 0;
    } else {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            for (int i = 1; i < nd; i++) *o++ = digits[i];
        }
        sprintf(o, "e%c%02d", e < 0 ? '-' : '+', e < 0 ? -e : e);
    }
}

static void str_into(R *r, sbuf *b, value v);

static void repr_str(sbuf *b, const char *s, size_t n) {
    int has1 = memchr(s, '\'', n) != NULL, has2 = memchr(s, '"', n) != NULL;
    char q = has1 && !has2 ? '"' : '\'';
    sb_put(b, &q, 1);
    for (size_t i = 0; i < n;) {
        int32_t cp;
        size_t k = u8_next(s + i, n - i, &cp);
        if (cp == q || cp == '\\') {
            char e[2] = {'\\', (char)cp};
            sb_put(b, e, 2);
        } else if (cp == '\n') sb_puts(b, "\\n");
        else if (cp == '\r') sb_puts(b, "\\r");
        else if (cp == '\t') sb_puts(b, "\\t");
        else if (cp < 0x20 || (cp >= 0x7f && cp <= 0xa0) || cp == 0xad) sb_printf(b, "\\x%02x", (unsigned)cp);
        else sb_put(b, s + i, k);
        i += k;
    }
    sb_put(b, &q, 1);
}

static void repr_into(R *r, sbuf *b, value v) {
    if (++r->depth > 2000) rfail(r, r->at, "value nested too deeply to print (does a namespace contain itself?)");
    if (v.t == V_STR) {
        repr_str(b, v.u.s.p, v.u.s.n);
    } else if (v.t == V_LIST) {
        sb_puts(b, v.u.l->tuple ? "(" : "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) sb_puts(b, ", ");
            repr_into(r, b, v.u.l->v[i]);
        }
        if (v.u.l->tuple && v.u.l->n == 1) sb_puts(b, ",");
        sb_puts(b, v.u.l->tuple ? ")" : "]");
    } else if (v.t == V_DICT) {
        sb_puts(b, "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) sb_puts(b, ", ");
            repr_into(r, b, v.u.d->k[i]);
            sb_puts(b, ": ");
            repr_into(r, b, v.u.d->v[i]);
        }
        sb_puts(b, "}");
    } else if (v.t == V_UNDEF) {
        sb_puts(b, "Undefined");
    } else {
        str_into(r, b, v);
    }
    r->depth--;
}

static void str_into(R *r, sbuf *b, value v) {
    char tmp[48];
    switch (v.t) {
    case V_UNDEF: break;
    case V_NONE: sb_puts(b, "None"); break;
    case V_BOOL: sb_puts(b, v.u.b ? "True" : "False"); break;
    case V_INT: sb_printf(b, "%lld", (long long)v.u.i); break;
    case V_FLOAT: py_float(v.u.f, tmp); sb_puts(b, tmp); break;
    case V_STR: sb_put(b, v.u.s.p, v.u.s.n); break;
    case V_NS: {
        sb_puts(b, "<Namespace ");
        value d = v;
        d.t = V_DICT;
        repr_into(r, b, d);
        sb_puts(b, ">");
        break;
    }
    case V_LOOP:
        sb_printf(b, "<LoopContext %lld/%lld>", (long long)v.u.loop->index0 + 1, (long long)v.u.loop->length);
        break;
    case V_FUNC: sb_puts(b, "<function>"); break;
    default: repr_into(r, b, v); break;
    }
}

/* str(v) as a V_STR (strings as they are). */
static value to_str(R *r, value v) {
    if (v.t == V_STR) return v;
    sbuf b = {.a = &r->ar};
    sb_put(&b, "", 0);
    str_into(r, &b, v);
    return v_str(b.p, b.n);
}

/* ---- transformers' tojson: json.dumps(x, ensure_ascii=False, indent=indent) */

static void json_str(sbuf *b, const char *s, size_t n) {
    sb_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': sb_puts(b, "\\\""); break;
        case '\\': sb_puts(b, "\\\\"); break;
        case '\n': sb_puts(b, "\\n"); break;
        case '\r': sb_puts(b, "\\r"); break;
        case '\t': sb_puts(b, "\\t"); break;
        case '\b': sb_puts(b, "\\b"); break;
        case '\f': sb_puts(b, "\\f"); break;
        default:
            if (c < 0x20) sb_printf(b, "\\u%04x", c);
            else sb_put(b, s + i, 1);
        }
    }
    sb_puts(b, "\"");
}

static void json_nl(sbuf *b, value ind, int level) {
    if (ind.t == V_NONE) return;
    sb_puts(b, "\n");
    for (int i = 0; i < level; i++) {
        if (ind.t == V_STR) sb_put(b, ind.u.s.p, ind.u.s.n);
        else
            for (int64_t k = 0; k < ind.u.i; k++) sb_puts(b, " ");
    }
}

static void json_into(R *r, size_t pos, sbuf *b, value v, value ind, int level) {
    char tmp[48];
    if (level > 1000) rfail(r, pos, "Circular reference detected (or a value nested more than 1000 deep)");
    const char *sep = ind.t == V_NONE ? ", " : ",";
    switch (v.t) {
    case V_NONE: sb_puts(b, "null"); break;
    case V_BOOL: sb_puts(b, v.u.b ? "true" : "false"); break;
    case V_INT: sb_printf(b, "%lld", (long long)v.u.i); break;
    case V_FLOAT:
        if (isnan(v.u.f)) sb_puts(b, "NaN");
        else if (isinf(v.u.f)) sb_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        else {
            py_float(v.u.f, tmp);
            sb_puts(b, tmp);
        }
        break;
    case V_STR: json_str(b, v.u.s.p, v.u.s.n); break;
    case V_LIST:
        if (!v.u.l->n) {
            sb_puts(b, "[]");
            break;
        }
        sb_puts(b, "[");
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) sb_puts(b, sep);
            json_nl(b, ind, level + 1);
            json_into(r, pos, b, v.u.l->v[i], ind, level + 1);
        }
        json_nl(b, ind, level);
        sb_puts(b, "]");
        break;
    case V_DICT:
        if (!v.u.d->n) {
            sb_puts(b, "{}");
            break;
        }
        sb_puts(b, "{");
        for (size_t i = 0; i < v.u.d->n; i++) {
            value k = v.u.d->k[i];
            if (i) sb_puts(b, sep);
            json_nl(b, ind, level + 1);
            if (k.t == V_STR) json_str(b, k.u.s.p, k.u.s.n);
            else if (k.t == V_NONE) sb_puts(b, "\"null\"");
            else if (k.t == V_BOOL) sb_puts(b, k.u.b ? "\"true\"" : "\"false\"");
            else if (k.t == V_INT || k.t == V_FLOAT) {
                sb_puts(b, "\"");
                json_into(r, pos, b, k, ind, level);
                sb_puts(b, "\"");
            } else rfail(r, pos, "keys must be str, int, float, bool or None, not %s", pytype(k));
            sb_puts(b, ": ");
            json_into(r, pos, b, v.u.d->v[i], ind, level + 1);
        }
        json_nl(b, ind, level);
        sb_puts(b, "}");
        break;
    default: rfail(r, pos, "Object of type %s is not JSON serializable", pytype(v));
    }
}

/* ---- access: attributes, items, slices, iteration ------------------------- */

static value eval_node(R *r, node *n);

/* Byte offsets of each code point of s, plus n at the end; *count code points. */
static size_t *cp_offsets(R *r, const char *s, size_t n, size_t *count) {
    size_t *o = ar_alloc(&r->ar, (n + 1) * sizeof *o), k = 0;
    for (size_t i = 0; i < n;) {
        int32_t cp;
        o[k++] = i;
        i += u8_next(s + i, n - i, &cp);
    }
    o[k] = n;
    *count = k;
    return o;
}

static value getattr_v(R *r, size_t pos, value obj, const char *name, size_t n) {
    if (obj.t == V_UNDEF) undef_fail(r, pos, obj);
    if (obj.t == V_DICT || obj.t == V_NS) {
        value *v = dict_find_str(obj.u.d, name, n);
        if (v) return *v;
    } else if (obj.t == V_LOOP) {
        loopinfo *l = obj.u.loop;
        if (!strcmp(name, "index0")) return v_int(l->index0);
        if (!strcmp(name, "index")) return v_int(l->index0 + 1);
        if (!strcmp(name, "revindex0")) return v_int(l->length - l->index0 - 1);
        if (!strcmp(name, "revindex")) return v_int(l->length - l->index0);
        if (!strcmp(name, "first")) return v_bool(l->index0 == 0);
        if (!strcmp(name, "last")) return v_bool(l->index0 == l->length - 1);
        if (!strcmp(name, "length")) return v_int(l->length);
        if (!strcmp(name, "previtem")) return l->index0 > 0 ? l->prev : v_undef("there is no previous item");
        if (!strcmp(name, "nextitem")) return l->index0 < l->length - 1 ? l->next : v_undef("there is no next item");
        if (!strcmp(name, "depth")) return v_int(1);
        if (!strcmp(name, "depth0")) return v_int(0);
    }
    return v_undef(rprintf(r, "'%s' has no attribute '%s'", type_repr(obj), name));
}

static value str_at(R *r, const char *s, size_t n, int64_t i, size_t *ok) {
    size_t count, *o = cp_offsets(r, s, n, &count);
    if (i < 0) i += (int64_t)count;
    if (i < 0 || i >= (int64_t)count) {
        *ok = 0;
        return v_none();
    }
    *ok = 1;
    return v_str(s + o[i], o[i + 1] - o[i]);
}

static value getitem_v(R *r, size_t pos, value obj, value key) {
    if (obj.t == V_UNDEF) undef_fail(r, pos, obj);
    if ((obj.t == V_LIST || obj.t == V_STR) && (key.t == V_INT || key.t == V_BOOL)) {
        int64_t i = num_i(key);
        if (obj.t == V_LIST) {
            int64_t n = (int64_t)obj.u.l->n;
            if (i < 0) i += n;
            if (i >= 0 && i < n) return obj.u.l->v[i];
        } else {
            size_t ok;
            value c = str_at(r, obj.u.s.p, obj.u.s.n, i, &ok);
            if (ok) return c;
        }
        return v_undef(rprintf(r, "%s has no element %lld", type_repr(obj), (long long)num_i(key)));
    }
    if (obj.t == V_DICT) {
        value *v = dict_find(obj.u.d, key);
        if (v) return *v;
    }
    if (key.t == V_STR) { /* Jinja2 falls back to the attribute */
        return getattr_v(r, pos, obj, ar_strndup(&r->ar, key.u.s.p, key.u.s.n), key.u.s.n);
    }
    sbuf b = {.a = &r->ar};
    sb_put(&b, "", 0);
    repr_into(r, &b, key);
    return v_undef(rprintf(r, "%s has no element %s", type_repr(obj), b.p));
}

/* Python's slice index adjustment (PySlice_AdjustIndices). */
static int64_t slice_bound(R *r, size_t pos, value v, int64_t len, int64_t step, int is_start) {
    if (v.t == V_NONE || v.t == V_UNDEF) return is_start ? (step < 0 ? len - 1 : 0) : (step < 0 ? -1 : len);
    if (v.t != V_INT && v.t != V_BOOL) rfail(r, pos, "slice indices must be integers or None, not %s", pytype(v));
    int64_t i = num_i(v);
    if (i < 0) {
        i += len;
        if (i < 0) i = step < 0 ? -1 : 0;
    } else if (i >= len) {
        i = step < 0 ? len - 1 : len;
    }
    return i;
}

static value slice_v(R *r, node *n) {
    value obj = eval_node(r, n->a);
    value a = n->b ? eval_node(r, n->b) : v_none(), b = n->c ? eval_node(r, n->c) : v_none(),
          c = n->d ? eval_node(r, n->d) : v_none();
    if (obj.t == V_UNDEF) undef_fail(r, n->pos, obj);
    if (obj.t != V_LIST && obj.t != V_STR) return v_undef(rprintf(r, "%s cannot be sliced", type_repr(obj)));
    int64_t step = 1;
    if (c.t != V_NONE) {
        if (c.t != V_INT && c.t != V_BOOL) rfail(r, n->pos, "slice step must be an integer or None");
        step = num_i(c);
        if (step == 0) rfail(r, n->pos, "slice step cannot be zero");
    }
    size_t count, *o = NULL;
    if (obj.t == V_LIST) count = obj.u.l->n;
    else o = cp_offsets(r, obj.u.s.p, obj.u.s.n, &count);
    int64_t len = (int64_t)count, start = slice_bound(r, n->pos, a, len, step, 1),
            stop = slice_bound(r, n->pos, b, len, step, 0);
    size_t k = 0;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) k++;
    if (obj.t == V_LIST) {
        value out = mk_list(r, k, obj.u.l->tuple);
        size_t j = 0;
        for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) out.u.l->v[j++] = obj.u.l->v[i];
        return out;
    }
    sbuf sb = {.a = &r->ar};
    sb_put(&sb, "", 0);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
        sb_put(&sb, obj.u.s.p + o[i], o[i + 1] - o[i]);
    return v_str(sb.p, sb.n);
}

/* The items a for loop (or a filter) walks over: list items, a string's code
 * points, a dict's keys; an undefined is empty. */
static void iter_items(R *r, size_t pos, value v, value **items, size_t *n) {
    switch (v.t) {
    case V_UNDEF:
        *items = NULL;
        *n = 0;
        return;
    case V_LIST:
        *items = v.u.l->v;
        *n = v.u.l->n;
        return;
    case V_DICT:
        *items = v.u.d->k;
        *n = v.u.d->n;
        return;
    case V_STR: {
        size_t count, *o = cp_offsets(r, v.u.s.p, v.u.s.n, &count);
        value *it = ar_alloc(&r->ar, (count ? count : 1) * sizeof *it);
        for (size_t i = 0; i < count; i++) it[i] = v_str(v.u.s.p + o[i], o[i + 1] - o[i]);
        *items = it;
        *n = count;
        return;
    }
    default: rfail(r, pos, "'%s' object is not iterable", pytype(v));
    }
}

/* ---- Python's str methods ------------------------------------------------ */

static size_t find_bytes(const char *h, size_t hn, const char *nd, size_t nn, size_t from) {
    if (nn == 0) return from <= hn ? from : (size_t)-1;
    for (size_t i = from; i + nn <= hn; i++)
        if (h[i] == nd[0] && !memcmp(h + i, nd, nn)) return i;
    return (size_t)-1;
}

static int cp_in(int32_t cp, const char *set, size_t n) {
    for (size_t i = 0; i < n;) {
        int32_t c;
        i += u8_next(set + i, n - i, &c);
        if (c == cp) return 1;
    }
    return 0;
}

/* strip/lstrip/rstrip: chars NULL strips Python whitespace. */
static value strip_v(value s, const value *chars, int left, int right) {
    const char *p = s.u.s.p;
    size_t a = 0, b = s.u.s.n;
    if (!chars) {
        if (left) a = py_space_prefix(p, b);
        if (right) b = a + py_rstrip_len(p + a, b - a);
        return v_str(p + a, b - a);
    }
    const char *set = chars->u.s.p;
    size_t sn = chars->u.s.n;
    if (left)
        while (a < b) {
            int32_t cp;
            size_t k = u8_next(p + a, b - a, &cp);
            if (!cp_in(cp, set, sn)) break;
            a += k;
        }
    if (right)
        while (b > a) {
            size_t st = b - 1;
            while (st > a && b - st < 4 && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
            int32_t cp;
            size_t k = u8_next(p + st, b - st, &cp);
            if (st + k != b) {
                st = b - 1;
                u8_next(p + st, 1, &cp);
            }
            if (!cp_in(cp, set, sn)) break;
            b = st;
        }
    return v_str(p + a, b - a);
}

static value case_v(R *r, value s, int upper) {
    sbuf b = {.a = &r->ar};
    sb_put(&b, "", 0);
    for (size_t i = 0; i < s.u.s.n;) {
        int32_t cp;
        size_t k = u8_next(s.u.s.p + i, s.u.s.n - i, &cp);
        if (cp >= 0xDC00 && cp <= 0xDCFF && k == 1) {
            sb_put(&b, s.u.s.p + i, 1);
        } else {
            utf8proc_uint8_t u8[4];
            int32_t m = upper ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
            utf8proc_ssize_t w = utf8proc_encode_char(m, u8);
            sb_put(&b, (const char *)u8, (size_t)w);
        }
        i += k;
    }
    return v_str(b.p, b.n);
}

static value split_v(R *r, size_t pos, value s, const value *sep, int64_t maxsplit) {
    value *parts = NULL;
    size_t np = 0, cap = 0;
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
#define PUSH(a_, b_)                                                                          \
    do {                                                                                      \
        if (np == cap) {                                                                      \
            size_t c_ = cap ? cap * 2 : 8;                                                    \
            value *nv_ = ar_alloc(&r->ar, c_ * sizeof *nv_);                                  \
            if (np) memcpy(nv_, parts, np * sizeof *nv_);                                     \
            parts = nv_;                                                                      \
            cap = c_;                                                                         \
        }                                                                                     \
        parts[np++] = v_str(p + (a_), (b_) - (a_));                                           \
    } while (0)
    if (!sep) { /* runs of whitespace; no empty parts */
        for (;;) {
            i += py_space_prefix(p + i, n - i);
            if (i >= n) break;
            if (maxsplit >= 0 && (int64_t)np >= maxsplit) {
                PUSH(i, n); /* the rest keeps its trailing whitespace, as in Python */
                break;
            }
            size_t j = i;
            while (j < n) {
                int32_t cp;
                size_t k = u8_next(p + j, n - j, &cp);
                if (py_isspace(cp)) break;
                j += k;
            }
            PUSH(i, j);
            i = j;
        }
    } else {
        if (!sep->u.s.n) rfail(r, pos, "empty separator");
        for (;;) {
            size_t j = (maxsplit >= 0 && (int64_t)np >= maxsplit) ? (size_t)-1
                                                                 : find_bytes(p, n, sep->u.s.p, sep->u.s.n, i);
            if (j == (size_t)-1) {
                PUSH(i, n);
                break;
            }
            PUSH(i, j);
            i = j + sep->u.s.n;
        }
    }
#undef PUSH
    value out = mk_list(r, np, 0);
    if (np) memcpy(out.u.l->v, parts, np * sizeof *parts);
    return out;
}

static value replace_v(R *r, value s, value old, value nw, int64_t count) {
    sbuf b = {.a = &r->ar};
    sb_put(&b, "", 0);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n, i = 0;
    int64_t done = 0;
    if (!old.u.s.n) { /* Python inserts between every code point and at both ends */
        for (;;) {
            if (count < 0 || done < count) {
                sb_put(&b, nw.u.s.p, nw.u.s.n);
                done++;
            }
            if (i >= n) break;
            int32_t cp;
            size_t k = u8_next(p + i, n - i, &cp);
            sb_put(&b, p + i, k);
            i += k;
        }
        return v_str(b.p, b.n);
    }
    for (;;) {
        size_t j = (count >= 0 && done >= count) ? (size_t)-1 : find_bytes(p, n, old.u.s.p, old.u.s.n, i);
        if (j == (size_t)-1) {
            sb_put(&b, p + i, n - i);
            break;
        }
        sb_put(&b, p + i, j - i);
        sb_put(&b, nw.u.s.p, nw.u.s.n);
        i = j + old.u.s.n;
        done++;
    }
    return v_str(b.p, b.n);
}

/* ---- arguments ------------------------------------------------------------ */

typedef struct {
    value *v;
    const char **kw;
    size_t n, npos;
} args;

static value eval_node(R *r, node *n);

static args eval_args(R *r, node *n) {
    args a = {ar_alloc(&r->ar, (n->nv ? n->nv : 1) * sizeof(value)), n->kw, n->nv, 0};
    for (size_t i = 0; i < n->nv; i++) {
        a.v[i] = eval_node(r, n->v[i]);
        if (!n->kw[i]) a.npos++;
    }
    return a;
}

/* Argument idx by position or keyword; checks the call takes at most
 * maxpos positional arguments and only the given keywords. */
static int arg(const args *a, size_t idx, const char *kw, value *out) {
    if (idx < a->npos) {
        *out = a->v[idx];
        return 1;
    }
    for (size_t i = 0; kw && i < a->n; i++)
        if (a->kw[i] && !strcmp(a->kw[i], kw)) {
            *out = a->v[i];
            return 1;
        }
    return 0;
}

static void check_args(R *r, node *n, const args *a, const char *what, size_t maxpos, const char *const *kws) {
    if (a->npos > maxpos) rfail(r, n->pos, "%s takes at most %zu positional arguments (%zu given)", what, maxpos, a->npos);
    for (size_t i = 0; i < a->n; i++) {
        if (!a->kw[i]) continue;
        int ok = 0;
        for (size_t k = 0; kws && kws[k]; k++) ok |= !strcmp(kws[k], a->kw[i]);
        if (!ok) rfail(r, n->pos, "%s got an unexpected keyword argument '%s'", what, a->kw[i]);
    }
}

static value want_str(R *r, size_t pos, value v, const char *what) {
    if (v.t == V_UNDEF) undef_fail(r, pos, v);
    if (v.t != V_STR) rfail(r, pos, "%s must be a string, not %s", what, pytype(v));
    return v;
}
static int64_t want_int(R *r, size_t pos, value v, const char *what) {
    if (v.t == V_UNDEF) undef_fail(r, pos, v);
    if (v.t != V_INT && v.t != V_BOOL) rfail(r, pos, "%s must be an integer, not %s", what, pytype(v));
    return num_i(v);
}

/* ---- methods, functions ------------------------------------------------------- */

static value dict_items(R *r, dict *d) {
    value out = mk_list(r, d->n, 0);
    for (size_t i = 0; i < d->n; i++) {
        value t = mk_list(r, 2, 1);
        t.u.l->v[0] = d->k[i];
        t.u.l->v[1] = d->v[i];
        out.u.l->v[i] = t;
    }
    return out;
}

static value call_method(R *r, node *n) {
    node *attr = n->a;
    value obj = eval_node(r, attr->a);
    args a = eval_args(r, n);
    const char *m = attr->s;
    if (obj.t == V_UNDEF) undef_fail(r, attr->pos, obj);
    value x, y;
    if (obj.t == V_STR) {
        if (!strcmp(m, "startswith") || !strcmp(m, "endswith")) {
            check_args(r, n, &a, m, 1, NULL);
            if (!arg(&a, 0, NULL, &x)) rfail(r, n->pos, "%s() takes exactly one argument", m);
            value one[1] = {x}, *cands = one;
            size_t nc = 1;
            if (x.t == V_LIST && x.u.l->tuple) {
                cands = x.u.l->v;
                nc = x.u.l->n;
            }
            for (size_t i = 0; i < nc; i++) {
                value c = cands[i];
                if (c.t != V_STR)
                    rfail(r, n->pos, "%s first arg must be str or a tuple of str, not %s", m, pytype(c));
                if (c.u.s.n <= obj.u.s.n &&
                    !memcmp(obj.u.s.p + (m[0] == 's' ? 0 : obj.u.s.n - c.u.s.n), c.u.s.p, c.u.s.n))
                    return v_bool(1);
            }
            return v_bool(0);
        }
        if (!strcmp(m, "strip") || !strcmp(m, "lstrip") || !strcmp(m, "rstrip")) {
            check_args(r, n, &a, m, 1, NULL);
            int has = arg(&a, 0, NULL, &x) && x.t != V_NONE;
            if (has) want_str(r, n->pos, x, "strip arg");
            return strip_v(obj, has ? &x : NULL, m[0] != 'r', m[0] != 'l');
        }
        if (!strcmp(m, "split")) {
            static const char *const kws[] = {"sep", "maxsplit", NULL};
            check_args(r, n, &a, m, 2, kws);
            int has = arg(&a, 0, "sep", &x) && x.t != V_NONE;
            if (has) want_str(r, n->pos, x, "separator");
            int64_t maxs = arg(&a, 1, "maxsplit", &y) ? want_int(r, n->pos, y, "maxsplit") : -1;
            return split_v(r, n->pos, obj, has ? &x : NULL, maxs);
        }
        if (!strcmp(m, "replace")) {
            static const char *const kws[] = {"count", NULL};
            check_args(r, n, &a, m, 3, kws);
            value c;
            if (!arg(&a, 0, NULL, &x) || !arg(&a, 1, NULL, &y)) rfail(r, n->pos, "replace() takes old and new");
            want_str(r, n->pos, x, "replace arg 1");
            want_str(r, n->pos, y, "replace arg 2");
            int64_t count = arg(&a, 2, "count", &c) ? want_int(r, n->pos, c, "count") : -1;
            return replace_v(r, obj, x, y, count);
        }
        if (!strcmp(m, "upper") || !strcmp(m, "lower")) {
            check_args(r, n, &a, m, 0, NULL);
            return case_v(r, obj, m[0] == 'u');
        }
    } else if (obj.t == V_DICT) {
        if (!strcmp(m, "items") || !strcmp(m, "keys") || !strcmp(m, "values")) {
            check_args(r, n, &a, m, 0, NULL);
            if (m[0] == 'i') return dict_items(r, obj.u.d);
            value out = mk_list(r, obj.u.d->n, 0);
            memcpy(out.u.l->v, m[0] == 'k' ? obj.u.d->k : obj.u.d->v, obj.u.d->n * sizeof(value));
            return out;
        }
        if (!strcmp(m, "get")) {
            check_args(r, n, &a, m, 2, NULL);
            if (!arg(&a, 0, NULL, &x)) rfail(r, n->pos, "get expected at least 1 argument");
            value *v = dict_find(obj.u.d, x);
            if (v) return *v;
            return arg(&a, 1, NULL, &y) ? y : v_none();
        }
    }
    rfail(r, attr->pos, "'%s' has no attribute '%s'", type_repr(obj), m);
}

static value call_func(R *r, node *n) {
    node *callee = n->a;
    value *f = lookup(r, callee->s);
    if (!f) rfail(r, callee->pos, "'%s' is undefined", callee->s);
    if (f->t != V_FUNC) rfail(r, callee->pos, "'%s' object is not callable", pytype(*f));
    args a = eval_args(r, n);
    value x;
    switch (f->u.fn) {
    case F_NAMESPACE: {
        value ns = mk_dict(r, V_NS);
        if (a.npos > 1) rfail(r, n->pos, "namespace() takes at most one positional argument");
        if (a.npos == 1) {
            if (a.v[0].t != V_DICT) rfail(r, n->pos, "namespace() positional argument must be a dict");
            for (size_t i = 0; i < a.v[0].u.d->n; i++) dict_set(r, ns.u.d, a.v[0].u.d->k[i], a.v[0].u.d->v[i]);
        }
        for (size_t i = 0; i < a.n; i++)
            if (a.kw[i]) dict_set(r, ns.u.d, v_str(a.kw[i], strlen(a.kw[i])), a.v[i]);
        return ns;
    }
    case F_RAISE: {
        check_args(r, n, &a, "raise_exception", 1, NULL);
        value msg = arg(&a, 0, NULL, &x) ? to_str(r, x) : v_str("", 0);
        rfail(r, n->pos, "raise_exception: %.*s", (int)msg.u.s.n, msg.u.s.p);
    }
    case F_STRFTIME: {
        check_args(r, n, &a, "strftime_now", 1, NULL);
        if (!arg(&a, 0, NULL, &x)) rfail(r, n->pos, "strftime_now() takes a format");
        want_str(r, n->pos, x, "strftime_now format");
        if (!x.u.s.n) return v_str("", 0);
        char *fmt = ar_strndup(&r->ar, x.u.s.p, x.u.s.n);
        for (size_t cap = 256; cap <= 65536; cap *= 4) {
            char *buf = ar_alloc(&r->ar, cap);
            size_t k = strftime(buf, cap, fmt, &r->now);
            if (k) return v_str(buf, k);
        }
        return v_str("", 0);
    }
    default: { /* range */
        check_args(r, n, &a, "range", 3, NULL);
        int64_t lo = 0, hi, step = 1;
        if (a.npos == 0) rfail(r, n->pos, "range expected at least 1 argument");
        if (a.npos == 1) hi = want_int(r, n->pos, a.v[0], "range argument");
        else {
            lo = want_int(r, n->pos, a.v[0], "range argument");
            hi = want_int(r, n->pos, a.v[1], "range argument");
            if (a.npos == 3) step = want_int(r, n->pos, a.v[2], "range argument");
        }
        if (step == 0) rfail(r, n->pos, "range() arg 3 must not be zero");
        size_t k = 0;
        for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step)
            if (++k > 10000000) rfail(r, n->pos, "range too large (more than 10^7 items)");
        value out = mk_list(r, k, 0);
        k = 0;
        for (int64_t i = lo; step > 0 ? i < hi : i > hi; i += step) out.u.l->v[k++] = v_int(i);
        return out;
    }
    }
}

/* ---- filters and tests ------------------------------------------------------- */

static value filter_v(R *r, node *n) {
    value v = eval_node(r, n->a), x;
    args a = eval_args(r, n);
    const char *f = n->s;
    if (!strcmp(f, "default") || !strcmp(f, "d")) {
        static const char *const kws[] = {"default_value", "boolean", NULL};
        check_args(r, n, &a, "default", 2, kws);
        value dv = arg(&a, 0, "default_value", &x) ? x : v_str("", 0);
        int boolean = arg(&a, 1, "boolean", &x) && truthy(x);
        return v.t == V_UNDEF || (boolean && !truthy(v)) ? dv : v;
    }
    if (!strcmp(f, "length") || !strcmp(f, "count")) {
        check_args(r, n, &a, f, 0, NULL);
        switch (v.t) {
        case V_UNDEF: return v_int(0);
        case V_STR: return v_int((int64_t)u8_count(v.u.s.p, v.u.s.n));
        case V_LIST: return v_int((int64_t)v.u.l->n);
        case V_DICT: return v_int((int64_t)v.u.d->n);
        default: rfail(r, n->pos, "object of type '%s' has no len()", pytype(v));
        }
    }
    if (!strcmp(f, "tojson")) {
        static const char *const kws[] = {"indent", "ensure_ascii", "separators", "sort_keys", NULL};
        check_args(r, n, &a, "tojson", 1, kws);
        value ind = v_none();
        if (arg(&a, 0, "indent", &x) && x.t != V_NONE) {
            if (x.t == V_STR) ind = x;
            else ind = v_int(want_int(r, n->pos, x, "indent"));
        }
        for (size_t i = 0; i < a.n; i++)
            if (a.kw[i] && strcmp(a.kw[i], "indent"))
                rfail(r, n->pos, "tojson(%s=...) is not supported (only indent)", a.kw[i]);
        sbuf b = {.a = &r->ar};
        sb_put(&b, "", 0);
        json_into(r, n->pos, &b, v, ind, 0);
        return v_str(b.p, b.n);
    }
    if (!strcmp(f, "first") || !strcmp(f, "last")) {
        check_args(r, n, &a, f, 0, NULL);
        value *items;
        size_t k;
        iter_items(r, n->pos, v, &items, &k);
        if (!k) return v_undef(f[0] == 'f' ? "No first item, sequence was empty." : "No last item, sequence was empty.");
        return items[f[0] == 'f' ? 0 : k - 1];
    }
    if (!strcmp(f, "join")) {
        static const char *const kws[] = {"d", NULL};
        check_args(r, n, &a, "join", 1, kws);
        value sep = arg(&a, 0, "d", &x) ? to_str(r, x) : v_str("", 0);
        value *items;
        size_t k;
        iter_items(r, n->pos, v, &items, &k);
        sbuf b = {.a = &r->ar};
        sb_put(&b, "", 0);
        for (size_t i = 0; i < k; i++) {
            if (i) sb_put(&b, sep.u.s.p, sep.u.s.n);
            str_into(r, &b, items[i]);
        }
        return v_str(b.p, b.n);
    }
    if (!strcmp(f, "items")) {
        check_args(r, n, &a, "items", 0, NULL);
        if (v.t == V_UNDEF) return mk_list(r, 0, 0);
        if (v.t != V_DICT) rfail(r, n->pos, "can only get item pairs from a mapping, not %s", pytype(v));
        return dict_items(r, v.u.d);
    }
    if (!strcmp(f, "list")) {
        check_args(r, n, &a, "list", 0, NULL);
        value *items;
        size_t k;
        iter_items(r, n->pos, v, &items, &k);
        value out = mk_list(r, k, 0);
        if (k) memcpy(out.u.l->v, items, k * sizeof *items);
        return out;
    }
    /* string filters work on str(v) */
    value s = to_str(r, v);
    if (!strcmp(f, "trim")) {
        static const char *const kws[] = {"chars", NULL};
        check_args(r, n, &a, "trim", 1, kws);
        int has = arg(&a, 0, "chars", &x) && x.t != V_NONE;
        if (has) want_str(r, n->pos, x, "trim chars");
        return strip_v(s, has ? &x : NULL, 1, 1);
    }
    check_args(r, n, &a, f, 0, NULL);
    if (!strcmp(f, "upper")) return case_v(r, s, 1);
    if (!strcmp(f, "lower")) return case_v(r, s, 0);
    return s; /* string */
}

static int test_v(R *r, node *n) {
    value v = eval_node(r, n->a), x;
    args a = eval_args(r, n);
    const char *t = n->s;
    if (!strcmp(t, "defined")) return v.t != V_UNDEF;
    if (!strcmp(t, "undefined")) return v.t == V_UNDEF;
    if (!strcmp(t, "none")) return v.t == V_NONE;
    if (!strcmp(t, "string")) return v.t == V_STR;
    if (!strcmp(t, "mapping")) return v.t == V_DICT;
    if (!strcmp(t, "iterable") || !strcmp(t, "sequence"))
        return v.t == V_STR || v.t == V_LIST || v.t == V_DICT || v.t == V_UNDEF;
    if (!strcmp(t, "number")) return is_num(v);
    if (!strcmp(t, "integer")) return v.t == V_INT;
    if (!strcmp(t, "float")) return v.t == V_FLOAT;
    if (!strcmp(t, "boolean")) return v.t == V_BOOL;
    if (!strcmp(t, "true")) return v.t == V_BOOL && v.u.b;
    if (!strcmp(t, "false")) return v.t == V_BOOL && !v.u.b;
    if (!strcmp(t, "odd") || !strcmp(t, "even")) {
        int64_t i = want_int(r, n->pos, v, "odd/even test value");
        return (int)((i % 2 + 2) % 2) == (t[0] == 'o');
    }
    /* eq, equalto, ==, ne, != */
    if (!arg(&a, 0, NULL, &x)) rfail(r, n->pos, "test '%s' needs an argument", t);
    return veq(v, x) == (t[0] == 'e' || t[0] == '=');
}

/* ---- operators ---------------------------------------------------------------- */

static int64_t checked(R *r, size_t pos, int ovf, int64_t v) {
    if (ovf) rfail(r, pos, "integer overflow (integers are 64-bit here; Python's are unbounded)");
    return v;
}

static value repeat(R *r, size_t pos, value seq, int64_t k) {
    if (k < 0) k = 0;
    if (seq.t == V_STR) {
        if (seq.u.s.n && (uint64_t)k > (uint64_t)(SIZE_MAX / 4) / seq.u.s.n) rfail(r, pos, "repetition too large");
        sbuf b = {.a = &r->ar};
        sb_put(&b, "", 0);
        for (int64_t i = 0; i < k; i++) sb_put(&b, seq.u.s.p, seq.u.s.n);
        return v_str(b.p, b.n);
    }
    if (seq.u.l->n && (uint64_t)k > 10000000 / seq.u.l->n) rfail(r, pos, "repetition too large");
    value out = mk_list(r, seq.u.l->n * (size_t)k, seq.u.l->tuple);
    for (int64_t i = 0; i < k; i++)
        if (seq.u.l->n) memcpy(out.u.l->v + (size_t)i * seq.u.l->n, seq.u.l->v, seq.u.l->n * sizeof(value));
    return out;
}

static const char *const OPNAMES[] = {"+", "-", "*", "/", "//", "%", "**", "~"};

static value binop(R *r, node *n) {
    value a = eval_node(r, n->a), b = eval_node(r, n->b);
    int op = n->op;
    if (op == OP_CONCAT) {
        value x = to_str(r, a), y = to_str(r, b);
        sbuf s = {.a = &r->ar};
        sb_put(&s, x.u.s.p, x.u.s.n);
        sb_put(&s, y.u.s.p, y.u.s.n);
        return v_str(s.p, s.n);
    }
    if (a.t == V_UNDEF) undef_fail(r, n->pos, a);
    if (b.t == V_UNDEF) undef_fail(r, n->pos, b);
    if (is_num(a) && is_num(b)) {
        int fl = a.t == V_FLOAT || b.t == V_FLOAT;
        if (!fl && op != OP_DIV) {
            int64_t x = num_i(a), y = num_i(b), z = 0;
            switch (op) {
            case OP_ADD: {
                int o = __builtin_add_overflow(x, y, &z);
                return v_int(checked(r, n->pos, o, z));
            }
            case OP_SUB: {
                int o = __builtin_sub_overflow(x, y, &z);
                return v_int(checked(r, n->pos, o, z));
            }
            case OP_MUL: {
                int o = __builtin_mul_overflow(x, y, &z);
                return v_int(checked(r, n->pos, o, z));
            }
            case OP_FLOORDIV:
            case OP_MOD: {
                if (y == 0) rfail(r, n->pos, op == OP_MOD ? "integer modulo by zero" : "integer division or modulo by zero");
                if (x == INT64_MIN && y == -1) checked(r, n->pos, 1, 0);
                int64_t q = x / y, m = x % y;
                if (m != 0 && ((m < 0) != (y < 0))) {
                    q--;
                    m += y;
                }
                return v_int(op == OP_MOD ? m : q);
            }
            case OP_POW:
                if (y >= 0) {
                    int64_t p = 1, base = x;
                    int ovf = 0;
                    for (int64_t e = y; e > 0; e >>= 1) {
                        if (e & 1) ovf |= __builtin_mul_overflow(p, base, &p);
                        if (e > 1) ovf |= __builtin_mul_overflow(base, base, &base);
                    }
                    return v_int(checked(r, n->pos, ovf, p));
                }
                return v_float(pow((double)x, (double)y));
            default: break;
            }
        }
        double x = num_f(a), y = num_f(b);
        switch (op) {
        case OP_ADD: return v_float(x + y);
        case OP_SUB: return v_float(x - y);
        case OP_MUL: return v_float(x * y);
        case OP_DIV:
            if (y == 0) rfail(r, n->pos, "division by zero");
            return v_float(x / y);
        case OP_FLOORDIV:
        case OP_MOD: {
            if (y == 0) rfail(r, n->pos, "float modulo");
            double m = fmod(x, y);
            if (m != 0 && ((m < 0) != (y < 0))) m += y;
            return v_float(op == OP_MOD ? m : floor(x / y));
        }
        case OP_POW: return v_float(pow(x, y));
        default: break;
        }
    }
    if (op == OP_ADD && a.t == V_STR && b.t == V_STR) {
        sbuf s = {.a = &r->ar};
        sb_put(&s, a.u.s.p, a.u.s.n);
        sb_put(&s, b.u.s.p, b.u.s.n);
        return v_str(s.p, s.n);
    }
    if (op == OP_ADD && a.t == V_LIST && b.t == V_LIST && a.u.l->tuple == b.u.l->tuple) {
        value out = mk_list(r, a.u.l->n + b.u.l->n, a.u.l->tuple);
        if (a.u.l->n) memcpy(out.u.l->v, a.u.l->v, a.u.l->n * sizeof(value));
        if (b.u.l->n) memcpy(out.u.l->v + a.u.l->n, b.u.l->v, b.u.l->n * sizeof(value));
        return out;
    }
    if (op == OP_MUL && (a.t == V_STR || a.t == V_LIST) && (b.t == V_INT || b.t == V_BOOL)) return repeat(r, n->pos, a, num_i(b));
    if (op == OP_MUL && (b.t == V_STR || b.t == V_LIST) && (a.t == V_INT || a.t == V_BOOL)) return repeat(r, n->pos, b, num_i(a));
    if (op == OP_MOD && a.t == V_STR) rfail(r, n->pos, "printf-style string formatting ('%%' on a string) is not supported");
    if (op == OP_ADD && a.t == V_STR)
        rfail(r, n->pos, "can only concatenate str (not \"%s\") to str", pytype(b));
    rfail(r, n->pos, "unsupported operand type(s) for %s: '%s' and '%s'", OPNAMES[op], pytype(a), pytype(b));
}

static int contains(R *r, size_t pos, value item, value seq) {
    switch (seq.t) {
    case V_UNDEF: return 0;
    case V_STR:
        if (item.t == V_UNDEF) undef_fail(r, pos, item);
        if (item.t != V_STR) rfail(r, pos, "'in <string>' requires string as left operand, not %s", pytype(item));
        return find_bytes(seq.u.s.p, seq.u.s.n, item.u.s.p, item.u.s.n, 0) != (size_t)-1;
    case V_LIST:
        for (size_t i = 0; i < seq.u.l->n; i++)
            if (veq(seq.u.l->v[i], item)) return 1;
        return 0;
    case V_DICT: return dict_find(seq.u.d, item) != NULL;
    default: rfail(r, pos, "argument of type '%s' is not iterable", pytype(seq));
    }
}

static value compare(R *r, node *n) {
    static const char *const names[] = {[OP_LT] = "<", [OP_GT] = ">", [OP_LE] = "<=", [OP_GE] = ">="};
    value a = eval_node(r, n->a);
    for (size_t i = 0; i < n->nv; i++) {
        value b = eval_node(r, n->v[i]);
        int op = n->ops[i], ok;
        switch (op) {
        case OP_EQ: ok = veq(a, b); break;
        case OP_NE: ok = !veq(a, b); break;
        case OP_IN: ok = contains(r, n->v[i]->pos, a, b); break;
        case OP_NOTIN: ok = !contains(r, n->v[i]->pos, a, b); break;
        default: {
            int c = vcmp(r, n->pos, a, b, names[op]);
            ok = op == OP_LT ? c < 0 : op == OP_GT ? c > 0 : op == OP_LE ? c <= 0 : c >= 0;
        }
        }
        if (!ok) return v_bool(0);
        a = b;
    }
    return v_bool(1);
}

static value eval_inner(R *r, node *n);

static value eval_node(R *r, node *n) {
    if (++r->depth > 2000) rfail(r, n->pos, "expression nested too deeply (more than 2000 levels)");
    r->at = n->pos;
    value v = eval_inner(r, n);
    r->depth--;
    return v;
}

static value eval_inner(R *r, node *n) {
    switch (n->kind) {
    case N_CONST: return n->k;
    case N_NAME: {
        value *v = lookup(r, n->s);
        return v ? *v : v_undef(rprintf(r, "'%s' is undefined", n->s));
    }
    case N_LIST: {
        value l = mk_list(r, n->nv, n->op);
        for (size_t i = 0; i < n->nv; i++) l.u.l->v[i] = eval_node(r, n->v[i]);
        return l;
    }
    case N_DICT: {
        value d = mk_dict(r, V_DICT);
        for (size_t i = 0; i + 1 < n->nv; i += 2) {
            value k = eval_node(r, n->v[i]);
            if (k.t == V_LIST && !k.u.l->tuple) rfail(r, n->v[i]->pos, "unhashable type: 'list'");
            if (k.t == V_DICT || k.t == V_UNDEF) rfail(r, n->v[i]->pos, "unhashable type: '%s'", pytype(k));
            dict_set(r, d.u.d, k, eval_node(r, n->v[i + 1]));
        }
        return d;
    }
    case N_ATTR: return getattr_v(r, n->pos, eval_node(r, n->a), n->s, n->n);
    case N_INDEX: {
        value obj = eval_node(r, n->a);
        return getitem_v(r, n->pos, obj, eval_node(r, n->b));
    }
    case N_SLICE: return slice_v(r, n);
    case N_CALL: return n->a->kind == N_ATTR ? call_method(r, n) : call_func(r, n);
    case N_FILTER: return filter_v(r, n);
    case N_TEST: return v_bool(test_v(r, n) != n->neg);
    case N_NOT: return v_bool(!truthy(eval_node(r, n->a)));
    case N_NEG:
    case N_POS: {
        value v = eval_node(r, n->a);
        if (v.t == V_UNDEF) undef_fail(r, n->pos, v);
        if (!is_num(v)) rfail(r, n->pos, "bad operand type for unary %c: '%s'", n->kind == N_NEG ? '-' : '+', pytype(v));
        if (n->kind == N_POS) return v.t == V_BOOL ? v_int(v.u.b) : v;
        if (v.t == V_FLOAT) return v_float(-v.u.f);
        int64_t z = 0;
        int o = __builtin_sub_overflow((int64_t)0, num_i(v), &z);
        return v_int(checked(r, n->pos, o, z));
    }
    case N_BIN: return binop(r, n);
    case N_AND: {
        value a = eval_node(r, n->a);
        return truthy(a) ? eval_node(r, n->b) : a;
    }
    case N_OR: {
        value a = eval_node(r, n->a);
        return truthy(a) ? a : eval_node(r, n->b);
    }
    case N_CMP: return compare(r, n);
    case N_COND:
        if (truthy(eval_node(r, n->a))) return eval_node(r, n->b);
        return n->c ? eval_node(r, n->c)
                    : v_undef("the inline if-expression evaluated to false and no else section was defined.");
    default: rfail(r, n->pos, "internal error: node %d is not an expression", n->kind);
    }
}

/* ---- statements ------------------------------------------------------------------ */

static void exec_node(R *r, node *n);

static void bind_targets(R *r, node *n, scope *s, value item) {
    if (n->nnames == 1) {
        scope_set(r, s, n->names[0], item);
        return;
    }
    if (item.t != V_LIST) rfail(r, n->pos, "cannot unpack non-iterable %s object", pytype(item));
    if (item.u.l->n > n->nnames) rfail(r, n->pos, "too many values to unpack (expected %zu)", n->nnames);
    if (item.u.l->n < n->nnames)
        rfail(r, n->pos, "not enough values to unpack (expected %zu, got %zu)", n->nnames, item.u.l->n);
    for (size_t i = 0; i < n->nnames; i++) scope_set(r, s, n->names[i], item.u.l->v[i]);
}

static void exec_for(R *r, node *n) {
    value seq = eval_node(r, n->a);
    value *items;
    size_t k;
    iter_items(r, n->a->pos, seq, &items, &k);
    if (n->b) { /* the loop filter: loop.* then counts only the kept items */
        value *kept = ar_alloc(&r->ar, (k ? k : 1) * sizeof *kept);
        size_t m = 0;
        scope *saved = r->sc;
        for (size_t i = 0; i < k; i++) {
            scope *s = scope_push(r);
            bind_targets(r, n, s, items[i]);
            if (truthy(eval_node(r, n->b))) kept[m++] = items[i];
            r->sc = saved;
        }
        items = kept;
        k = m;
    }
    loopinfo *li = ar_alloc(&r->ar, sizeof *li);
    li->length = (int64_t)k;
    value lv = {V_LOOP};
    lv.u.loop = li;
    scope *saved = r->sc;
    for (size_t i = 0; i < k; i++) {
        li->index0 = (int64_t)i;
        li->prev = i ? items[i - 1] : v_undef(NULL);
        li->next = i + 1 < k ? items[i + 1] : v_undef(NULL);
        scope *s = scope_push(r); /* a fresh scope each iteration, as Jinja2 */
        scope_set(r, s, "loop", lv);
        bind_targets(r, n, s, items[i]);
        exec_node(r, n->c);
        r->sc = saved;
        if (r->ctl == 1) {
            r->ctl = 0;
            break;
        }
        r->ctl = 0;
    }
    if (k == 0 && n->d) exec_node(r, n->d);
}

static void exec_node(R *r, node *n) {
    switch (n->kind) {
    case N_BODY:
        for (size_t i = 0; i < n->nv && !r->ctl; i++) exec_node(r, n->v[i]);
        return;
    case N_TEXT: out_put(r, n->s, n->n); return;
    case N_OUT: {
        value v = to_str(r, eval_node(r, n->a));
        out_put(r, v.u.s.p, v.u.s.n);
        return;
    }
    case N_IF:
        if (truthy(eval_node(r, n->a))) exec_node(r, n->b);
        else if (n->c) exec_node(r, n->c);
        return;
    case N_FOR: exec_for(r, n); return;
    case N_SET: {
        value v = eval_node(r, n->a);
        if (n->s2) {
            value *ns = lookup(r, n->s);
            if (!ns || ns->t != V_NS) rfail(r, n->pos, "cannot assign attribute on non-namespace object");
            dict_set(r, ns->u.d, v_str(n->s2, strlen(n->s2)), v);
        } else {
            scope_set(r, r->sc, n->s, v);
        }
        return;
    }
    case N_BREAK: r->ctl = 1; return;
    case N_CONTINUE: r->ctl = 2; return;
    default: rfail(r, n->pos, "internal error: node %d is not a statement", n->kind);
    }
}

/* ---- public API ---------------------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

void rl_chat_template_free(rl_chat_template *t) {
    if (!t) return;
    for (size_t i = 0; i < t->nvars; i++) {
        free(t->vars[i].name);
        free(t->vars[i].str);
    }
    free(t->vars);
    arena_free(&t->ar);
    free(t);
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

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, n = 0;
    char *s = malloc(cap);
    while (s) {
        if (n + 1 >= cap) {
            char *g = realloc(s, cap *= 2);
            if (!g) {
                free(s);
                s = NULL;
                break;
            }
            s = g;
        }
        size_t got = fread(s + n, 1, cap - n - 1, f);
        n += got;
        if (!got) break;
    }
    fclose(f);
    if (s) s[n] = 0;
    *len = n;
    return s;
}

rl_chat_template *rl_chat_template_load(const char *path, char *err, size_t errlen) {
    static const char *const TOKENS[] = {"bos_token", "eos_token", "pad_token", "unk_token"};
    if (!path) {
        set_err(err, errlen, "rl_chat_template_load: NULL path");
        return NULL;
    }
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) {
        set_err(err, errlen, "%s:%d:%d: %s", path, je.line, je.column, je.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        set_err(err, errlen, "%s: not a JSON object", path);
        json_decref(root);
        return NULL;
    }
    json_t *ct = json_object_get(root, "chat_template");
    const char *src = NULL;
    size_t len = 0;
    char *owned = NULL;
    char origin[4096];
    snprintf(origin, sizeof origin, "%s:chat_template", path);
    if (json_is_string(ct)) {
        src = json_string_value(ct);
        len = json_string_length(ct);
    } else if (json_is_array(ct)) {
        size_t i;
        json_t *e;
        json_array_foreach(ct, i, e) {
            json_t *name = json_object_get(e, "name"), *tpl = json_object_get(e, "template");
            if (json_is_string(name) && !strcmp(json_string_value(name), "default") && json_is_string(tpl)) {
                src = json_string_value(tpl);
                len = json_string_length(tpl);
            }
        }
        if (!src) {
            set_err(err, errlen, "%s: chat_template lists %zu named templates and none is named \"default\"",
                    path, json_array_size(ct));
            json_decref(root);
            return NULL;
        }
    } else if (!ct || json_is_null(ct)) { /* newer transformers: chat_template.jinja beside it */
        char jpath[4096];
        const char *slash = strrchr(path, '/');
        snprintf(jpath, sizeof jpath, "%.*schat_template.jinja", slash ? (int)(slash - path + 1) : 0, path);
        owned = read_text(jpath, &len);
        if (!owned) {
            set_err(err, errlen, "%s: no \"chat_template\" (and no %s)", path, jpath);
            json_decref(root);
            return NULL;
        }
        src = owned;
        snprintf(origin, sizeof origin, "%s", jpath);
    } else {
        set_err(err, errlen, "%s: \"chat_template\" must be a string or a list of {\"name\", \"template\"}", path);
        json_decref(root);
        return NULL;
    }
    rl_chat_template *t = rl_chat_template_parse(src, len, origin, err, errlen);
    free(owned);
    for (size_t i = 0; t && i < sizeof TOKENS / sizeof *TOKENS; i++) {
        json_t *v = json_object_get(root, TOKENS[i]);
        if (json_is_object(v)) v = json_object_get(v, "content");
        if (!v || json_is_null(v)) continue;
        if (!json_is_string(v)) {
            set_err(err, errlen, "%s: \"%s\" must be a string, an {\"content\": ...} object or null", path, TOKENS[i]);
            rl_chat_template_free(t);
            t = NULL;
        } else if (rl_chat_template_set_string(t, TOKENS[i], json_string_value(v)) != RL_OK) {
            set_err(err, errlen, "out of memory");
            rl_chat_template_free(t);
            t = NULL;
        }
    }
    json_decref(root);
    return t;
}

static rl_status set_var(rl_chat_template *t, const char *name, const char *str, int is_bool, int b) {
    if (!t || !name || !strcmp(name, "messages") || !strcmp(name, "add_generation_prompt")) return RL_ERR_ARG;
    size_t i = 0;
    while (i < t->nvars && strcmp(t->vars[i].name, name)) i++;
    if (!is_bool && !str) { /* remove */
        if (i < t->nvars) {
            free(t->vars[i].name);
            free(t->vars[i].str);
            t->vars[i] = t->vars[--t->nvars];
        }
        return RL_OK;
    }
    char *copy = NULL;
    if (!is_bool && !(copy = strdup(str))) return RL_ERR_MEMORY;
    if (i == t->nvars) {
        struct var *nv = realloc(t->vars, (t->nvars + 1) * sizeof *nv);
        char *nm = strdup(name);
        if (!nv || !nm) {
            if (nv) t->vars = nv;
            free(nm);
            free(copy);
            return RL_ERR_MEMORY;
        }
        t->vars = nv;
        t->vars[t->nvars++] = (struct var){nm, NULL, 0, 0};
    }
    free(t->vars[i].str);
    t->vars[i].str = copy;
    t->vars[i].is_bool = is_bool;
    t->vars[i].b = b;
    return RL_OK;
}

rl_status rl_chat_template_set_string(rl_chat_template *t, const char *name, const char *value) {
    return set_var(t, name, value, 0, 0);
}
rl_status rl_chat_template_set_bool(rl_chat_template *t, const char *name, bool value) {
    return set_var(t, name, NULL, 1, value);
}
void rl_chat_template_set_time(rl_chat_template *t, const struct tm *now) {
    if (!t) return;
    t->has_time = now != NULL;
    if (now) t->time = *now;
}
const char *rl_chat_template_source(const rl_chat_template *t, size_t *len) {
    if (len) *len = t ? t->len : 0;
    return t ? t->src : NULL;
}

rl_status rl_chat_template_render(const rl_chat_template *t, const rl_chat_message *msgs, int n,
                                  bool add_generation_prompt, char **out, size_t *outlen, char *err,
                                  size_t errlen) {
    static const char *const FNAMES[] = {[F_NAMESPACE] = "namespace", [F_RAISE] = "raise_exception",
                                         [F_STRFTIME] = "strftime_now", [F_RANGE] = "range"};
    if (out) *out = NULL;
    if (outlen) *outlen = 0;
    set_err(err, errlen, "%s", "");
    if (!t || !out || n < 0 || (n > 0 && !msgs)) {
        set_err(err, errlen, "rl_chat_template_render: bad arguments");
        return RL_ERR_ARG;
    }
    for (int i = 0; i < n; i++)
        if (!msgs[i].role) {
            set_err(err, errlen, "rl_chat_template_render: message %d has no role", i);
            return RL_ERR_ARG;
        }
    R *r = calloc(1, sizeof *r);
    if (!r) {
        set_err(err, errlen, "out of memory");
        return RL_ERR_MEMORY;
    }
    r->t = t;
    r->err = err;
    r->errlen = errlen;
    r->ar.jb = &r->jb;
    r->ar.msg = err;
    r->ar.msglen = errlen;
    int rc = setjmp(r->jb);
    if (rc) {
        free(r->out);
        arena_free(&r->ar);
        free(r);
        return (rl_status)rc;
    }
    if (t->has_time) r->now = t->time;
    else {
        time_t now = time(NULL);
        localtime_r(&now, &r->now);
    }
    scope *g = scope_push(r);
    for (int f = 0; f <= F_RANGE; f++) {
        value fv = {V_FUNC};
        fv.u.fn = f;
        scope_set(r, g, FNAMES[f], fv);
    }
    scope_set(r, g, "tools", v_none());
    scope_set(r, g, "documents", v_none());
    for (size_t i = 0; i < t->nvars; i++)
        scope_set(r, g, t->vars[i].name,
                  t->vars[i].is_bool ? v_bool(t->vars[i].b) : v_str(t->vars[i].str, strlen(t->vars[i].str)));
    value ms = mk_list(r, (size_t)n, 0);
    for (int i = 0; i < n; i++) {
        value m = mk_dict(r, V_DICT);
        dict_set(r, m.u.d, v_str("role", 4), v_str(msgs[i].role, strlen(msgs[i].role)));
        dict_set(r, m.u.d, v_str("content", 7),
                 msgs[i].content ? v_str(msgs[i].content, strlen(msgs[i].content)) : v_none());
        ms.u.l->v[i] = m;
    }
    scope_set(r, g, "messages", ms);
    scope_set(r, g, "add_generation_prompt", v_bool(add_generation_prompt));
    scope_push(r); /* the template's own top-level sets shadow, never overwrite, the above */
    exec_node(r, t->root);
    out_put(r, "", 0);
    *out = r->out;
    if (outlen) *outlen = r->outn;
    arena_free(&r->ar);
    free(r);
    return RL_OK;
}
