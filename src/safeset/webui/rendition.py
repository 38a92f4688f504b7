"""What a reviewer's browser is sent instead of the quarantined bytes.

By default: a greyscale, heavily blurred rendition made on the server, so the
browser never holds the clear image unless the reviewer asks for it. The
image is first shrunk to a few dozen pixels (which throws the fine detail
away; it cannot be recovered client-side) and then scaled up and blurred
again for display.

On press-and-hold: a clear rendition, re-encoded as PNG with no metadata and
bounded in size, so the browser never parses the original file's format or
sees its EXIF fields.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageFilter, ImageOps

from safeset.errors import SafesetError

BLUR_DETAIL_PX = 40  # the long side the image is reduced to: all finer detail is gone
BLUR_DISPLAY_PX = 384
CLEAR_MAX_PX = 1024
DEFAULT_MAX_PIXELS = 64_000_000


class RenditionError(SafesetError):
    """The quarantined bytes are not an image we can decode safely."""


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise RenditionError(f"image of {width}x{height} pixels exceeds the limit of {max_pixels}")
            image.draft("RGB", (CLEAR_MAX_PX, CLEAR_MAX_PX))  # JPEG: decode at reduced scale
            image.load()
    except RenditionError:
        raise
    except Exception as exc:  # Pillow raises many kinds for bad input
        raise RenditionError(f"cannot decode image: {type(exc).__name__}") from None
    return ImageOps.exif_transpose(image)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return out.getvalue()


def blurred(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A greyscale, blurred PNG of the image: shape and layout visible, detail gone."""
    image = _open(data, max_pixels).convert("L")
    width, height = image.size
    scale = BLUR_DISPLAY_PX / max(width, height)
    display = (max(1, round(width * scale)), max(1, round(height * scale)))
    tiny = image.copy()
    tiny.thumbnail((BLUR_DETAIL_PX, BLUR_DETAIL_PX), Image.Resampling.BOX)
    smooth = tiny.resize(display, Image.Resampling.BICUBIC)
    return _png(smooth.filter(ImageFilter.GaussianBlur(radius=BLUR_DISPLAY_PX / 64)))


def clear(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """The image in colour, re-encoded as a metadata-free PNG no larger than CLEAR_MAX_PX."""
    image = _open(data, max_pixels)
    image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
    image.thumbnail((CLEAR_MAX_PX, CLEAR_MAX_PX), Image.Resampling.LANCZOS)
    return _png(image)
