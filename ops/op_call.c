/* ops/op_call.c - the recipe side of the op table: the signature column of
 * ops/ops.def parsed into rl_op_sig, and rl_op_call, which runs any op by id
 * through its call column. The recipe checker binds arguments against the
 * signatures, the interpreter and the constant folder run rl_op_call, so an
 * op becomes callable from recipes by its row alone.
 */
#include "rl_ops.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_sig_text[RL_OP_COUNT] = {
#define OP(e, name, sym, arity, flags, sig, ...) [RL_OP_##e] = sig,
#include "ops.def"
#undef OP
};

static rl_op_sig op_sigs[RL_OP_COUNT];
static bool op_has_sig[RL_OP_COUNT];
static pthread_once_t op_sigs_once = PTHREAD_ONCE_INIT;

/* A malformed row is a bug in ops/ops.def: say which and stop. */
static void sig_die(int op, const char *why) {
    fprintf(stderr, "ops/ops.def: the signature of '%s' (\"%s\") is malformed: %s\n",
            rl_op_table[op].name, op_sig_text[op], why);
    abort();
}

/* Copies the next token of s (an identifier, number or one punctuation
 * character, "..." and "->" as one) into tok; returns the text after it. */
static const char *sig_token(const char *s, char *tok, size_t n) {
    while (*s == ' ') s++;
    size_t k = 0;
    if (strncmp(s, "...", 3) == 0 || strncmp(s, "->", 2) == 0) {
        k = s[0] == '.' ? 3 : 2;
    } else if (*s && strchr(",:=@[]|", *s)) {
        k = 1;
    } else {
        while (s[k] && !strchr(" ,:=@[]|", s[k]) && !(s[k] == '-' && s[k + 1] == '>' && k) &&
               strncmp(s + k, "...", 3) != 0)
            k++;
    }
    if (k >= n) k = n - 1;
    memcpy(tok, s, k);
    tok[k] = 0;
    return s + k;
}

/* Copies a name or default into a field of the parsed signature. */
static void sig_copy(int op, char *dst, size_t n, const char *src) {
    size_t k = strlen(src);
    if (k >= n) sig_die(op, "a name or default longer than 23 characters");
    memcpy(dst, src, k + 1);
}

static const struct {
    const char *name;
    rl_attr_field field;
} attr_fields[] = {
    {"axis", RL_AF_AXIS}, {"keepdim", RL_AF_KEEPDIM}, {"trans_a", RL_AF_TRANS_A},
    {"trans_b", RL_AF_TRANS_B}, {"f0", RL_AF_F0}, {"f1", RL_AF_F1}, {"i0", RL_AF_I0},
    {"i1", RL_AF_I1}, {"ints", RL_AF_INTS},
};

static int find_field(const char *name) {
    for (size_t i = 0; i < sizeof attr_fields / sizeof attr_fields[0]; i++)
        if (strcmp(attr_fields[i].name, name) == 0) return (int)attr_fields[i].field;
    return -1;
}

static void sig_parse(int op) {
    const char *s = op_sig_text[op];
    rl_op_sig *g = &op_sigs[op];
    memset(g, 0, sizeof *g);
    g->result_like = -1;
    char tok[64], name[64];
    bool in_attrs = false;
    for (;;) {
        s = sig_token(s, tok, sizeof tok);
        if (!tok[0]) break;
        if (strcmp(tok, "->") == 0) {
            s = sig_token(s, tok, sizeof tok);
            for (int i = 0; i < g->n_in; i++)
                if (strcmp(g->in_name[i], tok) == 0) g->result_like = i;
            if (g->result_like < 0 && strcmp(tok, "f32") != 0) sig_die(op, "-> names no input");
            s = sig_token(s, tok, sizeof tok);
            if (tok[0]) sig_die(op, "text after the result");
            break;
        }
        snprintf(name, sizeof name, "%s", tok);
        s = sig_token(s, tok, sizeof tok);
        if (strcmp(tok, ":") != 0) sig_die(op, "a parameter without ': type'");
        s = sig_token(s, tok, sizeof tok);
        char in_type = 0;
        if (strcmp(tok, "f32") == 0) {
            in_type = 'F';
            while (*s == ' ') s++;
            if (*s == '|') {
                s = sig_token(s, tok, sizeof tok);
                s = sig_token(s, tok, sizeof tok);
                if (strcmp(tok, "i32") != 0) sig_die(op, "f32| must be followed by i32");
                in_type = 'N';
            }
        } else if (strcmp(tok, "i32") == 0) {
            in_type = 'I';
        } else if (strcmp(tok, "tensor") == 0) {
            in_type = 'A';
        }
        if (in_type) {
            if (in_attrs) sig_die(op, "an input after an attribute");
            if (g->n_in == RL_OP_MAX_IN || g->variadic) sig_die(op, "too many inputs");
            sig_copy(op, g->in_name[g->n_in], sizeof g->in_name[0], name);
            g->in_type[g->n_in++] = in_type;
            while (*s == ' ') s++;
            if (strncmp(s, "...", 3) == 0) {
                s += 3;
                g->variadic = 1;
            }
        } else {
            in_attrs = true;
            if (g->n_attr == RL_OP_MAX_ATTRS) sig_die(op, "too many attributes");
            rl_op_attr_sig *a = &g->attr[g->n_attr++];
            sig_copy(op, a->name, sizeof a->name, name);
            if (strcmp(tok, "int") == 0) a->type = RL_ATTR_INT;
            else if (strcmp(tok, "number") == 0) a->type = RL_ATTR_NUMBER;
            else if (strcmp(tok, "bool") == 0) a->type = RL_ATTR_BOOL;
            else if (strcmp(tok, "axis") == 0) a->type = RL_ATTR_AXIS;
            else if (strcmp(tok, "[") == 0) {
                s = sig_token(s, tok, sizeof tok);
                if (strcmp(tok, "int") != 0) sig_die(op, "lists are [int]");
                s = sig_token(s, tok, sizeof tok);
                if (strcmp(tok, "]") != 0) sig_die(op, "lists are [int]");
                a->type = RL_ATTR_INTS;
            } else {
                sig_die(op, "unknown type");
            }
            a->required = 1;
            int field = a->type == RL_ATTR_INTS ? RL_AF_INTS : find_field(a->name);
            while (*s == ' ') s++;
            if (*s == '=') {
                s = sig_token(s, tok, sizeof tok);
                s = sig_token(s, tok, sizeof tok);
                if (!tok[0]) sig_die(op, "a default is missing");
                sig_copy(op, a->def_text, sizeof a->def_text, tok);
                a->required = 0;
                char *end;
                if (strcmp(tok, "all") == 0 && a->type == RL_ATTR_AXIS) a->def = RL_AXIS_ALL;
                else if (strcmp(tok, "true") == 0 && a->type == RL_ATTR_BOOL) a->def = 1;
                else if (strcmp(tok, "false") == 0 && a->type == RL_ATTR_BOOL) a->def = 0;
                else if (a->type != RL_ATTR_BOOL && a->type != RL_ATTR_INTS &&
                         (a->def = strtod(tok, &end), *end == 0))
                    ;
                else sig_die(op, "a default that does not fit its type");
            }
            while (*s == ' ') s++;
            if (*s == '@') {
                s = sig_token(s, tok, sizeof tok);
                s = sig_token(s, tok, sizeof tok);
                field = find_field(tok);
            }
            if (field < 0) sig_die(op, "an attribute without a field (name it with @field)");
            if ((field == RL_AF_INTS) != (a->type == RL_ATTR_INTS)) sig_die(op, "lists and only lists go to @ints");
            a->field = (rl_attr_field)field;
        }
        while (*s == ' ') s++;
        if (*s == ',') s++;
        else if (*s && strncmp(s, "->", 2) != 0) sig_die(op, "parameters are separated by commas");
    }
    if (g->n_in == 0) sig_die(op, "no inputs");
    if (rl_op_table[op].arity >= 0 && (g->variadic || g->n_in != rl_op_table[op].arity))
        sig_die(op, "the inputs do not match the arity column");
    /* the text of hints: "sum(x, axis = all, keepdim = false)" */
    int k = snprintf(g->text, sizeof g->text, "%s(", rl_op_table[op].name);
    for (int i = 0; i < g->n_in && k < (int)sizeof g->text; i++)
        k += snprintf(g->text + k, sizeof g->text - (size_t)k, "%s%s", i ? ", " : "", g->in_name[i]);
    if (g->variadic && k < (int)sizeof g->text) k += snprintf(g->text + k, sizeof g->text - (size_t)k, ", ...");
    for (int i = 0; i < g->n_attr && k < (int)sizeof g->text; i++) {
        if (g->attr[i].required)
            k += snprintf(g->text + k, sizeof g->text - (size_t)k, ", %s", g->attr[i].name);
        else
            k += snprintf(g->text + k, sizeof g->text - (size_t)k, ", %s = %s", g->attr[i].name,
                          g->attr[i].def_text);
    }
    if (k < (int)sizeof g->text) snprintf(g->text + k, sizeof g->text - (size_t)k, ")");
}

static void sigs_parse_all(void) {
    for (int op = 0; op < RL_OP_COUNT; op++) {
        if (!op_sig_text[op][0]) continue;
        if (rl_op_table[op].flags & OPF_BACKWARD_ONLY) sig_die(op, "a backward-only kernel has no signature");
        sig_parse(op);
        op_has_sig[op] = true;
    }
}

const rl_op_sig *rl_op_signature(int op) {
    if (op < 0 || op >= RL_OP_COUNT) return NULL;
    pthread_once(&op_sigs_once, sigs_parse_all);
    return op_has_sig[op] ? &op_sigs[op] : NULL;
}

void rl_attrs_set(rl_attrs *at, rl_attr_field field, double v) {
    switch (field) {
    case RL_AF_AXIS: at->axis = (int)v; break;
    case RL_AF_KEEPDIM: at->keepdim = v != 0; break;
    case RL_AF_TRANS_A: at->trans_a = v != 0; break;
    case RL_AF_TRANS_B: at->trans_b = v != 0; break;
    case RL_AF_F0: at->f[0] = v; break;
    case RL_AF_F1: at->f[1] = v; break;
    case RL_AF_I0: at->ints[0] = (int64_t)v; break;
    case RL_AF_I1: at->ints[1] = (int64_t)v; break;
    case RL_AF_INTS: break; /* lists are written item by item into ints */
    }
}

double rl_attrs_get(const rl_attrs *at, rl_attr_field field) {
    switch (field) {
    case RL_AF_AXIS: return at->axis;
    case RL_AF_KEEPDIM: return at->keepdim;
    case RL_AF_TRANS_A: return at->trans_a;
    case RL_AF_TRANS_B: return at->trans_b;
    case RL_AF_F0: return at->f[0];
    case RL_AF_F1: return at->f[1];
    case RL_AF_I0: return (double)at->ints[0];
    case RL_AF_I1: return (double)at->ints[1];
    case RL_AF_INTS: return at->n_ints;
    }
    return 0;
}

rl_tensor *rl_op_call(rl_ctx *ctx, int op, int n_in, rl_tensor *const *in, const rl_attrs *at) {
    if (op < 0 || op >= RL_OP_COUNT) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "rl_op_call: no op %d", op);
        return NULL;
    }
    const rl_op_info *info = &rl_op_table[op];
    if ((info->arity >= 0 && n_in != info->arity) || n_in < 1) {
        rl_ctx_fail(ctx, RL_ERR_ARG, "%s takes %d inputs, got %d", info->name, info->arity, n_in);
        return NULL;
    }
    static const rl_attrs none;
    if (!at) at = &none;
    /* the names the call column of ops/ops.def is written in */
#define IN(i) (in[i])
#define NIN n_in
#define INS in
#define AT at
#define NOCALL (rl_ctx_fail(ctx, RL_ERR_ARG, "op '%s' cannot be called by name", info->name), (rl_tensor *)NULL)
    switch (op) {
#define OP(e, name, sym, arity, flags, sig, call) case RL_OP_##e: return call;
#include "ops.def"
#undef OP
    }
#undef IN
#undef NIN
#undef INS
#undef AT
#undef NOCALL
    return NULL;
}
