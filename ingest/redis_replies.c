/*
 * redis_replies.c — see redis_replies.h.
 */
#include "redis_replies.h"

#include <stdlib.h>
#include <string.h>

static char queued_text[] = "QUEUED", ok_text[] = "OK";
static redisReply queued_reply = {.type = REDIS_REPLY_STATUS, .str = queued_text, .len = 6};
static redisReply ok_reply = {.type = REDIS_REPLY_STATUS, .str = ok_text, .len = 2};

static void *link_to_parent(const redisReadTask *task, redisReply *r)
{
    if (task->parent) {
        redisReply *parent = task->parent->obj;
        parent->element[task->idx] = r;
    }
    return r;
}

static redisReply *new_reply(int type)
{
    redisReply *r = calloc(1, sizeof *r);
    if (r)
        r->type = type;
    return r;
}

static void *create_string(const redisReadTask *task, char *str, size_t len)
{
    if (!task->parent && task->type == REDIS_REPLY_STATUS) {
        if (len == 6 && memcmp(str, "QUEUED", 6) == 0)
            return &queued_reply;
        if (len == 2 && memcmp(str, "OK", 2) == 0)
            return &ok_reply;
    }
    redisReply *r = new_reply(task->type);
    char *copy = malloc(len + 1);
    if (!r || !copy) {
        free(r);
        free(copy);
        return NULL;
    }
    memcpy(copy, str, len);
    copy[len] = '\0';
    r->str = copy;
    r->len = len;
    return link_to_parent(task, r);
}

static void *create_array(const redisReadTask *task, int elements)
{
    redisReply *r = new_reply(REDIS_REPLY_ARRAY);
    if (!r)
        return NULL;
    if (elements > 0) {
        r->element = calloc((size_t)elements, sizeof *r->element);
        if (!r->element) {
            free(r);
            return NULL;
        }
    }
    r->elements = (size_t)elements;
    return link_to_parent(task, r);
}

static void *create_integer(const redisReadTask *task, long long value)
{
    redisReply *r = new_reply(REDIS_REPLY_INTEGER);
    if (!r)
        return NULL;
    r->integer = value;
    return link_to_parent(task, r);
}

static void *create_nil(const redisReadTask *task)
{
    redisReply *r = new_reply(REDIS_REPLY_NIL);
    return r ? link_to_parent(task, r) : NULL;
}

static void free_reply(void *reply)
{
    if (reply != &queued_reply && reply != &ok_reply)
        freeReplyObject(reply);
}

redisReplyObjectFunctions redis_lean_replies = {create_string, create_array, create_integer,
                                                    create_nil, free_reply};

