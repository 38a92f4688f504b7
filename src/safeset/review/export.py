"""`safeset review export --out DIR`: confirmed items for a hotline report.

Writes `confirmed.json` and `confirmed.csv` (atomically: temporary name,
then rename) with what a hotline needs to act: where the content was (source
URL, dataset/shard/key, first-seen time), what identifies it (md5, sha1,
sha256, pdq, URL digest), which banks matched, and the decision (who, when,
note, the local bank version it went into). Never image bytes, never
quarantine file names.

CSV cells that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`,
tab, CR at the start: source URLs come from strangers) get a leading `'`;
the JSON keeps every value exactly.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from safeset.datasets.writing import discard, flush_to_disk, publish, temp_path
from safeset.review import clock
from safeset.review.model import CONFIRM, DECIDED, ReviewItem

EXPORT_FORMAT = "safeset-review-export/1"
JSON_NAME, CSV_NAME = "confirmed.json", "confirmed.csv"
CSV_COLUMNS = (
    "item_id", "origin", "source_url", "first_seen", "dataset", "shard", "key", "account_id",
    "md5", "sha1", "sha256", "pdq", "url_sha256", "banks_matched", "decision", "decided_at", "reviewer",
    "note", "confirmed_bank", "confirmed_bank_version",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_PAGE = 1000


@dataclass
class ExportResult:
    items: int
    json_path: Path
    csv_path: Path

    def to_dict(self) -> dict:
        return {"items": self.items, "json": str(self.json_path), "csv": str(self.csv_path)}


def export_record(item: ReviewItem, decision) -> dict:
    """One confirmed item as exported; `decision` is its confirming `Decision`."""
    digests = item.digests
    return {
        "item_id": item.id,
        "origin": item.origin,
        "source_url": item.source_url,
        "first_seen": item.first_seen,
        "dataset": item.dataset,
        "shard": item.shard,
        "key": item.key,
        "account_id": item.account_id,
        "md5": digests.get("md5"),
        "sha1": digests.get("sha1"),
        "sha256": digests.get("sha256"),
        "pdq": digests.get("pdq"),
        "url_sha256": digests.get("url_sha256"),
        "matches": [
            {k: e.get(k) for k in ("bank", "bank_version", "signal_type", "distance", "rule")}
            for e in item.evidence
            if e.get("bank")
        ],
        "banks_matched": item.banks,
        "decision": item.decision,
        "decided_at": item.decided_at,
        "reviewer": item.decided_by,
        "note": decision.note if decision else None,
        "confirmed_bank": decision.bank if decision else None,
        "confirmed_bank_version": decision.bank_version if decision else None,
    }


def confirmed_records(queue) -> list[dict]:
    records, offset = [], 0
    while True:
        page = queue.list(status=DECIDED, decision=CONFIRM, limit=_PAGE, offset=offset)
        for item in page:
            confirming = [d for d in queue.decisions(item.id) if d.decision == CONFIRM]
            records.append(export_record(item, confirming[-1] if confirming else None))
        if len(page) < _PAGE:
            return records
        offset += _PAGE


def _csv_cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        value = ";".join(map(str, value))
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _write_atomic(path: Path, text: str) -> None:
    temporary = temp_path(path)
    try:
        temporary.write_text(text, encoding="utf-8", newline="")
        flush_to_disk([temporary])
        publish(temporary, path)
    except BaseException:
        discard(temporary)
        raise


def export_confirmed(queue, out_dir: Path, *, actor: str) -> ExportResult:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records = confirmed_records(queue)
    document = {"format": EXPORT_FORMAT, "exported_at": clock.now_text(), "count": len(records), "items": records}
    json_path, csv_path = out_dir / JSON_NAME, out_dir / CSV_NAME
    _write_atomic(json_path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for record in records:
        writer.writerow([_csv_cell(record[column]) for column in CSV_COLUMNS])
    _write_atomic(csv_path, buffer.getvalue())
    queue.audit.append(actor, "review.export", {"items": len(records), "out": str(out_dir)})
    return ExportResult(len(records), json_path, csv_path)
