/* tests/test_recipe.c - the recipe language (recipes/lang/rl_recipe.h): malformed
 * recipes with their exact messages and positions, the stop-gradient audit,
 * --set overrides, and well-formed recipes evaluated against values computed
 * here independently (by hand, from closed forms, or directly with the GPT-2
 * functions and host arithmetic).
 */
#include "rl_test.h"
#include "rl_test_batch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_gradcheck.h"
#include "rl_optim.h"
#include "rl_model.h"
#include "rl_ops.h"
#include "recipe_int.h"
#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_test_recipe.h"

/* ---- helpers ------------------------------------------------------------------ */


/* GPT-2's model functions, no extern bridge (test_extern.c has that) */
static rl_recipe_program *compile_dtype(rl_recipe *r, rl_dtype dt) { return rl_test_compile(r, dt, false); }

/* Prints every diagnostic (for failing tests). */
static void dump(const rl_recipe *r) { rl_recipe_print_diags(r, stderr); }

/* Asserts that the first error (in position order) of src is exactly msg at
 * line:col, with the given hint when hint is not NULL. */
static void expect_error(const char *src, int line, int col, const char *msg, const char *hint) {
    rl_recipe *r = rl_test_parse(src);
    rl_recipe_program *p = compile_dtype(r, RL_F32);
    if (p) {
        dump(r);
        rl_recipe_program_free(p);
        rl_recipe_free(r);
        fail_msg("expected an error '%s' but the recipe compiled:\n%s", msg, src);
    }
    const rl_recipe_diag *d = rl_recipe_first_error(r);
    if (!d) fail_msg("no error recorded for:\n%s", src);
    if (strcmp(d->msg, msg) != 0 || d->line != line || d->col != col ||
        (hint && (!d->hint || strcmp(d->hint, hint) != 0))) {
        dump(r);
        fail_msg("expected %d:%d '%s' (hint '%s'), got %d:%d '%s' (hint '%s')", line, col, msg,
                 hint ? hint : "-", d->line, d->col, d->msg, d->hint ? d->hint : "-");
    }
    assert_string_equal(d->file, "t.recipe");
    rl_recipe_free(r);
}

/* Compiles r in dt, failing the test with the diagnostics if it does not. */
static rl_recipe_program *must_compile(rl_recipe *r, rl_dtype dt) { return rl_test_must_compile(r, dt, false); }

static bool has_warning(const rl_recipe *r, int line, int col, const char *msg) {
    for (int i = 0; i < rl_recipe_n_diags(r); i++) {
        const rl_recipe_diag *d = rl_recipe_diag_at(r, i);
        if (d->severity == RL_DIAG_WARNING && d->line == line && d->col == col && strcmp(d->msg, msg) == 0)
            return true;
    }
    return false;
}

static double sigmoid(double x) { return 1 / (1 + exp(-x)); }

static rl_model *tiny(rl_model_head kind, uint64_t seed) { return rl_test_tiny_gpt2(g_ctx, kind, seed); }

/* ---- malformed recipes: exact messages and positions ----------------------------- */

#define FB "recipe a : fullbatch\nparam w = 0 : sgd(lr = 0.1)\n"

static void test_syntax_errors(void **state) {
    (void)state;
    expect_error("input x : f32[B]\nloss = sum(x)\n", 1, 1,
                 "a recipe starts with 'recipe NAME : KIND', got 'input'",
                 "the first line names the recipe and its kind, e.g. recipe dpo : pairwise");
    expect_error("recipe a : pairwize\ninput x : f32[B]\nloss = sum(x)\n", 1, 12,
                 "unknown recipe kind 'pairwize'",
                 "expected supervised, pairwise, online or fullbatch; did you mean 'pairwise'?");
    expect_error(FB "loss = mean((w + 1)\n", 3, 20,
                 "expected ')' to close the call of 'mean' at 3:12, got end of file", NULL);
    expect_error(FB "loss = w +\n", 3, 11, "expected an expression after '+', got end of file", NULL);
    expect_error(FB "loss = w $ 2\n", 3, 10, "unexpected character '$'", NULL);
    expect_error("recipe a : fullbatch\nparam w = 0 : sgd(lr = 1e)\nloss = w * w\n", 2, 24,
                 "malformed number '1e'",
                 "write numbers as 3, 0.5, 1e-5 or 2.5e3 (digits after '.' and after 'e')");
    /* a line ending in an operator, then a new statement */
    expect_error(FB "loss = w *\nz = (1 + \nloss_2 = w\n", 3, 10,
                 "expected an expression after '*', but the next line starts a new statement",
                 "a line that ends with an operator continues on the next line");
    expect_error(FB "loss w * w\n", 3, 6, "expected '=' after 'loss', got 'w'", NULL);
    expect_error(FB "loss = sum(w, axis = 0, 1)\n", 3, 25, "positional argument after a keyword argument",
                 NULL);
    expect_error(FB "}\nloss = w\n", 3, 1, "unexpected '}' (no block is open)", NULL);
    expect_error("recipe a : fullbatch\ninput x : f64[B]\nloss = sum(x)\n", 2, 11, "unknown type 'f64'",
                 "write f32: in a recipe it means the run's float dtype (f64 under gradcheck)");
    /* "loss = w" then 5000 times " + w": the 4001st '+' is at column 8 + 4 * 4000 + 2 */
    size_t n = 64 + 4 * 5000;
    char *longsrc = malloc(n);
    assert_non_null(longsrc);
    int k = snprintf(longsrc, n, FB "loss = w");
    for (int i = 0; i < 5000; i++) k += snprintf(longsrc + k, n - (size_t)k, " + w");
    expect_error(longsrc, 3, 8 + 4 * 4000 + 2, "expression too long (more than 4000 operators)",
                 "split it into named parts");
    free(longsrc);
}

static void test_unterminated_block(void **state) {
    (void)state;
    const char *src = "recipe a : online\ninput p : tokens\nmodel m : lm trainable\nrollout {\n"
                      "  s = generate(m, p)\nloss = mean(token_logprobs(m, s))\n";
    expect_error(src, 4, 1, "the rollout block is never closed", "close it with '}'");
    /* and only that: the statements after it are not blamed for being inside it */
    rl_recipe *r = rl_test_parse(src);
    assert_null(compile_dtype(r, RL_F32));
    assert_int_equal(rl_recipe_n_errors(r), 1);
    rl_recipe_free(r);
}

/* `log h = h`: the metric h is the value h, logged under its own name. */
static void test_log_value_under_its_name(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe a : fullbatch\nparam w = 1.5 : sgd(lr = 0.1)\nh = w * 2\nloss = h * h\n"
                                 "log h = h, w = w\n");
    rl_recipe_program *p = must_compile(r, RL_F64);
    assert_int_equal(rl_recipe_n_warnings(r), 0);
    assert_int_equal(rl_recipe_n_metrics(p), 2);
    assert_string_equal(rl_recipe_metric_name(p, 0), "h");
    assert_string_equal(rl_recipe_metric_name(p, 1), "w");
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_test_assert_close(rl_test_get(rl_recipe_metric(p, 0), 0), 3.0, 0, "metric h");
    rl_test_assert_close(rl_test_get(rl_recipe_metric(p, 1), 0), 1.5, 0, "metric w");
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), 9.0, 0, "loss");
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

static void test_name_errors(void **state) {
    (void)state;
    expect_error("recipe a : fullbatch\nparam weight = 0 : sgd(lr = 0.1)\nloss = (wieght - 3) ^ 2\n", 3, 9,
                 "undefined name 'wieght'", "did you mean 'weight'?");
    expect_error(FB "loss = z * 2\nz = w * w\n", 3, 8, "'z' is used before its definition",
                 "it is defined at 4:1; move that definition above this use");
    expect_error(FB "z = w * w\nz = w + 1\nloss = z\n", 4, 1, "'z' is already defined",
                 "'z' is defined at 3:1; names are assigned once, so pick a new name");
    /* a metric may take the name of the value it logs, and only of that value */
    expect_error(FB "h = w * 2\nloss = h * h\nlog h = h * 2\n", 5, 5, "'h' is already defined",
                 "'h' is defined at 3:1; names are assigned once, so pick a new name");
    expect_error(FB "loss = w * w\nlog loss = loss\n", 4, 5, "'loss' is a loss name, not allowed for a logged metric",
                 "pick a metric name that does not start with 'loss'");
    expect_error(FB "loss = -logsigmod(w)\n", 3, 9, "unknown function 'logsigmod'",
                 "did you mean 'logsigmoid'?");
    expect_error("recipe a : fullbatch\nfn f(x) = f(x) + 1\nparam w = 0 : sgd(lr = 0.1)\nloss = f(w)\n", 2,
                 11, "fn 'f' calls itself", "functions cannot call themselves");
    expect_error(FB "fn f(x) = x + w\nloss = f(w)\n", 3, 15, "'w' is not a parameter of fn 'f'",
                 "a function body may use its parameters (x), hypers and models");
    expect_error(FB "fn masked_mean(x, m) = x\nloss = w\n", 3, 4,
                 "'masked_mean' is already a function (in the prelude)", NULL);
    /* the rollout cannot read what the loss phase computes */
    expect_error("recipe a : online\ninput p : tokens\nmodel m : lm trainable\nparam t = 1 : sgd(lr = 0.1)\n"
                 "k = t * 2\nrollout {\n  s = generate(m, p)\n  z = mean(token_logprobs(m, s)) * k\n}\n"
                 "loss = masked_mean(token_logprobs(m, s), s.mask) * t + z\n",
                 8, 36, "'k' is computed in the loss phase; the rollout block cannot use it", NULL);
}

static void test_call_errors(void **state) {
    (void)state;
    expect_error(FB "loss = logsigmoid(w, w)\n", 3, 8,
                 "wrong number of arguments to 'logsigmoid': expected 1, got 2", "logsigmoid(x)");
    expect_error("recipe a : supervised\ninput x : f32[B, T]\nloss = mean(sum(x, axs = 0))\n", 3, 20,
                 "'sum' has no argument 'axs'",
                 "did you mean 'axis'? (sum(x, axis = all, keepdim = false))");
    expect_error("recipe a : supervised\ninput x : f32[B, T]\nloss = mean(sum(x, axis = 5))\n", 3, 27,
                 "axis must be in [-4, 3], got 5",
                 "tensors have at most 4 dims; negative axes count from the end");
    expect_error("recipe a : supervised\ninput x : f32[B]\nparam w = 1 : sgd(lr = 0.1)\nloss = mean(w ^ x)\n",
                 4, 17, "the exponent of '^' must be a constant",
                 "for a tensor exponent write exp(y * log(x))");
    expect_error(FB "loss = clamp(w, hi = 1)\n", 3, 8, "'clamp' needs the argument 'lo'",
                 "clamp(x, lo, hi)");
    expect_error(FB "loss = gelu_grad(w, w)\n", 3, 8, "'gelu_grad' cannot be called from a recipe", NULL);
    /* a multi-result function assigned to one name */
    expect_error("recipe a : supervised\ninput c : tokens\nmodel v : value trainable\nx = values(v, c)\n"
                 "adv = gae(x, x, c.mask, 1, 0.95)\nloss = mean(adv)\n",
                 5, 7, "'gae' returns 2 values, but 1 name is assigned", "write: adv, ret = gae(...)");
    /* rollout-only functions */
    expect_error("recipe a : online\ninput p : tokens\nmodel m : lm trainable\nrollout {\n  s = generate(m, p)\n}\n"
                 "loss {\n  s2 = generate(m, p)\n  loss = masked_mean(token_logprobs(m, s2), s2.mask)\n}\n",
                 8, 8, "'generate' can only be called in a rollout block",
                 "move it into the rollout { } block; the loss block uses its results");
    expect_error("recipe a : pairwise\ninput c : tokens\nmodel policy : lm trainable\n"
                 "loss = mean(end_score(policy, c))\n",
                 4, 23, "'end_score' needs a score model; 'policy' is an lm model", NULL);
}

static void test_type_errors(void **state) {
    (void)state;
    expect_error("recipe a : supervised\ninput x : f32[B, T]\ninput y : f32[B, T]\n"
                 "loss = mean(gather(x, y, axis = -1))\n",
                 4, 23, "dtype mismatch: the 2nd argument of gather must be i32, got f32 ('y')",
                 "indices (and targets) are i32: an input declared i32, or a token field");
    expect_error("recipe a : supervised\ninput x : f32[B, T]\nloss = mean(x * x.mask)\n", 3, 17,
                 "'x' is a f32 tensor, not a token batch", NULL);
    expect_error("recipe a : supervised\ninput c : tokens\nloss = mean(c.msk)\n", 3, 15,
                 "unknown field 'msk' of a token batch",
                 "token batches have ids, mask and attn; did you mean 'mask'?");
    expect_error("recipe a : supervised\ninput c : tokens\nloss = mean(c)\n", 3, 13,
                 "'c' is a token batch, but the argument of mean must be a tensor",
                 "pass one of its fields: c.ids, c.mask or c.attn");
    expect_error("recipe a : supervised\ninput x : f32[B]\nhyper h = mean(x)\nloss = mean(x) * h\n", 3, 16,
                 "the value of hyper 'h' must be a constant expression; 'x' is a f32 tensor", NULL);
    expect_error("recipe a : fullbatch\nparam w = 7 : sgd(lr = 0.1), max = log(5)\nloss = w * w\n", 2, 11,
                 "param 'w' starts at 7, outside its bounds [-inf, 1.60944]", "start inside [min, max]");
}

static void test_declaration_errors(void **state) {
    (void)state;
    expect_error("recipe a : pairwise\ninput c : tokens\nmodel ref : lm frozen, adamw(lr = 1e-5)\n"
                 "model pol : score trainable\nloss = mean(end_score(pol, c))\n",
                 3, 24, "a frozen model has no optimizer", NULL);
    expect_error("recipe a : pairwise\ninput c : tokens\n"
                 "model pol : score trainable, adamw(lr = 1e-5, weight_decay = 0.1)\nloss = mean(end_score(pol, c))\n",
                 3, 47, "unknown option 'weight_decay' of adamw",
                 "adamw takes lr, beta1, beta2, eps, wd, clip");
    expect_error("recipe a : pairwise\ninput c : tokens\nmodel pol : score trainable, adam(lr = 1e-5)\n"
                 "loss = mean(end_score(pol, c))\n",
                 3, 30, "unknown optimizer 'adam'", "expected adamw or sgd; did you mean 'adamw'?");
    expect_error("recipe a : pairwise\ninput c : tokens\nmodel pol : scor trainable\n"
                 "loss = mean(end_score(pol, c))\n",
                 3, 13, "unknown model kind 'scor'", "expected lm, score or value; did you mean 'score'?");
    expect_error("recipe a : supervised\nextern \"librules.so\" rule(i32[B, T]) -> f32[K]\ninput x : f32[B]\n"
                 "loss = mean(x)\n",
                 2, 45, "result dim 'K' of extern 'rule' is not bound by any argument", NULL);
}

static void test_structure_errors(void **state) {
    (void)state;
    expect_error(FB "z = w * w\nlog zz = z\n", 1, 1, "recipe 'a' defines no loss",
                 "assign a scalar to 'loss' (or to names starting with 'loss_')");
    expect_error("recipe a : pairwise\ninput c : tokens\nmodel pol : score trainable\nrollout {\n"
                 "  x = end_score(pol, c)\n}\nloss = mean(end_score(pol, c))\n",
                 4, 1, "rollout blocks exist only in online recipes (this recipe is pairwise)", NULL);
    expect_error("recipe a : online\ninput c : tokens\nmodel pol : score trainable\n"
                 "loss = mean(end_score(pol, c))\n",
                 1, 1, "an online recipe needs a rollout { } block", NULL);
    expect_error("recipe a : online\ninput p : tokens\nmodel m : lm trainable\nrollout {\n  s = generate(m, p)\n"
                 "  loss = mean(token_logprobs(m, s))\n}\n",
                 6, 3, "'loss' is a loss name, not allowed in the rollout block",
                 "compute losses in the loss block; the rollout block runs without gradients");
}

/* Errors found by the shape check: sizes come back as symbols. */
static void test_shape_errors(void **state) {
    (void)state;
    expect_error("recipe a : supervised\ninput a : f32[B, T]\ninput b : f32[B]\nparam w = 1 : sgd(lr = 0.1)\n"
                 "loss = mean(w * a - b)\n",
                 5, 13, "shapes f32 [B, T] and f32 [B] do not broadcast",
                 "aligned from the right, each axis must be equal or 1 (sum or mean over an axis to remove it)");
    expect_error("recipe a : supervised\ninput x : f32[B, T]\ninput y : f32[B]\nparam w = 1 : sgd(lr = 0.1)\n"
                 "loss = mean(reshape(x, [-1]) * y * w)\n",
                 5, 13, "shapes f32 [B*T] and f32 [B] do not broadcast", NULL);
    expect_error("recipe a : supervised\ninput x : f32[B, T]\nparam w = 1 : sgd(lr = 0.1)\n"
                 "loss = sum(w * x, axis = -1)\n",
                 4, 8, "loss 'loss' must be a scalar, got f32 [B]",
                 "reduce it to one number, e.g. mean(...), sum(...) or masked_mean(x, seq.mask)");
    /* no accidental equality: with T = 3 and K = 5, [T] and 2 more items have K's size in
     * the first run; the second run's sizes differ, and the error names T+2 */
    expect_error("recipe a : fullbatch\ninput a : f32[T]\ninput z : f32[K]\nparam w = 1 : sgd(lr = 0.1)\n"
                 "y = z - concat(a, [1, 1])\nloss = w * sum(y)\n",
                 5, 5, "shapes f32 [K] and f32 [T+2] do not broadcast",
                 "aligned from the right, each axis must be equal or 1 (sum or mean over an axis to remove it)");
    /* the case: [B, 3] - [B] with 3 written in the recipe never binds B to 3 */
    expect_error("recipe a : fullbatch\ninput w3 : f32[B, 3]\ninput v : f32[B]\nparam w = 1 : sgd(lr = 0.1)\n"
                 "loss = w * sum(w3 - v)\n",
                 5, 16, "shapes f32 [B, 3] and f32 [B] do not broadcast", NULL);
    /* inside a prelude function: at the call, named */
    expect_error("recipe a : supervised\ninput x : f32[B, T]\ninput m : f32[T, B]\nparam w = 1 : sgd(lr = 0.1)\n"
                 "loss = w * masked_mean(x, m)\n",
                 5, 12, "in masked_mean: shapes f32 [B, T] and f32 [T, B] do not broadcast", NULL);
    /* an extern's declared shapes are checked against its arguments */
    expect_error("recipe a : supervised\nextern \"librules.so\" rule(i32[B]) -> f32[B]\ninput c : tokens\n"
                 "loss = mean(rule(c.ids))\n",
                 4, 13, "argument 1 of extern 'rule' is i32 [B, T], but its declaration says i32 [B]", NULL);
    /* one error per statement, every statement checked */
    const char *src = "recipe a : supervised\ninput a : f32[B, T]\ninput b : f32[T]\ninput c : f32[B]\n"
                      "param w = 1 : sgd(lr = 0.1)\nx = a + c\ny = a * b\nz = b - c + c\nloss = w * mean(y)\n";
    rl_recipe *r = rl_test_parse(src);
    assert_null(compile_dtype(r, RL_F32));
    assert_int_equal(rl_recipe_n_errors(r), 2);
    assert_int_equal(rl_recipe_diag_at(r, 0)->line, 6); /* a + c */
    const rl_recipe_diag *d = rl_recipe_first_error(r);
    assert_string_equal(d->msg, "shapes f32 [B, T] and f32 [B] do not broadcast");
    int seen8 = 0;
    for (int i = 0; i < rl_recipe_n_diags(r); i++)
        if (rl_recipe_diag_at(r, i)->severity == RL_DIAG_ERROR && rl_recipe_diag_at(r, i)->line == 8) {
            seen8++;
            assert_string_equal(rl_recipe_diag_at(r, i)->msg, "shapes f32 [T] and f32 [B] do not broadcast");
        }
    assert_int_equal(seen8, 1);
    rl_recipe_free(r);
}

/* Several broken statements: all reported, in file order. */
static void test_errors_collected_in_order(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse(FB "a = w +\nb = undefined_thing * 2\nc = (w\nloss = w * w\n");
    assert_null(compile_dtype(r, RL_F32));
    assert_int_equal(rl_recipe_n_errors(r), 3);
    int lines[3], k = 0;
    for (int i = 0; i < rl_recipe_n_diags(r) && k < 3; i++)
        if (rl_recipe_diag_at(r, i)->severity == RL_DIAG_ERROR) lines[k++] = rl_recipe_diag_at(r, i)->line;
    assert_int_equal(lines[0], 3);
    assert_int_equal(lines[1], 4);
    assert_int_equal(lines[2], 6);
    rl_recipe_free(r);
}

static void test_diag_format(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse(FB "\tloss = -logsigmod(w)\n");
    assert_null(compile_dtype(r, RL_F32));
    const rl_recipe_diag *d = rl_recipe_first_error(r);
    assert_non_null(d);
    char buf[512];
    int n = rl_recipe_format_diag(d, buf, sizeof buf);
    const char *want = "t.recipe:3:10: error: unknown function 'logsigmod'\n"
                       "\tloss = -logsigmod(w)\n"
                       "\t        ^~~~~~~~~\n"
                       "hint: did you mean 'logsigmoid'?\n";
    assert_string_equal(buf, want);
    assert_int_equal(n, (int)strlen(want));
    /* a short buffer still reports the length it needed */
    char small[8];
    assert_int_equal(rl_recipe_format_diag(d, small, sizeof small), (int)strlen(want));
    assert_int_equal(strlen(small), 7);
    rl_recipe_free(r);
}

/* ---- the stop-gradient audit ------------------------------------------------------ */

static void test_audit_leak(void **state) {
    (void)state;
    /* the Lagrange multiplier used without stop() in the primal loss */
    const char *leak = "recipe lag : fullbatch\n"
                       "param x = 0.5 : sgd(lr = 0.1)\n"
                       "param log_lambda = 0 : sgd(lr = 0.1), max = log(5)\n"
                       "hyper threshold = 0.2\n"
                       "l = exp(log_lambda)\n"
                       "loss = (x - 1) ^ 2 + l * (x - threshold)\n"
                       "loss_lambda = -exp(log_lambda) * stop(x - threshold)\n";
    expect_error(leak, 5, 9, "the gradient of loss 'loss' reaches param 'log_lambda', which loss 'loss_lambda' trains",
                 "wrap it in stop(...) so that only 'loss_lambda' trains 'log_lambda' (each trainable is "
                 "updated by one loss)");
    /* when the value is shared with the owner, the use in the other loss is blamed */
    expect_error("recipe lag : fullbatch\nparam x = 0.5 : sgd(lr = 0.1)\nparam log_lambda = 0 : sgd(lr = 0.1)\n"
                 "l = exp(log_lambda)\nloss = (x - 1) ^ 2 + l * x\nloss_lambda = -l * stop(x)\n",
                 5, 22, "the gradient of loss 'loss' reaches param 'log_lambda', which loss 'loss_lambda' trains",
                 NULL);
    /* fixed with stop(): compiles; each loss trains its own trainables */
    const char *fixed = "recipe lag : fullbatch\n"
                        "param x = 0.5 : sgd(lr = 0.1)\n"
                        "param log_lambda = 0 : sgd(lr = 0.1), max = log(5)\n"
                        "hyper threshold = 0.2\n"
                        "l = stop(exp(log_lambda))\n"
                        "loss = (x - 1) ^ 2 + l * (x - threshold)\n"
                        "loss_lambda = -exp(log_lambda) * stop(x - threshold)\n";
    rl_recipe *r = rl_test_parse(fixed);
    rl_recipe_program *p = must_compile(r, RL_F64);
    assert_int_equal(rl_recipe_n_losses(p), 2);
    const rl_recipe_loss_info *l0 = rl_recipe_loss_at(p, 0), *l1 = rl_recipe_loss_at(p, 1);
    assert_string_equal(l0->name, "loss");
    assert_int_equal(l0->n_trainables, 1);
    assert_string_equal(l0->trainables[0], "x");
    assert_string_equal(l1->name, "loss_lambda");
    assert_int_equal(l1->n_trainables, 1);
    assert_string_equal(l1->trainables[0], "log_lambda");
    /* one backward of the sum gives each param the gradient of its own loss:
     * d loss/dx = 2(x - 1) + l = -1 + 1 at x = 0.5, l = 1; d loss_lambda/dlog_lambda = -(x - 0.2) */
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    const rl_recipe_param_info *px = rl_recipe_param_at(p, 0), *pl = rl_recipe_param_at(p, 1);
    rl_test_assert_close(rl_test_get(px->tensor->grad, 0), 2 * (0.5 - 1) + 1.0, 1e-12, "dloss/dx");
    rl_test_assert_close(rl_test_get(pl->tensor->grad, 0), -(0.5 - 0.2), 1e-12, "dloss_lambda/dlog_lambda");
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

static const char *safe_rlhf_src =
    "recipe safe_rlhf : online\n"
    "input prompts : tokens\n"
    "model policy : lm trainable      model ref  : lm frozen\n"
    "model reward : score frozen      model cost : score frozen\n"
    "model vr : value trainable       model vc : value trainable\n"
    "hyper beta = 0.01, clip = 0.2, threshold = 0.0, gamma = 1.0, lam = 0.95, vclip = 5\n"
    "param log_lambda = 0.0 : sgd(lr = 0.1), max = log(5)\n"
    "rollout {\n"
    "  seq  = generate(policy, prompts, max_new = 5)\n"
    "  lp0  = token_logprobs(policy, seq)        lpref = token_logprobs(ref, seq)\n"
    "  r    = -beta * (lp0 - lpref) + at_end(end_score(reward, seq), seq)\n"
    "  c    =  beta * (lp0 - lpref) + at_end(end_score(cost, seq), seq)\n"
    "  v0r = values(vr, seq)   v0c = values(vc, seq)\n"
    "  adv_r, ret_r = gae(r, v0r, seq.mask, gamma, lam)\n"
    "  adv_c, ret_c = gae(c, v0c, seq.mask, gamma, lam)\n"
    "  jc   = window_mean(end_score(cost, seq), 128)\n"
    "}\n"
    "loss {\n"
    "  l     = LAMBDA\n"
    "  adv   = (adv_r - l * adv_c) / (1 + l)\n"
    "  ratio = exp(token_logprobs(policy, seq) - lp0)\n"
    "  loss  = masked_mean(clipped_surrogate(ratio, adv, clip), seq.mask)\n"
    "        + masked_mean(clipped_value_loss(values(vr, seq), v0r, ret_r, vclip), seq.mask)\n"
    "        + masked_mean(clipped_value_loss(values(vc, seq), v0c, ret_c, vclip), seq.mask)\n"
    "  loss_lambda = -exp(log_lambda) * (jc - threshold)\n"
    "}\n"
    "log lambda = exp(log_lambda), kl = masked_mean(lp0 - lpref, seq.mask), episode_cost = jc\n";

static char *safe_rlhf_with(const char *lambda) {
    const char *at = strstr(safe_rlhf_src, "LAMBDA");
    size_t n = strlen(safe_rlhf_src) + strlen(lambda);
    char *s = malloc(n);
    assert_non_null(s);
    snprintf(s, n, "%.*s%s%s", (int)(at - safe_rlhf_src), safe_rlhf_src, lambda, at + 6);
    return s;
}

static void test_audit_safe_rlhf(void **state) {
    (void)state;
    char *bad = safe_rlhf_with("exp(log_lambda)");
    expect_error(bad, 19, 15, "the gradient of loss 'loss' reaches param 'log_lambda', which loss 'loss_lambda' trains",
                 NULL);
    free(bad);
    char *good = safe_rlhf_with("stop(exp(log_lambda))");
    rl_recipe *r = rl_test_parse(good);
    rl_recipe_program *p = must_compile(r, RL_F32);
    const rl_recipe_loss_info *l0 = rl_recipe_loss_at(p, 0);
    assert_int_equal(l0->n_trainables, 3);
    assert_string_equal(l0->trainables[0], "policy");
    assert_string_equal(l0->trainables[1], "vr");
    assert_string_equal(l0->trainables[2], "vc");
    assert_int_equal(rl_recipe_loss_at(p, 1)->n_trainables, 1);
    assert_int_equal(rl_recipe_n_metrics(p), 3);
    /* the generated batch's length is a fresh dim of its own */
    bool found = false;
    for (int i = 0; i < rl_recipe_n_nodes(p); i++) {
        const rl_recipe_node *n = rl_recipe_node_at(p, i);
        if (n->name && strcmp(n->name, "seq") == 0) {
            assert_string_equal(n->shape, "i32 [B, T_seq]");
            assert_int_equal(n->phase, 0);
            found = true;
        }
        if (n->name && strcmp(n->name, "jc") == 0) assert_string_equal(n->shape, "f32 []");
    }
    assert_true(found);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    free(good);
}

static void test_audit_warnings(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe a : fullbatch\ninput x : f32[B]\nparam w = 0 : sgd(lr = 0.1)\n"
                         "param v = 0 : sgd(lr = 0.1)\nhyper c = 2\n"
                         "loss = (w - stop(c)) ^ 2 + stop(v) * w\n");
    rl_recipe_program *p = must_compile(r, RL_F64);
    assert_true(has_warning(r, 2, 7, "input 'x' is never used"));
    assert_true(has_warning(r, 4, 7, "trainable param 'v' is reached by no loss"));
    assert_true(has_warning(r, 6, 13, "stop() around a constant"));
    assert_int_equal(rl_recipe_n_warnings(r), 3);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    /* stop() around data (no trainable behind it) */
    r = rl_test_parse("recipe a : supervised\ninput x : f32[B]\nparam w = 0 : sgd(lr = 0.1)\n"
              "loss = mean(w * stop(x * 2))\n");
    p = must_compile(r, RL_F64);
    assert_true(has_warning(r, 4, 17, "stop() around a value that carries no gradient"));
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

/* ---- --set --------------------------------------------------------------------------- */

static void expect_set_error(rl_recipe *r, const char *name, const char *value, int col, const char *msg,
                             const char *hint) {
    int before = rl_recipe_n_errors(r);
    assert_int_equal(rl_recipe_set(r, name, value), RL_ERR_ARG);
    assert_int_equal(rl_recipe_n_errors(r), before + 1);
    const rl_recipe_diag *d = NULL;
    for (int i = 0; i < rl_recipe_n_diags(r); i++) d = rl_recipe_diag_at(r, i); /* --set ones sort last */
    assert_string_equal(d->file, "--set");
    assert_int_equal(d->line, 1);
    assert_int_equal(d->col, col);
    assert_string_equal(d->msg, msg);
    if (hint) assert_string_equal(d->hint, hint);
}

static void test_set_overrides(void **state) {
    (void)state;
    const char *src2 = "recipe a : fullbatch\nhyper lr0 = 0.1, beta = 0.1, half = beta / 2, kind = \"k3\"\n"
                       "param w = 0 : sgd(lr = lr0)\nloss = mean(kl(w * 1, kind = kind)) * half\n";
    rl_recipe *r = rl_test_parse(src2);
    assert_int_equal(rl_recipe_set(r, "beta", "0.4"), RL_OK);
    assert_int_equal(rl_recipe_set_arg(r, "lr0=1/20"), RL_OK);
    assert_int_equal(rl_recipe_set_arg(r, "kind=k1"), RL_OK);
    rl_recipe_program *p = must_compile(r, RL_F64);
    rl_test_assert_close(rl_recipe_hyper(p, "beta")->num, 0.4, 0, "beta");
    rl_test_assert_close(rl_recipe_hyper(p, "half")->num, 0.2, 1e-15, "half follows beta");
    assert_string_equal(rl_recipe_hyper(p, "kind")->str, "k1");
    rl_test_assert_close(rl_recipe_param_at(p, 0)->optim.lr, 0.05, 1e-15, "lr from an expression");
    assert_null(rl_recipe_hyper(p, "nope"));
    rl_recipe_program_free(p);
    /* the last --set of a name wins */
    assert_int_equal(rl_recipe_set(r, "beta", "2 * lr0"), RL_OK);
    p = must_compile(r, RL_F64);
    rl_test_assert_close(rl_recipe_hyper(p, "beta")->num, 0.1, 1e-15, "beta = 2 * lr0 (lr0 = 1/20)");
    rl_recipe_program_free(p);
    /* errors */
    expect_set_error(r, "bta", "0.1", 1, "unknown hyper 'bta'", "did you mean 'beta'?");
    expect_set_error(r, "zzzz", "0.1", 1, "unknown hyper 'zzzz'", "this recipe's hypers: lr0, beta, half, kind");
    expect_set_error(r, "beta", "abc", 6, "bad value 'abc' for hyper 'beta': expected a number",
                     "e.g. --set beta=0.05");
    expect_set_error(r, "beta", "0.5)", 6,
                     "bad value '0.5)' for hyper 'beta': expected a number or a constant expression (0.05, "
                     "1/20, log(5))",
                     NULL);
    expect_set_error(r, "beta", "", 6, "bad value '' for hyper 'beta': the value is empty", NULL);
    expect_set_error(r, "kind", "1.5", 6, "bad value '1.5' for hyper 'kind': expected a string (a word such as k3)",
                     NULL);
    expect_set_error(r, "w", "3", 1, "'w' is a param, not a hyper", NULL);
    assert_int_equal(rl_recipe_set_arg(r, "beta"), RL_ERR_ARG);
    /* a string outside the function's choices fails at the use */
    rl_recipe *r2 = rl_test_parse(src2);
    assert_int_equal(rl_recipe_set(r2, "kind", "\"k4\""), RL_OK);
    assert_null(compile_dtype(r2, RL_F64));
    const rl_recipe_diag *d = rl_recipe_first_error(r2);
    assert_string_equal(d->msg, "the 2nd argument of kl ('kind') is \"k4\", which is not a choice");
    assert_int_equal(d->line, 4);
    assert_int_equal(d->col, 30);
    rl_recipe_free(r2);
    /* a value may use the recipe's other hypers */
    r2 = rl_test_parse(src2);
    assert_int_equal(rl_recipe_set(r2, "beta", "lr0 + 1"), RL_OK);
    rl_recipe_program *p2 = must_compile(r2, RL_F64);
    rl_test_assert_close(rl_recipe_hyper(p2, "beta")->num, 1.1, 1e-15, "beta = lr0 + 1");
    rl_recipe_program_free(p2);
    rl_recipe_free(r2);
    rl_recipe_free(r);
}

/* ---- well-formed recipes, evaluated ---------------------------------------------------- */

/* loss = (w - 3)^2 at w = 0 is 9 with gradient 2(w - 3) = -6; SGD with lr 0.1
 * gives w_k = 3 - 3 * 0.8^k; a bound max = 2 stops it there. */
static void test_fullbatch_param(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("# a free parameter and no data\nrecipe quad : fullbatch\n"
                         "param w = 0 : sgd(lr = 0.1)\nparam u : f32[3] = 1 : adamw(lr = 0.01, wd = 0.5), min = 0.5, max = 2\n"
                         "loss = (w - 3) ^ 2\nloss_u = sum(u * u)\nlog w_now = w\n");
    rl_recipe_program *p = must_compile(r, RL_F64);
    assert_int_equal(rl_recipe_program_kind(p), RL_RECIPE_FULLBATCH);
    assert_string_equal(rl_recipe_program_name(p), "quad");
    assert_int_equal(rl_recipe_n_params(p), 2);
    const rl_recipe_param_info *pw = rl_recipe_param_at(p, 0), *pu = rl_recipe_param_at(p, 1);
    assert_string_equal(pw->optim.kind, "sgd");
    rl_test_assert_close(pw->optim.lr, 0.1, 0, "lr");
    assert_string_equal(pu->optim.kind, "adamw");
    rl_test_assert_close(pu->optim.weight_decay, 0.5, 0, "wd");
    assert_int_equal(pu->tensor->numel, 3);
    assert_true(pu->has_min && pu->has_max);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), 9.0, 1e-15, "(0 - 3)^2");
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 1), 0), 3.0, 1e-15, "sum(1^2)");
    rl_test_assert_close(rl_test_get(rl_recipe_metric(p, 0), 0), 0.0, 0, "w_now");
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    rl_test_assert_close(rl_test_get(pw->tensor->grad, 0), -6.0, 1e-15, "d/dw (w-3)^2");
    rl_test_assert_close(rl_test_get(pu->tensor->grad, 2), 2.0, 1e-15, "d/du sum(u^2)");
    rl_ctx_reset(g_ctx);
    rl_optim *opt = rl_optim_sgd_new(g_ctx, (rl_tensor *[]){pw->tensor}, 1, NULL);
    for (int k = 1; k <= 5; k++) {
        rl_optim_zero_grad(opt);
        rl_tensor_zero_grad(g_ctx, pu->tensor);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
        assert_int_equal(rl_optim_step(opt, pw->optim.lr), RL_OK);
        rl_ctx_reset(g_ctx);
        rl_test_assert_close(rl_test_get(pw->tensor, 0), 3 - 3 * pow(0.8, k), 1e-12, "w_k");
    }
    rl_optim_free(opt);
    /* projection onto [min, max] */
    rl_tensor_set(g_ctx, pu->tensor, 0, 5.0);
    rl_tensor_set(g_ctx, pu->tensor, 1, -1.0);
    rl_tensor_set(g_ctx, pu->tensor, 2, 1.25);
    assert_int_equal(rl_recipe_project_params(p, g_ctx), RL_OK);
    rl_test_assert_close(rl_test_get(pu->tensor, 0), 2.0, 0, "clamped to max");
    rl_test_assert_close(rl_test_get(pu->tensor, 1), 0.5, 0, "clamped to min");
    rl_test_assert_close(rl_test_get(pu->tensor, 2), 1.25, 0, "inside");
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

static const char *bt_src =
    "# Bradley-Terry reward model: -log sigmoid(r(chosen) - r(rejected))\n"
    "recipe bradley_terry : pairwise\n"
    "input chosen : tokens\n"
    "input rejected : tokens\n"
    "model rm   : score trainable           # GPT-2 trunk + scalar head\n"
    "hyper reg  = 0.0                       # safe-rlhf uses 0.001\n"
    "\n"
    "r_w  = end_score(rm, chosen)           # [B]: score at the last real token\n"
    "r_l  = end_score(rm, rejected)\n"
    "loss = mean(-logsigmoid(r_w - r_l)) + reg * mean(r_w*r_w + r_l*r_l) / 2\n"
    "log accuracy = mean(r_w > r_l)\n";

typedef struct bt_ctx {
    rl_recipe_program *p;
} bt_ctx;

static rl_tensor *bt_loss_fn(rl_ctx *ctx, rl_tensor **in, void *user) {
    (void)in;
    bt_ctx *b = user;
    if (rl_recipe_run_loss(b->p, ctx, -1, -1) != RL_OK) return NULL;
    return rl_recipe_loss(b->p, 0);
}

static void test_pairwise_bradley_terry(void **state) {
    (void)state;
    rl_model *rm = tiny(RL_HEAD_SCORE, 11);
    rl_test_batch w, l;
    rl_test_batch_make(g_ctx, &w, 3, 6, (int[]){6, 4, 5}, (int[]){2, 1, 3}, 1);
    rl_test_batch_make(g_ctx, &l, 3, 6, (int[]){5, 6, 2}, (int[]){2, 3, 1}, 2);
    rl_recipe *r = rl_test_parse(bt_src);
    assert_int_equal(rl_recipe_set(r, "reg", "0.001"), RL_OK);
    rl_recipe_program *p = must_compile(r, RL_F64);
    assert_int_equal(rl_recipe_n_warnings(r), 0);
    assert_int_equal(rl_recipe_bind_model(p, "rm", rm), RL_OK);
    assert_int_equal(rl_recipe_bind_tokens(p, "chosen", w.ids, w.mask, w.attn), RL_OK);
    assert_int_equal(rl_recipe_bind_tokens(p, "rejected", l.ids, l.mask, l.attn), RL_OK);
    /* the graph carries the source position and symbolic shape of each value */
    for (int i = 0; i < rl_recipe_n_nodes(p); i++) {
        const rl_recipe_node *n = rl_recipe_node_at(p, i);
        if (n->name && strcmp(n->name, "r_w") == 0) {
            assert_string_equal(n->op, "end_score");
            assert_string_equal(n->shape, "f32 [B]");
            assert_int_equal(n->line, 8);
            assert_int_equal(n->col, 8);
            assert_int_equal(n->end - n->start, (int)strlen("end_score(rm, chosen)"));
        }
    }
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double loss = rl_test_get(rl_recipe_loss(p, 0), 0), acc = rl_test_get(rl_recipe_metric(p, 0), 0);
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    double dw_recipe[32];
    for (int k = 0; k < 32; k++) dw_recipe[k] = rl_test_get(rm->score_w->grad, k);
    rl_ctx_reset(g_ctx);
    /* direct: scores from the model, the loss and its gradient in host arithmetic.
     * d loss / d score_w = sum_b dL/dr_w[b] h_w[b] + dL/dr_l[b] h_l[b], with h
     * the final hidden state at each row's last real token. */
    int was = rl_ctx_set_grad(g_ctx, 0);
    rl_tensor *sw = rl_model_end_score(g_ctx, rm, w.ids, w.attn), *sl = rl_model_end_score(g_ctx, rm, l.ids, l.attn);
    rl_tensor *hw = rl_model_hidden(g_ctx, rm, w.ids), *hl = rl_model_hidden(g_ctx, rm, l.ids);
    assert_non_null(hw);
    const double reg = 0.001, B = 3;
    double want = 0, want_acc = 0, dw[32] = {0};
    for (int b = 0; b < 3; b++) {
        double rw = rl_test_get(sw, b), rl = rl_test_get(sl, b);
        want += -rl_test_logsig(rw - rl) / B + reg * (rw * rw + rl * rl) / (2 * B);
        want_acc += (rw > rl) / B;
        double gw = -(1 - sigmoid(rw - rl)) / B + reg * rw / B;
        double gl = (1 - sigmoid(rw - rl)) / B + reg * rl / B;
        int lw = 0, ll = 0;
        for (int t = 0; t < 6; t++) lw += w.hattn[b * 6 + t], ll += l.hattn[b * 6 + t];
        for (int k = 0; k < 32; k++)
            dw[k] += gw * rl_test_get(hw, (b * 6 + lw - 1) * 32 + k) + gl * rl_test_get(hl, (b * 6 + ll - 1) * 32 + k);
    }
    rl_ctx_set_grad(g_ctx, was);
    rl_test_assert_close(loss, want, 1e-12, "BT loss");
    rl_test_assert_close(acc, want_acc, 0, "accuracy");
    for (int k = 0; k < 32; k++) rl_test_assert_close(dw_recipe[k], dw[k], 1e-10, "d loss / d score.weight");
    rl_ctx_reset(g_ctx);
    /* and a numerical check through the trunk */
    bt_ctx bc = {p};
    rl_gc_opts o;
    rl_gc_opts_default(&o);
    o.max_elems = 8;
    rl_gc_result res;
    rl_tensor *in[2] = {rm->gpt2->ln_f_b, rm->gpt2->h[1].mlp_proj_w};
    rl_gradcheck_fn(g_ctx, bt_loss_fn, &bc, 2, in, &o, &res);
    if (!res.passed) fail_msg("gradcheck: %s", res.msg);
    rl_ctx_reset(g_ctx);
    /* a batch bound with the wrong dtype is refused with the declaration */
    rl_tensor *f = rl_tensor_new(g_ctx, RL_F64, 2, (int64_t[]){3, 6}, "f");
    assert_int_equal(rl_recipe_bind_tokens(p, "chosen", f, w.mask, w.attn), RL_ERR_ARG);
    assert_non_null(strstr(rl_recipe_program_error(p), "input 'chosen.ids' is f64 [3, 6], but the recipe declares i32 [B, T]"));
    rl_tensor_free(g_ctx, f);
    /* symbolic dims must agree across inputs */
    rl_test_batch l2;
    rl_test_batch_make(g_ctx, &l2, 2, 6, (int[]){6, 4}, (int[]){2, 1}, 3);
    assert_int_equal(rl_recipe_bind_tokens(p, "rejected", l2.ids, l2.mask, l2.attn), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_ERR_ARG);
    assert_non_null(strstr(rl_recipe_program_error(p), "input 'rejected' has B = 2, but input 'chosen' has B = 3"));
    rl_test_batch_free(g_ctx, &l2);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_test_batch_free(g_ctx, &w), rl_test_batch_free(g_ctx, &l);
    rl_model_free(g_ctx, rm);
}

/* Summed response log-probabilities of a batch under a model, on the host. */
static void seq_logp(rl_model *m, const rl_test_batch *b, double *out) {
    int was = rl_ctx_set_grad(g_ctx, 0);
    rl_tensor *lp = rl_model_token_logprobs(g_ctx, m, b->ids, NULL);
    assert_non_null(lp);
    for (int64_t i = 0; i < b->B; i++) {
        out[i] = 0;
        for (int64_t t = 0; t < b->T; t++)
            if (b->hmask[i * b->T + t]) out[i] += rl_test_get(lp, i * b->T + t);
    }
    rl_ctx_set_grad(g_ctx, was);
}

static void test_dpo_and_ipo_files(void **state) {
    (void)state;
    rl_model *pol = tiny(RL_HEAD_LM, 5), *ref = tiny(RL_HEAD_LM, 6);
    rl_model *same = rl_model_new_from(g_ctx, pol, RL_HEAD_LM, 0);
    rl_test_batch w, l;
    rl_test_batch_make(g_ctx, &w, 2, 7, (int[]){7, 5}, (int[]){3, 2}, 21);
    rl_test_batch_make(g_ctx, &l, 2, 7, (int[]){6, 7}, (int[]){3, 4}, 22);
    double pw[2], pl[2], rw[2], rl[2];
    seq_logp(pol, &w, pw), seq_logp(pol, &l, pl), seq_logp(ref, &w, rw), seq_logp(ref, &l, rl);
    const char *files[2] = {"dpo", "ipo"};
    for (int f = 0; f < 2; f++) {
        rl_recipe *r = rl_test_load_builtin(files[f], NULL);
        rl_recipe_program *p = must_compile(r, RL_F64);
        assert_int_equal(rl_recipe_n_diags(r), 0);
        assert_int_equal(rl_recipe_program_kind(p), RL_RECIPE_PAIRWISE);
        assert_int_equal(rl_recipe_n_models(p), 2);
        assert_false(rl_recipe_model_at(p, 1)->trainable);
        rl_test_assert_close(rl_recipe_model_at(p, 0)->optim.lr, 5e-7, 0, "policy lr");
        {
            /* the learning rate is a hyper: --set lr=... reaches the optimizer */
            rl_recipe *r2 = rl_test_load_builtin(files[f], NULL);
            assert_int_equal(rl_recipe_set_arg(r2, "lr=2e-6"), RL_OK);
            rl_recipe_program *p2 = must_compile(r2, RL_F64);
            rl_test_assert_close(rl_recipe_model_at(p2, 0)->optim.lr, 2e-6, 0, "policy lr after --set");
            rl_recipe_program_free(p2);
            rl_recipe_free(r2);
        }
        rl_recipe_bind_model(p, "policy", pol);
        rl_recipe_bind_model(p, "ref", ref);
        rl_recipe_bind_tokens(p, "chosen", w.ids, w.mask, w.attn);
        rl_recipe_bind_tokens(p, "rejected", l.ids, l.mask, l.attn);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        double beta = 0.1, want = 0, acc = 0;
        for (int b = 0; b < 2; b++) {
            double h = (pw[b] - rw[b]) - (pl[b] - rl[b]);
            want += (f == 0 ? -rl_test_logsig(beta * h) : pow(h - 1 / (2 * beta), 2)) / 2;
            acc += (h > 0) / 2.0;
        }
        rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want, 1e-12, files[f]);
        rl_test_assert_close(rl_test_get(rl_recipe_metric(p, 2), 0), acc, 0, "accuracy");
        assert_string_equal(rl_recipe_metric_name(p, 0), "reward_chosen");
        rl_test_assert_close(rl_test_get(rl_recipe_metric(p, 0), 0), beta * ((pw[0] - rw[0]) + (pw[1] - rw[1])) / 2, 1e-12,
                     "implicit reward");
        rl_ctx_reset(g_ctx);
        /* against a copy of the policy, h = 0: DPO's loss is log 2, IPO's (1/(2 beta))^2 */
        rl_recipe_bind_model(p, "ref", same);
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
        rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), f == 0 ? log(2.0) : 25.0, 1e-12, "h = 0");
        rl_ctx_reset(g_ctx);
        rl_recipe_program_free(p);
        rl_recipe_free(r);
    }
    /* --set beta=0.5 moves IPO's target margin: (1/(2 * 0.5))^2 = 1 at h = 0 */
    rl_recipe *r = rl_test_load_builtin("ipo", NULL);
    assert_int_equal(rl_recipe_set_arg(r, "beta=0.5"), RL_OK);
    rl_recipe_program *p = must_compile(r, RL_F64);
    rl_recipe_bind_model(p, "policy", pol);
    rl_recipe_bind_model(p, "ref", same);
    rl_recipe_bind_tokens(p, "chosen", w.ids, w.mask, w.attn);
    rl_recipe_bind_tokens(p, "rejected", l.ids, l.mask, l.attn);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), 1.0, 1e-12, "IPO beta 0.5");
    /* the frozen reference gets no gradient: it runs with gradients off */
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    double gsum = 0;
    for (int64_t k = 0; k < same->gpt2->wte->numel && same->gpt2->wte->grad; k++) gsum += fabs(rl_test_get(same->gpt2->wte->grad, k));
    assert_true(gsum == 0);
    assert_non_null(pol->gpt2->wte->grad);
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_test_batch_free(g_ctx, &w), rl_test_batch_free(g_ctx, &l);
    rl_model_free(g_ctx, pol), rl_model_free(g_ctx, ref), rl_model_free(g_ctx, same);
}

/* GAE from its definition as a sum: A_t = sum_k (gamma lam)^k delta_{t+k}
 * over the row's action tokens (the recursion in natives.c is the other form). */
static void ref_gae(const double *r, const double *v, const double *m, int B, int T, double g, double lam,
                    double *adv, double *ret) {
    for (int b = 0; b < B; b++) {
        int idx[16], n = 0;
        for (int t = 0; t < T; t++)
            if (m[b * T + t]) idx[n++] = b * T + t;
        for (int t = 0; t < T; t++) adv[b * T + t] = ret[b * T + t] = 0;
        for (int i = 0; i < n; i++) {
            double a = 0;
            for (int k = i; k < n; k++) {
                double vnext = k + 1 < n ? v[idx[k + 1]] : 0;
                double delta = r[idx[k]] + g * vnext - v[idx[k]];
                a += pow(g * lam, k - i) * delta;
            }
            adv[idx[i]] = a;
            ret[idx[i]] = a + v[idx[i]];
        }
    }
}

/* var and std against the closed forms: both corrections, an axis, keepdim,
 * and the errors (no degrees of freedom, an axis out of range). */
static void test_var_std(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe v : fullbatch\ninput x : f32[B, T]\nparam w = 1 : sgd(lr = 0.1)\n"
                                 "y = x * w\n"
                                 "va = var(y)\nvp = var(y, correction = 0)\nsr = std(y, axis = -1)\n"
                                 "vk = var(y, axis = 0, keepdim = true)\n"
                                 "loss = va + vp + sum(sr) + sum(vk)\n");
    rl_recipe_program *p = must_compile(r, RL_F64);
    double hx[6] = {1, 2, 4, -1, 0.5, 3};
    int64_t s2[2] = {2, 3};
    rl_tensor *tx = rl_test_tensor_of(RL_F64, 2, s2, hx);
    assert_int_equal(rl_recipe_bind_tensor(p, "x", tx), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double m = 0, ss = 0;
    for (int i = 0; i < 6; i++) m += hx[i] / 6;
    for (int i = 0; i < 6; i++) ss += (hx[i] - m) * (hx[i] - m);
    rl_test_assert_close(rl_test_get(rl_recipe_value_of(p, "va"), 0), ss / 5, 1e-14, "var, unbiased");
    rl_test_assert_close(rl_test_get(rl_recipe_value_of(p, "vp"), 0), ss / 6, 1e-14, "var, population");
    for (int b = 0; b < 2; b++) {
        double mb = (hx[3 * b] + hx[3 * b + 1] + hx[3 * b + 2]) / 3, sb = 0;
        for (int t = 0; t < 3; t++) sb += pow(hx[3 * b + t] - mb, 2);
        rl_test_assert_close(rl_test_get(rl_recipe_value_of(p, "sr"), b), sqrt(sb / 2), 1e-14, "std over the last axis");
    }
    rl_tensor *vk = rl_recipe_value_of(p, "vk");
    assert_int_equal(vk->ndim, 2);
    assert_int_equal(vk->shape[0], 1);
    assert_int_equal(vk->shape[1], 3);
    for (int t = 0; t < 3; t++)
        rl_test_assert_close(rl_test_get(vk, t), pow(hx[t] - hx[3 + t], 2) / 2, 1e-14, "var over axis 0, two rows");
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_tensor_free(g_ctx, tx);
    expect_error(FB "param v : f32[1] = 0 : sgd(lr = 0.1)\nloss = var(v) + w\n", 4, 8,
                 "var: 1 element per reduction leaves no degrees of freedom with correction = 1 (use "
                 "correction = 0, or reduce over more elements)", NULL);
    expect_error(FB "param v : f32[2] = 0 : sgd(lr = 0.1)\nloss = std(v, axis = 2) + w\n", 4, 8,
                 "std: axis 2 is out of range for x of 1 dims (use -1 .. 0)", NULL);
    expect_error(FB "loss = std(w, axis = 0)\n", 3, 8, "std: axis 0 is out of range: x is a scalar (omit axis)",
                 NULL);
}

/* Tensor literals: values, shapes, hypers inside, --set reaching them, a
 * gradient through one, and the malformed ones at their place. */
static void test_tensor_literals(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe tl : fullbatch\nhyper a = 0.5\nparam w : f32[2, 3] = 0.25 : sgd(lr = 0.1)\n"
                                 "c = [[1, 2, 3], [a, -a, 2 * a]]\nv = [1.0, 0.2]\n"
                                 "big = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19]\n"
                                 "loss = sum(w * c) + sum(v) + sum(big)\n");
    assert_int_equal(rl_recipe_set_arg(r, "a=2"), RL_OK);
    rl_recipe_program *p = must_compile(r, RL_F64);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_tensor *c = rl_recipe_value_of(p, "c"), *v = rl_recipe_value_of(p, "v"), *big = rl_recipe_value_of(p, "big");
    assert_int_equal(c->ndim, 2);
    assert_int_equal(c->shape[0], 2);
    assert_int_equal(c->shape[1], 3);
    const double want[6] = {1, 2, 3, 2, -2, 4};
    for (int i = 0; i < 6; i++) rl_test_assert_close(rl_test_get(c, i), want[i], 0, "c");
    assert_int_equal(v->ndim, 1);
    rl_test_assert_close(rl_test_get(v, 1), 0.2, 0, "v");
    assert_int_equal(big->shape[0], 19); /* more items than one concat takes */
    for (int i = 0; i < 19; i++) rl_test_assert_close(rl_test_get(big, i), i + 1, 0, "big");
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), 0.25 * 10 + 1.2 + 190, 1e-14, "loss");
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    const rl_recipe_param_info *pw = rl_recipe_param_at(p, 0);
    for (int i = 0; i < 6; i++) rl_test_assert_close(rl_test_get(pw->tensor->grad, i), want[i], 0, "d loss / d w = c");
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    expect_error(FB "loss = w * sum([[1, 2], [3]])\n", 3, 25, "this list has 1 item, but the first at its depth has 2",
                 "every row of a tensor literal has the same length");
    expect_error(FB "loss = w * sum([1, [2]])\n", 3, 20, "a tensor literal mixes lists and numbers at depth 2", NULL);
    expect_error(FB "loss = w * sum([])\n", 3, 16, "an empty list is not a tensor", NULL);
    expect_error(FB "loss = w * sum([[[[[1]]]]])\n", 3, 16, "a tensor literal nests more than 4 deep", NULL);
    expect_error(FB "loss = sum([w, 1])\n", 3, 13, "'w' is a f32 tensor, not a constant number", NULL);
    /* shape lists stay shape lists: at most 4 items */
    expect_error(FB "loss = sum(reshape(w, [1, 1, 1, 1, 1]))\n", 3, 23,
                 "the 'shape' argument of reshape has 5 items, more than 4", "tensors have at most 4 dims");
}

static void test_natives(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe n : fullbatch\ninput r : f32[B, T]\ninput v : f32[B, T]\ninput m : i32[B, T]\n"
                         "input x : f32[B]\ninput c : tokens\nparam w = 1 : sgd(lr = 0.1)\n"
                         "adv, ret = gae(r * w, v, m, 0.9, 0.8)\n"
                         "e = at_end(x * w, c)\n"
                         "k = kl(r * w)\nk2 = kl(r * w, kind = \"k2\")\n"
                         "wh = whiten(r * w, m)\n"
                         "jc = window_mean(x, 5)\n"
                         "loss = mean(w * adv) + sum(e) + mean(k) + mean(k2) + sum(wh * m)\n"
                         "log ret_mean = mean(ret), j = jc\n");
    rl_recipe_program *p = must_compile(r, RL_F64);
    const int B = 2, T = 5;
    double hr[10], hv[10], hm[10] = {0, 1, 1, 1, 0, 0, 0, 1, 1, 1}, hx[2] = {0.5, -1.5};
    rl_rng rng;
    rl_rng_seed(&rng, 3);
    for (int i = 0; i < 10; i++) hr[i] = rl_rng_uniform(&rng) - 0.5, hv[i] = rl_rng_uniform(&rng);
    int64_t s2[2] = {B, T}, s1[1] = {B};
    rl_tensor *tr = rl_test_tensor_of(RL_F64, 2, s2, hr), *tv = rl_test_tensor_of(RL_F64, 2, s2, hv);
    rl_tensor *tm = rl_test_tensor_of(RL_I32, 2, s2, hm), *tx = rl_test_tensor_of(RL_F64, 1, s1, hx);
    rl_test_batch c;
    rl_test_batch_make(g_ctx, &c, B, T, (int[]){5, 4}, (int[]){1, 2}, 9);
    assert_int_equal(rl_recipe_bind_tensor(p, "r", tr), RL_OK);
    assert_int_equal(rl_recipe_bind_tensor(p, "v", tv), RL_OK);
    assert_int_equal(rl_recipe_bind_tensor(p, "m", tm), RL_OK);
    assert_int_equal(rl_recipe_bind_tensor(p, "x", tx), RL_OK);
    assert_int_equal(rl_recipe_bind_tokens(p, "c", c.ids, c.mask, c.attn), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    double adv[10], ret[10];
    ref_gae(hr, hv, hm, B, T, 0.9, 0.8, adv, ret);
    rl_tensor *ta = rl_recipe_value_of(p, "adv"), *tt = rl_recipe_value_of(p, "ret");
    for (int i = 0; i < 10; i++) {
        rl_test_assert_close(rl_test_get(ta, i), adv[i], 1e-12, "gae advantage");
        rl_test_assert_close(rl_test_get(tt, i), ret[i], 1e-12, "gae return");
    }
    /* at_end: x[b] at the last mask token of row b (rows end at 5 and 4) */
    rl_tensor *te = rl_recipe_value_of(p, "e");
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int last = b == 0 ? 4 : 3;
            rl_test_assert_close(rl_test_get(te, b * T + t), t == last ? hx[b] : 0.0, 0, "at_end");
        }
    rl_tensor *tk = rl_recipe_value_of(p, "k"), *tk2 = rl_recipe_value_of(p, "k2");
    double wm = 0, n = 0, var = 0;
    rl_tensor *tw = rl_recipe_value_of(p, "wh");
    for (int i = 0; i < 10; i++) {
        rl_test_assert_close(rl_test_get(tk, i), exp(-hr[i]) - 1 + hr[i], 1e-14, "k3");
        rl_test_assert_close(rl_test_get(tk2, i), hr[i] * hr[i] / 2, 1e-14, "k2");
        wm += hm[i] * rl_test_get(tw, i), n += hm[i];
    }
    wm /= n;
    for (int i = 0; i < 10; i++) var += hm[i] * pow(rl_test_get(tw, i) - wm, 2);
    rl_test_assert_close(wm, 0, 1e-12, "whitened mean");
    rl_test_assert_close(var / (n - 1), 1, 1e-6, "whitened unbiased variance");
    rl_test_assert_close(rl_test_get(rl_recipe_metric(p, 1), 0), (0.5 - 1.5) / 2, 1e-15, "window mean, first batch");
    /* gae carries no gradient: d/dw of mean(w * adv) is mean(adv) only */
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    rl_ctx_reset(g_ctx);
    /* the window keeps the last 5 values across runs */
    rl_tensor_set(g_ctx, tx, 0, 10), rl_tensor_set(g_ctx, tx, 1, 20);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_test_assert_close(rl_test_get(rl_recipe_metric(p, 1), 0), (0.5 - 1.5 + 10 + 20) / 4, 1e-15, "window of 4");
    rl_ctx_reset(g_ctx);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_test_assert_close(rl_test_get(rl_recipe_metric(p, 1), 0), (-1.5 + 10 + 20 + 10 + 20) / 5, 1e-15, "window of 5");
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_tensor_free(g_ctx, tr), rl_tensor_free(g_ctx, tv), rl_tensor_free(g_ctx, tm), rl_tensor_free(g_ctx, tx);
    rl_test_batch_free(g_ctx, &c);
}

/* An online recipe: rollout once, then the loss over minibatches of rows. At
 * the rollout's parameters the ratio is exactly 1, so the loss is
 * -sum(r * mask) / sum(mask) over the rows taken. */
static void test_online_rollout_and_minibatches(void **state) {
    (void)state;
    rl_model *pol = tiny(RL_HEAD_LM, 31), *ref = tiny(RL_HEAD_LM, 32);
    const char *src = "recipe pg : online\ninput prompts : tokens\nmodel policy : lm trainable\n"
                      "model ref : lm frozen\nhyper beta = 0.1\n"
                      "rollout {\n"
                      "  seq = generate(policy, prompts, max_new = 4, greedy = 1)\n"
                      "  lp0 = token_logprobs(policy, seq)   lpref = token_logprobs(ref, seq)\n"
                      "  r = -beta * (lp0 - lpref) + at_end(seq_sum(lp0, seq.mask), seq)\n"
                      "}\n"
                      "loss {\n"
                      "  ratio = exp(token_logprobs(policy, seq) - lp0)\n"
                      "  loss = masked_mean(-ratio * r, seq.mask)\n"
                      "}\n"
                      "log kl = masked_mean(lp0 - lpref, seq.mask)\n";
    rl_recipe *r = rl_test_parse(src);
    rl_recipe_program *p = must_compile(r, RL_F64);
    rl_test_batch pr;
    rl_test_batch_make(g_ctx, &pr, 4, 3, (int[]){3, 2, 3, 1}, (int[]){3, 2, 3, 1}, 41);
    rl_recipe_bind_model(p, "policy", pol);
    rl_recipe_bind_model(p, "ref", ref);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_ERR_STATE); /* no rollout yet */
    assert_int_equal(rl_recipe_bind_tokens(p, "prompts", pr.ids, NULL, pr.attn), RL_OK);
    assert_int_equal(rl_recipe_run_rollout(p, g_ctx), RL_OK);
    rl_ctx_reset(g_ctx); /* rollout values are persistent */
    rl_tensor *seq = rl_recipe_value_of(p, "seq");
    assert_non_null(seq);
    assert_int_equal(seq->shape[0], 4);
    assert_int_equal(seq->shape[1], 3 + 4);
    /* host copies of r and the response mask, read before the loss passes */
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    rl_tensor *tr = rl_recipe_value_of(p, "r");
    int T = 7;
    double hr[28], hm[28];
    rl_tensor *mask = NULL;
    for (int i = 0; i < rl_recipe_n_nodes(p); i++) {
        const rl_recipe_node *n = rl_recipe_node_at(p, i);
        if (strcmp(n->op, "mask") == 0) mask = p->vals[p->ir[i].out].t;
    }
    assert_non_null(mask);
    for (int i = 0; i < 28; i++) hr[i] = rl_test_get(tr, i), hm[i] = rl_test_get(mask, i);
    double num = 0, den = 0;
    for (int i = 0; i < 28; i++) num += -hr[i] * hm[i], den += hm[i];
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), num / den, 1e-12, "loss over all rows");
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    rl_ctx_reset(g_ctx);
    /* minibatches: rows [0, 2) and [2, 4) */
    for (int mb = 0; mb < 2; mb++) {
        assert_int_equal(rl_recipe_run_loss(p, g_ctx, 2 * mb, 2 * mb + 2), RL_OK);
        num = den = 0;
        for (int i = 2 * mb * T; i < (2 * mb + 2) * T; i++) num += -hr[i] * hm[i], den += hm[i];
        rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), num / den, 1e-12, "minibatch loss");
        assert_int_equal(rl_recipe_value_of(p, "ratio")->shape[0], 2);
        rl_ctx_reset(g_ctx);
    }
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, 3, 5), RL_ERR_ARG);
    assert_non_null(strstr(rl_recipe_program_error(p), "rows [3, 5)"));
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_test_batch_free(g_ctx, &pr);
    rl_model_free(g_ctx, pol), rl_model_free(g_ctx, ref);
}

static void test_externs(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe x : supervised\nextern \"librules.so\" rule(i32[B, T], f32[B]) -> f32[B] backward rule_grad\n"
                         "input c : tokens\ninput s : f32[B]\nparam w = 1 : sgd(lr = 0.1)\n"
                         "loss = mean(rule(c.ids, s * w))\n");
    rl_recipe_program *p = must_compile(r, RL_F64);
    assert_int_equal(rl_recipe_n_externs(p), 1);
    const rl_recipe_extern *x = rl_recipe_extern_at(p, 0);
    assert_string_equal(x->name, "rule");
    assert_string_equal(x->lib, "librules.so");
    assert_string_equal(x->backward, "rule_grad");
    assert_int_equal(x->n_params, 2);
    assert_true(x->params[0].is_int);
    assert_string_equal(x->params[0].dims[1], "T");
    assert_int_equal(x->n_results, 1);
    assert_int_equal(x->line, 2);
    /* with a backward, the gradient goes through it to w */
    assert_int_equal(rl_recipe_loss_at(p, 0)->n_trainables, 1);
    rl_test_batch c;
    rl_test_batch_make(g_ctx, &c, 2, 3, (int[]){3, 3}, (int[]){1, 1}, 4);
    rl_tensor *s = rl_test_tensor_of(RL_F64, 1, (int64_t[]){2}, (double[]){1, 2});
    rl_recipe_bind_tokens(p, "c", c.ids, c.mask, c.attn);
    rl_recipe_bind_tensor(p, "s", s);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_ERR_STATE);
    assert_non_null(strstr(rl_recipe_program_error(p),
                           "t.recipe:6:13: error: extern 'rule' cannot be called: the recipe was compiled "
                           "without an extern bridge to load librules.so (opts.externs = "
                           "rl_recipe_ffi_bridge())"));
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_tensor_free(g_ctx, s);
    rl_test_batch_free(g_ctx, &c);
    /* without a backward, no gradient flows through an extern */
    r = rl_test_parse("recipe x : supervised\nextern \"librules.so\" rule(f32[B]) -> f32[B]\ninput s : f32[B]\n"
              "param w = 1 : sgd(lr = 0.1)\nloss = mean(rule(s * w))\n");
    p = must_compile(r, RL_F64);
    assert_int_equal(rl_recipe_loss_at(p, 0)->n_trainables, 0);
    assert_true(has_warning(r, 4, 7, "trainable param 'w' is reached by no loss"));
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

/* Every op of the table (but the backward-only kernels) is callable by name. */
static void test_every_op_callable(void **state) {
    (void)state;
    for (int op = 0; op < RL_OP_COUNT; op++) {
        /* foreign: externs run through it; it takes a C function, not a name */
        bool bwd = (rl_op_table[op].flags & OPF_BACKWARD_ONLY) || op == RL_OP_FOREIGN;
        if (bwd != !rl_op_signature(op)) fail_msg("op '%s': callable from recipes?", rl_op_table[op].name);
    }
    /* the signature column, parsed: the text hints show */
    assert_string_equal(rl_op_signature(RL_OP_SUM)->text, "sum(x, axis = all, keepdim = false)");
    assert_string_equal(rl_op_signature(RL_OP_CONCAT)->text, "concat(x, ..., axis = 0)");
    assert_string_equal(rl_op_signature(RL_OP_SLICE)->text, "slice(x, axis, start, end)");
    assert_int_equal(rl_op_signature(RL_OP_GT)->result_like, 0);
    assert_int_equal(rl_op_signature(RL_OP_LAYERNORM)->attr[0].field, RL_AF_F0);
    assert_true(rl_op_signature(RL_OP_LAYERNORM)->attr[0].def == 1e-5);
    /* a few by name, with attributes by keyword and by position */
    rl_recipe *r = rl_test_parse("recipe ops : supervised\ninput x : f32[B, T]\ninput i : i32[B, T]\nparam w = 1 : sgd(lr = 0.1)\n"
                         "a = logsumexp(x * w, -1)\nb = clamp(x, -0.5, hi = 0.5)\nc = slice(x, 1, 0, 2)\n"
                         "d = gather(softmax(x), i, axis = -1)\ne = concat(x, x, axis = 1)\n"
                         "f = permute(x, [1, 0])\ng = matmul(x, f)\nh = where(x > 0.5, x, -x)\n"
                         "k = min(x, axis = 0) + max(x, axis = 0, keepdim = true)\n"
                         "loss = mean(a) + mean(b) + mean(c) + mean(d) + mean(e) + mean(g) + mean(h) + mean(k) "
                         "+ mean(float(i)) + mean(x ^ 2) + sum(log_softmax(x), keepdim = false)\n");
    rl_recipe_program *p = must_compile(r, RL_F64);
    const char *want[][2] = {{"a", "f32 [B]"}, {"c", "f32 [B, 2]"}, {"e", "f32 [B, 2*T]"}, {"f", "f32 [T, B]"},
                             {"g", "f32 [B, B]"}, {"k", "f32 [1, T]"}};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        bool found = false;
        for (int i = 0; i < rl_recipe_n_nodes(p); i++) {
            const rl_recipe_node *n = rl_recipe_node_at(p, i);
            if (n->name && strcmp(n->name, want[k][0]) == 0) {
                if (strcmp(n->shape, want[k][1]) != 0)
                    fail_msg("%s: shape %s, want %s", want[k][0], n->shape, want[k][1]);
                found = true;
            }
        }
        assert_true(found);
    }
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

/* The language alone (rl_recipe_opts_default) has no model functions: a
 * recipe that calls one is told where they come from. */
static void test_language_without_model_fns(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe a : supervised\ninput c : tokens\nmodel policy : lm trainable\n"
                         "loss = -masked_mean(token_logprobs(policy, c), c.mask)\n");
    rl_recipe_opts o = rl_recipe_opts_default();
    assert_null(rl_recipe_compile(r, g_ctx, &o));
    const rl_recipe_diag *d = rl_recipe_first_error(r);
    assert_non_null(d);
    assert_string_equal(d->msg, "unknown function 'token_logprobs'");
    assert_int_equal(d->line, 4);
    assert_int_equal(d->col, 21);
    assert_string_equal(d->hint, "this program was compiled without model functions: pass them in opts.fns "
                                 "(rl_recipe_opts_models gives GPT-2's)");
    rl_recipe_free(r);
    /* with GPT-2's table it compiles */
    r = rl_test_parse("recipe a : supervised\ninput c : tokens\nmodel policy : lm trainable\n"
              "loss = -masked_mean(token_logprobs(policy, c), c.mask)\n");
    rl_recipe_program *p = must_compile(r, RL_F32);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

/* Writes the recipe that calls op on the inputs x0, x1, ... of gradient-check
 * case c with c's attributes, as `y = name(x0, ..., attr = value)`. */
static void op_case_recipe(int op, const rl_gc_case *c, char *buf, size_t n) {
    const rl_op_sig *sig = rl_op_signature(op);
    size_t k = (size_t)snprintf(buf, n, "recipe opcase : fullbatch\nparam w = 1 : sgd(lr = 0.1)\n");
    for (int i = 0; i < c->n_in; i++) {
        const rl_gc_input *in = &c->in[i];
        k += (size_t)snprintf(buf + k, n - k, "input x%d : %s", i, in->dtype == RL_I32 ? "i32" : "f32");
        for (int d = 0; d < in->ndim; d++)
            k += (size_t)snprintf(buf + k, n - k, "%s%lld", d ? ", " : "[", (long long)in->shape[d]);
        k += (size_t)snprintf(buf + k, n - k, "%s\n", in->ndim ? "]" : "");
    }
    k += (size_t)snprintf(buf + k, n - k, "y = %s(", rl_op_table[op].name);
    for (int i = 0; i < c->n_in; i++) k += (size_t)snprintf(buf + k, n - k, "%sx%d", i ? ", " : "", i);
    for (int a = 0; a < sig->n_attr; a++) {
        const rl_op_attr_sig *as = &sig->attr[a];
        double v = rl_attrs_get(&c->attrs, as->field);
        if (as->type == RL_ATTR_INTS) {
            k += (size_t)snprintf(buf + k, n - k, ", %s = [", as->name);
            for (int j = 0; j < c->attrs.n_ints; j++)
                k += (size_t)snprintf(buf + k, n - k, "%s%lld", j ? ", " : "", (long long)c->attrs.ints[j]);
            k += (size_t)snprintf(buf + k, n - k, "]");
        } else if (as->type == RL_ATTR_AXIS && v == RL_AXIS_ALL) {
            if (as->required) fail_msg("%s: case '%s' has axis all for a required axis", sig->text, c->label);
        } else if (as->type == RL_ATTR_BOOL) {
            k += (size_t)snprintf(buf + k, n - k, ", %s = %s", as->name, v ? "true" : "false");
        } else {
            k += (size_t)snprintf(buf + k, n - k, ", %s = %.17g", as->name, v);
        }
    }
    k += (size_t)snprintf(buf + k, n - k, ")\nloss = w * sum(float(y))\n");
    if (k >= n) fail_msg("the recipe for %s is too long", rl_op_table[op].name);
}

/* Every callable op, run through the recipe interpreter on each of its
 * gradient-check cases, gives exactly what the case's C front end gives. */
static void test_every_op_through_interpreter(void **state) {
    (void)state;
    int n_run = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int op = 0; op < RL_OP_COUNT; op++) {
        if (!rl_op_signature(op)) continue;
        const rl_gc_cases *cs = rl_op_gc_cases[op];
        int ran = 0;
        for (int ci = 0; ci < cs->n; ci++) {
            const rl_gc_case *c = &cs->cases[ci];
            if (c->composite) continue;
            /* the case's inputs, drawn as the gradient check draws them */
            double *vals[RL_GC_MAX_IN];
            rl_tensor *in[RL_GC_MAX_IN];
            for (int i = 0; i < c->n_in; i++) {
                int64_t numel = 1;
                for (int d = 0; d < c->in[i].ndim; d++) numel *= c->in[i].shape[d];
                vals[i] = malloc(sizeof(double) * (size_t)(numel ? numel : 1));
                for (int64_t j = 0; j < numel; j++) {
                    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                    double u = (double)(rng >> 11) / 9007199254740992.0;
                    double lo = c->in[i].lo, hi = c->in[i].hi;
                    vals[i][j] = c->in[i].dtype == RL_I32 ? floor(lo + u * (hi - lo)) : lo + u * (hi - lo);
                }
            }
            if (c->prepare) c->prepare(vals, c);
            for (int i = 0; i < c->n_in; i++)
                in[i] = rl_test_tensor_of(c->in[i].dtype == RL_I32 ? RL_I32 : RL_F64, c->in[i].ndim, c->in[i].shape, vals[i]);
            char src[2048];
            op_case_recipe(op, c, src, sizeof src);
            rl_recipe *r = rl_test_parse(src);
            rl_recipe_program *p = compile_dtype(r, RL_F64);
            if (!p) {
                dump(r);
                fail_msg("%s, case '%s': the recipe does not compile:\n%s", rl_op_table[op].name, c->label, src);
            }
            for (int i = 0; i < c->n_in; i++) {
                char name[16];
                snprintf(name, sizeof name, "x%d", i);
                assert_int_equal(rl_recipe_bind_tensor(p, name, in[i]), RL_OK);
            }
            if (rl_recipe_run_loss(p, g_ctx, -1, -1) != RL_OK)
                fail_msg("%s, case '%s': %s\n%s", rl_op_table[op].name, c->label, rl_recipe_program_error(p), src);
            rl_tensor *got = rl_recipe_value_of(p, "y");
            rl_tensor *want = c->apply(g_ctx, in, c);
            assert_non_null(got);
            assert_non_null(want);
            char gd[96], wd[96];
            rl_eval_describe(p, got, gd, sizeof gd);
            rl_eval_describe(p, want, wd, sizeof wd);
            if (strcmp(gd, wd) != 0 || got->dtype != want->dtype)
                fail_msg("%s, case '%s': the recipe gives %s, the front end %s", rl_op_table[op].name, c->label, gd, wd);
            for (int64_t j = 0; j < want->numel; j++) {
                double g = rl_test_get(got, j), w = rl_test_get(want, j);
                if (!(g == w || (isnan(g) && isnan(w))))
                    fail_msg("%s, case '%s': element %lld is %.17g through the recipe, %.17g from the front end",
                             rl_op_table[op].name, c->label, (long long)j, g, w);
            }
            rl_ctx_reset(g_ctx);
            rl_recipe_program_free(p);
            rl_recipe_free(r);
            for (int i = 0; i < c->n_in; i++) rl_tensor_free(g_ctx, in[i]), free(vals[i]);
            ran++;
        }
        if (!ran) fail_msg("op '%s' is callable from recipes but no gradient-check case runs it", rl_op_table[op].name);
        n_run += ran;
    }
    assert_true(n_run > 50);
}

/* min(x) reduces, min(a, b) is elementwise; constants fold; hypers as dims. */
static void test_values_by_hand(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe v : fullbatch\nhyper K = 3, two = 2\ninput x : f32[K]\n"
                         "param w = 1 : sgd(lr = 0.1)\n"
                         "lo = min(x * w)\nhi = max(x)\nel = min(x, 0.5)\nc = two ^ 3 - log(exp(1)) + (2 > 1)\n"
                         "cmp = mean(x >= 2)\n"
                         "loss = lo + hi * c + sum(el) + cmp\n");
    rl_recipe_program *p = must_compile(r, RL_F64);
    rl_tensor *x = rl_test_tensor_of(RL_F64, 1, (int64_t[]){3}, (double[]){1, -2, 4});
    assert_int_equal(rl_recipe_bind_tensor(p, "x", x), RL_OK);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    /* lo = -2, hi = 4, c = 8 - 1 + 1 = 8, el = (0.5, -2, 0.5), cmp = 1/3 */
    rl_test_assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), -2 + 4 * 8 + (0.5 - 2 + 0.5) + 1.0 / 3, 1e-14, "by hand");
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    /* d lo / dw = d min(x w) / dw = x at the minimum = -2 */
    rl_test_assert_close(rl_test_get(rl_recipe_param_at(p, 0)->tensor->grad, 0), -2, 1e-14, "d min(x w) / dw");
    rl_ctx_reset(g_ctx);
    rl_tensor *bad = rl_test_tensor_of(RL_F64, 1, (int64_t[]){4}, (double[]){1, 2, 3, 4});
    assert_int_equal(rl_recipe_bind_tensor(p, "x", bad), RL_ERR_ARG);
    assert_non_null(strstr(rl_recipe_program_error(p), "input 'x' is f64 [4], but the recipe declares f64 [3]"));
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_tensor_free(g_ctx, x), rl_tensor_free(g_ctx, bad);
}

static void test_prelude_and_natives_tables(void **state) {
    (void)state;
    rl_recipe *pr = rl_prelude_parse();
    assert_int_equal(rl_recipe_n_diags(pr), 0);
    assert_true(pr->n_stmts >= 10);
    rl_recipe_free(pr);
    assert_non_null(strstr(rl_recipe_prelude_source(), "fn masked_mean(x, m) = sum(x * m) / sum(m)"));
    const char *need[] = {"at_end", "gae",       "whiten",    "var",       "std",       "window_mean",     "kl",
                          "agg_loss", "group_mean", "group_sum", "group_std", "group_loo", "group_broadcast"};
    for (int k = 0; k < (int)(sizeof need / sizeof need[0]); k++) {
        bool found = false;
        for (int i = 0; i < rl_recipe_n_natives(); i++)
            if (strcmp(rl_recipe_native_at(i)->name, need[k]) == 0) found = true;
        assert_true(found);
    }
    assert_null(rl_recipe_native_at(-1));
    rl_recipe_fns f = rl_recipe_model_fns(NULL);
    const char *fns[] = {"token_logprobs", "end_score", "values", "logits", "generate", "reward_match", "reward_format"};
    assert_int_equal(f.n_fns, 7);
    for (int k = 0; k < 7; k++) assert_string_equal(f.fns[k].name, fns[k]);
    assert_non_null(f.dry.make);
}

/* Garbage never crashes: every prefix of a real recipe, and random bytes. */
static void test_robust_to_garbage(void **state) {
    (void)state;
    char *src = safe_rlhf_with("stop(exp(log_lambda))");
    size_t n = strlen(src);
    for (size_t k = 0; k < n; k += 7) {
        rl_recipe *r = rl_recipe_parse(src, k, "prefix");
        rl_recipe_opts o = rl_recipe_opts_models(NULL);
        o.externs = NULL;
        o.no_dry_run = 1;
        rl_recipe_program *p = rl_recipe_compile(r, g_ctx, &o);
        rl_recipe_program_free(p);
        rl_recipe_free(r);
    }
    free(src);
    rl_rng rng;
    rl_rng_seed(&rng, 99);
    char buf[256];
    for (int it = 0; it < 200; it++) {
        for (size_t i = 0; i < sizeof buf; i++) buf[i] = (char)(rl_rng_next(&rng) & 0xff);
        rl_recipe *r = rl_recipe_parse(buf, sizeof buf, "noise");
        assert_true(rl_recipe_n_errors(r) > 0);
        rl_recipe_program *p = rl_recipe_compile(r, g_ctx, NULL);
        assert_null(p);
        rl_recipe_free(r);
    }
    rl_ctx_clear_error(g_ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_unterminated_block),
        cmocka_unit_test(test_name_errors),
        cmocka_unit_test(test_log_value_under_its_name),
        cmocka_unit_test(test_var_std),
        cmocka_unit_test(test_tensor_literals),
        cmocka_unit_test(test_call_errors),
        cmocka_unit_test(test_type_errors),
        cmocka_unit_test(test_declaration_errors),
        cmocka_unit_test(test_structure_errors),
        cmocka_unit_test(test_shape_errors),
        cmocka_unit_test(test_errors_collected_in_order),
        cmocka_unit_test(test_diag_format),
        cmocka_unit_test(test_audit_leak),
        cmocka_unit_test(test_audit_safe_rlhf),
        cmocka_unit_test(test_audit_warnings),
        cmocka_unit_test(test_set_overrides),
        cmocka_unit_test(test_fullbatch_param),
        cmocka_unit_test(test_pairwise_bradley_terry),
        cmocka_unit_test(test_dpo_and_ipo_files),
        cmocka_unit_test(test_natives),
        cmocka_unit_test(test_online_rollout_and_minibatches),
        cmocka_unit_test(test_externs),
        cmocka_unit_test(test_every_op_callable),
        cmocka_unit_test(test_every_op_through_interpreter),
        cmocka_unit_test(test_language_without_model_fns),
        cmocka_unit_test(test_values_by_hand),
        cmocka_unit_test(test_prelude_and_natives_tables),
        cmocka_unit_test(test_robust_to_garbage),
    };
    return cmocka_run_group_tests(tests, rl_test_ctx_setup, rl_test_ctx_teardown);
}
