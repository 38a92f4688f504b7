"""Generate a LAION-style parquet dataset and two hash banks for benchmarks.

    python bench/gen_laion.py --out bench/data/laion-10m --rows 10_000_000 --files 20 \
        --url-bank 2_000_000 --image-bank 10_000_000

Writes, under --out:
  laion/part-NNNNN.parquet   LAION-5B metadata columns (URL, TEXT, WIDTH, HEIGHT,
                             similarity, punsafe, pwatermark, hash) plus `md5`;
                             snappy, row groups of 100k rows, like LAION's files.
  banks/url_md5.txt          one lowercase hex MD5 per line: MD5s of the raw URLs of
                             ~1,000 dataset rows (hits) among random digests.
  banks/image_md5.txt        the same for the `md5` column: ~1,000 hits among random digests.
  expected.json              how many rows each bank should match (and both together).
  params.json                the parameters; written last, so its presence with equal
                             parameters means the data is complete and is reused.

Everything is built column-wise with numpy/pyarrow (no Python loop per row),
one file at a time, so memory stays bounded by the file size. Output is a
pure function of the parameters and the seed. All hosts are made up under
reserved names (example.com/.net/.org, .example, .test); captions are benign.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

GENERATOR_VERSION = 1
ROW_GROUP_ROWS = 100_000
BANK_CHUNK_LINES = 1_000_000
DEFAULT_HITS = 1_000

SCHEMA = pa.schema(
    [
        ("URL", pa.string()),
        ("TEXT", pa.string()),
        ("WIDTH", pa.int64()),
        ("HEIGHT", pa.int64()),
        ("similarity", pa.float64()),
        ("punsafe", pa.float64()),
        ("pwatermark", pa.float64()),
        ("hash", pa.int64()),
        ("md5", pa.string()),
    ]
)

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# Byte value -> its two hex characters, as a (256, 2) table.
_HEX_PAIRS = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1)

_WORDS = (
    "sunny", "blue", "river", "garden", "market", "vintage", "city", "mountain", "studio", "craft",
    "coffee", "forest", "travel", "design", "kitchen", "ocean", "retro", "urban", "pixel", "paper",
)
_HOST_BASES = ("example.com", "example.net", "example.org", "example", "test")
_HOST_PREFIXES = ("", "www.", "img.", "cdn.", "images.", "static.", "media.", "i0.", "assets.", "photos.")
_SECTIONS = (
    "images", "uploads", "media", "photos", "wp-content/uploads", "assets/img", "p", "files",
    "content/dam/products", "catalog/product/cache", "s3/bucket/public", "thumbnails/large",
)
_SLUG_WORDS = (
    "red", "blue", "green", "brown", "grey", "bicycle", "teapot", "armchair", "lighthouse", "sailboat",
    "umbrella", "bookshelf", "kite", "cactus", "guitar", "tractor", "backpack", "lantern", "bridge", "mug",
)
_SLUG_ESCAPED = ("caf%C3%A9-table", "red%20bicycle", "sunset%2Dbeach", "%7Euser-photo", "a%2Fb-photo")
_EXTENSIONS = (".jpg", ".jpg", ".jpg", ".jpeg", ".png", ".webp", ".JPG")
_QUERIES = (
    "?w=640&h=480", "?size=large&ref=feed", "?v=2", "?auto=format&fit=crop&q=80",
    "?width=1200&quality=85", "?itok=Xk2p9aQ1", "?format=jpg&name=small", "?resize=300%2C200&ssl=1",
)
_CAPTION_HEADS = (
    "a photo of a", "close-up of a", "stock image of a", "vintage postcard showing a",
    "watercolor painting of a", "illustration of a", "product shot of a", "aerial view of a",
)
_CAPTION_ADJECTIVES = ("shiny", "small", "wooden", "bright", "old", "modern", "tiny", "large", "green", "striped")
_CAPTION_COLOURS = ("", "", "", "blue ", "white ", "black ", "yellow ", "grey and white ", "dark green ")
_CAPTION_NOUNS = (
    "bicycle", "teapot", "armchair", "lighthouse", "sailboat", "umbrella", "bookshelf", "kite",
    "cactus", "guitar", "tractor", "backpack", "lantern", "bridge", "coffee mug", "garden bench",
)
_CAPTION_TAILS = (
    "on a sunny street", "in a quiet park", "by the sea at dusk", "in a modern kitchen",
    "on a wooden table", "under a cloudy sky", "in a mountain village", "at a busy market stall",
    "isolated on white background", "with soft morning light", "- free stock photo", "for sale online",
)
_CAPTION_NON_ASCII = (
    "Café au lait on a wooden table", "Straßenbahn im Schnee", "東京の夜景 night city view",
    "Piñata at a birthday party 🎉", "Crème brûlée with fresh berries", "Παραλία beach at sunset",
)


# --------------------------------------------------------------------------- vector helpers


def hex_strings(raw: np.ndarray) -> pa.Array:
    """(n, k) uint8 -> string array of n lowercase hex strings of 2k characters."""
    n, k = raw.shape
    chars = _HEX_PAIRS[raw].reshape(n, 2 * k)
    offsets = np.arange(n + 1, dtype=np.int32) * (2 * k)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())])


def pick(pool: tuple[str, ...] | pa.Array, index: np.ndarray) -> pa.Array:
    values = pool if isinstance(pool, pa.Array) else pa.array(pool, pa.string())
    return values.take(pa.array(index))


def join(*parts) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def host_pool(rng: np.random.Generator, size: int = 20_000) -> pa.Array:
    """Made-up hosts under reserved names; the same pool for every file."""
    first = rng.integers(0, len(_WORDS), size)
    second = rng.integers(0, len(_WORDS), size)
    number = rng.integers(0, 100, size)
    prefix = rng.integers(0, len(_HOST_PREFIXES), size)
    base = rng.integers(0, len(_HOST_BASES), size)
    numbered = pc.if_else(pa.array(rng.random(size) < 0.4), pc.cast(pa.array(number), pa.string()), "")
    name = join(pick(_WORDS, first), "-", pick(_WORDS, second), numbered)
    return join(pick(_HOST_PREFIXES, prefix), name, ".", pick(_HOST_BASES, base))


# --------------------------------------------------------------------------- one file


def make_table(rng: np.random.Generator, hosts: pa.Array, first_row: int, rows: int) -> pa.Table:
    n = rows
    # Host popularity is heavy-tailed, as on the web.
    host_index = (rng.zipf(1.3, n) - 1) % len(hosts)
    host = pick(hosts, host_index)
    upper = rng.random(n) < 0.02
    host = pc.if_else(pa.array(upper), pc.utf8_upper(host), host)
    https = rng.random(n) < 0.85
    scheme = pc.if_else(pa.array(https), "https://", "http://")
    with_port = rng.random(n) < 0.01
    port = pc.if_else(pa.array(with_port & https), ":443", pc.if_else(pa.array(with_port), ":80", ""))

    year = pc.cast(pa.array(rng.integers(2009, 2023, n)), pa.string())
    month = pick(tuple(f"{m:02d}" for m in range(1, 13)), rng.integers(0, 12, n))
    ident = hex_strings(rng.integers(0, 256, (n, 6), dtype=np.uint8))
    row_number = pc.cast(pa.array(np.arange(first_row, first_row + n, dtype=np.int64)), pa.string())
    slug = join(pick(_SLUG_WORDS, rng.integers(0, len(_SLUG_WORDS), n)), "-",
                pick(_SLUG_WORDS, rng.integers(0, len(_SLUG_WORDS), n)))
    escaped = rng.random(n) < 0.01
    slug = pc.if_else(pa.array(escaped), pick(_SLUG_ESCAPED, rng.integers(0, len(_SLUG_ESCAPED), n)), slug)
    query_index = np.where(rng.random(n) < 0.35, rng.integers(0, len(_QUERIES), n), len(_QUERIES))
    query = pick(_QUERIES + ("",), query_index)
    fragment = pc.if_else(pa.array(rng.random(n) < 0.005), "#main", "")
    url = join(
        scheme, host, port, "/", pick(_SECTIONS, rng.integers(0, len(_SECTIONS), n)), "/", year, "/", month, "/",
        ident, row_number, "-", slug, pick(_EXTENSIONS, rng.integers(0, len(_EXTENSIONS), n)), query, fragment,
    )

    caption = join(
        pick(_CAPTION_HEADS, rng.integers(0, len(_CAPTION_HEADS), n)), " ",
        pick(_CAPTION_ADJECTIVES, rng.integers(0, len(_CAPTION_ADJECTIVES), n)), " ",
        pick(_CAPTION_COLOURS, rng.integers(0, len(_CAPTION_COLOURS), n)),
        pick(_CAPTION_NOUNS, rng.integers(0, len(_CAPTION_NOUNS), n)), " ",
        pick(_CAPTION_TAILS, rng.integers(0, len(_CAPTION_TAILS), n)),
    )
    non_ascii = rng.random(n) < 0.03
    caption = pc.if_else(
        pa.array(non_ascii), pick(_CAPTION_NON_ASCII, rng.integers(0, len(_CAPTION_NON_ASCII), n)), caption
    )

    sizes = np.array([256, 320, 400, 480, 500, 512, 600, 640, 768, 800, 1024, 1200, 1280, 1600, 1920])
    columns = {
        "URL": url,
        "TEXT": caption,
        "WIDTH": pa.array(sizes[rng.integers(0, len(sizes), n)].astype(np.int64)),
        "HEIGHT": pa.array(sizes[rng.integers(0, len(sizes), n)].astype(np.int64)),
        "similarity": pa.array(rng.uniform(0.28, 0.45, n)),
        "punsafe": pa.array(rng.beta(0.4, 6.0, n)),
        "pwatermark": pa.array(rng.beta(0.5, 2.0, n)),
        "hash": pa.array(rng.integers(np.iinfo(np.int64).min, np.iinfo(np.int64).max, n, dtype=np.int64)),
        "md5": hex_strings(rng.integers(0, 256, (n, 16), dtype=np.uint8)),
    }
    return pa.table(columns, schema=SCHEMA)


def write_file(task: tuple) -> tuple[list[str], list[str]]:
    """Write one parquet file; returns (MD5s of the hit rows' URLs, the hit rows' md5 values)."""
    seed, file_index, first_row, rows, url_hits, image_hits, path = task
    rng = np.random.default_rng([seed, 1, file_index])
    hosts = host_pool(np.random.default_rng([seed, 0]))
    table = make_table(rng, hosts, first_row, rows)
    url_rows = np.sort(rng.choice(rows, url_hits, replace=False)) if url_hits else np.array([], np.int64)
    image_rows = np.sort(rng.choice(rows, image_hits, replace=False)) if image_hits else np.array([], np.int64)
    url_digests = [
        hashlib.md5(u.encode("utf-8")).hexdigest() for u in table.column("URL").take(pa.array(url_rows)).to_pylist()
    ]
    image_digests = table.column("md5").take(pa.array(image_rows)).to_pylist()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="snappy", row_group_size=ROW_GROUP_ROWS)
    os.replace(tmp, path)
    return url_digests, image_digests


# --------------------------------------------------------------------------- banks


def write_bank(path: Path, lines: int, hits: list[str], rng: np.random.Generator) -> None:
    """`lines` hex MD5s, one per line: the `hits` at random places, random digests elsewhere."""
    hit_lines = np.sort(rng.choice(lines, len(hits), replace=False)) if hits else np.array([], np.int64)
    order = rng.permutation(len(hits))
    hit_bytes = np.frombuffer(b"".join(bytes.fromhex(hits[i]) for i in order), np.uint8).reshape(-1, 16)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        for start in range(0, lines, BANK_CHUNK_LINES):
            count = min(BANK_CHUNK_LINES, lines - start)
            raw = rng.integers(0, 256, (count, 16), dtype=np.uint8)
            inside = (hit_lines >= start) & (hit_lines < start + count)
            raw[hit_lines[inside] - start] = hit_bytes[inside]
            text = np.empty((count, 33), np.uint8)
            text[:, :32] = _HEX_PAIRS[raw].reshape(count, 32)
            text[:, 32] = ord("\n")
            handle.write(text.tobytes())
    os.replace(tmp, path)


# --------------------------------------------------------------------------- driver


def params_for(rows: int, files: int, url_bank: int, image_bank: int, seed: int, hits: int) -> dict:
    return {
        "generator_version": GENERATOR_VERSION,
        "rows": rows,
        "files": files,
        "url_bank": url_bank,
        "image_bank": image_bank,
        "hits": hits,
        "seed": seed,
    }


def is_complete(out: Path, params: dict) -> bool:
    try:
        recorded = json.loads((out / "params.json").read_text())
    except (OSError, ValueError):
        return False
    expected_files = [out / "laion" / f"part-{i:05d}.parquet" for i in range(params["files"])]
    banks = [out / "banks" / "url_md5.txt", out / "banks" / "image_md5.txt"]
    return recorded == params and all(p.exists() for p in expected_files + banks)


def generate(
    out: Path,
    *,
    rows: int,
    files: int,
    url_bank: int,
    image_bank: int,
    seed: int = 0,
    hits: int = DEFAULT_HITS,
    jobs: int = 2,
    log=print,
) -> dict:
    """Generate (or reuse) the dataset under `out`; returns the params dict with `expected` counts."""
    hits = min(hits, rows // 10, url_bank, image_bank)
    if rows < files or files < 1:
        raise SystemExit("need at least one row per file")
    params = params_for(rows, files, url_bank, image_bank, seed, hits)
    out = Path(out)
    if is_complete(out, params):
        log(f"reusing {out} (params.json matches)")
        return {**params, "expected": json.loads((out / "expected.json").read_text())}

    started = time.perf_counter()
    (out / "params.json").unlink(missing_ok=True)
    shutil.rmtree(out / "laion", ignore_errors=True)
    (out / "laion").mkdir(parents=True)
    (out / "banks").mkdir(parents=True, exist_ok=True)

    per_file = np.full(files, rows // files)
    per_file[: rows % files] += 1
    first_rows = np.concatenate([[0], np.cumsum(per_file)[:-1]])
    url_hits = spread(hits, per_file)
    image_hits = spread(hits, per_file)
    tasks = [
        (seed, i, int(first_rows[i]), int(per_file[i]), int(url_hits[i]), int(image_hits[i]),
         str(out / "laion" / f"part-{i:05d}.parquet"))
        for i in range(files)
    ]
    url_digests: list[str] = []
    image_digests: list[str] = []
    if jobs > 1 and files > 1:
        with multiprocessing.get_context("fork").Pool(min(jobs, files)) as pool:
            results = pool.map(write_file, tasks, chunksize=1)
    else:
        results = map(write_file, tasks)
    for file_urls, file_images in results:
        url_digests += file_urls
        image_digests += file_images
    log(f"wrote {rows:,} rows in {files} files ({time.perf_counter() - started:.1f} s)")

    bank_rng = np.random.default_rng([seed, 2])
    write_bank(out / "banks" / "url_md5.txt", url_bank, url_digests, bank_rng)
    write_bank(out / "banks" / "image_md5.txt", image_bank, image_digests, bank_rng)
    log(f"wrote banks: {url_bank:,} URL digests, {image_bank:,} image digests "
        f"({time.perf_counter() - started:.1f} s total)")

    # Hit rows are drawn independently per bank, so a row can be in both.
    expected = {
        "url_md5_rows": len(url_digests),
        "image_md5_rows": len(image_digests),
    }
    write_json(out / "expected.json", expected)
    write_json(out / "params.json", params)
    return {**params, "expected": expected}


def spread(total: int, weights: np.ndarray) -> np.ndarray:
    """Split `total` over files in proportion to their sizes (exact sum)."""
    shares = np.floor(total * weights / weights.sum()).astype(np.int64)
    shares[: total - shares.sum()] += 1
    return np.minimum(shares, weights)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("bench/data/laion-10m"))
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--url-bank", type=lambda s: int(s.replace("_", "")), default=2_000_000)
    parser.add_argument("--image-bank", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    parser.add_argument("--hits", type=int, default=DEFAULT_HITS, help="dataset rows each bank knows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    generate(
        args.out,
        rows=args.rows,
        files=args.files,
        url_bank=args.url_bank,
        image_bank=args.image_bank,
        seed=args.seed,
        hits=args.hits,
        jobs=args.jobs,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
