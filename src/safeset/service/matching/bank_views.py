"""Loaded bank versions, ready to match, and how the live index notices new ones.

A `BankView` is one bank's latest version with its probes opened (memory
maps of the saved indexes: opening one costs milliseconds whatever the
bank's size, and the pages are the ones the page cache already holds).
`StoreWatch` tells which banks changed since it last looked, from a stat of
each bank's `bank.json` (rewritten by every import, append and deletion, in
this process or any other sharing the store).
"""

from __future__ import annotations

import calendar
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from safeset.banks.store import BankStore
from safeset.match import Matcher

NEGATIVE_BANK = "SAFESET_FALSE_POSITIVES"  # never matched against: see safeset.review.negative


def is_matchable_bank(name: str) -> bool:
    """Every bank except the reviewers' negative bank, which only suppresses."""
    try:
        from safeset.review.negative import is_negative_bank
    except ImportError:  # the review part is optional
        return name.upper() != NEGATIVE_BANK
    return not is_negative_bank(name)


@dataclass(frozen=True)
class BankView:
    """One bank version opened for matching."""

    name: str
    version: int
    digest: str
    created_ts: int  # unix time the version was written
    counts: dict[str, int]
    layers: int
    matcher: Matcher = field(repr=False, compare=False)
    loaded_ts: float = 0.0

    @classmethod
    def load(cls, store: BankStore, name: str, pdq_threshold: int) -> "BankView":
        version = store.open_version(name)
        matcher = Matcher([version], pdq_threshold=pdq_threshold)
        prefetch(version)
        return cls(
            name=version.name,
            version=version.version,
            digest=version.digest,
            created_ts=_unix_time(version.manifest.get("created")),
            counts={t: int(n) for t, n in version.manifest.get("counts", {}).items() if int(n)},
            layers=len(version.layers),
            matcher=matcher,
            loaded_ts=time.time(),
        )

    def describe(self) -> dict:
        return {
            "version": self.version,
            "created_ts": self.created_ts,
            "loaded_ts": int(self.loaded_ts),
            "counts": dict(self.counts),
            "layers": self.layers,
        }


_PREFETCHED: set[tuple] = set()
_PREFETCH_LOCK = threading.Lock()
PREFETCH_CHUNK = 8 << 20


def prefetch(version) -> None:
    """Read the version's index files once, sequentially, in a background thread.

    A cold 10M-hash PDQ index would answer its first queries from random page
    faults (seconds in all); read ahead sequentially it is in the page cache
    within about a second, while the index already serves. Files are known by
    inode, so the hard-linked layers of later versions are not read again.
    """
    files = []
    for layer in version.layers:
        index_dir = Path(layer.path) / "index"
        if not index_dir.is_dir():
            continue
        for path in sorted(index_dir.iterdir()):
            try:
                stat = path.stat()
            except OSError:
                continue
            key = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
            with _PREFETCH_LOCK:
                if key in _PREFETCHED:
                    continue
                _PREFETCHED.add(key)
            files.append(path)
    if files:
        threading.Thread(target=_read_through, args=(files,), name="safeset-prefetch", daemon=True).start()


def _read_through(files: list[Path]) -> None:
    buffer = bytearray(PREFETCH_CHUNK)
    for path in files:
        try:
            with open(path, "rb", buffering=0) as handle:
                while handle.readinto(buffer):
                    pass
        except OSError:
            continue


def _unix_time(text: str | None) -> int:
    if not text:
        return -1
    try:
        return calendar.timegm(time.strptime(text, "%Y-%m-%dT%H:%M:%SZ"))
    except ValueError:
        return -1


class StoreWatch:
    """Which banks changed since the last look (cheap: one directory listing and a stat per bank)."""

    def __init__(self, root: Path):
        self.banks_dir = Path(root) / "banks"
        self._seen: dict[str, tuple] = {}

    def signatures(self) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        try:
            entries = list(os.scandir(self.banks_dir))
        except FileNotFoundError:
            return found
        for entry in entries:
            if not entry.is_dir() or not is_matchable_bank(entry.name):
                continue
            try:
                stat = os.stat(os.path.join(entry.path, "bank.json"))
            except FileNotFoundError:
                continue  # being created (bank.json comes after its first version) or deleted
            found[entry.name] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        return found

    def changes(self) -> tuple[set[str], set[str]]:
        """(banks new or changed, banks gone) since the previous call."""
        now = self.signatures()
        changed = {name for name, signature in now.items() if self._seen.get(name) != signature}
        gone = set(self._seen) - set(now)
        self._seen = now
        return changed, gone

    def forget(self, name: str) -> None:
        """Make the next `changes()` report this bank again (e.g. after a failed load)."""
        self._seen.pop(name, None)
