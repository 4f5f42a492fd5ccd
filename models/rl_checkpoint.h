/* models/rl_checkpoint.h - GPT-2 checkpoints: loading and saving a model as
 * safetensors with Hugging Face tensor names, alone or as a Hugging Face model
 * directory (config.json + model.safetensors).
 *
 * Loading accepts names with or without the "transformer." prefix, an absent
 * "lm_head.weight" or one equal to "wte.weight", the causal-mask buffers that
 * older exports carry ("h.N.attn.bias", "h.N.attn.masked_bias"), and F32,
 * F64, F16 and BF16 data (converted to the model's dtype). Anything else that
 * does not fit the config is refused with a message naming the file and the
 * tensor: a missing tensor, a wrong shape, an unknown tensor, an untied head.
 */
#ifndef RL_CHECKPOINT_H
#define RL_CHECKPOINT_H

#include "rl_gpt2.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a Hugging Face GPT-2 config.json (n_embd, n_layer, n_head,
 * n_positions, vocab_size, layer_norm_epsilon). */
rl_status rl_gpt2_config_load_json(const char *path, rl_gpt2_config *cfg, char *err, size_t errlen);
/* Writes config.json for cfg (and the kind's architecture name), atomically. */
rl_status rl_gpt2_config_save_json(const char *path, const rl_gpt2_config *cfg, rl_gpt2_kind kind,
                                   char *err, size_t errlen);

/* Loads a model from PATH: a directory holding config.json and
 * model.safetensors, or a .safetensors file whose config comes from its
 * __metadata__ (as written by rl_gpt2_save) or, failing that, from a
 * config.json beside it. The model gets `kind`: trunk tensors must be
 * present; a head the file lacks is initialised fresh from `seed` (a score or
 * value model started from an LM checkpoint); a head of another kind in the
 * file is ignored. */
rl_status rl_gpt2_load(rl_ctx *ctx, const char *path, rl_gpt2_kind kind, rl_dtype dtype,
                       uint64_t seed, rl_gpt2 **out, char *err, size_t errlen);

/* Saves a model. PATH ending in ".safetensors" writes that one file (config
 * in its __metadata__); any other PATH is a directory (created if missing)
 * that receives config.json and model.safetensors. Files are written to a
 * temporary name and renamed, so an existing checkpoint is never half
 * overwritten. Tensors are stored as F32 (or F64 for f64 models). */
rl_status rl_gpt2_save(rl_ctx *ctx, const rl_gpt2 *m, const char *path, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
