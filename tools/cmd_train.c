/* tools/cmd_train.c - `rlhf train RECIPE ...`: runs a recipe's training
 * stage with the stage runner (recipes/runner/rl_runner.h documents the kinds, the
 * update order, the files and the checkpoint layout). Exit status: 0 done,
 * 1 the run failed, 2 bad arguments.
 */
#include "cli.h"

#include "rl_runner.h"

#include <stdlib.h>

int rl_cmd_train(int argc, char **argv) {
    rl_runner_cfg c;
    rl_runner_cfg_init(&c);
    /* messages can hold several recipe diagnostics */
    static char err[16384];
    if (rl_runner_parse_args(&c, argc, argv, err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf train: %s\n\n", err);
        rl_runner_usage(stderr);
        return 2;
    }
    if (c.help) {
        rl_runner_usage(stdout);
        return 0;
    }
    rl_blas_warn_generic_core(stderr);
    rl_runner_result res;
    if (rl_runner_run(&c, &res, err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf train: %s\n", err);
        return 1;
    }
    return 0;
}
