"""BankStore: versions, stable ids, content digest, atomicity, export/import round trips, deletion."""

from __future__ import annotations

import gzip
import hashlib
import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from safeset.banks.names import normalize_bank_name
from safeset.banks.store import BankStore, default_store_root
from safeset.errors import ConfigError


def md5_of(i: int) -> str:
    return hashlib.md5(f"benign-{i}".encode()).hexdigest()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def md5_list(tmp_path: Path, name: str, numbers) -> Path:
    return write(tmp_path, name, "".join(f"{md5_of(i)}\n" for i in numbers))


def ids_by_value(store: BankStore, bank: str, version: int | None = None) -> dict[str, int]:
    table = store.open_version(bank, version).entries().to_pydict()
    return dict(zip(table["value"], table["entry_id"]))


@pytest.fixture
def store(tmp_path) -> BankStore:
    return BankStore(tmp_path / "store")


# ---------------------------------------------------------------- names and root


@pytest.mark.parametrize(("given", "expected"), [("demo_urls", "DEMO_URLS"), ("Bank_2", "BANK_2"), ("_X", "_X")])
def test_bank_names_follow_hma_rule(given, expected):
    assert normalize_bank_name(given) == expected


@pytest.mark.parametrize("bad", ["", "2BANK", "demo-urls", "demo urls", "ДЕМО", "ſtrange", "A" * 200, "../X"])
def test_bad_bank_names_are_refused_with_the_rule(bad):
    with pytest.raises(ConfigError, match="A-Z_"):
        normalize_bank_name(bad)


def test_default_store_root_order(monkeypatch, tmp_path):
    monkeypatch.setenv("SAFESET_STORE", str(tmp_path / "from-env"))
    assert default_store_root(tmp_path / "explicit") == tmp_path / "explicit"
    assert default_store_root() == tmp_path / "from-env"
    monkeypatch.delenv("SAFESET_STORE")
    assert default_store_root() == Path("~/.safeset").expanduser()


# ---------------------------------------------------------------- versions and ids


def test_import_creates_a_complete_version(store, tmp_path):
    path = write(tmp_path, "bank.txt", f"# demo\nmd5 {md5_of(1)}\nmd5 {md5_of(1)}\nmd5 nothex\nurl https://Example.com/a\n")
    result = store.import_file("demo", path, note="first")
    assert result.created and result.version == 1 and result.bank == "DEMO"
    assert (result.accepted, result.duplicates, result.added, result.rejected) == (3, 1, 2, 1)
    assert result.rejections[0].line == 4
    version_dir = store.root / "banks" / "DEMO" / "versions" / "000001"
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert manifest["source"]["format"] == "pytx" and manifest["note"] == "first"
    assert manifest["counts"] == {"md5": 1, "url": 1} and manifest["parent_version"] is None
    assert (manifest["accepted"], manifest["rejected"], manifest["duplicates"]) == (3, 1, 1)
    rejected = [json.loads(line) for line in (version_dir / "rejected.jsonl").read_text().splitlines()]
    assert rejected == [{"line": 4, "reason": rejected[0]["reason"], "preview": "md5 nothex"}]
    assert "hex" in rejected[0]["reason"]
    assert sorted(p.name for p in (version_dir / "index").iterdir())[0] == "md5.filter.npy"
    json.dumps(result.to_dict())  # serialisable for --json


def test_append_keeps_ids_and_numbers_new_entries_after_the_max(store, tmp_path):
    store.import_file("b", md5_list(tmp_path, "a.txt", [1, 2, 3]), signal_type="md5")
    first = ids_by_value(store, "b")
    assert sorted(first.values()) == [1, 2, 3]
    result = store.import_file("b", md5_list(tmp_path, "b.txt", [3, 4, 5]), signal_type="md5")
    assert (result.version, result.parent_version, result.added, result.already_present) == (2, 1, 2, 1)
    second = ids_by_value(store, "b")
    assert {v: second[v] for v in first} == first
    assert sorted(second[md5_of(i)] for i in (4, 5)) == [4, 5]


def test_replace_drops_missing_entries_and_never_reuses_ids(store, tmp_path):
    store.import_file("b", md5_list(tmp_path, "a.txt", [1, 2, 3]), signal_type="md5")
    before = ids_by_value(store, "b")
    result = store.import_file("b", md5_list(tmp_path, "b.txt", [2, 9]), signal_type="md5", replace=True)
    assert (result.added, result.already_present, result.removed, result.entries) == (1, 1, 2, 2)
    after = ids_by_value(store, "b")
    assert set(after) == {md5_of(2), md5_of(9)} and after[md5_of(2)] == before[md5_of(2)]
    assert after[md5_of(9)] == 4
    store.import_file("b", md5_list(tmp_path, "c.txt", [1]), signal_type="md5")
    assert ids_by_value(store, "b")[md5_of(1)] == 5  # came back: a new id, not its old one
    assert ids_by_value(store, "b", 1) == before  # old versions still say what they said


def test_multi_type_append_and_replace(store):
    store.add_entries("m", [("md5", md5_of(1)), ("domain", "example.org"), ("term", "placeholderterm")])
    before = store.open_version("m").entries().to_pylist()
    appended = store.add_entries("m", [("domain", "example.net"), ("md5", md5_of(1))])
    assert (appended.added, appended.already_present) == (1, 1)
    after = store.open_version("m").entries().to_pylist()
    assert [row for row in after if row["value"] != "example.net"] == before
    assert [row["signal_type"] for row in after] == sorted(row["signal_type"] for row in after)
    replaced = store.add_entries("m", [("md5", md5_of(1)), ("sha1", hashlib.sha1(b"benign").hexdigest())], replace=True)
    assert (replaced.added, replaced.already_present, replaced.removed) == (1, 1, 3)
    assert store.open_version("m").signal_types() == ["md5", "sha1"]
    assert store.open_version("m").entry_id("md5", md5_of(1)) == before[1]["entry_id"]


def test_small_chunks_give_the_same_result(tmp_path, monkeypatch):
    """Chunked sorting, digesting and row groups must not change any outcome at chunk edges."""
    import safeset.banks.contents as contents

    entries = [("md5", md5_of(i % 23)) for i in range(40)] + [("domain", f"d{i % 7}.example.org") for i in range(20)]
    entries += [("term", f"placeholder{i}") for i in range(9)]
    reference = BankStore(tmp_path / "big").add_entries("b", entries)
    monkeypatch.setattr(contents, "ROW_GROUP_ENTRIES", 4)
    small_store = BankStore(tmp_path / "small")
    small = small_store.add_entries("b", entries)
    assert (small.digest, small.duplicates, small.added) == (reference.digest, reference.duplicates, reference.added)
    version = small_store.open_version("b")
    table = version.entries().to_pydict()
    for signal_type in ("domain", "md5", "term"):
        fresh = small_store.open_version("b")  # reads row groups, not the cached table
        rows = [(i, v) for i, t, v in zip(table["entry_id"], table["signal_type"], table["value"]) if t == signal_type]
        assert list(zip(fresh.entry_ids(signal_type).tolist(), fresh.values(signal_type))) == rows
    assert version.values("sha1") == [] and version.entry_ids("sha1").size == 0


def test_digest_changes_iff_content_changes(store, tmp_path):
    first = store.import_file("b", md5_list(tmp_path, "a.txt", [1, 2]), signal_type="md5")
    same = store.import_file("b", md5_list(tmp_path, "b.txt", [2, 1, 2]), signal_type="md5")
    assert not same.created and same.unchanged and same.version == 1 and same.digest == first.digest
    assert "no change" in same.message and not first.unchanged
    replaced_same = store.import_file("b", md5_list(tmp_path, "c.txt", [1, 2]), signal_type="md5", replace=True)
    assert not replaced_same.created
    changed = store.import_file("b", md5_list(tmp_path, "d.txt", [3]), signal_type="md5")
    assert changed.created and changed.digest != first.digest
    lines = sorted(f"md5\t{md5_of(i)}\n" for i in (1, 2, 3))
    assert changed.digest == hashlib.sha256("".join(lines).encode()).hexdigest()
    other = BankStore(tmp_path / "other")
    assert other.import_file("x", md5_list(tmp_path, "e.txt", [3, 2, 1]), signal_type="md5").digest == changed.digest


def test_old_versions_are_immutable(store, tmp_path):
    store.import_file("b", md5_list(tmp_path, "a.txt", [1, 2]), signal_type="md5")
    v1 = store.root / "banks" / "B" / "versions" / "000001"
    snapshot = {p: p.read_bytes() for p in v1.rglob("*") if p.is_file()}
    store.import_file("b", md5_list(tmp_path, "b.txt", [3]), signal_type="md5")
    store.import_file("b", md5_list(tmp_path, "c.txt", [4]), signal_type="md5", replace=True)
    assert {p: p.read_bytes() for p in v1.rglob("*") if p.is_file()} == snapshot
    assert store.open_version("b", 1).values("md5") == sorted([md5_of(1), md5_of(2)])
    assert [v.version for v in store.bank_versions("b")] == [1, 2, 3]


def test_all_rejected_import_creates_nothing_but_reports_why(store, tmp_path):
    path = write(tmp_path, "bad.txt", "md5 abc\nmd5 " + "00" * 16 + "\npdq " + "00" * 31 + "01\n")
    result = store.import_file("b", path)
    assert not result.created and result.version is None
    assert result.rejected == 3 and [r.line for r in result.rejections] == [1, 2, 3]
    assert "no version" in result.message
    assert store.list_banks() == []
    with pytest.raises(ConfigError, match="no bank 'B'"):
        store.open_version("b")
    empty = store.import_file("b", write(tmp_path, "empty.txt", "# nothing here\n"))
    assert not empty.created and "no entries" in empty.message


def test_unknown_type_argument_is_a_config_error(store, tmp_path):
    with pytest.raises(ConfigError, match="unknown signal type"):
        store.import_file("b", md5_list(tmp_path, "a.txt", [1]), signal_type="colour_hash")


def test_add_entries_numbers_rejections_by_position(store):
    result = store.add_entries("svc", [("md5", md5_of(1)), ("md5", "xyz"), ("domain", "Example.ORG")], note="api")
    assert result.created and result.added == 2
    assert [(r.line, r.reason.split(":")[0]) for r in result.rejections] == [(2, "invalid md5")]
    version = store.open_version("svc")
    assert version.values("domain") == ["example.org"]
    assert version.entry_id("domain", "EXAMPLE.org") == int(version.entry_ids("domain")[0])
    assert version.entry_id("md5", md5_of(42)) is None
    assert version.manifest["source"] == {"kind": "entries"}


def test_values_and_ids_are_aligned_per_type(store):
    store.add_entries("t", [("term", "placeholderterm"), ("term", "Another  Placeholder"), ("md5", md5_of(1))])
    version = store.open_version("t")
    assert version.signal_types() == ["md5", "term"]
    values, ids = version.values("term"), version.entry_ids("term")
    assert values == sorted(values) and len(ids) == 2 and ids.dtype == np.int64
    entries = version.entries().to_pydict()
    lookup = dict(zip(zip(entries["signal_type"], entries["value"]), entries["entry_id"]))
    assert [lookup[("term", v)] for v in values] == ids.tolist()


def test_digest_index_of_a_version(store):
    urls = ["https://example.com/a", "https://example.org/b?x=1"]
    store.add_entries("mix", [("md5", md5_of(i)) for i in range(100)] + [("url", u) for u in urls])
    version = store.open_version("mix")
    queries = np.frombuffer(bytes.fromhex(md5_of(7) + md5_of(1000)), np.uint8).reshape(2, 16)
    rows, ids = version.digest_index("md5").lookup(queries)
    assert rows.tolist() == [0] and ids.tolist() == [version.entry_id("md5", md5_of(7))]
    url_key = hashlib.md5(urls[1].encode()).digest()
    rows, ids = version.digest_index("url").lookup(np.frombuffer(url_key, np.uint8).reshape(1, 16))
    assert ids.tolist() == [version.entry_id("url", urls[1])]
    assert len(version.digest_index("sha1")) == 0
    with pytest.raises(ConfigError):
        version.digest_index("domain")


# ---------------------------------------------------------------- concurrency


def _import_in_child(root: str, path: str) -> None:
    BankStore(root).import_file("shared", path, signal_type="md5")


def test_concurrent_imports_each_get_their_own_complete_version(store, tmp_path):
    files = [md5_list(tmp_path, f"part{k}.txt", range(k * 50, k * 50 + 60)) for k in range(4)]
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_import_in_child, args=(str(store.root), str(f))) for f in files]
    for worker in workers:
        worker.start()
    while any(worker.is_alive() for worker in workers):  # readers see whole versions or none
        for info in store.list_banks():
            version = store.open_version(info.name, info.latest_version)
            assert version.entries().num_rows == version.manifest["entries"]
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    versions = store.bank_versions("shared")
    assert [v.version for v in versions] == [1, 2, 3, 4]
    latest = store.open_version("shared")
    ids = latest.entry_ids("md5")
    assert set(latest.values("md5")) == {md5_of(i) for i in range(0, 210)}
    assert len(set(ids.tolist())) == len(ids) == 210
    for info in versions:  # each version is the union of itself and everything before it
        assert store.open_version("shared", info.version).entries().num_rows == info.entries
    assert list((store.root / "tmp").iterdir()) == []


def test_a_failed_build_leaves_no_version_and_no_litter(store, tmp_path, monkeypatch):
    import safeset.banks.store as store_module

    store.import_file("b", md5_list(tmp_path, "a.txt", [1]), signal_type="md5")

    def explode(*args, **kwargs):
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(store_module, "build_indexes", explode)
    with pytest.raises(OSError):
        store.import_file("b", md5_list(tmp_path, "b.txt", [2]), signal_type="md5")
    assert [v.version for v in store.bank_versions("b")] == [1]
    assert list((store.root / "tmp").iterdir()) == []
    monkeypatch.undo()
    assert store.import_file("b", md5_list(tmp_path, "b.txt", [2]), signal_type="md5").version == 2


# ---------------------------------------------------------------- export and round trips


@pytest.mark.parametrize(("fmt", "suffix"), [("pytx", ".txt"), ("pytx-csv", ".csv"), ("csv", ".csv"), ("pytx", ".txt.gz")])
def test_export_then_import_round_trips(store, tmp_path, fmt, suffix):
    store.add_entries(
        "src",
        [("md5", md5_of(1)), ("url", "https://example.com/a,b?q=\"x\""), ("domain", "example.net"),
         ("term", "placeholder phrase")],
    )
    original = store.open_version("src")
    out = tmp_path / f"export{suffix}"
    assert store.export("src", out, fmt) == 4
    result = store.import_file("copy", out)
    assert result.rejected == 0 and result.digest == original.digest
    assert store.import_file("src", out).created is False  # nothing new for the source bank


def test_plain_export_needs_one_type(store, tmp_path):
    store.add_entries("src", [("md5", md5_of(1)), ("md5", md5_of(2)), ("domain", "example.net")])
    with pytest.raises(ConfigError, match="several signal types"):
        store.export("src", tmp_path / "x.txt", "plain")
    assert store.export("src", tmp_path / "x.txt", "plain", signal_type="md5") == 2
    result = store.import_file("copy", tmp_path / "x.txt", signal_type="md5")
    assert sorted(store.open_version("copy").values("md5")) == sorted([md5_of(1), md5_of(2)])
    assert result.rejected == 0


def test_line_formats_refuse_values_they_cannot_hold(store, tmp_path):
    store.add_entries("src", [("url", "https://example.com/a\nb")])
    for fmt in ("plain", "pytx"):
        with pytest.raises(ConfigError, match="line break"):
            store.export("src", tmp_path / f"x.{fmt}", fmt)
        assert not list(tmp_path.glob("*x.*"))  # no partial file left behind
    store.export("src", tmp_path / "x.csv", "pytx-csv")
    assert store.import_file("copy", tmp_path / "x.csv").digest == store.open_version("src").digest


def test_gz_export_is_gzip(store, tmp_path):
    store.add_entries("src", [("md5", md5_of(1))])
    store.export("src", tmp_path / "x.txt.gz", "plain")
    assert gzip.decompress((tmp_path / "x.txt.gz").read_bytes()).decode() == md5_of(1) + "\n"
    assert [p.name for p in tmp_path.iterdir() if "tmp" in p.name] == []


# ---------------------------------------------------------------- deletion and errors


def test_delete_a_version_then_the_bank(store, tmp_path):
    for k in range(3):
        store.import_file("b", md5_list(tmp_path, f"{k}.txt", [k]), signal_type="md5")
    assert store.delete("b", 3) == [3]
    assert [v.version for v in store.bank_versions("b")] == [1, 2]
    result = store.import_file("b", md5_list(tmp_path, "again.txt", [7]), signal_type="md5")
    assert result.version == 4  # a deleted number is not handed out again
    with pytest.raises(ConfigError, match="versions: 1, 2, 4"):
        store.open_version("b", 3)
    assert store.delete("b") == [1, 2, 4]
    assert store.list_banks() == []
    with pytest.raises(ConfigError, match="no bank"):
        store.delete("b")


def test_deleting_the_only_version_deletes_the_bank(store, tmp_path):
    store.import_file("b", md5_list(tmp_path, "a.txt", [1]), signal_type="md5")
    store.import_file("c", md5_list(tmp_path, "a.txt", [1]), signal_type="md5")
    assert store.delete("b", 1) == [1]
    assert [b.name for b in store.list_banks()] == ["C"]


def test_unknown_bank_lists_the_existing_ones(store, tmp_path):
    store.import_file("alpha", md5_list(tmp_path, "a.txt", [1]), signal_type="md5")
    with pytest.raises(ConfigError, match="banks: ALPHA"):
        store.open_version("beta")
    with pytest.raises(ConfigError, match="invalid bank name"):
        store.open_version("no-dashes")


def test_list_banks_reports_latest_counts(store, tmp_path):
    store.import_file("b", md5_list(tmp_path, "a.txt", [1, 2]), signal_type="md5")
    store.add_entries("b", [("domain", "example.org")])
    [info] = store.list_banks()
    assert (info.name, info.latest_version, info.versions, info.entries) == ("B", 2, 2, 3)
    assert info.counts == {"domain": 1, "md5": 2}
