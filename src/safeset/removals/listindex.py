"""A removal list's values as sorted-digest indexes, one per signal type, built in parallel.

Each (signal type, chunk of the list's row groups) is one task that reads
that one column of those row groups, checks every value (bad hex is an
InputError naming the list and row) and spills it into buckets; then each
type's buckets are sorted into its index (see `sortedindex`). The entry id
of a value is its row in the list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from safeset.engine.local import LocalEngine
from safeset.errors import InputError
from safeset.jobs.run import Progress
from safeset.removals.listfile import READ_BATCH_ROWS, open_removal_list
from safeset.removals.progress import stage
from safeset.removals.sortedindex import DigestSpill, SpillInfo, finish_index
from safeset.removals.source import SIGNAL_COLUMNS, key_digests
from safeset.signals import kernels

CHUNK_ROWS = 1 << 22  # list rows per indexing task


def _list_values(column, signal_type: str, first_row: int, list_path: str):
    """(index keys, list row ids) of one list column's values; bad hex is an InputError."""
    column_name, size = SIGNAL_COLUMNS[signal_type]
    present = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    rows = np.arange(first_row, first_row + len(column), dtype=np.int64)
    if signal_type == "key":
        return key_digests(column.cast(pa.string()).filter(present)), rows[present]
    digests, valid = kernels.hex_decode_array(column, size)
    bad = np.flatnonzero(present & ~valid)
    if len(bad):
        value = str(column[int(bad[0])].as_py())
        raise InputError(list_path, f"row {first_row + int(bad[0])}",
                         f"{column_name} {value[:80]!r} is not {2 * size} hex characters")
    return digests[valid], rows[valid]


@dataclass(frozen=True)
class ListChunk:
    """Indexing task: one signal type's values in some row groups of the list."""

    list_path: str
    signal_type: str
    row_groups: tuple[int, ...]
    first_row: int
    directory: str
    name: str


def spill_list_chunk(chunk: ListChunk, context, report) -> SpillInfo:
    column_name, size = SIGNAL_COLUMNS[chunk.signal_type]
    spill = DigestSpill(chunk.directory, chunk.name, size)
    row = chunk.first_row
    try:
        with pq.ParquetFile(chunk.list_path) as parquet:
            for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=list(chunk.row_groups),
                                              columns=[column_name]):
                spill.add(*_list_values(batch.column(0), chunk.signal_type, row, chunk.list_path))
                row += batch.num_rows
                report(batch.num_rows)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(chunk.list_path, f"after row {row}", f"corrupt removal list ({exc})") from None
    return spill.close()


def _chunks(list_path: Path, parquet: pq.ParquetFile, signal_types, directory: Path) -> list[ListChunk]:
    """Consecutive row groups of about CHUNK_ROWS rows, for each signal type."""
    groups, first_rows, row, start = [], [], 0, 0
    current: list[int] = []
    for group in range(parquet.metadata.num_row_groups):
        if not current:
            start = row
        current.append(group)
        row += parquet.metadata.row_group(group).num_rows
        if row - start >= CHUNK_ROWS:
            groups.append(tuple(current))
            first_rows.append(start)
            current = []
    if current:
        groups.append(tuple(current))
        first_rows.append(start)
    return [ListChunk(str(list_path), t, g, first, str(directory), f"{t}.chunk-{i:05d}")
            for t in signal_types for i, (g, first) in enumerate(zip(groups, first_rows))]


def build_list_indexes(list_path: Path, signal_types: tuple[str, ...], directory: Path, workers: int | None = 1,
                       progress: Progress | None = None) -> tuple[dict, dict[str, str], dict[str, int]]:
    """Index the list's values of each signal type; returns (list metadata, stems, entries per type).

    Each (signal type, chunk of row groups) is read and spilled by its own
    task, reading that one column only; then each type's buckets are sorted
    into its index, in parallel too (see `sortedindex`).
    """
    metadata, parquet = open_removal_list(list_path)
    with parquet:
        chunks = _chunks(list_path, parquet, signal_types, directory)
    engine = LocalEngine(workers)
    stage(progress, "indexing list", len(chunks), metadata["total"] * len(signal_types))
    advance = progress.advance if progress is not None else (lambda n: None)
    spills: dict[str, list[SpillInfo]] = {t: [] for t in signal_types}
    for chunk, result in engine.map(_no_context, (), spill_list_chunk, chunks, advance):
        if isinstance(result, BaseException):
            raise result
        spills[chunk.signal_type].append(result)
        if progress is not None:
            progress.shard_finished(chunk.name, True)
    entries = {t: int(sum(s.counts.sum() for s in spills[t])) for t in signal_types}
    for signal_type in signal_types:
        if entries[signal_type]:
            finish_index(directory, signal_type, SIGNAL_COLUMNS[signal_type][1], spills[signal_type], workers)
    return metadata, {t: t for t, n in entries.items() if n}, entries


def _no_context() -> None:
    return None
