"""Reading a bank file as numbered physical lines, whatever its wrapping.

Every format parser works on the same stream of `Line`s, so BOMs, CRLF,
gzip, undecodable bytes and absurdly long lines are handled once, here, and
line numbers mean the same thing everywhere: 1-based physical lines of the
(decompressed) file.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

from safeset.errors import ConfigError, InputError

GZIP_MAGIC = b"\x1f\x8b"
UTF8_BOM = b"\xef\xbb\xbf"
# A bank line is a digest, a URL, a host or a short phrase; anything longer is
# garbage (or a binary file) and is rejected without holding it in memory.
MAX_LINE_BYTES = 64 * 1024
PREVIEW_CHARS = 80
_READ_CHUNK = 1 << 20


class Line(NamedTuple):
    """One physical line: `text` without its line ending, or `error` (and `source`) if unreadable."""

    number: int
    text: str | None
    error: str | None = None
    source: str = ""

    @property
    def preview(self) -> str:
        return preview(self.text if self.text is not None else self.source)


class RawEntry(NamedTuple):
    """A candidate entry as written in the file, not yet validated; `source` is the line it came from."""

    line: int
    signal_type: str
    value: str
    source: str

    @property
    def preview(self) -> str:
        return preview(self.source)


@dataclass(frozen=True)
class Rejection:
    """A line that produced no entry, and why."""

    line: int
    reason: str
    preview: str

    def to_dict(self) -> dict:
        return {"line": self.line, "reason": self.reason, "preview": self.preview}


def preview(text: str) -> str:
    """A short, single-line view of offending text for messages and logs."""
    flat = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", "\\t")
    if len(flat) <= PREVIEW_CHARS:
        return flat
    return flat[: PREVIEW_CHARS - 3] + "..."


def check_one_line(entry_id: int, value: str, fmt: str) -> str:
    """Refuse to write a value that would not read back as the same one line."""
    if "\n" in value or "\r" in value:
        raise ConfigError(f"entry {entry_id} contains a line break, which {fmt} cannot hold; export as csv or pytx-csv")
    return value


def is_blank_or_comment(text: str) -> bool:
    stripped = text.strip()
    return not stripped or stripped.startswith("#")


class _HashingReader(io.RawIOBase):
    """Passes bytes through while hashing them, so the file is read only once."""

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self.sha256 = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._raw.readinto(buffer)
        if n:
            self.sha256.update(memoryview(buffer)[:n])
        return n or 0


class LineReader:
    """Iterates a bank file's lines; `sha256` (of the bytes on disk) is set after a full pass.

    gzip is recognised by its magic bytes, not the file name, so a renamed
    file still reads; memory stays bounded by MAX_LINE_BYTES whatever the size.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.sha256: str | None = None
        self.compressed = False

    def __iter__(self) -> Iterator[Line]:
        try:
            raw = open(self.path, "rb")
        except FileNotFoundError:
            raise InputError(self.path, None, "no such file") from None
        except IsADirectoryError:
            raise InputError(self.path, None, "is a directory, expected a bank file") from None
        except OSError as exc:
            raise InputError(self.path, None, f"cannot read: {exc.strerror or exc}") from None
        with raw:
            hashing = _HashingReader(raw)
            buffered = io.BufferedReader(hashing, buffer_size=_READ_CHUNK)
            self.compressed = buffered.peek(2)[:2] == GZIP_MAGIC
            stream: BinaryIO = gzip.GzipFile(fileobj=buffered, mode="rb") if self.compressed else buffered
            yield from self._lines(stream)
            while buffered.read(_READ_CHUNK):  # hash any bytes the decompressor left unread
                pass
            self.sha256 = hashing.sha256.hexdigest()

    def _lines(self, stream: BinaryIO) -> Iterator[Line]:
        number = 0
        while True:
            try:
                chunk = stream.readline(MAX_LINE_BYTES + 1)
            except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
                raise InputError(self.path, f"line {number + 1}", f"corrupt or truncated gzip data ({exc})") from None
            if not chunk:
                return
            number += 1
            if number == 1:
                chunk = self._strip_bom(chunk)
            if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                head = chunk[:PREVIEW_CHARS].decode("utf-8", "backslashreplace")
                self._skip_rest_of_line(stream, number)
                yield Line(number, None, f"line longer than {MAX_LINE_BYTES} bytes", head)
                continue
            body = chunk.rstrip(b"\n")
            if body.endswith(b"\r"):
                body = body[:-1]
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                shown = body.decode("utf-8", "backslashreplace")
                yield Line(number, None, f"not valid UTF-8 (byte {exc.start} of the line)", shown)
                continue
            yield Line(number, text)

    def _strip_bom(self, chunk: bytes) -> bytes:
        if chunk.startswith(UTF8_BOM):
            return chunk[len(UTF8_BOM):]
        if chunk.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise InputError(self.path, "line 1", "file is UTF-16; save it as UTF-8")
        return chunk

    def _skip_rest_of_line(self, stream: BinaryIO, number: int) -> None:
        while True:
            try:
                more = stream.readline(_READ_CHUNK)
            except (gzip.BadGzipFile, zlib.error, EOFError) as exc:
                raise InputError(self.path, f"line {number}", f"corrupt or truncated gzip data ({exc})") from None
            if not more or more.endswith(b"\n"):
                return


def sample_lines(path: str | Path, limit: int) -> list[Line]:
    """The first `limit` readable, non-blank, non-comment lines (for format detection)."""
    found: list[Line] = []
    for line in LineReader(path):
        if line.text is None or is_blank_or_comment(line.text):
            continue
        found.append(line)
        if len(found) >= limit:
            break
    return found
