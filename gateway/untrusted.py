"""Text that strangers wrote, made inert wherever Ringfence shows it.

SIP display names, labels of subscribed lists and vCards, SMS bodies: any of them may carry
control characters (ESC sequences for a terminal, CR/LF for a header or a CSV row, NUL) or
Unicode's explicit bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE turns "moc.knab"
into "bank.com" and can flip the number shown next to a name). `strip_controls` removes them;
`isolate` wraps text with right-to-left letters in FSI…PDI so that, in a plain-text digest,
email or SMS, it cannot reorder the words around it (HTML uses <bdi> for the same). Pure
functions, no Ringfence imports: the UI, the notifications and the CSV export all use them.
"""

from __future__ import annotations

import re
import unicodedata

# C0 and C1 controls and DEL; the ones that separate words become a space.
_SPACING = "\t\n\v\f\r\x85\u2028\u2029"
# Explicit directional embeddings, overrides and isolates (Unicode bidi classes LRE, RLE, PDF,
# LRO, RLO, LRI, RLI, FSI, PDI). The implicit marks LRM/RLM/ALM change no order and stay.
_BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_REMOVE = re.compile("[\x00-\x08\x0e-\x1f\x7f\x80-\x84\x86-\x9f" + _BIDI_CONTROLS + "]")
_TO_SPACE = re.compile("[" + _SPACING + "]+")
FSI, PDI = "\u2068", "\u2069"


def strip_controls(text: str) -> str:
    """`text` without control characters or bidi overrides (line breaks become a space)."""
    if text.isascii() and text.isprintable():
        return text  # the common case, checked at C speed
    return _REMOVE.sub("", _TO_SPACE.sub(" ", text))


def has_rtl(text: str) -> bool:
    """Whether `text` holds right-to-left letters (Hebrew, Arabic…)."""
    return not text.isascii() and any(
        unicodedata.bidirectional(ch) in ("R", "AL") for ch in text)


def isolate(text: str) -> str:
    """`text` wrapped in FSI…PDI if it holds right-to-left letters, else unchanged.

    Only then: a plain Latin name stays as it was, and an SMS is not forced out of the GSM
    alphabet (FSI and PDI are not in it) for nothing.
    """
    return f"{FSI}{text}{PDI}" if has_rtl(text) else text


def plain(text: str | None) -> str:
    """Stranger's text for a plain-text message: stripped, then isolated."""
    return isolate(strip_controls(text or ""))
