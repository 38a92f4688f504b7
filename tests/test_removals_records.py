"""Run records carry image digests for removal lists, and older records stay readable."""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from safeset.datasets.base import Batch, Columns
from safeset.jobs import records
from safeset.jobs.sample_ids import image_digest_hex, sample_identifiers


def test_records_without_image_digest_columns_concatenate_as_nulls(tmp_path):
    old_schema = pa.schema([f for f in records.REMOVED_SCHEMA if not f.name.startswith("image_")])
    old_part = tmp_path / "old.removed.parquet"
    pq.write_table(pa.table({"key": ["a"], "source": ["s"], "position": [0], "url": [None], "url_sha256": [None],
                             "action": ["remove"], "reasons": [[]]}, schema=old_schema), old_part)
    writer = records.RemovedRowsWriter(tmp_path / "new.removed.parquet")
    writer.add(key="b", source="s", position=1, url=None, canonical_url=None, action="review", reasons=[],
               image_md5="01" * 16, image_sha256="02" * 32)
    new_part = writer.commit()
    assert records.concat_removed([old_part, new_part], tmp_path / "removed.parquet") == 2
    table = pq.read_table(tmp_path / "removed.parquet")
    assert table.column("image_md5").to_pylist() == [None, "01" * 16]
    assert table.column("image_sha256").to_pylist() == [None, "02" * 32]


def test_identifiers_come_from_image_bytes_else_from_valid_digest_columns():
    table = pa.record_batch({"URL": ["https://Example.com/a", None], "md5": ["AB" * 16, "not hex"],
                             "key": ["k1", None]})
    batch = Batch(table=table, keys=pa.array(["k1", "s#1"]), positions=np.arange(2))
    columns = Columns(url="URL", md5="md5", key="key")
    ids = sample_identifiers(batch, columns, np.array([1, 0]))
    assert ids["image_md5"].to_pylist() == [None, "ab" * 16]
    assert ids["image_sha256"].to_pylist() == [None, None]
    assert ids["url_sha256"].to_pylist() == [None, hashlib.sha256(b"https://example.com/a").hexdigest()]
    assert ids["key"].to_pylist() == ["s#1", "k1"]
    with_images = Batch(table=table, keys=pa.array(["k1", "k2"]), positions=np.arange(2), images=[b"png", None])
    assert image_digest_hex(with_images, columns, np.array([0, 1]), "sha256").to_pylist() == [
        hashlib.sha256(b"png").hexdigest(), None]
