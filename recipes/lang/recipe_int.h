/* recipes/lang/recipe_int.h - what the recipe language's sources share and users
 * do not: the bump pool, sources and spans, diagnostics, tokens, the syntax
 * tree, the compiled program (instructions over value slots) and the entry
 * points of each pass:
 *
 *   diag.c    the pool, diagnostics, suggestions
 *   lexer.c   bytes -> tokens            parser.c  tokens -> statements (AST)
 *   check.c   statements -> instructions (declarations, assignments, phases);
 *             expr.c (values, operators, names) and calls.c (every kind of
 *             call, inlining) compile the expressions; check_int.h
 *   audit.c   which trainables each loss reaches (the stop-gradient audit)
 *   eval.c    runs instructions on the engine (real runs and the shape check)
 *   dryrun.c  the shape check: symbolic dims bound to distinct primes
 *   program.c the public API (compile driver, binding, running, accessors)
 *   natives.c, prelude.c: the functions every recipe can call; the model
 *             functions and the extern bridge come from the caller (rl_recipe_opts;
 *             this product's are in recipes/bind/)
 */
#ifndef RL_RECIPE_INT_H
#define RL_RECIPE_INT_H

#include "rl_internal.h"
#include "rl_ops.h"
#include "rl_recipe.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- memory ----------------------------------------------------------------- */

/* A bump allocator: everything is freed at once. Allocation failure aborts
 * (see rl_recipe.h). */
typedef struct rl_rchunk rl_rchunk;
typedef struct rl_rpool {
    rl_rchunk *head;
} rl_rpool;

void *rl_rpool_alloc(rl_rpool *p, size_t n); /* zeroed, 16-byte aligned */
char *rl_rpool_strndup(rl_rpool *p, const char *s, size_t n);
char *rl_rpool_strdup(rl_rpool *p, const char *s);
char *rl_rpool_printf(rl_rpool *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
char *rl_rpool_vprintf(rl_rpool *p, const char *fmt, va_list ap);
void rl_rpool_free(rl_rpool *p);
/* realloc that aborts on failure (growing arrays). */
void *rl_xrealloc(void *ptr, size_t n);
/* Grows *arr (elements of size elem) so that index `need - 1` fits. */
void rl_grow(void *arr, int *cap, int need, size_t elem);

/* ---- sources and spans ---------------------------------------------------------- */

typedef struct rl_source {
    const char *name; /* for messages */
    const char *text; /* NUL-terminated copy (may contain other NULs) */
    int len;
} rl_source;

/* Bytes [start, end) of a source; line and col (1-based) of start. */
typedef struct rl_span {
    int start, end;
    int line, col;
} rl_span;

/* ---- diagnostics -------------------------------------------------------------------- */

typedef struct rl_diag_rec {
    rl_recipe_diag d;
    int order; /* 0: the recipe, 1: --set overrides (after the file) */
    int start; /* byte offset, for ordering */
    int seq;   /* insertion order, to keep the sort stable */
} rl_diag_rec;

/* Adds a diagnostic at span sp of src (hint may be NULL). */
void rl_diag_add(rl_recipe *r, const rl_source *src, rl_diag_severity sev, rl_span sp,
                 const char *hint, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void rl_diag_vadd(rl_recipe *r, const rl_source *src, rl_diag_severity sev, rl_span sp,
                  const char *hint, const char *fmt, va_list ap);
/* Levenshtein distance (capped, for suggestions). */
int rl_edit_distance(const char *a, const char *b);
/* The candidate closest to `name` when it is close enough to suggest, else NULL. */
const char *rl_suggest(const char *name, const char *const *cands, int n);

/* ---- tokens ------------------------------------------------------------------------- */

typedef enum {
    TK_EOF = 0,
    TK_NAME,
    TK_NUM,
    TK_STR,
    TK_LPAREN, TK_RPAREN, TK_LBRACE, TK_RBRACE, TK_LBRACK, TK_RBRACK,
    TK_COMMA, TK_COLON, TK_ASSIGN, TK_DOT,
    TK_PLUS, TK_MINUS, TK_STAR, TK_SLASH, TK_CARET,
    TK_GT, TK_GE, TK_LT, TK_LE, TK_EQ, TK_ARROW,
} rl_tk;

typedef struct rl_token {
    rl_tk kind;
    rl_span sp;
    bool bol;       /* first token on its line */
    double num;     /* TK_NUM */
    bool is_int;    /* TK_NUM written without '.' or exponent */
    const char *s;  /* TK_NAME, TK_STR (unquoted), in the recipe's pool */
} rl_token;

const char *rl_tk_text(rl_tk k); /* "')'" for messages */
/* Tokenizes src; lexical errors become diagnostics in r. The last token is
 * TK_EOF placed right after the last non-blank byte. *out is malloc'ed. */
int rl_lex(rl_recipe *r, const rl_source *src, rl_token **out);
/* Line and column (1-based) of byte offset off. */
void rl_source_linecol(const rl_source *src, int off, int *line, int *col);

/* ---- syntax tree ------------------------------------------------------------------------ */

/* Items of one list: a shape or permutation argument (at most RL_MAX_DIMS,
 * checked where it is used) or one level of a tensor literal. */
#define RL_LIST_MAX_ITEMS 64
/* Elements of a whole tensor literal. */
#define RL_LITERAL_MAX_ELEMS 1024

typedef enum { AST_NUM, AST_STR, AST_NAME, AST_MEMBER, AST_CALL, AST_BIN, AST_NEG, AST_LIST } rl_ast_kind;

typedef struct rl_ast {
    rl_ast_kind kind;
    rl_span sp;        /* the whole expression */
    rl_span nsp;       /* CALL: the name; MEMBER: the field; BIN: the operator */
    double num;        /* NUM */
    bool is_int;
    const char *s;     /* NAME, CALL (function), MEMBER (field), STR */
    rl_tk op;          /* BIN */
    struct rl_ast *a, *b; /* BIN: operands; NEG, MEMBER: a */
    int n;             /* CALL, LIST */
    struct rl_ast **args;
    const char **kw;   /* CALL: keyword of each argument, or NULL */
    rl_span *kwsp;
} rl_ast;

typedef struct rl_type_ast {
    bool tokens, is_int;
    int ndim;
    const char *dim[RL_MAX_DIMS]; /* name, or NULL for a number */
    int64_t size[RL_MAX_DIMS];
    rl_span dsp[RL_MAX_DIMS];
    rl_span sp;
    bool dims_written;  /* [..] was written (tokens alone means tokens[B, T]) */
} rl_type_ast;

typedef struct rl_optim_ast {
    const char *name;
    rl_span sp;
    int n;
    const char **key;
    rl_span *ksp;
    rl_ast **val;
} rl_optim_ast;

typedef enum { ST_INPUT, ST_MODEL, ST_HYPER, ST_PARAM, ST_EXTERN, ST_FN, ST_ASSIGN, ST_LOG } rl_stmt_kind;
enum { BLK_TOP = 0, BLK_ROLLOUT = 1, BLK_LOSS = 2 };

typedef struct rl_stmt {
    rl_stmt_kind kind;
    bool broken;        /* a syntax error inside it (reported): its names are poisoned */
    int block;          /* BLK_* */
    rl_span sp;         /* the statement's first token */
    int n_names;        /* ASSIGN: 1 or more (tuple); others: 1 */
    const char **names;
    rl_span *nsp;
    rl_ast *expr;       /* ASSIGN, LOG, HYPER, PARAM (initial value), FN (body); NULL if broken */
    /* INPUT, PARAM */
    bool has_type;
    rl_type_ast type;
    /* MODEL */
    const char *mkind;
    rl_span mksp;
    bool trainable;
    rl_optim_ast *optim; /* MODEL, PARAM */
    /* PARAM */
    rl_ast *min, *max;
    /* HYPER: `in ["a", "b"]`, the values it may take (NULL: any) */
    rl_ast *choices;
    /* EXTERN: the library; INPUT: the data column of `from "col"` (NULL: none) */
    const char *lib;
    rl_span libsp;
    int n_types, n_rtypes;
    rl_type_ast *types, *rtypes;
    const char *backward;
    rl_span bsp;
    /* FN */
    int n_fparams;
    const char **fparams;
    rl_span *fpsp;
} rl_stmt;

/* ---- the recipe ---------------------------------------------------------------------------- */

typedef struct rl_override {
    const char *name;
    rl_source src;       /* the text after --set, named "--set" */
    rl_span nsp, vsp;    /* name and value within src */
    rl_ast *expr;        /* the value, parsed */
    bool bare;           /* a bare word (a string for string hypers) */
    const char *word;
} rl_override;

struct rl_recipe {
    rl_rpool pool;
    rl_source src;
    bool prelude;        /* parsing the prelude: fn declarations only, no header */
    const char *name;
    rl_recipe_kind kind;
    bool has_header;
    rl_span hsp;         /* the header (for recipe-level messages) */
    rl_stmt **stmts;
    int n_stmts, cap_stmts;
    bool has_rollout, has_loss_block;
    bool block_unclosed;  /* a block runs to the end of the file (reported once) */
    rl_span rollout_sp;
    int *lex_err_lines;   /* lines with a lexical error: no syntax errors there */
    int n_lex_err_lines, cap_lex_err_lines;
    rl_diag_rec *diags;
    int n_diags, cap_diags;
    int n_errors, n_warnings;
    bool sorted;
    rl_override *ov;
    int n_ov, cap_ov;
};

/* Parses r->src into r->stmts (diagnostics for syntax errors). */
void rl_parse(rl_recipe *r);
/* Parses one expression from tokens [*pos ...) of src (for --set values). */
rl_ast *rl_parse_expr_tokens(rl_recipe *r, const rl_source *src, rl_token *toks, int n, int *pos);

/* ---- the program ------------------------------------------------------------------------------ */

/* Compile-time kinds of values. */
typedef enum { VK_ERR = 0, VK_NUM, VK_STR, VK_TENSOR, VK_TOKENS, VK_MODEL } rl_vk;
enum { PH_DECL = -1, PH_ROLLOUT = 0, PH_LOSS = 1 };

typedef enum {
    IR_INPUT,   /* a bound input (tensor or tokens) */
    IR_PARAM,   /* a param's tensor */
    IR_MODEL,   /* a declared model (no run-time effect; a graph node) */
    IR_CONST,   /* a 0-d constant of the run dtype (num), or i32 when is_int */
    IR_FIELD,   /* ids/mask/attn of a token batch (op = 0/1/2) */
    IR_CONVERT, /* i32 -> the run's float dtype */
    IR_OP,      /* an engine op (op = rl_op) */
    IR_FN,      /* a table function (op = index into p->fns) */
} rl_ir_code;

typedef struct rl_ir {
    rl_ir_code code;
    int op;
    int n_args;
    int *args;          /* slots */
    rl_span *arg_sp;    /* where each argument is written (the audit points at these) */
    rl_attrs at;        /* IR_OP: the attributes (lists in at.ints, at.n_ints) */
    double num;         /* IR_CONST */
    bool is_int;        /* IR_CONST of dtype i32 */
    rl_recipe_value *consts; /* IR_FN: one per fn param; kind NONE where a slot is passed */
    int *pslot;         /* IR_FN: per fn param, the slot passed, or -1 */
    int *dimarg;        /* IR_FN: per fn param, the dim a size argument is (a hyper), or -1; NULL: none */
    int out, n_out;     /* first output slot, count */
    int phase;          /* PH_* */
    rl_span sp;         /* source text (the outermost call site for inlined functions) */
    const char *in_fn;  /* inlined from this function, or NULL */
    bool from_prelude;  /* inside a prelude function: no warnings here */
    int stmt;           /* statement index (one shape error per statement) */
    const char *fresh;  /* IR_FN returning tokens: name of its fresh T dim ("T_seq") */
    int64_t dry_len;
    void *state;        /* STATEFUL functions */
    void *dry_state;    /* the same during the shape check */
    rl_tensor *stop_val; /* IR_OP stop: its value at the point a gradient check checks (persistent) */
    int model;          /* IR_FN: the model passed (or -1); IR_MODEL: the model */
} rl_ir;

typedef struct rl_slot {
    rl_vk kind;         /* VK_TENSOR, VK_TOKENS or VK_MODEL */
    bool is_int;        /* VK_TENSOR: i32 (else the run float dtype) */
    int phase;
    int ir, k;          /* produced by ir's k-th output */
    const char *name;   /* assigned name, or NULL */
    int model;          /* VK_MODEL */
    int conv;           /* slot of its float conversion (memo), or -1 */
    uint64_t *reach;    /* audit: bitset over trainables */
    char shape[96];     /* from the shape check */
    bool batch;         /* first dim is B (rows are sliced in minibatches) */
    int batch_group;    /* batch: the first dim is B times this (fixed) dim, B*G rows, each prompt's
                         * G samples adjacent (sliced G rows per prompt); -1: B itself */
    bool has_shape;
} rl_slot;

typedef struct rl_input_decl {
    rl_recipe_input_info info;
    int slot;
    rl_span sp;
    rl_recipe_value bound;     /* as bound by the caller */
    rl_recipe_value kept;      /* persisted copy made by run_rollout */
    bool used;
} rl_input_decl;

typedef struct rl_model_decl {
    rl_recipe_model_info info;
    int slot;
    rl_span sp;
    void *handle;
    void *dry;                 /* the shape check's model */
    int trainable_id;          /* -1 if frozen */
    bool used;
} rl_model_decl;

typedef struct rl_param_decl {
    rl_recipe_param_info info;
    int slot;
    rl_span sp;
    int ndim;
    int64_t shape[RL_MAX_DIMS];
    double init;
    int trainable_id;
    rl_tensor *dry;            /* the shape check's copy */
} rl_param_decl;

typedef struct rl_trainable {
    const char *name;
    bool is_param;
    int index;                 /* into models or params */
    rl_span sp;
} rl_trainable;

typedef struct rl_named {
    const char *name;
    int slot;                  /* or -1 for compile-time values */
    int stmt;
} rl_named;

typedef struct rl_loss {
    rl_recipe_loss_info info;
    int slot;
    int stmt;
    rl_span sp;                /* the value expression */
    rl_tensor *value;          /* after run_loss */
} rl_loss;

typedef struct rl_metric {
    const char *name;
    int slot;
    rl_span sp;
    rl_tensor *value;
} rl_metric;

typedef struct rl_dim {
    const char *name;
    int64_t prime;             /* shape check binding */
    int64_t size;              /* run-time binding (-1: unbound this run) */
    int64_t fixed;             /* > 0: a hyper given as a size (generate's n = G): its value, the
                                * size at run time; the shape check still binds a prime */
} rl_dim;

typedef struct rl_extern_decl {
    rl_recipe_extern info;
    rl_recipe_fn fn;           /* its table entry */
    rl_span sp;
    void *handle;              /* opts.externs->bind's handle, or NULL */
} rl_extern_decl;

struct rl_recipe_program {
    rl_recipe *r;
    rl_rpool pool;
    rl_recipe_opts opts;
    rl_recipe_fns fns;         /* model functions in use */
    rl_ctx *ctx;               /* params live here */
    rl_recipe_kind kind;
    const char *name;

    rl_input_decl *inputs; int n_inputs, cap_inputs;
    rl_model_decl *models; int n_models, cap_models;
    rl_param_decl *params; int n_params, cap_params;
    rl_recipe_hyper_info *hypers; int n_hypers, cap_hypers;
    rl_extern_decl **externs; int n_externs, cap_externs; /* in the pool: stable addresses */
    rl_trainable *train; int n_train, cap_train;
    int reach_words;

    /* every function an IR_FN calls: natives, model functions, externs */
    const rl_recipe_fn **fnv; int n_fnv, cap_fnv;
    void **fnv_user; int cap_fnv_user; /* the user pointer each one is called with */
    /* gradient checks: 1 records every stop()'s value (ir.stop_val), 2 replays
     * them, so that central differences hold stop(x) constant at the point
     * checked, as the tape does (KTO's z0 is a stop() of the policy) */
    int stop_mode;
    int64_t *lits; int n_lits, cap_lits; /* integer literals (the shape check avoids them as primes) */

    rl_ir *ir; int n_ir, cap_ir;
    rl_slot *slots; int n_slots, cap_slots;
    rl_named *named; int n_named, cap_named;
    rl_loss *losses; int n_losses, cap_losses;
    rl_metric *metrics; int n_metrics, cap_metrics;
    rl_dim *dims; int n_dims, cap_dims;

    /* run time */
    rl_recipe_value *vals;     /* per slot, this pass */
    rl_recipe_value *roll;     /* per slot: the rollout's persistent values */
    rl_tensor **kept; int n_kept, cap_kept; /* persistent copies made by the rollout */
    rl_ctx *kept_ctx;
    bool rolled_out;
    bool dry;                  /* the shape check is running */
    int64_t step;              /* policy steps taken (rl_recipe_backward calls); step() reads it */
    const bool *only;          /* per instruction: when set, eval runs only those marked (the
                                * gradient check evaluates one loss's dataflow; NULL: all) */
    char *err;

    /* graph view */
    rl_recipe_node *nodes;
    int *node_in;
};

/* check.c: statements -> instructions; declarations; static diagnostics. */
void rl_check(rl_recipe_program *p);
/* audit.c */
void rl_audit(rl_recipe_program *p);
/* dryrun.c: the shape check (needs no errors so far). */
void rl_dry_run(rl_recipe_program *p);
/* The index of the program's dim `name` (name kept, not copied), added unbound when new. */
int rl_program_dim(rl_recipe_program *p, const char *name);
/* Rewrites the sizes inside [..] of msg as symbols (3 -> B, 15 -> B*T) and
 * f64 as f32, into out. */
void rl_dry_symbolize(const rl_recipe_program *p, const char *msg, char *out, size_t n);

/* eval.c: runs the instructions of `phase` in order. On failure returns a
 * status; *failed_ir is the instruction and msg its message. In the dry run
 * (p->dry) a failing instruction poisons its outputs and `on_error` is called
 * instead of stopping. */
typedef void (*rl_eval_error_fn)(rl_recipe_program *p, int ir, const char *msg, void *user);
rl_status rl_eval_phase(rl_recipe_program *p, rl_ctx *ctx, int phase, rl_eval_error_fn on_error,
                        void *user, int *failed_ir, char *msg, size_t msg_n);
/* "f32 [3, 5]" with the run dtype written f32. */
void rl_eval_describe(const rl_recipe_program *p, const rl_tensor *t, char *buf, size_t n);

/* The prelude's parsed functions (prelude.c). */
rl_recipe *rl_prelude_parse(void);

/* Helpers shared by the passes. */
bool rl_is_loss_name(const char *name);

#endif
