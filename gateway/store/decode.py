"""Reading a list file the owner uploads: any encoding, any of the usual separators, any bytes.

Owners bring CSV from wherever: French Excel writes Windows-1252 with semicolons, Excel's
"Unicode text" is UTF-16 with tabs, old Macs end lines with CR alone, and now and then somebody
uploads a photo by mistake. Whatever comes in becomes lines of text with a known separator, or a
`FileProblem` that says in words what is wrong; nothing here raises anything else.

- Encoding: a byte-order mark decides (UTF-8, UTF-16, UTF-32); without one, a file with NULs in
  every other byte is UTF-16; anything else is read as UTF-8, and bytes that are not UTF-8 are
  read as Windows-1252 (which French Excel writes), one by one, so a mostly-UTF-8 file with one
  stray accented byte still reads right.
- Lines end with LF, CRLF or CR.
- Separator: `,`, `;` or tab, whichever follows something number-like at the start of most
  lines (labels may contain commas; numbers never do).
"""

from __future__ import annotations

import codecs
import csv
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from gateway.screening.words import N_

CHUNK = 64 * 1024
SNIFF_LINES = 50
DELIMITERS = (",", ";", "\t")
_NUMBERISH = re.compile(r"\s*\"?\s*(re:|[+(]?[0-9])[0-9 .()\-/*?\[\]!+]*\"?\s*$")
_BREAK = re.compile(r"\r\n|\r|\n")
MAX_LINE = 1024 * 1024


class FileProblem(ValueError):
    """The file as a whole cannot be read as a list (binary data, empty): why, in words."""


def _byte_as_cp1252(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:  # the 5 bytes Windows-1252 leaves undefined
        return bytes([byte]).decode("latin-1")


# UTF-8 is decoded with surrogateescape (each bad byte becomes U+DC80..U+DCFF), then those
# become the byte's Windows-1252 character: no global error handler, safe across threads.
_UNESCAPE = {0xDC00 + b: _byte_as_cp1252(b) for b in range(0x80, 0x100)}
_ESCAPED = re.compile("[\udc80-\udcff]")


def sniff_encoding(head: bytes) -> str:
    """The codec to read a file that starts with `head` (see the module docstring)."""
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    pairs = len(head) // 2
    if pairs >= 2:
        even_nul = sum(1 for i in range(0, pairs * 2, 2) if head[i] == 0)
        odd_nul = sum(1 for i in range(1, pairs * 2, 2) if head[i] == 0)
        # ASCII text in UTF-16: every other byte is NUL, the others almost never are.
        if odd_nul >= 0.4 * pairs and even_nul <= 0.05 * pairs:
            return "utf-16-le"
        if even_nul >= 0.4 * pairs and odd_nul <= 0.05 * pairs:
            return "utf-16-be"
    return "utf-8"


ENCODING_NAMES = {"utf-32": "UTF-32", "utf-8-sig": "UTF-8", "utf-16": "UTF-16",
                  "utf-16-le": "UTF-16", "utf-16-be": "UTF-16", "utf-8": "UTF-8"}


def _looks_binary(text: str) -> bool:
    controls = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\t\r\n")
    return controls > max(2, len(text) // 20)


def _split_lines(pieces: Iterable[str]) -> Iterator[str]:
    """Lines ending in LF, CRLF or CR (returned with a plain LF), from decoded pieces."""
    rest = ""
    for piece in pieces:
        if not piece:
            continue
        rest += piece
        # Hold back a trailing CR: it may be the first half of a CRLF split across pieces.
        hold = rest.endswith("\r")
        parts = _BREAK.split(rest[:-1] if hold else rest)
        rest = parts.pop() + ("\r" if hold else "")
        if len(rest) > MAX_LINE:  # no line break for a megabyte: not a list, cut it
            parts.append(rest)
            rest = ""
        for line in parts:
            yield line + "\n"
    parts = _BREAK.split(rest)
    if parts[-1] == "":
        parts.pop()
    for line in parts:
        yield line + "\n"


def sniff_delimiter(lines: list[str]) -> str:
    """`,`, `;` or tab: the one that most often follows a number-like first field."""
    votes = dict.fromkeys(DELIMITERS, 0)
    for line in lines:
        for delimiter in DELIMITERS:
            first, found, _ = line.partition(delimiter)
            if found and _NUMBERISH.match(first):
                votes[delimiter] += 1
    best = max(DELIMITERS, key=lambda d: (votes[d], d == ","))
    return best if votes[best] else ","


@dataclass
class TextFile:
    """An uploaded file as text lines, and how it was read."""

    lines: Iterator[str]
    encoding: str  # "UTF-8", "UTF-16", "Windows-1252"…, for the report
    delimiter: str
    fallback_bytes: list[int] = field(default_factory=lambda: [0])  # bytes read as cp1252

    @property
    def encoding_shown(self) -> str:
        """The encoding as the report says it (Windows-1252 once a byte needed it)."""
        return "Windows-1252" if self.fallback_bytes[0] else self.encoding


def _decoded(data: bytes, codec: str, fallbacks: list[int]) -> Iterator[str]:
    errors = "surrogateescape" if codec == "utf-8" else "replace"
    decoder = codecs.getincrementaldecoder(codec)(errors=errors)
    for start in range(0, len(data) + 1, CHUNK):
        piece = decoder.decode(data[start:start + CHUNK], final=start + CHUNK >= len(data))
        if codec == "utf-8" and _ESCAPED.search(piece):
            fallbacks[0] += 1
            piece = piece.translate(_UNESCAPE)
        yield piece


def read_text_file(data: bytes) -> TextFile:
    """Decode an uploaded list file; raise FileProblem if it is no text at all."""
    codec = sniff_encoding(data[:4096])
    fallbacks = [0]
    lines = _split_lines(_decoded(data, codec, fallbacks))
    head: list[str] = []
    for line in lines:
        head.append(line)
        if len(head) >= SNIFF_LINES:
            break
    sample = "".join(head)
    if not sample.strip():
        raise FileProblem(N_("the file is empty"))
    if _looks_binary(sample[:4096]):
        raise FileProblem(N_("this is not a text (CSV) file: it looks like a picture, an "
                             "archive or other binary data"))
    return TextFile(_chain(head, lines), ENCODING_NAMES.get(codec, codec),
                    sniff_delimiter(head), fallbacks)


def _chain(head: list[str], rest: Iterator[str]) -> Iterator[str]:
    yield from head
    yield from rest


class _Counted:
    """An iterator of lines that knows how many it has handed out."""

    def __init__(self, lines: Iterator[str]) -> None:
        self.lines = lines
        self.count = 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> str:
        line = next(self.lines)
        self.count += 1
        return line


def csv_rows(lines: Iterator[str], delimiter: str = ","
             ) -> Iterator[tuple[int, list[str] | None, str]]:
    """(line number, fields, "") per row; (line number, None, why) for a line csv refuses.

    A row may span lines (a quoted label with a newline); its number is its first line's.
    After a line csv cannot read, reading goes on with the next one.
    """
    counted = _Counted(lines)
    while True:
        reader = csv.reader(counted, delimiter=delimiter, strict=False)
        start = counted.count + 1
        try:
            for fields in reader:
                yield start, fields, ""
                start = counted.count + 1
        except csv.Error as exc:
            yield start, None, str(exc)
            continue
        return


def shown_text(text: str, limit: int = 80) -> str:
    """A line as the report echoes it: control and format characters replaced, cut short."""
    cleaned = "".join("\ufffd" if unicodedata.category(c) in ("Cc", "Cf") else c
                      for c in text.rstrip("\n"))
    return cleaned[:limit]
