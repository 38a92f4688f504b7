"""Which URL and image digests a dataset version holds, in ~3.3 bytes per digest.

Lineage questions ("does dataset X contain any sample on this removal list?")
must be answered long after the data is gone, for datasets of billions of
rows, so a registered dataset keeps only this structure: a quotiented,
sorted list of digest fingerprints.

Every digest becomes a 64-bit key: its first 8 bytes, XORed with a constant
per digest kind (so a URL digest never equals an image digest) and with a
random salt drawn at build time (so nobody can craft data that piles into one
bucket), then mixed (splitmix64's finaliser, a bijection). The key's top `q`
bits pick one of 2^q buckets, chosen so buckets hold at most 8 keys on
average; the next 24 bits are stored (3 bytes), sorted within the bucket. A
bucket directory gives each bucket's first entry: a uint64 every 64 buckets
plus a uint16 offset per bucket.

A digest that is not a member matches only if its bucket holds an entry
with the same 24 stored bits: probability (keys in bucket) / 2^24, at most
8 / 2^24 = 4.8e-7 on average. Members are always found (no false
negatives). Size: 3 bytes per key plus 2 bytes per bucket (2-4 keys per
bucket-byte pair) <= 3.5 bytes per key; a row has at most two keys (URL and
one image digest) -> <= 7.1 bytes per row.

Built from spilled partitions, one at a time, so memory stays bounded by a
partition (1/256 of the keys) however big the dataset is; read through
memory maps, so a query touches a few pages.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.format import open_memmap

from safeset.errors import ConfigError, InputError
from safeset.signals.kernels import digest_prefix64

FORMAT = "safeset.lineage.members"
FORMAT_VERSION = 1
KINDS = {"url_sha256": 1, "image_sha256": 2, "image_md5": 3}
REMAINDER_BITS = 24
MAX_LOAD = 8  # keys per bucket, on average, at most
BLOCK_BUCKETS = 64
PARTITION_BITS = 8
HEADER_FILE = "members.json"
REMAINDERS_FILE = "members.npy"
STARTS_HI_FILE = "members-bucket-starts-hi.npy"
STARTS_LO_FILE = "members-bucket-starts-lo.npy"
QUERY_CHUNK = 1 << 16

_U64 = np.uint64
_MASK24 = _U64((1 << REMAINDER_BITS) - 1)
_KIND_CONSTANTS = {kind: _U64((0x9E3779B97F4A7C15 * code) & 0xFFFFFFFFFFFFFFFF) for kind, code in KINDS.items()}


def _mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a bijection on 64-bit values that spreads every input bit."""
    z = values.astype(_U64, copy=True)
    z ^= z >> _U64(30)
    z *= _U64(0xBF58476D1CE4E5B9)
    z ^= z >> _U64(27)
    z *= _U64(0x94D049BB133111EB)
    z ^= z >> _U64(31)
    return z


def membership_keys(kind: str, digests: np.ndarray, salt: int) -> np.ndarray:
    """64-bit keys of (n, k) uint8 digests of one kind (k >= 8)."""
    if kind not in KINDS:
        raise ValueError(f"unknown digest kind {kind!r}; known: {sorted(KINDS)}")
    if len(digests) == 0:
        return np.zeros(0, dtype=_U64)
    prefix = digest_prefix64(digests)
    return _mix64(prefix ^ _KIND_CONSTANTS[kind] ^ _U64(salt))


def bucket_bits(keys: int) -> int:
    """The fewest bucket bits giving at most MAX_LOAD keys per bucket."""
    q = 0
    while keys > MAX_LOAD << q:
        q += 1
    if q > 64 - REMAINDER_BITS:
        raise ConfigError(f"{keys:,} digests are more than one membership structure holds")
    return q


def new_salt() -> int:
    return secrets.randbits(64)


def _truncate(keys: np.ndarray, q: int) -> np.ndarray:
    """The stored part of each key: bucket (top q bits) and remainder (next 24 bits)."""
    return keys >> _U64(64 - q - REMAINDER_BITS)


def _remainder_bytes(truncated: np.ndarray) -> np.ndarray:
    remainder = truncated & _MASK24
    return np.stack(
        [(remainder >> _U64(16)) & _U64(255), (remainder >> _U64(8)) & _U64(255), remainder & _U64(255)], axis=1
    ).astype(np.uint8)


def _remainder_values(rows: np.ndarray) -> np.ndarray:
    rows = rows.astype(_U64)
    return (rows[:, 0] << _U64(16)) | (rows[:, 1] << _U64(8)) | rows[:, 2]


class MembershipBuilder:
    """Collects keys (any order, duplicates welcome) and writes the structure into a directory.

    Keys are held in memory up to `memory_keys`; beyond that they are spilled
    to `spill_dir`, split by their top 8 bits, and each part is sorted alone.
    """

    def __init__(self, spill_dir: Path, salt: int, memory_keys: int = 1 << 24):
        self.spill_dir = Path(spill_dir)
        self.salt = salt
        self.memory_keys = max(memory_keys, 1 << 12)
        self.kind_counts = {kind: 0 for kind in KINDS}
        self.total = 0
        self._buffer: list[np.ndarray] = []
        self._buffered = 0
        self._spilled = False

    def add(self, keys: np.ndarray, kind_counts: dict[str, int] | None = None) -> None:
        keys = np.ascontiguousarray(keys, dtype=_U64)
        if not len(keys):
            return
        for kind, count in (kind_counts or {}).items():
            self.kind_counts[kind] += int(count)
        self.total += len(keys)
        self._buffer.append(keys)
        self._buffered += len(keys)
        if self._buffered >= self.memory_keys:
            self._spill()

    def add_file(self, path: Path, kind_counts: dict[str, int] | None = None) -> None:
        """Add keys a worker wrote as raw native uint64 (read in slices, memory bounded)."""
        keys = np.memmap(path, dtype=_U64, mode="r") if Path(path).stat().st_size else np.zeros(0, _U64)
        first = True
        for start in range(0, len(keys), self.memory_keys):
            self.add(np.array(keys[start:start + self.memory_keys]), kind_counts if first else None)
            first = False
        if first and kind_counts:
            for kind, count in kind_counts.items():
                self.kind_counts[kind] += int(count)
        del keys

    def _partition_path(self, part: int) -> Path:
        return self.spill_dir / f"part-{part:03d}.u64"

    def _spill(self) -> None:
        if not self._buffered:
            return
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        keys = np.sort(np.concatenate(self._buffer))
        self._buffer, self._buffered, self._spilled = [], 0, True
        tops = keys >> _U64(64 - PARTITION_BITS)
        bounds = np.searchsorted(tops, np.arange(1 << PARTITION_BITS, dtype=_U64), side="left")
        bounds = np.append(bounds, len(keys))
        for part in range(1 << PARTITION_BITS):
            lo, hi = int(bounds[part]), int(bounds[part + 1])
            if hi > lo:
                with open(self._partition_path(part), "ab") as handle:
                    handle.write(keys[lo:hi].tobytes())

    def write(self, directory: Path) -> dict:
        """Write the structure's files into `directory` (which must exist); returns its header."""
        directory = Path(directory)
        q = bucket_bits(self.total)
        chunks = self._sorted_unique_chunks(q)
        entries = sum(len(chunk) for _, chunk in chunks) if not self._spilled else sum(count for _, count in chunks)
        buckets = 1 << q
        remainders = _create(directory / REMAINDERS_FILE, (entries, 3), np.uint8)
        starts_hi = _create(directory / STARTS_HI_FILE, (buckets // BLOCK_BUCKETS + 1,), _U64)
        starts_lo = _create(directory / STARTS_LO_FILE, (buckets + 1,), np.uint16)
        written = 0
        per_part = buckets >> PARTITION_BITS if self._spilled else buckets
        for index, chunk in chunks:
            truncated = chunk if not self._spilled else np.fromfile(self._partition_path(index), dtype=_U64)
            first_bucket = index * per_part
            self._write_chunk(truncated, first_bucket, per_part, written, remainders, starts_hi, starts_lo)
            written += len(truncated)
        _set_start(buckets, entries, starts_hi, starts_lo)
        for array in (remainders, starts_hi, starts_lo):
            if isinstance(array, np.memmap):
                array.flush()
        del remainders, starts_hi, starts_lo
        shutil.rmtree(self.spill_dir, ignore_errors=True)
        header = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "salt": f"{self.salt:016x}",
            "bucket_bits": q,
            "remainder_bits": REMAINDER_BITS,
            "block_buckets": BLOCK_BUCKETS,
            "entries": entries,
            "digests_added": self.total,
            "digests_by_kind": dict(self.kind_counts),
            "false_positive_rate_bound": entries / buckets / (1 << REMAINDER_BITS) if entries else 0.0,
            "bytes": sum((directory / name).stat().st_size for name in (REMAINDERS_FILE, STARTS_HI_FILE, STARTS_LO_FILE)),
        }
        (directory / HEADER_FILE).write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
        return header

    def _sorted_unique_chunks(self, q: int) -> list[tuple[int, np.ndarray | int]]:
        """In memory: [(0, truncated keys)]. Spilled: each part deduplicated in place, [(part, count)]."""
        if not self._spilled:
            keys = np.concatenate(self._buffer) if self._buffer else np.zeros(0, _U64)
            self._buffer, self._buffered = [], 0
            return [(0, _sorted_unique(_truncate(keys, q)))]
        if q < PARTITION_BITS:  # cannot happen: spilling needs >= 4096 keys, so q >= 9
            raise AssertionError("spilled membership with fewer buckets than partitions")
        self._spill()
        counts = []
        for part in range(1 << PARTITION_BITS):
            path = self._partition_path(part)
            if not path.exists():
                np.zeros(0, _U64).tofile(path)
            unique = _sorted_unique(_truncate(np.fromfile(path, dtype=_U64), q))
            unique.tofile(path)
            counts.append((part, len(unique)))
        return counts

    @staticmethod
    def _write_chunk(truncated, first_bucket, bucket_count, offset, remainders, starts_hi, starts_lo) -> None:
        """Entries of buckets [first_bucket, first_bucket + bucket_count), starting at entry `offset`."""
        if len(truncated):
            remainders[offset:offset + len(truncated)] = _remainder_bytes(truncated)
        buckets = (truncated >> _U64(REMAINDER_BITS)).astype(np.int64) - first_bucket
        counts = np.bincount(buckets, minlength=bucket_count)
        starts = offset + np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
        bucket_ids = np.arange(first_bucket, first_bucket + bucket_count, dtype=np.int64)
        block_firsts = np.flatnonzero(bucket_ids % BLOCK_BUCKETS == 0)
        starts_hi[bucket_ids[block_firsts] // BLOCK_BUCKETS] = starts[block_firsts]
        relative = starts - np.asarray(starts_hi[bucket_ids // BLOCK_BUCKETS], dtype=np.int64)
        _check_relative(relative)
        starts_lo[first_bucket:first_bucket + bucket_count] = relative


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """Sorted distinct values (np.unique hashes first, several times slower on uint64 keys)."""
    values = np.sort(values)
    if len(values) < 2:
        return values
    return values[np.concatenate(([True], values[1:] != values[:-1]))]


def _set_start(bucket: int, start: int, starts_hi, starts_lo) -> None:
    if bucket % BLOCK_BUCKETS == 0:
        starts_hi[bucket // BLOCK_BUCKETS] = start
    relative = np.array([start - int(starts_hi[bucket // BLOCK_BUCKETS])], dtype=np.int64)
    _check_relative(relative)
    starts_lo[bucket] = relative[0]


def _check_relative(relative: np.ndarray) -> None:
    if len(relative) and int(relative.max()) > np.iinfo(np.uint16).max:
        raise ConfigError("membership structure: too many digests fell into one bucket block "
                          "(digest columns that are not real digests?)")


def _create(path: Path, shape: tuple, dtype) -> np.ndarray:
    """A new .npy file of this shape, writable through a memory map (plain array when empty)."""
    if 0 in shape:
        array = np.zeros(shape, dtype=dtype)
        np.save(path, array)
        return array
    return open_memmap(path, mode="w+", dtype=dtype, shape=shape)


def _load(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r")
    except ValueError:  # an empty array cannot be memory-mapped
        array = np.load(path)
    return array


@dataclass
class MembershipIndex:
    """A written structure, memory-mapped: `contains(kind, digests)` answers membership."""

    header: dict
    remainders: np.ndarray
    starts_hi: np.ndarray
    starts_lo: np.ndarray

    @classmethod
    def open(cls, directory: Path) -> "MembershipIndex":
        directory = Path(directory)
        try:
            header = json.loads((directory / HEADER_FILE).read_text(encoding="utf-8"))
            if header.get("format") != FORMAT or header.get("format_version") != FORMAT_VERSION:
                raise InputError(directory / HEADER_FILE, None, "not a safeset membership structure of a known version")
            index = cls(header, _load(directory / REMAINDERS_FILE), _load(directory / STARTS_HI_FILE),
                        _load(directory / STARTS_LO_FILE))
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(directory, None, f"membership structure unreadable ({exc})") from None
        buckets = 1 << int(header["bucket_bits"])
        if (index.remainders.shape != (int(header["entries"]), 3) or len(index.starts_lo) != buckets + 1
                or len(index.starts_hi) != buckets // BLOCK_BUCKETS + 1):
            raise InputError(directory, None, "membership structure files do not agree with their header")
        return index

    @property
    def salt(self) -> int:
        return int(self.header["salt"], 16)

    def contains(self, kind: str, digests: np.ndarray) -> np.ndarray:
        """Bool per row of (n, k) uint8 `digests`: True if (probably) a member."""
        found = np.zeros(len(digests), dtype=bool)
        if not len(digests) or not int(self.header["entries"]):
            return found
        for start in range(0, len(digests), QUERY_CHUNK):
            keys = membership_keys(kind, digests[start:start + QUERY_CHUNK], self.salt)
            found[start:start + len(keys)] = self._contains_keys(keys)
        return found

    def _contains_keys(self, keys: np.ndarray) -> np.ndarray:
        q = int(self.header["bucket_bits"])
        truncated = _truncate(keys, q)
        buckets = (truncated >> _U64(REMAINDER_BITS)).astype(np.int64)
        wanted = truncated & _MASK24
        first = self._bucket_start(buckets)
        lengths = self._bucket_start(buckets + 1) - first
        found = np.zeros(len(keys), dtype=bool)
        for step in range(int(lengths.max()) if len(lengths) else 0):
            active = np.flatnonzero(lengths > step)
            stored = _remainder_values(np.asarray(self.remainders[first[active] + step]))
            found[active] |= stored == wanted[active]
        return found

    def _bucket_start(self, buckets: np.ndarray) -> np.ndarray:
        high = np.asarray(self.starts_hi[buckets // BLOCK_BUCKETS], dtype=np.int64)
        return high + np.asarray(self.starts_lo[buckets], dtype=np.int64)


def remove_directory(path: Path) -> None:
    if Path(path).exists():
        shutil.rmtree(path, ignore_errors=True)


def fsync_directory_files(directory: Path) -> None:
    """Flush every file of a finished directory, then the directory, before it is renamed into place."""
    for path in Path(directory).iterdir():
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
