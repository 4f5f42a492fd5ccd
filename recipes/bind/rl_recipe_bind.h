/* recipes/bind/rl_recipe_bind.h - what this product binds the recipe language
 * to: the model functions (model_fns.c, on every family of models/rl_model.h) and the libffi bridge that runs
 * `extern` plug-ins from shared libraries (ffi.c). The language (lang/)
 * knows neither; its callers pass them in rl_recipe_opts.
 *
 * Folder recipes/bind/: the model functions and the libffi extern bridge for the language;
 * may include lang/, models/ and below. Start reading here.
 */
#ifndef RL_RECIPE_BIND_H
#define RL_RECIPE_BIND_H

#include "rl_recipe.h"
#include "rl_tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The model functions: token_logprobs, end_score, values, logits,
 * generate, and the verifiable rewards reward_match, reward_format
 * (rewards.c). Handles bound with rl_recipe_bind_model are rl_model *
 * (models/rl_model.h), of any family. */
typedef struct rl_recipe_model_env {
    uint64_t rng_state[4]; /* the sampling stream of generate (an rl_rng) */
    int32_t eos_id;        /* -1: none */
    int32_t pad_id;
    rl_tokenizer *tok;     /* decodes text for the verifiable rewards; NULL: byte ids */
} rl_recipe_model_env;
void rl_recipe_model_env_init(rl_recipe_model_env *env, uint64_t seed);
/* The table; env may be NULL (generate then samples from a stream seeded 0,
 * with no EOS and pad id 0). env must outlive every program compiled with it. */
rl_recipe_fns rl_recipe_model_fns(rl_recipe_model_env *env);

/* The libffi bridge. rl_recipe_compile then loads each extern's library
 * (dlopen: the recipe's directory, $RLHF_PLUGIN_DIR, the program's directory
 * and its plugins/, the build's plugin directory, the system's library path)
 * and resolves its functions, and reports a missing library, function or
 * backward, or a signature that contradicts the library's own NAME_signature
 * string, as errors at the declaration. Externs with a backward are
 * differentiable (exact vector-Jacobian products through the foreign op).
 * The C ABI plug-ins implement is in docs/recipes.md ("Externs: the C ABI"). */
const rl_recipe_extern_bridge *rl_recipe_ffi_bridge(void);

/* rl_recipe_opts_default() with the model functions (env as for
 * rl_recipe_model_fns) and the libffi bridge: what the runner, `rlhf graph`
 * and the gradient checks compile with. */
rl_recipe_opts rl_recipe_opts_models(rl_recipe_model_env *env);

/* The verifiable rewards' calls (rewards.c), rows of the model table. */
rl_status rl_recipe_fn_reward_match(const rl_recipe_call *c, rl_recipe_value *out);
rl_status rl_recipe_fn_reward_format(const rl_recipe_call *c, rl_recipe_value *out);

#ifdef __cplusplus
}
#endif
#endif
