"""Batch kernels (safeset._native) against hashlib and bytes.fromhex."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset import _native
from safeset.signals.kernels import (
    DIGEST_SIZES,
    digest_array,
    digest_prefix64,
    hex_decode_array,
    hex_encode_array,
    native_features,
)

ALGOS = sorted(DIGEST_SIZES)
BINARY_TYPES = [pa.binary(), pa.large_binary()]
TEXT_TYPES = [pa.string(), pa.large_string()]


SIMD_LEVELS = {"avx512": 2, "avx2": 1, "portable": 0}


@pytest.fixture(params=sorted(SIMD_LEVELS))
def implementation(request):
    """Run digest tests through each SIMD level (AVX-512, AVX2/SHA extensions) and the portable C.

    A level the CPU lacks falls back to the next one down, so the test still checks real results."""
    _native.limit_simd(SIMD_LEVELS[request.param])
    yield request.param
    _native.use_accelerated(True)


def expected_digests(values, algo):
    size = DIGEST_SIZES[algo]
    rows = [hashlib.new(algo, v).digest() if v is not None else bytes(size) for v in values]
    return np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(values), size)


def random_bytes(rng: random.Random, n: int) -> bytes:
    return rng.getrandbits(8 * n).to_bytes(n, "little") if n else b""


# --------------------------------------------------------------------------- digests


def test_known_answers():
    values = pa.array([b"", b"abc"], pa.binary())
    assert digest_array(values, "md5")[1].tobytes().hex() == "900150983cd24fb0d6963f7d28e17f72"
    assert digest_array(values, "sha1")[1].tobytes().hex() == "a9993e364706816aba3e25717850c26c9cd0d89d"
    assert (
        digest_array(values, "sha256")[0].tobytes().hex()
        == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("value_type", BINARY_TYPES)
def test_every_length_up_to_200(implementation, algo, value_type):
    """Covers the padding edges: 55/56/57, 63/64/65, 119/120, 127/128 bytes."""
    rng = random.Random(7)
    values = [random_bytes(rng, n) for n in range(201)]
    digests = digest_array(pa.array(values, value_type), algo)
    assert digests.dtype == np.uint8 and digests.shape == (201, DIGEST_SIZES[algo])
    np.testing.assert_array_equal(digests, expected_digests(values, algo))


@pytest.mark.parametrize("algo", ALGOS)
def test_long_values_among_short_ones(implementation, algo):
    rng = random.Random(11)
    values = [random_bytes(rng, rng.randrange(0, 300)) for _ in range(40)]
    values[3] = random_bytes(rng, 1_500_000)
    values[20] = random_bytes(rng, 1 << 20)
    values[39] = random_bytes(rng, 70_001)
    for value_type in BINARY_TYPES:
        np.testing.assert_array_equal(
            digest_array(pa.array(values, value_type), algo), expected_digests(values, algo)
        )


@pytest.mark.parametrize("algo", ALGOS)
def test_many_rows_of_mixed_lengths(implementation, algo):
    """Enough rows to refill every SIMD lane many times, lanes finishing at different blocks."""
    rng = random.Random(3)
    values = [random_bytes(rng, rng.choice([0, 1, 55, 56, 64, rng.randrange(300)])) for _ in range(3000)]
    for k in range(0, 3000, 701):
        values[k] = random_bytes(rng, 20_000 + k)
    np.testing.assert_array_equal(digest_array(pa.array(values), algo), expected_digests(values, algo))


@pytest.mark.parametrize("algo", ALGOS)
@pytest.mark.parametrize("value_type", TEXT_TYPES + BINARY_TYPES)
def test_slices_and_nulls(implementation, algo, value_type):
    text = ["", "a", None, "https://example.com/ü", None, "x" * 64, "tail", None]
    values = [t.encode() if t is not None else None for t in text]
    array = pa.array(values if value_type in BINARY_TYPES else text, value_type).slice(1, 6)
    digests = digest_array(array, algo)
    np.testing.assert_array_equal(digests, expected_digests(values[1:7], algo))
    assert not digests[1].any() and not digests[3].any()


@pytest.mark.parametrize("algo", ALGOS)
def test_string_columns_digest_their_utf8_bytes(algo):
    text = ["https://example.com/a", "https://bücher.example/ü", "例え"]
    np.testing.assert_array_equal(
        digest_array(pa.array(text), algo), expected_digests([t.encode() for t in text], algo)
    )


def test_rows_subset(implementation):
    values = [b"zero", b"one", None, b"three", b"four"]
    array = pa.array(values).slice(0)
    digests = digest_array(array, "sha256", rows=np.array([4, 0, 2, 4]))
    np.testing.assert_array_equal(
        digests, expected_digests([values[4], values[0], None, values[4]], "sha256")
    )
    assert digest_array(array, "md5", rows=np.array([], dtype=np.int64)).shape == (0, 16)
    sliced = array.slice(2)
    np.testing.assert_array_equal(
        digest_array(sliced, "md5", rows=[1, 0]), expected_digests([b"three", None], "md5")
    )


def test_chunked_arrays():
    chunked = pa.chunked_array([[b"a", None], [], [b"c"]])
    np.testing.assert_array_equal(
        digest_array(chunked, "md5"), expected_digests([b"a", None, b"c"], "md5")
    )
    np.testing.assert_array_equal(
        digest_array(chunked, "sha1", rows=[2, 0]), expected_digests([b"c", b"a"], "sha1")
    )
    np.testing.assert_array_equal(
        digest_array(pa.chunked_array([[b"x"]]), "md5", rows=[0]), expected_digests([b"x"], "md5")
    )
    assert digest_array(pa.chunked_array([], pa.binary()), "sha256").shape == (0, 32)
    decoded, valid = hex_decode_array(pa.chunked_array([["00" * 4], [None, "ff" * 4]]), 4)
    assert valid.tolist() == [True, False, True]
    assert bytes(decoded[2]) == b"\xff" * 4
    decoded, valid = hex_decode_array(pa.chunked_array([], pa.string()), 4)
    assert decoded.shape == (0, 4) and valid.shape == (0,)


def test_empty_arrays():
    assert digest_array(pa.array([], pa.binary()), "sha1").shape == (0, 20)
    assert digest_array(pa.array(["", ""]), "md5").shape == (2, 16)


def test_bad_arguments():
    with pytest.raises(ValueError):
        digest_array(pa.array([b"a"]), "crc32")
    with pytest.raises(TypeError):
        digest_array(pa.array([1, 2]), "md5")
    with pytest.raises(IndexError):
        digest_array(pa.array([b"a", b"b"]), "md5", rows=np.array([2]))
    with pytest.raises(IndexError):
        digest_array(pa.array([b"a", b"b"]), "md5", rows=np.array([-1]))


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(st.binary(max_size=300), st.none()), max_size=40),
    st.integers(0, 5),
    st.sampled_from(ALGOS),
    st.sampled_from(sorted(SIMD_LEVELS.values())),
)
def test_digests_match_hashlib(values, cut, algo, simd_level):
    _native.limit_simd(simd_level)
    try:
        array = pa.array(values, pa.binary()).slice(min(cut, len(values)))
        np.testing.assert_array_equal(
            digest_array(array, algo), expected_digests(values[min(cut, len(values)) :], algo)
        )
    finally:
        _native.use_accelerated(True)


def test_features_are_reported():
    features = native_features()
    assert set(features) == {"avx2", "avx512", "sha_ni", "accelerated", "simd_limit"}
    assert features["simd_limit"] == 2 and features["accelerated"] is True
    assert not features["avx512"] or features["avx2"]  # AVX-512 is only used where AVX2 is too


def test_simd_limit_is_checked():
    with pytest.raises(ValueError):
        _native.limit_simd(3)


@pytest.mark.parametrize("count", [1, 15, 16, 17, 33, 1000])
def test_md5_lane_counts_around_sixteen(implementation, count):
    """Jobs fewer than, equal to and just over the 16 AVX-512 lanes; lengths on both sides of 55/56/64."""
    rng = random.Random(count)
    values = [random_bytes(rng, rng.choice([0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 200, 1000])) for _ in range(count)]
    np.testing.assert_array_equal(digest_array(pa.array(values, pa.binary()), "md5"), expected_digests(values, "md5"))


# --------------------------------------------------------------------------- hex


def test_hex_decode_valid_text_in_any_case():
    rng = random.Random(5)
    raw = [random_bytes(rng, 16) for _ in range(50)]
    text = [r.hex() if i % 3 else r.hex().upper() for i, r in enumerate(raw)]
    text[7] = raw[7].hex()[:10].upper() + raw[7].hex()[10:]
    for value_type in TEXT_TYPES + BINARY_TYPES:
        decoded, valid = hex_decode_array(pa.array(text, value_type), 16)
        assert valid.all()
        assert [bytes(row) for row in decoded] == raw


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0" * 31,
        "0" * 33,
        "g" + "0" * 31,
        "0" * 31 + "G",
        " " + "0" * 31,
        "0" * 31 + "\n",
        "0x" + "0" * 30,
        "0" * 15 + "-" + "0" * 16,
        "０" + "0" * 30,
        "0" * 15 + "é" + "0" * 15,
    ],
)
def test_hex_decode_rejects_malformed(bad):
    decoded, valid = hex_decode_array(pa.array(["ab" * 16, bad, None]), 16)
    assert valid.tolist() == [True, False, False]
    assert not decoded[1:].any()
    assert bytes(decoded[0]) == b"\xab" * 16


def test_hex_decode_slices_and_large_offsets():
    values = [None, "00" * 20, "zz" * 20, "Ff" * 20, None, "12" * 20]
    decoded, valid = hex_decode_array(pa.array(values, pa.large_string()).slice(1, 4), 20)
    assert valid.tolist() == [True, False, True, False]
    assert bytes(decoded[2]) == b"\xff" * 20


def test_hex_decode_accepts_raw_digests_in_binary_columns():
    raw = bytes(range(32))
    values = [raw, raw.hex().encode(), raw[:31], None, b"x" * 64]
    decoded, valid = hex_decode_array(pa.array(values, pa.binary()), 32)
    assert valid.tolist() == [True, True, False, False, False]
    assert bytes(decoded[0]) == raw and bytes(decoded[1]) == raw
    # ... but text columns only take hex
    _, valid_text = hex_decode_array(pa.array(["a" * 32]), 32)
    assert valid_text.tolist() == [False]


def test_hex_decode_fixed_size_binary():
    raw = [bytes([i]) * 16 for i in range(5)]
    array = pa.array(raw[:2] + [None] + raw[3:], pa.binary(16)).slice(1)
    decoded, valid = hex_decode_array(array, 16)
    assert valid.tolist() == [True, False, True, True]
    assert [bytes(r) for r in decoded] == [raw[1], bytes(16), raw[3], raw[4]]
    as_text = pa.array([r.hex().encode() for r in raw], pa.binary(32))
    decoded, valid = hex_decode_array(as_text, 16)
    assert valid.all() and [bytes(r) for r in decoded] == raw
    _, valid = hex_decode_array(pa.array(raw, pa.binary(16)), 20)
    assert not valid.any()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text("0123456789abcdefABCDEFgx ", min_size=6, max_size=10), st.none()), max_size=20))
def test_hex_decode_matches_fromhex(values):
    decoded, valid = hex_decode_array(pa.array(values, pa.string()), 4)
    for value, row, ok in zip(values, decoded, valid):
        good = value is not None and len(value) == 8 and all(c in "0123456789abcdefABCDEF" for c in value)
        assert ok == good
        assert bytes(row) == (bytes.fromhex(value) if good else bytes(4))


def test_hex_encode_round_trip():
    rng = np.random.default_rng(1)
    digests = rng.integers(0, 256, size=(1000, 20), dtype=np.uint8)
    text = hex_encode_array(digests)
    assert text.type == pa.string()
    assert text.to_pylist() == [bytes(row).hex() for row in digests]
    decoded, valid = hex_decode_array(text, 20)
    assert valid.all()
    np.testing.assert_array_equal(decoded, digests)
    assert hex_encode_array(np.zeros((0, 16), np.uint8)).to_pylist() == []
    with pytest.raises(ValueError):
        hex_encode_array(np.zeros(16, np.uint8))


def test_digest_prefix64_is_big_endian_head():
    rng = np.random.default_rng(2)
    digests = rng.integers(0, 256, size=(100, 16), dtype=np.uint8)
    prefixes = digest_prefix64(digests[::2])  # non-contiguous view
    assert prefixes.dtype == np.uint64
    assert prefixes.tolist() == [int.from_bytes(bytes(row[:8]), "big") for row in digests[::2]]
    # sorting prefixes sorts the digests by their first bytes
    order = np.argsort(digest_prefix64(digests), kind="stable")
    heads = [bytes(digests[i][:8]) for i in order]
    assert heads == sorted(heads)
    with pytest.raises(ValueError):
        digest_prefix64(np.zeros((3, 4), np.uint8))


@pytest.mark.parametrize("nbytes", [16, 20, 32])
def test_hex_decode_at_every_simd_level(implementation, nbytes):
    """Valid text in mixed case, and one bad character at each position, 32 characters at a time and the rest."""
    rng = random.Random(nbytes)
    raw = [random_bytes(rng, nbytes) for _ in range(3 * 2 * nbytes)]
    text = ["".join(c.upper() if rng.random() < 0.5 else c for c in r.hex()) for r in raw]
    for position in range(2 * nbytes):  # a non-hex character in every place, from every class edge
        bad = "/:@G`g\xff"[position % 7]
        text[position] = text[position][:position] + bad + text[position][position + 1 :]
    decoded, valid = hex_decode_array(pa.array(text, pa.binary() if "\xff" in "".join(text) else pa.string()), nbytes)
    for row, (value, is_valid) in enumerate(zip(text, valid)):
        if row < 2 * nbytes:
            assert not is_valid and not decoded[row].any()
        else:
            assert is_valid and bytes(decoded[row]) == bytes.fromhex(value)
