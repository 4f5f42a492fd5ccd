/* tools/cmd_init_model.c - `rlhf init-model`: writes a freshly initialised
 * GPT-2 (a named preset, GPT-2's initialisation, a seed) as a checkpoint, the
 * starting point of training runs and of test fixtures.
 */
#include "cli.h"

#include "rl_checkpoint.h"

#include <stdlib.h>
#include <string.h>

static void rl_init_model_usage(FILE *f) {
    fprintf(f, "usage: rlhf init-model --preset tiny|mini|small|gpt2 [--kind lm|score|value] [--seed N] [--f64]\n"
               "                        -o DIR|FILE.safetensors\n");
}

int rl_cmd_init_model(int argc, char **argv) {
    const char *preset = NULL, *out = NULL, *kind_s = "lm";
    uint64_t seed = 0;
    int f64 = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--preset") == 0 && i + 1 < argc) preset = argv[++i];
        else if (strcmp(argv[i], "--kind") == 0 && i + 1 < argc) kind_s = argv[++i];
        else if (strcmp(argv[i], "--seed") == 0 && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
        else if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--out") == 0) && i + 1 < argc) out = argv[++i];
        else if (strcmp(argv[i], "--f64") == 0) f64 = 1;
        else if (strcmp(argv[i], "--help") == 0) {
            rl_init_model_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "rlhf init-model: unknown argument '%s'\n", argv[i]);
            rl_init_model_usage(stderr);
            return 2;
        }
    }
    if (!preset || !out) {
        rl_init_model_usage(stderr);
        return 2;
    }
    rl_gpt2_kind kind = RL_GPT2_LM;
    if (strcmp(kind_s, "score") == 0) kind = RL_GPT2_SCORE;
    else if (strcmp(kind_s, "value") == 0) kind = RL_GPT2_VALUE;
    else if (strcmp(kind_s, "lm") != 0) {
        fprintf(stderr, "rlhf init-model: --kind must be lm, score or value, not '%s'\n", kind_s);
        return 2;
    }
    rl_gpt2_config cfg;
    if (rl_gpt2_config_preset(preset, &cfg) != RL_OK) {
        fprintf(stderr, "rlhf init-model: unknown preset '%s' (tiny, small, gpt2)\n", preset);
        return 2;
    }
    rl_ctx *ctx = rl_ctx_new("cpu");
    rl_gpt2 *m = rl_gpt2_new(ctx, &cfg, kind, f64 ? RL_F64 : RL_F32, seed);
    int rc = 1;
    char err[1024];
    if (!m) fprintf(stderr, "rlhf init-model: %s\n", rl_ctx_error(ctx));
    else if (rl_gpt2_save(ctx, m, out, err, sizeof err) != RL_OK) fprintf(stderr, "rlhf init-model: %s\n", err);
    else {
        char d[256];
        printf("%s -> %s\n", rl_gpt2_describe(m, d, sizeof d), out);
        rc = 0;
    }
    rl_gpt2_free(ctx, m);
    rl_ctx_free(ctx);
    return rc;
}
