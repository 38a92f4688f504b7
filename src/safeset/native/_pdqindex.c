/*
 * safeset._pdqindex: exact Hamming search over 256-bit PDQ hashes, in C.
 *
 * The Python side (safeset/pdq/index.py) owns every array and the layout
 * decisions; this file only builds tables and runs searches, with the GIL
 * released and the query batch split over threads.
 *
 * Multi-index hashing. A segment's hashes are indexed by m tables; table j
 * keys every hash by k contiguous bits starting at bit `start_j` (the
 * partitions are disjoint). If two hashes are within distance r, the bits of
 * the m partitions hold all the differences, so (refined pigeonhole) with
 * r = a*m + b, some partition j <= b differs in at most a bits, or some
 * partition j > b in at most a-1. A query therefore probes every key within
 * a (or a-1) flips of its own key in each table, and verifies each candidate
 * with a popcount over all 256 bits: exact, whatever the data.
 *
 * Table layout (compact, so 10M hashes x 11 tables fit in ~35 bytes/hash):
 *   - entries: hashes sorted by key; an entry is a *pair* index (id >> 1,
 *     relative to the segment), since ids 2p and 2p+1 share one 64-byte cache
 *     line; both are verified. Pair indexes are bit-packed, `w` bits each.
 *   - unary directory: for every key in order, one 1 bit per entry, then a 0.
 *     `base[b]` = number of entries with key < 64*b, so block b's bits start
 *     at bit base[b] + 64*b; a key's bucket is found by select-in-word.
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
#else
#define PDQ_X86 0
#endif

#define MAX_TABLES 64
#define PIPELINE_STEP 12

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

ALWAYS_INLINE int distance256(const uint8_t *a, const uint8_t *b)
{
    return __builtin_popcountll(load_le64(a) ^ load_le64(b)) +
           __builtin_popcountll(load_le64(a + 8) ^ load_le64(b + 8)) +
           __builtin_popcountll(load_le64(a + 16) ^ load_le64(b + 16)) +
           __builtin_popcountll(load_le64(a + 24) ^ load_le64(b + 24));
}

/* k (<= 32) bits of a hash starting at bit `start`. */
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

/* 64 bits of a bit string starting at bit p (bytes padded by >= 16 at the end). */
ALWAYS_INLINE uint64_t load_bits(const uint8_t *bits, uint64_t p)
{
    uint64_t word = load_le64(bits + (p >> 3));
    unsigned shift = (unsigned)(p & 7);
    if (shift) word = (word >> shift) | ((uint64_t)bits[(p >> 3) + 8] << (64 - shift));
    return word;
}

/* Bit-packed w-bit value number i. */
ALWAYS_INLINE uint32_t load_packed(const uint8_t *packed, uint64_t i, int w)
{
    uint64_t bit = i * (uint64_t)w;
    return (uint32_t)((load_le64(packed + (bit >> 3)) >> (bit & 7)) & ((1ull << w) - 1));
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

/* ------------------------------------------------------------ structures */

typedef struct {
    int start;            /* first key bit */
    const uint32_t *base; /* 2^k/64 + 1 entries */
    const uint8_t *bits;  /* unary directory */
    const uint8_t *pos;   /* bit-packed pair indexes */
} Table;

typedef struct {
    const uint8_t *hashes; /* n x 32 bytes, ids id_start .. id_start+n-1 */
    int64_t id_start, n;
    int flat;              /* scan every hash instead of probing */
    int m, k, w;
    Table tables[MAX_TABLES];
} Segment;

/* Bucket of `key`: first entry and entry count. */
ALWAYS_INLINE void find_bucket(const Table *t, uint32_t key, uint64_t entries_before, uint64_t *first,
                               uint64_t *count)
{
    uint32_t block = key >> 6;
    int zeros_to_skip = (int)(key & 63);
    uint64_t p = entries_before + ((uint64_t)block << 6);
    while (zeros_to_skip > 0) {
        uint64_t zeros = ~load_bits(t->bits, p);
        int available = __builtin_popcountll(zeros);
        if (available >= zeros_to_skip) {
            int at = select64(zeros, zeros_to_skip - 1);
            entries_before += (uint64_t)(at + 1 - zeros_to_skip);
            p += (uint64_t)at + 1;
            zeros_to_skip = 0;
            break;
        }
        entries_before += (uint64_t)(64 - available);
        zeros_to_skip -= available;
        p += 64;
    }
    uint64_t run = 0;
    for (;;) {
        uint64_t zeros = ~load_bits(t->bits, p);
        if (zeros) {
            run += (uint64_t)__builtin_ctzll(zeros);
            break;
        }
        run += 64;
        p += 64;
    }
    *first = entries_before;
    *count = run;
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

/* Probes of one query in one segment. */
typedef struct {
    uint32_t key;
    uint32_t table;
    uint64_t first, count; /* the bucket's entries, filled while probing */
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
    Vec *worker_hits;       /* per worker: Hit */
    int failed;
#if PDQ_THREADS
    pthread_mutex_t lock;
#endif
} SearchJob;

typedef struct {
    SearchJob *job;
    int index;
    Vec probes, candidates, hits;
} Worker;

ALWAYS_INLINE int is_removed(const SearchJob *job, int64_t id)
{
    if (!job->removed || id >= job->removed_bits) return 0;
    return (job->removed[id >> 3] >> (id & 7)) & 1;
}

/* Enumerate keys within `radius` flips of `key` over k bits. */
static int add_probes(Vec *probes, uint32_t key, int k, int radius, uint32_t table)
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

/* Verify a candidate pair: both of its ids that lie in the segment. */
ALWAYS_INLINE int verify_pair(const SearchJob *job, const Segment *seg, uint64_t pair,
                              const uint8_t *query, Vec *hits)
{
    int64_t first_id = (((seg->id_start >> 1) + (int64_t)pair) << 1);
    for (int64_t id = first_id; id < first_id + 2; id++) {
        int64_t local = id - seg->id_start;
        if (local < 0 || local >= seg->n) continue;
        int d = distance256(seg->hashes + local * 32, query);
        if (d <= job->threshold && !is_removed(job, id))
            if (push_hit(hits, id, d)) return -1;
    }
    return 0;
}

/* One query against one segment's tables. Each probe needs four dependent
 * memory reads (directory block, unary bits, entries, then the candidates'
 * hash lines), so probes run through a software pipeline: in one step, probe
 * i has its directory block prefetched, probe i-D reads it and prefetches
 * its bits, probe i-2D finds its bucket and prefetches the entries, probe
 * i-3D decodes them and prefetches the hash lines, which are verified a few
 * candidates later. Misses from all stages overlap, evenly spread. */
ALWAYS_INLINE int search_mih(Worker *w, const Segment *seg, const uint8_t *query, Vec *hits)
{
    const SearchJob *job = w->job;
    int m = seg->m, k = seg->k, r = job->threshold;
    int a = r / m, b = r % m;
    w->probes.len = 0;
    for (int j = 0; j < m; j++) {
        int radius = (j <= b) ? a : a - 1;
        if (radius < 0) continue;
        uint32_t key = hash_key(query, seg->tables[j].start, k);
        if (add_probes(&w->probes, key, k, radius, (uint32_t)j)) return -1;
    }
    const size_t D = PIPELINE_STEP, lag = 2 * PIPELINE_STEP;
    size_t np = w->probes.len;
    Probe *probes = (Probe *)w->probes.data;
    const uint8_t *line0 = seg->hashes - ((seg->id_start & 1) ? 32 : 0);
    size_t verified = 0, decoded = 0;
    w->candidates.len = 0;
    for (size_t i = 0; i < np + 3 * D; i++) {
        if (i < np) PREFETCH(seg->tables[probes[i].table].base + (probes[i].key >> 6));
        if (i >= D && i - D < np) {
            Probe *p = &probes[i - D];
            const Table *tb = &seg->tables[p->table];
            uint32_t block = p->key >> 6;
            p->first = tb->base[block];
            uint64_t bit = p->first + ((uint64_t)block << 6);
            PREFETCH(tb->bits + (bit >> 3));
            PREFETCH(tb->bits + (bit >> 3) + 24);
        }
        if (i >= 2 * D && i - 2 * D < np) {
            Probe *p = &probes[i - 2 * D];
            const Table *tb = &seg->tables[p->table];
            find_bucket(tb, p->key, p->first, &p->first, &p->count);
            if (p->count) PREFETCH(tb->pos + ((p->first * (uint64_t)seg->w) >> 3));
        }
        if (i >= 3 * D) {
            const Probe *p = &probes[i - 3 * D];
            if (p->count) {
                if (vec_reserve(&w->candidates, decoded + p->count)) return -1;
                uint32_t *out = (uint32_t *)w->candidates.data + decoded;
                const uint8_t *pos = seg->tables[p->table].pos;
                for (uint64_t e = 0; e < p->count; e++) {
                    uint32_t pair = load_packed(pos, p->first + e, seg->w);
                    PREFETCH(line0 + (size_t)pair * 64);
                    out[e] = pair;
                }
                decoded += p->count;
                w->candidates.len = decoded;
            }
            const uint32_t *cand = (const uint32_t *)w->candidates.data;
            for (; verified + lag < decoded; verified++)
                if (verify_pair(job, seg, cand[verified], query, hits)) return -1;
        }
    }
    const uint32_t *cand = (const uint32_t *)w->candidates.data;
    for (; verified < decoded; verified++)
        if (verify_pair(job, seg, cand[verified], query, hits)) return -1;
    return 0;
}

static int compare_hits(const void *pa, const void *pb)
{
    const Hit *a = (const Hit *)pa, *b = (const Hit *)pb;
    if (a->distance != b->distance) return a->distance < b->distance ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

#define FLAT_BLOCK 2048

ALWAYS_INLINE int run_chunk_impl(Worker *w, int64_t q0, int64_t q1)
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
            for (int64_t start = 0; start < seg->n && !rc; start += FLAT_BLOCK) {
                int64_t end = start + FLAT_BLOCK < seg->n ? start + FLAT_BLOCK : seg->n;
                for (int64_t i = 0; i < nq && !rc; i++) {
                    const uint8_t *query = job->queries + (q0 + i) * 32;
                    for (int64_t local = start; local < end; local++) {
                        int d = distance256(seg->hashes + local * 32, query);
                        if (d <= job->threshold) {
                            int64_t id = seg->id_start + local;
                            if (!is_removed(job, id) && push_hit(&per_query[i], id, d)) {
                                rc = -1;
                                break;
                            }
                        }
                    }
                }
            }
        } else {
            for (int64_t i = 0; i < nq && !rc; i++)
                rc = search_mih(w, seg, job->queries + (q0 + i) * 32, &per_query[i]);
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

/* The hot loop twice: with the POPCNT instruction where the CPU has it
 * (chosen at run time, so the module still runs on any x86-64), and plain. */
static int run_chunk_plain(Worker *w, int64_t q0, int64_t q1) { return run_chunk_impl(w, q0, q1); }
#if PDQ_X86
__attribute__((target("popcnt"))) static int run_chunk_popcnt(Worker *w, int64_t q0, int64_t q1)
{
    return run_chunk_impl(w, q0, q1);
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

/* Python glue: parse the segment descriptions, holding buffer views. */

typedef struct {
    Py_buffer *views;
    int n, cap;
} Views;

static const void *take_buffer(Views *views, PyObject *obj, Py_ssize_t min_len, const char *what)
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
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) return NULL;
    views->n++;
    if (view->len < min_len) {
        PyErr_Format(PyExc_ValueError, "%s: buffer of %zd bytes, need %zd", what, view->len, min_len);
        return NULL;
    }
    return view->buf;
}

static void release_views(Views *views)
{
    for (int i = 0; i < views->n; i++) PyBuffer_Release(&views->views[i]);
    free(views->views);
}

/* Segment tuple: (hashes, id_start, n, flat, k, w, starts, tables), tables a
 * sequence of (base, bits, pos) buffers (ignored when flat). */
static int parse_segment(PyObject *tuple, Segment *seg, Views *views)
{
    PyObject *hashes, *starts, *tables;
    long long id_start, n;
    int flat, k, w;
    if (!PyArg_ParseTuple(tuple, "OLLpiiOO", &hashes, &id_start, &n, &flat, &k, &w, &starts, &tables))
        return -1;
    memset(seg, 0, sizeof(*seg));
    seg->hashes = take_buffer(views, hashes, (Py_ssize_t)n * 32, "hashes");
    if (!seg->hashes) return -1;
    seg->id_start = id_start;
    seg->n = n;
    seg->flat = flat;
    seg->k = k;
    seg->w = w;
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
    if (m < 1 || m > MAX_TABLES || m != PySequence_Fast_GET_SIZE(tables_seq) || k < 6 || k > 32 ||
        w < 1 || w > 32) {
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
        PyObject *base, *bits, *pos;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(tables_seq, j), "OOO", &base, &bits, &pos)) goto done;
        Table *t = &seg->tables[j];
        t->start = (int)start;
        Py_ssize_t blocks = ((Py_ssize_t)1 << k) / 64 + 1;
        t->base = take_buffer(views, base, blocks * 4, "directory");
        if (!t->base) goto done;
        Py_ssize_t entries = (Py_ssize_t)t->base[blocks - 1];
        t->bits = take_buffer(views, bits, (entries + ((Py_ssize_t)1 << k)) / 8 + 16, "unary bits");
        if (!t->bits) goto done;
        t->pos = take_buffer(views, pos, (entries * w) / 8 + 8, "entries");
        if (!t->pos) goto done;
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

    Py_buffer qview;
    if (PyObject_GetBuffer(queries_obj, &qview, PyBUF_SIMPLE) < 0) goto out;
    if (qview.len % 32) {
        PyBuffer_Release(&qview);
        PyErr_SetString(PyExc_ValueError, "queries must be a multiple of 32 bytes");
        goto out;
    }
    /* keep the view alive with the others */
    if (views.n == views.cap) {
        Py_buffer *grown = realloc(views.views, (size_t)(views.cap + 8) * sizeof(Py_buffer));
        if (!grown) {
            PyBuffer_Release(&qview);
            PyErr_NoMemory();
            goto out;
        }
        views.views = grown;
        views.cap += 8;
    }
    views.views[views.n++] = qview;

    job.segments = segments;
    job.nseg = (int)nseg;
    job.queries = qview.buf;
    job.nq = qview.len / 32;
    job.threshold = threshold;
    if (removed_obj != Py_None) {
        const uint8_t *removed = take_buffer(&views, removed_obj, 0, "removed");
        if (!removed) goto out;
        job.removed = removed;
        job.removed_bits = (int64_t)views.views[views.n - 1].len * 8;
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
    const uint8_t *hashes;
    int64_t id_start, n;
    const uint8_t *removed;
    int64_t removed_bits;
    int k, w, start;
    /* outputs (allocated by the caller, zeroed) */
    uint32_t *base;
    uint8_t *bits;
    uint8_t *pos;
    int64_t entries;
    int failed;
} BuildTask;

static void build_table(BuildTask *t)
{
    int64_t nkeys = (int64_t)1 << t->k;
    uint32_t *keys = malloc((size_t)(t->n ? t->n : 1) * sizeof(uint32_t));
    uint32_t *fill = calloc((size_t)nkeys + 1, sizeof(uint32_t));
    uint32_t *sorted = malloc((size_t)(t->n ? t->n : 1) * sizeof(uint32_t));
    if (!keys || !fill || !sorted) {
        t->failed = 1;
        goto done;
    }
    const uint32_t skip = 0xFFFFFFFFu;
    for (int64_t i = 0; i < t->n; i++) {
        int64_t id = t->id_start + i;
        if (t->removed && id < t->removed_bits && ((t->removed[id >> 3] >> (id & 7)) & 1)) {
            keys[i] = skip;
            continue;
        }
        keys[i] = hash_key(t->hashes + i * 32, t->start, t->k);
    }
    /* Counting sort; the counts are random accesses, so fetch them ahead. */
    const int64_t ahead = 16;
    for (int64_t i = 0; i < t->n; i++) {
        if (i + ahead < t->n && keys[i + ahead] != skip) PREFETCH(&fill[keys[i + ahead] + 1]);
        if (keys[i] != skip) fill[keys[i] + 1]++;
    }
    for (int64_t key = 0; key < nkeys; key++) fill[key + 1] += fill[key];
    /* Stable: within a key, ids ascend, so pair mates are adjacent. */
    int64_t pair0 = t->id_start >> 1;
    for (int64_t i = 0; i < t->n; i++) {
        if (i + ahead < t->n && keys[i + ahead] != skip) PREFETCH(&fill[keys[i + ahead]]);
        if (keys[i] != skip) sorted[fill[keys[i]]++] = (uint32_t)(((t->id_start + i) >> 1) - pair0);
    }
    /* fill[key] is now the end of bucket key; walk buckets, dropping repeated pairs. */
    int64_t written = 0, in = 0;
    uint64_t bit = 0;
    for (int64_t key = 0; key < nkeys; key++) {
        if ((key & 63) == 0) t->base[key >> 6] = (uint32_t)written;
        int64_t end = fill[key];
        int64_t bucket_start = written;
        for (; in < end; in++) {
            if (written > bucket_start && sorted[written - 1] == sorted[in]) continue;
            sorted[written++] = sorted[in];
        }
        int64_t run = written - bucket_start;
        /* run ones then a zero */
        for (int64_t r = 0; r < run; r++, bit++) t->bits[bit >> 3] |= (uint8_t)(1u << (bit & 7));
        bit++;
    }
    t->base[nkeys >> 6] = (uint32_t)written;
    for (int64_t e = 0; e < written; e++) {
        uint64_t at = (uint64_t)e * (uint64_t)t->w;
        uint8_t *p = t->pos + (at >> 3);
        store_le64(p, load_le64(p) | ((uint64_t)sorted[e] << (at & 7)));
    }
    t->entries = written;
done:
    free(keys);
    free(fill);
    free(sorted);
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

/* build(hashes, id_start, n, removed|None, starts, k, w, nthreads)
 *   -> list of (base: bytearray, bits: bytearray, pos: bytearray, entries) */
static PyObject *py_build(PyObject *self, PyObject *args)
{
    PyObject *hashes_obj, *removed_obj, *starts_obj;
    long long id_start, n;
    int k, w, nthreads;
    if (!PyArg_ParseTuple(args, "OLLOOiii", &hashes_obj, &id_start, &n, &removed_obj, &starts_obj, &k, &w,
                          &nthreads))
        return NULL;
    if (k < 6 || k > 32 || w < 1 || w > 32 || n < 0 || id_start < 0) {
        PyErr_SetString(PyExc_ValueError, "bad table layout (need 6 <= k <= 32, 1 <= w <= 32)");
        return NULL;
    }
    if ((((id_start + n) >> 1) - (id_start >> 1)) >= ((long long)1 << w)) {
        PyErr_SetString(PyExc_ValueError, "entry width too small for the segment");
        return NULL;
    }
    Views views = {0};
    PyObject *result = NULL, *outputs = NULL;
    BuildTask *tasks = NULL;
    PyObject *starts = PySequence_Fast(starts_obj, "starts must be a sequence");
    if (!starts) return NULL;
    Py_ssize_t m = PySequence_Fast_GET_SIZE(starts);
    const uint8_t *hashes = take_buffer(&views, hashes_obj, (Py_ssize_t)n * 32, "hashes");
    if (!hashes) goto out;
    const uint8_t *removed = NULL;
    int64_t removed_bits = 0;
    if (removed_obj != Py_None) {
        removed = take_buffer(&views, removed_obj, 0, "removed");
        if (!removed) goto out;
        removed_bits = (int64_t)views.views[views.n - 1].len * 8;
    }
    tasks = calloc((size_t)(m ? m : 1), sizeof(BuildTask));
    outputs = PyList_New(m);
    if (!tasks || !outputs) {
        PyErr_NoMemory();
        goto out;
    }
    int64_t nkeys = (int64_t)1 << k;
    for (Py_ssize_t j = 0; j < m; j++) {
        long start = PyLong_AsLong(PySequence_Fast_GET_ITEM(starts, j));
        if (start == -1 && PyErr_Occurred()) goto out;
        if (start < 0 || start + k > 256) {
            PyErr_SetString(PyExc_ValueError, "key bits outside the hash");
            goto out;
        }
        Py_ssize_t blocks = (Py_ssize_t)(nkeys / 64) + 1;
        PyObject *base = PyByteArray_FromStringAndSize(NULL, blocks * 4);
        PyObject *bits = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)((n + nkeys) / 8 + 16));
        PyObject *pos = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)((n * w) / 8 + 8));
        if (!base || !bits || !pos) {
            Py_XDECREF(base);
            Py_XDECREF(bits);
            Py_XDECREF(pos);
            goto out;
        }
        memset(PyByteArray_AS_STRING(base), 0, (size_t)PyByteArray_GET_SIZE(base));
        memset(PyByteArray_AS_STRING(bits), 0, (size_t)PyByteArray_GET_SIZE(bits));
        memset(PyByteArray_AS_STRING(pos), 0, (size_t)PyByteArray_GET_SIZE(pos));
        PyList_SET_ITEM(outputs, j, Py_BuildValue("(NNN)", base, bits, pos));
        BuildTask *t = &tasks[j];
        t->hashes = hashes;
        t->id_start = id_start;
        t->n = n;
        t->removed = removed;
        t->removed_bits = removed_bits;
        t->k = k;
        t->w = w;
        t->start = (int)start;
        t->base = (uint32_t *)PyByteArray_AS_STRING(base);
        t->bits = (uint8_t *)PyByteArray_AS_STRING(bits);
        t->pos = (uint8_t *)PyByteArray_AS_STRING(pos);
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
    for (Py_ssize_t j = 0; j < m; j++) {
        if (tasks[j].failed) {
            PyErr_NoMemory();
            goto out;
        }
        /* Trim the entry array to what dedup kept. */
        PyObject *pos = PyTuple_GET_ITEM(PyList_GET_ITEM(outputs, j), 2);
        if (PyByteArray_Resize(pos, (Py_ssize_t)((tasks[j].entries * w) / 8 + 8)) < 0) goto out;
    }
    result = outputs;
    outputs = NULL;
out:
    Py_XDECREF(outputs);
    free(tasks);
    release_views(&views);
    Py_DECREF(starts);
    return result;
}

static PyMethodDef methods[] = {
    {"build", py_build, METH_VARARGS,
     "build(hashes, id_start, n, removed, starts, k, w, nthreads) -> [(base, bits, pos)]"},
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
    /* SAFESET_PDQ_PORTABLE=1 keeps the plain build (tests check it too). */
    const char *portable = getenv("SAFESET_PDQ_PORTABLE");
    __builtin_cpu_init();
    if (__builtin_cpu_supports("popcnt") && !(portable && portable[0] == '1')) run_chunk = run_chunk_popcnt;
#endif
    return PyModule_Create(&module);
}
