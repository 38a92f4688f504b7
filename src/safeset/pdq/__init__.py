"""PDQ perceptual hashing and matching.

`hash_image` / `hash_images` compute PDQ hashes (``exact``: the reference's
bits; ``fast``: reduced-scale decoding); `hash_image_dihedral` gives the 8
rotations/mirrorings from one DCT; `hexform` converts and compares hashes;
`PDQIndex` (from `safeset.pdq.index`) finds bank hashes within a distance.

Names are imported on first use (PEP 562), so importing this package, e.g.
for the `safeset hash` command's registration, does not load numpy, Pillow,
pdqhash or the native index until something is hashed or matched.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "DEFAULT_MAX_PIXELS": "safeset.pdq.decode",
    "DIHEDRAL_NAMES": "safeset.pdq.dihedral",
    "FAST_MIN_SIDE": "safeset.pdq.hashing",
    "DihedralResult": "safeset.pdq.hashing",
    "FileReport": "safeset.pdq.hashing",
    "PDQBatch": "safeset.pdq.hashing",
    "PDQResult": "safeset.pdq.hashing",
    "hash_file": "safeset.pdq.hashing",
    "hash_image": "safeset.pdq.hashing",
    "hash_image_dihedral": "safeset.pdq.hashing",
    "hash_images": "safeset.pdq.hashing",
    "bytes_to_hex": "safeset.pdq.hexform",
    "hamming": "safeset.pdq.hexform",
    "hash_to_bytes": "safeset.pdq.hexform",
    "validate_pdq_hex": "safeset.pdq.hexform",
    "PDQIndex": "safeset.pdq.index",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'safeset.pdq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
