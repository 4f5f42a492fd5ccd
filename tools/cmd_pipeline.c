/* tools/cmd_pipeline.c - `rlhf pipeline FILE`: runs a pipeline file, a list
 * of rlhf commands that chain the stages of RLHF (data -> SFT -> reward and
 * cost models -> PPO-KL -> Safe RLHF -> evaluation), then prints the results
 * table and checks the file's aims. recipes/pipelines/safe_rlhf_demo.pipeline is the
 * main example; docs/recipes.md#pipelines describes the format:
 *
 *   # comment
 *   let NAME = VALUE              a variable; ${NAME} is replaced in later lines;
 *                                 --set NAME=VALUE on the command line wins
 *   step NAME: COMMAND ARGS...    an rlhf command (train, eval, data, plot, graph, ...)
 *                                 or the built-in `table` (below); "quotes" group words
 *   aim LEFT OP RIGHT             checked at the end; OP is < <= > >= ; each side is a
 *                                 number, FILE.json:KEY, or NUMBER * FILE.json:KEY
 *
 * Steps run in order, each as a child process of this same binary, so a
 * crash or leak in one step cannot disturb the next. The variable `out` is
 * the pipeline's directory: a finished step leaves out/pipeline/NAME.done and
 * is skipped when the pipeline runs again (but `table` steps, which are cheap,
 * always print again); a `train` step interrupted earlier
 * finds its checkpoint and continues with --resume. `--from NAME` reruns from
 * that step on.
 *
 *   table --out FILE.md [--policy LABEL=EVAL.json ...] [--score LABEL=EVAL.json ...]
 * prints (and writes as Markdown) one row per policy: helpfulness, benign
 * helpfulness, arithmetic accuracy, harmful-compliance rate, needless-refusal
 * rate, KL to the reference; and one row per reward/cost model: held-out
 * accuracy against the oracle and the cost model's sign accuracy. The JSON
 * files are what `rlhf eval --json` writes.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rl_data.h"

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

typedef struct pl_file {
    const char *path;
    pl_var vars[PL_MAX_VARS];
    int n_vars;
    pl_step steps[PL_MAX_STEPS];
    int n_steps;
    pl_aim aims[PL_MAX_AIMS];
    int n_aims;
} pl_file;

static char *pl_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static char *pl_trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r' || s[n - 1] == '\n')) s[--n] = 0;
    return s;
}

static pl_var *pl_var_find(pl_file *f, const char *name, size_t len) {
    for (int i = 0; i < f->n_vars; i++)
        if (strlen(f->vars[i].name) == len && strncmp(f->vars[i].name, name, len) == 0) return &f->vars[i];
    return NULL;
}

static int pl_name_ok(const char *s) {
    if (!*s) return 0;
    for (const char *p = s; *p; p++)
        if (!(*p == '_' || *p == '-' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (p > s && *p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

/* Replaces ${NAME} in src; 0 and a message naming file:line:col for an
 * undefined variable or a result that does not fit. */
static int pl_expand(pl_file *f, const char *src, int line, int col0, char *out, size_t n) {
    size_t k = 0;
    for (const char *p = src; *p;) {
        if (p[0] == '$' && p[1] == '{') {
            const char *e = strchr(p + 2, '}');
            if (!e) {
                fprintf(stderr, "%s:%d:%d: error: '${' without a closing '}'\n", f->path, line,
                        col0 + (int)(p - src));
                return 0;
            }
            pl_var *v = pl_var_find(f, p + 2, (size_t)(e - p - 2));
            if (!v) {
                fprintf(stderr, "%s:%d:%d: error: undefined variable '%.*s' (define it with `let %.*s = ...`)\n",
                        f->path, line, col0 + (int)(p - src), (int)(e - p - 2), p + 2, (int)(e - p - 2), p + 2);
                return 0;
            }
            size_t vl = strlen(v->value);
            if (k + vl >= n) goto too_long;
            memcpy(out + k, v->value, vl);
            k += vl;
            p = e + 1;
            continue;
        }
        if (k + 1 >= n) goto too_long;
        out[k++] = *p++;
    }
    out[k] = 0;
    return 1;
too_long:
    fprintf(stderr, "%s:%d: error: the line is longer than %zu bytes after expanding variables\n", f->path, line, n);
    return 0;
}

static int pl_set_var(pl_file *f, const char *name, const char *value, int from_cli) {
    pl_var *v = pl_var_find(f, name, strlen(name));
    if (v && !from_cli) v->in_file = 1;
    if (v) {
        if (v->from_cli && !from_cli) return 1; /* --set wins over the file */
        free(v->value);
        v->value = pl_strdup(value);
        v->from_cli = from_cli;
        return v->value != NULL;
    }
    if (f->n_vars == PL_MAX_VARS) return 0;
    v = &f->vars[f->n_vars++];
    v->name = pl_strdup(name);
    v->value = pl_strdup(value);
    v->from_cli = from_cli;
    v->in_file = !from_cli;
    return v->name && v->value;
}

static void pl_file_free(pl_file *f) {
    for (int i = 0; i < f->n_vars; i++) free(f->vars[i].name), free(f->vars[i].value);
    for (int i = 0; i < f->n_steps; i++) free(f->steps[i].name), free(f->steps[i].cmd);
    for (int i = 0; i < f->n_aims; i++) free(f->aims[i].text);
}

static int pl_parse(pl_file *f) {
    FILE *in = fopen(f->path, "r");
    if (!in) {
        fprintf(stderr, "rlhf pipeline: %s: cannot open: %s\n", f->path, strerror(errno));
        return 0;
    }
    char buf[PL_LINE], exp[PL_LINE];
    int line = 0, ok = 1;
    while (ok && fgets(buf, sizeof buf, in)) {
        line++;
        if (!strchr(buf, '\n') && !feof(in)) {
            fprintf(stderr, "%s:%d: error: line longer than %d bytes\n", f->path, line, PL_LINE - 2);
            ok = 0;
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
        int col = (int)(s - buf) + 1;
        if (strncmp(s, "let ", 4) == 0) {
            char *eq = strchr(s, '=');
            if (!eq) {
                fprintf(stderr, "%s:%d:%d: error: expected `let NAME = VALUE`\n", f->path, line, col);
                ok = 0;
                break;
            }
            *eq = 0;
            char *name = pl_trim(s + 4), *val = pl_trim(eq + 1);
            if (!pl_name_ok(name)) {
                fprintf(stderr, "%s:%d:%d: error: '%s' is not a variable name (letters, digits, _ and -)\n",
                        f->path, line, col + 4, name);
                ok = 0;
                break;
            }
            ok = pl_expand(f, val, line, (int)(val - buf) + 1, exp, sizeof exp) && pl_set_var(f, name, exp, 0);
        } else if (strncmp(s, "step ", 5) == 0) {
            char *colon = strchr(s, ':');
            if (!colon) {
                fprintf(stderr, "%s:%d:%d: error: expected `step NAME: COMMAND ...`\n", f->path, line, col);
                ok = 0;
                break;
            }
            *colon = 0;
            char *name = pl_trim(s + 5), *cmd = pl_trim(colon + 1);
            if (!pl_name_ok(name) || !*cmd) {
                fprintf(stderr, "%s:%d:%d: error: %s\n", f->path, line, col,
                        !*cmd ? "the step has no command" : "a step name is letters, digits, _ and -");
                ok = 0;
                break;
            }
            for (int i = 0; i < f->n_steps; i++)
                if (strcmp(f->steps[i].name, name) == 0) {
                    fprintf(stderr, "%s:%d:%d: error: step '%s' is already defined at line %d\n", f->path, line,
                            col + 5, name, f->steps[i].line);
                    ok = 0;
                }
            if (!ok) break;
            if (f->n_steps == PL_MAX_STEPS) {
                fprintf(stderr, "%s:%d: error: more than %d steps\n", f->path, line, PL_MAX_STEPS);
                ok = 0;
                break;
            }
            if (!pl_expand(f, cmd, line, (int)(cmd - buf) + 1, exp, sizeof exp)) {
                ok = 0;
                break;
            }
            pl_step *st = &f->steps[f->n_steps++];
            st->name = pl_strdup(name);
            st->cmd = pl_strdup(exp);
            st->line = line;
        } else if (strncmp(s, "aim ", 4) == 0) {
            if (f->n_aims == PL_MAX_AIMS ||
                !pl_expand(f, pl_trim(s + 4), line, col + 4, exp, sizeof exp)) {
                ok = 0;
                break;
            }
            f->aims[f->n_aims].text = pl_strdup(exp);
            f->aims[f->n_aims++].line = line;
        } else {
            fprintf(stderr, "%s:%d:%d: error: expected `let`, `step` or `aim`, got '%.20s'\n", f->path, line, col, s);
            ok = 0;
        }
    }
    fclose(in);
    if (ok && f->n_steps == 0) {
        fprintf(stderr, "%s: error: the pipeline has no steps\n", f->path);
        ok = 0;
    }
    if (ok && !pl_var_find(f, "out", 3)) {
        fprintf(stderr, "%s: error: the pipeline must define its directory: let out = DIR\n", f->path);
        ok = 0;
    }
    return ok;
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

static json_t *pl_load_json(const char *path) {
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    if (!j) fprintf(stderr, "rlhf pipeline: %s:%d:%d: %s\n", path, je.line, je.column, je.text);
    return j;
}

/* "LABEL=FILE.json": the label into label, the parsed file returned (NULL
 * and *ok = 0 when it cannot be read). */
static json_t *pl_labelled_json(const char *arg, char *label, size_t n, int *ok) {
    const char *eq = strchr(arg, '=');
    snprintf(label, n, "%.*s", (int)(eq - arg), arg);
    json_t *j = pl_load_json(eq + 1);
    if (!j) *ok = 0;
    return j;
}

static void pl_cell(char *buf, size_t n, json_t *obj, const char *key, int pct) {
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v)) snprintf(buf, n, "-");
    else if (pct) snprintf(buf, n, "%.1f%%", 100 * json_number_value(v));
    else snprintf(buf, n, "%.3f", json_number_value(v));
}

static int pl_table(int argc, char **argv) {
    const char *out = NULL;
    FILE *md = NULL;
    int ok = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out = argv[++i];
        else if ((strcmp(argv[i], "--policy") == 0 || strcmp(argv[i], "--score") == 0) && i + 1 < argc && strchr(argv[i + 1], '='))
            i++;
        else {
            fprintf(stderr, "table: unexpected '%s' (expected --out FILE.md, --policy LABEL=EVAL.json, "
                            "--score LABEL=EVAL.json)\n", argv[i]);
            return 2;
        }
    }
    if (out && !(md = fopen(out, "w"))) {
        fprintf(stderr, "table: %s: cannot write: %s\n", out, strerror(errno));
        return 1;
    }
    static const char *const pk[] = {"helpfulness", "benign_helpfulness", "arith_accuracy", "harmful_compliance",
                                     "needless_refusal", "kl_ref"};
    static const char *const ph[] = {"helpfulness", "benign help.", "arith. acc.", "harmful compl.",
                                     "needless ref.", "KL to SFT"};
    int first = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--policy") != 0) continue;
        char label[128];
        json_t *j = pl_labelled_json(argv[++i], label, sizeof label, &ok);
        if (!j) continue;
        if (first) {
            printf("\n%-14s", "policy");
            for (int k = 0; k < 6; k++) printf(" %15s", ph[k]);
            printf("\n");
            if (md) {
                fprintf(md, "| policy |");
                for (int k = 0; k < 6; k++) fprintf(md, " %s |", ph[k]);
                fprintf(md, "\n|---|---|---|---|---|---|---|\n");
            }
            first = 0;
        }
        printf("%-14s", label);
        if (md) fprintf(md, "| %s |", label);
        for (int k = 0; k < 6; k++) {
            char c[32];
            pl_cell(c, sizeof c, j, pk[k], k < 5);
            printf(" %15s", c);
            if (md) fprintf(md, " %s |", c);
        }
        printf("\n");
        if (md) fprintf(md, "\n");
        json_decref(j);
    }
    first = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--score") != 0) continue;
        char label[128];
        json_t *j = pl_labelled_json(argv[++i], label, sizeof label, &ok);
        if (!j) continue;
        if (first) {
            printf("\n%-14s %15s %15s %15s %15s\n", "score model", "held-out pairs", "acc. (labels)",
                   "acc. (oracle)", "sign accuracy");
            if (md) fprintf(md, "\n| score model | held-out pairs | accuracy (labels) | accuracy (oracle) | sign accuracy |\n"
                                "|---|---|---|---|---|\n");
            first = 0;
        }
        char a[32], o[32], sg[32], np[32];
        pl_cell(a, sizeof a, j, "accuracy", 1);
        pl_cell(o, sizeof o, j, "oracle_accuracy", 1);
        pl_cell(sg, sizeof sg, j, "sign_accuracy", 1);
        json_t *n = json_object_get(j, "n_pairs");
        snprintf(np, sizeof np, "%lld", json_is_integer(n) ? (long long)json_integer_value(n) : -1LL);
        printf("%-14s %15s %15s %15s %15s\n", label, np, a, o, sg);
        if (md) fprintf(md, "| %s | %s | %s | %s | %s |\n", label, np, a, o, sg);
        json_decref(j);
    }
    printf("\n");
    if (md && fclose(md) != 0) {
        fprintf(stderr, "table: %s: write failed\n", out);
        ok = 0;
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

/* Checks the aims; returns the number not met (an aim that cannot be read counts). */
static int pl_check_aims(pl_file *f) {
    if (!f->n_aims) return 0;
    int failed = 0;
    printf("aims (%s):\n", f->path);
    for (int i = 0; i < f->n_aims; i++) {
        char buf[PL_LINE], why[600] = "";
        snprintf(buf, sizeof buf, "%s", f->aims[i].text);
        static const char *const ops[] = {"<=", ">=", "<", ">"};
        char *at = NULL;
        int op = -1;
        for (int k = 0; k < 4 && !at; k++) {
            /* an operator surrounded by blanks, so paths and keys may hold '<' or '>' never */
            char pat[6];
            snprintf(pat, sizeof pat, " %s ", ops[k]);
            if ((at = strstr(buf, pat))) op = k;
        }
        double l = 0, r = 0;
        int ok = at != NULL;
        if (!ok) snprintf(why, sizeof why, "expected LEFT OP RIGHT with OP one of < <= > >= between blanks");
        if (ok) {
            *at = 0;
            ok = pl_aim_side(buf, &l, why, sizeof why) && pl_aim_side(at + 2 + strlen(ops[op]), &r, why, sizeof why);
        }
        int met = ok && (op == 0 ? l <= r : op == 1 ? l >= r : op == 2 ? l < r : l > r);
        if (!ok) printf("  %s:%d: cannot check: %s\n", f->path, f->aims[i].line, why);
        else printf("  [%s] %s   (%.4g %s %.4g)\n", met ? "met" : "NOT MET", f->aims[i].text, l, ops[op], r);
        failed += !met;
    }
    printf("%d of %d aims met\n", f->n_aims - failed, f->n_aims);
    return failed;
}

/* ---- running ---------------------------------------------------------------------------------- */

static int pl_file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Runs one step as a child process of this binary; returns its exit status. */
static int pl_run_step(const char *self, char **argv) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "rlhf pipeline: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        execv(self, argv);
        fprintf(stderr, "rlhf pipeline: cannot run %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return 1;
    if (WIFSIGNALED(status)) {
        fprintf(stderr, "rlhf pipeline: the step was killed by signal %d\n", WTERMSIG(status));
        return 128 + WTERMSIG(status);
    }
    return WEXITSTATUS(status);
}

static void pl_usage(FILE *f) {
    fprintf(f, "usage: rlhf pipeline FILE [--set NAME=VALUE ...] [--from STEP] [--only STEP] [--strict] [--list]\n"
               "Runs the steps of a pipeline file (recipes/pipelines/safe_rlhf_demo.pipeline) in order, each an rlhf\n"
               "command, then checks its aims. Finished steps leave OUT/pipeline/STEP.done and are skipped\n"
               "when the pipeline runs again (--from STEP reruns from STEP on); an interrupted train step\n"
               "resumes from its checkpoint. --set overrides a `let` variable; --strict exits with status 3\n"
               "when an aim is not met; --list prints the expanded steps without running them.\n"
               "       rlhf pipeline table --out FILE.md --policy LABEL=EVAL.json ... --score LABEL=EVAL.json ...\n");
}

int rl_cmd_pipeline(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "table") == 0) return pl_table(argc - 1, argv + 1);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        pl_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    static pl_file f;
    memset(&f, 0, sizeof f);
    f.path = argv[1];
    const char *from = NULL, *only = NULL;
    int strict = 0, list = 0, rc = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc) {
            char *eq = strchr(argv[++i], '=');
            if (!eq || eq == argv[i]) {
                fprintf(stderr, "rlhf pipeline: --set expects NAME=VALUE, got '%s'\n", argv[i]);
                rc = 2;
                goto done;
            }
            *eq = 0;
            int ok = pl_name_ok(argv[i]) && pl_set_var(&f, argv[i], eq + 1, 1);
            *eq = '=';
            if (!ok) {
                fprintf(stderr, "rlhf pipeline: --set %s: not a variable name\n", argv[i]);
                rc = 2;
                goto done;
            }
        } else if (strcmp(argv[i], "--from") == 0 && i + 1 < argc) from = argv[++i];
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--strict") == 0) strict = 1;
        else if (strcmp(argv[i], "--list") == 0) list = 1;
        else {
            fprintf(stderr, "rlhf pipeline: unknown option '%s'\n", argv[i]);
            pl_usage(stderr);
            rc = 2;
            goto done;
        }
    }
    if (!pl_parse(&f)) {
        rc = 2;
        goto done;
    }
    for (int i = 0; i < f.n_vars; i++)
        if (f.vars[i].from_cli && !f.vars[i].in_file) { /* a --set of a name the file never defines is a typo */
            fprintf(stderr, "rlhf pipeline: --set %s: %s defines no such variable\n", f.vars[i].name, f.path);
            rc = 2;
            goto done;
        }
    const char *names[] = {from, only};
    for (int k = 0; k < 2; k++) {
        if (!names[k]) continue;
        int found = 0;
        for (int i = 0; i < f.n_steps; i++) found |= strcmp(f.steps[i].name, names[k]) == 0;
        if (!found) {
            fprintf(stderr, "rlhf pipeline: %s has no step '%s'\n", f.path, names[k]);
            rc = 2;
            goto done;
        }
    }
    if (list) {
        for (int i = 0; i < f.n_steps; i++) printf("%-12s rlhf %s\n", f.steps[i].name, f.steps[i].cmd);
        for (int i = 0; i < f.n_aims; i++) printf("aim          %s\n", f.aims[i].text);
        goto done;
    }
    const char *out = pl_var_find(&f, "out", 3)->value;
    char state[4096], self[4096];
    snprintf(state, sizeof state, "%s/pipeline", out);
    if (!rl_path_mkdirs(state)) {
        fprintf(stderr, "rlhf pipeline: %s: cannot create: %s\n", state, strerror(errno));
        rc = 1;
        goto done;
    }
    ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
    if (sl <= 0) {
        fprintf(stderr, "rlhf pipeline: cannot find this program (/proc/self/exe): %s\n", strerror(errno));
        rc = 1;
        goto done;
    }
    self[sl] = 0;
    double t_all = rl_now(), spent[PL_MAX_STEPS] = {0};
    int ran[PL_MAX_STEPS] = {0}, started = from == NULL;
    for (int i = 0; i < f.n_steps; i++) {
        pl_step *st = &f.steps[i];
        if (from && strcmp(st->name, from) == 0) started = 1;
        if (!started || (only && strcmp(st->name, only) != 0)) continue;
        char done_path[4200];
        snprintf(done_path, sizeof done_path, "%s/%s.done", state, st->name);
        /* the table is cheap and is what a rerun is for: it is always printed again */
        int is_table = strncmp(st->cmd, "table", 5) == 0 && (st->cmd[5] == ' ' || st->cmd[5] == 0);
        if (!from && !only && !is_table && pl_file_exists(done_path)) {
            printf("== [%d/%d] %s: done earlier (%s), skipped\n", i + 1, f.n_steps, st->name, done_path);
            continue;
        }
        remove(done_path);
        char cmd[PL_LINE + 16], *words[PL_MAX_ARGS + 2];
        snprintf(cmd, sizeof cmd, "%s", st->cmd);
        int n = pl_split(cmd, words + 1, PL_MAX_ARGS);
        if (n < 1) {
            fprintf(stderr, "%s:%d: error: too many words in the step\n", f.path, st->line);
            rc = 2;
            break;
        }
        words[0] = self;
        /* a train step that was interrupted continues from its checkpoint */
        if (strcmp(words[1], "train") == 0) {
            const char *tout = NULL;
            for (int k = 2; k < n; k++)
                if (strcmp(words[k], "--out") == 0 && k + 1 <= n) tout = words[k + 1];
            char ck[4200];
            if (tout && snprintf(ck, sizeof ck, "%s/checkpoint.safetensors", tout) > 0 && pl_file_exists(ck) &&
                n < PL_MAX_ARGS - 1) {
                words[++n] = "--resume";
                words[n + 1] = NULL;
                printf("== %s: %s holds a checkpoint: resuming it\n", st->name, ck);
            }
        }
        printf("== [%d/%d] %s: rlhf %s\n", i + 1, f.n_steps, st->name, st->cmd);
        double t0 = rl_now();
        int code = strcmp(words[1], "table") == 0 ? (fflush(stdout), pl_table(n, words + 1))
                                                    : pl_run_step(self, words);
        spent[i] = rl_now() - t0;
        ran[i] = 1;
        if (code != 0) {
            fprintf(stderr, "%s:%d: step '%s' failed (exit status %d) after %.1f s; fix it and run the pipeline "
                            "again: finished steps are skipped\n", f.path, st->line, st->name, code, spent[i]);
            rc = 1;
            break;
        }
        FILE *d = fopen(done_path, "w");
        if (d) {
            fprintf(d, "%s\n%.1f s\n", st->cmd, spent[i]);
            fclose(d);
        }
    }
    if (rc == 0) {
        printf("\ntime per step:");
        for (int i = 0; i < f.n_steps; i++)
            if (ran[i]) printf(" %s %.0fs", f.steps[i].name, spent[i]);
        printf("; total %.1f min\n", (rl_now() - t_all) / 60);
        int failed = only ? 0 : pl_check_aims(&f);
        if (failed && strict) rc = 3;
    }
done:
    pl_file_free(&f);
    return rc;
}
