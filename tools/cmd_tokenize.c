/* tools/cmd_tokenize.c - `rlhf tokenize --tokenizer PATH [--decode]
 * [--special] [--bos]`: a filter over rl_tokenizer.h, so users can compare
 * our ids with another implementation's line by line. It reads one JSON
 * string per line on stdin and prints one JSON array of ids per line; with
 * --decode it reads arrays of ids and prints strings (bytes that are not
 * valid UTF-8, and NUL, print as U+FFFD, as rl_utf8_sanitize does: JSON
 * cannot hold them). A bad line stops it with its line number, so output
 * lines always match input lines.
 */
#include "cli.h"

#include "rl_tokenizer.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void rl_tokenize_usage(FILE *f) {
    fprintf(f,
            "usage: rlhf tokenize --tokenizer PATH [--decode] [--special] [--bos] < IN > OUT\n"
            "  --tokenizer PATH  bytes, a directory (tokenizer.json[.gz], or GPT-2's vocab.json + merges.txt),\n"
            "                    or a tokenizer.json[.gz] file\n"
            "  (default)         each line of IN is a JSON string; prints its ids as a JSON array\n"
            "  --decode          each line of IN is a JSON array of ids; prints the text as a JSON string\n"
            "  --special         special tokens written in the text become their ids (trusted text only)\n"
            "  --bos             add the tokenizer's template (Llama 3: <|begin_of_text|> in front)\n");
}

/* One line of encode mode; 0, or 1 with a message printed. */
static int rl_tokenize_line(rl_tokenizer *tok, json_t *v, unsigned flags, long lineno) {
    if (!json_is_string(v)) {
        fprintf(stderr, "rlhf tokenize: stdin line %ld: expected a JSON string\n", lineno);
        return 1;
    }
    int32_t *ids;
    int64_t n;
    if (rl_tokenizer_encode_ex(tok, json_string_value(v), json_string_length(v), flags, &ids, &n) != RL_OK) {
        fprintf(stderr, "rlhf tokenize: stdin line %ld: %s\n", lineno, rl_tokenizer_error(tok));
        return 1;
    }
    putchar('[');
    for (int64_t i = 0; i < n; i++) printf(i ? ",%d" : "%d", (int)ids[i]);
    fputs("]\n", stdout);
    free(ids);
    return 0;
}

static int rl_detokenize_line(rl_tokenizer *tok, json_t *v, long lineno) {
    size_t n = json_is_array(v) ? json_array_size(v) : 0;
    if (!json_is_array(v)) {
        fprintf(stderr, "rlhf tokenize: stdin line %ld: expected a JSON array of token ids\n", lineno);
        return 1;
    }
    int32_t *ids = malloc((n + 1) * sizeof *ids);
    if (!ids) {
        fprintf(stderr, "rlhf tokenize: out of memory\n");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_integer(x) || json_integer_value(x) < INT32_MIN || json_integer_value(x) > INT32_MAX) {
            fprintf(stderr, "rlhf tokenize: stdin line %ld: element %zu is not a token id\n", lineno, i);
            free(ids);
            return 1;
        }
        ids[i] = (int32_t)json_integer_value(x);
    }
    char *text;
    size_t len;
    rl_status st = rl_tokenizer_decode(tok, ids, (int64_t)n, &text, &len);
    free(ids);
    if (st != RL_OK) {
        fprintf(stderr, "rlhf tokenize: stdin line %ld: %s\n", lineno, rl_tokenizer_error(tok));
        return 1;
    }
    char *clean = rl_utf8_sanitize(text, len);
    free(text);
    json_t *s = clean ? json_string(clean) : NULL;
    char *out = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
    free(clean);
    json_decref(s);
    if (!out) {
        fprintf(stderr, "rlhf tokenize: out of memory\n");
        return 1;
    }
    puts(out);
    free(out);
    return 0;
}

int rl_cmd_tokenize(int argc, char **argv) {
    const char *spec = NULL;
    int decode = 0;
    unsigned flags = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--tokenizer") == 0 && i + 1 < argc) spec = argv[++i];
        else if (strcmp(argv[i], "--decode") == 0) decode = 1;
        else if (strcmp(argv[i], "--special") == 0) flags |= RL_TOKENIZE_SPECIAL;
        else if (strcmp(argv[i], "--bos") == 0) flags |= RL_TOKENIZE_ADD_BOS;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            rl_tokenize_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "rlhf tokenize: unknown or incomplete option '%s'\n", argv[i]);
            rl_tokenize_usage(stderr);
            return 2;
        }
    }
    if (!spec) {
        fprintf(stderr, "rlhf tokenize: which tokenizer? give --tokenizer PATH\n");
        rl_tokenize_usage(stderr);
        return 2;
    }
    char err[1024];
    rl_tokenizer *tok = rl_tokenizer_open(spec, err, sizeof err);
    if (!tok) {
        fprintf(stderr, "rlhf tokenize: %s\n", err);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int rc = 0;
    while (rc == 0 && (got = getline(&line, &cap, stdin)) >= 0) {
        lineno++;
        size_t l = (size_t)got;
        if (l && line[l - 1] == '\n') l--;
        if (l && line[l - 1] == '\r') l--;
        json_error_t je;
        json_t *v = json_loadb(line, l, JSON_DECODE_ANY | JSON_ALLOW_NUL, &je);
        if (!v) {
            fprintf(stderr, "rlhf tokenize: stdin line %ld, column %d: not valid JSON: %s\n", lineno, je.column,
                    je.text);
            rc = 1;
            break;
        }
        rc = decode ? rl_detokenize_line(tok, v, lineno) : rl_tokenize_line(tok, v, flags, lineno);
        json_decref(v);
    }
    free(line);
    rl_tokenizer_free(tok);
    if (fflush(stdout) != 0 && rc == 0) {
        fprintf(stderr, "rlhf tokenize: cannot write the output\n");
        rc = 1;
    }
    return rc;
}
