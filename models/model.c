/* models/model.c - one interface to every model family (models/rl_model.h):
 * GPT-2 keeps its own heads (models/gpt2.c); the Llama family's trunk
 * (models/llama.c) gets its score and value heads here, named as
 * transformers' LlamaForSequenceClassification and TRL's ValueHead name
 * them, so that a recipe, the runner and the judge never ask which family
 * they hold.
 */
#include "rl_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "rl_checkpoint.h"
#include "rl_file.h"
#include "rl_heads.h"
#include "rl_ops.h"

/* ---- shapes ------------------------------------------------------------------------------ */

rl_status rl_model_config_preset(const char *name, rl_model_config *cfg) {
    rl_model_config c;
    memset(&c, 0, sizeof c);
    if (rl_gpt2_config_preset(name, &c.gpt2) == RL_OK) {
        c.family = RL_FAMILY_GPT2;
    } else if (rl_llama_config_preset(name, &c.llama) == RL_OK) {
        c.family = RL_FAMILY_LLAMA;
    } else {
        return RL_ERR_ARG;
    }
    *cfg = c;
    return RL_OK;
}

const char *rl_model_preset_names(void) {
    return "tiny, mini, small, gpt2 (GPT-2); llama-tiny, llama-mini, smollm2-135m, qwen2.5-0.5b (Llama family)";
}

void rl_model_config_set_vocab(rl_model_config *cfg, int64_t vocab) {
    if (cfg->family == RL_FAMILY_GPT2) cfg->gpt2.vocab = vocab;
    else cfg->llama.vocab = vocab;
}

void rl_model_config_set_ctx(rl_model_config *cfg, int64_t n_ctx) {
    if (cfg->family == RL_FAMILY_GPT2) cfg->gpt2.n_ctx = n_ctx;
    else cfg->llama.max_pos = n_ctx;
}

int64_t rl_model_config_vocab(const rl_model_config *cfg) {
    return cfg->family == RL_FAMILY_GPT2 ? cfg->gpt2.vocab : cfg->llama.vocab;
}

int64_t rl_model_config_ctx(const rl_model_config *cfg) {
    return cfg->family == RL_FAMILY_GPT2 ? cfg->gpt2.n_ctx : cfg->llama.max_pos;
}

/* ---- making and freeing ------------------------------------------------------------------- */

static rl_gpt2_kind rl_model_gpt2_kind(rl_model_head h) {
    return h == RL_HEAD_SCORE ? RL_GPT2_SCORE : h == RL_HEAD_VALUE ? RL_GPT2_VALUE : RL_GPT2_LM;
}

/* The head's tensors of a Llama-family model, freshly drawn: weights
 * N(0, 1/sqrt(C + 1)), bias 0, as GPT-2's heads (models/rl_gpt2.h). */
static rl_status rl_model_llama_heads(rl_ctx *ctx, rl_model *m, uint64_t seed) {
    const int64_t C = m->width;
    rl_rng rng;
    rl_rng_seed(&rng, seed ^ 0x6865616473ull); /* its own stream: the trunk's draws stay the same */
    rl_tensor *w = NULL;
    if (m->head == RL_HEAD_SCORE) {
        w = m->score_w = rl_param_new(ctx, m->dtype, 2, (int64_t[]){1, C}, "score.weight");
    } else if (m->head == RL_HEAD_VALUE) {
        w = m->v_head_w = rl_param_new(ctx, m->dtype, 2, (int64_t[]){1, C}, "v_head.summary.weight");
        m->v_head_b = rl_param_new(ctx, m->dtype, 1, (int64_t[]){1}, "v_head.summary.bias");
        if (!m->v_head_b) return rl_ctx_status(ctx);
        rl_tensor_set(ctx, m->v_head_b, 0, 0.0);
    } else {
        return RL_OK;
    }
    if (!w) return rl_ctx_status(ctx);
    const double sd = 1.0 / sqrt((double)C + 1.0);
    for (int64_t e = 0; e < C; e++) rl_tensor_set(ctx, w, e, sd * rl_rng_normal(&rng));
    return rl_ctx_status(ctx);
}

/* Fills the common fields and the tensor list from the family's model. */
static rl_model *rl_model_finish(rl_ctx *ctx, rl_model *m, uint64_t seed) {
    if (m->gpt2) {
        const rl_gpt2 *g = m->gpt2;
        m->family = RL_FAMILY_GPT2, m->dtype = g->dtype;
        m->vocab = g->cfg.vocab, m->n_ctx = g->cfg.n_ctx, m->width = g->cfg.n_embd;
        m->score_w = g->score_w, m->v_head_w = g->v_head_w, m->v_head_b = g->v_head_b; /* gpt2's own */
        m->n_tensors = g->n_tensors;
        m->tensors = malloc(sizeof(rl_tensor *) * (size_t)g->n_tensors);
        if (!m->tensors) goto oom;
        memcpy(m->tensors, g->tensors, sizeof(rl_tensor *) * (size_t)g->n_tensors);
        return m;
    }
    const rl_llama *l = m->llama;
    m->family = RL_FAMILY_LLAMA, m->dtype = l->dtype;
    m->vocab = l->cfg.vocab, m->n_ctx = rl_llama_ctx_limit(&l->cfg), m->width = l->cfg.hidden;
    if (rl_model_llama_heads(ctx, m, seed) != RL_OK) {
        rl_model_free(ctx, m);
        return NULL;
    }
    m->tensors = malloc(sizeof(rl_tensor *) * (size_t)(l->n_tensors + 2));
    if (!m->tensors) goto oom;
    memcpy(m->tensors, l->tensors, sizeof(rl_tensor *) * (size_t)l->n_tensors);
    m->n_tensors = l->n_tensors;
    if (m->score_w) m->tensors[m->n_tensors++] = m->score_w;
    if (m->v_head_w) m->tensors[m->n_tensors++] = m->v_head_w, m->tensors[m->n_tensors++] = m->v_head_b;
    return m;
oom:
    rl_ctx_fail(ctx, RL_ERR_MEMORY, "model: out of memory");
    rl_model_free(ctx, m);
    return NULL;
}

rl_model *rl_model_new(rl_ctx *ctx, const rl_model_config *cfg, rl_model_head head, rl_dtype dtype, uint64_t seed) {
    rl_model *m = calloc(1, sizeof *m);
    if (!m) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "model: out of memory");
        return NULL;
    }
    m->head = head;
    if (cfg->family == RL_FAMILY_GPT2) m->gpt2 = rl_gpt2_new(ctx, &cfg->gpt2, rl_model_gpt2_kind(head), dtype, seed);
    else m->llama = rl_llama_new(ctx, &cfg->llama, dtype, seed);
    if (!m->gpt2 && !m->llama) {
        free(m);
        return NULL;
    }
    return rl_model_finish(ctx, m, seed);
}

rl_model *rl_model_new_from(rl_ctx *ctx, const rl_model *src, rl_model_head head, uint64_t seed) {
    if (src->gpt2) {
        rl_model *m = calloc(1, sizeof *m);
        if (!m) {
            rl_ctx_fail(ctx, RL_ERR_MEMORY, "model: out of memory");
            return NULL;
        }
        m->head = head;
        if (!(m->gpt2 = rl_gpt2_new_from(ctx, src->gpt2, rl_model_gpt2_kind(head), seed))) {
            free(m);
            return NULL;
        }
        return rl_model_finish(ctx, m, seed);
    }
    rl_model_config c = {.family = RL_FAMILY_LLAMA, .llama = src->llama->cfg};
    rl_model *m = rl_model_new(ctx, &c, head, src->dtype, seed);
    if (!m) return NULL;
    /* copy what both have, by name (the trunk always; the head when the kinds match) */
    for (int i = 0; i < m->n_tensors; i++)
        for (int j = 0; j < src->n_tensors; j++)
            if (strcmp(m->tensors[i]->name, src->tensors[j]->name) == 0 &&
                rl_tensor_copy(ctx, m->tensors[i], src->tensors[j]) != RL_OK) {
                rl_model_free(ctx, m);
                return NULL;
            }
    return m;
}

void rl_model_free(rl_ctx *ctx, rl_model *m) {
    if (!m) return;
    if (!m->gpt2) { /* GPT-2's heads are its own and go with it */
        if (m->score_w) rl_tensor_free(ctx, m->score_w);
        if (m->v_head_w) rl_tensor_free(ctx, m->v_head_w);
        if (m->v_head_b) rl_tensor_free(ctx, m->v_head_b);
    }
    rl_gpt2_free(ctx, m->gpt2);
    rl_llama_free(ctx, m->llama);
    free(m->tensors);
    free(m);
}

/* ---- checkpoints ---------------------------------------------------------------------------- */

static int rl_model_is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

/* config.json's model_type in dir, or NULL (no such file, no such field:
 * then the checkpoint is GPT-2, whose loader explains what it misses). */
static char *rl_model_type_of(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *o = json_load_file(path, 0, NULL);
    const char *t = o ? json_string_value(json_object_get(o, "model_type")) : NULL;
    char *r = t ? strdup(t) : NULL;
    json_decref(o);
    return r;
}

rl_status rl_model_load(rl_ctx *ctx, const char *path, rl_model_head head, rl_dtype dtype, uint64_t seed,
                        rl_model **out, char *err, size_t errlen) {
    *out = NULL;
    char *type = rl_model_is_dir(path) ? rl_model_type_of(path) : NULL;
    int llama = type && strcmp(type, "gpt2") != 0;
    free(type);
    rl_model *m = calloc(1, sizeof *m);
    if (!m) return rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path);
    m->head = head;
    if (!llama) {
        rl_status st = rl_gpt2_load(ctx, path, rl_model_gpt2_kind(head), dtype, seed, &m->gpt2, err, errlen);
        if (st != RL_OK) {
            free(m);
            return st;
        }
    } else if (!(m->llama = rl_llama_load(ctx, path, dtype, err, errlen))) {
        free(m);
        return RL_ERR_IO;
    }
    if (!(m = rl_model_finish(ctx, m, seed)))
        return rl_errf(err, errlen, rl_ctx_status(ctx), "%s: %s", path, rl_ctx_error(ctx));
    if (m->llama && m->n_tensors > m->llama->n_tensors) {
        int found[2] = {0, 0};
        rl_status st = rl_llama_read_extra(ctx, path, m->tensors + m->llama->n_tensors,
                                           m->n_tensors - m->llama->n_tensors, found, err, errlen);
        if (st != RL_OK) {
            rl_model_free(ctx, m);
            return st;
        }
    }
    *out = m;
    return RL_OK;
}

rl_status rl_model_save(rl_ctx *ctx, const rl_model *m, const char *path, char *err, size_t errlen) {
    if (m->gpt2) return rl_gpt2_save(ctx, m->gpt2, path, err, errlen);
    return rl_llama_save_with(ctx, m->llama, m->tensors + m->llama->n_tensors, m->n_tensors - m->llama->n_tensors,
                              path, err, errlen);
}

/* ---- description ---------------------------------------------------------------------------- */

const char *rl_model_family_name(const rl_model *m) {
    return m->gpt2 ? "gpt2" : rl_llama_family_name(m->llama->cfg.family);
}

int64_t rl_model_num_params(const rl_model *m) {
    int64_t n = 0;
    for (int i = 0; i < m->n_tensors; i++) n += m->tensors[i]->numel;
    return n;
}

char *rl_model_describe(const rl_model *m, char *buf, size_t n) {
    if (m->gpt2) return rl_gpt2_describe(m->gpt2, buf, n);
    static const char *const heads[] = {"LM", "SCORE", "VALUE"};
    const rl_llama_config *c = &m->llama->cfg;
    snprintf(buf, n, "%s %s %s: L %lld, H %lld/%lld, C %lld, I %lld, V %lld, ctx %lld, %s, %lld parameters",
             rl_model_family_name(m), heads[m->head], rl_dtype_name(m->dtype), (long long)c->n_layer,
             (long long)c->n_head, (long long)c->n_kv_head, (long long)c->hidden, (long long)c->intermediate,
             (long long)c->vocab, (long long)c->max_pos, c->tie ? "tied" : "untied",
             (long long)rl_model_num_params(m));
    return buf;
}

/* ---- forward -------------------------------------------------------------------------------- */

static bool rl_model_check(rl_ctx *ctx, const rl_model *m, const char *fn, rl_tensor *ids, rl_tensor *mask,
                           const char *mask_name) {
    if (!m) {
        if (!rl_ctx_status(ctx)) rl_ctx_fail(ctx, RL_ERR_ARG, "%s: no model was given", fn);
        return false;
    }
    return rl_heads_check_ids(ctx, fn, ids, m->n_ctx, mask, mask_name);
}

rl_tensor *rl_model_hidden(rl_ctx *ctx, const rl_model *m, rl_tensor *ids) {
    if (!rl_model_check(ctx, m, "model hidden", ids, NULL, NULL)) return NULL;
    return m->gpt2 ? rl_gpt2_forward_hidden(ctx, m->gpt2, ids, NULL) : rl_llama_hidden(ctx, m->llama, ids);
}

rl_tensor *rl_model_logits(rl_ctx *ctx, const rl_model *m, rl_tensor *ids) {
    if (!rl_model_check(ctx, m, "model logits", ids, NULL, NULL)) return NULL;
    return m->gpt2 ? rl_gpt2_logits(ctx, m->gpt2, ids, NULL) : rl_llama_logits(ctx, m->llama, ids);
}

rl_tensor *rl_model_token_logprobs(rl_ctx *ctx, const rl_model *m, rl_tensor *ids, rl_tensor *mask) {
    if (!rl_model_check(ctx, m, "token logprobs", ids, mask, "mask")) return NULL;
    return rl_heads_logprobs(ctx, rl_model_logits(ctx, m, ids), ids, mask);
}

rl_tensor *rl_model_end_score(rl_ctx *ctx, const rl_model *m, rl_tensor *ids, rl_tensor *mask) {
    const char *fn = "end score";
    if (!rl_model_check(ctx, m, fn, ids, mask, "mask")) return NULL;
    if (m->gpt2) return rl_gpt2_end_score(ctx, m->gpt2, ids, mask);
    if (!m->score_w) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: the model has no score head (make it with head RL_HEAD_SCORE)", fn);
        return NULL;
    }
    return rl_heads_score_at_end(ctx, fn, rl_llama_hidden(ctx, m->llama, ids), m->score_w, mask);
}

rl_tensor *rl_model_values(rl_ctx *ctx, const rl_model *m, rl_tensor *ids) {
    const char *fn = "values";
    if (!rl_model_check(ctx, m, fn, ids, NULL, NULL)) return NULL;
    if (m->gpt2) return rl_gpt2_values(ctx, m->gpt2, ids, NULL);
    if (!m->v_head_w) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: the model has no value head (make it with head RL_HEAD_VALUE)", fn);
        return NULL;
    }
    return rl_heads_value(ctx, rl_llama_hidden(ctx, m->llama, ids), m->v_head_w, m->v_head_b);
}

rl_tensor *rl_model_sft_loss(rl_ctx *ctx, const rl_model *m, rl_tensor *ids, rl_tensor *loss_mask) {
    const char *fn = "sft loss";
    if (!rl_model_check(ctx, m, fn, ids, loss_mask, "loss_mask")) return NULL;
    if (m->gpt2) return rl_gpt2_sft_loss(ctx, m->gpt2, ids, loss_mask);
    return rl_heads_sft_loss(ctx, fn, rl_llama_logits(ctx, m->llama, ids), ids, loss_mask);
}

rl_status rl_model_generate(rl_ctx *ctx, const rl_model *m, const int32_t *prompts, const int64_t *prompt_len,
                            int64_t B, int64_t stride, const rl_gen_cfg *cfg, rl_rng *rng, rl_gen_out *out) {
    if (m->gpt2) return rl_gpt2_generate(ctx, m->gpt2, prompts, prompt_len, B, stride, cfg, rng, out);
    return rl_llama_generate(ctx, m->llama, prompts, prompt_len, B, stride, cfg, rng, out);
}
