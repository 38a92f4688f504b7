"""Hardened image decoding for PDQ: limits first, pixels second, errors named.

What it guarantees, for paths, bytes and PIL images alike:

- **Decompression bombs.** The header's width x height is checked against
  `max_pixels` (default 178,956,970, Pillow's own error threshold) before any
  pixel is decoded; over it is an `InputError`. Pillow's global bomb warning
  is silenced during our decode (our limit is the one that applies) and its
  error, if its global limit is lower, becomes an `InputError` too. To allow
  images above Pillow's threshold, raise ``PIL.Image.MAX_IMAGE_PIXELS`` as well.
- **Huge files**: a path over `MAX_FILE_BYTES` (1 GiB) is refused unread.
- **Truncated or corrupt files** raise `InputError` naming the file: Pillow
  is never told to load truncated images, and whatever a format plugin
  raises (OSError, SyntaxError, ValueError, struct errors...) is wrapped.
- **Odd modes** (CMYK, palette, 1-bit, LA/PA/RGBA, 16-bit, float) go through
  Pillow's ``convert("RGB")``, as the reference path does: alpha is dropped,
  not composited; CMYK uses Pillow's plain conversion; 16-bit greyscale is
  *clipped* to 255 by Pillow (a 16-bit photo hashes as mostly white, with low
  quality). Matching the reference bit for bit means keeping its quirks.
- **Animated images** (GIF, APNG, WebP): the first frame, as Pillow opens it.
- **EXIF orientation is not applied**, because the reference does not: a
  photo stored sideways with an orientation tag hashes as stored. Use the
  dihedral variants to match rotated copies.
- **Threads**: Pillow work runs under one lock (``warnings.catch_warnings``
  is process-global); the `fast` JPEG decode (simplejpeg, libjpeg-turbo) runs
  outside it with the GIL released, so batches can use several cores.

`fast` JPEGs: when `simplejpeg` is installed, YCbCr and greyscale JPEGs are
decoded by it straight to greyscale at 1/2, 1/4 or 1/8 scale, into a numpy
array (the same pixels as Pillow's ``draft("L")``), after dropping the
progressive scans such a decode needs not read (`safeset.pdq.jpegscans`).
Whatever it refuses goes through Pillow, which then decodes it as the
`exact` path would or raises the usual error.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from contextlib import contextmanager
from pathlib import Path
from collections.abc import Iterator
from typing import NamedTuple, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from safeset.errors import InputError
from safeset.pdq.jpegscans import luma_scans

try:
    import simplejpeg
except ImportError:  # optional: Pillow decodes the same pixels, a little slower
    simplejpeg = None

DEFAULT_MAX_PIXELS = 178_956_970
MAX_FILE_BYTES = 1 << 30  # a path is read whole (digests need every byte); refuse more than 1 GiB

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image]


def source_name(src: ImageSource, name: str | None = None) -> str:
    """What error messages call this image."""
    if name is not None:
        return name
    if isinstance(src, (str, os.PathLike)):
        return os.fspath(src)
    if isinstance(src, Image.Image):
        return getattr(src, "filename", None) or "<image>"
    return "<bytes>"


def read_bytes(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """A file's bytes, or an InputError naming it."""
    try:
        size = Path(path).stat().st_size
        if size > max_bytes:
            raise InputError(path, None, f"file is {size:,} bytes, over the limit of {max_bytes:,} for an image")
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(path, None, "no such file") from None
    except IsADirectoryError:
        raise InputError(path, None, "is a directory, not an image file") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None


_PILLOW_LOCK = threading.RLock()  # catch_warnings swaps process-wide state: one thread at a time


@contextmanager
def decoding(name: str) -> Iterator[None]:
    """Turn anything Pillow raises or warns about into one InputError naming the file."""
    with _PILLOW_LOCK, warnings.catch_warnings():
        # Bombs are judged by our own max_pixels; other Pillow warnings
        # (odd EXIF, palette transparency) are not about the pixels we hash.
        warnings.simplefilter("ignore")
        try:
            yield
        except InputError:
            raise
        except UnidentifiedImageError:
            # Pillow's message names its BytesIO, not the file: say it plainly.
            raise InputError(name, None, "cannot decode image: not a recognised image format") from None
        except Image.DecompressionBombError as exc:
            raise InputError(name, None, f"decompression bomb refused: {exc}") from None
        except MemoryError:
            raise InputError(name, None, "not enough memory to decode this image") from None
        except Exception as exc:  # noqa: BLE001 - plugins raise many types for bad data
            reason = str(exc) or type(exc).__name__
            raise InputError(name, None, f"cannot decode image: {reason}") from None


def source_bytes(src: str | os.PathLike | bytes | bytearray | memoryview, name: str) -> bytes:
    """The encoded image: a file's bytes, or the bytes given (not copied when already `bytes`)."""
    data = read_bytes(src) if isinstance(src, (str, os.PathLike)) else bytes(src)
    if not data:
        raise InputError(name, None, "empty file")
    return data


def open_image(src: ImageSource, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open (header only) and check the size limit; pixels are decoded later."""
    with decoding(name):
        if isinstance(src, Image.Image):
            image = src
        else:
            image = Image.open(io.BytesIO(source_bytes(src, name)))
        width, height = image.size
    check_pixel_limit(width, height, name, max_pixels)
    return image


def check_pixel_limit(width: int, height: int, name: str, max_pixels: int) -> None:
    """Refuse images without pixels or over `max_pixels`, from their header's size."""
    if width < 1 or height < 1:
        raise InputError(name, None, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InputError(
            name,
            None,
            f"image is {width}x{height} = {width * height:,} pixels, over the limit of {max_pixels:,} "
            "(decompression bomb guard; raise max_pixels to allow it)",
        )


def rgb_pixels(image: Image.Image, name: str) -> np.ndarray:
    """Full-resolution (rows, cols, 3) uint8: the reference path's pixels."""
    with decoding(name):
        image.load()
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return np.asarray(rgb)


def jpeg_scale(width: int, height: int, min_side: int) -> int:
    """The DCT scaling divisor (1, 2, 4 or 8) keeping the short side >= `min_side` (Pillow's draft rule)."""
    room = min(width, height) // min_side
    return next(factor for factor in (8, 4, 2, 1) if room >= factor or factor == 1)


def _box_reduce(luma: np.ndarray, scale: int, min_side: int, name: str) -> tuple[np.ndarray, int]:
    """Block means while the image is still at least twice `min_side` on its short side."""
    factor = min(luma.shape) // min_side
    if factor < 2:
        return luma, scale
    with decoding(name):
        return np.asarray(Image.fromarray(luma).reduce(factor)), scale * factor


class JpegLuma(NamedTuple):
    """A JPEG's luma at 1/`scale` (rows = ceil(height / scale)) and its full size."""

    luma: np.ndarray
    scale: int
    width: int
    height: int


def jpeg_luma(data: bytes, min_side: int, name: str, max_pixels: int = DEFAULT_MAX_PIXELS) -> JpegLuma | None:
    """A YCbCr or greyscale JPEG's luma at a reduced scale, decoded by simplejpeg, or None.

    The `fast` path's JPEG decoder: Pillow is not involved (its header
    parsing alone costs a few percent of the time). The pixel limit is
    checked from the header first (an `InputError`, as in `open_image`).
    None (not a JPEG, simplejpeg missing, another colour space, over Pillow's
    own bomb limit, anything simplejpeg refuses) means: go through Pillow,
    which decodes it as the `exact` path would or raises the usual error.
    The GIL is released while decoding.
    """
    if simplejpeg is None or data[:3] != b"\xff\xd8\xff":
        return None
    try:
        height, width, colour_space, _ = simplejpeg.decode_jpeg_header(data)
    except Exception:  # noqa: BLE001 - Pillow names the problem
        return None
    check_pixel_limit(width, height, name, max_pixels)
    pillow_limit = Image.MAX_IMAGE_PIXELS
    if colour_space not in ("YCbCr", "Gray") or (pillow_limit and width * height > 2 * pillow_limit):
        return None  # CMYK, YCCK, RGB: Pillow's conversions, as the reference; Pillow's bomb error
    scale = jpeg_scale(width, height, min_side)
    rows, cols = -(-height // scale), -(-width // scale)
    try:
        pixels = simplejpeg.decode_jpeg(
            luma_scans(data, scale) or data, "GRAY", min_height=rows, min_width=cols, min_factor=scale
        )
    except Exception:  # noqa: BLE001 - Pillow decodes it or names the problem
        return None
    if pixels.shape != (rows, cols, 1):
        return None
    luma, scale = _box_reduce(pixels.reshape(rows, cols), scale, min_side, name)
    return JpegLuma(luma, scale, width, height)


def reduced_luma(image: Image.Image, name: str, min_side: int, may_draft: bool = True) -> tuple[np.ndarray, int]:
    """Luma decoded at a reduced scale, and that scale (1, 2, 4, 8 or more).

    JPEG (when `may_draft`, i.e. we opened it ourselves): the decoder scales
    by 1/2, 1/4 or 1/8 while decoding, keeping the short side >= `min_side`,
    and for YCbCr JPEGs decodes only the Y plane (skipping chroma), which is
    the luma PDQ wants (`jpeg_luma` does the same faster, without Pillow).
    Whatever is still at least twice `min_side` is then box-reduced (block
    means, the same model). Row ``y`` of the result is the
    mean of full-resolution rows ``[scale*y, scale*y + scale)``; see
    `core.filter_band`.
    """
    with decoding(name):
        full_width, _ = image.size
        scale = 1
        if may_draft and image.format == "JPEG":
            mode = "L" if image.mode == "RGB" else None
            drafted = image.draft(mode, (min_side, min_side))
            if drafted is not None:
                scale = max(1, round(full_width / drafted[1][2]))
        image.load()
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")  # the reference's conversion, quirks included
        if image.mode != "L":
            image = image.convert("L")  # ITU-R 601 luma, PDQ's coefficients
        factor = min(image.size) // min_side
        if factor >= 2:
            image = image.reduce(factor)
            scale *= factor
        return np.asarray(image), scale
