"""Skip a test whose real peer (a server, a system tool) is missing, or fail in CI."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_ENV = "RINGFENCE_REQUIRE_PEERS"


def missing_peer(what: str) -> NoReturn:
    """Skip with `what` as the reason; fail instead when RINGFENCE_REQUIRE_PEERS is set (CI)."""
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{what} (required because {REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(what)
