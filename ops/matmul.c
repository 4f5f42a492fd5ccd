/* ops/matmul.c - matrix multiplication: the front end (shape checks with
 * messages that name the axes that must agree), the backward rule written
 * with matmul itself, and gradient-check cases. The kernel is in
 * ops/cpu/matmul.c.
 *
 * Attributes: trans_a / trans_b say that a / b are stored transposed in their
 * last two axes, so a [..., K, M] with trans_a is read as [..., M, K]. This
 * lets the backward rule use the forward tensors as they are, without
 * transposing copies.
 */
#include "common.h"

#include <limits.h>

/* ---- front end ------------------------------------------------------------ */

rl_tensor *rl_matmul(rl_ctx *ctx, rl_tensor *a, rl_tensor *b, int trans_a, int trans_b) {
    if (!rl_check_input(ctx, "matmul", 0, a) || !rl_check_input(ctx, "matmul", 1, b)) return NULL;
    if (!rl_check_float(ctx, "matmul", 0, a) || !rl_check_float(ctx, "matmul", 1, b) ||
        !rl_check_same_dtype(ctx, "matmul", a, b))
        return NULL;
    trans_a = trans_a != 0;
    trans_b = trans_b != 0;
    char da[96], db[96];
    rl_tensor_describe(a, da, sizeof da);
    rl_tensor_describe(b, db, sizeof db);
    if (a->ndim < 2 || b->ndim < 2) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "matmul: a is %s and b is %s; both need at least 2 dims ([..., M, K] @ "
                    "[..., K, N]): reshape a vector to [1, K] (a row) or [K, 1] (a column)",
                    da, db);
        return NULL;
    }
    /* axes (from the end) that hold M, K of a and K, N of b */
    int a_m = trans_a ? 1 : 2, a_k = trans_a ? 2 : 1;
    int b_k = trans_b ? 1 : 2, b_n = trans_b ? 2 : 1;
    int64_t M = a->shape[a->ndim - a_m], Ka = a->shape[a->ndim - a_k];
    int64_t Kb = b->shape[b->ndim - b_k], N = b->shape[b->ndim - b_n];
    if (Ka != Kb) {
        rl_ctx_fail(ctx, RL_ERR_ARG,
                    "matmul: inner dims differ: a is %s (trans_a=%d) and b is %s (trans_b=%d); "
                    "a's axis %d (K = %lld) must equal b's axis %d (K = %lld)",
                    da, trans_a, db, trans_b, a->ndim - a_k, (long long)Ka, b->ndim - b_k,
                    (long long)Kb);
        return NULL;
    }
    int nbatch = a->ndim - 2;
    if (b->ndim != 2) {
        bool same = b->ndim == a->ndim;
        for (int i = 0; same && i < nbatch; i++) same = a->shape[i] == b->shape[i];
        if (!same) {
            rl_ctx_fail(ctx, RL_ERR_ARG,
                        "matmul: batch axes differ: a is %s and b is %s; the axes before the last "
                        "two must be equal in a and b, or b must be 2-D (one matrix shared by "
                        "a's whole batch)",
                        da, db);
            return NULL;
        }
    }
    int64_t shape[RL_MAX_DIMS];
    int64_t batch = 1;
    for (int i = 0; i < nbatch; i++) batch *= (shape[i] = a->shape[i]);
    shape[nbatch] = M;
    shape[nbatch + 1] = N;
    /* BLAS takes int sizes; the shared-b case folds the batch into M */
    if (batch * M > INT_MAX || N > INT_MAX || Ka > INT_MAX) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "matmul: a is %s and b is %s: a matrix dimension exceeds "
                    "BLAS's int range (%d)", da, db, INT_MAX);
        return NULL;
    }
    rl_attrs at = {.trans_a = trans_a, .trans_b = trans_b};
    rl_tensor *in[2] = {a, b};
    return rl_op_run(ctx, RL_OP_MATMUL, 2, in, &at, a->dtype, nbatch + 2, shape, 0, NULL);
}

/* ---- backward rule ------------------------------------------------------------ */

/* With A' = op(A) (A or A^T as read) and B' = op(B): y = A' B', so
 * dA' = dy B'^T and dB' = A'^T dy; a transposed operand gets the transpose of
 * its gradient. Each case below is that product written as one matmul whose
 * trans flags read the stored tensors directly. */
void rl_grad_matmul(rl_ctx *ctx, const rl_node *n, rl_tensor *dy) {
    rl_tensor *a = n->in[0], *b = n->in[1];
    const int ta = n->attrs.trans_a, tb = n->attrs.trans_b;
    /* b was one 2-D matrix applied to every batch element of a */
    const bool shared = b->ndim == 2 && a->ndim > 2;
    if (RL_NEEDS_GRAD(a)) {
        rl_tensor *da;
        if (!ta) /* dA = dy B'^T */
            da = rl_matmul(ctx, dy, b, 0, !tb);
        else if (!shared) /* dA = (dy B'^T)^T = B' dy^T */
            da = rl_matmul(ctx, b, dy, tb, 1);
        else /* a 2-D left operand with a batched right one is not a matmul form: transpose */
            da = rl_transpose(ctx, rl_matmul(ctx, dy, b, 0, !tb), -1, -2);
        rl_grad_accumulate(ctx, a, da);
    }
    if (RL_NEEDS_GRAD(b)) {
        rl_tensor *aa = a, *g = dy;
        if (shared && !ta) {
            /* dB sums over the batch: as one [batch*M, K]^T @ [batch*M, N]
             * product the sum happens inside a single GEMM */
            int64_t rows = 1; /* batch * M */
            for (int i = 0; i < a->ndim - 1; i++) rows *= a->shape[i];
            aa = rl_reshape(ctx, a, 2, (int64_t[]){rows, a->shape[a->ndim - 1]});
            g = rl_reshape(ctx, dy, 2, (int64_t[]){rows, dy->shape[dy->ndim - 1]});
        }
        rl_tensor *db = !tb ? rl_matmul(ctx, aa, g, !ta, 0) /* dB = A'^T dy */
                            : rl_matmul(ctx, g, aa, 1, ta); /* dB = (A'^T dy)^T = dy^T A' */
        /* shared with trans_a: per-batch products, summed here */
        if (db && db->ndim != b->ndim) db = rl_sum_to(ctx, db, b->ndim, b->shape);
        rl_grad_accumulate(ctx, b, db);
    }
}

/* ---- gradient-check cases --------------------------------------------------------- */

static rl_tensor *gc_matmul(rl_ctx *c, rl_tensor **in, const rl_gc_case *k) {
    return rl_matmul(c, in[0], in[1], k->attrs.trans_a, k->attrs.trans_b);
}

#define MM(label, na, sa, nb, sb, ta, tb) \
    {label, 2, {RL_GC_F(-1, 1, na, RL_UNPAREN sa), RL_GC_F(-1, 1, nb, RL_UNPAREN sb)}, gc_matmul, NULL, \
     {.trans_a = ta, .trans_b = tb}, 0}
#define RL_UNPAREN(...) __VA_ARGS__

RL_GC_CASES(matmul,
    MM("[3,4] @ [4,5]", 2, (3, 4), 2, (4, 5), 0, 0),
    MM("[4,3]^T @ [4,5]", 2, (4, 3), 2, (4, 5), 1, 0),
    MM("[3,4] @ [5,4]^T", 2, (3, 4), 2, (5, 4), 0, 1),
    MM("[4,3]^T @ [5,4]^T", 2, (4, 3), 2, (5, 4), 1, 1),
    MM("[1,6] @ [6,1] (row times column)", 2, (1, 6), 2, (6, 1), 0, 0),
    MM("batched [2,3,4] @ [2,4,5]", 3, (2, 3, 4), 3, (2, 4, 5), 0, 0),
    MM("batched [2,4,3]^T @ [2,4,5]", 3, (2, 4, 3), 3, (2, 4, 5), 1, 0),
    MM("batched [2,3,4] @ [2,5,4]^T", 3, (2, 3, 4), 3, (2, 5, 4), 0, 1),
    MM("batched [2,4,3]^T @ [2,5,4]^T", 3, (2, 4, 3), 3, (2, 5, 4), 1, 1),
    MM("4-d [2,3,2,4] @ [2,3,4,3]", 4, (2, 3, 2, 4), 4, (2, 3, 4, 3), 0, 0),
    MM("4-d [2,2,4,3]^T @ [2,2,5,4]^T", 4, (2, 2, 4, 3), 4, (2, 2, 5, 4), 1, 1),
    MM("shared b: [2,3,4] @ [4,5]", 3, (2, 3, 4), 2, (4, 5), 0, 0),
    MM("shared b: [2,3,4] @ [5,4]^T", 3, (2, 3, 4), 2, (5, 4), 0, 1),
    MM("shared b: [2,4,3]^T @ [4,5]", 3, (2, 4, 3), 2, (4, 5), 1, 0),
    MM("shared b: [2,4,3]^T @ [5,4]^T", 3, (2, 4, 3), 2, (5, 4), 1, 1),
    MM("shared b 4-d: [2,3,2,4] @ [4,3]", 4, (2, 3, 2, 4), 2, (4, 3), 0, 0),
    MM("shared b 4-d: [2,2,4,3]^T @ [5,4]^T", 4, (2, 2, 4, 3), 2, (5, 4), 1, 1),
    /* a longer inner dimension: f32 rounding grows like sqrt(K) * 6e-8 and
     * stays well inside the default tolerance */
    MM("long K [3,96] @ [96,4]", 2, (3, 96), 2, (96, 4), 0, 0));
