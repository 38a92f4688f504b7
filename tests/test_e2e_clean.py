"""scan and clean end to end, through the CLI, on generated benign datasets."""

from __future__ import annotations

import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from e2e_util import import_bank, removed_rows, run_json, safeset
from safeset.demo_data import generate_demo

BANK_NAMES = {
    "urls.txt": "URLS",
    "url_md5.txt": "URL_MD5",
    "image_md5.csv": "IMAGE_MD5",
    "domains.txt": "DOMAINS",
    "terms.txt": "TERMS",
    "pdq.txt": "PDQ",
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = generate_demo(root / "data", seed=3)
    store = root / "store"
    for file_name, path in data.banks.items():
        safeset("bank", "import", BANK_NAMES[file_name], path, "--type", data.bank_types[file_name], "--store", store)
    return data, store, root


def expected(data, dataset_dir: str) -> set:
    """Every (shard, key-or-position) any demo bank knows in one dataset."""
    rows = set()
    for matches in data.expected_matches.values():
        for relpath, ident in matches:
            top, _, shard = relpath.partition("/")
            if top == dataset_dir:
                rows.add((shard, ident))
    return rows


def withheld(out, by: str) -> set:
    return {(r["source"], r[by]) for r in removed_rows(out)}


def test_clean_parquet_removes_exactly_the_known_rows(demo, tmp_path):
    data, store, _ = demo
    out = tmp_path / "clean"
    safeset("clean", data.laion_dir, "--out", out, "--store", store, "--workers", "2")
    assert withheld(out, "position") == expected(data, "laion")
    run = run_json(out)
    counts = run["counts"]
    assert counts["input_rows"] == sum(pq.read_metadata(p).num_rows for p in data.laion_shards)
    assert counts["input_rows"] == counts["kept_rows"] + counts["removed_rows"] + counts["review_rows"]
    assert run["conservation_ok"] and run["exit_code"] == 0
    assert {b["name"] for b in run["banks"]} == set(BANK_NAMES.values())
    # the cleaned copy: same names and schema, exactly the kept rows, none of the removed URLs
    removed_urls = {r["url"] for r in removed_rows(out)}
    kept = 0
    for shard in data.laion_shards:
        copy = out / shard.name
        original = pq.read_table(shard)
        cleaned = pq.read_table(copy)
        assert cleaned.schema == original.schema
        assert pq.read_metadata(copy).row_group(0).column(0).compression == pq.read_metadata(shard).row_group(0).column(0).compression
        assert not removed_urls & set(cleaned.column("URL").to_pylist())
        kept += cleaned.num_rows
    assert kept == counts["kept_rows"]
    report = (out / "_safeset" / "report.html").read_text()
    assert "<html" in report.lower() and "http://" not in report.split("</style>")[-1]


def test_reasons_carry_rule_bank_version_and_canonical_url_digest(demo, tmp_path):
    data, store, _ = demo
    out = tmp_path / "scan"
    safeset("scan", data.laion_dir, "--out", out, "--store", store, "--workers", "1")
    assert not list(out.glob("*.parquet")), "scan writes no copy"
    by_type = {}
    for row in removed_rows(out):
        assert row["action"] == "remove" and row["reasons"]
        assert len(row["url_sha256"]) == 64
        for reason in row["reasons"]:
            assert reason["rule"] == "bank-match" and reason["bank_version"] == 1
            by_type.setdefault(reason["signal_type"], set()).add(row["position"])
    assert {"url", "url_md5", "md5", "domain", "term"} <= set(by_type)


def test_relaion_research_keeps_term_hits_with_low_punsafe(demo, tmp_path):
    data, store, _ = demo
    out = tmp_path / "research"
    safeset("scan", data.laion_dir, "--out", out, "--store", store, "--policy", "relaion-research")
    table = pa.concat_tables([pq.read_table(p).add_column(0, "src", pa.array([p.name] * pq.read_metadata(p).num_rows)) for p in data.laion_shards])
    punsafe = {(s, i): v for i, (s, v) in enumerate(zip(table.column("src").to_pylist(), table.column("punsafe").to_pylist()))}
    offsets = {}
    start = 0
    for p in data.laion_shards:
        offsets[p.name] = start
        start += pq.read_metadata(p).num_rows
    term_rows = {(s.split("/")[-1], i) for s, i in data.expected_matches["terms.txt"] if s.startswith("laion/")}
    got = withheld(out, "position")
    for shard, position in term_rows:
        high = punsafe[(shard, offsets[shard] + position)] > 0.95
        assert ((shard, position) in got) == high


def test_clean_webdataset_rewrites_tar_and_sibling_parquet(demo, tmp_path):
    data, store, _ = demo
    out = tmp_path / "wds"
    safeset("clean", data.images_dir, "--out", out, "--store", store)
    gone = withheld(out, "key")
    assert gone == expected(data, "images")
    run = run_json(out)
    assert run["counts"]["removed_rows"] == len(gone)
    for tar_path in data.tar_shards:
        with tarfile.open(tar_path) as original, tarfile.open(out / tar_path.name) as cleaned:
            gone_keys = {k for s, k in gone if s == tar_path.name}
            want = [m.name for m in original.getmembers() if m.name.split(".")[0] not in gone_keys]
            assert [m.name for m in cleaned.getmembers()] == want
            for member in cleaned.getmembers():
                assert cleaned.extractfile(member).read() == original.extractfile(member.name).read()
        sibling = pq.read_table(out / tar_path.with_suffix(".parquet").name)
        assert not gone_keys & set(sibling.column("key").to_pylist())
        assert (out / tar_path.name.replace(".tar", "_stats.json")).exists()


def test_jsonl_and_csv_url_lists(tmp_path):
    store = tmp_path / "store"
    bank = tmp_path / "urls.txt"
    bank.write_text("# placeholder list\nhttps://EXAMPLE.org:443/b.jpg\nhttps://example.org/d.jpg#frag\n")
    safeset("bank", "import", "LIST", bank, "--type", "url", "--store", store)
    urls = [f"https://example.org/{c}.jpg" for c in "abcdef"]
    jsonl = tmp_path / "in-jsonl" / "list.jsonl"
    jsonl.parent.mkdir()
    jsonl.write_text("".join(json.dumps({"url": u, "caption": "a benign photo", "n": i}) + "\n" for i, u in enumerate(urls)))
    csv_dir = tmp_path / "in-csv"
    csv_dir.mkdir()
    (csv_dir / "list.tsv").write_text("URL\tTEXT\n" + "".join(f"{u}\tplaceholder caption {i}\n" for i, u in enumerate(urls)))
    for dataset, name in ((jsonl, "list.jsonl"), (csv_dir, "list.tsv")):
        out = tmp_path / f"out-{name}"
        safeset("clean", dataset, "--out", out, "--store", store)
        assert {r["url"] for r in removed_rows(out)} == {urls[1], urls[3]}
        lines = (out / name).read_text().splitlines()
        assert not any("/b.jpg" in line or "/d.jpg" in line for line in lines)
        assert sum("example.org" in line for line in lines) == 4
    assert (tmp_path / "out-list.jsonl" / "list.jsonl").read_text().splitlines() == [
        line for line in jsonl.read_text().splitlines() if "/b.jpg" not in line and "/d.jpg" not in line
    ]


def test_corrupt_shard_fails_alone_with_exit_3(demo, tmp_path):
    data, store, _ = demo
    dataset = tmp_path / "mixed"
    dataset.mkdir()
    for shard in data.laion_shards:
        (dataset / shard.name).write_bytes(shard.read_bytes())
    (dataset / "part-00009.parquet").write_bytes(data.laion_shards[0].read_bytes()[:5000])
    out = tmp_path / "out"
    proc = safeset("clean", dataset, "--out", out, "--store", store, check=3)
    assert "part-00009.parquet" in proc.stderr and "Traceback" not in proc.stderr
    run = run_json(out)
    assert [f["relpath"] for f in run["failed_shards"]] == ["part-00009.parquet"]
    assert not (out / "part-00009.parquet").exists()
    assert all((out / s.name).exists() for s in data.laion_shards)


def test_invalid_digest_values_are_reviewed_not_kept(tmp_path):
    store = import_bank(tmp_path / "store", "IMG", "md5", "0123456789abcdef0123456789abcdef\n")
    dataset = tmp_path / "data"
    dataset.mkdir()
    pq.write_table(
        pa.table({
            "url": ["https://example.com/1.jpg", "https://example.com/2.jpg", "https://example.com/3.jpg", "https://example.com/4.jpg"],
            "md5": ["0123456789ABCDEF0123456789ABCDEF", "not-a-digest", None, "ffffffffffffffffffffffffffffffff"],
        }),
        dataset / "part-0.parquet",
    )
    out = tmp_path / "out"
    safeset("clean", dataset, "--out", out, "--store", store)
    actions = {r["position"]: (r["action"], r["reasons"][0]["signal_type"]) for r in removed_rows(out)}
    assert actions == {0: ("remove", "md5"), 1: ("review", "unchecked")}
    assert pq.read_table(out / "part-0.parquet").column("url").to_pylist() == [
        "https://example.com/3.jpg", "https://example.com/4.jpg"
    ]


def test_usage_errors_exit_2_with_a_clear_message(demo, tmp_path):
    data, store, _ = demo
    out = tmp_path / "out"
    safeset("scan", data.laion_dir, "--out", out, "--store", store)
    proc = safeset("scan", data.laion_dir, "--out", out, "--store", store, check=2)
    assert "--resume" in proc.stderr
    proc = safeset("scan", data.laion_dir, "--out", tmp_path / "o2", "--store", store, "--policy", "nope", check=2)
    assert "preset" in proc.stderr
    proc = safeset("scan", data.laion_dir, "--out", tmp_path / "o3", "--store", tmp_path / "empty", check=2)
    assert "no banks" in proc.stderr
    proc = safeset("scan", data.laion_dir, "--out", data.laion_dir / "inside", "--store", store, check=2)
    assert "outside" in proc.stderr
    proc = safeset("scan", data.images_dir, "--out", tmp_path / "o4", "--store", store, "--policy", "relaion-research-safe", check=0)


def test_bank_import_reports_rejected_lines(tmp_path):
    bad = tmp_path / "mixed.txt"
    bad.write_text("0123456789abcdef0123456789abcdef\nxyz\n00000000000000000000000000000000\n")
    proc = safeset("bank", "import", "mixed_bank", bad, "--type", "md5", "--store", tmp_path / "s", "--json")
    result = json.loads(proc.stdout)
    assert result["accepted"] == 1 and result["rejected"] == 2
    assert [r["line"] for r in result["rejections"]] == [2, 3]
    listing = json.loads(safeset("bank", "list", "--store", tmp_path / "s", "--json").stdout)
    assert [b["name"] for b in listing] == ["MIXED_BANK"]


def test_single_file_dataset_may_have_its_output_beside_it(tmp_path):
    store = import_bank(tmp_path / "store", "LIST", "url", "https://example.org/b.jpg\n")
    data = tmp_path / "data"
    data.mkdir()
    source = data / "list.csv"
    source.write_text("url\nhttps://example.org/a.jpg\nhttps://example.org/b.jpg\n")
    safeset("clean", source, "--out", data / "clean", "--store", store)
    assert (data / "clean" / "list.csv").read_text().splitlines() == ["url", "https://example.org/a.jpg"]
    proc = safeset("clean", source, "--out", data, "--store", store, check=2)
    assert "overwrite" in proc.stderr
    assert source.read_text().count("example.org") == 2


def test_a_run_that_could_check_nothing_is_refused(demo, tmp_path):
    data, store, _ = demo
    proc = safeset("scan", data.laion_dir, "--out", tmp_path / "out", "--store", store, "--bank", "PDQ", check=2)
    assert "nothing was checked" in proc.stderr
    # with a bank it can match as well, the run goes on and only warns
    proc = safeset("scan", data.laion_dir, "--out", tmp_path / "out2", "--store", store, "--bank", "PDQ", "--bank", "URLS")
    assert "'pdq' could not be matched" in proc.stderr.replace("\n", " ")
