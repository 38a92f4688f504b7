"""Drop the scans of a progressive JPEG that a reduced-scale luma decode does not need.

A progressive JPEG stores its coefficients in several scans (passes): the DC
coefficients of every component, then bands of AC coefficients of one
component at a time, first coarse (the low bits missing), then one bit of
refinement per pass. Decoding one costs about three times a baseline JPEG of
the same size, and `fast` PDQ needs little of it:

- **Chroma AC scans**: a greyscale decode never reads them. Dropping them
  changes nothing in the output.
- **At 1/8 scale** the decoder keeps only each block's DC coefficient, so
  the AC scans can go, again with identical output, all but the first pass
  over the lowest luma band: libjpeg-turbo (2.1+) smooths the DC values of an
  image that has no AC coefficients at all, as a preview, and one AC scan is
  enough to keep the DC values exact.
- **The last refinement pass of the luma AC coefficients** (their lowest bit,
  typically 40% of the file): dropping it is what a browser shows just before
  a progressive image finishes loading. The pixels change by a fraction of a
  quantisation step, which PDQ's 64x64 blur averages away: on
  `bench/pdq_hash.py`'s progressive images, fast hashes stay as close to
  `exact` as those of baseline JPEGs (all within distance 10).

The result is a valid JPEG with the same headers and fewer scans. Anything
unusual (not progressive Huffman, not 1 or 3 components, a marker out of
place, no end-of-image marker, so also any truncated file) gives None, and the
caller decodes the original bytes, whose errors then speak for themselves.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

_SOI, _EOI, _SOS, _SOF_PROGRESSIVE = 0xD8, 0xD9, 0xDA, 0xC2
# Frame types other than progressive Huffman: left alone.
_OTHER_SOF = {0xC0, 0xC1, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers that stand alone (no length field); none may appear between segments here.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}


def _marker_positions(data: bytes) -> np.ndarray:
    """Offsets of every 0xFF that starts a marker (not stuffing 0xFF00, restart, or fill)."""
    raw = np.frombuffer(data, dtype=np.uint8)
    ff = np.flatnonzero(raw[:-1] == 0xFF)
    following = raw[ff + 1]
    is_marker = (following != 0x00) & (following != 0xFF) & ((following < 0xD0) | (following > 0xD7))
    return ff[is_marker]


def _scan_wanted(components: bytes, luma_id: int, start: int, approx_high: int, approx_low: int, factor: int) -> bool:
    if start == 0:
        return True  # DC scans (possibly interleaved): always needed
    if components != bytes((luma_id,)):
        return False  # AC of a chroma component: a luma decode never uses it
    if factor >= 8:
        return start == 1 and approx_high == 0  # 1/8 keeps only DC; see the module docstring
    return not (approx_high > 0 and approx_low == 0)  # the last refinement bit


class _Unexpected(Exception):
    """The file's structure is not one this module rewrites."""


def _segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each segment after SOI, up to and including EOI.

    A scan's segment ends where its entropy-coded data does (at the next
    marker). Raises `_Unexpected` for anything out of place, or a file that
    ends before its EOI marker.
    """
    size = len(data)
    if size < 4 or data[0] != 0xFF or data[1] != _SOI:
        raise _Unexpected
    markers: np.ndarray | None = None
    position = 2
    while True:
        while position + 1 < size and data[position] == 0xFF and data[position + 1] == 0xFF:
            position += 1  # fill bytes before a marker
        if position + 1 >= size or data[position] != 0xFF:
            raise _Unexpected
        marker = data[position + 1]
        if marker == _EOI:
            yield marker, position, position + 2
            return
        if marker in _STANDALONE or marker == _SOI or position + 4 > size:
            raise _Unexpected
        length = (data[position + 2] << 8) | data[position + 3]
        end = position + 2 + length
        if length < 2 or end > size:
            raise _Unexpected
        if marker == _SOS:
            if markers is None:
                markers = _marker_positions(data)
            following = int(np.searchsorted(markers, end))
            if following == len(markers):
                raise _Unexpected  # no marker after the entropy-coded data: truncated
            end = int(markers[following])
        yield marker, position, end
        position = end


def luma_scans(data: bytes, factor: int) -> bytes | None:
    """`data` without the scans a luma decode at 1/`factor` needs not read, or None.

    None means "decode the original": not a progressive JPEG with 1 or 3
    components, nothing to drop, or anything unexpected in its structure.
    """
    luma_id = -1
    kept: list[bytes] = [data[:2]]
    dropped = False
    try:
        for marker, start, end in _segments(data):
            if marker in _OTHER_SOF:
                return None
            if marker == _SOF_PROGRESSIVE:
                component_count = data[start + 9] if start + 10 <= end else 0
                if component_count not in (1, 3) or start + 10 + 3 * component_count > end:
                    return None
                luma_id = data[start + 10]
            elif marker == _SOS:
                header_end = start + 2 + ((data[start + 2] << 8) | data[start + 3])
                count = data[start + 4] if start + 5 <= header_end else 0
                spectral = start + 5 + 2 * count
                if luma_id < 0 or count < 1 or spectral + 3 > header_end:
                    return None  # a scan before a progressive frame header, or a cut header
                successive = data[spectral + 2]
                wanted = _scan_wanted(
                    data[start + 5 : spectral : 2], luma_id, data[spectral], successive >> 4, successive & 0x0F, factor
                )
                if not wanted:
                    dropped = True
                    continue
            kept.append(data[start:end])
    except _Unexpected:
        return None
    return b"".join(kept) if dropped else None
