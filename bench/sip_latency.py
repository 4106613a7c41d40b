"""Measure the gateway's SIP latency and footprint; print the numbers.

By default, the flood steps (bench/sip_steps.py): refused INVITEs stepped from 50 to 1,600/s
straight to `ringfence run`, each beside a Kamailio answering 603 itself under the same SIPp
load, the knee, then unknown callers that ring and are CANCELled:

    python bench/sip_latency.py [--ports 19000-19999] [--steps 50,100,...] [--seconds 10]
                                [--cancel-rate 500] [--tree DIR]

With `--phases`, the phases through a registrar (below).

Starts Kamailio (loopback, free ports), then `ringfence run` as its own process with one line
registered there, with two block entries in a fresh SQLite database: one number rejected with
603, one sent to voicemail (answered). SIPp places the calls through Kamailio and records the
time from INVITE to the first final response (reject) or to the 200 OK (answer). We read the
gateway's CPU time and RSS from /proc.

    python bench/sip_latency.py --phases [--rate 100] [--seconds 30] [--keep DIR]

Every phase is bounded in calls and time; all processes are stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.config import load_settings_from_text  # noqa: E402
from gateway.screening.caller import Caller  # noqa: E402
from gateway.screening.decide import Decision  # noqa: E402
from gateway.screening.rules import Action, ActionKind  # noqa: E402
from gateway.store import open_store  # noqa: E402
from tests.peers import free_port, wait_until  # noqa: E402
from tests.peers.fixtures import make_test_prompts  # noqa: E402
from tests.peers.kamailio import Kamailio  # noqa: E402

REJECTED = "+33600000001"
ANSWERED = "+33600000002"
CLK_TCK = os.sysconf("SC_CLK_TCK")

INVITE = """\
      INVITE sip:home@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{number}@127.0.0.1>;tag=[pid]T[call_number]
      To: <sip:home@[remote_ip]:[remote_port]>
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
      m=audio [media_port] RTP/AVP 8 0 101
      a=rtpmap:8 PCMA/8000
      a=rtpmap:0 PCMU/8000
      a=rtpmap:101 telephone-event/8000
"""

REJECT_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="reject">
  <nop start_rtd="2"/>
  <send retrans="500" start_rtd="1"><![CDATA[
{INVITE.format(number=REJECTED)}
  ]]></send>
  <recv response="100" optional="true" rtd="2"/>
  <recv response="603" rtd="1"/>
  <send><![CDATA[
      ACK sip:home@[remote_ip]:[remote_port] SIP/2.0
      [last_Via:]
      From: <sip:{REJECTED}@127.0.0.1>;tag=[pid]T[call_number]
      [last_To:]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
  ]]></send>
</scenario>
"""

ANSWER_SCENARIO = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="answer">
  <send retrans="500" start_rtd="1"><![CDATA[
{INVITE.format(number=ANSWERED)}
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="200" rtd="1" rrs="true"/>
  <send><![CDATA[
      ACK [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{ANSWERED}@127.0.0.1>;tag=[pid]T[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 1 ACK
      Max-Forwards: 70
      Content-Length: 0
  ]]></send>
  <pause/>
  <send retrans="500"><![CDATA[
      BYE [next_url] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: <sip:{ANSWERED}@127.0.0.1>;tag=[pid]T[call_number]
      [last_To:]
      [routes]
      Call-ID: [call_id]
      CSeq: 2 BYE
      Max-Forwards: 70
      Content-Length: 0
  ]]></send>
  <recv response="200"/>
</scenario>
"""


@dataclass
class Latency:
    """Response times of one SIPp run."""

    samples_ms: list[float]
    successful: int
    failed: int
    trying_ms: list[float] = field(default_factory=list)  # INVITE -> 100 Trying (rtd 2)

    def percentile(self, p: float) -> float:
        """The p-th percentile (nearest rank)."""
        if not self.samples_ms:
            return math.nan
        ordered = sorted(self.samples_ms)
        rank = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return ordered[rank]

    def summary(self) -> str:
        """p50/p99/max and counts in one line."""
        if not self.samples_ms:
            return f"no samples (ok {self.successful}, failed {self.failed})"
        return (f"p50 {self.percentile(50):6.1f} ms   p99 {self.percentile(99):6.1f} ms   "
                f"max {max(self.samples_ms):6.1f} ms   mean "
                f"{statistics.fmean(self.samples_ms):6.1f} ms   calls ok {self.successful}, "
                f"failed {self.failed}")


def run_sipp(workdir: Path, scenario: str, kamailio: Kamailio, *, calls: int, rate: float,
             hold_ms: int = 0, limit: int = 200, timeout_s: int = 120,
             direct_port: int | None = None) -> Latency:
    """Run one SIPp scenario from Kamailio's trusted port (or straight to the gateway's
    `direct_port`, where the 100 Trying is ours and not Kamailio's); collect response times."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir, prefix="sipp-"))
    xml = run_dir / "scenario.xml"
    xml.write_text(scenario)
    target = f"127.0.0.1:{direct_port or kamailio.port}"
    local_port = free_port() if direct_port else kamailio.trusted_port
    args = [
        "sipp", target, "-sf", str(xml), "-i", "127.0.0.1",
        "-p", str(local_port), "-m", str(calls), "-r", str(rate), "-l", str(limit),
        "-d", str(hold_ms), "-timeout", f"{timeout_s}s", "-timeout_error", "-nostdin",
        "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1", "-mp", str(free_port()),
        "-recv_timeout", "10000", "-default_behaviors", "all,-bye",
    ]
    result = subprocess.run(args, cwd=run_dir, capture_output=True, text=True,
                            timeout=timeout_s + 30)
    samples: list[float] = []
    trying: list[float] = []
    for rtt in run_dir.glob("*_rtt.csv"):
        for line in rtt.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2 and parts[1].replace(".", "", 1).isdigit():
                # rtd 1: INVITE -> final response; rtd 2: INVITE -> 100 Trying
                (trying if len(parts) > 2 and parts[2].strip() == "2" else samples).append(
                    float(parts[1]))
    successful = failed = 0
    for stat in run_dir.glob("*_.csv"):
        lines = stat.read_text().splitlines()
        if len(lines) >= 2:
            header, last = lines[0].split(";"), lines[-1].split(";")
            row = dict(zip(header, last, strict=False))
            successful = int(row.get("SuccessfulCall(C)", 0) or 0)
            failed = int(row.get("FailedCall(C)", 0) or 0)
    if not samples and result.returncode not in (0, 1):
        print(f"  sipp exited {result.returncode}: {result.stderr[-400:]}")
    return Latency(samples, successful, failed, trying)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid`, including its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def threads(pid: int) -> int:
    """Threads alive in `pid` now."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0


def rss_mb(pid: int) -> float:
    """Resident set size of `pid` in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return math.nan


def footprint(pid: int, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, RSS MiB) over a window of `seconds`."""
    start_cpu, start = cpu_seconds(pid), time.monotonic()
    time.sleep(seconds)  # a measurement window, not a synchronisation
    used = cpu_seconds(pid) - start_cpu
    return 100 * used / (time.monotonic() - start), rss_mb(pid)


class StubSlot:
    """Room for one message, with no cap; nothing is kept."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def has_room(self) -> bool:
        """Always."""
        return True

    def claim(self, count: int) -> int:
        """Everything fits."""
        return count

    def save(self, duration_s: float, size_bytes: int) -> str:
        """Pretend to log."""
        return "1"

    def close(self) -> None:
        """Nothing is kept."""
        self.path.unlink(missing_ok=True)


class StubService:
    """A screening service with no database: isolates the SIP layer's own cost."""

    def screen(self, caller: Caller, now: datetime) -> Decision:
        """Reject REJECTED, take a voicemail from ANSWERED, let anything else ring."""
        if caller.number == REJECTED:
            return Decision(Action(ActionKind.REJECT, code=603), "bench", "block")
        if caller.number == ANSWERED:
            return Decision(Action(ActionKind.VOICEMAIL, prompt="greeting"), "bench", "block")
        return Decision(Action(ActionKind.PASS), "bench", "default")

    def record_call(self, caller: Caller, decision: Decision, *, at: datetime,
                    sip_call_id: str, line: str | None) -> str:
        """Pretend to log."""
        return "1"

    def finish_call(self, call_ref: str, *, duration_s: float, outcome: str) -> None:
        """Pretend to log."""

    def save_voicemail(self, call_ref: str | None, path: Path, duration_s: float,
                       size_bytes: int, *, caller: Caller | None = None) -> str:
        """Pretend to log."""
        return "1"

    def voicemail_space_left(self) -> int:
        """Plenty."""
        return 1 << 30

    def start_voicemail(self, call_ref: str | None, caller: Caller, path: Path,
                        at: datetime) -> StubSlot:
        """Room for any message; the file is deleted when the call ends."""
        return StubSlot(path)

    def auto_allow(self, number_e164: str, *, label: str = "passed challenge") -> None:
        """Unused."""

    def mark_known(self, number_e164: str) -> None:
        """Unused."""

    def challenge_digit(self) -> str:
        """Unused."""
        return "5"


def serve_stub(config: Path) -> int:
    """The gateway process for `--service stub`: our SIP layer around StubService."""
    import logging
    import threading as _threading

    from gateway.call.process import Gateway

    settings = load_settings_from_text(config.read_text(), config.parent)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stub = StubService()
    gateway = Gateway(settings, stub, stub)
    stop = _threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    gateway.start()
    while not stop.wait(1.0):
        pass
    gateway.stop()
    return 0


@contextlib.contextmanager
def gateway_process(workdir: Path, kamailio: Kamailio,
                    mode: str = "real") -> Iterator[subprocess.Popen[bytes]]:
    """`ringfence run` with one line at `kamailio` and the two bench block entries."""
    prompts = workdir / "prompts"
    make_test_prompts(prompts, seconds=0.5)
    config = workdir / "config.toml"
    line_port = free_port()
    config.write_text(f"""\
data_dir = "{workdir / 'data'}"
log_level = "info"
[gateway]
max_calls = 40
prompts_dir = "{prompts}"
rtp_ports = "16000-16400"
[voicemail]
max_seconds = 60
silence_seconds = 60
[[lines]]
name = "bench"
registrar = "127.0.0.1:{kamailio.port}"
username = "home"
password = "homepw"
listen = "127.0.0.1:{line_port}"
""")
    settings = load_settings_from_text(config.read_text(), workdir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = open_store(settings)
    store.entries.add("block", REJECTED, kind="exact", action="reject:603", label="bench")
    store.entries.add("block", ANSWERED, kind="exact", action="voicemail", label="bench")
    store.close()
    log = (workdir / "gateway.log").open("wb")
    command = [sys.executable, "-m", "gateway", "--config", str(config), "run"]
    if mode == "stub":
        command = [sys.executable, __file__, "--serve-stub", str(config)]
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        gateway_log = workdir / "gateway.log"
        wait_until(lambda: "-> registered" in gateway_log.read_text(errors="replace"), 20,
                   "the gateway to register")
        process.line_port = line_port  # type: ignore[attr-defined]
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()


def measure(workdir: Path, mode: str, rate: float, seconds: int) -> None:
    """All phases against one gateway process; prints as it goes."""
    kamailio = Kamailio(workdir / "kamailio")
    kamailio.start()
    try:
        with gateway_process(workdir, kamailio, mode) as gateway:
            pid = gateway.pid
            cpu, rss = footprint(pid, 5)
            print(f"idle:                      CPU {cpu:5.1f} % of a core   RSS {rss:5.1f} MiB")
            # warm-up: first calls pay for imports, caches and database pages
            run_sipp(workdir, REJECT_SCENARIO, kamailio, calls=5, rate=5)
            run_sipp(workdir, ANSWER_SCENARIO, kamailio, calls=2, rate=2, hold_ms=100)
            single_reject = run_sipp(workdir, REJECT_SCENARIO, kamailio, calls=100, rate=5)
            print(f"reject, single calls:      {single_reject.summary()}")
            single_answer = run_sipp(workdir, ANSWER_SCENARIO, kamailio, calls=20, rate=4,
                                     hold_ms=200)
            print(f"answer, single calls:      {single_answer.summary()}")
            calls = int(rate * seconds)
            start_cpu = cpu_seconds(pid)
            started = time.monotonic()
            loaded = run_sipp(workdir, REJECT_SCENARIO, kamailio, calls=calls, rate=rate,
                              timeout_s=seconds + 60)
            load_cpu = 100 * (cpu_seconds(pid) - start_cpu) / (time.monotonic() - started)
            print(f"reject, {rate:.0f} INVITE/s x {seconds} s: {loaded.summary()}")
            print(f"  gateway during the load: CPU {load_cpu:5.1f} % of a core   "
                  f"RSS {rss_mb(pid):5.1f} MiB")
            direct_flood(workdir, kamailio, pid, gateway.line_port,  # type: ignore[attr-defined]
                         rate, seconds)
            for active in (1, 10):
                result: list[Latency] = []

                def hold(n: int = active, result: list[Latency] = result) -> None:
                    result.append(run_sipp(workdir, ANSWER_SCENARIO, kamailio, calls=n,
                                           rate=n, hold_ms=9000, timeout_s=60))

                thread = threading.Thread(target=hold)
                thread.start()
                wait_until(lambda n=active: _active_rtp_sessions(pid) >= n, 15,
                           f"{active} answered calls")
                cpu, rss = footprint(pid, 4)
                thread.join(timeout=60)
                answered = result[0].summary() if result else "?"
                print(f"{active:2d} active call(s):         CPU {cpu:5.1f} % of a core   "
                      f"RSS {rss:5.1f} MiB   (answer {answered})")
    finally:
        kamailio.stop()


def direct_flood(workdir: Path, kamailio: Kamailio, pid: int, port: int, rate: float,
                 seconds: int) -> None:
    """Rejected INVITEs sent straight to the gateway: its own 100 Trying, CPU, threads."""
    calls = int(rate * seconds)
    start_cpu = cpu_seconds(pid)
    started = time.monotonic()
    peak_threads: list[int] = [threads(pid)]
    sampling = threading.Event()

    def sample_threads() -> None:
        while not sampling.wait(0.2):  # a sampling interval, not a synchronisation
            peak_threads.append(threads(pid))

    sampler = threading.Thread(target=sample_threads, daemon=True)
    sampler.start()
    loaded = run_sipp(workdir, REJECT_SCENARIO, kamailio, calls=calls, rate=rate,
                      timeout_s=seconds + 60, direct_port=port)
    sampling.set()
    sampler.join()
    used = cpu_seconds(pid) - start_cpu
    load_cpu = 100 * used / (time.monotonic() - started)
    trying = Latency(loaded.trying_ms, 0, 0)
    print(f"direct, {rate:.0f} INVITE/s x {seconds} s: {loaded.summary()}")
    print(f"  INVITE -> 100 Trying:    p50 {trying.percentile(50):6.1f} ms   "
          f"p99 {trying.percentile(99):6.1f} ms   max "
          f"{max(loaded.trying_ms, default=math.nan):6.1f} ms")
    print(f"  gateway during the load: CPU {load_cpu:5.1f} % of a core   "
          f"{1000 * used / max(1, calls):5.2f} ms CPU per INVITE   "
          f"threads {max(peak_threads)} at most")


def main(argv: list[str] | None = None) -> int:
    """The flood steps, or with --phases every phase through a registrar; print the results."""
    argv = sys.argv[1:] if argv is None else argv
    if "--phases" not in argv and not any(a.startswith("--serve-stub") for a in argv):
        import sip_steps  # bench/ is the script's folder: on sys.path

        return sip_steps.main(argv)
    argv = [a for a in argv if a != "--phases"]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=100.0, help="INVITEs per second under load")
    parser.add_argument("--seconds", type=int, default=30, help="length of the load phase")
    parser.add_argument("--service", choices=("real", "stub", "both"), default="both",
                        help="real: `ringfence run` on SQLite; stub: SIP layer alone")
    parser.add_argument("--keep", type=Path, help="keep logs and CSVs in this folder")
    parser.add_argument("--serve-stub", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_stub:
        return serve_stub(args.serve_stub)
    for binary in ("kamailio", "sipp"):
        if not (shutil.which(binary) or Path(f"/usr/sbin/{binary}").exists()):
            print(f"{binary} is not installed")
            return 2
    root = args.keep or Path(tempfile.mkdtemp(prefix="ringfence-bench-"))
    modes = ("stub", "real") if args.service == "both" else (args.service,)
    try:
        for mode in modes:
            print(f"--- gateway with the {mode} screening service ---")
            workdir = root / mode
            workdir.mkdir(parents=True, exist_ok=True)
            measure(workdir, mode, args.rate, args.seconds)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def _active_rtp_sessions(pid: int) -> int:
    """UDP sockets the gateway holds in its RTP range (one per answered call)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        parts = line.split()
        port = int(parts[1].split(":")[1], 16)
        if 16000 <= port <= 16400 and parts[9] in inodes:
            count += 1
    return count


if __name__ == "__main__":
    raise SystemExit(main())
