/* tests/rl_test_batch.h - what the recipe suites (test_recipe,
 * test_builtin_recipes, test_extern) share: a seeded token batch with host
 * copies for by-hand sums, and a tiny f64 GPT-2. Include after rl_test.h.
 */
#ifndef RL_TEST_BATCH_H
#define RL_TEST_BATCH_H

#include "rl_rng.h"
#include "rl_model.h"

/* A token batch: ids from a seeded stream (< 64), rows of the given lengths
 * (right padding), the response starting at resp[b]. */
typedef struct rl_test_batch {
    rl_tensor *ids, *mask, *attn;
    int64_t B, T;
    int32_t hid[96], hmask[96], hattn[96];
} rl_test_batch;

static inline void rl_test_batch_make(rl_ctx *ctx, rl_test_batch *b, int64_t B, int64_t T, const int *len,
                                      const int *resp, uint64_t seed) {
    assert_true(B * T <= 96);
    b->B = B, b->T = T;
    rl_rng rng;
    rl_rng_seed(&rng, seed);
    for (int64_t i = 0; i < B; i++)
        for (int64_t t = 0; t < T; t++) {
            int64_t k = i * T + t;
            b->hattn[k] = t < len[i];
            b->hmask[k] = t < len[i] && t >= resp[i];
            b->hid[k] = t < len[i] ? (int32_t)(rl_rng_next(&rng) % 64) : 0;
        }
    int64_t shape[2] = {B, T};
    b->ids = rl_tensor_new(ctx, RL_I32, 2, shape, "ids");
    b->mask = rl_tensor_new(ctx, RL_I32, 2, shape, "mask");
    b->attn = rl_tensor_new(ctx, RL_I32, 2, shape, "attn");
    size_t nb = sizeof(int32_t) * (size_t)(B * T);
    assert_int_equal(rl_tensor_write(ctx, b->ids, b->hid, nb), RL_OK);
    assert_int_equal(rl_tensor_write(ctx, b->mask, b->hmask, nb), RL_OK);
    assert_int_equal(rl_tensor_write(ctx, b->attn, b->hattn, nb), RL_OK);
}

static inline void rl_test_batch_free(rl_ctx *ctx, rl_test_batch *b) {
    rl_tensor_free(ctx, b->ids);
    rl_tensor_free(ctx, b->mask);
    rl_tensor_free(ctx, b->attn);
}

/* A fresh tiny GPT-2 in f64 (gradient checks), seeded. */
static inline rl_model *rl_test_tiny_gpt2(rl_ctx *ctx, rl_model_head kind, uint64_t seed) {
    rl_model_config cfg;
    assert_int_equal(rl_model_config_preset("tiny", &cfg), RL_OK);
    rl_model *m = rl_model_new(ctx, &cfg, kind, RL_F64, seed);
    assert_non_null(m);
    return m;
}

#endif
