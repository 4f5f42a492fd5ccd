/* recipes/views/graph.c - `rlhf graph`: a compiled recipe as a Graphviz picture
 * (what is drawn: recipes/views/rl_recipe_graph.h; docs/recipes.md).
 *
 * The compiled program is a flat list of instructions (one per op, after
 * inlining); a picture of that is unreadable. So instructions are grouped
 * into the boxes a reader thinks in: one box per statement (the ops of an
 * assignment, loss or metric, prelude functions inlined), one per model call
 * (they sit in their model's cluster), one per input and param. Token
 * fields, float conversions and constants are not boxes: they are folded
 * into edge labels and the statements' source text. Edges between boxes
 * come from the instructions' arguments; the stop() and gradient facts of an
 * edge are worked out on the instructions inside the boxes.
 *
 * --expand runs each model call once on the shape check's tiny GPT-2 with
 * the tape recording, and draws the ops it recorded (weights folded into the
 * op labels), so the picture shows what a call really computes rather than a
 * hand-drawn schematic that could drift from models/gpt2.c.
 */
#include "rl_file.h"
#include "rl_recipe_graph.h"

#include "rl_dot.h"

#include "recipe_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* one colour per loss for the gradient flow (the first is the loss red) */
static const char *const grad_colors[] = {"#d62728", "#9467bd", "#e377c2", "#8c564b", "#17becf", "#bcbd22"};
#define N_GRAD_COLORS (int)(sizeof grad_colors / sizeof grad_colors[0])

/* ---- boxes and edges ------------------------------------------------------------------ */

enum { GK_INPUT, GK_PARAM, GK_EXPR, GK_CALL, GK_ALIAS };

typedef struct gop {   /* an op recorded by an expanded call */
    int op;            /* rl_op */
    char shape[64];
    char weights[160]; /* names of the model's weights it reads */
    int n_in;
    int in[8];         /* producing op (index in the call), or -1 - field (ids 0, mask 1, attn 2), or -9 */
} gop;

typedef struct gnode {
    int kind;
    int phase;
    int model;         /* GK_CALL: the model called */
    int stmt;          /* statement, or -1 */
    int ir;            /* the instruction whose value the box shows (the last of a statement) */
    int alias_of;      /* GK_ALIAS: the box it names */
    const char *alias_name;
    bool loss, metric;
    int loss_index;
    uint64_t grad_in_model; /* bit L: loss L's gradient enters the called model here */
    int n_named;            /* named values it holds (tuple statements: several) */
    bool kept;              /* online: a rollout value the loss phase reads (drawn again there) */
    char logged[160];       /* metrics that only name this value (log lambda = l) */
    /* --expand */
    gop *ops;
    int n_ops, out_op;
    const char *no_expand; /* why a call is drawn collapsed */
} gnode;

typedef struct gedge {
    int from, to;
    const char *label;   /* ".mask", or the value's name for a tuple's member */
    bool solid;          /* some path into the target's value crosses no stop() */
    uint64_t grad;       /* bit L: carries loss L's gradient */
} gedge;

typedef struct graph {
    const rl_recipe_program *p;
    rl_recipe_graph_opts o;
    int *grp;           /* per instruction: its box, or -1 (folded) */
    gnode *nodes;
    int n_nodes, cap_nodes;
    gedge *edges;
    int n_edges, cap_edges;
    FILE *f;
} graph;

static int add_node(graph *g, int kind, int phase, int ir) {
    rl_grow(&g->nodes, &g->cap_nodes, g->n_nodes + 1, sizeof(gnode));
    gnode *n = &g->nodes[g->n_nodes];
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->phase = phase;
    n->ir = ir;
    n->model = -1;
    n->stmt = -1;
    n->alias_of = -1;
    n->loss_index = -1;
    n->out_op = -1;
    return g->n_nodes++;
}

static void add_edge(graph *g, int from, int to, const char *label, bool solid, uint64_t grad) {
    for (int i = 0; i < g->n_edges; i++) {
        gedge *e = &g->edges[i];
        if (e->from == from && e->to == to &&
            ((!e->label && !label) || (e->label && label && strcmp(e->label, label) == 0))) {
            e->solid |= solid;
            e->grad |= grad;
            return;
        }
    }
    rl_grow(&g->edges, &g->cap_edges, g->n_edges + 1, sizeof(gedge));
    g->edges[g->n_edges++] = (gedge){from, to, label, solid, grad};
}

/* Follows an argument through token fields and float conversions to the
 * instruction that made it; *field gets the field's name (or NULL). */
static int resolve(const rl_recipe_program *p, int slot, const char **field) {
    static const char *const names[] = {".ids", ".mask", ".attn"};
    int ir = p->slots[slot].ir;
    *field = NULL;
    for (;;) {
        const rl_ir *in = &p->ir[ir];
        if (in->code == IR_FIELD) {
            if (!*field) *field = names[in->op];
        } else if (in->code != IR_CONVERT) {
            return ir;
        }
        ir = p->slots[in->args[0]].ir;
    }
}

/* As audit.c: does instruction `in` pass gradients from its arguments? */
static bool passes_grad(const rl_recipe_program *p, const rl_ir *in) {
    if (in->phase != PH_LOSS) return false;
    if (in->code == IR_OP) return !(rl_op_table[in->op].flags & OPF_NOGRAD);
    if (in->code == IR_FN) {
        if (p->fnv[in->op]->flags & RL_RFN_NOGRAD) return false;
        return !(in->model >= 0 && !p->models[in->model].info.trainable);
    }
    return false;
}

static bool reach_meets(const rl_recipe_program *p, int s1, int s2) {
    const uint64_t *a = p->slots[s1].reach, *b = p->slots[s2].reach;
    if (!a || !b) return false;
    for (int w = 0; w < p->reach_words; w++)
        if (a[w] & b[w]) return true;
    return false;
}

/* ---- grouping instructions into boxes ---------------------------------------------------- */

static int stmt_loss_index(const rl_recipe_program *p, int stmt) {
    for (int i = 0; i < p->n_losses; i++)
        if (p->losses[i].stmt == stmt) return i;
    return -1;
}

static void build_boxes(graph *g) {
    const rl_recipe_program *p = g->p;
    const rl_recipe *r = p->r;
    int *stmt_box = malloc(sizeof(int) * (size_t)(r->n_stmts + 1));
    g->grp = malloc(sizeof(int) * (size_t)(p->n_ir + 1));
    if (!stmt_box || !g->grp) abort();
    for (int s = 0; s < r->n_stmts; s++) stmt_box[s] = -1;
    for (int i = 0; i < p->n_ir; i++) {
        const rl_ir *in = &p->ir[i];
        g->grp[i] = -1;
        switch (in->code) {
        case IR_INPUT: g->grp[i] = add_node(g, GK_INPUT, PH_DECL, i); break;
        case IR_PARAM: g->grp[i] = add_node(g, GK_PARAM, PH_DECL, i); break;
        case IR_MODEL: case IR_CONST: case IR_FIELD: case IR_CONVERT: break; /* folded */
        case IR_OP: case IR_FN:
            if (in->code == IR_FN && in->model >= 0) {
                int b = add_node(g, GK_CALL, in->phase, i);
                g->nodes[b].model = in->model;
                g->nodes[b].stmt = in->stmt;
                g->grp[i] = b;
                break;
            }
            if (stmt_box[in->stmt] < 0) {
                stmt_box[in->stmt] = add_node(g, GK_EXPR, in->phase, i);
                g->nodes[stmt_box[in->stmt]].stmt = in->stmt;
            }
            g->grp[i] = stmt_box[in->stmt];
            g->nodes[g->grp[i]].ir = i; /* the last instruction holds the statement's value */
            break;
        }
    }
    /* what each box is: losses, metrics, named values */
    for (int b = 0; b < g->n_nodes; b++) {
        gnode *n = &g->nodes[b];
        if (n->stmt < 0 || n->stmt >= r->n_stmts) continue;
        const rl_stmt *st = r->stmts[n->stmt];
        /* a call is the statement itself when its value is the statement's name */
        if (n->kind == GK_CALL) {
            const char *nm = p->slots[p->ir[n->ir].out].name;
            if (!nm || st->n_names < 1 || !st->names[0] || strcmp(nm, st->names[0]) != 0) continue;
        }
        n->metric = st->kind == ST_LOG;
        n->loss = st->kind == ST_ASSIGN && st->names[0] && rl_is_loss_name(st->names[0]);
        if (n->loss) n->loss_index = stmt_loss_index(p, n->stmt);
        n->n_named = st->n_names;
    }
    /* statements that only name an existing value (log cost = jc) */
    for (int k = 0; k < p->n_named; k++) {
        const rl_named *nm = &p->named[k];
        if (nm->slot < 0 || nm->stmt < 0 || nm->stmt >= r->n_stmts) continue;
        const rl_stmt *st = r->stmts[nm->stmt];
        if ((st->kind != ST_ASSIGN && st->kind != ST_LOG) || stmt_box[nm->stmt] >= 0) continue;
        const char *field;
        int src = g->grp[resolve(p, nm->slot, &field)];
        if (src < 0 || (g->nodes[src].stmt == nm->stmt)) continue;
        bool own = false; /* a call box that is this statement */
        for (int b = 0; b < g->n_nodes; b++)
            if (g->nodes[b].kind == GK_CALL && g->nodes[b].stmt == nm->stmt) own = true;
        if (own) continue;
        if (st->kind == ST_LOG) {
            /* a metric that only names a value is a note on that value's box */
            char *lg = g->nodes[src].logged;
            size_t len = strlen(lg);
            snprintf(lg + len, sizeof g->nodes[src].logged - len, "%s%s", len ? ", " : "", nm->name);
            stmt_box[nm->stmt] = src;
            continue;
        }
        int b = add_node(g, GK_ALIAS, st->block == BLK_ROLLOUT ? PH_ROLLOUT : PH_LOSS, -1);
        gnode *n = &g->nodes[b];
        n->stmt = nm->stmt;
        n->alias_of = src;
        n->alias_name = nm->name;
        n->loss = rl_is_loss_name(nm->name);
        if (n->loss) n->loss_index = stmt_loss_index(p, nm->stmt);
        stmt_box[nm->stmt] = b;
    }
    free(stmt_box);
}

/* Edges between boxes, with their stop() and gradient facts. */
static void build_edges(graph *g) {
    const rl_recipe_program *p = g->p;
    int n_ir = p->n_ir;
    /* anc[L][i]: instruction i feeds loss L through gradient-passing instructions */
    int nl = p->n_losses < 64 ? p->n_losses : 64;
    bool *anc = calloc((size_t)(nl ? nl : 1) * (size_t)(n_ir + 1), 1);
    int *stack = malloc(sizeof(int) * (size_t)(n_ir + 1));
    bool *live = malloc((size_t)n_ir + 1);
    bool *exported = calloc((size_t)n_ir + 1, 1);
    if (!anc || !stack || !live || !exported) abort();
    for (int L = 0; L < nl; L++) {
        bool *a = anc + (size_t)L * (size_t)(n_ir + 1);
        int top = 0, root = p->slots[p->losses[L].slot].ir;
        a[root] = true;
        stack[top++] = root;
        while (top) {
            const rl_ir *in = &p->ir[stack[--top]];
            if (!passes_grad(p, in)) continue;
            for (int k = 0; k < in->n_args; k++) {
                int w = p->slots[in->args[k]].ir;
                if (!a[w]) a[w] = true, stack[top++] = w;
            }
        }
    }
    /* an instruction's value leaves its box when it is named or read by another box */
    for (int i = 0; i < n_ir; i++) {
        const rl_ir *in = &p->ir[i];
        if (g->grp[i] < 0) continue;
        for (int k = 0; k < in->n_out; k++)
            if (p->slots[in->out + k].name) exported[i] = true;
        for (int k = 0; k < in->n_args; k++) {
            const char *field;
            int src = resolve(p, in->args[k], &field);
            if (g->grp[src] >= 0 && g->grp[src] != g->grp[i]) exported[src] = true;
        }
    }
    for (int i = 0; i < n_ir; i++) {
        const rl_ir *in = &p->ir[i];
        int to = g->grp[i];
        if (to < 0) continue;
        for (int k = 0; k < in->n_args; k++) {
            const char *field;
            int src = resolve(p, in->args[k], &field);
            const rl_ir *sin = &p->ir[src];
            if (sin->code == IR_MODEL) {
                /* the gradient entering a trainable model through this call */
                for (int L = 0; L < nl; L++)
                    if (anc[(size_t)L * (size_t)(n_ir + 1) + (size_t)i] && passes_grad(p, in) &&
                        reach_meets(p, in->args[k], p->losses[L].slot))
                        g->nodes[to].grad_in_model |= (uint64_t)1 << L;
                continue;
            }
            int from = g->grp[src];
            if (from < 0 || from == to) continue;
            /* solid when the value reaches one of the target box's outputs
             * along instructions that are not stop() */
            memset(live, 0, (size_t)n_ir + 1);
            bool solid = false;
            const gnode *tn = &g->nodes[to];
            for (int j = i; j < n_ir && !solid; j++) {
                if (g->grp[j] != to) continue;
                const rl_ir *jn = &p->ir[j];
                bool feeds = false;
                for (int a = 0; a < jn->n_args && !feeds; a++) {
                    const char *f2;
                    int s2 = resolve(p, jn->args[a], &f2);
                    feeds = (j == i && a == k) || (s2 != src && live[s2] && g->grp[s2] == to);
                }
                if (!feeds) continue;
                if (jn->code == IR_OP && jn->op == RL_OP_STOP_GRADIENT) continue;
                live[j] = true;
                if (exported[j] || tn->kind == GK_CALL) solid = true;
            }
            uint64_t grad = 0;
            for (int L = 0; L < nl; L++)
                if (anc[(size_t)L * (size_t)(n_ir + 1) + (size_t)i] && passes_grad(p, in) && !field &&
                    reach_meets(p, in->args[k], p->losses[L].slot))
                    grad |= (uint64_t)1 << L;
            /* a tuple's member is named on its edge */
            const char *label = field;
            const gnode *fn = &g->nodes[from];
            if (!label && fn->n_named > 1) label = p->slots[in->args[k]].name;
            if (!label && fn->n_named > 1) {
                /* through a conversion: name the slot the conversion read */
                const rl_ir *w = &p->ir[p->slots[in->args[k]].ir];
                while (w->code == IR_CONVERT) {
                    label = p->slots[w->args[0]].name;
                    w = &p->ir[p->slots[w->args[0]].ir];
                }
            }
            add_edge(g, from, to, label, solid, grad);
        }
    }
    for (int b = 0; b < g->n_nodes; b++)
        if (g->nodes[b].kind == GK_ALIAS) add_edge(g, g->nodes[b].alias_of, b, NULL, true, 0);
    free(anc);
    free(stack);
    free(live);
    free(exported);
}

/* ---- text ------------------------------------------------------------------------------ */

/* Appends src[0 .. n) to buf (cap bytes) with whitespace runs collapsed and
 * comments dropped: the source text of an expression on one line. */
static void flat_text(char *buf, size_t cap, const char *src, int n) {
    size_t k = strlen(buf);
    bool space = k > 0 && buf[k - 1] == ' ';
    bool in_str = false;
    for (int i = 0; i < n && k + 1 < cap; i++) {
        char c = src[i];
        if (c == '"') in_str = !in_str;
        if (!in_str && c == '#') {
            while (i < n && src[i] != '\n') i++;
            c = ' ';
        }
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            if (!space && k > 0) buf[k++] = ' ';
            space = true;
            continue;
        }
        buf[k++] = c;
        space = false;
    }
    while (k > 0 && buf[k - 1] == ' ') k--;
    buf[k] = 0;
}

static void span_text(const rl_recipe_program *p, rl_span sp, char *buf, size_t cap) {
    const rl_source *src = &p->r->src;
    int s = sp.start < 0 ? 0 : sp.start, e = sp.end > src->len ? src->len : sp.end;
    if (e > s) flat_text(buf, cap, src->text + s, e - s);
}

/* Text in an HTML-like label, and in a quoted edge label (rl_dot.h escapes both). */
static void put_html(FILE *f, const char *str, size_t n) { rl_dot_put_text(f, str, n, RL_DOT_TEXT_HTML); }
static void put_quoted(FILE *f, const char *s) { rl_dot_put_text(f, s, strlen(s), RL_DOT_TEXT_QUOTED); }

#define WRAP 44     /* characters per label line */
#define MAX_LINES 3 /* lines of source text per box */

/* Length of the UTF-8 character at s. */
static int u8len(const char *s) {
    unsigned char c = (unsigned char)*s;
    return c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
}

/* Writes text wrapped at spaces (or anywhere in a long word) into at most
 * MAX_LINES lines, the last one cut with an ellipsis; `bold` leading bytes
 * in bold (the assigned name). */
static void put_wrapped(FILE *f, const char *text, int bold) {
    int len = (int)strlen(text), pos = 0;
    for (int line = 0; line < MAX_LINES && pos < len; line++) {
        /* break at the last space, else after the last '(' or ',' (a long
         * call has no spaces), else anywhere */
        int end = pos, last_space = -1, last_punct = -1, chars = 0;
        while (end < len && chars < WRAP) {
            if (text[end] == ' ') last_space = end;
            if (text[end] == '(' || text[end] == ',') last_punct = end + 1;
            end += u8len(text + end);
            chars++;
        }
        if (end > len) end = len;
        bool more = end < len;
        if (more && line < MAX_LINES - 1) {
            if (last_space > pos + WRAP / 3) end = last_space;
            else if (last_punct > pos + WRAP / 3) end = last_punct;
        }
        if (line) fputs("<br/>", f);
        int b0 = pos < bold ? bold - pos : 0;
        if (b0 > end - pos) b0 = end - pos;
        if (b0 > 0) {
            fputs("<b>", f);
            put_html(f, text + pos, (size_t)b0);
            fputs("</b>", f);
        }
        put_html(f, text + pos + b0, (size_t)(end - pos - b0));
        if (more && line == MAX_LINES - 1) fputs(" …", f);
        pos = end;
        while (pos < len && text[pos] == ' ') pos++;
    }
}

/* "f32 [B, T]" -> "f32[B,T]" */
static void compact_shape(const char *s, char *out, size_t cap) {
    size_t k = 0;
    for (; *s && k + 1 < cap; s++)
        if (*s != ' ') out[k++] = *s;
    out[k] = 0;
}

static void put_shape_line(FILE *f, const char *shape) {
    if (!shape || !shape[0]) return;
    char c[128];
    compact_shape(shape, c, sizeof c);
    fputs("<br/><font point-size=\"8\" color=\"#555555\">", f);
    put_html(f, c, strlen(c));
    fputs("</font>", f);
}

/* ---- the label of each box ---------------------------------------------------------------- */

static const char *stmt_names(const rl_recipe_program *p, const rl_stmt *st, char *buf, size_t cap) {
    (void)p;
    buf[0] = 0;
    size_t k = 0;
    for (int i = 0; i < st->n_names && k + 1 < cap; i++)
        k += (size_t)snprintf(buf + k, cap - k, "%s%s", i ? ", " : "", st->names[i] ? st->names[i] : "?");
    return buf;
}

/* The text of a model call written inside an inlined function: the call as
 * the function wrote it, with the names of the values passed. */
static void call_text(const rl_recipe_program *p, const rl_ir *in, char *buf, size_t cap) {
    const rl_recipe_fn *fn = p->fnv[in->op];
    size_t k = (size_t)snprintf(buf, cap, "%s(", fn->name);
    int shown = 0;
    for (int i = 0; i < fn->n_params && k + 1 < cap; i++) {
        if (in->pslot[i] < 0) continue;
        const char *field;
        int src = resolve(p, in->pslot[i], &field);
        const char *nm = p->slots[in->pslot[i]].name;
        if (!nm) nm = p->slots[p->ir[src].out].name;
        k += (size_t)snprintf(buf + k, cap - k, "%s%s%s", shown++ ? ", " : "", nm ? nm : "…", field ? field : "");
    }
    if (k + 1 < cap) snprintf(buf + k, cap - k, ")");
}

static void box_text(const graph *g, const gnode *n, char *text, size_t cap, int *bold) {
    const rl_recipe_program *p = g->p;
    const rl_recipe *r = p->r;
    char names[256];
    text[0] = 0;
    *bold = 0;
    if (n->kind == GK_INPUT || n->kind == GK_PARAM) {
        const rl_ir *in = &p->ir[n->ir];
        if (n->kind == GK_INPUT) {
            const rl_input_decl *d = &p->inputs[in->op];
            snprintf(text, cap, "%s : %s", d->info.name, d->info.type.tokens ? "tokens" : "tensor");
            *bold = (int)strlen(d->info.name);
        } else {
            const rl_param_decl *d = &p->params[in->op];
            /* the declaration as written, up to the end of its line */
            int s = d->sp.start, e = s;
            while (e < r->src.len && r->src.text[e] != '\n') e++;
            flat_text(text, cap, r->src.text + s, e - s);
            *bold = (int)strlen(d->info.name);
        }
        return;
    }
    const rl_stmt *st = n->stmt >= 0 && n->stmt < r->n_stmts ? r->stmts[n->stmt] : NULL;
    if (n->kind == GK_ALIAS) {
        snprintf(text, cap, "%s%s = ", n->metric ? "log " : "", n->alias_name);
        *bold = (int)strlen(text) - 3;
        if (st && st->expr) span_text(p, st->expr->sp, text, cap);
        return;
    }
    if (n->kind == GK_CALL) {
        const rl_ir *in = &p->ir[n->ir];
        bool whole = n->metric || n->loss || (st && st->n_names == 1 && st->names[0] &&
                                               p->slots[in->out].name &&
                                               strcmp(p->slots[in->out].name, st->names[0]) == 0);
        if (whole) {
            snprintf(text, cap, "%s%s = ", n->metric ? "log " : "", stmt_names(p, st, names, sizeof names));
            *bold = (int)strlen(text) - 3;
        }
        if (in->in_fn) {
            char call[200];
            call_text(p, in, call, sizeof call);
            size_t k = strlen(text);
            snprintf(text + k, cap - k, "%s in ", call);
        }
        span_text(p, in->sp, text, cap);
        return;
    }
    /* a statement */
    if (!st) return;
    snprintf(text, cap, "%s%s = ", st->kind == ST_LOG ? "log " : "", stmt_names(p, st, names, sizeof names));
    *bold = (int)strlen(text) - 3;
    if (st->expr) span_text(p, st->expr->sp, text, cap);
}

static const char *box_shape(const graph *g, const gnode *n) {
    const rl_recipe_program *p = g->p;
    if (n->kind == GK_ALIAS) return NULL;
    const rl_ir *in = &p->ir[n->ir];
    if (n->kind == GK_INPUT) {
        const rl_input_decl *d = &p->inputs[in->op];
        return d->info.type.tokens ? NULL : p->slots[in->out].shape;
    }
    /* a tuple statement: the shapes of its members */
    return p->slots[in->out].shape;
}

/* ---- --expand: the ops of one model call on a tiny model ---------------------------------------- */

typedef struct expander {
    rl_ctx *ctx;
    void *models[3]; /* per model kind */
} expander;

/* Sizes of the tiny run, so that shapes can be written with dim names. */
enum { EX_B = 3, EX_T = 5, EX_V = 7 };

static void ex_shape(const rl_tensor *t, const char *tname, char *out, size_t cap) {
    size_t k = (size_t)snprintf(out, cap, "%s[", t->dtype == RL_I32 ? "i32" : "f32");
    for (int d = 0; d < t->ndim && k + 1 < cap; d++) {
        int64_t s = t->shape[d];
        const char *sym = s == EX_B ? "B" : s == EX_T ? tname : s == EX_V ? "V" : s == EX_B * EX_T ? NULL
                        : s == 32 ? "C" : s == 96 ? "3C" : s == 128 ? "4C" : NULL;
        if (s == EX_B * EX_T) k += (size_t)snprintf(out + k, cap - k, "%sB*%s", d ? "," : "", tname);
        else if (sym) k += (size_t)snprintf(out + k, cap - k, "%s%s", d ? "," : "", sym);
        else k += (size_t)snprintf(out + k, cap - k, "%s%lld", d ? "," : "", (long long)s);
    }
    if (k + 1 < cap) snprintf(out + k, cap - k, "]");
}

/* The name of the dim T of a call's token argument ("T", "T_seq"). */
static void tokens_tname(const rl_recipe_program *p, const rl_ir *in, char *out, size_t cap) {
    snprintf(out, cap, "T");
    const rl_recipe_fn *fn = p->fnv[in->op];
    for (int i = 0; i < fn->n_params; i++) {
        if (fn->params[i].type != RL_RP_TOKENS || in->pslot[i] < 0) continue;
        const char *sh = p->slots[in->pslot[i]].shape; /* "i32 [B, T_seq]" */
        const char *c = strchr(sh, ',');
        if (!c) return;
        c++;
        while (*c == ' ') c++;
        size_t k = 0;
        while (c[k] && c[k] != ']' && k + 1 < cap) out[k] = c[k], k++;
        out[k] = 0;
        return;
    }
}

static void expand_call(graph *g, expander *ex, gnode *n) {
    const rl_recipe_program *p = g->p;
    const rl_ir *in = &p->ir[n->ir];
    const rl_recipe_fn *fn = p->fnv[in->op];
    if (fn->flags & RL_RFN_NOGRAD) {
        n->no_expand = "a sampling loop (no gradient): not expanded";
        return;
    }
    if (!p->fns.dry.make) {
        n->no_expand = "no tiny model to run: not expanded";
        return;
    }
    if (!ex->ctx && !(ex->ctx = rl_ctx_new(NULL))) return;
    rl_ctx *ctx = ex->ctx;
    rl_ctx_reset(ctx);
    rl_ctx_clear_error(ctx);
    rl_recipe_model_kind mk = p->models[in->model].info.kind;
    if (!ex->models[mk]) ex->models[mk] = p->fns.dry.make(ctx, mk, RL_F32, EX_V, EX_T + 1, p->fns.user);
    if (!ex->models[mk]) {
        n->no_expand = "the tiny model could not be made: not expanded";
        rl_ctx_clear_error(ctx);
        return;
    }
    int32_t ids[EX_B * EX_T], mask[EX_B * EX_T], attn[EX_B * EX_T];
    for (int i = 0; i < EX_B * EX_T; i++) {
        ids[i] = (int32_t)((i * 5 + 1) % EX_V);
        mask[i] = i % EX_T >= 2;
        attn[i] = 1;
    }
    int64_t sh[2] = {EX_B, EX_T};
    rl_tensor *tk[3] = {rl_const(ctx, RL_I32, 2, sh, ids), rl_const(ctx, RL_I32, 2, sh, mask),
                        rl_const(ctx, RL_I32, 2, sh, attn)};
    rl_recipe_value args[RL_RECIPE_MAX_FN_PARAMS];
    memset(args, 0, sizeof args);
    for (int i = 0; i < fn->n_params; i++) {
        if (in->pslot[i] < 0) {
            args[i] = in->consts[i];
            continue;
        }
        const rl_slot *s = &p->slots[in->pslot[i]];
        if (s->kind == VK_MODEL) {
            args[i].kind = RL_RV_MODEL;
            args[i].model = ex->models[mk];
            args[i].model_kind = mk;
        } else if (s->kind == VK_TOKENS) {
            args[i].kind = RL_RV_TOKENS;
            args[i].tok = (rl_recipe_tokens){tk[0], tk[1], tk[2]};
        } else {
            n->no_expand = "takes a tensor argument: not expanded";
            return;
        }
    }
    rl_recipe_value out[RL_RECIPE_MAX_FN_RESULTS];
    memset(out, 0, sizeof out);
    void *state = NULL;
    rl_recipe_call call = {.ctx = ctx, .fn = fn, .args = args, .dry = 1, .dry_len = EX_T, .state = &state,
                           .user = p->fns.user};
    int was = rl_ctx_set_grad(ctx, 1);
    int t0 = rl_ctx_tape_len(ctx);
    rl_status st = fn->call(&call, out);
    int t1 = rl_ctx_tape_len(ctx);
    rl_ctx_set_grad(ctx, was);
    if (state && fn->free_state) fn->free_state(state);
    if (st != RL_OK || out[0].kind != RL_RV_TENSOR || !out[0].t || t1 <= t0) {
        n->no_expand = "its run on a tiny model failed: not expanded";
        rl_ctx_clear_error(ctx);
        return;
    }
    char tname[32];
    tokens_tname(p, in, tname, sizeof tname);
    n->n_ops = t1 - t0;
    n->ops = calloc((size_t)n->n_ops, sizeof(gop));
    if (!n->ops) abort();
    for (int k = 0; k < n->n_ops; k++) {
        const rl_node *nd = rl_ctx_node(ctx, t0 + k);
        gop *o = &n->ops[k];
        o->op = nd->op;
        ex_shape(nd->out, tname, o->shape, sizeof o->shape);
        size_t wk = 0;
        for (int j = 0; j < nd->n_in && j < 8; j++) {
            const rl_tensor *x = nd->in[j];
            int from = -9;
            for (int q = 0; q < k; q++)
                if (rl_ctx_node(ctx, t0 + q)->out == x) from = q;
            for (int f = 0; f < 3; f++)
                if (x == tk[f]) from = -1 - f;
            if (from == -9 && (x->flags & RL_TF_PARAM) && x->name[0] && wk + 2 < sizeof o->weights)
                wk += (size_t)snprintf(o->weights + wk, sizeof o->weights - wk, "%s%s", wk ? ", " : "", x->name);
            o->in[o->n_in++] = from;
        }
        if (nd->out == out[0].t) n->out_op = k;
    }
    if (n->out_op < 0) n->out_op = n->n_ops - 1;
    rl_ctx_reset(ctx);
}

static void expander_free(const rl_recipe_program *p, expander *ex) {
    for (int k = 0; k < 3; k++)
        if (ex->models[k] && p->fns.dry.free) p->fns.dry.free(ex->ctx, ex->models[k], p->fns.user);
    if (ex->ctx) rl_ctx_free(ex->ctx);
}

/* ---- writing DOT ------------------------------------------------------------------------------ */

static const char *node_id(const graph *g, int b, char *buf, size_t cap, bool out) {
    const gnode *n = &g->nodes[b];
    static const char pre[] = {'i', 'p', 'e', 'c', 'a'};
    if (n->kind == GK_CALL && n->ops && out) snprintf(buf, cap, "c%d_op%d", b, n->out_op);
    else snprintf(buf, cap, "%c%d", pre[n->kind], b);
    return buf;
}

static void write_box(graph *g, int b, const char *indent) {
    FILE *f = g->f;
    const gnode *n = &g->nodes[b];
    const rl_recipe_program *p = g->p;
    char text[1024], id[32];
    int bold = 0;
    box_text(g, n, text, sizeof text, &bold);
    if (n->kind == GK_CALL && n->ops) {
        /* an expanded call: a cluster of its ops */
        fprintf(f, "%ssubgraph cluster_call%d {\n%s  class=\"expanded\"; label=<", indent, b, indent);
        put_wrapped(f, text, bold);
        fprintf(f, "<br/><font point-size=\"8\">ops of one call on the shape check's tiny GPT-2</font>>; "
                   "style=\"rounded,dashed\"; color=\"#888888\"; fontsize=9;\n");
        for (int k = 0; k < n->n_ops; k++) {
            const gop *o = &n->ops[k];
            fprintf(f, "%s  c%d_op%d [class=\"op\", shape=box, style=\"rounded,filled\", fontsize=8, margin=\"0.05,0.02\", "
                       "fillcolor=\"%s\", label=<<b>", indent, b, k, k == n->out_op ? "#c7dcf5" : "#ffffff");
            put_html(f, rl_op_table[o->op].symbol, strlen(rl_op_table[o->op].symbol));
            fputs("</b>", f);
            if (o->weights[0]) {
                fputs(" <font color=\"#b45f06\">", f);
                put_html(f, o->weights, strlen(o->weights));
                fputs("</font>", f);
            }
            fputs("<br/><font point-size=\"7\" color=\"#555555\">", f);
            put_html(f, o->shape, strlen(o->shape));
            fputs("</font>>];\n", f);
        }
        for (int k = 0; k < n->n_ops; k++)
            for (int j = 0; j < n->ops[k].n_in; j++)
                if (n->ops[k].in[j] >= 0)
                    fprintf(f, "%s  c%d_op%d -> c%d_op%d [arrowsize=0.5];\n", indent, b, n->ops[k].in[j], b, k);
        fprintf(f, "%s}\n", indent);
        return;
    }
    const char *cls, *fill, *color = "#6c8ebf", *shape = "box", *style = "rounded,filled";
    const char *extra = "";
    switch (n->kind) {
    case GK_INPUT: cls = "input", fill = RL_GRAPH_FILL_DATA, color = "#888888", shape = "cylinder", style = "filled"; break;
    case GK_PARAM: cls = "param", fill = RL_GRAPH_FILL_PARAM, color = "#d79b00", style = "filled,bold"; break;
    case GK_CALL: cls = "call", fill = "#ffffff", color = p->models[n->model].info.trainable ? "#d79b00" : "#6c8ebf"; break;
    default: cls = "expr", fill = n->phase == PH_ROLLOUT ? RL_GRAPH_FILL_ROLLOUT : RL_GRAPH_FILL_EXPR; break;
    }
    if (n->metric) cls = "metric", fill = RL_GRAPH_FILL_METRIC, color = "#82b366", shape = "note", style = "filled";
    if (n->loss) {
        cls = "loss", fill = RL_GRAPH_FILL_LOSS, color = RL_GRAPH_COLOR_LOSS;
        extra = ", peripheries=2, penwidth=2";
    }
    char xb[160] = "";
    if (g->o.backward && n->grad_in_model) {
        int L = __builtin_ctzll(n->grad_in_model);
        snprintf(xb, sizeof xb, ", penwidth=2.5, color=\"%s\"", grad_colors[L % N_GRAD_COLORS]);
    }
    fprintf(f, "%s%s [class=\"%s\", shape=%s, style=\"%s\", fillcolor=\"%s\", color=\"%s\"%s%s, label=<", indent,
            node_id(g, b, id, sizeof id, false), cls, shape, style, fill, color, extra, xb);
    put_wrapped(f, text, bold);
    if (n->kind == GK_CALL && n->no_expand && g->o.expand) {
        fputs("<br/><font point-size=\"7\" color=\"#888888\">", f);
        put_html(f, n->no_expand, strlen(n->no_expand));
        fputs("</font>", f);
    }
    put_shape_line(f, box_shape(g, n));
    if (n->logged[0]) {
        fputs("<br/><font point-size=\"8\" color=\"#2d7d2d\">log ", f);
        put_html(f, n->logged, strlen(n->logged));
        fputs("</font>", f);
    }
    fputs(">];\n", f);
}

/* The phase a box is drawn in: params sit in the phase of their first use
 * (near it, rather than among the data at the top). */
static int box_phase(const graph *g, int b) {
    const gnode *n = &g->nodes[b];
    if (n->kind != GK_PARAM) return n->phase;
    int ph = PH_DECL;
    for (int i = 0; i < g->n_edges; i++)
        if (g->edges[i].from == b) {
            int q = g->nodes[g->edges[i].to].phase;
            if (ph == PH_DECL || q < ph) ph = q;
        }
    return ph;
}

/* The models called in one phase, each a cluster of its calls. */
static void write_model_clusters(graph *g, int phase, const char *indent) {
    const rl_recipe_program *p = g->p;
    FILE *f = g->f;
    for (int m = 0; m < p->n_models; m++) {
        bool any = false;
        for (int b = 0; b < g->n_nodes && !any; b++)
            any = g->nodes[b].kind == GK_CALL && g->nodes[b].model == m && g->nodes[b].phase == phase;
        if (!any) continue;
        const rl_recipe_model_info *mi = &p->models[m].info;
        fprintf(f, "%ssubgraph cluster_%s_model%d {\n", indent, phase == PH_ROLLOUT ? "rollout" : "loss", m);
        fprintf(f, "%s  class=\"model %s\"; style=\"rounded,filled\"; fillcolor=\"%s\"; color=\"%s\"; penwidth=%s; "
                   "fontsize=10; label=<<b>",
                indent, mi->trainable ? "trainable" : "frozen", mi->trainable ? RL_GRAPH_FILL_TRAINABLE : RL_GRAPH_FILL_FROZEN,
                mi->trainable ? "#d79b00" : "#6c8ebf", mi->trainable ? "2" : "1");
        put_html(f, mi->name, strlen(mi->name));
        fprintf(f, "</b> · %s · %s>;\n", rl_recipe_model_kind_name(mi->kind), mi->trainable ? "trainable" : "frozen");
        char in2[32];
        snprintf(in2, sizeof in2, "%s  ", indent);
        for (int b = 0; b < g->n_nodes; b++)
            if (g->nodes[b].kind == GK_CALL && g->nodes[b].model == m && g->nodes[b].phase == phase)
                write_box(g, b, in2);
        fprintf(f, "%s}\n", indent);
    }
}

/* Online recipes: the rollout values the loss phase reads, drawn again as
 * dashed boxes in one row at the top of the loss phase (they are kept from
 * the rollout and are constants there). One edge per value crosses between
 * the phases, instead of one per use. */
static void write_kept(graph *g) {
    FILE *f = g->f;
    bool any = false;
    for (int b = 0; b < g->n_nodes && !any; b++) any = g->nodes[b].kept;
    if (!any) return;
    /* one row, but not a cluster: free to sit under their producers and
     * above their readers, which keeps edges short and uncrossed */
    /* the loss phase's boxes that read nothing (params, step()) join the row:
     * that keeps them, and so the whole phase, under the rollout */
    bool *has_in = calloc((size_t)g->n_nodes + 1, 1);
    if (!has_in) abort();
    for (int i = 0; i < g->n_edges; i++) has_in[g->edges[i].to] = true;
    fputs("    { rank=same;", f);
    for (int b = 0; b < g->n_nodes; b++) {
        char id[32];
        if (g->nodes[b].kept) fprintf(f, " k%d;", b);
        else if (box_phase(g, b) == PH_LOSS && !has_in[b] && !(g->nodes[b].kind == GK_CALL && g->nodes[b].ops))
            fprintf(f, " %s;", node_id(g, b, id, sizeof id, false));
    }
    fputs(" }\n", f);
    free(has_in);
    /* rollout values nothing in the loss phase reads stay above the row too */
    int first = -1;
    for (int b = 0; b < g->n_nodes && first < 0; b++)
        if (g->nodes[b].kept) first = b;
    bool *has_out = calloc((size_t)g->n_nodes + 1, 1);
    if (!has_out) abort();
    for (int i = 0; i < g->n_edges; i++) has_out[g->edges[i].from] = true;
    for (int b = 0; b < g->n_nodes; b++) {
        char id[32];
        if (g->nodes[b].phase == PH_ROLLOUT && !has_out[b])
            fprintf(f, "    %s -> k%d [style=invis, weight=0, class=\"order\"];\n", node_id(g, b, id, sizeof id, true),
                    first);
    }
    free(has_out);
    for (int b = 0; b < g->n_nodes; b++) {
        const gnode *n = &g->nodes[b];
        if (!n->kept) continue;
        char names[256] = "";
        const rl_recipe_program *p = g->p;
        if (n->kind == GK_INPUT) snprintf(names, sizeof names, "%s", p->inputs[p->ir[n->ir].op].info.name);
        else if (n->kind == GK_ALIAS) snprintf(names, sizeof names, "%s", n->alias_name);
        else if (n->kind == GK_CALL && !p->slots[p->ir[n->ir].out].name)
            snprintf(names, sizeof names, "%s", p->fnv[p->ir[n->ir].op]->name);
        else if (n->stmt >= 0 && n->stmt < p->r->n_stmts)
            stmt_names(p, p->r->stmts[n->stmt], names, sizeof names);
        fprintf(f, "    k%d [class=\"kept\", shape=box, style=\"rounded,dashed,filled\", fillcolor=\"#ffffff\", "
                   "color=\"#999999\", fontsize=9, margin=\"0.06,0.02\", label=<",
                b);
        put_html(f, names, strlen(names));
        fputs(">];\n", f);
    }
}

static void write_phase(graph *g, int phase) {
    FILE *f = g->f;
    const rl_recipe_program *p = g->p;
    bool any = false;
    for (int b = 0; b < g->n_nodes && !any; b++) any = box_phase(g, b) == phase;
    if (!any) return;
    if (phase == PH_ROLLOUT)
        fputs("  subgraph cluster_rollout {\n    class=\"phase rollout\"; style=\"rounded,filled,dashed\"; fillcolor=\"#f7f7f7\"; "
              "color=\"#999999\"; fontsize=12; label=<<b>rollout { }</b>  gradients off · once per batch>;\n",
              f);
    else
        fprintf(f, "  subgraph cluster_loss {\n    class=\"phase loss\"; style=\"rounded,filled\"; fillcolor=\"#f4f8fd\"; "
                   "color=\"#6c8ebf\"; fontsize=12; label=<<b>%s</b>  differentiated · %s>;\n",
                p->kind == RL_RECIPE_ONLINE ? "loss { }" : "loss",
                p->kind == RL_RECIPE_ONLINE ? "each minibatch" : "each step");
    if (phase == PH_LOSS) write_kept(g);
    write_model_clusters(g, phase, "    ");
    bool metrics = false;
    for (int b = 0; b < g->n_nodes; b++) {
        const gnode *n = &g->nodes[b];
        if (box_phase(g, b) != phase || n->kind == GK_CALL) continue;
        if (n->metric && phase == PH_LOSS) metrics = true;
        else write_box(g, b, "    ");
    }
    if (metrics) {
        /* the metrics together, under the losses: what gets logged */
        fputs("    subgraph cluster_log {\n      class=\"log\"; style=\"rounded,dashed\"; color=\"#82b366\"; "
              "fontsize=10; fontcolor=\"#2d7d2d\"; label=\"log: metrics.jsonl\";\n",
              f);
        for (int b = 0; b < g->n_nodes; b++)
            if (box_phase(g, b) == phase && g->nodes[b].metric && g->nodes[b].kind != GK_CALL)
                write_box(g, b, "      ");
        fputs("    }\n", f);
    }
    fputs("  }\n", f);
}

/* Online recipes: every loss-phase box below every rollout box, so that the
 * two phases stack (the order they run in) instead of sitting side by side.
 * Invisible edges of weight 0 order ranks without pulling boxes about. */
static void write_phase_order(graph *g) {
    FILE *f = g->f;
    bool *has_in = calloc((size_t)g->n_nodes + 1, 1), *has_out = calloc((size_t)g->n_nodes + 1, 1);
    if (!has_in || !has_out) abort();
    for (int i = 0; i < g->n_edges; i++) {
        const gedge *e = &g->edges[i];
        int pf = box_phase(g, e->from), pt = box_phase(g, e->to);
        if (pf == PH_ROLLOUT && pt == PH_ROLLOUT) has_out[e->from] = true;
        if (pf == PH_LOSS && pt == PH_LOSS) has_in[e->to] = true;
    }
    /* the metrics under the losses */
    for (int a = 0; a < g->n_nodes; a++) {
        if (!g->nodes[a].loss || box_phase(g, a) != PH_LOSS) continue;
        for (int b = 0; b < g->n_nodes; b++) {
            if (!g->nodes[b].metric || box_phase(g, b) != PH_LOSS) continue;
            char x[32], y[32];
            fprintf(f, "  %s -> %s [style=invis, weight=0, class=\"order\"];\n", node_id(g, a, x, sizeof x, true),
                    node_id(g, b, y, sizeof y, false));
        }
    }
    /* with kept values drawn in the loss phase the row they sit in orders
     * the phases (write_kept); without, invisible edges do */
    bool kept = false;
    for (int b = 0; b < g->n_nodes; b++) kept |= g->nodes[b].kept;
    for (int a = 0; a < g->n_nodes && !kept; a++) {
        if (box_phase(g, a) != PH_ROLLOUT || has_out[a]) continue;
        for (int b = 0; b < g->n_nodes; b++) {
            if (box_phase(g, b) != PH_LOSS || has_in[b]) continue;
            char x[32], y[32];
            fprintf(f, "  %s -> %s [style=invis, weight=0, class=\"order\"];\n", node_id(g, a, x, sizeof x, true),
                    node_id(g, b, y, sizeof y, false));
        }
    }
    free(has_in);
    free(has_out);
}

static void write_hypers(graph *g) {
    const rl_recipe_program *p = g->p;
    FILE *f = g->f;
    if (p->n_hypers == 0) return;
    /* a table of up to 4 columns keeps a long list low */
    int cols = p->n_hypers > 12 ? 4 : p->n_hypers > 4 ? 3 : 1;
    fputs("  hypers [class=\"hypers\", shape=note, style=filled, fillcolor=\"#ffffff\", color=\"#bbbbbb\", "
          "fontsize=8, label=<<table border=\"0\" cellspacing=\"0\" cellpadding=\"1\">",
          f);
    fprintf(f, "<tr><td align=\"left\" colspan=\"%d\"><b>hyper</b></td></tr>", cols);
    for (int i = 0; i < p->n_hypers; i++) {
        char v[128];
        const rl_recipe_hyper_info *h = &p->hypers[i];
        if (h->str) snprintf(v, sizeof v, "%s = \"%s\"", h->name, h->str);
        else snprintf(v, sizeof v, "%s = %g", h->name, h->num);
        if (i % cols == 0) fputs("<tr>", f);
        fputs("<td align=\"left\">", f);
        put_html(f, v, strlen(v));
        fputs("</td>", f);
        if (i % cols == cols - 1 || i == p->n_hypers - 1) fputs("</tr>", f);
    }
    fputs("</table>>];\n", f);
}

static void write_legend(graph *g) {
    const rl_recipe_program *p = g->p;
    FILE *f = g->f;
    fputs("  legend [class=\"legend\", shape=plaintext, fontsize=8, label=<<table border=\"0\" cellborder=\"1\" "
          "cellspacing=\"2\" cellpadding=\"2\" color=\"#bbbbbb\">",
          f);
    fprintf(f, "<tr><td bgcolor=\"%s\">data</td><td bgcolor=\"%s\">trainable</td><td bgcolor=\"%s\">frozen model</td></tr>",
            RL_GRAPH_FILL_DATA, RL_GRAPH_FILL_PARAM, RL_GRAPH_FILL_FROZEN);
    fprintf(f, "<tr><td bgcolor=\"%s\">loss</td><td bgcolor=\"%s\">metric</td><td>- - -  stop()</td></tr>",
            RL_GRAPH_FILL_LOSS, RL_GRAPH_FILL_METRIC);
    if (p->kind == RL_RECIPE_ONLINE)
        fputs("<tr><td colspan=\"3\" style=\"dashed\">kept rollout value (a constant in the loss phase)</td></tr>", f);
    if (g->o.backward) {
        fputs("<tr>", f);
        int nl = p->n_losses < 64 ? p->n_losses : 64;
        for (int L = 0; L < nl; L++) {
            fprintf(f, "<td><font color=\"%s\">⟵ ∂", grad_colors[L % N_GRAD_COLORS]);
            put_html(f, p->losses[L].info.name, strlen(p->losses[L].info.name));
            fputs("</font></td>", f);
            if (L % 3 == 2 && L + 1 < nl) fputs("</tr><tr>", f);
        }
        fputs("</tr>", f);
    }
    fputs("</table>>];\n", f);
}

static void write_edges(graph *g) {
    FILE *f = g->f;
    const rl_recipe_program *p = g->p;
    int nl = p->n_losses < 64 ? p->n_losses : 64;
    for (int b = 0; b < g->n_nodes; b++) {
        char a[32];
        if (g->nodes[b].kept)
            fprintf(f, "  %s -> k%d [class=\"kept\", color=\"#999999\", style=bold];\n", node_id(g, b, a, sizeof a, true), b);
    }
    for (int i = 0; i < g->n_edges; i++) {
        const gedge *e = &g->edges[i];
        const gnode *to = &g->nodes[e->to];
        char a[32], b[32];
        node_id(g, e->from, a, sizeof a, true);
        if (g->nodes[e->from].kept && box_phase(g, e->to) == PH_LOSS) snprintf(a, sizeof a, "k%d", e->from);
        /* into an expanded call: to each op that reads the token batch's fields */
        if (to->kind == GK_CALL && to->ops) {
            static const char *const fields[] = {".ids", ".mask", ".attn"};
            for (int k = 0; k < to->n_ops; k++)
                for (int j = 0; j < to->ops[k].n_in; j++) {
                    int w = to->ops[k].in[j];
                    if (w >= 0 || w < -3) continue;
                    fprintf(f, "  %s -> c%d_op%d [label=\"%s\", fontsize=7, color=\"#888888\"];\n", a, e->to, k,
                            fields[-1 - w]);
                }
            continue;
        }
        node_id(g, e->to, b, sizeof b, false);
        fprintf(f, "  %s -> %s [", a, b);
        bool sep = false;
        if (e->label) {
            fputs("label=\"", f);
            put_quoted(f, e->label);
            fputs("\", fontsize=8, fontcolor=\"#555555\"", f);
            sep = true;
        }
        /* a token field (.mask) is context rather than the main flow: a light line */
        if (e->label && e->label[0] == '.' && e->solid) fputs(", color=\"#aaaaaa\", penwidth=0.7", f);
        if (!e->solid) fprintf(f, "%sstyle=dashed, color=\"#888888\", class=\"stop\"", sep ? ", " : ""), sep = true;
        fputs("];\n", f);
        if (!g->o.backward || !e->grad) continue;
        for (int L = 0; L < nl; L++)
            if (e->grad >> L & 1)
                fprintf(f, "  %s -> %s [dir=back, class=\"grad\", color=\"%s\", penwidth=1.6, arrowsize=0.8];\n", a, b,
                        grad_colors[L % N_GRAD_COLORS]);
    }
}

rl_status rl_recipe_graph_write(const rl_recipe_program *p, FILE *f, const rl_recipe_graph_opts *o,
                                char *err, size_t n) {
    if (!p || !f) {
        if (err && n) snprintf(err, n, "rl_recipe_graph_write: no program or no file");
        return RL_ERR_ARG;
    }
    graph g;
    memset(&g, 0, sizeof g);
    g.p = p;
    g.f = f;
    if (o) g.o = *o;
    build_boxes(&g);
    build_edges(&g);
    /* online: the rollout values (and inputs, which the rollout copies too)
     * that the loss phase reads */
    for (int i = 0; i < g.n_edges && p->kind == RL_RECIPE_ONLINE; i++) {
        gnode *from = &g.nodes[g.edges[i].from];
        if ((from->phase == PH_ROLLOUT || from->kind == GK_INPUT) && box_phase(&g, g.edges[i].to) == PH_LOSS)
            from->kept = true;
    }
    expander ex;
    memset(&ex, 0, sizeof ex);
    if (g.o.expand)
        for (int b = 0; b < g.n_nodes; b++)
            if (g.nodes[b].kind == GK_CALL) expand_call(&g, &ex, &g.nodes[b]);
    expander_free(p, &ex);

    fputs("digraph recipe {\n", f);
    fputs("  graph [rankdir=TB, newrank=true, fontname=\"Helvetica\", fontsize=14, nodesep=0.25, ranksep=0.35, "
          "labelloc=t, label=<",
          f);
    if (g.o.title && g.o.title[0]) put_html(f, g.o.title, strlen(g.o.title));
    else {
        fputs("<b>", f);
        put_html(f, p->name, strlen(p->name));
        fprintf(f, "</b> : %s", rl_recipe_kind_name(p->kind));
    }
    fputs(">];\n", f);
    fputs("  node [fontname=\"Helvetica\", fontsize=10, margin=\"0.1,0.04\"];\n", f);
    fputs("  edge [fontname=\"Helvetica\", color=\"#555555\", arrowsize=0.7];\n", f);
    write_hypers(&g);
    for (int b = 0; b < g.n_nodes; b++)
        if (box_phase(&g, b) == PH_DECL) write_box(&g, b, "  ");
    write_phase(&g, PH_ROLLOUT);
    write_phase(&g, PH_LOSS);
    write_phase_order(&g);
    write_legend(&g);
    write_edges(&g);
    fputs("}\n", f);
    for (int b = 0; b < g.n_nodes; b++) free(g.nodes[b].ops);
    free(g.nodes);
    free(g.edges);
    free(g.grp);
    if (fflush(f) != 0 || ferror(f)) {
        if (err && n) snprintf(err, n, "writing the picture failed: %s", strerror(errno));
        return RL_ERR_IO;
    }
    return RL_OK;
}

/* ---- files and Graphviz ------------------------------------------------------------------------ */

/* Runs `dot -T<fmt> -o out in`; stderr is collected for the message. */
static rl_status run_dot(const char *fmt, const char *in, const char *out, char *err, size_t n) {
    const char *dot = getenv("RLHF_DOT");
    if (!dot || !dot[0]) dot = "dot";
    int pfd[2];
    if (pipe(pfd) != 0) return rl_errf(err, n, RL_ERR_IO, "cannot run Graphviz: pipe: %s", strerror(errno));
    char tflag[16];
    snprintf(tflag, sizeof tflag, "-T%s", fmt);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]), close(pfd[1]);
        return rl_errf(err, n, RL_ERR_IO, "cannot run Graphviz: fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(pfd[1], 2);
        close(pfd[0]), close(pfd[1]);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        execlp(dot, dot, tflag, "-o", out, in, (char *)NULL);
        /* exec failed: tell the parent why through the pipe */
        dprintf(2, "\001exec:%d", errno);
        _exit(127);
    }
    close(pfd[1]);
    char msg[2048];
    size_t k = 0;
    ssize_t got;
    while ((got = read(pfd[0], msg + k, sizeof msg - 1 - k)) > 0 || (got < 0 && errno == EINTR))
        if (got > 0) k += (size_t)got;
    msg[k] = 0;
    close(pfd[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (strncmp(msg, "\001exec:", 6) == 0) {
        int e = atoi(msg + 6);
        if (e == ENOENT)
            return rl_errf(err, n, RL_ERR_IO,
                        "Graphviz's `dot` was not found (%s%s): install the graphviz package (apt-get install "
                        "graphviz, dnf install graphviz, brew install graphviz), or write a .dot file instead",
                        strcmp(dot, "dot") == 0 ? "looked for `dot` on PATH" : "RLHF_DOT=", strcmp(dot, "dot") == 0 ? "" : dot);
        return rl_errf(err, n, RL_ERR_IO, "cannot run Graphviz's `%s`: %s", dot, strerror(e));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        while (k > 0 && (msg[k - 1] == '\n' || msg[k - 1] == ' ')) msg[--k] = 0;
        return rl_errf(err, n, RL_ERR_IO, "Graphviz's `%s %s` failed%s%s", dot, tflag, k ? ": " : "", msg);
    }
    return RL_OK;
}

/* A temporary file next to path (same file system, so rename() works). */
static int make_temp(const char *path, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.tmp.XXXXXX%s", path, suffix);
    int fd = mkstemps(buf, (int)strlen(suffix));
    if (fd >= 0) fchmod(fd, 0644); /* a picture is not a secret */
    return fd;
}

rl_status rl_recipe_graph_save(const rl_recipe_program *p, const char *path, const rl_recipe_graph_opts *o,
                               char *err, size_t n) {
    if (!p || !path || !path[0]) return rl_errf(err, n, RL_ERR_ARG, "no output file was given");
    const char *dotp = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    const char *ext = dotp && (!slash || dotp > slash) ? dotp + 1 : "";
    const char *fmt = NULL;
    if (strcmp(ext, "svg") == 0) fmt = "svg";
    else if (strcmp(ext, "png") == 0) fmt = "png";
    else if (strcmp(ext, "dot") != 0 && strcmp(ext, "gv") != 0)
        return rl_errf(err, n, RL_ERR_ARG, "cannot tell the format of '%s' from its extension '%s%s': write FILE.svg, "
                                        "FILE.png or FILE.dot", path, ext[0] ? "." : "", ext);
    /* the picture (or the DOT file) is written whole or not at all */
    rl_atomic_file out;
    FILE *f = rl_atomic_open(&out, path, err, n);
    if (!f) return RL_ERR_IO;
    if (!fmt) {
        rl_status st = rl_recipe_graph_write(p, f, o, err, n);
        if (st != RL_OK) {
            rl_atomic_abort(&out);
            return st;
        }
        return rl_atomic_commit(&out, err, n);
    }
    /* Graphviz reads the DOT source from a scratch file and writes the
     * picture into the temporary, which is then renamed onto path */
    rl_atomic_close(&out);
    /* on the stack: a child that fails to exec Graphviz exits holding no heap block */
    char tdot[sizeof out.path + 32];
    rl_status st = RL_OK;
    int fd = make_temp(path, ".dot", tdot, sizeof tdot);
    FILE *src = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!src) {
        st = rl_errf(err, n, RL_ERR_IO, "cannot write next to '%s': %s", path, strerror(errno));
        if (fd >= 0) close(fd), unlink(tdot);
        rl_atomic_abort(&out);
        return st;
    }
    st = rl_recipe_graph_write(p, src, o, err, n);
    if (fclose(src) != 0 && st == RL_OK) st = rl_errf(err, n, RL_ERR_IO, "writing '%s' failed: %s", tdot, strerror(errno));
    if (st == RL_OK) st = run_dot(fmt, tdot, out.tmp, err, n);
    unlink(tdot);
    if (st != RL_OK) {
        rl_atomic_abort(&out);
        return st;
    }
    return rl_atomic_commit(&out, err, n);
}
