/* ops/stubs_tmp_movement.c - TEMPORARY weak stand-ins for the movement ops while they are written; deleted when they land. */
#include "common.h"
#include "cpu/cpu.h"
__attribute__((weak)) void rl_cpu_matmul(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_matmul(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub matmul"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_matmul = {0, 0};
__attribute__((weak)) void rl_cpu_reshape(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_reshape(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub reshape"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_reshape = {0, 0};
__attribute__((weak)) void rl_cpu_permute(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_permute(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub permute"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_permute = {0, 0};
__attribute__((weak)) void rl_cpu_slice(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_slice(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub slice"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_slice = {0, 0};
__attribute__((weak)) void rl_cpu_concat(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_concat(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub concat"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_concat = {0, 0};
__attribute__((weak)) void rl_cpu_broadcast_to(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_broadcast_to(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub broadcast_to"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_broadcast_to = {0, 0};
__attribute__((weak)) void rl_cpu_gather(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_gather(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub gather"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_gather = {0, 0};
__attribute__((weak)) void rl_cpu_embedding(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_embedding(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub embedding"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_embedding = {0, 0};
__attribute__((weak)) void rl_cpu_scatter_add(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_scatter_add(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub scatter_add"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_scatter_add = {0, 0};
__attribute__((weak)) void rl_cpu_embedding_grad(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_embedding_grad(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub embedding_grad"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_embedding_grad = {0, 0};
