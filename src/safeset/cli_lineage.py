"""`safeset lineage ...`: the dataset and model registry and taint tracing, on the command line.

Thin: parses, calls `safeset.lineage`, renders. Exit codes: 0 done (taint:
nothing tainted), 1 taint: something is tainted or unverified, 2 usage,
configuration or input error.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from safeset.cli_common import DbOption, JsonOption, StoreOption, console, fail, out
from safeset.errors import SafesetError

lineage_app = typer.Typer(
    help="Dataset and model lineage: register versions, trace which models saw removed samples.",
    no_args_is_help=True,
)
dataset_app = typer.Typer(help="Dataset versions: fingerprint and register, list.", no_args_is_help=True)
model_app = typer.Typer(help="Model versions: register with their datasets and base models, list.", no_args_is_help=True)
lineage_app.add_typer(dataset_app, name="dataset")
lineage_app.add_typer(model_app, name="model")



def _registry(store: Optional[Path], db: Optional[str]):
    from safeset.banks.store import default_store_root
    from safeset.lineage.registry import LineageRegistry

    return LineageRegistry.open(default_store_root(store), db)


def _split(values: Optional[List[str]]) -> list[str]:
    """Repeated options, each possibly comma-separated (names never hold commas)."""
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


class _FingerprintProgress:
    """Shards done and rows read, on stderr; off for --json, --quiet or a non-terminal."""

    def __init__(self, enabled: bool):
        self.rows = 0
        self.progress = Progress(
            TextColumn("[bold]fingerprinting"), BarColumn(), MofNCompleteColumn(),
            TextColumn("shards · {task.fields[rows]:,} rows"), TimeElapsedColumn(),
            console=console, disable=not enabled,
        )
        self.task = None

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def start(self, shards, rows):
        self.task = self.progress.add_task("fingerprinting", total=shards, rows=0)

    def advance(self, rows):
        self.rows += rows
        self.progress.update(self.task, rows=self.rows)

    def shard_finished(self, relpath, ok):
        self.progress.advance(self.task)


@dataset_app.command("add")
def dataset_add(
    ref: str = typer.Argument(..., metavar="NAME@VERSION", help="Dataset name and version, e.g. laion/relaion2B@2024-08."),
    path: Path = typer.Argument(..., help="The dataset: directory or file (parquet, webdataset tars, JSONL, CSV)."),
    fmt: Optional[str] = typer.Option(None, "--format", help="parquet | webdataset | jsonl | csv (default: detect)."),
    url_column: Optional[str] = typer.Option(None, "--url-column", help="URL column (default: URL/url)."),
    image_digest: str = typer.Option(
        "auto", "--image-digest",
        help="Image digest to record: auto (SHA-256 of image bytes or a sha256 column, else an md5 column) | sha256 | md5.",
    ),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: all cores)."),
    batch_rows: Optional[int] = typer.Option(None, "--batch-rows", min=1, help="Rows per batch; memory is bounded by this."),
    note: Optional[str] = typer.Option(None, "--note", help="Free text kept with the registration."),
    store: Optional[Path] = StoreOption,
    db: Optional[str] = DbOption,
    as_json: bool = JsonOption,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Fingerprint a dataset version (rows, shard checksums, digest membership) and register it."""
    from safeset.datasets.base import ColumnOverrides

    try:
        registry = _registry(store, db)
        with _FingerprintProgress(enabled=not quiet and not as_json and console.is_terminal) as progress:
            record = registry.add_dataset(
                ref, path, fmt=fmt, columns=ColumnOverrides(url=url_column), image_digest=image_digest,
                workers=workers, batch_rows=batch_rows, note=note, progress=progress,
            )
    except SafesetError as exc:
        fail(exc)
    data = record.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    out.print(f"dataset {data['name']}: {data['rows']:,} rows in {data['shards']:,} shard(s); "
              f"{data['membership_entries']:,} digests in {data['membership_bytes']:,} bytes "
              f"({data['bytes_per_row'] or 0:.2f} bytes/row)", highlight=False)
    if data["untraceable_rows"]:
        console.print(f"[yellow]warning:[/] {data['untraceable_rows']:,} rows have neither a URL nor an image digest: "
                      "taint can never find them", highlight=False)
    if data["unchecked_rows"]:
        console.print(f"[yellow]warning:[/] {data['unchecked_rows']:,} rows could not be fully read "
                      "(unreadable image or invalid digest): only their URL was recorded", highlight=False)
    if not data["image_kinds"]:
        console.print("[yellow]note:[/] no image digests found (no image bytes, sha256 or md5 column): "
                      "listed samples will be matched by URL only", highlight=False)


@dataset_app.command("list")
def dataset_list(store: Optional[Path] = StoreOption, db: Optional[str] = DbOption, as_json: bool = JsonOption) -> None:
    """List registered dataset versions."""
    try:
        rows = [d.to_dict() for d in _registry(store, db).datasets()]
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("dataset", "rows", "shards", "format", "digests", "bytes/row", "registered")
    for row in rows:
        table.add_row(row["name"], f"{row['rows']:,}", f"{row['shards']:,}", row["format"],
                      ", ".join(row["image_kinds"] + (["url_sha256"] if row["url_rows"] else [])) or "-",
                      f"{row['bytes_per_row'] or 0:.2f}", row["created_at"])
    out.print(table)


@model_app.command("add")
def model_add(
    ref: str = typer.Argument(..., metavar="NAME@VERSION", help="Model name and version."),
    trained_on: Optional[List[str]] = typer.Option(
        None, "--trained-on", metavar="DATASET@VERSION", help="Dataset it was trained on (repeatable, or comma-separated)."
    ),
    base: Optional[List[str]] = typer.Option(
        None, "--base", metavar="MODEL@VERSION", help="Model it was fine-tuned or merged from (repeatable)."
    ),
    card: Optional[Path] = typer.Option(
        None, "--card", help="Hugging Face model card (README.md): its 'datasets' and 'base_model' front matter."
    ),
    allow_unregistered: bool = typer.Option(
        False, "--allow-unregistered",
        help="Record references to unregistered datasets/models; taint reports the model as unverified until they are.",
    ),
    note: Optional[str] = typer.Option(None, "--note", help="Free text kept with the registration."),
    store: Optional[Path] = StoreOption,
    db: Optional[str] = DbOption,
    as_json: bool = JsonOption,
) -> None:
    """Register a model version with the datasets it was trained on and its base models."""
    try:
        result = _registry(store, db).add_model(
            ref, _split(trained_on), _split(base), card, allow_unregistered=allow_unregistered, note=note
        )
    except SafesetError as exc:
        fail(exc)
    data = result.to_dict()
    if as_json:
        print(json.dumps(data, indent=2))
        return
    out.print(f"model {data['name']}: trained on {', '.join(data['trained_on']) or '-'}; "
              f"base models {', '.join(data['base_models']) or '-'}", highlight=False)
    for item in data["resolved"]:
        console.print(f"note: {item['written']} resolved to the latest registered version, {item['name']}",
                      highlight=False)
    for item in data["unregistered"]:
        console.print(f"[yellow]warning:[/] {item['kind']} {item['name']} is not registered: "
                      "taint reports this model as unverified until it is", highlight=False)


@model_app.command("list")
def model_list(store: Optional[Path] = StoreOption, db: Optional[str] = DbOption, as_json: bool = JsonOption) -> None:
    """List registered model versions with their lineage."""
    try:
        rows = [m.to_dict() for m in _registry(store, db).models()]
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table("model", "trained on", "base models", "relation", "registered")
    for row in rows:
        table.add_row(row["name"], "\n".join(row["trained_on"]) or "-", "\n".join(row["base_models"]) or "-",
                      row["relation"] or "-", row["created_at"])
    out.print(table)


@lineage_app.command("taint")
def taint(
    sources: List[Path] = typer.Argument(
        ..., metavar="SOURCE...", help="Clean run output directories and removal lists (published without decoys)."
    ),
    as_json: bool = JsonOption,
    html: Optional[Path] = typer.Option(None, "--html", help="Also write a self-contained HTML page with the graph."),
    include_review: bool = typer.Option(
        False, "--include-review", help="Count samples withheld for review as listed (default: counted apart)."
    ),
    model: Optional[List[str]] = typer.Option(
        None, "--model", metavar="MODEL@VERSION", help="Decide the exit code for these models only (repeatable)."
    ),
    store: Optional[Path] = StoreOption,
    db: Optional[str] = DbOption,
) -> None:
    """Which datasets contain listed samples, and which models were trained on or derived from them.

    Exit 0 when nothing is tainted, 1 when something is (or a model's lineage cannot be checked), 2 on error.
    """
    from safeset.lineage.html import write_html
    from safeset.lineage.sources import load_listed_samples
    from safeset.lineage.taint import trace_taint

    try:
        registry = _registry(store, db)
        samples = load_listed_samples(list(sources), include_review=include_review)
        report = trace_taint(registry, samples, include_review=include_review, models=_split(model))
        if html is not None:
            write_html(report, html)
    except SafesetError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_report(report, html)
    raise typer.Exit(report.exit_code)


def _print_report(report, html: Optional[Path]) -> None:
    if not report.datasets:
        console.print("[yellow]warning:[/] no datasets are registered: there is nothing to find listed samples in "
                      "(safeset lineage dataset add)", highlight=False)
    for source in report.sources:
        if source.get("warning"):
            console.print(f"[yellow]warning:[/] {source['path']}: {source['warning']}", highlight=False)
    out.print(f"{report.listed_samples:,} listed samples"
              + (f"; {report.review_samples:,} withheld for review, not counted (--include-review counts them)"
                 if report.review_samples else ""), highlight=False)
    table = Table("dataset", "rows", "listed samples", "review samples")
    for d in report.datasets:
        style = "bold red" if d["listed_samples"] else None
        table.add_row(d["name"], f"{d['rows']:,}", f"{d['listed_samples']:,}", f"{d['review_samples']:,}", style=style)
    out.print(table)
    if report.tainted_models:
        table = Table("tainted model", "path", title="tainted models")
        for m in report.tainted_models:
            table.add_row(m["name"], " → ".join(m["path"]), style="red")
        out.print(table)
    if report.unverified_models:
        table = Table("unverified model", "reason", "path", title="unverified models (lineage cannot be checked)")
        for m in report.unverified_models:
            table.add_row(m["name"], m["reason"], " → ".join(m["path"]), style="yellow")
        out.print(table)
    out.print("[bold red]tainted[/]" if report.tainted else "[bold green]nothing tainted[/]")
    if html is not None:
        out.print(f"report: {html}", highlight=False)
