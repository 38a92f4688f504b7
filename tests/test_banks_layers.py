"""Layered versions: appends to a big bank cost the addition, and read exactly like full versions."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from safeset.banks.contents import content_digest, parts_of
from safeset.banks.layers import MERGE_RATIO, layers_to_merge
from safeset.banks.store import BankStore

RNG = np.random.default_rng(5)
PDQ = [RNG.integers(0, 256, 32, dtype=np.uint8).tobytes().hex() for _ in range(400)]


def md5_of(i: int) -> str:
    return hashlib.md5(f"benign-{i}".encode()).hexdigest()


def batch(k: int) -> list[tuple[str, str]]:
    """The k-th addition: new md5s, a URL, a domain, PDQ hashes, and one repeat of an old entry."""
    entries = [("md5", md5_of(1000 + 7 * k + j)) for j in range(7)]
    entries += [("url", f"https://example.com/benign/{k}?a=1"), ("domain", f"host{k}.example.org")]
    entries += [("pdq", PDQ[100 + 3 * k + j]) for j in range(3)]
    entries += [("md5", md5_of(0))]
    return entries


def base_entries() -> list[tuple[str, str]]:
    return [("md5", md5_of(i)) for i in range(300)] + [("pdq", h) for h in PDQ[:100]] + [("domain", "example.net")]


@pytest.fixture
def stores(tmp_path):
    """The same bank in two stores: one writing layered versions, one always writing full ones."""
    layered = BankStore(tmp_path / "layered", delta_min_entries=0)
    full = BankStore(tmp_path / "full", delta_min_entries=10**12)
    for store in (layered, full):
        store.add_entries("B", base_entries())
    return layered, full


def rows(store: BankStore, version: int | None = None) -> list[tuple]:
    table = store.open_version("B", version).entries().to_pydict()
    return list(zip(table["entry_id"], table["signal_type"], table["value"]))


def test_layered_versions_hold_the_same_entries_and_ids_as_full_ones(stores):
    layered, full = stores
    for k in range(12):
        a, b = layered.add_entries("B", batch(k)), full.add_entries("B", batch(k))
        assert (a.version, a.added, a.already_present, a.duplicates, a.entries, a.counts) == (
            b.version, b.added, b.already_present, b.duplicates, b.entries, b.counts)
        assert rows(layered) == rows(full)
    assert layered.open_version("B").layered and not full.open_version("B").layered
    for version in (2, 7, 13):
        assert rows(layered, version) == rows(full, version)


def test_layered_indexes_find_entries_of_every_layer(stores):
    layered, full = stores
    for k in range(6):
        layered.add_entries("B", batch(k))
        full.add_entries("B", batch(k))
    a, b = layered.open_version("B"), full.open_version("B")
    assert len(a.layers) > 1

    wanted = [md5_of(i) for i in (0, 5, 1000, 1020, 1041, 99999)]
    queries = np.frombuffer(b"".join(bytes.fromhex(v) for v in wanted), np.uint8).reshape(-1, 16)
    for version in (a, b):
        found_rows, ids = version.digest_index("md5").lookup(queries)
        assert found_rows.tolist() == [0, 1, 2, 3, 4]
    assert a.digest_index("md5").lookup(queries)[1].tolist() == b.digest_index("md5").lookup(queries)[1].tolist()

    from safeset.pdq.index import hex_to_hashes

    pdq_queries = hex_to_hashes([PDQ[3], PDQ[101], PDQ[117], PDQ[399]])
    hits_a = a.own_index("pdq").search(pdq_queries, 31)
    hits_b = b.own_index("pdq").search(pdq_queries, 31)
    assert [x.tolist() for x in hits_a] == [x.tolist() for x in hits_b]
    assert hits_a[0].tolist() == [0, 1, 2]  # the fourth hash was never added
    assert a.entry_id("domain", "host3.example.org") == b.entry_id("domain", "host3.example.org")
    for signal_type, value in [("pdq", PDQ[104]), ("md5", md5_of(1030)), ("url", "https://EXAMPLE.com/benign/2?a=1")]:
        entry = a.entry_id(signal_type, value)
        assert entry is not None and entry == b.entry_id(signal_type, value)
        assert a.find_entry(entry) == b.find_entry(entry) == (signal_type, a.find_entry(entry)[1])
    assert a.entry_id("md5", md5_of(99999)) is None and a.find_entry(10**9) is None
    assert a.values("domain") == b.values("domain")


def test_an_append_links_the_parent_and_writes_only_the_addition(stores):
    layered, _ = stores
    result = layered.add_entries("B", batch(0))
    version = layered.open_version("B", result.version)
    base, addition = version.layers
    parent = layered.open_version("B", 1)
    assert os.stat(base.path / "entries.parquet").st_ino == os.stat(parent.path / "entries.parquet").st_ino
    assert addition.entries_count == result.added == 12
    assert version.manifest["manifest_format"] == 2 and version.manifest["parent_version"] == 1


def test_deleting_the_parent_leaves_the_layered_child_whole(stores):
    layered, full = stores
    layered.add_entries("B", batch(0))
    full.add_entries("B", batch(0))
    layered.delete("B", 1)
    assert rows(layered) == rows(full)
    assert len(layered.open_version("B").digest_index("md5")) == 300 + 7


def test_layer_sizes_fall_geometrically_and_big_additions_compact(stores):
    layered, full = stores
    for k in range(20):
        layered.add_entries("B", batch(k))
        sizes = [layer.entries_count for layer in layered.open_version("B").layers]
        assert all(later * MERGE_RATIO <= earlier for earlier, later in zip(sizes, sizes[1:]))
    big = [("md5", md5_of(50_000 + i)) for i in range(200)]
    compacted = layered.add_entries("B", big)
    full_result = [full.add_entries("B", batch(k)) for k in range(20)][-1]
    full_result = full.add_entries("B", big)
    version = layered.open_version("B")
    assert not version.layered, "an addition reaching a quarter of the base rebuilds a full version"
    assert compacted.digest == full_result.digest == version.digest
    assert version.digest == content_digest(list(parts_of(version.entries(), version.manifest["counts"]).values()))
    assert rows(layered) == rows(full)


def test_an_append_of_nothing_new_creates_no_version(stores):
    layered, _ = stores
    first = layered.add_entries("B", batch(0))
    again = layered.add_entries("B", batch(0) + batch(0))
    assert not again.created and again.unchanged and again.version == first.version
    assert again.digest == first.digest and again.already_present == 13 and again.duplicates == 13


def test_replace_and_export_work_on_layered_versions(stores, tmp_path):
    layered, full = stores
    for store in stores:
        store.add_entries("B", batch(0))
        store.export("B", tmp_path / f"{id(store)}.csv", "csv")
    assert (tmp_path / f"{id(layered)}.csv").read_bytes() == (tmp_path / f"{id(full)}.csv").read_bytes()
    kept = batch(0)[:5] + [("md5", md5_of(7))]
    a = layered.add_entries("B", kept, replace=True)
    b = full.add_entries("B", kept, replace=True)
    assert (a.removed, a.entries, a.digest) == (b.removed, b.entries, b.digest)
    assert rows(layered) == rows(full) and not layered.open_version("B").layered


def test_import_file_appends_as_a_layer(stores, tmp_path):
    layered, _ = stores
    path = tmp_path / "more.txt"
    path.write_text("".join(f"{md5_of(70_000 + i)}\n" for i in range(10)), encoding="utf-8")
    result = layered.import_file("B", path, signal_type="md5")
    version = layered.open_version("B")
    assert result.added == 10 and version.layered and version.manifest["source"]["kind"] == "file"
    assert [b.name for b in layered.list_banks()] == ["B"] and layered.list_banks()[0].entries == 401 + 10


@pytest.mark.parametrize(
    ("sizes", "added", "merged"),
    [([100], 3, 0), ([100, 3], 3, 1), ([100, 12], 3, 0), ([100], 30, 1), ([10000, 200, 40], 15, 2), ([1000, 200, 40], 15, 3)],
)
def test_layers_to_merge(sizes, added, merged):
    assert layers_to_merge(sizes, added) == merged


def test_a_scan_matches_every_layer(tmp_path):
    """Scans read layered versions through the same probes: a hit in the base and one in an added layer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from safeset.api import scan

    store = BankStore(tmp_path / "store", delta_min_entries=0)
    base = [("url", f"https://example.net/other-{i}.jpg") for i in range(20)]
    store.add_entries("URLS", [*base, ("url", "https://example.net/base.jpg"), ("domain", "listed.example.org")])
    store.add_entries("URLS", [("url_md5", hashlib.md5(b"https://example.net/Added.jpg").hexdigest())])
    assert store.open_version("URLS").layered
    data = tmp_path / "data"
    data.mkdir()
    urls = ["https://example.net/ok.jpg", "HTTPS://EXAMPLE.NET/base.jpg", "https://example.net/Added.jpg",
            "http://cdn.listed.example.org/x.jpg"]
    pq.write_table(pa.table({"url": urls}), data / "p.parquet")
    result = scan(data, tmp_path / "scan", store=store.root, workers=1)
    assert result.run["counts"]["removed_rows"] == 3
