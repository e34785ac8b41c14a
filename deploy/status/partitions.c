/*
 * partitions.c — `tally partitions`, see partitions.h.
 *
 * One metadata request for the topic alone (rd_kafka_metadata with
 * all_topics = 0), through a short-lived producer handle that never
 * produces; the answer is the controller's view as the broker that answered
 * knows it, which is what clients act on.
 */
#include "partitions.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "config.h"
#include "kafka_conf.h"

#define METADATA_TIMEOUT_MS 5000

static void usage(FILE *out)
{
    fprintf(out, "usage: tally partitions [-c FILE]\n"
                 "  -c FILE  configuration file (default conf/tally.conf): kafka.brokers, kafka.topic,\n"
                 "           kafka.client_properties\n"
                 "Prints \"partition P leader B replicas B,B,.. isr B,B,..\" per partition of kafka.topic.\n");
}

static void print_ids(const char *what, const int32_t *ids, int n)
{
    printf(" %s ", what);
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", (int)ids[i]);
    if (n == 0)
        printf("-");
}

/* Prints the topic's partitions; 0, or 1 with the reason on stderr. */
static void print_partition(const rd_kafka_metadata_partition_t *p)
{
    printf("partition %d leader %d", (int)p->id, (int)p->leader);
    print_ids("replicas", p->replicas, p->replica_cnt);
    print_ids("isr", p->isrs, p->isr_cnt);
    printf("\n");
}

static int describe(rd_kafka_t *rk, const char *topic_name)
{
    rd_kafka_topic_t *topic = rd_kafka_topic_new(rk, topic_name, NULL);
    if (!topic) {
        fprintf(stderr, "tally partitions: topic %s: %s\n", topic_name,
                rd_kafka_err2str(rd_kafka_last_error()));
        return 1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, topic, &md, METADATA_TIMEOUT_MS);
    rd_kafka_topic_destroy(topic);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "tally partitions: metadata of %s: %s\n", topic_name, rd_kafka_err2str(e));
        return 1;
    }
    int rc = 1;
    if (md->topic_cnt != 1 || md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "tally partitions: topic %s: %s\n", topic_name,
                md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err) : "not in the answer");
    } else {
        const rd_kafka_metadata_topic_t *t = &md->topics[0];
        /* the answer lists partitions 0..count-1 in no promised order */
        for (int want = 0; want < t->partition_cnt; want++)
            for (int i = 0; i < t->partition_cnt; i++)
                if (t->partitions[i].id == want)
                    print_partition(&t->partitions[i]);
        rc = fflush(stdout) == 0 ? 0 : 1;
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

int partitions_main(int argc, char **argv)
{
    const char *path = "conf/tally.conf";
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    optind = 2;
    int o;
    while ((o = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    static tally_config cfg;
    if (config_load_or_report(path, &cfg) != 0)
        return 2;
    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf) {
        fprintf(stderr, "tally partitions: out of memory\n");
        return 2;
    }
    if (kafka_conf_set(conf, "bootstrap.servers", cfg.kafka.brokers, err, sizeof err) != 0 ||
        kafka_conf_set(conf, "log_level", "0", err, sizeof err) != 0 ||
        kafka_conf_apply_client_properties(conf, cfg.kafka.client_properties, err, sizeof err) != 0) {
        fprintf(stderr, "tally partitions: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) {
        fprintf(stderr, "tally partitions: %s\n", err);
        rd_kafka_conf_destroy(conf);
        return 2;
    }
    int rc = describe(rk, cfg.kafka.topic);
    rd_kafka_destroy(rk);
    return rc;
}
