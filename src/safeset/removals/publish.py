"""`removals publish`: turn a run's records into a shareable removal list.

The list names each withheld sample by its canonical-URL digest, image
digests where the run knew them, and key (never the URL itself). With
`decoys=K`, K neutral samples of the same dataset per real one are mixed in
(`decoys`), indistinguishable in the file, and all rows are put in content
order (`shuffle`) so position tells nothing either.

A run with failed shards or a broken conservation check is refused: its
records do not account for every row, so a list made from them could miss
removals.
"""

from __future__ import annotations

import json
import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.datasets.base import ColumnOverrides
from safeset.datasets.registry import discover
from safeset.errors import ConfigError, InputError
from safeset.jobs.records import REMOVED_GROUP_ROWS, with_removed_schema
from safeset.jobs.run import RECORDS_DIR, default_batch_rows
from safeset.jobs.shard_task import file_checksum
from safeset.removals.decoys import DecoyDraw, draw_decoys, pattern_of
from safeset.removals.listfile import COLUMNS, RemovalListWriter, list_metadata
from safeset.removals.progress import stage
from safeset.removals.shuffle import ContentShuffle

@dataclass
class PublishResult:
    path: Path
    metadata: dict
    real: int  # withheld samples listed
    decoys: int  # decoy samples mixed in


def parse_dataset_name(text: str | None) -> tuple[str | None, str | None]:
    """`NAME@VERSION` -> (NAME, VERSION); `NAME` -> (NAME, None)."""
    if text is None:
        return None, None
    name, at, version = text.rpartition("@")
    if not at:
        name, version = text, None
    if not name.strip() or (at and not version.strip()):
        raise ConfigError(f"--dataset-name takes NAME or NAME@VERSION, not {text!r}")
    return name.strip(), version.strip() if version else None


def read_run(run_dir: Path) -> dict:
    """run.json of a finished run whose records account for every row; else an error saying why not."""
    path = Path(run_dir) / RECORDS_DIR / "run.json"
    try:
        run = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{run_dir} holds no safeset run ({path} is missing)") from None
    except (OSError, ValueError) as exc:
        raise InputError(path, None, f"unreadable run record ({exc})") from None
    if run.get("failed_shards"):
        names = ", ".join(f["relpath"] for f in run["failed_shards"][:5])
        raise ConfigError(f"{run_dir}: the run has failed shards ({names}); their rows were never checked, so a "
                          "list made from it could miss removals. Finish the run with --resume first")
    if not run.get("conservation_ok", False):
        raise ConfigError(f"{run_dir}: the run's conservation check failed; its records cannot be trusted")
    return run


def _list_withheld(removed_path: Path, include_review: bool, shuffle: ContentShuffle):
    """Add the withheld rows to the list; returns their patterns' counts and withheld positions per shard."""
    positions: dict[str, list[np.ndarray]] = {}
    patterns: dict[int, int] = {}
    try:
        parquet = pq.ParquetFile(removed_path)
        for batch in parquet.iter_batches(batch_size=REMOVED_GROUP_ROWS):
            table = with_removed_schema(batch)
            sources = table.column("source").to_numpy(zero_copy_only=False)
            rows = table.column("position").to_numpy()
            for source in np.unique(sources).tolist():
                positions.setdefault(source, []).append(rows[sources == source])
            if not include_review:
                table = table.filter(pc.equal(table.column("action"), "remove"))
            values, counts = np.unique(pattern_of(table), return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist()):
                patterns[value] = patterns.get(value, 0) + count
            shuffle.add(table.select(list(COLUMNS)))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(removed_path, None, f"unreadable run record ({exc})") from None
    return patterns, {source: np.unique(np.concatenate(parts)) for source, parts in positions.items()}


def _dataset_shards(run: dict, dataset: Path | None):
    """The shards the run read, found again, and checked to be the same files."""
    recorded = run["dataset"]
    path = Path(dataset) if dataset is not None else Path(recorded["path"])
    if not path.exists():
        raise ConfigError(f"decoys are drawn from the run's dataset, and {path} does not exist; "
                          "pass --dataset where it is now")
    fmt, shards = discover(path, recorded["format"])
    by_relpath = {shard.relpath: shard for shard in shards}
    expected = {s["relpath"]: s for s in recorded["shards"]}
    missing = sorted(set(expected) - set(by_relpath))
    if missing:
        raise ConfigError(f"{path}: shard(s) {', '.join(missing[:5])} of the run are missing")
    for relpath, info in expected.items():
        if file_checksum(by_relpath[relpath].path) != info["xxh3_128"]:
            raise InputError(by_relpath[relpath].path, None, "differs from the file the run read "
                                                             "(checksum); decoys need the same dataset")
    return fmt, [by_relpath[relpath] for relpath in sorted(expected)]


def publish_list(run_dir, out_path, *, decoys: int = 0, seed: str | bytes | None = None,
                 dataset_name: str | None = None, dataset=None, include_review: bool = True,
                 workers: int | None = None, tmp_dir=None, progress=None) -> PublishResult:
    """Write the removal list of the run in `run_dir` to `out_path` (see the module docstring)."""
    if decoys < 0:
        raise ConfigError("--decoys must be 0 or more")
    run_dir, out_path = Path(run_dir), Path(out_path)
    run = read_run(run_dir)
    name, version = parse_dataset_name(dataset_name)
    seed_bytes = secrets.token_bytes(32) if seed is None else (seed.encode("utf-8") if isinstance(seed, str) else seed)
    removed_path = run_dir / RECORDS_DIR / "removed.parquet"
    if not removed_path.is_file():
        raise ConfigError(f"{run_dir}: the run records lack {removed_path.name}")
    with tempfile.TemporaryDirectory(prefix="safeset-publish-", dir=tmp_dir) as work:
        shuffle = ContentShuffle(seed_bytes, Path(work) / "shuffle")
        patterns, withheld = _list_withheld(removed_path, include_review, shuffle)
        real = shuffle.count
        if decoys and real:
            fmt, shards = _dataset_shards(run, dataset)
            rows = {s["relpath"]: s["input_rows"] for s in run["shards"]}
            draw = DecoyDraw(
                format=fmt.name, shards=shards, shard_rows=rows, withheld=withheld, real_patterns=patterns,
                factor=decoys, seed=seed_bytes, columns=ColumnOverrides(**run["dataset"].get("columns", {})),
                batch_rows=default_batch_rows(fmt.name),
            )
            for table in draw_decoys(draw, Path(work), workers, progress):
                shuffle.add(table)
        metadata = list_metadata(
            source_dataset=name or run["dataset"]["path"], source_version=version, total=shuffle.count,
            decoys=decoys if real else 0, kind="published",
        )
        stage(progress, "writing list", None, None)
        writer = RemovalListWriter(out_path, metadata)
        try:
            for batch in shuffle.tables():
                writer.write(batch)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    return PublishResult(path=out_path, metadata=metadata, real=real, decoys=shuffle.count - real)
