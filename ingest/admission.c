/*
 * admission.c — see admission.h.
 */
#include "admission.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_keys.h"

/*
 * KEYS[1] the series HyperLogLog, KEYS[2] (optional) the client's rate hash.
 * ARGV[1] max live series, ARGV[2] events, ARGV[3] events/s, ARGV[4]
 * batches/s (0: no limit), ARGV[5] "1" when the series' hashes are on this
 * server (one Redis) or "0" (a cluster: they are in other slots), then (hash
 * key, tags field) per series to admit. Answers {"ok"}, {"series",
 * estimate}, {"look up", estimate} (at the limit, hashes elsewhere: the
 * caller looks the series up, admission_lookup_args) or {"rate", wait ms,
 * limit name}. Nothing is changed unless the answer is "ok".
 */
static const char admit_script[] =
    "local limit = tonumber(ARGV[1])\n"
    "local n = (#ARGV - 5) / 2\n"
    "if n > 0 then\n"
    "  local count = redis.call('PFCOUNT', KEYS[1])\n"
    "  if count >= limit then\n"
    "    if ARGV[5] ~= '1' then return {'look up', count} end\n"
    "    for i = 0, n - 1 do\n"
    "      local k, f = ARGV[6 + 2 * i], ARGV[7 + 2 * i]\n"
    "      if redis.call('HEXISTS', k, f) == 0 and redis.call('HEXISTS', k .. ':frac', f) == 0 then\n"
    "        return {'series', count}\n"
    "      end\n"
    "    end\n"
    "    n = 0\n"
    "  end\n"
    "end\n"
    "if KEYS[2] then\n"
    "  local t = redis.call('TIME')\n"
    "  local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
    "  local function take(field, amount, rate)\n"
    "    if rate <= 0 then return nil end\n"
    "    local tat = tonumber(redis.call('HGET', KEYS[2], field) or '0')\n"
    "    if tat < now then tat = now end\n"
    "    local after = tat + amount * 1000000 / rate\n"
    "    if after - now > 1000000 then return false, (after - now - 1000000) / 1000 end\n"
    "    return after\n"
    "  end\n"
    "  local ev, ev_wait = take('events', tonumber(ARGV[2]), tonumber(ARGV[3]))\n"
    "  if ev == false then return {'rate', math.ceil(ev_wait), 'events_per_second'} end\n"
    "  local bt, bt_wait = take('batches', 1, tonumber(ARGV[4]))\n"
    "  if bt == false then return {'rate', math.ceil(bt_wait), 'batches_per_second'} end\n"
    "  local last = now\n"
    "  if ev then redis.call('HSET', KEYS[2], 'events', ev); last = math.max(last, ev) end\n"
    "  if bt then redis.call('HSET', KEYS[2], 'batches', bt); last = math.max(last, bt) end\n"
    "  redis.call('PEXPIRE', KEYS[2], math.ceil((last - now) / 1000) + 2000)\n"
    "end\n"
    "for i = 0, n - 1 do\n"
    "  redis.call('PFADD', KEYS[1], ARGV[6 + 2 * i] .. '\\n' .. ARGV[7 + 2 * i])\n"
    "end\n"
    "return {'ok'}\n";

/* Whether one series exists in the live view: KEYS[1] its hash, KEYS[2] the
 * ":frac" companion (one slot), ARGV[1] its tags field. Reply > 0: it does. */
static const char lookup_script[] =
    "return redis.call('HEXISTS', KEYS[1], ARGV[1]) + redis.call('HEXISTS', KEYS[2], ARGV[1])\n";

/* argv[] of the first (key, tags) pair: EVAL script numkeys KEYS ARGV[1..5] */
static size_t first_pair(const admission *a)
{
    return (size_t)a->argc - 2 * a->ncandidates;
}

/* Appends a string to the argument list (its bytes into the arena). */
typedef struct arg_builder {
    admission *a;
    size_t used, cap;
    size_t *offsets; /* argv[i] = strings + offsets[i] once the arena stops moving */
} arg_builder;

static int add_arg(arg_builder *b, const char *s, size_t len)
{
    if (b->used + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1024;
        while (cap < b->used + len + 1)
            cap *= 2;
        char *grown = realloc(b->a->strings, cap);
        if (!grown)
            return -1;
        b->a->strings = grown;
        b->cap = cap;
    }
    memcpy(b->a->strings + b->used, s, len);
    b->a->strings[b->used + len] = '\0';
    b->offsets[b->a->argc] = b->used;
    b->a->argvlen[b->a->argc] = len;
    b->a->argc++;
    b->used += len + 1;
    return 0;
}

static int add_number(arg_builder *b, long long v)
{
    char num[24];
    int n = snprintf(num, sizeof num, "%lld", v);
    return add_arg(b, num, (size_t)n);
}

static int is_admitted(const live_known *known, const live_fold *fold, size_t i)
{
    live_series_ref s = live_fold_series_at(fold, i);
    return live_known_admitted(known, s.hash, (int)s.type, s.name, s.name_len, s.tags,
                               s.tags_len);
}

int admission_build(admission *a, const live_fold *fold, size_t events, const live_known *known,
                    const auth_client *client, long long max_live_series, int series_here,
                    char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    size_t series = fold ? live_fold_series(fold) : 0;
    int limited = client && (client->events_per_second > 0 || client->batches_per_second > 0);
    size_t first_unknown = series; /* (the common case, all known, allocates nothing) */
    for (size_t i = 0; i < series && first_unknown == series; i++)
        if (!is_admitted(known, fold, i))
            first_unknown = i;
    if (!limited && first_unknown == series)
        return 0;
    a->candidates = malloc((series - first_unknown + 1) * sizeof *a->candidates);
    if (!a->candidates)
        goto oom;
    for (size_t i = first_unknown; i < series; i++)
        if (!is_admitted(known, fold, i))
            a->candidates[a->ncandidates++] = i;
    size_t max_args = 10 + 2 * a->ncandidates;
    a->argv = calloc(max_args, sizeof *a->argv);
    a->argvlen = calloc(max_args, sizeof *a->argvlen);
    arg_builder b = {.a = a, .offsets = calloc(max_args, sizeof(size_t))};
    if (!a->argv || !a->argvlen || !b.offsets)
        goto oom_builder;
    char rate_key[sizeof REDIS_KEY_RATE_PREFIX + AUTH_NAME_MAX];
    int rate_len = limited ? snprintf(rate_key, sizeof rate_key, REDIS_KEY_RATE_PREFIX "%s", client->name) : 0;
    if (add_arg(&b, "EVAL", 4) || add_arg(&b, admit_script, sizeof admit_script - 1) ||
        add_number(&b, limited ? 2 : 1) ||
        add_arg(&b, REDIS_KEY_LIVE_SERIES, sizeof REDIS_KEY_LIVE_SERIES - 1) ||
        (limited && add_arg(&b, rate_key, (size_t)rate_len)) || add_number(&b, max_live_series) ||
        add_number(&b, (long long)events) ||
        add_number(&b, limited ? client->events_per_second : 0) ||
        add_number(&b, limited ? client->batches_per_second : 0) ||
        add_number(&b, series_here ? 1 : 0))
        goto oom_builder;
    for (size_t k = 0; k < a->ncandidates; k++) {
        live_series_ref s = live_fold_series_at(fold, a->candidates[k]);
        char key[REDIS_KEY_MAX];
        int klen = redis_key_metric(key, sizeof key, s.shard, s.name, s.name_len,
                                    redis_key_value_suffix(s.type));
        if (klen < 0 || add_arg(&b, key, (size_t)klen) || add_arg(&b, s.tags, s.tags_len))
            goto oom_builder;
    }
    for (int i = 0; i < a->argc; i++)
        a->argv[i] = a->strings + b.offsets[i];
    free(b.offsets);
    return 1;
oom_builder:
    free(b.offsets);
oom:
    admission_free(a);
    snprintf(err, errlen, "out of memory building the admission call");
    return -1;
}

static int is_string(const redisReply *r, const char *s)
{
    return r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

admit_verdict admission_verdict(const redisReply *reply, long long *number, const char **which,
                                char *why, size_t whylen)
{
    *number = 0;
    *which = "";
    if (reply->type == REDIS_REPLY_ERROR) {
        snprintf(why, whylen, "admission script: %s", reply->str);
        return ADMIT_UNANSWERED;
    }
    if (reply->type == REDIS_REPLY_ARRAY && reply->elements >= 1) {
        const redisReply *const *e = (const redisReply *const *)reply->element;
        if (is_string(e[0], "ok"))
            return ADMIT_OK;
        if (is_string(e[0], "series") && reply->elements == 2 && e[1]->type == REDIS_REPLY_INTEGER) {
            *number = e[1]->integer;
            return ADMIT_TOO_MANY_SERIES;
        }
        if (is_string(e[0], "look up") && reply->elements == 2 &&
            e[1]->type == REDIS_REPLY_INTEGER) {
            *number = e[1]->integer;
            return ADMIT_LOOK_UP;
        }
        if (is_string(e[0], "rate") && reply->elements == 3 && e[1]->type == REDIS_REPLY_INTEGER) {
            *number = e[1]->integer;
            *which = is_string(e[2], "events_per_second") ? "events_per_second"
                                                          : "batches_per_second";
            return ADMIT_RATE_LIMITED;
        }
    }
    snprintf(why, whylen, "unexpected reply to the admission script");
    return ADMIT_UNANSWERED;
}

int admission_lookup_args(const admission *a, size_t k, const char *argv[6], size_t argvlen[6],
                          char *frac, size_t fraclen)
{
    size_t at = first_pair(a) + 2 * k;
    const char *key = a->argv[at];
    size_t key_len = a->argvlen[at];
    int n = snprintf(frac, fraclen, "%.*s%s", (int)key_len, key, REDIS_KEY_FRAC_SUFFIX);
    if (n < 0 || (size_t)n >= fraclen)
        return -1;
    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = lookup_script;
    argvlen[1] = sizeof lookup_script - 1;
    argv[2] = "2";
    argvlen[2] = 1;
    argv[3] = key;
    argvlen[3] = key_len;
    argv[4] = frac;
    argvlen[4] = (size_t)n;
    argv[5] = a->argv[at + 1];
    argvlen[5] = a->argvlen[at + 1];
    return 0;
}

void admission_note(const admission *a, const live_fold *fold, live_known *known)
{
    for (size_t k = 0; k < a->ncandidates; k++) {
        live_series_ref s = live_fold_series_at(fold, a->candidates[k]);
        live_known_note_admitted(known, s.hash, (int)s.type, s.name, s.name_len, s.tags,
                                 s.tags_len);
    }
}

void admission_free(admission *a)
{
    free(a->argv);
    free(a->argvlen);
    free(a->strings);
    free(a->candidates);
    memset(a, 0, sizeof *a);
}
