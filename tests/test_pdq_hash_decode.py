"""Hardened decoding: bombs, truncation, garbage, odd modes, animation, EXIF, batches."""

from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from pdq_hash_util import encode, photo_like, reference_pdq
from safeset.errors import InputError
from safeset.pdq import hamming, hash_image, hash_images
from safeset.pdq.decode import open_image, reduced_luma

PHOTO = photo_like(1, 640, 480)
JPEG = encode(PHOTO, quality=90)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with almost no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\x00" * 16))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_truncated_jpeg_is_an_input_error_naming_the_file(tmp_path, mode):
    path = tmp_path / "cut.jpg"
    path.write_bytes(JPEG[: len(JPEG) // 2])
    with pytest.raises(InputError) as caught:
        hash_image(path, mode)
    assert caught.value.path == str(path)
    assert "truncated" in caught.value.reason


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_garbage_empty_missing_and_directory(tmp_path, mode):
    with pytest.raises(InputError) as caught:
        hash_image(b"this is not an image at all", mode, name="shard-0/key.jpg")
    assert caught.value.reason == "cannot decode image: not a recognised image format"
    with pytest.raises(InputError, match="shard-0/key.jpg"):
        hash_image(b"this is not an image at all", mode, name="shard-0/key.jpg")
    with pytest.raises(InputError, match="empty file"):
        hash_image(b"", mode)
    with pytest.raises(InputError, match="no such file"):
        hash_image(tmp_path / "missing.jpg", mode)
    with pytest.raises(InputError, match="is a directory"):
        hash_image(tmp_path, mode)


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    claims_a_lot = _png_header_only(20_000, 20_000)  # 400M pixels claimed, ~100 bytes of file
    with pytest.raises(InputError) as caught:
        hash_image(claims_a_lot, name="bomb.png")
    assert caught.value.path == "bomb.png"
    assert "decompression bomb" in caught.value.reason
    with pytest.raises(InputError, match=r"over the limit of 300,000"):
        hash_image(JPEG, max_pixels=300_000)
    assert hash_image(JPEG, max_pixels=640 * 480).quality > 0  # the limit is inclusive


def test_pillow_bomb_warning_does_not_leak(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100_000)  # warns above this, errors above twice
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        image_bytes = encode(photo_like(2, 400, 300), quality=90)  # 120,000 pixels
        assert hash_image(image_bytes).quality > 0
    with pytest.raises(InputError, match="decompression bomb refused"):
        hash_image(JPEG)  # 307,200 pixels: over Pillow's own error threshold


def _odd_mode_images() -> dict[str, bytes]:
    rgba = PHOTO.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(PHOTO.size))
    grey16 = Image.fromarray(np.asarray(PHOTO.convert("L"), dtype=np.uint16) * 257)
    return {
        "cmyk.jpg": encode(PHOTO.convert("CMYK"), quality=92),
        "grey.jpg": encode(PHOTO.convert("L"), quality=92),
        "palette.png": encode(PHOTO.quantize(64), "PNG"),
        "palette-transparent.png": encode(PHOTO.quantize(64), "PNG", transparency=3),
        "la.png": encode(PHOTO.convert("LA"), "PNG"),
        "rgba.png": encode(rgba, "PNG"),
        "bilevel.png": encode(PHOTO.convert("1"), "PNG"),
        "grey16.png": encode(grey16, "PNG"),
        "float.tiff": encode(PHOTO.convert("F"), "TIFF"),
        "webp.webp": encode(PHOTO, "WEBP", quality=90),
    }


@pytest.mark.parametrize("name, data", list(_odd_mode_images().items()))
def test_odd_modes_hash_exactly_as_the_reference_path(name, data):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing leaks from our decode
        exact = hash_image(data, "exact", name=name)
        fast = hash_image(data, "fast", name=name)
    assert exact == reference_pdq(data)
    if exact.quality >= 80:
        assert hamming(fast.hex, exact.hex) <= 10


def test_sixteen_bit_greyscale_keeps_the_reference_quirk():
    # Pillow's convert("RGB") clips 16-bit values to 255: the reference hashes a
    # nearly white image, and so do we (bit-identity over prettiness).
    grey16 = Image.fromarray(np.asarray(PHOTO.convert("L"), dtype=np.uint16) * 257)
    data = encode(grey16, "PNG")
    assert hash_image(data) == reference_pdq(data)
    assert hash_image(data).quality < hash_image(encode(PHOTO.convert("L"), "PNG")).quality


def test_animated_images_hash_their_first_frame():
    first, second = photo_like(3, 320, 240), photo_like(4, 320, 240)
    gif = io.BytesIO()
    first.save(gif, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    only_first = encode(first, "GIF")
    assert hash_image(gif.getvalue()) == hash_image(only_first)
    assert hash_image(gif.getvalue()) == reference_pdq(gif.getvalue())


def test_exif_orientation_is_not_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    tagged = encode(PHOTO, quality=90, exif=exif.tobytes())
    plain = encode(PHOTO, quality=90)
    assert hash_image(tagged) == hash_image(plain)
    assert hash_image(tagged, "fast") == hash_image(plain, "fast")


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_tiny_images_get_the_reference_zero_hash(mode):
    data = encode(Image.new("RGB", (4, 30), "blue"), "PNG")
    assert hash_image(data, mode) == ("0" * 64, 0)
    assert reference_pdq(data) == ("0" * 64, 0)


def test_fast_decodes_large_jpegs_at_reduced_scale_luma_only():
    data = encode(photo_like(6, 2100, 1300), quality=85)
    luma, scale = reduced_luma(open_image(data, "x"), "x", 256)
    assert scale == 4 and luma.shape == (325, 525) and luma.dtype == np.uint8
    png = encode(photo_like(6, 1100, 800), "PNG")
    luma, scale = reduced_luma(open_image(png, "y"), "y", 256)
    assert scale == 3 and luma.shape == (267, 367)  # box-reduced: PNG has no DCT scaling


def test_a_pil_image_passed_in_is_not_redecoded_at_a_smaller_scale():
    with Image.open(io.BytesIO(encode(photo_like(7, 1400, 1000), quality=90))) as image:
        hash_image(image, "fast")
        assert image.size == (1400, 1000) and image.mode == "RGB"


def test_batch_keeps_going_and_reports_each_failure():
    sources = [JPEG, b"junk", PHOTO, JPEG[:500]]
    batch = hash_images(sources, "fast", names=["a.jpg", "b.jpg", "c", "d.jpg"])
    assert len(batch) == 4
    assert batch.hashes.shape == (4, 32) and batch.hashes.dtype == np.uint8
    assert [error is None for error in batch.errors] == [True, False, True, False]
    assert batch.errors[1].path == "b.jpg" and batch.errors[3].path == "d.jpg"
    assert batch.quality.tolist()[1] == -1 and batch.quality.tolist()[3] == -1
    assert not batch.hashes[1].any()
    hexes = batch.hex()
    assert hexes[0] == hash_image(JPEG, "fast").hex and hexes[1] is None
    with pytest.raises(ValueError):
        hash_images([JPEG], names=["a", "b"])
    with pytest.raises(ValueError, match="mode"):
        hash_images([JPEG], "quick")
