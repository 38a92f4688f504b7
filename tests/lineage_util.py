"""Helpers for lineage tests: tiny benign datasets and removal lists, written by hand."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from safeset.removals.listfile import RemovalListWriter, list_metadata
from safeset.signals.url import canonical_url


def example_urls(prefix: str, count: int) -> list[str]:
    return [f"https://example.com/{prefix}/{i}.jpg" for i in range(count)]


def fake_md5(label: str) -> str:
    """A stand-in image digest (benign: the MD5 of a label, no image involved)."""
    return hashlib.md5(label.encode()).hexdigest()


def url_sha256(url: str) -> str:
    return hashlib.sha256(canonical_url(url).encode()).hexdigest()


def write_laion(directory: Path, urls: list[str], md5s: list[str | None] | None = None, shards: int = 2) -> Path:
    """A LAION-style parquet dataset (URL, TEXT, md5) split into `shards` files."""
    directory.mkdir(parents=True, exist_ok=True)
    md5s = md5s if md5s is not None else [fake_md5(u) for u in urls]
    per_shard = -(-len(urls) // shards)
    for shard in range(shards):
        part = slice(shard * per_shard, (shard + 1) * per_shard)
        table = pa.table({
            "URL": pa.array(urls[part], pa.string()),
            "TEXT": pa.array([f"a placeholder caption {i}" for i in range(len(urls[part]))], pa.string()),
            "md5": pa.array(md5s[part], pa.string()),
        })
        pq.write_table(table, directory / f"part-{shard:05d}.parquet")
    return directory


def write_removal_list(path: Path, rows: list[dict], decoys: int = 0) -> Path:
    """A removal list in the removals module's format; rows: dicts of url_sha256/image_sha256/image_md5/key."""
    columns = ("url_sha256", "image_sha256", "image_md5", "key")
    table = pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns})
    writer = RemovalListWriter(path, list_metadata(source_dataset="test/data", source_version="1",
                                                   total=len(rows), decoys=decoys, kind="published"))
    writer.write(table)
    writer.commit()
    return path


def write_run_records(out: Path, rows: list[dict]) -> Path:
    """A run's `_safeset/removed.parquet` with the given url_sha256/image_md5/action rows."""
    records = out / "_safeset"
    records.mkdir(parents=True, exist_ok=True)
    columns = ("key", "url_sha256", "image_md5", "image_sha256", "action")
    table = pa.table({c: pa.array([r.get(c) for r in rows], pa.string()) for c in columns})
    pq.write_table(table, records / "removed.parquet")
    return out


def run_cli(*args, check: int | None = 0):
    """Run `safeset ARGS...` in this process (no interpreter start-up): for the many setup steps of a test."""
    from typer.testing import CliRunner

    from safeset.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    if check is not None:
        assert result.exit_code == check, (
            f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}")
    return result
