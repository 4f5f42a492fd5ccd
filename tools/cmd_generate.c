/* tools/cmd_generate.c - `rlhf generate`: samples from a checkpoint of any
 * family (models/rl_model.h) from the command line. One --prompt streams its
 * continuation to stdout token by token as it is generated; --prompts
 * FILE.jsonl runs the file in batches and prints one JSON object per line
 * ({"prompt", "response", "tokens"}). --chat renders each prompt through the
 * model directory's chat template (tokenizer_config.json) as one user turn
 * with the generation prompt, the way transformers' apply_chat_template does,
 * and encodes the special tokens in the rendered text; a plain prompt gets the
 * tokenizer's own template (Llama 3's <|begin_of_text|>), as tokenizer(text)
 * does in transformers.
 */
#include "cli.h"

#include "rl_chat_template.h"
#include "rl_model.h"
#include "rl_tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void rl_generate_usage(FILE *f) {
    fprintf(f,
            "usage: rlhf generate --model DIR (--prompt TEXT | --prompts FILE.jsonl) [options]\n"
            "  --model DIR       a checkpoint of either family (config.json + model.safetensors)\n"
            "  --prompt TEXT     one prompt; its continuation streams to stdout\n"
            "  --prompts FILE    JSONL, each line {\"prompt\": TEXT} or {\"messages\": [{\"role\", \"content\"}, ...]};\n"
            "                    prints one JSON line per prompt: {\"prompt\", \"response\", \"tokens\"}\n"
            "  --chat            render prompts through DIR/tokenizer_config.json's chat template\n"
            "  --tokenizer SPEC  bytes, a directory or a tokenizer.json (default: DIR's tokenizer.json,\n"
            "                    else bytes)\n"
            "  --max-new N       new tokens at most (default 64)\n"
            "  --greedy          argmax decoding (default: sampling)\n"
            "  --temperature T   (default 1)   --top-k K (default 0: off)   --top-p P (default 1: off)\n"
            "  --seed S          sampling seed (default 0)\n"
            "  --eos ID          stop token (default: the tokenizer's end of sequence; -1: none)\n"
            "  --batch N         prompts per batch with --prompts (default 8)\n"
            "  --no-cache        a full forward per token instead of the KV cache (slow; for checks)\n");
}

typedef struct gen_cli {
    rl_tokenizer *tok;
    rl_chat_template *tmpl;
    int chat;
    /* streaming of row 0 */
    int stream;
    int32_t *ids;
    int64_t n, cap;
    size_t printed;
} gen_cli;

static int rl_generate_is_dir(const char *p) {
    struct stat s;
    return stat(p, &s) == 0 && S_ISDIR(s.st_mode);
}

/* The prompt's ids: rendered through the chat template (msgs) or encoded
 * with the tokenizer's template. 0 with a message printed on failure. */
static int rl_generate_encode(gen_cli *g, const rl_chat_message *msgs, int n_msgs, int32_t **ids, int64_t *n) {
    if (g->chat) {
        char *text = NULL, err[1024];
        size_t len;
        if (rl_chat_template_render(g->tmpl, msgs, n_msgs, true, &text, &len, err, sizeof err) != RL_OK) {
            fprintf(stderr, "rlhf generate: chat template: %s\n", err);
            return 0;
        }
        rl_status st = rl_tokenizer_encode_ex(g->tok, text, len, RL_TOKENIZE_SPECIAL, ids, n);
        free(text);
        if (st != RL_OK) fprintf(stderr, "rlhf generate: %s\n", rl_tokenizer_error(g->tok));
        return st == RL_OK;
    }
    const char *p = msgs[n_msgs - 1].content ? msgs[n_msgs - 1].content : "";
    if (rl_tokenizer_encode_ex(g->tok, p, strlen(p), RL_TOKENIZE_ADD_BOS, ids, n) != RL_OK) {
        fprintf(stderr, "rlhf generate: %s\n", rl_tokenizer_error(g->tok));
        return 0;
    }
    return 1;
}

/* Streams row 0: decodes everything generated so far and prints what is
 * new, so that a character split over two byte-level tokens prints whole. */
static void rl_generate_on_token(void *user, int64_t row, int32_t token) {
    gen_cli *g = user;
    if (row != 0 || !g->stream) return;
    if (g->n == g->cap) {
        int64_t cap = g->cap ? 2 * g->cap : 64;
        int32_t *p = realloc(g->ids, sizeof(int32_t) * (size_t)cap);
        if (!p) return;
        g->ids = p, g->cap = cap;
    }
    g->ids[g->n++] = token;
    char *text = NULL;
    size_t len = 0;
    if (rl_tokenizer_decode(g->tok, g->ids, g->n, &text, &len) != RL_OK) return;
    /* hold back an incomplete UTF-8 character at the end */
    size_t end = len, k = 0;
    while (k < 4 && k < len && ((unsigned char)text[len - 1 - k] & 0xC0) == 0x80) k++;
    if (k < len) {
        unsigned char lead = (unsigned char)text[len - 1 - k];
        size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
        if (need > k + 1) end = len - 1 - k;
    }
    if (end > g->printed) {
        fwrite(text + g->printed, 1, end - g->printed, stdout);
        fflush(stdout);
        g->printed = end;
    }
    free(text);
}

/* Generates for prompts [0, n) and prints them (streamed or as JSON lines). */
static int rl_generate_batch(rl_ctx *ctx, const rl_model *m, gen_cli *g, int32_t **ids, const int64_t *lens,
                             json_t **prompts, int64_t n, const rl_gen_cfg *cfg, rl_rng *rng) {
    int64_t stride = 1;
    for (int64_t i = 0; i < n; i++) stride = lens[i] > stride ? lens[i] : stride;
    int32_t *flat = calloc((size_t)(n * stride), sizeof(int32_t));
    if (!flat) return fprintf(stderr, "rlhf generate: out of memory\n"), 1;
    for (int64_t i = 0; i < n; i++) memcpy(flat + i * stride, ids[i], sizeof(int32_t) * (size_t)lens[i]);
    rl_gen_out out;
    rl_status st = rl_model_generate(ctx, m, flat, lens, n, stride, cfg, rng, &out);
    free(flat);
    if (st != RL_OK) return fprintf(stderr, "rlhf generate: %s\n", rl_ctx_error(ctx)), 1;
    int rc = 0;
    for (int64_t i = 0; i < n && !g->stream; i++) {
        const int32_t *row = out.tokens + i * out.T + out.prompt_len[i];
        int64_t k = out.len[i] - out.prompt_len[i];
        char *text = NULL;
        size_t len = 0;
        if (rl_tokenizer_decode(g->tok, row, k, &text, &len) != RL_OK) {
            fprintf(stderr, "rlhf generate: %s\n", rl_tokenizer_error(g->tok));
            rc = 1;
            break;
        }
        char *clean = rl_utf8_sanitize(text, len);
        free(text);
        json_t *o = json_object();
        json_object_set(o, "prompt", prompts[i]);
        json_object_set_new(o, "response", json_string(clean ? clean : ""));
        json_t *a = json_array();
        for (int64_t t = 0; t < k; t++) json_array_append_new(a, json_integer(row[t]));
        json_object_set_new(o, "tokens", a);
        char *line = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (line) puts(line);
        free(line), free(clean);
        json_decref(o);
    }
    if (g->stream) putchar('\n');
    rl_gen_out_free(&out);
    return rc;
}

/* A prompts-file line's messages (borrowed from v); 0 when it has neither
 * "prompt" nor "messages". */
static int rl_generate_messages(json_t *v, rl_chat_message *msgs, int cap, int *n) {
    json_t *p = json_object_get(v, "prompt"), *ms = json_object_get(v, "messages");
    if (json_is_string(p)) {
        msgs[0] = (rl_chat_message){"user", json_string_value(p)};
        *n = 1;
        return 1;
    }
    if (!json_is_array(ms) || json_array_size(ms) == 0 || json_array_size(ms) > (size_t)cap) return 0;
    for (size_t i = 0; i < json_array_size(ms); i++) {
        json_t *e = json_array_get(ms, i);
        const char *role = json_string_value(json_object_get(e, "role"));
        const char *content = json_string_value(json_object_get(e, "content"));
        if (!role) return 0;
        msgs[i] = (rl_chat_message){role, content};
    }
    *n = (int)json_array_size(ms);
    return 1;
}

int rl_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *prompts = NULL, *tok_spec = NULL;
    rl_gen_cfg cfg = rl_gen_cfg_default();
    cfg.max_new_tokens = 64;
    int64_t batch = 8;
    uint64_t seed = 0;
    int eos_set = 0;
    gen_cli g;
    memset(&g, 0, sizeof g);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help")) {
            rl_generate_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--chat")) g.chat = 1;
        else if (!strcmp(a, "--greedy")) cfg.greedy = 1;
        else if (!strcmp(a, "--no-cache")) cfg.use_cache = 0;
        else if (!v) {
            fprintf(stderr, "rlhf generate: unknown argument '%s' (or it needs a value)\n", a);
            rl_generate_usage(stderr);
            return 2;
        } else if (!strcmp(a, "--model")) model = v, i++;
        else if (!strcmp(a, "--prompt")) prompt = v, i++;
        else if (!strcmp(a, "--prompts")) prompts = v, i++;
        else if (!strcmp(a, "--tokenizer")) tok_spec = v, i++;
        else if (!strcmp(a, "--max-new")) cfg.max_new_tokens = atoll(v), i++;
        else if (!strcmp(a, "--temperature")) cfg.temperature = atof(v), i++;
        else if (!strcmp(a, "--top-k")) cfg.top_k = atoll(v), i++;
        else if (!strcmp(a, "--top-p")) cfg.top_p = atof(v), i++;
        else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--eos")) cfg.eos_id = (int32_t)atol(v), eos_set = 1, i++;
        else if (!strcmp(a, "--batch")) batch = atoll(v), i++;
        else {
            fprintf(stderr, "rlhf generate: unknown argument '%s'\n", a);
            rl_generate_usage(stderr);
            return 2;
        }
    }
    if (!model || !prompt == !prompts || batch < 1 || cfg.max_new_tokens < 1 ||
        (!cfg.greedy && !(cfg.temperature > 0))) {
        fprintf(stderr, "rlhf generate: give --model and one of --prompt, --prompts (batch, max-new >= 1, "
                        "temperature > 0)\n");
        rl_generate_usage(stderr);
        return 2;
    }
    char err[2048], path[4096];
    int rc = 1;
    rl_ctx *ctx = rl_ctx_new("cpu");
    rl_model *m = NULL;
    FILE *in = NULL;
    json_t **lines = NULL;
    int32_t **ids = NULL;
    int64_t *lens = NULL;
    if (!tok_spec) {
        snprintf(path, sizeof path, "%s/tokenizer.json", model);
        FILE *probe = rl_generate_is_dir(model) ? fopen(path, "r") : NULL;
        if (probe) fclose(probe);
        tok_spec = probe ? model : "bytes";
    }
    if (!(g.tok = rl_tokenizer_open(tok_spec, err, sizeof err))) {
        fprintf(stderr, "rlhf generate: %s\n", err);
        goto done;
    }
    if (g.chat) {
        snprintf(path, sizeof path, "%s/tokenizer_config.json", model);
        if (!(g.tmpl = rl_chat_template_load(path, err, sizeof err))) {
            fprintf(stderr, "rlhf generate: --chat: %s\n", err);
            goto done;
        }
    }
    if (rl_model_load(ctx, model, RL_HEAD_LM, RL_F32, 0, &m, err, sizeof err) != RL_OK) {
        fprintf(stderr, "rlhf generate: %s\n", err);
        goto done;
    }
    if (rl_tokenizer_vocab_size(g.tok) > m->vocab) {
        fprintf(stderr, "rlhf generate: the tokenizer (%s) has %d ids but %s's vocabulary only %lld (give --tokenizer)\n",
                tok_spec, rl_tokenizer_vocab_size(g.tok), model, (long long)m->vocab);
        goto done;
    }
    if (!eos_set) cfg.eos_id = rl_tokenizer_eos_id(g.tok);
    cfg.pad_id = rl_tokenizer_pad_id(g.tok) >= 0 ? rl_tokenizer_pad_id(g.tok) : 0;
    rl_rng rng;
    rl_rng_seed(&rng, seed);
    rl_ctx_set_grad(ctx, 0);
    lines = calloc((size_t)batch, sizeof *lines);
    ids = calloc((size_t)batch, sizeof *ids);
    lens = calloc((size_t)batch, sizeof *lens);
    if (!lines || !ids || !lens) goto done;
    if (prompt) {
        rl_chat_message msg = {"user", prompt};
        if (!rl_generate_encode(&g, &msg, 1, &ids[0], &lens[0])) goto done;
        lines[0] = json_string(prompt);
        g.stream = 1;
        cfg.on_token = rl_generate_on_token;
        cfg.on_token_user = &g;
        rc = rl_generate_batch(ctx, m, &g, ids, lens, lines, 1, &cfg, &rng);
        goto done;
    }
    if (!(in = fopen(prompts, "r"))) {
        fprintf(stderr, "rlhf generate: cannot open %s\n", prompts);
        goto done;
    }
    char *buf = NULL;
    size_t bufcap = 0;
    long lineno = 0;
    int64_t n = 0;
    rc = 0;
    for (;;) {
        ssize_t got = getline(&buf, &bufcap, in);
        if (got > 0) {
            lineno++;
            json_error_t je;
            json_t *v = json_loadb(buf, (size_t)got, 0, &je);
            rl_chat_message msgs[64];
            int nm = 0;
            if (!v && strspn(buf, " \t\r\n") == (size_t)got) continue; /* a blank line */
            if (!v || !rl_generate_messages(v, msgs, 64, &nm)) {
                fprintf(stderr, "rlhf generate: %s:%ld: %s\n", prompts, lineno,
                        v ? "expected {\"prompt\": TEXT} or {\"messages\": [{\"role\", \"content\"}, ...]}" : je.text);
                json_decref(v);
                rc = 1;
                break;
            }
            if (!rl_generate_encode(&g, msgs, nm, &ids[n], &lens[n])) {
                fprintf(stderr, "rlhf generate: %s:%ld: the prompt above\n", prompts, lineno);
                json_decref(v);
                rc = 1;
                break;
            }
            lines[n++] = v;
        }
        if ((got <= 0 && n > 0) || n == batch) {
            rc = rl_generate_batch(ctx, m, &g, ids, lens, lines, n, &cfg, &rng);
            for (int64_t i = 0; i < n; i++) json_decref(lines[i]), free(ids[i]), lines[i] = NULL, ids[i] = NULL;
            n = 0;
            if (rc) break;
        }
        if (got <= 0) break;
    }
    free(buf);
done:
    for (int64_t i = 0; lines && i < batch; i++) json_decref(lines[i]);
    for (int64_t i = 0; ids && i < batch; i++) free(ids[i]);
    free(lines), free(ids), free(lens), free(g.ids);
    if (in) fclose(in);
    rl_model_free(ctx, m);
    rl_chat_template_free(g.tmpl);
    rl_tokenizer_free(g.tok);
    rl_ctx_free(ctx);
    return rc;
}
