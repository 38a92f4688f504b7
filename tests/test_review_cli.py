"""`safeset review ...` as a user runs it: import, list, decide, export, purge; clear errors."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq

from e2e_util import import_bank, run_json, safeset
from review_util import make_review_run


def test_review_commands_end_to_end(tmp_path):
    run = make_review_run(tmp_path)
    store = run.store.root
    key_file = tmp_path / "keys" / "quarantine.key"
    key_file.parent.mkdir()
    safeset("review", "keygen", "--out", key_file, "--store", store)

    refused = safeset("review", "import", run.out, "--store", store, check=2, env={"SAFESET_QUARANTINE_KEY": ""})
    assert "no quarantine key" in refused.stderr and "Traceback" not in refused.stderr

    imported = json.loads(safeset("review", "import", run.out, "--store", store, "--quarantine-key-file", key_file,
                                  "--json").stdout)
    assert imported["added"] == 3 and imported["with_bytes"] == 3

    listed = json.loads(safeset("review", "list", "--store", store, "--json").stdout)
    assert listed["counts"]["pending"] == 3
    assert not any("quarantine_ref" in item for item in listed["items"])
    first = next(i for i in listed["items"] if i["key"] == "000000001")

    decided = json.loads(safeset("review", "decide", first["id"], "confirm", "--reviewer", "alice", "--note", "ok",
                                 "--retention", "7d", "--store", store, "--json").stdout)
    assert decided["bank"] == "SAFESET_CONFIRMED" and decided["bank_version"] == 1

    safeset("review", "export", "--out", tmp_path / "export", "--store", store)
    exported = json.loads((tmp_path / "export" / "confirmed.json").read_text())
    assert [i["key"] for i in exported["items"]] == ["000000001"] and exported["items"][0]["reviewer"] == "alice"

    kept = json.loads(safeset("review", "purge", "--store", store, "--json").stdout)
    assert kept["purged"] == 0  # decided with 7 days' retention
    purged = json.loads(safeset("review", "purge", "--retention", "0", "--store", store, "--json").stdout)
    assert purged["items"] == [first["id"]]
    verified = safeset("audit", "verify", "--store", store, check=None)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_metadata_only_runs_give_evidence_only_items(tmp_path):
    data = tmp_path / "meta"
    data.mkdir()
    pq.write_table(
        pa.table({"url": ["https://example.com/a.jpg", "https://example.com/flagged.jpg", "not a url"],
                  "caption": ["a", "b", "c"], "c2pa_claim_generator": [None, "placeholder-generator/1.0", None]}),
        data / "part-0.parquet",
    )
    store = import_bank(tmp_path / "store", "URLS", "url", "https://example.com/flagged.jpg\n")
    policy = tmp_path / "review-urls.toml"
    policy.write_text('name = "review-urls"\ndefault = "keep"\nunchecked = "review"\n'
                      '[[rules]]\nname = "url"\naction = "review"\nsignal_types = ["url"]\n')
    safeset("scan", data, "--out", tmp_path / "run", "--store", store, "--policy", policy)
    assert run_json(tmp_path / "run")["counts"]["review_rows"] >= 1
    imported = json.loads(safeset("review", "import", tmp_path / "run", "--store", store, "--json",
                                  env={"SAFESET_QUARANTINE_KEY": ""}).stdout)  # no key needed: no bytes
    assert imported["added"] == imported["review_rows"] and imported["with_bytes"] == 0
    items = json.loads(safeset("review", "list", "--store", store, "--json").stdout)["items"]
    flagged = next(i for i in items if i["source_url"] == "https://example.com/flagged.jpg")
    assert flagged["bytes_state"] == "none" and flagged["provenance"] == {"c2pa_claim_generator": "placeholder-generator/1.0"}
    assert flagged["digests"]["url_sha256"] and flagged["banks"] == ["URLS"]


def test_the_negative_bank_is_never_matched_against(tmp_path):
    store = import_bank(tmp_path / "store", "SAFESET_FALSE_POSITIVES", "url", "https://example.com/a.jpg\n")
    data = tmp_path / "meta"
    data.mkdir()
    (data / "rows.jsonl").write_text('{"url": "https://example.com/a.jpg"}\n')
    refused = safeset("scan", data, "--out", tmp_path / "run", "--store", store, "--bank", "SAFESET_FALSE_POSITIVES",
                      check=2)
    assert "never matched against" in refused.stderr
