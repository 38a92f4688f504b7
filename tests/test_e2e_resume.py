"""Crash and resume: kill -9 a real clean run mid-way, resume, compare bytes."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq

from e2e_util import run_json, safeset, tree_digests

SHARDS = 40
ROWS = 2000


def make_dataset(root):
    root.mkdir()
    for shard in range(SHARDS):
        urls = [f"https://img{shard % 7}.example.com/{shard}/{i}.jpg" for i in range(ROWS)]
        pq.write_table(pa.table({"URL": urls, "TEXT": ["a benign caption"] * ROWS}), root / f"part-{shard:05d}.parquet")
    known = [f"https://img{s % 7}.example.com/{s}/{i}.jpg" for s in range(SHARDS) for i in (5, 999)]
    return [hashlib.md5(u.encode()).hexdigest() for u in known]


def test_kill_9_then_resume_gives_identical_outputs(tmp_path):
    dataset = tmp_path / "data"
    bank = tmp_path / "bank.txt"
    bank.write_text("\n".join(make_dataset(dataset)) + "\n")
    store = tmp_path / "store"
    safeset("bank", "import", "KNOWN", bank, "--type", "url_md5", "--store", store)

    reference = tmp_path / "reference"
    safeset("clean", dataset, "--out", reference, "--store", store, "--workers", "1")

    crashed = tmp_path / "crashed"
    records = crashed / "_safeset" / "shards"
    proc = subprocess.Popen(
        [sys.executable, "-m", "safeset.cli", "clean", str(dataset), "--out", str(crashed), "--store", str(store),
         "--workers", "1", "--batch-rows", "500"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while time.time() < deadline and len(list(records.glob("*.json"))) < 3:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in records.glob("*.json")}
    assert 3 <= len(done_before) < SHARDS, "the kill must land mid-run"
    assert not (crashed / "_safeset" / "run.json").exists()

    safeset("clean", dataset, "--out", crashed, "--store", store, check=2)  # needs --resume
    safeset("clean", dataset, "--out", crashed, "--store", store, "--workers", "2", "--resume")

    # finished shards were not redone
    for name, mtime in done_before.items():
        assert (records / name).stat().st_mtime_ns == mtime
    # no temporary leftovers, identical cleaned copy and records
    assert not list(crashed.rglob("*.tmp-*"))
    assert tree_digests(crashed) == tree_digests(reference)
    assert (crashed / "_safeset" / "removed.parquet").read_bytes() == (reference / "_safeset" / "removed.parquet").read_bytes()
    run, ref = run_json(crashed), run_json(reference)
    assert run["counts"] == ref["counts"] and run["counts"]["removed_rows"] == 2 * SHARDS
    assert run["shards"] == [dict(s, seconds=t["seconds"]) for s, t in zip(ref["shards"], run["shards"])]


def test_resume_refuses_other_banks(tmp_path):
    dataset = tmp_path / "data"
    bank = tmp_path / "bank.txt"
    bank.write_text("\n".join(make_dataset(dataset)[:3]) + "\n")
    store = tmp_path / "store"
    safeset("bank", "import", "KNOWN", bank, "--type", "url_md5", "--store", store)
    out = tmp_path / "out"
    safeset("scan", dataset, "--out", out, "--store", store)
    bank.write_text("0123456789abcdef0123456789abcdef\n")
    safeset("bank", "import", "KNOWN", bank, "--type", "url_md5", "--store", store)
    proc = safeset("scan", dataset, "--out", out, "--store", store, "--resume", check=2)
    assert "other banks" in proc.stderr
