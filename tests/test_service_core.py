"""The service core: health, the hasher, upload limits, fetching, errors, request logs."""

from __future__ import annotations

import hashlib
import http.server
import io
import logging
import threading

import pytest
from PIL import Image

from pdq_hash_util import encode, photo_like, reference_pdq
from service_util import auth, make_client, make_token
from safeset.service import components
from safeset.service.app import create_app, import_modules
from safeset.service.config import ServiceConfig, load_config
from safeset.service.fetch import host_allowed
from safeset.errors import ConfigError


def jpeg(seed: int = 1, size: int = 96) -> bytes:
    return encode(photo_like(seed, size, size), "JPEG", quality=90)


# ------------------------------------------------------------------ health


def test_status_live_needs_no_token_and_status_does(tmp_path, db_url):
    client, token = make_client(tmp_path, db_url, scopes=("hash",))
    assert client.get("/status/live").text == "I-AM-ALIVE"
    missing = client.get("/status")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    answer = client.get("/status", headers=auth(token))  # any valid token, whatever its scopes
    assert (answer.status_code, answer.text) in ((200, "I-AM-ALIVE"), (503, "INDEX-NOT-LOADED"))


class StandInIndex:
    """An "index" component whose readiness the test controls."""

    def __init__(self, ctx):
        self.ready = False
        self.stale = False
        self.started = self.stopped = False
        self.changed: list[str] = []

    def start(self):
        self.started = True

    def stop(self):
        self.stopped = True

    def notify_changed(self, bank):
        self.changed.append(bank)


@pytest.fixture
def stand_in_index():
    """Registers the stand-in as "index" for this test, then puts back the real one (if any)."""
    import_modules()  # registers the real components first, so they cannot replace the stand-in later
    real = dict(components.registered()).get("index")
    components.register("index", StandInIndex)
    yield
    if real is not None:
        components.register("index", real)
    else:
        components.unregister("index")


def test_status_follows_the_index_component(tmp_path, stand_in_index):
    client, token = make_client(tmp_path)
    index = client.app.state.ctx.component("index")
    assert index.started
    assert (client.get("/status", headers=auth(token)).status_code, client.get("/status", headers=auth(token)).text) == (
        503, "INDEX-NOT-LOADED")
    index.ready = True
    assert client.get("/status", headers=auth(token)).text == "I-AM-ALIVE"
    index.stale = True
    assert client.get("/status", headers=auth(token)).text == "INDEX-STALE"
    # curation tells the index which bank changed
    client.post("/c/banks", json={"name": "NOTIFIED"}, headers=auth(token))
    assert index.changed == ["NOTIFIED"]
    client.__exit__(None, None, None)
    assert index.stopped


def test_component_lookup_names_what_exists(tmp_path):
    client, _ = make_client(tmp_path)
    ctx = client.app.state.ctx
    assert ctx.optional_component("no-such") is None and not ctx.has_component("no-such")
    with pytest.raises(LookupError, match="no-such"):
        ctx.component("no-such")


# ------------------------------------------------------------------ hasher


def test_hash_upload_gives_hma_shape_with_reference_pdq_and_digests(tmp_path, db_url):
    client, token = make_client(tmp_path, db_url, scopes=("hash",))
    data = jpeg(3)
    answer = client.post("/h/hash", files={"photo": ("x.jpg", data, "image/jpeg")}, headers=auth(token))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {"pdq", "md5", "sha1", "sha256"}
    assert body["pdq"] == reference_pdq(data)[0]
    assert body["md5"] == hashlib.md5(data).hexdigest()
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    only = client.post("/h/hash?types=pdq", files={"photo": ("x.jpg", data, "image/jpeg")}, headers=auth(token))
    assert only.json() == {"pdq": body["pdq"]}


def test_hash_refuses_unknown_types_and_fields(tmp_path):
    client, token = make_client(tmp_path, scopes=("hash",))
    files = {"photo": ("x.jpg", jpeg(), "image/jpeg")}
    bad_type = client.post("/h/hash?types=video_md5", files=files, headers=auth(token))
    assert bad_type.status_code == 400 and "video_md5" in bad_type.json()["detail"]
    video = client.post("/h/hash", files={"video": ("x.mp4", b"\0" * 10, "video/mp4")}, headers=auth(token))
    assert video.status_code == 400 and "'video'" in video.json()["detail"]
    none = client.post("/h/hash", data={"note": "x"}, headers=auth(token))
    assert none.status_code == 400
    not_multipart = client.post("/h/hash", content=b"abc", headers={**auth(token), "content-type": "image/jpeg"})
    assert not_multipart.status_code == 400


# ------------------------------------------------------------------ upload limits


def test_oversized_upload_is_refused_with_413(tmp_path):
    client, token = make_client(tmp_path, scopes=("hash",), max_upload_bytes=10_000)
    data = encode(photo_like(5, 400, 400), "PNG")
    assert len(data) > 10_000
    answer = client.post("/h/hash", files={"photo": ("x.png", data, "image/png")}, headers=auth(token))
    assert answer.status_code == 413
    assert "10000 bytes" in answer.json()["detail"]


def test_request_body_over_the_limit_is_refused_before_parsing(tmp_path):
    client, token = make_client(tmp_path, scopes=("hash",), max_upload_bytes=1000)
    huge = b"x" * (3 << 20)
    answer = client.post("/h/hash", content=huge, headers={**auth(token), "content-type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 413 and "too large" in answer.json()["detail"]


def test_decompression_bomb_is_refused_from_its_header(tmp_path, db_url):
    client, token = make_client(tmp_path, db_url, scopes=("hash",), max_pixels=1_000_000)
    # A benign, tiny file that declares 4000 x 4000 pixels: one flat colour compresses to almost nothing.
    bomb = encode(Image.new("L", (4000, 4000), 0), "PNG")
    assert len(bomb) < 100_000
    answer = client.post("/h/hash", files={"photo": ("bomb.png", bomb, "image/png")}, headers=auth(token))
    assert answer.status_code == 413
    assert "16000000 pixels" in answer.json()["detail"] and "decompression bomb" in answer.json()["detail"]


def test_disallowed_and_unknown_formats_are_refused_with_400(tmp_path):
    client, token = make_client(tmp_path, scopes=("hash",), allowed_formats=("JPEG",))
    png = encode(photo_like(2, 64, 64), "PNG")
    answer = client.post("/h/hash", files={"photo": ("x.png", png, "image/png")}, headers=auth(token))
    assert answer.status_code == 400 and "PNG is not accepted" in answer.json()["detail"]
    text = client.post("/h/hash", files={"photo": ("x.jpg", b"not an image at all", "image/jpeg")}, headers=auth(token))
    assert text.status_code == 400 and "not an image" in text.json()["detail"]
    truncated = client.post("/h/hash", files={"photo": ("x.jpg", jpeg()[:300], "image/jpeg")}, headers=auth(token))
    assert truncated.status_code == 400


# ------------------------------------------------------------------ fetching


def test_fetching_is_disabled_by_default(tmp_path):
    assert ServiceConfig(store_root=tmp_path).fetch_enabled is False
    client, token = make_client(tmp_path, scopes=("hash",))
    answer = client.get("/h/hash", params={"url": "https://example.com/a.jpg"}, headers=auth(token))
    assert answer.status_code == 403 and "disabled" in answer.json()["detail"]


def test_host_allow_list_rules():
    rules = ("example.com", "*.cdn.example.org", "127.0.0.1:8123")
    assert host_allowed("example.com", None, rules)
    assert host_allowed("EXAMPLE.com.", None, rules)
    assert not host_allowed("a.example.com", None, rules)
    assert not host_allowed("evilexample.com", None, rules)
    assert host_allowed("x.cdn.example.org", None, rules)
    assert not host_allowed("cdn.example.org", None, rules)
    assert not host_allowed("x.evilcdn.example.org", None, rules)
    assert host_allowed("127.0.0.1", 8123, rules)
    assert not host_allowed("127.0.0.1", None, rules)
    assert not host_allowed("example.com", 8080, rules)


@pytest.fixture
def image_server():
    """A loopback HTTP server with one benign image and a redirect to another host."""
    data = jpeg(7)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/image.jpg":
                self.send_response(200)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif self.path == "/elsewhere":
                self.send_response(302)
                self.send_header("location", "http://localhost:%d/image.jpg" % self.server.server_port)
                self.end_headers()
            else:
                self.send_response(404)
                self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_port, data
    server.shutdown()
    server.server_close()


def test_fetch_only_from_allowed_hosts(tmp_path, image_server):
    port, data = image_server
    client, token = make_client(
        tmp_path, scopes=("hash",), fetch_enabled=True, fetch_allowed_hosts=(f"127.0.0.1:{port}",)
    )
    ok = client.get("/h/hash", params={"url": f"http://127.0.0.1:{port}/image.jpg", "types": "md5"}, headers=auth(token))
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"md5": hashlib.md5(data).hexdigest()}
    other_port = client.get("/h/hash", params={"url": "http://127.0.0.1:1/image.jpg"}, headers=auth(token))
    assert other_port.status_code == 403 and "allow-list" in other_port.json()["detail"]
    # a redirect to a host that is not allowed is not followed
    redirected = client.get("/h/hash", params={"url": f"http://127.0.0.1:{port}/elsewhere"}, headers=auth(token))
    assert redirected.status_code == 403 and "localhost" in redirected.json()["detail"]
    missing = client.get("/h/hash", params={"url": f"http://127.0.0.1:{port}/missing"}, headers=auth(token))
    assert missing.status_code == 502
    for bad in ("file:///etc/passwd", "not a url", "http://user:pw@127.0.0.1/x"):
        assert client.get("/h/hash", params={"url": bad}, headers=auth(token)).status_code == 400


# ------------------------------------------------------------------ config, errors, logs


def test_config_file_and_flags(tmp_path):
    path = tmp_path / "service.toml"
    path.write_text(
        '[limits]\nmax_upload_bytes = 1234\nallowed_formats = ["jpeg"]\n[fetch]\nfetch_enabled = true\n'
        'fetch_allowed_hosts = ["Example.com"]\n'
    )
    config = load_config(path, port=5200, store_root=tmp_path / "s")
    assert (config.max_upload_bytes, config.allowed_formats, config.port) == (1234, ("JPEG",), 5200)
    assert config.fetch_allowed_hosts == ("example.com",) and config.store_root == tmp_path / "s"
    path.write_text("no_such_setting = 1\n")
    with pytest.raises(ConfigError, match="no_such_setting"):
        load_config(path)
    path.write_text("max_upload_bytes = [\n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_config(path)


def test_request_log_names_the_token_never_the_secret(tmp_path, caplog):
    client, token = make_client(tmp_path, scopes=("hash",), name="uploader", access_log=True)
    with caplog.at_level(logging.INFO, logger="safeset.service.access"):
        client.post("/h/hash?types=md5", files={"photo": ("x.jpg", jpeg(), "image/jpeg")}, headers=auth(token))
        client.get("/c/banks", headers=auth("sst_wrong"))
    lines = [r.getMessage() for r in caplog.records if r.name == "safeset.service.access"]
    assert any(line.startswith("POST /h/hash 200") and "token=uploader" in line for line in lines), lines
    assert any(line.startswith("GET /c/banks 401") and "token=-" in line for line in lines), lines
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert token not in text and "sst_wrong" not in text and "types=md5" not in text


def test_internal_errors_are_500_json_without_details(tmp_path):
    client, token = make_client(tmp_path, raise_server_exceptions=False)

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    client.app.state.ctx.curator.list_banks = broken
    answer = client.get("/c/banks", headers=auth(token))
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error (logged on the server)"}


def test_create_app_needs_no_running_loop(tmp_path):
    app = create_app(ServiceConfig(store_root=tmp_path / "store", access_log=False))
    assert app.state.ctx.store.root == tmp_path / "store"
    paths = app.openapi()["paths"]
    assert {"/status", "/status/live", "/h/hash", "/c/banks", "/c/bank/{bank_name}/content/{content_id}"} <= set(paths)
    app.state.ctx.close()


def test_tokens_made_for_a_client_are_independent(tmp_path):
    client, admin = make_client(tmp_path)
    hasher = make_token(client, ("hash",), name="second")
    assert client.get("/c/banks", headers=auth(hasher)).status_code == 403
    assert client.get("/c/banks", headers=auth(admin)).status_code == 200


def test_streamed_body_over_the_limit_is_refused(tmp_path):
    client, token = make_client(tmp_path, scopes=("hash",), max_upload_bytes=1000)

    def chunks():  # no Content-Length: the limit is enforced while reading
        boundary_start = b"--b\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"x.jpg\"\r\n\r\n"
        yield boundary_start
        for _ in range(40):
            yield b"x" * 65536
        yield b"\r\n--b--\r\n"

    answer = client.post(
        "/h/hash", content=chunks(), headers={**auth(token), "content-type": "multipart/form-data; boundary=b"}
    )
    assert answer.status_code == 413 and "too large" in answer.json()["detail"]
