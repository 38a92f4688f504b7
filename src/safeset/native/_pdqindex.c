/*
 * safeset._pdqindex: exact Hamming search over 256-bit PDQ hashes, in C.
 *
 * The Python side (safeset/pdq/index.py) owns every array and the layout
 * decisions; this file only fills tables and runs searches, with the GIL
 * released and the work split over threads.
 *
 * Multi-index hashing. A segment's hashes are indexed by m tables; table j
 * keys every hash by k contiguous bits starting at bit `start_j` (the keys
 * are disjoint). If two hashes are within distance r, the m keys hold at most
 * r of the differences, so (refined pigeonhole) with r = a*m + b, some key
 * j <= b differs in at most a bits, or some key j > b in at most a-1. A query
 * therefore probes every key within a (or a-1) flips of its own key in each
 * table, and verifies each candidate with a popcount over all 256 bits:
 * exact, whatever the data.
 *
 * Hash blocks. Hashes are stored four to a 128-byte block: the first 64
 * bytes hold the first halves (bytes 0..15) of the four hashes, the last 64
 * bytes their second halves. A table entry names a block, not a hash (two
 * bits fewer per entry), and verifying a candidate block usually reads one
 * cache line: a hash whose first half is already more than the threshold
 * away is rejected without its second half.
 *
 * Tables (about 23 bits per hash at 10M, for 11 tables and 32-byte hashes
 * that is < 64 bytes per hash). Table j is the sorted set of values
 * v = key_j(hash) * nblocks + block, one per distinct (key, block), stored
 * Elias-Fano style with `low_bits` = L:
 *   - low:     the low L bits of each value, bit-packed, in order;
 *   - unary:   for each high part h = v >> L in order, one 1 bit per value
 *              with that high part, then a 0 (so value i's 1 is at h + i);
 *   - samples: samples[s] = values with high part < 1024*s (uint32), and
 *     subs:    subs[g] = values with high part < 64*g, less the straight
 *              line between the samples around it (int8; -128 when it does
 *              not fit), so high part H starts at bit
 *              (values before 64*(H/64)) + 64*(H/64), then H%64 zeros on.
 *              (One uint32 per 256 high parts costs as much, but the walk
 *              over ~128 zeros it leaves was the slowest part of a search.)
 * Key K's candidates are the values in [K*nblocks, (K+1)*nblocks); L is
 * chosen (fewest bits) so that this range spans one or two high parts.
 *
 * Bit numbering: hash byte i holds bits 8i..8i+7 (bit 8i+t = (byte >> t) & 1).
 * Distances do not depend on it; only keys do, and they are built and
 * queried by this same code.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <pthread.h>
#define PDQ_THREADS 1
#else
#define PDQ_THREADS 0
#endif

#if defined(__GNUC__)
#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define PREFETCH(p) __builtin_prefetch((const void *)(p))
#else
#define ALWAYS_INLINE static inline
#define PREFETCH(p) ((void)0)
#endif

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define PDQ_X86 1
#include <immintrin.h>
#else
#define PDQ_X86 0
#endif

/* Instruction sets the hot loop is compiled for (chosen at run time). */
enum { PLAIN = 0, WITH_POPCNT = 1, WITH_AVX512 = 2 };

#define MAX_TABLES 64
#ifndef PIPELINE_STEP
#define PIPELINE_STEP 12
#endif
#define BLOCK_HASHES 4
#define BLOCK_BYTES 128
#define HALF_BYTES 64
#define SAMPLE_SHIFT 10 /* one uint32 sample per 1024 high parts */
#define SUB_SHIFT 6      /* one int8 sub-sample per 64 */
#define SUBS_PER_SAMPLE (1 << (SAMPLE_SHIFT - SUB_SHIFT))
#define SUB_ESCAPE (-128) /* a sub-sample too far from the line: walk from the sample */
#define MAX_LOW_BITS 56

/* ---------------------------------------------------------------- helpers */

ALWAYS_INLINE uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

ALWAYS_INLINE void store_le64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

ALWAYS_INLINE int popcount64(uint64_t x) { return __builtin_popcountll(x); }

/* k (<= 32) bits of a 32-byte hash starting at bit `start`. */
ALWAYS_INLINE uint32_t hash_key(const uint8_t *hash, int start, int k)
{
    int byte = start >> 3, shift = start & 7;
    uint64_t v;
    if (byte + 8 <= 32) {
        v = load_le64(hash + byte);
    } else {
        uint8_t tmp[8] = {0};
        memcpy(tmp, hash + byte, (size_t)(32 - byte));
        v = load_le64(tmp);
    }
    return (uint32_t)((v >> shift) & ((k >= 32) ? 0xFFFFFFFFull : ((1ull << k) - 1)));
}

/* Hash number `local` of a block array, as its 32 plain bytes. */
ALWAYS_INLINE void load_hash(const uint8_t *blocks, int64_t local, uint8_t out[32])
{
    const uint8_t *first = blocks + (local / BLOCK_HASHES) * BLOCK_BYTES + (local % BLOCK_HASHES) * 16;
    memcpy(out, first, 16);
    memcpy(out + 16, first + HALF_BYTES, 16);
}

/* 64 bits of a bit string starting at bit p (bytes padded by >= 16 at the end). */
ALWAYS_INLINE uint64_t load_bits(const uint8_t *bits, uint64_t p)
{
    uint64_t word = load_le64(bits + (p >> 3));
    unsigned shift = (unsigned)(p & 7);
    if (shift) word = (word >> shift) | ((uint64_t)bits[(p >> 3) + 8] << (64 - shift));
    return word;
}

/* Bit-packed w-bit (w <= MAX_LOW_BITS) value number i. */
ALWAYS_INLINE uint64_t load_packed(const uint8_t *packed, uint64_t i, int w)
{
    uint64_t bit = i * (uint64_t)w;
    return (load_le64(packed + (bit >> 3)) >> (bit & 7)) & ((1ull << w) - 1);
}

static uint8_t select_in_byte[256][8];

static void init_select_table(void)
{
    for (int byte = 0; byte < 256; byte++) {
        int rank = 0;
        for (int bit = 0; bit < 8; bit++)
            if (byte & (1 << bit)) select_in_byte[byte][rank++] = (uint8_t)bit;
    }
}

/* Position of the set bit of rank r (0-based) in x; x has more than r set bits. */
ALWAYS_INLINE int select64(uint64_t x, int r)
{
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t s = x - ((x >> 1) & 0x5555555555555555ull);
    s = (s & 0x3333333333333333ull) + ((s >> 2) & 0x3333333333333333ull);
    s = (s + (s >> 4)) & 0x0F0F0F0F0F0F0F0Full;
    uint64_t cumulative = s * ones; /* byte j: set bits in bytes 0..j */
    uint64_t above = ((cumulative | 0x8080808080808080ull) - (uint64_t)(r + 1) * ones) &
                     0x8080808080808080ull; /* bytes whose cumulative count > r */
    int byte = __builtin_ctzll(above) >> 3;
    int before = byte ? (int)((cumulative >> (8 * (byte - 1))) & 0xFF) : 0;
    return 8 * byte + select_in_byte[(x >> (8 * byte)) & 0xFF][r - before];
}

#if PDQ_X86
#define AVX512_TARGET __attribute__((target("popcnt,bmi2,avx512f,avx512bw,avx512vl,avx512vpopcntdq")))

AVX512_TARGET static inline int select64_pdep(uint64_t x, int r)
{
    return __builtin_ctzll(_pdep_u64(1ull << r, x));
}

/* Which of a block line's four first halves lie within `threshold` of the
 * query's first half: bit 2t for hash t. */
AVX512_TARGET static inline unsigned near_first_halves(const uint8_t *line, const uint8_t *query, int threshold)
{
    __m512i halves = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)query));
    __m512i counts = _mm512_popcnt_epi64(_mm512_xor_si512(_mm512_loadu_si512((const void *)line), halves));
    __m512i sums = _mm512_add_epi64(counts, _mm512_shuffle_epi32(counts, _MM_PERM_BADC));
    return (unsigned)_mm512_cmple_epu64_mask(sums, _mm512_set1_epi64(threshold)) & 0x55u;
}
#endif

/* ------------------------------------------------------------ structures */

typedef struct {
    int start;                /* first key bit */
    int low_bits;             /* L */
    uint64_t entries;         /* values in the table */
    uint64_t highs;           /* possible high parts: ((2^k * nblocks - 1) >> L) + 1 */
    const uint32_t *samples;  /* per 1024 high parts: values before it */
    const int8_t *subs;       /* per 64 high parts: values before it, less the samples' interpolation */
    const uint8_t *unary;     /* entries + highs bits, padded */
    const uint8_t *low;       /* entries * L bits, padded */
} Table;

typedef struct {
    const uint8_t *blocks; /* nblocks x 128 bytes, hashes of ids id_start .. id_start+n-1 */
    int64_t id_start, n, nblocks;
    int flat;              /* scan every hash instead of probing */
    int m, k;
    Table tables[MAX_TABLES];
} Segment;

/* Values before sub-sample j (of 16) of sample s, as the straight line
 * between samples s and s+1 predicts them (what subs[] corrects). */
ALWAYS_INLINE uint64_t interpolated(const uint32_t *samples, uint64_t s, unsigned j)
{
    return samples[s] + ((((uint64_t)samples[s + 1] - samples[s]) * j) >> (SAMPLE_SHIFT - SUB_SHIFT));
}

/* Where high part `high` starts, from the samples alone: the bit, the values
 * before it, and the zeros still to skip from there (< 64 unless a sub-sample
 * could not be stored). */
ALWAYS_INLINE uint64_t sampled_start(const Table *t, uint64_t high, uint64_t *pos, uint64_t *before)
{
    uint64_t s = high >> SAMPLE_SHIFT, sub = high >> SUB_SHIFT, from = s << SAMPLE_SHIFT;
    uint64_t values = t->samples[s];
    int deviation = t->subs[sub];
    unsigned j = (unsigned)(sub & (SUBS_PER_SAMPLE - 1));
    if (j && deviation != SUB_ESCAPE) {
        values = (uint64_t)((int64_t)interpolated(t->samples, s, j) + deviation);
        from = sub << SUB_SHIFT;
    }
    *before = values;
    *pos = values + from;
    return high - from;
}

/* Move from bit `*pos` (with `*before` ones before it) past `zeros` more
 * zeros; stops at `limit` (the string's length) whatever the bits say. */
ALWAYS_INLINE void skip_zeros(const uint8_t *unary, uint64_t limit, uint64_t zeros, uint64_t *pos,
                              uint64_t *before, int isa)
{
    uint64_t p = *pos, ones = *before;
    while (zeros > 0 && p < limit) {
        uint64_t z = ~load_bits(unary, p);
        uint64_t available = (uint64_t)popcount64(z);
        if (available >= zeros) {
#if PDQ_X86
            int at = isa == WITH_AVX512 ? select64_pdep(z, (int)zeros - 1) : select64(z, (int)zeros - 1);
#else
            (void)isa;
            int at = select64(z, (int)zeros - 1);
#endif
            ones += (uint64_t)at + 1 - zeros;
            p += (uint64_t)at + 1;
            zeros = 0;
            break;
        }
        ones += 64 - available;
        zeros -= available;
        p += 64;
    }
    *pos = p;
    *before = ones;
}

/* Growable arrays (per worker). */
typedef struct {
    void *data;
    size_t len, cap, item;
} Vec;

static int vec_reserve(Vec *v, size_t want)
{
    if (want <= v->cap) return 0;
    size_t cap = v->cap ? v->cap : 256;
    while (cap < want) cap *= 2;
    void *data = realloc(v->data, cap * v->item);
    if (!data) return -1;
    v->data = data;
    v->cap = cap;
    return 0;
}

typedef struct {
    int64_t id;
    int32_t distance;
} Hit;

/* One probe of one query: a key in one table, then where its values start. */
typedef struct {
    uint32_t key;
    uint16_t table;
    uint16_t skip;  /* zeros from the sampled bit to the key's first high part */
    uint64_t pos;   /* bit of the unary string where the key's first high part starts */
    uint64_t first; /* values before that bit */
} Probe;


/* ----------------------------------------------------------------- search */

typedef struct {
    const Segment *segments;
    int nseg;
    const uint8_t *removed; /* bitmap over ids, or NULL */
    int64_t removed_bits;
    const uint8_t *queries;
    int64_t nq;
    int threshold;
    int64_t chunk;          /* queries per work item */
    int64_t next_chunk;     /* shared counter */
    /* outputs */
    int64_t *counts;        /* hits per query */
    int64_t nchunks;
    int64_t *chunk_worker;  /* which worker holds a chunk's hits */
    int64_t *chunk_offset;  /* where, in that worker's hits */
    int failed;
#if PDQ_THREADS
    pthread_mutex_t lock;
#endif
} SearchJob;

typedef struct {
    SearchJob *job;
    int index;
    Vec probes, candidates, near, hits;
} Worker;

ALWAYS_INLINE int is_removed(const SearchJob *job, int64_t id)
{
    if (!job->removed || id >= job->removed_bits) return 0;
    return (job->removed[id >> 3] >> (id & 7)) & 1;
}

/* Enumerate keys within `radius` flips of `key` over k bits. */
static int add_probes(Vec *probes, uint32_t key, int k, int radius, uint16_t table)
{
    uint64_t total = 0, combos = 1;
    for (int f = 0; f <= radius && f <= k; f++) {
        total += combos;
        combos = combos * (uint64_t)(k - f) / (uint64_t)(f + 1);
    }
    if (vec_reserve(probes, probes->len + total)) return -1;
    Probe *out = (Probe *)probes->data + probes->len;
    size_t n = 0;
#define EMIT(x) (out[n].key = (x), out[n].table = table, n++)
    EMIT(key);
    if (radius >= 1)
        for (int x = 0; x < k; x++) {
            uint32_t kx = key ^ (1u << x);
            EMIT(kx);
            if (radius >= 2)
                for (int y = x + 1; y < k; y++) {
                    uint32_t ky = kx ^ (1u << y);
                    EMIT(ky);
                    if (radius >= 3)
                        for (int z = y + 1; z < k; z++) EMIT(ky ^ (1u << z));
                }
        }
#undef EMIT
    probes->len += n;
    /* Larger radii: Gosper's hack over the k-bit masks with 4, 5, ... bits set. */
    for (int flips = 4; flips <= radius && flips <= k; flips++) {
        uint64_t mask = (1ull << flips) - 1, limit = 1ull << k;
        Probe *more = (Probe *)probes->data;
        while (mask < limit) {
            more[probes->len].key = key ^ (uint32_t)mask;
            more[probes->len].table = table;
            probes->len++;
            uint64_t low = mask & (~mask + 1), ripple = mask + low;
            mask = ripple | (((ripple ^ mask) >> 2) / low);
        }
    }
    return 0;
}

static int push_hit(Vec *hits, int64_t id, int distance)
{
    if (vec_reserve(hits, hits->len + 1)) return -1;
    Hit *h = (Hit *)hits->data + hits->len++;
    h->id = id;
    h->distance = distance;
    return 0;
}

/* The query as four little-endian words: two per half. */
typedef struct {
    uint64_t w[4];
} Query;

ALWAYS_INLINE Query load_query(const uint8_t *query)
{
    Query q;
    for (int i = 0; i < 4; i++) q.w[i] = load_le64(query + 8 * i);
    return q;
}

/* Whether a candidate block may hold a hash within the threshold: its first
 * line (the four first halves) alone rules most blocks out. */
ALWAYS_INLINE int block_is_near(const Segment *seg, uint64_t block, const Query *q, const uint8_t *query,
                                int threshold, int isa)
{
    const uint8_t *first = seg->blocks + block * BLOCK_BYTES;
#if PDQ_X86 && !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__)
    if (isa == WITH_AVX512) return near_first_halves(first, query, threshold) != 0;
#else
    (void)query;
    (void)isa;
#endif
    for (int t = 0; t < BLOCK_HASHES; t++) {
        const uint8_t *a = first + 16 * t;
        if (popcount64(load_le64(a) ^ q->w[0]) + popcount64(load_le64(a + 8) ^ q->w[1]) <= threshold) return 1;
    }
    return 0;
}

/* Every hash of a near block within the threshold, as hits. */
ALWAYS_INLINE int verify_block(const SearchJob *job, const Segment *seg, uint64_t block, const Query *q, Vec *hits)
{
    const uint8_t *first = seg->blocks + block * BLOCK_BYTES;
    int threshold = job->threshold;
    for (int t = 0; t < BLOCK_HASHES; t++) {
        const uint8_t *a = first + 16 * t, *b = a + HALF_BYTES;
        int d = popcount64(load_le64(a) ^ q->w[0]) + popcount64(load_le64(a + 8) ^ q->w[1]);
        if (d > threshold) continue;
        int64_t local = (int64_t)block * BLOCK_HASHES + t;
        if (local >= seg->n) continue; /* padding of the last block */
        d += popcount64(load_le64(b) ^ q->w[2]) + popcount64(load_le64(b + 8) ^ q->w[3]);
        if (d <= threshold && !is_removed(job, seg->id_start + local))
            if (push_hit(hits, seg->id_start + local, d)) return -1;
    }
    return 0;
}

/* The blocks that one probe names, appended to `out` (their first lines
 * prefetched): the values in [key * nblocks, (key + 1) * nblocks), whose high
 * parts first_high..last_high start at bit `pos` (usually two high parts, a
 * few values: a plain walk over the bits is as fast as anything cleverer). */
ALWAYS_INLINE int decode_probe(const Segment *seg, const Probe *p, Vec *out)
{
    const Table *tb = &seg->tables[p->table];
    const int L = tb->low_bits;
    const uint64_t lo = (uint64_t)p->key * (uint64_t)seg->nblocks, hi = lo + (uint64_t)seg->nblocks;
    const uint64_t last_high = (hi - 1) >> L, limit = tb->entries + tb->highs;
    uint64_t high = lo >> L, value_index = p->first, pos = p->pos;
    while (pos < limit) { /* bounded whatever the bits say */
        uint64_t word = load_bits(tb->unary, pos);
        for (int bit = 0; bit < 64; bit++) {
            if ((word >> bit) & 1) {
                if (value_index >= tb->entries) return 0;
                uint64_t v = (high << L) | load_packed(tb->low, value_index, L);
                value_index++;
                if (v >= hi) return 0;
                if (v >= lo) {
                    if (vec_reserve(out, out->len + 1)) return -1;
                    uint64_t block = v - lo;
                    PREFETCH(seg->blocks + block * BLOCK_BYTES);
                    ((uint32_t *)out->data)[out->len++] = (uint32_t)block;
                }
            } else if (++high > last_high) {
                return 0;
            }
        }
        pos += 64;
    }
    return 0;
}

/* Candidates `lag` behind the newest (their first lines fetched by now):
 * those whose first line shows a close first half go on to `near`, with
 * their second line prefetched. */
ALWAYS_INLINE int screen_candidates(Worker *w, const Segment *seg, const Query *q, const uint8_t *query,
                                    size_t *screened, size_t lag, int isa)
{
    const uint32_t *cand = (const uint32_t *)w->candidates.data;
    for (; *screened + lag < w->candidates.len; (*screened)++) {
        uint32_t block = cand[*screened];
        if (!block_is_near(seg, block, q, query, w->job->threshold, isa)) continue;
        if (vec_reserve(&w->near, w->near.len + 1)) return -1;
        PREFETCH(seg->blocks + (uint64_t)block * BLOCK_BYTES + HALF_BYTES);
        ((uint32_t *)w->near.data)[w->near.len++] = block;
    }
    return 0;
}

/* Near blocks `lag` behind the newest (their second lines fetched by now), verified. */
ALWAYS_INLINE int verify_near(Worker *w, const Segment *seg, const Query *q, Vec *hits, size_t *verified,
                              size_t lag)
{
    const uint32_t *near = (const uint32_t *)w->near.data;
    for (; *verified + lag < w->near.len; (*verified)++)
        if (verify_block(w->job, seg, near[*verified], q, hits)) return -1;
    return 0;
}

/* One query against one segment's tables. Each probe needs four dependent
 * memory reads (samples, unary bits, low bits, then the candidates' block
 * lines), so probes run through a software pipeline: in one step, probe i
 * has its samples prefetched, probe i-D reads them and prefetches its bits
 * (and, by estimate, its low bits), probe i-2D finds where its values start,
 * probe i-3D decodes them and prefetches the block lines, which are verified
 * a few candidates later. Misses from all stages overlap, evenly spread. */
ALWAYS_INLINE int search_mih(Worker *w, const Segment *seg, const uint8_t *query, Vec *hits, int isa)
{
    const SearchJob *job = w->job;
    int m = seg->m, k = seg->k, r = job->threshold;
    int a = r / m, b = r % m;
    const uint64_t nblocks = (uint64_t)seg->nblocks;
    const Query q = load_query(query);
    w->probes.len = 0;
    for (int j = 0; j < m; j++) {
        int radius = (j <= b) ? a : a - 1;
        if (radius < 0) continue;
        uint32_t key = hash_key(query, seg->tables[j].start, k);
        if (add_probes(&w->probes, key, k, radius, (uint16_t)j)) return -1;
    }
    const size_t D = PIPELINE_STEP, lag = 2 * PIPELINE_STEP;
    size_t np = w->probes.len;
    Probe *probes = (Probe *)w->probes.data;
    size_t screened = 0, verified = 0;
    w->candidates.len = 0;
    w->near.len = 0;
    for (size_t i = 0; i < np + 3 * D; i++) {
        if (i < np) {
            const Table *tb = &seg->tables[probes[i].table];
            uint64_t high = ((uint64_t)probes[i].key * nblocks) >> tb->low_bits;
            PREFETCH(tb->samples + (high >> SAMPLE_SHIFT));
            PREFETCH(tb->subs + (high >> SUB_SHIFT));
        }
        if (i >= D && i - D < np) {
            Probe *p = &probes[i - D];
            const Table *tb = &seg->tables[p->table];
            uint64_t high = ((uint64_t)p->key * nblocks) >> tb->low_bits;
            p->skip = (uint16_t)sampled_start(tb, high, &p->pos, &p->first);
            PREFETCH(tb->unary + (p->pos >> 3));
            PREFETCH(tb->unary + (p->pos >> 3) + 24);
            /* Its values' low bits too, where the table's density puts them: a
             * stage before their exact place is known, since they are the
             * slowest read (measured: ~15% more queries/s). */
            uint64_t s = high >> SAMPLE_SHIFT;
            uint64_t guess = p->first + ((((uint64_t)tb->samples[s + 1] - tb->samples[s]) * p->skip) >> SAMPLE_SHIFT);
            uintptr_t at = (uintptr_t)tb->low + (uintptr_t)((guess * (uint64_t)tb->low_bits) >> 3);
            PREFETCH(at - 16);
            PREFETCH(at + 16);
        }
        if (i >= 2 * D && i - 2 * D < np) {
            Probe *p = &probes[i - 2 * D];
            const Table *tb = &seg->tables[p->table];
            skip_zeros(tb->unary, tb->entries + tb->highs, p->skip, &p->pos, &p->first, isa);
            PREFETCH(tb->low + ((p->first * (uint64_t)tb->low_bits) >> 3));
        }
        if (i >= 3 * D) {
            if (i - 3 * D < np && decode_probe(seg, &probes[i - 3 * D], &w->candidates)) return -1;
            if (screen_candidates(w, seg, &q, query, &screened, lag, isa)) return -1;
            if (verify_near(w, seg, &q, hits, &verified, lag)) return -1;
        }
    }
    if (screen_candidates(w, seg, &q, query, &screened, 0, isa)) return -1;
    return verify_near(w, seg, &q, hits, &verified, 0);
}

static int compare_hits(const void *pa, const void *pb)
{
    const Hit *a = (const Hit *)pa, *b = (const Hit *)pb;
    if (a->distance != b->distance) return a->distance < b->distance ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

#define FLAT_BLOCKS 512 /* 64 KiB of hashes at a time, against every query of a chunk */

/* Every hash of a segment against the chunk's queries. */
ALWAYS_INLINE int scan_segment(const SearchJob *job, const Segment *seg, int64_t q0, int64_t nq, Vec *per_query)
{
    const int threshold = job->threshold;
    for (int64_t start = 0; start < seg->nblocks; start += FLAT_BLOCKS) {
        int64_t end = start + FLAT_BLOCKS < seg->nblocks ? start + FLAT_BLOCKS : seg->nblocks;
        for (int64_t i = 0; i < nq; i++) {
            const Query q = load_query(job->queries + (q0 + i) * 32);
            for (int64_t block = start; block < end; block++) {
                const uint8_t *first = seg->blocks + block * BLOCK_BYTES;
                for (int t = 0; t < BLOCK_HASHES; t++) {
                    const uint8_t *a = first + 16 * t, *b = a + HALF_BYTES;
                    int d = popcount64(load_le64(a) ^ q.w[0]) + popcount64(load_le64(a + 8) ^ q.w[1]) +
                            popcount64(load_le64(b) ^ q.w[2]) + popcount64(load_le64(b + 8) ^ q.w[3]);
                    if (d > threshold) continue;
                    int64_t local = block * BLOCK_HASHES + t;
                    if (local >= seg->n) continue;
                    int64_t id = seg->id_start + local;
                    if (!is_removed(job, id) && push_hit(&per_query[i], id, d)) return -1;
                }
            }
        }
    }
    return 0;
}

ALWAYS_INLINE int run_chunk_impl(Worker *w, int64_t q0, int64_t q1, int isa)
{
    SearchJob *job = w->job;
    int64_t nq = q1 - q0;
    /* Hits of each query of the chunk, kept apart while segments add to them. */
    Vec *per_query = calloc((size_t)nq, sizeof(Vec));
    if (!per_query) return -1;
    int rc = 0;
    for (int64_t i = 0; i < nq; i++) per_query[i].item = sizeof(Hit);
    for (int s = 0; s < job->nseg && !rc; s++) {
        const Segment *seg = &job->segments[s];
        if (seg->n == 0) continue;
        if (seg->flat) {
            rc = scan_segment(job, seg, q0, nq, per_query);
        } else {
            for (int64_t i = 0; i < nq && !rc; i++)
                rc = search_mih(w, seg, job->queries + (q0 + i) * 32, &per_query[i], isa);
        }
    }
    for (int64_t i = 0; i < nq && !rc; i++) {
        Hit *hits = (Hit *)per_query[i].data;
        size_t n = per_query[i].len, kept = 0;
        if (n > 1) qsort(hits, n, sizeof(Hit), compare_hits);
        for (size_t h = 0; h < n; h++)
            if (kept == 0 || hits[h].id != hits[kept - 1].id) hits[kept++] = hits[h];
        job->counts[q0 + i] = (int64_t)kept;
        if (vec_reserve(&w->hits, w->hits.len + kept)) {
            rc = -1;
            break;
        }
        if (kept) memcpy((Hit *)w->hits.data + w->hits.len, hits, kept * sizeof(Hit));
        w->hits.len += kept;
    }
    for (int64_t i = 0; i < nq; i++) free(per_query[i].data);
    free(per_query);
    return rc;
}

/* The hot loop three times: plain, with the POPCNT instruction, and with
 * AVX-512 (popcounts of a whole block line at once) and BMI2 where the CPU
 * has them, chosen at run time so the module still runs on any x86-64. */
static int run_chunk_plain(Worker *w, int64_t q0, int64_t q1) { return run_chunk_impl(w, q0, q1, PLAIN); }
#if PDQ_X86
__attribute__((target("popcnt"))) static int run_chunk_popcnt(Worker *w, int64_t q0, int64_t q1)
{
    return run_chunk_impl(w, q0, q1, WITH_POPCNT);
}
AVX512_TARGET static int run_chunk_avx512(Worker *w, int64_t q0, int64_t q1)
{
    return run_chunk_impl(w, q0, q1, WITH_AVX512);
}
#endif
static int (*run_chunk)(Worker *, int64_t, int64_t) = run_chunk_plain;

static void *search_worker(void *arg)
{
    Worker *w = (Worker *)arg;
    SearchJob *job = w->job;
    for (;;) {
        int64_t c;
#if PDQ_THREADS
        pthread_mutex_lock(&job->lock);
        c = job->failed ? job->nchunks : job->next_chunk++;
        pthread_mutex_unlock(&job->lock);
#else
        c = job->next_chunk++;
#endif
        if (c >= job->nchunks) break;
        int64_t q0 = c * job->chunk, q1 = q0 + job->chunk < job->nq ? q0 + job->chunk : job->nq;
        job->chunk_worker[c] = w->index;
        job->chunk_offset[c] = (int64_t)w->hits.len;
        if (run_chunk(w, q0, q1)) {
#if PDQ_THREADS
            pthread_mutex_lock(&job->lock);
#endif
            job->failed = 1;
#if PDQ_THREADS
            pthread_mutex_unlock(&job->lock);
#endif
            break;
        }
    }
    return NULL;
}

/* ------------------------------------------------------------ Python glue */

typedef struct {
    Py_buffer *views;
    int n, cap;
} Views;

static Py_buffer *take_view(Views *views, PyObject *obj, Py_ssize_t min_len, int writable, const char *what)
{
    if (views->n == views->cap) {
        int cap = views->cap ? views->cap * 2 : 64;
        Py_buffer *grown = realloc(views->views, (size_t)cap * sizeof(Py_buffer));
        if (!grown) {
            PyErr_NoMemory();
            return NULL;
        }
        views->views = grown;
        views->cap = cap;
    }
    Py_buffer *view = &views->views[views->n];
    if (PyObject_GetBuffer(obj, view, writable ? (PyBUF_SIMPLE | PyBUF_WRITABLE) : PyBUF_SIMPLE) < 0) return NULL;
    views->n++;
    if (view->len < min_len) {
        PyErr_Format(PyExc_ValueError, "%s: buffer of %zd bytes, need %zd", what, view->len, min_len);
        return NULL;
    }
    return view;
}

static const void *take_buffer(Views *views, PyObject *obj, Py_ssize_t min_len, const char *what)
{
    Py_buffer *view = take_view(views, obj, min_len, 0, what);
    return view ? view->buf : NULL;
}

static void release_views(Views *views)
{
    for (int i = 0; i < views->n; i++) PyBuffer_Release(&views->views[i]);
    free(views->views);
}

/* Sizes every table array must have (the Python side allocates them alike). */
static uint64_t table_highs(int k, int64_t nblocks, int low_bits)
{
    uint64_t universe = ((uint64_t)1 << k) * (uint64_t)nblocks;
    return universe ? ((universe - 1) >> low_bits) + 1 : 0;
}
static Py_ssize_t samples_len(uint64_t highs) { return (Py_ssize_t)((highs >> SAMPLE_SHIFT) + 2); }
static Py_ssize_t subs_len(uint64_t highs) { return (Py_ssize_t)((highs >> SUB_SHIFT) + 2); }
static Py_ssize_t unary_bytes(uint64_t entries, uint64_t highs) { return (Py_ssize_t)((entries + highs + 7) / 8 + 16); }
static Py_ssize_t low_bytes(uint64_t entries, int low_bits) { return (Py_ssize_t)((entries * (uint64_t)low_bits + 7) / 8 + 8); }

static int check_layout(int k, int low_bits, int64_t n)
{
    if (k < 6 || k > 32 || low_bits < 0 || low_bits > MAX_LOW_BITS || n < 0 || n > (int64_t)0xFFFFFFFF) {
        PyErr_SetString(PyExc_ValueError, "bad table layout (need 6 <= k <= 32, 0 <= low_bits <= 56, n < 2^32)");
        return -1;
    }
    int64_t nblocks = (n + BLOCK_HASHES - 1) / BLOCK_HASHES;
    if (table_highs(k, nblocks, low_bits) > ((uint64_t)1 << 40)) {
        PyErr_SetString(PyExc_ValueError, "table too large for its low bits");
        return -1;
    }
    return 0;
}

/* Segment tuple: (blocks, id_start, n, flat, k, starts, tables), tables a
 * sequence of (low_bits, entries, samples, subs, unary, low) (ignored when flat). */
static int parse_segment(PyObject *tuple, Segment *seg, Views *views)
{
    PyObject *blocks, *starts, *tables;
    long long id_start, n;
    int flat, k;
    if (!PyArg_ParseTuple(tuple, "OLLpiOO", &blocks, &id_start, &n, &flat, &k, &starts, &tables)) return -1;
    memset(seg, 0, sizeof(*seg));
    if (n < 0 || id_start < 0) {
        PyErr_SetString(PyExc_ValueError, "bad segment");
        return -1;
    }
    seg->nblocks = (n + BLOCK_HASHES - 1) / BLOCK_HASHES;
    seg->blocks = take_buffer(views, blocks, (Py_ssize_t)seg->nblocks * BLOCK_BYTES, "hash blocks");
    if (!seg->blocks) return -1;
    seg->id_start = id_start;
    seg->n = n;
    seg->flat = flat;
    seg->k = k;
    if (flat) return 0;
    PyObject *starts_seq = PySequence_Fast(starts, "starts must be a sequence");
    if (!starts_seq) return -1;
    PyObject *tables_seq = PySequence_Fast(tables, "tables must be a sequence");
    if (!tables_seq) {
        Py_DECREF(starts_seq);
        return -1;
    }
    int rc = -1;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(starts_seq);
    if (m < 1 || m > MAX_TABLES || m != PySequence_Fast_GET_SIZE(tables_seq)) {
        PyErr_SetString(PyExc_ValueError, "bad segment layout");
        goto done;
    }
    seg->m = (int)m;
    for (Py_ssize_t j = 0; j < m; j++) {
        long start = PyLong_AsLong(PySequence_Fast_GET_ITEM(starts_seq, j));
        if (start == -1 && PyErr_Occurred()) goto done;
        if (start < 0 || start + k > 256) {
            PyErr_SetString(PyExc_ValueError, "key bits outside the hash");
            goto done;
        }
        PyObject *samples, *subs, *unary, *low;
        int low_bits;
        long long entries;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(tables_seq, j), "iLOOOO", &low_bits, &entries, &samples, &subs,
                              &unary, &low))
            goto done;
        if (check_layout(k, low_bits, n)) goto done;
        if (entries < 0 || entries > n) {
            PyErr_SetString(PyExc_ValueError, "more table entries than hashes");
            goto done;
        }
        Table *t = &seg->tables[j];
        t->start = (int)start;
        t->low_bits = low_bits;
        t->entries = (uint64_t)entries;
        t->highs = table_highs(k, seg->nblocks, low_bits);
        t->samples = take_buffer(views, samples, samples_len(t->highs) * 4, "samples");
        if (!t->samples) goto done;
        t->subs = take_buffer(views, subs, subs_len(t->highs), "sub-samples");
        if (!t->subs) goto done;
        t->unary = take_buffer(views, unary, unary_bytes(t->entries, t->highs), "unary bits");
        if (!t->unary) goto done;
        t->low = take_buffer(views, low, low_bytes(t->entries, low_bits), "low bits");
        if (!t->low) goto done;
    }
    rc = 0;
done:
    Py_DECREF(starts_seq);
    Py_DECREF(tables_seq);
    return rc;
}

static PyObject *py_search(PyObject *self, PyObject *args)
{
    PyObject *segs_obj, *removed_obj, *queries_obj;
    int threshold, nthreads;
    if (!PyArg_ParseTuple(args, "OOOii", &segs_obj, &removed_obj, &queries_obj, &threshold, &nthreads))
        return NULL;
    if (threshold < 0) {
        PyErr_SetString(PyExc_ValueError, "threshold must be >= 0");
        return NULL;
    }
    if (threshold > 256) threshold = 256;
    if (nthreads < 1) nthreads = 1;
    if (!PDQ_THREADS) nthreads = 1;

    Views views = {0};
    PyObject *result = NULL;
    Segment *segments = NULL;
    Worker *workers = NULL;
    SearchJob job;
    memset(&job, 0, sizeof(job));

    PyObject *segs = PySequence_Fast(segs_obj, "segments must be a sequence");
    if (!segs) return NULL;
    Py_ssize_t nseg = PySequence_Fast_GET_SIZE(segs);
    segments = calloc((size_t)(nseg ? nseg : 1), sizeof(Segment));
    if (!segments) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t s = 0; s < nseg; s++)
        if (parse_segment(PySequence_Fast_GET_ITEM(segs, s), &segments[s], &views)) goto out;
    /* A segment probed at a radius so large it cannot pay off is scanned. */
    for (Py_ssize_t s = 0; s < nseg; s++) {
        Segment *seg = &segments[s];
        if (!seg->flat && threshold / seg->m > seg->k) seg->flat = 1;
    }

    Py_buffer *qview = take_view(&views, queries_obj, 0, 0, "queries");
    if (!qview) goto out;
    if (qview->len % 32) {
        PyErr_SetString(PyExc_ValueError, "queries must be a multiple of 32 bytes");
        goto out;
    }
    job.segments = segments;
    job.nseg = (int)nseg;
    job.queries = qview->buf;
    job.nq = qview->len / 32;
    job.threshold = threshold;
    if (removed_obj != Py_None) {
        Py_buffer *removed = take_view(&views, removed_obj, 0, 0, "removed");
        if (!removed) goto out;
        job.removed = removed->buf;
        job.removed_bits = (int64_t)removed->len * 8;
    }
    job.chunk = 32;
    job.nchunks = (job.nq + job.chunk - 1) / job.chunk;
    if (nthreads > job.nchunks) nthreads = job.nchunks ? (int)job.nchunks : 1;
    job.counts = calloc((size_t)(job.nq ? job.nq : 1), sizeof(int64_t));
    job.chunk_worker = calloc((size_t)(job.nchunks ? job.nchunks : 1), sizeof(int64_t));
    job.chunk_offset = calloc((size_t)(job.nchunks ? job.nchunks : 1), sizeof(int64_t));
    workers = calloc((size_t)nthreads, sizeof(Worker));
    if (!job.counts || !job.chunk_worker || !job.chunk_offset || !workers) {
        PyErr_NoMemory();
        goto out;
    }
    for (int i = 0; i < nthreads; i++) {
        workers[i].job = &job;
        workers[i].index = i;
        workers[i].probes.item = sizeof(Probe);
        workers[i].candidates.item = sizeof(uint32_t);
        workers[i].near.item = sizeof(uint32_t);
        workers[i].hits.item = sizeof(Hit);
    }

    Py_BEGIN_ALLOW_THREADS
#if PDQ_THREADS
    pthread_mutex_init(&job.lock, NULL);
    pthread_t *threads = calloc((size_t)nthreads, sizeof(pthread_t));
    int started = 0;
    if (threads) {
        for (int i = 1; i < nthreads; i++)
            if (pthread_create(&threads[i], NULL, search_worker, &workers[i]) == 0) started = i;
            else break;
    }
    search_worker(&workers[0]);
    for (int i = 1; i <= started; i++) pthread_join(threads[i], NULL);
    free(threads);
    pthread_mutex_destroy(&job.lock);
#else
    search_worker(&workers[0]);
#endif
    Py_END_ALLOW_THREADS

    if (job.failed) {
        PyErr_NoMemory();
        goto out;
    }
    {
        int64_t total = 0;
        for (int64_t q = 0; q < job.nq; q++) total += job.counts[q];
        PyObject *offsets = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(job.nq + 1) * 8);
        PyObject *ids = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total * 8);
        PyObject *dists = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total * 4);
        if (!offsets || !ids || !dists) {
            Py_XDECREF(offsets);
            Py_XDECREF(ids);
            Py_XDECREF(dists);
            goto out;
        }
        int64_t *off = (int64_t *)PyBytes_AS_STRING(offsets);
        int64_t *id_out = (int64_t *)PyBytes_AS_STRING(ids);
        int32_t *dist_out = (int32_t *)PyBytes_AS_STRING(dists);
        off[0] = 0;
        for (int64_t q = 0; q < job.nq; q++) off[q + 1] = off[q] + job.counts[q];
        for (int64_t c = 0; c < job.nchunks; c++) {
            int64_t q0 = c * job.chunk, q1 = q0 + job.chunk < job.nq ? q0 + job.chunk : job.nq;
            const Hit *src = (const Hit *)workers[job.chunk_worker[c]].hits.data + job.chunk_offset[c];
            for (int64_t h = off[q0]; h < off[q1]; h++, src++) {
                id_out[h] = src->id;
                dist_out[h] = src->distance;
            }
        }
        result = Py_BuildValue("(NNN)", offsets, ids, dists);
    }
out:
    if (workers) {
        for (int i = 0; i < nthreads; i++) {
            free(workers[i].probes.data);
            free(workers[i].candidates.data);
            free(workers[i].near.data);
            free(workers[i].hits.data);
        }
        free(workers);
    }
    free(job.counts);
    free(job.chunk_worker);
    free(job.chunk_offset);
    free(segments);
    release_views(&views);
    Py_DECREF(segs);
    return result;
}

/* ------------------------------------------------------------------ build */

typedef struct {
    /* inputs */
    const uint8_t *blocks;
    int64_t id_start, n, nblocks;
    const uint8_t *removed;
    int64_t removed_bits;
    int k, low_bits, start;
    uint64_t highs, capacity; /* capacity: values the output arrays can hold */
    /* outputs (allocated by the caller; zeroed here) */
    uint32_t *samples;
    int8_t *subs;
    uint8_t *unary, *low;
    Py_ssize_t samples_bytes, subs_len, unary_len, low_len;
    int64_t entries;
    int failed;
} BuildTask;

ALWAYS_INLINE int build_skips(const BuildTask *t, int64_t local)
{
    int64_t id = t->id_start + local;
    return t->removed && id < t->removed_bits && ((t->removed[id >> 3] >> (id & 7)) & 1);
}

static void build_table(BuildTask *t)
{
    memset(t->samples, 0, (size_t)t->samples_bytes);
    memset(t->subs, 0, (size_t)t->subs_len);
    memset(t->unary, 0, (size_t)t->unary_len);
    memset(t->low, 0, (size_t)t->low_len);
    int64_t nkeys = (int64_t)1 << t->k;
    uint32_t *keys = malloc((size_t)(t->n ? t->n : 1) * sizeof(uint32_t));
    uint32_t *fill = calloc((size_t)nkeys + 1, sizeof(uint32_t));
    uint32_t *sorted = malloc((size_t)(t->n ? t->n : 1) * sizeof(uint32_t));
    uint32_t *before_sub = malloc((size_t)t->subs_len * sizeof(uint32_t)); /* values before each 64 high parts */
    if (!keys || !fill || !sorted || !before_sub) {
        t->failed = 1;
        goto done;
    }
    for (int64_t i = 0; i < t->n; i++) {
        uint8_t hash[32];
        load_hash(t->blocks, i, hash);
        keys[i] = hash_key(hash, t->start, t->k);
    }
    /* Counting sort; the counts are random accesses, so fetch them ahead. */
    const int64_t ahead = 16;
    for (int64_t i = 0; i < t->n; i++) {
        if (i + ahead < t->n) PREFETCH(&fill[keys[i + ahead] + 1]);
        if (!build_skips(t, i)) fill[keys[i] + 1]++;
    }
    for (int64_t key = 0; key < nkeys; key++) fill[key + 1] += fill[key];
    /* Stable: within a key, blocks ascend, so a block's repeats are adjacent. */
    for (int64_t i = 0; i < t->n; i++) {
        if (i + ahead < t->n) PREFETCH(&fill[keys[i + ahead]]);
        if (!build_skips(t, i)) sorted[fill[keys[i]]++] = (uint32_t)(i / BLOCK_HASHES);
    }
    /* fill[key] is now the end of bucket key: walk keys in order, one value per
     * distinct (key, block), values ascending. */
    const int L = t->low_bits;
    const uint64_t low_mask = L ? ((1ull << L) - 1) : 0;
    int64_t entries = 0, in = 0, sub = 0;
    for (int64_t key = 0; key < nkeys; key++) {
        int64_t end = fill[key];
        int64_t previous = -1;
        for (; in < end; in++) {
            if ((int64_t)sorted[in] == previous) continue;
            previous = sorted[in];
            if ((uint64_t)entries >= t->capacity) {
                t->failed = 2;
                goto done;
            }
            uint64_t v = (uint64_t)key * (uint64_t)t->nblocks + (uint64_t)sorted[in];
            uint64_t high = v >> L;
            while (((uint64_t)sub << SUB_SHIFT) <= high) before_sub[sub++] = (uint32_t)entries;
            uint64_t bit = high + (uint64_t)entries;
            t->unary[bit >> 3] |= (uint8_t)(1u << (bit & 7));
            if (L) {
                uint64_t at = (uint64_t)entries * (uint64_t)L;
                uint8_t *p = t->low + (at >> 3);
                store_le64(p, load_le64(p) | ((v & low_mask) << (at & 7)));
            }
            entries++;
        }
    }
    while (sub < t->subs_len) before_sub[sub++] = (uint32_t)entries;
    t->entries = entries;
    /* Samples every 1024 high parts; between them, every 64, the difference
     * from the straight line between the two samples around it, in one
     * signed byte (a bridge: the difference is largest mid-way, and even
     * crowded clusters of copies rarely push it past a byte). */
    int64_t nsamples = (int64_t)(t->samples_bytes / 4);
    for (int64_t c = 0; c < nsamples; c++) {
        int64_t at = c << (SAMPLE_SHIFT - SUB_SHIFT);
        t->samples[c] = at < t->subs_len ? before_sub[at] : (uint32_t)entries;
    }
    for (int64_t g = 0; g < t->subs_len; g++) {
        unsigned j = (unsigned)(g & (SUBS_PER_SAMPLE - 1));
        if (!j) continue;
        int64_t deviation = (int64_t)before_sub[g] - (int64_t)interpolated(t->samples, (uint64_t)g >> (SAMPLE_SHIFT - SUB_SHIFT), j);
        t->subs[g] = (deviation > 127 || deviation <= SUB_ESCAPE) ? (int8_t)SUB_ESCAPE : (int8_t)deviation;
    }
done:
    free(keys);
    free(fill);
    free(sorted);
    free(before_sub);
}

typedef struct {
    BuildTask *tasks;
    int ntasks, next;
#if PDQ_THREADS
    pthread_mutex_t lock;
#endif
} BuildJob;

static void *build_worker(void *arg)
{
    BuildJob *job = (BuildJob *)arg;
    for (;;) {
        int i;
#if PDQ_THREADS
        pthread_mutex_lock(&job->lock);
        i = job->next++;
        pthread_mutex_unlock(&job->lock);
#else
        i = job->next++;
#endif
        if (i >= job->ntasks) break;
        build_table(&job->tasks[i]);
    }
    return NULL;
}

/* build(blocks, id_start, n, removed|None, starts, k, low_bits, capacity, outputs, nthreads)
 *   outputs: per table (samples, subs, unary, low) writable buffers sized for
 *   `capacity` values -> list of the values each table holds. */
static PyObject *py_build(PyObject *self, PyObject *args)
{
    PyObject *blocks_obj, *removed_obj, *starts_obj, *outputs_obj;
    long long id_start, n, capacity;
    int k, low_bits, nthreads;
    if (!PyArg_ParseTuple(args, "OLLOOiiLOi", &blocks_obj, &id_start, &n, &removed_obj, &starts_obj, &k, &low_bits,
                          &capacity, &outputs_obj, &nthreads))
        return NULL;
    if (check_layout(k, low_bits, n)) return NULL;
    if (id_start < 0 || capacity < 0 || capacity > n) {
        PyErr_SetString(PyExc_ValueError, "bad segment (id_start >= 0, 0 <= capacity <= n)");
        return NULL;
    }
    int64_t nblocks = (n + BLOCK_HASHES - 1) / BLOCK_HASHES;
    uint64_t highs = table_highs(k, nblocks, low_bits);
    Views views = {0};
    PyObject *result = NULL;
    BuildTask *tasks = NULL;
    PyObject *starts = PySequence_Fast(starts_obj, "starts must be a sequence");
    if (!starts) return NULL;
    PyObject *outputs = PySequence_Fast(outputs_obj, "outputs must be a sequence");
    if (!outputs) {
        Py_DECREF(starts);
        return NULL;
    }
    Py_ssize_t m = PySequence_Fast_GET_SIZE(starts);
    if (m > MAX_TABLES || m != PySequence_Fast_GET_SIZE(outputs)) {
        PyErr_SetString(PyExc_ValueError, "one output per table, at most 64 tables");
        goto out;
    }
    const uint8_t *blocks = take_buffer(&views, blocks_obj, (Py_ssize_t)nblocks * BLOCK_BYTES, "hash blocks");
    if (!blocks) goto out;
    const uint8_t *removed = NULL;
    int64_t removed_bits = 0;
    if (removed_obj != Py_None) {
        Py_buffer *view = take_view(&views, removed_obj, 0, 0, "removed");
        if (!view) goto out;
        removed = view->buf;
        removed_bits = (int64_t)view->len * 8;
    }
    tasks = calloc((size_t)(m ? m : 1), sizeof(BuildTask));
    if (!tasks) {
        PyErr_NoMemory();
        goto out;
    }
    for (Py_ssize_t j = 0; j < m; j++) {
        long start = PyLong_AsLong(PySequence_Fast_GET_ITEM(starts, j));
        if (start == -1 && PyErr_Occurred()) goto out;
        if (start < 0 || start + k > 256) {
            PyErr_SetString(PyExc_ValueError, "key bits outside the hash");
            goto out;
        }
        PyObject *samples, *subs, *unary, *low;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(outputs, j), "OOOO", &samples, &subs, &unary, &low)) goto out;
        BuildTask *t = &tasks[j];
        Py_buffer *sv = take_view(&views, samples, samples_len(highs) * 4, 1, "samples");
        if (!sv) goto out;
        Py_buffer *gv = take_view(&views, subs, subs_len(highs), 1, "sub-samples");
        if (!gv) goto out;
        Py_buffer *uv = take_view(&views, unary, unary_bytes((uint64_t)capacity, highs), 1, "unary bits");
        if (!uv) goto out;
        Py_buffer *lv = take_view(&views, low, low_bytes((uint64_t)capacity, low_bits), 1, "low bits");
        if (!lv) goto out;
        t->blocks = blocks;
        t->id_start = id_start;
        t->n = n;
        t->nblocks = nblocks;
        t->removed = removed;
        t->removed_bits = removed_bits;
        t->k = k;
        t->low_bits = low_bits;
        t->start = (int)start;
        t->highs = highs;
        t->capacity = (uint64_t)capacity;
        t->samples = (uint32_t *)sv->buf;
        t->samples_bytes = samples_len(highs) * 4;
        t->subs = (int8_t *)gv->buf;
        t->subs_len = subs_len(highs);
        t->unary = (uint8_t *)uv->buf;
        t->unary_len = uv->len;
        t->low = (uint8_t *)lv->buf;
        t->low_len = lv->len;
    }
    {
        BuildJob job;
        memset(&job, 0, sizeof(job));
        job.tasks = tasks;
        job.ntasks = (int)m;
        if (nthreads < 1) nthreads = 1;
        if (nthreads > m) nthreads = m ? (int)m : 1;
        Py_BEGIN_ALLOW_THREADS
#if PDQ_THREADS
        pthread_mutex_init(&job.lock, NULL);
        pthread_t threads[MAX_TABLES];
        int started = 0;
        for (int i = 1; i < nthreads; i++)
            if (pthread_create(&threads[i], NULL, build_worker, &job) == 0) started = i;
            else break;
        build_worker(&job);
        for (int i = 1; i <= started; i++) pthread_join(threads[i], NULL);
        pthread_mutex_destroy(&job.lock);
#else
        build_worker(&job);
#endif
        Py_END_ALLOW_THREADS
    }
    result = PyList_New(m);
    if (!result) goto out;
    for (Py_ssize_t j = 0; j < m; j++) {
        if (tasks[j].failed) {
            Py_CLEAR(result);
            if (tasks[j].failed == 2)
                PyErr_SetString(PyExc_ValueError, "more table values than the capacity given");
            else
                PyErr_NoMemory();
            goto out;
        }
        PyList_SET_ITEM(result, j, PyLong_FromLongLong(tasks[j].entries));
    }
out:
    free(tasks);
    release_views(&views);
    Py_DECREF(starts);
    Py_DECREF(outputs);
    return result;
}

static PyMethodDef methods[] = {
    {"build", py_build, METH_VARARGS,
     "build(blocks, id_start, n, removed, starts, k, low_bits, capacity, outputs, nthreads) -> [entries]"},
    {"search", py_search, METH_VARARGS,
     "search(segments, removed, queries, threshold, nthreads) -> (offsets, ids, distances)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pdqindex",
                                    "Exact Hamming search over PDQ hashes (multi-index hashing).", -1,
                                    methods};

PyMODINIT_FUNC PyInit__pdqindex(void)
{
    init_select_table();
#if PDQ_X86
    /* SAFESET_PDQ_ISA=plain|popcnt caps the instruction set (tests check each). */
    const char *cap = getenv("SAFESET_PDQ_ISA");
    int allowed = !cap || !cap[0] ? WITH_AVX512 : strcmp(cap, "plain") == 0 ? PLAIN : strcmp(cap, "popcnt") == 0 ? WITH_POPCNT : WITH_AVX512;
    __builtin_cpu_init();
    if (allowed >= WITH_POPCNT && __builtin_cpu_supports("popcnt")) run_chunk = run_chunk_popcnt;
    if (allowed >= WITH_AVX512 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vpopcntdq") &&
        __builtin_cpu_supports("bmi2"))
        run_chunk = run_chunk_avx512;
#endif
    return PyModule_Create(&module);
}
