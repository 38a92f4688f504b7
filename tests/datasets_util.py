"""Builders for small, benign test datasets (generated images, example.com URLs)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from safeset.datasets.base import ReadOptions, Shard

FIXED_MTIME = 1_700_000_000


def tiny_png(seed: int) -> bytes:
    """A small PNG of coloured rectangles, different for each seed."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (8, 8), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    draw.rectangle((2, 2, 5, 5), fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = FIXED_MTIME
    return info, data


def write_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A tar of the given (header, data) pairs, exactly as given (no name cleaning)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def sample_members(key: str, url: str, caption: str, image: bytes | None, ext: str = "png"):
    """The members img2dataset writes for one sample."""
    members = []
    if image is not None:
        members.append(regular(f"{key}.{ext}", image))
    members.append(regular(f"{key}.txt", caption.encode()))
    members.append(regular(f"{key}.json", json.dumps({"url": url, "caption": caption, "key": key}).encode()))
    return members


def run_shard(fmt, shard: Shard, out_root: Path | None = None, keep=None,
              options: ReadOptions | None = None):
    """Read every batch of a shard; with `out_root`, write kept rows (keep(batch) -> mask).

    Returns (batches, written paths).
    """
    options = options or ReadOptions()
    reader = fmt.open(shard, options)
    try:
        writer = fmt.open_writer(shard, reader, out_root) if out_root is not None else None
        batches = []
        for batch in reader.batches():
            batches.append(batch)
            if writer is not None:
                writer.write(batch, keep(batch) if keep else np.ones(batch.num_rows, dtype=bool))
        paths = writer.commit() if writer is not None else []
    finally:
        reader.close()
    return batches, paths


def all_keys(batches) -> list[str]:
    return [k for b in batches for k in b.keys.to_pylist()]


def all_positions(batches) -> list[int]:
    return [int(p) for b in batches for p in b.positions]
