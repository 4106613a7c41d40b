"""Backup and restore (`gateway.ops.backup`) on real SQLite files in a temp folder."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import main
from gateway.config import Settings, load_settings_from_text
from gateway.ops import backup as appliance
from gateway.ops.backup import BackupError, backup_to, read_manifest, restore_from
from gateway.screening.rules import ListName
from gateway.store.db import head_revision
from tests.helpers import Services

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def make_settings(folder: Path, extra: str = "") -> Settings:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(f'data_dir = "data"\n{extra}', encoding="utf-8")
    return load_settings_from_text(f'data_dir = "data"\n{extra}', folder,
                                   source=folder / "config.toml")


def populated(settings: Settings) -> Services:
    service = Services.open(settings)
    store = service.store
    store.entries.add(ListName.BLOCK, "0162123456", label="démarchage", action="announce:sit")
    store.entries.add(ListName.BLOCK, "0948*", label="range")
    store.entries.add(ListName.BLOCK, "+3316?000000", label="glob")
    store.entries.add(ListName.BLOCK, "re:^\\+3327[01]", label="regex")
    store.entries.add(ListName.ALLOW, "0612345678", label="Maman",
                   expires_at=NOW + timedelta(days=3), once=True)
    store.runtime.set("default_mode", "challenge")
    rule = store.rules.add("quiet_hours", "voicemail", {"start": "21:00", "end": "08:00"},
                         label="soir")
    caller = service.screener.caller("0162123456")
    decision = service.screener.screen(caller, NOW)
    call_id = service.book.record_call(caller, decision, at=NOW, line="home")
    vm_dir = settings.voicemail_dir / "2026" / "11"
    vm_dir.mkdir(parents=True)
    (vm_dir / "msg1.wav").write_bytes(b"RIFF-fake-wav")
    service.book.save_voicemail(call_id, vm_dir / "msg1.wav", 3.5, 13, caller=caller)
    service.store.messages.add(caller, service.screener.screen_text(caller, NOW), at=NOW,
                               body="Offre spéciale", line="home")
    prompts = settings.data_dir / "prompts" / "fr"
    prompts.mkdir(parents=True)
    (prompts / "greeting.wav").write_bytes(b"owner greeting")
    assert rule.id > 0
    return service


def snapshot(service: Services) -> dict[str, Any]:
    store = service.store
    return {
        "entries": sorted((e.list.value, e.kind.value, e.pattern, e.label, str(e.action),
                           e.once, e.expires_at) for e in store.entries.find()),
        "rules": sorted((r.kind.value, str(r.action), r.enabled, r.priority, r.label,
                         json.dumps(r.params, sort_keys=True)) for r in store.rules.all()),
        "settings": {k: v for k, v in store.runtime.all().items()},
    }


def test_backup_restore_round_trip_into_a_new_installation(tmp_path: Path) -> None:
    source = make_settings(tmp_path / "a")
    before = snapshot(populated(source))
    archive = tmp_path / "backup.tar.gz"
    manifest = backup_to(archive, source, with_calls=True, with_voicemail=True, now=NOW)

    assert manifest["format"] == "ringfence-backup"
    assert manifest["schema_revision"] == head_revision()
    assert manifest["created_at"] == NOW.isoformat()
    assert manifest["contents"]["lists"] == 5
    assert manifest["contents"]["calls"] == 1
    assert manifest["contents"]["messages"] == 1
    assert manifest["contents"]["voicemail_files"] == 1
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert names[0] == "manifest.json"
    assert "voicemail/2026/11/msg1.wav" in names
    assert "prompts/fr/greeting.wav" in names

    target = make_settings(tmp_path / "b")
    service = Services.open(target)
    service.store.entries.add(ListName.BLOCK, "0999999999", label="replaced by the restore")
    report = restore_from(archive, target)

    assert report.rows["list entries"] == 5
    assert snapshot(service) == before
    assert [c.number for c in service.store.calls.recent()] == ["+33162123456"]
    assert [(m.number, m.body) for m in service.store.messages.recent()] == [
        ("+33162123456", "Offre spéciale")]  # texts travel with the calls
    (vm,) = service.store.voicemails.recent()
    assert vm.call_id == service.store.calls.recent()[0].id
    assert (target.voicemail_dir / vm.path).read_bytes() == b"RIFF-fake-wav"
    assert (target.data_dir / "prompts/fr/greeting.wav").read_bytes() == b"owner greeting"
    # Restored ids must not collide with the next insert.
    added = service.store.entries.add(ListName.BLOCK, "0377000000")
    assert added.id > max(e.id for e in service.store.entries.find() if e.id != added.id)


def test_restore_applies_to_the_next_call_without_restart(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = populated(settings)
    archive = tmp_path / "b.tar.gz"
    backup_to(archive, settings)
    service.store.entries.remove_pattern(ListName.BLOCK, "0948*")
    version = service.store.runtime.version()
    caller = service.screener.caller("0948000000")
    assert service.screener.evaluate(caller, NOW).step != "block"
    restore_from(archive, settings)
    assert service.store.runtime.version() > version
    assert service.screener.evaluate(caller, NOW).step == "block"


def test_restoring_twice_gives_the_same_state(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = populated(settings)
    archive = tmp_path / "b.tar.gz"
    backup_to(archive, settings, with_calls=True, with_voicemail=True)
    restore_from(archive, settings)
    first = snapshot(service)
    restore_from(archive, settings)
    assert snapshot(service) == first
    assert len(service.store.calls.recent()) == 1


def test_backup_without_calls_keeps_the_call_log_on_restore(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = populated(settings)
    archive = tmp_path / "b.tar.gz"
    manifest = backup_to(archive, settings)
    assert "calls" not in manifest["contents"]
    with tarfile.open(archive) as tar:
        assert not any(n.startswith("voicemail") or n.startswith("calls") for n in tar.getnames())
    restore_from(archive, settings)
    assert len(service.store.calls.recent()) == 1
    assert len(service.store.voicemails.recent()) == 1


def test_a_message_whose_call_is_not_in_the_backup_keeps_the_message(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = populated(settings)
    archive = tmp_path / "b.tar.gz"
    backup_to(archive, settings, with_voicemail=True)  # messages, but not the call log
    restore_from(archive, settings)
    (vm,) = service.store.voicemails.recent()
    assert vm.call_id is None
    assert (settings.voicemail_dir / vm.path).exists()


def test_an_unwritable_destination_is_found_before_the_database_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    owner = tmp_path / "owner-prompts"
    (owner / "fr").mkdir(parents=True)
    (owner / "fr" / "greeting.wav").write_bytes(b"mine")
    settings = make_settings(tmp_path / "home", f'[gateway]\nprompts_dir = "{owner}"\n')
    populated(settings)
    archive = tmp_path / "b.tar.gz"
    backup_to(archive, settings)

    locked = tmp_path / "locked"
    locked.mkdir()
    target = make_settings(tmp_path / "other", f'[gateway]\nprompts_dir = "{locked}/p"\n')
    service = Services.open(target)
    before = snapshot(service)
    # Tests run as root in CI, where file modes do not stop writes: simulate a read-only folder.
    real_access = os.access
    monkeypatch.setattr(appliance.os, "access", lambda path, mode: False if str(path).startswith(
        str(locked)) else real_access(path, mode))
    with pytest.raises(BackupError, match="cannot write owner prompts files into"):
        restore_from(archive, target)
    assert snapshot(service) == before


# --------------------------------------------------------------------------- hostile archives


def rebuild(archive: Path, out: Path, change: Callable[[tarfile.TarFile], None],
            *, manifest: Callable[[dict[str, Any]], None] | None = None,
            keep: Callable[[str], bool] = lambda name: True) -> Path:
    """Copy an archive member by member, editing the manifest and adding members."""
    with tarfile.open(archive) as src, tarfile.open(out, "w:gz") as dst:
        for info in src.getmembers():
            if not keep(info.name):
                continue
            data = src.extractfile(info)
            assert data is not None
            body = data.read()
            if info.name == "manifest.json" and manifest is not None:
                loaded = json.loads(body)
                manifest(loaded)
                body = json.dumps(loaded).encode()
                info.size = len(body)
            dst.addfile(info, io.BytesIO(body))
        change(dst)
    return out


def add_file(name: str, body: bytes) -> Callable[[tarfile.TarFile], None]:
    def change(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(body)
        tar.addfile(info, io.BytesIO(body))
    return change


def add_link(name: str, target: str, kind: bytes) -> Callable[[tarfile.TarFile], None]:
    def change(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)
    return change


@pytest.fixture
def good(tmp_path: Path) -> tuple[Settings, Path, dict[str, Any]]:
    settings = make_settings(tmp_path / "home")
    service = populated(settings)
    archive = tmp_path / "good.tar.gz"
    backup_to(archive, settings, with_voicemail=True)
    return settings, archive, snapshot(service)


def nothing(tar: tarfile.TarFile) -> None:
    return None


@pytest.mark.parametrize(("change", "message"), [
    (add_file("/etc/evil.wav", b"x"), "unsafe path"),
    (add_file("prompts/../../evil.wav", b"x"), "unsafe path"),
    (add_file("prompts/fr/.hidden", b"x"), "unsafe path"),
    (add_file("notes.txt", b"x"), "unexpected file"),
    (add_file("other/x.wav", b"x"), "unexpected file"),
    (add_link("prompts/fr/link.wav", "/etc/passwd", tarfile.SYMTYPE), "not a regular file"),
    (add_link("prompts/fr/hard.wav", "manifest.json", tarfile.LNKTYPE), "not a regular file"),
])
def test_restore_refuses_unsafe_members(
    good: tuple[Settings, Path, dict[str, Any]], tmp_path: Path,
    change: Callable[[tarfile.TarFile], None], message: str,
) -> None:
    settings, archive, _ = good
    bad = rebuild(archive, tmp_path / "bad.tar.gz", change)
    with pytest.raises(BackupError, match=message):
        restore_from(bad, settings)
    assert not (tmp_path / "evil.wav").exists()


def test_restore_refuses_a_backup_from_a_newer_schema(
    good: tuple[Settings, Path, dict[str, Any]], tmp_path: Path,
) -> None:
    settings, archive, _ = good

    def newer(m: dict[str, Any]) -> None:
        m["schema_revision"] = "0099"

    bad = rebuild(archive, tmp_path / "newer.tar.gz", nothing, manifest=newer)
    with pytest.raises(BackupError, match=r"made by a newer Ringfence \(schema 0099.*upgrade"):
        restore_from(bad, settings)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda m: m.update(format_version=2), "newer Ringfence"),
    (lambda m: m.update(format="pihole"), "not a Ringfence backup"),
    (lambda m: m.pop("schema_revision"), "schema_revision is missing"),
    (lambda m: m["files"].pop("rules.jsonl"), "does not match the archive"),
])
def test_restore_checks_the_manifest(
    good: tuple[Settings, Path, dict[str, Any]], tmp_path: Path,
    edit: Callable[[dict[str, Any]], None], message: str,
) -> None:
    settings, archive, _ = good
    bad = rebuild(archive, tmp_path / "bad.tar.gz", nothing, manifest=edit)
    with pytest.raises(BackupError, match=message):
        restore_from(bad, settings)


def test_restore_refuses_an_archive_without_manifest(
    good: tuple[Settings, Path, dict[str, Any]], tmp_path: Path,
) -> None:
    settings, archive, _ = good
    bad = rebuild(archive, tmp_path / "bad.tar.gz", nothing,
                  keep=lambda name: name != "manifest.json")
    with pytest.raises(BackupError, match=r"no manifest\.json"):
        restore_from(bad, settings)


def test_restore_refuses_an_archive_without_its_lists(
    good: tuple[Settings, Path, dict[str, Any]], tmp_path: Path,
) -> None:
    settings, archive, before = good

    def unlist(m: dict[str, Any]) -> None:
        m["files"].pop("lists.jsonl")

    bad = rebuild(archive, tmp_path / "bad.tar.gz", nothing, manifest=unlist,
                  keep=lambda name: name != "lists.jsonl")
    with pytest.raises(BackupError, match=r"no lists\.jsonl"):
        restore_from(bad, settings)
    assert snapshot(Services.open(settings)) == before


def test_restore_refuses_something_that_is_not_an_archive(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    Services.open(settings)
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"this is not gzip")
    with pytest.raises(BackupError, match=r"not a \.tar\.gz archive"):
        restore_from(junk, settings)
    with pytest.raises(BackupError, match="no such file"):
        read_manifest(tmp_path / "missing.tar.gz")


def test_restore_bounds_member_sizes(
    good: tuple[Settings, Path, dict[str, Any]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings, archive, _ = good
    monkeypatch.setattr(appliance, "MAX_AUDIO_FILE_BYTES", 4)
    with pytest.raises(BackupError, match="more than the 4"):
        restore_from(archive, settings)
    monkeypatch.setattr(appliance, "MAX_TOTAL_BYTES", 10)
    with pytest.raises(BackupError, match="unpacks to more than"):
        read_manifest(archive)


def tampered_lists(good: tuple[Settings, Path, dict[str, Any]], tmp_path: Path,
                   line: dict[str, Any], *, fix_checksum: bool) -> Path:
    _, archive, _ = good
    with tarfile.open(archive) as tar:
        member = tar.extractfile("lists.jsonl")
        assert member is not None
        body = member.read() + (json.dumps(line) + "\n").encode()
    import hashlib

    def edit(m: dict[str, Any]) -> None:
        m["files"]["lists.jsonl"]["size"] = len(body)
        if fix_checksum:
            m["files"]["lists.jsonl"]["sha256"] = hashlib.sha256(body).hexdigest()

    return rebuild(archive, tmp_path / "tampered.tar.gz", add_file("lists.jsonl", body),
                   manifest=edit, keep=lambda name: name != "lists.jsonl")


def test_restore_detects_an_edited_file(
    good: tuple[Settings, Path, dict[str, Any]], tmp_path: Path,
) -> None:
    settings, _, before = good
    row = {"id": 999, "list": "block", "kind": "exact", "pattern": "+33100000000"}
    bad = tampered_lists(good, tmp_path, row, fix_checksum=False)
    with pytest.raises(BackupError, match="checksum"):
        restore_from(bad, settings)
    assert snapshot(Services.open(settings)) == before


@pytest.mark.parametrize(("row", "message"), [
    ({"id": 999, "list": "block", "kind": "exact", "pattern": "+331", "action": "explode"},
     "unknown action"),
    ({"id": 999, "list": "grey", "kind": "exact", "pattern": "+331"}, "expected allow or block"),
    ({"id": 999, "list": "block", "kind": "regex", "pattern": "("}, "line 6"),
    ({"id": "x", "list": "block", "kind": "exact", "pattern": "+331"}, "not a valid integer"),
    ({"list": "block", "kind": "exact", "pattern": "+331"}, "id is missing"),
    ({"id": 999, "list": "block", "kind": "exact", "pattern": "+331" * 100}, "pattern"),
])
def test_an_invalid_row_rolls_the_whole_restore_back(
    good: tuple[Settings, Path, dict[str, Any]], tmp_path: Path, row: dict[str, Any],
    message: str,
) -> None:
    settings, _, before = good
    service = Services.open(settings)
    service.store.entries.add(ListName.BLOCK, "0270000000", label="added after the backup")
    expected = snapshot(service)
    assert expected != before
    bad = tampered_lists(good, tmp_path, row, fix_checksum=True)
    with pytest.raises(BackupError, match=message):
        restore_from(bad, settings)
    assert snapshot(service) == expected  # one transaction: nothing was replaced


# --------------------------------------------------------------------------- CLI


def test_cli_backup_and_restore(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    populated(settings)
    config = str(tmp_path / "config.toml")
    assert main(["--config", config, "backup", f"{tmp_path / 'out'}/"]) == 0
    (archive,) = (tmp_path / "out").glob("ringfence-backup-*.tar.gz")
    assert "backup written to" in capsys.readouterr().out

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: no prompt possible
    assert main(["--config", config, "restore", str(archive)]) == 2
    assert "--yes" in capsys.readouterr().err
    assert main(["--config", config, "restore", str(archive), "--yes"]) == 0
    assert "restored" in capsys.readouterr().out


def test_cli_restore_names_the_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       good: tuple[Settings, Path, dict[str, Any]]) -> None:
    settings, archive, _ = good

    def newer(m: dict[str, Any]) -> None:
        m["schema_revision"] = "0042"

    bad = rebuild(archive, tmp_path / "newer.tar.gz", nothing, manifest=newer)
    assert settings.source is not None
    assert main(["--config", str(settings.source), "restore", str(bad), "--yes"]) == 2
    assert "newer Ringfence (schema 0042" in capsys.readouterr().err
