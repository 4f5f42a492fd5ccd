/* tests/test_llama.c - the Llama family (models/llama.c) against the
 * independent PyTorch reference of tools/llama_ref.py: tiny Llama, Llama 3
 * with llama3 rope scaling, Qwen2 (q/k/v biases, tied), Qwen3 (q/k norms,
 * head_dim != hidden / heads), Mistral, a sharded and a BF16 checkpoint, all
 * in the Hugging Face layout, with their f64 logits (unpadded and
 * right-padded) and rotary frequencies. Also: save and reload round trips,
 * clear errors for unknown model types and missing tensors, and a
 * whole-model f64 gradient check of the logits.
 */
#include "rl_test.h"

#include <sys/stat.h>

#include "rl_gradcheck.h"
#include "rl_rng.h"
#include "rl_llama.h"
#include "rl_safetensors.h"

static const char *const CONFIGS[] = {"llama_tiny", "llama3_scaled", "qwen2_tiny", "qwen3_tiny",
                                      "mistral_tiny", "llama_tiny_sharded", "llama_tiny_bf16"};

static void fixture_dir(const char *name, char *out, size_t n) {
    snprintf(out, n, "%s/tests/fixtures/llama_ref/%s", RLHF_SOURCE_DIR, name);
}

/* Fixture `name`'s directory into dir, and its open ref.safetensors. */
static rl_st_file *open_ref(const char *name, char *dir, size_t n) {
    char path[1100], err[512];
    fixture_dir(name, dir, n);
    snprintf(path, sizeof path, "%s/ref.safetensors", dir);
    rl_st_file *rf = NULL;
    if (rl_st_open(path, &rf, err, sizeof err) != RL_OK) fail_msg("%s", err);
    return rf;
}

/* tensor `name` of the reference file, as doubles (malloc'ed) */
static double *ref_f64(rl_st_file *f, const char *name, int64_t *numel) {
    const rl_st_tensor *t = rl_st_find(f, name);
    if (!t) fail_msg("%s: no tensor %s", rl_st_path(f), name);
    double *v = malloc(sizeof(double) * (size_t)t->numel);
    assert_int_equal(rl_st_read_f64(f, name, v, (size_t)t->numel), RL_OK);
    if (numel) *numel = t->numel;
    return v;
}

static rl_tensor *ref_ids(rl_ctx *ctx, rl_st_file *f, const char *name) {
    const rl_st_tensor *t = rl_st_find(f, name);
    assert_non_null(t);
    assert_int_equal(t->ndim, 2);
    double *v = ref_f64(f, name, NULL);
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)t->numel);
    for (int64_t i = 0; i < t->numel; i++) ids[i] = (int32_t)v[i];
    rl_tensor *out = rl_const(ctx, RL_I32, 2, t->shape, ids);
    free(v), free(ids);
    return out;
}

/* max |ours - ref| over positions whose mask is 1 (mask NULL: all) */
static double max_diff(rl_ctx *ctx, const rl_tensor *logits, const double *ref, const double *mask, int64_t V) {
    double m = 0;
    for (int64_t i = 0; i < logits->numel; i++) {
        if (mask && mask[i / V] == 0) continue;
        double d = fabs(rl_tensor_get(ctx, logits, i) - ref[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

/* Logits of every config in f64 (within 1e-10 of the reference) and f32
 * (within 1e-4), unpadded and on the padded batch's real positions. */
static void test_logits_match_reference(void **state) {
    rl_ctx *ctx = *state;
    for (size_t c = 0; c < sizeof CONFIGS / sizeof CONFIGS[0]; c++) {
        char dir[1024], err[512];
        rl_st_file *rf = open_ref(CONFIGS[c], dir, sizeof dir);
        double *want = ref_f64(rf, "logits", NULL), *pwant = ref_f64(rf, "pad_logits", NULL);
        double *pmask = ref_f64(rf, "pad_mask", NULL);
        int64_t nf;
        double *inv = ref_f64(rf, "inv_freq", &nf);
        for (int d = 0; d < 2; d++) {
            rl_dtype dt = d ? RL_F32 : RL_F64;
            rl_llama *m = rl_llama_load(ctx, dir, dt, err, sizeof err);
            if (!m) fail_msg("%s: %s", CONFIGS[c], err);
            const int64_t V = m->cfg.vocab;
            assert_int_equal(nf, m->cfg.head_dim / 2);
            for (int64_t i = 0; i < nf; i++) assert_near(m->inv_freq[i], inv[i], 1e-15 * fmax(1, inv[i]));
            rl_tensor *lg = rl_llama_logits(ctx, m, ref_ids(ctx, rf, "ids"));
            rl_tensor *plg = rl_llama_logits(ctx, m, ref_ids(ctx, rf, "pad_ids"));
            assert_ok(ctx);
            double e = max_diff(ctx, lg, want, NULL, V), pe = max_diff(ctx, plg, pwant, pmask, V);
            const double tol = dt == RL_F64 ? 1e-10 : 1e-4;
            printf("# %-20s %s  max |logit diff| %.3g, padded %.3g\n", CONFIGS[c], dt == RL_F64 ? "f64" : "f32", e, pe);
            if (!(e <= tol) || !(pe <= tol)) fail_msg("%s %s: logits differ by %g (padded %g) > %g", CONFIGS[c],
                                                      dt == RL_F64 ? "f64" : "f32", e, pe, tol);
            rl_ctx_reset(ctx);
            rl_llama_free(ctx, m);
        }
        free(want), free(pwant), free(pmask), free(inv);
        rl_st_close(rf);
    }
}

/* Greedy decoding by full recompute gives the reference's six tokens. */
static void test_greedy_tokens(void **state) {
    rl_ctx *ctx = *state;
    for (size_t c = 0; c < sizeof CONFIGS / sizeof CONFIGS[0]; c++) {
        char dir[1024], err[512];
        rl_st_file *rf = open_ref(CONFIGS[c], dir, sizeof dir);
        int64_t np, nt;
        double *prompt = ref_f64(rf, "greedy_prompt", &np), *want = ref_f64(rf, "greedy_tokens", &nt);
        rl_llama *m = rl_llama_load(ctx, dir, RL_F32, err, sizeof err);
        if (!m) fail_msg("%s", err);
        int32_t seq[64];
        int64_t n = np;
        for (int64_t i = 0; i < np; i++) seq[i] = (int32_t)prompt[i];
        for (int64_t s = 0; s < nt; s++) {
            rl_tensor *lg = rl_llama_logits(ctx, m, rl_const(ctx, RL_I32, 2, (int64_t[]){1, n}, seq));
            assert_non_null(lg);
            const int64_t V = m->cfg.vocab;
            int32_t best = 0;
            for (int64_t v = 1; v < V; v++)
                if (rl_tensor_get(ctx, lg, (n - 1) * V + v) > rl_tensor_get(ctx, lg, (n - 1) * V + best)) best = (int32_t)v;
            if (best != (int32_t)want[s]) fail_msg("%s: greedy token %lld is %d, the reference's %d", CONFIGS[c], (long long)s, best, (int)want[s]);
            seq[n++] = best;
            rl_ctx_reset(ctx);
        }
        rl_llama_free(ctx, m);
        free(prompt), free(want);
        rl_st_close(rf);
    }
}

/* Saving writes the Hugging Face layout back: reloading gives the same
 * logits, and the tied model has no lm_head.weight. */
static void test_save_round_trip(void **state) {
    rl_ctx *ctx = *state;
    const char *const names[] = {"qwen3_tiny", "llama3_scaled", "qwen2_tiny"};
    for (int c = 0; c < 3; c++) {
        char dir[1024], out[1024], err[512];
        fixture_dir(names[c], dir, sizeof dir);
        snprintf(out, sizeof out, "%s/llama_saved_%s", RLHF_TEST_TMP, names[c]);
        rl_llama *m = rl_llama_load(ctx, dir, RL_F32, err, sizeof err);
        if (!m) fail_msg("%s", err);
        if (rl_llama_save(ctx, m, out, err, sizeof err) != RL_OK) fail_msg("%s", err);
        rl_llama *m2 = rl_llama_load(ctx, out, RL_F32, err, sizeof err);
        if (!m2) fail_msg("%s", err);
        assert_int_equal(m2->cfg.family, m->cfg.family);
        assert_int_equal(m2->cfg.rope_llama3, m->cfg.rope_llama3);
        assert_int_equal(m2->n_tensors, m->n_tensors);
        rl_tensor *ids = rl_const(ctx, RL_I32, 2, (int64_t[]){1, 5}, (int32_t[]){1, 7, 3, 60, 2});
        rl_tensor *a = rl_llama_logits(ctx, m, ids), *b = rl_llama_logits(ctx, m2, ids);
        assert_non_null(a), assert_non_null(b);
        for (int64_t i = 0; i < a->numel; i++) assert_true(rl_tensor_get(ctx, a, i) == rl_tensor_get(ctx, b, i));
        char st[1100];
        snprintf(st, sizeof st, "%s/model.safetensors", out);
        rl_st_file *f;
        assert_int_equal(rl_st_open(st, &f, err, sizeof err), RL_OK);
        assert_true((rl_st_find(f, "lm_head.weight") != NULL) == !m->cfg.tie);
        assert_string_equal(rl_st_meta_get(f, "format"), "pt");
        rl_st_close(f);
        rl_ctx_reset(ctx);
        rl_llama_free(ctx, m), rl_llama_free(ctx, m2);
    }
}

static void write_text(const char *path, const char *text) { rl_test_write_file(path, text); }

/* Bad directories: the error names the file and the field or tensor. */
static void test_errors(void **state) {
    rl_ctx *ctx = *state;
    char dir[1024], err[512], path[1100];
    snprintf(dir, sizeof dir, "%s/llama_bad", RLHF_TEST_TMP);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    unlink(path); /* left by an earlier run */
    snprintf(path, sizeof path, "%s/config.json", dir);
    write_text(path, "{\"model_type\": \"gemma2\", \"vocab_size\": 8}");
    assert_null(rl_llama_load(ctx, dir, RL_F64, err, sizeof err));
    assert_contains(err, "config.json: model_type \"gemma2\" is not one this loader knows");
    write_text(path, "{\"model_type\": \"llama\", \"vocab_size\": 8, \"hidden_size\": 8}");
    assert_null(rl_llama_load(ctx, dir, RL_F64, err, sizeof err));
    assert_contains(err, "\"num_hidden_layers\" is missing");
    write_text(path, "{\"model_type\": \"llama\", \"vocab_size\": 8, \"hidden_size\": 8, \"num_hidden_layers\": 1, "
                     "\"num_attention_heads\": 2, \"intermediate_size\": 4, \"rope_scaling\": {\"rope_type\": \"yarn\", "
                     "\"factor\": 4}}");
    assert_null(rl_llama_load(ctx, dir, RL_F64, err, sizeof err));
    assert_contains(err, "rope_scaling type \"yarn\" is not supported");
    write_text(path, "{\"model_type\": \"llama\", \"vocab_size\": 8, \"hidden_size\": 8, \"num_hidden_layers\": 1, "
                     "\"num_attention_heads\": 3, \"intermediate_size\": 4}");
    assert_null(rl_llama_load(ctx, dir, RL_F64, err, sizeof err));
    assert_contains(err, "not a multiple of num_attention_heads");
    write_text(path, "{\"model_type\": \"llama\", \"vocab_size\": 8, ");
    assert_null(rl_llama_load(ctx, dir, RL_F64, err, sizeof err));
    assert_contains(err, "config.json:1:");
    /* a config that fits but weights without one tensor */
    write_text(path, "{\"model_type\": \"llama\", \"vocab_size\": 8, \"hidden_size\": 8, \"num_hidden_layers\": 1, "
                     "\"num_attention_heads\": 2, \"intermediate_size\": 4}");
    assert_null(rl_llama_load(ctx, dir, RL_F64, err, sizeof err));
    assert_contains(err, "neither model.safetensors nor model.safetensors.index.json");
    rl_st_writer *w = rl_st_writer_new();
    float zeros[64] = {0};
    rl_st_writer_add(w, "model.embed_tokens.weight", RL_ST_F32, 2, (int64_t[]){8, 8}, zeros, sizeof zeros);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(rl_st_writer_write(w, path), RL_OK);
    rl_st_writer_free(w);
    assert_null(rl_llama_load(ctx, dir, RL_F64, err, sizeof err));
    assert_contains(err, "model.safetensors: tensor \"model.layers.0.input_layernorm.weight\" is missing");
    /* a tensor of the wrong shape */
    w = rl_st_writer_new();
    rl_st_writer_add(w, "model.embed_tokens.weight", RL_ST_F32, 2, (int64_t[]){4, 16}, zeros, sizeof zeros);
    assert_int_equal(rl_st_writer_write(w, path), RL_OK);
    rl_st_writer_free(w);
    assert_null(rl_llama_load(ctx, dir, RL_F64, err, sizeof err));
    assert_contains(err, "tensor \"model.embed_tokens.weight\" has shape [4, 16], config.json says [8, 8]");
    rl_ctx_reset(ctx);
}

/* The whole model's logits against f64 central differences, for a random
 * tiny Llama with every switch on (biases, q/k norms, llama3 rope). */
typedef struct gc_llama {
    rl_llama *m;
    const int32_t *ids;
    const double *weights;
} gc_llama;

static rl_tensor *gc_llama_loss(rl_ctx *ctx, rl_tensor **in, void *user) {
    (void)in; /* the model's own parameters are the inputs */
    gc_llama *u = user;
    rl_tensor *ids = rl_const(ctx, RL_I32, 2, (int64_t[]){2, 5}, u->ids);
    rl_tensor *w = rl_const(ctx, RL_F64, 3, (int64_t[]){2, 5, 16}, u->weights);
    return rl_sum(ctx, rl_mul(ctx, rl_llama_logits(ctx, u->m, ids), w), RL_AXIS_ALL, 0);
}

static void test_model_gradcheck(void **state) {
    rl_ctx *ctx = *state;
    rl_llama_config cfg;
    assert_int_equal(rl_llama_config_preset("llama-tiny", &cfg), RL_OK);
    cfg.vocab = 16, cfg.hidden = 8, cfg.n_layer = 2, cfg.n_head = 4, cfg.n_kv_head = 2, cfg.head_dim = 4;
    cfg.intermediate = 12, cfg.qkv_bias = 1, cfg.o_bias = 1, cfg.qk_norm = 1;
    cfg.rope_llama3 = 1, cfg.rope_factor = 8, cfg.rope_low_freq = 1, cfg.rope_high_freq = 4, cfg.rope_orig_max_pos = 8;
    rl_llama *m = rl_llama_new(ctx, &cfg, RL_F64, 3);
    assert_non_null(m);
    /* larger weights than the 0.02 init (and norms off 1), so the
     * nonlinearities matter */
    rl_rng rng;
    rl_rng_seed(&rng, 5);
    for (int i = 0; i < m->n_tensors; i++) {
        rl_tensor *t = m->tensors[i];
        for (int64_t e = 0; e < t->numel; e++)
            rl_tensor_set(ctx, t, e, rl_tensor_get(ctx, t, e) * 15 + 0.2 * rl_rng_normal(&rng));
    }
    double wv[2 * 5 * 16];
    for (int i = 0; i < 160; i++) wv[i] = rl_rng_normal(&rng);
    const int32_t ids[10] = {1, 4, 9, 15, 2, 3, 3, 0, 7, 11};
    gc_llama u = {m, ids, wv};
    rl_gc_opts o;
    rl_gc_opts_default(&o);
    o.max_elems = 8;
    o.seed = 6;
    rl_gc_result r;
    rl_status s = rl_gradcheck_fn(ctx, gc_llama_loss, &u, m->n_tensors, m->tensors, &o, &r);
    if (s != RL_OK || !r.passed) fail_msg("gradcheck: %s", r.msg);
    printf("# whole tiny Llama (GQA, biases, q/k norms, llama3 rope): %d tensors, %d elements, max abs %.3g, max rel %.3g\n",
           m->n_tensors, r.n_checked, r.max_abs, r.max_rel);
    assert_true(r.n_checked >= 4 * m->n_tensors);
    rl_llama_free(ctx, m);
    rl_ctx_reset(ctx);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_logits_match_reference, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_greedy_tokens, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_save_round_trip, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_errors, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_model_gradcheck, rl_test_setup_ctx, rl_test_teardown_ctx),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
