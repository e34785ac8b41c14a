/*
 * main.c — tally-bench: acknowledged events per second and ack latency of an
 * HTTP ingestion endpoint, for Tally (StatsD lines to POST /v1/events) and for
 * InfluxDB 1.x (line protocol to POST /write), with the same driver.
 *
 *   tally-bench --url http://127.0.0.1:8080/v1/events --batch 1000 --concurrency 16 --duration 10
 *   tally-bench --format influx --url 'http://127.0.0.1:8086/write?db=bench&precision=ns' ...
 *
 * This file only reads the options and prints; the load loop is runner.c,
 * bodies are payload.c, percentiles histogram.c. Output, on stdout:
 *   a human-readable summary line, then one machine-readable line
 *   RESULT system=S format=F batch=B conc=C duration_s=D events_per_s=E requests=R
 *          acked_total=A p50_ms=.. p90_ms=.. p99_ms=.. p999_ms=.. max_ms=..
 *          errors=N non2xx=N transport_errors=N duplicates=N
 * (on one line), plus PROGRESS lines with --progress. The first error seen, if
 * any, goes to stderr. Exit status: 0 when at least one request was
 * acknowledged, 1 when none was (or the run could not start), 2 on bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runner.h"

static void usage(FILE *f)
{
    fputs("usage: tally-bench [options]\n"
          "  --url URL          endpoint (http only); default http://127.0.0.1:8080/v1/events\n"
          "  --format F         statsd (Tally, default), influx (InfluxDB line protocol, ns timestamps),\n"
          "                     or get (GET the URL, e.g. a query: one event per 2xx answer)\n"
          "  --batch N          lines per request (default 1000)\n"
          "  --concurrency N    connections, one thread each (default 4)\n"
          "  --duration S       measured seconds (default 10)\n"
          "  --warmup S         seconds before the measurement starts (default 2)\n"
          "  --names N          distinct metric names bench.m0..bench.mN-1 (default 1000)\n"
          "  --mix SPEC         type percentages, e.g. c=80,g=10,ms=10 (types c g ms h d; default that)\n"
          "  --seed N           generator seed (default 1)\n"
          "  --timeout-ms N     per socket operation (default 30000)\n"
          "  --progress S       print PROGRESS elapsed_s=.. acked_total=.. every S seconds\n"
          "  --label NAME       system= in the RESULT line (default tally / influxdb by format)\n"
          "  --no-keys          statsd: send no Idempotency-Key (the server generates one)\n"
          "  --token T          send Authorization: Bearer T (ingest.tokens_file)\n"
          "  --rate R           at most R requests/s in all (threads pace their sends; default: closed loop)\n"
          "  --help\n",
          f);
}

/* Parses "http://HOST[:PORT][/PATH[?QUERY]]"; host may be [v6]. */
static int parse_url(const char *url, char *host, size_t host_len, int *port, const char **path)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) return -1;
    p += 7;
    const char *host_end;
    const char *host_start = p;
    if (*p == '[') {
        host_start = p + 1;
        host_end = strchr(p, ']');
        if (host_end == NULL) return -1;
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/?");
        p = host_end;
    }
    size_t n = (size_t)(host_end - host_start);
    if (n == 0 || n >= host_len) return -1;
    memcpy(host, host_start, n);
    host[n] = '\0';
    *port = 80;
    if (*p == ':') {
        char *end;
        errno = 0;
        long v = strtol(p + 1, &end, 10);
        if (end == p + 1 || errno != 0 || v < 1 || v > 65535) return -1;
        *port = (int)v;
        p = end;
    }
    if (*p == '\0') *path = "/";
    else if (*p == '/') *path = p;
    else return -1;
    return 0;
}

static int parse_uint(const char *opt, const char *s, unsigned long min, unsigned long max, unsigned long *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (end == s || *end != '\0' || errno != 0 || v < min || v > max || s[0] == '-') {
        fprintf(stderr, "tally-bench: %s \"%s\": expected a whole number %lu..%lu\n", opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_seconds(const char *opt, const char *s, double min, double max, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !(v >= min && v <= max)) {
        fprintf(stderr, "tally-bench: %s \"%s\": expected seconds %g..%g\n", opt, s, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

static double ms(uint64_t us) { return (double)us / 1000.0; }

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"url", required_argument, NULL, 'u'},        {"format", required_argument, NULL, 'f'},
        {"batch", required_argument, NULL, 'b'},      {"concurrency", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},   {"warmup", required_argument, NULL, 'w'},
        {"names", required_argument, NULL, 'n'},      {"mix", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 's'},       {"timeout-ms", required_argument, NULL, 't'},
        {"progress", required_argument, NULL, 'p'},   {"label", required_argument, NULL, 'l'},
        {"no-keys", no_argument, NULL, 'k'},          {"help", no_argument, NULL, 'h'},
        {"token", required_argument, NULL, 'a'},       {"rate", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    const char *url = "http://127.0.0.1:8080/v1/events", *label = NULL, *mix_text = "c=80,g=10,ms=10";
    bench_config cfg = {
        .format = PAYLOAD_STATSD, .batch = 1000, .concurrency = 4, .duration_s = 10, .warmup_s = 2,
        .names = 1000, .seed = 1, .timeout_ms = 30000, .send_keys = 1,
    };
    unsigned long v;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 'f':
            if (strcmp(optarg, "statsd") == 0) cfg.format = PAYLOAD_STATSD;
            else if (strcmp(optarg, "influx") == 0) cfg.format = PAYLOAD_INFLUX;
            else if (strcmp(optarg, "get") == 0) cfg.format = PAYLOAD_GET;
            else {
                fprintf(stderr, "tally-bench: --format \"%s\": expected statsd or influx\n", optarg);
                return 2;
            }
            break;
        case 'b': if (parse_uint("--batch", optarg, 1, 1000000, &v) != 0) return 2; cfg.batch = (unsigned)v; break;
        case 'c': if (parse_uint("--concurrency", optarg, 1, 1024, &v) != 0) return 2; cfg.concurrency = (unsigned)v; break;
        case 'n': if (parse_uint("--names", optarg, 1, 100000000, &v) != 0) return 2; cfg.names = (unsigned)v; break;
        case 's': if (parse_uint("--seed", optarg, 0, ~0UL, &v) != 0) return 2; cfg.seed = v; break;
        case 't': if (parse_uint("--timeout-ms", optarg, 1, 3600000, &v) != 0) return 2; cfg.timeout_ms = (int)v; break;
        case 'd': if (parse_seconds("--duration", optarg, 0.1, 86400, &cfg.duration_s) != 0) return 2; break;
        case 'w': if (parse_seconds("--warmup", optarg, 0, 3600, &cfg.warmup_s) != 0) return 2; break;
        case 'p': if (parse_seconds("--progress", optarg, 0.1, 3600, &cfg.progress_s) != 0) return 2; break;
        case 'm': mix_text = optarg; break;
        case 'l': label = optarg; break;
        case 'k': cfg.send_keys = 0; break;
        case 'a': cfg.token = optarg; break;
        case 'r':
            cfg.rate = strtod(optarg, NULL);
            if (!(cfg.rate > 0)) {
                fprintf(stderr, "tally-bench: --rate \"%s\": expected requests per second > 0\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tally-bench: unexpected argument \"%s\"\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    char err[256];
    if (mix_parse(mix_text, &cfg.mix, err, sizeof err) != 0) {
        fprintf(stderr, "tally-bench: --%s\n", err);
        return 2;
    }
    char host[256];
    if (parse_url(url, host, sizeof host, &cfg.port, &cfg.path) != 0) {
        fprintf(stderr, "tally-bench: --url \"%s\": expected http://HOST[:PORT][/PATH]\n", url);
        return 2;
    }
    cfg.host = host;
    if (cfg.format != PAYLOAD_STATSD) cfg.send_keys = 0; /* InfluxDB has no such header */
    if (label == NULL) label = cfg.format == PAYLOAD_INFLUX ? "influxdb" : "tally";
    const char *format_name = cfg.format == PAYLOAD_STATSD   ? "statsd"
                              : cfg.format == PAYLOAD_INFLUX ? "influx"
                                                             : "get";

    bench_result *r = malloc(sizeof *r);
    if (r == NULL) {
        fprintf(stderr, "tally-bench: out of memory\n");
        return 1;
    }
    if (bench_run(&cfg, r, err, sizeof err) != 0) {
        fprintf(stderr, "tally-bench: %s\n", err);
        free(r);
        return 1;
    }
    double eps = (double)r->events / r->elapsed_s;
    uint64_t errors = r->non2xx + r->transport_errors;
    printf("tally-bench: %s %s batch=%u conc=%u %.1f s: %.0f events/s acknowledged (%.0f requests/s); "
           "ack latency ms p50 %.2f p90 %.2f p99 %.2f p99.9 %.2f max %.2f; errors %llu (non-2xx %llu, transport %llu)\n",
           label, format_name, cfg.batch, cfg.concurrency, r->elapsed_s, eps, (double)r->requests / r->elapsed_s,
           ms(hist_percentile(&r->hist, 50)), ms(hist_percentile(&r->hist, 90)), ms(hist_percentile(&r->hist, 99)),
           ms(hist_percentile(&r->hist, 99.9)), ms(r->hist.max_us), (unsigned long long)errors,
           (unsigned long long)r->non2xx, (unsigned long long)r->transport_errors);
    printf("RESULT system=%s format=%s batch=%u conc=%u duration_s=%.2f events_per_s=%.0f requests=%llu "
           "acked_total=%llu p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f errors=%llu "
           "non2xx=%llu transport_errors=%llu duplicates=%llu\n",
           label, format_name, cfg.batch, cfg.concurrency, r->elapsed_s, eps, (unsigned long long)r->requests,
           (unsigned long long)r->acked_total, ms(hist_percentile(&r->hist, 50)), ms(hist_percentile(&r->hist, 90)),
           ms(hist_percentile(&r->hist, 99)), ms(hist_percentile(&r->hist, 99.9)), ms(r->hist.max_us),
           (unsigned long long)errors, (unsigned long long)r->non2xx, (unsigned long long)r->transport_errors,
           (unsigned long long)r->duplicates);
    if (r->first_error[0] != '\0') fprintf(stderr, "tally-bench: first error: %s\n", r->first_error);
    if (fflush(stdout) != 0) {
        fprintf(stderr, "tally-bench: writing the results failed: %s\n", strerror(errno));
        free(r);
        return 1;
    }
    int status = r->acked_total > 0 ? 0 : 1;
    if (status != 0) fprintf(stderr, "tally-bench: no request was acknowledged\n");
    free(r);
    return status;
}
