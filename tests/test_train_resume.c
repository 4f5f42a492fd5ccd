/* tests/test_train_resume.c - resuming a training run for real. For a
 * supervised, a fullbatch and an online recipe: one child process trains
 * without interruption; another runs the same training and is SIGKILLed at a
 * random moment after its first checkpoint; a third resumes it with --resume.
 * The resumed run must end with the very same checkpoint, bit for bit (model
 * tensors, Adam moments, params, random streams, window_mean's buffer), and
 * its metrics.jsonl must hold each step once with the uninterrupted run's
 * losses. A last test kills a child in the middle of writing a checkpoint
 * (the file-size limit makes write() raise SIGXFSZ inside the safetensors
 * writer) and checks that the previous checkpoint survives intact.
 *
 * Every training runs in a forked child and the parent never starts the
 * engine, so no OpenMP thread pool exists before a fork.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "rl_test.h"
#include "rl_file.h"
#include "rl_test_dir.h"

#include "rl_safetensors.h"
#include "rl_runner.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char g_dir[1024];



static const char *P(const char *name) { return rl_test_path_in(g_dir, name); }

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* ---- fixtures -------------------------------------------------------------------------------- */

static const char *k_sft = "recipe sft_fast : supervised\n"
                           "input demo : tokens\n"
                           "model policy : lm trainable, adamw(lr = 0.01)\n"
                           "loss = -masked_mean(token_logprobs(policy, demo), demo.mask)\n";

static const char *k_quad = "recipe quad : fullbatch\n"
                            "param x : f32[4] = 0 : adamw(lr = 0.01)\n"
                            "param y = 1 : sgd(lr = 0.01, momentum = 0.9), min = 0.25\n"
                            "loss = sum((x - 2) ^ 2) + 0.01 * sum(x * x * x * x)\n"
                            "loss_y = y * y\n";

static const char *k_online = "recipe tiny_ppo : online\n"
                              "input prompts : tokens\n"
                              "model policy : lm trainable, adamw(lr = 0.01)\n"
                              "model critic : value trainable, adamw(lr = 0.01)\n"
                              "param log_lambda = 0 : sgd(lr = 0.1), max = 1\n"
                              "rollout {\n"
                              "  seq = generate(policy, prompts, max_new = 4)\n"
                              "  lp0 = token_logprobs(policy, seq)\n"
                              "  score = seq_sum(float(seq.ids == 97), seq.mask)\n"
                              "  v0 = values(critic, seq)\n"
                              "  adv, ret = gae(at_end(score, seq), v0, seq.mask)\n"
                              "  jc = window_mean(score, 6)\n"
                              "}\n"
                              "loss {\n"
                              "  l = stop(exp(log_lambda))\n"
                              "  ratio = exp(token_logprobs(policy, seq) - lp0)\n"
                              "  loss = masked_mean(clipped_surrogate(ratio, adv / (1 + l), 0.2), seq.mask)\n"
                              "  loss_critic = masked_mean(square(values(critic, seq) - ret), seq.mask)\n"
                              "  loss_lambda = -exp(log_lambda) * (jc - 1)\n"
                              "}\n"
                              "log reward = mean(score), lambda = l\n";

static int setup(void **state) {
    (void)state;
    snprintf(g_dir, sizeof g_dir, "%s/test_train_resume.%ld", RLHF_TEST_TMP, (long)getpid());
    rl_test_rm_rf(g_dir);
    if (mkdir(g_dir, 0777) != 0) return -1;
    FILE *f = fopen(P("demos.jsonl"), "w");
    if (!f) return -1;
    static const char *const w[] = {"apple", "river", "stone", "cloud", "maple", "ocean"};
    for (int i = 0; i < 30; i++)
        fprintf(f, "{\"prompt\": \"Say %s.\", \"response\": \" %s, %s.\"}\n", w[i % 6], w[i % 6], w[(i + 1) % 6]);
    fclose(f);
    write_text(P("sft.recipe"), k_sft);
    write_text(P("quad.recipe"), k_quad);
    write_text(P("online.recipe"), k_online);
    /* a fixed seed for the kill times, unless one is given to replay a failure */
    const char *s = getenv("RLHF_TEST_SEED");
    unsigned seed = s ? (unsigned)strtoul(s, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "test_train_resume: kill times from seed %u (RLHF_TEST_SEED=%u replays them)\n", seed, seed);
    srand(seed);
    return 0;
}

static int teardown(void **state) {
    (void)state;
    if (!getenv("RLHF_TEST_KEEP")) rl_test_rm_rf(g_dir);
    return 0;
}

/* ---- children ---------------------------------------------------------------------------------- */

/* Forks a child that runs `rlhf train ARGS --quiet` (args: NULL-terminated)
 * and exits with its status; fsize > 0 limits the size of files it writes. */
static pid_t spawn(const char *const *args, long fsize) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid) return pid;
    struct rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none); /* the SIGXFSZ test: no core file */
    if (fsize > 0) {
        struct rlimit lim = {(rlim_t)fsize, (rlim_t)fsize};
        setrlimit(RLIMIT_FSIZE, &lim);
    }
    char *argv[64];
    int argc = 0;
    argv[argc++] = "train";
    for (int i = 0; args[i]; i++) argv[argc++] = (char *)args[i];
    argv[argc++] = "--quiet";
    rl_runner_cfg c;
    rl_runner_cfg_init(&c);
    char err[4096];
    rl_status st = rl_runner_parse_args(&c, argc, argv, err, sizeof err);
    if (!st) st = rl_runner_run(&c, NULL, err, sizeof err);
    if (st) fprintf(stderr, "child: %s\n", err);
    fflush(NULL);
    _exit(st ? 1 : 0);
}

/* Waits for a child; returns its exit status, or 128 + the signal that ended it. */
static int reap(pid_t pid) {
    int ws;
    while (waitpid(pid, &ws, 0) < 0)
        if (errno != EINTR) fail_msg("waitpid: %s", strerror(errno));
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

/* Runs a child to the end; returns its wall time. */
static double run_ok(const char *const *args) {
    double t0 = rl_now();
    int rc = reap(spawn(args, 0));
    if (rc) fail_msg("the training child failed (%d)", rc);
    return rl_now() - t0;
}

/* ---- comparisons -------------------------------------------------------------------------------- */

static int64_t ckpt_step(const char *dir) {
    char path[1600], e[1024];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    rl_st_file *f;
    if (rl_st_open(path, &f, e, sizeof e) != RL_OK) fail_msg("%s", e);
    int64_t step = atoll(rl_st_meta_get(f, "step"));
    rl_st_close(f);
    return step;
}

/* Every tensor of a's checkpoint equals b's, byte for byte, and so do the
 * state's metadata (step counts, cursor, tokens). */
static void same_checkpoints(const char *a, const char *b) {
    char pa[1600], pb[1600], e[1024];
    snprintf(pa, sizeof pa, "%s/checkpoint.safetensors", a);
    snprintf(pb, sizeof pb, "%s/checkpoint.safetensors", b);
    rl_st_file *fa, *fb;
    if (rl_st_open(pa, &fa, e, sizeof e) != RL_OK) fail_msg("%s", e);
    if (rl_st_open(pb, &fb, e, sizeof e) != RL_OK) fail_msg("%s", e);
    assert_int_equal(rl_st_count(fa), rl_st_count(fb));
    for (size_t i = 0; i < rl_st_count(fa); i++) {
        const rl_st_tensor *ta = rl_st_at(fa, i), *tb = rl_st_find(fb, ta->name);
        if (!tb) fail_msg("%s lacks '%s'", pb, ta->name);
        if (ta->nbytes != tb->nbytes || memcmp(ta->data, tb->data, ta->nbytes) != 0)
            fail_msg("tensor '%s' differs between the uninterrupted and the resumed run", ta->name);
    }
    for (size_t i = 0; i < rl_st_meta_count(fa); i++) {
        const char *k, *v;
        rl_st_meta_at(fa, i, &k, &v);
        if (!strcmp(k, "elapsed_s")) continue;
        const char *w = rl_st_meta_get(fb, k);
        if (!w || strcmp(v, w)) fail_msg("metadata '%s' differs: '%s' vs '%s'", k, v, w ? w : "(absent)");
    }
    rl_st_close(fa);
    rl_st_close(fb);
}

/* b's metrics.jsonl holds steps 1..n once each, with a's losses. */
static void same_metrics(const char *a, const char *b, int n, const char *const *keys) {
    json_t *la[256], *lb[256];
    const char *dirs[2] = {a, b};
    json_t **ls[2] = {la, lb};
    for (int d = 0; d < 2; d++) {
        char path[1200], line[65536];
        snprintf(path, sizeof path, "%s/metrics.jsonl", dirs[d]);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        int k = 0;
        while (fgets(line, sizeof line, f)) {
            json_t *o = json_loads(line, 0, NULL);
            if (!o) fail_msg("%s: line %d does not parse", path, k + 1);
            if (k >= 256) fail_msg("%s: too many lines", path);
            ls[d][k++] = o;
        }
        fclose(f);
        if (k != n) fail_msg("%s has %d lines, not %d", path, k, n);
    }
    for (int i = 0; i < n; i++) {
        assert_int_equal((int)json_integer_value(json_object_get(lb[i], "step")), i + 1);
        for (int k = 0; keys[k]; k++) {
            double x = json_number_value(json_object_get(la[i], keys[k])),
                   y = json_number_value(json_object_get(lb[i], keys[k]));
            if (memcmp(&x, &y, sizeof x)) fail_msg("step %d: %s %.17g vs %.17g", i + 1, keys[k], x, y);
        }
        json_decref(la[i]);
        json_decref(lb[i]);
    }
}

static int tmp_files(const char *dir) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) n += strstr(de->d_name, ".tmp") != NULL;
    closedir(d);
    return n;
}

/* Every model a's run exported (DIR/MODEL/model.safetensors) equals b's. */
static void same_exports(const char *a, const char *b) {
    DIR *d = opendir(a);
    assert_non_null(d);
    struct dirent *de;
    int n = 0;
    while ((de = readdir(d)) != NULL) {
        char pa[1600], pb[1600], e[1024];
        snprintf(pa, sizeof pa, "%s/%s/model.safetensors", a, de->d_name);
        snprintf(pb, sizeof pb, "%s/%s/model.safetensors", b, de->d_name);
        if (access(pa, R_OK) != 0) continue;
        rl_st_file *fa, *fb;
        if (rl_st_open(pa, &fa, e, sizeof e) != RL_OK || rl_st_open(pb, &fb, e, sizeof e) != RL_OK) fail_msg("%s", e);
        assert_int_equal(rl_st_count(fa), rl_st_count(fb));
        for (size_t i = 0; i < rl_st_count(fa); i++) {
            const rl_st_tensor *ta = rl_st_at(fa, i), *tb = rl_st_find(fb, ta->name);
            if (!tb || ta->nbytes != tb->nbytes || memcmp(ta->data, tb->data, ta->nbytes))
                fail_msg("%s: tensor '%s' differs", pb, ta->name);
        }
        rl_st_close(fa);
        rl_st_close(fb);
        n++;
    }
    closedir(d);
    (void)n;
}

/* The scenario: uninterrupted run U; run K killed at a random moment after
 * its first checkpoint, then resumed to the end; U and K must agree. args
 * holds "--out", "DIR" at [0], [1] (DIR is replaced) and the rest. */
static void kill_and_resume(const char *name, const char **args, int steps, const char *const *keys) {
    char u[1200], k[1200], ck[1300];
    snprintf(u, sizeof u, "%s/%s_u", g_dir, name);
    snprintf(k, sizeof k, "%s/%s_k", g_dir, name);
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", k);
    args[1] = u;
    double t_u = run_ok(args);
    args[1] = k;
    int killed = 0;
    for (int attempt = 0; attempt < 6 && !killed; attempt++) {
        rl_test_rm_rf(k);
        pid_t pid = spawn(args, 0);
        struct stat sb;
        double t0 = rl_now();
        while (stat(ck, &sb) != 0 && rl_now() - t0 < 60) usleep(200);
        /* a random moment in the first half of what remains (shorter on each retry) */
        double delay = (double)rand() / RAND_MAX * 0.5 * t_u / (1 << attempt);
        usleep((useconds_t)(delay * 1e6));
        kill(pid, SIGKILL);
        int rc = reap(pid);
        killed = rc == 128 + SIGKILL && ckpt_step(k) < steps;
        if (killed)
            fprintf(stderr,
                    "test_train_resume: %s: killed %.1f ms after the first checkpoint, at checkpoint step %lld of %d\n",
                    name, delay * 1e3, (long long)ckpt_step(k), steps);
    }
    if (!killed) fail_msg("%s: the child always finished before the kill", name);
    int n = 0;
    while (args[n]) n++;
    const char *resume[64];
    for (int i = 0; i < n; i++) resume[i] = args[i];
    resume[n] = "--resume";
    resume[n + 1] = NULL;
    run_ok(resume);
    assert_int_equal(ckpt_step(k), steps);
    assert_int_equal(tmp_files(k), 0); /* a killed write's temporary file is removed */
    same_checkpoints(u, k);
    same_metrics(u, k, steps, keys);
    same_exports(u, k);
}

/* ---- the tests ---------------------------------------------------------------------------------- */

static void test_resume_supervised(void **state) {
    (void)state;
    const char *args[] = {"--out",
                          NULL,
                          P("sft.recipe"),
                          "--data",
                          P("demos.jsonl"),
                          "--steps",
                          "12",
                          "--batch",
                          "4",
                          "--minibatch",
                          "2",
                          "--ctx",
                          "32",
                          "--threads",
                          "2",
                          "--ckpt-every",
                          "1",
                          "--seed",
                          "7",
                          "--lr-schedule",
                          "cosine:3:0.1",
                          NULL};
    kill_and_resume("sft", args, 12, (const char *const[]){"loss", "grad_norm", "lr", NULL});
}

static void test_resume_fullbatch(void **state) {
    (void)state;
    const char *args[] = {"--out",     NULL, P("quad.recipe"), "--steps", "60",
                          "--threads", "1",  "--ckpt-every",   "1",       NULL};
    kill_and_resume("quad", args, 60, (const char *const[]){"loss", "loss_y", NULL});
}

static void test_resume_online(void **state) {
    (void)state;
    const char *args[] = {"--out",
                          NULL,
                          P("online.recipe"),
                          "--data",
                          P("demos.jsonl"),
                          "--steps",
                          "8",
                          "--batch",
                          "4",
                          "--minibatch",
                          "2",
                          "--ppo-epochs",
                          "2",
                          "--ctx",
                          "24",
                          "--threads",
                          "1",
                          "--ckpt-every",
                          "1",
                          "--seed",
                          "11",
                          NULL};
    kill_and_resume("online", args, 8,
                    (const char *const[]){"loss", "loss_critic", "loss_lambda", "reward", "lambda", NULL});
}

/* Killed inside the checkpoint writer: the previous checkpoint stays whole. */
static void test_kill_in_write(void **state) {
    (void)state;
    const char *base[] = {
        P("sft.recipe"), "--data", P("demos.jsonl"), "--batch", "4",       "--ctx", "32", "--threads", "1",
        "--ckpt-every",  "2",      "--out",          NULL,      "--steps", NULL,    NULL, NULL};
    const int out_at = 12, steps_at = 14;
    /* the reference: 6 steps without interruption */
    base[out_at] = P("w_u"), base[steps_at] = "6";
    run_ok(base);
    /* 2 steps, then a resume whose next checkpoint may not exceed half the size */
    base[out_at] = P("w_k"), base[steps_at] = "2";
    run_ok(base);
    char ck[1200];
    snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", P("w_k"));
    struct stat sb;
    assert_int_equal(stat(ck, &sb), 0);
    long size = (long)sb.st_size;
    base[steps_at] = "6", base[steps_at + 1] = "--resume";
    int rc = reap(spawn(base, size / 2));
    assert_int_equal(rc, 128 + SIGXFSZ);      /* killed by write() inside the safetensors writer */
    assert_int_equal(tmp_files(P("w_k")), 1); /* its half-written temporary file */
    assert_int_equal(ckpt_step(P("w_k")), 2); /* the last good checkpoint, whole */
    assert_int_equal(stat(ck, &sb), 0);
    assert_int_equal((long)sb.st_size, size);
    run_ok(base);
    assert_int_equal(tmp_files(P("w_k")), 0);
    same_checkpoints(P("w_u"), P("w_k"));
    same_metrics(P("w_u"), P("w_k"), 6, (const char *const[]){"loss", NULL});
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_resume_supervised),
        cmocka_unit_test(test_resume_fullbatch),
        cmocka_unit_test(test_resume_online),
        cmocka_unit_test(test_kill_in_write),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
