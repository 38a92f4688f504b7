"""Lineage end to end, through the CLI: clean, register datasets and models, trace taint.

Setup runs the CLI in this process (`run_cli`, dozens of steps); the taint
questions run it as a user would, in a subprocess (`safeset`), so exit codes,
stdout and stderr are the real ones.

The world: a demo dataset is cleaned (so there are removals); the original and
the clean release are registered; a base model is trained on the original,
fine-tuned twice (the second fine-tune registered from its model card),
merged with a model trained on the clean release; that clean model is
fine-tuned too. Exactly the models downstream of the original are tainted.
"""

from __future__ import annotations

import json

import pytest

from e2e_util import removed_rows, safeset
from lineage_util import run_cli, url_sha256, write_removal_list
from safeset.demo_data import generate_demo

BANKS = {"urls.txt": "URLS", "url_md5.txt": "URL_MD5", "image_md5.csv": "IMAGE_MD5", "domains.txt": "DOMAINS"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lineage")
    data = generate_demo(root / "data", seed=11, parquet_shards=2, rows_per_parquet_shard=60, tar_shards=1,
                         samples_per_tar=12)
    store = root / "store"
    for file_name, bank in BANKS.items():
        run_cli("bank", "import", bank, data.banks[file_name], "--type", data.bank_types[file_name], "--store", store)
    run_cli("clean", data.laion_dir, "--out", root / "laion-clean", "--store", store, "--workers", "1", "-q")
    run_cli("clean", data.images_dir, "--out", root / "images-clean", "--store", store, "--workers", "1", "-q")

    def lineage(*args, check=0, subprocess=False):
        return (safeset if subprocess else run_cli)("lineage", *args, "--store", store, check=check)

    lineage("dataset", "add", "demo/laion@orig", data.laion_dir, "--workers", "1")
    lineage("dataset", "add", "demo/laion@clean", root / "laion-clean", "--workers", "1")
    lineage("dataset", "add", "demo/images@orig", data.images_dir, "--workers", "1")
    card = root / "ft2-README.md"
    card.write_text("---\nlicense: apache-2.0\nbase_model: acme/ft@1\nbase_model_relation: finetune\n---\n# ft 2\n")
    clean_card = root / "clean-ft-README.md"
    clean_card.write_text("---\ndatasets:\n  - demo/laion\nbase_model:\n  - acme/other@1\n---\n")
    lineage("model", "add", "acme/base@1", "--trained-on", "demo/laion@orig")
    lineage("model", "add", "acme/ft@1", "--base", "acme/base@1")
    lineage("model", "add", "acme/ft@2", "--card", card)
    lineage("model", "add", "acme/other@1", "--trained-on", "demo/laion@clean")
    lineage("model", "add", "acme/merge@1", "--base", "acme/ft@2,acme/other@1")
    lineage("model", "add", "acme/clean-ft@1", "--card", clean_card)
    lineage("model", "add", "acme/vision@1", "--trained-on", "demo/images@orig")
    return {"root": root, "store": store, "data": data, "lineage": lineage}


def test_taint_from_a_clean_run(world):
    root = world["root"]
    html = root / "taint.html"
    proc = world["lineage"]("taint", root / "laion-clean", "--json", "--html", html, check=1, subprocess=True)
    report = json.loads(proc.stdout)
    removed = removed_rows(root / "laion-clean")
    assert removed and {r["action"] for r in removed} == {"remove"}
    counts = {d["name"]: d["listed_samples"] for d in report["datasets"]}
    assert counts == {"demo/images@orig": 0, "demo/laion@clean": 0, "demo/laion@orig": len(removed)}
    assert {m["name"]: m["path"] for m in report["tainted_models"]} == {
        "acme/base@1": ["demo/laion@orig", "acme/base@1"],
        "acme/ft@1": ["demo/laion@orig", "acme/base@1", "acme/ft@1"],
        "acme/ft@2": ["demo/laion@orig", "acme/base@1", "acme/ft@1", "acme/ft@2"],
        "acme/merge@1": ["demo/laion@orig", "acme/base@1", "acme/ft@1", "acme/ft@2", "acme/merge@1"],
    }
    assert report["clean_models"] == ["acme/clean-ft@1", "acme/other@1", "acme/vision@1"]
    assert report["unverified_models"] == []
    page = html.read_text()
    assert "<svg" in page and "acme/merge@1" in page and "https://" not in page
    assert not any(r["url"] in page for r in removed if r["url"])


def test_model_card_lineage_was_imported(world):
    models = {m["name"]: m for m in json.loads(world["lineage"]("model", "list", "--json").stdout)}
    assert models["acme/ft@2"]["base_models"] == ["acme/ft@1"] and models["acme/ft@2"]["relation"] == "finetune"
    # a bare dataset name in a card resolves to the latest registered version: the clean release
    assert models["acme/clean-ft@1"]["trained_on"] == ["demo/laion@clean"]
    assert models["acme/merge@1"]["base_models"] == ["acme/ft@2", "acme/other@1"]


def test_webdataset_taint_by_image_and_url(world):
    root = world["root"]
    removed = removed_rows(root / "images-clean")
    assert removed and all(r.get("image_sha256") or r["url_sha256"] for r in removed)
    report = json.loads(world["lineage"]("taint", root / "images-clean", "--json", check=1).stdout)
    counts = {d["name"]: d["listed_samples"] for d in report["datasets"]}
    assert counts["demo/images@orig"] == len(removed) and counts["demo/laion@orig"] == 0
    assert [m["name"] for m in report["tainted_models"]] == ["acme/vision@1"]


def test_exit_codes(world):
    root, lineage = world["root"], world["lineage"]
    lineage("taint", root / "laion-clean", "--model", "acme/clean-ft@1", check=0, subprocess=True)
    lineage("taint", root / "laion-clean", "--model", "acme/merge@1", check=1)
    unrelated = write_removal_list(root / "unrelated.parquet",
                                   [{"url_sha256": url_sha256("https://example.com/not-in-any-dataset.jpg")}])
    proc = lineage("taint", unrelated, check=0, subprocess=True)
    assert "nothing tainted" in proc.stdout
    lineage("taint", root / "missing-dir", check=2)
    lineage("taint", root / "laion-clean", "--model", "acme/nobody@1", check=2)


def test_decoy_list_is_refused(world):
    root = world["root"]
    rows = [{"url_sha256": r["url_sha256"]} for r in removed_rows(root / "laion-clean")]
    decoyed = write_removal_list(root / "decoyed.parquet", rows, decoys=1)
    proc = world["lineage"]("taint", decoyed, "--json", check=2, subprocess=True)
    assert "decoy" in proc.stderr and "Traceback" not in proc.stderr and proc.stdout == ""


def test_registration_errors_exit_2(world):
    lineage = world["lineage"]
    proc = lineage("dataset", "add", "demo/laion@orig", world["data"].laion_dir, check=2)
    assert "already registered" in proc.stderr
    proc = lineage("model", "add", "acme/x@1", "--trained-on", "demo/unknown@1", check=2)
    assert "not registered" in proc.stderr and "--allow-unregistered" in proc.stderr
    lineage("model", "add", "acme/x@1", "--card", world["root"] / "no-such-card.md", check=2)
    listed = json.loads(lineage("dataset", "list", "--json").stdout)
    assert [d["name"] for d in listed] == ["demo/images@orig", "demo/laion@orig", "demo/laion@clean"]
    assert all(d["bytes_per_row"] and d["shard_digest"] for d in listed)
