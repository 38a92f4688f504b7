/*
 * safeset._pdqfast: PDQ's 64x64 downsampling, quality and 16x16 DCT of one
 * uint8 luma image, in one call with the GIL released.
 *
 * The model and every weight come from Python (safeset/pdq/core.py): the
 * reference's blur-and-decimate along each axis is a 64-row band matrix
 * (`filter_band`), stored as (64, width) column indices and float32 weights.
 * This file only applies them, in the order and precision of the numpy model
 * (`core.downsample`, `core.quality_of_buffer`, `DCT_MATRIX @ b @ DCT_MATRIX.T`):
 * float32 products summed in float32. It replaces about 40 numpy calls per
 * image, and lets the batch form hash on several threads. `band` computes
 * those weights (`core.filter_band`) for image sizes not seen before.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SIDE 64
#define DCT 16

typedef struct {
    const int64_t *columns; /* (SIDE, width) */
    const float *weights;   /* (SIDE, width) */
    Py_ssize_t width;
} Band;

static int band_open(Band *band, Py_buffer *columns, Py_buffer *weights, Py_ssize_t limit, const char *axis)
{
    Py_ssize_t i, count;
    if (columns->len % (SIDE * (Py_ssize_t)sizeof(int64_t)) != 0 ||
        weights->len % (SIDE * (Py_ssize_t)sizeof(float)) != 0 ||
        columns->len / (Py_ssize_t)sizeof(int64_t) != weights->len / (Py_ssize_t)sizeof(float)) {
        PyErr_Format(PyExc_ValueError, "%s band: columns and weights must both be (64, width)", axis);
        return -1;
    }
    band->columns = (const int64_t *)columns->buf;
    band->weights = (const float *)weights->buf;
    band->width = weights->len / (Py_ssize_t)sizeof(float) / SIDE;
    count = SIDE * band->width;
    for (i = 0; i < count; i++) {
        if (band->columns[i] < 0 || band->columns[i] >= limit) {
            PyErr_Format(PyExc_ValueError, "%s band: index %lld outside 0..%zd", axis,
                         (long long)band->columns[i], limit - 1);
            return -1;
        }
    }
    return 0;
}

/* by_rows[r][c] = sum_k weight[r][k] * luma[column[r][k]][c]  (64 x cols; vectorised over c) */
static void filter_rows(const uint8_t *restrict luma, Py_ssize_t cols, const Band *band, float *restrict by_rows)
{
    Py_ssize_t r, k, c;
    for (r = 0; r < SIDE; r++) {
        float *restrict out = by_rows + r * cols;
        memset(out, 0, (size_t)cols * sizeof(float));
        for (k = 0; k < band->width; k++) {
            const float weight = band->weights[r * band->width + k];
            const uint8_t *restrict row = luma + band->columns[r * band->width + k] * cols;
            if (weight == 0.0f) continue;
            for (c = 0; c < cols; c++) out[c] += weight * (float)row[c];
        }
    }
}

/*
 * buffer[r][j] = sum_k weight[j][k] * by_rows[r][column[j][k]]  (64 x 64).
 * The inner loop runs over the 64 outputs j of a row, which are independent
 * (no chain of dependent additions); each sum still adds its terms in k order.
 */
static void filter_columns(const float *restrict by_rows, Py_ssize_t cols, const Band *band,
                           float *restrict buffer)
{
    Py_ssize_t r, j, k;
    float weights[SIDE];
    int64_t columns[SIDE];
    memset(buffer, 0, SIDE * SIDE * sizeof(float));
    for (k = 0; k < band->width; k++) {
        for (j = 0; j < SIDE; j++) {
            weights[j] = band->weights[j * band->width + k];
            columns[j] = band->columns[j * band->width + k];
        }
        for (r = 0; r < SIDE; r++) {
            const float *restrict row = by_rows + r * cols;
            float *restrict out = buffer + r * SIDE;
            for (j = 0; j < SIDE; j++) out[j] += weights[j] * row[columns[j]];
        }
    }
}

/* The reference's image-domain quality: sum of truncated gradients / 90, at most 100. */
static int buffer_quality(const float *buffer)
{
    int64_t gradient_sum = 0;
    int r, c;
    for (r = 0; r < SIDE - 1; r++)
        for (c = 0; c < SIDE; c++) {
            float d = buffer[r * SIDE + c] - buffer[(r + 1) * SIDE + c];
            int64_t v = (int64_t)(d * 100.0f / 255.0f);
            gradient_sum += v < 0 ? -v : v;
        }
    for (r = 0; r < SIDE; r++)
        for (c = 0; c < SIDE - 1; c++) {
            float d = buffer[r * SIDE + c] - buffer[r * SIDE + c + 1];
            int64_t v = (int64_t)(d * 100.0f / 255.0f);
            gradient_sum += v < 0 ? -v : v;
        }
    gradient_sum /= 90;
    return gradient_sum > 100 ? 100 : (int)gradient_sum;
}

/* out = matrix @ buffer @ matrix.T, matrix (16 x 64). The innermost loops run
 * over contiguous, independent outputs (vectorised); sums run in k order. */
static void dct16(const float *restrict buffer, const float *restrict matrix, float *restrict out)
{
    float partial[DCT * SIDE], matrix_t[SIDE * DCT];
    int i, j, k;
    for (i = 0; i < DCT; i++)
        for (k = 0; k < SIDE; k++) matrix_t[k * DCT + i] = matrix[i * SIDE + k];
    memset(partial, 0, sizeof(partial));
    for (i = 0; i < DCT; i++)
        for (k = 0; k < SIDE; k++) {
            const float m = matrix[i * SIDE + k];
            for (j = 0; j < SIDE; j++) partial[i * SIDE + j] += m * buffer[k * SIDE + j];
        }
    memset(out, 0, DCT * DCT * sizeof(float));
    for (i = 0; i < DCT; i++)
        for (k = 0; k < SIDE; k++) {
            const float p = partial[i * SIDE + k];
            for (j = 0; j < DCT; j++) out[i * DCT + j] += p * matrix_t[k * DCT + j];
        }
}

/* The reference's box-filter window for `length` samples shrunk to 64. */
static int64_t box_window(int64_t length) { return (length + 2 * SIDE - 1) / (2 * SIDE); }

/*
 * core.filter_band in C (same steps, same double arithmetic; see its
 * docstring): sample i of the twice-box-filtered signal as weights on block
 * means of `scale` samples. The integral of sample i's kernel up to each
 * block boundary, differenced, gives each block's weight.
 */
static void filter_band(int64_t length, int64_t scale, int64_t reduced, int64_t width, int64_t *columns,
                        float *weights)
{
    const int64_t window = box_window(length);
    const int64_t half = (window + 2) / 2;
    const int64_t left = window - half, right = half - 1;
    int64_t i, t, b;
    for (i = 0; i < SIDE; i++) {
        const int64_t centre = (int64_t)(((double)i + 0.5) * (double)length / (double)SIDE);
        const int64_t centre_low = centre - left > 0 ? centre - left : 0;
        const int64_t centre_high = (centre + right < length - 1 ? centre + right : length - 1) + 1;
        const int64_t span_low = centre - 2 * left > 0 ? centre - 2 * left : 0;
        const int64_t first_block = span_low / scale;
        double previous = 0.0;
        for (b = 0; b <= width; b++) {
            const int64_t block = first_block + b;
            const int64_t boundary = block * scale < length ? block * scale : length;
            double integral = 0.0;
            for (t = 0; t < window; t++) {
                const int64_t k = centre - left + t;
                int64_t k_low, k_high, covered;
                if (k < 0 || k >= length) continue;
                k_low = k - left > 0 ? k - left : 0;
                k_high = (k + right < length - 1 ? k + right : length - 1) + 1;
                covered = boundary - k_low;
                if (covered < 0) covered = 0;
                if (covered > k_high - k_low) covered = k_high - k_low;
                integral += (double)covered * (1.0 / (double)((centre_high - centre_low) * (k_high - k_low)));
            }
            if (b > 0) {
                const int64_t column = block - 1;
                columns[i * width + b - 1] = column < reduced - 1 ? column : reduced - 1;
                weights[i * width + b - 1] = column < reduced ? (float)(integral - previous) : 0.0f;
            }
            previous = integral;
        }
    }
}

PyDoc_STRVAR(band_doc,
"band(length, scale, reduced, width, columns, weights)\n\n"
"Fill columns ((64, width) int64) and weights ((64, width) float32) with the\n"
"reference's blur-and-decimate of `length` samples, as weights on `reduced`\n"
"block means of `scale` samples (core.filter_band; width from there).");

static PyObject *pdqfast_band(PyObject *self, PyObject *args)
{
    Py_ssize_t length, scale, reduced, width;
    Py_buffer columns, weights;
    int ok = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "nnnnw*w*", &length, &scale, &reduced, &width, &columns, &weights)) return NULL;
    if (length < 1 || scale < 1 || reduced != (length + scale - 1) / scale || width < 1) {
        PyErr_SetString(PyExc_ValueError, "bad band geometry");
    } else if (columns.len != SIDE * width * (Py_ssize_t)sizeof(int64_t) ||
               weights.len != SIDE * width * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "columns and weights must be (64, width) int64 and float32");
    } else {
        filter_band(length, scale, reduced, width, (int64_t *)columns.buf, (float *)weights.buf);
        ok = 1;
    }
    PyBuffer_Release(&columns);
    PyBuffer_Release(&weights);
    if (!ok) return NULL;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(dct_doc,
"dct(luma, rows, cols, row_columns, row_weights, col_columns, col_weights, dct_matrix, out) -> quality\n\n"
"luma: rows*cols uint8 (C order). Bands: (64, width) int64 indices and float32\n"
"weights. dct_matrix: (16, 64) float32. Writes the 16x16 float32 DCT into out\n"
"(writable, 1024 bytes) and returns the PDQ quality (0..100).");

static PyObject *pdqfast_dct(PyObject *self, PyObject *args)
{
    Py_buffer luma, row_columns, row_weights, col_columns, col_weights, matrix, out;
    Py_ssize_t rows, cols;
    Band row_band, col_band;
    float *by_rows = NULL, buffer[SIDE * SIDE];
    int quality = -1;
    (void)self;

    if (!PyArg_ParseTuple(args, "y*nny*y*y*y*y*w*", &luma, &rows, &cols, &row_columns, &row_weights,
                          &col_columns, &col_weights, &matrix, &out))
        return NULL;
    if (rows < 1 || cols < 1 || luma.len != rows * cols) {
        PyErr_Format(PyExc_ValueError, "luma has %zd bytes, not rows * cols = %zd * %zd", luma.len, rows, cols);
        goto done;
    }
    if (matrix.len != DCT * SIDE * (Py_ssize_t)sizeof(float) || out.len != DCT * DCT * (Py_ssize_t)sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "dct_matrix must be (16, 64) float32 and out (16, 16) float32");
        goto done;
    }
    if (band_open(&row_band, &row_columns, &row_weights, rows, "row") < 0 ||
        band_open(&col_band, &col_columns, &col_weights, cols, "column") < 0)
        goto done;
    by_rows = (float *)PyMem_RawMalloc((size_t)cols * SIDE * sizeof(float));
    if (by_rows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    filter_rows((const uint8_t *)luma.buf, cols, &row_band, by_rows);
    filter_columns(by_rows, cols, &col_band, buffer);
    quality = buffer_quality(buffer);
    dct16(buffer, (const float *)matrix.buf, (float *)out.buf);
    Py_END_ALLOW_THREADS
    PyMem_RawFree(by_rows);
done:
    PyBuffer_Release(&luma);
    PyBuffer_Release(&row_columns);
    PyBuffer_Release(&row_weights);
    PyBuffer_Release(&col_columns);
    PyBuffer_Release(&col_weights);
    PyBuffer_Release(&matrix);
    PyBuffer_Release(&out);
    if (quality < 0) return NULL;
    return PyLong_FromLong(quality);
}

static PyMethodDef methods[] = {
    {"dct", pdqfast_dct, METH_VARARGS, dct_doc},
    {"band", pdqfast_band, METH_VARARGS, band_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_pdqfast",
                                    "PDQ downsampling, quality and DCT of a luma image, in C.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__pdqfast(void) { return PyModule_Create(&module); }
