"""Synthetic, benign LAION-style data for `safeset demo` and end-to-end tests.

Real abuse hashes and URLs can never be shipped, so "known bad" is simulated:
we generate an ordinary-looking dataset (LAION parquet metadata and
img2dataset webdataset shards of programmatically drawn images) and bank
files that "know" a few of its rows, in the formats users actually receive
(plain URL lists, python-threatexchange text and CSV, domain and term lists).
`DemoData.expected_matches` records exactly which rows each bank knows, so a
test can assert that a scan finds those rows and nothing else.

Everything is a pure function of the seed: two runs give byte-identical files.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageDraw

from safeset.errors import ConfigError

__all__ = ["DemoData", "generate_demo", "BANK_TYPES", "LAION_SCHEMA", "WDS_PARQUET_SCHEMA"]

# Bank file name -> signal type to import it as (`safeset bank import ... --type`).
BANK_TYPES = {
    "urls.txt": "url",
    "url_md5.txt": "url_md5",
    "image_md5.csv": "md5",
    "domains.txt": "domain",
    "terms.txt": "term",
    "pdq.txt": "pdq",
}

LAION_SCHEMA = pa.schema(
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

# img2dataset's per-shard parquet: the input columns it was asked to keep
# (url, caption, punsafe, similarity), then its own download metadata.
WDS_PARQUET_SCHEMA = pa.schema(
    [
        ("url", pa.string()),
        ("caption", pa.string()),
        ("punsafe", pa.float64()),
        ("similarity", pa.float64()),
        ("key", pa.string()),
        ("status", pa.string()),
        ("error_message", pa.string()),
        ("width", pa.int64()),
        ("height", pa.int64()),
        ("original_width", pa.int64()),
        ("original_height", pa.int64()),
        ("exif", pa.string()),
        ("sha256", pa.string()),
    ]
)

# Fixed tar header fields, so archives are reproducible byte for byte.
TAR_MTIME = 1_700_000_000
STATS_START_TIME = 1_700_000_000.0

LISTED_DOMAIN = "listed-host.example"
TERMS = ("placeholderterm", "otherplaceholder")

_HOSTS = (
    "example.com",
    "www.example.com",
    "images.example.org",
    "cdn.example.net",
    "photos.example",
    "static.gallery.example",
    "shop.example",
    "media.blog.example",
)
_IDN_HOST = "bücher.example"
_SECTIONS = ("images", "uploads", "media", "photos", "wp-content/uploads/2021/07", "assets/img", "p")
_COLORS = ("red", "blue", "green", "yellow", "brown", "purple", "white", "black", "grey", "teal")
_OBJECTS = (
    "bicycle", "teapot", "armchair", "lighthouse", "sailboat", "umbrella", "bookshelf",
    "kite", "cactus", "guitar", "tractor", "backpack", "lantern", "bridge", "mailbox",
)
_PLACES = (
    "on a sunny street", "in a quiet park", "by the sea", "in a modern kitchen",
    "on a wooden table", "under a cloudy sky", "in a mountain village", "at a market stall",
)
_STYLES = ("watercolor", "flat vector art", "studio photo", "macro shot", "isometric illustration")
_TEMPLATES = (
    "a photo of a {color} {obj} {place}",
    "{color} {obj} {place}",
    "close-up of a {color} {obj}, {style}",
    "stock image: {color} {obj} {place}",
    "{style} of {a_obj} {place}",
)
_NON_ASCII_CAPTIONS = (
    "Café au lait on a wooden table",
    "Straßenbahn in the snow at dusk",
    "東京の夜景 night view of a city skyline",
    "Piñata at a birthday party 🎉",
    "Παραλία beach at sunset",
    "Crème brûlée with fresh berries",
)
_ESCAPED_SLUGS = ("red%20bicycle", "caf%C3%A9-table", "sunset%2Dbeach", "%7Euser-photo")
_FRAGMENTS = ("#main", "#gallery-2", "#top")
_QUERIES = ("?w=640&h=480", "?size=large&ref=feed", "?v=2", "?auto=format&fit=crop&q=80")
_DOWNLOAD_ERRORS = (
    "HTTP Error 404: Not Found",
    "HTTP Error 403: Forbidden",
    "<urlopen error timed out>",
)


@dataclass
class DemoData:
    """Where the demo files are, and which rows each bank file knows.

    expected_matches maps a bank file name (a key of BANK_TYPES) to the rows
    it matches: (path relative to `root`, position) for LAION parquet rows,
    (path relative to `root`, key) for webdataset samples. Sorted.
    """

    root: Path
    laion_dir: Path
    images_dir: Path
    banks_dir: Path
    laion_shards: list[Path]
    tar_shards: list[Path]
    banks: dict[str, Path]
    bank_types: dict[str, str] = field(default_factory=lambda: dict(BANK_TYPES))
    expected_matches: dict[str, list[tuple[str, int | str]]] = field(default_factory=dict)


@dataclass
class _Row:
    """One generated sample before it is written (LAION row or webdataset sample)."""

    relpath: str
    ident: int | str  # parquet position or webdataset key
    url: str
    caption: str
    punsafe: float
    similarity: float


def generate_demo(
    out: Path,
    *,
    seed: int = 0,
    parquet_shards: int = 2,
    rows_per_parquet_shard: int = 500,
    tar_shards: int = 2,
    samples_per_tar: int = 40,
) -> DemoData:
    """Write the demo dataset and banks under `out` and describe them."""
    if parquet_shards < 1 or rows_per_parquet_shard < 20:
        raise ConfigError("the demo needs at least 1 parquet shard of at least 20 rows")
    if tar_shards < 1 or samples_per_tar < 12:
        raise ConfigError("the demo needs at least 1 tar shard of at least 12 samples")
    out = Path(out)
    rng = random.Random(seed)
    planner = _BankPlan()

    laion_rows, laion_md5 = _laion_rows(rng, parquet_shards, rows_per_parquet_shard, planner)
    laion_paths = _write_laion(out, laion_rows, laion_md5, rng, parquet_shards, rows_per_parquet_shard)
    tar_paths = _write_webdataset(out, rng, np.random.default_rng(seed), tar_shards, samples_per_tar, planner)
    banks = planner.write_banks(out / "banks", rng)

    expected = planner.expected_matches(laion_rows + planner.wds_rows)
    _write_bytes(
        out / "expected_matches.json",
        (json.dumps({k: [list(m) for m in v] for k, v in expected.items()}, indent=2) + "\n").encode(),
    )
    return DemoData(
        root=out,
        laion_dir=out / "laion",
        images_dir=out / "images",
        banks_dir=out / "banks",
        laion_shards=laion_paths,
        tar_shards=tar_paths,
        banks=banks,
        expected_matches=expected,
    )


# --------------------------------------------------------------------------- captions and URLs


def _caption(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return rng.choice(_NON_ASCII_CAPTIONS)
    template = rng.choice(_TEMPLATES)
    obj = rng.choice(_OBJECTS)
    return template.format(
        color=rng.choice(_COLORS),
        obj=obj,
        a_obj=("an " if obj[0] in "aeiou" else "a ") + obj,
        place=rng.choice(_PLACES),
        style=rng.choice(_STYLES),
    )


def _url(rng: random.Random, uid: str, *, host: str | None = None, messy: bool = True) -> str:
    """A plausible image URL, unique through `uid`, with LAION-like messiness.

    messy=False gives the plain lowercase form (no port, fragment or escapes),
    used for rows whose bank entry is written in a different spelling.
    """
    scheme = "http" if rng.random() < 0.2 else "https"
    if host is None:
        host = _IDN_HOST if messy and rng.random() < 0.01 else rng.choice(_HOSTS)
    slug = f"{rng.choice(_COLORS)}-{rng.choice(_OBJECTS)}"
    if messy and rng.random() < 0.05:
        slug = rng.choice(_ESCAPED_SLUGS)
    path = f"/{rng.choice(_SECTIONS)}/{uid}-{slug}.jpg"
    query = rng.choice(_QUERIES) if rng.random() < 0.25 else ""
    port = ""
    fragment = ""
    if messy:
        if rng.random() < 0.08:
            host = host.upper() if rng.random() < 0.5 else host.title()
        if rng.random() < 0.05:
            port = ":443" if scheme == "https" else ":80"
        if rng.random() < 0.05:
            fragment = rng.choice(_FRAGMENTS)
    return f"{scheme}://{host}{port}{path}{query}{fragment}"


def _other_spelling(url: str) -> str:
    """The same URL, spelled differently but canonically equal (upper-case host, default port)."""
    scheme, rest = url.split("://", 1)
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    host, tail = rest[:cut], rest[cut:]
    if ":" in host:  # has a default port: drop it and lower-case the host
        return f"{scheme}://{host.split(':', 1)[0].lower()}{tail}"
    if host != host.lower():
        return f"{scheme}://{host.lower()}{tail}"
    port = ":443" if scheme == "https" else ":80"
    return f"{scheme.upper()}://{host.upper()}{port}{tail}"


def _punsafe(rng: random.Random) -> float:
    return round(rng.random() ** 4 * 0.6, 6)


# --------------------------------------------------------------------------- bank plan


class _BankPlan:
    """Chooses which rows the banks know and collects the bank entries."""

    def __init__(self):
        self.url_entries: list[str] = []
        self.url_rows: list[tuple[str, int | str]] = []
        self.url_md5_entries: list[str] = []
        self.url_md5_rows: list[tuple[str, int | str]] = []
        self.image_md5_entries: list[str] = []
        self.image_md5_rows: list[tuple[str, int | str]] = []
        self.pdq_entries: list[str] = []
        self.pdq_rows: list[tuple[str, int | str]] = []
        self.wds_rows: list[_Row] = []

    def know_url(self, row: _Row, spelling: str) -> None:
        self.url_entries.append(spelling)
        self.url_rows.append((row.relpath, row.ident))

    def know_url_md5(self, row: _Row) -> None:
        self.url_md5_entries.append(hashlib.md5(row.url.encode("utf-8")).hexdigest())
        self.url_md5_rows.append((row.relpath, row.ident))

    def know_image_md5(self, relpath: str, ident: int | str, md5_hex: str) -> None:
        self.image_md5_entries.append(md5_hex)
        self.image_md5_rows.append((relpath, ident))

    def know_pdq(self, relpath: str, ident: int | str, pdq_hex: str) -> None:
        self.pdq_entries.append(pdq_hex)
        self.pdq_rows.append((relpath, ident))

    def expected_matches(self, rows: list[_Row]) -> dict[str, list[tuple[str, int | str]]]:
        """Domain and term matches are found by looking at every row, the rest were planted."""
        domain_rows = [
            (r.relpath, r.ident) for r in rows if _host(r.url) == LISTED_DOMAIN
            or _host(r.url).endswith("." + LISTED_DOMAIN)
        ]
        term_rows = [(r.relpath, r.ident) for r in rows if _has_term(r.caption)]
        result = {
            "urls.txt": self.url_rows,
            "url_md5.txt": self.url_md5_rows,
            "image_md5.csv": self.image_md5_rows,
            "domains.txt": domain_rows,
            "terms.txt": term_rows,
            "pdq.txt": self.pdq_rows,
        }
        return {name: sorted(matches, key=_match_order) for name, matches in result.items()}

    def write_banks(self, banks_dir: Path, rng: random.Random) -> dict[str, Path]:
        """Write the five bank files; each also lists entries that match nothing."""
        unmatched_url = "https://www.example.net/never-in-the-dataset/nothing-here.jpg"
        unmatched_md5 = [_fake_md5(f"unmatched/{rng.random()}") for _ in range(2)]
        files = {
            "urls.txt": "".join(f"{u}\n" for u in self.url_entries + [unmatched_url]),
            "url_md5.txt": "".join(
                f"url_md5 {h}\n" for h in self.url_md5_entries + unmatched_md5[:1]
            ),
            "image_md5.csv": "signal_type,signal_str,collab,category,tags\n"
            + "".join(
                f"md5,{h},Demo Collab,TRUE_POSITIVE,demo placeholder\n"
                for h in self.image_md5_entries + unmatched_md5[1:]
            ),
            "domains.txt": f"{LISTED_DOMAIN}\n",
            "terms.txt": "".join(f"{t}\n" for t in TERMS),
            "pdq.txt": "".join(f"pdq {h}\n" for h in self.pdq_entries),
        }
        paths = {}
        for name, text in files.items():
            paths[name] = banks_dir / name
            _write_bytes(paths[name], text.encode("utf-8"))
        return paths


def _host(url: str) -> str:
    rest = url.split("://", 1)[1]
    cut = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    return rest[:cut].split(":", 1)[0].lower()


def _has_term(caption: str) -> bool:
    words = "".join(ch if ch.isalnum() else " " for ch in caption.casefold()).split()
    return any(term in words for term in TERMS)


def _match_order(match: tuple[str, int | str]) -> tuple[str, str]:
    relpath, ident = match
    return relpath, f"{ident:012d}" if isinstance(ident, int) else ident


def _fake_md5(label: str) -> str:
    return hashlib.md5(label.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- LAION parquet


def _laion_rows(
    rng: random.Random, shards: int, rows_per_shard: int, planner: _BankPlan
) -> tuple[list[_Row], list[str]]:
    """Generate every LAION row and plant the bank roles among them."""
    total = shards * rows_per_shard
    roles_needed = ["url_clean"] * 2 + ["url_messy"] * 2 + ["url_md5"] * 3 + ["image_md5"] * 3
    roles_needed += ["domain", "domain_sub", "domain_upper", "term_high", "term_high", "term_low", "term_other"]
    role_at = dict(zip(rng.sample(range(total), len(roles_needed)), roles_needed))

    rows: list[_Row] = []
    md5s: list[str] = []
    for index in range(total):
        shard, position = divmod(index, rows_per_shard)
        relpath = f"laion/part-{shard:05d}.parquet"
        uid = f"{rng.getrandbits(32):08x}{index:06d}"
        role = role_at.get(index)
        row = _Row(relpath, position, "", _caption(rng), _punsafe(rng), round(rng.uniform(0.28, 0.42), 6))
        row.url = _planted_url(rng, uid, role)
        _plant_caption(rng, row, role)
        md5s.append(_fake_md5(f"laion-image/{rng.random()}/{index}"))
        if role in ("url_clean", "url_messy"):
            planner.know_url(row, _other_spelling(row.url))
        elif role == "url_md5":
            planner.know_url_md5(row)
        elif role == "image_md5":
            planner.know_image_md5(relpath, position, md5s[-1])
        rows.append(row)
    return rows, md5s


def _planted_url(rng: random.Random, uid: str, role: str | None) -> str:
    if role == "url_clean":
        return _url(rng, uid, messy=False)
    if role == "url_messy":  # dataset spells it oddly; the bank has the plain form
        plain = _url(rng, uid, messy=False)
        scheme, rest = plain.split("://", 1)
        host, tail = rest.split("/", 1)
        return f"{scheme}://{host.upper()}:{'443' if scheme == 'https' else '80'}/{tail}"
    if role == "domain":
        return _url(rng, uid, host=LISTED_DOMAIN, messy=False)
    if role == "domain_sub":
        return _url(rng, uid, host="cdn." + LISTED_DOMAIN, messy=False)
    if role == "domain_upper":
        return _url(rng, uid, host=LISTED_DOMAIN.upper(), messy=False)
    return _url(rng, uid)


def _plant_caption(rng: random.Random, row: _Row, role: str | None) -> None:
    if role == "term_high":
        row.caption = f"{_caption_ascii(rng)} {TERMS[0]}"
        row.punsafe = round(rng.uniform(0.96, 0.995), 6)
    elif role == "term_low":  # a term hit the research policy keeps (low punsafe)
        row.caption = f"{TERMS[0].capitalize()} {_caption_ascii(rng)}"
        row.punsafe = round(rng.uniform(0.01, 0.1), 6)
    elif role == "term_other":
        row.caption = f"{_caption_ascii(rng)}, {TERMS[1]}"
        row.punsafe = round(rng.uniform(0.96, 0.995), 6)


def _caption_ascii(rng: random.Random) -> str:
    caption = _caption(rng)
    while not caption.isascii():
        caption = _caption(rng)
    return caption


def _write_laion(
    out: Path, rows: list[_Row], md5s: list[str], rng: random.Random, shards: int, per_shard: int
) -> list[Path]:
    paths = []
    for shard in range(shards):
        part = rows[shard * per_shard : (shard + 1) * per_shard]
        sizes = [rng.choice((256, 320, 480, 512, 640, 800, 1024, 1280)) for _ in range(2 * per_shard)]
        columns = {
            "URL": [r.url for r in part],
            "TEXT": [r.caption for r in part],
            "WIDTH": sizes[:per_shard],
            "HEIGHT": sizes[per_shard:],
            "similarity": [r.similarity for r in part],
            "punsafe": [r.punsafe for r in part],
            "pwatermark": [round(rng.random() ** 2, 6) for _ in part],
            "hash": [rng.getrandbits(64) - 2**63 for _ in part],
            "md5": md5s[shard * per_shard : (shard + 1) * per_shard],
        }
        path = out / "laion" / f"part-{shard:05d}.parquet"
        _write_parquet(pa.table(columns, schema=LAION_SCHEMA), path, row_group_size=256)
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- webdataset


def _write_webdataset(
    out: Path,
    rng: random.Random,
    pixels: np.random.Generator,
    shards: int,
    per_tar: int,
    planner: _BankPlan,
) -> list[Path]:
    """img2dataset-style shards: NNNNN.tar, NNNNN.parquet and NNNNN_stats.json."""
    paths = []
    seen_md5: set[str] = set()
    for shard in range(shards):
        relpath = f"images/{shard:05d}.tar"
        failed = set(rng.sample(range(per_tar), 3))
        ok = [i for i in range(per_tar) if i not in failed]
        wanted = ["image_md5", "domain"] + (["image_md5", "url", "term_high", "pdq"] if shard == 0 else [])
        roles = dict(zip(rng.sample(ok, len(wanted)), wanted))
        members: list[tuple[str, bytes]] = []
        records: list[dict] = []
        status_counts: dict[str, int] = {}
        for index in range(per_tar):
            key = f"{shard:05d}{index:04d}"
            role = roles.get(index)
            uid = f"{rng.getrandbits(32):08x}w{shard:02d}{index:04d}"
            host = LISTED_DOMAIN if role == "domain" else None
            row = _Row(relpath, key, _url(rng, uid, host=host, messy=host is None), _caption(rng), _punsafe(rng),
                       round(rng.uniform(0.28, 0.42), 6))
            _plant_caption(rng, row, role)
            if index in failed:
                error = rng.choice(_DOWNLOAD_ERRORS)
                status_counts[error] = status_counts.get(error, 0) + 1
                records.append(_wds_record(row, key, "failed_to_download", error, None, None, None))
                continue
            jpeg, (width, height) = _draw_jpeg(pixels)
            while hashlib.md5(jpeg).hexdigest() in seen_md5 or (role == "pdq" and _pdq_quality(jpeg) < 60):
                jpeg, (width, height) = _draw_jpeg(pixels)
            seen_md5.add(hashlib.md5(jpeg).hexdigest())
            original = (width * 2, height * 2)
            record = _wds_record(row, key, "success", None, (width, height), original, hashlib.sha256(jpeg).hexdigest())
            records.append(record)
            status_counts["success"] = status_counts.get("success", 0) + 1
            # webdataset's TarWriter writes a sample's members in sorted extension order.
            members.append((f"{key}.jpg", jpeg))
            members.append((f"{key}.json", json.dumps(record, indent=4).encode("utf-8")))
            members.append((f"{key}.txt", row.caption.encode("utf-8")))
            planner.wds_rows.append(row)
            if role == "image_md5":
                planner.know_image_md5(relpath, key, hashlib.md5(jpeg).hexdigest())
            elif role == "url":
                planner.know_url(row, row.url)
            elif role == "pdq":
                planner.know_pdq(relpath, key, _pdq_of_altered_copy(jpeg))

        tar_path = out / "images" / f"{shard:05d}.tar"
        _write_bytes(tar_path, _tar_bytes(members))
        _write_parquet(pa.Table.from_pylist(records, schema=WDS_PARQUET_SCHEMA), out / "images" / f"{shard:05d}.parquet")
        successes = per_tar - len(failed)
        stats = {
            "count": per_tar,
            "successes": successes,
            "failed_to_download": len(failed),
            "failed_to_resize": 0,
            "duration": 1.5,
            "start_time": STATS_START_TIME,
            "end_time": STATS_START_TIME + 1.5,
            "status_dict": dict(sorted(status_counts.items())),
        }
        _write_bytes(out / "images" / f"{shard:05d}_stats.json", (json.dumps(stats, indent=4) + "\n").encode())
        paths.append(tar_path)
    return paths


def _wds_record(row: _Row, key: str, status: str, error: str | None, size, original, sha256: str | None) -> dict:
    return {
        "url": row.url,
        "caption": row.caption,
        "punsafe": row.punsafe,
        "similarity": row.similarity,
        "key": key,
        "status": status,
        "error_message": error,
        "width": size[0] if size else None,
        "height": size[1] if size else None,
        "original_width": original[0] if original else None,
        "original_height": original[1] if original else None,
        "exif": None,
        "sha256": sha256,
    }


def _draw_jpeg(pixels: np.random.Generator) -> tuple[bytes, tuple[int, int]]:
    """A benign abstract picture: a two-colour gradient with a few flat shapes."""
    width, height = (int(v) for v in pixels.integers(64, 257, size=2))
    start, end = pixels.integers(0, 256, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, width if pixels.random() < 0.5 else height)
    if len(ramp) == width:
        weights = np.broadcast_to(ramp[None, :, None], (height, width, 1))
    else:
        weights = np.broadcast_to(ramp[:, None, None], (height, width, 1))
    array = (start * (1 - weights) + end * weights).astype(np.uint8)
    image = Image.fromarray(array, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(pixels.integers(1, 5))):
        x0, x1 = sorted(int(v) for v in pixels.integers(0, width, size=2))
        y0, y1 = sorted(int(v) for v in pixels.integers(0, height, size=2))
        fill = tuple(int(v) for v in pixels.integers(0, 256, size=3))
        if pixels.random() < 0.5:
            draw.ellipse((x0, y0, x1 + 1, y1 + 1), fill=fill)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue(), (width, height)


def _pdq_quality(jpeg: bytes) -> int:
    from safeset.pdq import hash_image

    return hash_image(jpeg, "exact").quality


def _pdq_of_altered_copy(jpeg: bytes) -> str:
    """PDQ of a smaller, re-encoded copy: what a hotline's list would hold for it."""
    from safeset.pdq import hash_image

    image = Image.open(io.BytesIO(jpeg)).convert("RGB")
    smaller = image.resize((image.width * 3 // 4, image.height * 3 // 4), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    smaller.save(buffer, "JPEG", quality=70)
    return hash_image(buffer.getvalue(), "exact").hex


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = TAR_MTIME
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --------------------------------------------------------------------------- atomic writes


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_parquet(table: pa.Table, path: Path, row_group_size: int | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp, compression="snappy", row_group_size=row_group_size)
    os.replace(tmp, path)
