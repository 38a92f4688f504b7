"""Exact-match index for fixed-size digests (image MD5/SHA, URL digests).

Almost every query misses, so the index is built to reject misses cheaply: a
blocked Bloom filter (>= 32 bits per entry; each key sets 3 bits in one 64-bit
word, so a miss costs one cache line and about 1 in 700 gets past) is probed
for the whole batch at once; only survivors are binary-searched in the sorted
8-byte prefixes and then compared on the full key. Files are plain `.npy`,
memory-mapped on load, so worker processes share one copy of the pages.

Files for `stem` in `directory`:
  <stem>.keys.npy    (n, L) uint8, sorted bytewise (ties by entry id)
  <stem>.prefix.npy  (n,) uint64, first 8 key bytes read big-endian (so sorted)
  <stem>.ids.npy     (n,) int64, entry id of each key
  <stem>.filter.npy  (2^w,) uint64 words: a prefix p sets, in word p >> (64 - w),
                     bits (p >> (58 - w)) & 63, (p >> (52 - w)) & 63 and (p >> (46 - w)) & 63
Indexes written before the filter have instead
  <stem>.bitmap.npy  (2^k / 64,) uint64, bit b set iff some prefix >> (64-k) == b
which is still read (about 1 in 32 misses gets past it).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from safeset import _native

from safeset.errors import InputError

PREFIX_BYTES = 8
MIN_BITMAP_BITS_LOG2 = 16
BITMAP_BITS_PER_ENTRY = 32
COARSE_STRIDE = 256
WRITE_CHUNK = 1 << 20
_PARTS = ("keys", "prefix", "ids")
_FILTERS = ("filter", "bitmap")  # the one a store has: the Bloom filter, else the older bitmap


def bitmap_bits_log2(entries: int) -> int:
    """k such that 2^k >= 32 bits per entry, and at least 2^16 bits (filter and bitmap alike)."""
    wanted = max(entries, 1) * BITMAP_BITS_PER_ENTRY
    return max(MIN_BITMAP_BITS_LOG2, math.ceil(math.log2(wanted)))


def filter_word_bits(entries: int) -> int:
    """w: the filter has 2^w 64-bit words."""
    return bitmap_bits_log2(entries) - 6


def filter_words_and_masks(sorted_prefixes: np.ndarray, word_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Each prefix's filter word and its 3 bits there (see the module docstring)."""
    words = sorted_prefixes >> np.uint64(64 - word_bits)
    masks = np.zeros(len(sorted_prefixes), dtype=np.uint64)
    for shift in (58 - word_bits, 52 - word_bits, 46 - word_bits):
        masks |= np.left_shift(np.uint64(1), (sorted_prefixes >> np.uint64(shift)) & np.uint64(63))
    return words, masks


def key_prefixes(keys: np.ndarray) -> np.ndarray:
    """First 8 bytes of each row as a native uint64 that orders like the bytes."""
    rows, width = keys.shape
    if width >= PREFIX_BYTES and width % PREFIX_BYTES == 0 and keys.flags.c_contiguous:
        big_endian = keys.view(">u8")[:, 0]
    else:
        head = np.zeros((rows, PREFIX_BYTES), dtype=np.uint8)
        take = min(width, PREFIX_BYTES)
        head[:, :take] = keys[:, :take]
        big_endian = head.view(">u8")[:, 0]
    return big_endian.astype(np.uint64)


def _sorted_order(keys: np.ndarray, prefixes: np.ndarray, entry_ids: np.ndarray) -> np.ndarray:
    """Bytewise order of the keys: sort the prefixes, then settle the (rare) ties on full keys."""
    order = np.argsort(prefixes, kind="stable")
    sorted_prefixes = prefixes[order]
    tie = sorted_prefixes[1:] == sorted_prefixes[:-1]
    if not tie.any():
        return order
    tied_positions = np.flatnonzero(np.r_[tie, False] | np.r_[False, tie])
    tied_rows = order[tied_positions]
    tied_keys = keys[tied_rows]
    columns = [entry_ids[tied_rows]]
    columns += [tied_keys[:, i] for i in range(tied_keys.shape[1] - 1, -1, -1)]
    order[tied_positions] = tied_rows[np.lexsort(columns)]
    return order


def _set_filter_bits(words: np.ndarray, sorted_prefixes: np.ndarray, word_bits: int) -> None:
    """Set each prefix's bits in its word (prefixes sorted, so equal words are adjacent)."""
    if len(sorted_prefixes) == 0:
        return
    slots, masks = filter_words_and_masks(sorted_prefixes, word_bits)
    starts = np.flatnonzero(np.r_[True, slots[1:] != slots[:-1]])
    words[slots[starts]] |= np.bitwise_or.reduceat(masks, starts)


def _paths(directory: Path, stem: str) -> dict[str, Path]:
    return {part: directory / f"{stem}.{part}.npy" for part in (*_PARTS, *_FILTERS)}


def _temporary(path: Path) -> Path:
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def _save(path: Path, array: np.ndarray) -> None:
    temporary = _temporary(path)
    with open(temporary, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    os.replace(temporary, path)


def _save_in_order(path: Path, source: np.ndarray, order: np.ndarray, each_chunk=None) -> None:
    """Save source[order] a chunk at a time, so the reordered copy never exists whole in memory."""
    header = {
        "descr": np.lib.format.dtype_to_descr(source.dtype),
        "fortran_order": False,
        "shape": (len(order), *source.shape[1:]),
    }
    temporary = _temporary(path)
    with open(temporary, "wb") as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for start in range(0, len(order), WRITE_CHUNK):
            chunk = np.ascontiguousarray(source[order[start : start + WRITE_CHUNK]])
            handle.write(chunk.data)
            if each_chunk is not None:
                each_chunk(chunk)
    os.replace(temporary, path)


class DigestIndex:
    """Sorted digests with a Bloom filter (or, in older stores, a bitmap) in front; see the module docstring."""

    def __init__(self, keys: np.ndarray, prefixes: np.ndarray, entry_ids: np.ndarray, prefilter: np.ndarray,
                 kind: str = "filter"):
        if kind not in _FILTERS:
            raise ValueError(f"prefilter kind must be one of {_FILTERS}")
        self.keys = keys
        self.prefixes = prefixes
        self.entry_ids = entry_ids
        self.prefilter = prefilter
        self.prefilter_kind = kind
        self.key_size = keys.shape[1]
        self.bits_log2 = int(len(prefilter) * 64).bit_length() - 1
        self._coarse: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.entry_ids)

    @classmethod
    def build(cls, keys: np.ndarray, entry_ids: np.ndarray, directory: str | Path, stem: str) -> "DigestIndex":
        keys = np.ascontiguousarray(keys, dtype=np.uint8)
        entry_ids = np.ascontiguousarray(entry_ids, dtype=np.int64)
        if keys.ndim != 2 or keys.shape[1] == 0:
            raise ValueError(f"keys must be an (n, L) uint8 array with L > 0, got shape {keys.shape}")
        if len(entry_ids) != len(keys):
            raise ValueError(f"{len(keys)} keys but {len(entry_ids)} entry ids")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        paths = _paths(directory, stem)
        prefixes = key_prefixes(keys)
        order = _sorted_order(keys, prefixes, entry_ids)
        _save_in_order(paths["keys"], keys, order)
        _save_in_order(paths["ids"], entry_ids, order)
        word_bits = filter_word_bits(len(keys))
        words = np.zeros(1 << word_bits, dtype=np.uint64)
        _save_in_order(paths["prefix"], prefixes, order, lambda chunk: _set_filter_bits(words, chunk, word_bits))
        _save(paths["filter"], words)
        return cls.load(directory, stem)

    @classmethod
    def empty(cls, key_size: int) -> "DigestIndex":
        """An index with no entries (a bank holding none of this type): every lookup misses."""
        words = np.zeros((1 << MIN_BITMAP_BITS_LOG2) // 64, dtype=np.uint64)
        none = np.empty(0, dtype=np.int64)
        return cls(np.empty((0, key_size), dtype=np.uint8), none.astype(np.uint64), none, words)

    @classmethod
    def load(cls, directory: str | Path, stem: str) -> "DigestIndex":
        paths = _paths(Path(directory), stem)
        kind = next((part for part in _FILTERS if paths[part].exists()), "filter")
        try:
            arrays = {part: np.load(paths[part], mmap_mode="r", allow_pickle=False) for part in (*_PARTS, kind)}
        except FileNotFoundError as exc:
            raise InputError(exc.filename, None, "digest index file missing (store damaged?)") from None
        except ValueError as exc:
            raise InputError(paths["keys"], None, f"unreadable digest index: {exc}") from None
        keys, prefixes, ids, prefilter = (arrays[part] for part in (*_PARTS, kind))
        bits = len(prefilter) * 64
        consistent = (
            keys.ndim == 2 and keys.dtype == np.uint8
            and prefixes.dtype == np.uint64 and ids.dtype == np.int64 and prefilter.dtype == np.uint64
            and len(keys) == len(prefixes) == len(ids)
            and bits >= 1 << MIN_BITMAP_BITS_LOG2 and bits & (bits - 1) == 0
        )
        if not consistent:
            raise InputError(paths["keys"], None, "digest index files do not agree with each other (store damaged?)")
        # Plain ndarray views of the maps: same shared pages, no np.memmap overhead per index. The
        # prefilter is read at random for every query: copied, it sits in huge pages (fewer TLB misses).
        return cls(np.asarray(keys), np.asarray(prefixes), np.asarray(ids), np.array(prefilter), kind)

    def lookup(self, queries: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All (row, entry_id) pairs whose query equals an indexed key, rows ascending.

        `valid` (bool per row) excludes rows whose digest could not be computed.
        """
        queries = np.asarray(queries, dtype=np.uint8)
        if queries.ndim != 2 or queries.shape[1] != self.key_size:
            raise ValueError(f"queries must have shape (m, {self.key_size}), got {queries.shape}")
        empty = np.empty(0, dtype=np.int64)
        if len(queries) == 0 or len(self) == 0:
            return empty, empty.copy()
        if valid is not None:
            valid = np.asarray(valid, dtype=bool)
            if valid.shape != (len(queries),):
                raise ValueError(f"valid must have shape ({len(queries)},), got {valid.shape}")
        # The prefilter, in C: one pass, no temporary arrays per row.
        queries = np.ascontiguousarray(queries)
        if self.prefilter_kind == "filter":
            candidates = _native.filter_candidates(queries, self.key_size, self.prefilter, self.bits_log2 - 6, valid)
        else:
            candidates = _native.bitmap_candidates(queries, self.key_size, self.prefilter, 64 - self.bits_log2, valid)
        rows = np.frombuffer(candidates, dtype=np.int64)
        if len(rows) == 0:
            return empty, empty.copy()
        # Survivors (the hits, and the few misses the prefilter let through): bisected and compared in C.
        found_rows, found_ids = _native.sorted_lookup(
            queries, self.key_size, rows, self.prefixes, self._coarse_prefixes(), self.keys, self.entry_ids
        )
        return np.frombuffer(found_rows, dtype=np.int64), np.frombuffer(found_ids, dtype=np.int64)

    def _coarse_prefixes(self) -> np.ndarray:
        """Every COARSE_STRIDE-th prefix: a table small enough to stay in cache, narrowing each search to a block."""
        if self._coarse is None:
            self._coarse = np.ascontiguousarray(self.prefixes[::COARSE_STRIDE])
        return self._coarse
