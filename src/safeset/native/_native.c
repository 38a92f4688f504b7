/*
 * safeset._native: the per-batch hot loops of safeset, in C.
 *
 * Everything here works on Arrow buffers handed over through the buffer
 * protocol (validity bitmap, offsets, data), once per batch, with the GIL
 * released. The Python wrappers live in safeset/signals/kernels.py and
 * safeset/signals/url.py; those modules are the API, this file is not.
 *
 * Contents:
 *   1. Column access (Arrow string/binary layout) and small helpers
 *   2. MD5 (RFC 1321), SHA-1 and SHA-256 (FIPS 180-4), scalar
 *   3. Accelerated digests on x86-64: MD5 in 8 AVX2 lanes, SHA-1/SHA-256 with
 *      the SHA extensions; picked at run time from CPUID
 *   4. digest(), hex_decode(), hex_encode()
 *   5. URL canonical form (spec: docs/url-canonical-form.md; reference:
 *      safeset/signals/url.py), hosts(), splice_strings()
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* SAFESET_PORTABLE_ONLY: build without any SIMD code (to check the portable path). */
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && !defined(SAFESET_PORTABLE_ONLY)
#define SAFESET_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define SAFESET_X86 0
#endif

#if defined(__SSE2__) && defined(__GNUC__) && !defined(SAFESET_PORTABLE_ONLY) /* always so on x86-64 */
#define SAFESET_SSE2 1
#include <emmintrin.h>
#else
#define SAFESET_SSE2 0
#endif

/* ======================================================================
 * 1. Column access
 * ====================================================================== */

/* One Arrow string/binary array (possibly a slice): its three buffers. */
typedef struct {
    Py_buffer validity_view, offsets_view, data_view;
    int has_validity, has_offsets, has_data;
    const uint8_t *valid_bits; /* NULL: no nulls */
    const int32_t *offsets32;
    const int64_t *offsets64;
    const uint8_t *data;
    Py_ssize_t offset, length;
} Column;

static void column_close(Column *col)
{
    if (col->has_validity) PyBuffer_Release(&col->validity_view);
    if (col->has_offsets) PyBuffer_Release(&col->offsets_view);
    if (col->has_data) PyBuffer_Release(&col->data_view);
    col->has_validity = col->has_offsets = col->has_data = 0;
}

static inline int64_t column_start(const Column *col, Py_ssize_t row)
{
    Py_ssize_t k = col->offset + row;
    return col->offsets64 ? col->offsets64[k] : (int64_t)col->offsets32[k];
}

static inline int64_t column_end(const Column *col, Py_ssize_t row)
{
    return column_start(col, row + 1);
}

static inline int column_is_valid(const Column *col, Py_ssize_t row)
{
    Py_ssize_t k;
    if (col->valid_bits == NULL) return 1;
    k = col->offset + row;
    return (col->valid_bits[k >> 3] >> (k & 7)) & 1;
}

/* Opens the buffers and checks that every offset stays inside the data, so
 * the loops below can trust them. Returns 0, or -1 with an exception set. */
static int column_open(Column *col, PyObject *validity, PyObject *offsets, PyObject *data,
                       Py_ssize_t offset, Py_ssize_t length, int large)
{
    Py_ssize_t width = large ? 8 : 4, i, data_len;
    int64_t previous;

    memset(col, 0, sizeof(*col));
    col->offset = offset;
    col->length = length;
    if (offset < 0 || length < 0) {
        PyErr_SetString(PyExc_ValueError, "negative offset or length");
        return -1;
    }
    if (PyObject_GetBuffer(offsets, &col->offsets_view, PyBUF_SIMPLE) < 0) return -1;
    col->has_offsets = 1;
    if (col->offsets_view.len / width < offset + length + 1) {
        PyErr_SetString(PyExc_ValueError, "offsets buffer too short");
        goto fail;
    }
    if (large)
        col->offsets64 = (const int64_t *)col->offsets_view.buf;
    else
        col->offsets32 = (const int32_t *)col->offsets_view.buf;

    if (validity != Py_None) {
        if (PyObject_GetBuffer(validity, &col->validity_view, PyBUF_SIMPLE) < 0) goto fail;
        col->has_validity = 1;
        if (col->validity_view.len * 8 < offset + length) {
            PyErr_SetString(PyExc_ValueError, "validity buffer too short");
            goto fail;
        }
        col->valid_bits = (const uint8_t *)col->validity_view.buf;
    }
    data_len = 0;
    if (data != Py_None) {
        if (PyObject_GetBuffer(data, &col->data_view, PyBUF_SIMPLE) < 0) goto fail;
        col->has_data = 1;
        col->data = (const uint8_t *)col->data_view.buf;
        data_len = col->data_view.len;
    }
    previous = column_start(col, 0);
    if (previous < 0) goto bad_offsets;
    for (i = 0; i < length; i++) {
        int64_t next = column_end(col, i);
        if (next < previous) goto bad_offsets;
        previous = next;
    }
    if (previous > (int64_t)data_len) goto bad_offsets;
    return 0;

bad_offsets:
    PyErr_SetString(PyExc_ValueError, "offsets are not ascending or point outside the data");
fail:
    column_close(col);
    return -1;
}

/* Growable byte buffer used without the GIL (plain malloc). */
typedef struct {
    uint8_t *bytes;
    size_t used, capacity;
} ByteBuffer;

static int bytebuffer_reserve(ByteBuffer *buffer, size_t extra)
{
    size_t wanted = buffer->used + extra, capacity;
    uint8_t *grown;
    if (wanted <= buffer->capacity) return 0;
    capacity = buffer->capacity ? buffer->capacity : 4096;
    while (capacity < wanted) capacity *= 2;
    grown = (uint8_t *)realloc(buffer->bytes, capacity);
    if (grown == NULL) return -1;
    buffer->bytes = grown;
    buffer->capacity = capacity;
    return 0;
}

static int8_t HEX_VALUE[256];      /* 0..15, or -1 */
static uint8_t UNRESERVED[256];    /* RFC 3986 unreserved: ALPHA DIGIT - . _ ~ */
static uint8_t SCHEME_CHAR[256];   /* ALPHA DIGIT + - . */
static uint8_t HOST_PLAIN[256];    /* host bytes the canonical form never changes */
static uint8_t PATH_SPECIAL[256];  /* '/', '?', '%', '#': where a path scan must look closer */
static const char UPPER_HEX[] = "0123456789ABCDEF";
static const char LOWER_HEX[] = "0123456789abcdef";

static void init_tables(void)
{
    int c;
    for (c = 0; c < 256; c++) {
        int alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        int digit = c >= '0' && c <= '9';
        HEX_VALUE[c] = -1;
        UNRESERVED[c] = (uint8_t)(alpha || digit || c == '-' || c == '.' || c == '_' || c == '~');
        SCHEME_CHAR[c] = (uint8_t)(alpha || digit || c == '+' || c == '-' || c == '.');
        HOST_PLAIN[c] = (uint8_t)(c > 0x20 && c < 0x7f && !(c >= 'A' && c <= 'Z') && c != '/' && c != '?' &&
                                  c != '#' && c != '%' && c != '@' && c != '[' && c != ':');
        PATH_SPECIAL[c] = (uint8_t)(c == '/' || c == '?' || c == '%' || c == '#');
    }
    for (c = 0; c < 10; c++) HEX_VALUE['0' + c] = (int8_t)c;
    for (c = 0; c < 6; c++) {
        HEX_VALUE['a' + c] = (int8_t)(10 + c);
        HEX_VALUE['A' + c] = (int8_t)(10 + c);
    }
}

static inline uint8_t ascii_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

static inline uint32_t load_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static inline uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

static inline void store_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static inline uint32_t rotl32(uint32_t x, int s)
{
    return (x << s) | (x >> (32 - s));
}

static inline uint32_t rotr32(uint32_t x, int s)
{
    return (x >> s) | (x << (32 - s));
}

/* ======================================================================
 * 2. Digests, scalar
 * ====================================================================== */

enum { ALGO_MD5 = 0, ALGO_SHA1 = 1, ALGO_SHA256 = 2 };

static const uint32_t MD5_INIT[4] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u};

/* RFC 1321 table T: T[i] = floor(2^32 * |sin(i + 1)|). */
static const uint32_t MD5_T[64] = {
    0xd76aa478u, 0xe8c7b756u, 0x242070dbu, 0xc1bdceeeu, 0xf57c0fafu, 0x4787c62au, 0xa8304613u, 0xfd469501u,
    0x698098d8u, 0x8b44f7afu, 0xffff5bb1u, 0x895cd7beu, 0x6b901122u, 0xfd987193u, 0xa679438eu, 0x49b40821u,
    0xf61e2562u, 0xc040b340u, 0x265e5a51u, 0xe9b6c7aau, 0xd62f105du, 0x02441453u, 0xd8a1e681u, 0xe7d3fbc8u,
    0x21e1cde6u, 0xc33707d6u, 0xf4d50d87u, 0x455a14edu, 0xa9e3e905u, 0xfcefa3f8u, 0x676f02d9u, 0x8d2a4c8au,
    0xfffa3942u, 0x8771f681u, 0x6d9d6122u, 0xfde5380cu, 0xa4beea44u, 0x4bdecfa9u, 0xf6bb4b60u, 0xbebfbc70u,
    0x289b7ec6u, 0xeaa127fau, 0xd4ef3085u, 0x04881d05u, 0xd9d4d039u, 0xe6db99e5u, 0x1fa27cf8u, 0xc4ac5665u,
    0xf4292244u, 0x432aff97u, 0xab9423a7u, 0xfc93a039u, 0x655b59c3u, 0x8f0ccc92u, 0xffeff47du, 0x85845dd1u,
    0x6fa87e4fu, 0xfe2ce6e0u, 0xa3014314u, 0x4e0811a1u, 0xf7537e82u, 0xbd3af235u, 0x2ad7d2bbu, 0xeb86d391u,
};

/* Per step: which message word, and the left rotation (RFC 1321 section 3.4). */
static const uint8_t MD5_WORD[64] = {
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
    1, 6, 11, 0, 5, 10, 15, 4, 9, 14, 3, 8, 13, 2, 7, 12,
    5, 8, 11, 14, 1, 4, 7, 10, 13, 0, 3, 6, 9, 12, 15, 2,
    0, 7, 14, 5, 12, 3, 10, 1, 8, 15, 6, 13, 4, 11, 2, 9,
};
static const uint8_t MD5_SHIFT[64] = {
    7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22,
    5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20, 5, 9, 14, 20,
    4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23,
    6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
};

#define MD5_F(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define MD5_G(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define MD5_H(b, c, d) ((b) ^ (c) ^ (d))
#define MD5_I(b, c, d) ((c) ^ ((b) | ~(d)))
#define MD5_STEP(fn, a, b, c, d, i) \
    a = b + rotl32(a + fn(b, c, d) + w[MD5_WORD[i]] + MD5_T[i], MD5_SHIFT[i])
#define MD5_FOUR(fn, i)                   \
    MD5_STEP(fn, a, b, c, d, i);          \
    MD5_STEP(fn, d, a, b, c, (i) + 1);    \
    MD5_STEP(fn, c, d, a, b, (i) + 2);    \
    MD5_STEP(fn, b, c, d, a, (i) + 3)

static void md5_blocks(uint32_t *state, const uint8_t *p, size_t blocks)
{
    uint32_t w[16];
    int k;
    for (; blocks > 0; blocks--, p += 64) {
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        for (k = 0; k < 16; k++) w[k] = load_le32(p + 4 * k);
        MD5_FOUR(MD5_F, 0); MD5_FOUR(MD5_F, 4); MD5_FOUR(MD5_F, 8); MD5_FOUR(MD5_F, 12);
        MD5_FOUR(MD5_G, 16); MD5_FOUR(MD5_G, 20); MD5_FOUR(MD5_G, 24); MD5_FOUR(MD5_G, 28);
        MD5_FOUR(MD5_H, 32); MD5_FOUR(MD5_H, 36); MD5_FOUR(MD5_H, 40); MD5_FOUR(MD5_H, 44);
        MD5_FOUR(MD5_I, 48); MD5_FOUR(MD5_I, 52); MD5_FOUR(MD5_I, 56); MD5_FOUR(MD5_I, 60);
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
    }
}

static const uint32_t SHA1_INIT[5] = {0x67452301u, 0xefcdab89u, 0x98badcfeu, 0x10325476u, 0xc3d2e1f0u};

/* One SHA-1 round. The message schedule lives in a 16-word ring, computed
 * as the rounds go (a precomputed 80-word table gets auto-vectorised into
 * something slower). */
#define SHA1_ROUND(f, k)                                                                      \
    do {                                                                                      \
        uint32_t next_a;                                                                      \
        if (t >= 16)                                                                          \
            w[t & 15] = rotl32(w[(t + 13) & 15] ^ w[(t + 8) & 15] ^ w[(t + 2) & 15] ^ w[t & 15], 1); \
        next_a = rotl32(a, 5) + (f) + e + (k) + w[t & 15];                                    \
        e = d;                                                                                \
        d = c;                                                                                \
        c = rotl32(b, 30);                                                                    \
        b = a;                                                                                \
        a = next_a;                                                                           \
    } while (0)

static void sha1_blocks(uint32_t *state, const uint8_t *p, size_t blocks)
{
    uint32_t w[16];
    int t;
    for (; blocks > 0; blocks--, p += 64) {
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3], e = state[4];
        for (t = 0; t < 16; t++) w[t] = load_be32(p + 4 * t);
        for (t = 0; t < 20; t++) SHA1_ROUND(d ^ (b & (c ^ d)), 0x5a827999u);    /* Ch */
        for (; t < 40; t++) SHA1_ROUND(b ^ c ^ d, 0x6ed9eba1u);                /* Parity */
        for (; t < 60; t++) SHA1_ROUND((b & c) | (d & (b | c)), 0x8f1bbcdcu);  /* Maj */
        for (; t < 80; t++) SHA1_ROUND(b ^ c ^ d, 0xca62c1d6u);                /* Parity */
        state[0] += a; state[1] += b; state[2] += c; state[3] += d; state[4] += e;
    }
}

static const uint32_t SHA256_INIT[8] = {
    0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au, 0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
};

/* FIPS 180-4 section 4.2.2: first 32 bits of the fractional parts of the cube
 * roots of the first 64 primes. */
static const uint32_t SHA256_K[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u, 0x923f82a4u, 0xab1c5ed5u,
    0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u, 0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u,
    0xe49b69c1u, 0xefbe4786u, 0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u, 0x06ca6351u, 0x14292967u,
    0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u, 0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u,
    0xa2bfe8a1u, 0xa81a664bu, 0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au, 0x5b9cca4fu, 0x682e6ff3u,
    0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u, 0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

static void sha256_blocks(uint32_t *state, const uint8_t *p, size_t blocks)
{
    uint32_t w[64];
    int t;
    for (; blocks > 0; blocks--, p += 64) {
        uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
        uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
        for (t = 0; t < 16; t++) w[t] = load_be32(p + 4 * t);
        for (t = 16; t < 64; t++) {
            uint32_t s0 = rotr32(w[t - 15], 7) ^ rotr32(w[t - 15], 18) ^ (w[t - 15] >> 3);
            uint32_t s1 = rotr32(w[t - 2], 17) ^ rotr32(w[t - 2], 19) ^ (w[t - 2] >> 10);
            w[t] = w[t - 16] + s0 + w[t - 7] + s1;
        }
        for (t = 0; t < 64; t++) {
            uint32_t sum1 = rotr32(e, 6) ^ rotr32(e, 11) ^ rotr32(e, 25);
            uint32_t choose = g ^ (e & (f ^ g));
            uint32_t t1 = h + sum1 + choose + SHA256_K[t] + w[t];
            uint32_t sum0 = rotr32(a, 2) ^ rotr32(a, 13) ^ rotr32(a, 22);
            uint32_t majority = (a & b) | (c & (a | b));
            uint32_t t2 = sum0 + majority;
            h = g;
            g = f;
            f = e;
            e = d + t1;
            d = c;
            c = b;
            b = a;
            a = t1 + t2;
        }
        state[0] += a; state[1] += b; state[2] += c; state[3] += d;
        state[4] += e; state[5] += f; state[6] += g; state[7] += h;
    }
}

typedef void (*BlocksFn)(uint32_t *state, const uint8_t *p, size_t blocks);

typedef struct {
    int digest_len;
    int state_words;
    int big_endian; /* SHA: big-endian words and length; MD5: little-endian */
    const uint32_t *init;
    BlocksFn blocks;
} Algo;

static const Algo ALGOS[3] = {
    {16, 4, 0, MD5_INIT, md5_blocks},
    {20, 5, 1, SHA1_INIT, sha1_blocks},
    {32, 8, 1, SHA256_INIT, sha256_blocks},
};

/* The one or two final blocks of a message: its last n % 64 bytes, 0x80,
 * zeros, then the bit length. Returns the number of blocks written to tail. */
static int padded_tail(const Algo *algo, const uint8_t *p, size_t n, uint8_t tail[128])
{
    size_t rest = n % 64;
    int blocks = rest < 56 ? 1 : 2;
    uint64_t bits = (uint64_t)n * 8u;
    uint8_t *length_at = tail + 64 * blocks - 8;
    int k;
    memset(tail, 0, 128);
    if (rest) memcpy(tail, p + (n - rest), rest);
    tail[rest] = 0x80;
    for (k = 0; k < 8; k++) {
        int shift = algo->big_endian ? 8 * (7 - k) : 8 * k;
        length_at[k] = (uint8_t)(bits >> shift);
    }
    return blocks;
}

static void write_digest(const Algo *algo, const uint32_t *state, uint8_t *out)
{
    int k;
    for (k = 0; k < algo->state_words; k++) {
        if (algo->big_endian)
            store_be32(out + 4 * k, state[k]);
        else
            store_le32(out + 4 * k, state[k]);
    }
}

static void digest_one(const Algo *algo, BlocksFn blocks_fn, const uint8_t *p, size_t n, uint8_t *out)
{
    uint32_t state[8];
    uint8_t tail[128];
    int tail_blocks;
    memcpy(state, algo->init, sizeof(uint32_t) * (size_t)algo->state_words);
    if (n >= 64) blocks_fn(state, p, n / 64);
    tail_blocks = padded_tail(algo, p, n, tail);
    blocks_fn(state, tail, (size_t)tail_blocks);
    write_digest(algo, state, out);
}

/* One message to digest: bytes, length, where its digest goes. */
typedef struct {
    const uint8_t *p;
    size_t n;
    uint8_t *out;
} Job;

/* ======================================================================
 * 3. Accelerated digests (x86-64)
 * ====================================================================== */

static int HAVE_AVX2 = 0, HAVE_SHA_NI = 0, HAVE_AVX512 = 0;
/* 0: portable C only; 1: up to AVX2 and the SHA extensions; 2: AVX-512 too. */
static int SIMD_LIMIT = 2;

#if SAFESET_X86

static void detect_cpu(void)
{
    unsigned int a, b, c, d;
    int os_saves_ymm = 0, os_saves_zmm = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    if ((c & (1u << 27)) && (c & (1u << 28))) { /* OSXSAVE and AVX */
        unsigned int lo, hi;
        __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
        os_saves_ymm = (lo & 6u) == 6u;
        os_saves_zmm = (lo & 0xe6u) == 0xe6u; /* XMM, YMM, opmask, ZMM halves */
    }
    {
        int sse41 = (c & (1u << 19)) != 0, ssse3 = (c & (1u << 9)) != 0;
        if (__get_cpuid_max(0, NULL) < 7) return;
        __cpuid_count(7, 0, a, b, c, d);
        HAVE_AVX2 = os_saves_ymm && (b & (1u << 5)) != 0;
        HAVE_SHA_NI = sse41 && ssse3 && (b & (1u << 29)) != 0;
        /* AVX512F (16), AVX512BW (30): 32-bit lanes, rotates, ternary logic, byte masks */
        HAVE_AVX512 = HAVE_AVX2 && os_saves_zmm && (b & (1u << 16)) != 0 && (b & (1u << 30)) != 0 &&
                      (b & (1u << 8)) != 0; /* and BMI2 */
    }
}

/* --- MD5, 8 messages at once in AVX2 lanes -----------------------------
 * Each lane walks its own message block by block (full blocks straight from
 * the data, then its padded tail); a lane that finishes stores its digest
 * and picks up the next job. Message words are gathered by an 8x8 transpose. */

#define V8_ROTL(x, s) _mm256_or_si256(_mm256_slli_epi32((x), (s)), _mm256_srli_epi32((x), 32 - (s)))
#define V8_F(b, c, d) _mm256_xor_si256((d), _mm256_and_si256((b), _mm256_xor_si256((c), (d))))
#define V8_G(b, c, d) _mm256_xor_si256((c), _mm256_and_si256((d), _mm256_xor_si256((b), (c))))
#define V8_H(b, c, d) _mm256_xor_si256(_mm256_xor_si256((b), (c)), (d))
#define V8_I(b, c, d) _mm256_xor_si256((c), _mm256_or_si256((b), _mm256_xor_si256((d), ones)))
#define V8_STEP(fn, a, b, c, d, i)                                                                   \
    a = _mm256_add_epi32(                                                                            \
        b, V8_ROTL(_mm256_add_epi32(_mm256_add_epi32(a, fn(b, c, d)),                                \
                                    _mm256_add_epi32(w[MD5_WORD[i]], _mm256_set1_epi32((int)MD5_T[i]))), \
                   MD5_SHIFT[i]))
#define V8_FOUR(fn, i)                  \
    V8_STEP(fn, a, b, c, d, i);         \
    V8_STEP(fn, d, a, b, c, (i) + 1);   \
    V8_STEP(fn, c, d, a, b, (i) + 2);   \
    V8_STEP(fn, b, c, d, a, (i) + 3)

typedef struct {
    const uint8_t *next;  /* next full block in the message */
    size_t full_left;     /* full blocks still to do */
    int tail_left;        /* tail blocks still to do (after full ones) */
    int tail_blocks;
    uint8_t *out;         /* NULL: idle lane */
    uint8_t tail[128];
} Md5Lane;

__attribute__((target("avx2"))) static void transpose8(__m256i *r)
{
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20);
    r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

static void md5_lane_start(Md5Lane *lane, const Job *job, uint32_t *state_words, int lane_index)
{
    int k;
    lane->next = job->p;
    lane->full_left = job->n / 64;
    lane->tail_blocks = padded_tail(&ALGOS[ALGO_MD5], job->p, job->n, lane->tail);
    lane->tail_left = lane->tail_blocks;
    lane->out = job->out;
    for (k = 0; k < 4; k++) state_words[8 * k + lane_index] = MD5_INIT[k];
}

static const uint8_t *md5_lane_block(Md5Lane *lane)
{
    const uint8_t *block;
    if (lane->full_left) {
        block = lane->next;
        lane->next += 64;
        lane->full_left--;
        return block;
    }
    block = lane->tail + 64 * (lane->tail_blocks - lane->tail_left);
    lane->tail_left--;
    return block;
}

__attribute__((target("avx2"))) static void md5_jobs_avx2(const Job *jobs, size_t count)
{
    static const uint8_t idle_block[64];
    Md5Lane lanes[8];
    uint32_t state_words[32] __attribute__((aligned(32))); /* [word][lane] */
    size_t next_job = 0;
    int active = 0, j, k;
    const __m256i ones = _mm256_set1_epi32(-1);

    for (j = 0; j < 8; j++) {
        lanes[j].out = NULL;
        if (next_job < count) {
            md5_lane_start(&lanes[j], &jobs[next_job++], state_words, j);
            active++;
        } else {
            for (k = 0; k < 4; k++) state_words[8 * k + j] = 0;
        }
    }
    while (active > 0) {
        __m256i w[16], a, b, c, d, a0, b0, c0, d0;
        const uint8_t *blocks[8];
        if (next_job >= count && active <= 2) {
            /* Two lanes or fewer left busy (say, one long message): the
             * scalar code is faster than eight lanes of mostly nothing. */
            for (j = 0; j < 8; j++) {
                Md5Lane *lane = &lanes[j];
                uint32_t state[4];
                if (lane->out == NULL) continue;
                for (k = 0; k < 4; k++) state[k] = state_words[8 * k + j];
                md5_blocks(state, lane->next, lane->full_left);
                md5_blocks(state, lane->tail + 64 * (lane->tail_blocks - lane->tail_left), (size_t)lane->tail_left);
                for (k = 0; k < 4; k++) store_le32(lane->out + 4 * k, state[k]);
            }
            break;
        }
        for (j = 0; j < 8; j++) blocks[j] = lanes[j].out ? md5_lane_block(&lanes[j]) : idle_block;
        for (j = 0; j < 8; j++) {
            w[j] = _mm256_loadu_si256((const __m256i *)blocks[j]);
            w[8 + j] = _mm256_loadu_si256((const __m256i *)(blocks[j] + 32));
        }
        transpose8(w);
        transpose8(w + 8);
        a = a0 = _mm256_load_si256((const __m256i *)(state_words + 0));
        b = b0 = _mm256_load_si256((const __m256i *)(state_words + 8));
        c = c0 = _mm256_load_si256((const __m256i *)(state_words + 16));
        d = d0 = _mm256_load_si256((const __m256i *)(state_words + 24));
        V8_FOUR(V8_F, 0); V8_FOUR(V8_F, 4); V8_FOUR(V8_F, 8); V8_FOUR(V8_F, 12);
        V8_FOUR(V8_G, 16); V8_FOUR(V8_G, 20); V8_FOUR(V8_G, 24); V8_FOUR(V8_G, 28);
        V8_FOUR(V8_H, 32); V8_FOUR(V8_H, 36); V8_FOUR(V8_H, 40); V8_FOUR(V8_H, 44);
        V8_FOUR(V8_I, 48); V8_FOUR(V8_I, 52); V8_FOUR(V8_I, 56); V8_FOUR(V8_I, 60);
        _mm256_store_si256((__m256i *)(state_words + 0), _mm256_add_epi32(a, a0));
        _mm256_store_si256((__m256i *)(state_words + 8), _mm256_add_epi32(b, b0));
        _mm256_store_si256((__m256i *)(state_words + 16), _mm256_add_epi32(c, c0));
        _mm256_store_si256((__m256i *)(state_words + 24), _mm256_add_epi32(d, d0));
        for (j = 0; j < 8; j++) {
            Md5Lane *lane = &lanes[j];
            if (lane->out == NULL || lane->full_left || lane->tail_left) continue;
            for (k = 0; k < 4; k++) store_le32(lane->out + 4 * k, state_words[8 * k + j]);
            lane->out = NULL;
            active--;
            if (next_job < count) {
                md5_lane_start(lane, &jobs[next_job++], state_words, j);
                active++;
            }
        }
    }
}

/* --- MD5, 16 messages at once in AVX-512 lanes ---------------------------
 * Same idea as the AVX2 code, with less bookkeeping per block: a lane's
 * current block is built in a register (its padded tail by a masked load,
 * which never touches bytes past the message), the state stays in registers
 * and only lanes that finish are read out. Rotates and the round functions
 * are single instructions (VPROLD, VPTERNLOGD). */

#define V16_F(b, c, d) _mm512_ternarylogic_epi32((b), (c), (d), 0xca) /* b ? c : d */
#define V16_G(b, c, d) _mm512_ternarylogic_epi32((d), (b), (c), 0xca) /* d ? b : c */
#define V16_H(b, c, d) _mm512_ternarylogic_epi32((b), (c), (d), 0x96) /* b ^ c ^ d */
#define V16_I(b, c, d) _mm512_ternarylogic_epi32((b), (c), (d), 0x39) /* c ^ (b | ~d) */
#define V16_STEP(fn, a, b, c, d, i, s)                                                              \
    a = _mm512_add_epi32(                                                                           \
        b, _mm512_rol_epi32(_mm512_add_epi32(_mm512_add_epi32(a, fn(b, c, d)),                      \
                                             _mm512_add_epi32(w[MD5_WORD[i]],                       \
                                                              _mm512_set1_epi32((int)MD5_T[i]))), \
                            s))
#define V16_FOUR(fn, i, s0, s1, s2, s3)    \
    V16_STEP(fn, a, b, c, d, i, s0);       \
    V16_STEP(fn, d, a, b, c, (i) + 1, s1); \
    V16_STEP(fn, c, d, a, b, (i) + 2, s2); \
    V16_STEP(fn, b, c, d, a, (i) + 3, s3)

#define AVX512_TARGET __attribute__((target("avx512f,avx512bw,avx2,bmi2")))

/* Rows r[0..15] (one lane's 16 message words each) -> w[j] = word j of every lane. */
AVX512_TARGET static void transpose16(const __m512i *r, __m512i *w)
{
    int g, m;
    __m512i x[4][4];
    for (g = 0; g < 4; g++) { /* per 128-bit lane: 4x4 transposes of rows 4g..4g+3 */
        __m512i t0 = _mm512_unpacklo_epi32(r[4 * g], r[4 * g + 1]);
        __m512i t1 = _mm512_unpackhi_epi32(r[4 * g], r[4 * g + 1]);
        __m512i t2 = _mm512_unpacklo_epi32(r[4 * g + 2], r[4 * g + 3]);
        __m512i t3 = _mm512_unpackhi_epi32(r[4 * g + 2], r[4 * g + 3]);
        x[g][0] = _mm512_unpacklo_epi64(t0, t2);
        x[g][1] = _mm512_unpackhi_epi64(t0, t2);
        x[g][2] = _mm512_unpacklo_epi64(t1, t3);
        x[g][3] = _mm512_unpackhi_epi64(t1, t3);
    }
    for (m = 0; m < 4; m++) { /* then a 4x4 transpose of the 128-bit lanes */
        __m512i p0 = _mm512_shuffle_i32x4(x[0][m], x[1][m], 0x44);
        __m512i p1 = _mm512_shuffle_i32x4(x[0][m], x[1][m], 0xee);
        __m512i p2 = _mm512_shuffle_i32x4(x[2][m], x[3][m], 0x44);
        __m512i p3 = _mm512_shuffle_i32x4(x[2][m], x[3][m], 0xee);
        w[m] = _mm512_shuffle_i32x4(p0, p2, 0x88);
        w[m + 4] = _mm512_shuffle_i32x4(p0, p2, 0xdd);
        w[m + 8] = _mm512_shuffle_i32x4(p1, p3, 0x88);
        w[m + 12] = _mm512_shuffle_i32x4(p1, p3, 0xdd);
    }
}

enum { MD5_PREFETCH_AHEAD = 48 }; /* messages: a few iterations of 16 lanes ahead */

typedef struct {
    const uint8_t *p;
    size_t n;
    size_t block;  /* index of the block to do next */
    size_t blocks; /* full blocks plus padded tail blocks */
    uint8_t *out;  /* NULL: idle lane */
} Md5Lane16;

static void md5_lane16_start(Md5Lane16 *lane, const Job *job)
{
    lane->p = job->p;
    lane->n = job->n;
    lane->block = 0;
    lane->blocks = job->n / 64 + ((job->n % 64) < 56 ? 1 : 2);
    lane->out = job->out;
}

/* The lane's current 64-byte block: message bytes, or its padded tail, built
 * without branches (which lanes are where in their messages is anyone's
 * guess, so branches here would mostly be mispredicted). A masked load never
 * touches the bytes it leaves out, so reading "past" a message is safe. */
AVX512_TARGET static inline __m512i md5_lane16_block(const Md5Lane16 *lane)
{
    int64_t left = (int64_t)lane->n - (int64_t)(64 * lane->block); /* message bytes from this block on */
    uint64_t take = left <= 0 ? 0 : (left >= 64 ? 64 : (uint64_t)left);
    uint64_t marker = (uint64_t)(left >= 0 && left < 64) << (left & 63);   /* the 0x80 after the message */
    __mmask8 length = (__mmask8)((lane->block + 1 == lane->blocks) << 7);  /* bit length in the last block */
    __m512i block = _mm512_maskz_loadu_epi8(_bzhi_u64(~(uint64_t)0, (unsigned)take), lane->p + 64 * lane->block);
    block = _mm512_mask_set1_epi8(block, marker, (char)0x80);
    return _mm512_mask_set1_epi64(block, length, (long long)((uint64_t)lane->n * 8u));
}

AVX512_TARGET static void md5_jobs_avx512(const Job *jobs, size_t count)
{
    Md5Lane16 lanes[16];
    uint32_t words[4][16] __attribute__((aligned(64)));
    const __m512i init_a = _mm512_set1_epi32((int)MD5_INIT[0]), init_b = _mm512_set1_epi32((int)MD5_INIT[1]);
    const __m512i init_c = _mm512_set1_epi32((int)MD5_INIT[2]), init_d = _mm512_set1_epi32((int)MD5_INIT[3]);
    __m512i sa = init_a, sb = init_b, sc = init_c, sd = init_d;
    size_t next_job = 0;
    int active = 0, j, k;

    for (j = 0; j < 16; j++) {
        lanes[j].out = NULL;
        if (next_job < count) {
            md5_lane16_start(&lanes[j], &jobs[next_job++]);
            active++;
        }
    }
    while (active > 0) {
        __m512i rows[16], w[16], a, b, c, d;
        __mmask16 finished = 0;
        if (next_job >= count && active <= 4) {
            /* A few lanes left busy (say, long messages): scalar is faster than
             * sixteen lanes of mostly nothing. */
            _mm512_store_si512((void *)words[0], sa);
            _mm512_store_si512((void *)words[1], sb);
            _mm512_store_si512((void *)words[2], sc);
            _mm512_store_si512((void *)words[3], sd);
            for (j = 0; j < 16; j++) {
                Md5Lane16 *lane = &lanes[j];
                uint32_t state[4];
                uint8_t tail[128];
                size_t full = lane->n / 64;
                int tail_blocks;
                if (lane->out == NULL) continue;
                for (k = 0; k < 4; k++) state[k] = words[k][j];
                if (lane->block < full) md5_blocks(state, lane->p + 64 * lane->block, full - lane->block);
                tail_blocks = padded_tail(&ALGOS[ALGO_MD5], lane->p, lane->n, tail);
                {
                    size_t done_tail = lane->block > full ? lane->block - full : 0;
                    md5_blocks(state, tail + 64 * done_tail, (size_t)tail_blocks - done_tail);
                }
                for (k = 0; k < 4; k++) store_le32(lane->out + 4 * k, state[k]);
            }
            return;
        }
        for (j = 0; j < 16; j++) rows[j] = lanes[j].out ? md5_lane16_block(&lanes[j]) : _mm512_setzero_si512();
        transpose16(rows, w);
        a = sa;
        b = sb;
        c = sc;
        d = sd;
        V16_FOUR(V16_F, 0, 7, 12, 17, 22); V16_FOUR(V16_F, 4, 7, 12, 17, 22);
        V16_FOUR(V16_F, 8, 7, 12, 17, 22); V16_FOUR(V16_F, 12, 7, 12, 17, 22);
        V16_FOUR(V16_G, 16, 5, 9, 14, 20); V16_FOUR(V16_G, 20, 5, 9, 14, 20);
        V16_FOUR(V16_G, 24, 5, 9, 14, 20); V16_FOUR(V16_G, 28, 5, 9, 14, 20);
        V16_FOUR(V16_H, 32, 4, 11, 16, 23); V16_FOUR(V16_H, 36, 4, 11, 16, 23);
        V16_FOUR(V16_H, 40, 4, 11, 16, 23); V16_FOUR(V16_H, 44, 4, 11, 16, 23);
        V16_FOUR(V16_I, 48, 6, 10, 15, 21); V16_FOUR(V16_I, 52, 6, 10, 15, 21);
        V16_FOUR(V16_I, 56, 6, 10, 15, 21); V16_FOUR(V16_I, 60, 6, 10, 15, 21);
        sa = _mm512_add_epi32(sa, a);
        sb = _mm512_add_epi32(sb, b);
        sc = _mm512_add_epi32(sc, c);
        sd = _mm512_add_epi32(sd, d);
        for (j = 0; j < 16; j++) {
            if (lanes[j].out != NULL && ++lanes[j].block == lanes[j].blocks) finished |= (__mmask16)(1u << j);
        }
        if (!finished) continue;
        _mm512_store_si512((void *)words[0], sa);
        _mm512_store_si512((void *)words[1], sb);
        _mm512_store_si512((void *)words[2], sc);
        _mm512_store_si512((void *)words[3], sd);
        for (j = 0; j < 16; j++) {
            Md5Lane16 *lane = &lanes[j];
            if (!((finished >> j) & 1)) continue;
            for (k = 0; k < 4; k++) store_le32(lane->out + 4 * k, words[k][j]);
            lane->out = NULL;
            active--;
            if (next_job < count) {
                if (next_job + MD5_PREFETCH_AHEAD < count) { /* the streams of 16 lanes outrun the hardware prefetcher */
                    _mm_prefetch((const char *)jobs[next_job + MD5_PREFETCH_AHEAD].p, _MM_HINT_T0);
                    _mm_prefetch((const char *)jobs[next_job + MD5_PREFETCH_AHEAD].p + 64, _MM_HINT_T0);
                }
                md5_lane16_start(lane, &jobs[next_job++]);
                active++;
            }
        }
        sa = _mm512_mask_mov_epi32(sa, finished, init_a);
        sb = _mm512_mask_mov_epi32(sb, finished, init_b);
        sc = _mm512_mask_mov_epi32(sc, finished, init_c);
        sd = _mm512_mask_mov_epi32(sd, finished, init_d);
    }
}

/* --- SHA-256 with the SHA extensions -----------------------------------
 * State lives in two registers as the instructions want it: ABEF and CDGH
 * (A in the highest dword). Each SHA256RNDS2 does two rounds; message words
 * 16..63 come from SHA256MSG1/MSG2 four at a time. */

#define SHA_TARGET __attribute__((target("sha,sse4.1,ssse3")))

SHA_TARGET static void sha256_blocks_ni(uint32_t *state, const uint8_t *p, size_t blocks)
{
    const __m128i byte_swap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i abef = _mm_set_epi32((int)state[0], (int)state[1], (int)state[4], (int)state[5]);
    __m128i cdgh = _mm_set_epi32((int)state[2], (int)state[3], (int)state[6], (int)state[7]);
    for (; blocks > 0; blocks--, p += 64) {
        __m128i abef_saved = abef, cdgh_saved = cdgh, m[4], wk;
        int group;
#pragma GCC unroll 16
        for (group = 0; group < 16; group++) {
            __m128i *slot = &m[group & 3];
            if (group < 4) {
                *slot = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * group)), byte_swap);
            } else {
                /* words 4g..4g+3 from groups g-4 (this slot), g-3, g-2, g-1 */
                __m128i older = m[(group + 1) & 3], mid = m[(group + 2) & 3], newest = m[(group + 3) & 3];
                __m128i partial = _mm_sha256msg1_epu32(*slot, older);
                partial = _mm_add_epi32(partial, _mm_alignr_epi8(newest, mid, 4));
                *slot = _mm_sha256msg2_epu32(partial, newest);
            }
            wk = _mm_add_epi32(*slot, _mm_loadu_si128((const __m128i *)(SHA256_K + 4 * group)));
            cdgh = _mm_sha256rnds2_epu32(cdgh, abef, wk);  /* rounds 4g, 4g+1: cdgh now holds ABEF */
            wk = _mm_shuffle_epi32(wk, 0x0e);
            abef = _mm_sha256rnds2_epu32(abef, cdgh, wk);  /* rounds 4g+2, 4g+3 */
        }
        abef = _mm_add_epi32(abef, abef_saved);
        cdgh = _mm_add_epi32(cdgh, cdgh_saved);
    }
    state[0] = (uint32_t)_mm_extract_epi32(abef, 3);
    state[1] = (uint32_t)_mm_extract_epi32(abef, 2);
    state[4] = (uint32_t)_mm_extract_epi32(abef, 1);
    state[5] = (uint32_t)_mm_extract_epi32(abef, 0);
    state[2] = (uint32_t)_mm_extract_epi32(cdgh, 3);
    state[3] = (uint32_t)_mm_extract_epi32(cdgh, 2);
    state[6] = (uint32_t)_mm_extract_epi32(cdgh, 1);
    state[7] = (uint32_t)_mm_extract_epi32(cdgh, 0);
}

/* --- SHA-1 with the SHA extensions --------------------------------------
 * ABCD in one register (A highest); SHA1RNDS4 does four rounds, its
 * immediate picking the round function; SHA1NEXTE derives the next E from
 * the A of four rounds before. */

#define SHA1_FOUR_ROUNDS(fn_index)                                   \
    do {                                                             \
        __m128i abcd_before = abcd;                                  \
        if (group == 0)                                              \
            e_words = _mm_add_epi32(e_words, *slot);                 \
        else                                                         \
            e_words = _mm_sha1nexte_epu32(previous_abcd, *slot);     \
        abcd = _mm_sha1rnds4_epu32(abcd, e_words, fn_index);         \
        previous_abcd = abcd_before;                                 \
    } while (0)

SHA_TARGET static void sha1_blocks_ni(uint32_t *state, const uint8_t *p, size_t blocks)
{
    const __m128i word_swap = _mm_set_epi64x(0x0001020304050607LL, 0x08090a0b0c0d0e0fLL);
    __m128i abcd = _mm_set_epi32((int)state[0], (int)state[1], (int)state[2], (int)state[3]);
    uint32_t e = state[4];
    for (; blocks > 0; blocks--, p += 64) {
        __m128i abcd_saved = abcd, m[4], previous_abcd = abcd;
        __m128i e_words = _mm_set_epi32((int)e, 0, 0, 0);
        int group;
#pragma GCC unroll 20
        for (group = 0; group < 20; group++) {
            __m128i *slot = &m[group & 3];
            if (group < 4) {
                *slot = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * group)), word_swap);
            } else {
                __m128i older = m[(group + 1) & 3], mid = m[(group + 2) & 3], newest = m[(group + 3) & 3];
                __m128i partial = _mm_xor_si128(_mm_sha1msg1_epu32(*slot, older), mid);
                *slot = _mm_sha1msg2_epu32(partial, newest);
            }
            if (group < 5)
                SHA1_FOUR_ROUNDS(0);
            else if (group < 10)
                SHA1_FOUR_ROUNDS(1);
            else if (group < 15)
                SHA1_FOUR_ROUNDS(2);
            else
                SHA1_FOUR_ROUNDS(3);
        }
        /* E after 80 rounds is rol30(A after round 76) = what SHA1NEXTE adds. */
        e_words = _mm_sha1nexte_epu32(previous_abcd, _mm_set_epi32((int)e, 0, 0, 0));
        e = (uint32_t)_mm_extract_epi32(e_words, 3);
        abcd = _mm_add_epi32(abcd, abcd_saved);
    }
    state[0] = (uint32_t)_mm_extract_epi32(abcd, 3);
    state[1] = (uint32_t)_mm_extract_epi32(abcd, 2);
    state[2] = (uint32_t)_mm_extract_epi32(abcd, 1);
    state[3] = (uint32_t)_mm_extract_epi32(abcd, 0);
    state[4] = e;
}

#else /* not x86 */

static void detect_cpu(void) {}

#endif

/* Digests every job; picks the fastest implementation this CPU has. */
static void digest_jobs(int algo_id, const Job *jobs, size_t count)
{
    const Algo *algo = &ALGOS[algo_id];
    BlocksFn blocks_fn = algo->blocks;
    size_t i;
#if SAFESET_X86
    if (algo_id == ALGO_MD5 && HAVE_AVX512 && SIMD_LIMIT >= 2) {
        md5_jobs_avx512(jobs, count);
        return;
    }
    if (algo_id == ALGO_MD5 && HAVE_AVX2 && SIMD_LIMIT >= 1) {
        md5_jobs_avx2(jobs, count);
        return;
    }
    if (HAVE_SHA_NI && SIMD_LIMIT >= 1) {
        if (algo_id == ALGO_SHA256) blocks_fn = sha256_blocks_ni;
        if (algo_id == ALGO_SHA1) blocks_fn = sha1_blocks_ni;
    }
#endif
    for (i = 0; i < count; i++) digest_one(algo, blocks_fn, jobs[i].p, jobs[i].n, jobs[i].out);
}

/* ======================================================================
 * 4. digest(), hex_decode(), hex_encode()
 * ====================================================================== */

static int open_writable(PyObject *object, Py_buffer *view, Py_ssize_t expected, const char *what)
{
    if (PyObject_GetBuffer(object, view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) < 0) return -1;
    if (view->len != expected) {
        PyErr_Format(PyExc_ValueError, "%s buffer has %zd bytes, expected %zd", what, view->len, expected);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(digest_doc,
"digest(algo, validity, offsets, data, offset, length, large, rows, out)\n\n"
"Digest each value of an Arrow (large_)string/binary array into `out`\n"
"(a writable C-contiguous buffer of count * digest_len bytes). algo: 0 MD5,\n"
"1 SHA-1, 2 SHA-256. rows: None (all rows) or a buffer of int64 row indices.\n"
"Null rows get all-zero digests.");

static PyObject *native_digest(PyObject *self, PyObject *args)
{
    int algo_id, large;
    PyObject *validity, *offsets, *data, *rows_object, *out_object;
    Py_ssize_t offset, length, count, i;
    Column col;
    Py_buffer rows_view, out_view;
    const int64_t *rows = NULL;
    int have_rows = 0;
    Job *jobs;
    size_t job_count = 0;
    int digest_len;
    (void)self;

    if (!PyArg_ParseTuple(args, "iOOOnnpOO", &algo_id, &validity, &offsets, &data, &offset, &length,
                          &large, &rows_object, &out_object))
        return NULL;
    if (algo_id < 0 || algo_id > 2) {
        PyErr_SetString(PyExc_ValueError, "unknown digest algorithm");
        return NULL;
    }
    digest_len = ALGOS[algo_id].digest_len;
    if (column_open(&col, validity, offsets, data, offset, length, large) < 0) return NULL;
    count = length;
    if (rows_object != Py_None) {
        if (PyObject_GetBuffer(rows_object, &rows_view, PyBUF_C_CONTIGUOUS) < 0) goto fail_column;
        have_rows = 1;
        if (rows_view.len % 8 != 0) {
            PyErr_SetString(PyExc_ValueError, "rows must be int64");
            goto fail_rows;
        }
        rows = (const int64_t *)rows_view.buf;
        count = rows_view.len / 8;
        for (i = 0; i < count; i++) {
            if (rows[i] < 0 || rows[i] >= length) {
                PyErr_Format(PyExc_IndexError, "row %lld out of range for %zd rows", (long long)rows[i], length);
                goto fail_rows;
            }
        }
    }
    if (open_writable(out_object, &out_view, count * digest_len, "out") < 0) goto fail_rows;
    jobs = (Job *)PyMem_Malloc(sizeof(Job) * (size_t)(count ? count : 1));
    if (jobs == NULL) {
        PyErr_NoMemory();
        goto fail_out;
    }
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < count; i++) {
        Py_ssize_t row = have_rows ? (Py_ssize_t)rows[i] : i;
        int64_t start;
        if (!column_is_valid(&col, row)) {
            memset((uint8_t *)out_view.buf + i * digest_len, 0, (size_t)digest_len);
            continue;
        }
        start = column_start(&col, row);
        jobs[job_count].p = col.data ? col.data + start : (const uint8_t *)"";
        jobs[job_count].n = (size_t)(column_end(&col, row) - start);
        jobs[job_count].out = (uint8_t *)out_view.buf + i * digest_len;
        job_count++;
    }
    digest_jobs(algo_id, jobs, job_count);
    Py_END_ALLOW_THREADS
    PyMem_Free(jobs);
    PyBuffer_Release(&out_view);
    if (have_rows) PyBuffer_Release(&rows_view);
    column_close(&col);
    Py_RETURN_NONE;

fail_out:
    PyBuffer_Release(&out_view);
fail_rows:
    if (have_rows) PyBuffer_Release(&rows_view);
fail_column:
    column_close(&col);
    return NULL;
}

/* Hex text p[0 .. 2 * nbytes) -> out; 1 if every character was a hex digit. */
static int hex_to_bytes_scalar(const uint8_t *p, Py_ssize_t nbytes, uint8_t *out)
{
    int bad = 0;
    Py_ssize_t k;
    for (k = 0; k < nbytes; k++) {
        int high = HEX_VALUE[p[2 * k]], low = HEX_VALUE[p[2 * k + 1]];
        bad |= high | low; /* negative if either is not hex */
        out[k] = (uint8_t)(((unsigned)high << 4) | ((unsigned)low & 15u));
    }
    return bad >= 0;
}

#if SAFESET_X86
/* The same, 32 characters at a time with AVX2: classify digits and letters,
 * turn each into its value, then pair nibbles with one multiply-add. */
__attribute__((target("avx2"))) static int hex_to_bytes_avx2(const uint8_t *p, Py_ssize_t nbytes, uint8_t *out)
{
    const __m256i zero_char = _mm256_set1_epi8('0'), a_char = _mm256_set1_epi8('a');
    const __m256i nine = _mm256_set1_epi8(9), five = _mm256_set1_epi8(5), case_bit = _mm256_set1_epi8(0x20);
    const __m256i ten = _mm256_set1_epi8(10), pair = _mm256_set1_epi16(0x0110);
    Py_ssize_t done = 0;
    int ok = 1;
    while (2 * (nbytes - done) >= 32) {
        __m256i text = _mm256_loadu_si256((const __m256i *)(p + 2 * done));
        __m256i digit = _mm256_sub_epi8(text, zero_char);
        __m256i letter = _mm256_sub_epi8(_mm256_or_si256(text, case_bit), a_char);
        /* unsigned "<= 9" / "<= 5": min(x, limit) == x */
        __m256i is_digit = _mm256_cmpeq_epi8(_mm256_min_epu8(digit, nine), digit);
        __m256i is_letter = _mm256_cmpeq_epi8(_mm256_min_epu8(letter, five), letter);
        __m256i value = _mm256_blendv_epi8(_mm256_add_epi8(letter, ten), digit, is_digit);
        __m256i words;
        ok &= _mm256_movemask_epi8(_mm256_or_si256(is_digit, is_letter)) == -1;
        words = _mm256_maddubs_epi16(value, pair); /* 16 * high + low per character pair */
        words = _mm256_packus_epi16(words, words);
        words = _mm256_permute4x64_epi64(words, 0x08); /* the two low qwords of each lane, in order */
        _mm_storeu_si128((__m128i *)(out + done), _mm256_castsi256_si128(words));
        done += 16;
    }
    return hex_to_bytes_scalar(p + 2 * done, nbytes - done, out + done) && ok;
}
#endif

static inline int hex_to_bytes(const uint8_t *p, Py_ssize_t nbytes, uint8_t *out)
{
#if SAFESET_X86
    if (HAVE_AVX2 && SIMD_LIMIT >= 1) return hex_to_bytes_avx2(p, nbytes, out);
#endif
    return hex_to_bytes_scalar(p, nbytes, out);
}

PyDoc_STRVAR(hex_decode_doc,
"hex_decode(validity, offsets, data, offset, length, large, nbytes, accept_raw, out, valid)\n\n"
"Parse values of exactly 2*nbytes hex digits (either case) into out (length *\n"
"nbytes bytes, zero where invalid) and set valid[i] to 0/1. With accept_raw,\n"
"values of exactly nbytes bytes are taken as raw digests.");

static PyObject *native_hex_decode(PyObject *self, PyObject *args)
{
    PyObject *validity, *offsets, *data, *out_object, *valid_object;
    Py_ssize_t offset, length, nbytes, i;
    int large, accept_raw;
    Column col;
    Py_buffer out_view, valid_view;
    (void)self;

    if (!PyArg_ParseTuple(args, "OOOnnpnpOO", &validity, &offsets, &data, &offset, &length, &large, &nbytes,
                          &accept_raw, &out_object, &valid_object))
        return NULL;
    if (nbytes <= 0) {
        PyErr_SetString(PyExc_ValueError, "nbytes must be positive");
        return NULL;
    }
    if (column_open(&col, validity, offsets, data, offset, length, large) < 0) return NULL;
    if (open_writable(out_object, &out_view, length * nbytes, "out") < 0) {
        column_close(&col);
        return NULL;
    }
    if (open_writable(valid_object, &valid_view, length, "valid") < 0) {
        PyBuffer_Release(&out_view);
        column_close(&col);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    for (i = 0; i < length; i++) {
        uint8_t *out = (uint8_t *)out_view.buf + i * nbytes;
        uint8_t ok = 0;
        if (column_is_valid(&col, i)) {
            int64_t start = column_start(&col, i), n = column_end(&col, i) - start;
            const uint8_t *p = col.data ? col.data + start : NULL;
            if (n == 2 * (int64_t)nbytes) {
                ok = hex_to_bytes(p, nbytes, out);
            } else if (accept_raw && n == (int64_t)nbytes) {
                memcpy(out, p, (size_t)nbytes);
                ok = 1;
            }
        }
        if (!ok) memset(out, 0, (size_t)nbytes);
        ((uint8_t *)valid_view.buf)[i] = ok;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&valid_view);
    PyBuffer_Release(&out_view);
    column_close(&col);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(hex_encode_doc,
"hex_encode(digests, width) -> (offsets: bytes of int32, data: bytes)\n\n"
"Lower-case hex text of each width-byte row of a C-contiguous buffer.");

static PyObject *native_hex_encode(PyObject *self, PyObject *args)
{
    PyObject *digests_object, *offsets_bytes = NULL, *data_bytes = NULL;
    Py_ssize_t width, rows, i, k;
    Py_buffer view;
    (void)self;

    if (!PyArg_ParseTuple(args, "On", &digests_object, &width)) return NULL;
    if (width <= 0) {
        PyErr_SetString(PyExc_ValueError, "width must be positive");
        return NULL;
    }
    if (PyObject_GetBuffer(digests_object, &view, PyBUF_C_CONTIGUOUS) < 0) return NULL;
    if (view.len % width != 0 || view.len > (Py_ssize_t)(INT32_MAX / 2)) {
        PyErr_SetString(PyExc_ValueError, "buffer size is not a multiple of width, or too large");
        goto done;
    }
    rows = view.len / width;
    offsets_bytes = PyBytes_FromStringAndSize(NULL, (rows + 1) * 4);
    data_bytes = PyBytes_FromStringAndSize(NULL, view.len * 2);
    if (offsets_bytes == NULL || data_bytes == NULL) goto done;
    {
        const uint8_t *in = (const uint8_t *)view.buf;
        uint8_t *text = (uint8_t *)PyBytes_AS_STRING(data_bytes);
        int32_t *offsets = (int32_t *)PyBytes_AS_STRING(offsets_bytes);
        Py_BEGIN_ALLOW_THREADS
        for (i = 0; i <= rows; i++) offsets[i] = (int32_t)(i * width * 2);
        for (k = 0; k < view.len; k++) {
            text[2 * k] = (uint8_t)LOWER_HEX[in[k] >> 4];
            text[2 * k + 1] = (uint8_t)LOWER_HEX[in[k] & 15];
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(NN)", offsets_bytes, data_bytes);

done:
    PyBuffer_Release(&view);
    Py_XDECREF(offsets_bytes);
    Py_XDECREF(data_bytes);
    return NULL;
}

/* ======================================================================
 * 5. URL canonical form
 * ====================================================================== */

#define CANON_FALLBACK ((size_t)-1)
/* Bytes the URL code may write past its real output (16-byte stores). */
#define CANON_SLACK 64

static inline int is_c0_or_space(uint8_t c)
{
    return c <= 0x20;
}

/* --- Scanning helpers: 16 bytes at a time with SSE2 where available ----- */

#if SAFESET_SSE2
static inline unsigned int match_mask(__m128i chunk, char a, char b)
{
    __m128i hits = _mm_or_si128(_mm_cmpeq_epi8(chunk, _mm_set1_epi8(a)), _mm_cmpeq_epi8(chunk, _mm_set1_epi8(b)));
    return (unsigned int)_mm_movemask_epi8(hits);
}
#endif

/* Copies p[0..n) to out up to the first byte equal to a or b; returns how
 * many bytes that is. May write up to 15 bytes beyond them (CANON_SLACK). */
static inline size_t copy_until(const uint8_t *p, size_t n, uint8_t *out, uint8_t a, uint8_t b)
{
    size_t i = 0;
#if SAFESET_SSE2
    while (i + 16 <= n) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)(p + i));
        unsigned int mask = match_mask(chunk, (char)a, (char)b);
        _mm_storeu_si128((__m128i *)(out + i), chunk);
        if (mask) return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
#endif
    for (; i < n; i++) {
        if (p[i] == a || p[i] == b) break;
        out[i] = p[i];
    }
    return i;
}

/* Index of the first byte equal to a or b in p[0..n), or n. */
static inline size_t find_either(const uint8_t *p, size_t n, uint8_t a, uint8_t b)
{
    size_t i = 0;
#if SAFESET_SSE2
    while (i + 16 <= n) {
        unsigned int mask = match_mask(_mm_loadu_si128((const __m128i *)(p + i)), (char)a, (char)b);
        if (mask) return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
#endif
    for (; i < n; i++)
        if (p[i] == a || p[i] == b) break;
    return i;
}

/* Index of the first byte in p[0..n) that is not HOST_PLAIN, or n. */
static inline size_t skip_host_plain(const uint8_t *p, size_t n)
{
    size_t i = 0;
#if SAFESET_SSE2
    while (i + 16 <= n) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)(p + i));
        /* signed compares: bytes >= 0x80 are negative, so "< 0x21" catches them too */
        __m128i stop = _mm_or_si128(_mm_cmplt_epi8(chunk, _mm_set1_epi8(0x21)),
                                    _mm_cmpeq_epi8(chunk, _mm_set1_epi8(0x7f)));
        __m128i upper = _mm_and_si128(_mm_cmpgt_epi8(chunk, _mm_set1_epi8('A' - 1)),
                                      _mm_cmplt_epi8(chunk, _mm_set1_epi8('Z' + 1)));
        unsigned int mask;
        stop = _mm_or_si128(stop, upper);
        stop = _mm_or_si128(stop, _mm_cmpeq_epi8(chunk, _mm_set1_epi8('@')));
        stop = _mm_or_si128(stop, _mm_cmpeq_epi8(chunk, _mm_set1_epi8('[')));
        stop = _mm_or_si128(stop, _mm_cmpeq_epi8(chunk, _mm_set1_epi8(':')));
        mask = (unsigned int)_mm_movemask_epi8(stop) | match_mask(chunk, '/', '?') | match_mask(chunk, '#', '%');
        if (mask) return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
#endif
    while (i < n && HOST_PLAIN[p[i]]) i++;
    return i;
}

/* --- The canonical form, piece by piece ---------------------------------- */

/* Decodes the escape at p (p[0] == '%', n bytes available) into out.
 * Escapes of unreserved characters are decoded (lower-cased when
 * lower_decoded), other escapes get upper-case hex, and a '%' that starts no
 * escape becomes "%25". Sets *used to the input bytes consumed; returns
 * bytes written. */
static inline size_t normalise_one_escape(const uint8_t *p, size_t n, uint8_t *out, int lower_decoded, size_t *used)
{
    if (n >= 3 && HEX_VALUE[p[1]] >= 0 && HEX_VALUE[p[2]] >= 0) {
        uint8_t value = (uint8_t)((HEX_VALUE[p[1]] << 4) | HEX_VALUE[p[2]]);
        *used = 3;
        if (UNRESERVED[value]) {
            out[0] = lower_decoded ? ascii_lower(value) : value;
            return 1;
        }
        out[0] = '%';
        out[1] = (uint8_t)UPPER_HEX[value >> 4];
        out[2] = (uint8_t)UPPER_HEX[value & 15];
        return 3;
    }
    *used = 1;
    out[0] = '%';
    out[1] = '2';
    out[2] = '5';
    return 3;
}

/* Percent-escape normalisation (userinfo, path segments, query). Returns
 * bytes written (at most 3n). */
static size_t normalise_escapes(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0, used;
    while (i < n) {
        size_t run = copy_until(p + i, n - i, out + o, '%', '%');
        i += run;
        o += run;
        if (i >= n) break;
        o += normalise_one_escape(p + i, n - i, out + o, 0, &used);
        i += used;
    }
    return o;
}

/* Host: escapes normalised, and everything outside escape hex lower-cased. */
static size_t normalise_host(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0, used;
    while (i < n) {
        if (p[i] != '%') {
            out[o++] = ascii_lower(p[i++]);
        } else {
            o += normalise_one_escape(p + i, n - i, out + o, 1, &used);
            i += used;
        }
    }
    return o;
}

/* Path: escapes normalised segment by segment, dot-segments removed as in
 * RFC 3986 5.2.4 (p is empty or starts with '/'); empty -> "/". */
static size_t canonical_path(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t i = 0, o = 0, used;
    if (n == 0) {
        out[0] = '/';
        return 1;
    }
    while (i < n) { /* p[i] == '/' */
        size_t at = o, written;
        out[o++] = '/';
        i++;
        for (;;) {
            size_t run = copy_until(p + i, n - i, out + o, '/', '%');
            i += run;
            o += run;
            if (i >= n || p[i] == '/') break;
            o += normalise_one_escape(p + i, n - i, out + o, 0, &used);
            i += used;
        }
        written = o - at - 1;
        if (written == 1 && out[at + 1] == '.') {
            o = at;
            if (i >= n) out[o++] = '/';
        } else if (written == 2 && out[at + 1] == '.' && out[at + 2] == '.') {
            o = at;
            if (o > 0) { /* drop the last kept "/segment" */
                while (out[o - 1] != '/') o--;
                o--;
            }
            if (i >= n) out[o++] = '/';
        }
    }
    if (o == 0) out[o++] = '/';
    return o;
}

/* Is the port (digits, leading zeros allowed) the scheme's default, or empty? */
static int is_default_port(const uint8_t *scheme, size_t scheme_len, const uint8_t *port, size_t port_len)
{
    const char *default_port = NULL;
    size_t k = 0;
    if (port_len == 0) return 1;
    if (scheme_len == 4 && memcmp(scheme, "http", 4) == 0) default_port = "80";
    else if (scheme_len == 5 && memcmp(scheme, "https", 5) == 0) default_port = "443";
    else if (scheme_len == 3 && memcmp(scheme, "ftp", 3) == 0) default_port = "21";
    if (default_port == NULL) return 0;
    for (k = 0; k < port_len; k++)
        if (port[k] < '0' || port[k] > '9') return 0;
    for (k = 0; k < port_len && port[k] == '0'; k++) {
    }
    return port_len - k == strlen(default_port) && memcmp(port + k, default_port, port_len - k) == 0;
}

/* Where the host ends and the port starts inside [start, end) of an authority
 * without userinfo. port_at is end when there is no port (no ':'). */
static void split_host_port(const uint8_t *p, size_t start, size_t end, size_t *host_end, size_t *port_at)
{
    const uint8_t *colon;
    *host_end = end;
    *port_at = end;
    if (start < end && p[start] == '[') {
        const uint8_t *close = (const uint8_t *)memchr(p + start, ']', end - start);
        if (close != NULL) {
            size_t after = (size_t)(close - p) + 1;
            if (after < end && p[after] == ':') {
                *host_end = after;
                *port_at = after + 1;
            }
        }
        return;
    }
    colon = (const uint8_t *)memchr(p + start, ':', end - start);
    if (colon != NULL) {
        *host_end = (size_t)(colon - p);
        *port_at = *host_end + 1;
    }
}

/* Length of the "scheme://" prefix at p (0 if none). */
static size_t scheme_prefix(const uint8_t *p, size_t n)
{
    size_t i = 0;
    if (n == 0 || !((p[0] | 32) >= 'a' && (p[0] | 32) <= 'z')) return 0;
    while (i < n && SCHEME_CHAR[p[i]]) i++;
    if (n - i >= 3 && p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/') return i + 3;
    return 0;
}

/* Canonical form of one URL into out (room for 3n + CANON_SLACK bytes).
 * Returns its length, or CANON_FALLBACK when the host is not ASCII (the
 * Python reference then does IDNA). Follows safeset/signals/url.py step by
 * step. */
static size_t canonical_url_one(const uint8_t *p, size_t n, uint8_t *out)
{
    size_t start = 0, end = n, prefix, authority, authority_end, path_end, host_start, host_end, port_at;
    size_t o = 0, k, host_out;
    const uint8_t *found;

    while (start < end && is_c0_or_space(p[start])) start++;
    while (end > start && is_c0_or_space(p[end - 1])) end--;
    p += start;
    n = end - start;
    prefix = scheme_prefix(p, n);
    if (prefix == 0) {
        memcpy(out, p, n);
        return n;
    }
    authority = prefix;
    found = (const uint8_t *)memchr(p + authority, '#', n - authority);
    if (found != NULL) {
        n = (size_t)(found - p);
        while (n > authority && is_c0_or_space(p[n - 1])) n--;
    }
    authority_end = authority + find_either(p + authority, n - authority, '/', '?');
    found = (const uint8_t *)memchr(p + authority_end, '?', n - authority_end);
    path_end = found ? (size_t)(found - p) : n;

    host_start = authority;
    for (k = authority_end; k > authority; k--) {
        if (p[k - 1] == '@') {
            host_start = k;
            break;
        }
    }
    split_host_port(p, host_start, authority_end, &host_end, &port_at);
    for (k = host_start; k < host_end; k++)
        if (p[k] >= 0x80) return CANON_FALLBACK;

    for (k = 0; k + 3 < prefix; k++) out[o++] = ascii_lower(p[k]);
    out[o++] = ':';
    out[o++] = '/';
    out[o++] = '/';
    o += normalise_escapes(p + authority, host_start - authority, out + o);
    host_out = o;
    o += normalise_host(p + host_start, host_end - host_start, out + o);
    if (host_end == host_start || p[host_start] != '[') {
        while (o > host_out && out[o - 1] == '.') o--;
    }
    if (host_end < authority_end && !is_default_port(out, prefix - 3, p + port_at, authority_end - port_at)) {
        out[o++] = ':';
        memcpy(out + o, p + port_at, authority_end - port_at);
        o += authority_end - port_at;
    }
    o += canonical_path(p + authority_end, path_end - authority_end, out + o);
    o += normalise_escapes(p + path_end, n - path_end, out + o);
    return o;
}

/* Is "/." or "/.." at p[0..] (p[0] == '/', p[1] == '.') a whole path segment? */
static inline int is_dot_segment_at(const uint8_t *p, size_t n)
{
    size_t after = (n > 2 && p[2] == '.') ? 3 : 2;
    return after >= n || p[after] == '/' || p[after] == '?';
}

/* Path and query of a URL that is canonical so far: 1 if they need no change
 * (no escapes, no fragment, no dot-segments). Conservative: '%' anywhere
 * means "let the full code decide". */
static int path_and_query_are_plain(const uint8_t *p, size_t n)
{
    size_t i = 0;
#if SAFESET_SSE2
    const __m128i slash = _mm_set1_epi8('/'), dot = _mm_set1_epi8('.'), question = _mm_set1_epi8('?');
    while (i + 17 <= n) {
        __m128i chunk = _mm_loadu_si128((const __m128i *)(p + i));
        __m128i next = _mm_loadu_si128((const __m128i *)(p + i + 1));
        unsigned int bad = match_mask(chunk, '%', '#');
        unsigned int stop = (unsigned int)_mm_movemask_epi8(_mm_cmpeq_epi8(chunk, question));
        unsigned int slash_dot = (unsigned int)_mm_movemask_epi8(
            _mm_and_si128(_mm_cmpeq_epi8(chunk, slash), _mm_cmpeq_epi8(next, dot)));
        if (stop) { /* the query starts here: only bytes before it are path */
            unsigned int before = (stop & (0u - stop)) - 1u;
            bad &= before;
            slash_dot &= before;
        }
        if (bad) return 0;
        while (slash_dot) {
            if (is_dot_segment_at(p + i + (size_t)__builtin_ctz(slash_dot), n - i - (size_t)__builtin_ctz(slash_dot)))
                return 0;
            slash_dot &= slash_dot - 1u;
        }
        if (stop) {
            i += (size_t)__builtin_ctz(stop);
            goto query;
        }
        i += 16;
    }
#endif
    for (; i < n; i++) {
        uint8_t c = p[i];
        if (!PATH_SPECIAL[c]) continue;
        if (c == '?') goto query;
        if (c != '/') return 0; /* '%' or '#' */
        if (i + 1 < n && p[i + 1] == '.' && is_dot_segment_at(p + i, n - i)) return 0;
    }
    return 1;
query:
    return find_either(p + i, n - i, '%', '#') == n - i;
}

/* A quick, conservative test: 1 only if canonical_url_one(p) would return p
 * unchanged. It gives up (0) on anything unusual (userinfo, IPv6, escapes,
 * upper case, non-ASCII host, default port ...) and lets the full code
 * decide. Most URLs in web datasets are already canonical; this keeps them
 * cheap. */
static int is_plainly_canonical(const uint8_t *p, size_t n)
{
    size_t i = 1, authority, port_at = 0, host_end;
    if (n == 0) return 1;
    if (is_c0_or_space(p[0]) || is_c0_or_space(p[n - 1])) return 0;
    if (!(p[0] >= 'a' && p[0] <= 'z')) return !(p[0] >= 'A' && p[0] <= 'Z'); /* no scheme: as is */
    while (i < n && SCHEME_CHAR[p[i]]) {
        if (p[i] >= 'A' && p[i] <= 'Z') return 0;
        i++;
    }
    if (!(n - i >= 3 && p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/')) return 1;
    authority = i + 3;
    for (i = authority;; i++) {
        i += skip_host_plain(p + i, n - i);
        if (i == n) return 0; /* empty path becomes "/" */
        if (p[i] == '/') break;
        if (p[i] != ':') return 0; /* userinfo, IPv6, escape, upper case, non-ASCII ... */
        if (port_at == 0) port_at = i + 1;
    }
    host_end = port_at ? port_at - 1 : i;
    if (host_end > authority && p[host_end - 1] == '.') return 0;
    if (port_at && is_default_port(p, authority - 3, p + port_at, i - port_at)) return 0;
    return path_and_query_are_plain(p + i, n - i);
}

#if SAFESET_X86
/* is_plainly_canonical for URLs of up to 128 bytes, with AVX-512 byte masks:
 * every byte class the test looks at is found for the whole URL at once, and
 * the answer comes from a few bit operations on those masks. Same answers as
 * is_plainly_canonical (the tests compare both); longer URLs go there. */
typedef unsigned __int128 Mask128;

AVX512_TARGET static inline Mask128 byte_mask2(__m512i lo, __m512i hi, char c)
{
    const __m512i wanted = _mm512_set1_epi8(c);
    return (Mask128)_mm512_cmpeq_epi8_mask(lo, wanted) | ((Mask128)_mm512_cmpeq_epi8_mask(hi, wanted) << 64);
}

AVX512_TARGET static inline Mask128 range_mask2(__m512i lo, __m512i hi, uint8_t first, uint8_t last)
{
    const __m512i base = _mm512_set1_epi8((char)first), span = _mm512_set1_epi8((char)(last - first));
    return (Mask128)_mm512_cmple_epu8_mask(_mm512_sub_epi8(lo, base), span) |
           ((Mask128)_mm512_cmple_epu8_mask(_mm512_sub_epi8(hi, base), span) << 64);
}

static inline Mask128 bits_from(size_t k) /* bits k..127 */
{
    return k >= 128 ? 0 : (~(Mask128)0) << k;
}

static inline size_t lowest_bit(Mask128 m)
{
    uint64_t low = (uint64_t)m;
    return low ? (size_t)__builtin_ctzll(low) : 64 + (size_t)__builtin_ctzll((uint64_t)(m >> 64));
}

AVX512_TARGET static int is_plainly_canonical_avx512(const uint8_t *p, size_t n)
{
    size_t i = 1, authority, stop, host_end, query;
    __mmask64 take_lo, take_hi, take_next_lo, take_next_hi;
    __m512i lo, hi, next_lo, next_hi;
    Mask128 in_url, colons, plain_host, slash_dots, stops;
    if (n == 0 || n > 128) return is_plainly_canonical(p, n);
    if (is_c0_or_space(p[0]) || is_c0_or_space(p[n - 1])) return 0;
    if (!(p[0] >= 'a' && p[0] <= 'z')) return !(p[0] >= 'A' && p[0] <= 'Z'); /* no scheme: as is */
    while (i < n && SCHEME_CHAR[p[i]]) {
        if (p[i] >= 'A' && p[i] <= 'Z') return 0;
        i++;
    }
    if (!(n - i >= 3 && p[i] == ':' && p[i + 1] == '/' && p[i + 2] == '/')) return 1;
    authority = i + 3;

    take_lo = n >= 64 ? ~(__mmask64)0 : (~(__mmask64)0 >> (64 - n));
    take_hi = n > 64 ? (~(__mmask64)0 >> (128 - n)) : 0;
    take_next_lo = n - 1 >= 64 ? ~(__mmask64)0 : (n > 1 ? ~(__mmask64)0 >> (65 - n) : 0);
    take_next_hi = n - 1 > 64 ? (~(__mmask64)0 >> (129 - n)) : 0;
    lo = _mm512_maskz_loadu_epi8(take_lo, p);
    hi = _mm512_maskz_loadu_epi8(take_hi, p + 64);
    next_lo = _mm512_maskz_loadu_epi8(take_next_lo, p + 1);
    next_hi = _mm512_maskz_loadu_epi8(take_next_hi, p + 65);
    in_url = ~bits_from(n);

    /* Host bytes the canonical form keeps: printable ASCII but upper case and / ? # % @ [ : */
    plain_host = range_mask2(lo, hi, 0x21, 0x7e) & ~range_mask2(lo, hi, 'A', 'Z') & ~byte_mask2(lo, hi, '/') &
                 ~byte_mask2(lo, hi, '?') & ~byte_mask2(lo, hi, '#') & ~byte_mask2(lo, hi, '%') &
                 ~byte_mask2(lo, hi, '@') & ~byte_mask2(lo, hi, '[');
    colons = byte_mask2(lo, hi, ':');
    /* The authority ends at the first byte that is neither plain nor ':'; it must be '/'. */
    stops = ~(plain_host | colons) & in_url & bits_from(authority);
    if (!stops) return 0; /* no path: it becomes "/" */
    stop = lowest_bit(stops);
    if (p[stop] != '/') return 0; /* userinfo, IPv6, escape, upper case, non-ASCII, '?' ... */
    colons &= bits_from(authority) & ~bits_from(stop);
    host_end = colons ? lowest_bit(colons) : stop;
    if (host_end > authority && p[host_end - 1] == '.') return 0;
    if (colons && is_default_port(p, authority - 3, p + host_end + 1, stop - host_end - 1)) return 0;

    /* Path and query: no escapes or fragment; no "." or ".." segment before the query. */
    if ((byte_mask2(lo, hi, '%') | byte_mask2(lo, hi, '#')) & in_url & bits_from(stop)) return 0;
    {
        Mask128 questions = byte_mask2(lo, hi, '?') & in_url & bits_from(stop);
        query = questions ? lowest_bit(questions) : n;
    }
    slash_dots = byte_mask2(lo, hi, '/') & byte_mask2(next_lo, next_hi, '.') & bits_from(stop) & ~bits_from(query);
    while (slash_dots) {
        size_t at = lowest_bit(slash_dots);
        if (is_dot_segment_at(p + at, n - at)) return 0;
        slash_dots &= slash_dots - 1;
    }
    return 1;
}
#endif

/* The fastest is_plainly_canonical this CPU has. */
static inline int url_is_plainly_canonical(const uint8_t *p, size_t n)
{
#if SAFESET_X86
    if (HAVE_AVX512 && SIMD_LIMIT >= 2) return is_plainly_canonical_avx512(p, n);
#endif
    return is_plainly_canonical(p, n);
}

PyDoc_STRVAR(canonical_changes_doc,
"canonical_changes(validity, offsets, data, offset, length, large)\n"
"  -> (rows, offsets, data, fallback_rows)\n\n"
"The rows whose canonical form differs from the raw text, and that form:\n"
"rows (int64, ascending), offsets (int64, len(rows) + 1) and data of the\n"
"canonical text of those rows only. fallback_rows (int64): rows this code\n"
"leaves to Python (non-ASCII hosts). Nulls are never changed.");

/* One scratch buffer kept between calls (taken and given back under the GIL),
 * so batches do not pay for fresh pages every time. */
static ByteBuffer SCRATCH_POOL = {NULL, 0, 0};

static ByteBuffer scratch_take(void)
{
    ByteBuffer buffer = SCRATCH_POOL;
    SCRATCH_POOL.bytes = NULL;
    SCRATCH_POOL.capacity = 0;
    buffer.used = 0;
    return buffer;
}

static void scratch_give_back(ByteBuffer buffer)
{
    if (SCRATCH_POOL.bytes == NULL && buffer.capacity <= ((size_t)64 << 20)) {
        SCRATCH_POOL = buffer;
        SCRATCH_POOL.used = 0;
    } else {
        free(buffer.bytes);
    }
}

static int bytebuffer_push64(ByteBuffer *buffer, int64_t value)
{
    if (bytebuffer_reserve(buffer, 8) < 0) return -1;
    memcpy(buffer->bytes + buffer->used, &value, 8);
    buffer->used += 8;
    return 0;
}

static PyObject *bytes_of(const ByteBuffer *buffer)
{
    return PyBytes_FromStringAndSize(buffer->bytes ? (const char *)buffer->bytes : "", (Py_ssize_t)buffer->used);
}

enum { CANON_PREFETCH_AHEAD = 16 };

static PyObject *native_canonical_changes(PyObject *self, PyObject *args)
{
    PyObject *validity, *offsets, *data, *result = NULL;
    Py_ssize_t offset, length, i;
    int large, failed = 0;
    Column col;
    /* text: canonical text of changed rows; rows, ends: their row and end offset (int64) */
    ByteBuffer text, rows = {NULL, 0, 0}, ends = {NULL, 0, 0}, fallback = {NULL, 0, 0};
    (void)self;

    if (!PyArg_ParseTuple(args, "OOOnnp", &validity, &offsets, &data, &offset, &length, &large)) return NULL;
    if (column_open(&col, validity, offsets, data, offset, length, large) < 0) return NULL;
    text = scratch_take();
    Py_BEGIN_ALLOW_THREADS
    failed = bytebuffer_push64(&ends, 0);
    for (i = 0; i < length && !failed; i++) {
        size_t n, written;
        const uint8_t *p;
        int64_t start;
        if (i + CANON_PREFETCH_AHEAD < length && col.data) { /* the URLs a few rows on, two cache lines each */
            const uint8_t *ahead = col.data + column_start(&col, i + CANON_PREFETCH_AHEAD);
            __builtin_prefetch(ahead);
            __builtin_prefetch(ahead + 64);
        }
        if (!column_is_valid(&col, i)) continue;
        start = column_start(&col, i);
        p = col.data ? col.data + start : (const uint8_t *)"";
        n = (size_t)(column_end(&col, i) - start);
        if (url_is_plainly_canonical(p, n)) continue;
        if (bytebuffer_reserve(&text, 3 * n + CANON_SLACK) < 0) {
            failed = 1;
            break;
        }
        written = canonical_url_one(p, n, text.bytes + text.used);
        if (written == CANON_FALLBACK) {
            failed = bytebuffer_push64(&fallback, (int64_t)i);
        } else if (written != n || memcmp(p, text.bytes + text.used, n) != 0) {
            text.used += written;
            failed = bytebuffer_push64(&rows, (int64_t)i) || bytebuffer_push64(&ends, (int64_t)text.used);
        }
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
    } else {
        result = Py_BuildValue("(NNNN)", bytes_of(&rows), bytes_of(&ends), bytes_of(&text), bytes_of(&fallback));
    }
    scratch_give_back(text);
    free(rows.bytes);
    free(ends.bytes);
    free(fallback.bytes);
    column_close(&col);
    return result;
}

PyDoc_STRVAR(replace_rows_doc,
"replace_rows(validity, offsets, data, offset, length, large, rows, new_offsets, new_data)\n"
"  -> (offsets, data)\n\n"
"An int64-offsets string layout of every row of the column, where row\n"
"rows[k] (int64, ascending, in range) holds new_data[new_offsets[k]:\n"
"new_offsets[k + 1]] instead. Null rows come out empty.");

static PyObject *native_replace_rows(PyObject *self, PyObject *args)
{
    PyObject *validity, *offsets, *data, *result = NULL;
    PyObject *out_offsets_bytes = NULL, *out_data_bytes = NULL;
    Py_ssize_t offset, length, count, k;
    int large;
    Column col;
    Py_buffer rows_view, new_offsets_view, new_data_view;
    const int64_t *rows, *new_offsets;
    int64_t total = 0;
    (void)self;

    if (!PyArg_ParseTuple(args, "OOOnnpy*y*y*", &validity, &offsets, &data, &offset, &length, &large,
                          &rows_view, &new_offsets_view, &new_data_view))
        return NULL;
    if (column_open(&col, validity, offsets, data, offset, length, large) < 0) goto release;
    count = rows_view.len / 8;
    rows = (const int64_t *)rows_view.buf;
    new_offsets = (const int64_t *)new_offsets_view.buf;
    if (rows_view.len % 8 || new_offsets_view.len != (count + 1) * 8 || new_offsets[0] != 0 ||
        new_offsets[count] != (int64_t)new_data_view.len) {
        PyErr_SetString(PyExc_ValueError, "replace_rows: rows and new offsets disagree");
        goto close;
    }
    for (k = 0; k < count; k++) {
        if (rows[k] < 0 || rows[k] >= length || (k > 0 && rows[k] <= rows[k - 1]) ||
            new_offsets[k + 1] < new_offsets[k]) {
            PyErr_SetString(PyExc_ValueError, "replace_rows: rows must be ascending and in range");
            goto close;
        }
    }
    for (k = 0, total = new_offsets[count]; k < length; k++) {
        if (column_is_valid(&col, k)) total += column_end(&col, k) - column_start(&col, k);
    }
    for (k = 0; k < count; k++) {
        if (column_is_valid(&col, rows[k])) total -= column_end(&col, rows[k]) - column_start(&col, rows[k]);
    }
    out_offsets_bytes = PyBytes_FromStringAndSize(NULL, (length + 1) * 8);
    out_data_bytes = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)total);
    if (out_offsets_bytes == NULL || out_data_bytes == NULL) goto close;
    {
        int64_t *out_offsets = (int64_t *)PyBytes_AS_STRING(out_offsets_bytes);
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(out_data_bytes);
        const uint8_t *replacements = (const uint8_t *)new_data_view.buf;
        int64_t used = 0;
        Py_ssize_t next = 0;
        Py_BEGIN_ALLOW_THREADS
        out_offsets[0] = 0;
        for (k = 0; k < length; k++) {
            if (next < count && rows[next] == k) {
                int64_t n = new_offsets[next + 1] - new_offsets[next];
                memcpy(out + used, replacements + new_offsets[next], (size_t)n);
                used += n;
                next++;
            } else if (column_is_valid(&col, k)) {
                int64_t start = column_start(&col, k), n = column_end(&col, k) - start;
                if (n) memcpy(out + used, col.data + start, (size_t)n);
                used += n;
            }
            out_offsets[k + 1] = used;
        }
        Py_END_ALLOW_THREADS
    }
    result = Py_BuildValue("(OO)", out_offsets_bytes, out_data_bytes);
close:
    Py_XDECREF(out_offsets_bytes);
    Py_XDECREF(out_data_bytes);
    column_close(&col);
release:
    PyBuffer_Release(&rows_view);
    PyBuffer_Release(&new_offsets_view);
    PyBuffer_Release(&new_data_view);
    return result;
}

PyDoc_STRVAR(hosts_doc,
"hosts(validity, offsets, data, offset, length, large) -> (offsets, data, valid)\n\n"
"Host of each canonical URL: no userinfo, port or IPv6 brackets. offsets are\n"
"int64; valid is one byte per row, 0 for nulls and rows without a host.");

static PyObject *native_hosts(PyObject *self, PyObject *args)
{
    PyObject *validity, *offsets, *data, *offsets_bytes = NULL, *data_bytes = NULL, *valid_bytes = NULL;
    PyObject *result = NULL;
    Py_ssize_t offset, length, i;
    int large;
    Column col;
    (void)self;

    if (!PyArg_ParseTuple(args, "OOOnnp", &validity, &offsets, &data, &offset, &length, &large)) return NULL;
    if (column_open(&col, validity, offsets, data, offset, length, large) < 0) return NULL;
    offsets_bytes = PyBytes_FromStringAndSize(NULL, (length + 1) * 8);
    valid_bytes = PyBytes_FromStringAndSize(NULL, length);
    /* A host is a substring of its URL, so the input size bounds the output. */
    data_bytes = PyBytes_FromStringAndSize(NULL, length ? column_end(&col, length - 1) - column_start(&col, 0) : 0);
    if (offsets_bytes == NULL || valid_bytes == NULL || data_bytes == NULL) goto done;
    {
        int64_t *out_offsets = (int64_t *)PyBytes_AS_STRING(offsets_bytes);
        uint8_t *valid = (uint8_t *)PyBytes_AS_STRING(valid_bytes);
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(data_bytes);
        int64_t o = 0;
        Py_BEGIN_ALLOW_THREADS
        out_offsets[0] = 0;
        for (i = 0; i < length; i++) {
            valid[i] = 0;
            if (column_is_valid(&col, i)) {
                const uint8_t *p = col.data ? col.data + column_start(&col, i) : (const uint8_t *)"";
                size_t n = (size_t)(column_end(&col, i) - column_start(&col, i));
                size_t prefix = scheme_prefix(p, n), end, host_start, host_end, port_at, k;
                if (prefix) {
                    end = prefix;
                    while (end < n && p[end] != '/' && p[end] != '?' && p[end] != '#') end++;
                    host_start = prefix;
                    for (k = end; k > prefix; k--) {
                        if (p[k - 1] == '@') {
                            host_start = k;
                            break;
                        }
                    }
                    split_host_port(p, host_start, end, &host_end, &port_at);
                    if (host_end - host_start >= 2 && p[host_start] == '[' && p[host_end - 1] == ']') {
                        host_start++;
                        host_end--;
                    }
                    if (host_end > host_start) {
                        memcpy(out + o, p + host_start, host_end - host_start);
                        o += (int64_t)(host_end - host_start);
                        valid[i] = 1;
                    }
                }
            }
            out_offsets[i + 1] = o;
        }
        Py_END_ALLOW_THREADS
        if (_PyBytes_Resize(&data_bytes, (Py_ssize_t)o) < 0) goto done;
    }
    result = Py_BuildValue("(OOO)", offsets_bytes, data_bytes, valid_bytes);
done:
    Py_XDECREF(offsets_bytes);
    Py_XDECREF(data_bytes);
    Py_XDECREF(valid_bytes);
    column_close(&col);
    return result;
}

/* ======================================================================
 * Module
 * ====================================================================== */

static PyObject *native_features(PyObject *self, PyObject *args)
{
    (void)self;
    (void)args;
    return Py_BuildValue("{s:O,s:O,s:O,s:O,s:i}", "avx2", HAVE_AVX2 ? Py_True : Py_False, "avx512",
                         HAVE_AVX512 ? Py_True : Py_False, "sha_ni", HAVE_SHA_NI ? Py_True : Py_False,
                         "accelerated", SIMD_LIMIT > 0 ? Py_True : Py_False, "simd_limit", SIMD_LIMIT);
}

static PyObject *native_use_accelerated(PyObject *self, PyObject *args)
{
    int flag;
    (void)self;
    if (!PyArg_ParseTuple(args, "p", &flag)) return NULL;
    SIMD_LIMIT = flag ? 2 : 0;
    Py_RETURN_NONE;
}

static PyObject *native_limit_simd(PyObject *self, PyObject *args)
{
    int level;
    (void)self;
    if (!PyArg_ParseTuple(args, "i", &level)) return NULL;
    if (level < 0 || level > 2) {
        PyErr_SetString(PyExc_ValueError, "limit_simd: 0 (portable), 1 (AVX2, SHA extensions) or 2 (AVX-512)");
        return NULL;
    }
    SIMD_LIMIT = level;
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ bitmap prefilter */

/* How many rows ahead the bitmap probe prefetches: enough cache misses in
 * flight to cover a trip to memory, on a bitmap of tens of megabytes. */
#define PROBE_AHEAD 24

/* A key's first 8 bytes as a big-endian number. */
static inline uint64_t key_prefix(const uint8_t *key)
{
    uint64_t word;
    memcpy(&word, key, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return word;
#else
    return __builtin_bswap64(word);
#endif
}

/* One pass of a prefilter over a batch's keys: the rows that may be in the
 * index (flags: NULL, or 0 = skip the row). Runs without the GIL. */
typedef Py_ssize_t (*ProbeLoop)(const uint8_t *keys, Py_ssize_t key_size, Py_ssize_t n, const uint64_t *words,
                                int param, const uint8_t *flags, int64_t *rows);

static Py_ssize_t bitmap_probe(const uint8_t *k, Py_ssize_t key_size, Py_ssize_t n, const uint64_t *words, int shift,
                               const uint8_t *flags, int64_t *rows)
{
    Py_ssize_t i, found = 0;
    for (i = 0; i < n; i++) {
        uint64_t slot;
        if (i + PROBE_AHEAD < n) /* start the next lookups' cache misses early */
            __builtin_prefetch(words + ((key_prefix(k + (size_t)(i + PROBE_AHEAD) * (size_t)key_size) >> shift) >> 6));
        if (flags != NULL && !flags[i]) continue;
        slot = key_prefix(k + (size_t)i * (size_t)key_size) >> shift;
        if ((words[slot >> 6] >> (slot & 63)) & 1) rows[found++] = i;
    }
    return found;
}

static inline uint64_t filter_mask(uint64_t prefix, int word_bits)
{
    return ((uint64_t)1 << ((prefix >> (58 - word_bits)) & 63)) | ((uint64_t)1 << ((prefix >> (52 - word_bits)) & 63)) |
           ((uint64_t)1 << ((prefix >> (46 - word_bits)) & 63));
}

static Py_ssize_t filter_probe(const uint8_t *k, Py_ssize_t key_size, Py_ssize_t n, const uint64_t *words,
                               int word_bits, const uint8_t *flags, int64_t *rows)
{
    Py_ssize_t i, found = 0;
    int shift = 64 - word_bits;
    for (i = 0; i < n; i++) {
        uint64_t prefix, mask;
        if (i + PROBE_AHEAD < n) /* start the next lookups' cache misses early */
            __builtin_prefetch(words + (key_prefix(k + (size_t)(i + PROBE_AHEAD) * (size_t)key_size) >> shift));
        if (flags != NULL && !flags[i]) continue;
        prefix = key_prefix(k + (size_t)i * (size_t)key_size);
        mask = filter_mask(prefix, word_bits);
        if ((words[prefix >> shift] & mask) == mask) rows[found++] = i;
    }
    return found;
}

/* What both prefilter entry points share: the valid mask, the output, the loop without the GIL. */
static PyObject *run_probe(ProbeLoop loop, const char *name, Py_buffer *keys, Py_ssize_t key_size, Py_buffer *words,
                           int param, PyObject *valid_obj)
{
    Py_buffer valid = {0};
    Py_ssize_t n = keys->len / key_size, found = 0;
    PyObject *result = NULL;
    int64_t *rows;
    const uint8_t *flags = NULL;
    if (valid_obj != Py_None) {
        if (PyObject_GetBuffer(valid_obj, &valid, PyBUF_SIMPLE) < 0) return NULL;
        if (valid.len != n) {
            PyErr_Format(PyExc_ValueError, "%s: valid has the wrong length", name);
            goto done;
        }
        flags = (const uint8_t *)valid.buf;
    }
    rows = (int64_t *)malloc((size_t)(n > 0 ? n : 1) * sizeof(int64_t));
    if (rows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    found = loop((const uint8_t *)keys->buf, key_size, n, (const uint64_t *)words->buf, param, flags, rows);
    Py_END_ALLOW_THREADS
    result = PyBytes_FromStringAndSize((const char *)rows, found * (Py_ssize_t)sizeof(int64_t));
    free(rows);
done:
    if (valid.obj != NULL) PyBuffer_Release(&valid);
    return result;
}

PyDoc_STRVAR(bitmap_candidates_doc,
"bitmap_candidates(keys, key_size, bitmap, shift, valid) -> bytes\n\n"
"Rows whose key may be in an exact digest index with a bitmap (stores built\n"
"before the Bloom filter): the bitmap has the bit of the key's first 8 bytes\n"
"(big-endian) shifted right by `shift` set. keys: n * key_size bytes; bitmap:\n"
"uint64 words (native order); valid: None or one byte per row (0 = skip).\n"
"Returns int64 row indices, ascending.");

static PyObject *native_bitmap_candidates(PyObject *self, PyObject *args)
{
    Py_buffer keys, bitmap;
    Py_ssize_t key_size;
    int shift;
    PyObject *valid_obj, *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*ny*iO", &keys, &key_size, &bitmap, &shift, &valid_obj)) return NULL;
    if (key_size < 8 || keys.len % key_size != 0 || shift < 0 || shift > 63 || bitmap.len % 8 != 0)
        PyErr_SetString(PyExc_ValueError, "bitmap_candidates: bad key size, shift or bitmap");
    else if ((((uint64_t)1 << 63) >> shift) / 4 > (uint64_t)bitmap.len)
        PyErr_SetString(PyExc_ValueError, "bitmap_candidates: bitmap smaller than the shift implies");
    else
        result = run_probe(bitmap_probe, "bitmap_candidates", &keys, key_size, &bitmap, shift, valid_obj);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&bitmap);
    return result;
}

PyDoc_STRVAR(filter_candidates_doc,
"filter_candidates(keys, key_size, words, word_bits, valid) -> bytes\n\n"
"Rows whose key may be in an exact digest index, by its blocked Bloom filter:\n"
"a key's first 8 bytes p (big-endian) pick word p >> (64 - word_bits) and the\n"
"bits (p >> (58 - word_bits)) & 63, (p >> (52 - word_bits)) & 63 and\n"
"(p >> (46 - word_bits)) & 63 there; all three must be set. keys: n *\n"
"key_size bytes; words: 2^word_bits uint64; valid: None or one byte per row\n"
"(0 = skip). Returns int64 row indices, ascending.");

static PyObject *native_filter_candidates(PyObject *self, PyObject *args)
{
    Py_buffer keys, words;
    Py_ssize_t key_size;
    int word_bits;
    PyObject *valid_obj, *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*ny*iO", &keys, &key_size, &words, &word_bits, &valid_obj)) return NULL;
    if (key_size < 8 || keys.len % key_size != 0 || word_bits < 1 || word_bits > 46 ||
        words.len != ((Py_ssize_t)8 << word_bits))
        PyErr_SetString(PyExc_ValueError, "filter_candidates: bad key size, word count or filter size");
    else
        result = run_probe(filter_probe, "filter_candidates", &keys, key_size, &words, word_bits, valid_obj);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&words);
    return result;
}

PyDoc_STRVAR(sorted_lookup_doc,
"sorted_lookup(queries, key_size, rows, prefixes, coarse, keys, entry_ids) -> (rows, ids)\n\n"
"Every (row, entry id) whose key equals queries[row], for the candidate rows\n"
"(int64, ascending) the bitmap let through. prefixes: the index's sorted\n"
"uint64 key prefixes; coarse: every COARSE-th of them (a small table that\n"
"stays in cache); keys: the sorted keys, key_size bytes each; entry_ids:\n"
"int64 per key. Returns two int64 byte strings, rows ascending.");

enum { COARSE_STRIDE = 256, LOOKUP_GROUP = 16 };

/* First i in [low, high) with sorted[i] >= value (high if none). */
static inline Py_ssize_t lower_bound_u64(const uint64_t *sorted, Py_ssize_t low, Py_ssize_t high, uint64_t value)
{
    while (low < high) {
        Py_ssize_t middle = low + (high - low) / 2;
        if (sorted[middle] < value)
            low = middle + 1;
        else
            high = middle;
    }
    return low;
}

static PyObject *native_sorted_lookup(PyObject *self, PyObject *args)
{
    Py_buffer queries, rows, prefixes, coarse, keys, ids;
    Py_ssize_t key_size, n_rows, n_keys, n_coarse, n_queries, k;
    PyObject *result = NULL;
    int64_t *found_rows = NULL, *found_ids = NULL;
    Py_ssize_t found = 0, capacity = 0;
    int failed = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*ny*y*y*y*y*", &queries, &key_size, &rows, &prefixes, &coarse, &keys, &ids))
        return NULL;
    n_rows = rows.len / 8;
    n_keys = prefixes.len / 8;
    n_coarse = coarse.len / 8;
    n_queries = key_size > 0 ? queries.len / key_size : 0;
    if (key_size < 8 || queries.len % key_size || rows.len % 8 || prefixes.len % 8 || coarse.len % 8 ||
        keys.len != n_keys * key_size || ids.len != n_keys * 8 ||
        n_coarse != (n_keys + COARSE_STRIDE - 1) / COARSE_STRIDE) {
        PyErr_SetString(PyExc_ValueError, "sorted_lookup: buffers of inconsistent sizes");
        goto done;
    }
    for (k = 0; k < n_rows; k++) {
        int64_t row = ((const int64_t *)rows.buf)[k];
        if (row < 0 || row >= n_queries) {
            PyErr_SetString(PyExc_IndexError, "sorted_lookup: candidate row out of range");
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS
    {
        const uint64_t *sorted = (const uint64_t *)prefixes.buf, *sample = (const uint64_t *)coarse.buf;
        const uint8_t *key_bytes = (const uint8_t *)keys.buf, *query_bytes = (const uint8_t *)queries.buf;
        const int64_t *candidates = (const int64_t *)rows.buf, *entry_ids = (const int64_t *)ids.buf;
        /* Candidates go LOOKUP_GROUP at a time, their bisections in lockstep: each
         * step starts every search's next cache miss before waiting on any. */
        for (k = 0; k < n_rows && !failed; k += LOOKUP_GROUP) {
            Py_ssize_t group = n_rows - k < LOOKUP_GROUP ? n_rows - k : LOOKUP_GROUP, g, active;
            Py_ssize_t low[LOOKUP_GROUP], high[LOOKUP_GROUP];
            uint64_t wanted[LOOKUP_GROUP];
            for (g = 0; g < group; g++) {
                Py_ssize_t block;
                wanted[g] = key_prefix(query_bytes + candidates[k + g] * key_size);
                block = lower_bound_u64(sample, 0, n_coarse, wanted[g]) - 1; /* the sample stays in cache */
                low[g] = block > 0 ? block * COARSE_STRIDE : 0;
                high[g] = (block + 1) * COARSE_STRIDE < n_keys ? (block + 1) * COARSE_STRIDE : n_keys;
            }
            do {
                active = 0;
                for (g = 0; g < group; g++)
                    if (low[g] < high[g]) __builtin_prefetch(sorted + low[g] + (high[g] - low[g]) / 2);
                for (g = 0; g < group; g++) {
                    if (low[g] < high[g]) {
                        Py_ssize_t middle = low[g] + (high[g] - low[g]) / 2;
                        if (sorted[middle] < wanted[g])
                            low[g] = middle + 1;
                        else
                            high[g] = middle;
                        active |= low[g] < high[g];
                    }
                }
            } while (active);
            for (g = 0; g < group && !failed; g++) { /* low[g]: first key with this prefix, if any */
                int64_t row = candidates[k + g];
                const uint8_t *query = query_bytes + row * key_size;
                Py_ssize_t end;
                for (end = low[g]; end < n_keys && sorted[end] == wanted[g]; end++) {
                    if (memcmp(key_bytes + end * key_size, query, (size_t)key_size) != 0) continue;
                    if (found == capacity) {
                        Py_ssize_t bigger = capacity ? 2 * capacity : 64;
                        int64_t *more_rows = (int64_t *)realloc(found_rows, (size_t)bigger * 8);
                        int64_t *more_ids = more_rows ? (int64_t *)realloc(found_ids, (size_t)bigger * 8) : NULL;
                        if (more_rows) found_rows = more_rows;
                        if (more_ids == NULL) {
                            failed = 1;
                            break;
                        }
                        found_ids = more_ids;
                        capacity = bigger;
                    }
                    found_rows[found] = row;
                    found_ids[found] = entry_ids[end];
                    found++;
                }
            }
        }
    }
    Py_END_ALLOW_THREADS
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_BuildValue("(y#y#)", found_rows ? (const char *)found_rows : "", found * 8,
                           found_ids ? (const char *)found_ids : "", found * 8);
done:
    free(found_rows);
    free(found_ids);
    PyBuffer_Release(&queries);
    PyBuffer_Release(&rows);
    PyBuffer_Release(&prefixes);
    PyBuffer_Release(&coarse);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&ids);
    return result;
}

static PyMethodDef native_methods[] = {
    {"digest", native_digest, METH_VARARGS, digest_doc},
    {"hex_decode", native_hex_decode, METH_VARARGS, hex_decode_doc},
    {"hex_encode", native_hex_encode, METH_VARARGS, hex_encode_doc},
    {"canonical_changes", native_canonical_changes, METH_VARARGS, canonical_changes_doc},
    {"replace_rows", native_replace_rows, METH_VARARGS, replace_rows_doc},
    {"hosts", native_hosts, METH_VARARGS, hosts_doc},
    {"bitmap_candidates", native_bitmap_candidates, METH_VARARGS, bitmap_candidates_doc},
    {"filter_candidates", native_filter_candidates, METH_VARARGS, filter_candidates_doc},
    {"sorted_lookup", native_sorted_lookup, METH_VARARGS, sorted_lookup_doc},
    {"features", native_features, METH_NOARGS, "CPU features found and whether they are used."},
    {"use_accelerated", native_use_accelerated, METH_VARARGS,
     "use_accelerated(flag): use SIMD/SHA-extension code when available (tests turn it off)."},
    {"limit_simd", native_limit_simd, METH_VARARGS,
     "limit_simd(level): use SIMD code up to 0 (none), 1 (AVX2, SHA extensions) or 2 (AVX-512)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef native_module = {
    PyModuleDef_HEAD_INIT, "safeset._native",
    "safeset's batch kernels over Arrow buffers (see safeset.signals.kernels / url).", -1, native_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__native(void)
{
    init_tables();
    detect_cpu();
    return PyModule_Create(&native_module);
}
