"""The review queue inside `safeset serve`: component "review" and a small JSON API.

The component is the `ReviewQueue` itself, built from the service's store,
database, audit log and config (quarantine dir, key file, retention), so the
matching API (queues uploads that matched) and the web UI share one queue.
At start it purges bytes whose retention is over.

The JSON API (scope `review`) lists, claims, releases and decides items. It
never serves image bytes: those are shown only in the web UI, blurred, to a
logged-in reviewer.
"""

from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from safeset.review.decisions import DEFAULT_CONFIRMED_BANK
from safeset.review.model import DECISIONS, STATUSES
from safeset.review.queue import DEFAULT_CLAIM_TIMEOUT_SECONDS, ReviewQueue
from safeset.review.setup import ReviewSettings, build_queue
from safeset.service import components
from safeset.service.auth import Caller, require_scope

COMPONENT_NAME = "review"
MAX_ITEM_ID = 2**62
MAX_NOTE = 2000


def settings_from_config(config) -> ReviewSettings:
    return ReviewSettings(
        quarantine_dir=getattr(config, "quarantine_dir", None),
        quarantine_key_file=getattr(config, "quarantine_key_file", None),
        retention_seconds=float(getattr(config, "quarantine_retention_s", 0.0) or 0.0),
        confirmed_bank=getattr(config, "review_confirmed_bank", None) or DEFAULT_CONFIRMED_BANK,
        claim_timeout_seconds=float(getattr(config, "review_claim_timeout_s", 0) or DEFAULT_CLAIM_TIMEOUT_SECONDS),
    )


def _factory(ctx) -> ReviewQueue:
    return build_queue(ctx.store, ctx.db, ctx.audit, settings_from_config(ctx.config))


components.register(COMPONENT_NAME, _factory)


def queue_of(request: Request) -> ReviewQueue:
    return request.app.state.ctx.component(COMPONENT_NAME)


class DecisionRequest(BaseModel):
    decision: Literal["confirm", "false_positive", "escalate"]
    note: Optional[str] = Field(None, max_length=MAX_NOTE)


class ClaimRequest(BaseModel):
    escalated: bool = Field(False, description="claim an escalated item (senior review)")


router = APIRouter(prefix="/review", tags=["review"])
ItemId = Path(..., ge=1, le=MAX_ITEM_ID)


@router.get("/items", summary="List review items (evidence only, no bytes)")
def list_items(
    request: Request,
    status: Optional[Literal[STATUSES]] = Query(None),  # type: ignore[valid-type]
    decision: Optional[Literal[DECISIONS]] = Query(None),  # type: ignore[valid-type]
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=MAX_ITEM_ID),
    caller: Caller = Depends(require_scope("review")),
) -> dict:
    queue = queue_of(request)
    items = queue.list(status=status, decision=decision, limit=limit, offset=offset)
    return {"items": [item.to_dict() for item in items], "counts": queue.counts()}


@router.get("/items/{item_id}", summary="One review item with its decisions")
def get_item(request: Request, item_id: int = ItemId, caller: Caller = Depends(require_scope("review"))) -> dict:
    queue = queue_of(request)
    item = queue.get(item_id)
    return {**item.to_dict(), "decisions": [d.to_dict() for d in queue.decisions(item_id)]}


@router.post("/claim", summary="Claim the next item to review (or your current one)")
def claim(
    request: Request, body: ClaimRequest = Body(default_factory=ClaimRequest),
    caller: Caller = Depends(require_scope("review")),
) -> dict:
    item = queue_of(request).claim_next(caller.actor, escalated=body.escalated)
    return {"item": item.to_dict() if item else None}


@router.post("/items/{item_id}/release", summary="Give a claimed item back undecided")
def release(request: Request, item_id: int = ItemId, caller: Caller = Depends(require_scope("review"))) -> dict:
    return queue_of(request).release(item_id, caller.actor).to_dict()


@router.post("/items/{item_id}/decision", summary="Decide an item: confirm, false_positive or escalate")
def decide(
    request: Request, body: DecisionRequest, item_id: int = ItemId, caller: Caller = Depends(require_scope("review")),
) -> dict:
    return queue_of(request).decide(item_id, body.decision, caller.actor, body.note).to_dict()
