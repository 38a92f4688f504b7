"""The native decoder of parquet string columns gives exactly what pyarrow gives, or steps aside.

Every file here is written by pyarrow with some combination of writer
options; each column chunk the native decoder accepts must equal pyarrow's
reading of it, value for value and null for null. Chunks it does not handle
raise `Unsupported`, and the dataset reader then uses pyarrow.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeset import _parquetpages
from safeset.datasets.base import ColumnOverrides, ReadOptions, Shard
from safeset.datasets.parquet import ParquetReader
from safeset.datasets.parquet_pages import ChunkReader, Unsupported, native_columns


def sample_values(rng: random.Random, count: int, null_share: float, repeat_share: float) -> list:
    """URL-like strings of many lengths (empty, short, 12-byte edges, long), some repeated, some null."""
    pool = ["", "a", "x" * 12, "y" * 13, "http://example.com/" + "p" * 200]
    values = []
    for _ in range(count):
        roll = rng.random()
        if roll < null_share:
            values.append(None)
        elif roll < null_share + repeat_share:
            values.append(rng.choice(pool))
        else:
            values.append(f"https://img{rng.randrange(1000)}.example.org/{rng.getrandbits(64):x}/{'q' * rng.randrange(0, 90)}.jpg")
    return values


def write(path: Path, table: pa.Table, **options) -> Path:
    pq.write_table(table, path, **options)
    return path


def assert_native_equals_pyarrow(path: Path) -> int:
    """Every chunk the decoder takes equals pyarrow's; returns how many chunks it took."""
    parquet_file = pq.ParquetFile(path)
    columns = native_columns(parquet_file, parquet_file.schema_arrow.names)
    reader = ChunkReader(path, parquet_file)
    taken = 0
    try:
        for group in range(parquet_file.num_row_groups):
            for name, index in columns.items():
                expected = parquet_file.read_row_group(group, columns=[name]).column(0).combine_chunks()
                try:
                    got = reader.read(group, index)
                except Unsupported:
                    continue
                got.validate(full=True)
                assert got.type == expected.type
                assert got.equals(expected), (path.name, group, name)
                taken += 1
    finally:
        reader.close()
    return taken


WRITER_OPTIONS = [
    {},
    {"compression": "none"},
    {"compression": "gzip"},
    {"compression": "zstd"},
    {"compression": "brotli"},
    {"compression": "lz4"},
    {"use_dictionary": False},
    {"data_page_version": "2.0"},
    {"data_page_version": "2.0", "compression": "none"},
    {"data_page_version": "2.0", "use_dictionary": False, "compression": "zstd"},
    {"data_page_size": 512},  # many small pages
    {"dictionary_pagesize_limit": 2048},  # dictionary full early: falls back to PLAIN pages mid-chunk
    {"row_group_size": 97, "data_page_size": 1000, "data_page_version": "2.0"},
]


@pytest.mark.parametrize("options", WRITER_OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_every_writer_option_reads_the_same(tmp_path, options):
    rng = random.Random(3)
    table = pa.table({
        "URL": pa.array(sample_values(rng, 3000, 0.1, 0.3), pa.string()),
        "caption": pa.array(sample_values(rng, 3000, 0.0, 0.0), pa.large_string()),
        "md5": pa.array([rng.getrandbits(128).to_bytes(16, "big").hex() for _ in range(3000)], pa.string()),
        "raw": pa.array([rng.getrandbits(64).to_bytes(8, "big") if i % 7 else None for i in range(3000)], pa.binary()),
        "width": pa.array(range(3000), pa.int64()),
    })
    path = write(tmp_path / "t.parquet", table, **options)
    assert assert_native_equals_pyarrow(path) > 0


def test_required_columns_and_all_null_columns(tmp_path):
    schema = pa.schema([pa.field("url", pa.string(), nullable=False), pa.field("empty", pa.string())])
    table = pa.table({"url": ["http://a.example/", "", "b"] * 500, "empty": pa.nulls(1500, pa.string())}, schema=schema)
    for version in ("1.0", "2.0"):
        path = write(tmp_path / f"t{version}.parquet", table, data_page_version=version)
        parquet_file = pq.ParquetFile(path)
        assert parquet_file.schema.column(0).max_definition_level == 0
        assert assert_native_equals_pyarrow(path) == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    values=st.lists(st.one_of(st.none(), st.text(max_size=40), st.sampled_from(["", "http://example.com/x"])),
                    min_size=1, max_size=300),
    options=st.sampled_from(WRITER_OPTIONS),
    binary=st.booleans(),
)
def test_random_columns(tmp_path, values, options, binary):
    arrow_type = pa.binary() if binary else pa.string()
    array = pa.array([v.encode("utf-8", "surrogatepass") if binary and v is not None else v for v in values],
                     arrow_type)
    path = write(tmp_path / "h.parquet", pa.table({"c": array}), **options)
    assert_native_equals_pyarrow(path)


def test_encodings_it_does_not_decode_are_left_to_pyarrow(tmp_path):
    table = pa.table({"URL": [f"http://example.com/{i}" for i in range(1000)]})
    path = write(tmp_path / "delta.parquet", table, use_dictionary=False,
                 column_encoding={"URL": "DELTA_BYTE_ARRAY"}, data_page_version="2.0")
    parquet_file = pq.ParquetFile(path)
    reader = ChunkReader(path, parquet_file)
    with pytest.raises(Unsupported):
        reader.read(0, 0)
    reader.close()
    batches = list(open_reader(path).batches())
    assert pa.concat_arrays([b.table.column("URL") for b in batches]).equals(table.column("URL").combine_chunks())


def test_lz4_is_decoded(tmp_path):
    table = pa.table({"URL": [f"http://example.com/{i}" for i in range(1000)]})
    for codec in ("lz4", "lz4_raw"):
        path = write(tmp_path / f"{codec}.parquet", table, compression=codec)
        assert assert_native_equals_pyarrow(path) == 1


def test_nested_and_dictionary_typed_columns_are_not_taken(tmp_path):
    table = pa.table({
        "tags": pa.array([["a", "b"], [], None], pa.list_(pa.string())),
        "kind": pa.array(["x", "y", "x"]).dictionary_encode(),
        "url": ["u1", "u2", "u3"],
    })
    path = write(tmp_path / "n.parquet", table)
    assert native_columns(pq.ParquetFile(path), ["tags", "kind", "url"]) == {"url": 2}  # leaves: tags.list.element, kind, url


def open_reader(path: Path, **options) -> ParquetReader:
    read_options = ReadOptions(columns=ColumnOverrides(), all_columns=False, needed=frozenset({"url", "md5"}),
                               batch_rows=options.get("batch_rows", 65536), align_batches=True)
    return ParquetReader(Shard(path.parent, path.name, "parquet"), read_options)


def test_scan_reader_gives_pyarrow_batches(tmp_path):
    """The scan path (row groups decoded natively) yields the rows pyarrow's streaming read yields."""
    rng = random.Random(9)
    urls = sample_values(rng, 5000, 0.05, 0.2)
    table = pa.table({"URL": urls, "md5": [f"{i:032x}" for i in range(5000)], "punsafe": np.linspace(0, 1, 5000)})
    path = write(tmp_path / "part-0.parquet", table, row_group_size=700)
    reader = open_reader(path, batch_rows=300)
    batches = list(reader.batches())
    reader.close()
    got = pa.Table.from_batches([b.table for b in batches])
    assert got.column_names == ["URL", "md5"]
    assert got.column("URL").combine_chunks().equals(table.column("URL").combine_chunks())
    assert got.column("md5").combine_chunks().equals(table.column("md5").combine_chunks())
    positions = np.concatenate([b.positions for b in batches])
    assert positions.tolist() == list(range(5000))
    assert max(b.num_rows for b in batches) <= 700


def test_large_row_groups_stream_through_pyarrow(tmp_path):
    """A row group larger than 4 batches is not decoded at once (memory stays bounded by the batch size)."""
    table = pa.table({"URL": [f"http://example.com/{i}" for i in range(5000)]})
    path = write(tmp_path / "big.parquet", table, row_group_size=5000)
    reader = open_reader(path, batch_rows=1000)
    sizes = [b.num_rows for b in reader.batches()]
    reader.close()
    assert sizes == [1000] * 5


# --------------------------------------------------------------------------- corrupt input


def _chunk_bytes(path: Path) -> tuple[bytearray, int, int]:
    meta = pq.ParquetFile(path).metadata.row_group(0).column(0)
    start = meta.dictionary_page_offset if meta.has_dictionary_page else meta.data_page_offset
    return bytearray(path.read_bytes()), start, meta.total_compressed_size


@pytest.mark.parametrize("options", [{"compression": "none"}, {"compression": "none", "use_dictionary": False},
                                     {"compression": "none", "data_page_version": "2.0"}, {}])
def test_corrupt_chunks_never_crash(tmp_path, options):
    """Random damage inside a column chunk: a ValueError/Unsupported naming the problem, or valid arrays."""
    rng = random.Random(11)
    table = pa.table({"URL": sample_values(rng, 2000, 0.1, 0.3)})
    path = write(tmp_path / "c.parquet", table, data_page_size=4096, **options)
    original, start, size = _chunk_bytes(path)
    damaged_path = tmp_path / "damaged.parquet"
    outcomes = set()
    for trial in range(300):
        damaged = bytearray(original)
        for _ in range(rng.choice([1, 2, 8])):
            at = start + rng.randrange(size)
            damaged[at] = rng.randrange(256) if trial % 3 else damaged[at] ^ (1 << rng.randrange(8))
        damaged_path.write_bytes(bytes(damaged))
        parquet_file = pq.ParquetFile(damaged_path)
        reader = ChunkReader(damaged_path, parquet_file)
        try:
            array = reader.read(0, 0)
        except (ValueError, Unsupported, OverflowError) as exc:
            assert str(exc)
            outcomes.add("refused")
        else:
            array.view(pa.binary()).validate(full=True)  # offsets and sizes; damaged text need not be UTF-8
            assert len(array) == table.num_rows
            try:
                expected = parquet_file.read_row_group(0).column(0).combine_chunks()
            except (pa.ArrowException, OSError):
                outcomes.add("read, pyarrow refused")
            else:
                assert array.equals(expected)
                outcomes.add("read")
        finally:
            reader.close()
    assert "refused" in outcomes
    assert "read, pyarrow refused" not in outcomes  # never accepts damage the reference rejects


def test_decoder_checks_row_counts_and_page_bounds():
    decoder = _parquetpages.ByteArrayDecoder(0, 2, False, 0)
    with pytest.raises(ValueError, match="runs past"):
        decoder.add_page(1, b"\x05\x00\x00\x00abc", None, 1, 0)  # a 5-byte value in 3 bytes
    decoder = _parquetpages.ByteArrayDecoder(0, 2, False, 0)
    decoder.add_page(1, b"\x01\x00\x00\x00a", None, 1, 0)
    with pytest.raises(ValueError, match="hold 1 values"):
        decoder.finish()
    decoder = _parquetpages.ByteArrayDecoder(0, 1, False, 0)
    with pytest.raises(ValueError, match="more values"):
        decoder.add_page(1, b"", None, 2, 0)
    decoder = _parquetpages.ByteArrayDecoder(0, 1, False, 0)
    with pytest.raises(ValueError, match="without a dictionary"):
        decoder.add_page(1, b"\x01\x02\x00", None, 1, 8)
    with pytest.raises(ValueError, match="byte 0"):
        _parquetpages.page_headers(b"\x15\x00\x15")  # a header cut short


def test_readers_of_two_files_interleaved_in_one_thread(tmp_path):
    """Scratch buffers are shared per thread, and only used within one read: interleaving readers is safe."""
    rng = random.Random(21)
    first = pa.table({"URL": sample_values(rng, 4000, 0.1, 0.5)})
    second = pa.table({"URL": sample_values(rng, 4000, 0.0, 0.0)})
    paths = [write(tmp_path / "a.parquet", first, row_group_size=1000),
             write(tmp_path / "b.parquet", second, row_group_size=1000, data_page_version="2.0")]
    readers = [ChunkReader(p, pq.ParquetFile(p)) for p in paths]
    got = [[], []]
    for group in range(4):
        for which in (0, 1):
            got[which].append(readers[which].read(group, 0))
    for reader in readers:
        reader.close()
    assert pa.concat_arrays(got[0]).equals(first.column("URL").combine_chunks())
    assert pa.concat_arrays(got[1]).equals(second.column("URL").combine_chunks())
