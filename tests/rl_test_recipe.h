/* tests/rl_test_recipe.h - what the recipe suites share (test_recipe,
 * test_extern, test_builtin_recipes, test_graph): one CPU context per suite
 * (g_ctx, made and freed by the cmocka group's setup and teardown), recipe
 * text parsed as "t.recipe", and compiling with GPT-2's model functions, with
 * or without the libffi extern bridge, failing the test with the
 * diagnostics when a recipe that must compile does not. Include after
 * rl_test.h.
 */
#ifndef RL_TEST_RECIPE_H
#define RL_TEST_RECIPE_H

#include <stdbool.h>

#include "rl_recipe.h"
#include "rl_recipe_bind.h"

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
    rl_recipe_opts o = rl_recipe_opts_gpt2(NULL);
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

#endif
