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
 *
 * What the configuration asks of replication is set when the topic is
 * created (replication factor, min.insync.replicas) and checked against an
 * existing topic by kafka_topic_check_replication(): the replicas come from
 * the same metadata, min.insync.replicas from DescribeConfigs, which answers
 * the effective value (the topic's own, or the broker default it falls back
 * to). The check only reads; it never alters a topic an operator made, since
 * moving replicas is a cluster-wide decision (kafka-reassign-partitions).
 */
#include "kafka_topic.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Fetches the metadata of `topic` (through its handle `rkt`) into *md, with
 * *t its entry (NULL when the answer does not hold it). Returns 0 (the caller
 * destroys *md), or -1 with err filled. */
static int fetch_metadata(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *topic, int timeout_ms,
                          const struct rd_kafka_metadata **md,
                          const struct rd_kafka_metadata_topic **t, char *err, size_t errlen)
{
    *md = NULL;
    *t = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, md, timeout_ms > 0 ? timeout_ms : 1);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka metadata for topic %s: %s", topic, rd_kafka_err2str(e));
        return -1;
    }
    for (int i = 0; i < (*md)->topic_cnt && !*t; i++)
        if ((*md)->topics[i].topic && strcmp((*md)->topics[i].topic, topic) == 0)
            *t = &(*md)->topics[i];
    return 0;
}

/* Looks the topic up. Returns the partition count when every partition has a
 * leader, 0 when the topic does not exist, -2 when it exists but is not ready
 * yet, -1 on error (err filled). */
static int topic_lookup(rd_kafka_t *rk, rd_kafka_topic_t *rkt, const char *topic, int timeout_ms,
                        char *err, size_t errlen)
{
    const struct rd_kafka_metadata *md;
    const struct rd_kafka_metadata_topic *t;
    if (fetch_metadata(rk, rkt, topic, timeout_ms, &md, &t, err, errlen) < 0)
        return -1;
    int result = 0;
    if (!t || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        result = 0;
    } else if (t->err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE || t->partition_cnt == 0) {
        result = -2;
    } else if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "kafka metadata for topic %s: %s", topic, rd_kafka_err2str(t->err));
        result = -1;
    } else {
        result = t->partition_cnt;
        for (int p = 0; p < t->partition_cnt; p++)
            if (t->partitions[p].err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partitions[p].leader < 0)
                result = -2;
    }
    rd_kafka_metadata_destroy(md);
    return result;
}

/* ---- admin requests ---------------------------------------------------- */

/* An admin request under way: its options and the queue its answer comes to. */
typedef struct admin_request {
    rd_kafka_AdminOptions_t *opt;
    rd_kafka_queue_t *q;
} admin_request;

/* Prepares a request of kind `op` that the broker answers within timeout_ms.
 * Returns 0, or -1 with err filled ("WHAT: why"); admin_request_end() frees
 * what was made either way. */
static int admin_request_begin(admin_request *r, rd_kafka_t *rk, rd_kafka_admin_op_t op,
                               int timeout_ms, const char *what, char *err, size_t errlen)
{
    char errstr[512];
    r->opt = rd_kafka_AdminOptions_new(rk, op);
    r->q = rd_kafka_queue_new(rk);
    if (!r->opt || !r->q) {
        snprintf(err, errlen, "%s: cannot allocate admin request", what);
        return -1;
    }
    /* (librdkafka takes an operation timeout only for the topic operations) */
    if (rd_kafka_AdminOptions_set_request_timeout(r->opt, timeout_ms, errstr, sizeof errstr) ||
        (op == RD_KAFKA_ADMIN_OP_CREATETOPICS &&
         rd_kafka_AdminOptions_set_operation_timeout(r->opt, timeout_ms, errstr, sizeof errstr))) {
        snprintf(err, errlen, "%s: %s", what, errstr);
        return -1;
    }
    return 0;
}

/* Waits for the answer: returns its event (the caller destroys it), or NULL
 * with err filled when none came in time or the request failed as a whole. */
static rd_kafka_event_t *admin_request_wait(admin_request *r, int timeout_ms, const char *what,
                                            char *err, size_t errlen)
{
    rd_kafka_event_t *ev = rd_kafka_queue_poll(r->q, timeout_ms + 1000);
    if (!ev) {
        snprintf(err, errlen, "%s: no answer within %d ms", what, timeout_ms);
        return NULL;
    }
    if (rd_kafka_event_error(ev)) {
        snprintf(err, errlen, "%s: %s", what, rd_kafka_event_error_string(ev));
        rd_kafka_event_destroy(ev);
        return NULL;
    }
    return ev;
}

static void admin_request_end(admin_request *r)
{
    if (r->q)
        rd_kafka_queue_destroy(r->q);
    if (r->opt)
        rd_kafka_AdminOptions_destroy(r->opt);
}

/* ---- creation ---------------------------------------------------------- */

static int topic_create(rd_kafka_t *rk, const char *topic, const kafka_topic_spec *spec,
                        int timeout_ms, char *err, size_t errlen)
{
    char errstr[512], what[320], min_insync[16];
    snprintf(what, sizeof what, "kafka create topic %s", topic);
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, spec->partitions,
                                                    spec->replication_factor, errstr,
                                                    sizeof errstr);
    if (!nt) {
        snprintf(err, errlen, "%s: %s", what, errstr);
        return -1;
    }
    snprintf(min_insync, sizeof min_insync, "%d", spec->min_insync_replicas);
    /* the broker stamps each record: the dedup window's one clock (dedup.h);
     * an acks=all write is acknowledged once min.insync.replicas hold it */
    rd_kafka_resp_err_t set =
        rd_kafka_NewTopic_set_config(nt, "message.timestamp.type", "LogAppendTime");
    if (set == RD_KAFKA_RESP_ERR_NO_ERROR)
        set = rd_kafka_NewTopic_set_config(nt, "min.insync.replicas", min_insync);
    if (set != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, errlen, "%s: %s", what, rd_kafka_err2str(set));
        rd_kafka_NewTopic_destroy(nt);
        return -1;
    }
    int ret = -1;
    admin_request r = {0};
    rd_kafka_event_t *ev = NULL;
    if (admin_request_begin(&r, rk, RD_KAFKA_ADMIN_OP_CREATETOPICS, timeout_ms, what, err,
                            errlen) < 0)
        goto out;
    rd_kafka_CreateTopics(rk, &nt, 1, r.opt, r.q);
    ev = admin_request_wait(&r, timeout_ms, what, err, errlen);
    if (!ev)
        goto out;
    const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
    size_t n = 0;
    const rd_kafka_topic_result_t **tr = res ? rd_kafka_CreateTopics_result_topics(res, &n) : NULL;
    if (n != 1) {
        snprintf(err, errlen, "%s: unexpected admin result", what);
        goto out;
    }
    rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[0]);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        const char *msg = rd_kafka_topic_result_error_string(tr[0]);
        char hint[96] = "";
        if (e == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR)
            snprintf(hint, sizeof hint,
                     " (kafka.replication_factor is %d: at most the number of brokers)",
                     spec->replication_factor);
        snprintf(err, errlen, "%s: %s%s", what, msg ? msg : rd_kafka_err2str(e), hint);
        goto out;
    }
    ret = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    admin_request_end(&r);
    rd_kafka_NewTopic_destroy(nt);
    return ret;
}

int kafka_topic_ensure(rd_kafka_t *rk, const char *topic, const kafka_topic_spec *spec,
                       int timeout_ms, char *err, size_t errlen)
{
    assert(rk && topic && spec && spec->partitions >= 1 && spec->replication_factor >= 1 &&
           spec->min_insync_replicas >= 1 && timeout_ms > 0);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(err, errlen, "kafka topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    long long deadline = clock_mono_ms() + timeout_ms;
    int created = 0, result;
    for (;;) {
        int left = (int)(deadline - clock_mono_ms());
        result = topic_lookup(rk, rkt, topic, left, err, errlen);
        if (result > 0 || result == -1)
            break;
        if (result == 0 && !created) {
            if (topic_create(rk, topic, spec, left > 0 ? left : 1, err, errlen) < 0) {
                result = -1;
                break;
            }
            created = 1;
            continue;
        }
        if (clock_mono_ms() >= deadline) {
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

/* ---- the replication check --------------------------------------------- */

/* The partition with the fewest replicas, and how many have fewer than wanted. */
typedef struct replica_census {
    int partitions;
    int fewest;    /* replicas of partition `fewest_at` */
    int fewest_at;
    int short_of;  /* partitions with fewer than the wanted replicas */
} replica_census;

/* Counts the replicas of every partition of `topic`. Returns 0, or -1 with
 * err filled (unreachable, unknown topic, no partitions). */
static int count_replicas(rd_kafka_t *rk, const char *topic, int wanted, int timeout_ms,
                          replica_census *c, char *err, size_t errlen)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (!rkt) {
        snprintf(err, errlen, "kafka topic %s: %s", topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md;
    const struct rd_kafka_metadata_topic *t;
    int ret = fetch_metadata(rk, rkt, topic, timeout_ms, &md, &t, err, errlen);
    rd_kafka_topic_destroy(rkt);
    if (ret < 0)
        return -1;
    if (!t || t->err != RD_KAFKA_RESP_ERR_NO_ERROR || t->partition_cnt <= 0) {
        snprintf(err, errlen, "kafka metadata for topic %s: %s", topic,
                 !t || t->err == RD_KAFKA_RESP_ERR_NO_ERROR ? "no partitions"
                                                            : rd_kafka_err2str(t->err));
        ret = -1;
    } else {
        *c = (replica_census){.partitions = t->partition_cnt, .fewest = INT_MAX};
        for (int p = 0; p < t->partition_cnt; p++) {
            const struct rd_kafka_metadata_partition *mp = &t->partitions[p];
            if (mp->replica_cnt < c->fewest) {
                c->fewest = mp->replica_cnt;
                c->fewest_at = mp->id;
            }
            c->short_of += mp->replica_cnt < wanted;
        }
    }
    rd_kafka_metadata_destroy(md);
    return ret;
}

/* The topic's effective min.insync.replicas into *out. Returns 0, or -1 with
 * err filled. */
static int describe_min_insync(rd_kafka_t *rk, const char *topic, int timeout_ms, int *out,
                               char *err, size_t errlen)
{
    char what[320];
    snprintf(what, sizeof what, "kafka describe configs of topic %s", topic);
    rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
    if (!res) {
        snprintf(err, errlen, "%s: cannot allocate admin request", what);
        return -1;
    }
    int ret = -1;
    admin_request r = {0};
    rd_kafka_event_t *ev = NULL;
    if (admin_request_begin(&r, rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, timeout_ms, what, err,
                            errlen) < 0)
        goto out;
    rd_kafka_DescribeConfigs(rk, &res, 1, r.opt, r.q);
    ev = admin_request_wait(&r, timeout_ms, what, err, errlen);
    if (!ev)
        goto out;
    const rd_kafka_DescribeConfigs_result_t *dr = rd_kafka_event_DescribeConfigs_result(ev);
    size_t n = 0;
    const rd_kafka_ConfigResource_t **rs = dr ? rd_kafka_DescribeConfigs_result_resources(dr, &n)
                                              : NULL;
    if (n != 1) {
        snprintf(err, errlen, "%s: unexpected admin result", what);
        goto out;
    }
    rd_kafka_resp_err_t e = rd_kafka_ConfigResource_error(rs[0]);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char *msg = rd_kafka_ConfigResource_error_string(rs[0]);
        snprintf(err, errlen, "%s: %s", what, msg && *msg ? msg : rd_kafka_err2str(e));
        goto out;
    }
    size_t cnt = 0;
    const rd_kafka_ConfigEntry_t **entries = rd_kafka_ConfigResource_configs(rs[0], &cnt);
    const char *value = NULL;
    for (size_t i = 0; i < cnt && !value; i++)
        if (strcmp(rd_kafka_ConfigEntry_name(entries[i]), "min.insync.replicas") == 0)
            value = rd_kafka_ConfigEntry_value(entries[i]);
    char *end = NULL;
    errno = 0;
    long v = value ? strtol(value, &end, 10) : 0;
    if (!value || end == value || *end || errno || v < 1 || v > INT_MAX) {
        snprintf(err, errlen, "%s: %s min.insync.replicas%s%s", what,
                 value ? "unexpected" : "no", value ? " " : "", value ? value : "");
        goto out;
    }
    *out = (int)v;
    ret = 0;
out:
    if (ev)
        rd_kafka_event_destroy(ev);
    admin_request_end(&r);
    rd_kafka_ConfigResource_destroy(res);
    return ret;
}

/* Appends one more finding to err: the first after "kafka topic TOPIC: ",
 * the others after "; ". */
__attribute__((format(printf, 5, 6)))
static void add_finding(char *err, size_t errlen, size_t *used, const char *topic,
                        const char *fmt, ...)
{
    if (*used + 1 >= errlen)
        return; /* full: the first findings matter most */
    int n = *used ? snprintf(err + *used, errlen - *used, "; ")
                  : snprintf(err, errlen, "kafka topic %s: ", topic);
    *used += n > 0 && (size_t)n < errlen - *used ? (size_t)n : errlen - *used - 1;
    va_list ap;
    va_start(ap, fmt);
    n = vsnprintf(err + *used, errlen - *used, fmt, ap);
    va_end(ap);
    *used += n > 0 && (size_t)n < errlen - *used ? (size_t)n : errlen - *used - 1;
}

int kafka_topic_check_replication(rd_kafka_t *rk, const char *topic, const kafka_topic_spec *spec,
                                  int timeout_ms, char *err, size_t errlen)
{
    assert(rk && topic && spec && spec->replication_factor >= 1 &&
           spec->min_insync_replicas >= 1 && timeout_ms > 0 && errlen > 0);
    long long deadline = clock_mono_ms() + timeout_ms;
    replica_census c;
    if (count_replicas(rk, topic, spec->replication_factor, timeout_ms, &c, err, errlen) < 0)
        return -1;
    int left = (int)(deadline - clock_mono_ms()), min_insync;
    if (describe_min_insync(rk, topic, left > 0 ? left : 1, &min_insync, err, errlen) < 0)
        return -1;

    /* (the findings are kept short: a client's 503 carries them, cut at 512 bytes) */
    size_t used = 0;
    err[0] = '\0';
    if (c.fewest < spec->replication_factor)
        add_finding(err, errlen, &used, topic,
                    "partition %d has %d replica%s, kafka.replication_factor expects %d (%d of %d "
                    "partitions short): raise the topic's replication (kafka-reassign-partitions) "
                    "or set kafka.replication_factor to what the cluster has",
                    c.fewest_at, c.fewest, c.fewest == 1 ? "" : "s", spec->replication_factor,
                    c.short_of, c.partitions);
    if (min_insync < spec->min_insync_replicas)
        add_finding(err, errlen, &used, topic,
                    "min.insync.replicas is %d, kafka.min_insync_replicas expects at least %d: "
                    "raise it (kafka-configs --alter --entity-type topics --add-config "
                    "min.insync.replicas=%d) or lower kafka.min_insync_replicas",
                    min_insync, spec->min_insync_replicas, spec->min_insync_replicas);
    if (min_insync > c.fewest)
        add_finding(err, errlen, &used, topic,
                    "min.insync.replicas is %d but partition %d has %d replica%s, so every "
                    "acks=all write fails: lower it (kafka-configs --alter --entity-type topics "
                    "--add-config min.insync.replicas=%d) or add replicas",
                    min_insync, c.fewest_at, c.fewest, c.fewest == 1 ? "" : "s",
                    spec->min_insync_replicas <= c.fewest ? spec->min_insync_replicas : c.fewest);
    return used ? 1 : 0;
}
