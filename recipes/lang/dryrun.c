/* recipes/lang/dryrun.c - the shape check, run before any data is read: every
 * symbolic dim (B, T, V, the fresh length of generated batches) is bound to
 * a distinct small prime (and then, in a second run that must agree, to
 * other, spread-out primes, so that no sum of sizes equals another dim by
 * accident), the inputs are made up at those sizes, every
 * model becomes a tiny float64 model from the function table's dry-run
 * factory, and the compiled program runs once (rollout, then loss). The
 * engine's own shape rules then do the checking, and because the primes are
 * distinct, any size in a message maps back to a name (3 -> B, 15 -> B*T):
 * "shapes f32 [B, T] and f32 [B] do not broadcast". The first error of each
 * statement is reported; statements that depend on a failed one are skipped.
 * Primes equal to an integer written in the recipe are not used, so a literal
 * size is never mistaken for a dim.
 */
#include "recipe_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int64_t rl_primes[] = {3,   5,   7,   11,  13,  17,  19,  23,  29,  31,  37,  41,
                                    43,  47,  53,  59,  61,  67,  71,  73,  79,  83,  89,  97,
                                    101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157};
#define RL_N_PRIMES ((int)(sizeof rl_primes / sizeof rl_primes[0]))
#define RL_DRY_MAX_INPUT ((int64_t)1 << 22)

static bool lit_used(const rl_recipe_program *p, int64_t q);

/* "B", "B*T", "2*T", or the number itself (a number written in the recipe
 * stays a number). */
static void dim_text(const rl_recipe_program *p, long long v, char *out, size_t n) {
    if (v > 1 && !lit_used(p, v)) {
        for (int d = 0; d < p->n_dims; d++)
            if (p->dims[d].prime == v) {
                snprintf(out, n, "%s", p->dims[d].name);
                return;
            }
        long long rest = v;
        char buf[96] = "";
        int nf = 0;
        for (int d = 0; d < p->n_dims && rest > 1; d++) {
            long long q = p->dims[d].prime;
            if (q > 1 && rest % q == 0) {
                rest /= q;
                size_t k = strlen(buf);
                snprintf(buf + k, sizeof buf - k, "%s%s", nf++ ? "*" : "", p->dims[d].name);
            }
        }
        /* a leftover power of two is a coefficient (concat of two: 2*T); no
         * dim is bound to 2 or to a composite number, so it is unambiguous */
        if (nf >= 1 && (rest == 1 ? nf >= 2 : (rest & (rest - 1)) == 0)) {
            if (rest == 1) snprintf(out, n, "%s", buf);
            else snprintf(out, n, "%lld*%s", rest, buf);
            return;
        }
        /* a dim plus a small constant (concat with a literal, a slice): T+2,
         * naming the dim nearest to v when exactly one is nearest */
        int hit = -1, hits = 0;
        long long best = 9;
        for (int d = 0; v > 8 && d < p->n_dims; d++) { /* small sizes stay numbers: literals make them */
            long long c = v - p->dims[d].prime, a = c < 0 ? -c : c;
            if (c == 0 || a > 8 || a > best) continue;
            if (a < best) best = a, hit = d, hits = 1;
            else hits++;
        }
        if (hits == 1) {
            long long c = v - p->dims[hit].prime;
            snprintf(out, n, "%s%s%lld", p->dims[hit].name, c > 0 ? "+" : "-", c > 0 ? c : -c);
            return;
        }
    }
    snprintf(out, n, "%lld", v);
}

void rl_dry_symbolize(const rl_recipe_program *p, const char *msg, char *out, size_t n) {
    size_t k = 0;
    if (n == 0) return;
    for (size_t i = 0; msg[i] && k + 1 < n;) {
        /* f64 is how the check runs "f32" (the run's float dtype) */
        if (strncmp(msg + i, "f64", 3) == 0 && (i == 0 || !isalnum((unsigned char)msg[i - 1])) &&
            !isalnum((unsigned char)msg[i + 3])) {
            k += (size_t)snprintf(out + k, n - k, "f32");
            i += 3;
            continue;
        }
        if (msg[i] == '[') {
            /* a list of integers: [3, 5] */
            size_t j = i + 1;
            long long vals[8];
            int nv = 0;
            bool ok = true;
            while (ok && msg[j] != ']') {
                char *end;
                if (!isdigit((unsigned char)msg[j]) || nv == 8) {
                    ok = false;
                    break;
                }
                vals[nv++] = strtoll(msg + j, &end, 10);
                j = (size_t)(end - msg);
                if (msg[j] == ',') {
                    j++;
                    while (msg[j] == ' ') j++;
                } else if (msg[j] != ']') {
                    ok = false;
                }
            }
            if (ok) {
                k += (size_t)snprintf(out + k, n - k, "[");
                for (int v = 0; v < nv && k < n; v++) {
                    char t[64];
                    dim_text(p, vals[v], t, sizeof t);
                    k += (size_t)snprintf(out + k, n - k, "%s%s", v ? ", " : "", t);
                }
                if (k < n) k += (size_t)snprintf(out + k, n - k, "]");
                i = j + 1;
                continue;
            }
        }
        out[k++] = msg[i++];
    }
    out[k < n ? k : n - 1] = 0;
}

typedef struct rl_dry {
    bool *stmt_err;
} rl_dry;

static void dry_error(rl_recipe_program *p, int ir, const char *msg, void *user) {
    rl_dry *d = user;
    const rl_ir *in = &p->ir[ir];
    if (d->stmt_err[in->stmt]) return;
    d->stmt_err[in->stmt] = true;
    char text[1200];
    rl_dry_symbolize(p, msg, text, sizeof text);
    const char *hint = NULL;
    if (strstr(text, "do not broadcast"))
        hint = "aligned from the right, each axis must be equal or 1 (sum or mean over an axis to "
               "remove it)";
    rl_recipe *r = p->r;
    if (in->in_fn) rl_diag_add(r, &r->src, RL_DIAG_ERROR, in->sp, hint, "in %s: %s", in->in_fn, text);
    else rl_diag_add(r, &r->src, RL_DIAG_ERROR, in->sp, hint, "%s", text);
}

static bool lit_used(const rl_recipe_program *p, int64_t q) {
    for (int i = 0; i < p->n_lits; i++)
        if (p->lits[i] == q) return true;
    return false;
}

int rl_program_dim(rl_recipe_program *p, const char *name) {
    for (int d = 0; d < p->n_dims; d++)
        if (strcmp(p->dims[d].name, name) == 0) return d;
    rl_grow(&p->dims, &p->cap_dims, p->n_dims + 1, sizeof(rl_dim));
    memset(&p->dims[p->n_dims], 0, sizeof(rl_dim));
    p->dims[p->n_dims].name = name;
    p->dims[p->n_dims].size = -1;
    return p->n_dims++;
}

/* The check's size of dim k of a declared type. */
static int64_t type_size(const rl_recipe_program *p, const rl_recipe_type *ty, int k) {
    if (!ty->dims[k]) return ty->sizes[k];
    for (int d = 0; d < p->n_dims; d++)
        if (strcmp(p->dims[d].name, ty->dims[k]) == 0) return p->dims[d].prime;
    return 1;
}

/* Made-up data for input i (persistent: generation resets the arena). */
static bool make_input(rl_recipe_program *p, rl_ctx *ctx, int i, int64_t vocab, rl_recipe_value *v) {
    const rl_input_decl *in = &p->inputs[i];
    const rl_recipe_type *ty = &in->info.type;
    int64_t shape[RL_MAX_DIMS];
    double numel = 1;
    for (int k = 0; k < ty->ndim; k++) {
        shape[k] = type_size(p, ty, k);
        numel *= (double)shape[k];
    }
    if (numel > (double)RL_DRY_MAX_INPUT) {
        rl_diag_add(p->r, &p->r->src, RL_DIAG_ERROR, in->sp, "use names (B, T) for data sizes",
                    "input '%s' is too large for the shape check (%.0f elements)", in->info.name, numel);
        return false;
    }
    (void)vocab;
    if (ty->tokens) {
        const int64_t B = shape[0], T = shape[1];
        int32_t *ids = calloc((size_t)(B * T) + 1, sizeof(int32_t));
        int32_t *mask = calloc((size_t)(B * T) + 1, sizeof(int32_t));
        int32_t *attn = calloc((size_t)(B * T) + 1, sizeof(int32_t));
        if (!ids || !mask || !attn) abort();
        for (int64_t b = 0; b < B; b++) {
            int64_t len = T - (b % 2); /* some rows padded */
            if (len < 1) len = T;
            for (int64_t t = 0; t < len; t++) {
                attn[b * T + t] = 1;
                ids[b * T + t] = (int32_t)((b + 3 * t) % (vocab > 1 ? vocab : 1));
                mask[b * T + t] = t >= (len / 2 > 1 ? len / 2 : 1);
            }
        }
        v->kind = RL_RV_TOKENS;
        v->tok.ids = rl_tensor_new(ctx, RL_I32, 2, shape, "ids");
        v->tok.mask = rl_tensor_new(ctx, RL_I32, 2, shape, "mask");
        v->tok.attn = rl_tensor_new(ctx, RL_I32, 2, shape, "attn");
        size_t nb = sizeof(int32_t) * (size_t)(B * T);
        bool ok = v->tok.ids && v->tok.mask && v->tok.attn &&
                  rl_tensor_write(ctx, v->tok.ids, ids, nb) == RL_OK &&
                  rl_tensor_write(ctx, v->tok.mask, mask, nb) == RL_OK &&
                  rl_tensor_write(ctx, v->tok.attn, attn, nb) == RL_OK;
        free(ids), free(mask), free(attn);
        return ok;
    }
    v->kind = RL_RV_TENSOR;
    v->t = rl_tensor_new(ctx, ty->is_int ? RL_I32 : RL_F64, ty->ndim, shape, in->info.name);
    if (!v->t) return false;
    if (!ty->is_int)
        for (int64_t e = 0; e < v->t->numel; e++)
            rl_tensor_set(ctx, v->t, e, 0.1 + 0.8 * (double)((e * 7919) % 101) / 100.0);
    return true;
}

/* One run of the check with dim d bound to allowed[first + step * d] of the
 * primes no literal uses; false when the dims cannot be bound (nothing ran). */
static bool dry_pass(rl_recipe_program *p, int first, int step, bool warn);

void rl_dry_run(rl_recipe_program *p) {
    /* fresh dims: the lengths of generated token batches */
    for (int i = 0; i < p->n_ir; i++)
        if (p->ir[i].code == IR_FN && p->ir[i].fresh) rl_program_dim(p, p->ir[i].fresh);
    if (p->n_models > 0) rl_program_dim(p, "V");
    int errors = p->r->n_errors;
    if (!dry_pass(p, 0, 1, true) || p->r->n_errors != errors) return;
    /* Distinct primes keep products of dims apart, but not sums: concat of
     * [T] and [2] is [7] when T = 5, the size V has. A second run with other,
     * spread-out sizes (T = 11, V = 19, ...) must agree, so that no shape
     * passes because two different sizes happened to be equal. Its messages
     * name the same dims. */
    dry_pass(p, p->n_dims, 2, false);
}

static bool dry_pass(rl_recipe_program *p, int first, int step, bool warn) {
    rl_recipe *r = p->r;
    int64_t allowed[RL_N_PRIMES];
    int n_allowed = 0;
    for (int i = 0; i < RL_N_PRIMES; i++)
        if (!lit_used(p, rl_primes[i])) allowed[n_allowed++] = rl_primes[i];
    if (p->n_dims > 0 && first + step * (p->n_dims - 1) >= n_allowed) {
        if (warn)
            rl_diag_add(r, &r->src, RL_DIAG_WARNING, r->hsp, NULL,
                        "shapes were not checked: more than %d symbolic dims", n_allowed);
        return false;
    }
    for (int d = 0; d < p->n_dims; d++) p->dims[d].prime = allowed[first + step * d];
    if (!warn) /* the second run only adds a check: too large an input skips it rather than fail */
        for (int i = 0; i < p->n_inputs; i++) {
            const rl_recipe_type *ty = &p->inputs[i].info.type;
            double numel = 1;
            for (int k = 0; k < ty->ndim; k++) numel *= (double)type_size(p, ty, k);
            if (numel > (double)RL_DRY_MAX_INPUT) return true;
        }
    int64_t vocab = 64, n_ctx = 64;
    for (int d = 0; d < p->n_dims; d++) {
        if (strcmp(p->dims[d].name, "V") == 0) vocab = p->dims[d].prime;
        if (p->dims[d].prime + 1 > n_ctx) n_ctx = p->dims[d].prime + 1;
    }
    for (int i = 0; i < p->n_inputs; i++)
        if (p->inputs[i].info.type.tokens && p->inputs[i].info.type.sizes[1] + 1 > n_ctx)
            n_ctx = p->inputs[i].info.type.sizes[1] + 1;
    /* generation reaches the fresh dim's length: prompt length + max_new */
    for (int i = 0; i < p->n_ir; i++) {
        rl_ir *in = &p->ir[i];
        if (in->code != IR_FN || !in->fresh) continue;
        in->dry_len = p->dims[rl_program_dim(p, in->fresh)].prime;
    }
    if (p->n_models > 0 && !p->fns.dry.make) {
        rl_diag_add(r, &r->src, RL_DIAG_WARNING, r->hsp, NULL,
                    "shapes were not checked: the model functions have no dry-run models");
        return false;
    }
    rl_ctx *ctx = rl_ctx_new(NULL);
    if (!ctx) return false;
    rl_dry d = {calloc((size_t)r->n_stmts + 1, 1)};
    if (!d.stmt_err) abort();
    p->dry = true;
    rl_dtype run_dtype = p->opts.dtype;
    p->opts.dtype = RL_F64; /* the check runs in float64; messages still say f32 */
    p->vals = calloc((size_t)p->n_slots + 1, sizeof(rl_recipe_value));
    if (!p->vals) abort();
    bool ok = true;
    for (int i = 0; ok && i < p->n_models; i++) {
        rl_model_decl *m = &p->models[i];
        m->dry = p->fns.dry.make(ctx, m->info.kind, RL_F64, vocab, n_ctx, p->fns.user);
        if (!m->dry) {
            rl_diag_add(r, &r->src, RL_DIAG_WARNING, m->sp, NULL,
                        "shapes were not checked: no dry-run model for '%s' (%s)", m->info.name,
                        rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "?");
            ok = false;
            break;
        }
        rl_recipe_value *v = &p->vals[m->slot];
        v->kind = RL_RV_MODEL;
        v->model = m->dry;
        v->model_kind = m->info.kind;
    }
    for (int i = 0; ok && i < p->n_params; i++) {
        rl_param_decl *pa = &p->params[i];
        pa->dry = rl_param_new(ctx, RL_F64, pa->ndim, pa->shape, pa->info.name);
        if (!pa->dry) {
            ok = false;
            break;
        }
        rl_tensor_fill(ctx, pa->dry, pa->init);
        p->vals[pa->slot].kind = RL_RV_TENSOR;
        p->vals[pa->slot].t = pa->dry;
    }
    rl_recipe_value *inputs = calloc((size_t)p->n_inputs + 1, sizeof(rl_recipe_value));
    if (!inputs) abort();
    for (int i = 0; ok && i < p->n_inputs; i++) {
        if (!make_input(p, ctx, i, vocab, &inputs[i])) ok = false;
        else p->vals[p->inputs[i].slot] = inputs[i];
    }
    if (ok) {
        rl_eval_phase(p, ctx, PH_ROLLOUT, dry_error, &d, NULL, NULL, 0);
        rl_eval_phase(p, ctx, PH_LOSS, dry_error, &d, NULL, NULL, 0);
        char desc[96], sym[128];
        for (int i = 0; i < p->n_losses; i++) {
            const rl_recipe_value *v = &p->vals[p->losses[i].slot];
            if (v->kind != RL_RV_TENSOR || !v->t || v->t->numel == 1) continue;
            rl_eval_describe(p, v->t, desc, sizeof desc);
            rl_dry_symbolize(p, desc, sym, sizeof sym);
            rl_diag_add(r, &r->src, RL_DIAG_ERROR, p->losses[i].sp,
                        "reduce it to one number, e.g. mean(...), sum(...) or masked_mean(x, seq.mask)",
                        "loss '%s' must be a scalar, got %s", p->losses[i].info.name, sym);
        }
        for (int i = 0; i < p->n_metrics; i++) {
            const rl_recipe_value *v = &p->vals[p->metrics[i].slot];
            if (v->kind != RL_RV_TENSOR || !v->t || v->t->numel == 1) continue;
            rl_eval_describe(p, v->t, desc, sizeof desc);
            rl_dry_symbolize(p, desc, sym, sizeof sym);
            rl_diag_add(r, &r->src, RL_DIAG_ERROR, p->metrics[i].sp,
                        "reduce it to one number, e.g. mean(...)",
                        "metric '%s' must be a scalar, got %s", p->metrics[i].name, sym);
        }
        /* which values have the batch dim first (sliced into minibatches) */
        int64_t bp = 0;
        for (int k = 0; k < p->n_dims; k++)
            if (strcmp(p->dims[k].name, "B") == 0) bp = p->dims[k].prime;
        for (int s = 0; bp && s < p->n_slots; s++) {
            const rl_recipe_value *v = &p->vals[s];
            const rl_tensor *t = v->kind == RL_RV_TENSOR ? v->t : v->kind == RL_RV_TOKENS ? v->tok.ids : NULL;
            p->slots[s].batch = t && t->ndim >= 1 && t->shape[0] == bp;
            p->slots[s].batch_group = -1;
            /* B*G rows: a group dim's samples of each prompt (generate's n = G) */
            for (int g = 0; t && t->ndim >= 1 && !p->slots[s].batch && g < p->n_dims; g++)
                if (p->dims[g].fixed > 0 && t->shape[0] == bp * p->dims[g].prime)
                    p->slots[s].batch = true, p->slots[s].batch_group = g;
        }
        for (int i = 0; i < p->n_inputs; i++) {
            /* leaves are not run: describe them here */
            const rl_recipe_value *v = &inputs[i];
            const rl_tensor *t = v->kind == RL_RV_TENSOR ? v->t : v->tok.ids;
            rl_slot *s = &p->slots[p->inputs[i].slot];
            if (!t) continue;
            rl_eval_describe(p, t, desc, sizeof desc);
            rl_dry_symbolize(p, desc, s->shape, sizeof s->shape);
            s->has_shape = true;
        }
        for (int i = 0; i < p->n_params; i++) {
            rl_slot *s = &p->slots[p->params[i].slot];
            rl_eval_describe(p, p->params[i].dry, desc, sizeof desc);
            snprintf(s->shape, sizeof s->shape, "%s", desc);
            s->has_shape = true;
        }
    }
    /* clean up: everything the check made */
    for (int i = 0; i < p->n_ir; i++) {
        rl_ir *in = &p->ir[i];
        if (in->dry_state && in->code == IR_FN && p->fnv[in->op]->free_state)
            p->fnv[in->op]->free_state(in->dry_state);
        in->dry_state = NULL;
    }
    for (int i = 0; i < p->n_kept; i++) rl_tensor_free(ctx, p->kept[i]);
    p->n_kept = 0;
    for (int i = 0; i < p->n_inputs; i++) {
        rl_tensor_free(ctx, inputs[i].t);
        rl_tensor_free(ctx, inputs[i].tok.ids);
        rl_tensor_free(ctx, inputs[i].tok.mask);
        rl_tensor_free(ctx, inputs[i].tok.attn);
    }
    free(inputs);
    for (int i = 0; i < p->n_params; i++) {
        rl_tensor_free(ctx, p->params[i].dry);
        p->params[i].dry = NULL;
    }
    for (int i = 0; i < p->n_models; i++) {
        if (p->models[i].dry && p->fns.dry.free) p->fns.dry.free(ctx, p->models[i].dry, p->fns.user);
        p->models[i].dry = NULL;
    }
    free(p->vals);
    p->vals = NULL;
    p->dry = false;
    p->opts.dtype = run_dtype;
    free(d.stmt_err);
    rl_ctx_free(ctx);
    return ok;
}
