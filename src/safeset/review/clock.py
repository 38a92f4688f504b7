"""Timestamps as the review tables keep them: UTC text that sorts in time order."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from safeset.errors import ConfigError

_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def now() -> datetime:
    return datetime.now(timezone.utc)


def as_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(_FORMAT)


def now_text() -> str:
    return as_text(now())


def shifted_text(seconds: float, start: datetime | None = None) -> str:
    return as_text((start or now()) + timedelta(seconds=seconds))


def parse_duration(text: str | int | float) -> float:
    """Seconds from `90`, `90s`, `15m`, `12h`, `7d` or `2w`."""
    if isinstance(text, (int, float)):
        seconds = float(text)
    else:
        match = _DURATION.match(str(text).lower())
        if not match:
            raise ConfigError(f"invalid duration {text!r}: use e.g. 0, 90s, 15m, 12h, 7d")
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    if seconds < 0:
        raise ConfigError(f"a duration cannot be negative: {text!r}")
    return seconds
