"""Append-only audit log whose entries are hash-chained.

Every entry stores the SHA-256 of its own canonical content together with the
previous entry's hash, so editing an entry breaks its own hash, deleting one
breaks the chain (sequence numbers are dense and each names its predecessor's
hash), and cutting off the newest entries is caught by the head anchor: a small
file beside the store (not in the database) that records the latest sequence
number and hash. `verify` walks the chain and says where it first breaks.

Entries never hold image bytes or secrets: callers pass names, digests, ids.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from safeset.db import Database, Migration

COMPONENT = "audit"
GENESIS = "0" * 64
ANCHOR_FILE = "audit-head.json"  # in the store directory: every face of one store shares one head
MIGRATIONS = [
    Migration(
        1,
        "CREATE TABLE audit_log ("
        " seq {bigint} PRIMARY KEY,"
        " at TEXT NOT NULL,"
        " actor TEXT NOT NULL,"
        " action TEXT NOT NULL,"
        " details TEXT NOT NULL,"
        " prev_hash TEXT NOT NULL,"
        " entry_hash TEXT NOT NULL)",
    )
]


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at: str
    actor: str
    action: str
    details: dict
    prev_hash: str
    entry_hash: str

    def to_dict(self) -> dict:
        return {
            "seq": self.seq,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "entry_hash": self.entry_hash,
        }


@dataclass
class VerifyResult:
    ok: bool
    entries: int
    head_hash: str
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"ok": self.ok, "entries": self.entries, "head_hash": self.head_hash, "problems": self.problems}


def entry_hash(seq: int, at: str, actor: str, action: str, details_json: str, prev_hash: str) -> str:
    """The hash that chains an entry: over its fields and its predecessor's hash."""
    canonical = json.dumps([seq, at, actor, action, details_json, prev_hash], separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _canonical_details(details: dict | None) -> str:
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


class AuditLog:
    """Appends and verifies; `anchor_path` (None to disable) holds the head outside the database."""

    def __init__(self, db: Database, anchor_path: Path | None = None):
        self.db = db
        self.anchor_path = Path(anchor_path) if anchor_path is not None else None
        db.migrate(COMPONENT, MIGRATIONS)

    @classmethod
    def open_store(cls, store_root: Path, db_url: str | None = None) -> "AuditLog":
        """The audit log of a store: its database (`db_url`, $SAFESET_DB, else SQLite in the store) and head anchor."""
        store_root = Path(store_root).expanduser()
        return cls(Database.open(db_url, store_root), anchor_path=store_root / ANCHOR_FILE)

    def append(self, actor: str, action: str, details: dict[str, Any] | None = None) -> AuditEntry:
        details_json = _canonical_details(details)
        at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with self.db.transaction(lock_name="audit_log"):
            last = self.db.query_one("SELECT seq, entry_hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            seq = (int(last[0]) + 1) if last else 1
            prev = last[1] if last else GENESIS
            digest = entry_hash(seq, at, actor, action, details_json, prev)
            self.db.execute(
                "INSERT INTO audit_log (seq, at, actor, action, details, prev_hash, entry_hash) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (seq, at, actor, action, details_json, prev, digest),
            )
            self._write_anchor(seq, digest)
        return AuditEntry(seq, at, actor, action, json.loads(details_json), prev, digest)

    def entries(self, limit: int | None = None, after: int = 0) -> list[AuditEntry]:
        sql = "SELECT seq, at, actor, action, details, prev_hash, entry_hash FROM audit_log WHERE seq > ? ORDER BY seq"
        params: tuple = (after,)
        if limit is not None:
            sql += " LIMIT ?"
            params = (after, limit)
        return [
            AuditEntry(int(s), a, actor, action, json.loads(d), p, h)
            for s, a, actor, action, d, p, h in self.db.query(sql, params)
        ]

    def verify(self, batch: int = 10_000) -> VerifyResult:
        problems: list[str] = []
        expected_seq, prev, count = 1, GENESIS, 0
        after = 0
        while True:
            rows = self.db.query(
                "SELECT seq, at, actor, action, details, prev_hash, entry_hash FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, batch),
            )
            if not rows:
                break
            for seq, at, actor, action, details_json, prev_hash, stored in rows:
                seq = int(seq)
                if seq != expected_seq:
                    problems.append(f"entries {expected_seq}..{seq - 1} are missing (deleted)")
                if prev_hash != prev:
                    problems.append(f"entry {seq}: does not follow the entry before it (chain broken)")
                if entry_hash(seq, at, actor, action, details_json, prev_hash) != stored:
                    problems.append(f"entry {seq}: content does not match its hash (edited)")
                prev, expected_seq, after = stored, seq + 1, seq
                count += 1
        anchor = self._read_anchor()
        if anchor is not None:
            anchor_seq, anchor_hash = anchor
            if anchor_seq < 0:
                problems.append(f"the head anchor {self.anchor_path} is unreadable")
            elif anchor_seq > count and anchor_seq >= expected_seq:
                problems.append(f"the log ends at entry {expected_seq - 1} but entry {anchor_seq} was written (newest entries deleted)")
            elif anchor_seq == expected_seq - 1 and anchor_hash != prev:
                problems.append(f"entry {anchor_seq}: differs from the recorded head (edited)")
        return VerifyResult(not problems, count, prev, problems)

    # -- head anchor -------------------------------------------------------
    def _write_anchor(self, seq: int, digest: str) -> None:
        if self.anchor_path is None:
            return
        self.anchor_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.anchor_path.with_name(self.anchor_path.name + f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps({"seq": seq, "entry_hash": digest}) + "\n", encoding="utf-8")
        os.replace(tmp, self.anchor_path)

    def _read_anchor(self) -> tuple[int, str] | None:
        if self.anchor_path is None or not self.anchor_path.exists():
            return None
        try:
            data = json.loads(self.anchor_path.read_text(encoding="utf-8"))
            return int(data["seq"]), str(data["entry_hash"])
        except (ValueError, KeyError, TypeError):
            return (-1, "unreadable")
