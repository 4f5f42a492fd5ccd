/* recipes/lang/audit.c - the stop-gradient audit: for every value of the loss
 * phase, the set of trainables (trainable models and params) that its
 * gradient reaches along dataflow paths that cross no stop(). Rollout
 * values, inputs, constants and frozen models carry no gradient by
 * construction (the rollout runs with gradients off; frozen models are
 * called with gradients off), so only trainables can appear.
 *
 * Rules: each trainable may be reached by one loss at most (a second loss
 * would silently train it too: the classic bug is a Lagrange multiplier used
 * without stop() in the policy loss); a trainable reached by no loss is a
 * warning, and so is stop() around a value that carries no gradient.
 *
 * When two losses reach a trainable, one of them is taken as its owner: the
 * loss that reaches the fewest trainables (the most specific one; the first
 * in the file on a tie). In every other loss the error points at the use
 * where the trainable's gradient enters that loss's own computation, which
 * is where stop() belongs.
 */
#include "recipe_int.h"

#include <stdlib.h>
#include <string.h>

static bool bit_get(const uint64_t *b, int i) { return (b[i / 64] >> (i % 64)) & 1u; }
static void bit_set(uint64_t *b, int i) { b[i / 64] |= (uint64_t)1 << (i % 64); }
static bool bits_any(const uint64_t *b, int words) {
    for (int i = 0; i < words; i++)
        if (b[i]) return true;
    return false;
}
static int bits_count(const uint64_t *b, int words) {
    int n = 0;
    for (int i = 0; i < words; i++) n += __builtin_popcountll(b[i]);
    return n;
}

/* Does instruction `in` pass gradients from its arguments to its outputs? */
static bool ir_passes_grad(const rl_recipe_program *p, const rl_ir *in) {
    if (in->phase != PH_LOSS) return false;
    switch (in->code) {
    case IR_OP: return !(rl_op_table[in->op].flags & OPF_NOGRAD);
    case IR_FN: {
        const rl_recipe_fn *fn = p->fnv[in->op];
        if (fn->flags & RL_RFN_NOGRAD) return false;
        if (in->model >= 0 && !p->models[in->model].info.trainable) return false; /* run grad-off */
        return true;
    }
    default: return false;
    }
}

/* Where the gradient of trainable t enters loss li's own computation: the
 * earliest argument (in the file) of an instruction that belongs only to
 * li's dataflow, whose value reaches t and either is t itself or is shared
 * with the owner's dataflow. `owner_anc` marks instructions the owner loss
 * depends on. Returns the span, or the loss's own span. */
static rl_span leak_site(const rl_recipe_program *p, int li, int t, const bool *owner_anc) {
    const rl_loss *l = &p->losses[li];
    rl_span best = l->sp;
    int best_start = 1 << 30;
    int n = p->n_ir;
    bool *seen = calloc((size_t)n + 1, 1);
    int *stack = malloc(sizeof(int) * ((size_t)n + 1));
    if (!seen || !stack) abort();
    int top = 0;
    stack[top++] = p->slots[l->slot].ir;
    seen[p->slots[l->slot].ir] = true;
    while (top) {
        int w = stack[--top];
        const rl_ir *in = &p->ir[w];
        if (!ir_passes_grad(p, in)) continue;
        for (int a = 0; a < in->n_args; a++) {
            int s = in->args[a];
            const rl_slot *sl = &p->slots[s];
            if (!sl->reach || !bit_get(sl->reach, t)) continue;
            const rl_ir *src = &p->ir[sl->ir];
            bool is_t = (src->code == IR_PARAM && p->params[src->op].trainable_id == t) ||
                        (src->code == IR_MODEL && p->models[src->op].trainable_id == t);
            if (is_t || owner_anc[sl->ir]) {
                if (in->arg_sp[a].start < best_start) {
                    best_start = in->arg_sp[a].start;
                    best = in->arg_sp[a];
                }
            } else if (!seen[sl->ir]) {
                seen[sl->ir] = true;
                stack[top++] = sl->ir;
            }
        }
    }
    free(seen);
    free(stack);
    return best;
}

/* Marks every instruction that slot's value depends on through gradient-carrying edges. */
static void mark_ancestors(const rl_recipe_program *p, int slot, bool *anc) {
    int n = p->n_ir;
    int *stack = malloc(sizeof(int) * ((size_t)n + 1));
    if (!stack) abort();
    int top = 0;
    stack[top++] = p->slots[slot].ir;
    anc[p->slots[slot].ir] = true;
    while (top) {
        const rl_ir *in = &p->ir[stack[--top]];
        if (!ir_passes_grad(p, in)) continue;
        for (int a = 0; a < in->n_args; a++) {
            int w = p->slots[in->args[a]].ir;
            if (!anc[w]) {
                anc[w] = true;
                stack[top++] = w;
            }
        }
    }
    free(stack);
}

void rl_audit(rl_recipe_program *p) {
    rl_recipe *r = p->r;
    int words = (p->n_train + 63) / 64;
    if (words == 0) words = 1;
    p->reach_words = words;
    for (int s = 0; s < p->n_slots; s++)
        p->slots[s].reach = rl_rpool_alloc(&p->pool, sizeof(uint64_t) * (size_t)words);
    /* instructions are in dataflow order: one forward pass */
    for (int i = 0; i < p->n_ir; i++) {
        const rl_ir *in = &p->ir[i];
        uint64_t *out = p->slots[in->out].reach;
        if (in->code == IR_PARAM) {
            bit_set(out, p->params[in->op].trainable_id);
            continue;
        }
        if (in->code == IR_MODEL) {
            if (p->models[in->op].trainable_id >= 0) bit_set(out, p->models[in->op].trainable_id);
            continue;
        }
        if (in->code == IR_OP && in->op == RL_OP_STOP_GRADIENT && !in->from_prelude) {
            const uint64_t *a = p->slots[in->args[0]].reach;
            if (in->phase == PH_ROLLOUT)
                rl_diag_add(r, &r->src, RL_DIAG_WARNING, in->sp,
                            "the rollout block runs without gradients; remove stop()",
                            "stop() has no effect in the rollout block");
            else if (!bits_any(a, words))
                rl_diag_add(r, &r->src, RL_DIAG_WARNING, in->sp,
                            "its argument depends on no trainable model or param (data, rollout "
                            "values, frozen models and constants carry no gradient); remove stop()",
                            "stop() around a value that carries no gradient");
        }
        if (!ir_passes_grad(p, in)) continue;
        for (int k = 0; k < in->n_out; k++) {
            uint64_t *o = p->slots[in->out + k].reach;
            for (int a = 0; a < in->n_args; a++) {
                const uint64_t *b = p->slots[in->args[a]].reach;
                for (int w = 0; w < words; w++) o[w] |= b[w];
            }
        }
    }
    /* per loss */
    int *owner = malloc(sizeof(int) * (size_t)(p->n_train + 1));
    if (!owner) abort();
    for (int t = 0; t < p->n_train; t++) owner[t] = -1;
    for (int li = 0; li < p->n_losses; li++) {
        const uint64_t *b = p->slots[p->losses[li].slot].reach;
        int nt = bits_count(b, words);
        for (int t = 0; t < p->n_train; t++) {
            if (!bit_get(b, t)) continue;
            int o = owner[t];
            if (o < 0 || nt < bits_count(p->slots[p->losses[o].slot].reach, words)) owner[t] = li;
        }
        if (nt == 0 && !p->ir[p->slots[p->losses[li].slot].ir].from_prelude)
            rl_diag_add(r, &r->src, RL_DIAG_WARNING, p->losses[li].sp,
                        "its gradient reaches no trainable model or param (is a stop() in the way?)",
                        "loss '%s' trains nothing", p->losses[li].info.name);
    }
    bool *anc = calloc((size_t)p->n_ir + 1, 1);
    if (!anc) abort();
    for (int t = 0; t < p->n_train; t++) {
        const rl_trainable *tr = &p->train[t];
        if (owner[t] < 0) {
            rl_diag_add(r, &r->src, RL_DIAG_WARNING, tr->sp,
                        "no loss's gradient reaches it, so it will not change (is it behind a stop(), "
                        "or used only in the rollout block?)",
                        "trainable %s '%s' is reached by no loss", tr->is_param ? "param" : "model",
                        tr->name);
            continue;
        }
        memset(anc, 0, (size_t)p->n_ir + 1);
        mark_ancestors(p, p->losses[owner[t]].slot, anc);
        for (int li = 0; li < p->n_losses; li++) {
            if (li == owner[t] || !bit_get(p->slots[p->losses[li].slot].reach, t)) continue;
            rl_span at = leak_site(p, li, t, anc);
            char hint[300];
            snprintf(hint, sizeof hint,
                     "wrap it in stop(...) so that only '%s' trains '%s' (each trainable is updated "
                     "by one loss)",
                     p->losses[owner[t]].info.name, tr->name);
            rl_diag_add(r, &r->src, RL_DIAG_ERROR, at, hint,
                        "the gradient of loss '%s' reaches %s '%s', which loss '%s' trains",
                        p->losses[li].info.name, tr->is_param ? "param" : "model", tr->name,
                        p->losses[owner[t]].info.name);
        }
    }
    free(anc);
    free(owner);
    /* the trainables of each loss, for the runner */
    for (int li = 0; li < p->n_losses; li++) {
        rl_loss *l = &p->losses[li];
        const uint64_t *b = p->slots[l->slot].reach;
        int nt = bits_count(b, words);
        const char **names = rl_rpool_alloc(&p->pool, sizeof(char *) * (size_t)(nt + 1));
        int k = 0;
        for (int t = 0; t < p->n_train; t++)
            if (bit_get(b, t)) names[k++] = p->train[t].name;
        l->info.n_trainables = k;
        l->info.trainables = names;
    }
}
