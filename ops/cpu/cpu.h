/* ops/cpu/cpu.h - helpers shared by the CPU kernels: broadcasting index
 * setup and the kernel prototypes generated from the op table.
 */
#ifndef RL_CPU_H
#define RL_CPU_H

#include "../rl_ops.h"

/* Every op has a CPU kernel rl_cpu_<name> (a missing one fails to link). */
#define OP(e, name, sym, arity, flags) void rl_cpu_##name(void *bctx, const rl_node *n);
#include "../ops.def"
#undef OP

/* Loops over fewer elements than this stay on one thread: below it the
 * cost of waking the OpenMP team exceeds the work. */
#define RL_PAR_GRAIN 32768
/* for (i = 0; i < N; i++) { body } split across threads when N is large.
 * The branch is explicit because entering an OpenMP parallel region costs
 * about a microsecond even when its if() clause is false. */
#define RL_PAR_FOR(i, N, ...)                                                   \
    do {                                                                        \
        const int64_t n_ = (N);                                                 \
        if (n_ > RL_PAR_GRAIN) {                                                \
            _Pragma("omp parallel for schedule(static)")                        \
            for (int64_t i = 0; i < n_; i++) { __VA_ARGS__ }                    \
        } else {                                                                \
            for (int64_t i = 0; i < n_; i++) { __VA_ARGS__ }                    \
        }                                                                       \
    } while (0)

/* Shapes padded to 4 dims, with per-operand element strides where broadcast
 * axes have stride 0. */
typedef struct rl_bcast {
    int64_t shape[RL_MAX_DIMS];
    int64_t stride[3][RL_MAX_DIMS];
} rl_bcast;

static inline void rl_bcast_setup(rl_bcast *b, const rl_tensor *out, int n_in,
                                  rl_tensor *const *in) {
    int pad = RL_MAX_DIMS - out->ndim;
    for (int d = 0; d < RL_MAX_DIMS; d++) b->shape[d] = d < pad ? 1 : out->shape[d - pad];
    for (int k = 0; k < n_in; k++) {
        const rl_tensor *t = in[k];
        int64_t st[RL_MAX_DIMS], s = 1;
        int tp = RL_MAX_DIMS - t->ndim;
        for (int d = RL_MAX_DIMS - 1; d >= 0; d--) {
            int64_t size = d < tp ? 1 : t->shape[d - tp];
            st[d] = (size == 1) ? 0 : s;
            s *= size;
        }
        for (int d = 0; d < RL_MAX_DIMS; d++) b->stride[k][d] = st[d];
    }
}

/* True when every input has exactly the output's element count (no broadcast). */
static inline int rl_same_numel(const rl_tensor *out, int n_in, rl_tensor *const *in) {
    for (int k = 0; k < n_in; k++)
        if (in[k]->numel != out->numel) return 0;
    return 1;
}

#endif
