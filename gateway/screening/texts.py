"""Text messages screened with the owner's lists and rules: accepted, held or refused. Pure.

A text goes through the same steps 1-4 as a call (pause, allow list, block list, rules:
`decide_without_history`), so one block entry keeps a number's calls and texts away. What
follows differs, because a text is not a ring: an action that answers a call cannot answer a
text, and a stranger's text costs the owner nothing until it is pushed to their phone.

- a pause or the allow list: accepted (and forwarded when the owner wants texts forwarded);
- a block entry or a rule: refused with its reject code (603 for an announcement), or held
  when its action is voicemail or challenge (kept for the owner to read, never pushed);
- then, for senders on no list: more than `per_sender` texts from one sender within the
  window are refused (486, the sender's rate limit); a burst of `burst_senders` distinct
  unknown senders holds every stranger's text (stored, counted in the digest, not forwarded
  one by one);
- then the default for unknown callers: pass accepts; greylist, challenge and voicemail
  hold (a text has no second try and no key to press).

A "permit next call" lets a text through but is not used up by it: it was given for a call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from gateway.screening.caller import Caller
from gateway.screening.decide import Decision, Rules, Step, because, decide_without_history
from gateway.screening.ratelimit import History, burst_state, repeat_count
from gateway.screening.rules import ActionKind, DefaultMode


class TextVerdict(StrEnum):
    """What happened to a text."""

    ACCEPTED = "accepted"  # 202, stored, forwarded when the owner asked for it
    HELD = "held"  # 202, stored, never pushed: the owner reads it in the UI or the digest
    REFUSED = "refused"  # a 4xx/6xx; stored with the reason


class TextStep(StrEnum):
    """The steps of text screening that calls do not have."""

    RATE = "text_rate"  # too many texts from one sender
    BURST = "text_burst"  # many strangers texting at once


@dataclass(frozen=True)
class TextLimits:
    """The rate limits of texts (`[messages]` in config.toml)."""

    per_sender: int = 5  # texts one sender may send within `window_minutes`
    window_minutes: int = 10
    burst_senders: int = 5  # distinct unknown senders within `burst_minutes` that hold texts
    burst_minutes: int = 10


@dataclass(frozen=True)
class TextDecision:
    """What to do with one text and why (the reason as English, and as code + parameters)."""

    verdict: TextVerdict
    status: int  # the SIP answer: 202, or the refusal's code
    reason: str
    step: str  # a Step or TextStep value
    ref: int | None = None  # the entry or rule that decided
    action: str = "pass"  # the list's or rule's action, as the call log stores actions
    unknown: bool = True  # a sender no list or rule settled (counts towards bursts)
    reason_code: str | None = None
    reason_params: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def rule_id(self) -> str | None:
        """What decided, as the log stores it: "block:7", "rule:3", "text_rate"."""
        if self.step == Step.PAUSE.value:
            return None
        return f"{self.step}:{self.ref}" if self.ref is not None else self.step

    @property
    def delivered(self) -> bool:
        """Whether the sender was told we took it (202)."""
        return self.verdict is not TextVerdict.REFUSED


ACCEPTED_STATUS = 202  # RFC 3428 §7: a gateway that stores or relays answers 202 Accepted
RATE_LIMIT_STATUS = 486  # Busy Here: the sender's end system reached us, not willing now
ANNOUNCE_STATUS = 603  # a rule that would play a message to a caller declines a text


def _from_decision(decision: Decision) -> TextDecision:
    """Steps 1-4 of a call's decision, for a text."""
    action = decision.action
    common: dict[str, Any] = {
        "reason": decision.reason, "step": decision.step.value, "ref": decision.ref,
        "action": str(action), "unknown": decision.counts_towards_burst,
        "reason_code": decision.reason_code, "reason_params": decision.reason_params,
    }
    if action.kind is ActionKind.PASS:
        return TextDecision(TextVerdict.ACCEPTED, ACCEPTED_STATUS, **common)
    if action.kind is ActionKind.REJECT:
        return TextDecision(TextVerdict.REFUSED, action.code or ANNOUNCE_STATUS, **common)
    if action.kind is ActionKind.ANNOUNCE:
        return TextDecision(TextVerdict.REFUSED, ANNOUNCE_STATUS, **common)
    return TextDecision(TextVerdict.HELD, ACCEPTED_STATUS, **common)  # voicemail, challenge


def decide_text(caller: Caller, rules: Rules, history: History, now: datetime,
                limits: TextLimits) -> TextDecision:
    """Decide what to do with a text from `caller` at `now`, given the earlier texts."""
    early = decide_without_history(caller, rules, now)
    if early is not None and (early.step in (Step.PAUSE, Step.ALLOW)
                              or not early.action.is_pass):
        return _from_decision(early)
    # Rate limits: the sender, then everyone. A rule that lets a sender pass explicitly
    # (action pass) still goes through them: only the owner's allow list is exempt.
    window = timedelta(minutes=limits.window_minutes)
    earlier = repeat_count(history, caller.key, now, window)
    if earlier >= limits.per_sender:
        return TextDecision(
            TextVerdict.REFUSED, RATE_LIMIT_STATUS, step=TextStep.RATE.value,
            **because("text_rate", number=caller.number or caller.kind.value, count=earlier,
                      window=limits.window_minutes, limit=limits.per_sender))
    if early is not None:
        return _from_decision(early)
    burst_window = timedelta(minutes=limits.burst_minutes)
    burst = burst_state(history, now, threshold=limits.burst_senders, window=burst_window,
                        duration=burst_window, current_key=caller.key)
    if burst.active:
        return TextDecision(
            TextVerdict.HELD, ACCEPTED_STATUS, step=TextStep.BURST.value,
            **because("text_burst", senders=burst.distinct_callers,
                      window=limits.burst_minutes))
    if rules.policy.default is DefaultMode.PASS:
        return TextDecision(TextVerdict.ACCEPTED, ACCEPTED_STATUS, step=Step.DEFAULT.value,
                            **because("default_pass"))
    return TextDecision(TextVerdict.HELD, ACCEPTED_STATUS, step=Step.DEFAULT.value,
                        **because("text_held"))
