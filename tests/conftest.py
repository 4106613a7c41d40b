"""Shared fixtures: settings in a temp folder, a real SQLite-backed service, peer checks."""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import Settings, load_settings_from_text
from tests.helpers import Services
from tests.peers.postgres import PostgresUnavailable, running_postgres
from tests.peers.require import missing_peer

REPO_ROOT = Path(__file__).resolve().parent.parent


def _sleep_on_select(seconds: float) -> None:
    """time.sleep() without clock_nanosleep(): see _work_around_libfaketime."""
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)  # retried with the time left on EINTR (PEP 475)


def _work_around_libfaketime() -> None:
    """Under libfaketime 0.9.10 (Debian 12) with DONT_FAKE_MONOTONIC=1, as `.ci/run` runs the
    clock tests, Python 3.11's time.sleep() (clock_nanosleep on CLOCK_MONOTONIC, TIMER_ABSTIME)
    fails with EINVAL: libfaketime shifts that absolute time by the fake offset
    (wolfcw/libfaketime#426). Lock, Event and socket timeouts are fine with a real monotonic
    clock (and hang without DONT_FAKE_MONOTONIC). Only this process is patched, so the clock
    tests start no Python subprocess."""
    if "faketime" not in os.environ.get("LD_PRELOAD", ""):
        return
    try:
        time.sleep(0.0001)
    except OSError:
        time.sleep = _sleep_on_select


_work_around_libfaketime()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server for the test module (skipped, or failed in CI, if absent)."""
    try:
        with running_postgres() as url:
            yield url
    except PostgresUnavailable as exc:
        missing_peer(str(exc))


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[[str], Settings]:
    """Build settings from TOML text, with data in the test's temp folder."""

    def build(text: str = "") -> Settings:
        return load_settings_from_text(text, tmp_path)

    return build


@pytest.fixture
def settings(make_settings: Callable[[str], Settings]) -> Settings:
    """Default settings (France, Paris time) with SQLite in a temp folder."""
    return make_settings("")


@pytest.fixture
def service(settings: Settings) -> Iterator[Services]:
    """The real store, screener and call book on a fresh, migrated SQLite database."""
    services = Services.open(settings)
    yield services
    services.store.close()
