/*
 * redis_slots.h — the pure core of Redis Cluster routing: which slot a key
 * is in, which master serves a slot, and what a MOVED or ASK reply says
 * (no I/O: hiredis 0.14 has no cluster support, so Tally routes at its own
 * Redis edge, and this is the part of it that needs no socket).
 *
 * Slot: CRC16 (XMODEM: polynomial 0x1021, initial value 0, no reflection)
 * of the key, mod 16384. Hash tag: when the key holds a '{' and, after the
 * FIRST '{', a '}' with at least one byte between them, only the bytes
 * between that '{' and the first '}' after it are hashed; otherwise (no
 * '{', no '}' after it, or "{}" first) the whole key is. Tally's keys carry
 * the metric name as their tag (redis_keys.h), so one metric is one slot.
 *
 * Slot map: for each of the 16384 slots, the index of the master serving
 * it in a deduplicated node list (host, port), or no node (a hole: allowed,
 * a lookup says so). Built from a CLUSTER SLOTS reply, every part of which
 * is checked: a malformed reply is -1 with a message naming the range and
 * what is wrong, never an assert. Replicas in the reply are ignored.
 *
 * Empty host: Redis answers a NULL host in CLUSTER SLOTS and an empty one
 * in a redirection ("MOVED 3999 :6381") when the node's endpoint is unknown
 * (cluster-preferred-endpoint-type unknown-endpoint); both mean "the host
 * of the node that answered". The functions that build or change a map
 * therefore take that node's host (answering_host) and store it instead,
 * so one node is never listed twice under two names.
 *
 * Redirections: MOVED means the slot now lives on that node for good (apply
 * it to the map); ASK means this one command goes to that node, preceded by
 * ASKING, and the map stays as it is.
 */
#ifndef TALLY_REDIS_SLOTS_H
#define TALLY_REDIS_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#define REDIS_SLOTS 16384
/* A host name (253 bytes at most), an IPv4 or IPv6 address, and its NUL. */
#define REDIS_HOST_MAX 256
/* The most nodes a map lists (a map only adds nodes, see apply_moved). */
#define REDIS_SLOT_MAP_NODES_MAX 16384
/* A slot's owner when no node serves it. */
#define REDIS_SLOT_NO_NODE UINT16_MAX

/* CRC16/XMODEM of data[0..len); redis_crc16("123456789", 9) == 0x31C3. */
uint16_t redis_crc16(const void *data, size_t len);

/* The slot (0..16383) of key[0..len), the hash tag rule above applied. */
unsigned redis_slot(const char *key, size_t len);

/* Whether the n (>= 1) keys keys[i][0..lens[i]) all hash to one slot:
 * returns 1 with *slot = that slot, or 0 with *slot = the first key's slot
 * (a caller refuses such a transaction before sending it: CROSSSLOT). */
int redis_keys_same_slot(const char *const keys[], const size_t lens[], size_t n,
                         unsigned *slot);

typedef struct redis_node {
    char host[REDIS_HOST_MAX]; /* never empty in a map (see "Empty host") */
    int port;                  /* 1..65535 */
} redis_node;

typedef struct redis_slot_map {
    uint16_t owner[REDIS_SLOTS]; /* index into nodes, or REDIS_SLOT_NO_NODE */
    redis_node *nodes;           /* deduplicated by (host, port); owned by the map */
    size_t node_count;
    size_t node_capacity;
} redis_slot_map;

/* An empty map: no nodes, every slot a hole. Needs no free, but allows one. */
void redis_slot_map_init(redis_slot_map *map);

/* Frees the node list; the map is empty (as after init) afterwards. */
void redis_slot_map_free(redis_slot_map *map);

/*
 * Builds *map (which need not be initialised) from a CLUSTER SLOTS reply of
 * the node at answering_host: an array of ranges [start, end, master,
 * replica...], each node [host, port, ...]. Requires 0 <= start <= end <=
 * 16383, ranges that do not overlap, a host that is a non-empty printable
 * string without spaces shorter than REDIS_HOST_MAX (NULL or "" = the
 * answering host; "?", a hostname that is not set, is refused) and a port
 * in 1..65535. Returns 0, or -1 with err saying what is wrong and *map
 * empty. Either way the caller frees *map with redis_slot_map_free().
 */
int redis_slot_map_from_reply(redis_slot_map *map, const redisReply *reply,
                              const char *answering_host, char *err, size_t errlen);

/* The index of the node serving slot (< REDIS_SLOTS) in map->nodes, or -1
 * when none does. */
int redis_slot_map_node(const redis_slot_map *map, unsigned slot);

/*
 * For a client of one slot (the cache, cache.cluster): builds *map from the
 * reply to CLUSTER SLOTS of the node at answering_host, as
 * redis_slot_map_from_reply() does, and returns the index in map->nodes of
 * the master serving `slot`; or -1 with err saying why: the node refused
 * (not a cluster: "... cache.cluster = true needs a Redis Cluster"), the
 * reply does not parse, or no master serves the slot. Either way the caller
 * frees *map.
 */
int redis_slot_owner_from_reply(redis_slot_map *map, const redisReply *reply,
                                const char *answering_host, unsigned slot, char *err,
                                size_t errlen);

/* The run_id in the text of an INFO (server) reply into out (< outlen):
 * 0, or -1 when there is none or it does not fit. */
int redis_info_run_id(const char *info, char *out, size_t outlen);

/* The number of slots no node serves; writes their ranges ("8000-8191,
 * 9000", "..." when they do not fit) into buf, NUL-terminated. */
size_t redis_slot_map_holes(const redis_slot_map *map, char *buf, size_t buflen);

typedef enum redis_redirect_kind {
    REDIS_REDIRECT_NONE = 0, /* not a redirection, or one that does not parse */
    REDIS_REDIRECT_MOVED,
    REDIS_REDIRECT_ASK,
} redis_redirect_kind;

typedef struct redis_redirect {
    redis_redirect_kind kind;
    unsigned slot;             /* 0..16383 */
    char host[REDIS_HOST_MAX]; /* "": the host of the node that answered */
    int port;                  /* 1..65535 */
} redis_redirect;

/*
 * Parses the error reply err[0..len) as hiredis gives it (reply->str,
 * without the leading '-'): "MOVED <slot> <host>:<port>" or "ASK <slot>
 * <host>:<port>", exactly one space between the parts, decimal numbers
 * without a sign or a leading zero, the port after the LAST ':' (an IPv6
 * host holds colons: "MOVED 1 ::1:6380"). Returns the kind
 * and fills *out; for anything else (another error, or a MOVED or ASK that
 * does not parse) returns REDIS_REDIRECT_NONE with out->kind NONE, and the
 * caller treats the reply as the error it is.
 */
redis_redirect_kind redis_redirect_parse(const char *err, size_t len, redis_redirect *out);

/* The host a redirection sends to: r->host, or answering_host when empty. */
const char *redis_redirect_host(const redis_redirect *r, const char *answering_host);

/*
 * Applies a MOVED from the node at answering_host: the slot is served by
 * the node it names from now on, which is added to map->nodes when new
 * (existing indexes never change). Returns that node's index, or -1 with
 * err (not a MOVED, a bad answering host, REDIS_SLOT_MAP_NODES_MAX nodes
 * already, out of memory) and the map unchanged.
 */
int redis_slot_map_apply_moved(redis_slot_map *map, const redis_redirect *moved,
                               const char *answering_host, char *err, size_t errlen);

#endif
