"""The FastAPI application: `create_app(config)` wires context, components and routes.

Route modules expose `router`; component modules call
`safeset.service.components.register(...)` when imported. Each part of the
service adds its module to `COMPONENT_MODULES` (one line each).
"""

from __future__ import annotations

import contextlib
import importlib
import logging

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse

from safeset.db import Database
from safeset.errors import SafesetError
from safeset.service import components
from safeset.service.config import ServiceConfig
from safeset.service.context import ServiceContext
from safeset.service.middleware import BodyLimit, RequestLog
from safeset.service.ratelimit import TokenBuckets

log = logging.getLogger("safeset.service")

CORE_MODULES = [
    "safeset.service.routes_status",
    "safeset.service.routes_hash",
    "safeset.service.routes_curate",
]
# Parts that plug in: each owner adds its own line.
COMPONENT_MODULES: list[str] = [
    "safeset.service.routes_match",
    "safeset.webui.routes",
    "safeset.review.service",
]
# Multipart framing and form fields around an upload of max_upload_bytes.
BODY_OVERHEAD_BYTES = 1 << 20


def create_app(config: ServiceConfig, db: Database | None = None) -> FastAPI:
    """A ready-to-serve app; components start when the app's lifespan starts."""
    modules = import_modules()
    ctx = ServiceContext(config, db=db)
    for name, factory in components.registered():
        ctx.add_component(name, factory(ctx))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        started = []
        try:
            for name, obj in ctx.components():
                start = getattr(obj, "start", None)
                if callable(start):
                    start()
                started.append((name, obj))
            yield
        finally:
            for name, obj in reversed(started):
                stop = getattr(obj, "stop", None)
                if callable(stop):
                    try:
                        stop()
                    except Exception:  # one failing stop must not keep the others running
                        log.exception("component %s failed to stop", name)
            ctx.close()

    app = FastAPI(
        title="safeset",
        summary="HMA-compatible hash matching and a safe human review queue.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    app.state.rate_limits = TokenBuckets()
    for module in modules:
        router = getattr(module, "router", None)
        if router is not None:
            app.include_router(router)
    for module in modules:  # a part's own (innermost) middleware, e.g. the matcher's fast path
        install = getattr(module, "install", None)
        if callable(install):
            install(app)
    _install_error_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_upload_bytes + BODY_OVERHEAD_BYTES)
    app.add_middleware(RequestLog, enabled=config.access_log)
    return app


def import_modules() -> list:
    """Import every route and component module (registering their components); idempotent."""
    return [importlib.import_module(name) for name in CORE_MODULES + COMPONENT_MODULES]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SafesetError)
    async def user_error(request: Request, exc: SafesetError):
        # A SafesetError is the caller's doing: 400, or the status the error class names (404, 409...).
        return JSONResponse({"detail": str(exc)}, status_code=int(getattr(exc, "http_status", 400)))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        log.error("internal error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("safeset")
    except Exception:  # pragma: no cover - not installed
        return "0"


__all__ = ["COMPONENT_MODULES", "create_app", "HTTPException"]
