/* ops/foreign.c - the foreign op (ops/rl_foreign.h): front end, backward
 * rule, its CPU kernel and its gradient-check case.
 *
 * The CPU kernel lives here rather than in ops/cpu/ because it only copies
 * the value the caller computed: the real work happened outside the engine.
 * The rl_foreign_fn pointer travels in the node's integer attributes (tape
 * nodes have no other slot for it); it must outlive the tape, which the
 * contract of rl_foreign() asks of the caller.
 */
#include "rl_foreign.h"

#include "common.h"
#include "cpu.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

rl_tensor *rl_foreign(rl_ctx *ctx, const rl_foreign_fn *fn, int n_in, rl_tensor *const *in, rl_tensor *value) {
    if (!fn || !fn->vjp || n_in < 0 || n_in > RL_FOREIGN_MAX_IN) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "foreign: needs a function with a vjp and at most %d inputs (got %d)",
                    RL_FOREIGN_MAX_IN, n_in);
        return NULL;
    }
    if (!rl_check_input(ctx, "foreign", n_in, value)) return NULL;
    for (int i = 0; i < n_in; i++)
        if (!rl_check_input(ctx, "foreign", i, in[i])) return NULL;
    if (!rl_check_float(ctx, fn->name ? fn->name : "foreign", 0, value)) return NULL;
    if (value->flags & RL_TF_REQUIRES_GRAD) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "%s: the value must be computed without a gradient (its gradient comes from the vjp)",
                    fn->name ? fn->name : "foreign");
        return NULL;
    }
    rl_tensor *all[1 + RL_FOREIGN_MAX_IN];
    all[0] = value;
    for (int i = 0; i < n_in; i++) all[1 + i] = in[i];
    rl_attrs at;
    memset(&at, 0, sizeof at);
    at.ints[0] = (int64_t)(intptr_t)fn;
    return rl_op_run(ctx, RL_OP_FOREIGN, n_in + 1, all, &at, value->dtype, value->ndim, value->shape, 0, NULL);
}

void rl_cpu_foreign(void *bctx, const rl_node *n) {
    (void)bctx;
    memcpy(n->out->data, n->in[0]->data, (size_t)n->out->numel * rl_dtype_size(n->out->dtype));
}

void rl_grad_foreign(rl_ctx *ctx, const rl_node *n, rl_tensor *dout) {
    const rl_foreign_fn *fn = (const rl_foreign_fn *)(intptr_t)n->attrs.ints[0];
    const char *name = fn->name ? fn->name : "foreign";
    if (rl_ctx_create_graph(ctx)) {
        rl_ctx_fail(ctx, RL_ERR_STATE,
                    "%s: gradients of gradients through a foreign function are not supported (its "
                    "backward is C code, not ops); turn create_graph off",
                    name);
        return;
    }
    int k = n->n_in - 1;
    rl_tensor *const *in = n->in + 1;
    rl_tensor *din[RL_FOREIGN_MAX_IN] = {0};
    bool any = false;
    for (int i = 0; i < k; i++) {
        if (!RL_NEEDS_GRAD(in[i]) || !rl_dtype_is_float(in[i]->dtype)) continue;
        din[i] = rl_full(ctx, in[i]->dtype, in[i]->ndim, in[i]->shape, 0.0);
        if (!din[i]) return;
        any = true;
    }
    if (!any) return;
    rl_status st = fn->vjp(ctx, fn->user, k, in, dout, din);
    if (st != RL_OK) {
        if (!rl_ctx_status(ctx)) rl_ctx_fail(ctx, st, "%s: its backward failed", name);
        return;
    }
    for (int i = 0; i < k; i++)
        if (din[i]) rl_grad_accumulate(ctx, in[i], din[i]);
}

/* ---- gradient check -------------------------------------------------------------------------- */

/* A host function with a dense, non-diagonal Jacobian and an i32 input, the
 * shape of what plug-ins do:
 *   y[i] = sum_j x[i,j] w[j]^2 + x[i,k_i]^3 w[k_i],   k = idx[i]
 * with x [3, 4], w [4], idx i32 [3]. */
static double gc_val(rl_ctx *ctx, const rl_tensor *t, int64_t i) { return rl_tensor_get(ctx, t, i); }

static rl_status gc_vjp(rl_ctx *ctx, void *user, int n_in, rl_tensor *const *in, const rl_tensor *dout,
                        rl_tensor **din) {
    (void)user;
    (void)n_in;
    const rl_tensor *x = in[0], *w = in[1], *idx = in[2];
    for (int64_t i = 0; i < 3; i++) {
        double dy = gc_val(ctx, dout, i);
        int64_t k = (int64_t)gc_val(ctx, idx, i);
        for (int64_t j = 0; j < 4; j++) {
            double xv = gc_val(ctx, x, i * 4 + j), wv = gc_val(ctx, w, j);
            double dx = dy * wv * wv + (j == k ? 3 * xv * xv * wv * dy : 0);
            double dw = dy * (2 * xv * wv + (j == k ? xv * xv * xv : 0));
            if (din[0]) rl_tensor_set(ctx, din[0], i * 4 + j, gc_val(ctx, din[0], i * 4 + j) + dx);
            if (din[1]) rl_tensor_set(ctx, din[1], j, gc_val(ctx, din[1], j) + dw);
        }
    }
    return RL_OK;
}

static const rl_foreign_fn gc_fn = {"foreign test function", gc_vjp, NULL};

static rl_tensor *gc_foreign(rl_ctx *ctx, rl_tensor **in, const rl_gc_case *c) {
    (void)c;
    double y[3];
    for (int64_t i = 0; i < 3; i++) {
        int64_t k = (int64_t)gc_val(ctx, in[2], i);
        y[i] = 0;
        for (int64_t j = 0; j < 4; j++) {
            double wv = gc_val(ctx, in[1], j);
            y[i] += gc_val(ctx, in[0], i * 4 + j) * wv * wv;
        }
        double xk = gc_val(ctx, in[0], i * 4 + k);
        y[i] += xk * xk * xk * gc_val(ctx, in[1], k);
    }
    rl_tensor *v = rl_full(ctx, in[0]->dtype, 1, (int64_t[]){3}, 0.0);
    if (!v) return NULL;
    for (int64_t i = 0; i < 3; i++) rl_tensor_set(ctx, v, i, y[i]);
    return rl_foreign(ctx, &gc_fn, 3, in, v);
}

RL_GC_CASES(foreign,
    {"dense Jacobian, f64/f32 and an i32 input", 3,
     {RL_GC_F(-1, 1, 2, 3, 4), RL_GC_F(0.5, 1.5, 1, 4), RL_GC_I(0, 4, 1, 3)}, gc_foreign, NULL, {0}, 0});
