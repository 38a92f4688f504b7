"""Bearer-token authentication, scopes and rate limits, as one FastAPI dependency.

    caller: Caller = Depends(require_scope("match"))

401 (with ``WWW-Authenticate: Bearer``) for a missing or unknown token, 403
when the token lacks the scope (``admin`` implies every scope), 429 with
``Retry-After`` when the token is over its rate. The caller's token *name*
is left on ``request.state`` for the request log; the secret goes nowhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from fastapi import HTTPException, Request, Security
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from safeset.service.tokens import SCOPES

_bearer = HTTPBearer(auto_error=False, description="API token from `safeset token create`")
UNAUTHORIZED_HEADERS = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    """Who is calling: the token's name (for logs and audit), scopes and id."""

    name: str
    scopes: tuple[str, ...]
    token_id: int

    def allows(self, scope: str) -> bool:
        return "admin" in self.scopes or scope in self.scopes

    @property
    def actor(self) -> str:
        """How audit entries name this caller."""
        return f"token:{self.name}"


def require_scope(scope: str) -> Callable[..., Caller]:
    """A dependency that admits only tokens holding `scope`.

    The scope is declared in the OpenAPI document (`security: [{"HTTPBearer": [scope]}]`),
    so clients and the all-routes security test can read what each route needs. It is a
    coroutine: a cached token is checked on the event loop, only a cache miss (a database
    read) goes to the thread pool.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes are {', '.join(SCOPES)}")

    async def dependency(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Security(_bearer, scopes=[scope])
    ) -> Caller:
        return await authorize_async(request, credentials.credentials if credentials else None, scope)

    dependency.__name__ = f"require_{scope}"
    return dependency


def require_token() -> Callable[..., Caller]:
    """A dependency that admits any valid token, whatever its scopes (health checks)."""

    async def dependency(request: Request, credentials: HTTPAuthorizationCredentials | None = Security(_bearer)) -> Caller:
        return await authorize_async(request, credentials.credentials if credentials else None, None)

    dependency.__name__ = "require_token"
    return dependency


async def authorize_async(request: Request, secret: str | None, scope: str | None) -> Caller:
    """`authorize` without blocking the event loop on a database read."""
    tokens = request.app.state.ctx.tokens
    if secret:
        known, _ = tokens.cached(secret)
        if not known:
            await run_in_threadpool(tokens.authenticate, secret)  # fills the cache
    return authorize(request, secret, scope)


def authorize(request: Request, secret: str | None, scope: str | None) -> Caller:
    """Check a bearer secret against scope (None: any) and rate; raises the HTTP error to send."""
    ctx = request.app.state.ctx
    if not secret:
        raise HTTPException(401, "missing bearer token (Authorization: Bearer <token>)", headers=UNAUTHORIZED_HEADERS)
    token = ctx.tokens.authenticate(secret)
    if token is None:
        raise HTTPException(401, "invalid or revoked token", headers=UNAUTHORIZED_HEADERS)
    request.state.token_name = token.name
    if scope is not None and not token.allows(scope):
        raise HTTPException(403, f"token {token.name!r} lacks the {scope!r} scope")
    rate = ctx.config.rate_limit_per_s if token.rate is None else token.rate
    wait = request.app.state.rate_limits.take(token.id, rate, ctx.config.rate_limit_burst_s)
    if wait is not None:
        raise HTTPException(
            429,
            f"rate limit of {rate:g} requests/s exceeded for token {token.name!r}",
            headers={"Retry-After": request.app.state.rate_limits.retry_after_header(wait)},
        )
    return Caller(token.name, token.scopes, token.id)
