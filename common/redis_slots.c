/*
 * redis_slots.c — key slots, the slot map and MOVED/ASK (see redis_slots.h).
 *
 * The CRC is computed four bits at a time from a 16-entry table (entry n is
 * the CRC register after shifting the nibble n through it from the top), a
 * middle way between the bitwise loop (8 steps a byte) and a 256-entry table:
 * keys are hashed on every command routed, mostly only their tag.
 *
 * The slot map is a flat array of 16384 node indexes (32 KB) next to a node
 * list that only grows: a MOVED may add a node, nothing removes one, so an
 * index a caller holds (a connection per node) stays valid while the map
 * lives. Rebuilding the map from CLUSTER SLOTS is how stale nodes go away.
 */
#include "redis_slots.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- slots ---------------------------------------------------------------- */

static const uint16_t crc16_nibble[16] = {
    0x0000, 0x1021, 0x2042, 0x3063, 0x4084, 0x50a5, 0x60c6, 0x70e7,
    0x8108, 0x9129, 0xa14a, 0xb16b, 0xc18c, 0xd1ad, 0xe1ce, 0xf1ef,
};

static uint16_t crc16_add_nibble(uint16_t crc, unsigned nibble)
{
    return (uint16_t)((crc << 4) ^ crc16_nibble[(crc >> 12) ^ nibble]);
}

uint16_t redis_crc16(const void *data, size_t len)
{
    const unsigned char *p = data;
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc = crc16_add_nibble(crc, p[i] >> 4);
        crc = crc16_add_nibble(crc, p[i] & 0x0f);
    }
    return crc;
}

/* The part of key[0..*len) that is hashed: its tag when it has one. */
static const char *hashed_part(const char *key, size_t *len)
{
    const char *open = memchr(key, '{', *len);
    if (open == NULL) return key;
    size_t after = (size_t)(open + 1 - key);
    const char *close = memchr(open + 1, '}', *len - after);
    if (close == NULL || close == open + 1) return key;
    *len = (size_t)(close - open - 1);
    return open + 1;
}

unsigned redis_slot(const char *key, size_t len)
{
    if (len == 0) return 0; /* CRC16 of nothing; memchr wants a real pointer */
    const char *part = hashed_part(key, &len);
    return redis_crc16(part, len) & (REDIS_SLOTS - 1);
}

int redis_keys_same_slot(const char *const keys[], const size_t lens[], size_t n, unsigned *slot)
{
    assert(n >= 1);
    *slot = redis_slot(keys[0], lens[0]);
    for (size_t i = 1; i < n; i++)
        if (redis_slot(keys[i], lens[i]) != *slot) return 0;
    return 1;
}

/* ---- the node list -------------------------------------------------------- */

void redis_slot_map_init(redis_slot_map *map)
{
    for (size_t s = 0; s < REDIS_SLOTS; s++) map->owner[s] = REDIS_SLOT_NO_NODE;
    map->nodes = NULL;
    map->node_count = 0;
    map->node_capacity = 0;
}

void redis_slot_map_free(redis_slot_map *map)
{
    free(map->nodes);
    redis_slot_map_init(map);
}

/* Whether host[0..len) can name a node: printable ASCII without spaces,
 * shorter than REDIS_HOST_MAX, not "?" (Redis' "no hostname set"). */
static int check_host(const char *host, size_t len, char *err, size_t errlen)
{
    if (len == 0 || len >= REDIS_HOST_MAX) {
        snprintf(err, errlen, "a host of %zu bytes (1..%d)", len, REDIS_HOST_MAX - 1);
        return -1;
    }
    if (len == 1 && host[0] == '?') {
        snprintf(err, errlen, "host \"?\" (the node has no hostname: set its "
                              "cluster-announce-hostname, or cluster-preferred-endpoint-type ip)");
        return -1;
    }
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (c <= ' ' || c >= 0x7f) {
            snprintf(err, errlen, "byte 0x%02x at %zu of the host", c, i);
            return -1;
        }
    }
    return 0;
}

/* The host a node is listed under: host[0..*len), or the answering node's
 * host when that is empty (*len updated); NULL with err when neither is a
 * host. */
static const char *resolve_host(const char *host, size_t *len, const char *answering_host,
                                char *err, size_t errlen)
{
    if (*len == 0) {
        if (answering_host == NULL) {
            snprintf(err, errlen, "an empty host (the answering node's), but no answering host");
            return NULL;
        }
        host = answering_host;
        *len = strlen(answering_host);
    }
    return check_host(host, *len, err, errlen) == 0 ? host : NULL;
}

static int find_node(const redis_slot_map *map, const char *host, size_t len, int port)
{
    for (size_t i = 0; i < map->node_count; i++) {
        const redis_node *n = &map->nodes[i];
        if (n->port == port && strlen(n->host) == len && memcmp(n->host, host, len) == 0)
            return (int)i;
    }
    return -1;
}

static int grow_nodes(redis_slot_map *map, char *err, size_t errlen)
{
    if (map->node_count < map->node_capacity) return 0;
    if (map->node_count >= REDIS_SLOT_MAP_NODES_MAX) {
        snprintf(err, errlen, "more than %d nodes", REDIS_SLOT_MAP_NODES_MAX);
        return -1;
    }
    size_t capacity = map->node_capacity == 0 ? 8 : map->node_capacity * 2;
    if (capacity > REDIS_SLOT_MAP_NODES_MAX) capacity = REDIS_SLOT_MAP_NODES_MAX;
    redis_node *nodes = realloc(map->nodes, capacity * sizeof *nodes);
    if (nodes == NULL) {
        snprintf(err, errlen, "out of memory for %zu nodes", capacity);
        return -1;
    }
    map->nodes = nodes;
    map->node_capacity = capacity;
    return 0;
}

/* The index of node (host[0..len), port) in the list, added when new; -1
 * with err when the list cannot grow. host was checked by check_host(). */
static int find_or_add_node(redis_slot_map *map, const char *host, size_t len, int port,
                            char *err, size_t errlen)
{
    assert(len > 0 && len < REDIS_HOST_MAX && port >= 1 && port <= 65535);
    int index = find_node(map, host, len, port);
    if (index >= 0) return index;
    if (grow_nodes(map, err, errlen) != 0) return -1;
    redis_node *n = &map->nodes[map->node_count];
    memcpy(n->host, host, len);
    n->host[len] = '\0';
    n->port = port;
    return (int)map->node_count++;
}

/* ---- CLUSTER SLOTS -------------------------------------------------------- */

static const char *reply_type_name(int type)
{
    switch (type) {
    case REDIS_REPLY_STRING: return "a string";
    case REDIS_REPLY_ARRAY: return "an array";
    case REDIS_REPLY_INTEGER: return "an integer";
    case REDIS_REPLY_NIL: return "a nil";
    case REDIS_REPLY_STATUS: return "a status";
    case REDIS_REPLY_ERROR: return "an error";
    default: return "a reply of an unknown type";
    }
}

/* Reads element `index` of a range as a slot number into *slot. */
static int read_slot_bound(const redisReply *range, size_t index, unsigned *slot, char *err,
                           size_t errlen)
{
    const redisReply *r = range->element[index];
    const char *what = index == 0 ? "start" : "end";
    if (r->type != REDIS_REPLY_INTEGER) {
        snprintf(err, errlen, "its %s slot is %s, not an integer", what, reply_type_name(r->type));
        return -1;
    }
    if (r->integer < 0 || r->integer >= REDIS_SLOTS) {
        snprintf(err, errlen, "its %s slot %lld is not in 0..%d", what, r->integer,
                 REDIS_SLOTS - 1);
        return -1;
    }
    *slot = (unsigned)r->integer;
    return 0;
}

/* Whether r is an array of at least min elements; err says what it is else
 * ("WHAT is an integer, not SHAPE"). */
static int require_array(const redisReply *r, size_t min, const char *what, const char *shape,
                         char *err, size_t errlen)
{
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= min) return 0;
    if (r->type == REDIS_REPLY_ARRAY)
        snprintf(err, errlen, "%s is an array of %zu elements, not %s", what, r->elements, shape);
    else
        snprintf(err, errlen, "%s is %s, not %s", what, reply_type_name(r->type), shape);
    return -1;
}

/* Reads a node [host, port, ...] into its (resolved) host and port. */
static int read_node(const redisReply *node, const char *answering_host, const char **host,
                     size_t *host_len, int *port, char *err, size_t errlen)
{
    if (require_array(node, 2, "its master", "[host, port, ...]", err, errlen) != 0) return -1;
    const redisReply *h = node->element[0], *p = node->element[1];
    if (h->type != REDIS_REPLY_STRING && h->type != REDIS_REPLY_NIL) {
        snprintf(err, errlen, "its master's host is %s, not a string", reply_type_name(h->type));
        return -1;
    }
    *host_len = h->type == REDIS_REPLY_STRING ? h->len : 0;
    *host = resolve_host(h->type == REDIS_REPLY_STRING ? h->str : "", host_len, answering_host,
                         err, errlen);
    if (*host == NULL) return -1;
    if (p->type != REDIS_REPLY_INTEGER || p->integer < 1 || p->integer > 65535) {
        if (p->type == REDIS_REPLY_INTEGER)
            snprintf(err, errlen, "its master's port %lld is not in 1..65535", p->integer);
        else
            snprintf(err, errlen, "its master's port is %s, not an integer",
                     reply_type_name(p->type));
        return -1;
    }
    *port = (int)p->integer;
    return 0;
}

/* Gives the slots start..end to node `index`; refuses a slot already given. */
static int assign_range(redis_slot_map *map, unsigned start, unsigned end, int index, char *err,
                        size_t errlen)
{
    for (unsigned s = start; s <= end; s++) {
        if (map->owner[s] != REDIS_SLOT_NO_NODE) {
            snprintf(err, errlen, "slot %u is in an earlier range too", s);
            return -1;
        }
        map->owner[s] = (uint16_t)index;
    }
    return 0;
}

/* Adds one range [start, end, master, replica...] to the map. */
static int add_range(redis_slot_map *map, const redisReply *range, const char *answering_host,
                     char *err, size_t errlen)
{
    if (require_array(range, 3, "it", "[start, end, master, ...]", err, errlen) != 0) return -1;
    unsigned start, end;
    if (read_slot_bound(range, 0, &start, err, errlen) != 0 ||
        read_slot_bound(range, 1, &end, err, errlen) != 0)
        return -1;
    if (start > end) {
        snprintf(err, errlen, "its start slot %u is after its end slot %u", start, end);
        return -1;
    }
    const char *host;
    size_t host_len;
    int port;
    if (read_node(range->element[2], answering_host, &host, &host_len, &port, err, errlen) != 0)
        return -1;
    int index = find_or_add_node(map, host, host_len, port, err, errlen);
    if (index < 0) return -1;
    return assign_range(map, start, end, index, err, errlen);
}

int redis_slot_map_from_reply(redis_slot_map *map, const redisReply *reply,
                              const char *answering_host, char *err, size_t errlen)
{
    redis_slot_map_init(map);
    if (reply == NULL) {
        snprintf(err, errlen, "CLUSTER SLOTS: no reply");
        return -1;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "CLUSTER SLOTS refused: %s", reply->str);
        return -1;
    }
    if (reply->type != REDIS_REPLY_ARRAY) {
        snprintf(err, errlen, "CLUSTER SLOTS answered %s, not an array",
                 reply_type_name(reply->type));
        return -1;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        char why[320];
        if (add_range(map, reply->element[i], answering_host, why, sizeof why) != 0) {
            snprintf(err, errlen, "CLUSTER SLOTS: range %zu of %zu: %s", i + 1, reply->elements,
                     why);
            redis_slot_map_free(map);
            return -1;
        }
    }
    return 0;
}

/* ---- lookups -------------------------------------------------------------- */

int redis_slot_map_node(const redis_slot_map *map, unsigned slot)
{
    assert(slot < REDIS_SLOTS);
    uint16_t owner = map->owner[slot];
    return owner == REDIS_SLOT_NO_NODE ? -1 : (int)owner;
}

int redis_slot_owner_from_reply(redis_slot_map *map, const redisReply *reply,
                                const char *answering_host, unsigned slot, char *err,
                                size_t errlen)
{
    redis_slot_map_init(map);
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(err, errlen, "CLUSTER SLOTS refused (%.120s): cache.cluster = true needs a "
                 "Redis Cluster", reply->str);
        return -1;
    }
    if (redis_slot_map_from_reply(map, reply, answering_host, err, errlen) != 0)
        return -1;
    int owner = redis_slot_map_node(map, slot);
    if (owner < 0)
        snprintf(err, errlen, "no master serves the cache's slot %u", slot);
    return owner;
}

int redis_info_run_id(const char *info, char *out, size_t outlen)
{
    const char *at = info ? strstr(info, "run_id:") : NULL;
    size_t n = at ? strcspn(at + 7, "\r\n") : 0;
    if (n == 0 || n >= outlen)
        return -1;
    memcpy(out, at + 7, n);
    out[n] = '\0';
    return 0;
}

/* Appends "start" or "start-end" (after ", " unless first) to buf at *used;
 * 0 when it did not fit (buf then ends in "..."). */
static int append_hole(char *buf, size_t buflen, size_t *used, unsigned start, unsigned end)
{
    char piece[32];
    const char *sep = *used == 0 ? "" : ", ";
    int n = start == end ? snprintf(piece, sizeof piece, "%s%u", sep, start)
                         : snprintf(piece, sizeof piece, "%s%u-%u", sep, start, end);
    if (*used + (size_t)n + 4 > buflen) { /* room for "..." and the NUL */
        if (*used + 4 <= buflen) memcpy(buf + *used, "...", 4);
        return 0;
    }
    memcpy(buf + *used, piece, (size_t)n + 1);
    *used += (size_t)n;
    return 1;
}

size_t redis_slot_map_holes(const redis_slot_map *map, char *buf, size_t buflen)
{
    size_t holes = 0, used = 0;
    int fits = buflen > 0;
    if (fits) buf[0] = '\0';
    for (unsigned s = 0; s < REDIS_SLOTS; s++) {
        if (map->owner[s] != REDIS_SLOT_NO_NODE) continue;
        unsigned end = s;
        while (end + 1 < REDIS_SLOTS && map->owner[end + 1] == REDIS_SLOT_NO_NODE) end++;
        holes += end - s + 1;
        if (fits) fits = append_hole(buf, buflen, &used, s, end);
        s = end;
    }
    return holes;
}

/* ---- MOVED and ASK -------------------------------------------------------- */

/* Reads the decimal number s[0..len) up to max: digits only, no sign, no
 * leading zero (as Redis writes it, so a parse formats back to its input). */
static int read_decimal(const char *s, size_t len, unsigned max, unsigned *out)
{
    if (len == 0 || len > 5 || (len > 1 && s[0] == '0')) return -1;
    unsigned v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > max) return -1;
    *out = v;
    return 0;
}

/* The kind named by the word at the start of err, and the text after its space. */
static redis_redirect_kind read_kind(const char *err, size_t len, size_t *rest)
{
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        *rest = 6;
        return REDIS_REDIRECT_MOVED;
    }
    if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        *rest = 4;
        return REDIS_REDIRECT_ASK;
    }
    return REDIS_REDIRECT_NONE;
}

/* Reads "<host>:<port>" (the port after the last ':', host may be empty). */
static int read_endpoint(const char *s, size_t len, redis_redirect *out)
{
    const char *colon = NULL;
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    }
    if (colon == NULL) return -1;
    size_t host_len = (size_t)(colon - s);
    unsigned port;
    if (read_decimal(colon + 1, len - host_len - 1, 65535, &port) != 0 || port == 0) return -1;
    char why[160];
    if (host_len > 0 && check_host(s, host_len, why, sizeof why) != 0) return -1;
    memcpy(out->host, s, host_len);
    out->host[host_len] = '\0';
    out->port = (int)port;
    return 0;
}

redis_redirect_kind redis_redirect_parse(const char *err, size_t len, redis_redirect *out)
{
    memset(out, 0, sizeof *out);
    size_t at;
    redis_redirect_kind kind = read_kind(err, len, &at);
    if (kind == REDIS_REDIRECT_NONE) return kind;
    const char *space = memchr(err + at, ' ', len - at);
    if (space == NULL) return REDIS_REDIRECT_NONE;
    size_t slot_len = (size_t)(space - (err + at));
    size_t endpoint_at = at + slot_len + 1;
    if (read_decimal(err + at, slot_len, REDIS_SLOTS - 1, &out->slot) != 0 ||
        read_endpoint(err + endpoint_at, len - endpoint_at, out) != 0) {
        memset(out, 0, sizeof *out);
        return REDIS_REDIRECT_NONE;
    }
    out->kind = kind;
    return kind;
}

const char *redis_redirect_host(const redis_redirect *r, const char *answering_host)
{
    return r->host[0] != '\0' ? r->host : answering_host;
}

int redis_slot_map_apply_moved(redis_slot_map *map, const redis_redirect *moved,
                               const char *answering_host, char *err, size_t errlen)
{
    if (moved->kind != REDIS_REDIRECT_MOVED || moved->slot >= REDIS_SLOTS || moved->port < 1 ||
        moved->port > 65535) {
        snprintf(err, errlen, "not a MOVED redirection (or its slot or port is out of range)");
        return -1;
    }
    char why[320];
    size_t host_len = strlen(moved->host);
    const char *host = resolve_host(moved->host, &host_len, answering_host, why, sizeof why);
    int index = host == NULL ? -1 : find_or_add_node(map, host, host_len, moved->port, why,
                                                     sizeof why);
    if (index < 0) {
        snprintf(err, errlen, "MOVED %u: %s", moved->slot, why);
        return -1;
    }
    map->owner[moved->slot] = (uint16_t)index;
    return index;
}
