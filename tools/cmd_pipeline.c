/* tools/cmd_pipeline.c - `rlhf pipeline FILE`: the argument parser of
 * pipeline files (recipes/runner/rl_pipeline.h has the format and the code;
 * docs/recipes.md#pipelines the manual). Steps run as child processes of
 * this same binary.
 */
#include "cli.h"

#include "rl_pipeline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void pl_usage(FILE *f) {
    fprintf(f, "usage: rlhf pipeline FILE [--set NAME=VALUE ...] [--from STEP] [--only STEP] [--strict] [--list]\n"
               "Runs the steps of a pipeline file (recipes/pipelines/safe_rlhf_demo.pipeline) in order, each an rlhf\n"
               "command, then checks its aims. Finished steps leave OUT/pipeline/STEP.done and are skipped\n"
               "when the pipeline runs again (--from STEP reruns from STEP on); an interrupted train step\n"
               "resumes from its checkpoint. --set overrides a `let` variable; --strict exits with status 3\n"
               "when an aim is not met; --list prints the expanded steps without running them.\n"
               "       rlhf pipeline table --out FILE.md --policy LABEL=EVAL.json ... --score LABEL=EVAL.json ...\n");
}

/* Prints a message from the library: diagnostics already end in a newline. */
static void pl_print_error(const char *err) {
    size_t n = strlen(err);
    fprintf(stderr, "%s%s", err, n && err[n - 1] == '\n' ? "" : "\n");
}

int rl_cmd_pipeline(int argc, char **argv) {
    char err[8192] = "";
    if (argc >= 2 && strcmp(argv[1], "table") == 0) {
        int code = rl_pipeline_table(argc - 1, argv + 1, stdout, err, sizeof err);
        if (code) pl_print_error(err);
        return code;
    }
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        pl_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char **sets = calloc((size_t)argc, sizeof *sets);
    if (!sets) return 1;
    int n_sets = 0, list = 0, rc = 0;
    char self[4096];
    rl_pipeline_run_opts o = {.program = self, .out = stdout};
    rl_pipeline *p = NULL;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) sets[n_sets++] = argv[++i];
        else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) o.from = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) o.only = argv[++i];
        else if (strcmp(argv[i], "--strict") == 0) o.strict = 1;
        else if (strcmp(argv[i], "--list") == 0) list = 1;
        else {
            fprintf(stderr, "rlhf pipeline: unknown option '%s'\n", argv[i]);
            pl_usage(stderr);
            rc = 2;
            goto done;
        }
    }
    if (!(p = rl_pipeline_load(argv[1], sets, n_sets, err, sizeof err))) {
        pl_print_error(err);
        rc = 2;
        goto done;
    }
    if (list) {
        rl_pipeline_list(p, stdout);
        goto done;
    }
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        fprintf(stderr, "rlhf pipeline: cannot find this program (/proc/self/exe): %s\n", strerror(errno));
        rc = 1;
        goto done;
    }
    self[sl] = 0;
    rc = rl_pipeline_run(p, &o, err, sizeof err);
    if (rc == 1 || rc == 2) pl_print_error(err);
done:
    rl_pipeline_free(p);
    free(sets);
    return rc;
}
