"""The removal-list index cache: reused for the same list file only, verified, rebuilt when damaged."""

from __future__ import annotations

import hashlib
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from safeset.removals import apply as apply_module
from safeset.removals import indexcache
from safeset.removals.apply import apply_list
from safeset.removals.indexcache import ListIdentity, ListIndexCache, mapped_checksum
from safeset.removals.listfile import RemovalListWriter, list_metadata
from safeset.removals.listindex import build_list_indexes
from safeset.signals.url import canonical_url


def url_sha256(url: str) -> str:
    return hashlib.sha256(canonical_url(url).encode("utf-8")).hexdigest()


def md5_hex(n: int) -> str:
    return hashlib.md5(f"image-{n}".encode()).hexdigest()


@pytest.fixture
def dataset(tmp_path):
    """60 rows with a URL and an image MD5 column."""
    directory = tmp_path / "data"
    directory.mkdir()
    pq.write_table(pa.table({"key": [f"k{n}" for n in range(60)],
                             "URL": [f"https://example.com/{n}.jpg" for n in range(60)],
                             "md5": [md5_hex(n) for n in range(60)]}), directory / "part-0.parquet")
    return directory


def write_list(path, url_rows=(), md5_rows=(), padding=0):
    """A list naming rows `url_rows` by URL digest and `md5_rows` by image MD5 (plus unrelated entries)."""
    urls = [url_sha256(f"https://example.com/{n}.jpg") for n in url_rows] + [None] * len(md5_rows)
    md5s = [None] * len(url_rows) + [md5_hex(n) for n in md5_rows]
    urls += [hashlib.sha256(f"other-{n}".encode()).hexdigest() for n in range(padding)]
    md5s += [None] * padding
    writer = RemovalListWriter(path, list_metadata(source_dataset="d", source_version=None, total=len(urls),
                                                   decoys=0, kind="published"))
    writer.write(pa.table({"url_sha256": pa.array(urls, pa.string()), "image_sha256": pa.nulls(len(urls), pa.string()),
                           "image_md5": pa.array(md5s, pa.string()), "key": pa.nulls(len(urls), pa.string())}))
    writer.commit()
    return path


@pytest.fixture
def builds(monkeypatch):
    """The signal types each index build was asked for, in order."""
    calls = []

    def counting(list_path, signal_types, *args, **kwargs):
        calls.append(tuple(signal_types))
        return build_list_indexes(list_path, signal_types, *args, **kwargs)

    monkeypatch.setattr(apply_module, "build_list_indexes", counting)
    return calls


def removed_keys(out) -> set[str]:
    return {row["key"] for row in pq.read_table(out / "_safeset" / "removed.parquet").to_pylist()}


def apply(listed, dataset, out, cache, **options):
    result = apply_list(listed, dataset, out, index_cache=cache, workers=1, **options)
    assert result.exit_code == 0
    return removed_keys(out)


def test_a_second_apply_of_the_same_list_reuses_its_index(tmp_path, dataset, builds):
    listed = write_list(tmp_path / "list.parquet", url_rows=[1, 2], md5_rows=[3], padding=50)
    cache = tmp_path / "cache"
    assert apply(listed, dataset, tmp_path / "first", cache) == {"k1", "k2", "k3"}
    assert apply(listed, dataset, tmp_path / "second", cache) == {"k1", "k2", "k3"}
    assert builds == [("url_sha256", "sha256", "md5")], "built once"
    list_dir = cache / mapped_checksum(listed)
    assert sorted(p.name for p in list_dir.iterdir()) == ["md5", "sha256", "url_sha256"]
    assert json.loads((list_dir / "sha256" / "manifest.json").read_text())["entries"] == 0
    # Only the types a later --match adds are built.
    assert apply(listed, dataset, tmp_path / "third", cache, match=("url", "image", "key")) == {"k1", "k2", "k3"}
    assert builds[1:] == [("key",)]


def test_an_index_is_never_used_for_another_list(tmp_path, dataset, builds):
    listed = write_list(tmp_path / "list.parquet", url_rows=[1, 2])
    cache = tmp_path / "cache"
    assert apply(listed, dataset, tmp_path / "first", cache) == {"k1", "k2"}
    write_list(listed, url_rows=[4, 5])  # same path, other content
    assert apply(listed, dataset, tmp_path / "second", cache) == {"k4", "k5"}
    assert len(builds) == 2


@pytest.mark.parametrize("damage", ["flip a key byte", "truncate ids", "manifest of another list", "lose a file"])
def test_a_damaged_cached_index_is_rebuilt(tmp_path, dataset, builds, damage):
    listed = write_list(tmp_path / "list.parquet", url_rows=[1, 2], padding=20)
    cache = tmp_path / "cache"
    apply(listed, dataset, tmp_path / "first", cache, match=("url",))
    index_dir = cache / mapped_checksum(listed) / "url_sha256"
    if damage == "flip a key byte":
        keys = index_dir / "url_sha256.keys.npy"
        data = bytearray(keys.read_bytes())
        data[-1] ^= 0xFF
        keys.write_bytes(bytes(data))
    elif damage == "truncate ids":
        ids = index_dir / "url_sha256.ids.npy"
        ids.write_bytes(ids.read_bytes()[:-4])
    elif damage == "manifest of another list":
        manifest = json.loads((index_dir / "manifest.json").read_text())
        manifest["list_xxh3_128"] = "0" * 32
        (index_dir / "manifest.json").write_text(json.dumps(manifest))
    else:
        (index_dir / "url_sha256.slots.npy").unlink()
    assert apply(listed, dataset, tmp_path / "second", cache, match=("url",)) == {"k1", "k2"}
    assert len(builds) == 2, "rebuilt"
    assert ListIndexCache(cache).find(ListIdentity(mapped_checksum(listed), listed.stat().st_size), ("url_sha256",))


def test_an_unwritable_cache_falls_back_to_a_one_run_index(tmp_path, dataset):
    listed = write_list(tmp_path / "list.parquet", url_rows=[7])
    not_a_directory = tmp_path / "cache"
    not_a_directory.write_text("a file where the cache should be")
    with pytest.warns(UserWarning, match="not writable"):
        assert apply(listed, dataset, tmp_path / "out", not_a_directory) == {"k7"}
    assert not_a_directory.read_text() == "a file where the cache should be"


def test_no_cache_leaves_nothing_behind(tmp_path, dataset):
    listed = write_list(tmp_path / "list.parquet", url_rows=[7])
    spills = tmp_path / "tmp"
    spills.mkdir()
    assert apply(listed, dataset, tmp_path / "out", None, tmp_dir=spills) == {"k7"}
    assert not list(spills.iterdir())


def test_the_cache_keeps_the_lists_used_last(tmp_path, dataset, monkeypatch):
    monkeypatch.setattr(indexcache, "KEEP_LISTS", 2)
    cache = tmp_path / "cache"
    lists = [write_list(tmp_path / f"list-{n}.parquet", url_rows=[n]) for n in range(3)]
    checksums = [mapped_checksum(path) for path in lists]
    apply(lists[0], dataset, tmp_path / "a", cache)
    apply(lists[1], dataset, tmp_path / "b", cache)
    os.utime(cache / checksums[0], (1, 1))
    os.utime(cache / checksums[1], (2, 2))
    apply(lists[0], dataset, tmp_path / "c", cache)  # used again: now the most recent
    apply(lists[2], dataset, tmp_path / "d", cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted([checksums[0], checksums[2]])


def test_two_builders_of_one_list_end_with_one_sound_index(tmp_path):
    listed = write_list(tmp_path / "list.parquet", url_rows=[1, 2, 3])
    cache = ListIndexCache(tmp_path / "cache")
    identity = ListIdentity(mapped_checksum(listed), listed.stat().st_size)
    published = []
    for _ in range(2):  # both found nothing and built; the second to publish keeps the first one's
        staging = cache.staging(identity)
        _, entries = build_list_indexes(listed, ("url_sha256",), staging)
        published.append(cache.publish(staging, identity, entries, workers=2)["url_sha256"])
    assert published[0] == published[1] and published[0].entries == 3
    assert [p.name for p in (tmp_path / "cache" / identity.checksum).iterdir() if not p.name.startswith(".")] \
        == ["url_sha256"]


def test_abandoned_builds_are_cleared(tmp_path):
    cache = ListIndexCache(tmp_path / "cache")
    identity = ListIdentity("ab" * 16, 1)
    list_dir = tmp_path / "cache" / identity.checksum
    abandoned = list_dir / ".tmp-999999999-dead"  # no such process
    abandoned.mkdir(parents=True)
    staging = cache.staging(identity)
    assert not abandoned.exists() and staging.exists()


def test_mapped_checksum_is_the_files_xxh3_whatever_the_window(tmp_path, monkeypatch):
    import mmap

    import xxhash

    data = os.urandom(3 * mmap.ALLOCATIONGRANULARITY + 123)
    (tmp_path / "file").write_bytes(data)
    (tmp_path / "empty").write_bytes(b"")
    monkeypatch.setattr(indexcache, "_CHECKSUM_WINDOW", mmap.ALLOCATIONGRANULARITY)
    assert mapped_checksum(tmp_path / "file") == xxhash.xxh3_128(data).hexdigest()
    assert mapped_checksum(tmp_path / "empty") == xxhash.xxh3_128(b"").hexdigest()
