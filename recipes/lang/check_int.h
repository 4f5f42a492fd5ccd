/* recipes/lang/check_int.h - what the checker's three files share (check.c:
 * declarations and statements; expr.c: values, instructions, operators and
 * names; calls.c: calls of ops, natives, model functions, externs and `fn`
 * functions): the checker's state and its helpers. Internal to the checker.
 */
#ifndef RL_CHECK_INT_H
#define RL_CHECK_INT_H

#include "recipe_int.h"

#define RL_MAX_IR 200000
#define RL_MAX_INLINE_DEPTH 32

/* ---- the checker's state ----------------------------------------------------------- */

enum { NK_INPUT, NK_MODEL, NK_HYPER, NK_PARAM, NK_VALUE };

typedef struct rl_val {
    rl_vk kind;
    bool is_int;     /* TENSOR: i32 */
    double num;
    const char *str;
    int slot;        /* TENSOR, TOKENS, MODEL */
    int model;       /* MODEL */
    int n;           /* > 1: the results of a multi-result function (slots slot .. slot + n - 1) */
    bool has_use;    /* a fn parameter: where its argument is written at the call site */
    const char *hyper; /* NUM read by name from a hyper: its name (a size parameter makes it a dim) */
    rl_span use;
} rl_val;

typedef struct rl_ent {
    const char *name;
    int nk;
    rl_val v;
    rl_span sp;
    int phase;
    int stmt;
    bool used, is_out; /* is_out: a loss or a metric (never "unused") */
    bool mentioned;    /* named in the branch an if() did not take: not "unused", not needed */
} rl_ent;

typedef struct rl_ufn {
    const char *name;
    const rl_stmt *st;
    bool prelude;
    bool broken;     /* its definition has an error (reported): calls are silent */
    int order;       /* definition order (a body may call only earlier functions) */
} rl_ufn;

typedef struct rl_frame {
    const rl_ufn *fn;
    rl_val args[RL_RECIPE_MAX_FN_PARAMS];
} rl_frame;

typedef struct rl_ck {
    rl_recipe_program *p;
    rl_recipe *r;
    rl_recipe *prelude;
    const rl_source *asrc;   /* the source the AST being compiled comes from */
    rl_ent *ents;
    int n_ents, cap_ents;
    rl_ufn *ufns;
    int n_ufns, cap_ufns;
    rl_frame frames[RL_MAX_INLINE_DEPTH];
    int depth;
    rl_span site;            /* the outermost call site while inlining */
    int phase;
    int stmt;
    const char *assign_name; /* the single name a statement assigns (fresh dim names) */
    const rl_ast *assign_rhs;
    bool const_mode;         /* declarations: only constants allowed */
    const char *const_what;  /* "the value of hyper 'beta'" */
    bool too_big;
    int fresh_count;
    const char **early;      /* names used before their definition (not "unused" later) */
    int n_early, cap_early;
    int undef_stmt;          /* statement of the names below */
    const char *undef[16];   /* names reported undefined in it (once each) */
    int n_undef;
    rl_ctx *fold_ctx;        /* constant folding runs ops here (f64, 0-d), made on first use */
} rl_ck;

/* Inputs and attributes of an op call being compiled. */
typedef struct rl_opargs {
    int n;
    rl_val v[8];
    const rl_ast *e[8];
    rl_attrs at;       /* the attributes, in the fields the signature names */
} rl_opargs;

static inline rl_val rl_ck_verr(void) {
    rl_val v = {0};
    v.kind = VK_ERR;
    v.slot = -1;
    return v;
}

static inline rl_val rl_ck_vnum(double x) {
    rl_val v = rl_ck_verr();
    v.kind = VK_NUM;
    v.num = x;
    return v;
}

/* ---- expr.c ------------------------------------------------------------------------ */

/* Reports an error or warning at sp of the AST being compiled; while
 * inlining, at the call site in the recipe, prefixed "in FN: ". */
void rl_ck_err(rl_ck *c, rl_span sp, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void rl_ck_warn(rl_ck *c, rl_span sp, const char *hint, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* The source text of e, shortened, for messages (in the program's pool). */
const char *rl_ck_snip(rl_ck *c, const rl_ast *e);
/* "1st", "2nd", ... */
const char *rl_ck_ord(int i);
/* "a f32 tensor", "a token batch", ... */
const char *rl_ck_val_desc(const rl_val *v);
/* Appends an instruction with n_out output slots of the given kinds; NULL
 * (after an error) when the program is too large or in a constant context. */
rl_ir *rl_ck_emit(rl_ck *c, rl_ir_code code, int op, int n_args, const int *args, const rl_span *asp,
                  int n_out, const rl_vk *okind, const bool *oint, rl_span sp);
rl_val rl_ck_slot_val(rl_ck *c, int slot);
/* A 0-d constant slot (float of the run dtype, or i32); -1 after an error. */
int rl_ck_emit_const(rl_ck *c, double x, bool is_int, rl_span sp);
/* Where an argument is written (a fn parameter's call-site text while inlining). */
rl_span rl_ck_arg_span(rl_ck *c, const rl_ast *e, const rl_val *v);
/* v as a tensor slot: want 'F' float (i32 converted, numbers made 0-d), 'I'
 * i32, 'A' either; -1 after an error naming `what`. */
int rl_ck_as_tensor(rl_ck *c, const rl_val *v, char want, const rl_ast *e, const char *what);
/* Binds keyword arguments to parameter names: for each keyword of the call,
 * its parameter among names[first .. n) goes to given[]; an unknown name (with
 * a suggestion) or one given twice is reported with `sig` as the hint. The
 * caller has put the positional arguments in given[0 ..). */
bool rl_ck_bind_keywords(rl_ck *c, const rl_ast *e, const char *fname, const char *const *names,
                         int first, int n, const char *sig, const rl_ast **given);
/* Emits op over compiled inputs (folding numbers). */
rl_val rl_ck_apply_op(rl_ck *c, rl_op op, rl_opargs *a, rl_span sp);
rl_val rl_ck_apply1(rl_ck *c, rl_op op, rl_val x, const rl_ast *ex, rl_span sp);
/* Name lookups: NULL / -1 when absent. */
rl_ent *rl_ck_find_ent(rl_ck *c, const char *name);
const rl_ufn *rl_ck_find_ufn(rl_ck *c, const char *name);
const rl_recipe_fn *rl_ck_find_native(const char *name);
const rl_recipe_fn *rl_ck_find_model_fn(rl_ck *c, const char *name);
int rl_ck_find_extern(rl_ck *c, const char *name);
/* stop, float, min, max, if */
bool rl_ck_is_special(const char *name);
/* The branch of if(cond, a, b) that is not taken: not compiled, but its names
 * and functions must exist, and its names count as mentioned (no "never
 * used" warning; an input or model mentioned only there need not be bound). */
void rl_ck_mention(rl_ck *c, const rl_ast *e);
/* What kind of built-in name is ("an op of the engine", ...), or NULL. */
const char *rl_ck_builtin_kind(rl_ck *c, const char *name);
/* Reports an unknown function, suggesting the closest callable name. */
void rl_ck_unknown_fn(rl_ck *c, const rl_ast *e);
/* Remembers an integer written in the recipe (see dryrun.c). */
void rl_ck_note_literal(rl_recipe_program *p, double x);
/* Compiles an expression. */
rl_val rl_ck_expr(rl_ck *c, const rl_ast *e);

/* ---- calls.c ------------------------------------------------------------------------ */

/* Compiles a call expression (any kind of function). */
rl_val rl_ck_call(rl_ck *c, const rl_ast *e);

#endif
