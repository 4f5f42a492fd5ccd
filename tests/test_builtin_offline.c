/* tests/test_builtin_offline.c - the offline built-ins beyond DPO,
 * recipes/orpo.recipe, recipes/simpo.recipe (pairwise, reference-free) and
 * recipes/kto.recipe (unpaired), against docs/objectives.md.
 * Every expected number is computed here in plain C doubles from the formulas
 * as the public code writes them (TRL's ORPOTrainer, SimPO's simpo_trainer.py),
 * with the per-token log-probabilities read back from the tiny GPT-2
 * (rl_model_token_logprobs) and the NLL cross-checked against rl_model_sft_loss;
 * log odds are taken directly as log(P / (1 - P)), not in the recipe's
 * log1p form. Also: the defaults and their --set overrides, the gradient
 * check of each recipe and its switches, and the batch-split report.
 */
#include "rl_test.h"
#include "rl_test_batch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_model.h"
#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_recipe_gradcheck.h"
#include "rl_test_recipe.h"

/* ---- helpers -------------------------------------------------------------------------- */

static double hyper(const rl_recipe_program *p, const char *name) {
    const rl_recipe_hyper_info *h = rl_recipe_hyper(p, name);
    if (!h) fail_msg("no hyper '%s'", name);
    return h->num;
}


/* A pair batch of B = 4 rows, T = 7: rows 0-2 differ, row 3 is the same
 * sequence on both sides (a tie, which strict accuracy counts as wrong). */
static void make_pairs(rl_test_batch *w, rl_test_batch *l, uint64_t seed) {
    rl_test_batch_make(g_ctx, w, 4, 7, (int[]){7, 5, 6, 6}, (int[]){3, 2, 4, 2}, seed);
    rl_test_batch_make(g_ctx, l, 4, 7, (int[]){6, 7, 4, 6}, (int[]){2, 3, 2, 2}, seed + 1);
    for (int t = 0; t < 7; t++) l->hid[21 + t] = w->hid[21 + t];
    assert_int_equal(rl_tensor_write(g_ctx, l->ids, l->hid, sizeof(int32_t) * 28), RL_OK);
}

/* A batch whose rejected side is the chosen side, row for row. */
static void make_same(rl_test_batch *w, rl_test_batch *l, uint64_t seed) {
    const int len[3] = {7, 5, 6}, resp[3] = {3, 2, 4};
    rl_test_batch_make(g_ctx, w, 3, 7, len, resp, seed);
    rl_test_batch_make(g_ctx, l, 3, 7, len, resp, seed);
}

static void free_pairs(rl_test_batch *w, rl_test_batch *l) { rl_test_batch_free(g_ctx, w), rl_test_batch_free(g_ctx, l); }

static void bind_pairs(rl_recipe_program *p, rl_model *pol, rl_test_batch *w, rl_test_batch *l) {
    assert_int_equal(rl_recipe_bind_model(p, "policy", pol), RL_OK);
    assert_int_equal(rl_recipe_bind_tokens(p, "chosen", w->ids, w->mask, w->attn), RL_OK);
    assert_int_equal(rl_recipe_bind_tokens(p, "rejected", l->ids, l->mask, l->attn), RL_OK);
}

/* log pi(ids[t] | ids[<t]) [B, T] with gradients off: 0 at t = 0 and on padding. */
static void logprobs(rl_model *m, rl_test_batch *b, double *out) {
    int was = rl_ctx_set_grad(g_ctx, 0);
    rl_tensor *t = rl_model_token_logprobs(g_ctx, m, b->ids, b->attn);
    assert_non_null(t);
    for (int64_t i = 0; i < t->numel; i++) out[i] = rl_test_get(t, i);
    rl_ctx_set_grad(g_ctx, was);
}

/* The mean token log-prob over each row's response tokens: [B]. */
static void seq_means(const rl_test_batch *b, const double *lp, double *m) {
    for (int64_t r = 0; r < b->B; r++) {
        double s = 0, n = 0;
        for (int64_t t = 0; t < b->T; t++) s += b->hmask[r * b->T + t] * lp[r * b->T + t], n += b->hmask[r * b->T + t];
        assert_true(n > 0);
        m[r] = s / n;
    }
}

/* rl_model_sft_loss over a host mask (an independent NLL). */
static double sft_loss(rl_model *m, rl_test_batch *b, const int32_t *hmask) {
    int64_t shape[2] = {b->B, b->T};
    rl_tensor *mk = rl_tensor_new(g_ctx, RL_I32, 2, shape, "loss_mask");
    assert_non_null(mk);
    assert_int_equal(rl_tensor_write(g_ctx, mk, hmask, sizeof(int32_t) * (size_t)(b->B * b->T)), RL_OK);
    int was = rl_ctx_set_grad(g_ctx, 0);
    rl_tensor *t = rl_model_sft_loss(g_ctx, m, b->ids, mk);
    assert_non_null(t);
    double v = rl_test_get(t, 0);
    rl_ctx_set_grad(g_ctx, was);
    rl_tensor_free(g_ctx, mk);
    return v;
}

static double log_odds(double m) {
    double p = exp(m);
    return log(p / (1 - p));
}

/* ---- ORPO ----------------------------------------------------------------------------- */

/* TRL's ORPO on a batch, by hand. */
typedef struct orpo_hand {
    double loss, nll, reward_chosen, reward_rejected, reward_margin, accuracy, logp_chosen, logp_rejected,
        log_odds_ratio, log_odds_chosen;
} orpo_hand;

static void orpo_by_hand(rl_model *pol, rl_test_batch *w, rl_test_batch *l, double lam, int nll_prompt, orpo_hand *o) {
    const int64_t B = w->B, T = w->T;
    double lpw[96], lpl[96], mw[16], ml[16];
    logprobs(pol, w, lpw), logprobs(pol, l, lpl);
    seq_means(w, lpw, mw), seq_means(l, lpl, ml);
    /* the chosen NLL: a token mean over the whole batch; with the prompt (TRL),
     * every real token but each row's first, else the response tokens only */
    double num = 0, den = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 1; t < T; t++) {
            int64_t i = b * T + t;
            int on = nll_prompt ? w->hattn[i] : w->hmask[i];
            num -= on * lpw[i], den += on;
        }
    memset(o, 0, sizeof *o);
    o->nll = num / den;
    double or_mean = 0;
    for (int64_t b = 0; b < B; b++) {
        double h = log_odds(mw[b]) - log_odds(ml[b]);
        or_mean += rl_test_logsig(h) / (double)B;
        o->log_odds_chosen += h / (double)B;
        o->reward_chosen += lam * mw[b] / (double)B;
        o->reward_rejected += lam * ml[b] / (double)B;
        o->reward_margin += lam * (mw[b] - ml[b]) / (double)B;
        o->accuracy += (lam * mw[b] > lam * ml[b]) / (double)B;
        o->logp_chosen += mw[b] / (double)B;
        o->logp_rejected += ml[b] / (double)B;
    }
    o->log_odds_ratio = or_mean;
    o->loss = o->nll - lam * or_mean;
}

static void assert_orpo(const rl_recipe_program *p, const orpo_hand *o, const char *what) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s: ORPO loss", what);
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), o->loss, 1e-12, msg);
    rl_test_assert_close(rl_test_metric(p, "nll_loss"), o->nll, 1e-12, "nll_loss");
    rl_test_assert_close(rl_test_metric(p, "reward_chosen"), o->reward_chosen, 1e-12, "reward_chosen = lam * mean logp");
    rl_test_assert_close(rl_test_metric(p, "reward_rejected"), o->reward_rejected, 1e-12, "reward_rejected");
    rl_test_assert_close(rl_test_metric(p, "reward_margin"), o->reward_margin, 1e-12, "reward_margin");
    rl_test_assert_close(rl_test_metric(p, "accuracy"), o->accuracy, 0, "accuracy");
    rl_test_assert_close(rl_test_metric(p, "logp_chosen"), o->logp_chosen, 1e-12, "logp_chosen");
    rl_test_assert_close(rl_test_metric(p, "logp_rejected"), o->logp_rejected, 1e-12, "logp_rejected");
    rl_test_assert_close(rl_test_metric(p, "log_odds_ratio"), o->log_odds_ratio, 1e-12, "log_odds_ratio = mean logsig(h)");
    rl_test_assert_close(rl_test_metric(p, "log_odds_chosen"), o->log_odds_chosen, 1e-12, "log_odds_chosen = mean h");
}

static void test_orpo_by_hand(void **state) {
    (void)state;
    rl_model *pol = rl_test_tiny_gpt2(g_ctx, RL_HEAD_LM, 3);
    rl_test_batch w, l;
    make_pairs(&w, &l, 41);
    for (int np = 1; np >= 0; np--) {
        rl_recipe *r;
        rl_recipe_program *p = rl_test_builtin64("orpo", np ? NULL : (const char *[]){"nll_prompt=false", NULL}, &r);
        bind_pairs(p, pol, &w, &l);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        orpo_hand o;
        orpo_by_hand(pol, &w, &l, 0.1, np, &o);
        assert_orpo(p, &o, np ? "nll over prompt + response (TRL)" : "nll over the response");
        assert_true(o.accuracy <= 0.75); /* row 3 is a tie */
        /* the NLL agrees with the model's own SFT loss under the same mask
         * (rl_model_sft_loss skips t = 0 itself) */
        rl_test_assert_close(o.nll, sft_loss(pol, &w, np ? w.hattn : w.hmask), 1e-12, "nll = rl_model_sft_loss");
        rl_test_free_program(p, r);
    }
    /* lam from --set */
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("orpo", (const char *[]){"lam=0.5", NULL}, &r);
    bind_pairs(p, pol, &w, &l);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    orpo_hand o;
    orpo_by_hand(pol, &w, &l, 0.5, 1, &o);
    assert_orpo(p, &o, "lam 0.5");
    rl_test_free_program(p, r);
    free_pairs(&w, &l);
    rl_model_free(g_ctx, pol);
}

/* Rejected = chosen: h = 0 in every row, so loss = nll + lam log 2, with no
 * log-prob needed for the odds-ratio term. */
static void test_orpo_tie_closed_form(void **state) {
    (void)state;
    rl_model *pol = rl_test_tiny_gpt2(g_ctx, RL_HEAD_LM, 4);
    rl_test_batch w, l;
    make_same(&w, &l, 51);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("orpo", NULL, &r);
    bind_pairs(p, pol, &w, &l);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double nll = sft_loss(pol, &w, w.hattn);
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), nll + 0.1 * log(2.0), 1e-12, "nll + lam log 2");
    rl_test_assert_close(rl_test_metric(p, "log_odds_chosen"), 0, 1e-15, "h = 0");
    rl_test_assert_close(rl_test_metric(p, "log_odds_ratio"), -log(2.0), 1e-15, "logsig(0)");
    rl_test_assert_close(rl_test_metric(p, "accuracy"), 0, 0, "ties are not wins");
    rl_test_free_program(p, r);
    free_pairs(&w, &l);
    rl_model_free(g_ctx, pol);
}

/* ---- SimPO ---------------------------------------------------------------------------- */

static void test_simpo_by_hand(void **state) {
    (void)state;
    rl_model *pol = rl_test_tiny_gpt2(g_ctx, RL_HEAD_LM, 5);
    rl_test_batch w, l;
    make_pairs(&w, &l, 61);
    double lpw[96], lpl[96], mw[16], ml[16];
    logprobs(pol, &w, lpw), logprobs(pol, &l, lpl);
    seq_means(&w, lpw, mw), seq_means(&l, lpl, ml);
    /* beta, gamma / beta, label smoothing */
    const struct {
        const char *sets[3];
        double beta, gbr, eps;
    } cases[] = {
        {{NULL}, 2.0, 0.5, 0.0},
        {{"eps=0.1", NULL}, 2.0, 0.5, 0.1},
        {{"beta=2.5", "gamma_beta_ratio=0.1", NULL}, 2.5, 0.1, 0.0},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rl_recipe *r;
        rl_recipe_program *p = rl_test_builtin64("simpo", cases[c].sets, &r);
        bind_pairs(p, pol, &w, &l);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        const double beta = cases[c].beta, gamma = beta * cases[c].gbr, eps = cases[c].eps;
        double want = 0, rc = 0, rr = 0, rm = 0, acc = 0;
        for (int b = 0; b < 4; b++) {
            /* beta / |y| * log pi(y | x), the paper's form */
            double sw = 0, nw = 0, sl = 0, nl = 0;
            for (int t = 0; t < 7; t++) {
                sw += w.hmask[b * 7 + t] * lpw[b * 7 + t], nw += w.hmask[b * 7 + t];
                sl += l.hmask[b * 7 + t] * lpl[b * 7 + t], nl += l.hmask[b * 7 + t];
            }
            double z = beta / nw * sw - beta / nl * sl - gamma;
            want += (-(1 - eps) * rl_test_logsig(z) - eps * rl_test_logsig(-z)) / 4;
            rc += beta * mw[b] / 4, rr += beta * ml[b] / 4, rm += beta * (mw[b] - ml[b]) / 4;
            acc += (beta * mw[b] > beta * ml[b]) / 4.0;
        }
        rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want, 1e-12, "SimPO loss");
        rl_test_assert_close(rl_test_metric(p, "reward_chosen"), rc, 1e-12, "reward_chosen = beta * mean logp");
        rl_test_assert_close(rl_test_metric(p, "reward_rejected"), rr, 1e-12, "reward_rejected");
        rl_test_assert_close(rl_test_metric(p, "reward_margin"), rm, 1e-12, "reward_margin");
        rl_test_assert_close(rl_test_metric(p, "accuracy"), acc, 0, "accuracy");
        assert_true(acc <= 0.75); /* row 3 is a tie */
        rl_test_free_program(p, r);
    }
    free_pairs(&w, &l);
    rl_model_free(g_ctx, pol);
}

/* Rejected = chosen: z = -gamma in every row, so the loss is
 * -(1 - eps) logsig(-gamma) - eps logsig(gamma) whatever the model. */
static void test_simpo_tie_closed_form(void **state) {
    (void)state;
    rl_model *pol = rl_test_tiny_gpt2(g_ctx, RL_HEAD_LM, 6);
    rl_test_batch w, l;
    make_same(&w, &l, 71);
    for (int k = 0; k < 2; k++) {
        rl_recipe *r;
        rl_recipe_program *p = rl_test_builtin64("simpo", k ? (const char *[]){"eps=0.2", NULL} : NULL, &r);
        bind_pairs(p, pol, &w, &l);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        double want = k ? -(0.8) * rl_test_logsig(-1.0) - 0.2 * rl_test_logsig(1.0) : log1p(exp(1.0)); /* gamma = 2 * 0.5 */
        rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want, 1e-14, k ? "label-smoothed tie" : "softplus(gamma)");
        rl_test_assert_close(rl_test_metric(p, "reward_margin"), 0, 1e-15, "no margin");
        rl_test_free_program(p, r);
    }
    free_pairs(&w, &l);
    rl_model_free(g_ctx, pol);
}

/* ---- defaults --------------------------------------------------------------------------- */

static void assert_policy_only(const rl_recipe_program *p, const char *name, double lr) {
    assert_string_equal(rl_recipe_program_name(p), name);
    assert_int_equal(rl_recipe_program_kind(p), RL_RECIPE_PAIRWISE);
    assert_int_equal(rl_recipe_n_models(p), 1); /* no reference model */
    const rl_recipe_model_info *m = rl_recipe_model_at(p, 0);
    assert_string_equal(m->name, "policy");
    assert_true(m->trainable);
    assert_string_equal(m->optim.kind, "adamw");
    rl_test_assert_close(m->optim.lr, lr, 0, "policy lr");
    assert_int_equal(rl_recipe_n_losses(p), 1);
    const rl_recipe_loss_info *li = rl_recipe_loss_at(p, 0);
    assert_string_equal(li->name, "loss");
    assert_int_equal(li->n_trainables, 1);
    assert_string_equal(li->trainables[0], "policy");
}

static void test_defaults(void **state) {
    (void)state;
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("orpo", NULL, &r);
    assert_policy_only(p, "orpo", 1e-6);        /* TRL ORPOConfig.learning_rate */
    rl_test_assert_close(hyper(p, "lr"), 1e-6, 0, "orpo lr");
    rl_test_assert_close(hyper(p, "lam"), 0.1, 0, "lam"); /* TRL ORPOConfig.beta */
    rl_test_assert_close(hyper(p, "nll_prompt"), 1, 0, "nll_prompt (TRL)");
    const char *om[] = {"reward_chosen", "reward_rejected", "reward_margin", "accuracy", "logp_chosen",
                        "logp_rejected", "nll_loss", "log_odds_ratio", "log_odds_chosen"};
    assert_int_equal(rl_recipe_n_metrics(p), 9);
    for (int i = 0; i < 9; i++) assert_string_equal(rl_recipe_metric_name(p, i), om[i]);
    rl_test_free_program(p, r);
    p = rl_test_builtin64("orpo", (const char *[]){"lr=3e-6", NULL}, &r);
    rl_test_assert_close(rl_recipe_model_at(p, 0)->optim.lr, 3e-6, 0, "orpo --set lr reaches adamw");
    rl_test_free_program(p, r);

    p = rl_test_builtin64("simpo", NULL, &r);
    assert_policy_only(p, "simpo", 6e-7);       /* SimPO llama-3-8b-base-simpo.yaml */
    rl_test_assert_close(hyper(p, "lr"), 6e-7, 0, "simpo lr");
    rl_test_assert_close(hyper(p, "beta"), 2.0, 0, "beta");
    rl_test_assert_close(hyper(p, "gamma_beta_ratio"), 0.5, 0, "gamma_beta_ratio");
    rl_test_assert_close(hyper(p, "gamma"), 1.0, 0, "gamma = beta * gamma_beta_ratio");
    rl_test_assert_close(hyper(p, "eps"), 0.0, 0, "label smoothing");
    const char *sm[] = {"reward_chosen", "reward_rejected", "reward_margin", "accuracy"};
    assert_int_equal(rl_recipe_n_metrics(p), 4);
    for (int i = 0; i < 4; i++) assert_string_equal(rl_recipe_metric_name(p, i), sm[i]);
    rl_test_free_program(p, r);
    /* gamma follows beta and the ratio; a --set of gamma itself wins */
    p = rl_test_builtin64("simpo", (const char *[]){"beta=2.5", "lr=1e-6", NULL}, &r);
    rl_test_assert_close(hyper(p, "gamma"), 1.25, 1e-15, "gamma after --set beta");
    rl_test_assert_close(rl_recipe_model_at(p, 0)->optim.lr, 1e-6, 0, "simpo --set lr reaches adamw");
    rl_test_free_program(p, r);
    p = rl_test_builtin64("simpo", (const char *[]){"gamma=0.3", NULL}, &r);
    rl_test_assert_close(hyper(p, "gamma"), 0.3, 0, "--set gamma");
    rl_test_free_program(p, r);
}

/* ---- gradient checks -------------------------------------------------------------------- */

static int lm_tensors(void) {
    rl_model *m = rl_test_tiny_gpt2(g_ctx, RL_HEAD_LM, 1);
    int n = m->n_tensors;
    rl_model_free(g_ctx, m);
    return n;
}

/* ---- kto ------------------------------------------------------------------------------- */

/* KTO as TRL's KTOTrainer computes it, by hand: h = sum over the completion
 * of log pi - log pi_ref; z0 = max(0, mean of h over the mismatched rows);
 * loss = mean(label lam_d (1 - sig(beta (h - z0))) + (1 - label) lam_u (1 - sig(beta (z0 - h)))). */
static void test_kto_by_hand(void **state) {
    (void)state;
    rl_model *pol = rl_test_tiny_gpt2(g_ctx, RL_HEAD_LM, 11), *ref = rl_test_tiny_gpt2(g_ctx, RL_HEAD_LM, 12);
    rl_test_batch s, k;
    make_pairs(&s, &k, 71);
    double lps[96], lrs[96], lpk[96], lrk[96];
    logprobs(pol, &s, lps), logprobs(ref, &s, lrs), logprobs(pol, &k, lpk), logprobs(ref, &k, lrk);
    const double label[4] = {1, 0, 1, 1};
    int64_t B = 4;
    rl_tensor *lab = rl_tensor_new(g_ctx, RL_F64, 1, &B, "label");
    assert_int_equal(rl_tensor_write(g_ctx, lab, label, sizeof label), RL_OK);
    const struct {
        const char *sets[4];
        double beta, ld, lu;
        int swap; /* policy and reference exchanged: z0 on the other side of 0 */
    } cases[] = {
        {{NULL}, 0.1, 1, 1, 0},
        {{"beta=2", "lam_d=1.3", "lam_u=0.7", NULL}, 2, 1.3, 0.7, 0},
        {{"beta=2", NULL}, 2, 1, 1, 1},
    };
    int clamped = 0, unclamped = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        rl_recipe *r;
        rl_recipe_program *p = rl_test_builtin64("kto", cases[c].sets, &r);
        int sw = cases[c].swap;
        assert_int_equal(rl_recipe_bind_model(p, "policy", sw ? ref : pol), RL_OK);
        assert_int_equal(rl_recipe_bind_model(p, "ref", sw ? pol : ref), RL_OK);
        assert_int_equal(rl_recipe_bind_tokens(p, "seq", s.ids, s.mask, s.attn), RL_OK);
        assert_int_equal(rl_recipe_bind_tokens(p, "kl_seq", k.ids, k.mask, k.attn), RL_OK);
        assert_int_equal(rl_recipe_bind_tensor(p, "label", lab), RL_OK);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        const double beta = cases[c].beta, sign = sw ? -1 : 1;
        double h[4], hk = 0;
        for (int b = 0; b < 4; b++) {
            h[b] = 0;
            for (int t = 0; t < 7; t++) {
                h[b] += sign * s.hmask[b * 7 + t] * (lps[b * 7 + t] - lrs[b * 7 + t]);
                hk += sign * k.hmask[b * 7 + t] * (lpk[b * 7 + t] - lrk[b * 7 + t]) / 4;
            }
        }
        double z0 = hk > 0 ? hk : 0, want = 0, rc = 0, rr = 0;
        clamped += hk <= 0, unclamped += hk > 0;
        for (int b = 0; b < 4; b++) {
            double des = cases[c].ld * (1 - 1 / (1 + exp(-beta * (h[b] - z0))));
            double und = cases[c].lu * (1 - 1 / (1 + exp(-beta * (z0 - h[b]))));
            want += (label[b] * des + (1 - label[b]) * und) / 4;
            rc += label[b] * beta * h[b] / 3, rr += (1 - label[b]) * beta * h[b];
        }
        rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want, 1e-12, "KTO loss");
        rl_test_assert_close(rl_test_metric(p, "kl"), z0, 1e-12, "z0");
        rl_test_assert_close(rl_test_metric(p, "reward_chosen"), rc, 1e-12, "reward_chosen");
        rl_test_assert_close(rl_test_metric(p, "reward_rejected"), rr, 1e-12, "reward_rejected");
        rl_test_assert_close(rl_test_metric(p, "reward_margin"), rc - rr, 1e-12, "reward_margin");
        rl_test_free_program(p, r);
    }
    /* both sides of the clamp were exercised */
    assert_true(clamped > 0 && unclamped > 0);
    rl_tensor_free(g_ctx, lab);
    free_pairs(&s, &k);
    rl_model_free(g_ctx, pol), rl_model_free(g_ctx, ref);
}

/* `rlhf gradcheck NAME [--set ...]` in-process: every tensor of the policy
 * (the loss's only trainable) and the float inputs the loss reaches (KTO's
 * label: `inputs` of them) pass against f64 central differences. */
static void check_inputs(const char *name, const char *const *sets, int elems, int inputs) {
    rl_recipe *r = rl_test_load_builtin(name, sets);
    rl_recipe_gc_opts o;
    rl_recipe_gc_opts_default(&o);
    if (elems) o.model_elems = elems;
    rl_recipe_gc_result res;
    rl_test_gradcheck_must_pass(r, &o, &res, name);
    assert_int_equal(res.n_tensors, lm_tensors() + inputs);
    assert_true(res.n_elems >= res.n_tensors);
    assert_true(res.max_rel < 1e-4);
    rl_recipe_free(r);
}

static void check(const char *name, const char *const *sets, int elems) { check_inputs(name, sets, elems, 0); }

static void test_gradcheck(void **state) {
    (void)state;
    check("orpo", NULL, 0);
    check("orpo", (const char *[]){"nll_prompt=false", "lam=1", NULL}, 3);
    check("simpo", NULL, 0);
    check("simpo", (const char *[]){"eps=0.1", "beta=10", NULL}, 3);
    /* z0 is a stop() of the policy: the check holds it at the point checked, as the tape does */
    check_inputs("kto", (const char *[]){"beta=2", NULL}, 3, 1);
}

/* The batch-split report at B = 4 (splits 2 x 2 and 4 x 1): SimPO is a mean
 * over pairs of per-sequence means, split-free; ORPO's NLL is a global token
 * mean over the chosen batch (TRL's CrossEntropyLoss), so both splits differ. */
static void splits(const char *name, const char *const *sets, int want_dependent) {
    rl_recipe *r = rl_test_load_builtin(name, sets);
    rl_recipe_gc_opts o;
    rl_recipe_gc_opts_default(&o);
    o.batch = 4;
    o.splits = 1;
    rl_recipe_gc_result res;
    assert_int_equal(rl_recipe_gradcheck(r, &o, &res), RL_OK);
    assert_int_equal(res.n_failed, 0);
    assert_int_equal(res.n_splits, 2);
    if (res.n_split_dependent != want_dependent)
        fail_msg("%s: %d split-dependent, want %d", name, res.n_split_dependent, want_dependent);
    rl_recipe_free(r);
}

static void test_batch_split(void **state) {
    (void)state;
    splits("simpo", NULL, 0);
    splits("simpo", (const char *[]){"eps=0.1", NULL}, 0);
    splits("orpo", NULL, 2);
    splits("orpo", (const char *[]){"nll_prompt=false", NULL}, 2);
    splits("kto", NULL, 2); /* z0 is the micro-batch's mean */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_orpo_by_hand),
        cmocka_unit_test(test_orpo_tie_closed_form),
        cmocka_unit_test(test_simpo_by_hand),
        cmocka_unit_test(test_simpo_tie_closed_form),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_kto_by_hand),
        cmocka_unit_test(test_gradcheck),
        cmocka_unit_test(test_batch_split),
    };
    return cmocka_run_group_tests(tests, rl_test_ctx_setup, rl_test_ctx_teardown);
}
