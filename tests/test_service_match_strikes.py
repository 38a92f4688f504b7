"""Per-account strikes and the escalation webhook (delivered off the request path, retried, audited)."""

from __future__ import annotations

import hashlib
import hmac
import http.server
import json
import threading
import time

import pytest

from service_util import auth, make_client
from safeset.audit import AuditLog
from safeset.db import Database
from safeset.service.live_index import Match
from safeset.service.strikes import StrikeLog
from safeset.service.webhook import Outbox, WebhookSender

MD5 = hashlib.md5(b"benign listed bytes").hexdigest()


class Receiver:
    """A loopback webhook endpoint: answers with the queued statuses (then 200) and keeps what it got."""

    def __init__(self, statuses=()):
        self.statuses = list(statuses)
        self.received: list[tuple[dict, dict]] = []
        self.attempts = 0
        self.got = threading.Event()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.attempts += 1
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.received.append((json.loads(body), dict(self.headers.items()), body))
                    receiver.got.set()
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    made = []

    def make(statuses=()):
        made.append(Receiver(statuses))
        return made[-1]

    yield make
    for one in made:
        one.close()


@pytest.fixture
def db(db_url, tmp_path):
    database = Database(db_url)
    yield database
    database.close()


def match(entry_id: int = 1) -> Match:
    return Match("LISTED", 1, entry_id, None, MD5, "md5")


def wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_strikes_count_per_account_and_escalate_at_each_multiple_of_the_threshold(db, tmp_path):
    audit = AuditLog(db, anchor_path=tmp_path / "head.json")
    strikes = StrikeLog(db, audit, threshold=3)
    assert strikes.record("user-1", [], actor="token:t", origin="raw_lookup") is None
    assert strikes.account("user-1") is None
    results = [strikes.record("user-1", [match(i)], actor="token:t", origin="raw_lookup") for i in range(1, 7)]
    assert [r.account.strikes for r in results] == [1, 2, 3, 4, 5, 6]
    assert [r.escalated for r in results] == [False, False, True, False, False, True]
    account = strikes.account("user-1")
    assert account.escalations == 2 and account.last_escalated_at is not None
    assert [m["entry_id"] for m in strikes.matches("user-1", limit=2)] == [6, 5]
    assert strikes.record("user-2", [match()], actor="token:t", origin="lookup").account.strikes == 1
    escalations = [e for e in audit.entries() if e.action == "strikes.escalation"]
    assert [(e.details["account_id"], e.details["strikes"]) for e in escalations] == [("user-1", 3), ("user-1", 6)]
    assert audit.verify().ok


def test_the_webhook_is_delivered_signed_and_audited(db, tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("SAFESET_WEBHOOK_SECRET", "test-secret")
    endpoint = receiver()
    audit = AuditLog(db, anchor_path=tmp_path / "head.json")
    sender = WebhookSender(Outbox(db), endpoint.url, audit, poll_s=0.05)
    strikes = StrikeLog(db, audit, threshold=2, sender=sender)
    strikes.start()
    try:
        strikes.record("acct", [match(1)], actor="token:t", origin="raw_lookup")
        result = strikes.record("acct", [match(2)], actor="token:t", origin="raw_lookup")
        assert result.escalated and result.event_id
        assert endpoint.got.wait(10)
    finally:
        strikes.stop()
    payload, headers, body = endpoint.received[0]
    assert payload["kind"] == "account.escalation" and payload["account_id"] == "acct" and payload["strikes"] == 2
    assert [m["entry_id"] for m in payload["recent_matches"]] == [2, 1]
    assert headers["X-Safeset-Delivery"] == result.event_id == payload["event_id"]
    expected = hmac.new(b"test-secret", body, hashlib.sha256).hexdigest()
    assert headers["X-Safeset-Signature"] == f"sha256={expected}"
    assert wait_for(lambda: sender.outbox.status(result.event_id)["state"] == "delivered")
    assert any(e.action == "webhook.delivered" and e.details["event_id"] == result.event_id for e in audit.entries())


def test_failed_deliveries_are_retried_then_given_up(db, tmp_path, receiver):
    flaky = receiver(statuses=[503, 500])
    audit = AuditLog(db, anchor_path=tmp_path / "head.json")
    outbox = Outbox(db)
    sender = WebhookSender(outbox, flaky.url, audit, poll_s=0.02, first_backoff_s=0.05, max_attempts=5)
    event = outbox.enqueue("account.escalation", {"account_id": "a"})
    sender.start()
    try:
        assert flaky.got.wait(10)
        assert wait_for(lambda: outbox.status(event)["state"] == "delivered")
        assert outbox.status(event)["attempts"] == 3 and flaky.attempts == 3
        refusing = receiver(statuses=[400])
        sender.url = refusing.url
        refused = outbox.enqueue("account.escalation", {"account_id": "b"})
        sender.wake()
        assert wait_for(lambda: outbox.status(refused)["state"] == "failed")
        assert outbox.status(refused)["attempts"] == 1, "a 4xx refusal is not retried"
        sender.url = "http://127.0.0.1:1/unreachable"
        unreachable = outbox.enqueue("account.escalation", {"account_id": "c"})
        sender.wake()
        assert wait_for(lambda: outbox.status(unreachable)["state"] == "failed", timeout=20)
        assert outbox.status(unreachable)["attempts"] == 5
    finally:
        sender.stop()
    failures = [e.details["event_id"] for e in audit.entries() if e.action == "webhook.failed"]
    assert failures == [refused, unreachable]


def test_an_undelivered_event_survives_a_restart(db, tmp_path, receiver):
    audit = AuditLog(db, anchor_path=tmp_path / "head.json")
    outbox = Outbox(db)
    event = outbox.enqueue("account.escalation", {"account_id": "a"})  # written; the service stops before sending
    endpoint = receiver()
    sender = WebhookSender(Outbox(db), endpoint.url, audit, poll_s=0.05)
    sender.start()
    try:
        assert endpoint.got.wait(10)
    finally:
        sender.stop()
    assert endpoint.received[0][0]["event_id"] == event


def test_lookups_with_an_account_strike_and_escalate_through_the_api(tmp_path, db_url, receiver):
    endpoint = receiver()
    client, token = make_client(
        tmp_path, db_url, scopes=("match", "curate"), webhook_url=endpoint.url, strike_threshold=2
    )
    headers = auth(token)
    client.post("/c/banks", json={"name": "LISTED"}, headers=headers)
    client.post("/c/bank/LISTED/signal", json={"md5": MD5}, headers=headers)
    ctx = client.app.state.ctx
    strikes = ctx.component("strikes")
    miss = hashlib.md5(b"not listed").hexdigest()
    for value in (MD5, miss, MD5):
        answer = client.get("/m/raw_lookup", params={"signal_type": "md5", "signal": value, "account_id": "user-7"},
                            headers=headers)
        assert answer.status_code == 200
    client.get("/m/lookup", params={"signal_type": "md5", "signal": MD5}, headers=headers)  # no account: no strike
    assert strikes.account("user-7").strikes == 2 and strikes.account("user-7").escalations == 1
    assert endpoint.got.wait(10)
    payload = endpoint.received[0][0]
    assert payload["account_id"] == "user-7" and payload["recent_matches"][0]["bank"] == "LISTED"
    assert set(payload) == {
        "event_id", "kind", "account_id", "strikes", "threshold", "escalations", "first_strike_at", "last_strike_at",
        "escalated_at", "sent_by", "unix_time", "recent_matches",
    }
    rows = ctx.db.query("SELECT COUNT(*) FROM strike_matches")
    assert rows[0][0] == 2


def test_a_webhook_url_must_be_http():
    from safeset.errors import ConfigError

    with pytest.raises(ConfigError):
        WebhookSender(None, "file:///etc/passwd")
