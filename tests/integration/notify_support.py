"""Test helpers for notifications: a loopback SMTP server, a loopback HTTP server, settings."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from gateway.config import Settings, load_settings_from_text


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SmtpSink:
    """What the loopback SMTP server received."""

    port: int = 0
    messages: list[EmailMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        with self.arrived:
            self.messages.append(parsed)  # type: ignore[arg-type]
            self.arrived.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 20.0) -> bool:
        with self.arrived:
            return self.arrived.wait_for(lambda: len(self.messages) >= count, timeout)


def _authenticator(user: str, password: str) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and data.login == user.encode() and \
            data.password == password.encode()
        return AuthResult(success=ok, handled=False)
    return check


@contextmanager
def smtp_server(user: str | None = None, password: str | None = None,
                **controller_kw: Any) -> Iterator[SmtpSink]:
    """An aiosmtpd server on a free loopback port; stopped on exit."""
    sink = SmtpSink(port=free_port())
    kw: dict[str, Any] = dict(controller_kw)
    if user is not None:
        kw.update(authenticator=_authenticator(user, password or ""), auth_require_tls=False)
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, **kw)
    controller.start()  # returns once the server answers
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class HttpSink:
    """A loopback HTTP server: records POST bodies, serves queued GET responses."""

    port: int = 0
    bodies: list[bytes] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    responses: list[tuple[int, bytes, str]] = field(default_factory=list)  # status, body, type
    post_status: int = 200
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def next_response(self) -> tuple[int, bytes, str]:
        if len(self.responses) > 1:
            return self.responses.pop(0)
        return self.responses[0] if self.responses else (404, b"", "text/plain")


@contextmanager
def http_server() -> Iterator[HttpSink]:
    """A ThreadingHTTPServer on a free loopback port; stopped on exit."""
    sink = HttpSink()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            with sink.arrived:
                sink.bodies.append(body)
                sink.paths.append(self.path)
                sink.arrived.notify_all()
            self.send_response(sink.post_status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            status, body, ctype = sink.next_response()
            with sink.arrived:
                sink.paths.append(self.path)
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def make_settings(tmp_path: Path, extra: str = "", *, language: str = "en") -> Settings:
    """Settings for a test: SQLite in tmp_path, Paris time, plus `extra` TOML."""
    text = f'language = "{language}"\ntimezone = "Europe/Paris"\ndata_dir = "data"\n{extra}'
    return load_settings_from_text(text, tmp_path)


def smtp_toml(port: int, *, user: str = "", password_file: Path | None = None,
              security: str = "plain") -> str:
    lines = ["[notify.smtp]", 'host = "127.0.0.1"', f"port = {port}", f'security = "{security}"',
             'sender = "ringfence@example.org"', 'recipients = ["owner@example.org"]',
             "timeout = 10"]
    if user:
        lines.append(f'username = "{user}"')
    if password_file is not None:
        lines.append(f'password_file = "{password_file}"')
    return "\n".join(lines) + "\n"
