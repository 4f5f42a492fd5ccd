/* recipes/lang/rl_recipe.h - the recipe language, the product's face: parse a
 * .recipe file, override its hyperparameters (--set), check it before any data
 * is read (names, arity, dtypes, symbolic shapes, the stop-gradient audit) and
 * compile it to a program of op calls that runs on the engine's tape.
 * docs/recipes.md is the reference manual; this header is the C contract.
 *
 * Folder recipes/lang/: the recipe language, from text to a compiled program;
 * may include ops/ and engine/ only (no models, no libffi). Start here, then recipe_int.h.
 *
 * Model of use (the stage runner does this):
 *   rl_recipe *r = rl_recipe_load("recipes/dpo.recipe");
 *   rl_recipe_set(r, "beta", "0.05");                  // --set beta=0.05
 *   rl_recipe_opts o = rl_recipe_opts_models(&env);      // f32, the model functions and
 *                                                      // the libffi bridge (rl_recipe_bind.h)
 *   rl_recipe_program *p = rl_recipe_compile(r, ctx, &o);
 *   if (!p) { rl_recipe_print_diags(r, stderr); ... }  // file:line:col: error: ...
 *   rl_recipe_bind_model(p, "policy", policy);          // an rl_model * (models/rl_model.h)
 *   each step:
 *     rl_recipe_bind_tokens(p, "chosen", ids, mask, attn); ...
 *     rl_recipe_run_loss(p, ctx, -1, -1);               // online: rl_recipe_run_rollout first
 *     rl_recipe_backward(p, ctx);                       // then optimizer steps, then
 *     rl_recipe_project_params(p, ctx);                 // bounds of `param`s
 *     rl_ctx_reset(ctx);
 *   rl_recipe_program_free(p); rl_recipe_free(r);        // the program first
 *
 * Errors: parse/compile problems become diagnostics kept in the rl_recipe
 * (all of them, ordered by position). Run-time problems return a status and
 * leave a message naming the file, line and column in rl_recipe_program_error.
 * The recipe compiler treats running out of memory while building its own
 * small structures as fatal (it aborts with a message).
 */
#ifndef RL_RECIPE_H
#define RL_RECIPE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "rl_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_recipe rl_recipe;                 /* a parsed recipe: source, syntax, diagnostics */
typedef struct rl_recipe_program rl_recipe_program; /* a checked, compiled recipe */

/* The header's KIND: how the runner feeds the recipe. */
typedef enum {
    RL_RECIPE_SUPERVISED = 0, /* one batch of data per step */
    RL_RECIPE_PAIRWISE,       /* a batch of preference pairs per step */
    RL_RECIPE_ONLINE,         /* rollout { } once per batch, loss { } per minibatch */
    RL_RECIPE_FULLBATCH,      /* no data or all of it: the same inputs every step */
} rl_recipe_kind;

/* `model NAME : lm|score|value ...` */
typedef enum { RL_MODEL_LM = 0, RL_MODEL_SCORE, RL_MODEL_VALUE } rl_recipe_model_kind;

const char *rl_recipe_kind_name(rl_recipe_kind k);
const char *rl_recipe_model_kind_name(rl_recipe_model_kind k);

/* ---- diagnostics ------------------------------------------------------------ */

typedef enum { RL_DIAG_ERROR = 0, RL_DIAG_WARNING } rl_diag_severity;

/* One message about a place in a source. Printed as
 *   FILE:LINE:COL: error: MSG
 *   <the source line>
 *       ^~~~~          (under columns [col, end_col))
 *   hint: HINT         (what was expected; absent when NULL)
 * FILE is the recipe's file name, or "--set" for a command-line override
 * (the override text is then the source line). */
typedef struct rl_recipe_diag {
    rl_diag_severity severity;
    const char *file;
    int line, col;        /* 1-based */
    int end_col;          /* exclusive; > col */
    const char *msg;
    const char *hint;     /* or NULL */
    const char *src_line; /* the whole source line, without its newline */
} rl_recipe_diag;

int rl_recipe_n_diags(const rl_recipe *r);
/* Diagnostic i in position order (errors and warnings interleaved). */
const rl_recipe_diag *rl_recipe_diag_at(const rl_recipe *r, int i);
int rl_recipe_n_errors(const rl_recipe *r);
int rl_recipe_n_warnings(const rl_recipe *r);
/* The first error in position order, or NULL. */
const rl_recipe_diag *rl_recipe_first_error(const rl_recipe *r);
/* Formats one diagnostic (3 or 4 lines, each ending in '\n') into buf;
 * returns the length it needed (as snprintf). */
int rl_recipe_format_diag(const rl_recipe_diag *d, char *buf, size_t n);
/* Prints every diagnostic to f, in position order. */
void rl_recipe_print_diags(const rl_recipe *r, FILE *f);

/* ---- parsing and overrides ----------------------------------------------------- */

/* Parses len bytes of src (need not be NUL-terminated; any bytes are
 * accepted) named `file` in messages. Always returns a recipe (NULL only when
 * memory runs out); syntax errors are its diagnostics. */
rl_recipe *rl_recipe_parse(const char *src, size_t len, const char *file);
/* Reads and parses a file. NULL when it cannot be read; *err (if err is not
 * NULL) then points to the reason, strerror(errno). */
rl_recipe *rl_recipe_load(const char *path, const char **err);
void rl_recipe_free(rl_recipe *r);
/* The header's name ("" when the header is missing or broken). */
const char *rl_recipe_name(const rl_recipe *r);

/* Overrides hyperparameter `name` with `value`, a constant expression in the
 * recipe language ("0.05", "1/20", "log(5)", "beta * 2") or, for a hyper whose
 * default is a string, a string with or without quotes. Checked at once:
 * an unknown name (with the closest name suggested) or a bad value returns
 * RL_ERR_ARG and adds a diagnostic whose file is "--set". Values that depend on
 * the recipe (another hyper) are evaluated by rl_recipe_compile. Setting a
 * name twice keeps the last value. */
rl_status rl_recipe_set(rl_recipe *r, const char *name, const char *value);
/* The same from "name=value" (the text after --set). */
rl_status rl_recipe_set_arg(rl_recipe *r, const char *arg);

/* ---- values passed to and from functions ------------------------------------------- */

typedef enum {
    RL_RV_NONE = 0,
    RL_RV_TENSOR, /* t */
    RL_RV_TOKENS, /* tok: a token batch */
    RL_RV_MODEL,  /* model, model_kind */
    RL_RV_NUMBER, /* num */
    RL_RV_STRING, /* str */
} rl_recipe_vkind;

/* A token batch: ids i32 [B, T]; mask i32 [B, T], 1 on response (action)
 * tokens; attn i32 [B, T], 1 on real tokens (1s then 0s: right padding). */
typedef struct rl_recipe_tokens {
    rl_tensor *ids, *mask, *attn;
} rl_recipe_tokens;

typedef struct rl_recipe_value {
    rl_recipe_vkind kind;
    rl_tensor *t;
    rl_recipe_tokens tok;
    void *model; /* the handle bound with rl_recipe_bind_model (a dry-run model in checks) */
    rl_recipe_model_kind model_kind;
    double num;
    const char *str;
} rl_recipe_value;

/* ---- function tables (model functions, natives, externs) ---------------------------- */

/* Parameter types of a callable function. */
typedef enum {
    RL_RP_FLOAT = 0, /* a float tensor of the run dtype; i32 is converted, numbers become 0-d */
    RL_RP_INT,       /* an i32 tensor (indices) */
    RL_RP_ANY,       /* a tensor of either dtype, as given */
    RL_RP_TOKENS,    /* a token batch */
    RL_RP_MODEL,     /* a declared model */
    RL_RP_NUMBER,    /* a constant (by position or keyword) */
    RL_RP_STRING,    /* a constant string, one of `choices` */
} rl_recipe_ptype;

typedef struct rl_recipe_param {
    const char *name;
    rl_recipe_ptype type;
    int optional;        /* NUMBER/STRING: `def`/`sdef` is used when absent */
    double def;
    const char *sdef;
    const char *choices; /* STRING: "k1|k2|k3" */
    int integer;         /* NUMBER: must be an integer */
    int size;            /* NUMBER: a size (>= 1); a hyper given here by name is a symbolic dim of
                          * the shape check (generate's n = G), bound there to a prime */
} rl_recipe_param;

typedef enum { RL_RR_FLOAT = 0, RL_RR_INT, RL_RR_TOKENS } rl_recipe_rtype;

enum {
    RL_RFN_ROLLOUT_ONLY = 1u << 0, /* callable only in a rollout block (generation) */
    RL_RFN_NOGRAD = 1u << 1,       /* results carry no gradient (computed on the host) */
    RL_RFN_STATEFUL = 1u << 2,     /* keeps state between calls, one per call site */
};

#define RL_RECIPE_MAX_FN_PARAMS 8
#define RL_RECIPE_MAX_FN_RESULTS 4

struct rl_recipe_fn;

/* What a function receives. args[i] matches fn->params[i]; constants are
 * filled in (defaults included), tensors are of the declared dtype. */
typedef struct rl_recipe_call {
    rl_ctx *ctx;
    const struct rl_recipe_fn *fn;
    const rl_recipe_value *args;
    int dry;         /* 1 in the shape check: tiny models, symbolic dims bound to primes */
    rl_dtype dtype;  /* the run's float dtype (what FLOAT results must have) */
    int64_t dry_len; /* dry run, TOKENS result: the length its fresh T must have */
    void **state;    /* STATEFUL: per call site, starts NULL, freed with fn->free_state */
    void *user;      /* the table's user pointer */
} rl_recipe_call;

/* Fills out[0 .. fn->n_results) (kind TENSOR or TOKENS). On failure returns
 * a status with the message recorded in call->ctx (rl_ctx_fail). Results are
 * arena tensors or persistent ones the callee keeps alive. */
typedef rl_status (*rl_recipe_fn_cb)(const rl_recipe_call *call, rl_recipe_value *out);

typedef struct rl_recipe_fn {
    const char *name;
    const char *doc; /* one line: "end_score(model, tokens) -> f32[B]: ..." */
    int n_params;
    rl_recipe_param params[RL_RECIPE_MAX_FN_PARAMS];
    int n_results;
    rl_recipe_rtype results[RL_RECIPE_MAX_FN_RESULTS];
    const char *result_names; /* "adv, ret" for messages about tuples */
    unsigned flags;           /* RL_RFN_* */
    unsigned model_kinds;     /* MODEL parameters: accepted kinds, bits 1u << RL_MODEL_*; 0 = any */
    rl_recipe_fn_cb call;
    void (*free_state)(void *state);
    /* STATEFUL functions whose state must survive a checkpoint: the state as
     * a malloc'ed array of *n doubles, and a new state from such an array
     * (NULL when it is malformed). NULL: the state is not saved. */
    double *(*save_state)(const void *state, size_t *n);
    void *(*load_state)(const double *v, size_t n);
} rl_recipe_fn;

/* Makes and frees the small models the shape check runs on. */
typedef struct rl_recipe_dry_models {
    /* A model of `kind` in dtype dt with vocabulary `vocab` and a context of at
     * least n_ctx positions, or NULL (message in ctx). */
    void *(*make)(rl_ctx *ctx, rl_recipe_model_kind kind, rl_dtype dt, int64_t vocab, int64_t n_ctx,
                  void *user);
    void (*free)(rl_ctx *ctx, void *model, void *user);
} rl_recipe_dry_models;

/* The model functions a caller registers (the runner: recipes/bind's, on rl_model). */
typedef struct rl_recipe_fns {
    const rl_recipe_fn *fns;
    int n_fns;
    rl_recipe_dry_models dry;
    void *user; /* passed to every call and to dry.make/free */
} rl_recipe_fns;

/* The functions every recipe has (at_end, gae, whiten, var, std, window_mean, kl, adaptive_beta, step). */
int rl_recipe_n_natives(void);
const rl_recipe_fn *rl_recipe_native_at(int i);

/* ---- externs (`extern "lib.so" name(types) -> types [backward name2]`) ---------------- */

/* A declared type: tokens, or f32/i32 with dims. f32 means "the run's float dtype". */
typedef struct rl_recipe_type {
    int tokens;
    int is_int;                   /* i32 */
    int ndim;
    const char *dims[RL_MAX_DIMS]; /* symbolic names, or NULL where sizes[i] is a number */
    int64_t sizes[RL_MAX_DIMS];
} rl_recipe_type;

typedef struct rl_recipe_extern {
    const char *name;     /* the C symbol */
    const char *lib;      /* "librules.so" */
    const char *backward; /* the backward's C symbol, or NULL (then no gradient flows) */
    int n_params;
    const rl_recipe_type *params;
    int n_results;
    const rl_recipe_type *results;
    int line, col;        /* of the declaration */
} rl_recipe_extern;

/* What a bridge says when it cannot bind an extern: the message, an optional
 * hint, and the part of the declaration they point at. */
typedef enum { RL_EXTERN_AT_LIB, RL_EXTERN_AT_NAME, RL_EXTERN_AT_BACKWARD } rl_recipe_extern_part;
typedef struct rl_recipe_extern_error {
    rl_recipe_extern_part at;
    char msg[4096];
    char hint[300];
} rl_recipe_extern_error;

/* How a program runs its externs; the language itself loads no code. The
 * libffi bridge (recipes/bind/rl_recipe_bind.h) loads shared libraries. */
typedef struct rl_recipe_extern_bridge {
    /* At compile time, once per extern: finds and checks its code for runs
     * in `dtype`; recipe_file locates plug-ins beside the recipe. Returns a
     * handle, or NULL with err filled (an error at the declaration). */
    void *(*bind)(void *user, const rl_recipe_extern *ext, const char *recipe_file, rl_dtype dtype,
                  rl_recipe_extern_error *err);
    /* Computes out[0 .. ext->n_results) from call->args, like a function
     * table entry (joining the tape itself where it has a backward). */
    rl_status (*call)(void *handle, const rl_recipe_extern *ext, const rl_recipe_call *call,
                      rl_recipe_value *out);
    /* When the program is freed. */
    void (*release)(void *handle);
    void *user;
} rl_recipe_extern_bridge;

/* ---- compiling ------------------------------------------------------------------------ */

typedef struct rl_recipe_opts {
    rl_dtype dtype;           /* the run's float dtype: RL_F32, or RL_F64 for gradient checks */
    rl_recipe_fns fns;        /* the model functions (token_logprobs, generate, ...); none by
                                 default: rl_recipe_opts_models gives the model table */
    int no_dry_run;           /* 1: skip the shape check (static checks only) */
    const rl_recipe_extern_bridge *externs; /* NULL: externs check, but calling one is a
                                               run-time error */
} rl_recipe_opts;

/* f32, no model functions, no extern bridge: the language alone. */
rl_recipe_opts rl_recipe_opts_default(void);

/* Checks and compiles r (with the --set overrides given so far). Params are
 * created in ctx (persistent, trainable, opts->dtype). Returns NULL when r
 * has errors (see its diagnostics); warnings are added either way (each
 * compile adds its own). r must outlive the program. */
rl_recipe_program *rl_recipe_compile(rl_recipe *r, rl_ctx *ctx, const rl_recipe_opts *opts);
void rl_recipe_program_free(rl_recipe_program *p);

/* ---- what a program declares ------------------------------------------------------------- */

typedef struct rl_recipe_optim {
    const char *kind;      /* "adamw" or "sgd" */
    double lr;
    double beta1, beta2, eps; /* adamw */
    double momentum;       /* sgd */
    int nesterov;          /* sgd */
    double weight_decay;   /* `wd` */
    double clip;           /* max global gradient norm; 0: no clipping */
} rl_recipe_optim;

/* The token rows a runner builds from a data file's format rather than reads
 * as a field (`input c : tokens from "chosen"`): prompt, response,
 * completion, chosen, rejected, safer, unsafer, the PKU cost signs
 * safer_sign, unsafer_sign, and mismatched (row k's prompt with row k+1's
 * response, the batch shifted by one: KTO's KL estimate). NULL-terminated. */
extern const char *const rl_recipe_row_columns[];
int rl_recipe_is_row_column(const char *col);

typedef struct rl_recipe_input_info {
    const char *name;
    rl_recipe_type type;
    /* `input label : f32[B] from "label"`: the data column it reads (a field of
     * the JSONL, "a.b" for a nested one, or a row the runner builds: "prompt",
     * "response", "chosen", ...); NULL when not declared. Where it is written: */
    const char *from;
    int line, col;      /* the input's name */
    int from_line, from_col;
} rl_recipe_input_info;

typedef struct rl_recipe_model_info {
    const char *name;
    rl_recipe_model_kind kind;
    int trainable;
    rl_recipe_optim optim; /* trainable models */
} rl_recipe_model_info;

typedef struct rl_recipe_param_info {
    const char *name;
    rl_tensor *tensor;     /* persistent, trainable, owned by the program */
    rl_recipe_optim optim;
    int has_min, has_max;
    double min, max;
} rl_recipe_param_info;

typedef struct rl_recipe_hyper_info {
    const char *name;
    double num;
    const char *str;       /* non-NULL for string hypers */
} rl_recipe_hyper_info;

typedef struct rl_recipe_loss_info {
    const char *name;      /* "loss", "loss_lambda", ... */
    int n_trainables;
    const char *const *trainables; /* names of models and params its gradient reaches */
} rl_recipe_loss_info;

rl_recipe_kind rl_recipe_program_kind(const rl_recipe_program *p);
const char *rl_recipe_program_name(const rl_recipe_program *p);
int rl_recipe_n_inputs(const rl_recipe_program *p);
const rl_recipe_input_info *rl_recipe_input_at(const rl_recipe_program *p, int i);
int rl_recipe_n_models(const rl_recipe_program *p);
const rl_recipe_model_info *rl_recipe_model_at(const rl_recipe_program *p, int i);
int rl_recipe_n_params(const rl_recipe_program *p);
const rl_recipe_param_info *rl_recipe_param_at(const rl_recipe_program *p, int i);
int rl_recipe_n_hypers(const rl_recipe_program *p);
const rl_recipe_hyper_info *rl_recipe_hyper_at(const rl_recipe_program *p, int i);
/* The hyper called name, or NULL. */
const rl_recipe_hyper_info *rl_recipe_hyper(const rl_recipe_program *p, const char *name);
int rl_recipe_n_losses(const rl_recipe_program *p);
const rl_recipe_loss_info *rl_recipe_loss_at(const rl_recipe_program *p, int i);
int rl_recipe_n_metrics(const rl_recipe_program *p);
const char *rl_recipe_metric_name(const rl_recipe_program *p, int i);
int rl_recipe_n_externs(const rl_recipe_program *p);
const rl_recipe_extern *rl_recipe_extern_at(const rl_recipe_program *p, int i);

/* ---- running ------------------------------------------------------------------------------- */

/* Binds a declared model to a handle for the model functions (an rl_model * for
 * the model table). Bindings persist across steps. */
rl_status rl_recipe_bind_model(rl_recipe_program *p, const char *name, void *model);
/* Binds a tensor input (dtype: the run dtype for f32, RL_I32 for i32; ndim
 * and literal dims as declared; symbolic dims must agree across inputs). */
rl_status rl_recipe_bind_tensor(rl_recipe_program *p, const char *name, rl_tensor *t);
/* Binds a token input: three i32 [B, T] tensors (mask may be NULL: all 0). */
rl_status rl_recipe_bind_tokens(rl_recipe_program *p, const char *name, rl_tensor *ids,
                                rl_tensor *mask, rl_tensor *attn);

/* Online recipes: runs the rollout block with gradients off. Every rollout
 * value and every bound input is copied into program-owned persistent tensors
 * (so the loss block can run for several minibatches across rl_ctx_reset).
 * generate resets the context's arena: arena tensors made before this call
 * are invalid after it. A no-op for other kinds. */
rl_status rl_recipe_run_rollout(rl_recipe_program *p, rl_ctx *ctx);
/* Runs the loss block (top-level statements for other kinds) with the
 * context's gradient setting (on by default), over rows [row0, row1) of the
 * batch dimension B of every input and rollout value whose first dim is B
 * (known from the shape check; row0 = row1 = -1: all rows). Inputs and models
 * must be bound. The losses and metrics are then readable until the next
 * rl_ctx_reset. */
rl_status rl_recipe_run_loss(rl_recipe_program *p, rl_ctx *ctx, int64_t row0, int64_t row1);
/* After rl_recipe_run_loss: loss i (a 0-d tensor), metric i, or any named
 * value (a token batch gives its ids; NULL when unknown, a constant, or not
 * computed in the last run). */
rl_tensor *rl_recipe_loss(const rl_recipe_program *p, int i);
rl_tensor *rl_recipe_metric(const rl_recipe_program *p, int i);
rl_tensor *rl_recipe_value_of(const rl_recipe_program *p, const char *name);
/* Backward of the sum of the losses. The audit guarantees that each trainable
 * is reached by one loss at most, so every trainable receives the gradient of
 * its own loss from this single pass. */
rl_status rl_recipe_backward(rl_recipe_program *p, rl_ctx *ctx);
/* The policy-step counter that a recipe reads with step() (safe-rlhf's
 * global_step: the lambda update waits `delay` steps). rl_recipe_backward
 * adds one after each successful pass; a runner resuming from a checkpoint
 * sets it back (negative values become 0). Starts at 0. */
int64_t rl_recipe_step(const rl_recipe_program *p);
void rl_recipe_set_step(rl_recipe_program *p, int64_t step);
/* Clamps every param into its [min, max] (after an optimizer step). */
rl_status rl_recipe_project_params(rl_recipe_program *p, rl_ctx *ctx);
/* The last run-time error ("file:line:col: error: ..." and the source line
 * with a caret), or NULL. */
const char *rl_recipe_program_error(const rl_recipe_program *p);

/* ---- the compiled graph (for `rlhf graph` and messages) ------------------------------------ */

typedef struct rl_recipe_node {
    const char *op;     /* "add", "token_logprobs", "input", "param", "const", "tokens.mask" ... */
    const char *name;   /* the name it is assigned to, or NULL */
    int n_in;
    const int *in;      /* producing nodes */
    int phase;          /* 0 rollout, 1 loss, -1 declaration (inputs, params, models) */
    int line, col;      /* where it is written (the call site for inlined functions) */
    int start, end;     /* byte offsets of that source text */
    const char *shape;  /* symbolic shape from the check, "f32 [B, T]" ("" when unchecked) */
} rl_recipe_node;

int rl_recipe_n_nodes(const rl_recipe_program *p);
const rl_recipe_node *rl_recipe_node_at(const rl_recipe_program *p, int i);

/* The prelude: functions written in the recipe language that every recipe
 * can call (masked_mean, k3, ...). */
const char *rl_recipe_prelude_source(void);

/* ---- the built-in recipes (recipes/lang/builtin.c) -------------------------------------------- */

/* The recipes shipped in recipes/: sft, bradley_terry, cost_model, ppo_kl,
 * safe_rlhf, dpo, ipo (i in [0, rl_recipe_n_builtins); NULL outside). */
/* "sft, bradley_terry, ...": the built-in names for usage texts; returns buf. */
char *rl_recipe_builtin_list(char *buf, size_t n);
int rl_recipe_n_builtins(void);
const char *rl_recipe_builtin_name(int i);
/* A recipe argument as command lines take it: an existing file is itself;
 * a built-in name is NAME.recipe in $RLHF_RECIPE_DIR (when set) or in the
 * source tree's recipes/. Writes the path into path (n bytes). RL_ERR_ARG
 * when arg is neither a file nor a built-in name, RL_ERR_IO when the
 * built-in's file cannot be found. */
rl_status rl_recipe_resolve(const char *arg, char *path, size_t n);

/* ---- state of stateful functions (window_mean), for checkpoints ------------------------------ */

/* Stateful call sites of the program (real runs, not the shape check), in
 * program order. A resumed run needs them to continue exactly. */
int rl_recipe_n_states(const rl_recipe_program *p);
/* "window_mean@12:8": the function and the call site's line and column (the
 * key a checkpoint stores the state under), or NULL when i is out of range. */
const char *rl_recipe_state_name(const rl_recipe_program *p, int i);
/* Call site i's state as *n doubles in a malloc'ed *out (the caller frees
 * it); *out = NULL and *n = 0 when the site has no state yet or its function
 * cannot save one. */
rl_status rl_recipe_state_save(const rl_recipe_program *p, int i, double **out, size_t *n);
/* Replaces call site i's state with one made from v[0..n) (as saved);
 * n = 0 clears it. RL_ERR_ARG when the values are malformed. */
rl_status rl_recipe_state_load(rl_recipe_program *p, int i, const double *v, size_t n);

#ifdef __cplusplus
}
#endif
#endif
