"""pytx: python-threatexchange's text form, `<signal_type> <value>` per line.

Example lines: `md5 0123...ef`, `url_md5 ...`, `url https://example.com/a`.
The value is the rest of the line, so terms with spaces survive a round trip.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from safeset.banks.formats.reading import Line, RawEntry, Rejection, check_one_line, is_blank_or_comment

NAME = "pytx"
NEEDS_SIGNAL_TYPE = False


def parse(lines: Iterable[Line], signal_type: str | None, path: str = "<input>") -> Iterator[RawEntry | Rejection]:
    for line in lines:
        if line.text is None:
            yield Rejection(line.number, line.error or "unreadable line", line.preview)
            continue
        if is_blank_or_comment(line.text):
            continue
        parts = line.text.strip().split(None, 1)
        if len(parts) < 2:
            yield Rejection(line.number, "expected '<signal_type> <value>'", line.preview)
            continue
        yield RawEntry(line.number, parts[0].lower(), parts[1].strip(), line.text)


def format_rows(rows: Iterable[tuple[int, str, str]], bank: str) -> Iterator[str]:
    for entry_id, signal_type, value in rows:
        yield f"{signal_type} {check_one_line(entry_id, value, NAME)}\n"
