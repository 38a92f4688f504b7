"""Helpers for service tests: an app on a temporary store, a client, tokens.

    client, token = make_client(tmp_path, db_url, scopes=("match",))
    client.get("/m/raw_lookup", params=..., headers=auth(token))

The client has entered the app's lifespan (components are started); clients
are closed after each test by the `_close_service_clients` fixture in
conftest.py, or by `close_clients()`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from safeset.service.app import create_app
from safeset.service.config import ServiceConfig

_OPEN: list[TestClient] = []


def make_config(tmp_path: Path, db_url: str | None = None, **settings) -> ServiceConfig:
    """A config on `tmp_path/store` (created), the given database, logs off unless asked."""
    store = Path(tmp_path) / "store"
    store.mkdir(parents=True, exist_ok=True)
    settings.setdefault("access_log", False)
    settings.setdefault("cookie_secure", False)  # TestClient talks plain http
    return ServiceConfig(store_root=store, db_url=db_url, **settings)


def auth(token: str) -> dict[str, str]:
    """The header that carries a token."""
    return {"Authorization": f"Bearer {token}"}


def make_token(client: TestClient, scopes=("admin",), name: str | None = None, rate: float | None = 0) -> str:
    """Another token on a running client's service (rate 0 = unlimited, so tests never hit 429)."""
    _, secret = client.app.state.ctx.tokens.create(name, scopes, rate=rate, actor="test")
    return secret


def make_client(
    tmp_path: Path,
    db_url: str | None = None,
    scopes=("admin",),
    *,
    name: str = "test",
    rate: float | None = 0,
    start: bool = True,
    raise_server_exceptions: bool = True,
    **settings,
) -> tuple[TestClient, str]:
    """(TestClient, token secret) for a fresh service; `settings` are ServiceConfig fields."""
    config = make_config(tmp_path, db_url, **settings)
    app = create_app(config)
    client = TestClient(app, raise_server_exceptions=raise_server_exceptions)
    if start:
        client.__enter__()
        _OPEN.append(client)
    token = make_token(client, scopes, name=name, rate=rate)
    return client, token


def close_clients() -> None:
    """Shut down every client `make_client` started (their components stop, databases close)."""
    while _OPEN:
        client = _OPEN.pop()
        try:
            client.__exit__(None, None, None)
        except Exception:  # noqa: BLE001 - a failing shutdown must not hide the test's result
            pass
