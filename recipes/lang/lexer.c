/* recipes/lang/lexer.c - the recipe language's tokens: names, numbers (1, 0.5,
 * 1e-5), "strings", punctuation and operators; '#' starts a comment that
 * runs to the end of the line. Newlines are not tokens: a statement ends
 * where its expression cannot continue, so a long expression continues on
 * the next line when that line starts with an operator. Each token records
 * whether it is the first on its line, which the parser uses to recover
 * after a syntax error.
 */
#include "recipe_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

const char *rl_tk_text(rl_tk k) {
    switch (k) {
    case TK_EOF: return "end of file";
    case TK_NAME: return "a name";
    case TK_NUM: return "a number";
    case TK_STR: return "a string";
    case TK_LPAREN: return "'('";
    case TK_RPAREN: return "')'";
    case TK_LBRACE: return "'{'";
    case TK_RBRACE: return "'}'";
    case TK_LBRACK: return "'['";
    case TK_RBRACK: return "']'";
    case TK_COMMA: return "','";
    case TK_COLON: return "':'";
    case TK_ASSIGN: return "'='";
    case TK_DOT: return "'.'";
    case TK_PLUS: return "'+'";
    case TK_MINUS: return "'-'";
    case TK_STAR: return "'*'";
    case TK_SLASH: return "'/'";
    case TK_CARET: return "'^'";
    case TK_GT: return "'>'";
    case TK_GE: return "'>='";
    case TK_LT: return "'<'";
    case TK_LE: return "'<='";
    case TK_EQ: return "'=='";
    case TK_ARROW: return "'->'";
    }
    return "?";
}

/* Remembers that a line has a lexical error (the parser stays quiet there:
 * its complaint would only repeat the lexer's). */
static void lex_err_line(rl_recipe *r, const rl_source *src, int line) {
    if (src != &r->src) return;
    rl_grow(&r->lex_err_lines, &r->cap_lex_err_lines, r->n_lex_err_lines + 1, sizeof(int));
    r->lex_err_lines[r->n_lex_err_lines++] = line;
}

static rl_span rl_mkspan(const rl_source *src, int start, int end, int line, int col) {
    (void)src;
    rl_span s = {start, end, line, col};
    return s;
}

int rl_lex(rl_recipe *r, const rl_source *src, rl_token **out) {
    const char *s = src->text;
    const int n = src->len;
    rl_token *v = NULL;
    int nv = 0, cap = 0;
    int i = 0, line = 1, ls = 0; /* ls: offset where the current line starts */
    bool bol = true;
    int last_end = 0;            /* end of the last token (for EOF's position) */
    int last_line = 1, last_ls = 0;
    while (i < n) {
        char c = s[i];
        if (c == '\n') {
            i++, line++, ls = i, bol = true;
            continue;
        }
        if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
            i++;
            continue;
        }
        if (c == '#') {
            while (i < n && s[i] != '\n') i++;
            continue;
        }
        rl_token t = {0};
        t.bol = bol;
        bol = false;
        int st = i;
        int col = i - ls + 1;
        if (isalpha((unsigned char)c) || c == '_') {
            while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_')) i++;
            t.kind = TK_NAME;
            t.s = rl_rpool_strndup(&r->pool, s + st, (size_t)(i - st));
        } else if (isdigit((unsigned char)c)) {
            bool is_int = true, bad = false;
            while (i < n && isdigit((unsigned char)s[i])) i++;
            if (i < n && s[i] == '.') {
                is_int = false;
                i++;
                if (i >= n || !isdigit((unsigned char)s[i])) bad = true;
                while (i < n && isdigit((unsigned char)s[i])) i++;
            }
            if (!bad && i < n && (s[i] == 'e' || s[i] == 'E')) {
                is_int = false;
                i++;
                if (i < n && (s[i] == '+' || s[i] == '-')) i++;
                if (i >= n || !isdigit((unsigned char)s[i])) bad = true;
                while (i < n && isdigit((unsigned char)s[i])) i++;
            }
            /* a name glued to a number (2x) is a typo, not two tokens */
            while (i < n && (isalnum((unsigned char)s[i]) || s[i] == '_')) i++, bad = true;
            t.kind = TK_NUM;
            t.is_int = is_int;
            char buf[64];
            int len = i - st < 63 ? i - st : 63;
            memcpy(buf, s + st, (size_t)len);
            buf[len] = 0;
            errno = 0;
            t.num = strtod(buf, NULL);
            t.sp = rl_mkspan(src, st, i, line, col);
            if (bad) {
                lex_err_line(r, src, line);
                rl_diag_add(r, src, RL_DIAG_ERROR, t.sp,
                            "write numbers as 3, 0.5, 1e-5 or 2.5e3 (digits after '.' and after 'e')",
                            "malformed number '%.*s'", i - st > 40 ? 40 : i - st, s + st);
                t.num = 0;
            } else if (i - st > 63 || errno == ERANGE) {
                lex_err_line(r, src, line);
                rl_diag_add(r, src, RL_DIAG_ERROR, t.sp, NULL, "number '%.*s' is out of range",
                            i - st > 40 ? 40 : i - st, s + st);
                t.num = 0;
            }
        } else if (c == '"') {
            i++;
            while (i < n && s[i] != '"' && s[i] != '\n') i++;
            if (i >= n || s[i] != '"') {
                lex_err_line(r, src, line);
                rl_diag_add(r, src, RL_DIAG_ERROR, rl_mkspan(src, st, i, line, col),
                            "close the string with '\"' on the same line", "unterminated string");
                t.s = rl_rpool_strndup(&r->pool, s + st + 1, (size_t)(i - st - 1));
            } else {
                t.s = rl_rpool_strndup(&r->pool, s + st + 1, (size_t)(i - st - 1));
                i++;
            }
            t.kind = TK_STR;
        } else {
            char d = i + 1 < n ? s[i + 1] : 0;
            int len = 1;
            switch (c) {
            case '(': t.kind = TK_LPAREN; break;
            case ')': t.kind = TK_RPAREN; break;
            case '{': t.kind = TK_LBRACE; break;
            case '}': t.kind = TK_RBRACE; break;
            case '[': t.kind = TK_LBRACK; break;
            case ']': t.kind = TK_RBRACK; break;
            case ',': t.kind = TK_COMMA; break;
            case ':': t.kind = TK_COLON; break;
            case '.': t.kind = TK_DOT; break;
            case '+': t.kind = TK_PLUS; break;
            case '*': t.kind = TK_STAR; break;
            case '/': t.kind = TK_SLASH; break;
            case '^': t.kind = TK_CARET; break;
            case '-':
                if (d == '>') t.kind = TK_ARROW, len = 2;
                else t.kind = TK_MINUS;
                break;
            case '=':
                if (d == '=') t.kind = TK_EQ, len = 2;
                else t.kind = TK_ASSIGN;
                break;
            case '>':
                if (d == '=') t.kind = TK_GE, len = 2;
                else t.kind = TK_GT;
                break;
            case '<':
                if (d == '=') t.kind = TK_LE, len = 2;
                else t.kind = TK_LT;
                break;
            default: {
                const char *hint = NULL;
                if (c == '!' && d == '=') hint = "there is no '!='; write 1 - (a == b)";
                else if (c == '&' || c == '|')
                    hint = "there are no logical operators; multiply 0/1 values for 'and'";
                else if (c == ';') hint = "statements need no ';' (write one per line)";
                unsigned char uc = (unsigned char)c;
                lex_err_line(r, src, line);
                if (isprint(uc))
                    rl_diag_add(r, src, RL_DIAG_ERROR, rl_mkspan(src, st, st + 1, line, col), hint,
                                "unexpected character '%c'", c);
                else
                    rl_diag_add(r, src, RL_DIAG_ERROR, rl_mkspan(src, st, st + 1, line, col),
                                "recipes are plain text; non-ASCII bytes may appear only in comments",
                                "unexpected byte 0x%02x", uc);
                i++;
                continue;
            }
            }
            i += len;
        }
        if (t.sp.end == 0) t.sp = rl_mkspan(src, st, i, line, col);
        rl_grow(&v, &cap, nv + 1, sizeof(rl_token));
        v[nv++] = t;
        last_end = i, last_line = line, last_ls = ls;
    }
    rl_token e = {0};
    e.kind = TK_EOF;
    e.bol = true;
    e.sp = rl_mkspan(src, last_end, last_end, last_line, last_end - last_ls + 1);
    rl_grow(&v, &cap, nv + 1, sizeof(rl_token));
    v[nv++] = e;
    *out = v;
    return nv;
}
