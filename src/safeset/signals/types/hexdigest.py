"""Validation shared by every type whose values are hex digests."""

from __future__ import annotations


def hex_validator(size: int):
    """A validator for `size`-byte digests written as lowercase hex."""

    def validate(value: str) -> str:
        text = value.strip().lower()
        if len(text) != 2 * size:
            raise ValueError(f"expected {2 * size} hex characters, got {len(text)}")
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise ValueError("not hexadecimal") from None
        if raw == bytes(size):
            raise ValueError("all-zero digest (a placeholder, not a real hash)")
        return text

    return validate


def hex_key(value: str) -> bytes:
    return bytes.fromhex(value)
