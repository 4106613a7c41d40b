"""A caller that speaks: SIP over a raw UDP socket and a 440 Hz tone as real RTP (PCMA).

`VoiceCaller` calls a gateway that listens directly (no registrar), waits for the 200 OK,
ACKs it and streams the tone to the RTP port of the gateway's SDP answer on a paced 20 ms
schedule until it hangs up or the gateway says BYE (answered 200). It stands in for a phone
in the fault-injection tests of `ringfence run` (kill -9 during a message, a full disk).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import uuid
from types import TracebackType

from gateway.media import audio
from gateway.media.sdp import parse_sdp
from gateway.sip.message import SipRequest, SipResponse, parse_message
from tests.peers.raw import RawPeer

TONE = audio.alaw_encode(audio.tone(440.0, 1.0, 0.3))  # one second, looped
FRAME = audio.FRAME_SAMPLES  # A-law bytes per 20 ms


class VoiceCaller:
    """One call from `number` that speaks until `hang_up()` or the gateway's BYE."""

    def __init__(self, gateway_port: int, number: str) -> None:
        self.peer = RawPeer(gateway_port)
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind(("127.0.0.1", 0))
        self.rtp_port = int(self.rtp.getsockname()[1])
        self.number = number
        self.invite = self._invite()
        self.status: int | None = None
        self.to_header: str | None = None
        self.remote: tuple[str, int] | None = None
        self.gateway_hung_up = threading.Event()
        self.sent_frames = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _invite(self) -> SipRequest:
        sdp = ("v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {self.rtp_port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
               "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n")
        template = self.peer.invite(user=self.number)
        text = template.to_bytes().decode()
        head = text.split("\r\n\r\n", 1)[0]
        head = "\r\n".join(line for line in head.split("\r\n")
                           if not line.lower().startswith("content-length"))
        message = parse_message(f"{head}\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}".encode())
        assert isinstance(message, SipRequest)
        return message

    def call(self, timeout: float = 30.0) -> int:
        """Dial; on 200 OK, ACK and start speaking. Return the final status."""
        self.peer.send(self.invite)
        response = self.peer.expect(
            lambda m: isinstance(m, SipResponse) and m.status >= 200
            and m.cseq()[1] == "INVITE", timeout, "a final response to the INVITE")
        assert isinstance(response, SipResponse)
        self.status = response.status
        if response.status != 200:
            self.peer.send(RawPeer.follow_up(self.invite, "ACK"))
            return response.status
        self.to_header = response.get("To")
        self.peer.send(RawPeer.follow_up(self.invite, "ACK", to=self.to_header,
                                         new_branch=True))
        answer = parse_sdp(response.body_text())
        self.remote = (answer.remote_ip, answer.remote_port)
        for target, name in ((self._speak, "speak"), (self._listen, "listen")):
            thread = threading.Thread(target=target, name=f"voice-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()
        return 200

    def _speak(self) -> None:
        assert self.remote is not None
        ssrc = uuid.uuid4().int & 0xFFFFFFFF
        seq, ts, offset = 0, 0, 0
        next_send = time.monotonic()
        while not self._stop.is_set() and not self.gateway_hung_up.is_set():
            payload = TONE[offset:offset + FRAME]
            offset = (offset + FRAME) % len(TONE)
            header = struct.pack("!BBHII", 0x80, 8 | (0x80 if seq == 0 else 0), seq & 0xFFFF,
                                 ts & 0xFFFFFFFF, ssrc)
            with contextlib.suppress(OSError):  # the gateway is gone (killed): keep going
                self.rtp.sendto(header + payload, self.remote)
            self.sent_frames += 1
            seq, ts = seq + 1, ts + FRAME
            next_send += FRAME / audio.SAMPLE_RATE
            self._stop.wait(max(0.0, next_send - time.monotonic()))

    def _listen(self) -> None:
        while not self._stop.is_set():
            message = self.peer.receive(0.2)
            if isinstance(message, SipRequest) and message.method == "BYE":
                self.peer.send(_ok(message))
                self.gateway_hung_up.set()

    def spoken_seconds(self) -> float:
        """How long the caller has spoken so far."""
        return self.sent_frames * FRAME / audio.SAMPLE_RATE

    def hang_up(self) -> None:
        """Stop speaking and say BYE (unless the gateway already did)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if self.status == 200 and not self.gateway_hung_up.is_set():
            bye = RawPeer.follow_up(self.invite, "BYE", to=self.to_header, new_branch=True)
            self.peer.send(bye)

    def close(self) -> None:
        """Hang up if needed and close both sockets."""
        self.hang_up()
        self.peer.close()
        self.rtp.close()

    def __enter__(self) -> VoiceCaller:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _ok(request: SipRequest) -> bytes:
    """200 OK to an in-dialog request (BYE)."""
    lines = ["SIP/2.0 200 OK"]
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        lines += [f"{name}: {value}" for value in request.get_all(name)]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()
