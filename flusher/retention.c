/*
 * retention.c — see retention.h.
 */
#include "retention.h"

static int64_t floor_to(int64_t t, int64_t width)
{
    int64_t q = t / width;
    if (t % width != 0 && t < 0)
        q--;
    return q * width;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* Source rows per step at most RETENTION_CHUNK_ROWS, in whole `align` windows. */
static int64_t chunk_of(int64_t source_width, int64_t align)
{
    int64_t span = source_width * RETENTION_CHUNK_ROWS;
    return max64(align, floor_to(span + align - 1, align));
}

static int64_t age_of(const tally_config *cfg, int level)
{
    return level == 0 ? cfg->retention.raw_seconds
         : level == 1 ? cfg->retention.minute_seconds
                      : cfg->retention.hour_seconds;
}

/* The span [lo, hi) of the next chunk from `from` on (aligned to `align`):
 * from the first stored row on; with none, empty (lo = hi = from: nothing
 * to do, and an idle store plans no step). */
static int chunk_from(const retention_rows *rows, int level, int64_t from, int64_t align,
                      int64_t chunk, int64_t *lo, int64_t *hi, char *err,
                      size_t errlen)
{
    int64_t first;
    if (rows->first_at(rows->ctx, level, from, &first, err, errlen) < 0)
        return -1;
    if (first == INT64_MAX) {
        *lo = *hi = from;
        return 0;
    }
    *lo = max64(from, floor_to(first, align));
    *hi = *lo + chunk;
    return 0;
}

static int next_rollup(const rollup_state *st, int64_t now, const retention_rows *rows,
                       retention_step *out, char *err, size_t errlen)
{
    for (int l = rollup_coarser(st, 0); l > 0; l = rollup_coarser(st, l)) {
        const rollup_level *lv = &st->level[l];
        int src = rollup_finer(st, l);
        int64_t due = floor_to(now - RETENTION_GRACE_SECONDS, lv->width);
        if (src > 0 && st->level[src].rolled_until < due)
            due = st->level[src].rolled_until;
        int64_t lo, hi;
        if (chunk_from(rows, src, lv->rolled_until, lv->width,
                       chunk_of(st->level[src].width, lv->width), &lo, &hi, err,
                       errlen) < 0)
            return -1;
        if (hi <= due && hi > lv->rolled_until) {
            *out = (retention_step){RETENTION_ROLLUP, l, src, 0, lo, hi};
            return 1;
        }
    }
    return 0;
}

static int next_expire(const rollup_state *st, const tally_config *cfg, int64_t now,
                       const retention_rows *rows, retention_step *out, char *err,
                       size_t errlen)
{
    for (int l = 0; l >= 0; l = rollup_coarser(st, l)) {
        const rollup_level *lv = &st->level[l];
        int64_t age = age_of(cfg, l);
        if (age <= 0)
            continue;
        int up = rollup_coarser(st, l);
        int64_t align = up > 0 ? st->level[up].width : lv->width;
        int64_t due = floor_to(now - age, lv->width); /* rows before it ended >= age ago */
        if (up > 0 && st->level[up].rolled_until < due)
            due = st->level[up].rolled_until;
        due = floor_to(due, align);
        int64_t lo, hi;
        if (chunk_from(rows, l, lv->kept_from, align, chunk_of(lv->width, align), &lo, &hi,
                       err, errlen) < 0)
            return -1;
        if (hi <= due && hi > lv->kept_from) {
            *out = (retention_step){RETENTION_EXPIRE, l, -1, up < 0, lo, hi};
            return 1;
        }
    }
    return 0;
}

int retention_next(const rollup_state *st, const tally_config *cfg, int64_t now,
                   const retention_rows *rows, retention_step *out, char *err, size_t errlen)
{
    if (!cfg->retention.enabled)
        return 0;
    int rc = next_rollup(st, now, rows, out, err, errlen);
    return rc != 0 ? rc : next_expire(st, cfg, now, rows, out, err, errlen);
}

void retention_apply(rollup_state *st, const retention_step *step)
{
    rollup_level *lv = &st->level[step->level];
    if (step->kind == RETENTION_ROLLUP)
        lv->rolled_until = step->hi;
    else
        lv->kept_from = step->hi;
}
