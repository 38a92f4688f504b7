"""Dataset formats by name, and which one a path holds.

Detection for a directory (searched recursively, skipping `_safeset` and
hidden entries):

- `.tar` files -> webdataset. Their img2dataset companions (`<stem>.parquet`,
  `<stem>_stats.json`) belong to them; any other parquet, JSONL or CSV file
  beside them is ambiguous.
- else `.parquet` -> parquet (ambiguous if JSONL or CSV files are present).
- else `.jsonl`/`.ndjson` and/or `.csv`/`.tsv`: whichever is present; both is
  ambiguous.
- `.json` alone counts as JSONL only when nothing else matched, since a
  `.json` next to data files is usually metadata (`dataset_info.json`).

Refusing a mixed directory rather than guessing matters: files of the other
format would otherwise go unscanned without anyone noticing. `--format`
settles it.
"""

from __future__ import annotations

from pathlib import Path

from safeset.datasets.base import DatasetFormat, Shard
from safeset.datasets.csv import CSV_SUFFIXES, CsvFormat
from safeset.datasets.files import has_suffix, walk_files
from safeset.datasets.jsonl import JsonlFormat
from safeset.datasets.parquet import PARQUET_SUFFIXES, ParquetFormat
from safeset.datasets.webdataset import TAR_SUFFIXES, WebDatasetFormat, sibling_paths
from safeset.errors import ConfigError

FORMATS: dict[str, DatasetFormat] = {
    fmt.name: fmt for fmt in (ParquetFormat(), WebDatasetFormat(), JsonlFormat(), CsvFormat())
}

_STRICT_JSONL_SUFFIXES = (".jsonl", ".ndjson")
_LOOSE_JSONL_SUFFIXES = (".json",)
_FILE_FORMATS = (
    (PARQUET_SUFFIXES, "parquet"),
    (TAR_SUFFIXES, "webdataset"),
    (_STRICT_JSONL_SUFFIXES + _LOOSE_JSONL_SUFFIXES, "jsonl"),
    (CSV_SUFFIXES, "csv"),
)


def _format_of_file(path: Path) -> str:
    for suffixes, name in _FILE_FORMATS:
        if has_suffix(path.name, suffixes):
            return name
    raise ConfigError(f"{path}: cannot tell the dataset format from the file name; "
                      f"pass --format ({', '.join(FORMATS)})")


def _ambiguous(path: Path, chosen: str, others: list[str]) -> ConfigError:
    sample = ", ".join(others[:3]) + (" ..." if len(others) > 3 else "")
    return ConfigError(f"{path}: holds {chosen} shards and {len(others)} other data file(s) "
                       f"({sample}); pass --format to say which to scan, or separate them")


def _format_of_directory(path: Path) -> str:
    relpaths = walk_files(path)
    tars = [r for r in relpaths if has_suffix(r, TAR_SUFFIXES)]
    parquets = [r for r in relpaths if has_suffix(r, PARQUET_SUFFIXES)]
    jsonls = [r for r in relpaths if has_suffix(r, _STRICT_JSONL_SUFFIXES)]
    csvs = [r for r in relpaths if has_suffix(r, CSV_SUFFIXES)]
    if tars:
        companions = {Path(p).as_posix() for t in tars for p in sibling_paths(Path(t))}
        others = [r for r in parquets if r not in companions] + jsonls + csvs
        if others:
            raise _ambiguous(path, "webdataset (.tar)", others)
        return "webdataset"
    if parquets:
        if jsonls or csvs:
            raise _ambiguous(path, "parquet", jsonls + csvs)
        return "parquet"
    if jsonls and csvs:
        raise _ambiguous(path, "JSONL", csvs)
    if jsonls:
        return "jsonl"
    if csvs:
        return "csv"
    if any(has_suffix(r, _LOOSE_JSONL_SUFFIXES) for r in relpaths):
        return "jsonl"
    raise ConfigError(f"{path}: no dataset files found (looked for .tar, .parquet, .jsonl, "
                      ".ndjson, .json, .csv, .tsv)")


def detect_format(path: Path) -> str:
    """The format name of a dataset file or directory, or ConfigError."""
    path = Path(path)
    if path.is_dir():
        return _format_of_directory(path)
    if path.is_file():
        return _format_of_file(path)
    raise ConfigError(f"{path}: no such file or directory")


def get_format(name: str) -> DatasetFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset format '{name}'; known: {', '.join(FORMATS)}") from None


def discover(path: Path, fmt: str | None = None) -> tuple[DatasetFormat, list[Shard]]:
    """The format and the shards of a dataset; a single file is one shard rooted at its parent."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: no such file or directory")
    dataset_format = get_format(fmt if fmt is not None else detect_format(path))
    if path.is_file():
        return dataset_format, [Shard(root=path.parent, relpath=path.name, format=dataset_format.name)]
    shards = dataset_format.discover(path)
    if not shards:
        raise ConfigError(f"{path}: no {dataset_format.name} shards found")
    return dataset_format, shards
