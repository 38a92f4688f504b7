"""Benchmark: `safeset scan` / `safeset clean` against the tools a user would otherwise pick.

    python bench/metadata_scan.py                    # 10M rows (generated on first use)
    python bench/metadata_scan.py --rows 200000      # quick smoke run
    python bench/metadata_scan.py --record           # also append the result to bench/RESULTS.md

One invocation, same data, same machine, side by side:
  1. safeset, through its CLI in subprocesses: bank import (timed apart), then
     `scan` and `clean` with --workers N.
  2. DuckDB: a hand-written query joining md5(URL) with the URL bank and the
     `md5` column with the image bank (banks loaded into tables first, timed
     apart), `SET threads=N`; only the query is timed.
  3. pyarrow: plain read + write of every file (same compression), a Pool of N
     processes, one file per task: the floor for `clean`.

Every tool runs in its own subprocess and is measured the same way: wall time,
peak memory of its whole process tree (RSS and PSS summed over processes,
sampled every 50 ms from /proc) and the largest single process (from wait4).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import gen_laion  # noqa: E402  (a sibling script, not a package)

SCAN_TARGET = 1.3  # safeset scan rows/s over DuckDB rows/s
CLEAN_TARGET = 0.7  # safeset clean rows/s over pyarrow read+write rows/s
SAMPLE_SECONDS = 0.05
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- measuring a process tree


@dataclass
class Measurement:
    label: str
    rows: int | None
    seconds: float
    peak_rss_sum: int = 0  # bytes, largest sampled sum over the process tree
    peak_pss_sum: int = 0  # bytes, same with proportional set size (shared pages split)
    max_process_rss: int = 0  # bytes, largest single process (kernel's maxrss via wait4)
    returncode: int = 0
    detail: dict = field(default_factory=dict)
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def rows_per_second(self) -> float | None:
        return self.rows / self.seconds if self.rows and self.seconds > 0 else None


def _process_table() -> dict[int, int]:
    """pid -> parent pid for every process (this kernel has no /proc/*/children)."""
    parents = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as handle:
                    stat = handle.read()
            except OSError:
                continue
            # The command name may hold spaces and parentheses: parse after the last ')'.
            fields = stat[stat.rfind(b")") + 2 :].split()
            parents[int(entry.name)] = int(fields[1])
    return parents


def _tree(root: int) -> list[int]:
    parents = _process_table()
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return 0


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as handle:
            for line in handle:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def run_measured(label: str, command: list[str], *, rows: int | None, cwd: Path | None = None) -> Measurement:
    """Run `command`, sampling its process tree's memory until it exits."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, cwd=cwd)
        peak_rss = peak_pss = 0
        tick = 0
        tree = [process.pid]
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            # Walking all of /proc costs ~2 ms: find new workers every 150 ms,
            # read the known processes' RSS every 50 ms.
            if tick % 3 == 0:
                tree = _tree(process.pid)
            peak_rss = max(peak_rss, sum(_rss(p) for p in tree))
            if tick % 4 == 0:  # smaps_rollup costs more; every 200 ms is enough
                peak_pss = max(peak_pss, sum(_pss(p) for p in tree))
            tick += 1
            time.sleep(SAMPLE_SECONDS)
        seconds = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measurement(
            label=label,
            rows=rows,
            seconds=seconds,
            peak_rss_sum=peak_rss,
            peak_pss_sum=peak_pss,
            max_process_rss=usage.ru_maxrss * 1024,
            returncode=process.returncode,
            stdout=out.read().decode("utf-8", "replace"),
            stderr=err.read().decode("utf-8", "replace"),
        )


def best_of(repeat: int, run) -> Measurement:
    """Fastest of `repeat` runs; memory is the largest seen in any of them."""
    runs = [run() for _ in range(repeat)]
    failed = [m for m in runs if not m.ok]
    if failed:
        return failed[0]
    best = min(runs, key=lambda m: m.seconds)
    best.peak_rss_sum = max(m.peak_rss_sum for m in runs)
    best.peak_pss_sum = max(m.peak_pss_sum for m in runs)
    best.max_process_rss = max(m.max_process_rss for m in runs)
    return best


# --------------------------------------------------------------------------- the three contenders


def safeset_command() -> list[str]:
    script = Path(sys.executable).with_name("safeset")
    if script.exists():
        return [str(script)]
    found = shutil.which("safeset")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys; from safeset.cli import app; sys.argv[0] = 'safeset'; app()"]


def run_safeset(data: Path, work: Path, rows: int, workers: int, repeat: int, safeset: list[str]) -> dict:
    store = work / "store"
    banks = data / "banks"
    results: dict = {"imports": [], "scan": None, "clean": None}
    for name, file, kind in (("URLS", "url_md5.txt", "url_md5"), ("IMAGES", "image_md5.txt", "md5")):
        lines = (banks / file).stat().st_size // 33
        m = run_measured(
            f"safeset bank import {name} ({lines:,} {kind})",
            safeset + ["bank", "import", name, str(banks / file), "--type", kind, "--store", str(store)],
            rows=lines,
        )
        results["imports"].append(m)
        if not m.ok:
            return results

    def job(verb: str):
        out = work / verb
        shutil.rmtree(out, ignore_errors=True)
        m = run_measured(
            f"safeset {verb} (--workers {workers})",
            safeset + [verb, str(data / "laion"), "--out", str(out), "--store", str(store), "--workers", str(workers)],
            rows=rows,
        )
        if m.ok:
            m.detail = read_run_record(out)
        return m

    results["scan"] = best_of(repeat, lambda: job("scan"))
    if results["scan"].ok:
        results["clean"] = best_of(repeat, lambda: job("clean"))
    return results


def read_run_record(out: Path) -> dict:
    """Counts from run.json, and withheld rows per bank from removed.parquet."""
    import pyarrow.parquet as pq

    detail: dict = {}
    run_json = out / "_safeset" / "run.json"
    if run_json.exists():
        record = json.loads(run_json.read_text())
        detail["counts"] = record.get("counts", {})
        detail["in_run_seconds"] = record.get("timings", {}).get("seconds")
    removed = out / "_safeset" / "removed.parquet"
    if removed.exists():
        table = pq.read_table(removed)
        detail["removed_parquet_rows"] = table.num_rows
        if "reasons" in table.column_names:
            per_bank: dict[str, int] = {}
            for reasons in table.column("reasons").to_pylist():
                for bank in {r.get("bank") for r in reasons or ()}:
                    per_bank[str(bank)] = per_bank.get(str(bank), 0) + 1
            detail["rows_per_bank"] = dict(sorted(per_bank.items()))
    return detail


def run_duckdb(data: Path, rows: int, threads: int, repeat: int) -> Measurement:
    m = run_measured(
        f"DuckDB join (threads={threads})",
        [sys.executable, __file__, "--internal", "duckdb", "--data", str(data), "--workers", str(threads),
         "--repeat", str(repeat)],
        rows=rows,
    )
    if m.ok:
        m.detail = json.loads(m.stdout.strip().splitlines()[-1])
        m.seconds = m.detail["query_seconds"]
    return m


def run_pyarrow(data: Path, work: Path, rows: int, processes: int, repeat: int) -> Measurement:
    def once():
        out = work / "pyarrow"
        shutil.rmtree(out, ignore_errors=True)
        m = run_measured(
            f"pyarrow read+write (Pool {processes})",
            [sys.executable, __file__, "--internal", "pyarrow", "--data", str(data), "--out", str(out),
             "--workers", str(processes)],
            rows=rows,
        )
        if m.ok:
            m.detail = json.loads(m.stdout.strip().splitlines()[-1])
            m.seconds = m.detail["seconds"]
        return m

    return best_of(repeat, once)


# --------------------------------------------------------------------------- internal: run inside the measured subprocess


def internal_duckdb(data: Path, threads: int, repeat: int) -> dict:
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads={threads}")
    started = time.perf_counter()
    for table, file in (("url_bank", "url_md5.txt"), ("image_bank", "image_md5.txt")):
        con.execute(
            f"CREATE TABLE {table} AS SELECT DISTINCT lower(trim(h)) AS h "
            f"FROM read_csv({sql_string(str(data / 'banks' / file))}, header=false, columns={{'h': 'VARCHAR'}})"
        )
    load_seconds = time.perf_counter() - started

    # md5() gives lowercase hex, like the bank files; the `md5` column is hex too.
    query = f"""
        CREATE OR REPLACE TABLE matches AS
        SELECT * FROM (
            SELECT filename, file_row_number, URL, md5,
                   md5(URL) IN (SELECT h FROM url_bank) AS url_hit,
                   md5 IN (SELECT h FROM image_bank) AS image_hit
            FROM read_parquet({sql_string(str(data / 'laion' / '*.parquet'))},
                              filename=true, file_row_number=true)
        ) WHERE url_hit OR image_hit
    """
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        con.execute(query)
        timings.append(time.perf_counter() - started)
    matched, url_rows, image_rows = con.execute(
        "SELECT count(*), count(*) FILTER (url_hit), count(*) FILTER (image_hit) FROM matches"
    ).fetchone()
    return {
        "load_seconds": load_seconds,
        "query_seconds": min(timings),
        "matched_rows": matched,
        "url_md5_rows": url_rows,
        "image_md5_rows": image_rows,
        "duckdb_version": duckdb.__version__,
    }


def sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _copy_parquet(task: tuple[str, str]) -> int:
    import pyarrow.parquet as pq

    source, target = task
    table = pq.read_table(source)
    pq.write_table(table, target, compression="snappy", row_group_size=gen_laion.ROW_GROUP_ROWS)
    return table.num_rows


def internal_pyarrow(data: Path, out: Path, processes: int) -> dict:
    import multiprocessing

    out.mkdir(parents=True, exist_ok=True)
    files = sorted((data / "laion").glob("*.parquet"))
    tasks = [(str(f), str(out / f.name)) for f in files]
    started = time.perf_counter()
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        rows = sum(pool.map(_copy_parquet, tasks, chunksize=1))
    return {"seconds": time.perf_counter() - started, "rows_written": rows}


# --------------------------------------------------------------------------- report


def human_bytes(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB" if n else "-"


def table_lines(measurements: list[Measurement]) -> list[str]:
    header = ("step", "rows", "seconds", "rows/s", "peak RSS (tree)", "peak PSS (tree)", "max proc RSS")
    body = []
    for m in measurements:
        rate = m.rows_per_second
        body.append(
            (
                m.label + ("" if m.ok else f"  FAILED (exit {m.returncode})"),
                f"{m.rows:,}" if m.rows else "-",
                f"{m.seconds:.2f}",
                f"{rate:,.0f}" if rate and m.ok else "-",
                human_bytes(m.peak_rss_sum),
                human_bytes(m.peak_pss_sum),
                human_bytes(m.max_process_rss),
            )
        )
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]

    def fmt(row):
        return "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))

    return [fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)]


def comparisons(
    safeset: dict | None, duck: Measurement, arrow: Measurement, expected: dict
) -> tuple[list[str], bool, bool]:
    """Ratio and match-count lines, whether every run and count was right, whether targets were met."""
    lines, ok, fast = [], True, True
    duck_matched = duck.detail.get("matched_rows") if duck.ok else None
    if duck.ok:
        planted_ok = (duck.detail["url_md5_rows"], duck.detail["image_md5_rows"]) == (
            expected["url_md5_rows"], expected["image_md5_rows"])
        ok &= planted_ok
        lines.append(
            f"DuckDB matched rows: {duck_matched:,} (URL bank {duck.detail['url_md5_rows']:,}, "
            f"image bank {duck.detail['image_md5_rows']:,}; planted {expected['url_md5_rows']:,} + "
            f"{expected['image_md5_rows']:,}{'' if planted_ok else ' -- MISMATCH'}); "
            f"bank load {duck.detail['load_seconds']:.2f} s (not in the query time)"
        )
    if safeset is None:
        lines.append("safeset: skipped (--skip-safeset)")
        return lines, ok and duck.ok and arrow.ok, fast
    scan, clean = safeset.get("scan"), safeset.get("clean")
    if scan is None or not scan.ok:
        return lines + ["safeset scan did not complete: no ratio"], False, False
    counts = scan.detail.get("counts", {})
    flagged = counts.get("removed_rows", 0) + counts.get("review_rows", 0)
    if counts.get("input_rows") != scan.rows:
        ok = False
        lines.append(f"safeset scan read {counts.get('input_rows')} rows, expected {scan.rows:,} -- MISMATCH")
    if duck_matched is not None:
        same = flagged >= duck_matched
        ok &= same
        per_bank = scan.detail.get("rows_per_bank")
        lines.append(
            f"safeset flagged rows: {flagged:,} (removed {counts.get('removed_rows', 0):,}, review "
            f"{counts.get('review_rows', 0):,}{'; per bank ' + json.dumps(per_bank) if per_bank else ''}) "
            f"vs DuckDB {duck_matched:,}: {'OK (>=)' if same else 'FEWER THAN DUCKDB -- MISMATCH'}"
        )
    if duck.ok:
        ratio = duck.seconds / scan.seconds
        fast &= ratio >= SCAN_TARGET
        lines.append(
            f"scan  speed ratio  safeset / DuckDB            = {ratio:.2f}x  (target >= {SCAN_TARGET}) "
            f"{'PASS' if ratio >= SCAN_TARGET else 'BELOW TARGET'}"
        )
        in_run = scan.detail.get("in_run_seconds")
        if in_run:
            lines.append(
                f"      (for information: {duck.seconds / in_run:.2f}x counting safeset's run alone, "
                f"{in_run:.2f} s from run.json, without interpreter start and imports; the ratio above is the judge)"
            )
    if clean is not None and clean.ok and arrow.ok:
        ratio = arrow.seconds / clean.seconds
        fast &= ratio >= CLEAN_TARGET
        lines.append(
            f"clean speed ratio  safeset / pyarrow read+write = {ratio:.2f}x  (target >= {CLEAN_TARGET}) "
            f"{'PASS' if ratio >= CLEAN_TARGET else 'BELOW TARGET'}"
        )
        kept = clean.detail.get("counts", {}).get("kept_rows")
        if kept is not None and kept + flagged != clean.rows:
            ok = False
            lines.append(f"safeset clean kept {kept:,} + flagged {flagged:,} != {clean.rows:,} rows -- MISMATCH")
    elif clean is not None and not clean.ok:
        ok = False
        lines.append("safeset clean did not complete: no ratio")
    return lines, ok and duck.ok and arrow.ok, fast


def machine_description() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} CPUs, {memory:.0f} GiB RAM, Linux {platform.release()}"


def versions() -> str:
    from importlib import metadata

    parts = [f"Python {platform.python_version()}"]
    for package in ("safeset", "pyarrow", "duckdb", "numpy"):
        try:
            parts.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{package} (not installed)")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, check=True
        ).stdout.strip()
        parts.append(f"commit {commit}")
    except (OSError, subprocess.CalledProcessError):
        pass
    return ", ".join(parts)


def record(path: Path, title: str, lines: list[str]) -> None:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    block = [f"## {stamp}: {title}", "", f"- machine: {machine_description()}", f"- software: {versions()}", "",
             "```", *lines, "```", ""]
    if not path.exists():
        path.write_text(
            "# Benchmark results\n\nAppended by `python bench/metadata_scan.py --record`; newest last. "
            "See bench/README.md for what each benchmark compares.\n\n"
        )
    with path.open("a", encoding="utf-8") as handle:
        handle.write("\n".join(block) + "\n")


# --------------------------------------------------------------------------- driver


def warm_page_cache(files: list[Path]) -> None:
    """Read every input once so no contender pays for the first, cold read."""
    for file in files:
        with open(file, "rb") as handle:
            while handle.read(16 * 2**20):
                pass


def size_label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}m"
    if rows % 1_000 == 0:
        return f"{rows // 1_000}k"
    return str(rows)


def parse_count(text: str) -> int:
    return int(text.replace("_", "").replace(",", ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=parse_count, default=10_000_000)
    parser.add_argument("--files", type=int, help="parquet files (default: one per 500k rows, 2..20)")
    parser.add_argument("--url-bank", type=parse_count, help="URL digests in the bank (default rows/5)")
    parser.add_argument("--image-bank", type=parse_count, help="image digests in the bank (default rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, help="data directory (default bench/data/laion-<rows>)")
    parser.add_argument("--workers", type=int, default=2, help="safeset workers, DuckDB threads, pyarrow processes")
    parser.add_argument("--repeat", type=int, default=1, help="run each timed step N times, keep the fastest")
    parser.add_argument("--skip-safeset", action="store_true", help="only the references (and the data)")
    parser.add_argument("--safeset-cmd", help="how to call the CLI (default: the `safeset` beside this Python)")
    parser.add_argument("--keep-work", action="store_true", help="keep the store and outputs")
    parser.add_argument("--json", type=Path, help="also write the measurements here as JSON")
    parser.add_argument("--record", action="store_true", help="append the result to bench/RESULTS.md")
    parser.add_argument("--strict", action="store_true", help="exit 3 when a speed ratio is below its target")
    parser.add_argument("--internal", choices=("duckdb", "pyarrow"), help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.internal == "duckdb":
        print(json.dumps(internal_duckdb(args.data, args.workers, args.repeat)))
        return 0
    if args.internal == "pyarrow":
        print(json.dumps(internal_pyarrow(args.data, args.out, args.workers)))
        return 0

    rows = args.rows
    files = args.files or min(20, max(2, rows // 500_000))
    data = args.data or BENCH_DIR / "data" / f"laion-{size_label(rows)}"
    params = gen_laion.generate(
        data,
        rows=rows,
        files=files,
        url_bank=args.url_bank or max(10_000, rows // 5),
        image_bank=args.image_bank or max(10_000, rows),
        seed=args.seed,
        log=lambda msg: print(f"data: {msg}", flush=True),
    )
    warm_page_cache(sorted((data / "laion").glob("*.parquet")) + sorted((data / "banks").glob("*.txt")))

    work = Path(tempfile.mkdtemp(prefix="work-", dir=data))
    measurements: list[Measurement] = []
    safeset_results = None
    try:
        if not args.skip_safeset:
            print("running safeset ...", flush=True)
            command = args.safeset_cmd.split() if args.safeset_cmd else safeset_command()
            safeset_results = run_safeset(data, work, rows, args.workers, args.repeat, command)
            measurements += safeset_results["imports"]
            measurements += [m for m in (safeset_results["scan"], safeset_results["clean"]) if m is not None]
        print("running DuckDB ...", flush=True)
        duck = run_duckdb(data, rows, args.workers, args.repeat)
        measurements.append(duck)
        print("running pyarrow ...", flush=True)
        arrow = run_pyarrow(data, work, rows, args.workers, args.repeat)
        measurements.append(arrow)
    finally:
        if not args.keep_work:
            shutil.rmtree(work, ignore_errors=True)

    for m in measurements:
        if not m.ok:
            print(f"\n--- {m.label} failed (exit {m.returncode}); stderr tail:\n{m.stderr[-2000:]}", file=sys.stderr)

    check_lines, ok, fast = comparisons(safeset_results, duck, arrow, params["expected"])
    title = (f"metadata scan, {rows:,} rows in {files} files, URL bank {params['url_bank']:,}, "
             f"image bank {params['image_bank']:,}, {args.workers} workers")
    lines = [title, "", *table_lines(measurements), "", *check_lines]
    print("\n" + "\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(
            {"params": params, "measurements": [
                {k: v for k, v in asdict(m).items() if k not in ("stdout", "stderr")} for m in measurements
            ], "checks": check_lines, "ok": ok, "targets_met": fast}, indent=2) + "\n")
    if args.record:
        record(BENCH_DIR / "RESULTS.md", title, [*table_lines(measurements), "", *check_lines])
        print(f"\nappended to {BENCH_DIR / 'RESULTS.md'}")
    if not ok:
        return 1
    return 3 if args.strict and not fast else 0


if __name__ == "__main__":
    sys.exit(main())
