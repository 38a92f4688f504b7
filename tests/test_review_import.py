"""From a real clean run to decisions: import review rows (bytes quarantined), decide, rescan, export."""

from __future__ import annotations

import csv
import hashlib
import json

import pytest

from e2e_util import removed_rows
from review_util import make_queue, make_review_run, new_key
from safeset.errors import InputError
from safeset.jobs.run import JobSpec, run_job
from safeset.review.errors import QuarantineKeyError
from safeset.review.export import export_confirmed
from safeset.review.importer import import_run
from safeset.review.model import BYTES_NOT_IMPORTED, BYTES_PURGED, BYTES_QUARANTINED
from safeset.review.negative import NEGATIVE_BANK
from safeset.review.quarantine import Quarantine


@pytest.fixture
def review_run(tmp_path):
    return make_review_run(tmp_path)


def by_key(queue) -> dict:
    return {item.key: item for item in queue.list()}


def test_import_quarantines_the_review_rows_bytes(review_run, db_url):
    key = new_key()
    queue = make_queue(review_run.store.root, db_url, key)
    summary = import_run(queue, review_run.out, actor="cli:test")
    assert summary.review_rows == 3 and summary.added == 3 and summary.with_bytes == 3
    items = by_key(queue)
    assert set(items) == review_run.review_keys  # removed rows are not queued

    matched = items["000000001"]
    image = review_run.samples["000000001"]
    assert matched.bytes_state == BYTES_QUARANTINED and matched.shard == "00000.tar"
    assert matched.source_url == "https://example.com/images/000000001.jpg"
    assert matched.dataset == str(review_run.dataset) and matched.first_seen and matched.origin == "run"
    assert matched.evidence[0]["bank"] == "KNOWN_PDQ" and 0 <= matched.evidence[0]["distance"] <= 31
    assert matched.digests["md5"] == hashlib.md5(image).hexdigest()
    assert matched.digests["sha256"] == hashlib.sha256(image).hexdigest()
    assert matched.digests["url_sha256"] and len(matched.digests["pdq"]) == 64
    assert items["000000004"].provenance == {"ai_generated": True}
    assert items["000000001"].provenance == {"ai_generated": False}
    undecodable = items["000000002"]
    assert undecodable.evidence[0]["signal_type"] == "unchecked" and "pdq" not in undecodable.digests

    # at rest: encrypted, one random-named file per item, readable with the key only
    files = sorted(queue.quarantine.directory.iterdir())
    assert len(files) == 3
    for path in files:
        blob = path.read_bytes()
        assert all(sample[:48] not in blob for sample in review_run.samples.values())
        assert all(hashlib.md5(s).hexdigest() not in path.name for s in review_run.samples.values())
    assert queue.image(matched.id) == image
    with pytest.raises(QuarantineKeyError, match="another key"):
        make_queue(review_run.store.root, db_url, new_key()).image(matched.id)

    again = import_run(queue, review_run.out, actor="cli:test")
    assert again.added == 0 and again.already_queued == 3 and queue.count() == 3
    imports = [e for e in queue.audit.entries() if e.action == "review.import"]
    assert [e.details["added"] for e in imports] == [3, 0] and imports[0].actor == "cli:test"


def test_import_fails_closed_without_a_key_unless_asked_for_evidence_only(review_run, db_url):
    keyless = make_queue(review_run.store.root, db_url, None)
    with pytest.raises(QuarantineKeyError, match="--no-bytes"):
        import_run(keyless, review_run.out, actor="cli:test")
    assert keyless.count() == 0
    summary = import_run(keyless, review_run.out, actor="cli:test", with_bytes=False)
    assert summary.added == 3 and summary.with_bytes == 0
    assert {i.bytes_state for i in keyless.list()} == {BYTES_NOT_IMPORTED}
    assert not Quarantine(review_run.store.root / "quarantine", None).directory.exists()


def test_a_shard_changed_since_the_run_is_refused(review_run, db_url):
    tar = review_run.dataset / "00000.tar"
    tar.write_bytes(tar.read_bytes() + bytes(10240))
    with pytest.raises(InputError, match="changed since the run"):
        import_run(make_queue(review_run.store.root, db_url, new_key()), review_run.out, actor="cli:test")


def test_decisions_feed_the_banks_and_the_next_scan(review_run, db_url, tmp_path):
    queue = make_queue(review_run.store.root, db_url, new_key())
    import_run(queue, review_run.out, actor="cli:test")
    items = by_key(queue)
    confirm = queue.decide(items["000000001"].id, "confirm", "alice", note="same as the known image")
    false_positive = queue.decide(items["000000004"].id, "false_positive", "bob")
    queue.decide(items["000000002"].id, "escalate", "bob")

    confirmed = review_run.store.open_version("SAFESET_CONFIRMED")
    assert confirm.bank_version == confirmed.version == 1
    assert confirmed.values("md5") == [hashlib.md5(review_run.samples["000000001"]).hexdigest()]
    negative = review_run.store.open_version(NEGATIVE_BANK)
    assert negative.values("pdq") == [items["000000004"].evidence[0]["value"]]
    assert false_positive.values == [("pdq", items["000000004"].evidence[0]["value"])]
    assert queue.get(items["000000001"].id).bytes_state == BYTES_PURGED  # retention 0
    assert queue.get(items["000000002"].id).bytes_state == BYTES_QUARANTINED  # escalated: kept

    out = tmp_path / "rescan"
    policy = tmp_path / "review-policy.toml"
    result = run_job(JobSpec(command="scan", dataset=review_run.dataset, out=out, store_root=review_run.store.root,
                             policy=str(policy), workers=1))
    rows = {r["key"]: r for r in removed_rows(out)}
    assert "000000004" not in rows  # the false positive is suppressed
    # the confirmed image's own md5 is now banked: removed outright instead of queued again
    assert rows["000000001"]["action"] == "remove"
    assert {(r["bank"], r["signal_type"]) for r in rows["000000001"]["reasons"]} == {("SAFESET_CONFIRMED", "md5")}
    assert NEGATIVE_BANK not in {b["name"] for b in result.run["banks"]}
    assert result.run["negative_bank"]["version"] == negative.version

    export = export_confirmed(queue, tmp_path / "export", actor="cli:test")
    assert export.items == 1
    document = json.loads(export.json_path.read_text())
    (record,) = document["items"]
    assert record["source_url"] == "https://example.com/images/000000001.jpg"
    assert (record["shard"], record["key"], record["dataset"]) == ("00000.tar", "000000001", str(review_run.dataset))
    assert record["md5"] == hashlib.md5(review_run.samples["000000001"]).hexdigest()
    assert record["sha1"] and record["sha256"] and record["pdq"] and record["first_seen"]
    assert record["banks_matched"] == ["KNOWN_PDQ"] and record["decision"] == "confirm"
    assert record["reviewer"] == "alice" and record["decided_at"] and record["confirmed_bank_version"] == 1
    text = export.json_path.read_text() + export.csv_path.read_text()
    assert "quarantine" not in text and ".ssq" not in text
    (row,) = list(csv.DictReader(export.csv_path.open()))
    assert row["md5"] == record["md5"] and row["banks_matched"] == "KNOWN_PDQ" and row["reviewer"] == "alice"
    assert queue.audit.verify().ok
