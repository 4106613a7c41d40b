"""Run-time settings and step-4 rules on SQLite: validation that names the field the owner must
fix, the rules version every change bumps, the web UI's private keys, and seeding once."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from gateway.config import Settings
from gateway.screening import RuleKind
from gateway.screening.decide import Step
from gateway.store import EntryError, Store, open_database
from gateway.store.models import RuleRow
from gateway.store.settings import DEFAULT_SETTINGS, validate_setting
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services, caller


@pytest.fixture
def store(service: Services) -> Store:
    return service.store


def version(store: Store) -> int:
    return store.runtime.version()


# --------------------------------------------------------------------------- RuntimeSettings


def test_an_unset_setting_reads_as_its_default(store: Store) -> None:
    assert store.runtime.get("challenge_digit") == "5"
    assert store.runtime.get("burst") == DEFAULT_SETTINGS["burst"]
    assert store.runtime.get("no_such_setting") is None


def test_set_stores_the_normalised_value(store: Store) -> None:
    store.runtime.set("block_action", "REJECT:607")
    store.runtime.set("digest_time", "8:05")
    assert store.runtime.get("block_action") == "reject:607"
    assert store.runtime.get("digest_time") == "08:05"


def test_a_partial_table_is_merged_with_the_defaults(store: Store) -> None:
    store.runtime.set("repeat", {"max_calls": 5})
    assert store.runtime.get("repeat") == {**DEFAULT_SETTINGS["repeat"], "max_calls": 5}


def test_all_fills_in_defaults_and_hides_other_keys(store: Store) -> None:
    store.runtime.set("default_mode", "greylist")
    store.runtime.set_private("web_password_hash", "secret")
    everything = store.runtime.all()
    assert set(everything) == set(DEFAULT_SETTINGS)
    assert everything["default_mode"] == "greylist"
    assert everything["challenge_digit"] == "5"


def test_every_setting_change_bumps_the_version(store: Store) -> None:
    before = version(store)
    store.runtime.set("challenge_digit", "7")
    middle = version(store)
    store.runtime.set("challenge_digit", "7")  # the same value again still counts
    assert before < middle < version(store)


@pytest.mark.parametrize(("key", "value", "field"), [
    ("colour", "red", "colour"),
    ("block_action", "explode", "block_action"),
    ("block_action", "reject:999", "block_action"),
    ("default_mode", "maybe", "default_mode"),
    ("digest_time", "25:00", "digest_time"),
    ("digest_time", "8:5", "digest_time"),
    ("digest_time", "noon", "digest_time"),
    ("challenge_digit", "55", "challenge_digit"),
    ("challenge_digit", "a", "challenge_digit"),
    ("paused_until", "tomorrow", "paused_until"),
    ("burst", "often", "burst"),
    ("burst", {"window_minutes": 0}, "burst.window_minutes"),
    ("burst", {"window_minutes": -5}, "burst.window_minutes"),
    ("burst", {"window_minutes": "ten"}, "burst.window_minutes"),
    ("burst", {"distinct_callers": True}, "burst.distinct_callers"),
    ("burst", {"enabled": "yes"}, "burst.enabled"),
    ("burst", {"action": "explode"}, "burst.action"),
    ("burst", {"colour": "red"}, "burst.colour"),
    ("repeat", {"max_calls": 0}, "repeat.max_calls"),
    ("greylist", {"min_minutes": 0}, "greylist.min_minutes"),
])
def test_validate_setting_names_the_field(key: str, value: Any, field: str) -> None:
    with pytest.raises(EntryError) as caught:
        validate_setting(key, value)
    assert caught.value.field == field
    assert key in str(caught.value)


def test_a_refused_setting_writes_nothing(store: Store) -> None:
    before = version(store)
    with pytest.raises(EntryError):
        store.runtime.set("burst", {"window_minutes": 0})
    assert store.runtime.get("burst") == DEFAULT_SETTINGS["burst"]
    assert version(store) == before


@pytest.mark.parametrize(("key", "value", "stored"), [
    ("paused_until", None, None),
    ("paused_until", "2026-11-24T16:00:00+00:00", "2026-11-24T16:00:00+00:00"),
    ("digest_time", "", None),
    ("challenge_digit", 7, "7"),
    ("challenge_digit", "#", "#"),
    ("greylist", {"min_minutes": 0.5}, {**DEFAULT_SETTINGS["greylist"], "min_minutes": 0.5}),
])
def test_validate_setting_accepts_and_normalises(key: str, value: Any, stored: Any) -> None:
    assert validate_setting(key, value) == stored


def test_a_pause_without_a_time_zone_is_refused_or_understood(service: Services) -> None:
    service.store.entries.add("block", "0612345678")
    try:
        service.store.runtime.set("paused_until", "2026-11-24T16:00")
    except EntryError as exc:
        assert exc.field == "paused_until"
        return
    assert service.screener.screen(caller("0612345678"), NOW).step is not Step.ERROR


def test_the_screener_sees_a_setting_change_on_the_next_call(service: Services) -> None:
    service.store.entries.add("block", "0612345678")
    who = caller("0612345678")
    assert str(service.screener.screen(who, NOW).action) == "reject:603"
    service.store.runtime.set("block_action", "announce:sit")
    assert str(service.screener.screen(who, NOW).action) == "announce:sit"
    service.store.runtime.set("paused_until", (NOW + timedelta(hours=1)).isoformat())
    assert service.screener.screen(who, NOW).step is Step.PAUSE


def test_private_keys_round_trip_without_bumping_the_version(store: Store) -> None:
    assert store.runtime.get_private("web_password_hash") is None
    before = version(store)
    store.runtime.set_private("web_password_hash", "hash-1")
    store.runtime.set_private("web_password_hash", "hash-2")
    assert store.runtime.get_private("web_password_hash") == "hash-2"
    assert version(store) == before


@pytest.mark.parametrize("key", ["challenge_digit", "rules_version", "seeded", "webpassword"])
def test_private_access_refuses_other_keys(store: Store, key: str) -> None:
    with pytest.raises(KeyError):
        store.runtime.get_private(key)
    with pytest.raises(KeyError):
        store.runtime.set_private(key, "x")
    assert store.runtime.get("challenge_digit") == "5"


# --------------------------------------------------------------------------- RuleStore


def test_add_returns_the_checked_rule(store: Store) -> None:
    rule = store.rules.add("country", "VOICEMAIL", {"regions": ["gb"]}, priority=5, label="uk")
    assert (rule.kind, str(rule.action), rule.priority, rule.label) == (
        RuleKind.COUNTRY, "voicemail", 5, "uk")
    assert rule.params == {"regions": ["GB"], "mode": "block"}  # normalised, default filled
    assert rule in store.rules.all()


def test_rules_come_in_priority_order(store: Store) -> None:
    late = store.rules.add("withheld", "reject:603", priority=1000)
    first = store.rules.add("invalid", "reject:603", priority=0)
    ids = [r.id for r in store.rules.all()]
    assert ids[0] == first.id and ids[-1] == late.id


@pytest.mark.parametrize(("kind", "action", "params", "field"), [
    ("colour", "voicemail", {}, "kind"),
    ("withheld", "explode", {}, "action"),
    ("withheld", "reject:999", {}, "action"),
    ("number_type", "reject:603", {"types": []}, "types"),
    ("number_type", "reject:603", {"types": ["LANDLINE"]}, "types"),
    ("country", "voicemail", {"regions": ["XX"]}, "regions"),
    ("country", "voicemail", {"regions": ["GB"], "mode": "sometimes"}, "mode"),
    ("telemarketing", "reject:603", {"country": "ZZ"}, "country"),
    ("telemarketing", "reject:603", {"outside_hours_only": "no"}, "outside_hours_only"),
    ("quiet_hours", "voicemail", {"start": "25:00"}, "start"),
    ("quiet_hours", "voicemail", {"end": "7h"}, "end"),
    ("quiet_hours", "voicemail", {"days": [7]}, "days"),
])
def test_rule_errors_name_their_field(store: Store, kind: str, action: str,
                                      params: dict[str, Any], field: str) -> None:
    before = (len(store.rules.all()), version(store))
    with pytest.raises(EntryError) as caught:
        store.rules.add(kind, action, params)
    assert caught.value.field == field
    assert (len(store.rules.all()), version(store)) == before


def test_update_changes_fields_and_merges_params(store: Store) -> None:
    rule = store.rules.add("quiet_hours", "voicemail", {"start": "21:00"})
    updated = store.rules.update(rule.id, action="reject:486", params={"end": "08:00"},
                                 enabled=False, priority=3, label="evening")
    assert str(updated.action) == "reject:486"
    assert (updated.params["start"], updated.params["end"]) == ("21:00", "08:00")
    assert (updated.enabled, updated.priority, updated.label) == (False, 3, "evening")
    assert next(r for r in store.rules.all() if r.id == rule.id) == updated


@pytest.mark.parametrize(("changes", "field"), [
    ({"action": "explode"}, "action"),
    ({"params": {"days": "weekends"}}, "days"),
    ({"enabled": False, "colour": "red"}, "colour"),
])
def test_a_refused_update_changes_nothing(store: Store, changes: dict[str, Any],
                                          field: str) -> None:
    rule = store.rules.add("quiet_hours", "voicemail")
    before = version(store)
    with pytest.raises(EntryError) as caught:
        store.rules.update(rule.id, **changes)
    assert caught.value.field == field
    assert next(r for r in store.rules.all() if r.id == rule.id) == rule
    assert version(store) == before


def test_updating_a_missing_rule_names_the_id(store: Store) -> None:
    with pytest.raises(EntryError) as caught:
        store.rules.update(99_999, enabled=False)
    assert caught.value.field == "id"


def test_delete(store: Store) -> None:
    rule = store.rules.add("withheld", "reject:603")
    assert store.rules.delete(rule.id)
    assert not store.rules.delete(rule.id)
    assert rule.id not in [r.id for r in store.rules.all()]


def test_every_rule_change_bumps_the_version(store: Store) -> None:
    seen = [version(store)]
    rule = store.rules.add("withheld", "reject:603")
    seen.append(version(store))
    store.rules.update(rule.id, enabled=False)
    seen.append(version(store))
    store.rules.delete(rule.id)
    seen.append(version(store))
    assert seen == sorted(set(seen))


def test_note_used_counts_a_rule_hit_without_bumping_the_version(store: Store) -> None:
    rule = store.rules.add("withheld", "reject:603")
    before = version(store)
    store.rules.note_used(rule.id)
    store.rules.note_used(rule.id)
    with store.db.session() as s:
        row = s.get(RuleRow, rule.id)
        assert row is not None and row.hits == 2
    assert version(store) == before


def test_the_screener_sees_a_rule_change_on_the_next_call(service: Services) -> None:
    withheld = caller("anonymous", privacy="id")
    rule = next(r for r in service.store.rules.all() if r.kind is RuleKind.WITHHELD)
    assert str(service.screener.screen(withheld, NOW).action) == "voicemail"
    service.store.rules.update(rule.id, action="reject:433")
    assert str(service.screener.screen(withheld, NOW).action) == "reject:433"
    service.store.rules.update(rule.id, enabled=False)
    assert service.screener.screen(withheld, NOW).step is not Step.RULE


def test_default_rules_are_seeded_once(settings: Settings) -> None:
    store = Store.for_settings(open_database(settings, upgrade=True), settings)
    try:
        assert store.rules.all() == []
        assert store.rules.seed_defaults()
        seeded = store.rules.all()
        assert not store.rules.seed_defaults()
        assert store.rules.all() == seeded
        kinds = {r.kind for r in seeded}
        assert {RuleKind.WITHHELD, RuleKind.INVALID, RuleKind.TELEMARKETING} <= kinds
    finally:
        store.close()


def test_seeding_is_not_repeated_after_the_owner_deleted_every_rule(store: Store) -> None:
    for rule in store.rules.all():
        store.rules.delete(rule.id)
    assert not store.rules.seed_defaults()
    assert store.rules.all() == []


def test_no_telemarketing_preset_where_no_ranges_are_known(
    make_settings: Any,
) -> None:
    settings = make_settings('home_region = "BE"\ntimezone = "Europe/Brussels"')
    store = Store.for_settings(open_database(settings, upgrade=True), settings)
    try:
        store.rules.seed_defaults()
        kinds = {r.kind for r in store.rules.all()}
        assert RuleKind.TELEMARKETING not in kinds
        country = next(r for r in store.rules.all() if r.kind is RuleKind.COUNTRY)
        assert country.params["regions"] == ["BE"]
    finally:
        store.close()
