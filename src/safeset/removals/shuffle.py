"""Put list rows in an order that depends on their content and a secret only.

Real removals and decoys arrive in a telling order (real ones first, decoys
by shard). Sorting every row by a keyed hash of its own values removes that:
the position of a row says nothing but its hash. Up to `memory_rows` rows
are sorted in memory; beyond, rows are spilled to 256 bucket files by the
hash's first byte, and each bucket is sorted on its own (memory: one bucket).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.removals.listfile import COLUMNS, SCHEMA
from safeset.signals import kernels

ORDER = "_order"
BUCKETS = 256
DEFAULT_MEMORY_ROWS = 1 << 20
OUTPUT_ROWS = 1 << 16


def _order_keys(table: pa.Table, seed_hex: str) -> np.ndarray:
    """First 8 bytes of SHA-256(seed, values...) per row, as uint64."""
    parts = [pc.fill_null(table.column(name), "") for name in COLUMNS]
    joined = pc.binary_join_element_wise(pa.scalar(seed_hex), *parts, "\x1f")
    digests = kernels.digest_array(joined, "sha256")
    return np.ascontiguousarray(digests[:, :8]).view(">u8")[:, 0].astype(np.uint64)


class ContentShuffle:
    def __init__(self, seed: bytes, directory: Path, memory_rows: int = DEFAULT_MEMORY_ROWS):
        self.seed_hex = seed.hex()
        self.directory = Path(directory)
        self.memory_rows = memory_rows
        self.count = 0
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._spills = 0

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        table = table.select(list(COLUMNS)).cast(SCHEMA)
        table = table.append_column(ORDER, pa.array(_order_keys(table, self.seed_hex), pa.uint64()))
        self._pending.append(table)
        self._pending_rows += table.num_rows
        self.count += table.num_rows
        if self._pending_rows >= self.memory_rows:
            self._spill()

    def _spill(self) -> None:
        table = pa.concat_tables(self._pending)
        self._pending, self._pending_rows = [], 0
        buckets = (table.column(ORDER).to_numpy() >> np.uint64(56)).astype(np.int64)
        order = np.argsort(buckets, kind="stable")
        table, buckets = table.take(pa.array(order)), buckets[order]
        bounds = np.searchsorted(buckets, np.arange(BUCKETS + 1))
        self.directory.mkdir(parents=True, exist_ok=True)
        for bucket in range(BUCKETS):
            if bounds[bucket + 1] > bounds[bucket]:
                piece = table.slice(bounds[bucket], bounds[bucket + 1] - bounds[bucket])
                pq.write_table(piece, self.directory / f"bucket-{bucket:03d}-{self._spills:06d}.parquet")
        self._spills += 1

    @staticmethod
    def _sorted(table: pa.Table) -> pa.Table:
        return table.sort_by(ORDER).drop_columns([ORDER])

    def tables(self) -> Iterator[pa.Table]:
        """Every row added, in content order, a few thousand rows at a time."""
        if not self._spills:
            if self._pending:
                table = self._sorted(pa.concat_tables(self._pending))
                self._pending = []
                yield from table.to_batches(max_chunksize=OUTPUT_ROWS)
            return
        if self._pending:
            self._spill()
        for bucket in range(BUCKETS):
            files = sorted(self.directory.glob(f"bucket-{bucket:03d}-*.parquet"))
            if not files:
                continue
            table = self._sorted(pa.concat_tables([pq.read_table(f) for f in files]))
            for f in files:
                f.unlink()
            yield from table.to_batches(max_chunksize=OUTPUT_ROWS)
