"""The 8 rotations and mirrorings of a PDQ hash, from one DCT.

Rotating or mirroring an image permutes and negates its DCT coefficients:
mirroring one axis negates the coefficients of odd frequency along it, and
swapping the axes transposes the matrix. So the hashes of all 8 orientations
come from the 16x16 DCT already computed for the original, with no new decode
or filtering (the PDQ reference's ``dct16OriginalTo*`` functions; same order
and sign rules). Stored row i is frequency i+1, so "odd frequency" is an even
row index.

Each variant is the hash the *transformed* image would get, to within a few
bits (up to 12 seen in tests: the reference's even-width box filter is not
symmetric, so hashing a rotated copy is not exactly a coefficient shuffle). Use them on
the query side: hash an upload once, look up all 8.

Orientation names, as Pillow transposes of the original image:
``rotate90`` = ``Image.Transpose.ROTATE_90`` (counter-clockwise),
``rotate180``, ``rotate270`` (clockwise 90), ``flip_x`` = ``FLIP_TOP_BOTTOM``,
``flip_y`` = ``FLIP_LEFT_RIGHT``, ``flip_plus1`` = ``TRANSPOSE`` (mirror about
the main diagonal), ``flip_minus1`` = ``TRANSVERSE``. The reference calls
them Rotate90 ... FlipX, FlipY, FlipPlus1, FlipMinus1.
"""

from __future__ import annotations

import numpy as np

from safeset.pdq.core import DCT_SIDE, hash_bytes_from_dct

DIHEDRAL_NAMES = (
    "original",
    "rotate90",
    "rotate180",
    "rotate270",
    "flip_x",
    "flip_y",
    "flip_plus1",
    "flip_minus1",
)

# +1 where the stored index is odd (an even frequency), -1 where it is even.
_EVEN_FREQUENCY = np.where(np.arange(DCT_SIDE) % 2 == 1, 1.0, -1.0).astype(np.float32)
_ROW_SIGN = _EVEN_FREQUENCY[:, None]  # negate odd vertical frequencies
_COL_SIGN = _EVEN_FREQUENCY[None, :]  # negate odd horizontal frequencies


def dihedral_dcts(dct: np.ndarray) -> np.ndarray:
    """(8, 16, 16) DCTs of the 8 orientations, in `DIHEDRAL_NAMES` order."""
    a = np.asarray(dct, dtype=np.float32).reshape(DCT_SIDE, DCT_SIDE)
    both = _ROW_SIGN * _COL_SIGN
    return np.stack(
        [
            a,
            (a * _COL_SIGN).T,
            a * both,
            (a * _ROW_SIGN).T,
            a * _ROW_SIGN,
            a * _COL_SIGN,
            a.T,
            (a * both).T,
        ]
    )


def dihedral_hash_bytes(dct: np.ndarray | None) -> list[bytes]:
    """The 8 canonical 32-byte hashes; all zero for an unhashable image."""
    if dct is None:
        return [bytes(32)] * len(DIHEDRAL_NAMES)
    return [hash_bytes_from_dct(variant) for variant in dihedral_dcts(dct)]
