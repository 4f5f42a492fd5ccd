/* tests/test_extern.c - recipe externs through libffi (recipes/bind/ffi.c) and
 * the foreign op (ops/rl_foreign.h), with the example plug-in
 * recipes/plugins/length_bonus.c (built as <build>/plugins/liblength_bonus.so):
 *   - recipes/examples/length_bonus.recipe end to end, against the same
 *     numbers computed here in plain C;
 *   - the plug-in's backward functions checked against central differences
 *     in f64, through a recipe (one and two results);
 *   - errors with their exact messages and positions: a missing library, a
 *     missing function, a missing backward, a declaration that contradicts
 *     the library, a call with the wrong number of arguments, a plug-in that
 *     returns an error;
 *   - where libraries are found (recipe directory, RLHF_PLUGIN_DIR), and
 *     that nothing is loaded without the bridge.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rl_test.h"
#include "rl_test_batch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rl_gradcheck.h"
#include "rl_rng.h"
#include "rl_model.h"
#include "rl_foreign.h"
#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_test_recipe.h"

#ifndef RLHF_TEST_TMP
#define RLHF_TEST_TMP "/tmp"
#endif

static int setup(void **state) {
    unsetenv("RLHF_PLUGIN_DIR"); /* the messages below list the search path */
    return rl_test_ctx_setup(state);
}

/* ---- helpers ------------------------------------------------------------------------ */

/* GPT-2's model functions and the libffi bridge */
static rl_recipe_program *compile_ffi(rl_recipe *r, rl_dtype dt) { return rl_test_compile(r, dt, true); }
static rl_recipe_program *must_compile(rl_recipe *r, rl_dtype dt) { return rl_test_must_compile(r, dt, true); }

/* The first error of src, formatted (four lines), compiled with the bridge. */
static char *first_error(const char *src) {
    rl_recipe *r = rl_test_parse(src);
    rl_recipe_program *p = compile_ffi(r, RL_F32);
    if (p) {
        rl_recipe_program_free(p);
        rl_recipe_free(r);
        fail_msg("expected an error, but this compiled:\n%s", src);
    }
    const rl_recipe_diag *d = rl_recipe_first_error(r);
    assert_non_null(d);
    int n = rl_recipe_format_diag(d, NULL, 0);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    rl_recipe_format_diag(d, s, (size_t)n + 1);
    rl_recipe_free(r);
    return s;
}

static void expect_error(const char *src, const char *want) {
    char *got = first_error(src);
    if (strcmp(got, want) != 0) fail_msg("expected:\n%s\ngot:\n%s", want, got);
    free(got);
}

static void assert_close(double got, double want, double tol, const char *what) {
    if (!(fabs(got - want) <= tol * (1 + fabs(want))))
        fail_msg("%s: got %.12g, want %.12g (tolerance %g)", what, got, want, tol);
}

/* The plug-in's rule, written again here: the reference. */
static double ref_length_bonus(const int32_t *ids, const int32_t *mask, int64_t T, int64_t b, double target,
                               double width, int32_t end_id) {
    int64_t len = 0, last = -1;
    for (int64_t t = 0; t < T; t++)
        if (mask[b * T + t]) len++, last = t;
    double z = ((double)len - target) / width;
    return exp(-z * z) + (last >= 0 && ids[b * T + last] == end_id ? 0.5 : 0.0);
}

static double softplus(double z) { return (z > 0 ? z : 0) + log1p(exp(-fabs(z))); }

static void copy_file(const char *from, const char *to) {
    char *s = NULL;
    FILE *f = fopen(from, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    s = malloc((size_t)n);
    assert_non_null(s);
    assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    FILE *g = fopen(to, "wb");
    assert_non_null(g);
    assert_int_equal(fwrite(s, 1, (size_t)n, g), (size_t)n);
    fclose(g);
    free(s);
}

#define PLUGIN RLHF_PLUGIN_BUILD_DIR "/liblength_bonus.so"
#define EXAMPLE RLHF_SOURCE_DIR "/recipes/examples/length_bonus.recipe"

/* ---- the example recipe end to end ------------------------------------------------------ */

static void run_example(rl_dtype dt, double tol) {
    rl_model_config cfg;
    assert_int_equal(rl_model_config_preset("tiny", &cfg), RL_OK);
    rl_model *pol = rl_model_new(g_ctx, &cfg, RL_HEAD_LM, dt, 11);
    rl_model *ref = rl_model_new(g_ctx, &cfg, RL_HEAD_LM, dt, 12);
    assert_non_null(pol);
    assert_non_null(ref);
    rl_test_batch w, l;
    rl_test_batch_make(g_ctx, &w, 3, 8, (int[]){8, 6, 7}, (int[]){2, 1, 3}, 31);
    rl_test_batch_make(g_ctx, &l, 3, 8, (int[]){5, 8, 8}, (int[]){2, 2, 1}, 32);
    /* end_id = the last response token of chosen row 0: its format rule fires */
    int32_t end_id = w.hid[0 * 8 + 7];
    const char *err = NULL;
    rl_recipe *r = rl_recipe_load(EXAMPLE, &err);
    assert_non_null(r);
    char v[32];
    snprintf(v, sizeof v, "%d", (int)end_id);
    assert_int_equal(rl_recipe_set(r, "end_id", v), RL_OK);
    assert_int_equal(rl_recipe_set(r, "target", "5"), RL_OK);
    assert_int_equal(rl_recipe_set(r, "width", "2"), RL_OK);
    rl_recipe_program *p = must_compile(r, dt);
    assert_int_equal(rl_recipe_n_errors(r), 0);
    assert_int_equal(rl_recipe_n_externs(p), 2);
    assert_string_equal(rl_recipe_extern_at(p, 1)->backward, "soft_excess_bwd");
    /* the policy is trained by the loss, through soft_excess's backward too */
    assert_int_equal(rl_recipe_loss_at(p, 0)->n_trainables, 1);
    rl_recipe_bind_model(p, "policy", pol);
    rl_recipe_bind_model(p, "ref", ref);
    rl_recipe_bind_tokens(p, "chosen", w.ids, w.mask, w.attn);
    rl_recipe_bind_tokens(p, "rejected", l.ids, l.mask, l.attn);
    if (rl_recipe_run_loss(p, g_ctx, -1, -1) != RL_OK) fail_msg("%s", rl_recipe_program_error(p));
    /* the rule, computed here */
    const double beta = 0.1, alpha = 0.5, cap = 5, rho = 0.1;
    rl_tensor *bonus = rl_recipe_value_of(p, "bonus"), *h = rl_recipe_value_of(p, "h");
    assert_non_null(bonus);
    assert_non_null(h);
    double want_loss = 0, gap = 0;
    int fired = 0;
    for (int64_t b = 0; b < 3; b++) {
        double bw = ref_length_bonus(w.hid, w.hmask, 8, b, 5, 2, end_id);
        double bl = ref_length_bonus(l.hid, l.hmask, 8, b, 5, 2, end_id);
        fired += bw > 1.0;
        assert_close(rl_test_get(bonus, b), bw - bl, tol, "bonus");
        double m = beta * rl_test_get(h, b);
        want_loss += (softplus(-(m + alpha * (bw - bl))) + rho * (softplus(m - cap) + softplus(-m - cap))) / 3;
        gap += (bw - bl) / 3;
    }
    assert_true(fired >= 1); /* the format rule was exercised */
    assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), want_loss, tol, "loss");
    assert_close(rl_test_get(rl_recipe_metric(p, 0), 0), gap, tol, "bonus_gap");
    /* backward reaches the policy's weights */
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_test_batch_free(g_ctx, &w), rl_test_batch_free(g_ctx, &l);
    rl_model_free(g_ctx, pol), rl_model_free(g_ctx, ref);
}

static void test_example_recipe(void **state) {
    (void)state;
    run_example(RL_F64, 1e-6); /* length_bonus has no _f64 variant: converted through float */
    run_example(RL_F32, 1e-5);
}

/* ---- gradients of the plug-in's backward functions ------------------------------------------ */

typedef struct gc_run {
    rl_recipe_program *p;
} gc_run;

static rl_tensor *gc_loss(rl_ctx *ctx, rl_tensor **inputs, void *user) {
    (void)inputs;
    gc_run *g = user;
    if (rl_recipe_run_loss(g->p, ctx, -1, -1) != RL_OK) {
        print_error("%s", rl_recipe_program_error(g->p));
        return NULL;
    }
    return rl_recipe_loss(g->p, 0);
}

static void gradcheck_recipe(const char *src, rl_tensor *mask) {
    rl_recipe *r = rl_test_parse(src);
    rl_recipe_program *p = must_compile(r, RL_F64);
    if (mask) assert_int_equal(rl_recipe_bind_tensor(p, "m", mask), RL_OK);
    rl_tensor *in[4];
    int n = rl_recipe_n_params(p);
    rl_rng rng;
    rl_rng_seed(&rng, 7);
    for (int i = 0; i < n; i++) {
        in[i] = rl_recipe_param_at(p, i)->tensor;
        for (int64_t k = 0; k < in[i]->numel; k++) rl_tensor_set(g_ctx, in[i], k, 2 * rl_rng_uniform(&rng) - 1);
    }
    gc_run g = {p};
    rl_gc_opts o;
    rl_gc_opts_default(&o);
    o.verbose = 1;
    rl_gc_result res;
    rl_status st = rl_gradcheck_fn(g_ctx, gc_loss, &g, n, in, &o, &res);
    printf("# %d elements, max abs %.2e, max rel %.2e\n", res.n_checked, res.max_abs, res.max_rel);
    if (st != RL_OK || !res.passed) fail_msg("gradient check failed: %s", res.msg);
    assert_true(res.n_checked >= 4);
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

static void test_backward_gradcheck(void **state) {
    (void)state;
    /* one result; a 0-d argument passed by value gets its gradient too */
    gradcheck_recipe("recipe gc : fullbatch\n"
                     "extern \"liblength_bonus.so\" soft_excess(f32[N], f32) -> f32[N] backward soft_excess_bwd\n"
                     "param x : f32[6] = 0 : sgd(lr = 0.1)\nparam t = 0 : sgd(lr = 0.1)\n"
                     "loss = sum(soft_excess(x * x - x, t) * soft_excess(x, 0.3 * t))\n",
                     NULL);
    /* two results: each carries its own gradient into one backward call */
    int32_t hm[12] = {1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 0, 0}; /* the last row is empty */
    rl_tensor *m = rl_tensor_new(g_ctx, RL_I32, 2, (int64_t[]){3, 4}, "m");
    rl_tensor_write(g_ctx, m, hm, sizeof hm);
    gradcheck_recipe("recipe gc : fullbatch\n"
                     "extern \"liblength_bonus.so\" masked_moments(f32[B, T], i32[B, T]) -> (f32[B], f32[B]) "
                     "backward masked_moments_bwd\n"
                     "input m : i32[3, 4]\nparam x : f32[3, 4] = 0 : sgd(lr = 0.1)\n"
                     "param w : f32[3] = 0 : sgd(lr = 0.1)\n"
                     "mu, var = masked_moments(x * x + x, m)\nloss = sum(mu * w) + sum(var * var)\n",
                     m);
    rl_tensor_free(g_ctx, m);
}

/* The extern's output joins the tape as a foreign node; without a
 * backward it carries no gradient. */
static void test_foreign_node(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe f : fullbatch\n"
                         "extern \"liblength_bonus.so\" soft_excess(f32[N], f32) -> f32[N] backward soft_excess_bwd\n"
                         "param x : f32[4] = 0.5 : sgd(lr = 0.1)\nloss = sum(soft_excess(x, 0))\n");
    rl_recipe_program *p = must_compile(r, RL_F64);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    int foreign = 0;
    for (int i = 0; i < rl_ctx_tape_len(g_ctx); i++) foreign += rl_ctx_node(g_ctx, i)->op == RL_OP_FOREIGN;
    assert_int_equal(foreign, 1);
    assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), 4 * softplus(0.5), 1e-12, "loss");
    assert_int_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    const rl_tensor *x = rl_recipe_param_at(p, 0)->tensor;
    for (int k = 0; k < 4; k++) assert_close(rl_test_get(x->grad, k), 1 / (1 + exp(-0.5)), 1e-12, "dloss/dx");
    /* gradients of gradients through C code are refused, not silently zero */
    rl_ctx_reset(g_ctx);
    rl_tensor_zero_grad(g_ctx, rl_recipe_param_at(p, 0)->tensor);
    rl_ctx_set_create_graph(g_ctx, 1);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    assert_int_not_equal(rl_recipe_backward(p, g_ctx), RL_OK);
    assert_non_null(strstr(rl_recipe_program_error(p), "gradients of gradients through a foreign function"));
    rl_ctx_set_create_graph(g_ctx, 0);
    rl_ctx_clear_error(g_ctx);
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

/* ---- errors ---------------------------------------------------------------------------------------- */

static void test_missing_library(void **state) {
    (void)state;
    char exe[1024], want[16384];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    assert_true(n > 0);
    exe[n] = 0;
    *strrchr(exe, '/') = 0;
    snprintf(want, sizeof want,
             "t.recipe:2:8: error: cannot find 'libnope_xyz.so' for extern 'f' (looked in: . (the recipe's "
             "directory), $RLHF_PLUGIN_DIR (unset), %s, %s/plugins, %s, and the system's library path)\n"
             "extern \"libnope_xyz.so\" f(f32[N]) -> f32[N]\n"
             "       ^~~~~~~~~~~~~~~~\n"
             "hint: build the plug-in, or put its directory in RLHF_PLUGIN_DIR (a path relative to the "
             "recipe's directory also works)\n",
             exe, exe, RLHF_PLUGIN_BUILD_DIR);
    expect_error("recipe a : fullbatch\nextern \"libnope_xyz.so\" f(f32[N]) -> f32[N]\n"
                 "param w : f32[3] = 0 : sgd(lr = 0.1)\nloss = sum(f(w))\n",
                 want);
    /* a file that is there but is not a library: dlopen's reason */
    char bad[512];
    snprintf(bad, sizeof bad, "%s/test_extern_bad.so", RLHF_TEST_TMP);
    FILE *f = fopen(bad, "w");
    assert_non_null(f);
    fputs("not a library\n", f);
    fclose(f);
    char src[1024];
    snprintf(src, sizeof src, "recipe a : fullbatch\nextern \"%s\" f(f32[N]) -> f32[N]\n"
                              "param w : f32[3] = 0 : sgd(lr = 0.1)\nloss = sum(f(w))\n", bad);
    char *got = first_error(src);
    char head[2048];
    snprintf(head, sizeof head, "t.recipe:2:8: error: cannot load '%s' for extern 'f': %s: ", bad, bad);
    if (strncmp(got, head, strlen(head)) != 0) fail_msg("got:\n%s", got);
    assert_non_null(strstr(got, "hint: is it built for this machine, with its dependencies installed?\n"));
    free(got);
    unlink(bad);
}

static void test_missing_symbols(void **state) {
    (void)state;
    expect_error("recipe a : fullbatch\nextern \"liblength_bonus.so\" lenght_bonus(f32[N]) -> f32[N]\n"
                 "param w : f32[3] = 0 : sgd(lr = 0.1)\nloss = sum(lenght_bonus(w))\n",
                 "t.recipe:2:29: error: 'liblength_bonus.so' (" PLUGIN ") has no function 'lenght_bonus'\n"
                 "extern \"liblength_bonus.so\" lenght_bonus(f32[N]) -> f32[N]\n"
                 "                            ^~~~~~~~~~~~\n"
                 "hint: export it under this exact name (extern \"C\", not static); nm -D lists a library's "
                 "functions\n");
    expect_error("recipe a : fullbatch\n"
                 "extern \"liblength_bonus.so\" soft_excess(f32[N], f32) -> f32[N] backward soft_excess_grad\n"
                 "param w : f32[3] = 0 : sgd(lr = 0.1)\nloss = sum(soft_excess(w, 1))\n",
                 "t.recipe:2:73: error: 'liblength_bonus.so' has no function 'soft_excess_grad' (the backward of "
                 "extern 'soft_excess')\n"
                 "extern \"liblength_bonus.so\" soft_excess(f32[N], f32) -> f32[N] backward soft_excess_grad\n"
                 "                                                                        ^~~~~~~~~~~~~~~~\n"
                 "hint: export it, or drop 'backward' (the extern then carries no gradient)\n");
}

static void test_signature_mismatch(void **state) {
    (void)state;
    /* the library describes its functions (NAME_signature); dims may be renamed */
    expect_error("recipe a : fullbatch\nextern \"liblength_bonus.so\" soft_excess(f32[N]) -> f32[N]\n"
                 "param w : f32[3] = 0 : sgd(lr = 0.1)\nloss = sum(soft_excess(w))\n",
                 "t.recipe:2:29: error: extern 'soft_excess' is declared (f32[N]) -> f32[N], but "
                 "'liblength_bonus.so' says its function takes (f32[N], f32) -> f32[N]\n"
                 "extern \"liblength_bonus.so\" soft_excess(f32[N]) -> f32[N]\n"
                 "                            ^~~~~~~~~~~\n"
                 "hint: make the declaration match the library's (dim names may differ)\n");
    expect_error("recipe a : fullbatch\n"
                 "extern \"liblength_bonus.so\" masked_moments(f32[R, C], i32[R, C]) -> f32[R] backward "
                 "masked_moments_bwd\n"
                 "param w : f32[3, 2] = 0 : sgd(lr = 0.1)\nloss = sum(masked_moments(w, w > 0))\n",
                 "t.recipe:2:29: error: extern 'masked_moments' is declared (f32[R, C], i32[R, C]) -> f32[R], "
                 "but 'liblength_bonus.so' says its function takes (f32[B, T], i32[B, T]) -> (f32[B], f32[B])\n"
                 "extern \"liblength_bonus.so\" masked_moments(f32[R, C], i32[R, C]) -> f32[R] backward "
                 "masked_moments_bwd\n"
                 "                            ^~~~~~~~~~~~~~\n"
                 "hint: make the declaration match the library's (dim names may differ)\n");
    /* renamed dims are the same signature */
    rl_recipe *r = rl_test_parse("recipe a : fullbatch\n"
                         "extern \"liblength_bonus.so\" soft_excess(f32[K], f32) -> f32[K] backward soft_excess_bwd\n"
                         "param w : f32[3] = 0 : sgd(lr = 0.1)\nloss = sum(soft_excess(w, 1))\n");
    rl_recipe_program *p = must_compile(r, RL_F32);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    /* the call must match the declaration's arity: reported at the call */
    expect_error("recipe a : fullbatch\n"
                 "extern \"liblength_bonus.so\" soft_excess(f32[N], f32) -> f32[N] backward soft_excess_bwd\n"
                 "param w : f32[3] = 0 : sgd(lr = 0.1)\nloss = sum(soft_excess(w))\n",
                 "t.recipe:4:12: error: wrong number of arguments to 'soft_excess': missing 'arg2' "
                 "(soft_excess(arg1, arg2))\n"
                 "loss = sum(soft_excess(w))\n"
                 "           ^~~~~~~~~~~\n"
                 "hint: extern soft_excess from liblength_bonus.so, declared at 2:29\n");
}

/* A plug-in that returns nonzero stops the run with its name, at the call. */
static void test_plugin_error(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe a : fullbatch\n"
                         "extern \"liblength_bonus.so\" length_bonus(i32[B, T], i32[B, T], f32, f32, i32) -> f32[B]\n"
                         "input ids : i32[B, T]\nparam w = 1 : sgd(lr = 0.1)\nhyper width = 0\n"
                         "loss = w * mean(length_bonus(ids, ids, 3, width, 0))\n");
    rl_recipe_program *p = must_compile(r, RL_F32);
    rl_tensor *ids = rl_test_tensor_of(RL_I32, 2, (int64_t[]){2, 2}, (double[]){1, 0, 1, 1});
    rl_recipe_bind_tensor(p, "ids", ids);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_ERR_STATE);
    const char *want = "t.recipe:6:17: error: extern 'length_bonus': length_bonus() in liblength_bonus.so "
                       "returned 1 (0 means success)\n"
                       "loss = w * mean(length_bonus(ids, ids, 3, width, 0))\n"
                       "                ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n";
    if (strcmp(rl_recipe_program_error(p), want) != 0) fail_msg("got:\n[%s]", rl_recipe_program_error(p));
    rl_ctx_clear_error(g_ctx);
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_tensor_free(g_ctx, ids);
}

/* ---- where libraries are found ------------------------------------------------------------------- */

static void test_search_path(void **state) {
    (void)state;
    char dir[512], sub[600], lib[700], recipe[700], envlib[700];
    snprintf(dir, sizeof dir, "%s/test_extern_dir", RLHF_TEST_TMP);
    snprintf(sub, sizeof sub, "%s/sub", dir);
    mkdir(dir, 0755);
    mkdir(sub, 0755);
    /* relative to the recipe's directory, under a name found nowhere else */
    snprintf(lib, sizeof lib, "%s/librelcopy.so", sub);
    copy_file(PLUGIN, lib);
    snprintf(recipe, sizeof recipe, "%s/rel.recipe", dir);
    FILE *f = fopen(recipe, "w");
    assert_non_null(f);
    fputs("recipe rel : fullbatch\n"
          "extern \"sub/librelcopy.so\" soft_excess(f32[N], f32) -> f32[N] backward soft_excess_bwd\n"
          "param x : f32[2] = 1 : sgd(lr = 0.1)\nloss = sum(soft_excess(x, 1))\n",
          f);
    fclose(f);
    rl_recipe *r = rl_recipe_load(recipe, NULL);
    assert_non_null(r);
    rl_recipe_program *p = must_compile(r, RL_F32);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_OK);
    assert_close(rl_test_get(rl_recipe_loss(p, 0), 0), 2 * log(2.0), 1e-6, "loss");
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    /* a directory of RLHF_PLUGIN_DIR */
    snprintf(envlib, sizeof envlib, "%s/libenvcopy.so", sub);
    copy_file(PLUGIN, envlib);
    const char *src = "recipe a : fullbatch\n"
                      "extern \"libenvcopy.so\" soft_excess(f32[N], f32) -> f32[N] backward soft_excess_bwd\n"
                      "param x : f32[2] = 1 : sgd(lr = 0.1)\nloss = sum(soft_excess(x, 1))\n";
    char *err = first_error(src);
    assert_non_null(strstr(err, "cannot find 'libenvcopy.so'"));
    free(err);
    char envv[1300];
    snprintf(envv, sizeof envv, "/nonexistent:%s", sub);
    setenv("RLHF_PLUGIN_DIR", envv, 1);
    r = rl_test_parse(src);
    p = must_compile(r, RL_F32);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    unsetenv("RLHF_PLUGIN_DIR");
    unlink(lib), unlink(envlib), unlink(recipe), rmdir(sub), rmdir(dir);
}

/* Without the bridge nothing is loaded: compiling never runs plug-in code. */
static void test_opt_in(void **state) {
    (void)state;
    rl_recipe *r = rl_test_parse("recipe a : fullbatch\nextern \"libnope_xyz.so\" f(f32[N]) -> f32[N]\n"
                         "param w : f32[3] = 0 : sgd(lr = 0.1)\nloss = sum(f(w)) + sum(w * w)\n");
    rl_recipe_opts o = rl_recipe_opts_default();
    rl_recipe_program *p = rl_recipe_compile(r, g_ctx, &o);
    assert_non_null(p);
    assert_int_equal(rl_recipe_run_loss(p, g_ctx, -1, -1), RL_ERR_STATE);
    assert_non_null(strstr(rl_recipe_program_error(p), "compiled without an extern bridge"));
    rl_ctx_clear_error(g_ctx);
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    /* the example recipe names its plug-in in a comment too: check it is the one CMake builds */
    char *text = rl_test_read_file(EXAMPLE);
    assert_non_null(text);
    assert_non_null(strstr(text, "extern \"liblength_bonus.so\" length_bonus("));
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_recipe),   cmocka_unit_test(test_backward_gradcheck),
        cmocka_unit_test(test_foreign_node),     cmocka_unit_test(test_missing_library),
        cmocka_unit_test(test_missing_symbols),  cmocka_unit_test(test_signature_mismatch),
        cmocka_unit_test(test_plugin_error),     cmocka_unit_test(test_search_path),
        cmocka_unit_test(test_opt_in),
    };
    return cmocka_run_group_tests_name("recipe externs (libffi)", tests, setup, rl_test_ctx_teardown);
}
