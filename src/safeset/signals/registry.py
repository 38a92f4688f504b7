"""Signal types: the kinds of value a bank can hold and a dataset row can yield.

Each type lives in one module under `safeset.signals.types` and registers a
`SignalType` here; adding a type (PDQ, say) means adding one such module.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Literal

from safeset.errors import ConfigError

IndexKind = Literal["digest", "domain", "term", "pdq"]

_BUILTIN_MODULES = (
    "safeset.signals.types.image_digest",
    "safeset.signals.types.url",
    "safeset.signals.types.domain",
    "safeset.signals.types.term",
    "safeset.signals.types.pdq",
)


@dataclass(frozen=True)
class SignalType:
    """What a bank entry of this type is and how it is compared with rows.

    validate   returns the value in its normal text form (the form stored in
               banks and shown in reports) or raises ValueError(reason).
    index      how matching works: "digest" (exact bytes, see index_key),
               "domain" (host and all its subdomains) or "term" (caption text).
    index_key  for "digest" types: the bytes kept in the exact index for a
               normalised value (a URL entry is kept as the MD5 of its
               canonical form, so it matches by digest like the rest).
    build_index, load_index
               for types with an index of their own (PDQ's Hamming index):
               `build_index(values, entry_ids, directory, stem) -> dict`
               writes it when a bank version is made and returns its
               manifest description; `load_index(directory, description)`
               opens it for matching.
    """

    name: str
    description: str
    index: IndexKind
    validate: Callable[[str], str]
    index_key: Callable[[str], bytes] | None = None
    key_size: int | None = None
    build_index: Callable | None = None
    load_index: Callable | None = None


_TYPES: dict[str, SignalType] = {}
_loaded = False


def register(signal_type: SignalType) -> SignalType:
    _TYPES[signal_type.name] = signal_type
    return signal_type


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def get(name: str) -> SignalType:
    _load_builtins()
    try:
        return _TYPES[name]
    except KeyError:
        known = ", ".join(sorted(_TYPES))
        raise ConfigError(f"unknown signal type {name!r}; known types: {known}") from None


def names() -> list[str]:
    _load_builtins()
    return sorted(_TYPES)


def all_types() -> list[SignalType]:
    _load_builtins()
    return [_TYPES[name] for name in sorted(_TYPES)]
