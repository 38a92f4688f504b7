import json

import numpy as np
import pyarrow as pa
import pytest
from datasets_util import all_keys, run_shard

from safeset.datasets.base import ColumnOverrides, ReadOptions, Shard
from safeset.datasets.jsonl import JsonlFormat
from safeset.errors import ConfigError

FMT = JsonlFormat()


def write_lines(tmp_path, lines: list[bytes], name="urls.jsonl") -> Shard:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(lines))
    return Shard(tmp_path / "in", name, "jsonl")


def obj(i: int, **extra) -> bytes:
    record = {"url": f"https://example.com/{i}.jpg", "caption": f"placeholder {i}", "score": i / 2}
    record.update(extra)
    return json.dumps(record).encode() + b"\n"


def test_rows_table_and_errors(tmp_path):
    lines = [obj(0), b"\n", obj(1, width=10), b"{not json\n", b"   \r\n", b"[1, 2]\n", obj(4)]
    shard = write_lines(tmp_path, lines)
    batches, _ = run_shard(FMT, shard, options=ReadOptions(batch_rows=2))
    assert [b.num_rows for b in batches] == [2, 2, 1]  # blank lines are not rows
    table = pa.Table.from_batches([b.table for b in batches])
    assert table.schema.names == ["url", "caption", "score", "width"]
    assert table.schema.field("score").type == pa.float64()
    assert table.column("url").to_pylist() == [
        "https://example.com/0.jpg", "https://example.com/1.jpg", None, None, "https://example.com/4.jpg"]
    errors = [e for b in batches for e in (b.errors or [None] * b.num_rows)]
    assert errors[0] is None and errors[1] is None
    assert errors[2].startswith("invalid JSON: line 4: ")
    assert errors[3] == "invalid JSON: line 6: expected an object, found list"
    assert all_keys(batches) == [f"urls.jsonl#{i}" for i in range(5)]


def test_writer_copies_kept_lines_byte_for_byte(tmp_path):
    lines = [obj(0), b"\n", b'{"url": "https://example.org/x", "caption": "caf\\u00e9"}  \r\n',
             b"{broken\n", obj(3), obj(4)[:-1]]  # last line without newline
    shard = write_lines(tmp_path, lines)
    _, [path] = run_shard(FMT, shard, tmp_path / "out", lambda b: b.positions != 0,
                          ReadOptions(batch_rows=2))
    assert path.read_bytes() == b"".join(lines[1:])
    _, [path] = run_shard(FMT, shard, tmp_path / "out2", lambda b: b.positions % 2 == 0)
    assert path.read_bytes() == b"".join([lines[0], lines[1], lines[3], lines[5]])


def test_all_removed_keeps_only_blank_lines(tmp_path):
    shard = write_lines(tmp_path, [obj(0), b"\n", obj(1)])
    _, [path] = run_shard(FMT, shard, tmp_path / "out", lambda b: np.zeros(b.num_rows, bool))
    assert path.read_bytes() == b"\n"


def test_types_are_stable_after_the_first_batch(tmp_path):
    lines = [obj(0, key=100, ok=True, tags=["a"]), obj(1, key=101, ok=False, tags=[]),
             obj(2, key="k-102", ok="yes", tags="t"), obj(3, late="ignored")]
    shard = write_lines(tmp_path, lines)
    batches, _ = run_shard(FMT, shard, options=ReadOptions(batch_rows=2))
    assert all(b.table.schema == batches[0].table.schema for b in batches)
    table = pa.Table.from_batches([b.table for b in batches])
    assert table.schema.field("key").type == pa.int64()
    assert table.column("key").to_pylist() == [100, 101, None, None]
    assert table.column("ok").to_pylist() == [True, False, None, None]
    assert table.column("tags").to_pylist() == ['["a"]', "[]", "t", None]
    assert "late" not in table.schema.names
    assert all_keys(batches) == ["100", "101", "urls.jsonl#2", "urls.jsonl#3"]


def test_column_detection_and_overrides(tmp_path):
    shard = write_lines(tmp_path, [b'{"URL": "https://example.com/a", "TEXT": "t", "link": "x"}\n'])
    reader = FMT.open(shard, ReadOptions())
    assert (reader.columns.url, reader.columns.caption) == ("URL", "TEXT")
    reader = FMT.open(shard, ReadOptions(columns=ColumnOverrides(url="link")))
    assert reader.columns.url == "link"
    with pytest.raises(ConfigError, match="available columns: URL, TEXT, link"):
        FMT.open(shard, ReadOptions(columns=ColumnOverrides(url="href")))


def test_writer_needs_every_row(tmp_path):
    shard = write_lines(tmp_path, [obj(0), obj(1), obj(2)])
    reader = FMT.open(shard, ReadOptions(batch_rows=2))
    writer = FMT.open_writer(shard, reader, tmp_path / "out")
    first = next(reader.batches())
    writer.write(first, np.ones(first.num_rows, bool))
    with pytest.raises(ValueError, match="every row needs a keep decision"):
        writer.commit()
    writer.abort()
    assert list((tmp_path / "out").iterdir()) == []


def test_byte_order_mark_and_non_utf8_lines(tmp_path):
    shard = write_lines(tmp_path, [b"\xef\xbb\xbf" + obj(0), b'{"url": "\xff"}\n'])
    batches, [path] = run_shard(FMT, shard, tmp_path / "out")
    assert batches[0].table.column("url").to_pylist() == ["https://example.com/0.jpg", None]
    assert batches[0].errors[0] is None
    assert batches[0].errors[1].startswith("invalid JSON: line 2: not UTF-8")
    assert path.read_bytes() == (tmp_path / "in" / "urls.jsonl").read_bytes()


def test_oversized_line_is_an_unchecked_row_never_held_or_copied(tmp_path):
    import json as _json

    from safeset.datasets.base import ReadOptions
    from safeset.datasets.jsonl import JsonlFormat

    path = tmp_path / "in" / "list.jsonl"
    path.parent.mkdir()
    huge = _json.dumps({"url": "https://example.com/big", "caption": "x" * 5000})
    path.write_text(
        _json.dumps({"url": "https://example.com/a"}) + "\n" + huge + "\n" + _json.dumps({"url": "https://example.com/b"}) + "\n"
    )
    fmt = JsonlFormat()
    (shard,) = fmt.discover(path.parent)
    options = ReadOptions(max_line_bytes=1000)
    reader = fmt.open(shard, options)
    (batch,) = list(reader.batches())
    assert batch.errors[0] is None and batch.errors[2] is None
    assert "over the limit of 1,000" in batch.errors[1] and "line 2" in batch.errors[1]
    writer = fmt.open_writer(shard, fmt.open(shard, options), tmp_path / "out")
    writer.write(batch, np.array([True, False, True]))
    (written,) = writer.commit()
    assert written.read_text().splitlines() == [_json.dumps({"url": "https://example.com/a"}), _json.dumps({"url": "https://example.com/b"})]
