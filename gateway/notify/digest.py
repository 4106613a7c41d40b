"""Build the daily digest from plain data: subject, plain text, HTML and SMS. Pure, no I/O.

Every value that a stranger controls (display names, numbers, and anything else that came from
a call) goes through `inert()` before it is placed anywhere, and through `html.escape()` as well
in the HTML part: a display name such as ``<img src=x onerror=alert(1)>`` must reach the
owner's phone as text, and a name full of newlines or bidi overrides must not forge lines.
"""

from __future__ import annotations

import html
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gateway.notify.catalog import formats
from gateway.screening.words import N_, RULE_KINDS, SYSTEM_LABELS, Nn_, label_words, source_words
from gateway.untrusted import FSI, PDI, isolate

Language = Literal["fr", "en"]

SMS_LIMIT = 160  # GSM-7 septets in one SMS
NAME_LIMIT = 40  # longest stranger-supplied value we show
SHOW_LIMIT = 10  # rows per section in the email

# GSM 03.38: characters an SMS carries in 7 bits. Anything else switches the whole SMS to
# UCS-2 and its limit drops from 160 to 70, so SMS text is folded into this set.
_GSM7_BASIC = set(
    "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = set("^{}\\[~]|€")  # two septets each


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class VoicemailItem:
    """A new voicemail: when, from whom, how long."""

    at: datetime  # local time
    caller: str  # formatted number, or "withheld"/"invalid"
    name: str
    duration_s: float


@dataclass(frozen=True)
class CallerCount:
    """A caller and how many calls it made (top blocked, repeat unknown callers)."""

    caller: str
    name: str
    count: int


@dataclass(frozen=True)
class BurstItem:
    """A burst of unknown callers: when it started and ended (None: still on)."""

    started_at: datetime  # local time
    ended_at: datetime | None
    callers: int  # distinct unknown callers at the peak
    calls: int  # calls that met the burst shield


@dataclass(frozen=True)
class LookItem:
    """A number worth a look, and why."""

    caller: str
    name: str
    why: Literal["repeat", "challenge", "auto"]
    count: int = 1


@dataclass(frozen=True)
class EntryChange:
    """A list entry added since the last digest."""

    list: str  # allow | block
    pattern: str
    label: str
    source: str


@dataclass(frozen=True)
class RuleChange:
    """A rule or run-time setting that differs from the previous digest's snapshot."""

    change: Literal["added", "removed", "changed", "setting"]
    text: str


@dataclass(frozen=True)
class DigestData:
    """Everything one digest says, already gathered from the database."""

    period: str  # the local date of the digest, YYYY-MM-DD
    start: datetime  # local, inclusive
    end: datetime  # local, exclusive
    total_calls: int = 0
    by_action: tuple[tuple[str, int], ...] = ()  # action kind -> calls
    top_blocked: tuple[CallerCount, ...] = ()
    voicemails: tuple[VoicemailItem, ...] = ()
    bursts: tuple[BurstItem, ...] = ()
    worth_a_look: tuple[LookItem, ...] = ()
    new_entries: tuple[EntryChange, ...] = ()
    subscription_entries: tuple[tuple[str, int], ...] = ()  # subscription label -> entries
    rule_changes: tuple[RuleChange, ...] = ()
    first_digest: bool = False  # no earlier snapshot: rule changes cannot be told

    @property
    def blocked(self) -> int:
        """Calls that did not simply ring through."""
        return self.total_calls - dict(self.by_action).get("pass", 0)


@dataclass(frozen=True)
class RenderedDigest:
    """A digest ready for every channel."""

    subject: str
    text: str
    html: str
    sms: tuple[str, ...] = field(default=())


# --------------------------------------------------------------------------- making values inert


def inert(value: str, limit: int = NAME_LIMIT) -> str:
    """Make a stranger-supplied value safe to show as one line of text.

    Control characters, line and paragraph separators and format characters (bidi overrides,
    zero-width joiners) are dropped, runs of spaces collapsed, and the result capped at `limit`;
    text with right-to-left letters is then isolated (FSI…PDI, `gateway.untrusted.isolate`) so
    it cannot reorder the number or words around it. The SMS folds FSI/PDI away (not GSM-7).
    """
    kept = []
    for char in value:
        category = unicodedata.category(char)
        if category in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            kept.append(" " if char in "\t\n\r\v\f\x85\u2028\u2029" else "")
        else:
            kept.append(char)
    text = " ".join("".join(kept).split())
    shown = isolate(_cut(text, limit))
    if len(shown) > limit:  # the isolation marks count too: make room for them
        shown = isolate(_cut(text, limit - (len(shown) - len(_cut(text, limit)))))
    return shown


def _cut(text: str, limit: int) -> str:
    """`text` shortened to `limit` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)].rstrip() + "…"


def gsm7(text: str) -> str:
    """Fold text into the GSM-7 character set (accents dropped where GSM has none)."""
    out = []
    for char in text:
        if char in _GSM7_BASIC or char in _GSM7_EXTENDED:
            out.append(char)
            continue
        if char == "…":
            out.append("...")
            continue
        if char in (FSI, PDI):  # isolation has no GSM-7 form; the folded text needs none
            continue
        if char in "\u2018\u2019":  # typographic apostrophes
            out.append("'")
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", char)
                       if not unicodedata.combining(c))
        out.append(base if base and all(c in _GSM7_BASIC for c in base) else "?")
    return "".join(out)


def sms_length(text: str) -> int:
    """Length of GSM-7 text in septets (extended characters count twice)."""
    return sum(2 if c in _GSM7_EXTENDED else 1 for c in text)


def split_sms(head: str, pieces: Sequence[str], max_parts: int, sep: str = ", ") -> tuple[str, ...]:
    """Join `pieces` after `head` into SMS of at most 160 septets, split between pieces.

    Parts get an " (i/n)" marker when there is more than one; past `max_parts` the last part
    ends with "..." so an owner paying per SMS never gets a flood.
    """
    head, pieces = gsm7(head), [gsm7(p) for p in pieces if p]
    single = head + " " + sep.join(pieces) if pieces else head
    if sms_length(single) <= SMS_LIMIT:
        return (single,)
    marker_room = len(" (9/9)")
    budget = SMS_LIMIT - marker_room
    parts: list[str] = []
    current = head
    for piece in pieces:
        candidate = f"{current} {piece}" if current == head else f"{current}{sep}{piece}"
        if sms_length(candidate) <= budget:
            current = candidate
            continue
        parts.append(current)
        current = piece if sms_length(piece) <= budget else piece[: budget - 3] + "..."
    parts.append(current)
    if len(parts) > max_parts:
        parts = parts[:max_parts]
        last = parts[-1]
        parts[-1] = (last if sms_length(last) <= budget - 3 else last[: budget - 3]) + "..."
    if len(parts) == 1:
        return (parts[0],)
    return tuple(f"{p} ({i}/{len(parts)})" for i, p in enumerate(parts, start=1))


# --------------------------------------------------------------------------- words

# The digest's phrases: English message ids, French in gateway/translations (`make translations`).
_PHRASES: dict[str, str] = {
    "subject": N_("Ringfence: {calls} calls, {blocked} screened, {vm} ({date})"),
    "title": N_("Ringfence daily digest"),
    "window": N_("From {start} to {end}"),
    "calls": N_("Calls"),
    "no_calls": N_("No calls."),
    "top_blocked": N_("Most screened numbers"),
    "voicemails": N_("New voicemails"),
    "no_voicemails": N_("No new voicemail."),
    "bursts": N_("Bursts of unknown callers"),
    "look": N_("Numbers worth a look"),
    "challenge_passed": N_("passed the challenge"),
    "auto": N_("allowed automatically"),
    "changes": N_("Changes to lists and rules"),
    "entry_added_allow": N_("added to the allow list"),
    "entry_added_block": N_("added to the block list"),
    "rule_added": N_("rule added"), "rule_removed": N_("rule removed"),
    "rule_changed": N_("rule changed"), "setting": N_("setting changed"),
    "first": N_("(first digest: rule changes will be shown from the next one)"),
    "no_changes": N_("No changes."),
    "withheld": N_("withheld"), "invalid": N_("invalid number"),
    "times": "\u00d7{n}",
    "sms_head": N_("Ringfence {date}:"),
    "sms_look": N_("check {items}"),
    "footer": N_("Sent by Ringfence. Change what is sent in config.toml, section [notify]."),
}
# Phrases with a count: (singular, plural); French says "1 a sonné" but "2 ont sonné".
_COUNTED: dict[str, tuple[str, str]] = {
    "total": Nn_("{n} call in all", "{n} calls in all"),
    "pass": Nn_("{n} rang through", "{n} rang through"),
    "reject": Nn_("{n} rejected", "{n} rejected"),
    "announce": Nn_("{n} answered with a message", "{n} answered with a message"),
    "voicemail": Nn_("{n} sent to voicemail", "{n} sent to voicemail"),
    "challenge": Nn_("{n} challenged", "{n} challenged"),
    "repeat": Nn_("called {n} time, unknown", "called {n} times, unknown"),
    "burst_line": Nn_("{start} for {duration}: {callers} distinct caller, {calls} calls "
                      "shielded", "{start} for {duration}: {callers} distinct callers, "
                      "{calls} calls shielded"),
    "burst_on": Nn_("{start}, still on: {callers} distinct caller, {calls} calls shielded",
                    "{start}, still on: {callers} distinct callers, {calls} calls shielded"),
    "subscription": Nn_("subscription {label}: {n} entry", "subscription {label}: {n} entries"),
    "more": Nn_("… and {n} more", "… and {n} more"),
    "sms_calls": Nn_("{n} call", "{n} calls"),
    "sms_blocked": Nn_("{n} screened", "{n} screened"),
    "sms_vm": Nn_("{n} voicemail", "{n} voicemails"),
    "sms_bursts": Nn_("{n} burst", "{n} bursts"),
}
_MONTHS_EN = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
ACTION_ORDER = ("pass", "reject", "announce", "voicemail", "challenge")


class Words:
    """The digest's and the alerts' phrases in one language (English for anything unknown)."""

    def __init__(self, language: str) -> None:
        self.language = language if language in ("fr", "en") else "en"
        self.fmt = formats(self.language)

    def __call__(self, key: str, /, **values: Any) -> str:
        """The phrase `key`, filled in."""
        text = self.fmt.gettext(_PHRASES[key])
        return text.format(**values) if values else text

    def text(self, message: str, /, **values: Any) -> str:
        """Any marked message (not a phrase key) in this language, filled in."""
        text = self.fmt.gettext(message)
        return text.format(**values) if values else text

    def counted(self, key: str, n: int, /, **values: Any) -> str:
        """The phrase `key` in its singular or plural form for `n`."""
        singular, plural = _COUNTED[key]
        return self.fmt.ngettext(singular, plural, n).format(n=n, **values)


def counted(w: Words, key: str, n: int) -> str:
    """A phrase with a count, in the right plural form."""
    return w.counted(key, n)


def words(language: str) -> Words:
    """The phrase book for `language` (English for anything unknown)."""
    return Words(language)


def format_day(moment: datetime, language: str) -> str:
    """23/11 in French, 23 Nov in English."""
    if language == "fr":
        return f"{moment.day:02d}/{moment.month:02d}"
    return f"{moment.day} {_MONTHS_EN[moment.month - 1]}"


def format_moment(moment: datetime, language: str) -> str:
    """Day and time, e.g. 23/11 08:00."""
    return f"{format_day(moment, language)} {moment:%H:%M}"


def format_duration(seconds: float, language: str) -> str:
    """0:42 for short things, 35 min or 1 h 05 for long ones."""
    seconds = max(0, round(seconds))
    if seconds < 600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d}"


def _who(caller: str, name: str, w: Words) -> str:
    shown = w(caller) if caller in ("withheld", "invalid") else caller
    shown, name = inert(shown, 30), inert(name)
    return f"{shown} ({name})" if name else shown


# --------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class _Section:
    title: str
    lines: tuple[str, ...]  # plain text, already inert (escape before putting in HTML)
    empty: str = ""


def _capped(lines: list[str], total: int, w: Words) -> tuple[str, ...]:
    if total > len(lines):
        lines = [*lines, w.counted("more", total - len(lines))]
    return tuple(lines)


def _sections(data: DigestData, lang: str) -> list[_Section]:
    w = words(lang)
    counts = dict(data.by_action)
    call_lines = [w.counted(a, counts[a]) for a in ACTION_ORDER if counts.get(a)]
    call_lines += [f"{n} {inert(a)}" for a, n in data.by_action if a not in ACTION_ORDER]
    if data.total_calls:
        call_lines.append(w.counted("total", data.total_calls))
    sections = [_Section(w("calls"), tuple(call_lines), w("no_calls"))]

    vm_lines = [
        f"{format_moment(v.at, lang)}  {_who(v.caller, v.name, w)}  "
        f"{format_duration(v.duration_s, lang)}"
        for v in data.voicemails[:SHOW_LIMIT]
    ]
    sections.append(_Section(w("voicemails"), _capped(vm_lines, len(data.voicemails), w),
                             w("no_voicemails")))
    if data.top_blocked:
        lines = [f"{_who(c.caller, c.name, w)}  {w('times', n=c.count)}"
                 for c in data.top_blocked[:SHOW_LIMIT]]
        sections.append(_Section(w("top_blocked"), tuple(lines)))
    if data.bursts:
        lines = []
        for b in data.bursts[:SHOW_LIMIT]:
            start = format_moment(b.started_at, lang)
            if b.ended_at is None:
                lines.append(w.counted("burst_on", b.callers, start=start, callers=b.callers,
                                       calls=b.calls))
            else:
                duration = format_duration((b.ended_at - b.started_at).total_seconds(), lang)
                lines.append(w.counted("burst_line", b.callers, start=start, duration=duration,
                                       callers=b.callers, calls=b.calls))
        sections.append(_Section(w("bursts"), _capped(lines, len(data.bursts), w)))
    if data.worth_a_look:
        lines = []
        for item in data.worth_a_look[:SHOW_LIMIT]:
            name = label_words(item.name, w.fmt) if item.why == "auto" else item.name
            why = (w.counted("repeat", item.count) if item.why == "repeat"
                   else w("challenge_passed") if item.why == "challenge" else w("auto"))
            lines.append(f"{_who(item.caller, name, w)}: {why}")
        sections.append(_Section(w("look"), _capped(lines, len(data.worth_a_look), w)))

    change_lines = [
        f"{inert(e.pattern, 30)}"
        + (f" ({inert(label_words(e.label, w.fmt))})" if e.label else "")
        + f": {w('entry_added_allow' if e.list == 'allow' else 'entry_added_block')}"
        + (f" ({source_words(e.source, w.fmt)})" if e.source not in ("", "manual") else "")
        for e in data.new_entries[:SHOW_LIMIT]
    ]
    change_lines = list(_capped(change_lines, len(data.new_entries), w))
    change_lines += [w.counted("subscription", n, label=inert(label))
                     for label, n in data.subscription_entries]
    rule_word = {"added": w("rule_added"), "removed": w("rule_removed"),
                 "changed": w("rule_changed"), "setting": w("setting")}
    change_lines += [f"{rule_word[c.change]}: {inert(rule_change_words(c.text, w), 120)}"
                     for c in data.rule_changes]
    if data.first_digest:
        change_lines.append(w("first"))
    sections.append(_Section(w("changes"), tuple(change_lines), w("no_changes")))
    return sections


def rule_change_words(text: str, w: Words) -> str:
    """A rule change's description with the labels Ringfence wrote in the reader's language."""
    kind, space, rest = text.partition(" ")
    if kind in RULE_KINDS:
        text = w.text(RULE_KINDS[kind]) + space + rest
    for label in SYSTEM_LABELS:
        quoted = f'"{label}"'
        if quoted in text:
            text = text.replace(quoted, f'"{label_words(label, w.fmt)}"')
    return text.replace(" (off)", " (" + w.text(N_("off")) + ")")


# --------------------------------------------------------------------------- rendering


def render_subject(data: DigestData, language: str) -> str:
    """The email subject / push title."""
    w = words(language)
    return w("subject", calls=data.total_calls, blocked=data.blocked,
             vm=counted(w, "sms_vm", len(data.voicemails)), date=format_day(data.end, language))


def render_text(data: DigestData, language: str) -> str:
    """The plain-text digest."""
    w = words(language)
    out = [w("title"), w("window", start=format_moment(data.start, language),
                         end=format_moment(data.end, language)), ""]
    for section in _sections(data, language):
        out.append(section.title)
        out.append("-" * len(section.title))
        if section.lines:
            out.extend(f"- {line}" for line in section.lines)
        else:
            out.append(section.empty)
        out.append("")
    out.append(w("footer"))
    return "\n".join(out) + "\n"


_HTML_STYLE = (
    "body{margin:0;padding:12px;font-family:-apple-system,Segoe UI,Roboto,sans-serif;"
    "font-size:16px;line-height:1.4;color:#222;background:#fff}"
    "h1{font-size:20px;margin:0 0 4px}h2{font-size:17px;margin:18px 0 6px;"
    "border-bottom:1px solid #ddd}ul{margin:0;padding-left:20px}li{margin:2px 0}"
    ".muted{color:#666;font-size:14px}"
)


def render_html(data: DigestData, language: str) -> str:
    """The HTML digest: one column, readable on a phone; every value escaped."""
    w = words(language)
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{esc(language)}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{esc(w('title'))}</title><style>{_HTML_STYLE}</style></head>",
        '<body><div style="max-width:600px;margin:0 auto">',
        f"<h1>{esc(w('title'))}</h1>",
        '<p class="muted">' + esc(w(
            "window", start=format_moment(data.start, language),
            end=format_moment(data.end, language)))
        + "</p>",
    ]
    for section in _sections(data, language):
        parts.append(f"<h2>{esc(section.title)}</h2>")
        if section.lines:
            parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in section.lines)
                         + "</ul>")
        else:
            parts.append(f'<p class="muted">{esc(section.empty)}</p>')
    parts.append(f'<p class="muted">{esc(w("footer"))}</p></div></body></html>')
    return "\n".join(parts) + "\n"


def render_sms(data: DigestData, language: str, max_parts: int = 2) -> tuple[str, ...]:
    """The essentials in one SMS of 160 GSM-7 characters, or a few when there is more."""
    w = words(language)
    pieces = [counted(w, "sms_calls", data.total_calls)]
    if data.total_calls:
        pieces.append(counted(w, "sms_blocked", data.blocked))
    if data.voicemails:
        pieces.append(counted(w, "sms_vm", len(data.voicemails)))
    if data.bursts:
        pieces.append(counted(w, "sms_bursts", len(data.bursts)))
    look = [inert(item.caller, 20) for item in data.worth_a_look[:3]]
    if look:
        pieces.append(w("sms_look", items=" / ".join(look)))
    return split_sms(w("sms_head", date=format_day(data.end, language)), pieces, max_parts)


def build_digest(data: DigestData, language: str, sms_max_parts: int = 2) -> RenderedDigest:
    """Render a digest for every channel."""
    return RenderedDigest(
        subject=render_subject(data, language),
        text=render_text(data, language),
        html=render_html(data, language),
        sms=render_sms(data, language, sms_max_parts),
    )
