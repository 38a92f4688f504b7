"""`safeset hash FILE... [--mode exact|fast] [--json]`: digests and PDQ of image files.

Per file: path, md5, sha1, sha256, pdq, quality. Text output is one
tab-separated line per file under a header; ``--json`` prints one JSON object
per line (JSON Lines) with those keys. A file that cannot be read or decoded
gets an ``error: PATH: reason`` line on stderr and the others go on; its row
still appears (digests where the bytes could be read, ``-``/null for pdq and
quality, and an ``error`` key in JSON), so every input is accounted for.

Exit codes, as for `safeset scan`: 0 all hashed; 3 done, but some files
failed; 2 usage error (from the command-line parser).
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import typer

if TYPE_CHECKING:
    from safeset.pdq.hashing import FileReport

EXIT_OK = 0
EXIT_SOME_FAILED = 3
COLUMNS = ("path", "md5", "sha1", "sha256", "pdq", "quality")


class HashMode(str, Enum):
    exact = "exact"
    fast = "fast"


def _text_line(report: FileReport) -> str:
    row = report.as_dict()
    return "\t".join("-" if row[column] is None else str(row[column]) for column in COLUMNS)


def run_hash(
    files: list[Path], mode: str = "exact", as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Hash every file, print the rows, return the exit code (the testable core of the command)."""
    from safeset.pdq.hashing import hash_file  # imported on use: keeps `safeset --help` quick

    out = out or sys.stdout
    err = err or sys.stderr
    failed = 0
    if not as_json:
        print("\t".join(COLUMNS), file=out)
    for path in files:
        report = hash_file(path, mode)
        if report.error is not None:
            failed += 1
            print(f"error: {report.path}: {report.error}", file=err)
        if as_json:
            print(json.dumps(report.as_dict()), file=out)
        else:
            print(_text_line(report), file=out)
        out.flush()
    return EXIT_SOME_FAILED if failed else EXIT_OK


def hash_command(
    files: list[Path] = typer.Argument(..., help="Image files to hash.", show_default=False),
    mode: HashMode = typer.Option(
        HashMode.exact,
        "--mode",
        help="exact: the reference PDQ bits (full-resolution decode); "
        "fast: reduced-scale decode, within a few bits of exact.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object per file (JSON Lines)."),
) -> None:
    """MD5, SHA-1, SHA-256 and PDQ hash (with quality) of image files."""
    code = run_hash(files, mode.value, as_json)
    if code:
        raise typer.Exit(code)
