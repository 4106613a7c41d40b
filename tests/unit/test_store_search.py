"""Searching the call log and the lists by a number in any written form, even partial, or by
name; several entries at once; the call log's poll token, tops and export."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.numbers import NumberQuery, number_query
from gateway.screening.decide import Decision, Step
from gateway.screening.rules import Action
from gateway.store import Store
from gateway.store.calls import CallFilter, digits_after
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services, caller


@pytest.fixture
def store(service: Services) -> Store:
    return service.store


def log(store: Store, number: str, *, name: str = "", action: str = "pass",
        minutes: int = 0) -> int:
    decision = Decision(Action.parse(action), "test", Step.DEFAULT)
    return store.calls.record(caller(number, name=name), decision,
                              at=NOW - timedelta(minutes=minutes))


@pytest.mark.parametrize(("typed", "expected"), [
    ("0612", NumberQuery(start="+33612")),
    ("06 12", NumberQuery(start="+33612")),
    ("06.12", NumberQuery(start="+33612")),
    ("+33612", NumberQuery(start="+33612")),
    ("0033 612", NumberQuery(start="+33612")),
    ("3456", NumberQuery(digits="3456")),
    ("06 12 34 56 78", NumberQuery(start="+33612345678", complete="+33612345678")),
    ("tel:+44 20 7946 0000", NumberQuery(start="+442079460000", complete="+442079460000")),
])
def test_a_searched_number_in_any_written_form(typed: str, expected: NumberQuery) -> None:
    assert number_query(typed, "FR") == expected


def test_words_are_not_a_number_query() -> None:
    assert number_query("Dupont", "FR") is None
    assert number_query("+", "FR") is None


def test_the_call_log_finds_partial_numbers_and_names(store: Store) -> None:
    log(store, "0612345678", name="Jean DUPONT")
    log(store, "0612999999")
    log(store, "0698765432", name="Télé Vente")
    log(store, "+442079460000")

    def found(text: str) -> set[str]:
        return {r.number or "" for r in store.calls.recent(CallFilter().search(text, "FR"))}

    both = {"+33612345678", "+33612999999"}
    # The forms: `0612` was "not a phone number", `06 12` found nothing.
    assert found("0612") == found("06 12") == found("+33612") == found("0033612") == both
    assert found("0612345678") == {"+33612345678"}
    assert found("3456") == {"+33612345678"}
    assert found("dupont") == {"+33612345678"}  # any case
    assert found("télé") == {"+33698765432"}
    assert found("+44") == {"+442079460000"}
    assert store.calls.count(CallFilter(action="pass").search("0612", "FR")) == 2
    assert found("100%") == set()  # LIKE wildcards are text


def test_the_lists_find_what_covers_a_number_typed_any_way(store: Store) -> None:
    store.entries.add("block", "0612345678", label="Plombier")
    store.entries.add("block", "0612*", confirm=True)
    store.entries.add("block", "0162*")

    def found(text: str) -> set[str]:
        return {e.pattern for e in store.entries.find("block", search=text)}

    # Was "0 entries": the entry is stored +33612345678.
    assert found("0612345678") == {"+33612345678", "+33612"}
    assert found("06 12") == {"+33612345678", "+33612"}
    assert found("plombier") == {"+33612345678"}
    assert found("+33162") == {"+33162"}
    assert store.entries.count("block", "06 12 34 56 78") == 2


def test_several_numbers_move_between_lists_in_one_go(store: Store) -> None:
    store.entries.add("allow", "0611111111", label="Zoé")
    version = store.runtime.version()
    added, refused = store.entries.add_numbers("block", ["06 11 11 11 11", "+33622222222",
                                                         "hello"], label="spam")
    assert {e.pattern for e in added} == {"+33611111111", "+33622222222"}
    assert [text for text, _why in refused] == ["hello"]
    assert "neither a phone number" in str(refused[0][1])
    assert store.entries.count("allow") == 0  # moved, not on both lists
    assert store.runtime.version() == version + 1  # one transaction
    again, _ = store.entries.add_numbers("allow", ["+33611111111"],
                                         labels={"+33611111111": "Zoé"})
    assert [(e.pattern, e.label) for e in again] == [("+33611111111", "Zoé")]
    gone = store.entries.remove_many([e.id for e in store.entries.find("block")] + [999])
    assert {e.pattern for e in gone} == {"+33622222222"}
    assert store.entries.count("block") == 0


def test_the_poll_token_changes_when_a_call_comes_or_ends(store: Store) -> None:
    since = NOW - timedelta(hours=1)
    empty = store.calls.live_token(since)
    first = log(store, "0612345678")
    ringing = store.calls.live_token(since)
    assert ringing != empty and store.calls.live_token(since) == ringing  # stable when idle
    store.calls.finish(first, duration_s=2.0, outcome="passed: cancelled by caller")
    ended = store.calls.live_token(since)
    assert ended != ringing
    log(store, "0698765432")
    assert store.calls.live_token(since) not in (empty, ringing, ended)
    assert store.calls.last_id() == first + 1
    assert [r.id for r in store.calls.by_ids([first, 12345])] == [first]
    assert [r.id for r in store.calls.recent(CallFilter(after_id=first))] == [first + 1]


def test_top_callers_and_most_blocked(store: Store) -> None:
    for minutes in range(3):
        log(store, "0612345678", name="Jean", minutes=minutes)
    for minutes in range(2):
        log(store, "0162000000", action="reject:603", minutes=minutes)
    log(store, "0163000000", action="announce:sit")
    log(store, "0698765432", minutes=60 * 24 * 8)  # last week
    week = (NOW - timedelta(days=7), NOW + timedelta(seconds=1))
    assert store.calls.top_numbers(*week) == [("+33612345678", 3, "Jean"),
                                              ("+33162000000", 2, ""),
                                              ("+33163000000", 1, "")]
    assert store.calls.top_numbers(*week, blocked=True, limit=1) == [("+33162000000", 2, "")]


def test_an_export_reads_every_matching_call_newest_first(store: Store) -> None:
    for minutes in range(5):
        log(store, "0612345678", minutes=minutes)
    rows = list(store.calls.iter_matching(CallFilter().search("0612", "FR")))
    assert len(rows) == 5 and rows[0].at > rows[-1].at


@pytest.mark.parametrize(("start", "after"), [("+33612", "+33613"), ("+33619", "+3362"),
                                              ("+3399", "+34"), ("+99", None), ("+", None)])
def test_a_number_range_ends_at_the_next_digits(start: str, after: str | None) -> None:
    assert digits_after(start) == after
