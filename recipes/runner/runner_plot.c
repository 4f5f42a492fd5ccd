/* recipes/runner/runner_plot.c - `rlhf plot RUN_DIR`: the curves of a training run.
 * Reads RUN_DIR/metrics.jsonl, writes its numeric fields as columns of
 * RUN_DIR/plot/metrics.dat and a gnuplot script RUN_DIR/plot/metrics.gp (one
 * panel per field, step on x, the recipe in the title), and runs gnuplot to
 * draw RUN_DIR/metrics.png and RUN_DIR/metrics.svg. The data and script stay,
 * so a figure can be restyled by editing the script and running gnuplot.
 */
#include "rl_file.h"
#include "rl_runner.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RP_MAX_COLS 128
#define RP_PATH 4096

/* Fields that are bookkeeping rather than curves. */
static int rp_skip(const char *k) {
    static const char *const skip[] = {"step", "epoch", "updates", "tokens", "step_s", "time", NULL};
    for (int i = 0; skip[i]; i++)
        if (!strcmp(k, skip[i])) return 1;
    return 0;
}

typedef struct rp_cols {
    int n;
    char *name[RP_MAX_COLS];
    int finite[RP_MAX_COLS]; /* points with a value */
    double lo[RP_MAX_COLS], hi[RP_MAX_COLS];
} rp_cols;

static int rp_col(rp_cols *c, const char *k) {
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->name[i], k)) return i;
    if (c->n == RP_MAX_COLS) return -1;
    c->name[c->n] = strdup(k);
    return c->name[c->n] ? c->n++ : -1;
}

/* gnuplot strings in double quotes: no quotes or backslashes inside. */
static void rp_clean(char *s) {
    for (; *s; s++)
        if (*s == '"' || *s == '\\' || (unsigned char)*s < 32) *s = '\'';
}

static int rp_has_prefix(const rp_cols *c, const char *pre) {
    for (int i = 0; i < c->n; i++)
        if (!strncmp(c->name[i], pre, strlen(pre))) return 1;
    return 0;
}

rl_status rl_runner_plot(const char *run_dir, char *err, size_t errlen) {
    char path[RP_PATH], dat[RP_PATH], gp[RP_PATH];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *in = fopen(path, "r");
    if (!in) return rl_errf(err, errlen, RL_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    /* pass 1: the columns, in the order they first appear */
    rp_cols cols = {0};
    json_t **rows = NULL;
    size_t n_rows = 0, cap = 0;
    char *line = NULL;
    size_t lcap = 0;
    ssize_t len;
    rl_status st = RL_OK;
    while ((len = getline(&line, &lcap, in)) > 0) {
        json_t *o = json_loadb(line, (size_t)len, 0, NULL);
        if (!o || !json_is_integer(json_object_get(o, "step"))) {
            json_decref(o);
            continue; /* a torn last line of a killed run */
        }
        if (n_rows == cap) {
            cap = cap ? 2 * cap : 256;
            json_t **nr = realloc(rows, sizeof(json_t *) * cap);
            if (!nr) {
                json_decref(o);
                st = rl_errf(err, errlen, RL_ERR_MEMORY, "%s: out of memory", path);
                break;
            }
            rows = nr;
        }
        rows[n_rows++] = o;
        const char *k;
        json_t *v;
        json_object_foreach(o, k, v) {
            if (rp_skip(k) || !(json_is_number(v) || json_is_null(v))) continue;
            int c = rp_col(&cols, k);
            double x = json_is_number(v) ? json_number_value(v) : NAN;
            if (c < 0 || !isfinite(x)) continue;
            if (!cols.finite[c]++ || x < cols.lo[c]) cols.lo[c] = x;
            if (cols.finite[c] == 1 || x > cols.hi[c]) cols.hi[c] = x;
        }
    }
    free(line);
    fclose(in);
    if (!st && n_rows == 0) st = rl_errf(err, errlen, RL_ERR_ARG, "%s: no steps to plot", path);
    /* lr and grad_norm repeat lr_NAME and grad_norm_NAME of the first trainable */
    int drop_lr = rp_has_prefix(&cols, "lr_"), drop_gn = rp_has_prefix(&cols, "grad_norm_");
    /* the recipe's losses and metrics first, then the optimizer's and speed */
    int shown[RP_MAX_COLS], n_shown = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int c = 0; c < cols.n; c++) {
            const char *k = cols.name[c];
            int runner = !strncmp(k, "lr", 2) || !strncmp(k, "grad_norm", 9) || !strcmp(k, "tokens_per_s");
            if (runner != pass || !cols.finite[c]) continue; /* gnuplot refuses a curve with no point */
            if ((drop_lr && !strcmp(k, "lr")) || (drop_gn && !strcmp(k, "grad_norm"))) continue;
            shown[n_shown++] = c;
        }
    if (!st && n_shown == 0) st = rl_errf(err, errlen, RL_ERR_ARG, "%s: no numeric fields to plot", path);
    snprintf(path, sizeof path, "%s/plot", run_dir);
    if (!st && mkdir(path, 0777) != 0 && errno != EEXIST)
        st = rl_errf(err, errlen, RL_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    /* the data: step, then one column per field; '?' where a step lacks it */
    snprintf(dat, sizeof dat, "%s/plot/metrics.dat", run_dir);
    rl_atomic_file af;
    FILE *f = st ? NULL : rl_atomic_open(&af, dat, err, errlen);
    if (!st && !f) st = RL_ERR_IO;
    if (f) {
        fprintf(f, "# step");
        for (int s = 0; s < n_shown; s++) fprintf(f, " %s", cols.name[shown[s]]);
        fprintf(f, "\n");
        for (size_t i = 0; i < n_rows; i++) {
            fprintf(f, "%lld", (long long)json_integer_value(json_object_get(rows[i], "step")));
            for (int s = 0; s < n_shown; s++) {
                json_t *v = json_object_get(rows[i], cols.name[shown[s]]);
                double x = v && json_is_number(v) ? json_number_value(v) : NAN;
                if (isfinite(x))
                    fprintf(f, " %.9g", x);
                else
                    fprintf(f, " ?");
            }
            fprintf(f, "\n");
        }
        st = rl_atomic_commit(&af, err, errlen);
    }
    /* the title: the recipe and kind from run.json, and the directory */
    char title[1024];
    snprintf(path, sizeof path, "%s/run.json", run_dir);
    json_t *run = json_load_file(path, 0, NULL);
    const char *rname = run ? json_string_value(json_object_get(run, "recipe_name")) : NULL;
    const char *kind = run ? json_string_value(json_object_get(run, "kind")) : NULL;
    snprintf(title, sizeof title, "%s%s%s%s: %s", rname ? rname : "training run", kind ? " (" : "", kind ? kind : "",
             kind ? ")" : "", run_dir);
    json_decref(run);
    rp_clean(title);
    /* the script: one multiplot per output, drawn from the run directory */
    snprintf(gp, sizeof gp, "%s/plot/metrics.gp", run_dir);
    f = st ? NULL : rl_atomic_open(&af, gp, err, errlen);
    if (!st && !f) st = RL_ERR_IO;
    if (f) {
        int ncol = 1;
        while (ncol * ncol < n_shown) ncol++;
        int nrow = (n_shown + ncol - 1) / ncol;
        fprintf(f, "# %s/plot/metrics.gp - written by `rlhf plot`; run from %s: gnuplot plot/metrics.gp\n", run_dir,
                run_dir);
        fprintf(f, "set datafile missing \"?\"\nset grid\nunset key\nset xlabel \"step\"\nset format y \"%%g\"\n");
        /* rlhf plot passes temporary output names (-e), renamed when gnuplot succeeds */
        fprintf(f, "if (!exists(\"out_png\")) out_png = \"metrics.png\"\n"
                   "if (!exists(\"out_svg\")) out_svg = \"metrics.svg\"\n");
        static const char *const terms[2][2] = {{"pngcairo noenhanced font \"sans,9\"", "out_png"},
                                                {"svg noenhanced font \"sans,9\"", "out_svg"}};
        for (int t = 0; t < 2; t++) {
            fprintf(f, "set terminal %s size %d,%d\nset output %s\n", terms[t][0], 420 * ncol, 300 * nrow + 40,
                    terms[t][1]);
            fprintf(f, "set multiplot layout %d,%d title \"%s\" font \"sans,12\"\n", nrow, ncol, title);
            for (int s = 0; s < n_shown; s++) {
                char name[256];
                snprintf(name, sizeof name, "%s", cols.name[shown[s]]);
                rp_clean(name);
                int pts = cols.finite[shown[s]];
                double lo = cols.lo[shown[s]], hi = cols.hi[shown[s]];
                /* a constant curve (a fixed lr) gets a range around it, not a warning */
                if (lo == hi)
                    fprintf(f, "set yrange [%.9g:%.9g]\n", lo - (fabs(lo) * 0.1 + 1e-9), hi + (fabs(hi) * 0.1 + 1e-9));
                else
                    fprintf(f, "set autoscale y\n");
                fprintf(f, "set title \"%s\"\nplot \"plot/metrics.dat\" using 1:%d with %s lw 1.5 lc rgb \"#1f77b4\"\n",
                        name, s + 2, pts > 1 ? "lines" : "points pt 7");
            }
            fprintf(f, "unset multiplot\nset output\n");
        }
        st = rl_atomic_commit(&af, err, errlen);
    }
    for (size_t i = 0; i < n_rows; i++) json_decref(rows[i]);
    free(rows);
    for (int c = 0; c < cols.n; c++) free(cols.name[c]);
    if (st) return st;
    /* the pictures go to temporaries next to their paths, renamed onto them
     * when gnuplot has drawn both */
    rl_atomic_file img[2];
    const char *const img_name[2] = {"metrics.png", "metrics.svg"};
    char setv[2][sizeof img[0].tmp + 16];
    for (int t = 0; t < 2; t++) {
        snprintf(path, sizeof path, "%s/%s", run_dir, img_name[t]);
        if (!rl_atomic_open(&img[t], path, err, errlen)) {
            if (t) rl_atomic_abort(&img[0]);
            return RL_ERR_IO;
        }
        rl_atomic_close(&img[t]);
        /* gnuplot runs in run_dir: the temporary by its base name */
        const char *base = strrchr(img[t].tmp, '/');
        snprintf(setv[t], sizeof setv[t], "out_%s=\"%s\"", t ? "svg" : "png", base ? base + 1 : img[t].tmp);
    }
    /* gnuplot, in the run directory so that the script's paths are relative */
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) st = rl_errf(err, errlen, RL_ERR_IO, "cannot start gnuplot: %s", strerror(errno));
    if (pid == 0) {
        if (chdir(run_dir) != 0) _exit(126);
        execlp("gnuplot", "gnuplot", "-e", setv[0], "-e", setv[1], "plot/metrics.gp", (char *)NULL);
        _exit(127);
    }
    int ws = 0;
    while (pid > 0 && waitpid(pid, &ws, 0) < 0 && errno == EINTR) {}
    if (!st && WIFEXITED(ws) && WEXITSTATUS(ws) == 127)
        st = rl_errf(err, errlen, RL_ERR_IO,
                     "gnuplot was not found: install it (apt-get install gnuplot-nox); the data and script are in "
                     "%s/plot/", run_dir);
    else if (!st && (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0))
        st = rl_errf(err, errlen, RL_ERR_IO, "gnuplot failed on %s (see its messages above)", gp);
    for (int t = 0; t < 2; t++) {
        if (st) rl_atomic_abort(&img[t]);
        else st = rl_atomic_commit(&img[t], err, errlen);
    }
    return st;
}
