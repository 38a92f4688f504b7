"""Caption text: normalisation and bank-term matching.

Captions are written to dodge filters (look-alike letters, leetspeak, accents,
zero-width characters), so both the bank's terms and every caption go through
the same `normalize_text` before they are compared; a term matches a caption
when its normal form occurs in the caption's normal form.

Normalisation, in order (deterministic, pure; it follows the Unicode tables of
the running Python, `unicodedata.unidata_version`):

1. Compatibility decomposition (NFKD): full-width and styled letters
   ("Ｂａｎ", "𝐛𝐚𝐧", "ⓑ") become plain letters, ligatures split ("ﬁ" -> "fi").
2. Case folding (`str.casefold`: "ß" -> "ss", "Σ"/"ς" -> "σ").
3. Deleted: combining diacritical marks (U+0300-036F, 1AB0-1AFF, 1DC0-1DFF,
   20D0-20FF, FE20-FE2F), so "é" -> "e" and "ё" -> "е"; every format
   character (category Cf: soft hyphen, zero-width space/joiners, bidi
   controls, BOM, tags); variation selectors. Marks of other scripts
   (Devanagari vowel signs, Thai vowels, kana voicing marks) are kept.
4. Look-alike letters folded to Latin. Folding happens after case folding,
   so a capital and its small letter always fold alike (matching stays
   case-insensitive in every script); where the two look different, the
   capital's shape chose the Latin letter (Greek "Ν"/"ν" -> "n", not "v").

   =======  ======================================================
   Latin    look-alikes folded to it (with their capitals)
   =======  ======================================================
   a        Cyrillic а, Greek α, Latin ɑ
   b        Cyrillic в, Greek β
   c        Cyrillic с, Greek ϲ (lunate sigma)
   d        Cyrillic ԁ, Latin đ ð
   e        Cyrillic е, Greek ε
   g        Latin ɡ (script g)
   h        Cyrillic һ н, Greek η, Latin ħ
   i        Cyrillic і ӏ, Greek ι, Latin ı ɩ
   j        Cyrillic ј
   k        Cyrillic к, Greek κ
   l        Latin ł
   m        Cyrillic м, Greek μ
   n        Greek ν
   o        Cyrillic о, Greek ο, Latin ø
   p        Cyrillic р, Greek ρ
   q        Cyrillic ԛ
   s        Cyrillic ѕ
   t        Cyrillic т, Greek τ, Latin ŧ
   w        Cyrillic ԝ
   x        Cyrillic х, Greek χ
   y        Cyrillic у ү, Greek υ
   z        Greek ζ
   ae, oe   Latin æ, œ
   =======  ======================================================

5. Canonical composition (NFC), so Hangul syllables and voiced kana re-form.
6. Leetspeak inside words: 0->o, 1->i, 3->e, 4->a, 5->s, 7->t, @->a, $->s,
   applied to every run of letters, digits, "@" and "$" that holds at least
   one letter ("b4nn3d" -> "banned", "h@t" -> "hat"); runs without a letter
   ("2021", "$100", "1/2") are left alone. "1" becomes "i", not "l": it is
   the shape of a capital I, which also lowercases to "i"; "l" itself is not
   merged with "i" (that would alter ordinary words).
7. Symbols of category So (emoji, pictographs) become words of their own
   ("word🔥word" -> "word 🔥 word"), and so does a run of a script written
   without spaces (Han, kana, Thai, Lao, Khmer, Myanmar, Tibetan) that
   touches letters or digits of another ("iPhoneケース" -> "iphone ケース");
   every other run of characters that are not letters, digits or marks
   (whitespace, punctuation, math and currency symbols, "_", controls)
   collapses to one space; the ends are trimmed.

`normalize_text` is idempotent (a normal form normalises to itself), which
lets banks store the normal form of a term and compare it with match results.

Not handled: letters spaced apart ("b a n"), repeated letters ("baaan"),
transliteration between scripts, and look-alikes missing from the table.
"""

from __future__ import annotations

import unicodedata
from functools import cache
from typing import Iterable, Sequence

import numpy as np
import pyarrow as pa

from safeset.errors import ConfigError

# -- folding tables ---------------------------------------------------------

# Small letters only: capitals reach this table through case folding.
_LOOKALIKES = {
    "a": "аαɑ",
    "b": "вβ",
    "c": "сϲ",
    "d": "ԁđð",
    "e": "еε",
    "g": "ɡ",
    "h": "һнηħ",
    "i": "іӏιıɩ",
    "j": "ј",
    "k": "кκ",
    "l": "ł",
    "m": "мμ",
    "n": "ν",
    "o": "оοø",
    "p": "рρ",
    "q": "ԛ",
    "s": "ѕ",
    "t": "тτŧ",
    "w": "ԝ",
    "x": "хχ",
    "y": "уүυ",
    "z": "ζ",
}
_MULTI_LETTER = {"æ": "ae", "œ": "oe"}

_STRIPPED_MARK_RANGES = (
    (0x0300, 0x036F),
    (0x1AB0, 0x1AFF),
    (0x1DC0, 0x1DFF),
    (0x20D0, 0x20FF),
    (0xFE20, 0xFE2F),
)
_VARIATION_SELECTOR_RANGES = ((0xFE00, 0xFE0F), (0xE0100, 0xE01EF))

_LEET = {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"}

# Row separator while a batch is normalised as one string: neither a word
# character nor a separator, and replaced by a space in the input first.
_ROW_SEP = "\x00"

# Scripts written without spaces between words: a term edge in one of them
# cannot ask for a word boundary, so that edge matches anywhere.
_UNSPACED_SCRIPT_RANGES = (
    (0x0E00, 0x0EFF),  # Thai, Lao
    (0x0F00, 0x0FFF),  # Tibetan
    (0x1000, 0x109F),  # Myanmar
    (0x1780, 0x17FF),  # Khmer
    (0x19E0, 0x19FF),  # Khmer symbols
    (0x2E80, 0x2FDF),  # CJK and Kangxi radicals
    (0x3005, 0x3007),  # ideographic iteration mark, closing mark, zero
    (0x3021, 0x3029),  # Hangzhou numerals
    (0x3031, 0x3035),  # kana repeat marks
    (0x3038, 0x303C),
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x31F0, 0x31FF),  # Katakana phonetic extensions
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x3FFFF),  # CJK extensions B and later
)


# Code-point classes, as bit flags in one lookup table.
_WORD = 1  # letter or number (str.isalnum): part of a word
_LETTER = 2  # str.isalpha: makes a word eligible for leetspeak folding
_LEET_CHAR = 4  # one of the _LEET keys
_SEPARATOR = 8  # collapses to a space
_SYMBOL = 16  # category So: becomes a word of its own
_MARK = 32  # category M: kept, part of the word it follows
_UNSPACED = 64  # script written without spaces (see _UNSPACED_SCRIPT_RANGES)

# Planes with assigned characters; the rest (planes 4-13, private use 15-16)
# hold nothing but unassigned and private-use code points: separators.
_SCANNED_PLANES = (range(0x0, 0x40000), range(0xE0000, 0xE1000))
_LAST_CODE_POINT = 0x10FFFF


class _Tables:
    """Per-code-point lookup tables, built once per process (~50 ms).

    `fold` maps a code point to its folded code point, or -1 to delete it;
    `classes` holds the bit flags above. Both are indexed by the UTF-32 code
    units of a whole batch, which keeps the per-character work in numpy.
    """

    def __init__(self):
        size = _LAST_CODE_POINT + 1
        letters, numbers, marks, symbols, formats = [], [], [], [], []
        for plane in _SCANNED_PLANES:
            for cp in plane:
                ch = chr(cp)
                if ch.isalpha():
                    letters.append(cp)
                elif ch.isalnum():
                    numbers.append(cp)
                else:
                    category = unicodedata.category(ch)
                    if category[0] == "M":
                        marks.append(cp)
                    elif category == "So":
                        symbols.append(cp)
                    elif category == "Cf":
                        formats.append(cp)
        self.classes = np.full(size, _SEPARATOR, dtype=np.uint8)
        self.classes[letters] = _WORD | _LETTER
        self.classes[numbers] = _WORD
        self.classes[marks] = _MARK
        self.classes[symbols] = _SYMBOL
        for lo, hi in _UNSPACED_SCRIPT_RANGES:
            self.classes[lo : hi + 1] |= _UNSPACED
        self.fold = np.arange(size, dtype=np.int32)
        self.fold[formats] = -1
        for lo, hi in _STRIPPED_MARK_RANGES + _VARIATION_SELECTOR_RANGES:
            self.fold[lo : hi + 1] = -1
        for latin, lookalikes in _LOOKALIKES.items():
            self.fold[[ord(ch) for ch in lookalikes]] = ord(latin)
        self.classes[ord("_")] = _SEPARATOR
        self.classes[ord(_ROW_SEP)] = 0
        for ch in "@$":
            self.classes[ord(ch)] = _WORD | _SEPARATOR
        for ch in _LEET:
            self.classes[ord(ch)] |= _LEET_CHAR
        self.leet = np.arange(128, dtype=np.uint32)
        for ch, latin in _LEET.items():
            self.leet[ord(ch)] = ord(latin)


@cache
def _tables() -> _Tables:
    return _Tables()


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")


def _text(code_points: np.ndarray) -> str:
    return code_points.astype("<u4", copy=False).tobytes().decode("utf-32-le", "surrogatepass")


def _fold_lookalikes(text: str, tables: _Tables) -> str:
    code_points = tables.fold[_code_points(text)]
    return _text(code_points[code_points >= 0])


def _space_words_apart(text: str, tables: _Tables) -> str:
    """Put spaces around each pictograph (category So) and between a letter
    of a script written without spaces and a letter or digit of another."""
    code_points = _code_points(text)
    classes = tables.classes[code_points]
    symbol = (classes & _SYMBOL) != 0
    wordish = (classes & (_WORD | _MARK)) != 0
    unspaced = (classes & _UNSPACED) != 0
    before = symbol.copy()
    before[1:] |= wordish[1:] & wordish[:-1] & (unspaced[1:] != unspaced[:-1])
    if not before.any():
        return text
    widths = 1 + before + symbol
    spaced = np.full(int(widths.sum()), ord(" "), dtype=np.uint32)
    spaced[np.cumsum(widths) - widths + before] = code_points
    return _text(spaced)


def _fold_unicode(text: str, tables: _Tables) -> str:
    """Steps 1-5 and the pictograph half of 7, for non-ASCII text."""
    text = unicodedata.normalize("NFKD", text).casefold()
    for letter, latin in _MULTI_LETTER.items():
        text = text.replace(letter, latin)
    text = _fold_lookalikes(text, tables)
    return _space_words_apart(unicodedata.normalize("NFC", text), tables)


def _unleet(code_points: np.ndarray, classes: np.ndarray, tables: _Tables) -> None:
    """Fold leetspeak characters, in place, in words that hold a letter.

    A word is a run of _WORD characters; only the words around leetspeak
    characters are looked at, through the positions of non-word characters
    and of non-letter word characters (digits, "@", "$").
    """
    leet = np.flatnonzero(classes & _LEET_CHAR)
    if not len(leet):
        return
    size = len(code_points)
    bounds = np.concatenate(([-1], np.flatnonzero((classes & _WORD) == 0), [size]))
    after = np.searchsorted(bounds, leet)
    start, end = bounds[after - 1] + 1, bounds[after]
    non_letters = np.flatnonzero((classes & (_WORD | _LETTER)) == _WORD)
    non_letter_count = np.searchsorted(non_letters, end) - np.searchsorted(non_letters, start)
    fold = leet[non_letter_count < end - start]
    code_points[fold] = tables.leet[code_points[fold]]
    classes[fold] = _WORD | _LETTER


def _collapse(code_points: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """The rest of step 7: every run of separators becomes one space."""
    separator = (classes & _SEPARATOR) != 0
    keep = ~separator
    keep[1:] |= separator[1:] & ~separator[:-1]
    keep[0] = True
    return np.where(separator, ord(" "), code_points)[keep]


def _normalize_joined(texts: Sequence[str]) -> str:
    """Normalise `texts` as one string, rows joined by `_ROW_SEP`; rows keep
    a space at either end where they had separators.

    The per-row Python is a lowercase call (ASCII rows); other rows are
    folded together as one string, and the character classes are looked up
    for the whole batch at once.
    """
    tables = _tables()
    folded = [t.lower() if t.isascii() else t for t in texts]
    joined = _ROW_SEP.join(folded)
    if joined.count(_ROW_SEP) != len(folded) - 1:  # a row holds the separator
        folded = [t.replace(_ROW_SEP, " ") for t in folded]
        joined = _ROW_SEP.join(folded)
    unicode_rows = [i for i, t in enumerate(folded) if not t.isascii()]
    if unicode_rows:
        unicode_text = _fold_unicode(_ROW_SEP.join(folded[i] for i in unicode_rows), tables)
        for i, text in zip(unicode_rows, unicode_text.split(_ROW_SEP)):
            folded[i] = text
        joined = _ROW_SEP.join(folded)
    code_points = _code_points(joined).copy()
    if not len(code_points):
        return ""
    classes = tables.classes[code_points]
    _unleet(code_points, classes, tables)
    return _text(_collapse(code_points, classes))


def normalize_texts(texts: Sequence[str | None]) -> list[str | None]:
    """`normalize_text` over many strings at once (None stays None)."""
    normal = _normalize_joined(["" if t is None else t for t in texts]).split(_ROW_SEP)
    return [None if t is None else n.strip(" ") for t, n in zip(texts, normal)]


def normalize_text(text: str) -> str:
    """The normal form of `text` (see the module docstring for the steps)."""
    return _normalize_joined([text]).strip(" ")


# -- term matching ---------------------------------------------------------

def is_unspaced_script(char: str) -> bool:
    """True for a character of a script that does not separate words by spaces."""
    return bool(_tables().classes[ord(char)] & _UNSPACED)


def _as_string_list(captions) -> list[str | None]:
    if isinstance(captions, pa.ChunkedArray):
        captions = captions.combine_chunks() if captions.num_chunks != 1 else captions.chunk(0)
    if not isinstance(captions, pa.Array):
        raise TypeError(f"captions must be a pyarrow string array, not {type(captions).__name__}")
    if pa.types.is_dictionary(captions.type):
        captions = captions.dictionary_decode()
    if not (pa.types.is_string(captions.type) or pa.types.is_large_string(captions.type)):
        raise TypeError(f"captions must be a pyarrow string array, not {captions.type}")
    return captions.to_pylist()


class TermMatcher:
    """Finds bank terms (words or phrases) in captions, after normalisation.

    With `whole_word=True` a term must stand as whole words in the caption's
    normal form: bounded by spaces or the caption's ends, so "class" does not
    match "classic" but "placeholder-term" matches "Placeholder term!". An edge
    of the term written in a script without spaces (Han, kana, Thai, Lao,
    Khmer, Myanmar, Tibetan; see `is_unspaced_script`) has no boundary to find,
    so that edge matches anywhere: CJK and Thai terms are substring matches.
    With `whole_word=False` every term is a substring match.

    Matching is one Aho-Corasick pass over the whole batch: boundaries are
    part of the keys (" term "), captions are padded with spaces and joined.
    """

    def __init__(self, terms: Iterable[str], whole_word: bool = True):
        import ahocorasick

        normal = set()
        for position, term in enumerate(terms):
            text = normalize_text(term)
            if not text:
                raise ConfigError(f"term {position + 1} ({term!r}) is empty after normalisation")
            normal.add(text)
        self.terms: tuple[str, ...] = tuple(sorted(normal))
        self.whole_word = whole_word
        self._automaton = None
        if self.terms:
            automaton = ahocorasick.Automaton(ahocorasick.STORE_INTS)
            for term_id, term in enumerate(self.terms):
                automaton.add_word(self._key(term), term_id)
            automaton.make_automaton()
            self._automaton = automaton

    def _key(self, term: str) -> str:
        if not self.whole_word:
            return term
        left = "" if is_unspaced_script(term[0]) else " "
        right = "" if is_unspaced_script(term[-1]) else " "
        return f"{left}{term}{right}"

    def __len__(self) -> int:
        return len(self.terms)

    def match(self, captions: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, list[str]]:
        """Every (row, term) hit: one per distinct term per row, rows ascending.

        Rows are positions in `captions` (nulls count); null captions never
        match. Terms are returned in their normal form
        (the form a bank stores); within a row they are in sorted order.
        """
        texts = _as_string_list(captions)
        if self._automaton is None or not texts:
            return np.empty(0, dtype=np.int64), []
        joined = _normalize_joined(["" if t is None else t for t in texts])
        # Row text between " " and " ", rows separated by _ROW_SEP.
        haystack = " " + joined.replace(_ROW_SEP, f" {_ROW_SEP} ") + " "
        hits = list(self._automaton.iter(haystack))
        if not hits:
            return np.empty(0, dtype=np.int64), []
        found = np.array(hits, dtype=np.int64)
        row_separators = np.flatnonzero(_code_points(haystack) == ord(_ROW_SEP))
        rows = np.searchsorted(row_separators, found[:, 0])
        pairs = np.unique(rows * len(self.terms) + found[:, 1])
        rows, term_ids = np.divmod(pairs, len(self.terms))
        return rows.astype(np.int64), [self.terms[i] for i in term_ids.tolist()]


__all__ = ["TermMatcher", "is_unspaced_script", "normalize_text", "normalize_texts"]
