/* tests/test_recipe_gradcheck.c - `rlhf gradcheck RECIPE` for every built-in
 * recipe (recipes/views/gradcheck.c): each loss's gradient w.r.t. every tensor of
 * every trainable it trains, every param and every float input it reaches,
 * against float64 central differences, with tiny models. One test per
 * built-in recipe, one per switch that changes the graph (margin, ptx,
 * whitening, adaptive beta, the estimators, the lambda delay), var and std,
 * the batch-split check, and a recipe
 * whose loss hides a dependence from autodiff, which the check must catch.
 */
#include "rl_test.h"

#include "rl_gpt2.h"
#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_ops.h"
#include "rl_recipe_gradcheck.h"

#include "rl_test_recipe.h"

/* Parameter tensors of a tiny model of each kind (LM, SCORE, VALUE). */
static int n_tensors_of(rl_gpt2_kind kind) {
    rl_gpt2_config cfg;
    rl_gpt2_config_preset("tiny", &cfg);
    rl_gpt2 *m = rl_gpt2_new(g_ctx, &cfg, kind, RL_F64, 1);
    assert_non_null(m);
    int n = rl_gpt2_n_tensors(m);
    rl_gpt2_free(g_ctx, m);
    return n;
}

/* Runs the check of a built-in (with --set overrides; `elems` sampled
 * elements per model tensor, 0: the default) and asserts that it passed over
 * exactly `want_tensors` (loss, tensor) pairs. */
static void check_builtin(const char *name, const char *const *sets, int elems, int want_tensors) {
    rl_recipe *r = rl_test_load_builtin(name, sets);
    rl_recipe_gc_opts o;
    rl_recipe_gc_opts_default(&o);
    if (elems) o.model_elems = elems;
    rl_recipe_gc_result res;
    rl_test_gradcheck_must_pass(r, &o, &res, name);
    assert_int_equal(res.n_tensors, want_tensors);
    assert_true(res.n_elems >= res.n_tensors);
    rl_recipe_free(r);
}

static void test_sft(void **state) {
    (void)state;
    check_builtin("sft", NULL, 0, n_tensors_of(RL_GPT2_LM));
}

static void test_bradley_terry(void **state) {
    (void)state;
    check_builtin("bradley_terry", NULL, 0, n_tensors_of(RL_GPT2_SCORE));
    /* the margin column is a float input the loss reaches */
    check_builtin("bradley_terry", (const char *[]){"use_margin=true", NULL}, 3, n_tensors_of(RL_GPT2_SCORE) + 1);
}

static void test_cost_model(void **state) {
    (void)state;
    /* the cost signs are i32 labels (+-1 in the check): no gradient to check */
    check_builtin("cost_model", NULL, 0, n_tensors_of(RL_GPT2_SCORE));
}

static void test_ppo_kl(void **state) {
    (void)state;
    int n = n_tensors_of(RL_GPT2_LM) + n_tensors_of(RL_GPT2_VALUE);
    check_builtin("ppo_kl", NULL, 0, n);
    /* ptx (demonstrations in the actor's loss), whitening, adaptive beta, k3 */
    check_builtin("ppo_kl", (const char *[]){"ptx_coef=2", "whiten_adv=true", "adaptive_kl=true", "kl_estimator=k3",
                                             "vclip=0.2", NULL},
                  3, n);
}

static void test_safe_rlhf(void **state) {
    (void)state;
    int n = n_tensors_of(RL_GPT2_LM) + 2 * n_tensors_of(RL_GPT2_VALUE) + 1;
    check_builtin("safe_rlhf", NULL, 0, n);
    check_builtin("safe_rlhf", (const char *[]){"threshold=-2", "kl_estimator=k2", NULL}, 3, n);
}

static void test_dpo(void **state) {
    (void)state;
    check_builtin("dpo", NULL, 0, n_tensors_of(RL_GPT2_LM));
    check_builtin("dpo", (const char *[]){"eps=0.1", NULL}, 3, n_tensors_of(RL_GPT2_LM));
}

static void test_ipo(void **state) {
    (void)state;
    check_builtin("ipo", NULL, 0, n_tensors_of(RL_GPT2_LM));
}

/* var and std (natives written with ops) over every axis choice, both
 * corrections, keepdim: gradients w.r.t. a param and a float input. */
static void test_var_std(void **state) {
    (void)state;
    const char *src = "recipe v : fullbatch\nparam w : f32[3, 4] = 0.5 : sgd(lr = 0.1)\ninput x : f32[B, 3, 4]\n"
                      "y = w * x\n"
                      "loss = sum(var(y, axis = -1)) + std(y) + mean(var(y, axis = 0, keepdim = true, correction = 0))"
                      " + sum(std(y, axis = 1, correction = 0))\n";
    rl_recipe *r = rl_recipe_parse(src, strlen(src), "v.recipe");
    rl_recipe_gc_result res;
    assert_int_equal(rl_recipe_gradcheck(r, NULL, &res), RL_OK);
    if (res.n_failed) fail_msg("%s", res.msg);
    assert_int_equal(res.n_tensors, 2);
    rl_recipe_free(r);
}

/* Runs the check with the batch-split part at batch B; returns the report. */
static char *split_report(rl_recipe *r, int64_t B, rl_recipe_gc_result *res) {
    rl_recipe_gc_opts o;
    rl_recipe_gc_opts_default(&o);
    o.batch = B;
    o.splits = 1;
    FILE *f = tmpfile();
    assert_non_null(f);
    o.out = f;
    assert_int_equal(rl_recipe_gradcheck(r, &o, res), RL_OK);
    assert_int_equal(res->n_failed, 0);
    long n = ftell(f);
    char *buf = calloc((size_t)n + 1, 1);
    assert_non_null(buf);
    rewind(f);
    assert_int_equal(fread(buf, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return buf;
}

/* The batch-split check: a mean over rows accumulates exactly at every split
 * of B = 6 (3 splits), a sum over rows is 1/k of itself and says so, DPO's
 * per-pair mean is split-free, and SFT's global token mean is not (each
 * micro-batch divides by its own token count). */
static void test_batch_split(void **state) {
    (void)state;
    const char *src = "recipe s : fullbatch\nparam w : f32[2] = 0.5 : sgd(lr = 0.1)\nparam u : f32[2] = 0.5 : "
                      "sgd(lr = 0.1)\ninput x : f32[B, 2]\nloss = sum(square(x * w))\nloss_m = mean(square(x * u))\n";
    rl_recipe *r = rl_recipe_parse(src, strlen(src), "s.recipe");
    rl_recipe_gc_result res;
    char *out = split_report(r, 6, &res);
    assert_int_equal(res.n_splits, 6);
    assert_int_equal(res.n_split_dependent, 3);
    assert_non_null(strstr(out, "loss                 3 x 2 rows"));
    assert_non_null(strstr(out, "a sum over rows"));
    assert_non_null(strstr(out, "s: 6 splits, 3 split-dependent"));
    free(out);
    rl_recipe_free(r);

    r = rl_test_load_builtin("dpo", NULL);
    out = split_report(r, 4, &res);
    assert_int_equal(res.n_splits, 2);
    assert_int_equal(res.n_split_dependent, 0);
    free(out);
    rl_recipe_free(r);

    r = rl_test_load_builtin("sft", NULL);
    out = split_report(r, 4, &res);
    assert_int_equal(res.n_splits, 2);
    assert_int_equal(res.n_split_dependent, 2);
    assert_non_null(strstr(out, "normalises by a batch statistic"));
    free(out);
    rl_recipe_free(r);
}

/* window_mean has no gradient, so a loss that depends on a param through it
 * has a wrong tape gradient: the check fails, naming the param, and prints
 * a FAIL line and a failing summary. */
static void test_catches_a_hidden_dependence(void **state) {
    (void)state;
    const char *src = "recipe hidden : fullbatch\nparam w : f32[2] = 0.25 : sgd(lr = 0.1)\n"
                      "loss = sum((w - 1) ^ 2) + 3 * window_mean(w, 1)\n";
    rl_recipe *r = rl_recipe_parse(src, strlen(src), "hidden.recipe");
    rl_recipe_gc_opts o;
    rl_recipe_gc_opts_default(&o);
    FILE *f = tmpfile();
    assert_non_null(f);
    o.out = f;
    rl_recipe_gc_result res;
    assert_int_equal(rl_recipe_gradcheck(r, &o, &res), RL_OK);
    assert_int_equal(res.n_tensors, 1);
    assert_int_equal(res.n_failed, 1);
    assert_non_null(strstr(res.msg, "param w"));
    char buf[4096] = {0};
    rewind(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    assert_true(n > 0);
    assert_non_null(strstr(buf, "param w"));
    assert_non_null(strstr(buf, "FAIL"));
    assert_non_null(strstr(buf, "hidden: 1 tensors, 1 failed"));
    rl_recipe_free(r);
    /* a recipe that does not compile is an error, with the reason */
    const char *bad = "recipe b : fullbatch\nparam w = 0 : sgd(lr = 0.1)\nloss = w * undefined_thing\n";
    r = rl_recipe_parse(bad, strlen(bad), "bad.recipe");
    assert_int_equal(rl_recipe_gradcheck(r, NULL, &res), RL_ERR_ARG);
    assert_non_null(strstr(res.msg, "bad.recipe:3:12: error: undefined name 'undefined_thing'"));
    rl_recipe_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sft),
        cmocka_unit_test(test_bradley_terry),
        cmocka_unit_test(test_cost_model),
        cmocka_unit_test(test_ppo_kl),
        cmocka_unit_test(test_safe_rlhf),
        cmocka_unit_test(test_dpo),
        cmocka_unit_test(test_ipo),
        cmocka_unit_test(test_var_std),
        cmocka_unit_test(test_batch_split),
        cmocka_unit_test(test_catches_a_hidden_dependence),
    };
    return cmocka_run_group_tests(tests, rl_test_ctx_setup, rl_test_ctx_teardown);
}
