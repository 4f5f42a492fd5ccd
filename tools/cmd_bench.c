/* tools/cmd_bench.c - `rlhf bench ops`: benchmarks, never tests. Prints the
 * median of several runs of: matmul through the engine against a direct
 * cblas_sgemm call of the same size, elementwise throughput on large tensors,
 * and the cost of one recorded op on a 1-element tensor.
 */
#include "cli.h"

#include "../ops/rl_ops.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

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

/* Engine matmul vs cblas_sgemm, interleaved so both see the same machine. */
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
    int reps = 5;
    for (int w = 0; w < 2; w++) { /* warm-up: thread pool, page faults */
        rl_matmul(ctx, ta, tb, 0, 0);
        rl_ctx_reset(ctx);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a,
                    (int)k, b, (int)n, 0.0f, c, (int)n);
    }
    for (int r = 0; r < RL_BENCH_RUNS; r++) {
        double t0 = rl_now();
        for (int i = 0; i < reps; i++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a,
                        (int)k, b, (int)n, 0.0f, c, (int)n);
        tc[r] = (rl_now() - t0) / reps;
        t0 = rl_now();
        for (int i = 0; i < reps; i++) {
            rl_matmul(ctx, ta, tb, 0, 0);
            rl_ctx_reset(ctx);
        }
        te[r] = (rl_now() - t0) / reps;
    }
    double me = rl_median(te, RL_BENCH_RUNS), mc = rl_median(tc, RL_BENCH_RUNS);
    double flop = 2.0 * (double)m * (double)k * (double)n;
    printf("matmul %lldx%lldx%lld f32: engine %.3f ms (%.1f GFLOP/s), cblas_sgemm %.3f ms "
           "(%.1f GFLOP/s), engine/direct = %.1f%%\n",
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

int rl_cmd_bench(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "ops") != 0) {
        fprintf(stderr, "usage: rlhf bench ops\n");
        return 2;
    }
    printf("rlhf %s bench ops: OpenBLAS core %s, %d threads; median of %d runs\n", RL_VERSION,
           rl_blas_corename(), rl_blas_threads(), RL_BENCH_RUNS);
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
