/*
 * redis_nodes.c — see redis_nodes.h.
 */
#include "redis_nodes.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "redis_auth.h"
#include "redis_slots.h"

typedef struct node {
    redisContext *c;
    size_t pending;
} node;

struct redis_nodes {
    node *nodes;
    size_t count;
    redis_slot_map map; /* cluster: the slots' masters, indexes into nodes */
    int cluster;
};

/* A blocking connection to host:port with its timeout and AUTH, or NULL with err. */
static redisContext *connect_node(const tally_config *cfg, const char *host, int port, char *err,
                                  size_t errlen)
{
    int ms = cfg->redis.timeout_ms < 5000 ? 5000 : cfg->redis.timeout_ms;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(host, port, tv);
    if (!c) {
        snprintf(err, errlen, "redis %s:%d: out of memory", host, port);
        return NULL;
    }
    char why[512] = "";
    const char *step = "redis connect";
    redis_auth auth;
    int rc = -1;
    if (c->err) {
        snprintf(why, sizeof why, "%s", c->errstr);
    } else if (redisSetTimeout(c, tv) != REDIS_OK) {
        snprintf(why, sizeof why, "cannot set the timeout");
    } else {
        step = "redis auth";
        if (redis_auth_load(&auth, cfg->redis.username, cfg->redis.password_file, why,
                            sizeof why) == 0) {
            rc = redis_auth_send(c, &auth, why, sizeof why); /* (the password is wiped at once) */
            redis_auth_clear(&auth);
        }
    }
    if (rc != 0) {
        snprintf(err, errlen, "%s: %s (%s:%d)", step, why, host, port);
        redisFree(c);
        return NULL;
    }
    return c;
}

/* The cluster's map from CLUSTER SLOTS on the seed, and a connection per master. */
static int open_masters(redis_nodes *n, const tally_config *cfg, char *err, size_t errlen)
{
    redisReply *reply = redisCommand(n->nodes[0].c, "CLUSTER SLOTS");
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        redis_nodes_failed(n->nodes[0].c, reply, "CLUSTER SLOTS", err, errlen);
        if (reply)
            freeReplyObject(reply);
        return -1;
    }
    int rc = redis_slot_map_from_reply(&n->map, reply, cfg->redis.host, err, errlen);
    freeReplyObject(reply);
    char holes[128];
    if (rc == 0 && redis_slot_map_holes(&n->map, holes, sizeof holes) > 0) {
        snprintf(err, errlen, "redis cluster: slots without a master: %s", holes);
        rc = -1;
    }
    if (rc != 0)
        return -1;
    redisFree(n->nodes[0].c); /* (the seed may be a replica: masters only from here) */
    free(n->nodes);
    n->count = 0;
    n->nodes = calloc(n->map.node_count, sizeof *n->nodes);
    if (!n->nodes) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n->map.node_count; i++) {
        n->nodes[i].c = connect_node(cfg, n->map.nodes[i].host, n->map.nodes[i].port, err, errlen);
        if (!n->nodes[i].c)
            return -1;
        n->count++;
    }
    return 0;
}

int redis_nodes_open(redis_nodes **out, const tally_config *cfg, char *err, size_t errlen)
{
    *out = NULL;
    redis_nodes *n = calloc(1, sizeof *n);
    if (n)
        n->nodes = calloc(1, sizeof *n->nodes);
    if (!n || !n->nodes) {
        free(n);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    redis_slot_map_init(&n->map);
    n->cluster = cfg->redis.cluster;
    n->nodes[0].c = connect_node(cfg, cfg->redis.host, cfg->redis.port, err, errlen);
    if (!n->nodes[0].c || (n->count = 1, n->cluster && open_masters(n, cfg, err, errlen) != 0)) {
        redis_nodes_close(n);
        return -1;
    }
    *out = n;
    return 0;
}

void redis_nodes_close(redis_nodes *n)
{
    if (!n)
        return;
    for (size_t i = 0; i < n->count; i++)
        redisFree(n->nodes[i].c);
    free(n->nodes);
    redis_slot_map_free(&n->map);
    free(n);
}

size_t redis_nodes_count(const redis_nodes *n)
{
    return n->count;
}

redisContext *redis_nodes_at(const redis_nodes *n, size_t i)
{
    return i < n->count ? n->nodes[i].c : NULL;
}

static node *node_for_slot(const redis_nodes *n, unsigned slot)
{
    if (!n->cluster)
        return &n->nodes[0];
    int i = redis_slot_map_node(&n->map, slot);
    return i >= 0 && (size_t)i < n->count ? &n->nodes[i] : NULL;
}

redisContext *redis_nodes_for_slot(const redis_nodes *n, unsigned slot)
{
    node *nd = node_for_slot(n, slot);
    return nd ? nd->c : NULL;
}

unsigned redis_nodes_command_slot(int argc, const char **argv, const size_t *argvlen)
{
    int k = argc > 3 && strcasecmp(argv[0], "EVAL") == 0 ? 3 : 1;
    return k < argc ? redis_slot(argv[k], argvlen[k]) : 0;
}

int redis_nodes_append(redis_nodes *n, int argc, const char **argv, const size_t *argvlen,
                       char *err, size_t errlen)
{
    node *nd = node_for_slot(n, redis_nodes_command_slot(argc, argv, argvlen));
    if (!nd) {
        snprintf(err, errlen, "redis cluster: no master for the key %.*s", (int)argvlen[1], argv[1]);
        return -1;
    }
    if (redisAppendCommandArgv(nd->c, argc, argv, argvlen) != REDIS_OK)
        return redis_nodes_failed(nd->c, NULL, "redis append", err, errlen);
    nd->pending++;
    return 0;
}

size_t redis_nodes_pending(const redis_nodes *n)
{
    size_t total = 0;
    for (size_t i = 0; i < n->count; i++)
        total += n->nodes[i].pending;
    return total;
}

int redis_nodes_drain(redis_nodes *n, char *err, size_t errlen)
{
    for (size_t i = 0; i < n->count; i++) {
        node *nd = &n->nodes[i];
        while (nd->pending > 0) {
            redisReply *reply = NULL;
            if (redisGetReply(nd->c, (void **)&reply) != REDIS_OK || !reply)
                return redis_nodes_failed(nd->c, NULL, "redis", err, errlen);
            nd->pending--;
            int refused = reply->type == REDIS_REPLY_ERROR;
            if (refused)
                redis_nodes_failed(nd->c, reply, "redis error reply", err, errlen);
            freeReplyObject(reply);
            if (refused)
                return -1;
        }
    }
    return 0;
}

int redis_nodes_failed(const redisContext *c, const redisReply *reply, const char *what, char *err,
                       size_t errlen)
{
    if (!reply) {
        snprintf(err, errlen, "%s: %s", what, c && c->errstr[0] ? c->errstr : "connection error");
        return -1;
    }
    redis_redirect rd;
    if (reply->type == REDIS_REPLY_ERROR &&
        redis_redirect_parse(reply->str, reply->len, &rd) != REDIS_REDIRECT_NONE)
        snprintf(err, errlen, "%s: %s (the cluster's slots moved during the rebuild: run it again)",
                 what, reply->str);
    else
        snprintf(err, errlen, "%s: %s", what,
                 reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
    return -1;
}
