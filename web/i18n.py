"""French and English for the UI: gettext catalogs through Flask-Babel, dates and numbers by Babel.

English text is the message id; the French is in web/translations (the UI's own words) and
gateway/translations (reasons, rule labels, sources: words the digest and SMS use too). Both
are compiled .mo files committed next to their .po (`make translations` rebuilds them), so a
fresh clone, `make run` and `make install` need no build step. `tests/unit/test_catalogs.py`
fails when a string of the templates, of the views or of the reasons has no French entry, or
when a .mo is older than its .po.

Dates, times and counts follow the reader's language: fr (24/11/2026 15:00, 1 000 000) or
English with day-first dates (en_GB: 24/11/2026, 15:00), since the owners are in Europe.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from babel import Locale
from flask import Flask
from flask_babel import Babel, format_datetime, format_decimal, format_time, get_translations

import gateway
from gateway.screening.words import Formats

LANGUAGES = ("fr", "en")
FORMAT_LOCALES = {"fr": "fr_FR", "en": "en_GB"}
TRANSLATION_DIRS = (
    Path(gateway.__file__).resolve().parent / "translations",
    Path(__file__).resolve().parent / "translations",
)


def init_babel(app: Flask, language: Callable[[], str], timezone: Callable[[], str]) -> None:
    """Set up Flask-Babel on `app` with both catalogs, the owner's language and time zone."""
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = ";".join(str(p) for p in TRANSLATION_DIRS)
    Babel(app, locale_selector=lambda: FORMAT_LOCALES.get(language(), "en_GB"),
          timezone_selector=timezone)


def gettext(message: str) -> str:
    """`message` in the request's language."""
    return str(get_translations().ugettext(message))


def ngettext(singular: str, plural: str, n: int) -> str:
    """The singular or (one of the) plural forms for `n`, in the request's language."""
    return str(get_translations().ungettext(singular, plural, n))


def pgettext(context: str, message: str) -> str:
    """`message` in the request's language, for the meaning `context` names."""
    return str(get_translations().upgettext(context, message))


def _moment(value: Any) -> str:
    moment = value if isinstance(value, datetime) else _parse(value)
    return str(value) if moment is None else str(format_datetime(moment, "short"))


def _clock(value: Any) -> str:
    moment = value if isinstance(value, datetime) else _parse(value)
    return str(value) if moment is None else str(format_time(moment, "short"))


def _parse(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def country_name(region: str, language: str) -> str:
    """A region code as the country's name in `language` (the code itself if unknown)."""
    names = Locale.parse(FORMAT_LOCALES.get(language, "en_GB")).territories
    return str(names.get(region.upper(), region))


def formats(language: str) -> Formats:
    """How the request's reader sees reasons' values (see gateway.screening.words)."""
    return Formats(
        gettext=gettext, ngettext=ngettext, moment=_moment, clock=_clock,
        number=lambda n: str(format_decimal(n)),
        country=lambda region: country_name(region, language),
    )
