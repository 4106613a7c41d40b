"""A throwaway PostgreSQL server for tests: `with running_postgres() as url: ...`, or
`with postgres_server() as server:` to stop and start it during the test.

It uses Debian's server binaries (`/usr/lib/postgresql/<version>/bin`), keeps the cluster and
its unix socket in a temporary folder, listens on 127.0.0.1 at a free port, trusts local
connections (nothing else can reach it) and is always stopped and deleted afterwards. As root
it runs as the `postgres` system user, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

DATABASE = "ringfence"
USER = "ringfence"
READY_TIMEOUT_S = 60.0


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (or the postgres user, as root) are not installed."""


def find_bin_dir() -> Path | None:
    """The newest Debian PostgreSQL server bin folder with initdb and pg_ctl, if any."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                        reverse=True)
    for bin_dir in candidates:
        if all((bin_dir / tool).exists() for tool in ("initdb", "pg_ctl", "pg_isready")):
            return bin_dir
    initdb = shutil.which("initdb")  # other layouts (e.g. a distribution without wrappers)
    if initdb and shutil.which("pg_ctl") and shutil.which("pg_isready"):
        return Path(os.path.realpath(initdb)).parent
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _as_postgres(argv: Sequence[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


def _run(argv: Sequence[str], what: str) -> None:
    result = subprocess.run(_as_postgres(argv), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {result.stderr.strip()}")


class PostgresServer:
    """A private cluster in a temporary folder that a test may stop and start again."""

    def __init__(self) -> None:
        bin_dir = find_bin_dir()
        if bin_dir is None:
            raise PostgresUnavailable("PostgreSQL server binaries not found "
                                      "(apt-get install postgresql)")
        self.bin_dir = bin_dir
        self.owner: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self.owner = pwd.getpwnam("postgres")
            except KeyError:
                raise PostgresUnavailable(
                    "running as root but there is no `postgres` user") from None
        self.tmp = Path(tempfile.mkdtemp(prefix="ringfence-pg-"))
        self.data, self.log = self.tmp / "data", self.tmp / "server.log"
        self.port = free_port()
        self.running = False
        self.url = f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def create(self) -> None:
        """initdb, start, and create the database."""
        if self.owner is not None:
            os.chown(self.tmp, self.owner.pw_uid, self.owner.pw_gid)
        _run([str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", USER, "--auth=trust",
              "-E", "UTF8", "--no-sync", "--no-instructions"], "initdb")
        self.start()
        _run([str(self.bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
              USER, DATABASE], "createdb")

    def start(self) -> None:
        """Start the server on its port and wait until it accepts connections."""
        # fsync off: a test cluster that is thrown away needs no durability, and it is faster.
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.tmp} -c fsync=off"
        _run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o",
              options, "-W", "start"], "pg_ctl start")
        self.running = True
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            ready = subprocess.run(
                [str(self.bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                 "-U", USER], capture_output=True, check=False)
            if ready.returncode == 0:
                return
            if time.monotonic() > deadline:
                text = self.log.read_text(errors="replace") if self.log.exists() else ""
                raise RuntimeError(f"PostgreSQL did not become ready; its log:\n{text[-2000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected)."""
        if self.running:
            subprocess.run(_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data),
                                         "-m", "fast", "-w", "stop"]),
                           capture_output=True, check=False)
            self.running = False

    def remove(self) -> None:
        """Stop and delete the cluster."""
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """Start a private PostgreSQL server; always stopped and deleted afterwards."""
    server = PostgresServer()
    try:
        server.create()
        yield server
    finally:
        server.remove()


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Start a private PostgreSQL server; yield a `postgresql+psycopg://` URL to a new database."""
    with postgres_server() as server:
        yield server.url
