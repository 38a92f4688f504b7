"""A fast path for the hottest requests: plain lookups by signal, answered without the framework.

FastAPI's routing, dependency injection and parameter validation cost a few
hundred microseconds per request, several times a PDQ search in a
ten-million-hash bank. This ASGI middleware answers the common case of
`GET /m/raw_lookup` and `GET /m/lookup?signal_type=..&signal=..` itself,
with the same functions the routes use (token check, `ValueQuery`,
`LiveIndex.lookup_query`, `answers`). Anything else — a missing or bad token,
an invalid or unusual parameter, an `account_id` (a strike to record), an
unknown bank, an index not ready, a rate limit reached — is handed to the
FastAPI route unchanged, so every error and every edge answers exactly as
the route does. It sits inside the request log and body limit middleware.

PDQ searches run on their own thread, batched with those of concurrent
requests (`SearchBatcher`): the native search releases the GIL, so the event
loop keeps parsing and answering requests while it searches, and on two
cores HTTP and searching proceed side by side.
"""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import parse_qsl

from fastapi import HTTPException
from starlette.requests import Request

from safeset.errors import SafesetError
from safeset.service.auth import authorize
from safeset.service.matching import answers
from safeset.service.matching.values import ValueQuery

_TRUE = {"true", "1", "yes", "on", "t", "y"}
_FALSE = {"false", "0", "no", "off", "f", "n"}
_LIMITS = {"signal_type": 64, "signal": 8192, "banks": 4096, "seed": 256}
_PATHS = {
    "/m/raw_lookup": {"signal_type", "signal", "banks", "seed", "include_distance", "include_matching_hash"},
    "/m/lookup": {"signal_type", "signal", "banks", "seed"},
}
_HEADERS = [(b"content-type", answers.JSON_MEDIA_TYPE.encode())]


class LookupFastPath:
    def __init__(self, app):
        self.app = app
        self._batcher = SearchBatcher()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "GET" and scope["path"] in _PATHS:
            answer = self._prepare(scope)
            if answer is not None:
                if answer.query.signal_type == "pdq":  # searched on the batcher's thread, with its neighbours
                    body = await self._batcher.submit(answer)
                else:
                    body = answer.body(answer.index.lookup_query(answer.query, answer.banks, seed=answer.seed))
                await send({"type": "http.response.start", "status": 200,
                            "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)

    def _prepare(self, scope) -> "_Answer | None":
        """The answer to compute, or None to let the route answer."""
        allowed = _PATHS[scope["path"]]
        params: dict[str, str] = {}
        for key, value in parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True):
            if key not in allowed or key in params or len(value) > _LIMITS.get(key, 16):
                return None
            params[key] = value
        if "signal_type" not in params or "signal" not in params:
            return None
        flags = {}
        for name in ("include_distance", "include_matching_hash"):
            text = params.get(name, "false").lower()
            if text not in _TRUE and text not in _FALSE:
                return None
            flags[name] = text in _TRUE
        app = scope["app"]
        ctx = app.state.ctx
        index = ctx.optional_component("index")
        if index is None or not index.ready():
            return None
        banks = None
        if params.get("banks", "").strip():
            banks = [name.strip().upper() for name in params["banks"].split(",") if name.strip()]
            known = set(index.bank_names())
            if not banks or any(name not in known for name in banks):
                return None  # validation of names and of empty declared banks: the route's
        try:
            query = ValueQuery.parse(params["signal_type"], params["signal"])
        except SafesetError:
            return None
        secret = _bearer_secret(scope)
        if secret is None:
            return None
        try:
            authorize(Request(scope), secret, "match")
        except HTTPException:
            return None
        return _Answer(index, query, banks, params.get("seed"), scope["path"] == "/m/raw_lookup", flags)


class _Answer:
    """One validated, authorised lookup and how to shape its answer."""

    def __init__(self, index, query: ValueQuery, banks, seed, raw: bool, flags: dict):
        self.index, self.query, self.banks, self.seed, self.raw, self.flags = index, query, banks, seed, raw, flags

    def body(self, matches: list) -> bytes:
        if self.raw:
            flags = self.flags
            return answers.encode(answers.raw_lookup(matches, self.query, flags["include_distance"], flags["include_matching_hash"]))
        return answers.encode(answers.by_bank(matches))


class SearchBatcher:
    """PDQ lookups of concurrent requests, searched together on one thread.

    Requests queue their lookup and wait; the thread takes everything queued,
    runs one `LiveIndex.lookup_many` (the native search releases the GIL, so
    the event loop meanwhile reads and answers other requests) and hands the
    answers back in one call to each waiting loop. Under load the batch grows
    and the per-request cost of waking threads and entering the search falls.
    """

    def __init__(self):
        self._pending: list = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    async def submit(self, answer: _Answer) -> bytes:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            self._pending.append((answer, future, loop))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="safeset-search", daemon=True)
                self._thread.start()
        self._wake.set()
        return await future

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                self._answer(batch)

    @staticmethod
    def _answer(batch: list) -> None:
        groups: dict[tuple, list] = {}
        for item in batch:
            answer = item[0]
            groups.setdefault((id(answer.index), tuple(answer.banks or ())), []).append(item)
        done: dict[object, list] = {}
        for items in groups.values():
            answers_ = [item[0] for item in items]
            try:
                found = answers_[0].index.lookup_many(
                    [a.query for a in answers_], answers_[0].banks, seeds=[a.seed for a in answers_]
                )
                results = [(future, answer.body(matches), None) for (answer, future, _), matches in zip(items, found)]
            except Exception as exc:  # reported to each waiting request (the framework answers 500 and logs)
                results = [(future, None, exc) for _, future, _ in items]
            for (_, _, loop), result in zip(items, results):
                done.setdefault(loop, []).append(result)
        for loop, results in done.items():
            loop.call_soon_threadsafe(_settle, results)


def _settle(results: list) -> None:
    for future, body, error in results:
        if future.cancelled():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(body)


def _bearer_secret(scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, secret = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and secret.strip():
                return secret.strip()
            return None
    return None
