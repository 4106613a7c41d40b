"""SDP offer/answer for one G.711 audio stream (RFC 4566, RFC 3264).

Ringfence only speaks PCMA/PCMU at 8 kHz plus RFC 4733 telephone-event, over plain RTP/AVP.

Public API (the SIP layer codes against this):
    Codec(payload_type, name, rate)
    SessionDescription(remote_ip, remote_port, codecs, telephone_event_pt, direction)
        ``codecs`` lists every format of the chosen audio stream in offered order, including
        telephone-event and codecs we cannot use; ``direction`` is sendrecv, sendonly,
        recvonly or inactive (media-level attribute wins over session-level).
    SdpError(ValueError)              the message names the offending line
    parse_sdp(body) -> SessionDescription
        Tolerant: CRLF or LF, unknown lines and attributes ignored, malformed lines skipped
        (and named in the error if nothing usable is left), c= at session or media level,
        several m= lines (the first usable audio one is taken). Raises SdpError when there
        is no usable audio (no RTP/AVP audio stream offering PCMA or PCMU), so the SIP side
        can answer 488 Not Acceptable Here.
    build_answer(offer, local_ip, local_port, session_id, *, version=None, codec=None) -> str
        First of PCMA/PCMU in the offer's order (or `codec`, which must be offered: a call
        keeps its codec across re-INVITEs), plus telephone-event when offered; the o= version
        defaults to the session id (pass a higher one for a re-INVITE's answer).
    build_offer(local_ip, local_port, session_id) -> str
        PCMA, PCMU and telephone-event/8000.
    choose_codec(offer) -> Codec      the codec build_answer picks (used by media.py)
    offers_codec(offer, codec) -> bool
    answer_direction(offer_direction) -> str
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "Codec",
    "SdpError",
    "SessionDescription",
    "answer_direction",
    "build_answer",
    "build_offer",
    "choose_codec",
    "offers_codec",
    "parse_sdp",
]

# RFC 3551 static payload types we may meet without an rtpmap line.
_STATIC_FORMATS: dict[int, tuple[str, int]] = {
    0: ("PCMU", 8000),
    3: ("GSM", 8000),
    4: ("G723", 8000),
    8: ("PCMA", 8000),
    9: ("G722", 8000),
    13: ("CN", 8000),
    18: ("G729", 8000),
}
_USABLE = ("PCMA", "PCMU")
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# Plain RTP only: SRTP (SAVP, SAVPF) needs keys we do not negotiate.
_PROFILES = ("RTP/AVP", "RTP/AVPF")
_TELEPHONE_EVENT = "telephone-event"
PTIME_MS = 20


class SdpError(ValueError):
    """An SDP body Ringfence cannot use; the message says which line and why."""


@dataclass(frozen=True)
class Codec:
    """One payload format of an audio stream."""

    payload_type: int
    name: str
    rate: int


@dataclass(frozen=True)
class SessionDescription:
    """What the remote side offered for its audio stream."""

    remote_ip: str
    remote_port: int
    codecs: tuple[Codec, ...]
    telephone_event_pt: int | None
    direction: str


@dataclass
class _Media:
    line_no: int
    line: str
    media: str = ""
    port: int = 0
    proto: str = ""
    formats: list[int] = field(default_factory=list)
    connection: str | None = None
    direction: str | None = None
    rtpmap: dict[int, tuple[str, int]] = field(default_factory=dict)
    problem: str | None = None  # why this m= line cannot be used, when it is malformed


def _parse_connection(value: str, where: str) -> str:
    parts = value.split()
    if len(parts) < 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"{where}: expected 'c=IN IP4 <address>'")
    # Multicast addresses carry a /ttl suffix; strip it, we only care about the host.
    address = parts[2].split("/", 1)[0]
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise SdpError(f"{where}: {address!r} is not an IP address") from None
    return address


def _parse_media(value: str, line_no: int, line: str, notes: list[str]) -> _Media:
    where = f"line {line_no} {line!r}"
    media = _Media(line_no, line)
    parts = value.split()
    if len(parts) < 4:
        media.problem = f"{where}: expected 'm=<media> <port> <proto> <fmt>...'"
        return media
    media.media, media.proto = parts[0], parts[2]
    port_text = parts[1].split("/", 1)[0]  # "49170/2" means a port pair count
    if not port_text.isdigit() or int(port_text) > 65535:
        media.problem = f"{where}: bad port {parts[1]!r}"
        return media
    media.port = int(port_text)
    if media.media == "audio" and media.proto in _PROFILES:
        for fmt in parts[3:]:
            if fmt.isdigit() and int(fmt) <= 127:
                media.formats.append(int(fmt))
            else:
                notes.append(f"{where}: bad payload type {fmt!r}")
    return media


def _parse_rtpmap(value: str, where: str) -> tuple[int, str, int]:
    # value: "8 PCMA/8000" or "101 telephone-event/8000" (maybe "/1" channels)
    head, _, encoding = value.partition(" ")
    pieces = encoding.strip().split("/")
    if not head.isdigit() or len(pieces) < 2 or not pieces[0] or not pieces[1].isdigit():
        raise SdpError(f"{where}: expected 'a=rtpmap:<pt> <name>/<rate>'")
    return int(head), pieces[0], int(pieces[1])


def parse_sdp(body: str) -> SessionDescription:
    """Parse an SDP offer and return its first usable audio stream."""
    if not body or not body.strip():
        raise SdpError("empty SDP body")
    # Tolerant on purpose (a caller we cannot parse gets no voicemail): a malformed line
    # is skipped and noted; the notes go into the error if nothing usable is left.
    notes: list[str] = []
    session_connection: str | None = None
    session_direction: str | None = None
    media: list[_Media] = []
    seen_version = False
    for line_no, raw in enumerate(body.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"line {line_no} {line[:80]!r}"
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            notes.append(f"{where}: not of the form '<type>=<value>'")
            continue
        kind, value = line[0], line[2:].strip()
        current = media[-1] if media else None
        try:
            if kind == "v":
                if value != "0":
                    raise SdpError(f"{where}: unsupported SDP version")
                seen_version = True
            elif kind == "c":
                address = _parse_connection(value, where)
                if current is None:
                    session_connection = address
                else:
                    current.connection = address
            elif kind == "m":
                media.append(_parse_media(value, line_no, line, notes))
            elif kind == "a":
                name, _, attr_value = value.partition(":")
                if name in _DIRECTIONS:
                    if current is None:
                        session_direction = name
                    else:
                        current.direction = name
                elif name == "rtpmap" and current is not None and current.formats:
                    pt, enc, rate = _parse_rtpmap(attr_value, where)
                    current.rtpmap[pt] = (enc, rate)
        except SdpError as exc:
            if kind == "v":
                raise
            notes.append(str(exc))

    def fail(message: str) -> SdpError:
        return SdpError(message + (f" (ignored: {'; '.join(notes)})" if notes else ""))

    if not seen_version:
        raise fail("missing 'v=0' line: not an SDP body")
    reasons: list[str] = []
    for m in media:
        where = f"line {m.line_no} {m.line!r}"
        if m.problem is not None:
            reasons.append(m.problem)
            continue
        if m.media != "audio":
            continue
        if m.proto not in _PROFILES:
            reasons.append(f"{where}: profile {m.proto} is not plain RTP/AVP (no SRTP support)")
            continue
        if m.port == 0:
            reasons.append(f"{where}: port 0 (stream rejected)")
            continue
        codecs: list[Codec] = []
        for pt in m.formats:
            if pt in m.rtpmap:
                enc, rate = m.rtpmap[pt]
            elif pt in _STATIC_FORMATS:
                enc, rate = _STATIC_FORMATS[pt]
            else:
                # A dynamic type without rtpmap is unusable; keep it listed by number only.
                enc, rate = f"pt{pt}", 0
            codecs.append(Codec(pt, enc, rate))
        if not any(_is_usable(c) for c in codecs):
            offered = ", ".join(f"{c.name}/{c.rate}" for c in codecs) or "nothing"
            reasons.append(f"{where}: no PCMA or PCMU offered (offered: {offered})")
            continue
        remote_ip = m.connection or session_connection
        if remote_ip is None:
            raise fail(f"{where}: no c= line at session or media level")
        te_pt = next(
            (
                c.payload_type
                for c in codecs
                if c.name.lower() == _TELEPHONE_EVENT and c.rate == 8000
            ),
            None,
        )
        direction = m.direction or session_direction or "sendrecv"
        return SessionDescription(remote_ip, m.port, tuple(codecs), te_pt, direction)
    if not reasons:
        raise fail("no m=audio line")
    raise fail("no usable audio stream: " + "; ".join(reasons))


def _is_usable(codec: Codec) -> bool:
    return codec.name.upper() in _USABLE and codec.rate == 8000


def choose_codec(offer: SessionDescription) -> Codec:
    """Return the first PCMA or PCMU codec in the offer's order."""
    for codec in offer.codecs:
        if _is_usable(codec):
            return Codec(codec.payload_type, codec.name.upper(), 8000)
    raise SdpError("offer has no PCMA or PCMU codec")


def offers_codec(offer: SessionDescription, codec: Codec) -> bool:
    """Tell whether the offer lists this codec (same payload type, name and rate)."""
    return any(
        c.payload_type == codec.payload_type
        and c.name.upper() == codec.name.upper()
        and c.rate == codec.rate
        for c in offer.codecs
    )


def answer_direction(offer_direction: str) -> str:
    """Return the direction to answer with (RFC 3264 §6.1)."""
    return {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
        offer_direction, "sendrecv"
    )


def _lines(
    local_ip: str,
    local_port: int,
    session_id: int,
    version: int,
    formats: list[tuple[int, str]],
    te_pt: int | None,
    direction: str,
) -> str:
    family = "IP6" if ipaddress.ip_address(local_ip).version == 6 else "IP4"
    if not 0 < local_port < 65536:
        raise ValueError(f"local_port {local_port} is not a valid UDP port")
    pts = [pt for pt, _ in formats]
    if te_pt is not None:
        pts.append(te_pt)
    out = [
        "v=0",
        f"o=ringfence {session_id} {version} IN {family} {local_ip}",
        "s=Ringfence",
        f"c=IN {family} {local_ip}",
        "t=0 0",
        f"m=audio {local_port} RTP/AVP {' '.join(str(pt) for pt in pts)}",
    ]
    out += [f"a=rtpmap:{pt} {name}/8000" for pt, name in formats]
    if te_pt is not None:
        out += [f"a=rtpmap:{te_pt} telephone-event/8000", f"a=fmtp:{te_pt} 0-15"]
    out += [f"a=ptime:{PTIME_MS}", f"a={direction}"]
    return "\r\n".join(out) + "\r\n"


def build_answer(
    offer: SessionDescription,
    local_ip: str,
    local_port: int,
    session_id: int,
    *,
    version: int | None = None,
    codec: Codec | None = None,
) -> str:
    """Build the SDP answer: one G.711 codec from the offer, plus telephone-event if offered."""
    if codec is None:
        codec = choose_codec(offer)
    elif not offers_codec(offer, codec):
        raise SdpError(
            f"offer has no {codec.name}/{codec.rate} at payload type {codec.payload_type}"
        )
    return _lines(
        local_ip,
        local_port,
        session_id,
        session_id if version is None else version,
        [(codec.payload_type, codec.name)],
        offer.telephone_event_pt,
        answer_direction(offer.direction),
    )


def build_offer(local_ip: str, local_port: int, session_id: int) -> str:
    """Build an SDP offer for PCMA, PCMU and telephone-event/8000."""
    return _lines(
        local_ip, local_port, session_id, session_id, [(8, "PCMA"), (0, "PCMU")], 101, "sendrecv"
    )
