/* ops/stubs_tmp_nn.c - TEMPORARY weak stand-ins for the nn ops while they are written; deleted when they land. */
#include "common.h"
#include "cpu/cpu.h"
__attribute__((weak)) void rl_cpu_layernorm(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_layernorm(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub layernorm"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_layernorm = {0, 0};
__attribute__((weak)) void rl_cpu_cross_entropy(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_cross_entropy(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub cross_entropy"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_cross_entropy = {0, 0};
__attribute__((weak)) void rl_cpu_attention(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_attention(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub attention"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_attention = {0, 0};
__attribute__((weak)) void rl_cpu_layernorm_grad(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_layernorm_grad(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub layernorm_grad"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_layernorm_grad = {0, 0};
__attribute__((weak)) void rl_cpu_cross_entropy_grad(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_cross_entropy_grad(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub cross_entropy_grad"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_cross_entropy_grad = {0, 0};
__attribute__((weak)) void rl_cpu_attention_grad(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_attention_grad(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub attention_grad"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_attention_grad = {0, 0};
