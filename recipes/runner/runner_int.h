/* recipes/runner/runner_int.h - what the stage runner's sources share: the state of
 * a run (models, trainables and their optimizers, data, streams, output
 * files) and the entry points of each part:
 *
 *   runner.c       setup, the training loop, one step of each recipe kind
 *   runner_ckpt.c  the checkpoint (save, load, resume checks), final exports
 *   runner_log.c   metrics.jsonl, progress lines, samples.jsonl, run.json
 *   runner_args.c  the command line          runner_plot.c  `rlhf plot`
 */
#ifndef RL_RUNNER_INT_H
#define RL_RUNNER_INT_H

#include "rl_optim.h"
#include "rl_rng.h"
#include "rl_file.h"
#include "rl_model.h"
#include "rl_tokenizer.h"
#include "rl_chat_template.h"
#include "rl_data.h"
#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_runner.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <jansson.h>

#define RN_PATH 4096

/* A declared model and its instance. */
typedef struct rn_model {
    const char *name;
    rl_recipe_model_kind kind;
    int trainable;
    const char *init;        /* the --init value, or NULL (fresh from the preset) */
    rl_model *m;
} rn_model;

/* A trainable (a trainable model or a param) and its optimizer. */
typedef struct rn_train {
    const char *name;
    int is_param;
    int index;               /* into rn.models or the program's params */
    int n;                   /* tensors */
    rl_tensor **tensors;
    char **keys;             /* checkpoint name of each tensor: "policy/wte.weight", "params/log_lambda" */
    rl_optim *opt;
    rl_recipe_optim oc;
    rl_lr_sched sched;
    int loss;                /* the loss that trains it, or -1 (never updated) */
    double norm_sum, lr;     /* this step: summed pre-clip gradient norms, last lr */
    int n_norm;
    int64_t skipped;         /* updates skipped for a non-finite gradient */
} rn_train;

/* How a recipe input is fed from a data batch. */
typedef enum {
    RN_FEED_ROWS = 0,        /* b->rows (demos, prompts) */
    RN_FEED_CHOSEN, RN_FEED_REJECTED, RN_FEED_SAFER, RN_FEED_UNSAFER,
    RN_FEED_SIGN_S, RN_FEED_SIGN_U,
    RN_FEED_MISMATCHED,      /* row k's prompt + row k+1's response (KTO's KL rows, TRL) */
    RN_FEED_COLUMN,          /* a number column of the data: f32[B] / i32[B] (booleans 0/1) */
    RN_FEED_TEXT,            /* a string column, tokenized alone: tokens (mask = attn) */
    RN_FEED_PTX,             /* online: demonstrations from --ptx-data (ppo_kl's ptx term) */
    RN_FEED_NONE,            /* used by no statement compiled (an if() branch not taken): not bound */
} rn_feed;

typedef struct rn {
    const rl_runner_cfg *cfg;
    char out[RN_PATH];
    char *err;
    size_t errlen;
    rl_ctx *ctx;

    char recipe_path[RN_PATH]; /* the recipe file (a built-in name resolved) */
    rl_recipe *recipe;
    rl_recipe_program *p;
    rl_recipe_kind kind;
    uint64_t recipe_hash;
    rl_recipe_model_env env;  /* generate's sampling stream, EOS and pad ids */
    rl_rng rng;              /* minibatch order */

    rl_tokenizer *tok;
    rl_chat_template *chat;  /* prompts rendered through it (--chat-template), or NULL */
    rl_dataset *ds;
    rl_tokdata *td;
    rl_batcher *it;          /* NULL for fullbatch */
    rl_dataset *ptx_ds;      /* --ptx-data: demonstrations for an online recipe's second token input */
    rl_tokdata *ptx_td;
    rl_batcher *ptx_it;
    const rl_data_batch *ptx_batch;
    rl_data_batch *whole;    /* fullbatch with data: every example */
    const rl_data_batch *batch; /* the step's batch */
    int n_feed;
    rn_feed *feed;           /* per recipe input */
    int *feed_col;           /* per recipe input: COLUMN, TEXT: its index among the columns loaded */
    int n_cols;
    const char **cols;       /* the data columns the recipe's inputs read (rl_dataset_load_columns) */
    int64_t T;               /* row width */
    int32_t pad_id, eos_id;

    rn_model *models;
    int n_models;
    rn_train *train;
    int n_train;
    int n_losses, n_metrics;
    double *acc;             /* this step: loss sums then metric sums */
    int acc_n;

    int64_t step, total_steps, tokens;
    int64_t updates_per_step;
    double elapsed_prev;     /* seconds of earlier processes (resume) */
    double t_start, t_step;
    double step_loss;        /* sum of the losses, mean over the step's updates */
    double t_draw;           /* when the terminal's progress line was last drawn */
    int64_t tokens_run;      /* tokens of the steps this process ran */
    int64_t step_tokens;

    FILE *metrics, *samples, *log;
    int tty;
    rl_tokdata *sample_td;   /* prompts for supervised/pairwise samples */
    rl_runner_result *res;
} rn;

/* Records a message in the run's err buffer; returns st. */
rl_status rn_fail(rn *r, rl_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "OUT/name" into buf. */
const char *rn_path(const rn *r, const char *name, char *buf);
/* Writes o to path whole or not at all (rl_atomic_*), json_dumpf flags. */
rl_status rn_json_write(rn *r, json_t *o, const char *path, size_t flags);

/* runner_ckpt.c */
uint64_t rn_hash(const void *data, size_t n);
rl_status rn_ckpt_save(rn *r);
/* Restores the state of OUT/checkpoint.safetensors after setup (models,
 * optimizers and data exist). */
rl_status rn_ckpt_load(rn *r);
/* Removes temporary files a killed writer left beside the checkpoint. */
void rn_ckpt_clean_tmp(rn *r);
rl_status rn_export(rn *r);

/* runner_log.c */
rl_status rn_log_open(rn *r);
void rn_log_close(rn *r);
/* Cuts a JSONL file back to the objects whose "step" is <= step. */
rl_status rn_jsonl_truncate(rn *r, const char *path, int64_t step);
rl_status rn_write_run_json(rn *r);
void rn_log_step(rn *r, double step_s);
void rn_log_end(rn *r);
/* Online: a few rows of the rollout just made. prompts: the bound rows. */
void rn_sample_rollout(rn *r, const rl_rows *prompts);
/* Supervised/pairwise: greedy continuations of a few fixed prompts. */
void rn_sample_greedy(rn *r);

#endif
