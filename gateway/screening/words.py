"""What Ringfence says about a call, as codes with parameters, rendered in the reader's language.

A reason is stored as a code and its parameters (``("country_blocked", {"country": "DE"})``) so
that the call log, the digest and the SMS can show it in French or English whenever they are
read: switching the UI's language re-renders old rows too. The English templates below are
the gettext message ids; `N_` only marks them for extraction (``make translations``), the
catalogs under gateway/translations and web/translations hold the French.

Pure: no I/O and no gettext here. Whoever renders passes its own `gettext`/`ngettext` and a
`Formats` that knows the reader's locale (dates, numbers, country names).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


def N_(message: str) -> str:
    """Mark `message` for extraction into the catalogs; return it unchanged."""
    return message


def Nn_(singular: str, plural: str) -> tuple[str, str]:
    """Mark a singular and plural pair for extraction; return them unchanged."""
    return singular, plural


Gettext = Callable[[str], str]
Ngettext = Callable[[str, str, int], str]


def _same(message: str) -> str:
    return message


def _english_plural(singular: str, plural: str, n: int) -> str:
    return singular if n == 1 else plural


def _iso_time(value: Any) -> str:
    try:
        return f"{datetime.fromisoformat(str(value)):%H:%M}"
    except ValueError:
        return str(value)


def _iso_moment(value: Any) -> str:
    try:
        return f"{datetime.fromisoformat(str(value)):%d/%m %H:%M}"
    except ValueError:
        return str(value)


@dataclass(frozen=True)
class Formats:
    """How one reader sees values: the defaults are the English text stored with each call."""

    gettext: Gettext = _same
    ngettext: Ngettext = _english_plural
    moment: Callable[[Any], str] = _iso_moment  # an ISO date-time, shown as date and time
    clock: Callable[[Any], str] = _iso_time  # an ISO date-time, shown as a time of day
    number: Callable[[int], str] = "{:,}".format  # a count, grouped in the reader's locale
    country: Callable[[str], str] = _same  # a region code (a country name in the UI)


ENGLISH = Formats()

# --------------------------------------------------------------------------- reasons

# code -> English template (the msgid). A tuple is (singular, plural, the count's parameter).
REASONS: dict[str, str | tuple[str, str, str]] = {
    "internal": N_("internal call from {extension}, the router's own number: never screened"),
    "paused": N_("screening is paused until {until_at}"),
    "allow": N_("on the allow list: {entry}"),
    "allow_once": N_("permitted once: {entry}"),
    "block": N_("on the block list: {entry}"),
    "withheld": N_("the caller withheld their number"),
    "not_a_number": N_("'{raw}' is not a phone number"),
    "outside_plan": N_("{number} is outside the numbering plan (often a spoofed number)"),
    "number_type": N_("{number} is a {number_type} number"),
    "country_not_allowed": N_("calls from {country} are not in the allowed countries"),
    "country_unknown": N_("calls from an unknown country are not in the allowed countries"),
    "country_blocked": N_("calls from {country} are blocked"),
    "telemarketing": N_("{range} is a range ARCEP reserves for telemarketing and automated "
                        "calls (decision 2022-1583)"),
    "telemarketing_hours": N_("{range} is a range ARCEP reserves for telemarketing and "
                              "automated calls (decision 2022-1583); it is also outside legal "
                              "calling hours (Mon-Fri 10-13h, 14-20h, no holidays)"),
    "stir_attestation": N_("STIR/SHAKEN attestation {attest}: the caller's network does not "
                           "vouch for the number ({signature})"),
    "stir_mismatch": N_("the STIR/SHAKEN token was signed for {orig}, not for this number "
                        "({signature})"),
    "stir_stale": N_("the STIR/SHAKEN token is {age} s old, more than {max_age} s: replayed? "
                     "({signature})"),
    "stir_forged": N_("the STIR/SHAKEN signature for {orig} does not verify with its "
                      "certificate: forged or altered"),
    "verstat_failed": N_("the network could not verify the caller's number (STIR/SHAKEN "
                         "failed)"),
    "quiet_hours": N_("quiet hours ({start}-{end})"),
    "repeat": (*Nn_("{number} already called {count} time in {window} min (limit {limit})",
                    "{number} already called {count} times in {window} min (limit {limit})"),
               "count"),
    "burst": N_("burst mode since {since_time}: {callers} unknown callers within {window} min; "
                "unknown callers hear the spoof-shield message"),
    # The same, per burst profile (gateway/screening/rules.BURST_PROFILES); "burst" is the
    # "my number is being spoofed" profile.
    "burst_published": N_("burst mode since {since_time}: {callers} unknown callers within "
                          "{window} min; profile \"my number was published\": unknown callers "
                          "may press a key to get through"),
    "burst_custom": N_("burst mode since {since_time}: {callers} unknown callers within "
                       "{window} min; unknown callers get {action}"),
    "greylist_back": N_("greylist: {caller} called back after a first try"),
    "greylist_first": N_("greylist: first call from {caller}; a call back within {window} min "
                         "rings"),
    "default_challenge": N_("unknown caller: asked to press a digit"),
    "default_voicemail": N_("unknown caller: sent to voicemail"),
    "default_pass": N_("no rule matched"),
    "screening_failed": N_("screening failed ({error}); call let through"),
}

# --------------------------------------------------------------------------- outcomes

# How a call ended, as the gateway logs it (gateway/call/carry_out.py), in words. An outcome
# is stored as English text; these are the phrases the UI shows for it, with {duration} the
# whole call's length; a rejected call's outcome adds nothing to its action ("").
OUTCOMES: dict[str, str] = {
    "answered elsewhere": N_("answered on another phone"),
    "cancelled by caller": N_("the caller hung up before the answer"),
    "passed: cancelled by caller": N_("rang {duration}, nobody answered"),
    "passed: nobody answered": N_("rang {duration}, nobody answered"),
    "passed: busy": N_("let through: we answered busy, your phone rang"),
    "passed: unavailable": N_("let through: we answered unavailable, your phone rang"),
    "passed: redirected": N_("redirected"),
    "passed: ended by the gateway": N_("rang until the gateway stopped"),
    "announced": N_("heard the message"),
    "caller hung up during the announcement": N_("hung up during the message"),
    "caller hung up during the greeting": N_("hung up during the greeting"),
    "voicemail full": N_("voicemail full: no message recorded"),
    "voicemail: nothing recorded": N_("left no message"),
    "challenge failed": N_("did not press the key"),
    "challenge passed: transferred": N_("pressed the key and was transferred"),
    "not answered: INVITE without SDP (488)": N_("could not be answered (no audio offered)"),
    "not answered: unusable SDP offer (488)": N_("could not be answered (no common audio "
                                                 "codec)"),
    "not answered: no ACK for our 200 OK": N_("answered, but the caller's phone never "
                                             "confirmed it (no ACK): hung up"),
    "caller hung up before the ACK": N_("hung up as we answered"),
    "failed open": N_("screening failed: the call rang"),
    "hung up": N_("hung up"),
    "interrupted: gateway restarted": N_("cut off when the gateway restarted"),
}
OUTCOME_MESSAGE = N_("left a {seconds} s message")
OUTCOME_AFTER_CHALLENGE = N_("pressed the key, then {then}")
OUTCOME_FAILED_OPEN = N_("screening failed, then {then}")
OUTCOME_ANALOGUE = N_("answered to stop the analogue line ringing: {then}")
OUTCOME_ONGOING = N_("in progress")
# What a proxy's CANCEL said happened on the owner's phones (gateway/call/carry_out.cancel_words),
# after a silent ring ("passed: ...") or before any answer of ours.
_ELSEWHERE = re.compile(r"(passed: )?(declined elsewhere|not answered elsewhere|"
                        r"cancelled by the network) \(((?:SIP|Q\.850) \d+)\)")
ELSEWHERE_WORDS = {
    ("passed", "declined elsewhere"): N_("rang {duration}, declined on another phone ({cause})"),
    ("passed", "not answered elsewhere"): N_("rang {duration}, nobody answered on any phone "
                                             "({cause})"),
    ("passed", "cancelled by the network"): N_("rang {duration}, ended by the network "
                                               "({cause})"),
    ("", "declined elsewhere"): N_("declined on another phone ({cause})"),
    ("", "not answered elsewhere"): N_("nobody answered on any phone ({cause})"),
    ("", "cancelled by the network"): N_("ended by the network ({cause})"),
}
_VOICEMAIL_SECONDS = re.compile(r"voicemail (\d+) s")
_REJECTED = re.compile(r"rejected \d+")


def duration_words(seconds: float) -> str:
    """A call's length the same way in French and English: "12 s", "2 min 05 s"."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    return f"{whole // 60} min {whole % 60:02d} s"


def outcome_words(outcome: str | None, duration_s: float | None, fmt: Formats = ENGLISH,
                  *, ongoing: bool = False) -> str:
    """What happened to a call, in the reader's language; "" when the action says it all.

    `ongoing` is for a row without an outcome yet: the call is still going on (the caller
    decides, since only it knows how old the row is); unknown outcomes are shown as stored.
    """
    if not outcome:
        return fmt.gettext(OUTCOME_ONGOING) if ongoing else ""
    head, _sep, rest = outcome.partition(": ")
    if head == "challenge passed" and rest and rest != "transferred":
        then = outcome_words(rest, duration_s, fmt)
        return fmt.gettext(OUTCOME_AFTER_CHALLENGE).format(then=then) if then else ""
    if head == "failed open" and rest:
        then = outcome_words(rest, duration_s, fmt) or rest
        return fmt.gettext(OUTCOME_FAILED_OPEN).format(then=then)
    if head == "analogue line" and rest:  # a block answered with SIT and a message
        then = outcome_words(rest, duration_s, fmt) or rest
        return fmt.gettext(OUTCOME_ANALOGUE).format(then=then)
    elsewhere = _ELSEWHERE.fullmatch(outcome)
    if elsewhere:
        words = ELSEWHERE_WORDS[("passed" if elsewhere.group(1) else "", elsewhere.group(2))]
        return fmt.gettext(words).format(duration=duration_words(duration_s or 0.0),
                                         cause=elsewhere.group(3))
    seconds = _VOICEMAIL_SECONDS.fullmatch(outcome)
    if seconds:
        return fmt.gettext(OUTCOME_MESSAGE).format(seconds=seconds.group(1))
    if _REJECTED.fullmatch(outcome):
        return ""
    if outcome not in OUTCOMES:
        return outcome
    return fmt.gettext(OUTCOMES[outcome]).format(duration=duration_words(duration_s or 0.0))


# How an entry that decided a call is described inside a reason ({entry}).
ENTRY_FORMS = {
    "exact": "{pattern}",
    "prefix": N_("numbers starting {pattern}"),
    "glob": N_("pattern {pattern}"),
    "regex": N_("regex {pattern}"),
}

# Labels and words Ringfence writes itself: stored in English, shown in the reader's language.
# An owner's own label is shown as typed, even when it happens to be one of these.
SYSTEM_LABELS = frozenset({
    # default rules (gateway/store/rules.py)
    N_("withheld numbers leave a message"), N_("invalid numbers leave a message"),
    N_("failed STIR/SHAKEN"), N_("doubtful STIR/SHAKEN"), N_("premium rate"),
    N_("foreign numbers"), N_("night"), N_("telemarketing ranges"),
    # entries the gateway and the UI add by themselves
    N_("passed challenge"), N_("answered by owner"), N_("permit next call"),
    N_("from the call log"),
})

RULE_KINDS = {
    "withheld": N_("withheld number"), "invalid": N_("invalid number"),
    "number_type": N_("number type"), "country": N_("countries"),
    "telemarketing": N_("telemarketing"), "verstat_failed": N_("failed STIR/SHAKEN"),
    "quiet_hours": N_("quiet hours"), "stir_attestation": N_("STIR/SHAKEN attestation"),
}

# What became of a PASSporT's signature (screening.caller.Signature), inside a reason.
SIGNATURES = {
    "verified": N_("signature verified"),
    "invalid": N_("signature does not verify"),
    "pending": N_("signature not verified yet: its certificate is being fetched"),
    "no_certificate": N_("signature not verified: no certificate for it"),
    "unusable": N_("signature not verified: its certificate could not be fetched or is out "
                   "of date"),
}

CALLER_KINDS = {"withheld": N_("withheld number"), "invalid": N_("invalid number"),
                "internal": N_("internal call")}

NUMBER_TYPES = {
    "FIXED_LINE": N_("fixed line"), "MOBILE": N_("mobile"),
    "FIXED_LINE_OR_MOBILE": N_("fixed line or mobile"), "TOLL_FREE": N_("toll free"),
    "PREMIUM_RATE": N_("premium rate"), "SHARED_COST": N_("shared cost"),
    "VOIP": N_("internet telephony (VoIP)"), "PERSONAL_NUMBER": N_("personal number"),
    "PAGER": N_("pager"), "UAN": N_("universal access number"), "VOICEMAIL": N_("voicemail"),
    "UNKNOWN": N_("unknown type"),
}

# Where an entry came from (ListEntry.source); "subscription:N" shows as a subscription.
SOURCES = {
    "manual": N_("added by hand"), "contact": N_("from your contacts"),
    "auto": N_("passed the challenge"), "known": N_("answered by you"),
    "api": N_("added through the API"), "subscription": N_("from a subscribed list"),
}


def label_words(label: str, fmt: Formats = ENGLISH) -> str:
    """A label in the reader's language when Ringfence wrote it, else as the owner typed it."""
    return fmt.gettext(label) if label in SYSTEM_LABELS else label


def source_words(source: str, fmt: Formats = ENGLISH) -> str:
    """Where an entry came from, in words."""
    key = source.partition(":")[0]
    return fmt.gettext(SOURCES[key]) if key in SOURCES else source


def number_type_words(number_type: str, fmt: Formats = ENGLISH) -> str:
    """A phonenumbers type name (PREMIUM_RATE) in words."""
    known = NUMBER_TYPES.get(number_type)
    return fmt.gettext(known) if known else number_type.replace("_", " ").lower()


def entry_words(kind: str, pattern: str, label: str = "", fmt: Formats = ENGLISH) -> str:
    """An allow or block entry in words, with its label."""
    form = ENTRY_FORMS.get(kind, ENTRY_FORMS["exact"])
    text = fmt.gettext(form).format(pattern=pattern)
    return f"{text} ({label_words(label, fmt)})" if label else text


def _value(key: str, value: Any, fmt: Formats) -> Any:
    """One parameter as the reader sees it, chosen by the parameter's name."""
    if key == "entry" and isinstance(value, Mapping):
        return entry_words(str(value.get("kind", "exact")), str(value.get("pattern", "")),
                           str(value.get("label", "")), fmt)
    if key.endswith("_at"):
        return fmt.moment(value)
    if key.endswith("_time"):
        return fmt.clock(value)
    if key == "country":
        return fmt.country(str(value))
    if key == "countries" and isinstance(value, list | tuple):
        return ", ".join(fmt.country(str(v)) for v in value)
    if key == "number_type":
        return number_type_words(str(value), fmt)
    if key == "signature" and value in SIGNATURES:
        return fmt.gettext(SIGNATURES[str(value)])
    if key == "caller" and value in CALLER_KINDS:
        return fmt.gettext(CALLER_KINDS[str(value)])
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1000:
        return fmt.number(value)
    return value


def render(template: str, params: Mapping[str, Any], fmt: Formats = ENGLISH) -> str:
    """Translate `template` and fill in `params`, each shown the reader's way."""
    shown = {k: _value(k, v, fmt) for k, v in params.items()}
    try:
        return fmt.gettext(template).format(**shown)
    except (KeyError, IndexError, ValueError):  # a catalog entry that lost a placeholder
        return template.format(**shown)


def render_reason(code: str | None, params: Mapping[str, Any] | None, fallback: str,
                  fmt: Formats = ENGLISH) -> str:
    """A stored reason in the reader's language; `fallback` (the stored text) if unknown.

    Rows written before reasons had codes, or by a newer version, keep their English text.
    """
    template = REASONS.get(code or "")
    if template is None:
        return fallback
    params = dict(params or {})
    label = params.pop("rule_label", "")
    try:
        if isinstance(template, tuple):
            singular, plural, count = template
            n = int(params.get(count, 0))
            text = fmt.ngettext(singular, plural, n).format(
                **{k: _value(k, v, fmt) for k, v in params.items()})
        else:
            text = render(template, params, fmt)
    except (KeyError, IndexError, ValueError, TypeError):
        return fallback
    return f"{text} [{label_words(str(label), fmt)}]" if label else text
