"""One immutable bank version as readers see it: manifest, entries, indexes.

Everything is read lazily and nothing is ever written here: a version
directory is complete before it becomes visible (see `store`).
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


class BankVersion:
    """One immutable version of a bank, read lazily from its directory."""

    def __init__(self, path: Path, manifest: dict):
        self.path = path
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.version: int = int(manifest["version"])
        self.digest: str = manifest["digest"]
        self._entries: pa.Table | None = None
        self._by_type: dict[str, pa.Table] = {}
        self._indexes: dict[str, DigestIndex] = {}

    def __repr__(self) -> str:
        return f"BankVersion({self.name!r}, version={self.version}, entries={self.manifest['entries']})"

    def entries(self) -> pa.Table:
        if self._entries is None:
            self._entries = pq.read_table(self.path / "entries.parquet")
        return self._entries

    def signal_types(self) -> list[str]:
        return sorted(t for t, n in self.manifest["counts"].items() if n)

    def _of_type(self, signal_type: str) -> pa.Table:
        """entry_id and value of one type: a contiguous slice, since entries are sorted by type."""
        if signal_type not in self._by_type:
            counts = self.manifest["counts"]
            start = sum(counts[other] for other in counts if other < signal_type)
            count = counts.get(signal_type, 0)
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

    def values(self, signal_type: str) -> list[str]:
        """Normalised values of one type, sorted (for domain and term matchers)."""
        return self._of_type(signal_type)["value"].to_pylist()

    def entry_ids(self, signal_type: str) -> np.ndarray:
        """Entry ids aligned with `values(signal_type)`."""
        return self._of_type(signal_type)["entry_id"].to_numpy().astype(np.int64, copy=False)

    def entry_id(self, signal_type: str, value: str) -> int | None:
        """The id of one entry given in any accepted spelling, or None if absent."""
        try:
            normal = registry.get(signal_type).validate(value)
        except ValueError:
            return None
        table = self._of_type(signal_type)
        found = table.filter(pc.equal(table["value"], normal))
        return int(found["entry_id"][0].as_py()) if len(found) else None

    def digest_index(self, signal_type: str) -> DigestIndex:
        """The exact index for a digest type, memory-mapped (empty if the bank has none of it)."""
        if signal_type not in self._indexes:
            kind = registry.get(signal_type)
            if kind.index != "digest":
                raise ConfigError(f"signal type {signal_type!r} is matched by {kind.index}, not by digest index")
            described = self.manifest.get("index", {}).get(signal_type)
            if described is None:
                self._indexes[signal_type] = DigestIndex.empty(kind.key_size or 16)
            else:
                self._indexes[signal_type] = DigestIndex.load(self.path / "index", described["stem"])
        return self._indexes[signal_type]

    def own_index(self, signal_type: str):
        """The index a type builds for itself (see `SignalType.build_index`), opened once."""
        if signal_type not in self._indexes:
            kind = registry.get(signal_type)
            if kind.load_index is None:
                raise ConfigError(f"signal type {signal_type!r} has no index of its own")
            described = self.manifest.get("index", {}).get(signal_type)
            if described is None:
                raise ConfigError(f"bank {self.name} version {self.version} holds no {signal_type} entries")
            self._indexes[signal_type] = kind.load_index(self.path / "index", described)
        return self._indexes[signal_type]

    def info(self) -> VersionInfo:
        m = self.manifest
        return VersionInfo(
            m["name"], int(m["version"]), m["created"], m["digest"], int(m["entries"]), dict(m["counts"]),
            m.get("parent_version"), m.get("note"), dict(m.get("source", {})),
        )


def load_version(path: Path) -> BankVersion:
    return BankVersion(path, read_json(path / "manifest.json"))
