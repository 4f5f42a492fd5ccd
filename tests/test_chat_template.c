/* tests/test_chat_template.c - the chat template renderer (models/chat_template.c)
 * against Python's jinja2: every conversation of tests/fixtures/chat/<name>/
 * expected.json (written by tools/make_chat_template_fixture.py) must render
 * byte-identical to what jinja2 rendered, or fail where jinja2 failed, with
 * its message. Then the error paths: raise_exception, constructs outside the
 * subset, malformed templates (every prefix of a real one), misuse of the API.
 */
#include "rl_test.h"

#include <jansson.h>

#include "rl_chat_template.h"

#define FIXTURES RLHF_SOURCE_DIR "/tests/fixtures/chat"

static const char *const TEMPLATES[] = {"qwen3",   "qwen2_5", "llama3", "llama3_1",
                                        "chatml_minimal", "smollm2", "probe"};

/* Prints where got and want first differ. */
static void show_diff(const char *what, const char *got, size_t glen, const char *want, size_t wlen) {
    size_t i = 0;
    while (i < glen && i < wlen && got[i] == want[i]) i++;
    size_t from = i > 40 ? i - 40 : 0;
    fprintf(stderr, "%s: differs at byte %zu (got %zu bytes, want %zu)\n  got:  '%.*s'\n  want: '%.*s'\n", what, i,
            glen, wlen, (int)((glen > from ? glen - from : 0) < 80 ? glen - from : 80), got + from,
            (int)((wlen > from ? wlen - from : 0) < 80 ? wlen - from : 80), want + from);
}

/* Renders every case of one fixture; returns the number that agree. */
static int run_fixture(const char *name, int *total) {
    char path[1024], err[1024];
    snprintf(path, sizeof path, "%s/%s/tokenizer_config.json", FIXTURES, name);
    rl_chat_template *t = rl_chat_template_load(path, err, sizeof err);
    if (!t) fail_msg("%s: %s", name, err);
    snprintf(path, sizeof path, "%s/%s/expected.json", FIXTURES, name);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) fail_msg("%s:%d: %s", path, je.line, je.text);
    json_t *now = json_object_get(root, "now");
    struct tm tm = {0};
    tm.tm_year = (int)json_integer_value(json_array_get(now, 0)) - 1900;
    tm.tm_mon = (int)json_integer_value(json_array_get(now, 1)) - 1;
    tm.tm_mday = (int)json_integer_value(json_array_get(now, 2));
    tm.tm_hour = (int)json_integer_value(json_array_get(now, 3));
    tm.tm_min = (int)json_integer_value(json_array_get(now, 4));
    tm.tm_sec = (int)json_integer_value(json_array_get(now, 5));
    time_t when = timegm(&tm); /* fills in the weekday and day of the year */
    gmtime_r(&when, &tm);
    rl_chat_template_set_time(t, &tm);

    json_t *cases = json_object_get(root, "cases"), *c;
    size_t ci;
    int ok = 0;
    *total = (int)json_array_size(cases);
    json_array_foreach(cases, ci, c) {
        const char *cname = json_string_value(json_object_get(c, "name"));
        json_t *msgs = json_object_get(c, "messages");
        int n = (int)json_array_size(msgs);
        rl_chat_message *m = calloc((size_t)(n ? n : 1), sizeof *m);
        assert_non_null(m);
        for (int i = 0; i < n; i++) {
            json_t *mi = json_array_get(msgs, (size_t)i);
            m[i].role = json_string_value(json_object_get(mi, "role"));
            m[i].content = json_string_value(json_object_get(mi, "content")); /* NULL for null */
        }
        json_t *vars = json_object_get(c, "vars"), *vv;
        const char *key;
        json_object_foreach(vars, key, vv) {
            if (json_is_boolean(vv)) assert_int_equal(rl_chat_template_set_bool(t, key, json_is_true(vv)), RL_OK);
            else assert_int_equal(rl_chat_template_set_string(t, key, json_string_value(vv)), RL_OK);
        }
        char *out = NULL;
        size_t len = 0;
        rl_status st = rl_chat_template_render(t, m, n, json_is_true(json_object_get(c, "add_generation_prompt")),
                                               &out, &len, err, sizeof err);
        json_t *want = json_object_get(c, "expected");
        char what[256];
        snprintf(what, sizeof what, "%s/%s", name, cname);
        if (want) {
            if (st != RL_OK) fprintf(stderr, "%s: failed: %s\n", what, err);
            else if (len != json_string_length(want) || memcmp(out, json_string_value(want), len))
                show_diff(what, out, len, json_string_value(want), json_string_length(want));
            else ok++;
        } else {
            const char *jerr = json_string_value(json_object_get(c, "error"));
            if (st == RL_OK) fprintf(stderr, "%s: rendered, but jinja2 failed with: %s\n", what, jerr);
            else if (!strstr(err, jerr)) fprintf(stderr, "%s: error '%s' lacks jinja2's '%s'\n", what, err, jerr);
            else ok++;
            assert_null(out);
        }
        free(out);
        free(m);
        json_object_foreach(vars, key, vv) assert_int_equal(rl_chat_template_set_string(t, key, NULL), RL_OK);
    }
    json_decref(root);
    rl_chat_template_free(t);
    return ok;
}

static void test_fixtures_match_jinja2(void **state) {
    (void)state;
    int all_ok = 1;
    for (size_t i = 0; i < sizeof TEMPLATES / sizeof *TEMPLATES; i++) {
        int total = 0, ok = run_fixture(TEMPLATES[i], &total);
        printf("chat template %s: %d/%d conversations agree with jinja2 (byte-identical output or the same error)\n",
               TEMPLATES[i], ok, total);
        all_ok &= ok == total && total > 0;
    }
    assert_true(all_ok);
}

/* One-line templates over the expression language (snippets.json): the same
 * output as jinja2, or an error with jinja2's message where it failed. */
static void test_snippets_match_jinja2(void **state) {
    (void)state;
    json_error_t je;
    json_t *root = json_load_file(FIXTURES "/snippets.json", 0, &je);
    if (!root) fail_msg("snippets.json:%d: %s", je.line, je.text);
    json_t *cases = json_object_get(root, "cases"), *c;
    size_t i;
    int ok = 0, total = (int)json_array_size(cases);
    rl_chat_message m = {"user", "hi"};
    json_array_foreach(cases, i, c) {
        const char *src = json_string_value(json_object_get(c, "template"));
        json_t *want = json_object_get(c, "expected");
        const char *jerr = json_string_value(json_object_get(c, "error"));
        char err[1024], *out = NULL;
        size_t len = 0;
        rl_chat_template *t = rl_chat_template_parse(src, strlen(src), "snippet", err, sizeof err);
        rl_status st = t ? rl_chat_template_render(t, &m, 1, true, &out, &len, err, sizeof err) : RL_ERR_ARG;
        rl_chat_template_free(t);
        if (want) {
            if (st != RL_OK) fprintf(stderr, "snippet %zu '%s': failed: %s\n", i, src, err);
            else if (len != json_string_length(want) || memcmp(out, json_string_value(want), len))
                show_diff(src, out, len, json_string_value(want), json_string_length(want));
            else ok++;
        } else if (st == RL_OK) {
            fprintf(stderr, "snippet %zu '%s': rendered '%s', but jinja2 failed with: %s\n", i, src, out, jerr);
        } else if (!strstr(err, jerr)) {
            fprintf(stderr, "snippet %zu '%s': error '%s' lacks jinja2's '%s'\n", i, src, err, jerr);
        } else {
            ok++;
        }
        free(out);
    }
    printf("chat template snippets: %d/%d agree with jinja2\n", ok, total);
    json_decref(root);
    assert_int_equal(ok, total);
}

/* Parses src (expected to succeed) and renders one user message. */
static rl_status render1(const char *src, const char *content, char **out, char *err, size_t errlen) {
    rl_chat_template *t = rl_chat_template_parse(src, strlen(src), "t.jinja", err, errlen);
    if (!t) fail_msg("parse failed: %s", err);
    rl_chat_message m = {"user", content};
    size_t len;
    rl_status st = rl_chat_template_render(t, &m, 1, true, out, &len, err, errlen);
    rl_chat_template_free(t);
    return st;
}

static void assert_renders(const char *src, const char *want) {
    char err[512], *out = NULL;
    rl_status st = render1(src, "hi", &out, err, sizeof err);
    if (st != RL_OK) fail_msg("'%s': %s", src, err);
    if (strcmp(out, want)) fail_msg("'%s' rendered '%s', want '%s'", src, out, want);
    free(out);
}

static void assert_render_fails(const char *src, const char *needle) {
    char err[512], *out = (char *)1;
    rl_status st = render1(src, "hi", &out, err, sizeof err);
    if (st == RL_OK) fail_msg("'%s' rendered '%s', want an error with '%s'", src, out, needle);
    assert_int_equal(st, RL_ERR_ARG);
    assert_null(out);
    if (!strstr(err, needle)) fail_msg("'%s': error '%s' lacks '%s'", src, err, needle);
}

/* Expected outputs from jinja2 3.1.6 with trim_blocks and lstrip_blocks. */
static void test_semantics(void **state) {
    (void)state;
    assert_renders("{% for i in [1,2,3] %}[{{ x }}]{% set x = i %}{% endfor %}|{{ x }}", "[][][]|");
    assert_renders("{% set x = 5 %}{% for i in [1,2,3] %}[{{ x }}]{% set x = i %}{% endfor %}|{{ x }}", "[5][5][5]|5");
    assert_renders("{% for i in [1,2] %}{% for j in [3] %}{% set i = 9 %}{% endfor %}{{ i }}{% endfor %}", "12");
    assert_renders("{{ 'a' in u }}{{ u|length }}{{ u is iterable }}{{ u ~ 'x' }}{{ u == u }}", "False0TruexTrue");
    assert_renders("{{ 1/2 }} {{ 4/2 }} {{ 7//2 }} {{ -7 % 3 }} {{ 2**10 }} {{ 1e20 }} {{ 1.5e-7 }} {{ 0.1+0.2 }} "
                   "{{ 1e16 }} {{ 123456789012345678.0 }}",
                   "0.5 2.0 3 2 1024 1e+20 1.5e-07 0.30000000000000004 1e+16 1.2345678901234568e+17");
    assert_renders("{{ [1,'a',none,true,1.5,{'k':'v'}] }}", "[1, 'a', None, True, 1.5, {'k': 'v'}]");
    assert_renders("{{ ('a',) }}{{ (1,2) }}", "('a',)(1, 2)");
    assert_renders("{{ \"it's\" }}{{ ['it\\'s', 'x\"y', 'a\\nb'] }}", "it's[\"it's\", 'x\"y', 'a\\nb']");
    assert_renders("{{ 'abc'[::-1] }}{{ [1,2,3][1:] }}{{ 'h\xc3\xa9llo'[1] }}{{ 'h\xc3\xa9llo'|length }}",
                   "cba[2, 3]\xc3\xa9" "5");
    assert_renders("{{ 'a b  c'.split() }}{{ 'a,b'.split(',') }}{{ 'ab'.replace('', '-') }}",
                   "['a', 'b', 'c']['a', 'b']-a-b-");
    assert_renders("  {% if true %}\n  x\n  {% endif %}\n  y  {#c#}\nz", "  x\n  y  z");
    assert_renders("{{ loop }}{% for x in [] %}a{% else %}b{% endfor %}", "b");
    assert_renders("{{ [1,2] | first }}{{ 'abc'|last }}{{ [1,2]|join('-') }}{{ {'a':1}|items|list }}", "1c1-2[('a', 1)]");
    assert_renders("{{ 'x' if false }}|{{ ('x' if false) is defined }}", "|False");
    assert_renders("{{ ns }}{% set ns = namespace(a=1) %}{{ ns.a }}{% set ns.a = 2 %}{{ ns.a }}{{ ns }}",
                   "12<Namespace {'a': 2}>");
    assert_renders("{{ 'abc' < 'abd' }}{{ [1,2] < [1,3] }}{{ 3 > 2 > 1 }}", "TrueTrueTrue");
    assert_renders("{{ none.x }}{{ 'a'.x }}|{{ [1,2,3][-1] }}{{ 'abc'[5] }}|", "|3|");
    assert_renders("{% for m in [1,2,3] if m > 1 %}{{ loop.index }}/{{ loop.length }}{{ loop.first }}{% endfor %}",
                   "1/2True2/2False");
    assert_renders("{% for a in [1,2,3] %}{{ loop.previtem }},{{ loop.nextitem }};{% endfor %}", ",2;1,3;2,;");
    assert_renders("{{ 'a' ~ 1 ~ none ~ true }}{{ 10 % 3 }}{{ 2.5 % 1 }}{{ 'ab' * 2 }}", "a1NoneTrue10.5abab");
    assert_renders("{{ true }}{{ True }}{{ none }}{{ None }}", "TrueTrueNoneNone");
    assert_renders("{%- if x -%}\n  a\n{%- else +%}\n  b  {{- ' c' -}}  \n d{%+ endif %}", "\n  b cd");
    assert_renders("  {%+ if true %}x{% endif %}\n  {#- c #}  y", "  x  y");
    assert_renders("{{ 1 -}}  \n {{ 2 }}\n{{- 3 }}", "123");
    assert_renders("a\r\nb{# trailing newline dropped #}\n", "a\nb");
    assert_renders("{{ messages[0].content }}{{ add_generation_prompt }}{{ tools }}", "hiTrueNone");
    assert_render_fails("{{ u.x }}", "t.jinja:1:5: 'u' is undefined");
    assert_render_fails("{{ [1][5].x }}", "list object has no element 5");
    assert_render_fails("{{ {'a':1}.b.c }}", "'dict object' has no attribute 'b'");
    assert_render_fails("{{ u + 'x' }}", "'u' is undefined");
    assert_render_fails("{{ - 'a' }}", "bad operand type for unary -: 'str'");
    assert_render_fails("{{ (none).startswith('a') }}", "'None' has no attribute 'startswith'");
    assert_render_fails("{{ 5 // 0 }}", "integer division or modulo by zero");
    assert_render_fails("{% set x = 1 %}{% set x.a = 2 %}", "cannot assign attribute on non-namespace object");
    assert_render_fails("{{ 'a' + 1 }}", "can only concatenate str (not \"int\") to str");
    assert_render_fails("{{ 9223372036854775807 + 1 }}", "integer overflow");
}

static void test_raise_exception(void **state) {
    (void)state;
    assert_render_fails("{%- if messages[0].role != 'system' %}\n"
                        "  {{- raise_exception('Conversation roles must start with system, not ' ~ messages[0].role) }}\n"
                        "{%- endif %}",
                        "t.jinja:2:7: raise_exception: Conversation roles must start with system, not user");
}

static void test_strftime_and_vars(void **state) {
    (void)state;
    const char *src = "{{ strftime_now('%Y-%m-%d %a') }}|{{ date_string | default('none') }}|{{ enable_thinking }}";
    char err[256], *out;
    size_t len;
    rl_chat_template *t = rl_chat_template_parse(src, strlen(src), NULL, err, sizeof err);
    assert_non_null(t);
    struct tm tm = {.tm_year = 124, .tm_mon = 6, .tm_mday = 26};
    time_t when = timegm(&tm);
    gmtime_r(&when, &tm);
    rl_chat_template_set_time(t, &tm);
    assert_int_equal(rl_chat_template_set_string(t, "date_string", "26 Jul 2024"), RL_OK);
    assert_int_equal(rl_chat_template_set_bool(t, "enable_thinking", false), RL_OK);
    assert_int_equal(rl_chat_template_set_string(t, "messages", "x"), RL_ERR_ARG);
    assert_int_equal(rl_chat_template_render(t, NULL, 0, false, &out, &len, err, sizeof err), RL_OK);
    assert_string_equal(out, "2024-07-26 Fri|26 Jul 2024|False");
    assert_int_equal(len, strlen(out));
    free(out);
    assert_int_equal(rl_chat_template_set_string(t, "enable_thinking", NULL), RL_OK);
    assert_int_equal(rl_chat_template_render(t, NULL, 0, false, &out, &len, err, sizeof err), RL_OK);
    assert_string_equal(out, "2024-07-26 Fri|26 Jul 2024|");
    free(out);
    rl_chat_message bad = {NULL, "x"};
    assert_int_equal(rl_chat_template_render(t, &bad, 1, false, &out, &len, err, sizeof err), RL_ERR_ARG);
    assert_null(out);
    assert_contains(err, "no role");
    rl_chat_template_free(t);
}

/* Parsing must fail with the message (and its line:column). */
static void assert_parse_fails(const char *src, const char *needle) {
    char err[512];
    rl_chat_template *t = rl_chat_template_parse(src, strlen(src), "t.jinja", err, sizeof err);
    if (t) {
        rl_chat_template_free(t);
        fail_msg("'%s' parsed, want an error with '%s'", src, needle);
    }
    if (!strstr(err, needle)) fail_msg("'%s': error '%s' lacks '%s'", src, err, needle);
}

static void test_unsupported_constructs(void **state) {
    (void)state;
    assert_parse_fails("{% macro m() %}x{% endmacro %}", "t.jinja:1:4: unsupported tag 'macro'");
    assert_parse_fails("a\n  {% include 'other.jinja' %}", "t.jinja:2:6: unsupported tag 'include'");
    assert_parse_fails("{% extends 'base' %}", "1:4: unsupported tag 'extends'");
    assert_parse_fails("{% call m() %}{% endcall %}", "1:4: unsupported tag 'call'");
    assert_parse_fails("{% filter upper %}x{% endfilter %}", "1:4: unsupported tag 'filter'");
    assert_parse_fails("{% import 'x' as y %}", "unsupported tag 'import'");
    assert_parse_fails("{% block b %}{% endblock %}", "unsupported tag 'block'");
    assert_parse_fails("x{% raw %}{{ y }}{% endraw %}", "1:2: unsupported tag 'raw'");
    assert_parse_fails("{% with a = 1 %}{% endwith %}", "unsupported tag 'with'");
    assert_parse_fails("{% frobnicate %}", "1:4: unknown tag 'frobnicate'");
    assert_parse_fails("{{ x | wordcount }}", "t.jinja:1:8: unsupported filter 'wordcount'");
    assert_parse_fails("{{ x | map(attribute='a') }}", "unsupported filter 'map'");
    assert_parse_fails("{{ x is == 3 }}", "expected a test name after 'is', got '=='");
    assert_parse_fails("{{ x is divisibleby(3) }}", "1:9: unsupported test 'divisibleby'");
    assert_parse_fails("{{ x.append(1) }}", "1:5: unsupported method 'append'");
    assert_parse_fails("{{ lipsum() }}", "1:4: unsupported function 'lipsum'");
    assert_parse_fails("{{ x()() }}", "unsupported function 'x'");
    assert_parse_fails("{{ f(*a) }}", "unsupported function 'f'");
    assert_parse_fails("{{ range(*a) }}", "*args and **kwargs in calls are not supported");
    assert_parse_fails("{% for x in y recursive %}{% endfor %}", "recursive loops");
    assert_parse_fails("{% set x %}a{% endset %}", "block set");
    assert_parse_fails("{% set a, b = 1, 2 %}", "tuple assignment");
    assert_parse_fails("{{ 'a\\N{BULLET}' }}", "\\N{...} escapes are not supported");
}

static void test_malformed_templates(void **state) {
    (void)state;
    assert_parse_fails("{% if x %}a", "t.jinja:1:4: unclosed 'if' tag: expected '{% endif %}'");
    assert_parse_fails("{% for x in y %}a{% if z %}{% endfor %}", "unexpected 'endfor'");
    assert_parse_fails("x {{ y ", "t.jinja:1:3: unclosed '{{': expected '}}'");
    assert_parse_fails("{% if x ", "unclosed '{%': expected '%}'");
    assert_parse_fails("{# never closed", "1:1: unclosed comment");
    assert_parse_fails("{{ 'abc }}", "1:4: unterminated string literal");
    assert_parse_fails("{% endif %}", "1:4: unexpected 'endif'");
    assert_parse_fails("{% else %}", "unexpected 'else'");
    assert_parse_fails("{% for x %}{% endfor %}", "1:10: expected 'in' in a for loop");
    assert_parse_fails("{{ 1 + }}", "1:8: expected an expression, got '}}'");
    assert_parse_fails("{{ }}", "expected an expression");
    assert_parse_fails("{% %}", "expected a tag name");
    assert_parse_fails("{{ x[ }}", "1:7: unexpected '}', expected ']'");
    assert_parse_fails("{{ (1 }}", "expected ')'");
    assert_parse_fails("{{ [1, 2) }}", "unexpected ')', expected ']'");
    assert_parse_fails("{{ x ] }}", "unexpected ']'");
    assert_parse_fails("{{ {1: }}", "1:9: unexpected '}'");
    assert_parse_fails("{{ a ! b }}", "unexpected character '!'");
    assert_parse_fails("{{ a b }}", "expected '}}', got 'b'");
    assert_parse_fails("{% break %}", "'break' outside a for loop");
    assert_parse_fails("{% set = 1 %}", "expected a variable name");
    assert_parse_fails("{% set x 1 %}", "expected '='");
    assert_parse_fails("line 1\nline 2\n   {{ x | nope }}", "t.jinja:3:11: unsupported filter 'nope'");
    assert_parse_fails("{{ x is }}", "expected a test name");
    assert_parse_fails("{{ x | }}", "expected a filter name");
    assert_parse_fails("{{ 99999999999999999999 }}", "integer literal too large");
    assert_parse_fails("{{ '\\x4' }}", "truncated \\x escape");
}

/* Hostile nesting fails with a message instead of overflowing the stack. */
static void test_deep_nesting(void **state) {
    (void)state;
    char err[512];
    size_t n = 100000;
    char *src = malloc(n * 20 + 64);
    assert_non_null(src);
    const char *pieces[] = {"not ", "- ", "{% if 1 %}", "(", "[", "{% for x in y %}", "a if b else "};
    for (size_t k = 0; k < sizeof pieces / sizeof *pieces; k++) {
        size_t len = 0;
        int block = pieces[k][0] == '{';
        if (!block) len += (size_t)sprintf(src + len, "{{ ");
        for (size_t i = 0; i < n; i++) len += (size_t)sprintf(src + len, "%s", pieces[k]);
        len += (size_t)sprintf(src + len, block ? "x" : "1 }}");
        rl_chat_template *t = rl_chat_template_parse(src, len, "deep", err, sizeof err);
        if (t) {
            rl_chat_template_free(t);
            fail_msg("nesting '%s' %zu deep parsed", pieces[k], n);
        }
        if (!strstr(err, "nested too deeply")) fail_msg("nesting '%s': %s", pieces[k], err);
    }
    /* a left-deep chain parses in a loop but must not recurse without bound when evaluated */
    size_t len = (size_t)sprintf(src, "{{ 1");
    for (size_t i = 0; i < n; i++) len += (size_t)sprintf(src + len, " + 1");
    len += (size_t)sprintf(src + len, " }}");
    rl_chat_template *t = rl_chat_template_parse(src, len, "chain", err, sizeof err);
    assert_non_null(t);
    char *out;
    size_t olen;
    assert_int_equal(rl_chat_template_render(t, NULL, 0, false, &out, &olen, err, sizeof err), RL_ERR_ARG);
    assert_contains(err, "nested too deeply");
    rl_chat_template_free(t);
    free(src);
    assert_render_fails("{% set ns = namespace(a=1) %}{% set ns.a = ns %}{{ ns }}", "nested too deeply to print");
    assert_render_fails("{% set ns = namespace(a=1) %}{% set ns.a = [ns] %}{{ ns.a }}", "nested too deeply to print");
    assert_render_fails("{% set ns = namespace(a=1) %}{{ [ns] | tojson }}",
                        "Object of type Namespace is not JSON serializable");
}

/* Deleting, doubling or replacing a byte anywhere in the Qwen3 template never
 * crashes: each variant parses or is refused with a message. */
static void test_mutations_never_crash(void **state) {
    (void)state;
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/qwen3/tokenizer_config.json", FIXTURES);
    json_t *root = json_load_file(path, 0, NULL);
    assert_non_null(root);
    const char *src = json_string_value(json_object_get(root, "chat_template"));
    size_t n = strlen(src);
    char *buf = malloc(n + 2);
    assert_non_null(buf);
    rl_chat_message m[] = {{"user", "q"}, {"assistant", "<think>\nr\n</think>\n\na"}, {"user", "again"}};
    int parsed = 0, refused = 0;
    const char repl[] = "{}%#-'\"()[]|.~ ";
    for (size_t i = 0; i < n; i++) {
        for (int kind = 0; kind < 3; kind++) {
            size_t len;
            if (kind == 0) { /* delete */
                memcpy(buf, src, i);
                memcpy(buf + i, src + i + 1, n - i - 1);
                len = n - 1;
            } else if (kind == 1) { /* double */
                memcpy(buf, src, i + 1);
                memcpy(buf + i + 1, src + i, n - i);
                len = n + 1;
            } else { /* replace */
                memcpy(buf, src, n);
                buf[i] = repl[i % (sizeof repl - 1)];
                len = n;
            }
            rl_chat_template *t = rl_chat_template_parse(buf, len, "mut", err, sizeof err);
            if (!t) {
                assert_true(strncmp(err, "mut:", 4) == 0);
                refused++;
                continue;
            }
            parsed++;
            char *out;
            size_t olen;
            if (rl_chat_template_render(t, m, 3, true, &out, &olen, err, sizeof err) == RL_OK) free(out);
            else assert_true(err[0] != 0);
            rl_chat_template_free(t);
        }
    }
    printf("qwen3 one-byte mutations: %d parse, %d refused with a message\n", parsed, refused);
    free(buf);
    json_decref(root);
}

/* Every prefix of the Qwen3 template (and a few mangled variants) either
 * parses or fails with a message; those that parse render or fail cleanly. */
static void test_prefixes_never_crash(void **state) {
    (void)state;
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/qwen3/tokenizer_config.json", FIXTURES);
    json_t *root = json_load_file(path, 0, NULL);
    assert_non_null(root);
    const char *src = json_string_value(json_object_get(root, "chat_template"));
    size_t n = strlen(src);
    rl_chat_message m[] = {{"system", "s"}, {"user", "q"}, {"assistant", "<think>\nr\n</think>\n\na"}};
    int parsed = 0, failed = 0;
    for (size_t k = 0; k <= n; k++) {
        err[0] = 0;
        rl_chat_template *t = rl_chat_template_parse(src, k, "qwen3", err, sizeof err);
        if (!t) {
            assert_true(strncmp(err, "qwen3:", 6) == 0);
            failed++;
            continue;
        }
        parsed++;
        char *out;
        size_t len;
        rl_status st = rl_chat_template_render(t, m, 3, true, &out, &len, err, sizeof err);
        if (st == RL_OK) free(out);
        else assert_true(err[0] != 0);
        rl_chat_template_free(t);
    }
    printf("qwen3 prefixes: %d parse, %d refused with a message\n", parsed, failed);
    assert_true(parsed > 0 && failed > 0);
    json_decref(root);
}

static void test_load_errors(void **state) {
    (void)state;
    char err[512], path[1024];
    assert_null(rl_chat_template_load("/nonexistent/tokenizer_config.json", err, sizeof err));
    assert_contains(err, "/nonexistent/tokenizer_config.json");
    snprintf(path, sizeof path, "%s/chat_cfg_nodefault.json", RLHF_TEST_TMP);
    rl_test_write_file(path, "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"x\"}]}");
    assert_null(rl_chat_template_load(path, err, sizeof err));
    assert_contains(err, "none is named \"default\"");
    rl_test_write_file(path, "{\"chat_template\": \"{% if x %}\", \"eos_token\": \"</s>\"}");
    assert_null(rl_chat_template_load(path, err, sizeof err));
    assert_contains(err, "chat_cfg_nodefault.json:chat_template:1:4: unclosed 'if' tag");
    rl_test_write_file(path, "{\"chat_template\": \"{{ eos_token }}\", \"eos_token\": 7}");
    assert_null(rl_chat_template_load(path, err, sizeof err));
    assert_contains(err, "\"eos_token\" must be a string");
    rl_test_write_file(path, "{\"chat_template\": 5}");
    assert_null(rl_chat_template_load(path, err, sizeof err));
    assert_contains(err, "must be a string or a list");
    /* no chat_template key: chat_template.jinja beside the config */
    char jpath[1024];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", RLHF_TEST_TMP);
    snprintf(jpath, sizeof jpath, "%s/chat_template.jinja", RLHF_TEST_TMP);
    rl_test_write_file(path, "{\"bos_token\": {\"content\": \"<s>\"}, \"eos_token\": null}");
    rl_test_write_file(jpath, "{{ bos_token }}{{ eos_token is defined }}\n");
    rl_chat_template *t = rl_chat_template_load(path, err, sizeof err);
    if (!t) fail_msg("%s", err);
    char *out;
    size_t len;
    assert_int_equal(rl_chat_template_render(t, NULL, 0, false, &out, &len, err, sizeof err), RL_OK);
    assert_string_equal(out, "<s>False");
    free(out);
    size_t slen;
    assert_string_equal(rl_chat_template_source(t, &slen), "{{ bos_token }}{{ eos_token is defined }}");
    rl_chat_template_free(t);
    unlink(jpath);
    unlink(path);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_match_jinja2),  cmocka_unit_test(test_snippets_match_jinja2),
        cmocka_unit_test(test_semantics),
        cmocka_unit_test(test_raise_exception),        cmocka_unit_test(test_strftime_and_vars),
        cmocka_unit_test(test_unsupported_constructs), cmocka_unit_test(test_malformed_templates),
        cmocka_unit_test(test_prefixes_never_crash),   cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_deep_nesting),           cmocka_unit_test(test_mutations_never_crash),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
