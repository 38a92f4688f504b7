"""The signals of one batch of rows, computed lazily and at most once.

Matching asks for what its banks need (a URL-digest bank needs URL digests, an
image bank needs image digests) and nothing else is computed. Every column is
vectorised over the batch; the only per-row Python is for rows the native
kernels hand back (non-ASCII hosts) and for caption terms.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.datasets.base import Batch, Columns
from safeset.signals import kernels
from safeset.signals.perceptual import PDQQueries, pdq_queries
from safeset.signals.url import canonical_changes, host_array, with_rows_replaced

DIGEST_SIZES = {"md5": 16, "sha1": 20, "sha256": 32}


class RowSignals:
    def __init__(self, batch: Batch, columns: Columns, pdq_mode: str = "fast", dihedral: bool = False):
        self.batch = batch
        self.columns = columns
        self.pdq_mode = pdq_mode
        self.dihedral = dihedral
        self.num_rows = batch.num_rows
        # (row, reason) for rows whose signals could not be computed.
        self.problems: list[tuple[int, str]] = [
            (row, reason) for row, reason in enumerate(batch.errors or ()) if reason
        ]
        self._cache: dict = {}

    # -- URL ---------------------------------------------------------------
    def _text_column(self, name: str | None) -> pa.Array | None:
        if name is None:
            return None
        column = self.batch.table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = pc.cast(column, pa.string())
        return column

    @cached_property
    def url(self) -> pa.Array | None:
        column = self._text_column(self.columns.url)
        return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column

    @cached_property
    def _canonical_changes(self) -> tuple[np.ndarray, pa.Array]:
        """Rows whose canonical URL differs from the raw one, and their canonical text."""
        return canonical_changes(self.url)

    @cached_property
    def url_canonical(self) -> pa.Array:
        """Every row's canonical URL (built only when a bank needs them all: `url`, `domain`)."""
        rows, values = self._canonical_changes
        return with_rows_replaced(self.url, rows, values) if len(rows) else self.url

    def canonical_at(self, row: int) -> str | None:
        """One row's canonical URL, without building the whole column."""
        rows, values = self._canonical_changes
        at = int(np.searchsorted(rows, row))
        if at < len(rows) and rows[at] == row:
            return values[at].as_py()
        return self.url[row].as_py()

    @cached_property
    def url_changed(self) -> np.ndarray:
        """Rows whose canonical URL differs from the raw string."""
        changed = np.zeros(self.num_rows, dtype=np.bool_)
        changed[self._canonical_changes[0]] = True
        return changed

    @cached_property
    def url_valid(self) -> np.ndarray:
        return np.asarray(self.url.is_valid().to_numpy(zero_copy_only=False), dtype=bool)

    def url_digest(self, algo: str, form: str) -> tuple[np.ndarray, np.ndarray]:
        """(digests, valid) of the raw or canonical URL string.

        For the canonical form only the rows that canonicalisation changed are
        hashed again; the others reuse the raw digest.
        """
        key = ("url", algo, form)
        if key not in self._cache:
            if form == "raw":
                self._cache[key] = (kernels.digest_array(self.url, algo), self.url_valid)
            else:
                raw, valid = self.url_digest(algo, "raw")
                rows, changed = self.changed_url_digests(algo)
                digests = raw
                if len(rows):
                    digests = raw.copy()
                    digests[rows] = changed
                self._cache[key] = (digests, valid)
        return self._cache[key]

    def changed_url_digests(self, algo: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, digests) of the canonical URL of only the rows canonicalisation changed."""
        key = ("url", algo, "changed")
        if key not in self._cache:
            rows, values = self._canonical_changes
            self._cache[key] = (rows, kernels.digest_array(values, algo))
        return self._cache[key]

    @cached_property
    def host(self) -> pa.Array:
        return host_array(self.url_canonical)

    # -- image digests -----------------------------------------------------
    def image_digest(self, algo: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(digests, valid) of the image bytes, else of a precomputed column.

        None when the dataset has neither. Malformed precomputed values are
        recorded as problems (the row could not be checked).
        """
        key = ("image", algo)
        if key in self._cache:
            return self._cache[key]
        result = None
        if self.batch.images is not None:
            images = pa.array(self.batch.images, type=pa.binary())
            valid = np.asarray(images.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
            result = (kernels.digest_array(images, algo), valid)
        else:
            name = getattr(self.columns, algo)
            if name is not None:
                column = self.batch.table.column(name)
                digests, valid = kernels.hex_decode_array(column, DIGEST_SIZES[algo])
                present = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
                for row in np.flatnonzero(present & ~valid).tolist():
                    self.problems.append((row, f"invalid {algo} value in column {name!r}"))
                result = (digests, valid)
        self._cache[key] = result
        return result

    # -- perceptual ------------------------------------------------------
    @cached_property
    def pdq(self) -> PDQQueries | None:
        """PDQ hashes to look up and the row of each; None without image bytes."""
        if self.batch.images is None:
            return None
        queries = pdq_queries(self.batch.images, self.pdq_mode, self.dihedral)
        self.problems.extend(queries.problems)
        return queries

    # -- caption -----------------------------------------------------------
    @cached_property
    def caption(self) -> pa.Array | None:
        return self._text_column(self.columns.caption)
