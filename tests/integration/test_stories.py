"""The three stories Ringfence must win, replayed through the real service and database."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from gateway.screening import ActionKind
from gateway.store.calls import CallFilter
from tests.helpers import Services

pytestmark = pytest.mark.clock

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # a Tuesday, 10:00 in Paris


def call(service: Services, number: str, at: datetime, name: str = "") -> str:
    """Screen and log one call as the gateway would; return the action."""
    who = service.screener.caller(number, name)
    decision = service.screener.screen(who, at)
    service.book.record_call(who, decision, at=at, line="home")
    return str(decision.action)


def stranger(rng: random.Random) -> str:
    return f"06{rng.randrange(10, 39)}{rng.randrange(10**6):06d}"  # assigned mobile blocks


def test_spoof_victim_family_rings_strangers_hear_we_did_not_call_you(
    service: Services,
) -> None:
    """112 strangers call back in an hour; the family gets through every time."""
    rng = random.Random(112)
    family = ["06 11 11 11 11", "06 22 22 22 22", "01 45 67 89 10"]
    for number in family:
        service.store.entries.add("allow", number, label="family")
    outcomes: dict[str, list[str]] = {"family": [], "stranger": []}
    for i in range(112):
        at = START + timedelta(seconds=i * 32)
        outcomes["stranger"].append(call(service, stranger(rng), at))
        if i % 15 == 7:
            outcomes["family"].append(call(service, family[i % 3], at + timedelta(seconds=5)))
    assert outcomes["family"] and all(a == "pass" for a in outcomes["family"])
    # The first four strangers ring (nothing tells them apart yet); from the fifth, burst mode
    # sends every stranger to the spoof-shield message and voicemail.
    assert outcomes["stranger"][:4] == ["pass"] * 4
    assert set(outcomes["stranger"][4:]) == {"voicemail:spoof_shield"}
    [latest] = service.store.calls.recent(CallFilter(action="voicemail"), limit=1)
    assert "burst mode since 10:02" in latest.reason and latest.burst
    # An hour after the storm, burst mode is over and a new stranger rings again.
    after = START + timedelta(seconds=112 * 32) + timedelta(minutes=71)
    assert call(service, stranger(rng), after) == "pass"


def test_published_number_clients_old_and_new_still_reach_him(service: Services) -> None:
    """Hundreds of fans; old clients ring, new clients reach the voicemail, none is rejected."""
    rng = random.Random(2026)
    old_clients = [f"06 30 00 00 {i:02d}" for i in range(10)]
    for number in old_clients:
        service.store.entries.add("allow", number, label="client", source="contact")
    # A client he answered last week is a known caller (CANCEL with cause=200).
    service.book.mark_known("+33640000001")
    new_clients = [f"06 50 00 00 {i:02d}" for i in range(5)]
    fan_rang = 0
    client_actions: list[str] = []
    new_client_actions: list[str] = []
    for i in range(400):
        at = START + timedelta(seconds=i * 20)
        fan = stranger(rng)
        action = call(service, fan, at)
        fan_rang += action == "pass"
        assert ActionKind(action.split(":")[0]) in (ActionKind.PASS, ActionKind.VOICEMAIL)
        if i % 25 == 3:
            client_actions.append(call(service, old_clients[i % 10], at + timedelta(seconds=3)))
            client_actions.append(call(service, "+33640000001", at + timedelta(seconds=4)))
        if i % 80 == 40:
            new_client = new_clients[i // 80]
            new_client_actions.append(call(service, new_client, at + timedelta(seconds=6)))
    assert all(a == "pass" for a in client_actions)
    # New clients are unknown like fans: they are never rejected, they leave a message.
    assert new_client_actions and all(a.startswith("voicemail") for a in new_client_actions)
    assert fan_rang <= 4  # the phone stopped ringing for fans after the fifth
    # The owner permits a new client's next call from the voicemail list: it rings.
    service.store.entries.add("allow", new_clients[0], once=True)
    later = START + timedelta(seconds=400 * 20 + 60)
    assert call(service, new_clients[0], later) == "pass"


def test_robocalls_from_reserved_ranges_never_ring_but_0937_does(service: Services) -> None:
    at = START + timedelta(hours=4)  # Tuesday 14:00 Paris: even during legal hours
    for number in ("01 62 00 00 01", "02 70 00 00 02", "09 48 00 00 03", "09 47 51 23 45"):
        assert call(service, number, at) == "reject:603", number
    for number in ("09 37 00 00 01", "09 38 00 00 02", "09 39 00 00 03"):
        assert call(service, number, at) == "pass", number
