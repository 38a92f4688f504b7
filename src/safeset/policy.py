"""Policy: rules that turn evidence and scores into one action per row.

A policy is a TOML file (or a preset name) such as::

    name = "my-policy"
    default = "keep"          # when no rule fires
    unchecked = "review"      # rows that could not be checked (fail closed)
    pdq_threshold = 31        # PDQ matches within this Hamming distance (0-64)

    [[rules]]
    name = "unsafe-caption-term"
    action = "remove"                       # remove | review | keep
    signal_types = ["term"]                 # needs a bank match of these types ("*" = any)
    exclude_signal_types = []               # ...except these
    banks = ["*"]                           # ...in these banks
    scores = [{ column = "punsafe", op = ">", value = 0.95 }]   # and all of these hold

A rule fires when all of its conditions hold. Rules are tried in file order
and the first that fires decides the row, so a `keep` rule placed early is an
exception (an allow-list). A row that could not be checked is never kept: if
no rule removes it, it gets the `unchecked` action.
"""

from __future__ import annotations

import hashlib
import json
import operator
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from safeset.errors import ConfigError
from safeset.evidence import UNCHECKED, Evidence

ACTIONS = ("keep", "review", "remove")
DEFAULT_PRESET = "remove-matches"
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq, "!=": operator.ne}
_PC_OPS = {">": pc.greater, ">=": pc.greater_equal, "<": pc.less, "<=": pc.less_equal, "==": pc.equal, "!=": pc.not_equal}


@dataclass(frozen=True)
class ScoreCondition:
    column: str
    op: str
    value: float

    def mask(self, table: pa.RecordBatch | pa.Table) -> np.ndarray:
        """Rows where the condition holds; nulls and NaN never satisfy it."""
        index = _find_column(table, self.column)
        if index is None:
            raise KeyError(self.column)
        column = table.column(index)
        try:
            numeric = pc.cast(column, pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ValueError(f"score column {self.column!r} is not numeric ({column.type})") from None
        result = _PC_OPS[self.op](numeric, self.value)
        return np.asarray(result.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)

    def describe(self) -> str:
        return f"{self.column} {self.op} {self.value:g}"


def _find_column(table, name: str) -> int | None:
    names = table.schema.names
    if name in names:
        return names.index(name)
    lowered = [n.lower() for n in names]
    return lowered.index(name.lower()) if name.lower() in lowered else None


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    signal_types: tuple[str, ...] = ()
    exclude_signal_types: tuple[str, ...] = ()
    banks: tuple[str, ...] = ()
    scores: tuple[ScoreCondition, ...] = ()

    @property
    def needs_match(self) -> bool:
        return bool(self.signal_types or self.banks)

    def accepts(self, item: Evidence) -> bool:
        """Whether this evidence item satisfies the rule's match condition."""
        if item.signal_type == UNCHECKED or item.signal_type in self.exclude_signal_types:
            return False
        if self.signal_types and "*" not in self.signal_types and item.signal_type not in self.signal_types:
            return False
        if self.banks and "*" not in self.banks and item.bank not in self.banks:
            return False
        return True

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "action": self.action}
        if self.signal_types:
            out["signal_types"] = list(self.signal_types)
        if self.exclude_signal_types:
            out["exclude_signal_types"] = list(self.exclude_signal_types)
        if self.banks:
            out["banks"] = list(self.banks)
        if self.scores:
            out["scores"] = [{"column": s.column, "op": s.op, "value": s.value} for s in self.scores]
        return out


@dataclass(frozen=True)
class Decisions:
    """One action per row (index into ACTIONS) and the reasons of withheld rows."""

    actions: np.ndarray  # int8: 0 keep, 1 review, 2 remove
    reasons: dict[int, list[tuple[str, Evidence]]]  # row -> [(rule, evidence)]

    def mask(self, action: str) -> np.ndarray:
        return self.actions == ACTIONS.index(action)


@dataclass(frozen=True)
class Policy:
    name: str
    rules: tuple[Rule, ...]
    default: str = "keep"
    unchecked: str = "review"
    pdq_threshold: int = 31
    description: str = ""
    source_text: str = field(default="", compare=False)

    @property
    def has_score_only_rules(self) -> bool:
        """Whether some rule fires on scores alone, so the policy can act without banks."""
        return any(not rule.needs_match for rule in self.rules)

    @property
    def score_columns(self) -> list[str]:
        return sorted({s.column for rule in self.rules for s in rule.scores})

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "description": self.description,
            "default": self.default,
            "unchecked": self.unchecked,
            "pdq_threshold": self.pdq_threshold,
            "rules": [rule.to_dict() for rule in self.rules],
        }

    def decide(self, num_rows: int, evidence: list[Evidence], table) -> Decisions:
        """Reduce evidence and score columns to one action per row."""
        default_code = ACTIONS.index(self.default)
        actions = np.full(num_rows, default_code, dtype=np.int8)
        reasons: dict[int, list[tuple[str, Evidence]]] = {}
        undecided = np.ones(num_rows, dtype=bool)
        for rule in self.rules:
            fired, hits = self._fires(rule, num_rows, evidence, table)
            fired &= undecided
            if not fired.any():
                continue
            actions[fired] = ACTIONS.index(rule.action)
            undecided &= ~fired
            for row in np.flatnonzero(fired).tolist():
                reasons[row] = [(rule.name, item) for item in hits.get(row, [])]
        self._fail_closed(actions, reasons, evidence)
        return Decisions(actions=actions, reasons=reasons)

    def _fires(self, rule: Rule, num_rows: int, evidence: list[Evidence], table):
        hits: dict[int, list[Evidence]] = {}
        fired = np.ones(num_rows, dtype=bool)
        if rule.needs_match:
            for item in evidence:
                if rule.accepts(item):
                    hits.setdefault(item.row, []).append(item)
            fired = np.zeros(num_rows, dtype=bool)
            if hits:
                fired[list(hits)] = True
        for condition in rule.scores:
            if not fired.any():
                break
            fired &= condition.mask(table)
        if not rule.needs_match:
            # A score-only rule: its evidence is the score itself.
            for row in np.flatnonzero(fired).tolist():
                hits[row] = [
                    Evidence(row=row, signal_type="score", value=cond.describe()) for cond in rule.scores
                ]
        return fired, hits

    def _fail_closed(self, actions, reasons, evidence) -> None:
        """Rows that could not be checked are never kept."""
        unchecked_code = ACTIONS.index(self.unchecked)
        for item in evidence:
            if item.signal_type != UNCHECKED:
                continue
            if actions[item.row] < unchecked_code:
                actions[item.row] = unchecked_code
                reasons[item.row] = []
            if actions[item.row] == unchecked_code:
                reasons.setdefault(item.row, []).append((UNCHECKED, item))


def _parse_rule(raw: dict, where: str) -> Rule:
    allowed = {"name", "action", "signal_types", "exclude_signal_types", "banks", "scores"}
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(f"{where}: unknown rule keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}: every rule needs a `name`")
    action = raw.get("action")
    if action not in ACTIONS:
        raise ConfigError(f"{where}: rule {name!r} action must be one of {', '.join(ACTIONS)}")
    scores = []
    for cond in raw.get("scores", []):
        if not isinstance(cond, dict) or set(cond) != {"column", "op", "value"}:
            raise ConfigError(f"{where}: rule {name!r}: a score condition is {{column, op, value}}")
        if cond["op"] not in _OPS:
            raise ConfigError(f"{where}: rule {name!r}: op must be one of {' '.join(_OPS)}")
        if not isinstance(cond["value"], (int, float)) or isinstance(cond["value"], bool):
            raise ConfigError(f"{where}: rule {name!r}: score value must be a number")
        scores.append(ScoreCondition(str(cond["column"]), cond["op"], float(cond["value"])))

    def names(key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: rule {name!r}: `{key}` must be a list of strings")
        return tuple(value)

    rule = Rule(
        name=name,
        action=action,
        signal_types=names("signal_types"),
        exclude_signal_types=names("exclude_signal_types"),
        banks=tuple(b.upper() for b in names("banks")),
        scores=tuple(scores),
    )
    if not rule.needs_match and not rule.scores:
        raise ConfigError(f"{where}: rule {name!r} has no condition (signal_types, banks or scores)")
    return rule


def parse_policy(text: str, where: str) -> Policy:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: invalid TOML: {exc}") from None
    for key in ("default", "unchecked"):
        if raw.get(key, "keep" if key == "default" else "review") not in ACTIONS:
            raise ConfigError(f"{where}: `{key}` must be one of {', '.join(ACTIONS)}")
    if raw.get("unchecked", "review") == "keep":
        raise ConfigError(f"{where}: `unchecked = \"keep\"` would pass rows that were never checked (fail closed)")
    pdq_threshold = raw.get("pdq_threshold", 31)
    if not isinstance(pdq_threshold, int) or isinstance(pdq_threshold, bool) or not 0 <= pdq_threshold <= 64:
        raise ConfigError(f"{where}: `pdq_threshold` must be an integer from 0 to 64 (the PDQ convention is 31)")
    rules = raw.get("rules", [])
    if not isinstance(rules, list) or not rules:
        raise ConfigError(f"{where}: a policy needs at least one [[rules]] table")
    return Policy(
        name=str(raw.get("name", Path(where).stem)),
        description=str(raw.get("description", "")),
        default=raw.get("default", "keep"),
        unchecked=raw.get("unchecked", "review"),
        pdq_threshold=pdq_threshold,
        rules=tuple(_parse_rule(r, f"{where} rule {i + 1}") for i, r in enumerate(rules)),
        source_text=text,
    )


def preset_names() -> list[str]:
    folder = resources.files("safeset") / "policy_presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_policy(spec: str | None) -> Policy:
    """A preset name or a TOML file path; None = the default preset."""
    spec = spec or DEFAULT_PRESET
    if spec in preset_names():
        text = (resources.files("safeset") / "policy_presets" / f"{spec}.toml").read_text("utf-8")
        return parse_policy(text, f"preset {spec}")
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"policy {spec!r} is neither a preset ({', '.join(preset_names())}) nor a file")
    return parse_policy(path.read_text("utf-8"), str(path))
