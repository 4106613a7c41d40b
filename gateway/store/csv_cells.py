"""CSV cells a spreadsheet will not run: strangers' text stays text when an export is opened.

A display name such as ``=HYPERLINK("http://…")`` or ``@SUM(…)`` in a call log export would be
a formula in Excel or LibreOffice (CSV injection, CWE-1236). `cell` puts an apostrophe before
such a cell, which spreadsheets show as text. Cells of digits and pattern signs only
(``+33612345678``, ``+33162*``, ``-5``) are left alone: a formula that does harm needs a
function name or a ``|``. `uncell` undoes it, so an exported list imports back as it
was.
"""

from __future__ import annotations

import re
from typing import Any

TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n")
_HARMLESS = re.compile(r"[0-9+\-*?\[\] .,]*")


def cell(value: Any) -> str:
    """`value` as a CSV cell that no spreadsheet evaluates."""
    text = "" if value is None else str(value)
    first = text.lstrip(" ")[:1]
    if first and first in TRIGGERS and not _HARMLESS.fullmatch(text):
        return "'" + text
    return text


def uncell(text: str) -> str:
    """A cell as `cell` received it: the apostrophe it added is dropped."""
    if len(text) > 1 and text[0] == "'" and text[1:].lstrip(" ")[:1] in TRIGGERS:
        return text[1:]
    return text
