"""A restore never changes the web UI's credentials: two installations and a cross restore.

Installation A is the owner's; B is a stranger's. Restoring B's backup into A (the CLI here,
the UI in tests/web/test_web_restore.py) keeps A's password and token working and B's
refused, and an archive without any credentials never sends A's UI back to /setup.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import Settings, load_settings_from_text
from gateway.ops.backup import BackupError, backup_to, restore_from
from gateway.screening.rules import ListName
from gateway.store.settings import CREDENTIAL_KEYS
from tests.helpers import Services
from web.security import (
    auth_epoch,
    check_api_token,
    check_password,
    new_api_token,
    password_is_set,
    set_password,
)

OWNER = "the owner's own password"
STRANGER = "a stranger's password"


def installation(folder: Path, password: str) -> tuple[Settings, Services, str]:
    """A migrated installation in `folder` with a password, an API token and one entry."""
    folder.mkdir(parents=True)
    text = 'data_dir = "data"\n'
    (folder / "config.toml").write_text(text, encoding="utf-8")
    settings = load_settings_from_text(text, folder, source=folder / "config.toml")
    service = Services.open(settings)
    set_password(service.store, password)
    token = new_api_token(service.store)
    service.store.entries.add(ListName.BLOCK, "0162123456", label=f"from {folder.name}")
    return settings, service, token


@pytest.fixture
def two(tmp_path: Path) -> tuple[tuple[Settings, Services, str], tuple[Settings, Services, str]]:
    return installation(tmp_path / "owner", OWNER), installation(tmp_path / "stranger", STRANGER)


def assert_owner_keeps_the_keys(service: Services, owner_token: str, stranger_token: str) -> None:
    store = service.store
    assert check_password(store, OWNER)
    assert not check_password(store, STRANGER)
    assert check_api_token(store, owner_token)
    assert not check_api_token(store, stranger_token)


def test_cli_cross_restore_keeps_the_owners_password_and_token(
        two: tuple[tuple[Settings, Services, str], tuple[Settings, Services, str]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (mine, service, my_token), (theirs, _, their_token) = two
    archive = tmp_path / "stranger.tar.gz"
    assert main(["--config", str(theirs.source), "backup", str(archive)]) == 0
    epoch = auth_epoch(service.store)
    assert main(["--config", str(mine.source), "restore", str(archive), "--yes"]) == 0
    assert "password and API token kept" in capsys.readouterr().out
    assert [e.label for e in service.store.entries.find("block")] == ["from stranger"]
    assert_owner_keeps_the_keys(service, my_token, their_token)
    assert auth_epoch(service.store) == epoch  # the owner's sessions stay open too


def test_an_old_backup_holding_a_strangers_credentials_brings_none(
        two: tuple[tuple[Settings, Services, str], tuple[Settings, Services, str]],
        tmp_path: Path) -> None:
    (mine, service, my_token), (theirs, _, their_token) = two
    archive = tmp_path / "stranger.tar.gz"
    # What backups held before: every settings row, the stranger's hashes included.
    backup_to(archive, theirs, with_credentials=True)
    with tarfile.open(archive) as tar:
        member = tar.extractfile("settings.json")
        assert member is not None
        assert set(CREDENTIAL_KEYS) <= set(json.loads(member.read()))
    restore_from(archive, mine, db=service.db)
    assert_owner_keeps_the_keys(service, my_token, their_token)


def test_an_archive_without_credentials_never_sends_the_ui_back_to_setup(
        two: tuple[tuple[Settings, Services, str], tuple[Settings, Services, str]],
        tmp_path: Path) -> None:
    (mine, service, my_token), (theirs, _, their_token) = two
    archive = tmp_path / "stranger.tar.gz"
    backup_to(archive, theirs)
    with tarfile.open(archive) as tar:
        member = tar.extractfile("settings.json")
        assert member is not None
        assert not set(CREDENTIAL_KEYS) & set(json.loads(member.read()))  # left out by default
    restore_from(archive, mine, db=service.db)
    assert password_is_set(service.store)
    assert_owner_keeps_the_keys(service, my_token, their_token)


def test_carrying_credentials_over_is_explicit_and_confirmed(
        two: tuple[tuple[Settings, Services, str], tuple[Settings, Services, str]],
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    (mine, service, my_token), (theirs, _, their_token) = two
    plain, full = tmp_path / "plain.tar.gz", tmp_path / "full.tar.gz"
    assert main(["--config", str(theirs.source), "backup", str(plain)]) == 0
    assert main(["--config", str(theirs.source), "backup", str(full), "--with-credentials"]) == 0
    capsys.readouterr()

    # Asked twice on a terminal; anything but "replace" to the second question changes nothing.
    answers = iter(["yes", "no"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda _prompt: next(answers))
    assert main(["--config", str(mine.source), "restore", str(full), "--with-credentials"]) == 1
    assert_owner_keeps_the_keys(service, my_token, their_token)
    assert [e.label for e in service.store.entries.find("block")] == ["from owner"]

    # A backup made without credentials cannot replace them: refused, nothing changed.
    assert main(["--config", str(mine.source), "restore", str(plain), "--yes",
                 "--with-credentials"]) == 2
    assert "holds no web UI password" in capsys.readouterr().err
    assert_owner_keeps_the_keys(service, my_token, their_token)

    epoch = auth_epoch(service.store)
    answers = iter(["y", "replace"])
    assert main(["--config", str(mine.source), "restore", str(full), "--with-credentials"]) == 0
    assert "replaced by the backup's" in capsys.readouterr().out
    assert check_password(service.store, STRANGER) and not check_password(service.store, OWNER)
    assert check_api_token(service.store, their_token)
    assert auth_epoch(service.store) != epoch  # every session opened before is logged out


def test_the_ui_backup_never_holds_credentials(
        two: tuple[tuple[Settings, Services, str], tuple[Settings, Services, str]],
        tmp_path: Path) -> None:
    (_, _, _), (theirs, service, _) = two
    archive = tmp_path / "b.tar.gz"
    backup_to(archive, theirs, db=service.db)  # what /transfer/backup calls
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        data = b"".join(tar.extractfile(n).read()  # type: ignore[union-attr]
                        for n in names if n.endswith((".json", ".jsonl")))
    assert b"scrypt$" not in data and b"web_api_token_hash" not in data


def test_restore_with_credentials_refuses_an_archive_without_a_password(
        two: tuple[tuple[Settings, Services, str], tuple[Settings, Services, str]],
        tmp_path: Path) -> None:
    (mine, service, my_token), (theirs, _, their_token) = two
    archive = tmp_path / "b.tar.gz"
    backup_to(archive, theirs)
    with pytest.raises(BackupError, match="holds no web UI password"):
        restore_from(archive, mine, db=service.db, with_credentials=True)
    assert_owner_keeps_the_keys(service, my_token, their_token)
