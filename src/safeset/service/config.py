"""Settings of one `safeset serve` process, from defaults, a TOML file and flags.

One flat dataclass so every part of the service (core, matching, review,
web UI) reads its knobs from the same place; parts add their own fields here.
A TOML file uses the same names, optionally grouped in tables whose names are
ignored (``[limits] max_upload_bytes = ...`` is ``max_upload_bytes``).
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safeset.errors import ConfigError

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5100


@dataclass
class ServiceConfig:
    """Everything the service needs to start; see docs/service.md for each field."""

    # --- where and what
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    store_root: Path | None = None  # None: $SAFESET_STORE, else ~/.safeset (as the CLI)
    db_url: str | None = None  # None: sqlite file inside the store (or $SAFESET_DB)

    # --- uploads (hasher, content upload, lookups by file)
    max_upload_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 50_000_000
    allowed_formats: tuple[str, ...] = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")
    pdq_mode: str = "exact"  # /h/hash and bank content: the reference's bits, as HMA computes them
    # Lookups by file only need a hash within the match threshold: reduced-scale decoding is ~20x cheaper
    # and stays within distance 10 of the exact hash (bench/pdq_hash.py); "exact" restores HMA's behaviour.
    lookup_pdq_mode: str = "fast"

    # --- fetching content by URL (off unless enabled; then only from these hosts)
    fetch_enabled: bool = False
    fetch_allowed_hosts: tuple[str, ...] = ()
    fetch_timeout_s: float = 10.0

    # --- per-token rate limits (token bucket); a token's own rate wins; 0 = unlimited
    rate_limit_per_s: float = 200.0
    rate_limit_burst_s: float = 2.0  # bucket size in seconds of the rate

    # --- strikes and escalation (matching)
    webhook_url: str | None = None
    strike_threshold: int = 3  # escalate when an account's strikes reach this (and every multiple); 0 = never
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 6  # deliveries retried with exponential back-off, then recorded as failed

    # --- matching (live index)
    pdq_threshold: int = 31  # PDQ match distance (Hamming, of 256 bits)
    index_poll_s: float = 1.0  # how often the index looks for bank changes made by other processes

    # --- review quarantine
    quarantine_dir: Path | None = None  # None: <store>/quarantine
    quarantine_key_file: Path | None = None  # else env SAFESET_QUARANTINE_KEY
    quarantine_retention_s: float = 0.0  # keep decided items' bytes this long before deleting

    # --- web UI sessions
    session_ttl_s: float = 8 * 3600
    session_idle_s: float = 15 * 60  # a session unused this long ends
    cookie_secure: bool = True
    review_cap_per_session: int = 50

    # --- logging
    access_log: bool = True

    def __post_init__(self) -> None:
        from safeset.banks.store import default_store_root

        self.store_root = default_store_root(self.store_root)
        for name in ("quarantine_dir", "quarantine_key_file"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, Path(value).expanduser())
        self.allowed_formats = tuple(str(f).upper() for f in self.allowed_formats)
        self.fetch_allowed_hosts = tuple(str(h).strip().lower() for h in self.fetch_allowed_hosts if str(h).strip())
        for name in ("pdq_mode", "lookup_pdq_mode"):
            if getattr(self, name) not in ("exact", "fast"):
                raise ConfigError(f"{name} must be 'exact' or 'fast', not {getattr(self, name)!r}")
        for name in ("max_upload_bytes", "max_pixels"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"{name} must be positive")
        if self.rate_limit_per_s < 0 or self.rate_limit_burst_s <= 0:
            raise ConfigError("rate_limit_per_s must be >= 0 and rate_limit_burst_s > 0")

    @classmethod
    def field_names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    def replace(self, **changes: Any) -> "ServiceConfig":
        """A copy with some fields changed; None values are ignored (unset flags)."""
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = set(given) - self.field_names()
        if unknown:
            raise ConfigError(f"unknown service setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **given)


def audit_anchor_path(config: ServiceConfig) -> Path:
    """The audit log's head anchor: beside the store, not in the database."""
    from safeset.audit import ANCHOR_FILE

    return config.store_root / ANCHOR_FILE


def _flatten(data: dict, path: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{path}{key}."))
        else:
            if key in flat:
                raise ConfigError(f"setting {key!r} is given twice (at {path}{key})")
            flat[key] = value
    return flat


def load_config(path: str | Path | None = None, **overrides: Any) -> ServiceConfig:
    """Defaults, then the TOML file (if any), then non-None overrides (command-line flags)."""
    config = ServiceConfig()
    if path is not None:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read service config {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
        try:
            config = config.replace(**_flatten(data))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return config.replace(**overrides)
