/* ops/backends.c - the backend registry: backends by name, and rl_ctx_new,
 * which makes a context on one. The CPU backend is always there; others
 * (the CUDA plug-in is the next) register a constructor with
 * rl_backend_register. It lives in ops/ rather than engine/ because a
 * backend is a kernel table over the op table, which the engine never sees.
 */
#include "rl_ops.h"

#include "cpu.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RL_MAX_BACKENDS 8

typedef struct rl_backend_entry {
    char name[32];
    rl_backend_create_fn create;
} rl_backend_entry;

static rl_backend_entry rl_backends[RL_MAX_BACKENDS] = {{"cpu", rl_backend_cpu_new}};
static int rl_n_backends = 1;

rl_status rl_backend_register(const char *name, rl_backend_create_fn create) {
    if (!name || !*name || strlen(name) >= sizeof rl_backends[0].name || !create) return RL_ERR_ARG;
    for (int i = 0; i < rl_n_backends; i++)
        if (strcmp(rl_backends[i].name, name) == 0) {
            rl_backends[i].create = create;
            return RL_OK;
        }
    if (rl_n_backends == RL_MAX_BACKENDS) return RL_ERR_MEMORY;
    snprintf(rl_backends[rl_n_backends].name, sizeof rl_backends[0].name, "%s", name);
    rl_backends[rl_n_backends++].create = create;
    return RL_OK;
}

int rl_backend_count(void) { return rl_n_backends; }

const char *rl_backend_name_at(int i) { return i >= 0 && i < rl_n_backends ? rl_backends[i].name : NULL; }

rl_ctx *rl_ctx_new(const char *backend_name) {
    const char *name = backend_name ? backend_name : "cpu";
    for (int i = 0; i < rl_n_backends; i++) {
        if (strcmp(rl_backends[i].name, name) != 0) continue;
        char err[512] = "";
        rl_backend *be = rl_backends[i].create(err, sizeof err);
        if (!be) {
            fprintf(stderr, "rlhf: the %s backend cannot be used: %s\n", name, err[0] ? err : "it failed to start");
            return NULL;
        }
        if (be->iface->n_kernels != RL_OP_COUNT) {
            /* a plug-in built against another op table would index the wrong kernels */
            fprintf(stderr, "rlhf: the %s backend has %d kernel slots but this build has %d ops; rebuild it\n",
                    name, be->iface->n_kernels, RL_OP_COUNT);
            if (be->iface->free_context) be->iface->free_context(be->ctx);
            free(be);
            return NULL;
        }
        return rl_ctx_new_backend(be);
    }
    char list[RL_MAX_BACKENDS * 34] = "";
    size_t k = 0;
    for (int i = 0; i < rl_n_backends && k < sizeof list; i++)
        k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", i ? ", " : "", rl_backends[i].name);
    fprintf(stderr, "rlhf: unknown backend '%s' (available: %s)\n", name, list);
    return NULL;
}
