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
large for probing to pay off scan instead). Tables live in compact numpy
arrays (see `safeset/native/_pdqindex.c`), so `save`/`load` are plain
array writes and reads.

Why segments: adding hashes must not rebuild a 10M-hash index. New hashes go
into a new segment with its own tables; a segment is merged (rebuilt) with
the one before it only once it is at least a quarter of its size, so sizes
fall geometrically and there are few segments. Removal marks a tombstone bit;
removed hashes drop out of tables when their segment is next rebuilt.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from safeset import _pdqindex
from safeset.errors import InputError

HASH_BYTES = 32
HEX_LENGTH = 64
DEFAULT_THRESHOLD = 31

# Cost model (nanoseconds, measured on a 2-core x86-64) that picks each
# segment's layout and, per query threshold, probing or scanning.
_NS_PER_PROBE = 20.0
_NS_PER_CANDIDATE = 12.0
_NS_PER_SCANNED_HASH = 0.8
_MERGE_RATIO = 4  # a segment stays apart while the one before is >= 4x larger

_FORMAT_MAGIC = b"SAFESET-PDQ-INDEX\n"
_FORMAT_VERSION = 1


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


def _aligned_hashes(count: int, odd_start: bool) -> np.ndarray:
    """An empty (count, 32) array placed so that ids 2p, 2p+1 share a 64-byte line."""
    buffer = np.empty(count * HASH_BYTES + 128, dtype=np.uint8)
    want = 32 if odd_start else 0
    skip = (want - buffer.ctypes.data) % 64
    return buffer[skip : skip + count * HASH_BYTES].reshape(count, HASH_BYTES)


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

    Keys of about log2(count) bits keep buckets near one entry (the unary
    directory then costs ~2 bits per hash and key); the number of tables
    trades probes (more flips per table when there are few) against memory
    (~3.2 bytes per hash per table at 10M). `tables` fixes that number
    (e.g. 10 instead of 11 at 10M: ~64 instead of ~67 bytes per hash, slower).
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


def _pair_bits(id_start: int, count: int) -> int:
    pairs = ((id_start + count - 1) >> 1) - (id_start >> 1) + 1
    return max(1, (pairs - 1).bit_length())


@dataclass
class _Table:
    base: np.ndarray  # uint32, entries before each block of 64 keys
    bits: np.ndarray  # uint8, unary bucket sizes
    pos: np.ndarray  # uint8, bit-packed pair indexes


@dataclass
class _Segment:
    id_start: int
    hashes: np.ndarray  # (n, 32) uint8, ids id_start..id_start+n-1
    k: int = 0
    w: int = 0
    tables: list[_Table] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.hashes)

    @property
    def m(self) -> int:
        return len(self.tables)

    def nbytes(self) -> int:
        return self.hashes.nbytes + sum(t.base.nbytes + t.bits.nbytes + t.pos.nbytes for t in self.tables)

    def scans(self, threshold: int) -> bool:
        if not self.tables:
            return True
        return _scan_cost(self.count) <= _probe_cost(self.count, self.m, self.k, threshold)

    def describe(self, threshold: int) -> tuple:
        flat = self.scans(threshold)
        tables = [] if flat else [(t.base, t.bits, t.pos) for t in self.tables]
        return (self.hashes, self.id_start, self.count, flat, self.k or 6, self.w or 1, _key_starts(self.m) if not flat else [], tables)


def _build_segment(
    id_start: int, hashes: np.ndarray, removed: np.ndarray | None, threads: int, tables: int | None = None
) -> _Segment:
    segment = _Segment(id_start, hashes)
    layout = choose_layout(len(hashes), tables=tables)
    if layout is None:
        return segment
    m, k = layout
    w = _pair_bits(id_start, len(hashes))
    built = _pdqindex.build(hashes, id_start, len(hashes), removed, _key_starts(m), k, w, threads)
    segment.k, segment.w = k, w
    segment.tables = [
        _Table(np.frombuffer(base, dtype=np.uint32), np.frombuffer(bits, dtype=np.uint8), np.frombuffer(pos, dtype=np.uint8))
        for base, bits, pos in built
    ]
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
        self._removed = np.zeros(0, dtype=np.uint8)  # tombstone bitmap over ids
        self._total = 0
        self._removed_count = 0

    def __len__(self) -> int:
        return self._total - self._removed_count

    @property
    def nbytes(self) -> int:
        """Bytes held by the hashes, tables and tombstones."""
        return sum(s.nbytes() for s in self._segments) + self._removed.nbytes

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
        stored = _aligned_hashes(len(array), first & 1)
        stored[:] = array
        self._total += len(array)
        self._grow_removed()
        self._segments.append(_build_segment(first, stored, self._removed, self.threads, self.tables))
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
            self._segments[0] = _build_segment(only.id_start, only.hashes, self._removed, self.threads, self.tables)

    def search_arrays(self, queries, threshold: int = DEFAULT_THRESHOLD):
        """Hits as arrays: (offsets (q+1,), ids, distances); query i's hits are
        ids[offsets[i]:offsets[i+1]], sorted by distance, then id."""
        threshold = self._check_threshold(threshold)
        array = as_hash_array(queries, "queries")
        segments = [s.describe(threshold) for s in self._segments]
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

    # -- persistence

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to one file (temporary name, renamed when complete)."""
        path = Path(path)
        arrays: list[tuple[str, np.ndarray, int]] = [("removed", self._removed, 0)]
        segments = []
        for i, segment in enumerate(self._segments):
            arrays.append((f"s{i}.hashes", segment.hashes, 32 if segment.id_start & 1 else 0))
            for j, table in enumerate(segment.tables):
                arrays += [(f"s{i}.t{j}.base", table.base, 0), (f"s{i}.t{j}.bits", table.bits, 0), (f"s{i}.t{j}.pos", table.pos, 0)]
            segments.append({"id_start": segment.id_start, "count": segment.count, "k": segment.k, "w": segment.w, "m": segment.m})
        header = {
            "version": _FORMAT_VERSION,
            "total": self._total,
            "removed_count": self._removed_count,
            "tables": self.tables,
            "segments": segments,
            "arrays": [],
        }
        # Offsets depend on the header's length; fix the header size by padding.
        layout, offset = [], 0
        for name, array, phase in arrays:
            layout.append([name, array.dtype.str, list(array.shape), 0, array.nbytes, phase])
        header["arrays"] = layout
        text = json.dumps(header).encode()
        head_size = len(_FORMAT_MAGIC) + 8 + len(text) + 64 * len(layout) + 64
        offset = head_size
        for entry in layout:
            offset += (entry[5] - offset) % 64
            entry[3] = offset
            offset += entry[4]
        text = json.dumps(header).encode()
        head = _FORMAT_MAGIC + len(text).to_bytes(8, "little") + text
        assert len(head) <= head_size
        temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        try:
            with open(temporary, "wb") as out:
                out.write(head)
                for (_name, array, _phase), entry in zip(arrays, layout):
                    out.write(b"\0" * (entry[3] - out.tell()))
                    out.write(memoryview(np.ascontiguousarray(array)).cast("B"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temporary, path)
        finally:
            if temporary.exists():
                temporary.unlink()

    @classmethod
    def load(cls, path: str | os.PathLike, *, mmap: bool = False, threads: int | None = None) -> "PDQIndex":
        """Read an index written by `save` (mmap=True maps the arrays instead of reading them)."""
        path = Path(path)
        with open(path, "rb") as source:
            magic = source.read(len(_FORMAT_MAGIC))
            if magic != _FORMAT_MAGIC:
                raise InputError(path, "byte 0", "not a safeset PDQ index file")
            size = int.from_bytes(source.read(8), "little")
            try:
                header = json.loads(source.read(size))
            except (ValueError, UnicodeDecodeError) as error:
                raise InputError(path, f"byte {len(_FORMAT_MAGIC) + 8}", f"unreadable index header ({error})") from None
            if header.get("version") != _FORMAT_VERSION:
                raise InputError(path, "header", f"index format version {header.get('version')!r}, expected {_FORMAT_VERSION}")
            try:
                index = cls(threads=threads, tables=header.get("tables"))
                entries = [(str(n), np.dtype(d), tuple(map(int, sh)), int(o), int(nb), int(ph)) for n, d, sh, o, nb, ph in header["arrays"]]
                segments = [(int(g["id_start"]), int(g["count"]), int(g["k"]), int(g["w"]), int(g["m"])) for g in header["segments"]]
                total, removed_count = int(header["total"]), int(header["removed_count"])
            except (KeyError, TypeError, ValueError) as error:
                raise InputError(path, "header", f"malformed index header ({error!r})") from None
            file_size = os.fstat(source.fileno()).st_size
            arrays = {}
            for name, dtype, shape, offset, nbytes, phase in entries:
                if offset + nbytes > file_size:
                    raise InputError(path, f"byte {file_size}", f"file ends inside array {name} (truncated?)")
                if math.prod(shape) * dtype.itemsize != nbytes:
                    raise InputError(path, "header", f"array {name}: shape and size disagree")
                if mmap:
                    arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
                    continue
                if name.endswith(".hashes"):
                    array = _aligned_hashes(shape[0], bool(phase))
                else:
                    array = np.empty(shape, dtype=dtype)
                source.seek(offset)
                if source.readinto(memoryview(array).cast("B")) != nbytes:
                    raise InputError(path, f"byte {offset}", f"short read in array {name}")
                arrays[name] = array
        index._total, index._removed_count = total, removed_count
        try:
            index._removed = np.array(arrays["removed"], dtype=np.uint8) if mmap else arrays["removed"]
            for i, (id_start, count, k, w, m) in enumerate(segments):
                segment = _Segment(id_start, arrays[f"s{i}.hashes"], k, w)
                segment.tables = [
                    _Table(arrays[f"s{i}.t{j}.base"], arrays[f"s{i}.t{j}.bits"], arrays[f"s{i}.t{j}.pos"]) for j in range(m)
                ]
                if segment.count != count:
                    raise KeyError(f"s{i}.hashes")
                index._segments.append(segment)
        except KeyError as error:
            raise InputError(path, "header", f"missing or inconsistent array {error}") from None
        return index

    # -- internals

    @staticmethod
    def _check_threshold(threshold) -> int:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, np.integer)):
            raise PDQInputError("threshold", None, f"expected an integer, got {threshold!r}")
        if threshold < 0:
            raise PDQInputError("threshold", None, f"must be >= 0, got {threshold}")
        return min(int(threshold), 256)

    def _grow_removed(self) -> None:
        need = (self._total + 7) // 8
        if len(self._removed) < need:
            grown = np.zeros(max(need, 2 * len(self._removed)), dtype=np.uint8)
            grown[: len(self._removed)] = self._removed
            self._removed = grown

    def _merge_last_two(self) -> None:
        newer = self._segments.pop()
        older = self._segments.pop()
        merged = _aligned_hashes(older.count + newer.count, older.id_start & 1)
        merged[: older.count] = older.hashes
        merged[older.count :] = newer.hashes
        self._segments.append(_build_segment(older.id_start, merged, self._removed, self.threads, self.tables))
