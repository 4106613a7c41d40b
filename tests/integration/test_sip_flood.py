"""A short SIPp flood against `ringfence run` (issue 10, items 1-2): strangers who ring and are
never answered (then give up), at 200 INVITE/s for 5 s. During and after it an allow-listed
caller still rings, and nothing in the log says screening failed or the database pool ran dry.
Before the redesign the first four strangers took every call slot and everyone else got 486."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.screening.rules import ListName
from gateway.sip.message import SipResponse
from gateway.store import Store
from gateway.store.status import read_load
from tests.peers import free_port, require_binary, wait_until
from tests.peers.gateway_process import GatewayProcess
from tests.peers.raw import RawPeer
from tests.peers.sipp import ring_then_cancel, sipp_command, write_injection

pytestmark = pytest.mark.slow

MUM = "+33622222222"  # allowed: must ring during and after the flood
RATE, SECONDS = 200, 5  # bounded: 1,000 INVITEs

# Distinct strangers (numbers from an injection file), each ringing for two seconds before
# giving up (CANCEL), as in a spoof storm. After five of them burst mode sends strangers to the
# spoof shield's voicemail: four get a media slot, the rest 600. Whatever the gateway answers
# besides 100 ends that call early and SIPp counts it failed, which is fine: the test is about
# the owner's calls, not the flood's.
SCENARIO = ring_then_cancel("[field0]", 2000, callee="ringfence", sdp=True)


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[int, Path, Store]]:
    """`ringfence run` in direct mode on SQLite, with mum allowed."""
    process = GatewayProcess(tmp_path, extra='log_level = "info"\n')
    store = process.open_store()
    store.entries.add(ListName.ALLOW, MUM, kind="exact", label="mum")
    try:
        process.start()
        yield process.port, process.log_path, store
    finally:
        process.stop()
        store.close()


def mum_rings(port: int, store: Store) -> None:
    """Mum calls: screened as allowed, she rings (her row is there, unfinished); she hangs up."""
    peer = RawPeer(port)
    try:
        invite = peer.invite(user=MUM, from_tag="mum")
        peer.send(invite)

        def rings() -> bool:
            return any(r.sip_call_id == invite.call_id and r.action == "pass"
                       and r.outcome is None for r in store.calls.recent(limit=2000))

        wait_until(rings, 20, "mum's call to ring")
        peer.send(RawPeer.follow_up(invite, "CANCEL"))
        peer.expect(lambda m: isinstance(m, SipResponse) and m.status == 487
                    and m.call_id == invite.call_id, 10, "the 487 of mum's call")
    finally:
        peer.close()


def telemarketer_refused(port: int) -> None:
    """A 0162 caller, settled by a default rule: 603 even in a flood, never a ring."""
    peer = RawPeer(port)
    try:
        invite = peer.invite(user="+33162000001", from_tag="tm")
        peer.send(invite)
        final = peer.expect(lambda m: isinstance(m, SipResponse) and m.status >= 200
                            and m.call_id == invite.call_id, 20, "the telemarketer's answer")
        assert isinstance(final, SipResponse) and final.status == 603, final
    finally:
        peer.close()


def test_during_and_after_a_flood_an_allowed_caller_still_rings(
    tmp_path: Path, gateway: tuple[int, Path, Store],
) -> None:
    port, log_path, store = gateway
    sipp = require_binary("sipp")
    scenario = tmp_path / "flood.xml"
    scenario.write_text(SCENARIO)
    strangers = write_injection(tmp_path / "strangers.csv",
                                [f"+33612{n:06d}" for n in range(RATE * SECONDS)])
    flood = subprocess.Popen(
        sipp_command(sipp, port, scenario, calls=RATE * SECONDS, rate=RATE, limit=800,
                     local_port=free_port(), media_port=free_port(), injection=strangers),
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        def screened() -> bool:
            assert flood.poll() in (None, 0, 1), flood.stderr.read() if flood.stderr else ""
            return len(store.calls.recent(limit=300)) >= 300

        wait_until(screened, 30, "300 strangers to be screened")
        mum_rings(port, store)  # in the middle of the flood
        telemarketer_refused(port)
        flood.wait(timeout=90)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait(timeout=5)
    mum_rings(port, store)  # and after it
    log = log_path.read_text(errors="replace")
    assert "screening failed" not in log
    assert "QueuePool" not in log and "Traceback" not in log
    # Counted where `ringfence status`, /metrics and the dashboard read it (at most 10 s late).
    data_dir = tmp_path / "data"

    def counted() -> bool:
        report = read_load(data_dir)
        return report is not None and report.count("invites") >= RATE * SECONDS + 3

    wait_until(counted, 30, "the flood's INVITEs in load.json")
    report = read_load(data_dir)
    assert report is not None
    # Shed calls (503, never a ring) are counted and warned about, never silent.
    assert (report.count("shed") == 0) == ("work queue full" not in log)
