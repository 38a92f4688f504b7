"""Opening the review queue of a store: the one place the CLI and the service build it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from safeset.review.decisions import DEFAULT_CONFIRMED_BANK
from safeset.review.queue import DEFAULT_CLAIM_TIMEOUT_SECONDS, ReviewQueue
from safeset.review.quarantine import Quarantine



@dataclass(frozen=True)
class ReviewSettings:
    quarantine_dir: Path | None = None  # None: <store>/quarantine
    quarantine_key_file: Path | None = None  # None: $SAFESET_QUARANTINE_KEY_FILE / $SAFESET_QUARANTINE_KEY
    retention_seconds: float = 0.0
    confirmed_bank: str = DEFAULT_CONFIRMED_BANK
    claim_timeout_seconds: float = DEFAULT_CLAIM_TIMEOUT_SECONDS


def build_queue(store, db, audit, settings: ReviewSettings, env: Mapping[str, str] | None = None) -> ReviewQueue:
    quarantine = Quarantine.open(store.root, settings.quarantine_key_file, settings.quarantine_dir, env)
    return ReviewQueue(
        db, store, audit, quarantine,
        confirmed_bank=settings.confirmed_bank,
        retention_seconds=settings.retention_seconds,
        claim_timeout_seconds=settings.claim_timeout_seconds,
    )


def open_queue(
    store_root: Path, db_url: str | None = None, settings: ReviewSettings | None = None,
    env: Mapping[str, str] | None = None,
) -> ReviewQueue:
    """The queue of a store (database from `db_url`, $SAFESET_DB, or the store's SQLite file)."""
    from safeset.audit import AuditLog
    from safeset.banks.store import BankStore

    store_root = Path(store_root).expanduser()
    audit = AuditLog.open_store(store_root, db_url)
    return build_queue(BankStore(store_root), audit.db, audit, settings or ReviewSettings(), env)
