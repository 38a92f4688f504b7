"""Bank names: HMA's convention, so names travel between safeset and HMA unchanged."""

from __future__ import annotations

import re

from safeset.errors import ConfigError

BANK_NAME_RULE = "^[A-Z_][A-Z0-9_]*$"
_BANK_NAME = re.compile(BANK_NAME_RULE)
MAX_BANK_NAME_LENGTH = 128


def normalize_bank_name(name: str) -> str:
    """`demo_urls` -> `DEMO_URLS`; anything else outside the rule is refused, never rewritten."""
    candidate = name.upper() if name.isascii() else ""
    if not _BANK_NAME.fullmatch(candidate) or len(candidate) > MAX_BANK_NAME_LENGTH:
        raise ConfigError(
            f"invalid bank name {name!r}: use letters, digits and underscores, not starting "
            f"with a digit, at most {MAX_BANK_NAME_LENGTH} characters (HMA's rule {BANK_NAME_RULE}; "
            "lowercase is upper-cased, e.g. demo_urls -> DEMO_URLS)"
        )
    return candidate
