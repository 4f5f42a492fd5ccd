/* ops/rl_foreign.h - the foreign op: a value computed outside the engine (a
 * recipe's `extern`, a C function called through libffi) joined to the tape
 * with the function's vector-Jacobian product, so that gradients flow
 * through it exactly, like through any op.
 *
 * The caller computes the value itself (on the host), then calls
 * rl_foreign(): the output is a copy of the value, recorded with the
 * function's inputs. Backward calls fn->vjp(dout) for the inputs that need a
 * gradient and adds what it returns into their gradients. The vjp is C code,
 * not ops, so gradients of gradients through a foreign function (create_graph)
 * are refused with an error rather than silently zero.
 */
#ifndef RL_FOREIGN_H
#define RL_FOREIGN_H

#include "rl_ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RL_FOREIGN_MAX_IN 8

/* Fills din[i] (a zeroed arena tensor shaped like in[i]; NULL where in[i]
 * needs no gradient) with dout's vector-Jacobian product. Returns RL_OK, or
 * a status with the reason recorded in ctx (rl_ctx_fail). */
typedef rl_status (*rl_foreign_vjp_fn)(rl_ctx *ctx, void *user, int n_in, rl_tensor *const *in,
                                       const rl_tensor *dout, rl_tensor **din);

typedef struct rl_foreign_fn {
    const char *name;      /* for messages ("extern 'soft_excess'") */
    rl_foreign_vjp_fn vjp;
    void *user;
} rl_foreign_fn;

/* out = value (a float tensor made without a gradient), recorded so that
 * backward calls fn->vjp with in[0 .. n_in) (any dtypes, at most
 * RL_FOREIGN_MAX_IN). fn must stay valid until the tape is reset (static, or
 * from rl_ctx_scratch). With gradients off, or when no input needs one, the
 * result is just the copy. */
rl_tensor *rl_foreign(rl_ctx *ctx, const rl_foreign_fn *fn, int n_in, rl_tensor *const *in, rl_tensor *value);

#ifdef __cplusplus
}
#endif
#endif
