"""French and English for the UI: English text is the key, French comes from a dict.

Small on purpose: one owner, two languages, no build step. A missing French string falls back
to English, and `tests/unit/test_web_i18n.py` checks that every string used has a translation.
"""

from __future__ import annotations

from typing import Any

LANGUAGES = ("fr", "en")

from web.i18n_fr import FR  # noqa: E402 - the table is long; it lives in its own module


def translate(message: str, lang: str, /, **values: Any) -> str:
    """Translate `message` into `lang` and fill in `{name}` placeholders from `values`."""
    template = FR.get(message, message) if lang == "fr" else message
    return template.format(**values) if values else template
