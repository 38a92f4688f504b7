"""A removal list as a match source: rows matched by URL digest, image digest or key.

The list's values are kept in slot indexes (`slotindex`), one per signal
type, in a directory every worker memory-maps; `RemovalListSource` is
the small picklable description sent to workers, `open()` loads the indexes
there. Evidence carries bank `REMOVAL_LIST` and the list row as entry id.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from safeset.removals.slotindex import SlotIndex
from safeset.evidence import Evidence
from safeset.signals import kernels
from safeset.signals.rows import RowSignals

LIST_BANK = "REMOVAL_LIST"
KEY_DIGEST_BYTES = 16

# --match kind -> the signal types it matches; signal type -> (list column, key size)
MATCH_KINDS = {"url": ("url_sha256",), "image": ("sha256", "md5"), "key": ("key",)}
SIGNAL_COLUMNS = {"url_sha256": ("url_sha256", 32), "sha256": ("image_sha256", 32), "md5": ("image_md5", 16),
                  "key": ("key", KEY_DIGEST_BYTES)}


def key_digests(keys: pa.Array) -> np.ndarray:
    """Sample keys as fixed-size index keys: the first 16 bytes of SHA-256 of the key text."""
    return np.ascontiguousarray(kernels.digest_array(keys, "sha256")[:, :KEY_DIGEST_BYTES])


@dataclass(frozen=True)
class RemovalListSource:
    """Where each signal type's index is (a directory holding `<signal type>.*.npy`) and what the list was."""

    index_dirs: dict[str, str]
    description: dict = field(default_factory=dict)  # list path, checksum, metadata, match, entries

    @property
    def signal_types(self) -> tuple[str, ...]:
        return tuple(sorted(self.index_dirs))

    def describe(self) -> dict:
        return {"kind": "removal-list", **self.description}

    def open(self) -> "RemovalListMatcher":
        return RemovalListMatcher({t: SlotIndex.load(directory, t) for t, directory in self.index_dirs.items()})


class RemovalListMatcher:
    def __init__(self, indexes: dict[str, SlotIndex]):
        self.indexes = indexes

    def _queries(self, signal_type: str, signals: RowSignals):
        """(digests, valid) of the batch for one signal type; None when the batch has no such signal."""
        if signal_type == "url_sha256":
            return None if signals.url is None else signals.url_digest("sha256", "canonical")
        if signal_type == "key":
            return key_digests(signals.batch.keys), None
        return signals.image_digest(signal_type)

    def match(self, signals: RowSignals, unavailable: set[str]) -> list[Evidence]:
        evidence: list[Evidence] = []
        for signal_type, index in self.indexes.items():
            queries = self._queries(signal_type, signals)
            if queries is None:
                unavailable.add(signal_type)
                continue
            digests, valid = queries
            rows, entry_ids = index.lookup(digests, valid)
            # A list may repeat a value: one piece of evidence per row is enough.
            rows, first = np.unique(rows, return_index=True)
            for row, entry_id in zip(rows.tolist(), entry_ids[first].tolist()):
                value = signals.batch.keys_at(np.array([row]))[0] if signal_type == "key" else digests[row].tobytes().hex()
                evidence.append(Evidence(row=row, signal_type=signal_type, value=value, bank=LIST_BANK,
                                         entry_id=entry_id))
        return evidence
