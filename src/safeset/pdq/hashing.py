"""PDQ hashes of images: `exact` (the reference's bits) or `fast` (reduced-scale decode).

- ``exact``: Pillow decode, ``convert("RGB")``, Meta's PDQ (the `pdqhash`
  package's C++) on the full-resolution pixels: the path python-threatexchange
  and HMA use, bit for bit (checked against the conformance fixtures). We take
  the DCT from `pdqhash.compute_float` and threshold it ourselves, which gives
  the same bits and leaves the DCT for the dihedral variants.
- ``fast``: JPEGs are decoded at 1/2, 1/4 or 1/8 scale (DCT scaling) with the
  short side kept >= `FAST_MIN_SIDE`, luma only, reading only the scans of a
  progressive JPEG such a decode needs (`safeset.pdq.jpegscans`); other
  formats are decoded and box-reduced. The reference's filter is then applied
  in those coarse coordinates (`safeset.pdq.core`, in C), so the same points
  are sampled with the same blur. On `bench/pdq_hash.py`'s 2,000
  web-photo-like JPEGs every fast hash was within distance 10 of the exact
  one (mean 0.8), at 8.4x the reference path's speed on one core.

`hash_images` hashes a batch, on several threads if asked: the `fast` JPEG
path decodes and filters with the GIL released.

Both return (hex, quality). Quality < 50 means "do not trust this hash"
(the PDQ reference's and python-threatexchange's convention); images under
5 px on a side get the all-zero hash with quality 0, as in the reference.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

import numpy as np
import pdqhash
from PIL import Image

from safeset.errors import InputError
from safeset.pdq.core import DCT_SIDE, MIN_HASHABLE_SIDE, dct_from_luma, hash_bytes_from_dct
from safeset.pdq.decode import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    jpeg_luma,
    open_image,
    read_bytes,
    reduced_luma,
    rgb_pixels,
    source_bytes,
    source_name,
)
from safeset.pdq.dihedral import DIHEDRAL_NAMES, dihedral_hash_bytes
from safeset.pdq.hexform import HASH_BYTES

Mode = Literal["exact", "fast"]
MODES: tuple[str, ...] = ("exact", "fast")
# Short side kept by fast decoding, chosen on bench/pdq_hash.py's 2,000 images:
# share of fast hashes within distance 10 of exact (quality >= 80): 256 -> 100%
# (mean 0.72, max 10); 192 -> 99.65%; 128 -> 98.7% (99.0% with slope-corrected
# weights); 64 -> 94.6%. Smaller is barely faster (64 saves ~0.4 ms of ~2.4 ms
# on a baseline JPEG): decoding time is mostly entropy decoding, which no
# scale avoids. PDQ's blur is about as wide as the spacing of its 64 samples,
# so it needs several decoded pixels per sample to be reproduced.
FAST_MIN_SIDE = 256


class PDQResult(NamedTuple):
    """A hash in canonical hex and its quality (0..100); unpacks as (hex, quality)."""

    hex: str
    quality: int


class DihedralResult(NamedTuple):
    """Hashes of the 8 orientations (`DIHEDRAL_NAMES` order) and the image's quality."""

    hashes: tuple[str, ...]
    quality: int

    def by_name(self) -> dict[str, str]:
        return dict(zip(DIHEDRAL_NAMES, self.hashes))


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")


def image_dct(
    src: ImageSource, mode: Mode = "exact", *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray | None, int]:
    """The 16x16 PDQ DCT (None if too small to hash) and quality of one image.

    Raises `InputError` (naming the image) when it cannot be read or decoded.
    """
    _check_mode(mode)
    label = source_name(src, name)
    data = None if isinstance(src, Image.Image) else source_bytes(src, label)
    if mode == "fast" and data is not None:
        decoded = jpeg_luma(data, FAST_MIN_SIDE, label, max_pixels)
        if decoded is not None:
            return dct_from_luma(decoded.luma, decoded.height, decoded.width, decoded.scale)
    image = open_image(src if data is None else data, label, max_pixels)
    full_cols, full_rows = image.size
    if mode == "exact":
        rgb = rgb_pixels(image, label)
        if full_rows < MIN_HASHABLE_SIDE or full_cols < MIN_HASHABLE_SIDE:
            return None, 0
        reversed_coefficients, quality = pdqhash.compute_float(rgb)
        dct = np.ascontiguousarray(reversed_coefficients[::-1], dtype=np.float32).reshape(DCT_SIDE, DCT_SIDE)
        return dct, int(quality)
    luma, scale = reduced_luma(image, label, FAST_MIN_SIDE, may_draft=data is not None)
    return dct_from_luma(luma, full_rows, full_cols, scale)


def hash_image(
    src: ImageSource, mode: Mode = "exact", *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> PDQResult:
    """PDQ hash of a path, bytes or PIL image: ``(hex, quality)``.

    A PIL image is hashed as given (loaded if needed, never re-decoded at a
    smaller scale). Raises `InputError` naming the image when it cannot be
    read or decoded, or is over `max_pixels`.
    """
    dct, quality = image_dct(src, mode, name=name, max_pixels=max_pixels)
    return PDQResult(hash_bytes_from_dct(dct).hex(), quality)


def hash_image_dihedral(
    src: ImageSource, mode: Mode = "exact", *, name: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS
) -> DihedralResult:
    """Hashes of the image's 8 rotations/mirrorings, from one decode and one DCT."""
    dct, quality = image_dct(src, mode, name=name, max_pixels=max_pixels)
    return DihedralResult(tuple(h.hex() for h in dihedral_hash_bytes(dct)), quality)


@dataclass
class PDQBatch:
    """Hashes of many images; a failed image has an error and quality -1.

    `hashes` is (n, 32) uint8 in the canonical byte order (zeros where
    failed), `quality` is (n,) int16. Nothing is raised for a bad image, so
    callers can fail closed per row.
    """

    hashes: np.ndarray
    quality: np.ndarray
    errors: list[InputError | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.errors)

    def hex(self) -> list[str | None]:
        return [None if error else row.tobytes().hex() for row, error in zip(self.hashes, self.errors)]


def hash_images(
    sources: Iterable[ImageSource],
    mode: Mode = "exact",
    *,
    names: Sequence[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
) -> PDQBatch:
    """PDQ hashes of many images (paths, bytes or PIL images) as arrays.

    `workers` > 1 hashes on that many threads. It pays in `fast` mode on
    JPEGs: their decoding and filtering, ~95% of the time per image, run
    without the GIL. Other formats and `exact` mode go through Pillow, under
    one lock. Results do not depend on `workers`.
    """
    _check_mode(mode)
    sources = list(sources)
    if names is not None and len(names) != len(sources):
        raise ValueError(f"{len(names)} names for {len(sources)} images")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")

    def hash_one(row: int) -> tuple[bytes, int] | InputError:
        try:
            dct, quality = image_dct(sources[row], mode, name=names[row] if names else None, max_pixels=max_pixels)
        except InputError as exc:
            return exc
        return hash_bytes_from_dct(dct), quality

    if workers > 1 and len(sources) > 1:
        with ThreadPoolExecutor(min(workers, len(sources)), thread_name_prefix="pdq") as pool:
            results = list(pool.map(hash_one, range(len(sources))))
    else:
        results = [hash_one(row) for row in range(len(sources))]
    hashes = np.zeros((len(sources), HASH_BYTES), dtype=np.uint8)
    quality = np.full(len(sources), -1, dtype=np.int16)
    errors: list[InputError | None] = []
    for row, result in enumerate(results):
        if isinstance(result, InputError):
            errors.append(result)
            continue
        hashes[row] = np.frombuffer(result[0], dtype=np.uint8)
        quality[row] = result[1]
        errors.append(None)
    return PDQBatch(hashes, quality, errors)


@dataclass(frozen=True)
class FileReport:
    """Digests and PDQ of one file, as `safeset hash` prints them.

    Digests are of the file's bytes, so they are there even when the image
    cannot be decoded (then `pdq`/`quality` are None and `error` says why).
    """

    path: str
    md5: str | None
    sha1: str | None
    sha256: str | None
    pdq: str | None
    quality: int | None
    error: str | None = None

    def as_dict(self) -> dict:
        row = {
            "path": self.path,
            "md5": self.md5,
            "sha1": self.sha1,
            "sha256": self.sha256,
            "pdq": self.pdq,
            "quality": self.quality,
        }
        if self.error is not None:
            row["error"] = self.error
        return row


def hash_file(
    path: str | os.PathLike, mode: Mode = "exact", *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> FileReport:
    """MD5, SHA-1, SHA-256 and PDQ of one file, reading it once; never raises InputError."""
    label = os.fspath(path)
    try:
        data = read_bytes(path)
    except InputError as exc:
        return FileReport(label, None, None, None, None, None, exc.reason)
    md5, sha1, sha256 = (
        hashlib.new(kind, data, usedforsecurity=False).hexdigest() for kind in ("md5", "sha1", "sha256")
    )
    try:
        pdq, quality = hash_image(data, mode, name=label, max_pixels=max_pixels)
    except InputError as exc:
        return FileReport(label, md5, sha1, sha256, None, None, exc.reason)
    return FileReport(label, md5, sha1, sha256, pdq, quality)
