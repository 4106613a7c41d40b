"""Reading uploaded list files: every encoding, separator and line ending; any bytes at all."""

from __future__ import annotations

import codecs

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.store import Store
from gateway.store.decode import FileProblem, csv_rows, read_text_file, sniff_delimiter
from tests.helpers import Services

ROWS = [["0612345678", "Zoé, plombier"], ["0698765432", "Marc"]]


def _rows(data: bytes) -> tuple[list[list[str]], str, str]:
    text = read_text_file(data)
    rows = [fields for _, fields, _ in csv_rows(text.lines, text.delimiter) if fields]
    return rows, text.encoding_shown, text.delimiter


@pytest.mark.parametrize(("encoding", "bom", "name"), [
    ("utf-8", b"", "UTF-8"), ("utf-8", codecs.BOM_UTF8, "UTF-8"),
    ("cp1252", b"", "Windows-1252"),  # French Excel's "CSV (point-virgule)"
    ("utf-16-le", codecs.BOM_UTF16_LE, "UTF-16"), ("utf-16-be", codecs.BOM_UTF16_BE, "UTF-16"),
    ("utf-16-le", b"", "UTF-16"),  # no BOM: found by the NULs
    ("utf-32", b"", "UTF-32"),  # Python's utf-32 writes its own BOM
])
@pytest.mark.parametrize("separator", [",", ";", "\t"])
@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_every_encoding_separator_and_line_ending(encoding: str, bom: bytes, name: str,
                                                  separator: str, newline: str) -> None:
    body = newline.join(f"{n}{separator}{label}" for n, label in ROWS) + newline
    if separator == ",":
        body = body.replace("Zoé, plombier", '"Zoé, plombier"')
    rows, shown, found = _rows(bom + body.encode(encoding))
    assert rows == ROWS and shown == name and found == separator


def test_a_stray_latin1_byte_in_utf8_is_read_as_windows_1252() -> None:
    data = "0612345678,Zoé\n".encode() + "0698765432,Hélène\n".encode("cp1252")
    rows, shown, _ = _rows(data)
    assert rows == [["0612345678", "Zoé"], ["0698765432", "Hélène"]]
    assert shown == "Windows-1252"


def test_labels_with_commas_do_not_fool_the_separator() -> None:
    assert sniff_delimiter(["0612345678;Jean, Marie, Paul\n"] * 3) == ";"
    assert sniff_delimiter(["0612345678,Jean; Marie\n"] * 3) == ","
    assert sniff_delimiter(["0612345678\n"]) == ","  # one column: nothing to separate


def test_binary_and_empty_files_are_refused_in_words() -> None:
    with pytest.raises(FileProblem, match="not a text"):
        read_text_file(bytes(range(256)) * 20)
    with pytest.raises(FileProblem, match="empty"):
        read_text_file(b"\n\r\n  \n")


def test_a_quoted_label_may_span_lines_and_keeps_the_first_line_number() -> None:
    text = read_text_file(b'0612345678,"two\nlines"\n0698765432,x\n')
    assert [(n, f) for n, f, _ in csv_rows(text.lines)] == [
        (1, ["0612345678", "two\nlines"]), (3, ["0698765432", "x"])]


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=3000))
def test_any_bytes_give_a_report_never_an_exception(service: Services, data: bytes) -> None:
    store: Store = service.store
    try:
        report = store.list_files.import_file(data, "block")
    except FileProblem as exc:
        assert str(exc)  # a sentence for the owner, nothing else
        return
    assert report.added + report.duplicates + report.rejected_count >= 0
    for rejected in report.rejected:
        assert rejected.line >= 1 and "\x00" not in rejected.text and rejected.why


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30),
                max_size=20),
       st.sampled_from(["utf-8", "utf-16", "utf-8-sig", "cp1252"]),
       st.sampled_from(["\n", "\r\n", "\r"]))
def test_any_text_in_any_encoding_reads_back_line_by_line(lines: list[str], encoding: str,
                                                          newline: str) -> None:
    clean = [line.replace("\r", " ").replace("\n", " ") for line in lines]
    try:
        data = newline.join(clean).encode(encoding)
    except UnicodeEncodeError:
        return  # not every character exists in Windows-1252
    try:
        text = read_text_file(data)
    except FileProblem:
        return
    read = [line.rstrip("\n") for line in text.lines]
    assert len(read) <= len(clean)
