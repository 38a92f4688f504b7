"""Errors of the service's core with the HTTP status they become (see `app._install_error_handlers`).

Raised by core code that the CLI and Python API share, so they are
`SafesetError`s (one clear line, no traceback) that also carry `http_status`.
"""

from __future__ import annotations

from safeset.errors import SafesetError


class NotFound(SafesetError):
    http_status = 404


class Conflict(SafesetError):
    http_status = 409


class InvalidSignal(SafesetError):
    """A signal value its type refuses: HMA's `invalid signal: ...` (400)."""

    http_status = 400
