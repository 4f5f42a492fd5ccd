/* tools/cmd_graph.c - `rlhf graph RECIPE -o FILE.(svg|png|dot) [--expand]
 * [--backward] [--set k=v]...`: checks a recipe (the shape check included,
 * so that boxes carry symbolic shapes) and draws its dataflow with
 * recipes/views/graph.c. Nothing is trained and no data is read.
 */
#include "cli.h"

#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_recipe_graph.h"

#include <stdlib.h>
#include <string.h>

static void rl_graph_usage(FILE *f) {
    fprintf(f,
            "usage: rlhf graph RECIPE -o FILE.svg|FILE.png|FILE.dot [--expand] [--backward] [--set k=v]...\n"
            "  -o FILE         the picture; its extension picks the format (.svg and .png run Graphviz's dot)\n"
            "  --expand        draw each model call as the ops it runs (on the shape check's tiny GPT-2)\n"
            "  --backward      add the gradient flow: from each loss back to the trainables it trains\n"
            "  --set k=v       override a hyper (as for rlhf train)\n"
            "  --title TEXT    the picture's title (default: the recipe's name and kind)\n");
}

int rl_cmd_graph(int argc, char **argv) {
    const char *recipe = NULL, *out = NULL, *title = NULL;
    int expand = 0, backward = 0;
    const char **sets = calloc((size_t)argc + 1, sizeof(char *));
    int n_sets = 0;
    if (!sets) return 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((strcmp(a, "-o") == 0 || strcmp(a, "--out") == 0) && i + 1 < argc) out = argv[++i];
        else if (strcmp(a, "--expand") == 0) expand = 1;
        else if (strcmp(a, "--backward") == 0) backward = 1;
        else if (strcmp(a, "--set") == 0 && i + 1 < argc) sets[n_sets++] = argv[++i];
        else if (strncmp(a, "--set=", 6) == 0) sets[n_sets++] = a + 6;
        else if (strcmp(a, "--title") == 0 && i + 1 < argc) title = argv[++i];
        else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            rl_graph_usage(stdout);
            free(sets);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "rlhf graph: unknown or incomplete option '%s'\n", a);
            rl_graph_usage(stderr);
            free(sets);
            return 2;
        } else if (!recipe) recipe = a;
        else {
            fprintf(stderr, "rlhf graph: one recipe at a time ('%s' and '%s')\n", recipe, a);
            free(sets);
            return 2;
        }
    }
    if (!recipe || !out) {
        fprintf(stderr, "rlhf graph: %s\n", !recipe ? "which recipe? (rlhf graph RECIPE -o FILE.svg)"
                                                    : "where to? give -o FILE.svg, FILE.png or FILE.dot");
        rl_graph_usage(stderr);
        free(sets);
        return 2;
    }
    const char *why = NULL;
    rl_recipe *r = rl_recipe_load(recipe, &why);
    if (!r) {
        fprintf(stderr, "rlhf graph: cannot read recipe '%s': %s\n", recipe, why ? why : "unknown error");
        free(sets);
        return 1;
    }
    int bad = 0;
    for (int i = 0; i < n_sets; i++) bad |= rl_recipe_set_arg(r, sets[i]) != RL_OK;
    free(sets);
    rl_ctx *ctx = rl_ctx_new(NULL);
    rl_recipe_program *p = NULL;
    if (ctx && !bad) {
        rl_recipe_opts o = rl_recipe_opts_models(NULL);
        o.externs = NULL; /* a picture loads no plug-ins */
        p = rl_recipe_compile(r, ctx, &o);
    }
    int rc = 0;
    if (!p) {
        rl_recipe_print_diags(r, stderr);
        if (!ctx) fprintf(stderr, "rlhf graph: cannot create the CPU context\n");
        rc = 1;
    } else {
        rl_recipe_print_diags(r, stderr); /* warnings */
        rl_recipe_graph_opts go = {.expand = expand, .backward = backward, .title = title};
        char err[2048];
        if (rl_recipe_graph_save(p, out, &go, err, sizeof err) != RL_OK) {
            fprintf(stderr, "rlhf graph: %s\n", err);
            rc = 1;
        } else {
            printf("wrote %s\n", out);
        }
    }
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_ctx_free(ctx);
    return rc;
}
