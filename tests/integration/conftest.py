"""Fixtures of the integration tests: real peers (Kamailio, baresip) and the gateway factory.

They live in `tests.peers.fixtures` beside the peers they start; naming them here makes them
available to every test of this folder without a star import in each module.
"""

from __future__ import annotations

from tests.peers.fixtures import (  # noqa: F401 - pytest finds fixtures by name
    baresip,
    fake_service,
    kamailio,
    make_gateway,
    make_kamailio,
    silent_media,
)
