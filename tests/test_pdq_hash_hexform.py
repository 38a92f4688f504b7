"""PDQ hex <-> bytes, Hamming distance and bank-hash validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from safeset.pdq.hexform import (
    array_to_hex,
    bits_set,
    bytes_to_hex,
    hamming,
    hamming_array,
    hash_to_bytes,
    hex_to_array,
    validate_pdq_hex,
)

BRIDGE = "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22"


@given(st.binary(min_size=32, max_size=32))
def test_bytes_round_trip(raw):
    text = bytes_to_hex(raw)
    assert text == text.lower() and len(text) == 64
    assert hash_to_bytes(text) == raw
    assert hash_to_bytes(text.upper()) == raw


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32))
def test_hamming_counts_differing_bits(a, b):
    expected = sum(bin(x ^ y).count("1") for x, y in zip(a, b))
    assert hamming(a.hex(), b.hex()) == expected
    assert hamming_array(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)) == expected


def test_hamming_examples():
    assert hamming(BRIDGE, BRIDGE) == 0
    assert hamming("0" * 64, "f" * 64) == 256
    assert hamming("0" * 63 + "1", "0" * 64) == 1


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("abc", "64 hex digits"),
        (BRIDGE + "0", "64 hex digits"),
        ("g" + BRIDGE[1:], "not a hex digit"),
        (" " + BRIDGE[1:], "not a hex digit"),  # bytes.fromhex would skip the space
    ],
)
def test_hash_to_bytes_rejects_malformed_text(bad, reason):
    with pytest.raises(ValueError, match=reason):
        hash_to_bytes(bad)


def test_bytes_to_hex_rejects_wrong_length():
    with pytest.raises(ValueError, match="32 bytes"):
        bytes_to_hex(b"\x00" * 31)


def test_validate_accepts_real_hashes_and_canonicalises_case():
    assert validate_pdq_hex(BRIDGE.upper()) == BRIDGE
    assert bits_set(BRIDGE) == 128


@pytest.mark.parametrize("degenerate", ["0" * 64, "f" * 64, "0" * 60 + "ffff", "f" * 60 + "0000"])
def test_validate_rejects_degenerate_hashes(degenerate):
    with pytest.raises(ValueError, match="degenerate"):
        validate_pdq_hex(degenerate)


def test_degenerate_bounds_are_exactly_32_and_224_bits():
    thirty_one = "0" * 56 + "7fffffff"
    thirty_two = "0" * 56 + "ffffffff"
    assert bits_set(thirty_one) == 31 and bits_set(thirty_two) == 32
    with pytest.raises(ValueError, match="31 of 256 bits set"):
        validate_pdq_hex(thirty_one)
    assert validate_pdq_hex(thirty_two) == thirty_two
    inverted = lambda h: f"{int(h, 16) ^ (2**256 - 1):064x}"  # noqa: E731
    assert validate_pdq_hex(inverted(thirty_two)) == inverted(thirty_two)
    with pytest.raises(ValueError, match="225 of 256"):
        validate_pdq_hex(inverted(thirty_one))


def test_validate_rejects_wrong_length_and_non_hex():
    with pytest.raises(ValueError, match="64 hex digits"):
        validate_pdq_hex(BRIDGE[:-1])
    with pytest.raises(ValueError, match="not a hex digit"):
        validate_pdq_hex(BRIDGE[:-1] + "z")
    with pytest.raises(ValueError, match="must be text"):
        validate_pdq_hex(b"00" * 32)


def test_arrays_round_trip_and_broadcast_distances():
    hashes = [BRIDGE, "0" * 64, "f" * 64]
    array = hex_to_array(hashes)
    assert array.shape == (3, 32) and array.dtype == np.uint8
    assert array_to_hex(array) == hashes
    np.testing.assert_array_equal(hamming_array(array, array[1]), [128, 0, 256])
    with pytest.raises(ValueError):
        array_to_hex(np.zeros((2, 31), dtype=np.uint8))
    with pytest.raises(ValueError):
        hex_to_array(["xyz"])
