/*
 * test_redis_hll.c — a Tally set holds Redis' registers (redis_hll.h):
 * MurmurHash64A pinned by vectors, the dense string's layout, and, against a
 * temporary real redis-server, that hll_add_hash(redis_hll_hash(digest))
 * sets exactly the registers PFADD of the digest's 8 bytes sets (PFDEBUG
 * GETREG), that redis_hll_dense() writes what PFDEBUG TODENSE leaves in the
 * key and redis_hll_sparse() what Redis keeps for a small set, and that
 * Redis takes either string from SET as a HyperLogLog.
 * Then the rebuild of a set (rule 5): sets flushed to a temporary SQLite
 * file by the store, their union per series (set_union.h) SET as the
 * rebuild does, a Kafka tail applied through the live update: PFCOUNT and
 * every register equal those of a key PFADDed with every member directly.
 *
 * The server: `redis-server --port 26399 --save '' --appendonly no
 * --daemonize yes` (TALLY_UNIT_REDIS_PORT overrides the port), started by
 * the group setup and shut down by its teardown. Without redis-server in
 * PATH the tests that need it are skipped, with a message saying so.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "aggregate.h"
#include "hash.h"
#include "hll.h"
#include "live_update.h"
#include "pending.h"
#include "redis_hll.h"
#include "redis_keys.h"
#include "set_union.h"
#include "store.h"

static redisContext *redis; /* NULL: no redis-server, the Redis tests skip */

#define DEFAULT_PORT 26399

static int server_port(void)
{
    const char *p = getenv("TALLY_UNIT_REDIS_PORT");
    return p && atoi(p) > 0 ? atoi(p) : DEFAULT_PORT;
}

/* Starts the temporary redis-server and connects (within 5 s); NULL, with
 * a message, when there is no redis-server. A server that cannot start is
 * a failure. */
static redisContext *server_start(void)
{
    if (system("command -v redis-server >/dev/null 2>&1") != 0) {
        printf("unit_redis_hll: redis-server not found in PATH: the tests against a real Redis "
               "are SKIPPED (apt-get install redis-server)\n");
        return NULL;
    }
    char cmd[256];
    snprintf(cmd, sizeof cmd,
             "redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize yes "
             "--logfile /dev/null",
             server_port());
    if (system(cmd) != 0)
        fail_msg("cannot start: %s", cmd);
    for (int i = 0; i < 100; i++) {
        redisContext *c = redisConnect("127.0.0.1", server_port());
        if (c && !c->err) {
            redisReply *r = redisCommand(c, "PING");
            int up = r && r->type == REDIS_REPLY_STATUS;
            if (r)
                freeReplyObject(r);
            if (up)
                return c;
        }
        redisFree(c);
        usleep(50 * 1000);
    }
    fail_msg("redis-server on port %d did not answer within 5 s", server_port());
    return NULL;
}

static void server_stop(redisContext *c)
{
    if (!c)
        return;
    redisReply *r = redisCommand(c, "SHUTDOWN NOSAVE"); /* (no reply: the server is gone) */
    if (r)
        freeReplyObject(r);
    redisFree(c);
}

/* The digest of member "FAMILY-N", as the parser makes it (event.h). */
static uint64_t member_digest(const char *family, unsigned n)
{
    char m[48];
    int len = snprintf(m, sizeof m, "%s-%u", family, n);
    return hash_digest64(m, (size_t)len);
}

/* ---- pure --------------------------------------------------------------------- */

/* MurmurHash64A pinned: the element vectors' registers were checked against
 * redis-server 7.0's PFDEBUG GETREG (and are again below, when it runs). */
static void test_murmur64a_vectors(void **state)
{
    (void)state;
    static const struct { const char *s; uint64_t h; } strings[] = {
        {"", 0xd8dfea6585bc9732ull},
        {"a", 0x53d2470a9b43b1a7ull},
        {"hello world", 0xa919bc3051f624b7ull},       /* one word and a 3-byte tail */
        {"0123456789abcdef!", 0xb917c99b031f7674ull}, /* two words and one byte */
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        assert_true(hash_murmur64a(strings[i].s, strlen(strings[i].s), REDIS_HLL_SEED) ==
                    strings[i].h);
    static const struct { uint64_t member, h; } members[] = {
        {0, 0x396f86b121d9c351ull},
        {1, 0x900ef48b4182d8c2ull},
        {0x0123456789abcdefull, 0xa2ebaf9315635ad3ull},
        {UINT64_MAX, 0x78924eea1454b415ull},
    };
    for (size_t i = 0; i < sizeof members / sizeof members[0]; i++)
        assert_true(redis_hll_hash(members[i].member) == members[i].h);
    unsigned char e[REDIS_HLL_ELEMENT_BYTES];
    redis_hll_element(0x0123456789abcdefull, e);
    assert_memory_equal(e, "\xef\xcd\xab\x89\x67\x45\x23\x01", 8);
}

/* The register of one element: index hash & 16383, rank 1 + the trailing
 * zeros of (hash >> 14) | 2^50, whichever form the sketch is in. */
static void test_register_rule(void **state)
{
    (void)state;
    uint8_t regs[HLL_REGISTERS];
    const uint64_t hashes[] = {0x53d2470a9b43b1a7ull, 0x4000ull, 0x0ull, 0xfffffffffffc0000ull,
                               (uint64_t)1 << 63};
    for (size_t i = 0; i < sizeof hashes / sizeof hashes[0]; i++) {
        hll *h = hll_new();
        assert_non_null(h);
        assert_int_equal(hll_add_hash(h, hashes[i]), 1);
        hll_registers(h, regs);
        uint64_t rest = hashes[i] >> 14 | (uint64_t)1 << 50;
        unsigned index = (unsigned)(hashes[i] & 16383), rank = 1;
        while (!(rest & 1)) {
            rest >>= 1;
            rank++;
        }
        for (unsigned r = 0; r < HLL_REGISTERS; r++)
            assert_int_equal(regs[r], r == index ? rank : 0);
        hll_free(h);
    }
}

/* Header "HYLL", dense, cached cardinality not valid; registers packed. */
static void test_dense_layout(void **state)
{
    (void)state;
    hll *h = hll_new();
    assert_non_null(h);
    assert_int_equal(hll_add_hash(h, 0), 1);                 /* register 0, rank 51 */
    assert_int_equal(hll_add_hash(h, 1 | (uint64_t)1 << 16), 1); /* register 1, rank 3 */
    assert_int_equal(hll_add_hash(h, 16383 | (uint64_t)1 << 14), 1); /* 16383, rank 1 */
    static unsigned char out[REDIS_HLL_DENSE_BYTES];
    redis_hll_dense(h, out);
    assert_memory_equal(out, "HYLL\0\0\0\0\0\0\0\0\0\0\0\x80", 16);
    const unsigned char *r = out + REDIS_HLL_HEADER_BYTES;
    assert_int_equal(r[0], 51 | (3 & 3) << 6);     /* r0 | r1 << 6, low byte first */
    assert_int_equal(r[1], 3 >> 2);
    assert_int_equal(r[HLL_DENSE_BYTES - 1], 1 << 2); /* r16383 in the top 6 bits */
    for (size_t i = 2; i < HLL_DENSE_BYTES - 1; i++)
        assert_int_equal(r[i], 0);
    hll_free(h);
}

/* The sparse string: header with encoding 1, then ZERO / XZERO / VAL runs
 * covering the 16384 registers; a register above 32 cannot be sparse. */
static void test_sparse_layout(void **state)
{
    (void)state;
    hll *h = hll_new();
    assert_non_null(h);
    unsigned char out[REDIS_HLL_DENSE_BYTES];
    assert_int_equal(redis_hll_sparse(h, out, sizeof out), 18);
    assert_memory_equal(out, "HYLL\x01\0\0\0\0\0\0\0\0\0\0\x80\x7f\xff", 18); /* XZERO 16384 */
    assert_int_equal(hll_add_hash(h, 1 | (uint64_t)1 << 16), 1);          /* register 1, rank 3 */
    assert_int_equal(hll_add_hash(h, 2 | (uint64_t)1 << 16), 1);          /* register 2, rank 3 */
    assert_int_equal(hll_add_hash(h, 70 | (uint64_t)1 << 14), 1);         /* register 70, rank 1 */
    /* ZERO 1; VAL 3 x2; 67 zeros, past ZERO's 64: XZERO 67; VAL 1 x1; XZERO 16313 */
    const unsigned char want[] = {0x00, 0x89, 0x40, 0x42, 0x80, 0x7f, 0xb8};
    assert_int_equal(redis_hll_sparse(h, out, sizeof out), 16 + sizeof want);
    assert_memory_equal(out + 16, want, sizeof want);
    assert_int_equal(redis_hll_sparse(h, out, 16 + sizeof want - 1), 0); /* does not fit */
    assert_int_equal(redis_hll_string(h, out), 16 + sizeof want);
    assert_int_equal(hll_add_hash(h, 5 | (uint64_t)1 << 60), 1); /* register 5, rank 47 */
    assert_int_equal(redis_hll_sparse(h, out, sizeof out), 0);
    assert_int_equal(redis_hll_string(h, out), REDIS_HLL_DENSE_BYTES);
    assert_int_equal(out[4], 0); /* dense */
    hll_free(h);
}

/* ---- against redis-server ------------------------------------------------------- */

/* PFADDs the elements of n members of a family to key, 1000 per command. */
static void pfadd_members(const char *key, const char *family, unsigned from, unsigned to)
{
    enum { CHUNK = 1000 };
    static unsigned char elements[CHUNK][REDIS_HLL_ELEMENT_BYTES];
    const char *argv[2 + CHUNK];
    size_t argvlen[2 + CHUNK];
    for (unsigned at = from; at < to; at += CHUNK) {
        int argc = 0;
        argv[argc] = "PFADD", argvlen[argc++] = 5;
        argv[argc] = key, argvlen[argc++] = strlen(key);
        for (unsigned i = at; i < to && i < at + CHUNK; i++) {
            redis_hll_element(member_digest(family, i), elements[i - at]);
            argv[argc] = (const char *)elements[i - at], argvlen[argc++] = REDIS_HLL_ELEMENT_BYTES;
        }
        redisReply *r = redisCommandArgv(redis, argc, argv, argvlen);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_INTEGER);
        freeReplyObject(r);
    }
}

/* The sketch the flusher keeps of the same members. */
static hll *sketch_members(const char *family, unsigned from, unsigned to)
{
    hll *h = hll_new();
    assert_non_null(h);
    for (unsigned i = from; i < to; i++)
        assert_int_not_equal(hll_add_hash(h, redis_hll_hash(member_digest(family, i))), -1);
    return h;
}

static void assert_registers_equal(const char *key, const hll *h)
{
    uint8_t regs[HLL_REGISTERS];
    hll_registers(h, regs);
    redisReply *r = redisCommand(redis, "PFDEBUG GETREG %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, HLL_REGISTERS);
    for (size_t i = 0; i < HLL_REGISTERS; i++)
        if (r->element[i]->integer != regs[i])
            fail_msg("%s: register %zu is %lld in Redis, %u in the hll", key, i,
                     r->element[i]->integer, regs[i]);
    freeReplyObject(r);
}

static long long pfcount(const char *key)
{
    redisReply *r = redisCommand(redis, "PFCOUNT %s", key);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static void redis_ok(const char *fmt, const char *key)
{
    redisReply *r = redisCommand(redis, fmt, key);
    assert_non_null(r);
    assert_int_not_equal(r->type, REDIS_REPLY_ERROR);
    freeReplyObject(r);
}

/* Small sets (sparse in both), mid-sized (sparse here, dense in Redis or
 * the reverse) and large ones: the same registers, every one. */
static void test_registers_match_pfadd(void **state)
{
    (void)state;
    if (!redis)
        skip();
    const unsigned sizes[] = {1, 10, 300, 1024, 1025, 3000, 50000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        redis_ok("DEL %s", "t:regs");
        pfadd_members("t:regs", "regs", 0, sizes[i]);
        hll *h = sketch_members("regs", 0, sizes[i]);
        assert_registers_equal("t:regs", h);
        hll_free(h);
    }
}

/* What PFDEBUG TODENSE leaves in the key (before any PFCOUNT caches a
 * cardinality) is byte for byte redis_hll_dense() of the same members. */
static void test_dense_string_is_redis_own(void **state)
{
    (void)state;
    if (!redis)
        skip();
    const unsigned sizes[] = {3, 2000, 40000};
    static unsigned char mine[REDIS_HLL_DENSE_BYTES];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        redis_ok("DEL %s", "t:dense");
        pfadd_members("t:dense", "dense", 0, sizes[i]);
        redis_ok("PFDEBUG TODENSE %s", "t:dense");
        redisReply *r = redisCommand(redis, "GET %s", "t:dense");
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STRING);
        assert_int_equal(r->len, REDIS_HLL_DENSE_BYTES);
        hll *h = sketch_members("dense", 0, sizes[i]);
        redis_hll_dense(h, mine);
        assert_memory_equal(r->str, mine, REDIS_HLL_DENSE_BYTES);
        freeReplyObject(r);
        hll_free(h);
    }
}

/* A string SET from redis_hll_dense() is a HyperLogLog to Redis: PFCOUNT
 * counts it as the PFADDed key, and PFADD goes on from there. */
static void test_set_string_is_a_hyperloglog(void **state)
{
    (void)state;
    if (!redis)
        skip();
    static unsigned char mine[REDIS_HLL_DENSE_BYTES];
    redis_ok("DEL %s", "t:added");
    pfadd_members("t:added", "set", 0, 5000);
    hll *h = sketch_members("set", 0, 5000);
    redis_hll_dense(h, mine);
    redisReply *r = redisCommand(redis, "SET t:written %b", mine, (size_t)sizeof mine);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    assert_int_equal(pfcount("t:written"), pfcount("t:added"));
    pfadd_members("t:written", "set", 4000, 9000); /* 1,000 already there */
    pfadd_members("t:added", "set", 4000, 9000);
    assert_int_equal(pfcount("t:written"), pfcount("t:added"));
    hll_free(h);
    h = sketch_members("set", 0, 9000);
    assert_registers_equal("t:written", h);
    long long n = pfcount("t:written");
    printf("measured: 9000 members, PFCOUNT %lld, hll_count %llu\n", n,
           (unsigned long long)hll_count(h));
    assert_true(llabs(n - 9000) < 9000 * 3 * 0.0081 + 1);
    hll_free(h);
}

/* ---- the rebuild of a set ----------------------------------------------------- */

/* Folds members from..to-1 of `family` into the set (name, tags) at stamp_s. */
static void flush_members(aggregate *a, const char *name, const char *tags, const char *family,
                          unsigned from, unsigned to, int64_t stamp_s)
{
    char err[256] = "";
    for (unsigned i = from; i < to; i++) {
        metric_event ev = {.type = METRIC_SET, .name = name, .name_len = (uint16_t)strlen(name),
                           .tags = tags, .tags_len = (uint16_t)strlen(tags), .sample_rate = 1.0,
                           .stamp_ms = stamp_s * 1000, .member = member_digest(family, i)};
        if (aggregate_add(a, &ev, err, sizeof err) != 0)
            fail_msg("aggregate_add: %s", err);
    }
}

static void commit_flush(store *st, aggregate *a, pending *p, int64_t offset)
{
    char err[512] = "", id[32];
    snprintf(id, sizeof id, "b%lld", (long long)offset);
    assert_int_equal(pending_add_batch(p, id, strlen(id), 1000, "0123456789abcdef", 0, offset, err,
                                       sizeof err), 0);
    pending_note_offset(p, 0, offset);
    if (store_commit(st, "t", a, p, NULL, err, sizeof err) != 0)
        fail_msg("store_commit: %s", err);
    aggregate_clear(a);
    pending_clear(p);
}

/* What the rebuild writes for a set series: SET of the union's string. */
static int set_as_rebuild(void *arg, const char *name, size_t name_len, const char *tags,
                          size_t tags_len, const hll *h)
{
    int *series = arg;
    static unsigned char string[REDIS_HLL_DENSE_BYTES];
    char key[REDIS_KEY_SET_MAX];
    assert_true(redis_key_set(key, sizeof key, 0, name, name_len, tags, tags_len) > 0);
    size_t len = redis_hll_string(h, string);
    redisReply *r = redisCommand(redis, "SET %s %b", key, string, len);
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    (*series)++;
    return 0;
}

/* The Kafka tail as the rebuild replays it: one batch's live update. */
static void apply_tail(const char *name, const char *tags, const char *family, unsigned from,
                       unsigned to)
{
    size_t n = to - from;
    metric_event *evs = calloc(n, sizeof *evs);
    assert_non_null(evs);
    for (unsigned i = from; i < to; i++)
        evs[i - from] = (metric_event){.type = METRIC_SET, .name = name,
                                       .name_len = (uint16_t)strlen(name), .tags = tags,
                                       .tags_len = (uint16_t)strlen(tags), .sample_rate = 1.0,
                                       .member = member_digest(family, i)};
    char err[256] = "";
    live_fold *f = live_fold_new(evs, n, 1, err, sizeof err);
    assert_non_null(f);
    const live_fold *folds[1] = {f};
    live_batch batch = {"tail-1", 6, "0123456789abcdef", 1000};
    live_update u;
    if (live_update_build(&u, folds, &batch, 1, 3600, LIVE_MODE_REBUILD, NULL, 0, err, sizeof err))
        fail_msg("live_update_build: %s", err);
    assert_int_equal(redisAppendFormattedCommand(redis, u.resp, u.resp_len), REDIS_OK);
    for (size_t i = 0; i < u.commands; i++) {
        redisReply *r = NULL;
        assert_int_equal(redisGetReply(redis, (void **)&r), REDIS_OK);
        assert_non_null(r);
        if (i == live_exec_reply(&u)) {
            char why[128];
            assert_int_equal(live_outcome(LIVE_APPLIED, r, why, sizeof why), LIVE_APPLIED);
        }
        freeReplyObject(r);
    }
    live_update_free(&u);
    live_fold_free(f);
    free(evs);
}

/* Rule 5 for sets: SQLite's union of a set's buckets, SET into Redis, plus
 * the tail PFADDed on top, is the HyperLogLog PFADD of every member gives,
 * register for register. */
static void test_rebuild_restores_pfcount(void **state)
{
    (void)state;
    if (!redis)
        skip();
    char dir[] = "/tmp/tally-test-sets-XXXXXX", path[64], err[512] = "";
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/t.db", dir);
    store *st = NULL;
    int64_t next[1];
    if (store_open(&st, path, "FULL", 10, 3600, err, sizeof err) != 0 ||
        store_claim(st, "t", (const int[]){0}, 1, 1, "test", next, err, sizeof err) != 0)
        fail_msg("store_open: %s", err);
    aggregate *a = aggregate_new(10);
    pending *p = pending_new(1);
    assert_true(a && p);
    /* users{app:web}: 0..2999 in bucket 0 (twice: two flushes), 2500..5999
     * in bucket 10, 5000..7999 in bucket 20; tiny{}: 3 members. */
    flush_members(a, "users", "app:web", "u", 0, 2000, 1);
    flush_members(a, "users", "app:web", "u", 2500, 6000, 11);
    flush_members(a, "tiny", "", "t", 0, 3, 1);
    commit_flush(st, a, p, 0);
    flush_members(a, "users", "app:web", "u", 1000, 3000, 2);
    flush_members(a, "users", "app:web", "u", 5000, 8000, 21);
    commit_flush(st, a, p, 1);
    store_close(st);
    aggregate_free(a);
    pending_free(p);

    redis_ok("DEL %s", "tally:{0}:users:set:app:web");
    redis_ok("DEL %s", "tally:{0}:tiny:set:");
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
    int series = 0;
    if (set_union_each(db, set_as_rebuild, &series, err, sizeof err) != 0)
        fail_msg("set_union_each: %s", err);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    sqlite3_close(db);
    assert_int_equal(series, 2);
    apply_tail("users", "app:web", "u", 7500, 9000); /* the tail: 1,000 members new */

    redis_ok("DEL %s", "t:direct");
    pfadd_members("t:direct", "u", 0, 9000);
    long long rebuilt = pfcount("tally:{0}:users:set:app:web"), direct = pfcount("t:direct");
    printf("measured: 9000 members, PFCOUNT after the rebuild %lld, PFADDed directly %lld\n",
           rebuilt, direct);
    assert_int_equal(rebuilt, direct);
    hll *all = sketch_members("u", 0, 9000);
    assert_registers_equal("tally:{0}:users:set:app:web", all);
    assert_registers_equal("t:direct", all);
    hll_free(all);
    assert_int_equal(pfcount("tally:{0}:tiny:set:"), 3);

    /* A corrupt stored hll stops the walk, naming the series and bucket. */
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "UPDATE sketches SET data = x'090e01' WHERE name = 'users'"
                                      " AND bucket = 10", NULL, NULL, NULL), SQLITE_OK);
    series = 0;
    assert_int_equal(set_union_each(db, set_as_rebuild, &series, err, sizeof err), -1);
    assert_string_equal(err, "corrupt set sketch (name users, tags 'app:web', bucket 10): "
                             "unsupported hll version 9");
    assert_int_equal(series, 1); /* tiny, which comes first; users not at all */
    sqlite3_close(db);

    char file[96];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(file, sizeof file, "%s%s", path, suffix[i]);
        unlink(file);
    }
    rmdir(dir);
}

/* A small set written sparse is a sparse HyperLogLog to Redis with the
 * registers and PFCOUNT of the PFADDed key, byte for byte the string Redis
 * itself keeps for those members; a larger one does not fit the sparse limit
 * and redis_hll_string writes it dense. */
static void test_sparse_string_is_a_hyperloglog(void **state)
{
    (void)state;
    if (!redis)
        skip();
    const unsigned sizes[] = {1, 10, 300, 600, 5000};
    static unsigned char mine[REDIS_HLL_DENSE_BYTES];
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        redis_ok("DEL %s", "t:padd");
        pfadd_members("t:padd", "sparse", 0, sizes[i]);
        hll *h = sketch_members("sparse", 0, sizes[i]);
        size_t len = redis_hll_string(h, mine);
        redisReply *r = redisCommand(redis, "SET t:sparse %b", mine, len);
        assert_non_null(r);
        freeReplyObject(r);
        r = redisCommand(redis, "PFDEBUG ENCODING %s", "t:sparse");
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_STATUS);
        int sparse = strcmp(r->str, "sparse") == 0;
        printf("measured: %u members: %zu bytes, %s\n", sizes[i], len, r->str);
        freeReplyObject(r);
        assert_int_equal(sparse, len < REDIS_HLL_DENSE_BYTES);
        assert_true(sizes[i] > 1000 || sparse);
        r = redisCommand(redis, "GET %s", "t:padd"); /* Redis' own string of the members */
        assert_non_null(r);
        if (sparse) {
            assert_int_equal(r->len, len);
            assert_memory_equal(r->str, mine, len);
        }
        freeReplyObject(r);
        assert_int_equal(pfcount("t:sparse"), pfcount("t:padd"));
        assert_registers_equal("t:sparse", h);
        pfadd_members("t:sparse", "sparse", sizes[i], sizes[i] + 50); /* PFADD goes on */
        pfadd_members("t:padd", "sparse", sizes[i], sizes[i] + 50);
        assert_int_equal(pfcount("t:sparse"), pfcount("t:padd"));
        hll_free(h);
    }
}

static int setup(void **state)
{
    (void)state;
    redis = server_start();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    server_stop(redis);
    redis = NULL;
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_murmur64a_vectors),
        cmocka_unit_test(test_register_rule),
        cmocka_unit_test(test_dense_layout),
        cmocka_unit_test(test_sparse_layout),
        cmocka_unit_test(test_registers_match_pfadd),
        cmocka_unit_test(test_dense_string_is_redis_own),
        cmocka_unit_test(test_set_string_is_a_hyperloglog),
        cmocka_unit_test(test_sparse_string_is_a_hyperloglog),
        cmocka_unit_test(test_rebuild_restores_pfcount),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
