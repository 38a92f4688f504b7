"""The run report: one self-contained HTML page for a scan or clean run.

A report gets shared (with managers, auditors, dataset users), so it carries
counts, provenance and row keys but never a URL or a matched value: links to
abuse material must not spread through it. Every untrusted string (keys,
paths, error messages) is escaped, and any web address inside one is
replaced by "[link removed]". The page needs nothing from outside: inline CSS,
SVG charts drawn here, no JavaScript, and a Content-Security-Policy that
forbids scripts and remote loads even if a browser were asked to.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

ROW_TABLE_LIMIT = 1_000
SHARD_CHART_LIMIT = 50
NO_REASON = "(no recorded reason)"
NO_BANK = "(no bank)"

_WEB_ADDRESS = re.compile(r"(?i)(?:\b(?:https?|ftps?|wss?)\s*:\s*/\s*/|\bwww\.)[^\s<>\"']*")
_EXIT_MEANINGS = {
    0: "success",
    1: "internal error (conservation check failed or a bug)",
    2: "configuration error",
    3: "some shards failed",
}


# -- text helpers -----------------------------------------------------------


def _redact(text: str) -> str:
    return _WEB_ADDRESS.sub("[link removed]", text)


def _e(value: Any) -> str:
    """Escaped, redacted text of an untrusted value ("—" for None)."""
    if value is None:
        return "—"
    return html.escape(_redact(str(value)), quote=True)


def _short(value: Any, width: int) -> str:
    """Escaped text cut to `width` characters from the end (after redaction,
    so a cut never leaves part of a web address behind)."""
    text = _redact(str(value))
    if len(text) > width:
        text = "…" + text[-(width - 1):]
    return html.escape(text, quote=True)


def _count(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _e(value)
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _share(part: Any, whole: Any) -> str:
    if not isinstance(part, (int, float)) or not isinstance(whole, (int, float)) or whole <= 0:
        return ""
    pct = 100.0 * part / whole
    if pct == 0 or pct >= 1:
        return f"{pct:.1f}%"
    return f"{pct:.2g}%" if pct >= 0.0001 else "<0.0001%"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return _e(seconds)
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min {secs:02d} s"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{seconds:.1f} s"


def _bytes(size: Any) -> str:
    if not isinstance(size, (int, float)):
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return "—"  # pragma: no cover


def _digest(value: Any) -> str:
    """A digest's first 16 characters (the full one is in run.json)."""
    if not value:
        return "—"
    text = str(value)
    return f"<code>{_e(text[:16])}{'…' if len(text) > 16 else ''}</code>"


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


# -- aggregation ------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    label: str
    remove: int
    review: int
    aggregate: bool = False  # "others": a sum of many, kept off the scale

    @property
    def total(self) -> int:
        return self.remove + self.review


def _bars(counts: dict[str, dict[str, int]]) -> list[Bar]:
    bars = [Bar(label, c.get("remove", 0), c.get("review", 0) + c.get("other", 0)) for label, c in counts.items()]
    return sorted(bars, key=lambda b: (-b.total, b.label))


def _action_kind(action: Any) -> str:
    return action if action in ("remove", "review") else "other"


def _grouped_rows(labels: pa.Array, parents: pa.Array, actions: pa.Array) -> dict[str, dict[str, int]]:
    """Distinct withheld rows per (label, action)."""
    table = pa.table({"label": labels, "row": parents, "action": pc.take(actions, parents)})
    grouped = table.group_by(["label", "action"]).aggregate([("row", "count_distinct")])
    counts: dict[str, dict[str, int]] = {}
    for label, action, rows in zip(
        grouped.column("label").to_pylist(),
        grouped.column("action").to_pylist(),
        grouped.column("row_count_distinct").to_pylist(),
    ):
        per_action = counts.setdefault(label, {})
        kind = _action_kind(action)
        per_action[kind] = per_action.get(kind, 0) + rows
    return counts


def _reason_labels(removed: pa.Table, label_of) -> dict[str, dict[str, int]]:
    actions = removed.column("action").combine_chunks() if removed.num_rows else pa.array([], pa.string())
    reasons = removed.column("reasons").combine_chunks()
    flat = pc.list_flatten(reasons)
    parents = pc.list_parent_indices(reasons)
    counts = _grouped_rows(label_of(flat), parents, actions) if len(flat) else {}
    lengths = pc.fill_null(pc.list_value_length(reasons), 0)
    bare = pc.indices_nonzero(pc.equal(lengths, 0))
    if len(bare):
        bare_counts = _grouped_rows(pa.array([NO_REASON] * len(bare), pa.string()), bare, actions)
        counts.update(bare_counts)
    return counts


def _rule_label(flat: pa.Array) -> pa.Array:
    rules = pc.struct_field(flat, "rule").cast(pa.string())
    return pc.if_else(pc.fill_null(pc.equal(rules, ""), True), "(unnamed rule)", rules)


def _bank_label(flat: pa.Array) -> pa.Array:
    banks = pc.struct_field(flat, "bank").cast(pa.string())
    versions = pc.struct_field(flat, "bank_version").cast(pa.string())
    named = pc.binary_join_element_wise(banks, pc.binary_join_element_wise("v", versions, ""), " ")
    named = pc.coalesce(named, banks)
    return pc.if_else(pc.fill_null(pc.equal(banks, ""), True), NO_BANK, named)


def _shard_counts(removed: pa.Table) -> dict[str, dict[str, int]]:
    if not removed.num_rows:
        return {}
    table = pa.table({"source": pc.fill_null(removed.column("source").cast(pa.string()), "(unknown)"),
                      "action": removed.column("action").cast(pa.string())})
    grouped = table.group_by(["source", "action"]).aggregate([([], "count_all")])
    counts: dict[str, dict[str, int]] = {}
    for source, action, rows in zip(*(grouped.column(n).to_pylist() for n in ("source", "action", "count_all"))):
        per_action = counts.setdefault(source, {})
        kind = _action_kind(action)
        per_action[kind] = per_action.get(kind, 0) + rows
    return counts


def _add_counts(into: dict[str, dict[str, int]], counts: dict[str, dict[str, int]]) -> None:
    for label, per_action in counts.items():
        target = into.setdefault(label, {})
        for kind, rows in per_action.items():
            target[kind] = target.get(kind, 0) + rows


@dataclass
class WithheldSummary:
    """What the page shows of removed.parquet, gathered batch by batch so a
    run that withheld hundreds of millions of rows still renders in bounded memory."""

    rows: int = 0
    by_rule: dict[str, dict[str, int]] = field(default_factory=dict)
    by_bank: dict[str, dict[str, int]] = field(default_factory=dict)
    by_shard: dict[str, dict[str, int]] = field(default_factory=dict)
    first_rows: list[pa.Table] = field(default_factory=list)

    @classmethod
    def of_tables(cls, tables: Iterable[pa.Table]) -> "WithheldSummary":
        summary = cls()
        for table in tables:
            summary.add(table)
        return summary

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        _add_counts(self.by_rule, _reason_labels(table, _rule_label))
        _add_counts(self.by_bank, _reason_labels(table, _bank_label))
        _add_counts(self.by_shard, _shard_counts(table))
        room = ROW_TABLE_LIMIT - sum(t.num_rows for t in self.first_rows)
        if room > 0:
            self.first_rows.append(table.slice(0, room))
        self.rows += table.num_rows


def _top(bars: list[Bar], limit: int) -> list[Bar]:
    if len(bars) <= limit:
        return bars
    rest = bars[limit:]
    others = Bar(f"others ({len(rest):,} shards)", sum(b.remove for b in rest), sum(b.review for b in rest), True)
    return bars[:limit] + [others]


# -- HTML pieces ------------------------------------------------------------


def _table(caption: str, headers: list[str], rows: Iterable[list[str]], numeric: set[int] = frozenset(),
           row_headers: bool = True) -> str:
    """A semantic table; cells are already-escaped HTML."""
    num = ' class="num"'
    head = "".join(f'<th scope="col"{num if i in numeric else ""}>{h}</th>' for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="num"' if i in numeric else ""
            if i == 0 and row_headers:
                cells.append(f'<th scope="row"{cls}>{cell}</th>')
            else:
                cells.append(f"<td{cls}>{cell}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (
        f'<div class="scroll"><table><caption>{caption}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _bar_chart(chart_id: str, title: str, bars: list[Bar], label_name: str) -> str:
    """Horizontal stacked bars (remove, review) as inline SVG, then the same
    numbers as a table for screen readers and copying.

    Labels sit above their bars so the chart stays narrow (360 units) and its
    text readable on a phone. An aggregate bar ("others") does not set the
    scale: it is cut at the chart's edge and says so.
    """
    if not bars:
        return "<p>No withheld rows.</p>"
    width, plot_w, row_h, top = 360, 270, 34, 26
    height = top + row_h * len(bars) + 4
    scaled = [b.total for b in bars if not b.aggregate] or [b.total for b in bars]
    scale = plot_w / max(max(scaled), 1)
    removed = sum(b.remove for b in bars)
    review = sum(b.review for b in bars)
    desc = (
        f"{len(bars)} bars; largest {_e(bars[0].label)} with {bars[0].total:,} rows. "
        f"In total {removed:,} removed and {review:,} sent to review."
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" preserveAspectRatio="xMinYMin meet">',
        f'<title id="{chart_id}-t">{_e(title)}</title><desc id="{chart_id}-d">{desc}</desc>',
        '<rect class="remove" x="0" y="4" width="12" height="12"/><text x="17" y="15">remove</text>'
        '<rect class="review" x="80" y="4" width="12" height="12"/><text x="97" y="15">review</text>',
    ]
    for i, bar in enumerate(bars):
        y = top + i * row_h
        w_remove = max(bar.remove * scale, 1.0) if bar.remove else 0.0
        w_review = max(bar.review * scale, 1.0) if bar.review else 0.0
        cut = w_remove + w_review > plot_w
        if cut:
            factor = plot_w / (w_remove + w_review)
            w_remove, w_review = w_remove * factor, w_review * factor
        note = " (bar cut, not to scale)" if cut else ""
        rects = []
        if w_remove:
            rects.append(f'<rect class="remove" x="0" y="{y + 16}" width="{w_remove:.1f}" height="13"/>')
        if w_review:
            rects.append(f'<rect class="review" x="{w_remove:.1f}" y="{y + 16}" width="{w_review:.1f}" height="13"/>')
        parts.append(
            f"<g><title>{_e(bar.label)}: {bar.remove:,} removed, {bar.review:,} review{note}</title>"
            f'<text x="0" y="{y + 12}">{_short(bar.label, 58)}</text>{"".join(rects)}'
            f'<text x="{w_remove + w_review + 4:.1f}" y="{y + 27}">{bar.total:,}{"+" if cut else ""}</text></g>'
        )
    parts.append("</svg>")
    table = _table(
        f"{_e(title)} (data)",
        [_e(label_name), "Removed", "Review", "Total"],
        ([_e(b.label), f"{b.remove:,}", f"{b.review:,}", f"{b.total:,}"] for b in bars),
        numeric={1, 2, 3},
    )
    return (
        f'<figure><div class="scroll">{"".join(parts)}</div>'
        f"<details><summary>Show as a table</summary>{table}</details></figure>"
    )


_CSS = """
:root{--fg:#1b1b1b;--muted:#4a4a4a;--bg:#fff;--panel:#f3f4f6;--line:#c9ccd1;--remove:#b8430a;
--review:#0062a3;--ok:#1e6b33;--warn:#8a5300;--bad:#a4161a}
@media (prefers-color-scheme:dark){:root{--fg:#ececec;--muted:#c4c4c4;--bg:#16181b;--panel:#23262b;
--line:#4a4f57;--remove:#f08a4b;--review:#62b0f0;--ok:#7bd88f;--warn:#f0c060;--bad:#ff8a8a}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--fg);font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,
"Helvetica Neue",Arial,sans-serif}
header,main,footer{max-width:72rem;margin:0 auto;padding:0 1rem}
header{padding-top:1rem}
h1{font-size:1.6rem;margin:.5rem 0}h2{font-size:1.3rem;margin:2rem 0 .5rem;border-bottom:2px solid var(--line)}
h3{font-size:1.05rem;margin:1.25rem 0 .5rem}
nav ul{list-style:none;padding:0;margin:.5rem 0}nav li{display:inline-block;margin:0 1rem .25rem 0}
a{color:var(--review)}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
.status{padding:.75rem 1rem;border-left:6px solid;background:var(--panel);font-weight:600}
.status.ok{border-color:var(--ok)}.status.warn{border-color:var(--warn)}.status.bad{border-color:var(--bad)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(10rem,1fr));gap:.75rem;margin:1rem 0;padding:0}
.cards li{list-style:none;background:var(--panel);padding:.6rem .8rem;border-radius:6px}
.cards .n{display:block;font-size:1.4rem;font-weight:700;font-variant-numeric:tabular-nums}
.scroll{overflow-x:auto;margin:.5rem 0 1rem}
table{border-collapse:collapse;width:100%;font-size:.92rem}
caption{text-align:left;font-weight:600;padding:.25rem 0;color:var(--muted)}
th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top}
thead th{background:var(--panel)}
tbody tr:nth-child(even){background:var(--panel)}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
dl.kv{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.5rem 0}
dl.kv dt{font-weight:600}dl.kv dd{margin:0;word-break:break-word}
figure{margin:.5rem 0 1.5rem}
svg.chart{width:100%;min-width:300px;max-width:32rem;height:auto;display:block;font-size:12px}
svg.chart text{fill:var(--fg)}svg.chart .remove{fill:var(--remove)}svg.chart .review{fill:var(--review)}
details summary{cursor:pointer;color:var(--muted)}
.muted{color:var(--muted)}
@media (max-width:40rem){body{font-size:15px}th,td{padding:.25rem .35rem}}
"""


# -- sections ---------------------------------------------------------------


def _exit_code(run: dict, failed: list, conservation_ok: Any) -> int:
    code = run.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    if conservation_ok is False:
        return 1
    return 3 if failed else 0


def _status_banner(exit_code: int, conservation_ok: Any, failed: list) -> str:
    if conservation_ok is False:
        return ('<p class="status bad" role="status">✗ Conservation check failed: input rows do not equal '
                "kept + removed + review. Do not use this output.</p>")
    if failed:
        return (f'<p class="status warn" role="status">⚠ {len(failed):,} shard(s) failed; their rows are not '
                "accounted for. Fix the errors below and rerun with --resume.</p>")
    if exit_code != 0:
        return f'<p class="status bad" role="status">✗ Run ended with exit status {exit_code}.</p>'
    return '<p class="status ok" role="status">✓ Completed: every input row is accounted for.</p>'


def _summary(run: dict, withheld: "WithheldSummary") -> str:
    counts = _dict(run.get("counts"))
    timings = _dict(run.get("timings"))
    failed = _list(run.get("failed_shards"))
    shards = _list(run.get("shards"))
    conservation_ok = run.get("conservation_ok")
    exit_code = _exit_code(run, failed, conservation_ok)
    total = counts.get("input_rows")
    cards = "".join(
        f'<li><span class="n">{_count(counts.get(key))}</span>{label} '
        f'<span class="muted">{_share(counts.get(key), total) if key != "input_rows" else ""}</span></li>'
        for key, label in (("input_rows", "input rows"), ("kept_rows", "kept"),
                           ("removed_rows", "removed"), ("review_rows", "sent to review"))
    )
    parts = [f'<ul class="cards" aria-label="Row counts">{cards}</ul>']

    sides = [counts.get(k) for k in ("kept_rows", "removed_rows", "review_rows")]
    if all(isinstance(x, int) for x in sides) and isinstance(total, int):
        balanced = total == sum(sides)
        equation = (f"{_count(total)} input {'=' if balanced else '≠'} {_count(sides[0])} kept + "
                    f"{_count(sides[1])} removed + {_count(sides[2])} review")
    else:
        balanced, equation = None, "counts missing"
    verdict = {True: "✓ passed", False: "✗ FAILED", None: "not recorded"}
    conservation = verdict[conservation_ok if isinstance(conservation_ok, bool) else None]
    withheld_expected = (counts.get("removed_rows") or 0) + (counts.get("review_rows") or 0)
    records_ok = withheld.rows == withheld_expected
    done = sum(1 for s in shards if isinstance(s, dict) and s.get("status") == "done")
    items = [
        ("Exit status", f"{exit_code} ({_e(_EXIT_MEANINGS.get(exit_code, 'unknown'))})"),
        ("Conservation check", f"{conservation} — {equation}"),
        ("Withheld-row records",
         f"{'✓' if records_ok else '✗'} removed.parquet holds {withheld.rows:,} rows "
         f"(removed + review = {withheld_expected:,})"),
        ("Shards", f"{done:,} done, {len(failed):,} failed, {len(shards):,} in the run"),
        ("Started", _e(timings.get("started"))),
        ("Finished", _e(timings.get("finished"))),
        ("Duration", _duration(timings.get("seconds"))),
        ("Throughput", f"{_count(timings.get('rows_per_second'))} rows/s"),
    ]
    unavailable = _list(run.get("unavailable_signals"))
    if unavailable:
        items.append(("Signals not checked",
                      "⚠ the dataset could not provide: " + ", ".join(_e(s) for s in unavailable)))
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    parts.append(f"<dl class=\"kv\">{rows}</dl>")
    return _status_banner(exit_code, conservation_ok, failed) + "".join(parts)


def _provenance(run: dict) -> str:
    dataset = _dict(run.get("dataset"))
    shard_files = _list(dataset.get("shards"))
    size = sum(s.get("bytes") or 0 for s in shard_files if isinstance(s, dict)
               and isinstance(s.get("bytes"), (int, float)))
    items = [
        ("Command", _e(run.get("command"))),
        ("Dataset", f'<span class="mono">{_e(dataset.get("path"))}</span>'),
        ("Format", _e(dataset.get("format"))),
        ("Shards read", f"{len(shard_files):,} ({_bytes(size)}; checksum of each in run.json)"),
        ("Output", f'<span class="mono">{_e(run.get("out"))}</span>'),
        ("safeset version", _e(run.get("safeset_version"))),
    ]
    rows = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<dl class="kv">{rows}</dl>'


def _banks_section(run: dict) -> str:
    banks = [b for b in _list(run.get("banks")) if isinstance(b, dict)]
    if not banks:
        return "<p>No banks were used.</p>"
    rows = []
    for bank in banks:
        counts = _dict(bank.get("counts"))
        entries = "; ".join(f"{_e(t)}: {_count(n)}" for t, n in sorted(counts.items())) or "—"
        rows.append([_e(bank.get("name")), _e(bank.get("version")), _digest(bank.get("digest")), entries])
    return _table("Bank versions matched against", ["Bank", "Version", "Digest", "Entries by signal type"], rows,
                  numeric={1})


def _rule_condition(rule: dict) -> str:
    parts = []
    if rule.get("signal_types"):
        parts.append("signal types: " + ", ".join(_e(s) for s in _list(rule["signal_types"])))
    if rule.get("exclude_signal_types"):
        parts.append("except: " + ", ".join(_e(s) for s in _list(rule["exclude_signal_types"])))
    if rule.get("banks"):
        parts.append("banks: " + ", ".join(_e(s) for s in _list(rule["banks"])))
    for score in _list(rule.get("scores")):
        if isinstance(score, dict):
            parts.append(f"{_e(score.get('column'))} {_e(score.get('op'))} {_e(score.get('value'))}")
    return "; ".join(parts) or "—"


def _policy_section(run: dict) -> str:
    policy = _dict(run.get("policy"))
    items = [("Policy", _e(policy.get("name"))), ("Digest", _digest(policy.get("digest")))]
    if policy.get("description"):
        items.append(("Description", _e(policy.get("description"))))
    if "default" in policy:
        items.append(("Rows no rule decides", _e(policy.get("default"))))
    if "unchecked" in policy:
        items.append(("Rows that could not be checked", _e(policy.get("unchecked"))))
    out = '<dl class="kv">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"
    rules = [r for r in _list(policy.get("rules")) if isinstance(r, dict)]
    if rules:
        out += _table(
            "Rules, in the order they are applied (first match decides)",
            ["#", "Rule", "Action", "Condition"],
            ([str(i), _e(r.get("name")), _e(r.get("action")), _rule_condition(r)] for i, r in enumerate(rules, 1)),
            numeric={0},
        )
    return out


def _failed_section(run: dict) -> str:
    failed = [f for f in _list(run.get("failed_shards")) if isinstance(f, dict)]
    if not failed:
        return "<p>No shard failed.</p>"
    return _table(
        f"{len(failed):,} failed shard(s)",
        ["Shard", "Error"],
        ([f'<span class="mono">{_e(f.get("relpath"))}</span>', _e(f.get("error"))] for f in failed),
    )


def _distinct(values: Iterable[str]) -> str:
    seen: dict[str, None] = {}
    for value in values:
        seen.setdefault(value, None)
    return ", ".join(_e(v) for v in seen) or "—"


def _rows_section(withheld: WithheldSummary) -> str:
    if not withheld.rows:
        return "<p>No rows were withheld.</p>"
    wanted = ("key", "source", "position", "action", "reasons")
    records = [
        record
        for table in withheld.first_rows
        for record in table.select([c for c in wanted if c in table.column_names]).to_pylist()
    ]
    rows = []
    for record in records:
        reasons = [r for r in (record.get("reasons") or []) if r]
        banks = (
            f"{r.get('bank')} v{r.get('bank_version')}" if r.get("bank_version") is not None else str(r.get("bank"))
            for r in reasons if r.get("bank")
        )
        rows.append([
            f'<span class="mono">{_e(record.get("key"))}</span>',
            f'<span class="mono">{_e(record.get("source"))}</span>',
            _count(record.get("position")),
            _e(record.get("action")),
            _distinct(str(r.get("rule")) for r in reasons) if reasons else _e(NO_REASON),
            _distinct(banks),
            _distinct(str(r.get("signal_type")) for r in reasons),
        ])
    note = (f"First {len(records):,} of {withheld.rows:,} withheld rows" if withheld.rows > len(records)
            else f"All {withheld.rows:,} withheld rows")
    return _table(
        f"{note}, in record order (no URLs or matched values are shown)",
        ["Key", "Shard", "Position", "Action", "Rules", "Banks", "Signal types"],
        rows,
        numeric={2},
    )


def _charts(withheld: WithheldSummary) -> str:
    if not withheld.rows:
        return "<p>No rows were withheld.</p>"
    shard_bars = _bars(withheld.by_shard)
    return (
        "<h3>By rule</h3>"
        + _bar_chart("by-rule", "Withheld rows by policy rule", _bars(withheld.by_rule), "Rule")
        + "<h3>By bank</h3>"
        + _bar_chart("by-bank", "Withheld rows by bank", _bars(withheld.by_bank), "Bank")
        + "<h3>By shard</h3>"
        + (f'<p class="muted">The {SHARD_CHART_LIMIT} shards with most withheld rows; the other '
           f"{len(shard_bars) - SHARD_CHART_LIMIT:,} are summed.</p>" if len(shard_bars) > SHARD_CHART_LIMIT else "")
        + _bar_chart("by-shard", "Withheld rows by shard", _top(shard_bars, SHARD_CHART_LIMIT), "Shard")
        + f'<p class="muted">A row matched by several rules or banks counts once under each. '
        f"{_e(NO_REASON)}: withheld by a rule that records no bank evidence (a score rule, say).</p>"
    )


_SECTIONS = (
    ("summary", "Summary"),
    ("provenance", "Dataset and output"),
    ("banks", "Banks"),
    ("policy", "Policy"),
    ("charts", "Withheld rows"),
    ("failures", "Failed shards"),
    ("rows", "Withheld rows (first 1,000)"),
)


def render_report(run: dict, removed: pa.Table | WithheldSummary) -> str:
    """The whole report page for `run` (run.json) and its removed.parquet
    (a table, or a `WithheldSummary` gathered from it batch by batch)."""
    run = _dict(run)
    if not isinstance(removed, WithheldSummary):
        removed = WithheldSummary.of_tables([removed])
    command = run.get("command") if run.get("command") in ("scan", "clean") else "run"
    dataset_path = _dict(run.get("dataset")).get("path")
    bodies = {
        "summary": _summary(run, removed),
        "provenance": _provenance(run),
        "banks": _banks_section(run),
        "policy": _policy_section(run),
        "charts": _charts(removed),
        "failures": _failed_section(run),
        "rows": _rows_section(removed),
    }
    nav = "".join(f'<li><a href="#{sid}">{title}</a></li>' for sid, title in _SECTIONS)
    sections = "".join(
        f'<section id="{sid}" aria-labelledby="{sid}-h"><h2 id="{sid}-h">{title}</h2>{bodies[sid]}</section>'
        for sid, title in _SECTIONS
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="referrer" content="no-referrer"><meta name="robots" content="noindex">'
        f"<title>safeset {command} report — {_e(dataset_path)}</title><style>{_CSS}</style></head>"
        f'<body><header><h1>safeset {command} report</h1>'
        f'<p class="mono">{_e(dataset_path)}</p>'
        f'<nav aria-label="Sections"><ul>{nav}</ul></nav></header>'
        f"<main>{sections}</main>"
        '<footer><p class="muted">Generated by safeset '
        f"{_e(run.get('safeset_version'))}. This page shows row keys and counts only: no URLs, no matched "
        "values and no images. The full records are in removed.parquet and run.json; share those only "
        "with people entitled to see them.</p></footer></body></html>\n"
    )
