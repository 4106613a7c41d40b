"""SIPp scenarios and command lines shared by the flood tests and the flood benches.

A scenario is SIPp's XML; `[field0]` as the caller takes numbers from an injection file
(`-inf`). `timed=True` marks what SIPp's response-time counter measures (`-trace_rtt`): from the
INVITE to the refusal, or from the CANCEL to its 487.
"""

from __future__ import annotations

from pathlib import Path

_SDP = """\
      v=0
      o=sipp 1 1 IN IP4 [local_ip]
      s=-
      c=IN IP4 [media_ip]
      t=0 0
      m=audio [media_port] RTP/AVP 0
      a=rtpmap:0 PCMU/8000
"""


def _request(method: str, caller: str, callee: str, *, first: bool = False, sdp: bool = False,
             to_tag: bool = False) -> str:
    via = ("Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]" if first
           else "[last_Via:]")
    to = "[last_To:]" if to_tag else f"To: <sip:{callee}@[remote_ip]:[remote_port]>"
    contact = "      Contact: <sip:sipp@[local_ip]:[local_port]>\n" if first else ""
    body = (f"      Content-Type: application/sdp\n      Content-Length: [len]\n\n{_SDP}"
            if sdp else "      Content-Length: 0\n")
    return (f"      {method} sip:{callee}@[remote_ip]:[remote_port] SIP/2.0\n"
            f"      {via}\n"
            f"      From: <sip:{caller}@127.0.0.1>;tag=[pid]T[call_number]\n"
            f"      {to}\n"
            f"      Call-ID: [call_id]\n"
            f"      CSeq: 1 {method}\n"
            f"{contact}"
            f"      Max-Forwards: 70\n"
            f"{body}\n")


def _scenario(name: str, steps: str) -> str:
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n'
            f'<scenario name="{name}">\n{steps}</scenario>\n')


def refused_call(caller: str, *, final: int = 603, callee: str = "home",
                 timed: bool = False) -> str:
    """An INVITE from `caller` that expects `final` (a 100 Trying or not), then its ACK."""
    start, stop = (' start_rtd="1"', ' rtd="1"') if timed else ("", "")
    return _scenario("refused call", (
        f'  <send retrans="500"{start}><![CDATA[\n'
        f'{_request("INVITE", caller, callee, first=True)}  ]]></send>\n'
        '  <recv response="100" optional="true"/>\n'
        f'  <recv response="{final}"{stop}/>\n'
        f'  <send><![CDATA[\n{_request("ACK", caller, callee, to_tag=True)}  ]]></send>\n'))


def ring_then_cancel(caller: str, ring_ms: int, *, callee: str = "home", sdp: bool = False,
                     timed: bool = False) -> str:
    """An INVITE that gets 100 Trying and rings `ring_ms`; then CANCEL, its 200, the 487, ACK."""
    start, stop = (' start_rtd="1"', ' rtd="1"') if timed else ("", "")
    return _scenario("ring then cancel", (
        '  <send retrans="500"><![CDATA[\n'
        f'{_request("INVITE", caller, callee, first=True, sdp=sdp)}  ]]></send>\n'
        '  <recv response="100"/>\n'
        f'  <pause milliseconds="{ring_ms}"/>\n'
        f'  <send{start}><![CDATA[\n{_request("CANCEL", caller, callee)}  ]]></send>\n'
        '  <recv response="200"/>\n'
        f'  <recv response="487"{stop}/>\n'
        f'  <send><![CDATA[\n{_request("ACK", caller, callee, to_tag=True)}  ]]></send>\n'))


def write_injection(path: Path, numbers: list[str]) -> Path:
    """An injection file (`-inf`) giving `[field0]` one number per call, in order."""
    path.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers), encoding="utf-8")
    return path


def sipp_command(sipp: str, port: int, scenario: Path, *, calls: int, rate: float, limit: int,
                 local_port: int, media_port: int, injection: Path | None = None,
                 timeout_s: int = 60) -> list[str]:
    """SIPp placing `calls` calls at `rate`/s (at most `limit` at once) to 127.0.0.1:`port`,
    from 127.0.0.1:`local_port`, without a console, its statistics on stdout."""
    inject = ["-inf", str(injection)] if injection is not None else []
    return [sipp, f"127.0.0.1:{port}", "-sf", str(scenario), *inject, "-i", "127.0.0.1",
            "-p", str(local_port), "-m", str(calls), "-r", str(rate), "-l", str(limit),
            "-timeout", f"{timeout_s}s", "-nostdin", "-trace_stat", "-fd", "1",
            "-mp", str(media_port)]
