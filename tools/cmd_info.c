/* tools/cmd_info.c - `rlhf info`: version, the OpenBLAS core in use and its
 * thread count, the backends that load, and a warning (with the fix) when
 * OpenBLAS fell back to a generic core on a CPU that has AVX2 or AVX-512.
 */
#include "cli.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

const char *rl_blas_corename(void) {
    const char *c = openblas_get_corename();
    return c ? c : "unknown";
}

int rl_blas_threads(void) { return openblas_get_num_threads(); }

static int rl_core_in(const char *core, const char *const *list) {
    for (; *list; list++)
        if (strcasecmp(core, *list) == 0) return 1;
    return 0;
}

int rl_blas_warn_generic_core(FILE *f) {
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2_cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                             "SapphireRapids", NULL};
    const char *core = rl_blas_corename();
    __builtin_cpu_init();
    const char *want = NULL, *feature = NULL;
    if (__builtin_cpu_supports("avx512f") && !rl_core_in(core, avx512_cores)) {
        want = "SkylakeX";
        feature = "AVX-512";
    } else if (__builtin_cpu_supports("avx2") && !rl_core_in(core, avx2_cores) &&
               !rl_core_in(core, avx512_cores)) {
        want = "Haswell";
        feature = "AVX2";
    }
    if (!want) return 0;
    const char *env = getenv("OPENBLAS_CORETYPE");
    fprintf(f,
            "warning: OpenBLAS runs its '%s' kernels%s%s%s, but this CPU has %s: matrix products "
            "run several times slower than they could.\n"
            "         fix: export OPENBLAS_CORETYPE=%s (before starting rlhf)\n",
            core, env ? " (OPENBLAS_CORETYPE=" : "", env ? env : "", env ? " is set)" : "", feature,
            want);
    return 1;
}

int rl_cmd_info(int argc, char **argv) {
    (void)argv;
    if (argc > 1) {
        fprintf(stderr, "usage: rlhf info\n");
        return 2;
    }
    printf("rlhf %s\n", RL_VERSION);
    const char *env = getenv("OPENBLAS_CORETYPE");
    printf("blas: OpenBLAS, core %s, %d thread%s%s%s%s\n", rl_blas_corename(), rl_blas_threads(),
           rl_blas_threads() == 1 ? "" : "s", env ? " (OPENBLAS_CORETYPE=" : "", env ? env : "",
           env ? ")" : "");
    __builtin_cpu_init();
    printf("cpu: avx2 %s, avx512f %s\n", __builtin_cpu_supports("avx2") ? "yes" : "no",
           __builtin_cpu_supports("avx512f") ? "yes" : "no");
    /* every registered backend, started once to see that it loads */
    int cpu_ok = 0;
    printf("backends:");
    for (int i = 0; i < rl_backend_count(); i++) {
        rl_ctx *ctx = rl_ctx_new(rl_backend_name_at(i));
        if (i == 0) cpu_ok = ctx != NULL;
        printf("%s %s %s", i ? "," : "", rl_backend_name_at(i), ctx ? "loaded" : "FAILED");
        rl_ctx_free(ctx);
    }
    printf(", cuda not built (plug-in pending)\n");
    rl_blas_warn_generic_core(stdout);
    return cpu_ok ? 0 : 1;
}
