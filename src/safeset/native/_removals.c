/*
 * safeset._removals: the byte-moving loops of a removal list's index, in C.
 *
 * The Python side (safeset/removals/slotindex.py, spillruns.py) owns every
 * array, file and layout decision; these functions only move bytes between
 * buffers it hands over, with the GIL released.
 *
 * A *record* is one value of the list on its way into the index: the key
 * (key_size bytes: a digest, or a digest of a sample key) followed by a
 * 4-byte little-endian id relative to the run it sits in. A key's *prefix*
 * is its first 8 bytes read big-endian, so prefixes order like the keys.
 *
 * The index (see slotindex.py): keys sorted bytewise (ties by list row), the
 * list row of each, a fingerprint of each key (its 32 bits after the slot
 * bits) and a slot directory. Slot s = prefix >> (64 - slot_bits); its entry
 * holds where the slot starts, relative to the start of its 16-bit group
 * (groups[s >> (slot_bits - 16)]), in the low 32 bits, and in the high 32 a
 * filter: bit (fingerprint & 31) of each of its keys. Digests are uniform, so
 * a slot holds a handful of keys and most lookups that miss read the one
 * directory entry; the others read one line of fingerprints too, and a key
 * itself only when its fingerprint is equal.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ID_BYTES 4
#define GROUP_BITS 16
#define GROUPS (1 << GROUP_BITS)
#define INSERTION_MAX 24
#define LOOKUP_BLOCK 256

static inline uint64_t prefix_of(const uint8_t *key)
{
    uint64_t value;
    memcpy(&value, key, 8); /* little-endian hosts only: checked at import */
    return __builtin_bswap64(value);
}

/* The 32 bits of a key (at least 16 bytes) that follow its first slot_bits bits (16..63). */
static inline uint32_t fingerprint_of(const uint8_t *key, int slot_bits)
{
    const uint64_t high = prefix_of(key), low = prefix_of(key + 8);
    return (uint32_t)(((high << slot_bits) | (low >> (64 - slot_bits))) >> 32);
}

static inline uint32_t load_u32le(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static int writable(PyObject *obj, Py_buffer *view, const char *what)
{
    if (PyObject_GetBuffer(obj, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a writable contiguous buffer", what);
        return -1;
    }
    return 0;
}

static void release(Py_buffer *view)
{
    if (view->obj != NULL) PyBuffer_Release(view);
}

/* ------------------------------------------------------------------ pack */

PyDoc_STRVAR(pack_doc,
"pack(keys, key_size, present, first_id, out, at) -> int\n\n"
"Append the present rows of `keys` (n * key_size bytes) to `out` as records\n"
"(key, uint32 id = first_id + row), starting at record `at`; returns how many.\n"
"present: None (all rows) or n bytes, 0 = skip.");

static PyObject *removals_pack(PyObject *self, PyObject *args)
{
    Py_buffer keys = {0}, present = {0}, out = {0};
    PyObject *present_obj, *out_obj, *result = NULL;
    Py_ssize_t key_size, at, n, written = 0;
    unsigned long long first_id;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nOKOn", &keys, &key_size, &present_obj, &first_id, &out_obj, &at)) return NULL;
    if (writable(out_obj, &out, "out") < 0) goto done;
    if (key_size < 16 || keys.len % key_size != 0 || at < 0) {
        PyErr_SetString(PyExc_ValueError, "pack: bad key size or position");
        goto done;
    }
    n = keys.len / key_size;
    if (present_obj != Py_None) {
        if (PyObject_GetBuffer(present_obj, &present, PyBUF_SIMPLE) < 0) goto done;
        if (present.len != n) {
            PyErr_SetString(PyExc_ValueError, "pack: present has the wrong length");
            goto done;
        }
    }
    if (first_id + (unsigned long long)n > ((unsigned long long)1 << 32)) {
        PyErr_SetString(PyExc_OverflowError, "pack: ids past 2**32 in one run");
        goto done;
    }
    {
        const Py_ssize_t width = key_size + ID_BYTES;
        Py_ssize_t needed = n;
        if (present.obj != NULL) {
            const uint8_t *flags = (const uint8_t *)present.buf;
            needed = 0;
            for (Py_ssize_t i = 0; i < n; i++) needed += flags[i] != 0;
        }
        if ((at + needed) * width > out.len) {
            PyErr_SetString(PyExc_ValueError, "pack: out is too small");
            goto done;
        }
        Py_BEGIN_ALLOW_THREADS
        {
            const uint8_t *k = (const uint8_t *)keys.buf;
            const uint8_t *flags = present.obj != NULL ? (const uint8_t *)present.buf : NULL;
            uint8_t *dst = (uint8_t *)out.buf + at * width;
            for (Py_ssize_t i = 0; i < n; i++) {
                uint32_t id = (uint32_t)(first_id + (unsigned long long)i);
                if (flags != NULL && !flags[i]) continue;
                memcpy(dst, k + i * key_size, (size_t)key_size);
                dst[key_size] = (uint8_t)id;
                dst[key_size + 1] = (uint8_t)(id >> 8);
                dst[key_size + 2] = (uint8_t)(id >> 16);
                dst[key_size + 3] = (uint8_t)(id >> 24);
                dst += width;
                written++;
            }
        }
        Py_END_ALLOW_THREADS
    }
    result = PyLong_FromSsize_t(written);
done:
    release(&keys);
    release(&present);
    release(&out);
    return result;
}

/* --------------------------------------------------------- group records */

/* Stable counting sort of `count` records from src to dst by the key byte at `byte`, given where each
 * byte value's records start. Inlined for the usual widths so that the copy is a few moves, not a call. */
static inline void scatter_by_byte(const uint8_t *src, uint8_t *dst, Py_ssize_t count, Py_ssize_t width, int byte,
                                   Py_ssize_t *starts)
{
    for (Py_ssize_t i = 0; i < count; i++) {
        const uint8_t *record = src + i * width;
        memcpy(dst + starts[record[byte]]++ * width, record, (size_t)width);
    }
}

static void group_records(uint8_t *records, uint8_t *scratch, Py_ssize_t count, Py_ssize_t width, int64_t *counts)
{
    Py_ssize_t low[256] = {0}, high[256] = {0}, low_total = 0, high_total = 0;
    memset(counts, 0, GROUPS * sizeof(int64_t));
    for (Py_ssize_t i = 0; i < count; i++) counts[((unsigned)records[i * width] << 8) | records[i * width + 1]]++;
    for (int g = 0; g < GROUPS; g++) {
        low[g & 255] += counts[g];
        high[g >> 8] += counts[g];
    }
    for (int b = 0; b < 256; b++) {
        Py_ssize_t l = low[b], h = high[b];
        low[b] = low_total;
        high[b] = high_total;
        low_total += l;
        high_total += h;
    }
    /* Least significant byte first: two stable 256-way passes, each cache friendly. */
    switch (width) {
    case 20: /* MD5 */
        scatter_by_byte(records, scratch, count, 20, 1, low);
        scatter_by_byte(scratch, records, count, 20, 0, high);
        break;
    case 36: /* SHA-256 */
        scatter_by_byte(records, scratch, count, 36, 1, low);
        scatter_by_byte(scratch, records, count, 36, 0, high);
        break;
    default:
        scatter_by_byte(records, scratch, count, width, 1, low);
        scatter_by_byte(scratch, records, count, width, 0, high);
    }
}

PyDoc_STRVAR(group_doc,
"group(records, count, width, scratch, counts) -> None\n\n"
"Order the first `count` records (width bytes each) by their key's first 16\n"
"bits, stably, in place (scratch: as large as the records), and write how many\n"
"records each 16-bit group holds to `counts` (65536 int64).");

static PyObject *removals_group(PyObject *self, PyObject *args)
{
    Py_buffer records = {0}, scratch = {0}, counts = {0};
    PyObject *records_obj, *scratch_obj, *counts_obj, *result = NULL;
    Py_ssize_t count, width;
    (void)self;
    if (!PyArg_ParseTuple(args, "OnnOO", &records_obj, &count, &width, &scratch_obj, &counts_obj)) return NULL;
    if (writable(records_obj, &records, "records") < 0 || writable(scratch_obj, &scratch, "scratch") < 0
        || writable(counts_obj, &counts, "counts") < 0)
        goto done;
    if (width < 2 || count < 0 || count * width > records.len || count * width > scratch.len
        || counts.len != GROUPS * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "group: bad sizes");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    group_records((uint8_t *)records.buf, (uint8_t *)scratch.buf, count, width, (int64_t *)counts.buf);
    Py_END_ALLOW_THREADS
    Py_INCREF(Py_None);
    result = Py_None;
done:
    release(&records);
    release(&scratch);
    release(&counts);
    return result;
}

/* ------------------------------------------------------------ sort group */

/* One 16-bit group at a time: its records are gathered from every run (each
 * run holds them together, runs being ordered by group), ordered by slot with
 * a counting sort and within a slot by key and id, then written out. A group
 * is a few thousand records at most for any list of digests, so all of it
 * happens in cache. */

typedef struct {
    uint8_t *keys;
    uint64_t *prefixes;
    int64_t *ids;
    uint32_t *order, *scratch;
    Py_ssize_t key_size, capacity;
} GroupWork;

static int reserve(GroupWork *work, Py_ssize_t needed)
{
    if (needed <= work->capacity) return 0;
    Py_ssize_t capacity = work->capacity ? work->capacity : 1024;
    while (capacity < needed) capacity *= 2;
    uint8_t *keys = (uint8_t *)realloc(work->keys, (size_t)capacity * (size_t)work->key_size);
    if (keys != NULL) work->keys = keys;
    uint64_t *prefixes = (uint64_t *)realloc(work->prefixes, (size_t)capacity * sizeof(uint64_t));
    if (prefixes != NULL) work->prefixes = prefixes;
    int64_t *ids = (int64_t *)realloc(work->ids, (size_t)capacity * sizeof(int64_t));
    if (ids != NULL) work->ids = ids;
    uint32_t *order = (uint32_t *)realloc(work->order, (size_t)capacity * sizeof(uint32_t));
    if (order != NULL) work->order = order;
    uint32_t *scratch = (uint32_t *)realloc(work->scratch, (size_t)capacity * sizeof(uint32_t));
    if (scratch != NULL) work->scratch = scratch;
    if (keys == NULL || prefixes == NULL || ids == NULL || order == NULL || scratch == NULL) return -1;
    work->capacity = capacity;
    return 0;
}

static void free_work(GroupWork *work)
{
    free(work->keys);
    free(work->prefixes);
    free(work->ids);
    free(work->order);
    free(work->scratch);
}

static inline int before(const GroupWork *work, uint32_t a, uint32_t b)
{
    if (work->prefixes[a] != work->prefixes[b]) return work->prefixes[a] < work->prefixes[b];
    int order = memcmp(work->keys + (size_t)a * (size_t)work->key_size + 8,
                       work->keys + (size_t)b * (size_t)work->key_size + 8, (size_t)work->key_size - 8);
    return order < 0 || (order == 0 && work->ids[a] < work->ids[b]);
}

static void insertion_sort(const GroupWork *work, uint32_t *items, Py_ssize_t n)
{
    for (Py_ssize_t i = 1; i < n; i++) {
        uint32_t item = items[i];
        Py_ssize_t j = i;
        while (j > 0 && before(work, item, items[j - 1])) {
            items[j] = items[j - 1];
            j--;
        }
        items[j] = item;
    }
}

/* Stable merge sort of items[0..n) with scratch of n items (only crafted lists fill a slot this much). */
static void merge_sort(const GroupWork *work, uint32_t *items, uint32_t *scratch, Py_ssize_t n)
{
    if (n <= INSERTION_MAX) {
        insertion_sort(work, items, n);
        return;
    }
    Py_ssize_t half = n / 2, i = 0, j = half, k = 0;
    merge_sort(work, items, scratch, half);
    merge_sort(work, items + half, scratch + half, n - half);
    while (i < half && j < n) scratch[k++] = before(work, items[j], items[i]) ? items[j++] : items[i++];
    while (i < half) scratch[k++] = items[i++];
    while (j < n) scratch[k++] = items[j++];
    memcpy(items, scratch, (size_t)n * sizeof(uint32_t));
}

typedef struct {
    const uint8_t *at, *end;
    int64_t base;
} RunCursor;

static inline unsigned group_of(const uint8_t *key)
{
    return ((unsigned)key[0] << 8) | key[1];
}

enum { SORTED = 0, OUT_OF_MEMORY = 1, NOT_GROUPED = 2, GROUP_TOO_LARGE = 3 };

typedef struct {
    uint8_t *keys, *ids;
    uint32_t *fingerprints;
    uint64_t *slots;
    int64_t *groups;
    Py_ssize_t id_size;
} SortedOutput;

/* Sort groups [first_group, first_group + groups) of the runs into `out`. */
static int sort_groups(RunCursor *runs, Py_ssize_t run_count, Py_ssize_t key_size, int slot_bits,
                       unsigned first_group, Py_ssize_t groups, int64_t first_position, const SortedOutput *out,
                       int64_t *slot_starts)
{
    const Py_ssize_t width = key_size + ID_BYTES, slots_per_group = (Py_ssize_t)1 << (slot_bits - GROUP_BITS);
    const int shift = 64 - slot_bits;
    GroupWork work = {NULL, NULL, NULL, NULL, NULL, key_size, 0};
    int64_t position = 0;
    int status = SORTED;
    for (Py_ssize_t g = 0; g < groups && status == SORTED; g++) {
        const unsigned group = first_group + (unsigned)g;
        Py_ssize_t n = 0;
        for (Py_ssize_t j = 0; j < run_count; j++) {
            const uint8_t *p = runs[j].at;
            while (p < runs[j].end && group_of(p) == group) p += width;
            if (p < runs[j].end && group_of(p) < group) status = NOT_GROUPED;
            n += (p - runs[j].at) / width;
        }
        if (status != SORTED) break;
        if ((uint64_t)n > UINT32_MAX) { /* slot starts are 32-bit offsets into their group */
            status = GROUP_TOO_LARGE;
            break;
        }
        if (reserve(&work, n) < 0) {
            status = OUT_OF_MEMORY;
            break;
        }
        Py_ssize_t i = 0;
        for (Py_ssize_t j = 0; j < run_count; j++) {
            for (; runs[j].at < runs[j].end && group_of(runs[j].at) == group; runs[j].at += width, i++) {
                memcpy(work.keys + i * key_size, runs[j].at, (size_t)key_size);
                work.prefixes[i] = prefix_of(runs[j].at);
                work.ids[i] = runs[j].base + load_u32le(runs[j].at + key_size);
            }
        }
        memset(slot_starts, 0, (size_t)(slots_per_group + 1) * sizeof(int64_t));
        for (i = 0; i < n; i++) slot_starts[((work.prefixes[i] >> shift) & (slots_per_group - 1)) + 1]++;
        for (Py_ssize_t s = 0; s < slots_per_group; s++) slot_starts[s + 1] += slot_starts[s];
        out->groups[g] = first_position + position;
        for (i = 0; i < n; i++) work.order[slot_starts[(work.prefixes[i] >> shift) & (slots_per_group - 1)]++] = (uint32_t)i;
        Py_ssize_t from = 0;
        for (Py_ssize_t s = 0; s < slots_per_group; s++) { /* slot_starts[s] now ends slot s */
            if (slot_starts[s] - from > 1) merge_sort(&work, work.order + from, work.scratch, slot_starts[s] - from);
            from = slot_starts[s];
        }
        for (i = 0; i < n; i++) {
            const uint32_t at = work.order[i];
            const uint8_t *key = work.keys + (size_t)at * (size_t)key_size;
            memcpy(out->keys + (position + i) * key_size, key, (size_t)key_size);
            out->fingerprints[position + i] = fingerprint_of(key, slot_bits);
            if (out->id_size == 8) {
                memcpy(out->ids + (position + i) * 8, &work.ids[at], 8);
            } else {
                const uint32_t narrow = (uint32_t)work.ids[at];
                memcpy(out->ids + (position + i) * 4, &narrow, 4);
            }
        }
        for (Py_ssize_t s = 0, begin = 0; s < slots_per_group; s++) { /* slot_starts[s] ends slot s */
            uint32_t filter = 0;
            for (Py_ssize_t p = begin; p < slot_starts[s]; p++) filter |= (uint32_t)1 << (out->fingerprints[position + p] & 31);
            out->slots[g * slots_per_group + s] = ((uint64_t)filter << 32) | (uint64_t)begin;
            begin = slot_starts[s];
        }
        position += n;
    }
    for (Py_ssize_t j = 0; j < run_count && status == SORTED; j++)
        if (runs[j].at != runs[j].end) status = NOT_GROUPED; /* records of groups past the range */
    free_work(&work);
    return status;
}

PyDoc_STRVAR(sort_group_doc,
"sort_group(records, key_size, run_counts, run_bases, slot_bits, first_slot, first_position,\n"
"           keys_out, ids_out, id_size, fingerprints_out, slots_out, groups_out) -> None\n\n"
"Sort a range of 16-bit groups into its part of an index. `records` holds the\n"
"range's records of each run in turn (run_counts[j] of run j, ordered by group,\n"
"ids relative to run_bases[j]). Writes the keys in order (bytewise, ties by id),\n"
"their absolute ids (id_size 4 or 8 bytes, little-endian), their fingerprints\n"
"(uint32), the directory entry of each slot first_slot + i of the range (uint64)\n"
"and where each of the range's groups starts (int64, from first_position on).");

static PyObject *removals_sort_group(PyObject *self, PyObject *args)
{
    Py_buffer records = {0}, run_counts = {0}, run_bases = {0}, keys_out = {0}, ids_out = {0}, directory = {0};
    Py_buffer fingerprints = {0}, groups_out = {0};
    PyObject *keys_obj, *ids_obj, *fingerprints_obj, *directory_obj, *groups_obj, *result = NULL;
    Py_ssize_t key_size, id_size, count, runs, slots, slots_per_group;
    int slot_bits, status = SORTED;
    long long first_slot, first_position;
    RunCursor *cursors = NULL;
    int64_t *slot_starts = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*ny*y*iLLOOnOOO", &records, &key_size, &run_counts, &run_bases, &slot_bits,
                          &first_slot, &first_position, &keys_obj, &ids_obj, &id_size, &fingerprints_obj,
                          &directory_obj, &groups_obj))
        return NULL;
    if (writable(keys_obj, &keys_out, "keys_out") < 0 || writable(ids_obj, &ids_out, "ids_out") < 0
        || writable(fingerprints_obj, &fingerprints, "fingerprints_out") < 0
        || writable(directory_obj, &directory, "slots_out") < 0 || writable(groups_obj, &groups_out, "groups_out") < 0)
        goto done;
    if (key_size < 16 || records.len % (key_size + ID_BYTES) != 0 || (id_size != 4 && id_size != 8)
        || slot_bits < GROUP_BITS || slot_bits > 63 || run_counts.len != run_bases.len || run_counts.len % 8 != 0
        || directory.len % 8 != 0 || first_slot < 0) {
        PyErr_SetString(PyExc_ValueError, "sort_group: bad sizes");
        goto done;
    }
    count = records.len / (key_size + ID_BYTES);
    runs = run_counts.len / 8;
    slots = directory.len / 8;
    slots_per_group = (Py_ssize_t)1 << (slot_bits - GROUP_BITS);
    if (slots % slots_per_group != 0 || first_slot % slots_per_group != 0
        || first_slot / slots_per_group + slots / slots_per_group > GROUPS
        || groups_out.len != (slots / slots_per_group) * (Py_ssize_t)sizeof(int64_t)) {
        PyErr_SetString(PyExc_ValueError, "sort_group: the slots are not whole groups");
        goto done;
    }
    if (keys_out.len != count * key_size || ids_out.len != count * id_size
        || fingerprints.len != count * (Py_ssize_t)sizeof(uint32_t)) {
        PyErr_SetString(PyExc_ValueError, "sort_group: outputs do not fit the records");
        goto done;
    }
    cursors = (RunCursor *)malloc((size_t)(runs > 0 ? runs : 1) * sizeof(RunCursor));
    slot_starts = (int64_t *)malloc((size_t)(slots_per_group + 1) * sizeof(int64_t));
    if (cursors == NULL || slot_starts == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    {
        const int64_t *counts = (const int64_t *)run_counts.buf, *bases = (const int64_t *)run_bases.buf;
        const uint8_t *at = (const uint8_t *)records.buf;
        Py_ssize_t total = 0;
        for (Py_ssize_t j = 0; j < runs; j++) {
            if (counts[j] < 0 || counts[j] > count - total) {
                PyErr_SetString(PyExc_ValueError, "sort_group: run counts do not add up to the records");
                goto done;
            }
            cursors[j].at = at + total * (key_size + ID_BYTES);
            total += counts[j];
            cursors[j].end = at + total * (key_size + ID_BYTES);
            cursors[j].base = bases[j];
        }
        if (total != count) {
            PyErr_SetString(PyExc_ValueError, "sort_group: run counts do not add up to the records");
            goto done;
        }
    }
    {
        const SortedOutput out = {(uint8_t *)keys_out.buf, (uint8_t *)ids_out.buf, (uint32_t *)fingerprints.buf,
                                  (uint64_t *)directory.buf, (int64_t *)groups_out.buf, id_size};
        Py_BEGIN_ALLOW_THREADS
        status = sort_groups(cursors, runs, key_size, slot_bits, (unsigned)(first_slot / slots_per_group),
                             slots / slots_per_group, first_position, &out, slot_starts);
        Py_END_ALLOW_THREADS
    }
    if (status == OUT_OF_MEMORY) {
        PyErr_NoMemory();
        goto done;
    }
    if (status == GROUP_TOO_LARGE) {
        PyErr_SetString(PyExc_ValueError, "sort_group: a 16-bit group holds 2**32 keys or more");
        goto done;
    }
    if (status == NOT_GROUPED) {
        PyErr_SetString(PyExc_ValueError, "sort_group: a run is not ordered by group, or holds groups outside the range");
        goto done;
    }
    Py_INCREF(Py_None);
    result = Py_None;
done:
    free(cursors);
    free(slot_starts);
    release(&records);
    release(&run_counts);
    release(&run_bases);
    release(&keys_out);
    release(&ids_out);
    release(&fingerprints);
    release(&directory);
    release(&groups_out);
    return result;
}

/* ---------------------------------------------------------------- lookup */

typedef struct {
    int64_t *items;
    Py_ssize_t length, capacity;
} Growing;

static int append(Growing *list, int64_t value)
{
    if (list->length == list->capacity) {
        Py_ssize_t capacity = list->capacity ? list->capacity * 2 : 64;
        int64_t *items = (int64_t *)realloc(list->items, (size_t)capacity * sizeof(int64_t));
        if (items == NULL) return -1;
        list->items = items;
        list->capacity = capacity;
    }
    list->items[list->length++] = value;
    return 0;
}

typedef struct {
    const uint8_t *keys, *ids;
    const uint32_t *fingerprints;
    const uint64_t *slots;
    const int64_t *groups;
    Py_ssize_t key_size, id_size, entries;
    int slot_bits;
} SlotTable;

enum { LOOKED_UP = 0, DAMAGED = 1, NO_MEMORY = 2 };

/* Queries a block at a time: first every query's directory entry (all of the
 * block's prefetches issued before the first is read, so their cache misses
 * overlap); then, for the few whose slot filter has their bit, where the slot
 * lies, fetching the start of its fingerprints; then the comparisons, on data
 * already in cache. */
static int lookup_all(const SlotTable *table, const uint8_t *queries, const uint8_t *flags, Py_ssize_t n,
                      Growing *rows, Growing *found)
{
    const Py_ssize_t L = table->key_size, entries = table->entries;
    const uint64_t *const slots = table->slots;
    const uint32_t *const fingerprints = table->fingerprints;
    const int shift = 64 - table->slot_bits, group_shift = table->slot_bits - GROUP_BITS;
    uint64_t slot[LOOKUP_BLOCK], entry[LOOKUP_BLOCK];
    uint32_t wanted[LOOKUP_BLOCK];
    int64_t lo[LOOKUP_BLOCK], hi[LOOKUP_BLOCK];
    Py_ssize_t which[LOOKUP_BLOCK];
    for (Py_ssize_t start = 0; start < n; start += LOOKUP_BLOCK) {
        const Py_ssize_t m = n - start < LOOKUP_BLOCK ? n - start : LOOKUP_BLOCK;
        for (Py_ssize_t b = 0; b < m; b++) {
            const uint8_t *query = queries + (start + b) * L;
            slot[b] = prefix_of(query) >> shift;
            wanted[b] = fingerprint_of(query, table->slot_bits);
            __builtin_prefetch(slots + slot[b]); /* all of the block's misses in flight before the first use */
        }
        for (Py_ssize_t b = 0; b < m; b++) entry[b] = slots[slot[b]];
        Py_ssize_t candidates = 0;
        for (Py_ssize_t b = 0; b < m; b++) {
            const int maybe = (int)((entry[b] >> (32 + (wanted[b] & 31))) & 1) && (flags == NULL || flags[start + b]);
            if (!maybe) continue;
            const uint64_t s = slot[b];
            lo[candidates] = table->groups[s >> group_shift] + (int64_t)(uint32_t)entry[b];
            hi[candidates] = table->groups[(s + 1) >> group_shift] + (int64_t)(uint32_t)slots[s + 1];
            if (lo[candidates] < 0 || hi[candidates] > entries || lo[candidates] > hi[candidates]) return DAMAGED;
            __builtin_prefetch(fingerprints + (lo[candidates] < entries ? lo[candidates] : 0));
            which[candidates++] = b;
        }
        for (Py_ssize_t c = 0; c < candidates; c++) {
            const Py_ssize_t b = which[c];
            const uint8_t *query = queries + (start + b) * L;
            for (int64_t p = lo[c]; p < hi[c] && fingerprints[p] <= wanted[b]; p++) {
                if (fingerprints[p] != wanted[b] || memcmp(table->keys + p * L, query, (size_t)L) != 0) continue;
                int64_t id;
                if (table->id_size == 8) {
                    memcpy(&id, table->ids + p * 8, 8);
                } else {
                    uint32_t narrow;
                    memcpy(&narrow, table->ids + p * 4, 4);
                    id = narrow;
                }
                if (append(rows, start + b) < 0 || append(found, id) < 0) return NO_MEMORY;
            }
        }
    }
    return LOOKED_UP;
}

PyDoc_STRVAR(lookup_doc,
"lookup(queries, key_size, valid, keys, ids, id_size, fingerprints, slots, groups, slot_bits) -> (rows, ids)\n\n"
"Every (query row, id) whose query equals an indexed key, rows ascending, as\n"
"two bytes objects of int64. valid: None or one byte per query, 0 = skip.");

static PyObject *removals_lookup(PyObject *self, PyObject *args)
{
    Py_buffer queries = {0}, valid = {0}, keys = {0}, ids = {0}, fingerprints = {0}, directory = {0}, groups = {0};
    PyObject *valid_obj, *result = NULL;
    Py_ssize_t key_size, id_size, n, entries, slots;
    int slot_bits, failed = 0;
    Growing rows = {0}, found = {0};
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nOy*y*ny*y*y*i", &queries, &key_size, &valid_obj, &keys, &ids, &id_size,
                          &fingerprints, &directory, &groups, &slot_bits))
        return NULL;
    if (key_size < 16 || queries.len % key_size != 0 || keys.len % key_size != 0 || (id_size != 4 && id_size != 8)
        || slot_bits < GROUP_BITS || slot_bits > 63 || directory.len != (((Py_ssize_t)1 << slot_bits) + 1) * 8) {
        PyErr_SetString(PyExc_ValueError, "lookup: bad key size, ids or directory");
        goto done;
    }
    n = queries.len / key_size;
    entries = keys.len / key_size;
    slots = (Py_ssize_t)1 << slot_bits;
    if (ids.len != entries * id_size || fingerprints.len != entries * (Py_ssize_t)sizeof(uint32_t)
        || groups.len != (GROUPS + 1) * (Py_ssize_t)sizeof(int64_t) || ((const int64_t *)groups.buf)[GROUPS] != entries
        || ((const uint64_t *)directory.buf)[slots] != 0) {
        PyErr_SetString(PyExc_ValueError, "lookup: keys, ids, fingerprints and directory do not agree");
        goto done;
    }
    if (valid_obj != Py_None) {
        if (PyObject_GetBuffer(valid_obj, &valid, PyBUF_SIMPLE) < 0) goto done;
        if (valid.len != n) {
            PyErr_SetString(PyExc_ValueError, "lookup: valid has the wrong length");
            goto done;
        }
    }
    {
        const SlotTable table = {(const uint8_t *)keys.buf, (const uint8_t *)ids.buf,
                                 (const uint32_t *)fingerprints.buf, (const uint64_t *)directory.buf,
                                 (const int64_t *)groups.buf, key_size, id_size, entries, slot_bits};
        const uint8_t *flags = valid.obj != NULL ? (const uint8_t *)valid.buf : NULL;
        Py_BEGIN_ALLOW_THREADS
        failed = lookup_all(&table, (const uint8_t *)queries.buf, flags, n, &rows, &found);
        Py_END_ALLOW_THREADS
    }
    if (failed == DAMAGED) {
        PyErr_SetString(PyExc_ValueError, "lookup: the directory points outside the keys (index damaged?)");
    } else if (failed == NO_MEMORY) {
        PyErr_NoMemory();
    } else {
        /* y# turns a NULL pointer into None: an empty result must still be bytes. */
        result = Py_BuildValue("(y#y#)", rows.items ? (const char *)rows.items : "",
                               rows.length * (Py_ssize_t)sizeof(int64_t),
                               found.items ? (const char *)found.items : "",
                               found.length * (Py_ssize_t)sizeof(int64_t));
    }
done:
    free(rows.items);
    free(found.items);
    release(&queries);
    release(&valid);
    release(&keys);
    release(&ids);
    release(&fingerprints);
    release(&directory);
    release(&groups);
    return result;
}

static PyMethodDef removals_methods[] = {
    {"pack", removals_pack, METH_VARARGS, pack_doc},
    {"group", removals_group, METH_VARARGS, group_doc},
    {"sort_group", removals_sort_group, METH_VARARGS, sort_group_doc},
    {"lookup", removals_lookup, METH_VARARGS, lookup_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef removals_module = {
    PyModuleDef_HEAD_INIT, "safeset._removals",
    "A removal list's index: records into runs, runs into sorted keys, lookups (see safeset.removals).", -1,
    removals_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__removals(void)
{
    const uint16_t probe = 1;
    if (*(const uint8_t *)&probe != 1) {
        PyErr_SetString(PyExc_ImportError, "safeset._removals assumes a little-endian machine");
        return NULL;
    }
    return PyModule_Create(&removals_module);
}
