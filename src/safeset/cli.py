"""The `safeset` command line: parses, calls `safeset.jobs` / `safeset.banks`, renders.

No logic lives here that the Python API or the HTTP service could not reach.
Exit codes: 0 done; 1 internal error (a bug: please report it); 2 usage or
configuration error; 3 done, but some shards failed (listed in run.json).
"""

from __future__ import annotations

import os

# Each worker process runs its batches on one thread: idle BLAS threads would
# only spin beside them. Set before numpy is first imported (below, lazily).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from safeset.cli_common import JsonOption, StoreOption, console, fail, out, print_run_summary
from safeset.engine.memory import prefer_reuse_in_arrow
from safeset.errors import SafesetError
from safeset.pdq.cli_hash import hash_command

app = typer.Typer(
    help="Keep known child sexual abuse material out of AI training data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
bank_app = typer.Typer(help="Hash and URL banks: import, list, show, export, delete.", no_args_is_help=True)
app.add_typer(bank_app, name="bank")


def _store(path: Optional[Path]):
    from safeset.banks.store import BankStore, default_store_root

    return BankStore(default_store_root(path))


class RichProgress:
    """Shard and row progress with rows/s, on stderr; silent when not a TTY."""

    def __init__(self, enabled: bool):
        self.rows = 0
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("shards · {task.fields[rows]:,} rows · {task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
            disable=not enabled,
            transient=False,
        )
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def start(self, shards, rows):
        self.task = self.progress.add_task("scanning", total=shards, rows=0, rate="")

    def advance(self, rows):
        self.rows += rows
        elapsed = self.progress.tasks[self.task].elapsed or 0
        rate = f"{self.rows / elapsed:,.0f} rows/s" if elapsed > 0 else ""
        self.progress.update(self.task, rows=self.rows, rate=rate)

    def shard_finished(self, relpath, ok):
        self.progress.advance(self.task)


def _run(command: str, dataset, out_dir, store, bank, policy, workers, resume, fmt, url_column, caption_column,
         key_column, batch_rows, pdq_mode, dihedral, as_json, quiet) -> None:
    prefer_reuse_in_arrow()  # before pyarrow is first imported, below
    from safeset.banks.store import default_store_root
    from safeset.datasets.base import ColumnOverrides
    from safeset.jobs.run import JobSpec, run_job

    spec = JobSpec(
        command=command,
        dataset=dataset,
        out=out_dir,
        store_root=default_store_root(store),
        banks=bank or None,
        policy=policy,
        workers=workers,
        resume=resume,
        format=fmt,
        columns=ColumnOverrides(url=url_column, caption=caption_column, key=key_column),
        batch_rows=batch_rows,
        pdq_mode=pdq_mode,
        dihedral=dihedral,
    )
    try:
        with RichProgress(enabled=not quiet and not as_json and console.is_terminal) as progress:
            result = run_job(spec, progress)
    except SafesetError as exc:
        fail(exc)
    run = result.run
    if as_json:
        print(json.dumps(run, indent=2))
    else:
        print_run_summary(
            run, result, f"safeset {run['command']}: {run['dataset']['path']}", lambda signal: f"banks of type {signal!r}"
        )
    raise typer.Exit(result.exit_code)


def _job_command(command: str, help_text: str):
    def job(
        dataset: Path = typer.Argument(..., help="Dataset directory or file (parquet, webdataset tars, JSONL, CSV)."),
        out_dir: Path = typer.Option(..., "--out", help="Output directory (records in OUT/_safeset/)."),
        store: Optional[Path] = StoreOption,
        bank: Optional[List[str]] = typer.Option(None, "--bank", help="Bank to match (repeatable; default: all)."),
        policy: Optional[str] = typer.Option(None, "--policy", help="Preset name or TOML file [default: remove-matches]."),
        workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes [default: all cores]."),
        resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUT; done shards are kept."),
        fmt: Optional[str] = typer.Option(None, "--format", help="parquet | webdataset | jsonl | csv [default: detect]."),
        url_column: Optional[str] = typer.Option(None, "--url-column", help="URL column [default: URL/url]."),
        caption_column: Optional[str] = typer.Option(None, "--caption-column", help="Caption column [default: TEXT/caption/text]."),
        key_column: Optional[str] = typer.Option(None, "--key-column", help="Sample key column [default: key]."),
        batch_rows: Optional[int] = typer.Option(
            None, "--batch-rows", min=1, help="Rows per batch; memory is bounded by this [default: 65536, webdataset 1024]."
        ),
        pdq_mode: str = typer.Option("fast", "--pdq-mode", help="fast (reduced-scale decoding) | exact (reference bits)."),
        dihedral: bool = typer.Option(False, "--dihedral", help="Also match rotated and mirrored copies (PDQ)."),
        as_json: bool = JsonOption,
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    ) -> None:
        _run(command, dataset, out_dir, store, bank, policy, workers, resume, fmt, url_column, caption_column,
             key_column, batch_rows, pdq_mode, dihedral, as_json, quiet)

    job.__doc__ = help_text
    return job


app.command("scan")(_job_command("scan", "Match a dataset against banks and write run records (no copy)."))
app.command("clean")(_job_command("clean", "Write a cleaned copy of a dataset in the same layout, plus run records."))


@bank_app.command("import")
def bank_import(
    name: str = typer.Argument(..., help="Bank name (HMA style: upper case, digits, underscore)."),
    file: Path = typer.Argument(..., help="File to import (.gz read transparently)."),
    signal_type: Optional[str] = typer.Option(None, "--type", help="Signal type of plain-format values."),
    fmt: str = typer.Option("auto", "--format", help="auto | plain | pytx | pytx-csv | csv."),
    replace: bool = typer.Option(False, "--replace", help="New version holds only this file's entries."),
    note: Optional[str] = typer.Option(None, "--note", help="Free text kept in the version's manifest."),
    store: Optional[Path] = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Import a hash or URL list as a new immutable version of a bank."""
    try:
        result = _store(store).import_file(name, file, signal_type=signal_type, fmt=fmt, replace=replace, note=note)
    except SafesetError as exc:
        fail(exc)
    data = result.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
    else:
        _print_import(data)
    if not data["created"] and not data["unchanged"]:
        raise typer.Exit(2)


def _print_import(data: dict) -> None:
    if data["created"]:
        out.print(f"bank {data['bank']} version {data['version']}: {data['entries']:,} entries "
                  f"({data['added']:,} new); {data['accepted']:,} lines accepted, "
                  f"{data['duplicates']:,} duplicates, {data['rejected']:,} rejected")
    elif data["unchanged"]:
        out.print(f"bank {data['bank']} unchanged at version {data['version']}: {data['message']}")
    else:
        console.print(f"[red]no version created[/]: {data['message']}", highlight=False)
    for item in data.get("rejections", [])[:20]:
        console.print(f"  line {item['line']}: {item['reason']}", highlight=False)
    if data["rejected"] > 20:
        console.print(f"  ... and {data['rejected'] - 20:,} more (see the version's rejected.jsonl)")


@bank_app.command("list")
def bank_list(store: Optional[Path] = StoreOption, as_json: bool = JsonOption) -> None:
    """List banks with their latest version and entry counts."""
    try:
        banks = _store(store).list_banks()
    except SafesetError as exc:
        fail(exc)
    rows = [b.to_dict() for b in banks]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("bank", "version", "entries", "created")
    for row in rows:
        counts = ", ".join(f"{t}: {n:,}" for t, n in sorted(row.get("counts", {}).items()))
        table.add_row(row["name"], str(row["latest_version"]), counts, row["created"])
    out.print(table)


@bank_app.command("show")
def bank_show(
    name: str, version: Optional[int] = typer.Option(None, "--version"), store: Optional[Path] = StoreOption,
    as_json: bool = JsonOption,
) -> None:
    """Show one bank version's manifest (digest, source, counts) and its version history."""
    try:
        s = _store(store)
        bank_version = s.open_version(name, version)
        history = [v.to_dict() for v in s.bank_versions(bank_version.name)]
    except SafesetError as exc:
        fail(exc)
    data = {**bank_version.manifest, "versions": history}
    if as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        out.print_json(json.dumps(data, default=str))


@bank_app.command("export")
def bank_export(
    name: str, file: Path = typer.Argument(..., help="Output file."),
    fmt: str = typer.Option("pytx", "--format", help="plain | pytx | pytx-csv | csv."),
    version: Optional[int] = typer.Option(None, "--version"), store: Optional[Path] = StoreOption,
) -> None:
    """Export a bank version in an industry format."""
    try:
        _store(store).export(name, file, fmt, version=version)
    except SafesetError as exc:
        fail(exc)
    out.print(f"wrote {file}")


@bank_app.command("delete")
def bank_delete(
    name: str, version: Optional[int] = typer.Option(None, "--version", help="Delete only this version."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
    store: Optional[Path] = StoreOption,
) -> None:
    """Delete a bank (or one version of it)."""
    what = f"bank {name}" + (f" version {version}" if version else "")
    if not yes and not typer.confirm(f"Delete {what}?"):
        raise typer.Exit(1)
    try:
        _store(store).delete(name, version=version)
    except SafesetError as exc:
        fail(exc)
    out.print(f"deleted {what}")


app.command("hash")(hash_command)

from safeset.cli_serve import audit_app, serve_command, token_app  # noqa: E402 - the service's commands

app.command("serve")(serve_command)
app.add_typer(token_app, name="token")
app.add_typer(audit_app, name="audit")

from safeset.cli_review import review_app  # noqa: E402 - the review queue

app.add_typer(review_app, name="review")

from safeset.cli_user import user_app  # noqa: E402 - reviewers' accounts for the web UI

app.add_typer(user_app, name="user")

from safeset.cli_lineage import lineage_app  # noqa: E402 - dataset/model lineage and taint tracing

app.add_typer(lineage_app, name="lineage")

from safeset.cli_removals import removals_app  # noqa: E402 - removal lists: publish, diff, apply

app.add_typer(removals_app, name="removals")


@app.command("demo")
def demo(
    out_dir: Path = typer.Option(Path("demo-out"), "--out", help="Where to write the demo dataset, banks and run."),
) -> None:
    """Generate a small benign LAION-style dataset and banks, clean it, print the report path."""
    from safeset.demo import run_demo

    try:
        result = run_demo(out_dir, console=out)
    except SafesetError as exc:
        fail(exc)
    raise typer.Exit(result)


@app.command("policy")
def policy_show(spec: str = typer.Argument("remove-matches", help="Preset name or TOML file.")) -> None:
    """Print a policy (a preset, or validate a file) as the rules safeset will apply."""
    from safeset.policy import load_policy, preset_names

    try:
        policy = load_policy(spec)
    except SafesetError as exc:
        fail(exc)
    out.print(f"presets: {', '.join(preset_names())}")
    out.print_json(json.dumps(policy.to_dict()))


def main() -> None:  # pragma: no cover - console entry
    """Run the command, then leave without tearing the interpreter down.

    Every command has closed and renamed its outputs by the time it returns;
    unloading pyarrow, numpy and the rest would only add a tenth of a second
    to every run. A command that fails with a traceback still exits normally."""
    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
