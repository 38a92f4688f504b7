"""pytx-csv: python-threatexchange's CSV, `signal_type,signal_str,collab,category,tags`.

The header row is optional. Only the first two columns are used on import;
on export `collab` carries the bank name and the other two stay empty.
"""

from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator

from safeset.banks.formats.csvrows import csv_records
from safeset.banks.formats.reading import Line, RawEntry, Rejection

NAME = "pytx-csv"
NEEDS_SIGNAL_TYPE = False
HEADER = ("signal_type", "signal_str", "collab", "category", "tags")


def is_header(cells: list[str]) -> bool:
    return [cell.strip().lower() for cell in cells[:2]] == list(HEADER[:2])


def parse(lines: Iterable[Line], signal_type: str | None, path: str = "<input>") -> Iterator[RawEntry | Rejection]:
    first_row = True
    for record in csv_records(lines):
        if record.cells is None:
            yield Rejection(record.line, record.error or "unreadable line", record.preview)
            continue
        if record.is_blank_or_comment():
            continue
        if first_row:
            first_row = False
            if is_header(record.cells):
                continue
        if len(record.cells) < 2:
            yield Rejection(record.line, "expected 'signal_type,signal_str[,collab,category,tags]'", record.preview)
            continue
        yield RawEntry(record.line, record.cells[0].strip().lower(), record.cells[1].strip(), record.source)


def format_rows(rows: Iterable[tuple[int, str, str]], bank: str) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(HEADER)
    for _entry_id, signal_type, value in rows:
        writer.writerow((signal_type, value, bank, "", ""))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
