/* recipes/runner/runner_log.c - what a user of the stage runner sees: the progress
 * line (redrawn in place on a terminal, plain lines every N steps
 * otherwise), OUT/metrics.jsonl (one JSON object per step), OUT/run.json
 * (the configuration) and OUT/samples.jsonl (decoded generations).
 */
#include "runner_int.h"

#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *rn_num(double v) { return isfinite(v) ? json_real(v) : json_null(); }

/* Decoded text of ids[0..n) as a JSON string. */
static json_t *rn_text(rn *r, const int32_t *ids, int64_t n) {
    char *t = NULL;
    size_t len = 0;
    if (rl_tokenizer_decode(r->tok, ids, n, &t, &len) != RL_OK) return json_null();
    char *c = rl_utf8_sanitize(t, len);
    free(t);
    json_t *j = c ? json_string(c) : json_null();
    free(c);
    return j ? j : json_null();
}

/* ---- files --------------------------------------------------------------------------- */

rl_status rn_json_write(rn *r, json_t *o, const char *path, size_t flags) {
    char err[600];
    rl_atomic_file a;
    FILE *f = rl_atomic_open(&a, path, err, sizeof err);
    if (!f) return rn_fail(r, RL_ERR_IO, "%s", err);
    if (json_dumpf(o, f, flags) != 0) {
        rl_atomic_abort(&a);
        return rn_fail(r, RL_ERR_IO, "%s: cannot write", path);
    }
    return rl_atomic_commit(&a, err, sizeof err) == RL_OK ? RL_OK : rn_fail(r, RL_ERR_IO, "%s", err);
}

rl_status rn_jsonl_truncate(rn *r, const char *path, int64_t step) {
    FILE *in = fopen(path, "r");
    if (!in) return RL_OK; /* nothing written yet */
    char err[600];
    rl_atomic_file a;
    FILE *out = rl_atomic_open(&a, path, err, sizeof err);
    if (!out) {
        fclose(in);
        return rn_fail(r, RL_ERR_IO, "%s", err);
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        /* a line the killed run did not finish does not parse: dropped */
        json_t *o = json_loadb(line, (size_t)n, 0, NULL);
        json_t *s = o ? json_object_get(o, "step") : NULL;
        if (s && json_is_integer(s) && json_integer_value(s) <= step && line[n - 1] == '\n')
            fwrite(line, 1, (size_t)n, out);
        json_decref(o);
    }
    free(line);
    fclose(in);
    return rl_atomic_commit(&a, err, sizeof err) == RL_OK ? RL_OK : rn_fail(r, RL_ERR_IO, "%s", err);
}

rl_status rn_log_open(rn *r) {
    char path[RN_PATH];
    const char *mode = r->step > 0 ? "a" : "w";
    rl_status st = RL_OK;
    if (r->step > 0) {
        st = rn_jsonl_truncate(r, rn_path(r, "metrics.jsonl", path), r->step);
        if (!st) st = rn_jsonl_truncate(r, rn_path(r, "samples.jsonl", path), r->step);
        if (st) return st;
    }
    if (!(r->metrics = fopen(rn_path(r, "metrics.jsonl", path), mode)))
        return rn_fail(r, RL_ERR_IO, "%s: cannot write", path);
    int samples = r->cfg->sample_every > 0;
    if (samples && !(r->samples = fopen(rn_path(r, "samples.jsonl", path), mode)))
        return rn_fail(r, RL_ERR_IO, "%s: cannot write", path);
    return RL_OK;
}

void rn_log_close(rn *r) {
    if (r->metrics) fclose(r->metrics);
    if (r->samples) fclose(r->samples);
    r->metrics = r->samples = NULL;
}

rl_status rn_write_run_json(rn *r) {
    const rl_runner_cfg *c = r->cfg;
    json_t *o = json_object(), *a;
    json_object_set_new(o, "recipe", json_string(r->recipe_path));
    json_object_set_new(o, "recipe_name", json_string(rl_recipe_name(r->recipe)));
    json_object_set_new(o, "kind", json_string(rl_recipe_kind_name(r->kind)));
    json_object_set_new(o, "data", c->data ? json_string(c->data) : json_null());
    json_object_set_new(o, "steps", json_integer(r->total_steps));
    json_object_set_new(o, "batch", json_integer(c->batch));
    json_object_set_new(o, "minibatch", json_integer(c->minibatch));
    json_object_set_new(o, "ppo_epochs", json_integer(c->ppo_epochs));
    json_object_set_new(o, "lr_schedule", json_string(c->lr_schedule ? c->lr_schedule : "constant"));
    json_object_set_new(o, "seed", json_integer((json_int_t)c->seed));
    json_object_set_new(o, "threads", json_integer(c->threads));
    json_object_set_new(o, "ctx", json_integer(r->T));
    json_object_set_new(o, "preset", json_string(c->preset));
    json_object_set_new(o, "tokenizer", json_string(c->tokenizer));
    a = json_array();
    for (int i = 0; i < c->n_set; i++) json_array_append_new(a, json_string(c->set[i]));
    json_object_set_new(o, "set", a);
    json_t *models = json_object();
    for (int i = 0; i < r->n_models; i++) {
        const rn_model *m = &r->models[i];
        char d[256];
        rl_model_describe(m->m, d, sizeof d);
        json_object_set_new(models, m->name,
                            json_pack("{sssbsoss}", "kind", rl_recipe_model_kind_name(m->kind), "trainable",
                                      m->trainable, "init", m->init ? json_string(m->init) : json_null(), "describe",
                                      d));
    }
    json_object_set_new(o, "models", models);
    a = json_array();
    for (int l = 0; l < r->n_losses; l++) {
        const rl_recipe_loss_info *li = rl_recipe_loss_at(r->p, l);
        json_t *tr = json_array();
        for (int k = 0; k < li->n_trainables; k++) json_array_append_new(tr, json_string(li->trainables[k]));
        json_array_append_new(a, json_pack("{ssso}", "name", li->name, "trains", tr));
    }
    json_object_set_new(o, "losses", a);
    a = json_array();
    for (int m = 0; m < r->n_metrics; m++) json_array_append_new(a, json_string(rl_recipe_metric_name(r->p, m)));
    json_object_set_new(o, "metrics", a);
    char path[RN_PATH];
    rn_path(r, "run.json", path);
    rl_status st = rn_json_write(r, o, path, JSON_INDENT(2));
    json_decref(o);
    return st;
}

/* ---- a step ----------------------------------------------------------------------------- */

static void rn_fmt_time(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void rn_log_step(rn *r, double step_s) {
    const rl_runner_cfg *c = r->cfg;
    double n = r->acc_n ? (double)r->acc_n : 1.0;
    double now_total = r->elapsed_prev + (r->t_step - r->t_start);
    double tps = step_s > 0 ? (double)r->step_tokens / step_s : 0;
    json_t *o = json_object();
    json_object_set_new(o, "step", json_integer(r->step));
    double epoch = (double)r->step;
    if (r->it) {
        rl_data_cursor dc = rl_batcher_cursor(r->it);
        epoch = (double)dc.epoch + (double)dc.pos / (double)rl_tokdata_size(r->td);
    }
    json_object_set_new(o, "epoch", rn_num(epoch));
    /* the runner's fields first, so that a recipe metric of the same name wins */
    int first = 1;
    for (int t = 0; t < r->n_train; t++) {
        const rn_train *tr = &r->train[t];
        if (tr->loss < 0) continue;
        char key[256];
        double norm = tr->n_norm ? tr->norm_sum / tr->n_norm : NAN;
        snprintf(key, sizeof key, "lr_%s", tr->name);
        json_object_set_new(o, key, rn_num(tr->lr));
        snprintf(key, sizeof key, "grad_norm_%s", tr->name);
        json_object_set_new(o, key, rn_num(norm));
        if (first) {
            json_object_set_new(o, "lr", rn_num(tr->lr));
            json_object_set_new(o, "grad_norm", rn_num(norm));
            first = 0;
        }
    }
    json_object_set_new(o, "updates", json_integer(r->acc_n));
    json_object_set_new(o, "tokens", json_integer(r->step_tokens));
    json_object_set_new(o, "tokens_per_s", rn_num(tps));
    json_object_set_new(o, "step_s", rn_num(step_s));
    json_object_set_new(o, "time", rn_num(now_total));
    for (int l = 0; l < r->n_losses; l++)
        json_object_set_new(o, rl_recipe_loss_at(r->p, l)->name, rn_num(r->acc[l] / n));
    for (int m = 0; m < r->n_metrics; m++)
        json_object_set_new(o, rl_recipe_metric_name(r->p, m), rn_num(r->acc[r->n_losses + m] / n));
    char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(o);
    if (line && r->metrics) {
        fputs(line, r->metrics);
        fputc('\n', r->metrics);
        fflush(r->metrics); /* before any checkpoint of this step */
    }
    free(line);
    if (c->quiet) return;
    /* the progress line: losses, a few metrics, speed, ETA */
    int64_t done = r->step - (r->res->first_step - 1);
    double per = done > 0 ? (r->t_step - r->t_start) / (double)done : 0;
    char eta[32], el[32], text[1024];
    rn_fmt_time(per * (double)(r->total_steps - r->step), eta, sizeof eta);
    rn_fmt_time(now_total, el, sizeof el);
    int k = snprintf(text, sizeof text, "[%s] step %" PRId64 "/%" PRId64, rl_recipe_name(r->recipe), r->step,
                     r->total_steps);
    for (int l = 0; l < r->n_losses && k < (int)sizeof text; l++)
        k += snprintf(text + k, sizeof text - (size_t)k, "  %s %.4g", rl_recipe_loss_at(r->p, l)->name, r->acc[l] / n);
    for (int m = 0; m < r->n_metrics && m < 4 && k < (int)sizeof text; m++)
        k += snprintf(text + k, sizeof text - (size_t)k, "  %s %.4g", rl_recipe_metric_name(r->p, m),
                      r->acc[r->n_losses + m] / n);
    /* speed over the steps this process ran: steadier than one step's */
    double run_s = r->t_step - r->t_start;
    if (k < (int)sizeof text)
        snprintf(text + k, sizeof text - (size_t)k, "  | %.0f tok/s | %s elapsed, ETA %s",
                 run_s > 0 ? (double)r->tokens_run / run_s : tps, el, eta);
    if (r->tty) {
        /* at most ten redraws a second, and always the last step */
        if (r->t_step - r->t_draw < 0.1 && r->step < r->total_steps) return;
        r->t_draw = r->t_step;
        fprintf(r->log, "\r%s\033[K", text);
        fflush(r->log);
        return;
    }
    int64_t every = c->log_every > 0 ? c->log_every : (r->total_steps + 19) / 20;
    if (every < 1) every = 1;
    if (r->step == r->res->first_step || r->step % every == 0 || r->step == r->total_steps) {
        fprintf(r->log, "%s\n", text);
        fflush(r->log);
    }
}

void rn_log_end(rn *r) {
    if (r->cfg->quiet) return;
    if (r->tty) fputc('\n', r->log);
    fprintf(r->log, "rlhf train: done at step %" PRId64 "; checkpoint %s/checkpoint.safetensors", r->step, r->out);
    for (int i = 0; i < r->n_models; i++)
        if (r->models[i].trainable) fprintf(r->log, ", model %s/%s/", r->out, r->models[i].name);
    fprintf(r->log, "\n");
}

/* ---- samples ------------------------------------------------------------------------------ */

/* One line of samples.jsonl; group >= 0: the prompt row whose group the sample belongs to. */
static void rn_sample_write(rn *r, const int32_t *prompt, int64_t plen, const int32_t *resp, int64_t rlen, int row,
                            int group) {
    /* the response ends at EOS; trailing padding is not text */
    int64_t n = 0;
    int eos = 0;
    while (n < rlen && !(eos = resp[n] == r->eos_id)) n++;
    if (!eos)
        while (n > 0 && resp[n - 1] == r->pad_id) n--;
    json_t *o = json_pack("{sIsisososb}", "step", (json_int_t)r->step, "row", row, "prompt", rn_text(r, prompt, plen),
                          "response", rn_text(r, resp, n), "eos", eos);
    if (o && group >= 0) json_object_set_new(o, "group", json_integer(group));
    char *line = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (line && r->samples) {
        fputs(line, r->samples);
        fputc('\n', r->samples);
        fflush(r->samples);
    }
    free(line);
}

void rn_sample_rollout(rn *r, const rl_rows *prompts) {
    for (int i = 0; i < rl_recipe_n_nodes(r->p); i++) {
        const rl_recipe_node *nd = rl_recipe_node_at(r->p, i);
        if (strcmp(nd->op, "generate") || !nd->name) continue;
        rl_tensor *seq = rl_recipe_value_of(r->p, nd->name);
        if (!seq || seq->ndim != 2 || prompts->B < 1 || seq->shape[0] % prompts->B != 0) continue;
        /* groups (generate's n = G): rows b*G .. b*G + G - 1 answer prompt b; every sample of
         * the first n_samples prompts is written */
        int64_t B = seq->shape[0], T = seq->shape[1], G = B / prompts->B;
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)(B * T));
        if (!ids) return;
        if (rl_tensor_read(r->ctx, seq, ids, sizeof(int32_t) * (size_t)(B * T)) == RL_OK)
            for (int64_t row = 0; row < B && row / G < r->cfg->n_samples; row++) {
                int64_t pl = prompts->len[row / G] < T ? prompts->len[row / G] : T;
                rn_sample_write(r, ids + row * T, pl, ids + row * T + pl, T - pl, (int)row, G > 1 ? (int)(row / G) : -1);
            }
        free(ids);
        return; /* the first generate call of the recipe */
    }
}

void rn_sample_greedy(rn *r) {
    const rl_model *m = NULL;
    for (int i = 0; i < r->n_models && !m; i++)
        if (r->models[i].trainable && r->models[i].kind == RL_MODEL_LM) m = r->models[i].m;
    if (!m || !r->sample_td || !r->samples) return;
    int64_t n = rl_tokdata_size(r->sample_td);
    if (n > r->cfg->n_samples) n = r->cfg->n_samples;
    if (n < 1) return;
    rl_data_batch *b = rl_data_batch_new(r->sample_td, n);
    int64_t idx[64];
    for (int64_t i = 0; i < n; i++) idx[i] = i;
    if (!b || rl_data_batch_fill(r->sample_td, idx, n, b) != RL_OK) {
        rl_data_batch_free(b);
        return;
    }
    rl_gen_cfg g = rl_gen_cfg_default();
    int64_t longest = 0;
    for (int64_t i = 0; i < n; i++) longest = b->rows.len[i] > longest ? b->rows.len[i] : longest;
    g.greedy = 1;
    g.max_new_tokens = r->T - longest < 64 ? r->T - longest : 64;
    g.eos_id = r->eos_id;
    g.pad_id = r->pad_id;
    rl_gen_out out;
    if (g.max_new_tokens > 0 &&
        rl_model_generate(r->ctx, m, b->rows.ids, b->rows.len, n, b->rows.T, &g, NULL, &out) == RL_OK) {
        for (int64_t i = 0; i < n; i++) {
            const int32_t *row = out.tokens + i * out.T;
            rn_sample_write(r, row, out.prompt_len[i], row + out.prompt_len[i], out.len[i] - out.prompt_len[i], (int)i, -1);
        }
        rl_gen_out_free(&out);
    } else {
        if (!r->cfg->quiet) /* samples are a courtesy: the run goes on */
            fprintf(stderr, "rlhf train: warning: step %" PRId64 ": no samples: %s\n", r->step,
                    rl_ctx_error(r->ctx) ? rl_ctx_error(r->ctx) : "no room to generate");
        rl_ctx_clear_error(r->ctx);
    }
    rl_ctx_reset(r->ctx);
    rl_data_batch_free(b);
}
