"""One immutable bank version as readers see it: manifest, entries, indexes.

Everything is read lazily and nothing is ever written here: a version
directory is complete before it becomes visible (see `store`).

A version is one *layer* (a full version: `entries.parquet` and `index/` at
the top of its directory) or several (a layered version: `layers/<NNNNNN>/`
each holding its own `entries.parquet` and `index/`, the manifest listing
them). Layers hold disjoint entries; readers see their union, so a small
addition to a big bank costs indexes for the addition only (see
`safeset.banks.layers`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.banks.digest_index import DigestIndex
from safeset.errors import ConfigError, InputError
from safeset.signals import registry

FULL_LAYER = "."


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(path, None, f"unreadable store file ({exc}); the store may be damaged") from None


@dataclass(frozen=True)
class VersionInfo:
    name: str
    version: int
    created: str
    digest: str
    entries: int
    counts: dict[str, int]
    parent_version: int | None
    note: str | None
    source: dict

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Layer:
    """One directory of entries and their indexes: a whole version, or one layer of it."""

    def __init__(self, path: Path, name: str, counts: dict[str, int], index: dict[str, dict]):
        self.path = path
        self.name = name  # FULL_LAYER, or "layers/NNNNNN" inside a layered version
        self.counts = {t: int(n) for t, n in counts.items() if int(n)}
        self.index = index
        self.entries_count = sum(self.counts.values())
        self._entries: pa.Table | None = None
        self._by_type: dict[str, pa.Table] = {}
        self._indexes: dict[str, object] = {}

    def entries(self) -> pa.Table:
        if self._entries is None:
            self._entries = pq.read_table(self.path / "entries.parquet")
        return self._entries

    def of_type(self, signal_type: str) -> pa.Table:
        """entry_id and value of one type: a contiguous slice, since entries are sorted by type."""
        if signal_type not in self._by_type:
            start = sum(self.counts[other] for other in self.counts if other < signal_type)
            count = self.counts.get(signal_type, 0)
            if self._entries is not None:
                table = self._entries.slice(start, count)
            else:
                table = self._read_rows(start, count)
            self._by_type[signal_type] = table.select(["entry_id", "value"])
        return self._by_type[signal_type]

    def _read_rows(self, start: int, count: int) -> pa.Table:
        """Rows [start, start+count) of entries.parquet, reading only the row groups that hold them."""
        parquet = pq.ParquetFile(self.path / "entries.parquet")
        groups, first_row, row = [], 0, 0
        for group in range(parquet.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            if row + rows > start and row < start + count:
                first_row = row if not groups else first_row
                groups.append(group)
            row += rows
        if not groups:
            return parquet.schema_arrow.empty_table()
        return parquet.read_row_groups(groups).slice(start - first_row, count)

    def digest_index(self, signal_type: str, key_size: int) -> DigestIndex:
        if signal_type not in self._indexes:
            described = self.index.get(signal_type)
            if described is None:
                self._indexes[signal_type] = DigestIndex.empty(key_size)
            else:
                self._indexes[signal_type] = DigestIndex.load(self.path / "index", described["stem"])
        return self._indexes[signal_type]

    def own_index(self, signal_type: str):
        if signal_type not in self._indexes:
            described = self.index.get(signal_type)
            if described is None:
                return None
            self._indexes[signal_type] = registry.get(signal_type).load_index(self.path / "index", described)
        return self._indexes[signal_type]


class BankVersion:
    """One immutable version of a bank, read lazily from its directory."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.version: int = int(manifest["version"])
        self.digest: str = manifest["digest"]
        self._layers = _layers_of(path, manifest)
        self._entries: pa.Table | None = None
        self._by_type: dict[str, pa.Table] = {}
        self._indexes: dict[str, object] = {}

    def __repr__(self) -> str:
        return f"BankVersion({self.name!r}, version={self.version}, entries={self.manifest['entries']})"

    @property
    def layers(self) -> list[Layer]:
        """The layers whose union is this version (one for a full version)."""
        return list(self._layers)

    @property
    def layered(self) -> bool:
        return "layers" in self.manifest

    def entries(self) -> pa.Table:
        """All entries, sorted by (signal_type, value)."""
        if self._entries is None:
            if len(self._layers) == 1:
                self._entries = self._layers[0].entries()
            else:
                union = pa.concat_tables([layer.entries() for layer in self._layers])
                self._entries = union.sort_by([("signal_type", "ascending"), ("value", "ascending")])
        return self._entries

    def signal_types(self) -> list[str]:
        return sorted(t for t, n in self.manifest["counts"].items() if n)

    def _of_type(self, signal_type: str) -> pa.Table:
        if signal_type not in self._by_type:
            holding = [layer for layer in self._layers if layer.counts.get(signal_type)]
            if len(holding) <= 1:
                layer = holding[0] if holding else self._layers[0]
                table = layer.of_type(signal_type)
            else:
                table = pa.concat_tables([layer.of_type(signal_type) for layer in holding])
                table = table.sort_by([("value", "ascending")])
            self._by_type[signal_type] = table
        return self._by_type[signal_type]

    def values(self, signal_type: str) -> list[str]:
        """Normalised values of one type, sorted (for domain and term matchers)."""
        return self._of_type(signal_type)["value"].to_pylist()

    def entry_ids(self, signal_type: str) -> np.ndarray:
        """Entry ids aligned with `values(signal_type)`."""
        return self._of_type(signal_type)["entry_id"].to_numpy().astype(np.int64, copy=False)

    def entry_id(self, signal_type: str, value: str) -> int | None:
        """The id of one entry given in any accepted spelling, or None if absent.

        Asked through the type's index where it has one, so it costs the same
        in a bank of ten entries or ten million.
        """
        kind = registry.get(signal_type)
        try:
            normal = kind.validate(value)
        except ValueError:
            return None
        if not self.manifest["counts"].get(signal_type):
            return None
        if kind.index == "digest":
            from safeset.banks.contents import index_keys

            _, ids = self.digest_index(signal_type).lookup(index_keys(signal_type, pa.array([normal], pa.large_string())))
            return int(ids[0]) if len(ids) else None
        if kind.index == "pdq":
            from safeset.pdq.index import hex_to_hashes

            _, ids, _ = self.own_index(signal_type).search(hex_to_hashes([normal]), 0)
            return int(ids[0]) if len(ids) else None
        table = self._of_type(signal_type)
        found = table.filter(pc.equal(table["value"], normal))
        return int(found["entry_id"][0].as_py()) if len(found) else None

    def find_entry(self, entry_id: int) -> tuple[str, str] | None:
        """(signal_type, value) of the entry with this id, or None; reads each layer once, sorts nothing."""
        for layer in self._layers:
            table = layer.entries()
            found = table.filter(pc.equal(table["entry_id"], int(entry_id)))
            if len(found):
                return found["signal_type"][0].as_py(), found["value"][0].as_py()
        return None

    def digest_index(self, signal_type: str):
        """The exact index for a digest type, memory-mapped (empty if the bank has none of it).

        A layered version answers through one index per layer (`LayeredDigestIndex`).
        """
        if signal_type not in self._indexes:
            kind = registry.get(signal_type)
            if kind.index != "digest":
                raise ConfigError(f"signal type {signal_type!r} is matched by {kind.index}, not by digest index")
            key_size = kind.key_size or 16
            parts = [layer.digest_index(signal_type, key_size) for layer in self._layers if signal_type in layer.index]
            if not parts:
                self._indexes[signal_type] = DigestIndex.empty(key_size)
            elif len(parts) == 1:
                self._indexes[signal_type] = parts[0]
            else:
                from safeset.banks.layers import LayeredDigestIndex

                self._indexes[signal_type] = LayeredDigestIndex(parts)
        return self._indexes[signal_type]

    def own_index(self, signal_type: str):
        """The index a type builds for itself (see `SignalType.build_index`), opened once."""
        if signal_type not in self._indexes:
            kind = registry.get(signal_type)
            if kind.load_index is None:
                raise ConfigError(f"signal type {signal_type!r} has no index of its own")
            parts = [found for layer in self._layers if (found := layer.own_index(signal_type)) is not None]
            if not parts:
                raise ConfigError(f"bank {self.name} version {self.version} holds no {signal_type} entries")
            if len(parts) == 1:
                self._indexes[signal_type] = parts[0]
            else:
                from safeset.banks.layers import LayeredSearchIndex

                self._indexes[signal_type] = LayeredSearchIndex(parts)
        return self._indexes[signal_type]

    def info(self) -> VersionInfo:
        m = self.manifest
        return VersionInfo(
            m["name"], int(m["version"]), m["created"], m["digest"], int(m["entries"]), dict(m["counts"]),
            m.get("parent_version"), m.get("note"), dict(m.get("source", {})),
        )


def _layers_of(path: Path, manifest: dict) -> list[Layer]:
    described = manifest.get("layers")
    if described is None:
        return [Layer(path, FULL_LAYER, dict(manifest["counts"]), dict(manifest.get("index", {})))]
    try:
        return [Layer(path / d["dir"], d["dir"], dict(d["counts"]), dict(d.get("index", {}))) for d in described]
    except (KeyError, TypeError) as exc:
        raise InputError(path / "manifest.json", "layers", f"malformed layer list ({exc!r}); the store may be damaged") from None


def load_version(path: Path) -> BankVersion:
    return BankVersion(path, read_json(path / "manifest.json"))
