"""PDQ signals of a batch of images: the hashes to look up, per row.

Images with PDQ quality below 50 give no PDQ signal (the reference's rule:
such hashes match too much to mean anything); their exact digests are still
matched. An image that cannot be decoded is a problem row: it could not be
checked, and the policy decides (default review).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from safeset.errors import InputError

MIN_QUALITY = 50
MODES = ("fast", "exact")


@dataclass(frozen=True)
class PDQQueries:
    hashes: np.ndarray  # (m, 32) uint8
    rows: np.ndarray  # (m,) batch row of each hash (several per row with dihedral variants)
    problems: list[tuple[int, str]]


def pdq_queries(images: list[bytes | None], mode: str = "fast", dihedral: bool = False) -> PDQQueries:
    from safeset.pdq.core import hash_bytes_from_dct
    from safeset.pdq.dihedral import dihedral_hash_bytes
    from safeset.pdq.hashing import image_dct

    hashes: list[bytes] = []
    rows: list[int] = []
    problems: list[tuple[int, str]] = []
    for row, image in enumerate(images):
        if image is None:
            continue
        try:
            dct, quality = image_dct(image, mode, name=f"row {row}")
        except InputError as exc:
            problems.append((row, f"image could not be decoded for PDQ: {exc.reason}"))
            continue
        if dct is None or quality < MIN_QUALITY:
            continue
        variants = dihedral_hash_bytes(dct) if dihedral else [hash_bytes_from_dct(dct)]
        hashes.extend(variants)
        rows.extend([row] * len(variants))
    array = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), 32)
    return PDQQueries(array, np.asarray(rows, dtype=np.int64), problems)
