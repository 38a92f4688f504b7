"""How every UI response is made: templates, security headers, HTML error pages.

All UI routes use `UIRoute`, which adds the security headers to whatever the
route returns (including errors) and turns HTTP errors into small HTML pages
instead of JSON. Pages carry evidence or images, so nothing is cached:
`Cache-Control: no-store` on every response except the static script and
style sheet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from fastapi import HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
TEMPLATES = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "connect-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), interest-cohort=()",
}
NO_STORE = "no-store, max-age=0"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page from templates/, with the page's session (if any) available as `session`."""
    context.setdefault("session", getattr(request.state, "webui_session", None))
    html = TEMPLATES.get_template(template).render(request=request, **context)
    return HTMLResponse(html, status_code=status_code)


def error_page(request: Request, status_code: int, message: str, headers: dict | None = None) -> HTMLResponse:
    response = render(request, "error.html", status_code=status_code, status=status_code, message=message)
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", NO_STORE)
    if response.headers["Cache-Control"].startswith("no-store"):
        response.headers.setdefault("Pragma", "no-cache")
    return response


class UIRoute(APIRoute):
    """An APIRoute whose responses always carry the UI's security headers and errors render as HTML."""

    def get_route_handler(self) -> Callable:
        handle = super().get_route_handler()

        async def route_handler(request: Request) -> Response:
            try:
                response = await handle(request)
            except HTTPException as exc:
                if exc.status_code in (301, 302, 303, 307, 308):
                    response = Response(status_code=exc.status_code, headers=exc.headers)
                else:
                    response = error_page(request, exc.status_code, str(exc.detail), exc.headers)
            except RequestValidationError:
                response = error_page(request, 400, "The form was incomplete or malformed.")
            return secure(response)

        return route_handler
