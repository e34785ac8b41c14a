/*
 * promql_lex.c — the PromQL lexer: query text in, typed tokens with byte
 * positions out; and the lexical values (strings, numbers, durations).
 *
 * The lexer follows Prometheus' lex.go state by state, because the error a
 * user sees for a malformed query is mostly decided here, and a user moving
 * between Prometheus and Tally should read the same message at the same
 * column. Like Prometheus it is contextual:
 *
 *   - Inside braces `{...}` only identifiers, strings, ',' and the four
 *     matcher operators exist; keywords are plain identifiers there, so
 *     `{by="x"}` matches a label named "by", and `:` is an error.
 *   - Right after `[` comes a duration: a bare number there is "missing unit
 *     character in duration". `:` inside brackets is a COLON (a subquery,
 *     which the parser then refuses).
 *   - Elsewhere a word is a keyword (case-insensitive: `SUM`, `By`), the
 *     numbers `Inf`/`NaN`, an identifier, or, with a ':', a metric identifier.
 *   - Digits start a number or a duration: "5m" lexes as a duration anywhere;
 *     the parser decides where one may stand.
 *
 * The whole query is lexed up front into a token array: the parser needs two
 * tokens of lookahead (an identifier followed by '(' is a call), and queries
 * are short. Lexing stops at the first error, which becomes the last token
 * (T_ERROR, message in token_list.error); the parser reports it when it
 * reaches it, so an earlier syntax error still wins, as in Prometheus.
 *
 * Strings are validated here (escapes, UTF-8, termination) and unquoted later
 * by promql_unquote, which can then only fail for memory. Escapes are Go's:
 * \a \b \f \n \r \t \v \\, the string's own quote, \NNN octal, \xNN, \uNNNN,
 * \UNNNNNNNN. One deliberate difference: a NUL byte, literal or escaped, is
 * refused, because label values are C strings here.
 *
 * Numbers follow Prometheus' number(): Go's ParseInt with base 0 first (so
 * 0x1f is 31 and 010 is octal 8, while 09 falls through to ParseFloat and is
 * 9), then ParseFloat. strtod stands in for ParseFloat after the token's
 * syntax has been checked; it reads LC_NUMERIC, and the process keeps the
 * default "C" locale.
 */
#include "promql_internal.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define DEC_DIGITS "0123456789"
#define HEX_DIGITS "0123456789abcdefABCDEF"

typedef struct lexer {
    const char *s;
    size_t len;
    size_t pos;        /* next byte to read */
    size_t start;      /* first byte of the token being lexed */
    int paren_depth;
    bool brace_open;
    bool bracket_open;
    bool got_colon;
    token_list *out;
} lexer;

/* ---- keywords ------------------------------------------------------------ */

static const struct { const char *word; keyword kw; } KEYWORDS[] = {
    {"and", KW_AND}, {"or", KW_OR}, {"unless", KW_UNLESS}, {"atan2", KW_ATAN2},
    {"sum", KW_SUM}, {"avg", KW_AVG}, {"count", KW_COUNT}, {"min", KW_MIN}, {"max", KW_MAX},
    {"group", KW_GROUP}, {"stddev", KW_STDDEV}, {"stdvar", KW_STDVAR}, {"topk", KW_TOPK},
    {"bottomk", KW_BOTTOMK}, {"count_values", KW_COUNT_VALUES}, {"quantile", KW_QUANTILE},
    {"offset", KW_OFFSET}, {"by", KW_BY}, {"without", KW_WITHOUT}, {"on", KW_ON},
    {"ignoring", KW_IGNORING}, {"group_left", KW_GROUP_LEFT}, {"group_right", KW_GROUP_RIGHT},
    {"bool", KW_BOOL}, {"start", KW_START}, {"end", KW_END},
};

keyword promql_keyword_lookup(const char *word, size_t len)
{
    for (size_t i = 0; i < sizeof KEYWORDS / sizeof KEYWORDS[0]; i++)
        if (strlen(KEYWORDS[i].word) == len && strncasecmp(KEYWORDS[i].word, word, len) == 0)
            return KEYWORDS[i].kw;
    return KW_NONE;
}

bool promql_kw_is_aggregator(keyword kw)
{
    return kw >= KW_SUM && kw <= KW_QUANTILE;
}

/* ---- character classes and UTF-8 ----------------------------------------- */

static bool is_alpha(int c) { return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static bool is_space(int c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

size_t promql_utf8_len(const unsigned char *s, size_t avail)
{
    if (avail == 0) return 0;
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t n;
    uint32_t cp, min;
    if ((c & 0xe0) == 0xc0) { n = 2; cp = c & 0x1f; min = 0x80; }
    else if ((c & 0xf0) == 0xe0) { n = 3; cp = c & 0x0f; min = 0x800; }
    else if ((c & 0xf8) == 0xf0) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (avail < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    return n;
}

/* ---- the token list ------------------------------------------------------ */

void promql_tokens_free(token_list *t)
{
    free(t->items);
    t->items = NULL;
    t->count = t->cap = 0;
}

static int push_token(lexer *l, tok_type type, keyword kw, size_t pos, size_t len)
{
    token_list *t = l->out;
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        token *items = realloc(t->items, cap * sizeof *items);
        if (!items) return PROMQL_ERR_NOMEM;
        t->items = items;
        t->cap = cap;
    }
    t->items[t->count++] = (token){.type = type, .kw = kw, .pos = pos, .len = len};
    return 0;
}

/* Emits the text from start to pos as one token. Returns 0 or PROMQL_ERR_NOMEM. */
static int emit(lexer *l, tok_type type, keyword kw)
{
    int rc = push_token(l, type, kw, l->start, l->pos - l->start);
    l->start = l->pos;
    return rc;
}

/* Ends the lexing with an error token at start. Returns 1 (stop), or PROMQL_ERR_NOMEM. */
static int fail(lexer *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(lexer *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->out->error, sizeof l->out->error, fmt, ap);
    va_end(ap);
    int rc = push_token(l, T_ERROR, KW_NONE, l->start, l->len - l->start);
    return rc < 0 ? rc : 1;
}

/* ---- reading ------------------------------------------------------------- */

static int peek(const lexer *l) { return l->pos < l->len ? (unsigned char)l->s[l->pos] : -1; }

static int next(lexer *l) { return l->pos < l->len ? (unsigned char)l->s[l->pos++] : -1; }

static bool accept(lexer *l, const char *valid)
{
    int c = peek(l);
    if (c > 0 && strchr(valid, c)) {
        l->pos++;
        return true;
    }
    return false;
}

static void accept_run(lexer *l, const char *valid)
{
    while (accept(l, valid)) {
    }
}

/*
 * Writes the character at pos as Go's %q of a rune would ('a', '\n', '\x00',
 * 'é'), so messages read like Prometheus'. Invalid UTF-8 shows as '\ufffd'.
 */
static const char *quote_char(const lexer *l, size_t pos, char *buf, size_t buflen)
{
    const unsigned char *p = (const unsigned char *)l->s + pos;
    size_t n = promql_utf8_len(p, l->len - pos);
    static const char esc[] = "\a\b\f\n\r\t\v";
    static const char name[] = "abfnrtv";
    const char *e = (n == 1 && *p) ? strchr(esc, *p) : NULL;
    if (n == 0)
        snprintf(buf, buflen, "'\\ufffd'");
    else if (e)
        snprintf(buf, buflen, "'\\%c'", name[e - esc]);
    else if (n == 1 && (*p < 0x20 || *p == 0x7f))
        snprintf(buf, buflen, "'\\x%02x'", *p);
    else if (n == 1 && (*p == '\'' || *p == '\\'))
        snprintf(buf, buflen, "'\\%c'", *p);
    else
        snprintf(buf, buflen, "'%.*s'", (int)n, (const char *)p);
    return buf;
}

/* Formats a code point as Go's %#U does: U+0071 'q'. */
static void format_rune_u(const lexer *l, size_t pos, char *buf, size_t buflen)
{
    const unsigned char *p = (const unsigned char *)l->s + pos;
    size_t n = promql_utf8_len(p, l->len - pos);
    if (n == 0) {
        snprintf(buf, buflen, "U+FFFD");
        return;
    }
    uint32_t cp = n == 1 ? p[0] : (uint32_t)(p[0] & (0xff >> (n + 1)));
    for (size_t i = 1; i < n; i++) cp = (cp << 6) | (p[i] & 0x3f);
    if (cp >= 0x20 && cp != 0x7f)
        snprintf(buf, buflen, "U+%04X '%.*s'", (unsigned)cp, (int)n, (const char *)p);
    else
        snprintf(buf, buflen, "U+%04X", (unsigned)cp);
}

/* ---- numbers and durations ----------------------------------------------- */

/*
 * Scans a number's characters (not necessarily a valid number: the parser
 * checks). True when the next character cannot continue it, i.e. it is a
 * number and not the start of a duration.
 */
static bool scan_number(lexer *l)
{
    const char *digits = DEC_DIGITS;
    if (accept(l, "0") && accept(l, "xX"))
        digits = HEX_DIGITS;
    accept_run(l, digits);
    if (accept(l, "."))
        accept_run(l, digits);
    if (accept(l, "eE")) {
        accept(l, "+-");
        accept_run(l, DEC_DIGITS);
    }
    return !is_alnum(peek(l));
}

/*
 * Scans the units of a duration whose first number scan_number has read.
 * Like Prometheus it reads one character past the end; on failure that
 * character stays consumed, so the error quotes it ("0de").
 */
static bool accept_remaining_duration(lexer *l)
{
    if (!accept(l, "smhdwy"))
        return false;
    accept(l, "s");
    while (accept(l, DEC_DIGITS)) {
        accept_run(l, DEC_DIGITS);
        if (!accept(l, "smhdw"))
            return false;
        accept(l, "s");
    }
    int c = next(l);
    if (is_alnum(c))
        return false;
    if (c != -1)
        l->pos--;
    return true;
}

static int lex_number_or_duration(lexer *l)
{
    if (scan_number(l))
        return emit(l, T_NUMBER, KW_NONE);
    if (accept_remaining_duration(l))
        return emit(l, T_DURATION, KW_NONE);
    return fail(l, "bad number or duration syntax: \"%.*s\"", (int)(l->pos - l->start), l->s + l->start);
}

/* After '[': a duration must follow. */
static int lex_duration(lexer *l)
{
    if (scan_number(l))
        return fail(l, "missing unit character in duration");
    if (!accept_remaining_duration(l))
        return fail(l, "bad duration syntax: \"%.*s\"", (int)(l->pos - l->start), l->s + l->start);
    return emit(l, T_DURATION, KW_NONE);
}

/* ---- strings ------------------------------------------------------------- */

static int hex_val(int c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 16;
}

/* The escape after a backslash; pos is at the character after '\'. 0, 1 (error) or NOMEM. */
static int lex_escape(lexer *l, int quote)
{
    int c = peek(l);
    int n;
    uint32_t base, max;
    char rune[32];
    if (c == 'a' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't' || c == 'v' ||
        c == '\\' || c == quote) {
        l->pos++;
        return 0;
    }
    if (c >= '0' && c <= '7') { n = 3; base = 8; max = 255; }
    else if (c == 'x') { l->pos++; n = 2; base = 16; max = 255; }
    else if (c == 'u') { l->pos++; n = 4; base = 16; max = 0x10ffff; }
    else if (c == 'U') { l->pos++; n = 8; base = 16; max = 0x10ffff; }
    else if (c == -1) return fail(l, "escape sequence not terminated");
    else {
        format_rune_u(l, l->pos, rune, sizeof rune);
        return fail(l, "unknown escape sequence %s", rune);
    }
    uint32_t x = 0;
    for (; n > 0; n--) {
        c = peek(l);
        uint32_t d = (uint32_t)hex_val(c);
        if (d >= base) {
            if (c == -1) return fail(l, "escape sequence not terminated");
            format_rune_u(l, l->pos, rune, sizeof rune);
            return fail(l, "illegal character %s in escape sequence", rune);
        }
        x = x * base + d;
        l->pos++;
    }
    if (x > max || (x >= 0xd800 && x < 0xe000))
        return fail(l, "escape sequence is an invalid Unicode code point");
    if (x == 0)
        return fail(l, "NUL bytes are not supported in strings");
    return 0;
}

/* A quoted string; the opening quote is read. */
static int lex_string(lexer *l, int quote)
{
    for (;;) {
        int c = peek(l);
        if (c == -1 || c == '\n')
            return fail(l, "unterminated quoted string");
        if (c == 0)
            return fail(l, "NUL bytes are not supported in strings");
        size_t n = promql_utf8_len((const unsigned char *)l->s + l->pos, l->len - l->pos);
        if (n == 0)
            return fail(l, "invalid UTF-8 rune");
        l->pos += n;
        if (c == quote)
            return emit(l, T_STRING, KW_NONE);
        if (c == '\\') {
            int rc = lex_escape(l, quote);
            if (rc) return rc;
        }
    }
}

/* A `raw string`; the opening backtick is read. */
static int lex_raw_string(lexer *l)
{
    for (;;) {
        int c = peek(l);
        if (c == -1)
            return fail(l, "unterminated raw string");
        if (c == 0)
            return fail(l, "NUL bytes are not supported in strings");
        size_t n = promql_utf8_len((const unsigned char *)l->s + l->pos, l->len - l->pos);
        if (n == 0)
            return fail(l, "invalid UTF-8 rune");
        l->pos += n;
        if (c == '`')
            return emit(l, T_STRING, KW_NONE);
    }
}

static void encode_utf8(uint32_t cp, char **w)
{
    unsigned char *p = (unsigned char *)*w;
    if (cp < 0x80) { *p++ = (unsigned char)cp; }
    else if (cp < 0x800) { *p++ = (unsigned char)(0xc0 | (cp >> 6)); *p++ = (unsigned char)(0x80 | (cp & 0x3f)); }
    else if (cp < 0x10000) {
        *p++ = (unsigned char)(0xe0 | (cp >> 12)); *p++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        *p++ = (unsigned char)(0x80 | (cp & 0x3f));
    } else {
        *p++ = (unsigned char)(0xf0 | (cp >> 18)); *p++ = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
        *p++ = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)); *p++ = (unsigned char)(0x80 | (cp & 0x3f));
    }
    *w = (char *)p;
}

/* Decodes the escape at *r (just after '\'), writing its bytes at *w. The lexer validated it. */
static void unescape_one(const char **r, char **w)
{
    static const char from[] = "abfnrtv";
    static const char to[] = "\a\b\f\n\r\t\v";
    char c = *(*r)++;
    const char *e = strchr(from, c);
    if (e && c) { *(*w)++ = to[e - from]; return; }
    int n = 0, base = 16;
    if (c >= '0' && c <= '7') { n = 2; base = 8; }
    else if (c == 'x') n = 2;
    else if (c == 'u') n = 4;
    else if (c == 'U') n = 8;
    else { *(*w)++ = c; return; }   /* \\ and the quote */
    uint32_t x = (base == 8) ? (uint32_t)(c - '0') : 0;
    for (int i = 0; i < n; i++) x = x * (uint32_t)base + (uint32_t)hex_val(*(*r)++);
    if (c == 'u' || c == 'U') encode_utf8(x, w);
    else *(*w)++ = (char)x;   /* octal and \x are bytes */
}

int promql_unquote(const char *text, size_t len, char **out)
{
    /* an escape never produces more bytes than it takes (\uNNNN: 6 -> at most 3, \UNNNNNNNN: 10 -> 4) */
    char *buf = malloc(len + 1);
    if (!buf) return PROMQL_ERR_NOMEM;
    const char *r = text + 1, *end = text + len - 1;
    char *w = buf;
    bool raw = text[0] == '`';
    while (r < end) {
        if (*r == '\\' && !raw) {
            r++;
            unescape_one(&r, &w);
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    *out = buf;
    return 0;
}

/* ---- the two lexer states ------------------------------------------------ */

static void skip_comment(lexer *l)
{
    while (l->pos < l->len && l->s[l->pos] != '\n' && l->s[l->pos] != '\r') l->pos++;
    l->start = l->pos;
}

static int lex_word(lexer *l)
{
    bool colon = false;
    while (l->pos < l->len && (is_alnum((unsigned char)l->s[l->pos]) || l->s[l->pos] == ':')) {
        colon |= l->s[l->pos] == ':';
        l->pos++;
    }
    const char *w = l->s + l->start;
    size_t n = l->pos - l->start;
    if ((n == 3 && (strncasecmp(w, "inf", 3) == 0 || strncasecmp(w, "nan", 3) == 0)))
        return emit(l, T_NUMBER, KW_NONE);
    keyword kw = promql_keyword_lookup(w, n);
    if (kw != KW_NONE)
        return emit(l, T_IDENT, kw);
    return emit(l, colon ? T_METRIC_IDENT : T_IDENT, KW_NONE);
}

/* One token inside braces. Returns 0 (continue), 1 (stop: EOF or error) or NOMEM. */
static int lex_inside_braces(lexer *l)
{
    char q[16];
    int c = next(l);
    switch (c) {
    case -1: return fail(l, "unexpected end of input inside braces");
    case ' ': case '\t': case '\n': case '\r': l->start = l->pos; return 0;
    case '#': skip_comment(l); return 0;
    case ',': return emit(l, T_COMMA, KW_NONE);
    case '"': case '\'': return lex_string(l, c);
    case '`': return lex_raw_string(l);
    case '=':
        if (accept(l, "~")) return emit(l, T_EQL_REGEX, KW_NONE);
        return emit(l, T_EQL, KW_NONE);
    case '!':
        if (accept(l, "~")) return emit(l, T_NEQ_REGEX, KW_NONE);
        if (accept(l, "=")) return emit(l, T_NEQ, KW_NONE);
        return fail(l, "unexpected character after '!' inside braces: %s",
                    l->pos < l->len ? quote_char(l, l->pos, q, sizeof q) : "EOF");
    case '{': return fail(l, "unexpected left brace '{'");
    case '}':
        l->brace_open = false;
        return emit(l, T_RBRACE, KW_NONE);
    default:
        if (is_alpha(c)) {
            while (is_alnum(peek(l))) l->pos++;
            return emit(l, T_IDENT, KW_NONE);
        }
        return fail(l, "unexpected character inside braces: %s", quote_char(l, l->start, q, sizeof q));
    }
}

static int lex_two_char(lexer *l, char second, tok_type two, tok_type one)
{
    return emit(l, accept(l, (char[]){second, 0}) ? two : one, KW_NONE);
}

static int lex_bracket_open(lexer *l)
{
    if (l->bracket_open)
        return fail(l, "unexpected left bracket '['");
    l->got_colon = false;
    l->bracket_open = true;
    int rc = emit(l, T_LBRACKET, KW_NONE);
    if (rc) return rc;
    while (is_space(peek(l))) l->pos++;
    l->start = l->pos;
    return lex_duration(l);
}

static int lex_eof(lexer *l)
{
    if (l->paren_depth != 0) return fail(l, "unclosed left parenthesis");
    if (l->bracket_open) return fail(l, "unclosed left bracket");
    int rc = emit(l, T_EOF, KW_NONE);
    return rc < 0 ? rc : 1;
}

/* One token outside braces. Returns 0 (continue), 1 (stop: EOF or error) or NOMEM. */
static int lex_statement(lexer *l)
{
    char q[16];
    int c = next(l);
    switch (c) {
    case -1: return lex_eof(l);
    case ' ': case '\t': case '\n': case '\r': l->start = l->pos; return 0;
    case '#': skip_comment(l); return 0;
    case ',': return emit(l, T_COMMA, KW_NONE);
    case '*': return emit(l, T_MUL, KW_NONE);
    case '/': return emit(l, T_DIV, KW_NONE);
    case '%': return emit(l, T_MOD, KW_NONE);
    case '+': return emit(l, T_ADD, KW_NONE);
    case '-': return emit(l, T_SUB, KW_NONE);
    case '^': return emit(l, T_POW, KW_NONE);
    case '@': return emit(l, T_AT, KW_NONE);
    case '<': return lex_two_char(l, '=', T_LTE, T_LSS);
    case '>': return lex_two_char(l, '=', T_GTE, T_GTR);
    case '=':
        if (peek(l) == '~') return fail(l, "unexpected character after '=': '~'");
        return lex_two_char(l, '=', T_EQLC, T_EQL);
    case '!':
        if (accept(l, "=")) return emit(l, T_NEQ, KW_NONE);
        return fail(l, "unexpected character after '!': %s",
                    l->pos < l->len ? quote_char(l, l->pos, q, sizeof q) : "EOF");
    case '"': case '\'': return lex_string(l, c);
    case '`': return lex_raw_string(l);
    case '(':
        l->paren_depth++;
        return emit(l, T_LPAREN, KW_NONE);
    case ')':
        if (--l->paren_depth < 0) return fail(l, "unexpected right parenthesis ')'");
        return emit(l, T_RPAREN, KW_NONE);
    case '{':
        l->brace_open = true;
        return emit(l, T_LBRACE, KW_NONE);
    case '[': return lex_bracket_open(l);
    case ']':
        if (!l->bracket_open) return fail(l, "unexpected right bracket ']'");
        l->bracket_open = false;
        return emit(l, T_RBRACKET, KW_NONE);
    case ':':
        if (!l->bracket_open) return lex_word(l);
        if (l->got_colon) return fail(l, "unexpected colon ':'");
        l->got_colon = true;
        return emit(l, T_COLON, KW_NONE);
    default:
        if (is_digit(c) || (c == '.' && is_digit(peek(l)))) {
            l->pos--;
            return lex_number_or_duration(l);
        }
        if (is_alpha(c))
            return lex_word(l);
        return fail(l, "unexpected character: %s", quote_char(l, l->start, q, sizeof q));
    }
}

int promql_lex(const char *src, size_t len, token_list *out)
{
    memset(out, 0, sizeof *out);
    lexer l = {.s = src, .len = len, .out = out};
    for (;;) {
        int rc = l.brace_open ? lex_inside_braces(&l) : lex_statement(&l);
        if (rc < 0) {
            promql_tokens_free(out);
            return rc;
        }
        if (rc > 0)
            return 0;
    }
}

/* ---- numbers ------------------------------------------------------------- */

/* Go's ParseInt(s, 0, 64) for the forms the lexer lets through: 0x hex, 0 octal, decimal. */
static bool parse_int_base0(const char *s, size_t n, double *out)
{
    unsigned base = 10;
    size_t i = 0;
    if (n > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) { base = 16; i = 2; }
    else if (n > 1 && s[0] == '0') { base = 8; i = 1; }
    if (i == n) return n == 1 && s[0] == '0' ? (*out = 0, true) : false;
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)hex_val((unsigned char)s[i]);
        if (d >= base) return false;
        if (v > ((uint64_t)INT64_MAX - d) / base) return false;   /* out of range */
        v = v * base + d;
    }
    *out = (double)(int64_t)v;
    return true;
}

int promql_parse_number(const char *text, size_t len, double *out, char *why, size_t whylen)
{
    if (len == 3 && strncasecmp(text, "inf", 3) == 0) { *out = INFINITY; return 0; }
    if (len == 3 && strncasecmp(text, "nan", 3) == 0) { *out = NAN; return 0; }
    if (parse_int_base0(text, len, out))
        return 0;
    /* ParseFloat: decimal only (a hex float needs a 'p' exponent, which the lexer never lets through) */
    bool syntax_ok = len > 0 && !(len > 1 && (text[1] == 'x' || text[1] == 'X'));
    char *copy = syntax_ok ? strndup(text, len) : NULL;
    if (syntax_ok && !copy) { snprintf(why, whylen, "out of memory"); return -1; }
    char *end = NULL;
    errno = 0;
    double v = copy ? strtod(copy, &end) : 0;
    bool full = copy && end == copy + len;
    bool overflow = full && errno == ERANGE && isinf(v);
    free(copy);
    if (!full) {
        snprintf(why, whylen, "error parsing number \"%.*s\": invalid syntax", (int)(len > 64 ? 64 : len), text);
        return -1;
    }
    if (overflow) {
        snprintf(why, whylen, "error parsing number \"%.*s%s\": value out of range",
                 (int)(len > 64 ? 64 : len), text, len > 64 ? "..." : "");
        return -1;
    }
    *out = v;
    return 0;
}

/* ---- durations ------------------------------------------------------------ */

static const struct { const char *unit; int64_t ms; } UNITS[] = {
    {"y", 365LL * 24 * 3600 * 1000}, {"w", 7LL * 24 * 3600 * 1000}, {"d", 24LL * 3600 * 1000},
    {"h", 3600LL * 1000}, {"m", 60LL * 1000}, {"s", 1000}, {"ms", 1},
};
#define NUNITS (sizeof UNITS / sizeof UNITS[0])
#define DURATION_MAX_MS (INT64_MAX / 1000000)   /* Go's time.Duration counts nanoseconds */

/* The unit at s (longest match: "ms" before "m"), NUNITS if none. */
static size_t unit_at(const char *s, size_t avail)
{
    if (avail >= 2 && s[0] == 'm' && s[1] == 's') return NUNITS - 1;
    for (size_t u = 0; u + 1 < NUNITS; u++)
        if (avail >= 1 && s[0] == UNITS[u].unit[0]) return u;
    return NUNITS;
}

int promql_parse_duration(const char *text, size_t len, int64_t *ms, char *why, size_t whylen)
{
    int64_t total = 0;
    size_t i = 0, next_unit = 0;
    bool out_of_range = false;
    while (i < len) {
        int64_t n = 0;
        size_t d0 = i;
        for (; i < len && is_digit((unsigned char)text[i]); i++) {
            if (n > (INT64_MAX - 9) / 10) out_of_range = true;
            else n = n * 10 + (text[i] - '0');
        }
        size_t u = unit_at(text + i, len - i);
        if (i == d0 || u == NUNITS || u < next_unit)
            goto bad;
        i += strlen(UNITS[u].unit);
        next_unit = u + 1;
        if (n > (DURATION_MAX_MS - total) / UNITS[u].ms) out_of_range = true;
        else total += n * UNITS[u].ms;
    }
    if (len == 0)
        goto bad;
    if (out_of_range) {
        snprintf(why, whylen, "duration out of range");
        return -1;
    }
    *ms = total;
    return 0;
bad:
    snprintf(why, whylen, "not a valid duration string: \"%.*s\"", (int)(len > 64 ? 64 : len), text);
    return -1;
}

void promql_format_duration(int64_t ms, char *buf)
{
    size_t w = 0;
    if (ms <= 0) {
        snprintf(buf, PROMQL_NUM_BUF, "0s");
        return;
    }
    for (size_t u = 0; u < NUNITS; u++) {
        /* years and weeks only when exact, as Prometheus: 90d reads better than 12w6d */
        if (u < 2 && ms % UNITS[u].ms != 0) continue;
        int64_t v = ms / UNITS[u].ms;
        if (v > 0) {
            w += (size_t)snprintf(buf + w, PROMQL_NUM_BUF - w, "%lld%s", (long long)v, UNITS[u].unit);
            ms -= v * UNITS[u].ms;
        }
    }
}

/* ---- numbers, canonical text --------------------------------------------- */

/*
 * Shortest text that reads back as v, laid out as Go's %v: plain digits for
 * decimal exponents in [-4, 21), exponent form otherwise (1e+21, 1e-05).
 */
void promql_format_number(double v, char *buf)
{
    if (isnan(v)) { snprintf(buf, PROMQL_NUM_BUF, "NaN"); return; }
    if (isinf(v)) { snprintf(buf, PROMQL_NUM_BUF, v > 0 ? "Inf" : "-Inf"); return; }
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(buf, PROMQL_NUM_BUF, "%.*e", prec - 1, v);
        if (strtod(buf, NULL) == v) break;
    }
    snprintf(buf, PROMQL_NUM_BUF, "%.*e", prec - 1, v);
    const char *e = strchr(buf, 'e');
    int exp10 = e ? atoi(e + 1) : 0;
    if (exp10 >= -4 && exp10 < 21) {
        int decimals = prec - 1 - exp10;
        snprintf(buf, PROMQL_NUM_BUF, "%.*f", decimals > 0 ? decimals : 0, v);
    }
}
