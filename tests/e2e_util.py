"""Helpers for end-to-end tests: run the real CLI in a subprocess, read records."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq


def safeset(*args, check: int | None = 0, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `safeset ARGS...` as a user would; assert the exit code when `check` is set."""
    proc = subprocess.run(
        [sys.executable, "-m", "safeset.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def run_json(out: Path) -> dict:
    return json.loads((out / "_safeset" / "run.json").read_text())


def removed_rows(out: Path) -> list[dict]:
    return pq.read_table(out / "_safeset" / "removed.parquet").to_pylist()


def tree_digests(root: Path, exclude: str = "_safeset") -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and exclude not in p.relative_to(root).parts
    }


def import_bank(store: Path, name: str, signal_type: str | None, text: str) -> Path:
    """Write `text` as a bank file beside `store`, import it through the CLI; returns the store."""
    path = store.parent / f"{name.lower()}-bank.txt"
    path.write_text(text)
    safeset("bank", "import", name, path, "--store", store, *(["--type", signal_type] if signal_type else []))
    return store
