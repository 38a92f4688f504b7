"""Benign generated images and the reference PDQ path, for the PDQ hashing tests."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pdqhash
from PIL import Image, ImageDraw, ImageFilter

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "pdq"


def expected_rows() -> list[dict]:
    with open(FIXTURES / "expected.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def photo_like(seed: int, width: int, height: int) -> Image.Image:
    """A deterministic photo-like RGB image: colour field, texture, shapes, a little blur and grain."""
    rng = np.random.default_rng(seed)
    grid = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(grid).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    coarse = rng.integers(0, 256, (max(2, height // 24), max(2, width // 24)), dtype=np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    pixels = base * 0.6 + texture[..., None] * rng.uniform(0.2, 0.5, 3).astype(np.float32)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    for _ in range(10):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(short // 10, short // 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x, y, x + size, y + size * 2 // 3], fill=colour)
        else:
            draw.rectangle([x, y, x + size // 2, y + size], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(1.0))
    noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 3, (height, width, 1)).astype(np.float32)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def reference_pdq(data_or_image) -> tuple[str, int]:
    """python-threatexchange/HMA's path: Pillow, convert("RGB"), pdqhash on full-resolution pixels."""
    image = data_or_image if isinstance(data_or_image, Image.Image) else Image.open(io.BytesIO(data_or_image))
    bits, quality = pdqhash.compute(np.asarray(image.convert("RGB")))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)
