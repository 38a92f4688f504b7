"""Benchmark: PDQ hashing, `fast` and `exact`, against the reference path and plain decoding.

    python bench/pdq_hash.py                  # 2,000 images in 2 shards (generated on first use, ~2 min)
    python bench/pdq_hash.py --images 300     # quick smoke run
    python bench/pdq_hash.py --repeat 3 --record

Same images, same process, one core, side by side (images/s, fastest of
--repeat per image, over the first --time-images images; contenders take turns
image by image, so load from other work on the machine hits all alike; also per
band of short side: < 512, 512..1023, >= 1024 px):
  1. reference: Pillow decode, convert("RGB"), `pdqhash.compute` on full-resolution
     pixels, hex as python-threatexchange writes it (the path HMA uses), and
     python-threatexchange's own `pdq_from_bytes` when it is installed;
  2. safeset exact and fast, each with MD5/SHA-1/SHA-256 of the bytes (what
     `safeset hash` and a scan compute per image), and fast without digests;
  3. plain decoding at fast's reduced scale and mode (Image.open + draft +
     load, nothing else): the practical limit the targets name; the same with
     simplejpeg, and with simplejpeg on only the progressive scans fast reads
     (`safeset.pdq.jpegscans`), which is fast's own decoding cost; plus RGB
     and full-size decoding, for scale.
The target claim is on one core each (the reference is single-threaded).
Then, with --threads N (default 2; 0 skips it), batch throughput on N cores:
the reference on a warm process pool, fast + digests on a thread pool, and
`hash_images(..., workers=N)`: wall clock, so only meaningful on a quiet machine.
Then, over every image: the distance of each fast hash from its exact hash
(histogram, percentiles, share within 10 for PDQ quality >= 80, and the same by
decode scale, short side and baseline/progressive) and a check that exact ==
reference bit for bit (exit 1 if not). Targets: fast >= 8x the reference,
>= 0.7 of plain reduced decoding, >= 99% within 10 (--strict: exit 3 when one
is missed). --record appends the tables and the load average to RESULTS.md.

The image set (deterministic for --seed; `bench/data/pdq-<images>/`, ignored
by git): img2dataset-style webdataset shards (`00000.tar` with
`<key>.jpg/.txt/.json`, 1,000 images a shard) of benign generated JPEGs:
  - sizes: long side log-uniform 500..2000 px, aspect 1:1..2:1, 65% landscape
    (median ~0.7 MP, short side 250..2000 px);
  - 75% synthetic photo-like scenes: a smooth colour field, 1/f ("pink")
    noise texture with natural-image statistics, 3-17 filled shapes, strokes
    and polygons, random-letter text in the default font, Gaussian blur
    scaled to the size, sensor grain, 8% black-and-white;
  - 25% the conformance photographs (bridge, labelme scenes, pen and coaster,
    ...) randomly cropped and Lanczos-resized to the drawn area;
  - JPEG quality 60..98 (mostly 75..90), chroma 4:2:0 (70%), 4:2:2, 4:4:4,
    25% progressive; ~1.3 bits per pixel median, mean 161 KiB, like web photos.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import io
import json
import os
import platform
import sys
import tarfile
import time
from multiprocessing import Pool
from pathlib import Path

# One core per contender: keep BLAS from spreading small matrix products.
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFilter, ImageFont  # noqa: E402

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
FIXTURES = REPO / "tests" / "fixtures" / "pdq"
SPEEDUP_TARGET = 8.0  # fast images/s over reference images/s
DECODE_TARGET = 0.7  # fast images/s over plain reduced-scale decoding images/s
WITHIN = 10  # the PDQ reference's conformance distance
WITHIN_TARGET = 0.99  # share of quality >= 80 images whose fast hash is within WITHIN
GENERATOR_VERSION = 2

# --------------------------------------------------------------------------- the image set

# Fixture photographs reused (rescaled, re-encoded) as real-photo content.
PHOTO_FIXTURES = (
    "bridge-mods/aaa-orig.jpg",
    "misc-images/c.png",
    "misc-images/wee.jpg",
    "reg-test-input/pen-and-coaster.png",
    "reg-test-input/labelme-subset/q0122.jpg",
    "reg-test-input/labelme-subset/q0291.jpg",
    "reg-test-input/labelme-subset/q0746.jpg",
    "reg-test-input/labelme-subset/q1050.jpg",
    "reg-test-input/labelme-subset/q2821.jpg",
)
LETTERS = "abcdefghijklmnopqrstuvwxyz"


LONG_SIDE = (500, 2000)  # the main set's long sides, px
LARGE_LONG_SIDE = (2500, 5000)  # --large: decoded at 1/4, 1/8 and box-reduced further


def _image_size(rng: np.random.Generator, long_side: tuple[int, int] = LONG_SIDE) -> tuple[int, int]:
    """Web-photo sizes: long side log-uniform in `long_side` (500..2000 px), aspect 1:1..2:1, 65% landscape."""
    long = int(np.exp(rng.uniform(np.log(long_side[0]), np.log(long_side[1]))))
    aspect = float(np.exp(rng.uniform(0, np.log(2.0))))
    short = max(1, int(long / aspect))
    return (long, short) if rng.random() < 0.65 else (short, long)


def _smooth_field(rng: np.random.Generator, width: int, height: int, channels: int) -> np.ndarray:
    """Large-scale colour variation: a few random values per axis, bicubic-upscaled."""
    grid = rng.integers(0, 256, (int(rng.integers(2, 7)), int(rng.integers(2, 7)), channels), dtype=np.uint8)
    small = Image.fromarray(grid[..., 0] if channels == 1 else grid)
    return np.asarray(small.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)


def _pink_noise(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """1/f^beta texture (natural-image statistics), made at <= 512 px and upscaled."""
    scale = max(1, max(width, height) // 512)
    w, h = max(8, width // scale), max(8, height // scale)
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.sqrt(fx * fx + fy * fy)
    radius[0, 0] = 1.0
    spectrum = (rng.standard_normal(radius.shape) + 1j * rng.standard_normal(radius.shape)) / radius ** rng.uniform(
        0.9, 1.6
    )
    spectrum[0, 0] = 0
    texture = np.fft.irfft2(spectrum, s=(h, w))
    texture = (texture - texture.min()) / max(float(np.ptp(texture)), 1e-9)
    image = Image.fromarray((texture * 255).astype(np.uint8)).resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32) / 255.0


def _draw_scene(rng: np.random.Generator, image: Image.Image) -> None:
    """Shapes, strokes and text-like lines drawn over the background."""
    width, height = image.size
    draw = ImageDraw.Draw(image)
    short = min(width, height)
    for _ in range(int(rng.integers(3, 18))):
        x0, y0 = int(rng.integers(-short // 4, width)), int(rng.integers(-short // 4, height))
        size = int(rng.integers(max(4, short // 25), max(5, short // 2)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        kind = rng.integers(0, 4)
        if kind == 0:
            draw.ellipse([x0, y0, x0 + size, y0 + int(size * rng.uniform(0.4, 1.6))], fill=colour)
        elif kind == 1:
            draw.rectangle([x0, y0, x0 + size, y0 + int(size * rng.uniform(0.3, 1.6))], fill=colour)
        elif kind == 2:
            count = int(rng.integers(2, 6))
            points = [(int(rng.integers(0, width)), int(rng.integers(0, height))) for _ in range(count)]
            draw.line(points, fill=colour, width=int(rng.integers(1, max(2, short // 60))))
        else:
            points = [(x0 + int(rng.integers(0, size)), y0 + int(rng.integers(0, size))) for _ in range(5)]
            draw.polygon(points, fill=colour)
    if rng.random() < 0.6:  # text-like strokes: random letters, benign
        font_size = int(rng.integers(max(10, short // 40), max(12, short // 8)))
        try:
            font = ImageFont.load_default(font_size)
        except TypeError:  # Pillow without scalable default font
            font = ImageFont.load_default()
        for _ in range(int(rng.integers(1, 5))):
            words = " ".join(
                "".join(rng.choice(list(LETTERS), int(rng.integers(2, 9)))) for _ in range(int(rng.integers(1, 5)))
            )
            fill = tuple(int(v) for v in rng.integers(0, 256, 3))
            where = (int(rng.integers(0, width * 3 // 4)), int(rng.integers(0, height * 7 // 8)))
            draw.text(where, words, fill=fill, font=font)


def synthetic_photo(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A photo-like RGB image: smooth colour field, 1/f texture, shapes, text, blur, sensor noise."""
    base = _smooth_field(rng, width, height, 3)
    texture = _pink_noise(rng, width, height)[..., None] * rng.uniform(40, 170, 3).astype(np.float32)
    pixels = base * rng.uniform(0.4, 0.8) + texture
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    _draw_scene(rng, image)
    blur = rng.uniform(0, 2.5) * min(width, height) / 600
    if blur > 0.3:
        image = image.filter(ImageFilter.GaussianBlur(blur))
    grain = rng.uniform(0, 7)
    if grain > 0.5:
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, grain, (height, width, 1)).astype(np.float32)
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
    if rng.random() < 0.08:
        image = image.convert("L").convert("RGB")  # black-and-white photos
    return image


def fixture_photo(rng: np.random.Generator, width: int, height: int) -> tuple[Image.Image, str]:
    """A conformance photograph, randomly cropped and resized to a real-world size."""
    name = PHOTO_FIXTURES[int(rng.integers(0, len(PHOTO_FIXTURES)))]
    with Image.open(FIXTURES / name) as source:
        image = source.convert("RGB")
    crop = rng.uniform(0.75, 1.0)
    cw, ch = int(image.width * crop), int(image.height * crop)
    x0, y0 = int(rng.integers(0, image.width - cw + 1)), int(rng.integers(0, image.height - ch + 1))
    image = image.crop((x0, y0, x0 + cw, y0 + ch))
    # Keep the photo's aspect ratio; use the drawn size's area.
    area = width * height
    target_w = max(32, int(np.sqrt(area * cw / ch)))
    target_h = max(32, int(target_w * ch / cw))
    return image.resize((target_w, target_h), Image.Resampling.LANCZOS), name


def encode_jpeg(rng: np.random.Generator, image: Image.Image) -> tuple[bytes, dict]:
    """JPEG bytes with a varied quality, chroma subsampling and progressive flag."""
    quality = int(rng.choice([60, 70, 75, 80, 85, 90, 95, 98], p=[0.05, 0.1, 0.15, 0.15, 0.2, 0.2, 0.1, 0.05]))
    subsampling = int(rng.choice([0, 1, 2], p=[0.2, 0.1, 0.7]))  # 4:4:4, 4:2:2, 4:2:0
    progressive = bool(rng.random() < 0.25)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, subsampling=subsampling, progressive=progressive, optimize=progressive)
    chroma = ["4:4:4", "4:2:2", "4:2:0"][subsampling]
    meta = {"jpeg_quality": quality, "subsampling": chroma, "progressive": progressive}
    return buffer.getvalue(), meta


def make_image(seed: int, index: int, long_side: tuple[int, int] = LONG_SIDE) -> tuple[bytes, dict]:
    rng = np.random.default_rng([seed, index])
    width, height = _image_size(rng, long_side)
    if rng.random() < 0.25:
        image, source = fixture_photo(rng, width, height)
    else:
        image, source = synthetic_photo(rng, width, height), "synthetic"
    data, meta = encode_jpeg(rng, image)
    meta.update({"source": source, "width": image.width, "height": image.height})
    return data, meta


def _write_shard(args: tuple[Path, int, int, int, int, tuple[int, int]]) -> str:
    directory, shard, start, count, seed, long_side = args
    path = directory / f"{shard:05d}.tar"
    partial = path.with_suffix(".tar.partial")
    with tarfile.open(partial, "w") as tar:
        for offset in range(count):
            index = start + offset
            data, meta = make_image(seed, index, long_side)
            key = f"{shard:05d}{offset:04d}"
            meta["key"] = key
            caption = f"generated benchmark image {index}".encode()
            for suffix, payload in ((".jpg", data), (".txt", caption), (".json", json.dumps(meta).encode())):
                info = tarfile.TarInfo(key + suffix)
                info.size = len(payload)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(payload))
    os.replace(partial, path)
    return path.name


def generate(
    directory: Path, images: int, shards: int, seed: int, workers: int, long_side: tuple[int, int] = LONG_SIDE
) -> None:
    """img2dataset-style webdataset shards of generated JPEGs (reused when params match)."""
    params = {"images": images, "shards": shards, "seed": seed, "generator": GENERATOR_VERSION}
    if long_side != LONG_SIDE:
        params["long_side"] = list(long_side)
    params_path = directory / "params.json"
    if params_path.exists() and json.loads(params_path.read_text()) == params:
        return
    directory.mkdir(parents=True, exist_ok=True)
    params_path.unlink(missing_ok=True)
    per_shard = -(-images // shards)
    jobs = []
    for shard in range(shards):
        start = shard * per_shard
        count = min(per_shard, images - start)
        if count > 0:
            jobs.append((directory, shard, start, count, seed, long_side))
    started = time.perf_counter()
    with Pool(max(1, workers)) as pool:
        for name in pool.imap_unordered(_write_shard, jobs):
            print(f"  wrote {name}", file=sys.stderr)
    print(f"generated {images} images in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    params_path.write_text(json.dumps(params))


def load_images(directory: Path) -> tuple[list[bytes], list[dict]]:
    """Every .jpg of every shard, in key order, with its .json metadata."""
    blobs: list[bytes] = []
    metas: list[dict] = []
    for shard in sorted(directory.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members = {}
            for member in tar:
                if member.isfile():
                    members[member.name] = tar.extractfile(member).read()
        for name in sorted(n for n in members if n.endswith(".jpg")):
            blobs.append(members[name])
            metas.append(json.loads(members[name[:-4] + ".json"]))
    return blobs, metas


# --------------------------------------------------------------------------- contenders


def _digests(data: bytes) -> tuple[str, str, str]:
    return (
        hashlib.md5(data, usedforsecurity=False).hexdigest(),
        hashlib.sha1(data, usedforsecurity=False).hexdigest(),
        hashlib.sha256(data).hexdigest(),
    )


def reference_hash(data: bytes) -> tuple[str, int]:
    """The reference path: Pillow, convert("RGB"), pdqhash on full-resolution pixels."""
    import pdqhash

    image = Image.open(io.BytesIO(data)).convert("RGB")
    bits, quality = pdqhash.compute(np.asarray(image))
    return np.packbits(bits.astype(np.uint8)).tobytes().hex(), int(quality)


def safeset_fast_with_digests(data: bytes):
    from safeset.pdq import hash_image

    return _digests(data), hash_image(data, "fast")


REFERENCE = "reference (Pillow + pdqhash, full res)"
FAST = "safeset fast + digests"
PLAIN = "plain decode, fast's scale (luma)"
SAME_SCANS = "plain decode, fast's scale and scans"


def contenders(min_side: int) -> dict:
    from safeset.pdq import hash_image
    from safeset.pdq.decode import jpeg_scale
    from safeset.pdq.jpegscans import luma_scans

    def safeset_exact(data: bytes):
        return _digests(data), hash_image(data, "exact")

    def safeset_fast_no_digests(data: bytes):
        return hash_image(data, "fast")

    def plain_reduced(data: bytes, mode: str = "L"):
        image = Image.open(io.BytesIO(data))
        image.draft(mode, (min_side, min_side))
        image.load()
        return image.size

    def plain_reduced_rgb(data: bytes):
        return plain_reduced(data, "RGB")

    def plain_full(data: bytes):
        image = Image.open(io.BytesIO(data))
        image.load()
        return image.size

    table = {
        REFERENCE: reference_hash,
        "safeset exact + digests": safeset_exact,
        FAST: safeset_fast_with_digests,
        "safeset fast, no digests": safeset_fast_no_digests,
        PLAIN: plain_reduced,
    }
    try:
        import simplejpeg

        def simplejpeg_reduced(data: bytes, prune: bool = False):
            height, width = simplejpeg.decode_jpeg_header(data)[:2]
            scale = jpeg_scale(width, height, min_side)
            source = (luma_scans(data, scale) or data) if prune else data
            rows, cols = -(-height // scale), -(-width // scale)
            return simplejpeg.decode_jpeg(source, "GRAY", min_height=rows, min_width=cols, min_factor=scale).shape

        table["plain decode, fast's scale (luma, simplejpeg)"] = simplejpeg_reduced
        table[SAME_SCANS] = lambda data: simplejpeg_reduced(data, prune=True)
    except ImportError:
        pass
    table["plain decode, fast's scale (RGB)"] = plain_reduced_rgb
    table["plain decode, full size (RGB)"] = plain_full
    try:
        from threatexchange.signal_type.pdq.pdq_hasher import pdq_from_bytes

        table["python-threatexchange pdq_from_bytes"] = pdq_from_bytes
    except ImportError:
        pass
    return table


def time_interleaved(table: dict, blobs: list[bytes], repeat: int) -> dict[str, np.ndarray]:
    """Seconds per image for every contender, the fastest of `repeat` passes.

    Contenders take turns image by image (starting with a different one each
    image), so a change in the machine's load hits all of them alike; the
    ratios are what to read on a shared machine.
    """
    functions = list(table.items())
    for _, function in functions:
        function(blobs[0])  # warm-up: imports, first-call caches
    best = {label: np.full(len(blobs), np.inf) for label in table}
    clock = time.perf_counter
    for _ in range(repeat):
        for index, data in enumerate(blobs):
            shift = index % len(functions)
            for label, function in functions[shift:] + functions[:shift]:
                started = clock()
                function(data)
                elapsed = clock() - started
                if elapsed < best[label][index]:
                    best[label][index] = elapsed
    return best


def time_batch(blobs: list[bytes], threads: int, repeat: int) -> dict[str, float]:
    """Images/s on `threads` cores: fast on a thread pool vs the reference on a process pool (both warm)."""
    from concurrent.futures import ThreadPoolExecutor

    from safeset.pdq import hash_images

    rates: dict[str, float] = {}

    def best_rate(run) -> float:
        seconds = []
        for _ in range(repeat):
            started = time.perf_counter()
            run()
            seconds.append(time.perf_counter() - started)
        return len(blobs) / min(seconds)

    with Pool(threads) as pool:
        pool.map(reference_hash, blobs[:threads])
        rates[f"reference, {threads} processes"] = best_rate(lambda: pool.map(reference_hash, blobs, chunksize=4))
    with ThreadPoolExecutor(threads) as executor:
        list(executor.map(safeset_fast_with_digests, blobs[:threads]))
        rates[f"safeset fast + digests, {threads} threads"] = best_rate(
            lambda: list(executor.map(safeset_fast_with_digests, blobs))
        )
    rates[f"safeset hash_images fast, workers={threads}"] = best_rate(lambda: hash_images(blobs, "fast", workers=threads))
    rates["safeset hash_images fast, workers=1"] = best_rate(lambda: hash_images(blobs, "fast", workers=1))
    return rates


SIZE_BANDS = ((0, 512, "short side < 512"), (512, 1024, "512..1023"), (1024, 10**9, ">= 1024"))


# --------------------------------------------------------------------------- distances


def _distance_summary(distance: np.ndarray, good: np.ndarray) -> dict:
    return {
        "images": int(len(distance)),
        "quality_ge_80": int(good.sum()),
        "within_q80": float((distance[good] <= WITHIN).mean()) if good.any() else float("nan"),
        "mean": float(distance.mean()) if len(distance) else float("nan"),
        "p99": float(np.percentile(distance, 99)) if len(distance) else float("nan"),
        "max": int(distance.max()) if len(distance) else 0,
    }


def distances(blobs: list[bytes], metas: list[dict], min_side: int) -> dict:
    from safeset.pdq import hamming, hash_image
    from safeset.pdq.decode import jpeg_scale

    exact, fast, reference = [], [], []
    for data in blobs:
        exact.append(hash_image(data, "exact"))
        fast.append(hash_image(data, "fast"))
        reference.append(reference_hash(data))
    distance = np.array([hamming(f.hex, e.hex) for f, e in zip(fast, exact)])
    quality = np.array([e.quality for e in exact])
    quality_gap = np.array([abs(f.quality - e.quality) for f, e in zip(fast, exact)])
    good = quality >= 80
    histogram = np.bincount(distance, minlength=WITHIN + 2)
    scale = np.array([jpeg_scale(m["width"], m["height"], min_side) for m in metas])
    short = np.array([min(m["width"], m["height"]) for m in metas])
    progressive = np.array([bool(m["progressive"]) for m in metas])
    groups = {f"decoded at 1/{s}": scale == s for s in (1, 2, 4, 8) if (scale == s).any()}
    groups.update({label: (short >= low) & (short < high) for low, high, label in SIZE_BANDS})
    groups.update({"baseline JPEG": ~progressive, "progressive JPEG": progressive})
    return {
        "images": len(blobs),
        "exact_equals_reference": sum(e.hex == r[0] and e.quality == r[1] for e, r in zip(exact, reference)),
        "quality_ge_80": int(good.sum()),
        "within_all": float((distance <= WITHIN).mean()),
        "within_q80": float((distance[good] <= WITHIN).mean()) if good.any() else float("nan"),
        "mean": float(distance.mean()),
        "mean_q80": float(distance[good].mean()) if good.any() else float("nan"),
        "percentiles": {p: float(np.percentile(distance, p)) for p in (50, 90, 99, 99.9)},
        "max": int(distance.max()),
        "max_q80": int(distance[good].max()) if good.any() else None,
        "histogram": {str(d): int(histogram[d]) for d in range(len(histogram)) if histogram[d]},
        "quality_gap_max": int(quality_gap.max()),
        "quality_gap_mean": float(quality_gap.mean()),
        "by_group": {label: _distance_summary(distance[mask], good[mask]) for label, mask in groups.items()},
    }


# --------------------------------------------------------------------------- main


def describe_set(metas: list[dict], blobs: list[bytes]) -> dict:
    pixels = np.array([m["width"] * m["height"] for m in metas])
    short = np.array([min(m["width"], m["height"]) for m in metas])
    return {
        "images": len(metas),
        "fixture_photos": sum(m["source"] != "synthetic" for m in metas),
        "progressive": sum(bool(m["progressive"]) for m in metas),
        "median_megapixels": float(np.median(pixels) / 1e6),
        "short_side_px": [int(short.min()), int(np.median(short)), int(short.max())],
        "mean_kb": float(np.mean([len(b) for b in blobs]) / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--shards", type=int, default=0, help="default: one per 1,000 images")
    parser.add_argument("--seed", type=int, default=20240603)
    parser.add_argument("--data", type=Path, default=None, help="default bench/data/pdq-<images>")
    parser.add_argument("--workers", type=int, default=2, help="processes generating the images")
    parser.add_argument("--threads", type=int, default=2, help="cores for the batch comparison (0: skip it)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--time-images", type=int, default=500, help="images timed per contender (a prefix)")
    parser.add_argument("--skip-distances", action="store_true", help="timings only")
    parser.add_argument("--large", type=int, default=0, metavar="N",
                        help=f"also measure distances on N images of long side {LARGE_LONG_SIDE[0]}..{LARGE_LONG_SIDE[1]} px")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    args = parser.parse_args(argv)

    from safeset.pdq import FAST_MIN_SIDE

    shards = args.shards or max(1, -(-args.images // 1000))
    directory = args.data or BENCH_DIR / "data" / f"pdq-{args.images}"
    generate(directory, args.images, shards, args.seed, args.workers)
    blobs, metas = load_images(directory)
    image_set = describe_set(metas, blobs)
    load_before = os.getloadavg()
    print(
        f"{image_set['images']} JPEGs ({image_set['fixture_photos']} from fixture photos, "
        f"{image_set['progressive']} progressive), median {image_set['median_megapixels']:.2f} MP, "
        f"short side {image_set['short_side_px']} px, mean {image_set['mean_kb']:.0f} KiB; "
        f"load average {load_before[0]:.2f} on {os.cpu_count()} cpus"
    )

    timed = blobs[: args.time_images]
    short_sides = np.array([min(m["width"], m["height"]) for m in metas[: len(timed)]])
    bands = [(label, (short_sides >= low) & (short_sides < high)) for low, high, label in SIZE_BANDS]
    print(f"images/s, one core, contenders interleaved image by image, best of {args.repeat}, {len(timed)} images "
          f"(by short side: {', '.join(f'{label} {int(mask.sum())}' for label, mask in bands)})")
    print(f"  {'':48s} {'all':>8s}" + "".join(f" {label:>16s}" for label, _ in bands))
    seconds = time_interleaved(contenders(FAST_MIN_SIDE), timed, args.repeat)
    for label, times in seconds.items():
        per_band = [mask.sum() / times[mask].sum() if mask.any() else float("nan") for _, mask in bands]
        print(f"  {label:48s} {len(timed) / times.sum():8.1f}" + "".join(f" {r:16.1f}" for r in per_band))
    rates = {label: len(timed) / times.sum() for label, times in seconds.items()}
    band_ratios = {
        label: float(seconds[REFERENCE][mask].sum() / seconds[FAST][mask].sum()) if mask.any() else None
        for label, mask in bands
    }
    reference = rates[REFERENCE]
    fast = rates[FAST]
    plain = rates[PLAIN]
    speedup, decode_share = fast / reference, fast / plain
    print(f"fast / reference       = {speedup:5.2f}x  (target >= {SPEEDUP_TARGET:g}x; one core each); by short side: "
          + ", ".join(f"{label} {ratio:.1f}x" for label, ratio in band_ratios.items() if ratio))
    print(f"fast / plain decode    = {decode_share:5.2f}   (target >= {DECODE_TARGET:g}); "
          f"without digests {rates['safeset fast, no digests'] / plain:.2f}")
    if SAME_SCANS in rates:
        print(f"fast / plain decode of the same scans = {fast / rates[SAME_SCANS]:.2f} "
              f"(without digests {rates['safeset fast, no digests'] / rates[SAME_SCANS]:.2f}): "
              "fast skips progressive scans a luma decode at its scale needs not read")
    print(f"exact / reference      = {rates['safeset exact + digests'] / reference:5.2f}x")

    batch: dict[str, float] = {}
    if args.threads > 0:
        batch = time_batch(timed, args.threads, args.repeat)
        print(f"batch images/s on {args.threads} cores (wall clock, whole prefix, best of {args.repeat}):")
        for label, rate in batch.items():
            print(f"  {label:48s} {rate:8.1f}")
        batch_reference = batch[f"reference, {args.threads} processes"]
        batch_fast = batch[f"safeset fast + digests, {args.threads} threads"]
        print(f"batch fast / batch reference = {batch_fast / batch_reference:5.2f}x; "
              f"fast threads scale {batch_fast / fast:.2f}x over one core")
    load_after = os.getloadavg()

    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cpus, Python {platform.python_version()}",
        "load_average": [round(load_before[0], 2), round(load_after[0], 2)],
        "fast_min_side": FAST_MIN_SIDE,
        "repeat": args.repeat,
        "set": image_set,
        "timed_images": len(timed),
        "images_per_second": rates,
        "fast_over_reference": speedup,
        "fast_over_reference_by_short_side": band_ratios,
        "fast_over_plain_decode": decode_share,
        "batch_images_per_second": batch,
    }
    ok = speedup >= SPEEDUP_TARGET and decode_share >= DECODE_TARGET
    checked = equal = 0  # images hashed by both exact and the reference, and how many agree
    if not args.skip_distances:
        dist = result["distance"] = distances(blobs, metas, FAST_MIN_SIDE)
        _print_distances(dist)
        ok = ok and dist["within_q80"] >= WITHIN_TARGET
        checked, equal = checked + len(blobs), equal + dist["exact_equals_reference"]
    if args.large:
        large_directory = BENCH_DIR / "data" / f"pdq-large-{args.large}"
        generate(large_directory, args.large, max(1, args.workers), args.seed + 1, args.workers, LARGE_LONG_SIDE)
        large_blobs, large_metas = load_images(large_directory)
        large = result["distance_large"] = distances(large_blobs, large_metas, FAST_MIN_SIDE)
        print(f"large set: {describe_set(large_metas, large_blobs)}")
        _print_distances(large)
        ok = ok and large["within_q80"] >= WITHIN_TARGET
        checked, equal = checked + len(large_blobs), equal + large["exact_equals_reference"]
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.record:
        _record(result)
    if equal != checked:
        return 1
    return 0 if ok or not args.strict else 3


def _print_distances(dist: dict) -> None:
    print(
        f"exact == reference on {dist['exact_equals_reference']} of {dist['images']} images; "
        f"fast within {WITHIN} of exact: {dist['within_q80']:.2%} of {dist['quality_ge_80']} quality>=80 images "
        f"(target >= {WITHIN_TARGET:.0%}), {dist['within_all']:.2%} of all"
    )
    print(
        f"fast-vs-exact distance: mean {dist['mean']:.2f}, p50 {dist['percentiles'][50]:g}, "
        f"p90 {dist['percentiles'][90]:g}, p99 {dist['percentiles'][99]:g}, max {dist['max']} "
        f"(quality>=80: mean {dist['mean_q80']:.2f}, max {dist['max_q80']}); "
        f"quality differs by <= {dist['quality_gap_max']} (mean {dist['quality_gap_mean']:.2f})"
    )
    print("histogram (distance: images):", ", ".join(f"{d}: {n}" for d, n in dist["histogram"].items()))
    for label, group in dist["by_group"].items():
        if group["images"]:
            print(f"  {label:20s} {group['images']:5d} images: within {WITHIN} {group['within_q80']:.2%} "
                  f"(quality>=80), mean {group['mean']:.2f}, p99 {group['p99']:g}, max {group['max']}")


def _record(result: dict) -> None:
    lines = [
        f"\n## PDQ hashing — {result['date']}\n",
        (
            f"{result['machine']}, load average {result['load_average'][0]} before / "
            f"{result['load_average'][1]} after (shared machine); {result['set']['images']} JPEGs "
            f"({result['set']['progressive']} progressive), {result['timed_images']} timed, contenders "
            f"interleaved, best of {result['repeat']}; fast keeps short side >= {result['fast_min_side']} px\n"
        ),
        "| contender (one core) | images/s |",
        "|---|---:|",
    ]
    lines += [f"| {label} | {rate:.1f} |" for label, rate in result["images_per_second"].items()]
    if result["batch_images_per_second"]:
        lines += ["", "| batch (all cores) | images/s |", "|---|---:|"]
        lines += [f"| {label} | {rate:.1f} |" for label, rate in result["batch_images_per_second"].items()]
    bands = ", ".join(f"{k} {v:.1f}x" for k, v in result["fast_over_reference_by_short_side"].items() if v)
    summary = (
        f"fast/reference {result['fast_over_reference']:.2f}x on one core ({bands}), "
        f"fast/plain decode {result['fast_over_plain_decode']:.2f}"
    )
    dist = result.get("distance")
    if dist:
        summary += (
            f"; fast within {WITHIN} of exact: {dist['within_q80']:.2%} (quality >= 80), "
            f"{dist['within_all']:.2%} (all); distance mean {dist['mean']:.2f}, p99 {dist['percentiles'][99]:g}, "
            f"max {dist['max']}; exact == reference on {dist['exact_equals_reference']}/{dist['images']}"
        )
    large = result.get("distance_large")
    if large:
        summary += (
            f"; large set ({large['images']} JPEGs, long side {LARGE_LONG_SIDE[0]}..{LARGE_LONG_SIDE[1]} px): "
            f"within {WITHIN} {large['within_q80']:.2%} (quality >= 80), mean {large['mean']:.2f}, max {large['max']}"
        )
    lines += ["", summary + ".\n"]
    with open(BENCH_DIR / "RESULTS.md", "a") as handle:
        handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
