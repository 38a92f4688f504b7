"""A removal list's values of one signal type, as sorted keys with a slot directory.

Files for `stem` in `directory`, plain `.npy`, memory-mapped on load so
worker processes share one copy of the pages:

  <stem>.keys.npy          (n, L) uint8   the keys (L >= 16), sorted bytewise, ties by list row
  <stem>.ids.npy           (n,) uint32    the list row of each key (uint64 for lists of 2**32 rows or more)
  <stem>.fingerprints.npy  (n,) uint32    the 32 bits of each key after its first k bits
  <stem>.groups.npy        (65537,) int64 where the keys of each 16-bit group start (the last: n)
  <stem>.slots.npy         (2**k + 1,) uint64  the directory: for the keys whose
                           first k bits equal s, where they start relative to
                           their group (low 32 bits) and a filter (high 32:
                           bit f & 31 set for the fingerprint f of each); the
                           last entry is 0

Why not the banks' `DigestIndex`: a list can be as long as the dataset, and
its index is built on the spot. Keys are digests, so they are uniform and k
can be chosen for 4 to 8 keys a slot. A lookup reads one directory entry;
only when the filter has the query's bit (about 1 miss in 6) does it read the
slot's fingerprints (one cache line), and a key only when a fingerprint is
equal (hits, and about 1 miss in 2**32), so the keys' pages stay cold. An
SHA-256 value takes about 42 bytes (the bank index: 52) and the build needs
no global sort, only the bucket sort of `spillruns`. Lookups are one C call
per batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from safeset import _removals
from safeset.errors import InputError

PARTS = ("keys", "ids", "fingerprints", "groups", "slots")
GROUP_COUNT = 1 << 16
MIN_SLOT_BITS = 16  # the build sorts by groups of the first 16 bits; a slot never spans two
KEYS_PER_SLOT = 4  # at least, on average; fewer than twice as many


def slot_bits_for(entries: int) -> int:
    """k for 4 to 8 keys a slot on average (at least MIN_SLOT_BITS)."""
    return max(MIN_SLOT_BITS, (max(entries, 1) // KEYS_PER_SLOT).bit_length() - 1)


def id_dtype_for(list_rows: int) -> np.dtype:
    """The narrowest id type that holds every row number of a list this long."""
    return np.dtype("<u4") if list_rows <= 1 << 32 else np.dtype("<u8")


def checked_keys(keys, key_size: int, mask, mask_name: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(keys, mask) as contiguous arrays for the C code: keys (n, key_size) uint8, mask None or n bools."""
    keys = np.ascontiguousarray(keys, dtype=np.uint8)
    if keys.ndim != 2 or keys.shape[1] != key_size:
        raise ValueError(f"keys must have shape (n, {key_size}), got {keys.shape}")
    if mask is not None:
        mask = np.ascontiguousarray(mask, dtype=bool)
        if mask.shape != (len(keys),):
            raise ValueError(f"{mask_name} must have shape ({len(keys)},), got {mask.shape}")
    return keys, mask


def index_paths(directory: str | Path, stem: str) -> dict[str, Path]:
    return {part: Path(directory) / f"{stem}.{part}.npy" for part in PARTS}


class SlotIndex:
    """Exact lookups of fixed-size keys; see the module docstring for the layout."""

    def __init__(self, keys: np.ndarray, ids: np.ndarray, fingerprints: np.ndarray, slots: np.ndarray,
                 groups: np.ndarray):
        self.keys = keys
        self.ids = ids
        self.fingerprints = fingerprints
        self.slots = slots
        self.groups = groups
        self.key_size = keys.shape[1]
        self.slot_bits = (len(slots) - 1).bit_length() - 1

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def load(cls, directory: str | Path, stem: str) -> "SlotIndex":
        paths = index_paths(directory, stem)
        try:
            keys, ids, fingerprints, groups, slots = (np.load(paths[part], mmap_mode="r", allow_pickle=False)
                                                      for part in PARTS)
        except FileNotFoundError as exc:
            raise InputError(exc.filename, None, "removal-list index file missing") from None
        except ValueError as exc:
            raise InputError(paths["keys"], None, f"unreadable removal-list index: {exc}") from None
        slot_count = len(slots) - 1
        consistent = (
            keys.ndim == 2 and keys.dtype == np.uint8 and keys.shape[1] >= 16
            and ids.dtype in (np.dtype("<u4"), np.dtype("<u8")) and ids.shape == (len(keys),)
            and fingerprints.dtype == np.dtype("<u4") and fingerprints.shape == (len(keys),)
            and groups.dtype == np.dtype("<i8") and groups.shape == (GROUP_COUNT + 1,)
            and int(groups[0]) == 0 and int(groups[-1]) == len(keys)
            and slots.dtype == np.dtype("<u8") and slot_count >= 1 << MIN_SLOT_BITS
            and slot_count & (slot_count - 1) == 0 and int(slots[-1]) == 0
        )
        if not consistent:
            raise InputError(paths["keys"], None, "removal-list index files do not agree with each other (damaged?)")
        return cls(np.asarray(keys), np.asarray(ids), np.asarray(fingerprints), np.asarray(slots), np.asarray(groups))

    def lookup(self, queries: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All (row, entry id) pairs whose query equals an indexed key, rows ascending.

        `valid` (bool per row) excludes rows whose digest could not be computed.
        """
        queries, valid = checked_keys(queries, self.key_size, valid, "valid")
        rows, ids = _removals.lookup(queries, self.key_size, valid, self.keys, self.ids, self.ids.dtype.itemsize,
                                     self.fingerprints, self.slots, self.groups, self.slot_bits)
        return np.frombuffer(rows, dtype=np.int64), np.frombuffer(ids, dtype=np.int64)
