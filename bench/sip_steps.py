"""The flood steps of bench/sip_latency.py: rates stepped up, each beside a Kamailio anchor.

    python bench/sip_latency.py [--ports 19000-19999] [--steps 50,100,200,400,800,1600]
                                [--seconds 10] [--cancel-rate 500] [--tree DIR]

For each rate (50, 100, 200, 400, 800, 1,600 INVITE/s by default) SIPp sends `seconds` worth
of INVITEs from a block-listed number straight to the gateway (`ringfence run` on SQLite), and
the same load to a Kamailio that answers `sl_send_reply("603")` itself: the anchor, measured
in the same run, on the same machine, at the same moment. Printed per step: calls ok and
failed, INVITE -> 603 p50/p99, CPU per INVITE of each, and their ratio; then the knee (the
first rate the gateway does not keep up with: a failed call, p99 >= 50 ms or less than 95 %
of the rate offered). Optionally the same for unknown callers that ring and are CANCELled
(CANCEL -> 487). Each line also says how much of the machine's CPU time the hypervisor took
("steal", from /proc/stat) during that run: on a shared virtual machine the same code is
slower on a day with much steal, and the figure says which kind of day it was.

Every port comes from `--ports LOW-HIGH`, so the benchmark runs beside other work; every
process is started and stopped here, by its own id.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import phonenumbers  # the gateway's own dependency: the bench runs in its environment

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.peers.sipp import refused_call, ring_then_cancel  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
KNEE_P99_MS = 50.0
DEFAULT_STEPS = (50, 100, 200, 400, 800, 1600)


class PortRange:
    """Ports handed out from LOW-HIGH, each checked free for UDP and TCP on 127.0.0.1."""

    def __init__(self, text: str) -> None:
        low, _, high = text.partition("-")
        self.low, self.high = int(low), int(high or low)
        if not 1024 <= self.low <= self.high <= 65535:
            raise ValueError(f"--ports {text!r}: expected LOW-HIGH within 1024-65535")
        self.next = self.low

    def take(self, count: int = 1) -> int:
        """The first of `count` consecutive free ports (for an RTP range, count > 1)."""
        while self.next + count - 1 <= self.high:
            start = self.next
            self.next += count
            if all(_free(p) for p in range(start, start + count)):
                return start
        raise RuntimeError(f"no {count} free port(s) left in {self.low}-{self.high}")


def _free(port: int) -> bool:
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its child processes (Kamailio forks)."""
    total = 0.0
    pids = [pid]
    for path in Path("/proc").iterdir():
        if path.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (path / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == pid:  # the parent pid
                    pids.append(int(path.name))
    for each in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
    return total


def kamailio_binary() -> str:
    for candidate in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio"):
        if Path(candidate).exists():
            return candidate
    return "kamailio"


def kamailio_modules() -> str:
    for candidate in ("/usr/lib/x86_64-linux-gnu/kamailio/modules",
                      "/usr/lib/aarch64-linux-gnu/kamailio/modules",
                      "/usr/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules"):
        if Path(candidate).is_dir():
            return candidate
    raise RuntimeError("Kamailio's modules folder not found")


ANCHOR_CFG = """#!KAMAILIO
# The anchor: Kamailio refusing every INVITE itself, stateless. Two workers, no logging.
debug=0
log_stderror=yes
children=2
listen=udp:127.0.0.1:{port}
auto_aliases=no
rundir="{rundir}"
loadpath "{modules}/"
loadmodule "sl.so"
request_route {{
\tif (method == "ACK") {{ exit; }}
\tif (method == "INVITE") {{ sl_send_reply("603", "Decline"); exit; }}
\tsl_send_reply("200", "OK");
\texit;
}}
"""


@contextlib.contextmanager
def anchor(workdir: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """Kamailio answering 603 to every INVITE on 127.0.0.1:`port`; stopped afterwards."""
    folder = workdir / "anchor"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "anchor.cfg"
    config.write_text(ANCHOR_CFG.format(port=port, rundir=folder, modules=kamailio_modules()))
    log = (folder / "kamailio.log").open("wb")
    process = subprocess.Popen([kamailio_binary(), "-f", str(config), "-DD", "-E", "-m", "32",
                                "-M", "8"], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_answering(process, port, 15, "the Kamailio anchor", folder / "kamailio.log", 500)
        yield process
    finally:
        stop(process, 15)
        log.close()


def wait_answering(process: subprocess.Popen[bytes], port: int, timeout_s: float, what: str,
                   log: Path, tail: int) -> None:
    """Wait until `process` answers OPTIONS on `port`; raise with its log's end if it exits
    or does not answer within `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not _answers_options(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start: "
                               + log.read_text(errors="replace")[-tail:])
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM, then SIGKILL after `grace_s`."""
    process.terminate()
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _answers_options(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        sock.bind(("127.0.0.1", 0))  # an ephemeral port outside the range: a probe's own
        own = sock.getsockname()[1]
        try:
            sock.sendto((f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
                         f"Via: SIP/2.0/UDP 127.0.0.1:{own};branch=z9hG4bK{time.monotonic_ns()}"
                         ";rport\r\n"
                         "From: <sip:probe@127.0.0.1>;tag=1\r\nTo: <sip:probe@127.0.0.1>\r\n"
                         "Call-ID: anchor-probe\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
                         "Content-Length: 0\r\n\r\n").encode(), ("127.0.0.1", port))
            return sock.recv(2048).startswith(b"SIP/2.0")
        except OSError:
            return False


@dataclass
class Step:
    """One SIPp run against one target."""

    rate: float
    offered: int
    ok: int
    failed: int
    samples_ms: list[float]
    cpu_s: float
    elapsed_s: float

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the timed responses, ms."""
        if not self.samples_ms:
            return math.nan
        ordered = sorted(self.samples_ms)
        return ordered[max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))]

    idle_cpu_s: float = 0.0  # what the process spends idle over the same time
    steal: float = math.nan  # share of the machine's CPU time the hypervisor took meanwhile

    @property
    def cpu_per_call_ms(self) -> float:
        """CPU per call placed, ms."""
        return 1000 * self.cpu_s / max(1, self.ok + self.failed)

    @property
    def marginal_cpu_per_call_ms(self) -> float:
        """CPU per call placed beyond the process's idle use over the same time, ms."""
        return 1000 * max(0.0, self.cpu_s - self.idle_cpu_s) / max(1, self.ok + self.failed)

    def kept_up(self) -> bool:
        """No failure, p99 under the target and (almost) the rate asked for."""
        # SIPp's run also holds the last calls' answers and its own start: allow its setup.
        achieved = (self.ok + self.failed) / max(self.elapsed_s - 1.0, 1e-9)
        return (self.failed == 0 and self.percentile(99) < KNEE_P99_MS
                and self.ok >= self.offered and achieved >= 0.95 * self.rate)


def machine_ticks() -> tuple[int, int]:
    """(steal, total) clock ticks of every CPU so far, from /proc/stat; (0, 0) if unreadable.

    Steal is the time the hypervisor gave this machine's CPUs to someone else: on a shared
    virtual machine it is what makes one day's figures slower than another's.
    """
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return 0, 0
    if fields[0] != "cpu" or len(fields) < 9:
        return 0, 0
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return ticks[7], sum(ticks)


def steal_between(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of all CPU time the hypervisor took between two `machine_ticks()`; NaN if
    unknown."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else math.nan


def idle_rate(pid: int, seconds: float = 3.0) -> float:
    """CPU seconds per second `pid`'s process tree uses with no traffic."""
    start = process_tree_cpu(pid)
    time.sleep(seconds)  # a measurement window, not a synchronisation
    return (process_tree_cpu(pid) - start) / seconds


def run_sipp(workdir: Path, scenario: str, target_port: int, ports: PortRange, *, rate: float,
             calls: int, pid: int, timeout_s: int, inject: Path | None = None,
             idle: float = 0.0) -> Step:
    """One SIPp run at `rate`; the CPU of `pid`'s process tree over it."""
    run = Path(tempfile.mkdtemp(dir=workdir, prefix="sipp-"))
    xml = run / "scenario.xml"
    xml.write_text(scenario)
    args = ["sipp", f"127.0.0.1:{target_port}", "-sf", str(xml), "-i", "127.0.0.1",
            "-p", str(ports.take()), "-mp", str(ports.take()), "-m", str(calls),
            "-r", str(rate), "-l", str(max(200, int(rate * 4))), "-timeout", f"{timeout_s}s",
            "-nostdin", "-trace_err", "-trace_rtt", "-rtt_freq", "1", "-trace_stat", "-fd", "1",
            "-recv_timeout", "10000", "-default_behaviors", "all,-bye"]
    if inject is not None:
        args += ["-inf", str(inject)]
    started_cpu, started, ticks = process_tree_cpu(pid), time.monotonic(), machine_ticks()
    result = subprocess.run(args, cwd=run, capture_output=True, text=True,
                            timeout=timeout_s + 30, check=False)
    elapsed = time.monotonic() - started
    cpu = process_tree_cpu(pid) - started_cpu
    steal = steal_between(ticks, machine_ticks())
    samples: list[float] = []
    for rtt in run.glob("*_rtt.csv"):
        for line in rtt.read_text().splitlines()[1:]:
            parts = line.split(";")
            with contextlib.suppress(ValueError, IndexError):
                samples.append(float(parts[1]))
    ok = failed = 0
    for stat in run.glob("*_.csv"):
        lines = stat.read_text().splitlines()
        if len(lines) >= 2:
            row = dict(zip(lines[0].split(";"), lines[-1].split(";"), strict=False))
            ok = int(row.get("SuccessfulCall(C)", 0) or 0)
            failed = int(row.get("FailedCall(C)", 0) or 0)
    if failed:
        print(f"  {failed} failed: {failure_reasons(run)}")
    if ok + failed == 0:
        print(f"  sipp placed no call (exit {result.returncode}): "
              f"{(result.stderr or result.stdout)[-600:]}")
    return Step(rate, calls, ok, failed, samples, cpu, elapsed, idle_cpu_s=idle * elapsed,
                steal=steal)


def failure_reasons(run: Path) -> str:
    """What SIPp's error log says went wrong, counted by kind (an unexpected 488, a timeout)."""
    reasons: Counter[str] = Counter()
    for log in run.glob("*_errors.log"):
        for line in log.read_text(errors="replace").splitlines():
            if "Aborting call" in line:
                reasons[line.split("received '", 1)[-1][:40] if "received '" in line
                        else line.split(": ", 1)[-1][:60]] += 1
    return ", ".join(f"{why} x{n}" for why, n in reasons.most_common(3)) or "no SIPp error log"


def describe(step: Step) -> str:
    """One step in one line."""
    return (f"ok {step.ok:6d} failed {step.failed:5d}   p50 {step.percentile(50):7.1f} ms   "
            f"p99 {step.percentile(99):7.1f} ms   CPU {step.cpu_per_call_ms:6.3f} ms/call "
            f"({step.marginal_cpu_per_call_ms:6.3f} over idle)   steal {100 * step.steal:4.1f} %")


def step_rates(workdir: Path, ports: PortRange, gateway_port: int, gateway_pid: int,
               rates: Sequence[float], seconds: float,
               number: str | None) -> list[tuple[Step, Step]]:
    """The refused-call steps: gateway and anchor at each rate; prints as it goes. `number`
    None: every call from a different number of a range the default rules refuse."""
    results: list[tuple[Step, Step]] = []
    anchor_port = ports.take()
    scenario = refused_call(number or "[field0]", timed=True)
    with anchor(workdir, anchor_port) as kamailio:
        our_idle, their_idle = idle_rate(gateway_pid), idle_rate(kamailio.pid)
        print(f"idle CPU: gateway {100 * our_idle:.1f} %, anchor {100 * their_idle:.1f} % of a "
              "core", flush=True)
        for rate in rates:
            calls = max(1, int(rate * seconds))
            timeout = int(seconds) + 60
            inject = None
            if number is None:  # new numbers at each step: none was seen before
                inject = write_numbers(workdir / f"refused-{rate:.0f}.csv", calls,
                                       f"+33162{len(results)}", 5)
            ours = run_sipp(workdir, scenario, gateway_port, ports, rate=rate, calls=calls,
                            pid=gateway_pid, timeout_s=timeout, idle=our_idle, inject=inject)
            theirs = run_sipp(workdir, scenario, anchor_port, ports, rate=rate, calls=calls,
                              pid=kamailio.pid, timeout_s=timeout, idle=their_idle,
                              inject=inject)
            ratio = ours.cpu_per_call_ms / max(theirs.cpu_per_call_ms, 1e-6)
            marginal = ours.marginal_cpu_per_call_ms / max(theirs.marginal_cpu_per_call_ms,
                                                           1e-6)
            print(f"{rate:6.0f}/s  gateway {describe(ours)}")
            print(f"{'':8} anchor  {describe(theirs)}   ratio {ratio:5.1f}x "
                  f"({marginal:5.1f}x over idle)   (load {os.getloadavg()[0]:.1f})", flush=True)
            results.append((ours, theirs))
    knee = next((ours.rate for ours, _ in results if not ours.kept_up()), None)
    where = f"none up to {rates[-1]:.0f}/s" if knee is None else f"{knee:.0f}/s"
    print(f"knee: {where} "
          f"(first rate with a failed call, p99 >= {KNEE_P99_MS:.0f} ms or the rate not kept)")
    return results


def write_numbers(path: Path, count: int, prefix: str, digits: int) -> Path:
    """A SIPp injection file of `count` distinct numbers `prefix` + `digits` digits, one per
    call, each valid by phonenumbers' plan, as the gateway checks: a number outside the plan
    goes to voicemail (an INVITE without SDP then gets 488), not what is measured here."""
    numbers: list[str] = []
    span = 10**digits
    for i in range(span):
        candidate = f"{prefix}{i * 7919 % span:0{digits}d}"
        if phonenumbers.is_valid_number(phonenumbers.parse(candidate)):
            numbers.append(candidate)
            if len(numbers) == count:
                break
    else:
        raise ValueError(f"fewer than {count} valid numbers start with {prefix}")
    path.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in numbers))
    return path


def write_strangers(path: Path, count: int) -> Path:
    """Distinct valid French mobile numbers (unknown callers), one per call."""
    return write_numbers(path, count, "+336", 8)


def ring_cancel(workdir: Path, ports: PortRange, gateway_port: int, gateway_pid: int,
                rate: float, seconds: float, ring_ms: int = 300) -> Step:
    """Unknown callers that ring `ring_ms` and cancel, at `rate`: CANCEL -> 487."""
    calls = max(1, int(rate * seconds))
    inject = write_strangers(workdir / "strangers.csv", calls)
    scenario = ring_then_cancel("[field0]", ring_ms, timed=True)
    result = run_sipp(workdir, scenario, gateway_port, ports, rate=rate, calls=calls,
                      pid=gateway_pid, timeout_s=int(seconds) + 60, inject=inject)
    print(f"{rate:6.0f}/s  ring {ring_ms} ms then CANCEL: {describe(result)} (CANCEL -> 487)",
          flush=True)
    return result


REFUSED = "+33600000001"  # on the block list of the gateway under test


@contextlib.contextmanager
def gateway_run(workdir: Path, ports: PortRange, tree: Path, settings: dict[str, str],
                *, pin_cpu: bool = False) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`ringfence run` of `tree` on a fresh SQLite database, listening on a port of the range,
    with REFUSED on its block list and `settings` set (`ringfence rules setting`)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = ports.take()
    rtp = ports.take(200)
    config = workdir / "config.toml"
    # The default log level (info), as `ringfence run` is installed: its per-call lines are
    # part of the cost.
    config.write_text(f'data_dir = "{workdir / "data"}"\n'
                      f'[gateway]\nlisten = "127.0.0.1:{port}"\nmax_calls = 40\n'
                      f'rtp_ports = "{rtp}-{rtp + 199}"\n'
                      + ("pin_cpu = true\n" if pin_cpu else ""))
    command = [os.environ.get("PYTHON", "python3"), "-m", "gateway", "--config", str(config)]
    for args in (["db", "upgrade"], ["block", "add", REFUSED, "--label", "bench"],
                 *(["rules", "setting", key, value] for key, value in settings.items())):
        subprocess.run([*command, *args], check=True, capture_output=True, cwd=tree)
    log = (workdir / "gateway.log").open("wb")
    process = subprocess.Popen([*command, "run"], cwd=tree, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        wait_answering(process, port, 60, "the gateway", workdir / "gateway.log", 800)
        yield process, port
    finally:
        stop(process, 30)
        log.close()


def log_counts(workdir: Path) -> str:
    """What the gateway's log says that a flood must never make it say, and what it counted
    under load (its load.json, on trees that write one)."""
    text = (workdir / "gateway.log").read_text(errors="replace")
    counted = ""
    with contextlib.suppress(OSError, ValueError):
        counts = json.loads((workdir / "data" / "load.json").read_text())["counts"]
        counted = "; counted: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    return (f"log: 'screening failed' x{text.count('screening failed')}, "
            f"'QueuePool' x{text.count('QueuePool')}, {len(text.splitlines())} lines{counted}")


def main(argv: list[str] | None = None) -> int:
    """Step the rates against `ringfence run` and the anchor; print everything."""
    import argparse
    import shutil
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ports", default="19000-19999", help="ports to use, LOW-HIGH")
    parser.add_argument("--steps", default=",".join(str(r) for r in DEFAULT_STEPS),
                        help="INVITE/s, comma-separated")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each step")
    parser.add_argument("--cancel-rate", type=float, default=500.0,
                        help="unknown callers that ring then cancel, per second (0: skip)")
    parser.add_argument("--numbers", choices=("same", "distinct"), default="same",
                        help="refused calls all from one block-listed number (as SIPp floods "
                        "do), or each from a new number of a range the default rules refuse")
    parser.add_argument("--pin-cpu", action="store_true",
                        help="run the gateway with [gateway] pin_cpu = true")
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the checkout whose gateway runs")
    args = parser.parse_args(argv)
    for binary in ("sipp", kamailio_binary()):
        if shutil.which(binary) is None and not Path(binary).exists():
            print(f"{binary} is not installed")
            return 2
    os.environ.setdefault("PYTHON", sys.executable)
    ports = PortRange(args.ports)
    rates = [float(r) for r in args.steps.split(",") if r.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="ringfence-steps-"))
    try:
        print(f"gateway {args.tree.resolve()}; load average {os.getloadavg()[0]:.1f}")
        if rates:  # --steps '': only the ring + CANCEL phase
            with gateway_run(workdir / "reject", ports, args.tree, {},
                             pin_cpu=args.pin_cpu) as (process, port):
                run_sipp(workdir, refused_call(REFUSED, timed=True), port, ports, rate=50,
                         calls=50, pid=process.pid, timeout_s=30)  # warm-up
                step_rates(workdir, ports, port, process.pid, rates, args.seconds,
                           REFUSED if args.numbers == "same" else None)
            print(log_counts(workdir / "reject"))
        if args.cancel_rate:
            # Unknown callers only: no burst shield, no repeat limit (each would answer).
            quiet = {"burst": '{"enabled": false}', "repeat": '{"enabled": false}'}
            with gateway_run(workdir / "cancel", ports, args.tree, quiet,
                             pin_cpu=args.pin_cpu) as (process, port):
                ring_cancel(workdir, ports, port, process.pid, args.cancel_rate, args.seconds)
            print(log_counts(workdir / "cancel"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
