/* tools/cmd_data.c - `rlhf data`: writes the synthetic helpful-and-harmless
 * world's files (`rlhf data synth`) and checks a JSONL data file the way
 * training will read it (`rlhf data check`: format, bad and blank lines,
 * token lengths and what truncation to a context length would cut).
 */
#include "cli.h"

#include "rl_data.h"
#include "rl_synth.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static void rl_data_usage(FILE *f) {
    fprintf(f,
            "usage: rlhf data synth --out DIR [--seed N] [--n-sft N] [--n-pairs N] [--n-eval N]\n"
            "                       [--n-eval-pairs N] [--max-operand N] [--bt-k K] [--sft-comply P]\n"
            "                       [--sft-refuse P] [--demo-answers K]\n"
            "       rlhf data check FILE [--format auto|demos|hh|pku|prompts] [--skip-bad-lines]\n"
            "                       [--ctx T] [--rows sft|pairs|prompts] [--tokenizer bytes|DIR]\n"
            "synth writes sft.jsonl, hh.jsonl, pku.jsonl, eval_prompts.jsonl, hh_eval.jsonl,\n"
            "pku_eval.jsonl (pairs on the held-out prompts) and summary.json\n"
            "(recipes/world/rl_synth.h describes the world); check loads FILE as training would.\n");
}

/* Parses a whole decimal integer >= lo; 0 on garbage. */
static int rl_arg_i64(const char *s, int64_t lo, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end || v < lo) return 0;
    *out = v;
    return 1;
}

static int rl_arg_f64(const char *s, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end) return 0;
    *out = v;
    return 1;
}

static int rl_data_synth(int argc, char **argv) {
    rl_synth_cfg cfg = rl_synth_cfg_default();
    const char *out = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t n;
        int ok = v != NULL;
        if (strcmp(a, "--help") == 0) {
            rl_data_usage(stdout);
            return 0;
        } else if (strcmp(a, "--out") == 0 || strcmp(a, "-o") == 0) out = v;
        else if (strcmp(a, "--seed") == 0) ok = ok && rl_arg_i64(v, 0, &n) && ((cfg.seed = (uint64_t)n), 1);
        else if (strcmp(a, "--n-sft") == 0) ok = ok && rl_arg_i64(v, 0, &cfg.n_sft);
        else if (strcmp(a, "--n-pairs") == 0) ok = ok && rl_arg_i64(v, 0, &cfg.n_pairs);
        else if (strcmp(a, "--n-eval") == 0) ok = ok && rl_arg_i64(v, 0, &cfg.n_eval);
        else if (strcmp(a, "--n-eval-pairs") == 0) ok = ok && rl_arg_i64(v, 0, &cfg.n_eval_pairs);
        else if (strcmp(a, "--demo-answers") == 0) {
            int64_t k = 0;
            ok = ok && rl_arg_i64(v, 0, &k);
            cfg.demo_answers = k > 1000 ? 1000 : (int)k;
        }
        else if (strcmp(a, "--max-operand") == 0) ok = ok && rl_arg_i64(v, 1, &n) && ((cfg.max_operand = (int)n), 1);
        else if (strcmp(a, "--bt-k") == 0) ok = ok && rl_arg_f64(v, &cfg.bt_k);
        else if (strcmp(a, "--sft-comply") == 0) ok = ok && rl_arg_f64(v, &cfg.sft_harmful_comply);
        else if (strcmp(a, "--sft-refuse") == 0) ok = ok && rl_arg_f64(v, &cfg.sft_benign_refuse);
        else {
            fprintf(stderr, "rlhf data synth: unknown argument '%s'\n", a);
            rl_data_usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "rlhf data synth: %s needs a %s\n", a, v ? "valid number" : "value");
            return 2;
        }
        i++;
    }
    if (!out) {
        fprintf(stderr, "rlhf data synth: --out DIR is required\n");
        rl_data_usage(stderr);
        return 2;
    }
    char err[1024];
    if (rl_synth_write(&cfg, out, err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf data: %s\n", err);
        return 1;
    }
    printf("synthetic world (seed %" PRIu64 ") written to %s: sft.jsonl %" PRId64 ", hh.jsonl %" PRId64
           ", pku.jsonl %" PRId64 ", eval_prompts.jsonl %" PRId64 ", hh_eval.jsonl %" PRId64
           ", pku_eval.jsonl %" PRId64 ", summary.json\n",
           cfg.seed, out, cfg.n_sft, cfg.n_pairs, cfg.n_pairs, cfg.n_eval, cfg.n_eval_pairs, cfg.n_eval_pairs);
    return 0;
}

static int rl_data_check(int argc, char **argv) {
    const char *file = NULL, *tok_spec = "bytes", *rows_s = NULL;
    rl_data_format fmt = RL_DATA_AUTO;
    int skip = 0;
    int64_t T = 128;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0) {
            rl_data_usage(stdout);
            return 0;
        } else if (strcmp(a, "--skip-bad-lines") == 0) {
            skip = 1;
            continue;
        } else if (a[0] != '-' && !file) {
            file = a;
            continue;
        } else if (!v) {
            fprintf(stderr, "rlhf data check: %s needs a value\n", a);
            return 2;
        } else if (strcmp(a, "--format") == 0) {
            if (rl_data_format_parse(v, &fmt) != RL_OK) {
                fprintf(stderr, "rlhf data check: unknown format '%s'\n", v);
                return 2;
            }
        } else if (strcmp(a, "--ctx") == 0) {
            if (!rl_arg_i64(v, 2, &T)) {
                fprintf(stderr, "rlhf data check: --ctx needs an integer >= 2\n");
                return 2;
            }
        } else if (strcmp(a, "--rows") == 0) rows_s = v;
        else if (strcmp(a, "--tokenizer") == 0) tok_spec = v;
        else {
            fprintf(stderr, "rlhf data check: unknown argument '%s'\n", a);
            rl_data_usage(stderr);
            return 2;
        }
        i++;
    }
    if (!file) {
        rl_data_usage(stderr);
        return 2;
    }
    char err[1024], d[1200];
    rl_dataset *ds = NULL;
    if (rl_dataset_load(file, fmt, skip, &ds, err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf data check: %s\n", err);
        return 1;
    }
    printf("%s\n", rl_dataset_describe(ds, d, sizeof d));
    if (ds->report.bad) printf("first bad line: %s\n", ds->report.first_bad);
    if (ds->report.identical_pairs)
        printf("%" PRId64 " pairs have identical responses\n", ds->report.identical_pairs);
    rl_rows_kind kind = ds->format == RL_DATA_HH || ds->format == RL_DATA_PKU ? RL_ROWS_PAIRS
                        : ds->format == RL_DATA_DEMOS                        ? RL_ROWS_SFT
                                                                             : RL_ROWS_PROMPTS;
    if (rows_s) {
        if (strcmp(rows_s, "sft") == 0) kind = RL_ROWS_SFT;
        else if (strcmp(rows_s, "pairs") == 0) kind = RL_ROWS_PAIRS;
        else if (strcmp(rows_s, "prompts") == 0) kind = RL_ROWS_PROMPTS;
        else {
            fprintf(stderr, "rlhf data check: --rows must be sft, pairs or prompts\n");
            rl_dataset_free(ds);
            return 2;
        }
    }
    rl_tokenizer *tok = rl_tokenizer_open(tok_spec, err, sizeof err);
    int rc = 1;
    if (!tok) {
        fprintf(stderr, "rlhf data check: %s\n", err);
    } else {
        rl_tok_opts o = rl_tok_opts_default(T);
        rl_tokdata *td = rl_tokdata_new(ds, tok, kind, &o, err, sizeof err);
        if (!td) {
            fprintf(stderr, "rlhf data check: %s\n", err);
        } else {
            rl_trunc_stats s = rl_tokdata_stats(td);
            printf("%" PRId64 " rows, longest %" PRId64 " tokens; at --ctx %" PRId64 ": %" PRId64
                   " rows truncated, %" PRId64 " prompt and %" PRId64 " response tokens dropped, %" PRId64
                   " rows lost their EOS\n",
                   s.rows, s.max_len, T, s.rows_truncated, s.prompt_tokens_dropped, s.response_tokens_dropped,
                   s.eos_dropped);
            rc = 0;
        }
        rl_tokdata_free(td);
    }
    rl_tokenizer_free(tok);
    rl_dataset_free(ds);
    return rc;
}

int rl_cmd_data(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0) {
        rl_data_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "synth") == 0) return rl_data_synth(argc, argv);
    if (strcmp(argv[1], "check") == 0) return rl_data_check(argc, argv);
    fprintf(stderr, "rlhf data: unknown subcommand '%s'\n", argv[1]);
    rl_data_usage(stderr);
    return 2;
}
