"""The removal-list file: which samples to remove, in a form anyone can share.

A removal list is a parquet file with four nullable string columns, hex in
lower case: `url_sha256` (SHA-256 of the canonical URL, as in the run
records' `removed.parquet`), `image_sha256`, `image_md5` and `key`. Its
schema metadata under `b"safeset.removal_list"` is JSON:

    {"format": 1, "source_dataset": str, "source_version": str | null,
     "created": ISO-8601 UTC, "total": rows, "decoys": K (0: real removals only),
     "kind": "published" | "diff"}

Nothing in the file tells decoys from real removals: same columns, no flag,
rows in an order that depends on their content only. Readers (`apply`,
lineage) go through `read_removal_list`, which checks all of this and names
the file in every complaint.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from safeset.datasets.writing import discard, publish, temp_path
from safeset.errors import InputError

COLUMNS = ("url_sha256", "image_sha256", "image_md5", "key")
SCHEMA = pa.schema([(name, pa.string()) for name in COLUMNS])
METADATA_KEY = b"safeset.removal_list"
FORMAT_VERSION = 1
KINDS = ("published", "diff")
HEX_SIZES = {"url_sha256": 32, "image_sha256": 32, "image_md5": 16}  # bytes; `key` is free text
READ_BATCH_ROWS = 1 << 16
WRITE_GROUP_ROWS = 1 << 20


def list_metadata(*, source_dataset: str, source_version: str | None, total: int, decoys: int, kind: str,
                  created: datetime | None = None) -> dict:
    """The metadata a list carries; `created` defaults to now (UTC, whole seconds)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    stamp = (created or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return {
        "format": FORMAT_VERSION,
        "source_dataset": str(source_dataset),
        "source_version": source_version,
        "created": stamp.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "total": int(total),
        "decoys": int(decoys),
        "kind": kind,
    }


def _check_metadata(path: Path, raw: bytes | None, rows: int) -> dict:
    if raw is None:
        raise InputError(path, None, "not a removal list: no safeset.removal_list metadata "
                                     "(make one with `safeset removals publish` or `safeset removals diff`)")
    try:
        metadata = json.loads(raw)
    except ValueError as exc:
        raise InputError(path, "metadata", f"safeset.removal_list is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise InputError(path, "metadata", "safeset.removal_list must be a JSON object")
    if metadata.get("format") != FORMAT_VERSION:
        raise InputError(path, "metadata", f"removal list format {metadata.get('format')!r} is not supported "
                                           f"(this safeset reads format {FORMAT_VERSION})")
    expected = {"source_dataset": str, "created": str, "total": int, "decoys": int, "kind": str}
    for field, kind in expected.items():
        value = metadata.get(field)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(path, "metadata", f"`{field}` must be a {kind.__name__}, not {value!r}")
    if metadata.get("source_version") is not None and not isinstance(metadata["source_version"], str):
        raise InputError(path, "metadata", "`source_version` must be a string or null")
    if metadata["kind"] not in KINDS:
        raise InputError(path, "metadata", f"`kind` must be one of {', '.join(KINDS)}, not {metadata['kind']!r}")
    if metadata["total"] != rows:
        raise InputError(path, "metadata", f"`total` says {metadata['total']} rows, the file holds {rows}")
    return metadata


def _check_columns(path: Path, schema: pa.Schema) -> None:
    missing = [name for name in COLUMNS if name not in schema.names]
    if missing:
        raise InputError(path, None, f"removal list lacks column(s) {', '.join(missing)} "
                                     f"(columns: {', '.join(schema.names) or 'none'})")
    for name in COLUMNS:
        kind = schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise InputError(path, f"column {name}", f"must hold text (hex digests or keys), not {kind}")


def open_removal_list(path: str | Path) -> tuple[dict, pq.ParquetFile]:
    """Check a file is a removal list; returns its metadata and the open parquet file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, None, "no such removal list file")
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, None, f"not a removal list: not a readable parquet file ({exc})") from None
    file_metadata = parquet.metadata.metadata or {}
    metadata = _check_metadata(path, file_metadata.get(METADATA_KEY), parquet.metadata.num_rows)
    _check_columns(path, parquet.schema_arrow)
    return metadata, parquet


def read_removal_list(path: str | Path, batch_rows: int = READ_BATCH_ROWS) -> tuple[dict, Iterator[pa.RecordBatch]]:
    """(metadata dict, iterator of record batches with exactly the four list columns).

    The batches stream the file (memory is bounded by `batch_rows`); a file
    that is not a removal list raises InputError naming it.
    """
    metadata, parquet = open_removal_list(path)
    return metadata, _batches(Path(path), parquet, batch_rows)


def _batches(path: Path, parquet: pq.ParquetFile, batch_rows: int) -> Iterator[pa.RecordBatch]:
    rows = 0
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=list(COLUMNS)):
            yield pa.RecordBatch.from_arrays([batch.column(name).cast(pa.string()) for name in COLUMNS],
                                             schema=SCHEMA)
            rows += batch.num_rows
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, f"after row {rows}", f"corrupt removal list ({exc})") from None
    finally:
        parquet.close()


class RemovalListWriter:
    """Writes a removal list under a temporary name; `commit` renames it into place.

    The metadata (with its `total`) is known before the first row: it is part
    of the schema, so every parquet reader sees it.
    """

    def __init__(self, path: str | Path, metadata: dict):
        self.path = Path(path)
        self.metadata = metadata
        self._temp = temp_path(self.path)
        schema = SCHEMA.with_metadata({METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()})
        # Digests and keys do not repeat: a dictionary would only be built and dropped.
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self._temp, schema, compression="zstd",
                                                                 use_dictionary=False)
        self.rows = 0

    def write(self, table: pa.Table | pa.RecordBatch) -> None:
        if not table.num_rows:
            return
        if isinstance(table, pa.RecordBatch):
            table = pa.Table.from_batches([table])
        table = table.select(list(COLUMNS)).cast(SCHEMA)
        self._writer.write_table(table, row_group_size=WRITE_GROUP_ROWS)
        self.rows += table.num_rows

    def commit(self) -> Path:
        if self.rows != self.metadata["total"]:
            self.abort()
            raise AssertionError(f"removal list {self.path}: wrote {self.rows} rows, metadata says "
                                 f"{self.metadata['total']}")
        self._writer.close()
        self._writer = None
        return publish(self._temp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        discard(self._temp)
