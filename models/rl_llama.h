/* models/rl_llama.h - the Llama family on the engine (Llama 2/3, Mistral,
 * Qwen2/2.5, Qwen3, SmolLM2), as Hugging Face's transformers defines it in
 * modeling_llama.py, modeling_mistral.py, modeling_qwen2.py and
 * modeling_qwen3.py, read from and written to Hugging Face directories
 * (config.json + model.safetensors, or shards with
 * model.safetensors.index.json).
 *
 * Architecture (decoder-only, pre-norm, no position table):
 *   x = embed_tokens[ids]
 *   per layer:  h = input_layernorm(x)                 RMSNorm, eps = rms_norm_eps
 *               q = q_proj(h), k = k_proj(h), v = v_proj(h)   (bias: qwen2 always on q/k/v;
 *                                                             llama/mistral when attention_bias)
 *               split heads: q [B, T, H, hd], k, v [B, T, Hkv, hd]
 *               qwen3: q = q_norm(q), k = k_norm(k)     RMSNorm over hd, before rotary
 *               q, k = rotary(q, k)                    HF rotate_half, rope_theta, rope_scaling
 *               a = causal attention, grouped-query (kv head j serves H/Hkv query heads),
 *                   scale 1/sqrt(hd)
 *               x = x + o_proj(a)                      (bias only with attention_bias, not qwen2)
 *               h = post_attention_layernorm(x)
 *               x = x + down_proj(silu(gate_proj(h)) * up_proj(h))
 *   hidden = norm(x); logits = hidden @ lm_head^T (lm_head = embed_tokens when tied)
 * Linear weights are stored [out, in] as torch.nn.Linear's, y = x W^T + b.
 * hd is config.head_dim when present (Qwen3: 128 with hidden 1024 and 16
 * heads), else hidden / heads.
 *
 * Rotary: inv_freq[i] = 1 / theta^(2i / hd); with rope_scaling
 * {"rope_type": "llama3", factor, low_freq_factor, high_freq_factor,
 * original_max_position_embeddings} the frequencies are rescaled by
 * wavelength as transformers' _compute_llama3_parameters does. Other
 * scaling types are refused (named in the error). The angle of row b,
 * position t and frequency i is pos[b, t] * inv_freq[i], computed in
 * double on the host and given to the rope op as cos/sin tables.
 *
 * Padding: as for GPT-2 (models/rl_gpt2.h), rows are right-padded and
 * positions are 0, 1, ... in every row, so a row's real tokens never see
 * its padding (attention is causal) and no mask is needed.
 *
 * Parameters are rl_param_new tensors named exactly as in the Hugging Face
 * state dict ("model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
 * ..., "model.norm.weight", "lm_head.weight" unless tied), in that order.
 *
 * Errors: loaders write "FILE: what" (naming the field or tensor) into the
 * caller's buffer and return NULL; forward functions follow the ops'
 * convention (NULL and the first message in the context).
 */
#ifndef RL_LLAMA_H
#define RL_LLAMA_H

#include <stddef.h>
#include <stdint.h>

#include "rl_engine.h"
#include "rl_gpt2.h" /* rl_gen_cfg, rl_gen_out: generation is shared with GPT-2 */
#include "rl_rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    RL_LLAMA_FAMILY_LLAMA = 0, /* model_type "llama" */
    RL_LLAMA_FAMILY_MISTRAL,   /* "mistral" (a sliding window limits the length: rl_llama_ctx_limit) */
    RL_LLAMA_FAMILY_QWEN2,     /* "qwen2": q/k/v biases */
    RL_LLAMA_FAMILY_QWEN3,     /* "qwen3": q/k RMSNorms per head */
} rl_llama_family;

/* The fields of config.json that change the computation (the others, such
 * as architectures, torch_dtype or use_cache, are read past). */
typedef struct rl_llama_config {
    rl_llama_family family;
    int64_t vocab;              /* vocab_size */
    int64_t hidden;             /* hidden_size */
    int64_t n_layer;            /* num_hidden_layers */
    int64_t n_head;             /* num_attention_heads */
    int64_t n_kv_head;          /* num_key_value_heads (default n_head) */
    int64_t head_dim;           /* head_dim (default hidden / n_head) */
    int64_t intermediate;       /* intermediate_size */
    int64_t max_pos;            /* max_position_embeddings */
    double rms_eps;             /* rms_norm_eps */
    double rope_theta;          /* rope_theta (default 10000) */
    int tie;                    /* tie_word_embeddings */
    int qkv_bias;               /* q/k/v_proj have biases (qwen2; attention_bias) */
    int o_bias;                 /* o_proj has a bias (attention_bias, not qwen2) */
    int qk_norm;                /* qwen3 */
    int rope_llama3;            /* rope_scaling type llama3 */
    double rope_factor, rope_low_freq, rope_high_freq;
    int64_t rope_orig_max_pos;
    int32_t bos_id, eos_id;     /* -1 when absent (the first, when a list) */
    int64_t sliding_window;     /* sliding_window when it applies (Mistral; Qwen with
                                 * use_sliding_window), else 0 */
} rl_llama_config;

/* Reads config.json at path; RL_OK, or an error "PATH: ..." naming the field
 * (an unknown model_type, an unsupported rope_scaling or hidden_act, a size
 * that is missing or not a positive integer, heads that do not divide). */
rl_status rl_llama_config_load(const char *path, rl_llama_config *cfg, char *err, size_t errlen);
/* Shapes without weights: "llama-tiny" (tests: V 64, C 32, 2 layers, 4
 * heads, 2 kv heads, intermediate 48, untied), "llama-mini" (V 264, C 128,
 * 4 layers, 4 heads, 2 kv heads, intermediate 352, tied: the size of GPT-2's
 * "mini", for the main job on this family), "smollm2-135m" and
 * "qwen2.5-0.5b" (their published config.json values, for benchmarks).
 * RL_ERR_ARG for an unknown name. */
rl_status rl_llama_config_preset(const char *name, rl_llama_config *cfg);
/* config.json's model_type for a family ("llama", "mistral", "qwen2", "qwen3"). */
const char *rl_llama_family_name(rl_llama_family f);
/* The longest sequence the model computes exactly: max_pos, or the sliding
 * window when it is shorter (within it, windowed attention is full causal
 * attention; longer sequences are refused rather than computed differently). */
int64_t rl_llama_ctx_limit(const rl_llama_config *c);

/* One decoder layer's tensors; biases and q/k norms NULL when absent. */
typedef struct rl_llama_layer {
    rl_tensor *in_norm, *post_norm;            /* [C] */
    rl_tensor *q_w, *k_w, *v_w, *o_w;          /* [H hd, C], [Hkv hd, C] x2, [C, H hd] */
    rl_tensor *q_b, *k_b, *v_b, *o_b;
    rl_tensor *q_norm, *k_norm;                /* [hd] */
    rl_tensor *gate_w, *up_w, *down_w;         /* [I, C], [I, C], [C, I] */
} rl_llama_layer;

typedef struct rl_llama {
    rl_llama_config cfg;
    rl_dtype dtype;
    rl_tensor *embed;                          /* [V, C] */
    rl_llama_layer *layers;
    rl_tensor *norm;                           /* [C] */
    rl_tensor *lm_head;                        /* [V, C]; == embed when tied */
    double *inv_freq;                          /* [hd / 2], scaling applied */
    int n_tensors;
    rl_tensor **tensors;                       /* every parameter, state-dict order */
    char **names;                              /* their Hugging Face names */
} rl_llama;

/* A model of cfg's shape in dtype (f32 or f64), initialised as HF
 * LlamaPreTrainedModel._init_weights with a seeded stream: weights
 * N(0, 0.02), biases 0, norms 1. NULL with the context's error set. */
rl_llama *rl_llama_new(rl_ctx *ctx, const rl_llama_config *cfg, rl_dtype dtype, uint64_t seed);
/* Loads DIR/config.json and DIR/model.safetensors (or the shards named by
 * DIR/model.safetensors.index.json), converting F32/F16/BF16/F64 weights to
 * dtype. A missing tensor or a wrong shape is an error naming the file and
 * the tensor; tensors the model does not use (rotary inv_freq buffers) are
 * ignored. */
rl_llama *rl_llama_load(rl_ctx *ctx, const char *dir, rl_dtype dtype, char *err, size_t errlen);
/* Writes DIR/config.json and DIR/model.safetensors (F32) in the layout and
 * names transformers' save_pretrained uses (no lm_head.weight when tied),
 * each atomically. */
rl_status rl_llama_save(rl_ctx *ctx, const rl_llama *m, const char *dir, char *err, size_t errlen);
/* rl_llama_save with more tensors in model.safetensors, each under its own
 * name (rl_tensor.name): the score or value head of models/rl_model.h. */
rl_status rl_llama_save_with(rl_ctx *ctx, const rl_llama *m, rl_tensor *const *extra, int n_extra, const char *dir,
                             char *err, size_t errlen);
/* Reads the tensors DIR's weight files hold under dst[i]->name into dst[i]
 * (converted to its dtype), found[i] = 1; a name no file holds leaves dst[i]
 * as it is, found[i] = 0. A shape that differs is an error naming the file
 * and the tensor. */
rl_status rl_llama_read_extra(rl_ctx *ctx, const char *dir, rl_tensor *const *dst, int n_dst, int *found, char *err,
                              size_t errlen);
void rl_llama_free(rl_ctx *ctx, rl_llama *m);

/* cos and sin tables [B, T, hd/2] for positions pos[b * T + t] (NULL:
 * 0..T-1 in every row), constants in the model's dtype. */
rl_status rl_llama_rope_tables(rl_ctx *ctx, const rl_llama *m, int64_t B, int64_t T, const int32_t *pos,
                               rl_tensor **cos, rl_tensor **sin);
/* The final norm's output [B, T, C] for ids i32 [B, T]. */
rl_tensor *rl_llama_hidden(rl_ctx *ctx, const rl_llama *m, rl_tensor *ids);
/* logits [B, T, V] = hidden @ lm_head^T. */
rl_tensor *rl_llama_logits(rl_ctx *ctx, const rl_llama *m, rl_tensor *ids);
/* Receives layer `layer`'s keys and values [B, Hkv, T, hd] during a forward,
 * keys after qwen3's k_norm and rotary: what attention reads (generation
 * copies them into its cache). */
typedef void (*rl_llama_kv_fn)(rl_ctx *ctx, int layer, rl_tensor *k, rl_tensor *v, void *user);
/* rl_llama_hidden that also hands every layer's k and v to fn (NULL: none). */
rl_tensor *rl_llama_hidden_kv(rl_ctx *ctx, const rl_llama *m, rl_tensor *ids, rl_llama_kv_fn fn, void *user);

/* Batched generation with exactly rl_gpt2_generate's contract, config and
 * output (models/rl_gpt2.h): right-padded rows each decoding at its own
 * position, EOS / pad / max_new_tokens, greedy or sampled (temperature,
 * top_k, top_p), logprobs under the unmodified logits, use_cache 0 for a
 * full forward per token, and the context's arena RESET at the start,
 * between tokens and at the end. The position limit n_ctx is
 * cfg.max_pos (max_position_embeddings). The caches are [B, Hkv, cap, hd]
 * per layer, keys stored after rotary (and qwen3's k_norm); a cached step
 * applies rotary at each row's own position and attends with query head h
 * reading kv head h / (H / Hkv), as HF repeat_kv. */
rl_status rl_llama_generate(rl_ctx *ctx, const rl_llama *m, const int32_t *prompts, const int64_t *prompt_len,
                            int64_t B, int64_t stride, const rl_gen_cfg *cfg, rl_rng *rng, rl_gen_out *out);

#ifdef __cplusplus
}
#endif
#endif
