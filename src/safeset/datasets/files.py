"""Finding shard files under a dataset root.

Run records live in a `_safeset` directory and hidden files belong to tools
(`.git`, editors), so neither is ever taken for data.
"""

from __future__ import annotations

import os
from pathlib import Path

from safeset.datasets.base import Shard
from safeset.errors import InputError

SKIPPED_DIRECTORY = "_safeset"


def _visible(name: str) -> bool:
    return not name.startswith(".")


def walk_files(root: Path) -> list[str]:
    """Posix relpaths of all visible files under `root`, sorted."""
    def refuse(error: OSError) -> None:
        # A directory we cannot list would be data we silently never scan.
        raise InputError(error.filename or root, None, f"cannot list directory ({error.strerror})")

    found = []
    for directory, subdirs, filenames in os.walk(root, onerror=refuse):
        subdirs[:] = [d for d in subdirs if _visible(d) and d != SKIPPED_DIRECTORY]
        rel = Path(directory).relative_to(root)
        for name in filenames:
            if _visible(name):
                found.append((rel / name).as_posix())
    return sorted(found)


def has_suffix(relpath: str, suffixes: tuple[str, ...]) -> bool:
    return relpath.lower().endswith(suffixes)


def find_shards(root: Path, suffixes: tuple[str, ...], format_name: str) -> list[Shard]:
    """Shards of one format: files ending in one of `suffixes` (case-insensitive)."""
    return [Shard(root=root, relpath=rel, format=format_name)
            for rel in walk_files(root) if has_suffix(rel, suffixes)]
