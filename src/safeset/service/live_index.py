"""The live index: every bank's latest version, matchable, updated while it serves.

HMA's matcher rebuilds its whole index from the database every 30 seconds
(minutes at ten million hashes, a reload pause, stampedes when many pods
reload at once). Here nothing is ever rebuilt to serve: bank versions carry
their saved indexes (`safeset.banks`), opened by memory map in milliseconds
whatever their size, and an append to a big bank is a small extra layer
(`safeset.banks.layers`), so a new version costs what was added.

A background thread looks at the store about once a second (a stat of each
bank's `bank.json`, so imports by other processes are seen too) and at once
when told (`notify_changed`), opens changed banks and swaps the new view in
with one reference assignment: lookups never wait for a load and never see a
half-loaded bank. Lookups go through the same probes a dataset scan uses
(`safeset.service.matching.values`), then lose hits of disabled content,
banks switched off by their matching ratio, and values reviewers marked
false positive (`matching.filters`).

Fail closed: until every bank has loaded once the index is not ready (the
API answers 503, `/status` INDEX-NOT-LOADED); a bank whose new version fails
to load keeps matching its previous version, is retried every poll, and is
reported by `index_status` and the log.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from safeset.banks.names import normalize_bank_name
from safeset.banks.store import BankStore
from safeset.errors import SafesetError
from safeset.service.matching.bank_views import BankView, StoreWatch, is_matchable_bank
from safeset.service.matching.filters import HitFilters
from safeset.service.matching.values import ValueQuery, signal_types

log = logging.getLogger("safeset.service.index")

DEFAULT_POLL_S = 1.0
STALE_AFTER_S = 65.0  # HMA's rule: no completed refresh for this long = stale


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class IndexNotReady(SafesetError):
    """Lookups before every bank has loaded once (503)."""

    http_status = 503


@dataclass(frozen=True)
class Match:
    """One bank entry a looked-up value matched."""

    bank: str
    bank_version: int
    entry_id: int
    distance: int | None  # Hamming distance for PDQ; None for exact types
    value: str  # the value that matched, as scan's evidence shows it (hash, digest, canonical URL, domain)
    signal_type: str  # the bank entry's type

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _keep(best: dict[tuple[str, int], Match], view: BankView, evidence) -> None:
    """Record a hit, keeping the closest when an entry is hit twice."""
    if evidence.entry_id is None:
        return
    match = Match(view.name, view.version, evidence.entry_id, evidence.distance, evidence.value, evidence.signal_type)
    key = (match.bank, match.entry_id)
    if key not in best or (match.distance or 0) < (best[key].distance or 0):
        best[key] = match


class LiveIndex:
    """Component "index" of `safeset serve` (see the module docstring)."""

    def __init__(
        self,
        store: BankStore,
        *,
        pdq_threshold: int = 31,
        poll_interval_s: float = DEFAULT_POLL_S,
        settings: Callable[[], object] | None = None,
        negative=None,
        stale_after_s: float = STALE_AFTER_S,
    ):
        self.store = store
        self.pdq_threshold = int(pdq_threshold)
        self.poll_interval_s = float(poll_interval_s)
        self.stale_after_s = float(stale_after_s)
        self._filters = HitFilters(settings, negative)
        self._watch = StoreWatch(store.root)
        self._views: dict[str, BankView] = {}
        self._failures: dict[str, str] = {}
        self._ready = False
        self._last_refresh = 0.0
        self._refresh_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._cycles_done = 0
        self._cycle_running = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------
    def start(self) -> None:
        """Load every bank (memory maps: fast at any size), then keep watching in the background."""
        self.refresh()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="safeset-live-index", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def ready(self) -> bool:
        return self._ready

    def stale(self) -> bool:
        return self._ready and time.monotonic() - self._last_refresh > self.stale_after_s

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self.refresh()
            except Exception:  # keep serving the current views; the next poll retries
                log.exception("live index refresh failed")

    # -- updates -------------------------------------------------------------
    def notify_changed(self, bank_name: str, wait_s: float = 2.0) -> None:
        """A bank's entries or settings changed (called by the curator after a write): look now.

        Called from a worker thread (as curator routes run), it waits up to
        `wait_s` for the change to be matchable, so a client that adds a hash
        and then looks it up finds it; on an event loop it never blocks.
        """
        with self._cond:
            self._pending.add(str(bank_name).upper())
        if self._thread is None or _on_event_loop():
            self._wake.set()
            return
        self.wait_until_current(wait_s)

    def wait_until_current(self, timeout: float = 5.0) -> bool:
        """Block until a refresh that started after this call has finished (tests, read-your-writes)."""
        if self._thread is None:
            self.refresh()
            return True
        with self._cond:
            target = self._cycles_done + (2 if self._cycle_running else 1)
        self._wake.set()
        with self._cond:
            return self._cond.wait_for(lambda: self._cycles_done >= target, timeout)

    def refresh(self) -> None:
        """One look at the store: load banks that changed, drop banks that are gone, swap."""
        with self._refresh_lock:
            with self._cond:
                self._cycle_running = True
                pending, self._pending = self._pending, set()
            try:
                self._refresh(pending)
            finally:
                with self._cond:
                    self._cycle_running = False
                    self._cycles_done += 1
                    self._cond.notify_all()

    def _refresh(self, pending: set[str]) -> None:
        changed, gone = self._watch.changes()
        changed |= {name for name in pending if name not in gone and is_matchable_bank(name)}
        if changed or gone:
            self._apply(changed, gone)
        self._last_refresh = time.monotonic()
        if not self._ready and not self._failures:
            self._ready = True
            log.info("live index ready: %d banks, %d entries", len(self._views),
                     sum(sum(v.counts.values()) for v in self._views.values()))

    def _apply(self, changed: set[str], gone: set[str]) -> None:
        views = dict(self._views)
        failures = dict(self._failures)
        for name in gone:
            views.pop(name, None)
            failures.pop(name, None)
        for name in sorted(changed):
            try:
                view = self._load(name, views.get(name))
            except (SafesetError, OSError, ValueError) as exc:
                failures[name] = str(exc)
                self._watch.forget(name)  # retry on the next poll
                log.error("bank %s could not be loaded for matching (keeps its previous version): %s", name, exc)
                continue
            failures.pop(name, None)
            if view is None:
                views.pop(name, None)
            else:
                views[name] = view
        self._views = views  # the swap: lookups take this reference once
        self._failures = failures

    def _load(self, name: str, current: BankView | None) -> BankView | None:
        """The bank's latest version opened for matching; `current` when it is that already; None when gone."""
        latest = self.store.latest_version(name)
        if latest is None:
            return None
        if current is not None and current.version == latest:
            return current
        view = BankView.load(self.store, name, self.pdq_threshold)
        log.info("bank %s version %d loaded for matching (%d layers)", name, view.version, view.layers)
        return view

    # -- lookups -------------------------------------------------------------
    def lookup(
        self,
        signal_type: str,
        value: str,
        banks: Iterable[str] | None = None,
        include_distance: bool = False,
        *,
        seed: str | None = None,
    ) -> list[Match]:
        """Bank entries `value` matches (InvalidSignal for a bad type or value; IndexNotReady before loading).

        Distances are always computed (`include_distance` is accepted for the
        HMA-shaped callers, which decide what to show).
        """
        return self.lookup_query(ValueQuery.parse(signal_type, value), banks, seed=seed)

    def lookup_query(self, query: ValueQuery, banks: Iterable[str] | None = None, *, seed: str | None = None) -> list[Match]:
        return self.lookup_many([query], banks, seeds=[seed])[0]

    def lookup_many(
        self, queries: list[ValueQuery], banks: Iterable[str] | None = None, *, seeds: list[str | None] | None = None
    ) -> list[list[Match]]:
        """Several lookups at once, one answer each: their PDQ hashes are searched as one batch
        (what concurrent requests share, see `matching.fastpath`)."""
        if not self._ready:
            raise IndexNotReady("the index is not loaded yet")
        views = self._views
        if banks is None:
            selected = list(views.values())
        else:
            selected = [views[name] for name in dict.fromkeys(normalize_bank_name(b) for b in banks) if name in views]
        found: list[dict[tuple[str, int], Match]] = [{} for _ in queries]
        pdq = [i for i, query in enumerate(queries) if query.signal_type == "pdq"]
        if pdq:
            hashes = np.concatenate([queries[i].pdq_hashes() for i in pdq])
            for view in selected:
                for evidence in view.matcher.match_pdq(hashes):
                    _keep(found[pdq[evidence.row]], view, evidence)
        for i, query in enumerate(queries):
            if query.signal_type != "pdq":
                for view in selected:
                    for evidence in query.evidence(view.matcher):
                        _keep(found[i], view, evidence)
        seeds = seeds if seeds is not None else [None] * len(queries)
        return [
            sorted(self._filters.apply(list(best.values()), seed), key=lambda m: (m.bank, m.distance or 0, m.entry_id))
            for best, seed in zip(found, seeds)
        ]

    # -- status --------------------------------------------------------------
    def bank_names(self) -> list[str]:
        return sorted(self._views)

    def index_status(self, signal_type: str | None = None) -> dict[str, dict]:
        """HMA's `/m/index/status`: per signal type, present / built_to (unix time) / size."""
        views = list(self._views.values())
        types = signal_types() if signal_type is None else [signal_type]
        status = {}
        for name in types:
            holding = [view for view in views if view.counts.get(name)]
            size = sum(view.counts[name] for view in holding)
            status[name] = {
                "present": self._ready and size > 0,
                "built_to": max((view.created_ts for view in holding), default=-1),
                "size": size,
            }
        return status

    def describe(self) -> dict:
        """Diagnostics: readiness, each bank's loaded version, load failures."""
        return {
            "ready": self._ready,
            "stale": self.stale(),
            "pdq_threshold": self.pdq_threshold,
            "banks": {name: view.describe() for name, view in sorted(self._views.items())},
            "failures": dict(self._failures),
        }
