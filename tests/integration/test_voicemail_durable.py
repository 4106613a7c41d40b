"""Every message a caller leaves is kept (issue 11, items 1-4): a real `ringfence run`, real
callers speaking real RTP, and real faults: simultaneous messages from one number and from
withheld callers, the total cap reached by ten messages at once, kill -9 during a message, a
full disk (a small tmpfs) before and during a message, PostgreSQL stopped during the greeting.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gateway.media.audio import WAV_HEADER_BYTES
from tests.peers import wait_until
from tests.peers.disk import fill, small_tmpfs
from tests.peers.gateway_process import GatewayProcess
from tests.peers.postgres import PostgresUnavailable, postgres_server
from tests.peers.require import missing_peer
from tests.peers.voice import VoiceCaller

pytestmark = pytest.mark.slow

SECOND = 16_000  # bytes of PCM16 at 8 kHz
NUMBER = "+33612340011"
VOICEMAIL = "[voicemail]\nmax_seconds = {max_seconds}\nsilence_seconds = 4\nmax_total_mb = {mb}\n"
Row = tuple[str, int, float, bool]  # path, size_bytes, duration_s, interrupted


def make_gateway(folder: Path, *, max_seconds: int = 30, mb: int = 500, max_calls: int = 16,
                 data_dir: Path | None = None, database: str = "") -> GatewayProcess:
    gateway = GatewayProcess(folder, data_dir=data_dir, database=database,
                             extra=VOICEMAIL.format(max_seconds=max_seconds, mb=mb),
                             gateway=f"max_calls = {max_calls}\n")
    assert gateway.cli("db", "upgrade").returncode == 0
    # Numbers of the tests leave a message (withheld callers do by the default rules).
    assert gateway.cli("block", "add", "+336123400", "--kind", "prefix",
                       "--action", "voicemail").returncode == 0
    return gateway


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[GatewayProcess]:
    process = make_gateway(tmp_path / "gateway")
    try:
        yield process
    finally:
        process.stop()


@contextlib.contextmanager
def callers(port: int, numbers: list[str]) -> Iterator[list[VoiceCaller]]:
    """Every caller dials at the same moment; all are answered; all are closed at the end."""
    voices = [VoiceCaller(port, number) for number in numbers]
    try:
        statuses: list[int] = []
        threads = [threading.Thread(target=lambda v=v: statuses.append(v.call()))
                   for v in voices]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert statuses == [200] * len(voices)
        yield voices
    finally:
        for voice in voices:
            voice.close()


def recorded(folder: Path) -> dict[str, int]:
    """Recording files in the voicemail folder and their sizes."""
    return {p.name: p.stat().st_size for p in folder.glob("*.wav")} if folder.exists() else {}


def recording(folder: Path, count: int, seconds: float) -> bool:
    """Whether `count` recordings hold at least `seconds` of audio each."""
    sizes = recorded(folder).values()
    return sum(1 for size in sizes if size >= WAV_HEADER_BYTES + seconds * SECOND) >= count


def voicemails(path: Path) -> list[Row]:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return [(str(r[0]), int(r[1]), float(r[2]), bool(r[3])) for r in conn.execute(
            "SELECT path, size_bytes, duration_s, interrupted FROM voicemails ORDER BY path")]
    finally:
        conn.close()


def outcomes(path: Path) -> list[str]:
    conn = sqlite3.connect(path, timeout=30)
    try:
        return sorted(str(r[0]) for r in conn.execute("SELECT outcome FROM calls"))
    finally:
        conn.close()


def assert_kept(rows: list[Row], folder: Path) -> None:
    """Each row has its own file, a valid WAV of exactly the size and length stored."""
    assert len({r[0] for r in rows}) == len(rows), rows
    for name, size, duration, _ in rows:
        path = folder / name
        assert path.stat().st_size == size, (name, size)
        with wave.open(str(path), "rb") as wav:
            assert wav.getnframes() == (size - WAV_HEADER_BYTES) // 2
            assert abs(wav.getnframes() / 8000 - duration) < 0.01
    assert sorted(recorded(folder)) == sorted(r[0] for r in rows)  # and no stray file


def test_simultaneous_messages_from_one_number_and_withheld_callers_are_all_kept(
        gateway: GatewayProcess) -> None:
    gateway.start()
    folder = gateway.data_dir / "voicemail"
    with callers(gateway.port, [NUMBER] * 10 + ["anonymous"] * 3) as voices:
        wait_until(lambda: recording(folder, 13, 2.0), 120, "13 recordings of 2 s")
        for voice in voices:
            voice.hang_up()
    wait_until(lambda: len(voicemails(gateway.database_file)) == 13, 60, "13 voicemails")
    rows = voicemails(gateway.database_file)
    assert_kept(rows, folder)
    assert sum(1 for r in rows if r[0].endswith("withheld.wav") or "-withheld-" in r[0]) == 3
    assert all(duration >= 2.0 and not interrupted for _, _, duration, interrupted in rows)
    assert all(o.startswith("voicemail ") for o in outcomes(gateway.database_file))
    assert gateway.stop() == 0
    assert "FileNotFoundError" not in gateway.log() and "failed open" not in gateway.log()


def test_ten_messages_at_once_stop_together_at_the_total_cap(tmp_path: Path) -> None:
    gateway = make_gateway(tmp_path / "gateway", mb=1, max_seconds=60)
    folder = gateway.data_dir / "voicemail"
    try:
        gateway.start()
        numbers = [f"+3361234000{i}" for i in range(10)]
        with callers(gateway.port, numbers) as voices:
            # 10 callers would say 60 s each (9.6 MB): the cap stops them and hangs up.
            wait_until(lambda: all(v.gateway_hung_up.is_set() for v in voices), 120,
                       "the gateway to end every message at the cap")
        wait_until(lambda: len(voicemails(gateway.database_file)) == 10, 60, "10 voicemails")
        rows = voicemails(gateway.database_file)
        assert_kept(rows, folder)
        total = sum(size for _, size, _, _ in rows)
        assert 1024 * 1024 - 10 * SECOND < total <= 1024 * 1024, total
        assert all(o.endswith("mailbox now full") for o in outcomes(gateway.database_file))
        # The next caller hears that the mailbox is full; nothing is recorded for it.
        with callers(gateway.port, ["+33612340099"]) as (late,):
            wait_until(late.gateway_hung_up.is_set, 60, "the full mailbox to hang up")
        wait_until(lambda: "voicemail full" in outcomes(gateway.database_file), 30,
                   "the refused call in the log")
        assert len(voicemails(gateway.database_file)) == 10
        assert sorted(recorded(folder)) == sorted(r[0] for r in rows)
        assert gateway.stop() == 0
    finally:
        gateway.stop()


def test_kill_9_during_a_message_keeps_it_as_interrupted_with_its_real_length(
        gateway: GatewayProcess) -> None:
    gateway.start()
    folder = gateway.data_dir / "voicemail"
    with callers(gateway.port, [NUMBER]):
        wait_until(lambda: recording(folder, 1, 3.0), 60, "3 s of the message on disk")
        gateway.kill()
    [(name, size)] = recorded(folder).items()
    gateway.start()  # saves what the killed run was recording before it takes a call
    wait_until(lambda: len(voicemails(gateway.database_file)) == 1, 30, "the message's row")
    rows = voicemails(gateway.database_file)
    assert_kept(rows, folder)
    [(path, stored, duration, interrupted)] = rows
    assert (path, interrupted) == (name, True)
    assert stored >= size and duration >= 3.0  # all that reached the disk, header fixed
    assert outcomes(gateway.database_file) == ["interrupted: gateway restarted"]
    assert list((gateway.data_dir / "recording").glob("*.json")) == []
    assert gateway.stop() == 0


def test_a_full_disk_says_the_mailbox_is_full_and_a_message_it_cuts_is_kept(
        tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "disk", "24m") as disk:
        gateway = make_gateway(tmp_path / "gateway", data_dir=disk / "data")
        folder = gateway.data_dir / "voicemail"
        try:
            gateway.start()
            # The disk fills up during a message: what was said so far is kept.
            with callers(gateway.port, [NUMBER]) as (voice,):
                wait_until(lambda: recording(folder, 1, 2.0), 60, "2 s of the message")
                filler = fill(disk)
                wait_until(voice.gateway_hung_up.is_set, 30, "the message to stop")
            # Still full: the next caller is told so, instead of hearing a beep for nothing.
            with callers(gateway.port, ["+33612340012"]) as (late,):
                wait_until(late.gateway_hung_up.is_set, 60, "the full mailbox to hang up")
            # Neither the database nor the journal has room: the rows wait in memory.
            assert voicemails(gateway.database_file) == []
            filler.unlink()
            wait_until(lambda: len(outcomes(gateway.database_file)) == 2, 60,
                       "both calls in the log once there is room")
            found = outcomes(gateway.database_file)
            assert "voicemail full" in found, found
            # Stopped by the disk's reserve or by ENOSPC itself, whichever came first.
            assert any(o.startswith("voicemail ") and o.endswith(("mailbox now full", "disk full"))
                       for o in found), found
            rows = voicemails(gateway.database_file)
            assert len(rows) == 1 and rows[0][2] >= 2.0 and not rows[0][3], rows
            assert_kept(rows, folder)
            assert gateway.stop() == 0
        finally:
            gateway.stop()
    assert "failed open" not in gateway.log()


def test_postgresql_stopped_during_the_greeting_loses_no_message(tmp_path: Path) -> None:
    try:
        server_context = postgres_server()
        server = server_context.__enter__()
    except PostgresUnavailable as exc:
        missing_peer(str(exc))
    try:
        gateway = make_gateway(tmp_path / "gateway", database=server.url)
        engine = create_engine(server.url)
        folder = gateway.data_dir / "voicemail"

        def stored() -> list[tuple[str, bool]]:
            with engine.connect() as conn:
                return [(str(r[0]), bool(r[1])) for r in conn.execute(
                    text("SELECT path, interrupted FROM voicemails"))]

        try:
            gateway.start()
            with callers(gateway.port, [NUMBER]) as (voice,):
                engine.dispose()
                server.stop()  # the greeting plays on; the database is gone
                wait_until(lambda: recording(folder, 1, 3.0), 60,
                           "the message recorded while the database is down")
                voice.hang_up()
            wait_until(lambda: gateway.journal_backlog() >= 1, 60,
                       "the message's row in the journal")
            server.start()
            wait_until(lambda: len(stored()) == 1, 60, "the message once the database is back")
            [(path, interrupted)] = stored()
            assert not interrupted and (folder / path).stat().st_size > 3 * SECOND
            assert gateway.stop() == 0
        finally:
            gateway.stop()
            engine.dispose()
    finally:
        server_context.__exit__(None, None, None)
    assert "failed open" not in gateway.log()


def test_messages_of_e164_callers_survive_backup_and_restore_after_pause_and_resume(
        gateway: GatewayProcess, tmp_path: Path) -> None:
    gateway.start()
    folder = gateway.data_dir / "voicemail"
    numbers = [f"+3361234002{i}" for i in range(5)]
    with callers(gateway.port, numbers) as voices:
        wait_until(lambda: recording(folder, 5, 1.0), 60, "5 messages of 1 s")
        for voice in voices:
            voice.hang_up()
    wait_until(lambda: len(voicemails(gateway.database_file)) == 5, 60, "5 voicemails")
    assert gateway.stop() == 0
    assert gateway.cli("pause", "2h").returncode == 0
    assert gateway.cli("pause", "off").returncode == 0  # paused_until is null from now on
    archive = tmp_path / "backup.tar.gz"
    made = gateway.cli("backup", "--with-voicemail", str(archive))
    assert made.returncode == 0, made.stderr
    assert "5 voicemail_files" in made.stdout

    fresh = GatewayProcess(tmp_path / "fresh")
    assert fresh.cli("db", "upgrade").returncode == 0
    restored = fresh.cli("restore", str(archive), "--yes")
    assert restored.returncode == 0, restored.stderr
    rows = voicemails(fresh.database_file)
    assert rows == voicemails(gateway.database_file)
    assert all("+33612340" in path for path, _, _, _ in rows)
    assert_kept(rows, fresh.data_dir / "voicemail")
    for name, size in recorded(folder).items():
        assert (fresh.data_dir / "voicemail" / name).read_bytes() == (folder / name).read_bytes()
        assert size > WAV_HEADER_BYTES
