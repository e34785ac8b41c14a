/*
 * kafka_topic.c — topic lookup and creation (see kafka_topic.h).
 *
 * Metadata is asked for this one topic through a topic handle; librdkafka
 * never auto-creates topics from a consumer's metadata request and Tally
 * relies on explicit creation anyway, so the partition count is always the
 * configured one, never the broker's num.partitions default. After
 * CreateTopics succeeds the broker may still answer "leader not available"
 * for a moment: metadata is polled until every partition has a leader, so a
 * caller can produce or assign right away.
 */
#include "kafka_topic.h"

#include <assert.h>
#include <stdio.h>
#include <time.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Looks the topic up. Returns the partition count when every partition has a
 * leader, 0 when the topic does not exist, -2 when it exists but is not ready
 * yet, -1 on error (err filled). */
static int topic_lookup(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *topic, int timeout_ms,
                        char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms > 0 ? timeout_ms : 1);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka metadata for topic %s: %s", topic, rd_kafka_err2str(e));
        return -1;
    }
    int result = 0;
    for (int i = 0; i < md->topic_cnt; i++) {
        const struct rd_kafka_metadata_topic *t = &md->topics[i];
        if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
            break;
        if (t->err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE || t->partition_cnt == 0) {
            result = -2;
            break;
        }
        if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            snprintf(err, errlen, "kafka metadata for topic %s: %s", topic, rd_kafka_err2str(t->err));
            result = -1;
            break;
        }
        result = t->partition_cnt;
        for (int p = 0; p < t->partition_cnt; p++)
            if (t->partitions[p].err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partitions[p].leader < 0)
                result = -2;
        break;
    }
    rd_kafka_metadata_destroy(md);
    return result;
}

static int topic_create(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms,
                        char *err, size_t errlen)
{
    char errstr[512];
    int ret = -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, 1, errstr, sizeof errstr);
    if (!nt) {
        snprintf(err, errlen, "kafka create topic %s: %s", topic, errstr);
        return -1;
    }
    /* the broker stamps each record: the dedup window's one clock (dedup.h) */
    rd_kafka_resp_err_t set = rd_kafka_NewTopic_set_config(nt, "message.timestamp.type",
                                                           "LogAppendTime");
    if (set != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka create topic %s: %s", topic, rd_kafka_err2str(set));
        rd_kafka_NewTopic_destroy(nt);
        return -1;
    }
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_event_t *ev = NULL;
    if (!opt || !q) {
        snprintf(err, errlen, "kafka create topic %s: cannot allocate admin request", topic);
        goto out;
    }
    if (rd_kafka_AdminOptions_set_operation_timeout(opt, timeout_ms, errstr, sizeof errstr) ||
        rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, errstr, sizeof errstr)) {
        snprintf(err, errlen, "kafka create topic %s: %s", topic, errstr);
        goto out;
    }
    rd_kafka_CreateTopics(rk, &nt, 1, opt, q);
    ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
    if (!ev) {
        snprintf(err, errlen, "kafka create topic %s: no answer within %d ms", topic, timeout_ms);
        goto out;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "kafka create topic %s: %s", topic, rd_kafka_event_error_string(ev));
        goto out;
    }
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
    if (n != 1) {
        snprintf(err, errlen, "kafka create topic %s: unexpected admin result", topic);
        goto out;
    }
    rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[0]);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        const char *msg = rd_kafka_topic_result_error_string(tr[0]);
        snprintf(err, errlen, "kafka create topic %s: %s", topic, msg ? msg : rd_kafka_err2str(e));
        goto out;
    }
    ret = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (q)
        rd_kafka_queue_destroy(q);
    if (opt)
        rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_NewTopic_destroy(nt);
    return ret;
}

int kafka_topic_ensure(rd_kafka_t *rk, const char *topic, int partitions, int timeout_ms,
                       char *err, size_t errlen)
{
    assert(rk && topic && partitions >= 1 && timeout_ms > 0);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(err, errlen, "kafka topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    long long deadline = now_ms() + timeout_ms;
    int created = 0, result;
    for (;;) {
        int left = (int)(deadline - now_ms());
        result = topic_lookup(rk, rkt, topic, left, err, errlen);
        if (result > 0 || result == -1)
            break;
        if (result == 0 && !created) {
            if (topic_create(rk, topic, partitions, left > 0 ? left : 1, err, errlen) < 0) {
                result = -1;
                break;
            }
            created = 1;
            continue;
        }
        if (now_ms() >= deadline) {
            snprintf(err, errlen, "kafka topic %s: %s after %d ms", topic,
                     result == 0 ? "still unknown after creation" : "partitions still without leader",
                     timeout_ms);
            result = -1;
            break;
        }
        sleep_ms(100);
    }
    rd_kafka_topic_destroy(rkt);
    return result;
}
