/* ops/op_table.c - the op table's generated arrays: metadata and backward
 * rules. A row of ops/ops.def without a rl_grad_<name> function fails to link.
 */
#include "rl_ops.h"

#include <string.h>

const rl_op_info rl_op_table[RL_OP_COUNT] = {
#define OP(e, name, sym, arity, flags, ...) [RL_OP_##e] = {#name, sym, arity, flags},
#include "ops.def"
#undef OP
};

#define OP(e, name, ...) void rl_grad_##name(rl_ctx *, const rl_node *, rl_tensor *);
#include "ops.def"
#undef OP

const rl_grad_fn rl_op_grad[RL_OP_COUNT] = {
#define OP(e, name, ...) [RL_OP_##e] = rl_grad_##name,
#include "ops.def"
#undef OP
};

int rl_op_find(const char *name) {
    for (int i = 0; i < RL_OP_COUNT; i++)
        if (strcmp(rl_op_table[i].name, name) == 0) return i;
    return -1;
}
