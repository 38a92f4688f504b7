"""The review UI in a real browser: Debian's headless Chromium, driven by Playwright, against a live server.

Log in, read the evidence, press and hold to reveal (mouse and keyboard),
decide, log out; then an admin exports. Skipped, with the reason, when the
`playwright` package or the Chromium executable is missing.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import pytest

from webui_util import add_user, make_config, queue_item, use_cheap_password_hashing

CHROMIUM = os.environ.get("SAFESET_TEST_CHROMIUM", "/usr/bin/chromium")

playwright_api = pytest.importorskip("playwright.sync_api", reason="the 'playwright' Python package is not installed")
if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
    pytest.skip(f"no Chromium executable at {CHROMIUM} (apt-get install chromium, or set SAFESET_TEST_CHROMIUM)",
                allow_module_level=True)

PASSWORD = "correct horse battery staple"


class LiveServer:
    """uvicorn serving `app` on a free loopback port, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def live(tmp_path, monkeypatch):
    """A running service (SQLite, cookies without Secure: plain-http loopback) with two queued items."""
    use_cheap_password_hashing(monkeypatch)
    from fastapi.testclient import TestClient

    from safeset.service.app import create_app

    app = create_app(make_config(tmp_path, f"sqlite:///{tmp_path / 'state' / 'safeset.db'}", cookie_secure=False))
    setup = TestClient(app)  # not entered: only to reach app.state for set-up helpers
    add_user(setup, "alice", "reviewer")
    add_user(setup, "ada", "admin")
    items = [queue_item(setup, 101), queue_item(setup, 102)]
    with LiveServer(app) as base_url:
        yield base_url, app, items


def _browser(playwright):
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
    except Exception as exc:  # noqa: BLE001 - a broken browser install is a reason to skip, not a failure of ours
        pytest.skip(f"Chromium at {CHROMIUM} could not be started: {str(exc).splitlines()[0]}")


def _log_in(page, base_url: str, name: str) -> None:
    page.goto(f"{base_url}/ui/login")
    page.get_by_label("User name").fill(name)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Review queue").wait_for()


def _image_loaded(page, selector: str) -> bool:
    return page.eval_on_selector(selector, "img => img.complete && img.naturalWidth > 0 && !img.hidden")


def test_review_in_a_real_browser(live, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    base_url, app, items = live
    with sync_playwright() as playwright:
        browser = _browser(playwright)
        try:
            context = browser.new_context(accept_downloads=True)
            page = context.new_page()
            problems: list[str] = []
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            _log_in(page, base_url, "alice")
            page.get_by_role("link", name="Review the next item").click()

            # Evidence first, as text.
            expect(page.get_by_role("heading", name=f"Review item {items[0].item_id}")).to_be_visible()
            evidence = page.locator("section.evidence")
            expect(evidence).to_contain_text("TEST_BANK")
            expect(evidence).to_contain_text("https://example.com/uploads/101.jpg")
            expect(evidence).to_contain_text("placeholder-model")
            assert page.locator("section.evidence a").count() == 0

            # Blurred by default; the clear image only while the button is held.
            page.wait_for_function("document.getElementById('blurred-image').naturalWidth > 0")
            expect(page.locator("#clear-image")).to_be_hidden()
            reveal = page.get_by_role("button", name="Press and hold to reveal")
            reveal.hover()
            page.mouse.down()
            page.wait_for_function("() => { const i = document.getElementById('clear-image');"
                                   " return !i.hidden && i.complete && i.naturalWidth > 0; }")
            expect(reveal).to_have_attribute("aria-pressed", "true")
            expect(page.locator("#blurred-image")).to_be_hidden()
            page.mouse.up()
            expect(page.locator("#clear-image")).to_be_hidden()
            assert page.get_attribute("#clear-image", "src") is None
            assert _image_loaded(page, "#blurred-image")

            # Keyboard: hold Space on the focused button.
            reveal.focus()
            page.keyboard.down("Space")
            page.wait_for_function("() => { const i = document.getElementById('clear-image');"
                                   " return !i.hidden && i.naturalWidth > 0; }")
            page.keyboard.up("Space")
            expect(page.locator("#clear-image")).to_be_hidden()
            expect(page.locator("#reveal-status")).to_have_text("The image is blurred again.")

            # Decide.
            page.get_by_label("Confirm").check()
            page.get_by_label("Note (optional)").fill("placeholder note")
            page.get_by_role("button", name="Record decision").click()
            expect(page.get_by_role("heading", name=f"Review item {items[1].item_id}")).to_be_visible()
            decided = app.state.ctx.component("review").get(items[0].item_id)
            assert (decided.decision, decided.decided_by) == ("confirm", "user:alice")
            page.get_by_label("False positive").check()
            page.get_by_role("button", name="Record decision").click()
            expect(page.get_by_role("heading", name="Nothing to review")).to_be_visible()
            page.get_by_role("button", name="Log out").click()
            expect(page.get_by_role("heading", name="Log in")).to_be_visible()

            # An admin exports the confirmed item.
            _log_in(page, base_url, "ada")
            page.get_by_role("link", name="Export").click()
            page.get_by_role("button", name="Create a new export").click()
            expect(page.get_by_role("status")).to_contain_text("is ready")
            with page.expect_download() as download_info:
                page.get_by_role("link", name="Download confirmed.csv").first.click()
            csv_text = Path(download_info.value.path()).read_text(encoding="utf-8")
            assert "https://example.com/uploads/101.jpg" in csv_text
            assert "https://example.com/uploads/102.jpg" not in csv_text  # a false positive is not exported

            assert not [p for p in problems if "Content Security Policy" in p], problems
            viewed = [e for e in app.state.ctx.audit.entries() if e.action == "review.image_viewed"]
            assert len(viewed) == 2 and {e.actor for e in viewed} == {"user:alice"}
        finally:
            browser.close()
