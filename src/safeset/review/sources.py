"""Reading what a run withheld back from its dataset: image bytes and provenance columns.

A webdataset shard is read with the webdataset reader's own index (the same
rows, keys and members the scan saw), member by member, so an import reads
only the images it queues. A shard that changed since the run (its checksum
differs from run.json's) is refused: its bytes might not be the ones judged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from safeset.datasets.base import DEFAULT_MAX_MEMBER_BYTES, ReadOptions, Shard
from safeset.datasets.tar_index import read_member
from safeset.errors import InputError
from safeset.review import provenance
from safeset.review.model import BYTES_NONE, BYTES_QUARANTINED, BYTES_UNREADABLE


class SampleImage:
    """What a row's sample offers: bytes, or the reason there are none."""

    def __init__(self, data: bytes | None, state: str, note: str | None = None, metadata: dict | None = None):
        self.data = data
        self.state = state
        self.note = note
        self.metadata = metadata or {}


def verify_checksum(path: Path, expected: str | None) -> None:
    from safeset.jobs.shard_task import file_checksum

    if not path.is_file():
        raise InputError(path, None, "shard named by the run is missing (pass --dataset if the dataset moved)")
    if expected and file_checksum(path) != expected:
        raise InputError(path, None, "shard changed since the run (checksum differs from run.json); "
                                     "its bytes may not be the ones that were judged: scan it again")


class WebDatasetImages:
    """Image bytes and `.json` metadata of one webdataset shard's rows."""

    def __init__(self, root: Path, relpath: str, max_member_bytes: int = DEFAULT_MAX_MEMBER_BYTES):
        from safeset.datasets.webdataset import WebDatasetReader

        self.max_member_bytes = max_member_bytes
        self.reader = WebDatasetReader(Shard(Path(root), relpath, "webdataset"), ReadOptions())
        self.stream = open(self.reader.shard.path, "rb")

    def close(self) -> None:
        self.stream.close()
        self.reader.close()

    def __enter__(self) -> "WebDatasetImages":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def at(self, position: int, key: str | None) -> SampleImage:
        reader = self.reader
        if not 0 <= position < reader.num_rows:
            return SampleImage(None, BYTES_UNREADABLE, f"row {position} is not in the shard any more")
        sample = reader.sample_of_row[position]
        if sample is None:
            return SampleImage(None, BYTES_NONE, "the row has no sample in the tar (failed download)")
        if key is not None and sample != key:
            return SampleImage(None, BYTES_UNREADABLE, f"row {position} now holds sample {sample}, not {key}")
        members = reader.index.samples[sample]
        metadata = self._metadata(members)
        images = [m for m in members if m.is_image]
        if not images:
            return SampleImage(None, BYTES_NONE, "the sample has no image member", metadata)
        data, error = read_member(self.stream, images[0], self.max_member_bytes, "image")
        if data is None:
            return SampleImage(None, BYTES_UNREADABLE, error, metadata)
        return SampleImage(data, BYTES_QUARANTINED, None, metadata)

    def _metadata(self, members) -> dict[str, Any]:
        member = next((m for m in members if m.extension == "json"), None)
        if member is None:
            return {}
        data, _ = read_member(self.stream, member, self.max_member_bytes, "json")
        try:
            parsed = json.loads(data) if data is not None else {}
        except (ValueError, UnicodeDecodeError):
            return {}
        return parsed if isinstance(parsed, dict) else {}

    @property
    def parquet_path(self) -> Path | None:
        return self.reader.parquet_path

    @property
    def parquet_rows(self) -> int:
        return self.reader.parquet_rows


class ParquetHints:
    """Provenance-hint columns of one parquet file, read once, looked up by row position."""

    def __init__(self, path: Path | None):
        self.rows: list[dict] = []
        if path is None or not Path(path).is_file():
            return
        try:
            parquet = pq.ParquetFile(path)
            names = [name for name in parquet.schema_arrow.names if provenance.is_hint_column(name)]
            if names:
                self.rows = parquet.read(columns=names).to_pylist()
        except (OSError, pa.ArrowException):  # a hint: an unreadable file gives none, the import goes on
            self.rows = []

    def at(self, position: int) -> dict[str, Any]:
        if 0 <= position < len(self.rows):
            return provenance.from_metadata(self.rows[position])
        return {}
