"""Server-side login sessions with idle and absolute timeouts.

The browser holds only a random session id (256 bits) in an HttpOnly cookie;
the database holds its SHA-256, so a copy of the database does not let anyone
log in. A session ends on logout, after `idle_timeout_s` without a request,
after `absolute_timeout_s` in all, when its user is disabled or changes
password. A session also counts the items its reviewer decided, for the
per-session review cap, and remembers the item it holds claimed, so a reload
shows the same item instead of claiming another.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from safeset.db import Database
from safeset.webui.csrf import token_for_session
from safeset.webui.users import User, UserStore


@dataclass(frozen=True)
class Session:
    row_id: int
    user: User
    created_at: int
    last_seen_at: int
    reviewed: int
    current_item: int | None
    csrf_token: str


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()


class SessionStore:
    def __init__(
        self,
        db: Database,
        users: UserStore,
        idle_timeout_s: int = 15 * 60,
        absolute_timeout_s: int = 8 * 3600,
        clock: Callable[[], float] = time.time,
    ):
        self.db = db
        self.users = users
        self.idle_timeout_s = idle_timeout_s
        self.absolute_timeout_s = absolute_timeout_s
        self.clock = clock

    def _now(self) -> int:
        return int(self.clock())

    def create(self, user: User) -> str:
        """Start a session for `user`; returns the secret id for the cookie (never stored)."""
        secret = secrets.token_urlsafe(32)
        now = self._now()
        self.db.insert(
            "INSERT INTO webui_sessions (id_hash, user_id, created_at, last_seen_at, reviewed)"
            " VALUES (?, ?, ?, ?, 0) RETURNING id",
            (_digest(secret), user.id, now, now),
        )
        self._sweep(now)
        return secret

    def lookup(self, secret: str | None) -> Session | None:
        """The live session with this id, its idle clock restarted; None when unknown, expired or disabled."""
        if not secret or len(secret) > 128:
            return None
        row = self.db.query_one(
            "SELECT id, user_id, created_at, last_seen_at, reviewed, current_item FROM webui_sessions WHERE id_hash = ?",
            (_digest(secret),),
        )
        if row is None:
            return None
        row_id, user_id, created_at, last_seen_at, reviewed, current_item = row
        now = self._now()
        if now - int(last_seen_at) > self.idle_timeout_s or now - int(created_at) > self.absolute_timeout_s:
            self.db.execute("DELETE FROM webui_sessions WHERE id = ?", (row_id,))
            return None
        user = self.users.get_by_id(int(user_id))
        if user is None or not user.enabled:
            self.db.execute("DELETE FROM webui_sessions WHERE id = ?", (row_id,))
            return None
        self.db.execute("UPDATE webui_sessions SET last_seen_at = ? WHERE id = ?", (now, row_id))
        return Session(
            int(row_id),
            user,
            int(created_at),
            now,
            int(reviewed),
            int(current_item) if current_item is not None else None,
            token_for_session(secret),
        )

    def destroy(self, secret: str | None) -> None:
        if secret:
            self.db.execute("DELETE FROM webui_sessions WHERE id_hash = ?", (_digest(secret),))

    def hold_item(self, session: Session, item_id: int | None) -> None:
        """Remember (or forget, with None) the item this session has claimed."""
        self.db.execute("UPDATE webui_sessions SET current_item = ? WHERE id = ?", (item_id, session.row_id))

    def count_decision(self, session: Session) -> None:
        """One more item decided in this session; the held item is released."""
        self.db.execute(
            "UPDATE webui_sessions SET reviewed = reviewed + 1, current_item = NULL WHERE id = ?", (session.row_id,)
        )

    def _sweep(self, now: int) -> None:
        """Drop expired sessions so the table does not grow without end."""
        self.db.execute(
            "DELETE FROM webui_sessions WHERE last_seen_at < ? OR created_at < ?",
            (now - self.idle_timeout_s, now - self.absolute_timeout_s),
        )
