"""Web UI login, sessions, CSRF, throttling and security headers, on both database backends."""

from __future__ import annotations

import hashlib
import re

import pytest

from webui_util import (
    PASSWORD,
    add_user,
    csrf_of,
    logged_in,
    login,
    make_config,
    open_client,
    use_cheap_password_hashing,
    webui,
)


@pytest.fixture(autouse=True)
def _cheap_hashing(monkeypatch):
    use_cheap_password_hashing(monkeypatch)


@pytest.fixture
def client(tmp_path, db_url):
    client = open_client(make_config(tmp_path, db_url))
    add_user(client, "alice", "reviewer")
    yield client
    client.__exit__(None, None, None)


def _set_cookie_headers(response) -> list[str]:
    return response.headers.get_list("set-cookie")


def test_login_sets_a_hardened_session_cookie(client):
    response = login(client, "alice")
    assert response.status_code == 303 and response.headers["location"] == "/ui/queue"
    cookie = next(c for c in _set_cookie_headers(response) if c.startswith("__Host-safeset-session="))
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite=strict", "path=/"} <= flags
    assert not any(flag.startswith(("max-age", "expires", "domain")) for flag in flags)  # dies with the browser
    assert client.get("/ui/queue").status_code == 200


def test_session_id_is_stored_only_as_a_hash(client):
    login(client, "alice")
    secret = client.cookies.get("__Host-safeset-session")
    stored = [row[0] for row in webui(client).sessions.db.query("SELECT id_hash FROM webui_sessions")]
    assert stored == [hashlib.sha256(secret.encode()).hexdigest()]


def test_cookie_secure_can_be_turned_off_for_plain_http_tests(tmp_path, db_url):
    client = open_client(make_config(tmp_path, db_url, cookie_secure=False))
    try:
        add_user(client, "bob")
        response = login(client, "bob")
        cookie = next(c for c in _set_cookie_headers(response) if c.startswith("safeset-session="))
        assert "secure" not in cookie.lower() and "httponly" in cookie.lower()
    finally:
        client.__exit__(None, None, None)


@pytest.mark.parametrize("name, password", [("alice", "wrong password here"), ("nobody", PASSWORD)])
def test_bad_credentials_get_one_generic_answer(client, name, password):
    response = login(client, name, password)
    assert response.status_code == 401
    assert "Unknown user name or wrong password." in response.text
    assert not any("safeset-session=" in c for c in _set_cookie_headers(response))
    assert client.get("/ui/queue").status_code == 303
    failed = [e for e in client.app.state.ctx.audit.entries() if e.action == "ui.login_failed"]
    assert [e.details["user"] for e in failed] == [name]
    assert password not in str([e.to_dict() for e in failed])


def test_login_without_the_form_token_is_refused(client):
    response = client.post("/ui/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert client.get("/ui/queue").status_code == 303


def test_repeated_failures_lock_the_name_even_for_the_right_password(client):
    throttle = webui(client).throttle
    now = [1_000_000.0]
    throttle.clock = lambda: now[0]
    for _ in range(5):
        assert login(client, "alice", "not the password!").status_code == 401
    locked = login(client, "alice")
    assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
    assert "Too many failed attempts" in locked.text
    now[0] += throttle.max_lockout_s + 1
    assert login(client, "alice").status_code == 303


def test_pages_need_a_session(client):
    for path in ("/ui/queue", "/ui/review", "/ui/export"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"] == "/ui/login", path
    assert client.get("/ui/review/1/image").status_code == 401
    assert client.post("/ui/review/1/reveal", data={"csrf_token": "x"}).status_code == 401


def test_logout_needs_csrf_and_ends_the_session_server_side(client):
    csrf = logged_in(client, "alice")
    secret = client.cookies.get("__Host-safeset-session")
    assert client.post("/ui/logout", data={}).status_code == 403
    assert client.post("/ui/logout", data={"csrf_token": "0" * 64}).status_code == 403
    assert client.get("/ui/queue").status_code == 200  # still logged in
    response = client.post("/ui/logout", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/ui/login"
    client.cookies.set("__Host-safeset-session", secret)  # a stolen copy of the old cookie
    assert client.get("/ui/queue").status_code == 303


def test_csrf_token_of_another_session_is_refused(client):
    add_user(client, "carol")
    other = logged_in(client, "carol")
    client.cookies.clear()
    logged_in(client, "alice")
    assert client.post("/ui/logout", data={"csrf_token": other}).status_code == 403


def test_sessions_end_after_idle_and_absolute_timeouts(client):
    sessions = webui(client).sessions
    now = [5_000_000.0]
    sessions.clock = lambda: now[0]
    logged_in(client, "alice")
    now[0] += sessions.idle_timeout_s - 5
    assert client.get("/ui/queue").status_code == 200  # activity restarts the idle clock
    now[0] += sessions.idle_timeout_s + 1
    assert client.get("/ui/queue").status_code == 303

    logged_in(client, "alice")
    for _ in range(sessions.absolute_timeout_s // sessions.idle_timeout_s + 1):
        now[0] += sessions.idle_timeout_s - 1
        if client.get("/ui/queue").status_code != 200:
            break
    assert client.get("/ui/queue").status_code == 303


def test_disabling_a_user_ends_their_session(client):
    logged_in(client, "alice")
    webui(client).users.set_enabled("alice", False, actor="test")
    assert client.get("/ui/queue").status_code == 303
    assert login(client, "alice").status_code == 401


def test_security_headers_on_pages_and_errors(client):
    pages = [client.get("/ui/login"), client.get("/ui/review/1/image")]
    logged_in(client, "alice")
    pages += [client.get("/ui/queue"), client.get("/ui/export")]
    for response in pages:
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["cache-control"].startswith("no-store")
        assert response.headers["x-content-type-options"] == "nosniff"
    assert pages[-1].status_code == 403  # a reviewer is not an admin
    assert "text/html" in pages[-1].headers["content-type"]


def test_pages_have_no_inline_script_and_label_every_field(client):
    page = client.get("/ui/login").text
    assert not re.search(r"<script(?![^>]*\bsrc=)", page)
    assert not re.search(r"\son[a-z]+=", page)  # no inline event handlers
    for field_id in re.findall(r'<input id="([^"]+)"', page):
        assert f'<label for="{field_id}">' in page
    assert '<main id="main"' in page and 'lang="en"' in page
    script = client.get("/ui/static/reveal.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert client.get("/ui/static/../users.py").status_code == 404
    assert client.get("/ui/static/users.py").status_code == 404


def test_login_page_token_is_fresh_per_visit(client):
    first = csrf_of(client.get("/ui/login").text)
    second = csrf_of(client.get("/ui/login").text)
    assert first != second


def test_request_log_names_the_user_never_the_cookie(tmp_path, db_url, caplog):
    client = open_client(make_config(tmp_path, db_url, access_log=True))
    try:
        add_user(client, "dora")
        with caplog.at_level("INFO", logger="safeset.service.access"):
            logged_in(client, "dora")
            client.get("/ui/queue")
        secret = client.cookies.get("__Host-safeset-session")
        lines = [r.getMessage() for r in caplog.records if r.name == "safeset.service.access"]
        assert any(line.startswith("GET /ui/queue 200") and "user:dora" in line for line in lines), lines
        assert not any(secret in line or PASSWORD in line for line in lines)
    finally:
        client.__exit__(None, None, None)
