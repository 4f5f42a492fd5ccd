/* tools/cmd_gradcheck.c - `rlhf gradcheck`: gradients against central
 * differences in f64.
 *   rlhf gradcheck --op NAME | --all   every case of an op's backward, and its
 *                                      f32 forward/backward against f64
 *   rlhf gradcheck RECIPE [--set k=v]  every loss of a recipe (a file or a
 *                                      built-in name) w.r.t. every trainable it
 *                                      trains and every float input it reaches,
 *                                      with tiny f64 models (recipes/views/gradcheck.c)
 *   rlhf gradcheck --recipes           every built-in recipe
 * Prints the worst errors per op or tensor and PASS/FAIL; exit status 1 when
 * anything fails, 2 on a usage error.
 */
#include "cli.h"

#include "rl_gradcheck.h"
#include "rl_ops.h"
#include "rl_recipe.h"
#include "rl_recipe_gradcheck.h"

#include <stdlib.h>
#include <string.h>

static void rl_gradcheck_usage(FILE *f) {
    char names[600];
    fprintf(f,
            "usage: rlhf gradcheck --op NAME | --all | --recipes | RECIPE [options]\n"
            "  --op NAME     check one op of the op table (see --list)\n"
            "  --all         check every op\n"
            "  --list        print the op names and the built-in recipes\n"
            "  RECIPE        check a recipe: a .recipe file or a built-in name:\n"
            "                %s\n"
            "  --recipes     check every built-in recipe\n"
            "  --set K=V     override a recipe hyper (repeatable)\n"
            "  --elems N     recipes: elements sampled per model tensor (default 6)\n"
            "  --batch N     recipes: rows of the made-up batch (default 3)\n"
            "  --preset P    recipes: the models' shape: tiny (GPT-2, default) or llama-tiny (Llama family)\n"
            "  --splits      recipes: also check that micro-batches (every size dividing the batch)\n"
            "                accumulate to the batch's loss and gradients, and say which losses do not\n"
            "  --seed N      seed of the random inputs (default 1234 for ops, 1 for recipes)\n"
            "  --verbose     print each failing element\n",
            rl_recipe_builtin_list(names, sizeof names));
}

static int rl_gradcheck_one(rl_op op, const rl_gc_opts *opts) {
    rl_gc_result r;
    rl_gradcheck_op(op, opts, &r);
    const rl_gc_cases *cs = rl_op_gc_cases[op];
    printf("%-20s %5d %8d   %9.2e %9.2e   %9.2e   %s\n", rl_op_table[op].name, cs ? cs->n : 0,
           r.n_checked, r.max_abs, r.max_rel, r.f32_max_err, r.passed ? "PASS" : "FAIL");
    if (!r.passed) printf("    %s\n", r.msg);
    return r.passed;
}

/* One recipe: 1 passed, 0 failed or could not run (after a message), -1 no
 * such recipe. */
static int rl_gradcheck_recipe(const char *arg, char **sets, int n_sets, const rl_recipe_gc_opts *go) {
    char path[4096];
    rl_status rs = rl_recipe_resolve(arg, path, sizeof path);
    if (rs != RL_OK) {
        if (rs == RL_ERR_IO)
            fprintf(stderr, "rlhf gradcheck: the built-in recipe '%s' was not found (set RLHF_RECIPE_DIR to the "
                            "folder of the .recipe files)\n", arg);
        else
            fprintf(stderr, "rlhf gradcheck: '%s' is neither a recipe file nor a built-in recipe (rlhf "
                            "gradcheck --list shows them)\n", arg);
        return -1;
    }
    const char *err = NULL;
    rl_recipe *r = rl_recipe_load(path, &err);
    if (!r) {
        fprintf(stderr, "rlhf gradcheck: cannot read %s: %s\n", path, err);
        return 0;
    }
    for (int i = 0; i < n_sets; i++)
        if (rl_recipe_set_arg(r, sets[i]) != RL_OK) {
            rl_recipe_print_diags(r, stderr);
            rl_recipe_free(r);
            return 0;
        }
    rl_recipe_gc_result res;
    rl_status st = rl_recipe_gradcheck(r, go, &res);
    int ok = 0;
    if (st != RL_OK) {
        if (rl_recipe_n_errors(r)) rl_recipe_print_diags(r, stderr);
        fprintf(stderr, "rlhf gradcheck: %s: %s\n", path, res.msg);
    } else {
        ok = res.n_failed == 0;
        if (!ok) printf("  first failure: %s\n", res.msg);
    }
    rl_recipe_free(r);
    return ok;
}

int rl_cmd_gradcheck(int argc, char **argv) {
    rl_gc_opts opts;
    rl_gc_opts_default(&opts);
    rl_recipe_gc_opts go;
    rl_recipe_gc_opts_default(&go);
    go.out = stdout;
    const char *op_name = NULL, *recipe = NULL;
    int all = 0, recipes = 0, n_sets = 0;
    char **sets = calloc((size_t)argc + 1, sizeof(char *));
    if (!sets) return 2;
    int status = 2;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--op") == 0 && i + 1 < argc) op_name = argv[++i];
        else if (strcmp(argv[i], "--all") == 0) all = 1;
        else if (strcmp(argv[i], "--recipes") == 0) recipes = 1;
        else if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) sets[n_sets++] = argv[++i];
        else if (strcmp(argv[i], "--elems") == 0 && i + 1 < argc) go.model_elems = atoi(argv[++i]);
        else if (strcmp(argv[i], "--splits") == 0) go.splits = 1;
        else if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) go.preset = argv[++i];
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc) go.batch = atoll(argv[++i]);
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
            opts.seed = go.seed = strtoull(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--verbose") == 0) opts.verbose = go.verbose = 1;
        else if (strcmp(argv[i], "--list") == 0) {
            for (int k = 0; k < RL_OP_COUNT; k++) printf("%s\n", rl_op_table[k].name);
            printf("\nbuilt-in recipes:");
            for (int k = 0; k < rl_recipe_n_builtins(); k++) printf(" %s", rl_recipe_builtin_name(k));
            printf("\n");
            status = 0;
            goto out;
        } else if (strcmp(argv[i], "--help") == 0) {
            rl_gradcheck_usage(stdout);
            status = 0;
            goto out;
        } else if (argv[i][0] != '-' && !recipe) {
            recipe = argv[i];
        } else {
            fprintf(stderr, "rlhf gradcheck: unknown argument '%s'\n", argv[i]);
            rl_gradcheck_usage(stderr);
            goto out;
        }
    }
    if ((op_name || all) + (recipe != NULL) + recipes != 1 || (n_sets && !recipe && !recipes) ||
        go.model_elems < 1) {
        rl_gradcheck_usage(stderr);
        goto out;
    }
    if (recipe || recipes) {
        int passed = 0, total = 0, missing = 0;
        int n = recipe ? 1 : rl_recipe_n_builtins();
        for (int k = 0; k < n; k++) {
            if (k) printf("\n");
            int r = rl_gradcheck_recipe(recipe ? recipe : rl_recipe_builtin_name(k), sets, n_sets, &go);
            total++;
            passed += r == 1;
            missing += r < 0;
        }
        if (recipes) printf("\n%d recipes passed, %d failed\n", passed, total - passed);
        status = missing && recipe ? 2 : passed == total ? 0 : 1;
        goto out;
    }
    int op = -1;
    if (op_name) {
        op = rl_op_find(op_name);
        if (op < 0) {
            fprintf(stderr, "rlhf gradcheck: no op named '%s' (rlhf gradcheck --list shows them)\n",
                    op_name);
            goto out;
        }
    }
    printf("float64 central differences (h %.0e, atol %.0e, rtol %.0e), seed %llu\n", opts.h,
           opts.atol, opts.rtol, (unsigned long long)opts.seed);
    printf("%-20s %5s %8s   %9s %9s   %9s   %s\n", "op", "cases", "checked", "max abs", "max rel",
           "f32 err", "result");
    int passed = 0, total = 0;
    for (int k = 0; k < RL_OP_COUNT; k++) {
        if (op >= 0 && k != op) continue;
        total++;
        passed += rl_gradcheck_one((rl_op)k, &opts);
    }
    printf("%d passed, %d failed\n", passed, total - passed);
    status = passed == total ? 0 : 1;
out:
    free(sets);
    return status;
}
