"""PDQ index benchmark: safeset's PDQIndex vs python-threatexchange's, side by side.

    .venv/bin/python bench/pdq_index.py                  # 10M-hash banks (the issue's targets)
    .venv/bin/python bench/pdq_index.py --bank 1000000   # development size
    .venv/bin/python bench/pdq_index.py --skip-threatexchange

For each bank kind (``uniform``: random hashes; ``clustered``: base hashes with
near copies, 0-20 bits flipped, and exact duplicates, like transformed copies
of the same images) it measures, for safeset's index: build time,
batched queries per second at threshold 31 (half the queries near bank
hashes, half random), recall against a numpy brute force on a sample of
queries (at 0, 31 and 64), adding 100k hashes without a rebuild, save and
load, and bytes per hash (everything the index holds: hash blocks, tables,
tombstones; also split into blocks and tables).
Then, on the clustered bank, python-threatexchange's ``PDQIndex`` (FAISS
``IndexBinaryMultiHash``, one query per call as its API takes them) and the
FAISS index it wraps called directly with the whole batch, and the ratios.

Targets (issue 3, 10M bank, 2 cores): >= 10,000 queries/s, >= 20x
threatexchange, <= 64 bytes/hash, add 100k < 5 s, load < 3 s, recall 100%.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))

from safeset.pdq.index import PDQIndex  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def flip_bits(rng, rows: np.ndarray, max_flips: int) -> np.ndarray:
    """Flip 0..max_flips distinct-ish random bits in each row (vectorised, in place)."""
    counts = rng.integers(0, max_flips + 1, len(rows))
    index = np.arange(len(rows))
    for step in range(max_flips):
        active = index[counts > step]
        bits = rng.integers(0, 256, len(active))
        rows[active, bits // 8] ^= (1 << (bits % 8)).astype(np.uint8)
    return rows


def make_bank(kind: str, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "uniform":
        return rng.integers(0, 256, (size, 32), dtype=np.uint8)
    bases = rng.integers(0, 256, (max(1, size // 10), 32), dtype=np.uint8)
    bank = np.empty((size, 32), dtype=np.uint8)
    step = 1_000_000
    for start in range(0, size, step):
        rows = bases[rng.integers(0, len(bases), min(step, size - start))].copy()
        duplicates = rng.random(len(rows)) < 0.1  # 10% exact copies, the rest near copies
        rows[~duplicates] = flip_bits(rng, rows[~duplicates], 20)
        bank[start : start + len(rows)] = rows
    bank[: len(bases)] = bases
    return bank


def make_queries(bank: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    near = flip_bits(rng, bank[rng.integers(0, len(bank), count // 2)].copy(), 30)
    return np.concatenate([near, rng.integers(0, 256, (count - count // 2, 32), dtype=np.uint8)])


def brute_force(bank: np.ndarray, query: np.ndarray, threshold: int) -> list[tuple[int, int]]:
    hits = []
    for start in range(0, len(bank), 1_000_000):
        block = bank[start : start + 1_000_000]
        xor = block ^ query
        if hasattr(np, "bitwise_count"):
            distances = np.bitwise_count(xor).sum(axis=1, dtype=np.int32)
        else:  # numpy < 2
            distances = np.unpackbits(xor, axis=1).sum(axis=1, dtype=np.int32)
        for i in np.flatnonzero(distances <= threshold):
            hits.append((start + int(i), int(distances[i])))
    return sorted(hits, key=lambda hit: (hit[1], hit[0]))


def timed(function, *args, **kwargs):
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - start


def bench_safeset(kind: str, bank: np.ndarray, queries: np.ndarray, args) -> tuple[dict, PDQIndex]:
    out: dict = {"bank": kind, "hashes": len(bank)}
    rss0 = rss_mb()
    index = PDQIndex(threads=args.threads, tables=args.tables)
    _, out["build_s"] = timed(index.add, bank)
    out["bytes_per_hash"] = index.nbytes / len(bank)
    out["rss_delta_mb"] = rss_mb() - rss0
    out["layout"] = [(s.m, s.k, s.tables[0].low_bits if s.tables else None) for s in index._segments]
    out["bytes_per_hash_blocks"] = sum(s.blocks.nbytes for s in index._segments) / len(bank)
    out["bytes_per_hash_tables"] = sum(t.nbytes for s in index._segments for t in s.tables) / len(bank)
    index.search_arrays(queries[:200], 31)  # warm up
    best = None
    for _ in range(args.repeat):
        (_, ids, _), seconds = timed(index.search_arrays, queries, 31)
        best = seconds if best is None else min(best, seconds)
    out["queries"] = len(queries)
    out["hits_31"] = len(ids)
    out["qps_31"] = len(queries) / best
    # Hit counts on the query subsets the references answer, to check they agree.
    out["hits_31_first_tx_queries"] = len(index.search_arrays(queries[: args.tx_queries], 31)[1])
    out["hits_31_first_faiss_queries"] = len(index.search_arrays(queries[: args.faiss_queries], 31)[1])
    # Recall: every sampled query's hits equal the brute force's, at 0, 31 and 64.
    sample = queries[np.linspace(0, len(queries) - 1, args.recall_queries).astype(int)]
    checked = missing = extra = 0
    for threshold in (0, 31, 64):
        got, seconds = timed(index.search, sample, threshold)
        if threshold == 64:
            out["qps_64"] = len(sample) / seconds
        for query, hits in zip(sample, got):
            expected = brute_force(bank, query, threshold)
            checked += len(expected)
            missing += len(set(expected) - set(hits))
            extra += len(set(hits) - set(expected))
    out["recall_pairs_checked"] = checked
    out["recall"] = 1.0 if checked == 0 else (checked - missing) / checked
    out["false_hits"] = extra
    # Add 100k without a rebuild.
    extra_hashes = make_bank(kind, args.add, seed=99)
    segments_before = len(index.segment_sizes)
    _, out["add_100k_s"] = timed(index.add, extra_hashes)
    out["segments_after_add"] = index.segment_sizes
    out["bytes_per_hash_after_add"] = index.nbytes / len(index)
    out["add_rebuilt"] = len(index.segment_sizes) <= segments_before
    (_, ids, _), seconds = timed(index.search_arrays, queries, 31)
    out["qps_31_after_add"] = len(queries) / seconds
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        path = os.path.join(tmp, "bank.pdqi")
        _, out["save_s"] = timed(index.save, path)
        out["file_mb"] = os.path.getsize(path) / 2**20
        loaded, out["load_s"] = timed(PDQIndex.load, path, threads=args.threads)
        assert len(loaded) == len(index)
        del loaded
    return out, index


def bench_threatexchange(bank: np.ndarray, queries: np.ndarray, args) -> dict:
    try:
        import faiss
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex as TXPDQIndex
    except ImportError as error:
        return {"error": f"not installed: {error}"}
    out: dict = {"hashes": len(bank)}
    faiss.omp_set_num_threads(args.threads)
    hex_bank = [row.tobytes().hex() for row in bank]
    rss0 = rss_mb()
    tx_index, out["build_s"] = timed(TXPDQIndex, ((h, i) for i, h in enumerate(hex_bank)))
    out["rss_delta_mb"] = rss_mb() - rss0
    del hex_bank
    gc.collect()
    hex_queries = [row.tobytes().hex() for row in queries[: args.tx_queries]]
    # One query per call: OpenMP threads do not help it and spin on a busy
    # machine, so time it with 1 thread and with all, and keep the faster.
    for threads in sorted({1, args.threads}):
        faiss.omp_set_num_threads(threads)
        tx_index.query(hex_queries[0])
        results, seconds = timed(lambda: [tx_index.query(h) for h in hex_queries])
        out[f"qps_31_omp{threads}"] = len(hex_queries) / seconds
    out["queries"] = len(hex_queries)
    out["qps_31"] = max(out[f"qps_31_omp{threads}"] for threads in {1, args.threads})
    out["hits_31"] = sum(len(r) for r in results)
    # The FAISS index it wraps, given the whole batch at once (OpenMP threads).
    faiss.omp_set_num_threads(args.threads)
    mih = tx_index.index.mih_index
    mih.nflip = 31 // mih.nhash
    batch = np.ascontiguousarray(queries[: args.faiss_queries])
    (limits, _, _), seconds = timed(tx_index.index.faiss_index.range_search, batch, 32)
    out["faiss_batch_queries"] = len(batch)
    out["faiss_batch_qps_31"] = len(batch) / seconds
    out["faiss_batch_hits_31"] = int(limits[-1])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bank", type=int, default=10_000_000, help="hashes in each bank")
    parser.add_argument("--queries", type=int, default=20_000)
    parser.add_argument("--kinds", default="uniform,clustered")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tables", type=int, default=None, help="fix the number of tables (default: fastest)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--recall-queries", type=int, default=24)
    parser.add_argument("--add", type=int, default=100_000)
    parser.add_argument("--tx-queries", type=int, default=300, help="queries timed on threatexchange's PDQIndex")
    parser.add_argument("--faiss-queries", type=int, default=2000)
    parser.add_argument("--skip-threatexchange", action="store_true")
    parser.add_argument("--tmp", default=None, help="directory for the saved index")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    report: dict = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "args": vars(args),
        "safeset": [],
    }
    print(f"PDQ index bench: {args.bank:,} hashes, {args.queries:,} queries, {args.threads} threads")
    clustered_bank = clustered_queries = None
    for kind in args.kinds.split(","):
        bank, seconds = timed(make_bank, kind, args.bank, 1)
        queries = make_queries(bank, args.queries, 2)
        print(f"\n[{kind}] generated in {seconds:.1f}s")
        result, index = bench_safeset(kind, bank, queries, args)
        report["safeset"].append(result)
        for key, value in result.items():
            print(f"  {key:22s} {value:,.3f}" if isinstance(value, float) else f"  {key:22s} {value}")
        del index
        gc.collect()
        if kind == "clustered":
            clustered_bank, clustered_queries = bank, queries
    if not args.skip_threatexchange and clustered_bank is not None:
        print("\n[threatexchange PDQIndex on the clustered bank]")
        tx = bench_threatexchange(clustered_bank, clustered_queries, args)
        report["threatexchange"] = tx
        for key, value in tx.items():
            print(f"  {key:22s} {value:,.3f}" if isinstance(value, float) else f"  {key:22s} {value}")
        ours = next(r for r in report["safeset"] if r["bank"] == "clustered")
        if "qps_31" in tx:
            report["ratio_vs_threatexchange"] = ours["qps_31"] / tx["qps_31"]
            report["ratio_vs_faiss_batch"] = ours["qps_31"] / tx["faiss_batch_qps_31"]
            print(f"\n  speed ratio vs threatexchange PDQIndex (per-query API): {report['ratio_vs_threatexchange']:,.1f}x")
            print(f"  speed ratio vs its FAISS index, batched:                {report['ratio_vs_faiss_batch']:,.1f}x")
            report["same_hit_counts"] = (
                tx["hits_31"] == ours["hits_31_first_tx_queries"]
                and tx["faiss_batch_hits_31"] == ours["hits_31_first_faiss_queries"]
            )
            print(f"  same hit counts as threatexchange and FAISS:            {report['same_hit_counts']}")
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if args.json:
        with open(args.json, "w") as out:
            json.dump(report, out, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
