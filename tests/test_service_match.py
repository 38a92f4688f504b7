"""The matcher API (`/m/...`): HMA shapes, live updates, filters, uploads that matched go to review."""

from __future__ import annotations

import hashlib
import os
import time

import numpy as np
import pytest

from e2e_util import safeset
from pdq_hash_util import encode, photo_like
from service_util import auth, make_client
from safeset.pdq import hash_image
from safeset.service.matching.lookups import ContentLookup, queue_for_review

RNG = np.random.default_rng(3)
PDQ = RNG.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()
MD5 = hashlib.md5(b"benign listed bytes").hexdigest()


def flip(hex_hash: str, bits: int) -> str:
    value = int(hex_hash, 16) ^ ((1 << bits) - 1)
    return f"{value:064x}"


def jpeg(seed: int, size: int = 128) -> bytes:
    return encode(photo_like(seed, size, size), "JPEG", quality=90)


@pytest.fixture
def service(tmp_path, db_url):
    """A running service with bank LISTED (a PDQ hash and an MD5) and a token that may match and curate."""
    client, token = make_client(tmp_path, db_url, scopes=("match", "curate"), index_poll_s=0.05)
    headers = auth(token)
    assert client.post("/c/banks", json={"name": "LISTED"}, headers=headers).status_code == 201
    added = client.post("/c/bank/LISTED/signal", json={"pdq": PDQ}, headers=headers).json()
    client.post("/c/bank/LISTED/signal", json={"md5": MD5}, headers=headers)
    return client, headers, added["id"]


def test_raw_lookup_gives_hma_shapes(service):
    client, headers, pdq_id = service
    near = flip(PDQ, 5)
    plain = client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": near}, headers=headers)
    assert plain.status_code == 200 and plain.json() == {"matches": [pdq_id]}
    with_distance = client.get(
        "/m/raw_lookup",
        params={"signal_type": "pdq", "signal": near, "include_distance": "true", "include_matching_hash": "true"},
        headers=headers,
    ).json()
    assert with_distance == {
        "matches": [{"bank_content_id": pdq_id, "distance": "5"}],
        "matching_hash": {"signal": near, "signal_type": "pdq"},
    }
    miss = client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": flip(PDQ, 40)}, headers=headers)
    assert miss.json() == {"matches": []}


def test_lookup_groups_matches_by_bank(service):
    client, headers, pdq_id = service
    answer = client.get("/m/lookup", params={"signal_type": "pdq", "signal": flip(PDQ, 3)}, headers=headers)
    assert answer.json() == {"LISTED": [{"bank_content_id": pdq_id, "distance": 3}]}
    md5 = client.get("/m/lookup", params={"signal_type": "md5", "signal": MD5.upper()}, headers=headers).json()
    assert list(md5) == ["LISTED"] and md5["LISTED"][0]["distance"] == 0


def test_bad_input_is_a_400_with_a_reason(service):
    client, headers, _ = service
    bad = client.get("/m/raw_lookup", params={"signal_type": "pdq", "signal": "xyz"}, headers=headers)
    assert bad.status_code == 400 and bad.json()["detail"].startswith("invalid signal: ")
    unknown_type = client.get("/m/raw_lookup", params={"signal_type": "video_tmk", "signal": "x"}, headers=headers)
    assert unknown_type.status_code == 400 and "no such signal type" in unknown_type.json()["detail"]
    unknown_bank = client.get(
        "/m/raw_lookup", params={"signal_type": "md5", "signal": MD5, "banks": "LISTED,NOPE"}, headers=headers
    )
    assert unknown_bank.status_code == 400 and "NOPE" in unknown_bank.json()["detail"]
    nothing = client.get("/m/lookup", headers=headers)
    assert nothing.status_code == 400
    bad_account = client.get(
        "/m/raw_lookup", params={"signal_type": "md5", "signal": MD5, "account_id": "a\x00b"}, headers=headers
    )
    assert bad_account.status_code == 400


def test_banks_filter(service):
    client, headers, _ = service
    client.post("/c/banks", json={"name": "OTHER"}, headers=headers)
    client.post("/c/bank/OTHER/signal", json={"md5": MD5}, headers=headers)
    both = client.get("/m/lookup", params={"signal_type": "md5", "signal": MD5}, headers=headers).json()
    assert sorted(both) == ["LISTED", "OTHER"]
    one = client.get("/m/lookup", params={"signal_type": "md5", "signal": MD5, "banks": "other"}, headers=headers).json()
    assert list(one) == ["OTHER"]


def test_a_hash_added_through_the_api_matches_at_once(service):
    client, headers, _ = service
    fresh = hashlib.md5(b"added a moment ago").hexdigest()
    client.post("/c/bank/LISTED/signal", json={"md5": fresh}, headers=headers)
    started = time.monotonic()
    while time.monotonic() - started < 5:
        if client.get("/m/raw_lookup", params={"signal_type": "md5", "signal": fresh}, headers=headers).json()["matches"]:
            break
        time.sleep(0.02)
    assert time.monotonic() - started < 5, "an API addition must be matchable within 5 s"


def test_an_import_by_the_cli_matches_within_five_seconds(service, tmp_path):
    client, headers, _ = service
    fresh = hashlib.sha256(b"imported by another process").hexdigest()
    path = tmp_path / "import.txt"
    path.write_text(fresh + "\n")
    store = client.app.state.ctx.store.root
    safeset("bank", "import", "IMPORTED", path, "--type", "sha256", "--store", store)
    started = time.monotonic()
    while time.monotonic() - started < 5:
        found = client.get("/m/lookup", params={"signal_type": "sha256", "signal": fresh}, headers=headers).json()
        if found:
            break
        time.sleep(0.02)
    assert list(found) == ["IMPORTED"]


def test_disabled_content_does_not_match_until_enabled(service):
    client, headers, pdq_id = service
    params = {"signal_type": "pdq", "signal": PDQ}
    assert client.get("/m/raw_lookup", params=params, headers=headers).json()["matches"] == [pdq_id]
    changed = client.put(f"/c/bank/LISTED/content/{pdq_id}", json={"enabled": False}, headers=headers)
    assert changed.status_code == 200, changed.text
    assert client.get("/m/raw_lookup", params=params, headers=headers).json()["matches"] == []
    client.put(f"/c/bank/LISTED/content/{pdq_id}", json={"enabled": True}, headers=headers)
    assert client.get("/m/raw_lookup", params=params, headers=headers).json()["matches"] == [pdq_id]


def test_a_bank_with_matching_off(service):
    client, headers, _ = service
    client.put("/c/bank/LISTED", json={"enabled_ratio": 0.0}, headers=headers)
    assert client.get("/m/lookup", params={"signal_type": "md5", "signal": MD5}, headers=headers).json() == {}


def test_compare(service):
    client, headers, _ = service
    answer = client.post("/m/compare", json={"pdq": [PDQ, flip(PDQ, 9)], "md5": [MD5, MD5.upper()]}, headers=headers)
    assert answer.json() == {"pdq": [True, {"distance": 9}], "md5": [True, {"distance": 0}]}
    far = client.post("/m/compare", json={"pdq": [PDQ, flip(PDQ, 60)]}, headers=headers).json()
    assert far == {"pdq": [False, {"distance": 60}]}
    bad = client.post("/m/compare", json={"pdq": [PDQ]}, headers=headers)
    assert bad.status_code in (400, 422)


def test_index_status(service):
    client, headers, _ = service
    status = client.get("/m/index/status", headers=headers).json()
    assert status["pdq"]["present"] and status["pdq"]["size"] == 1 and status["md5"]["size"] == 1
    assert status["sha1"] == {"present": False, "built_to": -1, "size": 0}
    only = client.get("/m/index/status", params={"signal_type": "pdq"}, headers=headers).json()
    assert list(only) == ["pdq"]
    assert client.get("/m/index/status", params={"signal_type": "nope"}, headers=headers).status_code == 400


def test_not_ready_is_a_503(tmp_path):
    client, token = make_client(tmp_path, scopes=("match",))
    client.app.state.ctx.component("index")._ready = False
    answer = client.get("/m/raw_lookup", params={"signal_type": "md5", "signal": MD5}, headers=auth(token))
    assert answer.status_code == 503


def test_uploaded_content_is_hashed_and_looked_up_per_signal_type(service):
    client, headers, _ = service
    photo = jpeg(21)
    exact = hash_image(photo, "exact").hex
    client.post("/c/banks", json={"name": "PHOTOS"}, headers=headers)
    client.post("/c/bank/PHOTOS/signal", json={"pdq": exact}, headers=headers)
    answer = client.post("/m/lookup", files={"photo": ("x.jpg", photo, "image/jpeg")}, headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"pdq", "md5", "sha1", "sha256"}
    # Lookups hash with lookup_pdq_mode ("fast" by default): the distance is that of the fast hash to the bank's.
    fast = hash_image(photo, "fast").hex
    expected = bin(int(fast, 16) ^ int(exact, 16)).count("1")
    assert expected <= 10
    assert list(body["pdq"]) == ["PHOTOS"] and body["pdq"]["PHOTOS"][0]["distance"] == expected
    assert body["md5"] == {} and body["sha256"] == {}
    other = client.post("/m/lookup", files={"photo": ("y.jpg", jpeg(22), "image/jpeg")}, headers=headers).json()
    assert other["pdq"] == {}


def test_lookup_pdq_mode_exact_hashes_uploads_as_the_reference_does(tmp_path, db_url):
    client, token = make_client(tmp_path, db_url, scopes=("match", "curate"), index_poll_s=0.05, lookup_pdq_mode="exact")
    headers = auth(token)
    photo = jpeg(21)
    client.post("/c/banks", json={"name": "PHOTOS"}, headers=headers)
    client.post("/c/bank/PHOTOS/signal", json={"pdq": hash_image(photo, "exact").hex}, headers=headers)
    body = client.post("/m/lookup", files={"photo": ("x.jpg", photo, "image/jpeg")}, headers=headers).json()
    assert body["pdq"]["PHOTOS"][0]["distance"] == 0


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "keys" / "quarantine.key"
    path.parent.mkdir()
    path.write_text(os.urandom(32).hex() + "\n")
    path.chmod(0o600)
    return path


def _review_registered() -> bool:
    try:
        import safeset.review.service  # noqa: F401  registers component "review"
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("with_key", [True, False])
def test_a_matched_upload_is_queued_for_review(tmp_path, db_url, key_file, with_key):
    if not _review_registered():
        pytest.skip("the review part (safeset.review.service) is not present")
    settings = {"quarantine_key_file": key_file} if with_key else {}
    client, token = make_client(tmp_path, db_url, scopes=("match", "curate"), **settings)
    headers = auth(token)
    photo = jpeg(31)
    client.post("/c/banks", json={"name": "PHOTOS"}, headers=headers)
    client.post("/c/bank/PHOTOS/content", files={"photo": ("p.jpg", photo, "image/jpeg")}, headers=headers)
    client.app.state.ctx.component("index").wait_until_current()
    answer = client.post(
        "/m/lookup", params={"account_id": "user-42"}, files={"photo": ("p.jpg", photo, "image/jpeg")}, headers=headers
    )
    assert answer.status_code == 200 and answer.json()["md5"]
    queue = client.app.state.ctx.component("review")
    items = queue.list()
    assert len(items) == 1
    item = items[0]
    assert item.origin == "api" and item.account_id == "user-42" and item.banks == ["PHOTOS"]
    assert item.digests["md5"] == hashlib.md5(photo).hexdigest()
    assert {e["signal_type"] for e in item.evidence} == {"pdq", "md5", "sha1", "sha256"}
    if with_key:
        assert item.has_image and queue.image(item.id) == photo
    else:
        assert not item.has_image and "quarantine" in item.bytes_note
    # nothing matched: nothing queued
    client.post("/m/lookup", files={"photo": ("q.jpg", jpeg(32), "image/jpeg")}, headers=headers)
    assert len(queue.list()) == 1


class FailingQueue:
    """A review queue whose quarantine breaks: the evidence must still be queued, without bytes."""

    stores_bytes = True

    def __init__(self):
        self.added = []

    def add(self, item, data, actor):
        if data is not None:
            raise OSError("disk full")
        self.added.append(item)
        return 7


def test_a_quarantine_failure_still_queues_the_evidence():
    from safeset.service.live_index import Match

    queue = FailingQueue()
    content = ContentLookup({"md5": MD5}, {"md5": [Match("B", 1, 3, None, MD5, "md5")]})
    image = b"\xff\xd8 benign-image-payload"
    assert queue_for_review(queue, content, image, account_id=None, actor="token:t") == 7
    (item,) = queue.added
    assert item.bytes_state == "not_imported" and "could not be quarantined" in item.bytes_note
    assert item.evidence[0]["bank"] == "B" and "benign-image-payload" not in repr(item)


def test_the_fast_path_answers_as_the_route_does(service):
    """Plain lookups skip the framework; a parameter the fast path leaves to the route gives the same answer."""
    client, headers, pdq_id = service
    for path in ("/m/raw_lookup", "/m/lookup"):
        for params in (
            {"signal_type": "pdq", "signal": flip(PDQ, 7)},
            {"signal_type": "md5", "signal": MD5},
            {"signal_type": "pdq", "signal": flip(PDQ, 7), "banks": "LISTED", "seed": "1"},
        ):
            if path == "/m/raw_lookup":
                params = {**params, "include_distance": "true"}
            fast = client.get(path, params=params, headers=headers)
            routed = client.get(path, params={**params, "unused": "1"}, headers=headers)  # handed to FastAPI
            assert fast.status_code == routed.status_code == 200
            assert fast.json() == routed.json() and fast.json()
            assert fast.headers["content-type"] == routed.headers["content-type"] == "application/json"
    # errors are the route's, whichever path
    for bad in ({"signal_type": "pdq", "signal": "0" * 64}, {"signal_type": "pdq"}, {"signal_type": "x", "signal": "y"}):
        assert client.get("/m/raw_lookup", params=bad, headers=headers).status_code in (400, 422)
    assert client.get("/m/raw_lookup", params={"signal_type": "md5", "signal": MD5}).status_code == 401
    no_scope_client_headers = {"Authorization": "Bearer not-a-token"}
    assert client.get("/m/raw_lookup", params={"signal_type": "md5", "signal": MD5},
                      headers=no_scope_client_headers).status_code == 401


def test_fast_path_requests_are_logged_with_the_token_name(tmp_path, caplog):
    import logging

    client, token = make_client(tmp_path, scopes=("match",), name="fast-logger", access_log=True)
    with caplog.at_level(logging.INFO, logger="safeset.service.access"):
        answer = client.get("/m/raw_lookup", params={"signal_type": "md5", "signal": MD5}, headers=auth(token))
    assert answer.status_code == 200
    lines = [r.getMessage() for r in caplog.records if "/m/raw_lookup" in r.getMessage()]
    assert lines and "token=fast-logger" in lines[-1] and MD5 not in lines[-1] and token not in lines[-1]


def test_a_token_without_the_match_scope_is_refused(tmp_path):
    client, token = make_client(tmp_path, scopes=("hash",))
    answer = client.get("/m/raw_lookup", params={"signal_type": "md5", "signal": MD5}, headers=auth(token))
    assert answer.status_code == 403


@pytest.fixture
def image_host():
    """A loopback server holding one benign photo."""
    import http.server
    import threading

    data = jpeg(41)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/photo.jpg" else 404)
            self.send_header("content-length", str(len(data) if self.path == "/photo.jpg" else 0))
            self.end_headers()
            if self.path == "/photo.jpg":
                self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_port, data
    server.shutdown()
    server.server_close()


def test_lookup_of_content_at_a_url(tmp_path, image_host):
    port, data = image_host
    client, token = make_client(
        tmp_path, scopes=("match", "curate"), fetch_enabled=True, fetch_allowed_hosts=(f"127.0.0.1:{port}",)
    )
    headers = auth(token)
    client.post("/c/banks", json={"name": "FETCHED"}, headers=headers)
    client.post("/c/bank/FETCHED/signal", json={"sha256": hashlib.sha256(data).hexdigest()}, headers=headers)
    url = f"http://127.0.0.1:{port}/photo.jpg"
    answer = client.get("/m/lookup", params={"url": url}, headers=headers)
    assert answer.status_code == 200, answer.text
    assert list(answer.json()["sha256"]) == ["FETCHED"] and answer.json()["pdq"] == {}
    only = client.get("/m/lookup", params={"url": url, "signal_type": "sha256"}, headers=headers).json()
    assert list(only) == ["FETCHED"]
    refused = client.get("/m/lookup", params={"url": "http://127.0.0.1:1/photo.jpg"}, headers=headers)
    assert refused.status_code == 403


def test_a_false_positive_decision_stops_the_same_upload_matching(tmp_path, db_url, key_file):
    """Reviewer marks an API-queued match a false positive: the same content no longer matches; others still do."""
    if not _review_registered():
        pytest.skip("the review part (safeset.review.service) is not present")
    client, token = make_client(tmp_path, db_url, scopes=("match", "curate"), quarantine_key_file=key_file)
    headers = auth(token)
    photo = jpeg(51)
    client.post("/c/banks", json={"name": "PHOTOS"}, headers=headers)
    client.post("/c/bank/PHOTOS/signal", json={"md5": hashlib.md5(photo).hexdigest(), "sha1": MD5[:8] * 5},
                headers=headers)
    upload = {"photo": ("p.jpg", photo, "image/jpeg")}
    assert client.post("/m/lookup", files=upload, headers=headers).json()["md5"]
    queue = client.app.state.ctx.component("review")
    item = queue.claim_next("reviewer-1")
    queue.decide(item.id, "false_positive", "reviewer-1")
    deadline = time.monotonic() + 5
    while client.post("/m/lookup", files=upload, headers=headers).json()["md5"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.post("/m/lookup", files=upload, headers=headers).json()["md5"] == {}
    other = client.get("/m/lookup", params={"signal_type": "sha1", "signal": MD5[:8] * 5}, headers=headers).json()
    assert list(other) == ["PHOTOS"]
