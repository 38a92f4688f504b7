"""`safeset review ...`: import, list, decide, export, purge, keygen.

Thin: parses, opens the store's review queue (`safeset.review.setup`), calls
`safeset.review`, renders. Registered in `safeset.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from safeset.cli_common import DbOption, JsonOption, StoreOption, cli_actor, console, fail, out
from safeset.errors import SafesetError

review_app = typer.Typer(
    help="The review queue: import a run's review rows, list, decide, export for a hotline, purge bytes.",
    no_args_is_help=True,
)
KeyFileOption = typer.Option(
    None, "--quarantine-key-file",
    help="Quarantine key file (outside the store) [env SAFESET_QUARANTINE_KEY_FILE or SAFESET_QUARANTINE_KEY].",
    show_default=False,
)
QuarantineDirOption = typer.Option(None, "--quarantine-dir", help="Quarantine directory [default: STORE/quarantine].")


def _queue(store, db_url, key_file=None, quarantine_dir=None, retention: str | None = None):
    from safeset.banks.store import default_store_root
    from safeset.review.clock import parse_duration
    from safeset.review.setup import ReviewSettings, open_queue

    settings = ReviewSettings(
        quarantine_dir=quarantine_dir,
        quarantine_key_file=key_file,
        retention_seconds=parse_duration(retention) if retention is not None else 0.0,
    )
    return open_queue(default_store_root(store), db_url, settings)


@review_app.command("import")
def review_import(
    run_dir: Path = typer.Argument(..., help="Output directory of a scan/clean run (holds _safeset/)."),
    store: Optional[Path] = StoreOption,
    db: Optional[str] = DbOption,
    key_file: Optional[Path] = KeyFileOption,
    quarantine_dir: Optional[Path] = QuarantineDirOption,
    no_bytes: bool = typer.Option(False, "--no-bytes", help="Queue evidence only; do not quarantine image bytes."),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="The run's dataset, if it moved since the run."),
    as_json: bool = JsonOption,
) -> None:
    """Queue a run's `review` rows; their image bytes are encrypted into the quarantine."""
    from safeset.review.importer import import_run

    try:
        queue = _queue(store, db, key_file, quarantine_dir)
        with Progress(
            TextColumn("[bold]importing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            console=console, disable=as_json or not console.is_terminal, transient=True,
        ) as bar:
            task = bar.add_task("import", total=None)
            summary = import_run(
                queue, run_dir, actor=cli_actor(), with_bytes=not no_bytes, dataset=dataset,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except SafesetError as exc:
        fail(exc)
    data = summary.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    out.print(
        f"run {data['run_id']}: {data['review_rows']} review rows; {data['added']} queued "
        f"({data['with_bytes']} with quarantined bytes, {data['without_bytes']} evidence only), "
        f"{data['already_queued']} already queued"
    )


@review_app.command("list")
def review_list(
    status: Optional[str] = typer.Option(None, "--status", help="pending | claimed | escalated | decided."),
    limit: int = typer.Option(100, "--limit", min=1),
    offset: int = typer.Option(0, "--offset", min=0),
    store: Optional[Path] = StoreOption,
    db: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """List queued items with their evidence (never image bytes)."""
    try:
        queue = _queue(store, db)
        items = queue.list(status=status, limit=limit, offset=offset)
        counts = queue.counts()
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({"counts": counts, "items": [item.to_dict() for item in items]}, indent=2))
        return
    table = Table("id", "status", "banks", "dataset / shard / key", "bytes", "decision")
    for item in items:
        where = " / ".join(str(part) for part in (item.dataset, item.shard, item.key) if part)
        table.add_row(str(item.id), item.status, ", ".join(item.banks) or "-", where or item.origin,
                      item.bytes_state, f"{item.decision} ({item.decided_by})" if item.decision else "")
    out.print(table)
    out.print(", ".join(f"{status}: {count}" for status, count in counts.items()))


@review_app.command("decide")
def review_decide(
    item_id: int = typer.Argument(..., min=1),
    decision: str = typer.Argument(..., help="confirm | false_positive | escalate."),
    reviewer: Optional[str] = typer.Option(None, "--reviewer", help="Who decides [default: cli:<user>]."),
    note: Optional[str] = typer.Option(None, "--note"),
    store: Optional[Path] = StoreOption,
    db: Optional[str] = DbOption,
    quarantine_dir: Optional[Path] = QuarantineDirOption,
    retention: str = typer.Option("0", "--retention", help="Keep the item's bytes this long after the decision (0, 12h, 7d)."),
    as_json: bool = JsonOption,
) -> None:
    """Decide an item from its evidence (the web UI is the place to look at images)."""
    try:
        queue = _queue(store, db, quarantine_dir=quarantine_dir, retention=retention)
        result = queue.decide(item_id, decision.replace("-", "_"), reviewer or cli_actor(), note)
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    written = f"; {result.bank} version {result.bank_version}" if result.bank else ""
    out.print(f"item {result.item_id}: {result.decision} by {result.reviewer}{written}")


@review_app.command("export")
def review_export(
    out_dir: Path = typer.Option(..., "--out", help="Directory for confirmed.json and confirmed.csv."),
    store: Optional[Path] = StoreOption,
    db: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Write confirmed items for a hotline report (hashes, where, decision; no image bytes)."""
    from safeset.review.export import export_confirmed

    try:
        result = export_confirmed(_queue(store, db), out_dir, actor=cli_actor())
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    out.print(f"{result.items} confirmed items: {result.json_path}, {result.csv_path}")


@review_app.command("purge")
def review_purge(
    retention: Optional[str] = typer.Option(
        None, "--retention", help="Delete bytes of items decided at least this long ago (0, 12h, 7d) "
        "[default: the retention each item got at its decision].",
    ),
    store: Optional[Path] = StoreOption,
    db: Optional[str] = DbOption,
    quarantine_dir: Optional[Path] = QuarantineDirOption,
    as_json: bool = JsonOption,
) -> None:
    """Delete quarantined bytes of decided items whose retention is over (overwritten, then removed)."""
    from safeset.review.clock import parse_duration

    try:
        queue = _queue(store, db, quarantine_dir=quarantine_dir)
        result = queue.purge(actor=cli_actor(), retention_seconds=parse_duration(retention) if retention else None)
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    out.print(f"purged the bytes of {len(result.items)} decided items; {result.orphans} orphaned files removed")


@review_app.command("keygen")
def review_keygen(
    key_out: Path = typer.Option(..., "--out", help="Key file to create (mode 0600; never overwritten)."),
    store: Optional[Path] = StoreOption,
) -> None:
    """Create a random quarantine key file (keep it outside the store, and back it up).

    Without the key the quarantined bytes cannot be read.
    """
    from safeset.banks.store import default_store_root
    from safeset.review.quarantine import write_new_key

    try:
        path = write_new_key(key_out, [default_store_root(store)])
    except SafesetError as exc:
        fail(exc)
    out.print(f"wrote {path} (use --quarantine-key-file {path}, or SAFESET_QUARANTINE_KEY_FILE)")
