"""RTP media for one call: play prompts and tones, record voicemail, read RFC 4733 digits.

This is the only module in Ringfence that imports pyVoIP. We build on pyVoIP 1.6.8's
``RTPClient``: its RTP header parsing (``RTPMessage``), payload-type table (``PayloadType``,
``assoc``, codec preference) and stream state (random sequence, timestamp, SSRC). Measured on
loopback, the rest is wrong or unsafe for a gateway that strangers call, so ``_RtpClient``
below replaces those parts, each for the reason given:

* **Encoding.** pyVoIP encodes PCMA with the µ-law encoder (garbled A-law, the European
  default) and works on 8-bit linear samples (about 48 dB of dynamic range, audible hiss on
  quiet speech). We encode PCM16 straight to G.711 with ``audioop`` and hand the transmitter
  ready-made payloads, so ``encode_packet`` is the identity.
* **Buffers.** pyVoIP's ``RTPPacketManager`` keeps every byte ever sent or received in memory
  for the whole call and pads gaps with 8-bit-linear silence (0x80), so it cannot carry
  encoded G.711 (0x80 is a loud µ-law sample). We use bounded queues of 20 ms frames
  instead, padded with real G.711 silence.
* **Robustness.** A short or odd packet makes pyVoIP raise ``TypeError``/``IndexError`` in its
  receive thread, which then dies silently (telephone-event codes above 15 do it too). Every
  packet is now checked and a bad one is dropped; header extensions and padding are skipped.
* **DTMF.** pyVoIP reports a digit only on the packet with the marker bit, so one lost packet
  loses the digit. We report an event on the first packet seen with a new (SSRC, timestamp),
  which RFC 4733 guarantees is unique per key press. When the offer has no telephone-event,
  keys are detected in the audio instead (``gateway.media.audio.DtmfDetector``).
* **Pacing.** pyVoIP's transmitter drifts (each oversleep adds up, about 0.5 % slow); ours
  sends on an absolute 20 ms schedule and sets the marker bit on the first packet.
* **Receiving.** pyVoIP polls every 10 ms and cannot see who sent a packet; ours blocks with
  a short timeout and accepts RTP from one sender only (learnt from the first valid packet,
  re-learnt after 2 s of quiet), so nobody else can inject audio or a "press 5" digit.
* **Threads and sockets.** The socket is bound in ``MediaSession.__init__`` (the SDP answer
  needs the port before the call starts) and the worker threads are daemons, so a call that
  is never closed cannot keep the gateway from exiting.

Public API (the SIP layer codes against this):
    RecordingResult(path, duration_s, size_bytes, stopped)
    MediaSession(offer, local_ip, port_range, *, bind_ip=None)
        Binds a free even UDP port in ``port_range`` (inclusive); ``local_ip`` goes into the
        SDP answer, ``bind_ip`` (default: ``local_ip``) is where the socket listens, so a NAT
        public address can be announced while binding the LAN one.
        .local_port: int          .codec: Codec          .closed: bool
        .answer_sdp() -> str      the SDP answer (same session id every time)
        .update(offer)            apply a re-INVITE's offer (address, hold/resume); SdpError
                                  if it drops our codec
        .start()                  start sending/receiving RTP (idempotent)
        .play(wav)                block until the WAV (any PCM format) has been sent, or close()
        .play_pcm(pcm)            same for PCM16 8 kHz mono bytes
        .play_sit() / .play_beep()
        .record(path, *, max_seconds, silence_seconds, silence_threshold=..., claim=None)
                                  -> RecordingResult | None (see its docstring); written to
                                  disk as it arrives
        .wait_for_digit(timeout) -> str | None   oldest digit received since start():
                                  RFC 4733 telephone-event, or in-band DTMF tones when the
                                  offer has no telephone-event
        .clear_digits()           forget digits typed so far (e.g. during a prompt)
        .seconds_since_media() -> float | None   age of the last RTP packet (RTP timeout)
        .close()                  idempotent, any thread; unblocks play/record/wait at once

Play, record and wait_for_digit may run in different threads at the same time (e.g. record
while waiting for a digit); two play() calls are serialised. Only one record() at a time.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pyVoIP.RTP import (
    PayloadType,
    RTPClient,
    RTPMessage,
    RTPPacketManager,
    RTPParseError,
    TransmitType,
)

from gateway.media import audio
from gateway.media.sdp import (
    Codec,
    SdpError,
    SessionDescription,
    answer_direction,
    build_answer,
    choose_codec,
    offers_codec,
)

__all__ = ["MediaSession", "RecordingResult"]

log = logging.getLogger(__name__)

SILENCE_RMS = audio.SILENCE_RMS
"""PCM16 RMS under which a 20 ms frame counts as silence (about -44 dBFS; line noise is lower)."""
MIN_VOICED_SECONDS = audio.MIN_VOICED_SECONDS
"""A recording with less sound than this is dropped (a cough, a click, a dialer's hang-up)."""
MAX_PLAY_SECONDS = 300.0
"""Longest prompt played: caps the memory an owner's oversized WAV can take."""
TRAILING_SILENCE_KEPT = 0.5
"""Seconds of silence kept after the last sound, so a message does not end abruptly."""

_AHEAD_FRAMES = 10  # play() queues at most 200 ms ahead, so close() cuts it off promptly
_INCOMING_FRAMES = 250  # 5 s of received audio buffered at most when nobody reads it
_MAX_GAP_SAMPLES = audio.SAMPLE_RATE  # fill RTP timestamp gaps up to 1 s with silence
_DTMF_KEYS = "0123456789*#ABCD"
_JOIN_SECONDS = 1.0
_RECV_TIMEOUT = 0.05
_RELATCH_SECONDS = 2.0  # another sender may take over the stream after this much quiet


@dataclass(frozen=True)
class RecordingResult:
    """A voicemail written to disk, and what ended it."""

    path: Path
    duration_s: float
    size_bytes: int
    stopped: str = ""  # silence | max_seconds | hangup | cap | disk


class _Outgoing(RTPPacketManager):
    """The transmitter's source: a short queue of encoded 20 ms payloads."""

    def __init__(self, silence_frame: bytes) -> None:
        # A subclass so it can stand in for RTPClient.pmout; the base buffers stay unused.
        super().__init__()  # type: ignore[no-untyped-call]
        self._silence = silence_frame
        self._frames: deque[bytes] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def read(self, length: int = 160) -> bytes:
        """Return the next payload, or G.711 silence when nothing is queued."""
        with self._cond:
            if self._frames:
                frame = self._frames.popleft()
                self._cond.notify_all()
                return frame
        return self._silence

    def write(self, offset: int, data: bytes) -> None:
        """Queue one payload (the offset is ignored; frames go out in order)."""
        self.put(data)

    def put(self, frame: bytes) -> bool:
        """Queue a payload, waiting while the queue is full; False once closed."""
        with self._cond:
            while len(self._frames) >= _AHEAD_FRAMES and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            self._frames.append(frame)
            return True

    def drain(self) -> None:
        """Wait until every queued payload has been handed to the transmitter, or close()."""
        with self._cond:
            while self._frames and not self._closed:
                self._cond.wait()

    def close(self) -> None:
        """Drop what is queued and wake every waiter."""
        with self._cond:
            self._closed = True
            self._frames.clear()
            self._cond.notify_all()


class _Incoming:
    """Received audio as PCM16 chunks, bounded, in RTP timestamp order."""

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque(maxlen=_INCOMING_FRAMES)
        self._cond = threading.Condition()
        self._closed = False
        self._ssrc: int | None = None
        self._next_ts = 0

    def push(self, ssrc: int, timestamp: int, pcm: bytes) -> None:
        """Add one packet's audio, filling short timestamp gaps and dropping late packets."""
        samples = len(pcm) // 2
        with self._cond:
            if self._ssrc == ssrc:
                gap = (timestamp - self._next_ts) % 2**32
                if gap >= 2**31:
                    return  # late or duplicate: it is already covered by what we have
                if 0 < gap <= _MAX_GAP_SAMPLES:
                    self._chunks.append(audio.silence(gap / audio.SAMPLE_RATE))
            self._ssrc = ssrc
            self._next_ts = (timestamp + samples) % 2**32
            self._chunks.append(pcm)
            self._cond.notify_all()

    def clear(self) -> None:
        """Forget audio received so far."""
        with self._cond:
            self._chunks.clear()

    def take(self, timeout: float) -> list[bytes]:
        """Return what was received, waiting up to `timeout` when nothing is there yet."""
        with self._cond:
            if not self._chunks and not self._closed:
                self._cond.wait(timeout)
            chunks = list(self._chunks)
            self._chunks.clear()
            return chunks

    def close(self) -> None:
        """Wake the reader for good."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class _Digits:
    """RFC 4733 key presses, each reported once."""

    def __init__(self) -> None:
        self._digits: deque[str] = deque(maxlen=32)
        self._seen: deque[tuple[int, int]] = deque(maxlen=16)
        self._cond = threading.Condition()
        self._closed = False

    def event(self, ssrc: int, timestamp: int, code: int) -> None:
        """Record a telephone-event packet; repeats of the same press are ignored."""
        if code >= len(_DTMF_KEYS):
            return  # flash hook, tones etc.: not a key
        key = (ssrc, timestamp)
        with self._cond:
            if key in self._seen:
                return
            self._seen.append(key)
            self._digits.append(_DTMF_KEYS[code])
            self._cond.notify_all()

    def key(self, key: str) -> None:
        """Record a key press detected in the audio."""
        with self._cond:
            self._digits.append(key)
            self._cond.notify_all()

    def wait(self, timeout: float) -> str | None:
        """Pop the oldest digit, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while not self._digits and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._digits.popleft() if self._digits else None

    def clear(self) -> None:
        """Forget digits received so far."""
        with self._cond:
            self._digits.clear()

    def close(self) -> None:
        """Wake the waiter for good."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _strip_payload(msg: RTPMessage) -> bytes:
    """Return the RTP payload without header extension and padding (pyVoIP keeps both)."""
    payload: bytes = msg.payload
    if msg.extension:
        if len(payload) < 4:
            return b""
        payload = payload[4 + 4 * int.from_bytes(payload[2:4], "big") :]
    if msg.padding and payload:
        payload = payload[: -payload[-1]] if payload[-1] <= len(payload) else b""
    return payload


class _RtpClient(RTPClient):
    """pyVoIP's RTPClient with correct G.711, bounded buffers and a hardened receiver."""

    def __init__(
        self,
        sock: socket.socket,
        codec: Codec,
        te_pt: int | None,
        remote: tuple[str, int],
        send: bool,
        incoming: _Incoming,
        digits: _Digits,
    ) -> None:
        payload_type = PayloadType.PCMA if codec.name == "PCMA" else PayloadType.PCMU
        # The audio codec first: RTPClient sends with the first entry that has a number.
        assoc: dict[int, PayloadType] = {codec.payload_type: payload_type}
        if te_pt is not None:
            assoc[te_pt] = PayloadType.EVENT
        local_ip, local_port = sock.getsockname()[:2]
        super().__init__(assoc, local_ip, local_port, remote[0], remote[1], TransmitType.SENDRECV)
        self._sock = sock
        self._payload_type = codec.payload_type
        # Read once per packet by the transmitter and replaced whole by MediaSession.update(),
        # so a re-INVITE needs no lock: (host, port, may_send).
        self.destination: tuple[str, int, bool] = (remote[0], remote[1], send)
        self._encode: Callable[[bytes], bytes] = (
            audio.alaw_encode if payload_type == PayloadType.PCMA else audio.ulaw_encode
        )
        self.outgoing = _Outgoing(self._encode(audio.silence(0.020)))
        self.pmout = self.outgoing
        self._incoming = incoming
        self._digits = digits
        self._threads: list[threading.Thread] = []
        # Without telephone-event the keys can only come as tones in the audio. With it we
        # do not listen for tones: a peer may send both, and each press would count twice.
        self._inband = audio.DtmfDetector() if te_pt is None else None
        self.source: tuple[str, int] | None = None  # where the remote's RTP comes from
        self.source_seen = 0.0

    def encode_pcm(self, pcm: bytes) -> list[bytes]:
        """Encode PCM16 into 20 ms payloads for the negotiated codec."""
        pad = -len(pcm) % audio.FRAME_BYTES
        payload = self._encode(pcm + bytes(pad))
        step = audio.FRAME_SAMPLES
        return [payload[i : i + step] for i in range(0, len(payload), step)]

    def start(self) -> None:
        """Start the receive and transmit threads."""
        # Replaces RTPClient.start: it would create and bind a new socket and start
        # non-daemon Timer threads.
        self.sin = self._sock
        self.sout = self._sock
        targets: list[tuple[str, Callable[[], None]]] = [
            ("rtp-recv", self.recv),
            ("rtp-send", self.trans),
        ]
        for name, target in targets:
            thread = threading.Thread(target=target, name=f"{name}-{self.inPort}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        """Stop both loops, then close the socket (so the sender never hits a closed one)."""
        self.NSD = False
        current = threading.current_thread()
        for thread in self._threads:
            if thread is not current:
                thread.join(_JOIN_SECONDS)
        self._sock.close()

    def trans(self) -> None:
        """Send one packet every 20 ms on an absolute schedule until stopped."""
        # Replaces RTPClient.trans, which sleeps "20 ms minus the time spent" after each
        # packet: every oversleep adds up (49.76 packets/s measured on loopback, 0.5 % slow),
        # so the phone's jitter buffer runs dry now and then and the prompt crackles. The
        # packet layout, sequence, timestamp and SSRC are pyVoIP's.
        interval = audio.FRAME_SAMPLES / audio.SAMPLE_RATE
        # The negotiated number, not int(self.preference): a peer may map PCMA to a dynamic
        # payload type (a=rtpmap:96 PCMA/8000), and RFC 3264 says we send what it offered.
        payload_type = self._payload_type & 0x7F
        marker = 0x80  # first packet of the stream (RFC 3551 §4.1)
        next_send = time.monotonic()
        while self.NSD:
            payload = self.pmout.read()
            header = struct.pack(
                "!BBHII",
                0x80,
                marker | payload_type,
                self.outSequence & 0xFFFF,
                self.outTimestamp & 0xFFFFFFFF,
                self.outSSRC & 0xFFFFFFFF,
            )
            host, port, send = self.destination
            if send:  # on hold we keep the clock (and drain play()) but send nothing
                marker = 0
                try:
                    self.sout.sendto(header + payload, (host, port))
                except OSError as exc:  # e.g. no route yet; the next packet may get through
                    log.debug("RTP send to %s:%s failed: %s", host, port, exc)
            self.outSequence = (self.outSequence + 1) & 0xFFFF
            self.outTimestamp = (self.outTimestamp + len(payload)) & 0xFFFFFFFF
            next_send += interval
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -0.2:
                # We were stalled (swap, CPU hog): start a new schedule rather than burst.
                next_send = time.monotonic()

    def encode_packet(self, payload: bytes) -> bytes:
        """Return the payload as is: _Outgoing already holds encoded G.711."""
        return payload

    def recv(self) -> None:
        """Receive and dispatch packets until stopped."""
        # Replaces RTPClient.recv, which polls a non-blocking socket every 10 ms (100 wake-ups
        # a second per call, idle or not) and uses recv(), so it cannot tell who sent a
        # packet. We block with a short timeout and latch onto one sender (below).
        while self.NSD:
            try:
                packet, source = self._sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                if not self.NSD:
                    break
                time.sleep(0.01)  # transient socket error: do not spin
                continue
            if not self._from_peer(packet, source):
                continue
            try:
                self.parse_packet(packet)
            except RTPParseError as exc:
                log.debug("dropped RTP packet from %s: %s", source, exc)

    def _from_peer(self, packet: bytes, source: tuple[str, int]) -> bool:
        """Accept RTP from one sender only: the first valid one, or a new one after a pause.

        Stops a third party from injecting audio or digits (a "press 5" answer) into a call
        it is not part of. The sender need not be the SDP address: NATs and SBCs often send
        from elsewhere, so we learn it from traffic, as strict-RTP learning does in PBXs.
        """
        source = (str(source[0]), int(source[1]))
        now = time.monotonic()
        if source == self.source:
            self.source_seen = now
            return True
        # Only a plausible packet for this session may claim the stream.
        if len(packet) < 12 or packet[0] >> 6 != 2 or packet[1] & 0x7F not in self.assoc:
            return False
        if self.source is not None and now - self.source_seen < _RELATCH_SECONDS:
            return False
        if self.source is not None:
            log.info("RTP source changed from %s to %s", self.source, source)
        self.source = source
        self.source_seen = now
        return True

    def parse_packet(self, packet: bytes) -> None:
        """Dispatch one received datagram; anything malformed becomes RTPParseError."""
        if len(packet) < 12:
            raise RTPParseError(f"RTP packet too short ({len(packet)} bytes)")
        try:
            msg = RTPMessage(packet, self.assoc)
            if msg.payload_type in (PayloadType.PCMA, PayloadType.PCMU):
                self._on_audio(msg, msg.payload_type)
            elif msg.payload_type == PayloadType.EVENT:
                self.parse_telephone_event(msg)
            # Anything else (comfort noise, a codec we did not pick) is ignored.
        except RTPParseError:
            raise
        except Exception as exc:  # a stranger's packet must never kill the receiver thread
            raise RTPParseError(f"bad RTP packet: {exc!r}") from exc

    def _on_audio(self, msg: RTPMessage, payload_type: PayloadType) -> None:
        payload = _strip_payload(msg)
        if not payload:
            return
        # Decode by what the packet says it is, so a peer that switches codec still works.
        if payload_type == PayloadType.PCMA:
            pcm = audio.alaw_decode(payload)
        else:
            pcm = audio.ulaw_decode(payload)
        self._incoming.push(msg.SSRC, msg.timestamp, pcm)
        if self._inband is not None:
            for key in self._inband.feed(pcm):
                self._digits.key(key)

    def parse_telephone_event(self, packet: RTPMessage) -> None:
        """Report a key press from an RFC 4733 telephone-event packet."""
        payload = _strip_payload(packet)
        if len(payload) >= 4:
            self._digits.event(packet.SSRC, packet.timestamp, payload[0])


def _may_send(offer: SessionDescription) -> bool:
    """Tell whether we may send media for this offer (not on hold, not recvonly for us)."""
    on_hold = ipaddress.ip_address(offer.remote_ip).is_unspecified  # RFC 2543-style hold
    return answer_direction(offer.direction) in ("sendrecv", "sendonly") and not on_hold


def _bind_even_port(bind_ip: str, port_range: tuple[int, int]) -> socket.socket:
    """Bind a UDP socket to a free even port in the inclusive range, starting at random."""
    low, high = port_range
    if not 0 < low <= high < 65536:
        raise ValueError(f"invalid RTP port range {low}-{high}")
    first = low + (low % 2)
    candidates = list(range(first, high + 1, 2))
    if not candidates:
        raise ValueError(f"RTP port range {low}-{high} holds no even port")
    # Start at a random place so consecutive calls do not fight over the same port.
    start = random.randrange(len(candidates))
    family = socket.AF_INET6 if ipaddress.ip_address(bind_ip).version == 6 else socket.AF_INET
    for port in candidates[start:] + candidates[:start]:
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((bind_ip, port))
        except OSError:
            sock.close()
            continue
        # The receive loop wakes up this often to notice stop(); sends never wait that long.
        sock.settimeout(_RECV_TIMEOUT)
        return sock
    raise OSError(f"no free even UDP port for RTP in {low}-{high} on {bind_ip}")


class MediaSession:
    """The audio side of one answered call."""

    def __init__(
        self,
        offer: SessionDescription,
        local_ip: str,
        port_range: tuple[int, int],
        *,
        bind_ip: str | None = None,
    ) -> None:
        self.offer = offer
        self.codec: Codec = choose_codec(offer)
        self.local_ip = local_ip
        self._session_id = random.randint(1, 2**31 - 1)
        self._sock = _bind_even_port(bind_ip or local_ip, port_range)
        self.local_port: int = int(self._sock.getsockname()[1])
        self._version = self._session_id
        send = _may_send(offer)
        self._incoming = _Incoming()
        self._digits = _Digits()
        try:
            self._client = _RtpClient(
                self._sock,
                self.codec,
                offer.telephone_event_pt,
                (offer.remote_ip, offer.remote_port),
                send,
                self._incoming,
                self._digits,
            )
        except BaseException:
            self._sock.close()  # do not leak the port when construction fails
            raise
        self._lock = threading.Lock()
        self._play_lock = threading.Lock()
        self._started = False
        self._closed = False

    @property
    def closed(self) -> bool:
        """Tell whether close() has been called."""
        return self._closed

    def answer_sdp(self) -> str:
        """Return the SDP answer to the current offer (the one given last to update())."""
        return build_answer(
            self.offer,
            self.local_ip,
            self.local_port,
            self._session_id,
            version=self._version,
            codec=self.codec,
        )

    def update(self, offer: SessionDescription) -> None:
        """Apply a re-INVITE's offer: new remote address, hold/resume; the codec stays.

        Raises SdpError when the new offer drops our codec (the SIP side answers 488 and the
        call goes on as before). Call answer_sdp() afterwards for the answer to send.
        """
        if not offers_codec(offer, self.codec):
            raise SdpError(
                f"re-offer drops {self.codec.name}/{self.codec.payload_type} used by this call"
            )
        if offer != self.offer:
            self._version += 1  # RFC 3264 §8: a changed description gets a new version
        self.offer = offer
        self._client.destination = (offer.remote_ip, offer.remote_port, _may_send(offer))

    def start(self) -> None:
        """Start sending and receiving RTP; does nothing if started or closed."""
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
            self._client.start()
        log.debug(
            "RTP %s:%d <-> %s:%d (%s)",
            self.local_ip,
            self.local_port,
            self.offer.remote_ip,
            self.offer.remote_port,
            self.codec.name,
        )

    def play(self, wav: Path) -> None:
        """Play a WAV file (any PCM format) to the caller; blocks until sent or close().

        Raises OSError if the file cannot be read and ValueError if it is not PCM WAV; only
        the first MAX_PLAY_SECONDS are played.
        """
        self.play_pcm(audio.read_wav(wav, max_seconds=MAX_PLAY_SECONDS))

    def play_pcm(self, pcm: bytes) -> None:
        """Play PCM16 8 kHz mono audio; blocks until sent or close()."""
        self.start()
        frames = self._client.encode_pcm(pcm)
        outgoing = self._client.outgoing
        with self._play_lock:
            for frame in frames:
                if not outgoing.put(frame):
                    return
            outgoing.drain()

    def play_sit(self) -> None:
        """Play the SIT "intercept" tones (number not in service)."""
        self.play_pcm(audio.sit_tone())

    def play_beep(self) -> None:
        """Play the "speak now" beep."""
        self.play_pcm(audio.beep())

    def record(
        self,
        path: Path,
        *,
        max_seconds: float,
        silence_seconds: float,
        silence_threshold: int = SILENCE_RMS,
        claim: audio.Claim | None = None,
    ) -> RecordingResult | None:
        """Record the caller to a WAV (8 kHz mono 16-bit) until a limit, silence or close().

        Stops after `max_seconds`, after `silence_seconds` without sound (counted from the
        start too, so a silent robot is dropped quickly), when close() is called (the caller
        hung up), when `claim` grants fewer bytes than arrived (a cap: the message stops at
        it) or when the disk refuses a write (what was written is kept). The audio goes to
        `path` as it arrives (`audio.WavStream`: a valid WAV up to its last flush even if the
        process dies); trailing silence is trimmed at the end. Returns None and leaves no file
        when less than MIN_VOICED_SECONDS of sound was heard. Memory stays at a few frames.
        """
        if max_seconds <= 0 or silence_seconds <= 0:
            raise ValueError("max_seconds and silence_seconds must be positive")
        self.start()
        max_bytes = 2 * int(max_seconds * audio.SAMPLE_RATE)
        keep = 0  # bytes up to the end of the last loud chunk
        voiced_bytes = 0
        self._incoming.clear()  # what was said during the greeting is not the message
        path.parent.mkdir(parents=True, exist_ok=True)
        out = audio.WavStream(path, claim=claim)
        begin = time.monotonic()
        last_sound = begin
        stopped = "silence"
        try:
            while True:
                for chunk in self._incoming.take(timeout=0.05):
                    chunk = chunk[:max_bytes - out.data_bytes]
                    if not chunk or out.stopped:
                        break
                    written = out.write(chunk)
                    if audio.rms(chunk[:written]) >= silence_threshold:
                        keep = out.data_bytes
                        voiced_bytes += written
                        last_sound = time.monotonic()
                now = time.monotonic()
                if self._closed:
                    stopped = "hangup"
                elif out.error is not None:
                    stopped = "disk"
                    log.error("recording %s stopped by the disk (%s); keeping %.1f s",
                              path.name, out.error, out.data_bytes / (2 * audio.SAMPLE_RATE))
                elif out.limited:
                    stopped = "cap"
                elif out.data_bytes >= max_bytes or now - begin >= max_seconds:
                    stopped = "max_seconds"
                elif now - last_sound >= silence_seconds:
                    stopped = "silence"
                else:
                    continue
                break
        except BaseException:
            out.close()  # whatever happened, the file stays a valid WAV of what was heard
            raise
        if voiced_bytes < 2 * MIN_VOICED_SECONDS * audio.SAMPLE_RATE:
            out.discard()
            return None
        tail = 2 * int(TRAILING_SILENCE_KEPT * audio.SAMPLE_RATE)
        size = out.close(keep_bytes=keep + tail)
        return RecordingResult(path=path, duration_s=out.data_bytes / (2 * audio.SAMPLE_RATE),
                               size_bytes=size, stopped=stopped)

    def wait_for_digit(self, timeout: float) -> str | None:
        """Return the oldest key press not yet read, waiting up to `timeout` seconds."""
        self.start()
        return self._digits.wait(timeout)

    def clear_digits(self) -> None:
        """Forget digits received so far."""
        self._digits.clear()

    def seconds_since_media(self) -> float | None:
        """Return how long ago the caller's last RTP packet arrived (None: none yet)."""
        # For an RTP timeout: a caller whose NAT dropped the call never sends BYE.
        if self._client.source is None:
            return None
        return time.monotonic() - self._client.source_seen

    def close(self) -> None:
        """Stop the media and release the port; safe to call twice and from any thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            started = self._started
        # Wake the waiters first, so play/record/wait return at once.
        self._client.outgoing.close()
        self._incoming.close()
        self._digits.close()
        if started:
            self._client.stop()
        else:
            self._sock.close()
