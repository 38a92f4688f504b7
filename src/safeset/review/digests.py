"""An item's digests: what identifies its image and URL without the bytes.

Digests are computed from the bytes when the item has them (the exact PDQ
path, as hotlines and HMA compute it), otherwise taken from what the run
recorded (`image_md5`/`image_sha256` columns, matched image-hash evidence).
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping

from safeset.errors import SafesetError
from safeset.review.model import IMAGE_HASH_TYPES

PDQ_MIN_QUALITY = 50  # below this the PDQ reference says not to trust the hash


def image_digests(data: bytes) -> dict[str, Any]:
    """md5, sha1, sha256 of the bytes, and pdq with its quality when the image decodes well enough."""
    digests: dict[str, Any] = {
        "md5": hashlib.md5(data).hexdigest(),
        "sha1": hashlib.sha1(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    try:
        from safeset.pdq import hash_image

        pdq, quality = hash_image(data, "exact", name="review item")
    except (SafesetError, ValueError, OSError):
        return digests  # undecodable: no perceptual hash, the byte digests still identify it
    if quality >= PDQ_MIN_QUALITY:
        digests["pdq"], digests["pdq_quality"] = pdq, int(quality)
    return digests


def url_digest(source_url: str | None) -> dict[str, str]:
    """`url_sha256`: SHA-256 of the canonical URL, as run records write it; {} for no or no valid URL."""
    from safeset.jobs.records import url_sha256
    from safeset.review.negative import normal_form

    canonical = normal_form("url", source_url) if source_url else None
    return {"url_sha256": url_sha256(canonical)} if canonical is not None else {}


def from_evidence(evidence: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Image hashes the run matched on (the row's own values), first of each type."""
    found: dict[str, str] = {}
    for item in evidence:
        signal_type, value = item.get("signal_type"), item.get("value")
        if signal_type in IMAGE_HASH_TYPES and value and signal_type not in found:
            found[signal_type] = str(value).lower()
    return found


def merged(*sources: Mapping[str, Any] | None) -> dict[str, Any]:
    """Earlier sources win; empty values are left out."""
    result: dict[str, Any] = {}
    for source in sources:
        for name, value in (source or {}).items():
            if value not in (None, "") and name not in result:
                result[name] = value
    return result
