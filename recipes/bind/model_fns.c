/* recipes/bind/model_fns.c - the model functions a recipe can call, as a
 * function table for rl_recipe_compile; models/rl_model.h does the work on
 * any family (GPT-2, the Llama family), so a recipe runs unchanged on each:
 *
 *   token_logprobs(model, tokens) -> f32[B, T]  log pi(ids[t] | ids[<t]); 0 at t = 0 and on padding
 *   end_score(model, tokens)      -> f32[B]     score head at each row's last real token (attn)
 *   values(model, tokens)         -> f32[B, T]  value of the state in which token t is chosen
 *   logits(model, tokens)         -> f32[B, T, V]
 *   generate(model, prompts, max_new = 32, temperature = 1, top_k = 0, top_p = 1, greedy = 0, n = 1)
 *                                 -> tokens     rollout blocks only; n samples per prompt: B*n rows,
 *                                               each prompt's samples adjacent (a group)
 *   reward_match(seq, answer), reward_format(seq, kind)  verifiable rewards (rewards.c)
 *
 * Everything is token-aligned: position t belongs to token t. values()
 * therefore shifts the value head's output right by one (rl_model_values
 * gives V(ids[<=t]); the state before token t is ids[<t]), so rewards,
 * values, log-probabilities and masks line up for gae() and the losses.
 * Model handles are rl_model *.
 */
#include "rl_recipe_bind.h"

#include "rl_model.h"
#include "rl_ops.h"

#include <stdlib.h>
#include <string.h>

void rl_recipe_model_env_init(rl_recipe_model_env *env, uint64_t seed) {
    rl_rng r;
    rl_rng_seed(&r, seed);
    memcpy(env->rng_state, r.s, sizeof r.s);
    env->eos_id = -1;
    env->pad_id = 0;
    env->tok = NULL;
}

static rl_status fn_token_logprobs(const rl_recipe_call *c, rl_recipe_value *out) {
    const rl_recipe_tokens *tk = &c->args[1].tok;
    out->kind = RL_RV_TENSOR;
    out->t = rl_model_token_logprobs(c->ctx, c->args[0].model, tk->ids, tk->attn);
    return out->t ? RL_OK : rl_ctx_status(c->ctx);
}

static rl_status fn_end_score(const rl_recipe_call *c, rl_recipe_value *out) {
    const rl_recipe_tokens *tk = &c->args[1].tok;
    out->kind = RL_RV_TENSOR;
    out->t = rl_model_end_score(c->ctx, c->args[0].model, tk->ids, tk->attn);
    return out->t ? RL_OK : rl_ctx_status(c->ctx);
}

static rl_status fn_values(const rl_recipe_call *c, rl_recipe_value *out) {
    rl_ctx *ctx = c->ctx;
    const rl_recipe_tokens *tk = &c->args[1].tok;
    rl_tensor *v = rl_model_values(ctx, c->args[0].model, tk->ids); /* [B, T]: V(ids[<=t]) */
    if (!v) return rl_ctx_status(ctx);
    const int64_t B = v->shape[0], T = v->shape[1];
    /* aligned[b, t] = v[b, t - 1], 0 at t = 0 */
    rl_tensor *zero = rl_full(ctx, v->dtype, 2, (int64_t[]){B, 1}, 0.0);
    rl_tensor *r = T == 1 ? zero
                          : rl_concat(ctx, 2, (rl_tensor *[]){zero, rl_slice(ctx, v, 1, 0, T - 1)}, 1);
    out->kind = RL_RV_TENSOR;
    out->t = r;
    return r ? RL_OK : rl_ctx_status(ctx);
}

static rl_status fn_logits(const rl_recipe_call *c, rl_recipe_value *out) {
    out->kind = RL_RV_TENSOR;
    out->t = rl_model_logits(c->ctx, c->args[0].model, c->args[1].tok.ids);
    return out->t ? RL_OK : rl_ctx_status(c->ctx);
}

static rl_status fn_generate(const rl_recipe_call *c, rl_recipe_value *out) {
    static rl_recipe_model_env fallback;
    static int fallback_ready;
    rl_ctx *ctx = c->ctx;
    const rl_model *m = c->args[0].model;
    const rl_recipe_tokens *pr = &c->args[1].tok;
    rl_recipe_model_env *env = c->user;
    if (!env) {
        if (!fallback_ready) rl_recipe_model_env_init(&fallback, 0), fallback_ready = 1;
        env = &fallback;
    }
    if (!pr->ids || pr->ids->ndim != 2 || !pr->attn)
        return rl_ctx_fail(ctx, RL_ERR_ARG, "generate: the prompts need ids and attn [B, T]");
    /* a group: each prompt row repeated G times, adjacent, every copy sampled on its own */
    const int64_t G = (int64_t)c->args[7].num, B0 = pr->ids->shape[0], T = pr->ids->shape[1];
    if (G < 1) return rl_ctx_fail(ctx, RL_ERR_ARG, "generate: n is %lld; it must be >= 1", (long long)G);
    const int64_t B = B0 * G;
    size_t n = (size_t)(B * T);
    int32_t *ids = malloc(sizeof(int32_t) * (n ? n : 1)), *attn = malloc(sizeof(int32_t) * (n ? n : 1));
    int64_t *plen = malloc(sizeof(int64_t) * (size_t)(B ? B : 1));
    rl_gen_out g;
    memset(&g, 0, sizeof g);
    rl_status st = RL_OK;
    if (!ids || !attn || !plen) {
        st = rl_ctx_fail(ctx, RL_ERR_MEMORY, "generate: out of memory");
        goto done;
    }
    size_t n0 = (size_t)(B0 * T);
    if ((st = rl_tensor_read(ctx, pr->ids, ids, sizeof(int32_t) * n0)) != RL_OK) goto done;
    if ((st = rl_tensor_read(ctx, pr->attn, attn, sizeof(int32_t) * n0)) != RL_OK) goto done;
    for (int64_t b = B0 - 1; G > 1 && b >= 0; b--) /* back to front: row b moves to rows b*G .. b*G + G - 1 */
        for (int64_t g = G - 1; g >= 0; g--) {
            memmove(ids + (b * G + g) * T, ids + b * T, sizeof(int32_t) * (size_t)T);
            memmove(attn + (b * G + g) * T, attn + b * T, sizeof(int32_t) * (size_t)T);
        }
    for (int64_t b = 0; b < B; b++) {
        plen[b] = 0;
        for (int64_t t = 0; t < T; t++) plen[b] += attn[b * T + t] != 0;
        if (plen[b] < 1) {
            st = rl_ctx_fail(ctx, RL_ERR_ARG, "generate: prompt row %lld is empty (attn has no 1)",
                             (long long)(b / G));
            goto done;
        }
    }
    rl_gen_cfg cfg = rl_gen_cfg_default();
    cfg.max_new_tokens = (int64_t)c->args[2].num;
    cfg.temperature = c->args[3].num;
    cfg.top_k = (int64_t)c->args[4].num;
    cfg.top_p = c->args[5].num;
    cfg.greedy = c->args[6].num != 0;
    cfg.eos_id = env->eos_id;
    cfg.pad_id = env->pad_id;
    if (c->dry) {
        /* the check needs a known length: the fresh dim's prime */
        cfg.greedy = 1;
        cfg.eos_id = -1;
        cfg.max_new_tokens = c->dry_len > T ? c->dry_len - T : 1;
    }
    if (cfg.max_new_tokens < 0) {
        st = rl_ctx_fail(ctx, RL_ERR_ARG, "generate: max_new is %lld; it must be >= 0",
                         (long long)cfg.max_new_tokens);
        goto done;
    }
    rl_rng rng;
    memcpy(rng.s, env->rng_state, sizeof rng.s);
    st = rl_model_generate(ctx, m, ids, plen, B, T, &cfg, &rng, &g);
    memcpy(env->rng_state, rng.s, sizeof rng.s);
    if (st != RL_OK) goto done;
    int64_t shape[2] = {g.B, g.T};
    out->kind = RL_RV_TOKENS;
    out->tok.ids = rl_const(ctx, RL_I32, 2, shape, g.tokens);
    out->tok.mask = rl_const(ctx, RL_I32, 2, shape, g.response_mask);
    out->tok.attn = rl_const(ctx, RL_I32, 2, shape, g.attention_mask);
    if (!out->tok.ids || !out->tok.mask || !out->tok.attn) st = rl_ctx_status(ctx);
done:
    rl_gen_out_free(&g);
    free(ids), free(attn), free(plen);
    return st;
}

/* Dry-run checks need a model of each kind, not of a family: GPT-2's tiny. */
static void *dry_make(rl_ctx *ctx, rl_recipe_model_kind kind, rl_dtype dt, int64_t vocab,
                      int64_t n_ctx, void *user) {
    (void)user;
    rl_model_config cfg;
    rl_model_config_preset("tiny", &cfg);
    rl_model_config_set_vocab(&cfg, vocab);
    if (n_ctx > rl_model_config_ctx(&cfg)) rl_model_config_set_ctx(&cfg, n_ctx);
    rl_model_head h = kind == RL_MODEL_SCORE ? RL_HEAD_SCORE : kind == RL_MODEL_VALUE ? RL_HEAD_VALUE : RL_HEAD_LM;
    return rl_model_new(ctx, &cfg, h, dt, 1);
}

static void dry_free(rl_ctx *ctx, void *model, void *user) {
    (void)user;
    rl_model_free(ctx, model);
}

#define MODEL_TOKENS {{"model", RL_RP_MODEL}, {"tokens", RL_RP_TOKENS}}

static const rl_recipe_fn rl_model_fn_table[] = {
    {.name = "token_logprobs",
     .doc = "token_logprobs(model, tokens) -> f32[B, T]: log pi(ids[t] | ids[<t]), 0 at t = 0 and on "
            "padding",
     .n_params = 2,
     .params = MODEL_TOKENS,
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = fn_token_logprobs},
    {.name = "end_score",
     .doc = "end_score(model, tokens) -> f32[B]: the score model's output at each row's last real token",
     .n_params = 2,
     .params = MODEL_TOKENS,
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .model_kinds = 1u << RL_MODEL_SCORE,
     .call = fn_end_score},
    {.name = "values",
     .doc = "values(model, tokens) -> f32[B, T]: the value of the state in which token t is chosen "
            "(0 at t = 0)",
     .n_params = 2,
     .params = MODEL_TOKENS,
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .model_kinds = 1u << RL_MODEL_VALUE,
     .call = fn_values},
    {.name = "logits",
     .doc = "logits(model, tokens) -> f32[B, T, V]: next-token logits at each position",
     .n_params = 2,
     .params = MODEL_TOKENS,
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .call = fn_logits},
    {.name = "generate",
     .doc = "generate(model, prompts, max_new = 32, temperature = 1, top_k = 0, top_p = 1, greedy = 0, n = 1) "
            "-> tokens: sampled continuations (mask = generated tokens), n per prompt (B*n rows, each "
            "prompt's samples adjacent); rollout blocks only",
     .n_params = 8,
     .params = {{"model", RL_RP_MODEL},
                {"prompts", RL_RP_TOKENS},
                {"max_new", RL_RP_NUMBER, 1, 32, NULL, NULL, 1},
                {"temperature", RL_RP_NUMBER, 1, 1.0},
                {"top_k", RL_RP_NUMBER, 1, 0, NULL, NULL, 1},
                {"top_p", RL_RP_NUMBER, 1, 1.0},
                {"greedy", RL_RP_NUMBER, 1, 0},
                {"n", RL_RP_NUMBER, 1, 1, NULL, NULL, 1, 1}},
     .n_results = 1,
     .results = {RL_RR_TOKENS},
     .flags = RL_RFN_ROLLOUT_ONLY | RL_RFN_NOGRAD,
     .call = fn_generate},
    {.name = "reward_match",
     .doc = "reward_match(seq, answer) -> f32[R]: 1 when the response's answer (its last \\boxed{} or else its last "
            "number) equals the number in answer's text (tokens from \"answer\"; R / G rows for G samples per "
            "prompt), else 0",
     .n_params = 2,
     .params = {{"seq", RL_RP_TOKENS}, {"answer", RL_RP_TOKENS}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .flags = RL_RFN_NOGRAD,
     .call = rl_recipe_fn_reward_match},
    {.name = "reward_format",
     .doc = "reward_format(seq, kind = \"number\") -> f32[R]: 1 when the response is one number (number), holds "
            "\\boxed{number} (boxed), or is <think>..</think><answer>..</answer> (tags), else 0",
     .n_params = 2,
     .params = {{"seq", RL_RP_TOKENS}, {"kind", RL_RP_STRING, 1, 0, "number", "number|boxed|tags"}},
     .n_results = 1,
     .results = {RL_RR_FLOAT},
     .flags = RL_RFN_NOGRAD,
     .call = rl_recipe_fn_reward_format},
};

rl_recipe_fns rl_recipe_model_fns(rl_recipe_model_env *env) {
    rl_recipe_fns f = {
        .fns = rl_model_fn_table,
        .n_fns = (int)(sizeof rl_model_fn_table / sizeof rl_model_fn_table[0]),
        .dry = {.make = dry_make, .free = dry_free},
        .user = env,
    };
    return f;
}

rl_recipe_opts rl_recipe_opts_models(rl_recipe_model_env *env) {
    rl_recipe_opts o = rl_recipe_opts_default();
    o.fns = rl_recipe_model_fns(env);
    o.externs = rl_recipe_ffi_bridge();
    return o;
}
