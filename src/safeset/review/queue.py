"""The review queue: one core the CLI, the JSON API and the web UI share.

Items move pending -> claimed -> decided; an escalation sends one to
`escalated`, where a senior reviewer (someone other than who escalated it)
claims and decides it. Claims expire after `claim_timeout_seconds`, so an
item a reviewer walked away from goes back to the queue. A claim is taken in
a transaction holding the "review_claim" lock (SQLite: the write lock;
PostgreSQL: an advisory lock), so two reviewers never get the same item,
however many service instances share the database.

A final decision sets when the item's quarantined bytes are deleted
(`retention_seconds` after it; 0 deletes them at once). `purge` deletes
what is due and runs at service start and from `safeset review purge`.
Every state change is written to the audit log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from safeset.review import clock
from safeset.review.decisions import DEFAULT_CONFIRMED_BANK, apply
from safeset.review.digests import image_digests, merged, url_digest
from safeset.review.errors import ItemNotFound, ItemStateError, NoImageError, ReviewError
from safeset.review.model import (
    BYTES_NONE,
    BYTES_PURGED,
    BYTES_QUARANTINED,
    CLAIMED,
    DECIDED,
    DECISIONS,
    ESCALATE,
    ESCALATED,
    PENDING,
    STATUSES,
    Decision,
    NewItem,
    ReviewItem,
)
from safeset.review.schema import COMPONENT, MIGRATIONS

DEFAULT_CLAIM_TIMEOUT_SECONDS = 30 * 60
ORPHAN_GRACE_SECONDS = 3600  # a file written by an add that has not committed yet is not an orphan
_AUDITED_IDS = 1000  # item ids listed in one audit entry; the count is always exact

_ITEM_COLUMNS = (
    "id, origin, status, source_url, first_seen, dataset, shard, sample_key, sample_position, digests, evidence, "
    "provenance, account_id, run_id, bytes_state, bytes_note, created_at, claimed_by, claimed_at, escalated_at, "
    "decision, decided_by, decided_at, purge_after"
)
_DECISION_COLUMNS = "id, item_id, decision, reviewer, note, decided_at, bank, bank_version, bank_values"


def _json(value: Any) -> str:
    # ASCII: lone surrogates and NULs from stranger data are escaped, never refused by the database.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def _text(value: Any) -> str | None:
    """Text any database column takes: NULs (PostgreSQL refuses them) and lone surrogates become U+FFFD."""
    if value is None:
        return None
    text = str(value).replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _item(row: tuple) -> ReviewItem:
    values = list(row)
    for index in (9, 10, 11):  # digests, evidence, provenance
        values[index] = json.loads(values[index])
    values[0] = int(values[0])
    values[8] = None if values[8] is None else int(values[8])
    return ReviewItem(*values)


def _decision(row: tuple) -> Decision:
    id_, item_id, decision, reviewer, note, decided_at, bank, version, values = row
    return Decision(
        int(id_), int(item_id), decision, reviewer, note, decided_at, bank,
        None if version is None else int(version), [tuple(pair) for pair in json.loads(values)],
    )


@dataclass
class PurgeResult:
    items: list[int] = field(default_factory=list)  # items whose bytes were deleted now
    orphans: int = 0  # files no item referred to
    temporaries: int = 0  # half-written files of crashed writers

    def to_dict(self) -> dict:
        return {"items": self.items, "purged": len(self.items), "orphans": self.orphans, "temporaries": self.temporaries}


class ReviewQueue:
    """Items, claims and decisions in the database; bytes in the quarantine; bank effects in the store."""

    def __init__(
        self,
        db,
        store,
        audit,
        quarantine,
        *,
        confirmed_bank: str = DEFAULT_CONFIRMED_BANK,
        retention_seconds: float = 0,
        claim_timeout_seconds: float = DEFAULT_CLAIM_TIMEOUT_SECONDS,
    ):
        from safeset.banks.names import normalize_bank_name

        self.db = db
        self.store = store
        self.audit = audit
        self.quarantine = quarantine
        self.confirmed_bank = normalize_bank_name(confirmed_bank)
        self.retention_seconds = float(retention_seconds)
        self.claim_timeout_seconds = float(claim_timeout_seconds)
        db.migrate(COMPONENT, MIGRATIONS)

    # -- component life cycle (service) -------------------------------------------
    def start(self) -> None:
        """At service start: delete bytes whose retention is over."""
        self.purge(actor="service")

    def stop(self) -> None:
        pass

    @property
    def stores_bytes(self) -> bool:
        """Whether image bytes can be queued (a quarantine key is configured)."""
        return self.quarantine.has_key

    # -- adding -------------------------------------------------------------------
    def find(self, run_id: str, shard: str, key: str) -> int | None:
        row = self.db.query_one(
            "SELECT id FROM review_items WHERE run_id = ? AND shard = ? AND sample_key = ?", (run_id, shard, key)
        )
        return int(row[0]) if row else None

    def known_keys(self, run_id: str, shard: str) -> set[str]:
        """Keys of one run's shard already queued (an import skips them)."""
        rows = self.db.query("SELECT sample_key FROM review_items WHERE run_id = ? AND shard = ?", (run_id, shard))
        return {row[0] for row in rows}

    def add(self, new: NewItem, image_bytes: bytes | None, actor: str, *, audit: bool = True) -> int:
        """Queue an item, its bytes encrypted into the quarantine; returns its id.

        An item of a run already queued (same run_id, shard and key) is not
        added again: its id is returned. Bytes without a quarantine key raise
        `QuarantineKeyError` (they are never kept unencrypted).
        """
        if new.run_id is not None and (new.shard is None or new.key is None):
            raise ValueError("an item of a run needs its shard and key (they identify it within the run)")
        new = _clean(new)
        if new.run_id is not None:
            existing = self.find(new.run_id, new.shard, new.key)
            if existing is not None:
                return existing
        digests = merged(
            image_digests(image_bytes) if image_bytes is not None else None, new.digests, url_digest(new.source_url)
        )
        ref = self.quarantine.put(image_bytes) if image_bytes is not None else None
        bytes_state = BYTES_QUARANTINED if ref else (new.bytes_state or BYTES_NONE)
        created = clock.now_text()
        try:
            with self.db.transaction(lock_name="review_add"):
                if new.run_id is not None:
                    existing = self.find(new.run_id, new.shard, new.key)
                    if existing is not None:
                        self._discard_bytes(ref)
                        return existing
                item_id = self.db.insert(
                    "INSERT INTO review_items (origin, status, run_id, dataset, shard, sample_key, sample_position,"
                    " source_url, first_seen, digests, evidence, provenance, account_id, bytes_state, bytes_note,"
                    " quarantine_ref, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    (
                        new.origin, PENDING, new.run_id, new.dataset, new.shard, new.key, new.position,
                        new.source_url, new.first_seen or created, _json(digests), _json(list(new.evidence)),
                        _json(dict(new.provenance)), new.account_id, bytes_state, new.bytes_note, ref, created,
                    ),
                )
                if audit:
                    self.audit.append(actor, "review.item_added", {
                        "item_id": item_id, "origin": new.origin, "account_id": new.account_id,
                        "banks": sorted({e.get("bank") for e in new.evidence if e.get("bank")}),
                        "bytes": bytes_state,
                    })
        except BaseException:
            self._discard_bytes(ref)
            raise
        return item_id

    def _discard_bytes(self, ref: str | None) -> None:
        if ref is not None:
            self.quarantine.delete(ref)

    # -- reading ------------------------------------------------------------------
    def get(self, item_id: int) -> ReviewItem:
        row = self.db.query_one(f"SELECT {_ITEM_COLUMNS} FROM review_items WHERE id = ?", (int(item_id),))
        if row is None:
            raise ItemNotFound(int(item_id))
        return _item(row)

    def list(
        self, status: str | None = None, limit: int = 100, offset: int = 0, *, decision: str | None = None
    ) -> list[ReviewItem]:
        """Items in queue order (oldest first), optionally of one status and/or decision."""
        where, params = self._filters(status, decision)
        rows = self.db.query(
            f"SELECT {_ITEM_COLUMNS} FROM review_items{where} ORDER BY id LIMIT ? OFFSET ?",
            (*params, int(limit), int(offset)),
        )
        return [_item(row) for row in rows]

    def count(self, status: str | None = None, *, decision: str | None = None) -> int:
        where, params = self._filters(status, decision)
        return int(self.db.query_one(f"SELECT COUNT(*) FROM review_items{where}", params)[0])

    def counts(self) -> dict[str, int]:
        """Items per status (every status present, zero included)."""
        found = dict(self.db.query("SELECT status, COUNT(*) FROM review_items GROUP BY status"))
        return {status: int(found.get(status, 0)) for status in STATUSES}

    @staticmethod
    def _filters(status: str | None, decision: str | None) -> tuple[str, tuple]:
        clauses, params = [], []
        if status is not None:
            if status not in STATUSES:
                raise ReviewError(f"unknown status {status!r}; statuses: {', '.join(STATUSES)}")
            clauses.append("status = ?")
            params.append(status)
        if decision is not None:
            if decision not in DECISIONS:
                raise ReviewError(f"unknown decision {decision!r}; decisions: {', '.join(DECISIONS)}")
            clauses.append("decision = ?")
            params.append(decision)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    def decisions(self, item_id: int) -> list[Decision]:
        rows = self.db.query(
            f"SELECT {_DECISION_COLUMNS} FROM review_decisions WHERE item_id = ? ORDER BY id", (int(item_id),)
        )
        return [_decision(row) for row in rows]

    def image(self, item_id: int, viewer: str | None = None) -> bytes:
        """The item's image bytes, decrypted; `viewer` (who is looking) is audit-logged when given."""
        row = self.db.query_one("SELECT bytes_state, quarantine_ref FROM review_items WHERE id = ?", (int(item_id),))
        if row is None:
            raise ItemNotFound(int(item_id))
        state, ref = row
        if state != BYTES_QUARANTINED or not ref:
            raise NoImageError(f"review item {item_id} holds no image ({state})")
        data = self.quarantine.get(ref)
        if viewer is not None:
            self.audit.append(viewer, "review.image_viewed", {"item_id": int(item_id)})
        return data

    # -- claiming -----------------------------------------------------------------
    def _stale_before(self) -> str:
        return clock.shifted_text(-self.claim_timeout_seconds)

    def claim_next(self, reviewer: str, *, escalated: bool = False) -> ReviewItem | None:
        """The reviewer's current item, else the oldest free one (pending, or escalated ones for a
        senior reviewer), now claimed by them; None when there is none."""
        reviewer = _required(reviewer, "reviewer")
        with self.db.transaction(lock_name="review_claim"):
            own = self.db.query_one(
                "SELECT id FROM review_items WHERE status = ? AND claimed_by = ? AND claimed_at >= ? ORDER BY id LIMIT 1",
                (CLAIMED, reviewer, self._stale_before()),
            )
            if own is not None:
                return self.get(own[0])
            if escalated:
                candidate = self.db.query_one(
                    "SELECT id FROM review_items WHERE (status = ? OR (status = ? AND claimed_at < ?"
                    " AND escalated_at IS NOT NULL)) AND (escalated_by IS NULL OR escalated_by <> ?) ORDER BY id LIMIT 1",
                    (ESCALATED, CLAIMED, self._stale_before(), reviewer),
                )
            else:
                candidate = self.db.query_one(
                    "SELECT id FROM review_items WHERE status = ? OR (status = ? AND claimed_at < ?"
                    " AND escalated_at IS NULL) ORDER BY id LIMIT 1",
                    (PENDING, CLAIMED, self._stale_before()),
                )
            if candidate is None:
                return None
            item_id = int(candidate[0])
            self.db.execute(
                "UPDATE review_items SET status = ?, claimed_by = ?, claimed_at = ? WHERE id = ?",
                (CLAIMED, reviewer, clock.now_text(), item_id),
            )
            self.audit.append(reviewer, "review.claim", {"item_id": item_id})
            return self.get(item_id)

    def release(self, item_id: int, reviewer: str) -> ReviewItem:
        """Give a claimed item back to the queue undecided (skipped, or the session's cap reached)."""
        with self.db.transaction(lock_name="review_claim"):
            item = self.get(item_id)
            if item.status != CLAIMED or item.claimed_by != reviewer:
                raise ItemStateError(f"review item {item_id} is not claimed by {reviewer}")
            back = ESCALATED if item.escalated_at else PENDING
            self.db.execute(
                "UPDATE review_items SET status = ?, claimed_by = NULL, claimed_at = NULL WHERE id = ?",
                (back, int(item_id)),
            )
            self.audit.append(reviewer, "review.release", {"item_id": int(item_id)})
        return self.get(item_id)

    # -- deciding -----------------------------------------------------------------
    def decide(self, item_id: int, decision: str, reviewer: str, note: str | None = None) -> Decision:
        """Record a decision and apply it (bank versions for confirm / false positive)."""
        reviewer = _required(reviewer, "reviewer")
        if decision not in DECISIONS:
            raise ReviewError(f"unknown decision {decision!r}; decisions: {', '.join(DECISIONS)}")
        note = _text(note.strip()) if note and note.strip() else None
        with self.db.transaction(lock_name="review_decide"):
            item = self.get(item_id)
            self._check_decidable(item, decision, reviewer)
            change = apply(self.store, item, decision, reviewer, self.confirmed_bank)
            moment = clock.now()
            decided_at = clock.as_text(moment)
            if decision == ESCALATE:
                self.db.execute(
                    "UPDATE review_items SET status = ?, escalated_at = ?, escalated_by = ?, claimed_by = NULL,"
                    " claimed_at = NULL WHERE id = ?",
                    (ESCALATED, decided_at, reviewer, item.id),
                )
            else:
                purge_after = clock.as_text(moment + timedelta(seconds=self.retention_seconds))
                self.db.execute(
                    "UPDATE review_items SET status = ?, decision = ?, decided_by = ?, decided_at = ?, purge_after = ?,"
                    " claimed_by = NULL, claimed_at = NULL WHERE id = ?",
                    (DECIDED, decision, reviewer, decided_at, purge_after, item.id),
                )
            decision_id = self.db.insert(
                "INSERT INTO review_decisions (item_id, decision, reviewer, note, decided_at, bank, bank_version,"
                " bank_values) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (item.id, decision, reviewer, note, decided_at, change.bank, change.version,
                 _json([list(pair) for pair in change.values])),
            )
            self.audit.append(reviewer, "review.decide", {
                "item_id": item.id, "decision": decision, "note": note,
                "bank": change.bank, "bank_version": change.version, "values": len(change.values),
            })
        if decision != ESCALATE and self.retention_seconds <= 0:
            self.purge(actor=reviewer, item_ids=[item.id])
        return Decision(decision_id, item.id, decision, reviewer, note, decided_at, change.bank, change.version,
                        list(change.values))

    def _check_decidable(self, item: ReviewItem, decision: str, reviewer: str) -> None:
        if item.status == DECIDED:
            raise ItemStateError(f"review item {item.id} was already decided ({item.decision} by {item.decided_by})")
        if item.status == CLAIMED and item.claimed_by != reviewer and (item.claimed_at or "") >= self._stale_before():
            raise ItemStateError(f"review item {item.id} is claimed by {item.claimed_by}")
        if decision == ESCALATE and item.escalated_at:
            raise ItemStateError(f"review item {item.id} is already escalated: a senior reviewer decides it")

    # -- retention ----------------------------------------------------------------
    def purge(
        self,
        *,
        actor: str = "system",
        retention_seconds: float | None = None,
        item_ids: list[int] | None = None,
    ) -> PurgeResult:
        """Delete the bytes of decided items whose retention is over (overwritten, then removed).

        `retention_seconds` overrides the retention each item was given at its
        decision; `item_ids` limits the purge to those items. A full purge also
        removes quarantine files no item refers to (left by crashes).
        """
        if retention_seconds is None:
            where, params = "purge_after <= ?", [clock.now_text()]
        else:
            where, params = "decided_at <= ?", [clock.shifted_text(-float(retention_seconds))]
        sql = (f"SELECT id, quarantine_ref FROM review_items WHERE status = ? AND bytes_state = ? AND {where}")
        params = [DECIDED, BYTES_QUARANTINED, *params]
        if item_ids is not None:
            if not item_ids:
                return PurgeResult()
            sql += f" AND id IN ({', '.join('?' for _ in item_ids)})"
            params += [int(i) for i in item_ids]
        result = PurgeResult()
        for item_id, ref in self.db.query(sql, params):
            if ref:
                self.quarantine.delete(ref)
            changed = self.db.execute(
                "UPDATE review_items SET bytes_state = ?, quarantine_ref = NULL WHERE id = ? AND bytes_state = ?",
                (BYTES_PURGED, int(item_id), BYTES_QUARANTINED),
            )
            if changed:  # another instance purging at the same time counts it, not this one
                result.items.append(int(item_id))
        if item_ids is None:
            result.orphans = self._remove_orphans()
            result.temporaries = self.quarantine.sweep_temporaries()
        if result.items or result.orphans:
            self.audit.append(actor, "review.purge", {
                "purged": len(result.items), "item_ids": result.items[:_AUDITED_IDS], "orphans": result.orphans,
            })
        return result

    def _remove_orphans(self) -> int:
        referenced = {row[0] for row in self.db.query("SELECT quarantine_ref FROM review_items WHERE quarantine_ref IS NOT NULL")}
        cutoff = clock.now().timestamp() - ORPHAN_GRACE_SECONDS
        removed = 0
        for stored in list(self.quarantine.stored()):
            if stored.ref not in referenced and stored.modified < cutoff:
                removed += bool(self.quarantine.delete(stored.ref))
        return removed


def _required(value: str, what: str) -> str:
    if not value or not str(value).strip():
        raise ReviewError(f"a {what} name is required")
    return _text(str(value).strip())


def _clean(new: NewItem) -> NewItem:
    text_fields = ("origin", "source_url", "first_seen", "dataset", "shard", "key", "account_id", "run_id", "bytes_note")
    return replace(new, **{name: _text(getattr(new, name)) for name in text_fields})
