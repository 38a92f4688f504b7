"""Health: `/status` (HMA's readiness text) and `/status/live` (liveness, no token).

`/status` answers 503 `INDEX-NOT-LOADED` until the "index" component says it
is ready, 503 `INDEX-STALE` when it says it is stale, else `I-AM-ALIVE`. A
service without an index component is alive as soon as it answers. The index
component tells by `ready()` / `stale()` methods (or boolean attributes).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse

from safeset.service.auth import Caller, require_token

router = APIRouter(tags=["status"])

ALIVE = "I-AM-ALIVE"
NOT_LOADED = "INDEX-NOT-LOADED"
STALE = "INDEX-STALE"

_TEXT = {
    200: {"content": {"text/plain": {"schema": {"type": "string", "example": ALIVE}}}},
}
_UNAVAILABLE = {503: {"description": f"{NOT_LOADED} or {STALE}", "content": {"text/plain": {"schema": {"type": "string"}}}}}


def _flag(obj, name: str) -> bool:
    value = getattr(obj, name, False)
    return bool(value() if callable(value) else value)


def readiness(ctx) -> str:
    """ALIVE, NOT_LOADED or STALE, from the index component if there is one."""
    index = ctx.optional_component("index")
    if index is None:
        return ALIVE
    if not _flag(index, "ready"):
        return NOT_LOADED
    if _flag(index, "stale"):
        return STALE
    return ALIVE


@router.get(
    "/status", response_class=PlainTextResponse, responses={**_TEXT, **_UNAVAILABLE},
    summary="Readiness: I-AM-ALIVE once the index is loaded",
)
def status(request: Request, caller: Caller = Depends(require_token())):
    state = readiness(request.app.state.ctx)
    return PlainTextResponse(state, status_code=200 if state == ALIVE else 503)


@router.get("/status/live", response_class=PlainTextResponse, responses=_TEXT, summary="Liveness (no token needed)")
def status_live():
    return PlainTextResponse(ALIVE)
