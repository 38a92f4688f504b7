"""Benchmark: `safeset removals apply` next to `safeset scan` and `safeset clean`, same data, one run.

    python bench/removals.py                       # 2M rows, a 2M-entry list (generated on first use)
    python bench/removals.py --rows 200000         # quick smoke run
    python bench/removals.py --rows 10000000 --list 10000000 --record
    python bench/removals.py --rows 2000000 --list 100000000 --record   # a LAION-scale list

Data: `gen_laion.py`'s LAION-style parquet (in bench/data/removals-<rows>) and
a removal list of `--list` entries: `--hits` rows of the dataset (their
canonical-URL SHA-256 and `md5` column value) among random digests, in random
order, written with safeset's own list writer. Each contender runs as its own
subprocess, measured like metadata_scan.py (wall time, peak memory of the
process tree):

  1. `safeset bank import` of the URL and image banks (reported, not compared);
  2. `safeset scan`  (records only) against those banks;
  3. `safeset clean` (cleaned copy + records) against those banks;
  4. `safeset removals apply LIST --records-only`, first apply: the list is
     indexed inside the command (its index cache starts empty);
  5. the same again: the list's index comes from the cache (verified);
  6. `safeset removals apply LIST` (cleaned copy + records), index cached.

The banks' import is not inside scan's time; the list's indexing is inside
the first apply's. It prints rows/s of each, the ratios apply/scan and
apply/clean, how fast the list was indexed, whether the targets below are
met, and checks that apply removed exactly the planted rows.

Targets ("comparable to scan", docs/removal-lists.md): a first apply
--records-only at >= 0.5x scan's rows/s and a cached one at >= 0.9x, when
the list is no longer than the dataset; the list indexed at >= 4.4M values/s
(a 100M-entry list with URL and MD5 digests in <= 45 s on 2 CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import gen_laion  # noqa: E402  (sibling scripts, not a package)
import metadata_scan as ms  # noqa: E402

LIST_CHUNK = 1 << 20
LIST_GENERATOR_VERSION = 2


def planted_rows(data: Path, hits: int, seed: int) -> list[tuple[str, str]]:
    """(canonical-URL SHA-256, md5) of `hits` dataset rows, spread over the files."""
    import hashlib

    from safeset.signals.url import canonical_url  # the pure-Python reference form

    rng = np.random.default_rng([seed, 7])
    files = sorted((data / "laion").glob("*.parquet"))
    per_file = np.full(len(files), hits // len(files))
    per_file[: hits % len(files)] += 1
    planted = []
    for path, count in zip(files, per_file):
        table = pq.read_table(path, columns=["URL", "md5"])
        for row in np.sort(rng.choice(table.num_rows, int(count), replace=False)).tolist():
            url, md5 = table.column("URL")[row].as_py(), table.column("md5")[row].as_py()
            planted.append((hashlib.sha256(canonical_url(url).encode("utf-8")).hexdigest(), md5))
    return planted


def make_list(data: Path, entries: int, hits: int, seed: int, log=print) -> Path:
    """The removal list for the benchmark, reused when its parameters match."""
    from safeset.removals.listfile import RemovalListWriter, list_metadata

    params = {"version": LIST_GENERATOR_VERSION, "entries": entries, "hits": hits, "seed": seed}
    path = data / f"removal-list-{ms.size_label(entries)}.parquet"
    params_path = path.with_suffix(".json")
    if path.exists() and params_path.exists() and json.loads(params_path.read_text()) == params:
        log(f"reusing {path}")
        return path
    planted = planted_rows(data, hits, seed)
    rng = np.random.default_rng([seed, 8])
    places = np.sort(rng.choice(entries, len(planted), replace=False))
    order = rng.permutation(len(planted))
    writer = RemovalListWriter(path, list_metadata(source_dataset="bench-laion", source_version=None,
                                                   total=entries, decoys=0, kind="published"))
    planted_urls = np.array([np.frombuffer(bytes.fromhex(u), np.uint8) for u, _ in planted]).reshape(-1, 32)
    planted_md5s = np.array([np.frombuffer(bytes.fromhex(m), np.uint8) for _, m in planted]).reshape(-1, 16)
    for start in range(0, entries, LIST_CHUNK):
        count = min(LIST_CHUNK, entries - start)
        urls = rng.integers(0, 256, (count, 32), dtype=np.uint8)
        md5s = rng.integers(0, 256, (count, 16), dtype=np.uint8)
        inside = (places >= start) & (places < start + count)
        urls[places[inside] - start] = planted_urls[order[inside]]
        md5s[places[inside] - start] = planted_md5s[order[inside]]
        writer.write(pa.table({"url_sha256": gen_laion.hex_strings(urls), "image_sha256": pa.nulls(count, pa.string()),
                               "image_md5": gen_laion.hex_strings(md5s), "key": pa.nulls(count, pa.string())}))
    writer.commit()
    params_path.write_text(json.dumps(params) + "\n")
    log(f"wrote {path}: {entries:,} entries, {len(planted):,} of them rows of the dataset")
    return path


class AnonymousMemory:
    """Peak anonymous memory (resident minus file-backed) of this process's descendants, sampled.

    The memory-mapped list index is file-backed: its pages count in RSS as the
    workers touch them, but they are shared page cache the kernel can drop.
    Anonymous memory is what the work itself holds.
    """

    def __init__(self):
        self.tree_peak = self.process_peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def _anonymous(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                fields = handle.read().split()
            return (int(fields[1]) - int(fields[2])) * ms.PAGE_SIZE
        except (OSError, IndexError, ValueError):
            return 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            values = [self._anonymous(pid) for pid in ms._tree(os.getpid()) if pid != os.getpid()]
            self.tree_peak = max(self.tree_peak, sum(values))
            self.process_peak = max(self.process_peak, max(values, default=0))
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


FIRST_APPLY_TARGET = 0.5  # x scan's rows/s, list indexed inside the command
CACHED_APPLY_TARGET = 0.9  # x scan's rows/s, list index from the cache
INDEX_VALUES_PER_SECOND_TARGET = 4.4e6


def run_apply(data: Path, work: Path, listed: Path, rows: int, workers: int, repeat: int, safeset: list[str],
              records_only: bool, cache: Path, cached: bool):
    """One apply; `cached`: the list's index is in `cache` already, else the cache is emptied first."""
    flag = ["--records-only"] if records_only else []
    label = " ".join(["safeset removals apply", *flag, "(index cached)" if cached else "(first apply)",
                      f"(--workers {workers})"])

    def once():
        out = work / "apply"
        shutil.rmtree(out, ignore_errors=True)
        if not cached:
            shutil.rmtree(cache, ignore_errors=True)
        with AnonymousMemory() as anonymous:
            m = ms.run_measured(
                label,
                safeset + ["removals", "apply", str(listed), str(data / "laion"), "--out", str(out), "--workers",
                           str(workers), "--tmp-dir", str(work), "--index-cache", str(cache), "--quiet", *flag],
                rows=rows,
            )
        if m.ok:
            m.detail = ms.read_run_record(out)
            m.detail["anonymous_peak"] = {"tree": anonymous.tree_peak, "process": anonymous.process_peak}
        return m

    return ms.best_of(repeat, once)


def checks(pairs, hits: int, rows: int) -> tuple[list[str], bool]:
    """`pairs`: (name, apply measurement, the bank job it is compared with, target ratio or None)."""
    lines, ok = [], True
    for name, apply, other, target in pairs:
        if not apply.ok:
            lines.append(f"{apply.label} did not complete: no ratio")
            ok = False
            continue
        counts = apply.detail.get("counts", {})
        removed = counts.get("removed_rows", 0)
        planted_ok = removed == hits and counts.get("input_rows") == rows and counts.get("review_rows") == 0
        ok &= planted_ok
        lines.append(f"{name}: removed {removed:,} rows (planted {hits:,}) of {counts.get('input_rows', 0):,}: "
                     f"{'OK' if planted_ok else 'MISMATCH'}")
        if other is not None and other.ok:
            ratio = other.seconds / apply.seconds
            verdict = "" if target is None else f"  target >= {target}x: {'MET' if ratio >= target else 'NOT MET'}"
            lines.append(f"      speed ratio {name} / {other.label.split(' (')[0]} = {ratio:.2f}x"
                         f"  ({apply.rows_per_second:,.0f} vs {other.rows_per_second:,.0f} rows/s, whole commands)"
                         + verdict)
        anonymous = apply.detail.get("anonymous_peak")
        if anonymous:
            lines.append(f"      anonymous memory (RSS less the memory-mapped index and other file pages): peak "
                         f"{ms.human_bytes(anonymous['tree'])} (tree), {ms.human_bytes(anonymous['process'])} "
                         "(largest process)")
        in_run = apply.detail.get("in_run_seconds")
        if in_run:
            lines.append(f"      ({in_run:.2f} s of {apply.seconds:.2f} s in the job itself; the rest is interpreter "
                         "start, checksumming the list and indexing it or checking its cached index)")
    return lines, ok


def indexing_lines(first, cached, values: int) -> list[str]:
    """The list's indexing, as the first apply's time less the cached apply's (same job otherwise)."""
    if not (first.ok and cached.ok):
        return []
    seconds = max(first.seconds - cached.seconds, 1e-9)
    rate = values / seconds
    return [f"list indexing: {values:,} values in ~{seconds:.1f} s (first apply less cached apply) = "
            f"{rate / 1e6:.1f}M values/s  target >= {INDEX_VALUES_PER_SECOND_TARGET / 1e6:.1f}M values/s: "
            f"{'MET' if rate >= INDEX_VALUES_PER_SECOND_TARGET else 'NOT MET'}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=ms.parse_count, default=2_000_000)
    parser.add_argument("--list", type=ms.parse_count, help="removal-list entries (default: as many as rows)")
    parser.add_argument("--hits", type=int, default=1000, help="list entries that are rows of the dataset")
    parser.add_argument("--files", type=int, help="parquet files (default: one per 500k rows, 2..20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="data directory (default bench/data/removals-<rows>)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="run each timed step N times, keep the fastest")
    parser.add_argument("--keep-work", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the measurements here as JSON")
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    args = parser.parse_args(argv)

    rows = args.rows
    entries = args.list or rows
    files = args.files or min(20, max(2, rows // 500_000))
    data = args.data or BENCH_DIR / "data" / f"removals-{ms.size_label(rows)}"
    gen_laion.generate(data, rows=rows, files=files, url_bank=max(10_000, rows // 5), image_bank=max(10_000, rows),
                       seed=args.seed, log=lambda msg: print(f"data: {msg}", flush=True))
    hits = min(args.hits, rows, entries)
    listed = make_list(data, entries, hits, args.seed, log=lambda msg: print(f"list: {msg}", flush=True))
    ms.warm_page_cache(sorted((data / "laion").glob("*.parquet")) + [listed])

    work = Path(tempfile.mkdtemp(prefix="work-", dir=data))
    safeset = ms.safeset_command()
    measurements = []
    try:
        print("running safeset scan and clean ...", flush=True)
        results = ms.run_safeset(data, work, rows, args.workers, args.repeat, safeset)
        scan, clean = results["scan"], results["clean"]
        measurements += [*results["imports"], *(m for m in (scan, clean) if m is not None)]
        print("running safeset removals apply ...", flush=True)
        cache = work / "index-cache"
        first = run_apply(data, work, listed, rows, args.workers, args.repeat, safeset, True, cache, cached=False)
        cached = run_apply(data, work, listed, rows, args.workers, args.repeat, safeset, True, cache, cached=True)
        apply = run_apply(data, work, listed, rows, args.workers, args.repeat, safeset, False, cache, cached=True)
        measurements += [first, cached, apply]
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)

    for m in measurements:
        if not m.ok:
            print(f"\n--- {m.label} failed (exit {m.returncode}); stderr tail:\n{m.stderr[-2000:]}", file=sys.stderr)
    short_list = entries <= rows  # the ratio targets are for lists no longer than the dataset
    check_lines, ok = checks([
        ("first apply --records-only", first, scan, FIRST_APPLY_TARGET if short_list else None),
        ("cached apply --records-only", cached, scan, CACHED_APPLY_TARGET if short_list else None),
        ("cached apply", apply, clean, None),
    ], hits, rows)
    check_lines += indexing_lines(first, cached, 2 * entries)  # each entry: a URL digest and an MD5
    title = (f"removal list apply, {rows:,} rows in {files} files, list of {entries:,} entries ({hits:,} in the "
             f"dataset), {args.workers} workers")
    lines = [title, "", *ms.table_lines(measurements), "", *check_lines]
    print("\n" + "\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps({"measurements": [
            {k: v for k, v in asdict(m).items() if k not in ("stdout", "stderr")} for m in measurements
        ], "checks": check_lines, "ok": ok}, indent=2) + "\n")
    if args.record:
        ms.record(BENCH_DIR / "RESULTS.md", title, [*ms.table_lines(measurements), "", *check_lines])
        print(f"\nappended to {BENCH_DIR / 'RESULTS.md'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
