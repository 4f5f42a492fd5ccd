/* recipes/runner/rl_runner.h - the stage runner: trains any recipe from a data file
 * (or none), writing metrics, samples, resumable checkpoints and the final
 * models. `rlhf train` (tools/cmd_train.c) is a thin shell around it, and the
 * tests call it directly with the same argument vectors. RECIPE is a file or
 * a built-in name (rl_recipe_resolve); externs run through the libffi bridge.
 *
 * Folder recipes/runner/: the stage runner and pipeline files;
 * may include every room above. Start here, then rl_pipeline.h.
 *
 *   rl_runner_cfg c;
 *   rl_runner_cfg_init(&c);
 *   char err[2048];
 *   if (rl_runner_parse_args(&c, argc, argv, err, sizeof err) != RL_OK) ...   // "--steps: ..."
 *   rl_runner_result res;
 *   if (rl_runner_run(&c, &res, err, sizeof err) != RL_OK) fprintf(stderr, "%s\n", err);
 *
 * How each recipe kind is fed (one "step" is one row of metrics.jsonl):
 *   supervised  a batch of demonstrations (--batch rows) bound to the recipe's
 *               token input; --minibatch M splits it into micro-batches whose
 *               gradients are averaged (accumulation), one optimizer step.
 *   pairwise    a batch of preference pairs: token inputs `chosen`/`rejected`
 *               (aliases `better`/`worse`; or simply the first and second
 *               token input), and for PKU-SafeRLHF data `safer`/`unsafer` with
 *               the [B] cost signs `safer_sign`/`unsafer_sign` (aliases
 *               `sign_s`/`sign_u`; f32 or i32 as declared; +1 unsafe, -1 safe).
 *   online      a batch of prompts bound to the recipe's token input; the
 *               rollout block runs once (generation, old log-probabilities,
 *               advantages; no gradients), then --ppo-epochs passes over
 *               minibatches of --minibatch rows (contiguous row ranges of the
 *               shuffled batch, visited in a seeded random order per epoch),
 *               one optimizer step per minibatch. A second token input
 *               (ppo_kl's `demos`, read when ptx_coef > 0) gets a batch of
 *               --batch demonstrations from --ptx-data per step, whole in
 *               every minibatch update.
 *   fullbatch   no data: every step is one full-batch update. With --data,
 *               the whole file is one batch, bound as for the kinds above.
 *
 * Update order. Each loss trains the trainables its gradient reaches (the
 * recipe checker's audit guarantees that no trainable has two losses), each
 * trainable with its own optimizer: the recipe's adamw/sgd options (a `clip`
 * option is a global-norm clip over that trainable's gradients), the learning
 * rate following --lr-schedule. An update is ONE evaluation of the loss block
 * and ONE backward pass of the sum of the losses; then every trainable steps
 * from those gradients (models in declaration order, then params), the params
 * are projected into their bounds, and the recipe's step() counter advances.
 * So all trainables see the same evaluation: simultaneous updates, one
 * forward pass per update. Where a multiplier's step must come first
 * (safe-rlhf: "lambda update, before each policy step"), the recipe writes
 * the multiplier's next value into the policy's loss under stop():
 * safe_rlhf.recipe computes log_lambda_next, the value that log_lambda's SGD
 * step and bound land on, so the actor sees the updated lambda while the
 * update costs no second forward pass.
 *
 * Models: `--init NAME=CKPT` loads a Hugging Face GPT-2 directory or
 * .safetensors file with the declared kind (a score or value model from an LM
 * checkpoint gets a fresh head); `--init NAME=OTHER` copies another declared
 * model (e.g. --init ref=policy: a frozen reference equal to the starting
 * policy). A model without --init is created fresh from --preset: LM models
 * with the run's seed, so a fresh frozen reference equals a fresh policy;
 * score and value models with seed + 1 + their index among the declared
 * models, so that two heads of one kind differ. The tokenizer fixes the
 * vocabulary of fresh models. Frozen models get no optimizer and no gradient
 * buffers.
 *
 * Files in OUT (--out, default runs/<recipe name>):
 *   run.json                  the run's configuration (for people and `rlhf plot`)
 *   metrics.jsonl             one JSON object per step (see rl_runner_run)
 *   samples.jsonl             decoded generations every --sample-every steps
 *   checkpoint.safetensors    the complete training state, every --ckpt-every
 *                             steps and at the end (layout below), written to a
 *                             temporary file and renamed: a crash never loses
 *                             the previous checkpoint
 *   NAME/                     each trainable model at the end: config.json +
 *                             model.safetensors in the family's Hugging Face layout
 *                             (rl_model_load and transformers read it)
 *   params.json               the final values of the recipe's params
 *
 * Checkpoint layout (tensors; model tensors in the model's dtype, F32):
 *   MODEL/HFNAME                       trainable model tensors ("policy/h.0.attn.c_attn.weight")
 *   params/NAME                        recipe params (log_lambda)
 *   optim/KEY.STATE                    optimizer state of tensor KEY (one of the two
 *                                      forms above): STATE exp_avg, exp_avg_sq (AdamW),
 *                                      momentum_buffer (SGD with momentum)
 *   state/FN@LINE:COL                  F64 state of a stateful call site (window_mean's
 *                                      buffer, adaptive_beta's coefficient)
 *   rng/runner, rng/generate           U64[4] xoshiro256** states
 * and __metadata__ (strings):
 *   format "rlhf-train-state", rlhf.version, recipe.name, recipe.kind, recipe.path,
 *   recipe.hash (FNV-1a 64 of the source, hex), recipe.sets (JSON array of --set),
 *   step, recipe.step (the recipe's step() counter: updates so far), tokens,
 *   elapsed_s, data.path, data.records, data.cursor ("seed=S epoch=E pos=P"),
 *   data.ptx_cursor (--ptx-data), seed, threads, batch, minibatch, ppo_epochs, group_by_length,
 *   lr_schedule, tokenizer, preset, ctx, models (JSON: name -> {kind, trainable, init, config}), optim.NAME.step (per
 *   trainable), optim.NAME.skipped (non-finite steps skipped), hypers (JSON).
 *
 * --resume continues from OUT/checkpoint.safetensors. Give the arguments of
 * the first run (--steps/--epochs may grow); a different recipe, --set,
 * seed, batch, minibatch, ppo-epochs, group-by-length or data (record count) is refused, because the
 * result would silently differ from an uninterrupted run. A resumed run
 * reaches bit for bit the parameters of an uninterrupted one (same thread
 * count); metrics.jsonl and samples.jsonl are cut back to the checkpoint's
 * step first.
 */
#ifndef RL_RUNNER_H
#define RL_RUNNER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rl_engine.h"
#include "rl_data.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RL_RUNNER_MAX_ARGS 32

typedef struct rl_runner_cfg {
    const char *recipe;            /* the .recipe file */
    const char *data;              /* JSONL (plain or gzip); NULL: none */
    const char *ptx_data;          /* online: demonstrations for a second token input (ppo_kl's ptx) */
    rl_data_format data_kind;      /* RL_DATA_AUTO */
    int n_init;
    const char *init[RL_RUNNER_MAX_ARGS]; /* "NAME=CKPT" or "NAME=OTHER_MODEL" */
    int n_set;
    const char *set[RL_RUNNER_MAX_ARGS];  /* "k=v" hyper overrides */
    const char *out;               /* NULL: runs/<recipe name> */
    int64_t steps;                 /* > 0: this many steps; 0: from epochs */
    double epochs;                 /* > 0: passes over the data; 0 with steps 0: 1 (fullbatch: 100 steps) */
    int64_t batch;                 /* rows per step (8) */
    int64_t minibatch;             /* 0: the whole batch */
    int ppo_epochs;                /* online: passes over each rollout batch (1) */
    int64_t group_by_length;       /* supervised/pairwise: length-grouping windows of this many batches (0: off) */
    const char *lr_schedule;       /* "constant" | "warmup:W" | "cosine:W[:MIN_FRACTION]" (W in updates) */
    uint64_t seed;                 /* 0 */
    int threads;                   /* OpenMP threads; 0: as configured */
    const char *device;            /* "cpu" | "cuda" */
    int64_t ckpt_every;            /* steps between checkpoints; 0: only at the end */
    int resume;
    int skip_bad_lines;
    const char *preset;            /* fresh models: "tiny" | "small" | "gpt2" ("tiny") */
    const char *tokenizer;         /* "bytes", a directory or a tokenizer.json ("bytes") */
    const char *chat_template;     /* "auto": the --tokenizer directory's tokenizer_config.json
                                    * chat_template when it has one; "off"; or a
                                    * tokenizer_config.json path ("auto") */
    int64_t ctx;                   /* row width T; 0: the smallest n_ctx of the LM-kind models */
    int64_t sample_every;          /* steps between samples; 0: never */
    int n_samples;                 /* rows per sample (3) */
    int64_t log_every;             /* plain log lines every N steps; 0: about 20 lines a run */
    int quiet;                     /* no progress or log lines */
    int help;                      /* set by rl_runner_parse_args for --help */
    FILE *log;                     /* progress and log lines; NULL: stdout */
} rl_runner_cfg;

/* What a finished run reports (also on failure, as far as it got). */
typedef struct rl_runner_result {
    int64_t first_step;            /* the first step this process ran (1, or after the checkpoint) */
    int64_t steps;                 /* the step reached */
    double first_loss, last_loss;  /* the sum of the losses at the first/last step run */
    int64_t bad_lines;             /* data lines skipped (--skip-bad-lines) */
    int64_t checkpoints;           /* checkpoints written by this process */
} rl_runner_result;

void rl_runner_cfg_init(rl_runner_cfg *c);
/* Parses `rlhf train` arguments (argv[0] is "train" and is skipped; the first
 * non-option argument is the recipe). The strings must outlive the cfg. */
rl_status rl_runner_parse_args(rl_runner_cfg *c, int argc, char **argv, char *err, size_t errlen);
/* The usage text of `rlhf train`. */
void rl_runner_usage(FILE *f);

/* Trains. RL_OK when the run reached its last step; otherwise a status with
 * the message in err: a recipe's diagnostics, "FILE:LINE: ..." for a bad data
 * line, a model file's problem, or a run-time error naming the recipe line.
 *
 * metrics.jsonl, one object per step: step, epoch (data passes so far), every
 * loss and logged metric of the recipe by name (means over the step's updates),
 * lr and grad_norm (the first trainable's), lr_NAME / grad_norm_NAME per
 * trainable, updates, tokens (this step), tokens_per_s, step_s, time (seconds
 * since the run began, resumed runs included). Non-finite numbers are null. */
rl_status rl_runner_run(const rl_runner_cfg *c, rl_runner_result *res, char *err, size_t errlen);

/* Draws RUN_DIR/metrics.jsonl with gnuplot into RUN_DIR/metrics.png and
 * RUN_DIR/metrics.svg: one panel per numeric field (step on x). The data and
 * script stay in RUN_DIR/plot/ (metrics.dat, metrics.gp) for editing. */
rl_status rl_runner_plot(const char *run_dir, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
