/* tests/test_tokenizer.c - the tokenizers of models/rl_tokenizer.h:
 *  - byte-level: ids are bytes, exact round trip of any bytes, special tokens
 *    only when asked for;
 *  - GPT-2's pre-tokenizer, piece by piece on tricky text (hand-derived);
 *  - a tiny hand-made BPE (tests/fixtures/tokenizer/tiny) with ids derived by
 *    hand below: merge order by rank, all occurrences left to right;
 *  - the real GPT-2 BPE against ids from an independent implementation
 *    (tests/fixtures/tokenizer/gpt2_expected.json, from the npm package
 *    gpt-3-encoder via tools/make_bpe_fixture.js), plus two strings where that
 *    port's \s differs from encoder.py's, checked against encoder.py's ids;
 *  - round trips on random bytes (invalid UTF-8 included), and the fast merge
 *    loop against encoder.py's plain loop (reference mode);
 *  - load errors: every message names the file (and the line where one
 *    applies).
 * With RLHF_TOK_BENCH=1 in the environment it also prints encode throughput.
 */
#include "rl_test.h"
#include "rl_file.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rl_tokenizer.h"

#define FIX RLHF_SOURCE_DIR "/tests/fixtures/tokenizer"

static rl_tokenizer *g_gpt2, *g_tiny;

static int group_setup(void **state) {
    (void)state;
    char err[512];
    g_gpt2 = rl_tokenizer_bpe_load(FIX "/gpt2/vocab.json", FIX "/gpt2/merges.txt", err, sizeof err);
    if (!g_gpt2) { fprintf(stderr, "%s\n", err); return -1; }
    g_tiny = rl_tokenizer_bpe_load_dir(FIX "/tiny", err, sizeof err);
    if (!g_tiny) { fprintf(stderr, "%s\n", err); return -1; }
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    rl_tokenizer_free(g_gpt2);
    rl_tokenizer_free(g_tiny);
    return 0;
}

/* Shows bytes with escapes, for failure messages. */
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

/* Encodes with flags and checks the ids, then that decoding gives text back
 * (when roundtrip is set). */
static void check_ids(rl_tokenizer *tok, const char *text, size_t len, unsigned flags,
                      const int32_t *want, int64_t nwant, int roundtrip) {
    int32_t *ids;
    int64_t n;
    assert_int_equal(rl_tokenizer_encode_ex(tok, text, len, flags, &ids, &n), RL_OK);
    if (n != nwant || (n && want && memcmp(ids, want, (size_t)n * sizeof *ids) != 0))
        fail_msg("\"%s\": got [%s], want [%s]", esc(text, len), ids_str(ids, n), ids_str(want, nwant));
    if (roundtrip) {
        char *back;
        size_t blen;
        assert_int_equal(rl_tokenizer_decode(tok, ids, n, &back, &blen), RL_OK);
        if (blen != len || (len && memcmp(back, text, len) != 0))
            fail_msg("\"%s\" decodes to \"%s\"", esc(text, len), esc(back, blen));
        free(back);
    }
    free(ids);
}

#define IDS(...) ((const int32_t[]){__VA_ARGS__}), (int64_t)(sizeof((const int32_t[]){__VA_ARGS__}) / sizeof(int32_t))

/* decode(encode(x)) == x, and the fast merge equals encoder.py's loop. */
static void check_roundtrip(rl_tokenizer *tok, const char *text, size_t len) {
    int32_t *ids, *ref;
    int64_t n, nref;
    assert_int_equal(rl_tokenizer_encode(tok, text, len, &ids, &n), RL_OK);
    for (int64_t i = 0; i < n; i++) assert_in_range(ids[i], 0, rl_tokenizer_vocab_size(tok) - 1);
    char *back;
    size_t blen;
    assert_int_equal(rl_tokenizer_decode(tok, ids, n, &back, &blen), RL_OK);
    if (blen != len || (len && memcmp(back, text, len) != 0))
        fail_msg("\"%s\" decodes to \"%s\"", esc(text, len), esc(back, blen));
    free(back);
    if (rl_tokenizer_kind_of(tok) == RL_TOKENIZER_BPE) {
        rl_tokenizer_set_reference_mode(tok, 1);
        assert_int_equal(rl_tokenizer_encode(tok, text, len, &ref, &nref), RL_OK);
        rl_tokenizer_set_reference_mode(tok, 0);
        if (n != nref || (n && memcmp(ids, ref, (size_t)n * sizeof *ids) != 0))
            fail_msg("\"%s\": fast merge [%s], encoder.py's loop [%s]", esc(text, len), ids_str(ids, n),
                     ids_str(ref, nref));
        free(ref);
    }
    free(ids);
}

/* ---- byte-level ------------------------------------------------------------ */

static void test_bytes_ids_are_bytes(void **state) {
    (void)state;
    rl_tokenizer *tok = rl_tokenizer_bytes_new();
    assert_non_null(tok);
    assert_int_equal(rl_tokenizer_kind_of(tok), RL_TOKENIZER_BYTES);
    assert_int_equal(rl_tokenizer_vocab_size(tok), 264);
    assert_int_equal(rl_tokenizer_eos_id(tok), 256);
    char all[256];
    int32_t want[256];
    for (int i = 0; i < 256; i++) { all[i] = (char)i; want[i] = i; }
    check_ids(tok, all, 256, 0, want, 256, 1);
    check_ids(tok, "", 0, 0, NULL, 0, 1);
    check_ids(tok, NULL, 0, RL_TOKENIZE_SPECIAL, NULL, 0, 0);
    check_ids(g_gpt2, NULL, 0, 0, NULL, 0, 0);
    check_ids(tok, "h\xc3\xa9", 3, 0, IDS(104, 0xc3, 0xa9), 1);
    /* invalid UTF-8 and NUL bytes survive */
    check_ids(tok, "\xff\x00\xc3", 3, 0, IDS(255, 0, 0xc3), 1);
    rl_tokenizer_free(tok);
}

static void test_bytes_special_tokens(void **state) {
    (void)state;
    rl_tokenizer *tok = rl_tokenizer_bytes_new();
    /* by default the text of a special token is just text */
    const char *t = "<|endoftext|>";
    int32_t want[13];
    for (int i = 0; i < 13; i++) want[i] = (uint8_t)t[i];
    check_ids(tok, t, 13, 0, want, 13, 1);
    /* on request it is the token */
    check_ids(tok, t, 13, RL_TOKENIZE_SPECIAL, IDS(256), 1);
    const char *m = "a<|pad|>b<|sep|><|endoftext|>";
    check_ids(tok, m, strlen(m), RL_TOKENIZE_SPECIAL, IDS('a', 257, 'b', 258, 256), 1);
    /* unknown or unfinished ones stay text */
    check_ids(tok, "<|nope|>", 8, RL_TOKENIZE_SPECIAL, IDS('<', '|', 'n', 'o', 'p', 'e', '|', '>'), 1);
    check_ids(tok, "x<|pad", 6, RL_TOKENIZE_SPECIAL, IDS('x', '<', '|', 'p', 'a', 'd'), 1);
    check_ids(tok, "<<|pad|>", 8, RL_TOKENIZE_SPECIAL, IDS('<', 257), 1);
    /* names of the specials */
    char *s;
    size_t n;
    assert_int_equal(rl_tokenizer_decode(tok, IDS(256, 257, 258, 263), &s, &n), RL_OK);
    assert_string_equal(s, "<|endoftext|><|pad|><|sep|><|reserved_7|>");
    free(s);
    assert_int_equal(rl_tokenizer_token_id(tok, "<|pad|>", 7), RL_TOK_BYTES_PAD);
    assert_int_equal(rl_tokenizer_token_id(tok, "<|sep|>", 7), RL_TOK_BYTES_SEP);
    assert_int_equal(rl_tokenizer_token_id(tok, "A", 1), 65);
    assert_int_equal(rl_tokenizer_token_id(tok, "AB", 2), -1);
    rl_tokenizer_free(tok);
}

static void test_decode_bad_ids(void **state) {
    (void)state;
    rl_tokenizer *tok = rl_tokenizer_bytes_new();
    char *s = (char *)1;
    size_t n;
    assert_int_equal(rl_tokenizer_decode(tok, IDS(65, 264), &s, &n), RL_ERR_ARG);
    assert_null(s);
    assert_non_null(strstr(rl_tokenizer_error(tok), "id 264 at position 1 is outside [0, 264)"));
    assert_int_equal(rl_tokenizer_decode(tok, IDS(-1), &s, &n), RL_ERR_ARG);
    assert_non_null(strstr(rl_tokenizer_error(tok), "id -1 at position 0"));
    assert_int_equal(rl_tokenizer_decode(g_gpt2, IDS(50256, 50257), &s, &n), RL_ERR_ARG);
    assert_non_null(strstr(rl_tokenizer_error(g_gpt2), "id 50257 at position 1 is outside [0, 50257)"));
    assert_int_equal(rl_tokenizer_decode(tok, NULL, 0, &s, &n), RL_OK);
    assert_int_equal(n, 0);
    assert_string_equal(s, "");
    free(s);
    rl_tokenizer_free(tok);
}

/* ---- the pre-tokenizer ------------------------------------------------------ */

/* Splits text and compares with the NULL-terminated list of pieces. */
static void check_pieces(const char *text, size_t len, const char *const *want) {
    size_t p = 0;
    int k = 0;
    while (p < len) {
        size_t e = rl_pretokenizer_next(text, len, p);
        assert_true(e > p && e <= len);
        if (!want[k]) fail_msg("\"%s\": extra piece \"%s\"", esc(text, len), esc(text + p, e - p));
        if (strlen(want[k]) != e - p || memcmp(want[k], text + p, e - p) != 0)
            fail_msg("\"%s\": piece %d is \"%s\", want \"%s\"", esc(text, len), k, esc(text + p, e - p),
                     esc(want[k], strlen(want[k])));
        k++;
        p = e;
    }
    if (want[k]) fail_msg("\"%s\": missing piece %d \"%s\"", esc(text, len), k, esc(want[k], strlen(want[k])));
}

#define PIECES(text, ...) check_pieces(text, sizeof(text) - 1, (const char *const[]){__VA_ARGS__, NULL})

/* Each split is derived by hand from the pattern
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void test_pretokenizer(void **state) {
    (void)state;
    check_pieces("", 0, (const char *const[]){NULL});
    /* "\n\n  it": the run "\n\n  " is followed by a letter, so \s+(?!\S) gives
     * back its last space, which joins the word */
    PIECES("Hello  world\n\n  it's 2024!", "Hello", " ", " world", "\n\n ", " it", "'s", " 2024", "!");
    /* contractions are lower case only: "'LL" is a symbol and a word */
    PIECES("I'LL don't we've they're I'm", "I", "'", "LL", " don", "'t", " we", "'ve", " they", "'re",
           " I", "'m");
    PIECES("'s'S'x", "'s", "'", "S", "'", "x");
    /* only a SPACE prefixes a word; a lone tab before a word is its own piece */
    PIECES("x\t y", "x", "\t", " y");
    PIECES("  \tx", "  ", "\t", "x");
    PIECES("a \n\nb", "a", " \n", "\n", "b");
    PIECES("trailing   ", "trailing", "   ");
    PIECES("a\n", "a", "\n");
    PIECES(" ", " ");
    PIECES("a , b", "a", " ,", " b");
    /* numbers and letters are separate runs */
    PIECES("3.14 1,000,000", "3", ".", "14", " 1", ",", "000", ",", "000");
    PIECES(" 123abc", " 123", "abc");
    PIECES("x\xc2\xb2", "x", "\xc2\xb2"); /* U+00B2 is No: a number */
    /* a combining mark (Mn) is neither letter nor number */
    PIECES("cafe\xcc\x81 ok", "cafe", "\xcc\x81", " ok");
    PIECES("\xe6\x97\xa5\xe6\x9c\xac \xe3\x83\x86\xe3\x82\xad", "\xe6\x97\xa5\xe6\x9c\xac", " \xe3\x83\x86\xe3\x82\xad");
    /* emoji (So) and ASCII punctuation form one symbol run */
    PIECES("hi \xf0\x9f\x98\x80\xf0\x9f\x98\x80!", "hi", " \xf0\x9f\x98\x80\xf0\x9f\x98\x80!");
    /* invalid UTF-8: each bad byte is a symbol */
    PIECES("ab\xff\xfe" "cd", "ab", "\xff\xfe", "cd");
    PIECES(" \x80x", " \x80", "x");
    PIECES("\xc3\xa9\xc3", "\xc3\xa9", "\xc3");
    PIECES("\xed\xa0\x80z", "\xed\xa0\x80", "z"); /* a surrogate */
    /* \s is Unicode White_Space, as in the `regex` module: U+0085 and U+3000
     * are spaces, U+001C and U+FEFF are not */
    PIECES("a\xc2\x85" "b", "a", "\xc2\x85", "b");
    PIECES("a \xc2\x85" "b", "a", " ", "\xc2\x85", "b");
    PIECES("x\xe3\x80\x80y", "x", "\xe3\x80\x80", "y");
    PIECES("a\x1c\x1c" "b", "a", "\x1c\x1c", "b");
    PIECES("a \xef\xbb\xbf" "b", "a", " \xef\xbb\xbf", "b");
    /* NUL is a symbol too (pieces given by their ends: NUL ends C strings) */
    assert_int_equal(rl_pretokenizer_next("a\0b", 3, 0), 1);
    assert_int_equal(rl_pretokenizer_next("a\0b", 3, 1), 2);
    assert_int_equal(rl_pretokenizer_next("a\0b", 3, 2), 3);
    assert_int_equal(rl_pretokenizer_next(" \0\0x", 4, 0), 3);
}

/* ---- the tiny hand-made BPE -------------------------------------------------- */

/* tests/fixtures/tokenizer/tiny: bytes are ids 0..255; merges by rank
 *   0 l o -> lo 256     4 a a -> aa 260       8 Gn ew -> Gnew 264
 *   1 lo w -> low 257   5 low er -> lower 261 9 s t -> st 265
 *   2 e r -> er 258     6 G n -> Gn 262       10 e s -> es 266
 *   3 G low -> Glow 259 7 e w -> ew 263       <|endoftext|> 267
 * (G is the space, "Ġ" in the file). */
static void test_tiny_bpe(void **state) {
    (void)state;
    rl_tokenizer *t = g_tiny;
    assert_int_equal(rl_tokenizer_vocab_size(t), 268);
    assert_int_equal(rl_tokenizer_eos_id(t), 267);
    /* l o w e r -> lo(0) -> low(1) -> er(2) -> lower(5) */
    check_ids(t, "lower", 5, 0, IDS(261), 1);
    /* G l o w e r -> [G lo w e r] -> [G low e r] -> [G low er] (rank 2 before 3)
     * -> [Glow er]; (Glow, er) is no merge */
    check_ids(t, " lower", 6, 0, IDS(259, 258), 1);
    /* all occurrences left to right: a a a -> [aa a]; a*5 -> [aa aa a] */
    check_ids(t, "aaa", 3, 0, IDS(260, 'a'), 1);
    check_ids(t, "aaaaa", 5, 0, IDS(260, 260, 'a'), 1);
    /* rank, not position, decides: (s,t)=9 beats (e,s)=10 -> [e st] */
    check_ids(t, "est", 3, 0, IDS('e', 265), 1);
    /* "lower newest\n" -> pieces "lower", " newest", "\n";
     * G n e w e s t: Gn(6) -> [Gn e w e s t]; ew(7) -> [Gn ew e s t];
     * Gnew(8) -> [Gnew e s t]; st(9) -> [Gnew e st]; done */
    check_ids(t, "lower newest\n", 13, 0, IDS(261, 264, 'e', 265, '\n'), 1);
    /* "lowest": lo, low -> [low e s t]; st(9) -> [low e st] */
    check_ids(t, "lowest", 6, 0, IDS(257, 'e', 265), 1);
    /* special tokens: text by default, the id on request */
    check_ids(t, "a<|endoftext|>b", 15, RL_TOKENIZE_SPECIAL, IDS('a', 267, 'b'), 1);
    /* pieces "a", "<|", "endoftext", "|>", "b"; no merge applies to them */
    check_ids(t, "a<|endoftext|>b", 15, 0,
              IDS('a', '<', '|', 'e', 'n', 'd', 'o', 'f', 't', 'e', 'x', 't', '|', '>', 'b'), 1);
    assert_int_equal(rl_tokenizer_token_id(t, "lower", 5), 261);
    assert_int_equal(rl_tokenizer_token_id(t, " new", 4), 264);
    assert_int_equal(rl_tokenizer_token_id(t, "nope", 4), -1);
}

/* The tiny vocabulary as a JSON object, to be edited by a test. */
static json_t *tiny_vocab(void) {
    json_error_t e;
    json_t *v = json_load_file(FIX "/tiny/vocab.json", 0, &e);
    assert_non_null(v);
    return v;
}

static void dump_vocab(json_t *v, const char *path) {
    assert_int_equal(json_dump_file(v, path, JSON_ENSURE_ASCII), 0);
    json_decref(v);
}

/* Merge files whose ranks are not in dependency order: "ab a" (rank 0) can
 * only apply after "a b" (rank 1) made "ab". encoder.py merges every "a b" of
 * a pass first: "abab" -> [ab ab], and (ab, ab) is no merge. A priority queue
 * that let the new pair (ab, a) jump the queue would give [aba b]. */
static void test_merge_ranks_out_of_order(void **state) {
    (void)state;
    json_t *v = tiny_vocab();
    json_object_set_new(v, "<|endoftext|>", json_integer(269));
    json_object_set_new(v, "ab", json_integer(267));
    json_object_set_new(v, "aba", json_integer(268));
    dump_vocab(v, RLHF_TEST_TMP "/tok_order_vocab.json");
    rl_test_write_file(RLHF_TEST_TMP "/tok_order_merges.txt", "#version: 0.2\nab a\na b\n");
    char err[512];
    rl_tokenizer *t = rl_tokenizer_bpe_load(RLHF_TEST_TMP "/tok_order_vocab.json",
                                            RLHF_TEST_TMP "/tok_order_merges.txt", err, sizeof err);
    if (!t) fail_msg("%s", err);
    check_ids(t, "abab", 4, 0, IDS(267, 267), 1);
    /* a b a: pass 1 merges (a,b) -> [ab a]; pass 2 (ab,a) -> [aba] */
    check_ids(t, "aba", 3, 0, IDS(268), 1);
    check_roundtrip(t, "abab", 4);
    check_roundtrip(t, "ababa abaab", 11);
    /* the same in a word long enough (> 64 symbols) for the priority queue */
    char w[81];
    int32_t want[40];
    for (int i = 0; i < 40; i++) { w[2 * i] = 'a'; w[2 * i + 1] = 'b'; want[i] = 267; }
    check_ids(t, w, 80, 0, want, 40, 1);
    w[80] = 'a'; /* ...ab a -> [ab x39, aba] */
    want[39] = 268;
    check_ids(t, w, 81, 0, want, 40, 1);
    check_roundtrip(t, w, 81);
    rl_tokenizer_free(t);
}

/* ---- the real GPT-2 vocabulary ----------------------------------------------------- */

static void test_gpt2_against_reference(void **state) {
    (void)state;
    json_error_t e;
    json_t *root = json_load_file(FIX "/gpt2_expected.json", 0, &e);
    if (!root) fail_msg("gpt2_expected.json: %s (line %d)", e.text, e.line);
    json_t *cases = json_object_get(root, "cases");
    assert_true(json_array_size(cases) >= 80);
    size_t i;
    json_t *c;
    json_array_foreach(cases, i, c) {
        json_t *text = json_object_get(c, "text"), *ids = json_object_get(c, "ids");
        assert_true(json_is_string(text) && json_is_array(ids));
        int64_t n = (int64_t)json_array_size(ids);
        int32_t *want = malloc(((size_t)n + 1) * sizeof *want);
        for (int64_t k = 0; k < n; k++) want[k] = (int32_t)json_integer_value(json_array_get(ids, (size_t)k));
        check_ids(g_gpt2, json_string_value(text), json_string_length(text), 0, want, n, 1);
        check_roundtrip(g_gpt2, json_string_value(text), json_string_length(text));
        free(want);
    }
    json_decref(root);
}

/* Where the JS port's \s differs from encoder.py's (see the header of
 * tools/make_bpe_fixture.js); ids as given by encoder.py (Python 3.11, regex),
 * pieces as in test_pretokenizer. */
static void test_gpt2_whitespace_unlike_js(void **state) {
    (void)state;
    /* "a", " ", "\u0085", "b": U+0085 is C2 85 -> "Â" 126, "\x85" 227 */
    check_ids(g_gpt2, "a \xc2\x85" "b", 5, 0, IDS(64, 220, 126, 227, 65), 1);
    /* "a", " \ufeff", "b": " " + EF merges to "Ġï" 27332, then BB 119, BF 123 */
    check_ids(g_gpt2, "a \xef\xbb\xbf" "b", 6, 0, IDS(64, 27332, 119, 123, 65), 1);
}

static void test_gpt2_special_and_ids(void **state) {
    (void)state;
    assert_int_equal(rl_tokenizer_kind_of(g_gpt2), RL_TOKENIZER_BPE);
    assert_int_equal(rl_tokenizer_vocab_size(g_gpt2), 50257);
    assert_int_equal(rl_tokenizer_eos_id(g_gpt2), 50256);
    /* pieces "<|", "endoftext", "|>" as text (ids from gpt2_expected.json) */
    check_ids(g_gpt2, "<|endoftext|>", 13, 0, IDS(27, 91, 437, 1659, 5239, 91, 29), 1);
    check_ids(g_gpt2, "<|endoftext|>", 13, RL_TOKENIZE_SPECIAL, IDS(50256), 1);
    /* "Hello world" is 15496 995; the text around a special token is encoded
     * on its own */
    check_ids(g_gpt2, "Hello world<|endoftext|>Hello world", 35, RL_TOKENIZE_SPECIAL,
              IDS(15496, 995, 50256, 15496, 995), 1);
    assert_int_equal(rl_tokenizer_token_id(g_gpt2, "<|endoftext|>", 13), 50256);
    assert_int_equal(rl_tokenizer_token_id(g_gpt2, " world", 6), 995);
    assert_int_equal(rl_tokenizer_token_id(g_gpt2, "\n", 1), 198);
    /* every byte decodes to itself */
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        int32_t id = rl_tokenizer_token_id(g_gpt2, &c, 1);
        assert_true(id >= 0);
        char *s;
        size_t n;
        assert_int_equal(rl_tokenizer_decode(g_gpt2, &id, 1, &s, &n), RL_OK);
        assert_int_equal(n, 1);
        assert_int_equal((uint8_t)s[0], b);
        free(s);
    }
}

static uint64_t rng_state = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 33);
}

/* Random strings from an alphabet of troublemakers (bytes of broken UTF-8
 * included); every one must round-trip, and the fast merge must agree with
 * encoder.py's loop. Also long single words, where the O(n^2) loop and the
 * heap differ most in work. */
static void test_random_roundtrips(void **state) {
    (void)state;
    static const char *atoms[] = {
        "a", "b", "e", "the", "ing", " ", "  ", "\n", "\t", "'", "'s", "'ll", "0", "12", ",", ".", "!",
        "\xc3\xa9", "\xcc\x81", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "\xe2\x80\x8d", "\xc2\x85",
        "\xe3\x80\x80", "\xef\xbb\xbf", "\xff", "\x80", "\xc3", "\xe6\x97", "\xed\xa0\x80", "\x00", "<|",
        "|>", "<|endoftext|>", "A", "Z", "\x1c",
    };
    const int natoms = (int)(sizeof atoms / sizeof *atoms);
    rl_tokenizer *bytes = rl_tokenizer_bytes_new();
    char buf[600];
    for (int iter = 0; iter < 400; iter++) {
        size_t len = 0;
        int k = (int)(rnd() % 60);
        for (int j = 0; j < k; j++) {
            const char *a = atoms[rnd() % (uint32_t)natoms];
            size_t l = a[0] ? strlen(a) : 1; /* "\x00" is one NUL byte */
            memcpy(buf + len, a, l);
            len += l;
        }
        check_roundtrip(g_gpt2, buf, len);
        check_roundtrip(g_tiny, buf, len);
        check_roundtrip(bytes, buf, len);
    }
    /* raw random bytes */
    for (int iter = 0; iter < 200; iter++) {
        size_t len = rnd() % 200;
        for (size_t j = 0; j < len; j++) buf[j] = (char)rnd();
        check_roundtrip(g_gpt2, buf, len);
        check_roundtrip(bytes, buf, len);
    }
    /* long words */
    for (int iter = 0; iter < 20; iter++) {
        size_t len = 300 + rnd() % 200;
        for (size_t j = 0; j < len; j++) buf[j] = "etaoinshrdlu"[rnd() % (iter < 10 ? 12 : 3)];
        check_roundtrip(g_gpt2, buf, len);
        check_roundtrip(g_tiny, buf, len);
    }
    rl_tokenizer_free(bytes);
}

/* The word cache must not change results: encode the same text twice, and
 * enough distinct words to make the cache start over. */
static void test_cache_is_transparent(void **state) {
    (void)state;
    const char *t = "Hello world, hello World! lowering newest";
    int32_t *a, *b;
    int64_t na, nb;
    assert_int_equal(rl_tokenizer_encode(g_gpt2, t, strlen(t), &a, &na), RL_OK);
    char w[32];
    for (int i = 0; i < 40000; i++) {
        int l = snprintf(w, sizeof w, " w%xq", (unsigned)i * 2654435761u);
        int32_t *x;
        int64_t nx;
        assert_int_equal(rl_tokenizer_encode(g_gpt2, w, (size_t)l, &x, &nx), RL_OK);
        free(x);
    }
    assert_int_equal(rl_tokenizer_encode(g_gpt2, t, strlen(t), &b, &nb), RL_OK);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, (size_t)na * sizeof *a);
    free(a);
    free(b);
}

/* ---- load errors --------------------------------------------------------------- */

#define TMP(name) RLHF_TEST_TMP "/" name
#define TINY_MERGES FIX "/tiny/merges.txt"
#define TINY_VOCAB FIX "/tiny/vocab.json"

/* Loads and expects failure with a message containing each needle. */
static void expect_load_error(const char *vocab, const char *merges, const char *n1, const char *n2) {
    char err[512] = "";
    rl_tokenizer *t = rl_tokenizer_bpe_load(vocab, merges, err, sizeof err);
    if (t) { rl_tokenizer_free(t); fail_msg("loading %s + %s should fail", vocab, merges); }
    if (!strstr(err, n1) || (n2 && !strstr(err, n2)))
        fail_msg("error '%s' does not mention '%s' and '%s'", err, n1, n2 ? n2 : "");
}

static void test_merges_errors(void **state) {
    (void)state;
    rl_test_write_file(TMP("tok_m1.txt"), "#version: 0.2\nl o\nlo w extra\n");
    expect_load_error(TINY_VOCAB, TMP("tok_m1.txt"), "tok_m1.txt line 3: malformed merge \"lo w extra\"", NULL);
    rl_test_write_file(TMP("tok_m2.txt"), "#version: 0.2\nl o\nlow\n");
    expect_load_error(TINY_VOCAB, TMP("tok_m2.txt"), "tok_m2.txt line 3: malformed", NULL);
    rl_test_write_file(TMP("tok_m3.txt"), "#version: 0.2\nl  o\n");
    expect_load_error(TINY_VOCAB, TMP("tok_m3.txt"), "tok_m3.txt line 2: malformed", NULL);
    rl_test_write_file(TMP("tok_m4.txt"), "#version: 0.2\nl o\nlo zz\n");
    expect_load_error(TINY_VOCAB, TMP("tok_m4.txt"), "tok_m4.txt line 3: \"zz\" is not in the vocabulary", NULL);
    /* both parts exist but "lor" does not */
    rl_test_write_file(TMP("tok_m5.txt"), "#version: 0.2\nl o\nlo r\n");
    expect_load_error(TINY_VOCAB, TMP("tok_m5.txt"), "tok_m5.txt line 3: the merge of \"lo\" and \"r\" is not in the vocabulary", NULL);
    /* a space inside a token must be written as its alphabet character */
    rl_test_write_file(TMP("tok_m6.txt"), "#version: 0.2\n\xe4\xb8\x80 o\n");
    expect_load_error(TINY_VOCAB, TMP("tok_m6.txt"), "tok_m6.txt line 2", "U+4E00");
    rl_test_write_file(TMP("tok_m7.txt"), "#version: 0.2\n\xff o\n");
    expect_load_error(TINY_VOCAB, TMP("tok_m7.txt"), "tok_m7.txt line 2", "not valid UTF-8");
    expect_load_error(TINY_VOCAB, TMP("no_such_merges.txt"), "no_such_merges.txt: cannot open", NULL);
    /* CRLF line ends and a missing final newline are fine; so is no header */
    rl_test_write_file(TMP("tok_m8.txt"), "#version: 0.2\r\nl o\r\nlo w");
    char err[512];
    rl_tokenizer *t = rl_tokenizer_bpe_load(TINY_VOCAB, TMP("tok_m8.txt"), err, sizeof err);
    if (!t) fail_msg("%s", err);
    check_ids(t, "low", 3, 0, IDS(257), 1);
    rl_tokenizer_free(t);
    rl_test_write_file(TMP("tok_m9.txt"), "l o\n");
    t = rl_tokenizer_bpe_load(TINY_VOCAB, TMP("tok_m9.txt"), err, sizeof err);
    if (!t) fail_msg("%s", err);
    check_ids(t, "low", 3, 0, IDS(256, 'w'), 1);
    rl_tokenizer_free(t);
}

static void test_vocab_errors(void **state) {
    (void)state;
    rl_test_write_file(TMP("tok_v1.json"), "{\"a\": 0,\n\"b\": }\n");
    expect_load_error(TMP("tok_v1.json"), TINY_MERGES, "tok_v1.json: not valid JSON", "line 2");
    rl_test_write_file(TMP("tok_v2.json"), "[1, 2]\n");
    expect_load_error(TMP("tok_v2.json"), TINY_MERGES, "tok_v2.json: not a JSON object", NULL);
    rl_test_write_file(TMP("tok_v3.json"), "{\"a\": 0,\n \"a\": 1}\n");
    expect_load_error(TMP("tok_v3.json"), TINY_MERGES, "tok_v3.json: not valid JSON", "duplicate");
    expect_load_error(TMP("no_such_vocab.json"), TINY_MERGES, "no_such_vocab.json: cannot open", NULL);

    json_t *v = tiny_vocab(); /* no byte 0x20: give its id to <|endoftext|> */
    json_object_del(v, "\xc4\xa0");
    json_object_set_new(v, "<|endoftext|>", json_integer(32));
    dump_vocab(v, TMP("tok_v4.json"));
    expect_load_error(TMP("tok_v4.json"), TINY_MERGES, "tok_v4.json: has no token for byte 0x20", NULL);

    v = tiny_vocab();
    json_object_set_new(v, "er", json_integer(256));
    dump_vocab(v, TMP("tok_v5.json"));
    expect_load_error(TMP("tok_v5.json"), TINY_MERGES, "tok_v5.json: id 256 is given to two tokens", NULL);

    v = tiny_vocab();
    json_object_set_new(v, "<|endoftext|>", json_integer(5000));
    dump_vocab(v, TMP("tok_v6.json"));
    expect_load_error(TMP("tok_v6.json"), TINY_MERGES, "tok_v6.json: token \"<|endoftext|>\" has id 5000, outside [0, 268)", NULL);

    v = tiny_vocab();
    json_object_set_new(v, "lo", json_string("x"));
    dump_vocab(v, TMP("tok_v7.json"));
    expect_load_error(TMP("tok_v7.json"), TINY_MERGES, "tok_v7.json: the id of token \"lo\" is not an integer", NULL);

    v = tiny_vocab();
    json_object_del(v, "<|endoftext|>");
    dump_vocab(v, TMP("tok_v8.json"));
    expect_load_error(TMP("tok_v8.json"), TINY_MERGES, "tok_v8.json: has no \"<|endoftext|>\" token", NULL);

    v = tiny_vocab();
    json_object_set_new(v, "\xe4\xb8\x80", json_integer(268));
    dump_vocab(v, TMP("tok_v9.json"));
    expect_load_error(TMP("tok_v9.json"), TINY_MERGES, "tok_v9.json: token", "U+4E00, which is not in GPT-2's byte-to-unicode alphabet");

    char err[512];
    assert_null(rl_tokenizer_bpe_load_dir(RLHF_TEST_TMP "/no_such_dir", err, sizeof err));
    assert_non_null(strstr(err, "vocab.json: cannot open"));
    rl_tokenizer *t = rl_tokenizer_open("bytes", err, sizeof err);
    assert_non_null(t);
    assert_int_equal(rl_tokenizer_vocab_size(t), RL_TOK_BYTES_VOCAB);
    rl_tokenizer_free(t);
    t = rl_tokenizer_open(FIX "/tiny", err, sizeof err);
    assert_non_null(t);
    assert_int_equal(rl_tokenizer_vocab_size(t), 268);
    rl_tokenizer_free(t);
}

/* ---- throughput (RLHF_TOK_BENCH=1) ----------------------------------------------- */

/* Encodes text either in one call or line by line (as a data set loader
 * would); prints MB/s. */
static void bench_one(rl_tokenizer *tok, const char *name, const char *text, size_t len, int per_line) {
    int64_t total = 0;
    double t0 = rl_now();
    for (size_t p = 0; p < len;) {
        size_t e = len;
        if (per_line) {
            const char *nl = memchr(text + p, '\n', len - p);
            if (nl) e = (size_t)(nl - text) + 1;
        }
        int32_t *ids;
        int64_t n;
        assert_int_equal(rl_tokenizer_encode(tok, text + p, e - p, &ids, &n), RL_OK);
        free(ids);
        total += n;
        p = e;
    }
    double dt = rl_now() - t0;
    printf("  %-46s %7.1f MB/s  (%zu bytes -> %lld ids, %.3f s)\n", name, (double)len / dt / 1e6, len,
           (long long)total, dt);
}

static void test_throughput(void **state) {
    (void)state;
    if (!getenv("RLHF_TOK_BENCH")) { skip(); }
    json_error_t e;
    json_t *root = json_load_file(FIX "/gpt2_expected.json", 0, &e);
    assert_non_null(root);
    /* the fixture strings, one a line (their own newlines stay), ~10 MB */
    size_t cap = 11u << 20, len = 0;
    char *text = malloc(cap);
    for (int full = 0; !full;) {
        size_t i;
        json_t *c;
        json_array_foreach(json_object_get(root, "cases"), i, c) {
            json_t *s = json_object_get(c, "text");
            size_t l = json_string_length(s);
            if (len + l + 1 > (10u << 20)) { full = 1; break; }
            memcpy(text + len, json_string_value(s), l);
            len += l;
            text[len++] = '\n';
        }
    }
    json_decref(root);
    /* words that never repeat, so the word cache does not help: pseudo-random
     * lower-case words of 1..10 letters, 12 to a line */
    char *uniq = malloc(cap);
    size_t ul = 0;
    while (ul + 200 < (10u << 20)) {
        for (int w = 0; w < 12; w++) {
            if (w) uniq[ul++] = ' ';
            int wl = 1 + (int)(rnd() % 10);
            for (int k = 0; k < wl; k++) uniq[ul++] = "etaoinshrdlucmfwypvbgkqjxz"[rnd() % 26];
        }
        uniq[ul++] = '\n';
    }
    printf("encode throughput (one thread):\n");
    rl_tokenizer *bytes = rl_tokenizer_bytes_new();
    bench_one(bytes, "bytes, fixture strings, a call per line", text, len, 1);
    rl_tokenizer_free(bytes);
    bench_one(g_gpt2, "gpt2, fixture strings, one call", text, len, 0);
    bench_one(g_gpt2, "gpt2, fixture strings, a call per line", text, len, 1);
    bench_one(g_gpt2, "gpt2, unique random words, a call per line", uniq, ul, 1);
    rl_tokenizer_set_reference_mode(g_gpt2, 1);
    bench_one(g_gpt2, "gpt2, encoder.py's loop, no cache, per line", text, len / 4, 1);
    rl_tokenizer_set_reference_mode(g_gpt2, 0);
    free(uniq);
    free(text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bytes_ids_are_bytes),
        cmocka_unit_test(test_bytes_special_tokens),
        cmocka_unit_test(test_decode_bad_ids),
        cmocka_unit_test(test_pretokenizer),
        cmocka_unit_test(test_tiny_bpe),
        cmocka_unit_test(test_merge_ranks_out_of_order),
        cmocka_unit_test(test_gpt2_against_reference),
        cmocka_unit_test(test_gpt2_whitespace_unlike_js),
        cmocka_unit_test(test_gpt2_special_and_ids),
        cmocka_unit_test(test_random_roundtrips),
        cmocka_unit_test(test_cache_is_transparent),
        cmocka_unit_test(test_merges_errors),
        cmocka_unit_test(test_vocab_errors),
        cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
