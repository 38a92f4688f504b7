"""csv: any CSV with a header row; the columns are found by name.

Value column, first match wins: the `--type` name, `value`, `hash`, then a
column named after a signal type (`url`, `md5`, `sha1`, `sha256`, `domain`,
`term`, ...). Signal type of a row: its `signal_type` cell, else the value
column's name when that is a type name, else `--type`.
"""

from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator

from safeset.banks.formats.csvrows import csv_records
from safeset.banks.formats.reading import Line, RawEntry, Rejection, preview
from safeset.errors import InputError
from safeset.signals import registry

NAME = "csv"
NEEDS_SIGNAL_TYPE = False
TYPE_COLUMN = "signal_type"
GENERIC_VALUE_COLUMNS = ("value", "hash")
TYPED_VALUE_COLUMNS = ("url", "md5", "sha1", "sha256", "domain", "term")


def value_column_names(signal_type: str | None = None) -> list[str]:
    """Every header name that marks a value column, in order of preference."""
    names = [signal_type] if signal_type else []
    names += [*GENERIC_VALUE_COLUMNS, *TYPED_VALUE_COLUMNS]
    names += [name for name in registry.names() if name not in names]
    return names


def looks_like_header(cells: list[str], signal_type: str | None = None) -> bool:
    known = {*value_column_names(signal_type), TYPE_COLUMN}
    return any(cell.strip().lower() in known for cell in cells)


class _Columns:
    def __init__(self, header: list[str], signal_type: str | None, path: str, line: int):
        names = [cell.strip().lower() for cell in header]
        self.type_index = names.index(TYPE_COLUMN) if TYPE_COLUMN in names else None
        self.value_index, self.column_type = self._value_column(names, signal_type, path, line)
        self.default_type = self.column_type or signal_type
        if self.type_index is None and self.default_type is None:
            raise InputError(
                path, f"line {line}",
                f"cannot tell the signal type of column {header[self.value_index]!r}: "
                "add a 'signal_type' column or pass --type",
            )

    @staticmethod
    def _value_column(names: list[str], signal_type: str | None, path: str, line: int) -> tuple[int, str | None]:
        for preferred in ([signal_type] if signal_type else []) + list(GENERIC_VALUE_COLUMNS):
            if preferred in names:
                return names.index(preferred), preferred if preferred == signal_type else None
        typed = [name for name in value_column_names() if name in names and name not in GENERIC_VALUE_COLUMNS]
        if not typed:
            wanted = ", ".join(value_column_names(signal_type)[:9])
            raise InputError(path, f"line {line}", f"no value column in the header; name one of: {wanted}")
        if len(typed) > 1:
            raise InputError(
                path, f"line {line}",
                f"several value columns ({', '.join(typed)}); pick one with --type",
            )
        column = typed[0]
        if signal_type and column != signal_type:
            raise InputError(
                path, f"line {line}",
                f"column {column!r} holds {column} values but --type {signal_type} was given; "
                f"rename the column to 'value' or {signal_type!r}",
            )
        return names.index(column), column


def parse(lines: Iterable[Line], signal_type: str | None, path: str = "<input>") -> Iterator[RawEntry | Rejection]:
    columns: _Columns | None = None
    for record in csv_records(lines):
        if record.cells is None:
            yield Rejection(record.line, record.error or "unreadable line", record.preview)
            continue
        if record.is_blank_or_comment():
            continue
        if columns is None:
            columns = _Columns(record.cells, signal_type, path, record.line)
            continue
        yield _entry(record.cells, columns, record.line, record.source)


def _entry(cells: list[str], columns: _Columns, line: int, source: str) -> RawEntry | Rejection:
    if columns.value_index >= len(cells):
        reason = f"row has {len(cells)} columns, the value is in column {columns.value_index + 1}"
        return Rejection(line, reason, preview(source))
    value = cells[columns.value_index].strip()
    if not value:
        return Rejection(line, "empty value", preview(source))
    row_type = None
    if columns.type_index is not None and columns.type_index < len(cells):
        row_type = cells[columns.type_index].strip().lower() or None
    row_type = row_type or columns.default_type
    if row_type is None:
        return Rejection(line, "empty signal_type and no --type given", preview(source))
    return RawEntry(line, row_type, value, source)


def format_rows(rows: Iterable[tuple[int, str, str]], bank: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("signal_type", "value", "entry_id"))
    for entry_id, signal_type, value in rows:
        writer.writerow((signal_type, value, entry_id))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
