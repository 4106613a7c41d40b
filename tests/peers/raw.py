"""A raw SIP peer over UDP or TCP, for exact transaction-level scenarios."""

from __future__ import annotations

import socket
import time
import uuid

from gateway.sip.message import SipRequest, SipResponse, parse_message
from gateway.sip.transport import split_stream_frame

SDP_OFFER = (
    "v=0\r\no=caller 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
)


class RawPeer:
    """Sends hand-built requests and collects what comes back."""

    def __init__(self, gateway_port: int, transport: str = "udp", *, host: str = "127.0.0.1",
                 bind_port: int = 0, user: str = "ringfence") -> None:
        """Talk to `host`:`gateway_port` (a gateway, or Kamailio with `user` "home"); bind
        `bind_port` to send from a known port (Kamailio's trusted one)."""
        self.gateway_port = gateway_port
        self.transport = transport
        self.host = host
        self.user = user
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        if transport == "tcp":
            self.sock = socket.create_connection((host, gateway_port), timeout=5)
        else:
            self.sock = socket.socket(family, socket.SOCK_DGRAM)
            self.sock.bind((host, bind_port))
        self.port = int(self.sock.getsockname()[1])
        self.buffer = b""

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def send(self, data: bytes | SipRequest) -> None:
        """Send raw bytes or a request."""
        raw = data.to_bytes() if isinstance(data, SipRequest) else data
        if self.transport == "tcp":
            self.sock.sendall(raw)
        else:
            self.sock.sendto(raw, (self.host, self.gateway_port))

    def invite(self, *, call_id: str | None = None, branch: str | None = None,
               from_tag: str = "caller1", extra: str = "", cseq: int = 1,
               user: str = "+33612345678", sdp: str = SDP_OFFER) -> SipRequest:
        """An INVITE with an SDP offer, as a request object (send it with `send`)."""
        call_id = call_id or uuid.uuid4().hex
        branch = branch or "z9hG4bK" + uuid.uuid4().hex[:12]
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = (
            f"INVITE sip:{self.user}@{host}:{self.gateway_port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{self.transport.upper()} {host}:{self.port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\n"
            f'From: "Test Caller" <sip:{user}@127.0.0.1>;tag={from_tag}\r\n'
            f"To: <sip:{self.user}@127.0.0.1>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\n"
            f"Contact: <sip:caller@{host}:{self.port}>\r\n{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n"
            f"{sdp}"
        )
        message = parse_message(text.encode())
        assert isinstance(message, SipRequest)
        return message

    @staticmethod
    def follow_up(invite: SipRequest, method: str, *, to: str | None = None,
                  new_branch: bool = False, extra: str = "") -> bytes:
        """ACK/CANCEL/BYE for `invite` (same branch for CANCEL and non-2xx ACK)."""
        via = invite.get("Via") or ""
        if new_branch:
            via = via.split(";branch=")[0] + ";branch=z9hG4bK" + uuid.uuid4().hex[:12] + ";rport"
        cseq_number = invite.cseq()[0] + (1 if method == "BYE" else 0)
        return (
            f"{method} {invite.uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n"
            f"From: {invite.get('From')}\r\nTo: {to or invite.get('To')}\r\n"
            f"Call-ID: {invite.call_id}\r\nCSeq: {cseq_number} {method}\r\n{extra}"
            f"Content-Length: 0\r\n\r\n"
        ).encode()

    def receive(self, timeout: float = 5.0) -> SipRequest | SipResponse | None:
        """The next message, or None after `timeout`."""
        data = self.receive_bytes(timeout)
        return None if data is None else parse_message(data, stream=self.transport == "tcp")

    def receive_bytes(self, timeout: float = 5.0) -> bytes | None:
        """The next datagram or TCP frame as sent (even one our parser would refuse)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                if self.transport == "tcp":
                    frame = self._tcp_frame()
                    if frame is None:
                        continue
                    return frame
                return self.sock.recv(65536)
            except (TimeoutError, OSError):
                return None

    def _tcp_frame(self) -> bytes | None:
        frame, rest, error = split_stream_frame(self.buffer)
        if error:
            raise AssertionError(error)
        if frame is not None:
            self.buffer = rest
            return frame
        chunk = self.sock.recv(65536)
        if not chunk:
            raise OSError("closed")
        self.buffer += chunk
        return None

    def expect(self, predicate: object, timeout: float = 5.0,
               what: str = "a message") -> SipRequest | SipResponse:
        """Receive until `predicate(message)` is true; fail with what was seen."""
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(deadline - time.monotonic())
            if message is None:
                break
            if predicate(message):  # type: ignore[operator]
                return message
            seen.append(repr(message))
        raise AssertionError(f"no {what} within {timeout:.0f} s; saw {seen}")

    def expect_status(self, status: int, timeout: float = 5.0) -> SipResponse:
        """Receive until a response with `status`."""
        message = self.expect(
            lambda m: isinstance(m, SipResponse) and m.status == status, timeout,
            f"{status} response",
        )
        assert isinstance(message, SipResponse)
        return message
