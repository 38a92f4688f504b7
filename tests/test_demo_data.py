"""The demo generator: reproducible, well-formed, and its banks know exactly the rows it says.

These checks recompute every match independently from the written files, so a
bank that drifts from `expected_matches` (or from the data) fails here.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from safeset.demo_data import BANK_TYPES, LAION_SCHEMA, WDS_PARQUET_SCHEMA, generate_demo
from safeset.errors import ConfigError

DEFAULT_PORTS = {"http": "80", "https": "443"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return generate_demo(tmp_path_factory.mktemp("demo") / "out", seed=0)


def file_digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def laion_rows(demo) -> list[dict]:
    rows = []
    for path in demo.laion_shards:
        relpath = path.relative_to(demo.root).as_posix()
        for position, row in enumerate(pq.read_table(path).to_pylist()):
            rows.append({"id": (relpath, position), **row})
    return rows


def webdataset_samples(demo) -> list[dict]:
    samples = []
    for path in demo.tar_shards:
        relpath = path.relative_to(demo.root).as_posix()
        with tarfile.open(path) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        for name in sorted(members):
            if name.endswith(".jpg"):
                key = name[:-4]
                meta = json.loads(members[f"{key}.json"])
                samples.append(
                    {
                        "id": (relpath, key),
                        "url": meta["url"],
                        "caption": members[f"{key}.txt"].decode("utf-8"),
                        "punsafe": meta["punsafe"],
                        "jpg": members[name],
                        "meta": meta,
                    }
                )
    return samples


def simple_canonical(url: str) -> str:
    """Enough of the canonical form for the spellings the demo uses: case of scheme and host, default port."""
    scheme, rest = url.split("://", 1)
    scheme = scheme.lower()
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    host, tail = rest[:cut].lower(), rest[cut:]
    if host.endswith(":" + DEFAULT_PORTS[scheme]):
        host = host.rsplit(":", 1)[0]
    return f"{scheme}://{host}{tail.split('#', 1)[0]}"


def host_of(url: str) -> str:
    rest = simple_canonical(url).split("://", 1)[1]
    return re.split(r"[/?:]", rest, maxsplit=1)[0]


def ids(rows) -> list:
    return sorted(rows, key=lambda i: (i[0], f"{i[1]:012d}" if isinstance(i[1], int) else i[1]))


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(demo, tmp_path):
    again = generate_demo(tmp_path / "again", seed=0)
    assert file_digests(again.root) == file_digests(demo.root)
    assert again.expected_matches == demo.expected_matches


def test_other_seed_gives_other_data(demo, tmp_path):
    other = generate_demo(tmp_path / "other", seed=1)
    mine, theirs = file_digests(demo.root), file_digests(other.root)
    assert mine.keys() == theirs.keys()
    assert mine["laion/part-00000.parquet"] != theirs["laion/part-00000.parquet"]
    assert mine["images/00000.tar"] != theirs["images/00000.tar"]


def test_no_temporary_files_left(demo):
    assert not [p for p in demo.root.rglob("*") if ".tmp" in p.name]


# --------------------------------------------------------------------------- layout


def test_laion_parquet_schema_and_messiness(demo):
    assert [p.name for p in demo.laion_shards] == ["part-00000.parquet", "part-00001.parquet"]
    for path in demo.laion_shards:
        meta = pq.ParquetFile(path).metadata
        assert pq.read_schema(path).remove_metadata() == LAION_SCHEMA
        assert meta.num_rows == 500
        assert meta.num_row_groups > 1
    rows = laion_rows(demo)
    urls = [r["URL"] for r in rows]
    assert all(urls) and len(set(map(simple_canonical, urls))) == len(urls)
    assert all(r["TEXT"] for r in rows)
    assert all(re.fullmatch(r"[0-9a-f]{32}", r["md5"]) for r in rows)
    assert len({r["md5"] for r in rows}) == len(rows)
    assert all(0.0 <= r["punsafe"] <= 1.0 for r in rows)
    # The messiness the canonical form exists for is really there.
    assert any(simple_canonical(u) != u.split("#")[0] and ":" in u.split("://")[1].split("/")[0] for u in urls)
    assert any(u.split("://")[1].split("/")[0] != u.split("://")[1].split("/")[0].lower() for u in urls)
    assert any("#" in u for u in urls) and any("%" in u for u in urls)
    assert any(not r["TEXT"].isascii() for r in rows)


def test_tar_shards_follow_img2dataset_layout(demo):
    for shard, path in enumerate(demo.tar_shards):
        assert path.name == f"{shard:05d}.tar"
        with tarfile.open(path) as tar:
            members = tar.getmembers()
        names = [m.name for m in members]
        keys = sorted({n.split(".")[0] for n in names})
        assert all(re.fullmatch(rf"{shard:05d}\d{{4}}", k) for k in keys)
        # One sample after another, members in webdataset's (sorted) order.
        assert names == [f"{k}.{ext}" for k in keys for ext in ("jpg", "json", "txt")]
        for m in members:
            assert (m.mtime, m.mode, m.uid, m.gid, m.uname, m.gname) == (1_700_000_000, 0o644, 0, 0, "", "")

        sibling = pq.read_table(path.with_suffix(".parquet"))
        assert sibling.schema.remove_metadata() == WDS_PARQUET_SCHEMA
        records = sibling.to_pylist()
        assert len(records) == 40
        assert [r["key"] for r in records] == [f"{shard:05d}{i:04d}" for i in range(40)]
        failed = [r for r in records if r["status"] == "failed_to_download"]
        assert failed and all(r["error_message"] and r["width"] is None for r in failed)
        assert not {r["key"] for r in failed} & set(keys)
        assert {r["key"] for r in records if r["status"] == "success"} == set(keys)

        stats = json.loads(path.with_name(f"{shard:05d}_stats.json").read_text())
        assert stats["count"] == 40
        assert stats["successes"] == len(keys)
        assert stats["failed_to_download"] == len(failed)
        assert sum(stats["status_dict"].values()) == 40


def test_images_decode_and_agree_with_metadata(demo):
    samples = webdataset_samples(demo)
    assert len(samples) == 2 * 37
    for sample in samples:
        with Image.open(io.BytesIO(sample["jpg"])) as image:
            image.load()
            assert image.format == "JPEG"
            assert image.size == (sample["meta"]["width"], sample["meta"]["height"])
            assert 64 <= min(image.size) and max(image.size) <= 256
        assert sample["meta"]["sha256"] == hashlib.sha256(sample["jpg"]).hexdigest()
        assert sample["meta"]["caption"] == sample["caption"]
        assert sample["meta"]["key"] == sample["id"][1]
    assert len({hashlib.md5(s["jpg"]).digest() for s in samples}) == len(samples)


# --------------------------------------------------------------------------- banks know real rows


def test_bank_files_and_types(demo):
    assert set(demo.banks) == set(BANK_TYPES) == set(demo.expected_matches)
    assert demo.bank_types == BANK_TYPES
    for name, path in demo.banks.items():
        assert path.parent == demo.banks_dir and path.name == name and path.stat().st_size > 0
    recorded = json.loads((demo.root / "expected_matches.json").read_text())
    assert {k: [tuple(m) for m in v] for k, v in recorded.items()} == demo.expected_matches


def test_url_bank_matches_in_canonical_form_only(demo):
    rows = laion_rows(demo) + webdataset_samples(demo)
    entries = demo.banks["urls.txt"].read_text().splitlines()
    wanted = {simple_canonical(e) for e in entries}
    matched = ids(r["id"] for r in rows if simple_canonical(r.get("URL") or r.get("url")) in wanted)
    assert matched == demo.expected_matches["urls.txt"]
    assert len(matched) == len(entries) - 1  # one entry matches nothing
    # Some entries are spelled differently from the dataset: only canonical matching finds them.
    raw = {r.get("URL") or r.get("url") for r in rows}
    assert sum(e not in raw for e in entries) >= 3
    assert any(rel.endswith(".tar") for rel, _ in matched)


def test_url_md5_bank_holds_digests_of_raw_urls(demo):
    rows = laion_rows(demo)
    lines = demo.banks["url_md5.txt"].read_text().splitlines()
    assert all(re.fullmatch(r"url_md5 [0-9a-f]{32}", line) for line in lines)
    digests = {line.split()[1] for line in lines}
    matched = ids(r["id"] for r in rows if hashlib.md5(r["URL"].encode()).hexdigest() in digests)
    assert matched == demo.expected_matches["url_md5.txt"]
    assert len(matched) == len(lines) - 1


def test_image_md5_csv_knows_tar_images_and_parquet_md5s(demo):
    with demo.banks["image_md5.csv"].open(newline="") as handle:
        records = list(csv.DictReader(handle))
    assert records and all(r["signal_type"] == "md5" for r in records)
    assert list(records[0]) == ["signal_type", "signal_str", "collab", "category", "tags"]
    digests = {r["signal_str"] for r in records}
    from_parquet = [r["id"] for r in laion_rows(demo) if r["md5"] in digests]
    from_images = [s["id"] for s in webdataset_samples(demo) if hashlib.md5(s["jpg"]).hexdigest() in digests]
    assert from_parquet and from_images
    assert ids(from_parquet + from_images) == demo.expected_matches["image_md5.csv"]


def test_domain_bank_matches_host_and_subdomains(demo):
    (domain,) = demo.banks["domains.txt"].read_text().split()
    assert domain.endswith(".example")
    rows = laion_rows(demo) + webdataset_samples(demo)
    hosts = {r["id"]: host_of(r.get("URL") or r.get("url")) for r in rows}
    matched = ids(i for i, h in hosts.items() if h == domain or h.endswith("." + domain))
    assert matched == demo.expected_matches["domains.txt"]
    assert any(h == "cdn." + domain for h in hosts.values())
    raw_hosts = [r.get("URL") or r.get("url") for r in rows]
    assert any(domain.upper() in u for u in raw_hosts)


def test_term_bank_hits_captions_with_high_and_low_punsafe(demo):
    terms = demo.banks["terms.txt"].read_text().split()
    assert "placeholderterm" in terms
    rows = laion_rows(demo) + webdataset_samples(demo)

    def caption(r):
        return r.get("TEXT") or r.get("caption")

    def has_term(text):
        return bool(set(re.findall(r"\w+", text.casefold())) & set(terms))

    hits = [r for r in rows if has_term(caption(r))]
    assert ids(r["id"] for r in hits) == demo.expected_matches["terms.txt"]
    assert any(r["punsafe"] > 0.95 for r in hits) and any(r["punsafe"] < 0.45 for r in hits)
    # Nothing else even contains the placeholder as a substring.
    assert not [r for r in rows if r not in hits and "placeholder" in caption(r).casefold()]


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ConfigError):
        generate_demo(tmp_path / "x", parquet_shards=0)
    with pytest.raises(ConfigError):
        generate_demo(tmp_path / "y", samples_per_tar=3)
