"""CPU cost of parsing SIP messages and of the accessors the user agent reads per INVITE.

    python bench/sip_parse.py [--runs 20000] [--tree DIR]

Prints µs per message for `parse_message` (validation included) of four messages: the INVITE
SIPp sends in the flood benchmarks, its ACK, a 200 OK with Record-Route and two Vias, and an
INVITE with an SDP body: the best of several timed batches ("warm"), then p50/p99 of `runs`
single parses, each timed on its own. Then the accessors the user agent and the transaction
layer call on every INVITE (top_via, vias, from_, to, cseq, call_id, get of the usual
headers), each once on a freshly parsed message ("first") and once more on the same message
("again"), the scanner check and the dialog check the UA makes of each INVITE, and the whole
receive-thread sequence (parse, those checks and reads) per refused INVITE.

`--tree DIR` imports `gateway` from another checkout (e.g. a `git worktree` of main), so
before and after run with the same script on the same machine, back to back. Single-threaded
and bounded (a few seconds); run it with `nice` beside other work and compare pairs.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def crlf(text: str) -> bytes:
    """A readable multi-line literal in wire format (CRLF, blank line after the headers)."""
    head, _, body = text.strip("\n").partition("\n\n")
    wire = head.replace("\n", "\r\n") + "\r\n\r\n"
    return wire.encode() + body.replace("\n", "\r\n").encode()


INVITE = crlf("""
INVITE sip:home@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:19005;branch=z9hG4bK-1234-1-0
From: <sip:+33600000001@127.0.0.1>;tag=1234T1
To: <sip:home@127.0.0.1:5060>
Call-ID: 1-1234@127.0.0.1
CSeq: 1 INVITE
Contact: <sip:sipp@127.0.0.1:19005>
Max-Forwards: 70
Content-Length: 0
""")

ACK = crlf("""
ACK sip:home@127.0.0.1:5060 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:19005;branch=z9hG4bK-1234-1-0
From: <sip:+33600000001@127.0.0.1>;tag=1234T1
To: <sip:home@127.0.0.1:5060>;tag=8f3a2b1c
Call-ID: 1-1234@127.0.0.1
CSeq: 1 ACK
Contact: <sip:sipp@127.0.0.1:19005>
Max-Forwards: 70
Content-Length: 0
""")

OK_200 = crlf("""
SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.168.1.20:5060;branch=z9hG4bK87asdks7;received=192.168.1.20;rport=5060
Via: SIP/2.0/UDP 10.0.0.2:5070;branch=z9hG4bK776asdhds
Record-Route: <sip:proxy.example.org;lr>, <sip:10.0.0.9;lr;ftag=as65e8>
From: "Alice" <sip:+33612345678@example.org>;tag=1928301774
To: <sip:home@example.org>;tag=a6c85cf
Call-ID: a84b4c76e66710@pc33.example.org
CSeq: 314159 INVITE
Contact: <sip:home@192.168.1.20:5060>
Server: ringfence
Content-Length: 0
""")

INVITE_SDP = crlf("""
INVITE sip:home@192.168.1.20 SIP/2.0
Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bK-sdp-1;rport
Max-Forwards: 69
From: "Cabinet Durand" <sip:+33140000000@sip.provider.example>;tag=as12bc34
To: <sip:+33612345678@sip.provider.example>
Call-ID: 3c26700a1b2c@203.0.113.5
CSeq: 102 INVITE
Contact: <sip:+33140000000@203.0.113.5:5060>
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY
Supported: replaces, timer
User-Agent: Provider SBC 4.2
Content-Type: application/sdp
Content-Length: 210

v=0
o=- 1718 1718 IN IP4 203.0.113.5
s=-
c=IN IP4 203.0.113.5
t=0 0
m=audio 40000 RTP/AVP 8 0 101
a=rtpmap:8 PCMA/8000
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-16
a=sendrecv
""")

MESSAGES = (("INVITE (SIPp)", INVITE), ("ACK (SIPp)", ACK),
            ("200 OK, Record-Route, 2 Via", OK_200), ("INVITE with SDP", INVITE_SDP))


def best_batch(call: Callable[[], Any], *, batch: int = 2000, repeats: int = 7) -> float:
    """µs per call: the fastest of `repeats` batches (the warm, undisturbed cost)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for _ in range(batch):
            call()
        best = min(best, (time.perf_counter_ns() - start) / batch)
    return best / 1000


def spread(call: Callable[[], Any], runs: int) -> tuple[float, float]:
    """p50 and p99 in µs of `runs` calls, each timed on its own."""
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] / 1000, cuts[98] / 1000


def ua_reads(message: Any) -> None:
    """The reads of the receive thread per INVITE besides the scanner check and the dialog
    (transaction key, make_response of 100 Trying and 603, the call's identity)."""
    for header in ("User-Agent", "Server", "From", "To", "Contact"):
        message.get(header)
    message.top_via()
    message.from_()
    message.to()
    message.cseq()
    _ = message.call_id
    message.get_all("Require")
    message.get_all("Contact")
    message.get_all("Record-Route")
    for _ in range(2):  # two responses: 100 Trying, then the final one
        message.get_all("Via")
        message.get("From")
        message.get("To")
        message.get("CSeq")
        _ = message.call_id
    message.top_via()
    message.from_()
    message.to()


def main() -> None:
    """Run the measurements and print them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20000, help="single parses for p50/p99")
    parser.add_argument("--tree", type=Path, help="import gateway from this checkout")
    args = parser.parse_args()
    tree = (args.tree or Path(__file__).resolve().parent.parent).resolve()
    sys.path.insert(0, str(tree))
    sip = importlib.import_module("gateway.sip.message")  # from the tree chosen at run time

    print(f"gateway from {tree}, Python {sys.version.split()[0]}")
    gc.disable()  # a collection inside one timed parse says nothing about the parser
    print(f"{'parse_message + validation':30} {'warm µs':>8} {'p50 µs':>8} {'p99 µs':>8}")
    for name, data in MESSAGES:
        sip.parse_message(data)
        warm = best_batch(lambda data=data: sip.parse_message(data))
        p50, p99 = spread(lambda data=data: sip.parse_message(data), args.runs)
        print(f"{name:30} {warm:8.2f} {p50:8.2f} {p99:8.2f}")

    accessors: list[tuple[str, Callable[[Any], Any]]] = [
        ("top_via()", lambda m: m.top_via()),
        ("vias()", lambda m: m.vias()),
        ("from_()", lambda m: m.from_()),
        ("to()", lambda m: m.to()),
        ("cseq()", lambda m: m.cseq()),
        ("call_id", lambda m: m.call_id),
        ("get() x5 (UA, Server, From, To, Contact)",
         lambda m: [m.get(h) for h in ("User-Agent", "Server", "From", "To", "Contact")]),
        ("get_all('Via')", lambda m: m.get_all("Via")),
    ]
    print(f"\naccessors on the SIPp INVITE      {'first µs':>8} {'again µs':>8}")
    fresh = [sip.parse_message(INVITE) for _ in range(2000)]
    for name, read in accessors:
        # "first": on messages parsed beforehand, never read (what validation left behind)
        messages = iter([sip.parse_message(INVITE) for _ in range(2000)])
        start = time.perf_counter_ns()
        for _ in range(2000):
            read(next(messages))
        first = (time.perf_counter_ns() - start) / 2000 / 1000
        again = best_batch(lambda read=read: read(fresh[0]))
        print(f"{name:40} {first:8.2f} {again:8.2f}")

    scanners = importlib.import_module("gateway.sip.scanners")
    dialog = importlib.import_module("gateway.sip.dialog")
    checks = (("scanner_signature", scanners.scanner_signature),
              ("Dialog.from_invite", lambda m: dialog.Dialog.from_invite(m, "check")))
    for name, check in checks:
        messages = iter([sip.parse_message(INVITE) for _ in range(2000)])
        start = time.perf_counter_ns()
        for _ in range(2000):
            check(next(messages))
        print(f"{name:40} {(time.perf_counter_ns() - start) / 2000 / 1000:8.2f}")

    def receive(data: bytes = INVITE) -> None:
        message = sip.parse_message(data)
        scanners.scanner_signature(message)
        dialog.Dialog.from_invite(message, "check")
        ua_reads(message)

    warm = best_batch(receive)
    p50, p99 = spread(receive, args.runs)
    print(f"\nper refused INVITE on the receive thread (parse, scanner check, dialog check, the "
          f"UA's reads):\n  warm {warm:.2f} µs, p50 {p50:.2f}, p99 {p99:.2f}")
    gc.enable()


if __name__ == "__main__":
    main()
