"""The review queue inside `safeset serve`: component "review" and the /review JSON API (scope review)."""

from __future__ import annotations

import secrets

from review_util import drawn_image, jpeg
from safeset.review.model import NewItem
from service_util import auth, make_client, make_token


def test_review_api_claims_and_decides_items_without_serving_bytes(tmp_path, db_url, monkeypatch):
    monkeypatch.setenv("SAFESET_QUARANTINE_KEY", secrets.token_bytes(32).hex())
    client, token = make_client(tmp_path, db_url, scopes=("review",), name="reviewer-1")
    queue = client.app.state.ctx.component("review")
    assert queue.stores_bytes
    image = jpeg(drawn_image(21))
    evidence = [{"rule": "r", "signal_type": "md5", "bank": "KNOWN", "bank_version": 1, "value": "a" * 32, "distance": None}]
    item_id = queue.add(NewItem(origin="api", source_url="https://example.com/u.jpg", evidence=evidence,
                                account_id="acct-1"), image, actor="token:matcher")

    listed = client.get("/review/items", headers=auth(token)).json()
    assert listed["counts"]["pending"] == 1 and listed["items"][0]["id"] == item_id
    assert image.hex()[:40] not in client.get(f"/review/items/{item_id}", headers=auth(token)).text

    claimed = client.post("/review/claim", headers=auth(token)).json()["item"]
    assert claimed["id"] == item_id and claimed["claimed_by"] == "token:reviewer-1"
    other = make_token(client, ("review",), name="reviewer-2")
    assert client.post("/review/claim", headers=auth(other)).json() == {"item": None}
    busy = client.post(f"/review/items/{item_id}/decision", json={"decision": "confirm"}, headers=auth(other))
    assert busy.status_code == 409

    decided = client.post(f"/review/items/{item_id}/decision", json={"decision": "false_positive", "note": "benign"},
                          headers=auth(token))
    assert decided.status_code == 200 and decided.json()["bank"] == "SAFESET_FALSE_POSITIVES"
    again = client.post(f"/review/items/{item_id}/decision", json={"decision": "confirm"}, headers=auth(token))
    assert again.status_code == 409
    detail = client.get(f"/review/items/{item_id}", headers=auth(token)).json()
    assert detail["status"] == "decided" and [d["decision"] for d in detail["decisions"]] == ["false_positive"]
    assert client.get("/review/items/999999", headers=auth(token)).status_code == 404
    assert client.post("/review/items/1/decision", json={"decision": "delete"}, headers=auth(token)).status_code == 422

    match_only = make_token(client, ("match",), name="matcher")
    assert client.get("/review/items", headers=auth(match_only)).status_code == 403
    assert client.get("/review/items").status_code == 401


def test_service_start_purges_bytes_past_retention(tmp_path, db_url, monkeypatch):
    monkeypatch.setenv("SAFESET_QUARANTINE_KEY", secrets.token_bytes(32).hex())
    client, _ = make_client(tmp_path, db_url, quarantine_retention_s=3600)
    queue = client.app.state.ctx.component("review")
    item_id = queue.add(NewItem(origin="api"), b"benign bytes", actor="test")
    queue.decide(item_id, "false_positive", "alice")
    assert queue.get(item_id).bytes_state == "quarantined"
    queue.db.execute("UPDATE review_items SET purge_after = ? WHERE id = ?", ("2000-01-01T00:00:00.000000Z", item_id))
    client.__exit__(None, None, None)
    restarted, _ = make_client(tmp_path, db_url, name="after-restart")
    assert restarted.app.state.ctx.component("review").get(item_id).bytes_state == "purged"
