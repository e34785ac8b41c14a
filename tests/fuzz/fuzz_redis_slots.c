/*
 * fuzz_redis_slots.c — libFuzzer target for the Redis Cluster routing core
 * (common/redis_slots.h).
 *
 * Contract: the input is used three ways, and whatever the bytes:
 *   - as a key: redis_slot() is below 16384 and equals the CRC16 of the part
 *     an independent reading of the hash tag rule picks;
 *   - as an error reply: redis_redirect_parse() gives NONE with *out all
 *     zero, or MOVED/ASK with slot < 16384, port 1..65535 and a host of
 *     printable bytes shorter than REDIS_HOST_MAX, which formatted back
 *     ("KIND slot host:port") is the input byte for byte;
 *   - as RESP bytes, read by a hiredis reader: when they make a reply,
 *     redis_slot_map_from_reply() either refuses it (-1, a non-empty
 *     message, an empty map) or builds a map whose every slot is a hole or
 *     the index of a listed node, whose nodes are distinct (host, port) pairs
 *     with non-empty hosts and ports 1..65535, and whose hole count agrees
 *     with its slots. A MOVED is then applied to it (the input's, or one to
 *     the answering host made from the input's CRC): the slot ends up on the
 *     node it names, no other slot changes.
 * Inputs holding "*N" with N over 65536 skip the reader (hiredis allocates
 * an array's element pointers at its header, which libFuzzer's malloc limit
 * would report as a crash of hiredis, not of Tally).
 * Any violated check aborts (fuzz_check.h), which libFuzzer reports as a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fuzz_check.h"
#include "redis_slots.h"

#define ANSWERING_HOST "10.0.0.1"
#define ARRAY_COUNT_MAX 65536

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The hash tag rule read byte by byte, as the cluster specification states it. */
static void check_slot(const char *key, size_t len)
{
    size_t from = 0, n = len;
    for (size_t open = 0; open < len; open++) {
        if (key[open] != '{') continue;
        for (size_t close = open + 1; close < len; close++) {
            if (key[close] != '}') continue;
            if (close > open + 1) {
                from = open + 1;
                n = close - open - 1;
            }
            break;
        }
        break;
    }
    unsigned slot = redis_slot(key, len);
    FUZZ_CHECK(slot < REDIS_SLOTS, "slot %u", slot);
    FUZZ_CHECK(slot == (redis_crc16(key + from, n) & (REDIS_SLOTS - 1)),
               "slot %u, but the tag rule hashes bytes %zu..%zu", slot, from, from + n);
}

static bool host_ok(const char *host)
{
    size_t n = strnlen(host, REDIS_HOST_MAX);
    if (n >= REDIS_HOST_MAX) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)host[i] <= ' ' || (unsigned char)host[i] >= 0x7f) return false;
    return true;
}

static void check_redirect(const char *text, size_t len, redis_redirect *r)
{
    redis_redirect_kind kind = redis_redirect_parse(text, len, r);
    FUZZ_CHECK(kind == r->kind, "returned %d, out->kind %d", kind, r->kind);
    if (kind == REDIS_REDIRECT_NONE) {
        static const redis_redirect zero;
        FUZZ_CHECK(memcmp(r, &zero, sizeof zero) == 0, "NONE left *out filled");
        return;
    }
    FUZZ_CHECK(kind == REDIS_REDIRECT_MOVED || kind == REDIS_REDIRECT_ASK, "kind %d", kind);
    FUZZ_CHECK(r->slot < REDIS_SLOTS, "slot %u", r->slot);
    FUZZ_CHECK(r->port >= 1 && r->port <= 65535, "port %d", r->port);
    FUZZ_CHECK(host_ok(r->host), "host not printable or unterminated");
    char again[REDIS_HOST_MAX + 32];
    int n = snprintf(again, sizeof again, "%s %u %s:%d", kind == REDIS_REDIRECT_MOVED ? "MOVED" : "ASK",
                     r->slot, r->host, r->port);
    FUZZ_CHECK(n > 0 && (size_t)n == len && memcmp(again, text, len) == 0,
               "parsed as \"%s\", which is not the input", again);
}

static void check_map(const redis_slot_map *map)
{
    for (size_t i = 0; i < map->node_count; i++) {
        const redis_node *a = &map->nodes[i];
        FUZZ_CHECK(a->host[0] != '\0' && host_ok(a->host), "node %zu: bad host", i);
        FUZZ_CHECK(a->port >= 1 && a->port <= 65535, "node %zu: port %d", i, a->port);
        for (size_t j = 0; j < i; j++)
            FUZZ_CHECK(a->port != map->nodes[j].port || strcmp(a->host, map->nodes[j].host) != 0,
                       "nodes %zu and %zu are both %s:%d", j, i, a->host, a->port);
    }
    size_t holes = 0;
    for (unsigned s = 0; s < REDIS_SLOTS; s++) {
        int node = redis_slot_map_node(map, s);
        FUZZ_CHECK(node == -1 || (size_t)node < map->node_count, "slot %u: node %d of %zu", s,
                   node, map->node_count);
        holes += node == -1;
    }
    FUZZ_CHECK(redis_slot_map_holes(map, NULL, 0) == holes, "hole count %zu, slots say %zu",
               redis_slot_map_holes(map, NULL, 0), holes);
}

static void check_apply_moved(redis_slot_map *map, const redis_redirect *moved)
{
    static uint16_t before[REDIS_SLOTS];
    memcpy(before, map->owner, sizeof before);
    char err[512];
    int node = redis_slot_map_apply_moved(map, moved, ANSWERING_HOST, err, sizeof err);
    FUZZ_CHECK(node >= 0, "MOVED %u refused: %s", moved->slot, err);
    const redis_node *n = &map->nodes[node];
    FUZZ_CHECK(strcmp(n->host, redis_redirect_host(moved, ANSWERING_HOST)) == 0 &&
                   n->port == moved->port,
               "slot %u went to %s:%d", moved->slot, n->host, n->port);
    FUZZ_CHECK(redis_slot_map_node(map, moved->slot) == node, "slot %u not moved", moved->slot);
    before[moved->slot] = (uint16_t)node;
    FUZZ_CHECK(memcmp(before, map->owner, sizeof before) == 0, "another slot changed");
    check_map(map);
}

/* Whether some "*N" in the bytes asks for more than ARRAY_COUNT_MAX elements. */
static bool has_huge_array(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '*') continue;
        unsigned long count = 0;
        for (size_t j = i + 1; j < len && s[j] >= '0' && s[j] <= '9'; j++) {
            count = count * 10 + (unsigned long)(s[j] - '0');
            if (count > ARRAY_COUNT_MAX) return true;
        }
    }
    return false;
}

static void check_reply_bytes(const char *bytes, size_t len, const redis_redirect *redirect)
{
    if (has_huge_array(bytes, len)) return;
    redisReader *reader = redisReaderCreate();
    FUZZ_CHECK(reader != NULL, "redisReaderCreate: out of memory");
    void *reply = NULL;
    if (redisReaderFeed(reader, bytes, len) == REDIS_OK &&
        redisReaderGetReply(reader, &reply) == REDIS_OK && reply != NULL) {
        redis_slot_map map;
        char err[512] = "";
        int rc = redis_slot_map_from_reply(&map, reply, ANSWERING_HOST, err, sizeof err);
        FUZZ_CHECK(rc == 0 || rc == -1, "from_reply returned %d", rc);
        if (rc == -1) {
            FUZZ_CHECK(err[0] != '\0', "refused without a message");
            FUZZ_CHECK(map.node_count == 0 && map.nodes == NULL, "refused, but nodes left");
        }
        check_map(&map);
        if (rc == 0 && redirect->kind == REDIS_REDIRECT_MOVED) check_apply_moved(&map, redirect);
        redis_slot_map_free(&map);
        freeReplyObject(reply);
    }
    redisReaderFree(reader);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *bytes = (const char *)data;
    check_slot(bytes, size);
    redis_redirect redirect;
    check_redirect(bytes, size, &redirect);
    /* a MOVED to apply to the map: the input's own when it is one, else one
     * to the answering host, slot and port taken from the input's CRC */
    if (redirect.kind != REDIS_REDIRECT_MOVED) {
        uint16_t crc = redis_crc16(bytes, size);
        redirect.kind = REDIS_REDIRECT_MOVED;
        redirect.slot = crc & (REDIS_SLOTS - 1);
        redirect.host[0] = '\0';
        redirect.port = 1 + crc % 65535;
    }
    check_reply_bytes(bytes, size, &redirect);
    return 0;
}
