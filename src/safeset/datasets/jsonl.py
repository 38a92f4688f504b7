"""JSON Lines URL lists (`.jsonl`, `.ndjson`, `.json`): one JSON object per line.

Schema: the union of the keys of the valid objects among the first batch of
rows, in order of first appearance. A column's type is inferred from the values
seen there: all booleans -> bool, all integers -> int64, integers and floats ->
float64, anything else (text, mixtures, lists, objects, only nulls) -> string.
Later values that do not fit become null, except in string columns, which take
any value (non-text values as compact JSON). Keys that first appear after the
first batch are not columns (they are still in the copied lines).

A malformed line is a row whose columns are null and whose error says
"invalid JSON: line N: ..."; blank lines are not rows. The writer copies kept
lines byte for byte (blank lines too), so a cleaned file differs from its input
only by the removed lines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np
import pyarrow as pa

from safeset.datasets.base import Batch, ReadOptions, Shard
from safeset.datasets.columns import require_columns, resolve_columns, row_keys
from safeset.datasets.files import find_shards
from safeset.datasets.writing import RowTally, discard, publish, temp_path
from safeset.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
_INT64_MIN, _INT64_MAX = -(1 << 63), (1 << 63) - 1

Row = tuple[int, dict | None, str | None]  # (line number, object, error)


class OversizedLine(NamedTuple):
    """A line longer than the limit: skipped without being held in memory."""

    size: int


def bounded_lines(handle, limit: int) -> Iterator[bytes | OversizedLine]:
    """The lines of a binary file, each at most `limit` bytes (plus its newline).

    A longer line (a hostile or broken file) is read past in 1 MiB steps and
    reported as `OversizedLine`, so memory never depends on line length.
    """
    while line := handle.readline(limit + 1):
        if len(line) <= limit or line.endswith(b"\n"):
            yield line
            continue
        size = len(line)
        while chunk := handle.readline(1 << 20):
            size += len(chunk)
            if chunk.endswith(b"\n"):
                break
        yield OversizedLine(size)


def is_blank(line: bytes | OversizedLine) -> bool:
    return isinstance(line, bytes) and not line.strip()


_DECODER = json.JSONDecoder()


def parse_line(line: bytes, line_number: int) -> tuple[dict | None, str | None]:
    try:
        value = _DECODER.decode(line.decode("utf-8-sig" if line_number == 1 else "utf-8"))
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON: line {line_number}: {exc.msg} (column {exc.colno})"
    except UnicodeDecodeError as exc:
        return None, f"invalid JSON: line {line_number}: not UTF-8 text ({exc.reason})"
    if not isinstance(value, dict):
        return None, f"invalid JSON: line {line_number}: expected an object, found {type(value).__name__}"
    return value, None


def _kind(value) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "other"


def infer_type(values: list) -> pa.DataType:
    kinds = {_kind(v) for v in values if v is not None}
    if kinds == {"bool"}:
        return pa.bool_()
    if kinds == {"int"}:
        return pa.int64()
    if kinds and kinds <= {"int", "float"}:
        return pa.float64()
    return pa.string()


def _to_text(value):
    if value is None or type(value) is str:
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _to_int(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and _INT64_MIN <= value <= _INT64_MAX:
        return value
    return None


def _to_float(value):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _to_bool(value):
    return value if isinstance(value, bool) else None


_CONVERTERS: dict[pa.DataType, Callable] = {
    pa.string(): _to_text, pa.int64(): _to_int, pa.float64(): _to_float, pa.bool_(): _to_bool,
}


def _table(schema: pa.Schema, objects: list[dict | None]) -> pa.RecordBatch:
    if not schema.names:
        return pa.RecordBatch.from_struct_array(pa.array([{}] * len(objects), type=pa.struct([])))
    arrays = []
    for field in schema:
        name = field.name
        values = [o.get(name) if o is not None else None for o in objects]
        try:
            if field.type != pa.string():
                raise TypeError("convert value by value")
            array = pa.array(values, type=pa.string())  # fast path: all text already
        except (TypeError, pa.ArrowException):
            convert = _CONVERTERS[field.type]
            array = pa.array([convert(v) for v in values], type=field.type)
        arrays.append(array)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


class JsonlReader:
    """Streams one JSONL file as `Batch`es; tables always carry every column."""

    def __init__(self, shard: Shard, options: ReadOptions):
        self.shard = shard
        self.options = options
        try:
            self.schema = self._infer_schema()
        except OSError as exc:
            raise InputError(shard.path, None, f"cannot read file ({exc})") from None
        self.columns = resolve_columns(self.schema.names, options.columns, shard.path)
        require_columns(self.schema.names, options.extra_columns, shard.path)

    def _rows(self) -> Iterator[Row]:
        limit = self.options.max_line_bytes
        with open(self.shard.path, "rb") as handle:
            for line_number, line in enumerate(bounded_lines(handle, limit), start=1):
                if isinstance(line, OversizedLine):
                    yield (line_number, None, f"line {line_number} is {line.size:,} bytes, over the limit of {limit:,}")
                elif not is_blank(line):
                    yield (line_number, *parse_line(line, line_number))

    def _infer_schema(self) -> pa.Schema:
        seen: dict[str, list] = {}
        for count, (_, obj, _) in enumerate(self._rows()):
            if count >= self.options.batch_rows:
                break
            for name, value in (obj or {}).items():
                seen.setdefault(name, []).append(value)
        return pa.schema([(name, infer_type(values)) for name, values in seen.items()])

    def batches(self) -> Iterator[Batch]:
        position = 0
        pending: list[Row] = []
        for row in self._rows():
            pending.append(row)
            if len(pending) == self.options.batch_rows:
                yield self._batch(position, pending)
                position += len(pending)
                pending = []
        if pending:
            yield self._batch(position, pending)

    def _batch(self, first: int, rows: list[Row]) -> Batch:
        objects = [obj for _, obj, _ in rows]
        errors = [error for _, _, error in rows]
        table = _table(self.schema, objects)
        positions = np.arange(first, first + len(rows), dtype=np.int64)
        key_values = table.column(self.columns.key) if self.columns.key else None
        keys = row_keys(key_values, self.shard.relpath, positions, self.shard.path)
        return Batch(table=table, keys=keys, positions=positions,
                     errors=errors if any(errors) else None)

    def close(self) -> None:
        pass

    def __enter__(self) -> "JsonlReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class JsonlShardWriter:
    """Copies kept lines verbatim, reading the input alongside the batches."""

    def __init__(self, shard: Shard, reader: JsonlReader, out_root: Path):
        self._shard = shard
        self._tally = RowTally(shard.path)
        self._final = Path(out_root) / shard.relpath
        self._temp = temp_path(self._final)
        self._source = open(shard.path, "rb")
        self._lines = bounded_lines(self._source, reader.options.max_line_bytes)
        self._target = open(self._temp, "wb")

    def _next_row_line(self) -> bytes | OversizedLine:
        """The next non-blank input line; blank lines on the way are copied."""
        for line in self._lines:
            if not is_blank(line):
                return line
            self._target.write(line)
        raise ValueError(f"{self._shard.path}: more rows written than the file holds")

    def write(self, batch: Batch, keep: np.ndarray) -> None:
        keep = self._tally.accept(batch.positions, keep)
        for kept in keep.tolist():
            line = self._next_row_line()
            if kept:
                if isinstance(line, OversizedLine):
                    raise ValueError(f"{self._shard.path}: an oversized line was never checked and cannot be kept")
                self._target.write(line)

    def commit(self) -> list[Path]:
        for line in self._lines:
            if not is_blank(line):
                raise ValueError(f"{self._shard.path}: commit after {self._tally.next_position} rows; "
                                 "every row needs a keep decision")
            self._target.write(line)
        self._close()
        return [publish(self._temp, self._final)]

    def abort(self) -> None:
        self._close()
        discard(self._temp)

    def _close(self) -> None:
        self._source.close()
        self._target.close()


class JsonlFormat:
    name = "jsonl"

    def discover(self, root: Path) -> list[Shard]:
        return find_shards(Path(root), JSONL_SUFFIXES, self.name)

    def open(self, shard: Shard, options: ReadOptions) -> JsonlReader:
        return JsonlReader(shard, options)

    def open_writer(self, shard: Shard, reader: JsonlReader, out_root: Path) -> JsonlShardWriter:
        return JsonlShardWriter(shard, reader, out_root)
