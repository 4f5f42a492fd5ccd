/* engine/rl_optim.h - optimizers (AdamW, SGD with momentum), global-norm
 * gradient clipping and learning-rate schedules.
 *
 * Model of use:
 *   rl_tensor *params[] = {w, b};
 *   rl_optim *opt = rl_optim_adamw_new(ctx, params, 2, NULL);   // NULL: defaults
 *   rl_lr_sched sched = rl_lr_warmup_cosine(3e-4, 3e-5, 100, 10000);
 *   for (int64_t s = 0; s < 10000; s++) {
 *       rl_optim_zero_grad(opt);
 *       ... forward, rl_backward(ctx, loss) ...
 *       rl_grad_clip_norm(ctx, params, 2, 1.0);
 *       if (rl_optim_step(opt, rl_lr_schedule(&sched, s)) != RL_OK) ... rl_ctx_error(ctx) ...
 *       rl_ctx_reset(ctx);
 *   }
 *   rl_optim_free(opt);                                          // before rl_ctx_free
 *
 * Errors are recorded in the context like op errors (the first one wins) and
 * returned as a status. The optimizer keeps its state (AdamW's m and v, SGD's
 * momentum buffers) in persistent tensors of the parameter's dtype and shape,
 * readable and writable through rl_optim_state() so checkpoints can save and
 * restore it together with rl_optim_step_count()/rl_optim_set_step_count().
 */
#ifndef RL_OPTIM_H
#define RL_OPTIM_H

#include "rl_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_optim rl_optim;

/* AdamW (Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), with
 * PyTorch's torch.optim.AdamW ordering. At step t (t = 1 on the first step):
 *   p <- p - lr * wd * p                       (decoupled decay, current lr, first)
 *   m <- b1 * m + (1 - b1) * g
 *   v <- b2 * v + (1 - b2) * g^2
 *   m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)
 *   p <- p - lr * m_hat / (sqrt(v_hat) + eps)
 * The decay multiplies by lr (as PyTorch does), unlike the paper, which scales
 * it by the schedule multiplier only. */
typedef struct rl_adamw_cfg {
    double beta1;        /* default 0.9 */
    double beta2;        /* default 0.999 */
    double eps;          /* default 1e-8 */
    double weight_decay; /* default 0.0; per-parameter: rl_optim_set_weight_decay */
} rl_adamw_cfg;

/* The defaults above (a NULL cfg means these). */
rl_adamw_cfg rl_adamw_cfg_default(void);

/* SGD with PyTorch torch.optim.SGD semantics (dampening 0):
 *   g' = g + wd * p                            (coupled L2 weight decay)
 *   buf <- momentum * buf + g'                 (buf starts at 0, so buf_1 = g')
 *   d = nesterov ? g' + momentum * buf : buf   (d = g' when momentum is 0)
 *   p <- p - lr * d
 * A zeroed cfg (or NULL) is plain SGD. */
typedef struct rl_sgd_cfg {
    double momentum;     /* 0: no momentum buffer is allocated */
    double weight_decay;
    int nesterov;        /* needs momentum > 0 */
} rl_sgd_cfg;

/* Creates an optimizer over n parameters (tensors made with rl_param_new; each
 * at most once; f32 or f64, dtypes may differ between parameters). Returns NULL
 * with the context's error set on bad arguments. The optimizer keeps ctx and
 * the parameter pointers: free it before the parameters and the context. */
rl_optim *rl_optim_adamw_new(rl_ctx *ctx, rl_tensor **params, int n, const rl_adamw_cfg *cfg);
rl_optim *rl_optim_sgd_new(rl_ctx *ctx, rl_tensor **params, int n, const rl_sgd_cfg *cfg);
void rl_optim_free(rl_optim *opt);

/* One update of every parameter from its .grad with learning rate lr (finite,
 * >= 0), then the step count goes up by one (AdamW counts before updating, so
 * its first step has t = 1). Refuses to run (returning the pending status)
 * while the context holds an error: a failed backward leaves partial gradients.
 * Returns RL_ERR_BACKEND, naming the backend, for parameters whose memory is
 * not host memory (the update loops are CPU-only for now). */
rl_status rl_optim_step(rl_optim *opt, double lr);
/* Zeroes the .grad of every parameter. */
void rl_optim_zero_grad(rl_optim *opt);
/* Overrides the weight decay of parameter i (e.g. 0 for biases and norms). */
rl_status rl_optim_set_weight_decay(rl_optim *opt, int i, double weight_decay);

/* ---- state, for checkpoints ------------------------------------------------ */

/* "adamw" or "sgd". */
const char *rl_optim_kind(const rl_optim *opt);
int rl_optim_n_params(const rl_optim *opt);
rl_tensor *rl_optim_param(const rl_optim *opt, int i);
/* Number of state tensors per parameter: 2 for AdamW (m, v), 1 for SGD with
 * momentum (the buffer), 0 for plain SGD. */
int rl_optim_n_state(const rl_optim *opt);
/* PyTorch's names for state slot k: "exp_avg", "exp_avg_sq", "momentum_buffer";
 * NULL when k is out of range. */
const char *rl_optim_state_name(const rl_optim *opt, int k);
/* State tensor k of parameter i (persistent, the parameter's dtype and shape;
 * write it with rl_tensor_write to restore), or NULL when out of range. */
rl_tensor *rl_optim_state(const rl_optim *opt, int i, int k);
/* Steps taken so far (AdamW's t after the last step). */
int64_t rl_optim_step_count(const rl_optim *opt);
/* Sets the step count (>= 0), e.g. when resuming from a checkpoint; the next
 * AdamW step uses t = count + 1 for bias correction. */
rl_status rl_optim_set_step_count(rl_optim *opt, int64_t count);

/* ---- gradient clipping ------------------------------------------------------- */

/* Global-norm clipping as torch.nn.utils.clip_grad_norm_: norm = sqrt(sum over
 * every parameter's gradient of g^2); when norm > max_norm every gradient is
 * multiplied by max_norm / (norm + 1e-6) (max_norm > 0). Returns the norm
 * before clipping, or -1 with the context's error set on bad arguments (and -1,
 * doing nothing, while the context already holds an error). A non-finite norm
 * (inf or nan gradients) is returned as is and nothing is scaled, so the caller
 * can see it and skip the step. Parameters follow rl_optim_*_new's rules. */
double rl_grad_clip_norm(rl_ctx *ctx, rl_tensor **params, int n, double max_norm);

/* ---- learning-rate schedules ------------------------------------------------- */

typedef enum {
    RL_LR_CONSTANT = 0,   /* lr at every step */
    RL_LR_WARMUP_CONSTANT,/* linear warm-up, then lr */
    RL_LR_WARMUP_COSINE,  /* linear warm-up, then cosine decay to min_lr */
} rl_lr_kind;

/* Steps are counted from 0: rl_lr_schedule(s, k) is the learning rate of the
 * k-th optimizer step, k = 0 for the first (so k equals rl_optim_step_count()
 * before the step). With W = warmup_steps, T = total_steps:
 *   warm-up, k < W:       lr * (k + 1) / W       (first step lr/W, step W-1 reaches lr;
 *                                                 never 0, so no step is wasted)
 *   constant, k >= W:     lr
 *   cosine, W <= k < T:   min_lr + 0.5 * (lr - min_lr) * (1 + cos(pi * (k - W) / (T - W)))
 *                         (lr at k = W, halfway at k = (W + T) / 2)
 *   cosine, k >= T:       min_lr
 * W = 0 means no warm-up. */
typedef struct rl_lr_sched {
    rl_lr_kind kind;
    double lr;             /* peak learning rate, >= 0 */
    double min_lr;         /* cosine floor, 0 <= min_lr <= lr */
    int64_t warmup_steps;  /* W >= 0 */
    int64_t total_steps;   /* T > W (cosine only) */
} rl_lr_sched;

rl_lr_sched rl_lr_constant(double lr);
rl_lr_sched rl_lr_warmup_constant(double lr, int64_t warmup_steps);
rl_lr_sched rl_lr_warmup_cosine(double lr, double min_lr, int64_t warmup_steps,
                                int64_t total_steps);
/* Records why a schedule is invalid in ctx and returns RL_ERR_ARG; RL_OK if valid. */
rl_status rl_lr_sched_check(rl_ctx *ctx, const rl_lr_sched *s);
/* The learning rate of step k (k >= 0). NaN for an invalid schedule or k < 0,
 * which rl_optim_step then rejects with a message. */
double rl_lr_schedule(const rl_lr_sched *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
