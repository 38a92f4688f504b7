"""Building a version's contents: merge with the parent, content digest, files, indexes.

Work is done one signal type at a time (a bank is usually one or two types),
so only value columns are ever sorted and no per-row type column is held.
Pure functions; the store decides when and where they run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.banks.digest_index import DigestIndex
from safeset.signals import registry
from safeset.signals.types.hexdigest import hex_key

DIGEST_RULE = "sha256 over the lines 'signal_type<TAB>value<LF>' in entries order (sorted by signal_type, then value)"
ROW_GROUP_ENTRIES = 1 << 20
_LARGE = pa.large_string()
ENTRIES_SCHEMA = pa.schema([("entry_id", pa.int64()), ("signal_type", pa.string()), ("value", pa.string())])


@dataclass
class TypeEntries:
    """All entries of one signal type: sorted unique values and their ids."""

    signal_type: str
    values: pa.Array  # large_string
    ids: np.ndarray  # int64, aligned with values


@dataclass
class Merged:
    parts: list[TypeEntries]  # sorted by signal type
    duplicates: int
    already_present: int
    added: int
    removed: int
    max_entry_id: int

    @property
    def entries(self) -> int:
        return sum(len(part.ids) for part in self.parts)

    def counts(self) -> dict[str, int]:
        return {part.signal_type: len(part.ids) for part in self.parts if len(part.ids)}


def _equal_to_previous(values: pa.Array, order: np.ndarray) -> np.ndarray:
    """same[i] is True when values[order[i]] == values[order[i-1]], a chunk at a time
    so the sorted copy of the values never exists whole."""
    same = np.zeros(len(order), dtype=bool)
    previous_last = None
    for start in range(0, len(order), ROW_GROUP_ENTRIES):
        chunk = values.take(order[start : start + ROW_GROUP_ENTRIES])
        if len(chunk) > 1:
            equal = pc.equal(chunk.slice(1), chunk.slice(0, len(chunk) - 1))
            same[start + 1 : start + len(chunk)] = equal.to_numpy(zero_copy_only=False)
        if previous_last is not None:
            same[start] = chunk[0].as_py() == previous_last
        previous_last = chunk[len(chunk) - 1].as_py()
    return same


def _merge_type(
    signal_type: str, parent: TypeEntries | None, new_values: pa.Array, replace: bool, max_entry_id: int
) -> tuple[TypeEntries, dict[str, int]]:
    """Merge one type. A stable sort of parent+new values puts each parent value
    directly before the new lines that repeat it, so every count and every id
    follows from comparing neighbours."""
    parent_values = parent.values if parent is not None else pa.array([], _LARGE)
    parent_ids = parent.ids if parent is not None else np.empty(0, np.int64)
    if len(parent_values):
        values = pa.concat_arrays([parent_values.cast(_LARGE), new_values.cast(_LARGE)])
    else:
        values = new_values.cast(_LARGE)
    order = pc.sort_indices(values).to_numpy()  # stable: parent rows first among equals
    same = _equal_to_previous(values, order)
    is_new = order >= len(parent_values)
    previous_is_new = np.r_[True, is_new[:-1]]
    repeat_in_input = is_new & same & previous_is_new
    found_in_parent = is_new & same & ~previous_is_new
    brand_new = is_new & ~same

    ids = np.full(len(order), -1, dtype=np.int64)
    ids[~is_new] = parent_ids[order[~is_new]]
    ids[brand_new] = max_entry_id + np.arange(1, int(brand_new.sum()) + 1, dtype=np.int64)
    if replace:
        ids[found_in_parent] = ids[np.flatnonzero(found_in_parent) - 1]
        keep = brand_new | found_in_parent
    else:
        keep = ~same
    kept = order[keep]
    stats = {
        "duplicates": int(repeat_in_input.sum()),
        "already_present": int(found_in_parent.sum()),
        "added": int(brand_new.sum()),
        "removed": len(parent_values) - int(found_in_parent.sum()) if replace else 0,
    }
    return TypeEntries(signal_type, values.take(kept), ids[keep]), stats


def merge_entries(
    parent: dict[str, TypeEntries] | None, new: dict[str, pa.Array], replace: bool, max_entry_id: int
) -> Merged:
    """The next version's entries: parent ∪ new (or new only when `replace`).

    Entries kept from the parent keep their ids; new ones are numbered after
    `max_entry_id` in (signal_type, value) order.
    """
    parent = parent or {}
    types = sorted(set(new) | (set() if replace else set(parent)))
    totals = {"duplicates": 0, "already_present": 0, "added": 0, "removed": 0}
    if replace:
        totals["removed"] = sum(len(p.ids) for t, p in parent.items() if t not in new)
    parts = []
    for signal_type in types:
        part, stats = _merge_type(
            signal_type, parent.get(signal_type), new.get(signal_type, pa.array([], _LARGE)), replace, max_entry_id
        )
        max_entry_id += stats["added"]
        for key, count in stats.items():
            totals[key] += count
        if len(part.ids):
            parts.append(part)
    return Merged(parts=parts, max_entry_id=max_entry_id, **totals)


def _chunks(part: TypeEntries):
    for start in range(0, len(part.ids), ROW_GROUP_ENTRIES):
        yield part.values.slice(start, ROW_GROUP_ENTRIES), part.ids[start : start + ROW_GROUP_ENTRIES]


def content_digest(parts: list[TypeEntries]) -> str:
    """sha256 over 'signal_type\\tvalue\\n' lines in entries order, computed in Arrow chunks."""
    digest = hashlib.sha256()
    tab, newline, nothing = (pa.scalar(text, _LARGE) for text in ("\t", "\n", ""))
    for part in parts:
        signal_type = pa.scalar(part.signal_type, _LARGE)
        for values, _ in _chunks(part):
            lines = pc.binary_join_element_wise(signal_type, tab, values, newline, nothing)
            offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)[lines.offset : lines.offset + len(lines) + 1]
            digest.update(memoryview(lines.buffers()[2])[int(offsets[0]) : int(offsets[-1])])
    return digest.hexdigest()


def write_entries(parts: list[TypeEntries], path: Path) -> None:
    with pq.ParquetWriter(path, ENTRIES_SCHEMA, compression="zstd") as writer:
        for part in parts:
            for values, ids in _chunks(part):
                types = pa.DictionaryArray.from_arrays(np.zeros(len(ids), np.int32), pa.array([part.signal_type]))
                batch = pa.record_batch(
                    [pa.array(ids, pa.int64()), types.cast(pa.string()), values.cast(pa.string())],
                    schema=ENTRIES_SCHEMA,
                )
                writer.write_batch(batch, row_group_size=ROW_GROUP_ENTRIES)


def parts_of(entries: pa.Table, counts: dict[str, int]) -> dict[str, TypeEntries]:
    """Split a version's entries (sorted by type) into per-type parts, using its manifest counts."""
    parts: dict[str, TypeEntries] = {}
    start = 0
    for signal_type in sorted(counts):
        rows = entries.slice(start, counts[signal_type])
        start += counts[signal_type]
        if len(rows) and rows["signal_type"][0].as_py() != signal_type:
            raise ValueError(f"entries are not sorted by signal type as the manifest says ({signal_type})")
        parts[signal_type] = TypeEntries(
            signal_type,
            rows["value"].cast(_LARGE).combine_chunks(),
            rows["entry_id"].to_numpy().astype(np.int64, copy=False),
        )
    return parts


_HEX_VALUES = np.full(256, 255, dtype=np.uint8)
_HEX_VALUES[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def _hex_keys(values: pa.Array, size: int) -> np.ndarray | None:
    """Bulk hex decode of validated lowercase digests; None if they are not all exactly that."""
    values = values.cast(_LARGE)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64)[values.offset : values.offset + len(values) + 1]
    data = np.frombuffer(values.buffers()[2], dtype=np.uint8)[int(offsets[0]) : int(offsets[-1])]
    if len(data) != len(values) * 2 * size:
        return None
    nibbles = _HEX_VALUES[data].reshape(len(values), 2 * size)
    if (nibbles == 255).any():
        return None
    return (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]


def index_keys(signal_type: str, values: pa.Array) -> np.ndarray:
    """The (n, key_size) keys the registry defines for these normalised values."""
    kind = registry.get(signal_type)
    size = kind.key_size
    if kind.index_key is hex_key and len(values):
        keys = _hex_keys(values, size)
        if keys is not None:
            return keys
    packed = b"".join(map(kind.index_key, values.to_pylist()))
    if len(packed) != len(values) * size:
        raise ValueError(f"{signal_type}: index_key returned keys of the wrong size")
    return np.frombuffer(packed, dtype=np.uint8).reshape(len(values), size)


def build_indexes(parts: list[TypeEntries], directory: Path) -> dict[str, dict]:
    """The index of each type that has one; returns the manifest's description of them."""
    described: dict[str, dict] = {}
    for part in parts:
        kind = registry.get(part.signal_type)
        if kind.index == "digest":
            DigestIndex.build(index_keys(part.signal_type, part.values), part.ids, directory, part.signal_type)
            described[part.signal_type] = {"stem": part.signal_type, "key_size": kind.key_size, "entries": len(part.ids)}
        elif kind.build_index is not None:
            directory.mkdir(parents=True, exist_ok=True)
            described[part.signal_type] = kind.build_index(part.values.to_pylist(), part.ids, directory, part.signal_type)
    return described
