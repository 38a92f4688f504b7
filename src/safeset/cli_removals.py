"""`safeset removals publish | diff | apply`: the command-line face of `safeset.removals`.

Parses, calls the Python API, renders; no logic of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from safeset.cli_common import JsonOption, StoreOption, console, fail, out, print_run_summary
from safeset.errors import SafesetError

removals_app = typer.Typer(
    help="Removal lists: publish what a run withheld, diff two releases, apply a list to a copy.",
    no_args_is_help=True,
)

QuietOption = typer.Option(False, "--quiet", "-q", help="No progress bar.")
WorkersOption = typer.Option(None, "--workers", min=1, help="Worker processes [default: all cores].")
TmpOption = typer.Option(None, "--tmp-dir", help="Where temporary indexes and parts go [default: $TMPDIR].")
NameOption = typer.Option(
    None, "--dataset-name", help="NAME or NAME@VERSION recorded in the list [default: the dataset path]."
)



class StagedProgress:
    """One bar per stage (indexing, counting, drawing, applying), on stderr; silent when not a TTY."""

    def __init__(self, enabled: bool):
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("· {task.fields[rows]:,} rows"), TimeElapsedColumn(),
            console=console, disable=not enabled,
        )
        self.label = "working"
        self.task = None
        self.rows = 0

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def stage(self, label: str) -> None:
        self.label = label

    def start(self, shards, rows):
        self.rows = 0
        self.task = self.progress.add_task(self.label, total=shards, rows=0)

    def advance(self, rows):
        self.rows += rows
        if self.task is not None:
            self.progress.update(self.task, rows=self.rows)

    def shard_finished(self, relpath, ok):
        if self.task is not None:
            self.progress.advance(self.task)


def _progress(quiet: bool, as_json: bool) -> StagedProgress:
    return StagedProgress(enabled=not quiet and not as_json and console.is_terminal)


@removals_app.command("publish")
def publish(
    run_dir: Path = typer.Argument(..., help="Output directory of a clean (or scan) run: its _safeset/ records."),
    list_path: Path = typer.Option(..., "--out", help="The removal list to write (.parquet)."),
    decoys: int = typer.Option(0, "--decoys", min=0, help="Mix in K neutral samples of the dataset per removal."),
    seed: Optional[str] = typer.Option(
        None, "--seed", help="Secret that makes the decoy draw reproducible; keep it private [default: random]."
    ),
    dataset_name: Optional[str] = NameOption,
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="Where the run's dataset is now (for decoys)."),
    exclude_review: bool = typer.Option(False, "--exclude-review", help="List only `remove` rows, not `review`."),
    workers: Optional[int] = WorkersOption,
    tmp_dir: Optional[Path] = TmpOption,
    as_json: bool = JsonOption,
    quiet: bool = QuietOption,
) -> None:
    """Turn a run's withheld samples into a shareable removal list (URL digests, image digests, keys)."""
    from safeset.removals.publish import publish_list

    try:
        with _progress(quiet, as_json) as progress:
            result = publish_list(run_dir, list_path, decoys=decoys, seed=seed, dataset_name=dataset_name,
                                  dataset=dataset, include_review=not exclude_review, workers=workers,
                                  tmp_dir=tmp_dir, progress=progress)
    except SafesetError as exc:
        fail(exc)
    summary = {"path": str(result.path), "metadata": result.metadata, "withheld_listed": result.real,
               "decoys_listed": result.decoys}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out.print(f"wrote {result.path}: {result.metadata['total']:,} samples "
              f"({result.real:,} withheld + {result.decoys:,} decoys)")
    if result.decoys:
        console.print("[yellow]note:[/] if you publish a cleaned copy too, apply this list to it first "
                      "(`safeset removals apply`), or comparing the two tells the decoys apart")


@removals_app.command("diff")
def diff(
    old: Path = typer.Argument(..., help="The old copy (any supported format)."),
    new: Path = typer.Argument(..., help="The cleaned release (any supported format)."),
    list_path: Path = typer.Option(..., "--out", help="The removal list to write (.parquet)."),
    dataset_name: Optional[str] = NameOption,
    old_format: Optional[str] = typer.Option(None, "--old-format", help="Format of OLD [default: detect]."),
    new_format: Optional[str] = typer.Option(None, "--new-format", help="Format of NEW [default: detect]."),
    old_url_column: Optional[str] = typer.Option(None, "--old-url-column", help="URL column of OLD."),
    new_url_column: Optional[str] = typer.Option(None, "--new-url-column", help="URL column of NEW."),
    old_key_column: Optional[str] = typer.Option(None, "--old-key-column", help="Key column of OLD."),
    workers: Optional[int] = WorkersOption,
    tmp_dir: Optional[Path] = TmpOption,
    as_json: bool = JsonOption,
    quiet: bool = QuietOption,
) -> None:
    """List the samples of OLD that NEW no longer has (by canonical URL digest)."""
    from safeset.datasets.base import ColumnOverrides
    from safeset.removals.diff import diff_list

    try:
        with _progress(quiet, as_json) as progress:
            result = diff_list(old, new, list_path, dataset_name=dataset_name, old_format=old_format,
                               new_format=new_format, old_columns=ColumnOverrides(url=old_url_column, key=old_key_column),
                               new_columns=ColumnOverrides(url=new_url_column), workers=workers, tmp_dir=tmp_dir,
                               progress=progress)
    except SafesetError as exc:
        fail(exc)
    summary = {"path": str(result.path), "metadata": result.metadata, "old_rows": result.old_rows,
               "new_rows": result.new_rows, "listed": result.listed, "old_rows_without_url": result.without_url}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    out.print(f"wrote {result.path}: {result.listed:,} of {result.old_rows:,} samples of OLD are not in NEW "
              f"({result.new_rows:,} rows)")
    if result.without_url:
        console.print(f"[yellow]warning:[/] {result.without_url:,} rows of OLD have no URL and could not be compared")


@removals_app.command("apply")
def apply(
    list_path: Path = typer.Argument(..., help="A removal list (from `safeset removals publish` or `diff`)."),
    dataset: Path = typer.Argument(..., help="The copy to clean: directory or file, any supported format."),
    out_dir: Path = typer.Option(..., "--out", help="Output directory (cleaned copy; records in OUT/_safeset/)."),
    match: Optional[str] = typer.Option(None, "--match", help="Match by url, image, key (comma-separated) [default: url,image]."),
    workers: Optional[int] = WorkersOption,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in OUT; done shards are kept."),
    fmt: Optional[str] = typer.Option(None, "--format", help="parquet | webdataset | jsonl | csv [default: detect]."),
    url_column: Optional[str] = typer.Option(None, "--url-column", help="URL column [default: URL/url]."),
    key_column: Optional[str] = typer.Option(None, "--key-column", help="Sample key column [default: key]."),
    batch_rows: Optional[int] = typer.Option(None, "--batch-rows", min=1, help="Rows per batch [default: per format]."),
    records_only: bool = typer.Option(
        False, "--records-only", help="Write the run records only (which rows the list names), no cleaned copy."
    ),
    tmp_dir: Optional[Path] = TmpOption,
    index_cache: Optional[Path] = typer.Option(
        None, "--index-cache", help="Keep the list's index here for the next apply of the same list file "
        "(default: STORE/cache/removal-lists).", show_default=False,
    ),
    no_index_cache: bool = typer.Option(
        False, "--no-index-cache", help="Index the list for this run only, in --tmp-dir."
    ),
    store: Optional[Path] = StoreOption,
    as_json: bool = JsonOption,
    quiet: bool = QuietOption,
) -> None:
    """Clean a copy of a dataset (re-keyed, re-ordered, a subset, any format) with a removal list."""
    from safeset.banks.store import default_store_root
    from safeset.datasets.base import ColumnOverrides
    from safeset.engine.memory import prefer_reuse_in_arrow
    from safeset.removals.apply import apply_list, parse_match
    from safeset.removals.indexcache import CACHE_SUBDIR

    prefer_reuse_in_arrow()
    if no_index_cache:
        index_cache = None
    elif index_cache is None:
        index_cache = default_store_root(store) / CACHE_SUBDIR
    try:
        with _progress(quiet, as_json) as progress:
            result = apply_list(list_path, dataset, out_dir, match=parse_match(match), workers=workers,
                                resume=resume, format=fmt, columns=ColumnOverrides(url=url_column, key=key_column),
                                batch_rows=batch_rows, tmp_dir=tmp_dir, records_only=records_only,
                                index_cache=index_cache, progress=progress)
    except SafesetError as exc:
        fail(exc)
    run = result.run
    if as_json:
        print(json.dumps(run, indent=2))
    else:
        _print_apply(run, result)
    raise typer.Exit(result.exit_code)


def _print_apply(run: dict, result) -> None:
    verb = "apply --records-only" if run["command"] == "removals-scan" else "apply"
    print_run_summary(
        run, result, f"safeset removals {verb}: {run['dataset']['path']}", lambda signal: f"the list's {signal} values"
    )
