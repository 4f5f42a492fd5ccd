/* ops/stubs_tmp_reduce.c - TEMPORARY weak stand-ins for the reduce ops while they are written; deleted when they land. */
#include "common.h"
#include "cpu/cpu.h"
__attribute__((weak)) void rl_cpu_sum(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_sum(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub sum"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_sum = {0, 0};
__attribute__((weak)) void rl_cpu_mean(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_mean(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub mean"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_mean = {0, 0};
__attribute__((weak)) void rl_cpu_max(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_max(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub max"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_max = {0, 0};
__attribute__((weak)) void rl_cpu_logsumexp(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_logsumexp(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub logsumexp"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_logsumexp = {0, 0};
__attribute__((weak)) void rl_cpu_softmax(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_softmax(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub softmax"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_softmax = {0, 0};
__attribute__((weak)) void rl_cpu_log_softmax(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_log_softmax(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub log_softmax"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_log_softmax = {0, 0};
__attribute__((weak)) rl_tensor *rl_sum(rl_ctx *c, rl_tensor *x, int a, int k) { (void)x; (void)a; (void)k; rl_ctx_fail(c, RL_ERR_STATE, "stub sum"); return NULL; }
__attribute__((weak)) rl_tensor *rl_sum_to(rl_ctx *c, rl_tensor *g, int nd, const int64_t *s) { (void)g; (void)nd; (void)s; rl_ctx_fail(c, RL_ERR_STATE, "stub sum_to"); return NULL; }
