/* ops/stubs_tmp.c - TEMPORARY weak stand-ins while ops are written in parallel; deleted before landing. */
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
__attribute__((weak)) void rl_cpu_layernorm(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_layernorm(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub layernorm"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_layernorm = {0, 0};
__attribute__((weak)) void rl_cpu_cross_entropy(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_cross_entropy(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub cross_entropy"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_cross_entropy = {0, 0};
__attribute__((weak)) void rl_cpu_attention(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_attention(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub attention"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_attention = {0, 0};
__attribute__((weak)) void rl_cpu_scatter_add(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_scatter_add(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub scatter_add"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_scatter_add = {0, 0};
__attribute__((weak)) void rl_cpu_embedding_grad(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_embedding_grad(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub embedding_grad"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_embedding_grad = {0, 0};
__attribute__((weak)) void rl_cpu_layernorm_grad(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_layernorm_grad(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub layernorm_grad"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_layernorm_grad = {0, 0};
__attribute__((weak)) void rl_cpu_cross_entropy_grad(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_cross_entropy_grad(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub cross_entropy_grad"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_cross_entropy_grad = {0, 0};
__attribute__((weak)) void rl_cpu_attention_grad(void *b, const rl_node *n) { (void)b; (void)n; }
__attribute__((weak)) void rl_grad_attention_grad(rl_ctx *c, const rl_node *n, rl_tensor *d) { (void)n; (void)d; rl_ctx_fail(c, RL_ERR_STATE, "stub attention_grad"); }
__attribute__((weak)) const rl_gc_cases rl_gc_cases_attention_grad = {0, 0};
__attribute__((weak)) rl_tensor *rl_sum(rl_ctx *c, rl_tensor *x, int a, int k) { (void)x; (void)a; (void)k; rl_ctx_fail(c, RL_ERR_STATE, "stub sum"); return NULL; }
__attribute__((weak)) rl_tensor *rl_sum_to(rl_ctx *c, rl_tensor *g, int nd, const int64_t *s) { (void)g; (void)nd; (void)s; rl_ctx_fail(c, RL_ERR_STATE, "stub sum_to"); return NULL; }
