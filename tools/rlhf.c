/* tools/rlhf.c - the `rlhf` command line: dispatches to the subcommands
 * (tools/cmd_*.c). Each subcommand returns the process exit status.
 *
 * Folder tools/: the command line: thin argument parsers (cmd_*.c) over the libraries;
 * may include any room; holds no domain logic. Start reading here.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

typedef struct rl_cli_cmd {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
} rl_cli_cmd;

static const rl_cli_cmd rl_cli_cmds[] = {
    {"info", rl_cmd_info, "version, BLAS core and threads, backends"},
    {"gradcheck", rl_cmd_gradcheck, "check gradients against central differences (--op NAME | --all)"},
    {"bench", rl_cmd_bench, "benchmarks (rlhf bench ops)"},
    {"init-model", rl_cmd_init_model, "write a freshly initialised GPT-2 checkpoint (a preset and a seed)"},
    {"logits", rl_cmd_logits, "logits and next-token loss of a GPT-2 checkpoint on given ids"},
    {"data", rl_cmd_data, "write the synthetic world's data (synth) or check a JSONL data file (check)"},
    {"eval", rl_cmd_eval, "judge a policy on held-out prompts, or a reward/cost model on pairs"},
    {"train", rl_cmd_train, "train a recipe's stage (supervised, pairwise, online, fullbatch); resumable"},
    {"plot", rl_cmd_plot, "draw a training run's metrics.jsonl to PNG and SVG (gnuplot)"},
    {"graph", rl_cmd_graph, "draw a recipe's dataflow with Graphviz (-o FILE.svg|.png|.dot)"},
    {"pipeline", rl_cmd_pipeline, "run a pipeline file: chained stages, evaluations, results table, aims"},
    {"tokenize", rl_cmd_tokenize, "text (JSON strings, one a line) to token ids and back (--decode)"},
    {"generate", rl_cmd_generate, "sample from a checkpoint of any family: a streamed --prompt, or --prompts FILE.jsonl (--chat)"},
};

static void rl_cli_usage(FILE *f) {
    fprintf(f, "usage: rlhf COMMAND [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof rl_cli_cmds / sizeof rl_cli_cmds[0]; i++)
        fprintf(f, "  %-10s %s\n", rl_cli_cmds[i].name, rl_cli_cmds[i].help);
    fprintf(f, "\nrlhf COMMAND --help shows a command's options.\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        rl_cli_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("rlhf %s\n", RL_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof rl_cli_cmds / sizeof rl_cli_cmds[0]; i++)
        if (strcmp(argv[1], rl_cli_cmds[i].name) == 0) return rl_cli_cmds[i].run(argc - 1, argv + 1);
    fprintf(stderr, "rlhf: unknown command '%s'\n\n", argv[1]);
    rl_cli_usage(stderr);
    return 2;
}
