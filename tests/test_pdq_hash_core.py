"""The numpy PDQ core: filter weights, median threshold, bit order, scale model."""

from __future__ import annotations

import numpy as np
import pdqhash
import pytest

from pdq_hash_util import photo_like
from safeset.pdq.core import (
    DCT_MATRIX,
    box_window,
    dct_from_luma,
    filter_band,
    hash_bytes_from_dct,
    quality_of_buffer,
    sample_positions,
)
from safeset.pdq.hexform import hamming


def reference_filter_rows(length: int) -> np.ndarray:
    """The reference's blur-and-decimate along one axis, built the slow, obvious way.

    A box of `window` samples, off-centre for even windows exactly as the C++
    ``box1DFloat`` (out[k] averages in[k - (w - h) .. k + h - 1], h = (w+2)//2,
    clipped at the edges), applied twice, then the 64 kept samples.
    """
    window = box_window(length)
    half = (window + 2) // 2
    box = np.zeros((length, length))
    for k in range(length):
        low, high = max(k - (window - half), 0), min(k + half - 1, length - 1) + 1
        box[k, low:high] = 1.0 / (high - low)
    return (box @ box)[sample_positions(length)]


@pytest.mark.parametrize("length", [5, 6, 7, 63, 64, 65, 127, 128, 129, 200, 255, 256, 257, 511, 777, 1024, 1601])
@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8])
def test_band_weights_are_the_reference_filter_summed_over_blocks(length, scale):
    reduced = -(-length // scale)
    expected = reference_filter_rows(length)
    expected = np.pad(expected, ((0, 0), (0, reduced * scale - length))).reshape(64, reduced, scale).sum(axis=2)
    band = filter_band(length, scale, reduced)
    np.testing.assert_allclose(band.dense(reduced), expected, atol=1e-6)
    np.testing.assert_allclose(band.dense(reduced).sum(axis=1), 1.0, atol=1e-5)


def test_band_rejects_inconsistent_geometry():
    with pytest.raises(ValueError):
        filter_band(100, 4, 24)  # ceil(100 / 4) is 25
    with pytest.raises(ValueError):
        filter_band(100, 0, 100)


def test_threshold_sets_bits_strictly_above_the_lower_median():
    values = np.random.default_rng(3).permutation(256).astype(np.float32).reshape(16, 16)
    digest = hash_bytes_from_dct(values)
    bits = np.unpackbits(np.frombuffer(digest, dtype=np.uint8))[::-1].reshape(16, 16)  # bit 16*i+j
    np.testing.assert_array_equal(bits, (values > 127).astype(np.uint8))
    assert bits.sum() == 128


def test_bit_order_is_canonical():
    dct = np.zeros((16, 16), dtype=np.float32)
    dct[0, 0] = 1.0  # bit 0: the last hex digit
    assert hash_bytes_from_dct(dct).hex() == "0" * 63 + "1"
    dct[:] = 0
    dct[15, 15] = 1.0  # bit 255: the first hex digit
    assert hash_bytes_from_dct(dct).hex() == "8" + "0" * 63


def test_ties_at_the_median_leave_bits_clear():
    assert hash_bytes_from_dct(np.zeros((16, 16), dtype=np.float32)) == bytes(32)
    assert hash_bytes_from_dct(None) == bytes(32)


def test_too_small_and_flat_images():
    assert dct_from_luma(np.zeros((4, 40), dtype=np.uint8), 4, 40) == (None, 0)
    assert dct_from_luma(np.full((80, 90), 128, dtype=np.uint8), 80, 90)[1] == 0
    assert quality_of_buffer(np.full((64, 64), 7, dtype=np.float32)) == 0


def test_dct_matrix_is_orthonormal_rows_of_the_dct2():
    gram = DCT_MATRIX.astype(np.float64) @ DCT_MATRIX.T.astype(np.float64)
    np.testing.assert_allclose(gram, np.eye(16), atol=1e-6)


def test_full_scale_dct_agrees_with_meta_cpp():
    rgb = np.asarray(photo_like(11, 431, 287))
    reversed_dct, quality = pdqhash.compute_float(rgb)
    luma = (rgb[:, :, 0] * 0.299 + rgb[:, :, 1] * 0.587 + rgb[:, :, 2] * 0.114).astype(np.float32)
    dct, ours = dct_from_luma(luma, 287, 431)
    np.testing.assert_allclose(dct.reshape(-1), reversed_dct[::-1], rtol=1e-4, atol=1e-3)
    assert ours == quality


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_block_means_at_reduced_scale_hash_close_to_full_scale(scale):
    # What fast mode relies on: a decoder's block means, hashed with summed weights.
    rows, cols = 1200, 1700
    luma = np.asarray(photo_like(5, cols, rows).convert("L"), dtype=np.float64)
    padded = np.pad(luma, ((0, -rows % scale), (0, -cols % scale)), mode="edge")
    counts = np.pad(np.ones_like(luma), ((0, -rows % scale), (0, -cols % scale)))
    r, c = padded.shape[0] // scale, padded.shape[1] // scale
    sums = (padded * counts).reshape(r, scale, c, scale).sum(axis=(1, 3))
    means = sums / counts.reshape(r, scale, c, scale).sum(axis=(1, 3))
    full_dct, full_quality = dct_from_luma(luma.astype(np.float32), rows, cols)
    reduced_dct, reduced_quality = dct_from_luma(means.astype(np.float32), rows, cols, scale)
    distance = hamming(hash_bytes_from_dct(full_dct).hex(), hash_bytes_from_dct(reduced_dct).hex())
    assert distance <= 6
    assert abs(full_quality - reduced_quality) <= 2
