"""No combination of strangers' requests locks the owner out of a clean address.

Against a real `ringfence web` (waitress), with every client on its own loopback address
(127.0.0.x), the way a LAN full of guessers would reach it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.peers.web import Browser, make_config, ringfence, running_web

pytestmark = pytest.mark.slow

PASSWORD = "the owner's long password"
STRANGERS = 60  # more than the 50 failures that used to lock every address
ROUNDS = 3


def test_a_distributed_guesser_never_locks_the_owner_out(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert ringfence(config, "db", "upgrade").returncode == 0
    secret = tmp_path / "pw"
    secret.write_text(PASSWORD, encoding="utf-8")
    assert ringfence(config, "set-password", "--password-file", str(secret)).returncode == 0
    with running_web(config) as server:
        strangers = [Browser(server, f"127.0.0.{10 + i}") for i in range(STRANGERS)]
        statuses: list[int] = []
        for _ in range(ROUNDS):
            for stranger in strangers:
                statuses.append(stranger.login(f"guess {stranger.source}").status)

        owner = Browser(server, "127.0.0.250")
        answer = owner.login(PASSWORD)
        assert answer.status == 302, answer.text
        assert owner.get("/calls").status == 200

        assert statuses.count(401) >= STRANGERS  # each stranger was heard and refused
        # ...and every stranger who guessed wrong is now held back, by its own address.
        assert all(s.login("one more guess").status == 429 for s in strangers[:5])

        # A stranger even with the right password stays locked on its own address for now.
        assert strangers[0].login(PASSWORD).status == 429
