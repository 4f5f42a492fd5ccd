/* recipes/world/synth.c - the generator of the synthetic helpful-and-harmless
 * world's files (sft.jsonl, hh.jsonl, pku.jsonl, eval_prompts.jsonl,
 * summary.json). What it writes and why is in recipes/world/rl_synth.h; every
 * response it writes is judged by the oracle (recipes/world/oracle.c), and a
 * response the oracle would not classify as intended is an internal error,
 * so the files and the oracle cannot drift apart.
 */
#include "rl_synth.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rl_rng.h"
#include "rl_data.h"

rl_synth_cfg rl_synth_cfg_default(void) {
    rl_synth_cfg c = {.seed = 1,
                      .n_sft = 12000,
                      .n_pairs = 12000,
                      .n_eval = 90,
                      .n_eval_pairs = 900,
                      .max_operand = 30,
                      .bt_k = 5.0,
                      .sft_harmful_comply = 0.3,
                      .sft_benign_refuse = 0.2,
                      .demo_answers = 3};
    return c;
}

/* What a response is meant to be; the oracle must agree. */
typedef enum { RL_CAND_CORRECT, RL_CAND_WRONG, RL_CAND_REFUSAL, RL_CAND_COMPLY, RL_CAND_OFFTOPIC } rl_cand;

static const char *const rl_refusal_text[] = {
    " I can't help with that.", " Sorry, I can't do that.", " I won't help with that.",
    " I'm sorry, but I cannot help.", " I can't assist with that.",
};
static const char *const rl_filler_text[] = {
    " I like trains.", " The weather is nice.", " Hello there!", " What a nice day.",
    " Let me sing a song.", " Trains are fast.", " Good morning!", " I am a computer.",
};
static const char *const rl_comply_form[] = {" First, %s.", " Sure. First, %s.", " Step 1: %s."};
#define RL_COUNT(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Pair types per family: the two candidates and a weight. Helpfulness
 * differs within every type (rl_synth.h). Correct-vs-wrong arithmetic gets
 * weight 3 because it is the one type a reward model can only get right by
 * checking the sum. */
typedef struct rl_pair_type {
    rl_cand x, y;
    int weight;
} rl_pair_type;
static const rl_pair_type rl_arith_pairs[] = {
    {RL_CAND_CORRECT, RL_CAND_WRONG, 3},   {RL_CAND_CORRECT, RL_CAND_REFUSAL, 1},
    {RL_CAND_CORRECT, RL_CAND_OFFTOPIC, 1}, {RL_CAND_OFFTOPIC, RL_CAND_WRONG, 1},
    {RL_CAND_OFFTOPIC, RL_CAND_REFUSAL, 1},
};
static const rl_pair_type rl_benign_pairs[] = {
    {RL_CAND_CORRECT, RL_CAND_REFUSAL, 1}, {RL_CAND_CORRECT, RL_CAND_OFFTOPIC, 1},
    {RL_CAND_OFFTOPIC, RL_CAND_REFUSAL, 1},
};
static const rl_pair_type rl_harmful_pairs[] = {
    {RL_CAND_COMPLY, RL_CAND_REFUSAL, 1}, {RL_CAND_COMPLY, RL_CAND_OFFTOPIC, 1},
    {RL_CAND_REFUSAL, RL_CAND_OFFTOPIC, 1},
};

typedef struct rl_world {
    rl_synth_cfg cfg;
    int n_facts;           /* arithmetic facts (a, op, b) */
    int *fact_a, *fact_b;
    char *fact_op;
    unsigned char *held[RL_FAM_COUNT];  /* arith: per fact; others: per (tmpl, item) */
    int n_held[RL_FAM_COUNT];
    int universe[RL_FAM_COUNT];
    int64_t max_row_bytes;  /* transcript bytes + EOS, the longest row written */
    char err[512];
} rl_world;

static uint64_t rl_below(rl_rng *r, uint64_t n) { return (uint64_t)(rl_rng_uniform(r) * (double)n) % n; }

static void rl_shuffle_i64(rl_rng *r, int64_t *a, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)rl_below(r, (uint64_t)i + 1), t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

/* One rl_rng stream per part, so that changing one count (say --n-sft)
 * leaves the other files as they were. */
static void rl_part_rng(rl_rng *r, uint64_t seed, uint64_t part) {
    rl_rng_seed(r, seed ^ (0x9e3779b97f4a7c15ull * (part + 1)));
}

/* Family of each of n examples: exact counts (shares[f] of n, remainders in
 * family order), in a shuffled order. */
static int64_t *rl_family_plan(rl_rng *r, int64_t n, const int64_t *count) {
    int64_t *fam = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    if (!fam) return NULL;
    int64_t k = 0;
    for (int f = 0; f < RL_FAM_COUNT; f++)
        for (int64_t i = 0; i < count[f]; i++) fam[k++] = f;
    rl_shuffle_i64(r, fam, n);
    return fam;
}

static void rl_thirds(int64_t n, int64_t *c) {
    c[0] = n / 3 + (n % 3 > 0);
    c[1] = n / 3 + (n % 3 > 1);
    c[2] = n / 3;
}

/* ---- prompts ------------------------------------------------------------------------- */

static int rl_world_init(rl_world *w, const rl_synth_cfg *cfg) {
    memset(w, 0, sizeof *w);
    w->cfg = *cfg;
    int M = cfg->max_operand;
    w->n_facts = (M + 1) * (M + 1) + (M + 1) * (M + 2) / 2;
    w->fact_a = malloc(sizeof(int) * (size_t)w->n_facts);
    w->fact_b = malloc(sizeof(int) * (size_t)w->n_facts);
    w->fact_op = malloc((size_t)w->n_facts);
    w->universe[RL_FAM_ARITH] = w->n_facts;
    for (int f = RL_FAM_BENIGN; f < RL_FAM_COUNT; f++)
        w->universe[f] = rl_synth_n_templates((rl_family)f) * rl_synth_n_items((rl_family)f);
    for (int f = 0; f < RL_FAM_COUNT; f++) w->held[f] = calloc((size_t)w->universe[f], 1);
    if (!w->fact_a || !w->fact_b || !w->fact_op || !w->held[0] || !w->held[1] || !w->held[2]) return 0;
    int k = 0;
    for (int a = 0; a <= M; a++)
        for (int b = 0; b <= M; b++) w->fact_a[k] = a, w->fact_b[k] = b, w->fact_op[k++] = '+';
    for (int a = 0; a <= M; a++)
        for (int b = 0; b <= a; b++) w->fact_a[k] = a, w->fact_b[k] = b, w->fact_op[k++] = '-';
    return 1;
}

static void rl_world_free(rl_world *w) {
    free(w->fact_a);
    free(w->fact_b);
    free(w->fact_op);
    for (int f = 0; f < RL_FAM_COUNT; f++) free(w->held[f]);
}

static rl_synth_prompt rl_fact_prompt(const rl_world *w, int fact, int tmpl) {
    rl_synth_prompt p = {.family = RL_FAM_ARITH, .tmpl = tmpl, .a = w->fact_a[fact], .b = w->fact_b[fact],
                         .op = w->fact_op[fact]};
    p.answer = p.op == '+' ? p.a + p.b : p.a - p.b;
    return p;
}

/* Chooses the held-out prompts of each family and returns them (n_eval,
 * shuffled). Benign and harmful hold out (phrasing, item) combinations
 * item by item in a shuffled cycle, never more than all but two phrasings
 * of an item, so every category and act stays in training. */
static rl_synth_prompt *rl_world_hold_out(rl_world *w, rl_rng *r, const int64_t *count) {
    rl_synth_prompt *ev = malloc(sizeof *ev * (size_t)(w->cfg.n_eval > 0 ? w->cfg.n_eval : 1));
    if (!ev) return NULL;
    int64_t k = 0;
    /* arith: distinct facts by a partial Fisher-Yates */
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)w->n_facts);
    if (!idx) {
        free(ev);
        return NULL;
    }
    for (int64_t i = 0; i < w->n_facts; i++) idx[i] = i;
    for (int64_t i = 0; i < count[RL_FAM_ARITH]; i++) {
        int64_t j = i + (int64_t)rl_below(r, (uint64_t)(w->n_facts - i)), t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
        w->held[RL_FAM_ARITH][idx[i]] = 1;
        ev[k++] = rl_fact_prompt(w, (int)idx[i], (int)rl_below(r, (uint64_t)rl_synth_n_templates(RL_FAM_ARITH)));
    }
    free(idx);
    for (int f = RL_FAM_BENIGN; f < RL_FAM_COUNT; f++) {
        int nt = rl_synth_n_templates((rl_family)f), ni = rl_synth_n_items((rl_family)f);
        int64_t order[64];
        for (int i = 0; i < ni; i++) order[i] = i;
        rl_shuffle_i64(r, order, ni);
        for (int64_t e = 0; e < count[f]; e++) {
            int item = (int)order[e % ni];
            int t;
            do t = (int)rl_below(r, (uint64_t)nt);
            while (w->held[f][t * ni + item]);
            w->held[f][t * ni + item] = 1;
            ev[k++] = (rl_synth_prompt){.family = (rl_family)f, .tmpl = t, .item = item};
        }
    }
    for (int f = 0; f < RL_FAM_COUNT; f++) w->n_held[f] = (int)count[f];
    /* interleave the families */
    for (int64_t i = k - 1; i > 0; i--) {
        int64_t j = (int64_t)rl_below(r, (uint64_t)i + 1);
        rl_synth_prompt t = ev[i];
        ev[i] = ev[j];
        ev[j] = t;
    }
    return ev;
}

/* A training prompt of family f: uniform over the prompts not held out. */
static rl_synth_prompt rl_world_sample(const rl_world *w, rl_rng *r, rl_family f) {
    int nt = rl_synth_n_templates(f);
    if (f == RL_FAM_ARITH) {
        int fact;
        do fact = (int)rl_below(r, (uint64_t)w->n_facts);
        while (w->held[f][fact]);
        return rl_fact_prompt(w, fact, (int)rl_below(r, (uint64_t)nt));
    }
    int ni = rl_synth_n_items(f), t, item;
    do {
        t = (int)rl_below(r, (uint64_t)nt);
        item = (int)rl_below(r, (uint64_t)ni);
    } while (w->held[f][t * ni + item]);
    return (rl_synth_prompt){.family = f, .tmpl = t, .item = item};
}

/* ---- responses ----------------------------------------------------------------------- */

static const char *rl_pick(rl_rng *r, const char *const *list, int n) { return list[rl_below(r, (uint64_t)n)]; }

static int rl_n_answers(int item) {
    int n = 0;
    for (const char *const *a = rl_synth_category_answers(item); *a; a++) n++;
    return n;
}

/* A random answer word of category item, among the first cfg.demo_answers
 * of its list (all when 0); cap: first letter upper-cased. */
static void rl_answer_word(const rl_world *w, rl_rng *r, int item, int cap, char *buf, size_t n) {
    int k = rl_n_answers(item);
    if (w->cfg.demo_answers > 0 && w->cfg.demo_answers < k) k = w->cfg.demo_answers;
    const char *wd = rl_synth_category_answers(item)[rl_below(r, (uint64_t)k)];
    snprintf(buf, n, "%s", wd);
    if (cap && buf[0] >= 'a' && buf[0] <= 'z') buf[0] = (char)(buf[0] - 'a' + 'A');
}

/* Writes a response of kind c to p (with its leading space), judges it, and
 * fails when the oracle disagrees with what was meant. */
static int rl_world_response(rl_world *w, rl_rng *r, const rl_synth_prompt *p, rl_cand c, char *buf, size_t n,
                             rl_judgement *j) {
    char word[64];
    int ncat = rl_synth_n_items(RL_FAM_BENIGN);
    switch (c) {
    case RL_CAND_CORRECT:
        if (p->family == RL_FAM_ARITH) snprintf(buf, n, " %d", p->answer);
        else if (rl_below(r, 2) == 0) rl_answer_word(w, r, p->item, 1, word, sizeof word), snprintf(buf, n, " %s.", word);
        else rl_answer_word(w, r, p->item, 0, word, sizeof word), snprintf(buf, n, " Sure, %s.", word);
        break;
    case RL_CAND_WRONG: {
        static const int deltas[] = {-10, -3, -2, -1, 1, 2, 3, 10};
        int v;
        do v = p->answer + deltas[rl_below(r, RL_COUNT(deltas))];
        while (v < 0);
        snprintf(buf, n, " %d", v);
        break;
    }
    case RL_CAND_REFUSAL: snprintf(buf, n, "%s", rl_pick(r, rl_refusal_text, RL_COUNT(rl_refusal_text))); break;
    case RL_CAND_COMPLY:
        snprintf(buf, n, rl_comply_form[rl_below(r, RL_COUNT(rl_comply_form))], rl_synth_act_method(p->item));
        break;
    case RL_CAND_OFFTOPIC:
        if (rl_below(r, 2) == 0) {
            snprintf(buf, n, "%s", rl_pick(r, rl_filler_text, RL_COUNT(rl_filler_text)));
        } else {
            int cat;
            do cat = (int)rl_below(r, (uint64_t)ncat);
            while (p->family == RL_FAM_BENIGN && cat == p->item);
            rl_answer_word(w, r, cat, 1, word, sizeof word);
            snprintf(buf, n, " %s.", word);
        }
        break;
    }
    *j = rl_oracle_judge_parsed(p, buf);
    static const rl_resp_kind meant[] = {RL_RESP_ANSWER, RL_RESP_ANSWER, RL_RESP_REFUSAL, RL_RESP_COMPLIANCE,
                                         RL_RESP_OFFTOPIC};
    int ok = j->kind == meant[c] && (c != RL_CAND_CORRECT || j->correct) && (c != RL_CAND_WRONG || !j->correct);
    if (!ok) {
        char pt[128];
        rl_synth_prompt_text(p, pt, sizeof pt);
        snprintf(w->err, sizeof w->err, "synth: internal error: the oracle judges \"%s\" to \"%s\" as %s", buf, pt,
                 rl_resp_kind_name(j->kind));
    }
    return ok;
}

static void rl_note_row(rl_world *w, const char *prompt, const char *resp) {
    int64_t bytes = (int64_t)(strlen("\n\nHuman: ") + strlen(prompt) + strlen(RL_HH_ASSISTANT) + strlen(resp) + 1);
    if (bytes > w->max_row_bytes) w->max_row_bytes = bytes;
}

/* ---- files ---------------------------------------------------------------------------- */

/* Each file of the world is written whole or not at all (rl_atomic_*). */
typedef rl_atomic_file rl_out;

static int rl_out_open(rl_out *o, const char *dir, const char *name, char *err, size_t n) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    return rl_atomic_open(o, path, err, n) != NULL;
}

/* Writes obj as one compact line and releases it. */
static int rl_out_line(rl_out *o, json_t *obj) {
    char *s = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (!s) return 0;
    int ok = fputs(s, o->f) >= 0 && fputc('\n', o->f) != EOF;
    free(s);
    return ok;
}

static int rl_out_close(rl_out *o, int ok, char *err, size_t n) {
    if (!o->f) return 0;
    if (!ok) {
        rl_atomic_abort(o);
        return 0;
    }
    return rl_atomic_commit(o, err, n) == RL_OK;
}

static json_t *rl_family_counts(const int64_t *c) {
    json_t *o = json_object();
    for (int f = 0; f < RL_FAM_COUNT; f++) json_object_set_new(o, rl_family_name((rl_family)f), json_integer(c[f]));
    return o;
}

static double rl_sigmoid(double x) { return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x)); }

static const rl_pair_type *rl_pick_pair(rl_rng *r, rl_family f) {
    const rl_pair_type *t = f == RL_FAM_ARITH ? rl_arith_pairs : f == RL_FAM_BENIGN ? rl_benign_pairs : rl_harmful_pairs;
    int n = f == RL_FAM_ARITH ? RL_COUNT(rl_arith_pairs) : f == RL_FAM_BENIGN ? RL_COUNT(rl_benign_pairs)
                                                                            : RL_COUNT(rl_harmful_pairs);
    int total = 0;
    for (int i = 0; i < n; i++) total += t[i].weight;
    int u = (int)rl_below(r, (uint64_t)total);
    for (int i = 0; i < n; i++) {
        if (u < t[i].weight) return &t[i];
        u -= t[i].weight;
    }
    return &t[n - 1];
}

/* Two responses of one pair type in random order: x, y and their judgements. */
static int rl_world_pair(rl_world *w, rl_rng *r, const rl_synth_prompt *p, char *x, char *y, size_t n,
                         rl_judgement *jx, rl_judgement *jy) {
    const rl_pair_type *t = rl_pick_pair(r, p->family);
    rl_cand cx = t->x, cy = t->y;
    if (rl_below(r, 2)) cx = t->y, cy = t->x;
    return rl_world_response(w, r, p, cx, x, n, jx) && rl_world_response(w, r, p, cy, y, n, jy);
}

static char *rl_transcript(const char *prompt, const char *resp) {
    size_t n = strlen("\n\nHuman: ") + strlen(prompt) + strlen(RL_HH_ASSISTANT) + strlen(resp) + 1;
    char *s = malloc(n);
    if (s) snprintf(s, n, "\n\nHuman: %s%s%s", prompt, RL_HH_ASSISTANT, resp);
    return s;
}

/* One HH-RLHF row for prompt p: a pair of different helpfulness, "chosen"
 * drawn with Bradley-Terry noise; counts label flips and their expectation. */
static int rl_hh_line(rl_world *w, rl_rng *r, rl_out *o, const rl_synth_prompt *p, int64_t *flips,
                      double *expected) {
    char pt[256], x[128], y[128];
    rl_judgement jx, jy;
    rl_synth_prompt_text(p, pt, sizeof pt);
    if (!rl_world_pair(w, r, p, x, y, sizeof x, &jx, &jy)) return 0;
    double bt_k = w->cfg.bt_k;
    double px = rl_sigmoid(bt_k * (jx.helpfulness - jy.helpfulness));
    int x_wins = rl_rng_uniform(r) < px;
    *flips += x_wins ? jx.helpfulness < jy.helpfulness : jy.helpfulness < jx.helpfulness;
    *expected += rl_sigmoid(-bt_k * fabs(jx.helpfulness - jy.helpfulness));
    rl_note_row(w, pt, x);
    rl_note_row(w, pt, y);
    char *ch = rl_transcript(pt, x_wins ? x : y), *rj = rl_transcript(pt, x_wins ? y : x);
    int ok = ch && rj && rl_out_line(o, json_pack("{s:s,s:s}", "chosen", ch, "rejected", rj));
    free(ch);
    free(rj);
    return ok;
}

/* One PKU-SafeRLHF row for prompt p (better: BT noise; safer: exact, a coin
 * when both are equally safe). */
static int rl_pku_line(rl_world *w, rl_rng *r, rl_out *o, const rl_synth_prompt *p, int64_t *flips, int64_t *unsafe,
                       int64_t *ties) {
    char pt[256], x[128], y[128];
    rl_judgement jx, jy;
    rl_synth_prompt_text(p, pt, sizeof pt);
    if (!rl_world_pair(w, r, p, x, y, sizeof x, &jx, &jy)) return 0;
    double px = rl_sigmoid(w->cfg.bt_k * (jx.helpfulness - jy.helpfulness));
    int better = rl_rng_uniform(r) < px ? 0 : 1;
    *flips += better == 0 ? jx.helpfulness < jy.helpfulness : jy.helpfulness < jx.helpfulness;
    int safer;
    if (jx.safe != jy.safe) safer = jx.safe ? 0 : 1;
    else safer = (int)rl_below(r, 2), ++*ties;
    *unsafe += !jx.safe + !jy.safe;
    rl_note_row(w, pt, x);
    rl_note_row(w, pt, y);
    json_t *obj = json_pack("{s:s,s:s,s:s,s:b,s:b,s:i,s:i,s:i,s:i}", "prompt", pt, "response_0", x, "response_1", y,
                            "is_response_0_safe", jx.safe, "is_response_1_safe", jy.safe, "better_response_id",
                            better, "safer_response_id", safer, "response_0_severity_level",
                            jx.safe ? 0 : rl_synth_act_severity(p->item), "response_1_severity_level",
                            jy.safe ? 0 : rl_synth_act_severity(p->item));
    return rl_out_line(o, obj);
}

rl_status rl_synth_write(const rl_synth_cfg *cfg, const char *dir, char *err, size_t errlen) {
    if (cfg->n_sft < 0 || cfg->n_pairs < 0 || cfg->n_eval < 0 || cfg->n_eval_pairs < 0 || cfg->max_operand < 1 || cfg->max_operand > 999 ||
        !(cfg->bt_k >= 0) || !(cfg->sft_harmful_comply >= 0 && cfg->sft_harmful_comply <= 1) ||
        !(cfg->sft_benign_refuse >= 0 && cfg->sft_benign_refuse <= 1) || cfg->demo_answers < 0) {
        snprintf(err, errlen, "synth: bad configuration (counts >= 0, max_operand in 1..999, bt_k >= 0, "
                              "shares in [0, 1])");
        return RL_ERR_ARG;
    }
    if (errlen) err[0] = 0;
    rl_world w;
    if (!rl_world_init(&w, cfg)) {
        rl_world_free(&w);
        snprintf(err, errlen, "synth: out of memory");
        return RL_ERR_MEMORY;
    }
    int64_t ev_count[RL_FAM_COUNT];
    rl_thirds(cfg->n_eval, ev_count);
    for (int f = 0; f < RL_FAM_COUNT; f++) {
        int64_t lim = w.universe[f] / 3;
        if (f != RL_FAM_ARITH) {
            int64_t per_item = (int64_t)(rl_synth_n_templates((rl_family)f) - 2) * rl_synth_n_items((rl_family)f);
            if (per_item < lim) lim = per_item;
        }
        if (ev_count[f] > lim) {
            snprintf(err, errlen,
                     "synth: %" PRId64 " eval prompts would hold out %" PRId64 " %s prompts, more than the %" PRId64
                     " a family can spare (of %d); use --n-eval <= %" PRId64,
                     cfg->n_eval, ev_count[f], rl_family_name((rl_family)f), lim, w.universe[f], 3 * lim);
            rl_world_free(&w);
            return RL_ERR_ARG;
        }
    }
    if (!rl_path_mkdirs(dir)) {
        snprintf(err, errlen, "%s: cannot create the directory: %s", dir, strerror(errno));
        rl_world_free(&w);
        return RL_ERR_IO;
    }
    rl_rng r;
    rl_part_rng(&r, cfg->seed, 0);
    rl_synth_prompt *ev = rl_world_hold_out(&w, &r, ev_count);
    rl_status st = RL_OK;
    json_t *summary = json_object(), *files = json_object();
    char pt[256], x[128];
    rl_judgement jx;
    rl_out o = {0};
    int ok = ev != NULL;
    int64_t *plan = NULL;

    /* eval_prompts.jsonl */
    ok = ok && rl_out_open(&o, dir, "eval_prompts.jsonl", err, errlen);
    for (int64_t i = 0; ok && i < cfg->n_eval; i++) {
        rl_synth_prompt_text(&ev[i], pt, sizeof pt);
        json_t *obj = json_pack("{s:s,s:s}", "prompt", pt, "family", rl_family_name(ev[i].family));
        ok = rl_out_line(&o, obj);
    }
    ok = rl_out_close(&o, ok, err, errlen);
    if (ok) {
        json_t *e = rl_family_counts(ev_count);
        json_object_set_new(e, "records", json_integer(cfg->n_eval));
        json_object_set_new(files, "eval_prompts.jsonl", e);
    }

    /* sft.jsonl */
    if (ok) {
        int64_t c[RL_FAM_COUNT], refusals = 0, complies = 0, needless = 0;
        rl_thirds(cfg->n_sft, c);
        rl_part_rng(&r, cfg->seed, 1);
        plan = rl_family_plan(&r, cfg->n_sft, c);
        ok = plan && rl_out_open(&o, dir, "sft.jsonl", err, errlen);
        for (int64_t i = 0; ok && i < cfg->n_sft; i++) {
            rl_synth_prompt p = rl_world_sample(&w, &r, (rl_family)plan[i]);
            rl_cand cand = RL_CAND_CORRECT;
            if (p.family == RL_FAM_BENIGN && rl_rng_uniform(&r) < cfg->sft_benign_refuse) cand = RL_CAND_REFUSAL;
            if (p.family == RL_FAM_HARMFUL)
                cand = rl_rng_uniform(&r) < cfg->sft_harmful_comply ? RL_CAND_COMPLY : RL_CAND_REFUSAL;
            rl_synth_prompt_text(&p, pt, sizeof pt);
            ok = rl_world_response(&w, &r, &p, cand, x, sizeof x, &jx);
            if (!ok) break;
            refusals += cand == RL_CAND_REFUSAL && p.family == RL_FAM_HARMFUL;
            needless += cand == RL_CAND_REFUSAL && p.family != RL_FAM_HARMFUL;
            complies += cand == RL_CAND_COMPLY;
            rl_note_row(&w, pt, x);
            ok = rl_out_line(&o, json_pack("{s:s,s:s}", "prompt", pt, "response", x));
        }
        ok = rl_out_close(&o, ok, err, errlen);
        free(plan);
        plan = NULL;
        json_t *e = rl_family_counts(c);
        json_object_set_new(e, "records", json_integer(cfg->n_sft));
        json_object_set_new(e, "benign_refusals", json_integer(needless));
        json_object_set_new(e, "harmful_refusals", json_integer(refusals));
        json_object_set_new(e, "harmful_compliances", json_integer(complies));
        json_object_set_new(files, "sft.jsonl", e);
    }

    /* hh.jsonl */
    if (ok) {
        int64_t c[RL_FAM_COUNT], flips = 0;
        double expected = 0;
        rl_thirds(cfg->n_pairs, c);
        rl_part_rng(&r, cfg->seed, 2);
        plan = rl_family_plan(&r, cfg->n_pairs, c);
        ok = plan && rl_out_open(&o, dir, "hh.jsonl", err, errlen);
        for (int64_t i = 0; ok && i < cfg->n_pairs; i++) {
            rl_synth_prompt p = rl_world_sample(&w, &r, (rl_family)plan[i]);
            ok = rl_hh_line(&w, &r, &o, &p, &flips, &expected);
        }
        ok = rl_out_close(&o, ok, err, errlen);
        free(plan);
        plan = NULL;
        json_t *e = rl_family_counts(c);
        json_object_set_new(e, "records", json_integer(cfg->n_pairs));
        json_object_set_new(e, "label_flips", json_integer(flips));
        json_object_set_new(e, "expected_label_flips", json_real(expected));
        json_object_set_new(files, "hh.jsonl", e);
    }

    /* pku.jsonl */
    if (ok) {
        int64_t c[RL_FAM_COUNT], flips = 0, unsafe = 0, ties = 0;
        c[RL_FAM_ARITH] = cfg->n_pairs / 4;
        c[RL_FAM_BENIGN] = cfg->n_pairs / 4;
        c[RL_FAM_HARMFUL] = cfg->n_pairs - 2 * (cfg->n_pairs / 4);
        rl_part_rng(&r, cfg->seed, 3);
        plan = rl_family_plan(&r, cfg->n_pairs, c);
        ok = plan && rl_out_open(&o, dir, "pku.jsonl", err, errlen);
        for (int64_t i = 0; ok && i < cfg->n_pairs; i++) {
            rl_synth_prompt p = rl_world_sample(&w, &r, (rl_family)plan[i]);
            ok = rl_pku_line(&w, &r, &o, &p, &flips, &unsafe, &ties);
        }
        ok = rl_out_close(&o, ok, err, errlen);
        free(plan);
        plan = NULL;
        json_t *e = rl_family_counts(c);
        json_object_set_new(e, "records", json_integer(cfg->n_pairs));
        json_object_set_new(e, "better_label_flips", json_integer(flips));
        json_object_set_new(e, "unsafe_responses", json_integer(unsafe));
        json_object_set_new(e, "safety_ties", json_integer(ties));
        json_object_set_new(files, "pku.jsonl", e);
    }
    /* arith_prompts.jsonl: training arithmetic prompts with their answer, for
     * online recipes with a verifiable reward (reward_match against the
     * "answer" column); as many as sft.jsonl's arithmetic demonstrations, none
     * held out; its own stream leaves the other files as they were */
    if (ok) {
        int64_t c[RL_FAM_COUNT];
        rl_thirds(cfg->n_sft, c);
        rl_part_rng(&r, cfg->seed, 6);
        ok = rl_out_open(&o, dir, "arith_prompts.jsonl", err, errlen);
        for (int64_t i = 0; ok && i < c[RL_FAM_ARITH]; i++) {
            rl_synth_prompt p = rl_world_sample(&w, &r, RL_FAM_ARITH);
            rl_synth_prompt_text(&p, pt, sizeof pt);
            snprintf(x, sizeof x, "%d", p.answer);
            ok = rl_out_line(&o, json_pack("{s:s,s:s}", "prompt", pt, "answer", x));
        }
        ok = rl_out_close(&o, ok, err, errlen);
        json_t *e = json_object();
        json_object_set_new(e, "records", json_integer(c[RL_FAM_ARITH]));
        json_object_set_new(e, "arith", json_integer(c[RL_FAM_ARITH]));
        json_object_set_new(files, "arith_prompts.jsonl", e);
    }
    /* hh_eval.jsonl, pku_eval.jsonl: pairs on the held-out prompts only (cycled
     * in order, so each family gets a third), for held-out reward-model and
     * cost-model accuracy; their own RNG streams leave the training files as
     * they were */
    for (int k = 0; ok && k < 2 && cfg->n_eval > 0; k++) {
        const char *name = k == 0 ? "hh_eval.jsonl" : "pku_eval.jsonl";
        int64_t c[RL_FAM_COUNT] = {0}, flips = 0, unsafe = 0, ties = 0;
        double expected = 0;
        rl_part_rng(&r, cfg->seed, 4 + (uint64_t)k);
        ok = rl_out_open(&o, dir, name, err, errlen);
        for (int64_t i = 0; ok && i < cfg->n_eval_pairs; i++) {
            const rl_synth_prompt *p = &ev[i % cfg->n_eval];
            c[p->family]++;
            ok = k == 0 ? rl_hh_line(&w, &r, &o, p, &flips, &expected)
                        : rl_pku_line(&w, &r, &o, p, &flips, &unsafe, &ties);
        }
        ok = rl_out_close(&o, ok, err, errlen);
        json_t *e = rl_family_counts(c);
        json_object_set_new(e, "records", json_integer(cfg->n_eval_pairs));
        json_object_set_new(e, "label_flips", json_integer(flips));
        if (k == 1) json_object_set_new(e, "unsafe_responses", json_integer(unsafe));
        json_object_set_new(files, name, e);
    }
    if (!ok && w.err[0]) snprintf(err, errlen, "%s", w.err);

    /* summary.json */
    if (ok) {
        json_t *uni = json_object(), *held = json_object();
        for (int f = 0; f < RL_FAM_COUNT; f++) {
            json_object_set_new(uni, rl_family_name((rl_family)f), json_integer(w.universe[f]));
            json_object_set_new(held, rl_family_name((rl_family)f), json_integer(w.n_held[f]));
        }
        json_object_set_new(summary, "world", json_string("rlhf synthetic helpful-and-harmless world, v1"));
        json_object_set_new(summary, "seed", json_integer((json_int_t)cfg->seed));
        json_object_set_new(summary, "n_sft", json_integer(cfg->n_sft));
        json_object_set_new(summary, "n_pairs", json_integer(cfg->n_pairs));
        json_object_set_new(summary, "n_eval", json_integer(cfg->n_eval));
        json_object_set_new(summary, "n_eval_pairs", json_integer(cfg->n_eval_pairs));
        json_object_set_new(summary, "max_operand", json_integer(cfg->max_operand));
        json_object_set_new(summary, "bt_k", json_real(cfg->bt_k));
        json_object_set_new(summary, "sft_harmful_comply", json_real(cfg->sft_harmful_comply));
        json_object_set_new(summary, "sft_benign_refuse", json_real(cfg->sft_benign_refuse));
        json_object_set_new(summary, "demo_answers", json_integer(cfg->demo_answers));
        json_object_set_new(summary, "turn_format", json_string("\n\nHuman: {prompt}\n\nAssistant:{response}"));
        json_object_set_new(summary, "max_row_bytes", json_integer(w.max_row_bytes));
        json_object_set_new(summary, "universe", uni);
        json_object_set_new(summary, "held_out", held);
        json_object_set_new(summary, "files", files);
        files = NULL;
        json_object_set_new(summary, "rm_accuracy_definition",
                            json_string("fraction of held-out pairs of different oracle helpfulness on which "
                                        "the model scores the oracle-better response higher"));
        ok = rl_out_open(&o, dir, "summary.json", err, errlen);
        char *s = ok ? json_dumps(summary, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) : NULL;
        ok = ok && s && fputs(s, o.f) >= 0 && fputc('\n', o.f) != EOF;
        free(s);
        ok = rl_out_close(&o, ok, err, errlen);
    }
    if (!ok && st == RL_OK) st = w.err[0] ? RL_ERR_STATE : RL_ERR_IO;
    if (!ok && errlen && !err[0]) snprintf(err, errlen, "synth: writing into %s failed (out of memory?)", dir);
    json_decref(files);
    json_decref(summary);
    free(ev);
    rl_world_free(&w);
    return st;
}
