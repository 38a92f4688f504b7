"""The one-file form of a `PDQIndex`: a JSON header, then its arrays.

    SAFESET-PDQ-INDEX\\n | header length (8 bytes, little-endian) | header JSON | arrays

Every array starts on a 128-byte boundary of the file, so that `load(...,
mmap=True)` maps hash blocks cache-line aligned and a plain load reads each
array straight into its place. The header names each array's dtype, shape,
offset and size; loading checks them against the file and each table's
arrays against each other, so a damaged file gives a clear error instead of
a wrong answer or a crash.

Format 1 (hashes one per 32 bytes, tables of pair indexes) is still read:
its hashes and tombstones are taken and the tables rebuilt, with a warning.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

import numpy as np

from safeset.errors import InputError
from safeset.pdq.index import (
    BLOCK_BYTES,
    HASH_BYTES,
    _Segment,
    _Table,
    aligned_slices,
    table_sizes,
)

MAGIC = b"SAFESET-PDQ-INDEX\n"
FORMAT_VERSION = 2
_ALIGN = 128
_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)


def save_index(index, path: str | os.PathLike) -> None:
    """Write `index` to `path` (temporary name, renamed when complete)."""
    path = Path(path)
    arrays: list[tuple[str, np.ndarray]] = []
    if index._removed is not None:
        arrays.append(("removed", index._removed))
    segments = []
    for i, segment in enumerate(index._segments):
        arrays.append((f"s{i}.blocks", segment.blocks))
        nblocks = len(segment.blocks)
        for j, table in enumerate(segment.tables):
            _, _, unary_len, low_len = table_sizes(segment.k, nblocks, table.low_bits, table.entries)
            arrays += [
                (f"s{i}.t{j}.samples", table.samples),
                (f"s{i}.t{j}.subs", table.subs),
                (f"s{i}.t{j}.unary", table.unary[:unary_len]),
                (f"s{i}.t{j}.low", table.low[:low_len]),
            ]
        segments.append(
            {
                "id_start": segment.id_start,
                "count": segment.count,
                "k": segment.k,
                "low_bits": [t.low_bits for t in segment.tables],
                "entries": [t.entries for t in segment.tables],
            }
        )
    layout = [[name, array.dtype.str, list(array.shape), 0, array.nbytes] for name, array in arrays]
    header = {
        "version": FORMAT_VERSION,
        "total": index._total,
        "removed_count": index._removed_count,
        "tables": index.tables,
        "segments": segments,
        "arrays": layout,
    }
    # Offsets depend on the header's length: reserve room for their digits.
    head_size = len(MAGIC) + 8 + len(json.dumps(header).encode()) + 24 * len(layout) + 64
    offset = head_size
    for entry in layout:
        offset += -offset % _ALIGN
        entry[3] = offset
        offset += entry[4]
    text = json.dumps(header).encode()
    head = MAGIC + len(text).to_bytes(8, "little") + text
    assert len(head) <= head_size
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as out:
            out.write(head)
            for (_name, array), entry in zip(arrays, layout):
                out.write(b"\0" * (entry[3] - out.tell()))
                out.write(memoryview(np.ascontiguousarray(array)).cast("B"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def load_index(cls, path: str | os.PathLike, *, mmap: bool = False, threads: int | None = None):
    """Read a file written by `save_index` (or format 1, rebuilt)."""
    path = Path(path)
    with open(path, "rb") as source:
        header = _read_header(path, source)
        version = header.get("version")
        if version not in (1, FORMAT_VERSION):
            raise InputError(
                path, "header", f"index format version {version!r}; this safeset reads 1 and {FORMAT_VERSION}"
            )
        arrays = _read_arrays(path, source, header, mmap=mmap and version == FORMAT_VERSION)
    try:
        if version == 1:
            return _rebuild_from_format_1(cls, path, header, arrays, threads)
        return _assemble(cls, path, header, arrays, threads)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(path, "header", f"malformed or inconsistent index ({error!r})") from None


def _read_header(path: Path, source) -> dict:
    magic = source.read(len(MAGIC))
    if magic != MAGIC:
        raise InputError(path, "byte 0", "not a safeset PDQ index file")
    size = int.from_bytes(source.read(8), "little")
    try:
        header = json.loads(source.read(size))
    except (ValueError, UnicodeDecodeError) as error:
        raise InputError(path, f"byte {len(MAGIC) + 8}", f"unreadable index header ({error})") from None
    if not isinstance(header, dict):
        raise InputError(path, "header", "unreadable index header (not an object)")
    return header


def _read_arrays(path: Path, source, header: dict, *, mmap: bool) -> dict[str, np.ndarray]:
    try:
        entries = [(str(n), np.dtype(d), tuple(map(int, sh)), int(o), int(nb)) for n, d, sh, o, nb, *_ in header["arrays"]]
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(path, "header", f"malformed index header ({error!r})") from None
    file_size = os.fstat(source.fileno()).st_size
    for name, dtype, shape, offset, nbytes in entries:
        if offset < 0 or nbytes < 0 or offset + nbytes > file_size:
            raise InputError(path, f"byte {file_size}", f"file ends inside array {name} (truncated?)")
        if math.prod(shape) * dtype.itemsize != nbytes:
            raise InputError(path, "header", f"array {name}: shape and size disagree")
    if mmap:
        return {
            name: np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape) if nbytes else np.empty(shape, dtype)
            for name, dtype, shape, offset, nbytes in entries
        }
    # One aligned allocation for all arrays (huge pages, cache-line aligned blocks), read in file order.
    arrays = {}
    for (name, dtype, shape, offset, nbytes), space in zip(entries, aligned_slices([e[4] for e in entries])):
        source.seek(offset)
        if nbytes and source.readinto(memoryview(space)) != nbytes:
            raise InputError(path, f"byte {offset}", f"short read in array {name}")
        arrays[name] = space.view(dtype).reshape(shape)
    return arrays


def _assemble(cls, path: Path, header: dict, arrays: dict, threads):
    index = cls(threads=threads, tables=header.get("tables"))
    index._total, index._removed_count = int(header["total"]), int(header["removed_count"])
    if "removed" in arrays:
        index._removed = np.array(arrays["removed"], dtype=np.uint8)
        if len(index._removed) * 8 < index._total:
            raise InputError(path, "header", "tombstone bitmap shorter than the ids")
    elif index._removed_count:
        raise InputError(path, "header", "removed hashes counted but no tombstones stored")
    next_id = 0
    for i, described in enumerate(header["segments"]):
        id_start, count, k = int(described["id_start"]), int(described["count"]), int(described["k"])
        blocks = arrays[f"s{i}.blocks"]
        if id_start != next_id or count < 0 or blocks.shape != (-(-count // 4), BLOCK_BYTES):
            raise InputError(path, "header", f"segment {i}: ids or hash blocks inconsistent")
        next_id += count
        segment = _Segment(id_start, count, blocks, k)
        for j, (low_bits, entries) in enumerate(zip(described["low_bits"], described["entries"], strict=True)):
            table = _Table(
                int(low_bits),
                int(entries),
                *(arrays[f"s{i}.t{j}.{part}"] for part in ("samples", "subs", "unary", "low")),
            )
            _check_table(path, f"segment {i} table {j}", k, len(blocks), count, table)
            segment.tables.append(table)
        index._segments.append(segment)
    if next_id != index._total:
        raise InputError(path, "header", f"segments hold {next_id} ids, header says {index._total}")
    return index


def _check_table(path: Path, what: str, k: int, nblocks: int, count: int, table: _Table) -> None:
    """Sizes and counts that the search trusts: wrong ones would give wrong answers."""
    if not (6 <= k <= 32 and 0 <= table.low_bits <= 56 and 0 <= table.entries <= count):
        raise InputError(path, "header", f"{what}: bad layout")
    shapes = [(length,) for length in table_sizes(k, nblocks, table.low_bits, table.entries)]
    samples = table.samples
    arrays = (samples, table.subs, table.unary, table.low)
    if samples.dtype != np.uint32 or table.subs.dtype != np.int8 or [a.shape for a in arrays] != shapes:
        raise InputError(path, "header", f"{what}: array sizes do not match its layout")
    if samples[0] != 0 or samples[-1] != table.entries or np.any(samples[1:] < samples[:-1]):
        raise InputError(path, "header", f"{what}: samples out of order")
    if int(_POPCOUNT[table.unary].sum(dtype=np.int64)) != table.entries:
        raise InputError(path, "header", f"{what}: unary bits do not count its entries")


def _rebuild_from_format_1(cls, path: Path, header: dict, arrays: dict, threads):
    """Format 1 kept each segment's hashes as (n, 32) rows: take them and the tombstones, rebuild."""
    total, removed_count = int(header["total"]), int(header["removed_count"])
    rows = [arrays[f"s{i}.hashes"] for i in range(len(header["segments"]))]
    hashes = np.concatenate(rows) if rows else np.zeros((0, HASH_BYTES), dtype=np.uint8)
    if hashes.ndim != 2 or hashes.shape[1] != HASH_BYTES or len(hashes) != total:
        raise InputError(path, "header", f"format 1 segments hold {len(hashes)} hashes, header says {total}")
    warnings.warn(
        f"{path}: PDQ index file format 1, rebuilt in memory; save it again to load it directly",
        stacklevel=3,
    )
    index = cls(threads=threads, tables=header.get("tables"))
    index.add(hashes)
    if removed_count:
        removed_bits = np.unpackbits(np.asarray(arrays["removed"], dtype=np.uint8), bitorder="little")[:total]
        index.remove(np.flatnonzero(removed_bits))
        index.optimize()
    return index
