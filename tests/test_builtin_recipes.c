/* tests/test_builtin_recipes.c - the built-in recipes (recipes/NAME.recipe: sft,
 * bradley_terry, cost_model, ppo_kl, safe_rlhf, dpo, ipo) against
 * docs/objectives.md, and the language extensions they need (if(), step(),
 * adaptive_beta). Every expected number is computed here, independently, in
 * plain C doubles from the formulas, with model outputs read back from the
 * tiny GPT-2 models' functions (rl_model_token_logprobs, rl_model_end_score,
 * rl_model_values, rl_model_logits) or from inputs bound by the test; GAE is a
 * direct sum over each row's response tokens, not the native's recursion.
 */
#include <valgrind/valgrind.h>

#include "rl_test.h"
#include "rl_test_batch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_optim.h"
#include "rl_rng.h"
#include "rl_model.h"
#include "recipe_int.h"
#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_recipe_gradcheck.h"
#include "rl_test_recipe.h"

/* ---- helpers -------------------------------------------------------------------------- */

static rl_model *tiny(rl_model_head kind, uint64_t seed) { return rl_test_tiny_gpt2(g_ctx, kind, seed); }

/* Adds N(0, sigma) to every weight (a policy or critic after some training). */
static void perturb(rl_model *m, double sigma, uint64_t seed) {
    rl_rng rng;
    rl_rng_seed(&rng, seed);
    for (int k = 0; k < m->n_tensors; k++)
        for (int64_t e = 0; e < m->tensors[k]->numel; e++)
            rl_tensor_set(g_ctx, m->tensors[k], e, rl_test_get(m->tensors[k], e) + sigma * rl_rng_normal(&rng));
}

/* A model output [B, T] or [B] read to the host with gradients off. */
typedef enum { OUT_LOGPROBS, OUT_END_SCORE, OUT_VALUES } out_kind;

static void model_out(rl_model *m, out_kind k, rl_tensor *ids, rl_tensor *attn, double *out) {
    int was = rl_ctx_set_grad(g_ctx, 0);
    rl_tensor *t = k == OUT_LOGPROBS  ? rl_model_token_logprobs(g_ctx, m, ids, attn)
                 : k == OUT_END_SCORE ? rl_model_end_score(g_ctx, m, ids, attn)
                                      : rl_model_values(g_ctx, m, ids);
    assert_non_null(t);
    for (int64_t i = 0; i < t->numel; i++) out[i] = rl_test_get(t, i);
    rl_ctx_set_grad(g_ctx, was);
}

/* Token-aligned values: V of the state in which token t is chosen is the
 * value head at t - 1 (models/rl_gpt2.h); 0 at t = 0. */
static void aligned_values(rl_model *m, rl_tensor *ids, int64_t B, int64_t T, double *out) {
    double raw[256];
    assert_true(B * T <= 256);
    model_out(m, OUT_VALUES, ids, NULL, raw);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) out[b * T + t] = t == 0 ? 0 : raw[b * T + t - 1];
}

/* GAE from its definition as a sum over each row's response tokens:
 * A_t = sum_k (gamma lam)^k delta_{t+k}, delta = r + gamma V_next - V,
 * V after the last response token = 0; Ret = A + V; 0 off the mask. */
static void ref_gae(const double *r, const double *v, const int32_t *m, int64_t B, int64_t T, double g,
                    double lam, double *adv, double *ret) {
    for (int64_t b = 0; b < B; b++) {
        int64_t idx[64], n = 0;
        for (int64_t t = 0; t < T; t++)
            if (m[b * T + t]) idx[n++] = b * T + t;
        for (int64_t t = 0; t < T; t++) adv[b * T + t] = ret[b * T + t] = 0;
        for (int64_t i = 0; i < n; i++) {
            double a = 0;
            for (int64_t k = i; k < n; k++) {
                double vnext = k + 1 < n ? v[idx[k + 1]] : 0;
                a += pow(g * lam, (double)(k - i)) * (r[idx[k]] + g * vnext - v[idx[k]]);
            }
            adv[idx[i]] = a;
            ret[idx[i]] = a + v[idx[i]];
        }
    }
}

/* A generated batch on the host. */
typedef struct gen {
    int64_t B, T;
    int32_t ids[256], mask[256], attn[256];
    rl_tensor *tids, *tattn; /* the program's (valid until the next rollout) */
} gen;

static void read_gen(const rl_recipe_program *p, gen *g) {
    rl_recipe_tokens tk = rl_test_tokens_of(p, "seq");
    g->B = tk.ids->shape[0], g->T = tk.ids->shape[1];
    assert_true(g->B * g->T <= 256);
    size_t nb = sizeof(int32_t) * (size_t)(g->B * g->T);
    assert_int_equal(rl_tensor_read(g_ctx, tk.ids, g->ids, nb), RL_OK);
    assert_int_equal(rl_tensor_read(g_ctx, tk.mask, g->mask, nb), RL_OK);
    assert_int_equal(rl_tensor_read(g_ctx, tk.attn, g->attn, nb), RL_OK);
    g->tids = tk.ids, g->tattn = tk.attn;
    int any = 0;
    for (int64_t i = 0; i < g->B * g->T; i++) any += g->mask[i];
    assert_true(any > 0);
}

static const char *const BUILTINS[] = {"sft", "bradley_terry", "cost_model", "ppo_kl", "safe_rlhf", "dpo", "ipo",
                                        "orpo", "simpo", "kto", "grpo", "dapo", "rloo", "reinforce_pp", "remax"};

/* ---- every built-in compiles cleanly ---------------------------------------------------- */

static void compile_clean(const char *name, const char *const *sets, rl_dtype dt) {
    rl_recipe *r = rl_test_load_builtin(name, sets);
    rl_recipe_program *p = rl_test_compile(r, dt, true);
    if (!p || rl_recipe_n_errors(r) || rl_recipe_n_warnings(r)) {
        rl_recipe_print_diags(r, stderr);
        fail_msg("%s (%s%s) does not compile cleanly", name, dt == RL_F64 ? "f64" : "f32",
                 sets && sets[0] ? ", with --set" : "");
    }
    assert_string_equal(rl_recipe_program_name(p), name);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

static void test_builtins_compile_clean(void **state) {
    (void)state;
    const int n_builtins = (int)(sizeof BUILTINS / sizeof BUILTINS[0]);
    assert_int_equal(rl_recipe_n_builtins(), n_builtins);
    for (int i = 0; i < n_builtins; i++) {
        assert_string_equal(rl_recipe_builtin_name(i), BUILTINS[i]);
        /* under valgrind the group recipes' shape checks (B*G up to a few hundred
         * rows) take minutes each; tests/test_builtin_online.c compiles them in the
         * plain and sanitizer runs */
        if (RUNNING_ON_VALGRIND && i >= 10) continue;
        compile_clean(BUILTINS[i], NULL, RL_F32);
        compile_clean(BUILTINS[i], NULL, RL_F64);
    }
    assert_null(rl_recipe_builtin_name(n_builtins));
    /* every switch flipped: still clean */
    compile_clean("bradley_terry", (const char *[]){"use_margin=true", NULL}, RL_F32);
    for (int k = 1; k <= 3; k++) {
        char est[32];
        snprintf(est, sizeof est, "kl_estimator=k%d", k);
        compile_clean("ppo_kl", (const char *[]){est, "adaptive_kl=true", "whiten_adv=true", "ptx_coef=1", NULL},
                      RL_F32);
        compile_clean("safe_rlhf", (const char *[]){est, "delay=10", "window=4", NULL}, RL_F32);
    }
    /* a name that is neither a file nor a built-in */
    char path[64];
    assert_int_equal(rl_recipe_resolve("no_such_recipe", path, sizeof path), RL_ERR_ARG);
    /* the losses train what objectives.md says they train */
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("safe_rlhf", NULL, &r);
    const char *want[4][2] = {{"loss", "policy"}, {"loss_reward_critic", "reward_critic"},
                              {"loss_cost_critic", "cost_critic"}, {"loss_lambda", "log_lambda"}};
    assert_int_equal(rl_recipe_n_losses(p), 4);
    for (int i = 0; i < 4; i++) {
        const rl_recipe_loss_info *l = rl_recipe_loss_at(p, i);
        assert_string_equal(l->name, want[i][0]);
        assert_int_equal(l->n_trainables, 1);
        assert_string_equal(l->trainables[0], want[i][1]);
    }
    const rl_recipe_param_info *ll = rl_recipe_param_at(p, 0);
    assert_string_equal(ll->optim.kind, "sgd");
    rl_test_assert_close(ll->optim.lr, 0.1, 0, "lambda_lr");
    rl_test_assert_close(ll->max, log(5.0), 1e-15, "log lambda_max");
    rl_test_assert_close(rl_recipe_hyper(p, "beta")->num, 0.01, 0, "safe_rlhf beta");
    rl_test_assert_close(rl_recipe_hyper(p, "window")->num, 128, 0, "window");
    rl_test_free_program(p, r);
    p = rl_test_builtin64("ppo_kl", NULL, &r);
    rl_test_assert_close(rl_recipe_hyper(p, "beta")->num, 0.02, 0, "ppo beta");
    assert_string_equal(rl_recipe_hyper(p, "kl_estimator")->str, "k1");
    rl_test_assert_close(rl_recipe_hyper(p, "kl_target")->num, 6, 0, "target");
    rl_test_assert_close(rl_recipe_hyper(p, "kl_horizon")->num, 10000, 0, "horizon");
    rl_test_assert_close(rl_recipe_hyper(p, "clip_score")->num, 50, 0, "clip_score");
    rl_test_assert_close(rl_recipe_hyper(p, "lam")->num, 0.95, 0, "lam");
    assert_int_equal(rl_recipe_n_losses(p), 2);
    assert_string_equal(rl_recipe_loss_at(p, 1)->name, "loss_critic");
    const char *metrics[] = {"reward", "kl", "entropy", "clipfrac", "approx_kl", "policy_loss", "value_loss",
                             "response_length"};
    for (int i = 0; i < 8; i++) {
        bool found = false;
        for (int k = 0; k < rl_recipe_n_metrics(p); k++) found = found || !strcmp(rl_recipe_metric_name(p, k), metrics[i]);
        if (!found) fail_msg("ppo_kl logs no '%s'", metrics[i]);
    }
    rl_test_free_program(p, r);
}

/* ---- sft ------------------------------------------------------------------------------ */

static void test_sft_by_hand(void **state) {
    (void)state;
    rl_model *pol = tiny(RL_HEAD_LM, 3);
    rl_test_batch d;
    rl_test_batch_make(g_ctx, &d, 3, 7, (int[]){7, 5, 6}, (int[]){3, 1, 4}, 11);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("sft", NULL, &r);
    assert_int_equal(rl_recipe_program_kind(p), RL_RECIPE_SUPERVISED);
    rl_test_assert_close(rl_recipe_model_at(p, 0)->optim.lr, 2e-5, 0, "sft lr");
    rl_recipe_bind_model(p, "policy", pol);
    rl_recipe_bind_tokens(p, "demo", d.ids, d.mask, d.attn);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double lp[21], num = 0, den = 0;
    model_out(pol, OUT_LOGPROBS, d.ids, d.attn, lp);
    for (int i = 0; i < 21; i++) num -= d.hmask[i] * lp[i], den += d.hmask[i];
    rl_test_assert_close(den, 4 + 4 + 2, 0, "response tokens");
    double want = num / den;
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want, 1e-12, "sft loss = global token mean");
    rl_test_assert_close(rl_test_metric(p, "perplexity"), exp(want), 1e-12, "perplexity");
    /* the model's own SFT loss agrees (prompt tokens masked out) */
    rl_tensor *ref = rl_model_sft_loss(g_ctx, pol, d.ids, d.mask);
    rl_test_assert_close(rl_test_get(ref, 0), want, 1e-12, "rl_model_sft_loss");
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &d);
    rl_model_free(g_ctx, pol);
}

/* ---- bradley_terry -------------------------------------------------------------------- */

static void test_bradley_terry_by_hand(void **state) {
    (void)state;
    rl_model *rm = tiny(RL_HEAD_SCORE, 5);
    rl_test_batch w, l;
    rl_test_batch_make(g_ctx, &w, 4, 6, (int[]){6, 4, 5, 6}, (int[]){2, 1, 3, 2}, 21);
    rl_test_batch_make(g_ctx, &l, 4, 6, (int[]){5, 6, 2, 6}, (int[]){2, 3, 1, 2}, 22);
    /* row 3: the same sequence on both sides, a tie that strict accuracy counts as wrong */
    for (int t = 0; t < 6; t++) l.hid[18 + t] = w.hid[18 + t];
    assert_int_equal(rl_tensor_write(g_ctx, l.ids, l.hid, sizeof(int32_t) * 24), RL_OK);
    double rw[4], rl[4], margin[4] = {0.5, -0.25, 1.0, 0.0};
    model_out(rm, OUT_END_SCORE, w.ids, w.attn, rw);
    model_out(rm, OUT_END_SCORE, l.ids, l.attn, rl);
    assert_true(rw[3] == rl[3]);
    rl_tensor *tm = rl_test_tensor_of(RL_F64, 1, (int64_t[]){4}, margin);
    for (int use = 0; use < 2; use++) {
        rl_recipe *r;
        rl_recipe_program *p = rl_test_builtin64("bradley_terry", use ? (const char *[]){"use_margin=true", NULL} : NULL, &r);
        rl_recipe_bind_model(p, "rm", rm);
        rl_recipe_bind_tokens(p, "chosen", w.ids, w.mask, w.attn);
        rl_recipe_bind_tokens(p, "rejected", l.ids, l.mask, l.attn);
        if (use) {
            /* the margin is now needed */
            assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_ERR_STATE);
            assert_non_null(strstr(rl_recipe_program_error(p), "input 'margin' is not bound"));
            rl_recipe_bind_tensor(p, "margin", tm);
        }
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        const double reg = 0.001;
        double want = 0, acc = 0, mm = 0;
        for (int b = 0; b < 4; b++) {
            want += -rl_test_logsig(rw[b] - rl[b] - (use ? margin[b] : 0)) / 4 + reg * (rw[b] * rw[b] + rl[b] * rl[b]) / 8;
            acc += (rw[b] > rl[b]) / 4.0;
            mm += (rw[b] - rl[b]) / 4;
        }
        rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want, 1e-12, use ? "BT loss with margin" : "BT loss");
        rl_test_assert_close(rl_test_metric(p, "accuracy"), acc, 0, "strict accuracy");
        assert_true(rl_test_metric(p, "accuracy") <= 0.75); /* the tie is not a win */
        rl_test_assert_close(rl_test_metric(p, "reward_margin"), mm, 1e-12, "mean margin");
        rl_test_free_program(p, r);
    }
    rl_tensor_free(g_ctx, tm);
    rl_test_batch_free(g_ctx, &w), rl_test_batch_free(g_ctx, &l);
    rl_model_free(g_ctx, rm);
}

/* ---- cost_model ------------------------------------------------------------------------ */

static void test_cost_model_by_hand(void **state) {
    (void)state;
    rl_model *cm = tiny(RL_HEAD_SCORE, 8);
    /* a larger head so that costs have both signs and some size */
    for (int64_t k = 0; k < cm->score_w->numel; k++) rl_tensor_set(g_ctx, cm->score_w, k, 8 * rl_test_get(cm->score_w, k));
    rl_test_batch s, u;
    rl_test_batch_make(g_ctx, &s, 4, 6, (int[]){6, 5, 4, 6}, (int[]){2, 2, 1, 3}, 31);
    rl_test_batch_make(g_ctx, &u, 4, 6, (int[]){4, 6, 6, 5}, (int[]){2, 3, 2, 1}, 32);
    /* labels: both safe, safer safe and unsafer unsafe, both unsafe, safe/unsafe */
    double ss[4] = {-1, -1, 1, -1}, su[4] = {-1, 1, 1, 1};
    rl_tensor *tss = rl_test_tensor_of(RL_I32, 1, (int64_t[]){4}, ss), *tsu = rl_test_tensor_of(RL_I32, 1, (int64_t[]){4}, su);
    double cs[4], cu[4];
    model_out(cm, OUT_END_SCORE, s.ids, s.attn, cs);
    model_out(cm, OUT_END_SCORE, u.ids, u.attn, cu);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("cost_model", NULL, &r);
    rl_recipe_bind_model(p, "cm", cm);
    rl_recipe_bind_tokens(p, "safer", s.ids, s.mask, s.attn);
    rl_recipe_bind_tokens(p, "unsafer", u.ids, u.mask, u.attn);
    assert_int_equal(rl_recipe_bind_tensor(p, "safer_sign", tss), RL_OK);
    assert_int_equal(rl_recipe_bind_tensor(p, "unsafer_sign", tsu), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    const double reg = 0.001;
    double want = 0, sq = 0, acc = 0, sacc = 0;
    int pos = 0, neg = 0;
    for (int b = 0; b < 4; b++) {
        want += (-rl_test_logsig(cu[b] - cs[b]) - rl_test_logsig(ss[b] * cs[b]) - rl_test_logsig(su[b] * cu[b])) / 4;
        sq += (cs[b] * cs[b] + cu[b] * cu[b]) / 8; /* mean of c^2 over all 8 costs */
        acc += (cu[b] > cs[b]) / 4.0;
        sacc += ((ss[b] * cs[b] > 0) + (su[b] * cu[b] > 0)) / 8.0;
        pos += (cs[b] > 0) + (cu[b] > 0);
        neg += (cs[b] < 0) + (cu[b] < 0);
    }
    assert_true(pos > 0 && neg > 0);
    want += reg * sq;
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want, 1e-12, "cost model loss");
    rl_test_assert_close(rl_test_metric(p, "accuracy"), acc, 0, "accuracy");
    rl_test_assert_close(rl_test_metric(p, "sign_accuracy"), sacc, 1e-15, "sign accuracy");
    rl_test_free_program(p, r);
    rl_tensor_free(g_ctx, tss), rl_tensor_free(g_ctx, tsu);
    rl_test_batch_free(g_ctx, &s), rl_test_batch_free(g_ctx, &u);
    rl_model_free(g_ctx, cm);
}

/* ---- ppo_kl ------------------------------------------------------------------------------ */

typedef struct ppo_models {
    rl_model *pol, *ref, *rm, *critic;
} ppo_models;

static void ppo_models_new(ppo_models *m) {
    m->pol = tiny(RL_HEAD_LM, 41);
    m->ref = tiny(RL_HEAD_LM, 42);
    m->rm = tiny(RL_HEAD_SCORE, 43);
    m->critic = tiny(RL_HEAD_VALUE, 44);
}

static void ppo_models_free(ppo_models *m) {
    rl_model_free(g_ctx, m->pol), rl_model_free(g_ctx, m->ref), rl_model_free(g_ctx, m->rm);
    rl_model_free(g_ctx, m->critic);
}

static void ppo_bind(rl_recipe_program *p, const ppo_models *m, rl_test_batch *prompts) {
    rl_recipe_bind_model(p, "policy", m->pol);
    rl_recipe_bind_model(p, "ref", m->ref);
    rl_recipe_bind_model(p, "reward_model", m->rm);
    rl_recipe_bind_model(p, "critic", m->critic);
    assert_int_equal(rl_recipe_bind_tokens(p, "prompts", prompts->ids, NULL, prompts->attn), RL_OK);
}

/* The rollout's quantities, by hand from the models. */
typedef struct ppo_hand {
    int64_t B, T;
    double lp_old[256], lp_ref[256], kl[256], R[16], v_old[256], r[256], adv[256], ret[256];
    double kl_seq[16];
} ppo_hand;

static double kl_est(double d, int k) { return k == 1 ? d : k == 2 ? d * d / 2 : exp(-d) - 1 + d; }

static void ppo_by_hand(const gen *g, const ppo_models *m, double beta, int est, double clip_score,
                        ppo_hand *h) {
    const int64_t B = g->B, T = g->T;
    h->B = B, h->T = T;
    model_out(m->pol, OUT_LOGPROBS, g->tids, g->tattn, h->lp_old);
    model_out(m->ref, OUT_LOGPROBS, g->tids, g->tattn, h->lp_ref);
    model_out(m->rm, OUT_END_SCORE, g->tids, g->tattn, h->R);
    aligned_values(m->critic, g->tids, B, T, h->v_old);
    for (int64_t b = 0; b < B; b++) {
        int64_t last = -1;
        h->kl_seq[b] = 0;
        for (int64_t t = 0; t < T; t++)
            if (g->mask[b * T + t]) last = t;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t;
            h->kl[i] = kl_est(h->lp_old[i] - h->lp_ref[i], est);
            h->kl_seq[b] += g->mask[i] * h->kl[i];
            h->r[i] = rl_test_clamp(-beta * h->kl[i] + (t == last ? h->R[b] : 0), -clip_score, clip_score);
        }
    }
    ref_gae(h->r, h->v_old, g->mask, B, T, 1.0, 0.95, h->adv, h->ret);
}

static void test_ppo_kl_rollout_by_hand(void **state) {
    (void)state;
    ppo_models m;
    ppo_models_new(&m);
    rl_test_batch pr;
    rl_test_batch_make(g_ctx, &pr, 3, 4, (int[]){4, 2, 3}, (int[]){4, 2, 3}, 51);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("ppo_kl", (const char *[]){"max_new=5", "vclip=0.01", NULL}, &r);
    ppo_bind(p, &m, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    gen g;
    read_gen(p, &g);
    ppo_hand h;
    ppo_by_hand(&g, &m, 0.02, 1, 50, &h);
    const int64_t B = g.B, T = g.T, n = B * T;
    /* the rollout's values: rewards, GAE through the recipe, against the direct sums */
    for (int64_t i = 0; i < n; i++) {
        rl_test_assert_close(rl_test_value(p, "lp_old", i), h.lp_old[i], 1e-12, "lp_old");
        rl_test_assert_close(rl_test_value(p, "r", i), h.r[i], 1e-12, "shaped reward r_t");
        rl_test_assert_close(rl_test_value(p, "v_old", i), h.v_old[i], 1e-12, "token-aligned V_old");
        rl_test_assert_close(rl_test_value(p, "a", i), h.adv[i], 1e-11, "GAE advantage");
        rl_test_assert_close(rl_test_value(p, "ret", i), h.ret[i], 1e-11, "GAE return");
        rl_test_assert_close(rl_test_value(p, "adv", i), h.adv[i], 1e-11, "advantage, not whitened by default");
    }
    /* at the rollout's parameters: ratio 1, V = V_old, so the policy loss is
     * -mean(A) and the value loss 0.5 * mean(A^2) over response tokens */
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double sa = 0, sa2 = 0, nm = 0, R = 0, kl = 0, len = 0;
    for (int64_t i = 0; i < n; i++) sa += g.mask[i] * h.adv[i], sa2 += g.mask[i] * h.adv[i] * h.adv[i], nm += g.mask[i];
    for (int64_t b = 0; b < B; b++) R += h.R[b] / (double)B, kl += h.kl_seq[b] / (double)B;
    len = nm / (double)B;
    rl_test_assert_close(rl_test_loss_named(p, "loss"), -sa / nm, 1e-12, "policy loss at ratio 1");
    rl_test_assert_close(rl_test_loss_named(p, "loss_critic"), 0.5 * sa2 / nm, 1e-12, "value loss at V = V_old");
    rl_test_assert_close(rl_test_metric(p, "reward"), R, 1e-12, "reward metric");
    rl_test_assert_close(rl_test_metric(p, "kl"), kl, 1e-12, "kl metric: the KL of the reward, per sample");
    rl_test_assert_close(rl_test_metric(p, "kl_coef"), 0.02, 0, "fixed beta");
    rl_test_assert_close(rl_test_metric(p, "response_length"), len, 1e-15, "response length");
    rl_test_assert_close(rl_test_metric(p, "clipfrac"), 0, 0, "no clipping at ratio 1");
    rl_test_assert_close(rl_test_metric(p, "approx_kl"), 0, 0, "approx_kl at ratio 1");
    rl_test_assert_close(rl_test_metric(p, "ptx_loss"), 0, 0, "ptx off");
    /* entropy of the policy where each response token is chosen (logits of the previous position) */
    {
        int was = rl_ctx_set_grad(g_ctx, 0);
        rl_tensor *lg = rl_model_logits(g_ctx, m.pol, g.tids);
        const int64_t V = lg->shape[2];
        double ent = 0;
        for (int64_t i = 0; i < n; i++) {
            if (!g.mask[i]) continue;
            const int64_t base = (i - 1) * V; /* position t - 1 of the same row (mask is 0 at t = 0) */
            double mx = -INFINITY, z = 0, s = 0;
            for (int64_t k = 0; k < V; k++) mx = fmax(mx, rl_test_get(lg, base + k));
            for (int64_t k = 0; k < V; k++) z += exp(rl_test_get(lg, base + k) - mx);
            for (int64_t k = 0; k < V; k++) {
                double q = exp(rl_test_get(lg, base + k) - mx) / z;
                s -= q * log(q);
            }
            ent += s / nm;
        }
        rl_ctx_set_grad(g_ctx, was);
        rl_test_assert_close(rl_test_metric(p, "entropy"), ent, 1e-12, "entropy");
    }
    rl_ctx_reset(g_ctx);
    /* a second epoch: the policy and the critic have moved; the clipped
     * surrogate and the clipped value loss (vclip 0.01) by hand */
    perturb(m.pol, 0.05, 1);
    perturb(m.critic, 0.05, 2);
    double lp[256], v[256];
    model_out(m.pol, OUT_LOGPROBS, g.tids, g.tattn, lp);
    aligned_values(m.critic, g.tids, B, T, v);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double pg = 0, vf = 0, cf = 0, ak = 0;
    int clipped = 0, vclipped = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!g.mask[i]) continue;
        double ratio = exp(lp[i] - h.lp_old[i]), A = h.adv[i];
        double cr = rl_test_clamp(ratio, 0.8, 1.2);
        pg += -fmin(ratio * A, cr * A) / nm;
        cf += (-A * cr > -A * ratio) / nm;
        ak += 0.5 * (lp[i] - h.lp_old[i]) * (lp[i] - h.lp_old[i]) / nm;
        clipped += cr != ratio;
        double vc = h.v_old[i] + rl_test_clamp(v[i] - h.v_old[i], -0.01, 0.01);
        vf += 0.5 * fmax(pow(v[i] - h.ret[i], 2), pow(vc - h.ret[i], 2)) / nm;
        vclipped += vc != v[i];
    }
    assert_true(clipped > 0 && clipped < nm); /* both branches of the clip are exercised */
    assert_true(vclipped > 0);
    rl_test_assert_close(rl_test_loss_named(p, "loss"), pg, 1e-12, "clipped surrogate");
    rl_test_assert_close(rl_test_metric(p, "policy_loss"), pg, 1e-12, "policy_loss metric");
    rl_test_assert_close(rl_test_loss_named(p, "loss_critic"), vf, 1e-12, "clipped value loss");
    rl_test_assert_close(rl_test_metric(p, "value_loss"), vf, 1e-12, "value_loss metric");
    rl_test_assert_close(rl_test_metric(p, "clipfrac"), cf, 1e-15, "clipfrac");
    rl_test_assert_close(rl_test_metric(p, "approx_kl"), ak, 1e-12, "approx_kl");
    /* minibatches slice the rows: rows [1, 3) */
    rl_ctx_reset(g_ctx);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, 1, 3), RL_OK);
    pg = 0, nm = 0;
    for (int64_t i = T; i < n; i++) nm += g.mask[i];
    for (int64_t i = T; i < n; i++) {
        if (!g.mask[i]) continue;
        double ratio = exp(lp[i] - h.lp_old[i]), A = h.adv[i];
        pg += -fmin(ratio * A, rl_test_clamp(ratio, 0.8, 1.2) * A) / nm;
    }
    rl_test_assert_close(rl_test_loss_named(p, "loss"), pg, 1e-12, "minibatch surrogate");
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    ppo_models_free(&m);
}

/* k1/k2/k3: the reward and the logged KL use the same estimator. */
static void test_ppo_kl_estimators(void **state) {
    (void)state;
    for (int k = 1; k <= 3; k++) {
        ppo_models m;
        ppo_models_new(&m);
        rl_test_batch pr;
        rl_test_batch_make(g_ctx, &pr, 3, 3, (int[]){3, 2, 3}, (int[]){3, 2, 3}, 61);
        char est[32];
        snprintf(est, sizeof est, "kl_estimator=k%d", k);
        rl_recipe *r;
        rl_recipe_program *p = rl_test_builtin64("ppo_kl", (const char *[]){"max_new=4", est, "beta=0.5", NULL}, &r);
        ppo_bind(p, &m, &pr);
        assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
        gen g;
        read_gen(p, &g);
        ppo_hand h;
        ppo_by_hand(&g, &m, 0.5, k, 50, &h);
        double kl = 0, d_any = 0;
        for (int64_t i = 0; i < g.B * g.T; i++) {
            rl_test_assert_close(rl_test_value(p, "kl_t", i), h.kl[i], 1e-12, "kl_t");
            rl_test_assert_close(rl_test_value(p, "r", i), h.r[i], 1e-12, "reward with this estimator");
            if (k == 3) assert_true(rl_test_value(p, "kl_t", i) >= 0); /* k3 >= 0 always */
            d_any += fabs(h.lp_old[i] - h.lp_ref[i]) * g.mask[i];
        }
        assert_true(d_any > 0);
        for (int64_t b = 0; b < g.B; b++) kl += h.kl_seq[b] / (double)g.B;
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        rl_test_assert_close(rl_test_metric(p, "kl"), kl, 1e-12, "logged kl = the kl in the reward");
        rl_test_free_program(p, r);
        rl_test_batch_free(g_ctx, &pr);
        ppo_models_free(&m);
    }
}

/* Shaped rewards are clamped to +-clip_score (50) after the end score is added. */
static void test_ppo_kl_reward_clamp(void **state) {
    (void)state;
    ppo_models m;
    ppo_models_new(&m);
    /* a reward model whose end scores are in the thousands */
    for (int64_t k = 0; k < m.rm->score_w->numel; k++)
        rl_tensor_set(g_ctx, m.rm->score_w, k, 4000 * rl_test_get(m.rm->score_w, k));
    rl_test_batch pr;
    rl_test_batch_make(g_ctx, &pr, 4, 3, (int[]){3, 2, 3, 1}, (int[]){3, 2, 3, 1}, 71);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("ppo_kl", (const char *[]){"max_new=4", NULL}, &r);
    ppo_bind(p, &m, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    gen g;
    read_gen(p, &g);
    ppo_hand h;
    ppo_by_hand(&g, &m, 0.02, 1, 50, &h);
    int ends = 0;
    for (int64_t b = 0; b < g.B; b++) {
        assert_true(fabs(h.R[b]) > 60);
        int64_t last = -1;
        for (int64_t t = 0; t < g.T; t++)
            if (g.mask[b * g.T + t]) last = t;
        for (int64_t t = 0; t < g.T; t++) {
            int64_t i = b * g.T + t;
            double got = rl_test_value(p, "r", i);
            if (t == last) {
                rl_test_assert_close(got, h.R[b] > 0 ? 50.0 : -50.0, 0, "clamped end reward");
                ends++;
            } else {
                rl_test_assert_close(got, -0.02 * h.kl[i], 1e-12, "KL penalty alone, unclamped");
            }
        }
    }
    assert_int_equal(ends, g.B);
    rl_test_free_program(p, r);
    /* and with --set clip_score=1e9 the end reward is R - beta kl_t */
    p = rl_test_builtin64("ppo_kl", (const char *[]){"max_new=4", "clip_score=1e9", NULL}, &r);
    ppo_bind(p, &m, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    read_gen(p, &g);
    ppo_by_hand(&g, &m, 0.02, 1, 1e9, &h);
    for (int64_t i = 0; i < g.B * g.T; i++) rl_test_assert_close(rl_test_value(p, "r", i), h.r[i], 1e-12, "unclamped");
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    ppo_models_free(&m);
}

/* Ziegler et al.'s controller through the recipe: each batch's rewards use
 * the current beta; then beta *= 1 + clip(KL / target - 1, +-0.2) * B / horizon,
 * with KL the batch's mean per-sample KL. */
static void test_ppo_kl_adaptive_beta(void **state) {
    (void)state;
    ppo_models m;
    ppo_models_new(&m);
    rl_test_batch pr;
    rl_test_batch_make(g_ctx, &pr, 3, 3, (int[]){3, 2, 3}, (int[]){3, 2, 3}, 81);
    rl_recipe *r;
    /* target 0.06 nats and horizon 10 samples: visible steps, inside and at the clip */
    rl_recipe_program *p = rl_test_builtin64(
        "ppo_kl", (const char *[]){"max_new=4", "adaptive_kl=true", "kl_target=0.06", "kl_horizon=10",
                                   "kl_estimator=k3", NULL},
        &r);
    ppo_bind(p, &m, &pr);
    double beta = 0.02;
    int inside = 0, at_clip = 0;
    for (int batch_i = 0; batch_i < 4; batch_i++) {
        assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
        gen g;
        read_gen(p, &g);
        rl_test_assert_close(rl_test_value(p, "b", 0), beta, 1e-14, "beta used in this batch's rewards");
        ppo_hand h;
        ppo_by_hand(&g, &m, beta, 3, 50, &h);
        for (int64_t i = 0; i < g.B * g.T; i++) rl_test_assert_close(rl_test_value(p, "r", i), h.r[i], 1e-12, "r with adaptive beta");
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        rl_test_assert_close(rl_test_metric(p, "kl_coef"), beta, 1e-14, "kl_coef metric");
        double kl = 0;
        for (int64_t b = 0; b < g.B; b++) kl += h.kl_seq[b] / (double)g.B;
        double e = rl_test_clamp(kl / 0.06 - 1, -0.2, 0.2);
        inside += fabs(e) < 0.2, at_clip += fabs(e) == 0.2;
        beta *= 1 + e * (double)g.B / 10;
        rl_ctx_reset(g_ctx);
        /* the policy drifts away from the reference: the KL grows across batches */
        perturb(m.pol, 0.03 * (batch_i + 1), 100 + (uint64_t)batch_i);
    }
    assert_true(inside > 0 && at_clip > 0); /* both regimes of the controller were exercised */
    assert_true(fabs(beta - 0.02) > 1e-3);
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    ppo_models_free(&m);
}

/* Whitened advantages (TRL's masked_whiten) and the ptx term, by hand. */
static void test_ppo_kl_whiten_and_ptx(void **state) {
    (void)state;
    ppo_models m;
    ppo_models_new(&m);
    rl_test_batch pr, demos;
    rl_test_batch_make(g_ctx, &pr, 3, 3, (int[]){3, 2, 3}, (int[]){3, 2, 3}, 91);
    rl_test_batch_make(g_ctx, &demos, 2, 5, (int[]){5, 4}, (int[]){2, 1}, 92);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("ppo_kl", (const char *[]){"max_new=4", "whiten_adv=true", "ptx_coef=0.5", NULL}, &r);
    ppo_bind(p, &m, &pr);
    /* with ptx_coef > 0 the demonstrations are needed */
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_ERR_STATE);
    assert_non_null(strstr(rl_recipe_program_error(p), "input 'demos' is not bound"));
    assert_int_equal(rl_recipe_bind_tokens(p, "demos", demos.ids, demos.mask, demos.attn), RL_OK);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    gen g;
    read_gen(p, &g);
    ppo_hand h;
    ppo_by_hand(&g, &m, 0.02, 1, 50, &h);
    const int64_t n = g.B * g.T;
    /* TRL's masked_whiten: masked mean, unbiased masked variance, eps 1e-8 */
    double mean = 0, nm = 0, var = 0, sw = 0;
    for (int64_t i = 0; i < n; i++) mean += g.mask[i] * h.adv[i], nm += g.mask[i];
    mean /= nm;
    for (int64_t i = 0; i < n; i++) var += g.mask[i] * (h.adv[i] - mean) * (h.adv[i] - mean);
    var /= nm - 1;
    for (int64_t i = 0; i < n; i++) {
        double wadv = (h.adv[i] - mean) / sqrt(var + 1e-8);
        if (g.mask[i]) rl_test_assert_close(rl_test_value(p, "adv", i), wadv, 1e-10, "whitened advantage");
        sw += g.mask[i] * wadv;
    }
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double dlp[10], sft = 0, dn = 0;
    model_out(m.pol, OUT_LOGPROBS, demos.ids, demos.attn, dlp);
    for (int i = 0; i < 10; i++) sft -= demos.hmask[i] * dlp[i], dn += demos.hmask[i];
    sft /= dn;
    rl_test_assert_close(rl_test_metric(p, "ptx_loss"), sft, 1e-12, "ptx: the SFT loss of the demonstrations");
    rl_test_assert_close(rl_test_loss_named(p, "loss"), -sw / nm + 0.5 * sft, 1e-10, "policy loss + ptx_coef * SFT");
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr), rl_test_batch_free(g_ctx, &demos);
    ppo_models_free(&m);
}

/* The setting of `rlhf gradcheck` for online recipes (rl_recipe_gradcheck.h):
 * after the rollout, trainable models move by N(0, 0.001) noise. That moves
 * ratios off the tie at 1 while keeping them far inside the clip range
 * (1 +- 0.2), and values by about 0.1 (vclip is 0.2 in TRL, 5 in safe-rlhf). */
static void test_gradcheck_setting_avoids_kinks(void **state) {
    (void)state;
    rl_recipe_gc_opts o;
    rl_recipe_gc_opts_default(&o);
    rl_test_assert_close(o.perturb, 0.001, 0, "the documented perturbation");
    ppo_models m;
    ppo_models_new(&m);
    rl_test_batch pr;
    rl_test_batch_make(g_ctx, &pr, 3, 6, (int[]){6, 5, 4}, (int[]){6, 5, 4}, 171);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("ppo_kl", (const char *[]){"max_new=6", NULL}, &r);
    ppo_bind(p, &m, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    gen g;
    read_gen(p, &g);
    double lp0[256], v0[256], lp[256], v[256];
    model_out(m.pol, OUT_LOGPROBS, g.tids, g.tattn, lp0);
    aligned_values(m.critic, g.tids, g.B, g.T, v0);
    perturb(m.pol, o.perturb, 7);
    perturb(m.critic, o.perturb, 8);
    model_out(m.pol, OUT_LOGPROBS, g.tids, g.tattn, lp);
    aligned_values(m.critic, g.tids, g.B, g.T, v);
    double dr = 0, dv = 0;
    int moved = 0;
    for (int64_t i = 0; i < g.B * g.T; i++) {
        if (!g.mask[i]) continue;
        dr = fmax(dr, fabs(exp(lp[i] - lp0[i]) - 1));
        dv = fmax(dv, fabs(v[i] - v0[i]));
        moved += lp[i] != lp0[i];
    }
    assert_true(moved > 0); /* off the tie at ratio 1 */
    assert_true(dr < 0.05); /* the clip range is 1 +- 0.2 */
    assert_true(dv < 0.5);  /* of the order of 0.1 */
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    ppo_models_free(&m);
}

/* ---- safe_rlhf --------------------------------------------------------------------------- */

typedef struct safe_models {
    rl_model *pol, *ref, *rm, *cm, *vr, *vc;
} safe_models;

static void safe_models_new(safe_models *m) {
    m->pol = tiny(RL_HEAD_LM, 141);
    m->ref = tiny(RL_HEAD_LM, 142);
    m->rm = tiny(RL_HEAD_SCORE, 143);
    m->cm = tiny(RL_HEAD_SCORE, 144);
    m->vr = tiny(RL_HEAD_VALUE, 145);
    m->vc = tiny(RL_HEAD_VALUE, 146);
}

static void safe_models_free(safe_models *m) {
    rl_model *all[6] = {m->pol, m->ref, m->rm, m->cm, m->vr, m->vc};
    for (int i = 0; i < 6; i++) rl_model_free(g_ctx, all[i]);
}

static void safe_bind(rl_recipe_program *p, const safe_models *m, rl_test_batch *prompts) {
    rl_recipe_bind_model(p, "policy", m->pol);
    rl_recipe_bind_model(p, "ref", m->ref);
    rl_recipe_bind_model(p, "reward_model", m->rm);
    rl_recipe_bind_model(p, "cost_model", m->cm);
    rl_recipe_bind_model(p, "reward_critic", m->vr);
    rl_recipe_bind_model(p, "cost_critic", m->vc);
    assert_int_equal(rl_recipe_bind_tokens(p, "prompts", prompts->ids, NULL, prompts->attn), RL_OK);
}

static void test_safe_rlhf_by_hand(void **state) {
    (void)state;
    safe_models m;
    safe_models_new(&m);
    /* scores in the hundreds: both streams hit the +-50 clamp */
    for (int64_t k = 0; k < m.cm->score_w->numel; k++)
        rl_tensor_set(g_ctx, m.cm->score_w, k, 3000 * rl_test_get(m.cm->score_w, k));
    rl_test_batch pr;
    rl_test_batch_make(g_ctx, &pr, 3, 4, (int[]){4, 2, 3}, (int[]){4, 2, 3}, 151);
    rl_recipe *r;
    rl_recipe_program *p = rl_test_builtin64("safe_rlhf", (const char *[]){"max_new=5", NULL}, &r);
    safe_bind(p, &m, &pr);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    gen g;
    read_gen(p, &g);
    const int64_t B = g.B, T = g.T, n = B * T;
    const double beta = 0.01;
    double lp_old[256], lp_ref[256], R[8], C[8], vr[256], vc[256], rr[256], cc[256];
    double ar[256], rtr[256], ac[256], rtc[256];
    model_out(m.pol, OUT_LOGPROBS, g.tids, g.tattn, lp_old);
    model_out(m.ref, OUT_LOGPROBS, g.tids, g.tattn, lp_ref);
    model_out(m.rm, OUT_END_SCORE, g.tids, g.tattn, R);
    model_out(m.cm, OUT_END_SCORE, g.tids, g.tattn, C);
    aligned_values(m.vr, g.tids, B, T, vr);
    aligned_values(m.vc, g.tids, B, T, vc);
    int clamped = 0;
    double kl = 0;
    for (int64_t b = 0; b < B; b++) {
        int64_t last = -1;
        for (int64_t t = 0; t < T; t++)
            if (g.mask[b * T + t]) last = t;
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t;
            double k1 = lp_old[i] - lp_ref[i];
            rr[i] = rl_test_clamp(-beta * k1 + (t == last ? R[b] : 0), -50, 50);
            cc[i] = rl_test_clamp(beta * k1 + (t == last ? C[b] : 0), -50, 50);
            clamped += fabs(cc[i]) == 50;
            kl += g.mask[i] * k1 / (double)B;
        }
    }
    assert_int_equal(clamped, B);
    ref_gae(rr, vr, g.mask, B, T, 1, 0.95, ar, rtr);
    ref_gae(cc, vc, g.mask, B, T, 1, 0.95, ac, rtc);
    for (int64_t i = 0; i < n; i++) {
        rl_test_assert_close(rl_test_value(p, "r", i), rr[i], 1e-12, "reward stream");
        rl_test_assert_close(rl_test_value(p, "c", i), cc[i], 1e-12, "cost stream (+beta kl)");
        rl_test_assert_close(rl_test_value(p, "adv_r", i), ar[i], 1e-11, "reward GAE");
        rl_test_assert_close(rl_test_value(p, "ret_r", i), rtr[i], 1e-11, "reward returns");
        rl_test_assert_close(rl_test_value(p, "adv_c", i), ac[i], 1e-11, "cost GAE");
        rl_test_assert_close(rl_test_value(p, "ret_c", i), rtc[i], 1e-11, "cost returns");
    }
    /* J_c: the first batch's mean raw end cost; the actor's lambda is the one
     * after this step's dual update: min(0 + 0.1 * (J_c - 0) * e^0, log 5) */
    double jc = (C[0] + C[1] + C[2]) / 3, Rm = (R[0] + R[1] + R[2]) / 3;
    double lam = exp(fmin(0.1 * jc, log(5.0)));
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double sa = 0, nm = 0, s2r = 0, s2c = 0;
    for (int64_t i = 0; i < n; i++) {
        double A = (ar[i] - lam * ac[i]) / (1 + lam);
        sa += g.mask[i] * A, nm += g.mask[i];
        s2r += g.mask[i] * ar[i] * ar[i], s2c += g.mask[i] * ac[i] * ac[i];
    }
    rl_test_assert_close(rl_test_metric(p, "episode_cost"), jc, 1e-12, "J_c");
    rl_test_assert_close(rl_test_metric(p, "cost"), jc, 1e-12, "mean cost");
    rl_test_assert_close(rl_test_metric(p, "reward"), Rm, 1e-12, "mean reward");
    rl_test_assert_close(rl_test_metric(p, "lambda"), lam, 1e-12, "lambda used by the actor");
    rl_test_assert_close(rl_test_metric(p, "kl"), kl, 1e-12, "kl");
    rl_test_assert_close(rl_test_loss_named(p, "loss"), -sa / nm, 1e-12, "actor loss with A = (A_r - l A_c) / (1 + l)");
    rl_test_assert_close(rl_test_loss_named(p, "loss_reward_critic"), 0.5 * s2r / nm, 1e-12, "reward critic loss at V_old");
    rl_test_assert_close(rl_test_loss_named(p, "loss_cost_critic"), 0.5 * s2c / nm, 1e-12, "cost critic loss at V_old");
    rl_test_assert_close(rl_test_metric(p, "reward_critic_loss"), 0.5 * s2r / nm, 1e-12, "metric");
    rl_test_assert_close(rl_test_loss_named(p, "loss_lambda"), -jc, 1e-12, "loss_lambda = -e^0 (J_c - 0)");
    rl_test_free_program(p, r);
    rl_test_batch_free(g_ctx, &pr);
    safe_models_free(&m);
}

/* One SGD step on loss_lambda and the bound, the window of J_c, and the delay. */
typedef struct lam_run {
    rl_recipe *r;
    rl_recipe_program *p;
    rl_optim *opt;
    rl_tensor *ll;
    double lr;
} lam_run;

static void lam_open(lam_run *L, safe_models *m, rl_test_batch *pr, const char *const *sets) {
    L->p = rl_test_builtin64("safe_rlhf", sets, &L->r);
    safe_bind(L->p, m, pr);
    const rl_recipe_param_info *pi = rl_recipe_param_at(L->p, 0);
    assert_string_equal(pi->name, "log_lambda");
    L->ll = pi->tensor;
    L->lr = pi->optim.lr;
    L->opt = rl_optim_sgd_new(g_ctx, (rl_tensor *[]){L->ll}, 1, NULL);
    assert_non_null(L->opt);
}

/* One policy step: the loss, backward, the SGD step of log_lambda, the bound. */
static void lam_step(lam_run *L) {
    rl_optim_zero_grad(L->opt);
    assert_int_equal(rl_recipe_run_loss(L->p, g_ctx, -1, -1), RL_OK);
    assert_int_equal(rl_recipe_backward(L->p, g_ctx), RL_OK);
    assert_int_equal(rl_optim_step(L->opt, L->lr), RL_OK);
    assert_int_equal(rl_recipe_project_params(L->p, g_ctx), RL_OK);
}

static void lam_close(lam_run *L) {
    rl_optim_free(L->opt);
    rl_test_free_program(L->p, L->r);
}

static void test_safe_rlhf_lambda_update(void **state) {
    (void)state;
    safe_models m;
    safe_models_new(&m);
    rl_test_batch pr;
    rl_test_batch_make(g_ctx, &pr, 3, 3, (int[]){3, 2, 3}, (int[]){3, 2, 3}, 161);
    double C[64];
    int nc = 0;
    /* 1. one step, by hand: log_lambda += lr (J_c - threshold) e^log_lambda */
    lam_run L;
    lam_open(&L, &m, &pr, (const char *[]){"max_new=3", "threshold=-0.5", NULL});
    rl_test_assert_close(rl_test_get(L.ll, 0), 0, 0, "log lambda_init = log 1");
    assert_int_equal(rl_recipe_run_rollout(L.p, g_ctx), RL_OK);
    gen g;
    read_gen(L.p, &g);
    model_out(m.cm, OUT_END_SCORE, g.tids, g.tattn, C);
    double jc = (C[0] + C[1] + C[2]) / 3;
    double want = fmin(0 + 0.1 * (jc + 0.5) * exp(0.0), log(5.0));
    assert_true(want < log(5.0)); /* the bound is not active here */
    lam_step(&L);
    rl_test_assert_close(rl_test_get(L.ll, 0), want, 1e-14, "one dual step");
    rl_test_assert_close(rl_test_metric(L.p, "lambda"), exp(want), 1e-13, "the actor used the updated lambda");
    assert_int_equal(rl_recipe_step(L.p), 1);
    /* a second step from there (same batch): J_c unchanged */
    double want2 = fmin(want + 0.1 * (jc + 0.5) * exp(want), log(5.0));
    rl_ctx_reset(g_ctx);
    lam_step(&L);
    rl_test_assert_close(rl_test_get(L.ll, 0), want2, 1e-14, "second dual step");
    lam_close(&L);
    rl_ctx_reset(g_ctx);
    /* 2. the bound: a threshold far below the costs drives log_lambda to log 5 */
    lam_open(&L, &m, &pr, (const char *[]){"max_new=3", "threshold=-100", NULL});
    assert_int_equal(rl_recipe_run_rollout(L.p, g_ctx), RL_OK);
    read_gen(L.p, &g);
    model_out(m.cm, OUT_END_SCORE, g.tids, g.tattn, C);
    jc = (C[0] + C[1] + C[2]) / 3;
    assert_true(0.1 * (jc + 100) > log(5.0));
    lam_step(&L);
    rl_test_assert_close(rl_test_get(L.ll, 0), log(5.0), 1e-15, "log_lambda = min(., log lambda_max)");
    rl_test_assert_close(rl_test_metric(L.p, "lambda"), 5.0, 1e-14, "lambda_max");
    lam_close(&L);
    rl_ctx_reset(g_ctx);
    /* 3. the window: J_c is the mean of the last 4 end costs across batches */
    lam_open(&L, &m, &pr, (const char *[]){"max_new=3", "window=4", NULL});
    nc = 0;
    for (int b = 0; b < 3; b++) {
        assert_int_equal(rl_recipe_run_rollout(L.p, g_ctx), RL_OK);
        read_gen(L.p, &g);
        model_out(m.cm, OUT_END_SCORE, g.tids, g.tattn, C + nc);
        nc += (int)g.B;
        double s = 0;
        int k0 = nc > 4 ? nc - 4 : 0;
        for (int k = k0; k < nc; k++) s += C[k];
        assert_int_equal(rl_recipe_run_loss(L.p, g_ctx, -1, -1), RL_OK);
        rl_test_assert_close(rl_test_metric(L.p, "episode_cost"), s / (nc - k0), 1e-12, "J_c over the window");
        rl_ctx_reset(g_ctx);
    }
    lam_close(&L);
    rl_ctx_reset(g_ctx);
    /* 4. the delay: no update during the first 2 policy steps, then one per step */
    lam_open(&L, &m, &pr, (const char *[]){"max_new=3", "delay=2", "threshold=-1", NULL});
    assert_int_equal(rl_recipe_run_rollout(L.p, g_ctx), RL_OK);
    read_gen(L.p, &g);
    model_out(m.cm, OUT_END_SCORE, g.tids, g.tattn, C);
    jc = (C[0] + C[1] + C[2]) / 3;
    double ll = 0;
    for (int s = 0; s < 4; s++) {
        /* d loss_lambda / d log_lambda = -[step >= delay] e^log_lambda (J_c - threshold) */
        double grad = s < 2 ? 0.0 : -exp(ll) * (jc + 1);
        if (s >= 2) ll = fmin(ll + 0.1 * (jc + 1) * exp(ll), log(5.0));
        lam_step(&L);
        rl_test_assert_close(rl_test_get(L.ll->grad, 0), grad, 1e-14, "gradient of loss_lambda");
        rl_test_assert_close(rl_test_get(L.ll, 0), ll, 1e-14, s < 2 ? "held during the delay" : "updated after the delay");
        rl_test_assert_close(rl_test_metric(L.p, "lambda"), exp(ll), 1e-13, "lambda seen by the actor");
        rl_ctx_reset(g_ctx);
    }
    assert_true(ll > 0);
    /* a runner resuming at step 1 sets the counter back: the gate closes again */
    rl_recipe_set_step(L.p, 1);
    double before = rl_test_get(L.ll, 0);
    lam_step(&L);
    rl_test_assert_close(rl_test_get(L.ll, 0), before, 0, "step() restored by rl_recipe_set_step");
    lam_close(&L);
    rl_test_batch_free(g_ctx, &pr);
    safe_models_free(&m);
}

/* ---- the language extensions the built-ins use ----------------------------------------------- */

static void expect_first_error(const char *src, int line, int col, const char *msg) {
    rl_recipe *r = rl_test_parse(src);
    rl_recipe_program *p = rl_test_compile(r, RL_F32, true);
    if (p) fail_msg("expected '%s' but it compiled:\n%s", msg, src);
    const rl_recipe_diag *d = rl_recipe_first_error(r);
    assert_non_null(d);
    if (d->line != line || d->col != col || strcmp(d->msg, msg) != 0) {
        rl_recipe_print_diags(r, stderr);
        fail_msg("expected %d:%d '%s', got %d:%d '%s'", line, col, msg, d->line, d->col, d->msg);
    }
    rl_recipe_free(r);
}

static void test_if_extension(void **state) {
    (void)state;
    const char *src = "recipe t : supervised\ninput x : f32[B]\ninput y : f32[B]\nhyper use_y = false\n"
                      "param w = 2 : sgd(lr = 0.1)\nextra = y * 3\n"
                      "loss = mean(w * x + if(use_y, extra, 0))\n";
    /* 'extra' and 'y' are used only by the branch not taken: no warning, and y need not be bound */
    rl_recipe *r = rl_test_parse(src);
    rl_recipe_program *p = rl_test_compile_clean(r, 1);
    rl_tensor *x = rl_test_tensor_of(RL_F64, 1, (int64_t[]){2}, (double[]){1, 3});
    rl_tensor *y = rl_test_tensor_of(RL_F64, 1, (int64_t[]){2}, (double[]){10, 20});
    assert_int_equal(rl_recipe_bind_tensor(p, "x", x), RL_OK);
    /* extra = y * 3 is still a statement of its own: it needs y */
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_ERR_STATE);
    rl_test_free_program(p, r);
    src = "recipe t : supervised\ninput x : f32[B]\ninput y : f32[B]\nhyper use_y = false\n"
          "param w = 2 : sgd(lr = 0.1)\n"
          "loss = mean(w * x + if(use_y, y * 3, 0))\n";
    r = rl_test_parse(src);
    p = rl_test_compile_clean(r, 1);
    assert_int_equal(rl_recipe_bind_tensor(p, "x", x), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), (2 * 1 + 2 * 3) / 2.0, 1e-15, "branch b (0)");
    rl_test_free_program(p, r);
    r = rl_test_parse(src);
    assert_int_equal(rl_recipe_set_arg(r, "use_y=true"), RL_OK);
    p = rl_test_compile_clean(r, 1);
    assert_int_equal(rl_recipe_bind_tensor(p, "x", x), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_ERR_STATE);
    assert_non_null(strstr(rl_recipe_program_error(p), "input 'y' is not bound"));
    assert_int_equal(rl_recipe_bind_tensor(p, "y", y), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), (2 + 30 + 6 + 60) / 2.0, 1e-15, "branch a (y * 3)");
    rl_test_free_program(p, r);
    /* string conditions, inside fn bodies, and tuples through if */
    r = rl_test_parse("recipe t : supervised\ninput v : f32[B, T]\ninput m : i32[B, T]\nhyper kind = \"gae\", g = 0.5\n"
              "param w = 1 : sgd(lr = 0.1)\nfn pick(x) = if(kind == \"gae\", x * 2, x)\n"
              "a, ret = if(g > 1, gae(v, v, m, 1, 1), gae(v * w, v, m, g, 1))\n"
              "loss = mean(pick(a)) + mean(ret) * 0 + mean(w)\n");
    p = rl_test_compile_clean(r, 1);
    rl_test_free_program(p, r);
    /* errors */
    expect_first_error("recipe t : supervised\ninput x : f32[B]\nparam w = 1 : sgd(lr = 0.1)\n"
                       "loss = mean(w * if(x > 0, x, 0))\n",
                       4, 20, "the condition of 'if' must be a constant, got a f32 tensor");
    expect_first_error("recipe t : supervised\ninput x : f32[B]\nhyper on = true\nparam w = 1 : sgd(lr = 0.1)\n"
                       "loss = mean(w * if(on, x))\n",
                       5, 17, "wrong number of arguments to 'if': expected 3, got 2");
    /* the branch not taken is still checked for names */
    expect_first_error("recipe t : supervised\ninput x : f32[B]\nhyper on = true\nparam w = 1 : sgd(lr = 0.1)\n"
                       "loss = mean(w * if(on, x, xx))\n",
                       5, 27, "undefined name 'xx'");
    expect_first_error("recipe t : supervised\ninput x : f32[B]\nhyper on = true\nparam w = 1 : sgd(lr = 0.1)\n"
                       "loss = mean(w * if(on, x, logsigmod(x)))\n",
                       5, 27, "unknown function 'logsigmod'");
    rl_tensor_free(g_ctx, x), rl_tensor_free(g_ctx, y);
}

static void test_step_counter(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe t : fullbatch\nparam w = 3 : sgd(lr = 0.1)\nhyper delay = 2\n"
                         "loss = w * step() + w * w * (step() >= delay)\n");
    rl_recipe_program *p = rl_test_compile_clean(r, 1);
    const rl_tensor *w = rl_recipe_param_at(p, 0)->tensor;
    assert_int_equal(rl_recipe_step(p), 0);
    for (int s = 0; s < 4; s++) {
        rl_tensor_zero_grad(g_ctx, (rl_tensor *)w);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), 3.0 * s + (s >= 2 ? 9 : 0), 0, "w step + w^2 [step >= 2]");
        assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
        rl_test_assert_close(rl_test_get(w->grad, 0), s + (s >= 2 ? 6 : 0), 0, "step() carries no gradient");
        assert_int_equal(rl_recipe_step(p), s + 1);
        rl_ctx_reset(g_ctx);
    }
    rl_recipe_set_step(p, 10);
    assert_int_equal(rl_recipe_step(p), 10);
    rl_recipe_set_step(p, -3);
    assert_int_equal(rl_recipe_step(p), 0);
    rl_test_free_program(p, r);
}

/* Ziegler et al.'s update on numbers worked out by hand (target 2, horizon 8, n = 2):
 *   beta_0 = 0.1
 *   KL = [3, 5]:   mean 4,   e = clip(4/2 - 1) = 0.2     -> beta_1 = 0.1 (1 + 0.2 * 2/8)       = 0.105
 *   KL = [1, 1]:   mean 1,   e = clip(-0.5)    = -0.2    -> beta_2 = 0.105 (1 - 0.05)          = 0.09975
 *   KL = [2.2, 2.2]: e = 0.1                             -> beta_3 = 0.09975 (1 + 0.025)       = 0.10224375
 *   KL = [2, 2]:   e = 0                                 -> beta_4 = beta_3
 * and each batch's call returns the value before its own update. */
static void test_adaptive_beta_worked_example(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe ctl : online\ninput k : f32[B]\nparam w = 1 : sgd(lr = 0.1)\n"
                         "rollout {\n  b = adaptive_beta(k, 0.1, target = 2, horizon = 8)\n}\nloss = w * b\n");
    rl_recipe_program *p = rl_test_compile_clean(r, 1);
    const double kls[5][2] = {{3, 5}, {1, 1}, {2.2, 2.2}, {2, 2}, {2, 2}};
    const double want[5] = {0.1, 0.105, 0.09975, 0.10224375, 0.10224375};
    for (int i = 0; i < 5; i++) {
        rl_tensor *k = rl_test_tensor_of(RL_F64, 1, (int64_t[]){2}, kls[i]);
        assert_int_equal(rl_recipe_bind_tensor(p, "k", k), RL_OK);
        assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want[i], 1e-15, "beta for this batch");
        rl_ctx_reset(g_ctx);
        rl_tensor_free(g_ctx, k);
    }
    rl_test_free_program(p, r);
    /* once per batch: rollout blocks only */
    expect_first_error("recipe t : fullbatch\ninput k : f32[B]\nparam w = 1 : sgd(lr = 0.1)\n"
                       "loss = w * adaptive_beta(k, 0.1)\n",
                       4, 12, "'adaptive_beta' can only be called in a rollout block");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtins_compile_clean),
        cmocka_unit_test(test_sft_by_hand),
        cmocka_unit_test(test_bradley_terry_by_hand),
        cmocka_unit_test(test_cost_model_by_hand),
        cmocka_unit_test(test_ppo_kl_rollout_by_hand),
        cmocka_unit_test(test_ppo_kl_estimators),
        cmocka_unit_test(test_ppo_kl_reward_clamp),
        cmocka_unit_test(test_ppo_kl_adaptive_beta),
        cmocka_unit_test(test_ppo_kl_whiten_and_ptx),
        cmocka_unit_test(test_gradcheck_setting_avoids_kinks),
        cmocka_unit_test(test_safe_rlhf_by_hand),
        cmocka_unit_test(test_safe_rlhf_lambda_update),
        cmocka_unit_test(test_if_extension),
        cmocka_unit_test(test_step_counter),
        cmocka_unit_test(test_adaptive_beta_worked_example),
    };
    return cmocka_run_group_tests(tests, rl_test_ctx_setup, rl_test_ctx_teardown);
}
