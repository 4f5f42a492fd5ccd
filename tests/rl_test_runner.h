/* tests/rl_test_runner.h - runs the stage runner as `rlhf train ARGS... --quiet`
 * does, in process, for the suites that train (test_train.c, test_model.c).
 */
#ifndef RL_TEST_RUNNER_H
#define RL_TEST_RUNNER_H

#include <stdarg.h>

#include "rl_runner.h"

/* The argument list ends with NULL; err receives the runner's message. */
static inline rl_status rl_test_train(rl_runner_result *res, char *err, size_t n, ...) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "train";
    va_list ap;
    va_start(ap, n);
    for (char *a; argc < 62 && (a = va_arg(ap, char *)) != NULL;) argv[argc++] = a;
    va_end(ap);
    argv[argc++] = "--quiet";
    rl_runner_cfg c;
    rl_runner_cfg_init(&c);
    rl_status st = rl_runner_parse_args(&c, argc, argv, err, n);
    if (st) return st;
    return rl_runner_run(&c, res, err, n);
}

#endif
