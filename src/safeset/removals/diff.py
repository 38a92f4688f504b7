"""`removals diff`: the samples of an old copy that a cleaned release no longer has.

For datasets cleaned elsewhere (a release that says only "we removed some
samples"), the list is worked out from the two copies, by canonical URL
digest: every row of OLD whose digest is not among NEW's. NEW's digests go
into a slot index built in bounded memory (`spillruns`); OLD is then
streamed against it, shard by shard, in parallel. Rows of OLD without a
URL cannot be compared and are counted, not listed.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from safeset.datasets.base import ColumnOverrides, ReadOptions, Shard
from safeset.datasets.registry import FORMATS, discover
from safeset.engine.local import LocalEngine
from safeset.errors import ConfigError
from safeset.jobs.run import default_batch_rows
from safeset.jobs.sample_ids import sample_identifiers
from safeset.removals.listfile import COLUMNS, SCHEMA, RemovalListWriter, list_metadata
from safeset.removals.progress import stage
from safeset.removals.publish import parse_dataset_name
from safeset.removals.slotindex import SlotIndex
from safeset.removals.spillruns import KeySpill, SpillInfo, build_slot_index
from safeset.signals.rows import RowSignals

INDEX_STEM = "new_url_sha256"


@dataclass
class DiffResult:
    path: Path
    metadata: dict
    old_rows: int
    new_rows: int
    listed: int  # rows of OLD absent from NEW
    without_url: int  # rows of OLD that could not be compared


@dataclass(frozen=True)
class ShardWork:
    shard: Shard
    format: str
    options: ReadOptions
    out: Path  # spill file of a NEW shard's digests, or the listed rows (.parquet) of an OLD shard


@dataclass
class Outcome:
    rows: int = 0
    listed: int = 0
    without_url: int = 0
    spill: SpillInfo | None = None  # a NEW shard's digests, bucketed for the index


def _url_digests(reader, batch):
    if reader.columns.url is None:
        raise ConfigError(f"{reader.shard.path}: no URL column to compare by (use --old-url-column / "
                          "--new-url-column)")
    return RowSignals(batch, reader.columns).url_digest("sha256", "canonical")


def digest_new_shard(work: ShardWork, context, report) -> Outcome:
    """Canonical-URL SHA-256 of every row of a NEW shard with a URL, spilled into runs for the index."""
    reader = FORMATS[work.format].open(work.shard, work.options)
    spill = KeySpill(work.out, 32)
    outcome = Outcome()
    try:
        for batch in reader.batches():
            digests, valid = _url_digests(reader, batch)
            spill.add(digests, valid, outcome.rows)  # the index's ids (rows of the shard) go unused
            outcome.rows += batch.num_rows
            report(batch.num_rows)
    finally:
        reader.close()
    outcome.spill = spill.close()
    return outcome


def _open_index(directory: str) -> SlotIndex:
    return SlotIndex.load(directory, INDEX_STEM)


def list_old_shard(work: ShardWork, index: SlotIndex, report) -> Outcome:
    """Rows of an OLD shard whose URL digest NEW lacks, as list rows in a parquet part."""
    reader = FORMATS[work.format].open(work.shard, work.options)
    outcome = Outcome()
    writer = None
    try:
        for batch in reader.batches():
            digests, valid = _url_digests(reader, batch)
            found = np.zeros(batch.num_rows, dtype=bool)
            rows, _ = index.lookup(digests, valid)
            found[rows] = True
            absent = np.flatnonzero(valid & ~found)
            outcome.rows += batch.num_rows
            outcome.without_url += int((~valid).sum())
            if len(absent):
                table = pa.table(sample_identifiers(batch, reader.columns, absent), schema=SCHEMA)
                if writer is None:
                    writer = pq.ParquetWriter(work.out, SCHEMA)
                writer.write_table(table)
                outcome.listed += table.num_rows
            report(batch.num_rows)
    finally:
        reader.close()
        if writer is not None:
            writer.close()
    return outcome


def _run_all(engine, setup, args, fn, works, progress) -> list[Outcome]:
    outcomes = {}
    advance = progress.advance if progress is not None else (lambda rows: None)
    for work, result in engine.map(setup, args, fn, works, advance):
        if isinstance(result, BaseException):
            raise result
        outcomes[work.shard.relpath] = result
        if progress is not None:
            progress.shard_finished(work.shard.relpath, True)
    return [outcomes[work.shard.relpath] for work in works]


def _no_context() -> None:
    return None


def _works(path: Path, fmt_name: str | None, columns: ColumnOverrides, work_dir: Path, suffix: str,
           needed: frozenset[str]) -> list[ShardWork]:
    fmt, shards = discover(path, fmt_name)
    options = ReadOptions(columns=columns, all_columns=False, needed=needed,
                          batch_rows=default_batch_rows(fmt.name), align_batches=True)
    return [ShardWork(shard, fmt.name, options, work_dir / f"{i:06d}{suffix}") for i, shard in enumerate(shards)]


def diff_list(old, new, out_path, *, dataset_name: str | None = None, old_format: str | None = None,
              new_format: str | None = None, old_columns: ColumnOverrides | None = None,
              new_columns: ColumnOverrides | None = None, workers: int | None = None, tmp_dir=None,
              progress=None) -> DiffResult:
    """Write the list of OLD's samples absent from NEW (by canonical URL digest) to `out_path`."""
    old, new, out_path = Path(old), Path(new), Path(out_path)
    name, version = parse_dataset_name(dataset_name)
    engine = LocalEngine(workers)
    with tempfile.TemporaryDirectory(prefix="safeset-diff-", dir=tmp_dir) as work:
        work_dir = Path(work)
        new_works = _works(new, new_format, new_columns or ColumnOverrides(), work_dir, ".new",
                           frozenset({"url"}))
        old_works = _works(old, old_format, old_columns or ColumnOverrides(), work_dir, ".old.parquet",
                           frozenset({"url", "sha256", "md5"}))  # listed rows carry their image digests
        stage(progress, "indexing NEW", len(new_works), None)
        new_outcomes = _run_all(engine, _no_context, (), digest_new_shard, new_works, progress)
        build_slot_index(work_dir, INDEX_STEM, [o.spill for o in new_outcomes],
                         max((o.rows for o in new_outcomes), default=0), workers)
        stage(progress, "comparing OLD", len(old_works), None)
        old_outcomes = _run_all(engine, _open_index, (str(work_dir),), list_old_shard, old_works, progress)
        listed = sum(o.listed for o in old_outcomes)
        metadata = list_metadata(source_dataset=name or str(old), source_version=version, total=listed, decoys=0,
                                 kind="diff")
        stage(progress, "writing list", None, None)
        writer = RemovalListWriter(out_path, metadata)
        try:
            for item in old_works:
                if item.out.exists():
                    for batch in pq.ParquetFile(item.out).iter_batches(columns=list(COLUMNS)):
                        writer.write(batch)
            writer.commit()
        except BaseException:
            writer.abort()
            raise
    return DiffResult(path=out_path, metadata=metadata, old_rows=sum(o.rows for o in old_outcomes),
                      new_rows=sum(o.rows for o in new_outcomes), listed=listed,
                      without_url=sum(o.without_url for o in old_outcomes))
