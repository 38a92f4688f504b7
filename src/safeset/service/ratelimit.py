"""Per-token rate limits: a token bucket per token, in this process's memory.

Each token may make `rate` requests per second on average and up to
`rate * burst_s` at once. Several service instances each enforce the limit on
their own share of the traffic (documented in docs/service.md).
"""

from __future__ import annotations

import math
import threading
import time


class TokenBuckets:
    """Thread-safe buckets keyed by token id."""

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._buckets: dict[object, tuple[float, float]] = {}  # key -> (tokens, last refill time)
        self._lock = threading.Lock()

    def take(self, key: object, rate: float, burst_s: float) -> float | None:
        """Spend one request; None if allowed, else the seconds to wait before retrying."""
        if rate <= 0:
            return None  # unlimited
        capacity = max(1.0, rate * burst_s)
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate

    @staticmethod
    def retry_after_header(wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))
