"""The review pages: evidence first, blurred greyscale image, reveal only on request, decisions, cap, roles, export."""

from __future__ import annotations

import csv
import io
import json
import re

import numpy as np
import pytest
from PIL import Image

from webui_util import (
    add_user,
    logged_in,
    make_config,
    open_client,
    queue,
    queue_item,
    use_cheap_password_hashing,
)


@pytest.fixture(autouse=True)
def _cheap_hashing(monkeypatch):
    use_cheap_password_hashing(monkeypatch)


@pytest.fixture
def client(tmp_path, db_url):
    client = open_client(make_config(tmp_path, db_url, review_cap_per_session=3))
    add_user(client, "alice", "reviewer")
    yield client
    client.__exit__(None, None, None)


def high_frequency_share(image: Image.Image, cutoff: float = 0.05) -> float:
    """Share of the greyscale image's spectral power above `cutoff` cycles/pixel (detail finer than 20 px)."""
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    power = np.abs(np.fft.fft2(pixels - pixels.mean())) ** 2
    radius = np.hypot(np.fft.fftfreq(pixels.shape[0])[:, None], np.fft.fftfreq(pixels.shape[1])[None, :])
    return float(power[radius > cutoff].sum() / power.sum())


def _decide(client, item_id: int, decision: str, csrf: str, note: str = ""):
    return client.post(f"/ui/review/{item_id}/decide", data={"decision": decision, "note": note, "csrf_token": csrf})


def test_queue_overview_shows_counts_and_no_images(client):
    for seed in (1, 2):
        queue_item(client, seed)
    logged_in(client, "alice")
    page = client.get("/ui/queue").text
    assert "<img" not in page
    assert re.search(r"Waiting for review</th><td>2<", page)
    assert 'href="/ui/review"' in page


def test_review_page_shows_the_evidence_before_the_image(client):
    queued = queue_item(client, 7)
    logged_in(client, "alice")
    page = client.get("/ui/review")
    assert page.status_code == 200
    html = page.text
    item = queue(client).get(queued.item_id)
    assert item.status == "claimed" and item.claimed_by == "user:alice"
    for text in ("TEST_BANK", f"{7:064x}", "test-dataset", "00000", "000000007", "placeholder-model", "account-7",
                 item.digests["md5"], item.digests["sha256"]):
        assert text in html, text
    # Source URL as text, never a link the reviewer could follow by accident.
    assert "https://example.com/uploads/7.jpg" in html
    assert 'href="https://example.com' not in html
    assert html.index('id="evidence-heading"') < html.index('id="image-heading"') < html.index('id="decision-heading"')
    # The page shows the blurred rendition; the clear one is only fetched by the hold-to-reveal script.
    assert f'src="/ui/review/{queued.item_id}/image"' in html
    assert re.search(r'<img id="clear-image" hidden', html)
    assert '<script src="/ui/static/reveal.js" defer></script>' in html
    assert page.headers["cache-control"].startswith("no-store")


def test_image_is_served_blurred_and_greyscale_by_default(client):
    queued = queue_item(client, 11)
    logged_in(client, "alice")
    client.get("/ui/review")
    response = client.get(f"/ui/review/{queued.item_id}/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"].startswith("no-store")
    shown = Image.open(io.BytesIO(response.content))
    assert shown.mode == "L"  # greyscale: one channel
    original = Image.open(io.BytesIO(queued.image)).convert("L").resize(shown.size)
    assert high_frequency_share(original) > 0.05  # the drawing has sharp edges...
    assert high_frequency_share(shown) < 0.02  # ...which the rendition does not
    # Blurred, not blank: the overall brightness still follows the image.
    assert abs(np.asarray(shown, dtype=float).mean() - np.asarray(original, dtype=float).mean()) < 12
    assert not any(e.action == "review.image_viewed" for e in client.app.state.ctx.audit.entries())


def test_clear_image_only_through_the_reveal_endpoint_with_session_and_csrf(client):
    queued = queue_item(client, 12)
    csrf = logged_in(client, "alice")
    client.get("/ui/review")
    url = f"/ui/review/{queued.item_id}/reveal"
    assert client.get(url).status_code == 405
    assert client.post(url, data={}).status_code == 403
    assert client.post(url, data={"csrf_token": "f" * 64}).status_code == 403
    response = client.post(url, data={"csrf_token": csrf})
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"].startswith("no-store")
    clear = Image.open(io.BytesIO(response.content))
    assert clear.mode == "RGB"
    original = Image.open(io.BytesIO(queued.image)).convert("RGB").resize(clear.size)
    assert np.abs(np.asarray(clear, dtype=float) - np.asarray(original, dtype=float)).mean() < 3
    viewed = [e for e in client.app.state.ctx.audit.entries() if e.action == "review.image_viewed"]
    assert [(e.actor, e.details["item_id"]) for e in viewed] == [("user:alice", queued.item_id)]
    client.cookies.clear()
    assert client.post(url, data={"csrf_token": csrf}).status_code == 401


def test_images_only_for_the_item_the_viewer_holds(client):
    first, second = queue_item(client, 21), queue_item(client, 22)
    csrf = logged_in(client, "alice")
    client.get("/ui/review")  # claims the first
    assert client.get(f"/ui/review/{second.item_id}/image").status_code == 403
    assert client.post(f"/ui/review/{second.item_id}/reveal", data={"csrf_token": csrf}).status_code == 403
    assert _decide(client, second.item_id, "confirm", csrf).status_code == 403
    assert client.get("/ui/review/999999/image").status_code == 404
    assert queue(client).get(second.item_id).status == "pending"
    assert client.get(f"/ui/review/{first.item_id}/image").status_code == 200


def test_decisions_are_recorded_and_the_next_item_follows(client):
    first, second = queue_item(client, 31), queue_item(client, 32)
    csrf = logged_in(client, "alice")
    assert f"Review item {first.item_id}" in client.get("/ui/review").text
    response = _decide(client, first.item_id, "false_positive", csrf, note="benign drawing")
    assert response.status_code == 303 and response.headers["location"] == "/ui/review"
    item = queue(client).get(first.item_id)
    assert (item.status, item.decision, item.decided_by) == ("decided", "false_positive", "user:alice")
    assert [d.note for d in queue(client).decisions(first.item_id)] == ["benign drawing"]
    decided = [e for e in client.app.state.ctx.audit.entries() if e.action == "review.decide"]
    assert [(e.actor, e.details["decision"]) for e in decided] == [("user:alice", "false_positive")]
    assert f"Review item {second.item_id}" in client.get("/ui/review").text
    assert _decide(client, second.item_id, "confirm", csrf).status_code == 303
    assert queue(client).get(second.item_id).decision == "confirm"
    assert "Nothing to review" in client.get("/ui/review").text


def test_decision_form_is_checked(client):
    queued = queue_item(client, 41)
    csrf = logged_in(client, "alice")
    client.get("/ui/review")
    assert _decide(client, queued.item_id, "confirm", "").status_code == 403
    assert _decide(client, queued.item_id, "delete-everything", csrf).status_code == 400
    assert queue(client).get(queued.item_id).status == "claimed"


def test_session_cap_asks_for_a_break_and_stops_serving_items(client):
    items = [queue_item(client, 50 + i) for i in range(5)]
    csrf = logged_in(client, "alice")
    for item in items[:3]:
        assert f"Review item {item.item_id}" in client.get("/ui/review").text
        assert _decide(client, item.item_id, "confirm", csrf).status_code == 303
    page = client.get("/ui/review").text
    assert "Time for a break" in page and "<img" not in page
    assert queue(client).counts()["pending"] == 2  # nothing more was claimed
    assert "reached this session" in client.get("/ui/queue").text


def test_escalated_items_go_to_senior_reviewers(client):
    queued = queue_item(client, 61)
    add_user(client, "sam", "senior")
    csrf = logged_in(client, "alice")
    client.get("/ui/review")
    assert _decide(client, queued.item_id, "escalate", csrf, note="unsure").status_code == 303
    assert queue(client).get(queued.item_id).status == "escalated"
    assert "Nothing to review" in client.get("/ui/review").text  # reviewers do not get escalated items
    client.cookies.clear()
    csrf = logged_in(client, "sam")
    page = client.get("/ui/review").text
    assert f"Review item {queued.item_id}" in page and "escalated for a second look" in page
    assert 'value="escalate"' not in page
    assert _decide(client, queued.item_id, "confirm", csrf).status_code == 303
    assert queue(client).get(queued.item_id).decided_by == "user:sam"


def test_logout_gives_the_held_item_back(client):
    queued = queue_item(client, 71)
    csrf = logged_in(client, "alice")
    client.get("/ui/review")
    assert queue(client).get(queued.item_id).status == "claimed"
    client.post("/ui/logout", data={"csrf_token": csrf})
    assert queue(client).get(queued.item_id).status == "pending"


def test_item_without_image_is_reviewed_from_evidence(client):
    queued = queue_item(client, 81, with_image=False)
    logged_in(client, "alice")
    page = client.get("/ui/review").text
    assert "No image is held for this item" in page and "reveal-button" not in page
    assert client.get(f"/ui/review/{queued.item_id}/image").status_code == 404


def test_export_is_for_admins_and_has_no_image_bytes(client):
    queued = queue_item(client, 91)
    csrf = logged_in(client, "alice")
    client.get("/ui/review")
    _decide(client, queued.item_id, "confirm", csrf)
    assert client.get("/ui/export").status_code == 403
    assert client.post("/ui/export", data={"csrf_token": csrf}).status_code == 403
    client.cookies.clear()
    add_user(client, "ada", "admin")
    csrf = logged_in(client, "ada")
    assert client.post("/ui/export", data={}).status_code == 403
    created = client.post("/ui/export", data={"csrf_token": csrf})
    assert created.status_code == 303
    page = client.get(created.headers["location"]).text
    links = re.findall(r'href="(/ui/export/[^"]+)"', page)
    assert sorted(link.rsplit("/", 1)[1] for link in links) == ["confirmed.csv", "confirmed.json"]
    exported = {}
    for link in links:
        response = client.get(link)
        assert response.status_code == 200 and "attachment" in response.headers["content-disposition"]
        exported[link.rsplit("/", 1)[1]] = response.content
    document = json.loads(exported["confirmed.json"])
    item = queue(client).get(queued.item_id)
    assert [(r["item_id"], r["sha256"], r["source_url"]) for r in document["items"]] == [
        (queued.item_id, item.digests["sha256"], "https://example.com/uploads/91.jpg")
    ]
    rows = list(csv.DictReader(io.StringIO(exported["confirmed.csv"].decode())))
    assert rows[0]["decision"] == "confirm" and rows[0]["banks_matched"] == "TEST_BANK"
    for body in exported.values():
        assert queued.image[:64] not in body and b"\xff\xd8\xff" not in body
    assert client.get("/ui/export/..%2F..%2Fsafeset.db/confirmed.json").status_code == 404
    assert client.get(links[0].rsplit("/", 1)[0] + "/safeset.db").status_code == 404
