"""Bank file formats: parsing, detection and per-line rejections (benign generated data only)."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pytest

from safeset.banks.formats import detect_format, open_bank_file
from safeset.banks.formats.reading import MAX_LINE_BYTES, PREVIEW_CHARS, LineReader, RawEntry, Rejection
from safeset.banks.formats.validation import EntryCollector, RejectionLog
from safeset.errors import ConfigError, InputError


def md5_of(i: int) -> str:
    return hashlib.md5(f"benign-{i}".encode()).hexdigest()


def sha1_of(i: int) -> str:
    return hashlib.sha1(f"benign-{i}".encode()).hexdigest()


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def parse(path: Path, fmt: str = "auto", signal_type: str | None = None) -> list[RawEntry | Rejection]:
    return list(open_bank_file(path, fmt, signal_type))


def entries(items) -> list[tuple[int, str, str]]:
    return [(i.line, i.signal_type, i.value) for i in items if isinstance(i, RawEntry)]


def rejections(items) -> list[tuple[int, str]]:
    return [(i.line, i.reason) for i in items if isinstance(i, Rejection)]


def validate(items, only_type: str | None = None) -> tuple[EntryCollector, RejectionLog]:
    log = RejectionLog(None, keep_first=100)
    collector = EntryCollector(log, only_type)
    collector.add_all(items)
    return collector, log


# ---------------------------------------------------------------- reading lines


def test_bom_crlf_comments_and_blank_lines_keep_physical_line_numbers(tmp_path):
    text = "\ufeff# a comment\r\n\r\n" + md5_of(1) + "\r\n   # indented comment\r\n" + md5_of(2) + "\r\n"
    path = write(tmp_path, "list.txt", text)
    assert entries(parse(path, "plain", "md5")) == [(3, "md5", md5_of(1)), (5, "md5", md5_of(2))]


def test_last_line_without_newline_is_read(tmp_path):
    path = write(tmp_path, "list.txt", md5_of(1) + "\n" + md5_of(2))
    assert [e[0] for e in entries(parse(path, "plain", "md5"))] == [1, 2]


def test_gzip_input_is_read_transparently_and_hashed_as_stored(tmp_path):
    body = ("# gz\n" + "\n".join(md5_of(i) for i in range(50)) + "\n").encode()
    path = write(tmp_path, "list.txt.gz", gzip.compress(body))
    parsed = open_bank_file(path, "plain", "md5")
    got = entries(parsed)
    assert len(got) == 50 and got[0] == (2, "md5", md5_of(0))
    assert parsed.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    path = write(tmp_path, "renamed.txt", gzip.compress(f"md5 {md5_of(3)}\n".encode()))
    assert entries(parse(path)) == [(1, "md5", md5_of(3))]


def test_truncated_gzip_is_an_input_error_naming_the_file(tmp_path):
    data = gzip.compress(("\n".join(md5_of(i) for i in range(2000)) + "\n").encode())
    path = write(tmp_path, "cut.txt.gz", data[: len(data) // 2])
    with pytest.raises(InputError) as error:
        parse(path, "plain", "md5")
    assert "cut.txt.gz" in str(error.value) and "gzip" in str(error.value)


def test_undecodable_line_is_rejected_alone(tmp_path):
    data = f"{md5_of(1)}\n".encode() + b"\xff\xfe-not-utf8\n" + f"{md5_of(2)}\n".encode()
    path = write(tmp_path, "list.txt", data)
    items = parse(path, "plain", "md5")
    assert [e[0] for e in entries(items)] == [1, 3]
    assert rejections(items) == [(2, "not valid UTF-8 (byte 0 of the line)")]


def test_over_long_line_is_rejected_without_losing_the_next_line(tmp_path):
    data = b"x" * (MAX_LINE_BYTES + 10) + b"\n" + f"{md5_of(1)}\n".encode()
    items = parse(write(tmp_path, "list.txt", data), "plain", "md5")
    assert entries(items) == [(2, "md5", md5_of(1))]
    [(line, reason)] = rejections(items)
    assert line == 1 and "longer than" in reason
    assert len(next(i for i in items if isinstance(i, Rejection)).preview) <= PREVIEW_CHARS


def test_utf16_file_is_refused_with_a_hint(tmp_path):
    path = write(tmp_path, "list.txt", "md5 abc\n".encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        parse(path, "pytx")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        list(LineReader(tmp_path / "absent.txt"))


# ---------------------------------------------------------------- plain


def test_plain_needs_a_signal_type(tmp_path):
    path = write(tmp_path, "list.txt", md5_of(1) + "\n")
    with pytest.raises(ConfigError, match="--type"):
        open_bank_file(path, "plain", None)


def test_plain_keeps_hash_signs_inside_values(tmp_path):
    path = write(tmp_path, "urls.txt", "https://example.com/page#section\n")
    assert entries(parse(path, "plain", "url")) == [(1, "url", "https://example.com/page#section")]


# ---------------------------------------------------------------- pytx text


def test_pytx_text_lines_and_rejections(tmp_path):
    text = "\n".join(
        [
            f"md5 {md5_of(1)}",
            f"URL_MD5 {md5_of(2)}",
            "term two placeholder words",
            f"video_md5 {md5_of(3)}",
            "md5",
        ]
    )
    items = parse(write(tmp_path, "signals.txt", text), "pytx")
    assert entries(items) == [
        (1, "md5", md5_of(1)),
        (2, "url_md5", md5_of(2)),
        (3, "term", "two placeholder words"),
        (4, "video_md5", md5_of(3)),
    ]
    assert rejections(items) == [(5, "expected '<signal_type> <value>'")]
    collector, log = validate(items)
    assert collector.accepted == 3
    assert [r.line for r in log.first] == [4, 5]
    assert "'video_md5' is not supported yet" in log.first[0].reason


# ---------------------------------------------------------------- pytx csv


def test_pytx_csv_with_and_without_header(tmp_path):
    rows = f"md5,{md5_of(1)},COLLAB,category,tag1 tag2\nsha1,{sha1_of(2)},,,\n"
    with_header = write(tmp_path, "a.csv", "signal_type,signal_str,collab,category,tags\n" + rows)
    without = write(tmp_path, "b.csv", rows)
    expected_types = [("md5", md5_of(1)), ("sha1", sha1_of(2))]
    for path, first_line in ((with_header, 2), (without, 1)):
        assert detect_format(path) == "pytx-csv"
        got = entries(parse(path))
        assert [(t, v) for _, t, v in got] == expected_types
        assert got[0][0] == first_line


def test_pytx_csv_quoted_value_spanning_lines_reports_its_first_line(tmp_path):
    text = f'md5,{md5_of(1)},,,\nterm,"placeholder\nterm",,,\nmd5,{md5_of(2)},,,\n'
    got = entries(parse(write(tmp_path, "x.csv", text), "pytx-csv"))
    assert [line for line, _, _ in got] == [1, 2, 4]
    assert got[1][2] == "placeholder\nterm"


def test_pytx_csv_short_row_is_rejected(tmp_path):
    items = parse(write(tmp_path, "x.csv", f"md5,{md5_of(1)}\nmd5\n"), "pytx-csv")
    assert len(entries(items)) == 1
    assert rejections(items)[0][0] == 2


# ---------------------------------------------------------------- generic csv


def test_csv_value_column_and_type_column(tmp_path):
    text = f"signal_type,value,comment\nmd5,{md5_of(1)},first\nsha1,{sha1_of(2)},second\n"
    assert entries(parse(write(tmp_path, "x.csv", text))) == [(2, "md5", md5_of(1)), (3, "sha1", sha1_of(2))]


def test_csv_type_from_header_name(tmp_path):
    text = f"id,md5\n1,{md5_of(1)}\n2,{md5_of(2)}\n"
    assert entries(parse(write(tmp_path, "x.csv", text))) == [(2, "md5", md5_of(1)), (3, "md5", md5_of(2))]


def test_csv_single_column_header_in_a_csv_file(tmp_path):
    path = write(tmp_path, "domains.csv", "domain\nexample.org\nexample.net\n")
    assert detect_format(path) == "csv"
    assert entries(parse(path)) == [(2, "domain", "example.org"), (3, "domain", "example.net")]


def test_csv_generic_hash_column_needs_type(tmp_path):
    path = write(tmp_path, "x.csv", f"hash,note\n{md5_of(1)},x\n")
    with pytest.raises(InputError, match="signal type"):
        parse(path, "csv")
    assert entries(parse(path, "csv", "md5")) == [(2, "md5", md5_of(1))]


def test_csv_type_name_column_picked_by_type(tmp_path):
    path = write(tmp_path, "x.csv", f"url,md5\nhttps://example.com/a,{md5_of(1)}\n")
    with pytest.raises(InputError, match="several value columns"):
        parse(path, "csv")
    assert entries(parse(path, "csv", "md5")) == [(2, "md5", md5_of(1))]


def test_csv_conflicting_type_and_column_is_refused(tmp_path):
    path = write(tmp_path, "x.csv", "url\nhttps://example.com/a\n")
    with pytest.raises(InputError, match="url_md5"):
        parse(path, "csv", "url_md5")


def test_csv_without_value_column_is_refused(tmp_path):
    with pytest.raises(InputError, match="no value column"):
        parse(write(tmp_path, "x.csv", "a,b\n1,2\n"), "csv")


def test_csv_short_and_empty_rows_are_rejected_with_line_numbers(tmp_path):
    text = f"note,md5\nonly-note\nx,\ny,{md5_of(1)}\n"
    items = parse(write(tmp_path, "x.csv", text), "csv")
    assert entries(items) == [(4, "md5", md5_of(1))]
    assert [line for line, _ in rejections(items)] == [2, 3]


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("text", "signal_type", "expected"),
    [
        (f"md5 {md5_of(1)}\nurl https://example.com/a\n", None, "pytx"),
        (f"# header comment\npdq {'ab' * 32}\n", None, "pytx"),
        (f"signal_type,signal_str,collab,category,tags\nmd5,{md5_of(1)},,,\n", None, "pytx-csv"),
        (f"md5,{md5_of(1)},,,\nsha1,{sha1_of(1)},,,\n", None, "pytx-csv"),
        (f"value,signal_type\n{md5_of(1)},md5\n", None, "csv"),
        ("url,label\nhttps://example.com/a,x\n", None, "csv"),
        (f"{md5_of(1)}\n{md5_of(2)}\n", "md5", "plain"),
        ("https://example.com/a,b\n", "url", "plain"),
        ("placeholderterm\nmd5 lookalike phrase\n", "term", "plain"),
        ("", None, "pytx"),
    ],
)
def test_auto_detection(tmp_path, text, signal_type, expected):
    assert detect_format(write(tmp_path, "bank.txt", text), signal_type) == expected


def test_auto_detection_gives_up_rather_than_guess(tmp_path):
    with pytest.raises(ConfigError, match="--type"):
        detect_format(write(tmp_path, "bank.txt", f"{md5_of(1)}\n"))


def test_unknown_format_name(tmp_path):
    with pytest.raises(ConfigError, match="unknown bank format"):
        open_bank_file(write(tmp_path, "x.txt", "x\n"), "xml")


# ---------------------------------------------------------------- validation reasons


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (f"md5 {md5_of(1)[:-1]}", "invalid md5: expected 32 hex characters, got 31"),
        (f"md5 {'zz' * 16}", "invalid md5: not hexadecimal"),
        (f"sha1 {'00' * 20}", "invalid sha1: all-zero digest"),
        (f"sha256 {md5_of(1)}", "invalid sha256: expected 64 hex characters, got 32"),
        ("colour_hash abcdef", "unknown signal type 'colour_hash'"),
        ("url example.com/no-scheme", "invalid url: missing scheme"),
        ("domain https://example.com/x", "invalid domain: not a bare host name"),
    ],
)
def test_bad_lines_are_rejected_with_reasons(tmp_path, line, reason):
    path = write(tmp_path, "bank.txt", f"md5 {md5_of(9)}\n{line}\n")
    collector, log = validate(parse(path, "pytx"))
    assert collector.accepted == 1
    [rejection] = log.first
    assert rejection.line == 2 and rejection.reason.startswith(reason)
    assert rejection.preview == line[:PREVIEW_CHARS]


def test_type_filter_rejects_other_types_instead_of_retyping(tmp_path):
    path = write(tmp_path, "bank.txt", f"md5 {md5_of(1)}\nsha1 {sha1_of(1)}\n")
    collector, log = validate(parse(path, "pytx", "md5"), only_type="md5")
    assert collector.accepted == 1
    assert [r.line for r in log.first] == [2] and "--type md5" in log.first[0].reason


def test_values_are_normalised_by_the_signal_types(tmp_path):
    path = write(tmp_path, "bank.txt", f"md5 {md5_of(1).upper()}\ndomain *.Example.ORG.\n")
    collector, _ = validate(parse(path, "pytx"))
    assert {t: v.to_pylist() for t, v in collector.by_type().items()} == {"md5": [md5_of(1)], "domain": ["example.org"]}


def test_preview_is_truncated(tmp_path):
    long_url = "https://example.com/" + "p" * 200
    items = parse(write(tmp_path, "bank.txt", f"md5 {long_url}\n"), "pytx")
    _, log = validate(items)
    assert len(log.first[0].preview) == PREVIEW_CHARS and log.first[0].preview.endswith("...")
