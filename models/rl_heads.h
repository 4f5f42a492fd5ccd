/* models/rl_heads.h - what every model family puts on top of its trunk's
 * hidden states, written once: argument checks on token batches, the
 * sequence score head pooled at each row's last real token (HF
 * *ForSequenceClassification), TRL's per-token value head, token-aligned
 * log-probabilities from logits, and the next-token (SFT) loss.
 *
 * Conventions are GPT-2's (models/rl_gpt2.h), shared by every family: rows
 * are right-padded, masks are i32 [B, T] of 1s then 0s, logprobs[b, t] =
 * log p(ids[b, t] | ids[b, <t]) with 0 at t = 0 and where a mask is 0.
 * Errors follow the ops: NULL with the first message in the context, each
 * naming the calling function `fn`.
 */
#ifndef RL_HEADS_H
#define RL_HEADS_H

#include <stdbool.h>
#include <stdint.h>

#include "rl_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ids must be i32 [B, T] with 1 <= T <= n_ctx; mask, when given, i32 with
 * the ids' shape (mask_name names it in the message). */
bool rl_heads_check_ids(rl_ctx *ctx, const char *fn, rl_tensor *ids, int64_t n_ctx, rl_tensor *mask,
                        const char *mask_name);
/* hidden must be [B, T, width]. */
bool rl_heads_check_hidden(rl_ctx *ctx, const char *fn, rl_tensor *hidden, int64_t width);
/* A new host copy (malloc'ed) of an i32 tensor, or NULL with an error. */
int32_t *rl_heads_read_i32(rl_ctx *ctx, const rl_tensor *t);

/* score = hidden @ w^T ([B, T, 1], w [1, C]) read at each row's last real
 * token (mask NULL: the last column) -> [B]. Masks must be right-padded with
 * at least one 1. */
rl_tensor *rl_heads_score_at_end(rl_ctx *ctx, const char *fn, rl_tensor *hidden, rl_tensor *w, rl_tensor *mask);
/* TRL ValueHead: hidden @ w^T + b per position -> [B, T] (w [1, C], b [1]). */
rl_tensor *rl_heads_value(rl_ctx *ctx, rl_tensor *hidden, rl_tensor *w, rl_tensor *b);
/* Token-aligned log-probabilities [B, T] of ids under logits [B, T, V]. */
rl_tensor *rl_heads_logprobs(rl_ctx *ctx, rl_tensor *logits, rl_tensor *ids, rl_tensor *mask);
/* Mean next-token cross-entropy over the targets loss_mask selects (token
 * t + 1 counts when loss_mask[b, t + 1] != 0; NULL: all), a scalar. An
 * error when it selects none. */
rl_tensor *rl_heads_sft_loss(rl_ctx *ctx, const char *fn, rl_tensor *logits, rl_tensor *ids, rl_tensor *loss_mask);

#ifdef __cplusplus
}
#endif
#endif
