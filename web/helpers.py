"""Template helpers shared by the views: language, CSRF field, formatting, pagination."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import Flask, g, request, session
from markupsafe import Markup, escape

from gateway import untrusted
from gateway.numbers import national_format
from gateway.screening.rules import REJECT_CODES
from web.i18n import LANGUAGES, translate
from web.security import LANGUAGE_KEY, new_csrf_token
from web.state import state

PAGE_SIZE = 50


def local_url(target: str | None, default: str) -> str:
    """`target` if it is a path on this site, else `default` (no open redirects).

    A control character (CR, LF, TAB, NUL…) or a backslash anywhere refuses it too: in a
    Location header it would be a 500 at best, and browsers drop tabs and newlines from URLs,
    so "/<TAB>/evil" would become "//evil".
    """
    if (target and target.startswith("/") and not target.startswith("//")
            and "\\" not in target
            and not any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in target)):
        return target
    return default


def current_language() -> str:
    """The session's language, else the owner's saved choice, else the configured one."""

    lang = session.get("lang")
    if lang in LANGUAGES:
        return str(lang)
    cached = getattr(g, "ringfence_lang", None)
    if cached is None:
        saved = state().store.runtime.get_private(LANGUAGE_KEY)
        cached = g.ringfence_lang = saved if saved in LANGUAGES else state().settings.language
    return str(cached)


def _(message: str, /, **values: Any) -> str:
    """Translate `message` into the session's language and fill in `values`."""
    return translate(message, current_language(), **values)


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = new_csrf_token()
    return str(token)


def csrf_field() -> Markup:
    """A hidden input carrying the CSRF token, for every POST form."""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(csrf_token())


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Format an aware time in the configured time zone."""

    if value is None:
        return ""
    return value.astimezone(ZoneInfo(state().settings.timezone)).strftime(fmt)


def phone(value: str | None) -> str:
    """Format an E.164 number nationally (home numbers) or internationally."""

    if not value:
        return ""
    return national_format(value, state().settings.home_region)


def action_words(action: str | None) -> str:
    """Describe a stored action (``reject:603``) in the owner's language."""
    if not action:
        return _("default block action")
    kind, _sep, param = action.partition(":")
    if kind == "pass":
        return _("rang through")
    if kind == "reject":
        code = int(param) if param.isdigit() else 603
        return _("rejected ({code} {text})", code=code, text=REJECT_CODES.get(code, ""))
    if kind == "announce":
        return _("message played ({prompt})", prompt=param or "not_in_service")
    if kind == "voicemail":
        return _("sent to voicemail") + (f" ({param})" if param else "")
    if kind == "challenge":
        return _("challenged (press a key)")
    return action


def duration(seconds: float | None) -> str:
    """Format seconds as m:ss."""
    if seconds is None:
        return ""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


@dataclass(frozen=True)
class Page:
    """One page of a paginated list: which page, how many, and links' query arguments."""

    number: int
    size: int
    total: int

    @property
    def pages(self) -> int:
        """How many pages there are (at least one)."""
        return max(1, math.ceil(self.total / self.size))

    @property
    def offset(self) -> int:
        """Rows to skip."""
        return (self.number - 1) * self.size

    def url_args(self, number: int) -> dict[str, Any]:
        """The current URL's arguments (path and query) with `page` replaced."""
        args: dict[str, Any] = dict(request.view_args or {})
        args.update({k: v for k, v in request.args.items() if k != "page" and v})
        args["page"] = number
        return args


def page_number() -> int:
    """The `page` query argument, at least 1."""
    raw = request.args.get("page", "1")
    return max(1, int(raw)) if raw.isdigit() else 1


def paginate(total: int, size: int = PAGE_SIZE) -> Page:
    """A Page for the current request, clamped to the last page."""
    page = Page(page_number(), size, total)
    if page.number > page.pages:
        page = Page(page.pages, size, total)
    return page


def untrusted_text(value: object) -> Markup:
    """A stranger's text (display name, label, reason) as inert, bidi-isolated HTML."""
    # <bdi> isolates the text and takes its direction from it: a right-to-left name cannot
    # reorder the number or words next to it. Controls and overrides are already gone.
    return Markup("<bdi>{}</bdi>").format(untrusted.strip_controls(str(value or "")))


def _inert_output(value: Any) -> Any:
    # Every {{ … }} of every template: no control character or bidi override reaches a page,
    # whichever field it came in (escaping alone leaves ESC and U+202E as they are).
    if isinstance(value, str) and not isinstance(value, Markup):
        return untrusted.strip_controls(value)
    return value


def install_template_helpers(app: Flask) -> None:
    """Expose translation, CSRF and formatting helpers to every template."""
    app.jinja_env.autoescape = True
    app.jinja_env.finalize = _inert_output
    app.jinja_env.globals.update(_=_, csrf_field=csrf_field, csrf_token=csrf_token,
                                 lang=current_language)
    app.jinja_env.filters.update(localtime=local_time, phone=phone, action_words=action_words,
                                 duration=duration, untrusted=untrusted_text)

    @app.context_processor
    def _nav() -> dict[str, Any]:

        return {"settings": state().settings, "logged_in": bool(session.get("auth")),
                "escape": escape}
