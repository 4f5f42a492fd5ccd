/* tests/test_builtin_online.c - the group-sampled online built-ins
 * (recipes/grpo.recipe, dapo.recipe, rloo.recipe, reinforce_pp.recipe,
 * remax.recipe) against docs/objectives.md, and the group natives they use.
 * The by-hand tests run a recipe's rollout with tiny f64 GPT-2 models, read
 * the generated batch out of the program, read each model's per-token
 * log-probabilities and end scores back from the models themselves
 * (rl_model_token_logprobs, rl_model_end_score; checked against the program's
 * values), and recompute every reward, advantage, loss and metric in plain C
 * doubles from the formulas: group statistics by direct sums over each
 * prompt's rows, returns as direct sums over each row's response tokens.
 * The models' n_ctx is 9, so prompts of 7, 4 and 3 tokens get responses of
 * different lengths (2, 5 and 6 tokens at max_new = 6), which tells the loss
 * aggregation modes apart. Also: the group natives on hand-made tensors, the
 * shape and choice errors, generate's n, and each recipe's gradient check
 * with its batch-split report.
 */
#include <valgrind/valgrind.h>

#include "rl_test.h"
#include "rl_test_batch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_model.h"
#include "rl_rng.h"
#include "recipe_int.h"
#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_recipe_gradcheck.h"
#include "rl_test_recipe.h"

/* The suite's memcheck run (valgrind, 30-50x slower) runs only the group
 * natives' and the error tests of this file: compiling a group recipe runs
 * the shape check with B*G up to a few hundred rows, minutes under valgrind.
 * Every case is asserted in the plain and sanitizer runs. */
static void valgrind_skip(void) {
    if (RUNNING_ON_VALGRIND) skip();
}

/* ---- helpers -------------------------------------------------------------------------- */

#define NMAX 512 /* elements of a [rows, T] value */
#define RMAX 32  /* rows */

static double k3(double d) { return exp(-d) - 1 + d; }

/* -min(ratio * a, clamp(ratio, lo, hi) * a): the clipped surrogate of one token */
static double surrogate(double ratio, double a, double lo, double hi) {
    return -fmin(ratio * a, rl_test_clamp(ratio, lo, hi) * a);
}

static double loss0(const rl_recipe_program *p) {
    assert_int_equal(rl_recipe_n_losses(p), 1);
    assert_string_equal(rl_recipe_loss_at(p, 0)->name, "loss");
    return rl_test_get(rl_recipe_loss(p, 0), 0);
}

/* A tiny f64 GPT-2 with 9 positions: generation stops at n_ctx, so a row's
 * response length is min(max_new, 9 - its prompt length). */
static rl_model *tiny(rl_model_head kind, uint64_t seed) {
    rl_model_config cfg;
    assert_int_equal(rl_model_config_preset("tiny", &cfg), RL_OK);
    rl_model_config_set_ctx(&cfg, 9);
    rl_model *m = rl_model_new(g_ctx, &cfg, kind, RL_F64, seed);
    assert_non_null(m);
    return m;
}

/* Adds N(0, sigma) to every weight (a policy after some training). */
static void perturb(rl_model *m, double sigma, uint64_t seed) {
    rl_rng rng;
    rl_rng_seed(&rng, seed);
    for (int k = 0; k < m->n_tensors; k++)
        for (int64_t e = 0; e < m->tensors[k]->numel; e++)
            rl_tensor_set(g_ctx, m->tensors[k], e, rl_test_get(m->tensors[k], e) + sigma * rl_rng_normal(&rng));
}

/* Sets every weight of the score head to 0: every sequence scores 0 (the
 * head has no bias), so every group's rewards are equal. */
static void zero_scores(rl_model *rm) {
    for (int64_t k = 0; k < rm->score_w->numel; k++) rl_tensor_set(g_ctx, rm->score_w, k, 0);
}

typedef struct models {
    rl_model *pol, *ref, *rm;
} models;

static void models_new(models *m, uint64_t seed) {
    m->pol = tiny(RL_HEAD_LM, seed);
    m->ref = tiny(RL_HEAD_LM, seed + 1);
    m->rm = tiny(RL_HEAD_SCORE, seed + 2);
}

static void models_free(models *m) {
    rl_model_free(g_ctx, m->pol), rl_model_free(g_ctx, m->ref), rl_model_free(g_ctx, m->rm);
}

/* The prompt batch: 3 prompts of 7, 4 and 3 tokens (T = 7); its mask is unused. */
static void make_prompts(rl_test_batch *b, uint64_t seed) {
    rl_test_batch_make(g_ctx, b, 3, 7, (int[]){7, 4, 3}, (int[]){7, 4, 3}, seed);
}

/* Binds the models a recipe declares (ref only when given) and the prompts. */
static void bind_all(rl_recipe_program *p, const models *m, bool ref, rl_test_batch *pr) {
    assert_int_equal(rl_recipe_bind_model(p, "policy", m->pol), RL_OK);
    if (ref) assert_int_equal(rl_recipe_bind_model(p, "ref", m->ref), RL_OK);
    assert_int_equal(rl_recipe_bind_model(p, "reward_model", m->rm), RL_OK);
    assert_int_equal(rl_recipe_bind_tokens(p, "prompts", pr->ids, NULL, pr->attn), RL_OK);
}

/* A model output [rows, T] or [rows] read to the host with gradients off. */
typedef enum { OUT_LOGPROBS, OUT_END_SCORE } out_kind;

static void model_out(rl_model *m, out_kind k, rl_tensor *ids, rl_tensor *attn, double *out) {
    int was = rl_ctx_set_grad(g_ctx, 0);
    rl_tensor *t = k == OUT_LOGPROBS ? rl_model_token_logprobs(g_ctx, m, ids, attn) : rl_model_end_score(g_ctx, m, ids, attn);
    assert_non_null(t);
    for (int64_t i = 0; i < t->numel; i++) out[i] = rl_test_get(t, i);
    rl_ctx_set_grad(g_ctx, was);
}

/* A generated batch on the host with the models' outputs on it. */
typedef struct roll {
    int64_t R, T;
    int32_t ids[NMAX], mask[NMAX], attn[NMAX];
    rl_tensor *tids, *tattn;  /* the program's (valid until the next rollout) */
    double lp_old[NMAX], lp_ref[NMAX], score[RMAX], len[RMAX];
} roll;

/* Reads token batch `name` out of the program and the models' outputs on it:
 * lp_old from the policy, lp_ref from ref (NULL: lp_old, no KL), the end
 * scores from rm. */
static void read_roll(const rl_recipe_program *p, const char *name, rl_model *pol, rl_model *ref, rl_model *rm,
                      roll *g) {
    rl_recipe_tokens tk = rl_test_tokens_of(p, name);
    g->R = tk.ids->shape[0], g->T = tk.ids->shape[1];
    assert_true(g->R <= RMAX && g->R * g->T <= NMAX);
    size_t nb = sizeof(int32_t) * (size_t)(g->R * g->T);
    assert_int_equal(rl_tensor_read(g_ctx, tk.ids, g->ids, nb), RL_OK);
    assert_int_equal(rl_tensor_read(g_ctx, tk.mask, g->mask, nb), RL_OK);
    assert_int_equal(rl_tensor_read(g_ctx, tk.attn, g->attn, nb), RL_OK);
    g->tids = tk.ids, g->tattn = tk.attn;
    model_out(pol, OUT_LOGPROBS, g->tids, g->tattn, g->lp_old);
    if (ref) model_out(ref, OUT_LOGPROBS, g->tids, g->tattn, g->lp_ref);
    else memcpy(g->lp_ref, g->lp_old, sizeof(double) * (size_t)(g->R * g->T));
    model_out(rm, OUT_END_SCORE, g->tids, g->tattn, g->score);
    for (int64_t b = 0; b < g->R; b++) {
        g->len[b] = 0;
        for (int64_t t = 0; t < g->T; t++) g->len[b] += g->mask[b * g->T + t];
        assert_true(g->len[b] > 0);
    }
}

/* The policy's per-token log-probs on the batch now (after perturb). */
static void logprobs_now(rl_model *pol, const roll *g, double *lp) {
    model_out(pol, OUT_LOGPROBS, g->tids, g->tattn, lp);
}

/* sum_t mask * x over row b */
static double row_sum(const roll *g, const double *x, int64_t b) {
    double s = 0;
    for (int64_t t = 0; t < g->T; t++) s += g->mask[b * g->T + t] * x[b * g->T + t];
    return s;
}

/* The group of row i is rows [i / G * G, i / G * G + G): mean and std
 * (correction 1: unbiased, torch.std) over it. */
static double grp_mean(const double *r, int64_t G, int64_t i) {
    int64_t b0 = i / G * G;
    double s = 0;
    for (int64_t k = 0; k < G; k++) s += r[b0 + k];
    return s / (double)G;
}

static double grp_std(const double *r, int64_t G, int64_t i) {
    double m = grp_mean(r, G, i), s = 0;
    int64_t b0 = i / G * G;
    for (int64_t k = 0; k < G; k++) s += (r[b0 + k] - m) * (r[b0 + k] - m);
    return sqrt(s / (double)(G - 1));
}

static double batch_std(const double *r, int64_t n) {
    double m = 0, s = 0;
    for (int64_t i = 0; i < n; i++) m += r[i] / (double)n;
    for (int64_t i = 0; i < n; i++) s += (r[i] - m) * (r[i] - m);
    return sqrt(s / (double)(n - 1));
}

/* verl's loss_agg_mode over rows [r0, r1) of a per-token loss l. */
static double aggregate(const roll *g, const double *l, int64_t r0, int64_t r1, const char *mode, double norm) {
    double tot = 0, cnt = 0, seq = 0;
    for (int64_t b = r0; b < r1; b++) {
        double s = row_sum(g, l, b);
        tot += s, cnt += g->len[b];
        seq += !strcmp(mode, "seq_mean_token_mean") ? s / g->len[b] : s;
    }
    if (!strcmp(mode, "token_mean")) return tot / cnt;
    if (!strcmp(mode, "seq_mean_token_sum_norm")) return tot / ((double)(r1 - r0) * norm);
    return seq / (double)(r1 - r0);
}

/* The fixture's response lengths: each prompt's G rows get 2, 5 and 6 tokens. */
static void assert_lengths(const roll *g, int64_t G) {
    const double want[3] = {2, 5, 6};
    assert_int_equal(g->R, 3 * G);
    for (int64_t i = 0; i < g->R; i++) rl_test_assert_close(g->len[i], want[i / G], 0, "response length");
}

/* ---- grpo ------------------------------------------------------------------------------- */

/* One configuration of grpo by hand: G = 3, max_new = 6. */
static void grpo_case(const char *agg, const char *scale, const char *kl_in, double beta) {
    const int64_t G = 3;
    const double clip = 0.2, eps = 1e-4, max_new = 6;
    char s_agg[64], s_scale[64], s_kl[64], s_beta[64];
    snprintf(s_agg, sizeof s_agg, "loss_agg=%s", agg);
    snprintf(s_scale, sizeof s_scale, "scale_rewards=%s", scale);
    snprintf(s_kl, sizeof s_kl, "kl_in=%s", kl_in);
    snprintf(s_beta, sizeof s_beta, "beta=%.17g", beta);
    models m;
    models_new(&m, 11);
    rl_test_batch pr;
    make_prompts(&pr, 21);
    rl_recipe *r;
    rl_recipe_program *p =
        rl_test_builtin64("grpo", (const char *[]){"G=3", "max_new=6", s_agg, s_scale, s_kl, s_beta, NULL}, &r);
    /* with beta = 0 the reference is never read, so it is not bound */
    bind_all(p, &m, beta > 0, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    roll g;
    read_roll(p, "seq", m.pol, beta > 0 ? m.ref : NULL, m.rm, &g);
    assert_lengths(&g, G);
    const int64_t R = g.R, T = g.T, n = R * T;
    const bool in_loss = !strcmp(kl_in, "loss");
    double rew[RMAX], kl_seq[RMAX], adv[RMAX];
    for (int64_t i = 0; i < n; i++) rl_test_assert_close(rl_test_value(p, "lp_old", i), g.lp_old[i], 1e-12, "lp_old");
    for (int64_t b = 0; b < R; b++) {
        double d[NMAX];
        for (int64_t i = 0; i < n; i++) d[i] = g.lp_old[i] - g.lp_ref[i];
        kl_seq[b] = row_sum(&g, d, b);
        rew[b] = in_loss ? g.score[b] : g.score[b] - beta * kl_seq[b];
        rl_test_assert_close(rl_test_value(p, "score", b), g.score[b], 1e-12, "end score");
    }
    double sb = batch_std(rew, R);
    for (int64_t b = 0; b < R; b++) {
        double c = rew[b] - grp_mean(rew, G, b);
        adv[b] = !strcmp(scale, "none")    ? c
               : !strcmp(scale, "batch")   ? c / (sb + eps)
                                           : c / (grp_std(rew, G, b) + eps);
        rl_test_assert_close(rl_test_value(p, "adv", b), adv[b], 1e-12, "GRPO advantage");
    }
    /* at the rollout's parameters ratio = 1: each token's loss is -A (+ beta k3) */
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double l[NMAX];
    for (int64_t i = 0; i < n; i++)
        l[i] = -adv[i / T] + (in_loss ? beta * k3(g.lp_old[i] - g.lp_ref[i]) : 0);
    rl_test_assert_close(loss0(p), aggregate(&g, l, 0, R, agg, max_new), 1e-12, "GRPO loss at ratio 1");
    rl_test_assert_close(rl_test_metric(p, "clip_ratio"), 0, 0, "no clipping at ratio 1");
    rl_ctx_reset(g_ctx);
    /* a moved policy: the clipped surrogate and the KL by hand */
    perturb(m.pol, 0.05, 3);
    double lp[NMAX], kl_tok = 0, nm = 0, cr = 0;
    logprobs_now(m.pol, &g, lp);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    int clipped = 0, tokens = 0;
    for (int64_t i = 0; i < n; i++) {
        double ratio = exp(lp[i] - g.lp_old[i]), A = adv[i / T], kt = k3(lp[i] - g.lp_ref[i]);
        l[i] = surrogate(ratio, A, 1 - clip, 1 + clip) + (in_loss ? beta * kt : 0);
        if (!g.mask[i]) continue;
        tokens++, nm++;
        clipped += rl_test_clamp(ratio, 1 - clip, 1 + clip) != ratio;
        kl_tok += beta > 0 ? kt : 0;
        cr += (ratio < 1 - clip && A < 0) || (ratio > 1 + clip && A > 0);
    }
    assert_true(clipped > 0 && clipped < tokens); /* both arms of the clip */
    rl_test_assert_close(loss0(p), aggregate(&g, l, 0, R, agg, max_new), 1e-12, "GRPO loss");
    /* the metrics as TRL logs them */
    double reward = 0, rstd = 0, klm = 0, clen = 0;
    for (int64_t b = 0; b < R; b++) {
        reward += g.score[b] / (double)R, clen += g.len[b] / (double)R;
        rstd += (!strcmp(scale, "batch") ? sb : grp_std(rew, G, b)) / (double)R;
        klm += kl_seq[b] / (double)R;
    }
    rl_test_assert_close(rl_test_metric(p, "reward"), reward, 1e-12, "reward");
    rl_test_assert_close(rl_test_metric(p, "reward_std"), rstd, 1e-12, "reward_std");
    rl_test_assert_close(rl_test_metric(p, "frac_reward_zero_std"), 0, 0, "no group of equal rewards");
    rl_test_assert_close(rl_test_metric(p, "kl"), in_loss ? kl_tok / nm : klm, 1e-12, "kl");
    rl_test_assert_close(rl_test_metric(p, "clip_ratio"), cr / nm, 1e-15, "clip_ratio (region)");
    rl_test_assert_close(rl_test_metric(p, "completion_length"), clen, 1e-15, "completion length");
    /* a minibatch of one prompt takes its G adjacent rows: rows [G, 2G) */
    rl_ctx_reset(g_ctx);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, 1, 2), RL_OK);
    rl_test_assert_close(loss0(p), aggregate(&g, l, G, 2 * G, agg, max_new), 1e-12, "GRPO minibatch loss");
    rl_ctx_reset(g_ctx);
    /* equal rewards in every group (a reward model that scores 0): every
     * group has zero std and zero advantages; with the KL in the reward the
     * rewards differ again */
    if (in_loss) {
        rl_model *flat = tiny(RL_HEAD_SCORE, 99);
        zero_scores(flat);
        assert_int_equal(rl_recipe_bind_model(p, "reward_model", flat), RL_OK);
        assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
        for (int64_t b = 0; b < R; b++) rl_test_assert_close(rl_test_value(p, "adv", b), 0, 0, "no signal in an equal group");
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        rl_test_assert_close(rl_test_metric(p, "frac_reward_zero_std"), 1, 0, "every group has equal rewards");
        rl_ctx_reset(g_ctx);
        rl_model_free(g_ctx, flat);
    }
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    models_free(&m);
}

/* Every loss_agg mode, every scale_rewards mode and both kl_in modes, each
 * at least once (Dr.GRPO is seq_mean_token_sum_norm with scale_rewards none). */
static void test_grpo_by_hand(void **state) {
    (void)state;
    valgrind_skip();
    grpo_case("seq_mean_token_mean", "group", "loss", 0.3);   /* the paper's GRPO */
    grpo_case("token_mean", "batch", "reward", 0.3);
    grpo_case("seq_mean_token_sum", "none", "loss", 0.3);
    grpo_case("seq_mean_token_sum_norm", "none", "reward", 0.3); /* Dr.GRPO */
    grpo_case("token_mean", "group", "loss", 0);              /* TRL's beta = 0: no reference bound */
}

/* ---- dapo ------------------------------------------------------------------------------- */

static void test_dapo_by_hand(void **state) {
    (void)state;
    valgrind_skip();
    const int64_t G = 2;
    const double lo = 0.2, hi = 0.28, eps = 1e-6;
    models m;
    models_new(&m, 31);
    rl_test_batch pr;
    make_prompts(&pr, 41);
    rl_recipe *r;
    /* L_max = 6, L_cache = 3: lengths 2, 5 and 6 are unpunished, -2/3 and -1 */
    rl_recipe_program *p = rl_test_builtin64("dapo", (const char *[]){"G=2", "max_new=6", "L_cache=3", NULL}, &r);
    rl_test_assert_close(rl_recipe_hyper(p, "eps_low")->num, 0.2, 0, "eps_low");
    rl_test_assert_close(rl_recipe_hyper(p, "eps_high")->num, 0.28, 0, "eps_high");
    bind_all(p, &m, false, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    roll g;
    read_roll(p, "seq", m.pol, NULL, m.rm, &g);
    assert_lengths(&g, G);
    const int64_t R = g.R, T = g.T, n = R * T;
    const double pen_want[3] = {0, -2.0 / 3.0, -1};
    double rew[RMAX], adv[RMAX];
    for (int64_t b = 0; b < R; b++) {
        /* the soft overlong punishment, piecewise as the paper writes it */
        double L = g.len[b], pen = L <= 6 - 3 ? 0 : L <= 6 ? ((6 - 3) - L) / 3 : -1;
        rl_test_assert_close(pen, pen_want[b / G], 1e-15, "the fixture's penalties");
        rl_test_assert_close(rl_test_value(p, "pen", b), pen, 1e-15, "overlong penalty");
        rew[b] = g.score[b] + pen;
    }
    for (int64_t b = 0; b < R; b++) {
        adv[b] = (rew[b] - grp_mean(rew, G, b)) / (grp_std(rew, G, b) + eps);
        rl_test_assert_close(rl_test_value(p, "adv", b), adv[b], 1e-12, "DAPO advantage");
    }
    rl_ctx_reset(g_ctx);
    perturb(m.pol, 0.05, 16);
    double lp[NMAX], l[NMAX], nm = 0, clo = 0, chi = 0;
    int higher = 0;
    logprobs_now(m.pol, &g, lp);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    for (int64_t i = 0; i < n; i++) {
        double ratio = exp(lp[i] - g.lp_old[i]), A = adv[i / T];
        l[i] = surrogate(ratio, A, 1 - lo, 1 + hi);
        if (!g.mask[i]) continue;
        nm++;
        clo += ratio < 1 - lo && A < 0, chi += ratio > 1 + hi && A > 0;
        higher += A > 0 && ratio > 1 + lo && ratio < 1 + hi; /* where clip-higher changes the loss */
    }
    assert_true(higher > 0);
    rl_test_assert_close(loss0(p), aggregate(&g, l, 0, R, "token_mean", 0), 1e-12, "DAPO token-mean loss");
    double reward = 0, shaped = 0, pen = 0, over = 0;
    for (int64_t b = 0; b < R; b++)
        reward += g.score[b] / (double)R, shaped += rew[b] / (double)R, pen += (rew[b] - g.score[b]) / (double)R,
            over += (rew[b] - g.score[b] < 0) / (double)R;
    rl_test_assert_close(rl_test_metric(p, "reward"), reward, 1e-12, "reward");
    rl_test_assert_close(rl_test_metric(p, "shaped_reward"), shaped, 1e-12, "shaped reward");
    rl_test_assert_close(rl_test_metric(p, "overlong_penalty"), pen, 1e-12, "overlong penalty");
    rl_test_assert_close(rl_test_metric(p, "overlong_frac"), over, 1e-15, "overlong fraction");
    rl_test_assert_close(rl_test_metric(p, "clip_ratio_low"), clo / nm, 1e-15, "clip_ratio_low");
    rl_test_assert_close(rl_test_metric(p, "clip_ratio_high"), chi / nm, 1e-15, "clip_ratio_high");
    rl_test_assert_close(rl_test_metric(p, "frac_reward_zero_std"), 0, 0, "no equal group");
    rl_ctx_reset(g_ctx);
    /* dynamic sampling is not done: with scores of 0 each group's rewards are
     * its (equal) length penalties, every group would be dropped, and the
     * recipe logs that fraction */
    rl_model *flat = tiny(RL_HEAD_SCORE, 98);
    zero_scores(flat);
    assert_int_equal(rl_recipe_bind_model(p, "reward_model", flat), RL_OK);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_test_assert_close(rl_test_metric(p, "frac_reward_zero_std"), 1, 0, "every group would be dropped");
    for (int64_t b = 0; b < R; b++) rl_test_assert_close(rl_test_value(p, "adv", b), 0, 0, "no signal");
    rl_ctx_reset(g_ctx);
    rl_model_free(g_ctx, flat);
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    models_free(&m);
}

/* ---- rloo ------------------------------------------------------------------------------- */

static void test_rloo_by_hand(void **state) {
    (void)state;
    valgrind_skip();
    const int64_t G = 3;
    const double beta = 0.2, clip = 0.2;
    models m;
    models_new(&m, 51);
    rl_test_batch pr;
    make_prompts(&pr, 61);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("rloo", (const char *[]){"G=3", "max_new=6", "beta=0.2", NULL}, &r);
    bind_all(p, &m, true, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    roll g;
    read_roll(p, "seq", m.pol, m.ref, m.rm, &g);
    assert_lengths(&g, G);
    const int64_t R = g.R, T = g.T, n = R * T;
    double rew[RMAX], adv[RMAX], kl_seq[RMAX], d[NMAX], lp_seq_old[RMAX];
    for (int64_t i = 0; i < n; i++) d[i] = g.lp_old[i] - g.lp_ref[i];
    for (int64_t b = 0; b < R; b++) {
        kl_seq[b] = row_sum(&g, d, b);
        rew[b] = g.score[b] - beta * kl_seq[b];
        lp_seq_old[b] = row_sum(&g, g.lp_old, b);
    }
    for (int64_t b = 0; b < R; b++) {
        double others = 0;
        for (int64_t k = b / G * G; k < b / G * G + G; k++) others += k == b ? 0 : rew[k];
        adv[b] = rew[b] - others / (double)(G - 1); /* the mean of the other G - 1 */
        rl_test_assert_close(rl_test_value(p, "adv", b), adv[b], 1e-12, "RLOO advantage");
    }
    rl_ctx_reset(g_ctx);
    perturb(m.pol, 0.02, 7);
    double lp[NMAX], want = 0, cr = 0;
    int clipped = 0;
    logprobs_now(m.pol, &g, lp);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    for (int64_t b = 0; b < R; b++) {
        double rho = exp(row_sum(&g, lp, b) - lp_seq_old[b]);
        want += surrogate(rho, adv[b], 1 - clip, 1 + clip) / (double)R;
        clipped += rl_test_clamp(rho, 1 - clip, 1 + clip) != rho;
        cr += ((rho < 1 - clip && adv[b] < 0) || (rho > 1 + clip && adv[b] > 0)) / (double)R;
    }
    assert_true(clipped > 0 && clipped < R); /* the sequence ratio is clipped for some samples */
    rl_test_assert_close(loss0(p), want, 1e-12, "RLOO loss: clipped sequence-level surrogate");
    double reward = 0, kl_tok = 0, nm = 0;
    for (int64_t b = 0; b < R; b++) reward += g.score[b] / (double)R, kl_tok += kl_seq[b], nm += g.len[b];
    rl_test_assert_close(rl_test_metric(p, "reward"), reward, 1e-12, "reward");
    rl_test_assert_close(rl_test_metric(p, "reward_std"), batch_std(g.score, R), 1e-12, "reward_std (of the raw scores)");
    rl_test_assert_close(rl_test_metric(p, "kl"), kl_tok / nm, 1e-12, "kl (k1 token mean)");
    rl_test_assert_close(rl_test_metric(p, "clip_ratio"), cr, 1e-15, "clip_ratio");
    rl_test_free_program(p, r);
    /* G = 1 leaves no other sample: the leave-one-out baseline refuses it at its call */
    p = rl_test_builtin64("rloo", (const char *[]){"G=1", "max_new=2", NULL}, &r);
    bind_all(p, &m, true, &pr);
    assert_int_not_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    const char *e = rl_recipe_program_error(p);
    assert_contains(e, "group_loo");
    assert_contains(e, "use n >= 2");
    assert_contains(e, "rloo.recipe:");
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    models_free(&m);
}

/* ---- reinforce_pp ----------------------------------------------------------------------- */

static void rpp_case(int64_t G, bool baseline, int est) {
    const double beta = 0.1, clip = 0.2;
    char s_g[32], s_base[32], s_est[32];
    snprintf(s_g, sizeof s_g, "G=%lld", (long long)G);
    snprintf(s_base, sizeof s_base, "baseline=%s", baseline ? "true" : "false");
    snprintf(s_est, sizeof s_est, "kl_estimator=k%d", est);
    models m;
    models_new(&m, 71);
    rl_test_batch pr;
    make_prompts(&pr, 81);
    rl_recipe *r;
    rl_recipe_program *p =
        rl_test_builtin64("reinforce_pp", (const char *[]){s_g, "max_new=6", "beta=0.1", s_base, s_est, NULL}, &r);
    bind_all(p, &m, true, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    roll g;
    read_roll(p, "seq", m.pol, m.ref, m.rm, &g);
    assert_lengths(&g, G);
    const int64_t R = g.R, T = g.T, n = R * T;
    double kl[NMAX], rt[NMAX], ret[NMAX], adv[NMAX], s[RMAX];
    for (int64_t b = 0; b < R; b++) s[b] = baseline ? g.score[b] - grp_mean(g.score, G, b) : g.score[b];
    for (int64_t b = 0; b < R; b++) {
        int64_t last = -1;
        for (int64_t t = 0; t < T; t++)
            if (g.mask[b * T + t]) last = t;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t;
            double dd = g.lp_old[i] - g.lp_ref[i];
            kl[i] = est == 1 ? dd : dd * dd / 2;
            rt[i] = (t == last ? s[b] : 0) - beta * kl[i];
        }
        /* the return with gamma 1: the sum of the rewards of this and every later response token */
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t;
            ret[i] = 0;
            for (int64_t k = t; k < T && g.mask[i]; k++) ret[i] += g.mask[b * T + k] * rt[b * T + k];
        }
    }
    /* whitened over every response token of the batch: unbiased variance, eps 1e-8 */
    double mean = 0, nm = 0, var = 0;
    for (int64_t i = 0; i < n; i++) mean += g.mask[i] * ret[i], nm += g.mask[i];
    mean /= nm;
    for (int64_t i = 0; i < n; i++) var += g.mask[i] * (ret[i] - mean) * (ret[i] - mean);
    var /= nm - 1;
    for (int64_t i = 0; i < n; i++) {
        adv[i] = (ret[i] - mean) / sqrt(var + 1e-8);
        if (!g.mask[i]) continue;
        rl_test_assert_close(rl_test_value(p, "ret", i), ret[i], 1e-12, "REINFORCE++ return");
        rl_test_assert_close(rl_test_value(p, "adv", i), adv[i], 1e-12, "REINFORCE++ whitened advantage");
    }
    rl_ctx_reset(g_ctx);
    perturb(m.pol, 0.05, 9);
    double lp[NMAX], pg = 0, klm = 0, rmean = 0;
    int clipped = 0;
    logprobs_now(m.pol, &g, lp);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    for (int64_t i = 0; i < n; i++) {
        if (!g.mask[i]) continue;
        double ratio = exp(lp[i] - g.lp_old[i]);
        pg += surrogate(ratio, adv[i], 1 - clip, 1 + clip) / nm;
        clipped += rl_test_clamp(ratio, 1 - clip, 1 + clip) != ratio;
        klm += kl[i] / (double)R, rmean += ret[i] / nm;
    }
    assert_true(clipped > 0 && clipped < nm);
    rl_test_assert_close(loss0(p), pg, 1e-12, "REINFORCE++ loss (token mean)");
    rl_test_assert_close(rl_test_metric(p, "kl"), klm, 1e-12, "kl in the reward, per sample");
    rl_test_assert_close(rl_test_metric(p, "return"), rmean, 1e-12, "mean return");
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    models_free(&m);
}

static void test_reinforce_pp_by_hand(void **state) {
    (void)state;
    valgrind_skip();
    rpp_case(1, false, 1); /* OpenRLHF's default: one sample per prompt, k1 */
    rpp_case(3, true, 2);  /* REINFORCE++-baseline with k2 */
}

/* ---- remax ------------------------------------------------------------------------------ */

static void remax_case(double beta) {
    char s_beta[64];
    snprintf(s_beta, sizeof s_beta, "beta=%.17g", beta);
    models m;
    models_new(&m, 91);
    rl_test_batch pr;
    make_prompts(&pr, 101);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("remax", (const char *[]){"max_new=6", s_beta, NULL}, &r);
    bind_all(p, &m, beta > 0, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    roll g, gr;
    read_roll(p, "seq", m.pol, beta > 0 ? m.ref : NULL, m.rm, &g);
    read_roll(p, "greedy", m.pol, NULL, m.rm, &gr);
    assert_lengths(&g, 1);
    assert_lengths(&gr, 1);
    const int64_t B = g.R, T = g.T, n = B * T;
    /* the baseline's response is argmax decoding: each generated token is the
     * argmax of the policy's logits at the position before it */
    {
        int was = rl_ctx_set_grad(g_ctx, 0);
        rl_tensor *lg = rl_model_logits(g_ctx, m.pol, gr.tids);
        const int64_t V = lg->shape[2];
        for (int64_t i = 0; i < gr.R * gr.T; i++) {
            if (!gr.mask[i]) continue;
            int64_t best = 0;
            for (int64_t k = 1; k < V; k++)
                if (rl_test_get(lg, (i - 1) * V + k) > rl_test_get(lg, (i - 1) * V + best)) best = k;
            assert_int_equal(gr.ids[i], best);
        }
        rl_ctx_set_grad(g_ctx, was);
    }
    double adv[RMAX], d[NMAX], kl_seq[RMAX];
    for (int64_t i = 0; i < n; i++) d[i] = g.lp_old[i] - g.lp_ref[i];
    for (int64_t b = 0; b < B; b++) {
        kl_seq[b] = row_sum(&g, d, b);
        adv[b] = g.score[b] - beta * kl_seq[b] - gr.score[b];
        rl_test_assert_close(rl_test_value(p, "base", b), gr.score[b], 1e-12, "the greedy response's reward");
        rl_test_assert_close(rl_test_value(p, "adv", b), adv[b], 1e-12, "ReMax advantage");
    }
    if (beta > 0) assert_true(fabs(kl_seq[0]) > 0);
    for (int epoch = 0; epoch < 2; epoch++) {
        double lp[NMAX], want = 0, rew = 0, rg = 0, am = 0, kl = 0;
        logprobs_now(m.pol, &g, lp);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        for (int64_t b = 0; b < B; b++) {
            want += -adv[b] * row_sum(&g, lp, b) / (double)B;
            rew += g.score[b] / (double)B, rg += gr.score[b] / (double)B, am += adv[b] / (double)B;
            kl += kl_seq[b] / (double)B;
        }
        rl_test_assert_close(loss0(p), want, 1e-12, "ReMax REINFORCE loss");
        rl_test_assert_close(rl_test_metric(p, "reward"), rew, 1e-12, "reward");
        rl_test_assert_close(rl_test_metric(p, "reward_greedy"), rg, 1e-12, "reward of the greedy responses");
        rl_test_assert_close(rl_test_metric(p, "advantage"), am, 1e-12, "advantage");
        rl_test_assert_close(rl_test_metric(p, "kl"), kl, 1e-12, "kl");
        rl_ctx_reset(g_ctx);
        perturb(m.pol, 0.05, 11); /* the second epoch: a moved policy, the same advantages */
    }
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    models_free(&m);
}

static void test_remax_by_hand(void **state) {
    (void)state;
    valgrind_skip();
    remax_case(0);   /* the paper: no KL, so no reference is bound */
    remax_case(0.1); /* k1 of the sampled response subtracted from its reward */
}

/* ---- defaults -------------------------------------------------------------------------- */

static double hyper(const rl_recipe_program *p, const char *name) {
    const rl_recipe_hyper_info *h = rl_recipe_hyper(p, name);
    if (!h) fail_msg("no hyper '%s'", name);
    return h->num;
}

static const char *hyper_str(const rl_recipe_program *p, const char *name) {
    const rl_recipe_hyper_info *h = rl_recipe_hyper(p, name);
    if (!h || !h->str) fail_msg("no string hyper '%s'", name);
    return h->str;
}

/* The defaults docs/objectives.md gives, with their sources (the recipes' comments). */
static void test_defaults(void **state) {
    (void)state;
    valgrind_skip();
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("grpo", NULL, &r);
    rl_test_assert_close(hyper(p, "lr"), 1e-6, 0, "grpo lr (TRL)");
    rl_test_assert_close(rl_recipe_model_at(p, 0)->optim.lr, 1e-6, 0, "grpo policy's optimizer lr");
    rl_test_assert_close(hyper(p, "G"), 8, 0, "grpo G (TRL num_generations)");
    rl_test_assert_close(hyper(p, "beta"), 0.04, 0, "grpo beta (paper)");
    rl_test_assert_close(hyper(p, "clip"), 0.2, 0, "grpo clip");
    rl_test_assert_close(hyper(p, "std_eps"), 1e-4, 0, "grpo std_eps (TRL)");
    rl_test_assert_close(hyper(p, "max_new"), 256, 0, "grpo max_new (TRL)");
    assert_string_equal(hyper_str(p, "kl_in"), "loss");
    assert_string_equal(hyper_str(p, "loss_agg"), "seq_mean_token_mean");
    assert_string_equal(hyper_str(p, "scale_rewards"), "group");
    rl_test_free_program(p, r);
    p = rl_test_builtin64("dapo", NULL, &r);
    rl_test_assert_close(hyper(p, "eps_low"), 0.2, 0, "dapo eps_low");
    rl_test_assert_close(hyper(p, "eps_high"), 0.28, 0, "dapo eps_high");
    rl_test_assert_close(hyper(p, "G"), 16, 0, "dapo G");
    rl_test_assert_close(hyper(p, "L_cache"), 256.0 / 5, 1e-15, "dapo L_cache = max_new / 5");
    rl_test_assert_close(hyper(p, "std_eps"), 1e-6, 0, "dapo std_eps (verl)");
    rl_test_free_program(p, r);
    /* L_cache follows max_new: DAPO's own 4096 of 20480 */
    p = rl_test_builtin64("dapo", (const char *[]){"max_new=20480", NULL}, &r);
    rl_test_assert_close(hyper(p, "L_cache"), 4096, 0, "dapo L_cache at L_max 20480");
    rl_test_free_program(p, r);
    p = rl_test_builtin64("rloo", NULL, &r);
    rl_test_assert_close(hyper(p, "G"), 2, 0, "rloo G (TRL)");
    rl_test_assert_close(hyper(p, "beta"), 0.05, 0, "rloo beta (TRL)");
    rl_test_assert_close(hyper(p, "clip"), 0.2, 0, "rloo clip (TRL)");
    rl_test_free_program(p, r);
    p = rl_test_builtin64("reinforce_pp", NULL, &r);
    rl_test_assert_close(hyper(p, "G"), 1, 0, "reinforce_pp G (OpenRLHF)");
    rl_test_assert_close(hyper(p, "beta"), 0.01, 0, "reinforce_pp beta (OpenRLHF)");
    rl_test_assert_close(hyper(p, "baseline"), 0, 0, "reinforce_pp baseline off");
    assert_string_equal(hyper_str(p, "kl_estimator"), "k1");
    rl_test_free_program(p, r);
    p = rl_test_builtin64("remax", NULL, &r);
    rl_test_assert_close(hyper(p, "beta"), 0, 0, "remax beta (paper)");
    rl_test_assert_close(hyper(p, "lr"), 1e-6, 0, "remax lr (verl)");
    rl_test_free_program(p, r);
}

/* ---- the group natives by hand ---------------------------------------------------------- */

/* Literal group sizes (a literal n is a number, not a dim) over inputs of
 * literal sizes, so the shape check needs no B*G. */
static void test_group_natives(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe g : fullbatch\n"
                                 "input x : f32[6]\n"
                                 "input y : f32[2, 2]\n"
                                 "param w = 1 : sgd(lr = 0.1)\n"
                                 "xw = x * w\n"
                                 "gm = group_mean(xw, 3)\n"
                                 "gs = group_sum(xw, 3)\n"
                                 "sd1 = group_std(xw, 3)\n"
                                 "sd0 = group_std(xw, 3, correction = 0)\n"
                                 "lo = group_loo(xw, 3)\n"
                                 "bc = group_broadcast(gm, 3)\n"
                                 "yb = group_broadcast(y * w, 2)\n"
                                 "ym = group_mean(yb, 2)\n"
                                 "lo2 = group_loo(xw, 2)\n"
                                 "loss = mean(gm) + mean(gs) + mean(sd1) + mean(sd0) + mean(lo) + mean(bc)\n"
                                 "     + mean(yb) + mean(ym) + mean(lo2)\n");
    rl_recipe_program *p = rl_test_must_compile(r, RL_F64, false);
    assert_int_equal(rl_recipe_n_warnings(r), 0);
    const double hx[6] = {1, 2, 4, -1, 0, 7}, hy[4] = {1, -2, 3, 5};
    rl_tensor *tx = rl_test_tensor_of(RL_F64, 1, (int64_t[]){6}, hx), *ty = rl_test_tensor_of(RL_F64, 2, (int64_t[]){2, 2}, hy);
    assert_int_equal(rl_recipe_bind_tensor(p, "x", tx), RL_OK);
    assert_int_equal(rl_recipe_bind_tensor(p, "y", ty), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    /* groups {1, 2, 4} and {-1, 0, 7} */
    const double gm[2] = {7.0 / 3, 2}, gs[2] = {7, 6};
    const double sd1[2] = {sqrt(7.0 / 3), sqrt(19.0)}, sd0[2] = {sqrt(14.0) / 3, sqrt(38.0 / 3)};
    const double lo[6] = {3, 2.5, 1.5, 3.5, 3, -0.5};
    /* groups of 2: {1, 2}, {4, -1}, {0, 7}: the other one */
    const double lo2[6] = {2, 1, -1, 4, 7, 0};
    double want = 0;
    for (int k = 0; k < 2; k++) {
        rl_test_assert_close(rl_test_value(p, "gm", k), gm[k], 1e-15, "group_mean");
        rl_test_assert_close(rl_test_value(p, "gs", k), gs[k], 1e-15, "group_sum");
        rl_test_assert_close(rl_test_value(p, "sd1", k), sd1[k], 1e-15, "group_std, unbiased");
        rl_test_assert_close(rl_test_value(p, "sd0", k), sd0[k], 1e-15, "group_std, correction 0");
        want += (gm[k] + gs[k] + sd1[k] + sd0[k]) / 2 + gm[k] / 2;
    }
    for (int i = 0; i < 6; i++) {
        rl_test_assert_close(rl_test_value(p, "lo", i), lo[i], 1e-15, "group_loo: the mean of the other two");
        rl_test_assert_close(rl_test_value(p, "lo2", i), lo2[i], 1e-15, "group_loo of pairs");
        rl_test_assert_close(rl_test_value(p, "bc", i), gm[i / 3], 1e-15, "group_broadcast: each row n times, adjacent");
        want += (lo[i] + lo2[i]) / 6;
    }
    /* y [2, 2] -> [4, 2]: rows 0, 0, 1, 1; and its group mean gives y back */
    const int rows[4] = {0, 0, 1, 1};
    for (int i = 0; i < 4; i++)
        for (int c = 0; c < 2; c++) rl_test_assert_close(rl_test_value(p, "yb", i * 2 + c), hy[rows[i] * 2 + c], 0, "broadcast rows");
    for (int i = 0; i < 4; i++) rl_test_assert_close(rl_test_value(p, "ym", i), hy[i], 1e-15, "group_mean of a broadcast");
    want += (hy[0] + hy[1] + hy[2] + hy[3]) / 4 * 2;
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want, 1e-14, "the loss");
    /* every term is w times a constant (a std scales with |w|): dloss/dw = loss at w = 1 */
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    rl_test_assert_close(rl_test_get(rl_recipe_param_at(p, 0)->tensor->grad, 0), want, 1e-12, "dloss/dw through the natives");
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_tensor_free(g_ctx, tx), rl_tensor_free(g_ctx, ty);
}

/* ---- errors ------------------------------------------------------------------------------ */

/* The first error of src (in position order) is msg at line:col, with hint
 * when hint is not NULL, in file (t.recipe or --set). */
static void expect_error_in(rl_recipe *r, const char *file, int line, int col, const char *msg, const char *hint) {
    rl_recipe_program *p = rl_test_compile(r, RL_F32, false);
    if (p) {
        rl_recipe_print_diags(r, stderr);
        rl_recipe_program_free(p);
        fail_msg("expected an error '%s' but the recipe compiled", msg);
    }
    const rl_recipe_diag *d = rl_recipe_first_error(r);
    assert_non_null(d);
    if (strcmp(d->msg, msg) != 0 || d->line != line || d->col != col || strcmp(d->file, file) != 0 ||
        (hint && (!d->hint || strcmp(d->hint, hint) != 0))) {
        rl_recipe_print_diags(r, stderr);
        fail_msg("expected %s:%d:%d '%s' (hint '%s'), got %s:%d:%d '%s' (hint '%s')", file, line, col, msg,
                 hint ? hint : "-", d->file, d->line, d->col, d->msg, d->hint ? d->hint : "-");
    }
}

static void expect_error(const char *src, int line, int col, const char *msg, const char *hint) {
    rl_recipe *r = rl_test_parse(src);
    expect_error_in(r, "t.recipe", line, col, msg, hint);
    rl_recipe_free(r);
}

#define NOT_GROUPED(who, rows, n)                                                                                  \
    who ": x has [" rows "] rows, not a multiple of the group size [" n "] (x must have B*G rows, each prompt's " \
        "G samples adjacent, as generate(..., n = G) gives)"

static void test_group_errors(void **state) {
    (void)state;
    /* a group size that does not divide the rows: [B] rows are not B*G */
    expect_error("recipe a : supervised\ninput x : f32[B]\nhyper G = 4\nparam w = 1 : sgd(lr = 0.1)\n"
                 "m = group_mean(x * w, G)\nloss = mean(m)\n",
                 5, 5, NOT_GROUPED("group_mean", "B", "G"), NULL);
    expect_error("recipe a : supervised\ninput x : f32[B, T]\nhyper G = 4\nparam w = 1 : sgd(lr = 0.1)\n"
                 "loss = mean(w * group_sum(x, G))\n",
                 5, 17, NOT_GROUPED("group_sum", "B", "G"), NULL);
    expect_error("recipe a : supervised\ninput x : f32[B]\nparam w = 1 : sgd(lr = 0.1)\n"
                 "s = group_std(x * w, 4)\nloss = mean(s)\n",
                 4, 5, NOT_GROUPED("group_std", "B", "4"), NULL);
    expect_error("recipe a : supervised\ninput x : f32[B]\nhyper G = 2\nparam w = 1 : sgd(lr = 0.1)\n"
                 "loss = mean(group_loo(x * w, G))\n",
                 5, 13, NOT_GROUPED("group_loo", "B", "G"), NULL);
    /* a per-prompt value against a per-sample one: [B*G] - [B] */
    expect_error("recipe c : online\ninput prompts : tokens\nhyper G = 4\nmodel policy : lm trainable\n"
                 "model reward_model : score frozen\n"
                 "rollout {\n  seq = generate(policy, prompts, n = G, max_new = 4)\n"
                 "  score = end_score(reward_model, seq)\n  adv = score - group_mean(score, G)\n}\n"
                 "loss = mean(seq_sum(token_logprobs(policy, seq), seq.mask) * adv)\n",
                 9, 9, "shapes f32 [B*G] and f32 [B] do not broadcast",
                 "aligned from the right, each axis must be equal or 1 (sum or mean over an axis to remove it)");
    /* a hyper outside its choices: the recipe's own value, then --set */
    const char *choice = "recipe d : supervised\ninput x : f32[B]\nhyper mode = \"%s\" in [\"group\", \"batch\", \"none\"]\n"
                         "param w = 1 : sgd(lr = 0.1)\nloss = mean(x * w)\n";
    char src[512];
    snprintf(src, sizeof src, choice, "grp");
    expect_error(src, 3, 14, "hyper 'mode' is \"grp\", which is not a choice", "one of: group, batch, none");
    snprintf(src, sizeof src, choice, "group");
    rl_recipe *r = rl_test_parse(src);
    rl_recipe_set_arg(r, "mode=bat");
    expect_error_in(r, "--set", 1, 6, "--set mode=\"bat\" is not a choice", "one of: group, batch, none");
    rl_recipe_free(r);
    /* and on a built-in */
    r = rl_test_load_builtin("grpo", NULL);
    rl_recipe_set_arg(r, "loss_agg=token_sum");
    expect_error_in(r, "--set", 1, 10, "--set loss_agg=\"token_sum\" is not a choice",
                    "one of: token_mean, seq_mean_token_mean, seq_mean_token_sum, seq_mean_token_sum_norm");
    rl_recipe_free(r);
}

/* generate(..., n = G): B*G rows, prompt b's in rows b*G .. b*G + G - 1, each
 * sampled on its own; --set G changes the rows. */
static void test_generate_groups(void **state) {
    (void)state;
    valgrind_skip();
    const char *src = "recipe n : online\ninput prompts : tokens\nhyper G = 3\nmodel policy : lm trainable\n"
                      "rollout {\n  seq = generate(policy, prompts, n = G, max_new = 2)\n}\n"
                      "loss = -masked_mean(token_logprobs(policy, seq), seq.mask)\n";
    rl_model *pol = tiny(RL_HEAD_LM, 5);
    rl_test_batch pr;
    rl_test_batch_make(g_ctx, &pr, 2, 4, (int[]){4, 2}, (int[]){4, 2}, 8);
    const int64_t groups[3] = {3, 4, 1};
    for (int c = 0; c < 3; c++) {
        rl_recipe *r = rl_test_parse(src);
        char set[32];
        snprintf(set, sizeof set, "G=%lld", (long long)groups[c]);
        if (c > 0) assert_int_equal(rl_recipe_set_arg(r, set), RL_OK);
        rl_recipe_program *p = rl_test_compile_clean(r, 3);
        assert_int_equal(rl_recipe_bind_model(p, "policy", pol), RL_OK);
        assert_int_equal(rl_recipe_bind_tokens(p, "prompts", pr.ids, NULL, pr.attn), RL_OK);
        assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
        rl_recipe_tokens tk = rl_test_tokens_of(p, "seq");
        const int64_t G = groups[c], R = tk.ids->shape[0], T = tk.ids->shape[1];
        assert_int_equal(R, 2 * G);
        int32_t ids[256], mask[256], attn[256];
        assert_true(R * T <= 256);
        size_t nb = sizeof(int32_t) * (size_t)(R * T);
        assert_int_equal(rl_tensor_read(g_ctx, tk.ids, ids, nb), RL_OK);
        assert_int_equal(rl_tensor_read(g_ctx, tk.mask, mask, nb), RL_OK);
        assert_int_equal(rl_tensor_read(g_ctx, tk.attn, attn, nb), RL_OK);
        int differ = 0;
        for (int64_t i = 0; i < R; i++) {
            const int64_t b = i / G, plen = b == 0 ? 4 : 2;
            for (int64_t t = 0; t < plen; t++) {
                assert_int_equal(ids[i * T + t], pr.hid[b * 4 + t]); /* prompt b's tokens */
                assert_int_equal(mask[i * T + t], 0);
                assert_int_equal(attn[i * T + t], 1);
            }
            for (int64_t t = plen; t < plen + 2; t++) assert_int_equal(mask[i * T + t], 1); /* 2 new tokens */
            for (int64_t t = plen + 2; t < T; t++) assert_int_equal(attn[i * T + t], 0);
            if (i % G) differ += memcmp(ids + i * T, ids + (i - 1) * T, sizeof(int32_t) * (size_t)T) != 0;
        }
        if (G > 1) assert_true(differ > 0); /* the samples of a group are drawn independently */
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        rl_ctx_reset(g_ctx);
        rl_recipe_program_free(p);
        rl_recipe_free(r);
    }
    rl_test_batch_free(g_ctx, &pr);
    rl_model_free(g_ctx, pol);
}

/* ---- gradient checks and the batch-split report ------------------------------------------- */

/* `rlhf gradcheck NAME --splits --batch 4 [--set ...]` in-process: every
 * tensor of the policy (the only trainable) passes against f64 central
 * differences, and want_dependent of the 2 (loss, split) pairs depend on
 * the split. Group sizes are 2 to keep it quick; max_new is the check's
 * own 6 new tokens at most, so response lengths differ. */
static void check_and_split(const char *name, const char *const *sets, int want_dependent) {
    rl_recipe *r = rl_test_load_builtin(name, sets);
    rl_recipe_gc_opts o;
    rl_recipe_gc_opts_default(&o);
    o.batch = 4;
    o.splits = 1;
    rl_recipe_gc_result res;
    rl_test_gradcheck_must_pass(r, &o, &res, name);
    rl_model *lm = tiny(RL_HEAD_LM, 1);
    assert_int_equal(res.n_tensors, lm->n_tensors);
    rl_model_free(g_ctx, lm);
    assert_true(res.max_rel < 1e-4);
    assert_int_equal(res.n_splits, 2);
    if (res.n_split_dependent != want_dependent)
        fail_msg("%s: %d split-dependent, want %d", name, res.n_split_dependent, want_dependent);
    rl_recipe_free(r);
}

static void test_gradcheck_and_splits(void **state) {
    (void)state;
    valgrind_skip();
    /* the token mean divides each micro-batch by its own token count */
    check_and_split("grpo", (const char *[]){"G=2", "loss_agg=token_mean", "kl_in=reward", NULL}, 2);
    /* per-sequence means and the constant normaliser do not */
    check_and_split("grpo", (const char *[]){"G=2", "scale_rewards=batch", NULL}, 0);
    check_and_split("grpo", (const char *[]){"G=2", "loss_agg=seq_mean_token_sum_norm", "scale_rewards=none", NULL}, 0);
    check_and_split("dapo", (const char *[]){"G=2", NULL}, 2);
    check_and_split("rloo", NULL, 0);
    check_and_split("reinforce_pp", (const char *[]){"G=2", "baseline=true", NULL}, 2);
    check_and_split("remax", (const char *[]){"beta=0.1", NULL}, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grpo_by_hand),
        cmocka_unit_test(test_dapo_by_hand),
        cmocka_unit_test(test_rloo_by_hand),
        cmocka_unit_test(test_reinforce_pp_by_hand),
        cmocka_unit_test(test_remax_by_hand),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_group_natives),
        cmocka_unit_test(test_group_errors),
        cmocka_unit_test(test_generate_groups),
        cmocka_unit_test(test_gradcheck_and_splits),
    };
    return cmocka_run_group_tests(tests, rl_test_ctx_setup, rl_test_ctx_teardown);
}
