"""`ringfence run` as a real process: direct listening with no account, calls, clean SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from gateway.sip.message import SipResponse
from tests.peers import free_port, wait_until
from tests.peers.gateway_process import GatewayProcess, answers_options
from tests.peers.raw import RawPeer


def test_run_direct_listener_then_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text(f'data_dir = "data"\n[gateway]\nlisten = "127.0.0.1:{port}"\n')
    log = (tmp_path / "gateway.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "run"],
        stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2],
    )
    try:
        wait_until(lambda: process.poll() is None and answers_options(port), 20,
                   "the gateway to answer OPTIONS")
        peer = RawPeer(port)
        try:
            invite = peer.invite()  # an unknown caller: the default policy lets it ring
            peer.send(invite)
            peer.expect_status(100)
            peer.send(RawPeer.follow_up(invite, "CANCEL"))
            peer.expect(lambda m: isinstance(m, SipResponse) and m.status == 487)
        finally:
            peer.close()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=5)
        log.close()
    output = (tmp_path / "gateway.log").read_text()
    assert "Ringfence gateway started" in output
    assert "Ringfence gateway stopped" in output
    assert "Traceback" not in output


def test_run_exits_1_when_the_sip_port_is_taken(tmp_path: Path) -> None:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        config = tmp_path / "config.toml"
        config.write_text(f'data_dir = "data"\n[gateway]\nlisten = "127.0.0.1:{port}"\n')
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(config), "run"],
            capture_output=True, text=True, timeout=60,
            cwd=Path(__file__).resolve().parents[2],
        )
    assert result.returncode == 1
    output = result.stdout + result.stderr
    # The address, the cause in words and what to do: a second `make run` is the usual case.
    assert f"cannot listen for SIP on 127.0.0.1:{port}: the address is already in use" in output
    assert "another Ringfence" in output and "[gateway] listen" in output
    assert "Errno" not in output and "Traceback" not in output


def test_web_exits_1_naming_the_address_when_its_port_is_taken(tmp_path: Path) -> None:
    import socket

    repo = Path(__file__).resolve().parents[2]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "config.toml"
        config.write_text(f'data_dir = "data"\n[web]\nlisten = "127.0.0.1:{port}"\n')
        subprocess.run([sys.executable, "-m", "gateway", "--config", str(config), "db",
                        "upgrade"], check=True, capture_output=True, cwd=repo, timeout=60)
        result = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(config), "web"],
            capture_output=True, text=True, timeout=60, cwd=repo)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert f"cannot listen for the web UI on 127.0.0.1:{port}: the address is already in use" \
        in output
    assert "[web] listen" in output and "Traceback" not in output


def test_sigusr1_prints_every_threads_stack_and_the_gateway_goes_on(tmp_path: Path) -> None:
    """What makes a hung gateway diagnosable: the dump names the main loop and the SIP threads."""
    gateway = GatewayProcess(tmp_path)
    try:
        gateway.start()
        gateway.send_signal(signal.SIGUSR1)
        wait_until(lambda: "in run_gateway" in gateway.log(), 10, "the stack dump")
        dump = gateway.log()
        assert "most recent call first" in dump and "transport.py" in dump
        assert answers_options(gateway.port), "the gateway stopped answering after the dump"
        assert gateway.stop() == 0
    finally:
        gateway.stop()
    assert "Ringfence gateway stopped" in gateway.log()
