"""Errors a user can act on.

Anything raised as a `SafesetError` is shown as one clear line (file, position,
reason) instead of a traceback. Exit codes are documented in the README.
"""

from __future__ import annotations

from pathlib import Path


class SafesetError(Exception):
    """An error caused by the user's input or configuration, not by a bug."""

    exit_code = 2


class ConfigError(SafesetError):
    """Bad command-line usage, policy, bank name or store state (exit 2)."""


class InputError(SafesetError):
    """Bad input data: names the file and the position inside it.

    `position` is free text such as "line 12", "row group 3", "byte 10240"
    or "member 'x/../y' at byte 512".
    """

    def __init__(self, path: str | Path, position: str | None, reason: str):
        self.path = str(path)
        self.position = position
        self.reason = reason
        where = f"{self.path}: {position}" if position else self.path
        super().__init__(f"{where}: {reason}")

    def __reduce__(self):
        # Rebuilt from its parts when it crosses a process boundary.
        return (type(self), (self.path, self.position, self.reason))
