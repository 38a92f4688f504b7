"""Removal lists end to end, through the CLI: clean, publish with decoys, apply to a derivative copy.

The derivative is what holders of older copies have: re-keyed, shuffled, a
subset, in another format. Every real removal in it must go, and nothing the
list does not name may go.
"""

from __future__ import annotations

import hashlib
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from e2e_util import removed_rows, run_json, safeset
from safeset.demo_data import generate_demo
from safeset.signals.url import canonical_url

SEED = "a-private-test-secret"


@pytest.fixture(autouse=True)
def _own_store(tmp_path, monkeypatch):
    """`removals apply` keeps list indexes in the store's cache: a store of each test's own."""
    monkeypatch.setenv("SAFESET_STORE", str(tmp_path / "default-store"))


def url_sha256(url: str) -> str:
    return hashlib.sha256(canonical_url(url).encode("utf-8")).hexdigest()


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory):
    """The demo data, cleaned against its URL and image banks (parquet and webdataset)."""
    root = tmp_path_factory.mktemp("removals")
    data = generate_demo(root / "data", seed=5)
    store = root / "store"
    for file_name, bank, kind in (("urls.txt", "URLS", "url"), ("image_md5.csv", "IMAGES", "md5")):
        safeset("bank", "import", bank, data.banks[file_name], "--type", kind, "--store", store)
    safeset("clean", data.laion_dir, "--out", root / "laion-clean", "--store", store, "--workers", "2")
    safeset("clean", data.images_dir, "--out", root / "images-clean", "--store", store, "--workers", "1")
    return data, root


def list_rows(path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def laion_rows(data) -> list[dict]:
    rows = []
    for shard in data.laion_shards:
        for position, row in enumerate(pq.read_table(shard).to_pylist()):
            rows.append({**row, "source": shard.name, "position": position})
    return rows


def write_jsonl_derivative(rows: list[dict], directory, shards: int = 2) -> None:
    """Re-keyed and shuffled rows, as JSONL with lower-case columns (another format, other names)."""
    directory.mkdir()
    for shard in range(shards):
        with open(directory / f"derived-{shard}.jsonl", "w", encoding="utf-8") as handle:
            for row in rows[shard::shards]:
                handle.write(json.dumps({"key": row["new_key"], "url": row["URL"], "caption": row["TEXT"],
                                         "md5": row["md5"]}) + "\n")


def test_publish_with_decoys_then_apply_to_a_rekeyed_shuffled_subset_in_another_format(cleaned, tmp_path):
    data, root = cleaned
    withheld = removed_rows(root / "laion-clean")
    real = {(r["source"], r["position"]) for r in withheld}
    assert len(real) >= 5

    listed = tmp_path / "list.parquet"
    result = safeset("removals", "publish", root / "laion-clean", "--out", listed, "--decoys", "3",
                     "--seed", SEED, "--dataset-name", "demo-laion@2024-01", "--json")
    summary = json.loads(result.stdout)
    assert summary["withheld_listed"] == len(real) and summary["decoys_listed"] == 3 * len(real)

    # The file: the agreed columns and metadata, and nothing that tells decoys apart.
    parquet = pq.ParquetFile(listed)
    metadata = json.loads(parquet.schema_arrow.metadata[b"safeset.removal_list"])
    assert metadata["source_dataset"] == "demo-laion" and metadata["source_version"] == "2024-01"
    assert metadata["total"] == 4 * len(real) and metadata["decoys"] == 3 and metadata["kind"] == "published"
    assert parquet.schema_arrow.names == ["url_sha256", "image_sha256", "image_md5", "key"]
    entries = list_rows(listed)
    by_digest = {r["url_sha256"]: r for r in entries}
    real_digests = {r["url_sha256"] for r in withheld}
    assert real_digests <= set(by_digest)
    # Same null pattern for real rows and decoys (this dataset has an md5 column, no image sha256).
    assert {(r["image_sha256"] is None, r["image_md5"] is None) for r in entries} == {(True, False)}
    real_places = [i for i, r in enumerate(entries) if r["url_sha256"] in real_digests]
    assert real_places != list(range(len(real))), "real removals must not come first"

    # Decoys are kept samples of the same dataset.
    rows = laion_rows(data)
    digest_of = {(r["source"], r["position"]): url_sha256(r["URL"]) for r in rows}
    kept_digests = {d for place, d in digest_of.items() if place not in real}
    decoy_digests = set(by_digest) - real_digests
    assert len(decoy_digests) == 3 * len(real) and decoy_digests <= kept_digests

    # A holder's copy: every real removal, a third of the decoys, half the rest; re-keyed, shuffled, JSONL.
    rng = random.Random(7)
    subset = [r for r in rows if (r["source"], r["position"]) in real
              or (digest_of[(r["source"], r["position"])] in decoy_digests and rng.random() < 0.34)
              or rng.random() < 0.5]
    rng.shuffle(subset)
    for number, row in enumerate(subset):
        row["new_key"] = f"copy-{number:06d}"
    derived = tmp_path / "derived"
    write_jsonl_derivative(subset, derived)

    out = tmp_path / "applied"
    safeset("removals", "apply", listed, derived, "--out", out, "--workers", "2")
    run = run_json(out)
    assert run["command"] == "removals-apply" and run["conservation_ok"] and run["exit_code"] == 0
    assert run["sources"][0]["metadata"] == metadata and run["sources"][0]["match"] == ["url", "image"]
    counts = run["counts"]
    assert counts["input_rows"] == len(subset) and counts["review_rows"] == 0

    listed_md5 = {r["image_md5"] for r in entries}
    should_go = {r["new_key"] for r in subset
                 if digest_of[(r["source"], r["position"])] in by_digest or r["md5"] in listed_md5}
    gone = {r["key"] for r in removed_rows(out)}
    assert gone == should_go
    assert {r["new_key"] for r in subset if (r["source"], r["position"]) in real} <= gone
    for record in removed_rows(out):
        assert record["action"] == "remove"
        assert {reason["rule"] for reason in record["reasons"]} == {"removal-list"}
    kept_lines = [json.loads(line) for path in sorted(out.glob("derived-*.jsonl")) for line in path.open()]
    assert len(kept_lines) == counts["kept_rows"] == len(subset) - len(should_go)
    assert not {line["key"] for line in kept_lines} & gone


def test_webdataset_list_cleans_a_parquet_copy_by_image_digest(cleaned, tmp_path):
    data, root = cleaned
    withheld = removed_rows(root / "images-clean")
    assert withheld and all(r["image_sha256"] and r["image_md5"] for r in withheld)
    listed = tmp_path / "list.parquet"
    safeset("removals", "publish", root / "images-clean", "--out", listed, "--decoys", "2", "--seed", SEED)
    entries = list_rows(listed)
    assert len(entries) == 3 * len(withheld)
    assert all(r["image_sha256"] and r["image_md5"] and r["url_sha256"] for r in entries)

    # The copy: metadata only, re-keyed, the image sha256 from img2dataset's column.
    table = pa.concat_tables(pq.read_table(p.with_suffix(".parquet")) for p in data.tar_shards)
    table = table.filter(pa.compute.equal(table.column("status"), "success"))
    rows = table.select(["url", "caption", "sha256"]).to_pylist()
    random.Random(3).shuffle(rows)
    copy = pa.table({"key": [f"x{n}" for n in range(len(rows))], "URL": [r["url"] for r in rows],
                     "sha256": [r["sha256"] for r in rows]})
    pq.write_table(copy, tmp_path / "copy.parquet")

    out = tmp_path / "applied"
    safeset("removals", "apply", listed, tmp_path / "copy.parquet", "--out", out, "--match", "image")
    listed_sha256 = {r["image_sha256"] for r in entries}
    expected = {k for k, s in zip(copy.column("key").to_pylist(), copy.column("sha256").to_pylist())
                if s in listed_sha256}
    assert {r["key"] for r in removed_rows(out)} == expected
    assert {w["image_sha256"] for w in withheld} <= {s for s in copy.column("sha256").to_pylist()} | {None}
    assert pq.read_table(out / "copy.parquet").num_rows == len(rows) - len(expected)


def test_diff_lists_what_a_release_dropped_and_applying_it_reproduces_the_release(cleaned, tmp_path):
    data, root = cleaned
    listed = tmp_path / "diff.parquet"
    result = safeset("removals", "diff", data.laion_dir, root / "laion-clean", "--out", listed, "--json")
    summary = json.loads(result.stdout)
    withheld = removed_rows(root / "laion-clean")
    assert summary["listed"] == len(withheld) and summary["metadata"]["kind"] == "diff"
    assert {r["url_sha256"] for r in list_rows(listed)} == {r["url_sha256"] for r in withheld}
    out = tmp_path / "applied"
    safeset("removals", "apply", listed, data.laion_dir, "--out", out, "--match", "url")
    assert run_json(out)["counts"]["kept_rows"] == run_json(root / "laion-clean")["counts"]["kept_rows"]


def test_key_matching_is_only_used_when_asked(cleaned, tmp_path):
    data, root = cleaned
    listed = tmp_path / "list.parquet"
    safeset("removals", "publish", root / "laion-clean", "--out", listed)
    # A copy whose URLs and digests all changed but whose keys are the original ones.
    table = pa.concat_tables(pq.read_table(p) for p in data.laion_shards)
    keys = [f"{shard.name}#{i}" for shard in data.laion_shards for i in range(pq.read_metadata(shard).num_rows)]
    copy = pa.table({"key": keys, "URL": [f"https://mirror.example/{n}.jpg" for n in range(table.num_rows)]})
    pq.write_table(copy, tmp_path / "mirror.parquet")
    by_default = tmp_path / "default"
    safeset("removals", "apply", listed, tmp_path / "mirror.parquet", "--out", by_default)
    assert run_json(by_default)["counts"]["removed_rows"] == 0
    by_key = tmp_path / "by-key"
    safeset("removals", "apply", listed, tmp_path / "mirror.parquet", "--out", by_key, "--match", "key")
    assert {r["key"] for r in removed_rows(by_key)} == {r["key"] for r in removed_rows(root / "laion-clean")}


def said(result) -> str:
    """stderr as one line (the console wraps long messages)."""
    return " ".join(result.stderr.split())


def test_clear_errors_for_files_that_are_not_removal_lists(cleaned, tmp_path):
    data, root = cleaned
    not_a_list = data.laion_shards[0]
    result = safeset("removals", "apply", not_a_list, data.laion_dir, "--out", tmp_path / "x", check=2)
    assert "not a removal list" in said(result) and str(not_a_list) in result.stderr.replace("\n", "")
    assert "Traceback" not in result.stderr
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"url_sha256": ["zz"]}), bad)
    result = safeset("removals", "apply", bad, data.laion_dir, "--out", tmp_path / "y", check=2)
    assert "not a removal list" in said(result)
    result = safeset("removals", "publish", tmp_path, "--out", tmp_path / "z.parquet", check=2)
    assert "holds no safeset run" in said(result)


def test_apply_resumes_with_a_rebuilt_index_and_refuses_to_overwrite(cleaned, tmp_path):
    data, root = cleaned
    listed = tmp_path / "list.parquet"
    safeset("removals", "publish", root / "laion-clean", "--out", listed)
    out = tmp_path / "applied"
    safeset("removals", "apply", listed, data.laion_dir, "--out", out, "--workers", "1")
    first = (out / "_safeset" / "removed.parquet").read_bytes()
    (out / "_safeset" / "shards" / "part-00001.parquet.json").unlink()  # as if killed before the last shard
    safeset("removals", "apply", listed, data.laion_dir, "--out", out, "--workers", "1", "--resume")
    assert (out / "_safeset" / "removed.parquet").read_bytes() == first
    assert run_json(out)["counts"] == run_json(root / "laion-clean")["counts"]
    again = safeset("removals", "apply", listed, data.laion_dir, "--out", out, check=2)
    assert "already holds a run" in said(again)


def test_records_only_lists_the_same_rows_and_writes_no_copy(cleaned, tmp_path):
    data, root = cleaned
    listed = tmp_path / "list.parquet"
    safeset("removals", "publish", root / "laion-clean", "--out", listed)
    out = tmp_path / "checked"
    safeset("removals", "apply", listed, data.laion_dir, "--out", out, "--records-only")
    assert run_json(out)["command"] == "removals-scan"
    assert not list(out.glob("*.parquet")), "no cleaned copy"
    assert {(r["source"], r["position"]) for r in removed_rows(out)} == \
        {(r["source"], r["position"]) for r in removed_rows(root / "laion-clean")}


def test_apply_keeps_the_list_index_in_the_store_unless_told_not_to(cleaned, tmp_path):
    data, root = cleaned
    listed = tmp_path / "list.parquet"
    safeset("removals", "publish", root / "laion-clean", "--out", listed)
    store = tmp_path / "store"
    for name in ("first", "second"):
        safeset("removals", "apply", listed, data.laion_dir, "--out", tmp_path / name, "--store", store)
        assert run_json(tmp_path / name)["counts"] == run_json(root / "laion-clean")["counts"]
    (cached,) = (store / "cache" / "removal-lists").iterdir()
    assert sorted(p.name for p in cached.iterdir()) == ["md5", "sha256", "url_sha256"]
    other = tmp_path / "other-store"
    safeset("removals", "apply", listed, data.laion_dir, "--out", tmp_path / "third", "--store", other,
            "--no-index-cache")
    assert not other.exists()
