"""Shared fixtures: settings in a temp folder, a real SQLite-backed service, peer checks."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import Settings, load_settings_from_text
from gateway.service import ScreeningService, open_service

REPO_ROOT = Path(__file__).resolve().parent.parent


def require_binary(name: str) -> str:
    """Return the path of `name`; skip if missing, but fail when CI demands real peers."""
    path = shutil.which(name) or (name if os.path.exists(name) else None)
    if path:
        return path
    message = f"{name} is not installed (apt-get install it, or run .ci/run)"
    if os.environ.get("RINGFENCE_REQUIRE_PEERS"):
        pytest.fail(message + "; RINGFENCE_REQUIRE_PEERS is set")
    pytest.skip(message)


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
def service(settings: Settings) -> ScreeningService:
    """A screening service on a fresh, migrated SQLite database."""
    svc = open_service(settings)
    yield svc
    svc.db.dispose()
