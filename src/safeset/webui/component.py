"""The web UI's part of a running service: its users, sessions and login throttle.

Registered as component "webui"; the review queue itself belongs to the
"review" component (safeset.review), shared with the HTTP API, and is looked
up when a page needs it, so the two can start in either order.
"""

from __future__ import annotations

from typing import Any

from safeset.webui.sessions import SessionStore
from safeset.webui.throttle import LoginThrottle
from safeset.webui.users import UserStore

SESSION_COOKIE = "safeset-session"
LOGIN_COOKIE = "safeset-login"
SECURE_PREFIX = "__Host-"  # the browser then insists on Secure, Path=/ and no Domain


class WebUI:
    def __init__(self, ctx: Any):
        self.ctx = ctx
        config = ctx.config
        self.users = UserStore(ctx.db, ctx.audit)
        self.sessions = SessionStore(
            ctx.db,
            self.users,
            idle_timeout_s=int(config.session_idle_s),
            absolute_timeout_s=int(config.session_ttl_s),
        )
        self.throttle = LoginThrottle(ctx.db)
        self.cookie_secure = bool(config.cookie_secure)
        self.review_cap = int(config.review_cap_per_session)
        self.max_pixels = int(config.max_pixels)

    @classmethod
    def from_context(cls, ctx: Any) -> "WebUI":
        return cls(ctx)

    def cookie_name(self, base: str) -> str:
        return SECURE_PREFIX + base if self.cookie_secure else base

    @property
    def queue(self) -> Any:
        """The shared review queue (component "review"); LookupError when the service has none."""
        return self.ctx.component("review")
