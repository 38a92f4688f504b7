"""Exact Hamming-distance index over PDQ hashes, for banks of tens of millions.

    index = PDQIndex()
    ids = index.add(hashes)              # hex strings or uint8 (n, 32); ids 0, 1, 2, ...
    index.remove(ids)
    hits = index.search(queries, threshold=31)   # per query: [(id, distance), ...]
    index.save(path); index = PDQIndex.load(path); len(index)

Why multi-index hashing: a linear scan of 10M hashes costs milliseconds per
query; FAISS's multi-hash index (python-threatexchange, HMA) probes 16
tables of 16-bit keys and verifies ~40k candidates per query. Here each
segment splits the hash into m disjoint k-bit keys with m and k chosen for
its size (11 tables of 23 bits at 10M), so a query probes ~3k buckets and
verifies ~3k candidates, and every answer is checked on all 256 bits: the
result is exactly a brute-force scan's, at any threshold (thresholds too
large for probing to pay off scan instead).

Why under 64 bytes per hash: hashes are kept four to a 128-byte block (first
halves together, second halves together), so a table entry names a block
(two bits fewer) and checking a candidate block usually reads one cache
line; each table is an Elias-Fano coded set of (key, block) values, about
k bits per hash. At 10M: 32 bytes of hash + 11 tables x ~2.9 bytes, in
numpy arrays (see `safeset/native/_pdqindex.c`), so `save`/`load` are plain
array writes and reads.

Why segments: adding hashes must not rebuild a 10M-hash index. New hashes go
into a new segment with its own tables; a segment is merged (rebuilt) with
the one before it only once it is at least a quarter of its size, so sizes
fall geometrically and there are few segments. Removal marks a tombstone bit
(the bitmap exists only once something is removed); removed hashes drop out
of tables when their segment is next rebuilt.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from safeset import _pdqindex
from safeset.errors import InputError

HASH_BYTES = 32
HEX_LENGTH = 64
DEFAULT_THRESHOLD = 31
BLOCK_HASHES = 4  # hashes per block; table entries name blocks
BLOCK_BYTES = BLOCK_HASHES * HASH_BYTES
SAMPLE_EVERY = 1024  # a table's values: one uint32 count per 1024 high parts...
SUB_SAMPLE_EVERY = 64  # ...and one int8 correction per 64 (see _pdqindex.c)

# Cost model (nanoseconds, measured on a 2-core x86-64) that picks each
# segment's layout and, per query threshold, probing or scanning.
_NS_PER_PROBE = 20.0
_NS_PER_CANDIDATE = 12.0
_NS_PER_SCANNED_HASH = 0.8
_MERGE_RATIO = 4  # a segment stays apart while the one before is >= 4x larger


class PDQInputError(InputError, ValueError):
    """Bad hashes, queries or ids given to the index (also a ValueError)."""


# ---------------------------------------------------------------- inputs

_HEX_VALUE = np.full(256, 255, dtype=np.uint8)
for _char in b"0123456789":
    _HEX_VALUE[_char] = _char - ord("0")
for _char in b"abcdef":
    _HEX_VALUE[_char] = _char - ord("a") + 10
    _HEX_VALUE[_char - 32] = _char - ord("a") + 10


def hex_to_hashes(items, what: str = "hashes") -> np.ndarray:
    """64-digit hex strings -> uint8 array (n, 32), with the bad item and character named."""
    if isinstance(items, str):
        items = [items]
    items = list(items)
    for position, item in enumerate(items):
        if not isinstance(item, str):
            raise PDQInputError(what, f"item {position}", f"expected a 64-digit hex string, got {type(item).__name__}")
    joined = "".join(items)
    if len(joined) != HEX_LENGTH * len(items):
        for position, item in enumerate(items):
            if len(item) != HEX_LENGTH:
                raise PDQInputError(what, f"item {position}", f"expected {HEX_LENGTH} hex digits, got {len(item)}")
    raw = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    if raw.size != len(joined):  # non-ASCII text: find the first such character
        for position, item in enumerate(items):
            for column, char in enumerate(item):
                if ord(char) > 127:
                    raise PDQInputError(what, f"item {position}, character {column}", f"{char!r} is not a hex digit")
    values = _HEX_VALUE[raw]
    bad = np.flatnonzero(values == 255)
    if bad.size:
        at = int(bad[0])
        raise PDQInputError(
            what, f"item {at // HEX_LENGTH}, character {at % HEX_LENGTH}", f"{joined[at]!r} is not a hex digit"
        )
    pairs = values.reshape(-1, 2)
    return ((pairs[:, 0] << 4) | pairs[:, 1]).reshape(len(items), HASH_BYTES)


def as_hash_array(values, what: str = "hashes") -> np.ndarray:
    """Hex string(s) or a uint8 array (n, 32) / (32,) -> contiguous uint8 (n, 32)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "uib":
        if values.ndim == 1 and values.shape[0] == HASH_BYTES:
            values = values.reshape(1, HASH_BYTES)
        if values.ndim != 2 or values.shape[1] != HASH_BYTES:
            raise PDQInputError(what, None, f"expected a uint8 array of shape (n, {HASH_BYTES}), got {values.shape}")
        if values.dtype != np.uint8:
            if values.size and (values.min() < 0 or values.max() > 255):
                raise PDQInputError(what, None, "hash bytes must be in 0..255")
            values = values.astype(np.uint8)
        return np.ascontiguousarray(values)
    if isinstance(values, np.ndarray):
        values = values.tolist()
    return hex_to_hashes(values, what)


# ---------------------------------------------------------------- hash blocks


def aligned_slices(sizes: list[int], align: int = BLOCK_BYTES) -> list[np.ndarray]:
    """Uninitialised uint8 arrays of these sizes, each starting on an `align`-byte
    boundary, carved from one allocation: numpy asks the kernel for huge pages
    for big allocations, which spares the random reads of a search most TLB misses."""
    offsets, total = [], 0
    for size in sizes:
        total += -total % align
        offsets.append(total)
        total += size
    buffer = np.empty(total + align, dtype=np.uint8)
    skip = -buffer.ctypes.data % align
    return [buffer[skip + offset : skip + offset + size] for offset, size in zip(offsets, sizes)]


def empty_blocks(nblocks: int) -> np.ndarray:
    """An uninitialised (nblocks, 128) uint8 array starting on a 128-byte boundary,
    so that each half block is one cache line."""
    return aligned_slices([nblocks * BLOCK_BYTES])[0].reshape(nblocks, BLOCK_BYTES)


def rows_to_blocks(rows: np.ndarray) -> np.ndarray:
    """(n, 32) hashes -> (ceil(n/4), 128) blocks: the four first halves, then the four second halves."""
    count = len(rows)
    nblocks = -(-count // BLOCK_HASHES)
    blocks = empty_blocks(nblocks)
    full = count // BLOCK_HASHES
    as_halves = blocks.reshape(nblocks, 2, BLOCK_HASHES, 16)
    as_halves[:full] = rows[: full * BLOCK_HASHES].reshape(full, BLOCK_HASHES, 2, 16).transpose(0, 2, 1, 3)
    if full < nblocks:  # the last block's missing hashes are zeros, never reported
        tail = np.zeros((BLOCK_HASHES, HASH_BYTES), dtype=np.uint8)
        tail[: count - full * BLOCK_HASHES] = rows[full * BLOCK_HASHES :]
        as_halves[full] = tail.reshape(BLOCK_HASHES, 2, 16).transpose(1, 0, 2)
    return blocks


def blocks_to_rows(blocks: np.ndarray, count: int) -> np.ndarray:
    """The inverse of `rows_to_blocks`: a new (count, 32) array."""
    nblocks = len(blocks)
    rows = np.asarray(blocks).reshape(nblocks, 2, BLOCK_HASHES, 16).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(rows.reshape(nblocks * BLOCK_HASHES, HASH_BYTES)[:count])


# ---------------------------------------------------------------- layout


def _ball(bits: int, radius: int) -> int:
    """Keys within `radius` flips of a `bits`-bit key."""
    return sum(math.comb(bits, flips) for flips in range(0, min(radius, bits) + 1))


def _probe_cost(count: int, m: int, k: int, threshold: int) -> float:
    """Estimated nanoseconds per query of probing m tables of k-bit keys."""
    a, b = divmod(threshold, m)
    probes = sum(_ball(k, a if j <= b else a - 1) for j in range(m) if (a if j <= b else a - 1) >= 0)
    return probes * (_NS_PER_PROBE + _NS_PER_CANDIDATE * count / 2.0**k)


def _scan_cost(count: int) -> float:
    return count * _NS_PER_SCANNED_HASH


def choose_layout(count: int, threshold: int = DEFAULT_THRESHOLD, tables: int | None = None) -> tuple[int, int] | None:
    """(tables, key bits) for a segment of `count` hashes, or None to scan it.

    Keys of about log2(count) bits keep buckets near one entry (a table then
    costs about k bits per hash); the number of tables trades probes (more
    flips per table when there are few) against memory (~2.9 bytes per hash
    per table at 10M). `tables` fixes that number.
    """
    if count < 2:
        return None
    key_cap = max(6, min(32, round(math.log2(count))))
    best = None
    for m in [tables] if tables else range(1, 43):
        k = min(256 // m, key_cap)
        if k < 6:
            break
        cost = _probe_cost(count, m, k, threshold)
        if best is None or cost < best[0]:
            best = (cost, m, k)
    if best is None or best[0] >= _scan_cost(count):
        return None
    return best[1], best[2]


def _key_starts(m: int) -> list[int]:
    return [(j * 256) // m for j in range(m)]


def table_highs(k: int, nblocks: int, low_bits: int) -> int:
    """How many high parts a table's values (< 2^k * nblocks) can have."""
    return (((1 << k) * nblocks - 1) >> low_bits) + 1


def table_sizes(k: int, nblocks: int, low_bits: int, entries: int) -> tuple[int, int, int, int]:
    """Lengths of a table's arrays, as the C side checks them: samples (uint32),
    sub-samples (int8), unary bytes, low bytes."""
    highs = table_highs(k, nblocks, low_bits)
    return (
        highs // SAMPLE_EVERY + 2,
        highs // SUB_SAMPLE_EVERY + 2,
        (entries + highs + 7) // 8 + 16,
        (entries * low_bits + 7) // 8 + 8,
    )


def choose_low_bits(k: int, nblocks: int, entries: int) -> int:
    """The Elias-Fano split with the fewest bits: low bits per value, against
    one unary bit per value and per high part, plus the samples."""

    def bits(low_bits: int) -> int:
        samples, subs, unary, low = table_sizes(k, nblocks, low_bits, entries)
        return 32 * samples + 8 * (subs + unary + low)

    return min(range(0, 57), key=bits)


@dataclass
class _Table:
    low_bits: int
    entries: int
    samples: np.ndarray  # uint32: values whose high part is < 1024 * s
    subs: np.ndarray  # int8: values whose high part is < 64 * g, less the line between the samples
    unary: np.ndarray  # uint8: per high part, a 1 per value then a 0
    low: np.ndarray  # uint8: bit-packed low parts

    @property
    def nbytes(self) -> int:
        return self.samples.nbytes + self.subs.nbytes + self.unary.nbytes + self.low.nbytes


@dataclass
class _Segment:
    id_start: int
    count: int
    blocks: np.ndarray  # (ceil(count / 4), 128) uint8, ids id_start .. id_start + count - 1
    k: int = 0
    tables: list[_Table] = field(default_factory=list)

    @property
    def m(self) -> int:
        return len(self.tables)

    @property
    def hashes(self) -> np.ndarray:
        """The hashes as a new (count, 32) array."""
        return blocks_to_rows(self.blocks, self.count)

    def nbytes(self) -> int:
        return self.blocks.nbytes + sum(t.nbytes for t in self.tables)

    def scans(self, threshold: int) -> bool:
        if not self.tables:
            return True
        return _scan_cost(self.count) <= _probe_cost(self.count, self.m, self.k, threshold)

    def describe(self, threshold: int) -> tuple:
        flat = self.scans(threshold)
        tables = [] if flat else [(t.low_bits, t.entries, t.samples, t.subs, t.unary, t.low) for t in self.tables]
        return (self.blocks, self.id_start, self.count, flat, self.k or 6, _key_starts(self.m) if not flat else [], tables)


def _removed_in(removed: np.ndarray | None, start: int, count: int) -> int:
    if removed is None or not count:
        return 0
    bits = np.unpackbits(removed[start // 8 : -(-(start + count) // 8)], bitorder="little")
    return int(bits[start % 8 : start % 8 + count].sum())


def _build_segment(
    id_start: int, blocks: np.ndarray, count: int, removed: np.ndarray | None, threads: int, tables: int | None = None
) -> _Segment:
    """A segment over `blocks`, with tables for its live hashes (or none: scanned)."""
    segment = _Segment(id_start, count, blocks)
    live = count - _removed_in(removed, id_start, count)
    layout = choose_layout(live, tables=tables)
    if layout is None:
        return segment
    m, k = layout
    nblocks = len(blocks)
    low_bits = choose_low_bits(k, nblocks, live)
    samples_len, subs_len, unary_len, low_len = table_sizes(k, nblocks, low_bits, live)
    # Samples and unary bits of all tables in one allocation (huge pages); low bits apart (trimmed below).
    small = aligned_slices([4 * samples_len, subs_len, unary_len] * m)
    outputs = [
        (small[3 * j].view(np.uint32), small[3 * j + 1].view(np.int8), small[3 * j + 2], np.empty(low_len, dtype=np.uint8))
        for j in range(m)
    ]
    entries = _pdqindex.build(blocks, id_start, count, removed, _key_starts(m), k, low_bits, live, outputs, threads)
    segment.k = k
    for (samples, subs, unary, low), held in zip(outputs, entries):
        low_need = table_sizes(k, nblocks, low_bits, held)[3]
        if 64 * (len(low) - low_need) > len(low):
            low = low[:low_need].copy()  # many duplicates: give the slack back
        segment.tables.append(_Table(low_bits, held, samples, subs, unary, low))
    return segment


# ---------------------------------------------------------------- index


class PDQIndex:
    """Exact search of PDQ hashes within a Hamming distance (see module docstring).

    Searches may run from several Python threads at once (they only read);
    `add`, `remove`, `optimize` must not overlap with anything else.
    """

    def __init__(self, *, threads: int | None = None, tables: int | None = None):
        """threads: search/build threads (default: all CPUs); tables: fix the
        number of tables of big segments (default: the fastest layout)."""
        if tables is not None and not 1 <= tables <= 42:
            raise ValueError("tables must be in 1..42")
        self.threads = threads or os.cpu_count() or 1
        self.tables = tables
        self._segments: list[_Segment] = []
        self._described: dict[int, list[tuple]] = {}  # threshold -> segments as the C search takes them
        self._removed: np.ndarray | None = None  # tombstone bitmap over ids, once any is removed
        self._total = 0
        self._removed_count = 0

    def __len__(self) -> int:
        return self._total - self._removed_count

    @property
    def nbytes(self) -> int:
        """Bytes held by the hash blocks, tables and tombstones."""
        removed = 0 if self._removed is None else self._removed.nbytes
        return sum(s.nbytes() for s in self._segments) + removed

    @property
    def segment_sizes(self) -> list[int]:
        return [s.count for s in self._segments]

    def add(self, hashes) -> np.ndarray:
        """Add hashes; returns their ids (int64), consecutive in insertion order."""
        array = as_hash_array(hashes, "hashes")
        first = self._total
        ids = np.arange(first, first + len(array), dtype=np.int64)
        if not len(array):
            return ids
        self._total += len(array)
        self._grow_removed()
        self._described = {}
        self._segments.append(_build_segment(first, rows_to_blocks(array), len(array), self._removed, self.threads, self.tables))
        while len(self._segments) >= 2 and self._segments[-1].count * _MERGE_RATIO > self._segments[-2].count:
            self._merge_last_two()
        return ids

    def remove(self, ids) -> int:
        """Remove ids (tombstones); returns how many were present. Unknown ids raise."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        bad = np.flatnonzero((ids < 0) | (ids >= self._total))
        if bad.size:
            at = int(bad[0])
            raise PDQInputError("ids", f"item {at}", f"no hash has id {int(ids[at])} (ids are 0..{self._total - 1})")
        if not ids.size:
            return 0
        if self._removed is None:
            self._removed = np.zeros((self._total + 7) // 8, dtype=np.uint8)
        ids = np.unique(ids)
        bytes_at, bits_at = ids >> 3, (ids & 7).astype(np.uint8)
        was = (self._removed[bytes_at] >> bits_at) & 1
        newly = ids[was == 0]
        np.bitwise_or.at(self._removed, newly >> 3, (1 << (newly & 7)).astype(np.uint8))
        self._removed_count += len(newly)
        return len(newly)

    def optimize(self) -> None:
        """Merge all segments into one (a full rebuild, dropping removed hashes from tables)."""
        while len(self._segments) >= 2:
            self._merge_last_two()
        if self._segments:
            only = self._segments[0]
            self._segments[0] = _build_segment(only.id_start, only.blocks, only.count, self._removed, self.threads, self.tables)
        self._described = {}

    def search_arrays(self, queries, threshold: int = DEFAULT_THRESHOLD):
        """Hits as arrays: (offsets (q+1,), ids, distances); query i's hits are
        ids[offsets[i]:offsets[i+1]], sorted by distance, then id."""
        threshold = self._check_threshold(threshold)
        array = as_hash_array(queries, "queries")
        segments = self._described.get(threshold)
        if segments is None:  # the layout choice costs more than a single query's search: once per threshold
            segments = self._described[threshold] = [s.describe(threshold) for s in self._segments]
        removed = self._removed if self._removed_count else None
        offsets, ids, distances = _pdqindex.search(segments, removed, array, threshold, self.threads)
        return (
            np.frombuffer(offsets, dtype=np.int64),
            np.frombuffer(ids, dtype=np.int64),
            np.frombuffer(distances, dtype=np.int32),
        )

    def search(self, queries, threshold: int = DEFAULT_THRESHOLD) -> list[list[tuple[int, int]]]:
        """One list per query of (id, distance) with distance <= threshold, by distance then id."""
        offsets, ids, distances = self.search_arrays(queries, threshold)
        pairs = list(zip(ids.tolist(), distances.tolist()))
        bounds = offsets.tolist()
        return [pairs[bounds[i] : bounds[i + 1]] for i in range(len(bounds) - 1)]

    # -- persistence (safeset/pdq/index_file.py)

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to one file (temporary name, renamed when complete)."""
        from safeset.pdq.index_file import save_index

        save_index(self, path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = False, threads: int | None = None) -> "PDQIndex":
        """Read an index written by `save` (mmap=True maps the arrays instead of
        reading them). Files of the first format (before hash blocks) are
        rebuilt from their hashes, with a warning."""
        from safeset.pdq.index_file import load_index

        return load_index(cls, path, mmap=mmap, threads=threads)

    # -- internals

    @staticmethod
    def _check_threshold(threshold) -> int:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
            raise PDQInputError("threshold", None, f"expected an integer, got {threshold!r}")
        if threshold < 0:
            raise PDQInputError("threshold", None, f"must be >= 0, got {threshold}")
        return min(int(threshold), 256)

    def _grow_removed(self) -> None:
        if self._removed is None:
            return
        need = (self._total + 7) // 8
        if len(self._removed) < need:
            grown = np.zeros(need, dtype=np.uint8)
            grown[: len(self._removed)] = self._removed
            self._removed = grown

    def _merge_last_two(self) -> None:
        self._described = {}
        newer = self._segments.pop()
        older = self._segments.pop()
        rows = np.concatenate([older.hashes, newer.hashes])
        blocks = rows_to_blocks(rows)
        del rows
        self._segments.append(_build_segment(older.id_start, blocks, older.count + newer.count, self._removed, self.threads, self.tables))
