"""Reasons are codes with parameters: English when stored, the reader's language when shown."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from gateway.notify.catalog import formats
from gateway.screening import Policy, Rules, decide
from gateway.screening.ratelimit import History
from gateway.screening.rules import DefaultMode
from gateway.screening.words import REASONS, render_reason
from tests.helpers import TUESDAY_AFTERNOON, caller, entry, rule

FRENCH = formats("fr")
QUIET = Policy(rules=(), burst=replace(Policy().burst, enabled=False))


def _decide(number: str, policy: Policy = QUIET, entries: tuple[object, ...] = (),
            at: datetime = TUESDAY_AFTERNOON) -> object:
    return decide(caller(number), Rules(policy, entries), History(()), at)  # type: ignore[arg-type]


def test_every_decision_has_a_known_code_and_its_english_is_the_stored_text() -> None:
    labelled = replace(rule("telemarketing"), label="telemarketing ranges")
    cases = [
        _decide("0612345678"),
        _decide("0612345678", replace(QUIET, default=DefaultMode.VOICEMAIL)),
        _decide("0612345678", replace(QUIET, default=DefaultMode.CHALLENGE)),
        _decide("0612345678", replace(QUIET, default=DefaultMode.GREYLIST)),
        _decide("0162123456", replace(QUIET, rules=(labelled,))),
        _decide("0899123456", replace(QUIET, rules=(rule("number_type", types=["PREMIUM_RATE"]),))),
        _decide("+4420794600", replace(QUIET, rules=(rule("country", regions=["FR"],
                                                          mode="allow_only"),))),
        _decide("0612345678", entries=(entry("block", "prefix", "+3361", label="pest"),)),
        _decide("0612345678", entries=(entry("allow", "exact", "+33612345678",
                                             label="answered by owner"),)),
        _decide("0612345678", replace(QUIET, paused_until=TUESDAY_AFTERNOON + timedelta(hours=1))),
    ]
    for decision in cases:
        assert decision.reason_code in REASONS, decision
        assert render_reason(decision.reason_code, decision.reason_params, "?") == \
            decision.reason
        assert decision.as_dict()["reason_code"] == decision.reason_code


def test_french_rendering_of_the_issue_s_examples() -> None:
    labelled = replace(rule("telemarketing"), label="telemarketing ranges")
    decision = _decide("0162123456", replace(QUIET, rules=(labelled,)))
    french = render_reason(decision.reason_code, decision.reason_params, "", FRENCH)
    assert french.startswith("0162 est une tranche que l'ARCEP réserve au démarchage")
    assert french.endswith("[tranches de démarchage]")
    assert render_reason("default_pass", {}, "", FRENCH) == "aucune règle ne s'applique"
    known = _decide("0612345678", entries=(entry("allow", "exact", "+33612345678",
                                                 label="answered by owner"),))
    assert render_reason(known.reason_code, known.reason_params, "", FRENCH) == \
        "sur la liste blanche : +33612345678 (vous avez répondu)"
    mine = _decide("0612345678", entries=(entry("allow", "exact", "+33612345678",
                                                label="plumber"),))
    assert render_reason(mine.reason_code, mine.reason_params, "", FRENCH).endswith(
        "(plumber)")  # the owner's own label is shown as typed


def test_plural_forms_follow_the_count() -> None:
    one = {"number": "+33612345678", "count": 1, "window": 10, "limit": 1}
    assert "already called 1 time in" in render_reason("repeat", one, "")
    assert "already called 3 times in" in render_reason("repeat", {**one, "count": 3}, "")
    assert "a déjà appelé 3 fois" in render_reason("repeat", {**one, "count": 3}, "", FRENCH)


def test_rows_from_before_the_codes_and_unknown_codes_keep_their_text() -> None:
    assert render_reason(None, None, "an old English reason", FRENCH) == "an old English reason"
    assert render_reason("from_a_newer_version", {}, "as stored", FRENCH) == "as stored"
    # A parameter the template lacks (a catalog edited by hand) never breaks the page.
    assert render_reason("country_blocked", {}, "stored", FRENCH) == "stored"


def test_dates_in_reasons_are_stored_in_local_time() -> None:
    until = datetime(2026, 11, 24, 17, 30, tzinfo=UTC)
    decision = _decide("0612345678", replace(QUIET, paused_until=until))
    assert decision.reason == "screening is paused until 24/11 18:30"  # Paris, in winter
    assert decision.reason_params == {"until_at": "2026-11-24T18:30:00+01:00"}
