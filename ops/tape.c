/* ops/tape.c - the tape: running an op (allocate, dispatch to the backend,
 * record), and backward (walk the tape in reverse, call each op's rule, which
 * adds into input gradients). The records themselves are stored by the
 * context (engine/rl_internal.h); this file is what gives them meaning.
 *
 * The hot path of a recorded op is: check inputs, one header and one data
 * bump allocation, one indirect kernel call, one tape append. No malloc.
 * View ops (OPF_VIEW: reshape) skip the data and the kernel: their output
 * shares the input's memory.
 */
#include "rl_ops.h"

#include <stdio.h>
#include <string.h>

rl_tensor *rl_op_run(rl_ctx *ctx, rl_op op, int n_in, rl_tensor *const *in,
                     const rl_attrs *attrs, rl_dtype out_dtype, int out_ndim,
                     const int64_t *out_shape, int n_saved, const rl_saved_spec *saved) {
    const rl_op_info *info = &rl_op_table[op];
    bool needs_grad = false;
    for (int i = 0; i < n_in; i++) {
        if (!rl_check_input(ctx, info->name, i, in[i])) return NULL;
        if (in[i]->flags & RL_TF_REQUIRES_GRAD) needs_grad = true;
    }
    rl_backend *be = rl_ctx_backend(ctx);
    rl_kernel_fn kern = (int)op < be->iface->n_kernels ? be->iface->kernels[op] : NULL;
    if (!kern) {
        rl_ctx_fail(ctx, RL_ERR_BACKEND,
                    "op '%s' is not implemented by the %s backend; run it on the cpu backend "
                    "or add a kernel to the %s kernel table",
                    info->name, be->iface->name, be->iface->name);
        return NULL;
    }
    const char *why = NULL;
    int64_t max_numel = rl_ctx_max_numel(ctx, &why);
    if (max_numel) {
        double numel = 1;
        for (int d = 0; d < out_ndim; d++) numel *= (double)out_shape[d];
        if (numel > (double)max_numel) {
            rl_ctx_fail(ctx, RL_ERR_ARG, "%s would make a tensor of %.0f elements%s%s (more than %lld)",
                        info->name, numel, why ? " " : "", why ? why : "", (long long)max_numel);
            return NULL;
        }
    }
    const bool view = (info->flags & OPF_VIEW) != 0;
    rl_tensor *out;
    if (view) {
        /* a header in the arena (an empty tensor, so no data of its own)
         * that takes the input's data: see OPF_VIEW in rl_ops.h */
        out = rl_arena_tensor(ctx, out_dtype, 1, (int64_t[]){0});
        if (!out) return NULL;
        out->ndim = out_ndim;
        for (int d = 0; d < out_ndim; d++) out->shape[d] = out_shape[d];
        out->numel = in[0]->numel;
        out->data = in[0]->data;
    } else {
        out = rl_arena_tensor(ctx, out_dtype, out_ndim, out_shape);
        if (!out) return NULL;
    }
    rl_node node;
    node.op = op;
    node.n_in = n_in;
    node.in = (rl_tensor **)in;
    node.out = out;
    node.saved[0] = node.saved[1] = NULL;
    if (attrs)
        node.attrs = *attrs;
    else
        memset(&node.attrs, 0, sizeof node.attrs);
    node.backward = rl_ctx_in_backward(ctx);
    needs_grad = needs_grad && rl_ctx_grad_enabled(ctx) && !(info->flags & OPF_NOGRAD);
    /* saved values only serve backward: kernels skip them when they are NULL */
    for (int i = 0; needs_grad && i < n_saved && i < RL_MAX_SAVED; i++) {
        node.saved[i] = rl_arena_tensor(ctx, saved[i].dtype, saved[i].ndim, saved[i].shape);
        if (!node.saved[i]) return NULL;
    }
    if (!view) kern(be->ctx, &node);

    if (needs_grad) {
        /* the caller's input array may live on its stack: copy it */
        rl_tensor **ins = rl_ctx_scratch(ctx, (size_t)n_in * sizeof(*ins));
        if (!ins) return NULL;
        memcpy(ins, in, (size_t)n_in * sizeof(*ins));
        node.in = ins;
        int idx = rl_ctx_tape_len(ctx);
        rl_node *slot = rl_ctx_tape_append(ctx);
        if (!slot) return NULL;
        *slot = node;
        out->flags |= RL_TF_REQUIRES_GRAD;
        out->node = idx;
    }
    return out;
}

void rl_grad_accumulate(rl_ctx *ctx, rl_tensor *t, rl_tensor *g) {
    if (!t || !g || !(t->flags & RL_TF_REQUIRES_GRAD)) return;
    if (g->dtype != t->dtype) {
        rl_ctx_fail(ctx, RL_ERR_STATE, "backward: gradient of '%s' is %s but the tensor is %s",
                    t->name, rl_dtype_name(g->dtype), rl_dtype_name(t->dtype));
        return;
    }
    if (!rl_shape_equal(g->ndim, g->shape, t->ndim, t->shape)) {
        /* a gradient may only differ by broadcasting; anything else is a bug
         * in a backward rule, so say which tensor it was */
        int nd;
        int64_t bs[RL_MAX_DIMS];
        if (!rl_shape_broadcast(g->ndim, g->shape, t->ndim, t->shape, &nd, bs) ||
            !rl_shape_equal(nd, bs, g->ndim, g->shape)) {
            char dg[96], dt[96];
            const rl_node *src = rl_tensor_node(ctx, t);
            rl_ctx_fail(ctx, RL_ERR_STATE,
                        "backward: a gradient of shape %s cannot be summed down to '%s' (%s%s%s); "
                        "a backward rule returned the wrong shape",
                        rl_tensor_describe(g, dg, sizeof dg), t->name[0] ? t->name : "unnamed",
                        rl_tensor_describe(t, dt, sizeof dt), src ? ", output of " : "",
                        src ? rl_op_table[src->op].name : "");
            return;
        }
        g = rl_sum_to(ctx, g, t->ndim, t->shape);
        if (!g) return;
    }
    if (t->flags & RL_TF_PERSISTENT) {
        /* parameters (and persistent tensors marked as needing gradients)
         * accumulate in place into their persistent .grad */
        rl_backend *be = rl_ctx_backend(ctx);
        be->iface->accumulate(be->ctx, t->grad, g);
    } else if (!t->grad) {
        t->grad = g;
    } else {
        /* never in place: g may be shared with another input's gradient */
        t->grad = rl_add(ctx, t->grad, g);
    }
}

rl_status rl_backward_seeded(rl_ctx *ctx, rl_tensor *out, rl_tensor *seed) {
    if (rl_ctx_status(ctx)) return rl_ctx_status(ctx);
    if (!rl_check_input(ctx, "rl_backward", 0, out)) return rl_ctx_status(ctx);
    if (!rl_check_input(ctx, "rl_backward (seed)", 1, seed)) return rl_ctx_status(ctx);
    if (!(out->flags & RL_TF_REQUIRES_GRAD))
        return rl_ctx_fail(ctx, RL_ERR_STATE,
                           "rl_backward: '%s' does not depend on anything that needs a gradient; "
                           "did you forget to create parameters with rl_param_new, or compute it "
                           "with gradients off (rl_ctx_set_grad(ctx, 0))?",
                           out->name[0] ? out->name : "loss");
    if (seed->dtype != out->dtype || !rl_shape_equal(seed->ndim, seed->shape, out->ndim, out->shape)) {
        char a[96], b[96];
        return rl_ctx_fail(ctx, RL_ERR_ARG, "rl_backward: seed is %s but the output is %s",
                           rl_tensor_describe(seed, a, sizeof a), rl_tensor_describe(out, b, sizeof b));
    }
    int n = rl_ctx_tape_len(ctx);
    /* forget the arena gradients of an earlier backward over the same tape */
    for (int i = 0; i < n; i++) {
        const rl_node *nd = rl_ctx_node(ctx, i);
        nd->out->grad = NULL;
    }
    int prev = rl_ctx_set_grad(ctx, rl_ctx_create_graph(ctx));
    rl_ctx_set_in_backward(ctx, 1);
    rl_grad_accumulate(ctx, out, seed);
    int start = (out->flags & RL_TF_PERSISTENT) ? -1 : out->node;
    for (int i = start; i >= 0 && rl_ctx_status(ctx) == RL_OK; i--) {
        /* copy: recording backward ops (create_graph) may move the tape */
        rl_node nd = *rl_ctx_node(ctx, i);
        if (!nd.out->grad) continue;
        rl_op_grad[nd.op](ctx, &nd, nd.out->grad);
    }
    rl_ctx_set_in_backward(ctx, 0);
    rl_ctx_set_grad(ctx, prev);
    return rl_ctx_status(ctx);
}

rl_status rl_backward(rl_ctx *ctx, rl_tensor *loss) {
    if (rl_ctx_status(ctx)) return rl_ctx_status(ctx);
    if (!rl_check_input(ctx, "rl_backward", 0, loss)) return rl_ctx_status(ctx);
    if (loss->numel != 1) {
        char d[96];
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "rl_backward: the loss '%s' is %s; backward needs a scalar (one "
                           "element): reduce it first, e.g. rl_mean(ctx, loss, RL_AXIS_ALL, 0)",
                           loss->name[0] ? loss->name : "unnamed", rl_tensor_describe(loss, d, sizeof d));
    }
    if (!rl_dtype_is_float(loss->dtype))
        return rl_ctx_fail(ctx, RL_ERR_ARG, "rl_backward: the loss is %s; it must be f32 or f64",
                           rl_dtype_name(loss->dtype));
    rl_tensor *one = rl_full(ctx, loss->dtype, loss->ndim, loss->shape, 1.0);
    if (!one) return rl_ctx_status(ctx);
    return rl_backward_seeded(ctx, loss, one);
}
