"""The lineage graph: datasets feed models, base models feed their fine-tunes and merges.

Nodes are (kind, name) pairs, kind "dataset", "model" or "unregistered" (a
reference that names nothing registered), since a dataset and a model may
share a name. Edges point from an input to the model made from it. Nothing
here assumes the graph is acyclic: registrations that allow unregistered
references can close a loop, and every walk keeps a visited set.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from safeset.lineage.refs import Ref

Node = tuple[str, str]  # (kind, "NAME@VERSION")


@dataclass
class LineageGraph:
    nodes: dict[Node, dict] = field(default_factory=dict)  # node -> attributes
    edges: dict[Node, set[Node]] = field(default_factory=dict)  # input -> models made from it

    def add_node(self, node: Node, **attributes) -> None:
        self.nodes.setdefault(node, {}).update(attributes)
        self.edges.setdefault(node, set())

    def add_edge(self, source: Node, target: Node) -> None:
        self.add_node(source)
        self.add_node(target)
        self.edges[source].add(target)

    def inputs_of(self, node: Node) -> list[Node]:
        return sorted(source for source, targets in self.edges.items() if node in targets)

    def models(self) -> list[Node]:
        return sorted(n for n in self.nodes if n[0] == "model")


def build_graph(datasets, models) -> LineageGraph:
    """From registry records: references resolve to registered versions, else to "unregistered" nodes."""
    graph = LineageGraph()
    registered_datasets = {str(d.ref) for d in datasets}
    registered_models = {str(m.ref) for m in models}
    for dataset in datasets:
        graph.add_node(("dataset", str(dataset.ref)))
    for model in models:
        node = ("model", str(model.ref))
        graph.add_node(node, relation=model.relation)
        for item in model.inputs:
            graph.add_edge(_input_node(item.kind, item.ref, registered_datasets, registered_models), node)
    return graph


def _input_node(kind: str, ref: Ref, datasets: set[str], models: set[str]) -> Node:
    name = str(ref)
    if kind == "dataset":
        return ("dataset", name) if name in datasets else ("unregistered", f"dataset {name}")
    return ("model", name) if name in models else ("unregistered", f"model {name}")


def shortest_paths(graph: LineageGraph, sources: list[Node]) -> dict[Node, list[Node]]:
    """For every node reachable from any source, a shortest path from one (ties: the first in sorted order)."""
    paths: dict[Node, list[Node]] = {}
    queue: deque[Node] = deque()
    for source in sorted(set(sources)):
        paths[source] = [source]
        queue.append(source)
    while queue:
        node = queue.popleft()
        for target in sorted(graph.edges.get(node, ())):
            if target not in paths:
                paths[target] = paths[node] + [target]
                queue.append(target)
    return paths


def layers(graph: LineageGraph) -> dict[Node, int]:
    """A column for drawing: inputs at 0, each model one right of its furthest input (loops cut)."""
    level = {node: 0 for node in graph.nodes}
    for _ in range(len(graph.nodes)):  # longest-path relaxation; a loop stops growing after |nodes| rounds
        changed = False
        for source in sorted(graph.edges):
            for target in graph.edges[source]:
                if level[target] < level[source] + 1 <= len(graph.nodes):
                    level[target] = level[source] + 1
                    changed = True
        if not changed:
            break
    return level
