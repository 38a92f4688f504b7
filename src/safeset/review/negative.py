"""The negative bank: values a reviewer marked as false positives.

A false-positive decision adds the item's matched values to the bank
`SAFESET_FALSE_POSITIVES` (a new version, like any bank). Matching in
scan/clean and in the service drops evidence whose (signal type, value) is
in it, so the same innocent image or URL is not flagged again. It is never
matched *against* as a bank of bad content. Suppression is exact: a
different value (a re-encoded copy's PDQ hash, say) is matched as usual.

When anything goes wrong reading it, nothing is suppressed (fail closed:
a match shown twice is better than a match hidden).
"""

from __future__ import annotations

import threading
import time
from typing import Mapping

from safeset.errors import SafesetError
from safeset.signals import registry

NEGATIVE_BANK = "SAFESET_FALSE_POSITIVES"
DEFAULT_REFRESH_SECONDS = 1.0

NegativeSets = Mapping[str, frozenset]


def is_negative_bank(name: str) -> bool:
    return str(name).upper() == NEGATIVE_BANK


def values_of(bank_version) -> dict[str, frozenset]:
    """Every value of a bank version, one frozen set per signal type."""
    return {signal_type: frozenset(bank_version.values(signal_type)) for signal_type in bank_version.signal_types()}


def latest_negative_version(store):
    """The negative bank's latest version, or None when there is none."""
    try:
        return store.open_version(NEGATIVE_BANK)
    except SafesetError:
        return None


def normal_form(signal_type: str, value: str) -> str | None:
    """The value as banks store it, or None when it is not a valid value of that type."""
    try:
        return registry.get(signal_type).validate(str(value))
    except (ValueError, SafesetError):
        return None


def suppressed_by(sets: NegativeSets, signal_type: str, value) -> bool:
    """True when `sets` holds the value for that signal type (in any accepted spelling)."""
    values = sets.get(signal_type)
    if not values or value is None:
        return False
    if value in values:
        return True
    normal = normal_form(signal_type, value)
    return normal is not None and normal in values


class NegativeValues:
    """The negative bank as a cheap membership test, reloaded when its version changes.

    The store is looked at no more than once per `refresh_seconds`, so a
    new false positive suppresses within that time in a running service.
    """

    def __init__(self, store, refresh_seconds: float = DEFAULT_REFRESH_SECONDS):
        self.store = store
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._checked = float("-inf")
        self._identity: tuple[int, str] | None = None
        self._sets: dict[str, frozenset] = {}

    @property
    def version(self) -> int | None:
        self._refresh_if_due()
        return self._identity[0] if self._identity else None

    def values(self, signal_type: str) -> frozenset:
        self._refresh_if_due()
        return self._sets.get(signal_type, frozenset())

    def suppresses(self, signal_type: str, value) -> bool:
        self._refresh_if_due()
        return suppressed_by(self._sets, signal_type, value)

    def refresh(self) -> None:
        """Look at the store now."""
        with self._lock:
            self._reload()

    def _refresh_if_due(self) -> None:
        if time.monotonic() - self._checked < self.refresh_seconds:
            return
        with self._lock:
            if time.monotonic() - self._checked >= self.refresh_seconds:
                self._reload()

    def _reload(self) -> None:
        try:
            latest = latest_negative_version(self.store)
            identity = (latest.version, latest.digest) if latest is not None else None
            if identity != self._identity:
                self._sets = values_of(latest) if latest is not None else {}
                self._identity = identity
        except (SafesetError, OSError):
            self._sets, self._identity = {}, None
        self._checked = time.monotonic()
