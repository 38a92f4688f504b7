"""Taint tracing: listed samples per dataset, paths through fine-tunes and merges, sources."""

from __future__ import annotations

import pytest

from lineage_util import example_urls, fake_md5, url_sha256, write_laion, write_removal_list, write_run_records
from safeset.db import Database
from safeset.errors import ConfigError, InputError
from safeset.lineage.graph import LineageGraph, shortest_paths
from safeset.lineage.html import render_html
from safeset.lineage.registry import LineageRegistry
from safeset.lineage.sources import load_listed_samples
from safeset.lineage.taint import trace_taint

ORIGINAL = example_urls("laion", 30)
LISTED = ORIGINAL[:3]


@pytest.fixture
def registry(db_url, tmp_path):
    store = tmp_path / "store"
    db = Database.open(db_url, store)
    registry = LineageRegistry(db, store)
    registry.add_dataset("laion@orig", write_laion(tmp_path / "orig", ORIGINAL), workers=1)
    registry.add_dataset("laion@clean", write_laion(tmp_path / "clean", ORIGINAL[3:]), workers=1)
    yield registry
    db.close()


@pytest.fixture
def removal_list(tmp_path):
    return write_removal_list(tmp_path / "list.parquet", [{"url_sha256": url_sha256(u)} for u in LISTED])


def _trace(registry, *sources, **options):
    include_review = options.pop("include_review", False)
    return trace_taint(registry, load_listed_samples(list(sources), include_review), include_review, **options)


def test_chain_merge_and_clean_release(registry, removal_list):
    registry.add_model("base@1", trained_on=["laion@orig"])
    registry.add_model("ft@1", bases=["base@1"])
    registry.add_model("ft@2", bases=["ft@1"])
    registry.add_model("other@1", trained_on=["laion@clean"])
    registry.add_model("merge@1", bases=["other@1", "ft@2"])
    registry.add_model("other-ft@1", bases=["other@1"], trained_on=["laion@clean"])
    report = _trace(registry, removal_list)
    assert {d["name"]: d["listed_samples"] for d in report.datasets} == {"laion@clean": 0, "laion@orig": 3}
    assert {m["name"]: m["path"] for m in report.tainted_models} == {
        "base@1": ["laion@orig", "base@1"],
        "ft@1": ["laion@orig", "base@1", "ft@1"],
        "ft@2": ["laion@orig", "base@1", "ft@1", "ft@2"],
        "merge@1": ["laion@orig", "base@1", "ft@1", "ft@2", "merge@1"],
    }
    assert report.clean_models == ["other-ft@1", "other@1"]
    assert report.unverified_models == [] and report.exit_code == 1
    assert _trace(registry, removal_list, models=["other-ft@1"]).exit_code == 0
    assert _trace(registry, removal_list, models=["other@1", "merge@1"]).exit_code == 1


def test_shortest_path_wins_when_a_model_has_several_tainted_inputs(registry, removal_list):
    registry.add_model("base@1", trained_on=["laion@orig"])
    registry.add_model("ft@1", bases=["base@1"])
    registry.add_model("mixed@1", bases=["ft@1"], trained_on=["laion@orig"])
    report = _trace(registry, removal_list)
    assert {m["name"]: m["path"] for m in report.tainted_models}["mixed@1"] == ["laion@orig", "mixed@1"]


def test_cycles_terminate(registry, removal_list):
    registry.add_model("a@1", trained_on=["laion@orig"], bases=["b@1"], allow_unregistered=True)
    registry.add_model("b@1", bases=["a@1"])  # closes a loop a -> b -> a
    report = _trace(registry, removal_list)
    assert {m["name"]: m["path"] for m in report.tainted_models} == {
        "a@1": ["laion@orig", "a@1"], "b@1": ["laion@orig", "a@1", "b@1"]}


def test_unregistered_lineage_is_unverified_not_clean(registry, tmp_path):
    unrelated = write_removal_list(tmp_path / "unrelated.parquet",
                                   [{"url_sha256": url_sha256("https://example.com/elsewhere/1.jpg")}])
    registry.add_model("clean@1", trained_on=["laion@clean"])
    assert _trace(registry, unrelated).exit_code == 0
    registry.add_model("mystery@1", trained_on=["laion@clean", "web/crawl@7"], allow_unregistered=True)
    registry.add_model("mystery-ft@1", bases=["mystery@1"])
    report = _trace(registry, unrelated)
    assert report.tainted_models == []
    assert {m["name"]: m["path"] for m in report.unverified_models} == {
        "mystery@1": ["dataset web/crawl@7", "mystery@1"],
        "mystery-ft@1": ["dataset web/crawl@7", "mystery@1", "mystery-ft@1"],
    }
    assert report.exit_code == 1 and _trace(registry, unrelated, models=["clean@1"]).exit_code == 0


def test_image_digests_count_too(registry, tmp_path):
    listed = write_removal_list(tmp_path / "by-image.parquet", [{"image_md5": fake_md5(ORIGINAL[5])}])
    report = _trace(registry, listed)
    assert {d["name"]: d["listed_samples"] for d in report.datasets} == {"laion@clean": 1, "laion@orig": 1}


def test_review_rows_are_counted_apart(registry, tmp_path):
    run = write_run_records(tmp_path / "run", [
        {"url_sha256": url_sha256(LISTED[0]), "action": "remove"},
        {"url_sha256": url_sha256(LISTED[1]), "action": "review"},
        {"image_md5": fake_md5(LISTED[2]), "action": "review"},
    ])
    registry.add_model("base@1", trained_on=["laion@orig"])
    report = _trace(registry, run)
    orig = next(d for d in report.datasets if d["name"] == "laion@orig")
    assert (orig["listed_samples"], orig["review_samples"]) == (1, 2)
    assert (report.listed_samples, report.review_samples) == (1, 2)
    assert report.sources[0]["review_rows"] == 2
    counted = _trace(registry, run, include_review=True)
    assert next(d for d in counted.datasets if d["name"] == "laion@orig")["listed_samples"] == 3


def test_review_only_exposure_taints_nothing(registry, tmp_path):
    run = write_run_records(tmp_path / "run", [{"url_sha256": url_sha256(LISTED[0]), "action": "review"}])
    registry.add_model("base@1", trained_on=["laion@orig"])
    report = _trace(registry, run)
    assert report.tainted_models == [] and report.exit_code == 0


def test_samples_listed_twice_count_once(registry, removal_list, tmp_path):
    run = write_run_records(tmp_path / "run", [{"url_sha256": url_sha256(u), "action": "remove"} for u in LISTED])
    report = _trace(registry, removal_list, run)
    assert report.listed_samples == 3
    assert next(d for d in report.datasets if d["name"] == "laion@orig")["listed_samples"] == 3


def test_decoy_lists_are_refused(tmp_path):
    decoyed = write_removal_list(tmp_path / "decoyed.parquet", [{"url_sha256": url_sha256(u)} for u in LISTED],
                                 decoys=2)
    with pytest.raises(ConfigError, match="2 decoy entries"):
        load_listed_samples([decoyed])


@pytest.mark.parametrize("bad", ["abc", "g" * 64, "A" * 63])
def test_malformed_digests_name_the_row(tmp_path, bad):
    listed = write_removal_list(tmp_path / "bad.parquet", [{"url_sha256": url_sha256(LISTED[0])}, {"url_sha256": bad}])
    with pytest.raises(InputError, match="row 1: invalid url_sha256"):
        load_listed_samples([listed])


def test_sources_that_are_neither_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a clean run"):
        load_listed_samples([tmp_path])
    with pytest.raises(ConfigError, match="no such file"):
        load_listed_samples([tmp_path / "missing.parquet"])
    plain = write_laion(tmp_path / "plain", ORIGINAL[:2], shards=1) / "part-00000.parquet"
    with pytest.raises(ConfigError, match="neither a removal list"):
        load_listed_samples([plain])


def test_unknown_actions_are_refused(tmp_path):
    run = write_run_records(tmp_path / "run", [{"url_sha256": url_sha256(LISTED[0]), "action": "maybe"}])
    with pytest.raises(InputError, match="row 0: unknown action 'maybe'"):
        load_listed_samples([run])


def test_shortest_paths_on_a_bare_graph():
    graph = LineageGraph()
    for source, target in [("d", "a"), ("a", "b"), ("b", "c"), ("c", "a"), ("d", "c")]:
        graph.add_edge(("x", source), ("x", target))
    paths = shortest_paths(graph, [("x", "d")])
    assert [n for _, n in paths[("x", "c")]] == ["d", "c"]
    assert [n for _, n in paths[("x", "b")]] == ["d", "a", "b"]


def test_html_is_self_contained_and_shows_no_sample_urls(registry, removal_list):
    registry.add_model("base@1", trained_on=["laion@orig"])
    registry.add_model("clean@1", trained_on=["laion@clean"])
    page = render_html(_trace(registry, removal_list))
    assert "<svg" in page and "base@1" in page and "clean@1" in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "example.com" not in page and url_sha256(LISTED[0]) not in page
