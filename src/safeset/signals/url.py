"""URL canonical form: the one spelling of a URL that URL banks are matched in.

Hash lists of URLs only work if the dataset side and the list side spell a URL
the same way, so the definition here is deliberately small, fixed and
documented in docs/url-canonical-form.md. Changing it changes every URL digest:
treat it as a file format.

`canonical_url` is the reference (pure Python, readable). `canonical_url_array`
is the batch form used on the hot path: C code in `safeset._native` handles
every row whose host is ASCII and hands the rest (IDN hosts) back to
`canonical_url`. Both give byte-identical results; tests/test_url.py proves it.
"""

from __future__ import annotations

import re

import idna
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset import _native

__all__ = [
    "canonical_url",
    "canonical_url_array",
    "canonical_changes",
    "with_rows_replaced",
    "host_of",
    "host_array",
    "domain_suffixes",
    "DEFAULT_PORTS",
]

DEFAULT_PORTS = {"http": "80", "https": "443", "ftp": "21"}

# Stripped from both ends: C0 controls and space (as the WHATWG URL standard
# does). A fixed ASCII set, so the result never depends on the Unicode version.
_C0_AND_SPACE = "".join(chr(code) for code in range(0x21))
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Explicit ASCII classes: `str.isalpha`/`isdigit` would accept other scripts.
_SCHEME_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://")
_ESCAPE_OR_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})?")
_LOWERCASE_ESCAPE = re.compile(r"%[0-9a-f]{2}")
_DIGITS = re.compile(r"[0-9]*")
_IDNA_RESULT = re.compile(r"[a-z0-9._\-]+")
_IPV4 = re.compile(r"[0-9]{1,3}(\.[0-9]{1,3}){3}")


def canonical_url(url: str) -> str:
    """Return the canonical form of `url` (see docs/url-canonical-form.md).

    Never raises on a `str`: text without a `scheme://` prefix is returned
    stripped and otherwise unchanged.
    """
    text = url.strip(_C0_AND_SPACE)
    prefix = _SCHEME_PREFIX.match(text)
    if prefix is None:
        return text
    scheme = text[: prefix.end() - 3].lower()
    rest = text[prefix.end() :]

    fragment_at = rest.find("#")
    if fragment_at >= 0:
        rest = rest[:fragment_at].rstrip(_C0_AND_SPACE)

    authority_end = _first_of(rest, "/?")
    authority, rest = rest[:authority_end], rest[authority_end:]
    query_at = rest.find("?")
    if query_at >= 0:
        path, query = rest[:query_at], rest[query_at:]
    else:
        path, query = rest, ""

    at = authority.rfind("@")
    userinfo, hostport = authority[: at + 1], authority[at + 1 :]
    host, port = _split_host_port(hostport)

    parts = [scheme, "://", _normalise_escapes(userinfo), _canonical_host(host)]
    if port is not None and not _is_default_port(scheme, port):
        parts += [":", port]
    parts += [_remove_dot_segments(_normalise_escapes(path)), _normalise_escapes(query)]
    return "".join(parts)


def host_of(url: str) -> str | None:
    """Host of `url`'s canonical form (no userinfo, no port, no IPv6 brackets), or None."""
    return _host_of_canonical(canonical_url(url))


def domain_suffixes(host: str) -> list[str]:
    """`host` and each parent domain: "a.example.com" -> ["a.example.com", "example.com", "com"].

    A domain entry matches a host when it equals one of these, so `example.com`
    matches `www.example.com` but never `notexample.com`. IP literals only
    match themselves.
    """
    host = host.lower().rstrip(".")
    if not host:
        return []
    if ":" in host or _IPV4.fullmatch(host):
        return [host]
    labels = host.split(".")
    return [".".join(labels[i:]) for i in range(len(labels))]


# --------------------------------------------------------------------------- vector forms


def canonical_changes(urls: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """The rows whose canonical form differs from their raw text, and that form.

    Most URLs in web datasets are already canonical, so only the few that
    change are written out: (rows, int64 ascending; their canonical text,
    large_string). Nulls never change.
    """
    large = _string_layout(urls)
    validity, offsets, data = urls.buffers()
    rows_bytes, ends, text, fallback_bytes = _native.canonical_changes(
        validity, offsets, data, urls.offset, len(urls), large
    )
    rows = np.frombuffer(rows_bytes, dtype=np.int64)
    values = pa.Array.from_buffers(pa.large_string(), len(rows), [None, pa.py_buffer(ends), pa.py_buffer(text)])
    fallback_rows = np.frombuffer(fallback_bytes, dtype=np.int64)
    if len(fallback_rows):
        rows, values = _merge_fallback_rows(urls, large, rows, values, fallback_rows)
    return rows, values


def _merge_fallback_rows(urls, large, rows, values, fallback_rows):
    """Add the rows the C code left to `canonical_url` (non-ASCII hosts) that change."""
    # Read as bytes: a string column that is not valid UTF-8 must not raise here.
    as_bytes = urls.view(pa.large_binary() if large else pa.binary())
    found = dict(zip(rows.tolist(), values.view(pa.large_binary()).to_pylist()))
    for row, raw_bytes in zip(fallback_rows.tolist(), as_bytes.take(pa.array(fallback_rows)).to_pylist()):
        raw = raw_bytes.decode("utf-8", "surrogateescape")
        canonical = canonical_url(raw)
        if canonical != raw:
            found[row] = canonical.encode("utf-8", "surrogateescape")
    ordered = sorted(found)
    merged = pa.array([found[row] for row in ordered], pa.large_binary()).view(pa.large_string())
    return np.asarray(ordered, dtype=np.int64), merged


def with_rows_replaced(urls: pa.Array, rows: np.ndarray, values: pa.Array) -> pa.Array:
    """`urls` with row rows[k] holding values[k] (as from `canonical_changes`)."""
    large = _string_layout(urls)
    if values.offset or values.null_count or not pa.types.is_large_string(values.type):
        values = pa.array(values.to_pylist(), pa.large_string())  # not the shape canonical_changes gives
    validity, offsets, data = urls.buffers()
    _, new_offsets, new_data = values.buffers()
    new_offsets = new_offsets if len(values) else pa.py_buffer(np.zeros(1, np.int64))
    out_offsets, out_data = _native.replace_rows(
        validity, offsets, data, urls.offset, len(urls), large, np.ascontiguousarray(rows, dtype=np.int64),
        new_offsets, new_data if new_data is not None else b"",
    )
    out_type = urls.type if large or _fits_int32(out_offsets) else pa.large_string()
    return _build_strings(out_type, urls, out_offsets, out_data)


def canonical_url_array(urls: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray]:
    """Canonical form of every row, and a `changed` mask (canonical != raw).

    Same type and length as `urls` (string becomes large_string only if the
    result outgrows 32-bit offsets); nulls stay null and count as unchanged.
    When no row changes, `urls` itself is returned (no copy). A ChunkedArray
    gives a ChunkedArray.
    """
    if isinstance(urls, pa.ChunkedArray):
        return _over_chunks(urls, canonical_url_array)
    rows, values = canonical_changes(urls)
    changed = np.zeros(len(urls), dtype=np.bool_)
    changed[rows] = True
    if not len(rows):
        return urls, changed
    return with_rows_replaced(urls, rows, values), changed


def host_array(canonical: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Host of each canonical URL (string; null for nulls and where there is no host).

    Expects canonical input (from `canonical_url_array`): it only parses, so
    `host_array(canonical_url_array(a)[0])[i] == host_of(a[i])`.
    """
    if isinstance(canonical, pa.ChunkedArray):
        return _over_chunks(canonical, lambda chunk: (host_array(chunk), None))[0]
    large = _string_layout(canonical)
    validity, offsets, data = canonical.buffers()
    new_offsets, new_data, valid_bytes = _native.hosts(
        validity, offsets, data, canonical.offset, len(canonical), large
    )
    valid = np.frombuffer(valid_bytes, dtype=np.bool_)
    out_type = pa.string() if _fits_int32(new_offsets) else pa.large_string()
    offsets = np.frombuffer(new_offsets, dtype=np.int64)
    if out_type == pa.string():
        offsets = offsets.astype(np.int32)
    null_count = int(len(valid) - np.count_nonzero(valid))
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if null_count else None
    return pa.Array.from_buffers(
        out_type,
        len(canonical),
        [bitmap, pa.py_buffer(offsets), pa.py_buffer(new_data)],
        null_count=null_count,
    )


# --------------------------------------------------------------------------- helpers


def _first_of(text: str, characters: str) -> int:
    positions = [i for i in (text.find(c) for c in characters) if i >= 0]
    return min(positions) if positions else len(text)


def _split_host_port(hostport: str) -> tuple[str, str | None]:
    """Split at the first ':' (after a closing ']' for IPv6 literals); odd shapes are all host."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close >= 0:
            after = hostport[close + 1 :]
            if not after:
                return hostport, None
            if after[0] == ":":
                return hostport[: close + 1], after[1:]
        return hostport, None
    colon = hostport.find(":")
    if colon < 0:
        return hostport, None
    return hostport[:colon], hostport[colon + 1 :]


def _is_default_port(scheme: str, port: str) -> bool:
    """Empty port, or the scheme's default port in decimal (leading zeros allowed)."""
    if port == "":
        return True
    default = DEFAULT_PORTS.get(scheme)
    if default is None or not _DIGITS.fullmatch(port):
        return False
    return port.lstrip("0") == default


def _normalise_escapes(text: str) -> str:
    """Upper-case escape hex, decode escapes of unreserved characters, write a stray '%' as %25."""
    if "%" not in text:
        return text
    return _ESCAPE_OR_PERCENT.sub(_normalise_one_escape, text)


def _normalise_one_escape(match: re.Match) -> str:
    hex_digits = match.group(1)
    if hex_digits is None:
        return "%25"
    character = chr(int(hex_digits, 16))
    if character in _UNRESERVED:
        return character
    return "%" + hex_digits.upper()


def _canonical_host(host: str) -> str:
    host = _normalise_escapes(host).lower()
    if "%" in host:
        host = _LOWERCASE_ESCAPE.sub(lambda m: m.group(0).upper(), host)
    if host.startswith("["):
        return host
    host = host.rstrip(".")
    if not host.isascii():
        host = _idna_host(host).rstrip(".")  # a mapped "。" can end in "."
    return host


def _idna_host(host: str) -> str:
    """Punycode form of a non-ASCII host: `idna` (UTS 46), then Python's IDNA 2003 codec.

    A result is used only if it is plain ASCII host text ([a-z0-9._-]), so a
    mapping can never introduce '@', ':', '/' or '%' and change how the
    canonical URL parses. Otherwise the (lower-cased) host is kept as is.
    """
    for encode in (_encode_idna_uts46, _encode_idna_2003):
        try:
            encoded = encode(host)
        except Exception:  # both libraries raise several types; any failure means "try next"
            continue
        if _IDNA_RESULT.fullmatch(encoded):
            return encoded
    return host


def _encode_idna_uts46(host: str) -> str:
    return idna.encode(host, uts46=True).decode("ascii")


def _encode_idna_2003(host: str) -> str:
    return host.encode("idna").decode("ascii")


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for a path that is empty or starts with '/'; empty -> '/'."""
    if "." not in path:
        return path or "/"
    segments = path.split("/")[1:]
    kept: list[str] = []
    last = len(segments) - 1
    for i, segment in enumerate(segments):
        if segment == ".":
            if i == last:
                kept.append("")
        elif segment == "..":
            if kept:
                kept.pop()
            if i == last:
                kept.append("")
        else:
            kept.append(segment)
    return "/" + "/".join(kept)


def _host_of_canonical(canonical: str) -> str | None:
    prefix = _SCHEME_PREFIX.match(canonical)
    if prefix is None:
        return None
    rest = canonical[prefix.end() :]
    authority = rest[: _first_of(rest, "/?#")]
    host, _ = _split_host_port(authority[authority.rfind("@") + 1 :])
    if len(host) >= 2 and host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host or None


def _string_layout(array: pa.Array) -> bool:
    """True for 64-bit offsets; raises TypeError for anything but (large_)string."""
    if pa.types.is_string(array.type):
        return False
    if pa.types.is_large_string(array.type):
        return True
    raise TypeError(f"expected a string or large_string array, got {array.type}")


def _fits_int32(offsets: bytes) -> bool:
    return len(offsets) < 8 or np.frombuffer(offsets, dtype=np.int64)[-1] < 2**31


def _build_strings(out_type: pa.DataType, like: pa.Array, offsets: bytes, data: bytes) -> pa.Array:
    offsets_array = np.frombuffer(offsets, dtype=np.int64)
    if not pa.types.is_large_string(out_type):
        offsets_array = offsets_array.astype(np.int32)
    bitmap = None
    if like.null_count:
        bitmap = pc.is_valid(like).buffers()[1]
    return pa.Array.from_buffers(
        out_type,
        len(like),
        [bitmap, pa.py_buffer(offsets_array), pa.py_buffer(data)],
        null_count=like.null_count,
    )


def _over_chunks(chunked: pa.ChunkedArray, function):
    """Apply `function` (array -> (array, mask | None)) per chunk; join the results."""
    results = [function(chunk) for chunk in chunked.chunks]
    arrays = [array for array, _ in results]
    masks = [mask for _, mask in results if mask is not None]
    out_type = arrays[0].type if arrays else pa.string()
    if any(array.type != out_type for array in arrays):
        out_type = pa.large_string()
        arrays = [array.cast(out_type) for array in arrays]
    mask = np.concatenate(masks) if masks else np.zeros(0, dtype=np.bool_)
    return pa.chunked_array(arrays, type=out_type), mask
