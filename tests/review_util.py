"""Helpers for review tests: benign drawn images, a webdataset run with review rows, a queue.

"Known bad" is simulated: the bank holds hashes of benign, programmatically
drawn images.
"""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from drawn_images import drawn_image, jpeg  # noqa: F401 - re-exported for the review tests
from safeset.audit import AuditLog
from safeset.banks.store import BankStore
from safeset.db import Database
from safeset.review.quarantine import Quarantine
from safeset.review.queue import ReviewQueue

# Matches of the PDQ bank go to review; the MD5 bank removes; unreadable images go to review.
REVIEW_POLICY = """
name = "review-pdq"
default = "keep"
unchecked = "review"

[[rules]]
name = "md5-remove"
action = "remove"
signal_types = ["md5"]

[[rules]]
name = "pdq-review"
action = "review"
signal_types = ["pdq"]
"""


def write_webdataset(directory: Path, samples: dict[str, bytes], ai_generated: dict[str, bool]) -> None:
    """`00000.tar` (jpg + json per sample) and a sibling parquet with an `ai_generated` column."""
    directory.mkdir(parents=True, exist_ok=True)
    with tarfile.open(directory / "00000.tar", "w", format=tarfile.USTAR_FORMAT) as tar:
        for key, image in samples.items():
            meta = json.dumps({"url": url_of(key), "caption": f"placeholder caption {key}"}).encode()
            for name, data in ((f"{key}.jpg", image), (f"{key}.json", meta)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    keys = list(samples)
    pq.write_table(
        pa.table({
            "key": keys,
            "url": [url_of(k) for k in keys],
            "caption": [f"placeholder caption {k}" for k in keys],
            "ai_generated": [ai_generated.get(k, False) for k in keys],
        }),
        directory / "00000.parquet",
    )


def url_of(key: str) -> str:
    return f"https://example.com/images/{key}.jpg"


@dataclass
class ReviewRun:
    """A clean run of a drawn webdataset: what it holds and where."""

    dataset: Path
    out: Path
    store: BankStore
    samples: dict[str, bytes]
    review_keys: set[str]
    removed_keys: set[str]


def make_review_run(tmp_path: Path) -> ReviewRun:
    """Samples: 0 benign (kept), 1 a copy of a known PDQ image (review), 2 not an image (review, unchecked),
    3 exact bytes of a known MD5 (removed), 4 another known PDQ copy, marked AI-generated (review)."""
    from safeset.jobs.run import JobSpec, run_job
    from safeset.pdq import hash_image

    known_a, known_b = drawn_image(1), drawn_image(2)
    exact_bad = jpeg(drawn_image(3))
    samples = {
        "000000000": jpeg(drawn_image(10)),
        "000000001": jpeg(known_a, 95),
        "000000002": b"\xff\xd8\xff not really a jpeg",
        "000000003": exact_bad,
        "000000004": jpeg(known_b, 92),
    }
    dataset = tmp_path / "wds"
    write_webdataset(dataset, samples, ai_generated={"000000004": True})
    store = BankStore(tmp_path / "store")
    pdq_hashes = [hash_image(jpeg(known_a.resize((320, 240)), 70))[0], hash_image(jpeg(known_b, 75))[0]]
    store.add_entries("KNOWN_PDQ", [("pdq", h) for h in pdq_hashes])
    import hashlib

    store.add_entries("KNOWN_MD5", [("md5", hashlib.md5(exact_bad).hexdigest())])
    policy = tmp_path / "review-policy.toml"
    policy.write_text(REVIEW_POLICY)
    out = tmp_path / "run"
    result = run_job(JobSpec(command="clean", dataset=dataset, out=out, store_root=store.root, policy=str(policy), workers=1))
    assert result.exit_code == 0, result.run
    return ReviewRun(dataset, out, store, samples, {"000000001", "000000002", "000000004"}, {"000000003"})


def new_key() -> bytes:
    return secrets.token_bytes(32)


def make_queue(store_root: Path, db_url: str, key: bytes | None = None, **options) -> ReviewQueue:
    store_root = Path(store_root)
    db = Database.open(db_url, store_root)
    audit = AuditLog(db, anchor_path=store_root / "audit-head.json")
    quarantine = Quarantine(store_root / "quarantine", key)
    return ReviewQueue(db, BankStore(store_root), audit, quarantine, **options)
