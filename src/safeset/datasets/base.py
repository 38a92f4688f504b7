"""The contract every dataset format implements.

A dataset is a directory (or a single file) of shards. A shard (one parquet
file, one tar, one JSONL/CSV file) is the unit of work, of parallelism and of
resumption. A reader streams a shard as `Batch`es of a few thousand rows; a
writer receives each batch back with a keep-mask and writes the kept rows to a
temporary name, renamed into place by `commit()`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Protocol

import numpy as np
import pyarrow as pa

from safeset.errors import ConfigError

DEFAULT_BATCH_ROWS = 8192
# Image members larger than this are not read; their sample is marked unchecked.
DEFAULT_MAX_MEMBER_BYTES = 64 * 1024 * 1024
# JSONL lines longer than this are skipped unread (never held whole); their row is unchecked.
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Shard:
    """One file of a dataset; `relpath` (posix, relative to `root`) is its identity."""

    root: Path
    relpath: str
    format: str

    @property
    def path(self) -> Path:
        return self.root / self.relpath


@dataclass(frozen=True)
class ColumnOverrides:
    """Column names given by the user (`--url-column` ...); None = auto-detect."""

    url: str | None = None
    caption: str | None = None
    key: str | None = None


@dataclass(frozen=True)
class Columns:
    """Physical column names resolved for one shard (None when absent).

    Auto-detection is case-insensitive: url: URL/url; caption: TEXT/caption/text;
    key: key; digests: md5/sha1/sha256.
    """

    url: str | None = None
    caption: str | None = None
    key: str | None = None
    md5: str | None = None
    sha1: str | None = None
    sha256: str | None = None


class Batch:
    """A slice of one shard, in shard order.

    table      the shard's own columns for these rows (all of them when the
               reader was opened with all_columns=True, else at least the
               resolved `Columns` the job needs plus any `extra_columns`).
    keys       sample identity: the dataset's key, else "<relpath>#<position>".
               Readers may pass a function `f(rows)` instead of an array
               (rows: int indices, or None for all): keys are then built
               only for the rows someone asks about (a scan needs them for
               withheld rows only, a handful per million).
    positions  row index inside the shard (0-based, int64).
    images     webdataset only: image bytes per row (None where the sample
               has no image member).
    errors     per-row reason the row could not be fully read (unreadable or
               oversized member, malformed JSON line, ...), else None. Such
               rows are "unchecked" and the policy decides (default review).
    """

    def __init__(
        self,
        table: pa.RecordBatch,
        keys: pa.Array | Callable[[np.ndarray | None], pa.Array],
        positions: np.ndarray,
        images: list[bytes | None] | None = None,
        errors: list[str | None] | None = None,
    ):
        self.table = table
        self._keys = keys
        self.positions = positions
        self.images = images
        self.errors = errors

    @property
    def keys(self) -> pa.Array:
        if callable(self._keys):
            self._keys = self._keys(None)
        return self._keys

    def keys_at(self, rows: np.ndarray) -> list[str]:
        """Keys of some rows, without building the others."""
        keys = self._keys(rows) if callable(self._keys) else self._keys.take(pa.array(rows, pa.int64()))
        return keys.to_pylist()

    @property
    def num_rows(self) -> int:
        return len(self.positions)


@dataclass(frozen=True)
class ReadOptions:
    columns: ColumnOverrides = field(default_factory=ColumnOverrides)
    all_columns: bool = True
    extra_columns: tuple[str, ...] = ()  # e.g. score columns a policy needs
    # Logical columns (url, caption, key, md5, sha1, sha256) a job reads when
    # all_columns is False; None = every one the shard has.
    needed: frozenset[str] | None = None
    batch_rows: int = DEFAULT_BATCH_ROWS
    # Readers may round batch_rows to their natural unit (a parquet row group
    # of at most 4x batch_rows), which reads faster; jobs allow it unless the
    # user set a batch size.
    align_batches: bool = False
    max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES

    def __post_init__(self) -> None:
        # A zero batch size would make readers loop forever; say so up front.
        if self.batch_rows < 1:
            raise ConfigError(f"batch size must be at least 1 row, not {self.batch_rows}")
        if self.max_member_bytes < 0:
            raise ConfigError(f"member size limit must not be negative, not {self.max_member_bytes}")


class ShardReader(Protocol):
    shard: Shard
    columns: Columns
    schema: pa.Schema  # schema of the shard's own columns

    def batches(self) -> Iterator[Batch]: ...

    def close(self) -> None: ...


class ShardWriter(Protocol):
    """Writes the kept rows of one shard to `out_root / shard.relpath` (and siblings)."""

    def write(self, batch: Batch, keep: np.ndarray) -> None: ...

    def commit(self) -> list[Path]:
        """Rename temporaries into place; returns the final paths."""
        ...

    def abort(self) -> None:
        """Remove temporaries; leaves no partial file behind."""
        ...


class DatasetFormat(Protocol):
    name: str  # "parquet" | "webdataset" | "jsonl" | "csv"

    def discover(self, root: Path) -> list[Shard]:
        """All shards under `root`, sorted by relpath."""
        ...

    def open(self, shard: Shard, options: ReadOptions) -> ShardReader: ...

    def open_writer(self, shard: Shard, reader: ShardReader, out_root: Path) -> ShardWriter: ...
