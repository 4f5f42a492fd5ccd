/* tools/cmd_plot.c - `rlhf plot RUN_DIR`: draws a training run's
 * metrics.jsonl with gnuplot into RUN_DIR/metrics.png and metrics.svg, one
 * panel per metric (recipes/runner/runner_plot.c does the work).
 */
#include "cli.h"

#include "rl_runner.h"

#include <string.h>

int rl_cmd_plot(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        int help = argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
        fprintf(help ? stdout : stderr,
                "usage: rlhf plot RUN_DIR\n"
                "Draws RUN_DIR/metrics.jsonl (written by rlhf train) into RUN_DIR/metrics.png and\n"
                "RUN_DIR/metrics.svg, one panel per metric; data and gnuplot script in RUN_DIR/plot/.\n");
        return help ? 0 : 2;
    }
    char err[8192];
    if (rl_runner_plot(argv[1], err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf plot: %s\n", err);
        return 1;
    }
    printf("rlhf plot: wrote %s/metrics.png and %s/metrics.svg\n", argv[1], argv[1]);
    return 0;
}
