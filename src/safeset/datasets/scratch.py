"""Scratch buffers a worker reuses from shard to shard.

Reading a shard needs a few buffers of megabytes: a column chunk, a page, a
window of the file. Fresh ones cost page faults and zero-filling for every
shard. These are kept per thread, left uninitialised, taken from numpy (which
asks the kernel for huge pages for large arrays), and replaced by a larger one
when needed. A buffer is only valid until the next request for the same name
in the same thread: callers use it within one call and keep nothing in it.
"""

from __future__ import annotations

import threading

import numpy as np

MIN_BYTES = 1 << 20
_local = threading.local()


def scratch(name: str, size: int) -> memoryview:
    """A writable buffer of `size` bytes for `name` (contents undefined)."""
    buffers = getattr(_local, "buffers", None)
    if buffers is None:
        buffers = _local.buffers = {}
    buffer = buffers.get(name)
    if buffer is None or len(buffer) < size:
        buffer = buffers[name] = np.empty(max(size, MIN_BYTES), dtype=np.uint8)
    return memoryview(buffer)[:size]
