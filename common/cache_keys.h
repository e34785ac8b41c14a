/*
 * cache_keys.h — the key layout of the CACHE Redis (cache.host:cache.port),
 * shared by tally-ingest (reads, populates) and tally-flusher (invalidates).
 * Every key here is derived data with a TTL; the state keys (redis_keys.h)
 * live on the other Redis. README "Key layout" documents both.
 *
 *   tally:{cache}:gen              string, random: the generation, part of every
 *                                  answer key; the flusher replaces it when it
 *                                  could not invalidate a commit (all answers go)
 *   tally:{cache}:v:{PROM_NAME}    string, random: the version of one Prometheus
 *                                  name, replaced after every commit that wrote it
 *   tally:{cache}:catalog          string, random: the version of everything read
 *                                  without one name (regex names, label lists,
 *                                  series, metadata), replaced after every commit
 *   tally:{cache}:a:HASH:GEN:V...  string "STATUS BODY": one answer; HASH is of the
 *                                  normalised read (query, range, step), the rest
 *                                  the versions it was read under
 *   tally:{cache}:lock:HASH:...    string: the single-flight lock of a miss (PX)
 *   tally:{cache}:epoch            string: present while the cache holds what
 *                                  ingest put there; missing = the cache came back
 *                                  empty (restart, flush): ingest warms it
 *
 * Every key carries the hash tag {cache} (the first braces of a key are its
 * tag, so the name's braces in a version key do not count): the whole cache is one Redis
 * Cluster slot (cache.cluster), so a lookup, which reads a query's versions
 * and its answer in one script, touches one node. The cache then lives on
 * that slot's master; it is derived data, bounded by maxmemory and TTLs, so
 * one master's memory is its size (README "The query cache").
 *
 * Versions are random, never counters: a version key that is evicted or
 * expires comes back as a NEW random value, so no old answer can become
 * visible again (an INCR counter restarting at 1 would resurrect answers
 * cached under 1).
 */
#ifndef TALLY_CACHE_KEYS_H
#define TALLY_CACHE_KEYS_H

#define CACHE_KEY_GEN "tally:{cache}:gen"
#define CACHE_KEY_CATALOG "tally:{cache}:catalog"
#define CACHE_KEY_EPOCH "tally:{cache}:epoch"
#define CACHE_KEY_VERSION_PREFIX "tally:{cache}:v:"
#define CACHE_KEY_ANSWER_PREFIX "tally:{cache}:a:"
#define CACHE_KEY_LOCK_PREFIX "tally:{cache}:lock:"

/* TTL of the generation, versions and epoch, refreshed at every write.
 * Longer than any answer's TTL; one that expires only costs misses. */
#define CACHE_VERSION_TTL_SECONDS 86400

#endif
