"""Keep freed batch memory in the process instead of handing it back to the OS.

A scan allocates and frees the same few tens of megabytes for every batch.
By default glibc returns large blocks to the kernel at once and faults them
in again, zeroed, for the next batch: on a 10M-row scan that is ~200k page
faults and a sixth of the run. Raising the mmap and trim thresholds makes
freed memory reused instead; what is kept is bounded by the largest batch,
not by the dataset.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
KEEP_BELOW_BYTES = 256 << 20
TRIM_ABOVE_BYTES = 1 << 30


def keep_freed_memory() -> bool:
    """Tune glibc malloc for batch-by-batch work; False where it is not glibc."""
    name = ctypes.util.find_library("c")
    if os.name != "posix" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, KEEP_BELOW_BYTES)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_ABOVE_BYTES))


def prefer_reuse_in_arrow() -> None:
    """Ask mimalloc (Arrow's default allocator) not to purge freed pages eagerly.

    Read when Arrow's allocator starts, so it must run before pyarrow is imported;
    an explicit setting in the environment wins.
    """
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
