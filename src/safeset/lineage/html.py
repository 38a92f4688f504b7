"""The taint report as one self-contained HTML page with the lineage graph drawn in SVG.

Offline by construction: inline CSS and SVG, no scripts, no external
references, and a Content-Security-Policy that forbids loading anything. It
names datasets, models and source files only: never a sample, a URL or a
digest.
"""

from __future__ import annotations

from html import escape

from safeset.lineage.graph import LineageGraph, Node, layers
from safeset.lineage.taint import TaintReport

BOX_WIDTH, BOX_HEIGHT = 250, 40
COLUMN_GAP, ROW_GAP = 90, 26
MARGIN = 30
MAX_LABEL = 34
COLOURS = {"tainted": "#c62828", "unverified": "#e08600", "clean": "#2e7d32"}
FILLS = {"tainted": "#fdecea", "unverified": "#fff4e0", "clean": "#edf7ee"}

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2rem; color: #1b1b1b; }
h1 { font-size: 1.4rem; } h2 { font-size: 1.1rem; margin-top: 2rem; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #ccc; padding: .25rem .6rem; text-align: left; vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.verdict { padding: .6rem 1rem; border-radius: 6px; display: inline-block; font-weight: 600; }
.tainted { background: #fdecea; color: #8e1b1b; } .clean { background: #edf7ee; color: #1e5a22; }
.graph { overflow-x: auto; border: 1px solid #ddd; padding: .5rem; }
svg text { font: 12px system-ui, sans-serif; }
.path { font-family: ui-monospace, monospace; font-size: 12px; }
"""


def _label(name: str) -> str:
    return name if len(name) <= MAX_LABEL else name[: MAX_LABEL - 1] + "\u2026"


def _positions(graph: LineageGraph) -> dict[Node, tuple[int, int]]:
    level = layers(graph)
    columns: dict[int, list[Node]] = {}
    for node in sorted(graph.nodes, key=lambda n: (n[0] != "dataset", n)):
        columns.setdefault(level[node], []).append(node)
    positions = {}
    for column, nodes in columns.items():
        for row, node in enumerate(nodes):
            positions[node] = (MARGIN + column * (BOX_WIDTH + COLUMN_GAP), MARGIN + row * (BOX_HEIGHT + ROW_GAP))
    return positions


def _svg(graph: LineageGraph) -> str:
    if not graph.nodes:
        return "<p>No datasets or models are registered.</p>"
    positions = _positions(graph)
    width = max(x for x, _ in positions.values()) + BOX_WIDTH + MARGIN
    height = max(y for _, y in positions.values()) + BOX_HEIGHT + MARGIN
    parts = [
        f'<svg width="{width}" height="{height}" role="img" '
        'aria-label="lineage graph">',
        "<defs>",
        *(f'<marker id="arrow-{state}" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" '
          f'markerWidth="10" markerHeight="10" orient="auto-start-reverse">'
          f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
          for state, colour in COLOURS.items()),
        "</defs>",
    ]
    for source in sorted(graph.edges):
        state = graph.nodes[source].get("state", "clean")
        for target in sorted(graph.edges[source]):
            (x1, y1), (x2, y2) = positions[source], positions[target]
            start_x, start_y, end_x, end_y = x1 + BOX_WIDTH, y1 + BOX_HEIGHT // 2, x2, y2 + BOX_HEIGHT // 2
            bend = max(40, (end_x - start_x) // 2)
            parts.append(
                f'<path d="M{start_x},{start_y} C{start_x + bend},{start_y} {end_x - bend},{end_y} {end_x},{end_y}" '
                f'fill="none" stroke="{COLOURS[state]}" stroke-width="{2.5 if state == "tainted" else 1.5}" '
                f'marker-end="url(#arrow-{state})"/>'
            )
    for node, (x, y) in sorted(positions.items()):
        kind, name = node
        state = graph.nodes[node].get("state", "clean")
        radius = 3 if kind == "dataset" else 16
        dash = ' stroke-dasharray="5 4"' if kind == "unregistered" else ""
        tag = {"dataset": "dataset", "model": "model", "unregistered": "not registered"}[kind]
        relation = graph.nodes[node].get("relation")
        if relation:
            tag += f" \u00b7 {relation}"
        parts.append(
            f'<g><title>{escape(kind)} {escape(name)} ({state})</title>'
            f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="{radius}" '
            f'fill="{FILLS[state]}" stroke="{COLOURS[state]}" stroke-width="{2 if state == "tainted" else 1.2}"{dash}/>'
            f'<text x="{x + 10}" y="{y + 17}" font-weight="600">{escape(_label(name))}</text>'
            f'<text x="{x + 10}" y="{y + 32}" fill="#555">{escape(tag)} \u00b7 {state}</text></g>'
        )
    parts.append("</svg>")
    return "\n".join(parts)


def _table(headers: list[str], rows: list[list], numeric: set[int] = frozenset()) -> str:
    if not rows:
        return "<p>None.</p>"
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f'<td{" class=n" if i in numeric else ""}>{cell}</td>' for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _path(path: list[str]) -> str:
    return '<span class="path">' + " \u2192 ".join(escape(p) for p in path) + "</span>"


def render_html(report: TaintReport) -> str:
    verdict = ("tainted", "Something is tainted") if report.tainted else ("clean", "Nothing is tainted")
    scope = (f" (checked for {', '.join(report.selected_models)})" if report.selected_models else "")
    sections = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        "<title>safeset lineage taint</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>safeset lineage: taint report</h1>",
        f'<p class="verdict {verdict[0]}">{verdict[1]}{escape(scope)}</p>',
        f"<p>{report.listed_samples:,} listed samples"
        + (f", {report.review_samples:,} withheld for review (not counted)" if report.review_samples else "")
        + (" (review rows counted as listed)" if report.include_review else "") + ".</p>",
        '<h2>Lineage graph</h2><div class="graph">', _svg(report.graph), "</div>",
        "<h2>Datasets</h2>",
        _table(
            ["dataset", "rows", "listed samples", "review samples", "digests compared", "expected false positives"],
            [[escape(d["name"]), f"{d['rows']:,}", f"{d['listed_samples']:,}", f"{d['review_samples']:,}",
              escape(", ".join(d["digest_kinds_compared"]) or "none"), f"{d['expected_false_positives']:.2g}"]
             for d in report.datasets],
            numeric={1, 2, 3, 5},
        ),
        "<h2>Tainted models</h2>",
        _table(["model", "path"], [[escape(m["name"]), _path(m["path"])] for m in report.tainted_models]),
        "<h2>Unverified models</h2>",
        _table(["model", "reason", "path"],
               [[escape(m["name"]), escape(m["reason"]), _path(m["path"])] for m in report.unverified_models]),
        "<h2>Sources</h2>",
        _table(["source", "kind", "rows", "note"],
               [[escape(s["path"]), escape(s["kind"]), f"{s['rows']:,}", escape(s.get("warning", ""))]
                for s in report.sources], numeric={2}),
        "</body></html>",
    ]
    return "\n".join(sections) + "\n"


def write_html(report: TaintReport, path) -> None:
    """Write the page atomically (temporary sibling, then rename)."""
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    temporary.write_text(render_html(report), encoding="utf-8")
    os.replace(temporary, path)
