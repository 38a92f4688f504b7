"""`removals apply`: clean a copy of a dataset with a removal list.

The copy may be re-keyed, re-ordered, a subset, in any supported format: rows
are matched by canonical URL digest, image digest or key (`--match`), never
by position. The list's values are first put in slot indexes (bounded
memory, memory-mapped by the workers), or found in the index cache when this
very list file was indexed before (`indexcache`); then the ordinary clean job
runs with the list as its only match source and one rule, `removal-list`: the
same cleaned copy, run records, conservation check and `--resume` as
`safeset clean`.
"""

from __future__ import annotations

import shutil
import tempfile
import warnings
from contextlib import ExitStack
from pathlib import Path

from safeset.datasets.base import ColumnOverrides
from safeset.errors import ConfigError
from safeset.jobs.run import JobSpec, Progress, RunResult, check_spec, run_job
from safeset.policy import Policy, Rule
from safeset.removals.indexcache import ListIdentity, ListIndexCache, mapped_checksum
from safeset.removals.listfile import open_removal_list
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
               index_cache=None, progress: Progress | None = None) -> RunResult:
    """Remove every sample of `dataset` the list names; the cleaned copy and records go to `out`.

    With `records_only`, write the run records only (which rows the list names), like `scan`.
    `index_cache`: a directory where the list's indexes are kept for the next apply of the same
    list file (None: build them in `tmp_dir` and remove them afterwards).
    """
    list_path, dataset, out = Path(list_path), Path(dataset), Path(out)
    spec = JobSpec(command=RECORDS_ONLY_COMMAND if records_only else COMMAND, dataset=dataset, out=out,
                   store_root=None, policy=removal_policy(), workers=workers, resume=resume, format=format,
                   columns=columns or ColumnOverrides(), batch_rows=batch_rows)
    check_spec(spec)  # before indexing a large list for nothing
    metadata, parquet = open_removal_list(list_path)  # before checksumming a file that is not a list
    parquet.close()
    signal_types = tuple(t for kind in match for t in MATCH_KINDS[kind])
    identity = ListIdentity(mapped_checksum(list_path), list_path.stat().st_size)
    with ExitStack() as cleanup:
        index_dirs, entries = _list_indexes(list_path, identity, signal_types, _usable_cache(index_cache), tmp_dir,
                                            workers, progress, cleanup)
        if metadata["total"] and not index_dirs:
            raise ConfigError(f"{list_path}: the list holds no {' or '.join(match)} values to match "
                              f"(its {metadata['total']} rows have other identifiers; try another --match)")
        spec.sources = (RemovalListSource(
            index_dirs={t: str(directory) for t, directory in index_dirs.items()},
            description={
                "path": str(list_path),
                "xxh3_128": identity.checksum,
                "metadata": metadata,
                "match": list(match),
                "entries": entries,
            },
        ),)
        stage(progress, "applying list", None, None)
        return run_job(spec, progress)


def _usable_cache(index_cache) -> ListIndexCache | None:
    """The cache, if its directory can be made and written; else None (indexes are built for this run only)."""
    if index_cache is None:
        return None
    root = Path(index_cache)
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=root, prefix=".tmp-probe-")
        probe.close()
    except OSError as exc:
        warnings.warn(f"removal-list index cache {root} is not writable ({exc}); the list is indexed for this "
                      "run only", stacklevel=3)
        return None
    return ListIndexCache(root)


def _list_indexes(list_path: Path, identity: ListIdentity, signal_types: tuple[str, ...],
                  cache: ListIndexCache | None, tmp_dir, workers, progress, cleanup: ExitStack,
                  ) -> tuple[dict[str, Path], dict[str, int]]:
    """(directory of each type's index, for types with values; entries per type), cached or built now."""
    if cache is None:
        directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="safeset-removal-index-",
                                                                           dir=tmp_dir)))
        _, entries = build_list_indexes(list_path, signal_types, directory, workers, progress)
        return {t: directory for t, n in entries.items() if n}, entries
    found = cache.find(identity, signal_types, workers)
    missing = tuple(t for t in signal_types if t not in found)
    if missing:
        staging = cache.staging(identity)
        try:
            with tempfile.TemporaryDirectory(prefix="safeset-removal-spill-", dir=tmp_dir) as spills:
                _, entries = build_list_indexes(list_path, missing, staging, workers, progress, Path(spills))
            found.update(cache.publish(staging, identity, entries, workers))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        cache.evict()
    cache.touch(identity)
    return ({t: found[t].directory for t in signal_types if found[t].entries},
            {t: found[t].entries for t in signal_types})
