"""Which physical column holds the URL, caption, key and digests of a shard.

Datasets name these columns differently (LAION: `URL`/`TEXT`; img2dataset:
`url`/`caption`/`key`), so we detect them case-insensitively and let the user
override any guess. Also builds the per-row sample keys every reader returns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.datasets.base import ColumnOverrides, Columns
from safeset.errors import ConfigError, InputError

# Candidate names per role, in order of preference (compared case-insensitively).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "url": ("url",),
    "caption": ("caption", "text"),
    "key": ("key",),
    "md5": ("md5",),
    "sha1": ("sha1",),
    "sha256": ("sha256",),
}


def _find(names: list[str], wanted: str) -> str | None:
    """Exact name first, then a case-insensitive match (first in schema order)."""
    if wanted in names:
        return wanted
    folded = wanted.casefold()
    for name in names:
        if name.casefold() == folded:
            return name
    return None


def resolve_columns(names: list[str], overrides: ColumnOverrides, path: str | Path) -> Columns:
    """Pick the column for each role; an override must name an existing column."""
    chosen: dict[str, str | None] = {}
    for role, candidates in CANDIDATES.items():
        override = getattr(overrides, role, None)
        if override is not None:
            found = _find(names, override)
            if found is None:
                available = ", ".join(names) if names else "(none)"
                raise ConfigError(
                    f"{path}: no column '{override}' for the {role} (--{role}-column); "
                    f"available columns: {available}"
                )
            chosen[role] = found
            continue
        chosen[role] = next((c for c in (_find(names, w) for w in candidates) if c), None)
    return Columns(**chosen)


def require_columns(names: list[str], wanted: tuple[str, ...], path: str | Path) -> list[str]:
    """Physical names for `wanted` (e.g. a policy's score columns), or ConfigError."""
    resolved = []
    for name in wanted:
        found = _find(names, name)
        if found is None:
            raise ConfigError(
                f"{path}: no column '{name}'; available columns: {', '.join(names) or '(none)'}"
            )
        resolved.append(found)
    return resolved


def needed_columns(names: list[str], columns: Columns, extra: tuple[str, ...], path,
                   needed: frozenset[str] | None = None) -> list[str]:
    """The columns a reader opened with all_columns=False must return, in schema order.

    `needed` names the logical columns the job uses (see `ReadOptions.needed`);
    the key column is always read, since withheld rows are recorded by key.
    """
    logical = ("url", "caption", "key", "md5", "sha1", "sha256")
    wanted = {getattr(columns, name) for name in logical
              if getattr(columns, name) and (needed is None or name in needed or name == "key")}
    wanted.update(require_columns(names, extra, path))
    return [n for n in names if n in wanted]


def fallback_keys(relpath: str, positions: np.ndarray) -> pa.Array:
    """Keys for rows without a dataset key: "<relpath>#<position>"."""
    as_text = pa.array(positions, type=pa.int64()).cast(pa.string())
    return pc.binary_join_element_wise(pa.scalar(relpath + "#"), as_text, "")


def key_strings(values: pa.Array | pa.ChunkedArray, path: str | Path) -> pa.Array:
    """A key column as text (keys may be stored as integers or binary)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    try:
        return pc.cast(values, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InputError(path, None, f"key column cannot be read as text ({exc})") from None


def row_keys(values: pa.Array | pa.ChunkedArray | None, relpath: str, positions: np.ndarray,
             path: str | Path) -> pa.Array:
    """Sample keys: the key column as text, nulls (or no column) -> "<relpath>#<position>"."""
    if values is None:
        return fallback_keys(relpath, positions)
    keys = key_strings(values, path)
    if keys.null_count:
        keys = pc.coalesce(keys, fallback_keys(relpath, positions))
    return keys


def lazy_row_keys(values: pa.Array | pa.ChunkedArray | None, relpath: str, positions: np.ndarray,
                  path: str | Path):
    """`row_keys`, deferred: a function of the rows wanted (None = all), for `Batch`."""

    def keys(rows: np.ndarray | None) -> pa.Array:
        if rows is None:
            return row_keys(values, relpath, positions, path)
        subset = None if values is None else values.take(pa.array(rows, pa.int64()))
        return row_keys(subset, relpath, positions[rows], path)

    return keys
