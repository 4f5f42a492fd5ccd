/* tests/test_data.c - the data loaders and batcher of recipes/data/rl_data.h:
 *  - each format on good files (BOM, CRLF, blank lines, a last line without
 *    newline, unknown extra fields, PKU's optional severity levels);
 *  - malformed lines, each with its exact "FILE:LINE: message"; skipping and
 *    counting them with skip_bad_lines;
 *  - gzip input (written here with gzopen) and a truncated gzip stream;
 *  - the HH-RLHF prompt split on tricky transcripts (multi-turn, shared
 *    response beginnings, markers inside responses);
 *  - token rows: layout and masks built by hand from the bytes, truncation
 *    and its counts, pair and PKU batches (better/worse, safer/unsafer, signs);
 *  - seeded shuffling: each epoch a permutation, same seed same order, cursor
 *    save/restore giving the very same batches.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "rl_data.h"

#ifndef RLHF_TEST_TMP
#define RLHF_TEST_TMP "/tmp"
#endif
#define TMP(name) RLHF_TEST_TMP "/" name

static rl_tokenizer *g_bytes;

static int group_setup(void **state) {
    (void)state;
    g_bytes = rl_tokenizer_bytes_new();
    return g_bytes ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    rl_tokenizer_free(g_bytes);
    return 0;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(text, 1, strlen(text), f);
    fclose(f);
}

static void write_gz(const char *path, const char *text) {
    gzFile f = gzopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(gzwrite(f, text, (unsigned)strlen(text)), (int)strlen(text));
    assert_int_equal(gzclose(f), Z_OK);
}

static rl_dataset *load_ok(const char *path, rl_data_format fmt, int skip) {
    char err[1024] = "";
    rl_dataset *ds = NULL;
    if (rl_dataset_load(path, fmt, skip, &ds, err, sizeof err) != RL_OK) fail_msg("load %s: %s", path, err);
    return ds;
}

/* Loads text as FILE and expects the load to fail with exactly
 * "FILE:<msg>" (msg starts with the line number). */
static void expect_bad(const char *name, rl_data_format fmt, const char *text, const char *msg) {
    char path[512], want[1024], err[1024] = "";
    snprintf(path, sizeof path, "%s/%s", RLHF_TEST_TMP, name);
    write_file(path, text);
    rl_dataset *ds = (rl_dataset *)0x1;
    rl_status s = rl_dataset_load(path, fmt, 0, &ds, err, sizeof err);
    assert_int_equal(s, RL_ERR_ARG);
    assert_null(ds);
    snprintf(want, sizeof want, "%s:%s", path, msg);
    assert_string_equal(err, want);
}

/* ---- demonstrations ------------------------------------------------------------ */

static void test_demos_good(void **state) {
    (void)state;
    /* BOM, CRLF, a blank line, whitespace-only line, an unknown field, no final newline */
    write_file(TMP("d_good.jsonl"), "\xEF\xBB\xBF{\"prompt\": \"Hi\", \"response\": \" there\"}\r\n"
                                    "\n"
                                    "{\"prompt\": \"2+2?\", \"response\": \" 4\", \"source\": \"x\"}\n"
                                    "   \t \n"
                                    "{\"response\": \"\", \"prompt\": \"caf\\u00e9\"}");
    rl_dataset *ds = load_ok(TMP("d_good.jsonl"), RL_DATA_DEMOS, 0);
    assert_int_equal(ds->format, RL_DATA_DEMOS);
    assert_int_equal(ds->n, 3);
    assert_int_equal(ds->report.lines, 5);
    assert_int_equal(ds->report.blank, 2);
    assert_int_equal(ds->report.bad, 0);
    assert_int_equal(ds->report.records, 3);
    assert_string_equal(ds->rec[0].prompt, "Hi");
    assert_string_equal(ds->rec[0].response[0], " there");
    assert_null(ds->rec[0].response[1]);
    assert_int_equal(ds->rec[0].line, 1);
    assert_int_equal(ds->rec[1].line, 3);
    assert_int_equal(ds->rec[2].line, 5);
    assert_string_equal(ds->rec[2].prompt, "caf\xc3\xa9");
    assert_string_equal(ds->rec[2].response[0], "");
    assert_int_equal(ds->rec[0].better_id, -1);
    assert_int_equal(ds->rec[0].is_safe[0], -1);
    char d[512];
    rl_dataset_describe(ds, d, sizeof d);
    assert_string_equal(d, RLHF_TEST_TMP "/d_good.jsonl: demos, 3 records (5 lines: 2 blank, 0 bad skipped)");
    rl_dataset_free(ds);
}

static void test_demos_malformed(void **state) {
    (void)state;
    const char *ok = "{\"prompt\": \"a\", \"response\": \"b\"}\n";
    char text[512];
    snprintf(text, sizeof text, "%s[\"prompt\", \"a\"]\n", ok);
    expect_bad("d_bad1.jsonl", RL_DATA_DEMOS, text, "2: expected a JSON object, not an array");
    snprintf(text, sizeof text, "%s%s{\"prompt\": \"a\"}\n", ok, ok);
    expect_bad("d_bad2.jsonl", RL_DATA_DEMOS, text, "3: missing field \"response\"");
    expect_bad("d_bad3.jsonl", RL_DATA_DEMOS, "{\"prompt\": 3, \"response\": \"b\"}\n",
               "1: field \"prompt\" must be a string, not an integer");
    expect_bad("d_bad4.jsonl", RL_DATA_DEMOS, "{\"prompt\": \"a\", \"response\": null}\n",
               "1: field \"response\" must be a string, not null");
    expect_bad("d_bad5.jsonl", RL_DATA_DEMOS, "{\"prompt\": \"a\", \"response\": [\"b\"]}\n",
               "1: field \"response\" must be a string, not an array");
    expect_bad("d_bad6.jsonl", RL_DATA_DEMOS, "\"just a string\"\n", "1: expected a JSON object, not a string");
    /* JSON syntax errors: jansson's column (where its reader stopped) and its own words */
    snprintf(text, sizeof text, "%s{\"prompt\": \"a\", \"response\": }\n", ok);
    expect_bad("d_bad7.jsonl", RL_DATA_DEMOS, text, "2: invalid JSON at column 29: unexpected token near '}'");
    expect_bad("d_bad8.jsonl", RL_DATA_DEMOS, "{\"prompt\": \"a\", \"prompt\": \"b\", \"response\": \"c\"}\n",
               "1: invalid JSON at column 24: duplicate object key near '\"prompt\"'");
    expect_bad("d_bad9.jsonl", RL_DATA_DEMOS, "{\"prompt\": \"a\", \"response\": \"b\"} extra\n",
               "1: invalid JSON at column 38: end of file expected near 'extra'");
    /* invalid UTF-8 inside a string */
    expect_bad("d_bad10.jsonl", RL_DATA_DEMOS, "{\"prompt\": \"\xff\", \"response\": \"b\"}\n",
               "1: invalid JSON at column 12: unable to decode byte 0xff near '\"'");
}

static void test_skip_bad_lines(void **state) {
    (void)state;
    write_file(TMP("d_skip.jsonl"), "{\"prompt\": \"a\", \"response\": \"b\"}\n"
                                    "{\"prompt\": \"a\"}\n"
                                    "\n"
                                    "not json\n"
                                    "{\"prompt\": \"c\", \"response\": \"d\"}\n");
    char err[512] = "";
    rl_dataset *ds = NULL;
    /* without the flag: refused at line 2 */
    assert_int_equal(rl_dataset_load(TMP("d_skip.jsonl"), RL_DATA_DEMOS, 0, &ds, err, sizeof err), RL_ERR_ARG);
    assert_string_equal(err, RLHF_TEST_TMP "/d_skip.jsonl:2: missing field \"response\"");
    ds = load_ok(TMP("d_skip.jsonl"), RL_DATA_DEMOS, 1);
    assert_int_equal(ds->n, 2);
    assert_int_equal(ds->report.bad, 2);
    assert_int_equal(ds->report.blank, 1);
    assert_int_equal(ds->report.lines, 5);
    assert_string_equal(ds->report.first_bad, RLHF_TEST_TMP "/d_skip.jsonl:2: missing field \"response\"");
    assert_string_equal(ds->rec[1].prompt, "c");
    assert_int_equal(ds->rec[1].line, 5);
    rl_dataset_free(ds);
}

static void test_open_errors(void **state) {
    (void)state;
    char err[512] = "";
    rl_dataset *ds = (rl_dataset *)0x1;
    assert_int_equal(rl_dataset_load(TMP("no_such_file.jsonl"), RL_DATA_AUTO, 0, &ds, err, sizeof err), RL_ERR_IO);
    assert_null(ds);
    assert_string_equal(err, RLHF_TEST_TMP "/no_such_file.jsonl: cannot open: No such file or directory");
    /* an empty file is an empty dataset */
    write_file(TMP("d_empty.jsonl"), "");
    ds = load_ok(TMP("d_empty.jsonl"), RL_DATA_AUTO, 0);
    assert_int_equal(ds->n, 0);
    assert_int_equal(ds->report.lines, 0);
    rl_dataset_free(ds);
}

static void test_gzip(void **state) {
    (void)state;
    char text[1 << 16];
    size_t o = 0;
    for (int i = 0; i < 500; i++)
        o += (size_t)snprintf(text + o, sizeof text - o, "{\"prompt\": \"p%d\", \"response\": \" r%d\"}\n", i, i * 7);
    write_gz(TMP("d_gz.jsonl.gz"), text);
    write_file(TMP("d_plain.jsonl"), text);
    rl_dataset *a = load_ok(TMP("d_gz.jsonl.gz"), RL_DATA_AUTO, 0);
    rl_dataset *b = load_ok(TMP("d_plain.jsonl"), RL_DATA_AUTO, 0);
    assert_int_equal(a->format, RL_DATA_DEMOS);
    assert_int_equal(a->n, 500);
    assert_int_equal(b->n, 500);
    for (int i = 0; i < 500; i++) {
        char p[32], r[32];
        snprintf(p, sizeof p, "p%d", i);
        snprintf(r, sizeof r, " r%d", i * 7);
        assert_string_equal(a->rec[i].prompt, p);
        assert_string_equal(a->rec[i].response[0], r);
        assert_string_equal(b->rec[i].response[0], r);
    }
    rl_dataset_free(a);
    rl_dataset_free(b);
    /* a gzip file cut in the middle is a read error, not a short dataset */
    FILE *f = fopen(TMP("d_gz.jsonl.gz"), "rb");
    assert_non_null(f);
    static unsigned char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    f = fopen(TMP("d_gz_cut.jsonl.gz"), "wb");
    fwrite(buf, 1, n / 2, f);
    fclose(f);
    char err[512] = "";
    rl_dataset *ds = NULL;
    assert_int_equal(rl_dataset_load(TMP("d_gz_cut.jsonl.gz"), RL_DATA_AUTO, 0, &ds, err, sizeof err), RL_ERR_IO);
    const char *want = RLHF_TEST_TMP "/d_gz_cut.jsonl.gz: read error after line ";
    if (strncmp(err, want, strlen(want)) != 0) fail_msg("unexpected message: %s", err);
    assert_non_null(strstr(err, "unexpected end of file"));
}

/* ---- HH-RLHF --------------------------------------------------------------------- */

static void check_split(const char *c, const char *r, int64_t want) {
    int64_t got = rl_hh_prompt_len(c, strlen(c), r, strlen(r));
    if (got != want) fail_msg("split of\n  %s\n  %s\ngave %lld, expected %lld", c, r, (long long)got, (long long)want);
}

static void test_hh_split(void **state) {
    (void)state;
    const char *q = "\n\nHuman: hi\n\nAssistant:";
    int64_t lq = (int64_t)strlen(q);
    check_split("\n\nHuman: hi\n\nAssistant: Hello!", "\n\nHuman: hi\n\nAssistant: Go away.", lq);
    /* responses that share a beginning: the cut goes back to the marker */
    check_split("\n\nHuman: hi\n\nAssistant: I think yes", "\n\nHuman: hi\n\nAssistant: I think no", lq);
    /* multi-turn: the LAST marker of the common prefix */
    const char *m = "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:";
    char c1[256], r1[256];
    snprintf(c1, sizeof c1, "%s d1", m);
    snprintf(r1, sizeof r1, "%s d2", m);
    check_split(c1, r1, (int64_t)strlen(m));
    /* a marker inside one response (not common) does not count */
    check_split("\n\nHuman: hi\n\nAssistant: ok\n\nAssistant: more", "\n\nHuman: hi\n\nAssistant: no", lq);
    /* a marker that both responses repeat is part of the common prefix: the
     * rule takes it (the prompt is the longest common prefix, cut back) */
    check_split("\n\nHuman: hi\n\nAssistant: x\n\nAssistant: y", "\n\nHuman: hi\n\nAssistant: x\n\nAssistant: z",
                lq + (int64_t)strlen(" x\n\nAssistant:"));
    /* the common prefix ends inside the second marker: back to the first */
    check_split("\n\nHuman: hi\n\nAssistant: x\n\nHuman: y\n\nAssistant: z",
                "\n\nHuman: hi\n\nAssistant: x\n\nHuman: y\n\nAssistance", lq);
    /* a marker cut by the end of the common prefix is no marker */
    check_split("\n\nHuman: hi\n\nAssistant: a", "\n\nHuman: hi\n\nAssist", -1);
    check_split("\n\nHuman: hi", "\n\nHuman: hi", -1);
    /* identical transcripts: prompt through the last marker */
    check_split("\n\nHuman: hi\n\nAssistant: same", "\n\nHuman: hi\n\nAssistant: same", lq);
    /* a pair that is one transcript's prefix of the other */
    check_split("\n\nHuman: hi\n\nAssistant:", "\n\nHuman: hi\n\nAssistant: more", lq);
}

static void test_hh_load(void **state) {
    (void)state;
    write_file(TMP("hh_good.jsonl"),
               "{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant: yes\", "
               "\"rejected\": \"\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant: no\"}\n"
               "{\"chosen\": \"\\n\\nHuman: x\\n\\nAssistant: same\", \"rejected\": \"\\n\\nHuman: x\\n\\nAssistant: same\"}\n");
    rl_dataset *ds = load_ok(TMP("hh_good.jsonl"), RL_DATA_AUTO, 0);
    assert_int_equal(ds->format, RL_DATA_HH);
    assert_int_equal(ds->n, 2);
    assert_string_equal(ds->rec[0].prompt, "\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:");
    assert_string_equal(ds->rec[0].response[0], " yes");
    assert_string_equal(ds->rec[0].response[1], " no");
    assert_int_equal(ds->rec[0].better_id, 0);
    assert_int_equal(ds->rec[0].safer_id, -1);
    assert_int_equal(ds->report.identical_pairs, 1);
    assert_string_equal(ds->rec[1].response[0], " same");
    rl_dataset_free(ds);
    expect_bad("hh_bad1.jsonl", RL_DATA_HH,
               "{\"chosen\": \"\\n\\nHuman: a\\n\\nAssistant: b\", \"rejected\": \"\\n\\nHuman: z\\n\\nAssistant: b\"}\n",
               "1: chosen and rejected have no \"\\n\\nAssistant:\" in their common prefix");
    expect_bad("hh_bad2.jsonl", RL_DATA_HH, "{\"chosen\": \"x\"}\n", "1: missing field \"rejected\"");
    expect_bad("hh_bad3.jsonl", RL_DATA_HH, "{\"chosen\": \"x\", \"rejected\": 1.5}\n",
               "1: field \"rejected\" must be a string, not a number");
}

/* ---- PKU-SafeRLHF --------------------------------------------------------------------- */

#define PKU_LINE(b0, b1, better, safer, extra)                                                       \
    "{\"prompt\": \"p\", \"response_0\": \"r0\", \"response_1\": \"r1\", \"is_response_0_safe\": " b0 \
    ", \"is_response_1_safe\": " b1 ", \"better_response_id\": " better ", \"safer_response_id\": " safer extra "}\n"

static void test_pku_good(void **state) {
    (void)state;
    write_file(TMP("pku_good.jsonl"),
               PKU_LINE("true", "false", "1", "0", "")
               PKU_LINE("false", "false", "0", "1",
                        ", \"response_0_severity_level\": 2, \"response_1_severity_level\": 3, "
                        "\"response_0_harm_category\": {\"Violence\": true}, \"prompt_source\": \"Alpaca\", "
                        "\"response_0_sha256\": \"ab\"")
               PKU_LINE("true", "true", "0", "0", ", \"response_0_severity_level\": null, \"response_1_severity_level\": 0"));
    rl_dataset *ds = load_ok(TMP("pku_good.jsonl"), RL_DATA_AUTO, 0);
    assert_int_equal(ds->format, RL_DATA_PKU);
    assert_int_equal(ds->n, 3);
    const rl_record *r = ds->rec;
    assert_string_equal(r[0].prompt, "p");
    assert_string_equal(r[0].response[0], "r0");
    assert_string_equal(r[0].response[1], "r1");
    assert_int_equal(r[0].is_safe[0], 1);
    assert_int_equal(r[0].is_safe[1], 0);
    assert_int_equal(r[0].better_id, 1);
    assert_int_equal(r[0].safer_id, 0);
    assert_int_equal(r[0].severity[0], -1);
    assert_int_equal(r[0].severity[1], -1);
    assert_int_equal(r[1].severity[0], 2);
    assert_int_equal(r[1].severity[1], 3);
    assert_int_equal(r[1].safer_id, 1);
    assert_int_equal(r[2].severity[0], -1);
    assert_int_equal(r[2].severity[1], 0);
    rl_dataset_free(ds);
}

static void test_pku_malformed(void **state) {
    (void)state;
    expect_bad("pku_bad1.jsonl", RL_DATA_PKU, PKU_LINE("true", "false", "2", "0", ""),
               "1: field \"better_response_id\" must be 0 or 1, not 2");
    expect_bad("pku_bad2.jsonl", RL_DATA_PKU, PKU_LINE("true", "false", "\"1\"", "0", ""),
               "1: field \"better_response_id\" must be 0 or 1, not a string");
    expect_bad("pku_bad3.jsonl", RL_DATA_PKU, PKU_LINE("1", "false", "1", "0", ""),
               "1: field \"is_response_0_safe\" must be true or false, not an integer");
    expect_bad("pku_bad4.jsonl", RL_DATA_PKU, PKU_LINE("true", "false", "1", "1.0", ""),
               "1: field \"safer_response_id\" must be 0 or 1, not a number");
    /* the safer response is labelled unsafe, the other safe (safe-rlhf raises) */
    expect_bad("pku_bad5.jsonl", RL_DATA_PKU, PKU_LINE("false", "true", "1", "0", ""),
               "1: safer_response_id is 0 but response_0 is labelled unsafe and response_1 safe");
    expect_bad("pku_bad6.jsonl", RL_DATA_PKU,
               PKU_LINE("true", "true", "1", "0", "") PKU_LINE("true", "false", "1", "1", ""),
               "2: safer_response_id is 1 but response_1 is labelled unsafe and response_0 safe");
    expect_bad("pku_bad7.jsonl", RL_DATA_PKU, PKU_LINE("true", "true", "1", "0", ", \"response_0_severity_level\": -1"),
               "1: field \"response_0_severity_level\" must be a non-negative integer, not -1");
    expect_bad("pku_bad8.jsonl", RL_DATA_PKU, PKU_LINE("true", "true", "1", "0", ", \"response_1_severity_level\": \"high\""),
               "1: field \"response_1_severity_level\" must be a non-negative integer, not a string");
    expect_bad("pku_bad9.jsonl", RL_DATA_PKU,
               "{\"prompt\": \"p\", \"response_0\": \"a\", \"response_1\": \"b\", \"is_response_0_safe\": true, "
               "\"is_response_1_safe\": true, \"better_response_id\": 0}\n",
               "1: missing field \"safer_response_id\"");
    /* a format given explicitly is enforced: an HH line in a PKU load */
    expect_bad("pku_bad10.jsonl", RL_DATA_PKU, "{\"chosen\": \"a\", \"rejected\": \"b\"}\n",
               "1: missing field \"prompt\"");
}

static void test_auto_detect(void **state) {
    (void)state;
    write_file(TMP("auto_p.jsonl"), "\n{\"prompt\": \"What is 1+1?\", \"family\": \"arith\"}\n");
    rl_dataset *ds = load_ok(TMP("auto_p.jsonl"), RL_DATA_AUTO, 0);
    assert_int_equal(ds->format, RL_DATA_PROMPTS);
    assert_int_equal(ds->n, 1);
    assert_null(ds->rec[0].response[0]);
    rl_dataset_free(ds);
    expect_bad("auto_bad.jsonl", RL_DATA_AUTO, "{\"text\": \"x\"}\n",
               "1: cannot tell the format: expected the fields of demos (prompt, response), hh (chosen, "
               "rejected), pku (prompt, response_0, ...) or prompts (prompt)");
    /* the first record decides; a later record of another format is bad */
    expect_bad("auto_mix.jsonl", RL_DATA_AUTO, "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"chosen\": \"x\", \"rejected\": \"y\"}\n",
               "2: missing field \"prompt\"");
    rl_data_format f;
    assert_int_equal(rl_data_format_parse("pku", &f), RL_OK);
    assert_int_equal(f, RL_DATA_PKU);
    assert_int_equal(rl_data_format_parse("jsonl", &f), RL_ERR_ARG);
    assert_string_equal(rl_data_format_name(RL_DATA_HH), "hh");
    /* rl_record_parse, the line-level entry point */
    rl_record r;
    char msg[256];
    const char *line = "{\"prompt\": \"q\"}";
    assert_int_equal(rl_record_parse(line, strlen(line), RL_DATA_PROMPTS, &r, msg, sizeof msg), RL_OK);
    assert_string_equal(r.prompt, "q");
    rl_record_clear(&r);
    assert_int_equal(rl_record_parse(line, strlen(line), RL_DATA_DEMOS, &r, msg, sizeof msg), RL_ERR_ARG);
    assert_string_equal(msg, "missing field \"response\"");
}

/* ---- token rows ------------------------------------------------------------------------ */

/* Checks row b of r against: the bytes of prompt then response, EOS when
 * eos, then PAD up to the width; mask on the response part. */
static void check_row(const rl_rows *r, int64_t b, const char *prompt, const char *resp, int eos) {
    int64_t W = r->T, P = (int64_t)strlen(prompt), R = (int64_t)strlen(resp), L = P + R + (eos ? 1 : 0);
    assert_int_equal(r->len[b], L);
    assert_int_equal(r->prompt_len[b], P);
    for (int64_t t = 0; t < W; t++) {
        int32_t want = t < P ? (unsigned char)prompt[t] : t < P + R ? (unsigned char)resp[t - P]
                                                         : t < L     ? RL_TOK_BYTES_EOS
                                                                     : RL_TOK_BYTES_PAD;
        if (r->ids[b * W + t] != want) fail_msg("row %lld, t %lld: id %d, expected %d", (long long)b, (long long)t,
                                                r->ids[b * W + t], want);
        assert_int_equal(r->attn[b * W + t], t < L);
        assert_int_equal(r->mask[b * W + t], t >= P && t < L);
    }
}

static void test_rows_layout(void **state) {
    (void)state;
    write_file(TMP("rows.jsonl"), "{\"prompt\": \"What is 2+3?\", \"response\": \" 5\"}\n"
                                  "{\"prompt\": \"Hi\", \"response\": \"\"}\n");
    rl_dataset *ds = load_ok(TMP("rows.jsonl"), RL_DATA_DEMOS, 0);
    rl_tok_opts o = rl_tok_opts_default(48);
    char err[512];
    rl_tokdata *td = rl_tokdata_new(ds, g_bytes, RL_ROWS_SFT, &o, err, sizeof err);
    if (!td) fail_msg("%s", err);
    assert_int_equal(rl_tokdata_size(td), 2);
    assert_int_equal(rl_tokdata_pad_id(td), RL_TOK_BYTES_PAD);
    assert_int_equal(rl_tokdata_eos_id(td), RL_TOK_BYTES_EOS);
    rl_data_batch *b = rl_data_batch_new(td, 4);
    int64_t idx[3] = {1, 0, 1};
    assert_int_equal(rl_data_batch_fill(td, idx, 3, b), RL_OK);
    assert_int_equal(b->B, 3);
    assert_int_equal(b->rows.B, 3);
    assert_int_equal(b->rows.T, 48);
    /* the default template is HH's turn format */
    check_row(&b->rows, 0, "\n\nHuman: Hi\n\nAssistant:", "", 1);
    check_row(&b->rows, 1, "\n\nHuman: What is 2+3?\n\nAssistant:", " 5", 1);
    check_row(&b->rows, 2, "\n\nHuman: Hi\n\nAssistant:", "", 1);
    assert_int_equal(b->index[1], 0);
    rl_trunc_stats s = rl_tokdata_stats(td);
    assert_int_equal(s.rows, 2);
    assert_int_equal(s.rows_truncated, 0);
    assert_int_equal(s.max_len, (int64_t)strlen("\n\nHuman: What is 2+3?\n\nAssistant: 5") + 1);
    int64_t bad = 2;
    assert_int_equal(rl_data_batch_fill(td, &bad, 1, b), RL_ERR_ARG);
    assert_int_equal(rl_data_batch_fill(td, idx, 5, b), RL_ERR_ARG);
    rl_data_batch_free(b);
    rl_tokdata_free(td);

    /* pad_to_longest and a custom template; prompt-only rows from demos */
    o.pad_to_longest = 1;
    o.tmpl = "Q: {prompt} A:";
    td = rl_tokdata_new(ds, g_bytes, RL_ROWS_PROMPTS, &o, err, sizeof err);
    if (!td) fail_msg("%s", err);
    b = rl_data_batch_new(td, 2);
    int64_t both[2] = {0, 1};
    assert_int_equal(rl_data_batch_fill(td, both, 2, b), RL_OK);
    assert_int_equal(b->rows.T, (int64_t)strlen("Q: What is 2+3? A:"));
    check_row(&b->rows, 0, "Q: What is 2+3? A:", "", 0);
    check_row(&b->rows, 1, "Q: Hi A:", "", 0);
    rl_data_batch_free(b);
    rl_tokdata_free(td);

    /* an empty rendered prompt gets EOS as its first token */
    o = rl_tok_opts_default(16);
    o.tmpl = RL_DATA_TEMPLATE_NONE;
    write_file(TMP("rows_empty.jsonl"), "{\"prompt\": \"\", \"response\": \"ab\"}\n");
    rl_dataset *de = load_ok(TMP("rows_empty.jsonl"), RL_DATA_DEMOS, 0);
    td = rl_tokdata_new(de, g_bytes, RL_ROWS_SFT, &o, err, sizeof err);
    b = rl_data_batch_new(td, 1);
    assert_int_equal(rl_data_batch_fill(td, both, 1, b), RL_OK);
    assert_int_equal(b->rows.ids[0], RL_TOK_BYTES_EOS);
    assert_int_equal(b->rows.ids[1], 'a');
    assert_int_equal(b->rows.prompt_len[0], 1);
    assert_int_equal(b->rows.mask[0], 0);
    assert_int_equal(b->rows.mask[1], 1);
    rl_data_batch_free(b);
    rl_tokdata_free(td);
    rl_dataset_free(de);

    /* kinds a format cannot give, bad templates, tiny T */
    assert_null(rl_tokdata_new(ds, g_bytes, RL_ROWS_PAIRS, &o, err, sizeof err));
    assert_string_equal(err, RLHF_TEST_TMP "/rows.jsonl: a demos file has no response pairs (use an hh or pku file)");
    o.tmpl = "no slot";
    assert_null(rl_tokdata_new(ds, g_bytes, RL_ROWS_SFT, &o, err, sizeof err));
    assert_string_equal(err, "prompt template \"no slot\" has no {prompt}");
    o = rl_tok_opts_default(1);
    assert_null(rl_tokdata_new(ds, g_bytes, RL_ROWS_SFT, &o, err, sizeof err));
    assert_string_equal(err, RLHF_TEST_TMP "/rows.jsonl: context length T = 1 is too small (need >= 2)");
    rl_dataset_free(ds);
}

static void test_truncation(void **state) {
    (void)state;
    /* T = 16, T/2 = 8. Rows (prompt bytes P, response bytes + EOS = R):
     *  0: P 4,  R 4   fits
     *  1: P 20, R 4   response whole, prompt keeps its last 12  (drops 8 prompt)
     *  2: P 2,  R 41  response keeps 14 (no EOS), prompt whole   (drops 27 response)
     *  3: P 20, R 21  response keeps T/2 = 8, prompt its last 8  (drops 12 + 13) */
    write_file(TMP("trunc.jsonl"),
               "{\"prompt\": \"abcd\", \"response\": \"xyz\"}\n"
               "{\"prompt\": \"abcdefghijklmnopqrst\", \"response\": \"xyz\"}\n"
               "{\"prompt\": \"ab\", \"response\": \"0123456789012345678901234567890123456789\"}\n"
               "{\"prompt\": \"ABCDEFGHIJKLMNOPQRST\", \"response\": \"zyxwvutsrqponmlkjihg\"}\n");
    rl_dataset *ds = load_ok(TMP("trunc.jsonl"), RL_DATA_DEMOS, 0);
    rl_tok_opts o = rl_tok_opts_default(16);
    o.tmpl = RL_DATA_TEMPLATE_NONE;
    char err[512];
    rl_tokdata *td = rl_tokdata_new(ds, g_bytes, RL_ROWS_SFT, &o, err, sizeof err);
    if (!td) fail_msg("%s", err);
    rl_data_batch *b = rl_data_batch_new(td, 4);
    int64_t idx[4] = {0, 1, 2, 3};
    assert_int_equal(rl_data_batch_fill(td, idx, 4, b), RL_OK);
    check_row(&b->rows, 0, "abcd", "xyz", 1);
    check_row(&b->rows, 1, "ijklmnopqrst", "xyz", 1);
    check_row(&b->rows, 2, "ab", "01234567890123", 0);
    check_row(&b->rows, 3, "MNOPQRST", "zyxwvuts", 0);
    rl_trunc_stats s = rl_tokdata_stats(td);
    assert_int_equal(s.rows, 4);
    assert_int_equal(s.rows_truncated, 3);
    assert_int_equal(s.prompt_tokens_dropped, 8 + 12);
    assert_int_equal(s.response_tokens_dropped, (41 - 14) + (21 - 8));
    assert_int_equal(s.eos_dropped, 2);
    assert_int_equal(s.max_len, 2 + 41);
    rl_data_batch_free(b);
    rl_tokdata_free(td);

    /* prompt-only rows keep the last max_prompt tokens */
    o.max_prompt = 5;
    td = rl_tokdata_new(ds, g_bytes, RL_ROWS_PROMPTS, &o, err, sizeof err);
    b = rl_data_batch_new(td, 4);
    assert_int_equal(rl_data_batch_fill(td, idx, 4, b), RL_OK);
    check_row(&b->rows, 0, "abcd", "", 0);
    check_row(&b->rows, 1, "pqrst", "", 0);
    check_row(&b->rows, 2, "ab", "", 0);
    s = rl_tokdata_stats(td);
    assert_int_equal(s.rows_truncated, 2);
    assert_int_equal(s.prompt_tokens_dropped, 30);
    assert_int_equal(s.response_tokens_dropped, 0);
    assert_int_equal(s.eos_dropped, 0);
    rl_data_batch_free(b);
    rl_tokdata_free(td);
    rl_dataset_free(ds);
}

static void test_pair_batches(void **state) {
    (void)state;
    write_file(TMP("pairs_hh.jsonl"),
               "{\"chosen\": \"\\n\\nHuman: q1\\n\\nAssistant: good\", \"rejected\": \"\\n\\nHuman: q1\\n\\nAssistant: bad!\"}\n"
               "{\"chosen\": \"\\n\\nHuman: q22\\n\\nAssistant: A\", \"rejected\": \"\\n\\nHuman: q22\\n\\nAssistant: longer one\"}\n");
    rl_dataset *ds = load_ok(TMP("pairs_hh.jsonl"), RL_DATA_AUTO, 0);
    rl_tok_opts o = rl_tok_opts_default(64);
    o.pad_to_longest = 1;
    char err[512];
    rl_tokdata *td = rl_tokdata_new(ds, g_bytes, RL_ROWS_PAIRS, &o, err, sizeof err);
    if (!td) fail_msg("%s", err);
    assert_int_equal(rl_tokdata_has_safety(td), 0);
    rl_data_batch *b = rl_data_batch_new(td, 2);
    int64_t idx[2] = {0, 1};
    assert_int_equal(rl_data_batch_fill(td, idx, 2, b), RL_OK);
    int64_t W = (int64_t)strlen("\n\nHuman: q22\n\nAssistant: longer one") + 1;
    assert_int_equal(b->chosen.T, W);
    assert_int_equal(b->rejected.T, W);
    check_row(&b->chosen, 0, "\n\nHuman: q1\n\nAssistant:", " good", 1);
    check_row(&b->rejected, 0, "\n\nHuman: q1\n\nAssistant:", " bad!", 1);
    check_row(&b->chosen, 1, "\n\nHuman: q22\n\nAssistant:", " A", 1);
    check_row(&b->rejected, 1, "\n\nHuman: q22\n\nAssistant:", " longer one", 1);
    rl_data_batch_free(b);
    rl_tokdata_free(td);
    /* SFT rows from HH use the chosen response */
    td = rl_tokdata_new(ds, g_bytes, RL_ROWS_SFT, &o, err, sizeof err);
    b = rl_data_batch_new(td, 2);
    assert_int_equal(rl_data_batch_fill(td, idx, 2, b), RL_OK);
    check_row(&b->rows, 1, "\n\nHuman: q22\n\nAssistant:", " A", 1);
    rl_data_batch_free(b);
    rl_tokdata_free(td);
    rl_dataset_free(ds);

    /* PKU: chosen = the better response; s/u = safer/unsafer; signs +1 unsafe, -1 safe */
    write_file(TMP("pairs_pku.jsonl"),
               "{\"prompt\": \"p\", \"response_0\": \" a\", \"response_1\": \" bb\", \"is_response_0_safe\": true, "
               "\"is_response_1_safe\": false, \"better_response_id\": 1, \"safer_response_id\": 0}\n"
               "{\"prompt\": \"q\", \"response_0\": \" c\", \"response_1\": \" dd\", \"is_response_0_safe\": false, "
               "\"is_response_1_safe\": false, \"better_response_id\": 0, \"safer_response_id\": 1}\n"
               "{\"prompt\": \"r\", \"response_0\": \" e\", \"response_1\": \" ff\", \"is_response_0_safe\": true, "
               "\"is_response_1_safe\": true, \"better_response_id\": 0, \"safer_response_id\": 1}\n");
    ds = load_ok(TMP("pairs_pku.jsonl"), RL_DATA_AUTO, 0);
    o = rl_tok_opts_default(40);
    td = rl_tokdata_new(ds, g_bytes, RL_ROWS_PAIRS, &o, err, sizeof err);
    if (!td) fail_msg("%s", err);
    assert_int_equal(rl_tokdata_has_safety(td), 1);
    b = rl_data_batch_new(td, 3);
    int64_t i3[3] = {0, 1, 2};
    assert_int_equal(rl_data_batch_fill(td, i3, 3, b), RL_OK);
    assert_int_equal(b->has_safety, 1);
    const char *pp[3] = {"\n\nHuman: p\n\nAssistant:", "\n\nHuman: q\n\nAssistant:", "\n\nHuman: r\n\nAssistant:"};
    check_row(&b->chosen, 0, pp[0], " bb", 1);
    check_row(&b->rejected, 0, pp[0], " a", 1);
    check_row(&b->safer, 0, pp[0], " a", 1);
    check_row(&b->unsafer, 0, pp[0], " bb", 1);
    check_row(&b->chosen, 1, pp[1], " c", 1);
    check_row(&b->safer, 1, pp[1], " dd", 1);
    check_row(&b->unsafer, 1, pp[1], " c", 1);
    check_row(&b->safer, 2, pp[2], " ff", 1);
    const float ss[3] = {-1, 1, -1}, su[3] = {1, 1, -1};
    const int32_t bid[3] = {1, 0, 0}, sid[3] = {0, 1, 1}, s0[3] = {1, 0, 1}, s1[3] = {0, 0, 1};
    for (int k = 0; k < 3; k++) {
        assert_true(b->sign_s[k] == ss[k]);
        assert_true(b->sign_u[k] == su[k]);
        assert_int_equal(b->better_id[k], bid[k]);
        assert_int_equal(b->safer_id[k], sid[k]);
        assert_int_equal(b->is_safe0[k], s0[k]);
        assert_int_equal(b->is_safe1[k], s1[k]);
    }
    rl_data_batch_free(b);
    rl_tokdata_free(td);
    rl_dataset_free(ds);
}

/* ---- shuffling and resuming ------------------------------------------------------------ */

static rl_tokdata *numbered_data(int n, rl_dataset **ds) {
    char text[8192];
    size_t o = 0;
    for (int i = 0; i < n; i++) o += (size_t)snprintf(text + o, sizeof text - o, "{\"prompt\": \"%d\"}\n", i);
    write_file(TMP("numbered.jsonl"), text);
    *ds = load_ok(TMP("numbered.jsonl"), RL_DATA_PROMPTS, 0);
    rl_tok_opts op = rl_tok_opts_default(8);
    op.tmpl = RL_DATA_TEMPLATE_NONE;
    char err[256];
    rl_tokdata *td = rl_tokdata_new(*ds, g_bytes, RL_ROWS_PROMPTS, &op, err, sizeof err);
    assert_non_null(td);
    return td;
}

/* Length grouping: still a permutation per epoch, less padding than plain
 * shuffling, deterministic, and a resumed iterator continues the same way. */
static void test_group_by_length(void **state) {
    (void)state;
    rl_dataset *ds;
    rl_tokdata *td = numbered_data(120, &ds); /* rows "0".."119": lengths 1, 2 and 3 */
    int64_t pad[2] = {0, 0};
    for (int g = 0; g < 2; g++) {
        rl_batcher *it = rl_batcher_new(td, 4, 11, 1);
        if (g) rl_batcher_set_length_groups(it, 5); /* windows of 20 examples */
        int seen[120] = {0};
        for (int k = 0; k < 30; k++) {
            const rl_data_batch *b = rl_batcher_next(it);
            int64_t mx = 0, sum = 0;
            for (int j = 0; j < 4; j++) {
                seen[b->index[j]]++;
                mx = b->rows.len[j] > mx ? b->rows.len[j] : mx;
                sum += b->rows.len[j];
            }
            pad[g] += 4 * mx - sum;
        }
        for (int i = 0; i < 120; i++) assert_int_equal(seen[i], 1);
        rl_batcher_free(it);
    }
    print_message("padding tokens per epoch: shuffled %lld, grouped %lld\n", (long long)pad[0], (long long)pad[1]);
    assert_true(pad[1] < pad[0] / 2);
    /* same seed and groups, same stream; a cursor resumes it exactly */
    rl_batcher *a = rl_batcher_new(td, 4, 11, 1), *b = rl_batcher_new(td, 4, 11, 1), *r = rl_batcher_new(td, 4, 11, 1);
    rl_batcher_set_length_groups(a, 5);
    rl_batcher_set_length_groups(b, 5);
    rl_batcher_set_length_groups(r, 5);
    for (int k = 0; k < 7; k++) assert_memory_equal(rl_batcher_next(a)->index, rl_batcher_next(b)->index, 4 * sizeof(int64_t));
    assert_int_equal(rl_batcher_seek(r, rl_batcher_cursor(a)), RL_OK);
    for (int k = 0; k < 40; k++) assert_memory_equal(rl_batcher_next(a)->index, rl_batcher_next(r)->index, 4 * sizeof(int64_t));
    rl_batcher_free(a);
    rl_batcher_free(b);
    rl_batcher_free(r);
    rl_tokdata_free(td);
    rl_dataset_free(ds);
}

static void test_shuffle_and_cursor(void **state) {
    (void)state;
    rl_dataset *ds;
    rl_tokdata *td = numbered_data(10, &ds);
    /* each epoch is a permutation; different epochs and seeds differ */
    int64_t p0[10], p1[10], q0[10];
    rl_data_epoch_order(42, 0, 1, 10, p0);
    rl_data_epoch_order(42, 1, 1, 10, p1);
    rl_data_epoch_order(43, 0, 1, 10, q0);
    int seen[10] = {0}, same01 = 1, same_seed = 1, identity = 1;
    for (int i = 0; i < 10; i++) {
        seen[p0[i]]++;
        same01 &= p0[i] == p1[i];
        same_seed &= p0[i] == q0[i];
        identity &= p0[i] == i;
    }
    for (int i = 0; i < 10; i++) assert_int_equal(seen[i], 1);
    assert_false(same01);
    assert_false(same_seed);
    assert_false(identity);
    rl_data_epoch_order(42, 3, 0, 10, p1);
    for (int i = 0; i < 10; i++) assert_int_equal(p1[i], i);

    /* batches of 4 over 10 examples: the third batch ends epoch 0 and starts epoch 1 */
    rl_batcher *it = rl_batcher_new(td, 4, 42, 1);
    int64_t got[40];
    for (int k = 0; k < 10; k++) {
        const rl_data_batch *b = rl_batcher_next(it);
        assert_non_null(b);
        assert_int_equal(b->B, 4);
        for (int j = 0; j < 4; j++) {
            got[4 * k + j] = b->index[j];
            /* the row really is that record: its text is the index */
            char want[8];
            snprintf(want, sizeof want, "%d", (int)b->index[j]);
            assert_int_equal(b->rows.len[j], (int64_t)strlen(want));
            assert_int_equal(b->rows.ids[j * b->rows.T], want[0]);
        }
    }
    rl_data_epoch_order(42, 1, 1, 10, p1);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(got[i], p0[i]);
        assert_int_equal(got[10 + i], p1[i]);
    }
    rl_data_cursor c = rl_batcher_cursor(it);
    assert_int_equal(c.epoch, 4);
    assert_int_equal(c.pos, 0);
    assert_int_equal(c.seed, 42);

    /* save mid-epoch, continue, then resume a fresh iterator from the cursor */
    rl_batcher *a = rl_batcher_new(td, 3, 7, 1);
    for (int k = 0; k < 5; k++) rl_batcher_next(a);
    rl_data_cursor saved = rl_batcher_cursor(a);
    assert_int_equal(saved.epoch, 1);
    assert_int_equal(saved.pos, 5);
    char s[128];
    rl_data_cursor_format(&saved, s, sizeof s);
    assert_string_equal(s, "seed=7 epoch=1 pos=5");
    int64_t cont[30];
    for (int k = 0; k < 10; k++) memcpy(cont + 3 * k, rl_batcher_next(a)->index, 3 * sizeof(int64_t));
    rl_data_cursor back;
    assert_int_equal(rl_data_cursor_parse(s, &back), RL_OK);
    rl_batcher *r = rl_batcher_new(td, 3, 999, 1); /* the cursor brings its own seed */
    assert_int_equal(rl_batcher_seek(r, back), RL_OK);
    for (int k = 0; k < 10; k++) assert_memory_equal(rl_batcher_next(r)->index, cont + 3 * k, 3 * sizeof(int64_t));
    /* same seed, same stream from the start */
    rl_batcher *a2 = rl_batcher_new(td, 3, 7, 1), *a3 = rl_batcher_new(td, 3, 7, 1);
    for (int k = 0; k < 12; k++) assert_memory_equal(rl_batcher_next(a2)->index, rl_batcher_next(a3)->index, 3 * sizeof(int64_t));
    /* bad cursors */
    assert_int_equal(rl_batcher_seek(r, (rl_data_cursor){.seed = 1, .epoch = 0, .pos = 11}), RL_ERR_ARG);
    assert_int_equal(rl_batcher_seek(r, (rl_data_cursor){.seed = 1, .epoch = -1, .pos = 0}), RL_ERR_ARG);
    assert_int_equal(rl_data_cursor_parse("seed=1 epoch=2", &back), RL_ERR_ARG);
    assert_int_equal(rl_data_cursor_parse("seed=1 epoch=2 pos=3 x", &back), RL_ERR_ARG);
    assert_int_equal(rl_data_cursor_parse("seed=1 epoch=-2 pos=3", &back), RL_ERR_ARG);
    /* unshuffled iteration keeps file order */
    rl_batcher *u = rl_batcher_new(td, 4, 5, 0);
    const rl_data_batch *ub = rl_batcher_next(u);
    for (int j = 0; j < 4; j++) assert_int_equal(ub->index[j], j);
    assert_null(rl_batcher_new(td, 0, 1, 1));
    rl_batcher_free(u);
    rl_batcher_free(a2);
    rl_batcher_free(a3);
    rl_batcher_free(r);
    rl_batcher_free(a);
    rl_batcher_free(it);
    rl_tokdata_free(td);
    rl_dataset_free(ds);
}

/* The shuffle is uniform enough: over many epochs each example lands in
 * position 0 about equally often (chi-square, 9 dof, p ~ 1e-4 bound). */
static void test_shuffle_uniform(void **state) {
    (void)state;
    int counts[10] = {0};
    int64_t p[10];
    const int E = 5000;
    for (int e = 0; e < E; e++) {
        rl_data_epoch_order(3, e, 1, 10, p);
        counts[p[0]]++;
    }
    double chi = 0, expct = E / 10.0;
    for (int i = 0; i < 10; i++) chi += (counts[i] - expct) * (counts[i] - expct) / expct;
    if (chi > 33.7) fail_msg("chi-square %.1f over 9 dof", chi);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_demos_good),     cmocka_unit_test(test_demos_malformed),
        cmocka_unit_test(test_skip_bad_lines), cmocka_unit_test(test_open_errors),
        cmocka_unit_test(test_gzip),           cmocka_unit_test(test_hh_split),
        cmocka_unit_test(test_hh_load),        cmocka_unit_test(test_pku_good),
        cmocka_unit_test(test_pku_malformed),  cmocka_unit_test(test_auto_detect),
        cmocka_unit_test(test_rows_layout),    cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_pair_batches),   cmocka_unit_test(test_shuffle_and_cursor),
        cmocka_unit_test(test_group_by_length),
        cmocka_unit_test(test_shuffle_uniform),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
