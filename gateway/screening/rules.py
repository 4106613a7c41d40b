"""The owner's rules as plain values: actions, list entries, rule kinds and the policy."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, time
from enum import StrEnum
from functools import cached_property
from typing import Any

from gateway.screening.caller import Caller, CallerKind
from gateway.screening.telemarketing import RANGES
from gateway.screening.words import N_, render


class InvalidField(ValueError):
    """A value that cannot be used: `field` names it (a form input, a setting or rule parameter),
    the message says why in words the owner can act on."""

    def __init__(self, field: str, message: str, /, **params: Any) -> None:
        # `message` may be a template with {name} placeholders filled from `params`: the UI
        # then translates the template (a catalog msgid) and fills it in the reader's way.
        super().__init__(render(message, params) if params else message)
        self.field = field
        self.template = message
        self.params = params


class ActionKind(StrEnum):
    """What the gateway does with a call."""

    PASS = "pass"  # let the owner's phone ring
    REJECT = "reject"  # a SIP final response with `code`
    ANNOUNCE = "announce"  # answer, play `prompt`, hang up
    VOICEMAIL = "voicemail"  # answer, play `prompt` (greeting), record
    CHALLENGE = "challenge"  # answer, "press N", then pass / voicemail / hang up


# Prompts the gateway can play; owners may replace each WAV with their own recording.
PROMPTS = ("greeting", "challenge", "spoof_shield", "not_in_service", "sit", "closed",
           "published")
DEFAULT_PROMPT = {
    ActionKind.ANNOUNCE: "not_in_service",
    ActionKind.VOICEMAIL: "greeting",
    ActionKind.CHALLENGE: "challenge",
}
REJECT_CODES = {  # the SIP reason phrases, marked for the UI's catalog
    404: N_("Not Found"),
    410: N_("Gone"),
    433: N_("Anonymity Disallowed"),
    480: N_("Temporarily Unavailable"),
    486: N_("Busy Here"),
    600: N_("Busy Everywhere"),
    603: N_("Decline"),
    604: N_("Does Not Exist Anywhere"),
    607: N_("Unwanted"),
}


@dataclass(frozen=True)
class Action:
    """An action with its parameter: ``reject:603``, ``announce:sit``, ``voicemail``…"""

    kind: ActionKind
    code: int | None = None  # SIP code, for reject
    prompt: str | None = None  # prompt name, for announce / voicemail / challenge

    @classmethod
    def parse(cls, text: str) -> Action:
        """Parse ``kind[:param]``; raise InvalidField("action") naming the allowed forms."""
        head, _, param = text.strip().lower().partition(":")
        try:
            kind = ActionKind(head)
        except ValueError:
            raise InvalidField(
                "action", f"unknown action {text!r}: expected pass, reject:CODE, "
                "announce[:PROMPT], voicemail[:PROMPT] or challenge"
            ) from None
        if kind is ActionKind.REJECT:
            if not param:
                return cls(kind, code=603)
            if not param.isdigit() or int(param) not in REJECT_CODES:
                codes = ", ".join(str(c) for c in REJECT_CODES)
                raise InvalidField("action", f"reject code {param!r} is not one of {codes}")
            return cls(kind, code=int(param))
        if kind is ActionKind.PASS:
            if param:
                raise InvalidField("action", f"pass takes no parameter, found {param!r}")
            return cls(kind)
        if param and param not in PROMPTS:
            raise InvalidField("action",
                             f"unknown prompt {param!r}: expected one of {', '.join(PROMPTS)}")
        return cls(kind, prompt=param or DEFAULT_PROMPT[kind])

    def __str__(self) -> str:
        if self.kind is ActionKind.REJECT:
            return f"reject:{self.code}"
        if self.prompt and self.prompt != DEFAULT_PROMPT.get(self.kind):
            return f"{self.kind.value}:{self.prompt}"
        return self.kind.value

    @property
    def is_pass(self) -> bool:
        """Whether the call rings through untouched."""
        return self.kind is ActionKind.PASS


PASS = Action(ActionKind.PASS)


class ListName(StrEnum):
    """The two lists."""

    ALLOW = "allow"
    BLOCK = "block"


class MatchKind(StrEnum):
    """How an entry's pattern matches a number."""

    EXACT = "exact"  # pattern is an E.164 number
    PREFIX = "prefix"  # pattern is an E.164 prefix, e.g. +33162
    GLOB = "glob"  # shell-style on E.164, * any digits, ? one digit, [0-5] a set
    REGEX = "regex"  # Python regex, full match on E.164 or national digits


@dataclass(frozen=True)
class ListEntry:
    """One allow or block entry."""

    id: int
    list: ListName
    kind: MatchKind
    pattern: str
    label: str = ""
    action: Action | None = None  # block entries: what to do; None means the policy's default
    expires_at: datetime | None = None
    once: bool = False  # "permit next call": consumed by the first call it lets through
    source: str = "manual"  # manual, contact, auto (passed challenge), known, subscription:N

    @cached_property
    def _compiled(self) -> re.Pattern[str] | None:
        if self.kind is MatchKind.GLOB:
            return re.compile(fnmatch.translate(self.pattern))
        if self.kind is MatchKind.REGEX:
            return re.compile(self.pattern)
        return None

    def literal_prefix(self) -> str:
        """The fixed start of the pattern, used to index globs by prefix."""
        if self.kind in (MatchKind.EXACT, MatchKind.PREFIX):
            return self.pattern
        if self.kind is MatchKind.GLOB:
            cut = next((i for i, c in enumerate(self.pattern) if c in "*?["), len(self.pattern))
            return self.pattern[:cut]
        return ""

    def active(self, now: datetime) -> bool:
        """Whether the entry has not expired at `now`."""
        return self.expires_at is None or now < self.expires_at

    def matches(self, caller: Caller) -> bool:
        """Whether this entry applies to `caller` (withheld and invalid callers match nothing)."""
        number = caller.number
        if caller.kind is not CallerKind.NUMBER or number is None:
            return False
        if self.kind is MatchKind.EXACT:
            return number == self.pattern
        if self.kind is MatchKind.PREFIX:
            return number.startswith(self.pattern)
        compiled = self._compiled
        assert compiled is not None
        if compiled.fullmatch(number):
            return True
        return (
            self.kind is MatchKind.REGEX
            and caller.national is not None
            and compiled.fullmatch(caller.national) is not None
        )

    def describe(self) -> str:
        """The entry in words for a reason."""
        what = {
            MatchKind.EXACT: f"{self.pattern}",
            MatchKind.PREFIX: f"numbers starting {self.pattern}",
            MatchKind.GLOB: f"pattern {self.pattern}",
            MatchKind.REGEX: f"regex {self.pattern}",
        }[self.kind]
        label = f" ({self.label})" if self.label else ""
        return f"{what}{label}"


ATTESTATIONS = ("A", "B", "C")
"""STIR/SHAKEN attestation levels (RFC 8588): full, partial, gateway."""
STIR_MAX_AGE = 60
"""Seconds a PASSporT's `iat` may be old (RFC 8224 section 6.2.1 recommends 60)."""


class RuleKind(StrEnum):
    """Step-4 rules (docs/architecture.md, "How a decision is made")."""

    WITHHELD = "withheld"  # number withheld / anonymous
    INVALID = "invalid"  # not a number, or outside the numbering plan
    NUMBER_TYPE = "number_type"  # params: types = ["PREMIUM_RATE", ...]
    COUNTRY = "country"  # params: regions = ["GB"], mode = "block" | "allow_only"
    TELEMARKETING = "telemarketing"  # params: country = "FR", outside_hours_only = false
    VERSTAT_FAILED = "verstat_failed"  # STIR/SHAKEN verification failed
    QUIET_HOURS = "quiet_hours"  # params: start = "22:00", end = "07:00", days = [0..6]
    # STIR/SHAKEN Identity header: attest = ["C"], mismatch = true, stale = true, max_age = 60
    STIR_ATTESTATION = "stir_attestation"


@dataclass(frozen=True)
class Rule:
    """One step-4 rule; `params` is validated by `validate_rule_params`."""

    id: int
    kind: RuleKind
    action: Action
    params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    enabled: bool = True
    priority: int = 100
    label: str = ""


class DefaultMode(StrEnum):
    """What happens to unknown callers that no rule caught (step 6)."""

    PASS = "pass"
    GREYLIST = "greylist"  # first call busy; a retry within the window rings
    CHALLENGE = "challenge"
    VOICEMAIL = "voicemail"


@dataclass(frozen=True)
class RepeatLimit:
    """The same unknown number may call `max_calls` times in `window_minutes`."""

    enabled: bool = True
    max_calls: int = 3
    window_minutes: int = 10
    action: Action = Action(ActionKind.VOICEMAIL, prompt="greeting")


@dataclass(frozen=True)
class BurstSettings:
    """`distinct_callers` unknown numbers in `window_minutes` turn on burst mode."""

    enabled: bool = True
    distinct_callers: int = 5
    window_minutes: int = 10
    duration_minutes: int = 60  # burst mode lasts this long after the last triggering call
    action: Action = Action(ActionKind.VOICEMAIL, prompt="spoof_shield")


# What burst mode does, as profiles the owner picks in one click (the dashboard): each is a
# burst action. "spoofed" is the spoof shield (a message, then voicemail); "published" asks
# callers to press a key, then allows them (their next call rings) and takes a message or
# transfers them where the line can (the challenge action with its own prompt).
BURST_PROFILES: dict[str, Action] = {
    "spoofed": Action(ActionKind.VOICEMAIL, prompt="spoof_shield"),
    "published": Action(ActionKind.CHALLENGE, prompt="published"),
}


def burst_profile(action: Action) -> str | None:
    """The burst profile whose action is `action`, or None for an action set by hand."""
    return next((name for name, known in BURST_PROFILES.items() if known == action), None)


@dataclass(frozen=True)
class Policy:
    """Everything `decide()` needs besides the caller, the list entries and the history."""

    timezone: str = "Europe/Paris"
    home_region: str = "FR"
    paused_until: datetime | None = None
    block_action: Action = Action(ActionKind.REJECT, code=603)
    rules: tuple[Rule, ...] = ()
    repeat: RepeatLimit = RepeatLimit()
    burst: BurstSettings = BurstSettings()
    default: DefaultMode = DefaultMode.PASS
    greylist_min_minutes: float = 0.5  # a retry sooner than this is a dialer's redial
    greylist_window_minutes: int = 30
    greylist_action: Action = Action(ActionKind.REJECT, code=486)

    def history_window_minutes(self) -> int:
        """How far back `decide()` looks into the call log."""
        return max(
            self.repeat.window_minutes,
            self.burst.window_minutes + self.burst.duration_minutes,
            self.greylist_window_minutes,
        )


def _hh_mm(value: Any, name: str) -> time:
    if not isinstance(value, str) or not re.fullmatch(r"\d{1,2}:\d{2}", value):
        raise InvalidField(name, f"{name} = {value!r}: expected HH:MM, e.g. '22:00'")
    hours, minutes = (int(p) for p in value.split(":"))
    if hours > 23 or minutes > 59:
        raise InvalidField(name, f"{name} = {value!r}: not a time of day")
    return time(hours, minutes)


def validate_rule_params(
    kind: RuleKind, params: dict[str, Any], *, number_types: Collection[str],
    is_region: Callable[[str], bool],
) -> dict[str, Any]:
    """Check and normalise a rule's parameters; raise InvalidField naming the bad parameter.

    The numbering facts (which number types exist, which region codes are real) come from the
    phone-number library, so the caller passes them in and the core stays free of it.
    """
    params = dict(params)
    if kind is RuleKind.NUMBER_TYPE:
        types = params.get("types")
        if not isinstance(types, list) or not types:
            raise InvalidField("types", "types: list at least one number type, e.g. PREMIUM_RATE")
        bad = [t for t in types if t not in number_types]
        if bad:
            raise InvalidField("types",
                             f"types: {bad[0]!r} is not one of {', '.join(number_types)}")
    elif kind is RuleKind.COUNTRY:
        regions = params.get("regions")
        if not isinstance(regions, list) or not regions:
            raise InvalidField("regions", "regions: list at least one country code, e.g. ['GB']")
        bad = [r for r in regions if not isinstance(r, str) or not is_region(r.upper())]
        if bad:
            raise InvalidField("regions", f"regions: {bad[0]!r} is not an ISO country code")
        params["regions"] = [r.upper() for r in regions]
        mode = params.setdefault("mode", "block")
        if mode not in ("block", "allow_only"):
            raise InvalidField("mode", f"mode = {mode!r}: expected 'block' or 'allow_only'")
    elif kind is RuleKind.TELEMARKETING:
        country = params.setdefault("country", "FR")
        if country not in RANGES:
            raise InvalidField("country",
                             f"country = {country!r}: ranges are known for {', '.join(RANGES)}")
        outside = params.setdefault("outside_hours_only", False)
        if not isinstance(outside, bool):
            raise InvalidField("outside_hours_only",
                             f"outside_hours_only = {outside!r}: expected true or false")
    elif kind is RuleKind.STIR_ATTESTATION:
        levels = params.setdefault("attest", ["C"])
        if not isinstance(levels, list) or not all(isinstance(v, str) for v in levels):
            raise InvalidField("attest", f"attest = {levels!r}: expected a list of A, B, C")
        levels = [v.upper() for v in levels]
        bad = [v for v in levels if v not in ATTESTATIONS]
        if bad:
            raise InvalidField("attest", f"attest: {bad[0]!r} is not an attestation (A, B or C)")
        params["attest"] = sorted(set(levels))
        for flag in ("mismatch", "stale"):
            value = params.setdefault(flag, True)
            if not isinstance(value, bool):
                raise InvalidField(flag, f"{flag} = {value!r}: expected true or false")
        max_age = params.setdefault("max_age", STIR_MAX_AGE)
        if isinstance(max_age, bool) or not isinstance(max_age, int) or not 10 <= max_age <= 3600:
            raise InvalidField("max_age", f"max_age = {max_age!r}: expected 10 to 3600 seconds")
    elif kind is RuleKind.QUIET_HOURS:
        _hh_mm(params.setdefault("start", "22:00"), "start")
        _hh_mm(params.setdefault("end", "07:00"), "end")
        days = params.setdefault("days", [0, 1, 2, 3, 4, 5, 6])
        if not isinstance(days, list) or not all(isinstance(d, int) and 0 <= d <= 6 for d in days):
            raise InvalidField("days", f"days = {days!r}: expected weekday numbers 0 (Monday) "
                             "to 6 (Sunday)")
    return params


def parse_hh_mm(value: str) -> time:
    """Parse a validated ``HH:MM``."""
    return _hh_mm(value, "time")
