"""What the curator API says about banks beyond their entries: ratios, disabled content, empty banks.

Bank *entries* live in the file store (`safeset.banks.store`), shared with
`safeset bank import`. HMA's API also lets a curator create an empty bank, set
a bank's `matching_enabled_ratio`, and disable one piece of content until a
time; those few facts live here, in the service database, so every instance
sharing the database sees them.

The matcher consults `snapshot()` (cheap: an immutable copy refreshed when
this process changes something, and at least every `REFRESH_SECONDS` to see
other instances' changes): `snapshot().enabled_ratio(bank)` and
`snapshot().is_disabled(bank, entry_id)`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from safeset.db import Database, Migration

COMPONENT = "service_banks"
REFRESH_SECONDS = 2.0

MIGRATIONS = [
    Migration(
        1,
        "CREATE TABLE service_banks ("
        " name TEXT PRIMARY KEY,"
        " enabled_ratio REAL NOT NULL,"
        " created_at TEXT NOT NULL);"
        "CREATE TABLE service_bank_content ("
        " bank TEXT NOT NULL,"
        " entry_id {bigint} NOT NULL,"
        " disable_until_ts {bigint} NOT NULL DEFAULT 0,"
        " note TEXT,"
        " metadata TEXT,"
        " updated_at TEXT NOT NULL,"
        " PRIMARY KEY (bank, entry_id))",
    )
]


@dataclass(frozen=True)
class ContentSettings:
    """A piece of content's curator settings (defaults when never set)."""

    bank: str
    entry_id: int
    disable_until_ts: int = 0
    note: str | None = None
    metadata: dict | None = None

    def enabled(self, now: float | None = None) -> bool:
        return self.disable_until_ts <= (time.time() if now is None else now)


@dataclass(frozen=True)
class SettingsSnapshot:
    """An immutable view for the matcher: bank ratios and disabled entries."""

    ratios: dict[str, float] = field(default_factory=dict)
    disabled: dict[str, dict[int, int]] = field(default_factory=dict)  # bank -> entry_id -> until ts

    def enabled_ratio(self, bank: str) -> float:
        return self.ratios.get(bank, 1.0)

    def is_disabled(self, bank: str, entry_id: int, now: float | None = None) -> bool:
        until = self.disabled.get(bank, {}).get(int(entry_id))
        return until is not None and until > (time.time() if now is None else now)


def _now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class BankSettings:
    """Reads and writes bank and content settings; keeps a snapshot for the matcher."""

    def __init__(self, db: Database):
        self.db = db
        db.migrate(COMPONENT, MIGRATIONS)
        self._snapshot: SettingsSnapshot | None = None
        self._snapshot_at = 0.0
        self._lock = threading.Lock()

    # -- banks ---------------------------------------------------------------
    def declared_banks(self) -> dict[str, float]:
        """Banks with a record here (created through the API, or whose ratio was set): name -> ratio."""
        return {name: float(ratio) for name, ratio in self.db.query("SELECT name, enabled_ratio FROM service_banks")}

    def is_declared(self, name: str) -> bool:
        return self.db.query_one("SELECT 1 FROM service_banks WHERE name = ?", (name,)) is not None

    def enabled_ratio(self, name: str) -> float:
        row = self.db.query_one("SELECT enabled_ratio FROM service_banks WHERE name = ?", (name,))
        return float(row[0]) if row else 1.0

    def declare_bank(self, name: str, enabled_ratio: float = 1.0) -> bool:
        """Record a bank; False when it was already recorded (nothing changed)."""
        with self.db.transaction(lock_name=COMPONENT):
            if self.is_declared(name):
                return False
            self.db.execute(
                "INSERT INTO service_banks (name, enabled_ratio, created_at) VALUES (?, ?, ?)",
                (name, float(enabled_ratio), _now_text()),
            )
        self.invalidate()
        return True

    def set_enabled_ratio(self, name: str, enabled_ratio: float) -> None:
        with self.db.transaction(lock_name=COMPONENT):
            if self.db.execute("UPDATE service_banks SET enabled_ratio = ? WHERE name = ?", (float(enabled_ratio), name)) == 0:
                self.db.execute(
                    "INSERT INTO service_banks (name, enabled_ratio, created_at) VALUES (?, ?, ?)",
                    (name, float(enabled_ratio), _now_text()),
                )
        self.invalidate()

    def forget_bank(self, name: str) -> None:
        with self.db.transaction(lock_name=COMPONENT):
            self.db.execute("DELETE FROM service_bank_content WHERE bank = ?", (name,))
            self.db.execute("DELETE FROM service_banks WHERE name = ?", (name,))
        self.invalidate()

    # -- content -------------------------------------------------------------
    def content(self, bank: str, entry_id: int) -> ContentSettings:
        row = self.db.query_one(
            "SELECT disable_until_ts, note, metadata FROM service_bank_content WHERE bank = ? AND entry_id = ?",
            (bank, int(entry_id)),
        )
        if row is None:
            return ContentSettings(bank, int(entry_id))
        until, note, metadata = row
        return ContentSettings(bank, int(entry_id), int(until), note, json.loads(metadata) if metadata else None)

    def set_content(
        self,
        bank: str,
        entry_id: int,
        *,
        disable_until_ts: int | None = None,
        note: str | None = None,
        metadata: dict | None = None,
    ) -> ContentSettings:
        """Change the given fields (None = keep) of one entry's settings."""
        with self.db.transaction(lock_name=COMPONENT):
            current = self.content(bank, entry_id)
            until = current.disable_until_ts if disable_until_ts is None else int(disable_until_ts)
            note = current.note if note is None else note
            metadata = current.metadata if metadata is None else metadata
            metadata_text = json.dumps(metadata, sort_keys=True) if metadata is not None else None
            self.db.execute("DELETE FROM service_bank_content WHERE bank = ? AND entry_id = ?", (bank, int(entry_id)))
            self.db.execute(
                "INSERT INTO service_bank_content (bank, entry_id, disable_until_ts, note, metadata, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (bank, int(entry_id), until, note, metadata_text, _now_text()),
            )
        self.invalidate()
        return self.content(bank, entry_id)

    def forget_content(self, bank: str, entry_id: int) -> None:
        self.db.execute("DELETE FROM service_bank_content WHERE bank = ? AND entry_id = ?", (bank, int(entry_id)))
        self.invalidate()

    # -- the matcher's view --------------------------------------------------
    def invalidate(self) -> None:
        with self._lock:
            self._snapshot = None

    def snapshot(self, max_age_s: float = REFRESH_SECONDS) -> SettingsSnapshot:
        now = time.monotonic()
        with self._lock:
            if self._snapshot is not None and now - self._snapshot_at < max_age_s:
                return self._snapshot
        ratios = self.declared_banks()
        disabled: dict[str, dict[int, int]] = {}
        rows = self.db.query(
            "SELECT bank, entry_id, disable_until_ts FROM service_bank_content WHERE disable_until_ts > ?",
            (int(time.time()),),
        )
        for bank, entry_id, until in rows:
            disabled.setdefault(bank, {})[int(entry_id)] = int(until)
        snapshot = SettingsSnapshot(ratios, disabled)
        with self._lock:
            self._snapshot, self._snapshot_at = snapshot, now
        return snapshot
