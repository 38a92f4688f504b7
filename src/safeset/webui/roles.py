"""Reviewer roles: what a user of the review UI may do. Kept apart from the user
store so the command line can name and check roles without loading it."""

from __future__ import annotations

from safeset.errors import ConfigError

ROLES = ("reviewer", "senior", "admin")


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ConfigError(f"unknown role {role!r}: choose one of {', '.join(ROLES)}")
    return role
