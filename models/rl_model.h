/* models/rl_model.h - one interface to every model family: what recipes, the
 * runner, the judge and the command line call, so that a recipe runs
 * unchanged on GPT-2 (models/rl_gpt2.h) or the Llama family (Llama,
 * Mistral, Qwen2, Qwen3; models/rl_llama.h).
 *
 * A model is a trunk of one family with a head of one kind:
 *   LM     the trunk's own LM head only
 *   SCORE  + a scalar per sequence read at the last real token (reward and
 *          cost models): GPT-2 "score.weight" [1, C] as GPT2ForSequenceClassification;
 *          Llama family "score.weight" [1, C] as LlamaForSequenceClassification
 *          (no bias, trunk under "model.")
 *   VALUE  + a scalar per token (critics): "v_head.summary.weight" [1, C] and
 *          "v_head.summary.bias" [1], TRL's ValueHead, on either family
 * Every kind keeps the trunk's LM head, so any model also gives logits (a
 * VALUE model is TRL's policy-with-value-head sharing one trunk). Heads are
 * initialised N(0, 1 / sqrt(C + 1)), bias 0, on both families (OpenAI's
 * lm-human-preferences reward head, models/rl_gpt2.h).
 *
 * The family of a checkpoint comes from its config.json ("model_type"):
 * "gpt2" or a GPT-2 safetensors file with rlhf's metadata -> GPT-2;
 * "llama", "mistral", "qwen2", "qwen3" -> the Llama family. Directories are
 * written back in the same layout (config.json + model.safetensors).
 *
 * Conventions (padding, token alignment, errors) are those of
 * models/rl_gpt2.h and models/rl_heads.h, on every family.
 */
#ifndef RL_MODEL_H
#define RL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "rl_engine.h"
#include "rl_gpt2.h"
#include "rl_llama.h"
#include "rl_rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { RL_FAMILY_GPT2 = 0, RL_FAMILY_LLAMA } rl_model_family;
typedef enum { RL_HEAD_LM = 0, RL_HEAD_SCORE, RL_HEAD_VALUE } rl_model_head;

/* A shape without weights: a family and its configuration. */
typedef struct rl_model_config {
    rl_model_family family;
    rl_gpt2_config gpt2;   /* family GPT2 */
    rl_llama_config llama; /* family LLAMA */
} rl_model_config;

/* Named shapes: GPT-2's presets (rl_gpt2_config_preset: tiny, mini, small,
 * gpt2) and the Llama family's (rl_llama_config_preset: llama-tiny,
 * llama-mini, smollm2-135m, qwen2.5-0.5b). RL_ERR_ARG for an unknown name. */
rl_status rl_model_config_preset(const char *name, rl_model_config *cfg);
/* The preset names, comma-separated, for messages. */
const char *rl_model_preset_names(void);
/* Sets the vocabulary / the context length (positions) of a shape. */
void rl_model_config_set_vocab(rl_model_config *cfg, int64_t vocab);
void rl_model_config_set_ctx(rl_model_config *cfg, int64_t n_ctx);
int64_t rl_model_config_ctx(const rl_model_config *cfg);
int64_t rl_model_config_vocab(const rl_model_config *cfg);

/* Fields are readable; only rl_model_* functions write them. */
typedef struct rl_model {
    rl_model_family family;
    rl_model_head head;
    rl_dtype dtype;
    int64_t vocab, n_ctx, width;   /* V, the longest sequence, C */
    rl_gpt2 *gpt2;                 /* family GPT2: the whole model, its head included */
    rl_llama *llama;               /* family LLAMA: the trunk and its LM head */
    rl_tensor *score_w;            /* SCORE: [1, C], else NULL (GPT-2: its own m->gpt2->score_w) */
    rl_tensor *v_head_w, *v_head_b;/* VALUE: [1, C], [1], else NULL (GPT-2: its own) */
    int n_tensors;
    rl_tensor **tensors;           /* every parameter (trunk, then head), each named as saved */
} rl_model;

/* A fresh model of cfg's shape in dtype (f32 or f64), seeded. NULL with the
 * context's error set. */
rl_model *rl_model_new(rl_ctx *ctx, const rl_model_config *cfg, rl_model_head head, rl_dtype dtype, uint64_t seed);
/* A model with head `head` initialised from src: every tensor both have is
 * copied (the trunk; the head when the kinds match), the rest drawn fresh. */
rl_model *rl_model_new_from(rl_ctx *ctx, const rl_model *src, rl_model_head head, uint64_t seed);
/* Loads a checkpoint (a directory with config.json, or a GPT-2 .safetensors
 * file) of either family, converting to dtype; a head the file lacks is
 * drawn fresh from seed (a reward model from an SFT model). */
rl_status rl_model_load(rl_ctx *ctx, const char *path, rl_model_head head, rl_dtype dtype, uint64_t seed,
                        rl_model **out, char *err, size_t errlen);
/* Writes the model in its family's Hugging Face layout (a directory; GPT-2
 * also takes a .safetensors path), each file atomically. */
rl_status rl_model_save(rl_ctx *ctx, const rl_model *m, const char *path, char *err, size_t errlen);
void rl_model_free(rl_ctx *ctx, rl_model *m);

const char *rl_model_family_name(const rl_model *m); /* "gpt2", "llama", "qwen2", ... */
int64_t rl_model_num_params(const rl_model *m);
/* "llama LM f32: L 2, H 4/2, C 32, ..., N parameters" */
char *rl_model_describe(const rl_model *m, char *buf, size_t n);

/* The forward functions; ids i32 [B, T], 1 <= T <= n_ctx, right-padded. */
rl_tensor *rl_model_hidden(rl_ctx *ctx, const rl_model *m, rl_tensor *ids);             /* [B, T, C] */
rl_tensor *rl_model_logits(rl_ctx *ctx, const rl_model *m, rl_tensor *ids);             /* [B, T, V] */
rl_tensor *rl_model_token_logprobs(rl_ctx *ctx, const rl_model *m, rl_tensor *ids, rl_tensor *mask); /* [B, T] */
rl_tensor *rl_model_end_score(rl_ctx *ctx, const rl_model *m, rl_tensor *ids, rl_tensor *mask);      /* [B] */
rl_tensor *rl_model_values(rl_ctx *ctx, const rl_model *m, rl_tensor *ids);             /* [B, T]: V(ids[<=t]) */
rl_tensor *rl_model_sft_loss(rl_ctx *ctx, const rl_model *m, rl_tensor *ids, rl_tensor *loss_mask);
/* Batched generation with a KV cache, as rl_gpt2_generate documents it, on
 * either family. */
rl_status rl_model_generate(rl_ctx *ctx, const rl_model *m, const int32_t *prompts, const int64_t *prompt_len,
                            int64_t B, int64_t stride, const rl_gen_cfg *cfg, rl_rng *rng, rl_gen_out *out);

#ifdef __cplusplus
}
#endif
#endif
