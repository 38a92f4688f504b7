"""AI-provenance hints: signs that an image was made or altered by a generator.

Reviewers are shown them as evidence. They are hints, not verdicts: markers
are looked for, never verified (a C2PA manifest's signature is not checked).
Two sources: markers inside the image bytes (a C2PA manifest, IPTC's
DigitalSourceType in XMP, generator text chunks in PNGs) and dataset columns
whose names say they carry such information.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

COLUMN_HINTS = (
    "c2pa", "ai_generated", "aigenerated", "is_generated", "synthetic", "provenance",
    "digital_source_type", "digitalsourcetype", "generator", "generated_by",
)
_IPTC_SOURCE = re.compile(rb"digitalsourcetype/([A-Za-z]{3,64})")
_PNG_TEXT = re.compile(rb"(?:tEXt|iTXt)(parameters|prompt|workflow|sd-metadata|Dream)\x00")
_MAX_TEXT = 200


def from_bytes(data: bytes) -> dict[str, Any]:
    hints: dict[str, Any] = {}
    if b"jumb" in data and b"c2pa" in data:
        hints["c2pa_manifest"] = True
    source = _IPTC_SOURCE.search(data)
    if source:
        hints["iptc_digital_source_type"] = source.group(1).decode("ascii")
    if data.startswith(b"\x89PNG"):
        keywords = sorted({m.group(1).decode("ascii") for m in _PNG_TEXT.finditer(data)})
        if keywords:
            hints["generator_text_chunks"] = keywords
    return hints


def is_hint_column(name: str) -> bool:
    lowered = name.lower()
    return any(hint in lowered for hint in COLUMN_HINTS)


def from_metadata(row: Mapping[str, Any]) -> dict[str, Any]:
    """Values of hint-named fields, as short JSON-safe scalars."""
    return {name: _scalar(value) for name, value in row.items() if is_hint_column(str(name)) and value is not None}


def _scalar(value: Any) -> Any:
    if isinstance(value, bool) or isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= _MAX_TEXT else text[:_MAX_TEXT] + "…"
