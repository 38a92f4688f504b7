"""Per-account strikes: which of a platform's users matched what, and when to escalate.

A lookup may name the platform's user (`account_id`). A lookup that matched
is one strike for that account: its matches go to the account's match log
and its count goes up. When the count reaches `strike_threshold`, and again
at every further multiple of it, an escalation event is written to the
webhook outbox in the same transaction (delivered in the background, see
`webhook`) and to the audit log — the place a know-your-customer or abuse
process hooks in. Lookups that matched nothing, or name no account, write
nothing (the serving path stays free of database writes).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from safeset.db import Database, Migration
from safeset.service.webhook import Outbox, WebhookSender

COMPONENT = "strikes"
ESCALATION_EVENT = "account.escalation"
MAX_ACCOUNT_ID = 256
RECENT_IN_EVENT = 20

MIGRATIONS = [
    Migration(
        1,
        "CREATE TABLE strike_accounts ("
        " account_id TEXT PRIMARY KEY,"
        " strikes {bigint} NOT NULL,"
        " first_strike_at TEXT NOT NULL,"
        " last_strike_at TEXT NOT NULL,"
        " escalations INTEGER NOT NULL DEFAULT 0,"
        " last_escalated_at TEXT);"
        "CREATE TABLE strike_matches ("
        " id {id},"
        " account_id TEXT NOT NULL,"
        " strike {bigint} NOT NULL,"
        " matched_at TEXT NOT NULL,"
        " origin TEXT NOT NULL,"
        " actor TEXT NOT NULL,"
        " signal_type TEXT NOT NULL,"
        " value TEXT NOT NULL,"
        " bank TEXT NOT NULL,"
        " bank_version INTEGER NOT NULL,"
        " entry_id {bigint} NOT NULL,"
        " distance INTEGER);"
        "CREATE INDEX strike_matches_by_account ON strike_matches (account_id, id)",
    )
]


def _now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def check_account_id(account_id: str) -> str:
    """Account ids are the platform's opaque strings: 1..256 printable characters."""
    text = str(account_id)
    if not text or len(text) > MAX_ACCOUNT_ID or not text.isprintable():
        raise ValueError(f"account_id must be 1 to {MAX_ACCOUNT_ID} printable characters")
    return text


@dataclass(frozen=True)
class AccountStrikes:
    account_id: str
    strikes: int
    first_strike_at: str
    last_strike_at: str
    escalations: int
    last_escalated_at: str | None

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class StrikeResult:
    account: AccountStrikes
    escalated: bool
    event_id: str | None


class StrikeLog:
    """Component "strikes": the match log, strike counts and escalations (see the module docstring)."""

    def __init__(self, db: Database, audit, *, threshold: int, sender: WebhookSender | None = None):
        self.db = db
        self.audit = audit
        self.threshold = int(threshold)
        db.migrate(COMPONENT, MIGRATIONS)
        self.outbox = sender.outbox if sender is not None else Outbox(db)
        self.sender = sender

    def start(self) -> None:
        if self.sender is not None:
            self.sender.start()

    def stop(self) -> None:
        if self.sender is not None:
            self.sender.stop()

    def record(self, account_id: str, matches: Iterable, *, actor: str, origin: str) -> StrikeResult | None:
        """One strike for `account_id` if `matches` (LiveIndex `Match`es) is not empty; None otherwise."""
        matches = list(matches)
        if not matches:
            return None
        account_id = check_account_id(account_id)
        now = _now_text()
        event_id = None
        # The audit lock: this transaction may append to the audit log (nested appends join it).
        with self.db.transaction(lock_name="audit_log"):
            row = self.db.query_one("SELECT strikes FROM strike_accounts WHERE account_id = ?", (account_id,))
            strikes = (int(row[0]) if row else 0) + 1
            if row is None:
                self.db.execute(
                    "INSERT INTO strike_accounts (account_id, strikes, first_strike_at, last_strike_at) VALUES (?, ?, ?, ?)",
                    (account_id, strikes, now, now),
                )
            else:
                self.db.execute(
                    "UPDATE strike_accounts SET strikes = ?, last_strike_at = ? WHERE account_id = ?",
                    (strikes, now, account_id),
                )
            for match in matches:
                self.db.execute(
                    "INSERT INTO strike_matches (account_id, strike, matched_at, origin, actor, signal_type, value, bank,"
                    " bank_version, entry_id, distance) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (account_id, strikes, now, origin, actor, match.signal_type, match.value, match.bank,
                     int(match.bank_version), int(match.entry_id), match.distance),
                )
            escalated = self.threshold > 0 and strikes % self.threshold == 0
            if escalated:
                self.db.execute(
                    "UPDATE strike_accounts SET escalations = escalations + 1, last_escalated_at = ? WHERE account_id = ?",
                    (now, account_id),
                )
                account = self.account(account_id)
                event = self._event(account)
                if self.sender is not None and self.sender.enabled:
                    event_id = self.outbox.enqueue(ESCALATION_EVENT, event)
                self.audit.append(actor, "strikes.escalation", {
                    "account_id": account_id, "strikes": strikes, "threshold": self.threshold,
                    "webhook_event": event_id,
                })
            account = self.account(account_id)
        if event_id is not None:
            self.sender.wake()
        return StrikeResult(account, escalated, event_id)

    def _event(self, account: AccountStrikes) -> dict:
        """What the escalation webhook says: the account, its counts, its latest matches (no image bytes)."""
        return {
            "account_id": account.account_id,
            "strikes": account.strikes,
            "threshold": self.threshold,
            "escalations": account.escalations,
            "first_strike_at": account.first_strike_at,
            "last_strike_at": account.last_strike_at,
            "escalated_at": account.last_escalated_at,
            "sent_by": "safeset",
            "unix_time": int(time.time()),
            "recent_matches": self.matches(account.account_id, limit=RECENT_IN_EVENT),
        }

    # -- reading -------------------------------------------------------------
    def account(self, account_id: str) -> AccountStrikes | None:
        row = self.db.query_one(
            "SELECT account_id, strikes, first_strike_at, last_strike_at, escalations, last_escalated_at"
            " FROM strike_accounts WHERE account_id = ?",
            (str(account_id),),
        )
        if row is None:
            return None
        account, strikes, first, last, escalations, escalated = row
        return AccountStrikes(account, int(strikes), first, last, int(escalations), escalated)

    def matches(self, account_id: str, limit: int = 100) -> list[dict]:
        """The account's latest matches, newest first."""
        rows = self.db.query(
            "SELECT strike, matched_at, origin, signal_type, value, bank, bank_version, entry_id, distance"
            " FROM strike_matches WHERE account_id = ? ORDER BY id DESC LIMIT ?",
            (str(account_id), int(limit)),
        )
        names = ("strike", "matched_at", "origin", "signal_type", "value", "bank", "bank_version", "entry_id", "distance")
        return [dict(zip(names, row)) for row in rows]
