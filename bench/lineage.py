"""Lineage: `safeset lineage dataset add` and `taint` vs keeping the digests in DuckDB.

    .venv/bin/python bench/lineage.py                 # 2M rows (generated once, reused)
    .venv/bin/python bench/lineage.py --rows 200000   # smoke run

What a data engineer would otherwise do to answer "which of these listed
samples did dataset X hold?" later, without the data: export each row's URL
SHA-256 and image MD5 with DuckDB to a zstd parquet file, and join a removal
list against it. Side by side, on the same LAION-style data (bench/gen_laion.py):

1. fingerprint: `safeset lineage dataset add` (whole command, interpreter
   start included) vs DuckDB `COPY (SELECT sha256(URL), md5 ...) TO parquet`;
   size of what is kept, in bytes per row;
2. taint: `safeset lineage taint LIST` (whole command) vs a DuckDB query
   counting list entries found in the exported digests; the list holds
   `--list` entries, half of them image MD5s of dataset rows, half random;
3. false positives: the registered structure queried in-process with
   `--fp-queries` random digests (not members), measured rate vs the bound.

Prints a table and the ratios (reference seconds / safeset seconds, and
reference bytes / safeset bytes: above 1 means safeset is faster / smaller).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(BENCH_DIR.parent / "tests"))

import gen_laion  # noqa: E402  (a sibling script)


def _size_label(rows: int) -> str:
    return f"{rows // 1_000_000}m" if rows % 1_000_000 == 0 else f"{rows // 1000}k"


def _safeset(*args: str) -> tuple[float, subprocess.CompletedProcess]:
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "safeset.cli", *args], capture_output=True, text=True)
    return time.perf_counter() - started, proc


def _write_list(path: Path, data: Path, entries: int, seed: int) -> int:
    """Half: image MD5s of dataset rows; half: random digests. Returns how many are members."""
    from lineage_util import write_removal_list

    rng = np.random.default_rng(seed)
    members = entries // 2
    md5s = pq.read_table(sorted((data / "laion").glob("*.parquet"))[0], columns=["md5"]).column("md5")
    chosen = rng.choice(len(md5s), size=min(members, len(md5s)), replace=False)
    rows = [{"image_md5": md5s[int(i)].as_py()} for i in chosen]
    random_hex = lambda n: rng.integers(0, 256, n, dtype=np.uint8).tobytes().hex()  # noqa: E731
    rows += [{"url_sha256": random_hex(32), "image_md5": random_hex(16)} for _ in range(entries - len(rows))]
    write_removal_list(path, rows)
    return len(chosen)


def _duckdb_export(data: Path, out: Path, threads: int) -> float:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    started = time.perf_counter()
    con.execute(f"COPY (SELECT sha256(URL) AS url_sha256, md5 AS image_md5 FROM read_parquet('{data}/laion/*.parquet'))"
                f" TO '{out}' (FORMAT parquet, COMPRESSION zstd)")
    return time.perf_counter() - started


def _duckdb_taint(digests: Path, listed: Path, threads: int) -> tuple[float, int]:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    started = time.perf_counter()
    found = con.execute(
        f"SELECT count(*) FROM read_parquet('{listed}') l WHERE"
        f" l.url_sha256 IN (SELECT url_sha256 FROM read_parquet('{digests}'))"
        f" OR l.image_md5 IN (SELECT image_md5 FROM read_parquet('{digests}'))"
    ).fetchone()[0]
    return time.perf_counter() - started, int(found)


def _false_positives(store: Path, queries: int, seed: int) -> tuple[float, float, float]:
    from safeset.lineage.registry import LineageRegistry

    registry = LineageRegistry.open(store)
    [record] = registry.datasets()
    index = registry.membership(record)
    rng = np.random.default_rng(seed + 1)
    hits, seconds, done = 0, 0.0, 0
    while done < queries:
        n = min(1_000_000, queries - done)
        for kind, size in (("url_sha256", 32), ("image_md5", 16)):
            digests = rng.integers(0, 256, (n // 2, size), dtype=np.uint8)
            started = time.perf_counter()
            hits += int(index.contains(kind, digests).sum())
            seconds += time.perf_counter() - started
            done += n // 2
    return hits / done, float(index.header["false_positive_rate_bound"]), done / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=2_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--list", type=int, default=100_000, help="removal list entries")
    parser.add_argument("--fp-queries", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    data = BENCH_DIR / "data" / f"laion-{_size_label(args.rows)}"
    gen_laion.generate(data, rows=args.rows, files=max(2, min(20, args.rows // 500_000)), url_bank=10_000,
                       image_bank=10_000, seed=args.seed, log=lambda m: print(f"data: {m}", flush=True))
    for path in (data / "laion").glob("*.parquet"):  # warm the page cache for both contenders
        path.read_bytes()
    with tempfile.TemporaryDirectory(prefix="lineage-", dir=data) as work:
        work = Path(work)
        store = work / "store"
        listed = work / "list.parquet"
        members = _write_list(listed, data, args.list, args.seed)

        add_s, proc = _safeset("lineage", "dataset", "add", "bench/laion@1", str(data / "laion"), "--store", str(store),
                               "--workers", str(args.workers), "--json", "-q")
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        added = json.loads(proc.stdout)
        taint_s, proc = _safeset("lineage", "taint", str(listed), "--store", str(store), "--json")
        report = json.loads(proc.stdout)
        found = report["datasets"][0]["listed_samples"]

        digests = work / "digests.parquet"
        duck_export_s = _duckdb_export(data, digests, args.workers)
        duck_taint_s, duck_found = _duckdb_taint(digests, listed, args.workers)
        duck_bytes = digests.stat().st_size
        fp_rate, fp_bound, queries_per_s = _false_positives(store, args.fp_queries, args.seed)

    rows = added["rows"]
    print()
    print(f"{'step':<46} {'seconds':>8} {'bytes/row':>10}  found")
    print(f"{'safeset lineage dataset add (whole command)':<46} {add_s:8.2f} {added['bytes_per_row']:10.2f}")
    print(f"{'DuckDB COPY sha256(URL), md5 -> zstd parquet':<46} {duck_export_s:8.2f} {duck_bytes / rows:10.2f}")
    print(f"{'safeset lineage taint (whole command)':<46} {taint_s:8.2f} {'':>10}  {found:,} of {members:,} members")
    print(f"{'DuckDB list IN exported digests':<46} {duck_taint_s:8.2f} {'':>10}  {duck_found:,}")
    print()
    print(f"rows {rows:,}; list {args.list:,} entries ({members:,} members); workers {args.workers}")
    print(f"fingerprint speed ratio  DuckDB / safeset = {duck_export_s / add_s:.2f}x")
    print(f"size ratio               DuckDB / safeset = {duck_bytes / rows / added['bytes_per_row']:.1f}x")
    print(f"taint speed ratio        DuckDB / safeset = {duck_taint_s / taint_s:.2f}x")
    print(f"false positives: measured {fp_rate:.2e} over {args.fp_queries:,} non-member queries "
          f"(bound {fp_bound:.2e}, required <= 1e-6); {queries_per_s:,.0f} queries/s in-process")
    ok = found >= members and duck_found == members and fp_rate <= 1e-6
    print("OK" if ok else "MISMATCH")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
