/* models/rl_gpt2.h - GPT-2 on the engine, exactly as Hugging Face's
 * transformers defines it in modeling_gpt2.py, with the heads RLHF
 * needs (tied LM head, sequence score head, per-token value head) and batched
 * generation with a KV cache (models/generate.c).
 *
 * Folder models/: GPT-2, tokenizers, safetensors and checkpoints;
 * may include ops/ and engine/. Start reading here.
 *
 * Architecture (Radford et al. 2019, "Language Models are Unsupervised
 * Multitask Learners", section 2.3; HF GPT2Model):
 *   x = wte[ids] + wpe[pos]
 *   per block:  x = x + c_proj(attn(c_attn(ln_1(x))))
 *               x = x + mlp.c_proj(gelu_tanh(mlp.c_fc(ln_2(x))))
 *   h = ln_f(x)                                   hidden [B, T, C]
 *   logits = h @ wte^T                            tied LM head [B, T, V]
 * c_attn, c_proj and c_fc are HF "Conv1D" layers: the weight is stored
 * [in, out] and y = x @ W + b. c_attn's output [.., 3C] holds q, k, v as three
 * C-wide column blocks in that order; each splits into H heads of D = C / H
 * consecutive columns (HF _split_heads). Attention is causal with scale
 * 1/sqrt(D) (scale_attn_weights = True). Biases are separate 1-D tensors.
 *
 * Parameters are persistent rl_param_new tensors named as in a Hugging Face
 * GPT-2 state dict without the "transformer." prefix ("wte.weight",
 * "h.0.attn.c_attn.weight", "ln_f.bias", ...), plus the head of the model's
 * kind: "score.weight" [1, C] (GPT2ForSequenceClassification, no bias) or
 * "v_head.summary.weight" [1, C] and "v_head.summary.bias" [1] (TRL's
 * ValueHead). There is no "lm_head.weight": the LM head is wte (tied), so any
 * kind of model can also produce logits (a VALUE model is then TRL's
 * policy-with-value-head sharing one trunk).
 *
 * Padding convention: sequences are RIGHT-padded, [real tokens..., pad...],
 * with an i32 [B, T] mask of 1s then 0s where a mask is taken. Because
 * attention is causal, padding after a row's end never changes the hidden
 * states of its real tokens, so no attention mask is needed anywhere (the
 * engine's fused attention has none). Generation produces this layout too.
 *
 * Log-probability convention (everywhere, generation included): token-aligned.
 * logprobs[b, t] = log pi(ids[b, t] | ids[b, <t]) for t >= 1, and 0 at t = 0
 * and at positions a mask excludes. So a response mask selects the generated
 * tokens' log-probabilities directly: sum(logprobs * response_mask).
 * Values are per position: values[b, t] = V(ids[b, <=t]), so the value of the
 * state in which token t is chosen is values[b, t - 1] (TRL's values[:, :-1]).
 *
 * Errors: like ops, functions returning tensors give NULL and record the
 * first message in the context; a NULL input gives NULL silently.
 */
#ifndef RL_GPT2_H
#define RL_GPT2_H

#include <stdint.h>

#include "rl_engine.h"
#include "rl_rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configuration ------------------------------------------------------- */

/* HF GPT2Config's names (vocab_size, n_positions, n_layer, n_head, n_embd,
 * layer_norm_epsilon). */
typedef struct rl_gpt2_config {
    int64_t vocab;              /* V */
    int64_t n_ctx;              /* positions (wpe rows) */
    int64_t n_layer;            /* L */
    int64_t n_head;             /* H; must divide n_embd */
    int64_t n_embd;             /* C */
    double layer_norm_epsilon;  /* 1e-5 in every GPT-2 */
} rl_gpt2_config;

typedef enum {
    RL_GPT2_LM = 0,   /* trunk + tied LM head only */
    RL_GPT2_SCORE,    /* + "score.weight" [1, C]: a scalar per sequence (reward model) */
    RL_GPT2_VALUE,    /* + "v_head.summary.weight" [1, C], ".bias" [1]: a scalar per token */
} rl_gpt2_kind;

/* Named presets: *out gets the configuration and RL_OK is returned, or
 * RL_ERR_ARG for an unknown name (*out untouched).
 *   "tiny"   V 64,  ctx 32,   L 2,  H 2,  C 32    (28,544 parameters; tests)
 *   "small"  V 264, ctx 256,  L 4,  H 4,  C 256   (3,292,672; the demo: 256
 *            byte tokens + up to 8 special tokens)
 *   "gpt2"   V 50257, ctx 1024, L 12, H 12, C 768 (124,439,808: OpenAI's 124M) */
rl_status rl_gpt2_config_preset(const char *name, rl_gpt2_config *out);
/* RL_OK when every size is positive, n_head divides n_embd, the vocabulary
 * fits i32 ids and eps is finite and >= 0; otherwise records why in ctx. */
rl_status rl_gpt2_config_check(rl_ctx *ctx, const rl_gpt2_config *cfg);
/* The number of scalar parameters of a model of this kind, from the formula
 * V*C + n_ctx*C + L*(12*C^2 + 13*C) + 2*C (+ C for SCORE, + C + 1 for VALUE);
 * the tied LM head adds nothing. -1 for an invalid configuration. */
int64_t rl_gpt2_config_num_params(const rl_gpt2_config *cfg, rl_gpt2_kind kind);

/* ---- the model ------------------------------------------------------------ */

/* One transformer block's tensors (HF names relative to "h.<i>."). */
typedef struct rl_gpt2_block {
    rl_tensor *ln_1_w, *ln_1_b;           /* ln_1.weight/bias [C] */
    rl_tensor *attn_w, *attn_b;           /* attn.c_attn.weight [C, 3C], bias [3C] */
    rl_tensor *attn_proj_w, *attn_proj_b; /* attn.c_proj.weight [C, C], bias [C] */
    rl_tensor *ln_2_w, *ln_2_b;           /* ln_2.weight/bias [C] */
    rl_tensor *fc_w, *fc_b;               /* mlp.c_fc.weight [C, 4C], bias [4C] */
    rl_tensor *mlp_proj_w, *mlp_proj_b;   /* mlp.c_proj.weight [4C, C], bias [C] */
} rl_gpt2_block;

/* Fields are readable; only rl_gpt2_* functions write them. */
typedef struct rl_gpt2 {
    rl_gpt2_config cfg;
    rl_gpt2_kind kind;
    rl_dtype dtype;                       /* RL_F32 or RL_F64 */
    rl_tensor *wte, *wpe;                 /* [V, C], [n_ctx, C] */
    rl_gpt2_block *h;                     /* cfg.n_layer blocks */
    rl_tensor *ln_f_w, *ln_f_b;           /* [C] */
    rl_tensor *score_w;                   /* SCORE: [1, C], else NULL */
    rl_tensor *v_head_w, *v_head_b;       /* VALUE: [1, C] and [1], else NULL */
    int n_tensors;
    rl_tensor **tensors;                  /* every parameter, in HF state-dict order */
} rl_gpt2;

/* Creates a model of the given kind in dtype (f32 or f64), initialised as
 * HF GPT2PreTrainedModel._init_weights with a seeded rl_rng: weights and both
 * embeddings ~ N(0, 0.02), biases 0, LayerNorm weights 1, and the GPT-2
 * paper's residual scaling for attn.c_proj.weight and mlp.c_proj.weight:
 * N(0, 0.02 / sqrt(2 * n_layer)). Head weights ~ N(0, 1 / sqrt(C + 1)), bias
 * 0: the reward-head initialisation of OpenAI's lm-human-preferences (see
 * Huang et al. 2023, "The N Implementation Details of RLHF with PPO"), used
 * for the value head too. Values are drawn in state-dict order from one
 * stream, so the f32 and f64 models of one seed hold the same numbers (up to
 * f32 rounding). NULL with the context's error set on failure. */
rl_gpt2 *rl_gpt2_new(rl_ctx *ctx, const rl_gpt2_config *cfg, rl_gpt2_kind kind, rl_dtype dtype,
                     uint64_t seed);
/* A model of `kind` initialised from src: every tensor that src also has
 * (same name, so always the trunk; the head too when the kinds match, which
 * makes this a copy) is copied, the rest is drawn as rl_gpt2_new draws it.
 * Same configuration and dtype as src. Use it for a reward or value model
 * from an SFT model, or for a frozen reference copy of a policy. */
rl_gpt2 *rl_gpt2_new_from(rl_ctx *ctx, const rl_gpt2 *src, rl_gpt2_kind kind, uint64_t seed);
void rl_gpt2_free(rl_ctx *ctx, rl_gpt2 *m);

/* Iteration over (name, tensor): i in [0, rl_gpt2_n_tensors), name is
 * rl_gpt2_tensor(m, i)->name. The array m->tensors can be passed as is to
 * rl_optim_adamw_new. */
int rl_gpt2_n_tensors(const rl_gpt2 *m);
rl_tensor *rl_gpt2_tensor(const rl_gpt2 *m, int i);
/* The tensor called name, or NULL. */
rl_tensor *rl_gpt2_find(const rl_gpt2 *m, const char *name);
/* Total scalar parameters (sum of numel; wte counted once). */
int64_t rl_gpt2_num_params(const rl_gpt2 *m);
/* "gpt2 LM f32: L 12, H 12, C 768, V 50257, ctx 1024, 124439808 parameters" into buf. */
char *rl_gpt2_describe(const rl_gpt2 *m, char *buf, size_t n);

/* ---- forward --------------------------------------------------------------- */

/* Hidden states after ln_f: ids i32 [B, T] (1 <= T <= n_ctx) -> [B, T, C].
 * pos_ids: NULL for positions 0..T-1, or i32 [T] or [B, T]. */
rl_tensor *rl_gpt2_forward_hidden(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids,
                                  rl_tensor *pos_ids);
/* The tied LM head: hidden [..., C] -> logits [..., V] = hidden @ wte^T (one
 * GEMM with trans_b; no transposed copy of wte). */
rl_tensor *rl_gpt2_lm_head(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *hidden);
/* Logits [B, T, V] (3-D, not flattened: cross_entropy takes [..., V]). */
rl_tensor *rl_gpt2_logits(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *pos_ids);

/* SCORE models: hidden [B, T, C] -> [B], the score head applied at each row's
 * last real token, index sum(mask[b]) - 1 (HF GPT2ForSequenceClassification
 * pools the last non-pad token the same way). mask: i32 [B, T], 1s then 0s
 * (right padding) with at least one 1 per row, or NULL for "no padding" (index
 * T - 1). Other masks are refused with a message. */
rl_tensor *rl_gpt2_score_head(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *hidden, rl_tensor *mask);
rl_tensor *rl_gpt2_end_score(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *mask);
/* VALUE models: hidden [B, T, C] -> [B, T] = hidden @ w^T + b (TRL ValueHead). */
rl_tensor *rl_gpt2_value_head(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *hidden);
rl_tensor *rl_gpt2_values(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *pos_ids);

/* Token-aligned log-probabilities (see the convention above) from logits
 * [B, T, V] of the sequence ids i32 [B, T]: out [B, T], out[b, t] =
 * log softmax(logits[b, t - 1])[ids[b, t]] where t >= 1 and mask[b, t] != 0
 * (mask i32 [B, T] or NULL for all), else 0. Computed as -cross_entropy with
 * shifted targets (one fused pass over the logits; masked-out targets are
 * ignored rows), differentiable w.r.t. the logits. */
rl_tensor *rl_gpt2_logprobs_of_logits(rl_ctx *ctx, rl_tensor *logits, rl_tensor *ids,
                                      rl_tensor *mask);
/* The same from the model: logits of ids with positions 0..T-1. */
rl_tensor *rl_gpt2_token_logprobs(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids,
                                  rl_tensor *mask);
/* Supervised fine-tuning loss: the mean of -log pi(ids[b, t] | ids[b, <t])
 * over the tokens t >= 1 with loss_mask[b, t] != 0 (i32 [B, T]; NULL: every
 * t >= 1), a scalar. A mask selecting no token is an error (the mean would be
 * 0/0). Token-aligned like the log-probabilities: mark the response tokens. */
rl_tensor *rl_gpt2_sft_loss(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *loss_mask);

/* ---- building blocks (the forward is written with these; generate.c reuses
 * them for cached decoding) ------------------------------------------------- */

/* wte[ids] + wpe[pos] -> [B, T, C]; pos_ids as in rl_gpt2_forward_hidden. */
rl_tensor *rl_gpt2_embed(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids, rl_tensor *pos_ids);
/* Block `layer`'s c_attn(ln_1(x)): x [B, T, C] -> packed q|k|v [B, T, 3C]. */
rl_tensor *rl_gpt2_block_qkv(rl_ctx *ctx, const rl_gpt2 *m, int layer, rl_tensor *x);
/* The rest of block `layer` given the merged attention output a [B, T, C]
 * (heads already concatenated, before c_proj): x + c_proj(a), then the MLP
 * with its residual. */
rl_tensor *rl_gpt2_block_finish(rl_ctx *ctx, const rl_gpt2 *m, int layer, rl_tensor *x,
                                rl_tensor *a);
/* Receives block `layer`'s keys and values [B, H, T, D] during a forward
 * (generation copies them into its cache). */
typedef void (*rl_gpt2_kv_fn)(rl_ctx *ctx, int layer, rl_tensor *k, rl_tensor *v, void *user);
/* rl_gpt2_forward_hidden that also hands every block's k and v to fn. */
rl_tensor *rl_gpt2_forward_hidden_kv(rl_ctx *ctx, const rl_gpt2 *m, rl_tensor *ids,
                                     rl_tensor *pos_ids, rl_gpt2_kv_fn fn, void *user);

/* ---- generation (models/generate.c) ----------------------------------------- */

typedef struct rl_gen_cfg {
    int64_t max_new_tokens; /* per row, >= 0 */
    int greedy;             /* 1: argmax (temperature, top_k, top_p unused) */
    double temperature;     /* > 0 when sampling; logits are divided by it */
    int64_t top_k;          /* keep the k most likely tokens (ties kept); 0: off */
    double top_p;           /* nucleus: the smallest set with mass >= top_p; 1: off */
    int32_t eos_id;         /* a row stops after emitting it; < 0: no EOS */
    int32_t pad_id;         /* fills rows after their end; in [0, V) */
    int use_cache;          /* 1: KV cache (default); 0: a full forward per token */
    /* Called with each token as it is chosen (row b, in the order of
     * generation), for streaming; NULL: not called. */
    void (*on_token)(void *user, int64_t row, int32_t token);
    void *on_token_user;
} rl_gen_cfg;

/* max_new_tokens 32, sampling at temperature 1 with no top-k / top-p (the
 * unmodified policy, as PPO rollouts use), eos_id -1, pad_id 0, use_cache 1. */
rl_gen_cfg rl_gen_cfg_default(void);

/* What generation returns, in host memory (malloc'ed; rl_gen_out_free).
 * Arrays are row-major [B, T]. Rows are right-padded: row b holds its prompt
 * (prompt_len[b] tokens), then its generated tokens (up to and including EOS),
 * then pad_id up to T = max over rows of len[b]. */
typedef struct rl_gen_out {
    int64_t B, T;
    int32_t *tokens;           /* [B, T] */
    int32_t *response_mask;    /* [B, T]: 1 on generated tokens (EOS included) */
    int32_t *attention_mask;   /* [B, T]: 1 on prompt and generated tokens */
    double *logprobs;          /* [B, T]: log pi(token | prefix) under the UNMODIFIED
                                * logits (temperature 1, no filtering): the policy
                                * whose ratio PPO takes; 0 where response_mask is 0 */
    double *sample_logprobs;   /* [B, T]: log-probability under the distribution
                                * actually sampled from (after temperature, top-k,
                                * top-p); 0 for greedy and where response_mask is 0 */
    int64_t *prompt_len;       /* [B] */
    int64_t *len;              /* [B]: prompt + generated tokens */
} rl_gen_out;

/* Generates continuations of B prompts of different lengths in one batch.
 * prompts: row b is prompts[b * stride .. b * stride + prompt_len[b]), ids in
 * [0, V); 1 <= prompt_len[b] <= min(stride, n_ctx). rng drives sampling (it
 * advances; unused and may be NULL when greedy). A row stops at EOS, after
 * max_new_tokens, or when it reaches n_ctx tokens; finished rows emit pad_id.
 *
 * Runs with gradients off, and RESETS THE CONTEXT'S ARENA (rl_ctx_reset) at
 * the start, between tokens and at the end, so arena tensors made before the
 * call are invalid after it (persistent tensors are untouched). On error
 * returns the status with the message in ctx and *out zeroed.
 *
 * Layout and cache: rows stay right-padded with each row's tokens at
 * positions 0..len-1, so every row decodes at its own position. The prompts
 * are run once through the ordinary forward ("prefill"), whose per-layer keys
 * and values are copied into persistent caches [B, H, cap, D] (cap = min(n_ctx,
 * longest prompt + max_new_tokens)); each new token then costs one [B, 1]
 * forward whose attention is q [B,H,1,D] @ K_cache^T over all cap slots, with
 * an additive -inf mask hiding each row's slots beyond its position. */
rl_status rl_gpt2_generate(rl_ctx *ctx, const rl_gpt2 *m, const int32_t *prompts,
                           const int64_t *prompt_len, int64_t B, int64_t stride,
                           const rl_gen_cfg *cfg, rl_rng *rng, rl_gen_out *out);
void rl_gen_out_free(rl_gen_out *out);

#ifdef __cplusplus
}
#endif
#endif
