"""`ringfence web` as a real waitress server in a subprocess, and a small browser for it.

The browser speaks HTTP from a chosen loopback source address (127.0.0.x), keeps its cookie
and reads the CSRF token from the login form, so tests can play many distinct clients against
one server, the way strangers on a LAN would.
"""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import load_settings
from tests.peers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def ringfence(config: Path, *args: str, umask: int | None = None,
              stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `ringfence` command as the owner would (optionally under a given umask)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    return subprocess.run([sys.executable, "-m", "gateway", "--config", str(config), *args],
                          capture_output=True, text=True, cwd=REPO_ROOT, env=env, check=False,
                          input=stdin, preexec_fn=preexec)


@dataclass
class WebServer:
    """A running `ringfence web`."""

    host: str
    port: int
    config: Path
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://{self.host}:{self.port}"


def make_config(folder: Path, extra: str = "") -> Path:
    """A config in `folder` with its data there and the UI on a free loopback port."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.toml"
    config.write_text(f'data_dir = "data"\nlanguage = "en"\n{extra}\n'
                      f'[web]\nlisten = "127.0.0.1:{free_port()}"\n', encoding="utf-8")
    return config


def _serving(host: str, port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(host, port, timeout=1)
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        conn.close()
        return True
    except OSError:
        return False


@contextmanager
def running_web(config: Path, *, umask: int | None = None) -> Iterator[WebServer]:
    """Start `ringfence web` for `config`, wait until it answers, and stop it afterwards."""
    listen = load_settings(config).web.listen
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    preexec = (lambda: os.umask(umask)) if umask is not None else None
    process = subprocess.Popen(
        [sys.executable, "-m", "gateway", "--config", str(config), "web"], cwd=REPO_ROOT,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=preexec)
    try:
        deadline = time.monotonic() + 30
        while not _serving(listen.host, listen.port):
            if process.poll() is not None:
                raise AssertionError(f"ringfence web exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise AssertionError("ringfence web did not answer within 30 s")
            time.sleep(0.05)
        yield WebServer(listen.host, listen.port, config, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Response:
    """What came back: status, headers (lower-case names) and the body as text."""

    status: int
    headers: dict[str, str]
    text: str


@dataclass
class Browser:
    """One client: a loopback source address, its cookies, and the last CSRF token seen."""

    server: WebServer
    source: str = "127.0.0.1"
    cookies: dict[str, str] = field(default_factory=dict)
    csrf: str = ""

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Response:
        """Send one request from `source` and remember cookies and the CSRF token."""
        conn = http.client.HTTPConnection(self.server.host, self.server.port, timeout=30,
                                          source_address=(self.source, 0))
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=sent)
            raw = conn.getresponse()
            text = raw.read().decode("utf-8", "replace")
            for name, value in raw.getheaders():
                if name.lower() == "set-cookie":
                    key, _, rest = value.partition("=")
                    self.cookies[key.strip()] = rest.split(";", 1)[0]
            found = _CSRF.search(text)
            if found:
                self.csrf = found.group(1)
            return Response(raw.status, {k.lower(): v for k, v in raw.getheaders()}, text)
        finally:
            conn.close()

    def get(self, path: str) -> Response:
        """GET `path`."""
        return self.request("GET", path)

    def login(self, password: str) -> Response:
        """Open the login page, then post the password with the form's CSRF token."""
        if not self.csrf:
            self.get("/login")
        return self.request("POST", "/login", {"csrf_token": self.csrf, "password": password})
