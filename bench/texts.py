"""Text messages (SIP MESSAGE) into `ringfence run` on SQLite: answers per second, answer
latency and bytes written per text; print the numbers.

Starts the gateway as its own process (direct listener, a fresh SQLite database in a temporary
folder under `--dir`, a real disk: tmpfs counts no `write_bytes`), sends `--texts` MESSAGEs
over UDP from `--senders` raw senders in parallel, each from a number of its own (so the
per-sender limit does not refuse them) or all from one (`--same-number`: the limit refuses all
but the first ones), and reads the gateway's `write_bytes` from /proc/<pid>/io before and
after. Every text is committed before it is answered (one transaction each, by design).

    python bench/texts.py [--texts 300] [--senders 2] [--same-number] [--dir DIR]

Bounded: every MESSAGE waits at most 10 s for its answer and the gateway is always stopped.
"""

from __future__ import annotations

import argparse
import os
import queue
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.peers import free_port, wait_until  # noqa: E402
from tests.peers.gateway_process import answers_options  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_io(pid: int) -> int:
    """The process's write_bytes."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        name, value = line.split(":")
        if name == "write_bytes":
            return int(value)
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / CLK_TCK


def send_text(port: int, number: str, body: str) -> tuple[int, float]:
    """One MESSAGE; (final status or 0 on timeout, seconds to the answer)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(10)
        local = sock.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex[:12]
        data = body.encode()
        message = (
            f"MESSAGE sip:ringfence@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\nMax-Forwards: 70\r\n"
            f"From: <sip:{number}@127.0.0.1>;tag={branch[-6:]}\r\n"
            f"To: <sip:ringfence@127.0.0.1>\r\nCall-ID: {uuid.uuid4().hex}\r\n"
            f"CSeq: 1 MESSAGE\r\nContent-Type: text/plain;charset=UTF-8\r\n"
            f"Content-Length: {len(data)}\r\n\r\n"
        ).encode() + data
        started = time.monotonic()
        sock.sendto(message, ("127.0.0.1", port))
        try:
            while True:
                reply = sock.recv(65536)
                status = int(reply.split(b" ", 2)[1])
                if status >= 200:
                    return status, time.monotonic() - started
        except (TimeoutError, ValueError, IndexError):
            return 0, time.monotonic() - started


def stored(db_file: Path) -> int:
    """Rows in the text log."""
    conn = sqlite3.connect(db_file, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


def main() -> int:
    """Run the measurement and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=300)
    parser.add_argument("--senders", type=int, default=2, help="parallel raw UDP senders")
    parser.add_argument("--same-number", action="store_true", help="every text from one number")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ringfence-texts-", dir=args.dir))
    try:
        return measure(args, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def measure(args: argparse.Namespace, folder: Path) -> int:
    """One measurement in `folder`; print it."""
    port = free_port()
    config = folder / "config.toml"
    config.write_text(f'data_dir = "{folder / "data"}"\nlog_level = "warning"\n'
                      f'[gateway]\nlisten = "127.0.0.1:{port}"\n'
                      "[messages]\nburst_senders = 10000\n")  # measure storage, not holding
    ringfence = [sys.executable, "-m", "gateway", "--config", str(config)]
    subprocess.run([*ringfence, "db", "upgrade"], check=True, capture_output=True, cwd=REPO)
    db_file = folder / "data" / "ringfence.db"
    process = subprocess.Popen([*ringfence, "run"], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, cwd=REPO)
    try:
        wait_until(lambda: process.poll() is None and answers_options(port), 60, "the gateway")
        for i in range(20):  # warm up
            send_text(port, f"+3369900{i:04d}", "warm-up")
        before_rows, before_io = stored(db_file), proc_io(process.pid)
        before_cpu = cpu_seconds(process.pid)
        numbers: queue.Queue[str] = queue.Queue()
        for i in range(args.texts):
            numbers.put("+33612345678" if args.same_number
                        else f"+336{(i * 7919) % 10**8:08d}")
        results: list[tuple[int, float]] = []

        def sender() -> None:
            while True:
                try:
                    number = numbers.get_nowait()
                except queue.Empty:
                    return
                results.append(send_text(port, number, "Votre colis arrive demain. "
                                                       "Répondez STOP pour ne plus recevoir."))

        started = time.monotonic()
        threads = [threading.Thread(target=sender) for _ in range(args.senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        rows = stored(db_file) - before_rows
        written = proc_io(process.pid) - before_io
        cpu = cpu_seconds(process.pid) - before_cpu
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    statuses = [s for s, _ in results]
    latencies = sorted(t * 1000 for _, t in results)
    print(f"texts sent            {args.texts} from {args.senders} sender(s) in {elapsed:.1f} s "
          f"({args.texts / elapsed:.0f}/s); answers: "
          + ", ".join(f"{s}: {statuses.count(s)}" for s in sorted(set(statuses))))
    print(f"answer latency        median {statistics.median(latencies):.1f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95) - 1]:.1f} ms")
    print(f"rows stored           {rows}")
    print(f"bytes written to disk {written} ({written / max(rows, 1):.0f} B per stored text)")
    print(f"gateway CPU per text  {1000 * cpu / max(rows, 1):.2f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
