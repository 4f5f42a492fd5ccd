/* tests/test_train.c - the stage runner (recipes/runner/rl_runner.h) end to end on
 * the tiny preset: a short run of each recipe kind (supervised, pairwise,
 * fullbatch, online) on small data written here, checking that the loss falls
 * and that every output appears and parses (metrics.jsonl fields, samples,
 * the checkpoint's layout, the exported models, params.json, the plot); the
 * built-in recipes for a step or two each; bad data lines (the run stops with
 * FILE:LINE, or --skip-bad-lines goes on and counts them); and the refusals
 * (bad arguments, recipe errors, an existing checkpoint without --resume, a
 * resume with other settings). tests/test_train_resume.c checks resuming.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "rl_test.h"
#include "rl_test_dir.h"

#include "rl_checkpoint.h"
#include "rl_safetensors.h"
#include "rl_runner.h"
#include "rl_test_runner.h"

#include <dirent.h>
#include <jansson.h>
#include <string.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[1024];



/* g_dir/name, in one of a few rotating buffers. */
static const char *P(const char *name) { return rl_test_path_in(g_dir, name); }

/* Every writer goes through a temporary renamed onto its file: none is left. */
static void assert_no_temporaries(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d));)
        if (strstr(e->d_name, ".tmp")) fail_msg("%s/%s: a temporary file was left behind", dir, e->d_name);
    closedir(d);
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && (S_ISDIR(sb.st_mode) || sb.st_size > 0);
}


#define TRAIN_OK(res, ...)                                                                                             \
    do {                                                                                                               \
        char err_[8192];                                                                                               \
        if (rl_test_train(res, err_, sizeof err_, __VA_ARGS__, NULL) != RL_OK) fail_msg("train: %s", err_);            \
    } while (0)

/* ---- fixtures: data and recipes -------------------------------------------------------- */

static const char *const k_words[] = {"apple", "river", "stone", "cloud"};

static void write_demos(const char *path, int n) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++) {
        const char *w = k_words[i % 4];
        fprintf(f, "{\"prompt\": \"Say %s.\", \"response\": \" %s %s.\"}\n", w, w, w);
    }
    fclose(f);
}

static void write_pairs(const char *path, int n) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++) {
        const char *w = k_words[i % 4];
        fprintf(f,
                "{\"chosen\": \"\\n\\nHuman: Name %s.\\n\\nAssistant: Sure, %s.\", "
                "\"rejected\": \"\\n\\nHuman: Name %s.\\n\\nAssistant: No\"}\n",
                w, w, w);
    }
    fclose(f);
}

static void write_pku(const char *path, int n) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < n; i++)
        fprintf(f,
                "{\"prompt\": \"Help me with %s.\", \"response_0\": \" Sure, first take it.\", "
                "\"response_1\": \" I can't help with that.\", \"is_response_0_safe\": false, "
                "\"is_response_1_safe\": true, \"better_response_id\": %d, \"safer_response_id\": 1}\n",
                k_words[i % 4], i % 2);
    fclose(f);
}

static const char *k_sft = "# a supervised test recipe with a large learning rate\n"
                           "recipe sft_fast : supervised\n"
                           "input demo : tokens\n"
                           "hyper lr = 0.01\n"
                           "model policy : lm trainable, adamw(lr = lr)\n"
                           "loss = -masked_mean(token_logprobs(policy, demo), demo.mask)\n"
                           "log perplexity = exp(loss)\n";

static const char *k_bt = "recipe bt_fast : pairwise\n"
                          "input chosen : tokens\n"
                          "input rejected : tokens\n"
                          "model rm : score trainable, adamw(lr = 0.01)\n"
                          "r_w = end_score(rm, chosen)\n"
                          "r_l = end_score(rm, rejected)\n"
                          "loss = mean(-logsig(r_w - r_l))\n"
                          "log accuracy = mean(r_w > r_l)\n";

static const char *k_quad = "recipe quad : fullbatch\n"
                            "hyper target = 2\n"
                            "param x : f32[3] = 0 : adamw(lr = 0.1)\n"
                            "param y = 1 : sgd(lr = 0.2), min = 0.25\n"
                            "loss = sum((x - target) ^ 2)\n"
                            "loss_y = y * y\n"
                            "log x_mean = mean(x), y_value = y + 0\n";

/* An online recipe with a critic, a windowed statistic and a multiplier:
 * the reward counts the letter 'a' in 4 generated tokens. */
static const char *k_online =
    "recipe tiny_ppo : online\n"
    "input prompts : tokens\n"
    "model policy : lm trainable, adamw(lr = 0.01)\n"
    "model ref : lm frozen\n"
    "model critic : value trainable, adamw(lr = 0.01)\n"
    "hyper clip = 0.2\n"
    "param log_lambda = 0 : sgd(lr = 0.1), max = 1\n"
    "rollout {\n"
    "  seq = generate(policy, prompts, max_new = 4)\n"
    "  lp0 = token_logprobs(policy, seq)\n"
    "  lpref = token_logprobs(ref, seq)\n"
    "  score = seq_sum(float(seq.ids == 97), seq.mask)\n"
    "  v0 = values(critic, seq)\n"
    "  adv, ret = gae(at_end(score, seq) - 0.1 * (lp0 - lpref), v0, seq.mask)\n"
    "  jc = window_mean(score, 6)\n"
    "}\n"
    "loss {\n"
    "  ratio = exp(token_logprobs(policy, seq) - lp0)\n"
    "  loss = masked_mean(clipped_surrogate(ratio, adv, clip), seq.mask)\n"
    "  loss_critic = masked_mean(square(values(critic, seq) - ret), seq.mask)\n"
    "  loss_lambda = -exp(log_lambda) * (jc - 1)\n"
    "}\n"
    "log reward = mean(score), lambda = exp(log_lambda), kl = masked_mean(lp0 - lpref, seq.mask)\n";

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s/test_train.%ld", RLHF_TEST_TMP, (long)getpid());
    rl_test_rm_rf(g_dir);
    if (mkdir(g_dir, 0777) != 0) return -1;
    write_demos(P("demos.jsonl"), 24);
    write_pairs(P("hh.jsonl"), 16);
    write_pku(P("pku.jsonl"), 8);
    rl_test_write_file(P("sft_fast.recipe"), k_sft);
    rl_test_write_file(P("bt_fast.recipe"), k_bt);
    rl_test_write_file(P("quad.recipe"), k_quad);
    rl_test_write_file(P("tiny_ppo.recipe"), k_online);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (!getenv("RLHF_TEST_KEEP")) rl_test_rm_rf(g_dir);
    return 0;
}

/* ---- reading outputs --------------------------------------------------------------------- */

/* The objects of a JSONL file (every line must parse); returns the count. */
static int read_jsonl(const char *path, json_t **out, int max) {
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[65536];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        if (!o) fail_msg("%s: line %d does not parse: %s", path, n + 1, je.text);
        assert_true(json_is_object(o));
        if (n < max)
            out[n++] = o;
        else
            json_decref(o);
    }
    fclose(f);
    return n;
}

static double num(json_t *o, const char *key) {
    json_t *v = json_object_get(o, key);
    if (!v) fail_msg("metrics line lacks \"%s\"", key);
    return json_is_null(v) ? NAN : json_number_value(v);
}

/* Mean of field key over lines [a, b). */
static double mean_of(json_t **m, int a, int b, const char *key) {
    double s = 0;
    for (int i = a; i < b; i++) s += num(m[i], key);
    return s / (b - a);
}

/* Checks metrics.jsonl: n lines, steps 1..n, the runner's fields and the given ones. */
static int check_metrics(const char *dir, json_t **m, int n, const char *const *fields) {
    char path[1200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    int got = read_jsonl(path, m, 256);
    assert_int_equal(got, n);
    static const char *const always[] = {"step",   "epoch",        "lr",     "grad_norm", "updates",
                                         "tokens", "tokens_per_s", "step_s", "time",      NULL};
    for (int i = 0; i < n; i++) {
        assert_int_equal((int)json_integer_value(json_object_get(m[i], "step")), i + 1);
        for (int k = 0; always[k]; k++) num(m[i], always[k]);
        for (int k = 0; fields[k]; k++) assert_true(isfinite(num(m[i], fields[k])));
    }
    return got;
}

static void free_lines(json_t **m, int n) {
    for (int i = 0; i < n; i++) json_decref(m[i]);
}

/* The checkpoint opens, is a training state at `step`, and holds `names`. */
static void check_ckpt(const char *dir, int64_t step, const char *const *names) {
    char path[1200], e[1024], want[32];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    rl_st_file *f;
    if (rl_st_open(path, &f, e, sizeof e) != RL_OK) fail_msg("%s", e);
    assert_string_equal(rl_st_meta_get(f, "format"), "rlhf-train-state");
    snprintf(want, sizeof want, "%lld", (long long)step);
    assert_string_equal(rl_st_meta_get(f, "step"), want);
    static const char *const meta[] = {"recipe.name", "recipe.hash", "recipe.sets", "data.cursor",  "seed",
                                       "models",      "hypers",      "recipe.step", "rlhf.version", NULL};
    for (int k = 0; meta[k]; k++)
        if (!rl_st_meta_get(f, meta[k])) fail_msg("%s: no metadata '%s'", path, meta[k]);
    assert_non_null(rl_st_find(f, "rng/runner"));
    assert_non_null(rl_st_find(f, "rng/generate"));
    for (int k = 0; names[k]; k++)
        if (!rl_st_find(f, names[k])) fail_msg("%s: no tensor '%s'", path, names[k]);
    rl_st_close(f);
}

/* The export of a model loads, and its tensors equal the checkpoint's. */
static void check_export(const char *dir, const char *model, rl_gpt2_kind kind) {
    char path[1200], e[1024], key[256];
    snprintf(path, sizeof path, "%s/%s", dir, model);
    rl_ctx *ctx = rl_ctx_new("cpu");
    rl_gpt2 *m = NULL;
    if (rl_gpt2_load(ctx, path, kind, RL_F32, 0, &m, e, sizeof e) != RL_OK) fail_msg("%s", e);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    rl_st_file *f;
    assert_int_equal(rl_st_open(path, &f, e, sizeof e), RL_OK);
    for (int i = 0; i < m->n_tensors; i++) {
        const rl_tensor *t = m->tensors[i];
        snprintf(key, sizeof key, "%s/%s", model, t->name);
        float *a = malloc(sizeof(float) * (size_t)t->numel);
        assert_int_equal(rl_st_read_f32(f, key, a, (size_t)t->numel), RL_OK);
        assert_memory_equal(a, t->data, sizeof(float) * (size_t)t->numel);
        free(a);
    }
    rl_st_close(f);
    rl_gpt2_free(ctx, m);
    rl_ctx_free(ctx);
}

/* ---- the stage kinds --------------------------------------------------------------------- */

static void test_supervised(void **state) {
    (void)state;
    const char *out = P("sft");
    rl_runner_result res;
    TRAIN_OK(&res, (char *)P("sft_fast.recipe"), "--data", (char *)P("demos.jsonl"), "--out", (char *)out, "--steps",
             "16", "--batch", "4", "--ctx", "32", "--threads", "1", "--sample-every", "8", "--ckpt-every", "8",
             "--seed", "3");
    assert_int_equal(res.steps, 16);
    assert_int_equal(res.first_step, 1);
    assert_int_equal(res.checkpoints, 2);
    json_t *m[256];
    int n =
        check_metrics(out, m, 16, (const char *const[]){"loss", "perplexity", "lr_policy", "grad_norm_policy", NULL});
    double first = mean_of(m, 0, 3, "loss"), last = mean_of(m, 13, 16, "loss");
    if (!(last < 0.8 * first)) fail_msg("the SFT loss did not fall: %g -> %g", first, last);
    assert_near(num(m[0], "lr"), 0.01, 1e-12);
    assert_int_equal((int)num(m[0], "updates"), 1);
    free_lines(m, n);
    /* samples: greedy continuations of the first prompts at steps 8 and 16 */
    json_t *s[16];
    int ns = read_jsonl(P("sft/samples.jsonl"), s, 16);
    assert_int_equal(ns, 6);
    assert_contains(json_string_value(json_object_get(s[0], "prompt")), "Assistant:"); /* its last 16 tokens */
    assert_non_null(json_string_value(json_object_get(s[0], "response")));
    assert_int_equal((int)json_integer_value(json_object_get(s[5], "step")), 16);
    free_lines(s, ns);
    check_ckpt(out, 16,
               (const char *const[]){"policy/wte.weight", "policy/h.1.mlp.c_fc.weight",
                                     "optim/policy/wte.weight.exp_avg", "optim/policy/ln_f.bias.exp_avg_sq", NULL});
    check_export(out, "policy", RL_GPT2_LM);
    assert_true(exists(P("sft/run.json")));
    /* rlhf plot */
    if (access("/usr/bin/gnuplot", X_OK) == 0) {
        char e[2048];
        if (rl_runner_plot(out, e, sizeof e) != RL_OK) fail_msg("plot: %s", e);
        assert_true(exists(P("sft/metrics.png")));
        assert_true(exists(P("sft/metrics.svg")));
        assert_true(exists(P("sft/plot/metrics.gp")));
        assert_no_temporaries(P("sft"));
        assert_no_temporaries(P("sft/plot"));
    } else {
        fprintf(stderr, "test_train: gnuplot is not installed; the plot is not checked\n");
    }
}

static void test_pairwise(void **state) {
    (void)state;
    const char *out = P("bt");
    rl_runner_result res;
    TRAIN_OK(&res, (char *)P("bt_fast.recipe"), "--data", (char *)P("hh.jsonl"), "--out", (char *)out, "--epochs", "3",
             "--batch", "4", "--ctx", "48", "--threads", "1");
    assert_int_equal(res.steps, 12); /* 3 passes over 16 pairs in batches of 4 */
    json_t *m[256];
    int n = check_metrics(out, m, 12, (const char *const[]){"loss", "accuracy", NULL});
    double first = mean_of(m, 0, 3, "loss"), last = mean_of(m, 9, 12, "loss");
    if (!(last < 0.7 * first)) fail_msg("the Bradley-Terry loss did not fall: %g -> %g", first, last);
    assert_near(num(m[11], "accuracy"), 1.0, 1e-9);
    assert_near(num(m[11], "epoch"), 3.0, 1e-9);
    free_lines(m, n);
    check_ckpt(out, 12, (const char *const[]){"rm/score.weight", "optim/rm/score.weight.exp_avg", NULL});
    check_export(out, "rm", RL_GPT2_SCORE);
}

static void test_fullbatch(void **state) {
    (void)state;
    const char *out = P("quad");
    rl_runner_result res;
    TRAIN_OK(&res, (char *)P("quad.recipe"), "--out", (char *)out, "--steps", "100", "--set", "target=1.5",
             "--lr-schedule", "cosine:5:0.1");
    assert_int_equal(res.steps, 100);
    json_t *m[256];
    int n =
        check_metrics(out, m, 100, (const char *const[]){"loss", "loss_y", "x_mean", "y_value", "lr_x", "lr_y", NULL});
    if (!(num(m[99], "loss") < 1e-2 * num(m[0], "loss")))
        fail_msg("loss %g -> %g", num(m[0], "loss"), num(m[99], "loss"));
    assert_near(num(m[99], "x_mean"), 1.5, 0.05);
    assert_near(num(m[99], "y_value"), 0.25, 1e-6); /* held at its bound */
    assert_near(num(m[0], "lr_x"), 0.1 / 5, 1e-12); /* warm-up, first step */
    assert_near(num(m[99], "lr_x"), 0.01, 1e-3);    /* cosine floor: 0.1 * 0.1 */
    free_lines(m, n);
    check_ckpt(out, 100, (const char *const[]){"params/x", "params/y", "optim/params/x.exp_avg", NULL});
    json_t *pj = json_load_file(P("quad/params.json"), 0, NULL);
    assert_non_null(pj);
    assert_int_equal((int)json_array_size(json_object_get(pj, "x")), 3);
    assert_near(json_number_value(json_object_get(pj, "y")), 0.25, 1e-6);
    json_decref(pj);
}

static void test_online(void **state) {
    (void)state;
    const char *out = P("ppo");
    rl_runner_result res;
    TRAIN_OK(&res, (char *)P("tiny_ppo.recipe"), "--data", (char *)P("demos.jsonl"), "--out", (char *)out, "--steps",
             "3", "--batch", "4", "--minibatch", "2", "--ppo-epochs", "2", "--ctx", "24", "--threads", "1",
             "--sample-every", "1", "--ckpt-every", "2");
    json_t *m[256];
    int n = check_metrics(out, m, 3,
                          (const char *const[]){"loss", "loss_critic", "loss_lambda", "reward", "lambda", "kl",
                                                "grad_norm_critic", "lr_log_lambda", NULL});
    assert_int_equal((int)num(m[0], "updates"), 4); /* 2 epochs x 2 minibatches */
    assert_true(num(m[0], "tokens") > 4 * 12);      /* 4 rows of 12 prompt tokens and some new ones */
    assert_near(num(m[0], "kl"), 0.0, 1e-5);        /* the fresh reference equals the fresh policy */
    free_lines(m, n);
    json_t *s[16];
    int ns = read_jsonl(P("ppo/samples.jsonl"), s, 16);
    assert_int_equal(ns, 9);
    assert_contains(json_string_value(json_object_get(s[0], "prompt")), "Assistant:");
    free_lines(s, ns);
    check_ckpt(out, 3,
               (const char *const[]){"policy/wte.weight", "critic/v_head.summary.weight", "params/log_lambda",
                                     "optim/critic/wte.weight.exp_avg", "state/window_mean@15:8", NULL});
    check_export(out, "policy", RL_GPT2_LM);
    check_export(out, "critic", RL_GPT2_VALUE);
    assert_false(exists(P("ppo/ref"))); /* frozen: not exported */
}

/* ---- the built-in recipes, a step or two each ---------------------------------------------- */

static const char *builtin(const char *name) {
    static char buf[8][1200];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/recipes/%s.recipe", RLHF_SOURCE_DIR, name);
    return b;
}

static void test_builtins(void **state) {
    (void)state;
    rl_runner_result res;
    char *common[] = {"--batch", "2", "--ctx", "32", "--threads", "1", "--steps", "2"};
#define C8 common[0], common[1], common[2], common[3], common[4], common[5], common[6], common[7]
    /* a built-in recipe by name */
    TRAIN_OK(&res, "sft", "--data", (char *)P("demos.jsonl"), "--out", (char *)P("b_sft"), C8);
    TRAIN_OK(&res, (char *)builtin("bradley_terry"), "--data", (char *)P("hh.jsonl"), "--out", (char *)P("b_bt"), C8);
    /* cost signs fed as the recipe declares them (i32 [B]) */
    TRAIN_OK(&res, (char *)builtin("cost_model"), "--data", (char *)P("pku.jsonl"), "--out", (char *)P("b_cm"), C8);
    /* a reference copied from the starting policy: DPO's loss starts at log 2 */
    TRAIN_OK(&res, (char *)builtin("dpo"), "--data", (char *)P("hh.jsonl"), "--out", (char *)P("b_dpo"), "--init",
             "ref=policy", C8);
    assert_near(res.first_loss, log(2.0), 1e-6);
    /* PPO from the SFT export, with the Bradley-Terry export as its reward
     * model and the adaptive KL controller (whose state the checkpoint keeps) */
    char pol[1200], ref[1200], rm[1200], cm[1200];
    snprintf(pol, sizeof pol, "policy=%s", P("b_sft/policy"));
    snprintf(ref, sizeof ref, "ref=%s", P("b_sft/policy"));
    snprintf(rm, sizeof rm, "reward_model=%s", P("b_bt/rm"));
    snprintf(cm, sizeof cm, "cost_model=%s", P("b_cm/cm"));
    TRAIN_OK(&res, (char *)builtin("ppo_kl"), "--data", (char *)P("demos.jsonl"), "--out", (char *)P("b_ppo"), "--init",
             pol, "--init", ref, "--init", rm, C8, "--set", "max_new=4", "--set", "adaptive_kl=true", "--set",
             "ptx_coef=1", "--ptx-data", (char *)P("demos.jsonl"));
    json_t *m[8];
    int n = check_metrics(P("b_ppo"), m, 2,
                          (const char *const[]){"loss", "loss_critic", "reward", "kl", "kl_coef", "ptx_loss", NULL});
    assert_near(num(m[0], "kl"), 0.0, 1e-4); /* the reference is the starting policy */
    assert_true(num(m[0], "ptx_loss") > 0);  /* PPO-ptx: demonstrations from --ptx-data */
    free_lines(m, n);
    char key[64];
    rl_st_file *f;
    char e[1024];
    assert_int_equal(rl_st_open(P("b_ppo/checkpoint.safetensors"), &f, e, sizeof e), RL_OK);
    int found = 0;
    for (size_t i = 0; i < rl_st_count(f); i++) found |= !strncmp(rl_st_at(f, i)->name, "state/adaptive_beta@", 20);
    assert_true(found);
    assert_non_null(rl_st_meta_get(f, "data.ptx_cursor"));
    rl_st_close(f);
    (void)key;
    TRAIN_OK(&res, (char *)builtin("safe_rlhf"), "--data", (char *)P("demos.jsonl"), "--out", (char *)P("b_safe"),
             "--init", pol, "--init", ref, "--init", rm, "--init", cm, C8, "--set", "max_new=4");
    n = check_metrics(P("b_safe"), m, 2,
                      (const char *const[]){"loss", "loss_lambda", "lambda", "cost", "episode_cost", NULL});
    free_lines(m, n);
#undef C8
}

/* ---- bad data ---------------------------------------------------------------------------------- */

static void test_bad_lines(void **state) {
    (void)state;
    rl_test_write_file(P("bad.jsonl"), "{\"prompt\": \"Say apple.\", \"response\": \" apple.\"}\n"
                               "{\"prompt\": \"Say river.\", \"response\": \" river.\"}\n"
                               "{\"prompt\": \"Say stone.\", \"respons\": \" stone.\"}\n"
                               "{\"prompt\": \"Say cloud.\", \"response\": \" cloud.\"}\n");
    rl_runner_result res;
    char err[4096];
    assert_int_equal(rl_test_train(&res, err, sizeof err, (char *)P("sft_fast.recipe"), "--data", (char *)P("bad.jsonl"),
                           "--out", (char *)P("bad"), "--steps", "1", "--batch", "2", "--ctx", "32", NULL),
                     RL_ERR_ARG);
    assert_contains(err, "bad.jsonl:3:");
    assert_contains(err, "response");
    assert_false(exists(P("bad/checkpoint.safetensors"))); /* the run stopped before training */
    TRAIN_OK(&res, (char *)P("sft_fast.recipe"), "--data", (char *)P("bad.jsonl"), "--out", (char *)P("bad"), "--steps",
             "2", "--batch", "2", "--ctx", "32", "--skip-bad-lines", "--threads", "1");
    assert_int_equal(res.bad_lines, 1);
    assert_int_equal(res.steps, 2);
}

/* ---- refusals ---------------------------------------------------------------------------------- */

#define TRAIN_FAILS(contains, ...)                                                                                     \
    do {                                                                                                               \
        char err_[8192];                                                                                               \
        rl_runner_result res_;                                                                                         \
        if (rl_test_train(&res_, err_, sizeof err_, __VA_ARGS__, NULL) == RL_OK)                                              \
            fail_msg("train succeeded; expected an error with '%s'", contains);                                        \
        assert_contains(err_, contains);                                                                               \
    } while (0)

static void test_refusals(void **state) {
    (void)state;
    char *sft = (char *)P("sft_fast.recipe"), *demos = (char *)P("demos.jsonl");
    TRAIN_FAILS("unknown option '--stepz'", sft, "--stepz", "3");
    TRAIN_FAILS("--steps: 'x' is not a positive integer", sft, "--steps", "x");
    TRAIN_FAILS("no recipe given", "--steps", "3");
    TRAIN_FAILS("give --steps or --epochs, not both", sft, "--steps", "3", "--epochs", "1");
    TRAIN_FAILS("--init: 'policy' is not NAME=VALUE", sft, "--init", "policy");
    TRAIN_FAILS("cannot read the recipe", (char *)P("nope.recipe"));
    /* recipe errors come with file:line:col */
    rl_test_write_file(P("broken.recipe"), "recipe broken : supervised\ninput d : tokens\nmodel p : lm trainable\n"
                                   "loss = -masked_mean(token_logprobz(p, d), d.mask)\n");
    TRAIN_FAILS("broken.recipe:4:21: error: unknown function 'token_logprobz'", (char *)P("broken.recipe"), "--data",
                demos);
    TRAIN_FAILS("unknown hyper 'lrr'", sft, "--data", demos, "--set", "lrr=1");
    TRAIN_FAILS("the recipe declares no model 'polcy'", sft, "--data", demos, "--init", "polcy=x");
    TRAIN_FAILS("needs --data", sft);
    TRAIN_FAILS("reads no data", (char *)P("quad.recipe"), "--data", demos);
    char init[1200];
    snprintf(init, sizeof init, "policy=%s", P("sft/policy")); /* test_supervised's export: a context of 32 */
    TRAIN_FAILS("--ctx 64 exceeds model 'policy''s context of 32", sft, "--data", demos, "--init", init, "--ctx", "64");
    TRAIN_FAILS("unknown preset 'huge'", sft, "--data", demos, "--preset", "huge");
    TRAIN_FAILS("--lr-schedule: 'linear' is not", sft, "--data", demos, "--lr-schedule", "linear");
    TRAIN_FAILS("--ptx-data: the recipe reads no demonstrations", (char *)P("tiny_ppo.recipe"), "--data", demos,
                "--ptx-data", demos);
    TRAIN_FAILS("give demonstrations with --ptx-data", (char *)builtin("ppo_kl"), "--data", demos, "--set",
                "ptx_coef=1");
    TRAIN_FAILS("needs safety labels", (char *)builtin("cost_model"), "--data", (char *)P("hh.jsonl"));
    /* an existing run: --resume, or another --out */
    rl_runner_result res;
    TRAIN_OK(&res, (char *)P("quad.recipe"), "--out", (char *)P("again"), "--steps", "3");
    TRAIN_FAILS("pass --resume", (char *)P("quad.recipe"), "--out", (char *)P("again"), "--steps", "3");
    TRAIN_FAILS("--set differs from the checkpoint's", (char *)P("quad.recipe"), "--out", (char *)P("again"), "--steps",
                "5", "--resume", "--set", "target=3");
    TRAIN_FAILS("--seed differs", (char *)P("quad.recipe"), "--out", (char *)P("again"), "--steps", "5", "--resume",
                "--seed", "9");
    /* the same arguments continue it; a finished run has nothing left */
    TRAIN_OK(&res, (char *)P("quad.recipe"), "--out", (char *)P("again"), "--steps", "5", "--resume");
    assert_int_equal(res.first_step, 4);
    assert_int_equal(res.steps, 5);
    TRAIN_OK(&res, (char *)P("quad.recipe"), "--out", (char *)P("again"), "--steps", "5", "--resume");
    assert_int_equal(res.steps, 5);
    json_t *m[16];
    int n = check_metrics(P("again"), m, 5, (const char *const[]){"loss", NULL});
    free_lines(m, n);
}

/* ---- declared data columns ------------------------------------------------------------------ */

static const char *k_cols = "recipe cols : supervised\n"
                            "input seq   : tokens from \"completion\"\n"
                            "input label : f32[B] from \"label\"\n"
                            "input n     : i32[B] from \"meta.n\"\n"
                            "input w     : f32[B] from \"meta.w\"\n"
                            "input ans   : tokens from \"answer\"\n"
                            "input kl    : tokens from \"mismatched\"\n"
                            "model policy : lm trainable, adamw(lr = 1e-4)\n"
                            "lp = seq_sum(token_logprobs(policy, seq), seq.mask)\n"
                            "loss = -mean(w * (2 * label - 1) * lp) / 100\n"
                            "log lab = mean(label), nsum = sum(float(n)), wmean = mean(w),\n"
                            "    alen = mean(sum(float(ans.mask), axis = -1)),\n"
                            "    ms = sum(float(seq.mask)), mk = sum(float(kl.mask)),\n"
                            "    is = sum(float(seq.ids) * float(seq.attn)), ik = sum(float(kl.ids) * float(kl.attn)),\n"
                            "    s0 = sum(float(slice(seq.ids, 0, 0, 1)) * float(slice(seq.mask, 0, 0, 1))),\n"
                            "    k5 = sum(float(slice(kl.ids, 0, 5, 6)) * float(slice(kl.mask, 0, 5, 6)))\n";

/* Unpaired data (TRL's prompt-completion-label, KTO's input): the recipe
 * reads a boolean, a nested integer and number, and a string tokenized
 * alone; one batch of every record, so the logged means are exact. */
static void test_columns(void **state) {
    (void)state;
    rl_test_write_file(P("cols.recipe"), k_cols);
    FILE *f = fopen(P("unpaired.jsonl"), "w");
    assert_non_null(f);
    const char *answers[6] = {"7", "42", "100", "3", "12345", "0"};
    double lab = 0, nsum = 0, wsum = 0, alen = 0;
    for (int i = 0; i < 6; i++) {
        fprintf(f, "{\"prompt\": \"Say %s.\", \"completion\": \" %s.\", \"label\": %s, "
                   "\"meta\": {\"n\": %d, \"w\": %g}, \"answer\": \"%s\"}\n",
                k_words[i % 4], k_words[i % 4], i % 3 ? "false" : "true", 10 * i - 7, 0.25 * i + 0.5, answers[i]);
        lab += i % 3 == 0, nsum += 10 * i - 7, wsum += 0.25 * i + 0.5, alen += (double)strlen(answers[i]);
    }
    fclose(f);
    rl_runner_result res;
    TRAIN_OK(&res, (char *)P("cols.recipe"), "--data", (char *)P("unpaired.jsonl"), "--out", (char *)P("cols"),
             "--steps", "1", "--batch", "6");
    json_t *m[4];
    int n = check_metrics(P("cols"), m, 1, (const char *const[]){"loss", "lab", "nsum", "wmean", "alen", NULL});
    rl_test_assert_close(num(m[0], "lab"), lab / 6, 1e-7, "mean(label)");
    rl_test_assert_close(num(m[0], "nsum"), nsum, 1e-7, "sum(meta.n)");
    rl_test_assert_close(num(m[0], "wmean"), wsum / 6, 1e-7, "mean(meta.w)");
    rl_test_assert_close(num(m[0], "alen"), alen / 6, 1e-7, "answer tokens (one byte each)");
    /* the mismatched rows (KTO's KL rows) hold the same prompts and responses, shifted by one:
     * row 5 ends with row 0's response */
    rl_test_assert_close(num(m[0], "mk"), num(m[0], "ms"), 0, "mismatched response tokens");
    rl_test_assert_close(num(m[0], "ik"), num(m[0], "is"), 0, "mismatched token ids");
    rl_test_assert_close(num(m[0], "k5"), num(m[0], "s0"), 0, "row 5's response is row 0's");
    /* and the built-in kto trains on this unpaired data */
    TRAIN_OK(&res, (char *)builtin("kto"), "--data", (char *)P("unpaired.jsonl"), "--out", (char *)P("kto"), "--steps",
             "2", "--batch", "3");
    free_lines(m, n);
    /* a column the data lacks: the data file's line, the input and where it is declared */
    char *bad = rl_test_read_file(P("cols.recipe"));
    char *at = strstr(bad, "meta.w");
    memcpy(at, "meta.v", 6);
    rl_test_write_file(P("cols_missing.recipe"), bad);
    free(bad);
    TRAIN_FAILS("unpaired.jsonl:1: missing field \"meta.v\" (input 'w' reads it, ", (char *)P("cols_missing.recipe"),
                "--data", (char *)P("unpaired.jsonl"), "--out", (char *)P("cols2"));
    TRAIN_FAILS("cols_missing.recipe:5:27)", (char *)P("cols_missing.recipe"), "--data", (char *)P("unpaired.jsonl"),
                "--out", (char *)P("cols2"));
    /* values that the declared type cannot hold, at their data line */
    f = fopen(P("unpaired_bad.jsonl"), "w");
    fprintf(f, "{\"prompt\": \"a\", \"completion\": \"b\", \"label\": true, \"meta\": {\"n\": 1, \"w\": 1}, "
               "\"answer\": \"1\"}\n\n"
               "{\"prompt\": \"a\", \"completion\": \"b\", \"label\": \"yes\", \"meta\": {\"n\": 1.5, \"w\": 1}, "
               "\"answer\": 1}\n");
    fclose(f);
    TRAIN_FAILS("unpaired_bad.jsonl:3: field \"label\" is a string, but input 'label' (",
                (char *)P("cols.recipe"), "--data", (char *)P("unpaired_bad.jsonl"), "--out", (char *)P("cols3"));
    rl_test_write_file(P("cols_n.recipe"), "recipe c : supervised\ninput seq : tokens from \"completion\"\n"
                                           "input n : i32[B] from \"meta.n\"\nmodel policy : lm trainable\n"
                                           "loss = -mean(seq_sum(token_logprobs(policy, seq), seq.mask) * float(n))\n");
    TRAIN_FAILS("unpaired_bad.jsonl:3: field \"meta.n\" is a number, but input 'n' (", (char *)P("cols_n.recipe"),
                "--data", (char *)P("unpaired_bad.jsonl"), "--out", (char *)P("cols4"));
    TRAIN_FAILS("is i32[B] and needs an integer", (char *)P("cols_n.recipe"), "--data", (char *)P("unpaired_bad.jsonl"),
                "--out", (char *)P("cols4"));
    rl_test_write_file(P("cols_t.recipe"), "recipe c : supervised\ninput seq : tokens from \"completion\"\n"
                                           "input a : tokens from \"answer\"\nmodel policy : lm trainable\n"
                                           "loss = -mean(seq_sum(token_logprobs(policy, seq), seq.mask)) + "
                                           "0 * mean(float(a.ids))\n");
    TRAIN_FAILS("cols_t.recipe:3:23) is tokens and needs a string", (char *)P("cols_t.recipe"),
                "--data", (char *)P("unpaired_bad.jsonl"), "--out", (char *)P("cols5"));
    /* a from on a type that cannot hold a column: the recipe's line and column */
    rl_test_write_file(P("cols_2d.recipe"), "recipe c : supervised\ninput seq : tokens from \"completion\"\n"
                                            "input l : f32[B, T] from \"label\"\nmodel policy : lm trainable\n"
                                            "loss = -mean(seq_sum(token_logprobs(policy, seq), seq.mask)) + sum(l)\n");
    TRAIN_FAILS("cols_2d.recipe:3:26: error: input 'l' reads the column \"label\", which gives one value per row",
                (char *)P("cols_2d.recipe"), "--data", (char *)P("unpaired.jsonl"), "--out", (char *)P("cols6"));
    /* rows of two kinds cannot be fed together */
    rl_test_write_file(P("cols_rows.recipe"), "recipe c : supervised\ninput seq : tokens from \"completion\"\n"
                                              "input c : tokens from \"chosen\"\nmodel policy : lm trainable\n"
                                              "loss = -mean(seq_sum(token_logprobs(policy, seq), seq.mask)) - "
                                              "mean(seq_sum(token_logprobs(policy, c), c.mask))\n");
    TRAIN_FAILS("cols_rows.recipe:3:23: input 'c' reads \"chosen\", but input 'seq' reads demonstration rows",
                (char *)P("cols_rows.recipe"), "--data", (char *)P("unpaired.jsonl"), "--out", (char *)P("cols7"));
    /* bradley_terry's documented margin column, from HH pairs that carry one */
    f = fopen(P("hh_margin.jsonl"), "w");
    for (int i = 0; i < 8; i++)
        fprintf(f, "{\"chosen\": \"\\n\\nHuman: Name %s.\\n\\nAssistant: Sure.\", "
                   "\"rejected\": \"\\n\\nHuman: Name %s.\\n\\nAssistant: No\", \"margin\": %d}\n",
                k_words[i % 4], k_words[i % 4], i % 3);
    fclose(f);
    TRAIN_OK(&res, (char *)builtin("bradley_terry"), "--data", (char *)P("hh_margin.jsonl"), "--out",
             (char *)P("bt_margin"), "--steps", "2", "--batch", "4", "--set", "use_margin=true");
    TRAIN_FAILS("hh.jsonl:1: missing field \"margin\" (input 'margin' reads it, ", (char *)builtin("bradley_terry"),
                "--data", (char *)P("hh.jsonl"), "--out", (char *)P("bt_margin2"), "--set", "use_margin=true");
    /* off, the margin column is not read */
    TRAIN_OK(&res, (char *)builtin("bradley_terry"), "--data", (char *)P("hh.jsonl"), "--out", (char *)P("bt_nomargin"),
             "--steps", "1", "--batch", "4");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_supervised), cmocka_unit_test(test_pairwise), cmocka_unit_test(test_fullbatch),
        cmocka_unit_test(test_online),     cmocka_unit_test(test_builtins), cmocka_unit_test(test_bad_lines),
        cmocka_unit_test(test_refusals),   cmocka_unit_test(test_columns),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
