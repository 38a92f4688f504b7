"""img2dataset webdataset shards: `00000.tar` beside `00000.parquet` and `00000_stats.json`.

A sample is every tar member sharing a key. When the sibling parquet exists its
rows are the shard's rows, in parquet order, with the tar's members attached by
key: that parquet lists every *input* sample, failed downloads included, so
nothing is lost. Tar samples the parquet does not list ("orphans") follow, in
tar order: their url comes from the sample's `.json`, their caption from `.txt`
(else the `.json`), their key from the tar; every other column is null. A
parquet key seen twice gets the tar sample on its first row only. Without a
sibling parquet the rows are the tar's samples with columns `key, url, caption`.

Image bytes are read member by member, by offset, one batch at a time. A
sample with several image members gets the first in `Batch.images` and an
error that marks the row unchecked, since only one image per row is checked.

The writer copies the kept samples' members byte for byte (headers included),
in archive order, plus archive structure (directory entries, global pax
headers); a last member cut short by a truncated file cannot be copied
verbatim and is left out.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.datasets.base import Batch, ReadOptions, Shard
from safeset.datasets.columns import key_strings, needed_columns, require_columns, resolve_columns, row_keys
from safeset.datasets.files import find_shards
from safeset.datasets.parquet import ParquetRowsWriter, open_parquet, read_batches
from safeset.datasets.tar_index import BLOCK_SIZE, RECORD_SIZE, Member, index_tar, read_member
from safeset.datasets.writing import RowTally, discard, publish, temp_path
from safeset.errors import InputError

TAR_SUFFIXES = (".tar",)
TAR_ONLY_SCHEMA = pa.schema([("key", pa.string()), ("url", pa.string()), ("caption", pa.string())])
_COPY_CHUNK = 1 << 20


def sibling_paths(tar_path: Path) -> tuple[Path, Path]:
    """The img2dataset companions of a tar: (`<stem>.parquet`, `<stem>_stats.json`)."""
    stem = tar_path.name[: -len(".tar")]
    return tar_path.with_name(f"{stem}.parquet"), tar_path.with_name(f"{stem}_stats.json")


def _join_errors(*reasons: str | None) -> str | None:
    present = [r for r in reasons if r]
    return "; ".join(present) if present else None


class WebDatasetReader:
    """Rows of one tar shard (see the module docstring for which rows)."""

    def __init__(self, shard: Shard, options: ReadOptions):
        self.shard = shard
        self.options = options
        self.index = index_tar(shard.path)
        parquet_path, _ = sibling_paths(shard.path)
        self.parquet_path: Path | None = parquet_path if parquet_path.is_file() else None
        self._parquet = None
        self._stream = open(shard.path, "rb")
        try:
            if self.parquet_path is not None:
                self._init_from_parquet(self.parquet_path)
            else:
                self._init_from_tar()
        except BaseException:
            self.close()
            raise
        self.num_rows = len(self.sample_of_row)

    def _init_from_parquet(self, parquet_path: Path) -> None:
        self._parquet = open_parquet(parquet_path)
        self.schema: pa.Schema = self._parquet.schema_arrow
        names = self.schema.names
        self.columns = resolve_columns(names, self.options.columns, parquet_path)
        if self.columns.key is None:
            raise InputError(parquet_path, None, "no key column to match the tar's samples "
                             f"(columns: {', '.join(names)}; use --key-column)")
        self._read_columns = (None if self.options.all_columns else
                              needed_columns(names, self.columns, self.options.extra_columns, parquet_path,
                                             self.options.needed))
        if self.options.all_columns:
            require_columns(names, self.options.extra_columns, parquet_path)
        claimed: set[str] = set()
        # sample_of_row[position] = the tar sample attached to that row, if any
        self.sample_of_row: list[str | None] = []
        for batch in read_batches(self._parquet, parquet_path, [self.columns.key], 1 << 16):
            for key in key_strings(batch.column(0), parquet_path).to_pylist():
                if key is not None and key in self.index.samples and key not in claimed:
                    claimed.add(key)
                    self.sample_of_row.append(key)
                else:
                    self.sample_of_row.append(None)
        self.parquet_rows = len(self.sample_of_row)
        self.sample_of_row.extend(key for key in self.index.samples if key not in claimed)

    def _init_from_tar(self) -> None:
        self.schema = TAR_ONLY_SCHEMA
        self.columns = resolve_columns(self.schema.names, self.options.columns, self.shard.path)
        require_columns(self.schema.names, self.options.extra_columns, self.shard.path)
        self._read_columns = None
        self.parquet_rows = 0
        self.sample_of_row = list(self.index.samples)

    # -- reading ---------------------------------------------------------------

    def batches(self) -> Iterator[Batch]:
        position = 0
        if self._parquet is not None:
            for table in read_batches(self._parquet, self.parquet_path, self._read_columns,
                                      self.options.batch_rows):
                positions = np.arange(position, position + table.num_rows, dtype=np.int64)
                keys = row_keys(table.column(self.columns.key), self.shard.relpath, positions,
                                self.parquet_path)
                images, errors = self._images(position, table.num_rows)
                position += table.num_rows
                yield Batch(table=table, keys=keys, positions=positions, images=images, errors=errors)
        while position < self.num_rows:
            count = min(self.options.batch_rows, self.num_rows - position)
            yield self._tar_rows_batch(position, count)
            position += count

    def _images(self, first: int, count: int) -> tuple[list[bytes | None], list[str | None]]:
        images: list[bytes | None] = []
        errors: list[str | None] = []
        for key in self.sample_of_row[first:first + count]:
            image, error = self._image_of(key) if key is not None else (None, None)
            images.append(image)
            errors.append(error)
        return images, errors

    def _image_of(self, key: str) -> tuple[bytes | None, str | None]:
        candidates = [m for m in self.index.samples[key] if m.is_image]
        if not candidates:
            return None, None
        image, error = read_member(self._stream, candidates[0], self.options.max_member_bytes, "image")
        if len(candidates) > 1:
            names = ", ".join(m.name for m in candidates)
            error = _join_errors(error, f"sample has {len(candidates)} image members ({names}); "
                                        f"only '{candidates[0].name}' is checked")
        return image, error

    def _text_of(self, key: str) -> tuple[str | None, str | None, str | None]:
        """(url, caption, error) from the sample's `.json` and `.txt` members."""
        members = self.index.samples[key]
        json_member = next((m for m in members if m.extension == "json"), None)
        text_member = next((m for m in members if m.extension == "txt"), None)
        url = caption = error = None
        limit = self.options.max_member_bytes
        if json_member is not None:
            data, error = read_member(self._stream, json_member, limit, "json")
            if data is not None:
                url, caption, error = _url_and_caption(json_member, data)
        if text_member is not None:
            data, text_error = read_member(self._stream, text_member, limit, "text")
            error = _join_errors(error, text_error)
            if data is not None:
                caption = data.decode("utf-8", errors="replace")
        return url, caption, error

    def _tar_rows_batch(self, first: int, count: int) -> Batch:
        """Rows that exist only in the tar (all rows when there is no sibling parquet)."""
        keys = self.sample_of_row[first:first + count]
        urls, captions, errors = [], [], []
        images, image_errors = self._images(first, count)
        for key, image_error in zip(keys, image_errors):
            url, caption, text_error = self._text_of(key)
            urls.append(url)
            captions.append(caption)
            errors.append(_join_errors(image_error, text_error))
        table = self._tar_rows_table(keys, urls, captions)
        positions = np.arange(first, first + count, dtype=np.int64)
        return Batch(table=table, keys=pa.array(keys, type=pa.string()), positions=positions,
                     images=images, errors=errors)

    def _tar_rows_table(self, keys: list, urls: list, captions: list) -> pa.RecordBatch:
        by_column = {self.columns.key: keys, self.columns.url: urls, self.columns.caption: captions}
        names = self._read_columns if self._read_columns is not None else self.schema.names
        fields = [self.schema.field(name) for name in names]
        arrays = []
        for field in fields:
            values = by_column.get(field.name)
            arrays.append(_as_type(values, field.type, len(keys)))
        return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields, metadata=self.schema.metadata))

    def close(self) -> None:
        self._stream.close()
        if self._parquet is not None:
            self._parquet.close()

    def __enter__(self) -> "WebDatasetReader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _url_and_caption(member: Member, data: bytes) -> tuple[str | None, str | None, str | None]:
    try:
        meta = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        return None, None, f"json member '{member.name}' is not valid JSON ({exc})"
    if not isinstance(meta, dict):
        return None, None, f"json member '{member.name}' is not a JSON object"
    url = meta.get("url")
    caption = meta.get("caption")
    return (url if isinstance(url, str) else None,
            caption if isinstance(caption, str) else None, None)


def _as_type(values: list | None, arrow_type: pa.DataType, count: int) -> pa.Array:
    """Text values cast to a parquet column's type; nulls where that is impossible."""
    if values is None:
        return pa.nulls(count, type=arrow_type)
    text = pa.array(values, type=pa.string())
    try:
        return pc.cast(text, arrow_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.nulls(count, type=arrow_type)


class WebDatasetShardWriter:
    """Writes the kept samples' tar members verbatim, the sibling parquet
    filtered to kept rows, and the stats file unchanged."""

    def __init__(self, shard: Shard, reader: WebDatasetReader, out_root: Path):
        self._reader = reader
        self._tally = RowTally(shard.path)
        self._final_tar = Path(out_root) / shard.relpath
        self._temp_tar = temp_path(self._final_tar)
        self._kept_samples: set[str] = set()
        self._parquet_writer: ParquetRowsWriter | None = None
        if reader.parquet_path is not None:
            self._parquet_writer = ParquetRowsWriter(
                reader.parquet_path, self._final_tar.with_name(reader.parquet_path.name),
                reader.options.batch_rows)
        _, stats_path = sibling_paths(shard.path)
        self._stats_path = stats_path if stats_path.is_file() else None
        self._final_stats = self._final_tar.with_name(stats_path.name)
        self._temp_stats = temp_path(self._final_stats) if self._stats_path else None

    def write(self, batch: Batch, keep: np.ndarray) -> None:
        keep = self._tally.accept(batch.positions, keep)
        if not batch.num_rows:
            return
        samples = self._reader.sample_of_row
        for position in batch.positions[keep]:
            key = samples[int(position)]
            if key is not None:
                self._kept_samples.add(key)
        first = int(batch.positions[0])
        in_parquet = batch.positions < self._reader.parquet_rows
        if self._parquet_writer is not None and in_parquet.any():
            self._parquet_writer.write(batch.table.slice(0, int(in_parquet.sum())), first,
                                     keep[in_parquet])

    def _write_tar(self) -> None:
        index = self._reader.index
        written = 0
        with open(index.path, "rb") as source, open(self._temp_tar, "wb") as target:
            for segment in index.segments:
                if segment.sample is not None and segment.sample not in self._kept_samples:
                    continue
                if segment.member is not None and segment.member is index.truncated:
                    continue  # its data is not in the input; it cannot be copied verbatim
                written += _copy_range(source, target, segment.start, segment.end, index.file_size)
            end_of_archive = 2 * BLOCK_SIZE
            total = written + end_of_archive
            target.write(bytes(end_of_archive + (-total % RECORD_SIZE)))

    def commit(self) -> list[Path]:
        self._tally.check_complete(self._reader.num_rows)
        self._write_tar()
        paths = [publish(self._temp_tar, self._final_tar)]
        if self._parquet_writer is not None:
            paths.append(self._parquet_writer.commit())
        if self._stats_path is not None:
            shutil.copyfile(self._stats_path, self._temp_stats)
            paths.append(publish(self._temp_stats, self._final_stats))
        return paths

    def abort(self) -> None:
        discard(self._temp_tar)
        if self._parquet_writer is not None:
            self._parquet_writer.abort()
        if self._temp_stats is not None:
            discard(self._temp_stats)


def _copy_range(source, target, start: int, end: int, file_size: int) -> int:
    """Copy source[start:end] to target; bytes past the end of the file (missing
    padding after the last member) are written as zeros. Returns bytes written."""
    source.seek(start)
    remaining = min(end, file_size) - start
    while remaining > 0:
        chunk = source.read(min(_COPY_CHUNK, remaining))
        if not chunk:
            break
        target.write(chunk)
        remaining -= len(chunk)
    copied = min(end, file_size) - start - remaining
    target.write(bytes(end - start - copied))
    return end - start


class WebDatasetFormat:
    name = "webdataset"

    def discover(self, root: Path) -> list[Shard]:
        return find_shards(Path(root), TAR_SUFFIXES, self.name)

    def open(self, shard: Shard, options: ReadOptions) -> WebDatasetReader:
        return WebDatasetReader(shard, options)

    def open_writer(self, shard: Shard, reader: WebDatasetReader, out_root: Path) -> WebDatasetShardWriter:
        return WebDatasetShardWriter(shard, reader, out_root)
