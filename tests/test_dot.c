/* tests/test_dot.c - the Graphviz picture of the tape (engine/rl_dot.h): the
 * DOT text is rendered by the real `dot -Tsvg` and the SVG is read back to
 * count node boxes, their styles and edges, and to check escaping.
 * Graphviz is required: without `dot` these tests fail (install graphviz).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rl_test.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rl_dot.h"
#include "rl_ops.h"

#ifndef RLHF_DOT
#define RLHF_DOT ""
#endif
#ifndef RLHF_TEST_TMP
#define RLHF_TEST_TMP "/tmp"
#endif

/* ---- helpers ---------------------------------------------------------------- */

static void tmp_path(char *buf, size_t n, const char *tag, const char *ext) {
    snprintf(buf, n, "%s/test_dot_%s.%s", RLHF_TEST_TMP, tag, ext);
}

/* Writes the tape to <tmp>/test_dot_<tag>.dot, renders it with dot -Tsvg and
 * returns the SVG text (malloc'd). dot must succeed without a warning. */
static char *render(rl_ctx *ctx, const rl_dot_opts *opts, const char *tag) {
    rl_test_require_dot();
    char dotf[512], svgf[512], errf[512], cmd[2048];
    tmp_path(dotf, sizeof dotf, tag, "dot");
    tmp_path(svgf, sizeof svgf, tag, "svg");
    tmp_path(errf, sizeof errf, tag, "err");
    FILE *f = fopen(dotf, "w");
    assert_non_null(f);
    assert_int_equal(rl_dot_write(ctx, f, opts), RL_OK);
    assert_int_equal(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "'%s' -Tsvg -o '%s' '%s' 2>'%s'", RLHF_DOT, svgf, dotf, errf);
    int rc = system(cmd);
    char *err = rl_test_read_file(errf);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
        fail_msg("`%s` failed (status %d): %s", cmd, rc, err ? err : "");
    if (err && err[0]) fail_msg("dot printed warnings for %s: %s", dotf, err);
    free(err);
    char *svg = rl_test_read_file(svgf);
    assert_non_null(svg);
    if (!(strncmp(svg, "<?xml", 5) == 0 || strncmp(svg, "<svg", 4) == 0))
        fail_msg("%s does not start like an SVG file", svgf);
    assert_non_null(strstr(svg, "</svg>"));
    unlink(errf);
    unlink(svgf);
    unlink(dotf);
    return svg;
}

static int count_str(const char *s, const char *needle) {
    int n = 0;
    for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle)) n++;
    return n;
}

/* Node groups (`<g id="nodeN" class="node">` ... `</g>`) whose text contains
 * every one of the given attributes (none: all node groups). */
static int svg_nodes(const char *svg, const char *attr1, const char *attr2) {
    int n = 0;
    for (const char *p = strstr(svg, "class=\"node\""); p; p = strstr(p + 1, "class=\"node\"")) {
        const char *end = strstr(p, "</g>");
        assert_non_null(end);
        size_t len = (size_t)(end - p);
        char *g = strndup(p, len);
        if ((!attr1 || strstr(g, attr1)) && (!attr2 || strstr(g, attr2))) n++;
        free(g);
    }
    /* every node group is opened the way Graphviz documents it */
    assert_int_equal(count_str(svg, "<g id=\"node"), count_str(svg, "class=\"node\""));
    return n;
}

#define FILL(c) "fill=\"" c "\""
#define STROKE(c) "stroke=\"" c "\""

/* What the picture should hold, worked out from the tape here, independently
 * of dot.c: drawn ops, leaves (inputs that no drawn op produced, by pointer)
 * and tensors carrying a gradient. */
typedef struct expect {
    int fwd, bwd, leaves, params, data, with_grad, edges;
} expect;

static expect expect_from_tape(rl_ctx *ctx, int skip_backward) {
    expect e = {0};
    int n = rl_ctx_tape_len(ctx);
    const rl_tensor *seen[512];
    int n_seen = 0;
    for (int i = 0; i < n; i++) {
        const rl_node *nd = rl_ctx_node(ctx, i);
        if (skip_backward && nd->backward) continue;
        if (nd->backward) e.bwd++; else e.fwd++;
        if (nd->out->grad) e.with_grad++;
        e.edges += nd->n_in;
        for (int j = 0; j < nd->n_in; j++) {
            const rl_tensor *t = nd->in[j];
            bool produced = false, dup = false;
            for (int k = 0; k < n; k++) {
                const rl_node *m = rl_ctx_node(ctx, k);
                if (m->out == t && !(skip_backward && m->backward)) produced = true;
            }
            for (int k = 0; k < n_seen; k++) dup |= seen[k] == t;
            if (produced || dup) continue;
            assert_true(n_seen < 512);
            seen[n_seen++] = t;
            e.leaves++;
            if (t->flags & RL_TF_PARAM) e.params++;
            else e.data++;
            if (t->grad) e.with_grad++;
        }
    }
    return e;
}

static void check_picture(const char *svg, expect e, int title_backward_cluster) {
    assert_int_equal(svg_nodes(svg, NULL, NULL), e.fwd + e.bwd + e.leaves);
    assert_int_equal(svg_nodes(svg, FILL(RL_DOT_FILL_OP), NULL), e.fwd);
    assert_int_equal(svg_nodes(svg, FILL(RL_DOT_FILL_BACKWARD), "stroke-dasharray"), e.bwd);
    assert_int_equal(svg_nodes(svg, FILL(RL_DOT_FILL_BACKWARD), NULL), e.bwd);
    assert_int_equal(svg_nodes(svg, FILL(RL_DOT_FILL_PARAM), NULL), e.params);
    assert_int_equal(svg_nodes(svg, FILL(RL_DOT_FILL_DATA), NULL), e.data);
    assert_int_equal(svg_nodes(svg, STROKE(RL_DOT_BORDER_GRAD), NULL), e.with_grad);
    /* forward ops are drawn solid */
    assert_int_equal(svg_nodes(svg, FILL(RL_DOT_FILL_OP), "stroke-dasharray"), 0);
    assert_int_equal(count_str(svg, "class=\"edge\""), e.edges);
    assert_int_equal(count_str(svg, "<title>cluster_backward</title>"), title_backward_cluster);
}

/* x * w + b -> sigmoid -> exp, all [2, 3]: elementwise only, no broadcasting,
 * so its backward needs no reduction. */
typedef struct small_graph {
    rl_tensor *w, *b, *x, *out;
} small_graph;

static small_graph build_small(rl_ctx *ctx) {
    small_graph g;
    int64_t shape[2] = {2, 3};
    double xv[6] = {0.5, -1, 2, 0.25, 1.5, -0.75};
    g.w = rl_param_new(ctx, RL_F64, 2, shape, "w");
    g.b = rl_param_new(ctx, RL_F64, 2, shape, "b");
    rl_tensor_fill(ctx, g.w, 0.3);
    g.x = rl_const(ctx, RL_F64, 2, shape, xv);
    rl_tensor_set_name(g.x, "x");
    rl_tensor *h = rl_mul(ctx, g.x, g.w);
    rl_tensor *z = rl_add(ctx, h, g.b);
    rl_tensor *s = rl_sigmoid(ctx, z);
    g.out = rl_exp(ctx, s);
    assert_non_null(g.out);
    rl_tensor_set_name(g.out, "out");
    return g;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_forward_picture(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    small_graph g = build_small(ctx);
    assert_int_equal(rl_ctx_tape_len(ctx), 4);
    rl_dot_opts opts = {.title = "step 1 <loss> & \"friends\""};
    char *svg = render(ctx, &opts, "forward");
    /* by construction: 4 ops (mul, add, sigmoid, exp) + 3 leaves (x, w, b) */
    assert_int_equal(svg_nodes(svg, NULL, NULL), 7);
    expect e = {.fwd = 4, .leaves = 3, .params = 2, .data = 1, .with_grad = 2, .edges = 6};
    check_picture(svg, e, 0);
    /* the tape-derived expectation agrees with the one by construction */
    expect t = expect_from_tape(ctx, 0);
    assert_memory_equal(&t, &e, sizeof e);
    /* labels: unnamed ops are "<op>#<index>", named outputs keep their name,
     * symbols come from the op table (UTF-8), shapes and gradients are shown */
    assert_non_null(strstr(svg, ">mul#0<"));
    assert_non_null(strstr(svg, ">add#1<"));
    assert_non_null(strstr(svg, ">out<"));
    assert_non_null(strstr(svg, ">σ<"));
    assert_non_null(strstr(svg, ">exp<"));
    assert_non_null(strstr(svg, ">param<"));
    assert_non_null(strstr(svg, ">const<"));
    assert_int_equal(count_str(svg, ">f64 [2, 3]<"), 7);
    assert_int_equal(count_str(svg, ">grad f64 [2, 3]<"), 2);
    assert_non_null(strstr(svg, "step 1 &lt;loss&gt; &amp; &quot;friends&quot;"));
    free(svg);
    rl_ctx_reset(ctx);
    rl_tensor_free(ctx, g.w);
    rl_tensor_free(ctx, g.b);
    rl_ctx_free(ctx);
}

static void test_backward_picture(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    small_graph g = build_small(ctx);
    rl_ctx_set_create_graph(ctx, 1);
    rl_tensor *seed = rl_full(ctx, RL_F64, 2, g.out->shape, 1.0);
    assert_int_equal(rl_backward_seeded(ctx, g.out, seed), RL_OK);
    int n = rl_ctx_tape_len(ctx);
    assert_true(n > 4);

    expect all = expect_from_tape(ctx, 0);
    assert_int_equal(all.fwd, 4);
    assert_int_equal(all.bwd, n - 4);
    assert_true(all.bwd > 0);
    char *svg = render(ctx, NULL, "backward");
    check_picture(svg, all, 1);
    /* the backward cluster is labelled */
    assert_non_null(strstr(svg, ">backward<"));
    free(svg);

    /* without backward ops: the forward picture again, with the gradients
     * the backward left on the op outputs shown */
    expect fwd = expect_from_tape(ctx, 1);
    assert_int_equal(fwd.fwd + fwd.leaves, 7);
    assert_int_equal(fwd.bwd, 0);
    assert_int_equal(fwd.with_grad, 2 + 4);
    rl_dot_opts opts = {.skip_backward = 1};
    svg = render(ctx, &opts, "skip_backward");
    check_picture(svg, fwd, 0);
    free(svg);

    rl_ctx_reset(ctx);
    rl_tensor_free(ctx, g.w);
    rl_tensor_free(ctx, g.b);
    rl_ctx_free(ctx);
}

/* The example of the brief: loss = mean(sigmoid(x @ w + b)) with b broadcast
 * over the rows, forward then backward with create_graph. */
static void test_matmul_mean_picture(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    rl_tensor *w = rl_param_new(ctx, RL_F32, 2, (int64_t[]){3, 2}, "w");
    rl_tensor *b = rl_param_new(ctx, RL_F32, 1, (int64_t[]){2}, "b");
    rl_tensor_fill(ctx, w, 0.1);
    rl_tensor *x = rl_full(ctx, RL_F32, 2, (int64_t[]){4, 3}, 0.5);
    rl_tensor_set_name(x, "x");
    rl_tensor *loss = rl_mean(ctx, rl_sigmoid(ctx, rl_add(ctx, rl_matmul(ctx, x, w, 0, 0), b)),
                              RL_AXIS_ALL, 0);
    assert_non_null(loss);
    rl_tensor_set_name(loss, "loss");
    assert_int_equal(rl_ctx_tape_len(ctx), 4);

    char *svg = render(ctx, &(rl_dot_opts){.title = "mean(σ(x @ w + b))"}, "matmul_fwd");
    /* by construction: matmul, add, sigmoid, mean + x, w, b */
    expect e = {.fwd = 4, .leaves = 3, .params = 2, .data = 1, .with_grad = 2, .edges = 6};
    check_picture(svg, e, 0);
    assert_non_null(strstr(svg, ">@<"));
    assert_non_null(strstr(svg, ">mean<"));
    assert_non_null(strstr(svg, ">f32 [4, 2]<"));  /* x @ w */
    assert_non_null(strstr(svg, ">f32 []<"));      /* the scalar loss */
    assert_non_null(strstr(svg, ">loss<"));
    free(svg);

    rl_ctx_set_create_graph(ctx, 1);
    assert_int_equal(rl_backward(ctx, loss), RL_OK);
    expect all = expect_from_tape(ctx, 0);
    assert_int_equal(all.fwd, 4);
    assert_true(all.bwd > 0);
    assert_int_equal(all.bwd, rl_ctx_tape_len(ctx) - 4);
    svg = render(ctx, NULL, "matmul_bwd");
    check_picture(svg, all, 1);
    free(svg);

    rl_ctx_reset(ctx);
    rl_tensor_free(ctx, w);
    rl_tensor_free(ctx, b);
    rl_ctx_free(ctx);
}

/* Names and symbols with characters special to DOT records, entities and
 * invalid UTF-8 render as written (or as '?') and do not break the label
 * into extra fields. */
static void test_escaping(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    int64_t shape[1] = {2};
    rl_tensor *a = rl_param_new(ctx, RL_F32, 1, shape, "w|<{\"q\"}>\\&amp;");
    rl_tensor *b = rl_param_new(ctx, RL_F32, 1, shape, "σ-gate");
    rl_tensor *c = rl_param_new(ctx, RL_F32, 1, shape, "bad\xff\xc3\t");
    rl_tensor *d = rl_param_new(ctx, RL_F32, 1, shape, "d");
    rl_tensor *s = rl_add(ctx, a, b);
    rl_tensor *m = rl_abs(ctx, rl_sub(ctx, s, c)); /* symbol "|x|" */
    rl_tensor *l = rl_le(ctx, m, d);               /* no gradient: not recorded */
    rl_tensor *r = rl_mul(ctx, m, l);              /* l is a leaf of kind "value" */
    assert_non_null(r);
    assert_int_equal(rl_ctx_tape_len(ctx), 4);
    char *svg = render(ctx, NULL, "escaping");
    expect e = expect_from_tape(ctx, 0);
    assert_int_equal(e.leaves, 4); /* a, b, c, l (d only feeds the unrecorded le) */
    check_picture(svg, e, 0);
    assert_non_null(strstr(svg, ">w|&lt;{&quot;q&quot;}&gt;\\&amp;amp;<"));
    assert_non_null(strstr(svg, ">σ&#45;gate<"));
    assert_non_null(strstr(svg, ">bad\?\?\?<"));
    assert_non_null(strstr(svg, ">|x|<"));
    assert_non_null(strstr(svg, ">value<"));
    assert_non_null(strstr(svg, ">value l3<")); /* unnamed leaf: kind and leaf number */
    /* one text per record field (3 per op, 4 per param with its grad line, 3 for
     * the value) and one per operand label of the 3 binary ops: escaped
     * characters did not split or merge fields */
    assert_int_equal(count_str(svg, "<text "), 4 * 3 + 3 * 4 + 3 + 3 * 2);
    free(svg);
    rl_ctx_reset(ctx);
    rl_tensor_free(ctx, a);
    rl_tensor_free(ctx, b);
    rl_tensor_free(ctx, c);
    rl_tensor_free(ctx, d);
    rl_ctx_free(ctx);
}

/* The one DOT escaper, byte by byte, in each of its three kinds. */
static char *escaped(const char *s, size_t n, rl_dot_text kind) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    rl_dot_put_text(f, s, n, kind);
    assert_int_equal(fclose(f), 0);
    return buf;
}

static void test_text_escaper(void **state) {
    (void)state;
    static const struct {
        rl_dot_text kind;
        const char *in, *out;
    } cases[] = {
        {RL_DOT_TEXT_QUOTED, "a\"b\\c", "a\\\"b\\\\c"},
        {RL_DOT_TEXT_QUOTED, "x|<y>{z}", "x|<y>{z}"},
        {RL_DOT_TEXT_QUOTED, "&amp;", "&amp;amp;"},
        {RL_DOT_TEXT_RECORD, "x|<y>{z}", "x\\|\\<y\\>\\{z\\}"},
        {RL_DOT_TEXT_RECORD, "\"&", "\\\"&amp;"},
        {RL_DOT_TEXT_HTML, "a<b>&\"c\\", "a&lt;b&gt;&amp;&quot;c\\"},
        {RL_DOT_TEXT_HTML, "{|}", "{|}"},
        /* control bytes, DEL, a lone continuation byte, an overlong, a surrogate, a cut sequence */
        {RL_DOT_TEXT_QUOTED, "t\tn\n\x7f", "t?n??"},
        {RL_DOT_TEXT_HTML, "\x80\xc0\xaf\xed\xa0\x80\xe2\x82", "????????"},
        /* valid UTF-8 of each length passes unchanged */
        {RL_DOT_TEXT_RECORD, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x82", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x99\x82"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = escaped(cases[i].in, strlen(cases[i].in), cases[i].kind);
        if (strcmp(got, cases[i].out) != 0)
            fail_msg("case %zu (kind %d): '%s' escaped to '%s', expected '%s'", i, (int)cases[i].kind, cases[i].in, got,
                     cases[i].out);
        free(got);
    }
    /* n bounds the input, and a character cut by the bound becomes '?' */
    char *got = escaped("ab\xc3\xa9" "cd", 3, RL_DOT_TEXT_QUOTED);
    assert_string_equal(got, "ab?");
    free(got);
}

static void test_empty_tape(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    char *svg = render(ctx, NULL, "empty");
    assert_int_equal(svg_nodes(svg, NULL, NULL), 0);
    free(svg);
    rl_ctx_free(ctx);
}

static void test_write_file(void **state) {
    (void)state;
    rl_ctx *ctx = rl_ctx_new(NULL);
    small_graph g = build_small(ctx);
    char path[512];
    tmp_path(path, sizeof path, "file", "dot");
    unlink(path);
    assert_int_equal(rl_dot_write_file(ctx, path, NULL), RL_OK);
    char *text = rl_test_read_file(path);
    assert_non_null(text);
    assert_int_equal(strncmp(text, "digraph", 7), 0);
    assert_non_null(strstr(text, "}\n"));
    free(text);
    /* no temporary file is left behind */
    DIR *dir = opendir(RLHF_TEST_TMP);
    assert_non_null(dir);
    for (struct dirent *de; (de = readdir(dir));)
        if (strncmp(de->d_name, "test_dot_file.dot.tmp", 21) == 0) fail_msg("left behind: %s", de->d_name);
    closedir(dir);
    unlink(path);

    /* a directory that does not exist */
    assert_int_equal(rl_dot_write_file(ctx, "/nonexistent-rlhf-dir/x.dot", NULL), RL_ERR_IO);
    assert_non_null(strstr(rl_ctx_error(ctx), "/nonexistent-rlhf-dir/x.dot"));
    rl_ctx_clear_error(ctx);
    assert_int_equal(rl_dot_write(ctx, NULL, NULL), RL_ERR_ARG);
    assert_non_null(strstr(rl_ctx_error(ctx), "FILE is NULL"));
    rl_ctx_clear_error(ctx);
    rl_ctx_reset(ctx);
    rl_tensor_free(ctx, g.w);
    rl_tensor_free(ctx, g.b);
    rl_ctx_free(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_forward_picture),
        cmocka_unit_test(test_backward_picture),
        cmocka_unit_test(test_matmul_mean_picture),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_text_escaper),
        cmocka_unit_test(test_empty_tape),
        cmocka_unit_test(test_write_file),
    };
    return cmocka_run_group_tests_name("dot pictures", tests, NULL, NULL);
}
