import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from datasets_util import all_keys, run_shard

from safeset.datasets.base import ReadOptions, Shard
from safeset.datasets.csv import CsvFormat
from safeset.errors import InputError

FMT = CsvFormat()

TRICKY = ["plain", "with, comma", 'with "quotes"', "multi\nline", "carriage\rreturn", "", "  spaced  ",
          "tab\there", "caf\u00e9 \u2603", "007"]


def write_file(tmp_path, text: bytes, name="urls.csv") -> Shard:
    path = tmp_path / "in" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
    return Shard(tmp_path / "in", name, "csv")


def csv_text(rows, delimiter=",", terminator="\n") -> bytes:
    def field(value):
        if any(c in value for c in (delimiter, '"', "\r", "\n")):
            return '"' + value.replace('"', '""') + '"'
        return value
    return "".join(delimiter.join(field(v) for v in row) + terminator for row in rows).encode()


def read_back(path, delimiter=","):
    columns = pacsv.read_csv(path, parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
                             convert_options=pacsv.ConvertOptions(
                                 column_types={"url": pa.string(), "caption": pa.string(), "n": pa.string()},
                                 strings_can_be_null=False))
    return columns


@pytest.mark.parametrize("name, delimiter, terminator", [("urls.csv", ",", "\n"), ("urls.tsv", "\t", "\r\n")])
def test_round_trip_keeps_values_and_layout(tmp_path, name, delimiter, terminator):
    rows = [["url", "caption", "n"]] + [[f"https://example.com/{i}", value, f"{i:03d}"]
                                          for i, value in enumerate(TRICKY)]
    shard = write_file(tmp_path, csv_text(rows, delimiter, terminator), name)
    batches, [path] = run_shard(FMT, shard, tmp_path / "out", lambda b: b.positions != 4,
                                ReadOptions(batch_rows=3))
    table = pa.Table.from_batches([b.table for b in batches])
    assert table.column("caption").to_pylist() == TRICKY
    assert table.column("n").to_pylist()[7] == "007"  # text, not a number
    expected = [r for i, r in enumerate(rows) if i != 5]  # row 5 = data position 4
    assert path.read_bytes() == csv_text(expected, delimiter, terminator)
    assert read_back(path, delimiter).column("caption").to_pylist() == [r[1] for r in expected[1:]]
    reader = FMT.open(shard, ReadOptions())
    assert (reader.columns.url, reader.columns.caption, reader.columns.key) == ("url", "caption", None)


def test_writing_twice_gives_identical_bytes_and_all_removed_keeps_header(tmp_path):
    shard = write_file(tmp_path, b"URL,TEXT\nhttps://example.com/a,x\nhttps://example.com/b,y\n")
    _, [a] = run_shard(FMT, shard, tmp_path / "a", lambda b: b.positions == 1)
    _, [b] = run_shard(FMT, shard, tmp_path / "b", lambda b: b.positions == 1)
    assert a.read_bytes() == b.read_bytes() == b"URL,TEXT\nhttps://example.com/b,y\n"
    _, [none] = run_shard(FMT, shard, tmp_path / "c", lambda b: np.zeros(b.num_rows, bool))
    assert none.read_bytes() == b"URL,TEXT\n"


def test_keys_from_key_column_or_position(tmp_path):
    shard = write_file(tmp_path, b"key,url\n000010,https://example.com/a\n000011,https://example.com/b\n")
    batches, _ = run_shard(FMT, shard)
    assert all_keys(batches) == ["000010", "000011"]
    shard = write_file(tmp_path, b"url\nhttps://example.com/a\n\nhttps://example.com/b\n", "sub/list.csv")
    batches, _ = run_shard(FMT, shard)
    assert all_keys(batches) == ["sub/list.csv#0", "sub/list.csv#1"]


def test_malformed_row_names_the_row(tmp_path):
    shard = write_file(tmp_path, b"url,caption\nhttps://example.com/a,x\nhttps://example.com/b,y,z\n")
    with pytest.raises(InputError) as caught:
        run_shard(FMT, shard)
    assert caught.value.position == "row 3"
    assert "expected 2 columns, found 3" in caught.value.reason


def test_empty_file_needs_a_header(tmp_path):
    shard = write_file(tmp_path, b"")
    with pytest.raises(InputError, match="header row is required"):
        FMT.open(shard, ReadOptions())


def test_invalid_utf8_is_an_input_error(tmp_path):
    shard = write_file(tmp_path, b"url,caption\nhttps://example.com/a,\xff\xfe\n")
    with pytest.raises(InputError):
        run_shard(FMT, shard)


def test_repeated_header_names_pass_through(tmp_path):
    shard = write_file(tmp_path, b"url,tag,tag\nhttps://example.com/a,x,y\nhttps://example.com/b,z,w\n")
    _, [path] = run_shard(FMT, shard, tmp_path / "out", lambda b: b.positions == 1)
    assert path.read_bytes() == b"url,tag,tag\nhttps://example.com/b,z,w\n"
