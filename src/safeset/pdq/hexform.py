"""PDQ hash text and binary forms, and Hamming distance.

The canonical text form is 64 lowercase hex digits, most significant bit
first: hex digit 0 holds bits 255..252 of the hash, where bit ``16*i + j`` is
set when DCT coefficient (i, j) exceeds the median (PDQ's C++ ``Hash256``
printed word 15 first; python-threatexchange's and HMA's form). The binary
form is the same 32 bytes, big-endian, so byte-wise XOR + popcount gives the
distance and sorting bytes sorts hex.

**Degenerate hashes.** PDQ sets a bit when a DCT coefficient is *above the
median* of the 256 coefficients, so a hash of a real image has at most 128
bits set and almost always exactly 128 (fewer only when coefficients tie at
the median, as in flat or tiny images, whose hash is all zeros). A bank entry
within the match threshold (31) of the all-zeros or all-ones hash would match
every blank image, so `validate_pdq_hex` rejects hashes with fewer than 32 or
more than 224 bits set (``MIN_BITS_SET``/``MAX_BITS_SET``). Computed hashes are
never filtered here: low-information images show up as low PDQ quality.
"""

from __future__ import annotations

import numpy as np

HASH_BITS = 256
HASH_BYTES = 32
HEX_LENGTH = 64
MIN_BITS_SET = 32
MAX_BITS_SET = HASH_BITS - MIN_BITS_SET

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")
# Bits set in each byte value, for numpy versions without bitwise_count.
_POPCOUNT8 = np.array([value.bit_count() for value in range(256)], dtype=np.uint8)


def _check_hex(text: str) -> None:
    if not isinstance(text, str):
        raise ValueError(f"PDQ hash must be text, got {type(text).__name__}")
    if len(text) != HEX_LENGTH:
        raise ValueError(f"PDQ hash must have {HEX_LENGTH} hex digits, got {len(text)}")
    # bytes.fromhex would also skip spaces, so check every character.
    if not _HEX_DIGITS.issuperset(text):
        raise ValueError("PDQ hash contains a character that is not a hex digit")


def hash_to_bytes(hex_hash: str) -> bytes:
    """64 hex digits (either case) -> the 32-byte binary form."""
    _check_hex(hex_hash)
    return bytes.fromhex(hex_hash)


def bytes_to_hex(hash_bytes: bytes) -> str:
    """32-byte binary form -> canonical lowercase hex."""
    if len(hash_bytes) != HASH_BYTES:
        raise ValueError(f"PDQ hash must be {HASH_BYTES} bytes, got {len(hash_bytes)}")
    return bytes(hash_bytes).hex()


def bits_set(hex_hash: str) -> int:
    """Number of one bits in a hash."""
    return int.from_bytes(hash_to_bytes(hex_hash), "big").bit_count()


def hamming(a_hex: str, b_hex: str) -> int:
    """Hamming distance between two hex hashes (0..256)."""
    a = int.from_bytes(hash_to_bytes(a_hex), "big")
    b = int.from_bytes(hash_to_bytes(b_hex), "big")
    return (a ^ b).bit_count()


def validate_pdq_hex(text: str) -> str:
    """Return the canonical (lowercase) form of a bank PDQ hash.

    Raises ValueError with the reason for a wrong length, a non-hex character
    or a degenerate hash (see the module docstring).
    """
    _check_hex(text)
    count = int(text, 16).bit_count()
    if count < MIN_BITS_SET or count > MAX_BITS_SET:
        raise ValueError(
            f"degenerate PDQ hash: {count} of {HASH_BITS} bits set "
            f"(real images give about half; accepted {MIN_BITS_SET}..{MAX_BITS_SET})"
        )
    return text.lower()


def hex_to_array(hex_hashes: list[str]) -> np.ndarray:
    """Many hex hashes -> uint8 array of shape (n, 32). Raises ValueError on a bad one."""
    out = np.empty((len(hex_hashes), HASH_BYTES), dtype=np.uint8)
    for row, hex_hash in enumerate(hex_hashes):
        out[row] = np.frombuffer(hash_to_bytes(hex_hash), dtype=np.uint8)
    return out


def array_to_hex(hashes: np.ndarray) -> list[str]:
    """uint8 array of shape (n, 32) -> canonical hex strings."""
    hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
    if hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES:
        raise ValueError(f"expected shape (n, {HASH_BYTES}), got {hashes.shape}")
    return [row.tobytes().hex() for row in hashes]


def hamming_array(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise distances between uint8 hash arrays that broadcast to (n, 32)."""
    xor = np.bitwise_xor(np.asarray(a, dtype=np.uint8), np.asarray(b, dtype=np.uint8))
    if hasattr(np, "bitwise_count"):
        counts = np.bitwise_count(xor)
    else:  # numpy < 2.0
        counts = _POPCOUNT8[xor]
    return counts.sum(axis=-1, dtype=np.int32)
