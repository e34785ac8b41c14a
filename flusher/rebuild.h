/*
 * rebuild.h — restore the Redis live view from SQLite and the Kafka tail
 * (DESIGN.md rule 5: live value = SQLite total + the tail not yet flushed).
 *
 * Run by `tally-flusher --rebuild-redis` after Redis lost data (an AOF
 * restart loses up to ~1 s with appendfsync everysec) or was replaced by an
 * empty node, and safe while tally-ingest keeps accepting writes. On a
 * Redis Cluster (redis.cluster) every command goes to the master of its
 * slot (redis_nodes.h) and step 2 runs on every master. With several shards
 * (redis.shards) step 3 writes each batch id as a claim marked done, and
 * step 4 claims each replayed batch before its per-shard transactions, as
 * ingest does (live_update.h).
 *
 *   1. take the fence (tally:{S}:live:rebuilding of every shard, SET NX with a TTL, refreshed):
 *      from now on ingest's batch script defers instead of applying, and the
 *      batch stays in Kafka for the replay below;
 *   2. delete every live key, dedup key and claim;
 *   3. write, from one SQLite read transaction, every series' flushed total,
 *      every gauge, every set's HyperLogLog (the union of its buckets' hlls,
 *      set_union.h, SET as the Redis string, sparse or dense, whose registers
 *      are those PFADD of the same members gives: redis_hll.h), and a dedup key for
 *      every batch id still in the window;
 *   4. replay the Kafka tail from the offsets of that same snapshot through
 *      the batch script in rebuild mode (dedup-gated: a copy of a batch that
 *      is already counted is skipped; a set's tail is PFADDed on top of the
 *      registers of step 3, so the live HyperLogLog ends with exactly the
 *      registers PFADD of every member would have);
 *   5. drop the fence, then replay once more up
 *      to the high watermark read after the drop: every batch ingest deferred
 *      was delivered to Kafka before it was deferred, so it lies below that
 *      watermark; batches ingest applies after the drop carry their dedup key,
 *      so the replay skips them;
 *   6. delete the stale marks only where they still hold what step 1 wrote.
 *      Ingest marks a shard stale for a batch it acknowledged but could not
 *      apply (Redis unreachable), except while that shard's fence is up
 *      (live_stale_mark_script: steps 4 and 5 replay the batch). A mark
 *      written after the fence dropped may be for a batch past step 5's
 *      watermark: it stays, and the whole rebuild runs again (at most 3
 *      times in a row, then it fails with that mark's reason).
 *
 * Step 1 also records each master's run_id where ingest compares it
 * (tally:live:run_id, or tally:{S}:live:run_id in a cluster): the view is
 * rebuilt on this Redis process, so an ingest that connects to it afterwards
 * does not mark it stale as one a restart left behind.
 *
 * Every batch is therefore applied exactly once, by ingest or by the rebuild.
 * One order caveat: a gauge set in the last moments of step 5 may be applied
 * by ingest before an older deferred set of the same gauge is replayed; SQLite
 * is exact regardless, and the next set of that gauge corrects Redis.
 */
#ifndef TALLY_REBUILD_H
#define TALLY_REBUILD_H

#include <signal.h>
#include <stddef.h>

#include "config.h"

typedef struct rebuild_stats {
    size_t keys_deleted;      /* live and dedup keys removed in step 2 */
    size_t series_written;    /* hash fields and set HyperLogLogs written from SQLite */
    size_t markers_written;   /* dedup keys written from SQLite */
    size_t records_replayed;  /* Kafka records read in steps 4 and 5 */
    size_t batches_applied;   /* replayed batches that changed Redis */
    size_t batches_skipped;   /* replayed batches already counted (dedup key present) */
    size_t records_rejected;  /* undecodable records skipped (the flusher keeps them) */
    int attempts;             /* rebuilds run (more than 1: see step 6) */
    double seconds;           /* all of them */
} rebuild_stats;

/*
 * Runs the whole rebuild against cfg's Redis, SQLite and Kafka. Returns 0 with
 * *stats filled, or -1 with err filled; on failure the live view stays marked
 * stale (tally:{S}:live:stale) and the fence expires by itself within 15 s, or is
 * released at once when the failure happened after step 1.
 */
int rebuild_redis(const tally_config *cfg, volatile sig_atomic_t *stop, rebuild_stats *stats,
                  char *err, size_t errlen);

#endif
