"""UDP and TCP transports: receive, frame, parse, and send along the Via path.

Threads, not asyncio: the media side blocks (play, record, wait for a digit), calls are few, and a
receive thread per socket keeps 100 Trying out of reach of anything slow.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.sip.message import (
    MAX_MESSAGE_BYTES,
    SipMessage,
    SipParseError,
    SipRequest,
    SipResponse,
    ascii_number,
    parse_message,
)

log = logging.getLogger(__name__)

MAX_TCP_CONNECTIONS = 64
MAX_TCP_PER_SOURCE = 8
"""Connections one address may hold open to us: a PBX needs a few, a stranger must not take all."""
TCP_MESSAGE_SECONDS = 5.0
"""A connection we accepted must send a complete message within this long of opening, and
finish any message it starts within this long: idle or trickling sockets are dropped."""
TCP_IDLE_SECONDS = 600.0
"""Between complete messages (keep-alives count as traffic): how long a quiet connection stays."""
KEEPALIVE = b"\r\n\r\n"
UDP_RECEIVE_BUFFER = 1 << 20


@dataclass(frozen=True)
class Target:
    """Where a message goes: transport name plus address."""

    transport: str  # "udp" or "tcp"
    host: str
    port: int


class TcpConnection:
    """One TCP connection, framed by Content-Length."""

    def __init__(self, sock: socket.socket, peer: tuple[str, int], owner: SipTransport, *,
                 accepted: bool = False) -> None:
        self.sock = sock
        self.peer = peer
        self.owner = owner
        self.accepted = accepted  # a stranger's connection, not one we opened to a registrar
        self.send_lock = threading.Lock()
        self.closed = False

    def send(self, data: bytes) -> None:
        """Send bytes; on error the connection is closed."""
        with self.send_lock:
            try:
                self.sock.sendall(data)
            except OSError as exc:
                log.info("tcp send to %s:%s failed: %s", *self.peer, exc)
                self.close()

    def close(self) -> None:
        """Close the socket and forget the connection."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.owner.forget(self)

    def read_loop(self) -> None:
        """Read, frame and dispatch messages until the peer closes; nothing it sends kills it."""
        try:
            self._read_messages()
        except Exception:  # a framing bug must cost this connection only, never go unlogged
            log.exception("tcp %s:%s: reader failed; closing", *self.peer)
        finally:
            self.close()
            self.owner.reader_done()

    def _read_messages(self) -> None:
        buffer = b""
        # An accepted connection owes us a complete message soon after it opens, and a message
        # once started must not trickle in for ever (RFC 5626 keep-alives are not messages).
        opened = time.monotonic()
        message_started: float | None = opened if self.accepted else None
        while not self.closed:
            if message_started is not None:
                timeout = message_started + TCP_MESSAGE_SECONDS - time.monotonic()
                if timeout <= 0:
                    log.info("tcp %s:%s: no complete message within %.0f s; closing",
                             *self.peer, TCP_MESSAGE_SECONDS)
                    return
            else:
                timeout = TCP_IDLE_SECONDS
            self.sock.settimeout(timeout)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                if message_started is None:
                    log.info("tcp %s:%s: idle for %.0f s; closing", *self.peer, TCP_IDLE_SECONDS)
                    return
                continue  # the deadline check above closes it
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while True:
                buffer = buffer.lstrip(b"\r\n")  # CRLF keep-alives between messages
                frame, buffer, error = split_stream_frame(buffer)
                if error:
                    log.warning("tcp %s:%s: %s; closing", *self.peer, error)
                    if frame:  # the header section: lets the sender learn why (400)
                        self.owner.deliver(frame, self.source())
                    return
                if frame is None:
                    break
                self.owner.deliver(frame, self.source())
                message_started = None
            if buffer and message_started is None:
                message_started = time.monotonic()

    def source(self) -> Source:
        """Where messages on this connection come from."""
        return Source("tcp", self.peer[0], self.peer[1], self)


def split_stream_frame(buffer: bytes) -> tuple[bytes | None, bytes, str | None]:
    """Cut one message off a TCP stream: (message or None if incomplete, rest, error).

    On an error the stream cannot be framed any further; the first item is then the header
    section when there is one (so the sender can be told why), else None.
    """
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > MAX_MESSAGE_BYTES:
            return None, b"", "header section too long"
        return None, buffer, None
    head = buffer[:end].decode("utf-8", errors="replace")
    length = 0
    for line in head.split("\r\n")[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() in ("content-length", "l"):
            value = value.strip()
            number = ascii_number(value)  # ASCII digits only: int() takes '²' and 5,000 digits
            if number is None:
                return buffer[: end + 4], b"", f"bad Content-Length {value[:20]!r}"
            length = number
    total = end + 4 + length
    if total > MAX_MESSAGE_BYTES:
        return None, b"", f"message of {total} bytes is too long"
    if len(buffer) < total:
        return None, buffer, None
    return buffer[:total], buffer[total:], None


@dataclass(frozen=True)
class Source:
    """Where a message came from (the connection too for TCP)."""

    transport: str
    host: str
    port: int
    connection: TcpConnection | None = None


MessageHandler = Callable[[SipMessage, Source], None]


class IdleListener(Protocol):
    """What a UDP loop tells that its socket is empty (`gateway.sip.workers.WorkerPool`)."""

    def has_deferred(self) -> bool:
        """Whether anything waits for the loop to go idle (read often: must be cheap)."""

    def wake_deferred(self) -> None:
        """The loop's socket is empty: do what waited for it."""


class SipTransport:
    """A UDP socket and a TCP listener on one address, dispatching parsed messages."""

    def __init__(self, host: str, port: int, handler: MessageHandler, *, tcp: bool = True) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.tcp_enabled = tcp
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.family = family
        self.udp = socket.socket(family, socket.SOCK_DGRAM)
        self.tcp: socket.socket | None = None
        self.connections: dict[tuple[str, int], TcpConnection] = {}
        self.lock = threading.Lock()
        self.running = False
        self.threads: set[threading.Thread] = set()
        self.rejected = 0  # messages that failed to parse, for tests and the bench
        # Called with the parse error of a request we could read enough of to answer (400,
        # 416, 505); the user agent sets it. None: such requests are dropped like garbage.
        self.on_bad_request: Callable[[SipParseError, Source], None] | None = None
        # Told by the UDP loop when its socket is empty, before it waits: the worker pool,
        # which sends then the wake-ups it held back for this thread (the user agent sets it).
        self.idle_listener: IdleListener | None = None
        # Asked first of every message, with its raw bytes: True drops it unparsed (the user
        # agent drops the ACKs of its stateless answers, half of a refused-call flood).
        self.drop_unread: Callable[[bytes], bool] | None = None
        self.udp_thread: threading.Thread | None = None

    def start(self) -> None:
        """Bind the sockets (raises OSError when the address is taken) and start reading."""
        with contextlib.suppress(OSError):
            # Room for a burst of INVITEs (a flood, a forking proxy's retransmissions): the
            # kernel caps this at net.core.rmem_max, and anything dropped is retransmitted.
            self.udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
        self.udp.bind((self.host, self.port))
        self.port = self.udp.getsockname()[1]  # port 0 picks a free port; keep TCP on the same
        if self.tcp_enabled:
            self.tcp = socket.socket(self.family, socket.SOCK_STREAM)
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((self.host, self.port))
            self.tcp.listen(16)
        self.running = True
        self.udp_thread = self._spawn(self._udp_loop, "sip-udp")
        if self.tcp is not None:
            self._spawn(self._accept_loop, "sip-tcp-accept")

    def _spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self.lock:
            self.threads.add(thread)
        thread.start()
        return thread

    def reader_done(self) -> None:
        """A TCP reader thread is ending: forget it (a flood of connections must not pile up)."""
        with self.lock:
            self.threads.discard(threading.current_thread())

    def stop(self) -> None:
        """Close every socket; the reader threads end."""
        self.running = False
        # close() alone does not wake a thread blocked in recvfrom() on Linux; shutdown() does.
        with contextlib.suppress(OSError):
            self.udp.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.udp.close()
        if self.tcp is not None:
            with contextlib.suppress(OSError):
                self.tcp.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                self.tcp.close()
        with self.lock:
            connections = list(self.connections.values())
        for connection in connections:
            connection.close()
        with self.lock:
            threads = list(self.threads)
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2.0)

    # --- receiving
    def _udp_loop(self) -> None:
        size = MAX_MESSAGE_BYTES + 1
        while self.running:
            try:
                listener = self.idle_listener
                if listener is None or not listener.has_deferred():
                    # Nothing held back: wait at once (no extra empty read per packet).
                    data, addr = self.udp.recvfrom(size)
                else:
                    try:
                        # Without waiting first: only a read that finds the socket empty
                        # tells the loop it is about to wait, the moment to send the wakes.
                        data, addr = self.udp.recvfrom(size, socket.MSG_DONTWAIT)
                    except BlockingIOError:
                        self._went_idle(listener)
                        data, addr = self.udp.recvfrom(size)
            except OSError:
                if self.running:
                    continue  # e.g. ICMP errors reported on the socket; keep reading
                return
            if data.strip(b"\r\n\x00 ") == b"":
                continue  # keep-alive
            self.deliver(data, Source("udp", addr[0], addr[1]))

    @staticmethod
    def _went_idle(listener: IdleListener) -> None:
        try:
            listener.wake_deferred()
        except Exception:  # the loop must go on reading whatever the listener did
            log.exception("error in the UDP loop's idle listener")

    def _accept_loop(self) -> None:
        assert self.tcp is not None
        while self.running:
            try:
                sock, addr = self.tcp.accept()
            except OSError:
                if not self.running:
                    return
                continue
            with self.lock:
                total = len(self.connections)
                from_there = sum(1 for host, _ in self.connections if host == addr[0])
            if total >= MAX_TCP_CONNECTIONS or from_there >= MAX_TCP_PER_SOURCE:
                why = (f"{from_there} connections from there already" if total <
                       MAX_TCP_CONNECTIONS else f"{total} connections already")
                log.warning("refusing tcp connection from %s:%s: %s", addr[0], addr[1], why)
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            self._adopt(sock, (addr[0], addr[1]), accepted=True)

    def _adopt(self, sock: socket.socket, peer: tuple[str, int], *,
               accepted: bool = False) -> TcpConnection:
        connection = TcpConnection(sock, peer, self, accepted=accepted)
        with self.lock:
            self.connections[peer] = connection
        self._spawn(connection.read_loop, f"sip-tcp-{peer[0]}:{peer[1]}")
        return connection

    def forget(self, connection: TcpConnection) -> None:
        """Drop a closed connection from the table."""
        with self.lock:
            if self.connections.get(connection.peer) is connection:
                del self.connections[connection.peer]

    def deliver(self, data: bytes, source: Source) -> None:
        """Parse and hand a message to the handler; log what we reject and never raise."""
        drop = self.drop_unread
        if drop is not None:
            try:
                if drop(data):
                    return
            except Exception:  # a bug in the check costs the parse it would have saved
                log.exception("error checking %d bytes from %s:%s before parsing", len(data),
                              source.host, source.port)
        try:
            message = parse_message(data, stream=source.transport == "tcp")
        except SipParseError as exc:
            self.rejected += 1
            log.info("rejected %d bytes from %s:%s/%s: %s", len(data), source.host,
                     source.port, source.transport, exc)
            if exc.request is not None and self.on_bad_request is not None:
                try:
                    self.on_bad_request(exc, source)
                except Exception:
                    log.exception("error answering a bad request from %s:%s", source.host,
                                  source.port)
            return
        except Exception:  # a parser bug must not stop the receive loop
            self.rejected += 1
            log.exception("parser failure on %d bytes from %s:%s", len(data), source.host,
                          source.port)
            return
        if isinstance(message, SipRequest):
            stamp_received(message, source)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("recv %r from %s:%s/%s", message, source.host, source.port,
                      source.transport)
        try:
            self.handler(message, source)
        except Exception:
            log.exception("error handling %r from %s:%s", message, source.host, source.port)

    # --- sending
    def send(self, data: bytes, target: Target) -> None:
        """Send bytes to `target`, opening a TCP connection when needed."""
        try:
            if target.transport == "tcp":
                self._tcp_connection(target.host, target.port).send(data)
            else:
                self.udp.sendto(data, (target.host, target.port))
        except OSError as exc:
            log.info("send to %s:%s/%s failed: %s", target.host, target.port, target.transport,
                     exc)

    def _tcp_connection(self, host: str, port: int) -> TcpConnection:
        with self.lock:
            existing = self.connections.get((host, port))
        if existing is not None and not existing.closed:
            return existing
        sock = socket.create_connection((host, port), timeout=5.0)
        sock.settimeout(None)
        return self._adopt(sock, (host, port))

    def send_message(self, message: SipMessage, target: Target) -> None:
        """Serialise and send."""
        self.send(message.to_bytes(), target)

    def send_response(self, response: SipResponse, source: Source | None = None) -> None:
        """Send a response along the Via path (RFC 3261 §18.2.2, RFC 3581 rport)."""
        route = self.response_route(response, source)
        if route is not None:
            self.send_routed(response.to_bytes(), route)

    def response_route(
        self, response: SipResponse, source: Source | None = None
    ) -> TcpConnection | Target | None:
        """Where a response goes: the request's TCP connection, else received:rport or the
        Via's sent-by; None (logged) when the Via is unusable."""
        if source is not None and source.connection is not None and not source.connection.closed:
            return source.connection
        try:
            via = response.top_via()
        except SipParseError as exc:
            log.warning("cannot route response %r: %s", response, exc)
            return None
        host = via.params.get("received") or via.host
        rport = via.params.get("rport")
        port = ascii_number(rport, max_digits=5) if rport else None
        port = port or via.port or 5060
        transport = "tcp" if via.transport.lower() == "tcp" else "udp"
        if log.isEnabledFor(logging.DEBUG):
            log.debug("send %r to %s:%s/%s", response, host, port, transport)
        return Target(transport, host, port)

    def send_routed(self, data: bytes, route: TcpConnection | Target) -> None:
        """Send serialised bytes along a route from `response_route`."""
        if isinstance(route, TcpConnection):
            if not route.closed:
                route.send(data)
            return
        self.send(data, route)

    def local_address_towards(self, host: str) -> str:
        """The local IP a packet to `host` leaves from (our bound IP when we have one)."""
        try:
            if not ipaddress.ip_address(self.host).is_unspecified:
                return self.host
        except ValueError:
            return self.host
        probe = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            probe.connect((host, 9))  # no packet is sent: connect() on UDP only picks a route
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
        finally:
            probe.close()


def stamp_received(request: SipRequest, source: Source) -> None:
    """Add received= and fill rport= on the top Via, so responses follow the real path."""
    values = request.get_all("Via")
    if not values:
        return
    try:
        via = request.top_via()
    except SipParseError:
        return
    changed = False
    if via.host != source.host:
        via.params["received"] = source.host
        changed = True
    if "rport" in via.params:
        via.params["rport"] = str(source.port)
        via.params.setdefault("received", source.host)
        changed = True
    if not changed:
        return
    rest = values[1:]
    request.remove("Via")
    request.add("Via", str(via))
    for value in rest:
        request.add("Via", value)
    # keep Via first among headers is not required; order among Via values is what matters
