"""From parsed lines to validated entries, with every refusal written down.

Validation itself belongs to the signal types (`registry.get(t).validate`);
this module only applies it, turns failures into numbered rejections and
gathers accepted entries as Arrow columns in bounded chunks, so a
ten-million-line bank does not become ten million Python tuples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import pyarrow as pa

from safeset.banks.formats.reading import RawEntry, Rejection
from safeset.errors import ConfigError
from safeset.signals import registry

CHUNK_ENTRIES = 1 << 20
# python-threatexchange types a user may well have; named so the message says "not yet".
NOT_YET_SUPPORTED = frozenset({"pdq_ocr", "video_md5", "video_tmk_pdqf", "raw_text", "trend_query"})


class RejectionLog:
    """Writes every rejection to a JSONL file and keeps the first few for the report."""

    def __init__(self, path: Path | None, keep_first: int = 20):
        self.count = 0
        self.first: list[Rejection] = []
        self._keep_first = keep_first
        self._handle = open(path, "w", encoding="utf-8") if path is not None else None

    def add(self, rejection: Rejection) -> None:
        self.count += 1
        if len(self.first) < self._keep_first:
            self.first.append(rejection)
        if self._handle is not None:
            self._handle.write(json.dumps(rejection.to_dict(), ensure_ascii=False) + "\n")

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class EntryCollector:
    """Validates entries one by one and keeps the accepted ones as (signal_type, value) columns.

    `only_type` (the user's `--type`) is the type of entries that name none;
    an entry naming a different type is rejected, never silently retyped.
    """

    def __init__(self, rejections: RejectionLog, only_type: str | None = None):
        self.rejections = rejections
        self.only_type = only_type
        self.accepted = 0
        self._validators: dict[str, Callable[[str], str] | str] = {}
        self._pending: dict[str, list[str]] = {}
        self._pending_count = 0
        self._chunks: dict[str, list[pa.Array]] = {}

    def add_all(self, items: Iterable[RawEntry | Rejection]) -> None:
        for item in items:
            self.add(item)

    def add(self, item: RawEntry | Rejection) -> None:
        if isinstance(item, Rejection):
            self.rejections.add(item)
            return
        signal_type = item.signal_type
        if self.only_type is not None and signal_type != self.only_type:
            self._reject(item, f"entry is of type {signal_type!r} but --type {self.only_type} was given")
            return
        validator = self._validator(signal_type)
        if isinstance(validator, str):
            self._reject(item, validator)
            return
        try:
            value = validator(item.value)
        except ValueError as exc:
            self._reject(item, f"invalid {signal_type}: {exc}")
            return
        self.accepted += 1
        self._pending.setdefault(signal_type, []).append(value)
        self._pending_count += 1
        if self._pending_count >= CHUNK_ENTRIES:
            self._flush()

    def by_type(self) -> dict[str, pa.Array]:
        """Accepted values per signal type (input order, duplicates kept) as large strings.

        Hands them over: the collector keeps no copy, so memory peaks once.
        """
        self._flush()
        chunks, self._chunks = self._chunks, {}
        return {signal_type: pa.concat_arrays(parts) for signal_type, parts in chunks.items()}

    def _flush(self) -> None:
        for signal_type, values in self._pending.items():
            self._chunks.setdefault(signal_type, []).append(pa.array(values, pa.large_string()))
        self._pending, self._pending_count = {}, 0

    def _validator(self, signal_type: str) -> Callable[[str], str] | str:
        """The type's validator, or the reason entries of this type are refused."""
        found = self._validators.get(signal_type)
        if found is None:
            try:
                found = registry.get(signal_type).validate
            except ConfigError:
                supported = ", ".join(registry.names())
                if signal_type in NOT_YET_SUPPORTED:
                    found = f"signal type {signal_type!r} is not supported yet (supported: {supported})"
                else:
                    found = f"unknown signal type {signal_type!r} (supported: {supported})"
            self._validators[signal_type] = found
        return found

    def _reject(self, item: RawEntry, reason: str) -> None:
        self.rejections.add(Rejection(item.line, reason, item.preview))
