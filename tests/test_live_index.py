"""LiveIndex: lookups of every signal type with scan's semantics, live updates, filters, fail-closed loading."""

from __future__ import annotations

import hashlib
import threading
import time

import numpy as np
import pytest

from e2e_util import safeset
from safeset.banks.store import BankStore
from safeset.pdq.hexform import hamming
from safeset.service.errors import InvalidSignal
from safeset.service.live_index import IndexNotReady, LiveIndex
from safeset.service.matching import bank_views

RNG = np.random.default_rng(11)


def random_pdq() -> str:
    """A benign, random 256-bit hash with about half its bits set (what PDQ validation expects)."""
    return RNG.integers(0, 256, 32, dtype=np.uint8).tobytes().hex()


def flip(hex_hash: str, bits: int) -> str:
    """The hash with its first `bits` bits inverted (Hamming distance `bits`)."""
    value = int(hex_hash, 16) ^ (((1 << bits) - 1) << (256 - bits))
    return f"{value:064x}"


def md5_of(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


PDQ_A, PDQ_B = random_pdq(), random_pdq()
IMAGE_MD5 = md5_of("benign image bytes 1")
IMAGE_SHA256 = hashlib.sha256(b"benign image bytes 2").hexdigest()
LISTED_URL = "https://example.com/benign/listed.jpg"
RAW_URL = "HTTPS://Example.com:443/benign/./raw-listed.jpg#top"


@pytest.fixture
def store(tmp_path) -> BankStore:
    store = BankStore(tmp_path / "store", delta_min_entries=0)
    store.add_entries("IMAGES", [("pdq", PDQ_A), ("pdq", PDQ_B), ("md5", IMAGE_MD5), ("sha256", IMAGE_SHA256)])
    store.add_entries(
        "URLS",
        [
            ("url", LISTED_URL),
            ("url_md5", md5_of(RAW_URL)),  # a list that hashed the raw spelling
            ("url_sha1", hashlib.sha1(b"https://example.com/benign/canonical-sha1").hexdigest()),
            ("domain", "listed.example.org"),
            ("term", "placeholder term"),
        ],
    )
    return store


@pytest.fixture
def index(store):
    live = LiveIndex(store, poll_interval_s=0.05)
    live.start()
    yield live
    live.stop()


def found(matches) -> set[tuple]:
    return {(m.bank, m.signal_type, m.entry_id, m.distance) for m in matches}


def test_pdq_lookups_find_hashes_within_the_threshold_with_their_distance(index, store):
    near = flip(PDQ_A, 12)
    matches = index.lookup("pdq", near)
    entry = store.open_version("IMAGES").entry_id("pdq", PDQ_A)
    assert found(matches) == {("IMAGES", "pdq", entry, 12)}
    assert matches[0].value == near and matches[0].bank_version == 1
    assert index.lookup("pdq", flip(PDQ_A, 32)) == []
    assert hamming(flip(PDQ_A, 31), PDQ_A) == 31 and len(index.lookup("pdq", flip(PDQ_A, 31))) == 1


def test_exact_digests_match_only_their_own_type(index, store):
    version = store.open_version("IMAGES")
    assert found(index.lookup("md5", IMAGE_MD5.upper())) == {("IMAGES", "md5", version.entry_id("md5", IMAGE_MD5), None)}
    assert found(index.lookup("sha256", IMAGE_SHA256)) == {("IMAGES", "sha256", version.entry_id("sha256", IMAGE_SHA256), None)}
    assert index.lookup("url_md5", IMAGE_MD5) == []  # same hex, other type


def test_url_lookups_match_as_a_scanned_row_does(index, store):
    urls = store.open_version("URLS")
    # canonical form against url entries
    hits = index.lookup("url", "https://EXAMPLE.com:443/benign/listed.jpg#fragment")
    assert found(hits) == {("URLS", "url", urls.entry_id("url", LISTED_URL), None)}
    # the raw spelling's digest against a list of raw-URL digests
    hits = index.lookup("url", RAW_URL)
    assert found(hits) == {("URLS", "url_md5", urls.entry_id("url_md5", md5_of(RAW_URL)), None)}
    # the canonical spelling's digest
    hits = index.lookup("url", "https://example.com/benign/x/../canonical-sha1")
    assert [m.signal_type for m in hits] == ["url_sha1"]
    # host and parent domains against domain entries, never a look-alike
    hits = index.lookup("url", "http://cdn.listed.example.org/a.jpg")
    assert [(m.signal_type, m.value) for m in hits] == [("domain", "listed.example.org")]
    assert index.lookup("url", "http://notlisted.example.org/a.jpg") == []


def test_digests_domains_and_terms_given_directly(index):
    assert [m.signal_type for m in index.lookup("url_md5", md5_of(RAW_URL))] == ["url_md5"]
    assert [m.value for m in index.lookup("domain", "a.b.listed.example.org")] == ["listed.example.org"]
    assert [m.value for m in index.lookup("term", "A caption with the PLACEHOLDER term in it")] == ["placeholder term"]
    assert index.lookup("term", "placeholder terminal") == []


def test_banks_filter_and_invalid_signals(index):
    assert index.lookup("md5", IMAGE_MD5, banks=["URLS"]) == []
    assert len(index.lookup("md5", IMAGE_MD5, banks=["images"])) == 1
    with pytest.raises(InvalidSignal, match="invalid signal"):
        index.lookup("pdq", "not a hash")
    with pytest.raises(InvalidSignal, match="no such signal type"):
        index.lookup("video_md5", IMAGE_MD5)
    with pytest.raises(InvalidSignal, match="invalid signal"):
        index.lookup("url", "no scheme here")


def test_an_addition_through_the_store_is_matchable_without_notice(index, store):
    new_hash = random_pdq()
    assert index.lookup("pdq", new_hash) == []
    result = store.add_entries("IMAGES", [("pdq", new_hash)])
    deadline = time.monotonic() + 5
    while not index.lookup("pdq", new_hash) and time.monotonic() < deadline:
        time.sleep(0.02)
    matches = index.lookup("pdq", new_hash)
    assert [(m.bank_version, m.distance) for m in matches] == [(result.version, 0)]
    view = index.describe()["banks"]["IMAGES"]
    assert view["version"] == result.version and view["layers"] == 2, "an append is a small layer, not a rebuild"


def test_an_import_by_another_process_is_matchable_within_five_seconds(index, store, tmp_path):
    new_md5 = md5_of("imported by the CLI")
    path = tmp_path / "more.txt"
    path.write_text(new_md5 + "\n")
    safeset("bank", "import", "FROM_CLI", path, "--type", "md5", "--store", store.root)
    started = time.monotonic()
    while not index.lookup("md5", new_md5) and time.monotonic() - started < 5:
        time.sleep(0.02)
    assert [m.bank for m in index.lookup("md5", new_md5)] == ["FROM_CLI"]


def test_lookups_never_wait_for_a_load(index, store, monkeypatch):
    """While a changed bank loads, lookups answer from the version already loaded."""
    loading, release = threading.Event(), threading.Event()
    real_load = bank_views.BankView.load

    def slow_load(*args, **kwargs):
        loading.set()
        release.wait(10)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(bank_views.BankView, "load", staticmethod(slow_load))
    new_md5 = md5_of("added during a slow load")
    store.add_entries("IMAGES", [("md5", new_md5)])
    index.notify_changed("IMAGES")
    assert loading.wait(5)
    started = time.monotonic()
    assert len(index.lookup("md5", IMAGE_MD5)) == 1 and index.lookup("md5", new_md5) == []
    assert time.monotonic() - started < 1.0
    release.set()
    assert index.wait_until_current(5)
    assert len(index.lookup("md5", new_md5)) == 1


def test_notify_then_wait_gives_read_your_writes(index, store):
    new_md5 = md5_of("curated")
    store.add_entries("IMAGES", [("md5", new_md5)])
    index.notify_changed("IMAGES")
    assert index.wait_until_current(5)
    assert len(index.lookup("md5", new_md5)) == 1


def test_deleted_banks_stop_matching(index, store):
    store.delete("URLS")
    assert index.wait_until_current(5)
    assert index.lookup("url", LISTED_URL) == [] and index.bank_names() == ["IMAGES"]


def test_the_negative_bank_suppresses_and_is_never_matched_against(store):
    from safeset.review.negative import NEGATIVE_BANK, NegativeValues

    store.add_entries(NEGATIVE_BANK, [("md5", IMAGE_MD5)])
    live = LiveIndex(store, negative=NegativeValues(store, refresh_seconds=0))
    live.start()
    try:
        assert live.lookup("md5", IMAGE_MD5) == []
        assert NEGATIVE_BANK not in live.bank_names()
        assert len(live.lookup("sha256", IMAGE_SHA256)) == 1
    finally:
        live.stop()


class Settings:
    """A stand-in for the curator's settings snapshot."""

    def __init__(self, ratios=None, disabled=None):
        self.ratios, self.disabled = ratios or {}, disabled or set()

    def enabled_ratio(self, bank):
        return self.ratios.get(bank, 1.0)

    def is_disabled(self, bank, entry_id):
        return (bank, entry_id) in self.disabled


def test_disabled_content_and_bank_ratios(store):
    entry = store.open_version("IMAGES").entry_id("md5", IMAGE_MD5)
    settings = Settings(ratios={"URLS": 0.0, "IMAGES": 0.5}, disabled={("IMAGES", entry)})
    live = LiveIndex(store, settings=lambda: settings)
    live.start()
    try:
        assert live.lookup("md5", IMAGE_MD5) == []
        assert live.lookup("url", LISTED_URL, seed="any") == []  # ratio 0: never
        outcomes = {bool(live.lookup("sha256", IMAGE_SHA256, seed=str(seed))) for seed in range(40)}
        assert outcomes == {True, False}  # ratio 0.5: a coin flip per lookup ...
        assert len({bool(live.lookup("sha256", IMAGE_SHA256, seed="s1")) for _ in range(5)}) == 1  # ... fixed by the seed
    finally:
        live.stop()


def test_not_ready_until_every_bank_loads(store):
    manifest = store.open_version("URLS").path / "manifest.json"
    good = manifest.read_text()
    manifest.write_text("{ damaged")
    live = LiveIndex(store, poll_interval_s=0.05)
    live.start()
    try:
        assert not live.ready()
        with pytest.raises(IndexNotReady):
            live.lookup("md5", IMAGE_MD5)
        assert "URLS" in live.describe()["failures"]
        manifest.write_text(good)
        deadline = time.monotonic() + 5
        while not live.ready() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert live.ready() and len(live.lookup("url", LISTED_URL)) == 1
    finally:
        live.stop()


def test_index_status_counts_each_type(index):
    status = index.index_status()
    assert status["pdq"]["size"] == 2 and status["pdq"]["present"] and status["pdq"]["built_to"] > 0
    assert status["url"]["size"] == 1 and status["sha1"] == {"present": False, "built_to": -1, "size": 0}
    assert set(status) >= {"pdq", "md5", "sha1", "sha256", "url", "url_md5", "url_sha1", "url_sha256", "domain", "term"}


def test_an_empty_store_is_ready_and_matches_nothing(tmp_path):
    live = LiveIndex(BankStore(tmp_path / "nothing-here"), poll_interval_s=0.05)
    live.start()
    try:
        assert live.ready() and live.lookup("md5", IMAGE_MD5) == []
        BankStore(tmp_path / "nothing-here").add_entries("LATER", [("md5", IMAGE_MD5)])
        live.notify_changed("LATER")
        assert live.wait_until_current(5) and len(live.lookup("md5", IMAGE_MD5)) == 1
    finally:
        live.stop()
