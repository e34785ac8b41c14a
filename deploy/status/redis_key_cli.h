/*
 * redis_key_cli.h — `tally key [--config FILE] NAME [SUFFIX]`: the Redis key
 * that holds metric NAME's SUFFIX (default "counter": "gauge", "dist:count",
 * "set", "counter:frac", ...) in the live view of the configuration's
 * redis.shards shards (redis_keys.h), so operators and tests can find a
 * metric without knowing the shard rule. `tally key --shard NAME` prints
 * the shard number alone.
 *
 * Output: the key (or shard) and a newline. Exit status: 0 printed; 2 a
 * usage or configuration error, or a name too long for a key.
 */
#ifndef TALLY_REDIS_KEY_CLI_H
#define TALLY_REDIS_KEY_CLI_H

/* argv[1] is "key". */
int redis_key_main(int argc, char **argv);

#endif
