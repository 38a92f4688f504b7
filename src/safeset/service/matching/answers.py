"""HMA's JSON shapes for matcher answers (reference/hma-compat.md), built in one place.

Used by the FastAPI routes and by their fast path, so both answer alike.
"""

from __future__ import annotations

import json

JSON_MEDIA_TYPE = "application/json"


def raw_lookup(matches: list, query, include_distance: bool, include_matching_hash: bool) -> dict:
    """`{"matches": [id, ...]}`, or with distances `[{"bank_content_id": id, "distance": "4"}]` (text, as HMA sends)."""
    if include_distance:
        found: list = [{"bank_content_id": m.entry_id, "distance": str(m.distance or 0)} for m in matches]
    else:
        found = [m.entry_id for m in matches]
    answer: dict = {"matches": found}
    if include_matching_hash:
        answer["matching_hash"] = {"signal": query.value, "signal_type": query.signal_type}
    return answer


def by_bank(matches: list) -> dict[str, list[dict]]:
    """`{"BANK": [{"bank_content_id": id, "distance": d}, ...]}` (exact matches have distance 0)."""
    found: dict[str, list[dict]] = {}
    for match in matches:
        found.setdefault(match.bank, []).append({"bank_content_id": match.entry_id, "distance": match.distance or 0})
    return found


def encode(data) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode("utf-8")
