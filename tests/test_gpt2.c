/* tests/test_gpt2.c - GPT-2 on the engine (models/gpt2.c, models/generate.c):
 * presets and parameter counts (124,439,808 for gpt2), Hugging Face names and
 * initialisation, the forward against an independent plain-C reference of HF
 * GPT-2, f32 vs f64, the tied LM head, the score and value heads, token
 * log-probabilities and the SFT loss, f64 gradient checks of whole tiny models
 * for each head, and generation: the KV cache against full forwards on a
 * batch of prompts of different lengths, EOS and masks, top-k / top-p, seeds,
 * and returned log-probabilities against a re-scoring forward.
 *
 * `test_gpt2 NAME` runs only the tests whose name matches NAME (cmocka
 * filter, e.g. "test_generate*"), for valgrind runs.
 */
#include "rl_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_gradcheck.h"
#include "rl_internal.h"
#include "rl_gpt2.h"
#include "rl_ops.h"

#define setup rl_test_setup_ctx
#define teardown rl_test_teardown_ctx

static rl_gpt2_config tiny_cfg(void) {
    rl_gpt2_config c;
    assert_int_equal(rl_gpt2_config_preset("tiny", &c), RL_OK);
    return c;
}

/* Every element of t as doubles (malloc'ed). */
static double *host(rl_ctx *ctx, const rl_tensor *t) {
    assert_non_null(t);
    double *v = malloc(sizeof(double) * (size_t)t->numel);
    for (int64_t i = 0; i < t->numel; i++) v[i] = rl_tensor_get(ctx, t, i);
    return v;
}

static rl_tensor *ids_tensor(rl_ctx *ctx, int64_t B, int64_t T, const int32_t *v) {
    return rl_const(ctx, RL_I32, 2, (int64_t[]){B, T}, v);
}

/* Random ids in [0, V). */
static void random_ids(int32_t *ids, int64_t n, int64_t V, uint64_t seed) {
    rl_rng r;
    rl_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) ids[i] = (int32_t)(rl_rng_uniform(&r) * (double)V);
}

/* ---- presets, names, initialisation ------------------------------------------------- */

static void test_presets_and_counts(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c;
    assert_int_equal(rl_gpt2_config_preset("gpt2", &c), RL_OK);
    assert_int_equal(c.vocab, 50257);
    assert_int_equal(c.n_ctx, 1024);
    assert_int_equal(c.n_layer, 12);
    assert_int_equal(c.n_head, 12);
    assert_int_equal(c.n_embd, 768);
    assert_true(c.layer_norm_epsilon == 1e-5);
    /* OpenAI's 124M GPT-2 with the LM head tied to wte */
    assert_int_equal(rl_gpt2_config_num_params(&c, RL_GPT2_LM), 124439808);
    assert_int_equal(rl_gpt2_config_num_params(&c, RL_GPT2_SCORE), 124439808 + 768);
    assert_int_equal(rl_gpt2_config_num_params(&c, RL_GPT2_VALUE), 124439808 + 769);
    assert_int_equal(rl_gpt2_config_preset("nope", &c), RL_ERR_ARG);

    /* the formula against the tensors actually allocated */
    /* mini: 264*128 + 256*128 + 4 * (12*128^2 + 13*128) + 2*128 = 859,904 */
    const char *names[] = {"tiny", "small", "mini"};
    const int64_t want[] = {28544, 3292672, 859904};
    for (int p = 0; p < 3; p++) {
        assert_int_equal(rl_gpt2_config_preset(names[p], &c), RL_OK);
        assert_int_equal(rl_gpt2_config_num_params(&c, RL_GPT2_LM), want[p]);
        for (int k = 0; k < 3; k++) {
            if (p > 0 && k > 0) break; /* one model of the bigger presets is enough */
            rl_gpt2 *m = rl_gpt2_new(ctx, &c, (rl_gpt2_kind)k, RL_F32, 1);
            assert_non_null(m);
            assert_int_equal(rl_gpt2_num_params(m), rl_gpt2_config_num_params(&c, (rl_gpt2_kind)k));
            rl_gpt2_free(ctx, m);
        }
    }
    assert_ok(ctx);
    /* invalid configurations */
    c = tiny_cfg();
    c.n_head = 3; /* 32 % 3 != 0 */
    assert_null(rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F32, 1));
    assert_error_contains(ctx, "not a multiple of n_head");
    assert_int_equal(rl_gpt2_config_num_params(&c, RL_GPT2_LM), -1);
}

static void test_names_and_iteration(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_VALUE, RL_F32, 3);
    assert_non_null(m);
    static const char *const block[] = {
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
        "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
        "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"};
    const int64_t C = c.n_embd;
    const int64_t block_shapes[12][2] = {{C, 0}, {C, 0}, {C, 3 * C}, {3 * C, 0}, {C, C}, {C, 0},
                                         {C, 0}, {C, 0}, {C, 4 * C}, {4 * C, 0}, {4 * C, C}, {C, 0}};
    assert_int_equal(rl_gpt2_n_tensors(m), 2 + 12 * 2 + 2 + 2);
    assert_string_equal(rl_gpt2_tensor(m, 0)->name, "wte.weight");
    assert_string_equal(rl_gpt2_tensor(m, 1)->name, "wpe.weight");
    int i = 2;
    for (int l = 0; l < 2; l++)
        for (int j = 0; j < 12; j++, i++) {
            char want[64];
            snprintf(want, sizeof want, "h.%d.%s", l, block[j]);
            rl_tensor *t = rl_gpt2_tensor(m, i);
            assert_string_equal(t->name, want);
            assert_true(t == rl_gpt2_find(m, want));
            int nd = block_shapes[j][1] ? 2 : 1;
            assert_int_equal(t->ndim, nd);
            assert_int_equal(t->shape[0], block_shapes[j][0]);
            if (nd == 2) assert_int_equal(t->shape[1], block_shapes[j][1]);
            assert_true(t->flags & RL_TF_PARAM);
        }
    assert_string_equal(rl_gpt2_tensor(m, i++)->name, "ln_f.weight");
    assert_string_equal(rl_gpt2_tensor(m, i++)->name, "ln_f.bias");
    assert_string_equal(rl_gpt2_tensor(m, i++)->name, "v_head.summary.weight");
    assert_string_equal(rl_gpt2_tensor(m, i++)->name, "v_head.summary.bias");
    assert_null(rl_gpt2_tensor(m, i));
    assert_null(rl_gpt2_find(m, "lm_head.weight")); /* tied: no separate tensor */
    assert_null(rl_gpt2_find(m, "score.weight"));
    assert_int_equal(m->v_head_w->shape[0], 1);
    assert_int_equal(m->v_head_w->shape[1], C);
    assert_int_equal(m->v_head_b->numel, 1);
    char buf[160];
    assert_non_null(strstr(rl_gpt2_describe(m, buf, sizeof buf), "VALUE f32"));
    rl_gpt2_free(ctx, m);

    m = rl_gpt2_new(ctx, &c, RL_GPT2_SCORE, RL_F64, 3);
    rl_tensor *s = rl_gpt2_find(m, "score.weight");
    assert_non_null(s);
    assert_int_equal(s->shape[0], 1);
    assert_int_equal(s->shape[1], C);
    assert_int_equal(rl_gpt2_n_tensors(m), 29);
    assert_null(rl_gpt2_find(m, "v_head.summary.bias"));
    rl_gpt2_free(ctx, m);
    assert_ok(ctx);
}

/* mean and standard deviation of a tensor's values */
static void moments(rl_ctx *ctx, const rl_tensor *t, double *mean, double *sd) {
    double *v = host(ctx, t), s = 0, s2 = 0;
    for (int64_t i = 0; i < t->numel; i++) s += v[i];
    *mean = s / (double)t->numel;
    for (int64_t i = 0; i < t->numel; i++) s2 += (v[i] - *mean) * (v[i] - *mean);
    *sd = sqrt(s2 / (double)t->numel);
    free(v);
}

static void test_init_statistics(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c;
    assert_int_equal(rl_gpt2_config_preset("small", &c), RL_OK);
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_SCORE, RL_F32, 7);
    assert_non_null(m);
    const double proj = 0.02 / sqrt(2.0 * 4);
    for (int i = 0; i < m->n_tensors; i++) {
        rl_tensor *t = m->tensors[i];
        double mean, sd;
        moments(ctx, t, &mean, &sd);
        const char *n = t->name;
        size_t len = strlen(n);
        if (len > 5 && strcmp(n + len - 5, ".bias") == 0) {
            assert_true(mean == 0 && sd == 0); /* zeros */
        } else if (strstr(n, "ln_") && strstr(n, ".weight")) {
            assert_true(mean == 1 && sd == 0); /* ones */
        } else {
            double want = strstr(n, "c_proj.weight") ? proj
                          : strcmp(n, "score.weight") == 0 ? 1.0 / sqrt(257.0)
                                                            : 0.02;
            /* the sample sd of n normals has relative error ~1/sqrt(2n): at
             * least 65536 values here (1.4% at 5 sigma) except the head (256) */
            double tol = t->numel >= 65536 ? 0.015 : 0.25;
            if (fabs(sd / want - 1) > tol) fail_msg("%s: sd %g, want %g", n, sd, want);
            assert_true(fabs(mean) < 5 * want / sqrt((double)t->numel));
        }
    }
    /* same seed, same values; another seed, other values */
    rl_gpt2 *m2 = rl_gpt2_new(ctx, &c, RL_GPT2_SCORE, RL_F32, 7);
    rl_gpt2 *m3 = rl_gpt2_new(ctx, &c, RL_GPT2_SCORE, RL_F32, 8);
    assert_int_equal(memcmp(m->h[3].fc_w->data, m2->h[3].fc_w->data, (size_t)m->h[3].fc_w->numel * 4), 0);
    assert_int_not_equal(memcmp(m->h[3].fc_w->data, m3->h[3].fc_w->data, 64), 0);
    rl_gpt2_free(ctx, m);
    rl_gpt2_free(ctx, m2);
    rl_gpt2_free(ctx, m3);
    assert_ok(ctx);
}

/* Moves every parameter away from its init (small random perturbations of
 * biases and LN parameters too), so tests see non-trivial values everywhere. */
static void perturb(rl_ctx *ctx, rl_gpt2 *m, uint64_t seed, double scale) {
    rl_rng r;
    rl_rng_seed(&r, seed);
    for (int i = 0; i < m->n_tensors; i++) {
        rl_tensor *t = m->tensors[i];
        for (int64_t j = 0; j < t->numel; j++)
            rl_tensor_set(ctx, t, j, rl_tensor_get(ctx, t, j) + scale * rl_rng_normal(&r));
    }
}

/* ---- an independent plain-C reference of HF GPT-2 --------------------------------------- */

static double ref_gelu(double x) {
    return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
}

/* y[n, C] = layernorm of x[n, C] */
static void ref_ln(const double *x, double *y, int64_t n, int64_t C, const double *w,
                   const double *b, double eps) {
    for (int64_t r = 0; r < n; r++) {
        double mu = 0, var = 0;
        for (int64_t c = 0; c < C; c++) mu += x[r * C + c];
        mu /= (double)C;
        for (int64_t c = 0; c < C; c++) var += (x[r * C + c] - mu) * (x[r * C + c] - mu);
        var /= (double)C; /* biased, as torch.nn.LayerNorm */
        for (int64_t c = 0; c < C; c++)
            y[r * C + c] = (x[r * C + c] - mu) / sqrt(var + eps) * w[c] + b[c];
    }
}

/* Conv1D: y[n, O] = x[n, I] @ W[I, O] + b[O] */
static void ref_conv1d(const double *x, double *y, int64_t n, int64_t I, int64_t O,
                       const double *W, const double *b) {
    for (int64_t r = 0; r < n; r++)
        for (int64_t o = 0; o < O; o++) {
            double s = b[o];
            for (int64_t i = 0; i < I; i++) s += x[r * I + i] * W[i * O + o];
            y[r * O + o] = s;
        }
}

static double *param(rl_ctx *ctx, const rl_gpt2 *m, const char *fmt, int l) {
    char name[64];
    snprintf(name, sizeof name, fmt, l);
    rl_tensor *t = rl_gpt2_find(m, name);
    if (!t) fail_msg("no tensor %s", name);
    return host(ctx, t);
}

/* logits [B, T, V] of ids at positions pos (both [B, T]), written from the
 * HF modeling_gpt2 definitions with loops, nothing shared with the engine. */
static double *ref_logits(rl_ctx *ctx, const rl_gpt2 *m, const int32_t *ids, const int32_t *pos,
                          int64_t B, int64_t T) {
    const int64_t C = m->cfg.n_embd, H = m->cfg.n_head, D = C / H, V = m->cfg.vocab;
    const double eps = m->cfg.layer_norm_epsilon;
    const int64_t N = B * T;
    double *x = calloc((size_t)(N * C), sizeof(double)), *a = calloc((size_t)(N * C), sizeof(double));
    double *qkv = calloc((size_t)(N * 3 * C), sizeof(double)), *y = calloc((size_t)(N * C), sizeof(double));
    double *f = calloc((size_t)(N * 4 * C), sizeof(double)), *o = calloc((size_t)(N * C), sizeof(double));
    double *wte = param(ctx, m, "wte.weight", 0), *wpe = param(ctx, m, "wpe.weight", 0);
    for (int64_t r = 0; r < N; r++)
        for (int64_t c = 0; c < C; c++) x[r * C + c] = wte[ids[r] * C + c] + wpe[pos[r] * C + c];
    for (int l = 0; l < (int)m->cfg.n_layer; l++) {
        double *l1w = param(ctx, m, "h.%d.ln_1.weight", l), *l1b = param(ctx, m, "h.%d.ln_1.bias", l);
        double *aw = param(ctx, m, "h.%d.attn.c_attn.weight", l), *ab = param(ctx, m, "h.%d.attn.c_attn.bias", l);
        double *pw = param(ctx, m, "h.%d.attn.c_proj.weight", l), *pb = param(ctx, m, "h.%d.attn.c_proj.bias", l);
        double *l2w = param(ctx, m, "h.%d.ln_2.weight", l), *l2b = param(ctx, m, "h.%d.ln_2.bias", l);
        double *fw = param(ctx, m, "h.%d.mlp.c_fc.weight", l), *fb = param(ctx, m, "h.%d.mlp.c_fc.bias", l);
        double *mw = param(ctx, m, "h.%d.mlp.c_proj.weight", l), *mb = param(ctx, m, "h.%d.mlp.c_proj.bias", l);
        ref_ln(x, a, N, C, l1w, l1b, eps);
        ref_conv1d(a, qkv, N, C, 3 * C, aw, ab);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t t = 0; t < T; t++) {
                    const double *q = qkv + (b * T + t) * 3 * C + h * D;
                    double s[64], mx = -INFINITY, z = 0;
                    for (int64_t u = 0; u <= t; u++) {
                        const double *k = qkv + (b * T + u) * 3 * C + C + h * D;
                        double d = 0;
                        for (int64_t e = 0; e < D; e++) d += q[e] * k[e];
                        s[u] = d / sqrt((double)D);
                        mx = fmax(mx, s[u]);
                    }
                    for (int64_t u = 0; u <= t; u++) z += (s[u] = exp(s[u] - mx));
                    for (int64_t e = 0; e < D; e++) {
                        double acc = 0;
                        for (int64_t u = 0; u <= t; u++) acc += s[u] / z * qkv[(b * T + u) * 3 * C + 2 * C + h * D + e];
                        y[(b * T + t) * C + h * D + e] = acc;
                    }
                }
        ref_conv1d(y, o, N, C, C, pw, pb);
        for (int64_t i = 0; i < N * C; i++) x[i] += o[i];
        ref_ln(x, a, N, C, l2w, l2b, eps);
        ref_conv1d(a, f, N, C, 4 * C, fw, fb);
        for (int64_t i = 0; i < N * 4 * C; i++) f[i] = ref_gelu(f[i]);
        ref_conv1d(f, o, N, 4 * C, C, mw, mb);
        for (int64_t i = 0; i < N * C; i++) x[i] += o[i];
        free(l1w), free(l1b), free(aw), free(ab), free(pw), free(pb);
        free(l2w), free(l2b), free(fw), free(fb), free(mw), free(mb);
    }
    double *lfw = param(ctx, m, "ln_f.weight", 0), *lfb = param(ctx, m, "ln_f.bias", 0);
    ref_ln(x, a, N, C, lfw, lfb, eps);
    double *logits = malloc(sizeof(double) * (size_t)(N * V));
    for (int64_t r = 0; r < N; r++)
        for (int64_t v = 0; v < V; v++) {
            double s = 0;
            for (int64_t c = 0; c < C; c++) s += a[r * C + c] * wte[v * C + c];
            logits[r * V + v] = s;
        }
    free(x), free(a), free(qkv), free(y), free(f), free(o), free(wte), free(wpe), free(lfw), free(lfb);
    return logits;
}

static void test_forward_matches_reference(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F64, 11);
    assert_non_null(m);
    perturb(ctx, m, 12, 0.1); /* LN and biases away from 1 / 0, larger activations */
    enum { B = 2, T = 7 };
    int32_t ids[B * T], pos[B * T];
    random_ids(ids, B * T, c.vocab, 13);
    for (int64_t i = 0; i < B * T; i++) pos[i] = (int32_t)(i % T);
    double *want = ref_logits(ctx, m, ids, pos, B, T);
    rl_tensor *lg = rl_gpt2_logits(ctx, m, ids_tensor(ctx, B, T, ids), NULL);
    assert_ok(ctx);
    assert_int_equal(lg->ndim, 3);
    assert_int_equal(lg->shape[0], B);
    assert_int_equal(lg->shape[1], T);
    assert_int_equal(lg->shape[2], c.vocab);
    double *got = host(ctx, lg), worst = 0, scale = 0;
    for (int64_t i = 0; i < lg->numel; i++) {
        worst = fmax(worst, fabs(got[i] - want[i]));
        scale = fmax(scale, fabs(want[i]));
    }
    assert_true(scale > 0.1); /* non-trivial logits */
    if (worst > 1e-10) fail_msg("f64 logits differ from the reference by %g", worst);
    free(got), free(want);

    /* explicit position ids [B, T] (row 1 offset by 5) and [T] */
    for (int64_t t = 0; t < T; t++) pos[T + t] = (int32_t)(t + 5);
    want = ref_logits(ctx, m, ids, pos, B, T);
    lg = rl_gpt2_logits(ctx, m, ids_tensor(ctx, B, T, ids), ids_tensor(ctx, B, T, pos));
    got = host(ctx, lg);
    worst = 0;
    for (int64_t i = 0; i < lg->numel; i++) worst = fmax(worst, fabs(got[i] - want[i]));
    if (worst > 1e-10) fail_msg("with position ids, logits differ from the reference by %g", worst);
    free(got), free(want);
    lg = rl_gpt2_logits(ctx, m, ids_tensor(ctx, B, T, ids), rl_const(ctx, RL_I32, 1, (int64_t[]){T}, pos));
    assert_non_null(lg);
    assert_near(rl_tensor_get(ctx, lg, 3), rl_tensor_get(ctx, rl_gpt2_logits(ctx, m, ids_tensor(ctx, B, T, ids), NULL), 3), 0);
    assert_ok(ctx);

    /* bad inputs */
    int32_t long_ids[33] = {0};
    assert_null(rl_gpt2_logits(ctx, m, ids_tensor(ctx, 1, 33, long_ids), NULL));
    assert_error_contains(ctx, "1 <= T <= n_ctx = 32");
    rl_ctx_clear_error(ctx);
    ids[3] = 64;
    assert_null(rl_gpt2_logits(ctx, m, ids_tensor(ctx, B, T, ids), NULL));
    assert_error_contains(ctx, "embedding");
    rl_ctx_clear_error(ctx);
    ids[3] = 1;
    assert_null(rl_gpt2_values(ctx, m, ids_tensor(ctx, B, T, ids), NULL));
    assert_error_contains(ctx, "no value head");
    rl_ctx_clear_error(ctx);
    assert_null(rl_gpt2_end_score(ctx, m, ids_tensor(ctx, B, T, ids), NULL));
    assert_error_contains(ctx, "no score head");
    rl_ctx_clear_error(ctx);
    rl_ctx_reset(ctx);
    rl_gpt2_free(ctx, m);
}

static void test_f32_matches_f64(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m64 = rl_gpt2_new(ctx, &c, RL_GPT2_VALUE, RL_F64, 21);
    rl_gpt2 *m32 = rl_gpt2_new(ctx, &c, RL_GPT2_VALUE, RL_F32, 21);
    assert_non_null(m64);
    assert_non_null(m32);
    /* same draws, rounded */
    for (int i = 0; i < m64->n_tensors; i++)
        for (int64_t j = 0; j < m64->tensors[i]->numel; j += 7)
            assert_true((float)rl_tensor_get(ctx, m64->tensors[i], j) ==
                        (float)rl_tensor_get(ctx, m32->tensors[i], j));
    enum { B = 3, T = 16 };
    int32_t ids[B * T];
    random_ids(ids, B * T, c.vocab, 22);
    rl_tensor *h64 = rl_gpt2_forward_hidden(ctx, m64, ids_tensor(ctx, B, T, ids), NULL);
    rl_tensor *h32 = rl_gpt2_forward_hidden(ctx, m32, ids_tensor(ctx, B, T, ids), NULL);
    double *a = host(ctx, rl_gpt2_lm_head(ctx, m64, h64)), *b = host(ctx, rl_gpt2_lm_head(ctx, m32, h32));
    double *va = host(ctx, rl_gpt2_value_head(ctx, m64, h64)), *vb = host(ctx, rl_gpt2_value_head(ctx, m32, h32));
    assert_ok(ctx);
    double worst = 0, wv = 0;
    for (int64_t i = 0; i < B * T * c.vocab; i++) worst = fmax(worst, fabs(a[i] - b[i]) / (1 + fabs(a[i])));
    for (int64_t i = 0; i < B * T; i++) wv = fmax(wv, fabs(va[i] - vb[i]) / (1 + fabs(va[i])));
    /* f32 rounding (6e-8) through a few dozen ops */
    if (worst > 1e-5 || wv > 1e-5) fail_msg("f32 vs f64: logits %g, values %g", worst, wv);
    free(a), free(b), free(va), free(vb);
    rl_ctx_reset(ctx);
    rl_gpt2_free(ctx, m64);
    rl_gpt2_free(ctx, m32);
}

static void test_tied_head(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F64, 31);
    enum { B = 2, T = 5 };
    int32_t ids[B * T];
    random_ids(ids, B * T, c.vocab, 32);
    rl_tensor *hid = rl_gpt2_forward_hidden(ctx, m, ids_tensor(ctx, B, T, ids), NULL);
    rl_tensor *lg = rl_gpt2_lm_head(ctx, m, hid);
    assert_ok(ctx);
    assert_int_equal(hid->ndim, 3);
    assert_int_equal(hid->shape[2], c.n_embd);
    double *h = host(ctx, hid), *l = host(ctx, lg), *w = host(ctx, m->wte);
    for (int64_t r = 0; r < B * T; r++)
        for (int64_t v = 0; v < c.vocab; v++) {
            double s = 0;
            for (int64_t k = 0; k < c.n_embd; k++) s += h[r * c.n_embd + k] * w[v * c.n_embd + k];
            assert_near(l[r * c.vocab + v], s, 1e-12);
        }
    /* the gradient of the loss reaches wte through both ends: rows of tokens
     * absent from the input get gradient only through the head */
    int present[64] = {0};
    for (int i = 0; i < B * T; i++) present[ids[i]] = 1;
    int absent = 0;
    while (present[absent]) absent++;
    rl_tensor_zero_grad(ctx, m->wte);
    rl_tensor *loss = rl_gpt2_sft_loss(ctx, m, ids_tensor(ctx, B, T, ids), NULL);
    assert_int_equal(rl_backward(ctx, loss), RL_OK);
    double g = 0;
    for (int64_t k = 0; k < c.n_embd; k++) g += fabs(rl_tensor_get(ctx, m->wte->grad, absent * c.n_embd + k));
    assert_true(g > 0);
    free(h), free(l), free(w);
    rl_ctx_reset(ctx);
    rl_gpt2_free(ctx, m);
}

/* ---- heads and losses ---------------------------------------------------------------- */

static void test_score_head(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_SCORE, RL_F64, 41);
    enum { B = 3, T = 6 };
    int32_t ids[B * T], mask[B * T];
    const int lens[B] = {6, 2, 4};
    random_ids(ids, B * T, c.vocab, 42);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) mask[b * T + t] = t < lens[b];
    rl_tensor *s = rl_gpt2_end_score(ctx, m, ids_tensor(ctx, B, T, ids), ids_tensor(ctx, B, T, mask));
    assert_ok(ctx);
    assert_int_equal(s->ndim, 1);
    assert_int_equal(s->shape[0], B);
    double *sv = host(ctx, s);
    double *h = host(ctx, rl_gpt2_forward_hidden(ctx, m, ids_tensor(ctx, B, T, ids), NULL));
    double *w = host(ctx, m->score_w);
    for (int b = 0; b < B; b++) {
        double want = 0;
        for (int k = 0; k < c.n_embd; k++) want += h[(b * T + lens[b] - 1) * c.n_embd + k] * w[k];
        assert_near(sv[b], want, 1e-12);
    }
    /* what follows a row's end does not matter (causal attention) */
    int32_t ids2[B * T];
    memcpy(ids2, ids, sizeof ids);
    for (int b = 0; b < B; b++)
        for (int t = lens[b]; t < T; t++) ids2[b * T + t] = (ids2[b * T + t] + 17) % (int32_t)c.vocab;
    double *sv2 = host(ctx, rl_gpt2_end_score(ctx, m, ids_tensor(ctx, B, T, ids2), ids_tensor(ctx, B, T, mask)));
    for (int b = 0; b < B; b++) assert_near(sv2[b], sv[b], 1e-12);
    /* NULL mask: the last position */
    double *sv3 = host(ctx, rl_gpt2_end_score(ctx, m, ids_tensor(ctx, B, T, ids), NULL));
    assert_near(sv3[0], sv[0], 1e-12); /* row 0 is full */
    assert_true(fabs(sv3[1] - sv[1]) > 1e-9);
    assert_ok(ctx);
    /* a left-padded mask is refused */
    mask[1 * T + 0] = 0;
    mask[1 * T + 2] = 1;
    assert_null(rl_gpt2_end_score(ctx, m, ids_tensor(ctx, B, T, ids), ids_tensor(ctx, B, T, mask)));
    assert_error_contains(ctx, "mask row 1");
    rl_ctx_clear_error(ctx);
    free(sv), free(sv2), free(sv3), free(h), free(w);
    rl_ctx_reset(ctx);
    rl_gpt2_free(ctx, m);
}

static void test_value_head(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_VALUE, RL_F64, 51);
    rl_tensor_set(ctx, m->v_head_b, 0, 0.25);
    enum { B = 2, T = 5 };
    int32_t ids[B * T];
    random_ids(ids, B * T, c.vocab, 52);
    rl_tensor *v = rl_gpt2_values(ctx, m, ids_tensor(ctx, B, T, ids), NULL);
    assert_ok(ctx);
    assert_int_equal(v->ndim, 2);
    assert_int_equal(v->shape[0], B);
    assert_int_equal(v->shape[1], T);
    double *vv = host(ctx, v);
    double *h = host(ctx, rl_gpt2_forward_hidden(ctx, m, ids_tensor(ctx, B, T, ids), NULL));
    double *w = host(ctx, m->v_head_w);
    for (int r = 0; r < B * T; r++) {
        double want = 0.25;
        for (int k = 0; k < c.n_embd; k++) want += h[r * c.n_embd + k] * w[k];
        assert_near(vv[r], want, 1e-12);
    }
    /* a VALUE model also has the (tied) LM head: policy and value share a trunk */
    assert_non_null(rl_gpt2_logits(ctx, m, ids_tensor(ctx, B, T, ids), NULL));
    free(vv), free(h), free(w);
    rl_ctx_reset(ctx);
    rl_gpt2_free(ctx, m);
}

static void test_logprobs_and_sft_loss(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F64, 61);
    perturb(ctx, m, 62, 0.05);
    enum { B = 2, T = 6 };
    int32_t ids[B * T], mask[B * T] = {0, 0, 1, 1, 1, 0, /**/ 0, 1, 1, 1, 1, 1};
    random_ids(ids, B * T, c.vocab, 63);
    const int64_t V = c.vocab;
    double *lg = host(ctx, rl_gpt2_logits(ctx, m, ids_tensor(ctx, B, T, ids), NULL));
    double want[B * T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            if (t == 0) {
                want[b * T] = 0;
                continue;
            }
            const double *row = lg + (b * T + t - 1) * V; /* position t-1 predicts token t */
            double mx = row[0], s = 0;
            for (int v = 1; v < V; v++) mx = fmax(mx, row[v]);
            for (int v = 0; v < V; v++) s += exp(row[v] - mx);
            want[b * T + t] = row[ids[b * T + t]] - mx - log(s);
        }
    double *all = host(ctx, rl_gpt2_token_logprobs(ctx, m, ids_tensor(ctx, B, T, ids), NULL));
    double *msk = host(ctx, rl_gpt2_token_logprobs(ctx, m, ids_tensor(ctx, B, T, ids), ids_tensor(ctx, B, T, mask)));
    assert_ok(ctx);
    double sum = 0;
    int n = 0;
    for (int i = 0; i < B * T; i++) {
        assert_near(all[i], want[i], 1e-12);
        assert_true(all[i] < 0 || i % T == 0);
        assert_near(msk[i], (mask[i] && i % T) ? want[i] : 0.0, 1e-12);
        if (mask[i] && i % T) sum -= want[i], n++;
    }
    rl_tensor *loss = rl_gpt2_sft_loss(ctx, m, ids_tensor(ctx, B, T, ids), ids_tensor(ctx, B, T, mask));
    assert_ok(ctx);
    assert_int_equal(loss->ndim, 0);
    assert_near(rl_tensor_get(ctx, loss, 0), sum / n, 1e-12);
    /* near-uniform initial model: the loss is about log V */
    rl_gpt2 *fresh = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F64, 64);
    assert_near(rl_tensor_get(ctx, rl_gpt2_sft_loss(ctx, fresh, ids_tensor(ctx, B, T, ids), NULL), 0), log(64.0), 0.1);
    /* a mask with nothing to predict */
    int32_t none[B * T] = {1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0};
    assert_null(rl_gpt2_sft_loss(ctx, m, ids_tensor(ctx, B, T, ids), ids_tensor(ctx, B, T, none)));
    assert_error_contains(ctx, "selects no token");
    rl_ctx_clear_error(ctx);
    free(lg), free(all), free(msk);
    rl_ctx_reset(ctx);
    rl_gpt2_free(ctx, m);
    rl_gpt2_free(ctx, fresh);
}

static void test_new_from(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *lm = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F32, 71);
    perturb(ctx, lm, 72, 0.01);
    rl_gpt2 *rm = rl_gpt2_new_from(ctx, lm, RL_GPT2_SCORE, 73);
    rl_gpt2 *vm = rl_gpt2_new_from(ctx, rm, RL_GPT2_VALUE, 74);
    rl_gpt2 *copy = rl_gpt2_new_from(ctx, vm, RL_GPT2_VALUE, 75);
    assert_non_null(rm);
    assert_non_null(vm);
    assert_non_null(copy);
    for (int i = 0; i < lm->n_tensors; i++) {
        rl_tensor *a = lm->tensors[i];
        size_t bytes = (size_t)a->numel * 4;
        assert_int_equal(memcmp(a->data, rl_gpt2_find(rm, a->name)->data, bytes), 0);
        assert_int_equal(memcmp(a->data, rl_gpt2_find(vm, a->name)->data, bytes), 0);
    }
    for (int i = 0; i < vm->n_tensors; i++) /* same kind: a full copy, head included */
        assert_int_equal(memcmp(vm->tensors[i]->data, copy->tensors[i]->data, (size_t)vm->tensors[i]->numel * 4), 0);
    /* fresh heads: N(0, 1/sqrt(C + 1)) weights, zero bias */
    double mean, sd;
    moments(ctx, rm->score_w, &mean, &sd);
    assert_true(sd > 0.3 / sqrt(33.0) && sd < 3 / sqrt(33.0));
    assert_true(rl_tensor_get(ctx, vm->v_head_b, 0) == 0);
    moments(ctx, vm->v_head_w, &mean, &sd);
    assert_true(sd > 0.3 / sqrt(33.0) && sd < 3 / sqrt(33.0));
    assert_ok(ctx);
    rl_gpt2_free(ctx, lm);
    rl_gpt2_free(ctx, rm);
    rl_gpt2_free(ctx, vm);
    rl_gpt2_free(ctx, copy);
}

/* ---- gradient checks (f64, every parameter tensor, 8 sampled elements each) ---------- */

typedef struct gc_user {
    rl_gpt2 *m;
    int64_t B, T;
    const int32_t *ids, *mask;
    int head; /* 0 LM (SFT loss), 1 score, 2 value */
} gc_user;

static rl_tensor *gc_model_fn(rl_ctx *ctx, rl_tensor **in, void *user) {
    (void)in; /* the model's own parameters are the inputs */
    gc_user *u = user;
    rl_tensor *ids = ids_tensor(ctx, u->B, u->T, u->ids);
    rl_tensor *mask = ids_tensor(ctx, u->B, u->T, u->mask);
    if (u->head == 0) return rl_gpt2_sft_loss(ctx, u->m, ids, mask);
    if (u->head == 1) return rl_gpt2_end_score(ctx, u->m, ids, mask);
    return rl_gpt2_values(ctx, u->m, ids, NULL);
}

static void run_model_gradcheck(rl_ctx *ctx, rl_gpt2_kind kind, int head) {
    rl_gpt2_config c = tiny_cfg();
    enum { B = 2, T = 6 };
    c.n_ctx = T; /* every wpe row is used, so its sampled elements get gradients */
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, kind, RL_F64, 81 + (uint64_t)head);
    assert_non_null(m);
    perturb(ctx, m, 82, 0.05);
    int32_t ids[B * T];
    /* LM: the loss counts tokens 1..4 of row 0 and 2..5 of row 1; score: rows
     * of lengths 5 and 6 (right padding) */
    const int32_t lm_mask[B * T] = {0, 1, 1, 1, 1, 0, /**/ 0, 0, 1, 1, 1, 1};
    const int32_t sc_mask[B * T] = {1, 1, 1, 1, 1, 0, /**/ 1, 1, 1, 1, 1, 1};
    random_ids(ids, B * T, c.vocab, 83);
    gc_user u = {m, B, T, ids, head == 0 ? lm_mask : sc_mask, head};
    rl_gc_opts o;
    rl_gc_opts_default(&o);
    o.max_elems = 8;
    o.seed = 84;
    rl_gc_result r;
    rl_status s = rl_gradcheck_fn(ctx, gc_model_fn, &u, m->n_tensors, m->tensors, &o, &r);
    if (s != RL_OK || !r.passed) fail_msg("gradcheck (head %d): %s", head, r.msg);
    assert_int_equal(r.n_checked, 8 * m->n_tensors - (kind == RL_GPT2_VALUE ? 7 : 0)); /* v_head.bias has 1 */
    print_message("  head %d: %d elements, max abs err %.3g, max rel err %.3g\n", head, r.n_checked,
                  r.max_abs, r.max_rel);
    rl_gpt2_free(ctx, m);
}

static void test_gradcheck_lm(void **state) { run_model_gradcheck(*state, RL_GPT2_LM, 0); }
static void test_gradcheck_score(void **state) { run_model_gradcheck(*state, RL_GPT2_SCORE, 1); }
static void test_gradcheck_value(void **state) { run_model_gradcheck(*state, RL_GPT2_VALUE, 2); }

/* ---- generation ------------------------------------------------------------------------ */

enum { GB = 3, GSTRIDE = 8 };
static const int64_t g_lens[GB] = {5, 2, 8};

static void gen_prompts(int32_t *p, int64_t V) {
    random_ids(p, GB * GSTRIDE, V, 91);
    for (int b = 0; b < GB; b++) /* junk after each prompt's end must be ignored */
        for (int64_t t = g_lens[b]; t < GSTRIDE; t++) p[b * GSTRIDE + t] = -7;
}

static rl_gen_out gen(rl_ctx *ctx, rl_gpt2 *m, const rl_gen_cfg *cfg, uint64_t seed) {
    int32_t p[GB * GSTRIDE];
    gen_prompts(p, m->cfg.vocab);
    rl_rng r;
    rl_rng_seed(&r, seed);
    rl_gen_out o;
    rl_status s = rl_gpt2_generate(ctx, m, p, g_lens, GB, GSTRIDE, cfg, &r, &o);
    if (s != RL_OK) fail_msg("generate: %s", rl_ctx_error(ctx));
    /* structural invariants of every output */
    assert_int_equal(o.B, GB);
    int64_t T = 0;
    for (int b = 0; b < GB; b++) {
        assert_int_equal(o.prompt_len[b], g_lens[b]);
        T = o.len[b] > T ? o.len[b] : T;
        assert_true(o.len[b] - g_lens[b] <= cfg->max_new_tokens);
        for (int64_t t = 0; t < o.T; t++) {
            int64_t i = b * o.T + t;
            assert_int_equal(o.attention_mask[i], t < o.len[b]);
            assert_int_equal(o.response_mask[i], t >= g_lens[b] && t < o.len[b]);
            if (t < g_lens[b]) assert_int_equal(o.tokens[i], p[b * GSTRIDE + t]);
            if (t >= o.len[b]) assert_int_equal(o.tokens[i], cfg->pad_id);
            if (!o.response_mask[i]) assert_true(o.logprobs[i] == 0 && o.sample_logprobs[i] == 0);
            else assert_true(o.logprobs[i] <= 0 && o.sample_logprobs[i] <= 1e-12);
            /* only the last generated token may be EOS */
            if (o.response_mask[i] && t < o.len[b] - 1) assert_int_not_equal(o.tokens[i], cfg->eos_id);
        }
    }
    assert_int_equal(o.T, T);
    return o;
}

static void assert_same_tokens(const rl_gen_out *a, const rl_gen_out *b) {
    assert_int_equal(a->T, b->T);
    for (int64_t i = 0; i < a->B * a->T; i++) {
        if (a->tokens[i] != b->tokens[i])
            fail_msg("token %lld differs: %d vs %d", (long long)i, a->tokens[i], b->tokens[i]);
        assert_int_equal(a->response_mask[i], b->response_mask[i]);
    }
}

static void test_generate_cache_matches_full_forward(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    for (int d = 0; d < 2; d++) {
        rl_dtype dt = d ? RL_F64 : RL_F32;
        rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, dt, 101);
        perturb(ctx, m, 102, 0.3); /* a peakier, less uniform model */
        rl_gen_cfg cfg = rl_gen_cfg_default();
        cfg.greedy = 1;
        cfg.max_new_tokens = 12;
        rl_gen_out a = gen(ctx, m, &cfg, 1);
        cfg.use_cache = 0;
        rl_gen_out b = gen(ctx, m, &cfg, 1);
        assert_same_tokens(&a, &b);
        assert_int_equal(a.T, 8 + 12);
        for (int64_t i = 0; i < a.B * a.T; i++) assert_near(a.logprobs[i], b.logprobs[i], d ? 1e-12 : 1e-5);
        /* sampling with the same seed takes the same path through either */
        cfg.greedy = 0;
        cfg.temperature = 0.8;
        rl_gen_out s1 = gen(ctx, m, &cfg, 5);
        cfg.use_cache = 1;
        rl_gen_out s2 = gen(ctx, m, &cfg, 5);
        assert_same_tokens(&s1, &s2);
        rl_gen_out_free(&a), rl_gen_out_free(&b), rl_gen_out_free(&s1), rl_gen_out_free(&s2);
        rl_gpt2_free(ctx, m);
    }
    assert_ok(ctx);
    assert_int_equal(rl_ctx_grad_enabled(ctx), 1); /* restored */
}

static void test_generate_eos_and_masks(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F32, 111);
    perturb(ctx, m, 112, 0.3);
    rl_gen_cfg cfg = rl_gen_cfg_default();
    cfg.greedy = 1;
    cfg.max_new_tokens = 10;
    cfg.pad_id = 63;
    rl_gen_out ref = gen(ctx, m, &cfg, 1);
    /* EOS = row 0's third generated token: row 0 stops there at the latest */
    cfg.eos_id = ref.tokens[0 * ref.T + g_lens[0] + 2];
    rl_gen_out o = gen(ctx, m, &cfg, 1);
    int64_t stopped = 0;
    for (int b = 0; b < GB; b++) {
        /* expected end: the first EOS of the run without EOS, or max_new */
        int64_t end = g_lens[b] + cfg.max_new_tokens;
        for (int64_t t = g_lens[b]; t < g_lens[b] + cfg.max_new_tokens; t++)
            if (ref.tokens[b * ref.T + t] == cfg.eos_id) {
                end = t + 1;
                break;
            }
        assert_int_equal(o.len[b], end);
        stopped += end < g_lens[b] + cfg.max_new_tokens;
        for (int64_t t = 0; t < end; t++) assert_int_equal(o.tokens[b * o.T + t], ref.tokens[b * ref.T + t]);
        if (end < g_lens[b] + cfg.max_new_tokens) {
            assert_int_equal(o.tokens[b * o.T + end - 1], cfg.eos_id);
            assert_int_equal(o.response_mask[b * o.T + end - 1], 1); /* EOS is in the response */
        }
    }
    assert_true(o.len[0] <= g_lens[0] + 3);
    assert_true(stopped >= 1);
    rl_gen_out_free(&ref), rl_gen_out_free(&o);

    /* a row reaching n_ctx stops there */
    int32_t p[32];
    random_ids(p, 32, c.vocab, 113);
    int64_t len = 30;
    cfg.eos_id = -1;
    rl_gen_out full;
    assert_int_equal(rl_gpt2_generate(ctx, m, p, &len, 1, 32, &cfg, NULL, &full), RL_OK);
    assert_int_equal(full.len[0], 32);
    assert_int_equal(full.T, 32);
    rl_gen_out_free(&full);
    /* max_new_tokens 0: the prompts back */
    cfg.max_new_tokens = 0;
    rl_gen_out none = gen(ctx, m, &cfg, 1);
    assert_int_equal(none.T, 8);
    rl_gen_out_free(&none);
    rl_gpt2_free(ctx, m);
    assert_ok(ctx);
}

static void test_generate_topk1_topp_tiny_are_greedy(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F32, 121);
    perturb(ctx, m, 122, 0.3);
    rl_gen_cfg cfg = rl_gen_cfg_default();
    cfg.max_new_tokens = 10;
    cfg.greedy = 1;
    rl_gen_out g = gen(ctx, m, &cfg, 1);
    cfg.greedy = 0;
    cfg.top_k = 1;
    cfg.temperature = 1.3;
    rl_gen_out k1 = gen(ctx, m, &cfg, 2);
    assert_same_tokens(&g, &k1);
    cfg.top_k = 0;
    cfg.top_p = 1e-9; /* the nucleus is the single most likely token */
    rl_gen_out p0 = gen(ctx, m, &cfg, 3);
    assert_same_tokens(&g, &p0);
    for (int64_t i = 0; i < g.B * g.T; i++) {
        assert_near(k1.logprobs[i], g.logprobs[i], 0); /* the policy's log-prob, not the filtered one */
        assert_true(k1.sample_logprobs[i] == 0);       /* a single candidate: probability 1 */
    }
    rl_gen_out_free(&g), rl_gen_out_free(&k1), rl_gen_out_free(&p0);
    rl_gpt2_free(ctx, m);
}

/* log softmax of row[0..V) at index i */
static double log_softmax_at(const double *row, int64_t V, int64_t i) {
    double mx = row[0], s = 0;
    for (int64_t v = 1; v < V; v++) mx = fmax(mx, row[v]);
    for (int64_t v = 0; v < V; v++) s += exp(row[v] - mx);
    return row[i] - mx - log(s);
}

static void test_generate_topk_topp_sets(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F64, 131);
    perturb(ctx, m, 132, 0.3);
    const int64_t V = c.vocab;
    for (int mode = 0; mode < 2; mode++) {
        rl_gen_cfg cfg = rl_gen_cfg_default();
        cfg.max_new_tokens = 12;
        cfg.temperature = 0.7;
        if (mode == 0) cfg.top_k = 3;
        else cfg.top_p = 0.6;
        rl_gen_out o = gen(ctx, m, &cfg, 133 + (uint64_t)mode);
        double *lg = host(ctx, rl_gpt2_logits(ctx, m, ids_tensor(ctx, o.B, o.T, o.tokens), NULL));
        int n = 0;
        for (int64_t b = 0; b < o.B; b++)
            for (int64_t t = 0; t < o.T; t++) {
                if (!o.response_mask[b * o.T + t]) continue;
                const double *row = lg + (b * o.T + t - 1) * V;
                int32_t tok = o.tokens[b * o.T + t];
                double z[64] = {0}, zt = row[tok] / cfg.temperature;
                for (int64_t v = 0; v < V; v++) z[v] = row[v] / cfg.temperature;
                /* rank of the token and the mass of the tokens above it */
                int above = 0;
                double pt = exp(log_softmax_at(z, V, tok)), mass_above = 0;
                for (int64_t v = 0; v < V; v++)
                    if (z[v] > zt) above++, mass_above += exp(log_softmax_at(z, V, v));
                double kept = 0; /* the sampling distribution's normaliser */
                for (int64_t v = 0; v < V; v++) {
                    double pv = exp(log_softmax_at(z, V, v));
                    int rank = 0;
                    double ma = 0;
                    for (int64_t u = 0; u < V; u++)
                        if (z[u] > z[v]) rank++, ma += exp(log_softmax_at(z, V, u));
                    if (mode == 0 ? rank < 3 : ma < cfg.top_p) kept += pv;
                }
                if (mode == 0) assert_true(above < 3);
                else assert_true(mass_above < cfg.top_p);
                assert_near(o.sample_logprobs[b * o.T + t], log(pt / kept), 1e-9);
                assert_near(o.logprobs[b * o.T + t], log_softmax_at(row, V, tok), 1e-9);
                n++;
            }
        assert_true(n == 36);
        free(lg);
        rl_ctx_reset(ctx);
        rl_gen_out_free(&o);
    }
    rl_gpt2_free(ctx, m);
}

static void test_generate_seeded(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F32, 141);
    rl_gen_cfg cfg = rl_gen_cfg_default();
    cfg.max_new_tokens = 10;
    rl_gen_out a = gen(ctx, m, &cfg, 7), b = gen(ctx, m, &cfg, 7), d = gen(ctx, m, &cfg, 8);
    assert_same_tokens(&a, &b);
    for (int64_t i = 0; i < a.B * a.T; i++) assert_true(a.logprobs[i] == b.logprobs[i]);
    int differ = 0;
    for (int64_t i = 0; i < a.B * a.T; i++) differ += a.tokens[i] != d.tokens[i];
    assert_true(differ > 5); /* a near-uniform model over 64 tokens: 30 draws */
    rl_gen_out_free(&a), rl_gen_out_free(&b), rl_gen_out_free(&d);
    rl_gpt2_free(ctx, m);
}

static void test_generate_logprobs_match_forward(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F32, 151);
    perturb(ctx, m, 152, 0.3);
    rl_gen_cfg cfg = rl_gen_cfg_default();
    cfg.max_new_tokens = 16;
    cfg.eos_id = 5;
    rl_gen_out o = gen(ctx, m, &cfg, 153);
    rl_tensor *ids = ids_tensor(ctx, o.B, o.T, o.tokens);
    rl_tensor *mask = ids_tensor(ctx, o.B, o.T, o.response_mask);
    double *lp = host(ctx, rl_gpt2_token_logprobs(ctx, m, ids, mask));
    assert_ok(ctx);
    double worst = 0;
    int n = 0;
    for (int64_t i = 0; i < o.B * o.T; i++) {
        worst = fmax(worst, fabs(lp[i] - o.logprobs[i]));
        n += o.response_mask[i];
    }
    assert_true(n > 10);
    if (worst > 1e-5) fail_msg("generation log-probs differ from the forward's by %g", worst);
    print_message("  %d generated tokens, worst log-prob difference %.3g (f32)\n", n, worst);
    free(lp);
    rl_ctx_reset(ctx);
    rl_gen_out_free(&o);
    rl_gpt2_free(ctx, m);
}

static void test_generate_errors(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config c = tiny_cfg();
    rl_gpt2 *m = rl_gpt2_new(ctx, &c, RL_GPT2_LM, RL_F32, 161);
    int32_t p[4] = {1, 2, 3, 4};
    int64_t len = 4, zero = 0;
    rl_gen_cfg cfg = rl_gen_cfg_default();
    rl_gen_out o;
    rl_rng r;
    rl_rng_seed(&r, 1);
    assert_int_equal(rl_gpt2_generate(ctx, m, p, &len, 1, 4, &cfg, NULL, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "needs an rl_rng");
    assert_null(o.tokens);
    rl_ctx_clear_error(ctx);
    assert_int_equal(rl_gpt2_generate(ctx, m, p, &zero, 1, 4, &cfg, &r, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "prompt 0 has length 0");
    rl_ctx_clear_error(ctx);
    p[2] = 64;
    assert_int_equal(rl_gpt2_generate(ctx, m, p, &len, 1, 4, &cfg, &r, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "token 2 is 64");
    rl_ctx_clear_error(ctx);
    p[2] = 3;
    cfg.temperature = 0;
    assert_int_equal(rl_gpt2_generate(ctx, m, p, &len, 1, 4, &cfg, &r, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "temperature");
    rl_ctx_clear_error(ctx);
    cfg.temperature = 1;
    cfg.top_p = 0;
    assert_int_equal(rl_gpt2_generate(ctx, m, p, &len, 1, 4, &cfg, &r, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "top_p");
    rl_ctx_clear_error(ctx);
    rl_gpt2_free(ctx, m);
}

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_presets_and_counts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_names_and_iteration, setup, teardown),
        cmocka_unit_test_setup_teardown(test_init_statistics, setup, teardown),
        cmocka_unit_test_setup_teardown(test_forward_matches_reference, setup, teardown),
        cmocka_unit_test_setup_teardown(test_f32_matches_f64, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tied_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_score_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_value_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logprobs_and_sft_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_from, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gradcheck_lm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gradcheck_score, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gradcheck_value, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_cache_matches_full_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_eos_and_masks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_topk1_topp_tiny_are_greedy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_topk_topp_sets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_seeded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_logprobs_match_forward, setup, teardown),
        cmocka_unit_test_setup_teardown(test_generate_errors, setup, teardown),
    };
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    return cmocka_run_group_tests_name("gpt2", tests, NULL, NULL);
}
