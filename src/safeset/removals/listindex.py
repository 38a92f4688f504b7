"""A removal list's values as slot indexes, one per signal type, built in parallel.

Each (signal type, chunk of the list's row groups) is one task that reads
that one column of those row groups, checks every value (bad hex is an
InputError naming the list and row) and spills it into ordered runs; then
each type's runs are sorted into its index (see `spillruns`, `slotindex`).
The entry id of a value is its row in the list.
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
from safeset.removals.spillruns import KeySpill, SpillInfo, plan_slot_index, remove_spill, run_plans
from safeset.removals.source import SIGNAL_COLUMNS, key_digests
from safeset.signals import kernels

CHUNK_ROWS = 1 << 20  # list rows per indexing task (a row group as safeset writes them)


def _list_values(column, signal_type: str, first_row: int, list_path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(index keys, which rows have a value: None for all) of one list column; bad hex is an InputError."""
    column_name, size = SIGNAL_COLUMNS[signal_type]
    present = None if column.null_count == 0 else column.is_valid().to_numpy(zero_copy_only=False)
    if signal_type == "key":
        return key_digests(column.cast(pa.string())), present
    digests, valid = kernels.hex_decode_array(column, size)
    if present is None and valid.all():
        return digests, None
    bad = np.flatnonzero(~valid if present is None else present & ~valid)
    if len(bad):
        value = str(column[int(bad[0])].as_py())
        raise InputError(list_path, f"row {first_row + int(bad[0])}",
                         f"{column_name} {value[:80]!r} is not {2 * size} hex characters")
    return digests, valid


@dataclass(frozen=True)
class ListChunk:
    """Indexing task: one signal type's values in some row groups of the list."""

    list_path: str
    signal_type: str
    row_groups: tuple[int, ...]
    first_row: int
    spill_path: str
    name: str


def spill_list_chunk(chunk: ListChunk, context, report) -> SpillInfo:
    column_name, size = SIGNAL_COLUMNS[chunk.signal_type]
    spill = KeySpill(chunk.spill_path, size)
    row = chunk.first_row
    try:
        with pq.ParquetFile(chunk.list_path) as parquet:
            for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, row_groups=list(chunk.row_groups),
                                              columns=[column_name]):
                spill.add(*_list_values(batch.column(0), chunk.signal_type, row, chunk.list_path), row)
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
    return [ListChunk(str(list_path), t, g, first, str(directory / f"{t}.chunk-{i:05d}.spill"), f"{t}.chunk-{i:05d}")
            for t in signal_types for i, (g, first) in enumerate(zip(groups, first_rows))]


def build_list_indexes(list_path: Path, signal_types: tuple[str, ...], directory: Path, workers: int | None = 1,
                       progress: Progress | None = None, spill_directory: Path | None = None,
                       ) -> tuple[dict, dict[str, int]]:
    """Index the list's values of each signal type; returns (list metadata, entries per type).

    Each (signal type, chunk of row groups) is read and spilled by its own
    task, reading that one column only; then each type's runs are sorted
    into its index `directory/<signal type>.*.npy`, in parallel too (see
    `spillruns`). Runs go to `spill_directory` (default: `directory`) and are
    removed as each index is finished. Types the list holds no values of get
    no index files.
    """
    metadata, parquet = open_removal_list(list_path)
    with parquet:
        chunks = _chunks(list_path, parquet, signal_types, spill_directory or directory)
    engine = LocalEngine(workers)
    stage(progress, "indexing list", len(chunks), metadata["total"] * len(signal_types))
    advance = progress.advance if progress is not None else (lambda n: None)
    spills: dict[str, list[SpillInfo]] = {t: [] for t in signal_types}
    try:
        for chunk, result in engine.map(_no_context, (), spill_list_chunk, chunks, advance):
            if isinstance(result, BaseException):
                raise result
            spills[chunk.signal_type].append(result)
            if progress is not None:
                progress.shard_finished(chunk.name, True)
        entries = {t: sum(s.records for s in spills[t]) for t in signal_types}
        plans = [plan_slot_index(directory, t, spills[t], metadata["total"], workers) for t in signal_types if entries[t]]
        stage(progress, "sorting list index", sum(len(plan.tasks) for plan in plans), sum(entries.values()))
        run_plans(plans, workers, progress)
    finally:
        for chunk in chunks:
            remove_spill(chunk.spill_path)
    return metadata, entries


def _no_context() -> None:
    return None
