"""Helpers for web UI tests: a service with a review queue, users, logged-in clients, queued items.

Images are benign, drawn with Pillow ("known bad" is simulated by evidence
naming a test bank). The quarantine key lives in a file outside the store.
"""

from __future__ import annotations

import importlib
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from review_util import drawn_image, jpeg
from safeset.review.model import NewItem
from safeset.service.app import create_app
from safeset.service.config import ServiceConfig

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')

# The review queue is component "review"; make sure its module is loaded (and registered).
importlib.import_module("safeset.review.service")


def write_key_file(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "quarantine.key"
    path.write_text(secrets.token_bytes(32).hex() + "\n")
    os.chmod(path, 0o600)
    return path


def make_config(tmp_path: Path, db_url: str | None, **settings) -> ServiceConfig:
    store = tmp_path / "store"
    store.mkdir(parents=True, exist_ok=True)
    settings.setdefault("access_log", False)
    settings.setdefault("quarantine_key_file", write_key_file(tmp_path / "keys"))
    return ServiceConfig(store_root=store, db_url=db_url, **settings)


def open_client(config: ServiceConfig) -> TestClient:
    """An entered TestClient; https when cookies are Secure (a client never sends them over http)."""
    base_url = "https://testserver" if config.cookie_secure else "http://testserver"
    client = TestClient(create_app(config), base_url=base_url, follow_redirects=False)
    client.__enter__()
    return client


def webui(client: TestClient):
    return client.app.state.ctx.component("webui")


def queue(client: TestClient):
    return client.app.state.ctx.component("review")


def add_user(client: TestClient, name: str, role: str = "reviewer", password: str = PASSWORD):
    return webui(client).users.add(name, role, password, actor="test")


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no csrf_token field on the page"
    return match.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD):
    """Log in through the form; returns the POST's response (303 on success)."""
    page = client.get("/ui/login")
    assert page.status_code == 200, page.text
    return client.post("/ui/login", data={"username": name, "password": password, "csrf_token": csrf_of(page.text)})


def logged_in(client: TestClient, name: str) -> str:
    """Log in (asserting success) and return the session's CSRF token from the queue page."""
    response = login(client, name)
    assert response.status_code == 303, response.text
    page = client.get("/ui/queue")
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


@dataclass
class QueuedImage:
    item_id: int
    image: bytes


def queue_item(client: TestClient, seed: int, *, with_image: bool = True, **fields) -> QueuedImage:
    """Queue one item as the matcher would: evidence from a test bank, a drawn image quarantined."""
    image = jpeg(drawn_image(seed))
    values = {
        "origin": "api",
        "source_url": f"https://example.com/uploads/{seed}.jpg",
        "dataset": "test-dataset",
        "shard": "00000",
        "key": f"{seed:09d}",
        "evidence": [
            {"rule": "pdq-review", "signal_type": "pdq", "bank": "TEST_BANK", "bank_version": 1,
             "value": f"{seed:064x}", "distance": 7},
        ],
        "provenance": {"ai_generated": True, "generator": "placeholder-model"},
        "account_id": f"account-{seed}",
    }
    values.update(fields)
    item_id = queue(client).add(NewItem(**values), image if with_image else None, actor="test")
    return QueuedImage(item_id, image)


def use_cheap_password_hashing(monkeypatch) -> None:
    """Argon2id with tiny costs, so UI tests that log in many times stay fast (test_webui_users checks the real one)."""
    from argon2 import PasswordHasher, Type

    import safeset.webui.users as users

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1, type=Type.ID)
    monkeypatch.setattr(users, "_HASHER", cheap)
