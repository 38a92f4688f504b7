"""CSV records with the physical line each one starts on.

The csv module may join several physical lines into one record (a quoted
field with a newline); rejections must still name the line a user can open
in an editor, so line numbers are tracked here, not counted from records.
"""

from __future__ import annotations

import csv
from typing import Iterable, Iterator, NamedTuple

from safeset.banks.formats.reading import Line, preview


class CsvRecord(NamedTuple):
    """One record: `cells`, or `error` when the line(s) could not be read."""

    line: int
    cells: list[str] | None
    error: str | None
    source: str

    @property
    def preview(self) -> str:
        return preview(self.source)

    def is_blank_or_comment(self) -> bool:
        """A blank row, or a line starting with `#` (quote a value that must start with one)."""
        if self.cells is None:
            return False
        return not any(cell.strip() for cell in self.cells) or self.source.lstrip().startswith("#")


class _Feed:
    """Hands readable lines to csv.reader and remembers where each record began."""

    def __init__(self, lines: Iterable[Line]):
        self._lines = iter(lines)
        self.unreadable: list[Line] = []
        self.record_line: int | None = None
        self.record_source = ""

    def __iter__(self) -> "_Feed":
        return self

    def __next__(self) -> str:
        while True:
            line = next(self._lines)
            if line.text is None:
                self.unreadable.append(line)
                continue
            if self.record_line is None:
                self.record_line = line.number
                self.record_source = line.text
            return line.text + "\n"


def csv_records(lines: Iterable[Line]) -> Iterator[CsvRecord]:
    feed = _Feed(lines)
    reader = csv.reader(feed)
    while True:
        cells: list[str] | None = None
        error: str | None = None
        finished = False
        try:
            cells = next(reader)
        except StopIteration:
            finished = True
        except csv.Error as exc:
            error = f"malformed CSV: {exc}"
        for bad in feed.unreadable:
            yield CsvRecord(bad.number, None, bad.error, bad.source)
        feed.unreadable.clear()
        if finished:
            return
        line = feed.record_line if feed.record_line is not None else 0
        yield CsvRecord(line, cells, error, feed.record_source)
        feed.record_line = None
        feed.record_source = ""
