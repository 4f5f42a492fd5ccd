/* tools/cmd_init_model.c - `rlhf init-model`: writes a freshly initialised
 * model of either family (a named preset, the family's Hugging Face
 * initialisation, a seed) as a checkpoint, the starting point of training
 * runs and of test fixtures.
 */
#include "cli.h"

#include "rl_model.h"

#include <stdlib.h>
#include <string.h>

static void rl_init_model_usage(FILE *f) {
    fprintf(f, "usage: rlhf init-model --preset NAME [--kind lm|score|value] [--seed N] [--f64]\n"
               "                        -o DIR|FILE.safetensors\n"
               "  NAME: %s\n"
               "  (a Llama-family model is written as a directory: config.json + model.safetensors)\n",
            rl_model_preset_names());
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
    rl_model_head kind = RL_HEAD_LM;
    if (strcmp(kind_s, "score") == 0) kind = RL_HEAD_SCORE;
    else if (strcmp(kind_s, "value") == 0) kind = RL_HEAD_VALUE;
    else if (strcmp(kind_s, "lm") != 0) {
        fprintf(stderr, "rlhf init-model: --kind must be lm, score or value, not '%s'\n", kind_s);
        return 2;
    }
    rl_model_config cfg;
    if (rl_model_config_preset(preset, &cfg) != RL_OK) {
        fprintf(stderr, "rlhf init-model: unknown preset '%s' (%s)\n", preset, rl_model_preset_names());
        return 2;
    }
    rl_ctx *ctx = rl_ctx_new("cpu");
    rl_model *m = rl_model_new(ctx, &cfg, kind, f64 ? RL_F64 : RL_F32, seed);
    int rc = 1;
    char err[1024];
    if (!m) fprintf(stderr, "rlhf init-model: %s\n", rl_ctx_error(ctx));
    else if (rl_model_save(ctx, m, out, err, sizeof err) != RL_OK) fprintf(stderr, "rlhf init-model: %s\n", err);
    else {
        char d[256];
        printf("%s -> %s\n", rl_model_describe(m, d, sizeof d), out);
        rc = 0;
    }
    rl_model_free(ctx, m);
    rl_ctx_free(ctx);
    return rc;
}
