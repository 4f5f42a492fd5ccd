/* ops/gc_table.c - the gradient-check cases of every op, generated from
 * ops/ops.def. A row without rl_gc_cases_<name> fails to link, so no op can
 * exist without a gradient test.
 */
#include "rl_gradcheck.h"

#define OP(e, name, ...) extern const rl_gc_cases rl_gc_cases_##name;
#include "ops.def"
#undef OP

const rl_gc_cases *const rl_op_gc_cases[RL_OP_COUNT] = {
#define OP(e, name, ...) [RL_OP_##e] = &rl_gc_cases_##name,
#include "ops.def"
#undef OP
};
