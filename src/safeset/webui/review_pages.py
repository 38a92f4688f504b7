"""The queue overview and the review page: evidence first, image blurred, clear only while held.

A reviewer works on the item the queue has them claim (`ReviewQueue.claim_next`:
their current claim, else the oldest free item; escalated ones for senior
reviewers). Images are served only for an item the viewer holds claimed:
blurred and greyscale from `/image`, clear from `/reveal` (a POST with the
CSRF token, each one audit-logged). After `review_cap_per_session` decisions
the session stops serving items and asks the reviewer to take a break.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Request
from fastapi.responses import RedirectResponse, Response

from safeset.review.errors import ItemNotFound, ItemStateError, NoImageError, QuarantineKeyError, ReviewError
from safeset.review.model import CLAIMED, DECISIONS, ESCALATED, PENDING, ReviewItem
from safeset.webui import rendition
from safeset.webui.auth import fetch_session, page_session, require_csrf, require_role, webui_of
from safeset.webui.component import WebUI
from safeset.webui.pages import UIRoute, render
from safeset.webui.sessions import Session

router = APIRouter(route_class=UIRoute)

MAX_NOTE = 2000
MAX_ITEM_ID = 2**62
ItemId = Path(..., ge=1, le=MAX_ITEM_ID)
STATUS_LABELS = {
    "pending": "Waiting for review",
    "claimed": "Being reviewed now",
    "escalated": "Escalated, waiting for a senior reviewer",
    "decided": "Decided",
}


def reviewer_name(session: Session) -> str:
    """How the queue and the audit log name a UI reviewer (API callers are `token:NAME`)."""
    return f"user:{session.user.name}"


def _queue(webui: WebUI):
    try:
        return webui.queue
    except LookupError:
        raise HTTPException(503, "The review queue is not part of this service.") from None


def _cap_reached(webui: WebUI, session: Session) -> bool:
    return session.reviewed >= webui.review_cap


def release_held_item(webui: WebUI, session: Session) -> None:
    """Give the session's claimed item back to the queue (logout): someone else can take it now."""
    if session.current_item is None:
        return
    try:
        webui.queue.release(session.current_item, reviewer_name(session))
    except (LookupError, ReviewError):
        pass  # already decided, or the claim had expired and moved on


# -- queue overview ------------------------------------------------------------------
@router.get("/queue")
def queue_overview(request: Request, session: Session = Depends(page_session)) -> Response:
    webui = webui_of(request)
    counts = _queue(webui).counts()
    waiting = counts.get(PENDING, 0) + (counts.get(ESCALATED, 0) if session.user.can("senior") else 0)
    return render(
        request,
        "queue.html",
        active="queue",
        counts=[(STATUS_LABELS.get(status, status), count) for status, count in counts.items()],
        cap=webui.review_cap,
        waiting=waiting or session.current_item is not None,
    )


# -- the review page -----------------------------------------------------------------
def _break_page(request: Request, webui: WebUI, session: Session) -> Response:
    return render(
        request,
        "done.html",
        active="review",
        heading="Time for a break",
        paragraphs=[
            f"You have decided {session.reviewed} items in this session, the most one session may review.",
            "Step away from the screen for a while. No more items are shown in this session.",
            "When you are ready to go on, log out and log in again to start a new session.",
        ],
    )


def _claim(webui: WebUI, session: Session) -> ReviewItem | None:
    queue = _queue(webui)
    name = reviewer_name(session)
    item = queue.claim_next(name)
    if item is None and session.user.can("senior"):
        item = queue.claim_next(name, escalated=True)
    return item


@router.get("/review")
def review_next(request: Request, session: Session = Depends(page_session)) -> Response:
    webui = webui_of(request)
    if _cap_reached(webui, session):
        return _break_page(request, webui, session)
    item = _claim(webui, session)
    if item is None:
        webui.sessions.hold_item(session, None)
        return render(
            request,
            "done.html",
            active="review",
            heading="Nothing to review",
            paragraphs=["There are no items waiting for you right now."],
        )
    if session.current_item != item.id:
        webui.sessions.hold_item(session, item.id)
    return render(request, "review.html", active="review", item=item, cap=webui.review_cap)


def _held_item(webui: WebUI, session: Session, item_id: int) -> ReviewItem:
    """The item, if this session's reviewer holds it claimed; else 403/404."""
    try:
        item = _queue(webui).get(item_id)
    except ItemNotFound:
        raise HTTPException(404, "No such review item.") from None
    if item.status != CLAIMED or item.claimed_by != reviewer_name(session):
        raise HTTPException(403, "This item is not claimed by you. Open it from the review page.")
    return item


def _image_bytes(webui: WebUI, item_id: int, viewer: str | None = None) -> bytes:
    try:
        return _queue(webui).image(item_id, viewer=viewer)
    except NoImageError:
        raise HTTPException(404, "No image is held for this item.") from None
    except QuarantineKeyError:
        raise HTTPException(503, "The quarantine key is not available to this service.") from None


def _png(body: bytes) -> Response:
    return Response(
        body,
        media_type="image/png",
        headers={"Cache-Control": "no-store, max-age=0", "Content-Disposition": "inline"},
    )


@router.get("/review/{item_id}/image")
def blurred_image(request: Request, item_id: int = ItemId, session: Session = Depends(fetch_session)) -> Response:
    """The default rendition: greyscale and blurred, made on the server."""
    webui = webui_of(request)
    _held_item(webui, session, item_id)
    try:
        return _png(rendition.blurred(_image_bytes(webui, item_id), webui.max_pixels))
    except rendition.RenditionError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/review/{item_id}/reveal")
def clear_image(
    request: Request,
    item_id: int = ItemId,
    csrf_token: str = Form(""),
    session: Session = Depends(fetch_session),
) -> Response:
    """The clear rendition, for as long as the reviewer holds the reveal button; each view is audit-logged."""
    require_csrf(session, csrf_token)
    webui = webui_of(request)
    _held_item(webui, session, item_id)
    try:
        return _png(rendition.clear(_image_bytes(webui, item_id, viewer=reviewer_name(session)), webui.max_pixels))
    except rendition.RenditionError as exc:
        raise HTTPException(422, str(exc)) from None


@router.post("/review/{item_id}/decide")
def decide(
    request: Request,
    item_id: int = ItemId,
    decision: str = Form(""),
    note: str = Form("", max_length=MAX_NOTE),
    csrf_token: str = Form(""),
    session: Session = Depends(page_session),
) -> Response:
    require_csrf(session, csrf_token)
    if decision not in DECISIONS:
        raise HTTPException(400, "Choose one of the decisions: confirm, false positive or escalate.")
    webui = webui_of(request)
    item = _held_item(webui, session, item_id)
    if item.escalated_at:
        require_role(session, "senior")
    try:
        _queue(webui).decide(item_id, decision, reviewer_name(session), note)
    except ItemStateError as exc:
        raise HTTPException(409, str(exc)) from None
    webui.sessions.count_decision(session)
    return RedirectResponse("/ui/review", status_code=303)
