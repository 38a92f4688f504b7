"""`safeset review import RUN_DIR`: queue the rows a scan/clean run withheld for review.

Reads `_safeset/run.json` and `_safeset/removed.parquet`, takes the rows
whose action is `review`, and queues each with its evidence (the run's
reasons), digests, source URL, dataset/shard/key, first-seen time (when the
run started) and provenance hints. For webdataset runs the image bytes are
read back from the source tar and encrypted into the quarantine; without a
quarantine key that is refused (fail closed) unless `with_bytes=False`
(`--no-bytes`) asks for evidence-only items. Metadata-only datasets have no
bytes: their items are evidence-only.

Importing the same run again adds only rows not yet queued (a run is
identified by its dataset, output, banks and policy; a row by shard and key).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.errors import ConfigError, InputError
from safeset.review import provenance
from safeset.review.digests import from_evidence, merged
from safeset.review.errors import QuarantineKeyError
from safeset.review.model import BYTES_NONE, BYTES_NOT_IMPORTED, NewItem
from safeset.review.quarantine import NO_KEY_MESSAGE
from safeset.review.sources import ParquetHints, SampleImage, WebDatasetImages, verify_checksum

RECORDS_DIR = "_safeset"
ORIGIN_RUN = "run"
REVIEW_ACTION = "review"
_AUDITED_IDS = 1000

Progress = Callable[[int, int], None]  # (rows done, rows in all)


@dataclass
class ImportSummary:
    run_id: str
    run_dir: str
    dataset: str
    format: str
    review_rows: int = 0
    added: int = 0
    already_queued: int = 0
    with_bytes: int = 0
    without_bytes: int = 0
    item_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def records_dir(run_dir: Path) -> Path:
    """`RUN_DIR/_safeset`, or RUN_DIR itself when it is that directory."""
    run_dir = Path(run_dir)
    for candidate in (run_dir / RECORDS_DIR, run_dir):
        if (candidate / "run.json").is_file():
            return candidate
    raise ConfigError(f"{run_dir} holds no scan/clean run (no {RECORDS_DIR}/run.json)")


def load_run(records: Path) -> dict:
    path = records / "run.json"
    try:
        run = json.loads(path.read_text(encoding="utf-8"))
        run["dataset"]["path"], run["dataset"]["format"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(path, None, f"not a readable run record ({exc})") from None
    return run


def review_rows(records: Path) -> list[dict]:
    path = records / "removed.parquet"
    try:
        table = pq.read_table(path)
    except (OSError, ValueError) as exc:
        raise InputError(path, None, f"cannot read the withheld rows ({exc})") from None
    if "action" not in table.column_names:
        raise InputError(path, None, "no 'action' column: not a safeset removed.parquet")
    return table.filter(pc.equal(table["action"], REVIEW_ACTION)).to_pylist()


def run_identity(run: dict) -> str:
    """Stable across --resume and re-imports: what was scanned, into where, against what."""
    material = {
        "command": run.get("command"),
        "dataset": [run["dataset"]["path"], run["dataset"]["format"]],
        "out": run.get("out"),
        "banks": [(b.get("name"), b.get("version"), b.get("digest")) for b in run.get("banks", [])],
        "policy": (run.get("policy") or {}).get("digest"),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:32]


def _dataset_root(path: Path) -> Path:
    return path.parent if path.is_file() else path


def import_run(
    queue,
    run_dir: Path,
    *,
    actor: str,
    with_bytes: bool = True,
    dataset: Path | None = None,
    progress: Progress | None = None,
) -> ImportSummary:
    records = records_dir(run_dir)
    run = load_run(records)
    rows = review_rows(records)
    fmt = run["dataset"]["format"]
    dataset_path = Path(dataset) if dataset is not None else Path(run["dataset"]["path"])
    summary = ImportSummary(run_identity(run), str(Path(run_dir)), str(dataset_path), fmt, review_rows=len(rows))
    reads_bytes = fmt == "webdataset" and with_bytes
    if reads_bytes and rows and not queue.stores_bytes:
        raise QuarantineKeyError(f"{NO_KEY_MESSAGE}; or pass --no-bytes to queue evidence only")
    if reads_bytes and rows and not dataset_path.exists():
        raise ConfigError(f"the run's dataset {dataset_path} does not exist (pass --dataset if it moved)")
    checksums = {s["relpath"]: s.get("xxh3_128") for s in run["dataset"].get("shards", [])}
    done = 0
    for shard, shard_rows in _by_shard(rows).items():
        known = queue.known_keys(summary.run_id, shard)
        todo = [row for row in shard_rows if row["key"] not in known]
        summary.already_queued += len(shard_rows) - len(todo)
        if todo:
            _import_shard(queue, summary, run, dataset_path, shard, todo, reads_bytes, checksums.get(shard), actor)
        done += len(shard_rows)
        if progress is not None:
            progress(done, len(rows))
    queue.audit.append(actor, "review.import", {
        "run_id": summary.run_id, "run_dir": summary.run_dir, "dataset": summary.dataset,
        "review_rows": summary.review_rows, "added": summary.added, "already_queued": summary.already_queued,
        "with_bytes": summary.with_bytes, "item_ids": summary.item_ids[:_AUDITED_IDS],
    })
    return summary


def _by_shard(rows: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for row in rows:
        grouped.setdefault(row["source"], []).append(row)
    return grouped


def _import_shard(queue, summary, run, dataset_path, shard, rows, reads_bytes, checksum, actor) -> None:
    root = _dataset_root(dataset_path)
    images = None
    if summary.format == "webdataset" and reads_bytes:
        verify_checksum(root / shard, checksum)
        images = WebDatasetImages(root, shard)
    try:
        hints_path = images.parquet_path if images is not None else (root / shard if summary.format == "parquet" else None)
        hints = ParquetHints(hints_path)
        for row in rows:
            position = int(row["position"])
            sample = _sample(images, row, summary.format, reads_bytes)
            metadata_rows = images.parquet_rows if images is not None else len(hints.rows)
            found = merged(
                provenance.from_bytes(sample.data) if sample.data is not None else None,
                provenance.from_metadata(sample.metadata),
                hints.at(position) if position < metadata_rows else None,
            )
            item_id = queue.add(_new_item(run, summary, shard, row, sample, found), sample.data, actor, audit=False)
            summary.added += 1
            summary.item_ids.append(item_id)
            if sample.data is not None:
                summary.with_bytes += 1
            else:
                summary.without_bytes += 1
    finally:
        if images is not None:
            images.close()


def _sample(images: WebDatasetImages | None, row: dict, fmt: str, reads_bytes: bool) -> SampleImage:
    if images is not None:
        return images.at(int(row["position"]), row.get("key"))
    if fmt == "webdataset" and not reads_bytes:
        return SampleImage(None, BYTES_NOT_IMPORTED, "imported without bytes (--no-bytes)")
    return SampleImage(None, BYTES_NONE, f"{fmt} datasets hold no image bytes")


def _new_item(run: dict, summary: ImportSummary, shard: str, row: dict, sample: SampleImage, found: dict) -> NewItem:
    reasons = list(row.get("reasons") or [])
    recorded = {"md5": row.get("image_md5"), "sha256": row.get("image_sha256"), "url_sha256": row.get("url_sha256")}
    return NewItem(
        origin=ORIGIN_RUN,
        source_url=row.get("url"),
        first_seen=(run.get("timings") or {}).get("started"),
        dataset=run["dataset"]["path"],
        shard=shard,
        key=row["key"],
        digests=merged(recorded, from_evidence(reasons)),
        evidence=reasons,
        provenance=found,
        run_id=summary.run_id,
        position=int(row["position"]),
        bytes_state=sample.state if sample.data is None else None,
        bytes_note=sample.note,
    )
