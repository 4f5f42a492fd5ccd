/* tests/test_graph.c - `rlhf graph` (recipes/views/graph.c, tools/cmd_graph.c):
 * recipes are drawn, rendered by the real `dot -Tsvg`, and the SVG is read
 * back: boxes counted by their class (one per expression, model call, input,
 * param), clusters (rollout, loss, models), dashed stop() edges, the loss
 * highlighted, --backward's gradient edges, --expand's ops; and the errors
 * of the command line (bad extension, missing recipe, missing Graphviz).
 * Graphviz is required: without `dot` these tests fail (install graphviz).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rl_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rl_recipe.h"
#include "rl_recipe_bind.h"
#include "rl_recipe_graph.h"
#include "rl_test_recipe.h"

/* the command itself, to test its arguments and messages in-process */
#include "cli.h"

#ifndef RLHF_DOT
#define RLHF_DOT ""
#endif
#ifndef RLHF_TEST_TMP
#define RLHF_TEST_TMP "/tmp"
#endif

static int setup(void **state) {
    if (RLHF_DOT[0]) setenv("RLHF_DOT", RLHF_DOT, 1);
    return rl_test_ctx_setup(state);
}

/* ---- helpers -------------------------------------------------------------------------- */

static int count(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

static void tmp_path(char *buf, size_t n, const char *tag, const char *ext) {
    snprintf(buf, n, "%s/test_graph_%s.%s", RLHF_TEST_TMP, tag, ext);
}

/* pictures load no plug-ins */
static rl_recipe_program *compile_src(rl_recipe *r) { return rl_test_must_compile(r, RL_F32, false); }

/* Draws p into <tmp>/test_graph_<tag>.dot with rl_recipe_graph_save, renders
 * it with dot -Tsvg (which must not warn) and returns the SVG (malloc'd). */
static char *render(const rl_recipe_program *p, const rl_recipe_graph_opts *o, const char *tag) {
    rl_test_require_dot();
    char dotf[512], svgf[512], errf[512], cmd[2048], err[1024];
    tmp_path(dotf, sizeof dotf, tag, "dot");
    tmp_path(svgf, sizeof svgf, tag, "svg");
    tmp_path(errf, sizeof errf, tag, "err");
    if (rl_recipe_graph_save(p, dotf, o, err, sizeof err) != RL_OK) fail_msg("graph_save: %s", err);
    snprintf(cmd, sizeof cmd, "'%s' -Tsvg -o '%s' '%s' 2>'%s'", RLHF_DOT, svgf, dotf, errf);
    int rc = system(cmd);
    char *msg = rl_test_read_file(errf);
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0) fail_msg("`%s` failed: %s", cmd, msg ? msg : "");
    if (msg && msg[0]) fail_msg("dot printed warnings for %s: %s", dotf, msg);
    free(msg);
    char *svg = rl_test_read_file(svgf);
    assert_non_null(svg);
    if (!(strncmp(svg, "<?xml", 5) == 0 || strncmp(svg, "<svg", 4) == 0)) fail_msg("%s is not SVG", svgf);
    assert_non_null(strstr(svg, "</svg>"));
    return svg;
}

static char *render_file(const char *path, const rl_recipe_graph_opts *o, const char *tag) {
    const char *why = NULL;
    rl_recipe *r = rl_recipe_load(path, &why);
    if (!r) fail_msg("cannot read %s: %s", path, why);
    rl_recipe_program *p = compile_src(r);
    char *svg = render(p, o, tag);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_ctx_reset(g_ctx);
    return svg;
}

static char *render_src(const char *src, const rl_recipe_graph_opts *o, const char *tag) {
    rl_recipe *r = rl_recipe_parse(src, strlen(src), "t.recipe");
    rl_recipe_program *p = compile_src(r);
    char *svg = render(p, o, tag);
    rl_recipe_program_free(p);
    rl_recipe_free(r);
    rl_ctx_reset(g_ctx);
    return svg;
}

/* Boxes and clusters by their SVG class. */
#define NODES(svg, cls) count(svg, "class=\"node " cls "\"")
#define CLUSTERS(svg, cls) count(svg, "class=\"cluster " cls "\"")
#define EDGES(svg, cls) count(svg, "class=\"edge" cls "\"")

/* The SVG group of the first node of class cls (up to its </g>), malloc'd. */
static char *node_group(const char *svg, const char *cls) {
    char key[64];
    snprintf(key, sizeof key, "class=\"node %s\"", cls);
    const char *a = strstr(svg, key);
    assert_non_null(a);
    const char *b = strstr(a, "</g>");
    assert_non_null(b);
    return strndup(a, (size_t)(b - a));
}

#define DPO RLHF_SOURCE_DIR "/recipes/dpo.recipe"

/* An online recipe shaped like Safe RLHF: six models, a Lagrange multiplier
 * behind stop(), rollout and loss blocks. */
static const char *const SAFE =
    "recipe safe : online\n"
    "input prompts : tokens\n"
    "model policy : lm trainable\nmodel ref : lm frozen\nmodel reward : score frozen\n"
    "model cost : score frozen\nmodel vr : value trainable\nmodel vc : value trainable\n"
    "hyper beta = 0.01, clip = 0.2, threshold = 0.0, gamma = 1.0, lam = 0.95\n"
    "param log_lambda = 0.0 : sgd(lr = 0.1), max = log(5)\n"
    "fn value_loss(v, s, ret) = masked_mean(square(values(v, s) - ret), s.mask) / 2\n"
    "rollout {\n"
    "  seq = generate(policy, prompts, max_new = 4)\n"
    "  lp0 = token_logprobs(policy, seq)\n"
    "  lpref = token_logprobs(ref, seq)\n"
    "  r = -beta * (lp0 - lpref) + at_end(end_score(reward, seq), seq)\n"
    "  c = beta * (lp0 - lpref) + at_end(end_score(cost, seq), seq)\n"
    "  adv_r, ret_r = gae(r, values(vr, seq), seq.mask, gamma, lam)\n"
    "  adv_c, ret_c = gae(c, values(vc, seq), seq.mask, gamma, lam)\n"
    "  jc = window_mean(mean(end_score(cost, seq)), 128)\n"
    "}\n"
    "loss {\n"
    "  l = stop(exp(log_lambda))\n"
    "  adv = (adv_r - l * adv_c) / (1 + l)\n"
    "  ratio = exp(token_logprobs(policy, seq) - lp0)\n"
    "  loss = masked_mean(-min(ratio * adv, clamp(ratio, 1 - clip, 1 + clip) * adv), seq.mask)\n"
    "       + value_loss(vr, seq, ret_r) + value_loss(vc, seq, ret_c)\n"
    "  loss_lambda = -exp(log_lambda) * (jc - threshold)\n"
    "}\n"
    "log lambda = exp(log_lambda), kl = masked_mean(lp0 - lpref, seq.mask), cost_now = jc\n";

/* ---- pictures --------------------------------------------------------------------------------- */

static void test_dpo_picture(void **state) {
    (void)state;
    char *svg = render_file(DPO, NULL, "dpo");
    /* one box per expression: 4 seq_sum statements and h; the loss; 3 metrics;
     * 4 model calls; 2 inputs; the hypers note and the legend */
    assert_int_equal(NODES(svg, "expr"), 5);
    assert_int_equal(NODES(svg, "loss"), 1);
    assert_int_equal(NODES(svg, "metric"), 3);
    assert_int_equal(NODES(svg, "call"), 4);
    assert_int_equal(NODES(svg, "input"), 2);
    assert_int_equal(NODES(svg, "param"), 0);
    assert_int_equal(NODES(svg, "hypers"), 1);
    assert_int_equal(NODES(svg, "legend"), 1);
    assert_int_equal(count(svg, "class=\"node "), 17);
    /* a loss phase, one cluster per model; no rollout */
    assert_int_equal(CLUSTERS(svg, "phase loss"), 1);
    assert_int_equal(CLUSTERS(svg, "phase rollout"), 0);
    assert_int_equal(CLUSTERS(svg, "model trainable"), 1);
    assert_int_equal(CLUSTERS(svg, "model frozen"), 1);
    /* no stop(), and without --backward no gradient edges */
    assert_int_equal(EDGES(svg, " stop"), 0);
    assert_int_equal(EDGES(svg, " grad"), 0);
    /* labels: source text, escaped, and symbolic shapes */
    assert_non_null(strstr(svg, "lp_w"));
    assert_non_null(strstr(svg, "seq_sum(token_logprobs(policy,"));
    assert_non_null(strstr(svg, "mean(h &gt; 0)"));
    assert_non_null(strstr(svg, "f32[B,T]"));
    assert_non_null(strstr(svg, "f32[B]"));
    assert_non_null(strstr(svg, "beta = 0.1"));
    /* the loss: red, with a double border (two outlines) */
    char *loss = node_group(svg, "loss");
    assert_non_null(strstr(loss, "fill=\"" RL_GRAPH_FILL_LOSS "\""));
    assert_int_equal(count(loss, "stroke=\"" RL_GRAPH_COLOR_LOSS "\""), 2);
    assert_non_null(strstr(loss, "font-weight=\"bold\""));
    free(loss);
    /* data inputs grey, the policy's cluster in the trainable colour */
    char *in = node_group(svg, "input");
    assert_non_null(strstr(in, "fill=\"" RL_GRAPH_FILL_DATA "\""));
    free(in);
    assert_non_null(strstr(svg, "fill=\"" RL_GRAPH_FILL_TRAINABLE "\""));
    assert_non_null(strstr(svg, "fill=\"" RL_GRAPH_FILL_FROZEN "\""));
    free(svg);
}

static void test_online_picture(void **state) {
    (void)state;
    char *svg = render_src(SAFE, NULL, "safe");
    assert_int_equal(CLUSTERS(svg, "phase rollout"), 1);
    assert_int_equal(CLUSTERS(svg, "phase loss"), 1);
    /* models per phase: rollout policy ref reward cost vr vc; loss policy vr vc */
    assert_int_equal(CLUSTERS(svg, "model trainable"), 6);
    assert_int_equal(CLUSTERS(svg, "model frozen"), 3);
    /* statements: r c adv_r,ret_r adv_c,ret_c jc | l adv ratio; model calls:
     * seq lp0 lpref end_score x3 values x2 | token_logprobs values x2 */
    assert_int_equal(NODES(svg, "expr"), 8);
    assert_int_equal(NODES(svg, "call"), 11);
    assert_int_equal(NODES(svg, "loss"), 2);
    /* lambda and kl; cost_now only names jc: a note on jc's box */
    assert_int_equal(NODES(svg, "metric"), 2);
    assert_non_null(strstr(svg, ">log cost_now</text>"));
    assert_int_equal(CLUSTERS(svg, "log"), 1);
    /* the rollout values the loss phase reads, drawn again there (dashed):
     * seq, lp0, lpref, adv_r/ret_r, adv_c/ret_c, jc */
    assert_int_equal(NODES(svg, "kept"), 6);
    assert_int_equal(EDGES(svg, " kept"), 6);
    assert_int_equal(NODES(svg, "param"), 1);
    assert_int_equal(NODES(svg, "input"), 1);
    char *par = node_group(svg, "param");
    assert_non_null(strstr(par, "fill=\"" RL_GRAPH_FILL_PARAM "\""));
    free(par);
    /* the multiplier reaches l only through stop(): one dashed edge */
    assert_int_equal(EDGES(svg, " stop"), 1);
    /* a tuple's members are named on their edges; token fields too */
    assert_non_null(strstr(svg, ">ret_r</text>"));
    assert_non_null(strstr(svg, ">.mask</text>"));
    assert_non_null(strstr(svg, "i32[B,T_seq]"));
    free(svg);
    /* the same with stop() in loss_lambda too */
    char src[4096];
    const char *at = strstr(SAFE, "* (jc - threshold)");
    assert_non_null(at);
    snprintf(src, sizeof src, "%.*s* stop(jc - threshold)%s", (int)(at - SAFE), SAFE, at + 18);
    svg = render_src(src, NULL, "safe_stop2");
    assert_int_equal(EDGES(svg, " stop"), 2);
    free(svg);
    /* an input read in the loss phase is kept from the rollout as well */
    svg = render_src("recipe on : online\ninput prompts : tokens\ninput demos : tokens[Bd, Td]\n"
                     "model policy : lm trainable\nrollout {\n  seq = generate(policy, prompts, max_new = 2)\n}\n"
                     "loss = -masked_mean(token_logprobs(policy, seq), seq.mask)\n"
                     "     - masked_mean(token_logprobs(policy, demos), demos.mask)\n",
                     NULL, "online_input");
    assert_int_equal(NODES(svg, "kept"), 2);
    char *kept = strstr(svg, "class=\"node kept\"");
    assert_non_null(kept);
    assert_true(strstr(kept, ">demos</text>") || strstr(strstr(kept + 1, "class=\"node kept\""), ">demos</text>"));
    free(svg);
}

static void test_backward_edges(void **state) {
    (void)state;
    rl_recipe_graph_opts o = {.backward = 1};
    char *svg = render_file(DPO, &o, "dpo_backward");
    /* the gradient of loss flows back h -> lp_w, lp_l -> the two policy calls */
    assert_int_equal(EDGES(svg, " grad"), 5);
    assert_int_equal(count(svg, "class=\"edge\""), 22); /* the forward edges are all still there */
    /* the calls through which it enters the policy get the loss's colour */
    assert_int_equal(count(svg, "stroke=\"" RL_GRAPH_COLOR_LOSS "\""), 2 + 2 + 2 * 5);
    free(svg);
    svg = render_src(SAFE, &o, "safe_backward");
    /* loss: ratio <- the policy's call, loss <- ratio and the two value calls;
     * loss_lambda <- log_lambda, in its own colour. adv carries none: its
     * inputs are rollout values and stop(exp(log_lambda)). */
    assert_int_equal(EDGES(svg, " grad"), 5);
    assert_non_null(strstr(svg, "stroke=\"#9467bd\"")); /* the second loss's colour */
    assert_non_null(strstr(svg, "∂loss_lambda"));
    free(svg);
}

static void test_expand(void **state) {
    (void)state;
    rl_recipe_graph_opts o = {.expand = 1};
    char *svg = render_file(DPO, &o, "dpo_expand");
    /* each of the 4 calls becomes a cluster of the GPT-2 ops it ran */
    assert_int_equal(NODES(svg, "call"), 0);
    assert_int_equal(CLUSTERS(svg, "expanded"), 4);
    int ops = NODES(svg, "op");
    assert_true(ops >= 4 * 30);
    assert_int_equal(ops % 4, 0);
    assert_non_null(strstr(svg, "h.1.attn.c_attn.weight")); /* weights folded into op labels */
    assert_non_null(strstr(svg, ">LN</text>"));
    /* the rest of the picture is unchanged */
    assert_int_equal(NODES(svg, "expr"), 5);
    assert_int_equal(NODES(svg, "loss"), 1);
    free(svg);
    /* generate has no tape to show: it stays one box, with a note */
    svg = render_src(SAFE, &o, "safe_expand");
    assert_int_equal(NODES(svg, "call"), 1);
    assert_non_null(strstr(svg, "a sampling loop (no gradient): not expanded"));
    assert_int_equal(CLUSTERS(svg, "expanded"), 10);
    free(svg);
}

/* Names and text that need escaping survive into valid SVG. */
static void test_escaping(void **state) {
    (void)state;
    char *svg = render_src("recipe esc : fullbatch\n"
                           "param w : f32[3] = 0.5 : sgd(lr = 0.1)\n"
                           "hyper kind = \"k1\", big = 1e30\n"
                           "d = w - 0.25   # a comment < & > that must not show\n"
                           "loss = mean(kl(d, kind = kind)) + mean(d * (d < 1)) + mean(d * (d >= 0.5))\n"
                           "log very_long_metric_name_for_wrapping = mean(w * w + w * w + w * w + w * w + w * w + "
                           "w * w + w * w + w * w + w * w + w * w + w * w + w * w + w * w + w)\n",
                           NULL, "esc");
    assert_non_null(strstr(svg, "d &lt; 1"));
    assert_non_null(strstr(svg, "d &gt;= 0.5"));
    assert_non_null(strstr(svg, "kind = &quot;k1&quot;"));
    assert_null(strstr(svg, "a comment"));
    assert_non_null(strstr(svg, "…")); /* the long metric is cut */
    free(svg);
}

/* ---- files and the command line --------------------------------------------------------------- */

/* Runs rl_cmd_graph with stderr captured; returns its exit code. */
static int run_cmd(int argc, const char **argv, char *err, size_t n) {
    char errf[512];
    tmp_path(errf, sizeof errf, "cmd", "err");
    fflush(stderr);
    int saved = dup(2);
    int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0 && saved >= 0);
    dup2(fd, 2);
    close(fd);
    int rc = rl_cmd_graph(argc, (char **)argv);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char *s = rl_test_read_file(errf);
    snprintf(err, n, "%s", s ? s : "");
    free(s);
    return rc;
}

/* No temporary file is left next to the output. */
static void assert_no_temps(void) {
    DIR *d = opendir(RLHF_TEST_TMP);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, "test_graph_", 11) == 0 && strstr(e->d_name, ".tmp."))
            fail_msg("temporary file left behind: %s", e->d_name);
    closedir(d);
}

static void test_command_line(void **state) {
    (void)state;
    rl_test_require_dot();
    char out[512], err[4096];
    /* svg and png through dot, dot text directly */
    const char *exts[] = {"svg", "png", "dot"};
    for (int i = 0; i < 3; i++) {
        tmp_path(out, sizeof out, "cli", exts[i]);
        unlink(out);
        const char *argv[] = {"graph", DPO, "-o", out, "--backward", "--set", "beta=0.05"};
        assert_int_equal(run_cmd(7, argv, err, sizeof err), 0);
        char *s = rl_test_read_file(out);
        assert_non_null(s);
        if (i == 0) assert_non_null(strstr(s, "</svg>"));
        if (i == 1) assert_int_equal(memcmp(s, "\x89PNG", 4), 0);
        if (i == 2) {
            assert_int_equal(strncmp(s, "digraph recipe {", 16), 0);
            assert_non_null(strstr(s, "beta = 0.05")); /* --set reached the picture */
        }
        free(s);
    }
    assert_no_temps();
    /* a bad extension */
    tmp_path(out, sizeof out, "cli", "jpg");
    const char *bad[] = {"graph", DPO, "-o", out};
    assert_int_equal(run_cmd(4, bad, err, sizeof err), 1);
    char want[1200];
    snprintf(want, sizeof want,
             "rlhf graph: cannot tell the format of '%s' from its extension '.jpg': write FILE.svg, FILE.png "
             "or FILE.dot\n",
             out);
    assert_string_equal(err, want);
    assert_int_equal(access(out, F_OK), -1);
    /* a missing recipe */
    tmp_path(out, sizeof out, "cli", "svg");
    const char *missing[] = {"graph", RLHF_TEST_TMP "/no_such.recipe", "-o", out};
    assert_int_equal(run_cmd(4, missing, err, sizeof err), 1);
    assert_string_equal(err, "rlhf graph: cannot read recipe '" RLHF_TEST_TMP
                             "/no_such.recipe': No such file or directory\n");
    /* a recipe with errors: its diagnostics, no picture */
    char rec[512];
    tmp_path(rec, sizeof rec, "broken", "recipe");
    FILE *f = fopen(rec, "w");
    assert_non_null(f);
    fputs("recipe b : fullbatch\nparam w = 0 : sgd(lr = 0.1)\nloss = mean(w * v)\n", f);
    fclose(f);
    tmp_path(out, sizeof out, "broken", "svg");
    unlink(out);
    const char *broken[] = {"graph", rec, "-o", out};
    assert_int_equal(run_cmd(4, broken, err, sizeof err), 1);
    assert_non_null(strstr(err, ":3:17: error: undefined name 'v'"));
    assert_int_equal(access(out, F_OK), -1);
    unlink(rec);
    /* usage errors */
    const char *noout[] = {"graph", DPO};
    assert_int_equal(run_cmd(2, noout, err, sizeof err), 2);
    assert_non_null(strstr(err, "give -o FILE.svg, FILE.png or FILE.dot"));
    const char *unknown[] = {"graph", DPO, "-o", out, "--expnad"};
    assert_int_equal(run_cmd(5, unknown, err, sizeof err), 2);
    assert_non_null(strstr(err, "unknown or incomplete option '--expnad'"));
    /* Graphviz missing: the package is named */
    setenv("RLHF_DOT", "/nonexistent/dot", 1);
    const char *svg[] = {"graph", DPO, "-o", out};
    assert_int_equal(run_cmd(4, svg, err, sizeof err), 1);
    assert_string_equal(err, "rlhf graph: Graphviz's `dot` was not found (RLHF_DOT=/nonexistent/dot): install "
                             "the graphviz package (apt-get install graphviz, dnf install graphviz, brew install "
                             "graphviz), or write a .dot file instead\n");
    assert_int_equal(access(out, F_OK), -1);
    assert_no_temps();
    setenv("RLHF_DOT", RLHF_DOT, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dpo_picture), cmocka_unit_test(test_online_picture),
        cmocka_unit_test(test_backward_edges), cmocka_unit_test(test_expand),
        cmocka_unit_test(test_escaping), cmocka_unit_test(test_command_line),
    };
    return cmocka_run_group_tests_name("recipe pictures (rlhf graph)", tests, setup, rl_test_ctx_teardown);
}
