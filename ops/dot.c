/* ops/dot.c - the tape as a Graphviz (DOT) picture; what is drawn and how
 * is described in engine/rl_dot.h.
 *
 * Leaves are found by pointer: an input that is not the output of a drawn
 * tape node. A small open-addressing hash map from tensor pointer to node id
 * keeps that linear in the size of the tape (a training step records
 * thousands of nodes).
 */
#include "rl_dot.h"
#include "rl_file.h"

#include "rl_ops.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- pointer -> id map ---------------------------------------------------------- */

typedef struct rl_ptrmap {
    const rl_tensor **keys;
    int *vals;
    size_t mask; /* capacity - 1, capacity a power of two */
} rl_ptrmap;

static bool rl_ptrmap_init(rl_ptrmap *m, size_t n) {
    size_t cap = 16;
    while (cap < 2 * n + 1) cap *= 2; /* load factor <= 1/2 */
    m->keys = calloc(cap, sizeof(*m->keys));
    m->vals = malloc(cap * sizeof(*m->vals));
    m->mask = cap - 1;
    return m->keys && m->vals;
}

static void rl_ptrmap_free(rl_ptrmap *m) {
    free(m->keys);
    free(m->vals);
}

static size_t rl_ptrmap_slot(const rl_ptrmap *m, const rl_tensor *t) {
    uint64_t x = (uint64_t)(uintptr_t)t;
    x ^= x >> 33; /* splitmix-style finaliser: tensor headers are 64-byte aligned */
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    size_t i = (size_t)x & m->mask;
    while (m->keys[i] && m->keys[i] != t) i = (i + 1) & m->mask;
    return i;
}

/* The id stored for t, or `missing`. */
static int rl_ptrmap_get(const rl_ptrmap *m, const rl_tensor *t, int missing) {
    size_t i = rl_ptrmap_slot(m, t);
    return m->keys[i] ? m->vals[i] : missing;
}

static void rl_ptrmap_put(rl_ptrmap *m, const rl_tensor *t, int v) {
    size_t i = rl_ptrmap_slot(m, t);
    m->keys[i] = t;
    m->vals[i] = v;
}

/* ---- escaping -------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0 if invalid
 * (Graphviz warns and may garble the picture on invalid UTF-8, and names can
 * be cut mid-character by their 40-byte field). */
static size_t rl_utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) len = 3, lo = 0xA0;
    else if (c == 0xED) len = 3, hi = 0x9F; /* no surrogates */
    else if (c >= 0xE1 && c <= 0xEF) len = 3;
    else if (c == 0xF0) len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) len = 4, hi = 0x8F;
    else return 0;
    if (len > n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

void rl_dot_put_text(FILE *f, const char *str, size_t n, rl_dot_text kind) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n && s[i]) {
        unsigned c = s[i];
        if (c >= 0x80) {
            size_t len = rl_utf8_len(s + i, strnlen(str + i, n - i));
            if (len == 0) {
                fputc('?', f);
                i++;
            } else {
                fwrite(s + i, 1, len, f);
                i += len;
            }
            continue;
        }
        if (c < 0x20 || c == 0x7f) fputc('?', f);
        else if (c == '&') fputs("&amp;", f);
        else if (kind == RL_DOT_TEXT_HTML && c == '<') fputs("&lt;", f);
        else if (kind == RL_DOT_TEXT_HTML && c == '>') fputs("&gt;", f);
        else if (kind == RL_DOT_TEXT_HTML && c == '"') fputs("&quot;", f);
        else if (kind != RL_DOT_TEXT_HTML && (c == '"' || c == '\\')) fputc('\\', f), fputc((int)c, f);
        else if (kind == RL_DOT_TEXT_RECORD && strchr("{}|<>", (int)c)) fputc('\\', f), fputc((int)c, f);
        else fputc((int)c, f);
        i++;
    }
}

static void rl_dot_put(FILE *f, const char *str, size_t n, bool record) {
    rl_dot_put_text(f, str, n, record ? RL_DOT_TEXT_RECORD : RL_DOT_TEXT_QUOTED);
}

static void rl_dot_puts(FILE *f, const char *s, bool record) { rl_dot_put(f, s, strlen(s), record); }

/* ---- what a box looks like ------------------------------------------------------- */

static const rl_tensor *rl_dot_grad(const rl_tensor *t) {
    /* a dead or foreign .grad is not drawn rather than read */
    return t->grad && t->grad->magic == RL_TENSOR_MAGIC ? t->grad : NULL;
}

/* The record fields shared by ops and leaves after the name: "dtype [shape]",
 * third (symbol or kind), and the gradient line. */
static void rl_dot_fields(FILE *f, const rl_tensor *t, const char *third) {
    char d[96];
    fputc('|', f);
    rl_dot_puts(f, rl_tensor_describe(t, d, sizeof d), true);
    fputc('|', f);
    rl_dot_puts(f, third, true);
    const rl_tensor *g = rl_dot_grad(t);
    if (g) {
        fputs("|grad ", f);
        rl_dot_puts(f, rl_tensor_describe(g, d, sizeof d), true);
    }
}

static void rl_dot_grad_border(FILE *f, const rl_tensor *t) {
    if (rl_dot_grad(t)) fprintf(f, ", color=\"%s\", penwidth=2", RL_DOT_BORDER_GRAD);
}

static void rl_dot_op_box(FILE *f, int i, const rl_node *nd) {
    const rl_tensor *out = nd->out;
    fprintf(f, "  %c%d [label=\"{", nd->backward ? 'b' : 'n', i);
    if (out->name[0])
        rl_dot_put(f, out->name, sizeof out->name, true);
    else
        fprintf(f, "%s#%d", rl_op_table[nd->op].name, i);
    rl_dot_fields(f, out, rl_op_table[nd->op].symbol);
    if (nd->backward)
        fprintf(f, "}\", fillcolor=\"%s\", style=\"filled,dashed\", color=\"%s\"",
                RL_DOT_FILL_BACKWARD, RL_DOT_BORDER_BACKWARD);
    else
        fprintf(f, "}\", fillcolor=\"%s\"", RL_DOT_FILL_OP);
    rl_dot_grad_border(f, out);
    fputs("];\n", f);
}

static void rl_dot_leaf_box(FILE *f, int k, const rl_tensor *t) {
    const char *kind, *fill;
    if (t->flags & RL_TF_PARAM) kind = "param", fill = RL_DOT_FILL_PARAM;
    else if ((t->flags & RL_TF_PERSISTENT) && (t->flags & RL_TF_REQUIRES_GRAD))
        kind = "tensor", fill = RL_DOT_FILL_TRAINABLE;
    else if (t->flags & RL_TF_PERSISTENT) kind = "tensor", fill = RL_DOT_FILL_DATA;
    else if (t->flags & RL_TF_CONST) kind = "const", fill = RL_DOT_FILL_DATA;
    else kind = "value", fill = RL_DOT_FILL_DATA; /* made by an op that was not recorded */
    fprintf(f, "  l%d [label=\"{", k);
    if (t->name[0])
        rl_dot_put(f, t->name, sizeof t->name, true);
    else
        fprintf(f, "%s l%d", kind, k); /* not "#k": that numbers ops by tape index */
    rl_dot_fields(f, t, kind);
    fprintf(f, "}\", fillcolor=\"%s\"", fill);
    rl_dot_grad_border(f, t);
    fputs("];\n", f);
}

/* ---- writing ------------------------------------------------------------------------ */

rl_status rl_dot_write(rl_ctx *ctx, FILE *f, const rl_dot_opts *opts) {
    if (!ctx) return RL_ERR_ARG;
    if (!f) return rl_ctx_fail(ctx, RL_ERR_ARG, "rl_dot_write: the FILE is NULL");
    rl_dot_opts o = opts ? *opts : (rl_dot_opts){0};
    int n = rl_ctx_tape_len(ctx);
#define RL_DOT_DRAWN(nd) (!(o.skip_backward && (nd)->backward))

    size_t n_edges = 0;
    for (int i = 0; i < n; i++) {
        const rl_node *nd = rl_ctx_node(ctx, i);
        if (RL_DOT_DRAWN(nd)) n_edges += (size_t)nd->n_in;
    }
    rl_ptrmap map;
    const rl_tensor **leaves = malloc((n_edges ? n_edges : 1) * sizeof(*leaves));
    if (!rl_ptrmap_init(&map, (size_t)n + n_edges) || !leaves) {
        rl_ptrmap_free(&map);
        free(leaves);
        return rl_ctx_fail(ctx, RL_ERR_MEMORY, "rl_dot_write: out of memory for a tape of %d nodes", n);
    }
    /* ids: tape node i -> i, leaf k -> -(k + 1) */
    for (int i = 0; i < n; i++) {
        const rl_node *nd = rl_ctx_node(ctx, i);
        if (RL_DOT_DRAWN(nd)) rl_ptrmap_put(&map, nd->out, i);
    }
    int n_leaves = 0, n_backward = 0, n_forward = 0;
    for (int i = 0; i < n; i++) {
        const rl_node *nd = rl_ctx_node(ctx, i);
        if (!RL_DOT_DRAWN(nd)) continue;
        n_backward += nd->backward != 0;
        n_forward += nd->backward == 0;
        for (int j = 0; j < nd->n_in; j++)
            if (rl_ptrmap_get(&map, nd->in[j], INT32_MIN) == INT32_MIN) {
                rl_ptrmap_put(&map, nd->in[j], -(n_leaves + 1));
                leaves[n_leaves++] = nd->in[j];
            }
    }

    fputs("digraph rl_tape {\n", f);
    fputs("  graph [rankdir=TB, fontname=\"Helvetica\", fontsize=12", f);
    if (o.title && o.title[0]) {
        fputs(", labelloc=t, label=\"", f);
        rl_dot_puts(f, o.title, false);
        fputc('"', f);
    }
    fputs("];\n", f);
    fputs("  node [shape=record, style=filled, fontname=\"Helvetica\", fontsize=10];\n", f);
    fputs("  edge [fontname=\"Helvetica\", fontsize=8, color=\"#555555\"];\n", f);

    fprintf(f, "  /* %d leaves */\n", n_leaves);
    for (int k = 0; k < n_leaves; k++) rl_dot_leaf_box(f, k, leaves[k]);
    fprintf(f, "  /* %d forward ops, %d backward ops */\n", n_forward, n_backward);
    for (int i = 0; i < n; i++) {
        const rl_node *nd = rl_ctx_node(ctx, i);
        if (!nd->backward) rl_dot_op_box(f, i, nd);
    }
    if (n_backward) {
        fprintf(f, "  subgraph cluster_backward {\n    label=\"backward\"; style=dashed; color=\"%s\"; "
                   "fontcolor=\"%s\";\n", RL_DOT_BORDER_BACKWARD, RL_DOT_BORDER_BACKWARD);
        for (int i = 0; i < n; i++) {
            const rl_node *nd = rl_ctx_node(ctx, i);
            if (nd->backward) {
                fputs("  ", f);
                rl_dot_op_box(f, i, nd);
            }
        }
        fputs("  }\n", f);
    }
    for (int i = 0; i < n; i++) {
        const rl_node *nd = rl_ctx_node(ctx, i);
        if (!RL_DOT_DRAWN(nd)) continue;
        for (int j = 0; j < nd->n_in; j++) {
            int id = rl_ptrmap_get(&map, nd->in[j], INT32_MIN);
            if (id >= 0)
                fprintf(f, "  %c%d -> ", rl_ctx_node(ctx, id)->backward ? 'b' : 'n', id);
            else
                fprintf(f, "  l%d -> ", -id - 1);
            fprintf(f, "%c%d", nd->backward ? 'b' : 'n', i);
            /* operand order matters for -, /, @, ... */
            if (nd->n_in > 1 && nd->backward)
                fprintf(f, " [label=\"%d\", style=dashed, color=\"%s\"]", j, RL_DOT_BORDER_BACKWARD);
            else if (nd->n_in > 1)
                fprintf(f, " [label=\"%d\"]", j);
            else if (nd->backward)
                fprintf(f, " [style=dashed, color=\"%s\"]", RL_DOT_BORDER_BACKWARD);
            fputs(";\n", f);
        }
    }
    fputs("}\n", f);
#undef RL_DOT_DRAWN
    rl_ptrmap_free(&map);
    free(leaves);
    if (fflush(f) != 0 || ferror(f))
        return rl_ctx_fail(ctx, RL_ERR_IO, "rl_dot_write: writing the picture failed: %s",
                           strerror(errno));
    return RL_OK;
}

rl_status rl_dot_write_file(rl_ctx *ctx, const char *path, const rl_dot_opts *opts) {
    if (!ctx) return RL_ERR_ARG;
    if (!path || !path[0]) return rl_ctx_fail(ctx, RL_ERR_ARG, "rl_dot_write_file: the path is empty");
    char err[600];
    rl_atomic_file a;
    FILE *f = rl_atomic_open(&a, path, err, sizeof err);
    if (!f) return rl_ctx_fail(ctx, RL_ERR_IO, "rl_dot_write_file: %s", err);
    rl_status s = rl_dot_write(ctx, f, opts);
    if (s != RL_OK) {
        rl_atomic_abort(&a);
        return s;
    }
    if (rl_atomic_commit(&a, err, sizeof err) != RL_OK)
        return rl_ctx_fail(ctx, RL_ERR_IO, "rl_dot_write_file: %s", err);
    return RL_OK;
}
