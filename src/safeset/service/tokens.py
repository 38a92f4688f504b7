"""API tokens: random secrets shown once, stored only as their SHA-256.

A token is 256 random bits, so a fast hash is the right store (no dictionary
to guess from, unlike a password); the lookup is by that hash and the final
comparison is constant-time. Each token has a name (what logs show), scopes
and an optional rate limit (requests per second; 0 = unlimited, None = the
service default). Every change is written to the audit log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from safeset.audit import AuditLog
from safeset.db import Database, Migration
from safeset.errors import ConfigError

COMPONENT = "service_tokens"
SCOPES = ("hash", "match", "curate", "review", "admin")
TOKEN_PREFIX = "sst_"
NAME_RULE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
CACHE_SECONDS = 2.0  # how long another process's revocation may take to be seen here

MIGRATIONS = [
    Migration(
        1,
        "CREATE TABLE service_tokens ("
        " id {id},"
        " name TEXT NOT NULL,"
        " token_sha256 TEXT NOT NULL UNIQUE,"
        " scopes TEXT NOT NULL,"
        " rate REAL,"
        " created_at TEXT NOT NULL,"
        " created_by TEXT NOT NULL,"
        " revoked_at TEXT);"
        "CREATE INDEX service_tokens_name ON service_tokens (name)",
    )
]


@dataclass(frozen=True)
class TokenInfo:
    """A token as stored: never the secret."""

    id: int
    name: str
    scopes: tuple[str, ...]
    rate: float | None
    created_at: str
    created_by: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "scopes": list(self.scopes),
            "rate": self.rate,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "revoked_at": self.revoked_at,
            "active": self.active,
        }


def parse_scopes(scopes) -> tuple[str, ...]:
    """'hash,match' or ['hash', 'match'] -> ('hash', 'match'); unknown scopes are refused."""
    if isinstance(scopes, str):
        scopes = scopes.split(",")
    chosen = []
    for scope in scopes:
        scope = str(scope).strip().lower()
        if not scope:
            continue
        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")
        if scope not in chosen:
            chosen.append(scope)
    if not chosen:
        raise ConfigError(f"a token needs at least one scope ({', '.join(SCOPES)})")
    return tuple(s for s in SCOPES if s in chosen)


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


_COLUMNS = "id, name, scopes, rate, created_at, created_by, revoked_at"


def _info(row: tuple) -> TokenInfo:
    id_, name, scopes, rate, created_at, created_by, revoked_at = row
    return TokenInfo(
        int(id_), name, tuple(s for s in scopes.split(",") if s), None if rate is None else float(rate),
        created_at, created_by, revoked_at,
    )


class TokenRegistry:
    """Creates, lists, revokes and checks tokens kept in the service database."""

    def __init__(self, db: Database, audit: AuditLog):
        self.db = db
        self.audit = audit
        db.migrate(COMPONENT, MIGRATIONS)
        self._cache: dict[str, tuple[float, TokenInfo | None]] = {}
        self._cache_lock = threading.Lock()

    def create(
        self, name: str | None, scopes, rate: float | None = None, actor: str = "cli"
    ) -> tuple[TokenInfo, str]:
        """A new token; returns its record and the secret (shown once, never stored)."""
        chosen = parse_scopes(scopes)
        if rate is not None and (rate != rate or rate < 0):
            raise ConfigError("a token's rate must be >= 0 requests per second (0 = unlimited)")
        name = name or f"token-{secrets.token_hex(4)}"
        if not NAME_RULE.fullmatch(name):
            raise ConfigError(
                f"invalid token name {name!r}: 1-64 letters, digits, '_', '.', '@' or '-', starting with a letter or digit"
            )
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.db.transaction(lock_name="audit_log"):  # the audit entry goes in the same transaction
            clash = self.db.query_one(
                "SELECT id FROM service_tokens WHERE name = ? AND revoked_at IS NULL", (name,)
            )
            if clash:
                raise ConfigError(f"an active token named {name!r} exists; revoke it or choose another name")
            token_id = self.db.insert(
                "INSERT INTO service_tokens (name, token_sha256, scopes, rate, created_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
                (name, secret_digest(secret), ",".join(chosen), rate, _now(), actor),
            )
            self.audit.append(
                actor, "token.create", {"token_id": token_id, "name": name, "scopes": list(chosen), "rate": rate}
            )
        return self.get(token_id), secret

    def get(self, token_id: int) -> TokenInfo:
        row = self.db.query_one(f"SELECT {_COLUMNS} FROM service_tokens WHERE id = ?", (int(token_id),))
        if row is None:
            raise ConfigError(f"no token with id {token_id}")
        return _info(row)

    def list(self, include_revoked: bool = False) -> list[TokenInfo]:
        where = "" if include_revoked else " WHERE revoked_at IS NULL"
        return [_info(row) for row in self.db.query(f"SELECT {_COLUMNS} FROM service_tokens{where} ORDER BY id")]

    def find(self, name_or_id: str) -> TokenInfo:
        """The active token with this name, or the token with this numeric id."""
        text = str(name_or_id).strip()
        row = self.db.query_one(
            f"SELECT {_COLUMNS} FROM service_tokens WHERE name = ? AND revoked_at IS NULL", (text,)
        )
        if row is None and text.isdigit():
            row = self.db.query_one(f"SELECT {_COLUMNS} FROM service_tokens WHERE id = ?", (int(text),))
        if row is None:
            raise ConfigError(f"no active token named {text!r}")
        return _info(row)

    def revoke(self, name_or_id: str, actor: str = "cli") -> TokenInfo:
        with self.db.transaction(lock_name="audit_log"):  # the audit entry goes in the same transaction
            token = self.find(name_or_id)
            if not token.active:
                raise ConfigError(f"token {token.name!r} (id {token.id}) was already revoked at {token.revoked_at}")
            self.db.execute("UPDATE service_tokens SET revoked_at = ? WHERE id = ?", (_now(), token.id))
            self.audit.append(actor, "token.revoke", {"token_id": token.id, "name": token.name})
        with self._cache_lock:
            self._cache.clear()
        return self.get(token.id)

    def cached(self, secret: str) -> tuple[bool, TokenInfo | None]:
        """(known, token) from this process's short cache, without touching the database:
        lets the async request path skip the thread pool on the common, cached case."""
        if not secret or len(secret) > 256:
            return True, None
        with self._cache_lock:
            cached = self._cache.get(secret_digest(secret))
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return True, cached[1]
        return False, None

    def authenticate(self, secret: str) -> TokenInfo | None:
        """The active token whose secret this is, or None. Cached briefly per process."""
        known, token = self.cached(secret)
        if known:
            return token
        digest = secret_digest(secret)
        now = time.monotonic()
        row = self.db.query_one(
            f"SELECT {_COLUMNS}, token_sha256 FROM service_tokens WHERE token_sha256 = ?", (digest,)
        )
        found = None
        if row is not None and hmac.compare_digest(row[-1], digest) and row[6] is None:
            found = _info(row[:-1])
        with self._cache_lock:
            if len(self._cache) > 10_000:
                self._cache.clear()  # bad tokens must not grow memory without bound
            self._cache[digest] = (now, found)
        return found
