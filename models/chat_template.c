/* models/chat_template.c - the back half of the chat template renderer
 * (Hugging Face chat templates, a Jinja2 subset listed in rl_chat_template.h):
 * a tree-walking evaluator over a small value type that follows Python's and
 * Jinja2's semantics where the published templates rely on them, loading from
 * tokenizer_config.json, and the rest of the public API. The front half
 * (lexer, parser) is chat_template_parse.c.
 *
 * Memory: every value a render makes lives in that render's arena, freed at
 * once when it ends. Errors unwind with longjmp to rl_chat_template_render,
 * which is safe because nothing between owns memory outside the arena (the
 * output buffer is freed there).
 */
#include <jansson.h>
#include <math.h>
#include <time.h>

#include "chat_template_impl.h"

/* ---- rendering: state, errors, scopes ------------------------------------ */

typedef struct scope {
    struct scope *up;
    const char **names;
    value *vals;
    size_t n, cap;
} scope;

/* How deep expression evaluation and printing may recurse. One level of
 * eval_node/eval_inner takes about 6 KB of stack under AddressSanitizer (a few
 * hundred bytes without), so 500 levels stay under 3 MB of an 8 MB stack in every
 * build; Python stops at 1000 frames by default and real templates nest a few
 * levels, so nothing that renders under jinja2 is refused. */
enum { MAX_EVAL_DEPTH = 500 };

typedef struct {
    const rl_chat_template *t;
    arena ar;
    jmp_buf jb;
    char *err;
    size_t errlen;
    scope *sc;
    int ctl; /* 1: break, 2: continue, pending */
    int depth; /* of eval_node and repr/json recursion (at most MAX_EVAL_DEPTH): left-deep chains (a+b+...) and
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
    if (++r->depth > MAX_EVAL_DEPTH) rfail(r, r->at, "value nested too deeply to print (does a namespace contain itself?)");
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

static int run_test(R *r, size_t pos, const char *t, value v, const value *argv, size_t argc);

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
    if (!strcmp(f, "selectattr") || !strcmp(f, "rejectattr")) {
        /* selectattr('a.b' [, test [, arg]]): a list where Jinja2 gives a generator, which
         * renders and iterates the same way once passed through |list or a for loop */
        if (a.npos < 1 || a.npos > 3 || a.npos != a.n)
            rfail(r, n->pos, "%s takes an attribute, and optionally a test and its argument", f);
        value attr = want_str(r, n->pos, a.v[0], "the attribute");
        const char *test = a.npos > 1 ? ar_strndup(&r->ar, want_str(r, n->pos, a.v[1], "the test").u.s.p,
                                                   a.v[1].u.s.n) : NULL;
        value *items;
        size_t k, m = 0;
        iter_items(r, n->pos, v, &items, &k);
        value out = mk_list(r, k, 0);
        for (size_t i = 0; i < k; i++) {
            value x = items[i];
            for (size_t b = 0, e; b <= attr.u.s.n; b = e + 1) { /* dotted path: a.b.c */
                e = b;
                while (e < attr.u.s.n && attr.u.s.p[e] != '.') e++;
                x = getitem_v(r, n->pos, x, v_str(attr.u.s.p + b, e - b));
            }
            int keep = test ? run_test(r, n->pos, test, x, a.v + 2, a.npos - 2) : truthy(x);
            if (keep == (f[0] == 's')) out.u.l->v[m++] = items[i];
        }
        out.u.l->n = m;
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

/* Jinja2's test t on v with its arguments (for `is` and selectattr). */
static int run_test(R *r, size_t pos, const char *t, value v, const value *argv, size_t argc) {
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
        int64_t i = want_int(r, pos, v, "odd/even test value");
        return (int)((i % 2 + 2) % 2) == (t[0] == 'o');
    }
    int eq = !strcmp(t, "eq") || !strcmp(t, "equalto") || !strcmp(t, "==");
    if (eq || !strcmp(t, "ne") || !strcmp(t, "!=")) {
        if (argc < 1) rfail(r, pos, "test '%s' needs an argument", t);
        return veq(v, argv[0]) == eq;
    }
    rfail(r, pos, "No test named '%s'. Supported: defined, undefined, none, string, mapping, iterable, sequence, "
                  "number, integer, float, boolean, true, false, odd, even, eq, equalto, ne, ==, !=.", t);
}

static int test_v(R *r, node *n) {
    value v = eval_node(r, n->a);
    args a = eval_args(r, n);
    check_args(r, n, &a, n->s, 1, NULL);
    return run_test(r, n->pos, n->s, v, a.v, a.npos);
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
    if (++r->depth > MAX_EVAL_DEPTH)
        rfail(r, n->pos, "expression nested too deeply (more than %d levels)", MAX_EVAL_DEPTH);
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
