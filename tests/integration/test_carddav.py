"""CardDAV subscriptions against a real Radicale server on loopback: the allow list follows
the address book (names as labels, removed contacts removed, manual entries untouched), and a
wrong password, a server gone or a hostile answer keep the previous entries."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from xml.sax.saxutils import escape

import pytest

from gateway.cli import main
from gateway.feeds import carddav
from gateway.feeds import subscriptions as subs
from gateway.ops.health import collect_status, public_status, render_text
from gateway.store.models import SubscriptionRow
from tests.helpers import Services
from tests.integration.notify_support import make_settings
from tests.peers.radicale import RadicaleServer, radicale_server, vcard
from tests.peers.require import missing_peer
from tests.web.support import login, make_app, post
from web.security import new_api_token

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def allowed(service: Services, source: str) -> dict[str, str]:
    """pattern -> label of the allow entries from `source`."""
    return {e.pattern: e.label for e in service.store.entries.find("allow", source=source)}


def password_file(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "carddav-password"
    path.write_text(password + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def subscribe(service: Services, server: RadicaleServer, book: str, secret: Path,
              label: str = "family") -> SubscriptionRow:
    return subs.add_subscription(service.db, "allow", book, label=label, kind="carddav",
                                 username=server.user, password_file=str(secret), lan=True)


def fill_book(server: RadicaleServer) -> str:
    book = server.make_book()
    server.put(book, "marie", vcard("marie", "Marie Dupont", "06 12 34 56 78",
                                    "+33 (0)1 23 45 67 89"))
    server.put(book, "paul", vcard("paul", "Paul", "0033 6.98.76.54.32"))
    server.put(book, "grandma", vcard("grandma", "Mamie", "tel:+33-6-11-22-33-44",
                                      version="4.0"))
    server.put(book, "plumber", vcard("plumber", "Plombier"))  # no phone number
    server.put(book, "again", vcard("again", "Marie (work)", "+33612345678"))  # a duplicate
    server.put(book, "odd", vcard("odd", "Odd", "re:.*", "0612*", "ask reception"))
    return book


def test_allow_list_follows_the_address_book(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    # The owner's own entries: one for a number also in the address book.
    service.store.entries.add("allow", "+33698765432", label="Paul (typed by hand)")
    service.store.entries.add("allow", "0711111111", label="the school")
    with radicale_server() as server:
        book = fill_book(server)
        sub = subscribe(service, server, book, password_file(tmp_path, server.password))
        source = subs.source_of(sub.id)

        first = subs.refresh(service.db, settings, sub.id, NOW)
        assert first.ok, first.error
        assert allowed(service, source) == {
            "+33612345678": "Marie (work) / Marie Dupont", "+33123456789": "Marie Dupont",
            "+33611223344": "Mamie",
        }  # Paul's number is the owner's entry already; a number on two cards has both names
        assert first.rejected == 3  # re:.*, 0612* and "ask reception" are not numbers
        assert service.store.entries.find("allow", search="re:") == []

        server.delete(book, "marie")
        server.put(book, "paul", vcard("paul", "Paul D.", "0033 6.98.76.54.32"))
        server.delete(book, "again")
        second = subs.refresh(service.db, settings, sub.id, NOW + timedelta(days=1))
        assert second.ok, second.error
        assert allowed(service, source) == {"+33611223344": "Mamie"}

    manual = allowed(service, "manual")
    assert manual == {"+33698765432": "Paul (typed by hand)", "+33711111111": "the school"}
    [row] = subs.list_subscriptions(service.db)
    assert (row.kind, row.entry_count, row.last_error) == ("carddav", 1, None)

    assert subs.remove_subscription(service.db, settings, sub.id)
    assert allowed(service, source) == {}
    assert allowed(service, "manual") == manual


def test_a_server_or_principal_url_finds_the_only_address_book(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    with radicale_server() as server:
        fill_book(server)
        secret = password_file(tmp_path, server.password)
        for url in (f"{server.base}/", f"{server.base}/{server.user}/"):  # root, principal
            sub = subs.add_subscription(service.db, "allow", url, kind="carddav", lan=True,
                                        username=server.user, password_file=str(secret))
            result = subs.refresh(service.db, settings, sub.id, NOW)
            assert (result.ok, result.entries) == (True, 4), result.error
            if url == f"{server.base}/":
                subs.remove_subscription(service.db, settings, sub.id)
        server.make_book("work")
        several = subs.refresh(service.db, settings, sub.id, NOW)
    assert not several.ok and several.error is not None
    assert "2 address books" in several.error and "subscribe to one of them" in several.error
    assert f"{server.base}/{server.user}/contacts/ (contacts)" in several.error
    assert len(allowed(service, subs.source_of(sub.id))) == 4  # kept


def test_wrong_password_names_the_subscription_and_keeps_the_entries(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    with radicale_server() as server:
        book = fill_book(server)
        secret = password_file(tmp_path, server.password)
        sub = subscribe(service, server, book, secret, label="family")
        assert subs.refresh(service.db, settings, sub.id, NOW).ok
        before = allowed(service, subs.source_of(sub.id))

        secret.write_text("not the password\n", encoding="utf-8")
        result = subs.refresh(service.db, settings, sub.id, NOW + timedelta(days=1))
        assert not result.ok
        assert result.error is not None
        assert f"CardDAV subscription {sub.id} (family)" in result.error
        assert "401" in result.error and "'alice'" in result.error
        assert "not the password" not in result.error
        assert allowed(service, subs.source_of(sub.id)) == before

        secret.unlink()
        gone = subs.refresh(service.db, settings, sub.id, NOW + timedelta(days=2))
        assert not gone.ok and "cannot read the password file" in (gone.error or "")
    [row] = subs.list_subscriptions(service.db)
    assert row.last_error == gone.error and row.entry_count == len(before)


def test_server_gone_keeps_the_last_good_list_and_says_so(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    with radicale_server() as server:
        book = fill_book(server)
        sub = subscribe(service, server, book, password_file(tmp_path, server.password))
        assert subs.refresh(service.db, settings, sub.id, NOW).ok
        before = allowed(service, subs.source_of(sub.id))
        server.stop()
        result = subs.refresh(service.db, settings, sub.id, NOW + timedelta(days=1))
    assert not result.ok and "cannot reach the address book" in (result.error or "")
    assert allowed(service, subs.source_of(sub.id)) == before
    [row] = subs.list_subscriptions(service.db)
    assert row.last_error == result.error
    assert row.last_success_at is not None
    assert subs.is_due(row, NOW + timedelta(days=1, hours=1))  # retried within the hour

    status = collect_status(settings, service.db)
    [warning] = [w for w in status["warnings"] if w.startswith("subscription")]
    assert warning.startswith(f"subscription {sub.id} (address book, family): cannot reach")
    assert f"{len(before)} entries from" in warning and status["ok"]
    assert "1 subscription(s), 1 failing" in render_text(status)
    assert "address book" not in json.dumps(public_status(status))  # /healthz: no URLs


def test_lan_rules_and_plain_http_passwords(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    with radicale_server() as server:
        book = fill_book(server)
        secret = password_file(tmp_path, server.password)
        with pytest.raises(subs.SubscriptionError, match="unencrypted"):
            subs.add_subscription(service.db, "allow", book, kind="carddav",
                                  username=server.user, password_file=str(secret))
        with pytest.raises(subs.SubscriptionError, match="absolute path"):
            subs.add_subscription(service.db, "allow", book, kind="carddav", lan=True,
                                  username=server.user, password_file="password.txt")
        # No credentials, not marked LAN: the loopback address is refused before connecting.
        sub = subs.add_subscription(service.db, "allow", book, kind="carddav")
        result = subs.refresh(service.db, settings, sub.id, NOW)
        assert not result.ok and "loopback" in (result.error or "")


def test_a_hostile_address_book_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    settings = make_settings(tmp_path, "[subscriptions]\nmax_mb = 1\n")
    service = Services.open(settings)
    with radicale_server() as server:
        book = fill_book(server)
        sub = subscribe(service, server, book, password_file(tmp_path, server.password))
        assert subs.refresh(service.db, settings, sub.id, NOW).ok
        before = allowed(service, subs.source_of(sub.id))

        monkeypatch.setattr(carddav, "MAX_CARDS", 3)
        too_many = subs.refresh(service.db, settings, sub.id, NOW)
        assert not too_many.ok and "more than 3 cards" in (too_many.error or "")
        monkeypatch.undo()

        server.put(book, "huge", vcard("huge", "X" * 1_200_000, "0612345670"))
        too_big = subs.refresh(service.db, settings, sub.id, NOW)
        assert not too_big.ok and "MiB" in (too_big.error or "")
        assert allowed(service, subs.source_of(sub.id)) == before


def test_cli_subscribes_lists_and_refreshes_an_address_book(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text('timezone = "Europe/Paris"\ndata_dir = "data"\n', encoding="utf-8")
    service = Services.open(settings)
    with radicale_server() as server:
        book = fill_book(server)
        secret = password_file(tmp_path, server.password)
        code = main(["--config", str(config), "subscriptions", "add", "allow", book,
                     "--kind", "carddav", "--user", server.user, "--password-file",
                     str(secret), "--lan", "--label", "family"])
        out = capsys.readouterr()
        assert code == 0, out.err
        assert "4 entries (3 numbers rejected)" in out.out
        assert main(["--config", str(config), "subscriptions", "list"]) == 0
        listed = capsys.readouterr().out
        assert '"kind": "carddav"' in listed and '"user": "alice"' in listed
        assert server.password not in listed

        secret.write_text("wrong\n", encoding="utf-8")
        assert main(["--config", str(config), "subscriptions", "refresh"]) == 1
        assert "401" in capsys.readouterr().err
    assert len(allowed(service, "subscription:1")) == 4


def test_subscriptions_page_and_api_show_address_books(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, language="fr")
    service = Services.open(settings)
    with radicale_server() as server:
        book = fill_book(server)
        secret = password_file(tmp_path, server.password)
        app = make_app(settings, service)
        with app.test_client() as client:
            login(client, service)
            form = {"list": "allow", "url": book, "refresh_hours": "24", "lan": "1",
                    "kind": "carddav", "user": server.user, "label": "famille"}
            bad = post(client, "/notifications/subscriptions",
                       {**form, "password_file": "mot-de-passe.txt"})
            assert bad.status_code == 400  # type: ignore[attr-defined]
            page = bad.get_data(as_text=True)  # type: ignore[attr-defined]
            assert 'id="e-password_file"' in page and "absolute path" in page
            assert f'value="{book}"' in page  # what the owner typed is kept
            ok = post(client, "/notifications/subscriptions",
                      {**form, "password_file": str(secret)})
            assert ok.status_code == 200  # type: ignore[attr-defined]
            refreshed = post(client, "/notifications/subscriptions/1/refresh")
            assert refreshed.status_code == 200  # type: ignore[attr-defined]
            page = refreshed.get_data(as_text=True)  # type: ignore[attr-defined]
            assert "Carnet d&#39;adresses CardDAV" in page and "en tant que alice" in page

            secret.write_text("wrong\n", encoding="utf-8")
            failed = post(client, "/notifications/subscriptions/1/refresh")
            assert failed.status_code == 502  # type: ignore[attr-defined]
            page = failed.get_data(as_text=True)  # type: ignore[attr-defined]
            assert "CardDAV subscription 1 (famille)" in page and "401" in page
            assert page.count("HTTP 401") >= 2  # the message, and the row's last error

            token = new_api_token(service.store)
            auth = {"Authorization": f"Bearer {token}"}
            created = client.post("/api/subscriptions", headers=auth, json={
                "list": "allow", "url": book, "lan": True, "kind": "carddav",
                "user": server.user, "password_file": str(secret)})
            assert created.status_code == 201, created.get_json()
            assert created.get_json()["kind"] == "carddav"
            refused = client.post("/api/subscriptions", headers=auth, json={
                "list": "allow", "url": book, "kind": "carddav", "user": server.user})
            assert refused.status_code == 400 and refused.get_json()["field"] == "url"
            listed = client.get("/api/subscriptions", headers=auth).get_json()
    assert [(s["kind"], s["user"]) for s in listed["subscriptions"]] == [
        ("carddav", "alice"), ("carddav", "alice")]
    assert server.password not in json.dumps(listed)


class DigestOnlyServer:
    """A CardDAV server without addressbook-query that wants HTTP Digest (like Baïkal's
    default): PROPFIND lists the cards, addressbook-multiget returns them."""

    realm, nonce = "BaikalDAV", "5f1c2a"

    def __init__(self, user: str, password: str, cards: dict[str, str]) -> None:
        self.user, self.password, self.cards = user, password, cards
        self.requests: list[str] = []

    def authorized(self, method: str, path: str, header: str) -> bool:
        if not header.startswith("Digest "):
            return False
        fields = dict(urllib.request.parse_keqv_list(urllib.request.parse_http_list(
            header[len("Digest "):])))
        ha1 = hashlib.md5(f"{self.user}:{self.realm}:{self.password}".encode()).hexdigest()
        ha2 = hashlib.md5(f"{method}:{path}".encode()).hexdigest()
        expected = hashlib.md5(":".join([ha1, self.nonce, fields.get("nc", ""),
                                         fields.get("cnonce", ""), "auth", ha2]).encode())
        return fields.get("username") == self.user and \
            fields.get("response") == expected.hexdigest()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.requests.append(f"{self.command} {body[:60]!r}")
                if not server.authorized(self.command, self.path,
                                         self.headers.get("Authorization", "")):
                    self.reply(401, b"", {"WWW-Authenticate": (
                        f'Digest realm="{server.realm}", nonce="{server.nonce}", qop="auth"')})
                elif self.command == "PROPFIND":
                    self.reply(207, multistatus_of(
                        [("/book/", None)] + [(f"/book/{uid}.vcf", None) for uid in server.cards]))
                elif b"addressbook-query" in body:
                    self.reply(501, b"not implemented")
                else:
                    asked = re.findall(rb"<D:href>([^<]+)</D:href>", body)
                    self.reply(207, multistatus_of(
                        [(href.decode(), server.cards[href.decode()[6:-4]])
                         for href in asked]))

            do_PROPFIND = do_REPORT = answer

            def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None
                      ) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler


def multistatus_of(resources: list[tuple[str, str | None]]) -> bytes:
    parts = []
    for href, card in resources:
        prop = (f"<C:address-data>{escape(card)}</C:address-data>" if card is not None else
                "<D:resourcetype><D:collection/><C:addressbook/></D:resourcetype>"
                if href.endswith("/") else
                "<D:resourcetype/>")
        parts.append(f"<D:response><D:href>{href}</D:href><D:propstat><D:prop>{prop}</D:prop>"
                     "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>")
    return ('<?xml version="1.0"?><D:multistatus xmlns:D="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:carddav">' + "".join(parts)
            + "</D:multistatus>").encode()


def test_a_server_without_addressbook_query_and_with_digest_auth(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    monkeypatch.setattr(subs, "MULTIGET_BATCH", 2)  # three cards: two multigets
    dav = DigestOnlyServer("bob", "s3cret", {
        uid: vcard(uid, f"Card {uid}", f"06123456{i:02d}") for i, uid in
        enumerate(("a", "b", "c"))})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), dav.handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/book/"
        sub = subs.add_subscription(service.db, "allow", url, kind="carddav", username="bob",
                                    password_file=str(password_file(tmp_path, "s3cret")),
                                    lan=True)
        result = subs.refresh(service.db, settings, sub.id, NOW)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert result.ok, result.error
    assert allowed(service, subs.source_of(sub.id)) == {
        "+33612345600": "Card a", "+33612345601": "Card b", "+33612345602": "Card c"}
    methods = [r.split(" ", 1)[0] for r in dav.requests if "addressbook-query" not in r]
    assert methods.count("PROPFIND") >= 1 and methods.count("REPORT") >= 2


def test_the_password_follows_a_server_to_another_host_only_over_https(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    asked: list[str] = []

    class Elsewhere(BaseHTTPRequestHandler):
        def do_PROPFIND(self) -> None:
            asked.append(self.headers.get("Authorization", ""))
            body = (b'<?xml version="1.0"?><D:multistatus xmlns:D="DAV:" '
                    b'xmlns:C="urn:ietf:params:xml:ns:carddav"><D:response><D:href>/</D:href>'
                    b"<D:propstat><D:prop><D:resourcetype><D:collection/></D:resourcetype>"
                    b"<C:addressbook-home-set><D:href>http://elsewhere.example:8080/home/"
                    b"</D:href></C:addressbook-home-set></D:prop></D:propstat></D:response>"
                    b"</D:multistatus>")
            self.send_response(207)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Elsewhere)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        sub = subs.add_subscription(
            service.db, "allow", f"http://127.0.0.1:{httpd.server_address[1]}/",
            kind="carddav", username="bob", lan=True,
            password_file=str(password_file(tmp_path, "s3cret")))
        result = subs.refresh(service.db, settings, sub.id, NOW)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert not result.ok and result.error is not None
    assert "elsewhere.example:8080" in result.error and "unencrypted" in result.error
    assert len(asked) == 1 and asked[0].startswith("Basic ")  # only the server it was given


def test_https_certificates_are_verified(tmp_path: Path) -> None:
    if shutil.which("openssl") is None:
        missing_peer("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=60)
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    with radicale_server(tls=(cert, key)) as server:
        book = fill_book(server)
        assert book.startswith("https://")
        sub = subscribe(service, server, book, password_file(tmp_path, server.password))
        result = subs.refresh(service.db, settings, sub.id, NOW)
    assert not result.ok and "CERTIFICATE_VERIFY_FAILED" in (result.error or "")
    assert allowed(service, subs.source_of(sub.id)) == {}


def test_a_moved_address_book_is_not_followed_with_the_password(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    service = Services.open(settings)
    asked: list[str] = []

    class Moved(BaseHTTPRequestHandler):
        def do_PROPFIND(self) -> None:
            asked.append(self.path)
            self.send_response(301)
            self.send_header("Location", "https://dav.example.net/contacts/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Moved)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        sub = subs.add_subscription(
            service.db, "allow", f"http://127.0.0.1:{httpd.server_address[1]}/old/",
            kind="carddav", username="bob", lan=True,
            password_file=str(password_file(tmp_path, "s3cret")))
        result = subs.refresh(service.db, settings, sub.id, NOW)
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
    assert not result.ok and result.error is not None
    assert "moved the address book (HTTP 301) to https://dav.example.net/contacts/" \
        in result.error
    assert asked == ["/old/"]
