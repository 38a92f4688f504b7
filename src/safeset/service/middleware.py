"""ASGI middleware of the service: request log and request body limit.

The request log carries method, path (never the query string: it may hold
URLs or hashes a client looked up), status, duration and the caller's token
*name*, never the token and never a body. The body limit refuses oversized
requests before anything parses them (413), declared or streamed.
"""

from __future__ import annotations

import logging
import time

from fastapi import HTTPException

ACCESS_LOGGER = "safeset.service.access"
access_log = logging.getLogger(ACCESS_LOGGER)


class RequestLog:
    """One log line per HTTP request, after the response."""

    def __init__(self, app, enabled: bool = True):
        self.app = app
        self.enabled = enabled

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.enabled:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_status(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            state = scope.get("state") or {}
            token_name = state.get("token_name", "-")
            access_log.info(
                "%s %s %d %.1fms token=%s",
                scope.get("method", "-"),
                scope.get("path", "-"),
                status["code"],
                (time.perf_counter() - started) * 1000,
                token_name,
            )


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a streamed body passes the limit; an HTTPException (413), so
    handlers that turn parse errors into 400 let it through and FastAPI answers it."""

    def __init__(self, limit: int):
        super().__init__(413, f"request body too large: the limit is {limit} bytes")


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, whether declared (Content-Length) or streamed."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_json(send, 400, "invalid Content-Length header")
                    return
                if declared > self.max_bytes:
                    await _send_json(send, 413, self._detail())
                    return
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_json(send, 413, self._detail())

    def _detail(self) -> str:
        return f"request body too large: the limit is {self.max_bytes} bytes"


async def _send_json(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
