/*
 * test_index_table.c — the one hash table (index_table.h): entries found
 * after every growth, absent keys not found, colliding hashes kept apart,
 * clear empties it and keeps its capacity.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "hash.h"
#include "index_table.h"

#define N 10000

typedef struct keys {
    char text[N][16];
    size_t count;
    const char *wanted;   /* the key being looked up */
    uint32_t (*hash)(const char *);
} keys;

static uint32_t fnv(const char *s) { return hash_fnv1a(HASH_FNV1A_INIT, s, strlen(s)); }
static uint32_t constant(const char *s) { (void)s; return 7; } /* every key collides */

static int equal(const void *ctx, uint32_t index)
{
    const keys *k = ctx;
    return strcmp(k->text[index], k->wanted) == 0;
}

static uint32_t hash_at(const void *ctx, uint32_t index)
{
    const keys *k = ctx;
    return k->hash(k->text[index]);
}

static long find(const index_table *t, keys *k, const char *key)
{
    k->wanted = key;
    return index_table_find(t, k->hash(key), equal, k);
}

static void fill(index_table *t, keys *k, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(k->text[i], sizeof k->text[i], "key-%zu", i);
        assert_int_equal(index_table_add(t, k->hash(k->text[i]), (uint32_t)i, hash_at, k), 0);
        k->count++;
    }
}

static void test_grows_and_finds(void **state)
{
    (void)state;
    static keys k = {.hash = fnv};
    index_table t;
    assert_int_equal(index_table_init(&t, 2), 0);
    fill(&t, &k, N);
    assert_int_equal(t.count, N);
    assert_true(t.cap >= 2 * N); /* load at most 1/2 */
    for (size_t i = 0; i < N; i++)
        assert_int_equal(find(&t, &k, k.text[i]), (long)i);
    assert_int_equal(find(&t, &k, "key-10000"), -1);
    assert_int_equal(find(&t, &k, ""), -1);
    size_t cap = t.cap;
    index_table_clear(&t);
    assert_int_equal(t.count, 0);
    assert_int_equal(t.cap, cap);
    assert_int_equal(find(&t, &k, "key-1"), -1);
    index_table_free(&t);
}

static void test_collisions(void **state)
{
    (void)state;
    static keys k = {.hash = constant};
    index_table t;
    assert_int_equal(index_table_init(&t, 4), 0);
    fill(&t, &k, 300);
    for (size_t i = 0; i < 300; i++)
        assert_int_equal(find(&t, &k, k.text[i]), (long)i);
    assert_int_equal(find(&t, &k, "key-300"), -1);
    index_table_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grows_and_finds),
        cmocka_unit_test(test_collisions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
