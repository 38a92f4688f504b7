"""HMA's curator operations over the real bank store: banks, signals, content.

A bank here is the same bank `safeset bank import` writes: adding a signal
makes a new immutable version (`BankStore.add_entries`), removing content
makes a version without it, and a content id is the bank's stable entry id.
What the store does not hold (empty banks, matching ratios, disabled
content, notes) is kept by `BankSettings`. Every change is audited and the
live index, if any, is told which bank changed.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pyarrow.compute as pc

from safeset.audit import AuditLog
from safeset.banks.names import normalize_bank_name
from safeset.banks.store import BankStore
from safeset.db import Database
from safeset.errors import ConfigError
from safeset.service.bank_settings import BankSettings
from safeset.service.errors import Conflict, InvalidSignal, NotFound
from safeset.signals import registry

MAX_SIGNALS_PER_CONTENT = 16
METADATA_KEYS = frozenset({"content_id", "content_uri", "json"})


def validate_signals(signals: dict[str, Any]) -> dict[str, str]:
    """{type: value} in normal form; 400 (`invalid signal: ...`) for any bad type or value."""
    if not isinstance(signals, dict) or not signals:
        raise InvalidSignal("invalid signal: no signals given (send e.g. {\"pdq\": \"<64 hex>\"})")
    if len(signals) > MAX_SIGNALS_PER_CONTENT:
        raise InvalidSignal(f"invalid signal: at most {MAX_SIGNALS_PER_CONTENT} signals at once")
    normal: dict[str, str] = {}
    for signal_type, value in signals.items():
        try:
            kind = registry.get(str(signal_type))
        except ConfigError:
            raise InvalidSignal(
                f"invalid signal: no such signal type {signal_type!r}; types: {', '.join(registry.names())}"
            ) from None
        if not isinstance(value, str):
            raise InvalidSignal(f"invalid signal: {signal_type} value must be a string")
        try:
            normal[kind.name] = kind.validate(value)
        except ValueError as exc:
            raise InvalidSignal(f"invalid signal: {signal_type}: {exc}") from None
    return normal


def validate_metadata(metadata: Any) -> dict | None:
    """HMA's optional content metadata: {content_id, content_uri, json}."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InvalidSignal("metadata must be a JSON object")
    unexpected = set(metadata) - METADATA_KEYS
    if unexpected:
        raise InvalidSignal(f"metadata has unexpected keys: {', '.join(sorted(map(str, unexpected)))}")
    return metadata


class Curator:
    """Bank and content curation shared by the HTTP API (and any other face)."""

    def __init__(
        self,
        store: BankStore,
        settings: BankSettings,
        db: Database,
        audit: AuditLog,
        notify: Callable[[str], None] | None = None,
    ):
        self.store = store
        self.settings = settings
        self.db = db
        self.audit = audit
        self._notify = notify or (lambda name: None)

    # -- banks ---------------------------------------------------------------
    def _stored(self) -> dict:
        return {info.name: info for info in self.store.list_banks()}

    def exists(self, name: str) -> bool:
        return bool(self.store._version_numbers(name)) or self.settings.is_declared(name)

    def require(self, name: str) -> str:
        name = normalize_bank_name(name)
        if not self.exists(name):
            raise NotFound(f"bank {name!r} not found")
        return name

    def _describe(self, name: str, info, ratio: float) -> dict:
        return {
            "name": name,
            "matching_enabled_ratio": ratio,
            "latest_version": info.latest_version if info else None,
            "versions": info.versions if info else 0,
            "entries": info.entries if info else 0,
            "counts": dict(info.counts) if info else {},
        }

    def list_banks(self) -> list[dict]:
        stored, declared = self._stored(), self.settings.declared_banks()
        return [self._describe(n, stored.get(n), declared.get(n, 1.0)) for n in sorted(set(stored) | set(declared))]

    def bank(self, name: str) -> dict:
        name = self.require(name)
        stored = self._stored()
        return self._describe(name, stored.get(name), self.settings.enabled_ratio(name))

    def create_bank(self, name: str, enabled_ratio: float = 1.0, actor: str = "api") -> dict:
        name = normalize_bank_name(name)
        _check_ratio(enabled_ratio)
        with self.db.transaction(lock_name="audit_log"):
            if self.exists(name) or not self.settings.declare_bank(name, enabled_ratio):
                raise Conflict(f"bank {name!r} already exists")
            self.audit.append(actor, "bank.create", {"bank": name, "enabled_ratio": enabled_ratio})
        self._notify(name)
        return self.bank(name)

    def update_bank(self, name: str, *, new_name: str | None = None, enabled_ratio: float | None = None, actor: str = "api") -> dict:
        name = self.require(name)
        if new_name is not None and normalize_bank_name(new_name) != name:
            raise InvalidSignal(
                "renaming a bank is not supported: run records name banks, so names stay; create a new bank instead"
            )
        if enabled_ratio is not None:
            _check_ratio(enabled_ratio)
            with self.db.transaction(lock_name="audit_log"):
                self.settings.set_enabled_ratio(name, enabled_ratio)
                self.audit.append(actor, "bank.update", {"bank": name, "enabled_ratio": enabled_ratio})
            self._notify(name)
        return self.bank(name)

    def delete_bank(self, name: str, actor: str = "api") -> bool:
        """Delete the bank and every version of it; False when there was none (HMA: still 'Done')."""
        name = normalize_bank_name(name)
        if not self.exists(name):
            return False
        versions = []
        if self.store._version_numbers(name):
            versions = self.store.delete(name)
        with self.db.transaction(lock_name="audit_log"):
            self.settings.forget_bank(name)
            self.audit.append(actor, "bank.delete", {"bank": name, "versions": versions})
        self._notify(name)
        return True

    # -- content -------------------------------------------------------------
    def add_signals(
        self, name: str, signals: dict[str, Any], *, note: str | None = None, metadata: dict | None = None, actor: str = "api"
    ) -> dict:
        """Add raw signals as content; returns HMA's {"id", "signals"} (plus each signal's entry id)."""
        name = self.require(name)
        normal = validate_signals(signals)
        metadata = validate_metadata(metadata)
        with self.db.transaction(lock_name=_bank_lock(name)):  # see delete_content
            result = self.store.add_entries(name, list(normal.items()), note=note)
            if not (result.created or result.unchanged):
                raise InvalidSignal(f"invalid signal: {result.message}")
            version = self.store.open_version(name)
            entry_ids = {t: version.entry_id(t, v) for t, v in normal.items()}
        if any(i is None for i in entry_ids.values()):  # pragma: no cover - removed by a concurrent CLI import
            raise Conflict(f"bank {name} changed while adding; try again")
        with self.db.transaction(lock_name="audit_log"):
            if note is not None or metadata is not None:
                for entry_id in entry_ids.values():
                    self.settings.set_content(name, entry_id, note=note, metadata=metadata)
            self.audit.append(
                actor,
                "bank.add_signals",
                {"bank": name, "version": version.version, "created": result.created, "entry_ids": entry_ids},
            )
        self._notify(name)
        first = next(iter(normal))
        return {"id": entry_ids[first], "signals": normal, "entry_ids": entry_ids, "bank_version": version.version}

    def _entry(self, name: str, entry_id: int) -> tuple[int, str, str]:
        """(version, signal_type, value) of a content id in the bank's latest version; 404 if absent."""
        if not self.store._version_numbers(name):
            raise NotFound(f"bank {name} has no content {entry_id}")
        version = self.store.open_version(name)
        table = version.entries()
        found = table.filter(pc.equal(table["entry_id"], int(entry_id)))
        if not len(found):
            raise NotFound(f"bank {name} has no content {entry_id}")
        return version.version, found["signal_type"][0].as_py(), found["value"][0].as_py()

    def _content_dict(self, name: str, entry_id: int, version: int, signal_type: str, value: str) -> dict:
        settings = self.settings.content(name, entry_id)
        return {
            "id": int(entry_id),
            "bank": name,
            "bank_version": version,
            "signals": {signal_type: value},
            "disable_until_ts": settings.disable_until_ts,
            "enabled": settings.enabled(),
            "note": settings.note,
            "metadata": settings.metadata,
        }

    def content(self, name: str, entry_id: int) -> dict:
        name = self.require(name)
        return self._content_dict(name, entry_id, *self._entry(name, entry_id))

    def list_content(self, name: str, limit: int = 100, offset: int = 0) -> dict:
        name = self.require(name)
        if not self.store._version_numbers(name):
            return {"bank": name, "bank_version": None, "total": 0, "content": []}
        version = self.store.open_version(name)
        table = version.entries()
        rows = table.slice(offset, limit).to_pylist()
        return {
            "bank": name,
            "bank_version": version.version,
            "total": len(table),
            "content": [self._content_dict(name, r["entry_id"], version.version, r["signal_type"], r["value"]) for r in rows],
        }

    def update_content(
        self, name: str, entry_id: int, *, disable_until_ts: int | None = None, note: str | None = None,
        metadata: dict | None = None, actor: str = "api",
    ) -> dict:
        name = self.require(name)
        version, signal_type, value = self._entry(name, entry_id)
        metadata = validate_metadata(metadata)
        with self.db.transaction(lock_name="audit_log"):
            self.settings.set_content(name, entry_id, disable_until_ts=disable_until_ts, note=note, metadata=metadata)
            self.audit.append(
                actor, "bank.update_content",
                {"bank": name, "entry_id": int(entry_id), "disable_until_ts": disable_until_ts, "note_set": note is not None},
            )
        self._notify(name)
        return self._content_dict(name, entry_id, version, signal_type, value)

    def delete_content(self, name: str, entry_id: int, actor: str = "api") -> int:
        """Remove one content id: a new version without it (the bank stays, empty, if it was the last)."""
        name = self.require(name)
        # Curator writes of one bank are serialised through a database lock, so a removal (which
        # writes the bank's remaining entries as a new version) never drops a concurrent addition
        # made through the API, by this instance or another sharing the database.
        with self.db.transaction(lock_name=_bank_lock(name)):
            try:
                version, _, _ = self._entry(name, entry_id)
            except NotFound:
                return 0
            table = self.store.open_version(name, version).entries()
            remaining = table.filter(pc.not_equal(table["entry_id"], int(entry_id)))
            # The last entry's removal leaves an empty version: numbering goes on, ids are never reused.
            self.store.add_entries(
                name, _pairs(remaining), note=f"content {entry_id} removed", replace=True, allow_empty=True
            )
            self.settings.forget_content(name, entry_id)
        # Its own transaction: audit appends take the audit log's lock, which a nested one would not.
        self.audit.append(actor, "bank.delete_content", {"bank": name, "entry_id": int(entry_id), "from_version": version})
        self._notify(name)
        return 1


def _bank_lock(name: str) -> str:
    return f"bank:{name}"


def _pairs(table) -> Iterator[tuple[str, str]]:
    for batch in table.to_batches(max_chunksize=65536):
        yield from zip(batch.column("signal_type").to_pylist(), batch.column("value").to_pylist())


def _check_ratio(ratio: float) -> None:
    if not (0.0 <= float(ratio) <= 1.0):
        raise InvalidSignal("enabled_ratio must be between 0.0 and 1.0")
