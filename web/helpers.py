"""Template helpers shared by the views: language, CSRF field, formatting, pagination."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from babel import Locale
from flask import Flask, g, request, session
from flask_babel import format_datetime, format_decimal
from markupsafe import Markup, escape

from gateway import untrusted
from gateway.numbers import national_format
from gateway.screening.rules import REJECT_CODES
from gateway.screening.words import (
    CALLER_KINDS,
    N_,
    SYSTEM_LABELS,
    label_words,
    number_type_words,
    outcome_words,
    render,
    render_reason,
    source_words,
)
from web.i18n import (
    FORMAT_LOCALES,
    LANGUAGES,
    country_name,
    formats,
    gettext,
    init_babel,
    ngettext,
    pgettext,
)
from web.labels import words
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
    """Translate `message` into the session's language and fill in `{name}` placeholders."""
    text = gettext(message)
    return text.format(**values) if values else text


def _n(singular: str, plural: str, n: int, /, **values: Any) -> str:
    """The right plural form for `n` in the session's language; `{n}` and `values` filled."""
    return ngettext(singular, plural, n).format(n=n, **values)


def _p(context: str, message: str, /, **values: Any) -> str:
    """Translate `message` in the meaning `context` names ("list name", "country mode")."""
    text = pgettext(context, message)
    return text.format(**values) if values else text


def reason_words(row: Any) -> str:
    """A call's reason in the reader's language (rows from before reason codes: as stored).

    `row` is a call row or a decision as a mapping (the "test a number" result).
    """
    def get(key: str) -> Any:
        return row.get(key) if isinstance(row, Mapping) else getattr(row, key, None)

    return render_reason(get("reason_code"), get("reason_params"), get("reason") or "",
                         formats(current_language()))


# A call without an outcome this recent is still going on (ringing, a message being left).
ONGOING_SECONDS = 15 * 60


def outcome_text(row: Any) -> str:
    """What happened to a logged call, in the reader's language ("" when the action says it).

    "rang 2 s, nobody answered", "left a 12 s message", "hung up during the greeting"…
    """
    outcome = getattr(row, "outcome", None)
    ongoing = False
    if outcome is None and getattr(row, "at", None) is not None:
        ongoing = (datetime.now(UTC) - row.at).total_seconds() < ONGOING_SECONDS
    return outcome_words(outcome, getattr(row, "duration_s", None),
                         formats(current_language()), ongoing=ongoing)


def why_words(rejected: Any) -> str:
    """Why an import left a line out (a `list_files.Rejected`), in the reader's language."""
    if rejected.params:
        return render(rejected.template, rejected.params, formats(current_language()))
    return gettext(rejected.template or rejected.why)


def decimal(value: float, digits: int = 1) -> str:
    """A number with `digits` decimals, the reader's way (1,5 in French)."""
    return str(format_decimal(value, "#,##0." + "0" * digits))


def error_words(exc: Exception) -> str:
    """An error the store or the core raised, in the reader's language when it has a template."""
    template = getattr(exc, "template", None)
    params = getattr(exc, "params", None)
    if template and params:
        return render(template, params, formats(current_language()))
    return gettext(template or str(exc))


def label(text: str) -> str:
    """An entry's or a rule's label: translated when Ringfence wrote it, else as typed."""
    return label_words(text or "", formats(current_language()))


def stored_label(typed: str) -> str:
    """A label typed in a form, as stored: a system label shown translated goes back to English.

    The rules form shows "les numéros masqués laissent un message"; saving it unchanged must
    keep the English label, or the rule's reasons would stay French in the English UI.
    """
    typed = typed.strip()[:200]
    fmt = formats(current_language())
    for system in SYSTEM_LABELS:
        if typed == label_words(system, fmt):
            return system
    return typed


def source(text: str) -> str:
    """Where an entry came from, in words."""
    return source_words(text or "", formats(current_language()))


def countries(codes: str) -> str:
    """Country codes typed with commas ("FR, BE") as the countries' names."""
    language = current_language()
    return ", ".join(country_name(code.strip().upper(), language)
                     for code in str(codes).split(",") if code.strip())


def language_name(code: str) -> str:
    """A language code ("fr") as its name in the reader's language ("French", "français")."""
    try:
        name = Locale.parse(code).get_display_name(FORMAT_LOCALES.get(current_language(),
                                                                      "en_GB"))
    except (ValueError, TypeError):
        return code
    return str(name or code)


def caller_kind(kind: str) -> str:
    """"withheld number" or "invalid number" in the reader's language."""
    return gettext(CALLER_KINDS.get(kind, kind))


def number_type(value: str | None) -> str:
    """A number type (PREMIUM_RATE) in words."""
    return number_type_words(value, formats(current_language())) if value else ""


def csrf_token() -> str:
    """The session's CSRF token, created on first use."""
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = new_csrf_token()
    return str(token)


def csrf_field() -> Markup:
    """A hidden input carrying the CSRF token, for every POST form."""
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(csrf_token())


def local_time(value: datetime | None, fmt: str = "short") -> str:
    """An aware time in the configured time zone, the reader's way (24/11/2026 15:00)."""
    if value is None:
        return ""
    return str(format_datetime(value, fmt))


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
        return _("rejected ({code} {text})", code=code, text=gettext(REJECT_CODES.get(code, "")))
    if kind == "announce":
        return _("message played ({prompt})", prompt=prompt_words(param or "not_in_service"))
    if kind == "voicemail":
        return _("sent to voicemail") + (f" ({prompt_words(param)})" if param else "")
    if kind == "challenge":
        return _("challenged (press a key)")
    return action


# Built-in prompts by name, for labels (the prompts page, actions such as announce:closed).
PROMPT_WORDS = {
    "greeting": N_("voicemail greeting (before the beep)"),
    "challenge": N_("challenge (press a key)"),
    "challenge_passed": N_("challenge passed"),
    "spoof_shield": N_("spoof shield (we did not call you)"),
    "not_in_service": N_("not in service"), "sit": N_("special information tones"),
    "closed": N_("closed: call back later"), "goodbye": N_("goodbye (after a wrong key)"),
    "connecting": N_("connecting you (after a challenge)"),
    "published": N_("our number was just published (press a key)"),
    "beep": N_("beep before the message"),
}
_KEY_SLUGS = {"star": "*", "hash": "#"}


def prompt_words(name: str) -> str:
    """A prompt's name in words (challenge_5 is the challenge asking for the key 5)."""
    base, _sep, slug = name.rpartition("_")
    key = _KEY_SLUGS.get(slug, slug)
    if base in ("challenge", "published") and len(key) == 1 and key in "0123456789*#":
        if base == "challenge":
            return _("challenge asking for the key {digit}", digit=key)
        return _("our number was just published, asking for the key {digit}", digit=key)
    known = PROMPT_WORDS.get(name)
    return gettext(known) if known else name


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
    init_babel(app, current_language, lambda: state().settings.timezone)
    app.jinja_env.autoescape = True
    app.jinja_env.finalize = _inert_output
    app.jinja_env.globals.update(_=_, _n=_n, _p=_p, csrf_field=csrf_field,
                                 csrf_token=csrf_token, lang=current_language)
    app.jinja_env.filters.update(localtime=local_time, phone=phone, action_words=action_words,
                                 duration=duration, reason=reason_words, error=error_words,
                                 label=label, source=source, caller_kind=caller_kind,
                                 number_type=number_type, prompt=prompt_words, words=words,
                                 why=why_words, decimal=decimal, untrusted=untrusted_text,
                                 outcome=outcome_text, countries=countries,
                                 language=language_name)

    @app.context_processor
    def _nav() -> dict[str, Any]:

        return {"settings": state().settings, "logged_in": bool(session.get("auth")),
                "escape": escape}
