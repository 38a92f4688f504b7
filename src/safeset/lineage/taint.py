"""Taint tracing: which datasets held listed samples, and which models they reached.

For each registered dataset version, the listed samples it contains (a sample
is contained when any of its digests is a member). A dataset holding one or
more is tainted; so is every model trained on it and every model descended
from those through base models, each reported with the shortest chain that
links it to a tainted dataset.

A model whose lineage cannot be checked (it names a dataset or base model
that is not registered, or no inputs at all) and is not tainted is reported
as *unverified*: fail closed, it is not passed as clean.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from safeset.errors import ConfigError
from safeset.lineage.graph import LineageGraph, Node, build_graph, shortest_paths
from safeset.lineage.refs import parse_ref
from safeset.lineage.registry import LineageRegistry
from safeset.lineage.sources import DIGEST_COLUMNS, ListedSamples


@dataclass
class TaintReport:
    sources: list[dict]
    listed_samples: int
    review_samples: int
    include_review: bool
    datasets: list[dict]
    tainted_models: list[dict]
    unverified_models: list[dict]
    clean_models: list[str]
    graph: LineageGraph
    selected_models: list[str] = field(default_factory=list)

    @property
    def tainted(self) -> bool:
        """What the exit code reports: for the selected models if any, else for the whole registry."""
        if self.selected_models:
            chosen = set(self.selected_models)
            return any(m["name"] in chosen for m in self.tainted_models + self.unverified_models)
        return bool(self.tainted_models or self.unverified_models or any(d["listed_samples"] for d in self.datasets))

    @property
    def exit_code(self) -> int:
        return 1 if self.tainted else 0

    def to_dict(self) -> dict:
        return {
            "sources": self.sources,
            "listed_samples": self.listed_samples,
            "review_samples": self.review_samples,
            "include_review": self.include_review,
            "datasets": self.datasets,
            "tainted_models": self.tainted_models,
            "unverified_models": self.unverified_models,
            "clean_models": self.clean_models,
            "selected_models": self.selected_models,
            "tainted": self.tainted,
        }


def _contained(index, samples: ListedSamples) -> tuple[np.ndarray, int]:
    """Which samples the dataset holds, and how many digest lookups that took."""
    hit = np.zeros(len(samples), bool)
    lookups = 0
    for kind in DIGEST_COLUMNS:
        rows = np.flatnonzero(samples.valid[kind])
        if len(rows):
            hit[rows] |= index.contains(kind, samples.digests[kind][rows])
            lookups += len(rows)
    return hit, lookups


def count_datasets(registry: LineageRegistry, samples: ListedSamples) -> list[dict]:
    results = []
    for record in registry.datasets():
        index = registry.membership(record)
        hit, lookups = _contained(index, samples)
        stored_kinds = {k for k, n in index.header["digests_by_kind"].items() if n}
        listed_kinds = {k for k in DIGEST_COLUMNS if samples.valid[k].any()}
        bound = float(index.header["false_positive_rate_bound"])
        results.append({
            "name": str(record.ref),
            "listed_samples": int((hit & ~samples.review).sum()),
            "review_samples": int((hit & samples.review).sum()),
            "rows": record.rows,
            "untraceable_rows": int(record.summary.get("untraceable_rows", 0)),
            "digest_kinds_compared": sorted(stored_kinds & listed_kinds),
            "false_positive_rate_bound": bound,
            "expected_false_positives": round(lookups * bound, 6),
        })
    return results


def _names(path: list[Node]) -> list[str]:
    return [name for _, name in path]


def trace_taint(registry: LineageRegistry, samples: ListedSamples, include_review: bool = False,
                models: list[str] = ()) -> TaintReport:
    """Count listed samples per dataset and follow them through the lineage graph."""
    datasets = count_datasets(registry, samples)
    model_records = registry.models()
    graph = build_graph(registry.datasets(), model_records)
    selected = _selected(models, {str(m.ref) for m in model_records})
    sources = [("dataset", d["name"]) for d in datasets if d["listed_samples"]]
    tainted_paths = shortest_paths(graph, sources)
    tainted = [{"name": node[1], "path": _names(path)}
               for node, path in sorted(tainted_paths.items()) if node[0] == "model"]
    unknown_roots = [n for n in graph.nodes if n[0] == "unregistered"]
    unknown_roots += [m for m in graph.models() if not graph.inputs_of(m)]
    unknown_paths = shortest_paths(graph, unknown_roots)
    unverified = [
        {"name": node[1], "path": _names(path), "reason": _reason(path)}
        for node, path in sorted(unknown_paths.items())
        if node[0] == "model" and node not in tainted_paths
    ]
    flagged = {m["name"] for m in tainted + unverified}
    for node in graph.nodes:
        graph.nodes[node]["state"] = ("tainted" if node in tainted_paths
                                      else "unverified" if node in unknown_paths else "clean")
    return TaintReport(
        sources=samples.sources,
        listed_samples=int((~samples.review).sum()),
        review_samples=int(samples.review.sum()),
        include_review=include_review,
        datasets=datasets,
        tainted_models=tainted,
        unverified_models=unverified,
        clean_models=sorted(name for _, name in graph.models() if name not in flagged),
        graph=graph,
        selected_models=selected,
    )


def _reason(path: list[Node]) -> str:
    kind, name = path[0]
    if kind == "unregistered":
        return f"{name} is not registered"
    return f"model {name} has no recorded datasets or base models"


def _selected(models: list[str], registered: set[str]) -> list[str]:
    chosen = []
    for text in models:
        ref = str(parse_ref(text, "model"))
        if ref not in registered:
            raise ConfigError(f"--model {text}: no such registered model")
        chosen.append(ref)
    return sorted(set(chosen))
