/*
 * hll.c — HyperLogLog: 2^14 dense registers, a sparse form at precision 25
 * for small sets (as HLL++ does), Ertl's improved estimator.
 *
 * Representation. A register remembers the highest rank offered to it,
 * rank = 1 + the number of trailing zeros of the hash bits above the
 * register index. The dense form has 2^14 registers (index = the low 14
 * bits of the hash, rank 1..51 over the other 50 bits), one byte each in
 * memory (16 KB: an update is one load and one store; the on-disk form
 * packs them in 6 bits). A fresh sketch is sparse: a sorted array of uint32
 * entries (index << 6 | rank) at precision 25 (index = the low 25 bits,
 * rank 1..40 over the other 39), holding only the registers that are set.
 * Finding an entry is a binary search and inserting one a memmove, cheap
 * while the array is small; when it would pass HLL_SPARSE_MAX (1024)
 * entries, 4 KB, the sketch turns dense, and stays dense until hll_clear().
 *
 * Why precision 25 while sparse: 2^25 registers cost nothing when only the
 * set ones are stored, and with them two of n members share a register
 * with probability about n^2 / 2^26, so up to a thousand members the
 * estimate is exact or off by one, where 2^14 registers would already be
 * off by several (n = 300 leaves ~2.7 collisions to guess). A sparse entry
 * folds into exactly the dense register the same hash would have set:
 * dense index = the entry's low 14 bits; dense rank = 1 + the trailing
 * zeros of the entry's 11 upper index bits when they are not all zero,
 * else 11 + the entry's rank (hash bits 14..24 are those index bits). So
 * turning dense loses nothing the dense form could have held, and sparse
 * and dense sketches merge without ever re-hashing.
 *
 * Error bound. Dense, the relative standard error is 1.04 / sqrt(2^14) =
 * 0.81% (three standard errors, 2.4%, cover 99.7% of sets). Ertl's
 * estimator ("New cardinality estimation algorithms for HyperLogLog
 * sketches", arXiv:1702.01284, section 4, the one Redis 5 adopted) reads
 * the histogram C[k] of the m = 2^p register values, ranks up to q + 1
 * with q = 64 - p:
 *
 *     E = m^2 / (2 ln 2) / z,
 *     z = m sigma(C[0] / m) + sum_{k=1..q} C[k] 2^-k + m tau(1 - C[q+1] / m) 2^-q
 *
 * (z evaluated Horner-style below). sigma() accounts for the registers still
 * at zero, which makes the small range behave like linear counting with no
 * threshold to switch at; tau() for the saturated ones, which matters only
 * near 2^60 members. It is unbiased across the range (no HLL++ bias table).
 * The same estimator runs on the sparse entries with p = 25.
 *
 * Merge rule. Register-wise max, after folding sparse entries when the other
 * side is dense: a register of the union is the highest rank any member of
 * either set offered it. Merge is exact (the merge is the sketch of the
 * union), commutative, associative and idempotent. Whether a sketch is
 * sparse depends only on its content (more than 1024 distinct precision-25
 * entries makes it dense, however they arrived), so the merge of sketches
 * and the sketch of the union are identical, down to their encoding. A
 * merge that can fail (allocation) allocates before it changes anything.
 *
 * Serialised form: hll.h. A sparse sketch is written as its entries, a
 * dense one as a list of its set registers when that is shorter than the
 * 12288 packed bytes, else packed. The decoder validates the whole input
 * into a separate sketch and merges it only once it is accepted.
 */
#include "hll.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hash.h"
#include "varint.h"

#define SPARSE_INITIAL_CAP 16u
#define HEADER_BYTES 3u
#define RANK_BITS 6u
#define RANK_MASK ((1u << RANK_BITS) - 1)
#define MIDDLE_BITS (HLL_SPARSE_PRECISION - HLL_PRECISION) /* 11 */

struct hll {
    uint8_t *dense;   /* HLL_REGISTERS registers, or NULL while sparse */
    uint32_t *sparse; /* precision-25 entries (index << 6 | rank), ascending */
    uint32_t n, cap;  /* sparse entries used and allocated */
};

/* ---- entries and ranks ---------------------------------------------------- */

static uint32_t entry_index(uint32_t e)
{
    return e >> RANK_BITS;
}

static uint8_t entry_rank(uint32_t e)
{
    return (uint8_t)(e & RANK_MASK);
}

static uint32_t entry_make(uint32_t index, uint8_t rank)
{
    assert(index < HLL_SPARSE_REGISTERS && rank >= 1 && rank <= HLL_SPARSE_RANK_MAX);
    return index << RANK_BITS | rank;
}

/* 1 + the trailing zeros of the low `bits` bits of v (bits + 1 if all zero). */
static uint8_t rank_of(uint64_t v, unsigned bits)
{
    return (uint8_t)(__builtin_ctzll(v | (uint64_t)1 << bits) + 1);
}

/* The dense register index and rank a sparse entry stands for. */
static void entry_fold(uint32_t e, uint32_t *index, uint8_t *rank)
{
    uint32_t middle = entry_index(e) >> HLL_PRECISION;
    *index = entry_index(e) & (HLL_REGISTERS - 1);
    *rank = middle ? rank_of(middle, MIDDLE_BITS) : (uint8_t)(MIDDLE_BITS + entry_rank(e));
}

/* ---- life cycle ----------------------------------------------------------- */

hll *hll_new(void)
{
    return calloc(1, sizeof(hll));
}

void hll_free(hll *h)
{
    if (!h)
        return;
    free(h->dense);
    free(h->sparse);
    free(h);
}

void hll_clear(hll *h)
{
    free(h->dense);
    free(h->sparse);
    memset(h, 0, sizeof *h);
}

int hll_is_dense(const hll *h)
{
    return h->dense != NULL;
}

/* ---- registers ------------------------------------------------------------ */

/* Raises dense register index to rank; returns 1 if it rose, else 0. */
static int dense_offer(uint8_t *regs, uint32_t index, uint8_t rank)
{
    if (regs[index] >= rank)
        return 0;
    regs[index] = rank;
    return 1;
}

/* The position where index is, or would be inserted, in the sparse array. */
static uint32_t sparse_find(const hll *h, uint32_t index)
{
    uint32_t lo = 0, hi = h->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (entry_index(h->sparse[mid]) < index)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Turns h dense, folding its entries. Returns 0, or -1 when out of memory
 * (h unchanged). */
static int make_dense(hll *h)
{
    if (h->dense)
        return 0;
    uint8_t *regs = malloc(HLL_REGISTERS);
    if (!regs)
        return -1;
    hll_registers(h, regs);
    free(h->sparse);
    h->sparse = NULL;
    h->n = h->cap = 0;
    h->dense = regs;
    return 0;
}

/* Inserts a new entry at position at of the sparse array (growing it). */
static int sparse_insert(hll *h, uint32_t at, uint32_t entry)
{
    assert(h->n < HLL_SPARSE_MAX);
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? 2 * h->cap : SPARSE_INITIAL_CAP;
        uint32_t *grown = realloc(h->sparse, cap * sizeof *grown);
        if (!grown)
            return -1;
        h->sparse = grown;
        h->cap = cap;
    }
    memmove(h->sparse + at + 1, h->sparse + at, (h->n - at) * sizeof *h->sparse);
    h->sparse[at] = entry;
    h->n++;
    return 0;
}

/* Offers a precision-25 entry to h (folded when h is dense). Returns 1 if a
 * register rose, 0 if not, -1 when out of memory (h unchanged). */
static int entry_offer(hll *h, uint32_t entry)
{
    uint32_t index;
    uint8_t rank;
    if (h->dense) {
        entry_fold(entry, &index, &rank);
        return dense_offer(h->dense, index, rank);
    }
    uint32_t at = sparse_find(h, entry_index(entry));
    if (at < h->n && entry_index(h->sparse[at]) == entry_index(entry)) {
        if (entry_rank(h->sparse[at]) >= entry_rank(entry))
            return 0;
        h->sparse[at] = entry;
        return 1;
    }
    if (h->n == HLL_SPARSE_MAX)
        return make_dense(h) == 0 ? entry_offer(h, entry) : -1;
    return sparse_insert(h, at, entry) == 0 ? 1 : -1;
}

int hll_add_hash(hll *h, uint64_t hash)
{
    uint32_t index = (uint32_t)(hash & (HLL_SPARSE_REGISTERS - 1));
    uint8_t rank = rank_of(hash >> HLL_SPARSE_PRECISION, 64 - HLL_SPARSE_PRECISION);
    return entry_offer(h, entry_make(index, rank));
}

int hll_add(hll *h, const void *member, size_t len)
{
    return hll_add_hash(h, hash_digest64(member, len));
}

/* ---- merge ---------------------------------------------------------------- */

/* The number of distinct indexes in two sparse arrays. */
static uint32_t sparse_union_size(const hll *a, const hll *b)
{
    uint32_t i = 0, j = 0, n = 0;
    while (i < a->n || j < b->n) {
        uint32_t ia = i < a->n ? entry_index(a->sparse[i]) : HLL_SPARSE_REGISTERS;
        uint32_t ib = j < b->n ? entry_index(b->sparse[j]) : HLL_SPARSE_REGISTERS;
        i += ia <= ib;
        j += ib <= ia;
        n++;
    }
    return n;
}

/* Merges two sparse sketches into a new sparse array of n entries. */
static int sparse_merge(hll *into, const hll *from, uint32_t n)
{
    uint32_t *out = malloc((n ? n : 1) * sizeof *out);
    if (!out)
        return -1;
    uint32_t i = 0, j = 0, k = 0;
    while (i < into->n || j < from->n) {
        uint32_t a = i < into->n ? into->sparse[i] : UINT32_MAX;
        uint32_t b = j < from->n ? from->sparse[j] : UINT32_MAX;
        if (entry_index(a) == entry_index(b)) {
            out[k++] = a > b ? a : b; /* the same index: the higher rank */
            i++;
            j++;
        } else {
            out[k++] = a < b ? a : b;
            i += a < b;
            j += b < a;
        }
    }
    assert(k == n);
    free(into->sparse);
    into->sparse = out;
    into->n = into->cap = n;
    return 0;
}

/* Max of every register of `from` into the dense sketch `into`. */
static void dense_merge(hll *into, const hll *from)
{
    assert(into->dense);
    if (from->dense) {
        for (uint32_t i = 0; i < HLL_REGISTERS; i++)
            dense_offer(into->dense, i, from->dense[i]);
        return;
    }
    for (uint32_t i = 0; i < from->n; i++) {
        uint32_t index;
        uint8_t rank;
        entry_fold(from->sparse[i], &index, &rank);
        dense_offer(into->dense, index, rank);
    }
}

int hll_merge(hll *into, const hll *from)
{
    if (into == from)
        return 0;
    if (!into->dense && !from->dense) {
        uint32_t n = sparse_union_size(into, from);
        if (n <= HLL_SPARSE_MAX)
            return sparse_merge(into, from, n);
    }
    if (make_dense(into) != 0)
        return -1;
    dense_merge(into, from);
    return 0;
}

/* ---- estimate ------------------------------------------------------------- */

/* sigma(x) = x + sum_{k>=1} x^(2^k) 2^(k-1), for x in [0, 1]. */
static double ertl_sigma(double x)
{
    if (x == 1.0)
        return INFINITY;
    double sum = x, weight = 1.0, before;
    do {
        x *= x;
        before = sum;
        sum += x * weight;
        weight *= 2.0;
    } while (sum != before);
    return sum;
}

/* tau(x) = (1 - x - sum_{k>=1} (1 - x^(2^-k))^2 2^-k) / 3, for x in [0, 1]. */
static double ertl_tau(double x)
{
    if (x == 0.0 || x == 1.0)
        return 0.0;
    double sum = 1.0 - x, weight = 1.0, before;
    do {
        x = sqrt(x);
        before = sum;
        weight *= 0.5;
        sum -= (1.0 - x) * (1.0 - x) * weight;
    } while (sum != before);
    return sum / 3.0;
}

/* Ertl's estimate from the histogram hist[0..q+1] of m = 2^p registers. */
static uint64_t ertl_estimate(const uint32_t *hist, int q, double m)
{
    if (hist[0] == m)
        return 0;
    double z = m * ertl_tau((m - hist[q + 1]) / m);
    for (int k = q; k >= 1; k--)
        z = (z + hist[k]) * 0.5;
    z += m * ertl_sigma(hist[0] / m);
    return (uint64_t)llround(m * m / (2.0 * log(2.0)) / z);
}

uint64_t hll_count(const hll *h)
{
    uint32_t hist[HLL_RANK_MAX + 1] = {0};
    if (h->dense) {
        for (uint32_t i = 0; i < HLL_REGISTERS; i++)
            hist[h->dense[i]]++;
        return ertl_estimate(hist, HLL_RANK_MAX - 1, HLL_REGISTERS);
    }
    hist[0] = HLL_SPARSE_REGISTERS - h->n;
    for (uint32_t i = 0; i < h->n; i++)
        hist[entry_rank(h->sparse[i])]++;
    return ertl_estimate(hist, HLL_SPARSE_RANK_MAX - 1, HLL_SPARSE_REGISTERS);
}

/* ---- encoding ------------------------------------------------------------- */

/* A list of (index, rank) in ascending index order, written or measured. */
typedef struct list_writer {
    unsigned char *w; /* NULL: only measure */
    size_t size;      /* bytes of the entries */
    uint32_t n;
    int64_t prev;
} list_writer;

static void list_put(list_writer *lw, uint32_t index, uint8_t rank)
{
    uint64_t v = (uint64_t)(index - lw->prev - 1) << RANK_BITS | rank;
    lw->size += varint_size(v);
    if (lw->w)
        lw->w = varint_put(lw->w, v);
    lw->prev = index;
    lw->n++;
}

/* Walks h's sparse entries, or its set dense registers, into lw. */
static void list_walk(const hll *h, list_writer *lw)
{
    for (uint32_t i = 0; !h->dense && i < h->n; i++)
        list_put(lw, entry_index(h->sparse[i]), entry_rank(h->sparse[i]));
    for (uint32_t i = 0; h->dense && i < HLL_REGISTERS; i++)
        if (h->dense[i])
            list_put(lw, i, h->dense[i]);
}

/* The size of h's list body (count and entries) and its length *n. */
static size_t list_size(const hll *h, uint32_t *n)
{
    list_writer lw = {NULL, 0, 0, -1};
    list_walk(h, &lw);
    *n = lw.n;
    return varint_size(lw.n) + lw.size;
}

static void put_list(const hll *h, unsigned char *w, uint32_t n)
{
    list_writer lw = {varint_put(w, n), 0, 0, -1};
    list_walk(h, &lw);
}

/* Register index in a packed bit string: bits 6i..6i+5, least significant
 * first; returns the byte and the shift within it. */
static uint32_t packed_at(uint32_t index, uint32_t *shift)
{
    uint32_t bit = index * RANK_BITS;
    *shift = bit % 8;
    return bit / 8;
}

static void put_packed(const uint8_t *regs, unsigned char *w)
{
    memset(w, 0, HLL_DENSE_BYTES);
    for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
        uint32_t shift, byte = packed_at(i, &shift);
        w[byte] |= (unsigned char)(regs[i] << shift);
        if (shift > 8 - RANK_BITS)
            w[byte + 1] |= (unsigned char)(regs[i] >> (8 - shift));
    }
}

void hll_registers(const hll *h, uint8_t regs[HLL_REGISTERS])
{
    if (h->dense) {
        memcpy(regs, h->dense, HLL_REGISTERS);
        return;
    }
    memset(regs, 0, HLL_REGISTERS);
    for (uint32_t i = 0; i < h->n; i++) {
        uint32_t index;
        uint8_t rank;
        entry_fold(h->sparse[i], &index, &rank);
        dense_offer(regs, index, rank);
    }
}

void hll_pack_registers(const hll *h, unsigned char out[HLL_DENSE_BYTES])
{
    if (h->dense) {
        put_packed(h->dense, out);
        return;
    }
    uint8_t regs[HLL_REGISTERS];
    hll_registers(h, regs);
    put_packed(regs, out);
}

static uint8_t packed_get(const unsigned char *w, uint32_t index)
{
    uint32_t shift, byte = packed_at(index, &shift);
    uint32_t v = (uint32_t)w[byte] >> shift;
    if (shift > 8 - RANK_BITS)
        v |= (uint32_t)w[byte + 1] << (8 - shift);
    return (uint8_t)(v & RANK_MASK);
}

int hll_encode(const hll *h, unsigned char **out, size_t *len)
{
    uint32_t n;
    size_t body = list_size(h, &n);
    unsigned form = !h->dense ? HLL_FORM_SPARSE
                    : body < HLL_DENSE_BYTES ? HLL_FORM_DENSE_LIST : HLL_FORM_DENSE;
    size_t size = HEADER_BYTES + (form == HLL_FORM_DENSE ? HLL_DENSE_BYTES : body);
    unsigned char *buf = malloc(size);
    if (!buf)
        return -1;
    buf[0] = HLL_FORMAT_VERSION;
    buf[1] = HLL_PRECISION;
    buf[2] = (unsigned char)form;
    if (form == HLL_FORM_DENSE)
        put_packed(h->dense, buf + HEADER_BYTES);
    else
        put_list(h, buf + HEADER_BYTES, n);
    *out = buf;
    *len = size;
    return 0;
}

/* ---- decoding ------------------------------------------------------------- */

typedef struct reader {
    const unsigned char *c, *end;
    char *err;
    size_t errlen;
} reader;

static int fail(reader *r, const char *fmt, ...)
{
    if (r->err && r->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err, r->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* Reads a list of registers into the empty sketch h: precision-25 entries
 * (offered, so more than HLL_SPARSE_MAX of them turn h dense), or with
 * dense_list dense registers (h already dense). */
static int get_list(reader *r, hll *h, int dense_list)
{
    uint32_t registers = dense_list ? HLL_REGISTERS : HLL_SPARSE_REGISTERS;
    unsigned rank_max = dense_list ? HLL_RANK_MAX : HLL_SPARSE_RANK_MAX;
    uint64_t n;
    if (varint_get(&r->c, r->end, &n) != 0)
        return fail(r, "truncated or malformed register count");
    if (n > registers)
        return fail(r, "register count %llu exceeds %u", (unsigned long long)n, registers);
    int64_t prev = -1;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t v;
        if (varint_get(&r->c, r->end, &v) != 0)
            return fail(r, "truncated or malformed register %llu", (unsigned long long)i + 1);
        uint64_t gap = v >> RANK_BITS, rank = v & RANK_MASK;
        if (gap >= registers || prev + 1 + (int64_t)gap >= (int64_t)registers)
            return fail(r, "register index past %u", registers - 1);
        prev += (int64_t)gap + 1;
        if (rank < 1 || rank > rank_max)
            return fail(r, "register %lld rank %llu out of range", (long long)prev,
                        (unsigned long long)rank);
        if (dense_list)
            h->dense[prev] = (uint8_t)rank;
        else if (entry_offer(h, entry_make((uint32_t)prev, (uint8_t)rank)) < 0)
            return fail(r, "out of memory");
    }
    return 0;
}

/* Reads the packed dense registers into the dense, empty sketch h. */
static int get_packed(reader *r, hll *h)
{
    if ((size_t)(r->end - r->c) < HLL_DENSE_BYTES)
        return fail(r, "truncated dense registers");
    for (uint32_t i = 0; i < HLL_REGISTERS; i++) {
        uint8_t rank = packed_get(r->c, i);
        if (rank > HLL_RANK_MAX)
            return fail(r, "register %u rank %u out of range", i, rank);
        h->dense[i] = rank;
    }
    r->c += HLL_DENSE_BYTES;
    return 0;
}

/* Reads the body of `form` into the empty sketch h. */
static int get_body(reader *r, hll *h, unsigned form)
{
    if (form == HLL_FORM_SPARSE)
        return get_list(r, h, 0);
    if (form != HLL_FORM_DENSE && form != HLL_FORM_DENSE_LIST)
        return fail(r, "unknown hll form %u", form);
    if (make_dense(h) != 0)
        return fail(r, "out of memory");
    if (form == HLL_FORM_DENSE_LIST)
        return get_list(r, h, 1);
    return get_packed(r, h);
}

/* Parses a whole encoded sketch into the empty sketch h. */
static int parse(reader *r, hll *h)
{
    if (r->end - r->c < (ptrdiff_t)HEADER_BYTES)
        return fail(r, "truncated hll header");
    unsigned version = r->c[0], precision = r->c[1], form = r->c[2];
    r->c += HEADER_BYTES;
    if (version != HLL_FORMAT_VERSION)
        return fail(r, "unsupported hll version %u", version);
    if (precision != HLL_PRECISION)
        return fail(r, "unsupported hll precision %u", precision);
    if (get_body(r, h, form) != 0)
        return -1;
    if (r->c != r->end)
        return fail(r, "%zu trailing bytes", (size_t)(r->end - r->c));
    return 0;
}

int hll_decode(hll *into, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
    reader r = {buf, buf ? buf + len : buf, err, errlen};
    hll *h = hll_new();
    if (!h)
        return fail(&r, "out of memory");
    int rc = parse(&r, h);
    if (rc == 0 && hll_merge(into, h) != 0)
        rc = fail(&r, "out of memory");
    hll_free(h);
    return rc;
}
