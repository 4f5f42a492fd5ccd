/* models/heads.c - the heads and losses every model family shares (see
 * models/rl_heads.h): checks on token batches, the end-of-sequence score
 * head, TRL's value head, token-aligned log-probabilities and the SFT loss.
 * GPT-2 (models/gpt2.c) and the Llama family (models/model.c) call these on
 * their own hidden states and logits.
 */
#include "rl_heads.h"

#include <stdlib.h>

#include "rl_internal.h"
#include "rl_ops.h"

bool rl_heads_check_ids(rl_ctx *ctx, const char *fn, rl_tensor *ids, int64_t n_ctx, rl_tensor *mask,
                        const char *mask_name) {
    if (!rl_check_input(ctx, fn, 0, ids)) return false;
    char d[96];
    if (ids->dtype != RL_I32 || ids->ndim != 2 || ids->shape[1] < 1 || ids->shape[1] > n_ctx) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: ids are %s; they must be i32 [B, T] with 1 <= T <= n_ctx = %lld", fn,
                    rl_tensor_describe(ids, d, sizeof d), (long long)n_ctx);
        return false;
    }
    if (mask) {
        if (!rl_check_input(ctx, fn, 1, mask)) return false;
        if (mask->dtype != RL_I32 || !rl_shape_equal(mask->ndim, mask->shape, 2, ids->shape)) {
            char dm[96];
            rl_ctx_fail(ctx, RL_ERR_ARG, "%s: %s is %s; it must be i32 with the ids' shape %s", fn,
                        mask_name, rl_tensor_describe(mask, dm, sizeof dm),
                        rl_tensor_describe(ids, d, sizeof d));
            return false;
        }
    }
    return true;
}

int32_t *rl_heads_read_i32(rl_ctx *ctx, const rl_tensor *t) {
    int32_t *h = malloc(sizeof(int32_t) * (size_t)(t->numel ? t->numel : 1));
    if (!h) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory reading '%s'", t->name);
        return NULL;
    }
    if (rl_tensor_read(ctx, t, h, sizeof(int32_t) * (size_t)t->numel) != RL_OK) {
        free(h);
        return NULL;
    }
    return h;
}

bool rl_heads_check_hidden(rl_ctx *ctx, const char *fn, rl_tensor *hidden, int64_t width) {
    if (!rl_check_input(ctx, fn, 0, hidden)) return false;
    if (hidden->ndim != 3 || hidden->shape[2] != width) {
        char d[96];
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: hidden is %s; it must be [B, T, %lld]", fn,
                    rl_tensor_describe(hidden, d, sizeof d), (long long)width);
        return false;
    }
    return true;
}

rl_tensor *rl_heads_score_at_end(rl_ctx *ctx, const char *fn, rl_tensor *hidden, rl_tensor *w, rl_tensor *mask) {
    if (!rl_check_input(ctx, fn, 0, hidden) || !rl_check_input(ctx, fn, 1, w)) return NULL;
    const int64_t B = hidden->shape[0], T = hidden->shape[1];
    int32_t *idx = malloc(sizeof(int32_t) * (size_t)(B ? B : 1));
    if (!idx) {
        rl_ctx_fail(ctx, RL_ERR_MEMORY, "%s: out of memory", fn);
        return NULL;
    }
    for (int64_t b = 0; b < B; b++) idx[b] = (int32_t)(T - 1);
    if (mask) {
        if (!rl_check_input(ctx, fn, 1, mask)) return free(idx), NULL;
        if (mask->dtype != RL_I32 || !rl_shape_equal(mask->ndim, mask->shape, 2, hidden->shape)) {
            char d[96];
            rl_ctx_fail(ctx, RL_ERR_ARG, "%s: mask is %s; it must be i32 [B, T] = [%lld, %lld]", fn,
                        rl_tensor_describe(mask, d, sizeof d), (long long)B, (long long)T);
            return free(idx), NULL;
        }
        int32_t *mk = rl_heads_read_i32(ctx, mask);
        if (!mk) return free(idx), NULL;
        for (int64_t b = 0; b < B; b++) {
            /* right padding: 1s then 0s; the last real token is at sum - 1 */
            int64_t n = 0;
            while (n < T && mk[b * T + n]) n++;
            int64_t bad = -1;
            for (int64_t t = n; t < T && bad < 0; t++)
                if (mk[b * T + t]) bad = t;
            if (n == 0 || bad >= 0) {
                rl_ctx_fail(ctx, RL_ERR_ARG,
                            "%s: mask row %lld is %s; masks must be right-padded (1s, then 0s) with "
                            "at least one 1, the last real token being scored",
                            fn, (long long)b, n == 0 ? "empty or starts with 0" : "not right-padded");
                free(mk);
                return free(idx), NULL;
            }
            idx[b] = (int32_t)(n - 1);
        }
        free(mk);
    }
    /* HF *ForSequenceClassification: logits = score(hidden) at every
     * position ([B, T, 1], cheap: C per position), then pooled at the last
     * real token: a gather of [B, 1] rather than of [B, 1, C] hidden states. */
    rl_tensor *s = rl_matmul(ctx, hidden, w, 0, 1);     /* [B, T, 1] */
    s = rl_reshape(ctx, s, 2, (int64_t[]){B, T});
    rl_tensor *index = rl_const(ctx, RL_I32, 2, (int64_t[]){B, 1}, idx);
    free(idx);
    return rl_reshape(ctx, rl_gather(ctx, s, index, 1), 1, (int64_t[]){B});
}

rl_tensor *rl_heads_value(rl_ctx *ctx, rl_tensor *hidden, rl_tensor *w, rl_tensor *b) {
    if (!rl_check_input(ctx, "value head", 0, hidden)) return NULL;
    const int64_t B = hidden->shape[0], T = hidden->shape[1];
    /* TRL ValueHead: summary = Linear(C, 1) on every position (dropout is
     * identity); the bias is added after the [B, T] reshape (B*T adds, not a
     * broadcast over a trailing axis of 1) */
    rl_tensor *v = rl_matmul(ctx, hidden, w, 0, 1);   /* [B, T, 1] */
    return rl_add(ctx, rl_reshape(ctx, v, 2, (int64_t[]){B, T}), b);
}

/* Shifted targets for next-token losses: tg[b, t] = ids[b, t + 1] when token
 * t + 1 counts (mask NULL or mask[b, t + 1] != 0), else -1 (ignored by
 * cross_entropy). Returns an arena i32 [B, T] tensor and the number of counted
 * targets in *count, or NULL with an error. */
static rl_tensor *rl_heads_shift_targets(rl_ctx *ctx, rl_tensor *ids, rl_tensor *mask, int64_t *count) {
    const int64_t B = ids->shape[0], T = ids->shape[1];
    int32_t *h = rl_heads_read_i32(ctx, ids);
    int32_t *mk = mask ? rl_heads_read_i32(ctx, mask) : NULL;
    if (!h || (mask && !mk)) {
        free(h), free(mk);
        return NULL;
    }
    int64_t n = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            int64_t i = b * T + t;
            bool use = t + 1 < T && (!mk || mk[i + 1] != 0);
            int32_t next = use ? h[i + 1] : -1;
            h[i] = next; /* in place: h[i + 1] is read before it is overwritten */
            n += use;
        }
    rl_tensor *tg = rl_const(ctx, RL_I32, 2, ids->shape, h);
    free(h), free(mk);
    *count = n;
    return tg;
}

rl_tensor *rl_heads_logprobs(rl_ctx *ctx, rl_tensor *logits, rl_tensor *ids, rl_tensor *mask) {
    const char *fn = "token logprobs";
    if (!rl_check_input(ctx, fn, 0, logits) || !rl_check_input(ctx, fn, 1, ids)) return NULL;
    char dl[96], di[96];
    if (ids->dtype != RL_I32 || ids->ndim != 2 || logits->ndim != 3 ||
        !rl_shape_equal(2, logits->shape, 2, ids->shape)) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s: logits are %s and ids %s; they must be [B, T, V] and i32 [B, T]",
                    fn, rl_tensor_describe(logits, dl, sizeof dl), rl_tensor_describe(ids, di, sizeof di));
        return NULL;
    }
    if (mask && (!rl_check_input(ctx, fn, 2, mask) || mask->dtype != RL_I32 ||
                 !rl_shape_equal(mask->ndim, mask->shape, 2, ids->shape))) {
        if (!rl_ctx_status(ctx))
            rl_ctx_fail(ctx, RL_ERR_ARG, "%s: mask is %s; it must be i32 with the ids' shape %s", fn,
                        rl_tensor_describe(mask, dl, sizeof dl), rl_tensor_describe(ids, di, sizeof di));
        return NULL;
    }
    const int64_t B = ids->shape[0], T = ids->shape[1];
    if (T < 2) return rl_full(ctx, logits->dtype, 2, ids->shape, 0.0); /* nothing is predicted */
    int64_t count;
    rl_tensor *tg = rl_heads_shift_targets(ctx, ids, mask, &count);
    /* ce[b, t] = -log p(ids[b, t + 1]) (position t predicts token t + 1);
     * token alignment moves it one column right, with 0 for token 0 */
    rl_tensor *ce = rl_cross_entropy(ctx, logits, tg);
    rl_tensor *parts[2] = {rl_full(ctx, logits->dtype, 2, (int64_t[]){B, 1}, 0.0),
                           rl_neg(ctx, rl_slice(ctx, ce, 1, 0, T - 1))};
    return rl_concat(ctx, 2, parts, 1);
}

rl_tensor *rl_heads_sft_loss(rl_ctx *ctx, const char *fn, rl_tensor *logits, rl_tensor *ids, rl_tensor *loss_mask) {
    if (!rl_check_input(ctx, fn, 0, logits) || !rl_heads_check_ids(ctx, fn, ids, ids ? ids->shape[1] : 1, loss_mask, "loss_mask"))
        return NULL;
    int64_t count;
    rl_tensor *tg = rl_heads_shift_targets(ctx, ids, loss_mask, &count);
    if (!tg) return NULL;
    if (count == 0) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: the loss mask selects no token at t >= 1, so the mean is undefined (token "
                    "0 has no prefix and is never a target)",
                    fn);
        return NULL;
    }
    rl_tensor *ce = rl_cross_entropy(ctx, logits, tg); /* [B, T] */
    return rl_mul(ctx, rl_sum(ctx, ce, RL_AXIS_ALL, 0), rl_scalar(ctx, logits->dtype, 1.0 / (double)count));
}
