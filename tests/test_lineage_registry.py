"""The lineage registry on SQLite (and PostgreSQL when configured): datasets, models, audit."""

from __future__ import annotations

import pytest

from lineage_util import example_urls, write_laion
from safeset.audit import AuditLog
from safeset.db import Database
from safeset.errors import ConfigError, InputError
from safeset.lineage.refs import Ref
from safeset.lineage.registry import LineageRegistry


@pytest.fixture
def registry(db_url, tmp_path):
    store = tmp_path / "store"
    db = Database.open(db_url, store)
    registry = LineageRegistry(db, store, AuditLog(db, anchor_path=store / "audit-head.json"))
    yield registry
    db.close()


@pytest.fixture
def laion(tmp_path):
    return write_laion(tmp_path / "laion", example_urls("laion", 40))


def test_dataset_registration_fingerprints_and_audits(registry, laion):
    record = registry.add_dataset("test/laion@1", laion, workers=1, actor="tester")
    assert (record.name, record.version, record.rows) == ("test/laion", "1", 40)
    assert record.summary["shards"] == 2 and record.summary["url_rows"] == 40 and record.summary["image_rows"] == 40
    assert record.summary["image_kinds"] == ["image_md5"]
    assert record.summary["membership_entries"] == 80
    members = registry.store_root / record.membership_dir
    assert (members / "members.npy").is_file() and (members / "shards.json").is_file()
    [listed] = registry.datasets()
    assert listed.ref == Ref("test/laion", "1") and listed.shard_digest == record.shard_digest
    again = registry.add_dataset("test/laion@copy", laion, workers=1)
    assert again.shard_digest == record.shard_digest  # same files, same content identity
    entries = registry.audit.entries()
    assert [e.action for e in entries] == ["lineage.dataset.add", "lineage.dataset.add"]
    assert entries[0].actor == "tester" and entries[0].details["dataset"] == "test/laion@1"
    assert registry.audit.verify().ok


def test_versions_are_immutable(registry, laion, tmp_path):
    registry.add_dataset("test/laion@1", laion, workers=1)
    other = write_laion(tmp_path / "other", example_urls("other", 10))
    with pytest.raises(ConfigError, match="already registered"):
        registry.add_dataset("test/laion@1", other, workers=1)
    assert registry.datasets()[0].rows == 40
    assert not [p for p in registry.datasets_root.iterdir() if p.name.startswith(".build-")]
    registry.add_model("m@1", trained_on=["test/laion@1"])
    with pytest.raises(ConfigError, match="already registered"):
        registry.add_model("m@1", trained_on=["test/laion@1"])


def test_unreadable_shard_stops_the_registration(registry, laion):
    (laion / "part-00001.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(InputError, match="part-00001.parquet"):
        registry.add_dataset("test/laion@1", laion, workers=1)
    assert registry.datasets() == []
    assert [p.name for p in registry.datasets_root.iterdir()] == []


def test_model_references(registry, laion):
    registry.add_dataset("test/laion@1", laion, workers=1)
    registry.add_dataset("test/laion@2", laion, workers=1)
    base = registry.add_model("base@1", trained_on=["test/laion"])  # bare name: the latest version
    assert base.model.refs("dataset") == [Ref("test/laion", "2")]
    assert base.resolved == [("test/laion", Ref("test/laion", "2"))]
    with pytest.raises(ConfigError, match="not registered: dataset test/laion@9, base model nobody@1"):
        registry.add_model("ft@1", trained_on=["test/laion@9"], bases=["nobody@1"])
    with pytest.raises(ConfigError, match="own base"):
        registry.add_model("loop@1", bases=["loop@1"])
    with pytest.raises(ConfigError, match="no lineage given"):
        registry.add_model("empty@1")
    recorded = registry.add_model("ft@1", bases=["base@1", "nobody@1"], allow_unregistered=True)
    assert [str(i.ref) for i in recorded.unregistered] == ["nobody@1"]
    models = {str(m.ref): m for m in registry.models()}
    assert models["ft@1"].refs("base") == [Ref("base", "1"), Ref("nobody", "1")]
    assert [e.action for e in registry.audit.entries()][-2:] == ["lineage.model.add", "lineage.model.add"]


def test_model_card_adds_to_the_options(registry, laion, tmp_path):
    registry.add_dataset("test/laion@1", laion, workers=1)
    registry.add_model("base@1", trained_on=["test/laion@1"])
    card = tmp_path / "README.md"
    card.write_text("---\ndatasets: test/laion\nbase_model: [base@1]\nbase_model_relation: finetune\n---\n")
    result = registry.add_model("ft@1", card=card)
    assert result.model.refs("dataset") == [Ref("test/laion", "1")]
    assert result.model.refs("base") == [Ref("base", "1")]
    assert result.model.relation == "finetune" and len(result.model.card_sha256) == 64
    assert {i.origin for i in result.model.inputs} == {"card"}


def test_rows_without_url_or_image_digest_are_counted_as_untraceable(registry, tmp_path):
    urls = example_urls("mixed", 6)
    urls[1] = urls[2] = None
    md5s = ["0" * 32, None, "f" * 32, "not hex", "1" * 32, "2" * 32]
    dataset = write_laion(tmp_path / "mixed", urls, md5s, shards=1)
    summary = registry.add_dataset("test/mixed@1", dataset, workers=1).summary
    assert (summary["url_rows"], summary["image_rows"]) == (4, 4)
    assert summary["untraceable_rows"] == 1  # row 1: no URL, no md5
    assert summary["unchecked_rows"] == 1  # row 3: an md5 that is not hex
