"""One shard, start to finish: read, signals, match, policy, write, record.

Runs inside an engine worker. Outputs go to temporary names and are renamed
when complete. The coordinating process then flushes them to disk and writes
the shard's `.json` record (`mark_done`), which marks the shard done: `--resume`
never redoes it, and a crash anywhere before leaves the shard to be redone
from scratch.
"""

from __future__ import annotations

import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from safeset.datasets.base import ReadOptions, Shard
from safeset.datasets.hashed_file import file_checksum
from safeset.datasets.registry import FORMATS
from safeset.datasets.writing import flush_to_disk
from safeset.errors import InputError
from safeset.evidence import unchecked
from safeset.jobs.records import RemovedRowsWriter, reason_record, write_json_atomic
from safeset.jobs.sample_ids import image_digest_hex
from safeset.match import Matcher
from safeset.policy import ACTIONS, Policy
from safeset.signals.rows import RowSignals

KEEP, REVIEW, REMOVE = (ACTIONS.index(a) for a in ("keep", "review", "remove"))


@dataclass(frozen=True)
class ShardTask:
    shard: Shard
    format: str
    copy_root: Path | None  # where the cleaned copy goes; None for scan
    records_dir: Path
    read_options: ReadOptions
    fingerprint: str  # of banks + policy + options: a done shard is reused only if it matches


@dataclass
class WorkerContext:
    matcher: Matcher
    policy: Policy
    pdq_mode: str = "fast"
    dihedral: bool = False


def record_stem(shard: Shard) -> str:
    return urllib.parse.quote(shard.relpath, safe="")


def shard_record_path(records_dir: Path, shard: Shard) -> Path:
    return records_dir / f"{record_stem(shard)}.json"


def _check_score_columns(policy: Policy, schema, shard: Shard) -> None:
    names = {name.lower() for name in schema.names}
    missing = [c for c in policy.score_columns if c.lower() not in names]
    if missing:
        raise InputError(
            shard.path, None, f"policy {policy.name!r} needs score column(s) {missing}, absent from this shard"
        )


def process_shard(task: ShardTask, context: WorkerContext, report: Callable[[int], None]) -> dict:
    started = time.time()
    shard = task.shard
    fmt = FORMATS[task.format]
    reader = fmt.open(shard, task.read_options)
    writer = None
    counts = {"input_rows": 0, "kept_rows": 0, "removed_rows": 0, "review_rows": 0}
    removed = RemovedRowsWriter(task.records_dir / f"{record_stem(shard)}.removed.parquet")
    try:
        _check_score_columns(context.policy, reader.schema, shard)
        if task.copy_root is not None:
            writer = fmt.open_writer(shard, reader, task.copy_root)
        for batch in reader.batches():
            signals = RowSignals(batch, reader.columns, context.pdq_mode, context.dihedral)
            evidence = context.matcher.match(signals)
            evidence.extend(unchecked(row, reason) for row, reason in signals.problems)
            decisions = _decide(context.policy, evidence, batch, shard)
            keep = decisions.actions == KEEP
            if writer is not None:
                writer.write(batch, keep)
            _record_withheld(removed, shard, batch, signals, decisions)
            counts["input_rows"] += batch.num_rows
            counts["kept_rows"] += int(keep.sum())
            counts["removed_rows"] += int((decisions.actions == REMOVE).sum())
            counts["review_rows"] += int((decisions.actions == REVIEW).sum())
            report(batch.num_rows)
        outputs = writer.commit() if writer is not None else []
        removed_path = removed.commit()
        # A reader that read the whole file on the way hashed it too (parquet scans).
        checksum = getattr(reader, "checksum", lambda: None)() or file_checksum(shard.path)
    except BaseException:
        if writer is not None:
            writer.abort()
        removed.abort()
        raise
    finally:
        reader.close()
    return {
        "relpath": shard.relpath,
        "status": "done",
        "fingerprint": task.fingerprint,
        "xxh3_128": checksum,
        "bytes": shard.path.stat().st_size,
        **counts,
        "outputs": [str(p) for p in [*outputs, removed_path]],
        "unavailable_signals": sorted(context.matcher.unavailable),
        "seconds": round(time.time() - started, 3),
    }


def _decide(policy: Policy, evidence, batch, shard: Shard):
    try:
        return policy.decide(batch.num_rows, evidence, batch.table)
    except ValueError as exc:  # a score column this shard holds as text, say
        first, last = int(batch.positions[0]), int(batch.positions[-1])
        raise InputError(shard.path, f"rows {first}-{last}", str(exc)) from None


def mark_done(record: dict, records_dir: Path, shard: Shard) -> None:
    """Flush the shard's outputs to disk, then write its record: the shard is done."""
    flush_to_disk(record["outputs"])
    write_json_atomic(record, shard_record_path(records_dir, shard), durable=True)


def _record_withheld(removed: RemovedRowsWriter, shard: Shard, batch, signals: RowSignals, decisions) -> None:
    withheld = np.flatnonzero(decisions.actions != KEEP)
    if not len(withheld):
        return
    keys = batch.keys_at(withheld)
    md5s = image_digest_hex(batch, signals.columns, withheld, "md5").to_pylist()
    sha256s = image_digest_hex(batch, signals.columns, withheld, "sha256").to_pylist()
    for index, row in enumerate(withheld.tolist()):
        url = canonical = None
        if signals.url is not None:
            url = signals.url[row].as_py()
            canonical = signals.canonical_at(row) if url is not None else None
        removed.add(
            key=keys[index],
            source=shard.relpath,
            position=int(batch.positions[row]),
            url=url,
            canonical_url=canonical,
            action=ACTIONS[decisions.actions[row]],
            reasons=[reason_record(rule, item) for rule, item in decisions.reasons.get(row, [])],
            image_md5=md5s[index],
            image_sha256=sha256s[index],
        )
