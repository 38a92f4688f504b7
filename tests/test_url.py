"""URL canonical form: the documented examples, the C/Python equivalence, and its invariants."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from safeset import _native
from safeset.signals.url import (
    canonical_changes,
    _remove_dot_segments,
    canonical_url,
    canonical_url_array,
    domain_suffixes,
    host_array,
    host_of,
)

# (raw, canonical): every rule of docs/url-canonical-form.md, and the odd corners.
EXPECTED = [
    # case, default ports, empty path
    ("HTTP://Example.COM", "http://example.com/"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("ftp://example.com:21/a", "ftp://example.com/a"),
    ("http://example.com:443/a", "http://example.com:443/a"),
    ("https://example.com:80/a", "https://example.com:80/a"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),
    ("http://example.com:0080/a", "http://example.com/a"),
    ("http://example.com:/a", "http://example.com/a"),
    ("http://example.com:80x/a", "http://example.com:80x/a"),
    ("gopher://example.com:80/a", "gopher://example.com:80/a"),
    ("Svn+SSH://Example.com/Repo", "svn+ssh://example.com/Repo"),
    # path case is kept, dot-segments resolved
    ("http://example.com/A/B/./c/../D", "http://example.com/A/B/D"),
    ("http://example.com/a/b/c/./../../g", "http://example.com/a/g"),
    ("http://example.com/..", "http://example.com/"),
    ("http://example.com/../../x", "http://example.com/x"),
    ("http://example.com/a/.", "http://example.com/a/"),
    ("http://example.com/a/..", "http://example.com/"),
    ("http://example.com/a//../b", "http://example.com/a/b"),
    ("http://example.com/.hidden/..x/...", "http://example.com/.hidden/..x/..."),
    ("http://example.com/%2e%2E/a/%2e/b", "http://example.com/a/b"),
    # percent-escapes
    ("http://example.com/%7e%7Euser/%41%5a", "http://example.com/~~user/AZ"),
    ("http://example.com/a%2fb%3f?q=%2f%3d%e2%82%ac", "http://example.com/a%2Fb%3F?q=%2F%3D%E2%82%AC"),
    ("http://example.com/%zz/%4", "http://example.com/%25zz/%254"),
    ("http://example.com/100%", "http://example.com/100%25"),
    ("http://example.com/%%41", "http://example.com/%25A"),
    ("http://example.com/%4%41", "http://example.com/%254A"),
    ("http://example.com/%25", "http://example.com/%25"),
    # other characters are left alone
    ("http://example.com/a b/ü?x=ü y", "http://example.com/a b/ü?x=ü y"),
    ("http://example.com/a\\b", "http://example.com/a\\b"),
    # query kept verbatim, fragment dropped
    ("http://example.com?b=2&a=1", "http://example.com/?b=2&a=1"),
    ("http://example.com/p?", "http://example.com/p?"),
    ("http://example.com/p?a/../b#x?y", "http://example.com/p?a/../b"),
    ("http://example.com#top", "http://example.com/"),
    ("http://example.com/p#", "http://example.com/p"),
    ("http://example.com/p #frag", "http://example.com/p"),
    # userinfo kept (case too), host lower-cased
    ("http://User:PW@Example.com:80/", "http://User:PW@example.com/"),
    ("http://a@b@Example.com/", "http://a@b@example.com/"),
    ("http://us%65r@example.com/", "http://user@example.com/"),
    ("http://@example.com/", "http://@example.com/"),
    # host escapes
    ("http://%45xample.com/", "http://example.com/"),
    ("http://ex%2Dample.com/", "http://ex-ample.com/"),
    ("http://exa%c3%bcmple.com/", "http://exa%C3%BCmple.com/"),
    # trailing dots
    ("http://example.com./a", "http://example.com/a"),
    ("http://example.com...:80/", "http://example.com/"),
    ("http://./", "http:///"),
    # IPv6 and odd authorities
    ("http://[::1]:80/", "http://[::1]/"),
    ("http://[::1]/", "http://[::1]/"),
    ("http://[2001:DB8::A]:8080/x", "http://[2001:db8::a]:8080/x"),
    ("http://[::1]x:80/", "http://[::1]x:80/"),
    ("http://[::1:80/", "http://[::1:80/"),
    ("http://a:b:80/", "http://a:b:80/"),
    # IDN hosts
    ("http://Bücher.example/ü", "http://xn--bcher-kva.example/ü"),
    ("http://BÜCHER.example./", "http://xn--bcher-kva.example/"),
    ("http://例え.テスト/", "http://xn--r8jz45g.xn--zckzah/"),
    ("http://ｅｘａｍｐｌｅ.com/", "http://example.com/"),
    ("http://☃.example/", "http://xn--n3h.example/"),
    ("http://my_host.bü.example/", "http://my_host.xn--b-eha.example/"),
    ("http://x＠y.example/", "http://x＠y.example/"),
    ("http://a..ü/", "http://a..ü/"),
    ("http://ÜSER@bücher.example:80/", "http://ÜSER@xn--bcher-kva.example/"),
    ("http://bücher.example../", "http://xn--bcher-kva.example/"),
    ("http://ü。example。/", "http://xn--tda.example/"),
    ("http://[FE80::1%25Eth0]/", "http://[fe80::1%25eth0]/"),
    # scheme only, empty, no scheme, whitespace
    ("http://", "http:///"),
    ("http://?", "http:///?"),
    ("", ""),
    ("   ", ""),
    ("  \t http://Example.com/a \r\n", "http://example.com/a"),
    ("example.com/A/../b", "example.com/A/../b"),
    ("  www.Example.com  ", "www.Example.com"),
    ("mailto:User@Example.com", "mailto:User@Example.com"),
    ("http:/example.com", "http:/example.com"),
    ("1http://example.com", "1http://example.com"),
    ("\u00a0http://Example.com", "\u00a0http://Example.com"),
]


@pytest.mark.parametrize(("raw", "expected"), EXPECTED)
def test_documented_examples(raw, expected):
    assert canonical_url(raw) == expected


def test_vector_form_matches_reference_on_examples():
    raws = [raw for raw, _ in EXPECTED]
    canonical, changed = canonical_url_array(pa.array(raws, pa.string()))
    assert canonical.to_pylist() == [expected for _, expected in EXPECTED]
    assert changed.tolist() == [raw != expected for raw, expected in EXPECTED]


def test_examples_in_the_spec_hold():
    """Every row of the examples table in docs/url-canonical-form.md."""
    spec = Path(__file__).resolve().parents[1] / "docs" / "url-canonical-form.md"
    rows = re.findall(r"^\| `(.*)` \| (`.*`|unchanged.*) \|$", spec.read_text(encoding="utf-8"), re.M)
    assert len(rows) > 20
    for raw, expected in rows:
        raw = raw.replace("\\t", "\t").replace("\\r", "\r").replace("\\n", "\n")
        expected = raw if expected.startswith("unchanged") else expected.split("`")[1]
        assert canonical_url(raw) == expected, raw


def test_canonical_form_is_stable():
    for _, expected in EXPECTED:
        assert canonical_url(expected) == expected


# --------------------------------------------------------------------------- C == Python

URL_ALPHABET = st.sampled_from(
    list("aAzZ09.-_~%/?#@:[]+ ")
    + ["%2e", "%2E", "%7e", "%41", "%2f", "%25", "%zz", "%4", "%c3%bc", "..", "./", "../", "//"]
    + ["\t", "\n", "\x00", "\x1f", "\x7f", "ü", "Ü", "例", "。", "＠", "ｅ", "\u212a", "İ", "\u00a0"]
)
SCHEMES = st.sampled_from(["http", "HTTP", "https", "ftp", "Ftp", "s3", "svn+ssh", "h.t-p", "1x", ""])
HOSTS = st.sampled_from(
    ["example.com", "Example.COM", "example.com.", "a.b.example.org", "[::1]", "[2001:DB8::1]", "[::1",
     "bücher.example", "BÜCHER.example", "例え.テスト", "ｅｘａｍｐｌｅ.com", "%41b.example", "", ".", "a..b",
     "xn--bcher-kva.example", "x_y.example", "ü。example"]
)
PORTS = st.sampled_from(["", ":", ":80", ":443", ":21", ":0080", ":8080", ":x", ":80:80"])


def _pieces():
    return st.lists(URL_ALPHABET, max_size=12).map("".join)


@st.composite
def url_like(draw):
    """Mostly URL-shaped strings, with junk spliced into every part."""
    userinfo = draw(st.sampled_from(["", "user@", "User:Pw@", "a@b@", "%75ser@"]))
    return (
        draw(st.sampled_from(["", " ", "\t", "\n "]))
        + draw(SCHEMES)
        + draw(st.sampled_from(["://", "://", ":/", ":"]))
        + userinfo
        + draw(HOSTS)
        + draw(_pieces())
        + draw(PORTS)
        + draw(st.sampled_from(["", "/", "/a/b", "/A/./B/../c", "/%2e%2e/x", "?"]))
        + draw(_pieces())
        + draw(st.sampled_from(["", "?q=1", "?%7e=%7E", "#frag", "?a#b", " #x"]))
        + draw(_pieces())
        + draw(st.sampled_from(["", " ", "\r\n"]))
    )


ANY_TEXT = st.one_of(url_like(), _pieces(), st.text(max_size=40))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(ANY_TEXT, st.none()), max_size=30), st.integers(0, 5), st.booleans(),
       st.sampled_from([0, 2]))
def test_vector_form_equals_reference(values, cut, large, simd_level):
    """The C code (portable, and AVX-512 where the CPU has it) gives the reference's answers."""
    values = [v.encode("utf-8", "replace").decode("utf-8") if v is not None else None for v in values]
    array = pa.array(values, pa.large_string() if large else pa.string())
    array = array.slice(min(cut, len(array)))  # non-zero offsets
    _native.limit_simd(simd_level)
    try:
        canonical, changed = canonical_url_array(array)
    finally:
        _native.use_accelerated(True)
    expected = [canonical_url(v) if v is not None else None for v in array.to_pylist()]
    assert canonical.to_pylist() == expected
    assert changed.tolist() == [
        v is not None and c != v for v, c in zip(array.to_pylist(), expected)
    ]
    assert len(canonical) == len(array) and canonical.null_count == array.null_count


@settings(max_examples=400, deadline=None)
@given(ANY_TEXT)
def test_canonical_url_is_idempotent(raw):
    once = canonical_url(raw)
    assert canonical_url(once) == once


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_canonical_url_never_raises(raw):
    assert isinstance(canonical_url(raw), str)
    assert isinstance(canonical_url("http://" + raw), str)


def test_lone_surrogates_do_not_raise():
    assert canonical_url("http://\ud800.example/\udfff") == "http://\ud800.example/\udfff"


def test_invalid_utf8_in_a_string_column_does_not_raise():
    values = [b"HTTP://\xc3X.example/", b"http://b\xfcx.example/\xff", b"http://A.example/\xff"]
    offsets = np.cumsum([0] + [len(v) for v in values]).astype(np.int32)
    array = pa.Array.from_buffers(
        pa.string(), 3, [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(values))]
    )
    canonical, changed = canonical_url_array(array)
    assert canonical.view(pa.binary()).to_pylist() == [
        b"http://\xc3x.example/",
        b"http://b\xfcx.example/\xff",
        b"http://a.example/\xff",
    ]
    assert changed.tolist() == [True, False, True]


def test_large_batch_with_mixed_rows():
    """Thousands of rows in one call: buffer growth, fallback rows spliced in the right places."""
    base = [raw for raw, _ in EXPECTED]
    values = [base[i % len(base)] + ("/x" * (i % 7)) for i in range(5000)]
    values[17] = "http://" + "ü" * 3000 + ".example/" + "%zz" * 5000  # long, grows 3x, via Python
    values[4999] = None
    canonical, changed = canonical_url_array(pa.array(values, pa.string()))
    expected = [canonical_url(v) if v is not None else None for v in values]
    assert canonical.to_pylist() == expected
    assert changed.sum() == sum(v is not None and v != e for v, e in zip(values, expected))


def test_unchanged_batch_is_returned_without_copy():
    array = pa.array(["http://example.com/a", None, "https://example.org/b?q=1", "not a url"])
    canonical, changed = canonical_url_array(array)
    assert canonical is array
    assert not changed.any()


def test_chunked_array():
    chunked = pa.chunked_array([["HTTP://A.example"], [], ["http://b.example/./x", None]])
    canonical, changed = canonical_url_array(chunked)
    assert canonical.to_pylist() == ["http://a.example/", "http://b.example/x", None]
    assert changed.tolist() == [True, True, False]


def test_rejects_non_string_arrays():
    with pytest.raises(TypeError):
        canonical_url_array(pa.array([1, 2]))


# --------------------------------------------------------------------------- dot segments


def _rfc3986_remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 as written (buffers and rules A-E), as the oracle."""
    source, output = path, ""
    while source:
        if source.startswith("../"):
            source = source[3:]
        elif source.startswith("./"):
            source = source[2:]
        elif source.startswith("/./"):
            source = source[2:]
        elif source == "/.":
            source = "/"
        elif source.startswith("/../"):
            source = source[3:]
            output = output[: max(output.rfind("/"), 0)]
        elif source == "/..":
            source = "/"
            output = output[: max(output.rfind("/"), 0)]
        elif source in (".", ".."):
            source = ""
        else:
            start = 1 if source.startswith("/") else 0
            end = source.find("/", start)
            end = len(source) if end < 0 else end
            output += source[:end]
            source = source[end:]
    return output


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(["/", ".", "..", "a", "b", "/.", "/..", "//"]), max_size=12))
def test_dot_segments_follow_rfc_3986(parts):
    path = "/" + "".join(parts)
    assert _remove_dot_segments(path) == (_rfc3986_remove_dot_segments(path) or "/")


# --------------------------------------------------------------------------- hosts and domains


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("http://Example.com:8080/a", "example.com"),
        ("https://user:pw@www.example.org/", "www.example.org"),
        ("http://[2001:db8::1]:80/x", "2001:db8::1"),
        ("http://bücher.example/", "xn--bcher-kva.example"),
        ("http://example.com./", "example.com"),
        ("http:///path", None),
        ("http://user@/", None),
        ("example.com/path", None),
        ("", None),
    ],
)
def test_host_of(url, host):
    assert host_of(url) == host


def test_host_array_matches_host_of():
    raws = [raw for raw, _ in EXPECTED] + [None]
    canonical, _ = canonical_url_array(pa.array(raws, pa.large_string()).slice(1))
    hosts = host_array(canonical)
    assert hosts.type == pa.string()
    assert hosts.to_pylist() == [host_of(raw) if raw is not None else None for raw in raws[1:]]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(url_like(), st.none()), max_size=20))
def test_host_array_equals_host_of(values):
    values = [v.encode("utf-8", "replace").decode("utf-8") if v is not None else None for v in values]
    canonical, _ = canonical_url_array(pa.array(values, pa.string()))
    assert host_array(canonical).to_pylist() == [host_of(v) if v is not None else None for v in values]


def test_domain_suffixes():
    assert domain_suffixes("a.b.example.com") == ["a.b.example.com", "b.example.com", "example.com", "com"]
    assert domain_suffixes("Example.COM.") == ["example.com", "com"]
    assert domain_suffixes("localhost") == ["localhost"]
    assert domain_suffixes("") == []
    assert domain_suffixes("192.0.2.1") == ["192.0.2.1"]
    assert domain_suffixes("2001:db8::1") == ["2001:db8::1"]
    assert "example.com" not in domain_suffixes("notexample.com")


@pytest.mark.parametrize("simd_level", [0, 2])
def test_plainly_canonical_shortcut_agrees_around_128_bytes(simd_level):
    """URLs just under, at and over the 128 bytes the AVX-512 shortcut handles, with a change near each edge."""
    values = []
    for total in (62, 63, 64, 65, 66, 126, 127, 128, 129, 130):
        for tail in ("", "/", "/.", "/./x", "?a#", "%41", "X", ":80/"):
            head = "http://example.com/"
            values.append(head + "p" * max(0, total - len(head) - len(tail)) + tail)
            values.append("http://Example.com:80" + "/" + "q" * max(0, total - 22))
    _native.limit_simd(simd_level)
    try:
        canonical, changed = canonical_url_array(pa.array(values))
    finally:
        _native.use_accelerated(True)
    expected = [canonical_url(v) for v in values]
    assert canonical.to_pylist() == expected
    assert changed.tolist() == [v != e for v, e in zip(values, expected)]


def test_canonical_changes_lists_only_changed_rows():
    values = ["http://example.com/a", "HTTP://Example.com/b", None, "http://b\u00fccher.example/x", "http://a.example"]
    rows, text = canonical_changes(pa.array(values))
    assert rows.tolist() == [1, 3, 4]
    assert text.to_pylist() == ["http://example.com/b", "http://xn--bcher-kva.example/x", "http://a.example/"]
