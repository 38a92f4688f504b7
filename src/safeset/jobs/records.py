"""Run records: the withheld rows of a shard and of a whole run.

`removed.parquet` has one row per withheld sample with the reasons that
decided it. Schema is fixed so files from different shards concatenate;
`image_md5` and `image_sha256` (known when the run read or computed them)
came later, so files without them are read as if they were null.
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
        ("image_md5", pa.string()),
        ("image_sha256", pa.string()),
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


# Withheld rows are written out in groups of this many, so a shard that
# withholds millions of rows (a strict NSFW-score policy) needs little memory.
REMOVED_GROUP_ROWS = 65536


class RemovedRowsWriter:
    """Streams the withheld rows of one shard to `path` (temporary name until commit)."""

    def __init__(self, path: Path):
        self.path = path
        self._temp = temp_path(path)
        self._writer = pq.ParquetWriter(self._temp, REMOVED_SCHEMA, compression="zstd")
        self._columns: dict[str, list] = {name: [] for name in REMOVED_SCHEMA.names}
        self._pending = 0

    def add(self, *, key, source, position, url, canonical_url, action, reasons, image_md5=None,
            image_sha256=None) -> None:
        self._columns["key"].append(key)
        self._columns["source"].append(source)
        self._columns["position"].append(position)
        self._columns["url"].append(url)
        self._columns["url_sha256"].append(url_sha256(canonical_url))
        self._columns["image_md5"].append(image_md5)
        self._columns["image_sha256"].append(image_sha256)
        self._columns["action"].append(action)
        self._columns["reasons"].append(reasons)
        self._pending += 1
        if self._pending >= REMOVED_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.table(self._columns, schema=REMOVED_SCHEMA))
            self._columns = {name: [] for name in REMOVED_SCHEMA.names}
            self._pending = 0

    def commit(self) -> Path:
        self._flush()
        self._writer.close()
        return publish(self._temp, self.path)

    def abort(self) -> None:
        self._writer.close()
        self._temp.unlink(missing_ok=True)


def write_json_atomic(data: dict, path: Path, durable: bool = False) -> None:
    tmp = temp_path(path)
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if durable:
        flush_to_disk([tmp])
    publish(tmp, path)
    if durable:
        flush_to_disk([path])


def concat_removed(parts: list[Path], out: Path) -> int:
    """Concatenate shard records, in shard order, into one file; returns rows.

    Rows are gathered into row groups of REMOVED_GROUP_ROWS whatever the
    shards held (most hold a handful), so the file's layout, like its
    contents, depends only on the rows."""
    tmp = temp_path(out)
    rows = 0
    pending: list[pa.Table] = []
    pending_rows = 0
    with pq.ParquetWriter(tmp, REMOVED_SCHEMA, compression="zstd") as writer:
        for part in parts:
            for batch in pq.ParquetFile(part).iter_batches(batch_size=REMOVED_GROUP_ROWS):
                rows += batch.num_rows
                pending.append(with_removed_schema(batch))
                pending_rows += batch.num_rows
                while pending_rows >= REMOVED_GROUP_ROWS:
                    table = pa.concat_tables(pending)
                    writer.write_table(table.slice(0, REMOVED_GROUP_ROWS))
                    pending = [table.slice(REMOVED_GROUP_ROWS)]
                    pending_rows -= REMOVED_GROUP_ROWS
        if pending_rows:
            writer.write_table(pa.concat_tables(pending))
    publish(tmp, out)
    return rows


def with_removed_schema(batch: pa.RecordBatch) -> pa.Table:
    """A batch of withheld rows in today's schema: columns it lacks (older files) are null."""
    columns = [
        batch.column(field.name) if field.name in batch.schema.names else pa.nulls(batch.num_rows, field.type)
        for field in REMOVED_SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=REMOVED_SCHEMA)
