"""The membership structure: members always found, few false positives, small, spill-safe."""

from __future__ import annotations

import numpy as np
import pytest

from safeset.errors import InputError
from safeset.lineage.membership import (
    MAX_LOAD,
    REMAINDER_BITS,
    MembershipBuilder,
    MembershipIndex,
    bucket_bits,
    membership_keys,
)

SALT = 0x1234_5678_9ABC_DEF0


def _build(tmp_path, keys_by_kind: dict, memory_keys: int = 1 << 24) -> MembershipIndex:
    builder = MembershipBuilder(tmp_path / "spill", SALT, memory_keys=memory_keys)
    for kind, digests in keys_by_kind.items():
        builder.add(membership_keys(kind, digests, SALT), {kind: len(digests)})
    out = tmp_path / "members"
    out.mkdir(parents=True)
    builder.write(out)
    return MembershipIndex.open(out)


def _digests(rng, n: int, size: int = 32) -> np.ndarray:
    return rng.integers(0, 256, (n, size), dtype=np.uint8)


@pytest.mark.parametrize("n", [0, 1, 7, 9, 1000, 50_000])
def test_every_member_is_found(tmp_path, n):
    rng = np.random.default_rng(n)
    urls, images = _digests(rng, n), _digests(rng, n, 16)
    index = _build(tmp_path, {"url_sha256": urls, "image_md5": images})
    assert index.contains("url_sha256", urls).all()
    assert index.contains("image_md5", images).all()
    assert index.header["entries"] == 2 * n


def test_false_positive_rate_is_within_the_bound(tmp_path):
    rng = np.random.default_rng(1)
    index = _build(tmp_path, {"url_sha256": _digests(rng, 200_000)})
    bound = index.header["false_positive_rate_bound"]
    assert bound <= MAX_LOAD / 2**REMAINDER_BITS <= 1e-6
    queries = 1_000_000
    false_positives = int(index.contains("url_sha256", _digests(rng, queries)).sum())
    # expected bound * queries ~ 0.5; a generous margin keeps the test deterministic-safe
    assert false_positives <= 10


def test_kinds_do_not_collide(tmp_path):
    rng = np.random.default_rng(2)
    digests = _digests(rng, 5000)
    index = _build(tmp_path, {"url_sha256": digests})
    assert not index.contains("image_sha256", digests).any()


def test_size_is_at_most_seven_bytes_per_row_with_two_digests(tmp_path):
    rng = np.random.default_rng(3)
    rows = 100_000
    index = _build(tmp_path, {"url_sha256": _digests(rng, rows), "image_sha256": _digests(rng, rows)})
    assert index.header["bytes"] / rows <= 7.1


def test_spilled_build_equals_in_memory_build(tmp_path):
    rng = np.random.default_rng(4)
    digests = _digests(rng, 20_000)
    duplicates = np.concatenate([digests, digests[:3000]])
    in_memory = _build(tmp_path / "a", {"url_sha256": duplicates})
    spilled = _build(tmp_path / "b", {"url_sha256": duplicates}, memory_keys=4096)
    assert (tmp_path / "b" / "spill").exists() is False  # spill files are removed
    for name in ("remainders", "starts_hi", "starts_lo"):
        assert np.array_equal(np.asarray(getattr(in_memory, name)), np.asarray(getattr(spilled, name)))
    assert spilled.header["entries"] == 20_000
    assert spilled.contains("url_sha256", digests).all()


def test_bucket_bits_keep_the_load_at_most_eight():
    assert bucket_bits(0) == 0
    assert bucket_bits(8) == 0
    assert bucket_bits(9) == 1
    for n in (10, 1000, 123_456, 6_000_000_000 * 2):
        q = bucket_bits(n)
        assert n / 2**q <= MAX_LOAD < n / 2 ** (q - 1)


def test_unreadable_structure_is_a_clear_error(tmp_path):
    (tmp_path / "members.json").write_text("{not json")
    with pytest.raises(InputError, match="unreadable"):
        MembershipIndex.open(tmp_path)
