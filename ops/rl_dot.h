/* ops/rl_dot.h - writes the tape as a Graphviz picture (DOT language), to
 * see what a step computed: `dot -Tsvg step.dot -o step.svg`.
 *
 * One box per recorded op: "name | dtype [shape] | symbol", where name is the
 * output tensor's name, or the op's name and tape index ("sigmoid#2"). One box
 * per leaf input (a tensor no recorded op produced): "name | dtype [shape] |
 * kind", kind being param, tensor, const or value (made by an op that was not
 * recorded); an unnamed leaf is called "<kind> l<k>" (k-th leaf). Edges go from inputs to the
 * ops that read them, labelled with the input's position when an op has more
 * than one. Parameters are filled orange; data and constants grey. A tensor
 * holding a gradient gets a red border and a "grad dtype [shape]" line. Ops
 * recorded while running backward (with rl_ctx_set_create_graph(ctx, 1)) are
 * filled purple with a dashed border inside a cluster labelled "backward".
 */
#ifndef RL_DOT_H
#define RL_DOT_H

#include <stddef.h>
#include <stdio.h>

#include "rl_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The colours, for programs (and tests) that read the picture back. */
#define RL_DOT_FILL_OP        "#dae8fc" /* forward op */
#define RL_DOT_FILL_BACKWARD  "#e1d5e7" /* op recorded during backward */
#define RL_DOT_BORDER_BACKWARD "#9673a6"
#define RL_DOT_FILL_PARAM     "#ffd8a8" /* RL_TF_PARAM leaf */
#define RL_DOT_FILL_TRAINABLE "#fff2cc" /* other persistent leaf that requires a gradient */
#define RL_DOT_FILL_DATA      "#e0e0e0" /* constants, data, values made without a gradient */
#define RL_DOT_BORDER_GRAD    "#d62728" /* the tensor holds a gradient */

typedef struct rl_dot_opts {
    const char *title;  /* graph label; NULL or "" for none */
    int skip_backward;  /* leave out ops recorded during backward (and leaves only they read) */
} rl_dot_opts;

/* Where a piece of text goes in a DOT file, which decides its escaping. */
typedef enum {
    RL_DOT_TEXT_QUOTED = 0, /* inside "...": \" and \\ escaped */
    RL_DOT_TEXT_RECORD,     /* a record label's field: also \{ \} \| \< \> */
    RL_DOT_TEXT_HTML,       /* inside an HTML-like label <...>: &lt; &gt; &quot; */
} rl_dot_text;

/* Writes at most n bytes of s (up to a NUL) as DOT text of the given kind.
 * In every kind & becomes &amp; (Graphviz reads entities in labels), and
 * control characters and invalid UTF-8 (which Graphviz rejects or garbles;
 * names may be cut mid-character) become '?'. The one escaper of the
 * project: the tape pictures here and the recipe pictures of
 * recipes/views/graph.c both use it. */
void rl_dot_put_text(FILE *f, const char *s, size_t n, rl_dot_text kind);

/* Writes the current tape (since the last rl_ctx_reset) to f. opts may be
 * NULL (no title, backward ops included). Returns RL_OK, or an error (also
 * recorded in ctx) when f is NULL, memory runs out, or writing fails. */
rl_status rl_dot_write(rl_ctx *ctx, FILE *f, const rl_dot_opts *opts);

/* As rl_dot_write, into path: writes a temporary file in the same directory
 * and renames it over path, so a reader never sees a half-written picture. */
rl_status rl_dot_write_file(rl_ctx *ctx, const char *path, const rl_dot_opts *opts);

#ifdef __cplusplus
}
#endif
#endif
