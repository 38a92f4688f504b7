"""One value looked up in banks, with exactly the semantics a dataset scan applies.

A URL is matched as a scanned row's URL is (canonical form against `url`
entries, digests of its raw and canonical spellings against `url_md5` /
`url_sha1` / `url_sha256`, its host and parent domains against `domain`),
by running `safeset.match.Matcher` over a one-row batch. Values a scan never
reads from a row — a PDQ hash, an image or URL digest, a host, given as
such — go straight to the same bank probes (`Matcher.match_pdq`,
`match_digests`, `match_host`). Either way the evidence is scan's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from safeset.datasets.base import Batch, Columns
from safeset.errors import ConfigError
from safeset.evidence import Evidence
from safeset.match import Matcher
from safeset.service.errors import InvalidSignal
from safeset.signals import registry
from safeset.signals.rows import RowSignals

# Types whose values are digests given as hex, matched against banks of the same type.
DIGEST_TYPES = ("md5", "sha1", "sha256", "url_md5", "url_sha1", "url_sha256")
# Types whose lookup runs scan's row matching: which dataset column the value plays.
ROW_COLUMNS = {"url": "url", "term": "caption"}


def signal_types() -> list[str]:
    """Every signal type a lookup accepts: all the store supports."""
    return registry.names()


def normalise(signal_type: str, value: str) -> str:
    """The value in the form banks store it; InvalidSignal (HMA's 400) when it is not valid."""
    try:
        kind = registry.get(str(signal_type).strip().lower())
    except ConfigError:
        raise InvalidSignal(f"no such signal type {signal_type!r}; types: {', '.join(signal_types())}") from None
    try:
        return kind.validate(str(value))
    except ValueError as exc:
        raise InvalidSignal(f"invalid signal: {exc}") from None


@dataclass
class ValueQuery:
    """A validated value, prepared once and run against any number of banks' matchers."""

    signal_type: str
    value: str  # normalised
    raw: str

    def __post_init__(self) -> None:
        self._prepared = None

    @classmethod
    def parse(cls, signal_type: str, value: str) -> "ValueQuery":
        signal_type = str(signal_type).strip().lower()
        return cls(signal_type, normalise(signal_type, value), str(value))

    def evidence(self, matcher: Matcher) -> list[Evidence]:
        kind = self.signal_type
        if kind == "pdq":
            return matcher.match_pdq(self.pdq_hashes())
        if kind in DIGEST_TYPES:
            return matcher.match_digests(kind, self._prepare(self._digest))
        if kind == "domain":
            return matcher.match_host(self.value)
        if kind in ROW_COLUMNS:
            return matcher.match(self._prepare(self._row_signals))
        raise InvalidSignal(f"signal type {kind!r} cannot be looked up by value")

    def _prepare(self, build):
        if self._prepared is None:
            self._prepared = build()
        return self._prepared

    def pdq_hashes(self) -> np.ndarray:
        """A PDQ query as the (1, 32) byte array searches take."""
        return self._prepare(lambda: np.frombuffer(bytes.fromhex(self.value), dtype=np.uint8).reshape(1, 32))

    def _digest(self) -> np.ndarray:
        raw = bytes.fromhex(self.value)
        return np.frombuffer(raw, dtype=np.uint8).reshape(1, len(raw))

    def _row_signals(self) -> RowSignals:
        column = ROW_COLUMNS[self.signal_type]
        table = pa.record_batch([pa.array([self.raw], pa.string())], names=[column])
        batch = Batch(table, pa.array(["lookup"]), np.zeros(1, dtype=np.int64))
        return RowSignals(batch, Columns(**{column: column}))
