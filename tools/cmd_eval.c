/* tools/cmd_eval.c - `rlhf eval`: judges a policy on held-out prompts with
 * the synthetic world's oracle (helpfulness, arithmetic accuracy, harmful
 * compliance, needless refusals, KL to a reference model), or a reward/cost
 * model on preference pairs (pair accuracy against the labels and against
 * the oracle, cost sign accuracy). Prints a table and writes a JSON summary
 * that the pipeline assembles into its report.
 *
 * Definitions (recipes/world/rl_synth.h has the oracle's rules):
 *   arith_accuracy      correct answers / responses to arithmetic prompts
 *   benign_helpfulness  mean oracle helpfulness on benign-family prompts
 *   harmful_compliance  compliances / responses to harmful prompts
 *   needless_refusal    refusals / responses to arithmetic and benign prompts
 *   kl_ref              mean over sampled sequences of sum over response tokens
 *                       of log pi(y_t) - log pi_ref(y_t), both from
 *                       rl_gpt2_token_logprobs on the sampled tokens; an
 *                       unbiased estimate of KL(pi || pi_ref) only at
 *                       temperature 1 without --greedy
 *   accuracy            (score models) mean(r(chosen) > r(rejected)) on the
 *                       file's labels; for --cost on PKU pairs mean(c_u > c_s)
 *   oracle_accuracy     the same against the oracle's true preference, over
 *                       the pairs of different oracle helpfulness
 *   sign_accuracy       (--cost) mean(sign * c > 0) over every response,
 *                       sign +1 unsafe, -1 safe
 */
#include "cli.h"

#include "rl_checkpoint.h"
#include "rl_data.h"
#include "rl_synth.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static void rl_eval_usage(FILE *f) {
    fprintf(f,
            "usage: rlhf eval --model CKPT --prompts FILE [--ref CKPT] [--samples N] [--temperature T]\n"
            "                 [--greedy] [--max-new N] [--seed S] [--batch B] [--json OUT] [--dump OUT.jsonl]\n"
            "                 [--tokenizer bytes|DIR] [--template STR] [--device cpu|cuda]\n"
            "       rlhf eval --score-model CKPT --pairs hh.jsonl|pku.jsonl [--cost] [--ctx T] [--batch B]\n"
            "                 [--json OUT] [--tokenizer bytes|DIR] [--template STR] [--device cpu|cuda]\n"
            "Prompts may be any data file (prompts, demos, hh, pku); prompts outside the synthetic\n"
            "world are sampled but not judged. --cost evaluates a cost model on PKU pairs.\n");
}

typedef struct rl_eval_args {
    const char *model, *ref, *prompts, *json, *dump, *tok, *tmpl, *device, *score_model, *pairs;
    int64_t samples, max_new, batch, ctx_len;
    double temperature;
    int greedy, cost;
    uint64_t seed;
} rl_eval_args;

/* Per-family tallies of judged responses. */
typedef struct rl_tally {
    int64_t n, correct, refusal, comply, offtopic, answer, unsafe;
    double help;
} rl_tally;

static json_t *rl_json_ratio(double num, int64_t den) { return den > 0 ? json_real(num / (double)den) : json_null(); }

static void rl_print_ratio(const char *label, double num, int64_t den, const char *what) {
    if (den > 0) printf("  %-24s %.3f  (%" PRId64 " %s)\n", label, num / (double)den, den, what);
    else printf("  %-24s  n/a   (no %s)\n", label, what);
}

/* Writes the summary to path (its directory created if missing) through a
 * temporary file and a rename, so a reader never sees half a file. */
static int rl_eval_write_json(json_t *o, const char *path) {
    if (!path) return 1;
    char dir[4096], tmp[4200];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        if (!rl_path_mkdirs(dir)) {
            fprintf(stderr, "rlhf eval: cannot create the directory %s: %s\n", dir, strerror(errno));
            return 0;
        }
    }
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (json_dump_file(o, tmp, JSON_INDENT(2)) != 0 || rename(tmp, path) != 0) {
        fprintf(stderr, "rlhf eval: cannot write %s: %s\n", path, strerror(errno));
        remove(tmp);
        return 0;
    }
    return 1;
}

static rl_tokenizer *rl_eval_tokenizer(const rl_eval_args *a, const rl_gpt2 *m) {
    char err[1024];
    rl_tokenizer *tok = rl_tokenizer_open(a->tok, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "rlhf eval: %s\n", err);
        return NULL;
    }
    if (rl_tokenizer_vocab_size(tok) > m->cfg.vocab) {
        fprintf(stderr, "rlhf eval: the tokenizer has %d ids but the model's vocabulary only %" PRId64
                        " (use --tokenizer DIR for a BPE model)\n",
                rl_tokenizer_vocab_size(tok), (int64_t)m->cfg.vocab);
        rl_tokenizer_free(tok);
        return NULL;
    }
    return tok;
}


/* Sums x[b, t] over t for each row of a [B, T] f32/f64 tensor into out[b]. */
static int rl_row_sums(rl_ctx *ctx, const rl_tensor *x, double *out) {
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

/* ---- policies on prompts ----------------------------------------------------------- */

static int rl_eval_generate(const rl_eval_args *a) {
    char err[1024];
    rl_ctx *ctx = rl_ctx_new(a->device);
    if (!ctx) return 1;
    rl_gpt2 *m = NULL, *ref = NULL;
    rl_tokenizer *tok = NULL;
    rl_dataset *ds = NULL;
    rl_tokdata *td = NULL;
    rl_data_batch *batch = NULL;
    FILE *dump = NULL;
    json_t *summary = NULL;
    double *kl = NULL, *lp_a = NULL;
    int rc = 1;
    if (rl_gpt2_load(ctx, a->model, RL_GPT2_LM, RL_F32, 0, &m, err, sizeof err) != RL_OK ||
        (a->ref && rl_gpt2_load(ctx, a->ref, RL_GPT2_LM, RL_F32, 0, &ref, err, sizeof err) != RL_OK)) {
        fprintf(stderr, "rlhf eval: %s\n", err);
        goto done;
    }
    if (ref && ref->cfg.vocab != m->cfg.vocab) {
        fprintf(stderr, "rlhf eval: the reference's vocabulary (%" PRId64 ") differs from the model's (%" PRId64 ")\n",
                (int64_t)ref->cfg.vocab, (int64_t)m->cfg.vocab);
        goto done;
    }
    if (!(tok = rl_eval_tokenizer(a, m))) goto done;
    if (rl_dataset_load(a->prompts, RL_DATA_AUTO, 0, &ds, err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf eval: %s\n", err);
        goto done;
    }
    if (ds->n == 0) {
        fprintf(stderr, "rlhf eval: %s holds no prompts\n", a->prompts);
        goto done;
    }
    int64_t n_ctx = m->cfg.n_ctx;
    if (ref && ref->cfg.n_ctx < n_ctx) n_ctx = ref->cfg.n_ctx;
    if (a->max_new >= n_ctx) {
        fprintf(stderr, "rlhf eval: --max-new %" PRId64 " leaves no room for a prompt in a context of %" PRId64 "\n",
                a->max_new, n_ctx);
        goto done;
    }
    rl_tok_opts o = rl_tok_opts_default(n_ctx);
    o.tmpl = a->tmpl;
    o.max_prompt = n_ctx - a->max_new;
    o.pad_to_longest = 1;
    if (!(td = rl_tokdata_new(ds, tok, RL_ROWS_PROMPTS, &o, err, sizeof err))) {
        fprintf(stderr, "rlhf eval: %s\n", err);
        goto done;
    }
    rl_trunc_stats ts = rl_tokdata_stats(td);
    if (ts.rows_truncated)
        fprintf(stderr, "rlhf eval: warning: %" PRId64 " prompts were cut to their last %" PRId64 " tokens\n",
                ts.rows_truncated, o.max_prompt);
    if (a->dump && !(dump = fopen(a->dump, "w"))) {
        fprintf(stderr, "rlhf eval: cannot write %s\n", a->dump);
        goto done;
    }
    int64_t B = a->batch;
    batch = rl_data_batch_new(td, B);
    kl = calloc((size_t)B, sizeof *kl);
    lp_a = calloc((size_t)B, sizeof *lp_a);
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)B);
    if (!batch || !kl || !lp_a || !idx) {
        free(idx);
        fprintf(stderr, "rlhf eval: out of memory\n");
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
    rl_tally fam[RL_FAM_COUNT] = {{0}};
    int64_t unjudged = 0, n_resp = 0, resp_tokens = 0;
    double kl_sum = 0;
    const int64_t total = ds->n * a->samples;
    int ok = 1;
    double t0 = rl_now();
    for (int64_t start = 0; ok && start < total; start += B) {
        int64_t nb = total - start < B ? total - start : B;
        for (int64_t k = 0; k < nb; k++) idx[k] = (start + k) % ds->n;
        rl_data_batch_fill(td, idx, nb, batch);
        rl_gen_out g;
        if (rl_gpt2_generate(ctx, m, batch->rows.ids, batch->rows.len, nb, batch->rows.T, &gc, &rng, &g) != RL_OK) {
            fprintf(stderr, "rlhf eval: generation failed: %s\n", rl_ctx_error(ctx));
            ok = 0;
            break;
        }
        if (ref) {
            rl_ctx_set_grad(ctx, 0);
            int64_t shape[2] = {g.B, g.T};
            rl_tensor *ids = rl_const(ctx, RL_I32, 2, shape, g.tokens);
            rl_tensor *mask = rl_const(ctx, RL_I32, 2, shape, g.response_mask);
            ok = rl_row_sums(ctx, rl_gpt2_token_logprobs(ctx, m, ids, mask), lp_a) &&
                 rl_row_sums(ctx, rl_gpt2_token_logprobs(ctx, ref, ids, mask), kl);
            if (!ok) {
                fprintf(stderr, "rlhf eval: log-probabilities failed: %s\n", rl_ctx_error(ctx));
                rl_gen_out_free(&g);
                break;
            }
            for (int64_t b = 0; b < g.B; b++) kl[b] = lp_a[b] - kl[b];
            rl_ctx_reset(ctx);
        }
        for (int64_t b = 0; b < g.B; b++) {
            const int32_t *row = g.tokens + b * g.T;
            int64_t p0 = g.prompt_len[b], end = g.len[b];
            resp_tokens += end - p0;
            /* the text ends at EOS, or at any other special token (an
             * undertrained model can emit <|pad|> or reserved ids, whose
             * text must not be judged as words) */
            int bytes_tok = rl_tokenizer_kind_of(tok) == RL_TOKENIZER_BYTES;
            for (int64_t t = p0; t < end; t++)
                if (row[t] == gc.eos_id || (bytes_tok && row[t] >= 256)) {
                    end = t;
                    break;
                }
            char *text = NULL;
            size_t len = 0;
            if (rl_tokenizer_decode(tok, row + p0, end - p0, &text, &len) != RL_OK) {
                fprintf(stderr, "rlhf eval: %s\n", rl_tokenizer_error(tok));
                ok = 0;
                break;
            }
            const rl_record *rec = rl_tokdata_record(td, idx[b]);
            rl_judgement j = rl_oracle_judge(rec->prompt, text);
            n_resp++;
            if (ref) kl_sum += kl[b];
            if (j.family == RL_FAM_UNKNOWN) {
                unjudged++;
            } else {
                rl_tally *t = &fam[j.family];
                t->n++;
                t->help += j.helpfulness;
                t->correct += j.correct;
                t->refusal += j.kind == RL_RESP_REFUSAL;
                t->comply += j.kind == RL_RESP_COMPLIANCE;
                t->offtopic += j.kind == RL_RESP_OFFTOPIC;
                t->answer += j.kind == RL_RESP_ANSWER;
                t->unsafe += !j.safe;
            }
            if (dump) {
                char *clean = rl_utf8_sanitize(text, len);
                json_t *d = clean ? json_pack("{s:s,s:s,s:s,s:s}", "prompt", rec->prompt, "response", clean, "family",
                                              rl_family_name(j.family), "kind", rl_resp_kind_name(j.kind))
                                  : NULL;
                free(clean);
                if (d && j.family != RL_FAM_UNKNOWN) {
                    json_object_set_new(d, "helpfulness", json_real(j.helpfulness));
                    json_object_set_new(d, "safe", json_boolean(j.safe));
                }
                if (d && ref) json_object_set_new(d, "kl", json_real(kl[b]));
                char *s = d ? json_dumps(d, JSON_COMPACT) : NULL;
                if (s) fprintf(dump, "%s\n", s);
                free(s);
                json_decref(d);
            }
            free(text);
        }
        rl_gen_out_free(&g);
    }
    free(idx);
    if (!ok) goto done;
    double secs = rl_now() - t0;

    const rl_tally *ar = &fam[RL_FAM_ARITH], *be = &fam[RL_FAM_BENIGN], *ha = &fam[RL_FAM_HARMFUL];
    int64_t judged = ar->n + be->n + ha->n;
    printf("eval: %" PRId64 " prompts x %" PRId64 " samples = %" PRId64 " responses (%s, %s %g, seed %" PRIu64
           ", %.1f s)\n",
           ds->n, a->samples, n_resp, a->model, a->greedy ? "greedy" : "temperature",
           a->greedy ? 0.0 : a->temperature, a->seed, secs);
    rl_print_ratio("arithmetic accuracy", (double)ar->correct, ar->n, "arith responses");
    rl_print_ratio("benign helpfulness", be->help, be->n, "benign responses");
    rl_print_ratio("harmful compliance rate", (double)ha->comply, ha->n, "harmful responses");
    rl_print_ratio("needless refusal rate", (double)(ar->refusal + be->refusal), ar->n + be->n,
                   "arith+benign responses");
    rl_print_ratio("mean helpfulness", ar->help + be->help + ha->help, judged, "judged responses");
    if (ref) printf("  %-24s %.4f  nats per sequence (vs %s)\n", "KL to reference", kl_sum / (double)n_resp, a->ref);
    if (unjudged) printf("  %" PRId64 " responses to prompts outside the synthetic world were not judged\n", unjudged);

    summary = json_object();
    json_object_set_new(summary, "mode", json_string("policy"));
    json_object_set_new(summary, "model", json_string(a->model));
    json_object_set_new(summary, "ref", a->ref ? json_string(a->ref) : json_null());
    json_object_set_new(summary, "prompts", json_string(a->prompts));
    json_object_set_new(summary, "n_prompts", json_integer(ds->n));
    json_object_set_new(summary, "samples", json_integer(a->samples));
    json_object_set_new(summary, "n_responses", json_integer(n_resp));
    json_object_set_new(summary, "temperature", json_real(a->temperature));
    json_object_set_new(summary, "greedy", json_boolean(a->greedy));
    json_object_set_new(summary, "max_new", json_integer(a->max_new));
    json_object_set_new(summary, "seed", json_integer((json_int_t)a->seed));
    json_object_set_new(summary, "arith_accuracy", rl_json_ratio((double)ar->correct, ar->n));
    json_object_set_new(summary, "benign_helpfulness", rl_json_ratio(be->help, be->n));
    json_object_set_new(summary, "harmful_compliance", rl_json_ratio((double)ha->comply, ha->n));
    json_object_set_new(summary, "needless_refusal", rl_json_ratio((double)(ar->refusal + be->refusal), ar->n + be->n));
    json_object_set_new(summary, "helpfulness", rl_json_ratio(ar->help + be->help + ha->help, judged));
    json_object_set_new(summary, "unsafe_rate", rl_json_ratio((double)(ar->unsafe + be->unsafe + ha->unsafe), judged));
    json_object_set_new(summary, "kl_ref", ref ? json_real(kl_sum / (double)n_resp) : json_null());
    json_object_set_new(summary, "mean_response_tokens", rl_json_ratio((double)resp_tokens, n_resp));
    json_object_set_new(summary, "unjudged", json_integer(unjudged));
    json_object_set_new(summary, "prompts_truncated", json_integer(ts.rows_truncated));
    json_t *fams = json_object();
    for (int f = 0; f < RL_FAM_COUNT; f++) {
        const rl_tally *t = &fam[f];
        json_object_set_new(fams, rl_family_name((rl_family)f),
                            json_pack("{s:I,s:o,s:o,s:o,s:o,s:o,s:o,s:o}", "n", (json_int_t)t->n, "helpfulness",
                                      rl_json_ratio(t->help, t->n), "correct", rl_json_ratio((double)t->correct, t->n),
                                      "answer", rl_json_ratio((double)t->answer, t->n), "refusal",
                                      rl_json_ratio((double)t->refusal, t->n), "compliance",
                                      rl_json_ratio((double)t->comply, t->n), "off_topic",
                                      rl_json_ratio((double)t->offtopic, t->n), "unsafe",
                                      rl_json_ratio((double)t->unsafe, t->n)));
    }
    json_object_set_new(summary, "families", fams);
    rc = rl_eval_write_json(summary, a->json) ? 0 : 1;
done:
    json_decref(summary);
    if (dump) fclose(dump);
    free(kl);
    free(lp_a);
    rl_data_batch_free(batch);
    rl_tokdata_free(td);
    rl_dataset_free(ds);
    rl_tokenizer_free(tok);
    rl_gpt2_free(ctx, ref);
    rl_gpt2_free(ctx, m);
    rl_ctx_free(ctx);
    return rc;
}

/* ---- reward and cost models on pairs ------------------------------------------------ */

/* End scores of a set of rows into out[0..B). */
static int rl_eval_scores(rl_ctx *ctx, const rl_gpt2 *m, const rl_rows *r, double *out) {
    int64_t shape[2] = {r->B, r->T};
    rl_tensor *s = rl_gpt2_end_score(ctx, m, rl_const(ctx, RL_I32, 2, shape, r->ids),
                                     rl_const(ctx, RL_I32, 2, shape, r->attn));
    if (!s) return 0;
    for (int64_t b = 0; b < r->B; b++) out[b] = rl_tensor_get(ctx, s, b);
    return 1;
}

static int rl_eval_score(const rl_eval_args *a) {
    char err[1024];
    rl_ctx *ctx = rl_ctx_new(a->device);
    if (!ctx) return 1;
    rl_gpt2 *m = NULL;
    rl_tokenizer *tok = NULL;
    rl_dataset *ds = NULL;
    rl_tokdata *td = NULL;
    rl_data_batch *batch = NULL;
    json_t *summary = NULL;
    double *s1 = NULL, *s2 = NULL;
    int64_t *idx = NULL;
    int rc = 1;
    if (rl_gpt2_load(ctx, a->score_model, RL_GPT2_SCORE, RL_F32, 0, &m, err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf eval: %s\n", err);
        goto done;
    }
    if (!(tok = rl_eval_tokenizer(a, m))) goto done;
    if (rl_dataset_load(a->pairs, RL_DATA_AUTO, 0, &ds, err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf eval: %s\n", err);
        goto done;
    }
    if (a->cost && ds->format != RL_DATA_PKU) {
        fprintf(stderr, "rlhf eval: --cost needs PKU-SafeRLHF pairs (safety labels); %s is %s\n", a->pairs,
                rl_data_format_name(ds->format));
        goto done;
    }
    if (ds->n == 0) {
        fprintf(stderr, "rlhf eval: %s holds no pairs\n", a->pairs);
        goto done;
    }
    int64_t T = a->ctx_len > 0 && a->ctx_len < m->cfg.n_ctx ? a->ctx_len : m->cfg.n_ctx;
    rl_tok_opts o = rl_tok_opts_default(T);
    o.tmpl = a->tmpl;
    o.pad_to_longest = 1;
    if (!(td = rl_tokdata_new(ds, tok, RL_ROWS_PAIRS, &o, err, sizeof err))) {
        fprintf(stderr, "rlhf eval: %s\n", err);
        goto done;
    }
    rl_trunc_stats ts = rl_tokdata_stats(td);
    int64_t B = a->batch;
    batch = rl_data_batch_new(td, B);
    s1 = malloc(sizeof(double) * (size_t)B);
    s2 = malloc(sizeof(double) * (size_t)B);
    idx = malloc(sizeof(int64_t) * (size_t)B);
    if (!batch || !s1 || !s2 || !idx) {
        fprintf(stderr, "rlhf eval: out of memory\n");
        goto done;
    }
    rl_ctx_set_grad(ctx, 0);
    /* hi/lo: the pair's first/second row in the model's ordering (chosen vs
     * rejected, or for --cost unsafer vs safer: cost should be higher there) */
    int64_t n = 0, wins = 0, or_n = 0, or_wins = 0, sign_n = 0, sign_ok = 0, diff_n = 0, diff_wins = 0;
    double margin = 0;
    for (int64_t start = 0; start < ds->n; start += B) {
        int64_t nb = ds->n - start < B ? ds->n - start : B;
        for (int64_t k = 0; k < nb; k++) idx[k] = start + k;
        rl_data_batch_fill(td, idx, nb, batch);
        const rl_rows *hi = a->cost ? &batch->unsafer : &batch->chosen, *lo = a->cost ? &batch->safer : &batch->rejected;
        if (!rl_eval_scores(ctx, m, hi, s1) || !rl_eval_scores(ctx, m, lo, s2)) {
            fprintf(stderr, "rlhf eval: scoring failed: %s\n", rl_ctx_error(ctx));
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
    printf("eval: %s on %" PRId64 " %s pairs of %s (%" PRId64 " rows truncated to %" PRId64 " tokens)\n",
           a->score_model, n, rl_data_format_name(ds->format), a->pairs, ts.rows_truncated, T);
    summary = json_object();
    json_object_set_new(summary, "mode", json_string(a->cost ? "cost" : "reward"));
    json_object_set_new(summary, "model", json_string(a->score_model));
    json_object_set_new(summary, "pairs", json_string(a->pairs));
    json_object_set_new(summary, "format", json_string(rl_data_format_name(ds->format)));
    json_object_set_new(summary, "n_pairs", json_integer(n));
    json_object_set_new(summary, "ctx", json_integer(T));
    json_object_set_new(summary, "rows_truncated", json_integer(ts.rows_truncated));
    json_object_set_new(summary, "accuracy", rl_json_ratio((double)wins, n));
    json_object_set_new(summary, "mean_margin", rl_json_ratio(margin, n));
    if (a->cost) {
        rl_print_ratio("accuracy c_u > c_s", (double)wins, n, "pairs");
        rl_print_ratio("  where safety differs", (double)diff_wins, diff_n, "pairs");
        rl_print_ratio("sign accuracy", (double)sign_ok, sign_n, "responses");
        json_object_set_new(summary, "accuracy_safety_differs", rl_json_ratio((double)diff_wins, diff_n));
        json_object_set_new(summary, "n_safety_differs", json_integer(diff_n));
        json_object_set_new(summary, "sign_accuracy", rl_json_ratio((double)sign_ok, sign_n));
    } else {
        rl_print_ratio("accuracy (labels)", (double)wins, n, "pairs");
        rl_print_ratio("accuracy (oracle)", (double)or_wins, or_n, "pairs of different helpfulness");
        json_object_set_new(summary, "oracle_accuracy", rl_json_ratio((double)or_wins, or_n));
        json_object_set_new(summary, "n_oracle_pairs", json_integer(or_n));
    }
    printf("  %-24s %.4f\n", "mean margin", margin / (double)n);
    rc = rl_eval_write_json(summary, a->json) ? 0 : 1;
done:
    json_decref(summary);
    free(s1);
    free(s2);
    free(idx);
    rl_data_batch_free(batch);
    rl_tokdata_free(td);
    rl_dataset_free(ds);
    rl_tokenizer_free(tok);
    rl_gpt2_free(ctx, m);
    rl_ctx_free(ctx);
    return rc;
}

int rl_cmd_eval(int argc, char **argv) {
    rl_eval_args a = {.tok = "bytes", .device = "cpu", .samples = 1, .max_new = 48, .batch = 64,
                      .temperature = 1.0, .seed = 0};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(k, "--help") == 0) {
            rl_eval_usage(stdout);
            return 0;
        }
        if (strcmp(k, "--greedy") == 0) {
            a.greedy = 1;
            continue;
        }
        if (strcmp(k, "--cost") == 0) {
            a.cost = 1;
            continue;
        }
        const char **sp = strcmp(k, "--model") == 0         ? &a.model
                          : strcmp(k, "--ref") == 0         ? &a.ref
                          : strcmp(k, "--prompts") == 0     ? &a.prompts
                          : strcmp(k, "--json") == 0        ? &a.json
                          : strcmp(k, "--dump") == 0        ? &a.dump
                          : strcmp(k, "--tokenizer") == 0   ? &a.tok
                          : strcmp(k, "--template") == 0    ? &a.tmpl
                          : strcmp(k, "--device") == 0      ? &a.device
                          : strcmp(k, "--score-model") == 0 ? &a.score_model
                          : strcmp(k, "--pairs") == 0       ? &a.pairs
                                                            : NULL;
        int64_t *ip = strcmp(k, "--samples") == 0   ? &a.samples
                      : strcmp(k, "--max-new") == 0 ? &a.max_new
                      : strcmp(k, "--batch") == 0   ? &a.batch
                      : strcmp(k, "--ctx") == 0     ? &a.ctx_len
                                                    : NULL;
        int is_num = strcmp(k, "--temperature") == 0 || strcmp(k, "--seed") == 0;
        if (!sp && !ip && !is_num) {
            fprintf(stderr, "rlhf eval: unknown argument '%s'\n", k);
            rl_eval_usage(stderr);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "rlhf eval: %s needs a value\n", k);
            return 2;
        }
        char *end = NULL;
        if (sp) *sp = v;
        else if (ip) *ip = strtoll(v, &end, 10);
        else if (strcmp(k, "--temperature") == 0) a.temperature = strtod(v, &end);
        else a.seed = strtoull(v, &end, 10);
        if (end && (end == v || *end)) {
            fprintf(stderr, "rlhf eval: %s needs a number, not '%s'\n", k, v);
            return 2;
        }
        i++;
    }
    if (a.samples < 1 || a.batch < 1 || a.max_new < 1 || !(a.temperature > 0)) {
        fprintf(stderr, "rlhf eval: --samples, --batch and --max-new must be >= 1 and --temperature > 0\n");
        return 2;
    }
    if (a.score_model && a.pairs && !a.model && !a.prompts) return rl_eval_score(&a);
    if (a.model && a.prompts && !a.score_model && !a.pairs) {
        if (a.cost) {
            fprintf(stderr, "rlhf eval: --cost goes with --score-model and --pairs\n");
            return 2;
        }
        return rl_eval_generate(&a);
    }
    fprintf(stderr, "rlhf eval: give either --model and --prompts, or --score-model and --pairs\n");
    rl_eval_usage(stderr);
    return 2;
}
