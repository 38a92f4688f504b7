"""Bank file formats: one module each, all reading the same numbered `Line`s.

Formats (`--format`):
  plain     one value per line; the signal type comes from `--type`.
  pytx      python-threatexchange text: `<signal_type> <value>` per line.
  pytx-csv  python-threatexchange CSV: `signal_type,signal_str,collab,category,tags`,
            header optional.
  csv       any CSV with a header naming its value column (see generic_csv).

Every format: `#` comment lines and blank lines are skipped, a UTF-8 BOM is
dropped, CRLF is accepted, gzip input is read transparently (recognised by its
magic bytes), and undecodable lines are rejected one by one with their number.

`auto` looks at the first 20 non-blank, non-comment lines (call them the
sample) and picks, in this order:
  1. pytx-csv  if the first line, read as CSV, starts `signal_type,signal_str`;
  2. pytx-csv  if every sample line has 2+ CSV cells and its first cell is a
               signal type name (python-threatexchange's names included, such
               as `pdq`, so those lines are rejected by name, not misread);
  3. csv       if the first line has 2+ CSV cells and one of them is a known
               column name (`value`, `hash`, `signal_type`, a type name, or the
               `--type` name) -- or, for a `.csv` file, if its only cell is one;
  4. pytx      if every sample line is `<type name> <rest>`;
  5. plain     if `--type` was given;
  otherwise it gives up and asks for `--format`/`--type` rather than guess.
A file with no sample lines at all is read as pytx (it yields nothing).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Iterator

from safeset.banks.formats import generic_csv, plain, pytx_csv, pytx_text
from safeset.banks.formats.reading import LineReader, RawEntry, Rejection, sample_lines
from safeset.banks.formats.validation import NOT_YET_SUPPORTED
from safeset.errors import ConfigError
from safeset.signals import registry

FORMATS: dict[str, ModuleType] = {
    plain.NAME: plain,
    pytx_text.NAME: pytx_text,
    pytx_csv.NAME: pytx_csv,
    generic_csv.NAME: generic_csv,
}
AUTO = "auto"
SAMPLE_LINES = 20
# python-threatexchange names we do not (yet) match are still recognised, so
# their lines are rejected by name ("video_md5 is not supported yet") instead of
# breaking detection.
PYTX_ONLY_TYPES = NOT_YET_SUPPORTED


def format_names() -> list[str]:
    return [AUTO, *FORMATS]


def get_format(name: str) -> ModuleType:
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown bank format {name!r}; known formats: {', '.join(format_names())}") from None


def signal_type_names() -> set[str]:
    """Names that may appear as a type in a bank file, supported or not."""
    return set(registry.names()) | PYTX_ONLY_TYPES


def _csv_cells(text: str) -> list[str]:
    try:
        return next(csv.reader([text]), [])
    except csv.Error:
        return []


def detect_format(path: str | Path, signal_type: str | None = None) -> str:
    """The format `auto` resolves to for this file (rules in the module docstring)."""
    texts = [line.text.strip() for line in sample_lines(path, SAMPLE_LINES) if line.text is not None]
    if not texts:
        return plain.NAME if signal_type else pytx_text.NAME
    types = signal_type_names()
    rows = [_csv_cells(text) for text in texts]
    first = rows[0]
    if len(first) >= 2 and pytx_csv.is_header(first):
        return pytx_csv.NAME
    if all(len(row) >= 2 and row[0].strip().lower() in types for row in rows):
        return pytx_csv.NAME
    is_csv_name = Path(path).name.lower().removesuffix(".gz").endswith(".csv")
    if (len(first) >= 2 or is_csv_name) and generic_csv.looks_like_header(first, signal_type):
        return generic_csv.NAME
    pairs = [text.split(None, 1) for text in texts]
    if all(len(pair) == 2 and pair[0].lower() in types for pair in pairs):
        return pytx_text.NAME
    if signal_type:
        return plain.NAME
    raise ConfigError(
        f"cannot tell the format of {path}: its first line is neither a CSV header, "
        "'<signal_type> <value>' nor 'signal_type,signal_str,...'; for a plain list "
        "of values pass --type (e.g. --type md5), or name the format with --format "
        f"({', '.join(FORMATS)})"
    )


@dataclass
class ParsedFile:
    """A bank file being parsed; `sha256` of its bytes is known once fully iterated."""

    path: Path
    format: str
    signal_type: str | None
    _reader: LineReader = field(repr=False)

    def __iter__(self) -> Iterator[RawEntry | Rejection]:
        module = FORMATS[self.format]
        return module.parse(self._reader, self.signal_type, path=str(self.path))

    @property
    def sha256(self) -> str | None:
        return self._reader.sha256


def open_bank_file(path: str | Path, fmt: str = AUTO, signal_type: str | None = None) -> ParsedFile:
    """Resolve the format (detecting it for `auto`) and return an iterable parse."""
    path = Path(path)
    if fmt != AUTO:
        get_format(fmt)
    resolved = detect_format(path, signal_type) if fmt == AUTO else fmt
    if FORMATS[resolved].NEEDS_SIGNAL_TYPE and signal_type is None:
        raise ConfigError(f"format {resolved!r} holds values of one signal type: pass --type (e.g. --type md5)")
    return ParsedFile(path, resolved, signal_type, LineReader(path))
