"""Reviewers' accounts: Argon2id hashes, roles, enable/disable, audit entries, and the `safeset user` CLI."""

from __future__ import annotations

import json

import pytest

from typer.testing import CliRunner
from safeset.audit import AuditLog
from safeset.db import Database
from safeset.errors import ConfigError
from safeset.webui.users import UserStore

PASSWORD = "correct horse battery staple"


def safeset(*args, check: int | None = 0, input_text: str = ""):
    """Run `safeset ARGS...` in-process with `input_text` on stdin; assert the exit code when `check` is set."""
    from safeset.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=input_text, env={"SAFESET_DB": ""})
    if check is not None:
        assert result.exit_code == check, f"exit {result.exit_code}\noutput:\n{result.output}\n{result.exception!r}"
    return result


@pytest.fixture
def users(tmp_path, db_url):
    db = Database.open(db_url, tmp_path)
    audit = AuditLog(db, anchor_path=tmp_path / "audit-head.json")
    yield UserStore(db, audit)
    db.close()


def test_password_is_stored_only_as_an_argon2id_hash(users):
    users.add("Alice", "reviewer", PASSWORD, actor="test")
    stored = users.db.query_one("SELECT name, password_hash FROM webui_users")
    assert stored[0] == "alice"  # names are case-insensitive
    assert stored[1].startswith("$argon2id$")
    assert PASSWORD not in stored[1]
    assert users.authenticate("ALICE", PASSWORD).name == "alice"
    assert users.authenticate("alice", PASSWORD + "x") is None
    assert users.authenticate("nobody", PASSWORD) is None
    assert users.get("alice").last_login_at is not None


def test_roles_order_and_changes(users):
    user = users.add("carol", "reviewer", PASSWORD, actor="test")
    assert user.can("reviewer") and not user.can("senior") and not user.can("admin")
    user = users.set_role("carol", "senior", actor="test")
    assert user.can("senior") and not user.can("admin")
    with pytest.raises(ConfigError, match="unknown role"):
        users.set_role("carol", "boss", actor="test")


def test_disabled_user_cannot_log_in_until_enabled(users):
    users.add("dave", "reviewer", PASSWORD, actor="test")
    users.set_enabled("dave", False, actor="test")
    assert users.authenticate("dave", PASSWORD) is None
    users.set_enabled("dave", True, actor="test")
    assert users.authenticate("dave", PASSWORD) is not None


def test_new_password_replaces_the_old_one(users):
    users.add("erin", "admin", PASSWORD, actor="test")
    users.set_password("erin", "another long passphrase", actor="test")
    assert users.authenticate("erin", PASSWORD) is None
    assert users.authenticate("erin", "another long passphrase") is not None


@pytest.mark.parametrize(
    "name, password, message",
    [("ok-name", "short", "too short"), ("bad name!", PASSWORD, "invalid user name"), ("", PASSWORD, "invalid user name")],
)
def test_bad_names_and_passwords_are_refused(users, name, password, message):
    with pytest.raises(ConfigError, match=message):
        users.add(name, "reviewer", password, actor="test")


def test_duplicate_user_is_refused(users):
    users.add("frank", "reviewer", PASSWORD, actor="test")
    with pytest.raises(ConfigError, match="already exists"):
        users.add("Frank", "admin", PASSWORD, actor="test")


def test_every_change_is_audited_without_secrets(users):
    users.add("gina", "reviewer", PASSWORD, actor="cli:root")
    users.set_role("gina", "admin", actor="cli:root")
    users.set_enabled("gina", False, actor="cli:root")
    users.set_enabled("gina", True, actor="cli:root")
    users.set_password("gina", "a brand new passphrase", actor="cli:root")
    entries = users.audit.entries()
    assert [e.action for e in entries] == ["user.add", "user.set_role", "user.disable", "user.enable", "user.passwd"]
    assert all(e.actor == "cli:root" and e.details["user"] == "gina" for e in entries)
    dumped = json.dumps([e.to_dict() for e in entries])
    assert PASSWORD not in dumped and "argon2" not in dumped
    assert users.audit.verify().ok


def test_user_cli_round_trip(tmp_path):
    store = tmp_path / "store"
    added = safeset("user", "add", "Hana", "--role", "reviewer", "--password-stdin", "--store", store, "--json",
                    input_text=PASSWORD + "\n")
    assert json.loads(added.stdout)["name"] == "hana"
    safeset("user", "set-role", "hana", "admin", "--store", store)
    safeset("user", "disable", "hana", "--store", store)
    listed = json.loads(safeset("user", "list", "--store", store, "--json").stdout)
    assert [(u["name"], u["role"], u["enabled"]) for u in listed] == [("hana", "admin", False)]
    safeset("user", "enable", "hana", "--store", store)
    safeset("user", "passwd", "hana", "--password-stdin", "--store", store, input_text="the replacement phrase\n")
    db = Database.open(None, store)
    users = UserStore(db, AuditLog(db, anchor_path=store / "audit-head.json"))
    assert users.authenticate("hana", "the replacement phrase") is not None
    assert users.audit.verify().ok
    db.close()


def test_user_cli_errors_are_one_line(tmp_path):
    store = tmp_path / "store"
    bad_role = safeset("user", "add", "ivan", "--role", "boss", "--password-stdin", "--store", store, check=2,
                       input_text=PASSWORD + "\n")
    assert "unknown role" in bad_role.output and "Traceback" not in bad_role.output
    short = safeset("user", "add", "ivan", "--role", "admin", "--password-stdin", "--store", store, check=2,
                    input_text="short\n")
    assert "too short" in short.output
    missing = safeset("user", "disable", "nobody", "--store", store, check=2)
    assert "no user named" in missing.output
