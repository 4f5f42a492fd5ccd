/* recipes/lang/prelude.c - the prelude: functions written in the recipe language
 * itself that every recipe can call (they are inlined like a recipe's own
 * `fn` declarations). Kept as a C string so that the engine needs no file
 * at run time; docs/recipes.md lists them. A recipe cannot redefine them.
 */
#include "recipe_int.h"

#include <stdlib.h>
#include <string.h>

static const char rl_prelude_text[] =
    "# The prelude: functions every recipe can call.\n"
    "# Reductions over masked tokens (mask: 1 on the tokens that count).\n"
    "fn masked_sum(x, m) = sum(x * m)\n"
    "fn masked_mean(x, m) = sum(x * m) / sum(m)                     # global token mean\n"
    "fn seq_sum(x, m) = sum(x * m, axis = -1)                       # [B, T] -> [B]\n"
    "fn seq_mean(x, m) = sum(x * m, axis = -1) / sum(m, axis = -1)  # [B, T] -> [B]\n"
    "fn seq_masked_mean(x, m) = mean(seq_mean(x, m))                # per-sequence mean, then batch mean\n"
    "# Log-sigmoid helpers (logsig(x) = min(x, 0) - log1p(exp(-|x|)), never overflowing).\n"
    "fn logsig(x) = logsigmoid(x)\n"
    "fn bt_loss(r_w, r_l) = mean(-logsigmoid(r_w - r_l))            # Bradley-Terry\n"
    "# KL estimators of d = lp - lref (Schulman's k1, k2, k3; k3 >= 0).\n"
    "fn k1(d) = d\n"
    "fn k2(d) = d * d / 2\n"
    "fn k3(d) = exp(-d) - 1 + d\n"
    "# PPO pieces.\n"
    "fn clipped_surrogate(ratio, adv, eps) = -min(ratio * adv, clamp(ratio, 1 - eps, 1 + eps) * adv)\n"
    "fn clipped_value_loss(v, v_old, ret, eps) =\n"
    "    0.5 * max(square(v - ret), square(v_old + clamp(v - v_old, -eps, eps) - ret))\n"
    "fn entropy(logits) = -sum(softmax(logits) * log_softmax(logits), axis = -1)\n";

const char *rl_recipe_prelude_source(void) { return rl_prelude_text; }

rl_recipe *rl_prelude_parse(void) {
    rl_recipe *r = calloc(1, sizeof(rl_recipe));
    if (!r) abort();
    r->prelude = true;
    r->src.name = "<prelude>";
    r->src.text = rl_prelude_text;
    r->src.len = (int)strlen(rl_prelude_text);
    rl_parse(r);
    return r;
}
