"""Email over STARTTLS and implicit TLS to a loopback server with its own certificate."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateway.config import Settings
from gateway.notify.notifier import Notifier
from tests.helpers import Services
from tests.integration.notify_support import make_settings, smtp_server, smtp_toml

pytestmark = pytest.mark.clock

AFTER_DIGEST = datetime(2026, 11, 23, 7, 5, tzinfo=UTC)


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


def settings_for(tmp_path: Path, port: int, security: str, ca: Path | None) -> Settings:
    extra = smtp_toml(port, security=security)
    if ca is not None:
        extra += f'ca_file = "{ca}"\n'
    return make_settings(tmp_path, extra)


def test_starttls_with_a_private_ca(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with smtp_server(tls_context=server_context(cert, key), require_starttls=True) as sink:
        settings = settings_for(tmp_path, sink.port, "starttls", cert)
        service = Services.open(settings)
        outcomes = Notifier(service.db, settings).send_digest(
            date(2026, 11, 23), AFTER_DIGEST)
        assert [o.status for o in outcomes] == ["sent"], outcomes
        assert sink.wait_for(1)


def test_untrusted_certificate_is_a_permanent_error(tmp_path: Path,
                                                    certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with smtp_server(tls_context=server_context(cert, key), require_starttls=True) as sink:
        settings = settings_for(tmp_path, sink.port, "starttls", None)
        service = Services.open(settings)
        [outcome] = Notifier(service.db, settings).send_digest(
            date(2026, 11, 23), AFTER_DIGEST)
    assert outcome.status == "failed"
    assert "certificate" in (outcome.error or "")
    assert sink.messages == []


def test_implicit_tls(tmp_path: Path, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    with smtp_server(ssl_context=server_context(cert, key)) as sink:
        settings = settings_for(tmp_path, sink.port, "ssl", cert)
        service = Services.open(settings)
        outcomes = Notifier(service.db, settings).send_digest(
            date(2026, 11, 23), AFTER_DIGEST)
        assert [o.status for o in outcomes] == ["sent"], outcomes
        assert sink.wait_for(1)
