"""What happened to a call, in words: every outcome the call flow logs has a phrase, in French
and in English, and the burst profiles decide and explain themselves."""

from __future__ import annotations

import ast
import re
from dataclasses import replace
from datetime import timedelta

import pytest

from gateway.call.carry_out import challenge_prompt
from gateway.notify.catalog import formats
from gateway.prompts import KEYED_PROMPTS, PROMPT_NAMES, TEXTS, keyed_prompt_name
from gateway.screening import Policy, Rules, decide
from gateway.screening.ratelimit import History, PastCall
from gateway.screening.rules import BURST_PROFILES, Action, BurstSettings, burst_profile
from gateway.screening.words import OUTCOMES, duration_words, outcome_words, render_reason
from gateway.store.events import INTERRUPTED_OUTCOME
from tests.conftest import REPO_ROOT
from tests.helpers import TUESDAY_AFTERNOON, caller

FRENCH = formats("fr")


def _strings(node: ast.AST) -> list[str]:
    """String literals under `node`; an f-string as one text with its values filled in."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts = [p.value if isinstance(p, ast.Constant) else "7" for p in node.values]
        if len(parts) > 1 and parts[-2] == "passed: ":
            parts[-1] = "declined elsewhere (SIP 7)"  # what a proxy's CANCEL said: cancel_words
        elif len(parts) > 1 and parts[-2].endswith(": "):
            parts[-1] = "voicemail 7 s"  # what came before: "challenge passed: {outcome}"
        return ["".join(str(p) for p in parts)]
    return [s for child in ast.iter_child_nodes(node) for s in _strings(child)]


def _logged_outcomes() -> set[str]:
    """Every outcome text the call flow returns or raises as a literal."""
    found: set[str] = set()
    for name in ("carry_out.py", "handle.py"):
        tree = ast.parse((REPO_ROOT / "gateway" / "call" / name).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            value = node.exc if isinstance(node, ast.Raise) else getattr(node, "value", None)
            if isinstance(node, ast.Return | ast.Raise | ast.Assign) and value is not None:
                found.update(_strings(value))
    # A prefix ("failed open: " + what ring_through said) is checked with a continuation;
    # literals that are not outcomes (log messages, reasons) are left out.
    found = {f + "voicemail 7 s" if f.endswith(": ") else f for f in found}
    return {f for f in found if re.fullmatch(r"[a-z][A-Za-z0-9 :()]*", f)
            and not f.endswith("(") and not f.startswith(("unknown action", "call "))
            and f not in ("challenge", "greeting")}  # prompt names


def test_every_outcome_the_call_flow_logs_is_said_in_words() -> None:
    outcomes = _logged_outcomes() | {INTERRUPTED_OUTCOME}
    assert {"passed: cancelled by caller", "caller hung up during the greeting",
            "voicemail 7 s", "rejected 7"} <= outcomes, outcomes
    for outcome in outcomes:
        # Shown in words, never as stored ("" only where the action says it all: rejected).
        if outcome_words(outcome, 3.0):
            assert outcome_words(outcome, 3.0, FRENCH) != outcome, outcome
        else:
            assert outcome.startswith("rejected"), outcome


@pytest.mark.parametrize(("outcome", "seconds", "english", "french"), [
    ("passed: cancelled by caller", 2.0, "rang 2 s, nobody answered",
     "a sonné 2 s, personne n'a décroché"),
    ("caller hung up during the greeting", 4.0, "hung up during the greeting",
     "a raccroché pendant l'annonce"),
    ("voicemail 12 s", 19.0, "left a 12 s message", "a laissé un message de 12 s"),
    ("answered elsewhere", 8.0, "answered on another phone", "décroché sur un autre téléphone"),
    ("challenge passed: voicemail 9 s", 30.0, "pressed the key, then left a 9 s message",
     "a appuyé sur la touche, puis a laissé un message de 9 s"),
    ("failed open: passed: cancelled by caller", 65.0,
     "screening failed, then rang 1 min 05 s, nobody answered",
     "le filtrage a échoué, puis a sonné 1 min 05 s, personne n'a décroché"),
    ("rejected 486", 0.1, "", ""),
    ("passed: declined elsewhere (SIP 603)", 9.0,
     "rang 9 s, declined on another phone (SIP 603)",
     "a sonné 9 s, refusé sur un autre téléphone (SIP 603)"),
    ("passed: not answered elsewhere (Q.850 19)", 120.0,
     "rang 2 min 00 s, nobody answered on any phone (Q.850 19)",
     "a sonné 2 min 00 s, personne n'a décroché sur aucun téléphone (Q.850 19)"),
    ("passed: cancelled by the network (SIP 500)", 3.0,
     "rang 3 s, ended by the network (SIP 500)", "a sonné 3 s, arrêté par le réseau (SIP 500)"),
    ("declined elsewhere (SIP 603)", 0.5, "declined on another phone (SIP 603)",
     "refusé sur un autre téléphone (SIP 603)"),
    ("analogue line: announced", 6.0,
     "answered to stop the analogue line ringing: heard the message",
     "décroché pour arrêter la sonnerie de la ligne analogique : a entendu le message"),
])
def test_outcomes_in_both_languages(outcome: str, seconds: float, english: str,
                                    french: str) -> None:
    assert outcome_words(outcome, seconds) == english
    assert outcome_words(outcome, seconds, FRENCH) == french


def test_a_call_without_outcome_is_in_progress_only_while_it_may_still_run() -> None:
    assert outcome_words(None, None, ongoing=True) == "in progress"
    assert outcome_words(None, None, FRENCH, ongoing=True) == "en cours"
    assert outcome_words(None, None) == ""
    assert outcome_words("something new", 1.0) == "something new"  # a newer gateway's words


def test_durations_read_the_same_in_both_languages() -> None:
    assert [duration_words(s) for s in (0.4, 12.0, 59.6, 61.0, 3600.0)] == \
        ["0 s", "12 s", "1 min 00 s", "1 min 01 s", "60 min 00 s"]
    assert set(OUTCOMES) >= {"passed: nobody answered", "voicemail full"}


# --------------------------------------------------------------------------- burst profiles


def _burst(action: Action) -> object:
    policy = Policy(burst=BurstSettings(distinct_callers=3, action=action))
    now = TUESDAY_AFTERNOON
    history = History.of(PastCall(at=now - timedelta(minutes=i + 1), key=f"+3361234567{i}",
                                  unknown=True) for i in range(3))
    return decide(caller("0698765432"), Rules(policy), history, now)


def test_each_profile_decides_its_action_and_its_reason_names_it() -> None:
    spoofed = _burst(BURST_PROFILES["spoofed"])
    assert spoofed.reason_code == "burst" and "spoof-shield" in spoofed.reason  # type: ignore[attr-defined]
    published = _burst(BURST_PROFILES["published"])
    assert str(published.action) == "challenge:published"  # type: ignore[attr-defined]
    assert published.reason_code == "burst_published"  # type: ignore[attr-defined]
    assert '"my number was published"' in published.reason  # type: ignore[attr-defined]
    assert "spoof" not in published.reason  # type: ignore[attr-defined]
    french = render_reason(published.reason_code, published.reason_params, "",  # type: ignore[attr-defined]
                           FRENCH)
    assert "« mon numéro a été publié »" in french
    own = _burst(Action.parse("reject:486"))
    assert own.reason_code == "burst_custom" and own.reason.endswith("get reject:486")  # type: ignore[attr-defined]


def test_profiles_are_told_apart_from_their_action() -> None:
    assert burst_profile(Action.parse("voicemail:spoof_shield")) == "spoofed"
    assert burst_profile(Action.parse("challenge:published")) == "published"
    assert burst_profile(Action.parse("challenge")) is None
    assert replace(BURST_PROFILES["published"]) == Action.parse("challenge:published")


def test_the_published_prompt_asks_for_the_owners_key_in_both_languages() -> None:
    assert "published" in KEYED_PROMPTS
    assert challenge_prompt("published", "7") == "published_7"
    assert challenge_prompt("published", "#") == "published_hash"
    assert challenge_prompt("greeting", "7") == "greeting"
    for key in "0123456789*#":
        name = keyed_prompt_name("published", key)
        assert name in PROMPT_NAMES
    assert "touche 7" in TEXTS["published_7"]["fr"] and "press 7" in TEXTS["published_7"]["en"]
    assert "publié" in TEXTS["published"]["fr"] and "published" in TEXTS["published"]["en"]
    with pytest.raises(ValueError):
        keyed_prompt_name("greeting", "5")
