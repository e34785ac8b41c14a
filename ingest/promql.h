/*
 * promql.h — a PromQL subset: parse a query, evaluate it against a data source.
 *
 * Contract: pure. No I/O, no globals, no clocks: the caller gives the query
 * text, the evaluation times and a data source (a struct of one callback), and
 * gets back a value or an error code with a message it can show. Semantics are
 * Prometheus 2.x's (2.42, Debian 12) for the subset below; what is outside the
 * subset fails at parse time with PROMQL_ERR_BAD_DATA and a message naming it.
 *
 * The subset:
 *   numbers      1, 1.5, .5, 1e3, 0x1f, 010 (octal, as Go), Inf, NaN
 *   arithmetic   + - * / with parentheses and unary minus/plus; * and / bind
 *                tighter than + and -, both left associative; between scalars,
 *                or a vector and a scalar (either side). Not vector-vector.
 *   selectors    name, name{l="v", l!="v", l=~"re", l!~"re"}, {__name__="x"};
 *                strings in "..." or '...' with Go escapes, or `raw`
 *   ranges       sel[5m], durations y w d h m s ms in that order (1h30m)
 *   functions    rate, increase, delta over a range selector
 *   aggregations sum avg min max count, by (...) / without (...) before or
 *                after the argument
 * Regular expressions are POSIX ERE (glibc regcomp), fully anchored, not RE2:
 * see promql_parse.c for the differences and what is refused.
 *
 * Errors: parse errors read "LINE:COL: parse error: MESSAGE" like Prometheus,
 * COL being the 1-based byte column of the offending token.
 *
 * Ownership: every structure here owns its strings and arrays; each has one
 * free function, safe on a zeroed structure and idempotent after it.
 */
#ifndef TALLY_PROMQL_H
#define TALLY_PROMQL_H

#include <stddef.h>
#include <stdint.h>

#define PROMQL_ERR_BAD_DATA (-1)   /* parse error or unsupported construct */
#define PROMQL_ERR_EXECUTION (-2)  /* evaluation limit exceeded, e.g. too many samples */
#define PROMQL_ERR_SOURCE (-3)     /* the data source's select() failed: its message is passed on */
#define PROMQL_ERR_NOMEM (-4)      /* an allocation failed */

#define PROMQL_DEFAULT_LOOKBACK_MS 300000       /* Prometheus' --query.lookback-delta */
#define PROMQL_DEFAULT_MAX_SAMPLES 50000000     /* Prometheus' --query.max-samples */
#define PROMQL_MAX_STEPS 11000                  /* points per series of a range query */
#define PROMQL_MAX_DEPTH 256                    /* nesting (and tree height) of a parsed expression */

/* The bit pattern of Prometheus' staleness marker, a NaN that ends a series. */
#define PROMQL_STALE_NAN_BITS 0x7ff0000000000002ULL

typedef struct promql_label { char *name; char *value; } promql_label;   /* owned strings */

/* Sorted by name, names unique, no empty values; includes "__name__" when there is one. */
typedef struct promql_labels {
    promql_label *items;
    size_t count;
    size_t cap_;   /* private */
} promql_labels;

typedef enum promql_match_op { PROMQL_MATCH_EQ, PROMQL_MATCH_NE, PROMQL_MATCH_RE, PROMQL_MATCH_NRE } promql_match_op;

typedef struct promql_matcher {
    promql_match_op op;
    const char *name;
    const char *value;
    struct promql_regex *re_;   /* private: compiled for RE/NRE */
} promql_matcher;

typedef struct promql_sample { int64_t t_ms; double v; } promql_sample;

/* samples ascending by t_ms */
typedef struct promql_series {
    promql_labels labels;
    promql_sample *samples;
    size_t count;
    size_t cap_;   /* private */
} promql_series;

typedef struct promql_series_set {
    promql_series *items;
    size_t count;
    size_t cap_;   /* private */
} promql_series_set;

/* ---- building a data source's answer ------------------------------------ */

/*
 * Appends an empty series to set and points *out at it. The pointer stays
 * valid until the next append. Returns 0, or -1 when memory runs out (the set
 * is unchanged).
 */
int promql_series_set_add(promql_series_set *set, promql_series **out);

/*
 * Sets label name to value (both copied), keeping l sorted by name and
 * replacing an existing value. An empty value removes the label: in
 * Prometheus a label with an empty value does not exist. Returns 0, or -1
 * when memory runs out (l is unchanged).
 */
int promql_labels_add(promql_labels *l, const char *name, const char *value);

/* The value of label name in l, or NULL when l has no such label. */
const char *promql_labels_get(const promql_labels *l, const char *name);

/* Frees the strings and the array of l; leaves it empty. */
void promql_labels_free(promql_labels *l);

/* Appends a sample to s (the caller keeps them ascending). Returns 0 or -1 on OOM. */
int promql_series_push(promql_series *s, int64_t t_ms, double v);

/* Frees every series of set and the array; leaves it empty. */
void promql_series_set_free(promql_series_set *set);

/* Whether v is Prometheus' staleness marker (not any NaN: PROMQL_STALE_NAN_BITS). */
int promql_is_stale_nan(double v);

/* ---- matchers ------------------------------------------------------------ */

/*
 * Initialises m as `name op "value"` (copies both strings; compiles the
 * regular expression for RE/NRE, anchored at both ends). Returns 0,
 * PROMQL_ERR_BAD_DATA with err filled for a regular expression this module
 * does not accept, or PROMQL_ERR_NOMEM. On failure m needs no free.
 */
int promql_matcher_init(promql_matcher *m, promql_match_op op, const char *name, const char *value,
                        char *err, size_t errlen);

/* Frees what promql_matcher_init allocated. Safe on a zeroed matcher. */
void promql_matcher_free(promql_matcher *m);

/* Prometheus' labels.Compare, the order of every answer: pairwise by name
 * then value, then the shorter set first. 0 means the same label set. */
int promql_labels_compare(const promql_labels *a, const promql_labels *b);

/*
 * Whether labels satisfy every one of the n matchers (a missing label counts
 * as the empty value, as in Prometheus). The matchers must come from a parse
 * or from promql_matcher_init.
 */
int promql_matchers_match(const promql_matcher *m, size_t n, const promql_labels *labels);

/* ---- the data source ----------------------------------------------------- */

typedef struct promql_source {
    void *ctx;
    /*
     * Fill *out with every series matching all n matchers, with its samples
     * whose t_ms is in [min_ms, max_ms], ascending by t_ms. step_ms is the
     * query's step (0 for an instant query) for sources that derive per-step
     * windows. Return 0, or -1 with err filled (evaluation then fails with
     * PROMQL_ERR_SOURCE). The evaluator re-applies the matchers and the
     * window, so a source may answer with more than was asked for; two series
     * with the same labels, or samples out of order, fail with
     * PROMQL_ERR_SOURCE. The evaluator frees *out.
     */
    int (*select)(void *ctx, const promql_matcher *m, size_t n, int64_t min_ms, int64_t max_ms,
                  int64_t step_ms, promql_series_set *out, char *err, size_t errlen);
} promql_source;

/* ---- parsing ------------------------------------------------------------- */

typedef struct promql_expr promql_expr;   /* opaque AST */

typedef enum promql_value_type { PROMQL_SCALAR, PROMQL_VECTOR, PROMQL_MATRIX } promql_value_type;

/* Parses a duration ("5m", "1h30m", "100ms": units y w d h m s ms, descending,
 * each once) into milliseconds, as PromQL and the HTTP API's step read it.
 * 0, or -1 with why. */
int promql_parse_duration(const char *text, size_t len, int64_t *ms, char *why, size_t whylen);

/*
 * Parses len bytes of query (need not be NUL-terminated) into *out, which the
 * caller frees with promql_expr_free. Returns 0, PROMQL_ERR_BAD_DATA (err
 * names the position and what was expected or is not supported; *out is
 * NULL) or PROMQL_ERR_NOMEM.
 */
int promql_parse(const char *query, size_t len, promql_expr **out, char *err, size_t errlen);

/*
 * Parses a bare series selector, as /api/v1/series' match[] takes (no range,
 * no operators); it must have a matcher that does not match the empty string.
 * Its matchers are then read with promql_expr_matchers. Returns as
 * promql_parse.
 */
int promql_parse_selector(const char *text, size_t len, promql_expr **out, char *err, size_t errlen);

/* Frees an expression from either parse function. NULL is fine. */
void promql_expr_free(promql_expr *e);

/* The type of the value the expression evaluates to. */
promql_value_type promql_expr_type(const promql_expr *e);

/*
 * For a selector (what promql_parse_selector returns) sets *m and *n to its
 * matchers, owned by e, and returns 0; returns -1 for any other expression.
 */
int promql_expr_matchers(const promql_expr *e, const promql_matcher **m, size_t *n);

/*
 * Writes the canonical text of e into buf (NUL-terminated): matchers sorted
 * and deduplicated, `{__name__="x"}` written `x`, whitespace normalised,
 * redundant parentheses dropped, numbers in shortest round-trip form,
 * durations normalised (90m -> 1h30m), grouping labels sorted, the modifier
 * before the argument. Two queries that differ only in those ways have the
 * same text (a cache key); the text parses back to the same text. Returns the
 * length (without the NUL), or -1 if buflen is too small.
 */
int promql_format(const promql_expr *e, char *buf, size_t buflen);

/*
 * Calls fn for each vector selector in e (also those under a range), in the
 * order they appear in the query, with its matchers and their count. Stops at
 * and returns the first non-zero value fn returns; returns 0 otherwise.
 */
int promql_foreach_selector(const promql_expr *e, int (*fn)(void *ctx, const promql_matcher *m, size_t n),
                            void *ctx);

/* ---- evaluation ---------------------------------------------------------- */

typedef struct promql_result {
    promql_value_type type;
    int64_t t_ms; double scalar;          /* PROMQL_SCALAR */
    promql_series_set series;             /* VECTOR: each series holds exactly one sample; MATRIX: one series per label set */
} promql_result;

/*
 * lookback_ms: how far back an instant selector looks for a series' latest
 * sample (<= 0: PROMQL_DEFAULT_LOOKBACK_MS). max_samples: the most samples the
 * evaluation may hold at once, counting the samples loaded from the source and
 * every value computed from them (0: PROMQL_DEFAULT_MAX_SAMPLES); exceeding it
 * fails with PROMQL_ERR_EXECUTION "query processing would load too many
 * samples into memory in query execution". A NULL limits pointer means both
 * defaults.
 */
typedef struct promql_limits { int64_t lookback_ms; size_t max_samples; } promql_limits;

/*
 * Evaluates e at t_ms into *out (freed with promql_result_free): a scalar, a
 * vector (samples stamped t_ms) or, for a range selector, a matrix of the raw
 * samples in [t_ms - range, t_ms]. Series are sorted by labels. Each
 * selector's data is selected once. Returns 0, PROMQL_ERR_EXECUTION,
 * PROMQL_ERR_SOURCE or PROMQL_ERR_NOMEM with err filled; *out is then empty.
 */
int promql_eval_instant(const promql_expr *e, const promql_source *src, const promql_limits *lim,
                        int64_t t_ms, promql_result *out, char *err, size_t errlen);

/*
 * Evaluates e at start_ms, start_ms + step_ms, ... up to end_ms into a matrix
 * (a scalar expression gives one series without labels). Each selector's data
 * is selected once for the whole range and the steps are computed in memory.
 * PROMQL_ERR_BAD_DATA for a range vector expression, step_ms <= 0, end_ms <
 * start_ms, or more than PROMQL_MAX_STEPS steps; otherwise as
 * promql_eval_instant.
 */
int promql_eval_range(const promql_expr *e, const promql_source *src, const promql_limits *lim,
                      int64_t start_ms, int64_t end_ms, int64_t step_ms, promql_result *out,
                      char *err, size_t errlen);

/* Frees what an evaluation put in r. Safe on a zeroed result. */
void promql_result_free(promql_result *r);

#endif
