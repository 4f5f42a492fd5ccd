/* tests/test_model.c - the one model interface (models/rl_model.h): GPT-2
 * through it is GPT-2 bit for bit; the Llama family's score and value heads
 * pass whole-model f64 gradient checks; heads survive a save and a reload in
 * the Hugging Face layout and a head the checkpoint lacks is drawn fresh;
 * copies share the trunk; built-in recipes pass their gradient check on the
 * Llama family unchanged; the runner trains, exports and re-initialises
 * Llama-family models from the command line's --preset and --init; HH
 * transcripts go through a chat template as turns; and `rlhf generate`
 * streams what its batch path prints, cached or not.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "rl_test.h"
#include "rl_test_dir.h"

#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <valgrind/valgrind.h>

#include "rl_chat_template.h"
#include "rl_data.h"
#include "rl_gradcheck.h"
#include "rl_model.h"
#include "rl_ops.h"
#include "rl_recipe.h"
#include "rl_recipe_gradcheck.h"
#include "rl_rng.h"
#include "rl_runner.h"
#include "rl_test_runner.h"
#include "rl_safetensors.h"
#include "rl_tokenizer.h"

static char g_dir[1024];
static const char *P(const char *name) { return rl_test_path_in(g_dir, name); }

static int setup_dir(void **state) {
    snprintf(g_dir, sizeof g_dir, "/tmp/rlhf_test_model_%d", (int)getpid());
    rl_test_rm_rf(g_dir);
    if (mkdir(g_dir, 0777) != 0) return -1;
    return rl_test_setup_ctx(state);
}

static int teardown_dir(void **state) {
    rl_test_rm_rf(g_dir);
    return rl_test_teardown_ctx(state);
}

/* A small Llama-family shape with every switch on, so that every path of the
 * trunk is under the heads being checked. */
static rl_model_config small_llama(void) {
    rl_model_config c;
    assert_int_equal(rl_model_config_preset("llama-tiny", &c), RL_OK);
    assert_int_equal(c.family, RL_FAMILY_LLAMA);
    rl_llama_config *l = &c.llama;
    l->vocab = 16, l->hidden = 8, l->n_layer = 2, l->n_head = 4, l->n_kv_head = 2, l->head_dim = 4;
    l->intermediate = 12, l->qkv_bias = l->o_bias = 1, l->qk_norm = 1, l->family = RL_LLAMA_FAMILY_QWEN3;
    return c;
}

static rl_tensor *ids_of(rl_ctx *ctx, const int32_t *v, int64_t B, int64_t T) {
    return rl_const(ctx, RL_I32, 2, (int64_t[]){B, T}, v);
}

/* ---- GPT-2 through the interface is GPT-2 ------------------------------------------------ */

static void assert_same(rl_ctx *ctx, const rl_tensor *a, const rl_tensor *b, const char *what) {
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->numel, b->numel);
    for (int64_t i = 0; i < a->numel; i++)
        if (rl_tensor_get(ctx, a, i) != rl_tensor_get(ctx, b, i)) fail_msg("%s differs at %lld", what, (long long)i);
}

static void test_gpt2_through_interface(void **state) {
    rl_ctx *ctx = *state;
    rl_model_config c;
    assert_int_equal(rl_model_config_preset("tiny", &c), RL_OK);
    assert_int_equal(c.family, RL_FAMILY_GPT2);
    const int32_t ids[8] = {1, 5, 9, 2, 7, 7, 3, 0};
    const int32_t mask[8] = {1, 1, 1, 1, 1, 1, 0, 0};
    for (int h = RL_HEAD_LM; h <= RL_HEAD_VALUE; h++) {
        rl_model *m = rl_model_new(ctx, &c, (rl_model_head)h, RL_F64, 11);
        rl_gpt2 *g = rl_gpt2_new(ctx, &c.gpt2, (rl_gpt2_kind)h, RL_F64, 11);
        assert_non_null(m);
        assert_non_null(g);
        assert_int_equal(m->n_tensors, g->n_tensors);
        assert_int_equal(rl_model_num_params(m), rl_gpt2_num_params(g));
        rl_tensor *ti = ids_of(ctx, ids, 2, 4), *tm = ids_of(ctx, mask, 2, 4);
        assert_same(ctx, rl_model_token_logprobs(ctx, m, ti, tm), rl_gpt2_token_logprobs(ctx, g, ti, tm), "logprobs");
        if (h == RL_HEAD_SCORE)
            assert_same(ctx, rl_model_end_score(ctx, m, ti, tm), rl_gpt2_end_score(ctx, g, ti, tm), "end score");
        if (h == RL_HEAD_VALUE)
            assert_same(ctx, rl_model_values(ctx, m, ti), rl_gpt2_values(ctx, g, ti, NULL), "values");
        assert_same(ctx, rl_model_sft_loss(ctx, m, ti, tm), rl_gpt2_sft_loss(ctx, g, ti, tm), "sft loss");
        char d[256];
        assert_non_null(strstr(rl_model_describe(m, d, sizeof d), "gpt2"));
        rl_gpt2_free(ctx, g);
        rl_model_free(ctx, m);
        rl_ctx_reset(ctx);
    }
    /* a head the model lacks is a clear error */
    rl_model *lm = rl_model_new(ctx, &c, RL_HEAD_LM, RL_F32, 1);
    assert_null(rl_model_end_score(ctx, lm, ids_of(ctx, ids, 2, 4), NULL));
    assert_non_null(strstr(rl_ctx_error(ctx), "no score head"));
    rl_ctx_clear_error(ctx);
    rl_model_free(ctx, lm);
}

/* ---- whole-model gradient checks of the Llama family's heads ----------------------------- */

typedef struct gc_head {
    rl_model *m;
    const int32_t *ids, *mask;
    const double *w;
} gc_head;

static rl_tensor *gc_head_loss(rl_ctx *ctx, rl_tensor **in, void *user) {
    (void)in;
    gc_head *u = user;
    rl_tensor *ids = ids_of(ctx, u->ids, 2, 5), *mask = ids_of(ctx, u->mask, 2, 5);
    rl_tensor *y;
    if (u->m->head == RL_HEAD_SCORE) {
        y = rl_mul(ctx, rl_model_end_score(ctx, u->m, ids, mask), rl_const(ctx, RL_F64, 1, (int64_t[]){2}, u->w));
    } else if (u->m->head == RL_HEAD_VALUE) {
        y = rl_mul(ctx, rl_model_values(ctx, u->m, ids), rl_const(ctx, RL_F64, 2, (int64_t[]){2, 5}, u->w));
    } else {
        y = rl_mul(ctx, rl_model_token_logprobs(ctx, u->m, ids, mask), rl_const(ctx, RL_F64, 2, (int64_t[]){2, 5}, u->w));
    }
    return rl_sum(ctx, y, RL_AXIS_ALL, 0);
}

static void test_llama_heads_gradcheck(void **state) {
    rl_ctx *ctx = *state;
    rl_model_config c = small_llama();
    static const char *const names[] = {"LM (token logprobs)", "SCORE (end score)", "VALUE (values)"};
    for (int h = RL_HEAD_LM; h <= RL_HEAD_VALUE; h++) {
        rl_model *m = rl_model_new(ctx, &c, (rl_model_head)h, RL_F64, 3);
        assert_non_null(m);
        rl_rng rng;
        rl_rng_seed(&rng, 5 + (uint64_t)h);
        /* weights well above the 0.02 init, so the nonlinearities matter */
        for (int i = 0; i < m->n_tensors; i++) {
            rl_tensor *t = m->tensors[i];
            for (int64_t e = 0; e < t->numel; e++)
                rl_tensor_set(ctx, t, e, rl_tensor_get(ctx, t, e) * 15 + 0.2 * rl_rng_normal(&rng));
        }
        double w[10];
        for (int i = 0; i < 10; i++) w[i] = rl_rng_normal(&rng);
        const int32_t ids[10] = {1, 4, 9, 15, 2, 3, 3, 0, 7, 11};
        const int32_t mask[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
        gc_head u = {m, ids, mask, w};
        rl_gc_opts o;
        rl_gc_opts_default(&o);
        o.max_elems = 6;
        o.seed = 7;
        rl_gc_result r;
        rl_status s = rl_gradcheck_fn(ctx, gc_head_loss, &u, m->n_tensors, m->tensors, &o, &r);
        if (s != RL_OK || !r.passed) fail_msg("%s: gradcheck: %s", names[h], r.msg);
        printf("# qwen3-shaped tiny model, head %s: %d tensors, %d elements, max abs %.3g, max rel %.3g\n", names[h],
               m->n_tensors, r.n_checked, r.max_abs, r.max_rel);
        assert_true(r.n_checked >= 4 * m->n_tensors);
        rl_model_free(ctx, m);
        rl_ctx_reset(ctx);
    }
}

/* ---- checkpoints ------------------------------------------------------------------------- */

static int file_has_tensor(const char *path, const char *name) {
    rl_st_file *f = NULL;
    if (rl_st_open(path, &f, NULL, 0) != RL_OK) return -1;
    int r = rl_st_find(f, name) != NULL;
    rl_st_close(f);
    return r;
}

static void test_llama_heads_save_load(void **state) {
    rl_ctx *ctx = *state;
    rl_model_config c = small_llama();
    char err[1024];
    const int32_t ids[10] = {1, 4, 9, 15, 2, 3, 3, 0, 7, 11};
    const int32_t mask[10] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
    /* a shape config.json cannot describe is refused, not saved wrong */
    rl_model_config bad = c;
    bad.llama.o_bias = 0;
    assert_null(rl_model_new(ctx, &bad, RL_HEAD_LM, RL_F32, 1));
    assert_non_null(strstr(rl_ctx_error(ctx), "attention_bias"));
    rl_ctx_clear_error(ctx);
    rl_model *rm = rl_model_new(ctx, &c, RL_HEAD_SCORE, RL_F32, 21);
    assert_non_null(rm);
    rl_tensor *s0 = rl_model_end_score(ctx, rm, ids_of(ctx, ids, 2, 5), ids_of(ctx, mask, 2, 5));
    double want[2] = {rl_tensor_get(ctx, s0, 0), rl_tensor_get(ctx, s0, 1)};
    assert_true(want[0] != want[1]);
    const char *dir = P("rm");
    if (rl_model_save(ctx, rm, dir, err, sizeof err) != RL_OK) fail_msg("save: %s", err);
    char path[2048];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    assert_int_equal(file_has_tensor(path, "score.weight"), 1);
    assert_int_equal(file_has_tensor(path, "model.layers.1.self_attn.k_norm.weight"), 1);
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *cj = json_load_file(path, 0, NULL);
    assert_non_null(cj);
    assert_string_equal(json_string_value(json_object_get(cj, "model_type")), "qwen3");
    json_decref(cj);

    /* the same scores after a reload (F32 written and read: bit for bit) */
    rl_model *back = NULL;
    if (rl_model_load(ctx, dir, RL_HEAD_SCORE, RL_F32, 99, &back, err, sizeof err) != RL_OK) fail_msg("load: %s", err);
    assert_int_equal(back->family, RL_FAMILY_LLAMA);
    rl_tensor *s1 = rl_model_end_score(ctx, back, ids_of(ctx, ids, 2, 5), ids_of(ctx, mask, 2, 5));
    assert_non_null(s1);
    assert_true(rl_tensor_get(ctx, s1, 0) == want[0] && rl_tensor_get(ctx, s1, 1) == want[1]);
    rl_model_free(ctx, back);

    /* a value model from the reward model's directory: the same trunk, a fresh head */
    rl_model *critic = NULL;
    if (rl_model_load(ctx, dir, RL_HEAD_VALUE, RL_F32, 5, &critic, err, sizeof err) != RL_OK) fail_msg("load: %s", err);
    assert_non_null(critic->v_head_w);
    assert_null(critic->score_w);
    rl_tensor *h0 = rl_model_hidden(ctx, rm, ids_of(ctx, ids, 2, 5));
    rl_tensor *h1 = rl_model_hidden(ctx, critic, ids_of(ctx, ids, 2, 5));
    assert_same(ctx, h0, h1, "trunk after reload");
    assert_true(rl_tensor_get(ctx, critic->v_head_w, 0) != 0.0);
    rl_model_free(ctx, critic);

    /* a head of the wrong shape is an error naming the file and the tensor */
    rl_model_config wide = c;
    wide.llama.hidden = 12; /* another width: score.weight [1, 12] against the file's [1, 8] */
    rl_model *other = rl_model_new(ctx, &wide, RL_HEAD_SCORE, RL_F32, 1);
    assert_non_null(other);
    rl_tensor *extra = other->score_w;
    int found = 0;
    assert_int_not_equal(rl_llama_read_extra(ctx, dir, &extra, 1, &found, err, sizeof err), RL_OK);
    assert_non_null(strstr(err, "score.weight"));
    assert_non_null(strstr(err, "model.safetensors"));
    rl_model_free(ctx, other);

    /* copies: a reward model from a policy keeps the policy's trunk */
    rl_model *pol = rl_model_new(ctx, &c, RL_HEAD_LM, RL_F32, 8);
    rl_model *cp = rl_model_new_from(ctx, pol, RL_HEAD_SCORE, 9);
    assert_non_null(cp);
    assert_same(ctx, rl_model_hidden(ctx, pol, ids_of(ctx, ids, 2, 5)), rl_model_hidden(ctx, cp, ids_of(ctx, ids, 2, 5)),
                "copied trunk");
    assert_int_equal(cp->n_tensors, pol->n_tensors + 1);
    rl_model_free(ctx, cp);
    rl_model_free(ctx, pol);
    rl_model_free(ctx, rm);
    rl_ctx_reset(ctx);
}

/* A sliding window (Mistral's default config has one) loads and limits the
 * length the model computes, since within the window nothing differs. */
static void test_sliding_window(void **state) {
    rl_ctx *ctx = *state;
    char err[1024], path[2048];
    rl_model_config c;
    assert_int_equal(rl_model_config_preset("llama-tiny", &c), RL_OK);
    c.llama.family = RL_LLAMA_FAMILY_MISTRAL;
    c.llama.sliding_window = 6;
    rl_model *m = rl_model_new(ctx, &c, RL_HEAD_LM, RL_F32, 2);
    assert_non_null(m);
    assert_int_equal(m->n_ctx, 6);
    if (rl_model_save(ctx, m, P("mistral"), err, sizeof err) != RL_OK) fail_msg("save: %s", err);
    rl_model_free(ctx, m);
    snprintf(path, sizeof path, "%s/config.json", P("mistral"));
    json_t *cj = json_load_file(path, 0, NULL);
    assert_int_equal(json_integer_value(json_object_get(cj, "sliding_window")), 6);
    json_decref(cj);
    if (rl_model_load(ctx, P("mistral"), RL_HEAD_LM, RL_F32, 0, &m, err, sizeof err) != RL_OK) fail_msg("%s", err);
    assert_int_equal(m->n_ctx, 6);
    const int32_t ids[7] = {1, 2, 3, 4, 5, 6, 7};
    assert_non_null(rl_model_logits(ctx, m, ids_of(ctx, ids, 1, 6)));
    assert_null(rl_model_logits(ctx, m, ids_of(ctx, ids, 1, 7)));
    assert_non_null(strstr(rl_ctx_error(ctx), "n_ctx = 6"));
    rl_ctx_clear_error(ctx);
    /* generation stops at the window too */
    rl_gen_cfg g = rl_gen_cfg_default();
    g.greedy = 1, g.max_new_tokens = 10;
    const int64_t plen = 2;
    rl_gen_out out;
    assert_int_equal(rl_model_generate(ctx, m, ids, &plen, 1, 2, &g, NULL, &out), RL_OK);
    assert_int_equal(out.len[0], 6);
    rl_gen_out_free(&out);
    rl_model_free(ctx, m);
    /* Qwen2's window applies only with use_sliding_window */
    rl_test_write_file(path, "{\"model_type\": \"qwen2\", \"vocab_size\": 64, \"hidden_size\": 32, "
                             "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
                             "\"intermediate_size\": 48, \"max_position_embeddings\": 64, \"rms_norm_eps\": 1e-6, "
                             "\"sliding_window\": 16, \"use_sliding_window\": false, \"tie_word_embeddings\": true}");
    rl_llama_config lc;
    if (rl_llama_config_load(path, &lc, err, sizeof err) != RL_OK) fail_msg("%s", err);
    assert_int_equal(rl_llama_ctx_limit(&lc), 64);
    rl_ctx_reset(ctx);
}

/* ---- recipes on the Llama family ----------------------------------------------------------- */

/* Every built-in recipe, unchanged, passes its f64 gradient check with tiny
 * Llama-family models (GQA, rotary, RMSNorm, SiLU) in every role. */
static void test_builtin_recipes_on_llama(void **state) {
    (void)state;
    int n = rl_recipe_n_builtins(), passed = 0, skipped = 0;
    for (int i = 0; i < n; i++) {
        const char *name = rl_recipe_builtin_name(i);
        /* under valgrind the group recipes (from grpo on) take minutes each in the
         * shape check, as in test_builtin_recipes.c; the plain and sanitizer runs
         * check all of them */
        if (RUNNING_ON_VALGRIND && i >= 10) {
            skipped++;
            continue;
        }
        char path[1024];
        assert_int_equal(rl_recipe_resolve(name, path, sizeof path), RL_OK);
        const char *e = NULL;
        rl_recipe *r = rl_recipe_load(path, &e);
        if (!r) fail_msg("cannot read %s: %s", path, e);
        rl_recipe_gc_opts o;
        rl_recipe_gc_opts_default(&o);
        o.preset = "llama-tiny";
        o.model_elems = 3;
        rl_recipe_gc_result res;
        rl_status st = rl_recipe_gradcheck(r, &o, &res);
        if (st != RL_OK || res.n_failed) fail_msg("%s on llama-tiny: %s", name, res.msg);
        printf("# %-14s on llama-tiny: %3d tensors, max abs %.2g, max rel %.2g\n", name, res.n_tensors, res.max_abs,
               res.max_rel);
        assert_true(res.n_tensors > 0);
        passed++;
        rl_recipe_free(r);
    }
    assert_int_equal(passed + skipped, n);
    assert_true(passed >= 10);
}

/* ---- the runner on the Llama family -------------------------------------------------------- */


static double metric_at(const char *metrics, int line, const char *key) {
    FILE *f = fopen(metrics, "r");
    assert_non_null(f);
    char buf[8192];
    double v = NAN;
    for (int i = 0; fgets(buf, sizeof buf, f); i++)
        if (i == line || line < 0) {
            json_t *o = json_loads(buf, 0, NULL);
            v = json_number_value(json_object_get(o, key));
            json_decref(o);
            if (line >= 0) break;
        }
    fclose(f);
    return v;
}

static void test_runner_on_llama(void **state) {
    (void)state;
    static const char *const words[] = {"apple", "river", "stone", "cloud"};
    FILE *f = fopen(P("demos.jsonl"), "w");
    assert_non_null(f);
    for (int i = 0; i < 64; i++)
        fprintf(f, "{\"prompt\": \"Say %s.\", \"response\": \" %s %s.\"}\n", words[i % 4], words[i % 4], words[i % 4]);
    fclose(f);
    f = fopen(P("pairs.jsonl"), "w");
    assert_non_null(f);
    for (int i = 0; i < 32; i++)
        fprintf(f,
                "{\"chosen\": \"\\n\\nHuman: Name %s.\\n\\nAssistant: Sure, %s.\", "
                "\"rejected\": \"\\n\\nHuman: Name %s.\\n\\nAssistant: No\"}\n",
                words[i % 4], words[i % 4], words[i % 4]);
    fclose(f);
    rl_runner_result res;
    char err[8192];
    if (rl_test_train(&res, err, sizeof err, "sft", "--data", P("demos.jsonl"), "--out", P("sft"), "--preset", "llama-tiny",
              "--ctx", "32", "--steps", "30", "--batch", "8", "--set", "lr=3e-3", "--seed", "1", NULL) != RL_OK)
        fail_msg("sft on llama-tiny: %s", err);
    char metrics[2048];
    snprintf(metrics, sizeof metrics, "%s", P("sft/metrics.jsonl"));
    double first = metric_at(metrics, 0, "loss"), last = metric_at(metrics, -1, "loss");
    printf("# sft on llama-tiny: loss %.3f -> %.3f in 30 steps\n", first, last);
    assert_true(last < first - 0.5);
    /* exported in the Hugging Face layout and loadable as the family it is */
    char path[2048];
    snprintf(path, sizeof path, "%s", P("sft/policy/config.json"));
    json_t *cj = json_load_file(path, 0, NULL);
    assert_non_null(cj);
    assert_string_equal(json_string_value(json_object_get(cj, "model_type")), "llama");
    json_decref(cj);
    /* a reward model and DPO initialised from it, one --init each */
    char init[2100], init_ref[2100];
    snprintf(init, sizeof init, "rm=%s", P("sft/policy"));
    if (rl_test_train(&res, err, sizeof err, "bradley_terry", "--data", P("pairs.jsonl"), "--out", P("rm"), "--init", init,
              "--ctx", "32", "--steps", "3", "--batch", "4", NULL) != RL_OK)
        fail_msg("bradley_terry from a llama policy: %s", err);
    snprintf(path, sizeof path, "%s", P("rm/rm/model.safetensors"));
    assert_int_equal(file_has_tensor(path, "score.weight"), 1);
    snprintf(init, sizeof init, "policy=%s", P("sft/policy"));
    snprintf(init_ref, sizeof init_ref, "ref=%s", P("sft/policy"));
    if (rl_test_train(&res, err, sizeof err, "dpo", "--data", P("pairs.jsonl"), "--out", P("dpo"), "--init", init, "--init",
              init_ref, "--ctx", "32", "--steps", "3", "--batch", "4", NULL) != RL_OK)
        fail_msg("dpo from a llama policy: %s", err);
    /* DPO's first step: policy == reference, so the loss is log 2 */
    snprintf(metrics, sizeof metrics, "%s", P("dpo/metrics.jsonl"));
    rl_test_assert_close(metric_at(metrics, 0, "loss"), log(2.0), 1e-5, "dpo loss at step 1");
}

/* ---- chat templates in the data, `rlhf generate` ------------------------------------------ */

/* An HH transcript becomes its turns, rendered through the model's chat
 * template; the response follows as plain text and EOS. */
static void test_hh_through_chat_template(void **state) {
    (void)state;
    static const char *const tmpl_src =
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
    char err[1024];
    rl_chat_template *t = rl_chat_template_parse(tmpl_src, strlen(tmpl_src), "chatml", err, sizeof err);
    if (!t) fail_msg("%s", err);
    FILE *f = fopen(P("hh.jsonl"), "w");
    assert_non_null(f);
    fputs("{\"chosen\": \"\\n\\nHuman: Hi there\\n\\nAssistant: Hello!\\n\\nHuman: Name a fruit.\\n\\nAssistant: "
          "Apple.\", \"rejected\": \"\\n\\nHuman: Hi there\\n\\nAssistant: Hello!\\n\\nHuman: Name a "
          "fruit.\\n\\nAssistant: No.\"}\n",
          f);
    fclose(f);
    rl_dataset *ds = NULL;
    if (rl_dataset_load(P("hh.jsonl"), RL_DATA_AUTO, 0, &ds, err, sizeof err) != RL_OK) fail_msg("%s", err);
    rl_tokenizer *tok = rl_tokenizer_bytes_new();
    rl_tok_opts o = rl_tok_opts_default(200);
    o.chat = t;
    rl_tokdata *td = rl_tokdata_new(ds, tok, RL_ROWS_PAIRS, &o, err, sizeof err);
    if (!td) fail_msg("%s", err);
    rl_data_batch *b = rl_data_batch_new(td, 1);
    int64_t idx = 0;
    assert_int_equal(rl_data_batch_fill(td, &idx, 1, b), RL_OK);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(rl_tokenizer_decode(tok, b->chosen.ids, b->chosen.len[0], &text, &len), RL_OK);
    const char *want = "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
                       "<|im_start|>user\nName a fruit.<|im_end|>\n<|im_start|>assistant\nApple.<|endoftext|>";
    assert_string_equal(text, want);
    free(text);
    /* the prompt ends at the generation prompt: the response mask covers "Apple." and EOS */
    int64_t n_resp = 0;
    for (int64_t k = 0; k < b->chosen.T; k++) n_resp += b->chosen.mask[k] != 0;
    assert_int_equal(n_resp, 7);
    assert_int_equal(b->chosen.prompt_len[0], b->rejected.prompt_len[0]);
    rl_data_batch_free(b);
    rl_tokdata_free(td);
    rl_tokenizer_free(tok);
    rl_dataset_free(ds);
    rl_chat_template_free(t);
}

static char *run_out(const char *cmd) {
    char full[8192];
    snprintf(full, sizeof full, "%s > '%s' 2>&1", cmd, P("cmd.txt"));
    int rc = system(full);
    char *out = rl_test_read_file(P("cmd.txt"));
    assert_non_null(out);
    if (rc != 0) fail_msg("%s failed:\n%s", cmd, out);
    return out;
}

/* `rlhf generate`: a streamed prompt prints what the batch path prints for
 * it, with and without the KV cache, for a Llama-family checkpoint. */
static void test_generate_command(void **state) {
    (void)state;
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "'%s' init-model --preset llama-mini --seed 3 -o '%s'", RLHF_BIN, P("lm"));
    free(run_out(cmd));
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompt 'Say apple.' --greedy --max-new 12 --eos -1",
             RLHF_BIN, P("lm"));
    char *streamed = run_out(cmd);
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompt 'Say apple.' --greedy --max-new 12 --eos -1 --no-cache",
             RLHF_BIN, P("lm"));
    char *uncached = run_out(cmd);
    assert_string_equal(streamed, uncached);
    FILE *f = fopen(P("prompts.jsonl"), "w");
    assert_non_null(f);
    fputs("{\"prompt\": \"Say apple.\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompts '%s' --greedy --max-new 12 --eos -1", RLHF_BIN,
             P("lm"), P("prompts.jsonl"));
    char *lines = run_out(cmd);
    json_t *first = json_loads(lines, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(first);
    const char *resp = json_string_value(json_object_get(first, "response"));
    assert_non_null(resp);
    assert_int_equal(json_array_size(json_object_get(first, "tokens")), 12);
    /* the stream is the response then a newline (no JSON escaping: compare bytes) */
    size_t n = strlen(streamed);
    assert_true(n >= 1 && streamed[n - 1] == '\n');
    char *clean = rl_utf8_sanitize(streamed, n - 1);
    assert_string_equal(clean, resp);
    free(clean);
    assert_non_null(strchr(strchr(lines, '\n') + 1, '{')); /* the second prompt's line */
    json_decref(first);
    free(lines), free(streamed), free(uncached);
    /* a bad line is reported with its number */
    f = fopen(P("bad.jsonl"), "w");
    fputs("{\"prompt\": \"ok\"}\n{\"text\": 1}\n", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "'%s' generate --model '%s' --prompts '%s' --greedy > '%s' 2>&1", RLHF_BIN, P("lm"),
             P("bad.jsonl"), P("cmd.txt"));
    assert_int_not_equal(system(cmd), 0);
    char *msg = rl_test_read_file(P("cmd.txt"));
    assert_non_null(strstr(msg, "bad.jsonl:2:"));
    free(msg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_gpt2_through_interface, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_llama_heads_gradcheck, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_llama_heads_save_load, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_sliding_window, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_builtin_recipes_on_llama, rl_test_setup_ctx, rl_test_teardown_ctx),
        cmocka_unit_test_setup_teardown(test_runner_on_llama, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_hh_through_chat_template, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_generate_command, setup_dir, teardown_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
