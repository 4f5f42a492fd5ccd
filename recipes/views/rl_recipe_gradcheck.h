/* recipes/views/rl_recipe_gradcheck.h - the gradient check of a whole recipe
 * (`rlhf gradcheck RECIPE`, tests/test_recipe_gradcheck.c): every loss's
 * gradient, as the recipe compiles it onto the tape, against central
 * differences in float64, with tiny models (GPT-2 or the Llama family) and
 * random data.
 *
 * What is checked (per tensor, with engine/rl_gradcheck.h's rl_gradcheck_fn):
 *   - each loss against every trainable it trains (the audit's list,
 *     rl_recipe_loss_at()->trainables): each parameter tensor of a trainable
 *     model (a few sampled elements), every element of a param. A loss is not
 *     checked against the trainables it does not reach: stop() makes those
 *     gradients zero by design, which central differences cannot see;
 *   - each loss against every float input its gradient reaches (all
 *     elements), the input bound as a persistent f64 tensor that requires a
 *     gradient.
 * Each evaluation runs only the instructions the loss being checked depends
 * on (a critic's loss does not run the policy), through the program's
 * internal `only` mask.
 *
 * The setting: the recipe compiled in f64; each model a fresh seeded tiny
 * model of its kind (opts.preset: GPT-2's "tiny" by default, "llama-tiny"
 * for the Llama family; n_ctx = T + gen_len so that rollouts stop after
 * gen_len new tokens); symbolic dims B = batch, T = len, any other 4;
 * token inputs right-padded with random lengths and a response mask of at
 * least one token after a prompt of at least one; float inputs uniform in
 * [-1, 1]; i32 inputs +-1 (labels and signs, e.g. safe-rlhf's cost signs).
 * Online recipes run their rollout once; then every trainable model's
 * weights move by N(0, perturb) noise, as after a first PPO step, so that
 * ratios exp(lp - lp_old) leave the tie at 1 (within a few percent of it) and
 * values move off V_old (by about 0.1). Non-smooth points: min/max/clamp in
 * the clipped surrogate and the clipped value loss have kinks only where
 * ratio = 1 +- clip or |V - V_old| = vclip exactly. The ratios stay far
 * inside (1 - clip, 1 + clip); a value may land on either side of a small
 * vclip, but not within h of it except with probability ~1e-6 per token, so
 * central differences with h = 1e-6 see a smooth function. Inside the clip
 * range the two arms of min()/max() are the same function, so either
 * tie-break gives the same gradient. The step() counter is held fixed
 * during the check.
 *
 * The batch-split check (opts.splits, `rlhf gradcheck RECIPE --splits`):
 * for every micro-batch size m that divides B (m < B), the loss block runs
 * over the rows [0, m), [m, 2m), ... and the losses and gradients are
 * averaged with equal weights, exactly as the runner accumulates
 * micro-batches (--minibatch); each loss and every gradient of what it
 * trains must then equal the whole batch's (relative 1e-9). A loss that does
 * not is reported as split-dependent, not as a failure, with the likely
 * reason read from the numbers: a sum over rows (the average of micro-batch
 * sums is 1/k of the batch's: use a mean), or a normalisation by a batch
 * statistic (a global token mean divides by each micro-batch's token count;
 * whitening and group statistics use each micro-batch's moments). Online
 * recipes run their rollout once and split the loss block's rows, as their
 * minibatches do; the runner steps the optimizer per minibatch there, so a
 * split-dependent online loss changes what each PPO step optimizes.
 */
#ifndef RL_RECIPE_GRADCHECK_H
#define RL_RECIPE_GRADCHECK_H

#include <stdint.h>
#include <stdio.h>

#include "rl_recipe.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_recipe_gc_opts {
    uint64_t seed;        /* weights, data, generation, sampled elements (default 1) */
    int64_t batch, len;   /* sizes of the dims B and T (default 3 and 6); other dims are 4 */
    int64_t gen_len;      /* new tokens a rollout may add (default 6) */
    int model_elems;      /* elements sampled per model tensor (default 6); params: all */
    double perturb;       /* online: std of the noise on trainable models after the rollout (0.001) */
    double h, atol, rtol; /* central differences and tolerance (default 1e-6, 1e-6, 1e-5) */
    FILE *out;            /* a line per checked tensor and a summary; NULL: quiet */
    int verbose;          /* also print failing elements (to stderr) */
    int splits;           /* also run the batch-split check (below) */
    const char *preset;   /* the models' shape (rl_model_config_preset; default "tiny") */
} rl_recipe_gc_opts;

typedef struct rl_recipe_gc_result {
    int n_tensors;        /* (loss, tensor) pairs checked */
    int n_failed;         /* of which failed */
    int n_elems;          /* elements compared */
    double max_abs, max_rel; /* worst analytic-vs-numeric errors over everything */
    double seconds;       /* wall time */
    int n_splits;         /* batch-split check: (loss, micro-batch size) pairs compared */
    int n_split_dependent; /* of which the loss or a gradient changed with the split */
    char msg[768];        /* the first failure, or why the check could not run */
} rl_recipe_gc_result;

void rl_recipe_gc_opts_default(rl_recipe_gc_opts *o);

/* Checks recipe r (with the --set overrides given so far). Returns RL_OK when
 * the check ran, with res->n_failed telling whether every tensor passed; an
 * error status when the recipe does not compile or run (res->msg says why;
 * the diagnostics stay in r). Uses a context of its own. */
rl_status rl_recipe_gradcheck(rl_recipe *r, const rl_recipe_gc_opts *opts, rl_recipe_gc_result *res);

#ifdef __cplusplus
}
#endif
#endif
