"""What a lookup does besides matching: strikes, review of matched uploads, comparisons.

Shared by the HTTP routes (`routes_match`) and any other face; nothing here
knows about HTTP.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from safeset.service.errors import InvalidSignal
from safeset.service.matching.values import normalise

log = logging.getLogger("safeset.service.match")

REVIEW_RULE = "service-lookup"


@dataclass
class ContentLookup:
    """The matches of one piece of content, per signal type computed from it."""

    signals: dict[str, str]
    matches: dict[str, list] = field(default_factory=dict)
    pdq_quality: int | None = None

    @property
    def all_matches(self) -> list:
        return [match for found in self.matches.values() for match in found]


def lookup_content(index, signals: dict[str, str], banks=None, seed: str | None = None, pdq_quality: int | None = None) -> ContentLookup:
    """Look up every signal computed from a piece of content (one batch: a single index pass)."""
    from safeset.signals.perceptual import MIN_QUALITY
    from safeset.service.matching.values import ValueQuery

    result = ContentLookup(dict(signals), pdq_quality=pdq_quality)
    types = [t for t in signals if not (t == "pdq" and pdq_quality is not None and pdq_quality < MIN_QUALITY)]
    found = index.lookup_many([ValueQuery.parse(t, signals[t]) for t in types], banks, seeds=[seed] * len(types))
    for signal_type in signals:  # too flat to mean anything (PDQ's rule, as in scans): no PDQ lookup
        result.matches[signal_type] = found[types.index(signal_type)] if signal_type in types else []
    return result


def hash_and_look_up(index, data: bytes, config, banks=None, seed: str | None = None) -> ContentLookup:
    """Hash uploaded or fetched content within the upload limits, then look it up."""
    from safeset.service.hasher import content_signals

    hashed = content_signals(data, config, pdq_mode=config.lookup_pdq_mode)
    return lookup_content(index, hashed.signals, banks, seed, hashed.pdq_quality)


def record_strikes(strikes, account_id: str | None, matches: list, actor: str, origin: str):
    """A strike for the account when there are matches (and an account); None otherwise."""
    if strikes is None or not account_id or not matches:
        return None
    return strikes.record(account_id, matches, actor=actor, origin=origin)


def queue_for_review(review, content: ContentLookup, data: bytes, *, account_id: str | None, actor: str) -> int | None:
    """Queue an upload that matched, its bytes quarantined (encrypted).

    Fail closed: without a quarantine key the evidence is still queued, without
    the bytes, and the item says why. Returns the item id (None: no review part).
    """
    if not content.all_matches:
        return None
    if review is None:
        log.warning("an upload matched but the service has no review queue: nothing was queued")
        return None
    from safeset.review.model import BYTES_NOT_IMPORTED, NewItem

    digests = dict(content.signals)
    if content.pdq_quality is not None:
        digests["pdq_quality"] = content.pdq_quality
    evidence = [
        {
            "rule": REVIEW_RULE, "signal_type": match.signal_type, "value": match.value, "bank": match.bank,
            "bank_version": match.bank_version, "entry_id": match.entry_id, "distance": match.distance,
        }
        for match in content.all_matches
    ]
    item = dict(origin="api", digests=digests, evidence=evidence, account_id=account_id)
    if getattr(review, "stores_bytes", False):
        try:
            return review.add(NewItem(**item), data, actor)
        except Exception as exc:  # the quarantine failed: still queue the evidence (fail closed)
            log.error("could not quarantine a matched upload (%s); queueing its evidence without bytes", type(exc).__name__)
            note = f"the upload's bytes could not be quarantined ({type(exc).__name__}); they were not kept"
    else:
        note = "no quarantine key is configured: the upload's bytes were not kept"
    return review.add(NewItem(**item, bytes_state=BYTES_NOT_IMPORTED, bytes_note=note), None, actor)


def compare(pairs: dict, pdq_threshold: int) -> dict:
    """HMA's `/m/compare`: per signal type, [match, {"distance": d}] for two values.

    PDQ compares by Hamming distance (a match within the threshold); other
    types compare their normal forms (equal or not, distance 0 or 1).
    """
    if not isinstance(pairs, dict) or not pairs:
        raise InvalidSignal("send a JSON object: {\"<signal type>\": [\"<value 1>\", \"<value 2>\"]}")
    results = {}
    for signal_type, values in pairs.items():
        if not isinstance(values, list) or len(values) != 2 or not all(isinstance(v, str) for v in values):
            raise InvalidSignal(f"comparison values for {signal_type!r} must be a list of exactly 2 strings")
        left, right = (normalise(signal_type, value) for value in values)
        if str(signal_type).strip().lower() == "pdq":
            from safeset.pdq.hexform import hamming

            distance = hamming(left, right)
            results[signal_type] = [distance <= pdq_threshold, {"distance": distance}]
        else:
            results[signal_type] = [left == right, {"distance": 0 if left == right else 1}]
    return results
