"""The screening core: pure functions and values, no SIP, web or database code."""

from gateway.screening.caller import Caller, CallerKind, Verstat
from gateway.screening.decide import Decision, Rules, Step, decide
from gateway.screening.ratelimit import BurstState, History, PastCall, burst_state
from gateway.screening.rules import (
    PASS,
    Action,
    ActionKind,
    BurstSettings,
    DefaultMode,
    InvalidField,
    ListEntry,
    ListName,
    MatchKind,
    Policy,
    RepeatLimit,
    Rule,
    RuleKind,
)

__all__ = [
    "PASS",
    "Action",
    "ActionKind",
    "BurstSettings",
    "BurstState",
    "Caller",
    "CallerKind",
    "Decision",
    "DefaultMode",
    "History",
    "InvalidField",
    "ListEntry",
    "ListName",
    "MatchKind",
    "PastCall",
    "Policy",
    "RepeatLimit",
    "Rule",
    "RuleKind",
    "Rules",
    "Step",
    "Verstat",
    "burst_state",
    "decide",
]
