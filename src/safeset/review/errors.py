"""Errors of the review queue a user or a client can act on."""

from __future__ import annotations

from safeset.errors import ConfigError, SafesetError


class ReviewError(SafesetError):
    """A review request that cannot be carried out as asked (exit 2; HTTP 400)."""

    http_status = 400


class ItemNotFound(ReviewError):
    http_status = 404

    def __init__(self, item_id: int):
        self.item_id = item_id
        super().__init__(f"no review item {item_id}")


class ItemStateError(ReviewError):
    """The item is not in a state that allows the request (already decided, claimed by someone else...)."""

    http_status = 409


class NoImageError(ReviewError):
    """The item holds no image bytes (evidence-only, or purged after its decision)."""

    http_status = 404


class QuarantineKeyError(ConfigError):
    """No usable quarantine key: bytes cannot be stored or read, so nothing is passed on unencrypted."""

    http_status = 503
