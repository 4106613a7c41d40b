"""Bytes the gateway writes to disk per rejected call, on SQLite; print the numbers.

Starts `ringfence run` as its own process (direct listener, a fresh SQLite database in a
temporary folder under `--dir`, which must be a real disk: tmpfs counts no `write_bytes`; its
log into a pipe so that only the database's writes
count), optionally fills the log with `--existing` older calls first (a year of calls makes the
indexes larger, and random numbers then dirty more index pages per row), then places
`--calls` calls from telemarketing numbers (refused with 603 by the default rules) from
`--callers` raw UDP callers in parallel: as fast as they can (the default), or `--rate R` calls
per second in all, each call placed at its own time (start + i/R), as a steady flood arrives. It
reads the gateway's `write_bytes` from
/proc/<pid>/io before and after, and divides by the calls that reached the log.

    python bench/call_writes.py [--calls 1000] [--callers 2] [--rate R] [--existing 0]
                                [--same-number] [--tree CHECKOUT]

A paced run needs enough callers to keep up (each waits for its call's answer): `--rate 400`
wants `--callers 8` or so; the achieved rate is printed, and a warning when it fell short.

`--threads` also prints the CPU per call of each of the gateway's threads (`call-writer`, the
workers together, `sip-udp`, `sip-timers`, ...): their native ids come from `py-spy dump` (the
`profile` extra), their CPU from /proc/<pid>/task/<tid>/stat (10 ms clock ticks).

`--micro` measures instead, in this process, the CPU of one batch of N rejected calls (a row
and its end each) through `write_batch` (the driver's way) and through the ORM path
(`write_batch_orm`), warm, on a fresh SQLite database under `--dir`.

`--tree` runs the gateway of another checkout (e.g. a `git worktree` of an older commit) with
the same callers, to measure a before/after pair on the same machine.

Bounded: every call has a 15 s timeout and the gateway is always stopped.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.config import load_settings_from_text  # noqa: E402
from gateway.store.batch import write_batch, write_batch_orm  # noqa: E402
from gateway.store.events import CallFinished, CallLogged, Event, new_uid  # noqa: E402
from tests.helpers import Services  # noqa: E402
from tests.peers import free_port, wait_until  # noqa: E402
from tests.peers.gateway_process import answers_options, call  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (the longest mount point above it)."""
    target = str(path.resolve())
    best, kind = "", "unknown"
    for line in Path("/proc/mounts").read_text().splitlines():
        _device, mount_point, fstype, *_ = line.split()
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fstype
    return kind


def proc_io(pid: int) -> dict[str, int]:
    """The /proc/<pid>/io counters."""
    fields = {}
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, value = line.split(":")
        fields[name] = int(value)
    return fields


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK_TCK


def thread_names(pid: int) -> dict[int, str]:
    """Native id → Python name of each thread of `pid`, from `py-spy dump`."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    dump = subprocess.run([py_spy, "dump", "--pid", str(pid)], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    return {int(tid): re.sub(r"-\d+$", "-*", name) for tid, name in
            re.findall(r'^Thread (\d+) \([^)]*\): "([^"]*)"', dump, re.MULTILINE)}


def thread_cpu(pid: int, names: dict[int, str]) -> dict[str, float]:
    """CPU seconds (user + system) of the named threads, summed per name."""
    totals: dict[str, float] = {}
    for tid, name in names.items():
        try:
            parts = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended
            continue
        totals[name] = totals.get(name, 0.0) + (int(parts[11]) + int(parts[12])) / CLK_TCK
    return totals


def prefill(db_file: Path, count: int) -> None:
    """`count` older calls from random numbers, as a year of use would leave (plain SQL, so
    that it works on any schema version)."""
    start = datetime.now(UTC).replace(tzinfo=None) - timedelta(days=365)
    conn = sqlite3.connect(db_file)
    try:
        conn.executemany(
            "INSERT INTO calls (at, number, caller_kind, display_name, raw_from, action, "
            "reason, step, unknown, burst, outcome, duration_s) VALUES "
            "(?, ?, 'number', '', '', 'pass', 'old', 'default', 1, 0, 'answered elsewhere', 20)",
            ((str(start + timedelta(minutes=i)), f"+33162{secrets.randbelow(10**6):06d}")
             for i in range(count)))
        conn.commit()
    finally:
        conn.close()


def logged(db_file: Path) -> int:
    """Rows in the call log."""
    conn = sqlite3.connect(db_file, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM calls").fetchone()[0])
    finally:
        conn.close()


def main() -> int:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--callers", type=int, default=2, help="parallel raw UDP callers")
    parser.add_argument("--rate", type=float, default=None,
                        help="calls per second in all, paced (default: as fast as possible)")
    parser.add_argument("--existing", type=int, default=0, help="older calls in the log first")
    parser.add_argument("--same-number", action="store_true",
                        help="every call from one number (as SIPp floods do)")
    parser.add_argument("--threads", action="store_true",
                        help="CPU per call of each gateway thread (needs py-spy)")
    parser.add_argument("--micro", action="store_true",
                        help="CPU per batch of write_batch, in process (no gateway)")
    parser.add_argument("--tree", type=Path, default=REPO,
                        help="the checkout whose gateway runs (default: this one)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()),
                        help="where the temporary database goes (a real disk, not tmpfs)")
    args = parser.parse_args()
    tree = args.tree.resolve()
    if filesystem_type(args.dir) in ("tmpfs", "ramfs"):
        print(f"{args.dir} is in memory ({filesystem_type(args.dir)}): its writes do not count "
              "as write_bytes; give --dir on a real disk", file=sys.stderr)
        return 2

    folder = Path(tempfile.mkdtemp(prefix="ringfence-writes-", dir=args.dir))
    try:
        return micro(folder) if args.micro else measure(args, tree, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def micro(folder: Path) -> int:
    """CPU per batch of 1, 5, 25 and 100 rejected calls, driver and ORM paths; print it."""
    service = Services.open(load_settings_from_text("", folder))
    rule = service.store.rules.all()[0].id
    at = datetime.now(UTC)

    def batch(calls: int) -> list[Event]:
        events: list[Event] = []
        for _ in range(calls):
            uid = new_uid()
            events += [CallLogged(uid=uid, at=at, caller_kind="number", action="reject:603",
                                  number="+33162000001", step="rule", rule=f"rule:{rule}",
                                  rule_id=rule, reason="telemarketing range",
                                  reason_code="rule_telemarketing", reason_params={"n": 1}),
                       CallFinished(uid, 0.01, "rejected 603")]
        return events

    try:
        for name, write in (("driver (write_batch)", write_batch), ("ORM (write_batch_orm)",
                                                                    write_batch_orm)):
            figures = []
            for calls in (1, 5, 25, 100):
                for _ in range(5):  # warm: statements cached, pages in memory
                    write(service.db, batch(calls))
                prepared = [batch(calls) for _ in range(max(20, 400 // calls))]
                started = time.process_time()
                for events in prepared:
                    write(service.db, events)
                spent = (time.process_time() - started) / len(prepared)
                figures.append(f"{calls}: {1000 * spent:.2f} ms")
            print(f"{name:22} per batch of N calls  " + ", ".join(figures))
    finally:
        service.store.close()
    return 0


def measure(args: argparse.Namespace, tree: Path, folder: Path) -> int:
    """One measurement in `folder`; print it."""
    port = free_port()
    config = folder / "config.toml"
    config.write_text(f'data_dir = "{folder / "data"}"\nlog_level = "warning"\n'
                      f'[gateway]\nlisten = "127.0.0.1:{port}"\nmax_calls = 16\n')
    ringfence = [sys.executable, "-m", "gateway", "--config", str(config)]
    subprocess.run([*ringfence, "db", "upgrade"], check=True, capture_output=True, cwd=tree)
    db_file = folder / "data" / "ringfence.db"
    if args.existing:
        prefill(db_file, args.existing)
    process = subprocess.Popen([*ringfence, "run"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, cwd=tree)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    try:
        wait_until(lambda: process.poll() is None and answers_options(port), 60, "the gateway")
        for i in range(20):  # warm up: imports, caches, the first checkpoint
            call(port, f"+3316299{i:04d}")
        wait_until(lambda: logged(db_file) >= args.existing + 20, 30, "the warm-up calls")
        names = thread_names(process.pid) if args.threads else {}
        before_threads = thread_cpu(process.pid, names)
        before_rows, before_io, before_cpu = logged(db_file), proc_io(process.pid), \
            cpu_seconds(process.pid)
        numbers: queue.Queue[tuple[int, str]] = queue.Queue()
        for i in range(args.calls):
            numbers.put((i, "+33162000001" if args.same_number
                         else f"+33162{(i * 7919) % 10**6:06d}"))
        statuses: list[int] = []
        started = time.monotonic()

        def caller() -> None:
            while True:
                try:
                    i, number = numbers.get_nowait()
                except queue.Empty:
                    return
                if args.rate:  # paced: call i leaves at its own time, not when a caller is free
                    delay = started + i / args.rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                statuses.append(call(port, number))

        threads = [threading.Thread(target=caller) for _ in range(args.callers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        wait_until(lambda: logged(db_file) - before_rows >= statuses.count(603), 60,
                   "every refused call in the log")
        time.sleep(1.0)  # let the last batch and any checkpoint land (bench only)
        after_io, after_cpu = proc_io(process.pid), cpu_seconds(process.pid)
        after_threads = thread_cpu(process.pid, names)
        rows = logged(db_file) - before_rows
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    written = after_io["write_bytes"] - before_io["write_bytes"]
    print(f"calls placed          {args.calls} from {args.callers} caller(s) in {elapsed:.1f} s "
          f"({args.calls / elapsed:.0f}/s); answers: "
          + ", ".join(f"{s}: {statuses.count(s)}" for s in sorted(set(statuses))))
    if args.rate:
        achieved = args.calls / elapsed
        print(f"paced at              {args.rate:.0f}/s"
              + ("" if achieved >= 0.95 * args.rate else
                 f" (NOT reached: {achieved:.0f}/s; give more --callers)"))
    print(f"gateway               {tree}")
    print(f"older calls in the log {args.existing}; numbers: "
          + ("one" if args.same_number else "all different"))
    print(f"rows logged           {rows}")
    print(f"bytes written to disk {written} (write_bytes of the gateway process)")
    print(f"per logged call       {written / max(rows, 1):.0f} B")
    print(f"gateway CPU per call  {1000 * (after_cpu - before_cpu) / max(rows, 1):.2f} ms")
    spent = sorted(((after_threads[n] - before_threads.get(n, 0.0), n) for n in after_threads),
                   reverse=True)
    if spent:
        print("  by thread           " + ", ".join(
            f"{name} {1000 * cpu / max(rows, 1):.3f}" for cpu, name in spent if cpu > 0)
            + " ms")
    sizes = {p.name: p.stat().st_size for p in (folder / "data").glob("ringfence.db*")}
    print(f"files                 {sizes}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
