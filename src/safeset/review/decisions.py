"""What a decision does to the banks.

- confirm: the item's own hashes (md5, sha1, sha256, pdq of its image, and
  the SHA-256 of its canonical URL) become entries of a local bank (default
  `SAFESET_CONFIRMED`), as a new version, so later scans and lookups catch
  the same content. Those values, and the values the item matched on, are
  taken out of the negative bank: a human confirmed them, nothing may keep
  suppressing them.
- false positive: the values the item matched on are added to the negative
  bank, which suppresses later matches of exactly those values.
- escalate: no bank changes; a senior reviewer decides later.

The latest human decision about a value wins; every one is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from safeset.review.model import CONFIRM, ESCALATE, FALSE_POSITIVE, ReviewItem
from safeset.review.negative import NEGATIVE_BANK, latest_negative_version, normal_form
from safeset.signals import registry

DEFAULT_CONFIRMED_BANK = "SAFESET_CONFIRMED"
CONFIRMED_URL_DIGEST = "url_sha256"


@dataclass(frozen=True)
class BankChange:
    """The bank version a decision wrote (None when it wrote none) and the values it concerned."""

    bank: str | None = None
    version: int | None = None
    values: list[tuple[str, str]] = field(default_factory=list)


def _bankable(pairs) -> list[tuple[str, str]]:
    """Valid (signal_type, normal value) pairs, each once, in order."""
    known = set(registry.names())
    result: list[tuple[str, str]] = []
    for signal_type, value in pairs:
        if signal_type not in known:
            continue  # "unchecked" and score-only reasons name no bank value
        normal = normal_form(signal_type, value)
        if normal is not None and (signal_type, normal) not in result:
            result.append((signal_type, normal))
    return result


def confirmed_values(item: ReviewItem) -> list[tuple[str, str]]:
    pairs = item.image_hashes()
    if item.digests.get(CONFIRMED_URL_DIGEST):
        pairs.append((CONFIRMED_URL_DIGEST, str(item.digests[CONFIRMED_URL_DIGEST])))
    return _bankable(pairs)


def false_positive_values(item: ReviewItem) -> list[tuple[str, str]]:
    return _bankable(item.matched_values())


def apply(store, item: ReviewItem, decision: str, reviewer: str, confirmed_bank: str) -> BankChange:
    if decision == CONFIRM:
        return _confirm(store, item, reviewer, confirmed_bank)
    if decision == FALSE_POSITIVE:
        return _false_positive(store, item, reviewer)
    if decision == ESCALATE:
        return BankChange()
    raise ValueError(decision)


def _confirm(store, item: ReviewItem, reviewer: str, bank: str) -> BankChange:
    values = confirmed_values(item)
    change = BankChange(values=values)
    if values:
        result = store.add_entries(bank, values, note=f"review item {item.id} confirmed by {reviewer}")
        change = BankChange(result.bank, result.version, values)
    lift_suppression(store, values + _bankable(item.matched_values()), f"review item {item.id} confirmed by {reviewer}")
    return change


def _false_positive(store, item: ReviewItem, reviewer: str) -> BankChange:
    values = false_positive_values(item)
    if not values:
        return BankChange()
    result = store.add_entries(NEGATIVE_BANK, values, note=f"review item {item.id}: false positive ({reviewer})")
    return BankChange(result.bank, result.version, values)


def lift_suppression(store, values: list[tuple[str, str]], note: str) -> int | None:
    """Take values out of the negative bank (a new version without them); returns that version, if one was made."""
    current = latest_negative_version(store)
    if current is None or not values:
        return None
    lifted = set(values)
    entries = current.entries()
    kept = [
        (signal_type, value)
        for signal_type, value in zip(entries["signal_type"].to_pylist(), entries["value"].to_pylist())
        if (signal_type, value) not in lifted
    ]
    if len(kept) == len(entries):
        return None
    if not kept:
        store.delete(NEGATIVE_BANK)  # a version cannot be empty; no negative bank suppresses nothing
        return None
    return store.add_entries(NEGATIVE_BANK, kept, note=f"lifted: {note}", replace=True).version
