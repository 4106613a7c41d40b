"""`ringfence run` as its own process, and raw UDP callers for it (fault-injection tests).

The gateway listens directly (no line) on a free port; its output goes to a log file the test
reads. It is stopped (SIGTERM, then SIGKILL) by `stop`, or killed with SIGKILL by `kill` to
play a crash; the fixture that made it always stops it.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from gateway.config import load_settings_from_text
from gateway.sip.message import SipResponse
from gateway.store import Store, open_store
from gateway.store.journal import WriterStatus, journal_backlog, journal_dir, read_status
from tests.peers import free_port, wait_until
from tests.peers.raw import RawPeer

REPO = Path(__file__).resolve().parents[2]


def answers_options(port: int) -> bool:
    """Whether something answers OPTIONS with 200 on 127.0.0.1:`port` (UDP)."""
    peer = RawPeer(port)
    try:
        peer.send(RawPeer.follow_up(peer.invite(), "OPTIONS"))
        reply = peer.receive(0.3)
    finally:
        peer.close()
    return isinstance(reply, SipResponse) and reply.status == 200


class GatewayProcess:
    """One `ringfence run` with its config, data folder and log under `folder`."""

    def __init__(self, folder: Path, *, data_dir: Path | None = None, database: str = "",
                 extra: str = "", gateway: str = "") -> None:
        """`extra`: top-level keys and whole sections; `gateway`: more keys of [gateway]."""
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        self.data_dir = data_dir or folder / "data"
        self.config = folder / "config.toml"
        db = f'database = "{database}"\n' if database else ""
        self.config.write_text(f'data_dir = "{self.data_dir}"\n{db}{extra}[gateway]\n'
                               f'listen = "127.0.0.1:{self.port}"\n{gateway}', encoding="utf-8")
        self.log_path = folder / "gateway.log"
        self.process: subprocess.Popen[bytes] | None = None

    def open_store(self) -> Store:
        """The gateway's store, opened (and migrated) from its config, for the test's own use."""
        settings = load_settings_from_text(self.config.read_text(encoding="utf-8"), self.folder)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        return open_store(settings)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a `ringfence` command on this config."""
        return subprocess.run([sys.executable, "-m", "gateway", "--config", str(self.config),
                               *args], capture_output=True, text=True, cwd=REPO, check=False,
                              timeout=120)

    def start(self) -> None:
        """Start the gateway and wait until it answers OPTIONS."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.config), "run"],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        process = self.process
        wait_until(lambda: process.poll() is None and answers_options(self.port), 60,
                   "the gateway to answer OPTIONS")

    def start_without_probe(self) -> None:
        """Start the gateway without waiting for it (its lines listen elsewhere)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway", "--config", str(self.config), "run"],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def stop(self) -> int | None:
        """SIGTERM and wait (SIGKILL after 30 s); return the exit code.

        A gateway that does not stop in time is asked for its threads' stacks (SIGUSR1) before
        the kill, and the end of its log goes to stderr, where pytest shows it with the failure.
        """
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                return process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._dump_stacks(process)
                process.kill()
        return process.wait(timeout=10)

    def _dump_stacks(self, process: subprocess.Popen[bytes]) -> None:
        size = self.log_path.stat().st_size
        process.send_signal(signal.SIGUSR1)
        with contextlib.suppress(AssertionError):  # a dump that never comes: the log says why
            wait_until(lambda: b"most recent call first" in self.log_path.read_bytes()[size:], 5,
                       "the stack dump")
        tail = "\n".join(self.log().splitlines()[-200:])
        print(f"the gateway did not stop within 30 s of SIGTERM; its log ends:\n{tail}",
              file=sys.stderr)

    def send_signal(self, signum: int) -> None:
        """Send the running gateway a signal."""
        assert self.process is not None, "the gateway is not running"
        self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing is flushed."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None

    def log(self) -> str:
        """What the gateway printed so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def writer_status(self) -> WriterStatus | None:
        """The call writer's status file."""
        return read_status(journal_dir(self.data_dir))

    def journal_backlog(self) -> int:
        """Events in the journal file."""
        return journal_backlog(journal_dir(self.data_dir))

    @property
    def database_file(self) -> Path:
        """The SQLite file (default database)."""
        return self.data_dir / "ringfence.db"


def call(port: int, number: str, *, ring_for: float = 2.0, timeout: float = 15.0) -> int:
    """One call from `number`: a final response is ACKed; a call still ringing after
    `ring_for` seconds is CANCELled (487). Returns the final status."""
    peer = RawPeer(port)
    try:
        invite = peer.invite(user=number)
        peer.send(invite)

        def final(message: object) -> bool:  # the INVITE's, not the 200 to our CANCEL
            return (isinstance(message, SipResponse) and message.status >= 200
                    and message.cseq()[1] == "INVITE")

        try:
            response = peer.expect(final, ring_for, "a final response")
        except AssertionError:  # still ringing: the caller gives up
            peer.send(RawPeer.follow_up(invite, "CANCEL"))
            response = peer.expect(final, timeout, "487 after CANCEL")
        peer.send(RawPeer.follow_up(invite, "ACK"))
        assert isinstance(response, SipResponse)
        return response.status
    finally:
        peer.close()


def ring(port: int, number: str) -> RawPeer:
    """Start a call from `number` and leave it ringing (after 100 Trying); close the peer
    returned to walk away (the gateway ends the call after its ring limit)."""
    peer = RawPeer(port)
    try:
        peer.send(peer.invite(user=number))
        peer.expect_status(100)
    except BaseException:
        peer.close()
        raise
    return peer


class SqliteLock:
    """A second process holding `BEGIN EXCLUSIVE` on a SQLite file until `release()`."""

    CODE = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN EXCLUSIVE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n"
        "c.execute('COMMIT')\n"
    )

    def __init__(self, path: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", self.CODE, str(path)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        assert line == "locked", line

    def release(self) -> None:
        """Commit and exit."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("\n")
            self.process.stdin.flush()
            self.process.wait(timeout=30)

    def send_signal(self, signum: int) -> None:
        """Send the running gateway a signal."""
        assert self.process is not None, "the gateway is not running"
        self.process.send_signal(signum)

    def kill(self) -> None:
        """Make sure it is gone."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


def count_calls(path: Path) -> tuple[int, int]:
    """(rows, distinct uids) in the calls table of a SQLite file."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        rows, uids = conn.execute("SELECT count(*), count(DISTINCT uid) FROM calls").fetchone()
        return int(rows), int(uids)
    finally:
        conn.close()

