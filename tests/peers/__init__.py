"""Real SIP peers for integration tests: Kamailio (registrar/proxy), baresip (caller), SIPp.

Every peer runs on 127.0.0.1 with free ports, writes its files under a temporary folder, waits
for readiness by polling (never blind sleeps) and is stopped by the fixture that started it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable

import pytest

REQUIRE_ENV = "RINGFENCE_REQUIRE_PEERS"


def require_binary(name: str) -> str:
    """Path of `name`; skip the test when missing, unless CI demands peers (then fail)."""
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}")
                                  else None)
    if path is None:
        if os.environ.get(REQUIRE_ENV):
            pytest.fail(f"{name} is not installed and {REQUIRE_ENV} is set")
        pytest.skip(f"{name} is not installed (set {REQUIRE_ENV}=1 to make this a failure)")
    return path


def free_port(span: int = 1) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 right now, with the `span - 1` ports above it.

    baresip, for one, binds its TLS transport on its SIP port + 1, so it asks for a span of 2.
    """
    for _ in range(200):
        with contextlib.ExitStack() as held:
            udp = held.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
            if port + span - 1 > 65535:
                continue
            try:
                for offset in range(span):
                    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                        if offset == 0 and kind == socket.SOCK_DGRAM:
                            continue
                        sock = held.enter_context(socket.socket(socket.AF_INET, kind))
                        sock.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no run of {span} free port(s) found")


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.05) -> None:
    """Poll `predicate` until true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
