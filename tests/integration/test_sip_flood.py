"""A short SIPp flood against `ringfence run` (issue 10, items 1-2): strangers who ring and are
never answered (then give up), at 200 INVITE/s for 5 s. During and after it an allow-listed
caller still rings, and nothing in the log says screening failed or the database pool ran dry.
Before the redesign the first four strangers took every call slot and everyone else got 486."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.config import load_settings_from_text
from gateway.screening.rules import ListName
from gateway.sip.message import SipResponse
from gateway.store import Store, open_store
from tests.conftest import REPO_ROOT
from tests.peers import free_port, require_binary, wait_until
from tests.peers.raw import RawPeer

pytestmark = pytest.mark.slow

MUM = "+33622222222"  # allowed: must ring during and after the flood
RATE, SECONDS = 200, 5  # bounded: 1,000 INVITEs

# Distinct strangers (numbers from an injection file), each ringing for two seconds before
# giving up (CANCEL), as in a spoof storm. After five of them burst mode sends strangers to the
# spoof shield's voicemail: four get a media slot, the rest 600. Whatever the gateway answers
# besides 100 ends that call early and SIPp counts it failed, which is fine: the test is about
# the owner's calls, not the flood's.
SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="ringing strangers">
  <send retrans="500"><![CDATA[
      INVITE sip:ringfence@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:[field0]@127.0.0.1>;tag=[pid]T[call_number]
      To: <sip:ringfence@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 INVITE
      Contact: <sip:sipp@[local_ip]:[local_port]>
      Max-Forwards: 70
      Content-Type: application/sdp
      Content-Length: [len]

      v=0
      o=sipp 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000

  ]]></send>
  <recv response="100"/>
  <pause milliseconds="2000"/>
  <send><![CDATA[
      CANCEL sip:ringfence@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[field0]@127.0.0.1>;tag=[pid]T[call_number]
      To: <sip:ringfence@[remote_ip]:[remote_port]>
      Call-ID: [call_id]
      CSeq: 1 CANCEL
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
  <recv response="200"/>
  <recv response="487"/>
  <send><![CDATA[
      ACK sip:ringfence@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:[field0]@127.0.0.1>;tag=[pid]T[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0

  ]]></send>
</scenario>
"""


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[tuple[int, Path, Store]]:
    """`ringfence run` in direct mode on SQLite, with mum allowed."""
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "{tmp_path / "data"}"\nlog_level = "info"\n'
                      f'[gateway]\nlisten = "127.0.0.1:{port}"\n')
    settings = load_settings_from_text(config.read_text(), tmp_path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    store.entries.add(ListName.ALLOW, MUM, kind="exact", label="mum")
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(config),
                                    "run"], cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: "Ringfence gateway started" in log_path.read_text(errors="replace"),
                   20, "the gateway to start")
        yield port, log_path, store
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
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


def test_during_and_after_a_flood_an_allowed_caller_still_rings(
    tmp_path: Path, gateway: tuple[int, Path, Store],
) -> None:
    port, log_path, store = gateway
    sipp = require_binary("sipp")
    (tmp_path / "flood.xml").write_text(SCENARIO)
    numbers = "".join(f"+33612{n:06d};\n" for n in range(RATE * SECONDS))
    (tmp_path / "strangers.csv").write_text("SEQUENTIAL\n" + numbers)
    flood = subprocess.Popen(
        [sipp, f"127.0.0.1:{port}", "-sf", "flood.xml", "-inf", "strangers.csv",
         "-i", "127.0.0.1", "-p",
         str(free_port()), "-m", str(RATE * SECONDS), "-r", str(RATE), "-l", "800",
         "-timeout", "60s", "-nostdin", "-trace_stat", "-fd", "1", "-mp", str(free_port())],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        def screened() -> bool:
            assert flood.poll() in (None, 0, 1), flood.stderr.read() if flood.stderr else ""
            return len(store.calls.recent(limit=300)) >= 300

        wait_until(screened, 30, "300 strangers to be screened")
        mum_rings(port, store)  # in the middle of the flood
        flood.wait(timeout=90)
    finally:
        if flood.poll() is None:
            flood.kill()
            flood.wait(timeout=5)
    mum_rings(port, store)  # and after it
    log = log_path.read_text(errors="replace")
    assert "screening failed" not in log
    assert "QueuePool" not in log and "Traceback" not in log
