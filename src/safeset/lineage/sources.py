"""The samples a taint question is about: read from clean runs and removal lists.

A SOURCE is either

- a clean (or scan) run's output directory: `OUT/_safeset/removed.parquet`
  (`OUT/_safeset` or the file itself are accepted too). Rows with action
  `remove` are listed samples. Rows with action `review` were withheld
  because a rule asked for a human look or the row could not be checked:
  they are not confirmed, so they are counted apart (`review_samples`) and
  taint nothing, unless `include_review` makes them count as listed;
- a removal list: parquet with `url_sha256`, `image_sha256`, `image_md5`
  columns and schema metadata `safeset.removal_list`. A list published with
  decoys (`decoys` > 0) is refused: decoys are there to hide which entries
  are real when copies are cleaned, and counting them would report exposure
  that never happened. A list whose metadata does not say how many decoys it
  holds is refused too (`safeset.removals.listfile` checks the metadata).

Every digest is validated; a malformed one is an error naming the file and
row, never skipped. Samples listed by several sources count once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.errors import ConfigError, InputError
from safeset.signals.kernels import hex_decode_array

REMOVAL_LIST_METADATA = b"safeset.removal_list"
RUN_RECORDS = ("_safeset", "removed.parquet")
DIGEST_COLUMNS = {"url_sha256": 32, "image_sha256": 32, "image_md5": 16}
ACTIONS = ("remove", "review")
READ_BATCH_ROWS = 1 << 16


@dataclass
class ListedSamples:
    """One row per distinct listed sample: its digests (zero where absent) and validity masks."""

    digests: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]
    review: np.ndarray  # True: withheld for review, not confirmed
    sources: list[dict] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.review)


def _resolve_source(path: Path) -> tuple[str, Path]:
    """("run", removed.parquet) or ("removal_list", file)."""
    path = Path(path)
    if path.is_dir():
        for candidate in (path.joinpath(*RUN_RECORDS), path / RUN_RECORDS[1]):
            if candidate.is_file():
                return "run", candidate
        raise ConfigError(f"{path}: not a clean run's output directory (no {'/'.join(RUN_RECORDS)})")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file or directory")
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, None, f"not a readable parquet file ({exc})") from None
    metadata = schema.metadata or {}
    if REMOVAL_LIST_METADATA in metadata:
        return "removal_list", path
    if "action" in schema.names and "url_sha256" in schema.names:
        return "run", path
    raise ConfigError(f"{path}: neither a removal list (no '{REMOVAL_LIST_METADATA.decode()}' metadata) "
                      "nor a run's removed.parquet")


def _removal_list_info(path: Path) -> dict:
    """The list's metadata (checked by the removals module's reader); refuses lists with decoys."""
    from safeset.removals.listfile import open_removal_list

    info, parquet = open_removal_list(path)
    parquet.close()
    if info["decoys"] > 0:
        raise ConfigError(f"{path}: this removal list holds {info['decoys']:,} decoy entries; a decoy list is for "
                          "cleaning copies, not for counting exposure: use the list published without decoys")
    return info


def _run_info(removed_path: Path) -> dict:
    run_json = removed_path.parent / "run.json"
    if not run_json.is_file():
        return {}
    try:
        run = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"warning": f"{run_json} is unreadable"}
    info = {"command": run.get("command"), "dataset": (run.get("dataset") or {}).get("path")}
    failed = run.get("failed_shards") or []
    if failed:
        info["warning"] = (f"the run has {len(failed)} failed shard(s): their withheld samples are not in "
                           "removed.parquet, so exposure to them is not counted")
    return info


def _decode(path: Path, batch: pa.RecordBatch, column: str, first_row: int) -> tuple[np.ndarray, np.ndarray]:
    nbytes = DIGEST_COLUMNS[column]
    if column not in batch.schema.names:
        return np.zeros((batch.num_rows, nbytes), np.uint8), np.zeros(batch.num_rows, bool)
    values = batch.column(column)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise InputError(path, None, f"column {column!r} must hold hex text, not {values.type}")
    digests, valid = hex_decode_array(values, nbytes)
    present = np.asarray(values.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    bad = np.flatnonzero(present & ~valid)
    if len(bad):
        raise InputError(path, f"row {first_row + int(bad[0])}",
                         f"invalid {column} value (expected {2 * nbytes} hex digits)")
    return digests, valid


def _read_source(kind: str, path: Path, include_review: bool):
    """Digests, validity and review flags of every row of one source, plus its description."""
    info = {"path": str(path), "kind": "removal_list" if kind == "removal_list" else "clean_run"}
    if kind == "removal_list":
        info["metadata"] = _removal_list_info(path)
    else:
        info.update(_run_info(path))
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(path, None, f"not a readable parquet file ({exc})") from None
    wanted = [c for c in (*DIGEST_COLUMNS, "action") if c in parquet.schema_arrow.names]
    if kind == "run" and "action" not in wanted:
        raise InputError(path, None, "run records without an 'action' column")
    digests = {c: [] for c in DIGEST_COLUMNS}
    valid = {c: [] for c in DIGEST_COLUMNS}
    review: list[np.ndarray] = []
    rows = 0
    try:
        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=wanted):
            for column in DIGEST_COLUMNS:
                d, v = _decode(path, batch, column, rows)
                digests[column].append(d)
                valid[column].append(v)
            review.append(_review_flags(path, batch, rows))
            rows += batch.num_rows
    except pa.ArrowException as exc:
        raise InputError(path, f"after row {rows}", f"cannot be read ({exc})") from None
    finally:
        parquet.close()
    joined = {c: np.concatenate(digests[c]) if digests[c] else np.zeros((0, n), np.uint8)
              for c, n in DIGEST_COLUMNS.items()}
    masks = {c: np.concatenate(valid[c]) if valid[c] else np.zeros(0, bool) for c in DIGEST_COLUMNS}
    flags = np.concatenate(review) if review else np.zeros(0, bool)
    info["rows"] = rows
    info["review_rows"] = int(flags.sum())
    if include_review:
        flags = np.zeros(rows, bool)
    return joined, masks, flags, info


def _review_flags(path: Path, batch: pa.RecordBatch, first_row: int) -> np.ndarray:
    """True for rows withheld for review (run records only; a removal list's rows are all removals)."""
    if "action" not in batch.schema.names:
        return np.zeros(batch.num_rows, bool)
    actions = batch.column("action")
    known = np.asarray(pc.is_in(actions, value_set=pa.array(ACTIONS)).to_numpy(zero_copy_only=False), dtype=bool)
    if not known.all():
        row = int(np.flatnonzero(~known)[0])
        raise InputError(path, f"row {first_row + row}", f"unknown action {actions[row].as_py()!r} "
                         f"(expected one of {', '.join(ACTIONS)})")
    return np.asarray(pc.equal(actions, "review").to_numpy(zero_copy_only=False), dtype=bool)


def load_listed_samples(paths: list[Path], include_review: bool = False) -> ListedSamples:
    """Every distinct sample the sources list (a sample listed as remove anywhere counts as remove)."""
    if not paths:
        raise ConfigError("give at least one SOURCE: a clean run's output directory or a removal list")
    parts = [_read_source(*_resolve_source(p), include_review) for p in paths]
    digests = {c: np.concatenate([p[0][c] for p in parts]) for c in DIGEST_COLUMNS}
    valid = {c: np.concatenate([p[1][c] for p in parts]) for c in DIGEST_COLUMNS}
    review = np.concatenate([p[2] for p in parts])
    sources = [p[3] for p in parts]
    traceable = np.zeros(len(review), bool)
    for column in DIGEST_COLUMNS:
        traceable |= valid[column]
    for part, start in zip(parts, np.cumsum([0] + [len(p[2]) for p in parts[:-1]])):
        rows = slice(int(start), int(start) + len(part[2]))
        part[3]["untraceable_rows"] = int((~traceable[rows]).sum())
    keep = np.flatnonzero(traceable)
    digests = {c: d[keep] for c, d in digests.items()}
    valid = {c: v[keep] for c, v in valid.items()}
    review = review[keep]
    return _distinct(digests, valid, review, sources)


def _distinct(digests, valid, review, sources) -> ListedSamples:
    """Collapse samples with identical digests; a sample is `review` only if every copy of it is."""
    if not len(review):
        return ListedSamples(digests, valid, review, sources)
    columns = [np.where(valid[c][:, None], digests[c], 0).astype(np.uint8) for c in DIGEST_COLUMNS]
    columns += [np.stack([valid[c] for c in DIGEST_COLUMNS], axis=1).astype(np.uint8)]
    packed = np.ascontiguousarray(np.concatenate(columns, axis=1))
    as_rows = packed.view(np.dtype((np.void, packed.shape[1]))).reshape(-1)
    _, first, inverse = np.unique(as_rows, return_index=True, return_inverse=True)
    confirmed = np.zeros(len(first), bool)
    np.logical_or.at(confirmed, inverse.reshape(-1), ~review)
    return ListedSamples(
        {c: d[first] for c, d in digests.items()},
        {c: v[first] for c, v in valid.items()},
        ~confirmed,
        sources,
    )
