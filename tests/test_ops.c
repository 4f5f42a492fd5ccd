/* tests/test_ops.c - one gradient test per op, generated from ops/ops.def:
 * f64 backward against central differences, and f32 against f64 forward and
 * backward. An op added to the table without passing cases fails here.
 * Usage: test_ops [OPNAME]  (no argument: every op)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "rl_gradcheck.h"
#include "rl_ops.h"

static void rl_test_op(rl_op op) {
    rl_gc_result r;
    rl_gradcheck_op(op, NULL, &r);
    printf("# %-20s checked %4d  max abs %.2e  max rel %.2e  f32 %.2e  %s\n", rl_op_table[op].name,
           r.n_checked, r.max_abs, r.max_rel, r.f32_max_err, r.passed ? "PASS" : "FAIL");
    if (!r.passed) fail_msg("op '%s': %s", rl_op_table[op].name, r.msg);
    /* every differentiable op must actually compare elements */
    if (!(rl_op_table[op].flags & OPF_NOGRAD)) assert_true(r.n_checked > 0);
}

#define OP(e, name, ...) \
    static void test_grad_##name(void **state) { (void)state; rl_test_op(RL_OP_##e); }
#include "ops.def"
#undef OP

int main(int argc, char **argv) {
    const struct CMUnitTest tests[] = {
#define OP(e, name, ...) cmocka_unit_test(test_grad_##name),
#include "ops.def"
#undef OP
    };
    if (argc > 1) {
        char filter[64];
        snprintf(filter, sizeof filter, "test_grad_%s", argv[1]);
        cmocka_set_test_filter(filter);
    }
    return cmocka_run_group_tests_name("op gradients", tests, NULL, NULL);
}
