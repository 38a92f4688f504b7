from pathlib import Path

import pytest

from safeset.datasets.base import ColumnOverrides, Columns
from safeset.datasets.columns import resolve_columns
from safeset.datasets.registry import FORMATS, detect_format, discover
from safeset.errors import ConfigError


def touch(root: Path, *relpaths: str) -> Path:
    for rel in relpaths:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    return root


@pytest.mark.parametrize("files, expected", [
    (["00000.tar", "00000.parquet", "00000_stats.json", "sub/00001.tar", "sub/00001.parquet"], "webdataset"),
    (["part-00000.parquet", "part-00001.parquet", "dataset_info.json"], "parquet"),
    (["a.jsonl", "b/c.ndjson"], "jsonl"),
    (["only.json"], "jsonl"),
    (["a.csv", "b.tsv", "meta.json"], "csv"),
    (["x/_safeset/ignored.csv", "data.jsonl", ".hidden.csv", ".git/config.csv"], "jsonl"),
])
def test_detect_format_of_directories(tmp_path, files, expected):
    assert detect_format(touch(tmp_path, *files)) == expected


@pytest.mark.parametrize("files, chosen", [
    (["00000.tar", "part-0.parquet"], "webdataset"),
    (["00000.tar", "urls.csv"], "webdataset"),
    (["part-0.parquet", "urls.jsonl"], "parquet"),
    (["urls.jsonl", "urls.csv"], "JSONL"),
])
def test_mixed_directories_are_ambiguous(tmp_path, files, chosen):
    with pytest.raises(ConfigError, match=f"holds {chosen}.*pass --format"):
        detect_format(touch(tmp_path, *files))


def test_nothing_to_scan(tmp_path):
    with pytest.raises(ConfigError, match="no dataset files found"):
        detect_format(touch(tmp_path, "readme.md"))
    with pytest.raises(ConfigError, match="no such file"):
        detect_format(tmp_path / "missing")
    with pytest.raises(ConfigError, match="cannot tell the dataset format"):
        detect_format(touch(tmp_path, "data.bin") / "data.bin")


@pytest.mark.parametrize("name, expected", [("a.parquet", "parquet"), ("00000.tar", "webdataset"),
                                            ("u.ndjson", "jsonl"), ("u.TSV", "csv")])
def test_single_file_is_one_shard_rooted_at_its_parent(tmp_path, name, expected):
    path = touch(tmp_path, f"d/{name}") / "d" / name
    fmt, shards = discover(path)
    assert fmt.name == expected
    assert [(s.root, s.relpath, s.format) for s in shards] == [(tmp_path / "d", name, expected)]
    assert shards[0].path == path


def test_discover_directory_recursive_sorted_and_explicit_format(tmp_path):
    touch(tmp_path, "b/2.tar", "a/1.tar", "0.tar", "0.parquet", "_safeset/9.tar", ".cache/8.tar")
    fmt, shards = discover(tmp_path)
    assert fmt is FORMATS["webdataset"]
    assert [s.relpath for s in shards] == ["0.tar", "a/1.tar", "b/2.tar"]
    fmt, shards = discover(tmp_path, "parquet")
    assert [s.relpath for s in shards] == ["0.parquet"]
    with pytest.raises(ConfigError, match="no csv shards"):
        discover(tmp_path, "csv")
    with pytest.raises(ConfigError, match="unknown dataset format 'orc'"):
        discover(tmp_path, "orc")


def test_laion_and_img2dataset_columns_are_detected():
    laion = ["URL", "TEXT", "WIDTH", "HEIGHT", "similarity", "punsafe", "pwatermark", "hash"]
    assert resolve_columns(laion, ColumnOverrides(), "x") == Columns(url="URL", caption="TEXT")
    img2dataset = ["key", "url", "caption", "status", "sha256", "Md5", "SHA1"]
    assert resolve_columns(img2dataset, ColumnOverrides(), "x") == Columns(
        url="url", caption="caption", key="key", md5="Md5", sha1="SHA1", sha256="sha256")
    # a caption column beats a text column; exact case beats other cases
    assert resolve_columns(["text", "Caption"], ColumnOverrides(), "x").caption == "Caption"
    assert resolve_columns(["URL", "url"], ColumnOverrides(), "x").url == "url"


def test_overrides_win_and_missing_override_lists_columns():
    names = ["URL", "TEXT", "alt", "id"]
    columns = resolve_columns(names, ColumnOverrides(caption="alt", key="ID"), "x")
    assert (columns.url, columns.caption, columns.key) == ("URL", "alt", "id")
    with pytest.raises(ConfigError) as caught:
        resolve_columns(names, ColumnOverrides(url="link"), "shard.parquet")
    assert "shard.parquet" in str(caught.value)
    assert "available columns: URL, TEXT, alt, id" in str(caught.value)


def test_read_options_refuse_a_zero_batch_size():
    from safeset.datasets.base import ReadOptions

    with pytest.raises(ConfigError, match="batch size"):
        ReadOptions(batch_rows=0)
