"""The same schema, repository and screening on a real PostgreSQL server started by the test."""

from __future__ import annotations

import glob
import io
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.service import open_service
from tests.helpers import TUESDAY_AFTERNOON as NOW

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        message = "PostgreSQL server binaries are missing (apt-get install postgresql)"
        if os.environ.get("RINGFENCE_REQUIRE_PEERS"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(found[-1]).parent


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """Start a throwaway PostgreSQL on a free loopback port; stop and delete it afterwards."""
    bin_dir = _pg_bin()
    folder = Path(tempfile.mkdtemp(prefix="rf-pg-"))
    # initdb refuses to run as root: run the server as the postgres system user.
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", _free_port()
    subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "ringfence",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
    subprocess.run(
        [*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(folder / "log"), "-w",
         "-o", f"-c listen_addresses=127.0.0.1 -p {port} -k {folder}", "start"],
        check=True, capture_output=True, timeout=120)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run([str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError((folder / "log").read_text(encoding="utf-8"))
            time.sleep(0.2)
        subprocess.run([str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U",
                        "ringfence", "ringfence"], check=True, capture_output=True, timeout=60)
        yield f"postgresql+psycopg://ringfence@127.0.0.1:{port}/ringfence"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w",
                        "stop"], capture_output=True, check=False, timeout=120)
        shutil.rmtree(folder, ignore_errors=True)


def test_postgres_runs_the_same_screening(postgres_url: str, make_settings) -> None:  # type: ignore[no-untyped-def]
    settings: Settings = make_settings(f'database = "{postgres_url}"')
    service = open_service(settings)
    try:
        repo = service.repo
        assert "telemarketing" in [r.kind.value for r in repo.rules()]
        report = repo.import_csv(io.StringIO("0612345678,pest\n0612345678\nbad\n0162*\n"),
                                 "block")
        assert (report.added, report.duplicates, len(report.rejected)) == (2, 1, 1)
        repo.add_entry("block", "06 99 ?? ?? ??", action="announce:sit")
        assert str(service.screen(service.caller("0612345678"), NOW).action) == "reject:603"
        assert str(service.screen(service.caller("0699112233"), NOW).action) == "announce:sit"
        who = service.caller("0700000001")
        for minute in range(4):
            at = NOW + timedelta(minutes=minute)
            service.record_call(who, service.screen(who, at), at=at)
        assert next(r.action for r in repo.calls(limit=4)) == "voicemail"  # repeat limit
        [row] = repo.calls(limit=1)
        assert row.at == NOW + timedelta(minutes=3) and row.at.tzinfo is not None
        # The schema migrates idempotently on PostgreSQL too.
        open_service(settings).db.dispose()
    finally:
        service.db.dispose()
