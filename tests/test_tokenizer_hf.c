/* tests/test_tokenizer_hf.c - Hugging Face tokenizer.json files
 * (models/tokenizer_hf.c):
 *  - the published Qwen3 and Llama 3 tokenizers against ids from the Hugging
 *    Face `tokenizers` library itself (tests/fixtures/tokenizer/{qwen3,llama3}/
 *    expected.json, from tools/make_hf_tokenizer_fixture.js): with and without
 *    RL_TOKENIZE_SPECIAL, with RL_TOKENIZE_ADD_BOS (Llama 3), and decoding;
 *  - special ids from tokenizer_config.json, round trips of invalid UTF-8 and
 *    random bytes, the fast merge against encoder.py's loop;
 *  - a small hand-made tokenizer.json for ignore_merges, templates with a
 *    suffix, non-special added tokens and the fallbacks for eos/bos;
 *  - load errors: each names the file and the field;
 *  - `rlhf tokenize` (through RLHF_BIN) both ways, and its line-numbered errors.
 */
#include "rl_test.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "rl_tokenizer.h"

#define FIX RLHF_SOURCE_DIR "/tests/fixtures/tokenizer"
#define TMP(name) RLHF_TEST_TMP "/hf_tok_" name

static rl_tokenizer *g_qwen, *g_llama;

static int group_setup(void **state) {
    (void)state;
    char err[512];
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    /* a directory holding tokenizer.json.gz, and the file itself */
    g_qwen = rl_tokenizer_open(FIX "/qwen3", err, sizeof err);
    if (!g_qwen) { fprintf(stderr, "%s\n", err); return -1; }
    g_llama = rl_tokenizer_open(FIX "/llama3/tokenizer.json.gz", err, sizeof err);
    if (!g_llama) { fprintf(stderr, "%s\n", err); return -1; }
    printf("loaded the Qwen3 and Llama 3 tokenizers in %.2f s of CPU\n", (double)clock() / CLOCKS_PER_SEC - t0);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    rl_tokenizer_free(g_qwen);
    rl_tokenizer_free(g_llama);
    return 0;
}

static const char *esc(const char *s, size_t n) {
    static char buf[4][400];
    static int k;
    char *b = buf[k++ & 3];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 6 < sizeof buf[0]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f) b[o++] = (char)c;
        else o += (size_t)snprintf(b + o, sizeof buf[0] - o, "\\x%02x", c);
    }
    b[o] = 0;
    return b;
}

static const char *ids_str(const int32_t *ids, int64_t n) {
    static char buf[2][1200];
    static int k;
    char *b = buf[k++ & 1];
    size_t o = 0;
    b[0] = 0;
    for (int64_t i = 0; i < n && o + 16 < sizeof buf[0]; i++)
        o += (size_t)snprintf(b + o, sizeof buf[0] - o, "%s%d", i ? " " : "", ids[i]);
    return b;
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (int64_t)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

static void check_ids(rl_tokenizer *tok, const char *text, size_t len, unsigned flags, const int32_t *want,
                      int64_t nwant) {
    int32_t *ids;
    int64_t n;
    assert_int_equal(rl_tokenizer_encode_ex(tok, text, len, flags, &ids, &n), RL_OK);
    if (n != nwant || (n && memcmp(ids, want, (size_t)n * sizeof *ids) != 0))
        fail_msg("\"%s\" (flags %u): got [%s], want [%s]", esc(text, len), flags, ids_str(ids, n), ids_str(want, nwant));
    free(ids);
}

/* decode(encode(x)) == x, and the fast merge equals encoder.py's loop. */
static void check_roundtrip(rl_tokenizer *tok, const char *text, size_t len, unsigned flags) {
    int32_t *ids, *ref;
    int64_t n, nref;
    assert_int_equal(rl_tokenizer_encode_ex(tok, text, len, flags, &ids, &n), RL_OK);
    char *back;
    size_t blen;
    assert_int_equal(rl_tokenizer_decode(tok, ids, n, &back, &blen), RL_OK);
    if (blen != len || (len && memcmp(back, text, len) != 0))
        fail_msg("\"%s\" decodes to \"%s\"", esc(text, len), esc(back, blen));
    free(back);
    rl_tokenizer_set_reference_mode(tok, 1);
    assert_int_equal(rl_tokenizer_encode_ex(tok, text, len, flags, &ref, &nref), RL_OK);
    rl_tokenizer_set_reference_mode(tok, 0);
    if (n != nref || (n && memcmp(ids, ref, (size_t)n * sizeof *ids) != 0))
        fail_msg("\"%s\": fast merge [%s], encoder.py's loop [%s]", esc(text, len), ids_str(ids, n), ids_str(ref, nref));
    free(ref);
    free(ids);
}

/* ---- against the library ----------------------------------------------------- */

/* Compares one field of a case; 1 when equal. */
static int same_ids(rl_tokenizer *tok, const char *text, size_t len, unsigned flags, json_t *want, const char *name,
                    const char *what, int *shown) {
    int32_t *ids;
    int64_t n;
    assert_int_equal(rl_tokenizer_encode_ex(tok, text, len, flags, &ids, &n), RL_OK);
    int ok = (size_t)n == json_array_size(want);
    for (int64_t i = 0; ok && i < n; i++) ok = json_integer_value(json_array_get(want, (size_t)i)) == ids[i];
    if (!ok && (*shown)++ < 8) {
        int32_t w[1024];
        size_t nw = json_array_size(want) < 1024 ? json_array_size(want) : 1024;
        for (size_t i = 0; i < nw; i++) w[i] = (int32_t)json_integer_value(json_array_get(want, i));
        printf("%s %s: \"%s\": got [%s], the library [%s]\n", name, what, esc(text, len), ids_str(ids, n),
               ids_str(w, (int64_t)nw));
    }
    free(ids);
    return ok;
}

static void check_against_library(rl_tokenizer *tok, const char *name) {
    char path[512];
    snprintf(path, sizeof path, FIX "/%s/expected.json", name);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) fail_msg("%s: %s (line %d)", path, je.text, je.line);
    json_t *cases = json_object_get(root, "cases");
    assert_true(json_array_size(cases) >= 300);
    size_t total = json_array_size(cases), agree = 0, agree_plain = 0, agree_bos = 0, nbos = 0, agree_dec = 0;
    int shown = 0;
    for (size_t i = 0; i < total; i++) {
        json_t *c = json_array_get(cases, i), *t = json_object_get(c, "text");
        const char *text = json_string_value(t);
        size_t len = json_string_length(t);
        int ok = same_ids(tok, text, len, RL_TOKENIZE_SPECIAL, json_object_get(c, "ids"), name, "ids", &shown);
        agree += ok;
        agree_plain += same_ids(tok, text, len, 0, json_object_get(c, "ids_plain"), name, "ids_plain", &shown);
        if (json_object_get(c, "ids_bos")) {
            nbos++;
            agree_bos += same_ids(tok, text, len, RL_TOKENIZE_SPECIAL | RL_TOKENIZE_ADD_BOS,
                                  json_object_get(c, "ids_bos"), name, "ids_bos", &shown);
        }
        /* decoding the library's ids gives the library's text (NFC for Qwen3) */
        json_t *ids = json_object_get(c, "ids"), *dec = json_object_get(c, "decoded");
        int32_t *v = malloc((json_array_size(ids) + 1) * sizeof *v);
        for (size_t k = 0; k < json_array_size(ids); k++) v[k] = (int32_t)json_integer_value(json_array_get(ids, k));
        char *back;
        size_t blen;
        assert_int_equal(rl_tokenizer_decode(tok, v, (int64_t)json_array_size(ids), &back, &blen), RL_OK);
        int dok = blen == json_string_length(dec) && memcmp(back, json_string_value(dec), blen) == 0;
        if (!dok && shown++ < 8) printf("%s decode: \"%s\" gives \"%s\"\n", name, esc(text, len), esc(back, blen));
        agree_dec += dok;
        free(back);
        free(v);
        /* our own ids round-trip to the text as the library normalizes it */
        if (ok) {
            int32_t *mine;
            int64_t n;
            assert_int_equal(rl_tokenizer_encode_ex(tok, text, len, 0, &mine, &n), RL_OK);
            assert_int_equal(rl_tokenizer_decode(tok, mine, n, &back, &blen), RL_OK);
            if (blen != json_string_length(dec) || memcmp(back, json_string_value(dec), blen) != 0)
                fail_msg("%s: decode(encode(\"%s\")) is \"%s\"", name, esc(text, len), esc(back, blen));
            free(back);
            free(mine);
        }
    }
    printf("%s: %zu/%zu strings equal to %s (RL_TOKENIZE_SPECIAL = encode(text, false)); %zu/%zu without "
           "special tokens; %zu/%zu with RL_TOKENIZE_ADD_BOS = encode(text, true); %zu/%zu decode\n",
           name, agree, total, json_string_value(json_object_get(root, "library")), agree_plain, total, agree_bos,
           nbos, agree_dec, total);
    int all = agree == total && agree_plain == total && agree_bos == nbos && agree_dec == total;
    json_decref(root);
    if (!all) fail_msg("%s: ids differ from the library's (see above)", name);
}

static void test_qwen3_against_library(void **state) {
    (void)state;
    check_against_library(g_qwen, "qwen3");
}

static void test_llama3_against_library(void **state) {
    (void)state;
    check_against_library(g_llama, "llama3");
}

/* ---- special tokens and ids ---------------------------------------------------- */

static void test_special_ids(void **state) {
    (void)state;
    /* Qwen3's tokenizer_config.json: eos <|im_end|>, pad <|endoftext|>, no bos */
    assert_int_equal(rl_tokenizer_vocab_size(g_qwen), 151669);
    assert_int_equal(rl_tokenizer_eos_id(g_qwen), 151645);
    assert_int_equal(rl_tokenizer_pad_id(g_qwen), 151643);
    assert_int_equal(rl_tokenizer_bos_id(g_qwen), -1);
    assert_int_equal(rl_tokenizer_token_id(g_qwen, "<think>", 7), 151667);
    assert_int_equal(rl_tokenizer_token_id(g_qwen, "<|im_start|>", 12), 151644);
    assert_int_equal(rl_tokenizer_token_id(g_qwen, "hello", 5), 14990);
    /* Llama 3: bos <|begin_of_text|>, eos <|end_of_text|>, pad = eos */
    assert_int_equal(rl_tokenizer_vocab_size(g_llama), 128256);
    assert_int_equal(rl_tokenizer_bos_id(g_llama), 128000);
    assert_int_equal(rl_tokenizer_eos_id(g_llama), 128001);
    assert_int_equal(rl_tokenizer_pad_id(g_llama), 128001);
    assert_int_equal(rl_tokenizer_kind_of(g_llama), RL_TOKENIZER_BPE);
    /* special tokens: text by default, ids on request, both ways */
    const char *chat = "<|im_start|>user\nhi<|im_end|>";
    check_ids(g_qwen, chat, strlen(chat), RL_TOKENIZE_SPECIAL, IDS(151644, 872, 198, 6023, 151645));
    check_ids(g_qwen, chat, strlen(chat), 0, IDS(27, 91, 318, 4906, 91, 29, 872, 198, 6023, 27, 91, 318, 6213, 91, 29));
    char *s;
    size_t n;
    assert_int_equal(rl_tokenizer_decode(g_qwen, IDS(151644, 872, 198, 6023, 151645), &s, &n), RL_OK);
    assert_string_equal(s, chat);
    free(s);
    /* Qwen3's non-special added tokens are split out even without the flag */
    check_ids(g_qwen, "<think>", 7, 0, IDS(151667));
    /* BOS only on request, and only for Llama 3; Qwen3's template adds nothing */
    check_ids(g_llama, "Hello", 5, RL_TOKENIZE_ADD_BOS, IDS(128000, 9906));
    check_ids(g_llama, "Hello", 5, 0, IDS(9906));
    check_ids(g_llama, "", 0, RL_TOKENIZE_ADD_BOS, IDS(128000));
    check_ids(g_qwen, "", 0, RL_TOKENIZE_ADD_BOS, NULL, 0);
    assert_int_equal(rl_tokenizer_decode(g_llama, IDS(128000, 9906, 128001), &s, &n), RL_OK);
    assert_string_equal(s, "<|begin_of_text|>Hello<|end_of_text|>");
    free(s);
    assert_int_equal(rl_tokenizer_decode(g_llama, IDS(128256), &s, &n), RL_ERR_ARG);
    assert_contains(rl_tokenizer_error(g_llama), "id 128256 at position 0 is outside [0, 128256)");
}

/* Bytes the library cannot be given (invalid UTF-8, NUL) still round-trip. */
static void test_roundtrips(void **state) {
    (void)state;
    static const char *const texts[] = {"\xff\xfe", "ab\xff" "cd", "\xc3", "e\xcc", " \x80x", "\xed\xa0\x80z",
                                        "a\n\xff\n", "12\xff" "345", "'\xff", "x\r\xff\n"};
    for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
        check_roundtrip(g_llama, texts[i], strlen(texts[i]), 0);
        check_roundtrip(g_qwen, texts[i], strlen(texts[i]), 0);
    }
    check_roundtrip(g_llama, "a\0b", 3, 0);
    check_roundtrip(g_qwen, "a\0\xc3\xa9", 4, RL_TOKENIZE_SPECIAL);
    /* NFC still applies to the valid stretches around an invalid byte */
    int32_t *ids;
    int64_t n;
    char *back;
    size_t blen;
    assert_int_equal(rl_tokenizer_encode(g_qwen, "e\xcc\x81\xff" "e\xcc\x81", 7, &ids, &n), RL_OK);
    assert_int_equal(rl_tokenizer_decode(g_qwen, ids, n, &back, &blen), RL_OK);
    assert_int_equal(blen, 5);
    assert_memory_equal(back, "\xc3\xa9\xff\xc3\xa9", 5);
    free(back);
    free(ids);
    /* random bytes, mostly ASCII letters, spaces, digits and some high bytes */
    uint64_t x = 12345;
    char buf[300];
    for (int r = 0; r < 300; r++) {
        size_t len = (size_t)(r % 97) + 1;
        for (size_t i = 0; i < len; i++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            unsigned v = (unsigned)(x >> 33);
            static const char pool[] = "aAb zZ9'\n\t\r.,<|>e";
            buf[i] = (v & 7) == 0 ? (char)(0x80 + (v >> 8) % 128) : pool[(v >> 8) % (sizeof pool - 1)];
        }
        check_roundtrip(g_llama, buf, len, RL_TOKENIZE_SPECIAL);
    }
}

/* ---- a small hand-made tokenizer.json ---------------------------------------------- */

/* GPT-2's bytes_to_unicode, for writing vocabularies. */
static void byte_str(int b, char out[4]) {
    int keep = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
    int n = 0, cp = b;
    if (!keep) {
        for (int c = 0; c < b; c++)
            if (!((c >= 33 && c <= 126) || (c >= 161 && c <= 172) || (c >= 174 && c <= 255))) n++;
        cp = 256 + n;
    }
    if (cp < 0x80) { out[0] = (char)cp; out[1] = 0; }
    else { out[0] = (char)(0xC0 | (cp >> 6)); out[1] = (char)(0x80 | (cp & 0x3F)); out[2] = 0; }
}

static const char QWEN2_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* vocab: the 256 bytes (ids in byte order), "ab" 256, "abc" 257, "xyz" 258;
 * added: <s> 259 (special), <x> 260 (not special), </s> 261 (special). */
static json_t *mini_json(void) {
    json_t *vocab = json_object();
    for (int b = 0; b < 256; b++) {
        char s[4];
        byte_str(b, s);
        json_object_set_new(vocab, s, json_integer(b));
    }
    json_object_set_new(vocab, "ab", json_integer(256));
    json_object_set_new(vocab, "abc", json_integer(257));
    json_object_set_new(vocab, "xyz", json_integer(258));
    json_t *root = json_pack(
        "{s:n, s:n, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}, {s:i, s:s, s:b, s:b, s:b, s:b, s:b},"
        " {s:i, s:s, s:b, s:b, s:b, s:b, s:b}], s:n,"
        " s:{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, {s:s, s:b, s:b, s:b}]},"
        " s:{s:s, s:[{s:{s:s, s:i}}, {s:{s:s, s:i}}, {s:{s:s, s:i}}], s:{s:{s:s, s:[i]}, s:{s:s, s:[i]}}},"
        " s:{s:s}, s:{s:s, s:n, s:n, s:b, s:b, s:o, s:[[s, s], s]}}",
        "truncation", "padding", "added_tokens",
        "id", 259, "content", "<s>", "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1,
        "id", 260, "content", "<x>", "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 0,
        "id", 261, "content", "</s>", "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1,
        "normalizer",
        "pre_tokenizer", "type", "Sequence", "pretokenizers", "type", "Split", "pattern", "Regex", QWEN2_RE,
        "behavior", "Isolated", "invert", 0, "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 0,
        "use_regex", 0,
        "post_processor", "type", "TemplateProcessing", "single", "SpecialToken", "id", "<s>", "type_id", 0,
        "Sequence", "id", "A", "type_id", 0, "SpecialToken", "id", "</s>", "type_id", 0, "special_tokens",
        "<s>", "id", "<s>", "ids", 259, "</s>", "id", "</s>", "ids", 261,
        "decoder", "type", "ByteLevel",
        "model", "type", "BPE", "dropout", "unk_token", "byte_fallback", 0, "ignore_merges", 1, "vocab", vocab,
        "merges", "a", "b", "ab c");
    assert_non_null(root);
    return root;
}

static void write_json(const char *path, json_t *root) {
    assert_int_equal(json_dump_file(root, path, JSON_COMPACT), 0);
}

static rl_tokenizer *load_mini(json_t *root, char *err, size_t errlen) {
    mkdir(TMP("mini"), 0755);
    write_json(TMP("mini/tokenizer.json"), root);
    return rl_tokenizer_open(TMP("mini"), err, errlen);
}

static void test_mini_tokenizer(void **state) {
    (void)state;
    char err[512];
    json_t *root = mini_json();
    remove(TMP("mini/tokenizer_config.json"));
    rl_tokenizer *t = load_mini(root, err, sizeof err);
    if (!t) fail_msg("%s", err);
    /* no tokenizer_config.json: eos </s>, bos <s>, pad = eos */
    assert_int_equal(rl_tokenizer_eos_id(t), 261);
    assert_int_equal(rl_tokenizer_bos_id(t), 259);
    assert_int_equal(rl_tokenizer_pad_id(t), 261);
    check_ids(t, "abc", 3, 0, IDS(257));
    /* ignore_merges: "xyz" is in the vocabulary, though no merge makes it */
    check_ids(t, "xyz", 3, 0, IDS(258));
    check_ids(t, "xyzab", 5, 0, IDS('x', 'y', 'z', 256));
    /* a template with a suffix */
    check_ids(t, "ab", 2, RL_TOKENIZE_ADD_BOS, IDS(259, 256, 261));
    /* <x> is not special: always an id; <s> only with the flag */
    check_ids(t, "a<x>b", 5, 0, IDS('a', 260, 'b'));
    check_ids(t, "<s>a", 4, 0, IDS('<', 's', '>', 'a'));
    check_ids(t, "<s>a", 4, RL_TOKENIZE_SPECIAL, IDS(259, 'a'));
    /* single digits (Qwen2's pattern) */
    check_ids(t, "123", 3, 0, IDS('1', '2', '3'));
    rl_tokenizer_free(t);

    /* ignore_merges false: xyz stays three bytes */
    json_object_set_new(json_object_get(root, "model"), "ignore_merges", json_false());
    t = load_mini(root, err, sizeof err);
    if (!t) fail_msg("%s", err);
    check_ids(t, "xyz", 3, 0, IDS('x', 'y', 'z'));
    rl_tokenizer_free(t);

    /* tokenizer_config.json names the special ids */
    rl_test_write_file(TMP("mini/tokenizer_config.json"),
                       "{\"eos_token\": {\"content\": \"<x>\"}, \"bos_token\": null, \"pad_token\": \"abc\"}");
    t = load_mini(root, err, sizeof err);
    if (!t) fail_msg("%s", err);
    assert_int_equal(rl_tokenizer_eos_id(t), 260);
    assert_int_equal(rl_tokenizer_bos_id(t), -1); /* null: none, no fallback */
    assert_int_equal(rl_tokenizer_pad_id(t), 257);
    rl_tokenizer_free(t);
    rl_test_write_file(TMP("mini/tokenizer_config.json"), "{\"eos_token\": \"<nope>\"}");
    assert_null(load_mini(root, err, sizeof err));
    assert_contains(err, "tokenizer_config.json: eos_token \"<nope>\" is not a token");
    rl_test_write_file(TMP("mini/tokenizer_config.json"), "{\"eos_token\": ");
    assert_null(load_mini(root, err, sizeof err));
    assert_contains(err, "tokenizer_config.json: not a valid JSON object");
    remove(TMP("mini/tokenizer_config.json"));
    json_decref(root);
}

/* GPT-2's vocab.json + merges.txt as Hugging Face writes them into a
 * tokenizer.json (merges as "a b" strings, plain ByteLevel pre-tokenizer with
 * GPT-2's pattern): the same ids as the vocab.json loader on the GPT-2 fixture
 * (from an independent port of encoder.py), and a directory holding both
 * kinds of files opens its tokenizer.json. */
static void test_gpt2_tokenizer_json(void **state) {
    (void)state;
    json_error_t je;
    json_t *vocab = json_load_file(FIX "/gpt2/vocab.json", 0, &je);
    assert_non_null(vocab);
    char *mt = rl_test_read_file(FIX "/gpt2/merges.txt");
    assert_non_null(mt);
    json_t *merges = json_array();
    for (char *line = strtok(mt, "\n"); line; line = strtok(NULL, "\n"))
        if (line[0] != '#' && line[0]) json_array_append_new(merges, json_string(line));
    free(mt);
    json_t *root = json_pack(
        "{s:n, s:n, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}], s:n, s:{s:s, s:b, s:b, s:b},"
        " s:{s:s, s:b, s:b, s:b}, s:{s:s}, s:{s:s, s:n, s:n, s:s, s:s, s:b, s:o, s:o}}",
        "truncation", "padding", "added_tokens", "id", 50256, "content", "<|endoftext|>", "single_word", 0,
        "lstrip", 0, "rstrip", 0, "normalized", 1, "special", 1, "normalizer", "pre_tokenizer", "type",
        "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1, "post_processor", "type",
        "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1, "decoder", "type", "ByteLevel",
        "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "", "end_of_word_suffix", "",
        "fuse_unk", 0, "vocab", vocab, "merges", merges);
    assert_non_null(root);
    mkdir(TMP("gpt2"), 0755);
    write_json(TMP("gpt2/tokenizer.json"), root);
    json_decref(root);
    rl_test_write_file(TMP("gpt2/vocab.json"), "not what is read");
    char err[512];
    rl_tokenizer *t = rl_tokenizer_open(TMP("gpt2"), err, sizeof err);
    if (!t) fail_msg("%s", err);
    assert_int_equal(rl_tokenizer_eos_id(t), 50256);
    assert_int_equal(rl_tokenizer_bos_id(t), -1);
    json_t *exp = json_load_file(FIX "/gpt2_expected.json", 0, &je);
    assert_non_null(exp);
    json_t *cases = json_object_get(exp, "cases");
    size_t agree = 0, total = json_array_size(cases);
    int shown = 0;
    for (size_t i = 0; i < total; i++) {
        json_t *c = json_array_get(cases, i), *tx = json_object_get(c, "text");
        agree += same_ids(t, json_string_value(tx), json_string_length(tx), 0, json_object_get(c, "ids"), "gpt2",
                          "ids", &shown);
        check_roundtrip(t, json_string_value(tx), json_string_length(tx), 0);
    }
    printf("gpt2 as tokenizer.json: %zu/%zu strings equal to gpt2_expected.json\n", agree, total);
    assert_int_equal(agree, total);
    json_decref(exp);
    /* the library splits added tokens out by default: RL_TOKENIZE_SPECIAL */
    check_ids(t, "a<|endoftext|>", 14, RL_TOKENIZE_SPECIAL, IDS(64, 50256));
    rl_tokenizer_free(t);
}

/* ---- load errors ------------------------------------------------------------------ */

/* Changes root (by f), loads it, and checks the message names the file and says what. */
static void expect_error(json_t *root, const char *what) {
    char err[512];
    rl_tokenizer *t = load_mini(root, err, sizeof err);
    if (t) fail_msg("loaded; expected an error with '%s'", what);
    assert_contains(err, TMP("mini/tokenizer.json: "));
    assert_contains(err, what);
}

static void test_load_errors(void **state) {
    (void)state;
    char err[512];
    remove(TMP("mini/tokenizer_config.json"));
    json_t *root = mini_json();
    json_t *model = json_object_get(root, "model");

    json_object_set_new(model, "type", json_string("WordPiece"));
    expect_error(root, "model.type: \"WordPiece\" is not supported");
    json_object_set_new(model, "type", json_string("BPE"));

    json_t *merges = json_object_get(model, "merges");
    json_array_append_new(merges, json_pack("[s, s]", "ab", "zz"));
    expect_error(root, "model.merges[2]: \"zz\" is not in model.vocab");
    json_array_remove(merges, 2);
    json_array_append_new(merges, json_string("x y"));
    expect_error(root, "model.merges[2]: the merge of \"x\" and \"y\" is not in model.vocab");
    json_array_set_new(merges, 2, json_string("xy"));
    expect_error(root, "model.merges[2]: \"xy\" is not two tokens separated by one space");
    json_array_remove(merges, 2);

    json_object_set_new(model, "byte_fallback", json_true());
    expect_error(root, "model.byte_fallback: only false is supported");
    json_object_set_new(model, "byte_fallback", json_false());

    json_t *split = json_array_get(json_object_get(json_object_get(root, "pre_tokenizer"), "pretokenizers"), 0);
    json_object_set_new(json_object_get(split, "pattern"), "Regex", json_string("\\w+|\\s+"));
    expect_error(root, "pre_tokenizer.pretokenizers[0].pattern: the regex \"\\w+|\\s+\" is not one of the known");
    json_object_set_new(json_object_get(split, "pattern"), "Regex", json_string(QWEN2_RE));

    json_object_set_new(root, "normalizer", json_pack("{s:s}", "type", "NFKC"));
    expect_error(root, "normalizer: type \"NFKC\" is not supported");
    json_object_set_new(root, "normalizer", json_null());

    json_t *added = json_array_get(json_object_get(root, "added_tokens"), 1);
    json_object_set_new(added, "lstrip", json_true());
    expect_error(root, "added_tokens[1] (\"<x>\"): lstrip is true; only false is supported");
    json_object_set_new(added, "lstrip", json_false());
    json_object_set_new(added, "id", json_integer(300));
    expect_error(root, "id 260 has no token (neither in model.vocab nor in added_tokens)");
    json_object_set_new(added, "id", json_integer(260));

    json_object_set_new(json_object_get(model, "vocab"), "zq", json_integer(5));
    expect_error(root, "model.vocab: id 5 is given to two tokens");
    json_object_del(json_object_get(model, "vocab"), "zq");

    json_object_set_new(root, "decoder", json_pack("{s:s}", "type", "WordPiece"));
    expect_error(root, "decoder: type \"WordPiece\" is not supported");
    json_object_set_new(root, "decoder", json_pack("{s:s}", "type", "ByteLevel"));

    json_object_set_new(root, "truncation", json_pack("{s:i}", "max_length", 8));
    expect_error(root, "truncation: only null is supported");
    json_object_set_new(root, "truncation", json_null());

    /* still loads after all the edits */
    rl_tokenizer *t = load_mini(root, err, sizeof err);
    if (!t) fail_msg("%s", err);
    rl_tokenizer_free(t);

    /* truncated JSON */
    char *text = json_dumps(root, JSON_COMPACT);
    text[strlen(text) / 2] = 0;
    rl_test_write_file(TMP("mini/tokenizer.json"), text);
    free(text);
    assert_null(rl_tokenizer_open(TMP("mini"), err, sizeof err));
    assert_contains(err, TMP("mini/tokenizer.json: not valid JSON: "));
    assert_contains(err, "line 1, column");
    json_decref(root);

    /* a truncated gzip file */
    FILE *in = fopen(FIX "/qwen3/tokenizer.json.gz", "rb");
    assert_non_null(in);
    char buf[4096];
    size_t got = fread(buf, 1, sizeof buf, in);
    fclose(in);
    FILE *out = fopen(TMP("cut.json.gz"), "wb");
    assert_non_null(out);
    assert_int_equal(fwrite(buf, 1, got, out), got);
    fclose(out);
    assert_null(rl_tokenizer_open(TMP("cut.json.gz"), err, sizeof err));
    assert_contains(err, TMP("cut.json.gz: cannot read: "));

    assert_null(rl_tokenizer_hf_load(TMP("no_such.json"), err, sizeof err));
    assert_contains(err, TMP("no_such.json: cannot open"));
}

/* ---- rlhf tokenize -------------------------------------------------------------------- */

/* Runs `rlhf tokenize ARGS < input`; the exit status, with stdout and stderr in *out, *err. */
static int run_cli(const char *args, const char *input, char **out, char **errtext) {
    rl_test_write_file(TMP("cli_in.txt"), input);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "'%s' tokenize %s < '%s' > '%s' 2> '%s'", RLHF_BIN, args, TMP("cli_in.txt"),
             TMP("cli_out.txt"), TMP("cli_err.txt"));
    int rc = system(cmd);
    *out = rl_test_read_file(TMP("cli_out.txt"));
    *errtext = rl_test_read_file(TMP("cli_err.txt"));
    assert_non_null(*out);
    assert_non_null(*errtext);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_cli(void **state) {
    (void)state;
    char *out, *err;
    int rc = run_cli("--tokenizer " FIX "/qwen3", "\"<|im_start|>user\\nhi<|im_end|>\"\n\"\"\n\"caf\\u00e9\"\n",
                     &out, &err);
    if (rc != 0) fail_msg("rc %d: %s", rc, err);
    assert_string_equal(out, "[27,91,318,4906,91,29,872,198,6023,27,91,318,6213,91,29]\n[]\n[924,58858]\n");
    free(out);
    free(err);
    rc = run_cli("--tokenizer " FIX "/qwen3 --special", "\"<|im_start|>user\\nhi<|im_end|>\"\n", &out, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "[151644,872,198,6023,151645]\n");
    free(out);
    free(err);
    rc = run_cli("--tokenizer " FIX "/llama3/tokenizer.json.gz --bos", "\"Hello\"\n", &out, &err);
    assert_int_equal(rc, 0);
    assert_string_equal(out, "[128000,9906]\n");
    free(out);
    free(err);
    /* decoding, with invalid UTF-8 shown as U+FFFD */
    rc = run_cli("--tokenizer " FIX "/llama3/tokenizer.json.gz --decode", "[128000,9906]\n[]\n[129]\n", &out, &err);
    if (rc != 0) fail_msg("rc %d: %s", rc, err);
    assert_string_equal(out, "\"<|begin_of_text|>Hello\"\n\"\"\n\"\xef\xbf\xbd\"\n");
    free(out);
    free(err);
    /* bad lines are errors naming the line */
    rc = run_cli("--tokenizer " FIX "/qwen3", "\"ok\"\n[1, 2]\n", &out, &err);
    assert_int_equal(rc, 1);
    assert_contains(err, "line 2");
    assert_contains(err, "expected a JSON string");
    free(out);
    free(err);
    rc = run_cli("--tokenizer " FIX "/qwen3 --decode", "[1]\n[1, \"x\"]\n", &out, &err);
    assert_int_equal(rc, 1);
    assert_contains(err, "line 2");
    free(out);
    free(err);
    rc = run_cli("--tokenizer " FIX "/qwen3 --decode", "[999999999]\n", &out, &err);
    assert_int_equal(rc, 1);
    assert_contains(err, "line 1");
    assert_contains(err, "outside");
    free(out);
    free(err);
    rc = run_cli("--tokenizer " TMP("no_such_dir"), "\"x\"\n", &out, &err);
    assert_int_equal(rc, 1);
    assert_contains(err, "no_such_dir");
    free(out);
    free(err);
}

/* ---- throughput ------------------------------------------------------------------------- */

static void test_throughput(void **state) {
    (void)state;
    /* prose-like text: the fixture's strings repeated */
    json_t *root = json_load_file(FIX "/llama3/expected.json", 0, NULL);
    assert_non_null(root);
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap);
    json_t *cases = json_object_get(root, "cases");
    while (len < cap / 2)
        for (size_t i = 0; i < json_array_size(cases) && len < cap / 2; i++) {
            json_t *t = json_object_get(json_array_get(cases, i), "text");
            size_t l = json_string_length(t);
            if (len + l + 1 >= cap) break;
            memcpy(text + len, json_string_value(t), l);
            len += l;
            text[len++] = '\n';
        }
    json_decref(root);
    rl_tokenizer *toks[2] = {g_llama, g_qwen};
    const char *names[2] = {"llama3", "qwen3"};
    for (int k = 0; k < 2; k++) {
        int32_t *ids;
        int64_t n;
        double t0 = (double)clock() / CLOCKS_PER_SEC;
        assert_int_equal(rl_tokenizer_encode(toks[k], text, len, &ids, &n), RL_OK);
        double dt = (double)clock() / CLOCKS_PER_SEC - t0;
        printf("%s: encoded %zu bytes into %lld ids in %.3f s (%.1f MB/s)\n", names[k], len, (long long)n, dt,
               dt > 0 ? (double)len / dt / 1e6 : 0.0);
        free(ids);
    }
    /* unique random words: every word misses the cache and is merged */
    uint64_t x = 99;
    len = 0;
    while (len + 16 < cap / 4) {
        int wl = 2 + (int)(x % 11);
        text[len++] = ' ';
        for (int k = 0; k < wl; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            text[len++] = "etaoinshrdlucmfwypvbgkqjxz"[(x >> 33) % 26];
        }
    }
    for (int k = 0; k < 2; k++) {
        int32_t *ids;
        int64_t n;
        double t0 = (double)clock() / CLOCKS_PER_SEC;
        assert_int_equal(rl_tokenizer_encode(toks[k], text, len, &ids, &n), RL_OK);
        double dt = (double)clock() / CLOCKS_PER_SEC - t0;
        printf("%s: unique random words: %zu bytes into %lld ids in %.3f s (%.1f MB/s)\n", names[k], len,
               (long long)n, dt, dt > 0 ? (double)len / dt / 1e6 : 0.0);
        free(ids);
    }
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_qwen3_against_library),
        cmocka_unit_test(test_llama3_against_library),
        cmocka_unit_test(test_special_ids),
        cmocka_unit_test(test_roundtrips),
        cmocka_unit_test(test_mini_tokenizer),
        cmocka_unit_test(test_gpt2_tokenizer_json),
        cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
