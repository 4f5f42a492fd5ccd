/* tools/cmd_eval.c - `rlhf eval`: the argument parser of the oracle-judged
 * evaluation (recipes/world/rl_judge.h has the definitions and the code):
 * a policy on held-out prompts, or a reward/cost model on preference pairs.
 */
#include "cli.h"

#include "rl_judge.h"

#include <stdlib.h>
#include <string.h>

static void rl_eval_usage(FILE *f) {
    fprintf(f,
            "usage: rlhf eval --model CKPT --prompts FILE [--ref CKPT] [--samples N] [--temperature T]\n"
            "                 [--greedy] [--max-new N] [--seed S] [--batch B] [--json OUT] [--dump OUT.jsonl]\n"
            "                 [--tokenizer bytes|DIR] [--template STR] [--device cpu|cuda]\n"
            "       rlhf eval --score-model CKPT --pairs hh.jsonl|pku.jsonl [--cost] [--ctx T] [--batch B]\n"
            "                 [--json OUT] [--tokenizer bytes|DIR] [--template STR] [--device cpu|cuda]\n"
            "Prompts may be any data file (prompts, demos, hh, pku); prompts outside the synthetic\n"
            "world are sampled but not judged. --cost evaluates a cost model on PKU pairs.\n");
}

int rl_cmd_eval(int argc, char **argv) {
    rl_judge_opts a;
    rl_judge_opts_init(&a);
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(k, "--help") == 0) {
            rl_eval_usage(stdout);
            return 0;
        }
        if (strcmp(k, "--greedy") == 0) {
            a.greedy = 1;
            continue;
        }
        if (strcmp(k, "--cost") == 0) {
            a.cost = 1;
            continue;
        }
        const char **sp = strcmp(k, "--model") == 0         ? &a.model
                          : strcmp(k, "--ref") == 0         ? &a.ref
                          : strcmp(k, "--prompts") == 0     ? &a.prompts
                          : strcmp(k, "--json") == 0        ? &a.json
                          : strcmp(k, "--dump") == 0        ? &a.dump
                          : strcmp(k, "--tokenizer") == 0   ? &a.tok
                          : strcmp(k, "--template") == 0    ? &a.tmpl
                          : strcmp(k, "--device") == 0      ? &a.device
                          : strcmp(k, "--score-model") == 0 ? &a.score_model
                          : strcmp(k, "--pairs") == 0       ? &a.pairs
                                                            : NULL;
        int64_t *ip = strcmp(k, "--samples") == 0   ? &a.samples
                      : strcmp(k, "--max-new") == 0 ? &a.max_new
                      : strcmp(k, "--batch") == 0   ? &a.batch
                      : strcmp(k, "--ctx") == 0     ? &a.ctx_len
                                                    : NULL;
        int is_num = strcmp(k, "--temperature") == 0 || strcmp(k, "--seed") == 0;
        if (!sp && !ip && !is_num) {
            fprintf(stderr, "rlhf eval: unknown argument '%s'\n", k);
            rl_eval_usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "rlhf eval: %s needs a value\n", k);
            return 2;
        }
        char *end = NULL;
        if (sp) *sp = v;
        else if (ip) *ip = strtoll(v, &end, 10);
        else if (strcmp(k, "--temperature") == 0) a.temperature = strtod(v, &end);
        else a.seed = strtoull(v, &end, 10);
        if (end && (end == v || *end)) {
            fprintf(stderr, "rlhf eval: %s needs a number, not '%s'\n", k, v);
            return 2;
        }
        i++;
    }
    if (a.samples < 1 || a.batch < 1 || a.max_new < 1 || !(a.temperature > 0)) {
        fprintf(stderr, "rlhf eval: --samples, --batch and --max-new must be >= 1 and --temperature > 0\n");
        return 2;
    }
    char err[2048];
    if (a.score_model && a.pairs && !a.model && !a.prompts) {
        if (rl_judge_scores(&a, err, sizeof err) == RL_OK) return 0;
        fprintf(stderr, "rlhf eval: %s\n", err);
        return 1;
    }
    if (a.model && a.prompts && !a.score_model && !a.pairs) {
        if (a.cost) {
            fprintf(stderr, "rlhf eval: --cost goes with --score-model and --pairs\n");
            return 2;
        }
        if (rl_judge_policy(&a, NULL, err, sizeof err) == RL_OK) return 0;
        fprintf(stderr, "rlhf eval: %s\n", err);
        return 1;
    }
    fprintf(stderr, "rlhf eval: give either --model and --prompts, or --score-model and --pairs\n");
    rl_eval_usage(stderr);
    return 2;
}
