/* recipes/lang/builtin.c - the recipes shipped as recipes/NAME.recipe, found by name,
 * so that command lines take either a recipe file or a built-in name
 * (`rlhf gradcheck ppo_kl`, `rlhf gradcheck my.recipe`). The files are read
 * at run time from $RLHF_RECIPE_DIR when it is set, else from the source
 * tree the binary was built from (RLHF_SOURCE_DIR/recipes). Also the names of
 * the token rows a runner builds (rl_recipe_row_columns).
 */
#include "rl_recipe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const rl_builtin_names[] = {
    "sft", "bradley_terry", "cost_model", "ppo_kl", "safe_rlhf", "dpo", "ipo", "orpo", "simpo", "kto",
    "grpo", "dapo", "rloo", "reinforce_pp", "remax",
};

const char *const rl_recipe_row_columns[] = {"prompt", "response", "completion", "chosen", "rejected",
                                             "safer", "unsafer", "safer_sign", "unsafer_sign", "mismatched", NULL};

int rl_recipe_is_row_column(const char *col) {
    for (int i = 0; col && rl_recipe_row_columns[i]; i++)
        if (strcmp(col, rl_recipe_row_columns[i]) == 0) return 1;
    return 0;
}

char *rl_recipe_builtin_list(char *buf, size_t n) {
    size_t k = 0;
    if (n) buf[0] = 0;
    for (int i = 0; i < rl_recipe_n_builtins() && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%s", i ? ", " : "", rl_builtin_names[i]);
    return buf;
}

int rl_recipe_n_builtins(void) { return (int)(sizeof rl_builtin_names / sizeof rl_builtin_names[0]); }

const char *rl_recipe_builtin_name(int i) {
    return i >= 0 && i < rl_recipe_n_builtins() ? rl_builtin_names[i] : NULL;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

rl_status rl_recipe_resolve(const char *arg, char *path, size_t n) {
    if (!arg || !path || n == 0) return RL_ERR_ARG;
    path[0] = 0;
    if (is_file(arg)) {
        if (strlen(arg) >= n) return RL_ERR_ARG;
        snprintf(path, n, "%s", arg);
        return RL_OK;
    }
    int found = 0;
    for (int i = 0; i < rl_recipe_n_builtins(); i++)
        if (strcmp(arg, rl_builtin_names[i]) == 0) found = 1;
    if (!found) return RL_ERR_ARG;
    const char *dir = getenv("RLHF_RECIPE_DIR");
#ifdef RLHF_SOURCE_DIR
    const char *src = RLHF_SOURCE_DIR "/recipes";
#else
    const char *src = "recipes";
#endif
    const char *dirs[2] = {dir && dir[0] ? dir : NULL, src};
    for (int k = 0; k < 2; k++) {
        if (!dirs[k]) continue;
        int w = snprintf(path, n, "%s/%s.recipe", dirs[k], arg);
        if (w > 0 && (size_t)w < n && is_file(path)) return RL_OK;
    }
    path[0] = 0;
    return RL_ERR_IO;
}
