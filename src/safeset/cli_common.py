"""What every `safeset` command module shares: consoles, common options, error exit, the caller's name.

Kept free of heavy imports: every command line imports it.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.console import Console

from safeset.errors import SafesetError

console = Console(stderr=True)
out = Console()

# Help texts use parentheses, not square brackets: Rich would read "[env ...]" as markup and drop it.
StoreOption = typer.Option(
    None, "--store", help="Store directory (env SAFESET_STORE; default ~/.safeset).", show_default=False
)
DbOption = typer.Option(
    None,
    "--db",
    help="Database URL: sqlite:///PATH or postgresql://... (env SAFESET_DB; default SQLite in the store).",
    show_default=False,
)
JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON on stdout.")


def fail(exc: SafesetError) -> None:
    """Print a SafesetError without a traceback and exit with its code."""
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(exc.exit_code)


def cli_actor() -> str:
    """Who did it, for the audit log: `cli:<login name>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - some containers have no user name
        return "cli"


def open_state(store: Optional[Path], db_url: Optional[str]):
    """(store_root, Database, AuditLog) opened as `safeset serve` opens them."""
    from safeset.audit import AuditLog
    from safeset.banks.store import default_store_root

    root = default_store_root(store)
    audit = AuditLog.open_store(root, db_url)
    return root, audit.db, audit


def print_run_summary(run: dict, result, title: str, unmatched: Callable[[str], str]) -> None:
    """The end-of-run table of a job (scan, clean, removals apply): counts, failures, where the records are.

    `unmatched(signal)` words the warning for a signal the dataset could not give.
    """
    from rich.table import Table

    counts = run["counts"]
    table = Table(title=title, show_header=False)
    table.add_column(justify="left")
    table.add_column(justify="right")
    for key in ("input_rows", "kept_rows", "removed_rows", "review_rows"):
        table.add_row(key.replace("_", " "), f"{counts[key]:,}")
    table.add_row("shards done / failed", f"{len(run['shards']) - len(run['failed_shards'])} / {len(run['failed_shards'])}")
    table.add_row("rows/s", f"{run['timings']['rows_per_second'] or 0:,}")
    out.print(table)
    for failure in run["failed_shards"]:
        console.print(f"[red]failed shard[/] {failure['relpath']}: {failure['error']}", highlight=False)
    for signal in run["unavailable_signals"]:
        console.print(f"[yellow]warning:[/] {unmatched(signal)} could not be matched: the dataset has no such signal")
    if not run["conservation_ok"]:
        console.print("[bold red]conservation check failed[/]: input != kept + removed + review (a bug; please report)")
    out.print(f"records: {result.records_dir}")
    out.print(f"report:  {result.report_path}")
