/*
 * redis_replies.h — reply objects for hiredis that skip the thousands of
 * allocations a transaction's "+QUEUED" answers would cost.
 *
 * A group's transaction (live_update.h) is answered "+QUEUED" once per
 * command, and hiredis builds and frees a reply object for each. These
 * functions build every reply exactly as hiredis' defaults do, so that
 * freeReplyObject() frees it, except that a top-level "+QUEUED" or "+OK" is
 * answered with a shared, read-only object that must not be modified.
 * Install with `ac->c.reader->fn = &redis_lean_replies` on a new context.
 */
#ifndef TALLY_REDIS_REPLIES_H
#define TALLY_REDIS_REPLIES_H

#include <hiredis/hiredis.h>

extern redisReplyObjectFunctions redis_lean_replies;

#endif
