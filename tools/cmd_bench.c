/* tools/cmd_bench.c - benchmarks, never tests.
 *
 * `rlhf bench ops` prints the median of several runs of: matmul through the
 * engine against a direct cblas_sgemm call of the same size, elementwise
 * throughput on large tensors, and the cost of one recorded op on a 1-element
 * tensor.
 *
 * `rlhf bench model` times one supervised fine-tuning step of a model preset
 * of either family (GPT-2; the Llama family's smollm2-135m, ...) (forward,
 * backward, AdamW), reports ms/step, tokens/s, model FLOPs
 * and the fraction of the sgemm peak measured in the same run. It is the C
 * side of tools/bench_model.sh, which runs the PyTorch step of
 * tools/gpt2_ref.py or tools/llama_ref.py on the same shapes next to it.
 */
#include "cli.h"

#include "rl_model.h"
#include "rl_optim.h"
#include "rl_ops.h"

#include "cpu.h"

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RL_BENCH_RUNS 9

static int rl_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double rl_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, rl_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void rl_fill_random(float *p, int64_t n) {
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)((s >> 8) * (1.0 / 16777216.0)) - 0.5f;
    }
}

/* Engine matmul vs a direct cblas_sgemm call of the same size. The engine
 * runs OpenBLAS single-threaded inside its own OpenMP threads
 * (ops/cpu/gemm.c); the direct call gets OpenBLAS's own threads (one per
 * core), as a program calling OpenBLAS would. The two are timed in separate
 * blocks with a pause between: each pool's workers spin for a while after
 * their last job, and alternating them made whichever ran second slower. */
static void rl_bench_matmul(rl_ctx *ctx, int64_t m, int64_t k, int64_t n) {
    float *a = malloc(sizeof(float) * (size_t)(m * k)), *b = malloc(sizeof(float) * (size_t)(k * n));
    float *c = malloc(sizeof(float) * (size_t)(m * n));
    rl_fill_random(a, m * k);
    rl_fill_random(b, k * n);
    rl_tensor *ta = rl_tensor_new(ctx, RL_F32, 2, (int64_t[]){m, k}, "a");
    rl_tensor *tb = rl_tensor_new(ctx, RL_F32, 2, (int64_t[]){k, n}, "b");
    rl_tensor_write(ctx, ta, a, sizeof(float) * (size_t)(m * k));
    rl_tensor_write(ctx, tb, b, sizeof(float) * (size_t)(k * n));
    double te[RL_BENCH_RUNS], tc[RL_BENCH_RUNS];
    const int reps = 5;
    const int engine_blas = openblas_get_num_threads(); /* 1 once a context exists */
    struct timespec pause = {0, 300000000};
    for (int r = -1; r < RL_BENCH_RUNS; r++) { /* r = -1: warm-up (thread pools, page faults) */
        double t0 = rl_now();
        for (int i = 0; i < reps; i++) {
            rl_matmul(ctx, ta, tb, 0, 0);
            rl_ctx_reset(ctx);
        }
        if (r >= 0) te[r] = (rl_now() - t0) / reps;
    }
    nanosleep(&pause, NULL);
    openblas_set_num_threads(omp_get_max_threads());
    for (int r = -1; r < RL_BENCH_RUNS; r++) {
        double t0 = rl_now();
        for (int i = 0; i < reps; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a,
                        (int)k, b, (int)n, 0.0f, c, (int)n);
        if (r >= 0) tc[r] = (rl_now() - t0) / reps;
    }
    openblas_set_num_threads(engine_blas);
    nanosleep(&pause, NULL); /* OpenBLAS's workers go to sleep before the next engine work */
    double me = rl_median(te, RL_BENCH_RUNS), mc = rl_median(tc, RL_BENCH_RUNS);
    double flop = 2.0 * (double)m * (double)k * (double)n;
    printf("matmul %lldx%lldx%lld f32: engine %.3f ms (%.1f GFLOP/s), cblas_sgemm with OpenBLAS's "
           "threads %.3f ms (%.1f GFLOP/s), engine/direct = %.1f%%\n",
           (long long)m, (long long)k, (long long)n, me * 1e3, flop / me * 1e-9, mc * 1e3,
           flop / mc * 1e-9, 100.0 * mc / me);
    rl_tensor_free(ctx, ta);
    rl_tensor_free(ctx, tb);
    free(a);
    free(b);
    free(c);
}

/* Elementwise throughput: bytes moved (inputs + output) per second. */
static void rl_bench_elementwise(rl_ctx *ctx, int64_t n) {
    rl_tensor *x = rl_tensor_new(ctx, RL_F32, 1, &n, "x");
    rl_tensor *y = rl_tensor_new(ctx, RL_F32, 1, &n, "y");
    rl_tensor_fill(ctx, x, 0.5);
    rl_tensor_fill(ctx, y, 0.25);
    struct {
        const char *name;
        int arity;
    } ops[] = {{"add", 2}, {"mul", 2}, {"exp", 1}, {"gelu", 1}};
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
        double t[RL_BENCH_RUNS];
        for (int r = -1; r < RL_BENCH_RUNS; r++) {
            double t0 = rl_now();
            rl_tensor *z = NULL;
            switch (o) {
            case 0: z = rl_add(ctx, x, y); break;
            case 1: z = rl_mul(ctx, x, y); break;
            case 2: z = rl_exp(ctx, x); break;
            default: z = rl_gelu(ctx, x); break;
            }
            (void)z;
            double dt = rl_now() - t0;
            rl_ctx_reset(ctx);
            if (r >= 0) t[r] = dt;
        }
        double m = rl_median(t, RL_BENCH_RUNS);
        double bytes = (double)n * sizeof(float) * (ops[o].arity + 1);
        printf("elementwise %-5s f32 %lld elements: %.3f ms, %.2f GB/s\n", ops[o].name,
               (long long)n, m * 1e3, bytes / m * 1e-9);
    }
    rl_tensor_free(ctx, x);
    rl_tensor_free(ctx, y);
}

/* Overhead of one recorded op: a 1-element add whose input needs a gradient,
 * so each call allocates, runs the kernel and appends a tape node. */
static void rl_bench_op_overhead(rl_ctx *ctx) {
    rl_tensor *p = rl_param_new(ctx, RL_F32, 1, (int64_t[]){1}, "p");
    const int per_step = 10000;
    double t[RL_BENCH_RUNS];
    for (int r = -1; r < RL_BENCH_RUNS; r++) {
        double t0 = rl_now();
        for (int s = 0; s < 10; s++) {
            rl_tensor *acc = p;
            for (int i = 0; i < per_step; i++) acc = rl_add(ctx, acc, p);
            rl_ctx_reset(ctx);
        }
        double dt = (rl_now() - t0) / (10.0 * per_step);
        if (r >= 0) t[r] = dt;
    }
    printf("recorded op on a 1-element tensor (add, tape on): %.0f ns per op\n",
           rl_median(t, RL_BENCH_RUNS) * 1e9);
    rl_ctx_set_grad(ctx, 0);
    for (int r = 0; r < RL_BENCH_RUNS; r++) {
        double t0 = rl_now();
        rl_tensor *acc = p;
        for (int i = 0; i < per_step; i++) acc = rl_add(ctx, acc, p);
        rl_ctx_reset(ctx);
        t[r] = (rl_now() - t0) / per_step;
    }
    rl_ctx_set_grad(ctx, 1);
    printf("same op with gradients off (no tape): %.0f ns per op\n", rl_median(t, RL_BENCH_RUNS) * 1e9);
    rl_tensor_free(ctx, p);
}

/* ---- bench model ------------------------------------------------------------- */

/* The sgemm peak of this machine: the best rate of a large square product
 * over `runs` runs (the best, not the median: other work on a shared machine
 * only ever slows a run down, and a higher peak is the conservative choice
 * for the fraction reported against it), run by OpenBLAS with its own
 * threads (one per core) and by the engine's split (ops/cpu/gemm.c: OpenMP
 * threads, OpenBLAS serial inside), whichever is faster. OpenBLAS's workers spin for a while after a threaded call, so
 * this runs before the engine's context exists and is followed by a pause. */
static double rl_bench_sgemm_peak(int64_t n, int runs, double *native, double *split) {
    float *a = malloc(sizeof(float) * (size_t)(n * n)), *b = malloc(sizeof(float) * (size_t)(n * n));
    float *c = malloc(sizeof(float) * (size_t)(n * n));
    *native = *split = 0;
    if (!a || !b || !c) {
        free(a), free(b), free(c);
        return 0;
    }
    rl_fill_random(a, n * n);
    rl_fill_random(b, n * n);
    double t[2][RL_BENCH_RUNS];
    if (runs > RL_BENCH_RUNS) runs = RL_BENCH_RUNS;
    const int saved = openblas_get_num_threads();
    openblas_set_num_threads(omp_get_max_threads());
    for (int r = -1; r < runs; r++) { /* r = -1: warm-up */
        double t0 = rl_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)n, (int)n, 1.0f, a,
                    (int)n, b, (int)n, 0.0f, c, (int)n);
        if (r >= 0) t[0][r] = rl_now() - t0;
    }
    openblas_set_num_threads(1);
    struct timespec pause = {0, 300000000}; /* OpenBLAS's workers go to sleep */
    nanosleep(&pause, NULL);
    for (int r = -1; r < runs; r++) {
        double t0 = rl_now();
        rl_cpu_gemm_f32(0, 0, (int)n, (int)n, (int)n, 1.0f, a, (int)n, b, (int)n, 0.0f, c, (int)n);
        if (r >= 0) t[1][r] = rl_now() - t0;
    }
    openblas_set_num_threads(saved);
    free(a), free(b), free(c);
    const double flop = 2.0 * (double)n * (double)n * (double)n;
    double best[2] = {t[0][0], t[1][0]};
    for (int k = 0; k < 2; k++)
        for (int r = 1; r < runs; r++) best[k] = t[k][r] < best[k] ? t[k][r] : best[k];
    *native = flop / best[0] * 1e-9;
    *split = flop / best[1] * 1e-9;
    return *native > *split ? *native : *split;
}

/* Model FLOPs of one training step (forward + backward), as nanoGPT's
 * estimate_mfu (from the PaLM paper, Chowdhery et al. 2022, appendix B):
 * 6 * N * tokens for the weight products, N = parameters without the position
 * embeddings (wte counts once: it is the tied LM head's GEMM), plus
 * 12 * L * T * C * tokens for the attention products QK^T and PV (forward 4
 * flops per (query, key, channel), x3 with backward; full T x T, i.e. the
 * causal half skipped by the kernel is counted, as PaLM does). */
static double rl_bench_model_flops(const rl_model *m, int64_t B, int64_t T) {
    double tokens = (double)(B * T);
    if (m->gpt2) {
        const rl_gpt2_config *c = &m->gpt2->cfg;
        double n = (double)rl_gpt2_config_num_params(c, RL_GPT2_LM) - (double)(c->n_ctx * c->n_embd);
        return 6.0 * n * tokens + 12.0 * (double)c->n_layer * (double)T * (double)c->n_embd * tokens;
    }
    /* Llama family: every weight is a GEMM operand but an untied embedding
     * (a lookup) and the RMSNorm vectors; attention over H * head_dim */
    const rl_llama_config *c = &m->llama->cfg;
    double n = (double)rl_model_num_params(m) - (c->tie ? 0.0 : (double)(c->vocab * c->hidden)) -
               (double)((2 * c->n_layer + 1) * c->hidden);
    return 6.0 * n * tokens + 12.0 * (double)c->n_layer * (double)T * (double)(c->n_head * c->head_dim) * tokens;
}

typedef struct rl_bench_phase {
    double fwd, bwd, opt, zero; /* seconds, this step */
} rl_bench_phase;

/* One SFT step of `preset` at [B, T] timed `steps` times after 2 warm-up
 * steps; prints one line (and a JSON line with --json). Returns 0 or 1. */
static int rl_bench_model_one(const char *preset, int64_t B, int64_t T, int steps, double peak,
                              int json) {
    rl_model_config cfg;
    if (rl_model_config_preset(preset, &cfg) != RL_OK) {
        fprintf(stderr, "rlhf bench model: unknown preset '%s' (%s)\n", preset, rl_model_preset_names());
        return 1;
    }
    if (T < 2 || T > rl_model_config_ctx(&cfg) || B < 1) {
        fprintf(stderr, "rlhf bench model: %s needs --batch >= 1 and 2 <= --ctx <= %lld\n", preset,
                (long long)rl_model_config_ctx(&cfg));
        return 1;
    }
    const int64_t V = rl_model_config_vocab(&cfg);
    rl_ctx *ctx = rl_ctx_new("cpu");
    if (!ctx) return 1;
    int bad = 1;
    rl_optim *opt = NULL;
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * T));
    double *ts = malloc(sizeof(double) * (size_t)steps * 5);
    rl_model *m = rl_model_new(ctx, &cfg, RL_HEAD_LM, RL_F32, 1234);
    if (!m || !ids || !ts) goto done;
    opt = rl_optim_adamw_new(ctx, m->tensors, m->n_tensors, NULL);
    if (!opt) goto done;
    uint32_t s = 99;
    for (int64_t i = 0; i < B * T; i++) {
        s = s * 1664525u + 1013904223u;
        ids[i] = (int32_t)((s >> 8) % (uint32_t)V);
    }
    double first_loss = 0;
    for (int k = -2; k < steps; k++) { /* k < 0: warm-up (page faults, thread pools) */
        double t0 = rl_now();
        rl_tensor *tid = rl_const(ctx, RL_I32, 2, (int64_t[]){B, T}, ids);
        rl_tensor *loss = rl_model_sft_loss(ctx, m, tid, NULL);
        double t1 = rl_now();
        if (!loss || rl_backward(ctx, loss) != RL_OK) break;
        double t2 = rl_now();
        if (k == -2) first_loss = rl_tensor_get(ctx, loss, 0);
        if (rl_optim_step(opt, 1e-4) != RL_OK) break;
        double t3 = rl_now();
        rl_optim_zero_grad(opt);
        rl_ctx_reset(ctx);
        double t4 = rl_now();
        if (k >= 0) {
            ts[k] = t4 - t0;
            ts[steps + k] = t1 - t0;
            ts[2 * steps + k] = t2 - t1;
            ts[3 * steps + k] = t3 - t2;
            ts[4 * steps + k] = t4 - t3;
        }
    }
    if (rl_ctx_error(ctx)) {
        fprintf(stderr, "rlhf bench model: %s\n", rl_ctx_error(ctx));
        goto done;
    }
    double lo = ts[0], hi = ts[0];
    for (int k = 1; k < steps; k++) lo = ts[k] < lo ? ts[k] : lo, hi = ts[k] > hi ? ts[k] : hi;
    double med[5];
    for (int p = 0; p < 5; p++) med[p] = rl_median(ts + p * steps, steps);
    const double flops = rl_bench_model_flops(m, B, T);
    const double gflops = flops / med[0] * 1e-9, tok = (double)(B * T) / med[0];
    printf("%-5s B %lld T %lld (%lld params): %.2f ms/step (min %.2f, max %.2f), %.0f tokens/s, "
           "%.3f GFLOP/step, %.1f GFLOP/s = %.1f%% of sgemm peak; fwd %.2f bwd %.2f adamw %.2f "
           "zero+reset %.2f ms; loss %.4f\n",
           preset, (long long)B, (long long)T, (long long)rl_model_num_params(m), med[0] * 1e3,
           lo * 1e3, hi * 1e3, tok, flops * 1e-9, gflops, 100.0 * gflops / peak, med[1] * 1e3,
           med[2] * 1e3, med[3] * 1e3, med[4] * 1e3, first_loss);
    if (json)
        printf("{\"side\": \"rlhf\", \"preset\": \"%s\", \"B\": %lld, \"T\": %lld, \"ms\": %.4f, "
               "\"ms_min\": %.4f, \"ms_max\": %.4f, \"tokens_per_s\": %.1f, \"gflop_per_step\": %.6f, "
               "\"gflops\": %.3f, \"sgemm_peak_gflops\": %.3f, \"core\": \"%s\", "
               "\"threads\": %d, \"loss\": %.6f}\n",
               preset, (long long)B, (long long)T, med[0] * 1e3, lo * 1e3, hi * 1e3, tok,
               flops * 1e-9, gflops, peak, rl_blas_corename(), omp_get_max_threads(), first_loss);
    fflush(stdout);
    bad = 0;
done:
    rl_optim_free(opt);
    rl_model_free(ctx, m);
    free(ids);
    free(ts);
    rl_ctx_free(ctx);
    return bad;
}

static void rl_bench_model_usage(FILE *f) {
    fprintf(f,
            "usage: rlhf bench model [--preset NAME|all] [--batch B] [--ctx T] [--steps N] [--json]\n"
            "  one SFT step (forward, backward, AdamW, zero grads, reset) of an f32 model on random\n"
            "  ids; the median of N steps after 2 warm-up steps. Defaults: --preset all (tiny,\n"
            "  small, gpt2), --steps 10 (3 for gpt2 and smollm2-135m), and per preset B x T = tiny\n"
            "  8 x 32, small 8 x 128, gpt2 4 x 128, llama-tiny 8 x 32, llama-mini 8 x 128,\n"
            "  smollm2-135m 4 x 128 (--batch/--ctx override them). NAME is any model preset\n"
            "  (%s). Prints ms/step, tokens/s, model FLOPs (6 N BT + 12 L T C BT, N = the GEMM\n"
            "  parameters) and the fraction of the sgemm peak measured at the start of the run.\n",
            rl_model_preset_names());
}

static int rl_bench_model(int argc, char **argv) {
    const char *preset = "all";
    int64_t B = 0, T = 0;
    int steps = 0, json = 0;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--json") == 0) {
            json = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            rl_bench_model_usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "rlhf bench model: unknown option or missing value: '%s'\n", a);
            rl_bench_model_usage(stderr);
            return 2;
        }
        char *end = NULL;
        long long x = strtoll(v, &end, 10);
        int num_ok = end && *end == 0 && x > 0;
        if (strcmp(a, "--preset") == 0) preset = v;
        else if (strcmp(a, "--batch") == 0 && num_ok) B = x;
        else if (strcmp(a, "--ctx") == 0 && num_ok) T = x;
        else if (strcmp(a, "--steps") == 0 && num_ok && x < 100000) steps = (int)x;
        else {
            fprintf(stderr, "rlhf bench model: bad option '%s %s'\n", a, v);
            rl_bench_model_usage(stderr);
            return 2;
        }
        i++;
    }
    static const struct {
        const char *name;
        int64_t B, T;
        int steps;
    } defaults[] = {{"tiny", 8, 32, 10},      {"small", 8, 128, 10},      {"gpt2", 4, 128, 3},
                    {"llama-tiny", 8, 32, 10}, {"llama-mini", 8, 128, 10}, {"smollm2-135m", 4, 128, 3},
                    {"qwen2.5-0.5b", 2, 128, 2}, {"mini", 8, 128, 10}};
    const size_t n_all = 3; /* "all": the GPT-2 rows, as before */
    int found = 0;
    rl_model_config probe;
    for (size_t d = 0; d < sizeof defaults / sizeof defaults[0]; d++)
        found |= strcmp(preset, "all") == 0 || strcmp(preset, defaults[d].name) == 0;
    if (!found && rl_model_config_preset(preset, &probe) != RL_OK) {
        fprintf(stderr, "rlhf bench model: unknown preset '%s' (%s, all)\n", preset, rl_model_preset_names());
        return 2;
    }
    const char *env = getenv("OPENBLAS_CORETYPE");
    double native, split;
    double peak = rl_bench_sgemm_peak(2048, 7, &native, &split);
    printf("rlhf %s bench model: OpenBLAS core %s (OPENBLAS_CORETYPE=%s), %d OpenMP threads "
           "(OpenBLAS serial inside them); sgemm peak (2048^3, best of 7) %.1f GFLOP/s "
           "(OpenBLAS's own %d threads %.1f, engine split %.1f)\n",
           RL_VERSION, rl_blas_corename(), env ? env : "unset", omp_get_max_threads(), peak,
           omp_get_max_threads(), native, split);
    int bad = 0;
    int ran = 0;
    for (size_t d = 0; d < sizeof defaults / sizeof defaults[0]; d++) {
        if (strcmp(preset, "all") == 0 ? d >= n_all : strcmp(preset, defaults[d].name) != 0) continue;
        bad |= rl_bench_model_one(defaults[d].name, B ? B : defaults[d].B, T ? T : defaults[d].T,
                                  steps ? steps : defaults[d].steps, peak, json);
        ran = 1;
    }
    if (!ran) bad |= rl_bench_model_one(preset, B ? B : 4, T ? T : 128, steps ? steps : 3, peak, json);
    return bad;
}

int rl_cmd_bench(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "model") == 0) return rl_bench_model(argc, argv);
    if (argc < 2 || strcmp(argv[1], "ops") != 0) {
        fprintf(stderr, "usage: rlhf bench ops | rlhf bench model [--help]\n");
        return 2;
    }
    printf("rlhf %s bench ops: OpenBLAS core %s, %d OpenMP threads; median of %d runs\n",
           RL_VERSION, rl_blas_corename(), omp_get_max_threads(), RL_BENCH_RUNS);
    rl_blas_warn_generic_core(stdout);
    rl_ctx *ctx = rl_ctx_new("cpu");
    if (!ctx) return 1;
    rl_bench_matmul(ctx, 512, 512, 512);
    rl_bench_matmul(ctx, 1024, 768, 768);
    rl_bench_elementwise(ctx, (int64_t)1 << 24);
    rl_bench_op_overhead(ctx);
    int bad = rl_ctx_error(ctx) != NULL;
    if (bad) fprintf(stderr, "rlhf bench: %s\n", rl_ctx_error(ctx));
    rl_ctx_free(ctx);
    return bad;
}
