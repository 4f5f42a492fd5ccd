/* recipes/runner/runner_args.c - the command line of the stage runner (`rlhf train`):
 * defaults, argument parsing and the usage text. Kept in the library so that
 * tests drive the runner with the very argument vectors a user types.
 */
#include "rl_file.h"
#include "rl_runner.h"
#include "rl_recipe.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void rl_runner_cfg_init(rl_runner_cfg *c) {
    memset(c, 0, sizeof *c);
    c->data_kind = RL_DATA_AUTO;
    c->batch = 8;
    c->ppo_epochs = 1;
    c->lr_schedule = "constant";
    c->device = "cpu";
    c->preset = "tiny";
    c->tokenizer = "bytes";
    c->chat_template = "auto";
    c->n_samples = 3;
}

void rl_runner_usage(FILE *f) {
    char names[600];
    fprintf(f,
            "usage: rlhf train RECIPE [--data F] [--data-kind auto|demos|hh|pku|prompts] [--ptx-data F]\n"
            "                  [--init MODEL=CKPT|MODEL=OTHER ...] [--set k=v ...] [--out DIR]\n"
            "                  [--steps N | --epochs N] [--batch B] [--minibatch M] [--ppo-epochs K]\n"
            "                  [--lr-schedule constant|warmup:W|cosine:W[:MIN]] [--seed S] [--threads N]\n"
            "                  [--device cpu|cuda] [--ckpt-every N] [--resume] [--skip-bad-lines]\n"
            "                  [--preset NAME] [--tokenizer bytes|DIR] [--chat-template auto|off|FILE] [--ctx T]\n"
            "                  [--sample-every N] [--samples N] [--log-every N] [--group-by-length G] [--quiet]\n"
            "RECIPE is a .recipe file or a built-in name (%s).\n"
            "Trains the recipe's stage (supervised, pairwise, online or fullbatch) and writes\n"
            "OUT/metrics.jsonl, OUT/samples.jsonl, OUT/checkpoint.safetensors (every --ckpt-every\n"
            "steps and at the end; --resume continues from it) and OUT/MODEL/ for every trainable\n"
            "model. Models without --init are fresh --preset models (seed S): GPT-2's tiny, mini,\n"
            "small, gpt2 or the Llama family's llama-tiny, llama-mini, smollm2-135m, qwen2.5-0.5b;\n"
            "--init takes a Hugging Face directory of either family. Prompts go through the chat\n"
            "template of --tokenizer DIR's tokenizer_config.json when it has one (--chat-template off:\n"
            "the data's own text). `rlhf plot OUT` draws\n"
            "the curves. --group-by-length G batches examples of similar length (windows of G\n"
            "batches sorted by length; less padding, same order for a seed). Defaults: --batch 8,\n"
            "--ppo-epochs 1, 1 epoch (fullbatch: 100 steps), no length grouping,\n"
            "--preset tiny, --tokenizer bytes, --out runs/<recipe name>.\n",
            rl_recipe_builtin_list(names, sizeof names));
}

/* A whole-string integer >= lo. */
static int parse_i64(const char *s, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo) return 0;
    *out = v;
    return 1;
}

rl_status rl_runner_parse_args(rl_runner_cfg *c, int argc, char **argv, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (a[0] != '-' || a[1] == 0) {
            if (c->recipe) return rl_errf(err, errlen, RL_ERR_ARG, "unexpected argument '%s' (the recipe is '%s')", a, c->recipe);
            c->recipe = a;
            continue;
        }
        /* flags without a value */
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            c->help = 1;
            continue;
        }
        if (!strcmp(a, "--resume")) {
            c->resume = 1;
            continue;
        }
        if (!strcmp(a, "--skip-bad-lines")) {
            c->skip_bad_lines = 1;
            continue;
        }
        if (!strcmp(a, "--quiet")) {
            c->quiet = 1;
            continue;
        }
        static const char *const with_value[] = {
            "--data",         "--data-kind", "--init",       "--set",        "--out",         "--steps",
            "--epochs",       "--batch",     "--minibatch",  "--ppo-epochs", "--lr-schedule", "--seed",
            "--threads",      "--device",    "--ckpt-every", "--preset",     "--tokenizer",   "--ctx",
            "--sample-every", "--samples",   "--log-every",  "--ptx-data",   "--group-by-length", "--chat-template"};
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) known |= !strcmp(a, with_value[k]);
        if (!known) return rl_errf(err, errlen, RL_ERR_ARG, "unknown option '%s' (rlhf train --help lists them)", a);
        if (i + 1 >= argc) return rl_errf(err, errlen, RL_ERR_ARG, "%s needs a value", a);
        const char *v = argv[++i];
        int64_t n = 0;
        if (!strcmp(a, "--data"))
            c->data = v;
        else if (!strcmp(a, "--ptx-data"))
            c->ptx_data = v;
        else if (!strcmp(a, "--data-kind")) {
            if (rl_data_format_parse(v, &c->data_kind) != RL_OK)
                return rl_errf(err, errlen, RL_ERR_ARG, "--data-kind: '%s' is not one of %s", v, "auto, demos, hh, pku, prompts");
        } else if (!strcmp(a, "--init") || !strcmp(a, "--set")) {
            const char *eq = strchr(v, '=');
            if (!eq || eq == v || !eq[1]) return rl_errf(err, errlen, RL_ERR_ARG, "%s: '%s' is not NAME=VALUE", a, v);
            int *cnt = a[2] == 'i' ? &c->n_init : &c->n_set;
            const char **arr = a[2] == 'i' ? c->init : c->set;
            if (*cnt >= RL_RUNNER_MAX_ARGS) return rl_errf(err, errlen, RL_ERR_ARG, "too many %s options", a);
            arr[(*cnt)++] = v;
        } else if (!strcmp(a, "--out"))
            c->out = v;
        else if (!strcmp(a, "--epochs")) {
            char *end;
            double e = strtod(v, &end);
            if (end == v || *end || !(e > 0) || e > 1e9)
                return rl_errf(err, errlen, RL_ERR_ARG, "--epochs: '%s' is not a positive number", v);
            c->epochs = e;
        } else if (!strcmp(a, "--lr-schedule"))
            c->lr_schedule = v;
        else if (!strcmp(a, "--device"))
            c->device = v;
        else if (!strcmp(a, "--preset"))
            c->preset = v;
        else if (!strcmp(a, "--tokenizer"))
            c->tokenizer = v;
        else if (!strcmp(a, "--chat-template"))
            c->chat_template = v;
        else {
            /* the integer options */
            int64_t lo = !strcmp(a, "--seed") || !strcmp(a, "--threads") || !strcmp(a, "--ckpt-every") ||
                                 !strcmp(a, "--sample-every") || !strcmp(a, "--log-every") ||
                                 !strcmp(a, "--minibatch") || !strcmp(a, "--samples") ||
                                 !strcmp(a, "--group-by-length")
                             ? 0
                             : 1;
            if (!parse_i64(v, lo, &n))
                return rl_errf(err, errlen, RL_ERR_ARG, "%s: '%s' is not %s", a, v,
                               lo ? "a positive integer" : "an integer >= 0");
            if (!strcmp(a, "--steps"))
                c->steps = n;
            else if (!strcmp(a, "--batch"))
                c->batch = n;
            else if (!strcmp(a, "--minibatch"))
                c->minibatch = n;
            else if (!strcmp(a, "--ppo-epochs"))
                c->ppo_epochs = n > 1000000 ? 1000000 : (int)n;
            else if (!strcmp(a, "--seed"))
                c->seed = (uint64_t)n;
            else if (!strcmp(a, "--threads"))
                c->threads = n > 4096 ? 4096 : (int)n;
            else if (!strcmp(a, "--ckpt-every"))
                c->ckpt_every = n;
            else if (!strcmp(a, "--ctx"))
                c->ctx = n;
            else if (!strcmp(a, "--sample-every"))
                c->sample_every = n;
            else if (!strcmp(a, "--samples"))
                c->n_samples = n > 64 ? 64 : (int)n;
            else if (!strcmp(a, "--log-every"))
                c->log_every = n;
            else if (!strcmp(a, "--group-by-length"))
                c->group_by_length = n > 4096 ? 4096 : n;
        }
    }
    if (!c->help && !c->recipe) return rl_errf(err, errlen, RL_ERR_ARG, "no recipe given (rlhf train RECIPE ...)");
    if (c->steps && c->epochs) return rl_errf(err, errlen, RL_ERR_ARG, "give --steps or --epochs, not both");
    return RL_OK;
}
