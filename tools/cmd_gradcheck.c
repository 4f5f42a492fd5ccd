/* tools/cmd_gradcheck.c - `rlhf gradcheck --op NAME | --all`: checks every
 * case of an op's backward against central differences in f64 and its f32
 * forward/backward against f64, printing the worst errors and PASS/FAIL.
 */
#include "cli.h"

#include "../engine/rl_gradcheck.h"
#include "../ops/rl_ops.h"

#include <stdlib.h>
#include <string.h>

static void rl_gradcheck_usage(FILE *f) {
    fprintf(f,
            "usage: rlhf gradcheck --op NAME | --all [--seed N] [--verbose]\n"
            "  --op NAME   check one op of the op table (see --list)\n"
            "  --all       check every op\n"
            "  --list      print the op names\n"
            "  --seed N    seed of the random inputs (default 1234)\n");
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

int rl_cmd_gradcheck(int argc, char **argv) {
    rl_gc_opts opts;
    rl_gc_opts_default(&opts);
    const char *op_name = NULL;
    int all = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--op") == 0 && i + 1 < argc) op_name = argv[++i];
        else if (strcmp(argv[i], "--all") == 0) all = 1;
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) opts.seed = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--verbose") == 0) opts.verbose = 1;
        else if (strcmp(argv[i], "--list") == 0) {
            for (int k = 0; k < RL_OP_COUNT; k++) printf("%s\n", rl_op_table[k].name);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0) {
            rl_gradcheck_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "rlhf gradcheck: unknown argument '%s'\n", argv[i]);
            rl_gradcheck_usage(stderr);
            return 2;
        }
    }
    if (!op_name && !all) {
        rl_gradcheck_usage(stderr);
        return 2;
    }
    int op = -1;
    if (op_name) {
        op = rl_op_find(op_name);
        if (op < 0) {
            fprintf(stderr, "rlhf gradcheck: no op named '%s' (rlhf gradcheck --list shows them)\n",
                    op_name);
            return 2;
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
    return passed == total ? 0 : 1;
}
