/* tests/test_checkpoint.c - GPT-2 checkpoints: logits of a fixed tiny
 * checkpoint against an independent PyTorch implementation (fixture made by
 * tools/make_gpt2_fixture.sh), bit-exact save/load round trips (file and
 * Hugging Face directory), the name variants real exports use, F16/BF16 data,
 * and every refusal naming the file and the tensor.
 */
#include "rl_test.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rl_checkpoint.h"
#include "rl_safetensors.h"
#include "rl_ops.h"

#define FIXTURE RLHF_SOURCE_DIR "/tests/fixtures/gpt2/"
#define TMP RLHF_TEST_TMP "/ck_tmp"

static char ck_err[2048];

static int setup(void **state) {
    mkdir(TMP, 0777);
    *state = rl_ctx_new("cpu");
    return *state ? 0 : -1;
}

static int teardown(void **state) {
    rl_ctx_free(*state);
    return 0;
}

/* Logits of our model on the fixture ids, as doubles. */
static double *our_logits(rl_ctx *ctx, rl_gpt2 *m, const rl_st_tensor *ids, int64_t *n) {
    rl_ctx_set_grad(ctx, 0);
    rl_tensor *t = rl_const(ctx, RL_I32, 2, ids->shape, ids->data);
    rl_tensor *lg = rl_gpt2_logits(ctx, m, t, NULL);
    assert_non_null(lg);
    *n = lg->numel;
    double *v = malloc(sizeof(double) * (size_t)lg->numel);
    for (int64_t i = 0; i < lg->numel; i++) v[i] = rl_tensor_get(ctx, lg, i);
    rl_ctx_reset(ctx);
    return v;
}

/* The fixture's logits came from tools/gpt2_ref.py (PyTorch, float64). */
static void test_logits_match_pytorch(void **state) {
    rl_ctx *ctx = *state;
    rl_st_file *ref = NULL;
    assert_int_equal(rl_st_open(FIXTURE "tiny_ref.safetensors", &ref, ck_err, sizeof ck_err), RL_OK);
    const rl_st_tensor *ids = rl_st_find(ref, "ids"), *lref = rl_st_find(ref, "logits");
    assert_non_null(ids);
    assert_non_null(lref);
    double *want = malloc(sizeof(double) * (size_t)lref->numel);
    assert_int_equal(rl_st_read_f64(ref, "logits", want, (size_t)lref->numel), RL_OK);
    rl_dtype dts[2] = {RL_F64, RL_F32};
    double tol[2] = {1e-10, 1e-5};
    for (int k = 0; k < 2; k++) {
        rl_gpt2 *m = NULL;
        assert_int_equal(rl_gpt2_load(ctx, FIXTURE "tiny.safetensors", RL_GPT2_LM, dts[k], 0, &m, ck_err,
                                      sizeof ck_err), RL_OK);
        int64_t n;
        double *got = our_logits(ctx, m, ids, &n);
        assert_int_equal(n, lref->numel);
        double worst = 0;
        for (int64_t i = 0; i < n; i++) worst = fmax(worst, fabs(got[i] - want[i]));
        printf("# %s logits vs PyTorch: max abs diff %.3g\n", rl_dtype_name(dts[k]), worst);
        if (!(worst <= tol[k])) fail_msg("max |ours - pytorch| = %g > %g", worst, tol[k]);
        free(got);
        rl_gpt2_free(ctx, m);
    }
    free(want);
    rl_st_close(ref);
}

static int files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int eq = fa && fb;
    while (eq) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) eq = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return eq;
}

static void assert_models_equal(rl_ctx *ctx, const rl_gpt2 *a, const rl_gpt2 *b) {
    assert_int_equal(a->n_tensors, b->n_tensors);
    for (int i = 0; i < a->n_tensors; i++) {
        rl_tensor *x = a->tensors[i], *y = rl_gpt2_find(b, x->name);
        assert_non_null(y);
        assert_int_equal(x->numel, y->numel);
        size_t bytes = (size_t)x->numel * rl_dtype_size(x->dtype);
        void *p = malloc(bytes), *q = malloc(bytes);
        rl_tensor_read(ctx, x, p, bytes);
        rl_tensor_read(ctx, y, q, bytes);
        if (memcmp(p, q, bytes) != 0) fail_msg("tensor %s differs", x->name);
        free(p);
        free(q);
    }
}

static void test_roundtrip_file_and_dir(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2_config cfg;
    rl_gpt2_config_preset("tiny", &cfg);
    for (int kind = RL_GPT2_LM; kind <= RL_GPT2_VALUE; kind++) {
        rl_gpt2 *m = rl_gpt2_new(ctx, &cfg, (rl_gpt2_kind)kind, RL_F32, 11 + (uint64_t)kind);
        assert_int_equal(rl_gpt2_save(ctx, m, TMP "/a.safetensors", ck_err, sizeof ck_err), RL_OK);
        rl_gpt2 *l = NULL;
        assert_int_equal(rl_gpt2_load(ctx, TMP "/a.safetensors", (rl_gpt2_kind)kind, RL_F32, 99, &l, ck_err,
                                      sizeof ck_err), RL_OK);
        assert_models_equal(ctx, m, l);
        /* saving what was loaded gives the same bytes */
        assert_int_equal(rl_gpt2_save(ctx, l, TMP "/b.safetensors", ck_err, sizeof ck_err), RL_OK);
        assert_true(files_equal(TMP "/a.safetensors", TMP "/b.safetensors"));
        /* the Hugging Face directory form */
        assert_int_equal(rl_gpt2_save(ctx, m, TMP "/dir", ck_err, sizeof ck_err), RL_OK);
        rl_gpt2_config c2;
        assert_int_equal(rl_gpt2_config_load_json(TMP "/dir/config.json", &c2, ck_err, sizeof ck_err), RL_OK);
        assert_int_equal(c2.n_embd, cfg.n_embd);
        assert_int_equal(c2.n_head, cfg.n_head);
        assert_int_equal(c2.n_ctx, cfg.n_ctx);
        rl_gpt2 *d = NULL;
        assert_int_equal(rl_gpt2_load(ctx, TMP "/dir", (rl_gpt2_kind)kind, RL_F32, 5, &d, ck_err, sizeof ck_err), RL_OK);
        assert_models_equal(ctx, m, d);
        rl_gpt2_free(ctx, m);
        rl_gpt2_free(ctx, l);
        rl_gpt2_free(ctx, d);
    }
}

/* A score model started from an LM checkpoint: trunk copied, head fresh. */
static void test_score_from_lm(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2 *lm = NULL, *rm = NULL;
    assert_int_equal(rl_gpt2_load(ctx, FIXTURE "tiny.safetensors", RL_GPT2_LM, RL_F32, 0, &lm, ck_err, sizeof ck_err), RL_OK);
    assert_int_equal(rl_gpt2_load(ctx, FIXTURE "tiny.safetensors", RL_GPT2_SCORE, RL_F32, 3, &rm, ck_err, sizeof ck_err), RL_OK);
    assert_non_null(rm->score_w);
    assert_true(rl_tensor_get(ctx, rm->score_w, 0) != 0.0);
    assert_true(rl_tensor_get(ctx, rm->h[1].fc_w, 17) == rl_tensor_get(ctx, lm->h[1].fc_w, 17));
    rl_gpt2_free(ctx, lm);
    rl_gpt2_free(ctx, rm);
}

/* Writes the fixture's tensors again with edits: a name map and a dtype. */
typedef struct {
    const char *drop;          /* tensor to leave out */
    const char *rename_from, *rename_to;
    const char *extra;         /* an extra tensor name (copy of ln_f.bias) */
    int prefix;                /* add "transformer." to every name */
    int lm_head;               /* 1: add lm_head.weight = wte; 2: a perturbed one */
    int attn_bias;             /* add h.N.attn.bias buffers */
    rl_st_dtype dtype;         /* F32, F16, BF16 */
    int bad_shape;             /* reshape ln_f.weight to [2, C/2] */
    int no_meta;
} edit_t;

static void write_edited(const char *path, const edit_t *e) {
    rl_st_file *f = NULL;
    assert_int_equal(rl_st_open(FIXTURE "tiny.safetensors", &f, ck_err, sizeof ck_err), RL_OK);
    rl_st_writer *w = rl_st_writer_new();
    void *keep[64];
    int nk = 0;
    const rl_st_tensor *wte = rl_st_find(f, "wte.weight");
    for (size_t i = 0; i < rl_st_count(f); i++) {
        const rl_st_tensor *t = rl_st_at(f, i);
        if (e->drop && strcmp(t->name, e->drop) == 0) continue;
        char name[128];
        const char *base = e->rename_from && strcmp(t->name, e->rename_from) == 0 ? e->rename_to : t->name;
        snprintf(name, sizeof name, "%s%s", e->prefix ? "transformer." : "", base);
        float *v = malloc(sizeof(float) * (size_t)t->numel);
        rl_st_read_f32(f, t->name, v, (size_t)t->numel);
        int64_t shape[4] = {t->shape[0], t->ndim > 1 ? t->shape[1] : 0};
        int ndim = t->ndim;
        if (e->bad_shape && strcmp(t->name, "ln_f.weight") == 0) {
            ndim = 2;
            shape[1] = shape[0] / 2;
            shape[0] = 2;
        }
        size_t es = rl_st_dtype_size(e->dtype);
        void *data = v;
        if (e->dtype == RL_ST_F16 || e->dtype == RL_ST_BF16) {
            uint16_t *h = malloc(2 * (size_t)t->numel);
            if (e->dtype == RL_ST_F16) rl_f32_to_f16_array(v, h, (size_t)t->numel);
            else rl_f32_to_bf16_array(v, h, (size_t)t->numel);
            free(v);
            data = h;
        }
        keep[nk++] = data;
        assert_int_equal(rl_st_writer_add(w, name, e->dtype, ndim, shape, data, es * (size_t)t->numel), RL_OK);
    }
    if (e->lm_head) {
        float *v = malloc(sizeof(float) * (size_t)wte->numel);
        rl_st_read_f32(f, "wte.weight", v, (size_t)wte->numel);
        if (e->lm_head == 2) v[5] += 1.0f;
        keep[nk++] = v;
        rl_st_writer_add(w, "lm_head.weight", RL_ST_F32, 2, wte->shape, v, 4 * (size_t)wte->numel);
    }
    if (e->attn_bias) {
        static float mask[32 * 32];
        for (int l = 0; l < 2; l++) {
            char name[64];
            snprintf(name, sizeof name, "%sh.%d.attn.bias", e->prefix ? "transformer." : "", l);
            rl_st_writer_add(w, name, RL_ST_F32, 4, (int64_t[]){1, 1, 32, 32}, mask, sizeof mask);
        }
    }
    if (e->extra) {
        static float z[32];
        rl_st_writer_add(w, e->extra, RL_ST_F32, 1, (int64_t[]){32}, z, sizeof z);
    }
    if (!e->no_meta)
        for (size_t i = 0; i < rl_st_meta_count(f); i++) {
            const char *k, *v;
            rl_st_meta_at(f, i, &k, &v);
            rl_st_writer_set_meta(w, k, v);
        }
    assert_int_equal(rl_st_writer_write(w, path), RL_OK);
    rl_st_writer_free(w);
    for (int i = 0; i < nk; i++) free(keep[i]);
    rl_st_close(f);
}

static rl_status try_load(rl_ctx *ctx, const char *path) {
    rl_gpt2 *m = NULL;
    rl_status st = rl_gpt2_load(ctx, path, RL_GPT2_LM, RL_F32, 0, &m, ck_err, sizeof ck_err);
    if (st == RL_OK) assert_non_null(m);
    else assert_null(m);
    rl_gpt2_free(ctx, m);
    return st;
}

static void test_name_variants_load(void **state) {
    rl_ctx *ctx = *state;
    /* Hugging Face head-model naming with a tied lm_head and mask buffers */
    edit_t e = {.prefix = 1, .lm_head = 1, .attn_bias = 1, .dtype = RL_ST_F32};
    write_edited(TMP "/hf.safetensors", &e);
    assert_int_equal(try_load(ctx, TMP "/hf.safetensors"), RL_OK);
}

/* F16 and BF16 files load, converted; values agree to their precision. */
static void test_half_precision_loads(void **state) {
    rl_ctx *ctx = *state;
    rl_gpt2 *ref = NULL;
    assert_int_equal(rl_gpt2_load(ctx, FIXTURE "tiny.safetensors", RL_GPT2_LM, RL_F32, 0, &ref, ck_err, sizeof ck_err), RL_OK);
    rl_st_dtype dts[2] = {RL_ST_F16, RL_ST_BF16};
    double rel[2] = {1.0 / 1024, 1.0 / 128};
    for (int k = 0; k < 2; k++) {
        edit_t e = {.dtype = dts[k]};
        write_edited(TMP "/half.safetensors", &e);
        rl_gpt2 *m = NULL;
        assert_int_equal(rl_gpt2_load(ctx, TMP "/half.safetensors", RL_GPT2_LM, RL_F32, 0, &m, ck_err, sizeof ck_err), RL_OK);
        for (int64_t i = 0; i < 100; i++) {
            double a = rl_tensor_get(ctx, m->wte, i), b = rl_tensor_get(ctx, ref->wte, i);
            if (!(fabs(a - b) <= rel[k] * fabs(b) + 1e-7)) fail_msg("%s: %g vs %g", rl_st_dtype_name(dts[k]), a, b);
        }
        rl_gpt2_free(ctx, m);
    }
    rl_gpt2_free(ctx, ref);
}

static void test_refusals_name_file_and_tensor(void **state) {
    rl_ctx *ctx = *state;
    struct {
        edit_t e;
        const char *msg;
    } cases[] = {
        {{.drop = "h.1.mlp.c_fc.bias", .dtype = RL_ST_F32}, "tensor 'h.1.mlp.c_fc.bias' is missing"},
        {{.bad_shape = 1, .dtype = RL_ST_F32}, "tensor 'ln_f.weight' has shape [2, 16] but the config needs [32]"},
        {{.extra = "h.7.ln_1.weight", .dtype = RL_ST_F32}, "tensor 'h.7.ln_1.weight' is not part of a GPT-2 model"},
        {{.lm_head = 2, .dtype = RL_ST_F32}, "tensor 'lm_head.weight' differs from wte.weight"},
        {{.no_meta = 1, .dtype = RL_ST_F32}, "records no GPT-2 config"},
        {{.extra = "transformer.ln_f.bias", .dtype = RL_ST_F32}, "both give 'ln_f.bias'"},
        {{.rename_from = "h.0.ln_2.bias", .rename_to = "h.0.ln_3.bias", .dtype = RL_ST_F32},
         "tensor 'h.0.ln_3.bias' is not part of a GPT-2 model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = TMP "/nocfg/bad.safetensors";
        mkdir(TMP "/nocfg", 0777);
        write_edited(path, &cases[i].e);
        assert_int_equal(try_load(ctx, path), RL_ERR_IO);
        assert_contains(ck_err, "bad.safetensors");
        assert_contains(ck_err, cases[i].msg);
    }
    /* a malformed file is refused by the safetensors layer, naming the file */
    FILE *f = fopen(TMP "/trunc.safetensors", "wb");
    fwrite("\x10\x00\x00", 1, 3, f);
    fclose(f);
    assert_int_not_equal(try_load(ctx, TMP "/trunc.safetensors"), RL_OK);
    assert_contains(ck_err, "trunc.safetensors");
    /* a directory without the weights */
    mkdir(TMP "/empty", 0777);
    assert_int_equal(try_load(ctx, TMP "/empty"), RL_ERR_IO);
    assert_contains(ck_err, "no model.safetensors");
}

static void test_config_json_errors(void **state) {
    (void)state;
    rl_gpt2_config c;
    FILE *f = fopen(TMP "/cfg.json", "w");
    fputs("{\"n_embd\": 32, \"n_layer\": 2,\n \"n_head\": 3, \"n_positions\": 8, \"vocab_size\": 9}", f);
    fclose(f);
    assert_int_equal(rl_gpt2_config_load_json(TMP "/cfg.json", &c, ck_err, sizeof ck_err), RL_ERR_IO);
    assert_contains(ck_err, "n_embd 32 is not a multiple of n_head 3");
    f = fopen(TMP "/cfg.json", "w");
    fputs("{\"n_embd\": 32,\n \"n_layer\": }", f);
    fclose(f);
    assert_int_equal(rl_gpt2_config_load_json(TMP "/cfg.json", &c, ck_err, sizeof ck_err), RL_ERR_IO);
    assert_contains(ck_err, "cfg.json:2:");
    f = fopen(TMP "/cfg.json", "w");
    fputs("{\"n_embd\": 32, \"n_layer\": 2, \"n_positions\": 8, \"vocab_size\": 9}", f);
    fclose(f);
    assert_int_equal(rl_gpt2_config_load_json(TMP "/cfg.json", &c, ck_err, sizeof ck_err), RL_ERR_IO);
    assert_contains(ck_err, "'n_head' is missing");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_logits_match_pytorch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_file_and_dir, setup, teardown),
        cmocka_unit_test_setup_teardown(test_score_from_lm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_variants_load, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_precision_loads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusals_name_file_and_tensor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_json_errors, setup, teardown),
    };
    return cmocka_run_group_tests_name("checkpoint", tests, NULL, NULL);
}
