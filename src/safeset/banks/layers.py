"""Layered versions: a small addition to a big bank without rebuilding it.

A full version rewrites every entry and index. At ten million entries that is
a minute of work for one added hash, so an append to a big bank writes a
*layered* version instead: the parent's layers, hard-linked (their files are
immutable, so sharing them costs nothing and deleting the parent later
leaves them intact), plus one new layer holding only the added entries and
their indexes. Readers see the union (`BankVersion` composes the layers).

Layer sizes are kept falling geometrically, as in a log-structured merge
tree: after an addition, the trailing layers are merged into one while the
last is more than a quarter of the one before it. A version therefore has
O(log n) layers, a merge rewrites only small layers, and only when the
additions together reach a quarter of the base is everything merged back
into a full version (a compaction, amortised over all those additions).
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.banks.contents import TypeEntries, build_indexes, content_digest, index_keys, parts_of, write_entries
from safeset.banks.version import FULL_LAYER, BankVersion, Layer
from safeset.signals import registry

MERGE_RATIO = 4
LAYER_DIGEST_RULE = (
    "sha256 over '<parent version digest><LF><added digest>', where <added digest> is the content digest "
    "(sha256 over 'signal_type<TAB>value<LF>' lines, sorted) of the entries this version added; chained, "
    "so it changes whenever the content does"
)
_LARGE = pa.large_string()


# ---------------------------------------------------------------- reading


class LayeredDigestIndex:
    """Exact lookup over one `DigestIndex` per layer, answering like a single one."""

    def __init__(self, parts: list):
        self.parts = parts
        self.key_size = parts[0].key_size

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def lookup(self, queries: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All (row, entry_id) pairs, rows ascending (see `DigestIndex.lookup`)."""
        found = [hit for part in self.parts if len((hit := part.lookup(queries, valid))[0])]
        if len(found) <= 1:  # the usual case: found in no layer or in one
            return found[0] if found else (np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        rows = np.concatenate([rows for rows, _ in found])
        ids = np.concatenate([ids for _, ids in found])
        order = np.argsort(rows, kind="stable")
        return rows[order], ids[order]


class LayeredSearchIndex:
    """A type's own index (e.g. PDQ's) over several layers: `search` answers for their union."""

    def __init__(self, parts: list):
        self.parts = parts

    def search(self, queries: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All (query row, entry id, distance) within `threshold`, query rows ascending."""
        found = [hit for part in self.parts if len((hit := part.search(queries, threshold))[0])]
        if len(found) <= 1:
            return found[0] if found else tuple(np.empty(0, dtype=np.int64) for _ in range(3))
        rows, ids, distances = (np.concatenate([hit[i] for hit in found]) for i in range(3))
        order = np.argsort(rows, kind="stable")
        return rows[order], ids[order], distances[order]


def present(version: BankVersion, signal_type: str, values: pa.Array) -> np.ndarray:
    """Which of these normalised values the version already holds (bool per value).

    Uses the version's indexes, so asking about a few values of a ten-million
    entry bank reads a few pages, not the bank.
    """
    if len(values) == 0 or not version.manifest["counts"].get(signal_type):
        return np.zeros(len(values), dtype=bool)
    kind = registry.get(signal_type)
    mask = np.zeros(len(values), dtype=bool)
    if kind.index == "digest":
        rows, _ = version.digest_index(signal_type).lookup(index_keys(signal_type, values))
        mask[rows] = True
    elif kind.index == "pdq":
        from safeset.pdq.index import hex_to_hashes

        rows, _, _ = version.own_index(signal_type).search(hex_to_hashes(values.to_pylist()), 0)
        mask[rows] = True
    else:  # domain, term: banks of these are small; compare the values themselves
        held = pa.array(version.values(signal_type), _LARGE)
        mask[:] = pc.is_in(values.cast(_LARGE), value_set=held).to_numpy(zero_copy_only=False)
    return mask


# ---------------------------------------------------------------- writing


@dataclass
class Addition:
    """Entries new to a bank, numbered, and what the input held besides them."""

    parts: list[TypeEntries]
    duplicates: int
    already_present: int
    max_entry_id: int

    @property
    def added(self) -> int:
        return sum(len(part.ids) for part in self.parts)


def new_entries(parent: BankVersion, new: dict[str, pa.Array], max_entry_id: int) -> Addition:
    """The input's distinct values the parent lacks, numbered after `max_entry_id`.

    Numbered in (signal_type, value) order, exactly as a full merge numbers them.
    """
    parts, duplicates, already_present = [], 0, 0
    for signal_type in sorted(new):
        values = new[signal_type].cast(_LARGE)
        unique = pc.unique(values)
        duplicates += len(values) - len(unique)
        unique = unique.take(pc.sort_indices(unique))
        held = present(parent, signal_type, unique)
        already_present += int(held.sum())
        fresh = unique.filter(pa.array(~held))
        if len(fresh):
            ids = max_entry_id + np.arange(1, len(fresh) + 1, dtype=np.int64)
            max_entry_id += len(fresh)
            parts.append(TypeEntries(signal_type, fresh, ids))
    return Addition(parts, duplicates, already_present, max_entry_id)


def layers_to_merge(sizes: list[int], added: int) -> int:
    """How many trailing layers of `sizes` merge with a new layer of `added` entries.

    Equal to len(sizes) when everything merges (the version becomes full again).
    """
    merged, taken = added, 0
    while taken < len(sizes) and merged * MERGE_RATIO > sizes[-1 - taken]:
        merged += sizes[-1 - taken]
        taken += 1
    return taken


def union_parts(groups: list[list[TypeEntries]]) -> list[TypeEntries]:
    """Per type, the union of disjoint parts, sorted by value (ids travel with their values)."""
    by_type: dict[str, list[TypeEntries]] = {}
    for group in groups:
        for part in group:
            by_type.setdefault(part.signal_type, []).append(part)
    merged = []
    for signal_type in sorted(by_type):
        pieces = by_type[signal_type]
        values = pa.concat_arrays([piece.values.cast(_LARGE) for piece in pieces])
        ids = np.concatenate([piece.ids for piece in pieces])
        order = pc.sort_indices(values).to_numpy()
        merged.append(TypeEntries(signal_type, values.take(order), ids[order]))
    return merged


def layer_parts(layer: Layer) -> list[TypeEntries]:
    return list(parts_of(layer.entries(), layer.counts).values())


def write_layer(parts: list[TypeEntries], directory: Path) -> dict[str, dict]:
    """entries.parquet and indexes of one layer; returns the index description."""
    directory.mkdir(parents=True)
    write_entries(parts, directory / "entries.parquet")
    return build_indexes(parts, directory / "index")


def link_layer(layer: Layer, directory: Path) -> None:
    """Give `directory` the layer's files by hard link (a copy where links are impossible)."""
    sources = [layer.path / "entries.parquet"]
    index_dir = layer.path / "index"
    if index_dir.is_dir():
        sources += sorted(p for p in index_dir.rglob("*") if p.is_file())
    for source in sources:
        target = directory / source.relative_to(layer.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)


def layer_name(layer: Layer, parent_version: int) -> str:
    """A layer's directory name inside a layered version: a full parent's files become layer <parent>."""
    return f"layers/{parent_version:06d}" if layer.name == FULL_LAYER else layer.name


def layer_description(name: str, parts_or_layer, index: dict[str, dict] | None = None) -> dict:
    if isinstance(parts_or_layer, Layer):
        counts, index = dict(parts_or_layer.counts), dict(parts_or_layer.index)
    else:
        counts = {part.signal_type: len(part.ids) for part in parts_or_layer if len(part.ids)}
    return {"dir": name, "entries": sum(counts.values()), "counts": counts, "index": index or {}}


def chained_digest(parent_digest: str, added: list[TypeEntries]) -> str:
    """See LAYER_DIGEST_RULE."""
    return hashlib.sha256(f"{parent_digest}\n{content_digest(added)}".encode()).hexdigest()
