"""`scripts/install.sh` and `scripts/upgrade.sh` in a throwaway root (DESTDIR).

What this proves: the files land where the units expect them, Ringfence installs into its own
venv from a wheel (not editable) and runs from there, the database is migrated, and a second
run or an upgrade keeps the owner's config and data. What it cannot prove: creating the
`ringfence` user, ownership, and systemd starting the units on a real Pi (DESTDIR skips
those on purpose; see docs/install-pi.md for the manual check).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gateway import __version__
from gateway.store.db import head_revision
from tests.peers.require import missing_peer

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def run_script(name: str, destdir: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGFENCE_CONFIG")}
    env.update(DESTDIR=str(destdir), SKIP_APT="1", PYTHON=sys.executable, **extra)
    return subprocess.run(["bash", str(ROOT / "scripts" / name)], env=env, capture_output=True,
                          text=True, check=False, cwd=ROOT)


def schema_of(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        (revision,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return str(revision)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    destdir = tmp_path_factory.mktemp("root")
    result = run_script("install.sh", destdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "DESTDIR is set: not running systemctl enable" in result.stdout
    return destdir


def test_install_lays_out_config_units_venv_and_data(installed: Path) -> None:
    config = (installed / "etc/ringfence/config.toml").read_text()
    assert 'data_dir = "/var/lib/ringfence"' in config
    assert oct((installed / "etc/ringfence/config.toml").stat().st_mode & 0o777) == "0o640"
    for unit in ("ringfence-gateway.service", "ringfence-web.service"):
        assert (installed / "etc/systemd/system" / unit).read_text() == \
            (ROOT / "systemd" / unit).read_text()
    wrapper = (installed / "usr/local/bin/ringfence").read_text()
    assert "/opt/ringfence/venv/bin/ringfence" in wrapper
    assert "RINGFENCE_CONFIG:-/etc/ringfence/config.toml" in wrapper


def test_the_venv_runs_an_installed_copy_not_the_checkout(installed: Path) -> None:
    venv = installed / "opt/ringfence/venv"
    version = subprocess.run([str(venv / "bin/ringfence"), "--version"], capture_output=True,
                             text=True, check=True, cwd="/")
    assert version.stdout.strip() == f"ringfence {__version__}"
    where = subprocess.run([str(venv / "bin/python"), "-c",
                            "import gateway, pathlib; print(pathlib.Path(gateway.__file__))"],
                           capture_output=True, text=True, check=True, cwd="/")
    assert str(venv) in where.stdout
    assert "site-packages" in where.stdout
    migrations = list((Path(where.stdout.strip()).parent / "store/migrations/versions")
                      .glob("0*.py"))
    assert migrations, "migrations must be installed as package data"


def test_install_migrates_the_database(installed: Path) -> None:
    assert schema_of(installed / "var/lib/ringfence/ringfence.db") == head_revision()


def test_prompts_are_rendered_when_the_generator_exists(installed: Path) -> None:
    if not (ROOT / "gateway/prompts/generate.py").exists():
        pytest.skip("this build has no prompt generator")
    if shutil.which("espeak-ng") is None:
        missing_peer("espeak-ng is not installed")
    # Built-in prompts go into the installed package; data_dir/prompts stays the owner's.
    assert list((installed / "opt/ringfence").rglob("gateway/prompts/wav/*/*.wav"))
    assert not list((installed / "var/lib/ringfence").rglob("prompts/*/*.wav"))


def test_upgrade_keeps_config_and_data(installed: Path) -> None:
    config = installed / "etc/ringfence/config.toml"
    edited = config.read_text().replace('home_region = "FR"', 'home_region = "BE"')
    edited += "\n# the owner's own note\n"
    config.write_text(edited)
    db = installed / "var/lib/ringfence/ringfence.db"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO settings (key, value) VALUES ('owner_marker', '1')")

    for script in ("upgrade.sh", "install.sh"):
        result = run_script(script, installed)
        assert result.returncode == 0, result.stdout + result.stderr
        if script == "upgrade.sh":
            assert "DESTDIR is set: not running systemctl stop" in result.stdout
        assert "keeping the existing /etc/ringfence/config.toml" in result.stdout
        assert config.read_text() == edited
        with sqlite3.connect(db) as conn:
            assert conn.execute("SELECT value FROM settings WHERE key = 'owner_marker'") \
                .fetchone() == (1,)
        assert schema_of(db) == head_revision()


def test_upgrade_refuses_when_nothing_is_installed(tmp_path: Path) -> None:
    result = run_script("upgrade.sh", tmp_path)
    assert result.returncode != 0
    assert "run make install first" in result.stderr


def test_overridden_paths_reach_units_wrapper_and_config(tmp_path: Path) -> None:
    result = run_script("install.sh", tmp_path, PREFIX="/srv/rf", SYSCONFDIR="/srv/rf-etc",
                        STATEDIR="/srv/rf-data", SKIP_PROMPTS="1")
    assert result.returncode == 0, result.stdout + result.stderr
    unit = (tmp_path / "etc/systemd/system/ringfence-gateway.service").read_text()
    assert "ExecStart=/srv/rf/venv/bin/ringfence --config /srv/rf-etc/config.toml run" in unit
    assert "ReadWritePaths=/srv/rf-data" in unit
    assert "/opt/ringfence" not in unit
    assert 'data_dir = "/srv/rf-data"' in (tmp_path / "srv/rf-etc/config.toml").read_text()
    assert (tmp_path / "srv/rf-data/ringfence.db").exists()
    assert "/srv/rf/venv/bin/ringfence" in (tmp_path / "usr/local/bin/ringfence").read_text()

    removed = subprocess.run(["bash", str(ROOT / "scripts/uninstall.sh")], capture_output=True,
                             text=True, check=False,
                             env={**os.environ, "DESTDIR": str(tmp_path), "PREFIX": "/srv/rf",
                                  "SYSCONFDIR": "/srv/rf-etc", "STATEDIR": "/srv/rf-data"})
    assert removed.returncode == 0, removed.stderr
    assert not (tmp_path / "srv/rf").exists()
    assert not (tmp_path / "etc/systemd/system/ringfence-gateway.service").exists()
    assert (tmp_path / "srv/rf-data/ringfence.db").exists()  # data kept without PURGE
