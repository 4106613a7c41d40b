"""The one place that turns a value into a CSV cell a spreadsheet will not evaluate, and back.

OWASP's CSV-injection rule: a cell that begins with ``=``, ``+``, ``-``, ``@``, TAB or CR (and
NUL, as ASVS 1.2.10 adds) is a formula to Excel, LibreOffice and Google Sheets; prefixing it
with ``'`` makes it text (the quote is not shown). An export passes every cell through
`neutralise`; an import passes every field through `restore`, which undoes exactly that and
nothing else: ``restore(neutralise(x)) == x`` for every string, so exported lists re-import
unchanged. A value that itself begins with ``'`` before one of those characters (or a second
``'``) gets one more quote, which is what keeps the pair exact.
"""

from __future__ import annotations

FORMULA_START = frozenset("=+-@\t\r\x00")
_QUOTE = "'"
_ESCAPED = FORMULA_START | {_QUOTE}


def neutralise(cell: str) -> str:
    """The cell as a spreadsheet must show it: text, never a formula."""
    first = cell[:1]
    if first in FORMULA_START or (first == _QUOTE and cell[1:2] in _ESCAPED and cell[1:2]):
        return _QUOTE + cell
    return cell


def restore(cell: str) -> str:
    """Undo `neutralise` (only its quote: other cells come back as they are)."""
    if cell[:1] == _QUOTE and cell[1:2] and cell[1:2] in _ESCAPED:
        return cell[1:]
    return cell
