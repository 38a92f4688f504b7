"""Keys from a stream into a `SlotIndex`, in bounded memory and in parallel: an external bucket sort.

1. Spill. A `KeySpill` (one per list chunk, or per dataset shard) packs
   (key, row) records into a buffer of `memory_bytes`. When it is full, the
   buffer is ordered by the keys' first 16 bits (two 256-way radix passes,
   in C) and appended to the spill's file as a *run*; where each group
   starts in the run goes to a file beside it. A record is the key and a
   4-byte row number relative to the run's first row.
2. Sort. `build_slot_index` cuts the 65,536 groups into ranges of about
   `RANGE_RECORDS` records. A range is contiguous in every run, so a task
   finds it from two of the run's group starts and reads it with one
   positioned read per run, sorts it by slot and key (in C, a 16-bit group
   at a time, in cache) and writes it straight into its place in the index
   files: ranges own disjoint bytes of every file, so tasks never write the
   same bytes.

Each value is written twice (its run, then the index) and read once from
each; no phase holds more than a buffer or a range, however long the list:
the spill buffer (twice, while it is ordered) or about RANGE_RECORDS records
of a range (~80 bytes each while sorting). A run's group starts take 256 KiB
beside its 8 MiB of records. Only a list crafted to put more than
RANGE_RECORDS values under the same first 16 bits makes a range larger;
digests of content never do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from safeset import _removals
from safeset.engine.local import LocalEngine
from safeset.removals.slotindex import (MIN_SLOT_BITS, PARTS, SlotIndex, checked_keys, id_dtype_for, index_paths,
                                       slot_bits_for)

ID_BYTES = 4
GROUP_BITS = MIN_SLOT_BITS
GROUPS = 1 << GROUP_BITS
# Small buffers, many runs: each worker process touches less fresh memory, which
# measured a third faster on the benchmark machine than 32 MiB runs and 1M-record ranges.
DEFAULT_MEMORY_BYTES = 8 << 20
RANGE_RECORDS = 1 << 18
_MAX_RUN_ROWS = 1 << 32  # record ids are 4 bytes, relative to the run's first row
STARTS_DTYPE = np.dtype("<u4")  # a run holds fewer than 2**32 records


@dataclass(frozen=True)
class Run:
    """One ordered buffer of a spill: where its records start in the file, and whose rows they are."""

    first_record: int
    records: int
    base_row: int


@dataclass(frozen=True)
class SpillInfo:
    """A closed spill: its runs file, the group starts file beside it, and its runs in order."""

    path: str
    key_size: int
    runs: tuple[Run, ...]

    @property
    def starts_path(self) -> str:
        return starts_path(self.path)

    @property
    def records(self) -> int:
        return sum(run.records for run in self.runs)

    def group_starts(self) -> np.ndarray:
        """(runs, 65537) uint32, memory-mapped: where each group starts in each run (in records)."""
        if not self.runs:
            return np.zeros((0, GROUPS + 1), dtype=STARTS_DTYPE)
        return np.memmap(self.starts_path, dtype=STARTS_DTYPE, mode="r", shape=(len(self.runs), GROUPS + 1))

    def remove(self) -> None:
        remove_spill(self.path)


def starts_path(spill_path: str | Path) -> str:
    return f"{spill_path}.starts"


def remove_spill(spill_path: str | Path) -> None:
    """Remove a spill's files, if they are there (a failed build cleans up with it)."""
    for path in (Path(spill_path), Path(starts_path(spill_path))):
        path.unlink(missing_ok=True)


class KeySpill:
    """Phase 1: (key, row) pairs into ordered runs in one file; rows must not decrease between calls."""

    def __init__(self, path: str | Path, key_size: int, memory_bytes: int = DEFAULT_MEMORY_BYTES):
        if key_size < 16:
            raise ValueError("keys must be at least 16 bytes long")
        self.path = Path(path)
        self.key_size = key_size
        self.width = key_size + ID_BYTES
        self._capacity = max(1, min(memory_bytes // self.width, (1 << 32) - 1))
        self._buffer = np.empty((self._capacity, self.width), dtype=np.uint8)
        self._scratch: np.ndarray | None = None
        self._counts = np.zeros(GROUPS, dtype="<i8")
        self._filled = 0
        self._base_row: int | None = None
        self._runs: list[Run] = []
        self._written = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for path in (self.path, Path(starts_path(self.path))):
            path.write_bytes(b"")

    def add(self, keys: np.ndarray, present: np.ndarray | None, first_row: int) -> None:
        """Spill keys[i] as row first_row + i, for every i where `present` (None: all) is true."""
        keys, present = checked_keys(keys, self.key_size, present, "present")
        start = 0
        while start < len(keys):
            if self._base_row is None:
                self._base_row = first_row + start
            if first_row + start < self._base_row:
                raise ValueError("rows must not decrease from one call to the next")
            room = min(self._capacity - self._filled, _MAX_RUN_ROWS - (first_row + start - self._base_row))
            if room <= 0:
                self._flush()
                continue
            stop = min(len(keys), start + room)
            self._filled += _removals.pack(keys[start:stop], self.key_size,
                                           None if present is None else present[start:stop],
                                           first_row + start - self._base_row, self._buffer, self._filled)
            start = stop
            if self._filled == self._capacity:
                self._flush()

    def _flush(self) -> None:
        if self._filled:
            if self._scratch is None:
                self._scratch = np.empty_like(self._buffer)
            _removals.group(self._buffer, self._filled, self.width, self._scratch, self._counts)
            with open(self.path, "ab") as handle:
                handle.write(self._buffer[: self._filled].data)
            with open(starts_path(self.path), "ab") as handle:
                handle.write(np.r_[0, np.cumsum(self._counts)].astype(STARTS_DTYPE).data)
            self._runs.append(Run(self._written, self._filled, self._base_row))
            self._written += self._filled
        self._filled = 0
        self._base_row = None

    def close(self) -> SpillInfo:
        self._flush()
        self._buffer = self._scratch = None
        return SpillInfo(str(self.path), self.key_size, tuple(self._runs))


@dataclass(frozen=True)
class RunRef:
    """Where a task finds one run: its spill file, its row in the starts file, its first row."""

    path: str
    starts_path: str
    starts_row: int
    first_record: int
    base_row: int


@dataclass(frozen=True)
class RangeTask:
    """Phase 2 task: sort some ranges of groups of every run into the index files."""

    paths: dict  # part -> index file
    data_offsets: dict  # part -> where its data starts in its .npy file
    key_size: int
    id_size: int
    slot_bits: int
    runs: tuple[RunRef, ...]  # in row order
    ranges: tuple[tuple[int, int, int], ...]  # (first group, stop group, first position in the index)


def _read_into(fd: int, out: memoryview, offset: int) -> None:
    while out:
        got = os.preadv(fd, [out], offset)
        if got <= 0:
            raise OSError(f"spill file ended early at byte {offset}")
        out, offset = out[got:], offset + got


def _write_at(fd: int, array: np.ndarray, offset: int) -> None:
    view = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


class _RunReader:
    """The records of one range of groups in every run, read into one buffer."""

    def __init__(self, runs: tuple[RunRef, ...], width: int):
        self.runs = runs
        self.width = width
        self._files: dict[str, int] = {}
        self._starts = {path: np.memmap(path, dtype=STARTS_DTYPE, mode="r").reshape(-1, GROUPS + 1)
                        for path in {run.starts_path for run in runs}}

    def read(self, first_group: int, stop_group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(records, records per run, base row per run), runs without records left out."""
        pieces = []
        for run in self.runs:
            starts = self._starts[run.starts_path][run.starts_row]
            begin, end = int(starts[first_group]), int(starts[stop_group])
            if end > begin:
                pieces.append((run, begin, end - begin))
        records = np.empty(sum(count for _, _, count in pieces) * self.width, dtype=np.uint8)
        at = 0
        for run, begin, count in pieces:
            if run.path not in self._files:
                self._files[run.path] = os.open(run.path, os.O_RDONLY)
            size, offset = count * self.width, (run.first_record + begin) * self.width
            _read_into(self._files[run.path], memoryview(records)[at : at + size], offset)
            at += size
        counts = np.array([count for _, _, count in pieces], dtype="<i8")
        return records, counts, np.array([run.base_row for run, _, _ in pieces], dtype="<i8")

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._starts.clear()


def sort_ranges(task: RangeTask, context=None, report=lambda n: None) -> int:
    """Sort each range and write it into its slices of the index files.

    Plain positioned writes, not a memory map: the pages go to the page cache
    without being mapped into this process, so its memory stays one range.
    """
    slots_per_group = 1 << (task.slot_bits - GROUP_BITS)
    reader = _RunReader(task.runs, task.key_size + ID_BYTES)
    outputs = {part: os.open(task.paths[part], os.O_WRONLY) for part in PARTS}
    written = 0
    try:
        for first_group, stop_group, first_position in task.ranges:
            records, counts, bases = reader.read(first_group, stop_group)
            count = int(counts.sum())
            keys = np.empty((count, task.key_size), dtype=np.uint8)
            ids = np.empty(count * task.id_size, dtype=np.uint8)
            fingerprints = np.empty(count, dtype="<u4")
            slots = np.empty((stop_group - first_group) * slots_per_group, dtype="<u8")
            groups = np.empty(stop_group - first_group, dtype="<i8")
            first_slot = first_group * slots_per_group
            _removals.sort_group(records, task.key_size, counts, bases, task.slot_bits, first_slot, first_position,
                                 keys, ids, task.id_size, fingerprints, slots, groups)
            _write_at(outputs["keys"], keys, task.data_offsets["keys"] + first_position * task.key_size)
            _write_at(outputs["ids"], ids, task.data_offsets["ids"] + first_position * task.id_size)
            _write_at(outputs["fingerprints"], fingerprints, task.data_offsets["fingerprints"] + first_position * 4)
            _write_at(outputs["slots"], slots, task.data_offsets["slots"] + first_slot * 8)
            _write_at(outputs["groups"], groups, task.data_offsets["groups"] + first_group * 8)
            written += count
            report(count)
    finally:
        reader.close()
        for fd in outputs.values():
            os.close(fd)
    return written


def _create_npy(path: Path, dtype, shape: tuple) -> int:
    """An `.npy` file of this shape, its data not yet written (a sparse file); returns the data offset."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        offset = handle.tell()
        handle.truncate(offset + int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return offset


def _ranges(totals: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive groups of about RANGE_RECORDS records (a larger group stands alone)."""
    ranges, first, held = [], 0, 0
    for group, count in enumerate(totals.tolist()):
        if held and held + count > RANGE_RECORDS:
            ranges.append((first, group))
            first, held = group, 0
        held += count
    ranges.append((first, GROUPS))
    return ranges


def _group_totals(spills: list[SpillInfo]) -> np.ndarray:
    """Records of each group over all runs, one spill's starts at a time."""
    totals = np.zeros(GROUPS, dtype=np.int64)
    for spill in spills:
        starts = spill.group_starts()
        if len(starts):
            totals += np.diff(starts.astype(np.int64), axis=1).sum(axis=0)
    return totals


@dataclass(frozen=True)
class SlotIndexPlan:
    """Phase 2 of one index, ready to run: its files exist (sparse), its tasks fill them."""

    directory: Path
    stem: str
    entries: int
    tasks: tuple[RangeTask, ...]
    closing_offsets: dict  # part -> where its closing entry goes (the slots' 0, the groups' n)
    spills: tuple[SpillInfo, ...]

    def finish(self) -> SlotIndex:
        """After every task ran: write the closing entries, remove the spills, open the index."""
        paths = index_paths(self.directory, self.stem)
        for part, value in (("slots", 0), ("groups", self.entries)):
            with open(paths[part], "r+b") as handle:
                handle.seek(self.closing_offsets[part])
                handle.write(np.array([value], dtype="<i8").tobytes())
        for spill in self.spills:
            spill.remove()
        return SlotIndex.load(self.directory, self.stem)


def plan_slot_index(directory: str | Path, stem: str, spills: list[SpillInfo], list_rows: int,
                    workers: int | None = 1) -> SlotIndexPlan:
    """Create the index files of `stem` (see `slotindex`) and the tasks that fill them.

    `list_rows` bounds the row numbers (it sets the width of the ids). Equal
    keys come out by row. About four tasks per worker.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_size = spills[0].key_size if spills else 16
    runs = sorted((RunRef(spill.path, spill.starts_path, row, run.first_record, run.base_row)
                   for spill in spills for row, run in enumerate(spill.runs)), key=lambda run: run.base_row)
    totals = _group_totals(spills)
    entries = int(totals.sum())
    slot_bits = slot_bits_for(entries)
    id_dtype = id_dtype_for(list_rows)
    paths = index_paths(directory, stem)
    shapes = {"keys": (np.uint8, (entries, key_size)), "ids": (id_dtype, (entries,)),
              "fingerprints": (np.dtype("<u4"), (entries,)), "groups": (np.dtype("<i8"), (GROUPS + 1,)),
              "slots": (np.dtype("<u8"), ((1 << slot_bits) + 1,))}
    data_offsets = {part: _create_npy(paths[part], *shapes[part]) for part in shapes}
    positions = np.r_[0, np.cumsum(totals)]
    ranges = [(first, stop, int(positions[first])) for first, stop in _ranges(totals)]
    per_task = max(1, len(ranges) // (LocalEngine(workers).workers * 4))
    tasks = tuple(RangeTask({part: str(path) for part, path in paths.items()}, data_offsets, key_size,
                            id_dtype.itemsize, slot_bits, tuple(runs), tuple(ranges[i : i + per_task]))
                  for i in range(0, len(ranges), per_task))
    closing = {"slots": data_offsets["slots"] + (1 << slot_bits) * 8, "groups": data_offsets["groups"] + GROUPS * 8}
    return SlotIndexPlan(directory, stem, entries, tasks, closing, tuple(spills))


def run_plans(plans: list[SlotIndexPlan], workers: int | None = 1, progress=None) -> list[SlotIndex]:
    """Phase 2 of several indexes on one pool of workers; returns the indexes, opened."""
    advance = progress.advance if progress is not None else (lambda n: None)
    tasks = [task for plan in plans for task in plan.tasks]
    for task, result in LocalEngine(workers).map(_no_context, (), sort_ranges, tasks, advance):
        if isinstance(result, BaseException):
            raise result
        if progress is not None:
            progress.shard_finished(task.paths["keys"], True)
    return [plan.finish() for plan in plans]


def build_slot_index(directory: str | Path, stem: str, spills: list[SpillInfo], list_rows: int,
                     workers: int | None = 1) -> SlotIndex:
    """Phase 2 of one index: plan it, run it, open it (the spills' files are removed)."""
    return run_plans([plan_slot_index(directory, stem, spills, list_rows, workers)], workers)[0]


def _no_context() -> None:
    return None


class SlotIndexWriter:
    """One spill and its index, in one process: add keys, then `finish` (for tests and small jobs)."""

    def __init__(self, directory: str | Path, stem: str, key_size: int, memory_bytes: int = DEFAULT_MEMORY_BYTES):
        self.directory = Path(directory)
        self.stem = stem
        self._spill = KeySpill(self.directory / f"{stem}.spill", key_size, memory_bytes)
        self._rows = 0

    def add(self, keys: np.ndarray, present: np.ndarray | None = None) -> None:
        """Keys of the next rows (row numbers count on from the previous call)."""
        self._spill.add(keys, present, self._rows)
        self._rows += len(keys)

    def finish(self, workers: int | None = 1) -> SlotIndex:
        return build_slot_index(self.directory, self.stem, [self._spill.close()], self._rows, workers)
