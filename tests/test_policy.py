"""Policy: presets, TOML parsing errors, first-match semantics, fail closed."""

import pyarrow as pa
import pytest

from safeset.errors import ConfigError
from safeset.evidence import Evidence, unchecked
from safeset.policy import ACTIONS, load_policy, parse_policy, preset_names


def actions(decisions):
    return [ACTIONS[a] for a in decisions.actions]


def table(punsafe):
    return pa.record_batch({"punsafe": pa.array(punsafe, pa.float64())})


def test_presets_exist_and_parse():
    assert {"remove-matches", "relaion-research", "relaion-research-safe"} <= set(preset_names())
    for name in preset_names():
        assert load_policy(name).name == name


def test_default_preset_removes_any_bank_match_and_keeps_the_rest():
    policy = load_policy(None)
    evidence = [Evidence(row=1, signal_type="md5", value="ab", bank="B", bank_version=1, entry_id=7)]
    decisions = policy.decide(3, evidence, table([0.1, 0.2, 0.3]))
    assert actions(decisions) == ["keep", "remove", "keep"]
    rule, item = decisions.reasons[1][0]
    assert rule == "bank-match" and item.entry_id == 7


def test_relaion_research_needs_term_and_high_punsafe_together():
    policy = load_policy("relaion-research")
    term = lambda row: Evidence(row=row, signal_type="term", value="placeholderterm", bank="T", bank_version=1)
    evidence = [term(0), term(1), Evidence(row=3, signal_type="url_md5", value="x", bank="U", bank_version=2)]
    decisions = policy.decide(5, evidence, table([0.99, 0.5, 0.99, 0.0, None]))
    # row 0: term + punsafe .99 -> remove; row 1: term but .5 -> keep; row 2: punsafe only -> keep;
    # row 3: url digest match -> remove; row 4: null score -> keep
    assert actions(decisions) == ["remove", "keep", "keep", "remove", "keep"]
    assert [r for r, _ in decisions.reasons[0]] == ["unsafe-caption-term"]
    assert [r for r, _ in decisions.reasons[3]] == ["hash-or-url-match"]


def test_relaion_research_safe_also_removes_punsafe_over_045():
    policy = load_policy("relaion-research-safe")
    decisions = policy.decide(3, [], table([0.46, 0.45, float("nan")]))
    assert actions(decisions) == ["remove", "keep", "keep"]
    _, item = decisions.reasons[0][0]
    assert item.signal_type == "score" and "punsafe > 0.45" in item.value


def test_unchecked_rows_are_never_kept():
    policy = load_policy(None)
    decisions = policy.decide(2, [unchecked(0, "image member unreadable")], table([0.0, 0.0]))
    assert actions(decisions) == ["review", "keep"]
    rule, item = decisions.reasons[0][0]
    assert rule == "unchecked" and item.value == "image member unreadable"


def test_remove_beats_unchecked_review():
    policy = load_policy(None)
    evidence = [unchecked(0, "bad md5"), Evidence(row=0, signal_type="url", value="u", bank="B", bank_version=1)]
    decisions = policy.decide(1, evidence, table([0.0]))
    assert actions(decisions) == ["remove"]


def test_early_keep_rule_is_an_exception_but_not_for_unchecked_rows():
    policy = parse_policy(
        """
        name = "allow"
        [[rules]]
        name = "allow-list"
        action = "keep"
        banks = ["ALLOW"]
        [[rules]]
        name = "any"
        action = "remove"
        signal_types = ["*"]
        """,
        "inline",
    )
    evidence = [
        Evidence(row=0, signal_type="md5", value="a", bank="ALLOW", bank_version=1),
        Evidence(row=0, signal_type="md5", value="a", bank="BAD", bank_version=1),
        Evidence(row=1, signal_type="md5", value="b", bank="BAD", bank_version=1),
        Evidence(row=2, signal_type="md5", value="c", bank="ALLOW", bank_version=1),
        unchecked(2, "truncated image"),
    ]
    decisions = policy.decide(3, evidence, table([0, 0, 0]))
    assert actions(decisions) == ["keep", "remove", "review"]


def test_bank_filter_and_excluded_types():
    policy = parse_policy(
        """
        [[rules]]
        name = "only-a"
        action = "review"
        banks = ["a"]
        exclude_signal_types = ["term"]
        """,
        "inline",
    )
    evidence = [
        Evidence(row=0, signal_type="md5", value="x", bank="A", bank_version=1),
        Evidence(row=1, signal_type="term", value="x", bank="A", bank_version=1),
        Evidence(row=2, signal_type="md5", value="x", bank="B", bank_version=1),
    ]
    assert actions(policy.decide(3, evidence, table([0, 0, 0]))) == ["review", "keep", "keep"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("not toml [", "invalid TOML"),
        ("name='x'", "at least one"),
        ("[[rules]]\nname='r'\naction='delete'\nsignal_types=['*']", "action must be"),
        ("[[rules]]\nname='r'\naction='remove'", "no condition"),
        ("[[rules]]\nname='r'\naction='remove'\nbogus=1\nsignal_types=['*']", "unknown rule keys"),
        ("[[rules]]\nname='r'\naction='remove'\nscores=[{column='p', op='=>', value=1}]", "op must be"),
        ("unchecked='keep'\n[[rules]]\nname='r'\naction='remove'\nsignal_types=['*']", "fail closed"),
    ],
)
def test_bad_policies_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_policy(text, "p.toml")


def test_missing_policy_file_names_presets(tmp_path):
    with pytest.raises(ConfigError, match="remove-matches"):
        load_policy(str(tmp_path / "nope.toml"))


def test_non_numeric_score_column_is_reported():
    policy = load_policy("relaion-research-safe")
    with pytest.raises(ValueError, match="not numeric"):
        policy.decide(1, [], pa.record_batch({"punsafe": pa.array(["high"])}))


def test_digest_is_stable_and_content_based():
    assert load_policy("relaion-research").digest == load_policy("relaion-research").digest
    assert load_policy("relaion-research").digest != load_policy("relaion-research-safe").digest

