/* recipes/runner/runner.c - the stage runner's core: sets up a run (recipe, models,
 * data, one optimizer per trainable), then runs its steps - supervised and
 * pairwise batches, online rollouts with PPO-style minibatch epochs, and
 * full-batch updates - with the update order rl_runner.h documents.
 * Checkpoints, logs and samples live in runner_ckpt.c and runner_log.c.
 */
#include "runner_int.h"

#include "rl_internal.h"
#include "rl_checkpoint.h"
#include "rl_ops.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

rl_status rn_fail(rn *r, rl_status st, const char *fmt, ...) {
    if (r->err && r->errlen && !r->err[0]) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

const char *rn_path(const rn *r, const char *name, char *buf) {
    if (snprintf(buf, RN_PATH, "%s/%s", r->out, name) >= RN_PATH) buf[RN_PATH - 1] = 0; /* cut, not overrun */
    return buf;
}

/* ---- the recipe ------------------------------------------------------------------------ */

/* Copies the recipe's errors (the first few) into err. */
static rl_status rn_recipe_errors(rn *r) {
    size_t k = 0;
    for (int i = 0; i < rl_recipe_n_diags(r->recipe) && k + 1 < r->errlen; i++) {
        const rl_recipe_diag *d = rl_recipe_diag_at(r->recipe, i);
        if (d->severity != RL_DIAG_ERROR) continue;
        int n = rl_recipe_format_diag(d, r->err + k, r->errlen - k);
        if (n < 0) break;
        k += (size_t)n;
        if (k >= r->errlen) k = r->errlen - 1;
    }
    while (k > 0 && r->err[k - 1] == '\n') r->err[--k] = 0;
    if (!k) snprintf(r->err, r->errlen, "%s: the recipe has errors", r->recipe_path);
    return RL_ERR_ARG;
}

static rl_status rn_load_recipe(rn *r) {
    const rl_runner_cfg *c = r->cfg;
    const char *why = NULL;
    /* a file, or the name of a built-in recipe ("sft", "ppo_kl", ...) */
    rl_status rs = rl_recipe_resolve(c->recipe, r->recipe_path, sizeof r->recipe_path);
    if (rs == RL_ERR_IO)
        return rn_fail(r, RL_ERR_IO, "%s: the built-in recipe's file is not found (set RLHF_RECIPE_DIR)", c->recipe);
    if (rs != RL_OK) snprintf(r->recipe_path, sizeof r->recipe_path, "%s", c->recipe);
    r->recipe = rl_recipe_load(r->recipe_path, &why);
    if (!r->recipe) return rn_fail(r, RL_ERR_IO, "%s: cannot read the recipe: %s", c->recipe, why ? why : "?");
    /* the hash of the source identifies the recipe in checkpoints */
    FILE *f = fopen(r->recipe_path, "rb");
    if (f) {
        char buf[65536];
        size_t n;
        uint64_t h = rn_hash("", 0);
        while ((n = fread(buf, 1, sizeof buf, f)) > 0)
            h ^= rn_hash(buf, n) + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
        fclose(f);
        r->recipe_hash = h;
    }
    if (rl_recipe_n_errors(r->recipe)) return rn_recipe_errors(r);
    for (int i = 0; i < c->n_set; i++)
        if (rl_recipe_set_arg(r->recipe, c->set[i]) != RL_OK) return rn_recipe_errors(r);
    return RL_OK;
}

static rl_status rn_compile(rn *r) {
    rl_recipe_model_env_init(&r->env, r->cfg->seed ^ 0x67656e6572617465ull); /* "generate" */
    r->env.eos_id = rl_tokenizer_eos_id(r->tok);
    r->env.tok = r->tok; /* the verifiable rewards decode responses with it */
    /* GPT-2's model functions; externs run from their shared libraries */
    rl_recipe_opts o = rl_recipe_opts_models(&r->env);
    o.dtype = RL_F32;
    r->p = rl_recipe_compile(r->recipe, r->ctx, &o);
    if (!r->p) return rn_recipe_errors(r);
    r->kind = rl_recipe_program_kind(r->p);
    r->n_losses = rl_recipe_n_losses(r->p);
    r->n_metrics = rl_recipe_n_metrics(r->p);
    r->acc = calloc((size_t)(r->n_losses + r->n_metrics) + 1, sizeof(double));
    if (!r->acc) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    if (!r->cfg->quiet)
        for (int i = 0; i < rl_recipe_n_diags(r->recipe); i++) {
            const rl_recipe_diag *d = rl_recipe_diag_at(r->recipe, i);
            char buf[2048];
            if (d->severity != RL_DIAG_WARNING) continue;
            rl_recipe_format_diag(d, buf, sizeof buf);
            fputs(buf, stderr);
        }
    return RL_OK;
}

/* ---- models ---------------------------------------------------------------------------- */

static rl_model_head rn_model_head(rl_recipe_model_kind k) {
    return k == RL_MODEL_SCORE ? RL_HEAD_SCORE : k == RL_MODEL_VALUE ? RL_HEAD_VALUE : RL_HEAD_LM;
}

/* The --init value of model `name`, or NULL. */
static const char *rn_init_of(const rl_runner_cfg *c, const char *name) {
    const char *v = NULL;
    size_t n = strlen(name);
    for (int i = 0; i < c->n_init; i++)
        if (strncmp(c->init[i], name, n) == 0 && c->init[i][n] == '=') v = c->init[i] + n + 1; /* the last wins */
    return v;
}

static rn_model *rn_find_model(rn *r, const char *name) {
    for (int i = 0; i < r->n_models; i++)
        if (strcmp(r->models[i].name, name) == 0) return &r->models[i];
    return NULL;
}

/* Frozen models are called with gradients off: their gradient buffers
 * would only cost memory (a GPT-2 124M's is 0.5 GB). */
static void rn_drop_grads(rn *r, rl_model *m) {
    for (int i = 0; i < m->n_tensors; i++) {
        rl_tensor *t = m->tensors[i];
        if (t->grad) rl_tensor_free(r->ctx, t->grad);
        t->grad = NULL;
        t->flags &= ~(uint32_t)RL_TF_REQUIRES_GRAD;
    }
}

static rl_status rn_make_models(rn *r) {
    const rl_runner_cfg *c = r->cfg;
    r->n_models = rl_recipe_n_models(r->p);
    r->models = calloc((size_t)r->n_models + 1, sizeof(rn_model));
    if (!r->models) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    for (int i = 0; i < r->n_models; i++) {
        const rl_recipe_model_info *mi = rl_recipe_model_at(r->p, i);
        r->models[i] = (rn_model){mi->name, mi->kind, mi->trainable, rn_init_of(c, mi->name), NULL};
    }
    for (int i = 0; i < c->n_init; i++) {
        const char *eq = strchr(c->init[i], '=');
        int found = 0;
        for (int k = 0; k < r->n_models; k++)
            found |= strlen(r->models[k].name) == (size_t)(eq - c->init[i]) &&
                     strncmp(r->models[k].name, c->init[i], (size_t)(eq - c->init[i])) == 0;
        if (!found)
            return rn_fail(r, RL_ERR_ARG, "--init %s: the recipe declares no model '%.*s'", c->init[i],
                           (int)(eq - c->init[i]), c->init[i]);
    }
    rl_model_config pc;
    if (rl_model_config_preset(c->preset, &pc) != RL_OK)
        return rn_fail(r, RL_ERR_ARG, "--preset: unknown preset '%s' (%s)", c->preset, rl_model_preset_names());
    /* the tokenizer decides the vocabulary of a fresh model; --ctx its context */
    rl_model_config_set_vocab(&pc, rl_tokenizer_vocab_size(r->tok));
    if (c->ctx > 0) rl_model_config_set_ctx(&pc, c->ctx);
    /* checkpoints and fresh models first, then copies of other models (in
     * passes, so that a copy may name a model declared after it) */
    for (int pass = 0, left = r->n_models; left > 0; pass++) {
        int made = 0;
        for (int i = 0; i < r->n_models; i++) {
            rn_model *m = &r->models[i];
            if (m->m) continue;
            rn_model *src = m->init ? rn_find_model(r, m->init) : NULL;
            rl_model_head kind = rn_model_head(m->kind);
            char e[1024] = "";
            if (src == m)
                return rn_fail(r, RL_ERR_ARG, "--init %s=%s: a model cannot be a copy of itself", m->name, m->init);
            if (src) {
                if (!src->m) continue; /* not made yet */
                m->m = rl_model_new_from(r->ctx, src->m, kind, c->seed);
                if (!m->m) return rn_fail(r, RL_ERR_ARG, "model '%s': %s", m->name, rl_ctx_error(r->ctx));
            } else if (m->init) {
                if (rl_model_load(r->ctx, m->init, kind, RL_F32, c->seed, &m->m, e, sizeof e) != RL_OK)
                    return rn_fail(r, RL_ERR_IO, "--init %s=%s: %s", m->name, m->init, e);
            } else {
                /* LM models share the seed (a fresh reference equals a fresh
                 * policy); score and value models get their own, so that two
                 * heads of a kind (reward and cost) differ */
                uint64_t seed = m->kind == RL_MODEL_LM ? c->seed : c->seed + 1 + (uint64_t)i;
                m->m = rl_model_new(r->ctx, &pc, kind, RL_F32, seed);
                if (!m->m)
                    return rn_fail(r, RL_ERR_ARG, "model '%s' (--preset %s): %s", m->name, c->preset,
                                   rl_ctx_error(r->ctx));
            }
            if (!m->trainable) rn_drop_grads(r, m->m);
            rl_recipe_bind_model(r->p, m->name, m->m);
            made++, left--;
        }
        if (!made && left) return rn_fail(r, RL_ERR_ARG, "--init: models that copy each other in a circle");
    }
    /* one row width for every model; ids must fit every vocabulary */
    int64_t T = c->ctx;
    for (int i = 0; i < r->n_models; i++) {
        const rl_model *m = r->models[i].m;
        if (T <= 0 || m->n_ctx < T) {
            if (c->ctx > 0)
                return rn_fail(r, RL_ERR_ARG, "--ctx %" PRId64 " exceeds model '%s''s context of %" PRId64, c->ctx,
                               r->models[i].name, m->n_ctx);
            T = m->n_ctx;
        }
        if (m->vocab < rl_tokenizer_vocab_size(r->tok))
            return rn_fail(r, RL_ERR_ARG,
                           "model '%s' has a vocabulary of %" PRId64 " but the tokenizer (%s) has %d ids "
                           "(give the matching --tokenizer)",
                           r->models[i].name, m->vocab, c->tokenizer, rl_tokenizer_vocab_size(r->tok));
    }
    r->T = T > 0 ? T : (c->ctx > 0 ? c->ctx : rl_model_config_ctx(&pc));
    if (r->T < 2) return rn_fail(r, RL_ERR_ARG, "the context (%" PRId64 " tokens) is too short", r->T);
    return RL_OK;
}

/* ---- data -------------------------------------------------------------------------------- */

/* --chat-template: "off"; a tokenizer_config.json; or "auto", which takes the
 * --tokenizer directory's template when its tokenizer_config.json has a
 * chat_template (or chat_template.jinja lies beside it) and is silent
 * otherwise (the byte tokenizer, GPT-2, base models without one). */
static rl_status rn_open_chat_template(rn *r) {
    const rl_runner_cfg *c = r->cfg;
    char path[RN_PATH], jinja[RN_PATH], e[1024];
    if (!strcmp(c->chat_template, "off")) return RL_OK;
    if (strcmp(c->chat_template, "auto") != 0) {
        snprintf(path, sizeof path, "%s", c->chat_template);
    } else {
        struct stat sb;
        if (stat(c->tokenizer, &sb) != 0 || !S_ISDIR(sb.st_mode)) return RL_OK;
        snprintf(path, sizeof path, "%s/tokenizer_config.json", c->tokenizer);
        snprintf(jinja, sizeof jinja, "%s/chat_template.jinja", c->tokenizer);
        json_t *o = json_load_file(path, 0, NULL);
        int has = (o && json_object_get(o, "chat_template")) || stat(jinja, &sb) == 0;
        json_decref(o);
        if (!has) return RL_OK;
    }
    if (!(r->chat = rl_chat_template_load(path, e, sizeof e))) return rn_fail(r, RL_ERR_IO, "--chat-template: %s", e);
    return RL_OK;
}

/* 1 when some compiled statement reads input `name` (an input that only an
 * if() branch not taken uses need not be bound). */
static int rn_input_used(const rl_recipe_program *p, const char *name) {
    int n = rl_recipe_n_nodes(p);
    for (int i = 0; i < n; i++) {
        const rl_recipe_node *nd = rl_recipe_node_at(p, i);
        if (strcmp(nd->op, "input") || !nd->name || strcmp(nd->name, name)) continue;
        for (int j = 0; j < n; j++) {
            const rl_recipe_node *u = rl_recipe_node_at(p, j);
            for (int k = 0; k < u->n_in; k++)
                if (u->in[k] == i) return 1;
        }
        return 0;
    }
    return 1;
}

/* The token rows a column name stands for: the runner builds them from the
 * data's format (objectives.md's schemas), not read as a field. */
static const struct {
    const char *col;
    rn_feed feed;
    rl_rows_kind rows;
} rn_row_cols[] = {
    {"prompt", RN_FEED_ROWS, RL_ROWS_PROMPTS},    /* the prompt alone */
    {"response", RN_FEED_ROWS, RL_ROWS_SFT},      /* prompt + response (demos; HH's chosen, PKU's better) */
    {"completion", RN_FEED_ROWS, RL_ROWS_SFT},    /* the same, TRL's prompt-completion name */
    {"chosen", RN_FEED_CHOSEN, RL_ROWS_PAIRS},    /* prompt + the preferred response (HH, PKU's better) */
    {"rejected", RN_FEED_REJECTED, RL_ROWS_PAIRS},
    {"safer", RN_FEED_SAFER, RL_ROWS_PAIRS},      /* PKU-SafeRLHF: prompt + the safer response */
    {"unsafer", RN_FEED_UNSAFER, RL_ROWS_PAIRS},
    {"safer_sign", RN_FEED_SIGN_S, RL_ROWS_PAIRS}, /* PKU: cost signs [B], +1 unsafe, -1 safe */
    {"unsafer_sign", RN_FEED_SIGN_U, RL_ROWS_PAIRS},
    {"mismatched", RN_FEED_MISMATCHED, RL_ROWS_SFT},   /* row k's prompt + row k+1's response */
};
#define RN_N_ROW_COLS ((int)(sizeof rn_row_cols / sizeof rn_row_cols[0]))

static int rn_row_col(const char *col) {
    if (!rl_recipe_is_row_column(col)) return -1; /* rn_row_cols holds every name of that list */
    for (int k = 0; col && k < RN_N_ROW_COLS; k++)
        if (strcmp(col, rn_row_cols[k].col) == 0) return k;
    return -1;
}

/* "recipe.recipe:9:7" for an input's messages. */
static const char *rn_where(const rn *r, const rl_recipe_input_info *in, char *buf, size_t n) {
    snprintf(buf, n, "%s:%d:%d", r->cfg->recipe, in->from ? in->from_line : in->line,
             in->from ? in->from_col : in->col);
    return buf;
}

/* Decides how each input is fed and which rows to make. An input reads the
 * column its `from` names; without one, a token input named like a row
 * column (chosen, rejected, prompt, ...) reads it, the one token input of a
 * supervised recipe reads the demonstrations, the first of an online
 * recipe the prompts and a second one --ptx-data; a number input reads the
 * field of its own name. */
static rl_status rn_plan_feeds(rn *r, rl_rows_kind *rows) {
    int n = rl_recipe_n_inputs(r->p);
    r->n_feed = n;
    r->feed = calloc((size_t)n + 1, sizeof(rn_feed));
    r->feed_col = calloc((size_t)n + 1, sizeof(int));
    r->cols = calloc((size_t)n + 1, sizeof(char *));
    if (!r->feed || !r->feed_col || !r->cols) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    int n_tok = 0, have_prompt = 0;
    for (int i = 0; i < n; i++) {
        const rl_recipe_input_info *in = rl_recipe_input_at(r->p, i);
        r->feed[i] = rn_input_used(r->p, in->name) ? RN_FEED_ROWS : RN_FEED_NONE;
        if (r->feed[i] != RN_FEED_NONE && in->type.tokens) n_tok++;
    }
    int rows_by = -1; /* the input that decided the rows */
    *rows = r->kind == RL_RECIPE_ONLINE ? RL_ROWS_PROMPTS : r->kind == RL_RECIPE_PAIRWISE ? RL_ROWS_PAIRS : RL_ROWS_SFT;
    char at[600], at2[600];
    for (int i = 0; i < n; i++) {
        const rl_recipe_input_info *in = rl_recipe_input_at(r->p, i);
        if (r->feed[i] == RN_FEED_NONE) continue;
        const char *col = in->from;
        if (!col && in->type.tokens) {
            if (rn_row_col(in->name) >= 0) col = in->name;
            else if (r->kind == RL_RECIPE_ONLINE && !have_prompt) col = "prompt";
            else if (r->kind == RL_RECIPE_ONLINE && r->cfg->ptx_data) {
                r->feed[i] = RN_FEED_PTX;
                continue;
            } else if (r->kind != RL_RECIPE_ONLINE && r->kind != RL_RECIPE_PAIRWISE && n_tok == 1) col = "response";
            else
                return rn_fail(r, RL_ERR_ARG,
                               "%s: token input '%s' reads no column: declare it, e.g. input %s : tokens from "
                               "\"chosen\" (rows: prompt, response, chosen, rejected, safer, unsafer; any other "
                               "name is a string field, tokenized)%s",
                               rn_where(r, in, at, sizeof at), in->name, in->name,
                               r->kind == RL_RECIPE_ONLINE ? "; or give demonstrations with --ptx-data F" : "");
        }
        if (!col) col = in->name; /* a number input: the field of its name */
        int k = rn_row_col(col);
        bool sign = k >= 0 && (rn_row_cols[k].feed == RN_FEED_SIGN_S || rn_row_cols[k].feed == RN_FEED_SIGN_U);
        if (sign) {
            if (in->type.tokens)
                return rn_fail(r, RL_ERR_ARG, "%s: input '%s' reads \"%s\", cost signs [B]: declare it i32[B] or f32[B]",
                               rn_where(r, in, at, sizeof at), in->name, col);
        } else if (k >= 0 && !in->type.tokens) {
            return rn_fail(r, RL_ERR_ARG, "%s: input '%s' reads \"%s\", token rows: declare it tokens",
                           rn_where(r, in, at, sizeof at), in->name, col);
        }
        if (k >= 0) {
            r->feed[i] = rn_row_cols[k].feed;
            rl_rows_kind want = rn_row_cols[k].rows;
            if (!strcmp(col, "prompt")) have_prompt = 1;
            bool fixed = r->kind == RL_RECIPE_ONLINE || r->kind == RL_RECIPE_PAIRWISE;
            if (want != *rows && (fixed || rows_by >= 0))
                return rn_fail(r, RL_ERR_ARG, "%s: input '%s' reads \"%s\", but %s%s%s reads %s rows",
                               rn_where(r, in, at, sizeof at), in->name, col,
                               rows_by >= 0 ? "input '" : "a ", rows_by >= 0 ? rl_recipe_input_at(r->p, rows_by)->name
                                                                             : rl_recipe_kind_name(r->kind),
                               rows_by >= 0 ? "'" : " recipe",
                               *rows == RL_ROWS_PAIRS ? "pair" : *rows == RL_ROWS_PROMPTS ? "prompt" : "demonstration");
            *rows = want;
            if (rows_by < 0) rows_by = i;
            continue;
        }
        /* a field of the data: numbers into f32/i32 [B], strings into tokens */
        int c = 0;
        while (c < r->n_cols && strcmp(r->cols[c], col)) c++;
        if (c == r->n_cols) r->cols[r->n_cols++] = col;
        r->feed[i] = in->type.tokens ? RN_FEED_TEXT : RN_FEED_COLUMN;
        r->feed_col[i] = c;
        if (!in->type.tokens && (in->type.ndim != 1))
            return rn_fail(r, RL_ERR_ARG, "%s: input '%s' reads the field \"%s\" (one value per row): declare it "
                           "f32[B] or i32[B]", rn_where(r, in, at2, sizeof at2), in->name, col);
    }
    return RL_OK;
}

/* Every record's value of every column an input reads fits its type, before
 * any step: numbers and booleans for f32/i32 [B] (integers for i32), strings
 * for tokens; else "FILE:LINE: ..." naming the input and where it is declared. */
static rl_status rn_check_columns(rn *r) {
    char at[600];
    for (int i = 0; i < r->n_feed; i++) {
        if (r->feed[i] != RN_FEED_COLUMN && r->feed[i] != RN_FEED_TEXT) continue;
        const rl_recipe_input_info *in = rl_recipe_input_at(r->p, i);
        for (int64_t e = 0; e < r->ds->n; e++) {
            const rl_colval *v = rl_dataset_value(r->ds, e, r->feed_col[i]);
            const char *bad = NULL;
            if (r->feed[i] == RN_FEED_TEXT && v->kind != RL_COL_STRING) bad = "a string";
            if (r->feed[i] == RN_FEED_COLUMN && v->kind == RL_COL_STRING) bad = "a number or a boolean";
            if (r->feed[i] == RN_FEED_COLUMN && in->type.is_int && v->kind == RL_COL_NUMBER &&
                (v->num != floor(v->num) || fabs(v->num) > 2147483647.0))
                bad = "an integer";
            if (!bad) continue;
            return rn_fail(r, RL_ERR_ARG, "%s:%" PRId64 ": field \"%s\" is %s, but input '%s' (%s) is %s and needs %s",
                           r->cfg->data, r->ds->rec[e].line, r->cols[r->feed_col[i]],
                           v->kind == RL_COL_STRING ? "a string" : v->kind == RL_COL_BOOL ? "a boolean" : "a number",
                           in->name, rn_where(r, in, at, sizeof at),
                           in->type.tokens ? "tokens" : in->type.is_int ? "i32[B]" : "f32[B]", bad);
        }
    }
    return RL_OK;
}

static rl_status rn_load_data(rn *r) {
    const rl_runner_cfg *c = r->cfg;
    rl_rows_kind rows = RL_ROWS_SFT;
    rl_status st = rn_plan_feeds(r, &rows);
    if (st) return st;
    if (r->kind == RL_RECIPE_FULLBATCH && r->n_feed == 0) {
        if (c->data)
            return rn_fail(r, RL_ERR_ARG, "%s: the recipe declares no input, so it reads no data (drop --data)",
                           c->recipe);
        return RL_OK;
    }
    if (!c->data)
        return rn_fail(r, RL_ERR_ARG, "%s: a %s recipe needs --data (%s)", c->recipe, rl_recipe_kind_name(r->kind),
                       rows == RL_ROWS_PAIRS     ? "preference pairs: hh or pku JSONL"
                       : rows == RL_ROWS_PROMPTS ? "prompts: any JSONL with a prompt"
                                                 : "demonstrations: {\"prompt\", \"response\"} JSONL");
    char e[1024];
    if (rl_dataset_load_columns(c->data, c->data_kind, c->skip_bad_lines, r->cols, r->n_cols, &r->ds, e, sizeof e) !=
        RL_OK) {
        /* a missing column: say which input reads it */
        for (int i = 0; i < r->n_feed; i++) {
            const rl_recipe_input_info *in = rl_recipe_input_at(r->p, i);
            char need[300], at[600];
            if (r->feed[i] != RN_FEED_COLUMN && r->feed[i] != RN_FEED_TEXT) continue;
            snprintf(need, sizeof need, "field \"%s\"", r->cols[r->feed_col[i]]);
            if (strstr(e, need)) {
                size_t k = strlen(e);
                snprintf(e + k, sizeof e - k, " (input '%s' reads it, %s)", in->name, rn_where(r, in, at, sizeof at));
                break;
            }
        }
        return rn_fail(r, RL_ERR_ARG, "%s", e);
    }
    if ((st = rn_check_columns(r)) != RL_OK) return st;
    if (r->ds->report.bad) {
        r->res->bad_lines = r->ds->report.bad;
        if (!c->quiet)
            fprintf(r->log, "%s: skipped %" PRId64 " bad line%s (--skip-bad-lines); the first: %s\n", c->data,
                    r->ds->report.bad, r->ds->report.bad == 1 ? "" : "s", r->ds->report.first_bad);
    }
    if (r->ds->n == 0) return rn_fail(r, RL_ERR_ARG, "%s: no records to train on", c->data);
    for (int i = 0; i < r->n_feed; i++)
        if (r->feed[i] >= RN_FEED_SAFER && r->feed[i] <= RN_FEED_SIGN_U && r->ds->format != RL_DATA_PKU)
            return rn_fail(r, RL_ERR_ARG, "input '%s' needs safety labels (PKU-SafeRLHF data), but %s is %s data",
                           rl_recipe_input_at(r->p, i)->name, c->data, rl_data_format_name(r->ds->format));
    rl_tok_opts o = rl_tok_opts_default(r->T);
    o.pad_to_longest = 1;                                 /* short batches cost less; shapes may change between steps */
    o.chat = r->chat;
    if (rows == RL_ROWS_PROMPTS) {
        /* room for the generated tokens: the recipe's max_new when it has one, else half the context */
        const rl_recipe_hyper_info *mn = rl_recipe_hyper(r->p, "max_new");
        o.max_prompt = r->T / 2;
        if (mn && !mn->str && mn->num >= 1 && mn->num < (double)r->T) o.max_prompt = r->T - (int64_t)mn->num;
    }
    r->td = rl_tokdata_new(r->ds, r->tok, rows, &o, e, sizeof e);
    if (!r->td) return rn_fail(r, RL_ERR_ARG, "%s", e);
    r->pad_id = rl_tokdata_pad_id(r->td);
    r->eos_id = rl_tokdata_eos_id(r->td);
    r->env.pad_id = r->pad_id;
    r->env.eos_id = r->eos_id;
    rl_trunc_stats ts = rl_tokdata_stats(r->td);
    if (ts.rows_truncated && !c->quiet)
        fprintf(r->log,
                "%s: %" PRId64 " of %" PRId64 " rows were cut to %" PRId64 " tokens (the longest has %" PRId64 ")\n",
                c->data, ts.rows_truncated, ts.rows, rows == RL_ROWS_PROMPTS ? o.max_prompt : r->T, ts.max_len);
    int64_t n = rl_tokdata_size(r->td);
    if (r->kind == RL_RECIPE_FULLBATCH) {
        r->whole = rl_data_batch_new(r->td, n);
        int64_t *idx = malloc(sizeof(int64_t) * (size_t)n);
        if (!r->whole || !idx) {
            free(idx);
            return rn_fail(r, RL_ERR_MEMORY, "out of memory");
        }
        for (int64_t i = 0; i < n; i++) idx[i] = i;
        rl_status fs = rl_data_batch_fill(r->td, idx, n, r->whole);
        free(idx);
        if (fs) return rn_fail(r, fs, "%s: cannot make the full batch", c->data);
        r->batch = r->whole;
        return RL_OK;
    }
    r->it = rl_batcher_new(r->td, c->batch, c->seed, 1);
    if (!r->it) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    if (r->kind != RL_RECIPE_ONLINE) rl_batcher_set_length_groups(r->it, c->group_by_length);
    int ptx = 0;
    for (int i = 0; i < r->n_feed; i++) ptx |= r->feed[i] == RN_FEED_PTX;
    if (c->ptx_data && !ptx)
        return rn_fail(r, RL_ERR_ARG,
                       "--ptx-data: the recipe reads no demonstrations (an online recipe's second token "
                       "input, e.g. ppo_kl's demos with --set ptx_coef=16)");
    if (ptx) {
        if (rl_dataset_load(c->ptx_data, RL_DATA_AUTO, c->skip_bad_lines, &r->ptx_ds, e, sizeof e) != RL_OK)
            return rn_fail(r, RL_ERR_ARG, "%s", e);
        if (r->ptx_ds->n == 0) return rn_fail(r, RL_ERR_ARG, "%s: no records", c->ptx_data);
        rl_tok_opts po = rl_tok_opts_default(r->T);
        po.pad_to_longest = 1;
        po.chat = r->chat;
        if (!(r->ptx_td = rl_tokdata_new(r->ptx_ds, r->tok, RL_ROWS_SFT, &po, e, sizeof e)))
            return rn_fail(r, RL_ERR_ARG, "%s", e);
        /* its own order: the demonstrations' stream does not disturb the prompts' */
        if (!(r->ptx_it = rl_batcher_new(r->ptx_td, c->batch, c->seed ^ 0x707478ull, 1)))
            return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    }
    /* greedy samples of supervised and pairwise runs: the first prompts of the file */
    if (r->kind != RL_RECIPE_ONLINE && c->sample_every > 0) {
        o.max_prompt = r->T / 2;
        r->sample_td = rl_tokdata_new(r->ds, r->tok, RL_ROWS_PROMPTS, &o, e, sizeof e);
    }
    return RL_OK;
}

/* The rows an input is fed from. */
static const rl_rows *rn_rows_of(const rl_data_batch *b, rn_feed f) {
    switch (f) {
    case RN_FEED_CHOSEN:
        return &b->chosen;
    case RN_FEED_REJECTED:
        return &b->rejected;
    case RN_FEED_SAFER:
        return &b->safer;
    case RN_FEED_UNSAFER:
        return &b->unsafer;
    default:
        return &b->rows;
    }
}

/* The dataset record of the batch's example k. */
static int64_t rn_record_of(const rn *r, const rl_data_batch *b, int64_t k) {
    return rl_tokdata_record(r->td, b->index[k]) - r->ds->rec;
}

/* Binds input i from its data column: numbers as f32/i32 [B], or a string
 * per row tokenized alone into [B, L] rows (L the longest, at most T; mask =
 * attn = 1 on its tokens, right-padded). */
static rl_status rn_bind_column(rn *r, int i, const rl_data_batch *b) {
    const rl_recipe_input_info *in = rl_recipe_input_at(r->p, i);
    int64_t B = b->B;
    if (r->feed[i] == RN_FEED_COLUMN) {
        /* f32 or i32 [B], as the signs are bound: arena constants, rebound every step */
        float *f = malloc(sizeof(float) * (size_t)(B ? B : 1));
        int32_t *n = malloc(sizeof(int32_t) * (size_t)(B ? B : 1));
        if (!f || !n) {
            free(f), free(n);
            return rn_fail(r, RL_ERR_MEMORY, "out of memory");
        }
        for (int64_t k = 0; k < B; k++) {
            double v = rl_dataset_value(r->ds, rn_record_of(r, b, k), r->feed_col[i])->num;
            f[k] = (float)v, n[k] = (int32_t)v;
        }
        rl_tensor *t = in->type.is_int ? rl_const(r->ctx, RL_I32, 1, &B, n) : rl_const(r->ctx, RL_F32, 1, &B, f);
        free(f), free(n);
        rl_status st = t ? rl_recipe_bind_tensor(r->p, in->name, t) : rl_ctx_status(r->ctx);
        return st;
    }
    int32_t **ids = calloc((size_t)(B ? B : 1), sizeof(int32_t *));
    int64_t *len = calloc((size_t)(B ? B : 1), sizeof(int64_t)), L = 1;
    rl_status st = ids && len ? RL_OK : RL_ERR_MEMORY;
    for (int64_t k = 0; !st && k < B; k++) {
        const rl_colval *v = rl_dataset_value(r->ds, rn_record_of(r, b, k), r->feed_col[i]);
        st = rl_tokenizer_encode(r->tok, v->str, strlen(v->str), &ids[k], &len[k]);
        if (len[k] > r->T) len[k] = r->T;
        if (len[k] > L) L = len[k];
    }
    int32_t *tid = NULL, *tat = NULL;
    if (!st && (!(tid = malloc(sizeof(int32_t) * (size_t)(B * L))) || !(tat = calloc((size_t)(B * L), sizeof(int32_t)))))
        st = RL_ERR_MEMORY;
    for (int64_t k = 0; !st && k < B; k++)
        for (int64_t t = 0; t < L; t++) {
            tid[k * L + t] = t < len[k] ? ids[k][t] : r->pad_id;
            tat[k * L + t] = t < len[k];
        }
    if (!st) {
        int64_t shape[2] = {B, L};
        rl_tensor *ti = rl_const(r->ctx, RL_I32, 2, shape, tid), *ta = rl_const(r->ctx, RL_I32, 2, shape, tat);
        rl_tensor *tm = rl_const(r->ctx, RL_I32, 2, shape, tat);
        st = ti && ta && tm ? rl_recipe_bind_tokens(r->p, in->name, ti, tm, ta) : rl_ctx_status(r->ctx);
    } else if (st == RL_ERR_MEMORY) {
        rn_fail(r, st, "out of memory");
    }
    for (int64_t k = 0; ids && k < B; k++) free(ids[k]);
    free(ids), free(len), free(tid), free(tat);
    return st;
}

/* KTO's KL rows (Ethayarajh et al. 2024; TRL's KTOTrainer): row k is row
 * k's prompt followed by row k+1's response (the batch shifted by one, the
 * last row taking the first's), so that log pi(y' | x) - log pi_ref(y' | x)
 * over mismatched pairs estimates the KL term z0. Mask on the response;
 * cut to T from the response's end. */
static rl_status rn_bind_mismatched(rn *r, const char *name, const rl_rows *rw) {
    int64_t B = rw->B, W = 1;
    for (int64_t k = 0; k < B; k++) {
        int64_t j = (k + 1) % B, w = rw->prompt_len[k] + rw->len[j] - rw->prompt_len[j];
        if (w > W) W = w;
    }
    if (W > r->T) W = r->T;
    size_t n = (size_t)(B * W);
    int32_t *ids = malloc(sizeof(int32_t) * n), *mask = calloc(n, sizeof(int32_t)), *attn = calloc(n, sizeof(int32_t));
    if (!ids || !mask || !attn) {
        free(ids), free(mask), free(attn);
        return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    }
    for (size_t e = 0; e < n; e++) ids[e] = r->pad_id;
    for (int64_t k = 0; k < B; k++) {
        int64_t j = (k + 1) % B, t = 0;
        for (int64_t s = 0; s < rw->prompt_len[k] && t < W; s++, t++)
            ids[k * W + t] = rw->ids[k * rw->T + s], attn[k * W + t] = 1;
        for (int64_t s = rw->prompt_len[j]; s < rw->len[j] && t < W; s++, t++)
            ids[k * W + t] = rw->ids[j * rw->T + s], attn[k * W + t] = 1, mask[k * W + t] = 1;
    }
    int64_t shape[2] = {B, W};
    rl_tensor *ti = rl_const(r->ctx, RL_I32, 2, shape, ids), *tm = rl_const(r->ctx, RL_I32, 2, shape, mask);
    rl_tensor *ta = rl_const(r->ctx, RL_I32, 2, shape, attn);
    free(ids), free(mask), free(attn);
    return ti && tm && ta ? rl_recipe_bind_tokens(r->p, name, ti, tm, ta) : rl_ctx_status(r->ctx);
}

/* Binds the batch's arena tensors (again after every rl_ctx_reset). */
static rl_status rn_bind(rn *r) {
    const rl_data_batch *b = r->batch;
    for (int i = 0; b && i < r->n_feed; i++) {
        const char *name = rl_recipe_input_at(r->p, i)->name;
        rl_status st;
        if (r->feed[i] == RN_FEED_NONE) continue;
        if (r->feed[i] == RN_FEED_PTX) {
            const rl_rows *rw = &r->ptx_batch->rows;
            int64_t shape[2] = {rw->B, rw->T};
            rl_tensor *ids = rl_const(r->ctx, RL_I32, 2, shape, rw->ids);
            rl_tensor *mask = rl_const(r->ctx, RL_I32, 2, shape, rw->mask);
            rl_tensor *attn = rl_const(r->ctx, RL_I32, 2, shape, rw->attn);
            st = ids && mask && attn ? rl_recipe_bind_tokens(r->p, name, ids, mask, attn) : rl_ctx_status(r->ctx);
        } else if (r->feed[i] == RN_FEED_SIGN_S || r->feed[i] == RN_FEED_SIGN_U) {
            /* the signs as declared: f32 or i32 [B] */
            const float *sg = r->feed[i] == RN_FEED_SIGN_S ? b->sign_s : b->sign_u;
            int64_t B = b->B;
            rl_tensor *t;
            if (rl_recipe_input_at(r->p, i)->type.is_int) {
                int32_t *is = malloc(sizeof(int32_t) * (size_t)B);
                if (!is) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
                for (int64_t k = 0; k < B; k++) is[k] = sg[k] > 0 ? 1 : -1;
                t = rl_const(r->ctx, RL_I32, 1, &B, is);
                free(is);
            } else {
                t = rl_const(r->ctx, RL_F32, 1, &B, sg);
            }
            st = t ? rl_recipe_bind_tensor(r->p, name, t) : rl_ctx_status(r->ctx);
        } else if (r->feed[i] == RN_FEED_COLUMN || r->feed[i] == RN_FEED_TEXT) {
            st = rn_bind_column(r, i, b);
        } else if (r->feed[i] == RN_FEED_MISMATCHED) {
            st = rn_bind_mismatched(r, name, &b->rows);
        } else {
            const rl_rows *rw = rn_rows_of(b, r->feed[i]);
            int64_t shape[2] = {rw->B, rw->T};
            rl_tensor *ids = rl_const(r->ctx, RL_I32, 2, shape, rw->ids);
            rl_tensor *mask = rl_const(r->ctx, RL_I32, 2, shape, rw->mask);
            rl_tensor *attn = rl_const(r->ctx, RL_I32, 2, shape, rw->attn);
            st = ids && mask && attn ? rl_recipe_bind_tokens(r->p, name, ids, mask, attn) : rl_ctx_status(r->ctx);
        }
        if (st) {
            const char *pe = rl_recipe_program_error(r->p);
            return rn_fail(r, st, "binding input '%s': %s", name, pe ? pe : rl_ctx_error(r->ctx));
        }
    }
    return RL_OK;
}

/* Real tokens of the step's batch (for tokens/s). */
static int64_t rn_batch_tokens(const rn *r) {
    const rl_data_batch *b = r->batch;
    int64_t n = 0;
    for (int i = 0; b && i < r->n_feed; i++) {
        if (r->feed[i] >= RN_FEED_SIGN_S) continue;
        const rl_rows *rw = rn_rows_of(b, r->feed[i]);
        for (int64_t k = 0; k < rw->B; k++) n += rw->len[k];
    }
    return n;
}

/* ---- trainables and optimizers -------------------------------------------------------------- */

static rl_status rn_parse_sched(rn *r, rn_train *t, int64_t total_updates) {
    const char *s = r->cfg->lr_schedule;
    double lr = t->oc.lr;
    long long w = 0;
    double minf = 0;
    char tail;
    if (!s || !strcmp(s, "constant"))
        t->sched = rl_lr_constant(lr);
    else if (sscanf(s, "warmup:%lld%c", &w, &tail) == 1 && w >= 0)
        t->sched = rl_lr_warmup_constant(lr, w);
    else if ((sscanf(s, "cosine:%lld:%lf%c", &w, &minf, &tail) == 2 ||
              (sscanf(s, "cosine:%lld%c", &w, &tail) == 1 && (minf = 0, 1))) &&
             w >= 0 && minf >= 0 && minf <= 1) {
        if (total_updates <= w)
            return rn_fail(r, RL_ERR_ARG,
                           "--lr-schedule %s: the warm-up (%lld updates) must be shorter than the run "
                           "(%" PRId64 " updates)",
                           s, w, total_updates);
        t->sched = rl_lr_warmup_cosine(lr, lr * minf, w, total_updates);
    } else {
        return rn_fail(r, RL_ERR_ARG, "--lr-schedule: '%s' is not constant, warmup:W or cosine:W[:MIN_FRACTION]", s);
    }
    if (rl_lr_sched_check(r->ctx, &t->sched) != RL_OK) {
        rl_status st = rn_fail(r, RL_ERR_ARG, "--lr-schedule %s (%s): %s", s, t->name, rl_ctx_error(r->ctx));
        rl_ctx_clear_error(r->ctx);
        return st;
    }
    return RL_OK;
}

static rl_status rn_make_optimizers(rn *r, int64_t total_updates) {
    int nm = r->n_models, np = rl_recipe_n_params(r->p);
    r->train = calloc((size_t)(nm + np) + 1, sizeof(rn_train));
    if (!r->train) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    for (int i = 0; i < nm + np; i++) {
        rn_train t;
        memset(&t, 0, sizeof t);
        t.loss = -1;
        if (i < nm) {
            rn_model *m = &r->models[i];
            if (!m->trainable) continue;
            t.name = m->name;
            t.index = i;
            t.n = m->m->n_tensors;
            t.tensors = m->m->tensors;
            t.oc = rl_recipe_model_at(r->p, i)->optim;
        } else {
            const rl_recipe_param_info *pi = rl_recipe_param_at(r->p, i - nm);
            t.name = pi->name;
            t.is_param = 1;
            t.index = i - nm;
            t.n = 1;
            t.tensors = malloc(sizeof(rl_tensor *));
            if (!t.tensors) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
            t.tensors[0] = pi->tensor;
            t.oc = pi->optim;
        }
        t.keys = calloc((size_t)t.n, sizeof(char *));
        if (!t.keys) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
        for (int k = 0; k < t.n; k++) {
            size_t len = strlen(t.name) + strlen(t.tensors[k]->name) + 16;
            t.keys[k] = malloc(len);
            if (!t.keys[k]) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
            if (t.is_param)
                snprintf(t.keys[k], len, "params/%s", t.name);
            else
                snprintf(t.keys[k], len, "%s/%s", t.name, t.tensors[k]->name);
        }
        if (t.oc.kind && !strcmp(t.oc.kind, "sgd")) {
            rl_sgd_cfg sc = {t.oc.momentum, t.oc.weight_decay, t.oc.nesterov};
            t.opt = rl_optim_sgd_new(r->ctx, t.tensors, t.n, &sc);
        } else {
            rl_adamw_cfg ac = {t.oc.beta1, t.oc.beta2, t.oc.eps, t.oc.weight_decay};
            t.opt = rl_optim_adamw_new(r->ctx, t.tensors, t.n, &ac);
        }
        r->train[r->n_train++] = t; /* owned by the run from here (freed on failure too) */
        if (!t.opt) return rn_fail(r, RL_ERR_ARG, "optimizer of '%s': %s", t.name, rl_ctx_error(r->ctx));
        rl_status st = rn_parse_sched(r, &r->train[r->n_train - 1], total_updates);
        if (st) return st;
    }
    /* which loss trains what (the audit: one loss per trainable) */
    for (int l = 0; l < r->n_losses; l++) {
        const rl_recipe_loss_info *li = rl_recipe_loss_at(r->p, l);
        for (int k = 0; k < li->n_trainables; k++)
            for (int t = 0; t < r->n_train; t++)
                if (!strcmp(r->train[t].name, li->trainables[k])) r->train[t].loss = l;
    }
    return RL_OK;
}

/* ---- one update ------------------------------------------------------------------------------ */

/* Multiplies every gradient of t by f (averaging accumulated micro-batches). */
static rl_status rn_scale_grads(rn *r, rn_train *t, double f) {
    for (int k = 0; k < t->n; k++) {
        rl_tensor *g = t->tensors[k]->grad;
        size_t nb = (size_t)g->numel * rl_dtype_size(g->dtype);
        void *h = malloc(nb ? nb : 1);
        if (!h) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
        rl_status st = rl_tensor_read(r->ctx, g, h, nb);
        if (g->dtype == RL_F32)
            for (int64_t i = 0; i < g->numel; i++) ((float *)h)[i] = (float)(((float *)h)[i] * f);
        else
            for (int64_t i = 0; i < g->numel; i++) ((double *)h)[i] *= f;
        if (!st) st = rl_tensor_write(r->ctx, g, h, nb);
        free(h);
        if (st) return rn_fail(r, st, "scaling gradients: %s", rl_ctx_error(r->ctx));
    }
    return RL_OK;
}

/* One update: evaluates the recipe over each row range (micro-batches),
 * back-propagates the sum of the losses, averages the gradients over the
 * ranges, steps every trainable from them (each with its optimizer, clip
 * and schedule), projects the params into their bounds, and advances the
 * recipe's step() counter. The losses and metrics go into the step's means. */
static rl_status rn_update(rn *r, const int64_t (*ranges)[2], int n_ranges) {
    rl_ctx *ctx = r->ctx;
    int64_t policy_steps = rl_recipe_step(r->p);
    for (int t = 0; t < r->n_train; t++)
        if (r->train[t].loss >= 0) rl_optim_zero_grad(r->train[t].opt);
    for (int k = 0; k < n_ranges; k++) {
        rl_status st = r->kind == RL_RECIPE_ONLINE ? RL_OK : rn_bind(r);
        if (st) return st;
        st = rl_recipe_run_loss(r->p, ctx, ranges[k][0], ranges[k][1]);
        if (st) {
            const char *pe = rl_recipe_program_error(r->p);
            return rn_fail(r, st, "%s", pe ? pe : rl_ctx_error(ctx) ? rl_ctx_error(ctx) : "the loss failed");
        }
        rl_tensor *total = NULL;
        for (int l = 0; l < r->n_losses; l++) {
            rl_tensor *v = rl_recipe_loss(r->p, l);
            r->acc[l] += rl_tensor_get(ctx, v, 0);
            if (v->ndim) v = rl_reshape(ctx, v, 0, NULL);
            total = total ? rl_add(ctx, total, v) : v;
        }
        for (int m = 0; m < r->n_metrics; m++) {
            rl_tensor *v = rl_recipe_metric(r->p, m);
            r->acc[r->n_losses + m] += v ? rl_tensor_get(ctx, v, 0) : NAN;
        }
        r->acc_n++;
        if (total && rl_backward(ctx, total) != RL_OK) {
            st = rn_fail(r, rl_ctx_status(ctx), "backward: %s", rl_ctx_error(ctx));
            rl_ctx_reset(ctx);
            return st;
        }
        rl_ctx_reset(ctx);
    }
    for (int i = 0; i < r->n_train; i++) {
        rn_train *t = &r->train[i];
        if (t->loss < 0) continue;
        if (n_ranges > 1) {
            rl_status st = rn_scale_grads(r, t, 1.0 / n_ranges);
            if (st) return st;
        }
        double norm = rl_grad_clip_norm(ctx, t->tensors, t->n, t->oc.clip > 0 ? t->oc.clip : 1e300);
        if (!isfinite(norm)) {
            /* a non-finite gradient would poison the moments for good */
            if (!t->skipped && !r->cfg->quiet)
                fprintf(stderr,
                        "rlhf train: warning: step %" PRId64 ": '%s' has a non-finite gradient norm; its "
                        "update is skipped (counted in the checkpoint)\n",
                        r->step, t->name);
            t->skipped++;
            rl_ctx_clear_error(ctx);
            continue;
        }
        t->norm_sum += norm;
        t->n_norm++;
        t->lr = rl_lr_schedule(&t->sched, rl_optim_step_count(t->opt));
        if (rl_optim_step(t->opt, t->lr) != RL_OK)
            return rn_fail(r, rl_ctx_status(ctx), "optimizer step of '%s': %s", t->name, rl_ctx_error(ctx));
    }
    rl_recipe_project_params(r->p, ctx);
    rl_recipe_set_step(r->p, policy_steps + 1);
    return RL_OK;
}

/* ---- one step of each kind ---------------------------------------------------------------------- */

static rl_status rn_step_data(rn *r) {
    r->batch = rl_batcher_next(r->it);
    if (!r->batch) return rn_fail(r, RL_ERR_STATE, "%s: the batcher gave no batch", r->cfg->data);
    r->step_tokens = rn_batch_tokens(r);
    int64_t B = r->batch->B, M = r->cfg->minibatch > 0 && r->cfg->minibatch < B ? r->cfg->minibatch : B;
    int n = (int)((B + M - 1) / M);
    int64_t(*ranges)[2] = malloc(sizeof *ranges * (size_t)n);
    if (!ranges) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    for (int k = 0; k < n; k++) {
        ranges[k][0] = n > 1 ? k * M : -1;
        ranges[k][1] = n > 1 ? (k + 1) * M : -1;
    }
    rl_status st = rn_update(r, (const int64_t(*)[2])ranges, n);
    free(ranges);
    return st;
}

static rl_status rn_step_fullbatch(rn *r) {
    static const int64_t all[1][2] = {{-1, -1}};
    r->step_tokens = rn_batch_tokens(r);
    return rn_update(r, all, 1);
}

static rl_status rn_step_online(rn *r) {
    r->batch = rl_batcher_next(r->it);
    if (!r->batch) return rn_fail(r, RL_ERR_STATE, "%s: the batcher gave no batch", r->cfg->data);
    if (r->ptx_it && !(r->ptx_batch = rl_batcher_next(r->ptx_it)))
        return rn_fail(r, RL_ERR_STATE, "%s: the batcher gave no batch", r->cfg->ptx_data);
    rl_status st = rn_bind(r);
    if (!st) st = rl_recipe_run_rollout(r->p, r->ctx);
    if (st) {
        const char *pe = rl_recipe_program_error(r->p);
        return rn_fail(r, st, "rollout: %s", pe ? pe : rl_ctx_error(r->ctx) ? rl_ctx_error(r->ctx) : "failed");
    }
    /* the generated batch, for tokens/s and samples */
    r->step_tokens = 0;
    for (int i = 0; i < rl_recipe_n_nodes(r->p); i++) {
        const rl_recipe_node *nd = rl_recipe_node_at(r->p, i);
        if (strcmp(nd->op, "generate") || !nd->name) continue;
        rl_tensor *seq = rl_recipe_value_of(r->p, nd->name);
        if (seq) r->step_tokens += seq->numel;
    }
    if (r->cfg->sample_every > 0 && r->step % r->cfg->sample_every == 0) rn_sample_rollout(r, &r->batch->rows);
    rl_ctx_reset(r->ctx);
    int64_t B = r->batch->B, M = r->cfg->minibatch > 0 && r->cfg->minibatch < B ? r->cfg->minibatch : B;
    int n = (int)((B + M - 1) / M);
    int *order = malloc(sizeof(int) * (size_t)n);
    if (!order) return rn_fail(r, RL_ERR_MEMORY, "out of memory");
    for (int e = 0; e < r->cfg->ppo_epochs && !st; e++) {
        /* a fresh seeded order of the minibatches every epoch */
        for (int k = 0; k < n; k++) order[k] = k;
        for (int k = n - 1; k > 0; k--) {
            int j = (int)(rl_rng_next(&r->rng) % (uint64_t)(k + 1));
            int x = order[k];
            order[k] = order[j], order[j] = x;
        }
        for (int k = 0; k < n && !st; k++) {
            int64_t range[1][2] = {{order[k] * M, order[k] * M + M < B ? order[k] * M + M : B}};
            if (n == 1) range[0][0] = range[0][1] = -1;
            st = rn_update(r, (const int64_t(*)[2])range, 1);
        }
    }
    free(order);
    return st;
}

/* ---- the run ------------------------------------------------------------------------------------ */

static void rn_free(rn *r) {
    rn_log_close(r);
    for (int t = 0; t < r->n_train; t++) {
        rl_optim_free(r->train[t].opt);
        for (int k = 0; r->train[t].keys && k < r->train[t].n; k++) free(r->train[t].keys[k]);
        free(r->train[t].keys);
        if (r->train[t].is_param) free(r->train[t].tensors);
    }
    free(r->train);
    rl_recipe_program_free(r->p);
    for (int i = 0; i < r->n_models; i++)
        if (r->models[i].m) rl_model_free(r->ctx, r->models[i].m);
    free(r->models);
    rl_recipe_free(r->recipe);
    rl_batcher_free(r->it);
    rl_batcher_free(r->ptx_it);
    rl_tokdata_free(r->ptx_td);
    rl_dataset_free(r->ptx_ds);
    rl_data_batch_free(r->whole);
    rl_tokdata_free(r->sample_td);
    rl_tokdata_free(r->td);
    rl_dataset_free(r->ds);
    rl_tokenizer_free(r->tok);
    rl_chat_template_free(r->chat);
    free(r->feed);
    free(r->feed_col);
    free(r->cols);
    free(r->acc);
    if (r->ctx) rl_ctx_free(r->ctx);
}

/* Steps of the run (see rl_runner_cfg's steps and epochs). */
static int64_t rn_total_steps(const rn *r) {
    const rl_runner_cfg *c = r->cfg;
    if (c->steps > 0) return c->steps;
    if (r->kind == RL_RECIPE_FULLBATCH) return c->epochs > 0 ? (int64_t)ceil(c->epochs) : 100;
    double e = c->epochs > 0 ? c->epochs : 1.0;
    double s = ceil(e * (double)rl_tokdata_size(r->td) / (double)c->batch);
    return s < 1 ? 1 : (int64_t)s;
}

static rl_status rn_setup(rn *r) {
    const rl_runner_cfg *c = r->cfg;
    if (c->batch < 1) return rn_fail(r, RL_ERR_ARG, "--batch must be at least 1");
    if (c->ppo_epochs < 1) return rn_fail(r, RL_ERR_ARG, "--ppo-epochs must be at least 1");
    if (c->threads > 0) omp_set_num_threads(c->threads);
    rl_status st = rn_load_recipe(r);
    if (st) return st;
    if (c->out)
        snprintf(r->out, sizeof r->out, "%s", c->out);
    else
        snprintf(r->out, sizeof r->out, "runs/%s", rl_recipe_name(r->recipe)[0] ? rl_recipe_name(r->recipe) : "run");
    char e[1024];
    if (!(r->tok = rl_tokenizer_open(c->tokenizer, e, sizeof e))) return rn_fail(r, RL_ERR_IO, "--tokenizer: %s", e);
    if (rn_open_chat_template(r) != RL_OK) return RL_ERR_IO;
    if (!(r->ctx = rl_ctx_new(c->device)))
        return rn_fail(r, RL_ERR_BACKEND, "--device %s: the backend cannot be started", c->device);
    if ((st = rn_compile(r)) || (st = rn_make_models(r)) || (st = rn_load_data(r))) return st;
    if (r->kind != RL_RECIPE_FULLBATCH && c->minibatch > 0 && c->batch % c->minibatch && r->kind != RL_RECIPE_ONLINE)
        return rn_fail(r, RL_ERR_ARG,
                       "--minibatch %" PRId64 " must divide --batch %" PRId64
                       " (micro-batches are averaged with equal weights)",
                       c->minibatch, c->batch);
    r->total_steps = rn_total_steps(r);
    int64_t B = c->batch, M = c->minibatch > 0 && c->minibatch < B ? c->minibatch : B;
    r->updates_per_step = r->kind == RL_RECIPE_ONLINE ? (int64_t)c->ppo_epochs * ((B + M - 1) / M) : 1;
    rl_rng_seed(&r->rng, c->seed ^ 0x72756e6e6572ull); /* "runner" */
    if ((st = rn_make_optimizers(r, r->total_steps * r->updates_per_step))) return st;
    if (!rl_path_mkdirs(r->out))
        return rn_fail(r, RL_ERR_IO, "%s: cannot create the directory: %s", r->out, strerror(errno));
    return RL_OK;
}

rl_status rl_runner_run(const rl_runner_cfg *c, rl_runner_result *res, char *err, size_t errlen) {
    rl_runner_result dummy;
    if (!res) res = &dummy;
    memset(res, 0, sizeof *res);
    res->first_loss = res->last_loss = NAN;
    if (err && errlen) err[0] = 0;
    rn *r = calloc(1, sizeof(rn));
    if (!r) {
        snprintf(err, errlen, "out of memory");
        return RL_ERR_MEMORY;
    }
    r->cfg = c;
    r->err = err;
    r->errlen = errlen;
    r->res = res;
    r->log = c->log ? c->log : stdout;
    r->tty = !c->quiet && isatty(fileno(r->log));
    r->t_start = r->t_step = rl_now();
    rl_status st = rn_setup(r);
    char path[RN_PATH];
    if (!st) {
        struct stat sb;
        int have = stat(rn_path(r, "checkpoint.safetensors", path), &sb) == 0;
        if (have && !c->resume)
            st = rn_fail(r, RL_ERR_ARG,
                         "%s holds a checkpoint: pass --resume to continue that run, or choose another --out", r->out);
        else if (have) {
            rn_ckpt_clean_tmp(r);
            st = rn_ckpt_load(r);
        } else if (c->resume && !c->quiet)
            fprintf(r->log, "rlhf train: --resume: %s has no checkpoint yet; starting from step 0\n", r->out);
    }
    if (!st && r->step == 0) st = rn_write_run_json(r);
    if (!st) st = rn_log_open(r);
    res->first_step = r->step + 1;
    if (!st && !c->quiet) {
        fprintf(r->log, "rlhf train: %s (%s), %" PRId64 " steps%s, out %s\n", rl_recipe_name(r->recipe),
                rl_recipe_kind_name(r->kind), r->total_steps, r->step ? " (resumed)" : "", r->out);
        if (r->step >= r->total_steps)
            fprintf(r->log, "rlhf train: the checkpoint is at step %" PRId64 ": nothing left to train\n", r->step);
    }
    while (!st && r->step < r->total_steps) {
        r->step++;
        double t0 = rl_now();
        memset(r->acc, 0, sizeof(double) * (size_t)(r->n_losses + r->n_metrics));
        r->acc_n = 0;
        for (int t = 0; t < r->n_train; t++) r->train[t].norm_sum = 0, r->train[t].n_norm = 0;
        st = r->kind == RL_RECIPE_ONLINE      ? rn_step_online(r)
             : r->kind == RL_RECIPE_FULLBATCH ? rn_step_fullbatch(r)
                                              : rn_step_data(r);
        if (st) {
            r->step--;
            break;
        }
        r->tokens += r->step_tokens;
        r->tokens_run += r->step_tokens;
        r->step_loss = 0;
        for (int l = 0; l < r->n_losses; l++) r->step_loss += r->acc[l] / (r->acc_n ? r->acc_n : 1);
        if (r->step == res->first_step) res->first_loss = r->step_loss;
        res->last_loss = r->step_loss;
        res->steps = r->step;
        if (r->kind != RL_RECIPE_ONLINE && c->sample_every > 0 && r->step % c->sample_every == 0) rn_sample_greedy(r);
        r->t_step = rl_now();
        rn_log_step(r, r->t_step - t0);
        if (c->ckpt_every > 0 && r->step % c->ckpt_every == 0 && r->step < r->total_steps) st = rn_ckpt_save(r);
    }
    if (!st) {
        res->steps = r->step;
        st = rn_ckpt_save(r);
        if (!st) st = rn_export(r);
        rn_log_end(r);
    }
    rn_free(r);
    free(r);
    return st;
}
