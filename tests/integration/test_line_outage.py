"""A registrar outage as the owner sees it (issue 11, item 7): a real `ringfence run` registered
on a real Kamailio with a 10-minute binding, Kamailio stopped and started again, and what
`ringfence status` says meanwhile."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.peers import free_port, wait_until
from tests.peers.gateway_process import GatewayProcess
from tests.peers.kamailio import Kamailio

pytestmark = pytest.mark.slow


def line_status(gateway: GatewayProcess) -> str:
    out = gateway.cli("status").stdout
    return next((line.strip() for line in out.splitlines() if "line home" in line), out)


def test_status_says_unreachable_during_an_outage_and_registered_after_it(
        tmp_path: Path, make_kamailio: Callable[..., Kamailio]) -> None:
    kamailio = make_kamailio()
    extra = (f'[[lines]]\nname = "home"\nregistrar = "127.0.0.1:{kamailio.port}"\n'
             f'username = "home"\npassword = "homepw"\nlisten = "127.0.0.1:{free_port()}"\n'
             "expires = 600\n")
    gateway = GatewayProcess(tmp_path / "gateway", extra=extra)
    assert gateway.cli("db", "upgrade").returncode == 0
    try:
        gateway.start_without_probe()
        wait_until(lambda: line_status(gateway).startswith("line home   OK, registered"), 60,
                   "the line to register")
        kamailio.stop()
        wait_until(lambda: "FAILED, unreachable" in line_status(gateway), 60,
                   "`ringfence status` to say the registrar is unreachable")
        assert "the registrar does not answer OPTIONS" in line_status(gateway)
        kamailio.start()
        wait_until(lambda: line_status(gateway).startswith("line home   OK, registered"), 60,
                   "the line registered again")
        assert gateway.stop() == 0
    finally:
        gateway.stop()
