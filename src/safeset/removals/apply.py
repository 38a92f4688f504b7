"""`removals apply`: clean a copy of a dataset with a removal list.

The copy may be re-keyed, re-ordered, a subset, in any supported format: rows
are matched by canonical URL digest, image digest or key (`--match`), never
by position. The list's values are first written into sorted-digest indexes
in a temporary directory (bounded memory, memory-mapped by the workers),
then the ordinary clean job runs with the list as its only match source and
one rule, `removal-list`: the same cleaned copy, run records, conservation
check and `--resume` as `safeset clean`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from safeset.datasets.base import ColumnOverrides
from safeset.errors import ConfigError
from safeset.jobs.run import JobSpec, Progress, RunResult, check_spec, run_job
from safeset.jobs.shard_task import file_checksum
from safeset.policy import Policy, Rule
from safeset.removals.listindex import build_list_indexes
from safeset.removals.progress import stage
from safeset.removals.source import MATCH_KINDS, RemovalListSource

COMMAND, RECORDS_ONLY_COMMAND = "removals-apply", "removals-scan"
RULE = "removal-list"
DEFAULT_MATCH = ("url", "image")


def parse_match(text: str | None) -> tuple[str, ...]:
    """`url,image,key` -> ("url", "image", "key"); None -> the default (url, image)."""
    if text is None:
        return DEFAULT_MATCH
    kinds = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in MATCH_KINDS]
    if unknown or not kinds:
        raise ConfigError(f"--match takes a comma-separated list of {', '.join(MATCH_KINDS)}, not {text!r}")
    return kinds


def removal_policy() -> Policy:
    """Every row the list matches is removed; rows that could not be checked go to review."""
    return Policy(
        name=RULE,
        description="remove every sample a removal list names",
        rules=(Rule(name=RULE, action="remove", signal_types=("*",)),),
        default="keep",
        unchecked="review",
    )


def apply_list(list_path, dataset, out, *, match: tuple[str, ...] = DEFAULT_MATCH, workers: int | None = None,
               resume: bool = False, format: str | None = None, columns: ColumnOverrides | None = None,
               batch_rows: int | None = None, tmp_dir=None, records_only: bool = False,
               progress: Progress | None = None) -> RunResult:
    """Remove every sample of `dataset` the list names; the cleaned copy and records go to `out`.

    With `records_only`, write the run records only (which rows the list names), like `scan`.
    """
    list_path, dataset, out = Path(list_path), Path(dataset), Path(out)
    spec = JobSpec(command=RECORDS_ONLY_COMMAND if records_only else COMMAND, dataset=dataset, out=out,
                   store_root=None, policy=removal_policy(), workers=workers, resume=resume, format=format,
                   columns=columns or ColumnOverrides(), batch_rows=batch_rows)
    check_spec(spec)  # before indexing a large list for nothing
    signal_types = tuple(t for kind in match for t in MATCH_KINDS[kind])
    with tempfile.TemporaryDirectory(prefix="safeset-removal-index-", dir=tmp_dir) as directory:
        metadata, stems, entries = build_list_indexes(list_path, signal_types, Path(directory), workers, progress)
        if metadata["total"] and not stems:
            raise ConfigError(f"{list_path}: the list holds no {' or '.join(match)} values to match "
                              f"(its {metadata['total']} rows have other identifiers; try another --match)")
        spec.sources = (RemovalListSource(
            index_dir=directory,
            stems=stems,
            description={
                "path": str(list_path),
                "xxh3_128": file_checksum(list_path),
                "metadata": metadata,
                "match": list(match),
                "entries": entries,
            },
        ),)
        stage(progress, "applying list", None, None)
        return run_job(spec, progress)
