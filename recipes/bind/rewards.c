/* recipes/bind/rewards.c - verifiable rewards: functions of a generated
 * token batch's text that any recipe can call, no reward model needed
 * (DeepSeekMath / DeepSeek-R1's rule-based rewards, TRL's reward functions):
 *
 *   reward_match(seq, answer)   -> f32[R]  1 when the response's answer equals the number in
 *                                          `answer` (a text column: tokens from "answer"), else 0
 *   reward_format(seq, kind)    -> f32[R]  1 when the response has the form `kind` names, else 0
 *
 * seq has R rows; answer has R / G rows when seq holds G samples per prompt
 * (generate's n = G): sample r is checked against answer row r / G.
 *
 * The response is the text of the tokens under seq.mask up to the first EOS
 * (env->eos_id), decoded with env->tok (the byte tokenizer when none is set).
 * Its answer is the content of the last \boxed{...} when there is one, else
 * the last number in the text (an optional '-', digits, an optional
 * fraction; "1,000" reads as 1000): the rule of GSM8K-style graders
 * (OpenAI's grade-school-math "####" answers, TRL's accuracy reward with a
 * math parser). Numbers are equal when they differ by at most 1e-9
 * relative; a response or answer with no number scores 0.
 *
 * Formats (reward_format's kind):
 *   "number"  the response, trimmed of spaces, is one number (the synthetic world's arithmetic)
 *   "boxed"   it holds \boxed{...} with a number inside
 *   "tags"    it is <think>...</think> then <answer>...</answer> (DeepSeek-R1's format reward)
 * No gradient (the text is discrete). In the shape check they return zeros.
 */
#include "rl_recipe_bind.h"

#include "rl_ops.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The response text of row r (malloc'ed, NUL-terminated; *n its length). */
static char *response_text(const rl_recipe_model_env *env, const int32_t *ids, const int32_t *mask, int64_t T,
                           size_t *n) {
    int32_t *keep = malloc(sizeof(int32_t) * (size_t)(T ? T : 1));
    if (!keep) return NULL;
    int64_t k = 0;
    for (int64_t t = 0; t < T; t++) {
        if (!mask[t]) continue;
        if (env && env->eos_id >= 0 && ids[t] == env->eos_id) break;
        keep[k++] = ids[t];
    }
    char *text = NULL;
    if (env && env->tok) {
        if (rl_tokenizer_decode(env->tok, keep, k, &text, n) != RL_OK) text = NULL;
    } else if ((text = malloc((size_t)k + 1))) { /* byte ids: 0..255 are the bytes */
        size_t m = 0;
        for (int64_t i = 0; i < k; i++)
            if (keep[i] >= 0 && keep[i] < 256) text[m++] = (char)keep[i];
        text[m] = 0;
        *n = m;
    }
    free(keep);
    return text;
}

/* Parses a number at s[0..n) (digits with optional '-', ',' thousands and a
 * '.' fraction); returns the characters used, 0 when there is none. */
static size_t parse_number(const char *s, size_t n, double *v) {
    size_t i = 0;
    int neg = 0;
    if (i < n && s[i] == '-') neg = 1, i++;
    if (i >= n || !isdigit((unsigned char)s[i])) return 0;
    double x = 0;
    for (; i < n && (isdigit((unsigned char)s[i]) ||
                     (s[i] == ',' && i + 3 < n + 1 && i + 1 < n && isdigit((unsigned char)s[i + 1])));
         i++)
        if (s[i] != ',') x = 10 * x + (s[i] - '0');
    if (i + 1 < n && s[i] == '.' && isdigit((unsigned char)s[i + 1])) {
        double f = 0.1;
        for (i++; i < n && isdigit((unsigned char)s[i]); i++, f /= 10) x += (s[i] - '0') * f;
    }
    *v = neg ? -x : x;
    return i;
}

/* The last number in s[0..n): 1 and *v, or 0. */
static int last_number(const char *s, size_t n, double *v) {
    int found = 0;
    for (size_t i = 0; i < n;) {
        int starts = (isdigit((unsigned char)s[i]) || (s[i] == '-' && i + 1 < n && isdigit((unsigned char)s[i + 1]))) &&
                     (i == 0 || !isdigit((unsigned char)s[i - 1]));
        size_t k = starts ? parse_number(s + i, n - i, v) : 0;
        if (k) found = 1, i += k;
        else i++;
    }
    return found;
}

/* The content of the last \boxed{...} (braces nested), or NULL. */
static const char *last_boxed(const char *s, size_t n, size_t *len) {
    const char *best = NULL;
    for (const char *p = s; (p = strstr(p, "\\boxed{")) && (size_t)(p - s) < n; p++) {
        const char *q = p + 7;
        int depth = 1;
        const char *e = q;
        while ((size_t)(e - s) < n && depth > 0) {
            if (*e == '{') depth++;
            else if (*e == '}') depth--;
            if (depth > 0) e++;
        }
        if (depth == 0) best = q, *len = (size_t)(e - q);
    }
    return best;
}

/* The response's answer: inside the last \boxed{}, else the last number. */
static int answer_of(const char *s, size_t n, double *v) {
    size_t bl = 0;
    const char *b = last_boxed(s, n, &bl);
    return b ? last_number(b, bl, v) : last_number(s, n, v);
}

static int numbers_equal(double a, double b) { return fabs(a - b) <= 1e-9 * fmax(1.0, fabs(b)); }

static int trimmed(const char **s, size_t *n) {
    while (*n && isspace((unsigned char)**s)) (*s)++, (*n)--;
    while (*n && isspace((unsigned char)(*s)[*n - 1])) (*n)--;
    return *n > 0;
}

/* "<open>...</close>" at the start of s: the length of the whole, or 0. */
static size_t tagged(const char *s, size_t n, const char *tag) {
    char open[32], close[32];
    snprintf(open, sizeof open, "<%s>", tag);
    snprintf(close, sizeof close, "</%s>", tag);
    size_t lo = strlen(open);
    if (n < lo || strncmp(s, open, lo)) return 0;
    const char *e = strstr(s + lo, close);
    return e && (size_t)(e - s) + strlen(close) <= n ? (size_t)(e - s) + strlen(close) : 0;
}

static int format_ok(const char *kind, const char *s, size_t n) {
    double v;
    if (!strcmp(kind, "number")) {
        if (!trimmed(&s, &n)) return 0;
        return parse_number(s, n, &v) == n;
    }
    if (!strcmp(kind, "boxed")) {
        size_t bl = 0;
        const char *b = last_boxed(s, n, &bl);
        return b && last_number(b, bl, &v);
    }
    /* tags: <think>...</think> <answer>...</answer>, only spaces around */
    if (!trimmed(&s, &n)) return 0;
    size_t k = tagged(s, n, "think");
    if (!k) return 0;
    s += k, n -= k;
    if (!trimmed(&s, &n)) return 0;
    k = tagged(s, n, "answer");
    return k == n;
}

/* Reads a token batch's ids and mask into host arrays. */
static rl_status read_tokens(rl_ctx *ctx, const rl_recipe_tokens *tk, int32_t **ids, int32_t **mask) {
    size_t n = (size_t)tk->ids->numel;
    *ids = malloc(sizeof(int32_t) * (n ? n : 1));
    *mask = malloc(sizeof(int32_t) * (n ? n : 1));
    if (!*ids || !*mask) return rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory");
    rl_status st = rl_tensor_read(ctx, tk->ids, *ids, sizeof(int32_t) * n);
    if (!st) {
        if (tk->mask) st = rl_tensor_read(ctx, tk->mask, *mask, sizeof(int32_t) * n);
        else memset(*mask, 0, sizeof(int32_t) * n);
    }
    return st;
}

static rl_status fn_reward(const rl_recipe_call *c, rl_recipe_value *out, int match) {
    rl_ctx *ctx = c->ctx;
    const rl_recipe_model_env *env = c->user;
    const rl_recipe_tokens *seq = &c->args[0].tok;
    const char *who = match ? "reward_match" : "reward_format";
    const int64_t R = seq->ids->shape[0], T = seq->ids->shape[1];
    int64_t A = match ? c->args[1].tok.ids->shape[0] : R;
    if (A < 1 || R % A != 0)
        return rl_ctx_fail(ctx, RL_ERR_ARG,
                           "%s: seq has [%lld] rows and answer [%lld]; seq must hold G samples of each answer's prompt "
                           "(B*G rows for B answers)",
                           who, (long long)R, (long long)A);
    double *r = calloc((size_t)(R ? R : 1), sizeof(double));
    if (!r) return rl_ctx_fail(ctx, RL_ERR_MEMORY, "out of memory");
    rl_status st = RL_OK;
    if (!c->dry) {
        int32_t *ids = NULL, *mask = NULL, *aids = NULL, *amask = NULL;
        st = read_tokens(ctx, seq, &ids, &mask);
        if (!st && match) {
            /* the answer's text is every real token of its row (attn) */
            rl_recipe_tokens at = c->args[1].tok;
            at.mask = at.attn;
            st = read_tokens(ctx, &at, &aids, &amask);
        }
        const int64_t TA = match ? c->args[1].tok.ids->shape[1] : 0, G = R / A;
        for (int64_t i = 0; !st && i < R; i++) {
            size_t n = 0, na = 0;
            char *text = response_text(env, ids + i * T, mask + i * T, T, &n);
            if (!text) {
                st = rl_ctx_fail(ctx, RL_ERR_MEMORY, "%s: cannot decode row %lld", who, (long long)i);
                break;
            }
            if (match) {
                /* no EOS stops an answer: it is the column's text */
                rl_recipe_model_env plain = env ? *env : (rl_recipe_model_env){.eos_id = -1};
                plain.eos_id = -1;
                char *ans = response_text(&plain, aids + (i / G) * TA, amask + (i / G) * TA, TA, &na);
                double got, want;
                r[i] = ans && answer_of(text, n, &got) && last_number(ans, na, &want) && numbers_equal(got, want);
                free(ans);
            } else {
                r[i] = format_ok(c->args[1].str, text, n);
            }
            free(text);
        }
        free(ids), free(mask), free(aids), free(amask);
    }
    if (!st) {
        out->kind = RL_RV_TENSOR;
        out->t = rl_full(ctx, c->dtype, 1, &R, 0.0); /* the run's float dtype */
        for (int64_t i = 0; out->t && i < R; i++) rl_tensor_set(ctx, out->t, i, r[i]);
        if (!out->t) st = rl_ctx_status(ctx);
    }
    free(r);
    return st;
}

rl_status rl_recipe_fn_reward_match(const rl_recipe_call *c, rl_recipe_value *out) { return fn_reward(c, out, 1); }
rl_status rl_recipe_fn_reward_format(const rl_recipe_call *c, rl_recipe_value *out) { return fn_reward(c, out, 0); }
