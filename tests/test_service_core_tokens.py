"""Tokens: CLI lifecycle, what is stored, scopes, rate limits, audit entries and `audit verify`."""

from __future__ import annotations

import json

import pytest

from e2e_util import safeset
from service_util import auth, make_client
from safeset.audit import AuditLog
from safeset.db import Database
from safeset.errors import ConfigError
from safeset.service.ratelimit import TokenBuckets
from safeset.service.tokens import TokenRegistry, parse_scopes, secret_digest


def _registry(db_url, tmp_path):
    db = Database(db_url)
    return db, TokenRegistry(db, AuditLog(db, anchor_path=tmp_path / "audit-head.json"))


def test_cli_token_lifecycle_and_audit(tmp_path, db_url):
    store = tmp_path / "store"
    common = ("--store", store, "--db", db_url)
    created = json.loads(safeset("token", "create", "--scopes", "hash,match", "--name", "matcher", "--json", *common).stdout)
    assert created["name"] == "matcher" and created["token"].startswith("sst_") and len(created["token"]) >= 40
    plain = safeset("token", "create", "--scopes", "admin", "--rate", "5", *common)
    secret = plain.stdout.strip()
    assert secret.startswith("sst_") and "shown only now" in plain.stderr

    listed = json.loads(safeset("token", "list", "--json", *common).stdout)
    assert [(t["name"], t["scopes"]) for t in listed][0] == ("matcher", ["hash", "match"])
    assert listed[1]["rate"] == 5.0
    assert created["token"] not in json.dumps(listed)

    # only a SHA-256 of each secret is in the database
    db = Database(db_url)
    stored = [row[0] for row in db.query("SELECT token_sha256 FROM service_tokens ORDER BY id")]
    assert stored == [secret_digest(created["token"]), secret_digest(secret)]
    dump = json.dumps(db.query("SELECT * FROM service_tokens"))
    assert created["token"] not in dump and secret not in dump

    assert "revoked token 'matcher'" in safeset("token", "revoke", "matcher", *common).stdout
    assert safeset("token", "revoke", "matcher", *common, check=2).stderr.count("no active token") == 1
    assert [t["name"] for t in json.loads(safeset("token", "list", "--json", *common).stdout)] == [listed[1]["name"]]
    assert len(json.loads(safeset("token", "list", "--all", "--json", *common).stdout)) == 2

    bad = safeset("token", "create", "--scopes", "everything", *common, check=2)
    assert "unknown scope 'everything'" in bad.stderr

    audit = AuditLog(db, anchor_path=store / "audit-head.json")
    actions = [(e.action, e.details.get("name")) for e in audit.entries()]
    assert actions == [("token.create", "matcher"), ("token.create", listed[1]["name"]), ("token.revoke", "matcher")]
    assert all(secret not in json.dumps(e.to_dict()) for e in audit.entries())
    verified = json.loads(safeset("audit", "verify", "--json", *common).stdout)
    assert verified["ok"] and verified["entries"] == 3


def test_audit_verify_detects_an_edit(tmp_path, db_url):
    store = tmp_path / "store"
    common = ("--store", store, "--db", db_url)
    safeset("token", "create", "--scopes", "hash", "--name", "a", *common)
    safeset("token", "create", "--scopes", "hash", "--name", "b", *common)
    assert "intact: 2 entries" in safeset("audit", "verify", *common).stdout
    Database(db_url).execute("UPDATE audit_log SET details = ? WHERE seq = 1", ('{"name":"someone-else"}',))
    tampered = safeset("audit", "verify", *common, check=1)
    assert "TAMPERED" in tampered.stdout and "entry 1" in tampered.stdout
    result = json.loads(safeset("audit", "verify", "--json", *common, check=1).stdout)
    assert result["ok"] is False and result["problems"]


def test_audit_verify_detects_a_deleted_newest_entry(tmp_path):
    store = tmp_path / "store"
    safeset("token", "create", "--scopes", "hash", "--name", "a", "--store", store)
    safeset("token", "revoke", "a", "--store", store)
    Database(f"sqlite:///{store / 'safeset.db'}").execute("DELETE FROM audit_log WHERE seq = 2")
    assert "deleted" in safeset("audit", "verify", "--store", store, check=1).stdout


def test_revoked_and_unknown_tokens_get_401(tmp_path, db_url):
    client, token = make_client(tmp_path, db_url, scopes=("curate",))
    assert client.get("/c/banks", headers=auth(token)).status_code == 200
    client.app.state.ctx.tokens.revoke("test", actor="test")
    answer = client.get("/c/banks", headers=auth(token))
    assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer"
    for header in ({"Authorization": "Basic dXNlcjpwYXNz"}, {"Authorization": "Bearer "}, auth("x" * 1000)):
        assert client.get("/c/banks", headers=header).status_code == 401


def test_scopes_and_admin(tmp_path, db_url):
    db, registry = _registry(db_url, tmp_path)
    info, _ = registry.create("adm", "admin", actor="test")
    assert all(info.allows(scope) for scope in ("hash", "match", "curate", "review"))
    hasher, _ = registry.create("h", ["hash"], actor="test")
    assert hasher.allows("hash") and not hasher.allows("curate")
    assert parse_scopes(" Match , hash,match") == ("hash", "match")
    with pytest.raises(ConfigError):
        parse_scopes("")
    with pytest.raises(ConfigError, match="active token named 'h'"):
        registry.create("h", "hash", actor="test")
    with pytest.raises(ConfigError, match="invalid token name"):
        registry.create("has space", "hash", actor="test")
    with pytest.raises(ConfigError, match="rate"):
        registry.create("r", "hash", rate=-1, actor="test")
    db.close()


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    client, token = make_client(tmp_path, scopes=("curate",), rate=1, rate_limit_burst_s=2.0)
    codes = [client.get("/c/signal_type", headers=auth(token)).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[-1] == 429
    limited = client.get("/c/signal_type", headers=auth(token))
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "rate limit" in limited.json()["detail"]


def test_rate_limit_default_comes_from_config(tmp_path):
    client, _ = make_client(tmp_path, scopes=("curate",), rate_limit_per_s=1, rate_limit_burst_s=1.0)
    _, secret = client.app.state.ctx.tokens.create("defaulted", "curate", rate=None, actor="test")
    codes = [client.get("/c/signal_type", headers=auth(secret)).status_code for _ in range(3)]
    assert codes[0] == 200 and 429 in codes


def test_token_bucket_refills_with_time():
    now = [0.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    assert buckets.take("t", rate=2, burst_s=1) is None
    assert buckets.take("t", rate=2, burst_s=1) is None
    wait = buckets.take("t", rate=2, burst_s=1)
    assert wait == pytest.approx(0.5)
    now[0] += 0.5
    assert buckets.take("t", rate=2, burst_s=1) is None
    assert buckets.take("other", rate=2, burst_s=1) is None  # buckets are per token
    assert all(buckets.take("free", rate=0, burst_s=1) is None for _ in range(100))
