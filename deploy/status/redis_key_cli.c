/*
 * redis_key_cli.c — see redis_key_cli.h.
 */
#include "redis_key_cli.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "redis_keys.h"

static void usage(FILE *out)
{
    fputs("usage: tally key [--config FILE] [--shard] NAME [SUFFIX]\n"
          "  prints the Redis key of metric NAME's SUFFIX (default counter) in the live view,\n"
          "  or with --shard the shard NAME is in (redis.shards of the configuration)\n",
          out);
}

int redis_key_main(int argc, char **argv)
{
    const char *path = "conf/tally.conf";
    int shard_only = 0;
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"shard", no_argument, NULL, 's'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    optind = 2;
    int o;
    while ((o = getopt_long(argc, argv, "c:sh", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 's': shard_only = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc - 1 && optind != argc - 2) {
        usage(stderr);
        return 2;
    }
    static tally_config cfg;
    if (config_load_or_report(path, &cfg) != 0)
        return 2;
    const char *name = argv[optind];
    const char *suffix = optind + 1 < argc ? argv[optind + 1] : "counter";
    unsigned shard = redis_shard_of(name, strlen(name), (unsigned)cfg.redis.shards);
    if (shard_only)
        return printf("%u\n", shard) < 0 ? 2 : 0;
    char key[REDIS_KEY_MAX];
    if (redis_key_metric(key, sizeof key, shard, name, strlen(name), suffix) < 0) {
        fprintf(stderr, "tally key: name too long for a Redis key\n");
        return 2;
    }
    return printf("%s\n", key) < 0 ? 2 : 0;
}
