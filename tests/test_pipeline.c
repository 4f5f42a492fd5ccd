/* tests/test_pipeline.c - pipelines (recipes/runner/rl_pipeline.h) end to
 * end: the main job's own pipeline file (recipes/pipelines/safe_rlhf_demo.pipeline)
 * run through rl_pipeline_run on the tiny preset with small data and few
 * steps (seconds; each step is a child process of the rlhf binary, as in
 * `rlhf pipeline`), checking that every stage's loss falls (the value loss
 * for the online stages), that every file the README promises appears
 * (checkpoints, metrics, plots, evaluations, the table, the safe_rlhf
 * picture), that a second run skips the finished steps, that bad pipeline
 * files and overrides are refused with the recipe diagnostics' format (file,
 * line, column, source line, caret, hint), and that aims are checked; and
 * the same pipeline on the Llama family with one --set. Only
 * test_command_line runs `rlhf pipeline` itself.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "rl_test.h"
#include "rl_test_dir.h"

#include "rl_pipeline.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char g_dir[1024];


static const char *P(const char *name) { return rl_test_path_in(g_dir, name); }

/* Runs `rlhf ARGS` with the output in g_dir/out.txt; returns the exit status
 * and the output (caller frees). */
static int run_rlhf(const char *args, char **output) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "cd '%s' && '%s' %s > '%s' 2>&1", RLHF_SOURCE_DIR, RLHF_BIN, args, P("out.txt"));
    int rc = system(cmd);
    *output = rl_test_read_file(P("out.txt"));
    assert_non_null(*output);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && st.st_size > 0;
}

/* Mean of `key` over the first and the last k records of a metrics.jsonl. */
static void first_last_mean(const char *path, const char *key, int k, double *first, double *last, int *n) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    double v[4096];
    int m = 0;
    char line[65536];
    while (m < 4096 && fgets(line, sizeof line, f)) {
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        json_t *x = json_object_get(j, key);
        if (json_is_number(x)) v[m++] = json_number_value(x);
        json_decref(j);
    }
    fclose(f);
    *n = m;
    assert_true(m >= 2 * k);
    *first = *last = 0;
    for (int i = 0; i < k; i++) *first += v[i] / k, *last += v[m - k + i] / k;
}

/* The tiny configuration of the main job's pipeline. */
static const char *const tiny_sets[] = {
    NULL, /* out=..., filled in */
    "preset=tiny", "threads=1", "synth_args=--n-sft 1500 --n-pairs 1500 --n-eval 30 --n-eval-pairs 120",
    "sft_steps=60", "rm_steps=80", "rm_lr=2e-3", "sft_lr=3e-3", "ppo_steps=20", "ppo_batch=16", "max_new=12",
    "critic_lr=3e-3", "grpo_steps=10", "eval=--samples 1 --max-new 12 --seed 1"};

/* Runs a loaded pipeline with its progress in g_dir/out.txt; returns the
 * result and the progress (caller frees). */
static int run_pipeline(const rl_pipeline *p, int strict, char *err, size_t n, char **output) {
    FILE *out = fopen(P("out.txt"), "w");
    assert_non_null(out);
    rl_pipeline_run_opts o = {.program = RLHF_BIN, .strict = strict, .out = out};
    int rc = rl_pipeline_run(p, &o, err, n);
    assert_int_equal(fclose(out), 0);
    *output = rl_test_read_file(P("out.txt"));
    assert_non_null(*output);
    return rc;
}

/* Loads path with the overrides; fails the test with the diagnostic if it cannot. */
static rl_pipeline *load_ok(const char *path, const char *const *sets, int n_sets) {
    char err[8192];
    rl_pipeline *p = rl_pipeline_load(path, sets, n_sets, err, sizeof err);
    if (!p) fail_msg("%s", err);
    return p;
}

/* Loads a pipeline that must be refused; returns the diagnostic. */
static const char *load_bad(const char *path, const char *const *sets, int n_sets) {
    static char err[8192];
    err[0] = 0;
    rl_pipeline *p = rl_pipeline_load(path, sets, n_sets, err, sizeof err);
    if (p) fail_msg("%s was accepted", path);
    assert_true(err[0] != 0);
    return err;
}

static void test_tiny_pipeline(void **state) {
    (void)state;
    char out_set[1100], err[8192] = "", *out = NULL;
    snprintf(out_set, sizeof out_set, "out=%s", P("run"));
    const char *sets[sizeof tiny_sets / sizeof tiny_sets[0]];
    int n_sets = (int)(sizeof tiny_sets / sizeof tiny_sets[0]);
    memcpy(sets, tiny_sets, sizeof sets);
    sets[0] = out_set;
    rl_pipeline *p = load_ok("recipes/pipelines/safe_rlhf_demo.pipeline", sets, n_sets);
    assert_string_equal(rl_pipeline_var(p, "preset"), "tiny");
    assert_string_equal(rl_pipeline_step_name(p, 0), "data");
    int rc = run_pipeline(p, 0, err, sizeof err, &out);
    if (rc != 0) print_message("%s\n%s\n", out, err);
    assert_int_equal(rc, 0);
    assert_contains(out, "== [1/");
    assert_contains(out, "aims met");
    assert_contains(out, "Safe RLHF");
    free(out);

    /* every file the main job promises */
    static const char *const files[] = {
        "run/data/sft.jsonl",          "run/data/hh_eval.jsonl",          "run/data/pku_eval.jsonl",
        "run/sft/policy/model.safetensors", "run/rm/rm/model.safetensors", "run/cm/cm/model.safetensors",
        "run/ppo_kl/policy/model.safetensors", "run/shaping/policy/model.safetensors",
        "run/safe_rlhf/policy/model.safetensors", "run/sft/metrics.png", "run/sft/metrics.svg",
        "run/rm/metrics.png",          "run/cm/metrics.png",              "run/ppo_kl/metrics.png",
        "run/shaping/metrics.png",     "run/safe_rlhf/metrics.svg",       "run/eval/sft.json",
        "run/eval/ppo_kl.json",        "run/eval/shaping.json",           "run/eval/safe_rlhf.json",
        "run/eval/rm.json",            "run/eval/cm.json",                "run/table.md",
        "run/safe_rlhf.svg",           "run/pipeline/table.done"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++)
        if (!exists(P(files[i]))) fail_msg("the pipeline did not write %s", files[i]);
    char *table = rl_test_read_file(P("run/table.md"));
    assert_non_null(table);
    assert_contains(table, "| SFT |");
    assert_contains(table, "| PPO-KL |");
    assert_contains(table, "| reward shaping |");
    assert_contains(table, "| Safe RLHF |");
    assert_contains(table, "| cost model |");
    free(table);

    /* every stage's loss falls */
    static const struct {
        const char *run, *key;
        int k; /* steps averaged at each end */
    } falls[] = {{"run/sft/metrics.jsonl", "loss", 10},
                 {"run/rm/metrics.jsonl", "loss", 10},
                 {"run/cm/metrics.jsonl", "loss", 10},
                 {"run/ppo_kl/metrics.jsonl", "loss_critic", 5},
                 {"run/shaping/metrics.jsonl", "loss_cost_critic", 5},
                 {"run/safe_rlhf/metrics.jsonl", "loss_cost_critic", 5}};
    for (size_t i = 0; i < sizeof falls / sizeof falls[0]; i++) {
        double a, b;
        int n;
        first_last_mean(P(falls[i].run), falls[i].key, falls[i].k, &a, &b, &n);
        print_message("%s %s: %.4f -> %.4f over %d steps\n", falls[i].run, falls[i].key, a, b, n);
        if (!(b < a)) fail_msg("%s: %s did not fall (%.4f -> %.4f)", falls[i].run, falls[i].key, a, b);
    }

    /* a second run skips every finished step */
    rc = run_pipeline(p, 0, err, sizeof err, &out);
    assert_int_equal(rc, 0);
    assert_contains(out, "sft: done earlier");
    assert_contains(out, "safe: done earlier");
    assert_true(strstr(out, "rlhf train") == NULL);
    assert_contains(out, "Safe RLHF"); /* the table is printed again */
    free(out);
    rl_pipeline_free(p);
}

/* The main job on the Llama family with one --set (preset=llama-tiny: GQA,
 * rotary, RMSNorm, SiLU), fewer steps: every stage runs, the checkpoints are
 * Hugging Face Llama directories, every policy is evaluated into the table. */
static void test_tiny_pipeline_llama(void **state) {
    (void)state;
    char out_set[1100], err[8192] = "", *out = NULL;
    snprintf(out_set, sizeof out_set, "out=%s", P("llama"));
    const char *sets[] = {out_set, "preset=llama-tiny", "threads=1",
                          "synth_args=--n-sft 400 --n-pairs 400 --n-eval 12 --n-eval-pairs 40", "sft_steps=30",
                          "rm_steps=20", "ppo_steps=3", "ppo_batch=8", "max_new=8", "grpo_steps=3",
                          "eval=--samples 1 --max-new 8 --seed 1"};
    rl_pipeline *p = load_ok("recipes/pipelines/safe_rlhf_demo.pipeline", sets, (int)(sizeof sets / sizeof sets[0]));
    int rc = run_pipeline(p, 0, err, sizeof err, &out);
    if (rc != 0) print_message("%s\n%s\n", out, err);
    assert_int_equal(rc, 0);
    free(out);
    static const char *const dirs[] = {"llama/sft/policy", "llama/rm/rm", "llama/cm/cm", "llama/ppo_kl/policy",
                                       "llama/safe_rlhf/policy", "llama/grpo/policy"};
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[1200];
        snprintf(path, sizeof path, "%s/config.json", P(dirs[i]));
        json_t *cj = json_load_file(path, 0, NULL);
        if (!cj) fail_msg("the pipeline did not write %s", path);
        assert_string_equal(json_string_value(json_object_get(cj, "model_type")), "llama");
        json_decref(cj);
    }
    char *table = rl_test_read_file(P("llama/table.md"));
    assert_non_null(table);
    assert_contains(table, "| Safe RLHF |");
    assert_contains(table, "| GRPO |");
    free(table);
    rl_pipeline_free(p);
}

static void test_bad_pipelines(void **state) {
    (void)state;
    char text[2048], err[8192], *out = NULL;
    rl_test_write_file(P("undef.pipeline"), "let out = x\n# comment\nstep a: info ${nope}\n");
    const char *e = load_bad(P("undef.pipeline"), NULL, 0);
    /* the recipe diagnostics' layout: place, message, the line, a caret under ${nope}, a hint */
    assert_contains(e, "undef.pipeline:3:14: error: undefined variable 'nope'\n"
                       "step a: info ${nope}\n"
                       "             ^~~~~~~\n"
                       "hint: define it above this line with `let nope = ...`\n");

    rl_test_write_file(P("noout.pipeline"), "step a: info\n");
    assert_contains(load_bad(P("noout.pipeline"), NULL, 0), "let out = DIR");

    rl_test_write_file(P("kw.pipeline"), "let out = x\n  stpe a: info\n");
    assert_contains(load_bad(P("kw.pipeline"), NULL, 0), "kw.pipeline:2:3: error: expected `let`, `step` or `aim`, got 'stpe'\n"
                                                         "  stpe a: info\n"
                                                         "  ^~~~\n");

    rl_test_write_file(P("dup.pipeline"), "let out = x\nstep a: info\nstep a: info\n");
    assert_contains(load_bad(P("dup.pipeline"), NULL, 0), "dup.pipeline:3:6: error: step 'a' is already defined at line 2");

    rl_test_write_file(P("brace.pipeline"), "let out = x\nlet y = ${out\nstep a: info\n");
    assert_contains(load_bad(P("brace.pipeline"), NULL, 0), "brace.pipeline:2:9: error: '${' without a closing '}'");

    rl_test_write_file(P("aimop.pipeline"), "let out = x\nstep a: info\naim 0.5 =< 1\n");
    assert_contains(load_bad(P("aimop.pipeline"), NULL, 0), "aimop.pipeline:3:5: error: the aim has no comparison");

    rl_test_write_file(P("nosteps.pipeline"), "let out = x\n");
    assert_contains(load_bad(P("nosteps.pipeline"), NULL, 0), "the pipeline has no steps");

    assert_contains(load_bad(P("no_such.pipeline"), NULL, 0), "no_such.pipeline: cannot open");

    const char *typo[] = {"sft_stpes=3"};
    assert_contains(load_bad("recipes/pipelines/safe_rlhf_demo.pipeline", typo, 1),
                    "--set sft_stpes: recipes/pipelines/safe_rlhf_demo.pipeline defines no such variable");
    const char *noeq[] = {"sft_steps"};
    assert_contains(load_bad("recipes/pipelines/safe_rlhf_demo.pipeline", noeq, 1), "--set expects NAME=VALUE");

    /* an override wins over the file's `let`, and later lines see it */
    const char *over[] = {"sft_steps=7"};
    rl_pipeline *p = load_ok("recipes/pipelines/safe_rlhf_demo.pipeline", over, 1);
    assert_string_equal(rl_pipeline_var(p, "sft_steps"), "7");
    int found = 0;
    for (int i = 0; i < rl_pipeline_n_steps(p); i++)
        if (strcmp(rl_pipeline_step_name(p, i), "sft") == 0) {
            assert_contains(rl_pipeline_step_command(p, i), "--steps 7 ");
            found = 1;
        }
    assert_true(found);
    rl_pipeline_run_opts bad = {.program = RLHF_BIN, .only = "no_such_step", .out = stdout};
    assert_int_equal(rl_pipeline_run(p, &bad, err, sizeof err), 2);
    assert_contains(err, "has no step 'no_such_step'");
    rl_pipeline_free(p);

    /* a failing step stops the pipeline with its line; the aims are checked from JSON files */
    snprintf(text, sizeof text, "let out = %s\nstep ok: info\nstep bad: train no_such_recipe\nstep never: info\n",
             P("fail"));
    rl_test_write_file(P("fail.pipeline"), text);
    p = load_ok(P("fail.pipeline"), NULL, 0);
    assert_int_equal(run_pipeline(p, 0, err, sizeof err, &out), 1);
    assert_contains(err, "fail.pipeline:3: step 'bad' failed");
    assert_true(strstr(out, "[3/3]") == NULL);
    assert_true(exists(P("fail/pipeline/ok.done")));
    assert_false(exists(P("fail/pipeline/bad.done")));
    free(out);
    rl_pipeline_free(p);

    rl_test_write_file(P("r.json"), "{\"acc\": 0.9, \"h\": 0.2}\n");
    snprintf(text, sizeof text,
             "let out = %s\nlet j = %s\nstep ok: info\naim ${j}:acc >= 0.85\naim ${j}:h <= 0.5 * ${j}:acc\n"
             "aim ${j}:acc < 0.5\naim ${j}:missing > 0\n",
             P("aims"), P("r.json"));
    rl_test_write_file(P("aims.pipeline"), text);
    p = load_ok(P("aims.pipeline"), NULL, 0);
    assert_int_equal(rl_pipeline_n_aims(p), 4);
    assert_contains(rl_pipeline_aim(p, 1), "r.json:h <= 0.5 * "); /* variables expanded */
    assert_null(rl_pipeline_aim(p, 4));
    assert_int_equal(run_pipeline(p, 1, err, sizeof err, &out), 3);
    assert_contains(out, "[met]");
    assert_contains(out, "(0.2 <= 0.45)");
    assert_contains(out, "[NOT MET]");
    assert_contains(out, "has no number 'missing'");
    assert_contains(out, "2 of 4 aims met");
    free(out);
    rl_pipeline_free(p);
}

/* The results table from hand-written summaries: cells, '-' for a missing
 * value, the Markdown file, and a missing JSON file reported while the
 * other rows are still printed. */
static void test_table(void **state) {
    (void)state;
    rl_test_write_file(P("pol.json"), "{\"helpfulness\": 0.5, \"benign_helpfulness\": 0.25, \"arith_accuracy\": 1,"
                                      " \"harmful_compliance\": 0.125, \"needless_refusal\": 0, \"kl_ref\": 1.5}\n");
    rl_test_write_file(P("rm.json"), "{\"n_pairs\": 90, \"accuracy\": 0.75, \"oracle_accuracy\": 0.8}\n");
    char pol[1100], rm[1100], md[1100], missing[1100], err[2048] = "";
    snprintf(pol, sizeof pol, "A=%s", P("pol.json"));
    snprintf(rm, sizeof rm, "RM=%s", P("rm.json"));
    snprintf(md, sizeof md, "%s", P("tables/t.md"));
    snprintf(missing, sizeof missing, "B=%s", P("none.json"));
    char *argv[] = {"table", "--out", md, "--policy", pol, "--policy", missing, "--score", rm, NULL};
    FILE *out = fopen(P("table.txt"), "w");
    assert_non_null(out);
    assert_int_equal(rl_pipeline_table(9, argv, out, err, sizeof err), 1);
    fclose(out);
    assert_contains(err, "none.json");
    char *txt = rl_test_read_file(P("table.txt"));
    assert_contains(txt, "A                        50.0%           25.0%          100.0%           12.5%            0.0%           1.500");
    assert_contains(txt, "RM                          90           75.0%           80.0%               -");
    free(txt);
    char *m = rl_test_read_file(md);
    assert_non_null(m);
    assert_contains(m, "| A | 50.0% | 25.0% | 100.0% | 12.5% | 0.0% | 1.500 |\n");
    assert_contains(m, "| RM | 90 | 75.0% | 80.0% | - |\n");
    free(m);
    char *bad[] = {"table", "--colour", NULL};
    assert_int_equal(rl_pipeline_table(2, bad, stdout, err, sizeof err), 2);
    assert_contains(err, "unexpected '--colour'");
}

/* `rlhf pipeline` itself: exit statuses and where its messages go. */
static void test_command_line(void **state) {
    (void)state;
    char *out = NULL;
    assert_int_equal(run_rlhf("pipeline recipes/pipelines/safe_rlhf_demo.pipeline --set sft_stpes=3 --list", &out), 2);
    assert_contains(out, "--set sft_stpes: recipes/pipelines/safe_rlhf_demo.pipeline defines no such variable");
    free(out);
    assert_int_equal(run_rlhf("pipeline recipes/pipelines/safe_rlhf_demo.pipeline --set sft_steps=9 --list", &out), 0);
    assert_contains(out, "sft          rlhf train sft ");
    assert_contains(out, "--steps 9 ");
    free(out);
    assert_int_equal(run_rlhf("pipeline recipes/pipelines/safe_rlhf_demo.pipeline --colour", &out), 2);
    assert_contains(out, "unknown option '--colour'");
    free(out);
    assert_int_equal(run_rlhf("pipeline", &out), 2);
    assert_contains(out, "usage: rlhf pipeline FILE");
    free(out);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s/pipeline_test", RLHF_TEST_TMP);
    rl_test_rm_rf(g_dir);
    /* the pipeline files name recipes and data relative to the source tree */
    if (chdir(RLHF_SOURCE_DIR) != 0) return -1;
    return mkdir(g_dir, 0777);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_pipelines),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_command_line),
        cmocka_unit_test(test_tiny_pipeline),
        cmocka_unit_test(test_tiny_pipeline_llama),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
