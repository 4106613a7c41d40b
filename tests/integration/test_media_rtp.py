"""MediaSession over real UDP sockets on 127.0.0.1: audio both ways, G.711 on the wire, DTMF.

No SIP here: sessions are paired by feeding one the other's SDP. A bare UDP socket stands in
for a remote phone where we need to see (or forge) the exact bytes on the wire.
"""

from __future__ import annotations

import contextlib
import random
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.media import audio
from gateway.media.rtp import MediaSession, RecordingResult
from gateway.media.sdp import SdpError, parse_sdp

HOST = "127.0.0.1"
PORTS = (40000, 40998)  # where the sessions under test bind
# Where a test's own peer port is picked: outside PORTS, so the session it talks to (which
# picks at random in PORTS) can never take it between the probe and the peer's bind.
PEER_PORTS = (41000, 41998)
CODECS = {"PCMA": 8, "PCMU": 0}
DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "PCMA": audio.alaw_decode,
    "PCMU": audio.ulaw_decode,
}
ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "PCMA": audio.alaw_encode,
    "PCMU": audio.ulaw_encode,
}
TE_PT = 101
WAIT = 10.0  # generous bound for "eventually"; no test asserts on speed


def offer_body(port: int, payload_type: int, te: bool = True) -> str:
    fmts = f"{payload_type} {TE_PT}" if te else str(payload_type)
    lines = [
        "v=0",
        f"o=- 1 1 IN IP4 {HOST}",
        "s=-",
        f"c=IN IP4 {HOST}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {fmts}",
    ]
    if te:
        lines += [f"a=rtpmap:{TE_PT} telephone-event/8000", f"a=fmtp:{TE_PT} 0-15"]
    return "\r\n".join([*lines, "a=sendrecv", ""])


def free_even_port() -> int:
    for _ in range(200):
        port = random.randrange(PEER_PORTS[0], PEER_PORTS[1], 2)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free even port")


@contextlib.contextmanager
def session_pair(codec: str) -> Iterator[tuple[MediaSession, MediaSession]]:
    """Two started sessions talking to each other with the given codec."""
    port_b = free_even_port()
    a = MediaSession(parse_sdp(offer_body(port_b, CODECS[codec])), HOST, PORTS)
    b = MediaSession(parse_sdp(a.answer_sdp()), HOST, (port_b, port_b))
    try:
        a.start()
        b.start()
        yield a, b
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def raw_peer(codec: str, te: bool = True) -> Iterator[tuple[MediaSession, socket.socket]]:
    """A started session whose remote is a bare UDP socket we control."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind((HOST, 0))
    peer.settimeout(WAIT)
    port = peer.getsockname()[1]
    session = MediaSession(parse_sdp(offer_body(port, CODECS[codec], te)), HOST, PORTS)
    try:
        session.start()
        yield session, peer
    finally:
        session.close()
        peer.close()


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


def rtp(
    pt: int, seq: int, ts: int, payload: bytes, marker: bool = False, ssrc: int = 0x1234
) -> bytes:
    return (
        struct.pack("!BBHII", 0x80, (0x80 if marker else 0) | pt, seq & 0xFFFF, ts, ssrc) + payload
    )


def send_digit(
    peer: socket.socket,
    dest: tuple[str, int],
    event: int,
    ts: int,
    seq: int,
    with_marker: bool = True,
) -> int:
    """Send one RFC 4733 key press the way phones do: start, updates, then 3 end packets."""
    for i in range(4):
        payload = struct.pack("!BBH", event, 10, 160 * (i + 1))
        peer.sendto(rtp(TE_PT, seq, ts, payload, marker=(i == 0 and with_marker)), dest)
        seq += 1
        time.sleep(0.02)
    for _ in range(3):
        payload = struct.pack("!BBH", event, 0x80 | 10, 800)
        peer.sendto(rtp(TE_PT, seq, ts, payload), dest)
        seq += 1
    return seq


def record_in_thread(
    session: MediaSession, path: Path, *, max_seconds: float, silence_seconds: float
) -> tuple[threading.Thread, list[RecordingResult | None]]:
    out: list[RecordingResult | None] = []

    def run() -> None:
        out.append(session.record(path, max_seconds=max_seconds, silence_seconds=silence_seconds))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("codec", ["PCMA", "PCMU"])
def test_tone_played_on_one_side_is_recorded_on_the_other(codec: str, tmp_path: Path) -> None:
    wav = tmp_path / "tone.wav"
    audio.write_wav(wav, audio.tone(1000.0, 1.5, 0.5))
    with session_pair(codec) as (a, b):
        assert a.codec.name == codec
        assert b.codec.name == codec
        thread, out = record_in_thread(
            b, tmp_path / "rec.wav", max_seconds=8.0, silence_seconds=1.0
        )
        time.sleep(0.1)  # let record() start listening before the tone starts
        a.play(wav)
        thread.join(WAIT)
        assert not thread.is_alive()
    result = out[0]
    assert result is not None
    assert result.path.is_file()
    pcm = audio.read_wav(result.path)
    assert result.size_bytes == result.path.stat().st_size
    assert result.duration_s == pytest.approx(len(pcm) / 16000)
    # The 1.5 s tone plus at most 0.5 s of kept silence (and the wait before it started).
    assert 1.3 < result.duration_s < 2.5
    assert_clean_tone(pcm, 1000.0, 0.5, 1.2)
    assert audio.tone_ratio(pcm, 1400.0) < 0.01


@pytest.mark.parametrize("codec", ["PCMA", "PCMU"])
def test_wire_carries_standard_g711_with_the_negotiated_payload_type(codec: str) -> None:
    # The A-law proof: decode what we send with a plain G.711 decoder. pyVoIP 1.6.8 put µ-law
    # bytes in PCMA packets, which decode here as noise.
    with raw_peer(codec) as (session, peer):
        player = threading.Thread(target=session.play_pcm, args=(audio.tone(1000.0, 1.0, 0.5),))
        player.start()
        payloads: list[bytes] = []
        deadline = time.monotonic() + WAIT
        while len(payloads) < 40 and time.monotonic() < deadline:
            packet = peer.recv(2048)
            assert packet[0] == 0x80  # RTP v2, no padding/extension/CSRC
            assert packet[1] & 0x7F == CODECS[codec]
            payload = packet[12:]
            assert len(payload) == 160  # 20 ms
            if audio.rms(DECODERS[codec](payload)) > 1000:
                payloads.append(payload)  # the tone, not the silence before/after it
        player.join(WAIT)
    assert_clean_tone(DECODERS[codec](b"".join(payloads)), 1000.0, 0.5, 0.7)


@pytest.mark.parametrize("codec", ["PCMA", "PCMU"])
def test_standard_g711_from_a_phone_is_recorded(codec: str, tmp_path: Path) -> None:
    with raw_peer(codec) as (session, peer):
        dest = (HOST, session.local_port)
        thread, out = record_in_thread(
            session, tmp_path / "rec.wav", max_seconds=8.0, silence_seconds=0.6
        )
        time.sleep(0.1)
        encoded = ENCODERS[codec](audio.tone(1000.0, 1.0, 0.5))
        ts = 5000
        for seq, start in enumerate(range(0, len(encoded), 160)):
            peer.sendto(rtp(CODECS[codec], seq, ts, encoded[start : start + 160]), dest)
            ts += 160
            time.sleep(0.02)
        thread.join(WAIT)
        assert not thread.is_alive()
    assert out[0] is not None
    assert_clean_tone(audio.read_wav(out[0].path), 1000.0, 0.5, 0.8)


def test_rfc2833_digits_are_reported_once_each() -> None:
    with raw_peer("PCMA") as (session, peer):
        dest = (HOST, session.local_port)
        seq = send_digit(peer, dest, 5, ts=1000, seq=1)
        assert session.wait_for_digit(WAIT) == "5"
        seq = send_digit(peer, dest, 11, ts=3000, seq=seq)
        assert session.wait_for_digit(WAIT) == "#"
        # Retransmitted end packets of "#" must not count as another press.
        assert session.wait_for_digit(0.3) is None


def test_digit_survives_a_lost_marker_packet() -> None:
    with raw_peer("PCMU") as (session, peer):
        send_digit(peer, (HOST, session.local_port), 9, ts=7000, seq=10, with_marker=False)
        assert session.wait_for_digit(WAIT) == "9"


def test_digits_typed_during_a_prompt_wait_until_read_or_cleared() -> None:
    with raw_peer("PCMA") as (session, peer):
        dest = (HOST, session.local_port)
        seq = send_digit(peer, dest, 1, ts=100, seq=1)
        seq = send_digit(peer, dest, 2, ts=900, seq=seq)
        assert session.wait_for_digit(WAIT) == "1"
        assert session.wait_for_digit(WAIT) == "2"
        send_digit(peer, dest, 3, ts=2000, seq=seq)
        deadline = time.monotonic() + WAIT
        while not session._digits._digits and time.monotonic() < deadline:
            time.sleep(0.01)  # wait until the receiver has queued "3"
        session.clear_digits()
        assert session.wait_for_digit(0.2) is None


def test_hostile_packets_do_not_kill_the_receiver() -> None:
    with raw_peer("PCMA") as (session, peer):
        dest = (HOST, session.local_port)
        junk = [
            b"",
            b"\x80",
            b"\x00" * 11,
            b"\xff" * 40,  # version 3
            rtp(127, 1, 1, b"\x00" * 4),  # payload type nobody negotiated
            rtp(TE_PT, 2, 2, b"\xc8\x80\x00\xa0"),  # event 200: not a key
            rtp(TE_PT, 3, 3, b"\x05"),  # truncated event
            bytes([0x90, 8, 0, 4, 0, 0, 0, 4, 0, 0, 0, 1]) + b"\x00\x01\x00\xff",  # ext overruns
            bytes([0xA0, 8, 0, 5, 0, 0, 0, 5, 0, 0, 0, 1]) + b"\x00\x00\xff",  # padding overruns
            bytes(random.getrandbits(8) for _ in range(300)),
        ]
        for packet in junk:
            peer.sendto(packet, dest)
        send_digit(peer, dest, 7, ts=9000, seq=100)
        assert session.wait_for_digit(WAIT) == "7"


def test_record_drops_pure_silence_and_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "silent.wav"
    path.write_bytes(b"stale")  # a leftover must not survive as a "message"
    with session_pair("PCMA") as (_a, b):
        # a sends G.711 silence continuously, as a phone would.
        result = b.record(path, max_seconds=5.0, silence_seconds=0.5)
    assert result is None
    assert not path.exists()


def test_record_is_capped_at_max_seconds(tmp_path: Path) -> None:
    with session_pair("PCMU") as (a, b):
        player = threading.Thread(
            target=a.play_pcm, args=(audio.tone(800.0, 4.0, 0.5),), daemon=True
        )
        player.start()
        result = b.record(tmp_path / "long.wav", max_seconds=1.0, silence_seconds=3.0)
    assert result is not None
    assert result.duration_s <= 1.0
    assert result.size_bytes <= 44 + 2 * 8000  # header + one second of PCM16


def test_close_unblocks_play_record_and_wait(tmp_path: Path) -> None:
    with session_pair("PCMA") as (a, b):
        a_player = threading.Thread(
            target=a.play_pcm, args=(audio.tone(600.0, 30.0, 0.5),), daemon=True
        )
        b_waiter = threading.Thread(target=b.wait_for_digit, args=(60.0,), daemon=True)
        recorder, out = record_in_thread(
            b, tmp_path / "cut.wav", max_seconds=60.0, silence_seconds=30.0
        )
        a_player.start()
        b_waiter.start()
        time.sleep(1.0)
        a.close()
        b.close()
        # Bounds are generous on purpose; the code path is "notify and return".
        for thread in (a_player, b_waiter, recorder):
            thread.join(5.0)
            assert not thread.is_alive(), thread
        a.close()  # idempotent
    # The caller hanging up ends a voicemail: what was heard is kept.
    assert out[0] is not None
    assert_clean_tone(audio.read_wav(out[0].path), 600.0, 0.5, 0.5)


def test_closed_session_returns_at_once(tmp_path: Path) -> None:
    with session_pair("PCMA") as (a, _b):
        a.close()
        a.play_pcm(audio.tone(500.0, 10.0))
        a.play_sit()
        assert a.wait_for_digit(10.0) is None
        assert a.record(tmp_path / "x.wav", max_seconds=10.0, silence_seconds=5.0) is None
        a.start()  # no effect once closed


def test_sessions_bind_distinct_even_ports() -> None:
    offer = parse_sdp(offer_body(free_even_port(), 8))
    sessions = [MediaSession(offer, HOST, (41000, 41007)) for _ in range(4)]
    try:
        ports = {s.local_port for s in sessions}
        assert ports == {41000, 41002, 41004, 41006}
        with pytest.raises(OSError, match="no free even UDP port"):
            MediaSession(offer, HOST, (41000, 41007))
    finally:
        for s in sessions:
            s.close()
    # Closing releases the port even if the session never started.
    again = MediaSession(offer, HOST, (41000, 41001))
    again.close()


def test_a_third_party_cannot_inject_digits_into_a_call() -> None:
    with raw_peer("PCMA") as (session, peer):
        dest = (HOST, session.local_port)
        seq = send_digit(peer, dest, 1, ts=100, seq=1)  # the real caller claims the stream
        assert session.wait_for_digit(WAIT) == "1"
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as intruder:
            intruder.bind((HOST, 0))
            send_digit(intruder, dest, 5, ts=50_000, seq=500, with_marker=True)
            # The caller is still talking, so the intruder's "5" is not taken...
            send_digit(peer, dest, 2, ts=900, seq=seq)
            assert session.wait_for_digit(WAIT) == "2"
            assert session.wait_for_digit(0.3) is None


def test_reinvite_hold_resume_and_new_address() -> None:
    with raw_peer("PCMA") as (session, peer):
        first_answer = session.answer_sdp()
        assert session.answer_sdp() == first_answer  # stable until the offer changes
        peer.recv(2048)  # media flows
        port = peer.getsockname()[1]
        # Hold (RFC 3264 sendonly from the remote): we stop sending.
        session.update(parse_sdp(offer_body(port, 8).replace("a=sendrecv", "a=sendonly")))
        held = session.answer_sdp()
        assert "a=recvonly" in held
        assert " 1 IN IP4" not in held.split("\r\n")[1]  # o= version moved on
        with contextlib.suppress(TimeoutError):
            peer.settimeout(0.2)
            while True:  # drain what was in flight
                peer.recv(2048)
        peer.settimeout(0.5)
        with pytest.raises(TimeoutError):
            peer.recv(2048)
        # Resume at a new address: media goes there.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as moved:
            moved.bind((HOST, 0))
            moved.settimeout(WAIT)
            session.update(parse_sdp(offer_body(moved.getsockname()[1], 8)))
            assert "a=sendrecv" in session.answer_sdp()
            assert moved.recv(2048)[1] & 0x7F == 8
        # A re-offer without our codec is refused; the call keeps going as before.
        with pytest.raises(SdpError, match="drops PCMA"):
            session.update(parse_sdp(offer_body(port, 0)))


def test_dynamic_payload_type_for_pcma_is_used_on_the_wire(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind((HOST, 0))
        peer.settimeout(WAIT)
        body = offer_body(peer.getsockname()[1], 96).replace(
            "a=rtpmap:101", "a=rtpmap:96 PCMA/8000\r\na=rtpmap:101"
        )
        session = MediaSession(parse_sdp(body), HOST, PORTS)
        try:
            assert session.codec.name == "PCMA"
            assert "a=rtpmap:96 PCMA/8000" in session.answer_sdp()
            session.start()
            assert peer.recv(2048)[1] & 0x7F == 96
        finally:
            session.close()


def test_inband_dtmf_when_no_telephone_event_was_offered() -> None:
    port_b = free_even_port()
    a = MediaSession(parse_sdp(offer_body(port_b, 8, te=False)), HOST, PORTS)
    b = MediaSession(parse_sdp(a.answer_sdp()), HOST, (port_b, port_b))
    try:
        assert b.offer.telephone_event_pt is None
        a.start()
        b.start()
        gap = audio.silence(0.1)
        a.play_pcm(audio.dtmf_tone("5", 0.1) + gap + audio.dtmf_tone("#", 0.1) + gap)
        assert b.wait_for_digit(WAIT) == "5"
        assert b.wait_for_digit(WAIT) == "#"
        # A prompt (speech-like tones) is not taken for a key.
        a.play_pcm(audio.sit_tone() + audio.beep())
        assert b.wait_for_digit(0.3) is None
    finally:
        a.close()
        b.close()


def test_ipv6_loopback() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as peer:
        peer.bind(("::1", 0))
        peer.settimeout(WAIT)
        port = peer.getsockname()[1]
        body = offer_body(port, 0).replace(f"IN IP4 {HOST}", "IN IP6 ::1")
        session = MediaSession(parse_sdp(body), "::1", PORTS)
        try:
            assert "c=IN IP6 ::1" in session.answer_sdp()
            session.start()
            packet, _ = peer.recvfrom(2048)
            assert packet[1] & 0x7F == 0
            send_digit(peer, ("::1", session.local_port), 3, ts=10, seq=1)
            assert session.wait_for_digit(WAIT) == "3"
        finally:
            session.close()


def test_seconds_since_media() -> None:
    with raw_peer("PCMA") as (session, peer):
        assert session.seconds_since_media() is None
        send_digit(peer, (HOST, session.local_port), 4, ts=1, seq=1)
        assert session.wait_for_digit(WAIT) == "4"
        age = session.seconds_since_media()
        assert age is not None
        assert age >= 0
