"""PDQ's downsampling, DCT, quality and threshold in numpy, for luma at any integer scale.

Why this exists: `fast` mode decodes a JPEG at 1/2, 1/4 or 1/8 scale, and a
hash of that small image is only close to the full-resolution hash if it
samples the *same* points with the *same* blur. PDQ's reference blurs the
full-resolution luma with two passes of a box filter per axis (window
``ceil(n / 128)``) and keeps 64 samples per axis. All of that is linear, so the
64x64 buffer is ``Wr @ luma @ Wc.T`` for two 64-row weight matrices (banded:
each row touches a few columns); when the
decoder hands us block means of ``scale x scale`` pixels, each weight row is
simply summed over those blocks. At scale 1 the weights are exactly the
reference's filter, and the result matches Meta's C++ (the `pdqhash` package)
bit for bit on the conformance images (tests check it).

The DCT, quality metric and median threshold follow the reference too.
For uint8 luma (what decoders give), `safeset._pdqfast` applies the same
weights in C with the GIL released (same float32 arithmetic, about 40 numpy
calls fewer per image); the numpy functions here remain the model, used for
float input and when the extension is not built.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import numpy as np

try:
    from safeset import _pdqfast
except ImportError:  # extension not built: the numpy model does the same work, slower
    _pdqfast = None

BUFFER_SIDE = 64
DCT_SIDE = 16
MIN_HASHABLE_SIDE = 5  # the reference gives an all-zero hash, quality 0, below this


def _build_dct_matrix() -> np.ndarray:
    # Rows 1..16 of the 64-point DCT-II (row 0, the mean, is skipped), with
    # the reference's float32 scale factor, computed in double then stored
    # as float32 as the C++ does.
    scale = float(np.float32(np.sqrt(2.0 / BUFFER_SIDE)))
    i = np.arange(1, DCT_SIDE + 1, dtype=np.float64)[:, None]
    j = np.arange(BUFFER_SIDE, dtype=np.float64)[None, :]
    return (scale * np.cos((np.pi / 2.0 / BUFFER_SIDE) * i * (2.0 * j + 1.0))).astype(np.float32)


DCT_MATRIX = _build_dct_matrix()  # (16, 64)


def box_window(length: int) -> int:
    """The reference's box-filter window for shrinking `length` samples to 64."""
    return (length + 2 * BUFFER_SIDE - 1) // (2 * BUFFER_SIDE)


def sample_positions(length: int) -> np.ndarray:
    """Indices the reference keeps after filtering (its `decimateFloat`)."""
    return ((np.arange(BUFFER_SIDE) + 0.5) * length / BUFFER_SIDE).astype(np.int64)


class Band(NamedTuple):
    """A 64-row weight matrix stored by its non-zero band.

    Row i is ``weights[i, t]`` at column ``columns[i, t]``; padding entries
    have weight 0 (and a valid column). Each row touches only the few block
    columns the reference's blur reaches, so applying a band costs
    64 x band-width x cols, not 64 x rows x cols, and needs no BLAS threads.
    """

    columns: np.ndarray  # (64, width) int64, C order
    weights: np.ndarray  # (64, width) float32

    def dense(self, length: int) -> np.ndarray:
        """The full (64, length) matrix (tests and reading only)."""
        out = np.zeros((BUFFER_SIDE, length), dtype=np.float64)
        np.add.at(out, (np.arange(BUFFER_SIDE)[:, None], self.columns), self.weights)
        return out


@lru_cache(maxsize=2048)  # an entry is a few KiB
def filter_band(full_length: int, scale: int, reduced_length: int) -> Band:
    """Weights of the reference's downsampling along one axis, at 1/`scale`.

    Row i gives sample i of the reference's twice-box-filtered signal of
    `full_length` samples, as a weighted sum of block means, block y covering
    full-resolution samples ``[scale*y, scale*y + scale)``. With scale 1 it is
    the reference filter itself. Cached: datasets repeat image sizes, though
    web images come in so many that most lookups in a batch miss, so the
    weights are computed in C when the extension is built (numpy needs ~30
    calls here, a tenth of an image's whole budget); `filter_band_numpy` is
    the same computation, kept as its readable model.
    """
    if full_length < 1 or scale < 1 or reduced_length != -(-full_length // scale):
        raise ValueError(f"bad geometry: {full_length} samples at 1/{scale} -> {reduced_length}")
    if _pdqfast is None:
        return filter_band_numpy(full_length, scale, reduced_length)
    width = band_width(full_length, scale)
    columns = np.empty((BUFFER_SIDE, width), dtype=np.int64)
    weights = np.empty((BUFFER_SIDE, width), dtype=np.float32)
    _pdqfast.band(full_length, scale, reduced_length, width, columns, weights)
    columns.setflags(write=False)
    weights.setflags(write=False)
    return Band(columns, weights)


def band_width(full_length: int, scale: int) -> int:
    """Blocks of `scale` samples that a span of 2*window-1 samples can touch."""
    return (2 * box_window(full_length) - 2) // scale + 2


def filter_band_numpy(full_length: int, scale: int, reduced_length: int) -> Band:
    """`filter_band` in numpy: the model the C version follows step by step."""
    window = box_window(full_length)
    half = (window + 2) // 2
    left, right = window - half, half - 1  # box at k covers [k-left, k+right], clipped
    centres = sample_positions(full_length)

    def box_bounds(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        low = np.maximum(k - left, 0)
        high = np.minimum(k + right, full_length - 1) + 1
        return low, high

    # First pass: sample i averages filtered values at k in the box around its centre.
    offsets = np.arange(-left, right + 1)
    k = centres[:, None] + offsets[None, :]  # (64, window)
    k_valid = (k >= 0) & (k < full_length)
    centre_low, centre_high = box_bounds(centres)
    k_low, k_high = box_bounds(k)
    k_length = np.where(k_valid, k_high - k_low, 1)
    # Each k adds 1/count(centre) * 1/count(k) on every sample of [k_low, k_high).
    k_weight = np.where(k_valid, 1.0 / ((centre_high - centre_low)[:, None] * k_length), 0.0)

    # Integrate that kernel up to each block boundary near the centre.
    span_low = np.maximum(centres - 2 * left, 0)
    first_block = span_low // scale
    width = band_width(full_length, scale)
    blocks = first_block[:, None] + np.arange(width + 1)[None, :]  # (64, width+1)
    boundary = np.minimum(blocks * scale, full_length)
    covered = np.clip(boundary[:, :, None] - k_low[:, None, :], 0, k_length[:, None, :])
    integral = (covered * k_weight[:, None, :]).sum(axis=2)
    weights = np.diff(integral, axis=1)  # (64, width); zero past the image's end
    columns = np.ascontiguousarray(np.minimum(blocks[:, :-1], reduced_length - 1), dtype=np.int64)
    weights = np.ascontiguousarray(np.where(blocks[:, :-1] < reduced_length, weights, 0.0), dtype=np.float32)
    columns.setflags(write=False)
    weights.setflags(write=False)
    return Band(columns, weights)


def downsample(luma: np.ndarray, row_band: Band, col_band: Band) -> np.ndarray:
    """The reference's 64x64 buffer: rows band, then columns band."""
    rows = np.asarray(luma)[row_band.columns].astype(np.float32)  # (64, width, cols)
    by_rows = np.einsum("rk,rkc->rc", row_band.weights, rows)  # (64, cols)
    picked = by_rows[:, col_band.columns]  # (64, 64, width)
    return np.einsum("ck,rck->rc", col_band.weights, picked)


def quality_of_buffer(buffer64: np.ndarray) -> int:
    """The reference's image-domain quality (0..100) of the 64x64 buffer."""
    hundred, full_scale = np.float32(100), np.float32(255)
    vertical = np.trunc((buffer64[:-1, :] - buffer64[1:, :]) * hundred / full_scale)
    horizontal = np.trunc((buffer64[:, :-1] - buffer64[:, 1:]) * hundred / full_scale)
    gradient_sum = int(np.abs(vertical).sum(dtype=np.int64) + np.abs(horizontal).sum(dtype=np.int64))
    return min(gradient_sum // 90, 100)


def dct_from_luma(
    luma: np.ndarray, full_rows: int, full_cols: int, scale: int = 1
) -> tuple[np.ndarray | None, int]:
    """16x16 DCT (float32) and quality of a luma image decoded at 1/`scale`.

    `luma` is (rows, cols) with rows == ceil(full_rows / scale); returns
    (None, 0) for images too small to hash, as the reference does.
    """
    if full_rows < MIN_HASHABLE_SIDE or full_cols < MIN_HASHABLE_SIDE:
        return None, 0
    rows, cols = luma.shape
    row_band, col_band = filter_band(full_rows, scale, rows), filter_band(full_cols, scale, cols)
    if _pdqfast is not None and luma.dtype == np.uint8:
        dct = np.empty((DCT_SIDE, DCT_SIDE), dtype=np.float32)
        quality = _pdqfast.dct(
            np.ascontiguousarray(luma), rows, cols, *row_band, *col_band, DCT_MATRIX, dct
        )
        return dct, quality
    buffer64 = downsample(luma, row_band, col_band)
    quality = quality_of_buffer(buffer64)
    dct = (DCT_MATRIX @ buffer64) @ DCT_MATRIX.T
    return dct.astype(np.float32, copy=False), quality


def hash_bytes_from_dct(dct: np.ndarray | None) -> bytes:
    """Threshold a 16x16 DCT at its median into the canonical 32-byte hash.

    The reference's median (Torben's method over 256 values) is the 128th
    smallest value; a bit is set where a coefficient is strictly greater.
    Bit 16*i + j is coefficient (i, j); bytes are big-endian (bit 255 first).
    """
    if dct is None:
        return bytes(32)
    flat = np.asarray(dct, dtype=np.float32).reshape(-1)
    median = np.partition(flat, 127)[127]
    return np.packbits(flat[::-1] > median).tobytes()
