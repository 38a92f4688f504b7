"""The shared database layer and the hash-chained audit log, on SQLite and (when configured) PostgreSQL."""

from __future__ import annotations

import json
import threading

import pytest

from safeset.audit import AuditLog
from safeset.db import Database, Migration
from safeset.errors import ConfigError


def test_migrations_apply_once_in_order(db_url):
    db = Database(db_url)
    steps = [
        Migration(1, "CREATE TABLE things (id {id}, name TEXT NOT NULL)"),
        Migration(2, "ALTER TABLE things ADD COLUMN size {bigint}; CREATE INDEX things_name ON things (name)"),
    ]
    assert db.migrate("things", steps[:1]) == [1]
    assert db.migrate("things", steps) == [2]
    assert db.migrate("things", steps) == []
    assert db.schema_version("things") == 2
    new_id = db.insert("INSERT INTO things (name, size) VALUES (?, ?) RETURNING id", ("a", 2**40))
    assert db.query("SELECT id, name, size FROM things") == [(new_id, "a", 2**40)]


def test_transaction_rolls_back_on_error(db_url):
    db = Database(db_url)
    db.migrate("t", [Migration(1, "CREATE TABLE t (id {id}, v TEXT)")])
    with pytest.raises(RuntimeError):
        with db.transaction():
            db.execute("INSERT INTO t (v) VALUES (?)", ("x",))
            raise RuntimeError("boom")
    assert db.query("SELECT v FROM t") == []


def test_unknown_url_is_a_config_error():
    with pytest.raises(ConfigError):
        Database("mysql://x")


def _log(db_url, tmp_path):
    return AuditLog(Database(db_url), anchor_path=tmp_path / "audit-head.json")


def test_audit_chain_verifies_and_is_shared(db_url, tmp_path):
    log = _log(db_url, tmp_path)
    for i in range(5):
        log.append("alice", "bank.import", {"bank": "DEMO", "n": i})
    # A second handle (another service instance) continues the same chain.
    other = _log(db_url, tmp_path)
    other.append("bob", "token.create", {"name": "ci"})
    result = log.verify()
    assert result.ok and result.entries == 6
    assert [e.action for e in log.entries()][-1] == "token.create"
    assert log.entries()[1].prev_hash == log.entries()[0].entry_hash


def test_audit_detects_edit(db_url, tmp_path):
    log = _log(db_url, tmp_path)
    for i in range(4):
        log.append("alice", "review.decide", {"item": i})
    log.db.execute("UPDATE audit_log SET details = ? WHERE seq = 2", (json.dumps({"item": 99}),))
    result = log.verify()
    assert not result.ok
    assert any("entry 2" in p and "edited" in p for p in result.problems)


def test_audit_detects_deletion_in_the_middle_and_at_the_end(db_url, tmp_path):
    log = _log(db_url, tmp_path)
    for i in range(5):
        log.append("alice", "review.decide", {"item": i})
    log.db.execute("DELETE FROM audit_log WHERE seq = 3")
    assert any("missing" in p for p in log.verify().problems)
    log.db.execute("DELETE FROM audit_log WHERE seq >= 4")
    problems = log.verify().problems
    assert any("newest entries deleted" in p for p in problems)


def test_audit_detects_rewritten_chain_against_anchor(db_url, tmp_path):
    """Recomputing every hash after an edit still disagrees with the head kept outside the database."""
    from safeset.audit import GENESIS, entry_hash

    log = _log(db_url, tmp_path)
    for i in range(3):
        log.append("alice", "a", {"i": i})
    prev = GENESIS
    for seq, at, actor, action, details, _, _ in log.db.query("SELECT * FROM audit_log ORDER BY seq"):
        if seq == 2:
            details = json.dumps({"i": 42})
        digest = entry_hash(seq, at, actor, action, details, prev)
        log.db.execute("UPDATE audit_log SET details = ?, prev_hash = ?, entry_hash = ? WHERE seq = ?", (details, prev, digest, seq))
        prev = digest
    result = log.verify()
    assert not result.ok and any("recorded head" in p for p in result.problems)


def test_concurrent_appends_keep_one_chain(db_url, tmp_path):
    log = _log(db_url, tmp_path)

    def worker(name):
        for i in range(10):
            log.append(name, "x", {"i": i})

    threads = [threading.Thread(target=worker, args=(f"t{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = log.verify()
    assert result.ok and result.entries == 40
