"""Index of a tar shard: member headers and byte ranges, no member data.

Shards come from strangers, so the index refuses any archive a naive extractor
could be tricked by (absolute or `..` names, links, devices, duplicates) and any
corrupt header, naming the byte where it is. tarfile alone would stop quietly
at a corrupt header after the first one; we check where it stopped.

The byte ranges let the webdataset reader fetch one member's bytes on demand
and let the writer copy kept members verbatim, header included.
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from safeset.errors import InputError

BLOCK_SIZE = tarfile.BLOCKSIZE  # 512
RECORD_SIZE = tarfile.RECORDSIZE  # 10240: tarfile pads archives to this
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tiff", "tif"})
_DRIVE = re.compile(r"^[A-Za-z]:")


def round_up_to_block(size: int) -> int:
    return -(-size // BLOCK_SIZE) * BLOCK_SIZE


@dataclass(frozen=True)
class Member:
    """One regular file in the archive."""

    name: str
    header_offset: int  # first header block (extended headers included)
    data_offset: int
    size: int

    @property
    def end(self) -> int:
        """End of the member's padded data: the next header starts here."""
        return self.data_offset + round_up_to_block(self.size)

    @property
    def extension(self) -> str:
        base = self.name.rsplit("/", 1)[-1]
        return base.rsplit(".", 1)[-1].lower() if "." in base else ""

    @property
    def is_image(self) -> bool:
        return self.extension in IMAGE_EXTENSIONS


@dataclass(frozen=True)
class Segment:
    """A byte range of the archive; `sample` is None for archive structure
    (directories, global pax headers), which the writer always keeps."""

    start: int
    end: int
    sample: str | None
    member: Member | None


@dataclass
class TarIndex:
    path: Path
    file_size: int
    segments: list[Segment] = field(default_factory=list)
    # sample key -> its members in archive order; dict order = archive order
    samples: dict[str, list[Member]] = field(default_factory=dict)
    # the last member when the file ends inside its data
    truncated: Member | None = None


def sample_key(name: str) -> str:
    """webdataset's rule: the path up to the first dot of the file name."""
    directory, _, base = name.rpartition("/")
    stem = base.split(".", 1)[0] or base
    return f"{directory}/{stem}" if directory else stem


def _normalized(name: str) -> str:
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _refusal(info: tarfile.TarInfo, names_seen: set[str]) -> str | None:
    """Why a member makes the whole shard unsafe to handle, or None."""
    name = info.name
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "member name is not valid UTF-8"
    if not _normalized(name):
        return "empty member name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute member name"
    if ".." in re.split(r"[/\\]", name):
        return "member name contains a '..' component"
    if info.issym():
        return f"symbolic link (to '{info.linkname}')"
    if info.islnk():
        return f"hard link (to '{info.linkname}')"
    if info.ischr() or info.isblk() or info.isfifo():
        return "device or fifo member"
    if info.issparse():
        return "sparse member (not supported)"
    if not (info.isreg() or info.isdir()):
        return f"unsupported member type {info.type!r}"
    if _normalized(name) in names_seen:
        return "duplicate member name"
    return None


def _open_archive(path: Path, stream: BinaryIO) -> tarfile.TarFile:
    try:
        return tarfile.TarFile(fileobj=stream, mode="r")
    except (tarfile.TarError, EOFError, ValueError) as exc:
        raise InputError(path, "byte 0", f"not an uncompressed tar archive ({exc})") from None


def _check_archive_end(path: Path, stream: BinaryIO, offset: int) -> None:
    """tarfile stops silently at a bad header after the first member: make it loud."""
    stream.seek(offset)
    block = stream.read(BLOCK_SIZE)
    if block and block != bytes(len(block)):
        reason = "truncated tar header" if len(block) < BLOCK_SIZE else "corrupt tar header (bad checksum)"
        raise InputError(path, f"byte {offset}", reason)


def index_tar(path: Path) -> TarIndex:
    """Read every header of `path` (seeking over data) and validate the archive."""
    path = Path(path)
    with open(path, "rb") as stream:
        index = TarIndex(path=path, file_size=os.fstat(stream.fileno()).st_size)
        archive = _open_archive(path, stream)
        names_seen: set[str] = set()
        expected = 0  # where the next header should start
        last: Member | None = None
        while True:
            header_at = archive.offset
            try:
                info = archive.next()
            except (tarfile.TarError, EOFError, ValueError) as exc:
                if last is not None and archive.offset > index.file_size:
                    # The file ends inside the last member (or its padding).
                    if last.data_offset + last.size > index.file_size:
                        index.truncated = last
                    break
                raise InputError(path, f"byte {header_at}", f"corrupt tar header ({exc})") from None
            if info is None:
                _check_archive_end(path, stream, archive.offset)
                break
            reason = _refusal(info, names_seen)
            if reason:
                raise InputError(path, f"member '{info.name}' at byte {info.offset}", reason)
            name = _normalized(info.name)
            names_seen.add(name)
            if info.offset > expected:
                index.segments.append(Segment(expected, info.offset, None, None))
            if info.isdir():
                end = info.offset_data
                index.segments.append(Segment(info.offset, end, None, None))
            else:
                member = Member(name, info.offset, info.offset_data, info.size)
                key = sample_key(name)
                index.samples.setdefault(key, []).append(member)
                index.segments.append(Segment(info.offset, member.end, key, member))
                end = member.end
                last = member
            expected = end
            archive.members.clear()  # our own Members are the index; keep memory flat
    return index


def read_member(stream: BinaryIO, member: Member, limit: int, what: str) -> tuple[bytes | None, str | None]:
    """A member's bytes, or None and the reason they cannot be used."""
    if member.size > limit:
        return None, f"{what} member '{member.name}' is {member.size} bytes, over the limit {limit}"
    try:
        stream.seek(member.data_offset)
        data = stream.read(member.size)
    except OSError as exc:
        return None, f"{what} member '{member.name}' cannot be read ({exc})"
    if len(data) != member.size:
        return None, f"{what} member '{member.name}' is truncated ({len(data)} of {member.size} bytes present)"
    return data, None
