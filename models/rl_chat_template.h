/* models/rl_chat_template.h - Hugging Face chat templates rendered in C, so that
 * conversational data (lists of {"role", "content"} messages) becomes the exact
 * text a published model was trained on, without Python.
 *
 * A chat template is the Jinja2 template in tokenizer_config.json's
 * "chat_template". This file implements the subset of Jinja2 that the
 * published templates use, interpreted (lexer -> AST -> evaluator), rendered
 * as transformers' apply_chat_template does: an ImmutableSandboxedEnvironment
 * with trim_blocks=True and lstrip_blocks=True, the loopcontrols extension and
 * the {% generation %} tag, globals raise_exception and strftime_now, and
 * transformers' own tojson (ensure_ascii=False, keys not sorted).
 *
 *   char err[512];
 *   rl_chat_template *t = rl_chat_template_load("models/qwen3/tokenizer_config.json",
 *                                               err, sizeof err);
 *   if (!t) { fprintf(stderr, "%s\n", err); ... }
 *   rl_chat_message m[] = {{"system", "Be brief."}, {"user", "Hi"}};
 *   char *text; size_t len;
 *   if (rl_chat_template_render(t, m, 2, true, &text, &len, err, sizeof err) != RL_OK) ...
 *   free(text);
 *   rl_chat_template_free(t);
 *
 * Supported (everything else is refused when the template is parsed, with an
 * error naming the construct and its line:column):
 *   - text, {{ expr }}, {# comments #}, whitespace control {%- -%} {{- -}} and
 *     {%+ +%}; trim_blocks and lstrip_blocks as transformers sets them; one
 *     trailing newline of the template is dropped and \r\n, \r become \n (as
 *     Jinja2 does by default);
 *   - tags: if / elif / else / endif; for NAMES in EXPR [if COND] ... [else]
 *     endfor (NAMES: one name or a, b unpacking); set NAME = EXPR;
 *     set NAME.ATTR = EXPR (NAME must be a namespace); break; continue;
 *     generation / endgeneration (renders its body, as transformers does);
 *   - loop.index, index0, revindex, revindex0, first, last, length, previtem,
 *     nextitem, depth, depth0; each iteration has its own scope (a set inside
 *     a loop is not seen after it: use a namespace), as in Jinja2;
 *   - literals: 'strings' "strings" (Python escapes), integers, floats, true
 *     false none (and True False None), [lists], (tuples), {dicts};
 *   - operators, by Jinja2's precedence: a if c else b; or; and; not;
 *     == != < > <= >= in, not in (chained as in Python); + -; ~; * / // %;
 *     **; unary - +; x.attr, x[key], x[a:b:c] (code points for strings);
 *     filters x|f(...) and tests x is [not] t(...);
 *   - filters: trim, length, count, tojson(indent=), string, upper, lower,
 *     default/d(value, boolean), first, last, join(sep), items, list,
 *     selectattr / rejectattr('attr.path' [, test [, arg]]) (these two give a
 *     list where Jinja2 gives a generator: the same once iterated or |list'ed);
 *   - tests: defined, undefined, none, string, mapping, iterable, sequence,
 *     number, integer, float, boolean, true, false, odd, even, eq/equalto,
 *     ne (and == / != as selectattr's test names);
 *   - methods: str.startswith, endswith (a string or a tuple of them), strip,
 *     lstrip, rstrip (optional chars), split(sep, maxsplit), replace(old, new,
 *     count), upper, lower; dict.items, keys, values, get(key, default);
 *   - functions: namespace(k=v, ...), raise_exception(msg), strftime_now(fmt),
 *     range(...).
 * Refused at parse time: every other tag (macro, call, filter blocks,
 * include, import, from, extends, block, raw, with, autoescape, do, block set
 * {% set x %}...{% endset %}, tuple assignment, recursive loops), every other
 * filter, test, function or method (loop.cycle and loop.changed included),
 * calling anything but those functions and methods (a function kept in a
 * variable, the result of a filter), and *args / **kwargs in calls. Refused
 * when rendering: printf-style '%' on a string.
 *
 * Values follow Python and Jinja2: undefined names are Jinja2's default
 * Undefined (false, render as "", length 0, iterate as empty, == only to
 * another undefined; attribute or item access on one, arithmetic with one
 * and calling a method of one are errors with Jinja2's message, e.g.
 * "'x' is undefined"); a missing key or attribute of a defined value, or an
 * index out of range, gives such an undefined. Strings render as themselves,
 * none as "None", booleans as "True"/"False", floats as Python's repr, lists
 * and dicts as Python's repr. Known differences from Python: upper/lower map
 * code points one to one (utf8proc), so "ß"|upper is "ß", not "SS"; integers
 * are 64-bit (overflow is an error); repr escapes only ASCII controls and
 * U+0080..U+00A0, U+00AD (Python escapes every non-printable code point).
 *
 * Variables a render sees: messages (a list of dicts with "role" and
 * "content", content none when NULL), add_generation_prompt, tools and
 * documents (none: tool calling is not supported here), the special tokens
 * loaded from tokenizer_config.json (bos_token, eos_token, pad_token,
 * unk_token, each only when set there, as transformers' special_tokens_map),
 * and whatever rl_chat_template_set_string / _set_bool added (for example
 * enable_thinking=false for Qwen3, or date_string). strftime_now formats the
 * time given to rl_chat_template_set_time, or the local time when none.
 *
 * Errors: rl_chat_template_parse and _load return NULL with a message naming
 * the origin, line and column ("cfg.json:chat_template:3:12: unsupported tag
 * 'macro' ..."). Rendering returns RL_ERR_ARG for a template that fails on
 * the conversation (raise_exception's message, an undefined used wrongly, a
 * type error), with origin:line:column, and RL_ERR_MEMORY when out of memory.
 *
 * A template is immutable while rendering: render may run from several
 * threads at once on the same template; the setters may not.
 */
#ifndef RL_CHAT_TEMPLATE_H
#define RL_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "rl_engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rl_chat_template rl_chat_template;

/* One message of a conversation. content may be NULL (the template sees none). */
typedef struct {
    const char *role;
    const char *content;
} rl_chat_message;

/* Parses template source src[0..len). origin names it in error messages
 * (NULL: "<template>"). NULL with a message in err (which may be NULL) when
 * the template is malformed or uses a construct outside the subset. */
rl_chat_template *rl_chat_template_parse(const char *src, size_t len, const char *origin,
                                         char *err, size_t errlen);

/* Reads a Hugging Face tokenizer_config.json: "chat_template" as a string, or
 * as a list of {"name", "template"} objects, of which "default" is used; when
 * the key is missing, chat_template.jinja beside the file (newer
 * transformers save it there). Also reads bos_token, eos_token, pad_token
 * and unk_token, each a string or an {"content": ...} object (null: unset). */
rl_chat_template *rl_chat_template_load(const char *tokenizer_config_json, char *err,
                                        size_t errlen);

void rl_chat_template_free(rl_chat_template *t);

/* Sets a variable every render sees (a string; NULL removes it, so the
 * template sees it undefined). "messages" and "add_generation_prompt" are
 * the render's own: RL_ERR_ARG. RL_ERR_MEMORY when out of memory. */
rl_status rl_chat_template_set_string(rl_chat_template *t, const char *name, const char *value);
/* The same with a boolean (enable_thinking = false, ...). */
rl_status rl_chat_template_set_bool(rl_chat_template *t, const char *name, bool value);
/* The time strftime_now formats; NULL: the local time at each render. */
void rl_chat_template_set_time(rl_chat_template *t, const struct tm *now);

/* The template's source after newline normalisation (for messages, hashing). */
const char *rl_chat_template_source(const rl_chat_template *t, size_t *len);

/* Renders msgs[0..n) into a malloc'ed, NUL-terminated *out of *outlen bytes
 * (the caller frees it). On failure *out is NULL and err holds the message. */
rl_status rl_chat_template_render(const rl_chat_template *t, const rl_chat_message *msgs, int n,
                                  bool add_generation_prompt, char **out, size_t *outlen,
                                  char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
