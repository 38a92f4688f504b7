"""What the review queue holds: items, their evidence, and decisions.

An item is one candidate match: a dataset row withheld for review, or an
upload the service matched. It carries the evidence a reviewer reads before
(and usually instead of) looking at the image: which banks matched, at what
distance, the item's digests, where it came from, provenance hints. The
image bytes themselves are never part of these records; they live encrypted
in the quarantine and are reached only through `ReviewQueue.image`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Item status: pending -> claimed -> decided, or -> escalated -> claimed -> decided.
PENDING, CLAIMED, ESCALATED, DECIDED = "pending", "claimed", "escalated", "decided"
STATUSES = (PENDING, CLAIMED, ESCALATED, DECIDED)

CONFIRM, FALSE_POSITIVE, ESCALATE = "confirm", "false_positive", "escalate"
DECISIONS = (CONFIRM, FALSE_POSITIVE, ESCALATE)

# Where an item's image bytes are.
BYTES_QUARANTINED = "quarantined"  # encrypted in the quarantine
BYTES_NONE = "none"  # the source holds no image (metadata-only dataset, failed download)
BYTES_NOT_IMPORTED = "not_imported"  # left out on purpose (import --no-bytes)
BYTES_UNREADABLE = "unreadable"  # the source image could not be read (see bytes_note)
BYTES_PURGED = "purged"  # deleted after the decision and its retention

# Digest names an item may carry; the image ones are what a confirmation banks.
IMAGE_HASH_TYPES = ("md5", "sha1", "sha256", "pdq")
DIGEST_NAMES = (*IMAGE_HASH_TYPES, "pdq_quality", "url_sha256")


@dataclass(frozen=True)
class NewItem:
    """An item to queue. `evidence`: dicts with rule, signal_type, bank, bank_version, value, distance.

    `origin` says where it came from ("run", "api", ...); `run_id` with
    (`shard`, `key`) makes a re-import of the same run a no-op.
    """

    origin: str
    source_url: str | None = None
    first_seen: str | None = None
    dataset: str | None = None
    shard: str | None = None
    key: str | None = None
    digests: dict[str, Any] = field(default_factory=dict)
    evidence: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    account_id: str | None = None
    run_id: str | None = None
    position: int | None = None
    bytes_state: str | None = None  # when no bytes are given: why (BYTES_NONE by default)
    bytes_note: str | None = None  # details, e.g. the read error


@dataclass(frozen=True)
class ReviewItem:
    """A queued item as readers see it: no bytes, no quarantine file names."""

    id: int
    origin: str
    status: str
    source_url: str | None
    first_seen: str | None
    dataset: str | None
    shard: str | None
    key: str | None
    position: int | None
    digests: dict[str, Any]
    evidence: list[dict[str, Any]]
    provenance: dict[str, Any]
    account_id: str | None
    run_id: str | None
    bytes_state: str
    bytes_note: str | None
    created_at: str
    claimed_by: str | None
    claimed_at: str | None
    escalated_at: str | None
    decision: str | None
    decided_by: str | None
    decided_at: str | None
    purge_after: str | None

    @property
    def has_image(self) -> bool:
        return self.bytes_state == BYTES_QUARANTINED

    @property
    def banks(self) -> list[str]:
        """Banks that matched, in evidence order, each once."""
        seen: list[str] = []
        for item in self.evidence:
            bank = item.get("bank")
            if bank and bank not in seen:
                seen.append(bank)
        return seen

    def matched_values(self) -> list[tuple[str, str]]:
        """(signal_type, value) of every bank match in the evidence, each once."""
        pairs: list[tuple[str, str]] = []
        for item in self.evidence:
            pair = (item.get("signal_type"), item.get("value"))
            if item.get("bank") and pair[0] and pair[1] is not None and pair not in pairs:
                pairs.append(pair)
        return pairs

    def image_hashes(self) -> list[tuple[str, str]]:
        """(signal_type, value) of the item's own image hashes: what a confirmation banks."""
        return [(name, str(self.digests[name])) for name in IMAGE_HASH_TYPES if self.digests.get(name)]

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["has_image"] = self.has_image
        data["banks"] = self.banks
        return data


@dataclass(frozen=True)
class Decision:
    """One recorded decision. `bank`/`bank_version`: the bank version it wrote, if any."""

    id: int
    item_id: int
    decision: str
    reviewer: str
    note: str | None
    decided_at: str
    bank: str | None = None
    bank_version: int | None = None
    values: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["values"] = [list(pair) for pair in self.values]
        return data
