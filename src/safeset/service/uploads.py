"""Limits on content sent to the service: bytes, pixels, formats.

Checked in that order, each before the next costs anything: the byte count
while the upload is read (and the whole request body by `BodyLimit`), the
pixel count from the image header before a pixel is decoded (decompression
bombs), the format from the header. Refusals are HTTP errors with a detail a
client can act on: 413 for too large, 400 for what is not an accepted image.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from fastapi import HTTPException, UploadFile
from PIL import Image, UnidentifiedImageError

from safeset.service.config import ServiceConfig

CHUNK_BYTES = 1 << 16


@dataclass(frozen=True)
class ImageHeader:
    format: str
    width: int
    height: int


async def read_upload(upload: UploadFile, config: ServiceConfig) -> bytes:
    """An uploaded file's bytes, refused with 413 past `max_upload_bytes` and 400 when empty."""
    limit = config.max_upload_bytes
    parts, size = [], 0
    while True:
        chunk = await upload.read(CHUNK_BYTES)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"upload too large: over the limit of {limit} bytes")
        parts.append(chunk)
    if size == 0:
        raise HTTPException(400, "empty upload")
    return b"".join(parts)


def check_size(data: bytes, config: ServiceConfig, what: str = "content") -> bytes:
    if len(data) > config.max_upload_bytes:
        raise HTTPException(413, f"{what} too large: {len(data)} bytes, over the limit of {config.max_upload_bytes} bytes")
    if not data:
        raise HTTPException(400, f"empty {what}")
    return data


def check_image(data: bytes, config: ServiceConfig) -> ImageHeader:
    """Read the image header only; refuse unknown or disallowed formats (400) and too many pixels (413)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's own bomb warning: our limit below is the one that applies
            image = Image.open(io.BytesIO(data))
            fmt = (image.format or "").upper()
            width, height = image.size
    except (UnidentifiedImageError, Image.DecompressionBombError):
        raise HTTPException(400, "not an image in a recognised format") from None
    except Exception:  # noqa: BLE001 - Pillow plugins raise many types on bad headers
        raise HTTPException(400, "not a readable image: its header is damaged") from None
    allowed = config.allowed_formats
    if fmt not in allowed:
        raise HTTPException(400, f"image format {fmt or 'unknown'} is not accepted; accepted: {', '.join(allowed)}")
    if width < 1 or height < 1:
        raise HTTPException(400, f"image has no pixels ({width}x{height})")
    if width * height > config.max_pixels:
        raise HTTPException(
            413,
            f"image is {width}x{height} = {width * height} pixels, over the limit of {config.max_pixels} "
            "(decompression bomb guard)",
        )
    return ImageHeader(fmt, width, height)
