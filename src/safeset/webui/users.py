"""Reviewers' accounts: names, roles, Argon2id password hashes, enabled or not.

Accounts live in the service database (component "webui"), so every service
instance sharing a PostgreSQL store sees the same people. Passwords are kept
only as Argon2id hashes (argon2-cffi's defaults follow RFC 9106's recommended
parameters); a hash made with older parameters is upgraded on the next good
login. Every change is written to the audit log with the actor who made it.

Roles, from least to most trusted:
  reviewer  reviews pending items and decides them
  senior    also takes escalated items for a second look
  admin     also exports confirmed items for hotlines
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from safeset.audit import AuditLog
from safeset.db import Database, Migration
from safeset.errors import ConfigError
from safeset.webui.roles import ROLES, check_role  # noqa: F401 - part of this module's interface

COMPONENT = "webui"
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024
_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")

MIGRATIONS = [
    Migration(
        1,
        "CREATE TABLE webui_users ("
        " id {id},"
        " name TEXT NOT NULL UNIQUE,"
        " role TEXT NOT NULL,"
        " password_hash TEXT NOT NULL,"
        " enabled INTEGER NOT NULL DEFAULT 1,"
        " created_at TEXT NOT NULL,"
        " password_changed_at TEXT NOT NULL,"
        " last_login_at TEXT);"
        "CREATE TABLE webui_sessions ("
        " id {id},"
        " id_hash TEXT NOT NULL UNIQUE,"
        " user_id {bigint} NOT NULL REFERENCES webui_users(id) ON DELETE CASCADE,"
        " created_at {bigint} NOT NULL,"
        " last_seen_at {bigint} NOT NULL,"
        " reviewed INTEGER NOT NULL DEFAULT 0,"
        " current_item {bigint});"
        "CREATE INDEX webui_sessions_user ON webui_sessions (user_id);"
        "CREATE TABLE webui_login_failures ("
        " throttle_key TEXT PRIMARY KEY,"
        " failures INTEGER NOT NULL,"
        " window_start {bigint} NOT NULL,"
        " locked_until {bigint} NOT NULL)",
    ),
]

# One hasher for the process: Argon2id, argon2-cffi's RFC 9106 "low memory" profile.
_HASHER = PasswordHasher(type=Type.ID)


@functools.lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    """Verified against when the name is unknown, so a wrong name costs as long as a wrong password.

    Made on first use, not at import: Argon2 is slow on purpose, and every CLI command imports this module.
    """
    return hasher.hash("safeset: no such user")


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str
    enabled: bool
    created_at: str
    last_login_at: str | None

    def can(self, role: str) -> bool:
        """True when this user's role is `role` or a more trusted one."""
        return ROLES.index(self.role) >= ROLES.index(role)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "role": self.role,
            "enabled": self.enabled,
            "created_at": self.created_at,
            "last_login_at": self.last_login_at,
        }


def normalise_name(name: str) -> str:
    """User names are case-insensitive and NFKC-normalised, so 'Alice' and 'alice' are one person."""
    return unicodedata.normalize("NFKC", name).strip().lower()


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"password too short: use at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise ConfigError(f"password too long: at most {MAX_PASSWORD_LENGTH} characters")
    return password


def _now_text() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_COLUMNS = "id, name, role, enabled, created_at, last_login_at"


def _user(row: tuple) -> User:
    return User(int(row[0]), row[1], row[2], bool(row[3]), row[4], row[5])


class UserStore:
    """Create, find, change and authenticate reviewers' accounts."""

    def __init__(self, db: Database, audit: AuditLog):
        self.db = db
        self.audit = audit
        db.migrate(COMPONENT, MIGRATIONS)

    # -- reading -----------------------------------------------------------
    def get(self, name: str) -> User | None:
        row = self.db.query_one(f"SELECT {_COLUMNS} FROM webui_users WHERE name = ?", (normalise_name(name),))
        return _user(row) if row else None

    def get_by_id(self, user_id: int) -> User | None:
        row = self.db.query_one(f"SELECT {_COLUMNS} FROM webui_users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    def list(self) -> list[User]:
        return [_user(row) for row in self.db.query(f"SELECT {_COLUMNS} FROM webui_users ORDER BY name")]

    def require(self, name: str) -> User:
        user = self.get(name)
        if user is None:
            raise ConfigError(f"no user named {normalise_name(name)!r}")
        return user

    # -- changes -----------------------------------------------------------
    def add(self, name: str, role: str, password: str, actor: str) -> User:
        name = normalise_name(name)
        if not _NAME.match(name):
            raise ConfigError(
                f"invalid user name {name!r}: 1-64 characters, lowercase letters, digits and . _ @ - (starting with a letter or digit)"
            )
        check_role(role)
        password_hash = _HASHER.hash(check_password(password))
        now = _now_text()
        with self.db.transaction(lock_name="webui_users"):
            if self.get(name) is not None:
                raise ConfigError(f"user {name!r} already exists")
            self.db.insert(
                "INSERT INTO webui_users (name, role, password_hash, enabled, created_at, password_changed_at)"
                " VALUES (?, ?, ?, 1, ?, ?) RETURNING id",
                (name, role, password_hash, now, now),
            )
            self.audit.append(actor, "user.add", {"user": name, "role": role})
        return self.require(name)

    def set_role(self, name: str, role: str, actor: str) -> User:
        user = self.require(name)
        check_role(role)
        with self.db.transaction(lock_name="webui_users"):
            self.db.execute("UPDATE webui_users SET role = ? WHERE id = ?", (role, user.id))
            self.audit.append(actor, "user.set_role", {"user": user.name, "from": user.role, "to": role})
        return self.require(name)

    def set_enabled(self, name: str, enabled: bool, actor: str) -> User:
        """Disabling also ends the user's open sessions at once."""
        user = self.require(name)
        with self.db.transaction(lock_name="webui_users"):
            self.db.execute("UPDATE webui_users SET enabled = ? WHERE id = ?", (1 if enabled else 0, user.id))
            if not enabled:
                self.db.execute("DELETE FROM webui_sessions WHERE user_id = ?", (user.id,))
            self.audit.append(actor, "user.enable" if enabled else "user.disable", {"user": user.name})
        return self.require(name)

    def set_password(self, name: str, password: str, actor: str) -> User:
        """A new password ends every open session of that user."""
        user = self.require(name)
        password_hash = _HASHER.hash(check_password(password))
        with self.db.transaction(lock_name="webui_users"):
            self.db.execute(
                "UPDATE webui_users SET password_hash = ?, password_changed_at = ? WHERE id = ?",
                (password_hash, _now_text(), user.id),
            )
            self.db.execute("DELETE FROM webui_sessions WHERE user_id = ?", (user.id,))
            self.audit.append(actor, "user.passwd", {"user": user.name})
        return self.require(name)

    # -- login -------------------------------------------------------------
    def authenticate(self, name: str, password: str) -> User | None:
        """The enabled user with this name and password, else None (in about the same time either way)."""
        if len(password) > MAX_PASSWORD_LENGTH:
            return None
        row = self.db.query_one(
            "SELECT id, password_hash, enabled FROM webui_users WHERE name = ?", (normalise_name(name),)
        )
        stored = row[1] if row else _dummy_hash(_HASHER)
        try:
            _HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if row is None or not row[2]:
            return None
        user_id = int(row[0])
        if _HASHER.check_needs_rehash(stored):
            self.db.execute("UPDATE webui_users SET password_hash = ? WHERE id = ?", (_HASHER.hash(password), user_id))
        self.db.execute("UPDATE webui_users SET last_login_at = ? WHERE id = ?", (_now_text(), user_id))
        return self.get_by_id(user_id)
