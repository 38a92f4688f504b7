"""The `fast` path's pieces: progressive-scan pruning, simplejpeg decoding, the C kernel, threads."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pdq_hash_util import encode, photo_like
from safeset.errors import InputError
from safeset.pdq import hamming, hash_image, hash_images
from safeset.pdq import core
from safeset.pdq.core import dct_from_luma, downsample, filter_band, filter_band_numpy, quality_of_buffer
from safeset.pdq.decode import jpeg_luma, jpeg_scale
from safeset.pdq.jpegscans import luma_scans

simplejpeg = pytest.importorskip("simplejpeg")

PHOTO = photo_like(51, 1100, 800)
PROGRESSIVE = encode(PHOTO, quality=88, progressive=True)
BASELINE = encode(PHOTO, quality=88)


def _scans(data: bytes) -> list[tuple[bytes, int, int, int, int]]:
    """(components, Ss, Se, Ah, Al) of every scan, from the SOS headers (test-side parser)."""
    found, position = [], 2
    while data[position + 1] != 0xD9:
        marker = data[position + 1]
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        end = position + 2 + length
        if marker == 0xDA:
            count = data[position + 4]
            components = bytes(data[position + 5 + 2 * i] for i in range(count))
            spectral = position + 5 + 2 * count
            found.append((components, data[spectral], data[spectral + 1], data[spectral + 2] >> 4, data[spectral + 2] & 15))
            end = data.index(b"\xff", end)
            while data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7:
                end = data.index(b"\xff", end + 2)
        position = end
    return found


def _grey(data: bytes, scale: int) -> np.ndarray:
    image = Image.open(io.BytesIO(data))
    image.draft("L", (image.width // scale, image.height // scale))
    return np.asarray(image)


def test_baseline_and_non_jpeg_data_are_left_alone():
    assert luma_scans(BASELINE, 2) is None
    assert luma_scans(encode(PHOTO, "PNG"), 2) is None
    assert luma_scans(b"\xff\xd8\xff", 2) is None
    assert luma_scans(b"", 8) is None


def test_progressive_keeps_dc_and_coarse_luma_scans_only():
    pruned = luma_scans(PROGRESSIVE, 2)
    assert pruned is not None and len(pruned) < len(PROGRESSIVE) * 0.7
    before, after = _scans(PROGRESSIVE), _scans(pruned)
    luma = before[0][0][:1]
    assert all(start == 0 or components == luma for components, start, *_ in after)  # no chroma AC
    assert not any(start > 0 and high > 0 and low == 0 for _, start, _, high, low in after)  # no last bit
    assert [scan for scan in before if scan[1] == 0] == [scan for scan in after if scan[1] == 0]  # every DC scan
    assert any(start > 0 for _, start, *_ in after)


def test_at_one_eighth_only_dc_is_read_and_the_pixels_are_identical():
    pruned = luma_scans(PROGRESSIVE, 8)
    luma = _scans(PROGRESSIVE)[0][0][:1]
    # DC, plus one coarse pass over the lowest luma band (without any AC at
    # all, libjpeg-turbo smooths DC values for a preview)
    assert [(c, start, high) for c, start, _, high, _ in _scans(pruned) if start > 0] == [(luma, 1, 0)]
    np.testing.assert_array_equal(_grey(pruned, 8), _grey(PROGRESSIVE, 8))


def test_dropping_the_last_refinement_bit_barely_moves_pixels():
    full, pruned = _grey(PROGRESSIVE, 2), _grey(luma_scans(PROGRESSIVE, 2), 2)
    assert full.shape == pruned.shape
    assert np.abs(full.astype(int) - pruned.astype(int)).mean() < 2.0


def test_greyscale_and_restart_marker_progressive_jpegs():
    grey = encode(PHOTO.convert("L"), quality=90, progressive=True)
    pruned = luma_scans(grey, 8)
    assert pruned is not None
    np.testing.assert_array_equal(_grey(pruned, 8), _grey(grey, 8))
    restarts = encode(PHOTO, quality=90, progressive=True, restart_marker_blocks=3)
    assert restarts.count(b"\xff\xdd") == 1
    np.testing.assert_array_equal(_grey(luma_scans(restarts, 8), 8), _grey(restarts, 8))


def test_truncated_or_damaged_structure_is_not_pruned():
    assert luma_scans(PROGRESSIVE[: len(PROGRESSIVE) * 3 // 4], 2) is None  # no end-of-image marker
    assert luma_scans(PROGRESSIVE[:-2], 8) is None
    sof = PROGRESSIVE.index(b"\xff\xc2")
    damaged = PROGRESSIVE[:sof] + b"\x00\x00" + PROGRESSIVE[sof + 2 :]
    assert luma_scans(damaged, 2) is None


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_truncated_progressive_jpeg_is_still_an_input_error(mode):
    with pytest.raises(InputError, match="truncated"):
        hash_image(PROGRESSIVE[: len(PROGRESSIVE) * 3 // 4], mode, name="cut.jpg")


@pytest.mark.parametrize("width, height", [(400, 300), (1100, 800), (2100, 1500), (2300, 2100)])
def test_simplejpeg_decodes_the_same_pixels_as_pillow_draft(width, height):
    data = encode(photo_like(52, width, height), quality=85)
    decoded = jpeg_luma(data, 256, "x.jpg")
    assert (decoded.width, decoded.height) == (width, height)
    assert decoded.scale == jpeg_scale(width, height, 256)
    np.testing.assert_array_equal(decoded.luma, _grey(data, decoded.scale))


def test_other_colour_spaces_and_formats_go_through_pillow():
    assert jpeg_luma(encode(PHOTO.convert("CMYK"), quality=90), 256, "x") is None
    assert jpeg_luma(encode(PHOTO, "PNG"), 256, "x") is None
    assert jpeg_luma(b"not a jpeg", 256, "x") is None
    assert jpeg_luma(BASELINE[:300], 256, "x") is None  # header cut: Pillow names the problem


def test_fast_jpeg_path_keeps_both_bomb_limits(monkeypatch):
    with pytest.raises(InputError, match=r"over the limit of 500,000") as caught:
        hash_image(BASELINE, "fast", name="big.jpg", max_pixels=500_000)
    assert caught.value.path == "big.jpg"
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 400_000)  # Pillow refuses above twice this
    with pytest.raises(InputError, match="decompression bomb refused"):
        hash_image(BASELINE, "fast")


@pytest.mark.parametrize(
    "width, height, options",
    [(700, 500, {}), (1100, 800, {"subsampling": 0}), (1600, 1000, {}), (2200, 2100, {"quality": 95})],
    ids=["1-1", "1-2", "1-4", "1-8"],
)
def test_fast_progressive_hashes_stay_close_to_exact(width, height, options):
    data = encode(photo_like(53, width, height), **{"quality": 85, **options}, progressive=True)
    exact, fast = hash_image(data, "exact"), hash_image(data, "fast")
    assert exact.quality >= 80
    assert hamming(fast.hex, exact.hex) <= 10
    assert abs(fast.quality - exact.quality) <= 5


@pytest.mark.parametrize("length, scale", [(5, 1), (63, 2), (257, 1), (1000, 4), (1601, 8), (4097, 16), (777, 3)])
def test_c_filter_band_is_the_numpy_model(length, scale):
    reduced = -(-length // scale)
    ours, model = filter_band(length, scale, reduced), filter_band_numpy(length, scale, reduced)
    np.testing.assert_array_equal(ours.columns, model.columns)
    np.testing.assert_allclose(ours.weights, model.weights, atol=1e-7)


@pytest.mark.skipif(core._pdqfast is None, reason="C extension not built")
@pytest.mark.parametrize("rows, cols, scale", [(480, 640, 1), (300, 410, 2), (257, 1025, 4)])
def test_c_kernel_matches_the_numpy_model(rows, cols, scale):
    luma = np.asarray(photo_like(54, cols, rows).convert("L"))
    full_rows, full_cols = rows * scale, cols * scale
    dct, quality = dct_from_luma(luma, full_rows, full_cols, scale)
    buffer64 = downsample(luma, filter_band(full_rows, scale, rows), filter_band(full_cols, scale, cols))
    model = (core.DCT_MATRIX @ buffer64) @ core.DCT_MATRIX.T
    np.testing.assert_allclose(dct, model, rtol=1e-4, atol=1e-3)
    assert quality == quality_of_buffer(buffer64)
    assert core.hash_bytes_from_dct(dct) == core.hash_bytes_from_dct(model)


@pytest.mark.skipif(core._pdqfast is None, reason="C extension not built")
def test_c_kernel_refuses_bad_geometry():
    band = filter_band(100, 1, 100)
    out = np.empty((16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="outside"):
        core._pdqfast.dct(np.zeros(50 * 100, np.uint8), 50, 100, *band, *band, core.DCT_MATRIX, out)
    with pytest.raises(ValueError, match="rows"):
        core._pdqfast.dct(np.zeros(10, np.uint8), 100, 100, *band, *band, core.DCT_MATRIX, out)


def test_threaded_batch_gives_the_sequential_results():
    sources = [
        BASELINE,
        PROGRESSIVE,
        b"junk",
        encode(photo_like(55, 500, 400), "PNG"),
        PROGRESSIVE[:3000],
        photo_like(56, 320, 240),
        encode(PHOTO.convert("CMYK"), quality=90),
    ] * 3
    names = [f"img-{i}" for i in range(len(sources))]
    one = hash_images(sources, "fast", names=names)
    four = hash_images(sources, "fast", names=names, workers=4)
    np.testing.assert_array_equal(one.hashes, four.hashes)
    np.testing.assert_array_equal(one.quality, four.quality)
    assert [str(e) for e in one.errors] == [str(e) for e in four.errors]
    assert [e is None for e in four.errors[:7]] == [True, True, False, True, False, True, True]
    with pytest.raises(ValueError, match="workers"):
        hash_images(sources, "fast", workers=0)


def test_damaged_files_never_escape_as_anything_but_input_errors():
    rng = np.random.default_rng(57)
    small = encode(photo_like(57, 600, 520), quality=80, progressive=True)
    for trial in range(120):
        damaged = bytearray(small)
        if trial % 3 == 0:
            damaged = damaged[: int(rng.integers(2, len(small)))]
        for _ in range(int(rng.integers(1, 6))):
            damaged[int(rng.integers(0, len(damaged)))] = int(rng.integers(0, 256))
        pruned = luma_scans(bytes(damaged), int(rng.choice([1, 2, 4, 8])))
        assert pruned is None or pruned[:2] == b"\xff\xd8"
        try:
            hash_image(bytes(damaged), "fast", name="damaged.jpg")
        except InputError as exc:
            assert exc.path == "damaged.jpg"


def test_without_simplejpeg_or_the_c_extension_fast_hashes_the_same(monkeypatch):
    from safeset.pdq import decode

    images = [BASELINE, encode(photo_like(58, 2100, 1400), quality=90), encode(photo_like(59, 450, 300), quality=90)]
    accelerated = [hash_image(data, "fast") for data in images]
    monkeypatch.setattr(decode, "simplejpeg", None)  # Pillow's draft decode: the same pixels
    monkeypatch.setattr(core, "_pdqfast", None)  # the numpy model
    filter_band.cache_clear()
    try:
        plain = [hash_image(data, "fast") for data in images]
    finally:
        filter_band.cache_clear()
    for ours, model in zip(accelerated, plain):
        assert hamming(ours.hex, model.hex) <= 2 and abs(ours.quality - model.quality) <= 1
