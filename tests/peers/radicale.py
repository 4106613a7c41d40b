"""A throwaway Radicale (CardDAV) server for tests: `with radicale_server() as server: ...`.

Radicale comes from PyPI (the test extras) and runs as `python -m radicale` on 127.0.0.1 at a
free port, with htpasswd authentication (plain passwords: nothing else can reach it) and its
collections in a temporary folder. `start()` waits until it answers HTTP; the context manager
always stops it. The test writes the address book with plain HTTP (MKCOL, PUT, DELETE), the
way a phone's contacts app would.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from tests.peers.require import missing_peer

READY_TIMEOUT_S = 30.0
MKCOL_ADDRESSBOOK = (
    '<?xml version="1.0" encoding="utf-8"?>'
    '<D:mkcol xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><D:set><D:prop>'
    "<D:resourcetype><D:collection/><C:addressbook/></D:resourcetype>"
    "<D:displayname>{name}</D:displayname></D:prop></D:set></D:mkcol>"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def vcard(uid: str, name: str, *numbers: str, version: str = "3.0") -> str:
    """A small vCard with these phone numbers (as written, e.g. '06 12 34 56 78')."""
    lines = ["BEGIN:VCARD", f"VERSION:{version}", f"UID:{uid}", f"FN:{name}"]
    lines += [f"TEL;TYPE=cell:{number}" for number in numbers]
    lines.append("END:VCARD")
    return "\r\n".join(lines) + "\r\n"


class RadicaleServer:
    """One Radicale process; `user`/`password` is the account the htpasswd file holds."""

    def __init__(self, user: str = "alice", password: str = "correct horse",
                 tls: tuple[Path, Path] | None = None) -> None:
        if importlib.util.find_spec("radicale") is None:
            missing_peer("Radicale is not installed (pip install -e '.[test]')")
        self.user, self.password = user, password
        self.tmp = Path(tempfile.mkdtemp(prefix="ringfence-radicale-"))
        self.port = _free_port()
        self.log = self.tmp / "radicale.log"
        (self.tmp / "users").write_text(f"{user}:{password}\n", encoding="utf-8")
        # With `tls` (certificate, key) it serves https; the harness's own requests then skip
        # verification (the certificate is the test's), Ringfence's do not.
        self.scheme = "https" if tls else "http"
        self._context = ssl._create_unverified_context() if tls else None
        served = (f"ssl = True\ncertificate = {tls[0]}\nkey = {tls[1]}\n" if tls else "")
        (self.tmp / "config").write_text(
            "[server]\n"
            f"hosts = 127.0.0.1:{self.port}\n"
            f"{served}"
            "[auth]\n"
            "type = htpasswd\n"
            f"htpasswd_filename = {self.tmp / 'users'}\n"
            "htpasswd_encryption = plain\n"
            "delay = 0\n"  # no pause after a wrong password: the test tries one on purpose
            "[storage]\n"
            f"filesystem_folder = {self.tmp / 'collections'}\n"
            "[logging]\n"
            "level = warning\n", encoding="utf-8")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        """The server's root URL."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def book_url(self, name: str = "contacts") -> str:
        """The URL of the user's address book `name`."""
        return f"{self.base}/{self.user}/{name}/"

    def start(self) -> None:
        """Start Radicale and wait until it answers HTTP."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "radicale", "--config", str(self.tmp / "config")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Radicale exited ({self.process.returncode}):\n"
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.base}/.web/", timeout=2,
                                            context=self._context):
                    return
            except urllib.error.HTTPError:
                return  # it answers
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("Radicale did not answer within "
                                       f"{READY_TIMEOUT_S:.0f} s") from None
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the process (its collections stay until `remove`)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        """Stop and delete the temporary folder."""
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def request(self, method: str, url: str, body: str = "",
                content_type: str = "text/vcard; charset=utf-8", timeout: float = 30) -> int:
        """Send one authenticated request as the account's user; the HTTP status."""
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        request = urllib.request.Request(url, data=body.encode() if body else None,
                                         method=method, headers={
                                             "Authorization": f"Basic {token}",
                                             "Content-Type": content_type})
        try:
            with urllib.request.urlopen(request, timeout=timeout,
                                        context=self._context) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    def make_book(self, name: str = "contacts") -> str:
        """Create an address book; its URL."""
        url = self.book_url(name)
        status = self.request("MKCOL", url, MKCOL_ADDRESSBOOK.format(name=name),
                              "application/xml")
        assert status == 201, f"MKCOL {url}: HTTP {status}"
        return url

    def put(self, book: str, uid: str, card: str) -> None:
        """Store one card in an address book."""
        status = self.request("PUT", f"{book}{uid}.vcf", card)
        assert status in (201, 204), f"PUT {uid}: HTTP {status}"

    def delete(self, book: str, uid: str) -> None:
        """Delete one card."""
        status = self.request("DELETE", f"{book}{uid}.vcf")
        assert status in (200, 204), f"DELETE {uid}: HTTP {status}"


@contextlib.contextmanager
def radicale_server(user: str = "alice", password: str = "correct horse",
                    tls: tuple[Path, Path] | None = None) -> Iterator[RadicaleServer]:
    """A started Radicale server, always stopped and removed afterwards."""
    server = RadicaleServer(user, password, tls)
    try:
        server.start()
        yield server
    finally:
        server.remove()
