"""`safeset serve`, `safeset token ...`, `safeset audit verify`: the service's command line.

Thin: builds a `ServiceConfig`, opens the service database and calls
`safeset.service` / `safeset.audit`. Registered in `safeset.cli`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from safeset.cli_common import DbOption, JsonOption, StoreOption, cli_actor, console, fail, open_state, out
from safeset.errors import SafesetError

token_app = typer.Typer(help="API tokens for `safeset serve`: create, list, revoke.", no_args_is_help=True)
audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)



def serve_command(
    host: Optional[str] = typer.Option(None, "--host", help="Address to listen on [default 127.0.0.1].", show_default=False),
    port: Optional[int] = typer.Option(None, "--port", help="Port [default 5100].", show_default=False),
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    config_file: Optional[Path] = typer.Option(None, "--config", help="Service settings (TOML); flags override it."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
) -> None:
    """Run the HMA-compatible match service and review queue (FastAPI + uvicorn, one process)."""
    import uvicorn

    from safeset.service.app import create_app
    from safeset.service.config import load_config

    try:
        config = load_config(config_file, host=host, port=port, store_root=store, db_url=db_url)
        _configure_logging(log_level)
        app = create_app(config)
    except SafesetError as exc:
        fail(exc)
    console.print(
        f"safeset serve: store {config.store_root}, listening on http://{config.host}:{config.port} "
        f"(OpenAPI at /openapi.json)", highlight=False,
    )
    uvicorn.run(
        app,
        host=config.host,
        port=config.port,
        loop=_loop(),
        http="httptools",
        access_log=False,  # our RequestLog middleware logs requests, with token names
        log_config=None,
        log_level=log_level,
        workers=1,
    )


def _loop() -> str:
    try:
        import uvloop  # noqa: F401

        return "uvloop"
    except ImportError:  # pragma: no cover - platform without uvloop
        return "asyncio"


def _configure_logging(level: str) -> None:
    numeric = getattr(logging, level.upper(), None)
    if not isinstance(numeric, int):
        from safeset.errors import ConfigError

        raise ConfigError(f"unknown log level {level!r}")
    logging.basicConfig(level=numeric, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


# ----------------------------------------------------------------- tokens


@token_app.command("create")
def token_create(
    scopes: str = typer.Option(..., "--scopes", help="Comma-separated: hash,match,curate,review,admin."),
    name: Optional[str] = typer.Option(None, "--name", help="Name shown in logs and the audit log."),
    rate: Optional[float] = typer.Option(
        None, "--rate", help="Requests per second for this token (0 = unlimited) [default: the service's]."
    ),
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a token and print it once; only its SHA-256 is stored."""
    from safeset.service.tokens import TokenRegistry

    try:
        _, db, audit = open_state(store, db_url)
        info, secret = TokenRegistry(db, audit).create(name, scopes, rate=rate, actor=cli_actor())
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({"name": info.name, "token": secret, "id": info.id, "scopes": list(info.scopes), "rate": info.rate}))
        return
    out.print(secret, highlight=False, soft_wrap=True)
    console.print(
        f"token {info.name!r} (id {info.id}, scopes {','.join(info.scopes)}) created; "
        "it is shown only now: keep it in a secret store.", highlight=False,
    )


@token_app.command("list")
def token_list(
    include_revoked: bool = typer.Option(False, "--all", help="Also list revoked tokens."),
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """List tokens (names, scopes, rates; never the secrets)."""
    from safeset.service.tokens import TokenRegistry

    try:
        _, db, audit = open_state(store, db_url)
        tokens = TokenRegistry(db, audit).list(include_revoked=include_revoked)
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps([t.to_dict() for t in tokens], indent=2))
        return
    table = Table("id", "name", "scopes", "rate", "created", "revoked")
    for t in tokens:
        table.add_row(str(t.id), t.name, ",".join(t.scopes), "default" if t.rate is None else f"{t.rate:g}/s",
                      t.created_at, t.revoked_at or "")
    out.print(table)


@token_app.command("revoke")
def token_revoke(
    token: str = typer.Argument(..., help="Name or id of the token."),
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Revoke a token: it is refused from now on (within a few seconds on other instances)."""
    from safeset.service.tokens import TokenRegistry

    try:
        _, db, audit = open_state(store, db_url)
        info = TokenRegistry(db, audit).revoke(token, actor=cli_actor())
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(info.to_dict()))
    else:
        out.print(f"revoked token {info.name!r} (id {info.id})", highlight=False)


# ----------------------------------------------------------------- audit


@audit_app.command("verify")
def audit_verify(
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Check the audit log's hash chain; exit 0 when intact, 1 when edited or cut."""
    try:
        _, _, audit = open_state(store, db_url)
        result = audit.verify()
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
    elif result.ok:
        out.print(f"audit log intact: {result.entries} entries, head {result.head_hash[:16]}…", highlight=False)
    else:
        out.print(f"[bold red]audit log TAMPERED[/] ({result.entries} entries read):", highlight=False)
        for problem in result.problems:
            out.print(f"  - {problem}", highlight=False)
    raise typer.Exit(0 if result.ok else 1)
