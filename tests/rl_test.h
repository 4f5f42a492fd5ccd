/* tests/rl_test.h - what the cmocka suites share: the cmocka includes, the
 * assertions cmocka 1.1 lacks (doubles, substrings, context errors), and a
 * setup/teardown pair that gives each test a fresh CPU context in *state.
 *
 * Folder tests/: the cmocka suites (one per area) and the recipe fuzzer;
 * may include any room. Start here, then the suite of the area you change.
 */
#ifndef RL_TEST_H
#define RL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl_ops.h"

/* |a - b| <= tol, printing both values when not. */
#define assert_near(a, b, tol)                                                                \
    do {                                                                                      \
        double a_ = (a), b_ = (b);                                                            \
        if (!(fabs(a_ - b_) <= (tol)))                                                        \
            fail_msg("%.17g != %.17g (tolerance %g)", a_, b_, (double)(tol));                 \
    } while (0)

/* The string contains the substring. */
#define assert_contains(haystack, needle)                                                     \
    do {                                                                                      \
        const char *h_ = (haystack), *n_ = (needle);                                          \
        assert_non_null(h_);                                                                  \
        if (!strstr(h_, n_)) fail_msg("'%s' does not contain '%s'", h_, n_);                  \
    } while (0)

/* The context holds an error whose message contains the substring. */
#define assert_error_contains(ctx, needle)                                                    \
    do {                                                                                      \
        const char *e_ = rl_ctx_error(ctx);                                                   \
        assert_non_null(e_);                                                                  \
        if (!strstr(e_, needle)) fail_msg("error '%s' does not mention '%s'", e_, needle);    \
    } while (0)

/* The context holds no error. */
#define assert_ok(ctx)                                                                        \
    do {                                                                                      \
        if (rl_ctx_error(ctx)) fail_msg("unexpected error: %s", rl_ctx_error(ctx));           \
    } while (0)

static inline int rl_test_setup_ctx(void **state) {
    rl_ctx *ctx = rl_ctx_new("cpu");
    *state = ctx;
    return ctx ? 0 : -1;
}

static inline int rl_test_teardown_ctx(void **state) {
    rl_ctx_free(*state);
    return 0;
}

/* got equals want within tol, relative to max(1, |want|). */
static inline void rl_test_assert_close(double got, double want, double tol, const char *what) {
    double err = fabs(got - want) / fmax(1.0, fabs(want));
    if (!(err <= tol)) fail_msg("%s: got %.17g, want %.17g (rel err %.3g > %.3g)", what, got, want, err, tol);
}

/* log(sigmoid(x)), stable for large |x|. */
static inline double rl_test_logsig(double x) { return fmin(x, 0) - log1p(exp(-fabs(x))); }

/* x clamped to [lo, hi]. */
static inline double rl_test_clamp(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

/* Writes text to path (replacing it); a failed write fails the test. */
static inline void rl_test_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

/* A file's whole content, NUL-terminated (malloc'ed), or NULL if it can't be opened. */
static inline char *rl_test_read_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    assert_non_null(s);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

#ifdef RLHF_DOT
/* Fails (never skips) when Graphviz is missing: the picture tests need the real dot. */
static inline void rl_test_require_dot(void) {
    const char *dot = RLHF_DOT;
    if (!dot[0] || strstr(dot, "NOTFOUND") || access(dot, X_OK) != 0)
        fail_msg("Graphviz `dot` was not found (RLHF_DOT='%s'): install graphviz (e.g. "
                 "apt-get install graphviz) and re-run cmake; the picture tests need it",
                 dot);
}
#endif

#endif
