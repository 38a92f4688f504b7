"""Sorted-digest indexes built from a stream, and the removal list as a match source."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest

from safeset.banks.digest_index import DigestIndex
from safeset.datasets.base import Batch, Columns
from safeset.errors import InputError
from safeset.removals.apply import parse_match
from safeset.removals.listindex import build_list_indexes
from safeset.removals.listfile import RemovalListWriter, list_metadata
from safeset.removals.sortedindex import SortedDigestWriter
from safeset.removals.source import RemovalListSource
from safeset.signals.rows import RowSignals
from safeset.errors import ConfigError


def random_keys(rng, count, size=32):
    return rng.integers(0, 256, (count, size), dtype=np.uint8)


@pytest.mark.parametrize("memory_bytes", [1 << 30, 4096])  # in memory; spilled to buckets many times
def test_streamed_index_answers_like_an_index_built_in_memory(tmp_path, memory_bytes):
    rng = np.random.default_rng(1)
    keys = random_keys(rng, 20_000)
    keys[5000] = keys[17]  # a repeated value
    keys[6000, :8] = keys[18, :8]  # a shared 8-byte prefix
    ids = np.arange(len(keys), dtype=np.int64)
    writer = SortedDigestWriter(tmp_path / "streamed", "k", 32, memory_bytes=memory_bytes)
    for start in range(0, len(keys), 3000):
        writer.add(keys[start:start + 3000], ids[start:start + 3000])
    streamed = writer.finish()
    reference = DigestIndex.build(keys, ids, tmp_path / "reference", "k")
    queries = np.concatenate([keys[::7], random_keys(rng, 5000)])
    for got, want in zip(streamed.lookup(queries), reference.lookup(queries)):
        assert np.array_equal(np.sort(got), np.sort(want))
    assert np.array_equal(streamed.prefixes, reference.prefixes)
    assert np.array_equal(streamed.bitmap, reference.bitmap), "the same bitmap prefilter as the banks' index"
    assert not list((tmp_path / "streamed").glob("*.bin")), "bucket files are removed"


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
    metadata, stems, entries = build_list_indexes(listed, types, tmp_path / "index")
    assert entries == {"url_sha256": 1, "sha256": 0, "md5": 1, "key": 1} and "sha256" not in stems
    matcher = RemovalListSource(str(tmp_path / "index"), stems).open()
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
    _, stems, entries = build_list_indexes(listed, ("url_sha256", "key"), tmp_path / "index", workers=2)
    assert entries == {"url_sha256": 5000, "key": 5000}
    index = RemovalListSource(str(tmp_path / "index"), stems).open().indexes["url_sha256"]
    queries = np.array([np.frombuffer(bytes.fromhex(d), np.uint8) for d in digests[::-1]])
    rows, ids = index.lookup(queries)
    assert np.array_equal(rows, np.arange(5000)) and np.array_equal(ids, np.arange(4999, -1, -1))
    assert not list((tmp_path / "index").glob("*.bin")), "bucket files are removed"
