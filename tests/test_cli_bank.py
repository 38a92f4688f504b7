"""The bank and policy commands through the CLI, and scan's --json output."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from e2e_util import import_bank, run_json, safeset


def test_bank_lifecycle_through_the_cli(tmp_path):
    store = tmp_path / "store"
    first = tmp_path / "a.txt"
    first.write_text("https://example.org/a.jpg\n")
    second = tmp_path / "b.txt"
    second.write_text("https://example.org/b.jpg\n")
    safeset("bank", "import", "urls", first, "--type", "url", "--store", store)
    safeset("bank", "import", "URLS", second, "--type", "url", "--store", store)
    shown = json.loads(safeset("bank", "show", "URLS", "--store", store, "--json").stdout)
    assert shown["version"] == 2 and shown["counts"] == {"url": 2}
    assert [v["version"] for v in shown["versions"]] == [1, 2]
    exported = tmp_path / "out.txt"
    safeset("bank", "export", "URLS", exported, "--format", "pytx", "--store", store)
    assert exported.read_text().splitlines() == ["url https://example.org/a.jpg", "url https://example.org/b.jpg"]
    safeset("bank", "delete", "URLS", "--version", "2", "--yes", "--store", store)
    listing = json.loads(safeset("bank", "list", "--store", store, "--json").stdout)
    assert [(b["name"], b["latest_version"]) for b in listing] == [("URLS", 1)]
    proc = safeset("bank", "show", "NOPE", "--store", store, check=2)
    assert "NOPE" in proc.stderr and "Traceback" not in proc.stderr


def test_scan_json_is_the_run_record(tmp_path):
    store = import_bank(tmp_path / "store", "DOMAINS", "domain", "example.org\n")
    data = tmp_path / "data"
    data.mkdir()
    pq.write_table(pa.table({"url": ["https://cdn.example.org/x.jpg", "https://notexample.org/y.jpg"]}), data / "p.parquet")
    proc = safeset("scan", data, "--out", tmp_path / "out", "--store", store, "--json")
    printed = json.loads(proc.stdout)
    assert printed == run_json(tmp_path / "out")
    assert printed["counts"] == {"input_rows": 2, "kept_rows": 1, "removed_rows": 1, "review_rows": 0}


def test_policy_command_shows_presets_and_validates_files(tmp_path):
    proc = safeset("policy", "relaion-research-safe")
    assert "nsfw-score" in proc.stdout and "remove-matches" in proc.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[[rules]]\nname = 'x'\naction = 'delete'\nsignal_types = ['*']\n")
    proc = safeset("policy", bad, check=2)
    assert "action must be" in proc.stderr
