"""A block-listed caller that floods `ringfence run` is refused again on the receive thread
(gateway/call/repeats.py), statelessly: every INVITE still gets its 603 and its row in the call
log, with the entry's hit; a retransmission is answered the same and logged once; an unblock
reaches the flooding caller. Real peers: SIPp and raw UDP, against the real process."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from gateway.screening.rules import ListName
from gateway.sip.message import SipRequest, SipResponse
from gateway.store import Store
from tests.peers import free_port, require_binary, wait_until
from tests.peers.gateway_process import GatewayProcess
from tests.peers.raw import RawPeer
from tests.peers.sipp import refused_call, sipp_command

pytestmark = pytest.mark.slow

SPAMMER = "+33612000666"
FLOOD = 400  # INVITEs, at 200/s: bounded (2 s)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[int, Path, Store, int]]:
    """`ringfence run` in direct mode on SQLite, with SPAMMER on the block list."""
    process = GatewayProcess(tmp_path, extra='log_level = "info"\n')
    store = process.open_store()
    entry = store.entries.add(ListName.BLOCK, SPAMMER, kind="exact", label="spammer")
    try:
        process.start()
        yield process.port, process.log_path, store, entry.id
    finally:
        process.stop()
        store.close()


def rows_of(store: Store, call_id: str) -> list[object]:
    """The call log's rows of one SIP Call-ID."""
    return [r for r in store.calls.recent(limit=5000) if r.sip_call_id == call_id]


def hits(store: Store, entry_id: int) -> int:
    """The block entry's hit counter, as the list page shows it."""
    with store.db.engine.connect() as conn:
        return int(conn.execute(text("SELECT hits FROM list_entries WHERE id = :i"),
                                {"i": entry_id}).scalar_one())


def repeated_refusal(peer: RawPeer, *, ack: bool = True) -> tuple[SipRequest, list[SipResponse]]:
    """Call as SPAMMER until an INVITE is refused statelessly (no 100 Trying, our "sl" To
    tag): the screened refusals before it are what lets the gateway repeat (bounded). Every
    refusal is ACKed, but the repeat's own unless `ack`."""
    for _ in range(40):
        invite = peer.invite(user=SPAMMER, from_tag=uuid.uuid4().hex[:8], sdp="")
        peer.send(invite)
        seen: list[SipResponse] = []
        while not seen or seen[-1].status < 200:
            message = peer.expect(lambda m, call_id=invite.call_id: isinstance(m, SipResponse)
                                  and m.call_id == call_id, 10, "an answer")
            assert isinstance(message, SipResponse)
            seen.append(message)
        assert seen[-1].status == 603, seen
        repeat = (seen[-1].to().tag or "").startswith("sl")
        if ack or not repeat:
            peer.send(RawPeer.follow_up(invite, "ACK", to=seen[-1].get("To")))
        if repeat:
            return invite, seen
    raise AssertionError("40 refusals in a row and none was repeated")


def test_a_flood_from_a_blocked_number_is_refused_and_logged_call_by_call(
    tmp_path: Path, gateway: tuple[int, Path, Store, int],
) -> None:
    port, log_path, store, entry_id = gateway
    sipp = require_binary("sipp")
    scenario = tmp_path / "flood.xml"
    scenario.write_text(refused_call(SPAMMER, callee="ringfence"))
    result = subprocess.run(
        sipp_command(sipp, port, scenario, calls=FLOOD, rate=200, limit=400,
                     local_port=free_port(), media_port=free_port()),
        cwd=tmp_path, capture_output=True, text=True, timeout=90, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

    def all_logged() -> bool:
        refused = [r for r in store.calls.recent(limit=5000) if r.number == SPAMMER]
        return len(refused) == FLOOD and all(r.outcome == "rejected 603" for r in refused)

    wait_until(all_logged, 30, f"{FLOOD} rows, each rejected 603")  # the writer's batches
    wait_until(lambda: hits(store, entry_id) == FLOOD, 30, f"{FLOOD} hits on the entry")
    log = log_path.read_text(errors="replace")
    assert "Traceback" not in log and "screening failed" not in log
    # Most were repeats: far fewer screened (each logs "after N s") than refused.
    assert "(a repeat)" in log or "not logged line by line" in log


def test_a_repeat_is_stateless_and_its_retransmission_logged_once(
    gateway: tuple[int, Path, Store, int],
) -> None:
    port, _, store, entry_id = gateway
    peer = RawPeer(port)
    try:
        invite, answers = repeated_refusal(peer, ack=False)  # as if our 603 were lost
        assert [a.status for a in answers] == [603]  # no 100 Trying (RFC 3261 §8.2.7)
        wait_until(lambda: len(rows_of(store, invite.call_id)) == 1, 20, "its row")
        # The same INVITE again, retransmitted: the same answer, the same To tag.
        again = peer.invite(user=SPAMMER, call_id=invite.call_id,
                            branch=invite.top_via().branch, from_tag=invite.from_().tag or "",
                            sdp="")
        peer.send(again)
        resent = peer.expect_status(603, 10)
        assert resent.to().tag == answers[-1].to().tag
        # A copy of the call on a second branch (a forking proxy): 482, as for a screened one.
        forked = peer.invite(user=SPAMMER, call_id=invite.call_id,
                             from_tag=invite.from_().tag or "", sdp="")
        peer.send(forked)
        assert peer.expect_status(482, 10).call_id == invite.call_id
        # Our answer is never retransmitted by us: nothing more comes for it, ACK or not.
        assert peer.receive(1.5) is None
        peer.send(RawPeer.follow_up(invite, "ACK", to=resent.get("To")))
        assert peer.receive(0.5) is None  # an ACK is never answered
        # Logged once: another call's row lands after it, and this one is still alone.
        later, _ = repeated_refusal(peer)
        wait_until(lambda: len(rows_of(store, later.call_id)) == 1, 20, "the next row")
        assert len(rows_of(store, invite.call_id)) == 1
        rows = [r for r in store.calls.recent(limit=5000) if r.number == SPAMMER]
        wait_until(lambda: hits(store, entry_id) == len(rows), 20, "a hit per row, no more")
    finally:
        peer.close()


def test_an_unblock_reaches_a_caller_who_floods(gateway: tuple[int, Path, Store, int]) -> None:
    port, _, store, entry_id = gateway
    peer = RawPeer(port)
    try:
        repeated_refusal(peer)  # the gateway now repeats this caller's refusal
        assert store.entries.remove(entry_id)
        # Keep calling: within a second (FRESH_S) one is screened again, and rings.
        for _ in range(100):
            invite = peer.invite(user=SPAMMER, from_tag=uuid.uuid4().hex[:8])
            peer.send(invite)
            first = peer.expect(lambda m, call_id=invite.call_id: isinstance(m, SipResponse)
                                and m.call_id == call_id, 10, "an answer")
            assert isinstance(first, SipResponse)
            if first.status == 100:  # screened: an unknown caller now rings silently
                peer.send(RawPeer.follow_up(invite, "CANCEL"))
                peer.expect(lambda m, call_id=invite.call_id: isinstance(m, SipResponse)
                            and m.status == 487 and m.call_id == call_id, 10, "the 487")
                break
            assert first.status == 603
            peer.send(RawPeer.follow_up(invite, "ACK", to=first.get("To")))
            refused_id = invite.call_id
            wait_until(lambda: len(rows_of(store, refused_id)) == 1, 20,  # noqa: B023
                       "the refused call's row")  # paces the loop on the gateway, not a clock
        else:
            raise AssertionError("the unblocked caller was still refused after 100 calls")
    finally:
        peer.close()
