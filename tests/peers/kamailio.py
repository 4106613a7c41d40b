"""Kamailio as a registrar/proxy with digest auth (auth_db over SQLite), on a free port."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import socket
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

from tests.peers import free_port, require_binary, wait_until

TEMPLATE = Path(__file__).with_name("kamailio.cfg.in")
SCHEMA_DIR = Path("/usr/share/kamailio/db_sqlite")
USERS = {"home": "homepw", "caller": "callerpw", "0612345678": "mobilepw"}
"""Subscribers (username -> password); 0612345678 gives tests a caller with a real number."""


def module_dir() -> str:
    """Kamailio's module folder on this machine (x86_64, aarch64, ... multiarch paths)."""
    fixed = ["/usr/lib/kamailio/modules", "/usr/lib64/kamailio/modules"]
    for candidate in [*sorted(glob.glob("/usr/lib/*/kamailio/modules")), *fixed]:
        if Path(candidate, "tm.so").exists():
            return candidate
    raise FileNotFoundError("no Kamailio module folder with tm.so found")


def make_auth_db(path: Path, users: dict[str, str]) -> None:
    """Create Kamailio's SQLite schema and the subscriber rows."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        for name in ("standard-create.sql", "auth_db-create.sql"):
            db.executescript((SCHEMA_DIR / name).read_text())
        db.executemany(
            "INSERT INTO subscriber (username, domain, password) VALUES (?, '127.0.0.1', ?)",
            list(users.items()),
        )
        db.commit()


class Kamailio:
    """One Kamailio process; `start()` returns when it answers OPTIONS."""

    def __init__(
        self,
        rundir: Path,
        *,
        port: int | None = None,
        record_route: bool = False,
        qop: bool = False,
        proxy_auth: bool = False,
        max_expires: int = 3600,
        algorithm: str = "MD5",
        trusted_port: int | None = None,
        users: dict[str, str] | None = None,
        fr_inv_timer_ms: int = 120_000,
    ) -> None:
        self.binary = require_binary("kamailio")
        self.rundir = rundir
        self.port = port or free_port()
        self.trusted_port = trusted_port or free_port()
        self.defines = [d for d, on in (("WITH_RR", record_route), ("WITH_QOP", qop),
                                        ("WITH_PROXY_AUTH", proxy_auth)) if on]
        self.max_expires = max_expires
        self.algorithm = algorithm
        self.users = users or USERS
        self.fr_inv_timer_ms = fr_inv_timer_ms
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = rundir / "kamailio.log"
        self.config_path = rundir / "kamailio.cfg"

    def _write_files(self) -> None:
        self.rundir.mkdir(parents=True, exist_ok=True)
        db = self.rundir / "kam.db"
        if not db.exists():
            make_auth_db(db, self.users)
        text = (
            TEMPLATE.read_text()
            .replace("@PORT@", str(self.port))
            .replace("@RUNDIR@", str(self.rundir))
            .replace("@MODULES@", module_dir() + "/")
            .replace("@MAX_EXPIRES@", str(self.max_expires))
            .replace("@TRUSTED_PORT@", str(self.trusted_port))
            .replace("@ALGORITHM@", self.algorithm)
            .replace("@FR_INV_TIMER@", str(self.fr_inv_timer_ms))
        )
        self.config_path.write_text(text)

    def start(self) -> None:
        """Start and wait until it answers an OPTIONS ping."""
        self._write_files()
        args = [self.binary, "-f", str(self.config_path), "-DD", "-E", "-m", "32", "-M", "8"]
        for define in self.defines:
            args += ["-A", define]
        log = self.log_path.open("ab")
        # Its own process group: Kamailio forks workers, and a SIGKILL of the main process
        # alone (a slow shutdown under load) would leave them running, holding the port.
        self.process = subprocess.Popen(args, stdout=log, stderr=log, start_new_session=True)
        log.close()
        try:
            wait_until(self._answers_options, 15.0, f"Kamailio on port {self.port}")
        except BaseException:
            self.stop()  # the fixture never gets to stop what did not start
            raise

    def _answers_options(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"Kamailio exited: {self.log_tail()}")
        branch = "z9hG4bK" + uuid.uuid4().hex[:12]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            local = sock.getsockname()[1]
            ping = (
                f"OPTIONS sip:127.0.0.1:{self.port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch}\r\n"
                f"From: <sip:probe@127.0.0.1>;tag=p\r\nTo: <sip:127.0.0.1>\r\n"
                f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 5\r\n"
                f"Content-Length: 0\r\n\r\n"
            )
            sock.settimeout(0.3)
            sock.sendto(ping.encode(), ("127.0.0.1", self.port))
            try:
                data = sock.recv(4096)
            except OSError:
                return False
        return data.startswith(b"SIP/2.0 200")

    def stop(self) -> None:
        """Terminate (SIGTERM, then SIGKILL after 5 s), and every worker it forked."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        # Kamailio's main process can exit before its workers do, and they hold the listening
        # sockets: kill what is left of the group, and wait (bounded) until it is gone, so a
        # restart on the same port does not meet "Address already in use".
        group = self.process.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not _group_alive(group), 5.0, "Kamailio's workers to exit")
        self.process = None

    def restart(self) -> None:
        """Stop and start again on the same port (its in-memory registrations are lost)."""
        self.stop()
        # The old UDP socket is gone once the process has exited; start() polls readiness.
        self.start()

    def log_text(self) -> str:
        """Everything Kamailio logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        """The end of the log, for failure messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def wait_for_log(self, fragment: str, timeout: float = 10.0) -> None:
        """Wait until `fragment` appears in the log."""
        wait_until(lambda: fragment in self.log_text(), timeout, f"Kamailio log {fragment!r}")

    def count_in_log(self, fragment: str) -> int:
        """How often `fragment` appears in the log."""
        return self.log_text().count(fragment)


@contextlib.contextmanager
def running_kamailio(rundir: Path, **options: object) -> Iterator[Kamailio]:
    """Start Kamailio for the duration of a `with` block."""
    kamailio = Kamailio(rundir, **options)  # type: ignore[arg-type]
    try:
        kamailio.start()
        yield kamailio
    finally:
        kamailio.stop()


def _group_alive(group: int) -> bool:
    """Whether a process of the group still runs (zombies, whose sockets are closed, do not)."""
    for stat_file in glob.glob("/proc/[0-9]*/stat"):
        try:
            fields = Path(stat_file).read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:  # state, ppid, pgrp
            return True
    return False
