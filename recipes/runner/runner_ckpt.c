/* recipes/runner/runner_ckpt.c - the training checkpoint: the complete state of a
 * run (trainable models, recipe params, optimizer moments and step counts,
 * random streams, stateful natives, the data cursor) in one safetensors
 * file, written atomically, and read back by --resume so that a resumed run
 * continues bit for bit. Also the final exports (OUT/MODEL/, params.json).
 * The layout is documented in rl_runner.h.
 */
#include "runner_int.h"

#include "rl_checkpoint.h"
#include "rl_safetensors.h"

#include <dirent.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RN_CKPT "checkpoint.safetensors"
#define RN_FORMAT "rlhf-train-state"

uint64_t rn_hash(const void *data, size_t n) {
    /* FNV-1a, 64 bits */
    const unsigned char *p = data;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

/* ---- saving --------------------------------------------------------------------------- */

/* Host copies the writer points at until the write is done. */
typedef struct rn_bufs {
    void **v;
    int n, cap;
} rn_bufs;

static void *rn_keep(rn_bufs *b, void *p) {
    if (!p) return NULL;
    if (b->n == b->cap) {
        int cap = b->cap ? 2 * b->cap : 64;
        void **v = realloc(b->v, sizeof(void *) * (size_t)cap);
        if (!v) {
            free(p);
            return NULL;
        }
        b->v = v, b->cap = cap;
    }
    return b->v[b->n++] = p;
}

static void rn_bufs_free(rn_bufs *b) {
    for (int i = 0; i < b->n; i++) free(b->v[i]);
    free(b->v);
}

/* Adds a tensor's current contents under name. */
static rl_status rn_add_tensor(rn *r, rl_st_writer *w, rn_bufs *b, const char *name, const rl_tensor *t) {
    size_t nb = (size_t)t->numel * rl_dtype_size(t->dtype);
    void *h = rn_keep(b, malloc(nb ? nb : 1));
    if (!h) return rn_fail(r, RL_ERR_MEMORY, "checkpoint: out of memory");
    rl_status st = rl_tensor_read(r->ctx, t, h, nb);
    if (st) return rn_fail(r, st, "checkpoint: reading '%s': %s", name, rl_ctx_error(r->ctx));
    return rl_st_writer_add(w, name, t->dtype == RL_F64 ? RL_ST_F64 : RL_ST_F32, t->ndim, t->shape, h, nb);
}

static char *rn_json_string(json_t *j) {
    char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
    json_decref(j);
    return s;
}

static char *rn_sets_json(const rl_runner_cfg *c) {
    json_t *a = json_array();
    for (int i = 0; i < c->n_set; i++) json_array_append_new(a, json_string(c->set[i]));
    return rn_json_string(a);
}

static char *rn_models_json(const rn *r) {
    json_t *o = json_object();
    for (int i = 0; i < r->n_models; i++) {
        const rn_model *m = &r->models[i];
        json_t *cfg;
        if (m->m->gpt2) { /* the fields GPT-2 checkpoints have always recorded */
            const rl_gpt2_config *g = &m->m->gpt2->cfg;
            cfg = json_pack("{sIsIsIsIsI}", "vocab", (json_int_t)g->vocab, "n_ctx", (json_int_t)g->n_ctx, "n_layer",
                            (json_int_t)g->n_layer, "n_head", (json_int_t)g->n_head, "n_embd", (json_int_t)g->n_embd);
        } else {
            const rl_llama_config *g = &m->m->llama->cfg;
            cfg = json_pack("{sssIsIsIsIsIsIsIsIsb}", "family", rl_model_family_name(m->m), "vocab",
                            (json_int_t)g->vocab, "n_ctx", (json_int_t)g->max_pos, "n_layer", (json_int_t)g->n_layer,
                            "n_head", (json_int_t)g->n_head, "n_kv_head", (json_int_t)g->n_kv_head, "head_dim",
                            (json_int_t)g->head_dim, "hidden", (json_int_t)g->hidden, "intermediate",
                            (json_int_t)g->intermediate, "tie", g->tie);
        }
        json_object_set_new(o, m->name,
                            json_pack("{sssbsoso}", "kind", rl_recipe_model_kind_name(m->kind), "trainable",
                                      m->trainable, "init", m->init ? json_string(m->init) : json_null(), "config",
                                      cfg));
    }
    return rn_json_string(o);
}

static char *rn_hypers_json(const rn *r) {
    json_t *o = json_object();
    for (int i = 0; i < rl_recipe_n_hypers(r->p); i++) {
        const rl_recipe_hyper_info *h = rl_recipe_hyper_at(r->p, i);
        json_object_set_new(o, h->name,
                            h->str             ? json_string(h->str)
                            : isfinite(h->num) ? json_real(h->num)
                                               : json_null());
    }
    return rn_json_string(o);
}

static rl_status rn_meta(rl_st_writer *w, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static rl_status rn_meta(rl_st_writer *w, const char *key, const char *fmt, ...) {
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return rl_st_writer_set_meta(w, key, buf);
}

rl_status rn_ckpt_save(rn *r) {
    const rl_runner_cfg *c = r->cfg;
    rl_st_writer *w = rl_st_writer_new();
    rn_bufs b = {0};
    char key[1024], path[RN_PATH];
    rl_status st = w ? RL_OK : rn_fail(r, RL_ERR_MEMORY, "checkpoint: out of memory");
    for (int i = 0; !st && i < r->n_train; i++) {
        const rn_train *t = &r->train[i];
        for (int k = 0; !st && k < t->n; k++) {
            st = rn_add_tensor(r, w, &b, t->keys[k], t->tensors[k]);
            for (int s = 0; !st && s < rl_optim_n_state(t->opt); s++) {
                snprintf(key, sizeof key, "optim/%s.%s", t->keys[k], rl_optim_state_name(t->opt, s));
                st = rn_add_tensor(r, w, &b, key, rl_optim_state(t->opt, k, s));
            }
        }
        snprintf(key, sizeof key, "optim.%s.step", t->name);
        if (!st) st = rn_meta(w, key, "%" PRId64, rl_optim_step_count(t->opt));
        snprintf(key, sizeof key, "optim.%s.skipped", t->name);
        if (!st) st = rn_meta(w, key, "%" PRId64, t->skipped);
    }
    for (int i = 0; !st && i < rl_recipe_n_states(r->p); i++) {
        double *v = NULL;
        size_t n = 0;
        st = rl_recipe_state_save(r->p, i, &v, &n);
        if (st || !v) continue;
        rn_keep(&b, v);
        snprintf(key, sizeof key, "state/%s", rl_recipe_state_name(r->p, i));
        st = rl_st_writer_add(w, key, RL_ST_F64, 1, (int64_t[]){(int64_t)n}, v, n * sizeof(double));
    }
    if (!st) st = rl_st_writer_add(w, "rng/runner", RL_ST_U64, 1, (int64_t[]){4}, r->rng.s, sizeof r->rng.s);
    if (!st)
        st = rl_st_writer_add(w, "rng/generate", RL_ST_U64, 1, (int64_t[]){4}, r->env.rng_state,
                              sizeof r->env.rng_state);
    char *sets = rn_sets_json(c), *models = rn_models_json(r), *hypers = rn_hypers_json(r);
    char cur[128] = "", ptx_cur[128] = "";
    if (r->it) {
        rl_data_cursor dc = rl_batcher_cursor(r->it);
        rl_data_cursor_format(&dc, cur, sizeof cur);
    }
    if (r->ptx_it) {
        rl_data_cursor dc = rl_batcher_cursor(r->ptx_it);
        rl_data_cursor_format(&dc, ptx_cur, sizeof ptx_cur);
    }
    double elapsed = r->elapsed_prev + (r->t_step - r->t_start);
    if (!st) {
        st |= rl_st_writer_set_meta(w, "format", RN_FORMAT);
        st |= rl_st_writer_set_meta(w, "rlhf.version", RL_VERSION);
        st |= rl_st_writer_set_meta(w, "recipe.name", rl_recipe_name(r->recipe));
        st |= rl_st_writer_set_meta(w, "recipe.kind", rl_recipe_kind_name(r->kind));
        st |= rl_st_writer_set_meta(w, "recipe.path", r->recipe_path);
        st |= rn_meta(w, "recipe.hash", "%016" PRIx64, r->recipe_hash);
        st |= rl_st_writer_set_meta(w, "recipe.sets", sets ? sets : "[]");
        st |= rl_st_writer_set_meta(w, "models", models ? models : "{}");
        st |= rl_st_writer_set_meta(w, "hypers", hypers ? hypers : "{}");
        st |= rn_meta(w, "step", "%" PRId64, r->step);
        st |= rn_meta(w, "recipe.step", "%" PRId64, rl_recipe_step(r->p));
        st |= rn_meta(w, "tokens", "%" PRId64, r->tokens);
        st |= rn_meta(w, "elapsed_s", "%.3f", elapsed > 0 ? elapsed : 0);
        st |= rl_st_writer_set_meta(w, "data.path", c->data ? c->data : "");
        st |= rn_meta(w, "data.records", "%" PRId64, r->ds ? r->ds->n : 0);
        st |= rl_st_writer_set_meta(w, "data.cursor", cur);
        if (r->ptx_it) st |= rl_st_writer_set_meta(w, "data.ptx_cursor", ptx_cur);
        st |= rn_meta(w, "seed", "%" PRIu64, c->seed);
        st |= rn_meta(w, "threads", "%d", c->threads);
        st |= rn_meta(w, "batch", "%" PRId64, c->batch);
        st |= rn_meta(w, "minibatch", "%" PRId64, c->minibatch);
        st |= rn_meta(w, "ppo_epochs", "%d", c->ppo_epochs);
        st |= rn_meta(w, "group_by_length", "%" PRId64, c->group_by_length);
        st |= rl_st_writer_set_meta(w, "lr_schedule", c->lr_schedule ? c->lr_schedule : "constant");
        st |= rl_st_writer_set_meta(w, "tokenizer", c->tokenizer);
        st |= rl_st_writer_set_meta(w, "preset", c->preset);
        st |= rn_meta(w, "ctx", "%" PRId64, r->T);
        if (st)
            st =
                rn_fail(r, RL_ERR_MEMORY, "checkpoint: %s", rl_st_writer_error(w) ? rl_st_writer_error(w) : "metadata");
    }
    free(sets), free(models), free(hypers);
    if (!st && rl_st_writer_write(w, rn_path(r, RN_CKPT, path)) != RL_OK)
        st = rn_fail(r, RL_ERR_IO, "checkpoint: %s", rl_st_writer_error(w));
    else if (st && w && rl_st_writer_error(w))
        st = rn_fail(r, st, "checkpoint: %s", rl_st_writer_error(w));
    if (!st) r->res->checkpoints++;
    rl_st_writer_free(w);
    rn_bufs_free(&b);
    return st;
}

/* ---- loading ------------------------------------------------------------------------------ */

/* Writes the file's tensor `name` into t (same shape and dtype class). */
static rl_status rn_read_tensor(rn *r, rl_st_file *f, const char *name, rl_tensor *t) {
    const rl_st_tensor *s = rl_st_find(f, name);
    if (!s) return rn_fail(r, RL_ERR_IO, "%s: the checkpoint has no tensor '%s'", rl_st_path(f), name);
    if (!rl_shape_equal(s->ndim, s->shape, t->ndim, t->shape)) {
        char d[96];
        return rn_fail(r, RL_ERR_IO, "%s: tensor '%s' has another shape than the run's %s (was the model changed?)",
                       rl_st_path(f), name, rl_tensor_describe(t, d, sizeof d));
    }
    size_t nb = (size_t)t->numel * rl_dtype_size(t->dtype);
    void *h = malloc(nb ? nb : 1);
    if (!h) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    rl_status st = t->dtype == RL_F64 ? rl_st_read_f64(f, name, h, (size_t)t->numel)
                                      : rl_st_read_f32(f, name, h, (size_t)t->numel);
    if (st) {
        free(h);
        return rn_fail(r, st, "%s", rl_st_error(f));
    }
    st = rl_tensor_write(r->ctx, t, h, nb);
    free(h);
    return st ? rn_fail(r, st, "%s: %s", name, rl_ctx_error(r->ctx)) : RL_OK;
}

static rl_status rn_read_u64x4(rn *r, rl_st_file *f, const char *name, uint64_t *out) {
    const rl_st_tensor *s = rl_st_find(f, name);
    if (!s || s->dtype != RL_ST_U64 || s->numel != 4)
        return rn_fail(r, RL_ERR_IO, "%s: '%s' is missing or not U64[4]", rl_st_path(f), name);
    memcpy(out, s->data, 4 * sizeof(uint64_t));
    return RL_OK;
}

static int rn_meta_i64(rl_st_file *f, const char *key, int64_t *out) {
    const char *v = rl_st_meta_get(f, key);
    char *end;
    if (!v || !*v) return 0;
    long long x = strtoll(v, &end, 10);
    if (*end) return 0;
    *out = x;
    return 1;
}

/* The run's setting must equal the checkpoint's (see rl_runner.h). */
static rl_status rn_same(rn *r, rl_st_file *f, const char *key, const char *now, const char *what) {
    const char *was = rl_st_meta_get(f, key);
    if (was && strcmp(was, now) == 0) return RL_OK;
    return rn_fail(r, RL_ERR_ARG,
                   "--resume: %s differs from the checkpoint's (%s: '%s' now, '%s' in %s); resume with the "
                   "arguments of the first run, or start a new run in another --out",
                   what, key, now, was ? was : "(absent)", rl_st_path(f));
}

rl_status rn_ckpt_load(rn *r) {
    const rl_runner_cfg *c = r->cfg;
    char path[RN_PATH], e[1024], buf[64];
    rl_st_file *f = NULL;
    if (rl_st_open(rn_path(r, RN_CKPT, path), &f, e, sizeof e) != RL_OK)
        return rn_fail(r, RL_ERR_IO, "--resume: %s", e);
    rl_status st = RL_OK;
    const char *fmt = rl_st_meta_get(f, "format");
    if (!fmt || strcmp(fmt, RN_FORMAT)) {
        st = rn_fail(r, RL_ERR_IO, "--resume: %s is not a training checkpoint (format '%s')", path, fmt ? fmt : "");
        goto done;
    }
    char *sets = rn_sets_json(c);
    snprintf(buf, sizeof buf, "%016" PRIx64, r->recipe_hash);
    st = rn_same(r, f, "recipe.hash", buf, "the recipe file");
    if (!st) st = rn_same(r, f, "recipe.sets", sets ? sets : "[]", "--set");
    free(sets);
    snprintf(buf, sizeof buf, "%" PRIu64, c->seed);
    if (!st) st = rn_same(r, f, "seed", buf, "--seed");
    snprintf(buf, sizeof buf, "%" PRId64, c->batch);
    if (!st) st = rn_same(r, f, "batch", buf, "--batch");
    snprintf(buf, sizeof buf, "%" PRId64, c->minibatch);
    if (!st) st = rn_same(r, f, "minibatch", buf, "--minibatch");
    snprintf(buf, sizeof buf, "%d", c->ppo_epochs);
    if (!st) st = rn_same(r, f, "ppo_epochs", buf, "--ppo-epochs");
    snprintf(buf, sizeof buf, "%" PRId64, c->group_by_length);
    if (!st) st = rn_same(r, f, "group_by_length", buf, "--group-by-length");
    snprintf(buf, sizeof buf, "%" PRId64, r->ds ? r->ds->n : 0);
    if (!st) st = rn_same(r, f, "data.records", buf, "the data (its record count)");
    if (st) goto done;
    const char *th = rl_st_meta_get(f, "threads");
    snprintf(buf, sizeof buf, "%d", c->threads);
    if (th && strcmp(th, buf) && !c->quiet)
        fprintf(r->log,
                "rlhf train: warning: --threads %s differs from the checkpoint's %s: sums may round "
                "differently than in an uninterrupted run\n",
                buf, th);
    /* trainables and their optimizers */
    for (int i = 0; !st && i < r->n_train; i++) {
        rn_train *t = &r->train[i];
        for (int k = 0; !st && k < t->n; k++) {
            st = rn_read_tensor(r, f, t->keys[k], t->tensors[k]);
            for (int s = 0; !st && s < rl_optim_n_state(t->opt); s++) {
                char key[1024];
                snprintf(key, sizeof key, "optim/%s.%s", t->keys[k], rl_optim_state_name(t->opt, s));
                st = rn_read_tensor(r, f, key, rl_optim_state(t->opt, k, s));
            }
        }
        char key[256];
        int64_t n = 0;
        snprintf(key, sizeof key, "optim.%s.step", t->name);
        if (!st && (!rn_meta_i64(f, key, &n) || n < 0 || rl_optim_set_step_count(t->opt, n) != RL_OK))
            st = rn_fail(r, RL_ERR_IO, "%s: bad or missing metadata '%s'", path, key);
        snprintf(key, sizeof key, "optim.%s.skipped", t->name);
        if (!st && rn_meta_i64(f, key, &n)) t->skipped = n;
    }
    /* stateful natives (window_mean's buffers) */
    for (int i = 0; !st && i < rl_recipe_n_states(r->p); i++) {
        char key[256];
        snprintf(key, sizeof key, "state/%s", rl_recipe_state_name(r->p, i));
        const rl_st_tensor *s = rl_st_find(f, key);
        if (!s) {
            st = rl_recipe_state_load(r->p, i, NULL, 0); /* none yet when it was saved */
            continue;
        }
        double *v = malloc(sizeof(double) * (size_t)(s->numel ? s->numel : 1));
        if (!v)
            st = rn_fail(r, RL_ERR_MEMORY, "out of memory");
        else if (rl_st_read_f64(f, key, v, (size_t)s->numel) != RL_OK ||
                 rl_recipe_state_load(r->p, i, v, (size_t)s->numel) != RL_OK)
            st = rn_fail(r, RL_ERR_IO, "%s: the state '%s' is malformed", path, key);
        free(v);
    }
    if (!st) st = rn_read_u64x4(r, f, "rng/runner", r->rng.s);
    if (!st) st = rn_read_u64x4(r, f, "rng/generate", r->env.rng_state);
    const char *cur = rl_st_meta_get(f, "data.cursor");
    if (!st && r->it) {
        rl_data_cursor dc;
        if (!cur || rl_data_cursor_parse(cur, &dc) != RL_OK || rl_batcher_seek(r->it, dc) != RL_OK)
            st = rn_fail(r, RL_ERR_IO, "%s: bad data cursor '%s'", path, cur ? cur : "");
    }
    const char *pcur = rl_st_meta_get(f, "data.ptx_cursor");
    if (!st && r->ptx_it) {
        rl_data_cursor dc;
        if (!pcur || rl_data_cursor_parse(pcur, &dc) != RL_OK || rl_batcher_seek(r->ptx_it, dc) != RL_OK)
            st = rn_fail(r, RL_ERR_IO, "%s: bad or missing --ptx-data cursor '%s'", path, pcur ? pcur : "");
    }
    int64_t step = 0, tokens = 0;
    if (!st && (!rn_meta_i64(f, "step", &step) || step < 0))
        st = rn_fail(r, RL_ERR_IO, "%s: bad or missing metadata 'step'", path);
    int64_t policy_steps = 0;
    if (!st && (!rn_meta_i64(f, "recipe.step", &policy_steps) || policy_steps < 0))
        st = rn_fail(r, RL_ERR_IO, "%s: bad or missing metadata 'recipe.step'", path);
    if (!st) {
        rl_recipe_set_step(r->p, policy_steps);
        rn_meta_i64(f, "tokens", &tokens);
        const char *el = rl_st_meta_get(f, "elapsed_s");
        r->step = step;
        r->tokens = tokens;
        r->elapsed_prev = el ? atof(el) : 0;
        if (!c->quiet) fprintf(r->log, "rlhf train: resuming %s at step %" PRId64 "\n", path, step);
    }
done:
    rl_st_close(f);
    return st;
}

void rn_ckpt_clean_tmp(rn *r) {
    DIR *d = opendir(r->out);
    if (!d) return;
    struct dirent *de;
    const char *pre = RN_CKPT ".tmp.";
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, pre, strlen(pre)) != 0) continue;
        char path[RN_PATH];
        if (unlink(rn_path(r, de->d_name, path)) == 0 && !r->cfg->quiet)
            fprintf(r->log, "rlhf train: removed %s, left by an interrupted checkpoint write\n", path);
    }
    closedir(d);
}

/* ---- final exports ---------------------------------------------------------------------------- */

rl_status rn_export(rn *r) {
    char path[RN_PATH], e[1024];
    for (int i = 0; i < r->n_models; i++) {
        const rn_model *m = &r->models[i];
        if (!m->trainable) continue;
        if (rl_model_save(r->ctx, m->m, rn_path(r, m->name, path), e, sizeof e) != RL_OK)
            return rn_fail(r, RL_ERR_IO, "exporting model '%s': %s", m->name, e);
    }
    int np = rl_recipe_n_params(r->p);
    if (!np) return RL_OK;
    json_t *o = json_object();
    for (int i = 0; i < np; i++) {
        const rl_recipe_param_info *pi = rl_recipe_param_at(r->p, i);
        if (pi->tensor->numel == 1) {
            double v = rl_tensor_get(r->ctx, pi->tensor, 0);
            json_object_set_new(o, pi->name, isfinite(v) ? json_real(v) : json_null());
            continue;
        }
        json_t *a = json_array();
        for (int64_t k = 0; k < pi->tensor->numel; k++) {
            double v = rl_tensor_get(r->ctx, pi->tensor, k);
            json_array_append_new(a, isfinite(v) ? json_real(v) : json_null());
        }
        json_object_set_new(o, pi->name, a);
    }
    rn_path(r, "params.json", path);
    rl_status st = rn_json_write(r, o, path, JSON_INDENT(2) | JSON_SORT_KEYS);
    json_decref(o);
    return st;
}
