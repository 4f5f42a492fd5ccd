/* recipes/runner/rl_pipeline.h - pipeline files: a list of rlhf commands
 * that chain the stages of RLHF (data -> SFT -> reward and cost models ->
 * PPO-KL -> Safe RLHF -> evaluation), the results table they end with, and
 * the aims checked at the end. `rlhf pipeline` (tools/cmd_pipeline.c) parses
 * its arguments and calls these; recipes/pipelines/safe_rlhf_demo.pipeline is
 * the main example and docs/recipes.md#pipelines the manual.
 *
 *   # comment                   from '#' at a line's start or after a blank
 *   let NAME = VALUE            a variable; ${NAME} is replaced in later lines;
 *                               a --set NAME=VALUE override wins over the file
 *   step NAME: COMMAND ARGS...  an rlhf command (train, eval, data, plot, graph, ...)
 *                               or the built-in `table` (below); "quotes" group words
 *   aim LEFT OP RIGHT           checked at the end; OP is < <= > >= between blanks;
 *                               each side is NUMBER, FILE.json:KEY or NUMBER * FILE.json:KEY
 *
 *   char err[8192];
 *   rl_pipeline *p = rl_pipeline_load("x.pipeline", sets, n_sets, err, sizeof err);
 *   if (!p) fputs(err, stderr);      // x.pipeline:3:14: error: undefined variable 'nope'
 *                                    // step a: info ${nope}
 *                                    //              ^~~~~~~
 *                                    // hint: define it above with `let nope = ...`
 *   rl_pipeline_run_opts o = {.program = "/usr/bin/rlhf", .out = stdout};
 *   int code = rl_pipeline_run(p, &o, err, sizeof err);
 *
 * Errors in a file are reported as recipes' are (rl_recipe_format_diag):
 * FILE:LINE:COL, the source line, a caret under the place, and a hint.
 *
 * Running: steps run in order, each as a child process of o->program (the
 * rlhf binary), so a crash or a leak in one step cannot disturb the next.
 * The variable `out` (required) is the pipeline's directory: a finished
 * step leaves out/pipeline/NAME.done and is skipped when the pipeline runs
 * again (but `table` steps, which are cheap, always print again); a `train`
 * step whose --out holds a checkpoint continues with --resume. o->from
 * reruns from that step on; o->only runs one step and checks no aims.
 *
 *   table --out FILE.md [--policy LABEL=EVAL.json ...] [--score LABEL=EVAL.json ...]
 * prints (and writes as Markdown) one row per policy: helpfulness, benign
 * helpfulness, arithmetic accuracy, harmful-compliance rate, needless-refusal
 * rate, KL to the reference; and one row per reward/cost model: held-out
 * pairs, accuracy against the labels and the oracle, and the cost model's
 * sign accuracy. The JSON files are what rl_judge_policy / rl_judge_scores
 * (`rlhf eval --json`) write.
 */
#ifndef RL_PIPELINE_H
#define RL_PIPELINE_H

#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_pipeline rl_pipeline;

/* Reads and checks the pipeline file at path; sets holds n_sets overrides
 * "NAME=VALUE" (each must name a variable the file defines). NULL with the
 * diagnostic (one or more lines, ending in '\n') in err. */
rl_pipeline *rl_pipeline_load(const char *path, const char *const *sets, int n_sets, char *err, size_t n);
void rl_pipeline_free(rl_pipeline *p);

int rl_pipeline_n_steps(const rl_pipeline *p);
const char *rl_pipeline_step_name(const rl_pipeline *p, int i);
/* The step's command with its variables expanded. */
const char *rl_pipeline_step_command(const rl_pipeline *p, int i);
int rl_pipeline_n_aims(const rl_pipeline *p);
const char *rl_pipeline_aim(const rl_pipeline *p, int i);
/* A variable's value (after overrides), or NULL. */
const char *rl_pipeline_var(const rl_pipeline *p, const char *name);
/* Prints the expanded steps and aims, one per line. */
void rl_pipeline_list(const rl_pipeline *p, FILE *out);

typedef struct rl_pipeline_run_opts {
    const char *program; /* the rlhf binary that runs each step */
    const char *from;    /* NULL, or the first step to (re)run */
    const char *only;    /* NULL, or the one step to run */
    int strict;          /* an aim not met makes the result 3 */
    FILE *out;           /* progress, the table and the aims (stdout) */
} rl_pipeline_run_opts;

/* Runs the steps and checks the aims. Returns 0 (done), 1 (a step failed
 * or a file could not be written), 2 (bad options: an unknown step) or 3
 * (strict, and an aim was not met); err says why for 1 and 2. */
int rl_pipeline_run(const rl_pipeline *p, const rl_pipeline_run_opts *o, char *err, size_t n);

/* Checks the aims, printing each to out; returns how many were not met (an
 * aim that cannot be read counts as not met). */
int rl_pipeline_check_aims(const rl_pipeline *p, FILE *out);

/* The built-in `table` step: argv[0] is "table". Returns 0, 1 (a file could
 * not be read or written; the other rows are still printed) or 2 (bad
 * arguments), with the first problem in err. */
int rl_pipeline_table(int argc, char **argv, FILE *out, char *err, size_t n);

#ifdef __cplusplus
}
#endif
#endif
