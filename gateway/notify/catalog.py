"""The gateway's French: gateway/translations, read with the standard library's gettext.

The digest, the alerts and their SMS are written in the gateway process, which stays free of
Flask and Babel (docs/architecture.md); the compiled .mo files are all gettext needs. English
is the message ids themselves.
"""

from __future__ import annotations

import gettext
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from gateway.screening.words import Formats

CATALOGS = Path(__file__).resolve().parent.parent / "translations"


@lru_cache(maxsize=4)
def catalog(language: str) -> gettext.NullTranslations:
    """The translations for `language` (English, or any language without a catalog: none)."""
    if language == "en":
        return gettext.NullTranslations()
    return gettext.translation("messages", CATALOGS, [language], fallback=True)


def _moment(value: Any, language: str) -> str:
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return f"{moment:%d/%m %H:%M}"


def _clock(value: Any) -> str:
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return str(value)
    return f"{moment:%H:%M}"


def formats(language: str) -> Formats:
    """How a digest or an alert in `language` shows reasons' values."""
    translations = catalog(language)
    group = "\u202f" if language == "fr" else ","  # 1 000 000 in French, 1,000,000 in English
    return Formats(
        gettext=translations.gettext, ngettext=translations.ngettext,
        moment=lambda value: _moment(value, language), clock=_clock,
        number=lambda n: f"{n:,}".replace(",", group),
    )
