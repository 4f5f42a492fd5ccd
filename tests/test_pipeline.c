/* tests/test_pipeline.c - `rlhf pipeline` end to end: the main job's own
 * pipeline file (recipes/pipelines/safe_rlhf_demo.pipeline) run on the tiny preset with
 * small data and few steps (seconds), checking that every stage's loss falls
 * (the value loss for the online stages), that every file the README promises
 * appears (checkpoints, metrics, plots, evaluations, the table, the safe_rlhf
 * picture), that a second run skips the finished steps, and that bad pipeline
 * files and arguments are refused with the file, line and column.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "rl_test.h"
#include "rl_test_dir.h"

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

#define TINY                                                                                                    \
    "pipeline recipes/pipelines/safe_rlhf_demo.pipeline --set out=%s --set preset=tiny --set threads=1 "                  \
    "--set \"synth_args=--n-sft 1500 --n-pairs 1500 --n-eval 30 --n-eval-pairs 120\" --set sft_steps=60 "       \
    "--set rm_steps=80 --set rm_lr=2e-3 --set sft_lr=3e-3 --set ppo_steps=20 --set ppo_batch=16 --set max_new=12 --set critic_lr=3e-3 " \
    "--set \"eval=--samples 1 --max-new 12 --seed 1\""

static void test_tiny_pipeline(void **state) {
    (void)state;
    char args[2048], *out = NULL;
    snprintf(args, sizeof args, TINY, P("run"));
    int rc = run_rlhf(args, &out);
    if (rc != 0) print_message("%s\n", out);
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
    rc = run_rlhf(args, &out);
    assert_int_equal(rc, 0);
    assert_contains(out, "sft: done earlier");
    assert_contains(out, "safe: done earlier");
    assert_true(strstr(out, "rlhf train") == NULL);
    assert_contains(out, "Safe RLHF"); /* the table is printed again */
    free(out);
}

static void test_bad_pipelines(void **state) {
    (void)state;
    char args[2048], *out = NULL;
    rl_test_write_file(P("undef.pipeline"), "let out = x\n# comment\nstep a: info ${nope}\n");
    snprintf(args, sizeof args, "pipeline %s", P("undef.pipeline"));
    assert_int_equal(run_rlhf(args, &out), 2);
    assert_contains(out, "undef.pipeline:3:14: error: undefined variable 'nope'");
    free(out);

    rl_test_write_file(P("noout.pipeline"), "step a: info\n");
    snprintf(args, sizeof args, "pipeline %s", P("noout.pipeline"));
    assert_int_equal(run_rlhf(args, &out), 2);
    assert_contains(out, "let out = DIR");
    free(out);

    rl_test_write_file(P("kw.pipeline"), "let out = x\n  stpe a: info\n");
    snprintf(args, sizeof args, "pipeline %s", P("kw.pipeline"));
    assert_int_equal(run_rlhf(args, &out), 2);
    assert_contains(out, "kw.pipeline:2:3: error: expected `let`, `step` or `aim`");
    free(out);

    rl_test_write_file(P("dup.pipeline"), "let out = x\nstep a: info\nstep a: info\n");
    snprintf(args, sizeof args, "pipeline %s", P("dup.pipeline"));
    assert_int_equal(run_rlhf(args, &out), 2);
    assert_contains(out, "step 'a' is already defined at line 2");
    free(out);

    snprintf(args, sizeof args, "pipeline recipes/pipelines/safe_rlhf_demo.pipeline --set sft_stpes=3 --list");
    assert_int_equal(run_rlhf(args, &out), 2);
    assert_contains(out, "--set sft_stpes: recipes/pipelines/safe_rlhf_demo.pipeline defines no such variable");
    free(out);

    /* a failing step stops the pipeline with its line; the aims are checked from JSON files */
    snprintf(args, sizeof args, "let out = %s\nstep ok: info\nstep bad: train no_such_recipe\nstep never: info\n",
             P("fail"));
    rl_test_write_file(P("fail.pipeline"), args);
    snprintf(args, sizeof args, "pipeline %s", P("fail.pipeline"));
    assert_int_equal(run_rlhf(args, &out), 1);
    assert_contains(out, "fail.pipeline:3: step 'bad' failed");
    assert_true(strstr(out, "[3/3]") == NULL);
    free(out);

    rl_test_write_file(P("r.json"), "{\"acc\": 0.9, \"h\": 0.2}\n");
    snprintf(args, sizeof args,
             "let out = %s\nlet j = %s\nstep ok: info\naim ${j}:acc >= 0.85\naim ${j}:h <= 0.5 * ${j}:acc\n"
             "aim ${j}:acc < 0.5\naim ${j}:missing > 0\n",
             P("aims"), P("r.json"));
    rl_test_write_file(P("aims.pipeline"), args);
    snprintf(args, sizeof args, "pipeline %s --strict", P("aims.pipeline"));
    assert_int_equal(run_rlhf(args, &out), 3);
    assert_contains(out, "[met]");
    assert_contains(out, "(0.2 <= 0.45)");
    assert_contains(out, "[NOT MET]");
    assert_contains(out, "has no number 'missing'");
    assert_contains(out, "2 of 4 aims met");
    free(out);
}

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s/pipeline_test", RLHF_TEST_TMP);
    rl_test_rm_rf(g_dir);
    return mkdir(g_dir, 0777);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bad_pipelines),
        cmocka_unit_test(test_tiny_pipeline),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
