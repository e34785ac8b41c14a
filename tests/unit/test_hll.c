/*
 * test_hll.c — the HyperLogLog of StatsD sets (hll.h): estimates against
 * exact distinct counts, merge as the union, the sparse and dense forms, the
 * on-disk format and corrupt input. Members are strings "FAMILY-N", so each
 * family is an independent set and the results are reproducible (the hash
 * is hash_digest64). The errors seen are printed ("measured: ...").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "hash.h"
#include "hll.h"
#include "varint.h"

#define STD_ERROR (1.04 / 128.0) /* 1.04 / sqrt(16384) */

static int add_member(hll *h, const char *family, uint64_t n)
{
    char m[48];
    int len = snprintf(m, sizeof m, "%s-%llu", family, (unsigned long long)n);
    return hll_add(h, m, (size_t)len);
}

/* A sketch of members from..to-1 of a family. */
static hll *sketch_of(const char *family, uint64_t from, uint64_t to)
{
    hll *h = hll_new();
    assert_non_null(h);
    for (uint64_t i = from; i < to; i++)
        assert_int_not_equal(add_member(h, family, i), -1);
    return h;
}

static void encode(const hll *h, unsigned char **out, size_t *len)
{
    assert_int_equal(hll_encode(h, out, len), 0);
}

static void assert_same_encoding(const hll *a, const hll *b)
{
    unsigned char *ea, *eb;
    size_t la, lb;
    encode(a, &ea, &la);
    encode(b, &eb, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(ea, eb, la);
    free(ea);
    free(eb);
}

static double rel_error(uint64_t got, uint64_t want)
{
    return fabs((double)got - (double)want) / (double)want;
}

/* ---- estimates ------------------------------------------------------------ */

/* Up to HLL_SPARSE_MAX set registers the sketch is sparse at precision 25:
 * every count up to 1000 must be exact or within 2 (one collision among
 * 2^25 registers costs one); past the switch to dense at ~1024 it is within
 * 3 standard errors of the linear-counting regime. */
static void test_small_counts(void **state)
{
    (void)state;
    static const char *families[] = {"a", "user", "host", "ip", "session", "q", "z"};
    for (size_t f = 0; f < sizeof families / sizeof families[0]; f++) {
        hll *h = hll_new();
        assert_int_equal(hll_count(h), 0);
        int worst_300 = 0, worst_1000 = 0;
        for (uint64_t n = 1; n <= 2000; n++) {
            assert_int_not_equal(add_member(h, families[f], n), -1);
            if (n > 1000)
                continue; /* counted once at the end (a dense count reads 16384 registers) */
            int off = abs((int)hll_count(h) - (int)n);
            if (n <= 10)
                assert_int_equal(hll_count(h), n);
            if (n <= 300 && off > worst_300)
                worst_300 = off;
            if (n <= 1000 && off > worst_1000)
                worst_1000 = off;
            if (n == 100)
                assert_int_equal(hll_count(h), 100);
        }
        assert_true(worst_300 <= 1);
        assert_true(worst_1000 <= 2);
        uint64_t c = hll_count(h);
        assert_true(rel_error(c, 2000) <= 3 * 0.0058); /* dense, linear-counting regime */
        printf("measured: family %-8s worst |error| n<=300: %d, n<=1000: %d; n=2000: %llu\n",
               families[f], worst_300, worst_1000, (unsigned long long)c);
        hll_free(h);
    }
}

static void test_large_counts(void **state)
{
    (void)state;
    static const struct {
        const char *family;
        uint64_t n;
    } cases[] = {{"user", 100000}, {"host", 100000}, {"ip", 100000}, {"user", 1000000}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hll *h = sketch_of(cases[i].family, 0, cases[i].n);
        double e = rel_error(hll_count(h), cases[i].n);
        printf("measured: %-4s n=%-7llu estimate %llu, error %.3f%% (3 std errors %.2f%%)\n",
               cases[i].family, (unsigned long long)cases[i].n,
               (unsigned long long)hll_count(h), 100 * e, 300 * STD_ERROR);
        assert_true(e <= 3 * STD_ERROR);
        assert_true(hll_is_dense(h));
        hll_free(h);
    }
}

static void test_duplicates(void **state)
{
    (void)state;
    hll *h = hll_new();
    assert_int_equal(hll_add(h, "x", 1), 1);
    assert_int_equal(hll_add(h, "x", 1), 0);
    assert_int_equal(hll_add(h, NULL, 0), 1); /* the empty member is a member */
    assert_int_equal(hll_add(h, "", 0), 0);
    assert_int_equal(hll_count(h), 2);
    hll_free(h);
    for (uint64_t n = 500; n <= 50000; n *= 100) { /* sparse, then dense */
        h = sketch_of("dup", 0, n);
        uint64_t c = hll_count(h);
        unsigned char *e1, *e2;
        size_t l1, l2;
        encode(h, &e1, &l1);
        for (int round = 0; round < 3; round++)
            for (uint64_t i = 0; i < n; i++)
                assert_int_equal(add_member(h, "dup", i), 0);
        assert_int_equal(hll_count(h), c);
        encode(h, &e2, &l2);
        assert_int_equal(l1, l2);
        assert_memory_equal(e1, e2, l1);
        free(e1);
        free(e2);
        hll_free(h);
    }
}

static void test_clear(void **state)
{
    (void)state;
    hll *h = sketch_of("c", 0, 5000);
    assert_true(hll_is_dense(h));
    hll_clear(h);
    assert_false(hll_is_dense(h));
    assert_int_equal(hll_count(h), 0);
    assert_int_equal(add_member(h, "c", 1), 1);
    assert_int_equal(hll_count(h), 1);
    hll_free(h);
    hll_free(NULL);
}

/* ---- merge ---------------------------------------------------------------- */

/* Sketches of [a0, a1) and [b0, b1) merged = the sketch of their union. */
static void check_union(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1, uint64_t exact)
{
    hll *a = sketch_of("m", a0, a1), *b = sketch_of("m", b0, b1), *u = hll_new();
    for (uint64_t i = a0; i < a1; i++)
        assert_int_not_equal(add_member(u, "m", i), -1);
    for (uint64_t i = b0; i < b1; i++)
        assert_int_not_equal(add_member(u, "m", i), -1);
    hll *ab = hll_new(), *ba = hll_new();
    assert_int_equal(hll_merge(ab, a), 0);
    assert_int_equal(hll_merge(ab, b), 0);
    assert_int_equal(hll_merge(ba, b), 0);
    assert_int_equal(hll_merge(ba, a), 0);
    assert_same_encoding(ab, u);
    assert_same_encoding(ba, u);
    assert_int_equal(hll_count(ab), hll_count(u));
    assert_int_equal(hll_merge(a, b), 0); /* into a non-empty one */
    assert_same_encoding(a, u);
    assert_int_equal(hll_merge(a, a), 0); /* idempotent */
    assert_same_encoding(a, u);
    assert_int_equal(hll_merge(a, b), 0);
    assert_same_encoding(a, u);
    double e = rel_error(hll_count(u), exact);
    assert_true(e <= 3 * STD_ERROR);
    printf("measured: union [%llu,%llu) + [%llu,%llu): exact %llu, estimate %llu (%.3f%%)\n",
           (unsigned long long)a0, (unsigned long long)a1, (unsigned long long)b0,
           (unsigned long long)b1, (unsigned long long)exact, (unsigned long long)hll_count(u),
           100 * e);
    hll_free(a);
    hll_free(b);
    hll_free(u);
    hll_free(ab);
    hll_free(ba);
}

static void test_merge(void **state)
{
    (void)state;
    check_union(0, 300, 300, 600, 600);            /* sparse + sparse, disjoint */
    check_union(0, 300, 200, 500, 500);            /* sparse + sparse, overlapping */
    check_union(0, 800, 800, 1600, 1600);          /* sparse + sparse -> dense */
    check_union(0, 100, 100, 30000, 30000);        /* sparse + dense */
    check_union(0, 30000, 29000, 29500, 30000);    /* dense + sparse (a subset) */
    check_union(0, 60000, 40000, 100000, 100000);  /* dense + dense, overlapping */
    check_union(0, 50000, 50000, 100000, 100000);  /* dense + dense, disjoint */
    hll *e = hll_new(), *f = hll_new();
    assert_int_equal(hll_merge(e, f), 0);
    assert_int_equal(hll_count(e), 0);
    hll_free(e);
    hll_free(f);
}

/* ---- sparse and dense ----------------------------------------------------- */

/* The dense registers of members 0..n-1 of a family, from their hashes as
 * hll.h states the rule (index: the low 14 bits; rank: 1 + trailing zeros
 * of the other 50 bits, 51 when they are all zero): a reference independent
 * of hll.c's sparse entries and their folding. */
static void reference_registers(const char *family, uint64_t n, uint8_t *regs)
{
    memset(regs, 0, HLL_REGISTERS);
    for (uint64_t i = 0; i < n; i++) {
        char m[48];
        int len = snprintf(m, sizeof m, "%s-%llu", family, (unsigned long long)i);
        uint64_t hash = hash_digest64(m, (size_t)len), rest = hash >> 14;
        uint8_t rank = 1;
        while (rank < 51 && !(rest & 1)) {
            rest >>= 1;
            rank++;
        }
        if (rank > regs[hash & 16383])
            regs[hash & 16383] = rank;
    }
}

/* The packed dense-form blob of registers, built here independently of
 * hll.c: register i in bits 6i..6i+5, least significant bit first. */
static unsigned char *dense_blob(const uint8_t *regs, size_t *len)
{
    unsigned char *b = calloc(3 + HLL_DENSE_BYTES, 1);
    b[0] = 1;
    b[1] = 14;
    b[2] = 2;
    for (uint32_t i = 0; i < HLL_REGISTERS; i++)
        for (int bit = 0; bit < 6; bit++)
            if (regs[i] >> bit & 1)
                b[3 + (6 * i + bit) / 8] |= (unsigned char)(1u << ((6 * i + bit) % 8));
    *len = 3 + HLL_DENSE_BYTES;
    return b;
}

/* Checks h, holding members 0..n-1 of "t" and dense, against the reference
 * registers; returns the form it encodes to. */
static unsigned check_reference(const hll *h, uint64_t n)
{
    uint8_t regs[HLL_REGISTERS];
    size_t dlen, len;
    reference_registers("t", n, regs);
    unsigned char *d = dense_blob(regs, &dlen), *e;
    hll *t = hll_new();
    assert_int_equal(hll_decode(t, d, dlen, NULL, 0), 0);
    assert_true(hll_is_dense(t));
    assert_same_encoding(t, h);
    assert_int_equal(hll_count(t), hll_count(h));
    encode(h, &e, &len);
    unsigned form = e[2];
    if (form == HLL_FORM_DENSE)
        assert_int_equal(len, 3 + HLL_DENSE_BYTES);
    else
        assert_true(form == HLL_FORM_DENSE_LIST && len < 3 + HLL_DENSE_BYTES);
    free(e);
    free(d);
    hll_free(t);
    return form;
}

/* A sketch that has just turned dense holds exactly the registers the
 * members' hashes give, and encodes like them; the encoding then moves from
 * the dense list (form 3) to the packed form (2) once that is shorter. */
static void test_sparse_to_dense(void **state)
{
    (void)state;
    hll *h = hll_new();
    uint64_t n = 0;
    while (!hll_is_dense(h)) {
        unsigned char *e;
        size_t len;
        encode(h, &e, &len);
        assert_int_equal(e[2], HLL_FORM_SPARSE);
        free(e);
        assert_int_equal(add_member(h, "t", n++), 1); /* each new member sets an entry */
    }
    printf("measured: dense after %llu members\n", (unsigned long long)n);
    assert_true(n > HLL_SPARSE_MAX && n < HLL_SPARSE_MAX + 10);
    while (check_reference(h, n) != HLL_FORM_DENSE)
        for (uint64_t stop = n + 512; n < stop; n++)
            assert_int_not_equal(add_member(h, "t", n), -1);
    printf("measured: packed dense encoding from ~%llu members\n", (unsigned long long)n);
    hll_free(h);
}

/* ---- encoding ------------------------------------------------------------- */

static void check_round_trip(const hll *h, unsigned form)
{
    unsigned char *e1, *e2;
    size_t l1, l2;
    char err[128] = "";
    encode(h, &e1, &l1);
    assert_int_equal(e1[0], HLL_FORMAT_VERSION);
    assert_int_equal(e1[1], HLL_PRECISION);
    assert_int_equal(e1[2], form);
    hll *t = hll_new();
    if (hll_decode(t, e1, l1, err, sizeof err) != 0)
        fail_msg("decode: %s", err);
    encode(t, &e2, &l2);
    assert_int_equal(l1, l2);
    assert_memory_equal(e1, e2, l1);
    assert_int_equal(hll_count(t), hll_count(h));
    free(e1);
    free(e2);
    hll_free(t);
}

static void test_round_trip(void **state)
{
    (void)state;
    hll *h = hll_new();
    check_round_trip(h, HLL_FORM_SPARSE);
    unsigned char *e;
    size_t len;
    encode(h, &e, &len);
    assert_int_equal(len, 4); /* version, precision, form, n = 0 */
    free(e);
    hll_free(h);
    static const uint64_t sizes[] = {1, 10, 500, 1500, 5000, 100000};
    static const unsigned forms[] = {HLL_FORM_SPARSE, HLL_FORM_SPARSE, HLL_FORM_SPARSE,
                                     HLL_FORM_DENSE_LIST, HLL_FORM_DENSE_LIST, HLL_FORM_DENSE};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        h = sketch_of("r", 0, sizes[i]);
        check_round_trip(h, forms[i]);
        encode(h, &e, &len);
        printf("measured: %llu members encode to %zu bytes\n", (unsigned long long)sizes[i], len);
        free(e);
        hll_free(h);
    }
    /* a sparse list longer than HLL_SPARSE_MAX (from another writer) decodes dense */
    unsigned char *many = malloc(3 + 2 + 2000);
    memcpy(many, (unsigned char[]){1, 14, 1, 0xD0, 0x0F}, 5); /* n = 2000 */
    memset(many + 5, 0x01, 2000);                             /* indexes 0..1999, rank 1 */
    h = hll_new();
    assert_int_equal(hll_decode(h, many, 5 + 2000, NULL, 0), 0);
    assert_true(hll_is_dense(h));
    /* = dense registers 0..1999 at rank 11 + 1 (their upper 11 index bits are 0) */
    many[2] = HLL_FORM_DENSE_LIST;
    memset(many + 5, 12, 2000);
    hll *folded = hll_new();
    assert_int_equal(hll_decode(folded, many, 5 + 2000, NULL, 0), 0);
    assert_same_encoding(h, folded);
    hll_free(folded);
    hll_free(h);
    free(many);
    /* decoding merges */
    hll *a = sketch_of("r", 0, 700), *b = sketch_of("r", 500, 3000), *u = sketch_of("r", 0, 3000);
    unsigned char *ea, *eb;
    size_t la, lb;
    encode(a, &ea, &la);
    encode(b, &eb, &lb);
    hll *t = hll_new();
    assert_int_equal(hll_decode(t, ea, la, NULL, 0), 0);
    assert_int_equal(hll_decode(t, eb, lb, NULL, 0), 0);
    assert_same_encoding(t, u);
    free(ea);
    free(eb);
    hll_free(a);
    hll_free(b);
    hll_free(u);
    hll_free(t);
}

/* Decodes into a sketch holding some members; on refusal it is unchanged. */
static int decode_guarded(const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    static hll *ref;
    if (!ref)
        ref = sketch_of("g", 0, 20); /* kept for the whole run */
    hll *t = hll_new();
    assert_int_equal(hll_merge(t, ref), 0);
    int rc = hll_decode(t, buf, len, err, errlen);
    if (rc != 0)
        assert_same_encoding(t, ref);
    else
        (void)hll_count(t);
    hll_free(t);
    return rc;
}

static void expect_refused(const unsigned char *b, size_t len, const char *want)
{
    char err[128] = "";
    assert_int_equal(decode_guarded(b, len, err, sizeof err), -1);
    if (!strstr(err, want))
        fail_msg("error \"%s\" does not say \"%s\"", err, want);
}

static uint64_t rng = 0x5EED;

static uint64_t rng_next(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void test_corrupt(void **state)
{
    (void)state;
    hll *small = sketch_of("k", 0, 200), *big = sketch_of("k", 0, 50000);
    unsigned char *s, *d;
    size_t sl, dl;
    char err[128];
    encode(small, &s, &sl);
    encode(big, &d, &dl);
    assert_int_equal(d[2], HLL_FORM_DENSE);
    for (size_t n = 0; n < sl; n++) {
        err[0] = 0;
        assert_int_equal(decode_guarded(s, n, err, sizeof err), -1);
        assert_true(err[0] != 0);
    }
    for (size_t n = 0; n < dl; n += n < 16 || n > dl - 16 ? 1 : 97)
        assert_int_equal(decode_guarded(d, n, NULL, 0), -1);
    assert_int_equal(decode_guarded(NULL, 0, err, sizeof err), -1);
    /* every bit flip of the sparse blob: refused or accepted, never a crash */
    size_t accepted = 0, tried = 0;
    unsigned char *m = malloc(dl);
    for (size_t i = 0; i < sl; i++)
        for (int bit = 0; bit < 8; bit++, tried++) {
            memcpy(m, s, sl);
            m[i] ^= (unsigned char)(1u << bit);
            accepted += decode_guarded(m, sl, NULL, 0) == 0;
        }
    for (int i = 0; i < 200; i++, tried++) { /* a few flips of the dense one */
        memcpy(m, d, dl);
        m[3 + rng_next() % HLL_DENSE_BYTES] ^= (unsigned char)(1u << (rng_next() % 8));
        accepted += decode_guarded(m, dl, NULL, 0) == 0;
    }
    unsigned char buf[64];
    for (int i = 0; i < 8000; i++, tried++) {
        size_t n = rng_next() % sizeof buf;
        for (size_t j = 0; j < n; j++)
            buf[j] = (unsigned char)rng_next();
        if (n >= 3 && i % 2) {
            buf[0] = 1;
            buf[1] = 14;
            buf[2] = 1;
        }
        accepted += decode_guarded(buf, n, NULL, 0) == 0;
    }
    printf("measured: corrupt inputs accepted as some valid sketch: %zu of %zu\n", accepted, tried);
    /* named faults */
    const struct {
        unsigned char b[9];
        size_t len;
        const char *err;
    } cases[] = {
        {{2, 14, 1, 0}, 4, "unsupported hll version 2"},
        {{1, 12, 1, 0}, 4, "unsupported hll precision 12"},
        {{1, 14, 4, 0}, 4, "unknown hll form 4"},
        {{1, 14, 1, 0, 0}, 5, "trailing"},
        {{1, 14, 1, 1, 0}, 5, "rank 0"},                       /* register 0, rank 0 */
        {{1, 14, 1, 1, 41}, 5, "rank 41"},                     /* sparse ranks end at 40 */
        {{1, 14, 3, 1, 52}, 5, "rank 52"},                     /* dense ranks end at 51 */
        {{1, 14, 1, 3, 1, 1}, 6, "truncated"},                 /* three announced, two given */
        {{1, 14, 1, 1, 0x81, 0x80, 0x80, 0x80, 0x08}, 9, "index past 33554431"}, /* gap 2^25 */
        {{1, 14, 3, 1, 0x81, 0x80, 0x40}, 7, "index past 16383"},    /* gap 16384 */
        {{1, 14, 3, 2, 0xC1, 0xFF, 0x3F, 1}, 8, "index past 16383"}, /* 16383, then one more */
        {{1, 14, 3, 0x81, 0x80, 0x01}, 6, "exceeds 16384"},          /* 16385 registers */
        {{1, 14, 1, 0x81, 0x80, 0x80, 0x10}, 7, "exceeds 33554432"}, /* 2^25 + 1 registers */
        {{1, 14, 1, 1, 0x81, 0x00}, 6, "malformed"},                 /* overlong varint */
        {{1, 14}, 2, "truncated"},
        {{1, 14, 2, 0}, 4, "truncated dense"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        expect_refused(cases[i].b, cases[i].len, cases[i].err);
    /* a dense register above 51 */
    memcpy(m, d, dl);
    m[3] |= 0x3F; /* register 0 = 63 */
    expect_refused(m, dl, "rank 63");
    memcpy(m, d, dl);
    m[dl - 1] |= 0xFC; /* the last register = 63 */
    expect_refused(m, dl, "register 16383");
    unsigned char *longer = malloc(dl + 1);
    memcpy(longer, d, dl);
    longer[dl] = 0;
    expect_refused(longer, dl + 1, "trailing");
    free(longer);
    free(m);
    free(s);
    free(d);
    hll_free(small);
    hll_free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_counts),
        cmocka_unit_test(test_large_counts),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_clear),
        cmocka_unit_test(test_merge),
        cmocka_unit_test(test_sparse_to_dense),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_corrupt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
