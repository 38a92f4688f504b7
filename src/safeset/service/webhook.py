"""Escalation webhook: events written to an outbox in the database, delivered by a background thread.

Whoever escalates (the strike log) writes the event in the same transaction
as the strike that caused it, so an event is never lost to a crash, a
restart or an unreachable endpoint; a request never waits for delivery.
The sender POSTs each event as JSON, retrying with exponential back-off
(connection errors, timeouts, 408, 429 and 5xx) up to `max_attempts`, and
records the outcome in the audit log. Several service instances sharing a
PostgreSQL database deliver each event once: a sender claims an event
before it sends it.

Events carry account ids, counts, bank names and entry ids, and the matched
hash/URL values — never image bytes. When `SAFESET_WEBHOOK_SECRET` is set,
each POST carries `X-Safeset-Signature: sha256=<hex HMAC of the body>`;
`X-Safeset-Delivery` is the event's stable id (receivers can deduplicate).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import uuid
from urllib.parse import urlsplit

from safeset.db import Database, Migration
from safeset.errors import ConfigError

log = logging.getLogger("safeset.service.webhook")

COMPONENT = "webhook"
SECRET_ENV = "SAFESET_WEBHOOK_SECRET"
DEFAULT_MAX_ATTEMPTS = 6
DEFAULT_TIMEOUT_S = 5.0
FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 300.0
CLAIM_S = 60.0  # a claim older than this (a sender that died mid-delivery) may be taken over
RETRIED_STATUSES = frozenset({408, 425, 429})

MIGRATIONS = [
    Migration(
        1,
        "CREATE TABLE webhook_outbox ("
        " id {id},"
        " event_id TEXT NOT NULL UNIQUE,"
        " kind TEXT NOT NULL,"
        " payload TEXT NOT NULL,"
        " created_ms {bigint} NOT NULL,"
        " attempts INTEGER NOT NULL DEFAULT 0,"
        " next_attempt_ms {bigint} NOT NULL,"
        " claimed_by TEXT,"
        " claimed_until_ms {bigint} NOT NULL DEFAULT 0,"
        " delivered_ms {bigint},"
        " failed_ms {bigint},"
        " last_error TEXT);"
        "CREATE INDEX webhook_outbox_due ON webhook_outbox (delivered_ms, failed_ms, next_attempt_ms)",
    )
]


def _now_ms() -> int:
    return int(time.time() * 1000)


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"webhook_url must be an http(s) URL, not {url!r}")
    return url


class Outbox:
    """The webhook events table: enqueue inside the caller's transaction, claim, settle."""

    def __init__(self, db: Database):
        self.db = db
        db.migrate(COMPONENT, MIGRATIONS)

    def enqueue(self, kind: str, payload: dict) -> str:
        """Add an event (joins the caller's transaction when there is one); returns its id."""
        event_id = uuid.uuid4().hex
        now = _now_ms()
        self.db.execute(
            "INSERT INTO webhook_outbox (event_id, kind, payload, created_ms, next_attempt_ms) VALUES (?, ?, ?, ?, ?)",
            (event_id, kind, json.dumps({"event_id": event_id, "kind": kind, **payload}, sort_keys=True), now, now),
        )
        return event_id

    def due(self, limit: int = 16) -> list[tuple[int, str, str, int]]:
        """(id, event_id, payload, attempts) of undelivered, unfailed events whose time has come."""
        now = _now_ms()
        return self.db.query(
            "SELECT id, event_id, payload, attempts FROM webhook_outbox"
            " WHERE delivered_ms IS NULL AND failed_ms IS NULL AND next_attempt_ms <= ? AND claimed_until_ms <= ?"
            " ORDER BY id LIMIT ?",
            (now, now, int(limit)),
        )

    def claim(self, row_id: int, sender: str) -> bool:
        now = _now_ms()
        changed = self.db.execute(
            "UPDATE webhook_outbox SET claimed_by = ?, claimed_until_ms = ?"
            " WHERE id = ? AND delivered_ms IS NULL AND failed_ms IS NULL AND claimed_until_ms <= ?",
            (sender, now + int(CLAIM_S * 1000), int(row_id), now),
        )
        return changed == 1

    def delivered(self, row_id: int, attempts: int) -> None:
        self.db.execute(
            "UPDATE webhook_outbox SET delivered_ms = ?, attempts = ?, claimed_until_ms = 0, last_error = NULL WHERE id = ?",
            (_now_ms(), int(attempts), int(row_id)),
        )

    def retry_later(self, row_id: int, attempts: int, delay_s: float, error: str) -> None:
        self.db.execute(
            "UPDATE webhook_outbox SET attempts = ?, next_attempt_ms = ?, claimed_until_ms = 0, last_error = ? WHERE id = ?",
            (int(attempts), _now_ms() + int(delay_s * 1000), error[:500], int(row_id)),
        )

    def failed(self, row_id: int, attempts: int, error: str) -> None:
        self.db.execute(
            "UPDATE webhook_outbox SET attempts = ?, failed_ms = ?, claimed_until_ms = 0, last_error = ? WHERE id = ?",
            (int(attempts), _now_ms(), error[:500], int(row_id)),
        )

    def status(self, event_id: str) -> dict | None:
        row = self.db.query_one(
            "SELECT attempts, delivered_ms, failed_ms, last_error FROM webhook_outbox WHERE event_id = ?", (event_id,)
        )
        if row is None:
            return None
        attempts, delivered, failed, error = row
        state = "delivered" if delivered is not None else "failed" if failed is not None else "pending"
        return {"event_id": event_id, "state": state, "attempts": int(attempts), "last_error": error}


class WebhookSender:
    """Delivers the outbox's events to one URL from a background thread (see the module docstring)."""

    def __init__(
        self,
        outbox: Outbox,
        url: str | None,
        audit=None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        first_backoff_s: float = FIRST_BACKOFF_S,
        poll_s: float = 5.0,
        secret: str | None = None,
    ):
        self.outbox = outbox
        self.url = check_url(url) if url else None
        self.audit = audit
        self.timeout_s = float(timeout_s)
        self.max_attempts = max(1, int(max_attempts))
        self.first_backoff_s = float(first_backoff_s)
        self.poll_s = float(poll_s)
        self.secret = secret if secret is not None else os.environ.get(SECRET_ENV) or None
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client = None

    @property
    def enabled(self) -> bool:
        return self.url is not None

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        import httpx

        self._client = httpx.Client(timeout=self.timeout_s, follow_redirects=False)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="safeset-webhook", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 5)
            self._thread = None
        if self._client is not None:
            self._client.close()
            self._client = None

    def wake(self) -> None:
        """New events are in the outbox: deliver now rather than at the next poll."""
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # the database may be briefly unavailable; try again later
                log.exception("webhook delivery pass failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()

    def deliver_due(self) -> int:
        """One pass over the due events; returns how many were delivered."""
        delivered = 0
        for row_id, event_id, payload, attempts in self.outbox.due():
            if self._stop.is_set():
                break
            if not self.outbox.claim(row_id, self.name):
                continue  # another instance has it
            attempts += 1
            error = self._post(event_id, payload)
            if error is None:
                self.outbox.delivered(row_id, attempts)
                self._audit("webhook.delivered", {"event_id": event_id, "attempts": attempts})
                delivered += 1
            elif attempts >= self.max_attempts or error.startswith("refused"):
                self.outbox.failed(row_id, attempts, error)
                self._audit("webhook.failed", {"event_id": event_id, "attempts": attempts, "error": error})
                log.error("webhook event %s not delivered after %d attempts: %s", event_id, attempts, error)
            else:
                delay = min(MAX_BACKOFF_S, self.first_backoff_s * 2 ** (attempts - 1))
                self.outbox.retry_later(row_id, attempts, delay, error)
                log.warning("webhook event %s attempt %d failed (%s); retrying in %.0fs", event_id, attempts, error, delay)
        return delivered

    def _post(self, event_id: str, payload: str) -> str | None:
        """None when delivered; else why (prefixed 'refused' when retrying cannot help)."""
        import httpx

        body = payload.encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "safeset-webhook",
            "X-Safeset-Delivery": event_id,
        }
        if self.secret:
            signature = hmac.new(self.secret.encode("utf-8"), body, hashlib.sha256).hexdigest()
            headers["X-Safeset-Signature"] = f"sha256={signature}"
        try:
            response = self._client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"[:300]
        if 200 <= response.status_code < 300:
            return None
        if response.status_code >= 500 or response.status_code in RETRIED_STATUSES:
            return f"HTTP {response.status_code}"
        return f"refused: HTTP {response.status_code}"

    def _audit(self, action: str, details: dict) -> None:
        if self.audit is not None:
            try:
                self.audit.append("service:webhook", action, details)
            except Exception:  # never let audit trouble kill the sender; the outbox keeps the state
                log.exception("could not audit %s", action)
