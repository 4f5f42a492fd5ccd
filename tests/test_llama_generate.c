/* tests/test_llama_generate.c - batched generation for the Llama family
 * (rl_llama_generate: the family's part in models/llama.c, the shared driver
 * in models/generate.c) against the PyTorch reference's greedy tokens
 * (tools/llama_ref.py, tests/fixtures/llama_ref/), the KV cache against full
 * recomputation (use_cache 0), the returned log-probabilities against a
 * full forward, batch independence, the max_position_embeddings limit, EOS,
 * and the argument errors. f64 runs are compared tightly because every path
 * computes the same sums; f32 only against the reference's tokens, which
 * tools/llama_ref.py picked with a top-1/top-2 gap of at least 1e-3.
 */
#include "rl_test.h"

#include "rl_llama.h"
#include "rl_rng.h"
#include "rl_safetensors.h"

static const char *const CONFIGS[] = {"llama_tiny", "llama3_scaled", "qwen2_tiny", "qwen3_tiny",
                                      "mistral_tiny", "llama_tiny_sharded", "llama_tiny_bf16"};
enum { N_MAIN = 5 }; /* the first five are the distinct architectures */

static rl_llama *load(rl_ctx *ctx, const char *name, rl_dtype dt) {
    char dir[1024], err[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures/llama_ref/%s", RLHF_SOURCE_DIR, name);
    rl_llama *m = rl_llama_load(ctx, dir, dt, err, sizeof err);
    if (!m) fail_msg("%s: %s", name, err);
    return m;
}

/* tensor `name` of a fixture's ref.safetensors as doubles (malloc'ed) */
static double *ref_f64(const char *fixture, const char *name, int64_t *numel) {
    char path[1100], err[512];
    snprintf(path, sizeof path, "%s/tests/fixtures/llama_ref/%s/ref.safetensors", RLHF_SOURCE_DIR, fixture);
    rl_st_file *f;
    if (rl_st_open(path, &f, err, sizeof err) != RL_OK) fail_msg("%s", err);
    const rl_st_tensor *t = rl_st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", path, name);
    double *v = malloc(sizeof(double) * (size_t)t->numel);
    assert_int_equal(rl_st_read_f64(f, name, v, (size_t)t->numel), RL_OK);
    *numel = t->numel;
    rl_st_close(f);
    return v;
}

/* The invariants of every output (rl_gen_out in models/rl_gpt2.h). */
static void check_layout(const rl_gen_out *o, const int32_t *p, const int64_t *plen, int64_t B, int64_t stride,
                         const rl_gen_cfg *cfg) {
    assert_int_equal(o->B, B);
    int64_t T = 0;
    for (int64_t b = 0; b < B; b++) {
        assert_int_equal(o->prompt_len[b], plen[b]);
        assert_true(o->len[b] >= plen[b] && o->len[b] - plen[b] <= cfg->max_new_tokens);
        T = o->len[b] > T ? o->len[b] : T;
        for (int64_t t = 0; t < o->T; t++) {
            const int64_t i = b * o->T + t;
            assert_int_equal(o->attention_mask[i], t < o->len[b]);
            assert_int_equal(o->response_mask[i], t >= plen[b] && t < o->len[b]);
            if (t < plen[b]) assert_int_equal(o->tokens[i], p[b * stride + t]);
            if (t >= o->len[b]) assert_int_equal(o->tokens[i], cfg->pad_id);
            if (!o->response_mask[i]) assert_true(o->logprobs[i] == 0 && o->sample_logprobs[i] == 0);
            else assert_true(o->logprobs[i] <= 0 && o->sample_logprobs[i] <= 1e-12);
            if (o->response_mask[i] && t < o->len[b] - 1) assert_int_not_equal(o->tokens[i], cfg->eos_id);
        }
    }
    assert_int_equal(o->T, T);
}

/* Three prompts of lengths 5, 2 and 8 (stride 8; junk after each end). */
enum { GB = 3, GSTRIDE = 8 };
static const int64_t g_lens[GB] = {5, 2, 8};

static void gen_prompts(int32_t *p, int64_t V, uint64_t seed) {
    rl_rng r;
    rl_rng_seed(&r, seed);
    for (int b = 0; b < GB; b++)
        for (int64_t t = 0; t < GSTRIDE; t++)
            p[b * GSTRIDE + t] = t < g_lens[b] ? (int32_t)(rl_rng_next(&r) % (uint64_t)V) : -7;
}

static rl_gen_out gen(rl_ctx *ctx, const rl_llama *m, const int32_t *p, const int64_t *plen, int64_t B,
                      int64_t stride, const rl_gen_cfg *cfg, uint64_t seed) {
    rl_rng r;
    rl_rng_seed(&r, seed);
    rl_gen_out o;
    if (rl_llama_generate(ctx, m, p, plen, B, stride, cfg, &r, &o) != RL_OK) fail_msg("generate: %s", rl_ctx_error(ctx));
    check_layout(&o, p, plen, B, stride, cfg);
    return o;
}

/* max |a - b| over the response positions; the tokens and masks must agree */
static double compare(const rl_gen_out *a, const rl_gen_out *b, const char *what) {
    assert_int_equal(a->T, b->T);
    double worst = 0;
    for (int64_t i = 0; i < a->B * a->T; i++) {
        if (a->tokens[i] != b->tokens[i])
            fail_msg("%s: token %lld differs: %d vs %d", what, (long long)i, a->tokens[i], b->tokens[i]);
        assert_int_equal(a->response_mask[i], b->response_mask[i]);
        worst = fmax(worst, fabs(a->logprobs[i] - b->logprobs[i]));
        worst = fmax(worst, fabs(a->sample_logprobs[i] - b->sample_logprobs[i]));
    }
    return worst;
}

/* (a) Greedy decoding with the cache gives the reference's six tokens, in
 * f64 and f32, with the reference prompt batched beside a longer and a
 * shorter one (so it is neither the longest row nor alone); in f64 the
 * log-probabilities also match log_softmax of the reference's logits. */
static void test_greedy_matches_reference(void **state) {
    rl_ctx *ctx = *state;
    for (size_t c = 0; c < sizeof CONFIGS / sizeof CONFIGS[0]; c++) {
        int64_t np, nt, nl;
        double *prompt = ref_f64(CONFIGS[c], "greedy_prompt", &np), *want = ref_f64(CONFIGS[c], "greedy_tokens", &nt);
        double *rl = ref_f64(CONFIGS[c], "greedy_logits", &nl);
        assert_true(np >= 2 && np + 3 <= 16 && nl % nt == 0);
        const int64_t V = nl / nt;
        int32_t p[3 * 16];
        int64_t plen[3] = {np + 3, np, np - 1};
        for (int b = 0; b < 3; b++)
            for (int64_t t = 0; t < 16; t++) p[b * 16 + t] = (int32_t)((t * 7 + b * 5 + 1) % V);
        for (int64_t t = 0; t < np; t++) p[16 + t] = (int32_t)prompt[t];
        for (int d = 0; d < 2; d++) {
            rl_dtype dt = d ? RL_F32 : RL_F64;
            rl_llama *m = load(ctx, CONFIGS[c], dt);
            assert_int_equal(m->cfg.vocab, V);
            rl_gen_cfg cfg = rl_gen_cfg_default();
            cfg.greedy = 1;
            cfg.max_new_tokens = nt;
            rl_gen_out o = gen(ctx, m, p, plen, 3, 16, &cfg, 0);
            double worst = 0;
            for (int64_t s = 0; s < nt; s++) {
                const int32_t got = o.tokens[o.T + np + s];
                if (got != (int32_t)want[s])
                    fail_msg("%s %s: cached greedy token %lld is %d, the reference's %d", CONFIGS[c],
                             d ? "f32" : "f64", (long long)s, got, (int)want[s]);
                const double *l = rl + s * V;
                double mx = l[0], sum = 0;
                for (int64_t v = 1; v < V; v++) mx = fmax(mx, l[v]);
                for (int64_t v = 0; v < V; v++) sum += exp(l[v] - mx);
                worst = fmax(worst, fabs(o.logprobs[o.T + np + s] - (l[got] - mx - log(sum))));
            }
            assert_int_equal(o.len[1], np + nt);
            printf("# %-20s %s greedy tokens match; max |logprob - reference| %.3g\n", CONFIGS[c],
                   d ? "f32" : "f64", worst);
            if (!(worst <= (d ? 1e-4 : 1e-10))) fail_msg("%s: log-probabilities differ by %g", CONFIGS[c], worst);
            rl_gen_out_free(&o);
            rl_llama_free(ctx, m);
        }
        free(prompt), free(want), free(rl);
    }
}

/* (b) The cache changes nothing: for a batch of prompts of different
 * lengths, greedy and sampled (plain, top-k + top-p, and with an EOS) give
 * the same tokens with and without it, and log-probabilities within 1e-12
 * (f64); the same seed gives the same samples. */
static void test_cache_matches_uncached(void **state) {
    rl_ctx *ctx = *state;
    double worst_all = 0;
    for (int c = 0; c < N_MAIN; c++) {
        rl_llama *m = load(ctx, CONFIGS[c], RL_F64);
        int32_t p[GB * GSTRIDE];
        gen_prompts(p, m->cfg.vocab, 40 + (uint64_t)c);
        double worst = 0;
        for (int mode = 0; mode < 4; mode++) {
            rl_gen_cfg cfg = rl_gen_cfg_default();
            cfg.max_new_tokens = 10;
            cfg.pad_id = 1;
            if (mode == 0) cfg.greedy = 1;
            if (mode == 2) cfg.temperature = 0.7, cfg.top_k = 20, cfg.top_p = 0.9;
            rl_gen_out a = gen(ctx, m, p, g_lens, GB, GSTRIDE, &cfg, 11);
            if (mode == 3) {
                /* EOS = row 0's third token: row 0 now stops right there */
                cfg.eos_id = a.tokens[g_lens[0] + 2];
                rl_gen_out_free(&a);
                a = gen(ctx, m, p, g_lens, GB, GSTRIDE, &cfg, 11);
                assert_true(a.len[0] <= g_lens[0] + 3);
                assert_int_equal(a.tokens[a.len[0] - 1], cfg.eos_id);
            }
            cfg.use_cache = 0;
            rl_gen_out b = gen(ctx, m, p, g_lens, GB, GSTRIDE, &cfg, 11);
            worst = fmax(worst, compare(&a, &b, CONFIGS[c]));
            if (mode == 1) {
                /* the same seed again, cached: identical, bit for bit */
                cfg.use_cache = 1;
                rl_gen_out a2 = gen(ctx, m, p, g_lens, GB, GSTRIDE, &cfg, 11);
                assert_true(compare(&a, &a2, "same seed") == 0);
                rl_gen_out_free(&a2);
            }
            rl_gen_out_free(&a), rl_gen_out_free(&b);
        }
        printf("# %-20s cached vs uncached (greedy, sampled, top-k/top-p, EOS): max |logprob diff| %.3g\n",
               CONFIGS[c], worst);
        if (!(worst <= 1e-12)) fail_msg("%s: cached and uncached log-probabilities differ by %g", CONFIGS[c], worst);
        worst_all = fmax(worst_all, worst);
        rl_llama_free(ctx, m);
    }
    printf("# all families: max |logprob diff| cached vs uncached %.3g\n", worst_all);
}

/* (c) The returned log-probabilities are the policy's: a full forward of the
 * generated batch (right-padded as returned) and log_softmax give the same
 * numbers at every response position. */
static void test_logprobs_match_forward(void **state) {
    rl_ctx *ctx = *state;
    for (int c = 0; c < N_MAIN; c++) {
        rl_llama *m = load(ctx, CONFIGS[c], RL_F64);
        int32_t p[GB * GSTRIDE];
        gen_prompts(p, m->cfg.vocab, 70 + (uint64_t)c);
        rl_gen_cfg cfg = rl_gen_cfg_default();
        cfg.max_new_tokens = 9;
        cfg.temperature = 1.3; /* sampled at another temperature: logprobs stay the unmodified policy's */
        rl_gen_out o = gen(ctx, m, p, g_lens, GB, GSTRIDE, &cfg, 3);
        const int64_t V = m->cfg.vocab, T = o.T;
        rl_tensor *ids = rl_const(ctx, RL_I32, 2, (int64_t[]){GB, T}, o.tokens);
        rl_tensor *ls = rl_log_softmax(ctx, rl_llama_logits(ctx, m, ids));
        assert_non_null(ls);
        const double *lsv = rl_tensor_host_data(ls);
        assert_non_null(lsv);
        double worst = 0, sworst = 0;
        int n = 0;
        for (int64_t b = 0; b < GB; b++)
            for (int64_t t = 1; t < T; t++) {
                const int64_t i = b * T + t;
                if (!o.response_mask[i]) continue;
                const double want = lsv[(b * T + t - 1) * V + o.tokens[i]];
                worst = fmax(worst, fabs(o.logprobs[i] - want));
                /* at temperature 1.3 the sampled distribution is another one */
                sworst = fmax(sworst, fabs(o.sample_logprobs[i] - want));
                n++;
            }
        printf("# %-20s %d sampled tokens: max |logprob - full forward| %.3g (sample_logprobs differ by up to %.3g)\n",
               CONFIGS[c], n, worst, sworst);
        assert_int_equal(n, GB * 9);
        if (!(worst <= 1e-10)) fail_msg("%s: logprobs differ from the full forward by %g", CONFIGS[c], worst);
        assert_true(sworst > 1e-6);
        rl_ctx_reset(ctx);
        rl_gen_out_free(&o);
        rl_llama_free(ctx, m);
    }
}

/* Each row of a batch decodes as it would alone (greedy, f64): padding and
 * the other rows' lengths do not leak into a row. */
static void test_batch_rows_independent(void **state) {
    rl_ctx *ctx = *state;
    rl_llama *m = load(ctx, "qwen3_tiny", RL_F64);
    int32_t p[GB * GSTRIDE];
    gen_prompts(p, m->cfg.vocab, 5);
    rl_gen_cfg cfg = rl_gen_cfg_default();
    cfg.greedy = 1;
    cfg.max_new_tokens = 7;
    rl_gen_out all = gen(ctx, m, p, g_lens, GB, GSTRIDE, &cfg, 0);
    double worst = 0;
    for (int b = 0; b < GB; b++) {
        rl_gen_out one = gen(ctx, m, p + b * GSTRIDE, &g_lens[b], 1, GSTRIDE, &cfg, 0);
        assert_int_equal(one.len[0], all.len[b]);
        for (int64_t t = 0; t < one.T; t++) {
            assert_int_equal(one.tokens[t], all.tokens[b * all.T + t]);
            worst = fmax(worst, fabs(one.logprobs[t] - all.logprobs[b * all.T + t]));
        }
        rl_gen_out_free(&one);
    }
    printf("# qwen3_tiny: batched vs alone, max |logprob diff| %.3g\n", worst);
    if (!(worst <= 1e-12)) fail_msg("batched and single rows differ by %g", worst);
    rl_gen_out_free(&all);
    rl_llama_free(ctx, m);
}

/* A row stops when it reaches max_position_embeddings tokens, cached or
 * not, while the other rows go on. */
static void test_max_pos_limit(void **state) {
    rl_ctx *ctx = *state;
    rl_llama_config lc;
    assert_int_equal(rl_llama_config_preset("llama-tiny", &lc), RL_OK);
    lc.max_pos = 12;
    rl_llama *m = rl_llama_new(ctx, &lc, RL_F64, 9);
    assert_non_null(m);
    int32_t p[GB * GSTRIDE];
    gen_prompts(p, lc.vocab, 8);
    rl_gen_cfg cfg = rl_gen_cfg_default();
    cfg.max_new_tokens = 6;
    rl_gen_out a = gen(ctx, m, p, g_lens, GB, GSTRIDE, &cfg, 2);
    assert_int_equal(a.len[0], 11); /* 5 + 6 */
    assert_int_equal(a.len[1], 8);  /* 2 + 6 */
    assert_int_equal(a.len[2], 12); /* 8 + 4: the limit */
    assert_int_equal(a.T, 12);
    cfg.use_cache = 0;
    rl_gen_out b = gen(ctx, m, p, g_lens, GB, GSTRIDE, &cfg, 2);
    assert_true(compare(&a, &b, "max_pos") <= 1e-12);
    rl_gen_out_free(&a), rl_gen_out_free(&b);
    rl_llama_free(ctx, m);
}

/* (d) Bad arguments are refused with RL_ERR_ARG and a message, *out zeroed. */
static void test_errors(void **state) {
    rl_ctx *ctx = *state;
    rl_llama *m = load(ctx, "llama_tiny", RL_F32);
    const int64_t max_pos = m->cfg.max_pos;
    int32_t *p = calloc((size_t)max_pos + 8, sizeof *p);
    rl_gen_cfg cfg = rl_gen_cfg_default();
    rl_rng r;
    rl_rng_seed(&r, 1);
    rl_gen_out o;
    int64_t len = 0;
    assert_int_equal(rl_llama_generate(ctx, m, p, &len, 1, 4, &cfg, &r, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "llama generate: prompt 0 has length 0");
    assert_null(o.tokens);
    assert_int_equal(o.B, 0);
    rl_ctx_clear_error(ctx);
    len = max_pos + 1;
    assert_int_equal(rl_llama_generate(ctx, m, p, &len, 1, max_pos + 8, &cfg, &r, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "max_position_embeddings 64");
    assert_null(o.tokens);
    rl_ctx_clear_error(ctx);
    len = 3;
    p[2] = (int32_t)m->cfg.vocab;
    assert_int_equal(rl_llama_generate(ctx, m, p, &len, 1, 4, &cfg, &r, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "prompt 0 token 2 is 64; ids must be in [0, 64)");
    rl_ctx_clear_error(ctx);
    p[2] = -1;
    assert_int_equal(rl_llama_generate(ctx, m, p, &len, 1, 4, &cfg, &r, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "token 2 is -1");
    rl_ctx_clear_error(ctx);
    p[2] = 0;
    assert_int_equal(rl_llama_generate(ctx, m, p, &len, 1, 4, &cfg, NULL, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "sampling needs an rl_rng");
    rl_ctx_clear_error(ctx);
    assert_int_equal(rl_llama_generate(ctx, NULL, p, &len, 1, 4, &cfg, &r, &o), RL_ERR_ARG);
    assert_error_contains(ctx, "llama generate: the model, prompts, prompt lengths and config are required");
    rl_ctx_clear_error(ctx);
    /* after the refusals a good call works */
    assert_int_equal(rl_llama_generate(ctx, m, p, &len, 1, 4, &cfg, &r, &o), RL_OK);
    assert_int_equal(o.len[0], 3 + cfg.max_new_tokens);
    rl_gen_out_free(&o);
    free(p);
    rl_llama_free(ctx, m);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_greedy_matches_reference, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_cache_matches_uncached, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_logprobs_match_forward, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_batch_rows_independent, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_max_pos_limit, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_errors, rl_test_setup_ctx, rl_test_teardown_ctx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
