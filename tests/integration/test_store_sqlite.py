"""The repository and service on a real SQLite file (WAL), as the gateway and UI use them."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from gateway.config import Settings
from gateway.screening import ListName
from gateway.service import ScreeningService, open_service
from gateway.store.db import SchemaError, check_schema, current_revision, head_revision
from gateway.store.repository import EntryError
from tests.helpers import TUESDAY_AFTERNOON as NOW


def test_schema_is_migrated_and_in_wal_mode(service: ScreeningService) -> None:
    assert current_revision(service.db.engine) == head_revision()
    with service.db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    check_schema(service.db.engine)


def test_a_newer_schema_is_refused(service: ScreeningService) -> None:
    with service.db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="newer than this Ringfence"):
        check_schema(service.db.engine)


def test_defaults_are_seeded_once(service: ScreeningService, settings: Settings) -> None:
    kinds = [r.kind.value for r in service.repo.rules()]
    assert "telemarketing" in kinds and "withheld" in kinds
    again = open_service(settings)
    assert len(again.repo.rules()) == len(kinds)


def test_no_telemarketing_preset_outside_france(make_settings) -> None:  # type: ignore[no-untyped-def]
    svc = open_service(make_settings('home_region = "BE"\ntimezone = "Europe/Brussels"'))
    assert "telemarketing" not in [r.kind.value for r in svc.repo.rules()]


def test_entries_round_trip_and_errors(service: ScreeningService) -> None:
    repo = service.repo
    exact = repo.add_entry("block", "06 12 34 56 78", label="pest",
                           expires_at=NOW + timedelta(days=1))
    assert exact.pattern == "+33612345678" and exact.kind.value == "exact"
    assert exact.expires_at == NOW + timedelta(days=1)
    assert repo.add_entry("block", "0162*").kind.value == "prefix"
    assert repo.add_entry("block", "+33 9 ?? ?? ?? ?1").kind.value == "glob"
    assert repo.add_entry("block", r"re:^\+4420.*").kind.value == "regex"
    # Adding the same number again updates instead of duplicating.
    repo.add_entry("block", "+33612345678", label="new label", action="reject:404")
    assert repo.count_entries("block") == 4
    assert repo.entries("block", search="new label")[0].action is not None
    with pytest.raises(EntryError, match="neither a phone number nor a prefix"):
        repo.add_entry("block", "hello")
    with pytest.raises(EntryError, match="not a valid regular expression"):
        repo.add_entry("block", "re:(")
    with pytest.raises(EntryError, match="allow entries take no action"):
        repo.add_entry("allow", "0611111111", action="reject:603")
    assert repo.remove_pattern("block", "0612345678")
    assert not repo.remove_pattern("block", "0612345678")


def test_candidates_use_index_and_cached_patterns(service: ScreeningService) -> None:
    repo = service.repo
    repo.add_entry("block", "0612345678")
    repo.add_entry("block", "061*")
    repo.add_entry("block", "+44*")
    repo.add_entry("block", "06 ?? ?? ?? 78")
    repo.add_entry("allow", "re:.*78")
    found = {e.pattern for e in repo.candidate_entries(service.caller("0612345678"))}
    assert {"+33612345678", "+3361", "+336??????78", ".*78"} <= found
    assert "+44" not in found


def test_a_change_from_another_process_applies_to_the_next_call(settings: Settings) -> None:
    gateway = open_service(settings)
    web = open_service(settings)  # another connection pool, as the web UI process has
    who = gateway.caller("0699887766")
    assert gateway.screen(who, NOW).action.is_pass
    web.repo.add_entry("block", "06 99 88 ?? ??")  # a glob: served from the gateway's cache
    assert str(gateway.screen(who, NOW).action) == "reject:603"
    web.repo.set_setting("paused_until", (NOW + timedelta(hours=1)).isoformat())
    assert gateway.screen(who, NOW).step == "pause"


def test_permit_next_call_is_used_up(service: ScreeningService) -> None:
    service.repo.add_entry("block", "0612345678")
    service.repo.add_entry("allow", "0612345678", once=True)
    who = service.caller("0612345678")
    first = service.screen(who, NOW)
    assert first.action.is_pass
    assert service.screen(who, NOW).action.is_pass  # screening alone writes nothing
    service.record_call(who, first, at=NOW)  # the gateway logs the call: permission used up
    assert not service.screen(who, NOW).action.is_pass


def test_history_feeds_the_repeat_limit(service: ScreeningService) -> None:
    who = service.caller("0612345678")
    actions = []
    for minute in range(5):
        at = NOW + timedelta(minutes=minute)
        decision = service.screen(who, at)
        service.record_call(who, decision, at=at, sip_call_id=f"c{minute}")
        actions.append(str(decision.action))
    assert actions[:3] == ["pass"] * 3
    assert actions[3] == "voicemail"  # the default limit: 3 calls in 10 minutes
    rows = service.repo.calls(limit=10)  # newest first
    assert rows[1].reason.startswith("+33612345678 already called 3 times")
    assert rows[0].screen_ms is not None


def test_screening_fails_open(service: ScreeningService, monkeypatch: pytest.MonkeyPatch,
                              caplog: pytest.LogCaptureFixture) -> None:
    service.repo.add_entry("block", "0612345678")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service.repo, "screening_rules", broken)
    decision = service.screen(service.caller("0612345678"), NOW)
    assert decision.action.is_pass and decision.step == "error"
    assert "screening failed" in caplog.text and "disk on fire" in caplog.text


def test_import_reports_bad_lines_and_keeps_good_ones(service: ScreeningService) -> None:
    data = io.StringIO(
        "number,label\n"
        "06 12 34 56 78,pest\n"
        "not a number\n"
        "+44 20 7946 0958\n"
        "\n"
        "# a comment\n"
        "0612345678,same number again\n"
        "re:(\n"
        "0162*,telemarketing\n"
    )
    report = service.repo.import_csv(data, "block")
    assert report.added == 3 and report.duplicates == 1
    assert [(line, why.split(":")[0]) for line, _, why in report.rejected] == [
        (3, "'not a number' is neither a phone number nor a prefix; patterns use * and ?, "
            "regular expressions start with re"),
        (8, "'(' is not a valid regular expression"),
    ]
    out = io.StringIO()
    assert service.repo.export_csv("block", out) == 3
    exported = out.getvalue().splitlines()
    assert exported[0] == "pattern,label,kind,action,expires_at"
    assert "+33162*,telemarketing,prefix,," in exported
    # What we export imports again as the same entries.
    service.repo.replace_source("allow", "subscription:x", [])
    again = service.repo.import_csv(io.StringIO(out.getvalue()), "block")
    assert again.added == 0 and again.duplicates == 3


def test_replace_source_is_atomic_and_spares_manual_entries(service: ScreeningService) -> None:
    repo = service.repo
    repo.add_entry("block", "0611111111", label="mine")
    repo.replace_source("block", "subscription:1", [("0622222222", "a"), ("0633333333", "b")])
    repo.replace_source("block", "subscription:1", [("0644444444", "c")])
    patterns = {e.pattern: e.source for e in repo.entries("block")}
    assert patterns == {"+33611111111": "manual", "+33644444444": "subscription:1"}


def test_rules_and_settings_validate_with_field_names(service: ScreeningService) -> None:
    repo = service.repo
    with pytest.raises(EntryError, match="types: 'LANDLINE' is not one of"):
        repo.add_rule("number_type", "reject:603", {"types": ["LANDLINE"]})
    with pytest.raises(EntryError, match="regions: 'XX' is not an ISO country code"):
        repo.add_rule("country", "voicemail", {"regions": ["XX"]})
    with pytest.raises(EntryError, match="start = '25:00'"):
        repo.add_rule("quiet_hours", "voicemail", {"start": "25:00"})
    with pytest.raises(EntryError, match=r"burst\.distinct_callers = 0: expected a number above 0"):
        repo.set_setting("burst", {"distinct_callers": 0})
    with pytest.raises(EntryError, match="default_mode = 'maybe'"):
        repo.set_setting("default_mode", "maybe")
    rule = repo.add_rule("number_type", "reject:603", {"types": ["PREMIUM_RATE"]})
    repo.update_rule(rule.id, enabled=False)
    assert not next(r for r in repo.rules() if r.id == rule.id).enabled
    repo.set_setting("burst", {"distinct_callers": 8})
    assert repo.policy().burst.distinct_callers == 8
    assert repo.policy().burst.window_minutes == 10  # the rest of the table kept


def test_expired_entries_are_purged(service: ScreeningService) -> None:
    service.repo.add_entry("block", "0612345678", expires_at=NOW - timedelta(minutes=1))
    service.repo.add_entry("block", "0622222222", expires_at=NOW + timedelta(minutes=1))
    assert service.repo.purge_expired_entries(NOW) == 1
    assert [e.pattern for e in service.repo.entries(ListName.BLOCK)] == ["+33622222222"]


def test_line_states_and_known_callers(service: ScreeningService) -> None:
    service.set_line_state("home", "registered", None)
    service.set_line_state("home", "failed", "403 Forbidden")
    [state] = service.repo.line_states()
    assert (state.state, state.error) == ("failed", "403 Forbidden")
    service.mark_known("+33612345678")
    service.mark_known("+33612345678")
    known = service.repo.entries("allow", source="known")
    assert [e.pattern for e in known] == ["+33612345678"]


def test_voicemail_space(service: ScreeningService, settings: Settings) -> None:
    who = service.caller("0612345678")
    call_id = service.record_call(who, service.screen(who, NOW), at=NOW)
    path = settings.voicemail_dir / "a.wav"
    service.save_voicemail(call_id, path, 3.0, 48_000, caller=who)
    assert service.voicemail_space_left() == 500 * 1024 * 1024 - 48_000
    [row] = service.repo.voicemails()
    assert row.path == "a.wav" and row.number == "+33612345678"


def test_times_come_back_aware_utc(service: ScreeningService) -> None:
    who = service.caller("0612345678")
    paris_noon = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).astimezone()
    service.record_call(who, service.screen(who, paris_noon), at=paris_noon)
    [row] = service.repo.calls()
    assert row.at == paris_noon and row.at.tzinfo is UTC


def test_unknown_call_timeline_sees_calls_logged_elsewhere(settings: Settings) -> None:
    """The in-memory timeline is topped up by row id, so another writer's calls count too."""
    gateway = open_service(settings)
    other = open_service(settings)  # e.g. `ringfence replay --record` in another process
    first = gateway.caller("0611000000")
    assert gateway.screen(first, NOW).action.is_pass  # loads the (empty) timeline
    for i in range(4):
        who = other.caller(f"061100000{i + 1}")
        at = NOW + timedelta(seconds=i)
        other.record_call(who, other.screen(who, at), at=at)
    decision = gateway.screen(gateway.caller("0622000000"), NOW + timedelta(seconds=10))
    assert decision.step == "burst"  # 4 logged elsewhere + this one = 5 distinct strangers
    # A window that moves back in time (a replay) reloads instead of trusting the cache.
    assert gateway.screen(gateway.caller("0622000000"), NOW - timedelta(hours=3)).action.is_pass
