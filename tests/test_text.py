"""Caption normalisation and term matching (placeholder terms only)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from safeset.errors import ConfigError
from safeset.signals.text import TermMatcher, is_unspaced_script, normalize_text, normalize_texts


def hits(matcher: TermMatcher, captions: list[str | None]) -> list[tuple[int, str]]:
    rows, terms = matcher.match(pa.array(captions, type=pa.string()))
    assert rows.dtype == np.int64
    return list(zip(rows.tolist(), terms))


# -- normalize_text ---------------------------------------------------------


@pytest.mark.parametrize(
    "raw, normal",
    [
        # Cyrillic and Greek look-alikes, lower and upper case
        ("bаnnеdwоrd", "bannedword"),  # Cyrillic а е о
        ("рlасеhоldеr", "placeholder"),  # Cyrillic р а с е о
        ("ѕіх", "six"),  # Cyrillic ѕ і х
        ("ΒΑΝΝΕDWORD", "bannedword"),  # Greek capitals
        ("ναι", "nai"),  # small nu folds like its capital Ν
        ("ΖΖFΟΟ", "zzfoo"),
        # leetspeak inside words only
        ("B4NN3DW0RD", "bannedword"),
        ("pl@c3h0ld3r", "placeholder"),
        ("zzf00 5t4r7", "zzfoo start"),
        ("h1 1337", "hi 1337"),
        ("year 2021, $100, 1/2", "year 2021 100 1 2"),
        ("a$$et", "asset"),
        # accents and other diacritics
        ("Café crème brûlée", "cafe creme brulee"),
        ("ÀÉÎÕÜ ñ ç", "aeiou n c"),
        ("Ærø œuvre", "aero oeuvre"),
        # NFKC: full-width, styled and enclosed letters, ligatures
        ("ＢＡＮＮＥＤＷＯＲＤ", "bannedword"),
        ("𝐳𝐳𝐟𝐨𝐨 ⓩⓩⓕⓞⓞ", "zzfoo zzfoo"),
        ("ﬁle", "file"),
        # case folding
        ("Straße", "strasse"),
        ("ẞ", "ss"),
        # zero-width and format characters disappear
        ("banned\u200bword", "bannedword"),
        ("ban\u00adned\u200dword\ufeff", "bannedword"),
        # whitespace and punctuation collapse; ends trimmed
        ("  placeholder-term!!  ", "placeholder term"),
        ("a\t\n\r b...c___d", "a b c d"),
        ("", ""),
        (" ,.;: ", ""),
        ("a\x00b", "a b"),
        # pictographs stand as words
        ("zzfoo🔥zzfoo", "zzfoo 🔥 zzfoo"),
    ],
)
def test_normalize_text_folds(raw, normal):
    assert normalize_text(raw) == normal


@pytest.mark.parametrize(
    "raw, normal",
    [
        ("日本語のテキスト、です。", "日本語のテキスト です"),
        ("中文文本", "中文文本"),
        ("مرحبا بالعالم!", "مرحبا بالعالم"),
        ("한국어 텍스트", "한국어 텍스트"),
        ("हिन्दी पाठ", "हिन्दी पाठ"),
        ("ภาษาไทย", "ภาษาไทย"),
        ("Привет Мир", normalize_text("привет мир")),
        ("ｶﾀｶﾅ", "カタカナ"),  # half-width kana: NFKC
        ("がぎ", "がぎ"),  # voicing marks kept and recomposed
    ],
)
def test_other_scripts_pass_through(raw, normal):
    assert normalize_text(raw) == normal


def test_cyrillic_words_fold_consistently():
    # Russian text is not Latin after folding, but a term and a caption fold alike.
    assert normalize_text("СЛОВО") == normalize_text("слово") == normalize_text("Слово")


_CASED_LETTERS = "".join(
    chr(cp) for cp in [*range(0x41, 0x5B), *range(0xC0, 0x250), *range(0x370, 0x530)] if chr(cp).isalpha()
)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(_CASED_LETTERS + " 013"), max_size=20))
def test_case_never_matters_in_latin_greek_cyrillic(text):
    assert normalize_text(text.upper()) == normalize_text(text.lower()) == normalize_text(text)


def test_normalize_texts_keeps_nulls_and_rows():
    assert normalize_texts(["A-B", None, "", "c\x00d", "Ｅ"]) == ["a b", None, "", "c d", "e"]
    assert normalize_texts([]) == []


_TEXT = st.lists(
    st.characters(codec="utf-8")
    | st.sampled_from(list("аеорсѕіΒΝνæß013457@$ _-.,!é\u0301\u200b🔥日本ไทยがｶ\x00"))
    | st.sampled_from(["bannedword", "placeholder", "b4nn3d", "Ｂ", "ำ"]),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_normalize_is_idempotent(text):
    once = normalize_text(text)
    assert normalize_text(once) == once
    assert once == once.strip(" ") and "  " not in once


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), _TEXT), max_size=8))
def test_batch_equals_one_by_one(texts):
    expected = [None if t is None else normalize_text(t) for t in texts]
    assert normalize_texts(texts) == expected


# -- TermMatcher -----------------------------------------------------------


def test_whole_word_vs_substring():
    captions = ["a zzclass photo", "a zzclassic photo", "subzzclass", "ZZCLASS!"]
    assert hits(TermMatcher(["zzclass"]), captions) == [(0, "zzclass"), (3, "zzclass")]
    assert hits(TermMatcher(["zzclass"], whole_word=False), captions) == [
        (0, "zzclass"),
        (1, "zzclass"),
        (2, "zzclass"),
        (3, "zzclass"),
    ]


def test_phrases_match_across_punctuation_and_case():
    matcher = TermMatcher(["placeholder-term"])
    captions = ["a Placeholder Term here", "placeholder_term", "placeholder...term!", "placeholderterm",
                "placeholder termination"]
    assert hits(matcher, captions) == [(0, "placeholder term"), (1, "placeholder term"), (2, "placeholder term")]


def test_evasions_match():
    matcher = TermMatcher(["bannedword"])
    captions = ["B4NN3DW0RD", "bаnnеdwоrd", "ＢＡＮＮＥＤＷＯＲＤ", "bänned\u200bword", "bannedword2021", "banned word"]
    assert [row for row, _ in hits(matcher, captions)] == [0, 1, 2, 3]


def test_one_hit_per_distinct_term_per_row_sorted():
    matcher = TermMatcher(["zzfoo", "zzbar", "ZZFOO", "zz-foo"])
    assert matcher.terms == ("zz foo", "zzbar", "zzfoo")
    captions = ["zzfoo zzbar zzfoo zzfoo", "nothing", "zzbar", "zz foo zzfoo"]
    assert hits(matcher, captions) == [
        (0, "zzbar"),
        (0, "zzfoo"),
        (2, "zzbar"),
        (3, "zz foo"),
        (3, "zzfoo"),
    ]


def test_overlapping_terms_all_reported():
    matcher = TermMatcher(["zzfoo zzbar", "zzbar zzbaz", "zzbar", "zzfoo zzbar zzbaz"])
    assert hits(matcher, ["zzfoo zzbar zzbaz"]) == [
        (0, "zzbar"),
        (0, "zzbar zzbaz"),
        (0, "zzfoo zzbar"),
        (0, "zzfoo zzbar zzbaz"),
    ]
    # Repeated overlapping occurrences of one term: one hit.
    assert hits(TermMatcher(["zz zz"]), ["zz zz zz zz"]) == [(0, "zz zz")]


def test_nulls_are_skipped_and_rows_stay_aligned():
    matcher = TermMatcher(["zzfoo"])
    captions = [None, "zzfoo", None, "", "x zzfoo", None]
    assert hits(matcher, captions) == [(1, "zzfoo"), (4, "zzfoo")]
    assert hits(matcher, [None, None]) == []


def test_rows_stay_aligned_after_wide_and_unicode_rows():
    matcher = TermMatcher(["zzfoo"])
    captions = ["🔥" * 50, "日本語" * 10 + " zzfoo", "\U0001F600 x", "zzfoo", "ｚｚｆｏｏ"]
    assert [row for row, _ in hits(matcher, captions)] == [1, 3, 4]


def test_terms_never_span_rows():
    matcher = TermMatcher(["zzfoo zzbar"], whole_word=False)
    assert hits(matcher, ["zzfoo", "zzbar", "zzfoo zzbar"]) == [(2, "zzfoo zzbar")]
    assert hits(TermMatcher(["oz"], whole_word=False), ["zzfo", "zbar"]) == []


def test_cjk_and_thai_terms_match_as_substrings():
    thai = normalize_text("คำต้องห้าม")  # NFKD splits sara am: the normal form differs
    matcher = TermMatcher(["禁止語", "คำต้องห้าม", "zzfoo"])
    captions = ["これは禁止語です", "ข้อความคำต้องห้ามอยู่ที่นี่", "zzfoo禁止語", "xzzfoo禁止語", "禁止"]
    assert hits(matcher, captions) == [
        (0, "禁止語"),
        (1, thai),
        (2, "zzfoo"),  # where Latin meets CJK is a word boundary
        (2, "禁止語"),
        (3, "禁止語"),
    ]
    assert is_unspaced_script("禁") and is_unspaced_script("ก") and not is_unspaced_script("한")


def test_mixed_term_keeps_boundary_on_its_latin_edge():
    # "zzfoo" must start a word; its CJK end may run into more CJK.
    matcher = TermMatcher(["zzfoo日本"])
    assert matcher.terms == ("zzfoo 日本",)
    assert hits(matcher, ["zzfoo日本語", "xzzfoo日本", "a zzfoo 日本", "zzfoo2日本"]) == [
        (0, "zzfoo 日本"),
        (2, "zzfoo 日本"),
    ]


def test_script_changes_are_word_boundaries():
    assert normalize_text("iPhoneケース2021年") == "iphone ケース 2021 年"
    assert normalize_text("日本4語") == "日本 4 語"  # a lone digit between CJK is not leetspeak
    assert hits(TermMatcher(["iphone"]), ["新しいiPhoneケース"]) == [(0, "iphone")]


def test_spaced_scripts_use_word_boundaries():
    matcher = TermMatcher(["مرحبا", "텍스트"])
    captions = ["قال مرحبا!", "مرحباكم", "한국어 텍스트", "한국어텍스트"]
    assert hits(matcher, captions) == [(0, "مرحبا"), (2, "텍스트")]


def test_pictograph_terms():
    matcher = TermMatcher(["🔥 zzfoo"])
    assert hits(matcher, ["x🔥zzfoo", "🔥🔥zzfoo!", "🔥 zzfoox"]) == [(0, "🔥 zzfoo"), (1, "🔥 zzfoo")]


def test_empty_automaton():
    matcher = TermMatcher([])
    assert len(matcher) == 0
    rows, terms = matcher.match(pa.array(["zzfoo", None]))
    assert rows.tolist() == [] and terms == [] and rows.dtype == np.int64


def test_empty_term_is_refused():
    with pytest.raises(ConfigError, match="term 2"):
        TermMatcher(["zzfoo", " -- "])


def test_accepts_chunked_large_and_dictionary_arrays():
    matcher = TermMatcher(["zzfoo"])
    chunked = pa.chunked_array([["a", "zzfoo"], ["zzfoo b", None]])
    assert matcher.match(chunked)[0].tolist() == [1, 2]
    assert matcher.match(pa.array(["zzfoo"], type=pa.large_string()))[0].tolist() == [0]
    assert matcher.match(pa.array(["x", "zzfoo", "x"]).dictionary_encode())[0].tolist() == [1]
    assert matcher.match(pa.array([], type=pa.string()))[0].tolist() == []
    with pytest.raises(TypeError):
        matcher.match(pa.array([1, 2]))


def test_bank_normal_forms_round_trip():
    # Banks store normalize_text(term); match() must return exactly that form.
    raw = ["Placeholder-Term", "B4NN3DW0RD", "zz foo", "日本"]
    stored = {normalize_text(t) for t in raw}
    matcher = TermMatcher(sorted(stored))
    _, terms = matcher.match(pa.array(["placeholder term bannedword ZZ-FOO 日本"]))
    assert set(terms) == stored


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(["zzfoo", "zzbar", "zz", "foo", "zzfoo zzbar", "bar zz"]), min_size=1, max_size=4),
    st.lists(st.one_of(st.none(), st.lists(st.sampled_from(["zzfoo", "zzbar", "zz", "foo", "bar", "x", "!"]),
                                           max_size=6).map(" ".join)), max_size=6),
)
def test_matches_agree_with_a_plain_model(terms, captions):
    """Whole-word hits equal a naive search over space-padded normal forms."""
    matcher = TermMatcher(terms)
    expected = []
    for row, caption in enumerate(captions):
        if caption is None:
            continue
        padded = f" {normalize_text(caption)} "
        expected += [(row, t) for t in matcher.terms if f" {t} " in padded]
    assert hits(matcher, captions) == expected
