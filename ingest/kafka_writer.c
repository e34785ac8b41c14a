/*
 * kafka_writer.c — the Kafka edge of tally-ingest.
 *
 * librdkafka runs its own threads and hands delivery reports to the
 * application through its main queue, served by rd_kafka_poll(). To keep the
 * whole ingest process on one libevent loop (HTTP, Redis and Kafka callbacks
 * all on one thread, no locks), the main queue is told to write a byte into a
 * pipe whenever it becomes non-empty (rd_kafka_queue_io_event_enable); the
 * read end is a libevent event that drains the pipe and polls the queue. A
 * slow periodic timer polls too, as a belt-and-braces against a lost wake-up.
 *
 * Durability comes from the producer settings, not from this file: the
 * idempotent producer implies acks=all and bounded in-flight requests, and
 * message.timeout.ms bounds how long a record may wait before it is reported
 * failed. A failed record is never retried here: the HTTP client gets a 503
 * and retries with the batch's idempotency key, which makes the retry safe.
 *
 * acks=all is only as strong as the topic: with one replica it means the
 * leader alone. So at start, before anything is acknowledged, the topic is
 * made (or found) and checked against kafka.replication_factor and
 * kafka.min_insync_replicas (kafka_topic.h). Until both succeed the writer
 * refuses every record with the reason (the client's 503 names it, /healthz
 * says kafka down with it), and tries again every 2 s, so an operator who
 * fixes the topic sees ingest take batches without a restart.
 */
#include "kafka_writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "kafka_conf.h"
#include "kafka_topic.h"
#include "log.h"

struct kafka_writer {
    rd_kafka_t *rk;
    rd_kafka_queue_t *main_queue;
    char topic[CONFIG_STR_MAX];
    int wake_pipe[2];
    struct event *wake_event;
    struct event *poll_timer;
    struct event *topic_timer; /* retries topic creation and its check until both succeed */
    kafka_topic_spec spec;     /* what the configuration asks of the topic */
    int topic_ready;           /* made and checked: records may be sent */
    char topic_problem[1024];  /* why not ready ("" once ready): every refusal says it */
    time_t problem_logged;     /* when topic_problem was last logged */
    int up;
    int create_time_warned; /* the topic's timestamps are CreateTime (dedup.h) */
};

/* What travels with each record through librdkafka (msg_opaque). */
typedef struct delivery_ticket {
    kafka_delivery_fn done;
    void *opaque;
} delivery_ticket;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *writer_opaque)
{
    (void)rk;
    kafka_writer *w = writer_opaque;
    delivery_ticket *ticket = msg->_private;
    if (msg->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        w->up = 1;
        rd_kafka_timestamp_type_t type;
        int64_t log_ms = rd_kafka_message_timestamp(msg, &type);
        if (type != RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME && !w->create_time_warned) {
            log_warn("topic %s stamps records with the producer's clock (CreateTime), so the "
                     "dedup window follows each ingest host's clock; set its "
                     "message.timestamp.type=LogAppendTime (Tally creates its topics so)",
                     w->topic);
            w->create_time_warned = 1;
        }
        ticket->done(ticket->opaque, KAFKA_DELIVERED, log_ms, NULL);
    } else {
        kafka_outcome outcome =
            msg->err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE ? KAFKA_TOO_LARGE
            : rd_kafka_message_status(msg) == RD_KAFKA_MSG_STATUS_NOT_PERSISTED ? KAFKA_NOT_STORED
                                                                               : KAFKA_MAYBE_STORED;
        log_warn("kafka delivery failed: %s%s", rd_kafka_err2str(msg->err),
                 outcome == KAFKA_MAYBE_STORED ? " (possibly stored)" : "");
        ticket->done(ticket->opaque, outcome, -1, rd_kafka_err2str(msg->err));
    }
    free(ticket);
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *writer_opaque)
{
    (void)rk;
    kafka_writer *w = writer_opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT)
        w->up = 0;
    log_warn("kafka: %s: %s", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* librdkafka's statistics, once a second: a broker connection back UP means
 * Kafka can take batches again, before any delivery has proved it (so
 * /healthz can report 200 and a load balancer sends traffic back). */
static int on_stats(rd_kafka_t *rk, char *json, size_t json_len, void *writer_opaque)
{
    (void)rk;
    (void)json_len;
    kafka_writer *w = writer_opaque;
    if (strstr(json, "\"state\":\"UP\""))
        w->up = 1;
    return 0; /* (librdkafka frees json) */
}

static void serve_queue(kafka_writer *w)
{
    while (rd_kafka_poll(w->rk, 0) > 0)
        ;
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    char drain[256];
    while (read(fd, drain, sizeof drain) > 0)
        ;
    serve_queue(arg);
}

static void on_poll_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    serve_queue(arg);
}

/* Creates the topic if needed and checks its replication; on failure (broker
 * down, or a topic replicated less than the configuration asks) retries every
 * 2 s. Until then kafka_writer_send() refuses, so clients get 503 and why.
 * The same problem is logged again at most once a minute. */
static void ensure_topic(kafka_writer *w)
{
    char why[sizeof w->topic_problem];
    int n = kafka_topic_ensure(w->rk, w->topic, &w->spec, 3000, why, sizeof why);
    int checked = n > 0 ? kafka_topic_check_replication(w->rk, w->topic, &w->spec, 3000, why,
                                                        sizeof why)
                        : -1;
    if (checked == 0) {
        w->topic_ready = 1;
        w->up = 1;
        w->topic_problem[0] = '\0';
        log_info("kafka producer ready: topic %s (%d partitions, replication >= %d, "
                 "min.insync.replicas >= %d), idempotent, acks=all",
                 w->topic, n, w->spec.replication_factor, w->spec.min_insync_replicas);
        return;
    }
    w->up = 0;
    time_t now = time(NULL);
    if (strcmp(why, w->topic_problem) != 0 || now - w->problem_logged >= 60) {
        if (checked == 1)
            log_error("%s; acknowledging nothing (503) until it is fixed, checking again every 2 s",
                      why);
        else
            log_warn("kafka topic %s not ready (%s); retrying in 2 s", w->topic, why);
        w->problem_logged = now;
    }
    snprintf(w->topic_problem, sizeof w->topic_problem, "%s", why);
    struct timeval retry = {2, 0};
    if (event_add(w->topic_timer, &retry) != 0)
        log_error("libevent: cannot schedule the topic retry");
}

static void on_topic_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ensure_topic(arg);
}

static rd_kafka_conf_t *producer_conf(kafka_writer *w, const tally_config *cfg, char *err,
                                      size_t errlen)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        snprintf(err, errlen, "out of memory creating kafka config");
        return NULL;
    }
    char timeout[32], linger[32];
    snprintf(timeout, sizeof timeout, "%d", cfg->kafka.delivery_timeout_ms);
    snprintf(linger, sizeof linger, "%d", cfg->kafka.linger_ms);
    if (kafka_conf_set(conf, "bootstrap.servers", cfg->kafka.brokers, err, errlen) ||
        kafka_conf_set(conf, "enable.idempotence", "true", err, errlen) ||
        kafka_conf_set(conf, "acks", "all", err, errlen) ||
        kafka_conf_set(conf, "message.timeout.ms", timeout, err, errlen) ||
        kafka_conf_set(conf, "linger.ms", linger, err, errlen) ||
        kafka_conf_set(conf, "message.max.bytes", "16000000", err, errlen) ||
        /* one produce request at a time: batches confirmed meanwhile travel
         * together in the next (group commit for Kafka); measured, the
         * broker's CPU at 1 M events/s fell from ~23% to ~16% of a core */
        kafka_conf_set(conf, "max.in.flight.requests.per.connection", "1", err, errlen) ||
        kafka_conf_set(conf, "client.id", "tally-ingest", err, errlen) ||
        kafka_conf_set(conf, "statistics.interval.ms", "1000", err, errlen) ||
        /* a restarted broker is found within a second (the default backs off
         * to 10 s, long enough to miss a broker that is back) */
        kafka_conf_set(conf, "reconnect.backoff.max.ms", "1000", err, errlen) ||
        /* the operator's security settings (they cannot touch the above) */
        kafka_conf_apply_client_properties(conf, cfg->kafka.client_properties, err, errlen)) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_opaque(conf, w);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_kafka_error);
    rd_kafka_conf_set_stats_cb(conf, on_stats);
    rd_kafka_conf_set_log_cb(conf, kafka_log_to_tally);
    return conf;
}

kafka_writer *kafka_writer_new(struct event_base *base, const tally_config *cfg, char *err,
                               size_t errlen)
{
    kafka_writer *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    w->wake_pipe[0] = w->wake_pipe[1] = -1;
    snprintf(w->topic, sizeof w->topic, "%s", cfg->kafka.topic);

    rd_kafka_conf_t *conf = producer_conf(w, cfg, err, errlen);
    if (!conf)
        goto fail;
    char why[512];
    w->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!w->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(err, errlen, "creating kafka producer: %s", why);
        goto fail;
    }
    w->spec = (kafka_topic_spec){.partitions = cfg->kafka.partitions,
                                 .replication_factor = cfg->kafka.replication_factor,
                                 .min_insync_replicas = cfg->kafka.min_insync_replicas};

    if (pipe2(w->wake_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        goto fail;
    }
    w->main_queue = rd_kafka_queue_get_main(w->rk);
    if (!w->main_queue) {
        snprintf(err, errlen, "kafka: no main queue");
        goto fail;
    }
    rd_kafka_queue_io_event_enable(w->main_queue, w->wake_pipe[1], "w", 1);
    w->wake_event = event_new(base, w->wake_pipe[0], EV_READ | EV_PERSIST, on_wake, w);
    w->poll_timer = event_new(base, -1, EV_PERSIST, on_poll_timer, w);
    struct timeval every = {0, 100 * 1000};
    w->topic_timer = event_new(base, -1, 0, on_topic_timer, w);
    if (!w->wake_event || !w->poll_timer || !w->topic_timer ||
        event_add(w->wake_event, NULL) != 0 || event_add(w->poll_timer, &every) != 0) {
        snprintf(err, errlen, "libevent: cannot register kafka events");
        goto fail;
    }
    ensure_topic(w);
    return w;
fail:
    kafka_writer_free(w, 0);
    return NULL;
}

int kafka_writer_send(kafka_writer *w, const char *key, size_t key_len, const char *digest,
                      uint8_t *payload, size_t payload_len, kafka_delivery_fn done, void *opaque, char *err,
                      size_t errlen)
{
    char reason[256];
    if (kafka_writer_fatal(w, reason, sizeof reason)) {
        snprintf(err, errlen, "kafka producer failed: %s", reason);
        return -1;
    }
    if (!w->topic_ready) {
        snprintf(err, errlen, "kafka not ready: %s", w->topic_problem); /* (it names the topic) */
        return -1;
    }
    delivery_ticket *ticket = malloc(sizeof *ticket);
    if (!ticket) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    ticket->done = done;
    ticket->opaque = opaque;
    rd_kafka_resp_err_t rc = rd_kafka_producev(
        w->rk, RD_KAFKA_V_TOPIC(w->topic), RD_KAFKA_V_KEY(key, key_len),
        RD_KAFKA_V_VALUE(payload, payload_len),
        RD_KAFKA_V_HEADER("tally-batch-id", key, (ssize_t)key_len),
        RD_KAFKA_V_HEADER("tally-digest", digest, (ssize_t)strlen(digest)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE), RD_KAFKA_V_OPAQUE(ticket), RD_KAFKA_V_END);
    if (rc != RD_KAFKA_RESP_ERR_NO_ERROR) {
        free(ticket);
        snprintf(err, errlen, "kafka produce: %s", rd_kafka_err2str(rc));
        return -1;
    }
    return 0;
}

int kafka_writer_is_up(const kafka_writer *w)
{
    return w->up && w->topic_ready;
}

const char *kafka_writer_topic_problem(const kafka_writer *w)
{
    return w->topic_ready ? "" : w->topic_problem;
}

int kafka_writer_fatal(const kafka_writer *w, char *reason, size_t reasonlen)
{
    return rd_kafka_fatal_error(w->rk, reason, reasonlen) != RD_KAFKA_RESP_ERR_NO_ERROR;
}

void kafka_writer_free(kafka_writer *w, int timeout_ms)
{
    if (!w)
        return;
    if (w->rk) {
        rd_kafka_resp_err_t rc = rd_kafka_flush(w->rk, timeout_ms);
        if (rc != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_warn("kafka: %d records still undelivered at shutdown (%s); their clients got no 200",
                     rd_kafka_outq_len(w->rk), rd_kafka_err2str(rc));
        /* Undelivered records are purged: their callbacks run and answer 503. */
        rd_kafka_purge(w->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        serve_queue(w);
    }
    if (w->wake_event)
        event_free(w->wake_event);
    if (w->poll_timer)
        event_free(w->poll_timer);
    if (w->topic_timer)
        event_free(w->topic_timer);
    if (w->main_queue)
        rd_kafka_queue_destroy(w->main_queue);
    if (w->rk)
        rd_kafka_destroy(w->rk);
    if (w->wake_pipe[0] >= 0)
        close(w->wake_pipe[0]);
    if (w->wake_pipe[1] >= 0)
        close(w->wake_pipe[1]);
    free(w);
}
