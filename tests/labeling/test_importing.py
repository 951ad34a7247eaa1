"""The upload parser: every bad-input case gets a precise message and imports nothing."""

from __future__ import annotations

import json

import pytest

from labeling.imports.parse import ImportLimits, UploadRejected, parse_upload

LABELS = ("negative", "positive")


def rejected(data: bytes, filename: str = "d.csv", **kwargs: object) -> list[str]:
    with pytest.raises(UploadRejected) as info:
        parse_upload(data, filename, LABELS, **kwargs)  # type: ignore[arg-type]
    return info.value.errors


def test_csv_with_detected_columns_metadata_blanks_and_duplicates() -> None:
    data = (
        b"id,Text,label,source\n"
        b"1,Great film,positive,rt\n"
        b"2,   ,negative,rt\n"
        b"3,Dull,NEGATIVE ,imdb\n"
        b'4,"Great film",,rt\n'
        b'5,"multi\nline",,x\n'
    )
    up = parse_upload(data, "d.csv", LABELS)
    assert (up.format, up.text_column, up.gold_column) == ("csv", "Text", "label")
    assert [i.text for i in up.items] == ["Great film", "Dull", "multi\nline"]
    assert [i.gold for i in up.items] == ["positive", "negative", None]
    assert up.items[0].lines == (2, 5) and up.items[0].metadata == {"id": "1", "source": "rt"}
    assert (up.n_rows, up.n_blank, up.n_duplicates) == (5, 1, 1)


def test_jsonl_keeps_json_metadata_and_a_chosen_text_column() -> None:
    lines = [{"body": "ok", "review": "Nice", "stars": 5}, {"review": "Bad", "gold": "negative"}]
    data = "\n".join(json.dumps(x) for x in lines).encode()
    up = parse_upload(data, "d.jsonl", LABELS, text_column="review")
    assert up.format == "jsonl" and up.gold_column == "gold"
    assert up.items[0].metadata == {"body": "ok", "stars": 5}
    assert up.items[1].gold == "negative"


def test_format_is_sniffed_when_the_name_says_nothing() -> None:
    assert parse_upload(b'{"text": "a"}\n', "upload", LABELS).format == "jsonl"
    assert parse_upload(b"text\na\n", "upload", LABELS).format == "csv"


def test_a_utf8_bom_is_accepted() -> None:
    assert parse_upload("\ufefftext\nhé\n".encode(), "d.csv", LABELS).items[0].text == "hé"


def test_wrong_encoding_names_the_byte_and_line() -> None:
    (msg,) = rejected("text\nok\ncaf\xe9\n".encode("latin-1"))
    assert "not UTF-8" in msg and "0xe9" in msg and "line 3" in msg


@pytest.mark.parametrize("data", [b"", b"  \n\n", b"text\n", b"text\n\n\n"])
def test_empty_files_and_header_only_files(data: bytes) -> None:
    (msg,) = rejected(data)
    assert msg in (
        "The file is empty.",
        "The file has no data rows (only a header or blank lines).",
    )


def test_missing_text_column_lists_the_columns() -> None:
    (msg,) = rejected(b"a,b\n1,2\n")
    assert "No text column found" in msg and "the columns are: a, b" in msg
    (msg,) = rejected(b"text,b\n1,2\n", text_column="comment")
    assert "no text column 'comment'" in msg


def test_size_limits_are_settings() -> None:
    limits = ImportLimits(max_bytes=10)
    (msg,) = rejected(b"text\n" + b"x" * 20 + b"\n", limits=limits)
    assert "limit is 10 bytes" in msg
    (msg,) = rejected(b"text\na\nb\nc\n", limits=ImportLimits(max_rows=2))
    assert "3 rows; the limit is 2 rows" in msg
    (msg,) = rejected(b"text\nshort\n" + b"y" * 30 + b"\n", limits=ImportLimits(max_text_chars=8))
    assert "Line(s) 3 have texts longer than 8 characters" in msg


def test_every_problem_is_reported_at_once_and_gold_labels_are_listed() -> None:
    data = b"text,label\na,pos\nb,positive\nc,neutral\nd,pos\ne," + b"z" * 50 + b"\n"
    errors = rejected(data)
    assert errors == [
        "Gold labels not in the label set (negative, positive): 'pos' (line(s) 2, 5), "
        "'neutral' (line(s) 4), " + repr("z" * 50) + " (line(s) 6).",
    ]


def test_duplicates_with_conflicting_gold_labels_are_refused() -> None:
    (msg,) = rejected(b"text,gold\nsame,positive\nother,\nsame,negative\n")
    assert (
        msg
        == "The same text has different gold labels on lines 2 and 4 ('positive' vs 'negative')."
    )


def test_malformed_csv_and_jsonl_name_their_lines() -> None:
    assert rejected(b"text,label\na,positive,extra\nb,negative\n") == [
        "Line 2 has 3 fields; the header has 2."
    ]
    errors = rejected(b'{"text": "a"}\nnot json\n[1, 2]\n', "d.jsonl")
    assert errors == ["Line(s) 2 are not valid JSON.", "Line(s) 3 are not JSON objects."]
    (msg,) = rejected(b'{"text": 5}\n', "d.jsonl")
    assert msg == "The text on line(s) 1 is not a string."


def test_all_blank_texts_is_an_error_not_an_empty_import() -> None:
    (msg,) = rejected(b"text,label\n ,positive\n\t,negative\n")
    assert msg == "Every text in column 'text' is blank (2 rows)."


def test_repeated_header_columns_are_refused() -> None:
    (msg,) = rejected(b"text,text\na,b\n")
    assert msg == "The header repeats the column(s) text."


def test_a_quote_never_closed_is_refused_naming_the_line_it_opens_on() -> None:
    errors = rejected(b'text,label\nfine,positive\n"broken,negative\nnext,positive\nlast,\n')
    assert any("Line 3 opens a quoted field that is never closed" in e for e in errors)


def test_a_text_spanning_lines_is_imported_and_its_first_line_reported() -> None:
    """A quote closed much later merges rows: valid CSV, so it is imported, but said."""
    data = b'text,label\nfine,positive\n"merged,negative\nnext,positive\nend",\nlast,\n'
    parsed = parse_upload(data, "d.csv", LABELS)
    assert [i.text for i in parsed.items] == ["fine", "merged,negative\nnext,positive\nend", "last"]
    assert parsed.multiline == [3]
    assert [i.lines[0] for i in parsed.items] == [2, 3, 6]


def test_a_file_with_too_many_columns_is_refused() -> None:
    header = ",".join(["text"] + [f"c{i}" for i in range(150)])
    errors = rejected(f"{header}\n".encode() + b"x" + b"," * 150 + b"\n")
    assert errors == ["The file has 151 columns; the limit is 100."]
