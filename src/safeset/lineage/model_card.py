"""Lineage from a Hugging Face model card's YAML front matter.

Model cards (`README.md` on the Hub) start with a YAML block between `---`
lines. Its `datasets:` and `base_model:` fields each hold a string or a list
of strings; `base_model_relation:` (finetune, merge, adapter, quantized) says
how the model derives from its bases. Reading them lets lineage be imported
from cards people already write instead of being typed in again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from safeset.errors import InputError

MAX_CARD_BYTES = 4 * 1024 * 1024
_DELIMITERS = ("---", "...")


@dataclass
class CardLineage:
    datasets: list[str] = field(default_factory=list)
    base_models: list[str] = field(default_factory=list)
    relation: str | None = None
    sha256: str = ""


def _front_matter(path: Path, text: str) -> tuple[str, int]:
    """The YAML text between the leading `---` line and the next `---`/`...` line, and its first line number."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        raise InputError(path, "line 1", "no YAML front matter (a model card starts with a '---' line)")
    for number, line in enumerate(lines[1:], start=2):
        if line.rstrip() in _DELIMITERS:
            return "\n".join(lines[1:number - 1]), 2
    raise InputError(path, f"line {len(lines)}", "the YAML front matter has no closing '---' line")


def _names(path: Path, metadata: dict, key: str) -> list[str]:
    value = metadata.get(key)
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InputError(path, f"front matter '{key}'", f"must be a string or a list of strings, not {type(value).__name__}")
    names = []
    for index, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise InputError(path, f"front matter '{key}' item {index + 1}", f"must be a non-empty string, not {item!r}")
        if item.strip() not in names:
            names.append(item.strip())
    return names


def read_model_card(path: Path) -> CardLineage:
    """The datasets, base models and relation a model card declares."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(path, None, f"cannot read the model card ({exc.strerror or exc})") from None
    if len(data) > MAX_CARD_BYTES:
        raise InputError(path, None, f"larger than {MAX_CARD_BYTES // (1024 * 1024)} MiB; not a model card")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"byte {exc.start}", "not UTF-8 text") from None
    yaml_text, first_line = _front_matter(path, text)
    try:
        metadata = yaml.safe_load(yaml_text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + first_line}" if mark is not None else "front matter"
        reason = getattr(exc, "problem", None) or str(exc)
        raise InputError(path, where, f"invalid YAML: {reason}") from None
    if not isinstance(metadata, dict):
        raise InputError(path, "front matter", "must be a YAML mapping (key: value lines)")
    relation = metadata.get("base_model_relation")
    return CardLineage(
        datasets=_names(path, metadata, "datasets"),
        base_models=_names(path, metadata, "base_model"),
        relation=relation if isinstance(relation, str) else None,
        sha256=hashlib.sha256(data).hexdigest(),
    )
