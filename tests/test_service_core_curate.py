"""The curator API over the real bank store: HMA shapes, shared banks, content settings."""

from __future__ import annotations

import hashlib
import json
import time

from e2e_util import import_bank, safeset
from pdq_hash_util import encode, photo_like, reference_pdq
from service_util import auth, make_client

PDQ_A = "a" * 64  # placeholders: benign, made-up hash values
PDQ_B = "b" * 64
MD5_C = "c" * 32


def test_bank_lifecycle_has_hma_shapes(tmp_path, db_url):
    client, token = make_client(tmp_path, db_url, scopes=("curate",))
    h = auth(token)
    created = client.post("/c/banks", json={"name": "MY_BANK", "enabled_ratio": 0.5}, headers=h)
    assert created.status_code == 201
    assert created.json()["name"] == "MY_BANK" and created.json()["matching_enabled_ratio"] == 0.5
    assert client.post("/c/banks", json={"name": "MY_BANK"}, headers=h).status_code == 409
    assert client.post("/c/banks", json={"name": "9BAD"}, headers=h).status_code == 422
    listed = client.get("/c/banks", headers=h).json()
    assert [(b["name"], b["matching_enabled_ratio"]) for b in listed] == [("MY_BANK", 0.5)]

    updated = client.put("/c/bank/MY_BANK", json={"enabled": False}, headers=h)
    assert updated.json()["matching_enabled_ratio"] == 0.0
    assert client.put("/c/bank/MY_BANK", json={"enabled_ratio": 2}, headers=h).status_code == 422
    assert client.put("/c/bank/MY_BANK", json={"name": "OTHER"}, headers=h).status_code == 400
    assert client.app.state.ctx.bank_settings.snapshot(max_age_s=0).enabled_ratio("MY_BANK") == 0.0

    added = client.post("/c/bank/MY_BANK/signal", json={"pdq": PDQ_A.upper()}, headers=h)
    assert added.status_code == 200, added.text
    body = added.json()
    assert body["signals"] == {"pdq": PDQ_A} and isinstance(body["id"], int)
    assert client.get("/c/bank/MY_BANK", headers=h).json()["entries"] == 1

    assert client.delete("/c/bank/MY_BANK", headers=h).json() == {"message": "Done"}
    assert client.get("/c/bank/MY_BANK", headers=h).status_code == 404
    assert client.delete("/c/bank/MY_BANK", headers=h).json() == {"message": "Done"}  # as HMA: idempotent


def test_invalid_signals_are_400_with_hma_message(tmp_path):
    client, token = make_client(tmp_path, scopes=("curate",))
    h = auth(token)
    client.post("/c/banks", json={"name": "B"}, headers=h)
    cases = [{"pdq": "xyz"}, {"no_such_type": "1"}, {}, {"pdq": 5}, {"md5": "z" * 32}]
    for body in cases:
        answer = client.post("/c/bank/B/signal", json=body, headers=h)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["detail"].startswith("invalid signal"), answer.json()
    assert client.post("/c/bank/NOPE/signal", json={"pdq": PDQ_A}, headers=h).status_code == 404
    assert client.get("/c/bank/B", headers=h).json()["entries"] == 0


def test_api_and_cli_share_the_same_banks(tmp_path, db_url):
    client, token = make_client(tmp_path, db_url, scopes=("curate",))
    store = client.app.state.ctx.config.store_root
    h = auth(token)
    # imported with the CLI -> visible through the API
    import_bank(store, "IMPORTED", "md5", f"{MD5_C}\n")
    listed = {b["name"]: b for b in client.get("/c/banks", headers=h).json()}
    assert listed["IMPORTED"]["entries"] == 1 and listed["IMPORTED"]["latest_version"] == 1
    # added through the API -> a new version the CLI lists
    assert client.post("/c/bank/IMPORTED/signal", json={"pdq": PDQ_B, "note": "from api"}, headers=h).status_code == 200
    rows = json.loads(safeset("bank", "list", "--store", store, "--json").stdout)
    imported = next(r for r in rows if r["name"] == "IMPORTED")
    assert imported["latest_version"] == 2 and imported["entries"] == 2
    # adding what is already there makes no new version and returns the same id
    again = client.post("/c/bank/IMPORTED/signal", json={"pdq": PDQ_B}, headers=h).json()
    assert again["bank_version"] == 2
    assert again["id"] == client.app.state.ctx.store.open_version("IMPORTED").entry_id("pdq", PDQ_B)


def test_content_upload_disable_and_delete(tmp_path, db_url):
    client, token = make_client(tmp_path, db_url, scopes=("curate",))
    h = auth(token)
    client.post("/c/banks", json={"name": "PHOTOS"}, headers=h)
    data = encode(photo_like(11, 128, 128), "JPEG", quality=90)
    uploaded = client.post(
        "/c/bank/PHOTOS/content",
        files={"photo": ("x.jpg", data, "image/jpeg")},
        data={"note": "benign test image", "metadata": json.dumps({"content_id": "c-1"})},
        headers=h,
    )
    assert uploaded.status_code == 200, uploaded.text
    body = uploaded.json()
    assert body["signals"]["pdq"] == reference_pdq(data)[0]
    assert body["signals"]["md5"] == hashlib.md5(data).hexdigest()
    pdq_id = body["entry_ids"]["pdq"]

    shown = client.get(f"/c/bank/PHOTOS/content/{pdq_id}", headers=h).json()
    assert shown["signals"] == {"pdq": body["signals"]["pdq"]} and shown["enabled"] is True
    assert shown["note"] == "benign test image" and shown["metadata"] == {"content_id": "c-1"}

    until = int(time.time()) + 3600
    disabled = client.put(f"/c/bank/PHOTOS/content/{pdq_id}", json={"disable_until_ts": until}, headers=h).json()
    assert disabled["enabled"] is False and disabled["disable_until_ts"] == until
    snapshot = client.app.state.ctx.bank_settings.snapshot(max_age_s=0)
    assert snapshot.is_disabled("PHOTOS", pdq_id) and not snapshot.is_disabled("PHOTOS", pdq_id, now=until + 1)
    enabled = client.put(f"/c/bank/PHOTOS/content/{pdq_id}", json={"enabled": True}, headers=h).json()
    assert enabled["enabled"] is True

    listing = client.get("/c/bank/PHOTOS/content", headers=h).json()
    assert listing["total"] == 4 and len(listing["content"]) == 4  # pdq, md5, sha1, sha256

    assert client.delete(f"/c/bank/PHOTOS/content/{pdq_id}", headers=h).json() == {"deleted": 1}
    assert client.get(f"/c/bank/PHOTOS/content/{pdq_id}", headers=h).status_code == 404
    assert client.delete(f"/c/bank/PHOTOS/content/{pdq_id}", headers=h).json() == {"deleted": 0}
    remaining = client.app.state.ctx.store.open_version("PHOTOS")
    assert remaining.manifest["counts"] == {"md5": 1, "sha1": 1, "sha256": 1}
    # the other entries kept their ids
    assert remaining.entry_id("md5", body["signals"]["md5"]) == body["entry_ids"]["md5"]


def test_removing_the_last_content_keeps_an_empty_bank(tmp_path):
    client, token = make_client(tmp_path, scopes=("curate",))
    h = auth(token)
    client.post("/c/banks", json={"name": "ONE"}, headers=h)
    content_id = client.post("/c/bank/ONE/signal", json={"md5": MD5_C}, headers=h).json()["id"]
    assert client.delete(f"/c/bank/ONE/content/{content_id}", headers=h).json() == {"deleted": 1}
    bank = client.get("/c/bank/ONE", headers=h).json()
    assert (bank["entries"], bank["latest_version"]) == (0, 2)
    assert client.get("/c/bank/ONE/content", headers=h).json()["total"] == 0
    # neither version numbers nor content ids are reused when content is added again
    again = client.post("/c/bank/ONE/signal", json={"md5": MD5_C}, headers=h).json()
    assert again["id"] > content_id and again["bank_version"] == 3


def test_signal_types_lists_everything_the_store_supports(tmp_path):
    client, token = make_client(tmp_path, scopes=("curate",))
    names = {t["name"] for t in client.get("/c/signal_type", headers=auth(token)).json()}
    assert {"pdq", "md5", "sha1", "sha256", "url", "url_md5", "url_sha1", "url_sha256"} <= names


def test_curation_is_audited(tmp_path, db_url):
    client, token = make_client(tmp_path, db_url, scopes=("curate",), name="curator")
    h = auth(token)
    client.post("/c/banks", json={"name": "AUDITED"}, headers=h)
    content_id = client.post("/c/bank/AUDITED/signal", json={"pdq": PDQ_A}, headers=h).json()["id"]
    client.put(f"/c/bank/AUDITED/content/{content_id}", json={"disable_until_ts": 1}, headers=h)
    client.delete(f"/c/bank/AUDITED/content/{content_id}", headers=h)
    client.delete("/c/bank/AUDITED", headers=h)
    audit = client.app.state.ctx.audit
    entries = [(e.actor, e.action) for e in audit.entries() if e.action.startswith("bank.")]
    assert entries == [
        ("token:curator", "bank.create"),
        ("token:curator", "bank.add_signals"),
        ("token:curator", "bank.update_content"),
        ("token:curator", "bank.delete_content"),
        ("token:curator", "bank.delete"),
    ]
    assert audit.verify().ok
