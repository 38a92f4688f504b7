"""Run records stream: a shard's withheld rows are written group by group."""

import pyarrow.parquet as pq

from safeset.jobs import records


def test_withheld_rows_stream_in_groups_and_concatenate_in_order(tmp_path, monkeypatch):
    monkeypatch.setattr(records, "REMOVED_GROUP_ROWS", 3)
    parts = []
    for shard in range(2):
        writer = records.RemovedRowsWriter(tmp_path / f"s{shard}.removed.parquet")
        for position in range(7):
            writer.add(key=f"{shard}-{position}", source=f"s{shard}", position=position, url=None,
                       canonical_url=None, action="remove", reasons=[])
        assert not writer.path.exists(), "nothing under the final name before commit"
        parts.append(writer.commit())
        assert pq.ParquetFile(parts[-1]).metadata.num_row_groups == 3
    assert records.concat_removed(parts, tmp_path / "removed.parquet") == 14
    keys = pq.read_table(tmp_path / "removed.parquet").column("key").to_pylist()
    assert keys == [f"{s}-{p}" for s in range(2) for p in range(7)]
    assert not list(tmp_path.glob("*.tmp-*"))


def test_aborted_writer_leaves_nothing(tmp_path):
    writer = records.RemovedRowsWriter(tmp_path / "x.removed.parquet")
    writer.add(key="k", source="s", position=0, url="https://example.com/a", canonical_url="https://example.com/a",
               action="review", reasons=[])
    writer.abort()
    assert list(tmp_path.iterdir()) == []
