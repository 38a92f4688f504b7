"""scan and clean: one job over every shard of a dataset.

`scan` writes run records only; `clean` also writes the cleaned copy in the
dataset's own layout; `removals-apply` and `removals-scan` are the same two
matching a removal list (a `MatchSource`) instead of banks. All account for
every row: per shard and in total, input_rows = kept_rows + removed_rows +
review_rows.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from safeset import __version__
from safeset.banks.store import BankStore
from safeset.datasets.base import ColumnOverrides, ReadOptions, Shard
from safeset.datasets.registry import discover
from safeset.datasets.writing import publish, temp_path
from safeset.engine.local import LocalEngine
from safeset.errors import ConfigError, SafesetError
from safeset.jobs.records import concat_removed, write_json_atomic
from safeset.jobs.shard_task import (
    ShardTask,
    WorkerContext,
    mark_done,
    process_shard,
    record_stem,
    shard_record_path,
)
from safeset.match import Matcher, MatchSource, logical_columns
from safeset.policy import Policy, load_policy
from safeset.review.negative import NEGATIVE_BANK, is_negative_bank, latest_negative_version, values_of
from safeset.signals.perceptual import MODES as PDQ_MODES

RECORDS_DIR = "_safeset"
COMMANDS = {"scan": False, "clean": True, "removals-scan": False, "removals-apply": True}  # -> writes a copy
COUNT_KEYS = ("input_rows", "kept_rows", "removed_rows", "review_rows")
EXIT_OK, EXIT_CONFIG, EXIT_FAILED_SHARDS, EXIT_INTERNAL = 0, 2, 3, 1


def default_batch_rows(format_name: str) -> int:
    """Rows per batch: memory is bounded by this, per worker.

    Image shards carry the image bytes in the batch, so they get few rows;
    metadata rows are small and larger batches amortise per-batch work.
    """
    return 1024 if format_name == "webdataset" else 65536


class Progress(Protocol):
    def start(self, shards: int, rows: int | None) -> None: ...

    def advance(self, rows: int) -> None: ...

    def shard_finished(self, relpath: str, ok: bool) -> None: ...


class NoProgress:
    def start(self, shards, rows):
        pass

    def advance(self, rows):
        pass

    def shard_finished(self, relpath, ok):
        pass


@dataclass
class JobSpec:
    command: str  # one of COMMANDS
    dataset: Path
    out: Path
    store_root: Path | None  # None: match no banks, only `sources`
    banks: list[str] | None = None  # None = every bank in the store
    policy: str | Policy | None = None  # preset name, TOML path or a Policy; None = default preset
    workers: int | None = None
    resume: bool = False
    format: str | None = None
    columns: ColumnOverrides = field(default_factory=ColumnOverrides)
    batch_rows: int | None = None  # None: per format (few images, many metadata rows)
    pdq_mode: str = "fast"  # "fast" (reduced-scale decoding) or "exact" (the reference's bits)
    dihedral: bool = False  # also match the 8 rotations/mirrorings of each image
    sources: tuple[MatchSource, ...] = ()  # matched besides banks (a removal list's indexes)

    @property
    def writes_copy(self) -> bool:
        return COMMANDS.get(self.command, False)


@dataclass
class RunResult:
    run: dict
    exit_code: int
    records_dir: Path

    @property
    def report_path(self) -> Path:
        return self.records_dir / "report.html"


def _worker_setup(store_root: Path | None, bank_refs: list[tuple[str, int]], policy: Policy, pdq_mode: str,
                  dihedral: bool, sources: tuple[MatchSource, ...] = (),
                  suppressed: dict[str, frozenset] | None = None) -> WorkerContext:
    versions = []
    if bank_refs:
        store = BankStore(store_root)
        versions = [store.open_version(name, version) for name, version in bank_refs]
    matcher = Matcher(versions, pdq_threshold=policy.pdq_threshold, sources=tuple(s.open() for s in sources),
                      suppressed=suppressed)
    return WorkerContext(matcher=matcher, policy=policy, pdq_mode=pdq_mode, dihedral=dihedral)


def _check_paths(spec: JobSpec) -> None:
    dataset = spec.dataset.resolve()
    out = spec.out.resolve()
    if not dataset.exists():
        raise ConfigError(f"dataset {spec.dataset} does not exist")
    if dataset.is_dir():
        if out == dataset or dataset in out.parents or out in dataset.parents:
            raise ConfigError(f"--out {spec.out} must lie outside the dataset {spec.dataset} (and not contain it)")
    elif out == dataset.parent or out == dataset:
        raise ConfigError(f"--out {spec.out} would overwrite the dataset file {spec.dataset}; choose another directory")
    if spec.command not in COMMANDS:
        raise ConfigError(f"unknown command {spec.command!r}")
    if spec.pdq_mode not in PDQ_MODES:
        raise ConfigError(f"--pdq-mode must be one of {', '.join(PDQ_MODES)}")


def check_spec(spec: JobSpec) -> None:
    """What `run_job` refuses before any work, for callers that prepare work first."""
    _check_paths(spec)
    if (spec.out / RECORDS_DIR).exists() and not spec.resume:
        raise ConfigError(f"{spec.out} already holds a run; pass --resume to continue it, or choose a new --out")


def _select_banks(spec: JobSpec, policy: Policy):
    if spec.store_root is None:
        if not spec.sources:
            raise ConfigError("nothing to match: no bank store and no other source")
        return []
    store = BankStore(spec.store_root)
    if spec.banks:
        if any(is_negative_bank(name) for name in spec.banks):
            raise ConfigError(f"{NEGATIVE_BANK} holds reviewers' false positives: it suppresses matches and "
                              "is never matched against")
        versions = [store.open_version(name) for name in spec.banks]
    else:
        versions = [store.open_version(info.name) for info in store.list_banks() if not is_negative_bank(info.name)]
    if not versions and not policy.has_score_only_rules and not spec.sources:
        raise ConfigError(
            f"no banks in store {store.root}: import one with `safeset bank import NAME FILE`"
        )
    return versions


def _negative_bank(spec: JobSpec):
    """The negative bank version this run applies (reviewers' false positives), or None."""
    return latest_negative_version(BankStore(spec.store_root)) if spec.store_root is not None else None


def _fingerprint(spec: JobSpec, bank_versions, policy: Policy, fmt_name: str, negative=None) -> str:
    material = {
        "command": spec.command,
        "format": fmt_name,
        "banks": [(v.name, v.version, v.digest) for v in bank_versions],
        "policy": policy.digest,
        "columns": [spec.columns.url, spec.columns.caption, spec.columns.key],
        "pdq": [spec.pdq_mode, spec.dihedral],
    }
    if spec.sources:
        material["sources"] = [source.describe() for source in spec.sources]
    if negative is not None:
        material["negative_bank"] = [negative.version, negative.digest]
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _prepare_out(spec: JobSpec) -> Path:
    records = spec.out / RECORDS_DIR
    if records.exists() and not spec.resume:
        raise ConfigError(f"{spec.out} already holds a run; pass --resume to continue it, or choose a new --out")
    (records / "shards").mkdir(parents=True, exist_ok=True)
    if spec.resume:
        for stale in spec.out.rglob("*.tmp-*"):
            stale.unlink() if stale.is_file() else shutil.rmtree(stale, ignore_errors=True)
    return records


def _load_done(records: Path, shard: Shard, fingerprint: str) -> dict | None:
    path = shard_record_path(records / "shards", shard)
    if not path.exists():
        return None
    record = json.loads(path.read_text("utf-8"))
    if record.get("fingerprint") != fingerprint:
        raise ConfigError(
            f"{path}: this output was produced with other banks, policy or options; use a new --out"
        )
    return record


def _describe_error(exc: BaseException, records: Path) -> str:
    if isinstance(exc, SafesetError):
        return str(exc)
    with open(records / "errors.log", "a", encoding="utf-8") as log:
        log.write("".join(traceback.format_exception(exc)))
    return f"internal error: {type(exc).__name__}: {exc} (traceback in {records / 'errors.log'})"


def run_job(spec: JobSpec, progress: Progress | None = None) -> RunResult:
    progress = progress or NoProgress()
    started = time.time()
    _check_paths(spec)
    policy = spec.policy if isinstance(spec.policy, Policy) else load_policy(spec.policy)
    fmt, shards = discover(spec.dataset, spec.format)
    if not shards:
        raise ConfigError(f"no {fmt.name} shards found in {spec.dataset}")
    bank_versions = _select_banks(spec, policy)
    negative = _negative_bank(spec)
    fingerprint = _fingerprint(spec, bank_versions, policy, fmt.name, negative)
    records = _prepare_out(spec)

    done: dict[str, dict] = {}
    for shard in shards:
        record = _load_done(records, shard, fingerprint) if spec.resume else None
        if record is not None:
            done[shard.relpath] = record
    options = ReadOptions(
        columns=spec.columns,
        all_columns=spec.writes_copy,
        extra_columns=tuple(policy.score_columns),
        needed=logical_columns(_signal_types(bank_versions, spec.sources)),
        batch_rows=spec.batch_rows or default_batch_rows(fmt.name),
        align_batches=spec.batch_rows is None,
    )
    tasks = [
        ShardTask(
            shard=shard,
            format=fmt.name,
            copy_root=spec.out if spec.writes_copy else None,
            records_dir=records / "shards",
            read_options=options,
            fingerprint=fingerprint,
        )
        for shard in shards
        if shard.relpath not in done
    ]
    failed: dict[str, str] = {}
    progress.start(len(tasks), None)
    bank_refs = [(v.name, v.version) for v in bank_versions]
    engine = LocalEngine(spec.workers)
    setup_args = (spec.store_root, bank_refs, policy, spec.pdq_mode, spec.dihedral, spec.sources,
                  values_of(negative) if negative is not None else None)
    for task, result in engine.map(_worker_setup, setup_args, process_shard, tasks, progress.advance):
        if isinstance(result, BaseException):
            failed[task.shard.relpath] = _describe_error(result, records)
        else:
            mark_done(result, task.records_dir, task.shard)
            done[task.shard.relpath] = result
        progress.shard_finished(task.shard.relpath, not isinstance(result, BaseException))

    run = _summarise(spec, fmt.name, shards, done, failed, bank_versions, policy, started)
    run["negative_bank"] = (
        {"name": negative.name, "version": negative.version, "digest": negative.digest, "entries": negative.manifest["entries"]}
        if negative is not None else None
    )
    _refuse_if_nothing_was_checked(run, _signal_types(bank_versions, spec.sources), policy)
    finished = [s for s in shards if s.relpath in done]
    concat_removed([records / "shards" / f"{record_stem(s)}.removed.parquet" for s in finished], records / "removed.parquet")
    write_json_atomic(run, records / "run.json")
    _write_report(run, records)
    return RunResult(run=run, exit_code=run["exit_code"], records_dir=records)


def _signal_types(bank_versions, sources) -> set[str]:
    """Every signal type the job matches: of the banks, and of other sources."""
    return {t for v in bank_versions for t in v.signal_types()} | {t for s in sources for t in s.signal_types}


def _refuse_if_nothing_was_checked(run: dict, bank_types: set[str], policy: Policy) -> None:
    """Fail closed: a run in which no selected bank could be matched at all
    (image banks on metadata without digests, say) checked nothing."""
    nothing_matched = bool(bank_types) and bank_types <= set(run["unavailable_signals"])
    if nothing_matched and not policy.has_score_only_rules and run["shards"]:
        raise ConfigError(
            f"none of the selected banks could be matched: the dataset has no {', '.join(sorted(bank_types))} "
            "signal, so nothing was checked (choose banks this dataset can be matched against)"
        )


def _summarise(spec, fmt_name, shards, done, failed, bank_versions, policy, started) -> dict:
    shard_rows = []
    totals = dict.fromkeys(COUNT_KEYS, 0)
    conservation_ok = True
    unavailable: set[str] = set()
    for shard in shards:
        if shard.relpath in done:
            record = done[shard.relpath]
            counts = {k: record[k] for k in COUNT_KEYS}
            balanced = counts["input_rows"] == counts["kept_rows"] + counts["removed_rows"] + counts["review_rows"]
            conservation_ok &= balanced
            for key in COUNT_KEYS:
                totals[key] += counts[key]
            unavailable.update(record.get("unavailable_signals", []))
            shard_rows.append({"relpath": shard.relpath, "status": "done", **counts, "seconds": record["seconds"]})
        elif shard.relpath in failed:
            shard_rows.append({"relpath": shard.relpath, "status": "failed", "error": failed[shard.relpath]})
    conservation_ok &= totals["input_rows"] == totals["kept_rows"] + totals["removed_rows"] + totals["review_rows"]
    seconds = time.time() - started
    exit_code = EXIT_OK if not failed else EXIT_FAILED_SHARDS
    if not conservation_ok:
        exit_code = EXIT_INTERNAL
    return {
        "safeset_version": __version__,
        "command": spec.command,
        "dataset": {
            "path": str(spec.dataset),
            "format": fmt_name,
            "columns": {"url": spec.columns.url, "caption": spec.columns.caption, "key": spec.columns.key},
            "shards": [
                {"relpath": s.relpath, "xxh3_128": done[s.relpath]["xxh3_128"], "bytes": done[s.relpath]["bytes"]}
                for s in shards
                if s.relpath in done
            ],
        },
        "out": str(spec.out),
        "banks": [
            {"name": v.name, "version": v.version, "digest": v.digest, "counts": v.manifest.get("counts", {})}
            for v in bank_versions
        ],
        "sources": [source.describe() for source in spec.sources],
        "policy": {"name": policy.name, "digest": policy.digest, **policy.to_dict()},
        "counts": totals,
        "conservation_ok": conservation_ok,
        "shards": shard_rows,
        "failed_shards": [{"relpath": r, "error": e} for r, e in failed.items()],
        "unavailable_signals": sorted(unavailable),
        "timings": {
            "started": datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "rows_per_second": round(totals["input_rows"] / seconds) if seconds > 0 else None,
        },
        "exit_code": exit_code,
    }


def _write_report(run: dict, records: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from safeset.report.html import WithheldSummary, render_report

    removed = pq.ParquetFile(records / "removed.parquet")
    withheld = WithheldSummary.of_tables(pa.Table.from_batches([b]) for b in removed.iter_batches(batch_size=65536))
    page = render_report(run, withheld)
    final = records / "report.html"
    tmp = temp_path(final)
    tmp.write_text(page, encoding="utf-8")
    publish(tmp, final)
