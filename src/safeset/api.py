"""The Python API: the same jobs the CLI runs, as functions.

    from safeset.api import BankStore, clean
    store = BankStore("/data/safeset-store")
    store.import_file("HOTLINE_URLS", "urls.txt", signal_type="url_md5")
    result = clean("/data/laion", "/data/laion-clean", store=store.root, policy="relaion-research")
    result.run["counts"], result.exit_code, result.report_path
"""

from __future__ import annotations

from pathlib import Path

from safeset.banks.store import BankStore, default_store_root
from safeset.datasets.base import ColumnOverrides
from safeset.jobs.run import JobSpec, Progress, RunResult, run_job

__all__ = ["BankStore", "ColumnOverrides", "RunResult", "clean", "scan"]


def _job(command: str, dataset, out, store, **options) -> RunResult:
    progress: Progress | None = options.pop("progress", None)
    spec = JobSpec(
        command=command,
        dataset=Path(dataset),
        out=Path(out),
        store_root=default_store_root(store),
        **options,
    )
    return run_job(spec, progress)


def scan(dataset, out, store=None, **options) -> RunResult:
    """Match `dataset` against banks; records in `out/_safeset/`, no copy.

    Options are `JobSpec`'s: banks, policy, workers, resume, format, columns,
    batch_rows, and `progress` (an object with start/advance/shard_finished).
    """
    return _job("scan", dataset, out, store, **options)


def clean(dataset, out, store=None, **options) -> RunResult:
    """Like `scan`, and write the cleaned copy of `dataset` under `out`."""
    return _job("clean", dataset, out, store, **options)
