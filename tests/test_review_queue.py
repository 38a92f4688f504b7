"""ReviewQueue on both databases: add, claim (concurrently), decide, bank effects, retention, audit."""

from __future__ import annotations

import hashlib
import threading

import pytest

from review_util import drawn_image, jpeg, make_queue, new_key
from safeset.review.errors import ItemStateError, NoImageError, QuarantineKeyError
from safeset.review.model import BYTES_NONE, BYTES_PURGED, BYTES_QUARANTINED, NewItem
from safeset.review.negative import NEGATIVE_BANK, NegativeValues


def evidence(signal_type: str, value: str, bank: str = "KNOWN", distance=None) -> dict:
    return {"rule": "r", "signal_type": signal_type, "bank": bank, "bank_version": 1, "value": value, "distance": distance}


def item(seed: int, **fields) -> NewItem:
    url = f"https://example.com/{seed}.jpg"
    fields.setdefault("evidence", [evidence("url_sha256", hashlib.sha256(url.encode()).hexdigest())])
    return NewItem(origin="api", source_url=url, **fields)


@pytest.fixture
def queue(tmp_path, db_url):
    return make_queue(tmp_path / "store", db_url, new_key())


def test_add_get_list_and_computed_digests(queue):
    image = jpeg(drawn_image(1))
    first = queue.add(item(1, account_id="user-7"), image, actor="token:matcher")
    second = queue.add(item(2), None, actor="token:matcher")
    got = queue.get(first)
    assert got.status == "pending" and got.account_id == "user-7" and got.has_image
    assert got.bytes_state == BYTES_QUARANTINED
    assert got.digests["md5"] == hashlib.md5(image).hexdigest()
    assert got.digests["sha256"] == hashlib.sha256(image).hexdigest()
    assert len(got.digests["pdq"]) == 64 and got.digests["pdq_quality"] >= 50
    assert "quarantine_ref" not in got.to_dict()
    assert queue.get(second).bytes_state == BYTES_NONE and not queue.get(second).has_image
    assert [i.id for i in queue.list()] == [first, second]
    assert [i.id for i in queue.list(status="pending", limit=1, offset=1)] == [second]
    assert queue.counts()["pending"] == 2
    assert queue.image(first, viewer="alice") == image
    with pytest.raises(NoImageError):
        queue.image(second)
    actions = [e.action for e in queue.audit.entries()]
    assert actions == ["review.item_added", "review.item_added", "review.image_viewed"]
    assert all(image.hex()[:32] not in str(e.details) for e in queue.audit.entries())


def test_run_items_are_added_once(queue):
    new = item(1, run_id="run-a", shard="00000.tar", key="000000001")
    first = queue.add(new, b"benign bytes", actor="cli")
    assert queue.add(new, b"benign bytes", actor="cli") == first
    assert queue.count() == 1
    assert len(list(queue.quarantine.stored())) == 1  # the second copy's bytes were not kept
    assert queue.add(item(1, run_id="run-b", shard="00000.tar", key="000000001"), None, actor="cli") != first


def test_bytes_without_a_key_are_refused(tmp_path, db_url):
    keyless = make_queue(tmp_path / "store", db_url, None)
    with pytest.raises(QuarantineKeyError):
        keyless.add(item(1), b"bytes", actor="x")
    assert keyless.count() == 0
    assert keyless.add(item(1), None, actor="x")  # evidence-only items need no key


def test_claims_are_exclusive_under_concurrency(queue):
    ids = {queue.add(item(n), None, actor="x") for n in range(8)}
    claimed: dict[str, int | None] = {}

    def claim(name):
        got = queue.claim_next(name)
        claimed[name] = got.id if got else None

    threads = [threading.Thread(target=claim, args=(f"reviewer-{n}",)) for n in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    taken = [v for v in claimed.values() if v is not None]
    assert len(taken) == 8 and set(taken) == ids  # every item once, two reviewers got none
    assert queue.claim_next("reviewer-0").id == claimed["reviewer-0"] or claimed["reviewer-0"] is None


def test_claim_release_and_stale_claims(tmp_path, db_url):
    queue = make_queue(tmp_path / "store", db_url, new_key(), claim_timeout_seconds=3600)
    first = queue.add(item(1), None, actor="x")
    second = queue.add(item(2), None, actor="x")
    assert queue.claim_next("alice").id == first
    assert queue.claim_next("alice").id == first  # her current item, again
    assert queue.claim_next("bob").id == second
    assert queue.claim_next("carol") is None
    with pytest.raises(ItemStateError, match="claimed by alice"):
        queue.decide(first, "confirm", "bob")
    queue.release(first, "alice")
    assert queue.get(first).status == "pending"
    assert queue.claim_next("carol").id == first
    impatient = make_queue(tmp_path / "store", db_url, new_key(), claim_timeout_seconds=0)
    assert impatient.claim_next("dave").id == first  # carol's claim counts as abandoned now


def test_confirm_banks_the_hashes_and_purges_bytes(queue):
    image = jpeg(drawn_image(3))
    item_id = queue.add(item(3), image, actor="x")
    ref_count = len(list(queue.quarantine.stored()))
    decision = queue.decide(item_id, "confirm", "alice", note="matches the known image")
    assert decision.bank == "SAFESET_CONFIRMED" and decision.bank_version == 1
    bank = queue.store.open_version("SAFESET_CONFIRMED")
    got = queue.get(item_id)
    assert set(bank.signal_types()) == {"md5", "sha1", "sha256", "pdq", "url_sha256"}
    assert bank.values("md5") == [hashlib.md5(image).hexdigest()] and bank.values("pdq") == [got.digests["pdq"]]
    assert got.status == "decided" and got.decision == "confirm" and got.decided_by == "alice"
    assert got.bytes_state == BYTES_PURGED and ref_count == 1 and not list(queue.quarantine.stored())
    (recorded,) = queue.decisions(item_id)
    assert recorded.note == "matches the known image" and recorded.reviewer == "alice"
    assert ("md5", hashlib.md5(image).hexdigest()) in recorded.values
    with pytest.raises(ItemStateError, match="already decided"):
        queue.decide(item_id, "false_positive", "bob")
    entry = [e for e in queue.audit.entries() if e.action == "review.decide"][-1]
    assert entry.actor == "alice" and entry.details["decision"] == "confirm" and entry.details["bank_version"] == 1
    assert queue.audit.verify().ok


def test_false_positive_suppresses_and_a_later_confirm_lifts_it(queue):
    value = "f" * 64
    negative = NegativeValues(queue.store, refresh_seconds=0)
    assert not negative.suppresses("sha256", value)
    fp = queue.add(item(4, evidence=[evidence("sha256", value), evidence("unchecked", "bad jpeg", bank=None)]), None, actor="x")
    decision = queue.decide(fp, "false_positive", "alice")
    assert decision.bank == NEGATIVE_BANK and decision.values == [("sha256", value)]
    assert negative.suppresses("sha256", value) and negative.suppresses("sha256", value.upper())
    assert not negative.suppresses("md5", value[:32]) and not negative.suppresses("sha256", "e" * 64)
    # another item with the same value is confirmed: the value must not stay suppressed
    confirmed = queue.add(item(5, evidence=[evidence("sha256", value)], digests={"sha256": value}), None, actor="x")
    queue.decide(confirmed, "confirm", "bob")
    assert not negative.suppresses("sha256", value)
    assert queue.store.open_version("SAFESET_CONFIRMED").values("sha256") == [value]


def test_escalation_goes_to_another_reviewer(queue):
    item_id = queue.add(item(6), None, actor="x")
    assert queue.claim_next("alice").id == item_id
    queue.decide(item_id, "escalate", "alice", note="unsure")
    got = queue.get(item_id)
    assert got.status == "escalated" and got.escalated_at and got.decision is None
    assert queue.claim_next("bob") is None  # not in the normal queue
    assert queue.claim_next("alice", escalated=True) is None  # not to the one who escalated it
    assert queue.claim_next("senior", escalated=True).id == item_id
    with pytest.raises(ItemStateError, match="already escalated"):
        queue.decide(item_id, "escalate", "senior")
    queue.decide(item_id, "false_positive", "senior")
    assert [d.decision for d in queue.decisions(item_id)] == ["escalate", "false_positive"]


def test_retention_keeps_bytes_until_purged(tmp_path, db_url):
    queue = make_queue(tmp_path / "store", db_url, new_key(), retention_seconds=3600)
    kept = queue.add(item(7), b"benign bytes 7", actor="x")
    undecided = queue.add(item(8), b"benign bytes 8", actor="x")
    queue.decide(kept, "false_positive", "alice")
    assert queue.get(kept).bytes_state == BYTES_QUARANTINED
    assert queue.purge().items == []  # retention not over
    result = queue.purge(retention_seconds=0, actor="cli:ops")
    assert result.items == [kept]
    assert queue.get(kept).bytes_state == BYTES_PURGED
    assert queue.image(undecided) == b"benign bytes 8"  # undecided items keep their bytes
    assert len(list(queue.quarantine.stored())) == 1
    purge_entry = [e for e in queue.audit.entries() if e.action == "review.purge"][-1]
    assert purge_entry.actor == "cli:ops" and purge_entry.details["item_ids"] == [kept]


def test_text_from_strangers_is_stored_safely(queue):
    odd = NewItem(origin="api", source_url="https://example.com/a\x00b\udcff", key="k\x00", account_id="acct\x00")
    got = queue.get(queue.add(odd, None, actor="x"))
    assert got.source_url == "https://example.com/a\ufffdb\ufffd" and got.account_id == "acct\ufffd"
