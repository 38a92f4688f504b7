"""Run records: the withheld rows of a shard and of a whole run.

`removed.parquet` has one row per withheld sample with the reasons that
decided it. Schema is fixed so files from different shards concatenate.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from safeset.datasets.writing import flush_to_disk, publish, temp_path
from safeset.evidence import Evidence

REASON_TYPE = pa.struct(
    [
        ("rule", pa.string()),
        ("signal_type", pa.string()),
        ("bank", pa.string()),
        ("bank_version", pa.int64()),
        ("value", pa.string()),
        ("distance", pa.int64()),
    ]
)

REMOVED_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source", pa.string()),
        ("position", pa.int64()),
        ("url", pa.string()),
        ("url_sha256", pa.string()),
        ("action", pa.string()),
        ("reasons", pa.list_(REASON_TYPE)),
    ]
)


def reason_record(rule: str, item: Evidence) -> dict:
    return {
        "rule": rule,
        "signal_type": item.signal_type,
        "bank": item.bank,
        "bank_version": item.bank_version,
        "value": item.value,
        "distance": item.distance,
    }


def url_sha256(canonical_url: str | None) -> str | None:
    if canonical_url is None:
        return None
    return hashlib.sha256(canonical_url.encode("utf-8", "surrogatepass")).hexdigest()


class RemovedRows:
    """Accumulates withheld rows of one shard (few) as Python lists."""

    def __init__(self):
        self.columns: dict[str, list] = {name: [] for name in REMOVED_SCHEMA.names}

    def add(self, *, key, source, position, url, canonical_url, action, reasons) -> None:
        self.columns["key"].append(key)
        self.columns["source"].append(source)
        self.columns["position"].append(position)
        self.columns["url"].append(url)
        self.columns["url_sha256"].append(url_sha256(canonical_url))
        self.columns["action"].append(action)
        self.columns["reasons"].append(reasons)

    def table(self) -> pa.Table:
        return pa.table(self.columns, schema=REMOVED_SCHEMA)


def write_parquet_atomic(table: pa.Table, path: Path) -> None:
    tmp = temp_path(path)
    pq.write_table(table, tmp, compression="zstd")
    publish(tmp, path)


def write_json_atomic(data: dict, path: Path, durable: bool = False) -> None:
    tmp = temp_path(path)
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if durable:
        flush_to_disk([tmp])
    publish(tmp, path)
    if durable:
        flush_to_disk([path])


def concat_removed(parts: list[Path], out: Path) -> int:
    """Concatenate shard records, in shard order, into one file; returns rows."""
    tmp = temp_path(out)
    rows = 0
    with pq.ParquetWriter(tmp, REMOVED_SCHEMA, compression="zstd") as writer:
        for part in parts:
            table = pq.read_table(part, schema=REMOVED_SCHEMA)
            rows += table.num_rows
            if table.num_rows:
                writer.write_table(table)
    publish(tmp, out)
    return rows
