/* recipes/world/rl_judge.h - the oracle-judged evaluation: a policy sampled
 * on held-out prompts and judged by the synthetic world's oracle
 * (helpfulness, arithmetic accuracy, harmful compliance, needless refusals,
 * KL to a reference model), or a reward/cost model scored on preference
 * pairs (accuracy against the labels and against the oracle, cost sign
 * accuracy). `rlhf eval` (tools/cmd_eval.c) parses its arguments into
 * rl_judge_opts and calls one of the two; the pipeline's table reads the
 * JSON summaries they write.
 *
 *   rl_judge_opts o;
 *   rl_judge_opts_init(&o);
 *   o.model = "runs/ppo/policy"; o.prompts = "data/eval_prompts.jsonl"; o.json = "eval/ppo.json";
 *   if (rl_judge_policy(&o, err, sizeof err) != RL_OK) fprintf(stderr, "%s\n", err);
 *
 * Definitions (rl_synth.h has the oracle's rules):
 *   arith_accuracy      correct answers / responses to arithmetic prompts
 *   benign_helpfulness  mean oracle helpfulness on benign-family prompts
 *   harmful_compliance  compliances / responses to harmful prompts
 *   needless_refusal    refusals / responses to arithmetic and benign prompts
 *   helpfulness         mean oracle helpfulness over judged responses
 *   unsafe_rate         unsafe responses / judged responses
 *   kl_ref              mean over sampled sequences of sum over response tokens
 *                       of log pi(y_t) - log pi_ref(y_t), both from
 *                       rl_model_token_logprobs on the sampled tokens; an
 *                       unbiased estimate of KL(pi || pi_ref) only at
 *                       temperature 1 without greedy decoding
 *   accuracy            (score models) mean(r(chosen) > r(rejected)) on the
 *                       file's labels; for cost models on PKU pairs mean(c_u > c_s)
 *   oracle_accuracy     the same against the oracle's true preference, over
 *                       the pairs of different oracle helpfulness
 *   sign_accuracy       (cost) mean(sign * c > 0) over every response,
 *                       sign +1 unsafe, -1 safe
 * A ratio over no responses is JSON null (printed "n/a").
 */
#ifndef RL_JUDGE_H
#define RL_JUDGE_H

#include <stdint.h>
#include <stdio.h>

#include "rl_engine.h"
#include "rl_synth.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_judge_opts {
    /* a policy on prompts (rl_judge_policy) */
    const char *model, *ref, *prompts; /* ref may be NULL: no KL */
    int64_t samples;                   /* responses per prompt (1) */
    int64_t max_new;                   /* tokens sampled per response (48) */
    double temperature;                /* (1) */
    int greedy;
    uint64_t seed;
    const char *dump;                  /* NULL, or a JSONL file of every judged response */
    /* a reward or cost model on pairs (rl_judge_scores) */
    const char *score_model, *pairs;
    int cost;                          /* a cost model on PKU-SafeRLHF pairs */
    int64_t ctx_len;                   /* row length; 0: the model's context */
    /* both */
    const char *json;                  /* NULL, or where the summary goes (its directory is made) */
    const char *tok;                   /* "bytes" or a tokenizer directory ("bytes") */
    const char *tmpl;                  /* chat template, or NULL */
    const char *device;                /* "cpu" */
    int64_t batch;                     /* rows per forward pass (64) */
    FILE *report;                      /* the printed summary (stdout); NULL prints nothing */
    FILE *log;                         /* warnings (stderr); NULL drops them */
} rl_judge_opts;

void rl_judge_opts_init(rl_judge_opts *o);

/* The counts behind a policy's summary, per prompt family. */
typedef struct rl_judge_tally {
    int64_t n, correct, refusal, comply, offtopic, answer, unsafe;
    double help;
} rl_judge_tally;

typedef struct rl_judge_tallies {
    rl_judge_tally fam[RL_FAM_COUNT];
    int64_t n_responses, unjudged, response_tokens;
    double kl_sum;
} rl_judge_tallies;

/* Counts one judged response (family UNKNOWN counts as unjudged). */
void rl_judge_tally_add(rl_judge_tallies *t, const rl_judgement *j);

/* Samples o->samples responses to every prompt of o->prompts from o->model,
 * judges them with the oracle, prints the summary to o->report and writes it
 * to o->json. tallies (may be NULL) receives the counts. RL_ERR_ARG / _IO
 * with the reason in err. */
rl_status rl_judge_policy(const rl_judge_opts *o, rl_judge_tallies *tallies, char *err, size_t n);

/* Scores both responses of every pair of o->pairs with o->score_model (a
 * reward model, or with o->cost a cost model on PKU pairs), prints the
 * accuracies to o->report and writes them to o->json. */
rl_status rl_judge_scores(const rl_judge_opts *o, char *err, size_t n);

#ifdef __cplusplus
}
#endif
#endif
