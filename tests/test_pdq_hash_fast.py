"""`fast` hashes stay within PDQ's conformance distance of `exact` ones on photo-like JPEGs."""

from __future__ import annotations

import pytest

from pdq_hash_util import encode, photo_like
from safeset.pdq import hamming, hash_image

CASES = [
    # (seed, width, height, JPEG options): sizes that decode at 1/1, 1/2, 1/4 and 1/8.
    (31, 400, 300, {"quality": 90}),
    (32, 1024, 683, {"quality": 80, "subsampling": 2}),
    (33, 768, 1024, {"quality": 85, "subsampling": 1}),
    (34, 1600, 1200, {"quality": 95, "subsampling": 0}),
    (35, 2400, 1350, {"quality": 75, "progressive": True}),
    (36, 1250, 1250, {"quality": 70}),
]


@pytest.mark.parametrize("seed, width, height, options", CASES, ids=[f"{w}x{h}" for _, w, h, _ in CASES])
def test_fast_is_close_to_exact(seed, width, height, options):
    data = encode(photo_like(seed, width, height), **options)
    exact = hash_image(data, "exact")
    fast = hash_image(data, "fast")
    assert exact.quality >= 80  # the conformance bound applies to good-quality images
    assert hamming(fast.hex, exact.hex) <= 10
    assert abs(fast.quality - exact.quality) <= 5


def test_fast_tells_different_images_apart():
    one = hash_image(encode(photo_like(40, 1200, 800), quality=85), "fast").hex
    other = hash_image(encode(photo_like(41, 1200, 800), quality=85), "fast").hex
    assert hamming(one, other) > 60


def test_fast_survives_recompression_like_exact():
    image = photo_like(42, 1300, 900)
    high, low = encode(image, quality=95), encode(image.resize((650, 450)), quality=60)
    assert hamming(hash_image(high, "fast").hex, hash_image(low, "fast").hex) <= 16
