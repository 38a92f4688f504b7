"""Flat string columns of a parquet row group, decoded without pyarrow's value-by-value path.

A metadata scan reads only a dataset's URL and digest columns, and reading
them was half of its time: pyarrow copies the file into memory, decompresses
each page into a fresh buffer, then appends value after value to a builder.
Here the column chunk is read once (hashed on the way, see `hashed_file`),
each page is decompressed into a buffer reused from page to page, and the C
code in `safeset._parquetpages` copies each value straight into its place in
the Arrow arrays: the same arrays pyarrow gives, in two thirds of the time.

Only what that C code handles takes this path: flat (top-level, not repeated)
BYTE_ARRAY columns read as Arrow string or binary, PLAIN and dictionary
encodings, data pages v1 and v2, the codecs Arrow can decompress by
themselves. `Unsupported` says a chunk is outside that; the caller then reads
it with pyarrow, as it does when the C code finds a page it cannot decode, so
an input pyarrow reads is never refused here. docs/scan-internals.md has the
whole picture.
"""

from __future__ import annotations

from pathlib import Path

import cramjam
import pyarrow as pa
import pyarrow.parquet as pq

from safeset import _parquetpages
from safeset.datasets.hashed_file import HashedFile
from safeset.datasets.scratch import scratch

# Codec names as pyarrow's metadata gives them -> Arrow codec names. pyarrow calls parquet's LZ4_RAW "LZ4";
# should a chunk be in the old Hadoop framing instead, it fails to decompress and pyarrow reads it.
_CODECS = {"UNCOMPRESSED": None, "SNAPPY": "snappy", "GZIP": "gzip", "ZSTD": "zstd", "BROTLI": "brotli",
           "LZ4": "lz4_raw", "LZ4_RAW": "lz4_raw"}
_PAGE_DATA, _PAGE_INDEX, _PAGE_DICTIONARY, _PAGE_DATA_V2 = 0, 1, 2, 3
_DICTIONARY_ENCODINGS = {0, 2}  # PLAIN, PLAIN_DICTIONARY
_VALUE_ENCODINGS = {0, 2, 8}  # PLAIN, PLAIN_DICTIONARY, RLE_DICTIONARY
_RLE = 3
_ARROW_TYPES = {pa.string(): False, pa.binary(): False, pa.large_string(): True, pa.large_binary(): True}
# A chunk larger than this (compressed or not) is streamed by pyarrow instead: memory stays bounded.
MAX_CHUNK_BYTES = 256 << 20


class Unsupported(Exception):
    """This column chunk is outside what the native decoder handles: read it with pyarrow."""


def native_columns(parquet_file: pq.ParquetFile, names: list[str]) -> dict[str, int]:
    """Of `names`, the columns the native decoder can read, with their leaf column index."""
    schema = parquet_file.schema
    arrow_schema = parquet_file.schema_arrow
    found = {}
    for index in range(len(schema)):
        column = schema.column(index)
        name = column.path
        if name not in names or "." in name or name not in arrow_schema.names:
            continue
        if (column.physical_type == "BYTE_ARRAY" and column.max_repetition_level == 0
                and column.max_definition_level <= 1 and arrow_schema.field(name).type in _ARROW_TYPES):
            found[name] = index
    return found


class ChunkReader:
    """Reads column chunks of one parquet file into Arrow arrays (see the module docstring)."""

    def __init__(self, path: Path, parquet_file: pq.ParquetFile):
        self._path = path
        self._metadata = parquet_file.metadata
        self._schema = parquet_file.schema
        self._arrow_schema = parquet_file.schema_arrow
        self._file = HashedFile(path)
        self._pages = PageScratch()

    def checksum(self) -> str:
        """XXH3-128 of the whole file, mostly from the reads already made (see `hashed_file`)."""
        return self._file.checksum()

    def close(self) -> None:
        self._file.close()

    def read(self, row_group: int, column_index: int) -> pa.Array:
        """The chunk's values as an Arrow array; `Unsupported`, or ValueError for a page the decoder rejects."""
        chunk_meta = self._metadata.row_group(row_group).column(column_index)
        rows = self._metadata.row_group(row_group).num_rows
        leaf = self._schema.column(column_index)
        arrow_type = self._arrow_schema.field(leaf.path).type
        codec_name = _CODECS.get(chunk_meta.compression, "unsupported")
        if codec_name == "unsupported":
            raise Unsupported(f"codec {chunk_meta.compression}")
        if max(chunk_meta.total_compressed_size, chunk_meta.total_uncompressed_size) > MAX_CHUNK_BYTES:
            raise Unsupported("chunk too large to decode at once")
        if chunk_meta.encodings and not set(chunk_meta.encodings) <= {"PLAIN", "PLAIN_DICTIONARY", "RLE",
                                                                      "RLE_DICTIONARY", "BIT_PACKED"}:
            raise Unsupported(f"encodings {chunk_meta.encodings}")
        codec = pa.Codec(codec_name) if codec_name else None
        decoder = _parquetpages.ByteArrayDecoder(leaf.max_definition_level, rows, _ARROW_TYPES[arrow_type],
                                                 chunk_meta.total_uncompressed_size)
        self._decode_pages(self._read_chunk(chunk_meta), codec, leaf.max_definition_level, decoder, self._pages)
        validity, offsets, data, nulls = decoder.finish()
        buffers = [pa.py_buffer(validity) if validity is not None else None, pa.py_buffer(offsets),
                   pa.py_buffer(data)]
        return pa.Array.from_buffers(arrow_type, rows, buffers, null_count=nulls)

    def _read_chunk(self, chunk_meta) -> memoryview:
        start = chunk_meta.data_page_offset
        if chunk_meta.dictionary_page_offset is not None and 0 < chunk_meta.dictionary_page_offset < start:
            start = chunk_meta.dictionary_page_offset
        size = chunk_meta.total_compressed_size
        view = scratch("parquet chunk", size)  # decoded arrays never point into it
        got = self._file.read_into(view, start)
        if got != size:
            raise ValueError(f"column chunk at byte {start} is cut short ({got} of {size} bytes)")
        return view

    @staticmethod
    def _decode_pages(chunk: memoryview, codec, max_definition_level: int, decoder, scratch: "PageScratch") -> None:
        """Decompress each page and hand it to the decoder while it is still in cache.

        Data pages are copied out by the decoder at once, so they share one
        scratch buffer; the dictionary page is kept by the decoder until the
        chunk is done, so it gets another."""
        seen_dictionary = False
        for (page_type, start, compressed, uncompressed, values, encoding, level_encoding, v2_levels,
             v2_repetition, v2_compressed) in _parquetpages.page_headers(chunk):
            body = chunk[start : start + compressed]
            if page_type == _PAGE_DICTIONARY:
                if encoding not in _DICTIONARY_ENCODINGS or seen_dictionary:
                    raise Unsupported(f"dictionary page encoding {encoding}")
                decoder.set_dictionary(scratch.decompress(codec, body, uncompressed, "dictionary"), values)
                seen_dictionary = True
            elif page_type == _PAGE_DATA:
                if encoding not in _VALUE_ENCODINGS or (max_definition_level and level_encoding != _RLE):
                    raise Unsupported(f"data page encoding {encoding}/{level_encoding}")
                decoder.add_page(1, scratch.decompress(codec, body, uncompressed), None, values, encoding)
            elif page_type == _PAGE_DATA_V2:
                if encoding not in _VALUE_ENCODINGS or v2_repetition:
                    raise Unsupported(f"data page v2 encoding {encoding}")
                if v2_levels > compressed:
                    raise ValueError("data page v2: levels run past the page")
                values_body = body[v2_levels:]
                if v2_compressed and codec is not None:
                    values_body = scratch.decompress(codec, values_body, uncompressed - v2_levels)
                decoder.add_page(2, values_body, body[:v2_levels], values, encoding)
            elif page_type != _PAGE_INDEX:
                raise Unsupported(f"page type {page_type}")


class PageScratch:
    """Decompresses a chunk's pages into reused buffers: one for data pages, one for its dictionary.

    A fresh buffer per page costs a third more time than one that stays in
    cache. A data page is copied out by the decoder before the next one
    comes; a dictionary page is needed until its chunk is decoded, and the
    next chunk's dictionary comes only after that. Snappy, the usual codec of
    dataset parquet, can decompress into a given buffer (cramjam); other
    codecs go through Arrow's."""

    def decompress(self, codec, body: memoryview, size: int, slot: str = "data"):
        if codec is None or codec.name != "snappy":
            return _decompress(codec, body, size)
        out = scratch(f"parquet {slot} page", size)
        try:
            got = cramjam.snappy.decompress_raw_into(body, out)
        except cramjam.DecompressionError as exc:
            raise ValueError(f"page does not decompress: {exc}") from None
        if got != size:
            raise ValueError(f"page decompresses to {got} bytes, its header says {size}")
        return out


def _decompress(codec, body: memoryview, size: int):
    if codec is None:
        if len(body) != size:
            raise ValueError(f"uncompressed page holds {len(body)} bytes, its header says {size}")
        return body
    if size < 0:
        raise ValueError("negative page size")
    try:
        out = codec.decompress(body, decompressed_size=size)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"page does not decompress: {exc}") from None
    if out.size != size:
        raise ValueError(f"page decompresses to {out.size} bytes, its header says {size}")
    return out
