"""The matcher, HMA's `/m/...`: lookups by hash, by URL and by uploaded content; compare; index status.

Thin: parses and answers in HMA's JSON shapes (see reference/hma-compat.md);
`LiveIndex` matches, `matching.lookups` does strikes and review. Scope `match`.

Also registers the components "index" (the `LiveIndex`) and "strikes" (the
per-account `StrikeLog` with its escalation webhook).
"""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials

from safeset.errors import SafesetError
from safeset.service import components
from safeset.service.auth import Caller, _bearer, authorize
from safeset.service.live_index import LiveIndex
from safeset.service.matching import answers
from safeset.service.matching.filters import negative_values
from safeset.service.matching.lookups import compare, hash_and_look_up, queue_for_review, record_strikes
from safeset.service.matching.values import ValueQuery, signal_types
from safeset.service.routes_hash import MULTIPART_PHOTO
from safeset.service.strikes import MAX_ACCOUNT_ID, StrikeLog, check_account_id
from safeset.service.webhook import Outbox, WebhookSender

# -- components ------------------------------------------------------------------


def _index(ctx) -> LiveIndex:
    return LiveIndex(
        ctx.store,
        pdq_threshold=getattr(ctx.config, "pdq_threshold", 31),
        poll_interval_s=getattr(ctx.config, "index_poll_s", 1.0),
        settings=ctx.bank_settings.snapshot,
        negative=negative_values(ctx.store),
    )


def _strikes(ctx) -> StrikeLog:
    config = ctx.config
    sender = WebhookSender(
        Outbox(ctx.db),
        config.webhook_url,
        ctx.audit,
        timeout_s=getattr(config, "webhook_timeout_s", 5.0),
        max_attempts=getattr(config, "webhook_max_attempts", 6),
    )
    return StrikeLog(ctx.db, ctx.audit, threshold=config.strike_threshold, sender=sender)


components.register("index", _index)
components.register("strikes", _strikes)


def install(app) -> None:
    """Called by `create_app`: plain lookups by signal skip the framework (see `matching.fastpath`)."""
    from safeset.service.matching.fastpath import LookupFastPath

    app.add_middleware(LookupFastPath)


# -- routes ----------------------------------------------------------------------

router = APIRouter(prefix="/m", tags=["matcher"])

JSON = answers.JSON_MEDIA_TYPE
MAX_SIGNAL = 8192  # longest value accepted (URLs are the long ones)


async def match_caller(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> Caller:
    """`require_scope("match")` as a coroutine: the token check is a cache hit, so it runs on the
    event loop instead of costing every lookup a hop to the thread pool."""
    return authorize(request, credentials.credentials if credentials else None, "match")


def _json(data, status: int = 200) -> Response:
    return Response(answers.encode(data), status_code=status, media_type=JSON)


def _ctx(request: Request):
    return request.app.state.ctx


def _live_index(request: Request) -> LiveIndex:
    index = _ctx(request).optional_component("index")
    if index is None or not index.ready():
        raise HTTPException(503, "index not yet ready")
    return index


def _banks(request: Request, banks: str | None) -> list[str] | None:
    """`banks=A,B` -> names, 400 for a name that is no bank (a typo must not silently match nothing)."""
    if banks is None or not banks.strip():
        return None
    from safeset.banks.names import normalize_bank_name

    names = []
    ctx = _ctx(request)
    for given in banks.split(","):
        if not given.strip():
            continue
        try:
            name = normalize_bank_name(given.strip())
        except SafesetError as exc:
            raise HTTPException(400, f"invalid bank name {given.strip()!r}: {exc}") from None
        if name not in names:
            names.append(name)
    index = _live_index(request)
    known = set(index.bank_names())
    unknown = [name for name in names if name not in known and not ctx.bank_settings.is_declared(name)]
    if unknown:
        raise HTTPException(400, f"no such bank: {', '.join(unknown)}")
    return names


def _account(account_id: str | None) -> str | None:
    if account_id is None:
        return None
    try:
        return check_account_id(account_id)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None


def _query(signal_type: str, signal: str) -> ValueQuery:
    try:
        return ValueQuery.parse(signal_type, signal)
    except SafesetError as exc:
        raise HTTPException(400, str(exc)) from None


async def _strike(request: Request, account_id: str | None, matches: list, caller: Caller, origin: str) -> None:
    if account_id and matches:
        strikes = _ctx(request).optional_component("strikes")
        await run_in_threadpool(record_strikes, strikes, account_id, matches, caller.actor, origin)


AccountId = Query(
    None, max_length=MAX_ACCOUNT_ID,
    description="The platform's user who sent the content: matches are logged per account with strike counts",
)
Banks = Query(None, max_length=4096, description="Comma-separated bank names to restrict the lookup to")
Seed = Query(None, max_length=256, description="Seed of the coin flip against banks' matching_enabled_ratio")
SignalType = Query(..., max_length=64, description=f"One of: {', '.join(signal_types())}")
Signal = Query(..., max_length=MAX_SIGNAL, description="The hash, digest, URL, domain or text to look up")

_NOT_READY = {503: {"description": "The index is not loaded yet"}}
_INVALID = {400: {"description": "invalid signal: ... (or an unknown signal type or bank)"}}


@router.get(
    "/raw_lookup",
    summary="Look up a signal; matching content ids (optionally with distances)",
    responses={
        200: {"content": {JSON: {"example": {"matches": [{"bank_content_id": 1001, "distance": "4"}]}}}},
        **_INVALID, **_NOT_READY,
    },
)
async def raw_lookup(
    request: Request,
    signal_type: str = SignalType,
    signal: str = Signal,
    banks: str | None = Banks,
    include_distance: bool = Query(False),
    include_matching_hash: bool = Query(False),
    account_id: str | None = AccountId,
    seed: str | None = Seed,
    caller: Caller = Depends(match_caller),
) -> Response:
    index = _live_index(request)
    account = _account(account_id)
    query = _query(signal_type, signal)
    matches = index.lookup_query(query, _banks(request, banks), seed=seed)
    await _strike(request, account, matches, caller, "raw_lookup")
    return _json(answers.raw_lookup(matches, query, include_distance, include_matching_hash))


@router.get(
    "/lookup",
    summary="Look up a signal (or the content at url=); matches per bank",
    responses={
        200: {"content": {JSON: {"example": {"BANK_A": [{"bank_content_id": 1001, "distance": 4}]}}}},
        **_INVALID, **_NOT_READY,
    },
)
async def lookup_get(
    request: Request,
    signal_type: str | None = Query(None, max_length=64, description="With signal: the signal's type"),
    signal: str | None = Query(None, max_length=MAX_SIGNAL, description="The signal to look up"),
    url: str | None = Query(None, max_length=MAX_SIGNAL, description="Content to fetch and hash (when fetching is enabled)"),
    banks: str | None = Banks,
    account_id: str | None = AccountId,
    seed: str | None = Seed,
    caller: Caller = Depends(match_caller),
) -> Response:
    index = _live_index(request)
    account = _account(account_id)
    selected = _banks(request, banks)
    if url:
        from safeset.service.fetch import fetch_url

        config = _ctx(request).config
        data = await run_in_threadpool(fetch_url, url, config)
        content = await run_in_threadpool(hash_and_look_up, index, data, config, selected, seed)
        await _strike(request, account, content.all_matches, caller, "lookup_url")
        answer = {t: answers.by_bank(found) for t, found in content.matches.items()}
        if signal_type is not None:
            answer = answer.get(signal_type.strip().lower(), {})
        return _json(answer)
    if signal is None or signal_type is None:
        raise HTTPException(400, "give signal_type and signal, or url")
    matches = index.lookup_query(_query(signal_type, signal), selected, seed=seed)
    await _strike(request, account, matches, caller, "lookup")
    return _json(answers.by_bank(matches))


@router.post(
    "/lookup",
    openapi_extra=MULTIPART_PHOTO,
    summary="Hash an uploaded photo and look it up; matches per signal type, then bank",
    responses={
        200: {"content": {JSON: {"example": {"pdq": {"BANK_A": [{"bank_content_id": 1001, "distance": 4}]}}}}},
        **_INVALID, **_NOT_READY,
    },
)
async def lookup_post(
    request: Request,
    banks: str | None = Banks,
    account_id: str | None = AccountId,
    seed: str | None = Seed,
    caller: Caller = Depends(match_caller),
) -> Response:
    from safeset.service.routes_hash import uploaded_photo

    index = _live_index(request)
    account = _account(account_id)
    selected = _banks(request, banks)
    ctx = _ctx(request)
    data = await uploaded_photo(request)
    content = await run_in_threadpool(hash_and_look_up, index, data, ctx.config, selected, seed)
    if content.all_matches:
        await _strike(request, account, content.all_matches, caller, "lookup_upload")
        review = ctx.optional_component("review")
        await run_in_threadpool(queue_for_review, review, content, data, account_id=account, actor=caller.actor)
    return _json({t: answers.by_bank(found) for t, found in content.matches.items()})


@router.post(
    "/compare",
    summary="Compare two signals of a type: [match, {distance}]",
    responses={200: {"content": {JSON: {"example": {"pdq": [True, {"distance": 9}]}}}}, **_INVALID},
)
async def compare_signals(
    request: Request,
    body: dict[str, list[str]] = Body(..., examples=[{"pdq": ["f" * 64, "e" * 64]}]),
    caller: Caller = Depends(match_caller),
) -> Response:
    threshold = getattr(_ctx(request).config, "pdq_threshold", 31)
    try:
        return _json(compare(body, threshold))
    except SafesetError as exc:
        raise HTTPException(400, str(exc)) from None


@router.get(
    "/index/status",
    summary="Per signal type: index present, built_to (unix time), size",
    responses={200: {"content": {JSON: {"example": {"pdq": {"present": True, "built_to": 1700000000, "size": 10}}}}}},
)
async def index_status(
    request: Request,
    signal_type: str | None = Query(None, max_length=64, description="Only this signal type"),
    caller: Caller = Depends(match_caller),
) -> Response:
    index = _ctx(request).optional_component("index")
    if index is None:
        raise HTTPException(503, "index not yet ready")
    if signal_type is not None and signal_type not in signal_types():
        raise HTTPException(400, f"No such signal type {signal_type!r}")
    return _json(index.index_status(signal_type))
