"""The call log, voicemails and line states on SQLite."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import time_machine

from gateway.screening.decide import Decision, Step
from gateway.screening.rules import Action
from gateway.store import Store
from gateway.store.calls import CallFilter, category, day_bounds
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services, caller


@pytest.fixture
def store(service: Services) -> Store:
    return service.store


def decision(action: str = "pass", step: Step = Step.DEFAULT, *, unknown: bool = True) -> Decision:
    return Decision(Action.parse(action), f"test: {action}", step, unknown=unknown)


def log(store: Store, at: datetime, action: str = "pass", number: str = "0612345678",
        **options: object) -> int:
    return store.calls.record(caller(number), decision(action), at=at, **options)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- CallLog


def test_record_writes_the_caller_and_the_decision(store: Store) -> None:
    who = caller("0612345678", name="Jean", line="home")
    row_id = store.calls.record(who, decision("reject:603", Step.BLOCK), at=NOW,
                                sip_call_id="abc@proxy")
    row = store.calls.get(row_id)
    assert row is not None
    assert (row.at, row.number, row.caller_kind, row.display_name, row.line) == (
        NOW, "+33612345678", "number", "Jean", "home")
    assert (row.action, row.step, row.reason, row.sip_call_id) == (
        "reject:603", "block", "test: reject:603", "abc@proxy")
    assert not row.unknown  # a blocked caller does not count towards a burst
    assert row.outcome is None and row.duration_s is None


def test_the_line_given_to_record_wins_over_the_callers(store: Store) -> None:
    row_id = store.calls.record(caller("0612345678", line="home"), decision(), at=NOW,
                                line="office")
    row = store.calls.get(row_id)
    assert row is not None and row.line == "office"


def test_finish_stores_duration_and_a_bounded_outcome(store: Store) -> None:
    row_id = log(store, NOW)
    store.calls.finish(row_id, duration_s=12.5, outcome="voicemail " + "x" * 100)
    row = store.calls.get(row_id)
    assert row is not None and row.duration_s == 12.5
    assert row.outcome is not None and len(row.outcome) == 60


def test_recent_is_newest_first_with_pages(store: Store) -> None:
    ids = [log(store, NOW + timedelta(minutes=m)) for m in (0, 2, 1)]
    assert [r.id for r in store.calls.recent()] == [ids[1], ids[2], ids[0]]
    assert [r.id for r in store.calls.recent(limit=1, offset=1)] == [ids[2]]


def test_calls_at_the_same_instant_come_newest_row_first(store: Store) -> None:
    first, second = log(store, NOW), log(store, NOW)
    assert [r.id for r in store.calls.recent()] == [second, first]


def test_an_action_kind_filter_matches_every_parameter_of_it(store: Store) -> None:
    for action in ("reject:603", "reject:486", "pass", "voicemail", "voicemail:spoof_shield"):
        log(store, NOW, action)
    assert store.calls.count(CallFilter(action="reject")) == 2
    assert store.calls.count(CallFilter(action="reject:603")) == 1
    assert store.calls.count(CallFilter(action="voicemail")) == 2
    assert store.calls.count(CallFilter(action="voice")) == 0  # a kind, not a text prefix
    assert {r.action for r in store.calls.recent(CallFilter(action="reject"))} == {
        "reject:603", "reject:486"}


def test_number_and_time_filters(store: Store) -> None:
    log(store, NOW - timedelta(hours=1), number="0611111111")
    middle = log(store, NOW, number="0611111111")
    log(store, NOW + timedelta(hours=1), number="0611111111")
    log(store, NOW, number="0622222222")
    assert store.calls.count(CallFilter(number="+33611111111")) == 3
    window = CallFilter(number="+33611111111", since=NOW, until=NOW + timedelta(hours=1))
    assert [r.id for r in store.calls.recent(window)] == [middle]  # since inclusive, until not
    assert store.calls.count(CallFilter(since=NOW)) == 3


def test_a_day_filter_covers_the_25_hours_of_the_autumn_change_in_paris(store: Store) -> None:
    day = date(2026, 10, 25)  # clocks go back at 03:00 CEST
    since, until = (t.astimezone(UTC) for t in day_bounds(day, "Europe/Paris"))
    assert until - since == timedelta(hours=25)
    assert since == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    inside = [log(store, datetime(2026, 10, 24, 22, 0, tzinfo=UTC)),  # 00:00 CEST
              log(store, datetime(2026, 10, 25, 1, 30, tzinfo=UTC)),  # 02:30 CET (2nd time)
              log(store, datetime(2026, 10, 25, 22, 59, tzinfo=UTC))]  # 23:59 CET
    log(store, datetime(2026, 10, 24, 21, 59, tzinfo=UTC))  # 23:59 the day before
    log(store, datetime(2026, 10, 25, 23, 0, tzinfo=UTC))  # 00:00 the day after
    flt = CallFilter.for_day(day, "Europe/Paris")
    assert sorted(r.id for r in store.calls.recent(flt)) == inside
    assert store.calls.count(flt) == 3


def test_a_day_filter_covers_the_23_hours_of_the_spring_change_in_paris(store: Store) -> None:
    since, until = (t.astimezone(UTC) for t in day_bounds(date(2026, 3, 29), "Europe/Paris"))
    assert until - since == timedelta(hours=23)
    log(store, datetime(2026, 3, 29, 21, 59, tzinfo=UTC))  # 23:59 CEST
    log(store, datetime(2026, 3, 29, 22, 0, tzinfo=UTC))  # the next day
    flt = CallFilter.for_day(date(2026, 3, 29), "Europe/Paris", action="pass")
    assert store.calls.count(flt) == 1


def test_history_is_the_window_before_now(store: Store) -> None:
    log(store, NOW - timedelta(minutes=11))
    log(store, NOW - timedelta(minutes=10))
    log(store, NOW, number="0622222222")
    log(store, NOW + timedelta(seconds=1))
    history = store.calls.history(NOW, timedelta(minutes=10))
    assert [(c.at, c.key) for c in history.calls] == [
        (NOW - timedelta(minutes=10), "+33612345678"), (NOW, "+33622222222")]


def test_a_withheld_caller_is_counted_under_its_kind(store: Store) -> None:
    store.calls.record(caller("anonymous", privacy="id"), decision(), at=NOW)
    assert [c.key for c in store.calls.history(NOW, timedelta(minutes=1)).calls] == ["withheld"]


@pytest.mark.parametrize(("action", "expected"), [
    ("pass", "pass"), ("reject:603", "blocked"), ("announce:sit", "blocked"),
    ("voicemail", "voicemail"), ("voicemail:spoof_shield", "voicemail"),
    ("challenge", "challenge"), ("something:new", "blocked"),
])
def test_category_of_an_action(action: str, expected: str) -> None:
    assert category(action) == expected


def test_counts_by_category_include_empty_categories(store: Store) -> None:
    for action in ("pass", "pass", "reject:603", "announce:sit"):
        log(store, NOW, action)
    log(store, NOW + timedelta(hours=1), "voicemail")  # at `until`: excluded
    counts = store.calls.counts_by_category(NOW, NOW + timedelta(hours=1))
    assert counts == {"pass": 2, "blocked": 2, "voicemail": 0, "challenge": 0}


def test_buckets_count_consecutive_ranges(store: Store) -> None:
    log(store, NOW, "pass")
    log(store, NOW + timedelta(minutes=59), "reject:603")
    log(store, NOW + timedelta(hours=2), "voicemail")
    log(store, NOW + timedelta(hours=3), "challenge")  # after the last bucket
    buckets = store.calls.buckets(NOW, timedelta(hours=1), 3)
    assert buckets == [
        {"pass": 1, "blocked": 1, "voicemail": 0, "challenge": 0},
        {"pass": 0, "blocked": 0, "voicemail": 0, "challenge": 0},
        {"pass": 0, "blocked": 0, "voicemail": 1, "challenge": 0},
    ]


# --------------------------------------------------------------------------- Voicemails


def save(store: Store, path: str, *, at: datetime = NOW, size: int = 1000,
         call_row_id: int | None = None) -> int:
    return store.voicemails.save(call_row_id, at=at, path=path, duration_s=3.0,
                                 size_bytes=size, number="+33612345678", display_name="Jean")


def test_paths_are_stored_relative_to_the_folder_when_inside_it(store: Store,
                                                                tmp_path: Path) -> None:
    folder = store.voicemails.folder
    assert store.voicemails.relative(folder / "a.wav") == "a.wav"
    assert store.voicemails.relative(folder / "2026" / "b.wav") == "2026/b.wav"
    outside = tmp_path / "elsewhere.wav"
    assert store.voicemails.relative(outside) == str(outside)


def test_save_and_read_back(store: Store) -> None:
    call_row_id = log(store, NOW)
    vm_id = save(store, "a.wav", call_row_id=call_row_id)
    row = store.voicemails.get(vm_id)
    assert row is not None
    assert (row.call_id, row.path, row.number, row.display_name, row.heard) == (
        call_row_id, "a.wav", "+33612345678", "Jean", False)


def test_bytes_used_sums_every_recording(store: Store) -> None:
    assert store.voicemails.bytes_used() == 0
    save(store, "a.wav", size=1000)
    save(store, "b.wav", size=234)
    assert store.voicemails.bytes_used() == 1234


def test_recent_is_newest_first(store: Store) -> None:
    old = save(store, "old.wav", at=NOW - timedelta(days=1))
    new = save(store, "new.wav", at=NOW)
    assert [r.id for r in store.voicemails.recent()] == [new, old]
    assert [r.id for r in store.voicemails.recent(limit=1, offset=1)] == [old]


def test_count_and_mark_heard(store: Store) -> None:
    first, _second = save(store, "a.wav"), save(store, "b.wav")
    assert store.voicemails.count() == 2 == store.voicemails.count(unheard_only=True)
    assert store.voicemails.mark_heard(first)
    assert store.voicemails.count(unheard_only=True) == 1
    assert store.voicemails.mark_heard(first, heard=False)
    assert store.voicemails.count(unheard_only=True) == 2
    assert not store.voicemails.mark_heard(99_999)


def test_delete_removes_the_file_and_the_row(store: Store) -> None:
    folder = store.voicemails.folder
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.wav").write_bytes(b"RIFF")
    vm_id = save(store, "a.wav")
    assert store.voicemails.delete(vm_id)
    assert not (folder / "a.wav").exists()
    assert store.voicemails.get(vm_id) is None
    assert not store.voicemails.delete(vm_id)


def test_delete_of_a_row_whose_file_is_gone_still_deletes_the_row(store: Store) -> None:
    vm_id = save(store, "never-written.wav")
    assert store.voicemails.delete(vm_id)
    assert store.voicemails.count() == 0


@pytest.mark.parametrize("stored", ["../outside.wav", "{outside}"])
def test_a_row_pointing_outside_the_folder_never_touches_that_file(
    store: Store, stored: str,
) -> None:
    folder = store.voicemails.folder
    folder.mkdir(parents=True, exist_ok=True)
    outside = folder.parent / "outside.wav"
    outside.write_bytes(b"precious")
    vm_id = save(store, stored.format(outside=outside))
    row = store.voicemails.get(vm_id)
    assert row is not None
    with pytest.raises(ValueError, match="outside the voicemail folder"):
        store.voicemails.path_of(row)
    assert store.voicemails.delete(vm_id)
    assert outside.read_bytes() == b"precious"
    assert store.voicemails.get(vm_id) is None


def test_deleting_the_call_keeps_its_voicemail(store: Store) -> None:
    from gateway.store.models import CallRow

    call_row_id = log(store, NOW)
    vm_id = save(store, "a.wav", call_row_id=call_row_id)
    with store.db.session() as s:
        row = s.get(CallRow, call_row_id)
        s.delete(row)
    kept = store.voicemails.get(vm_id)
    assert kept is not None and kept.call_id is None


# --------------------------------------------------------------------------- LineStates


def test_line_state_is_written_only_when_it_changes(store: Store) -> None:
    first = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
    with time_machine.travel(first, tick=False):
        store.lines.set("home", "registered", None)
    with time_machine.travel(first + timedelta(minutes=5), tick=False):
        store.lines.set("home", "registered", None)
    [state] = store.lines.all()
    assert (state.state, state.error, state.changed_at) == ("registered", None, first)
    with time_machine.travel(first + timedelta(minutes=9), tick=False):
        store.lines.set("home", "failed", "403 Forbidden")
    [state] = store.lines.all()
    assert (state.state, state.error) == ("failed", "403 Forbidden")
    assert state.changed_at == first + timedelta(minutes=9)


def test_a_new_error_text_is_a_change(store: Store) -> None:
    store.lines.set("home", "failed", "403 Forbidden")
    store.lines.set("home", "failed", "timeout")
    assert store.lines.all()[0].error == "timeout"


def test_lines_are_listed_by_name(store: Store) -> None:
    for name in ("office", "home", "mobile"):
        store.lines.set(name, "registered", None)
    assert [s.name for s in store.lines.all()] == ["home", "mobile", "office"]
