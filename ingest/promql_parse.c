/*
 * promql_parse.c — the PromQL parser: tokens in, a small typed AST out; the
 * label matchers; and the canonical text of an AST.
 *
 * Grammar. Recursive descent with precedence climbing, which gives the same
 * trees as Prometheus' yacc grammar for this subset:
 *
 *   expr    = unary { ("+" | "-" | "*" | "/") unary }   * and / bind tighter, all left assoc
 *   unary   = ("-" | "+") unary | postfix                 -1 * 2 is (-1) * 2, as in Prometheus
 *   postfix = primary [ "[" duration "]" ]                only on a bare selector
 *   primary = number | "(" expr ")" | selector | aggregation | call
 *   aggregation = aggr [ modifier ] "(" expr ")" [ modifier ]   (one modifier)
 *   modifier    = ("by" | "without") "(" [ label { "," label } [","] ] ")"
 *   call        = ("rate" | "increase" | "delta") "(" range ")"
 *   selector    = name [ "{" matchers "}" ] | "{" matchers "}"
 *
 * A unary minus over a number literal is folded into it (Prometheus does the
 * same), so `-1` is the number -1; a unary plus is dropped, since in
 * Prometheus it changes nothing, not even the metric name.
 *
 * Everything outside the subset is recognised and refused with a message
 * naming it ("function \"irate\" is not supported", "subqueries are not
 * supported", "\"offset\" is not supported", ...), at the position of the
 * construct, never with a generic syntax error. Type errors use Prometheus'
 * wording ("expected type range vector in call to function \"rate\", got
 * instant vector"). Errors read "LINE:COL: parse error: MESSAGE"; the first
 * error wins.
 *
 * Depth. The parser recurses on parentheses and unary operators, and the
 * evaluator, formatter and free recurse on the tree, so both the recursion
 * and the height of the tree are bounded by PROMQL_MAX_DEPTH: a query is
 * client input and must not be able to overflow the stack. (Prometheus, in
 * Go, has no such limit; real queries nest a few levels, and a sum of 256
 * terms is far beyond what a dashboard writes.)
 *
 * Regular expressions. Prometheus anchors a regex matcher as ^(?:re)$ and
 * uses RE2 syntax. Here it is POSIX ERE through glibc's regcomp(REG_EXTENDED |
 * REG_NOSUB) on "^(" re ")$". Whether a whole label value matches does not
 * depend on leftmost-first (RE2) versus leftmost-longest (POSIX) semantics,
 * so for the common patterns (foo|bar, foo.*, [a-z]+, a{2,3}) the answers are
 * the same. The known differences:
 *   - no (?i) or any (?...) group or flag: refused;
 *   - no Perl classes \d \w \s \D \W \S, no \b \pL \Q..\E, no escape of a
 *     letter or digit at all: refused (glibc would read \d as a plain 'd'
 *     and \1 as a backreference); escaping punctuation (\. \* \\) works;
 *   - a backslash inside [...] is literal in POSIX but an escape in RE2:
 *     refused, write [.] or put ] first ([]a]) instead;
 *   - a{,3} is a repetition in glibc but literal in RE2, and a '{' that
 *     starts no valid repetition is literal in RE2: both refused;
 *   - '.' matches a newline in POSIX, not in RE2 (without (?s));
 *   - matching is per byte in the C locale: '.' is one byte, not one UTF-8
 *     character, and [[:alpha:]] is ASCII only;
 *   - repetition counts above 1000 are refused (as RE2 does), and so is a
 *     pattern whose repetitions expand beyond 65536 atoms, since glibc
 *     compiles repetitions by copying.
 * The pattern is also checked for balanced parentheses before it is wrapped:
 * glibc takes an unmatched ')' as a literal, and "a)|(b" wrapped as
 * "^(a)|(b)$" would no longer be anchored.
 *
 * Canonical text (promql_format). The formatter prints the tree, not the
 * input: parentheses only where precedence needs them, one space around
 * binary operators, matchers sorted and deduplicated with the metric name in
 * front, grouping labels sorted and deduplicated, the aggregation modifier
 * before the argument ("sum by (a) (x)"), numbers in the shortest form that
 * reads back to the same double, durations as Prometheus prints them
 * (1h30m, 1w, 1y). Its output parses back to the same output.
 */
#include "promql_internal.h"

#include <assert.h>
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ==== regular expressions ================================================== */

#define RE_MAX_REPEAT 1000
#define RE_MAX_SIZE 65536
#define RE_MAX_NEST 100

struct promql_regex {
    regex_t re;
};

static bool is_alnum_ascii(int c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Index just past the bracket expression starting at re[i] == '[', or 0 with why. */
static size_t re_bracket_end(const char *re, size_t i, char *why, size_t whylen)
{
    size_t j = i + 1;
    if (re[j] == '^') j++;
    if (re[j] == ']') j++;
    for (;;) {
        char c = re[j];
        if (c == '\0') break;
        if (c == ']') return j + 1;
        if (c == '\\') {
            snprintf(why, whylen, "a backslash inside [...] is not supported (POSIX reads it literally, RE2 as an escape)");
            return 0;
        }
        if (c == '[' && (re[j + 1] == ':' || re[j + 1] == '.' || re[j + 1] == '=')) {
            char kind = re[j + 1];
            const char *close = NULL;
            for (const char *p = re + j + 2; *p; p++)
                if (p[0] == kind && p[1] == ']') { close = p; break; }
            if (!close) break;
            j = (size_t)(close - re) + 2;
            continue;
        }
        j++;
    }
    snprintf(why, whylen, "unterminated [...]");
    return 0;
}

/* Parses a repetition "{n}", "{n,}" or "{n,m}" at re[i]; returns the index past it, 0 with why. */
static size_t re_repeat(const char *re, size_t i, size_t *count, char *why, size_t whylen)
{
    size_t j = i + 1, lo = 0, hi = 0;
    bool have_lo = false, comma = false, have_hi = false;
    for (; re[j] >= '0' && re[j] <= '9'; j++, have_lo = true)
        lo = lo > RE_MAX_REPEAT ? lo : lo * 10 + (size_t)(re[j] - '0');
    if (re[j] == ',') {
        comma = true;
        for (j++; re[j] >= '0' && re[j] <= '9'; j++, have_hi = true)
            hi = hi > RE_MAX_REPEAT ? hi : hi * 10 + (size_t)(re[j] - '0');
    }
    if (!have_lo || re[j] != '}') {
        snprintf(why, whylen, "'{' must start a repetition {n}, {n,} or {n,m} (write \\{ for a literal brace)");
        return 0;
    }
    if (lo > RE_MAX_REPEAT || hi > RE_MAX_REPEAT || (have_hi && hi < lo)) {
        snprintf(why, whylen, "invalid repeat count");
        return 0;
    }
    *count = (comma ? (have_hi ? hi : lo + 1) : lo);
    if (*count == 0) *count = 1;
    return j + 1;
}

/*
 * Checks that re is a POSIX ERE whose meaning RE2 shares (see the file top),
 * with balanced parentheses and a bounded expansion. 0, or -1 with why.
 */
static int re_check(const char *re, char *why, size_t whylen)
{
    size_t stack[RE_MAX_NEST];
    size_t depth = 0, size = 0, atom = 0;
    for (size_t i = 0; re[i]; i++) {
        char c = re[i];
        if (c == '\\') {
            if (re[i + 1] == '\0') { snprintf(why, whylen, "trailing backslash"); return -1; }
            if (is_alnum_ascii((unsigned char)re[i + 1]) || (unsigned char)re[i + 1] >= 0x80) {
                snprintf(why, whylen, "escape \\%c is not supported (POSIX ERE, not RE2: use [0-9] for \\d)", re[i + 1]);
                return -1;
            }
            i++;
            atom = 1;
            size++;
        } else if (c == '[') {
            size_t end = re_bracket_end(re, i, why, whylen);
            if (!end) return -1;
            i = end - 1;
            atom = 1;
            size++;
        } else if (c == '(') {
            if (re[i + 1] == '?') { snprintf(why, whylen, "(?...) groups and flags such as (?i) are not supported (POSIX ERE)"); return -1; }
            if (depth == RE_MAX_NEST) { snprintf(why, whylen, "parentheses nested too deeply"); return -1; }
            stack[depth++] = size;
            size = 0;
            atom = 0;
        } else if (c == ')') {
            if (depth == 0) { snprintf(why, whylen, "unexpected )"); return -1; }
            atom = size + 1;
            size = stack[--depth] + atom;
        } else if (c == '{') {
            size_t count = 1;
            size_t end = re_repeat(re, i, &count, why, whylen);
            if (!end) return -1;
            i = end - 1;
            size += atom * (count - 1);
            atom *= count;
        } else if (c == '|' || c == '^' || c == '$') {
            atom = 0;
        } else if (c == '*' || c == '+' || c == '?') {
            /* repeat without copying */
        } else {
            atom = 1;
            size++;
        }
        if (size > RE_MAX_SIZE || atom > RE_MAX_SIZE) { snprintf(why, whylen, "regular expression too large"); return -1; }
    }
    if (depth != 0) { snprintf(why, whylen, "missing )"); return -1; }
    return 0;
}

static int regex_compile(const char *pattern, struct promql_regex **out, char *err, size_t errlen)
{
    char why[160];
    if (re_check(pattern, why, sizeof why) != 0) {
        snprintf(err, errlen, "invalid regular expression \"%.64s\": %s", pattern, why);
        return PROMQL_ERR_BAD_DATA;
    }
    size_t n = strlen(pattern);
    char *wrapped = malloc(n + 5);
    struct promql_regex *r = malloc(sizeof *r);
    if (!wrapped || !r) {
        free(wrapped);
        free(r);
        return PROMQL_ERR_NOMEM;
    }
    memcpy(wrapped, "^(", 2);
    memcpy(wrapped + 2, pattern, n);
    memcpy(wrapped + 2 + n, ")$", 3);
    int rc = regcomp(&r->re, wrapped, REG_EXTENDED | REG_NOSUB);
    free(wrapped);
    if (rc != 0) {
        regerror(rc, &r->re, why, sizeof why);
        snprintf(err, errlen, "invalid regular expression \"%.64s\": %s", pattern, why);
        free(r);
        return rc == REG_ESPACE ? PROMQL_ERR_NOMEM : PROMQL_ERR_BAD_DATA;
    }
    *out = r;
    return 0;
}

/* ==== matchers ============================================================== */

int promql_matcher_init(promql_matcher *m, promql_match_op op, const char *name, const char *value,
                        char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return PROMQL_ERR_NOMEM;
    }
    if (op == PROMQL_MATCH_RE || op == PROMQL_MATCH_NRE) {
        int rc = regex_compile(value, &m->re_, err, errlen);
        if (rc != 0) {
            free(n);
            free(v);
            return rc;
        }
    }
    m->op = op;
    m->name = n;
    m->value = v;
    return 0;
}

void promql_matcher_free(promql_matcher *m)
{
    if (m->re_) {
        regfree(&m->re_->re);
        free(m->re_);
    }
    free((char *)m->name);
    free((char *)m->value);
    memset(m, 0, sizeof *m);
}

/* Whether one matcher accepts value ("" for a missing label). */
static bool matcher_accepts(const promql_matcher *m, const char *value)
{
    switch (m->op) {
    case PROMQL_MATCH_EQ: return strcmp(value, m->value) == 0;
    case PROMQL_MATCH_NE: return strcmp(value, m->value) != 0;
    case PROMQL_MATCH_RE:
    case PROMQL_MATCH_NRE:
        assert(m->re_ && "regex matcher not from a parse or promql_matcher_init");
        return (regexec(&m->re_->re, value, 0, NULL, 0) == 0) == (m->op == PROMQL_MATCH_RE);
    }
    return false;
}

int promql_matchers_match(const promql_matcher *m, size_t n, const promql_labels *labels)
{
    for (size_t i = 0; i < n; i++) {
        const char *v = promql_labels_get(labels, m[i].name);
        if (!matcher_accepts(&m[i], v ? v : ""))
            return 0;
    }
    return 1;
}

/* ==== the AST ================================================================ */

void promql_expr_free(promql_expr *e)
{
    if (!e) return;
    for (size_t i = 0; i < e->nmatchers; i++) promql_matcher_free(&e->matchers[i]);
    free(e->matchers);
    for (size_t i = 0; i < e->ngrouping; i++) free(e->grouping[i]);
    free(e->grouping);
    promql_expr_free(e->lhs);
    promql_expr_free(e->rhs);
    free(e);
}

promql_value_type promql_expr_type(const promql_expr *e)
{
    return e->type;
}

int promql_expr_matchers(const promql_expr *e, const promql_matcher **m, size_t *n)
{
    if (e->kind != NODE_SELECTOR) return -1;
    *m = e->matchers;
    *n = e->nmatchers;
    return 0;
}

int promql_foreach_selector(const promql_expr *e, int (*fn)(void *ctx, const promql_matcher *m, size_t n),
                            void *ctx)
{
    if (!e) return 0;
    if (e->kind == NODE_SELECTOR) return fn(ctx, e->matchers, e->nmatchers);
    int rc = promql_foreach_selector(e->lhs, fn, ctx);
    return rc ? rc : promql_foreach_selector(e->rhs, fn, ctx);
}

static const char *type_name(promql_value_type t)
{
    switch (t) {
    case PROMQL_SCALAR: return "scalar";
    case PROMQL_VECTOR: return "instant vector";
    case PROMQL_MATRIX: return "range vector";
    }
    return "?";
}

/* ==== the parser ============================================================= */

typedef struct parser {
    const char *src;
    size_t len;
    token_list toks;
    size_t i;              /* the current token; never past the last (EOF or ERROR) */
    size_t depth;          /* recursion depth of parse_unary */
    int rc;                /* the first error, 0 while none */
    char *err;
    size_t errlen;
} parser;

static const token *peek(const parser *p) { return &p->toks.items[p->i]; }

static const token *peek2(const parser *p)
{
    return p->i + 1 < p->toks.count ? &p->toks.items[p->i + 1] : peek(p);
}

static void advance(parser *p)
{
    if (p->i + 1 < p->toks.count) p->i++;
}

static int perr_at(parser *p, size_t pos, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Records the first error, at byte pos, as "LINE:COL: parse error: ...". Returns PROMQL_ERR_BAD_DATA. */
static int perr_at(parser *p, size_t pos, const char *fmt, ...)
{
    if (p->rc) return p->rc;
    size_t line = 1, line_start = 0;
    for (size_t k = 0; k < pos && k < p->len; k++)
        if (p->src[k] == '\n') { line++; line_start = k + 1; }
    int n = snprintf(p->err, p->errlen, "%zu:%zu: parse error: ", line, pos - line_start + 1);
    if (n >= 0 && (size_t)n < p->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    p->rc = PROMQL_ERR_BAD_DATA;
    return p->rc;
}

static int nomem(parser *p)
{
    if (!p->rc) {
        snprintf(p->err, p->errlen, "out of memory");
        p->rc = PROMQL_ERR_NOMEM;
    }
    return p->rc;
}

/* Go's %q of a token's text, clipped like Prometheus' %.10q...: into buf. */
static const char *quote_text(const char *s, size_t n, char *buf, size_t buflen)
{
    size_t w = 0, limit = n > 24 ? 24 : n;
    buf[w++] = '"';
    for (size_t k = 0; k < limit && w + 6 < buflen; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\') { buf[w++] = '\\'; buf[w++] = (char)c; }
        else if (c < 0x20 || c == 0x7f) w += (size_t)snprintf(buf + w, buflen - w, "\\x%02x", c);
        else buf[w++] = (char)c;
    }
    buf[w++] = '"';
    if (limit < n && w + 4 < buflen) { memcpy(buf + w, "...", 3); w += 3; }
    buf[w] = '\0';
    return buf;
}

/* How Prometheus' Item.desc() names a token in "unexpected ..." messages. */
static void describe(const parser *p, const token *t, char *buf, size_t buflen)
{
    const char *text = p->src + t->pos;
    char q[96];
    int n = (int)t->len;
    switch (t->type) {
    case T_EOF: snprintf(buf, buflen, "end of input"); return;
    case T_ERROR: snprintf(buf, buflen, "error"); return;   /* unexpected() shows the lexer's message instead */
    case T_IDENT:
        if (promql_kw_is_aggregator(t->kw)) snprintf(buf, buflen, "<aggr:%.*s>", n, text);
        else if (t->kw >= KW_AND && t->kw <= KW_ATAN2) snprintf(buf, buflen, "<op:%.*s>", n, text);
        else if (t->kw != KW_NONE) snprintf(buf, buflen, "<%.*s>", n, text);
        else snprintf(buf, buflen, "identifier %s", quote_text(text, t->len, q, sizeof q));
        return;
    case T_METRIC_IDENT: snprintf(buf, buflen, "metric identifier %s", quote_text(text, t->len, q, sizeof q)); return;
    case T_NUMBER: snprintf(buf, buflen, "number %s", quote_text(text, t->len, q, sizeof q)); return;
    case T_DURATION: snprintf(buf, buflen, "duration %s", quote_text(text, t->len, q, sizeof q)); return;
    case T_STRING: snprintf(buf, buflen, "string %s", quote_text(text, t->len, q, sizeof q)); return;
    case T_ADD: case T_SUB: case T_MUL: case T_DIV: case T_MOD: case T_POW: case T_AT:
    case T_EQLC: case T_NEQ: case T_LSS: case T_LTE: case T_GTR: case T_GTE: case T_EQL_REGEX: case T_NEQ_REGEX:
        snprintf(buf, buflen, "<op:%.*s>", n, text);
        return;
    default:
        snprintf(buf, buflen, "%s", quote_text(text, t->len, q, sizeof q));
        return;
    }
}

/* "unexpected X[ in CONTEXT][, expected WHAT]" at the current token (or the lexer's error). */
static int unexpected(parser *p, const char *context, const char *expected)
{
    const token *t = peek(p);
    if (t->type == T_ERROR)
        return perr_at(p, t->pos, "%s", p->toks.error);
    char desc[160];
    describe(p, t, desc, sizeof desc);
    return perr_at(p, t->pos, "unexpected %s%s%s%s%s", desc, context ? " in " : "", context ? context : "",
                   expected ? ", expected " : "", expected ? expected : "");
}

static promql_expr *new_node(parser *p, node_kind kind, promql_value_type type, size_t pos)
{
    promql_expr *e = calloc(1, sizeof *e);
    if (!e) {
        nomem(p);
        return NULL;
    }
    e->kind = kind;
    e->type = type;
    e->pos = pos;
    e->height = 1;
    return e;
}

/* Hangs children under e and bounds the tree's height. 0, or an error (e is freed). */
static int attach(parser *p, promql_expr *e, promql_expr *lhs, promql_expr *rhs)
{
    e->lhs = lhs;
    e->rhs = rhs;
    size_t h = lhs ? lhs->height : 0;
    if (rhs && rhs->height > h) h = rhs->height;
    e->height = h + 1;
    if (e->height > PROMQL_MAX_DEPTH) {
        int rc = perr_at(p, e->pos, "expression nested too deeply (more than %d levels)", PROMQL_MAX_DEPTH);
        promql_expr_free(e);
        return rc;
    }
    return 0;
}

static int parse_expr(parser *p, int min_prec, promql_expr **out);

/* ---- selectors ------------------------------------------------------------ */

static bool matches_empty(const promql_matcher *m)
{
    return matcher_accepts(m, "");
}

static int add_matcher(parser *p, promql_expr *e, promql_match_op op, const char *name, const char *value,
                       size_t pos)
{
    promql_matcher *m = realloc(e->matchers, (e->nmatchers + 1) * sizeof *m);
    if (!m) return nomem(p);
    e->matchers = m;
    char why[256] = "";
    int rc = promql_matcher_init(&m[e->nmatchers], op, name, value, why, sizeof why);
    if (rc == PROMQL_ERR_NOMEM) return nomem(p);
    if (rc != 0) return perr_at(p, pos, "%s", why);
    e->nmatchers++;
    return 0;
}

static int match_op_of(tok_type t, promql_match_op *op)
{
    switch (t) {
    case T_EQL: *op = PROMQL_MATCH_EQ; return 0;
    case T_NEQ: *op = PROMQL_MATCH_NE; return 0;
    case T_EQL_REGEX: *op = PROMQL_MATCH_RE; return 0;
    case T_NEQ_REGEX: *op = PROMQL_MATCH_NRE; return 0;
    default: return -1;
    }
}

/* One `label op "value"` inside braces. */
static int parse_matcher(parser *p, promql_expr *e)
{
    const token *name = peek(p);
    if (name->type != T_IDENT)
        return unexpected(p, "label matching", "identifier or \"}\"");
    advance(p);
    promql_match_op op;
    if (match_op_of(peek(p)->type, &op) != 0)
        return unexpected(p, "label matching", "label matching operator");
    advance(p);
    const token *str = peek(p);
    if (str->type != T_STRING)
        return unexpected(p, "label matching", "string");
    char *label = strndup(p->src + name->pos, name->len), *value = NULL;
    if (!label || promql_unquote(p->src + str->pos, str->len, &value) != 0) {
        free(label);
        return nomem(p);
    }
    int rc = add_matcher(p, e, op, label, value, name->pos);
    free(label);
    free(value);
    if (rc) return rc;
    advance(p);
    return 0;
}

/* The braces of a selector; the current token is '{'. */
static int parse_matcher_list(parser *p, promql_expr *e)
{
    advance(p);
    for (;;) {
        if (peek(p)->type == T_RBRACE) break;
        int rc = parse_matcher(p, e);
        if (rc) return rc;
        if (peek(p)->type == T_COMMA) { advance(p); continue; }
        if (peek(p)->type == T_RBRACE) break;
        return unexpected(p, "label matching", "\",\" or \"}\"");
    }
    advance(p);
    return 0;
}

/* Prometheus' checks: a name is set once; a selector without a name needs a non-empty matcher. */
static int check_selector(parser *p, promql_expr *e, const char *name)
{
    if (name) {
        for (size_t k = 0; k < e->nmatchers; k++)
            if (strcmp(e->matchers[k].name, PROMQL_METRIC_NAME) == 0)
                return perr_at(p, e->pos, "metric name must not be set twice: \"%s\" or \"%s\"", name,
                               e->matchers[k].value);
        return add_matcher(p, e, PROMQL_MATCH_EQ, PROMQL_METRIC_NAME, name, e->pos);
    }
    for (size_t k = 0; k < e->nmatchers; k++)
        if (!matches_empty(&e->matchers[k])) return 0;
    return perr_at(p, e->pos, "vector selector must contain at least one non-empty matcher");
}

/* name [ "{" ... "}" ] or "{" ... "}"; the current token is the name or '{'. */
static int parse_selector(parser *p, promql_expr **out)
{
    const token *t = peek(p);
    promql_expr *e = new_node(p, NODE_SELECTOR, PROMQL_VECTOR, t->pos);
    if (!e) return p->rc;
    char *name = NULL;
    int rc = 0;
    if (t->type != T_LBRACE) {
        name = strndup(p->src + t->pos, t->len);
        if (!name) rc = nomem(p);
        advance(p);
    }
    if (!rc && peek(p)->type == T_LBRACE) rc = parse_matcher_list(p, e);
    if (!rc) rc = check_selector(p, e, name);
    free(name);
    if (rc) {
        promql_expr_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

/* ---- calls and aggregations ------------------------------------------------- */

static const char *const PROMETHEUS_FUNCTIONS[] = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh",
    "count_over_time", "days_in_month", "day_of_month", "day_of_week", "day_of_year", "deg",
    "deriv", "exp", "floor", "histogram_count", "histogram_sum", "histogram_fraction",
    "histogram_quantile", "holt_winters", "hour", "idelta", "irate", "label_replace",
    "label_join", "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time",
    "minute", "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad",
    "resets", "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp",
    "vector", "year",
};

static const char *const FUNC_NAMES[] = {[FN_RATE] = "rate", [FN_INCREASE] = "increase", [FN_DELTA] = "delta"};
static const char *const AGG_NAMES[] = {[AGG_SUM] = "sum", [AGG_AVG] = "avg", [AGG_MIN] = "min",
                                        [AGG_MAX] = "max", [AGG_COUNT] = "count"};

static bool token_is(const parser *p, const token *t, const char *word)
{
    return t->len == strlen(word) && memcmp(p->src + t->pos, word, t->len) == 0;
}

/* "(" [ expr { "," expr } ] ")"; the arguments are appended to args (at most 2 kept). */
static int parse_args(parser *p, promql_expr **args, size_t *nargs)
{
    *nargs = 0;
    advance(p);   /* '(' */
    if (peek(p)->type == T_RPAREN) { advance(p); return 0; }
    for (;;) {
        promql_expr *a = NULL;
        int rc = parse_expr(p, 0, &a);
        if (rc) return rc;
        if (*nargs < 2) args[*nargs] = a;
        else promql_expr_free(a);
        (*nargs)++;
        if (peek(p)->type == T_RPAREN) { advance(p); return 0; }
        if (peek(p)->type != T_COMMA) return unexpected(p, "function call", "\",\" or \")\"");
        advance(p);
        if (peek(p)->type == T_RPAREN)
            return perr_at(p, p->toks.items[p->i - 1].pos, "trailing commas not allowed in function call args");
    }
}

static void free_args(promql_expr **args, size_t nargs)
{
    for (size_t k = 0; k < nargs && k < 2; k++) promql_expr_free(args[k]);
}

static int parse_call(parser *p, promql_expr **out)
{
    const token *name = peek(p);
    int fn = -1;
    for (int k = 0; k < 3; k++)
        if (token_is(p, name, FUNC_NAMES[k])) fn = k;
    if (fn < 0) {
        for (size_t k = 0; k < sizeof PROMETHEUS_FUNCTIONS / sizeof PROMETHEUS_FUNCTIONS[0]; k++)
            if (token_is(p, name, PROMETHEUS_FUNCTIONS[k]))
                return perr_at(p, name->pos, "function \"%s\" is not supported", PROMETHEUS_FUNCTIONS[k]);
        return perr_at(p, name->pos, "unknown function with name \"%.*s\"", (int)name->len, p->src + name->pos);
    }
    size_t pos = name->pos;
    advance(p);
    promql_expr *args[2] = {NULL, NULL};
    size_t nargs = 0;
    int rc = parse_args(p, args, &nargs);
    if (!rc && nargs != 1)
        rc = perr_at(p, pos, "expected 1 argument(s) in call to \"%s\", got %zu", FUNC_NAMES[fn], nargs);
    if (!rc && args[0]->type != PROMQL_MATRIX)
        rc = perr_at(p, args[0]->pos, "expected type range vector in call to function \"%s\", got %s",
                     FUNC_NAMES[fn], type_name(args[0]->type));
    promql_expr *e = rc ? NULL : new_node(p, NODE_CALL, PROMQL_VECTOR, pos);
    if (!e) {
        free_args(args, nargs);
        return p->rc;
    }
    e->fn = (func_id)fn;
    if ((rc = attach(p, e, args[0], NULL)) != 0) return rc;
    *out = e;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts and deduplicates the grouping labels. */
static void normalise_grouping(promql_expr *e)
{
    if (e->ngrouping < 2) return;
    qsort(e->grouping, e->ngrouping, sizeof *e->grouping, cmp_str);
    size_t w = 1;
    for (size_t r = 1; r < e->ngrouping; r++) {
        if (strcmp(e->grouping[r], e->grouping[w - 1]) == 0) free(e->grouping[r]);
        else e->grouping[w++] = e->grouping[r];
    }
    e->ngrouping = w;
}

static bool is_label_name(const parser *p, const token *t)
{
    return t->type == T_IDENT && (p->src[t->pos] < '0' || p->src[t->pos] > '9');
}

/* ("by" | "without") "(" labels ")"; the current token is the keyword. */
static int parse_grouping(parser *p, promql_expr *e)
{
    e->without = peek(p)->kw == KW_WITHOUT;
    advance(p);
    if (peek(p)->type != T_LPAREN) return unexpected(p, "grouping opts", "\"(\"");
    advance(p);
    for (;;) {
        const token *t = peek(p);
        if (t->type == T_RPAREN) break;
        if (!is_label_name(p, t)) return unexpected(p, "grouping opts", "label");
        char **g = realloc(e->grouping, (e->ngrouping + 1) * sizeof *g);
        if (!g) return nomem(p);
        e->grouping = g;
        if (!(g[e->ngrouping] = strndup(p->src + t->pos, t->len))) return nomem(p);
        e->ngrouping++;
        advance(p);
        if (peek(p)->type == T_COMMA) { advance(p); continue; }
        if (peek(p)->type != T_RPAREN) return unexpected(p, "grouping opts", "\",\" or \")\"");
    }
    advance(p);
    return 0;
}

static int check_aggregation_args(parser *p, size_t pos, promql_expr **args, size_t nargs)
{
    if (nargs == 0)
        return perr_at(p, pos, "no arguments for aggregate expression provided");
    if (nargs != 1)
        return perr_at(p, pos, "wrong number of arguments for aggregate expression provided, expected 1, got %zu", nargs);
    if (args[0]->type != PROMQL_VECTOR)
        return perr_at(p, args[0]->pos, "expected type instant vector in aggregation expression, got %s",
                       type_name(args[0]->type));
    return 0;
}

static int parse_aggregation(parser *p, promql_expr **out)
{
    const token *op = peek(p);
    if (op->kw > KW_MAX)
        return perr_at(p, op->pos, "aggregation \"%.*s\" is not supported", (int)op->len, p->src + op->pos);
    promql_expr *e = new_node(p, NODE_AGG, PROMQL_VECTOR, op->pos);
    if (!e) return p->rc;
    e->agg = op->kw == KW_SUM ? AGG_SUM : op->kw == KW_AVG ? AGG_AVG : op->kw == KW_MIN ? AGG_MIN
           : op->kw == KW_MAX ? AGG_MAX : AGG_COUNT;
    advance(p);
    bool modifier = peek(p)->kw == KW_BY || peek(p)->kw == KW_WITHOUT;
    int rc = modifier ? parse_grouping(p, e) : 0;
    promql_expr *args[2] = {NULL, NULL};
    size_t nargs = 0;
    if (!rc && peek(p)->type != T_LPAREN) rc = unexpected(p, "aggregation", "\"(\"");
    if (!rc) rc = parse_args(p, args, &nargs);
    if (!rc && !modifier && (peek(p)->kw == KW_BY || peek(p)->kw == KW_WITHOUT)) rc = parse_grouping(p, e);
    if (!rc) rc = check_aggregation_args(p, e->pos, args, nargs);
    if (rc) {
        free_args(args, nargs);
        promql_expr_free(e);
        return rc;
    }
    normalise_grouping(e);
    if ((rc = attach(p, e, args[0], NULL)) != 0) return rc;
    *out = e;
    return 0;
}

/* ---- primaries, postfix, unary --------------------------------------------- */

static int parse_number_literal(parser *p, promql_expr **out)
{
    const token *t = peek(p);
    char why[160];
    double v;
    if (promql_parse_number(p->src + t->pos, t->len, &v, why, sizeof why) != 0)
        return perr_at(p, t->pos, "%s", why);
    promql_expr *e = new_node(p, NODE_NUMBER, PROMQL_SCALAR, t->pos);
    if (!e) return p->rc;
    e->number = v;
    advance(p);
    *out = e;
    return 0;
}

static int parse_paren(parser *p, promql_expr **out)
{
    advance(p);
    promql_expr *e = NULL;
    int rc = parse_expr(p, 0, &e);
    if (rc) return rc;
    if (peek(p)->type != T_RPAREN) {
        promql_expr_free(e);
        return unexpected(p, NULL, "\")\"");
    }
    advance(p);
    *out = e;
    return 0;
}

/* An identifier in operand position: aggregation, call or metric name, as Prometheus decides. */
static int parse_identifier(parser *p, promql_expr **out)
{
    const token *t = peek(p), *n = peek2(p);
    if (promql_kw_is_aggregator(t->kw) && (n->type == T_LPAREN || n->kw == KW_BY || n->kw == KW_WITHOUT))
        return parse_aggregation(p, out);
    if (t->kw == KW_BOOL || t->kw == KW_ON || t->kw == KW_IGNORING || t->kw == KW_GROUP_LEFT ||
        t->kw == KW_GROUP_RIGHT || t->kw == KW_ATAN2)
        return unexpected(p, NULL, "expression");
    if (t->type == T_IDENT && t->kw == KW_NONE && n->type == T_LPAREN)
        return parse_call(p, out);
    return parse_selector(p, out);
}

static int parse_primary(parser *p, promql_expr **out, bool *parenthesised)
{
    const token *t = peek(p);
    *parenthesised = false;
    switch (t->type) {
    case T_NUMBER: return parse_number_literal(p, out);
    case T_STRING: return perr_at(p, t->pos, "string literals are not supported");
    case T_LPAREN: *parenthesised = true; return parse_paren(p, out);
    case T_LBRACE: return parse_selector(p, out);
    case T_IDENT: case T_METRIC_IDENT: return parse_identifier(p, out);
    default: return unexpected(p, NULL, "expression");
    }
}

/* "[" duration "]" after an operand; the current token is '['. */
static int parse_range(parser *p, promql_expr **e, bool parenthesised)
{
    size_t lb = peek(p)->pos;
    advance(p);
    const token *d = peek(p);
    if (d->type != T_DURATION) return unexpected(p, "range", "duration");
    char why[160];
    int64_t ms = 0;
    if (promql_parse_duration(p->src + d->pos, d->len, &ms, why, sizeof why) != 0)
        return perr_at(p, d->pos, "%s", why);
    if (ms == 0) return perr_at(p, d->pos, "duration must be greater than 0");
    advance(p);
    if (peek(p)->type == T_COLON) return perr_at(p, lb, "subqueries are not supported");
    if (peek(p)->type != T_RBRACKET) return unexpected(p, "subquery or range", "\":\" or \"]\"");
    advance(p);
    if ((*e)->kind != NODE_SELECTOR || parenthesised)
        return perr_at(p, lb, "ranges only allowed for vector selectors");
    promql_expr *r = new_node(p, NODE_RANGE, PROMQL_MATRIX, (*e)->pos);
    if (!r) return p->rc;
    r->range_ms = ms;
    int rc = attach(p, r, *e, NULL);
    if (rc) {
        *e = NULL;   /* attach freed it, with the selector */
        return rc;
    }
    *e = r;
    return 0;
}

static int parse_postfix(parser *p, promql_expr **out)
{
    promql_expr *e = NULL;
    bool parenthesised;
    int rc = parse_primary(p, &e, &parenthesised);
    while (!rc && peek(p)->type == T_LBRACKET) {
        rc = parse_range(p, &e, parenthesised);
        parenthesised = false;
    }
    if (rc) {
        promql_expr_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

static int parse_unary(parser *p, promql_expr **out)
{
    const token *t = peek(p);
    if (t->type != T_ADD && t->type != T_SUB)
        return parse_postfix(p, out);
    if (++p->depth > PROMQL_MAX_DEPTH)
        return perr_at(p, t->pos, "expression nested too deeply (more than %d levels)", PROMQL_MAX_DEPTH);
    size_t pos = t->pos;
    bool minus = t->type == T_SUB;
    advance(p);
    promql_expr *x = NULL;
    int rc = parse_unary(p, &x);
    p->depth--;
    if (rc) return rc;
    if (x->type == PROMQL_MATRIX) {
        promql_expr_free(x);
        return perr_at(p, pos, "unary expression only allowed on expressions of type scalar or instant vector, got \"range vector\"");
    }
    if (x->kind == NODE_NUMBER || !minus) {
        if (x->kind == NODE_NUMBER && minus) x->number = -x->number;
        x->pos = pos;
        *out = x;
        return 0;
    }
    promql_expr *e = new_node(p, NODE_NEG, x->type, pos);
    if (!e) {
        promql_expr_free(x);
        return p->rc;
    }
    if ((rc = attach(p, e, x, NULL)) != 0) return rc;
    *out = e;
    return 0;
}

/* ---- binary operators --------------------------------------------------------- */

static const char *const BINOP_TEXT[] = {[BIN_ADD] = "+", [BIN_SUB] = "-", [BIN_MUL] = "*", [BIN_DIV] = "/"};

static int binop_prec(binop op) { return (op == BIN_MUL || op == BIN_DIV) ? 2 : 1; }

/*
 * Classifies the current token in operator position: 0 not an operator (the
 * expression ends), 1 a supported operator (*op set), or an error for what
 * Prometheus has and this subset does not.
 */
static int classify_operator(parser *p, binop *op)
{
    const token *t = peek(p);
    int n = (int)t->len;
    const char *text = p->src + t->pos;
    switch (t->type) {
    case T_ADD: *op = BIN_ADD; return 1;
    case T_SUB: *op = BIN_SUB; return 1;
    case T_MUL: *op = BIN_MUL; return 1;
    case T_DIV: *op = BIN_DIV; return 1;
    case T_MOD: case T_POW:
        return perr_at(p, t->pos, "binary operator \"%.*s\" is not supported", n, text);
    case T_EQLC: case T_NEQ: case T_LSS: case T_LTE: case T_GTR: case T_GTE:
        return perr_at(p, t->pos, "comparison operator \"%.*s\" is not supported", n, text);
    case T_AT:
        return perr_at(p, t->pos, "\"@\" is not supported");
    case T_IDENT:
        if (t->kw == KW_AND || t->kw == KW_OR || t->kw == KW_UNLESS)
            return perr_at(p, t->pos, "set operator \"%.*s\" is not supported", n, text);
        if (t->kw == KW_ATAN2)
            return perr_at(p, t->pos, "binary operator \"%.*s\" is not supported", n, text);
        if (t->kw == KW_OFFSET)
            return perr_at(p, t->pos, "\"offset\" is not supported");
        return 0;
    default:
        return 0;
    }
}

/* Refuses the modifiers Prometheus allows after a binary operator. */
static int reject_modifiers(parser *p)
{
    const token *t = peek(p);
    if (t->type != T_IDENT) return 0;
    if (t->kw == KW_BOOL)
        return perr_at(p, t->pos, "\"bool\" modifier is not supported");
    if (t->kw == KW_ON || t->kw == KW_IGNORING || t->kw == KW_GROUP_LEFT || t->kw == KW_GROUP_RIGHT)
        return perr_at(p, t->pos, "vector matching (\"%.*s\") is not supported", (int)t->len, p->src + t->pos);
    return 0;
}

static int make_binary(parser *p, binop op, size_t op_pos, promql_expr *lhs, promql_expr *rhs, promql_expr **out)
{
    int rc = 0;
    if (lhs->type == PROMQL_MATRIX)
        rc = perr_at(p, lhs->pos, "binary expression must contain only scalar and instant vector types");
    else if (rhs->type == PROMQL_MATRIX)
        rc = perr_at(p, rhs->pos, "binary expression must contain only scalar and instant vector types");
    else if (lhs->type == PROMQL_VECTOR && rhs->type == PROMQL_VECTOR)
        rc = perr_at(p, op_pos, "binary operations between two vectors are not supported");
    promql_value_type type = (lhs->type == PROMQL_SCALAR && rhs->type == PROMQL_SCALAR) ? PROMQL_SCALAR : PROMQL_VECTOR;
    promql_expr *e = rc ? NULL : new_node(p, NODE_BINARY, type, lhs->pos);
    if (!e) {
        promql_expr_free(lhs);
        promql_expr_free(rhs);
        return p->rc;
    }
    e->op = op;
    if ((rc = attach(p, e, lhs, rhs)) != 0) return rc;
    *out = e;
    return 0;
}

/* Precedence climbing over + - (1) and * / (2), left associative. */
static int parse_expr(parser *p, int min_prec, promql_expr **out)
{
    if (p->depth + 1 > PROMQL_MAX_DEPTH)
        return perr_at(p, peek(p)->pos, "expression nested too deeply (more than %d levels)", PROMQL_MAX_DEPTH);
    p->depth++;
    promql_expr *lhs = NULL;
    int rc = parse_unary(p, &lhs);
    while (!rc) {
        binop op = BIN_ADD;
        int kind = classify_operator(p, &op);
        if (kind <= 0) { rc = kind; break; }
        if (binop_prec(op) < min_prec) break;
        size_t op_pos = peek(p)->pos;
        advance(p);
        promql_expr *rhs = NULL;
        rc = reject_modifiers(p);
        if (!rc) rc = parse_expr(p, binop_prec(op) + 1, &rhs);
        if (rc) break;
        rc = make_binary(p, op, op_pos, lhs, rhs, &lhs);
        if (rc) lhs = NULL;
    }
    p->depth--;
    if (rc) {
        promql_expr_free(lhs);
        return rc;
    }
    *out = lhs;
    return 0;
}

/* ---- entry points -------------------------------------------------------------- */

static int parser_init(parser *p, const char *text, size_t len, char *err, size_t errlen)
{
    memset(p, 0, sizeof *p);
    p->src = text;
    p->len = len;
    p->err = err;
    p->errlen = errlen;
    if (errlen) err[0] = '\0';
    if (promql_lex(text, len, &p->toks) != 0) return nomem(p);
    return 0;
}

static int parser_finish(parser *p, promql_expr *e, int rc, promql_expr **out)
{
    if (!rc && peek(p)->type != T_EOF)
        rc = unexpected(p, NULL, "operator or end of input");
    promql_tokens_free(&p->toks);
    if (rc) {
        promql_expr_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

int promql_parse(const char *query, size_t len, promql_expr **out, char *err, size_t errlen)
{
    parser p;
    *out = NULL;
    int rc = parser_init(&p, query, len, err, errlen);
    if (rc) return rc;
    promql_expr *e = NULL;
    if (peek(&p)->type == T_EOF)
        rc = perr_at(&p, 0, "no expression found in input");
    else
        rc = parse_expr(&p, 0, &e);
    return parser_finish(&p, e, rc, out);
}

int promql_parse_selector(const char *text, size_t len, promql_expr **out, char *err, size_t errlen)
{
    parser p;
    *out = NULL;
    int rc = parser_init(&p, text, len, err, errlen);
    if (rc) return rc;
    promql_expr *e = NULL;
    const token *t = peek(&p);
    if (t->type == T_LBRACE || t->type == T_IDENT || t->type == T_METRIC_IDENT)
        rc = parse_selector(&p, &e);
    else
        rc = unexpected(&p, NULL, "series selector");
    return parser_finish(&p, e, rc, out);
}

/* ==== canonical text ================================================================ */

typedef struct sbuf {
    char *buf;
    size_t cap;
    size_t len;
    bool over;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->over || b->len + n + 1 > b->cap) {
        b->over = true;
        return;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* A string literal that reads back to the same bytes: Go-style escapes, invalid UTF-8 as \xNN. */
static void put_quoted(sbuf *b, const char *s)
{
    static const char esc[] = "\a\b\f\n\r\t\v";
    static const char name[] = "abfnrtv";
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        char tmp[8];
        const char *e = u[i] ? strchr(esc, u[i]) : NULL;
        size_t k = promql_utf8_len(u + i, n - i);
        if (u[i] == '"' || u[i] == '\\') { tmp[0] = '\\'; tmp[1] = (char)u[i]; put(b, tmp, 2); i++; }
        else if (e) { tmp[0] = '\\'; tmp[1] = name[e - esc]; put(b, tmp, 2); i++; }
        else if (k == 0 || u[i] < 0x20 || u[i] == 0x7f) { snprintf(tmp, sizeof tmp, "\\x%02x", u[i]); put(b, tmp, 4); i++; }
        else { put(b, s + i, k); i += k; }
    }
    put(b, "\"", 1);
}

static const char *const MATCH_OP_TEXT[] = {[PROMQL_MATCH_EQ] = "=", [PROMQL_MATCH_NE] = "!=",
                                             [PROMQL_MATCH_RE] = "=~", [PROMQL_MATCH_NRE] = "!~"};

static int cmp_matcher(const promql_matcher *a, const promql_matcher *b)
{
    int c = strcmp(a->name, b->name);
    if (c) return c;
    if (a->op != b->op) return (int)a->op - (int)b->op;
    return strcmp(a->value, b->value);
}

static int cmp_matcher_ptr(const void *a, const void *b)
{
    return cmp_matcher(*(const promql_matcher *const *)a, *(const promql_matcher *const *)b);
}

/* Whether name can be written bare in front of the braces and read back as the same name. */
static bool printable_metric_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || (s[0] >= '0' && s[0] <= '9')) return false;
    for (size_t i = 0; i < n; i++)
        if (!is_alnum_ascii((unsigned char)s[i]) && s[i] != '_' && s[i] != ':') return false;
    if (promql_keyword_lookup(s, n) != KW_NONE) return false;
    return !(n == 3 && (strncasecmp(s, "inf", 3) == 0 || strncasecmp(s, "nan", 3) == 0));
}

/* Sorts, deduplicates (in the pointer array) and picks the name matcher, if one can lead. */
static size_t sort_matchers(const promql_expr *e, const promql_matcher **m, const promql_matcher **name)
{
    size_t n = 0, names = 0;
    for (size_t i = 0; i < e->nmatchers; i++) m[n++] = &e->matchers[i];
    if (n > 1) qsort(m, n, sizeof *m, cmp_matcher_ptr);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        if (w == 0 || cmp_matcher(m[i], m[w - 1]) != 0) m[w++] = m[i];
    *name = NULL;
    for (size_t i = 0; i < w; i++) {
        if (strcmp(m[i]->name, PROMQL_METRIC_NAME) != 0) continue;
        names++;
        if (m[i]->op == PROMQL_MATCH_EQ && printable_metric_name(m[i]->value)) *name = m[i];
    }
    if (names != 1) *name = NULL;
    return w;
}

static void format_selector(sbuf *b, const promql_expr *e)
{
    const promql_matcher **m = malloc((e->nmatchers ? e->nmatchers : 1) * sizeof *m);
    if (!m) {
        b->over = true;   /* reported as "buffer too small"; only under memory exhaustion */
        return;
    }
    const promql_matcher *name;
    size_t n = sort_matchers(e, m, &name);
    if (name) puts_(b, name->value);
    bool open = false;
    for (size_t i = 0; i < n; i++) {
        if (m[i] == name) continue;
        put(b, open ? "," : "{", 1);
        open = true;
        puts_(b, m[i]->name);
        puts_(b, MATCH_OP_TEXT[m[i]->op]);
        put_quoted(b, m[i]->value);
    }
    if (open) put(b, "}", 1);
    free(m);
}

static void format_node(sbuf *b, const promql_expr *e);

static void format_child(sbuf *b, const promql_expr *c, bool parens)
{
    if (parens) put(b, "(", 1);
    format_node(b, c);
    if (parens) put(b, ")", 1);
}

static void format_binary(sbuf *b, const promql_expr *e)
{
    int prec = binop_prec(e->op);
    format_child(b, e->lhs, e->lhs->kind == NODE_BINARY && binop_prec(e->lhs->op) < prec);
    put(b, " ", 1);
    puts_(b, BINOP_TEXT[e->op]);
    put(b, " ", 1);
    format_child(b, e->rhs, e->rhs->kind == NODE_BINARY && binop_prec(e->rhs->op) <= prec);
}

static void format_aggregation(sbuf *b, const promql_expr *e)
{
    puts_(b, AGG_NAMES[e->agg]);
    if (e->without || e->ngrouping) {
        puts_(b, e->without ? " without (" : " by (");
        for (size_t i = 0; i < e->ngrouping; i++) {
            if (i) puts_(b, ", ");
            puts_(b, e->grouping[i]);
        }
        puts_(b, ") ");
    }
    format_child(b, e->lhs, true);
}

static void format_node(sbuf *b, const promql_expr *e)
{
    char num[PROMQL_NUM_BUF];
    switch (e->kind) {
    case NODE_NUMBER:
        promql_format_number(e->number, num);
        puts_(b, num);
        return;
    case NODE_SELECTOR:
        format_selector(b, e);
        return;
    case NODE_RANGE:
        format_selector(b, e->lhs);
        promql_format_duration(e->range_ms, num);
        put(b, "[", 1);
        puts_(b, num);
        put(b, "]", 1);
        return;
    case NODE_NEG:
        put(b, "-", 1);
        format_child(b, e->lhs, e->lhs->kind == NODE_BINARY);
        return;
    case NODE_BINARY:
        format_binary(b, e);
        return;
    case NODE_AGG:
        format_aggregation(b, e);
        return;
    case NODE_CALL:
        puts_(b, FUNC_NAMES[e->fn]);
        format_child(b, e->lhs, true);
        return;
    }
}

int promql_format(const promql_expr *e, char *buf, size_t buflen)
{
    sbuf b = {.buf = buf, .cap = buflen, .len = 0, .over = buflen == 0};
    if (buflen) buf[0] = '\0';
    format_node(&b, e);
    if (b.over || b.len > (size_t)INT32_MAX) return -1;
    return (int)b.len;
}
