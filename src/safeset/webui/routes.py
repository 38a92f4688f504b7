"""The reviewers' web UI under /ui: login, queue overview, review, export.

Server-rendered pages and plain forms; the only script is the press-and-hold
reveal (static/reveal.js, served from here so the CSP allows no inline
script). Importing this module registers the "webui" component; the service
app mounts `router` (it is listed in safeset.service.app.COMPONENT_MODULES).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from safeset.service.components import register
from safeset.webui import export_pages, review_pages
from safeset.webui.auth import current_session, page_session, require_csrf, webui_of
from safeset.webui.component import LOGIN_COOKIE, SESSION_COOKIE, WebUI
from safeset.webui.csrf import new_login_token, tokens_match
from safeset.webui.pages import HERE, UIRoute, render
from safeset.webui.sessions import Session
from safeset.webui.throttle import LoginThrottle
from safeset.webui.users import normalise_name

register("webui", WebUI.from_context)

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=UIRoute)

STATIC_FILES = {"reveal.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
LOGIN_TOKEN_MAX_AGE_S = 30 * 60


def _see_other(path: str) -> RedirectResponse:
    return RedirectResponse(path, status_code=303)


def _client(request: Request) -> str | None:
    return request.client.host if request.client else None


def _set_cookie(response: Response, webui: WebUI, name: str, value: str, max_age: int | None = None) -> None:
    """Every UI cookie: HttpOnly, SameSite=Strict, Path=/, Secure (with the __Host- prefix) unless turned off."""
    response.set_cookie(
        webui.cookie_name(name), value, max_age=max_age, path="/",
        secure=webui.cookie_secure, httponly=True, samesite="strict",
    )


def _clear_cookie(response: Response, webui: WebUI, name: str) -> None:
    response.delete_cookie(webui.cookie_name(name), path="/", secure=webui.cookie_secure, httponly=True, samesite="strict")


# -- static -------------------------------------------------------------------
@router.get("/static/{name}")
def static_file(name: str) -> Response:
    if name not in STATIC_FILES:
        raise HTTPException(404, "No such file.")
    body = (HERE / "static" / name).read_bytes()
    return Response(body, media_type=STATIC_FILES[name], headers={"Cache-Control": "private, max-age=300"})


# -- login and logout ----------------------------------------------------------
@router.get("")
@router.get("/")
def home(request: Request) -> Response:
    return _see_other("/ui/queue" if current_session(request) else "/ui/login")


def _login_form(request: Request, status_code: int = 200, message: str | None = None, name: str = "") -> Response:
    webui = webui_of(request)
    token = new_login_token()
    response = render(request, "login.html", status_code=status_code, login_token=token, message=message, name=name)
    _set_cookie(response, webui, LOGIN_COOKIE, token, max_age=LOGIN_TOKEN_MAX_AGE_S)
    return response


@router.get("/login")
def login_page(request: Request) -> Response:
    if current_session(request) is not None:
        return _see_other("/ui/queue")
    return _login_form(request)


@router.post("/login")
def login(
    request: Request,
    username: str = Form("", max_length=256),
    password: str = Form("", max_length=2048),
    csrf_token: str = Form(""),
) -> Response:
    webui = webui_of(request)
    if not tokens_match(request.cookies.get(webui.cookie_name(LOGIN_COOKIE)), csrf_token):
        return _login_form(request, 403, "The login form expired. Please try again.", username)
    name = normalise_name(username)
    keys = LoginThrottle.keys(name, _client(request))
    wait = webui.throttle.wait_seconds(keys)
    if wait:
        response = _login_form(request, 429, f"Too many failed attempts. Try again in {wait} seconds.", username)
        response.headers["Retry-After"] = str(wait)
        return response
    user = webui.users.authenticate(name, password)
    if user is None:
        webui.throttle.record_failure(keys)
        webui.ctx.audit.append(f"addr:{_client(request) or 'unknown'}", "ui.login_failed", {"user": name})
        return _login_form(request, 401, "Unknown user name or wrong password.", username)
    webui.throttle.record_success(name)
    secret = webui.sessions.create(user)  # always a new id: no session fixation
    webui.ctx.audit.append(f"user:{user.name}", "ui.login", {})
    response = _see_other("/ui/queue")
    _set_cookie(response, webui, SESSION_COOKIE, secret)  # no max-age: it ends with the browser
    _clear_cookie(response, webui, LOGIN_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, session: Session = Depends(page_session), csrf_token: str = Form("")) -> Response:
    require_csrf(session, csrf_token)
    webui = webui_of(request)
    review_pages.release_held_item(webui, session)
    webui.sessions.destroy(request.cookies.get(webui.cookie_name(SESSION_COOKIE)))
    webui.ctx.audit.append(f"user:{session.user.name}", "ui.logout", {"reviewed": session.reviewed})
    response = _see_other("/ui/login")
    _clear_cookie(response, webui, SESSION_COOKIE)
    return response


router.include_router(review_pages.router)
router.include_router(export_pages.router)

__all__ = ["router"]
