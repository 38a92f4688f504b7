"""Batch kernels over Arrow arrays: digests and hex text, in C (`safeset._native`).

Each call handles a whole batch in one trip into C, with the GIL released, so
scans run at memory speed instead of at Python-loop speed. These wrappers only
check types and shape the results as numpy arrays.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from safeset import _native

__all__ = [
    "DIGEST_SIZES",
    "digest_array",
    "hex_decode_array",
    "hex_encode_array",
    "digest_prefix64",
    "native_features",
]

DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32}
_ALGO_IDS = {"md5": 0, "sha1": 1, "sha256": 2}


def digest_array(
    values: pa.Array | pa.ChunkedArray, algo: str, rows: np.ndarray | None = None
) -> np.ndarray:
    """(n, digest_size) uint8 digests of each value's bytes; null rows are all zero.

    `values`: string, large_string, binary or large_binary (slices welcome).
    `rows`: optional row indices; then only those rows are digested, in that
    order, and the result has len(rows) rows.
    """
    if algo not in _ALGO_IDS:
        raise ValueError(f"unknown digest algorithm {algo!r}; expected one of {sorted(_ALGO_IDS)}")
    if isinstance(values, pa.ChunkedArray):
        if rows is None and values.num_chunks > 1:
            size = DIGEST_SIZES[algo]
            parts = [digest_array(chunk, algo) for chunk in values.chunks]
            return np.concatenate(parts) if parts else np.zeros((0, size), dtype=np.uint8)
        values = _single_array(values)
    large = _variable_width_layout(values)
    row_indices = None
    count = len(values)
    if rows is not None:
        row_indices = np.ascontiguousarray(rows, dtype=np.int64)
        if row_indices.ndim != 1:
            raise ValueError("rows must be one-dimensional")
        count = len(row_indices)
    out = np.empty((count, DIGEST_SIZES[algo]), dtype=np.uint8)  # every row is written, nulls as zeros
    validity, offsets, data = values.buffers()[:3]
    _native.digest(
        _ALGO_IDS[algo], validity, offsets, data, values.offset, len(values), large, row_indices, out
    )
    return out


def hex_decode_array(
    values: pa.Array | pa.ChunkedArray, nbytes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Parse hex digests: ((n, nbytes) uint8, valid bool mask).

    Valid values are exactly 2*nbytes hex digits (either case, no spaces).
    Binary columns may also hold raw digests of exactly nbytes bytes, and
    fixed_size_binary(nbytes) columns are raw digests. Nulls and malformed
    values are invalid and decode to zeros.
    """
    if nbytes <= 0:
        raise ValueError("nbytes must be positive")
    if isinstance(values, pa.ChunkedArray):
        if values.num_chunks > 1:
            parts = [hex_decode_array(chunk, nbytes) for chunk in values.chunks]
            return np.concatenate([d for d, _ in parts]), np.concatenate([v for _, v in parts])
        values = _single_array(values)
    if pa.types.is_fixed_size_binary(values.type):
        out = np.zeros((len(values), nbytes), dtype=np.uint8)
        valid = np.zeros(len(values), dtype=np.bool_)
        return _decode_fixed_size(values, nbytes, out, valid)
    out = np.empty((len(values), nbytes), dtype=np.uint8)  # every row is written, invalid ones as zeros
    valid = np.empty(len(values), dtype=np.bool_)
    large = _variable_width_layout(values)
    accept_raw = pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)
    validity, offsets, data = values.buffers()[:3]
    _native.hex_decode(
        validity, offsets, data, values.offset, len(values), large, nbytes, accept_raw, out, valid
    )
    return out, valid


def hex_encode_array(digests: np.ndarray) -> pa.Array:
    """Lower-case hex text (pa.string) of each row of an (n, k) uint8 array."""
    digests = np.ascontiguousarray(digests, dtype=np.uint8)
    if digests.ndim != 2 or digests.shape[1] == 0:
        raise ValueError("digests must be a two-dimensional (n, k) array with k > 0")
    offsets, data = _native.hex_encode(digests, digests.shape[1])
    return pa.Array.from_buffers(
        pa.string(), digests.shape[0], [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    )


def digest_prefix64(digests: np.ndarray) -> np.ndarray:
    """First 8 bytes of each digest as a big-endian uint64 (sort/search key for exact indexes)."""
    if digests.ndim != 2 or digests.shape[1] < 8:
        raise ValueError("digests must be (n, k) uint8 with k >= 8")
    head = np.ascontiguousarray(digests[:, :8], dtype=np.uint8)
    return head.view(">u8").reshape(-1).astype(np.uint64)


def native_features() -> dict[str, bool]:
    """CPU features the digest code found (avx2, sha_ni) and whether it uses them."""
    return _native.features()


def _single_array(chunked: pa.ChunkedArray) -> pa.Array:
    """The one chunk as is (no copy), else the chunks joined."""
    if chunked.num_chunks == 1:
        return chunked.chunk(0)
    if chunked.num_chunks == 0:
        return pa.array([], chunked.type)
    return chunked.combine_chunks()


def _variable_width_layout(values: pa.Array) -> bool:
    """True for 64-bit offsets; TypeError for anything but (large_)string/binary."""
    value_type = values.type
    if pa.types.is_string(value_type) or pa.types.is_binary(value_type):
        return False
    if pa.types.is_large_string(value_type) or pa.types.is_large_binary(value_type):
        return True
    raise TypeError(f"expected a string or binary array, got {value_type}")


def _decode_fixed_size(
    values: pa.Array, nbytes: int, out: np.ndarray, valid: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    width = values.type.byte_width
    if width == nbytes:
        data = values.buffers()[1]
        raw = np.frombuffer(data, dtype=np.uint8, count=(values.offset + len(values)) * width)
        out[:] = raw[values.offset * width :].reshape(len(values), width)
        valid[:] = values.is_valid().to_numpy(zero_copy_only=False)
        out[~valid] = 0
        return out, valid
    if width == 2 * nbytes:
        return hex_decode_array(values.cast(pa.binary()), nbytes)
    return out, valid
