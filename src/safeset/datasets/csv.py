"""CSV and TSV URL lists: a header row, then one sample per row.

Parsed with pyarrow's streaming CSV reader with every column read as text, so
values reach the writer exactly as they were (empty fields stay "", not null).
The delimiter follows the extension: `.tsv` -> tab, otherwise comma; quotes
may span lines.

The writer writes the same header and the kept rows, with the input's
delimiter and line ending. Quoting is minimal and normalised: a field is
quoted when it holds the delimiter, a quote, CR or LF (quotes doubled); a
lone empty field is written `""` so the row is not mistaken for a blank line.
A field the input quoted without need is therefore written unquoted; the
values are unchanged. A UTF-8 byte-order mark is not written back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from safeset.datasets.base import Batch, ReadOptions, Shard
from safeset.datasets.columns import require_columns, resolve_columns, row_keys
from safeset.datasets.files import find_shards
from safeset.datasets.writing import RowTally, discard, publish, temp_path
from safeset.errors import InputError

CSV_SUFFIXES = (".csv", ".tsv")
_BLOCK_BYTES = 1 << 20
_ARROW_ERRORS = (pa.ArrowException, OSError, ValueError)


def delimiter_for(path: Path) -> str:
    return "\t" if path.name.lower().endswith(".tsv") else ","


def line_terminator_of(path: Path) -> str:
    """The line ending the file uses ("\\r\\n" or "\\n"), judged by its first line."""
    with open(path, "rb") as stream:
        head = stream.read(1 << 16)
    newline = head.find(b"\n")
    return "\r\n" if newline > 0 and head[newline - 1:newline] == b"\r" else "\n"


class _RowProblem:
    """Collects what pyarrow's invalid-row handler saw, for the error message."""

    def __init__(self):
        self.row = None

    def __call__(self, row) -> str:
        self.row = row
        return "error"


class CsvReader:
    """Streams one CSV/TSV file as `Batch`es; tables always carry every column."""

    def __init__(self, shard: Shard, options: ReadOptions):
        self.shard = shard
        self.options = options
        self.delimiter = delimiter_for(shard.path)
        names = self._header()
        self.schema = pa.schema([(name, pa.string()) for name in names])
        self.columns = resolve_columns(names, options.columns, shard.path)
        require_columns(names, options.extra_columns, shard.path)
        self.line_terminator = line_terminator_of(shard.path)
        self.rows_read = 0
        self.finished = False

    def _open(self, column_types: dict | None, problem: _RowProblem | None = None):
        try:
            return pacsv.open_csv(
                self.shard.path,
                read_options=pacsv.ReadOptions(use_threads=False, block_size=_BLOCK_BYTES),
                parse_options=pacsv.ParseOptions(delimiter=self.delimiter, newlines_in_values=True,
                                                 invalid_row_handler=problem),
                convert_options=pacsv.ConvertOptions(column_types=column_types,
                                                     strings_can_be_null=False,
                                                     quoted_strings_can_be_null=False),
            )
        except _ARROW_ERRORS as exc:
            raise self._error(exc, problem) from None

    def _header(self) -> list[str]:
        stream = self._open(None, _RowProblem())
        names = stream.schema.names
        stream.close()
        return names

    def _error(self, exc: Exception, problem: _RowProblem | None) -> InputError:
        message = str(exc)
        if isinstance(exc, OSError) and not isinstance(exc, pa.ArrowException):
            return InputError(self.shard.path, None, f"cannot read file ({exc})")
        if "Empty CSV file" in message:
            return InputError(self.shard.path, "row 1", "empty file; a header row is required")
        row = problem.row if problem is not None else None
        if row is not None:
            where = f"row {row.number}" if row.number is not None else f"after data row {self.rows_read}"
            return InputError(self.shard.path, where, f"expected {row.expected_columns} columns, "
                              f"found {row.actual_columns}: {row.text[:200]!r} (row 1 is the header)")
        return InputError(self.shard.path, f"after data row {self.rows_read}", f"malformed CSV ({message})")

    def batches(self) -> Iterator[Batch]:
        problem = _RowProblem()
        stream = self._open({name: pa.string() for name in self.schema.names}, problem)
        while True:
            try:
                record_batch = stream.read_next_batch()
            except StopIteration:
                break
            except _ARROW_ERRORS as exc:
                raise self._error(exc, problem) from None
            for start in range(0, record_batch.num_rows, self.options.batch_rows):
                piece = record_batch.slice(start, self.options.batch_rows)
                yield self._batch(piece)
        self.finished = True

    def _batch(self, table: pa.RecordBatch) -> Batch:
        positions = np.arange(self.rows_read, self.rows_read + table.num_rows, dtype=np.int64)
        self.rows_read += table.num_rows
        key_values = table.column(self.columns.key) if self.columns.key else None
        keys = row_keys(key_values, self.shard.relpath, positions, self.shard.path)
        return Batch(table=table, keys=keys, positions=positions)

    def close(self) -> None:
        pass

    def __enter__(self) -> "CsvReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def format_rows(columns: list[pa.Array], delimiter: str, terminator: str) -> bytes:
    """CSV text for rows given as string columns, built with vectorised kernels."""
    if not columns or len(columns[0]) == 0:
        return b""
    special = '["\r\n\t]' if delimiter == "\t" else '[",\r\n]'
    fields = []
    for column in columns:
        column = pc.fill_null(column.cast(pa.string()), "")
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(column, '"', '""'), '"', "")
        fields.append(pc.if_else(pc.match_substring_regex(column, special), quoted, column))
    if len(fields) == 1:
        fields[0] = pc.if_else(pc.equal(fields[0], ""), '""', fields[0])
    lines = fields[0] if len(fields) == 1 else pc.binary_join_element_wise(*fields, delimiter)
    lines = pc.binary_join_element_wise(lines, pa.scalar(terminator), "")
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    _, offsets, data = lines.buffers()
    bounds = np.frombuffer(offsets, dtype=np.int32, count=len(lines) + 1, offset=lines.offset * 4)
    start, end = int(bounds[0]), int(bounds[-1])
    return data.slice(start, end - start).to_pybytes()


class CsvShardWriter:
    """Writes the header and the kept rows of one CSV/TSV shard."""

    def __init__(self, shard: Shard, reader: CsvReader, out_root: Path):
        self._reader = reader
        self._tally = RowTally(shard.path)
        self._final = Path(out_root) / shard.relpath
        self._temp = temp_path(self._final)
        self._target = open(self._temp, "wb")
        header = [pa.array([name], type=pa.string()) for name in reader.schema.names]
        self._target.write(format_rows(header, reader.delimiter, reader.line_terminator))

    def write(self, batch: Batch, keep: np.ndarray) -> None:
        keep = self._tally.accept(batch.positions, keep)
        names = self._reader.schema.names
        table = batch.table
        # Positional when the table starts with the file's columns (header names may repeat).
        columns = table.columns[: len(names)] if table.schema.names[: len(names)] == names else \
            table.select(names).columns
        mask = pa.array(keep, type=pa.bool_())
        kept = [column.filter(mask) for column in columns]
        self._target.write(format_rows(kept, self._reader.delimiter, self._reader.line_terminator))

    def commit(self) -> list[Path]:
        if not self._reader.finished:
            raise ValueError(f"{self._reader.shard.path}: commit before the whole file was read")
        self._tally.check_complete(self._reader.rows_read)
        self._target.close()
        return [publish(self._temp, self._final)]

    def abort(self) -> None:
        self._target.close()
        discard(self._temp)


class CsvFormat:
    name = "csv"

    def discover(self, root: Path) -> list[Shard]:
        return find_shards(Path(root), CSV_SUFFIXES, self.name)

    def open(self, shard: Shard, options: ReadOptions) -> CsvReader:
        return CsvReader(shard, options)

    def open_writer(self, shard: Shard, reader: CsvReader, out_root: Path) -> CsvShardWriter:
        return CsvShardWriter(shard, reader, out_root)
