/*
 * test_redis_slots.c — unit tests for common/redis_slots.c: CRC16 and key
 * slots (hash tags) against a real Redis 7.0 server's answers, the slot map
 * from real CLUSTER SLOTS replies (fed through a hiredis reader) and from
 * malformed ones, holes, MOVED/ASK parsing (IPv6, empty host), applying a
 * MOVED, and the same-slot check.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redis_slots.h"

/* ---- CRC16 and slots ------------------------------------------------------ */

/* CRC16/XMODEM the slow way, bit by bit from its definition: the reference
 * the table-driven redis_crc16() is checked against. */
static uint16_t crc16_bitwise(const unsigned char *p, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int bit = 0; bit < 8; bit++)
            crc = (uint16_t)((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

static void test_crc16(void **state)
{
    (void)state;
    /* Redis' cluster specification: "CRC16("123456789") == 0x31C3" */
    assert_int_equal(redis_crc16("123456789", 9), 0x31C3);
    assert_int_equal(redis_crc16("", 0), 0);
    unsigned char bytes[256];
    for (size_t b = 0; b < 256; b++) {
        bytes[b] = (unsigned char)b;
        assert_int_equal(redis_crc16(&bytes[b], 1), crc16_bitwise(&bytes[b], 1));
    }
    for (size_t n = 0; n <= 256; n++)
        assert_int_equal(redis_crc16(bytes, n), crc16_bitwise(bytes, n));
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        unsigned char key[64];
        for (size_t i = 0; i < sizeof key; i++) key[i] = (unsigned char)((seed = seed * 1103515245u + 12345u) >> 16);
        size_t n = seed % sizeof key;
        assert_int_equal(redis_crc16(key, n), crc16_bitwise(key, n));
    }
}

/* What a real server said: redis-server 7.0.15 started with --cluster-enabled
 * yes on port 37001, asked `redis-cli -p 37001 CLUSTER KEYSLOT KEY`. */
static const struct {
    const char *key;
    unsigned slot;
} server_slots[] = {
    {"tally:{api.requests}:counter", 5321},
    {"{user1000}.following", 3443},
    {"{user1000}.followers", 3443},
    {"foo{}{bar}", 8363},
    {"foo{{bar}}zap", 4015},
    {"foo{bar}{zap}", 5061},
    {"", 0},
    {"caf\xc3\xa9", 5735},
    {"{\xe6\x97\xa5\xe6\x9c\xac}:x", 10949},
    {"tally:batch:{0123abcd}", 2550},
    {"abc{", 3048},
    {"a}b{c", 13587},
    {"{a}", 15495},
    {"tally:live:series", 14230},
    {"123456789", 12739},
    {"foo", 12182},
};

static void test_slots_match_the_server(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof server_slots / sizeof server_slots[0]; i++) {
        const char *key = server_slots[i].key;
        if (redis_slot(key, strlen(key)) != server_slots[i].slot)
            fail_msg("key \"%s\": slot %u, the server said %u", key, redis_slot(key, strlen(key)),
                     server_slots[i].slot);
    }
}

static unsigned slot_of(const char *key)
{
    return redis_slot(key, strlen(key));
}

static unsigned whole_key_slot(const char *key)
{
    return redis_crc16(key, strlen(key)) % REDIS_SLOTS;
}

static void test_hash_tags(void **state)
{
    (void)state;
    assert_int_equal(slot_of("{user1000}.following"), slot_of("user1000"));
    assert_int_equal(slot_of("tally:{api.requests}:counter"), slot_of("api.requests"));
    assert_int_equal(slot_of("tally:{api.requests}:gauge"), slot_of("tally:{api.requests}:counter"));
    /* "{}" first: no tag, the whole key (a later "{bar}" does not count) */
    assert_int_equal(slot_of("foo{}{bar}"), whole_key_slot("foo{}{bar}"));
    assert_int_not_equal(slot_of("foo{}{bar}"), slot_of("bar"));
    /* from the first '{' to the first '}' after it: the tag is "{bar" */
    assert_int_equal(slot_of("foo{{bar}}zap"), slot_of("{bar"));
    /* only the first tag counts */
    assert_int_equal(slot_of("foo{bar}{zap}"), slot_of("bar"));
    /* no '}' after the '{', or a '}' only before it: the whole key */
    assert_int_equal(slot_of("abc{"), whole_key_slot("abc{"));
    assert_int_equal(slot_of("a}b{c"), whole_key_slot("a}b{c"));
    assert_int_equal(slot_of("{"), whole_key_slot("{"));
    assert_int_equal(slot_of("}{"), whole_key_slot("}{"));
    assert_int_equal(slot_of("{}"), whole_key_slot("{}"));
    /* a one-byte tag, a tag that is the whole key, UTF-8 in a tag */
    assert_int_equal(slot_of("x{a}y"), slot_of("a"));
    assert_int_equal(slot_of("{a}"), slot_of("a"));
    assert_int_equal(slot_of("t{\xe6\x97\xa5}u"), slot_of("\xe6\x97\xa5"));
    /* the length bounds the key: a tag closed only past len is no tag */
    assert_int_equal(redis_slot("{ab}", 3), whole_key_slot("{ab"));
    assert_int_equal(redis_slot("{ab}zz", 4), slot_of("ab"));
    /* NUL bytes are key bytes */
    assert_int_equal(redis_slot("{a\0b}", 5), redis_crc16("a\0b", 3) % REDIS_SLOTS);
    assert_int_equal(redis_slot(NULL, 0), 0);
}

static void test_keys_same_slot(void **state)
{
    (void)state;
    const char *same[] = {"tally:{m}:counter", "tally:{m}:counter:frac", "tally:{m}:dist:min"};
    size_t same_lens[] = {strlen(same[0]), strlen(same[1]), strlen(same[2])};
    unsigned slot = 99999;
    assert_int_equal(redis_keys_same_slot(same, same_lens, 3, &slot), 1);
    assert_int_equal(slot, slot_of("m"));

    const char *one[] = {"foo"};
    size_t one_len[] = {3};
    assert_int_equal(redis_keys_same_slot(one, one_len, 1, &slot), 1);
    assert_int_equal(slot, 12182);

    /* a different tag last: refused, *slot the first key's */
    const char *cross[] = {"tally:{m}:counter", "tally:{m}:gauge", "tally:{n}:gauge"};
    size_t cross_lens[] = {strlen(cross[0]), strlen(cross[1]), strlen(cross[2])};
    assert_int_equal(redis_keys_same_slot(cross, cross_lens, 3, &slot), 0);
    assert_int_equal(slot, slot_of("m"));
    /* untagged keys that happen to differ */
    const char *plain[] = {"foo", "bar"};
    size_t plain_lens[] = {3, 3};
    assert_int_equal(redis_keys_same_slot(plain, plain_lens, 2, &slot), 0);
    /* the lengths are used, not strlen: "{a}x" cut to 3 bytes is "{a}" */
    const char *cut[] = {"{a}", "{a}x"};
    size_t cut_lens[] = {3, 3};
    assert_int_equal(redis_keys_same_slot(cut, cut_lens, 2, &slot), 1);
}

/* ---- the slot map from CLUSTER SLOTS --------------------------------------- */

/*
 * Real replies, the bytes redis-server 7.0.15 sent to "CLUSTER SLOTS\r\n"
 * (read from its socket):
 *  - RESHARDED: `redis-cli --cluster create 127.0.0.1:37001 ... :37003`, a
 *    replica 37004 of 37001 added, then 100 slots resharded from 37001 to
 *    37003 (so 37003 serves two ranges, 0-99 and 10923-16383);
 *  - UNKNOWN_ENDPOINT: the same cluster after CONFIG SET
 *    cluster-preferred-endpoint-type unknown-endpoint on every node (NULL
 *    hosts, a metadata map "ip" -> "127.0.0.1" per node);
 *  - IPV6_HOLE: two nodes bound to ::1 (ports 37005, 37006) with slots
 *    0-8191 and 8192-16383, then CLUSTER DELSLOTSRANGE 8000 8191 on 37005.
 */
static const char RESHARDED[] =
    "*4\r\n*3\r\n:0\r\n:99\r\n*4\r\n$9\r\n127.0.0.1\r\n:37003\r\n$40\r\n"
    "b7b8eeaa4d3a0eb3b97000898cea376d90facc1f\r\n*0\r\n*4\r\n:100\r\n:5460\r\n*4\r\n$9\r\n"
    "127.0.0.1\r\n:37001\r\n$40\r\n082aac1677f7d16209d8c914eabe83cb6e1fa861\r\n*0\r\n*4\r\n"
    "$9\r\n127.0.0.1\r\n:37004\r\n$40\r\nd5864c9b61afd23afcf7003cee20c5f00ff57ea7\r\n*0\r\n"
    "*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:37002\r\n$40\r\n"
    "5641be00828b7c1f6be6fde763830510db9e9fe2\r\n*0\r\n*3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n"
    "127.0.0.1\r\n:37003\r\n$40\r\nb7b8eeaa4d3a0eb3b97000898cea376d90facc1f\r\n*0\r\n";

static const char UNKNOWN_ENDPOINT[] =
    "*4\r\n*3\r\n:0\r\n:99\r\n*4\r\n$-1\r\n:37003\r\n$40\r\n"
    "b7b8eeaa4d3a0eb3b97000898cea376d90facc1f\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*4\r\n"
    ":100\r\n:5460\r\n*4\r\n$-1\r\n:37001\r\n$40\r\n082aac1677f7d16209d8c914eabe83cb6e1fa861\r\n"
    "*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*4\r\n$-1\r\n:37004\r\n$40\r\n"
    "d5864c9b61afd23afcf7003cee20c5f00ff57ea7\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":5461\r\n:10922\r\n*4\r\n$-1\r\n:37002\r\n$40\r\n"
    "5641be00828b7c1f6be6fde763830510db9e9fe2\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n*3\r\n"
    ":10923\r\n:16383\r\n*4\r\n$-1\r\n:37003\r\n$40\r\n"
    "b7b8eeaa4d3a0eb3b97000898cea376d90facc1f\r\n*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n";

static const char IPV6_HOLE[] =
    "*2\r\n*3\r\n:0\r\n:7999\r\n*4\r\n$3\r\n::1\r\n:37005\r\n$40\r\n"
    "d1794a2663a1dc195e686c5021d142e8493a56a5\r\n*0\r\n*3\r\n:8192\r\n:16383\r\n*4\r\n$3\r\n"
    "::1\r\n:37006\r\n$40\r\nd14387d4f6531ea88cc45833785ccbc9626960b9\r\n*0\r\n";

/* The one reply in resp[0..len), parsed by hiredis' reader (the caller
 * frees it). */
static redisReply *parse_resp_bytes(const char *resp, size_t len)
{
    redisReader *reader = redisReaderCreate();
    assert_non_null(reader);
    assert_int_equal(redisReaderFeed(reader, resp, len), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(reader, &reply), REDIS_OK);
    assert_non_null(reply);
    redisReaderFree(reader);
    return reply;
}

static redisReply *parse_resp(const char *resp)
{
    return parse_resp_bytes(resp, strlen(resp));
}

/* Builds *map from resp; returns from_reply's result, err its message. */
static int map_from_resp(redis_slot_map *map, const char *resp, const char *answering_host,
                         char *err, size_t errlen)
{
    redisReply *reply = parse_resp(resp);
    err[0] = '\0';
    int rc = redis_slot_map_from_reply(map, reply, answering_host, err, errlen);
    freeReplyObject(reply);
    return rc;
}

static void assert_node(const redis_slot_map *map, unsigned slot, const char *host, int port)
{
    int i = redis_slot_map_node(map, slot);
    if (i < 0) fail_msg("slot %u: no node, want %s:%d", slot, host, port);
    assert_true((size_t)i < map->node_count);
    assert_string_equal(map->nodes[i].host, host);
    assert_int_equal(map->nodes[i].port, port);
}

/* A one-slot client (the cache): the owner of its slot, or why there is none. */
static void test_owner_of_one_slot(void **state)
{
    (void)state;
    char err[256];
    redis_slot_map map;
    redisReply *reply = parse_resp(IPV6_HOLE);
    int owner = redis_slot_owner_from_reply(&map, reply, "::1", 9000, err, sizeof err);
    assert_true(owner >= 0);
    assert_string_equal(map.nodes[owner].host, "::1");
    assert_int_equal(map.nodes[owner].port, 37006);
    redis_slot_map_free(&map);
    assert_int_equal(redis_slot_owner_from_reply(&map, reply, "::1", 8000, err, sizeof err), -1);
    assert_string_equal(err, "no master serves the cache's slot 8000");
    redis_slot_map_free(&map);
    freeReplyObject(reply);
    reply = parse_resp("-ERR This instance has cluster support disabled\r\n");
    assert_int_equal(redis_slot_owner_from_reply(&map, reply, "h", 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "CLUSTER SLOTS refused (ERR This instance has cluster support "
                                "disabled): cache.cluster = true needs a Redis Cluster"));
    redis_slot_map_free(&map);
    freeReplyObject(reply);
}

/* The run_id of an INFO reply; none, or one too long for the buffer, is -1. */
static void test_run_id_from_info(void **state)
{
    (void)state;
    char id[41];
    assert_int_equal(redis_info_run_id("# Server\r\nredis_version:7.0.15\r\nrun_id:"
                                       "d78e7f026b7816ace898b90d7753a25f8d1d7591\r\ntcp_port:1\r\n",
                                       id, sizeof id),
                     0);
    assert_string_equal(id, "d78e7f026b7816ace898b90d7753a25f8d1d7591");
    assert_int_equal(redis_info_run_id("# Server\r\nredis_version:7.0.15\r\n", id, sizeof id), -1);
    assert_int_equal(redis_info_run_id("run_id:\r\n", id, sizeof id), -1);
    char small[8];
    assert_int_equal(redis_info_run_id("run_id:0123456789\r\n", small, sizeof small), -1);
}

static void test_map_from_resharded_cluster(void **state)
{
    (void)state;
    redis_slot_map map;
    char err[512], holes[64];
    assert_int_equal(map_from_resp(&map, RESHARDED, "127.0.0.1", err, sizeof err), 0);
    /* three masters, 37003 listed once for its two ranges, the replica not at all */
    assert_int_equal(map.node_count, 3);
    assert_node(&map, 0, "127.0.0.1", 37003);
    assert_node(&map, 99, "127.0.0.1", 37003);
    assert_node(&map, 100, "127.0.0.1", 37001);
    assert_node(&map, 5460, "127.0.0.1", 37001);
    assert_node(&map, 5461, "127.0.0.1", 37002);
    assert_node(&map, 10922, "127.0.0.1", 37002);
    assert_node(&map, 10923, "127.0.0.1", 37003);
    assert_node(&map, 16383, "127.0.0.1", 37003);
    assert_int_equal(redis_slot_map_node(&map, 0), redis_slot_map_node(&map, 16383));
    for (size_t i = 0; i < map.node_count; i++) assert_int_not_equal(map.nodes[i].port, 37004);
    /* "foo" is in slot 12182: the real server answered MOVED 12182 127.0.0.1:37003 */
    assert_node(&map, slot_of("foo"), "127.0.0.1", 37003);
    assert_int_equal(redis_slot_map_holes(&map, holes, sizeof holes), 0);
    assert_string_equal(holes, "");
    redis_slot_map_free(&map);
    assert_int_equal(map.node_count, 0);
    assert_int_equal(redis_slot_map_node(&map, 0), -1);
}

static void test_map_null_host_is_the_answering_node(void **state)
{
    (void)state;
    redis_slot_map map;
    char err[512];
    assert_int_equal(map_from_resp(&map, UNKNOWN_ENDPOINT, "10.0.0.7", err, sizeof err), 0);
    assert_int_equal(map.node_count, 3);
    assert_node(&map, 0, "10.0.0.7", 37003);
    assert_node(&map, 100, "10.0.0.7", 37001);
    assert_node(&map, 5461, "10.0.0.7", 37002);
    assert_node(&map, 16383, "10.0.0.7", 37003);
    redis_slot_map_free(&map);
    /* without an answering host a NULL host cannot be resolved */
    assert_int_equal(map_from_resp(&map, UNKNOWN_ENDPOINT, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "range 1 of 4: an empty host"));
    assert_int_equal(map.node_count, 0);
    redis_slot_map_free(&map);
}

static void test_map_with_a_hole(void **state)
{
    (void)state;
    redis_slot_map map;
    char err[512], holes[64];
    assert_int_equal(map_from_resp(&map, IPV6_HOLE, "::1", err, sizeof err), 0);
    assert_int_equal(map.node_count, 2);
    assert_node(&map, 7999, "::1", 37005);
    assert_int_equal(redis_slot_map_node(&map, 8000), -1);
    assert_int_equal(redis_slot_map_node(&map, 8191), -1);
    assert_node(&map, 8192, "::1", 37006);
    assert_int_equal(redis_slot_map_holes(&map, holes, sizeof holes), 192);
    assert_string_equal(holes, "8000-8191");
    redis_slot_map_free(&map);
}

static void test_holes_described(void **state)
{
    (void)state;
    redis_slot_map map;
    char buf[64];
    redis_slot_map_init(&map);
    assert_int_equal(redis_slot_map_holes(&map, buf, sizeof buf), REDIS_SLOTS);
    assert_string_equal(buf, "0-16383");
    /* an empty reply (a cluster with no slots assigned) is all holes too */
    char err[256];
    assert_int_equal(map_from_resp(&map, "*0\r\n", "h", err, sizeof err), 0);
    assert_int_equal(redis_slot_map_holes(&map, buf, sizeof buf), REDIS_SLOTS);
    redis_slot_map_free(&map);

    /* single slots, and every other slot: the list is cut with "..." */
    assert_int_equal(map_from_resp(&map,
                                   "*2\r\n*3\r\n:0\r\n:4\r\n*2\r\n$1\r\nh\r\n:1\r\n"
                                   "*3\r\n:6\r\n:16382\r\n*2\r\n$1\r\nh\r\n:1\r\n",
                                   "h", err, sizeof err),
                     0);
    assert_int_equal(map.node_count, 1);
    assert_int_equal(redis_slot_map_holes(&map, buf, sizeof buf), 2);
    assert_string_equal(buf, "5, 16383");
    redis_slot_map_free(&map);
    redis_slot_map_init(&map);
    for (unsigned s = 0; s < REDIS_SLOTS; s += 2) map.owner[s] = 0;
    assert_int_equal(redis_slot_map_holes(&map, buf, sizeof buf), REDIS_SLOTS / 2);
    assert_true(strlen(buf) < sizeof buf);
    assert_non_null(strstr(buf, "1, 3, 5"));
    assert_string_equal(buf + strlen(buf) - 3, "...");
    assert_int_equal(redis_slot_map_holes(&map, buf, 2), REDIS_SLOTS / 2);
    assert_int_equal(redis_slot_map_holes(&map, NULL, 0), REDIS_SLOTS / 2);
}

/* Malformed replies: each refused, with err holding `why`, the map empty. */
#define MALFORMED(resp, why) {resp, sizeof(resp) - 1, why}
static const struct {
    const char *resp;
    size_t len;
    const char *why;
} malformed[] = {
    MALFORMED("-ERR This instance has cluster support disabled\r\n",
              "CLUSTER SLOTS refused: ERR This instance has cluster support disabled"),
    MALFORMED("+OK\r\n", "CLUSTER SLOTS answered a status, not an array"),
    MALFORMED("$3\r\nabc\r\n", "answered a string, not an array"),
    MALFORMED(":7\r\n", "answered an integer, not an array"),
    MALFORMED("$-1\r\n", "answered a nil, not an array"),
    MALFORMED("*1\r\n:5\r\n", "range 1 of 1: it is an integer, not [start, end, master, ...]"),
    MALFORMED("*1\r\n*2\r\n:0\r\n:5\r\n",
              "range 1 of 1: it is an array of 2 elements, not [start, end, master, ...]"),
    MALFORMED("*1\r\n*3\r\n$1\r\n0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",
              "its start slot is a string, not an integer"),
    MALFORMED("*1\r\n*3\r\n:0\r\n$-1\r\n*2\r\n$1\r\nh\r\n:1\r\n", "its end slot is a nil"),
    MALFORMED("*1\r\n*3\r\n:-1\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",
              "its start slot -1 is not in 0..16383"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n",
              "its end slot 16384 is not in 0..16383"),
    MALFORMED("*1\r\n*3\r\n:9\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n",
              "its start slot 9 is after its end slot 5"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n:1\r\n",
              "its master is an integer, not [host, port, ...]"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*1\r\n$1\r\nh\r\n",
              "its master is an array of 1 elements, not [host, port, ...]"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n:1\r\n:1\r\n", "its master's host is an integer"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n$4\r\n6379\r\n",
              "its master's port is a string, not an integer"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:0\r\n",
              "its master's port 0 is not in 1..65535"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:65536\r\n",
              "port 65536 is not in 1..65535"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:-6379\r\n",
              "port -6379 is not in 1..65535"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\n?\r\n:1\r\n",
              "host \"?\" (the node has no hostname"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$3\r\na b\r\n:1\r\n", "byte 0x20 at 1 of the host"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$3\r\na\0b\r\n:1\r\n", "byte 0x00 at 1 of the host"),
    MALFORMED("*1\r\n*3\r\n:0\r\n:5\r\n*2\r\n$3\r\na\x7f" "b\r\n:1\r\n",
              "byte 0x7f at 1 of the host"),
    /* overlapping ranges: a slot claimed twice */
    MALFORMED("*2\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n"
              "*3\r\n:5\r\n:9\r\n*2\r\n$1\r\nh\r\n:2\r\n",
              "range 2 of 2: slot 5 is in an earlier range too"),
    /* a bad range after good ones: the map is still left empty */
    MALFORMED("*2\r\n*3\r\n:0\r\n:5\r\n*2\r\n$1\r\nh\r\n:1\r\n*3\r\n:6\r\n:9\r\n*0\r\n",
              "range 2 of 2: its master is an array of 0 elements"),
};

static void test_malformed_replies(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        redis_slot_map map;
        char err[512] = "";
        redisReply *reply = parse_resp_bytes(malformed[i].resp, malformed[i].len);
        int rc = redis_slot_map_from_reply(&map, reply, "h", err, sizeof err);
        freeReplyObject(reply);
        if (rc != -1 || strstr(err, malformed[i].why) == NULL)
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, err, malformed[i].why);
        assert_int_equal(map.node_count, 0);
        assert_null(map.nodes);
        assert_int_equal(redis_slot_map_node(&map, 0), -1);
        redis_slot_map_free(&map);
    }
}

static void test_map_from_hand_built_reply(void **state)
{
    (void)state;
    /* a NULL reply, and a host one byte too long */
    redis_slot_map map;
    char err[512];
    assert_int_equal(redis_slot_map_from_reply(&map, NULL, "h", err, sizeof err), -1);
    assert_string_equal(err, "CLUSTER SLOTS: no reply");

    char long_host[REDIS_HOST_MAX];
    memset(long_host, 'a', sizeof long_host);
    redisReply host = {.type = REDIS_REPLY_STRING, .str = long_host, .len = REDIS_HOST_MAX};
    redisReply port = {.type = REDIS_REPLY_INTEGER, .integer = 6379};
    redisReply *node_parts[] = {&host, &port};
    redisReply node = {.type = REDIS_REPLY_ARRAY, .element = node_parts, .elements = 2};
    redisReply start = {.type = REDIS_REPLY_INTEGER, .integer = 0};
    redisReply end = {.type = REDIS_REPLY_INTEGER, .integer = 16383};
    redisReply *range_parts[] = {&start, &end, &node};
    redisReply range = {.type = REDIS_REPLY_ARRAY, .element = range_parts, .elements = 3};
    redisReply *ranges[] = {&range};
    redisReply top = {.type = REDIS_REPLY_ARRAY, .element = ranges, .elements = 1};
    assert_int_equal(redis_slot_map_from_reply(&map, &top, "h", err, sizeof err), -1);
    assert_non_null(strstr(err, "a host of 256 bytes (1..255)"));
    host.len = REDIS_HOST_MAX - 1; /* 255 bytes: the longest allowed */
    assert_int_equal(redis_slot_map_from_reply(&map, &top, "h", err, sizeof err), 0);
    assert_int_equal(strlen(map.nodes[0].host), REDIS_HOST_MAX - 1);
    assert_int_equal(map.nodes[0].port, 6379);
    redis_slot_map_free(&map);
    /* an empty string host is the answering host too */
    host.len = 0;
    assert_int_equal(redis_slot_map_from_reply(&map, &top, "node-a", err, sizeof err), 0);
    assert_node(&map, 42, "node-a", 6379);
    redis_slot_map_free(&map);
}

/* ---- MOVED and ASK --------------------------------------------------------- */

static redis_redirect_kind parse_redirect(const char *text, redis_redirect *r)
{
    return redis_redirect_parse(text, strlen(text), r);
}

static void test_redirects(void **state)
{
    (void)state;
    redis_redirect r;
    /* the real server's answers (the clusters above) */
    assert_int_equal(parse_redirect("MOVED 12182 127.0.0.1:37003", &r), REDIS_REDIRECT_MOVED);
    assert_int_equal(r.kind, REDIS_REDIRECT_MOVED);
    assert_int_equal(r.slot, 12182);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 37003);
    assert_int_equal(parse_redirect("ASK 12182 127.0.0.1:37002", &r), REDIS_REDIRECT_ASK);
    assert_int_equal(r.kind, REDIS_REDIRECT_ASK);
    assert_int_equal(r.slot, 12182);
    assert_string_equal(r.host, "127.0.0.1");
    assert_int_equal(r.port, 37002);
    /* IPv6: the port after the last ':' */
    assert_int_equal(parse_redirect("MOVED 12182 ::1:37006", &r), REDIS_REDIRECT_MOVED);
    assert_string_equal(r.host, "::1");
    assert_int_equal(r.port, 37006);
    assert_int_equal(parse_redirect("ASK 0 2001:db8::17:6379", &r), REDIS_REDIRECT_ASK);
    assert_int_equal(r.slot, 0);
    assert_string_equal(r.host, "2001:db8::17");
    assert_int_equal(r.port, 6379);
    /* empty host (unknown-endpoint, as the real server sent "MOVED 12182 :37003"):
     * the answering node's host */
    assert_int_equal(parse_redirect("MOVED 3999 :6381", &r), REDIS_REDIRECT_MOVED);
    assert_int_equal(r.slot, 3999);
    assert_string_equal(r.host, "");
    assert_int_equal(r.port, 6381);
    assert_string_equal(redis_redirect_host(&r, "10.1.2.3"), "10.1.2.3");
    assert_int_equal(parse_redirect("MOVED 16383 redis-7.internal:65535", &r), REDIS_REDIRECT_MOVED);
    assert_string_equal(redis_redirect_host(&r, "10.1.2.3"), "redis-7.internal");
    assert_int_equal(r.slot, 16383);
    assert_int_equal(r.port, 65535);
    assert_int_equal(parse_redirect("ASK 0 h:1", &r), REDIS_REDIRECT_ASK); /* "0" itself */
    assert_int_equal(r.slot, 0);
    /* len bounds the text: a longer buffer is cut */
    assert_int_equal(redis_redirect_parse("ASK 7 h:12345678", 12, &r), REDIS_REDIRECT_ASK);
    assert_int_equal(r.port, 1234);
}

static const char *const not_redirects[] = {
    "",
    "ERR unknown command",
    "CROSSSLOT Keys in request don't hash to the same slot",
    "CLUSTERDOWN The cluster is down",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "MOVED",
    "MOVED ",
    "MOVED 1",
    "MOVED 1 ",
    "moved 1 h:1",
    "MOVED  1 h:1",
    "MOVED 1  h:1",
    "MOVED -1 h:1",
    "MOVED +1 h:1",
    "MOVED 16384 h:1",
    "MOVED 99999999 h:1",
    "MOVED x h:1",
    "MOVED 1 h",
    "MOVED 1 h:",
    "MOVED 1 h:0",
    "MOVED 1 h:65536",
    "MOVED 1 h:6379x",
    "MOVED 1 h:6379 ",
    "MOVED 1 h:-1",
    "MOVED 01 h:1",
    "MOVED 1 h:06379",
    "MOVED 00 h:1",
    "MOVED 1 a b:1",
    "MOVED 1 h:1\n",
    "ASK",
    "ASK 1 h",
    "ASKING 1 h:1",
    "MOVEDX 1 h:1",
};

static void test_not_redirects(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof not_redirects / sizeof not_redirects[0]; i++) {
        redis_redirect r;
        r.kind = REDIS_REDIRECT_ASK;
        if (parse_redirect(not_redirects[i], &r) != REDIS_REDIRECT_NONE)
            fail_msg("\"%s\" parsed as a redirection", not_redirects[i]);
        assert_int_equal(r.kind, REDIS_REDIRECT_NONE);
    }
    /* a NUL inside, and a host too long for REDIS_HOST_MAX */
    redis_redirect r;
    assert_int_equal(redis_redirect_parse("MOVED 1 h\0x:1", 13, &r), REDIS_REDIRECT_NONE);
    char text[REDIS_HOST_MAX + 32];
    int n = snprintf(text, sizeof text, "MOVED 1 %0*d:1", REDIS_HOST_MAX, 0);
    assert_int_equal(redis_redirect_parse(text, (size_t)n, &r), REDIS_REDIRECT_NONE);
    n = snprintf(text, sizeof text, "MOVED 1 %0*d:1", REDIS_HOST_MAX - 1, 0);
    assert_int_equal(redis_redirect_parse(text, (size_t)n, &r), REDIS_REDIRECT_MOVED);
}

static void test_apply_moved(void **state)
{
    (void)state;
    redis_slot_map map;
    char err[512];
    assert_int_equal(map_from_resp(&map, RESHARDED, "127.0.0.1", err, sizeof err), 0);
    int n37002 = redis_slot_map_node(&map, 5461);
    redis_redirect r;

    /* to a known node: no new node */
    assert_int_equal(parse_redirect("MOVED 12182 127.0.0.1:37002", &r), REDIS_REDIRECT_MOVED);
    assert_int_equal(redis_slot_map_apply_moved(&map, &r, "127.0.0.1", err, sizeof err), n37002);
    assert_int_equal(map.node_count, 3);
    assert_node(&map, 12182, "127.0.0.1", 37002);
    assert_node(&map, 12181, "127.0.0.1", 37003); /* its neighbours stay */
    assert_node(&map, 12183, "127.0.0.1", 37003);

    /* to a new node: added at the end, the other indexes unchanged */
    assert_int_equal(parse_redirect("MOVED 0 127.0.0.1:37007", &r), REDIS_REDIRECT_MOVED);
    assert_int_equal(redis_slot_map_apply_moved(&map, &r, "127.0.0.1", err, sizeof err), 3);
    assert_int_equal(map.node_count, 4);
    assert_node(&map, 0, "127.0.0.1", 37007);
    assert_int_equal(redis_slot_map_node(&map, 5461), n37002);
    /* the same node again under an empty host: the answering host, no new node */
    assert_int_equal(parse_redirect("MOVED 1 :37007", &r), REDIS_REDIRECT_MOVED);
    assert_int_equal(redis_slot_map_apply_moved(&map, &r, "127.0.0.1", err, sizeof err), 3);
    assert_int_equal(map.node_count, 4);
    assert_node(&map, 1, "127.0.0.1", 37007);

    /* ASK, an empty host without an answering host, a bad one: refused, no change */
    assert_int_equal(parse_redirect("ASK 2 127.0.0.1:37008", &r), REDIS_REDIRECT_ASK);
    assert_int_equal(redis_slot_map_apply_moved(&map, &r, "127.0.0.1", err, sizeof err), -1);
    assert_non_null(strstr(err, "not a MOVED redirection"));
    assert_int_equal(parse_redirect("MOVED 2 :37008", &r), REDIS_REDIRECT_MOVED);
    assert_int_equal(redis_slot_map_apply_moved(&map, &r, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "MOVED 2: an empty host"));
    assert_int_equal(redis_slot_map_apply_moved(&map, &r, "bad host", err, sizeof err), -1);
    assert_non_null(strstr(err, "MOVED 2: byte 0x20 at 3 of the host"));
    assert_int_equal(map.node_count, 4);
    assert_node(&map, 2, "127.0.0.1", 37003);
    redis_slot_map_free(&map);

    /* into a hole of an empty map */
    redis_slot_map_init(&map);
    assert_int_equal(parse_redirect("MOVED 8000 ::1:37005", &r), REDIS_REDIRECT_MOVED);
    assert_int_equal(redis_slot_map_apply_moved(&map, &r, "::1", err, sizeof err), 0);
    assert_node(&map, 8000, "::1", 37005);
    assert_int_equal(redis_slot_map_holes(&map, NULL, 0), REDIS_SLOTS - 1);
    redis_slot_map_free(&map);
}

static void test_node_limit(void **state)
{
    (void)state;
    redis_slot_map map;
    redis_slot_map_init(&map);
    char err[512];
    redis_redirect r = {.kind = REDIS_REDIRECT_MOVED, .host = "h"};
    for (int i = 0; i < REDIS_SLOT_MAP_NODES_MAX; i++) {
        r.slot = (unsigned)i % REDIS_SLOTS;
        r.port = 1 + i;
        assert_int_equal(redis_slot_map_apply_moved(&map, &r, "h", err, sizeof err), i);
    }
    r.port = 65535;
    assert_int_equal(redis_slot_map_apply_moved(&map, &r, "h", err, sizeof err), -1);
    assert_non_null(strstr(err, "more than 16384 nodes"));
    assert_int_equal(map.node_count, REDIS_SLOT_MAP_NODES_MAX);
    /* a port out of range in a hand-made redirection is refused too */
    r.port = 0;
    assert_int_equal(redis_slot_map_apply_moved(&map, &r, "h", err, sizeof err), -1);
    redis_slot_map_free(&map);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc16),
        cmocka_unit_test(test_owner_of_one_slot),
        cmocka_unit_test(test_run_id_from_info),
        cmocka_unit_test(test_slots_match_the_server),
        cmocka_unit_test(test_hash_tags),
        cmocka_unit_test(test_keys_same_slot),
        cmocka_unit_test(test_map_from_resharded_cluster),
        cmocka_unit_test(test_map_null_host_is_the_answering_node),
        cmocka_unit_test(test_map_with_a_hole),
        cmocka_unit_test(test_holes_described),
        cmocka_unit_test(test_malformed_replies),
        cmocka_unit_test(test_map_from_hand_built_reply),
        cmocka_unit_test(test_redirects),
        cmocka_unit_test(test_not_redirects),
        cmocka_unit_test(test_apply_moved),
        cmocka_unit_test(test_node_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
