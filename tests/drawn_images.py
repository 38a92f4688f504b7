"""Benign test images drawn with Pillow: coloured shapes on a plain ground, reproducible from a seed."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def drawn_image(seed: int, size=(640, 480)) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x0, y0 = int(rng.integers(0, size[0] - 60)), int(rng.integers(0, size[1] - 60))
        x1, y1 = x0 + int(rng.integers(30, 300)), y0 + int(rng.integers(30, 200))
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x1, y1), fill=colour)
    return image


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
