/* recipes/views/rl_recipe_graph.h - `rlhf graph`: a compiled recipe drawn as a
 * Graphviz picture of its dataflow (recipes/views/graph.c).
 *
 * Folder recipes/views/: pictures and gradient checks of compiled recipes;
 * may include bind/ and below. Start here, then rl_recipe_gradcheck.h.
 *
 * What the picture shows (docs/recipes.md, "Pictures of recipes"):
 *   - one box per expression: each assignment, loss and logged metric, and
 *     each call of a model, labelled with its source text and its symbolic
 *     shape ("f32[B,T]"); constants and hypers are folded into the text
 *     (their values are listed in a note), token fields label the edges;
 *   - model calls inside one cluster per model and phase, coloured by
 *     trainable (orange) or frozen (blue); with `expand`, each call is drawn
 *     as the ops it runs on the shape check's tiny GPT-2;
 *   - the rollout and loss phases as clusters, the loss phase under the
 *     rollout; the rollout values (and inputs) the loss phase reads drawn
 *     again as dashed boxes in a row at its top (they are constants there);
 *   - data inputs grey cylinders, params orange, losses red with a double
 *     border, metrics green notes together under the losses (a metric that
 *     only names a value is a note on that value's box);
 *   - an edge whose every path crosses stop() dashed;
 *   - with `backward`, the gradient flow: an arrow back along each edge that
 *     carries a loss's gradient to the trainables it trains (the audit's
 *     reach sets), one colour per loss.
 */
#ifndef RL_RECIPE_GRAPH_H
#define RL_RECIPE_GRAPH_H

#include <stddef.h>
#include <stdio.h>

#include "rl_recipe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_recipe_graph_opts {
    int expand;        /* draw each model call as its ops (needs the program's model functions) */
    int backward;      /* add the gradient flow of each loss */
    const char *title; /* NULL: "NAME (KIND)" */
} rl_recipe_graph_opts;

/* The DOT colours and classes, for programs (and tests) that read pictures back.
 * Nodes carry an SVG class: input, param, expr, call, loss, metric, kept,
 * op (an op of an expanded call), hypers, legend; clusters: phase rollout,
 * phase loss, model trainable, model frozen, expanded, log; edges: stop
 * (dashed), grad (--backward), kept, order (invisible). */
#define RL_GRAPH_FILL_DATA      "#e0e0e0" /* data inputs */
#define RL_GRAPH_FILL_PARAM     "#ffd8a8" /* trainable params */
#define RL_GRAPH_FILL_TRAINABLE "#fff2cc" /* clusters of trainable models */
#define RL_GRAPH_FILL_FROZEN    "#e8eef7" /* clusters of frozen models */
#define RL_GRAPH_FILL_LOSS      "#f8cecc"
#define RL_GRAPH_COLOR_LOSS     "#d62728"
#define RL_GRAPH_FILL_METRIC    "#d5e8d4"
#define RL_GRAPH_FILL_EXPR      "#dae8fc" /* loss-phase expressions */
#define RL_GRAPH_FILL_ROLLOUT   "#ffffff" /* rollout expressions */

/* Writes the DOT text of p to f. p must come from rl_recipe_compile with
 * the shape check on (shapes are left out otherwise). Returns RL_OK, or an
 * error with a message in err (n bytes; may be NULL). */
rl_status rl_recipe_graph_write(const rl_recipe_program *p, FILE *f, const rl_recipe_graph_opts *o,
                                char *err, size_t n);

/* Writes the picture to path, by its extension: .dot (the DOT text), .svg or
 * .png (rendered by Graphviz's `dot`, found on PATH, or at $RLHF_DOT). The
 * file is written next to path under a temporary name and renamed, so a
 * reader never sees half a picture. Errors (unknown extension, `dot`
 * missing, dot failing, I/O) return a status with a message in err. */
rl_status rl_recipe_graph_save(const rl_recipe_program *p, const char *path, const rl_recipe_graph_opts *o,
                               char *err, size_t n);

#ifdef __cplusplus
}
#endif
#endif
