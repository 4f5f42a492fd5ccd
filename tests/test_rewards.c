/* tests/test_rewards.c - the verifiable rewards (recipes/bind/rewards.c)
 * through a recipe, on token batches written here as bytes: reward_match's
 * answer rule (the last number, or the last \boxed{}; thousands commas,
 * signs, fractions; the prompt and the text after EOS ignored), answers
 * shared by a prompt's G samples, reward_format's three forms, and the
 * errors for rows that are not groups of the answers.
 */
#include "rl_test.h"
#include "rl_test_recipe.h"

#include <string.h>

#define EOS 256 /* the byte tokenizer's first special id */

/* Token rows from prompt/response strings: ids are bytes; mask = 1 on the
 * response; "@" in a response is the EOS id. */
static void tokens_of(int n, const char *const *prompt, const char *const *resp, int64_t T, rl_tensor **ids,
                      rl_tensor **mask, rl_tensor **attn) {
    int64_t shape[2] = {n, T};
    *ids = rl_tensor_new(g_ctx, RL_I32, 2, shape, "ids");
    *mask = rl_tensor_new(g_ctx, RL_I32, 2, shape, "mask");
    *attn = rl_tensor_new(g_ctx, RL_I32, 2, shape, "attn");
    for (int b = 0; b < n; b++) {
        int64_t t = 0;
        for (const char *s = prompt ? prompt[b] : ""; *s; s++, t++) {
            rl_tensor_set(g_ctx, *ids, b * T + t, (unsigned char)*s);
            rl_tensor_set(g_ctx, *attn, b * T + t, 1);
        }
        for (const char *s = resp[b]; *s; s++, t++) {
            assert_true(t < T);
            rl_tensor_set(g_ctx, *ids, b * T + t, *s == '@' ? EOS : (unsigned char)*s);
            rl_tensor_set(g_ctx, *mask, b * T + t, 1);
            rl_tensor_set(g_ctx, *attn, b * T + t, 1);
        }
    }
}

static const char *k_src = "recipe t : supervised\n"
                           "input seq : tokens\n"
                           "input ans : tokens[B, Ta]\n"
                           "param w = 1 : sgd(lr = 0.1)\n"
                           "m = reward_match(seq, ans)\n"
                           "f = reward_format(seq)\n"
                           "b = reward_format(seq, kind = \"boxed\")\n"
                           "g = reward_format(seq, kind = \"tags\")\n"
                           "loss = w * mean(m + f + b + g)\n";

typedef struct rewards {
    double m[16], f[16], b[16], g[16];
} rewards;

/* Runs k_src on the rows and answers; eos: the env's EOS id (-1: none). */
static void run(int n, const char *const *prompt, const char *const *resp, int na, const char *const *answers,
                int32_t eos, rewards *out) {
    rl_recipe *r = rl_test_parse(k_src);
    rl_recipe_model_env env;
    rl_recipe_model_env_init(&env, 1);
    env.eos_id = eos;
    rl_recipe_opts o = rl_recipe_opts_models(&env);
    o.externs = NULL;
    o.dtype = RL_F64;
    rl_recipe_program *p = rl_recipe_compile(r, g_ctx, &o);
    if (!p || rl_recipe_n_errors(r)) {
        rl_recipe_print_diags(r, stderr);
        fail_msg("the rewards recipe does not compile");
    }
    rl_tensor *ids, *mask, *attn, *aids, *amask, *aattn;
    tokens_of(n, prompt, resp, 48, &ids, &mask, &attn);
    tokens_of(na, NULL, answers, 16, &aids, &amask, &aattn);
    assert_int_equal(rl_recipe_bind_tokens(p, "seq", ids, mask, attn), RL_OK);
    assert_int_equal(rl_recipe_bind_tokens(p, "ans", aids, NULL, aattn), RL_OK);
    if (rl_recipe_run_loss(p, g_ctx, -1, -1) != RL_OK) fail_msg("run: %s", rl_recipe_program_error(p));
    const char *names[4] = {"m", "f", "b", "g"};
    double *dst[4] = {out->m, out->f, out->b, out->g};
    for (int k = 0; k < 4; k++) {
        rl_tensor *t = rl_recipe_value_of(p, names[k]);
        assert_non_null(t);
        assert_int_equal(t->numel, n);
        for (int i = 0; i < n; i++) dst[k][i] = rl_tensor_get(g_ctx, t, i);
    }
    rl_tensor *all[6] = {ids, mask, attn, aids, amask, aattn};
    for (int k = 0; k < 6; k++) rl_tensor_free(g_ctx, all[k]);
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

static void test_match(void **state) {
    (void)state;
    const char *prompt[] = {"What is 40+2?", "Q", "Q", "Q", "Q 7", "Q", "Q", "Q", "Q", "Q", "Q"};
    const char *resp[] = {" 42",
                          " It is 41, no: 42.",
                          " \\boxed{7} or 9",
                          " 1,000",
                          " none",            /* the prompt's 7 does not count */
                          " -3",
                          " 3.50",
                          " 4@2",             /* text after EOS is not the response */
                          " 43",
                          " 4 2",             /* the last number is 2 */
                          " \\boxed{x = 12}"};
    const char *answers[] = {"42", "42", "7", "1000", "7", "-3", "3.5", "4", "42", "42", "12"};
    const double want[] = {1, 1, 1, 1, 0, 1, 1, 1, 0, 0, 1};
    rewards rw;
    /* every row its own answer (G = 1) */
    run(11, prompt, resp, 11, answers, EOS, &rw);
    for (int i = 0; i < 11; i++)
        if (rw.m[i] != want[i]) fail_msg("row %d (\"%s\" vs \"%s\"): reward_match %g, want %g", i, resp[i], answers[i],
                                         rw.m[i], want[i]);
}

static void test_groups_share_answers(void **state) {
    (void)state;
    /* G = 3 samples of each of 2 prompts: rows 0..2 answer "5", rows 3..5 "8" */
    const char *prompt[] = {"2+3?", "2+3?", "2+3?", "4+4?", "4+4?", "4+4?"};
    const char *resp[] = {" 5", " 6", " 8", " 8", " 5", " 8"};
    const char *answers[] = {"5", "8"};
    const double want[] = {1, 0, 0, 1, 0, 1};
    /* called as the program calls it (a recipe's shape check cannot make B*G rows without generate) */
    rl_tensor *ids, *mask, *attn, *aids, *amask, *aattn;
    tokens_of(6, prompt, resp, 16, &ids, &mask, &attn);
    tokens_of(2, NULL, answers, 4, &aids, &amask, &aattn);
    rl_recipe_value args[2] = {{.kind = RL_RV_TOKENS, .tok = {ids, mask, attn}},
                               {.kind = RL_RV_TOKENS, .tok = {aids, amask, aattn}}};
    rl_recipe_call c = {.ctx = g_ctx, .args = args, .dtype = RL_F64};
    rl_recipe_value out = {0};
    assert_int_equal(rl_recipe_fn_reward_match(&c, &out), RL_OK);
    assert_int_equal(out.t->numel, 6);
    for (int i = 0; i < 6; i++)
        if (rl_tensor_get(g_ctx, out.t, i) != want[i])
            fail_msg("row %d: %g, want %g", i, rl_tensor_get(g_ctx, out.t, i), want[i]);
    rl_tensor_free(g_ctx, aids), rl_tensor_free(g_ctx, amask), rl_tensor_free(g_ctx, aattn);
    /* 6 rows cannot be groups of 4 answers: an error naming both sizes */
    const char *four[] = {"1", "2", "3", "4"};
    tokens_of(4, NULL, four, 4, &aids, &amask, &aattn);
    args[1].tok = (rl_recipe_tokens){aids, amask, aattn};
    assert_int_not_equal(rl_recipe_fn_reward_match(&c, &out), RL_OK);
    assert_non_null(strstr(rl_ctx_error(g_ctx), "reward_match: seq has [6] rows and answer [4]"));
    rl_ctx_clear_error(g_ctx);
    rl_tensor *all[6] = {ids, mask, attn, aids, amask, aattn};
    for (int k = 0; k < 6; k++) rl_tensor_free(g_ctx, all[k]);
    /* in a recipe, answers of another batch dim are a shape error at the call, before any data */
    rl_recipe *r = rl_test_parse("recipe t : supervised\ninput seq : tokens\ninput ans : tokens[A, Ta]\n"
                                 "param w = 1 : sgd(lr = 0.1)\nloss = w * mean(reward_match(seq, ans))\n");
    assert_null(rl_test_compile(r, RL_F32, false));
    const rl_recipe_diag *d = rl_recipe_first_error(r);
    assert_non_null(d);
    assert_int_equal(d->line, 5);
    assert_int_equal(d->col, 17);
    assert_non_null(strstr(d->msg, "reward_match: seq has [B] rows and answer [A]"));
    rl_recipe_free(r);
}

static void test_format(void **state) {
    (void)state;
    const char *prompt[] = {"Q", "Q", "Q", "Q", "Q", "Q", "Q"};
    const char *resp[] = {" 42", " 42.", " The answer is 42", " \\boxed{42}", " <think>4+4</think> <answer>8</answer>",
                          "<think>x</think>", " 17 @junk"};
    const char *answers[] = {"0", "0", "0", "0", "0", "0", "0"};
    const double number[] = {1, 0, 0, 0, 0, 0, 1}, boxed[] = {0, 0, 0, 1, 0, 0, 0}, tags[] = {0, 0, 0, 0, 1, 0, 0};
    rewards rw;
    run(7, prompt, resp, 7, answers, EOS, &rw);
    for (int i = 0; i < 7; i++) {
        if (rw.f[i] != number[i]) fail_msg("row %d: number format %g, want %g", i, rw.f[i], number[i]);
        if (rw.b[i] != boxed[i]) fail_msg("row %d: boxed format %g, want %g", i, rw.b[i], boxed[i]);
        if (rw.g[i] != tags[i]) fail_msg("row %d: tags format %g, want %g", i, rw.g[i], tags[i]);
    }
    /* a kind that is not one: an error at its place when compiling */
    rl_recipe *r = rl_test_parse("recipe t : supervised\ninput seq : tokens\nparam w = 1 : sgd(lr = 0.1)\n"
                                 "loss = w * mean(reward_format(seq, kind = \"json\"))\n");
    rl_recipe_program *p = rl_test_compile(r, RL_F32, false);
    assert_null(p);
    assert_true(rl_recipe_n_errors(r) > 0);
    rl_recipe_free(r);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_groups_share_answers),
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests(tests, rl_test_ctx_setup, rl_test_ctx_teardown);
}
