"""DigestIndex: exact lookups checked against a plain Python dict on random data."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from safeset import _native
from safeset.banks.digest_index import (
    MIN_BITMAP_BITS_LOG2,
    DigestIndex,
    bitmap_bits_log2,
    filter_words_and_masks,
    key_prefixes,
)


def expected_matches(keys: np.ndarray, ids: np.ndarray, queries: np.ndarray, valid=None) -> list[tuple[int, int]]:
    by_key: dict[bytes, list[int]] = defaultdict(list)
    for key, entry_id in zip(keys, ids):
        by_key[key.tobytes()].append(int(entry_id))
    pairs = []
    for row, query in enumerate(queries):
        if valid is None or valid[row]:
            pairs += [(row, entry_id) for entry_id in sorted(by_key.get(query.tobytes(), []))]
    return pairs


def actual_matches(index: DigestIndex, queries: np.ndarray, valid=None) -> list[tuple[int, int]]:
    rows, ids = index.lookup(queries, valid)
    assert rows.dtype == np.int64 and ids.dtype == np.int64
    assert np.all(np.diff(rows) >= 0), "rows must come back ascending"
    return sorted(zip(rows.tolist(), ids.tolist()))


def random_case(rng, n: int, m: int, width: int, shared_prefixes: bool):
    keys = rng.integers(0, 256, (n, width), dtype=np.uint8)
    if shared_prefixes and n >= 8:
        # Groups of keys that agree on their first 8 bytes (and a few exact duplicates).
        keys[: n // 4, :8] = keys[0, :8]
        keys[n // 4 : n // 2, :8] = keys[n // 4, :8]
        keys[-3:] = keys[-4]
    ids = rng.permutation(np.arange(1000, 1000 + n, dtype=np.int64))
    queries = rng.integers(0, 256, (m, width), dtype=np.uint8)
    if n:
        hits = rng.choice(m, size=m // 3, replace=False)
        queries[hits] = keys[rng.integers(0, n, len(hits))]
        near = rng.choice(m, size=m // 5, replace=False)
        queries[near, :8] = keys[rng.integers(0, n, len(near)), :8]  # same prefix, different tail
    return keys, ids, queries


@pytest.mark.parametrize("width", [16, 20, 32])
@pytest.mark.parametrize("shared_prefixes", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_lookup_matches_python_dict(tmp_path, width, shared_prefixes, seed):
    rng = np.random.default_rng(seed)
    keys, ids, queries = random_case(rng, n=3000, m=4000, width=width, shared_prefixes=shared_prefixes)
    index = DigestIndex.build(keys, ids, tmp_path, "bank")
    assert actual_matches(index, queries) == expected_matches(keys, ids, queries)
    reloaded = DigestIndex.load(tmp_path, "bank")
    assert actual_matches(reloaded, queries) == expected_matches(keys, ids, queries)


def test_duplicate_keys_return_every_entry(tmp_path):
    keys = np.array([[7] * 16, [7] * 16, [9] * 16], dtype=np.uint8)
    index = DigestIndex.build(keys, np.array([30, 10, 20]), tmp_path, "dups")
    rows, ids = index.lookup(np.array([[9] * 16, [7] * 16], dtype=np.uint8))
    assert rows.tolist() == [0, 1, 1] and ids.tolist() == [20, 10, 30]


def test_valid_mask_excludes_rows(tmp_path):
    rng = np.random.default_rng(3)
    keys, ids, queries = random_case(rng, n=500, m=600, width=16, shared_prefixes=True)
    valid = rng.random(len(queries)) > 0.5
    index = DigestIndex.build(keys, ids, tmp_path, "v")
    assert actual_matches(index, queries, valid) == expected_matches(keys, ids, queries, valid)
    with pytest.raises(ValueError):
        index.lookup(queries, valid[:-1])


def test_empty_index_and_empty_queries(tmp_path):
    index = DigestIndex.build(np.empty((0, 16), np.uint8), np.empty(0, np.int64), tmp_path, "empty")
    assert len(index) == 0
    rows, ids = index.lookup(np.ones((5, 16), np.uint8))
    assert rows.size == 0 and ids.size == 0
    full = DigestIndex.build(np.ones((2, 16), np.uint8), np.array([1, 2]), tmp_path, "full")
    rows, ids = full.lookup(np.empty((0, 16), np.uint8))
    assert rows.size == 0 and ids.size == 0
    assert len(DigestIndex.empty(20)) == 0 and DigestIndex.empty(20).lookup(np.ones((1, 20), np.uint8))[0].size == 0


def test_files_are_sorted_and_filter_is_sized_per_entry(tmp_path):
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 256, (5000, 16), dtype=np.uint8)
    keys[:100, :8] = 0x42  # ties on the prefix must still be ordered by the full key
    index = DigestIndex.build(keys, np.arange(5000), tmp_path, "s")
    as_bytes = [row.tobytes() for row in index.keys]
    assert as_bytes == sorted(as_bytes)
    assert np.array_equal(index.prefixes, key_prefixes(np.asarray(index.keys)))
    assert index.prefilter_kind == "filter" and len(index.prefilter) * 64 >= 32 * 5000
    assert index.bits_log2 == bitmap_bits_log2(5000) == 18
    assert bitmap_bits_log2(0) == MIN_BITMAP_BITS_LOG2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "s.filter.npy", "s.ids.npy", "s.keys.npy", "s.prefix.npy",
    ]


def test_filter_sets_the_documented_bits_and_lets_few_misses_through(tmp_path):
    rng = np.random.default_rng(8)
    keys = rng.integers(0, 256, (200_000, 16), dtype=np.uint8)
    index = DigestIndex.build(keys, np.arange(len(keys)), tmp_path, "f")
    prefixes = key_prefixes(keys)
    word_bits = index.bits_log2 - 6
    words, masks = filter_words_and_masks(prefixes, word_bits)
    assert np.array_equal(words, prefixes >> np.uint64(64 - word_bits))
    assert np.all(index.prefilter[words] & masks == masks)  # every key passes its own test
    misses = rng.integers(0, 256, (200_000, 16), dtype=np.uint8)
    passed = np.frombuffer(_native.filter_candidates(misses, 16, index.prefilter, word_bits, None), np.int64)
    miss_words, miss_masks = filter_words_and_masks(key_prefixes(misses), word_bits)
    assert np.array_equal(passed, np.flatnonzero(index.prefilter[miss_words] & miss_masks == miss_masks))
    assert len(passed) < 0.004 * len(misses)  # the bitmap let ~1 in 32 through; the filter ~1 in 700
    assert index.lookup(misses)[0].size == 0 and np.array_equal(index.lookup(keys[:50])[0], np.arange(50))


def test_indexes_with_the_older_bitmap_are_still_read(tmp_path):
    """Stores built before the Bloom filter have a bitmap over the prefixes' top bits instead."""
    rng = np.random.default_rng(9)
    keys = rng.integers(0, 256, (3000, 16), dtype=np.uint8)
    DigestIndex.build(keys, np.arange(3000), tmp_path, "old")
    (tmp_path / "old.filter.npy").unlink()
    bits_log2 = bitmap_bits_log2(3000)
    slots = key_prefixes(keys) >> np.uint64(64 - bits_log2)
    bitmap = np.zeros((1 << bits_log2) // 64, dtype=np.uint64)
    np.bitwise_or.at(bitmap, slots >> np.uint64(6), np.left_shift(np.uint64(1), slots & np.uint64(63)))
    np.save(tmp_path / "old.bitmap.npy", bitmap)
    index = DigestIndex.load(tmp_path, "old")
    assert index.prefilter_kind == "bitmap"
    rows, ids = index.lookup(np.concatenate([keys[::7], rng.integers(0, 256, (500, 16), dtype=np.uint8)]))
    assert rows.tolist() == list(range(len(keys[::7]))) and ids.tolist() == list(range(0, 3000, 7))


def test_loaded_index_is_memory_mapped(tmp_path):
    DigestIndex.build(np.full((3, 16), 5, np.uint8), np.arange(3), tmp_path, "m")
    index = DigestIndex.load(tmp_path, "m")
    assert isinstance(index.keys.base, np.memmap) or isinstance(index.keys, np.memmap)


def test_prefix_orders_like_bytes():
    keys = np.array([[0] * 7 + [1] + [0] * 8, [1] + [0] * 15, [0] * 16], dtype=np.uint8)
    assert key_prefixes(keys).tolist() == [1, 1 << 56, 0]
    short = np.array([[1, 2]], dtype=np.uint8)
    assert key_prefixes(short).tolist() == [(1 << 56) | (2 << 48)]


def test_wrong_query_width_and_bad_inputs(tmp_path):
    index = DigestIndex.build(np.ones((2, 16), np.uint8), np.array([1, 2]), tmp_path, "w")
    with pytest.raises(ValueError):
        index.lookup(np.ones((2, 20), np.uint8))
    with pytest.raises(ValueError):
        DigestIndex.build(np.ones((2, 16), np.uint8), np.array([1]), tmp_path, "bad")


def test_missing_index_file_is_an_input_error(tmp_path):
    from safeset.errors import InputError

    DigestIndex.build(np.ones((2, 16), np.uint8), np.array([1, 2]), tmp_path, "gone")
    (tmp_path / "gone.prefix.npy").unlink()
    with pytest.raises(InputError):
        DigestIndex.load(tmp_path, "gone")


def test_native_bitmap_prefilter_matches_the_numpy_formula():
    from safeset import _native

    rng = np.random.default_rng(7)
    bits_log2 = 16
    bitmap = rng.integers(0, 2**63, size=(1 << bits_log2) // 64, dtype=np.uint64)
    queries = rng.integers(0, 256, size=(5000, 16), dtype=np.uint8)
    valid = rng.random(5000) < 0.9
    shift = 64 - bits_log2
    prefixes = queries[:, :8].copy().view(">u8").ravel().astype(np.uint64)
    slots = prefixes >> np.uint64(shift)
    expected = np.flatnonzero(((bitmap[slots >> np.uint64(6)] >> (slots & np.uint64(63))) & np.uint64(1)).astype(bool) & valid)
    got = np.frombuffer(_native.bitmap_candidates(queries, 16, bitmap, shift, valid), dtype=np.int64)
    assert np.array_equal(got, expected) and 0 < len(got) < len(queries)
    with pytest.raises(ValueError):
        _native.bitmap_candidates(queries, 16, bitmap[:10], shift, None)
    with pytest.raises(ValueError):
        _native.bitmap_candidates(queries, 16, bitmap, shift, valid[:10])
