"""Decoys: neutral samples of the same dataset, mixed into a published removal list.

For each real removal, K kept samples are drawn, so a holder of a copy
removes them all and the list does not single out the real removals. To be
indistinguishable in the file a decoy must look like a real entry: each is
drawn among kept rows that know exactly the identifiers the real entries
know (its *pattern*: URL digest, image SHA-256, image MD5; keys are always
known), K per real entry of that pattern. An identifier no real entry has
(the run never read an `md5` column, say) is left out of the decoys too.

The draw is exact, reproducible from the seed, and streams the dataset in
bounded memory. Every row gets a score, a 64-bit hash of (seed, shard,
position); for each pattern the `need` eligible rows with the lowest scores
are the decoys. Pass 1 counts eligible rows per pattern in 65,536 score
bins; pass 2 takes the rows of the bins wholly below the cut and the rows of
the bin the cut falls in, and only those few are sorted to cut exactly.

The seed is what keeps the draw secret: anyone with the seed and the
dataset can redo it and tell decoys apart, so the default seed is random,
and a chosen one must be kept private.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from safeset.datasets.base import ColumnOverrides, ReadOptions, Shard
from safeset.datasets.registry import FORMATS
from safeset.engine.local import LocalEngine
from safeset.errors import ConfigError, InputError
from safeset.jobs.sample_ids import image_digests_known, sample_identifiers
from safeset.removals.listfile import COLUMNS
from safeset.removals.progress import stage

URL, SHA256, MD5 = 1, 2, 4  # pattern bits: which identifiers a sample has
PATTERN_COLUMNS = {URL: "url_sha256", SHA256: "image_sha256", MD5: "image_md5"}
BIN_BITS = 16
BINS = 1 << BIN_BITS


def pattern_of(table: pa.Table | pa.RecordBatch) -> np.ndarray:
    """Pattern bits of list rows: which of the three digests each row has."""
    pattern = np.zeros(table.num_rows, dtype=np.int8)
    for bit, name in PATTERN_COLUMNS.items():
        known = np.asarray(table.column(name).is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        pattern[known] |= bit
    return pattern


def describe_pattern(pattern: int) -> str:
    names = [name for bit, name in PATTERN_COLUMNS.items() if pattern & bit]
    return " + ".join(names + ["key"])


def shard_salt(seed: bytes, relpath: str) -> int:
    return int.from_bytes(hashlib.sha256(seed + b"\0" + relpath.encode("utf-8")).digest()[:8], "little")


def row_scores(salt: int, positions: np.ndarray) -> np.ndarray:
    """A uniform 64-bit hash of each position under the shard's salt (splitmix64's finaliser)."""
    with np.errstate(over="ignore"):
        z = positions.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(salt)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass(frozen=True)
class DrawTask:
    shard: Shard
    format: str
    options: ReadOptions
    withheld: np.ndarray  # sorted positions the run withheld: never decoys
    expected_rows: int  # from run.json: the dataset must be the one the run read
    salt: int
    mask: int  # pattern bits some real entry has
    needed: tuple[int, ...]  # patterns that need decoys
    cuts: dict[int, int] = field(default_factory=dict)  # pass 2: pattern -> the bin the cut falls in
    part: Path | None = None  # pass 2: where this shard's candidates go


def _rows(task: DrawTask, report) -> Iterator[tuple]:
    """(batch, columns, eligible, pattern, scores) of each batch of the shard."""
    reader = FORMATS[task.format].open(task.shard, task.options)
    try:
        rows = 0
        for batch in reader.batches():
            eligible = ~np.isin(batch.positions, task.withheld)
            if batch.errors:  # unreadable rows were withheld by the run anyway; never draw them
                eligible &= np.array([not error for error in batch.errors], dtype=bool)
            pattern = np.zeros(batch.num_rows, dtype=np.int8)
            url = reader.columns.url
            if task.mask & URL and url is not None and url in batch.table.schema.names:
                pattern[np.asarray(batch.table.column(url).is_valid().to_numpy(zero_copy_only=False), bool)] |= URL
            for bit, algo in ((SHA256, "sha256"), (MD5, "md5")):
                if task.mask & bit:
                    pattern[image_digests_known(batch, reader.columns, algo)] |= bit
            yield batch, reader.columns, eligible, pattern, row_scores(task.salt, batch.positions)
            rows += batch.num_rows
            report(batch.num_rows)
        if rows != task.expected_rows:
            raise InputError(task.shard.path, None, f"holds {rows} rows, the run read {task.expected_rows}: "
                                                    "the dataset changed since the run")
    finally:
        reader.close()


def count_pass(task: DrawTask, context, report) -> dict[int, np.ndarray]:
    """Pass 1: eligible rows per pattern, per score bin."""
    histograms = {p: np.zeros(BINS, dtype=np.int64) for p in task.needed}
    for _, _, eligible, pattern, scores in _rows(task, report):
        bins = (scores >> np.uint64(64 - BIN_BITS)).astype(np.int64)
        for p in task.needed:
            histograms[p] += np.bincount(bins[eligible & (pattern == p)], minlength=BINS)
    return histograms


def select_pass(task: DrawTask, context, report) -> int:
    """Pass 2: write the identifiers of rows at or below each pattern's cut bin; returns rows written."""
    writer = None
    written = 0
    schema = pa.schema([*(pa.field(c, pa.string()) for c in COLUMNS), pa.field("score", pa.uint64()),
                        pa.field("position", pa.int64()), pa.field("pattern", pa.int8()),
                        pa.field("boundary", pa.bool_())])
    try:
        for batch, columns, eligible, pattern, scores in _rows(task, report):
            bins = (scores >> np.uint64(64 - BIN_BITS)).astype(np.int64)
            cut = np.full(batch.num_rows, -1, dtype=np.int64)
            for p, cut_bin in task.cuts.items():
                cut[pattern == p] = cut_bin
            chosen = np.flatnonzero(eligible & (bins <= cut))
            if not len(chosen):
                continue
            identifiers = sample_identifiers(batch, columns, chosen)
            table = pa.table({
                **identifiers,
                "score": pa.array(scores[chosen], pa.uint64()),
                "position": pa.array(batch.positions[chosen], pa.int64()),
                "pattern": pa.array(pattern[chosen], pa.int8()),
                "boundary": pa.array(bins[chosen] == cut[chosen], pa.bool_()),
            }, schema=schema)
            if writer is None:
                writer = pq.ParquetWriter(task.part, schema)
            writer.write_table(table)
            written += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return written


@dataclass
class DecoyDraw:
    """What to draw: K per real entry of each pattern, from `shards` of the dataset."""

    format: str
    shards: list[Shard]
    shard_rows: dict[str, int]
    withheld: dict[str, np.ndarray]
    real_patterns: dict[int, int]  # pattern -> real entries
    factor: int
    seed: bytes
    columns: ColumnOverrides
    batch_rows: int

    @property
    def mask(self) -> int:
        mask = 0
        for pattern in self.real_patterns:
            mask |= pattern
        return mask

    def need(self) -> dict[int, int]:
        return {p: self.factor * n for p, n in self.real_patterns.items() if n}

    def _tasks(self, cuts=None, parts: Path | None = None) -> list[DrawTask]:
        options = ReadOptions(columns=self.columns, all_columns=False, needed=frozenset({"url", "sha256", "md5"}),
                              batch_rows=self.batch_rows, align_batches=True)
        return [
            DrawTask(shard=shard, format=self.format, options=options,
                     withheld=self.withheld.get(shard.relpath, np.empty(0, np.int64)),
                     expected_rows=self.shard_rows[shard.relpath], salt=shard_salt(self.seed, shard.relpath),
                     mask=self.mask, needed=tuple(sorted(self.need())), cuts=dict(cuts or {}),
                     part=None if parts is None else parts / f"part-{index:06d}.parquet")
            for index, shard in enumerate(self.shards)
        ]


def _no_context() -> None:
    return None


def _run(engine: LocalEngine, fn, tasks: list[DrawTask], progress) -> list:
    results = {}
    advance = progress.advance if progress is not None else (lambda rows: None)
    for task, result in engine.map(_no_context, (), fn, tasks, advance):
        if isinstance(result, BaseException):
            raise result
        results[task.shard.relpath] = result
        if progress is not None:
            progress.shard_finished(task.shard.relpath, True)
    return [results[task.shard.relpath] for task in tasks]


def _cuts(draw: DecoyDraw, histograms: list[dict[int, np.ndarray]]) -> tuple[dict[int, int], dict[int, int]]:
    """Per pattern: the bin the cut falls in, and how many rows of that bin to take."""
    cuts, remainders = {}, {}
    for pattern, need in draw.need().items():
        total = np.sum([h[pattern] for h in histograms], axis=0)
        available = int(total.sum())
        if available < need:
            raise ConfigError(
                f"--decoys {draw.factor}: {draw.real_patterns[pattern]:,} listed samples have "
                f"{describe_pattern(pattern)}, so {need:,} decoys like them are needed, but only "
                f"{available:,} kept samples of the dataset have exactly these identifiers; lower --decoys"
            )
        cumulative = np.cumsum(total)
        cut = int(np.searchsorted(cumulative, need))  # first bin where the count reaches `need`
        cuts[pattern] = cut
        remainders[pattern] = need - (int(cumulative[cut - 1]) if cut else 0)
    return cuts, remainders


def _boundary_choice(parts: list[Path], remainders: dict[int, int]) -> set[tuple[int, int]]:
    """(part index, position) of the rows taken from each pattern's cut bin: the lowest scores."""
    candidates: dict[int, list[tuple[int, int, int]]] = {}
    for index, part in enumerate(parts):
        if not part.exists():
            continue
        table = pq.read_table(part, columns=["score", "position", "pattern", "boundary"])
        table = table.filter(table.column("boundary"))
        for score, position, pattern in zip(*(table.column(c).to_pylist() for c in ("score", "position", "pattern"))):
            candidates.setdefault(pattern, []).append((score, index, position))
    chosen = set()
    for pattern, remainder in remainders.items():
        for _, index, position in sorted(candidates.get(pattern, []))[:remainder]:
            chosen.add((index, position))
    return chosen


def draw_decoys(draw: DecoyDraw, work: Path, workers: int | None = None, progress=None) -> Iterator[pa.Table]:
    """The decoys' identifiers (list columns), in tables; `work` holds the temporary parts."""
    if not draw.need():
        return
    engine = LocalEngine(workers)
    total_rows = sum(draw.shard_rows.values())
    stage(progress, "decoys: counting", len(draw.shards), total_rows)
    histograms = _run(engine, count_pass, draw._tasks(), progress)
    cuts, remainders = _cuts(draw, histograms)
    stage(progress, "decoys: drawing", len(draw.shards), total_rows)
    tasks = draw._tasks(cuts, work)
    _run(engine, select_pass, tasks, progress)
    parts = [task.part for task in tasks]
    chosen = _boundary_choice(parts, remainders)
    drop = [name for bit, name in PATTERN_COLUMNS.items() if not draw.mask & bit]
    for index, part in enumerate(parts):
        if not part.exists():
            continue
        table = pq.read_table(part)
        boundary = table.column("boundary").to_numpy(zero_copy_only=False)
        keep = ~boundary
        if boundary.any():
            positions = table.column("position").to_numpy()
            for row in np.flatnonzero(boundary).tolist():
                keep[row] = (index, int(positions[row])) in chosen
        table = table.filter(pa.array(keep, pa.bool_())).select(list(COLUMNS))
        for name in drop:
            table = table.set_column(table.schema.get_field_index(name), name, pa.nulls(table.num_rows, pa.string()))
        part.unlink()
        yield table


def real_pattern_counts(tables) -> dict[int, int]:
    counts: dict[int, int] = {}
    for table in tables:
        values, numbers = np.unique(pattern_of(table), return_counts=True)
        for value, number in zip(values.tolist(), numbers.tolist()):
            counts[value] = counts.get(value, 0) + number
    return counts

