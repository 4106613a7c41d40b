"""`decide()`: one caller in, one explained decision out. Pure: no I/O, time passed in.

First match wins: internal calls, pause, allow list, block list, rules by priority, rate
limits (repeat and burst), then the default for unknown callers (docs/architecture.md, "How a
decision is made").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from gateway.screening.caller import Caller, CallerKind, Passport, Signature, Verstat
from gateway.screening.ratelimit import BurstState, History, burst_state, repeat_count
from gateway.screening.rules import (
    PASS,
    STIR_MAX_AGE,
    Action,
    DefaultMode,
    ListEntry,
    ListName,
    MatchKind,
    Policy,
    Rule,
    RuleKind,
    burst_profile,
    parse_hh_mm,
)
from gateway.screening.telemarketing import (
    national_range,
    telemarketing_prefix,
    within_legal_hours,
)
from gateway.screening.words import render_reason


@dataclass(frozen=True)
class Rules:
    """The policy plus the list entries that may match this caller (a superset is fine)."""

    policy: Policy = field(default_factory=Policy)
    entries: Sequence[ListEntry] = ()


class Step(StrEnum):
    """Which step of the screening order settled a call."""

    INTERNAL = "internal"  # a call from the home router's own number: never screened
    PAUSE = "pause"
    ALLOW = "allow"
    BLOCK = "block"
    RULE = "rule"
    REPEAT = "repeat"
    BURST = "burst"
    GREYLIST = "greylist"
    DEFAULT = "default"
    ERROR = "error"  # screening itself failed and the call was let through


@dataclass(frozen=True)
class Decision:
    """What to do with a call and why: `reason` in English, and as a code with parameters
    (`reason_code`, `reason_params`) that the UI, the digest and the SMS render in the reader's
    language (gateway/screening/words.py)."""

    action: Action
    reason: str
    step: Step
    ref: int | None = None  # the allow/block entry or the rule that decided (those steps only)
    unknown: bool = True  # the caller is on no allow list (counts towards bursts)
    consume_entry_id: int | None = None  # a "permit next call" entry this call used up
    burst: BurstState = BurstState(active=False)
    elapsed_ms: float | None = None  # how long loading and deciding took (set by the screener)
    reason_code: str | None = None  # a key of words.REASONS; None for a free-text reason
    reason_params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "step", Step(self.step))

    @property
    def rule_id(self) -> str | None:
        """What decided, as the call log stores it: "allow:12", "block:7", "rule:3", "burst"."""
        if self.step is Step.PAUSE:
            return None
        if self.ref is not None:
            return f"{self.step.value}:{self.ref}"
        return self.step.value

    @property
    def counts_towards_burst(self) -> bool:
        """Whether this call is an unknown caller that no list or rule handled.

        A burst is strangers calling back a spoofed number; callers already blocked by a list
        or a rule (a robocall campaign from reserved ranges) are handled and must not switch
        burst mode on for everybody else.
        """
        return self.unknown and self.step not in (Step.BLOCK, Step.RULE)

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready view, as `ringfence screen` prints it."""
        return {
            "action": str(self.action),
            "reason": self.reason,
            "reason_code": self.reason_code,
            "reason_params": self.reason_params,
            "step": self.step.value,
            "rule": self.rule_id,
            "unknown": self.unknown,
            "burst": self.burst.active,
        }


def because(code: str, **params: Any) -> dict[str, Any]:
    """The reason fields of a Decision: the English text, the code and its parameters."""
    return {"reason": render_reason(code, params, code), "reason_code": code,
            "reason_params": params}


def _entry(entry: ListEntry) -> dict[str, str]:
    return {"kind": entry.kind.value, "pattern": entry.pattern, "label": entry.label}


_SPECIFICITY = {MatchKind.EXACT: 0, MatchKind.PREFIX: 1, MatchKind.GLOB: 2, MatchKind.REGEX: 3}


def _most_specific(entries: list[ListEntry]) -> ListEntry:
    # Exact beats prefix, a longer prefix beats a shorter one; permanent entries are preferred
    # to "permit next call" ones so a one-off permission is not spent needlessly.
    return min(entries, key=lambda e: (e.once, _SPECIFICITY[e.kind], -len(e.pattern), e.id))


def _matching(rules: Rules, caller: Caller, list_name: ListName, now: datetime) -> list[ListEntry]:
    return [
        e for e in rules.entries
        if e.list is list_name and e.active(now) and e.matches(caller)
    ]


Reason = tuple[str, dict[str, Any]]  # a code of words.REASONS and its parameters

# The reason of a burst decision, per burst profile ("burst" is the spoof shield's, as before).
BURST_REASONS = {"spoofed": "burst", "published": "burst_published"}


def _rule_reason(rule: Rule, caller: Caller, local: datetime) -> Reason | None:
    """Why `rule` applies to `caller` (a reason code and its parameters), or None."""
    params = rule.params
    if rule.kind is RuleKind.WITHHELD:
        return ("withheld", {}) if caller.kind is CallerKind.WITHHELD else None
    if rule.kind is RuleKind.INVALID:
        if caller.kind is CallerKind.INVALID:
            return "not_a_number", {"raw": caller.raw}
        if caller.kind is CallerKind.NUMBER and not caller.valid:
            return "outside_plan", {"number": caller.number}
        return None
    if rule.kind is RuleKind.STIR_ATTESTATION:
        return _stir_reason(params, caller.passport, local.timestamp())
    # The remaining rules look at a number; a withheld caller cannot match them, except
    # quiet hours, which are about the clock.
    if caller.number is None and rule.kind is not RuleKind.QUIET_HOURS:
        return None
    if rule.kind is RuleKind.NUMBER_TYPE:
        if caller.number_type in params.get("types", ()):
            return "number_type", {"number": caller.number, "number_type": caller.number_type}
        return None
    if rule.kind is RuleKind.COUNTRY:
        regions = params.get("regions", ())
        if params.get("mode", "block") == "allow_only":
            if caller.region not in regions:
                if not caller.region:
                    return "country_unknown", {}
                return "country_not_allowed", {"country": caller.region}
            return None
        if caller.region in regions:
            return "country_blocked", {"country": caller.region}
        return None
    if rule.kind is RuleKind.TELEMARKETING:
        country = params.get("country", "FR")
        prefix = telemarketing_prefix(caller.number or "", country)
        if prefix is None:
            return None
        legal = within_legal_hours(local, country)
        if legal and params.get("outside_hours_only", False):
            return None
        return ("telemarketing" if legal else "telemarketing_hours",
                {"range": national_range(prefix)})
    if rule.kind is RuleKind.VERSTAT_FAILED:
        if caller.verstat is Verstat.FAILED:
            return "verstat_failed", {}
        return None
    if rule.kind is RuleKind.QUIET_HOURS:
        start = parse_hh_mm(params.get("start", "22:00"))
        end = parse_hh_mm(params.get("end", "07:00"))
        days = params.get("days", [0, 1, 2, 3, 4, 5, 6])
        clock = local.time()
        # A window over midnight (22:00-07:00) belongs to the day it started on.
        if start <= end:
            inside, day = start <= clock < end, local.weekday()
        elif clock >= start:
            inside, day = True, local.weekday()
        else:
            inside, day = clock < end, (local.weekday() - 1) % 7
        if inside and day in days:
            return "quiet_hours", {"start": f"{start:%H:%M}", "end": f"{end:%H:%M}"}
        return None
    return None  # pragma: no cover - every kind is handled above


def _stir_reason(params: dict[str, Any], passport: Passport | None,
                 now_epoch: float) -> Reason | None:
    """Why a STIR/SHAKEN rule applies to a PASSporT: forged, signed for another number, old
    (replayed), or an attestation the rule lists; every reason says whether it was verified."""
    if passport is None or passport.problem:
        return None  # no token, or one we could not read: like a network that sends none
    signature = passport.signature.value
    if passport.signature is Signature.INVALID:
        return "stir_forged", {"orig": passport.orig}
    if params.get("mismatch", True) and passport.orig_matches is False:
        return "stir_mismatch", {"orig": passport.orig, "signature": signature}
    age = passport.age(now_epoch)
    max_age = int(params.get("max_age", STIR_MAX_AGE))
    if params.get("stale", True) and age is not None and abs(age) > max_age:
        return "stir_stale", {"age": round(abs(age)), "max_age": max_age,
                              "signature": signature}
    if passport.attest in params.get("attest", ["C"]):
        return "stir_attestation", {"attest": passport.attest, "signature": signature}
    return None


def _caller_param(caller: Caller) -> str:
    return caller.number or caller.kind.value


def decide(caller: Caller, rules: Rules, history: History, now: datetime) -> Decision:
    """Decide what to do with `caller` at `now` (timezone-aware), given earlier calls."""
    return decide_without_history(caller, rules, now) or decide_rate_limits(
        caller, rules, history, now)


def decide_without_history(caller: Caller, rules: Rules, now: datetime) -> Decision | None:
    """Steps 1-4 (pause, lists, rules), which need no history; None if the call gets further.

    The service calls this first so that allowed, blocked and rule-matched callers never cost
    a history load: during a flood, history is the expensive part.
    """
    policy = rules.policy
    local = now.astimezone(ZoneInfo(policy.timezone))

    # 0. An internal call (the router's intercom, another extension): it always rings, and
    # the caller is no stranger (it counts towards no burst).
    if caller.kind is CallerKind.INTERNAL:
        return Decision(PASS, step=Step.INTERNAL, unknown=False,
                        **because("internal", extension=caller.raw))

    # 1. Screening paused by the owner.
    if policy.paused_until is not None and now < policy.paused_until:
        until = policy.paused_until.astimezone(ZoneInfo(policy.timezone))
        return Decision(PASS, step=Step.PAUSE, unknown=False,
                        **because("paused", until_at=until.isoformat()))

    # 2. Allow list: beats everything after it.
    allowed = _matching(rules, caller, ListName.ALLOW, now)
    if allowed:
        entry = _most_specific(allowed)
        return Decision(
            PASS, step=Step.ALLOW, ref=entry.id,
            unknown=False, consume_entry_id=entry.id if entry.once else None,
            **because("allow_once" if entry.once else "allow", entry=_entry(entry)),
        )

    # 3. Block list, each entry with its own action.
    blocked = _matching(rules, caller, ListName.BLOCK, now)
    if blocked:
        entry = _most_specific(blocked)
        return Decision(
            entry.action or policy.block_action, step=Step.BLOCK, ref=entry.id,
            **because("block", entry=_entry(entry)),
        )

    # 4. Rules in priority order.
    for rule in sorted(rules.policy.rules, key=lambda r: (r.priority, r.id)):
        if not rule.enabled:
            continue
        reason = _rule_reason(rule, caller, local)
        if reason is not None:
            code, params = reason
            if rule.label:
                params["rule_label"] = rule.label
            return Decision(rule.action, step=Step.RULE, ref=rule.id, **because(code, **params))

    return None


def decide_rate_limits(caller: Caller, rules: Rules, history: History,
                       now: datetime) -> Decision:
    """Steps 5-6 (repeat limit, burst, default), for a caller steps 1-4 did not settle."""
    policy = rules.policy
    # 5. Rate limits: the same number again and again, then a burst of distinct strangers.
    repeat = policy.repeat
    if repeat.enabled and caller.number is not None:
        earlier = repeat_count(history, caller.key, now, timedelta(minutes=repeat.window_minutes))
        if earlier >= repeat.max_calls:
            return Decision(
                repeat.action, step=Step.REPEAT,
                **because("repeat", number=caller.number, count=earlier,
                          window=repeat.window_minutes, limit=repeat.max_calls),
            )
    burst = BurstState(active=False)
    if policy.burst.enabled:
        burst = burst_state(
            history, now,
            threshold=policy.burst.distinct_callers,
            window=timedelta(minutes=policy.burst.window_minutes),
            duration=timedelta(minutes=policy.burst.duration_minutes),
            current_key=caller.key,
        )
        if burst.active:
            started = (burst.started_at or now).astimezone(ZoneInfo(policy.timezone))
            # The reason names what callers actually get: the profile, or the action itself.
            profile = burst_profile(policy.burst.action)
            extra = {} if profile else {"action": str(policy.burst.action)}
            return Decision(
                policy.burst.action, step=Step.BURST, burst=burst,
                **because(BURST_REASONS.get(profile or "", "burst_custom"),
                          since_time=started.isoformat(), callers=burst.distinct_callers,
                          window=policy.burst.window_minutes, **extra),
            )

    # 6. Default for unknown callers.
    if policy.default is DefaultMode.GREYLIST:
        window = timedelta(minutes=policy.greylist_window_minutes)
        too_soon = timedelta(minutes=policy.greylist_min_minutes)
        earlier_calls = history.calls_from(caller.key, now - window, now - too_soon)
        if earlier_calls:
            return Decision(PASS, step=Step.GREYLIST,
                            **because("greylist_back", caller=_caller_param(caller)))
        return Decision(
            policy.greylist_action, step=Step.GREYLIST,
            **because("greylist_first", caller=_caller_param(caller),
                      window=policy.greylist_window_minutes),
        )
    if policy.default is DefaultMode.CHALLENGE:
        return Decision(Action.parse("challenge"), step=Step.DEFAULT,
                        **because("default_challenge"))
    if policy.default is DefaultMode.VOICEMAIL:
        return Decision(Action.parse("voicemail"), step=Step.DEFAULT,
                        **because("default_voicemail"))
    return Decision(PASS, step=Step.DEFAULT, **because("default_pass"))
