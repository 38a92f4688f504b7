"""Parquet metadata shards (LAION-5B, Re-LAION, img2dataset `part-*.parquet`).

Reading streams record batches with `iter_batches`, decoding only the columns a
scan needs. Writing keeps a shard's shape: same schema and schema metadata, same
compression codec, row groups of the input's size, so a cleaned copy is a
drop-in replacement for the original. Rows are filtered with a vectorised mask;
no per-row Python.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from safeset.datasets.base import Batch, ReadOptions, Shard
from safeset.datasets.columns import lazy_row_keys, needed_columns, require_columns, resolve_columns
from safeset.datasets.files import find_shards
from safeset.datasets.parquet_pages import ChunkReader, Unsupported, native_columns
from safeset.datasets.writing import RowTally, discard, publish, temp_path
from safeset.errors import InputError

PARQUET_SUFFIXES = (".parquet",)
# Largest row group the writer buffers (pyarrow's own default maximum): bounds
# memory when an input was written as one huge row group.
MAX_ROW_GROUP_ROWS = 1 << 20
# Parquet codec names (as in file metadata) -> pyarrow writer names. LZO cannot
# be written by pyarrow; such files are rewritten with zstd.
_WRITER_CODECS = {
    "UNCOMPRESSED": "none",
    "SNAPPY": "snappy",
    "GZIP": "gzip",
    "BROTLI": "brotli",
    "ZSTD": "zstd",
    "LZ4": "lz4",
    "LZ4_RAW": "lz4",
}
_FALLBACK_CODEC = "zstd"
_FORMAT_VERSIONS = ("1.0", "2.4", "2.6")
_ARROW_ERRORS = (pa.ArrowException, OSError, ValueError)


def open_parquet(path: Path, pre_buffer: bool = False) -> pq.ParquetFile:
    """Open a parquet file and read its footer, or raise `InputError`.

    `pre_buffer` reads each row group's wanted column chunks in one go: a
    quarter faster when a scan reads a few columns of many.
    """
    try:
        parquet_file = pq.ParquetFile(path, pre_buffer=pre_buffer)
        parquet_file.schema_arrow  # noqa: B018 - converting the schema can fail too
    except _ARROW_ERRORS as exc:
        raise InputError(path, "footer", f"not a readable parquet file ({exc})") from None
    return parquet_file


def _row_group_starts(metadata: pq.FileMetaData) -> np.ndarray:
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    return np.cumsum([0] + sizes)


def _describe_rows(starts: np.ndarray, first: int, count: int) -> str:
    """Name the row group(s) holding rows first..first+count-1, for error messages."""
    last_group = len(starts) - 2
    if last_group < 0:
        return "footer"
    begin = min(int(np.searchsorted(starts, first, side="right")) - 1, last_group)
    end = min(int(np.searchsorted(starts, first + max(count, 1) - 1, side="right")) - 1, last_group)
    if begin == end:
        return f"row group {begin}"
    return f"row groups {begin}-{end}"


def aligned_batch_rows(metadata: pq.FileMetaData, batch_rows: int) -> int:
    """Batch size for reading: whole row groups when they are at most 4x `batch_rows`.

    Batches that cut across row groups read a third slower; memory stays
    bounded by a small multiple of the batch size either way.
    """
    largest = max((metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)), default=0)
    return largest if 0 < largest <= 4 * batch_rows else batch_rows


def read_batches(parquet_file: pq.ParquetFile, path: Path, columns: list[str] | None,
                 batch_rows: int, row_groups: list[int] | None = None) -> Iterator[pa.RecordBatch]:
    """Stream non-empty record batches (of `row_groups`, default all); corrupt data raises
    `InputError` naming the row group."""
    metadata = parquet_file.metadata
    starts = _row_group_starts(metadata)
    first = int(starts[row_groups[0]]) if row_groups else 0
    promised = metadata.num_rows if row_groups is None else sum(metadata.row_group(g).num_rows for g in row_groups)
    rows_read = 0
    try:
        iterator = parquet_file.iter_batches(batch_size=batch_rows, columns=columns, row_groups=row_groups)
    except _ARROW_ERRORS as exc:
        raise InputError(path, "footer", f"cannot read columns {columns}: {exc}") from None
    while True:
        try:
            batch = next(iterator, None)
        except _ARROW_ERRORS as exc:
            where = _describe_rows(starts, first + rows_read, batch_rows)
            raise InputError(path, where, f"corrupt data ({exc})") from None
        if batch is None:
            break
        if batch.num_rows:
            rows_read += batch.num_rows
            yield batch
    if rows_read != promised:
        raise InputError(path, "footer", f"footer promises {promised} rows, data holds {rows_read}")


class ParquetReader:
    """Streams one parquet shard as `Batch`es; `schema` is the file's full schema.

    A read of some columns only (a scan) decodes string columns with
    `parquet_pages` a row group at a time, when a row group is no larger than
    a batch may be; everything else streams through pyarrow.
    """

    def __init__(self, shard: Shard, options: ReadOptions):
        self.shard = shard
        self.options = options
        self._file = open_parquet(shard.path, pre_buffer=not options.all_columns)
        self.schema: pa.Schema = self._file.schema_arrow
        self.num_rows: int = self._file.metadata.num_rows
        self._batch_rows = options.batch_rows
        if options.align_batches:
            self._batch_rows = aligned_batch_rows(self._file.metadata, options.batch_rows)
        names = self.schema.names
        self.columns = resolve_columns(names, options.columns, shard.path)
        self._chunks: ChunkReader | None = None
        if options.all_columns:
            require_columns(names, options.extra_columns, shard.path)
            self._read_columns = None
        else:
            self._read_columns = needed_columns(names, self.columns, options.extra_columns, shard.path, options.needed)
            self._native = native_columns(self._file, self._read_columns)
            if self._native:
                self._chunks = ChunkReader(shard.path, self._file)

    def batches(self) -> Iterator[Batch]:
        position = 0
        for record_batch in self._record_batches():
            positions = np.arange(position, position + record_batch.num_rows, dtype=np.int64)
            position += record_batch.num_rows
            key_values = record_batch.column(self.columns.key) if self.columns.key else None
            keys = lazy_row_keys(key_values, self.shard.relpath, positions, self.shard.path)
            yield Batch(table=record_batch, keys=keys, positions=positions)

    def _record_batches(self) -> Iterator[pa.RecordBatch]:
        if self._chunks is None:
            yield from read_batches(self._file, self.shard.path, self._read_columns, self._batch_rows)
            return
        metadata = self._file.metadata
        for group in range(metadata.num_row_groups):
            rows = metadata.row_group(group).num_rows
            if rows == 0:
                continue
            if rows > 4 * self.options.batch_rows:  # too large to hold at once: stream it
                yield from read_batches(self._file, self.shard.path, self._read_columns, self._batch_rows,
                                        row_groups=[group])
                continue
            whole = self._read_row_group(group)
            for start in range(0, rows, self._batch_rows):
                yield whole.slice(start, self._batch_rows)

    def _read_row_group(self, group: int) -> pa.RecordBatch:
        """The read columns of one row group: strings decoded natively, the rest by pyarrow."""
        names = self._read_columns
        others = [name for name in names if name not in self._native]
        arrays = dict(zip(others, self._pyarrow_columns(group, others).columns)) if others else {}
        for name in self._native:
            try:
                arrays[name] = self._chunks.read(group, self._native[name])
            except (Unsupported, ValueError, OverflowError):
                # Outside what the native decoder handles, or a page it rejects: pyarrow decides.
                arrays[name] = self._pyarrow_columns(group, [name]).column(0)
        return pa.RecordBatch.from_arrays([arrays[name] for name in names],
                                          schema=pa.schema([self.schema.field(name) for name in names]))

    def _pyarrow_columns(self, group: int, names: list[str]) -> pa.RecordBatch:
        try:
            table = self._file.read_row_group(group, columns=names, use_threads=False)
        except _ARROW_ERRORS as exc:
            raise InputError(self.shard.path, f"row group {group}", f"corrupt data ({exc})") from None
        return table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], table.schema)

    def checksum(self) -> str | None:
        """The file's XXH3-128 when the native reads hashed it on the way, else None (hash it apart)."""
        return self._chunks.checksum() if self._chunks is not None else None

    def close(self) -> None:
        if self._chunks is not None:
            self._chunks.close()
        self._file.close()

    def __enter__(self) -> "ParquetReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def writer_codec(metadata: pq.FileMetaData) -> str:
    """The input's codec (of its first column chunk) as a pyarrow writer name."""
    if metadata.num_row_groups == 0 or metadata.num_columns == 0:
        return "snappy"
    codec = metadata.row_group(0).column(0).compression
    return _WRITER_CODECS.get(codec, _FALLBACK_CODEC)


def writer_row_group_rows(metadata: pq.FileMetaData) -> int:
    """Row-group size for the copy: the input's largest, capped to bound memory."""
    sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
    return max(1, min(max(sizes, default=MAX_ROW_GROUP_ROWS), MAX_ROW_GROUP_ROWS))


DICTIONARY_SAMPLE_ROWS = 10_000


def dictionary_columns(parquet_file: pq.ParquetFile) -> bool | list[str]:
    """Columns worth dictionary encoding in the copy: those whose values repeat.

    Decided from the file's first rows (not from a batch, so the bytes do not
    depend on batching). URLs, captions and digests are nearly unique: building
    a dictionary for them only to fall back to plain encoding costs a quarter
    of the write time and gives a larger file.
    """
    schema = parquet_file.schema_arrow
    if parquet_file.metadata.num_rows == 0 or any(pa.types.is_nested(f.type) for f in schema):
        return True
    sample = next(parquet_file.iter_batches(batch_size=DICTIONARY_SAMPLE_ROWS), None)
    if sample is None:
        return True
    return [name for name, column in zip(sample.schema.names, sample.columns) if _values_repeat(column)]


def _values_repeat(column: pa.Array) -> bool:
    if pa.types.is_dictionary(column.type):
        return True  # already dictionary-encoded in Arrow: keep it so
    try:
        return pc.count_distinct(column, mode="all").as_py() <= len(column) // 2
    except pa.ArrowNotImplementedError:
        return True  # a type we cannot count: keep the writer's default


def has_int96_columns(parquet_file: pq.ParquetFile) -> bool:
    """Spark writes timestamps as INT96; keep that physical type in the copy."""
    schema = parquet_file.schema
    return any(schema.column(i).physical_type == "INT96" for i in range(len(schema)))


class _SourceRows:
    """Full rows of the source file, taken in order; used when a batch was read
    with only some columns but the copy needs all of them."""

    def __init__(self, parquet_file: pq.ParquetFile, path: Path, batch_rows: int):
        self._schema = parquet_file.schema_arrow
        self._path = path
        self._batches = read_batches(parquet_file, path, None, batch_rows)
        self._buffer: pa.Table = self._schema.empty_table()
        self._position = 0

    def take(self, first: int, count: int) -> pa.Table:
        if first != self._position:
            raise ValueError(f"{self._path}: rows must be taken in order (at {self._position}, asked {first})")
        pieces = [self._buffer]
        available = self._buffer.num_rows
        while available < count:
            batch = next(self._batches, None)
            if batch is None:
                raise InputError(self._path, f"row {first + available}", "file ended early")
            pieces.append(pa.Table.from_batches([batch], schema=self._schema))
            available += batch.num_rows
        rows = pa.concat_tables(pieces)
        self._buffer = rows.slice(count)
        self._position += count
        return rows.slice(0, count)


class ParquetRowsWriter:
    """Writes the kept rows of one parquet source file, shaped like the source.

    The kept rows of each input row group become one output row group (none if
    all were removed; split if over MAX_ROW_GROUP_ROWS), so the copy keeps the
    source's layout. Each row group is written from contiguous memory, so the
    bytes depend only on the kept rows, not on how they were batched; when a
    batch is exactly one input row group (the job's default) its kept rows are
    written as they are, without another copy.
    """

    def __init__(self, source_path: Path, final_path: Path, batch_rows: int):
        self._source = open_parquet(source_path)
        self._source_path = source_path
        self._batch_rows = batch_rows
        self.schema: pa.Schema = self._source.schema_arrow
        metadata = self._source.metadata
        self._row_group_rows = writer_row_group_rows(metadata)
        self._group_ends = _row_group_starts(metadata)[1:]
        version = metadata.format_version if metadata.format_version in _FORMAT_VERSIONS else "2.6"
        self._final = final_path
        self._temp = temp_path(final_path)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(
            self._temp, self.schema, compression=writer_codec(metadata), version=version,
            use_deprecated_int96_timestamps=has_int96_columns(self._source),
            use_dictionary=dictionary_columns(self._source),
        )
        self._source_rows: _SourceRows | None = None
        self._pending: list[pa.Table] = []
        self._pending_rows = 0

    def _complete(self, table: pa.RecordBatch | pa.Table, first: int, count: int) -> pa.Table:
        """The rows with every source column: from the batch if it has them all."""
        names = self.schema.names
        if set(names).issubset(table.schema.names):
            if isinstance(table, pa.RecordBatch):
                table = pa.Table.from_batches([table])
            return table.select(names).cast(self.schema)
        if self._source_rows is None:
            if first != 0:
                raise ValueError(f"{self._source_path}: partial-column batches must start at row 0")
            self._source_rows = _SourceRows(self._source, self._source_path, self._batch_rows)
        return self._source_rows.take(first, count)

    def write(self, table: pa.RecordBatch | pa.Table, first: int, keep: np.ndarray) -> None:
        rows = self._complete(table, first, len(keep))
        start = first
        end = first + len(keep)
        while start < end:  # one piece per input row group the batch touches
            group = int(np.searchsorted(self._group_ends, start, side="right"))
            stop = min(end, int(self._group_ends[group])) if group < len(self._group_ends) else end
            mask = keep[start - first : stop - first]
            piece = rows.slice(start - first, stop - start)
            if not mask.all():
                piece = piece.filter(pa.array(mask, type=pa.bool_()))
            if piece.num_rows:
                self._pending.append(piece)
                self._pending_rows += piece.num_rows
            self._flush(final=group < len(self._group_ends) and stop == self._group_ends[group])
            start = stop

    def _flush(self, final: bool) -> None:
        """Write full row groups; with `final` (an input row group ended), the rest too."""
        size = self._row_group_rows
        while self._pending_rows >= size or (final and self._pending_rows):
            rows = self._pending[0] if len(self._pending) == 1 else pa.concat_tables(self._pending)
            group = rows.slice(0, min(size, rows.num_rows))
            if any(column.num_chunks > 1 for column in group.columns):
                group = group.combine_chunks()
            self._writer.write_table(group, row_group_size=size)
            rest = rows.slice(group.num_rows)
            self._pending = [rest] if rest.num_rows else []
            self._pending_rows = rest.num_rows

    def commit(self) -> Path:
        self._flush(final=True)
        self._writer.close()
        self._writer = None
        self._source.close()
        return publish(self._temp, self._final)

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except _ARROW_ERRORS:
                pass
            self._writer = None
        self._source.close()
        discard(self._temp)


class ParquetShardWriter:
    """Writes `out_root / shard.relpath` with the kept rows of one parquet shard."""

    def __init__(self, shard: Shard, reader: ParquetReader, out_root: Path):
        self._total_rows = reader.num_rows
        self._tally = RowTally(shard.path)
        self._rows = ParquetRowsWriter(shard.path, Path(out_root) / shard.relpath, reader.options.batch_rows)

    def write(self, batch: Batch, keep: np.ndarray) -> None:
        keep = self._tally.accept(batch.positions, keep)
        if batch.num_rows:
            self._rows.write(batch.table, int(batch.positions[0]), keep)

    def commit(self) -> list[Path]:
        self._tally.check_complete(self._total_rows)
        return [self._rows.commit()]

    def abort(self) -> None:
        self._rows.abort()


class ParquetFormat:
    name = "parquet"

    def discover(self, root: Path) -> list[Shard]:
        return find_shards(Path(root), PARQUET_SUFFIXES, self.name)

    def open(self, shard: Shard, options: ReadOptions) -> ParquetReader:
        return ParquetReader(shard, options)

    def open_writer(self, shard: Shard, reader: ParquetReader, out_root: Path) -> ParquetShardWriter:
        return ParquetShardWriter(shard, reader, out_root)
