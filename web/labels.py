"""Machine names the UI shows as words: rule kinds, parameters, modes, kinds, states.

Each table maps a stored value to its English words (the msgid); `words(group, value)` gives
them in the reader's language. One table per meaning, so "block" as a list and "block" as a
country rule's mode are different messages (issue 13, item 3).
"""

from __future__ import annotations

from gateway.screening.words import N_, RULE_KINDS
from web.i18n import gettext

WORDS: dict[str, dict[str, str]] = {
    "rule_kind": RULE_KINDS,
    "param": {
        "types": N_("number types"), "regions": N_("countries"), "mode": N_("mode"),
        "country": N_("country"), "outside_hours_only": N_("only outside legal calling hours"),
        "start": N_("from"), "end": N_("until"), "days": N_("days"),
        "max_calls": N_("calls at most"), "window_minutes": N_("within (minutes)"),
        "distinct_callers": N_("different unknown callers"),
        "duration_minutes": N_("lasts (minutes)"),
        "min_minutes": N_("a retry after at least (minutes)"), "action": N_("then"),
        "attest": N_("attestations"), "mismatch": N_("signed for another number"),
        "stale": N_("signed too long ago (replayed)"), "max_age": N_("at most (seconds) old"),
    },
    # STIR/SHAKEN attestation levels (RFC 8588), as the rules page offers them.
    "attest": {"A": N_("A: the network knows the caller and the number"),
               "B": N_("B: the network knows the caller, not the number"),
               "C": N_("C: the network only knows where the call came in")},
    # A country rule's mode: never the same message as the block list's name.
    "country_mode": {"block": N_("block these countries"),
                     "allow_only": N_("only these countries ring")},
    "default_mode": {
        "pass": N_("ring (no screening)"), "greylist": N_("greylist (ring when they call back)"),
        "challenge": N_("challenge (press a key)"), "voicemail": N_("voicemail"),
    },
    "match": {"exact": N_("exact number"), "prefix": N_("prefix"), "glob": N_("pattern"),
              "regex": N_("regular expression")},
    "action": {"pass": N_("rang through"), "reject": N_("rejected"),
               "announce": N_("message played"), "voicemail": N_("sent to voicemail"),
               "challenge": N_("challenged")},
    "line_state": {"registered": N_("registered"), "registering": N_("registering"),
                   "unregistered": N_("unregistered"), "failed": N_("failed"),
                   "unknown": N_("unknown")},
    "step": {"internal": N_("internal call"), "pause": N_("screening paused"),
             "allow": N_("allow list"), "block": N_("block list"), "rule": N_("rule"),
             "repeat": N_("repeated calls"),
             "burst": N_("burst mode"), "greylist": N_("greylist"),
             "default": N_("unknown caller"), "error": N_("screening failed")},
    "separator": {",": N_("commas"), ";": N_("semicolons"), "\t": N_("tabs")},
    "notification_kind": {"digest": N_("daily digest"), "voicemail": N_("voicemail alert"),
                          "burst_start": N_("burst mode on"), "burst_end": N_("burst mode over"),
                          "line_down": N_("line down"), "line_up": N_("line up again"),
                          "test": N_("test message")},
    "notification": {"sending": N_("sending"), "sent": N_("sent"), "retry": N_("will retry"),
                     "failed": N_("failed"), "skipped": N_("skipped")},
}


def words(value: object, group: str) -> str:
    """`value` of `group` in the reader's language; unknown values are shown as they are."""
    text = str(value)
    known = WORDS.get(group, {}).get(text)
    return gettext(known) if known else text


# Messages web/security.py raises and web/auth.py translates where it shows them
# (`_(str(exc))`): marked here so they are extracted into the catalog with the rest.
# tests/web/test_web_i18n.py checks the French setup page shows them in French.
RAISED_ELSEWHERE = (
    N_("the password must have at least 10 characters"),
    N_("the two passwords differ"),
)
