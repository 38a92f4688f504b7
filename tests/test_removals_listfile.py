"""The removal-list file format: what `read_removal_list` accepts and how it complains."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeset.errors import InputError
from safeset.removals.listfile import (
    COLUMNS,
    METADATA_KEY,
    RemovalListWriter,
    list_metadata,
    read_removal_list,
)

ROWS = {
    "url_sha256": ["ab" * 32, None, "cd" * 32],
    "image_sha256": [None, "ef" * 32, None],
    "image_md5": ["01" * 16, None, None],
    "key": ["000010001", "k2", None],
}


def write_list(path, rows=ROWS, **overrides):
    metadata = list_metadata(source_dataset="demo", source_version="1", total=len(rows["key"]), decoys=0,
                             kind="published")
    metadata.update(overrides)
    writer = RemovalListWriter(path, metadata)
    writer.write(pa.table(rows))
    writer.commit()
    return metadata


def test_round_trip_keeps_rows_and_metadata(tmp_path):
    path = tmp_path / "list.parquet"
    metadata = write_list(path)
    read_metadata, batches = read_removal_list(path, batch_rows=2)
    assert read_metadata == metadata
    assert metadata["created"].endswith("Z") and metadata["format"] == 1
    table = pa.Table.from_batches(list(batches))
    assert table.column_names == list(COLUMNS)
    assert table.to_pydict() == ROWS
    # Any parquet reader sees the metadata in the schema.
    assert json.loads(pq.read_schema(path).metadata[METADATA_KEY]) == metadata
    assert not list(tmp_path.glob("*.tmp-*"))


def test_writer_refuses_a_total_that_does_not_match(tmp_path):
    writer = RemovalListWriter(tmp_path / "list.parquet", list_metadata(
        source_dataset="d", source_version=None, total=5, decoys=0, kind="diff"))
    writer.write(pa.table(ROWS))
    with pytest.raises(AssertionError):
        writer.commit()
    assert list(tmp_path.iterdir()) == []


def plain_parquet(path, table, metadata: dict | None):
    if metadata is not None:
        table = table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata).encode()})
    pq.write_table(table, path)
    return path


GOOD = {"format": 1, "source_dataset": "d", "source_version": None, "created": "2024-01-01T00:00:00Z",
        "total": 3, "decoys": 0, "kind": "published"}


@pytest.mark.parametrize(
    "table, metadata, message",
    [
        (pa.table(ROWS), None, "not a removal list"),
        (pa.table(ROWS), "not json", "not valid JSON"),
        (pa.table(ROWS), {**GOOD, "format": 2}, "format 2 is not supported"),
        (pa.table(ROWS), {**GOOD, "kind": "other"}, "`kind` must be one of"),
        (pa.table(ROWS), {**GOOD, "total": 4}, "the file holds 3"),
        (pa.table(ROWS), {**GOOD, "decoys": "3"}, "`decoys` must be a int"),
        (pa.table({k: v for k, v in ROWS.items() if k != "key"}), GOOD, "lacks column(s) key"),
        (pa.table({**ROWS, "key": [1, 2, 3]}), GOOD, "must hold text"),
    ],
)
def test_files_that_are_not_removal_lists_are_named_in_the_error(tmp_path, table, metadata, message):
    path = tmp_path / "x.parquet"
    if isinstance(metadata, str):
        pq.write_table(table.replace_schema_metadata({METADATA_KEY: metadata.encode()}), path)
    else:
        plain_parquet(path, table, metadata)
    with pytest.raises(InputError) as caught:
        read_removal_list(path)
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_missing_and_non_parquet_files(tmp_path):
    with pytest.raises(InputError, match="no such removal list"):
        read_removal_list(tmp_path / "absent.parquet")
    text = tmp_path / "list.txt"
    text.write_text("url_sha256\nabc\n")
    with pytest.raises(InputError, match="not a readable parquet file"):
        read_removal_list(text)
