/* recipes/world/judge.c - the oracle-judged evaluation of policies and of
 * reward/cost models (rl_judge.h): sampling, judging, tallies, the printed
 * summary and its JSON file.
 */
#include "rl_judge.h"

#include "rl_checkpoint.h"
#include "rl_data.h"
#include "rl_file.h"
#include "rl_model.h"
#include "rl_ops.h"
#include "rl_rng.h"
#include "rl_tokenizer.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

void rl_judge_opts_init(rl_judge_opts *o) {
    memset(o, 0, sizeof *o);
    o->samples = 1;
    o->max_new = 48;
    o->temperature = 1.0;
    o->tok = "bytes";
    o->device = "cpu";
    o->batch = 64;
    o->report = stdout;
    o->log = stderr;
}

void rl_judge_tally_add(rl_judge_tallies *t, const rl_judgement *j) {
    t->n_responses++;
    if (j->family == RL_FAM_UNKNOWN) {
        t->unjudged++;
        return;
    }
    rl_judge_tally *f = &t->fam[j->family];
    f->n++;
    f->help += j->helpfulness;
    f->correct += j->correct;
    f->refusal += j->kind == RL_RESP_REFUSAL;
    f->comply += j->kind == RL_RESP_COMPLIANCE;
    f->offtopic += j->kind == RL_RESP_OFFTOPIC;
    f->answer += j->kind == RL_RESP_ANSWER;
    f->unsafe += !j->safe;
}

/* ---- output ------------------------------------------------------------------------ */

static void jd_printf(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void jd_printf(FILE *f, const char *fmt, ...) {
    if (!f) return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
}

static json_t *jd_ratio(double num, int64_t den) { return den > 0 ? json_real(num / (double)den) : json_null(); }

static void jd_print_ratio(FILE *f, const char *label, double num, int64_t den, const char *what) {
    if (den > 0) jd_printf(f, "  %-24s %.3f  (%" PRId64 " %s)\n", label, num / (double)den, den, what);
    else jd_printf(f, "  %-24s  n/a   (no %s)\n", label, what);
}

/* Writes the summary to path (when not NULL) whole or not at all. */
static rl_status jd_write_json(json_t *o, const char *path, char *err, size_t n) {
    if (!path) return RL_OK;
    rl_status st = rl_path_make_parent(path, err, n);
    if (st != RL_OK) return st;
    rl_atomic_file af;
    FILE *f = rl_atomic_open(&af, path, err, n);
    if (!f) return RL_ERR_IO;
    if (json_dumpf(o, f, JSON_INDENT(2)) != 0) {
        rl_atomic_abort(&af);
        return rl_errf(err, n, RL_ERR_IO, "cannot write %s", path);
    }
    return rl_atomic_commit(&af, err, n);
}

static rl_tokenizer *jd_tokenizer(const rl_judge_opts *a, const rl_model *m, char *err, size_t n) {
    rl_tokenizer *tok = rl_tokenizer_open(a->tok, err, n);
    if (!tok) return NULL;
    if (rl_tokenizer_vocab_size(tok) > m->vocab) {
        rl_errf(err, n, RL_ERR_ARG,
                "the tokenizer has %d ids but the model's vocabulary only %" PRId64
                " (use --tokenizer DIR for a BPE model)",
                rl_tokenizer_vocab_size(tok), (int64_t)m->vocab);
        rl_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}

/* Sums x[b, t] over t for each row of a [B, T] f32/f64 tensor into out[b]. */
static int jd_row_sums(rl_ctx *ctx, const rl_tensor *x, double *out) {
    if (!x) return 0;
    int64_t B = x->shape[0], T = x->shape[1];
    double *h = malloc(sizeof(double) * (size_t)(B * T));
    if (!h) return 0;
    for (int64_t i = 0; i < B * T; i++) h[i] = rl_tensor_get(ctx, x, i);
    for (int64_t b = 0; b < B; b++) {
        out[b] = 0;
        for (int64_t t = 0; t < T; t++) out[b] += h[b * T + t];
    }
    free(h);
    return 1;
}

static rl_ctx *jd_ctx(const rl_judge_opts *a, char *err, size_t n) {
    rl_ctx *ctx = rl_ctx_new(a->device);
    if (!ctx) rl_errf(err, n, RL_ERR_ARG, "cannot open the '%s' device", a->device);
    return ctx;
}

/* One line of the dump file: the response and its judgement. */
static void jd_dump_line(FILE *dump, const rl_record *rec, const char *text, size_t len, const rl_judgement *j,
                         const double *kl) {
    char *clean = rl_utf8_sanitize(text, len);
    json_t *d = clean ? json_pack("{s:s,s:s,s:s,s:s}", "prompt", rec->prompt, "response", clean, "family",
                                  rl_family_name(j->family), "kind", rl_resp_kind_name(j->kind))
                      : NULL;
    free(clean);
    if (d && j->family != RL_FAM_UNKNOWN) {
        json_object_set_new(d, "helpfulness", json_real(j->helpfulness));
        json_object_set_new(d, "safe", json_boolean(j->safe));
    }
    if (d && kl) json_object_set_new(d, "kl", json_real(*kl));
    char *s = d ? json_dumps(d, JSON_COMPACT) : NULL;
    if (s) fprintf(dump, "%s\n", s);
    free(s);
    json_decref(d);
}

/* The policy summary's JSON object. */
static json_t *jd_policy_json(const rl_judge_opts *a, const rl_judge_tallies *t, int64_t n_prompts, int has_ref,
                              int64_t prompts_truncated) {
    const rl_judge_tally *ar = &t->fam[RL_FAM_ARITH], *be = &t->fam[RL_FAM_BENIGN], *ha = &t->fam[RL_FAM_HARMFUL];
    int64_t judged = ar->n + be->n + ha->n;
    json_t *s = json_object();
    json_object_set_new(s, "mode", json_string("policy"));
    json_object_set_new(s, "model", json_string(a->model));
    json_object_set_new(s, "ref", a->ref ? json_string(a->ref) : json_null());
    json_object_set_new(s, "prompts", json_string(a->prompts));
    json_object_set_new(s, "n_prompts", json_integer(n_prompts));
    json_object_set_new(s, "samples", json_integer(a->samples));
    json_object_set_new(s, "n_responses", json_integer(t->n_responses));
    json_object_set_new(s, "temperature", json_real(a->temperature));
    json_object_set_new(s, "greedy", json_boolean(a->greedy));
    json_object_set_new(s, "max_new", json_integer(a->max_new));
    json_object_set_new(s, "seed", json_integer((json_int_t)a->seed));
    json_object_set_new(s, "arith_accuracy", jd_ratio((double)ar->correct, ar->n));
    json_object_set_new(s, "benign_helpfulness", jd_ratio(be->help, be->n));
    json_object_set_new(s, "harmful_compliance", jd_ratio((double)ha->comply, ha->n));
    json_object_set_new(s, "needless_refusal", jd_ratio((double)(ar->refusal + be->refusal), ar->n + be->n));
    json_object_set_new(s, "helpfulness", jd_ratio(ar->help + be->help + ha->help, judged));
    json_object_set_new(s, "unsafe_rate", jd_ratio((double)(ar->unsafe + be->unsafe + ha->unsafe), judged));
    json_object_set_new(s, "kl_ref", has_ref ? json_real(t->kl_sum / (double)t->n_responses) : json_null());
    json_object_set_new(s, "mean_response_tokens", jd_ratio((double)t->response_tokens, t->n_responses));
    json_object_set_new(s, "unjudged", json_integer(t->unjudged));
    json_object_set_new(s, "prompts_truncated", json_integer(prompts_truncated));
    json_t *fams = json_object();
    for (int f = 0; f < RL_FAM_COUNT; f++) {
        const rl_judge_tally *x = &t->fam[f];
        json_object_set_new(fams, rl_family_name((rl_family)f),
                            json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "n", (json_int_t)x->n, "helpfulness",
                                      jd_ratio(x->help, x->n), "correct", jd_ratio((double)x->correct, x->n),
                                      "answer", jd_ratio((double)x->answer, x->n), "refusal",
                                      jd_ratio((double)x->refusal, x->n), "compliance",
                                      jd_ratio((double)x->comply, x->n), "off_topic",
                                      jd_ratio((double)x->offtopic, x->n), "unsafe", jd_ratio((double)x->unsafe, x->n)));
    }
    json_object_set_new(s, "families", fams);
    return s;
}

static void jd_policy_report(const rl_judge_opts *a, const rl_judge_tallies *t, int64_t n_prompts, int has_ref,
                             double secs) {
    FILE *f = a->report;
    const rl_judge_tally *ar = &t->fam[RL_FAM_ARITH], *be = &t->fam[RL_FAM_BENIGN], *ha = &t->fam[RL_FAM_HARMFUL];
    int64_t judged = ar->n + be->n + ha->n;
    jd_printf(f, "eval: %" PRId64 " prompts x %" PRId64 " samples = %" PRId64 " responses (%s, %s %g, seed %" PRIu64
                 ", %.1f s)\n",
              n_prompts, a->samples, t->n_responses, a->model, a->greedy ? "greedy" : "temperature",
              a->greedy ? 0.0 : a->temperature, a->seed, secs);
    jd_print_ratio(f, "arithmetic accuracy", (double)ar->correct, ar->n, "arith responses");
    jd_print_ratio(f, "benign helpfulness", be->help, be->n, "benign responses");
    jd_print_ratio(f, "harmful compliance rate", (double)ha->comply, ha->n, "harmful responses");
    jd_print_ratio(f, "needless refusal rate", (double)(ar->refusal + be->refusal), ar->n + be->n,
                   "arith+benign responses");
    jd_print_ratio(f, "mean helpfulness", ar->help + be->help + ha->help, judged, "judged responses");
    if (has_ref)
        jd_printf(f, "  %-24s %.4f  nats per sequence (vs %s)\n", "KL to reference",
                  t->kl_sum / (double)t->n_responses, a->ref);
    if (t->unjudged)
        jd_printf(f, "  %" PRId64 " responses to prompts outside the synthetic world were not judged\n", t->unjudged);
}

/* ---- policies on prompts ----------------------------------------------------------- */

rl_status rl_judge_policy(const rl_judge_opts *a, rl_judge_tallies *tallies, char *err, size_t errn) {
    if (!a->model || !a->prompts) return rl_errf(err, errn, RL_ERR_ARG, "a policy evaluation needs a model and prompts");
    if (a->samples < 1 || a->batch < 1 || a->max_new < 1 || !(a->temperature > 0))
        return rl_errf(err, errn, RL_ERR_ARG, "samples, batch and max_new must be >= 1 and temperature > 0");
    rl_ctx *ctx = jd_ctx(a, err, errn);
    if (!ctx) return RL_ERR_ARG;
    rl_model *m = NULL, *ref = NULL;
    rl_tokenizer *tok = NULL;
    rl_dataset *ds = NULL;
    rl_tokdata *td = NULL;
    rl_data_batch *batch = NULL;
    rl_atomic_file dump_file;
    FILE *dump = NULL;
    json_t *summary = NULL;
    double *kl = NULL, *lp_a = NULL;
    int64_t *idx = NULL;
    rl_status st = RL_ERR_ARG;
    if (rl_model_load(ctx, a->model, RL_HEAD_LM, RL_F32, 0, &m, err, errn) != RL_OK ||
        (a->ref && rl_model_load(ctx, a->ref, RL_HEAD_LM, RL_F32, 0, &ref, err, errn) != RL_OK))
        goto done;
    if (ref && ref->vocab != m->vocab) {
        rl_errf(err, errn, RL_ERR_ARG, "the reference's vocabulary (%" PRId64 ") differs from the model's (%" PRId64 ")",
                (int64_t)ref->vocab, (int64_t)m->vocab);
        goto done;
    }
    if (!(tok = jd_tokenizer(a, m, err, errn))) goto done;
    if (rl_dataset_load(a->prompts, RL_DATA_AUTO, 0, &ds, err, errn) != RL_OK) goto done;
    if (ds->n == 0) {
        rl_errf(err, errn, RL_ERR_ARG, "%s holds no prompts", a->prompts);
        goto done;
    }
    int64_t n_ctx = m->n_ctx;
    if (ref && ref->n_ctx < n_ctx) n_ctx = ref->n_ctx;
    if (a->max_new >= n_ctx) {
        rl_errf(err, errn, RL_ERR_ARG, "--max-new %" PRId64 " leaves no room for a prompt in a context of %" PRId64,
                a->max_new, n_ctx);
        goto done;
    }
    rl_tok_opts o = rl_tok_opts_default(n_ctx);
    o.tmpl = a->tmpl;
    o.max_prompt = n_ctx - a->max_new;
    o.pad_to_longest = 1;
    if (!(td = rl_tokdata_new(ds, tok, RL_ROWS_PROMPTS, &o, err, errn))) goto done;
    rl_trunc_stats ts = rl_tokdata_stats(td);
    if (ts.rows_truncated && a->log)
        fprintf(a->log, "warning: %s: %" PRId64 " prompts were cut to their last %" PRId64 " tokens\n", a->prompts,
                ts.rows_truncated, o.max_prompt);
    if (a->dump) {
        st = rl_path_make_parent(a->dump, err, errn);
        if (st != RL_OK || !(dump = rl_atomic_open(&dump_file, a->dump, err, errn))) {
            st = st != RL_OK ? st : RL_ERR_IO;
            goto done;
        }
        st = RL_ERR_ARG;
    }
    int64_t B = a->batch;
    batch = rl_data_batch_new(td, B);
    kl = calloc((size_t)B, sizeof *kl);
    lp_a = calloc((size_t)B, sizeof *lp_a);
    idx = malloc(sizeof(int64_t) * (size_t)B);
    if (!batch || !kl || !lp_a || !idx) {
        st = rl_errf(err, errn, RL_ERR_MEMORY, "out of memory");
        goto done;
    }
    rl_gen_cfg gc = rl_gen_cfg_default();
    gc.max_new_tokens = a->max_new;
    gc.greedy = a->greedy;
    gc.temperature = a->temperature;
    gc.eos_id = rl_tokdata_eos_id(td);
    gc.pad_id = rl_tokdata_pad_id(td);
    rl_rng rng;
    rl_rng_seed(&rng, a->seed);
    rl_judge_tallies t;
    memset(&t, 0, sizeof t);
    const int64_t total = ds->n * a->samples;
    /* the text ends at EOS, or with a byte tokenizer at any other special
     * token (an undertrained model can emit <|pad|> or reserved ids, whose
     * text must not be judged as words) */
    const int bytes_tok = rl_tokenizer_kind_of(tok) == RL_TOKENIZER_BYTES;
    double t0 = rl_now();
    for (int64_t start = 0; start < total; start += B) {
        int64_t nb = total - start < B ? total - start : B;
        for (int64_t k = 0; k < nb; k++) idx[k] = (start + k) % ds->n;
        rl_data_batch_fill(td, idx, nb, batch);
        rl_gen_out g;
        if (rl_model_generate(ctx, m, batch->rows.ids, batch->rows.len, nb, batch->rows.T, &gc, &rng, &g) != RL_OK) {
            rl_errf(err, errn, RL_ERR_ARG, "generation failed: %s", rl_ctx_error(ctx));
            goto done;
        }
        if (ref) {
            rl_ctx_set_grad(ctx, 0);
            int64_t shape[2] = {g.B, g.T};
            rl_tensor *ids = rl_const(ctx, RL_I32, 2, shape, g.tokens);
            rl_tensor *mask = rl_const(ctx, RL_I32, 2, shape, g.response_mask);
            if (!jd_row_sums(ctx, rl_model_token_logprobs(ctx, m, ids, mask), lp_a) ||
                !jd_row_sums(ctx, rl_model_token_logprobs(ctx, ref, ids, mask), kl)) {
                rl_errf(err, errn, RL_ERR_ARG, "log-probabilities failed: %s", rl_ctx_error(ctx));
                rl_gen_out_free(&g);
                goto done;
            }
            for (int64_t b = 0; b < g.B; b++) kl[b] = lp_a[b] - kl[b];
            rl_ctx_reset(ctx);
        }
        for (int64_t b = 0; b < g.B; b++) {
            const int32_t *row = g.tokens + b * g.T;
            int64_t p0 = g.prompt_len[b], end = g.len[b];
            t.response_tokens += end - p0;
            for (int64_t k = p0; k < end; k++)
                if (row[k] == gc.eos_id || (bytes_tok && row[k] >= 256)) {
                    end = k;
                    break;
                }
            char *text = NULL;
            size_t len = 0;
            if (rl_tokenizer_decode(tok, row + p0, end - p0, &text, &len) != RL_OK) {
                rl_errf(err, errn, RL_ERR_ARG, "%s", rl_tokenizer_error(tok));
                rl_gen_out_free(&g);
                goto done;
            }
            const rl_record *rec = rl_tokdata_record(td, idx[b]);
            rl_judgement j = rl_oracle_judge(rec->prompt, text);
            rl_judge_tally_add(&t, &j);
            if (ref) t.kl_sum += kl[b];
            if (dump) jd_dump_line(dump, rec, text, len, &j, ref ? &kl[b] : NULL);
            free(text);
        }
        rl_gen_out_free(&g);
    }
    jd_policy_report(a, &t, ds->n, ref != NULL, rl_now() - t0);
    if (tallies) *tallies = t;
    summary = jd_policy_json(a, &t, ds->n, ref != NULL, ts.rows_truncated);
    if (dump) {
        dump = NULL;
        if ((st = rl_atomic_commit(&dump_file, err, errn)) != RL_OK) goto done;
    }
    st = jd_write_json(summary, a->json, err, errn);
done:
    json_decref(summary);
    if (dump) rl_atomic_abort(&dump_file);
    free(kl);
    free(lp_a);
    free(idx);
    rl_data_batch_free(batch);
    rl_tokdata_free(td);
    rl_dataset_free(ds);
    rl_tokenizer_free(tok);
    rl_model_free(ctx, ref);
    rl_model_free(ctx, m);
    rl_ctx_free(ctx);
    return st;
}

/* ---- reward and cost models on pairs ------------------------------------------------ */

/* End scores of a set of rows into out[0..B). */
static int jd_scores(rl_ctx *ctx, const rl_model *m, const rl_rows *r, double *out) {
    int64_t shape[2] = {r->B, r->T};
    rl_tensor *s = rl_model_end_score(ctx, m, rl_const(ctx, RL_I32, 2, shape, r->ids),
                                      rl_const(ctx, RL_I32, 2, shape, r->attn));
    if (!s) return 0;
    for (int64_t b = 0; b < r->B; b++) out[b] = rl_tensor_get(ctx, s, b);
    return 1;
}

rl_status rl_judge_scores(const rl_judge_opts *a, char *err, size_t errn) {
    if (!a->score_model || !a->pairs) return rl_errf(err, errn, RL_ERR_ARG, "a score evaluation needs a model and pairs");
    if (a->batch < 1) return rl_errf(err, errn, RL_ERR_ARG, "batch must be >= 1");
    rl_ctx *ctx = jd_ctx(a, err, errn);
    if (!ctx) return RL_ERR_ARG;
    rl_model *m = NULL;
    rl_tokenizer *tok = NULL;
    rl_dataset *ds = NULL;
    rl_tokdata *td = NULL;
    rl_data_batch *batch = NULL;
    json_t *summary = NULL;
    double *s1 = NULL, *s2 = NULL;
    int64_t *idx = NULL;
    rl_status st = RL_ERR_ARG;
    FILE *f = a->report;
    if (rl_model_load(ctx, a->score_model, RL_HEAD_SCORE, RL_F32, 0, &m, err, errn) != RL_OK) goto done;
    if (!(tok = jd_tokenizer(a, m, err, errn))) goto done;
    if (rl_dataset_load(a->pairs, RL_DATA_AUTO, 0, &ds, err, errn) != RL_OK) goto done;
    if (a->cost && ds->format != RL_DATA_PKU) {
        rl_errf(err, errn, RL_ERR_ARG, "--cost needs PKU-SafeRLHF pairs (safety labels); %s is %s", a->pairs,
                rl_data_format_name(ds->format));
        goto done;
    }
    if (ds->n == 0) {
        rl_errf(err, errn, RL_ERR_ARG, "%s holds no pairs", a->pairs);
        goto done;
    }
    int64_t T = a->ctx_len > 0 && a->ctx_len < m->n_ctx ? a->ctx_len : m->n_ctx;
    rl_tok_opts o = rl_tok_opts_default(T);
    o.tmpl = a->tmpl;
    o.pad_to_longest = 1;
    if (!(td = rl_tokdata_new(ds, tok, RL_ROWS_PAIRS, &o, err, errn))) goto done;
    rl_trunc_stats ts = rl_tokdata_stats(td);
    int64_t B = a->batch;
    batch = rl_data_batch_new(td, B);
    s1 = malloc(sizeof(double) * (size_t)B);
    s2 = malloc(sizeof(double) * (size_t)B);
    idx = malloc(sizeof(int64_t) * (size_t)B);
    if (!batch || !s1 || !s2 || !idx) {
        st = rl_errf(err, errn, RL_ERR_MEMORY, "out of memory");
        goto done;
    }
    rl_ctx_set_grad(ctx, 0);
    /* hi/lo: the pair's first/second row in the model's ordering (chosen vs
     * rejected, or for a cost model unsafer vs safer: cost should be higher there) */
    int64_t n = 0, wins = 0, or_n = 0, or_wins = 0, sign_n = 0, sign_ok = 0, diff_n = 0, diff_wins = 0;
    double margin = 0;
    for (int64_t start = 0; start < ds->n; start += B) {
        int64_t nb = ds->n - start < B ? ds->n - start : B;
        for (int64_t k = 0; k < nb; k++) idx[k] = start + k;
        rl_data_batch_fill(td, idx, nb, batch);
        const rl_rows *hi = a->cost ? &batch->unsafer : &batch->chosen, *lo = a->cost ? &batch->safer : &batch->rejected;
        if (!jd_scores(ctx, m, hi, s1) || !jd_scores(ctx, m, lo, s2)) {
            rl_errf(err, errn, RL_ERR_ARG, "scoring failed: %s", rl_ctx_error(ctx));
            goto done;
        }
        rl_ctx_reset(ctx);
        for (int64_t k = 0; k < nb; k++) {
            const rl_record *rec = rl_tokdata_record(td, idx[k]);
            n++;
            wins += s1[k] > s2[k];
            margin += s1[k] - s2[k];
            if (a->cost) {
                sign_n += 2;
                sign_ok += (batch->sign_u[k] * s1[k] > 0) + (batch->sign_s[k] * s2[k] > 0);
                if (batch->sign_u[k] != batch->sign_s[k]) diff_n++, diff_wins += s1[k] > s2[k];
            } else {
                /* the oracle's truth: which response is more helpful (HH: 0 chosen; PKU: ids) */
                int better = rec->better_id > 0 ? 1 : 0;
                rl_judgement jb = rl_oracle_judge(rec->prompt, rec->response[better]);
                rl_judgement jw = rl_oracle_judge(rec->prompt, rec->response[1 - better]);
                if (jb.family != RL_FAM_UNKNOWN && jb.helpfulness != jw.helpfulness) {
                    or_n++;
                    or_wins += jb.helpfulness > jw.helpfulness ? s1[k] > s2[k] : s2[k] > s1[k];
                }
            }
        }
    }
    jd_printf(f, "eval: %s on %" PRId64 " %s pairs of %s (%" PRId64 " rows truncated to %" PRId64 " tokens)\n",
              a->score_model, n, rl_data_format_name(ds->format), a->pairs, ts.rows_truncated, T);
    summary = json_object();
    json_object_set_new(summary, "mode", json_string(a->cost ? "cost" : "reward"));
    json_object_set_new(summary, "model", json_string(a->score_model));
    json_object_set_new(summary, "pairs", json_string(a->pairs));
    json_object_set_new(summary, "format", json_string(rl_data_format_name(ds->format)));
    json_object_set_new(summary, "n_pairs", json_integer(n));
    json_object_set_new(summary, "ctx", json_integer(T));
    json_object_set_new(summary, "rows_truncated", json_integer(ts.rows_truncated));
    json_object_set_new(summary, "accuracy", jd_ratio((double)wins, n));
    json_object_set_new(summary, "mean_margin", jd_ratio(margin, n));
    if (a->cost) {
        jd_print_ratio(f, "accuracy c_u > c_s", (double)wins, n, "pairs");
        jd_print_ratio(f, "  where safety differs", (double)diff_wins, diff_n, "pairs");
        jd_print_ratio(f, "sign accuracy", (double)sign_ok, sign_n, "responses");
        json_object_set_new(summary, "accuracy_safety_differs", jd_ratio((double)diff_wins, diff_n));
        json_object_set_new(summary, "n_safety_differs", json_integer(diff_n));
        json_object_set_new(summary, "sign_accuracy", jd_ratio((double)sign_ok, sign_n));
    } else {
        jd_print_ratio(f, "accuracy (labels)", (double)wins, n, "pairs");
        jd_print_ratio(f, "accuracy (oracle)", (double)or_wins, or_n, "pairs of different helpfulness");
        json_object_set_new(summary, "oracle_accuracy", jd_ratio((double)or_wins, or_n));
        json_object_set_new(summary, "n_oracle_pairs", json_integer(or_n));
    }
    jd_printf(f, "  %-24s %.4f\n", "mean margin", margin / (double)n);
    st = jd_write_json(summary, a->json, err, errn);
done:
    json_decref(summary);
    free(s1);
    free(s2);
    free(idx);
    rl_data_batch_free(batch);
    rl_tokdata_free(td);
    rl_dataset_free(ds);
    rl_tokenizer_free(tok);
    rl_model_free(ctx, m);
    rl_ctx_free(ctx);
    return st;
}
