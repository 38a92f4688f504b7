"""PDQIndex returns exactly what a brute-force scan returns, on clustered data too."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from safeset.errors import InputError
from safeset.pdq import PDQIndex
from safeset.pdq.index import PDQInputError, choose_layout

THRESHOLDS = [0, 1, 15, 31, 32, 48, 64]
_POPCOUNT = np.array([bin(byte).count("1") for byte in range(256)], dtype=np.uint8)


def clustered_bank(rng, bases: int, copies: int, max_flips: int = 20) -> np.ndarray:
    """Random base hashes, each with near copies (0..max_flips bits flipped) and
    exact duplicates, shuffled: what transformed copies of the same images give."""
    base = rng.integers(0, 256, (bases, 32), dtype=np.uint8)
    rows = [base]
    for _ in range(copies):
        copy = base.copy()
        for row in copy:
            flips = rng.choice(256, size=rng.integers(0, max_flips + 1), replace=False)
            for bit in flips:
                row[bit // 8] ^= np.uint8(1 << (bit % 8))
        rows.append(copy)
    rows.append(base[: bases // 4])  # exact duplicates
    bank = np.concatenate(rows)
    return bank[rng.permutation(len(bank))]


def near_queries(rng, bank: np.ndarray, count: int, max_flips: int = 40) -> np.ndarray:
    queries = bank[rng.integers(0, len(bank), count)].copy()
    for row in queries:
        for bit in rng.choice(256, size=rng.integers(0, max_flips + 1), replace=False):
            row[bit // 8] ^= np.uint8(1 << (bit % 8))
    return np.concatenate([queries, rng.integers(0, 256, (count // 4, 32), dtype=np.uint8)])


def brute_force(bank: np.ndarray, queries: np.ndarray, threshold: int, removed=()) -> list[list[tuple[int, int]]]:
    removed = set(int(i) for i in removed)
    distances = np.stack([_POPCOUNT[bank ^ query].sum(axis=1, dtype=np.int32) for query in queries])
    out = []
    for row in distances:
        ids = [int(i) for i in np.flatnonzero(row <= threshold) if int(i) not in removed]
        out.append(sorted(((i, int(row[i])) for i in ids), key=lambda hit: (hit[1], hit[0])))
    return out


def to_hex(hashes: np.ndarray) -> list[str]:
    return [row.tobytes().hex() for row in hashes]


@pytest.fixture(scope="module")
def bank():
    return clustered_bank(np.random.default_rng(7), bases=2500, copies=7)  # 20,625 hashes


def test_large_segments_use_tables_and_small_ones_scan(bank):
    index = PDQIndex()
    index.add(bank)
    assert index._segments[0].m > 1  # the multi-index path is what the other tests check
    assert choose_layout(100) is None  # tiny banks: a flat scan is cheaper
    assert choose_layout(10_000_000) == (11, 23)


@pytest.mark.parametrize("threshold", THRESHOLDS)
def test_matches_brute_force_on_clustered_bank(bank, threshold):
    rng = np.random.default_rng(threshold)
    index = PDQIndex()
    index.add(bank)
    queries = near_queries(rng, bank, 60)
    assert index.search(queries, threshold) == brute_force(bank, queries, threshold)


@pytest.mark.parametrize("threshold", [0, 31, 64])
def test_matches_brute_force_on_uniform_bank_in_segments(threshold):
    rng = np.random.default_rng(100 + threshold)
    sizes = [9001, 2001, 499, 124, 31, 7, 1]  # each under a quarter of the one before: kept apart
    bank = rng.integers(0, 256, (sum(sizes), 32), dtype=np.uint8)
    index = PDQIndex(threads=3)
    ids = [index.add(bank[start - size : start]) for size, start in zip(sizes, np.cumsum(sizes))]
    assert np.array_equal(np.concatenate(ids), np.arange(len(bank)))
    assert index.segment_sizes == sizes  # odd id starts, probed and scanned segments
    queries = near_queries(rng, bank, 50)
    assert index.search(queries, threshold) == brute_force(bank, queries, threshold)


def test_removed_ids_are_not_returned_and_len_counts_live_hashes(bank):
    rng = np.random.default_rng(3)
    index = PDQIndex()
    index.add(bank)
    removed = rng.choice(len(bank), 500, replace=False)
    assert index.remove(removed) == 500
    assert index.remove(removed[:10]) == 0  # already gone
    assert len(index) == len(bank) - 500
    queries = np.concatenate([bank[removed[:40]], near_queries(rng, bank, 40)])
    assert index.search(queries, 31) == brute_force(bank, queries, 31, removed)
    index.optimize()  # rebuild drops them from the tables; answers stay the same
    assert index.search(queries, 31) == brute_force(bank, queries, 31, removed)


def test_remove_rejects_unknown_ids():
    index = PDQIndex()
    index.add(np.zeros((3, 32), dtype=np.uint8))
    with pytest.raises(ValueError, match="item 1.*id 3"):
        index.remove([0, 3])
    with pytest.raises(ValueError, match="id -1"):
        index.remove([-1])
    assert len(index) == 3


def test_save_load_roundtrip_then_add_and_remove(tmp_path, bank):
    rng = np.random.default_rng(5)
    index = PDQIndex()
    index.add(bank[:15_000])
    index.remove([1, 2, 3])
    path = tmp_path / "bank.pdqi"
    index.save(path)
    assert not [p for p in tmp_path.iterdir() if p.name != "bank.pdqi"]  # no temporary left
    queries = near_queries(rng, bank, 40)
    for loaded in (PDQIndex.load(path), PDQIndex.load(path, mmap=True)):
        assert len(loaded) == len(index)
        assert loaded.search(queries, 31) == index.search(queries, 31)
        assert list(loaded.add(bank[15_000:])) == list(range(15_000, len(bank)))
        loaded.remove([15_000])
        assert loaded.search(queries, 31) == brute_force(bank, queries, 31, removed=[1, 2, 3, 15_000])


def test_load_rejects_other_files(tmp_path):
    path = tmp_path / "not-an-index"
    path.write_bytes(b"hello")
    with pytest.raises(InputError, match="not a safeset PDQ index"):
        PDQIndex.load(path)
    index = PDQIndex()
    index.add(np.random.default_rng(1).integers(0, 256, (5000, 32), dtype=np.uint8))
    index.save(path)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(InputError, match="truncated"):
        PDQIndex.load(path)


def test_empty_index_and_empty_queries():
    index = PDQIndex()
    assert len(index) == 0
    assert index.search([to_hex(np.zeros((1, 32), dtype=np.uint8))[0]]) == [[]]
    assert index.add([]).tolist() == []
    index.add(np.ones((2, 32), dtype=np.uint8))
    assert index.search(np.zeros((0, 32), dtype=np.uint8)) == []


def test_hex_and_array_queries_agree(bank):
    index = PDQIndex()
    ids = index.add(to_hex(bank[:6000]))
    assert ids.tolist() == list(range(6000))
    queries = near_queries(np.random.default_rng(9), bank[:6000], 30)
    hex_queries = to_hex(queries)
    hex_queries[0] = hex_queries[0].upper()
    by_hex = index.search(hex_queries, 31)
    assert by_hex == index.search(queries, 31) == brute_force(bank[:6000], queries, 31)
    assert index.search(hex_queries[1], 31) == by_hex[1:2]  # one string is one query
    assert index.search(queries[1], 31) == by_hex[1:2]  # so is one (32,) array


def test_search_arrays_layout(bank):
    index = PDQIndex()
    index.add(bank)
    queries = near_queries(np.random.default_rng(11), bank, 20)
    offsets, ids, distances = index.search_arrays(queries, 31)
    lists = index.search(queries, 31)
    assert offsets[0] == 0 and offsets[-1] == len(ids) == len(distances)
    for i, hits in enumerate(lists):
        assert list(zip(ids[offsets[i] : offsets[i + 1]].tolist(), distances[offsets[i] : offsets[i + 1]].tolist())) == hits


@pytest.mark.parametrize(
    "bad, where",
    [
        (["0" * 64, "0" * 63 + "g"], "item 1, character 63"),
        (["0" * 64, "0" * 10 + "é" + "0" * 53], "item 1, character 10"),
        (["0" * 64, "0" * 10 + " " + "0" * 53], "item 1, character 10"),
        (["0" * 65], "item 0.*64 hex digits"),
        ([b"\0" * 32], "item 0.*hex string"),
    ],
)
def test_invalid_hex_names_the_position(bad, where):
    index = PDQIndex()
    with pytest.raises(ValueError, match=where) as caught:
        index.add(bad)
    assert isinstance(caught.value, PDQInputError) and isinstance(caught.value, InputError)
    assert len(index) == 0
    with pytest.raises(ValueError, match=where):
        index.search(bad)


def test_bad_arrays_and_thresholds():
    index = PDQIndex()
    with pytest.raises(ValueError, match="shape"):
        index.add(np.zeros((2, 31), dtype=np.uint8))
    with pytest.raises(ValueError, match=">= 0"):
        index.search(np.zeros((1, 32), dtype=np.uint8), -1)
    with pytest.raises(ValueError, match="integer"):
        index.search(np.zeros((1, 32), dtype=np.uint8), 3.5)


def test_threshold_above_256_returns_everything():
    rng = np.random.default_rng(2)
    bank = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    index = PDQIndex()
    index.add(bank)
    hits = index.search(bank[:2], 1000)
    assert [len(h) for h in hits] == [300, 300]
    assert hits == brute_force(bank, bank[:2], 256)


@pytest.mark.parametrize("threshold", [7, 15, 31, 32, 48])
def test_finds_hashes_that_only_one_table_can_see(threshold):
    """Worst case for the pigeonhole: every table but one sees one flip more than
    it probes, so the hash (at exactly the threshold) is found by that one only."""
    from safeset.pdq.index import _key_starts

    rng = np.random.default_rng(threshold)
    index = PDQIndex()
    index.add(rng.integers(0, 256, (8000, 32), dtype=np.uint8))
    segment = index._segments[0]
    m, k = segment.m, segment.k
    assert m > 1
    a, b = divmod(threshold, m)
    radius = [a if j <= b else a - 1 for j in range(m)]
    query = rng.integers(0, 256, 32, dtype=np.uint8)
    planted = []
    for seen_by in range(m):
        if radius[seen_by] < 0:  # a table the threshold does not probe
            continue
        target = query.copy()
        for j, start in enumerate(_key_starts(m)):
            flips = radius[j] if j == seen_by else radius[j] + 1
            for bit in rng.choice(k, size=flips, replace=False) + start:
                target[bit // 8] ^= np.uint8(1 << (bit % 8))
        planted.append(target)
    # Hashes are verified four at a time (a block, what table entries name): give
    # each planted hash three random block mates so that it must be found by its own table.
    fillers = rng.integers(0, 256, (len(planted), 3, 32), dtype=np.uint8)
    rows = np.concatenate([np.array(planted)[:, None, :], fillers], axis=1).reshape(-1, 32)
    ids = index.add(rows)[::4].tolist()
    index.optimize()  # all in one probed segment
    assert len(index.segment_sizes) == 1 and ids[0] % 4 == 0
    found = dict(index.search(query, threshold)[0])
    assert {i: found.get(i) for i in ids} == {i: threshold for i in ids}
    assert not set(ids) & set(dict(index.search(query, threshold - 1)[0]))


def test_huge_buckets_of_duplicates():
    """Hundreds of copies of one image make buckets far longer than the 64
    entries of one directory word; the unary directory must walk over them."""
    rng = np.random.default_rng(21)
    one = rng.integers(0, 256, (1, 32), dtype=np.uint8)
    copies = np.repeat(one, 700, axis=0)
    for row in copies[300:]:  # 400 near copies, 1..3 bits apart
        for bit in rng.choice(256, size=rng.integers(1, 4), replace=False):
            row[bit // 8] ^= np.uint8(1 << (bit % 8))
    bank = np.concatenate([rng.integers(0, 256, (9000, 32), dtype=np.uint8), copies])
    bank = bank[rng.permutation(len(bank))]
    index = PDQIndex()
    index.add(bank)
    assert index._segments[0].m > 1
    queries = np.concatenate([one, near_queries(rng, bank, 30)])
    for threshold in (0, 2, 31):
        assert index.search(queries, threshold) == brute_force(bank, queries, threshold)
    assert len(index.search(one, 0)[0]) == 300


@pytest.mark.parametrize("isa", ["plain", "popcnt", ""])
def test_every_instruction_set_path_agrees(isa):
    """The module picks POPCNT, then AVX-512 + BMI2, at run time where the CPU
    has them; SAFESET_PDQ_ISA caps that, so each path (what older CPUs run)
    must give brute force's answers."""
    script = (
        "import numpy as np, json\n"
        "from safeset.pdq import PDQIndex\n"
        "rng = np.random.default_rng(4)\n"
        "bank = rng.integers(0, 256, (9000, 32), dtype=np.uint8)\n"
        "bank[7000:7040] = bank[:40]\n"
        "index = PDQIndex(); index.add(bank)\n"
        "print(json.dumps([index.search(bank[:20], t) for t in (0, 31, 48)]))\n"
    )
    env = dict(os.environ, SAFESET_PDQ_ISA=isa)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    bank = np.random.default_rng(4).integers(0, 256, (9000, 32), dtype=np.uint8)
    bank[7000:7040] = bank[:40]
    expected = [[[list(hit) for hit in hits] for hits in brute_force(bank, bank[:20], t)] for t in (0, 31, 48)]
    assert json.loads(out.stdout) == expected


# ---------------------------------------------------------------- layout (hash blocks, Elias-Fano tables)


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 8, 1001])
def test_blocks_round_trip_and_keep_first_halves_together(count):
    from safeset.pdq.index import blocks_to_rows, rows_to_blocks

    rows = np.random.default_rng(count).integers(0, 256, (count, 32), dtype=np.uint8)
    blocks = rows_to_blocks(rows)
    assert blocks.shape == (-(-count // 4), 128) and (count == 0 or blocks.ctypes.data % 128 == 0)
    assert np.array_equal(blocks_to_rows(blocks, count), rows)
    if count >= 4:
        assert blocks[0, 16:32].tobytes() == rows[1, :16].tobytes()  # hash 1's first half
        assert blocks[0, 64 + 48 :].tobytes() == rows[3, 16:].tobytes()  # hash 3's second half


@pytest.mark.parametrize("kind", ["uniform", "clustered"])
def test_medium_bank_matches_brute_force_at_every_threshold(kind):
    """~60k hashes: 16-bit keys, several values per high part, every probe radius up to 5."""
    rng = np.random.default_rng(31)
    if kind == "uniform":
        bank = rng.integers(0, 256, (60_001, 32), dtype=np.uint8)
    else:
        bank = clustered_bank(rng, bases=6000, copies=8, max_flips=12)
    index = PDQIndex()
    index.add(bank)
    segment = index._segments[0]
    assert len(index.segment_sizes) == 1 and segment.m > 1
    queries = near_queries(rng, bank, 24)
    for threshold in (0, 5, 16, 24, 31, 40, 64):
        assert index.search(queries, threshold) == brute_force(bank, queries, threshold), threshold


def test_memory_is_about_key_bits_per_hash_and_table():
    rng = np.random.default_rng(8)
    count = 200_000
    index = PDQIndex()
    index.add(rng.integers(0, 256, (count, 32), dtype=np.uint8))
    segment = index._segments[0]
    assert segment.blocks.nbytes == count * 32
    for table in segment.tables:
        assert table.nbytes * 8 / count < segment.k + 0.5  # Elias-Fano: ~k bits, not k + log2(count)
    assert index.nbytes == segment.nbytes()  # no tombstone bitmap until something is removed
    index.remove([5])
    assert index.nbytes == segment.nbytes() + count // 8


def test_duplicates_inside_one_block_are_one_table_value():
    one = np.random.default_rng(12).integers(0, 256, (1, 32), dtype=np.uint8)
    bank = np.concatenate([np.repeat(one, 8, axis=0), np.random.default_rng(13).integers(0, 256, (5000, 32), dtype=np.uint8)])
    index = PDQIndex()
    index.add(bank)
    assert all(t.entries == len(bank) - 6 for t in index._segments[0].tables)  # 2 blocks of copies, 1 value each
    assert index.search(one, 0) == [[(i, 0) for i in range(8)]]


# ---------------------------------------------------------------- file formats


def _write_format_1(path, hashes: np.ndarray, removed_ids=()):
    """The first file format (hash rows, pair-index tables), as PDQIndex 1 wrote it:
    only the parts that loading an old file reads (its tables are rebuilt)."""
    removed = np.zeros((len(hashes) + 7) // 8, dtype=np.uint8)
    for i in removed_ids:
        removed[i >> 3] |= 1 << (i & 7)
    arrays = [("removed", removed), ("s0.hashes", hashes)]
    header = {
        "version": 1,
        "total": len(hashes),
        "removed_count": len(removed_ids),
        "tables": None,
        "segments": [{"id_start": 0, "count": len(hashes), "k": 0, "w": 0, "m": 0}],
        "arrays": [],
    }
    offset = 4096
    for name, array in arrays:
        header["arrays"].append([name, array.dtype.str, list(array.shape), offset, array.nbytes, 0])
        offset += array.nbytes + (-array.nbytes % 64)
    text = json.dumps(header).encode()
    with open(path, "wb") as out:
        out.write(b"SAFESET-PDQ-INDEX\n" + len(text).to_bytes(8, "little") + text)
        for (_name, array), entry in zip(arrays, header["arrays"]):
            out.write(b"\0" * (entry[3] - out.tell()))
            out.write(array.tobytes())


def test_format_1_file_still_loads_rebuilt_with_a_warning(tmp_path, bank):
    hashes = bank[:9000]
    path = tmp_path / "old.pdqi"
    _write_format_1(path, hashes, removed_ids=[4, 17])
    with pytest.warns(UserWarning, match="format 1, rebuilt"):
        loaded = PDQIndex.load(path, mmap=True)
    assert len(loaded) == 9000 - 2
    queries = near_queries(np.random.default_rng(2), hashes, 30)
    assert loaded.search(queries, 31) == brute_force(hashes, queries, 31, removed=[4, 17])
    loaded.save(path)  # saved again: the current format, no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert PDQIndex.load(path).search(queries, 31) == loaded.search(queries, 31)


def test_unknown_format_version_and_damaged_tables_are_clear_errors(tmp_path, bank):
    index = PDQIndex()
    index.add(bank[:8000])
    path = tmp_path / "bank.pdqi"
    index.save(path)
    data = path.read_bytes()
    future = tmp_path / "future.pdqi"
    future.write_bytes(data.replace(b'"version": 2', b'"version": 9', 1))
    with pytest.raises(InputError, match="format version 9"):
        PDQIndex.load(future)
    # Damage one table's samples (out of order): caught when loading, not searched wrongly.
    size = int.from_bytes(data[18:26], "little")
    header = json.loads(data[26 : 26 + size])
    name, _dtype, _shape, offset, nbytes = next(a for a in header["arrays"] if a[0] == "s0.t1.samples")
    damaged = bytearray(data)
    damaged[offset + nbytes // 2 : offset + nbytes // 2 + 4] = (2**31).to_bytes(4, "little")
    broken = tmp_path / "broken.pdqi"
    broken.write_bytes(bytes(damaged))
    with pytest.raises(InputError, match="table 1: samples"):
        PDQIndex.load(broken)


def test_save_load_keeps_segments_tombstones_and_answers(tmp_path):
    rng = np.random.default_rng(19)
    sizes = [12_000, 2_500, 40]
    bank = rng.integers(0, 256, (sum(sizes), 32), dtype=np.uint8)
    index = PDQIndex()
    start = 0
    for size in sizes:
        index.add(bank[start : start + size])
        start += size
    assert index.segment_sizes == sizes
    path = tmp_path / "bank.pdqi"
    index.save(path)
    no_tombstones = PDQIndex.load(path)
    assert no_tombstones._removed is None and no_tombstones.nbytes <= index.nbytes
    index.remove([0, 12_001, 14_530])
    index.save(path)
    queries = np.concatenate([bank[[0, 12_001, 14_530, 7]], near_queries(rng, bank, 20)])
    expected = brute_force(bank, queries, 31, removed=[0, 12_001, 14_530])
    for loaded in (PDQIndex.load(path), PDQIndex.load(path, mmap=True)):
        assert loaded.segment_sizes == sizes and len(loaded) == len(bank) - 3
        assert loaded.search(queries, 31) == expected


def test_crowded_keys_that_overflow_the_sub_samples_still_match():
    """Thousands of copies of one image put hundreds of values under one key;
    the int8 sub-samples after it cannot hold the difference (escape), and the
    search walks from the uint32 sample instead."""
    rng = np.random.default_rng(41)
    one = rng.integers(0, 256, (1, 32), dtype=np.uint8)
    bank = np.concatenate([rng.integers(0, 256, (40_000, 32), dtype=np.uint8), np.repeat(one, 3000, axis=0)])
    bank = bank[rng.permutation(len(bank))]
    index = PDQIndex()
    index.add(bank)
    assert any((t.subs == -128).any() for t in index._segments[0].tables)
    queries = np.concatenate([one, near_queries(rng, bank, 30)])
    for threshold in (0, 8, 31):
        assert index.search(queries, threshold) == brute_force(bank, queries, threshold)
    assert len(index.search(one, 0)[0]) == 3000
