"""Call slots and bounded work (issue 10, items 1-2): a silent ring holds no media slot and no
thread, a full house never turns a keep-away decision into a ring, a full work queue sheds
visibly, and every refused call is logged."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.call import carry_out, handle
from gateway.config import Settings
from gateway.screening.rules import Action, ActionKind, ListName
from gateway.sip.message import SipRequest, SipResponse
from gateway.sip.ua import Call, UserAgent
from gateway.sip.workers import LineBudget, LoadCounters, WorkerPool
from tests.helpers import Services
from tests.peers import wait_until
from tests.peers.baresip import Baresip
from tests.peers.fakes import FakeService, SilentMedia
from tests.peers.fixtures import GatewayFactory, line_for
from tests.peers.kamailio import Kamailio
from tests.peers.raw import RawPeer


class HeldMedia(SilentMedia):
    """Plays until closed, so an answered call keeps its media slot while the test works."""

    def play(self, path: Path) -> None:
        self.played.append(path)
        self.closed.wait(30)


def final(peer: RawPeer, call_id: str, timeout: float = 10.0) -> SipResponse:
    """The first final response to the INVITE `call_id`."""
    message = peer.expect(
        lambda m: isinstance(m, SipResponse) and m.status >= 200 and m.call_id == call_id
        and m.cseq()[1] == "INVITE", timeout, f"a final response to {call_id}")
    assert isinstance(message, SipResponse)
    return message


@pytest.fixture
def peers() -> Iterator[list[RawPeer]]:
    made: list[RawPeer] = []
    yield made
    for peer in made:
        peer.close()


def test_silent_rings_take_no_media_slot_and_a_full_house_refuses_with_600(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
) -> None:
    gateway = make_gateway(max_calls=1, media_factory=HeldMedia)
    peer = RawPeer(gateway.uas[0].port)
    peers.append(peer)
    rings = [peer.invite(from_tag=f"ring{n}", user=f"+3361234567{n}") for n in range(6)]
    for invite in rings:
        peer.send(invite)
    wait_until(lambda: gateway.capacity.ringing.active == 6, 10, "six calls ringing")
    # More calls ring than there are media slots, and none holds a slot or a thread.
    assert gateway.capacity.media.active == 0
    assert gateway.work.spawned() == 0
    assert not [t for t in threading.enumerate()
                if t.name.startswith("call-") and not t.name.startswith("call-work-")]

    fake_service.action = Action(ActionKind.ANNOUNCE, prompt="not_in_service")
    answered = peer.invite(from_tag="media1")
    peer.send(answered)
    ok = final(peer, answered.call_id)
    assert ok.status == 200
    peer.send(RawPeer.follow_up(answered, "ACK", to=ok.get("To"), new_branch=True))
    wait_until(lambda: gateway.capacity.media.active == 1, 10, "the answered call's slot")
    refused = peer.invite(from_tag="media2", user="+33698765432")
    peer.send(refused)
    busy = final(peer, refused.call_id)
    assert (busy.status, busy.reason) == (600, "Busy Everywhere")  # a 6xx: the fork stops
    peer.send(RawPeer.follow_up(refused, "ACK", to=busy.get("To")))

    logged = {c.sip_call_id: c for c in fake_service.wait_finished(1)}
    assert logged[refused.call_id].outcome == (
        f"refused 600: all 1 media slots busy ({fake_service.action})")
    assert gateway.load.snapshot()["refused_no_media_slot"] == 1

    for invite in rings:  # the rings were parked, not lost: each CANCEL ends its call
        peer.send(RawPeer.follow_up(invite, "CANCEL"))
        assert final(peer, invite.call_id).status == 487
    peer.send(RawPeer.follow_up(answered, "BYE", to=ok.get("To"), new_branch=True))
    calls = fake_service.wait_finished(8)
    outcomes = sorted(c.outcome or "" for c in calls if c.sip_call_id in
                      {i.call_id for i in rings})
    assert outcomes == ["passed: cancelled by caller"] * 6
    wait_until(lambda: gateway.capacity.ringing.active == 0 and gateway.capacity.media.active
               == 0, 10, "every slot back")


def test_a_ring_nobody_ends_times_out_from_the_timer_thread(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(carry_out, "RING_LIMIT_SECONDS", 0.2)
    gateway = make_gateway()
    peer = RawPeer(gateway.uas[0].port)
    peers.append(peer)
    invite = peer.invite()
    peer.send(invite)
    assert final(peer, invite.call_id).status == 480
    assert fake_service.wait_finished()[0].outcome == "passed: nobody answered"
    assert gateway.capacity.ringing.active == 0


def test_stopping_the_gateway_logs_how_each_ring_ended(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
) -> None:
    gateway = make_gateway()
    peer = RawPeer(gateway.uas[0].port)
    peers.append(peer)
    invite = peer.invite()
    peer.send(invite)
    wait_until(lambda: gateway.capacity.ringing.active == 1, 10, "the call to ring")
    gateway.stop()
    assert final(peer, invite.call_id).status == 480
    assert fake_service.wait_finished()[0].outcome == "passed: ended by the gateway"


def test_a_full_work_queue_sheds_with_503_and_the_receive_thread_never_waits(
    peers: list[RawPeer],
) -> None:
    """One worker, a queue of one: the third INVITE is shed, yet all three get 100 Trying."""
    release = threading.Event()
    busy = threading.Event()
    handled: list[str] = []

    def handler(call: Call) -> None:
        busy.set()
        release.wait(20)  # a screening that hangs: the worker is stuck, the UA must not be
        handled.append(call.call_id)
        call.reject(603, "Decline")

    work = WorkerPool(workers=1, queue_limit=1)
    counters = LoadCounters()
    ua = UserAgent("127.0.0.1", 0, call_handler=handler, work=work, counters=counters)
    work.start()
    ua.start()
    try:
        peer = RawPeer(ua.port)
        peers.append(peer)
        invites = [peer.invite(from_tag=f"f{n}") for n in range(3)]
        peer.send(invites[0])
        assert busy.wait(10)  # the only worker is stuck in the first call
        peer.send(invites[1])  # queued
        peer.send(invites[2])  # the queue is full: shed
        shed = final(peer, invites[2].call_id)
        assert shed.status == 503 and shed.get("Retry-After") == "5"
        assert counters.snapshot()["shed"] == 1 and counters.get("invites") == 3
        release.set()
        assert final(peer, invites[0].call_id).status == 603
        assert final(peer, invites[1].call_id).status == 603
        assert handled == [invites[0].call_id, invites[1].call_id]  # the shed call never ran
    finally:
        release.set()
        ua.end_calls()
        work.stop(2)
        ua.close()


def test_the_100_trying_of_every_invite_comes_before_any_screening(
    peers: list[RawPeer],
) -> None:
    """Screening blocked: every INVITE's first answer, 100 Trying, still comes at once."""
    release = threading.Event()
    work = WorkerPool(workers=1, queue_limit=100)

    def handler(call: Call) -> None:
        release.wait(20)
        call.reject(603, "Decline")

    ua = UserAgent("127.0.0.1", 0, call_handler=handler, work=work)
    work.start()
    ua.start()
    try:
        peer = RawPeer(ua.port)
        peers.append(peer)
        invites = [peer.invite(from_tag=f"t{n}") for n in range(20)]
        for invite in invites:
            peer.send(invite)
        trying = set()
        while len(trying) < len(invites):
            response = peer.expect_status(100)
            trying.add(response.call_id)
        assert trying == {i.call_id for i in invites}
    finally:
        release.set()
        ua.end_calls()
        work.stop(2)
        ua.close()


@pytest.mark.slow
def test_four_silent_callers_cannot_switch_screening_off(
    tmp_path: Path, make_gateway: GatewayFactory, make_kamailio: object,
    peers: list[RawPeer],
) -> None:
    """Issue 10, item 1, as a stranger would do it: four unknown callers ring through Kamailio
    and never cancel; a 0162 telemarketer must still get 603 and be logged, which makes the
    forking proxy cancel the owner's phone (baresip) instead of letting it ring."""
    settings = Settings(data_dir=tmp_path / "data", database=f"sqlite:///{tmp_path}/rf.db")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = Services.open(settings)
    kamailio: Kamailio = make_kamailio()  # type: ignore[operator]
    owner = Baresip(tmp_path / "owner", registrar_port=kamailio.port, user="home",
                    password="homepw", max_calls=8, register=True)
    try:
        owner.start()
        # The REGISTER_OK event may come before ctrl_tcp is up: read baresip's own line.
        wait_until(lambda: "200 OK" in owner.log_text(), 10, "the owner's phone to register")
        gateway = make_gateway(service=service, lines=(line_for(kamailio),))
        wait_until(lambda: any(r.state == "registered" for r in service.store.lines.all()),
                   10, "the gateway to register")
        caller = RawPeer(kamailio.port, bind_port=kamailio.trusted_port, user="home")
        peers.append(caller)
        strangers = [caller.invite(from_tag=f"s{n}", user=f"+3361234560{n}")
                     for n in range(4)]
        for invite in strangers:
            caller.send(invite)
        wait_until(lambda: gateway.capacity.ringing.active == 4, 15,
                   "the four strangers to ring at the gateway")
        for _ in strangers:
            owner.wait_event("CALL_INCOMING")
        assert gateway.capacity.media.active == 0  # ringing takes no media slot

        telemarketer = caller.invite(from_tag="tele", user="0162000000")
        caller.send(telemarketer)
        owner.wait_event("CALL_INCOMING")  # the fork reached the owner's phone too...
        declined = final(caller, telemarketer.call_id)
        assert declined.status == 603
        caller.send(ack_for(telemarketer, declined))
        owner.wait_event("CALL_CLOSED")  # ...and the 603 cancelled it

        def logged() -> bool:
            rows = service.store.calls.recent()
            return any(r.number == "+33162000000" and r.outcome for r in rows)

        wait_until(logged, 10, "the telemarketer's call in the log")
        row = next(r for r in service.store.calls.recent() if r.number == "+33162000000")
        assert (row.action, row.outcome) == ("reject:603", "rejected 603")
        assert gateway.capacity.ringing.active == 4  # the strangers still ring, harmlessly
        for invite in strangers:
            caller.send(RawPeer.follow_up(invite, "CANCEL"))
        wait_until(lambda: gateway.capacity.ringing.active == 0, 15, "the rings to end")
    finally:
        owner.stop()
        service.db.dispose()


def test_an_allowed_caller_still_rings_with_every_media_slot_taken(
    make_gateway: GatewayFactory, peers: list[RawPeer], tmp_path: Path,
) -> None:
    """With the real screener: slots full of answered calls change nothing for a pass."""
    settings = Settings(data_dir=tmp_path / "data", database=f"sqlite:///{tmp_path}/rf.db")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    service = Services.open(settings)
    try:
        service.store.entries.add(ListName.BLOCK, "+33611111111", kind="exact",
                                  action="announce:not_in_service", label="test")
        service.store.entries.add(ListName.ALLOW, "+33622222222", kind="exact", label="mum")
        gateway = make_gateway(service=service, max_calls=1, media_factory=HeldMedia)
        peer = RawPeer(gateway.uas[0].port)
        peers.append(peer)
        announced = peer.invite(user="+33611111111", from_tag="a")
        peer.send(announced)
        ok = final(peer, announced.call_id)
        peer.send(RawPeer.follow_up(announced, "ACK", to=ok.get("To"), new_branch=True))
        second = peer.invite(user="+33611111111", from_tag="b")
        peer.send(second)
        assert final(peer, second.call_id).status == 600
        mum = peer.invite(user="+33622222222", from_tag="m")
        peer.send(mum)
        wait_until(lambda: gateway.capacity.ringing.active == 1, 10, "mum's call to ring")
        peer.send(RawPeer.follow_up(mum, "CANCEL"))
        assert final(peer, mum.call_id).status == 487
        peer.send(RawPeer.follow_up(announced, "BYE", to=ok.get("To"), new_branch=True))

        def outcomes() -> dict[str, str | None]:
            return {r.sip_call_id or "": r.outcome for r in service.store.calls.recent()}

        wait_until(lambda: all(outcomes().get(c.call_id) for c in (announced, second, mum)),
                   10, "three outcomes")
        assert outcomes()[second.call_id] == (
            "refused 600: all 1 media slots busy (announce)")
        assert outcomes()[mum.call_id] == "passed: cancelled by caller"
    finally:
        service.db.dispose()


def ack_for(invite: SipRequest, response: SipResponse) -> bytes:
    """The ACK of a non-2xx final response."""
    return RawPeer.follow_up(invite, "ACK", to=response.get("To"))


def test_a_flood_is_logged_line_by_line_only_within_the_budget(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Every call of a home line gets its two INFO lines; a flood's beyond the budget are
    counted and said with the next line (each call is in the call log either way)."""
    now = [0.0]
    monkeypatch.setattr(handle, "call_lines", LineBudget(rate=5.0, burst=4,
                                                         clock=lambda: now[0]))
    fake_service.action = Action(ActionKind.REJECT, code=603)
    gateway = make_gateway()
    peer = RawPeer(gateway.uas[0].port)
    peers.append(peer)
    with caplog.at_level(logging.INFO, logger="gateway.call.handle"):
        for n in range(10):
            invite = peer.invite(from_tag=f"flood{n}")
            peer.send(invite)
            assert final(peer, invite.call_id).status == 603
        fake_service.wait_finished(10)
        now[0] += 1.0
        invite = peer.invite(from_tag="after")
        peer.send(invite)
        assert final(peer, invite.call_id).status == 603
        fake_service.wait_finished(11)

        def handle_lines() -> list[str]:
            return [r.getMessage() for r in caplog.records if r.name == "gateway.call.handle"]

        # The outcome line follows the outcome's record: the last one may still be on its way.
        wait_until(lambda: len([m for m in handle_lines() if " after " in m]) >= 5, 10,
                   "the fifth outcome line")
    lines = handle_lines()
    assert len([m for m in lines if " from " in m and m.startswith("call ")]) == 5
    assert len([m for m in lines if " after " in m]) == 5
    assert "6 call(s) not logged line by line" in " ".join(lines)



def test_cancelled_calls_of_a_flood_write_no_lines_beyond_the_budget(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    """Unknown callers that ring then CANCEL (the published-number story): a call beyond the
    budget writes no INFO line at all; its outcome, with the CANCEL's Reason, is in the call
    log. The SIP layer's own line per CANCEL was a third line per call, on no budget."""
    now = [0.0]
    monkeypatch.setattr(handle, "call_lines", LineBudget(rate=5.0, burst=4,
                                                         clock=lambda: now[0]))
    gateway = make_gateway()
    peer = RawPeer(gateway.uas[0].port)
    peers.append(peer)
    invites = [peer.invite(from_tag=f"fan{n}", user=f"+3361234560{n}") for n in range(10)]
    with caplog.at_level(logging.INFO, logger="gateway"):
        for invite in invites:
            peer.send(invite)
            wait_until(lambda: gateway.capacity.ringing.active == 1, 10, "the call to ring")
            peer.send(RawPeer.follow_up(invite, "CANCEL"))
            terminated = final(peer, invite.call_id)
            assert terminated.status == 487
            peer.send(ack_for(invite, terminated))
            wait_until(lambda: gateway.capacity.ringing.active == 0, 10, "the ring to end")
        calls = fake_service.wait_finished(10)
        # The outcome line follows the outcome's record: the fourth may still be on its way.
        wait_until(lambda: sum(invites[3].call_id in r.getMessage() for r in caplog.records)
                   >= 2, 10, "the fourth call's outcome line")
    assert sorted(c.outcome or "" for c in calls) == ["passed: cancelled by caller"] * 10
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    per_call = [sum(invite.call_id in line for line in lines) for invite in invites]
    assert per_call == [2] * 4 + [0] * 6, lines


def test_a_cancelled_ring_is_logged_without_a_worker(
    make_gateway: GatewayFactory, fake_service: FakeService, peers: list[RawPeer],
) -> None:
    """A ring the caller CANCELs gets its outcome from the thread that took the CANCEL: with
    every worker busy (a flood being screened) it is in the log at once, not after them."""
    gateway = make_gateway()
    peer = RawPeer(gateway.uas[0].port)
    peers.append(peer)
    invite = peer.invite(from_tag="fan", user="+33612345601")
    peer.send(invite)
    wait_until(lambda: gateway.capacity.ringing.active == 1, 10, "the call to ring")
    release = threading.Event()
    try:
        def hold() -> None:
            release.wait(30)

        for _ in range(gateway.work.workers):
            assert gateway.work.offer(hold)
        wait_until(lambda: gateway.work.busy() == gateway.work.workers, 10, "every worker busy")
        peer.send(RawPeer.follow_up(invite, "CANCEL"))
        assert final(peer, invite.call_id).status == 487
        [call] = fake_service.wait_finished(1, timeout=10)
        assert call.outcome == "passed: cancelled by caller"
        assert gateway.work.busy() == gateway.work.workers  # nobody was freed to log it
    finally:
        release.set()
