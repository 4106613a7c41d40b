"""Fixtures of the web UI tests: English settings, the app on the test database, clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.config import Settings
from tests.helpers import Services
from tests.web.support import login, make_app


@pytest.fixture
def settings(make_settings: Callable[[str], Settings]) -> Settings:
    """Default settings with the UI in English (assertions read English pages)."""
    return make_settings('language = "en"')


@pytest.fixture
def app(settings: Settings, service: Services) -> Flask:
    """The UI on the test's database."""
    return make_app(settings, service)


@pytest.fixture
def anonymous(app: Flask) -> Iterator[FlaskClient]:
    """A browser that has not logged in (and may not have set a password yet)."""
    with app.test_client() as c:
        yield c


@pytest.fixture
def client(app: Flask, service: Services) -> Iterator[FlaskClient]:
    """A browser logged in as the owner."""
    with app.test_client() as c:
        login(c, service)
        yield c
