/* models/chat_template_impl.h - what the two halves of the chat template
 * renderer share (models/chat_template_parse.c: lexer and parser;
 * models/chat_template.c: evaluator and the rest of the API): the arena, UTF-8
 * helpers, the value type and the AST. Internal: nothing outside those two
 * files includes it; the public interface is rl_chat_template.h.
 */
#ifndef RL_CHAT_TEMPLATE_IMPL_H
#define RL_CHAT_TEMPLATE_IMPL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "rl_chat_template.h"

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

static inline void arena_free(arena *a) {
    for (chunk *c = a->head, *n; c; c = n) {
        n = c->next;
        free(c);
    }
    a->head = NULL;
}

static inline void *ar_alloc(arena *a, size_t n) {
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

static inline char *ar_strndup(arena *a, const char *s, size_t n) {
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

static inline void sb_put(sbuf *b, const char *s, size_t n) {
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
static inline void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }
static inline void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void sb_printf(sbuf *b, const char *fmt, ...) {
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
static inline size_t u8_next(const char *s, size_t n, int32_t *cp) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    if (k <= 0) {
        *cp = 0xDC00 + (unsigned char)s[0];
        return 1;
    }
    *cp = c;
    return (size_t)k;
}

static inline size_t u8_count(const char *s, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; k++) {
        int32_t cp;
        i += u8_next(s + i, n - i, &cp);
    }
    return k;
}

/* Python's str.isspace, which str.strip() and the regex \s of Jinja2's lexer use. */
static inline int py_isspace(int32_t c) {
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* The byte length of the whitespace run at the start of s[0..n). */
static inline size_t py_space_prefix(const char *s, size_t n) {
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
static inline size_t py_rstrip_len(const char *s, size_t n) {
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

static inline value v_undef(const char *hint) {
    value v = {V_UNDEF};
    v.u.s.p = hint;
    return v;
}
static inline value v_none(void) { return (value){V_NONE}; }
static inline value v_bool(int b) {
    value v = {V_BOOL};
    v.u.b = !!b;
    return v;
}
static inline value v_int(int64_t i) {
    value v = {V_INT};
    v.u.i = i;
    return v;
}
static inline value v_float(double f) {
    value v = {V_FLOAT};
    v.u.f = f;
    return v;
}
static inline value v_str(const char *p, size_t n) {
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
static inline void locate(const char *src, size_t len, size_t pos, int *line, int *col) {
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

static inline void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline void set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

#endif
