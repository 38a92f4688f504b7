"""`safeset user ...`: reviewers' accounts for the web UI (add, list, set-role, disable, enable, passwd).

Thin: opens the service database as `safeset serve` would and calls
`safeset.webui.users.UserStore`. Passwords are read from a hidden prompt (asked
twice) or, for scripts, from the first line of stdin with --password-stdin;
never from the command line, where other users and shell history see them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from safeset.cli_common import DbOption, JsonOption, StoreOption, cli_actor, fail, open_state, out
from safeset.errors import ConfigError, SafesetError
from safeset.webui.roles import ROLES, check_role

user_app = typer.Typer(help="Reviewers' accounts for the web UI: add, list, set-role, disable, enable, passwd.", no_args_is_help=True)

PasswordStdinOption = typer.Option(
    False, "--password-stdin", help="Read the password from the first line of stdin instead of prompting."
)
RoleHelp = f"One of: {', '.join(ROLES)}."


def _users(store: Optional[Path], db_url: Optional[str]):
    from safeset.webui.users import UserStore

    _, db, audit = open_state(store, db_url)
    return UserStore(db, audit)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise ConfigError("--password-stdin: no password on stdin")
        return line.rstrip("\r\n")
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _print_user(user, as_json: bool, verb: str) -> None:
    if as_json:
        out.print_json(json.dumps(user.to_dict()))
    else:
        state = "enabled" if user.enabled else "disabled"
        out.print(f"{verb} user {user.name} (role {user.role}, {state})", highlight=False)


@user_app.command("add")
def user_add(
    name: str = typer.Argument(..., help="User name (lowercase letters, digits, . _ @ -)."),
    role: str = typer.Option(..., "--role", help=RoleHelp),
    password_stdin: bool = PasswordStdinOption,
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a user; the password is hashed with Argon2id and never stored."""
    try:
        check_role(role)  # before asking for a password that would be thrown away
        users = _users(store, db_url)
        if users.get(name) is not None:
            raise ConfigError(f"user {name!r} already exists")
        user = users.add(name, role, _read_password(password_stdin), actor=cli_actor())
    except SafesetError as exc:
        fail(exc)
    _print_user(user, as_json, "added")


@user_app.command("list")
def user_list(store: Optional[Path] = StoreOption, db_url: Optional[str] = DbOption, as_json: bool = JsonOption) -> None:
    """List users with their roles and whether they may log in."""
    try:
        users = _users(store, db_url).list()
    except SafesetError as exc:
        fail(exc)
    if as_json:
        out.print_json(json.dumps([u.to_dict() for u in users]))
        return
    table = Table("name", "role", "enabled", "created", "last login")
    for user in users:
        table.add_row(user.name, user.role, "yes" if user.enabled else "no", user.created_at, user.last_login_at or "never")
    out.print(table)


@user_app.command("set-role")
def user_set_role(
    name: str = typer.Argument(...),
    role: str = typer.Argument(..., help=RoleHelp),
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Change a user's role."""
    try:
        user = _users(store, db_url).set_role(name, role, actor=cli_actor())
    except SafesetError as exc:
        fail(exc)
    _print_user(user, as_json, "updated")


@user_app.command("disable")
def user_disable(
    name: str = typer.Argument(...),
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Stop a user from logging in; their open sessions end at once."""
    try:
        user = _users(store, db_url).set_enabled(name, False, actor=cli_actor())
    except SafesetError as exc:
        fail(exc)
    _print_user(user, as_json, "disabled")


@user_app.command("enable")
def user_enable(
    name: str = typer.Argument(...),
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Let a disabled user log in again."""
    try:
        user = _users(store, db_url).set_enabled(name, True, actor=cli_actor())
    except SafesetError as exc:
        fail(exc)
    _print_user(user, as_json, "enabled")


@user_app.command("passwd")
def user_passwd(
    name: str = typer.Argument(...),
    password_stdin: bool = PasswordStdinOption,
    store: Optional[Path] = StoreOption,
    db_url: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Set a new password; the user's open sessions end."""
    try:
        users = _users(store, db_url)
        users.require(name)
        user = users.set_password(name, _read_password(password_stdin), actor=cli_actor())
    except SafesetError as exc:
        fail(exc)
    _print_user(user, as_json, "changed the password of")
