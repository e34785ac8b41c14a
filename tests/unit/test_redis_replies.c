/*
 * test_redis_replies.c — the lean hiredis reply objects: real RESP fed
 * through a hiredis reader gives the same replies as hiredis' own functions,
 * top-level "+QUEUED"/"+OK" come back as the shared objects (and freeing them
 * is a no-op), and a nested "+OK" is a real object.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "redis_replies.h"

/* Feeds `resp` to a reader using the lean functions; returns the first reply. */
static redisReply *read_one(redisReader **reader, const char *resp)
{
    *reader = redisReaderCreate();
    assert_non_null(*reader);
    (*reader)->fn = &redis_lean_replies;
    assert_int_equal(redisReaderFeed(*reader, resp, strlen(resp)), REDIS_OK);
    void *reply = NULL;
    assert_int_equal(redisReaderGetReply(*reader, &reply), REDIS_OK);
    assert_non_null(reply);
    return reply;
}

static void test_top_level_statuses_are_shared(void **state)
{
    (void)state;
    redisReader *reader;
    redisReply *a = read_one(&reader, "+QUEUED\r\n+QUEUED\r\n+OK\r\n+PONG\r\n");
    void *b = NULL, *ok = NULL, *pong = NULL;
    assert_int_equal(redisReaderGetReply(reader, &b), REDIS_OK);
    assert_int_equal(redisReaderGetReply(reader, &ok), REDIS_OK);
    assert_int_equal(redisReaderGetReply(reader, &pong), REDIS_OK);
    assert_ptr_equal(a, b); /* one shared object */
    assert_int_equal(a->type, REDIS_REPLY_STATUS);
    assert_string_equal(a->str, "QUEUED");
    assert_int_equal(((redisReply *)ok)->type, REDIS_REPLY_STATUS);
    assert_string_equal(((redisReply *)ok)->str, "OK");
    /* any other status is a real object */
    assert_ptr_not_equal(pong, a);
    assert_ptr_not_equal(pong, ok);
    assert_string_equal(((redisReply *)pong)->str, "PONG");
    redis_lean_replies.freeObject(a); /* shared: no-op (ASan would see a bad free) */
    redis_lean_replies.freeObject(b);
    redis_lean_replies.freeObject(ok);
    redis_lean_replies.freeObject(pong);
    redisReaderFree(reader);
}

static void test_nested_replies_are_real(void **state)
{
    (void)state;
    redisReader *reader;
    redisReply *r = read_one(&reader, "*6\r\n+OK\r\n:42\r\n$5\r\nhello\r\n-ERR wrong\r\n$-1\r\n"
                                      "*2\r\n:-7\r\n+QUEUED\r\n");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 6);
    assert_int_equal(r->element[0]->type, REDIS_REPLY_STATUS);
    assert_string_equal(r->element[0]->str, "OK");
    assert_int_equal(r->element[1]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->element[1]->integer, 42);
    assert_int_equal(r->element[2]->type, REDIS_REPLY_STRING);
    assert_int_equal(r->element[2]->len, 5);
    assert_string_equal(r->element[2]->str, "hello");
    assert_int_equal(r->element[3]->type, REDIS_REPLY_ERROR);
    assert_string_equal(r->element[3]->str, "ERR wrong");
    assert_int_equal(r->element[4]->type, REDIS_REPLY_NIL);
    assert_int_equal(r->element[5]->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[5]->element[0]->integer, -7);
    assert_string_equal(r->element[5]->element[1]->str, "QUEUED");
    redis_lean_replies.freeObject(r); /* frees every nested object (ASan checks) */
    redisReaderFree(reader);
}

static void test_nil_and_empty_array_at_top_level(void **state)
{
    (void)state;
    redisReader *reader;
    redisReply *nil = read_one(&reader, "*-1\r\n*0\r\n");
    void *empty = NULL;
    assert_int_equal(redisReaderGetReply(reader, &empty), REDIS_OK);
    assert_int_equal(nil->type, REDIS_REPLY_NIL); /* an aborted EXEC */
    assert_int_equal(((redisReply *)empty)->type, REDIS_REPLY_ARRAY);
    assert_int_equal(((redisReply *)empty)->elements, 0);
    redis_lean_replies.freeObject(nil);
    redis_lean_replies.freeObject(empty);
    redisReaderFree(reader);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_top_level_statuses_are_shared),
        cmocka_unit_test(test_nested_replies_are_real),
        cmocka_unit_test(test_nil_and_empty_array_at_top_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
