"""Sorted digests built from a stream, in bounded memory and in parallel: the files of a `DigestIndex`.

`DigestIndex.build` sorts all keys in memory, which is right for a bank but
not for a removal list of 100M entries. Here the work is an external bucket
sort in two phases, each spread over worker processes:

1. Spill: any number of `DigestSpill`s (one per list chunk, or per dataset
   shard) take (key, entry id) pairs batch by batch, hold up to
   `memory_bytes`, and append them to 256 bucket files of their own by the
   key's first byte. Digests are uniform, so buckets are even.
2. Write: `finish_index` sizes the index files from the spills' bucket
   counts, then sorts the buckets, a group per task, and writes each straight
   into its place in the `.npy` files (sorted keys, 8-byte prefixes, entry
   ids, bitmap prefilter: the layout `DigestIndex.load` memory-maps). Buckets
   own disjoint byte ranges of every file, bitmap words included (a bucket
   is the first 8 bits of a prefix, a bitmap word at most its first 58), so
   tasks never write the same bytes.

Peak memory per process is the spill buffer, or one bucket (about total/256).
Keys with equal prefixes keep the order they were spilled in, which is all
the index's lookup relies on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from safeset.banks.digest_index import DigestIndex, bitmap_bits_log2, key_prefixes
from safeset.engine.local import LocalEngine

BUCKET_BITS = 8
BUCKETS = 1 << BUCKET_BITS
DEFAULT_MEMORY_BYTES = 64 << 20
_PARTS = ("keys", "prefix", "ids", "bitmap")


@dataclass(frozen=True)
class SpillInfo:
    """Where a spill's bucket files are and how many pairs each holds."""

    directory: str
    name: str
    counts: np.ndarray  # (256,) int64

    def bucket_path(self, bucket: int) -> Path:
        return bucket_path(Path(self.directory), self.name, bucket)


def bucket_path(directory: Path, name: str, bucket: int) -> Path:
    return directory / f"{name}.bucket-{bucket:03d}.bin"


class DigestSpill:
    """Phase 1: (key, entry id) pairs into this spill's bucket files.

    A pair is one row of key_size + 8 bytes (the key, then the id's
    little-endian bytes), so buckets and sorts move plain byte rows.
    """

    def __init__(self, directory: str | Path, name: str, key_size: int, memory_bytes: int = DEFAULT_MEMORY_BYTES):
        self.directory = Path(directory)
        self.name = name
        self.key_size = key_size
        self.width = key_size + 8
        self.memory_bytes = memory_bytes
        self.counts = np.zeros(BUCKETS, dtype=np.int64)
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self.directory.mkdir(parents=True, exist_ok=True)

    @property
    def count(self) -> int:
        return int(self.counts.sum()) + sum(len(rows) for rows in self._buffer)

    def add(self, keys: np.ndarray, entry_ids: np.ndarray) -> None:
        keys = np.asarray(keys, dtype=np.uint8)
        if keys.ndim != 2 or keys.shape[1] != self.key_size:
            raise ValueError(f"keys must have shape (n, {self.key_size}), got {keys.shape}")
        if len(entry_ids) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(entry_ids)} entry ids")
        if not len(keys):
            return
        rows = np.empty((len(keys), self.width), dtype=np.uint8)
        rows[:, : self.key_size] = keys
        rows[:, self.key_size :] = np.ascontiguousarray(entry_ids, dtype="<i8").view(np.uint8).reshape(-1, 8)
        self._buffer.append(rows)
        self._buffered += rows.nbytes
        if self._buffered >= self.memory_bytes:
            self._spill()

    def _spill(self) -> None:
        if not self._buffer:
            return
        rows = np.concatenate(self._buffer) if len(self._buffer) > 1 else self._buffer[0]
        self._buffer, self._buffered = [], 0
        buckets = rows[:, 0] >> (8 - BUCKET_BITS)
        order = np.argsort(buckets, kind="stable")  # a radix sort, for bytes
        rows = rows.take(order, axis=0)
        counts = np.bincount(buckets, minlength=BUCKETS)
        bounds = np.r_[0, np.cumsum(counts)]
        for bucket in np.flatnonzero(counts).tolist():
            with open(bucket_path(self.directory, self.name, bucket), "ab") as handle:
                handle.write(rows[bounds[bucket] : bounds[bucket + 1]].data)
        self.counts += counts

    def close(self) -> SpillInfo:
        self._spill()
        return SpillInfo(str(self.directory), self.name, self.counts.copy())


def _index_paths(directory: Path, stem: str) -> dict[str, Path]:
    return {part: directory / f"{stem}.{part}.npy" for part in _PARTS}


def _create_npy(path: Path, dtype, shape: tuple) -> int:
    """An `.npy` file of this shape, its data not yet written (a sparse file); returns the data offset."""
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False, "shape": shape}
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        offset = handle.tell()
        handle.truncate(offset + int(np.prod(shape)) * np.dtype(dtype).itemsize)
    return offset


def _bitmap_words(sorted_prefixes: np.ndarray, bits_log2: int, first_word: int, words: int) -> np.ndarray:
    """Words [first_word, first_word + words) of the index's bitmap, from the prefixes that fall in them."""
    out = np.zeros(words, dtype=np.uint64)
    slots = sorted_prefixes >> np.uint64(64 - bits_log2)
    bits = np.left_shift(np.uint64(1), slots & np.uint64(63))
    word = (slots >> np.uint64(6)).astype(np.int64) - first_word
    starts = np.flatnonzero(np.r_[True, word[1:] != word[:-1]])
    out[word[starts]] = np.bitwise_or.reduceat(bits, starts)
    return out


@dataclass(frozen=True)
class BucketGroup:
    """Phase 2 task: sort buckets [first, stop) of all spills into the index files."""

    directory: str
    stem: str
    key_size: int
    spills: tuple[SpillInfo, ...]
    first: int
    stop: int
    offsets: np.ndarray  # (257,) where each bucket starts in the index
    bits_log2: int
    data_offsets: dict  # part -> where its data starts in its .npy file


def _no_context() -> None:
    return None


def _write_at(fd: int, array: np.ndarray, offset: int) -> None:
    view = memoryview(np.ascontiguousarray(array)).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def write_bucket_group(group: BucketGroup, context=None, report=lambda n: None) -> int:
    """Sort each bucket and write it into its slices of the index files.

    Plain positioned writes, not a memory map: the pages go to the page
    cache without being mapped into this process, so its memory stays one
    bucket however large the index.
    """
    paths = _index_paths(Path(group.directory), group.stem)
    width = group.key_size + 8
    words_per_bucket = 1 << (group.bits_log2 - 6 - BUCKET_BITS)
    fds = {part: os.open(paths[part], os.O_WRONLY) for part in _PARTS}
    written = 0
    try:
        for bucket in range(group.first, group.stop):
            pieces = []
            for spill in group.spills:
                if spill.counts[bucket]:
                    path = spill.bucket_path(bucket)
                    pieces.append(np.fromfile(path, dtype=np.uint8).reshape(-1, width))
                    path.unlink()
            if not pieces:
                continue
            rows = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
            prefixes = key_prefixes(np.ascontiguousarray(rows[:, :8]))
            order = np.argsort(prefixes, kind="stable")
            rows, prefixes = rows.take(order, axis=0), prefixes[order]
            start, stop = int(group.offsets[bucket]), int(group.offsets[bucket + 1])
            assert stop - start == len(rows), f"bucket {bucket}: {len(rows)} rows for {stop - start} places"
            at = group.data_offsets
            _write_at(fds["keys"], rows[:, : group.key_size], at["keys"] + start * group.key_size)
            _write_at(fds["prefix"], prefixes, at["prefix"] + start * 8)
            _write_at(fds["ids"], rows[:, group.key_size :], at["ids"] + start * 8)
            first_word = bucket * words_per_bucket
            words = _bitmap_words(prefixes, group.bits_log2, first_word, words_per_bucket)
            _write_at(fds["bitmap"], words, at["bitmap"] + first_word * 8)
            written += len(rows)
            report(len(rows))
    finally:
        for fd in fds.values():
            os.close(fd)
    return written


def finish_index(directory: str | Path, stem: str, key_size: int, spills: list[SpillInfo],
                 workers: int | None = 1, progress=None) -> DigestIndex:
    """Phase 2: write `<stem>.keys.npy` ... from the spills' buckets, then open the index memory-mapped."""
    directory = Path(directory)
    counts = np.sum([s.counts for s in spills], axis=0) if spills else np.zeros(BUCKETS, np.int64)
    total = int(counts.sum())
    bits_log2 = bitmap_bits_log2(total)
    paths = _index_paths(directory, stem)
    shapes = {"keys": (np.uint8, (total, key_size)), "prefix": (np.uint64, (total,)), "ids": (np.int64, (total,)),
              "bitmap": (np.uint64, ((1 << bits_log2) // 64,))}
    data_offsets = {part: _create_npy(paths[part], *shapes[part]) for part in _PARTS}
    engine = LocalEngine(workers)
    tasks_wanted = max(1, min(BUCKETS, engine.workers * 4))
    edges = np.linspace(0, BUCKETS, tasks_wanted + 1).astype(int)
    offsets = np.r_[0, np.cumsum(counts)]
    groups = [BucketGroup(str(directory), stem, key_size, tuple(spills), int(a), int(b), offsets, bits_log2,
                          data_offsets)
              for a, b in zip(edges[:-1], edges[1:]) if offsets[b] > offsets[a]]
    advance = progress.advance if progress is not None else (lambda n: None)
    for group, result in engine.map(_no_context, (), write_bucket_group, groups, advance):
        if isinstance(result, BaseException):
            raise result
    return DigestIndex.load(directory, stem)


class SortedDigestWriter:
    """One spill and its index, in one process: add pairs, then `finish`."""

    def __init__(self, directory: str | Path, stem: str, key_size: int, memory_bytes: int = DEFAULT_MEMORY_BYTES):
        self.directory = Path(directory)
        self.stem = stem
        self.key_size = key_size
        self._spill = DigestSpill(directory, f"{stem}.spill", key_size, memory_bytes)

    @property
    def count(self) -> int:
        return self._spill.count

    def add(self, keys: np.ndarray, entry_ids: np.ndarray) -> None:
        self._spill.add(keys, entry_ids)

    def finish(self, workers: int | None = 1) -> DigestIndex:
        return finish_index(self.directory, self.stem, self.key_size, [self._spill.close()], workers)
