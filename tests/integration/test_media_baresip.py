"""MediaSession against a real, independent peer: baresip calls us on 127.0.0.1.

The test plays the SIP server with a few lines (enough for one call: 200 OK, wait for ACK) and
lets MediaSession do the media: baresip sends a tone from a file, we record it; we play a tone,
baresip's `sndfile` module dumps what it decoded; baresip sends an RFC 4733 digit. baresip's
own G.711 decoder hearing our tone is the strongest proof that our PCMA is real A-law.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.media import audio
from gateway.media.rtp import MediaSession, RecordingResult
from gateway.media.sdp import parse_sdp

pytestmark = pytest.mark.slow

HOST = "127.0.0.1"
CALLER_HZ = 600.0
OUR_HZ = 1000.0
WAIT = 10.0


def assert_clean_tone(pcm: bytes, freq: float, amplitude: float, min_seconds: float) -> None:
    """Assert the audio holds `min_seconds` of the tone at its sent level, undistorted.

    Goertzel alone is not enough: µ-law bytes decoded as A-law still peak at the tone's
    frequency, but 8 dB quieter and distorted. So: only frames at the sent level (±10 %)
    count, there must be enough of them, and they must be a pure tone.
    """
    expected = amplitude * 32767 / 2**0.5
    frames = [pcm[i : i + audio.FRAME_BYTES] for i in range(0, len(pcm), audio.FRAME_BYTES)]
    steady = b"".join(f for f in frames if abs(audio.rms(f) / expected - 1) < 0.1)
    assert len(steady) >= 2 * 8000 * min_seconds, (len(steady), audio.rms(pcm), expected)
    assert audio.tone_ratio(steady, freq) > 0.98


def require_baresip() -> None:
    if shutil.which("baresip") is None or not Path("/usr/lib/baresip/modules/g711.so").exists():
        if os.environ.get("RINGFENCE_REQUIRE_PEERS"):
            pytest.fail("baresip is required (RINGFENCE_REQUIRE_PEERS is set) but not installed")
        pytest.skip("baresip not installed (apt install baresip)")


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def baresip_config(run: Path, sip_port: int, ctrl_port: int, rtp_low: int) -> str:
    return "\n".join(
        [
            "poll_method epoll",
            f"sip_listen {HOST}:{sip_port}",
            "call_local_timeout 120",
            "call_max_calls 4",
            "audio_player aufile,/dev/null",
            f"audio_source aufile,{run / 'caller.wav'}",
            "audio_alert aufile,/dev/null",
            "audio_level no",
            f"rtp_ports {rtp_low}-{rtp_low + 10}",
            "rtcp_mux no",
            "jitter_buffer_delay 5-10",
            f"net_interface {HOST}",
            "module_path /usr/lib/baresip/modules",
            "module g711.so",
            "module aufile.so",
            "module sndfile.so",
            "module_app account.so",
            "module_app menu.so",
            "module_app ctrl_tcp.so",
            f"ctrl_tcp_listen {HOST}:{ctrl_port}",
            f"snd_path {run / 'dump'}",
            "",
        ]
    )


def netstring(payload: dict[str, str]) -> bytes:
    data = json.dumps(payload).encode()
    return str(len(data)).encode() + b":" + data + b","


def headers_of(message: str) -> dict[str, str]:
    head = message.split("\r\n\r\n", 1)[0].split("\r\n")[1:]
    out: dict[str, str] = {}
    for line in head:
        name, _, value = line.partition(":")
        out.setdefault(name.strip().lower(), value.strip())
    return out


def answer_bye(server: socket.socket) -> None:
    """Answer baresip's BYE on quit, or it waits 32 s for its transaction to time out."""
    server.settimeout(0.5)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            data, peer = server.recvfrom(65535)
        except (TimeoutError, OSError):
            continue
        message = data.decode(errors="replace")
        if message.startswith("BYE "):
            h = headers_of(message)
            server.sendto(
                (
                    f"SIP/2.0 200 OK\r\nVia: {h['via']}\r\nFrom: {h['from']}\r\nTo: {h['to']}\r\n"
                    f"Call-ID: {h['call-id']}\r\nCSeq: {h['cseq']}\r\nContent-Length: 0\r\n\r\n"
                ).encode(),
                peer,
            )
            return


@contextlib.contextmanager
def baresip_call(
    tmp_path: Path, codec: str
) -> Iterator[tuple[MediaSession, socket.socket, subprocess.Popen[bytes]]]:
    """Start baresip dialling us, answer with MediaSession's SDP, yield once ACKed."""
    run = tmp_path / "baresip"
    (run / "dump").mkdir(parents=True)
    audio.write_wav(run / "caller.wav", audio.tone(CALLER_HZ, 3.0, 0.5))
    sip_port, ctrl_port = free_port(), free_port(socket.SOCK_STREAM)
    (run / "config").write_text(baresip_config(run, sip_port, ctrl_port, free_port() & ~1))
    (run / "accounts").write_text(
        f"<sip:caller@{HOST};transport=udp>;regint=0;audio_codecs={codec};answermode=manual\n"
    )
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind((HOST, 0))
    server.settimeout(WAIT)
    our_port = server.getsockname()[1]
    proc = subprocess.Popen(
        ["baresip", "-f", str(run), "-e", f"/dial sip:ringfence@{HOST}:{our_port}", "-t", "40"],
        stdin=subprocess.DEVNULL,
        stdout=(run / "out.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    session: MediaSession | None = None
    try:
        invite, peer = "", (HOST, 0)
        for _ in range(20):
            data, peer = server.recvfrom(65535)
            invite = data.decode()
            if invite.startswith("INVITE "):
                break
        assert invite.startswith("INVITE "), invite[:200]
        session = MediaSession(parse_sdp(invite.split("\r\n\r\n", 1)[1]), HOST, (42200, 42298))
        h = headers_of(invite)
        body = session.answer_sdp()
        ok = (
            "SIP/2.0 200 OK\r\n"
            f"Via: {h['via']}\r\nFrom: {h['from']}\r\nTo: {h['to']};tag=rf1\r\n"
            f"Call-ID: {h['call-id']}\r\nCSeq: {h['cseq']}\r\n"
            f"Contact: <sip:ringfence@{HOST}:{our_port}>\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}"
        ).encode()
        server.settimeout(0.5)
        for _ in range(20):  # retransmit 200 OK until ACK, as RFC 3261 says
            server.sendto(ok, peer)
            try:
                data, _ = server.recvfrom(65535)
            except TimeoutError:
                continue
            if data.startswith(b"ACK "):
                break
        else:
            pytest.fail("baresip never ACKed our 200 OK")
        session.start()
        yield session, server, proc
    finally:
        if session is not None:
            session.close()
        with contextlib.suppress(OSError), socket.create_connection((HOST, ctrl_port), 2) as ctrl:
            ctrl.sendall(netstring({"command": "quit", "params": "", "token": "q"}))
        answer_bye(server)
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait(WAIT)
        server.close()


@pytest.mark.parametrize("codec", ["PCMA", "PCMU"])
def test_audio_and_dtmf_with_baresip(tmp_path: Path, codec: str) -> None:
    require_baresip()
    with baresip_call(tmp_path, codec) as (session, _server, _proc):
        assert session.codec.name == codec
        result: list[RecordingResult | None] = []
        recorder = threading.Thread(
            target=lambda: result.append(
                session.record(tmp_path / "from_baresip.wav", max_seconds=2.0, silence_seconds=2.0)
            )
        )
        recorder.start()
        session.play_pcm(audio.tone(OUR_HZ, 2.0, 0.5))
        recorder.join(WAIT)
        ctrl_port = int(
            (tmp_path / "baresip" / "config")
            .read_text()
            .split("ctrl_tcp_listen 127.0.0.1:")[1]
            .split()[0]
        )
        with socket.create_connection((HOST, ctrl_port), 2) as ctrl:
            ctrl.sendall(netstring({"command": "sndcode", "params": "5", "token": "d"}))
            digit = session.wait_for_digit(WAIT)
        assert digit == "5"
    assert result and result[0] is not None
    heard = audio.read_wav(result[0].path)
    assert_clean_tone(heard, CALLER_HZ, 0.5, 1.0)
    # What baresip decoded from us (sndfile writes dump-<call>-dec.wav after the call).
    deadline = time.monotonic() + WAIT
    decoded: list[Path] = []
    while not decoded and time.monotonic() < deadline:
        decoded = sorted((tmp_path / "baresip" / "dump").glob("*dec*.wav"))
        time.sleep(0.05)
    assert decoded, list((tmp_path / "baresip" / "dump").iterdir())
    assert_clean_tone(audio.read_wav(decoded[0]), OUR_HZ, 0.5, 1.0)
