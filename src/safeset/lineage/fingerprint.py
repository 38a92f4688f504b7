"""A dataset version's fingerprint: row count, shard checksums, and its digests' membership.

The shards are read with the same readers and column detection as `scan`,
and every row's digests are computed by the same signal code, so a digest
recorded by a clean run (`removed.parquet`) or put on a removal list is the
digest found here:

- URL: SHA-256 of the canonical URL (`url_sha256` in run records);
- image: SHA-256 of the image bytes (webdataset) or of a precomputed `sha256`
  column, else a precomputed `md5` column (`--image-digest` picks one).

One image digest per row keeps the structure within 8 bytes per row; a list
that only carries the other kind still matches by URL.

Shards are read in parallel (one task per shard, on the local engine); each
task streams its keys to a file, so memory is bounded by a batch. Any shard
that cannot be read stops the registration: a fingerprint missing a shard
would later answer "not contained" for rows it never saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from safeset.datasets.base import ColumnOverrides, ReadOptions, Shard
from safeset.datasets.registry import FORMATS, discover
from safeset.datasets.webdataset import sibling_paths
from safeset.engine.local import LocalEngine
from safeset.errors import InputError, SafesetError
from safeset.jobs.run import NoProgress, Progress, default_batch_rows
from safeset.jobs.shard_task import file_checksum
from safeset.lineage.membership import MembershipBuilder, membership_keys
from safeset.signals.rows import RowSignals

IMAGE_DIGEST_CHOICES = ("auto", "sha256", "md5")
_NEEDED_COLUMNS = frozenset({"url", "md5", "sha256"})


@dataclass(frozen=True)
class ShardFingerprintTask:
    shard: Shard
    format: str
    index: int
    options: ReadOptions
    image_digest: str
    salt: int
    keys_path: Path


def _image_algorithm(choice: str, batch, columns) -> str | None:
    """Which image digest this batch contributes, or None when it has no image signal."""
    if choice != "auto":
        return choice
    if batch.images is not None or columns.sha256 is not None:
        return "sha256"
    if columns.md5 is not None:
        return "md5"
    return None


def shard_files(shard: Shard) -> list[Path]:
    """The files that make up a shard: the file itself, plus img2dataset companions of a tar."""
    files = [shard.path]
    if shard.format == "webdataset":
        files += [p for p in sibling_paths(shard.path) if p.is_file()]
    return files


def _no_context() -> None:
    return None


def fingerprint_shard(task: ShardFingerprintTask, context, report) -> dict:
    """Stream one shard: write its digest keys to `task.keys_path`, return its counts and checksums."""
    shard = task.shard
    reader = FORMATS[task.format].open(shard, task.options)
    counts = {"rows": 0, "url_rows": 0, "image_rows": 0, "untraceable_rows": 0, "unchecked_rows": 0}
    kind_counts = {"url_sha256": 0, "image_sha256": 0, "image_md5": 0}
    image_kinds: set[str] = set()
    try:
        with open(task.keys_path, "wb") as keys_out:
            for batch in reader.batches():
                signals = RowSignals(batch, reader.columns)
                traceable = np.zeros(batch.num_rows, dtype=bool)
                if signals.url is not None:
                    digests, valid = signals.url_digest("sha256", "canonical")
                    keys_out.write(membership_keys("url_sha256", digests[valid], task.salt).tobytes())
                    counts["url_rows"] += int(valid.sum())
                    kind_counts["url_sha256"] += int(valid.sum())
                    traceable |= valid
                algorithm = _image_algorithm(task.image_digest, batch, reader.columns)
                image = signals.image_digest(algorithm) if algorithm else None
                if image is not None:
                    digests, valid = image
                    kind = f"image_{algorithm}"
                    keys_out.write(membership_keys(kind, digests[valid], task.salt).tobytes())
                    counts["image_rows"] += int(valid.sum())
                    kind_counts[kind] += int(valid.sum())
                    traceable |= valid
                    if valid.any():
                        image_kinds.add(kind)
                counts["untraceable_rows"] += int((~traceable).sum())
                counts["unchecked_rows"] += len({row for row, _ in signals.problems})
                counts["rows"] += batch.num_rows
                report(batch.num_rows)
    finally:
        reader.close()
    files = [
        {"path": path.relative_to(shard.root).as_posix(), "xxh3_128": file_checksum(path), "bytes": path.stat().st_size}
        for path in shard_files(shard)
    ]
    return {
        "relpath": shard.relpath,
        **counts,
        "image_kinds": sorted(image_kinds),
        "digests_by_kind": kind_counts,
        "files": files,
        "keys_path": str(task.keys_path),
    }


def shard_digest(shards: list[dict]) -> str:
    """SHA-256 over every file's path, XXH3-128 and size, in path order: the dataset's content identity."""
    lines = sorted(f"{f['path']}\t{f['xxh3_128']}\t{f['bytes']}\n" for s in shards for f in s["files"])
    return hashlib.sha256("".join(lines).encode("utf-8")).hexdigest()


@dataclass
class DatasetFingerprint:
    format: str
    rows: int
    url_rows: int
    image_rows: int
    untraceable_rows: int
    unchecked_rows: int
    image_kinds: list[str]
    shard_digest: str
    shards: list[dict]
    membership: dict

    def summary(self) -> dict:
        return {
            "format": self.format,
            "rows": self.rows,
            "shards": len(self.shards),
            "shard_digest": self.shard_digest,
            "url_rows": self.url_rows,
            "image_rows": self.image_rows,
            "untraceable_rows": self.untraceable_rows,
            "unchecked_rows": self.unchecked_rows,
            "image_kinds": self.image_kinds,
            "membership_entries": self.membership["entries"],
            "membership_bytes": self.membership["bytes"],
            "bytes_per_row": round(self.membership["bytes"] / self.rows, 3) if self.rows else None,
            "false_positive_rate_bound": self.membership["false_positive_rate_bound"],
        }


def fingerprint_dataset(
    path: Path,
    out_dir: Path,
    work_dir: Path,
    salt: int,
    fmt: str | None = None,
    columns: ColumnOverrides | None = None,
    image_digest: str = "auto",
    workers: int | None = None,
    batch_rows: int | None = None,
    progress: Progress | None = None,
    memory_keys: int = 1 << 24,
) -> DatasetFingerprint:
    """Read every shard of the dataset at `path`; write the membership structure into `out_dir`."""
    if image_digest not in IMAGE_DIGEST_CHOICES:
        raise SafesetError(f"--image-digest must be one of {', '.join(IMAGE_DIGEST_CHOICES)}, not {image_digest!r}")
    progress = progress or NoProgress()
    dataset_format, shards = discover(Path(path), fmt)
    options = ReadOptions(
        columns=columns or ColumnOverrides(),
        all_columns=False,
        needed=_NEEDED_COLUMNS,
        batch_rows=batch_rows or default_batch_rows(dataset_format.name),
        align_batches=batch_rows is None,
    )
    keys_dir = Path(work_dir) / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    tasks = [
        ShardFingerprintTask(shard, dataset_format.name, i, options, image_digest, salt, keys_dir / f"{i:07d}.u64")
        for i, shard in enumerate(shards)
    ]
    progress.start(len(tasks), None)
    results: dict[int, dict] = {}
    for task, result in LocalEngine(workers).map(_no_context, (), fingerprint_shard, tasks, progress.advance):
        if isinstance(result, BaseException):
            _raise_shard_error(task.shard, result)
        results[task.index] = result
        progress.shard_finished(task.shard.relpath, True)
    builder = MembershipBuilder(Path(work_dir) / "spill", salt, memory_keys=memory_keys)
    records = [results[i] for i in range(len(tasks))]
    for record in records:
        keys_path = Path(record.pop("keys_path"))
        builder.add_file(keys_path, record["digests_by_kind"])
        keys_path.unlink()
    membership = builder.write(out_dir)
    return DatasetFingerprint(
        format=dataset_format.name,
        rows=sum(r["rows"] for r in records),
        url_rows=sum(r["url_rows"] for r in records),
        image_rows=sum(r["image_rows"] for r in records),
        untraceable_rows=sum(r["untraceable_rows"] for r in records),
        unchecked_rows=sum(r["unchecked_rows"] for r in records),
        image_kinds=sorted({k for r in records for k in r["image_kinds"]}),
        shard_digest=shard_digest(records),
        shards=records,
        membership=membership,
    )


def _raise_shard_error(shard: Shard, error: BaseException) -> None:
    if isinstance(error, SafesetError):
        raise error
    if isinstance(error, OSError):
        raise InputError(shard.path, None, f"cannot be read ({error})") from error
    raise error
