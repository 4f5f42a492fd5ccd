/* tests/rl_test_recipe.h - what the recipe suites share (test_recipe,
 * test_extern, test_graph, test_recipe_gradcheck and the three
 * test_builtin_* suites): one CPU context per suite (g_ctx, made and freed
 * by the cmocka group's setup and teardown) and values read from it, recipe
 * text parsed as "t.recipe", built-in recipes loaded by name with --set
 * overrides, compiling with GPT-2's model functions (with or without the
 * libffi extern bridge, or in f64 with a seeded generation stream), failing
 * the test with the diagnostics when a recipe that must compile does not,
 * a program's losses, metrics, values and token batches by name, and the
 * in-process `rlhf gradcheck` that fails the test with its table. Include
 * after rl_test.h.
 */
#ifndef RL_TEST_RECIPE_H
#define RL_TEST_RECIPE_H

#include <stdbool.h>

#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_recipe_gradcheck.h"
#include "recipe_int.h" /* a program's named values, for rl_test_tokens_of */

static rl_ctx *g_ctx;

static int rl_test_ctx_setup(void **state) {
    (void)state;
    g_ctx = rl_ctx_new(NULL);
    return g_ctx ? 0 : -1;
}

static int rl_test_ctx_teardown(void **state) {
    (void)state;
    rl_ctx_free(g_ctx);
    return 0;
}

static inline rl_recipe *rl_test_parse(const char *src) { return rl_recipe_parse(src, strlen(src), "t.recipe"); }

/* Compiles r in dtype dt with GPT-2's model functions (default generation
 * stream) and, when ffi, the libffi bridge for externs; NULL when it fails. */
static inline rl_recipe_program *rl_test_compile(rl_recipe *r, rl_dtype dt, bool ffi) {
    rl_recipe_opts o = rl_recipe_opts_models(NULL);
    if (!ffi) o.externs = NULL;
    o.dtype = dt;
    return rl_recipe_compile(r, g_ctx, &o);
}

/* As rl_test_compile, but prints the diagnostics and fails the test when r
 * does not compile. */
static inline rl_recipe_program *rl_test_must_compile(rl_recipe *r, rl_dtype dt, bool ffi) {
    rl_recipe_program *p = rl_test_compile(r, dt, ffi);
    if (!p) {
        rl_recipe_print_diags(r, stderr);
        fail_msg("the recipe did not compile");
    }
    return p;
}

/* Element i of a tensor of g_ctx, as a double. */
static inline double rl_test_get(const rl_tensor *t, int64_t i) { return rl_tensor_get(g_ctx, t, i); }

/* A persistent tensor of g_ctx from doubles (i32 or float dtype). */
static inline rl_tensor *rl_test_tensor_of(rl_dtype dt, int ndim, const int64_t *shape, const double *v) {
    rl_tensor *t = rl_tensor_new(g_ctx, dt, ndim, shape, "data");
    assert_non_null(t);
    for (int64_t i = 0; i < t->numel; i++) rl_tensor_set(g_ctx, t, i, v[i]);
    return t;
}

/* The built-in recipe `name` (as `rlhf train NAME` resolves it) with the
 * --set overrides in the NULL-terminated sets (NULL: none). */
static inline rl_recipe *rl_test_load_builtin(const char *name, const char *const *sets) {
    char path[1024];
    assert_int_equal(rl_recipe_resolve(name, path, sizeof path), RL_OK);
    const char *err = NULL;
    rl_recipe *r = rl_recipe_load(path, &err);
    if (!r) fail_msg("cannot read %s: %s", path, err);
    for (int i = 0; sets && sets[i]; i++) assert_int_equal(rl_recipe_set_arg(r, sets[i]), RL_OK);
    return r;
}

/* The generation stream of the programs rl_test_compile_clean makes: one
 * per suite, re-seeded at each compile (it must outlive the program). */
static inline rl_recipe_model_env *rl_test_gen_env(void) {
    static rl_recipe_model_env env;
    return &env;
}

/* Compiles r in f64 with GPT-2's model functions and a generation stream
 * seeded gen_seed; fails the test with the diagnostics when r does not
 * compile, or when it warns. */
static inline rl_recipe_program *rl_test_compile_clean(rl_recipe *r, uint64_t gen_seed) {
    rl_recipe_model_env_init(rl_test_gen_env(), gen_seed);
    rl_recipe_opts o = rl_recipe_opts_models(rl_test_gen_env());
    o.dtype = RL_F64;
    rl_recipe_program *p = rl_recipe_compile(r, g_ctx, &o);
    if (!p || rl_recipe_n_warnings(r)) {
        rl_recipe_print_diags(r, stderr);
        fail_msg("%s did not compile cleanly", rl_recipe_name(r));
    }
    return p;
}

/* The built-in `name` with sets, compiled clean in f64 (generation seed 77);
 * the recipe in *rout. */
static inline rl_recipe_program *rl_test_builtin64(const char *name, const char *const *sets, rl_recipe **rout) {
    *rout = rl_test_load_builtin(name, sets);
    return rl_test_compile_clean(*rout, 77);
}

/* Frees a program, its recipe and the step's scratch tensors. */
static inline void rl_test_free_program(rl_recipe_program *p, rl_recipe *r) {
    rl_ctx_reset(g_ctx);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
}

/* The value of the metric, loss or named value of a run program. */
static inline double rl_test_metric(const rl_recipe_program *p, const char *name) {
    for (int i = 0; i < rl_recipe_n_metrics(p); i++)
        if (strcmp(rl_recipe_metric_name(p, i), name) == 0) return rl_test_get(rl_recipe_metric(p, i), 0);
    fail_msg("no metric '%s'", name);
    return NAN;
}

static inline double rl_test_loss_named(const rl_recipe_program *p, const char *name) {
    for (int i = 0; i < rl_recipe_n_losses(p); i++)
        if (strcmp(rl_recipe_loss_at(p, i)->name, name) == 0) return rl_test_get(rl_recipe_loss(p, i), 0);
    fail_msg("no loss '%s'", name);
    return NAN;
}

static inline double rl_test_value(const rl_recipe_program *p, const char *name, int64_t i) {
    rl_tensor *t = rl_recipe_value_of(p, name);
    if (!t) fail_msg("no value '%s'", name);
    return rl_test_get(t, i);
}

/* The token batch a program holds under `name` (a rollout's generate result). */
static inline rl_recipe_tokens rl_test_tokens_of(const rl_recipe_program *p, const char *name) {
    for (int i = p->n_named - 1; i >= 0; i--)
        if (strcmp(p->named[i].name, name) == 0 && p->named[i].slot >= 0) {
            const rl_recipe_value *v = &p->vals[p->named[i].slot];
            assert_int_equal(v->kind, RL_RV_TOKENS);
            return v->tok;
        }
    fail_msg("no token batch '%s'", name);
    rl_recipe_tokens none = {0};
    return none;
}

/* `rlhf gradcheck` in-process with options o: when it fails (or cannot
 * run), prints its table to stderr and fails the test, naming `what`. */
static inline void rl_test_gradcheck_must_pass(rl_recipe *r, rl_recipe_gc_opts *o, rl_recipe_gc_result *res,
                                               const char *what) {
    rl_status st = rl_recipe_gradcheck(r, o, res);
    if (st != RL_OK || res->n_failed) {
        o->out = stderr;
        rl_recipe_gradcheck(r, o, res);
        fail_msg("%s: %s", what, res->msg);
    }
}

#endif
