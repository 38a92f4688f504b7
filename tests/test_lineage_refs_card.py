"""NAME@VERSION references and model-card front matter."""

from __future__ import annotations

import pytest

from safeset.errors import ConfigError, InputError
from safeset.lineage.model_card import read_model_card
from safeset.lineage.refs import Ref, parse_ref


@pytest.mark.parametrize(
    "text, expected",
    [
        ("laion/relaion2B-en@2024-08", Ref("laion/relaion2B-en", "2024-08")),
        ("base@1", Ref("base", "1")),
        ("org/model.v2@v1.5+fp16", Ref("org/model.v2", "v1.5+fp16")),
    ],
)
def test_parse_ref(text, expected):
    assert parse_ref(text) == expected
    assert str(parse_ref(text)) == text


def test_bare_names_only_where_allowed():
    assert parse_ref("laion/laion2B-en", require_version=False) == Ref("laion/laion2B-en", None)
    with pytest.raises(ConfigError, match="give a version"):
        parse_ref("laion/laion2B-en")


@pytest.mark.parametrize("text", ["", "@1", "a@", "a@b@c d", "../x@1", "a//b@1", "/abs@1", "a@v 1", "a,b@1"])
def test_bad_refs_are_refused(text):
    with pytest.raises(ConfigError):
        parse_ref(text)


def test_directory_name_is_one_path_component():
    name = Ref("org/model", "1").directory_name
    assert "/" not in name and name == "org%2Fmodel@1"


def _card(tmp_path, text: str):
    path = tmp_path / "README.md"
    path.write_text(text)
    return path


def test_card_with_lists_and_strings(tmp_path):
    card = _card(tmp_path, "---\nlicense: mit\ndatasets:\n- laion/a@1\n- laion/b\nbase_model: org/base@2\n"
                           "base_model_relation: finetune\n---\n# My model\n\n---\nnot front matter\n")
    lineage = read_model_card(card)
    assert lineage.datasets == ["laion/a@1", "laion/b"]
    assert lineage.base_models == ["org/base@2"]
    assert lineage.relation == "finetune"
    assert len(lineage.sha256) == 64


def test_card_merge_has_several_bases_and_no_datasets(tmp_path):
    lineage = read_model_card(_card(tmp_path, "---\nbase_model:\n  - a@1\n  - b@1\n---\n"))
    assert lineage.base_models == ["a@1", "b@1"] and lineage.datasets == []


@pytest.mark.parametrize(
    "text, position",
    [
        ("# no front matter\n", "line 1"),
        ("---\ndatasets: [a\n", "line"),  # no closing line
        ("---\ndatasets: [a\n---\n", "line"),  # invalid YAML
        ("---\n- a\n- b\n---\n", "front matter"),  # not a mapping
        ("---\ndatasets: 3\n---\n", "front matter 'datasets'"),
        ("---\nbase_model: [a@1, 7]\n---\n", "front matter 'base_model' item 2"),
    ],
)
def test_bad_cards_name_the_file_and_place(tmp_path, text, position):
    with pytest.raises(InputError) as info:
        read_model_card(_card(tmp_path, text))
    assert str(tmp_path / "README.md") in str(info.value)
    assert position in str(info.value)
