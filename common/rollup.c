/*
 * rollup.c — see rollup.h.
 */
#include "rollup.h"

static const int64_t WIDTHS[ROLLUP_LEVELS] = {0, 60, 3600};

void rollup_state_init(rollup_state *st, int bucket_seconds)
{
    for (int i = 0; i < ROLLUP_LEVELS; i++) {
        int64_t w = i == 0 ? bucket_seconds : WIDTHS[i];
        int active = i == 0 || (w > bucket_seconds && w % bucket_seconds == 0);
        st->level[i] = (rollup_level){w, active, i == 0 ? ROLLUP_UNBOUNDED : 0, 0};
    }
}

void rollup_state_set(rollup_state *st, int64_t width, int64_t rolled_until, int64_t kept_from)
{
    int level = rollup_level_of(st, width);
    if (level < 0)
        return;
    if (level > 0)
        st->level[level].rolled_until = rolled_until;
    st->level[level].kept_from = kept_from;
}

int rollup_level_of(const rollup_state *st, int64_t width)
{
    if (width == 0)
        return 0;
    for (int i = 1; i < ROLLUP_LEVELS; i++)
        if (st->level[i].active && st->level[i].width == width)
            return i;
    return -1;
}

int rollup_coarser(const rollup_state *st, int level)
{
    for (int i = level + 1; i < ROLLUP_LEVELS; i++)
        if (st->level[i].active)
            return i;
    return -1;
}

int rollup_finer(const rollup_state *st, int level)
{
    for (int i = level - 1; i >= 0; i--)
        if (st->level[i].active)
            return i;
    return -1;
}

int rollup_choose(const rollup_state *st, int64_t step_seconds)
{
    int chosen = 0;
    for (int i = 1; i < ROLLUP_LEVELS; i++)
        if (st->level[i].active && st->level[i].width <= step_seconds)
            chosen = i;
    return chosen;
}

void rollup_spans(const rollup_state *st, int chosen, rollup_span spans[ROLLUP_LEVELS])
{
    for (int i = 0; i < ROLLUP_LEVELS; i++)
        spans[i] = (rollup_span){-1, 0, 0};
    const rollup_level *c = &st->level[chosen];
    spans[chosen] = (rollup_span){c->width, c->kept_from, c->rolled_until};
    /* finer: where the next coarser one is not rolled up yet */
    for (int i = rollup_finer(st, chosen); i >= 0; i = rollup_finer(st, i)) {
        int up = rollup_coarser(st, i);
        spans[i] = (rollup_span){st->level[i].width, st->level[up].rolled_until,
                                 st->level[i].rolled_until};
    }
    /* coarser: where the next finer one is deleted */
    for (int i = rollup_coarser(st, chosen); i >= 0; i = rollup_coarser(st, i)) {
        int down = rollup_finer(st, i);
        spans[i] = (rollup_span){st->level[i].width, st->level[i].kept_from,
                                 st->level[down].kept_from};
    }
    for (int i = 0; i < ROLLUP_LEVELS; i++)
        if (spans[i].hi < spans[i].lo)
            spans[i].hi = spans[i].lo; /* (cannot happen with the invariants; stay empty) */
}
