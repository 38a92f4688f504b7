from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets_util import all_keys, all_positions, run_shard

from safeset.datasets.base import Batch, ColumnOverrides, ReadOptions, Shard
from safeset.datasets.parquet import MAX_ROW_GROUP_ROWS, ParquetFormat
from safeset.errors import ConfigError, InputError

FMT = ParquetFormat()


def laion_table(rows: int) -> pa.Table:
    """LAION-like metadata with nulls and columns the scan never looks at."""
    ids = np.arange(rows)
    table = pa.table({
        "URL": [f"https://example.com/img/{i}.jpg" for i in ids],
        "TEXT": [None if i % 7 == 3 else f"a placeholder caption {i}" for i in ids],
        "WIDTH": pa.array([None if i % 5 == 0 else int(100 + i) for i in ids], type=pa.int32()),
        "similarity": (ids % 10) / 10.0,
        "punsafe": pa.array(ids / rows, type=pa.float32()),
        "tags": [["a", "b"][: i % 3] for i in ids],
    })
    return table.replace_schema_metadata({"origin": "safeset-test", "note": "benign"})


def make_shard(tmp_path: Path, table: pa.Table, relpath="part-00000.parquet", **write_options) -> Shard:
    path = tmp_path / "in" / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    write_options.setdefault("row_group_size", 40)
    pq.write_table(table, path, **write_options)
    return Shard(root=tmp_path / "in", relpath=relpath, format="parquet")


def every_third_removed(batch):
    return batch.positions % 3 != 1


@pytest.mark.parametrize("codec", ["zstd", "gzip", "snappy", "none"])
def test_round_trip_keeps_exactly_the_kept_rows(tmp_path, codec):
    table = laion_table(150)
    shard = make_shard(tmp_path, table, compression=codec)
    _, paths = run_shard(FMT, shard, tmp_path / "out", every_third_removed, ReadOptions(batch_rows=16))

    assert paths == [tmp_path / "out" / shard.relpath]
    out = pq.ParquetFile(paths[0])
    expected = table.filter(pa.array(np.arange(150) % 3 != 1))
    got = out.read()
    assert got.equals(expected)
    assert got.schema.metadata[b"origin"] == b"safeset-test"
    assert out.schema_arrow.equals(pq.ParquetFile(shard.path).schema_arrow, check_metadata=True)
    source_codec = pq.ParquetFile(shard.path).metadata.row_group(0).column(0).compression
    assert out.metadata.row_group(0).column(0).compression == source_codec
    # the kept rows of each input row group (40 rows) make one output row group
    sizes = [out.metadata.row_group(i).num_rows for i in range(out.metadata.num_row_groups)]
    kept_per_group = [int(np.sum(np.arange(s, min(s + 40, 150)) % 3 != 1)) for s in range(0, 150, 40)]
    assert sizes == kept_per_group == [27, 26, 27, 20]


def test_output_bytes_do_not_depend_on_batching(tmp_path):
    shard = make_shard(tmp_path, laion_table(200), compression="zstd")
    _, [first] = run_shard(FMT, shard, tmp_path / "a", every_third_removed, ReadOptions(batch_rows=7))
    _, [second] = run_shard(FMT, shard, tmp_path / "b", every_third_removed, ReadOptions(batch_rows=7))
    _, [third] = run_shard(FMT, shard, tmp_path / "c", every_third_removed, ReadOptions(batch_rows=64))
    assert first.read_bytes() == second.read_bytes() == third.read_bytes()


def test_all_rows_removed_gives_a_valid_empty_file_with_the_schema(tmp_path):
    table = laion_table(30)
    shard = make_shard(tmp_path, table)
    _, [path] = run_shard(FMT, shard, tmp_path / "out", lambda b: np.zeros(b.num_rows, bool))
    out = pq.read_table(path)
    assert out.num_rows == 0
    assert out.schema.equals(pq.read_schema(shard.path), check_metadata=True)
    assert out.schema.metadata[b"origin"] == b"safeset-test"


def test_keys_fall_back_to_relpath_and_position(tmp_path):
    shard = make_shard(tmp_path, laion_table(20), relpath="sub/part-00001.parquet")
    batches, _ = run_shard(FMT, shard, options=ReadOptions(batch_rows=6))
    assert all_keys(batches) == [f"sub/part-00001.parquet#{i}" for i in range(20)]
    assert all_positions(batches) == list(range(20))
    assert [b.num_rows for b in batches] == [6, 6, 6, 2]


def test_key_column_is_cast_to_text_and_null_keys_fall_back(tmp_path):
    table = laion_table(5).append_column("key", pa.array([10, 11, None, 13, 14], type=pa.int64()))
    shard = make_shard(tmp_path, table)
    batches, _ = run_shard(FMT, shard)
    assert all_keys(batches) == ["10", "11", "part-00000.parquet#2", "13", "14"]
    assert batches[0].keys.type == pa.string()


def test_only_needed_columns_are_read_but_all_are_written(tmp_path):
    table = laion_table(60)
    shard = make_shard(tmp_path, table)
    options = ReadOptions(all_columns=False, extra_columns=("PUNSAFE",), batch_rows=25)
    batches, [path] = run_shard(FMT, shard, tmp_path / "out", every_third_removed, options)
    assert batches[0].table.schema.names == ["URL", "TEXT", "punsafe"]
    assert pq.read_table(path).equals(table.filter(pa.array(np.arange(60) % 3 != 1)))


def test_column_overrides_and_missing_extra_column(tmp_path):
    table = laion_table(5).append_column("page", pa.array(["https://example.org/"] * 5))
    shard = make_shard(tmp_path, table)
    reader = FMT.open(shard, ReadOptions(columns=ColumnOverrides(url="page")))
    assert reader.columns.url == "page" and reader.columns.caption == "TEXT"
    reader.close()
    with pytest.raises(ConfigError, match="available columns: URL, TEXT"):
        FMT.open(shard, ReadOptions(columns=ColumnOverrides(caption="alt_text")))
    with pytest.raises(ConfigError, match="no column 'pwatermark'"):
        FMT.open(shard, ReadOptions(extra_columns=("pwatermark",)))


def test_writer_accepts_sliced_batches(tmp_path):
    table = laion_table(90)
    shard = make_shard(tmp_path, table)
    reader = FMT.open(shard, ReadOptions(batch_rows=30))
    writer = FMT.open_writer(shard, reader, tmp_path / "out")
    for batch in reader.batches():
        for start in (0, 11):
            stop = 11 if start == 0 else batch.num_rows
            piece = Batch(table=batch.table.slice(start, stop - start),
                          keys=batch.keys.slice(start, stop - start),
                          positions=batch.positions[start:stop])
            writer.write(piece, piece.positions % 2 == 0)
    [path] = writer.commit()
    assert pq.read_table(path).equals(table.filter(pa.array(np.arange(90) % 2 == 0)))


def test_writer_refuses_gaps_and_early_commit(tmp_path):
    shard = make_shard(tmp_path, laion_table(50))
    reader = FMT.open(shard, ReadOptions(batch_rows=20))
    writer = FMT.open_writer(shard, reader, tmp_path / "out")
    batches = list(reader.batches())
    with pytest.raises(ValueError, match="shard order"):
        writer.write(batches[1], np.ones(batches[1].num_rows, bool))
    writer.write(batches[0], np.ones(batches[0].num_rows, bool))
    with pytest.raises(ValueError, match="every row needs a keep decision"):
        writer.commit()
    writer.abort()
    assert not any((tmp_path / "out").iterdir())


def test_abort_leaves_no_file(tmp_path):
    shard = make_shard(tmp_path, laion_table(10))
    reader = FMT.open(shard, ReadOptions())
    writer = FMT.open_writer(shard, reader, tmp_path / "out")
    for batch in reader.batches():
        writer.write(batch, np.ones(batch.num_rows, bool))
    writer.abort()
    assert list((tmp_path / "out").iterdir()) == []


def test_all_removed_row_groups_leave_no_empty_row_group(tmp_path):
    shard = make_shard(tmp_path, laion_table(120))  # row groups of 40
    _, [path] = run_shard(FMT, shard, tmp_path / "out", lambda b: (b.positions < 40) | (b.positions >= 80),
                          ReadOptions(batch_rows=25))
    out = pq.ParquetFile(path)
    assert [out.metadata.row_group(i).num_rows for i in range(out.metadata.num_row_groups)] == [40, 40]


def test_huge_input_row_groups_are_capped(tmp_path):
    from safeset.datasets.parquet import writer_row_group_rows

    shard = make_shard(tmp_path, laion_table(10), row_group_size=10)
    assert writer_row_group_rows(pq.ParquetFile(shard.path).metadata) == 10
    assert MAX_ROW_GROUP_ROWS == 1 << 20


def test_garbage_file_named_parquet(tmp_path):
    path = tmp_path / "in" / "part-00000.parquet"
    path.parent.mkdir()
    path.write_bytes(b"this is not parquet at all " * 10)
    with pytest.raises(InputError) as caught:
        FMT.open(Shard(tmp_path / "in", "part-00000.parquet", "parquet"), ReadOptions())
    assert caught.value.position == "footer"
    assert "part-00000.parquet" in str(caught.value)


def test_truncated_parquet(tmp_path):
    shard = make_shard(tmp_path, laion_table(100))
    data = shard.path.read_bytes()
    shard.path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as caught:
        FMT.open(shard, ReadOptions())
    assert caught.value.position == "footer"


def test_corrupt_row_group_names_the_row_group(tmp_path):
    shard = make_shard(tmp_path, laion_table(200), compression="zstd", row_group_size=50)
    metadata = pq.ParquetFile(shard.path).metadata
    column = metadata.row_group(2).column(0)
    start = column.dictionary_page_offset or column.data_page_offset
    data = bytearray(shard.path.read_bytes())
    data[start:start + column.total_compressed_size] = bytes([0x5A]) * column.total_compressed_size
    shard.path.write_bytes(bytes(data))
    with pytest.raises(InputError) as caught:
        run_shard(FMT, shard, options=ReadOptions(batch_rows=50))
    assert caught.value.position == "row group 2"


def test_discover_finds_parquet_files_recursively_sorted(tmp_path):
    for rel in ("b/part-1.parquet", "a/part-2.parquet", "part-0.parquet", "_safeset/x.parquet",
                ".hidden/y.parquet", "notes.txt"):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert [s.relpath for s in FMT.discover(tmp_path)] == ["a/part-2.parquet", "b/part-1.parquet",
                                                           "part-0.parquet"]


def test_spark_style_int96_and_dictionary_columns_keep_their_form(tmp_path):
    table = pa.table({
        "URL": [f"https://example.com/{i}" for i in range(12)],
        "seen": pa.array(np.arange(12) * 10**9, type=pa.timestamp("ns")),
        "lang": pa.array(["en", "de", "fr"] * 4).dictionary_encode(),
    })
    shard = make_shard(tmp_path, table, use_deprecated_int96_timestamps=True, row_group_size=5)
    _, [path] = run_shard(FMT, shard, tmp_path / "out", every_third_removed, ReadOptions(batch_rows=4))
    out = pq.ParquetFile(path)
    assert out.schema.column(1).physical_type == "INT96"
    assert out.schema_arrow.field("lang").type == pq.read_schema(shard.path).field("lang").type
    assert out.read().equals(pq.read_table(shard.path).filter(pa.array(np.arange(12) % 3 != 1)))


def test_output_bytes_do_not_depend_on_batching_across_many_pages(tmp_path):
    """Row groups span many data pages; batches cut them at other places."""
    rows = 120_000
    rng = np.random.default_rng(0)
    table = pa.table({
        "URL": [f"https://example.com/{i}/{v}.jpg" for i, v in enumerate(rng.integers(0, 10**9, rows))],
        "score": rng.random(rows),
    })
    shard = make_shard(tmp_path, table, row_group_size=100_000)
    keep = lambda batch: (batch.positions % 97) != 0  # noqa: E731
    written = [
        run_shard(FMT, shard, tmp_path / f"out{size}", keep, ReadOptions(batch_rows=size))[1][0].read_bytes()
        for size in (7_000, 65_536)
    ]
    assert written[0] == written[1]


def test_dictionary_encoding_only_for_columns_whose_values_repeat(tmp_path):
    rows = 3000
    table = pa.table({
        "URL": [f"https://example.com/{i}.jpg" for i in range(rows)],
        "lang": ["en", "de", "fr"] * (rows // 3),
    })
    shard = make_shard(tmp_path, table, row_group_size=1000)
    _, [path] = run_shard(FMT, shard, tmp_path / "out", every_third_removed, ReadOptions(batch_rows=700))
    group = pq.ParquetFile(path).metadata.row_group(0)
    assert not group.column(0).has_dictionary_page  # unique URLs: plain
    assert group.column(1).has_dictionary_page  # three languages: dictionary
    assert pq.read_table(path).equals(table.filter(pa.array(np.arange(rows) % 3 != 1)))
