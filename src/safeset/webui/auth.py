"""Who is looking at a UI page: the session from the cookie, role checks, CSRF checks.

Pages answer a visitor without a session by sending them to the login page;
the image and reveal endpoints (fetched, not navigated to) answer 401.
"""

from __future__ import annotations

from fastapi import HTTPException, Request

from safeset.webui.component import SESSION_COOKIE, WebUI
from safeset.webui.csrf import tokens_match
from safeset.webui.sessions import Session

LOGIN_PATH = "/ui/login"


def webui_of(request: Request) -> WebUI:
    return request.app.state.ctx.component("webui")


def current_session(request: Request) -> Session | None:
    """The visitor's live session, or None; remembered on request.state for templates and logs."""
    if hasattr(request.state, "webui_session"):
        return request.state.webui_session
    webui = webui_of(request)
    session = webui.sessions.lookup(request.cookies.get(webui.cookie_name(SESSION_COOKIE)))
    request.state.webui_session = session
    if session is not None:
        request.state.token_name = f"user:{session.user.name}"  # the request log names people, never secrets
    return session


def page_session(request: Request) -> Session:
    """Dependency for pages: the session, else a redirect to the login page."""
    session = current_session(request)
    if session is None:
        raise HTTPException(303, "login required", headers={"Location": LOGIN_PATH})
    return session


def fetch_session(request: Request) -> Session:
    """Dependency for endpoints the page fetches (images): the session, else 401."""
    session = current_session(request)
    if session is None:
        raise HTTPException(401, "Your session has ended. Please log in again.")
    return session


def require_role(session: Session, role: str) -> None:
    if not session.user.can(role):
        raise HTTPException(403, f"This page needs the {role} role; you are signed in as a {session.user.role}.")


def require_csrf(session: Session, given: str | None) -> None:
    if not tokens_match(session.csrf_token, given):
        raise HTTPException(403, "The form's security token is missing or wrong. Reload the page and try again.")
