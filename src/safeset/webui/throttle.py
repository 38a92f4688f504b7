"""Login throttling: after repeated failures, a name or a client address must wait.

Failures are counted per key ("user:<name>", "addr:<client>") in the
database, so all service instances sharing it throttle together. Once a key
reaches its limit within the window, it is locked for `lockout_s`, doubling
with each further failure up to `max_lockout_s`. A good login clears the
name's count. While locked, even a correct password is refused, so guessing
gains nothing by racing the lock.
"""

from __future__ import annotations

import time
from typing import Callable

from safeset.db import Database


class LoginThrottle:
    def __init__(
        self,
        db: Database,
        max_failures_per_user: int = 5,
        max_failures_per_address: int = 20,
        window_s: int = 15 * 60,
        lockout_s: int = 60,
        max_lockout_s: int = 15 * 60,
        clock: Callable[[], float] = time.time,
    ):
        self.db = db
        self.limits = {"user": max_failures_per_user, "addr": max_failures_per_address}
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.clock = clock

    @staticmethod
    def keys(user_name: str, client: str | None) -> list[str]:
        return [f"user:{user_name}", f"addr:{client or 'unknown'}"]

    def wait_seconds(self, keys: list[str]) -> int:
        """How long these keys must still wait before a login is tried (0: go ahead)."""
        now = int(self.clock())
        waits = [0]
        for key in keys:
            row = self.db.query_one("SELECT locked_until FROM webui_login_failures WHERE throttle_key = ?", (key,))
            if row is not None and int(row[0]) > now:
                waits.append(int(row[0]) - now)
        return max(waits)

    def record_failure(self, keys: list[str]) -> None:
        now = int(self.clock())
        with self.db.transaction(lock_name="webui_login_failures"):
            for key in keys:
                limit = self.limits[key.split(":", 1)[0]]
                row = self.db.query_one(
                    "SELECT failures, window_start, locked_until FROM webui_login_failures WHERE throttle_key = ?",
                    (key,),
                )
                if row is None:
                    failures, window_start = 1, now
                    self.db.execute(
                        "INSERT INTO webui_login_failures (throttle_key, failures, window_start, locked_until)"
                        " VALUES (?, 1, ?, 0)",
                        (key, now),
                    )
                else:
                    failures, window_start, locked_until = int(row[0]), int(row[1]), int(row[2])
                    if now - window_start > self.window_s and locked_until <= now:
                        failures, window_start = 0, now  # a fresh window
                    failures += 1
                locked_until = 0
                if failures >= limit:
                    locked_until = now + min(self.lockout_s * 2 ** (failures - limit), self.max_lockout_s)
                self.db.execute(
                    "UPDATE webui_login_failures SET failures = ?, window_start = ?, locked_until = ? WHERE throttle_key = ?",
                    (failures, window_start, locked_until, key),
                )

    def record_success(self, user_name: str) -> None:
        self.db.execute("DELETE FROM webui_login_failures WHERE throttle_key = ?", (f"user:{user_name}",))
