"""plain: one value per line, all of one signal type (given by the caller).

`#` starts a comment only at the start of a line: URLs may contain `#`.
"""

from __future__ import annotations

from typing import Iterable, Iterator

from safeset.banks.formats.reading import Line, RawEntry, Rejection, check_one_line, is_blank_or_comment
from safeset.errors import ConfigError

NAME = "plain"
NEEDS_SIGNAL_TYPE = True


def parse(lines: Iterable[Line], signal_type: str | None, path: str = "<input>") -> Iterator[RawEntry | Rejection]:
    if signal_type is None:
        raise ConfigError("a plain list (one value per line) needs its signal type: pass --type (e.g. --type md5)")
    for line in lines:
        if line.text is None:
            yield Rejection(line.number, line.error or "unreadable line", line.preview)
        elif not is_blank_or_comment(line.text):
            yield RawEntry(line.number, signal_type, line.text.strip(), line.text)


def format_rows(rows: Iterable[tuple[int, str, str]], bank: str) -> Iterator[str]:
    for entry_id, _signal_type, value in rows:
        if value.lstrip().startswith("#") or value != value.strip():
            raise ConfigError(f"entry {entry_id} would read back differently from a plain list; export as pytx or csv")
        yield check_one_line(entry_id, value, NAME) + "\n"
