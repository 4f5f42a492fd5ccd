/* recipes/lang/diag.c - the recipe language's plumbing: the bump pool its passes
 * allocate from, diagnostics (collection, ordering, the
 * file:line:col / source line / caret / hint format) and "did you mean"
 * suggestions.
 */
#include "recipe_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- memory ------------------------------------------------------------------ */

struct rl_rchunk {
    rl_rchunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
};

static void rl_oom(void) {
    fputs("rlhf: out of memory in the recipe compiler\n", stderr);
    abort();
}

void *rl_xrealloc(void *ptr, size_t n) {
    void *q = realloc(ptr, n ? n : 1);
    if (!q) rl_oom();
    return q;
}

void rl_grow(void *arr, int *cap, int need, size_t elem) {
    void **a = arr;
    if (need <= *cap) return;
    int nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    *a = rl_xrealloc(*a, (size_t)nc * elem);
    memset((char *)*a + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *cap = nc;
}

void *rl_rpool_alloc(rl_rpool *p, size_t n) {
    n = (n + 15) & ~(size_t)15;
    rl_rchunk *c = p->head;
    if (!c || c->size - c->used < n) {
        size_t sz = n > 16384 ? n : 16384;
        c = malloc(sizeof(rl_rchunk) + sz);
        if (!c) rl_oom();
        c->used = 0;
        c->size = sz;
        c->next = p->head;
        p->head = c;
    }
    void *q = c->data + c->used;
    c->used += n;
    memset(q, 0, n);
    return q;
}

char *rl_rpool_strndup(rl_rpool *p, const char *s, size_t n) {
    char *q = rl_rpool_alloc(p, n + 1);
    memcpy(q, s, n);
    q[n] = 0;
    return q;
}

char *rl_rpool_strdup(rl_rpool *p, const char *s) { return rl_rpool_strndup(p, s, strlen(s)); }

char *rl_rpool_vprintf(rl_rpool *p, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) n = 0;
    char *q = rl_rpool_alloc(p, (size_t)n + 1);
    vsnprintf(q, (size_t)n + 1, fmt, ap);
    return q;
}

char *rl_rpool_printf(rl_rpool *p, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *q = rl_rpool_vprintf(p, fmt, ap);
    va_end(ap);
    return q;
}

void rl_rpool_free(rl_rpool *p) {
    rl_rchunk *c = p->head;
    while (c) {
        rl_rchunk *n = c->next;
        free(c);
        c = n;
    }
    p->head = NULL;
}

/* ---- sources ------------------------------------------------------------------- */

void rl_source_linecol(const rl_source *src, int off, int *line, int *col) {
    int l = 1, c = 1;
    if (off > src->len) off = src->len;
    for (int i = 0; i < off; i++) {
        if (src->text[i] == '\n') l++, c = 1;
        else c++;
    }
    *line = l;
    *col = c;
}

/* ---- diagnostics ------------------------------------------------------------------ */

void rl_diag_vadd(rl_recipe *r, const rl_source *src, rl_diag_severity sev, rl_span sp,
                  const char *hint, const char *fmt, va_list ap) {
    rl_grow(&r->diags, &r->cap_diags, r->n_diags + 1, sizeof(rl_diag_rec));
    rl_diag_rec *rec = &r->diags[r->n_diags];
    memset(rec, 0, sizeof *rec);
    rec->seq = r->n_diags++;
    rec->order = src == &r->src ? 0 : 1;
    if (sp.start < 0) sp.start = 0;
    if (sp.start > src->len) sp.start = src->len;
    if (sp.end < sp.start) sp.end = sp.start;
    rec->start = sp.start;
    int line, col;
    rl_source_linecol(src, sp.start, &line, &col);
    /* the source line: from the line's start to its newline */
    int ls = sp.start;
    while (ls > 0 && src->text[ls - 1] != '\n') ls--;
    int le = sp.start;
    while (le < src->len && src->text[le] != '\n') le++;
    if (le > ls && src->text[le - 1] == '\r') le--;
    char *lt = rl_rpool_strndup(&r->pool, src->text + ls, (size_t)(le - ls));
    for (int i = 0; i < le - ls; i++)
        if (lt[i] == 0 || lt[i] == '\r') lt[i] = ' '; /* keep the caret aligned */
    /* the range stays on the first line; an empty one still gets a caret */
    int end = sp.end > le ? le : sp.end;
    int end_col = col + (end - sp.start);
    if (end_col <= col) end_col = col + 1;
    rec->d.severity = sev;
    rec->d.file = src->name;
    rec->d.line = line;
    rec->d.col = col;
    rec->d.end_col = end_col;
    rec->d.msg = rl_rpool_vprintf(&r->pool, fmt, ap);
    rec->d.hint = hint ? rl_rpool_strdup(&r->pool, hint) : NULL;
    rec->d.src_line = lt;
    if (sev == RL_DIAG_ERROR) r->n_errors++;
    else r->n_warnings++;
    r->sorted = false;
}

void rl_diag_add(rl_recipe *r, const rl_source *src, rl_diag_severity sev, rl_span sp,
                 const char *hint, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    rl_diag_vadd(r, src, sev, sp, hint, fmt, ap);
    va_end(ap);
}

static int rl_diag_cmp(const void *a, const void *b) {
    const rl_diag_rec *x = a, *y = b;
    if (x->order != y->order) return x->order - y->order;
    /* the recipe's by position; each --set has its own text: in the order given */
    if (x->order == 0 && x->start != y->start) return x->start < y->start ? -1 : 1;
    return x->seq - y->seq;
}

static void rl_diag_sort(const rl_recipe *rc) {
    rl_recipe *r = (rl_recipe *)rc; /* sorting is invisible to callers */
    if (r->sorted) return;
    if (r->n_diags > 1) qsort(r->diags, (size_t)r->n_diags, sizeof(rl_diag_rec), rl_diag_cmp);
    r->sorted = true;
}

int rl_recipe_n_diags(const rl_recipe *r) { return r ? r->n_diags : 0; }
int rl_recipe_n_errors(const rl_recipe *r) { return r ? r->n_errors : 0; }
int rl_recipe_n_warnings(const rl_recipe *r) { return r ? r->n_warnings : 0; }

const rl_recipe_diag *rl_recipe_diag_at(const rl_recipe *r, int i) {
    if (!r || i < 0 || i >= r->n_diags) return NULL;
    rl_diag_sort(r);
    return &r->diags[i].d;
}

const rl_recipe_diag *rl_recipe_first_error(const rl_recipe *r) {
    for (int i = 0; r && i < r->n_diags; i++) {
        const rl_recipe_diag *d = rl_recipe_diag_at(r, i);
        if (d->severity == RL_DIAG_ERROR) return d;
    }
    return NULL;
}

int rl_recipe_format_diag(const rl_recipe_diag *d, char *buf, size_t n) {
    if (!d) return 0;
    /* the caret line copies the source's tabs so that it lines up */
    size_t sl = d->src_line ? strlen(d->src_line) : 0;
    size_t cl = (size_t)d->end_col + 1;
    char *caret = malloc(cl + 1);
    if (!caret) rl_oom();
    size_t k = 0;
    for (int c = 1; c < d->end_col; c++) {
        char ch = ' ';
        if (c < d->col) ch = (size_t)(c - 1) < sl && d->src_line[c - 1] == '\t' ? '\t' : ' ';
        else ch = c == d->col ? '^' : '~';
        caret[k++] = ch;
    }
    caret[k] = 0;
    int len = snprintf(buf, n, "%s:%d:%d: %s: %s\n%s\n%s\n", d->file, d->line, d->col,
                       d->severity == RL_DIAG_ERROR ? "error" : "warning", d->msg,
                       d->src_line ? d->src_line : "", caret);
    free(caret);
    if (d->hint) {
        size_t used = len > 0 && (size_t)len < n ? (size_t)len : (n ? n - 1 : 0);
        int l2 = snprintf(n ? buf + used : NULL, n ? n - used : 0, "hint: %s\n", d->hint);
        len += l2;
    }
    return len;
}

void rl_recipe_print_diags(const rl_recipe *r, FILE *f) {
    for (int i = 0; i < rl_recipe_n_diags(r); i++) {
        const rl_recipe_diag *d = rl_recipe_diag_at(r, i);
        int need = rl_recipe_format_diag(d, NULL, 0);
        char *b = malloc((size_t)need + 1);
        if (!b) rl_oom();
        rl_recipe_format_diag(d, b, (size_t)need + 1);
        fputs(b, f);
        free(b);
    }
}

/* ---- suggestions ------------------------------------------------------------------- */

int rl_edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 99;
    int row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *rl_suggest(const char *name, const char *const *cands, int n) {
    const char *best = NULL;
    int bd = 1 << 20;
    size_t ln = strlen(name);
    /* close enough: about a third of the letters may differ (at least 1, at most 3) */
    int limit = (int)(ln / 3);
    if (limit < 1) limit = 1;
    if (limit > 3) limit = 3;
    for (int i = 0; i < n; i++) {
        if (!cands[i] || strcmp(cands[i], name) == 0) continue;
        int d = rl_edit_distance(name, cands[i]);
        if (d < bd) bd = d, best = cands[i];
    }
    return bd <= limit ? best : NULL;
}
