"""A checksum taken while reading equals the checksum of a separate pass, however the file was read."""

from __future__ import annotations

import os
import random

import pytest

from safeset.datasets import hashed_file
from safeset.datasets.hashed_file import HashedFile, file_checksum


@pytest.fixture
def sample(tmp_path, monkeypatch):
    monkeypatch.setattr(hashed_file, "WINDOW_BYTES", 1000)  # many windows, and ranges across them
    path = tmp_path / "f.bin"
    path.write_bytes(random.Random(1).randbytes(10_000))
    return path


def read(hashed: HashedFile, start: int, size: int) -> bytes:
    buffer = bytearray(size)
    got = hashed.read_into(memoryview(buffer), start)
    return bytes(buffer[:got])


@pytest.mark.parametrize("ranges", [[], [(0, 10_000)], [(5, 100), (2500, 3000), (9990, 100)], [(0, 1), (1, 1), (2, 5000)]])
def test_ranges_in_order_give_the_whole_file_checksum(sample, ranges):
    data = sample.read_bytes()
    hashed = HashedFile(sample)
    for start, size in ranges:
        assert read(hashed, start, size) == data[start : start + size]
    assert hashed.checksum() == file_checksum(sample)
    hashed.close()


def test_out_of_order_ranges_still_give_the_right_bytes_and_checksum(sample):
    data = sample.read_bytes()
    hashed = HashedFile(sample)
    assert read(hashed, 5000, 10) == data[5000:5010]
    assert read(hashed, 100, 10) == data[100:110]  # behind the hashed position
    assert read(hashed, 7000, 10) == data[7000:7010]
    assert hashed.checksum() == file_checksum(sample)
    hashed.close()


def test_a_file_that_changes_size_is_hashed_as_read(sample):
    hashed = HashedFile(sample)
    read(hashed, 0, 100)
    with open(sample, "ab") as handle:
        handle.write(b"more")
    assert hashed.checksum() == file_checksum(sample)
    hashed.close()
    hashed = HashedFile(sample)
    os.truncate(sample, 50)
    assert read(hashed, 100, 10) == b""  # past the end now
    assert hashed.checksum() == file_checksum(sample)
    hashed.close()


def test_empty_file(tmp_path):
    path = tmp_path / "empty"
    path.write_bytes(b"")
    hashed = HashedFile(path)
    assert hashed.checksum() == file_checksum(path)
    hashed.close()
