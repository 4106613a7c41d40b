"""Scale-out on PostgreSQL: migrate with the CLI, then move an installation from SQLite.

A private PostgreSQL server is started for the module (tests/peers/postgres.py). The backup is
made by `ringfence backup` on SQLite and restored by `ringfence restore` into PostgreSQL, so
this is the path docs/postgresql.md tells an owner to follow.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.config import Settings, load_settings
from gateway.ops.health import collect_metrics, collect_status
from gateway.screening.rules import ListName
from gateway.store.db import Database, current_revision, head_revision
from tests.helpers import Services

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
pytestmark = pytest.mark.slow


def ringfence(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "gateway", "--config", str(config), *args],
                          capture_output=True, text=True, check=False, cwd=ROOT, env=env)


def write_config(folder: Path, database: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    config.write_text(f'data_dir = "data"\ndatabase = "{database}"\n', encoding="utf-8")
    return config


def lists_of(service: Services) -> list[tuple[Any, ...]]:
    return sorted((e.list.value, e.kind.value, e.pattern, e.label, str(e.action), e.once,
                   e.expires_at, e.source) for e in service.store.entries.find(limit=100_000))


def test_db_upgrade_creates_the_schema_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, postgres_url)
    result = ringfence(config, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert f"database at schema {head_revision()}" in result.stdout
    db = Database(postgres_url)
    try:
        assert current_revision(db.engine) == head_revision()
    finally:
        db.dispose()
    again = ringfence(config, "db", "upgrade")  # idempotent
    assert again.returncode == 0, again.stderr


def test_backup_from_sqlite_restores_into_postgresql(postgres_url: str, tmp_path: Path) -> None:
    sqlite_config = write_config(tmp_path / "pi")
    assert ringfence(sqlite_config, "db", "upgrade").returncode == 0
    source_settings: Settings = load_settings(sqlite_config)
    source = Services.open(source_settings, upgrade=False)
    store = source.store
    store.entries.add(ListName.BLOCK, "0162000001", label="Démarcheur « énergie »",
                   action="reject:404")
    store.entries.add(ListName.BLOCK, "0948*", label="plage ARCEP")
    store.entries.add(ListName.BLOCK, "+3327?123456", label="glob")  # 9 digits after +33
    store.entries.add(ListName.BLOCK, "re:^\\+44", label="regex", action="voicemail")
    store.entries.add(ListName.ALLOW, "0612345678", label="école", once=True,
                   expires_at=NOW + timedelta(days=1))
    bulk = io.StringIO("".join(f"+3319{n:07d},bulk\n" for n in range(2_000)))
    report = store.list_files.import_csv(bulk, ListName.BLOCK, source="subscription")
    assert report.added == 2_000
    store.runtime.set("burst", {"distinct_callers": 7})
    caller = source.screener.caller("0162000001")
    source.book.record_call(caller, source.screener.screen(caller, NOW), at=NOW, line="home")
    expected = lists_of(source)
    expected_rules = [(r.kind, str(r.action), r.params, r.priority) for r in store.rules.all()]
    source.db.dispose()

    archive = tmp_path / "pi.tar.gz"
    made = ringfence(sqlite_config, "backup", str(archive), "--with-calls")
    assert made.returncode == 0, made.stderr

    pg_config = write_config(tmp_path / "server", postgres_url)
    assert ringfence(pg_config, "db", "upgrade").returncode == 0
    restored = ringfence(pg_config, "restore", str(archive), "--yes")
    assert restored.returncode == 0, restored.stderr
    assert "2005 list entries" in restored.stdout

    target = Services.open(load_settings(pg_config), upgrade=False)
    try:
        assert lists_of(target) == expected
        assert [(r.kind, str(r.action), r.params, r.priority)
                for r in target.store.rules.all()] == expected_rules
        assert target.store.runtime.get("burst")["distinct_callers"] == 7
        assert [c.number for c in target.store.calls.recent()] == ["+33162000001"]
        # The restored entry blocks the next call on PostgreSQL too.
        decision = target.screener.evaluate(target.screener.caller("0162000001"),
                                            NOW + timedelta(hours=1))
        assert str(decision.action) == "reject:404"
        # Ids were restored as they were: the sequences must have moved past them.
        added = target.store.entries.add(ListName.BLOCK, "0163000000")
        assert added.id > 2_005
        rule = target.store.rules.add("invalid", "reject:603")
        assert rule.id > max(r.id for r in target.store.rules.all() if r.id != rule.id)
        # Status and metrics read PostgreSQL the same way.
        status = collect_status(target.settings, target.db)
        assert status["database"]["ok"], status["problems"]
        assert collect_metrics(target.settings, target.db).calls_by_action == {"reject:404": 1}
    finally:
        target.db.dispose()

    # And back: a PostgreSQL backup restores into a fresh SQLite file.
    back = tmp_path / "server.tar.gz"
    assert ringfence(pg_config, "backup", str(back)).returncode == 0
    fresh = write_config(tmp_path / "new-pi")
    assert ringfence(fresh, "db", "upgrade").returncode == 0
    assert ringfence(fresh, "restore", str(back), "--yes").returncode == 0
    again = Services.open(load_settings(fresh), upgrade=False)
    try:
        assert len(lists_of(again)) == len(expected) + 1
    finally:
        again.db.dispose()


def test_missing_server_binaries_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.peers.postgres as peer

    monkeypatch.setattr(peer, "find_bin_dir", lambda: None)
    with pytest.raises(peer.PostgresUnavailable, match="apt-get install postgresql"), \
            peer.running_postgres():
        pass
