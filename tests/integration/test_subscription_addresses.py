"""Subscriptions cannot reach internal services: loopback, link-local and private addresses are
refused after name resolution and on every redirect, unless the owner marks a LAN source."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from gateway.cli import main
from gateway.feeds import subscriptions as subs
from gateway.store.models import SubscriptionRow
from tests.helpers import Services
from tests.integration.notify_support import make_settings
from tests.web.support import login, make_app, post
from web.security import new_api_token

LIST = b"0162000001,from the internal admin\n"


@dataclass
class Site:
    """A loopback web server answering one fixed response, and what it was asked."""

    host: str
    port: int = 0
    status: int = 200
    body: bytes = LIST
    location: str = ""
    paths: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextmanager
def site(host: str = "127.0.0.1", **options: Any) -> Iterator[Site]:
    served = Site(host, **options)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.paths.append(self.path)
            self.send_response(served.status)
            if served.location:
                self.send_header("Location", served.location)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Content-Length", str(len(served.body)))
            self.end_headers()
            self.wfile.write(served.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    served.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Services]:
    service = Services.open(make_settings(tmp_path))
    yield service
    service.store.close()


def entries(service: Services) -> int:
    return service.store.entries.count("block")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_loopback_list_is_refused(service: Services, host: str) -> None:
    with site() as internal:
        url = f"http://{host}:{internal.port}/internal-admin"
        sub = subs.add_subscription(service.db, "block", url)
        result = subs.refresh(service.db, service.settings, sub.id)
    assert not result.ok and "loopback" in (result.error or "")
    assert "LAN source" in (result.error or "")
    assert internal.paths == []  # not even asked
    assert entries(service) == 0


def test_a_lan_source_may_be_on_the_local_network(service: Services) -> None:
    with site() as lan:
        sub = subs.add_subscription(service.db, "block", f"{lan.url}/list.csv", lan=True)
        result = subs.refresh(service.db, service.settings, sub.id)
    assert result.ok and entries(service) == 1
    assert [r.lan for r in subs.list_subscriptions(service.db)] == [True]


def test_every_redirect_is_checked_after_resolution(service: Services,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # This machine has no public address to serve from: call 127.0.0.1 "public" here, and
    # keep every other address (127.0.0.2 included) refused as the real rule does.
    def rule(ip: subs.IPAddress) -> str | None:
        return None if str(ip) == "127.0.0.1" else subs.internal_reason(ip)

    monkeypatch.setattr(subs, "refusal", rule)
    with site("127.0.0.2") as internal, site(status=302) as public:
        public.location = f"{internal.url}/internal-admin"
        sub = subs.add_subscription(service.db, "block", f"{public.url}/list.csv")
        result = subs.refresh(service.db, service.settings, sub.id)
        assert public.paths == ["/list.csv"]
        assert internal.paths == []  # the redirect's target was never contacted
    assert not result.ok and "127.0.0.2 is a loopback address" in (result.error or "")
    assert entries(service) == 0


@pytest.mark.parametrize(("address", "word"), [
    ("127.0.0.1", "loopback"), ("::1", "loopback"), ("::ffff:127.0.0.1", "loopback"),
    ("10.1.2.3", "private"), ("172.16.0.9", "private"), ("192.168.1.1", "private"),
    ("100.64.0.1", "private"), ("fd00::1", "private"), ("0.0.0.0", "private"),
    ("169.254.169.254", "link-local"), ("fe80::1", "link-local"), ("224.0.0.1", "private"),
])
def test_internal_addresses_have_a_reason(address: str, word: str) -> None:
    reason = subs.internal_reason(ipaddress.ip_address(address))
    assert reason is not None and word in reason


@pytest.mark.parametrize("address", ["8.8.8.8", "2001:4860:4860::8888", "193.51.24.1"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert subs.internal_reason(ipaddress.ip_address(address)) is None


def test_the_lan_mark_from_the_cli_ui_and_api(service: Services, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    settings = service.settings
    config = tmp_path / "config.toml"  # the same installation, as the CLI reads it
    config.write_text('language = "en"\ntimezone = "Europe/Paris"\ndata_dir = "data"\n',
                      encoding="utf-8")
    with site() as lan:
        url = f"{lan.url}/list.csv"
        assert main(["--config", str(config), "subscriptions", "add", "block", url]) == 1
        assert "loopback" in capsys.readouterr().err
        assert main(["--config", str(config), "subscriptions", "add", "block", url,
                     "--lan"]) == 0
        assert '"lan": true' in (main(["--config", str(config), "subscriptions",
                                       "list"]) == 0 and capsys.readouterr().out)
        app = make_app(settings, service)
        client: FlaskClient
        with app.test_client() as client:
            login(client, service)
            post(client, "/notifications/subscriptions",
                 {"list": "allow", "url": url, "refresh_hours": "24", "lan": "1"})
            page = client.get("/notifications").get_data(as_text=True)
            assert 'name="lan"' in page
            token = new_api_token(service.store)
            created = client.post("/api/subscriptions", json={
                "list": "block", "url": f"{lan.url}/other.csv", "lan": True},
                headers={"Authorization": f"Bearer {token}"})
            assert created.status_code == 201 and created.get_json()["lan"] is True
            bad = client.post("/api/subscriptions", json={"list": "block", "url": url,
                                                          "lan": "yes"},
                              headers={"Authorization": f"Bearer {token}"})
            assert bad.status_code == 400 and bad.get_json()["field"] == "lan"
            listed = client.get("/api/subscriptions",
                                headers={"Authorization": f"Bearer {token}"}).get_json()
    with service.db.session() as s:
        lans = [r.lan for r in s.query(SubscriptionRow).order_by(SubscriptionRow.id)]
    assert lans == [False, True, True, True]
    assert [sub["lan"] for sub in listed["subscriptions"]] == lans
