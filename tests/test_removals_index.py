"""Slot indexes built from a stream, the list cache, and the removal list as a match source."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from safeset.datasets.base import Batch, Columns
from safeset.errors import InputError
from safeset.removals.apply import parse_match
from safeset.removals.listindex import build_list_indexes
from safeset.removals.listfile import RemovalListWriter, list_metadata
from safeset.removals.slotindex import SlotIndex
from safeset.removals.spillruns import SlotIndexWriter
from safeset.removals.source import RemovalListSource
from safeset.signals.rows import RowSignals
from safeset.errors import ConfigError


def random_keys(rng, count, size=32):
    return rng.integers(0, 256, (count, size), dtype=np.uint8)


def brute_force_lookup(keys: np.ndarray, queries: np.ndarray) -> list[tuple[int, int]]:
    """(query row, key row) for every equal pair: what any exact index must answer."""
    rows_of: dict[bytes, list[int]] = {}
    for row, key in enumerate(map(bytes, keys)):
        rows_of.setdefault(key, []).append(row)
    return [(row, found) for row, query in enumerate(map(bytes, queries)) for found in rows_of.get(query, [])]


@pytest.mark.parametrize("memory_bytes", [1 << 30, 4096])  # one run; many runs
@pytest.mark.parametrize("key_size", [32, 16])
def test_streamed_index_finds_exactly_the_equal_keys(tmp_path, memory_bytes, key_size):
    rng = np.random.default_rng(1)
    keys = random_keys(rng, 20_000, key_size)
    keys[5000] = keys[17]  # a repeated value
    keys[6000, :8] = keys[18, :8]  # a shared 8-byte prefix
    keys[7000:7400, :2] = 0  # many values in one 16-bit group
    keys[8000:8040, :4] = 0  # ... and in one slot (sorted by merging, not by insertion)
    writer = SlotIndexWriter(tmp_path, "k", key_size, memory_bytes=memory_bytes)
    for start in range(0, len(keys), 3000):
        writer.add(keys[start:start + 3000])
    index = writer.finish(workers=2)
    queries = np.concatenate([keys[::7], random_keys(rng, 5000, key_size), keys[7000:7400], keys[8000:8040]])
    rows, ids = index.lookup(queries)
    assert sorted(zip(rows.tolist(), ids.tolist())) == sorted(brute_force_lookup(keys, queries))
    assert np.all(np.diff(rows) >= 0), "rows ascending"
    ordered = [bytes(key) + int(row).to_bytes(8, "big") for key, row in zip(index.keys, index.ids)]
    assert ordered == sorted(ordered), "keys sorted bytewise, ties by list row"
    assert sorted(path.name for path in tmp_path.iterdir()) == \
        ["k.fingerprints.npy", "k.groups.npy", "k.ids.npy", "k.keys.npy", "k.slots.npy"], \
        "the spill's files are removed"


def test_lookup_skips_rows_without_a_digest_and_an_empty_index_finds_nothing(tmp_path):
    rng = np.random.default_rng(3)
    keys = random_keys(rng, 100)
    writer = SlotIndexWriter(tmp_path / "some", "k", 32)
    writer.add(keys, present=np.arange(100) % 2 == 0)  # odd rows have no value
    index = writer.finish()
    assert len(index) == 50
    rows, ids = index.lookup(keys, valid=np.arange(100) < 50)
    assert rows.tolist() == ids.tolist() == list(range(0, 50, 2))
    empty = SlotIndexWriter(tmp_path / "none", "k", 32).finish()
    assert len(empty) == 0 and len(empty.lookup(keys)[0]) == 0


def test_damaged_index_files_are_refused(tmp_path):
    writer = SlotIndexWriter(tmp_path, "k", 32)
    writer.add(random_keys(np.random.default_rng(4), 10))
    writer.finish()
    groups = np.load(tmp_path / "k.groups.npy")
    groups[-1] = 11  # says one key more than there is
    np.save(tmp_path / "k.groups.npy", groups)
    with pytest.raises(InputError, match="do not agree"):
        SlotIndex.load(tmp_path, "k")


def write_list(path, rows: dict):
    total = len(next(iter(rows.values())))
    writer = RemovalListWriter(path, list_metadata(source_dataset="d", source_version=None, total=total,
                                                   decoys=0, kind="published"))
    writer.write(pa.table({name: pa.array(rows.get(name, [None] * total), pa.string())
                           for name in ("url_sha256", "image_sha256", "image_md5", "key")}))
    writer.commit()
    return path


def url_digest(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()


def test_list_rows_match_by_canonical_url_image_digest_and_hashed_key(tmp_path):
    listed = write_list(tmp_path / "list.parquet", {
        "url_sha256": [url_digest("https://example.com/a.jpg"), None, None],
        "image_md5": [None, hashlib.md5(b"image-b").hexdigest().upper(), None],
        "key": [None, None, "k-3"],
    })
    types = ("url_sha256", "sha256", "md5", "key")
    metadata, entries = build_list_indexes(listed, types, tmp_path / "index")
    assert entries == {"url_sha256": 1, "sha256": 0, "md5": 1, "key": 1}
    assert not list((tmp_path / "index").glob("sha256.*")), "no index for a type without values"
    matcher = RemovalListSource({t: str(tmp_path / "index") for t in types if entries[t]}).open()
    table = pa.record_batch({
        "url": ["HTTPS://Example.com:443/a.jpg#frag", "https://example.com/b.jpg", None],
        "md5": [None, hashlib.md5(b"image-b").hexdigest(), None],
        "key": ["k-1", "k-2", "k-3"],
    })
    batch = Batch(table=table, keys=table.column("key"), positions=np.arange(3))
    signals = RowSignals(batch, Columns(url="url", key="key", md5="md5"))
    unavailable: set[str] = set()
    evidence = matcher.match(signals, unavailable)
    assert sorted((e.row, e.signal_type, e.entry_id) for e in evidence) == [(0, "url_sha256", 0), (1, "md5", 1),
                                                                           (2, "key", 2)]
    assert all(e.bank == "REMOVAL_LIST" for e in evidence) and not unavailable


def test_invalid_hex_in_a_list_names_the_file_and_row(tmp_path):
    listed = write_list(tmp_path / "list.parquet", {"url_sha256": ["ab" * 32, "not-hex"]})
    with pytest.raises(InputError) as caught:
        build_list_indexes(listed, ("url_sha256",), tmp_path / "index")
    assert str(listed) in str(caught.value) and "row 1" in str(caught.value)


def test_match_option():
    assert parse_match(None) == ("url", "image")
    assert parse_match("key, url,key") == ("key", "url")
    with pytest.raises(ConfigError):
        parse_match("url,pixels")


def test_a_list_indexed_in_parallel_chunks_finds_every_value(tmp_path, monkeypatch):
    from safeset.removals import listfile, listindex

    monkeypatch.setattr(listfile, "WRITE_GROUP_ROWS", 700)
    monkeypatch.setattr(listindex, "CHUNK_ROWS", 1000)
    rng = np.random.default_rng(2)
    digests = [bytes(row).hex() for row in random_keys(rng, 5000)]
    listed = write_list(tmp_path / "list.parquet", {"url_sha256": digests, "key": [f"k{n}" for n in range(5000)]})
    _, entries = build_list_indexes(listed, ("url_sha256", "key"), tmp_path / "index", workers=2,
                                    spill_directory=tmp_path / "spills")
    assert entries == {"url_sha256": 5000, "key": 5000}
    index = RemovalListSource({"url_sha256": str(tmp_path / "index")}).open().indexes["url_sha256"]
    queries = np.array([np.frombuffer(bytes.fromhex(d), np.uint8) for d in digests[::-1]])
    rows, ids = index.lookup(queries)
    assert np.array_equal(rows, np.arange(5000)) and np.array_equal(ids, np.arange(4999, -1, -1))
    assert not list((tmp_path / "spills").iterdir()), "spilled runs are removed"
