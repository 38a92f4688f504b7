/* safeset._parquetpages: parquet pages of flat BYTE_ARRAY columns, straight to Arrow buffers.
 *
 * A scan reads a dataset's URL and digest columns and nothing else. pyarrow
 * decodes them value by value into a builder, after copying the file into
 * memory; here the pages are parsed in place and each value is copied once,
 * into the Arrow layout (offsets, data, validity). The Python side
 * (safeset.datasets.parquet_pages) reads the column chunk, decompresses each
 * page with Arrow's codecs and falls back to pyarrow for anything this code
 * does not handle: it handles flat columns (no repetition, at most one
 * definition level), PLAIN and dictionary encodings, data pages v1 and v2.
 *
 * Everything read from the file is bounds-checked: corrupt input raises
 * ValueError with the page and what was wrong, never reads out of bounds.
 *
 *   page_headers(chunk) -> [(page_type, data_start, compressed_size, uncompressed_size,
 *                            num_values, encoding, definition_level_encoding,
 *                            v2_definition_levels_length, v2_repetition_levels_length,
 *                            v2_is_compressed), ...]
 *   ByteArrayDecoder(max_definition_level, rows, large_offsets, size_hint)
 *       .set_dictionary(page, num_values), .add_page(...) per data page,
 *       .finish() -> (validity | None, offsets, data, null_count)
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { PAGE_DATA = 0, PAGE_INDEX = 1, PAGE_DICTIONARY = 2, PAGE_DATA_V2 = 3 };
enum { ENC_PLAIN = 0, ENC_PLAIN_DICTIONARY = 2, ENC_RLE = 3, ENC_RLE_DICTIONARY = 8 };
enum { MAX_NESTING = 32 };

/* ======================================================================
 * 1. Thrift compact protocol: just enough to read a PageHeader
 * ====================================================================== */

typedef struct {
    const uint8_t *p, *end;
    const char *error; /* first problem found, NULL if none */
} Reader;

enum {
    T_STOP = 0, T_TRUE = 1, T_FALSE = 2, T_BYTE = 3, T_I16 = 4, T_I32 = 5, T_I64 = 6,
    T_DOUBLE = 7, T_BINARY = 8, T_LIST = 9, T_SET = 10, T_MAP = 11, T_STRUCT = 12
};

static void fail(Reader *r, const char *why)
{
    if (r->error == NULL) r->error = why;
    r->p = r->end;
}

static uint64_t read_varint(Reader *r)
{
    uint64_t value = 0;
    int shift = 0;
    while (r->p < r->end) {
        uint8_t byte = *r->p++;
        value |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) return value;
        shift += 7;
        if (shift > 63) break;
    }
    fail(r, "truncated or overlong varint in a page header");
    return 0;
}

static int64_t read_zigzag(Reader *r)
{
    uint64_t raw = read_varint(r);
    return (int64_t)(raw >> 1) ^ -(int64_t)(raw & 1);
}

static int32_t read_i32(Reader *r)
{
    int64_t value = read_zigzag(r);
    if (value < INT32_MIN || value > INT32_MAX) {
        fail(r, "32-bit field out of range in a page header");
        return 0;
    }
    return (int32_t)value;
}

static void skip_bytes(Reader *r, uint64_t n)
{
    if ((uint64_t)(r->end - r->p) < n) {
        fail(r, "page header field runs past the column chunk");
        return;
    }
    r->p += n;
}

static void skip_value(Reader *r, int type, int depth);

static void skip_struct(Reader *r, int depth)
{
    int16_t field = 0;
    if (depth > MAX_NESTING) {
        fail(r, "page header nested too deeply");
        return;
    }
    while (r->p < r->end && r->error == NULL) {
        uint8_t header = *r->p++;
        int type = header & 0x0f;
        if (type == T_STOP) return;
        /* field ids are not needed to skip, but a long-form id must be read past */
        field = (header >> 4) ? (int16_t)(field + (header >> 4)) : (int16_t)read_zigzag(r);
        (void)field;
        skip_value(r, type, depth + 1);
    }
    fail(r, "truncated page header");
}

static void skip_value(Reader *r, int type, int depth)
{
    switch (type) {
    case T_TRUE:
    case T_FALSE:
        return; /* the value is in the type nibble */
    case T_BYTE:
        skip_bytes(r, 1);
        return;
    case T_I16:
    case T_I32:
    case T_I64:
        (void)read_varint(r);
        return;
    case T_DOUBLE:
        skip_bytes(r, 8);
        return;
    case T_BINARY:
        skip_bytes(r, read_varint(r));
        return;
    case T_LIST:
    case T_SET: {
        uint8_t header;
        uint64_t size, k;
        int element;
        if (r->p >= r->end) break;
        header = *r->p++;
        size = header >> 4;
        element = header & 0x0f;
        if (size == 15) size = read_varint(r);
        if (depth > MAX_NESTING) break;
        for (k = 0; k < size && r->error == NULL; k++) {
            if (element == T_TRUE || element == T_FALSE)
                skip_bytes(r, 1); /* booleans in a list are one byte each */
            else
                skip_value(r, element, depth + 1);
        }
        return;
    }
    case T_MAP: {
        uint64_t size = read_varint(r), k;
        int key_type, value_type;
        if (size == 0) return;
        if (r->p >= r->end || depth > MAX_NESTING) break;
        key_type = *r->p >> 4;
        value_type = *r->p & 0x0f;
        r->p++;
        for (k = 0; k < size && r->error == NULL; k++) {
            skip_value(r, key_type, depth + 1);
            skip_value(r, value_type, depth + 1);
        }
        return;
    }
    case T_STRUCT:
        skip_struct(r, depth + 1);
        return;
    default:
        break;
    }
    fail(r, "unknown or malformed field type in a page header");
}

typedef struct {
    int32_t type, uncompressed_size, compressed_size;
    int32_t num_values, encoding, definition_level_encoding;
    int32_t v2_definition_levels_length, v2_repetition_levels_length;
    int v2_is_compressed;
    int have_type, have_sizes, have_values;
} PageHeader;

/* DataPageHeader, DictionaryPageHeader or DataPageHeaderV2 (fields 5, 7, 8 of PageHeader). */
static void read_page_kind(Reader *r, PageHeader *page, int which)
{
    int16_t field = 0;
    while (r->p < r->end && r->error == NULL) {
        uint8_t header = *r->p++;
        int type = header & 0x0f;
        if (type == T_STOP) return;
        field = (header >> 4) ? (int16_t)(field + (header >> 4)) : (int16_t)read_zigzag(r);
        if (which == 8 && field == 7 && (type == T_TRUE || type == T_FALSE)) {
            page->v2_is_compressed = type == T_TRUE;
        } else if (type == T_I32 && field == 1) {
            page->num_values = read_i32(r);
            page->have_values = 1;
        } else if (type == T_I32 && ((which != 8 && field == 2) || (which == 8 && field == 4))) {
            page->encoding = read_i32(r);
        } else if (type == T_I32 && which == 5 && field == 3) {
            page->definition_level_encoding = read_i32(r);
        } else if (type == T_I32 && which == 8 && field == 5) {
            page->v2_definition_levels_length = read_i32(r);
        } else if (type == T_I32 && which == 8 && field == 6) {
            page->v2_repetition_levels_length = read_i32(r);
        } else {
            skip_value(r, type, 1);
        }
    }
    fail(r, "truncated page header");
}

static void read_page_header(Reader *r, PageHeader *page)
{
    int16_t field = 0;
    memset(page, 0, sizeof(*page));
    page->encoding = -1;
    page->definition_level_encoding = ENC_RLE;
    page->v2_is_compressed = 1;
    while (r->p < r->end && r->error == NULL) {
        uint8_t header = *r->p++;
        int type = header & 0x0f;
        if (type == T_STOP) {
            if (!page->have_type || page->have_sizes != 3) fail(r, "page header lacks its type or sizes");
            return;
        }
        field = (header >> 4) ? (int16_t)(field + (header >> 4)) : (int16_t)read_zigzag(r);
        if (type == T_I32 && field == 1) {
            page->type = read_i32(r);
            page->have_type = 1;
        } else if (type == T_I32 && field == 2) {
            page->uncompressed_size = read_i32(r);
            page->have_sizes |= 1;
        } else if (type == T_I32 && field == 3) {
            page->compressed_size = read_i32(r);
            page->have_sizes |= 2;
        } else if (type == T_STRUCT && (field == 5 || field == 7 || field == 8)) {
            read_page_kind(r, page, field);
        } else {
            skip_value(r, type, 1);
        }
    }
    fail(r, "truncated page header");
}

PyDoc_STRVAR(page_headers_doc,
"page_headers(chunk) -> list of (page_type, data_start, compressed_size, uncompressed_size,\n"
"    num_values, encoding, definition_level_encoding, v2_definition_levels_length,\n"
"    v2_repetition_levels_length, v2_is_compressed)\n\n"
"Every page header of a column chunk (its bytes, from the first page on).\n"
"data_start is the offset of the page's data in chunk. ValueError names the\n"
"byte where a header is malformed or a page runs past the chunk.");

static PyObject *page_headers(PyObject *self, PyObject *args)
{
    Py_buffer chunk;
    PyObject *pages;
    Reader r;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*", &chunk)) return NULL;
    pages = PyList_New(0);
    if (pages == NULL) goto done;
    r.p = (const uint8_t *)chunk.buf;
    r.end = r.p + chunk.len;
    r.error = NULL;
    while (r.p < r.end) {
        PageHeader page;
        Py_ssize_t at = (Py_ssize_t)(r.p - (const uint8_t *)chunk.buf), data_start;
        PyObject *item;
        int appended;
        read_page_header(&r, &page);
        if (r.error == NULL && (page.compressed_size < 0 || page.uncompressed_size < 0 || page.num_values < 0 ||
                                page.v2_definition_levels_length < 0 || page.v2_repetition_levels_length < 0))
            fail(&r, "negative size or count in a page header");
        if (r.error == NULL && (r.end - r.p) < page.compressed_size) fail(&r, "page runs past the column chunk");
        if (r.error != NULL) {
            PyErr_Format(PyExc_ValueError, "byte %zd of the column chunk: %s", at, r.error);
            Py_CLEAR(pages);
            goto done;
        }
        data_start = (Py_ssize_t)(r.p - (const uint8_t *)chunk.buf);
        r.p += page.compressed_size;
        item = Py_BuildValue("(inniiiiiii)", page.type, data_start, (Py_ssize_t)page.compressed_size,
                             (Py_ssize_t)page.uncompressed_size, page.num_values, page.encoding,
                             page.definition_level_encoding, page.v2_definition_levels_length,
                             page.v2_repetition_levels_length, page.v2_is_compressed);
        if (item == NULL) {
            Py_CLEAR(pages);
            goto done;
        }
        appended = PyList_Append(pages, item);
        Py_DECREF(item);
        if (appended < 0) {
            Py_CLEAR(pages);
            goto done;
        }
    }
done:
    PyBuffer_Release(&chunk);
    return pages;
}

/* ======================================================================
 * 2. A buffer Arrow can wrap without a copy
 * ====================================================================== */

typedef struct {
    PyObject_HEAD
    uint8_t *bytes;
    Py_ssize_t size;
    Py_ssize_t exports;
} OwnedBuffer;

static void owned_dealloc(OwnedBuffer *self)
{
    free(self->bytes);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int owned_getbuffer(OwnedBuffer *self, Py_buffer *view, int flags)
{
    int result = PyBuffer_FillInfo(view, (PyObject *)self, self->bytes ? self->bytes : (uint8_t *)"", self->size, 0,
                                   flags);
    if (result == 0) self->exports++;
    return result;
}

static void owned_releasebuffer(OwnedBuffer *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
}

static PyBufferProcs owned_as_buffer = {(getbufferproc)owned_getbuffer, (releasebufferproc)owned_releasebuffer};

static PyTypeObject OwnedBufferType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "safeset._parquetpages.OwnedBuffer",
    .tp_basicsize = sizeof(OwnedBuffer),
    .tp_dealloc = (destructor)owned_dealloc,
    .tp_as_buffer = &owned_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Memory filled by decode_byte_arrays; freed with the object.",
};

/* Takes ownership of bytes (malloc'd) whatever happens. */
static PyObject *owned_buffer(uint8_t *bytes, Py_ssize_t size)
{
    OwnedBuffer *self = PyObject_New(OwnedBuffer, &OwnedBufferType);
    if (self == NULL) {
        free(bytes);
        return NULL;
    }
    self->bytes = bytes;
    self->size = size;
    self->exports = 0;
    return (PyObject *)self;
}

/* ======================================================================
 * 3. Decoding
 * ====================================================================== */

typedef struct {
    uint8_t *bytes;
    size_t used, capacity;
} Growable;

static int grow(Growable *g, size_t extra)
{
    size_t wanted = g->used + extra, capacity;
    uint8_t *bigger;
    if (wanted <= g->capacity) return 0;
    capacity = g->capacity ? g->capacity : 4096;
    while (capacity < wanted) capacity += capacity / 2 + 4096;
    bigger = (uint8_t *)realloc(g->bytes, capacity);
    if (bigger == NULL) return -1;
    g->bytes = bigger;
    g->capacity = capacity;
    return 0;
}

/* RLE / bit-packed hybrid (parquet's levels and dictionary indices). */
typedef struct {
    const uint8_t *p, *end;
    int bit_width;
    uint32_t run_value;
    uint64_t run_left;    /* values left in an RLE run */
    uint64_t packed_left; /* values left in a bit-packed run */
    uint64_t packed_bit;  /* bit position in the packed run */
    const uint8_t *packed;
    const char *error;
} Hybrid;

static void hybrid_start(Hybrid *h, const uint8_t *p, size_t n, int bit_width)
{
    memset(h, 0, sizeof(*h));
    h->p = p;
    h->end = p + n;
    h->bit_width = bit_width;
}

static int hybrid_next_run(Hybrid *h)
{
    Reader r = {h->p, h->end, NULL};
    uint64_t header = read_varint(&r);
    if (r.error != NULL) {
        h->error = "truncated run in levels or dictionary indices";
        return -1;
    }
    h->p = r.p;
    if (header & 1) {
        uint64_t groups = header >> 1, bytes = groups * (uint64_t)h->bit_width;
        if (groups == 0 || groups > ((uint64_t)1 << 40) || (uint64_t)(h->end - h->p) < bytes) {
            h->error = "bit-packed run runs past its data";
            return -1;
        }
        h->packed = h->p;
        h->packed_left = groups * 8;
        h->packed_bit = 0;
        h->p += bytes;
    } else {
        int value_bytes = (h->bit_width + 7) / 8, k;
        h->run_left = header >> 1;
        if (h->run_left == 0) {
            h->error = "empty run in levels or dictionary indices";
            return -1;
        }
        if (h->end - h->p < value_bytes) {
            h->error = "run value runs past its data";
            return -1;
        }
        h->run_value = 0;
        for (k = 0; k < value_bytes; k++) h->run_value |= (uint32_t)h->p[k] << (8 * k);
        h->p += value_bytes;
    }
    return 0;
}

/* The next value; -1 on error. */
static inline int64_t hybrid_next(Hybrid *h)
{
    if (h->run_left == 0 && h->packed_left == 0 && hybrid_next_run(h) < 0) return -1;
    if (h->run_left) {
        h->run_left--;
        return h->run_value;
    }
    {
        uint64_t bit = h->packed_bit, value = 0;
        int taken = 0;
        while (taken < h->bit_width) {
            int in_byte = (int)(bit & 7), take = 8 - in_byte;
            if (take > h->bit_width - taken) take = h->bit_width - taken;
            value |= (uint64_t)((h->packed[bit >> 3] >> in_byte) & ((1u << take) - 1)) << taken;
            taken += take;
            bit += (uint64_t)take;
        }
        h->packed_bit = bit;
        h->packed_left--;
        return (int64_t)value;
    }
}

/* Definition levels of one page into the validity bitmap at rows [first, first + count).
 * Returns the number of non-null values, or -1 with *error set. */
static int64_t decode_definition_levels(const uint8_t *levels, size_t n, uint8_t *validity, int64_t first,
                                        int64_t count, const char **error)
{
    Hybrid h;
    int64_t k = 0, present = 0;
    hybrid_start(&h, levels, n, 1);
    while (k < count) {
        if (h.run_left == 0 && h.packed_left == 0 && hybrid_next_run(&h) < 0) {
            *error = h.error;
            return -1;
        }
        if (h.run_left) { /* a run of equal levels: set or clear bits a byte at a time where possible */
            int64_t take = (int64_t)h.run_left < count - k ? (int64_t)h.run_left : count - k, j = 0;
            if (h.run_value > 1) {
                *error = "definition level above the column's maximum";
                return -1;
            }
            if (h.run_value) {
                int64_t row = first + k;
                for (; j < take && (row + j) % 8; j++) validity[(row + j) >> 3] |= (uint8_t)(1u << ((row + j) & 7));
                if (take - j >= 8) {
                    memset(validity + ((row + j) >> 3), 0xff, (size_t)((take - j) / 8));
                    j += (take - j) / 8 * 8;
                }
                for (; j < take; j++) validity[(row + j) >> 3] |= (uint8_t)(1u << ((row + j) & 7));
                present += take;
            }
            h.run_left -= (uint64_t)take;
            k += take;
        } else {
            int64_t value = hybrid_next(&h);
            if (value) {
                validity[(first + k) >> 3] |= (uint8_t)(1u << ((first + k) & 7));
                present++;
            }
            k++;
        }
    }
    return present;
}

typedef struct {
    const uint8_t *p;
    uint32_t n;
} Value;

static inline uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* A column chunk being decoded, page by page, into Arrow buffers. Pages are
 * handed over one at a time, so each is decoded while it is still in cache
 * and its memory can be reused for the next. */
typedef struct {
    PyObject_HEAD
    int max_definition_level, large, failed;
    int64_t rows, row, null_count, used;
    uint8_t *validity;
    uint8_t *offsets;
    Growable data;
    Py_buffer dictionary_view;
    int have_dictionary;
    Value *dictionary;
    int64_t dictionary_count;
} Decoder;

static void decoder_dealloc(Decoder *d)
{
    free(d->validity);
    free(d->offsets);
    free(d->data.bytes);
    free(d->dictionary);
    if (d->have_dictionary) PyBuffer_Release(&d->dictionary_view);
    Py_TYPE(d)->tp_free((PyObject *)d);
}

static int decoder_init(Decoder *d, PyObject *args, PyObject *kwargs)
{
    long long rows, size_hint;
    (void)kwargs;
    if (!PyArg_ParseTuple(args, "iLpL", &d->max_definition_level, &rows, &d->large, &size_hint)) return -1;
    if (d->max_definition_level < 0 || d->max_definition_level > 1 || rows < 0 || size_hint < 0) {
        PyErr_SetString(PyExc_ValueError, "ByteArrayDecoder: flat columns only (definition level 0 or 1)");
        return -1;
    }
    if (d->validity != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ByteArrayDecoder: already initialised");
        return -1;
    }
    d->rows = rows;
    d->validity = (uint8_t *)calloc((size_t)(rows / 8 + 1), 1);
    d->offsets = (uint8_t *)malloc((size_t)(rows + 1) * (d->large ? 8 : 4));
    if (d->validity == NULL || d->offsets == NULL || grow(&d->data, (size_t)size_hint) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static inline void put_offset(Decoder *d, int64_t row, int64_t value)
{
    if (d->large)
        ((int64_t *)d->offsets)[row] = value;
    else
        ((int32_t *)d->offsets)[row] = (int32_t)value;
}

static inline int is_set(const uint8_t *bits, int64_t k)
{
    return (bits[k >> 3] >> (k & 7)) & 1;
}

/* Append one value (row `row`), growing the data when needed. */
static inline int append_value(Decoder *d, int64_t row, const uint8_t *p, uint32_t n)
{
    put_offset(d, row, d->used);
    if ((size_t)d->used + n > d->data.capacity) {
        d->data.used = (size_t)d->used;
        if (grow(&d->data, n) < 0) return -1;
    }
    memcpy(d->data.bytes + d->used, p, n);
    d->used += n;
    return 0;
}

/* Values of rows [first, first + count) from a PLAIN page body; nulls get no bytes. */
static const char *decode_plain(Decoder *d, const uint8_t *p, size_t n, int64_t first, int64_t count, int all_valid)
{
    const uint8_t *end = p + n;
    int64_t k;
    if ((size_t)d->used + n > d->data.capacity) { /* the page bounds its values' bytes */
        d->data.used = (size_t)d->used;
        if (grow(&d->data, n) < 0) return "out of memory";
    }
    for (k = first; k < first + count; k++) {
        uint32_t length;
        put_offset(d, k, d->used);
        if (!all_valid && !is_set(d->validity, k)) continue;
        if (end - p < 4) return "PLAIN values run past the page";
        length = load_le32(p);
        p += 4;
        if ((uint64_t)(end - p) < length) return "a PLAIN value runs past the page";
        memcpy(d->data.bytes + d->used, p, length);
        d->used += length;
        p += length;
    }
    return NULL;
}

static const char *decode_dictionary_indices(Decoder *d, const uint8_t *p, size_t n, int64_t first, int64_t count,
                                             int all_valid)
{
    Hybrid h;
    int64_t k;
    if (d->dictionary == NULL) return "dictionary-encoded page without a dictionary page";
    if (n < 1 || p[0] > 32) return "bad bit width for dictionary indices";
    hybrid_start(&h, p + 1, n - 1, p[0]);
    for (k = first; k < first + count; k++) {
        int64_t index;
        if (!all_valid && !is_set(d->validity, k)) {
            put_offset(d, k, d->used);
            continue;
        }
        index = hybrid_next(&h);
        if (index < 0) return h.error ? h.error : "truncated dictionary indices";
        if (index >= d->dictionary_count) return "dictionary index out of range";
        if (append_value(d, k, d->dictionary[index].p, d->dictionary[index].n) < 0) return "out of memory";
    }
    return NULL;
}

static PyObject *decoder_set_dictionary(Decoder *d, PyObject *args)
{
    PyObject *page;
    long long count;
    const uint8_t *p, *end;
    int64_t k;
    if (!PyArg_ParseTuple(args, "OL", &page, &count)) return NULL;
    if (d->validity == NULL || d->have_dictionary) {
        PyErr_SetString(PyExc_ValueError, "dictionary page: a second one, or decoder not initialised");
        return NULL;
    }
    if (PyObject_GetBuffer(page, &d->dictionary_view, PyBUF_SIMPLE) < 0) return NULL;
    d->have_dictionary = 1;
    if (count < 0 || count > d->dictionary_view.len / 4) {
        PyErr_SetString(PyExc_ValueError, "dictionary page: value count does not fit the page");
        return NULL;
    }
    d->dictionary = (Value *)malloc(sizeof(Value) * (size_t)(count ? count : 1));
    if (d->dictionary == NULL) return PyErr_NoMemory();
    p = (const uint8_t *)d->dictionary_view.buf;
    end = p + d->dictionary_view.len;
    for (k = 0; k < count; k++) {
        uint32_t length;
        if (end - p < 4 || (uint64_t)(end - p - 4) < (length = load_le32(p))) {
            free(d->dictionary);
            d->dictionary = NULL;
            PyErr_Format(PyExc_ValueError, "dictionary page: value %lld runs past the page", (long long)k);
            return NULL;
        }
        d->dictionary[k].p = p + 4;
        d->dictionary[k].n = length;
        p += 4 + length;
    }
    d->dictionary_count = count;
    Py_RETURN_NONE;
}

static PyObject *decoder_add_page(Decoder *d, PyObject *args)
{
    int version, encoding;
    PyObject *body_object, *levels_object;
    long long num_values;
    Py_buffer body_view, levels_view = {0};
    const char *error = NULL;
    int have_levels = 0;
    if (!PyArg_ParseTuple(args, "iOOLi", &version, &body_object, &levels_object, &num_values, &encoding)) return NULL;
    if (d->validity == NULL || d->failed) {
        PyErr_SetString(PyExc_ValueError, "decoder not initialised, or an earlier page failed");
        return NULL;
    }
    if (num_values < 0 || num_values > d->rows - d->row) {
        PyErr_SetString(PyExc_ValueError, "pages hold more values than the row group's rows");
        return NULL;
    }
    if (PyObject_GetBuffer(body_object, &body_view, PyBUF_SIMPLE) < 0) return NULL;
    if (levels_object != Py_None) {
        if (PyObject_GetBuffer(levels_object, &levels_view, PyBUF_SIMPLE) < 0) {
            PyBuffer_Release(&body_view);
            return NULL;
        }
        have_levels = 1;
    }
    Py_BEGIN_ALLOW_THREADS
    {
        const uint8_t *body = (const uint8_t *)body_view.buf, *levels = (const uint8_t *)"";
        size_t body_len = (size_t)body_view.len, levels_len = 0;
        int64_t present = num_values, k;
        if (d->max_definition_level == 0) {
            for (k = d->row; k < d->row + num_values; k++) d->validity[k >> 3] |= (uint8_t)(1u << (k & 7));
        } else {
            if (version == 1) { /* levels first: a 4-byte length, then the RLE hybrid */
                uint32_t length = body_len >= 4 ? load_le32(body) : 0;
                if (body_len < 4 || length > body_len - 4) {
                    error = "definition levels run past the page";
                } else {
                    levels = body + 4;
                    levels_len = length;
                    body += 4 + length;
                    body_len -= 4 + (size_t)length;
                }
            } else if (have_levels) {
                levels = (const uint8_t *)levels_view.buf;
                levels_len = (size_t)levels_view.len;
            }
            if (error == NULL)
                present = decode_definition_levels(levels, levels_len, d->validity, d->row, num_values, &error);
        }
        if (error == NULL) {
            int all_valid = present == num_values;
            if (encoding == ENC_PLAIN)
                error = decode_plain(d, body, body_len, d->row, num_values, all_valid);
            else if (encoding == ENC_PLAIN_DICTIONARY || encoding == ENC_RLE_DICTIONARY)
                error = decode_dictionary_indices(d, body, body_len, d->row, num_values, all_valid);
            else
                error = "unsupported value encoding";
        }
        if (error == NULL) {
            d->null_count += num_values - present;
            d->row += num_values;
        }
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&body_view);
    if (have_levels) PyBuffer_Release(&levels_view);
    if (error != NULL) {
        d->failed = 1;
        PyErr_SetString(PyExc_ValueError, error);
        return NULL;
    }
    if (!d->large && d->used > INT32_MAX) {
        d->failed = 1;
        PyErr_SetString(PyExc_OverflowError, "column chunk holds more than 2 GiB of values: needs 64-bit offsets");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *decoder_finish(Decoder *d, PyObject *args)
{
    PyObject *validity = NULL, *offsets = NULL, *data = NULL, *result;
    (void)args;
    if (d->validity == NULL || d->failed) {
        PyErr_SetString(PyExc_ValueError, "decoder not initialised, or an earlier page failed");
        return NULL;
    }
    if (d->row != d->rows) {
        PyErr_Format(PyExc_ValueError, "pages hold %lld values, the row group has %lld rows", (long long)d->row,
                     (long long)d->rows);
        return NULL;
    }
    put_offset(d, d->rows, d->used);
    if (d->null_count) {
        validity = owned_buffer(d->validity, (Py_ssize_t)(d->rows / 8 + 1));
    } else {
        free(d->validity);
        validity = Py_None;
        Py_INCREF(Py_None);
    }
    d->validity = NULL;
    offsets = owned_buffer(d->offsets, (Py_ssize_t)(d->rows + 1) * (d->large ? 8 : 4));
    d->offsets = NULL;
    data = owned_buffer(d->data.bytes, (Py_ssize_t)d->used);
    d->data.bytes = NULL;
    d->failed = 1; /* finished: no more pages */
    if (validity == NULL || offsets == NULL || data == NULL) {
        Py_XDECREF(validity);
        Py_XDECREF(offsets);
        Py_XDECREF(data);
        return NULL;
    }
    result = Py_BuildValue("(NNNL)", validity, offsets, data, (long long)d->null_count);
    return result;
}

static PyMethodDef decoder_methods[] = {
    {"set_dictionary", (PyCFunction)decoder_set_dictionary, METH_VARARGS,
     "set_dictionary(page, num_values): the chunk's decompressed dictionary page (kept referenced)."},
    {"add_page", (PyCFunction)decoder_add_page, METH_VARARGS,
     "add_page(version, body, definition_levels | None, num_values, encoding): one decompressed data page;\n"
     "for version 1 the body starts with the levels. ValueError names what is wrong with a corrupt page."},
    {"finish", (PyCFunction)decoder_finish, METH_NOARGS,
     "finish() -> (validity | None, offsets, data, null_count): the Arrow buffers; checks the row count."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject DecoderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "safeset._parquetpages.ByteArrayDecoder",
    .tp_basicsize = sizeof(Decoder),
    .tp_dealloc = (destructor)decoder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ByteArrayDecoder(max_definition_level, rows, large_offsets, size_hint): a flat BYTE_ARRAY\n"
              "column chunk, page by page, into Arrow buffers (int64 offsets with large_offsets, else int32).",
    .tp_methods = decoder_methods,
    .tp_init = (initproc)decoder_init,
    .tp_new = PyType_GenericNew,
};

/* ======================================================================
 * Module
 * ====================================================================== */

static PyMethodDef methods[] = {
    {"page_headers", page_headers, METH_VARARGS, page_headers_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "safeset._parquetpages",
    "Parquet pages of flat BYTE_ARRAY columns decoded straight to Arrow buffers (see safeset.datasets.parquet_pages).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__parquetpages(void)
{
    PyObject *m;
    if (PyType_Ready(&OwnedBufferType) < 0 || PyType_Ready(&DecoderType) < 0) return NULL;
    m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&DecoderType);
    if (PyModule_AddObject(m, "ByteArrayDecoder", (PyObject *)&DecoderType) < 0) {
        Py_DECREF(&DecoderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
