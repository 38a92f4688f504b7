"""Bad input through the whole CLI: a clear message naming file and position,
no traceback, nothing unchecked passed into the cleaned copy."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

from e2e_util import import_bank, removed_rows, run_json, safeset


def add_member(tar: tarfile.TarFile, name: str, data: bytes = b"", **fields) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data else None)


def sample(tar: tarfile.TarFile, key: str, image: bytes, url: str) -> None:
    add_member(tar, f"{key}.jpg", image)
    add_member(tar, f"{key}.json", json.dumps({"url": url, "key": key}).encode())
    add_member(tar, f"{key}.txt", b"a benign caption")


def setup_store(tmp_path, digest_of: bytes):
    """A store whose IMAGES bank knows the MD5 of `digest_of`."""
    return import_bank(tmp_path / "store", "IMAGES", "md5", hashlib.md5(digest_of).hexdigest() + "\n")


def test_hostile_tar_member_fails_the_shard_only(tmp_path):
    store = setup_store(tmp_path, b"known image bytes")
    data = tmp_path / "wds"
    data.mkdir()
    with tarfile.open(data / "00000.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        sample(tar, "000000000", b"known image bytes", "https://example.com/0.jpg")
        sample(tar, "000000001", b"benign bytes", "https://example.com/1.jpg")
    with tarfile.open(data / "00001.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        sample(tar, "000010000", b"benign bytes", "https://example.com/2.jpg")
        add_member(tar, "../../etc/evil.jpg", b"x")
    with tarfile.open(data / "00002.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        sample(tar, "000020000", b"benign bytes", "https://example.com/3.jpg")
        add_member(tar, "000020001.jpg", type=tarfile.SYMTYPE, linkname="/etc/passwd")
    out = tmp_path / "out"
    proc = safeset("clean", data, "--out", out, "--store", store, check=3)
    assert "Traceback" not in proc.stderr
    failed = {f["relpath"]: f["error"] for f in run_json(out)["failed_shards"]}
    assert set(failed) == {"00001.tar", "00002.tar"}
    assert "../../etc/evil.jpg" in failed["00001.tar"] and "byte" in failed["00001.tar"]
    assert "000020001.jpg" in failed["00002.tar"]
    assert not (out / "00001.tar").exists() and not (out / "00002.tar").exists()
    with tarfile.open(out / "00000.tar") as cleaned:
        assert [m.name for m in cleaned.getmembers()] == ["000000001.jpg", "000000001.json", "000000001.txt"]


def test_oversized_and_truncated_members_go_to_review(tmp_path):
    store = setup_store(tmp_path, b"never present")
    data = tmp_path / "wds"
    data.mkdir()
    with tarfile.open(data / "00000.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        sample(tar, "000000000", b"small", "https://example.com/0.jpg")
        sample(tar, "000000001", b"\xff" * 300_000, "https://example.com/1.jpg")
    out = tmp_path / "out"
    # A small member limit is not a CLI option; the default is generous, so use the API.
    from safeset.datasets.base import ReadOptions
    from safeset.datasets.webdataset import WebDatasetFormat

    fmt = WebDatasetFormat()
    (shard,) = fmt.discover(data)
    reader = fmt.open(shard, ReadOptions(max_member_bytes=100_000))
    errors = [e for b in reader.batches() for e in (b.errors or [None] * b.num_rows)]
    assert errors[0] is None and "over the limit" in errors[1]

    # a tar cut inside its last image: that sample cannot be checked -> review, never kept
    raw = (data / "00000.tar").read_bytes()
    cut = raw.index(b"\xff" * 1000) + 1000
    (data / "00000.tar").write_bytes(raw[:cut])
    safeset("clean", data, "--out", out, "--store", store)
    rows = {r["key"]: r for r in removed_rows(out)}
    assert set(rows) == {"000000001"} and rows["000000001"]["action"] == "review"
    assert rows["000000001"]["reasons"][0]["signal_type"] == "unchecked"
    with tarfile.open(out / "00000.tar") as cleaned:
        assert [m.name for m in cleaned.getmembers()] == ["000000000.jpg", "000000000.json", "000000000.txt"]


def test_garbage_files_never_traceback(tmp_path):
    store = setup_store(tmp_path, b"x")
    for name, content in {"a.parquet": b"PAR1 not really", "b.tar": b"\x00garbage" * 100}.items():
        data = tmp_path / name.split(".")[0]
        data.mkdir()
        (data / name).write_bytes(content)
        proc = safeset("scan", data, "--out", tmp_path / f"out-{name}", "--store", store, check=3)
        assert "Traceback" not in proc.stderr and name in proc.stderr
    bad_jsonl = tmp_path / "j"
    bad_jsonl.mkdir()
    (bad_jsonl / "l.jsonl").write_text('{"url": "https://example.com/a"}\n{not json\n')
    out = tmp_path / "out-j"
    import_bank(store, "URLS", "url", "https://example.com/never\n")
    safeset("clean", bad_jsonl, "--out", out, "--store", store, "--bank", "URLS")
    rows = removed_rows(out)
    assert [(r["position"], r["action"]) for r in rows] == [(1, "review")]
    assert (out / "l.jsonl").read_text() == '{"url": "https://example.com/a"}\n'


def test_text_score_column_fails_the_shard_with_a_clear_message(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    store = setup_store(tmp_path, b"x")
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"url": ["https://example.com/a"], "punsafe": ["very"]}), data / "p.parquet")
    proc = safeset("scan", data, "--out", tmp_path / "out", "--store", store, "--policy", "relaion-research-safe", check=3)
    assert "p.parquet: rows 0-0: score column 'punsafe' is not numeric" in proc.stderr.replace("\n", "")
