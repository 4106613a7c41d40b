"""The repository and service on a real SQLite file (WAL), as the gateway and UI use them."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, exc, text

from gateway.config import Settings
from gateway.screening import ListName
from gateway.store import EntryError
from gateway.store.db import (
    SchemaError,
    _alembic_config,
    check_schema,
    current_revision,
    head_revision,
    upgrade,
)
from gateway.store.screening import _OWN_CALL_TIMES
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services


def test_schema_is_migrated_and_in_wal_mode(service: Services) -> None:
    assert current_revision(service.db.engine) == head_revision()
    with service.db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    check_schema(service.db.engine)


def test_a_newer_schema_is_refused(service: Services) -> None:
    with service.db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="newer than this Ringfence"):
        check_schema(service.db.engine)


def test_defaults_are_seeded_once(service: Services, settings: Settings) -> None:
    kinds = [r.kind.value for r in service.store.rules.all()]
    assert "telemarketing" in kinds and "withheld" in kinds
    again = Services.open(settings)
    assert len(again.store.rules.all()) == len(kinds)


def test_no_telemarketing_preset_outside_france(make_settings) -> None:  # type: ignore[no-untyped-def]
    svc = Services.open(make_settings('home_region = "BE"\ntimezone = "Europe/Brussels"'))
    assert "telemarketing" not in [r.kind.value for r in svc.store.rules.all()]


def test_entries_round_trip_and_errors(service: Services) -> None:
    store = service.store
    exact = store.entries.add("block", "06 12 34 56 78", label="pest",
                           expires_at=NOW + timedelta(days=1))
    assert exact.pattern == "+33612345678" and exact.kind.value == "exact"
    assert exact.expires_at == NOW + timedelta(days=1)
    assert store.entries.add("block", "0162*").kind.value == "prefix"
    assert store.entries.add("block", "+33 9 ?? ?? ?? ?1", confirm=True).kind.value == "glob"
    assert store.entries.add("block", r"re:^\+4420.*").kind.value == "regex"
    # Adding the same number again updates instead of duplicating.
    store.entries.add("block", "+33612345678", label="new label", action="reject:404")
    assert store.entries.count("block") == 4
    assert store.entries.find("block", search="new label")[0].action is not None
    with pytest.raises(EntryError, match="neither a phone number nor a pattern"):
        store.entries.add("block", "hello")
    with pytest.raises(EntryError, match="not a valid regular expression"):
        store.entries.add("block", "re:(")
    with pytest.raises(EntryError, match="allow entries take no action"):
        store.entries.add("allow", "0611111111", action="reject:603")
    assert store.entries.remove_pattern("block", "0612345678")
    assert not store.entries.remove_pattern("block", "0612345678")


def test_candidates_use_index_and_cached_patterns(service: Services) -> None:
    store = service.store
    store.entries.add("block", "0612345678")
    store.entries.add("block", "061*", confirm=True)
    store.entries.add("block", "+44*", confirm=True)
    store.entries.add("block", "06 ?? ?? ?? 78")
    store.entries.add("allow", "re:.*78")
    who = service.screener.caller("0612345678")
    found = {e.pattern for e in store.screening.candidate_entries(who)}
    assert {"+33612345678", "+3361", "+336??????78", ".*78"} <= found
    assert "+44" not in found


def test_a_change_from_another_process_applies_to_the_next_call(settings: Settings) -> None:
    gateway = Services.open(settings)
    web = Services.open(settings)  # another connection pool, as the web UI process has
    who = gateway.screener.caller("0699887766")
    assert gateway.screener.screen(who, NOW).action.is_pass
    web.store.entries.add("block", "06 99 88 ?? ??")  # a glob: served from the gateway's cache
    assert str(gateway.screener.screen(who, NOW).action) == "reject:603"
    web.store.runtime.set("paused_until", (NOW + timedelta(hours=1)).isoformat())
    assert gateway.screener.screen(who, NOW).step == "pause"


def test_permit_next_call_is_used_up(service: Services) -> None:
    service.store.entries.add("block", "0612345678")
    service.store.entries.add("allow", "0612345678", once=True)
    who = service.screener.caller("0612345678")
    assert service.screener.evaluate(who, NOW).action.is_pass  # a dry run uses up nothing
    first = service.screener.screen(who, NOW)  # a real call: the permission is used up now
    assert first.action.is_pass and first.step == "allow"
    second = service.screener.screen(who, NOW)
    assert str(second.action) == "reject:603"
    assert service.store.entries.pending_permits() == []


def test_history_feeds_the_repeat_limit(service: Services) -> None:
    who = service.screener.caller("0612345678")
    actions = []
    for minute in range(5):
        at = NOW + timedelta(minutes=minute)
        decision = service.screener.screen(who, at)
        service.book.record_call(who, decision, at=at, sip_call_id=f"c{minute}")
        actions.append(str(decision.action))
    assert actions[:3] == ["pass"] * 3
    assert actions[3] == "voicemail"  # the default limit: 3 calls in 10 minutes
    rows = service.store.calls.recent(limit=10)  # newest first
    assert rows[1].reason.startswith("+33612345678 already called 3 times")
    assert rows[0].screen_ms is not None


def test_screening_fails_open(service: Services, monkeypatch: pytest.MonkeyPatch,
                              caplog: pytest.LogCaptureFixture) -> None:
    service.store.entries.add("block", "0612345678")

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(service.store.screening, "rules_for", broken)
    decision = service.screener.screen(service.screener.caller("0612345678"), NOW)
    assert decision.action.is_pass and decision.step == "error"
    assert "screening failed" in caplog.text and "disk on fire" in caplog.text


def test_import_reports_bad_lines_and_keeps_good_ones(service: Services) -> None:
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
    report = service.store.list_files.import_csv(data, "block")
    assert report.added == 3 and report.duplicates == 1
    assert [(line, why.split(":")[0]) for line, _, why in report.rejected] == [
        (3, "not a number is neither a phone number nor a pattern"),
        (8, "( is not a valid regular expression"),
    ]
    out = io.StringIO()
    assert service.store.list_files.export_csv("block", out) == 3
    exported = out.getvalue().splitlines()
    assert exported[0] == "pattern,label,kind,action,expires_at,once"
    assert "'+33162*,telemarketing,prefix,,," in exported  # neutralised (docs/security.md)
    # What we export imports again as the same entries.
    service.store.list_files.replace_source("allow", "subscription:x", [])
    again = service.store.list_files.import_csv(io.StringIO(out.getvalue()), "block")
    assert again.added == 0 and again.duplicates == 3


def test_replace_source_is_atomic_and_spares_manual_entries(service: Services) -> None:
    store = service.store
    store.entries.add("block", "0611111111", label="mine")
    store.list_files.replace_source("block", "subscription:1",
                                    [("0622222222", "a"), ("0633333333", "b")])
    store.list_files.replace_source("block", "subscription:1", [("0644444444", "c")])
    patterns = {e.pattern: e.source for e in store.entries.find("block")}
    assert patterns == {"+33611111111": "manual", "+33644444444": "subscription:1"}


def test_rules_and_settings_validate_with_field_names(service: Services) -> None:
    store = service.store
    with pytest.raises(EntryError, match="types: 'LANDLINE' is not one of"):
        store.rules.add("number_type", "reject:603", {"types": ["LANDLINE"]})
    with pytest.raises(EntryError, match="regions: 'XX' is not an ISO country code"):
        store.rules.add("country", "voicemail", {"regions": ["XX"]})
    with pytest.raises(EntryError, match="start = '25:00'"):
        store.rules.add("quiet_hours", "voicemail", {"start": "25:00"})
    with pytest.raises(EntryError, match=r"burst\.distinct_callers = 0: expected a number above 0"):
        store.runtime.set("burst", {"distinct_callers": 0})
    with pytest.raises(EntryError, match="default_mode = 'maybe'"):
        store.runtime.set("default_mode", "maybe")
    rule = store.rules.add("number_type", "reject:603", {"types": ["PREMIUM_RATE"]})
    store.rules.update(rule.id, enabled=False)
    assert not next(r for r in store.rules.all() if r.id == rule.id).enabled
    store.runtime.set("burst", {"distinct_callers": 8})
    assert store.screening.policy().burst.distinct_callers == 8
    assert store.screening.policy().burst.window_minutes == 10  # the rest of the table kept


def test_expired_entries_are_purged(service: Services) -> None:
    service.store.entries.add("block", "0612345678", expires_at=NOW - timedelta(minutes=1))
    service.store.entries.add("block", "0622222222", expires_at=NOW + timedelta(minutes=1))
    assert service.store.entries.purge_expired(NOW) == 1
    assert [e.pattern for e in service.store.entries.find(ListName.BLOCK)] == ["+33622222222"]


def test_line_states_and_known_callers(service: Services) -> None:
    service.book.set_line_state("home", "registered", None)
    service.book.set_line_state("home", "failed", "403 Forbidden")
    [state] = service.store.lines.all()
    assert (state.state, state.error) == ("failed", "403 Forbidden")
    service.book.mark_known("+33612345678")
    service.book.mark_known("+33612345678")
    known = service.store.entries.find("allow", source="known")
    assert [e.pattern for e in known] == ["+33612345678"]


def test_voicemail_space(service: Services, settings: Settings) -> None:
    who = service.screener.caller("0612345678")
    call_id = service.book.record_call(who, service.screener.screen(who, NOW), at=NOW)
    path = settings.voicemail_dir / "a.wav"
    service.book.save_voicemail(call_id, path, 3.0, 48_000, caller=who)
    assert service.book.voicemail_space_left() == 500 * 1024 * 1024 - 48_000
    [row] = service.store.voicemails.recent()
    assert row.path == "a.wav" and row.number == "+33612345678"


def test_times_come_back_aware_utc(service: Services) -> None:
    who = service.screener.caller("0612345678")
    paris_noon = datetime(2026, 7, 1, 12, 0, tzinfo=UTC).astimezone()
    service.book.record_call(who, service.screener.screen(who, paris_noon), at=paris_noon)
    [row] = service.store.calls.recent()
    assert row.at == paris_noon and row.at.tzinfo is UTC


def test_unknown_call_timeline_sees_calls_logged_elsewhere(settings: Settings) -> None:
    """The in-memory timeline is topped up by row id, so another writer's calls count too."""
    gateway = Services.open(settings)
    other = Services.open(settings)  # e.g. `ringfence replay --record` in another process
    first = gateway.screener.caller("0611000000")
    assert gateway.screener.screen(first, NOW).action.is_pass  # loads the (empty) timeline
    for i in range(4):
        who = other.screener.caller(f"061100000{i + 1}")
        at = NOW + timedelta(seconds=i)
        other.book.record_call(who, other.screener.screen(who, at), at=at)
    late = gateway.screener.caller("0622000000")
    decision = gateway.screener.screen(late, NOW + timedelta(seconds=10))
    assert decision.step == "burst"  # 4 logged elsewhere + this one = 5 distinct strangers
    # A window that moves back in time (a replay) reloads instead of trusting the cache.
    assert gateway.screener.screen(late, NOW - timedelta(hours=3)).action.is_pass


def test_migration_0004_keeps_old_reasons_and_adds_the_codes(tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import create_engine, text

    from gateway.store.db import _alembic_config, upgrade

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(_alembic_config(engine), "0002")  # a database from before reason codes
    with engine.begin() as conn:
        conn.execute(text(
            "INSERT INTO calls (at, caller_kind, display_name, raw_from, action, reason, step, "
            "unknown, burst) VALUES ('2026-11-24 14:00:00', 'number', '', '', 'pass', "
            "'no rule matched', 'default', 1, 0)"))
    upgrade(engine)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT reason, reason_code, reason_params FROM calls")).one()
    assert tuple(row) == ("no rule matched", None, None)  # shown as stored
    engine.dispose()


def test_migration_0007_leaves_refused_calls_out_of_the_number_index(tmp_path: Path) -> None:
    """A flood of refused calls from random numbers must not dirty a page of the number
    index per row (issue 10: 6-12 KB written per call): those rows are not in it."""
    from alembic import command  # as above: Alembic only where a migration runs

    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(_alembic_config(engine), "0005")
    with engine.begin() as conn:
        for step in ("rule", "block", "default", "allow"):
            conn.execute(text(
                "INSERT INTO calls (at, number, caller_kind, display_name, raw_from, action, "
                "reason, step, unknown, burst) VALUES ('2026-11-24 14:00:00', '+33162000001', "
                "'number', '', '', 'pass', '', :step, 1, 0)"), {"step": step})
    upgrade(engine)
    with engine.connect() as conn:
        definition = conn.execute(text(
            "SELECT sql FROM sqlite_master WHERE name = 'ix_calls_number_at'")).scalar()
        # The index's own rows: dbstat is not in every build, a covering count is.
        indexed = conn.execute(text(
            "SELECT count(*) FROM calls INDEXED BY ix_calls_number_at "
            "WHERE number = '+33162000001' AND step NOT IN ('block', 'rule')")).scalar()
        sql = str(_OWN_CALL_TIMES.compile(conn)).replace("?", "'x'")
        plan = " ".join(str(r[-1]) for r in conn.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        kinds = conn.execute(text("EXPLAIN QUERY PLAN SELECT id FROM list_entries "
                                  "WHERE kind IN ('glob', 'regex')")).all()
    assert str(definition).endswith("WHERE step NOT IN ('block', 'rule')")
    assert indexed == 2  # the unknown caller's and the allowed caller's calls
    assert "USING INDEX ix_calls_number_at" in plan  # the screener's fallback still uses it
    assert "ix_list_entries_kind_list" in str(kinds)
    engine.dispose()


def test_without_the_database_the_caches_decide(service: Services,
                                                monkeypatch: pytest.MonkeyPatch,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """A database that does not answer: the cached policy, patterns and allow list decide
    (a 0162 telemarketer is refused, an allowed 0162 number rings); nothing cached: ring."""
    store, screener = service.store, service.screener
    store.entries.add("allow", "0162000001")
    screener.warm(NOW)

    def down(*args: object, **kwargs: object) -> None:
        raise exc.OperationalError("SELECT 1", {}, OSError("connection refused"))

    monkeypatch.setattr(store.db.engine, "connect", down)
    monkeypatch.setattr(store.db.engine, "raw_connection", down)
    # The screening reads' own connection (one per thread on a SQLite file) fails the same way.
    monkeypatch.setattr(store.screening._driver, "_own_connection", down)
    refused = screener.screen(screener.caller("0162000002"), NOW)
    allowed = screener.screen(screener.caller("0162000001"), NOW)
    stranger = screener.screen(screener.caller("0612345678"), NOW)
    assert (str(refused.action), refused.step) == ("reject:603", "rule")
    assert allowed.action.is_pass and allowed.step == "allow"
    assert stranger.action.is_pass and stranger.step == "default"
    assert "screening failed" not in caplog.text
    assert "screening from the cached policy" in caplog.text
    cold = Services.open(service.settings)  # a process that never read the database
    try:
        monkeypatch.setattr(cold.store.db.engine, "connect", down)
        monkeypatch.setattr(cold.store.db.engine, "raw_connection", down)
        monkeypatch.setattr(cold.store.screening._driver, "_own_connection", down)
        assert cold.screener.screen(cold.screener.caller("0162000002"), NOW).step == "error"
    finally:
        cold.store.close()
