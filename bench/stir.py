"""Benchmark reading a STIR/SHAKEN Identity header, with and without the ES256 check; prints
microseconds per call and the memory `cryptography` adds (loaded only with `[stir]` set).

    python bench/stir.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.call.passport import passport_of
from gateway.numbers import parse_caller
from gateway.sip.message import SipRequest, parse_message


def rss_kib() -> int:
    """Peak resident memory so far, KiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    """Time `passport_of` on a real-shaped header, unverified then verified."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    before = rss_kib()
    from gateway.call.certificates import Certificates  # measured: what [stir] costs
    from gateway.config import StirConfig
    from tests.stir import Signer
    print(f"cryptography + certificates loaded: +{(rss_kib() - before) / 1024:.1f} MiB peak RSS")
    now = datetime.now(UTC)
    signer = Signer(now=now)
    folder = Path(tempfile.mkdtemp())
    (folder / "sp-1234.pem").write_bytes(signer.pem())
    text = ("INVITE sip:home@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK1\r\n"
            "From: <sip:+33612345678@127.0.0.1>;tag=1\r\nTo: <sip:home@127.0.0.1>\r\n"
            f"Call-ID: b\r\nCSeq: 1 INVITE\r\nIdentity: {signer.passport()}\r\n"
            "Content-Length: 0\r\n\r\n")
    invite = parse_message(text.encode())
    assert isinstance(invite, SipRequest)
    caller = parse_caller("+33612345678", "FR")
    checker = Certificates(StirConfig(certificates_dir=folder))
    for check, label in ((None, "read, orig and iat"), (checker, "read + ES256 verify")):
        started = time.perf_counter()
        for _ in range(args.calls):
            passport = passport_of(invite, caller, now, check)
        elapsed = time.perf_counter() - started
        assert passport is not None and not passport.problem
        print(f"{label}: {elapsed / args.calls * 1e6:.0f} µs per call "
              f"({passport.signature.value})")


if __name__ == "__main__":
    main()
