"""The test peers' own port handling: a port taken between choosing and binding must not fail a
test (CI once lost a run to baresip's SIP/TLS bind on SIP port + 1)."""

from __future__ import annotations

import socket
from pathlib import Path

from tests.peers import free_port
from tests.peers.baresip import Baresip


def test_a_span_of_free_ports_is_free_for_udp_and_tcp() -> None:
    """free_port(span=2) gives a port whose neighbour above can be bound too, on both protocols."""
    for _ in range(20):
        port = free_port(span=2)
        for offset in (0, 1):
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as sock:
                    sock.bind(("127.0.0.1", port + offset))


def test_baresip_starts_on_new_ports_when_its_tls_port_was_taken(tmp_path: Path) -> None:
    """Someone binds SIP port + 1 after the ports were chosen: baresip still starts, elsewhere."""
    phone = Baresip(tmp_path, registrar_port=free_port())
    chosen = phone.sip_port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 0)
        squatter.bind(("127.0.0.1", chosen + 1))
        squatter.listen()
        try:
            phone.start()
            assert phone.sip_port != chosen
            assert "Address already in use" in phone.log_text()
        finally:
            phone.stop()
