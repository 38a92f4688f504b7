"""What every shard writer shares: atomic files and row accounting.

Outputs go to a `<name>.tmp-<pid>` sibling and are renamed when complete, so a
crash never leaves a partial file under the final name. Renaming is enough
against a killed process; against a power cut the job flushes a shard's
outputs to disk (`flush_to_disk`) before it marks the shard done, from the
coordinating process, so workers never wait on the disk. Writers also check that
they received a keep decision for every input row, in order, exactly once:
a row silently skipped would be a row silently dropped (or kept).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def temp_path(final: Path) -> Path:
    """A temporary sibling of `final` (same directory, so the rename is atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.with_name(f"{final.name}.tmp-{os.getpid()}")
    temp.unlink(missing_ok=True)
    return temp


def publish(temp: Path, final: Path) -> Path:
    """Rename the complete `temp` to `final` (atomic within a directory)."""
    os.replace(temp, final)
    return final


def flush_to_disk(paths) -> None:
    """fsync files and then their directories, so renames survive a power cut."""
    directories = set()
    for path in paths:
        _fsync(Path(path), os.O_RDONLY)
        directories.add(Path(path).parent)
    for directory in sorted(directories):
        _fsync(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def discard(temp: Path) -> None:
    temp.unlink(missing_ok=True)


class RowTally:
    """Checks that batches reach a writer contiguous, in shard order, each row once."""

    def __init__(self, shard_path: Path):
        self.shard_path = shard_path
        self.next_position = 0

    def accept(self, positions: np.ndarray, keep: np.ndarray) -> np.ndarray:
        """Validate one batch; returns `keep` as a bool array."""
        keep = np.asarray(keep, dtype=bool)
        count = len(positions)
        if keep.shape != (count,):
            raise ValueError(f"{self.shard_path}: keep mask has {keep.shape} entries for {count} rows")
        if count:
            first = int(positions[0])
            if first != self.next_position or int(positions[-1]) != first + count - 1:
                raise ValueError(
                    f"{self.shard_path}: batches must be written in shard order; expected row "
                    f"{self.next_position}, got rows {first}..{int(positions[-1])}"
                )
        self.next_position += count
        return keep

    def check_complete(self, total_rows: int) -> None:
        if self.next_position != total_rows:
            raise ValueError(
                f"{self.shard_path}: commit after {self.next_position} of {total_rows} rows; "
                "every row needs a keep decision"
            )
