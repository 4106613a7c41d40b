"""Under `umask 022` (what `make run` inherits), everything Ringfence creates is the owner's:
the database and its WAL, uploaded prompts, backups, restored files and recordings."""

from __future__ import annotations

import http.client
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.files import tighten_umask
from gateway.media import audio
from tests.helpers import Services
from tests.integration.test_media_rtp import session_pair
from tests.peers import wait_until
from tests.peers.web import make_config, ringfence, running_web
from tests.web.support import save_voicemail, wav_bytes

pytestmark = pytest.mark.slow

LOOSE = 0o022


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_private(*paths: Path) -> None:
    for path in paths:
        assert path.exists(), path
        others = mode(path) & 0o077
        assert not others, f"{path} is {oct(mode(path))}"


@contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


def test_everything_the_commands_create_is_private_under_umask_022(tmp_path: Path) -> None:
    config = make_config(tmp_path / "home")
    data = tmp_path / "home" / "data"
    assert ringfence(config, "db", "upgrade", umask=LOOSE).returncode == 0
    assert ringfence(config, "block", "add", "0612345678", umask=LOOSE).returncode == 0
    token = ringfence(config, "web", "--new-api-token", umask=LOOSE).stdout.split()[0]
    db = data / "ringfence.db"
    assert_private(data, db)

    with running_web(config, umask=LOOSE) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.request("PUT", "/api/prompts/fr/greeting", body=wav_bytes(0.2),
                     headers={"Authorization": f"Bearer {token}",
                              "Content-Type": "audio/wav"})
        assert conn.getresponse().status == 200
        conn.close()
        # The web process holds the database open: its WAL and shared-memory files exist.
        assert ringfence(config, "block", "add", "0699999999", umask=LOOSE).returncode == 0
        assert_private(db, Path(f"{db}-wal"), Path(f"{db}-shm"), data / "web-secret")
        prompt = data / "prompts" / "fr" / "greeting.wav"
        assert_private(prompt, prompt.parent, prompt.parent.parent)

    settings = load_settings(config)
    service = Services.open(settings)
    save_voicemail(service, settings, "+33612345678", name="Alice")
    service.db.dispose()
    backups = data / "backups"
    assert ringfence(config, "backup", f"{backups}/", "--with-voicemail",
                     umask=LOOSE).returncode == 0
    (archive,) = backups.glob("*.tar.gz")
    assert_private(backups, archive)

    other = make_config(tmp_path / "other")
    assert ringfence(other, "db", "upgrade", umask=LOOSE).returncode == 0
    restored = ringfence(other, "restore", str(archive), "--yes", umask=LOOSE)
    assert restored.returncode == 0, restored.stderr
    files = [p for p in (tmp_path / "other" / "data").rglob("*")]
    assert any(p.suffix == ".wav" for p in files)
    assert_private(*files)


def test_a_recording_is_private_under_umask_022(tmp_path: Path) -> None:
    tone = tmp_path / "tone.wav"
    audio.write_wav(tone, audio.tone(1000.0, 1.0, 0.5))
    target = tmp_path / "voicemail" / "rec.wav"
    out: list[object] = []
    with umask(LOOSE), session_pair("PCMA") as (caller, gateway):
        # Silence is counted from the start: a loaded machine may take a while to play.
        recorder = threading.Thread(target=lambda: out.append(gateway.record(
            target, max_seconds=6.0, silence_seconds=3.0)), daemon=True)
        recorder.start()
        # record() creates the file once it listens (what arrived before is dropped).
        wait_until(target.exists, 10, "the recording to start")
        caller.play(tone)
        recorder.join(15)
    assert out and out[0] is not None
    assert_private(target)


@pytest.mark.parametrize(("given", "kept"), [
    (0o022, 0o077), (0o002, 0o077), (0o000, 0o077), (0o027, 0o027), (0o077, 0o077),
    (0o037, 0o037),
])
def test_tighten_umask_keeps_a_protective_one_and_fixes_a_loose_one(given: int,
                                                                    kept: int) -> None:
    with umask(given):
        assert tighten_umask() == kept
        assert os.umask(kept) == kept
