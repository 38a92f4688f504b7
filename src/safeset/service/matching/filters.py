"""What keeps a bank hit from being a match: curator settings and reviewers' false positives.

Applied to a lookup's hits only (misses cost nothing here):
- content a curator disabled (`disable_until_ts` in the future) does not match;
- a bank matches a lookup with probability `matching_enabled_ratio`, decided
  by one coin flip per lookup, seeded by the client's `seed` when given (HMA's
  rule, so a client gets the same answer for the same seed);
- a hit whose (signal type, value) a reviewer marked a false positive (the
  negative bank, `safeset.review.negative`) is suppressed.
"""

from __future__ import annotations

import logging
import random
from typing import Callable

log = logging.getLogger("safeset.service.index")


def negative_values(store):
    """The review part's negative-bank membership test, or None when that part is absent."""
    try:
        from safeset.review.negative import NegativeValues
    except ImportError:
        return None
    return NegativeValues(store)


class HitFilters:
    """Curator settings (`settings()` -> a snapshot with `is_disabled` / `enabled_ratio`) and negatives."""

    def __init__(self, settings: Callable[[], object] | None = None, negative=None):
        self._settings = settings
        self._negative = negative

    def apply(self, hits: list, seed: str | None = None) -> list:
        if not hits:
            return hits
        if self._settings is not None:
            snapshot = self._settings()
            coin = random.Random(seed).random() if seed is not None else random.random()
            hits = [
                hit for hit in hits
                if _bank_on(snapshot.enabled_ratio(hit.bank), coin) and not snapshot.is_disabled(hit.bank, hit.entry_id)
            ]
        if self._negative is not None and hits:
            hits = [hit for hit in hits if not self._negative.suppresses(hit.signal_type, hit.value)]
        return hits


def _bank_on(ratio: float, coin: float) -> bool:
    """A ratio of 1 always matches, 0 never; in between, when the coin (in [0, 1)) falls below it."""
    return ratio >= 1.0 or ratio > coin
