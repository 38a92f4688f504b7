"""pdq: Meta's 256-bit perceptual hash, matched within a Hamming distance.

A bank version keeps its PDQ entries in a `PDQIndex` file built when the
version is made, so workers load it (memory-mapped) instead of rebuilding it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from safeset.signals.registry import SignalType, register


class PDQBankIndex:
    """A bank version's PDQ index and the bank entry id of each indexed hash."""

    def __init__(self, index, entry_ids: np.ndarray):
        self.index = index
        self.entry_ids = entry_ids

    def search(self, queries: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query row, entry id, distance) within `threshold`, query rows ascending."""
        if len(queries) == 0 or len(self.entry_ids) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        offsets, ids, distances = self.index.search_arrays(queries, threshold)
        if len(ids) == 0:  # most lookups miss: skip the bookkeeping
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        rows = np.repeat(np.arange(len(queries), dtype=np.int64), np.diff(offsets))
        return rows, self.entry_ids[ids], distances.astype(np.int64)


def _validate(value: str) -> str:
    from safeset.pdq.hexform import validate_pdq_hex

    return validate_pdq_hex(value)


def _build(values: list[str], entry_ids: np.ndarray, directory: Path, stem: str) -> dict:
    from safeset.pdq.index import PDQIndex

    index = PDQIndex()
    if values:
        index.add(values)
    index.save(directory / f"{stem}.pdqindex")
    np.save(directory / f"{stem}.pdqids.npy", np.asarray(entry_ids, dtype=np.int64))
    return {"stem": stem, "entries": len(values)}


def _load(directory: Path, described: dict) -> PDQBankIndex:
    from safeset.pdq.index import PDQIndex

    stem = described["stem"]
    index = PDQIndex.load(directory / f"{stem}.pdqindex", mmap=True)
    return PDQBankIndex(index, np.load(directory / f"{stem}.pdqids.npy", mmap_mode="r"))


register(
    SignalType(
        name="pdq",
        description="PDQ perceptual hash of the image; matches within a Hamming distance",
        index="pdq",
        validate=_validate,
        build_index=_build,
        load_index=_load,
    )
)
