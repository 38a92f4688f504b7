"""The identifiers a sample is recorded and listed by: URL digest, image digests, key.

Run records (`removed.parquet`), published removal lists and their decoys
all describe a sample the same way, computed by these functions, so a list
made from records matches rows the way `removals apply` computes them:

- `url_sha256`: SHA-256 of the canonical URL (docs/url-canonical-form.md);
- `image_sha256`, `image_md5`: of the image bytes when the batch carries
  them (webdataset), else the dataset's own digest column when it has one
  and the value is valid hex, else unknown (null);
- `key`: the sample key (`Batch.keys`).

They run on a few rows of a batch (the withheld ones, the drawn decoys), so
each works on the rows asked for only.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.datasets.base import Batch, Columns
from safeset.signals import kernels
from safeset.signals.url import canonical_url_array

IMAGE_DIGESTS = {"image_sha256": ("sha256", 32), "image_md5": ("md5", 16)}


def _text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = pc.cast(column, pa.string())
    return column


def _hex_or_null(digests: np.ndarray, valid: np.ndarray) -> pa.Array:
    if not len(digests):
        return pa.array([], pa.string())
    text = kernels.hex_encode_array(digests)
    return pc.if_else(pa.array(valid, pa.bool_()), text, pa.scalar(None, pa.string()))


def url_sha256_hex(urls: pa.Array) -> pa.Array:
    """SHA-256 (hex) of each URL's canonical form; null where the URL is null."""
    urls = _text(urls)
    if not len(urls):
        return pa.array([], pa.string())
    canonical, _ = canonical_url_array(urls)
    valid = np.asarray(urls.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    return _hex_or_null(kernels.digest_array(canonical, "sha256"), valid)


def image_digest_hex(batch: Batch, columns: Columns, rows: np.ndarray, algo: str) -> pa.Array:
    """Hex digest of the image of each of `rows`, where the batch knows it; else null."""
    size = kernels.DIGEST_SIZES[algo]
    if batch.images is not None:
        values = []
        for row in rows.tolist():
            image = batch.images[row]
            values.append(None if image is None else hashlib.new(algo, image).hexdigest())
        return pa.array(values, pa.string())
    name = getattr(columns, algo)
    if name is None or name not in batch.table.schema.names:
        return pa.nulls(len(rows), pa.string())
    column = batch.table.column(name).take(pa.array(rows, pa.int64()))
    digests, valid = kernels.hex_decode_array(column, size)
    return _hex_or_null(digests, valid)


def sample_identifiers(batch: Batch, columns: Columns, rows: np.ndarray) -> dict[str, pa.Array]:
    """url_sha256, image_sha256, image_md5 and key of `rows` of a batch (nullable strings)."""
    rows = np.asarray(rows, dtype=np.int64)
    if columns.url is not None and columns.url in batch.table.schema.names:
        urls = url_sha256_hex(batch.table.column(columns.url).take(pa.array(rows, pa.int64())))
    else:
        urls = pa.nulls(len(rows), pa.string())
    identifiers = {"url_sha256": urls}
    for name, (algo, _) in IMAGE_DIGESTS.items():
        identifiers[name] = image_digest_hex(batch, columns, rows, algo)
    identifiers["key"] = pa.array(batch.keys_at(rows) if len(rows) else [], pa.string())
    return identifiers


def image_digests_known(batch: Batch, columns: Columns, algo: str) -> np.ndarray:
    """Per row of the batch: whether `image_digest_hex` would give a value (not null)."""
    if batch.images is not None:
        return np.array([image is not None for image in batch.images], dtype=bool)
    name = getattr(columns, algo)
    if name is None or name not in batch.table.schema.names:
        return np.zeros(batch.num_rows, dtype=bool)
    _, valid = kernels.hex_decode_array(batch.table.column(name), kernels.DIGEST_SIZES[algo])
    return valid
