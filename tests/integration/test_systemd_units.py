"""The systemd units pass `systemd-analyze verify` and keep the hardening they promise.

`verify` refuses a unit whose ExecStart binary does not exist, and /opt/ringfence is not
installed on a test machine. So each unit is copied to a temp folder with only the binary's
path changed, to a stub that exists; every other line is verified as shipped. (`--root` would
keep the path but needs a whole systemd tree under the root, sysinit.target and all.)
"""

from __future__ import annotations

import configparser
import inspect
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.call.process import Gateway
from gateway.sip.register import REFRESH_JOIN_WAIT, UNREGISTER_WAIT
from gateway.store.writer import STOP_JOIN_MARGIN, CallWriter
from tests.peers.require import missing_peer

UNITS = Path(__file__).resolve().parents[2] / "systemd"
INSTALLED_BINARY = "/opt/ringfence/venv/bin/ringfence"
NAMES = ("ringfence-gateway.service", "ringfence-web.service")


def read_service(name: str) -> dict[str, list[str]]:
    """The [Service] section, each key with all its values (keys may repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for raw in (UNITS / name).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        missing_peer("systemd-analyze not installed (apt-get install systemd)")
    stub = tmp_path / "bin" / "ringfence"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    copies = []
    for name in NAMES:
        text = (UNITS / name).read_text(encoding="utf-8")
        assert INSTALLED_BINARY in text
        copy = tmp_path / name
        copy.write_text(text.replace(INSTALLED_BINARY, str(stub)), encoding="utf-8")
        copies.append(str(copy))
    result = subprocess.run([analyze, "verify", *copies], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are only warnings with exit 0: treat any about our units
    # as failures.
    ours = [line for line in result.stderr.splitlines()
            if any(name in line for name in NAMES)]
    assert ours == [], "\n".join(ours)


@pytest.mark.parametrize("name", NAMES)
def test_units_are_hardened(name: str) -> None:
    service = read_service(name)
    expected = {
        "User": "ringfence", "Restart": "on-failure", "ProtectSystem": "strict",
        "ProtectHome": "yes", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "ReadWritePaths": "/var/lib/ringfence", "ProtectKernelTunables": "yes",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "StandardOutput": "journal",
    }
    for key, value in expected.items():
        assert service.get(key) == [value], key
    assert "MemoryMax" in service
    command = "run" if "gateway" in name else "web"
    assert service["ExecStart"] == [
        f"{INSTALLED_BINARY} --config /etc/ringfence/config.toml {command}"]


def test_only_the_gateway_may_bind_low_ports() -> None:
    gateway = read_service("ringfence-gateway.service")
    assert gateway["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert gateway["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    web = read_service("ringfence-web.service")
    assert "AmbientCapabilities" not in web
    assert web["CapabilityBoundingSet"] == [""]


def test_units_install_into_multi_user_target() -> None:
    for name in NAMES:
        parser = configparser.ConfigParser(strict=False, interpolation=None)
        parser.read(UNITS / name)
        assert parser["Install"]["WantedBy"] == "multi-user.target"


def test_a_missing_systemd_analyze_fails_when_peers_are_required(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("RINGFENCE_REQUIRE_PEERS", "1")
    with pytest.raises(pytest.fail.Exception, match="systemd-analyze not installed"):
        test_units_pass_systemd_analyze_verify(tmp_path)
    monkeypatch.delenv("RINGFENCE_REQUIRE_PEERS")
    with pytest.raises(pytest.skip.Exception):
        test_units_pass_systemd_analyze_verify(tmp_path)


def test_systemd_waits_longer_than_the_gateways_own_bounded_stop() -> None:
    """A SIGKILL in the middle of a clean stop could lose the call rows still in memory: the
    unit's TimeoutStopSec must exceed what the stop itself may take with one line."""
    workers = inspect.signature(Gateway.stop).parameters["grace"].default
    writer = inspect.signature(CallWriter.stop).parameters["timeout"].default + STOP_JOIN_MARGIN
    bound = REFRESH_JOIN_WAIT + UNREGISTER_WAIT + workers + writer
    (timeout,) = read_service("ringfence-gateway.service")["TimeoutStopSec"]
    assert timeout.endswith("s")
    assert float(timeout[:-1]) > bound, f"TimeoutStopSec={timeout}, the stop may take {bound} s"
