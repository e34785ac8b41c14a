/*
 * promql_internal.h — what the PromQL lexer, parser and evaluator share.
 *
 * Not a public header: the token list the lexer hands the parser, the AST the
 * parser hands the evaluator, and the lexical helpers (strings, numbers,
 * durations) both the parser and the canonical formatter need.
 */
#ifndef TALLY_PROMQL_INTERNAL_H
#define TALLY_PROMQL_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "promql.h"

/* ---- tokens (promql_lex.c) ----------------------------------------------- */

typedef enum tok_type {
    T_EOF, T_ERROR,
    T_IDENT,         /* [A-Za-z_][A-Za-z0-9_]*, and keywords (kw != KW_NONE) outside braces */
    T_METRIC_IDENT,  /* an identifier with a ':' (outside braces only) */
    T_NUMBER, T_DURATION, T_STRING,
    T_LPAREN, T_RPAREN, T_LBRACE, T_RBRACE, T_LBRACKET, T_RBRACKET, T_COMMA, T_COLON, T_AT,
    T_ADD, T_SUB, T_MUL, T_DIV, T_MOD, T_POW,
    T_EQL, T_EQLC, T_NEQ, T_LSS, T_LTE, T_GTR, T_GTE, T_EQL_REGEX, T_NEQ_REGEX,
} tok_type;

/* Words the lexer recognises outside braces, case-insensitively (Prometheus' key map). */
typedef enum keyword {
    KW_NONE,
    KW_AND, KW_OR, KW_UNLESS, KW_ATAN2,                        /* operators */
    KW_SUM, KW_AVG, KW_COUNT, KW_MIN, KW_MAX,                  /* supported aggregations */
    KW_GROUP, KW_STDDEV, KW_STDVAR, KW_TOPK, KW_BOTTOMK, KW_COUNT_VALUES, KW_QUANTILE,
    KW_OFFSET, KW_BY, KW_WITHOUT, KW_ON, KW_IGNORING, KW_GROUP_LEFT, KW_GROUP_RIGHT, KW_BOOL,
    KW_START, KW_END,
} keyword;

typedef struct token {
    tok_type type;
    keyword kw;      /* T_IDENT only */
    size_t pos;      /* byte offset in the query */
    size_t len;      /* bytes of the token's text (strings include their quotes) */
} token;

/* The tokens of one query; the last one is T_EOF or T_ERROR (lexing stops at the first error). */
typedef struct token_list {
    token *items;
    size_t count;
    size_t cap;
    char error[192];   /* the message of the final T_ERROR token */
} token_list;

/* Lexes len bytes of src into *out (zeroed first). Returns 0 or PROMQL_ERR_NOMEM. */
int promql_lex(const char *src, size_t len, token_list *out);
void promql_tokens_free(token_list *t);

bool promql_kw_is_aggregator(keyword kw);
/* The keyword a word spells (case-insensitive), KW_NONE if none. */
keyword promql_keyword_lookup(const char *word, size_t len);

/*
 * Unquotes a T_STRING's text (quotes included, already validated by the lexer)
 * into a new NUL-terminated string. Returns 0 or PROMQL_ERR_NOMEM.
 */
int promql_unquote(const char *text, size_t len, char **out);

/* Parses a T_NUMBER's text like Prometheus (Go ParseInt base 0, then ParseFloat). 0, or -1 with why. */
int promql_parse_number(const char *text, size_t len, double *out, char *why, size_t whylen);


/* Canonical texts; buffers of PROMQL_NUM_BUF bytes are always large enough. */
#define PROMQL_NUM_BUF 40
void promql_format_duration(int64_t ms, char *buf);
void promql_format_number(double v, char *buf);

/* Length of the valid UTF-8 sequence at s (at most avail bytes), 0 if invalid. */
size_t promql_utf8_len(const unsigned char *s, size_t avail);

/* ---- the AST (promql_parse.c builds it, promql_eval.c reads it) ---------- */

typedef enum node_kind { NODE_NUMBER, NODE_SELECTOR, NODE_RANGE, NODE_NEG, NODE_BINARY, NODE_AGG, NODE_CALL } node_kind;
typedef enum binop { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } binop;
typedef enum aggop { AGG_SUM, AGG_AVG, AGG_MIN, AGG_MAX, AGG_COUNT } aggop;
typedef enum func_id { FN_RATE, FN_INCREASE, FN_DELTA } func_id;

struct promql_expr {
    node_kind kind;
    promql_value_type type;
    size_t pos;                  /* byte offset of the node's first token */
    size_t height;               /* 1 for a leaf; bounded by PROMQL_MAX_DEPTH */
    double number;               /* NODE_NUMBER */
    promql_matcher *matchers;    /* NODE_SELECTOR */
    size_t nmatchers;
    int64_t range_ms;            /* NODE_RANGE: lhs is the selector */
    binop op;                    /* NODE_BINARY: lhs op rhs */
    aggop agg;                   /* NODE_AGG: agg by/without (grouping) (lhs) */
    char **grouping;             /* sorted, unique */
    size_t ngrouping;
    bool without;
    func_id fn;                  /* NODE_CALL: fn(lhs), lhs a NODE_RANGE */
    promql_expr *lhs;
    promql_expr *rhs;
};

#define PROMQL_METRIC_NAME "__name__"

#endif
