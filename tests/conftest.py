"""Shared fixtures: settings in a temp folder, a real SQLite-backed service, peer checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.config import Settings, load_settings_from_text
from tests.helpers import Services
from tests.peers.postgres import PostgresUnavailable, running_postgres
from tests.peers.require import missing_peer

REPO_ROOT = Path(__file__).resolve().parent.parent


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
