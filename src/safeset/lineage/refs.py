"""`NAME@VERSION` references to datasets and models.

Names follow the Hugging Face Hub's shape (`org/name`), so the names people
already write in model cards work unchanged; versions are free labels
(`2024-08`, `v1.5`, a commit hash). A reference without a version is only
accepted where a rule resolves it (see `registry.resolve_reference`).
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from safeset.errors import ConfigError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._\-]*(/[A-Za-z0-9][A-Za-z0-9._\-]*)*")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+\-]*")
MAX_LENGTH = 200


@dataclass(frozen=True, order=True)
class Ref:
    """A dataset or model name with its version (None: not given)."""

    name: str
    version: str | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"

    @property
    def directory_name(self) -> str:
        """A single path component naming this version (slashes in names are escaped)."""
        return urllib.parse.quote(str(self), safe="@._+-")


def parse_ref(text: str, what: str = "reference", require_version: bool = True) -> Ref:
    """Parse `NAME@VERSION` (or `NAME` when `require_version` is false); ConfigError says why not."""
    if not isinstance(text, str):
        raise ConfigError(f"{what} must be text like NAME@VERSION, not {text!r}")
    text = text.strip()
    name, sep, version = text.rpartition("@")
    if not sep:
        name, version = text, None
    if len(text) > MAX_LENGTH:
        raise ConfigError(f"{what} {text[:40]!r}...: longer than {MAX_LENGTH} characters")
    if not _NAME.fullmatch(name or "") or ".." in name:
        raise ConfigError(
            f"{what} {text!r}: the name must be letters, digits, '.', '_', '-' in '/'-separated parts "
            "(like org/model-name)"
        )
    if version is None:
        if require_version:
            raise ConfigError(f"{what} {text!r}: give a version, as NAME@VERSION")
        return Ref(name, None)
    if not _VERSION.fullmatch(version):
        raise ConfigError(f"{what} {text!r}: the version must be letters, digits, '.', '_', '+', '-'")
    return Ref(name, version)
