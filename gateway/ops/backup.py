"""Ringfence as an appliance: `ringfence backup`, `ringfence restore` and `ringfence status`.

A backup is a ``.tar.gz`` in the spirit of Pi-hole's teleporter. It holds the owner's data as
JSON written through the models, not a copy of the database file, so a backup made on SQLite
restores into PostgreSQL and back. ``manifest.json`` comes first and names the format, the
Ringfence version, the schema revision and a SHA-256 for every other file.

Restoring treats the archive as untrusted: only regular files with known, relative names, each
and all of bounded size; rows are checked against the columns and the owner-facing validators
before anything is written, and the database part happens in one transaction.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, cast

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    delete,
    insert,
    select,
    text,
)
from sqlalchemy.orm import Session

from gateway import __version__
from gateway.config import Settings
from gateway.files import create_private
from gateway.screening.rules import Action, RuleKind
from gateway.store import open_database
from gateway.store.db import MIGRATIONS, Database, head_revision
from gateway.store.models import (
    Base,
    CallRow,
    ListEntryRow,
    MessageRow,
    RuleRow,
    SettingRow,
    UTCDateTime,
    VoicemailRow,
    WebSessionRow,
)
from gateway.store.rules import check_rule_params
from gateway.store.settings import (
    API_TOKEN_KEY,
    CREDENTIAL_KEYS,
    DEFAULT_SETTINGS,
    EPOCH_KEY,
    PASSWORD_KEY,
    bump_after_restore,
    validate_setting,
    versions_of,
)

FORMAT = "ringfence-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
# Bounds for what a restore will read: a hostile archive cannot fill the disk or the memory.
MAX_MEMBERS = 20_000
MAX_DATA_FILE_BYTES = 512 * 1024 * 1024  # lists/calls as JSON lines
MAX_AUDIO_FILE_BYTES = 64 * 1024 * 1024  # a WAV; 120 s of 8 kHz 16-bit is under 2 MiB
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024
# Files read whole, or with few rows: far below what a real installation writes, far above
# what fits in a web process limited to 256 MiB only if it were read naively.
MAX_SMALL_FILE_BYTES = {"settings.json": 1024 * 1024, "rules.jsonl": 16 * 1024 * 1024}
# A JSON line is read with this bound, so a single 400 MiB "line" is refused after 64 KiB
# instead of being read whole; a real row (a call's reason, a rule's parameters) is < 4 KiB.
MAX_LINE_BYTES = 64 * 1024
_BATCH = 5_000
_BATCH_BYTES = 4 * 1024 * 1024  # rows in one INSERT: bounded by count and by their size
# A file or folder name in an archive: no "..", no separators, no hidden files. "+" is in: the
# messages of E.164 callers are named after them (20261201-183216-+33612340011.wav).
_SAFE_PART = re.compile(r"[A-Za-z0-9+][A-Za-z0-9._+-]{0,99}")

# name in the archive -> the model stored in it, in the order a restore inserts them.
_TABLE_FILES: dict[str, type[Base]] = {
    "settings.json": SettingRow,
    "rules.jsonl": RuleRow,
    "lists.jsonl": ListEntryRow,
    "calls.jsonl": CallRow,
    "voicemails.jsonl": VoicemailRow,
    "messages.jsonl": MessageRow,  # text messages, with the calls (--with-calls)
}
_FILE_DIRS = {"prompts": "prompts", "owner_prompts": "owner prompts", "voicemail": "voicemail"}


class BackupError(ValueError):
    """A backup cannot be written or an archive cannot be restored; the message says why."""


@dataclass
class RestoreReport:
    """What a restore put back."""

    manifest: dict[str, Any]
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, int] = field(default_factory=dict)
    credentials_replaced: bool = False

    def summary(self) -> str:
        """One line for the owner."""
        parts = [f"{n} {name}" for name, n in self.rows.items()]
        parts += [f"{n} {_FILE_DIRS[d]} file(s)" for d, n in self.files.items() if n]
        credentials = ("the web UI password and API token replaced by the backup's"
                       if self.credentials_replaced
                       else "the web UI password and API token kept")
        return "restored " + ", ".join(parts) + "; " + credentials


# --------------------------------------------------------------------------- rows <-> JSON


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _row_to_json(row: Base) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for column in _table(type(row)).columns:
        value = getattr(row, column.key)
        data[column.key] = value.isoformat() if isinstance(value, datetime) else value
    return data


def _json_to_row(model: type[Base], data: Any, where: str) -> dict[str, Any]:
    """Check one row from an archive against the model's columns; unknown keys are ignored.

    Keys missing from an older backup take the column default, which is what a migration
    would have given them.
    """
    if not isinstance(data, dict):
        raise BackupError(f"{where}: expected a JSON object")
    values: dict[str, Any] = {}
    for column in _table(model).columns:
        key = column.key
        if key not in data:
            continue
        value = data[key]
        # In a JSON column null is a value (paused_until after a resume), not a missing one.
        if value is None and not isinstance(column.type, JSON):
            if not column.nullable:
                raise BackupError(f"{where}: {key} must not be empty")
            values[key] = None
            continue
        ctype = column.type
        ok = True
        if isinstance(ctype, UTCDateTime | DateTime):
            try:
                parsed = datetime.fromisoformat(str(value))
            except ValueError:
                ok = False
            else:
                value = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        elif isinstance(ctype, Boolean):
            ok = isinstance(value, bool)
        elif isinstance(ctype, Integer):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(ctype, Float):
            ok = isinstance(value, int | float) and not isinstance(value, bool)
            value = float(value) if ok else value
        elif isinstance(ctype, String):
            ok = isinstance(value, str) and (ctype.length is None or len(value) <= ctype.length)
        if not ok:
            raise BackupError(f"{where}: {key} = {str(value)[:60]!r} is not a valid "
                              f"{type(ctype).__name__.lower()}")
        values[key] = value
    for column in _table(model).primary_key.columns:
        if column.key not in values:
            raise BackupError(f"{where}: {column.key} is missing")
    return values


def _check_domain(model: type[Base], values: dict[str, Any], where: str) -> dict[str, Any]:
    """Apply the owner-facing validators, so a restored row is one the UI could have made."""
    try:
        if model is ListEntryRow:
            if values.get("list") not in ("allow", "block"):
                raise ValueError(f"list {values.get('list')!r}: expected allow or block")
            if values.get("kind") not in ("exact", "prefix", "glob", "regex"):
                raise ValueError(f"kind {values.get('kind')!r}: expected exact, prefix, glob "
                                 "or regex")
            if not values.get("pattern"):
                raise ValueError("the pattern is empty")
            if values["kind"] == "regex":
                re.compile(values["pattern"])
            if values.get("action"):
                values["action"] = str(Action.parse(values["action"]))
        elif model is RuleRow:
            kind = RuleKind(str(values.get("kind")))
            values["action"] = str(Action.parse(str(values.get("action"))))
            values["params"] = check_rule_params(kind, values.get("params") or {})
        elif model is SettingRow and values["key"] in DEFAULT_SETTINGS:
            values["value"] = validate_setting(values["key"], values.get("value"))
        elif model is VoicemailRow:
            _safe_relative(str(values.get("path", "")), where)
    except (ValueError, re.error) as exc:
        raise BackupError(f"{where}: {exc}") from None
    return values


# --------------------------------------------------------------------------- backup


def _write_jsonl(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            count += 1
    return count


def _stream_rows(db: Database, model: type[Base]) -> Iterator[dict[str, Any]]:
    pk = next(iter(_table(model).primary_key.columns))
    query = select(model).order_by(pk).execution_options(yield_per=_BATCH)
    with db.session() as s:
        for row in s.scalars(query):
            yield _row_to_json(row)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tree_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """Regular files below `folder` as (relative posix name, path); symlinks are left out."""
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path.relative_to(folder).as_posix(), path


def backup_to(path: Path | str, settings: Settings, *, with_calls: bool = False,
              with_voicemail: bool = False, with_credentials: bool = False,
              db: Database | None = None, now: datetime | None = None) -> dict[str, Any]:
    """Write a backup archive to `path` and return its manifest.

    The web UI's password hash, API token hash and auth epoch stay out of the archive unless
    `with_credentials` (a CLI-only choice): a backup is copied to places the UI is not.
    """
    target = Path(path)
    own_db = db is None
    db = db or open_database(settings)  # refuses a database at another schema
    try:
        with tempfile.TemporaryDirectory(prefix="ringfence-backup-") as tmp:
            staging = Path(tmp)
            contents: dict[str, Any] = {}
            files: dict[str, dict[str, Any]] = {}
            members: list[tuple[str, Path]] = []

            with db.session() as s:
                settings_rows = {r.key: r.value for r in s.scalars(select(SettingRow))
                                 if with_credentials or r.key not in CREDENTIAL_KEYS}
            (staging / "settings.json").write_text(
                json.dumps(settings_rows, ensure_ascii=False, sort_keys=True, indent=1),
                encoding="utf-8")
            members.append(("settings.json", staging / "settings.json"))
            contents["settings"] = len(settings_rows)

            tables: list[tuple[str, type[Base], str]] = [
                ("rules.jsonl", RuleRow, "rules"), ("lists.jsonl", ListEntryRow, "lists")]
            if with_calls:
                tables.append(("calls.jsonl", CallRow, "calls"))
                tables.append(("messages.jsonl", MessageRow, "messages"))
            if with_voicemail:
                tables.append(("voicemails.jsonl", VoicemailRow, "voicemails"))
            for name, model, label in tables:
                contents[label] = _write_jsonl(staging / name, _stream_rows(db, model))
                members.append((name, staging / name))

            folders = [("prompts", settings.data_dir / "prompts")]
            if settings.gateway.prompts_dir is not None:
                folders.append(("owner_prompts", settings.gateway.prompts_dir))
            if with_voicemail:
                folders.append(("voicemail", settings.voicemail_dir))
            for prefix, folder in folders:
                found = [(f"{prefix}/{rel}", p) for rel, p in _tree_files(folder)
                         if _is_safe_relative(rel)]
                contents[f"{prefix}_files"] = len(found)
                members.extend(found)

            for name, member_path in members:
                files[name] = {"size": member_path.stat().st_size,
                               "sha256": _sha256(member_path)}
            manifest = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "ringfence_version": __version__,
                "schema_revision": head_revision(),
                "created_at": (now or datetime.now(UTC)).isoformat(),
                "database_backend": db.engine.dialect.name,
                "contents": contents,
                "files": files,
            }
            manifest_path = staging / MANIFEST
            manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True),
                                     encoding="utf-8")
            # Written next to the target and renamed, so a failed backup leaves no half file.
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")
            partial.unlink(missing_ok=True)
            create_private(partial)  # lists, settings, maybe calls: 0600 whatever the umask
            with tarfile.open(partial, "w:gz") as tar:
                tar.add(manifest_path, arcname=MANIFEST, recursive=False, filter=_normalise)
                for name, member_path in members:
                    tar.add(member_path, arcname=name, recursive=False, filter=_normalise)
            os.replace(partial, target)
            return manifest
    finally:
        if own_db:
            db.dispose()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Owner names and ids of this machine mean nothing on the one the backup goes to.
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info


# --------------------------------------------------------------------------- restore


def _is_safe_relative(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and all(_SAFE_PART.fullmatch(p) for p in parts) and "\\" not in name


def _safe_relative(name: str, where: str) -> PurePosixPath:
    if name.startswith("/") or not _is_safe_relative(name):
        raise BackupError(f"{where}: unsafe path {name[:80]!r} (absolute, '..', or odd "
                          "characters)")
    return PurePosixPath(name)


def _known_revisions() -> list[str]:
    from alembic.script import ScriptDirectory  # only when restoring: alembic costs ~10 MiB

    script = ScriptDirectory(str(MIGRATIONS))
    return [rev.revision for rev in script.walk_revisions()]


def check_members(tar: tarfile.TarFile) -> dict[str, tarfile.TarInfo]:
    """Check every member's type, name and size; return them by name."""
    members: dict[str, tarfile.TarInfo] = {}
    total = 0
    for info in tar:  # iterating reads headers one by one, so a bomb stops at the bound
        if len(members) >= MAX_MEMBERS:
            raise BackupError(f"the archive has more than {MAX_MEMBERS} files")
        name = info.name
        if info.isdir():
            _safe_relative(name.rstrip("/"), "archive")
            continue
        if not info.isfile():
            raise BackupError(f"archive member {name[:80]!r} is not a regular file "
                              "(links and devices are refused)")
        path = _safe_relative(name, "archive")
        top = path.parts[0]
        if len(path.parts) == 1:
            if name != MANIFEST and name not in _TABLE_FILES:
                raise BackupError(f"unexpected file {name[:80]!r} in the archive")
            limit = MAX_MANIFEST_BYTES if name == MANIFEST else MAX_SMALL_FILE_BYTES.get(
                name, MAX_DATA_FILE_BYTES)
        elif top in _FILE_DIRS:
            limit = MAX_AUDIO_FILE_BYTES
        else:
            raise BackupError(f"unexpected file {name[:80]!r} in the archive")
        if info.size > limit:
            raise BackupError(f"{name[:80]!r} is {info.size} bytes, more than the {limit} "
                              "a backup file may have")
        if name in members:
            raise BackupError(f"{name[:80]!r} appears twice in the archive")
        total += info.size
        if total > MAX_TOTAL_BYTES:
            raise BackupError(f"the archive unpacks to more than {MAX_TOTAL_BYTES} bytes")
        members[name] = info
    return members


def check_manifest(manifest: Any) -> dict[str, Any]:
    """Check the manifest's format and schema; raise BackupError with what to do."""
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupError("this is not a Ringfence backup (manifest.json has no "
                          f"format {FORMAT!r})")
    version = manifest.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise BackupError("manifest.json: format_version is missing")
    if version > FORMAT_VERSION:
        raise BackupError(f"this backup uses format {version}, made by a newer Ringfence "
                          f"({manifest.get('ringfence_version')}); upgrade first")
    if version < 1:
        raise BackupError(f"manifest.json: unknown format_version {version}")
    schema = manifest.get("schema_revision")
    if not isinstance(schema, str):
        raise BackupError("manifest.json: schema_revision is missing")
    if schema not in _known_revisions():
        raise BackupError(f"this backup was made by a newer Ringfence (schema {schema}, "
                          f"version {manifest.get('ringfence_version')}); this one knows "
                          f"schema {head_revision()} at most: upgrade first")
    if not isinstance(manifest.get("files"), dict):
        raise BackupError("manifest.json: the file list is missing")
    return manifest


def read_manifest(path: Path | str) -> dict[str, Any]:
    """Open an archive, check its members and manifest, and return the manifest."""
    with _open_archive(path) as tar:
        members = check_members(tar)
        return _load_manifest(tar, members)


@contextlib.contextmanager
def _open_archive(path: Path | str) -> Iterator[tarfile.TarFile]:
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed in the finally below
    except FileNotFoundError:
        raise BackupError(f"{path}: no such file") from None
    except (tarfile.TarError, OSError, EOFError):
        raise BackupError(f"{path}: not a .tar.gz archive; choose a file made by Ringfence's "
                          "backup (ringfence-….tar.gz)") from None
    try:
        yield tar
    except (tarfile.TarError, EOFError, OSError):
        raise BackupError(f"{path}: the archive is damaged or cut short (an interrupted "
                          "download?); make or download the backup again") from None
    finally:
        tar.close()


def _load_manifest(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo]) -> dict[str, Any]:
    info = members.get(MANIFEST)
    if info is None:
        raise BackupError("the archive has no manifest.json: not a Ringfence backup")
    stream = tar.extractfile(info)
    assert stream is not None  # a regular file, checked above
    manifest = check_manifest(_loads(
        stream.read(MAX_MANIFEST_BYTES + 1), "manifest.json",
        hint=": not a Ringfence backup, or a damaged one"))
    listed = set(manifest["files"])
    present = set(members) - {MANIFEST}
    # Without these a restore would empty the lists and re-seed the default rules.
    for required in ("settings.json", "rules.jsonl", "lists.jsonl"):
        if required not in present:
            raise BackupError(f"the archive has no {required}: not a complete backup")
    if listed != present:
        odd = sorted(listed ^ present)[0]
        raise BackupError(f"manifest.json does not match the archive (about {odd[:80]!r})")
    return manifest


def _extract(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo],
             manifest: dict[str, Any], staging: Path) -> None:
    """Copy every member to `staging`, checking sizes and SHA-256 against the manifest."""
    for name, info in members.items():
        if name == MANIFEST:
            continue
        expected = manifest["files"][name]
        source = tar.extractfile(info)
        assert source is not None
        target = staging.joinpath(*PurePosixPath(name).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        written = 0
        lines = _LineBound(name) if name.endswith(".jsonl") else None
        create_private(target)  # restored files keep this mode when moved into place
        with target.open("wb") as out:
            while chunk := source.read(1 << 20):
                written += len(chunk)
                if written > info.size:
                    raise BackupError(f"{name[:80]!r} is longer than its header says")
                if lines is not None:
                    lines.feed(chunk)  # a 400 MiB "line" stops here, not on the disk
                digest.update(chunk)
                out.write(chunk)
        if not isinstance(expected, dict) or expected.get("sha256") != digest.hexdigest():
            raise BackupError(f"{name[:80]!r} does not match its checksum: the backup is "
                              "damaged or was edited")


class _LineBound:
    """Refuse a JSON-lines member as soon as one of its lines passes MAX_LINE_BYTES."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.run = 0  # bytes since the last newline
        self.line = 1

    def feed(self, chunk: bytes) -> None:
        """Check the next chunk of the member."""
        parts = chunk.split(b"\n")
        self.run += len(parts[0])
        self._check()
        for part in parts[1:]:
            self.line += 1
            self.run = len(part)
            self._check()

    def _check(self) -> None:
        if self.run > MAX_LINE_BYTES:
            raise BackupError(f"{self.name} line {self.line} is longer than {MAX_LINE_BYTES} "
                              "bytes: not a row Ringfence writes")


def _loads(data: str | bytes, where: str, *, hint: str = "") -> Any:
    """Parse JSON from an archive; anything wrong with it is a BackupError naming `where`."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackupError(f"{where} is not valid JSON ({exc}){hint}") from None
    except RecursionError:  # e.g. 200,000 nested "[": Python's parser recurses per level
        raise BackupError(f"{where}: JSON nested too deeply") from None


_Row = tuple[dict[str, Any], int]  # a checked row and the size of its line


def _read_rows(path: Path, model: type[Base], label: str) -> Iterator[_Row]:
    with path.open(encoding="utf-8") as stream:
        line_no = 0
        while line := stream.readline(MAX_LINE_BYTES + 1):
            line_no += 1
            where = f"{label} line {line_no}"
            if len(line) > MAX_LINE_BYTES:
                raise BackupError(f"{where} is longer than {MAX_LINE_BYTES} characters: "
                                  "not a row Ringfence writes")
            if not line.strip():
                continue
            data = _loads(line, where)
            yield _check_domain(model, _json_to_row(model, data, where), where), len(line)


def _settings_rows(path: Path) -> list[dict[str, Any]]:
    if path.stat().st_size > MAX_SMALL_FILE_BYTES["settings.json"]:
        raise BackupError("settings.json is larger than a backup's settings may be")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise BackupError(f"settings.json is not valid UTF-8: {exc}") from None
    data = _loads(text, "settings.json")
    if not isinstance(data, dict):
        raise BackupError("settings.json: expected a JSON object")
    rows = []
    for key, value in data.items():
        where = f"settings.json key {key[:60]!r}"
        values = _json_to_row(SettingRow, {"key": key, "value": value}, where)
        rows.append(_check_domain(SettingRow, values, where))
    return rows


def _reset_sequences(session: Session, models: list[type[Base]]) -> None:
    # Rows keep their ids (the call log refers to rules and entries by id); PostgreSQL's
    # sequences do not follow explicit ids, so the next insert would collide without this.
    if session.get_bind().dialect.name != "postgresql":
        return
    for model in models:
        table = _table(model).name
        session.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1, false)"))


def _insert_all(session: Session, model: type[Base], rows: Iterator[_Row]) -> int:
    count = 0
    batch: list[dict[str, Any]] = []
    size = 0
    for row, row_size in rows:
        batch.append(row)
        size += row_size
        if len(batch) >= _BATCH or size >= _BATCH_BYTES:
            session.execute(insert(model), batch)
            count += len(batch)
            batch, size = [], 0
    if batch:
        session.execute(insert(model), batch)
        count += len(batch)
    return count


def restore_from(path: Path | str, settings: Settings, *, db: Database | None = None,
                 with_credentials: bool = False) -> RestoreReport:
    """Restore an archive: lists, rules and settings are replaced in one transaction.

    The call log and voicemails are replaced only when the archive holds them. Prompt and
    voicemail files are written after the database commits. The web UI's password, API token
    and sessions are this installation's and stay as they are, whatever the archive holds;
    only `with_credentials` (the CLI's explicit, confirmed option) takes the archive's
    password and token, and then every session is logged out.
    """
    own_db = db is None
    db = db or open_database(settings)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        with _open_archive(path) as tar:
            members = check_members(tar)
            manifest = _load_manifest(tar, members)
            needed = sum(i.size for i in members.values())
            free = shutil.disk_usage(settings.data_dir).free
            if needed * 2 > free:  # staged copy plus the database rows
                raise BackupError(f"not enough free space in {settings.data_dir}: the backup "
                                  f"needs about {needed * 2} bytes, {free} are free")
            # Staged inside the data folder so moving files into place is a rename.
            with tempfile.TemporaryDirectory(prefix=".restore-", dir=settings.data_dir) as tmp:
                staging = Path(tmp)
                _extract(tar, members, manifest, staging)
                _check_writable(staging, settings)
                report = RestoreReport(manifest=manifest)
                _restore_rows(db, staging, report, with_credentials=with_credentials)
                for folder in _FILE_DIRS:
                    report.files[folder] = _move_files(staging / folder,
                                                       _destination(folder, settings))
        return report
    finally:
        if own_db:
            db.dispose()


def _check_writable(staging: Path, settings: Settings) -> None:
    """Fail before the database changes if a file could not be put in place afterwards."""
    for folder in _FILE_DIRS:
        if not any(_tree_files(staging / folder)):
            continue
        target = _destination(folder, settings)
        probe = target
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not os.access(probe, os.W_OK | os.X_OK):
            raise BackupError(f"cannot write {_FILE_DIRS[folder]} files into {target} "
                              "(permission denied)")


def _destination(folder: str, settings: Settings) -> Path:
    if folder == "voicemail":
        return settings.voicemail_dir
    if folder == "owner_prompts" and settings.gateway.prompts_dir is not None:
        return settings.gateway.prompts_dir
    return settings.data_dir / "prompts"


def _credential_rows(settings_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The archive's password and token as rows to store, with a fresh auth epoch."""
    found = {row["key"]: row.get("value") for row in settings_rows
             if row["key"] in CREDENTIAL_KEYS}
    password = found.get(PASSWORD_KEY)
    if not isinstance(password, str) or not password.startswith("scrypt$"):
        raise BackupError("this backup holds no web UI password (it was made without "
                          "--with-credentials): restore it without --with-credentials")
    token = found.get(API_TOKEN_KEY)
    return [{"key": PASSWORD_KEY, "value": password},
            {"key": API_TOKEN_KEY, "value": token if isinstance(token, str) else None},
            # A new epoch: sessions opened with the password being replaced end here.
            {"key": EPOCH_KEY, "value": secrets.token_hex(8)}]


def _restore_rows(db: Database, staging: Path, report: RestoreReport, *,
                  with_credentials: bool = False) -> None:
    has_calls = (staging / "calls.jsonl").exists()
    has_messages = (staging / "messages.jsonl").exists()
    has_voicemails = (staging / "voicemails.jsonl").exists()
    settings_rows = _settings_rows(staging / "settings.json") if (
        staging / "settings.json").exists() else []
    credentials = _credential_rows(settings_rows) if with_credentials else []
    # The archive's credentials are never taken by default: they would let its author in and
    # lock the owner out. Without any in the archive, the owner's stay (no fall back to /setup).
    settings_rows = [row for row in settings_rows if row["key"] not in CREDENTIAL_KEYS]
    with db.session() as s:
        old_versions = versions_of(s)
        if has_voicemails or has_calls:
            s.execute(delete(VoicemailRow))
        if has_calls:
            s.execute(delete(CallRow))
        if has_messages:
            s.execute(delete(MessageRow))
        s.execute(delete(ListEntryRow))
        s.execute(delete(RuleRow))
        kept = CREDENTIAL_KEYS if not credentials else ()
        s.execute(delete(SettingRow).where(SettingRow.key.not_in(kept)))
        for row in [*settings_rows, *credentials]:
            s.add(SettingRow(key=row["key"], value=row.get("value")))
        if credentials:
            s.execute(delete(WebSessionRow))
            report.credentials_replaced = True
        report.rows["settings"] = len(settings_rows)
        inserted: list[type[Base]] = []
        call_ids: set[int] = set()
        for name, label in (("rules.jsonl", "rules"), ("lists.jsonl", "list entries"),
                            ("calls.jsonl", "calls"), ("voicemails.jsonl", "voicemails"),
                            ("messages.jsonl", "messages")):
            model = _TABLE_FILES[name]
            if not (staging / name).exists():
                continue
            rows = _read_rows(staging / name, model, name)
            if model is CallRow:
                rows = _remember_ids(rows, call_ids)
            elif model is VoicemailRow:
                # A message whose call is not in the backup (none were backed up, or the call
                # came in while the backup was being written) keeps the message, not the link.
                rows = (({**r, "call_id": r.get("call_id") if r.get("call_id") in call_ids
                          else None}, n) for r, n in rows)
            s.flush()
            report.rows[label] = _insert_all(s, model, rows)
            inserted.append(model)
        s.flush()
        _reset_sequences(s, inserted)
        # New versions (above the old and the restored ones) make a running gateway drop
        # every cache: its policy, its glob/regex index and its rate-limit counters.
        bump_after_restore(s, old_versions)


def _remember_ids(rows: Iterator[_Row], ids: set[int]) -> Iterator[_Row]:
    for row, size in rows:
        ids.add(row["id"])
        yield row, size


def _move_files(source: Path, target: Path) -> int:
    count = 0
    for relative, path in _tree_files(source):
        destination = target / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), destination)
        count += 1
    return count


__all__ = ["BackupError", "RestoreReport", "backup_to", "read_manifest", "restore_from"]

