/* tests/fuzz_recipe.c - libFuzzer harness for the recipe language: any
 * bytes are parsed, given two --set overrides, checked and compiled
 * (including the shape check on tiny GPT-2 models), and every diagnostic is
 * formatted. It must never crash, leak or trip a sanitizer.
 *
 * Built two ways (tests/CMakeLists.txt): with -DRLHF_FUZZ=ON as the libFuzzer
 * binary `fuzz_recipe` (clang -fsanitize=fuzzer,address,undefined), and
 * always as `fuzz_recipe_replay`, a plain main() that runs the files and
 * directories given on its command line (the CTest replays tests/fuzz_corpus).
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rl_ops.h"
#include "rl_recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static rl_ctx *fuzz_ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!fuzz_ctx) fuzz_ctx = rl_ctx_new(NULL);
    if (!fuzz_ctx || size > 65536) return 0; /* big inputs only slow the search down */
    rl_recipe *r = rl_recipe_parse((const char *)data, size, "fuzz.recipe");
    if (!r) return 0;
    /* overrides exercise the --set path whether or not the names exist */
    rl_recipe_set(r, "beta", "0.5");
    rl_recipe_set_arg(r, "kl=k1");
    rl_recipe_opts o = rl_recipe_opts_default();
    o.dtype = size % 2 ? RL_F64 : RL_F32;
    rl_recipe_program *p = rl_recipe_compile(r, fuzz_ctx, &o);
    char buf[4096];
    for (int i = 0; i < rl_recipe_n_diags(r); i++) {
        const rl_recipe_diag *d = rl_recipe_diag_at(r, i);
        int n = rl_recipe_format_diag(d, buf, sizeof buf);
        if (n < 0 || !d->msg || d->line < 1 || d->col < 1 || d->end_col <= d->col) abort();
    }
    if (p) {
        for (int i = 0; i < rl_recipe_n_nodes(p); i++) {
            const rl_recipe_node *nd = rl_recipe_node_at(p, i);
            for (int k = 0; k < nd->n_in; k++)
                if (nd->in[k] < 0 || nd->in[k] >= i) abort(); /* instructions are in dataflow order */
        }
        for (int i = 0; i < rl_recipe_n_losses(p); i++) (void)rl_recipe_loss_at(p, i)->n_trainables;
        rl_recipe_program_free(p);
    }
    rl_recipe_free(r);
    rl_ctx_clear_error(fuzz_ctx);
    rl_ctx_reset(fuzz_ctx);
    return 0;
}

#ifdef RLHF_FUZZ_REPLAY
/* Runs one file; returns 0 on success (a crash never returns). */
static int replay_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_recipe_replay: cannot open %s\n", path);
        return 1;
    }
    static uint8_t buf[1 << 17];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    LLVMFuzzerTestOneInput(buf, n);
    return 0;
}

int main(int argc, char **argv) {
    int files = 0, bad = 0;
    for (int a = 1; a < argc; a++) {
        struct stat st;
        if (stat(argv[a], &st) != 0) {
            fprintf(stderr, "fuzz_recipe_replay: %s does not exist\n", argv[a]);
            bad++;
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            bad += replay_file(argv[a]);
            files++;
            continue;
        }
        DIR *d = opendir(argv[a]);
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], e->d_name);
            bad += replay_file(path);
            files++;
        }
        if (d) closedir(d);
    }
    printf("fuzz_recipe_replay: %d inputs, %d unreadable\n", files, bad);
    if (fuzz_ctx) rl_ctx_free(fuzz_ctx);
    return bad || files == 0;
}
#endif
