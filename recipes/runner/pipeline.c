/* recipes/runner/pipeline.c - pipeline files (rl_pipeline.h): parsing with
 * variables and diagnostics, running the steps as child processes with
 * .done markers and resume, the results table and the aims.
 */
#include "rl_pipeline.h"

#include "rl_file.h"
#include "rl_recipe.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PL_MAX_VARS 128
#define PL_MAX_STEPS 64
#define PL_MAX_AIMS 32
#define PL_MAX_ARGS 96
#define PL_LINE 4096

typedef struct pl_var {
    char *name, *value;
    int from_cli;
    int in_file; /* a `let` of the file defines it */
} pl_var;

typedef struct pl_step {
    char *name;
    char *cmd; /* the line after "NAME:", variables expanded */
    int line;
} pl_step;

typedef struct pl_aim {
    char *text; /* as written, expanded */
    int line;
} pl_aim;

struct rl_pipeline {
    char *path;
    pl_var vars[PL_MAX_VARS];
    int n_vars;
    pl_step steps[PL_MAX_STEPS];
    int n_steps;
    pl_aim aims[PL_MAX_AIMS];
    int n_aims;
    char src_line[PL_LINE]; /* the line being parsed, as written (for diagnostics) */
};

static char *pl_trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

/* A diagnostic at line:col (covering len bytes) of the line being parsed,
 * formatted as recipes' are; returns 0 so that callers can `return pl_diag(...)`. */
static int pl_diag(rl_pipeline *p, char *err, size_t n, int line, int col, int len, const char *hint,
                   const char *fmt, ...) __attribute__((format(printf, 8, 9)));
static int pl_diag(rl_pipeline *p, char *err, size_t n, int line, int col, int len, const char *hint,
                   const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    rl_recipe_diag d = {.severity = RL_DIAG_ERROR, .file = p->path, .line = line, .col = col,
                        .end_col = col + (len > 0 ? len : 1), .msg = msg, .hint = hint, .src_line = p->src_line};
    rl_recipe_format_diag(&d, err, n);
    return 0;
}

static pl_var *pl_var_find(const rl_pipeline *p, const char *name, size_t len) {
    for (int i = 0; i < p->n_vars; i++)
        if (strlen(p->vars[i].name) == len && strncmp(p->vars[i].name, name, len) == 0)
            return (pl_var *)&p->vars[i];
    return NULL;
}

static int pl_name_ok(const char *s) {
    if (!*s) return 0;
    for (const char *c = s; *c; c++)
        if (!(*c == '_' || *c == '-' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
              (c > s && *c >= '0' && *c <= '9')))
            return 0;
    return 1;
}

/* Replaces ${NAME} in src (which starts at column col0 of the line); 0 and
 * a diagnostic for an undefined variable or a result that does not fit. */
static int pl_expand(rl_pipeline *p, const char *src, int line, int col0, char *out, size_t cap, char *err,
                     size_t n) {
    size_t k = 0;
    for (const char *s = src; *s;) {
        if (s[0] == '$' && s[1] == '{') {
            int col = col0 + (int)(s - src);
            const char *e = strchr(s + 2, '}');
            if (!e) return pl_diag(p, err, n, line, col, 2, "a variable is written ${NAME}", "'${' without a closing '}'");
            int len = (int)(e - s - 2);
            pl_var *v = pl_var_find(p, s + 2, (size_t)len);
            if (!v) {
                char hint[256];
                snprintf(hint, sizeof hint, "define it above this line with `let %.*s = ...`", len, s + 2);
                return pl_diag(p, err, n, line, col, len + 3, hint, "undefined variable '%.*s'", len, s + 2);
            }
            size_t vl = strlen(v->value);
            if (k + vl >= cap) goto too_long;
            memcpy(out + k, v->value, vl);
            k += vl;
            s = e + 1;
            continue;
        }
        if (k + 1 >= cap) goto too_long;
        out[k++] = *s++;
    }
    out[k] = 0;
    return 1;
too_long:
    return pl_diag(p, err, n, line, col0, (int)strlen(src), NULL,
                   "the line is longer than %zu bytes after expanding variables", cap - 1);
}

static int pl_set_var(rl_pipeline *p, const char *name, const char *value, int from_cli) {
    pl_var *v = pl_var_find(p, name, strlen(name));
    if (v && !from_cli) v->in_file = 1;
    if (v) {
        if (v->from_cli && !from_cli) return 1; /* --set wins over the file */
        free(v->value);
        v->value = strdup(value);
        v->from_cli = from_cli;
        return v->value != NULL;
    }
    if (p->n_vars == PL_MAX_VARS) return 0;
    v = &p->vars[p->n_vars++];
    v->name = strdup(name);
    v->value = strdup(value);
    v->from_cli = from_cli;
    v->in_file = !from_cli;
    return v->name && v->value;
}

void rl_pipeline_free(rl_pipeline *p) {
    if (!p) return;
    for (int i = 0; i < p->n_vars; i++) free(p->vars[i].name), free(p->vars[i].value);
    for (int i = 0; i < p->n_steps; i++) free(p->steps[i].name), free(p->steps[i].cmd);
    for (int i = 0; i < p->n_aims; i++) free(p->aims[i].text);
    free(p->path);
    free(p);
}

/* The comparison of an aim: the first of <=, >=, <, > between blanks (so
 * that paths and keys may hold '<' or '>'); -1 when there is none. */
static const char *const pl_aim_ops[] = {"<=", ">=", "<", ">"};
static int pl_aim_op(const char *text, const char **at) {
    for (int k = 0; k < 4; k++) {
        char pat[6];
        snprintf(pat, sizeof pat, " %s ", pl_aim_ops[k]);
        if ((*at = strstr(text, pat))) return k;
    }
    *at = NULL;
    return -1;
}

/* One line (already stripped of its comment and trimmed to s, which starts
 * at column col); 0 with a diagnostic. */
static int pl_parse_line(rl_pipeline *p, char *buf, char *s, int line, int col, char *err, size_t n) {
    char exp[PL_LINE];
    if (strncmp(s, "let ", 4) == 0) {
        char *eq = strchr(s, '=');
        if (!eq)
            return pl_diag(p, err, n, line, col, (int)strlen(s), "write `let NAME = VALUE`", "a `let` without '='");
        *eq = 0;
        char *name = pl_trim(s + 4), *val = pl_trim(eq + 1);
        if (!pl_name_ok(name))
            return pl_diag(p, err, n, line, (int)(name - buf) + 1, (int)strlen(name),
                           "a variable name is letters, digits, _ and -, starting with a letter or _",
                           "'%s' is not a variable name", name);
        return pl_expand(p, val, line, (int)(val - buf) + 1, exp, sizeof exp, err, n) && pl_set_var(p, name, exp, 0);
    }
    if (strncmp(s, "step ", 5) == 0) {
        char *colon = strchr(s, ':');
        if (!colon)
            return pl_diag(p, err, n, line, col, (int)strlen(s), "write `step NAME: COMMAND ARGS...`",
                           "a `step` without ':'");
        *colon = 0;
        char *name = pl_trim(s + 5), *cmd = pl_trim(colon + 1);
        int name_col = (int)(name - buf) + 1;
        if (!pl_name_ok(name))
            return pl_diag(p, err, n, line, name_col, (int)strlen(name) ? (int)strlen(name) : 1,
                           "a step name is letters, digits, _ and -, starting with a letter or _",
                           "'%s' is not a step name", name);
        if (!*cmd)
            return pl_diag(p, err, n, line, (int)(colon - buf) + 1, 1,
                           "write an rlhf command after the colon, e.g. `step sft: train sft --data ...`",
                           "the step has no command");
        for (int i = 0; i < p->n_steps; i++)
            if (strcmp(p->steps[i].name, name) == 0)
                return pl_diag(p, err, n, line, name_col, (int)strlen(name),
                               "step names are unique: --from, --only and the .done files name steps",
                               "step '%s' is already defined at line %d", name, p->steps[i].line);
        if (p->n_steps == PL_MAX_STEPS)
            return pl_diag(p, err, n, line, col, 4, NULL, "more than %d steps", PL_MAX_STEPS);
        if (!pl_expand(p, cmd, line, (int)(cmd - buf) + 1, exp, sizeof exp, err, n)) return 0;
        pl_step *st = &p->steps[p->n_steps++];
        st->name = strdup(name);
        st->cmd = strdup(exp);
        st->line = line;
        return st->name && st->cmd;
    }
    if (strncmp(s, "aim ", 4) == 0) {
        char *text = pl_trim(s + 4);
        if (p->n_aims == PL_MAX_AIMS) return pl_diag(p, err, n, line, col, 3, NULL, "more than %d aims", PL_MAX_AIMS);
        if (!pl_expand(p, text, line, (int)(text - buf) + 1, exp, sizeof exp, err, n)) return 0;
        const char *at;
        if (pl_aim_op(exp, &at) < 0)
            return pl_diag(p, err, n, line, (int)(text - buf) + 1, (int)strlen(text),
                           "write `aim LEFT OP RIGHT`, e.g. `aim ${out}/eval/rm.json:accuracy >= 0.7`",
                           "the aim has no comparison: one of < <= > >= between blanks");
        p->aims[p->n_aims].text = strdup(exp);
        p->aims[p->n_aims++].line = line;
        return p->aims[p->n_aims - 1].text != NULL;
    }
    int wl = 0;
    while (s[wl] && s[wl] != ' ' && s[wl] != '\t') wl++;
    return pl_diag(p, err, n, line, col, wl,
                   "a line is `let NAME = VALUE`, `step NAME: COMMAND ...`, `aim LEFT OP RIGHT` or a # comment",
                   "expected `let`, `step` or `aim`, got '%.*s'", wl > 40 ? 40 : wl, s);
}

static int pl_parse(rl_pipeline *p, char *err, size_t n) {
    FILE *in = fopen(p->path, "r");
    if (!in) {
        rl_errf(err, n, RL_ERR_IO, "%s: cannot open: %s\n", p->path, strerror(errno));
        return 0;
    }
    char buf[PL_LINE];
    int line = 0, ok = 1;
    while (ok && fgets(buf, sizeof buf, in)) {
        line++;
        size_t len = strlen(buf);
        int whole = len && buf[len - 1] == '\n';
        while (len && (buf[len - 1] == '\n' || buf[len - 1] == '\r')) len--;
        memcpy(p->src_line, buf, len);
        p->src_line[len] = 0;
        if (!whole && !feof(in)) {
            ok = pl_diag(p, err, n, line, 1, 1, "split it with variables (`let`)", "the line is longer than %d bytes",
                         PL_LINE - 2);
            break;
        }
        /* a comment starts at '#' at the line start or after a blank */
        for (char *h = buf; *h; h++)
            if (*h == '#' && (h == buf || h[-1] == ' ' || h[-1] == '\t')) {
                *h = 0;
                break;
            }
        char *s = pl_trim(buf);
        if (!*s) continue;
        ok = pl_parse_line(p, buf, s, line, (int)(s - buf) + 1, err, n);
    }
    fclose(in);
    if (ok && p->n_steps == 0) {
        rl_errf(err, n, RL_ERR_ARG, "%s: error: the pipeline has no steps\n", p->path);
        ok = 0;
    }
    if (ok && !pl_var_find(p, "out", 3)) {
        rl_errf(err, n, RL_ERR_ARG, "%s: error: the pipeline must define its directory: let out = DIR\n", p->path);
        ok = 0;
    }
    return ok;
}

rl_pipeline *rl_pipeline_load(const char *path, const char *const *sets, int n_sets, char *err, size_t n) {
    rl_pipeline *p = calloc(1, sizeof *p);
    if (!p || !(p->path = strdup(path))) {
        free(p);
        rl_errf(err, n, RL_ERR_MEMORY, "out of memory\n");
        return NULL;
    }
    for (int i = 0; i < n_sets; i++) {
        const char *eq = strchr(sets[i], '=');
        char name[256];
        if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof name) {
            rl_errf(err, n, RL_ERR_ARG, "--set expects NAME=VALUE, got '%s'\n", sets[i]);
            goto fail;
        }
        snprintf(name, sizeof name, "%.*s", (int)(eq - sets[i]), sets[i]);
        if (!pl_name_ok(name) || !pl_set_var(p, name, eq + 1, 1)) {
            rl_errf(err, n, RL_ERR_ARG, "--set %s: not a variable name\n", sets[i]);
            goto fail;
        }
    }
    if (!pl_parse(p, err, n)) goto fail;
    for (int i = 0; i < p->n_vars; i++)
        if (p->vars[i].from_cli && !p->vars[i].in_file) { /* a --set of a name the file never defines is a typo */
            rl_errf(err, n, RL_ERR_ARG, "--set %s: %s defines no such variable\n", p->vars[i].name, p->path);
            goto fail;
        }
    return p;
fail:
    rl_pipeline_free(p);
    return NULL;
}

int rl_pipeline_n_steps(const rl_pipeline *p) { return p->n_steps; }
const char *rl_pipeline_step_name(const rl_pipeline *p, int i) { return i >= 0 && i < p->n_steps ? p->steps[i].name : NULL; }
const char *rl_pipeline_step_command(const rl_pipeline *p, int i) {
    return i >= 0 && i < p->n_steps ? p->steps[i].cmd : NULL;
}
int rl_pipeline_n_aims(const rl_pipeline *p) { return p->n_aims; }
const char *rl_pipeline_aim(const rl_pipeline *p, int i) { return i >= 0 && i < p->n_aims ? p->aims[i].text : NULL; }
const char *rl_pipeline_var(const rl_pipeline *p, const char *name) {
    pl_var *v = pl_var_find(p, name, strlen(name));
    return v ? v->value : NULL;
}

void rl_pipeline_list(const rl_pipeline *p, FILE *out) {
    for (int i = 0; i < p->n_steps; i++) fprintf(out, "%-12s rlhf %s\n", p->steps[i].name, p->steps[i].cmd);
    for (int i = 0; i < p->n_aims; i++) fprintf(out, "aim          %s\n", p->aims[i].text);
}

/* Splits a command into words in place: blanks separate words, and a
 * "double-quoted" part of a word may hold blanks (the quotes are removed). */
static int pl_split(char *s, char **argv, int max) {
    int n = 0;
    char *w = s; /* write position: words shrink as quotes are dropped */
    while (*s) {
        while (*s == ' ' || *s == '\t') s++;
        if (!*s) break;
        if (n == max - 1) return -1;
        argv[n++] = w;
        int quoted = 0;
        while (*s && (quoted || (*s != ' ' && *s != '\t'))) {
            if (*s == '"') quoted = !quoted, s++;
            else *w++ = *s++;
        }
        if (*s) s++;
        *w++ = 0;
    }
    argv[n] = NULL;
    return n;
}

/* ---- the results table ---------------------------------------------------------------------- */

/* "LABEL=FILE.json": the label into label and the parsed file returned
 * (NULL, with the first problem kept in err, when it cannot be read). */
static json_t *pl_labelled_json(const char *arg, char *label, size_t cap, char *err, size_t n, int *ok) {
    const char *eq = strchr(arg, '=');
    snprintf(label, cap, "%.*s", (int)(eq - arg), arg);
    json_error_t je;
    json_t *j = json_load_file(eq + 1, 0, &je);
    if (!j) {
        if (*ok) rl_errf(err, n, RL_ERR_IO, "table: %s:%d:%d: %s", eq + 1, je.line, je.column, je.text);
        *ok = 0;
    }
    return j;
}

static void pl_cell(char *buf, size_t n, json_t *obj, const char *key, int pct) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v)) snprintf(buf, n, "-");
    else if (pct) snprintf(buf, n, "%.1f%%", 100 * json_number_value(v));
    else snprintf(buf, n, "%.3f", json_number_value(v));
}

int rl_pipeline_table(int argc, char **argv, FILE *o, char *err, size_t n) {
    const char *out = NULL;
    rl_atomic_file af;
    FILE *md = NULL;
    int ok = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if ((strcmp(argv[i], "--policy") == 0 || strcmp(argv[i], "--score") == 0) && i + 1 < argc &&
                 strchr(argv[i + 1], '='))
            i++;
        else {
            rl_errf(err, n, RL_ERR_ARG, "table: unexpected '%s' (expected --out FILE.md, --policy LABEL=EVAL.json, "
                                        "--score LABEL=EVAL.json)", argv[i]);
            return 2;
        }
    }
    if (out) {
        char why[1024];
        if (rl_path_make_parent(out, why, sizeof why) != RL_OK || !(md = rl_atomic_open(&af, out, why, sizeof why))) {
            rl_errf(err, n, RL_ERR_IO, "table: %s", why);
            return 1;
        }
    }
    static const char *const pk[] = {"helpfulness", "benign_helpfulness", "arith_accuracy", "harmful_compliance",
                                     "needless_refusal", "kl_ref"};
    static const char *const ph[] = {"helpfulness", "benign help.", "arith. acc.", "harmful compl.",
                                     "needless ref.", "KL to SFT"};
    int first = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--policy") != 0) continue;
        char label[128];
        json_t *j = pl_labelled_json(argv[++i], label, sizeof label, err, n, &ok);
        if (!j) continue;
        if (first) {
            fprintf(o, "\n%-14s", "policy");
            for (int k = 0; k < 6; k++) fprintf(o, " %15s", ph[k]);
            fprintf(o, "\n");
            if (md) {
                fprintf(md, "| policy |");
                for (int k = 0; k < 6; k++) fprintf(md, " %s |", ph[k]);
                fprintf(md, "\n|---|---|---|---|---|---|---|\n");
            }
            first = 0;
        }
        fprintf(o, "%-14s", label);
        if (md) fprintf(md, "| %s |", label);
        for (int k = 0; k < 6; k++) {
            char c[32];
            pl_cell(c, sizeof c, j, pk[k], k < 5);
            fprintf(o, " %15s", c);
            if (md) fprintf(md, " %s |", c);
        }
        fprintf(o, "\n");
        if (md) fprintf(md, "\n");
        json_decref(j);
    }
    first = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--score") != 0) continue;
        char label[128];
        json_t *j = pl_labelled_json(argv[++i], label, sizeof label, err, n, &ok);
        if (!j) continue;
        if (first) {
            fprintf(o, "\n%-14s %15s %15s %15s %15s\n", "score model", "held-out pairs", "acc. (labels)",
                    "acc. (oracle)", "sign accuracy");
            if (md)
                fprintf(md, "\n| score model | held-out pairs | accuracy (labels) | accuracy (oracle) | sign accuracy |\n"
                            "|---|---|---|---|---|\n");
            first = 0;
        }
        char a[32], oa[32], sg[32], np[32];
        pl_cell(a, sizeof a, j, "accuracy", 1);
        pl_cell(oa, sizeof oa, j, "oracle_accuracy", 1);
        pl_cell(sg, sizeof sg, j, "sign_accuracy", 1);
        json_t *np_v = json_object_get(j, "n_pairs");
        snprintf(np, sizeof np, "%lld", json_is_integer(np_v) ? (long long)json_integer_value(np_v) : -1LL);
        fprintf(o, "%-14s %15s %15s %15s %15s\n", label, np, a, oa, sg);
        if (md) fprintf(md, "| %s | %s | %s | %s | %s |\n", label, np, a, oa, sg);
        json_decref(j);
    }
    fprintf(o, "\n");
    if (md) {
        char why[1024];
        if (rl_atomic_commit(&af, why, sizeof why) != RL_OK) {
            if (ok) rl_errf(err, n, RL_ERR_IO, "table: %s", why);
            ok = 0;
        }
    }
    return ok ? 0 : 1;
}

/* ---- aims ----------------------------------------------------------------------------------- */

/* One side of an aim: NUMBER, FILE.json:KEY or NUMBER * FILE.json:KEY. */
static int pl_aim_side(char *s, double *out, char *why, size_t n) {
    s = pl_trim(s);
    double coef = 1;
    char *star = strchr(s, '*');
    if (star) {
        *star = 0;
        char *end;
        coef = strtod(pl_trim(s), &end);
        if (end == s || *end) {
            snprintf(why, n, "'%s' before '*' is not a number", pl_trim(s));
            return 0;
        }
        s = pl_trim(star + 1);
    }
    char *end;
    double x = strtod(s, &end);
    if (end != s && !*end) {
        *out = coef * x;
        return 1;
    }
    char *colon = strrchr(s, ':');
    if (!colon) {
        snprintf(why, n, "'%s' is neither a number nor FILE.json:KEY", s);
        return 0;
    }
    *colon = 0;
    json_error_t je;
    json_t *j = json_load_file(s, 0, &je);
    if (!j) {
        snprintf(why, n, "%s: %s", s, je.text);
        return 0;
    }
    json_t *v = json_object_get(j, colon + 1);
    int ok = json_is_number(v);
    if (ok) *out = coef * json_number_value(v);
    else snprintf(why, n, "%s has no number '%s'", s, colon + 1);
    json_decref(j);
    return ok;
}

int rl_pipeline_check_aims(const rl_pipeline *p, FILE *out) {
    if (!p->n_aims) return 0;
    int failed = 0;
    fprintf(out, "aims (%s):\n", p->path);
    for (int i = 0; i < p->n_aims; i++) {
        char buf[PL_LINE], why[600] = "";
        snprintf(buf, sizeof buf, "%s", p->aims[i].text);
        const char *at;
        int op = pl_aim_op(buf, &at); /* found: the parser checked */
        double l = 0, r = 0;
        int ok = op >= 0;
        if (!ok) snprintf(why, sizeof why, "expected LEFT OP RIGHT with OP one of < <= > >= between blanks");
        if (ok) {
            buf[at - buf] = 0;
            ok = pl_aim_side(buf, &l, why, sizeof why) &&
                 pl_aim_side(buf + (at - buf) + 2 + strlen(pl_aim_ops[op]), &r, why, sizeof why);
        }
        int met = ok && (op == 0 ? l <= r : op == 1 ? l >= r : op == 2 ? l < r : l > r);
        if (!ok) fprintf(out, "  %s:%d: cannot check: %s\n", p->path, p->aims[i].line, why);
        else fprintf(out, "  [%s] %s   (%.4g %s %.4g)\n", met ? "met" : "NOT MET", p->aims[i].text, l, pl_aim_ops[op], r);
        failed += !met;
    }
    fprintf(out, "%d of %d aims met\n", p->n_aims - failed, p->n_aims);
    return failed;
}

/* ---- running ---------------------------------------------------------------------------------- */

static int pl_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Runs one step as a child process of program; returns its exit status
 * (127 when it cannot start, 128 + N when signal N killed it). */
static int pl_run_step(const char *program, char **argv, char *why, size_t n) {
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, n, "fork: %s", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        execv(program, argv);
        fprintf(stderr, "rlhf pipeline: cannot run %s: %s\n", program, strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            snprintf(why, n, "waitpid: %s", strerror(errno));
            return 1;
        }
    if (WIFSIGNALED(status)) {
        snprintf(why, n, "killed by signal %d", WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

/* Writes the .done marker of a finished step (whole or not at all). */
static void pl_mark_done(const char *path, const char *cmd, double secs) {
    rl_atomic_file af;
    char why[1024];
    FILE *d = rl_atomic_open(&af, path, why, sizeof why);
    if (!d) return; /* only a rerun's skip is lost: the step runs again */
    fprintf(d, "%s\n%.1f s\n", cmd, secs);
    rl_atomic_commit(&af, why, sizeof why);
}

int rl_pipeline_run(const rl_pipeline *p, const rl_pipeline_run_opts *o, char *err, size_t n) {
    FILE *out = o->out ? o->out : stdout;
    const char *from = o->from, *only = o->only;
    const char *names[] = {from, only};
    for (int k = 0; k < 2; k++) {
        if (!names[k]) continue;
        int found = 0;
        for (int i = 0; i < p->n_steps; i++) found |= strcmp(p->steps[i].name, names[k]) == 0;
        if (!found) {
            rl_errf(err, n, RL_ERR_ARG, "%s has no step '%s'", p->path, names[k]);
            return 2;
        }
    }
    if (!o->program) {
        rl_errf(err, n, RL_ERR_ARG, "no program to run the steps with");
        return 2;
    }
    const char *dir = pl_var_find(p, "out", 3)->value;
    char state[4096];
    snprintf(state, sizeof state, "%s/pipeline", dir);
    if (!rl_path_mkdirs(state)) {
        rl_errf(err, n, RL_ERR_IO, "%s: cannot create: %s", state, strerror(errno));
        return 1;
    }
    double t_all = rl_now(), spent[PL_MAX_STEPS] = {0};
    int ran[PL_MAX_STEPS] = {0}, started = from == NULL, rc = 0;
    for (int i = 0; i < p->n_steps; i++) {
        const pl_step *st = &p->steps[i];
        if (from && strcmp(st->name, from) == 0) started = 1;
        if (!started || (only && strcmp(st->name, only) != 0)) continue;
        char done_path[4200];
        snprintf(done_path, sizeof done_path, "%s/%s.done", state, st->name);
        /* the table is cheap and is what a rerun is for: it is always printed again */
        int is_table = strncmp(st->cmd, "table", 5) == 0 && (st->cmd[5] == ' ' || st->cmd[5] == 0);
        if (!from && !only && !is_table && pl_file_exists(done_path)) {
            fprintf(out, "== [%d/%d] %s: done earlier (%s), skipped\n", i + 1, p->n_steps, st->name, done_path);
            continue;
        }
        remove(done_path);
        char cmd[PL_LINE + 16], *words[PL_MAX_ARGS + 2];
        snprintf(cmd, sizeof cmd, "%s", st->cmd);
        int nw = pl_split(cmd, words + 1, PL_MAX_ARGS);
        if (nw < 1) {
            rl_errf(err, n, RL_ERR_ARG, "%s:%d: error: the step has more than %d words", p->path, st->line,
                    PL_MAX_ARGS - 2);
            rc = 2;
            break;
        }
        words[0] = (char *)o->program;
        /* a train step that was interrupted continues from its checkpoint */
        if (strcmp(words[1], "train") == 0) {
            const char *tout = NULL;
            for (int k = 2; k < nw; k++)
                if (strcmp(words[k], "--out") == 0 && k + 1 <= nw) tout = words[k + 1];
            char ck[4200];
            if (tout && snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", tout) > 0 && pl_file_exists(ck) &&
                nw < PL_MAX_ARGS - 1) {
                words[++nw] = "--resume";
                words[nw + 1] = NULL;
                fprintf(out, "== %s: %s holds a checkpoint: resuming it\n", st->name, ck);
            }
        }
        fprintf(out, "== [%d/%d] %s: rlhf %s\n", i + 1, p->n_steps, st->name, st->cmd);
        fflush(out);
        fflush(stdout);
        fflush(stderr);
        double t0 = rl_now();
        char why[1024] = "";
        int code;
        if (is_table) {
            code = rl_pipeline_table(nw, words + 1, out, why, sizeof why);
            if (code != 0) fprintf(stderr, "%s\n", why);
        } else {
            code = pl_run_step(o->program, words, why, sizeof why);
        }
        fflush(out);
        spent[i] = rl_now() - t0;
        ran[i] = 1;
        if (code != 0) {
            rl_errf(err, n, RL_ERR_ARG,
                    "%s:%d: step '%s' failed (exit status %d%s%s) after %.1f s; fix it and run the pipeline "
                    "again: finished steps are skipped",
                    p->path, st->line, st->name, code, why[0] && !is_table ? ": " : "", is_table ? "" : why, spent[i]);
            rc = 1;
            break;
        }
        pl_mark_done(done_path, st->cmd, spent[i]);
    }
    if (rc == 0) {
        fprintf(out, "\ntime per step:");
        for (int i = 0; i < p->n_steps; i++)
            if (ran[i]) fprintf(out, " %s %.0fs", p->steps[i].name, spent[i]);
        fprintf(out, "; total %.1f min\n", (rl_now() - t_all) / 60);
        int failed = only ? 0 : rl_pipeline_check_aims(p, out);
        if (failed && o->strict) rc = 3;
    }
    return rc;
}
