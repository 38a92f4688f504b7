"""Evidence: why a row might be withheld, one item per (row, signal, bank entry).

Match produces evidence; policy reduces it to one decision per row. Hits are
rare (a handful per million rows), so evidence is a small list of records,
while everything per-row stays vectorised.
"""

from __future__ import annotations

from dataclasses import dataclass

# Evidence for a row that could not be checked (unreadable image, invalid
# digest text, malformed line): the policy's `unchecked` action applies.
UNCHECKED = "unchecked"


@dataclass(frozen=True)
class Evidence:
    row: int
    signal_type: str
    value: str
    bank: str | None = None
    bank_version: int | None = None
    entry_id: int | None = None
    distance: int | None = None


def unchecked(row: int, reason: str) -> Evidence:
    return Evidence(row=row, signal_type=UNCHECKED, value=reason)
