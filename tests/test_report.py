"""The HTML run report: self-contained, escaped, free of URLs and matched values."""

from __future__ import annotations

import re
from collections import Counter
from html.parser import HTMLParser

import pyarrow as pa
import pytest

from safeset.jobs.records import REMOVED_SCHEMA
from safeset.report.html import render_report

VOID = {"meta", "br", "hr", "img", "input", "link", "rect", "col", "wbr"}


def make_run(shards: int = 3, failed: int = 0, removed: int = 0, review: int = 0, kept: int = 1000) -> dict:
    done = [f"part-{i:05d}.parquet" for i in range(shards)]
    bad = [f"bad-{i:05d}.parquet" for i in range(failed)]
    return {
        "safeset_version": "0.1.0",
        "command": "clean",
        "dataset": {
            "path": "/data/benign-set",
            "format": "parquet",
            "shards": [{"relpath": r, "xxh3_128": "ab" * 16, "bytes": 1000} for r in done],
        },
        "out": "/out/cleaned",
        "banks": [{"name": "test-urls", "version": 2, "digest": "cd" * 32, "counts": {"url_md5": 5, "domain": 1}}],
        "policy": {
            "name": "remove-matches",
            "digest": "ef" * 32,
            "default": "keep",
            "unchecked": "review",
            "rules": [
                {"name": "bank-match", "action": "remove", "signal_types": ["*"]},
                {"name": "score-rule", "action": "remove", "scores": [{"column": "punsafe", "op": ">", "value": 0.45}]},
            ],
        },
        "counts": {
            "input_rows": kept + removed + review,
            "kept_rows": kept,
            "removed_rows": removed,
            "review_rows": review,
        },
        "shards": [{"relpath": r, "status": "done"} for r in done]
        + [{"relpath": r, "status": "failed", "error": "broken"} for r in bad],
        "failed_shards": [{"relpath": r, "error": f"{r}: row group 1: cannot decode column"} for r in bad],
        "timings": {
            "started": "2026-01-01T00:00:00+00:00",
            "finished": "2026-01-01T00:01:40+00:00",
            "seconds": 100.0,
            "rows_per_second": 12345,
        },
        "conservation_ok": True,
        "exit_code": 3 if failed else 0,
    }


def url_reason(i: int) -> dict:
    return {"rule": "bank-match", "signal_type": "url_md5", "bank": "test-urls", "bank_version": 2,
            "value": f"https://example.com/matched-{i}.jpg", "distance": None}


def term_reason(i: int) -> dict:
    return {"rule": "bank-match", "signal_type": "term", "bank": "test-terms", "bank_version": 1,
            "value": f"placeholdervalue{i}", "distance": None}


def make_removed(n: int, shards: int = 3, keys=None) -> pa.Table:
    rows = []
    for i in range(n):
        review = i % 4 == 0
        if review:
            reasons = [{"rule": "unchecked", "signal_type": "unchecked", "bank": None, "bank_version": None,
                        "value": "undecodable image", "distance": None}]
        elif i % 7 == 0:
            reasons = []  # a score-only rule records no evidence
        elif i % 3 == 0:
            reasons = [url_reason(i), term_reason(i)]
        else:
            reasons = [url_reason(i), url_reason(i + 1)]
        rows.append({
            "key": keys[i] if keys else f"{i:09d}",
            "source": f"part-{i % shards:05d}.parquet",
            "position": i,
            "url": f"http://example.org/image-{i}.jpg",
            "url_sha256": f"{i:064x}",
            "action": "review" if review else "remove",
            "reasons": reasons,
        })
    return pa.Table.from_pylist(rows, schema=REMOVED_SCHEMA)


def counts_of(table: pa.Table) -> tuple[int, int]:
    actions = Counter(table.column("action").to_pylist())
    return actions["remove"], actions["review"]


def render(removed: pa.Table, **run_args) -> str:
    remove, review = counts_of(removed)
    return render_report(make_run(removed=remove, review=review, **run_args), removed)


class _Structure(HTMLParser):
    """Checks nesting and collects what the assertions look at."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.ids: list[str] = []
        self.tags: Counter = Counter()
        self.attrs: list[tuple[str, str, str | None]] = []
        self.th_without_scope = 0

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        for name, value in attrs:
            self.attrs.append((tag, name, value))
            if name == "id":
                self.ids.append(value)
        if tag == "th" and "scope" not in dict(attrs):
            self.th_without_scope += 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        self.tags[tag] += 1
        for name, value in attrs:
            self.attrs.append((tag, name, value))

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def structure(page: str) -> _Structure:
    parser = _Structure()
    parser.feed(page)
    parser.close()
    assert not parser.errors, parser.errors[:3]
    assert parser.stack == [], parser.stack
    assert len(parser.ids) == len(set(parser.ids)), "duplicate ids"
    return parser


def section(page: str, section_id: str) -> str:
    start = page.index(f'<section id="{section_id}"')
    return page[start:page.index("</section>", start)]


def data_table(page: str, caption: str) -> dict[str, tuple[int, int, int]]:
    """label -> (removed, review, total) from a chart's text table."""
    start = page.index(f"<caption>{caption}</caption>")
    body = page[start:page.index("</table>", start)]
    out = {}
    for label, *numbers in re.findall(r"<tr><th scope=\"row\">(.*?)</th>" + r"<td class=\"num\">([\d,]+)</td>" * 3,
                                      body):
        out[label] = tuple(int(n.replace(",", "")) for n in numbers)
    return out


# -- tests ------------------------------------------------------------------


def test_empty_run_renders():
    page = render_report({}, REMOVED_SCHEMA.empty_table())
    structure(page)
    assert page.startswith("<!DOCTYPE html>")
    assert "No rows were withheld" in page and "No shard failed" in page


def test_run_without_withheld_rows():
    page = render(REMOVED_SCHEMA.empty_table())
    structure(page)
    assert "✓ Completed" in page
    assert "1,000" in section(page, "summary")
    assert "0 (success)" in page


def test_failures_and_thousands_of_rows():
    removed = make_removed(3000, shards=60)
    page = render(removed, shards=60, failed=2)
    parsed = structure(page)
    assert "2 shard(s) failed" in page and "3 (some shards failed)" in page
    failures = section(page, "failures")
    assert "bad-00000.parquet: row group 1: cannot decode column" in failures
    rows = section(page, "rows")
    assert rows.count("<tr>") == 1 + 1000  # header + the first 1,000 rows
    assert "First 1,000 of 3,000 withheld rows" in rows
    assert '<th scope="row"><span class="mono">000000999</span></th>' in rows
    assert "000001000" not in rows
    assert parsed.th_without_scope == 0


def test_counts_shown_match_the_input():
    removed = make_removed(500, shards=7)
    remove, review = counts_of(removed)
    page = render(removed)
    summary = section(page, "summary")
    assert f'<span class="n">{1000 + remove + review:,}</span>input rows' in summary
    assert f'<span class="n">{remove:,}</span>removed' in summary
    assert f'<span class="n">{review:,}</span>sent to review' in summary
    assert "✓ passed" in summary and f"removed.parquet holds {removed.num_rows:,} rows" in summary

    records = removed.to_pylist()
    by_shard = data_table(page, "Withheld rows by shard (data)")
    expected_shards = Counter(r["source"] for r in records)
    assert {k: v[2] for k, v in by_shard.items()} == dict(expected_shards)

    by_rule = data_table(page, "Withheld rows by policy rule (data)")
    rule_rows: Counter = Counter()
    for record in records:
        for rule in {r["rule"] for r in record["reasons"]} or {"(no recorded reason)"}:
            rule_rows[(rule, record["action"])] += 1
    assert by_rule["bank-match"] == (rule_rows[("bank-match", "remove")], 0, rule_rows[("bank-match", "remove")])
    assert by_rule["unchecked"][1] == rule_rows[("unchecked", "review")]
    assert by_rule["(no recorded reason)"][0] == rule_rows[("(no recorded reason)", "remove")]

    by_bank = data_table(page, "Withheld rows by bank (data)")
    url_rows = sum(1 for r in records if any(x["bank"] == "test-urls" for x in r["reasons"]))
    term_rows = sum(1 for r in records if any(x["bank"] == "test-terms" for x in r["reasons"]))
    assert by_bank["test-urls v2"][2] == url_rows  # a row with two URL hits counts once
    assert by_bank["test-terms v1"][2] == term_rows


def test_top_shards_and_others():
    removed = make_removed(700, shards=70)
    page = render(removed)
    by_shard = data_table(page, "Withheld rows by shard (data)")
    assert len(by_shard) == 51
    others = by_shard["others (20 shards)"]
    named = sum(v[2] for k, v in by_shard.items() if not k.startswith("others"))
    assert named + others[2] == removed.num_rows
    assert "bar cut, not to scale" in page


def test_no_urls_or_matched_values_leak():
    removed = make_removed(400)
    page = render(removed)
    assert not re.search(r"(?i)https?:|ftp:|www\.", page)
    records = removed.to_pylist()
    for record in records:
        assert record["url"] not in page
        assert record["url_sha256"] not in page
        for reason in record["reasons"]:
            assert reason["value"] not in page
    assert "placeholdervalue" not in page


def test_no_script_and_no_external_resources():
    page = render(make_removed(50))
    parsed = structure(page)
    assert parsed.tags["script"] == 0 and "<script" not in page.lower()
    for tag, name, value in parsed.attrs:
        if name in {"src", "srcset", "href", "xlink:href", "action", "formaction", "poster", "data", "background"}:
            assert name == "href" and value.startswith("#"), (tag, name, value)
    assert not re.search(r"(?i)\b(?:src|href)\s*=\s*(?![\"']?#)", page)
    assert "url(" not in page and "@import" not in page and "@font-face" not in page
    assert "default-src 'none'" in page  # the CSP forbids scripts and remote loads


def test_hostile_strings_are_escaped():
    keys = ["<script>alert(1)</script>", '"><img src=x onerror=alert(1)>', "k&amp;", "http://example.net/k"]
    removed = make_removed(4, keys=keys)
    run = make_run(removed=3, review=1, failed=1)
    run["dataset"]["path"] = "/data/<b>bold</b>"
    run["failed_shards"][0]["error"] = "</td></tr><script>alert(2)</script> at https://example.net/x"
    run["banks"][0]["name"] = "<i>bank</i>"
    page = render_report(run, removed)
    parsed = structure(page)
    assert parsed.tags["script"] == 0 and parsed.tags["img"] == 0 and parsed.tags["b"] == 0
    assert parsed.tags["i"] == 0
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert "k&amp;amp;" in page
    assert "&lt;/td&gt;&lt;/tr&gt;&lt;script&gt;alert(2)&lt;/script&gt; at [link removed]" in page
    assert "example.net" not in page


def test_conservation_failure_is_loud():
    removed = make_removed(10)
    run = make_run(removed=5, review=5)
    run["counts"]["kept_rows"] -= 1
    run["conservation_ok"] = False
    run.pop("exit_code")
    page = render_report(run, removed)
    structure(page)
    assert "✗ Conservation check failed" in page
    assert "✗ FAILED" in page and "≠" in page
    assert "1 (internal error" in page


def test_charts_are_accessible():
    page = render(make_removed(100))
    parsed = structure(page)
    assert parsed.tags["svg"] == 3
    assert page.count('role="img"') == 3
    for chart_id in ("by-rule", "by-bank", "by-shard"):
        assert f'<title id="{chart_id}-t">' in page and f'<desc id="{chart_id}-d">' in page
        assert f'aria-labelledby="{chart_id}-t {chart_id}-d"' in page
    assert parsed.tags["table"] == parsed.tags["caption"]
    assert '<meta name="viewport"' in page and '<html lang="en">' in page


@pytest.mark.parametrize("bad", [None, "x", 3])
def test_tolerates_missing_or_odd_fields(bad):
    run = make_run()
    for key in ("counts", "timings", "banks", "policy", "dataset", "shards", "failed_shards"):
        run[key] = bad
    structure(render_report(run, REMOVED_SCHEMA.empty_table()))


def test_summary_gathered_batch_by_batch_renders_the_same_page():
    from safeset.report.html import WithheldSummary

    removed = make_removed(2500, shards=7)
    removed_count, review_count = counts_of(removed)
    run = make_run(shards=7, removed=removed_count, review=review_count)
    whole = render_report(run, removed)
    pieces = WithheldSummary.of_tables(removed.slice(start, 300) for start in range(0, removed.num_rows, 300))
    assert pieces.rows == 2500 and sum(t.num_rows for t in pieces.first_rows) == 1000
    assert render_report(run, pieces) == whole
