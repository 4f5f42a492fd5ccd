/* models/generate_internal.h - the seam between the model-independent
 * generation driver (models/generate.c: argument checks, the per-step loop,
 * sampling, output assembly) and a model family (GPT-2 in generate.c, the
 * Llama family in models/llama.c). A family describes its sizes and supplies
 * three things: a full forward that can hand each layer's keys and values
 * to the driver (the prefill fills the cache with them), an LM head, and
 * one cached decoding step of [B, 1] tokens at per-row positions. The
 * contract generation keeps is rl_gpt2_generate's (models/rl_gpt2.h).
 *
 * Internal: the driver trusts the family's sizes; the family trusts the
 * driver's arguments (already checked).
 */
#ifndef RL_GENERATE_INTERNAL_H
#define RL_GENERATE_INTERNAL_H

#include <stdint.h>

#include "rl_engine.h"
#include "rl_gpt2.h"
#include "rl_rng.h"

/* Everything a family's cached step needs, made by the driver for one token.
 * The caches are persistent, per layer [B, n_kv_head, cap, head_dim]. */
typedef struct rl_gen_step {
    int64_t B, cap;
    rl_tensor **kc, **vc;  /* per layer key and value caches */
    const int32_t *pos;    /* [B] host: row b's token sits at position (and cache slot) pos[b] */
    rl_tensor *ids;        /* i32 [B, 1]: the token of each row */
    rl_tensor *pos_ids;    /* i32 [B, 1]: pos as a tensor */
    rl_tensor *mask;       /* [B, 1, 1, cap] in the model's dtype: 0 for slots <= pos[b], -inf after */
    rl_tensor *scale;      /* scalar 1/sqrt(head_dim) */
} rl_gen_step;

/* Receives layer `layer`'s keys and values [B, n_kv_head, T, head_dim]
 * (contiguous, exactly what attention reads: after rotary for Llama) during
 * a forward. Same type as rl_gpt2_kv_fn and rl_llama_kv_fn. */
typedef void (*rl_gen_kv_fn)(rl_ctx *ctx, int layer, rl_tensor *k, rl_tensor *v, void *user);

typedef struct rl_gen_family {
    const char *name;       /* prefixes every message: "gpt2 generate" */
    const char *ctx_name;   /* what the config calls the position limit: "n_ctx" */
    const void *model;
    rl_dtype dtype;
    int64_t vocab, n_ctx, hidden;           /* V, the position limit, width of forward's output */
    int64_t n_layer, n_kv_head, head_dim;   /* the cache's shape */
    /* hidden states [B, T, hidden] of ids i32 [B, T] at positions 0..T-1;
     * fn, when not NULL, gets every layer's k and v */
    rl_tensor *(*forward)(rl_ctx *ctx, const void *model, rl_tensor *ids, rl_gen_kv_fn fn, void *user);
    /* hidden [B, 1, hidden] -> logits [B, 1, V] */
    rl_tensor *(*lm_head)(rl_ctx *ctx, const void *model, rl_tensor *hidden);
    /* One cached step: writes each layer's k and v of every row into slot
     * pos[b] (rl_gen_store_slot), attends over the cache (rl_gen_attend) and
     * returns the logits [B, 1, V]; NULL with the context's error set. */
    rl_tensor *(*step)(rl_ctx *ctx, const void *model, const rl_gen_step *s);
} rl_gen_family;

/* rl_gpt2_generate's contract for any family (models/rl_gpt2.h). */
rl_status rl_gen_run(rl_ctx *ctx, const rl_gen_family *f, const int32_t *prompts, const int64_t *prompt_len,
                     int64_t B, int64_t stride, const rl_gen_cfg *cfg, rl_rng *rng, rl_gen_out *out);

/* Copies each row's new key and value into layer `layer`'s caches at slot
 * pos[b]: head h of row b is D elements at k[k_off + b * row + h * D]
 * (likewise v), so a packed projection (GPT-2's q|k|v) needs no slicing. */
void rl_gen_store_slot(rl_ctx *ctx, const rl_gen_step *s, int layer, int64_t Hkv, int64_t D, const rl_tensor *k,
                       int64_t k_off, const rl_tensor *v, int64_t v_off, int64_t row);

/* Attention of one new token per row over layer `layer`'s cache: q [B, 1,
 * H * D] (heads consecutive) -> [B, 1, H * D], with query head h reading kv
 * head h / (H / Hkv) (HF repeat_kv). As [B, Hkv, H / Hkv, D] the query heads
 * sharing a kv head are the rows of one matrix, so grouped-query attention
 * is the same two batched matmuls as multi-head attention. */
rl_tensor *rl_gen_attend(rl_ctx *ctx, const rl_gen_step *s, int layer, rl_tensor *q, int64_t H, int64_t Hkv,
                         int64_t D);

#endif
