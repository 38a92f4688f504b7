"""The signals of one piece of uploaded content: PDQ plus MD5/SHA-1/SHA-256 of its bytes.

Shared by `/h/hash`, `/c/bank/<NAME>/content` and the matcher's lookups by
file, so every face hashes the same way (`safeset.pdq.hash_image`, the same
code `safeset hash` and the dataset scans use). The upload limits
(`uploads.check_image`) are applied before any pixel is decoded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from fastapi import HTTPException

from safeset.errors import InputError
from safeset.service.config import ServiceConfig
from safeset.service.uploads import check_image, check_size

CONTENT_SIGNAL_TYPES = ("pdq", "md5", "sha1", "sha256")
PHOTO_FIELDS = ("photo", "image", "file")  # HMA names the form field after the content type: photo


@dataclass(frozen=True)
class ContentSignals:
    """signal type -> value, and the PDQ quality (None when PDQ was not asked for)."""

    signals: dict[str, str]
    pdq_quality: int | None = None


def parse_types(types: str | None) -> tuple[str, ...]:
    """`types=pdq,md5` -> ('pdq', 'md5'); empty -> all content types; unknown -> 400."""
    if not types:
        return CONTENT_SIGNAL_TYPES
    chosen = []
    for name in types.split(","):
        name = name.strip().lower()
        if not name:
            continue
        if name not in CONTENT_SIGNAL_TYPES:
            raise HTTPException(
                400, f"signal type {name!r} cannot be computed from content; types: {', '.join(CONTENT_SIGNAL_TYPES)}"
            )
        if name not in chosen:
            chosen.append(name)
    return tuple(chosen) or CONTENT_SIGNAL_TYPES


def content_signals(
    data: bytes, config: ServiceConfig, types: tuple[str, ...] = CONTENT_SIGNAL_TYPES, pdq_mode: str | None = None
) -> ContentSignals:
    """Hash content within the upload limits; 400/413 for what cannot or may not be hashed.

    `pdq_mode` None means the config's `pdq_mode` (the reference's bits); lookups pass `lookup_pdq_mode`.
    """
    check_size(data, config)
    check_image(data, config)  # format and pixel limits, from the header alone
    signals: dict[str, str] = {}
    quality = None
    if "pdq" in types:
        from safeset.pdq import hash_image

        try:
            result = hash_image(data, pdq_mode or config.pdq_mode, name="upload", max_pixels=config.max_pixels)
        except InputError as exc:
            raise HTTPException(400, f"cannot hash the image: {exc.reason}") from None
        signals["pdq"], quality = result.hex, int(result.quality)
    for name in ("md5", "sha1", "sha256"):
        if name in types:
            signals[name] = hashlib.new(name, data).hexdigest()
    return ContentSignals({t: signals[t] for t in types if t in signals}, quality)
