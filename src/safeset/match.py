"""Match: join a batch's signals with the selected bank versions.

Yields `Evidence` items (row, signal type, value, bank, version, entry id).
Each bank signal type is matched in the way its registry entry says:
exact digests through the memory-mapped `DigestIndex`, domains by host
suffix, terms by Aho-Corasick over normalised captions.

Besides banks, a job can match rows against other sources (a removal
list's sorted digests, see `safeset.removals`): a `MatchSource` is a
picklable description sent to every worker, where `open()` gives the
object that matches batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from safeset.evidence import Evidence
from safeset.signals import registry
from safeset.signals.perceptual import PDQQueries
from safeset.signals.rows import DIGEST_SIZES, RowSignals
from safeset.signals.url import domain_suffixes

URL_TYPES = {"url", "url_md5", "url_sha1", "url_sha256", "domain"}
IMAGE_TYPES = set(DIGEST_SIZES)


class OpenMatchSource(Protocol):
    def match(self, signals: RowSignals, unavailable: set[str]) -> list[Evidence]:
        """Evidence for the batch; adds to `unavailable` the signal types the batch lacks."""
        ...


class MatchSource(Protocol):
    """Something rows are matched against besides bank versions."""

    signal_types: tuple[str, ...]  # e.g. ("url_sha256", "md5"): what it reads, for column selection and checks

    def open(self) -> OpenMatchSource:
        """Called once in each worker (load indexes there, not in the parent)."""
        ...

    def describe(self) -> dict:
        """What it is, for run.json and the run's fingerprint (no temporary paths)."""
        ...


def logical_columns(signal_types) -> frozenset[str]:
    """The dataset columns (url, caption, md5, sha1, sha256) these bank types read."""
    needed = set()
    for signal_type in signal_types:
        if signal_type in URL_TYPES:
            needed.add("url")
        elif signal_type in IMAGE_TYPES:
            needed.add(signal_type)
        elif signal_type == "term":
            needed.add("caption")
    return frozenset(needed)  # pdq needs image bytes, which only image shards have


@dataclass(frozen=True)
class BankSignal:
    """One signal type of one bank version, ready to be matched."""

    bank: str
    version: int
    signal_type: str
    probe: object  # DigestIndex | dict[str, int] (domains) | (TermMatcher, dict[str, int]) | PDQBankIndex


def _listed_suffix(domains: dict[str, int], host: str) -> str | None:
    """The host itself or its nearest parent domain that is listed, else None."""
    for suffix in domain_suffixes(host):
        if suffix in domains:
            return suffix
    return None


def _domain_probe(bank_version, signal_type):
    return dict(zip(bank_version.values(signal_type), bank_version.entry_ids(signal_type).tolist()))


def _term_probe(bank_version, signal_type):
    from safeset.signals.text import TermMatcher

    values = bank_version.values(signal_type)
    ids = dict(zip(values, bank_version.entry_ids(signal_type).tolist()))
    return TermMatcher(values), ids


class Matcher:
    def __init__(self, bank_versions, pdq_threshold: int = 31, sources: tuple[OpenMatchSource, ...] = (),
                 suppressed: dict[str, frozenset] | None = None):
        self.pdq_threshold = pdq_threshold
        self.sources = tuple(sources)
        # The negative bank's values per signal type (reviewers' false positives): evidence with one is dropped.
        self.suppressed = suppressed or {}
        self.signals: list[BankSignal] = []
        for bank_version in bank_versions:
            for signal_type in bank_version.signal_types():
                kind = registry.get(signal_type).index
                if kind == "digest":
                    probe = bank_version.digest_index(signal_type)
                elif kind == "domain":
                    probe = _domain_probe(bank_version, signal_type)
                elif kind == "term":
                    probe = _term_probe(bank_version, signal_type)
                else:
                    probe = bank_version.own_index(signal_type)
                self.signals.append(BankSignal(bank_version.name, bank_version.version, signal_type, probe))
        # Signal types the dataset could not provide (no URL column, no images...).
        self.unavailable: set[str] = set()

    def match(self, signals: RowSignals) -> list[Evidence]:
        evidence: list[Evidence] = []
        for bank_signal in self.signals:
            evidence.extend(self._match_one(bank_signal, signals))
        for source in self.sources:
            evidence.extend(source.match(signals, self.unavailable))
        if self.suppressed:
            evidence = [e for e in evidence if e.value not in self.suppressed.get(e.signal_type, ())]
        return evidence

    # Values given directly rather than computed from rows (the service's lookups
    # of a hash, a digest or a host): the same bank probes, the same evidence.

    def match_digests(self, signal_type: str, digests: np.ndarray) -> list[Evidence]:
        """Rows of `digests` ((m, key size) uint8) equal to an entry of a `signal_type` digest bank."""
        valid = np.ones(len(digests), dtype=bool)
        return [e for bs in self._of_type(signal_type) for e in self._digest_hits(bs, digests, valid)]

    def match_pdq(self, hashes: np.ndarray) -> list[Evidence]:
        """Rows of `hashes` ((m, 32) uint8) within `pdq_threshold` of a PDQ entry."""
        queries = PDQQueries(hashes, np.arange(len(hashes), dtype=np.int64), [])
        return [e for bs in self._of_type("pdq") for e in self._pdq_query_hits(bs, queries)]

    def match_host(self, host: str) -> list[Evidence]:
        """Domain entries equal to `host` or to one of its parent domains (row 0)."""
        evidence = []
        for bs in self._of_type("domain"):
            suffix = _listed_suffix(bs.probe, host)
            if suffix is not None:
                evidence.append(self._evidence(bs, 0, suffix, bs.probe[suffix]))
        return evidence

    def _of_type(self, signal_type: str) -> list[BankSignal]:
        return [bs for bs in self.signals if bs.signal_type == signal_type]

    def _match_one(self, bs: BankSignal, signals: RowSignals):
        t = bs.signal_type
        if (t in URL_TYPES and signals.url is None) or (t == "term" and signals.caption is None):
            self.unavailable.add(t)
            return []
        if t in IMAGE_TYPES:
            digest = signals.image_digest(t)
            if digest is None:
                self.unavailable.add(t)
                return []
            return self._digest_hits(bs, *digest)
        if t == "url":
            digests, valid = signals.url_digest("md5", "canonical")
            rows, ids = bs.probe.lookup(digests, valid)
            return [self._evidence(bs, r, signals.canonical_at(r), i) for r, i in zip(rows.tolist(), ids.tolist())]
        if t.startswith("url_"):
            algo = t[4:]
            raw, valid = signals.url_digest(algo, "raw")
            hits = self._digest_hits(bs, raw, valid)
            changed_rows, canonical = signals.changed_url_digests(algo)
            hits += self._digest_hits(bs, canonical, None, changed_rows)
            return hits
        if t == "domain":
            return self._domain_hits(bs, signals)
        if t == "pdq":
            return self._pdq_hits(bs, signals)
        if t == "term":
            matcher, ids = bs.probe
            rows, terms = matcher.match(signals.caption)
            return [self._evidence(bs, r, term, ids.get(term)) for r, term in zip(rows.tolist(), terms)]
        raise AssertionError(f"no matcher for signal type {t}")

    def _digest_hits(self, bs: BankSignal, digests: np.ndarray, valid: np.ndarray | None,
                     row_of: np.ndarray | None = None) -> list[Evidence]:
        """Evidence for digests found in the bank; `row_of` maps digest positions to rows (default: the same)."""
        found, ids = bs.probe.lookup(digests, valid)
        rows = found if row_of is None else row_of[found]
        return [self._evidence(bs, r, digests[f].tobytes().hex(), i)
                for r, f, i in zip(rows.tolist(), found.tolist(), ids.tolist())]

    def _pdq_hits(self, bs: BankSignal, signals: RowSignals) -> list[Evidence]:
        queries = signals.pdq
        if queries is None:
            self.unavailable.add(bs.signal_type)
            return []
        return self._pdq_query_hits(bs, queries)

    def _pdq_query_hits(self, bs: BankSignal, queries: PDQQueries) -> list[Evidence]:
        query_index, entry_ids, distances = bs.probe.search(queries.hashes, self.pdq_threshold)
        best: dict[tuple[int, int], tuple[int, int]] = {}  # (row, entry) -> (distance, query)
        for q, entry, distance in zip(query_index.tolist(), entry_ids.tolist(), distances.tolist()):
            key = (int(queries.rows[q]), entry)
            if key not in best or distance < best[key][0]:
                best[key] = (distance, q)
        return [
            self._evidence(bs, row, queries.hashes[q].tobytes().hex(), entry, distance)
            for (row, entry), (distance, q) in sorted(best.items())
        ]

    def _domain_hits(self, bs: BankSignal, signals: RowSignals) -> list[Evidence]:
        encoded = signals.host.dictionary_encode()
        hosts = encoded.dictionary.to_pylist()
        matched = {}
        for code, host in enumerate(hosts):
            suffix = _listed_suffix(bs.probe, host)
            if suffix is not None:
                matched[code] = suffix
        if not matched:
            return []
        codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        rows = np.flatnonzero(np.isin(codes, list(matched)))
        return [
            self._evidence(bs, r, matched[codes[r]], bs.probe[matched[codes[r]]]) for r in rows.tolist()
        ]

    @staticmethod
    def _evidence(bs: BankSignal, row: int, value: str, entry_id, distance: int | None = None) -> Evidence:
        return Evidence(
            row=int(row),
            signal_type=bs.signal_type,
            value=value,
            bank=bs.bank,
            bank_version=bs.version,
            entry_id=None if entry_id is None else int(entry_id),
            distance=distance,
        )
