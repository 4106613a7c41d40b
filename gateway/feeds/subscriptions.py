"""List subscriptions: an allow or block list kept in step with a URL, a local file or a
CardDAV address book.

Each refresh downloads (size- and time-limited), parses "number_or_pattern[,label]" lines
(kind "list") or an address book's cards (kind "carddav", `gateway.feeds.carddav`), and only if
that gave at least one usable entry replaces the subscription's entries in one transaction
(`ListFiles.replace_source`). A failed download, an HTML error page, a refused password or an
empty file leaves the previous entries in place. Manual entries have another source and are
never touched.
"""

from __future__ import annotations

import csv
import functools
import http.client
import ipaddress
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import select

from gateway.config import Settings
from gateway.feeds.carddav import (
    DISCOVER_BODY,
    MAX_CARDS,
    MULTIGET_BATCH,
    PROPFIND_BODY,
    QUERY_BODY,
    AddressBookEntries,
    CardDavError,
    DavResource,
    MultistatusReader,
    entries_from_cards,
    multiget_body,
)
from gateway.screening.rules import ListName
from gateway.store.csv_cells import restore
from gateway.store.db import Database
from gateway.store.entries import classify_pattern
from gateway.store.errors import EntryError
from gateway.store.list_files import ListFiles, iter_lines
from gateway.store.models import SubscriptionRow, utcnow

log = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

RETRY_AFTER_FAILURE = timedelta(hours=1)
SHRINK_MIN_PREVIOUS = 100  # below this, a list shrinking a lot is normal
CHUNK = 64 * 1024
USER_AGENT = "Ringfence list subscription"
KINDS = ("list", "carddav")
# Answers a server gives to a REPORT it does not support: then the cards are listed with a
# PROPFIND and read with addressbook-multiget (RFC 6352 §8.7), which every server has.
QUERY_UNSUPPORTED = frozenset({400, 403, 405, 412, 415, 422, 501})


class SubscriptionError(ValueError):
    """A subscription could not be added or refreshed; the message says why.

    `field` names the form field or JSON key the message is about, when the owner's input
    caused it (list, url, refresh_hours, kind, user, password_file).
    """

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def source_of(subscription_id: int) -> str:
    """The list-entry source of a subscription's entries."""
    return f"subscription:{subscription_id}"


def _check_location(url: str) -> str:
    url = url.strip()
    if url.lower().startswith(("http://", "https://")):
        return url
    if "://" in url:
        raise SubscriptionError(f"{url!r}: only http://, https:// or a local file path", "url")
    path = Path(url).expanduser()
    if not path.is_absolute():
        raise SubscriptionError(f"{url!r}: give the file's absolute path", "url")
    return str(path)


# --------------------------------------------------------------------------- fetching


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only: never to file://, ftp:// or anything else."""

    def redirect_request(self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str,
                         headers: Any, newurl: str) -> urllib.request.Request | None:
        if not newurl.lower().startswith(("http://", "https://")):
            raise SubscriptionError(f"refused a redirect to {newurl[:100]!r}")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def internal_reason(ip: IPAddress) -> str | None:
    """Why a subscription may not fetch from `ip` (None: a public address it may reach)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_loopback:
        return "a loopback address (this machine)"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_private or ip.is_reserved or ip.is_unspecified or ip.is_multicast \
            or not ip.is_global:
        return "a private or reserved address (the local network)"
    return None


class _Guard:
    """Connects to a list's server only at addresses a subscription may reach.

    The check runs on the addresses the name resolves to, at the moment of connecting, for
    every connection: the first one and each redirect's. The socket then goes to the address
    that was checked, so a name cannot resolve to a public address for the check and to
    127.0.0.1 for the connection.
    """

    def __init__(self, lan: bool) -> None:
        self.lan = lan

    def connect(self, address: tuple[str, int], timeout: Any = None,
                source_address: tuple[str, int] | None = None) -> socket.socket:
        """Resolve, check every address, and connect to the first that answers."""
        host, port = address
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise SubscriptionError(f"cannot resolve {host!r}: {exc.strerror}") from None
        if not self.lan:
            for info in infos:
                ip = ipaddress.ip_address(str(info[4][0]).split("%")[0])
                why = refusal(ip)
                if why is not None:
                    raise SubscriptionError(
                        f"refused {host}: {ip} is {why}; a list from your own network must be "
                        "marked as a LAN source")
        error: OSError | None = None
        for family, kind, proto, _name, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            try:
                if isinstance(timeout, int | float):  # else the socket module's default
                    sock.settimeout(timeout)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                error = exc
        raise error or OSError(f"cannot connect to {host}")


# Looked up at each connection; tests replace it to call one loopback address "public".
refusal: Callable[[IPAddress], str | None] = internal_reason


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, guard: _Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = guard.connect  # type: ignore[assignment]


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, guard: _Guard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = guard.connect  # type: ignore[assignment]


class _GuardedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, guard: _Guard) -> None:
        super().__init__()
        self.guard = guard

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_GuardedHTTPConnection, guard=self.guard), req)


class _GuardedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, guard: _Guard) -> None:
        super().__init__()
        self.guard = guard

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_GuardedHTTPSConnection, guard=self.guard), req,
                            context=self._context)  # type: ignore[attr-defined]


def _opener(lan: bool, *extra: urllib.request.BaseHandler) -> urllib.request.OpenerDirector:
    guard = _Guard(lan)
    opener = urllib.request.OpenerDirector()
    # No proxy from the environment: through a proxy, the address check would see the proxy,
    # and the proxy would fetch the internal URL on our behalf.
    for handler in (urllib.request.ProxyHandler({}), _GuardedHTTPHandler(guard),
                    _GuardedHTTPSHandler(guard), _HttpOnlyRedirects(),
                    urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor(), *extra):
        opener.add_handler(handler)
    return opener


def _read_body(response: http.client.HTTPResponse, max_bytes: int, deadline: float,
               timeout: float, consume: Callable[[bytes], None], *, what: str = "the list",
               limit: int | None = None) -> int:
    """Hand `response`'s body to `consume` in chunks; SubscriptionError when too big or slow.

    `max_bytes` is what is left of the budget, `limit` the whole budget the message names.
    Returns how many bytes were read, to be counted against the caller's whole budget.
    """
    allowed = f"the {(max_bytes if limit is None else limit) // 2**20} MiB allowed"
    declared = response.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise SubscriptionError(f"{what} is {int(declared) // 2**20} MiB, more than {allowed}")
    size = 0
    while chunk := response.read(CHUNK):
        size += len(chunk)
        if size > max_bytes:
            raise SubscriptionError(f"{what} is larger than {allowed}")
        if time.monotonic() > deadline:
            raise SubscriptionError(f"the download took longer than {timeout:.0f} s")
        consume(chunk)
    return size


def fetch(location: str, max_bytes: int, timeout: float, *, lan: bool = False) -> bytes:
    """The bytes at a URL or file path; SubscriptionError when too big, too slow or failing.

    Unless `lan`, a URL whose server is on a loopback, link-local or private address (after
    name resolution, for the first request and every redirect) is refused.
    """
    if not location.lower().startswith(("http://", "https://")):
        path = Path(location)
        try:
            if path.stat().st_size > max_bytes:
                raise SubscriptionError(f"{path} is larger than {max_bytes // 2**20} MiB")
            return path.read_bytes()
        except OSError as exc:
            raise SubscriptionError(f"cannot read {path}: {exc.strerror}") from None
    deadline = time.monotonic() + timeout
    # Only http(s) gets here (checked above and in _check_location); redirects are checked too.
    request = urllib.request.Request(location, headers={"User-Agent": USER_AGENT})  # noqa: S310
    try:
        with _opener(lan).open(request, timeout=timeout) as response:
            if "text/html" in (response.headers.get("Content-Type") or "").lower():
                raise SubscriptionError("the server sent a web page, not a list")
            data = bytearray()
            _read_body(response, max_bytes, deadline, timeout, data.extend)
            return bytes(data)
    except urllib.error.HTTPError as exc:
        raise SubscriptionError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise SubscriptionError(f"cannot download: {exc.reason}") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, SubscriptionError):
            raise
        raise SubscriptionError(f"cannot download: {exc}") from None


@dataclass(frozen=True)
class CardDavAccount:
    """Where an address book is and how to log in; `name` says which subscription it is."""

    url: str
    username: str
    password_file: str | None
    lan: bool
    name: str


def read_password(account: CardDavAccount) -> str:
    """The password in the account's file (its first line, trimmed); "" without a file."""
    if account.password_file is None:
        return ""
    path = Path(account.password_file)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SubscriptionError(f"{account.name}: cannot read the password file {str(path)!r} "
                                f"({exc.strerror})") from None
    except UnicodeDecodeError:
        raise SubscriptionError(f"{account.name}: the password file {str(path)!r} is not "
                                "UTF-8 text") from None
    lines = text.splitlines()
    return lines[0].strip() if lines else ""


class _DavSession:
    """The requests of one refresh: one opener, one byte budget and one deadline for all."""

    def __init__(self, account: CardDavAccount, max_bytes: int, timeout: float) -> None:
        self.account = account
        self.budget, self.limit, self.timeout = max_bytes, max_bytes, timeout
        self.deadline = time.monotonic() + timeout
        self.manager = urllib.request.HTTPPasswordMgrWithPriorAuth()
        handlers: list[urllib.request.BaseHandler] = []
        self.password = ""
        if account.username:
            # Basic is sent with the first request (Radicale, Nextcloud, iCloud, most
            # servers); a server that asks for Digest (Baïkal's default) gets it in answer to
            # its 401.
            self.password = read_password(account)
            self.manager.add_password(None, account.url, account.username, self.password,
                                      is_authenticated=True)
            handlers = [urllib.request.HTTPBasicAuthHandler(self.manager),
                        urllib.request.HTTPDigestAuthHandler(self.manager)]
        self.opener = _opener(account.lan, *handlers)
        self.origins = {_origin(account.url)}

    def follow(self, base: str, href: str) -> str:
        """The URL a server's href names; the password goes there only over https."""
        url = urllib.parse.urljoin(base, href)
        if not url.lower().startswith(("http://", "https://")):
            raise SubscriptionError(f"{self.account.name}: the server pointed to {url[:100]!r}")
        origin = _origin(url)
        if origin not in self.origins and self.account.username:
            if not url.lower().startswith("https://"):
                raise SubscriptionError(
                    f"{self.account.name}: the server sends the address book to {origin}; the "
                    "password would go there unencrypted (http), so it is not sent")
            # iCloud keeps each account's address books on another host than the one asked.
            self.manager.add_password(None, url, self.account.username, self.password,
                                      is_authenticated=True)
            self.origins.add(origin)
        return url

    def request(self, url: str, method: str, body: bytes, depth: str = "1"
                ) -> list[DavResource]:
        """One PROPFIND or REPORT; its multistatus answer's resources."""
        # Only http(s) gets here (checked when the subscription was added, and in follow()).
        request = urllib.request.Request(url, data=body, method=method, headers={  # noqa: S310
            "User-Agent": USER_AGENT, "Depth": depth,
            "Content-Type": 'application/xml; charset="utf-8"'})
        reader = MultistatusReader()
        left = max(0.1, self.deadline - time.monotonic())
        with self.opener.open(request, timeout=left) as response:
            if response.status != 207:
                kind = (response.headers.get("Content-Type") or "?").split(";")[0]
                raise SubscriptionError(
                    f"{self.account.name}: the server answered HTTP {response.status} ({kind}) "
                    f"instead of a CardDAV multistatus: is {url} an address book's URL?")
            self.budget -= _read_body(response, self.budget, self.deadline, self.timeout,
                                      reader.feed, what=f"{self.account.name}: the address "
                                      "book", limit=self.limit)
        return reader.close()


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme.lower()}://{(parts.netloc or '').lower()}"


def _find_address_book(session: _DavSession) -> str:
    """The address book's URL: the one given, or the only one its principal has."""
    url = session.account.url
    name = session.account.name
    found = session.request(url, "PROPFIND", DISCOVER_BODY, "0")
    if any(r.address_book for r in found):
        return url
    home = next((r.home for r in found if r.home), None)
    base = url
    principal = next((r.principal for r in found if r.principal), None)
    if home is None and principal is not None:
        base = session.follow(url, principal)
        home = next((r.home for r in session.request(base, "PROPFIND", DISCOVER_BODY, "0")
                     if r.home), None)
    if home is None:
        raise SubscriptionError(f"{name}: {url} is not an address book and names no address "
                                "book home: give the address book's own URL")
    home_url = session.follow(base, home)
    books = [r for r in session.request(home_url, "PROPFIND", DISCOVER_BODY, "1")
             if r.address_book]
    if len(books) == 1:
        book = session.follow(home_url, books[0].href)
        log.info("%s: reading the address book at %s", name, book)
        return book
    if not books:
        raise SubscriptionError(f"{name}: there is no address book in {home_url}")
    choices = ", ".join(urllib.parse.urljoin(home_url, b.href) + (f" ({b.name})" if b.name
                                                                 else "")
                        for b in books[:10])
    raise SubscriptionError(f"{name}: {len(books)} address books at {home_url}; subscribe to "
                            f"one of them: {choices}")


def fetch_address_book(account: CardDavAccount, max_bytes: int, timeout: float,
                       home_region: str) -> AddressBookEntries:
    """Every phone number of a CardDAV address book; SubscriptionError when that fails.

    The URL may be the address book's, or a principal or DAV root URL with exactly one
    address book. One addressbook-query REPORT reads every card; a server that refuses it
    gets a PROPFIND and addressbook-multiget REPORTs instead. `max_bytes` and `timeout` bound
    all the requests together, and the SSRF rules of `fetch` apply to each connection.
    """
    try:
        session = _DavSession(account, max_bytes, timeout)
        book = _find_address_book(session)
        try:
            found = session.request(book, "REPORT", QUERY_BODY)
        except urllib.error.HTTPError as exc:
            if exc.code not in QUERY_UNSUPPORTED:
                raise
            log.info("%s: addressbook-query refused (HTTP %d); listing the cards instead",
                     account.name, exc.code)
            hrefs = [r.href for r in session.request(book, "PROPFIND", PROPFIND_BODY)
                     if r.href and not r.collection]
            if len(hrefs) > MAX_CARDS:
                raise CardDavError(f"the address book has more than {MAX_CARDS} cards") \
                    from None
            found = []
            for start in range(0, len(hrefs), MULTIGET_BATCH):
                found += session.request(
                    book, "REPORT", multiget_body(hrefs[start:start + MULTIGET_BATCH]))
        return entries_from_cards([r.card for r in found if r.card], home_region)
    except CardDavError as exc:
        raise SubscriptionError(f"{account.name}: {exc}") from None
    except urllib.error.HTTPError as exc:
        raise SubscriptionError(_dav_http_error(account, exc)) from None
    except urllib.error.URLError as exc:
        raise SubscriptionError(f"cannot reach the address book: {exc.reason}") from None
    except (OSError, ValueError, http.client.HTTPException) as exc:
        if isinstance(exc, SubscriptionError):
            raise
        raise SubscriptionError(f"cannot reach the address book: {exc}") from None


def _dav_http_error(account: CardDavAccount, exc: urllib.error.HTTPError) -> str:
    if exc.code == 401:
        who = f"user {account.username!r}" if account.username else "no user name"
        return (f"{account.name}: the server refused {who} and its password (HTTP 401): "
                "check --user and the password file")
    if exc.code == 403:
        return (f"{account.name}: user {account.username!r} may not read {account.url} "
                "(HTTP 403)")
    if exc.code == 404:
        return f"{account.name}: there is no address book at {account.url} (HTTP 404)"
    if 300 <= exc.code < 400:
        moved = (exc.headers.get("Location") or "")[:200] if exc.headers else ""
        return (f"{account.name}: the server moved the address book (HTTP {exc.code}) to "
                f"{moved or 'another address'}: subscribe to that URL")
    return f"{account.name}: HTTP {exc.code} {exc.reason}"


def parse_list(data: bytes) -> list[tuple[str, str]]:
    """(number_or_pattern, label) pairs from CSV or one-number-per-line text."""
    head = data[:512].lstrip().lower()
    if head.startswith((b"<!doctype", b"<html", b"<?xml")):
        raise SubscriptionError("the file is a web page, not a list")
    entries: list[tuple[str, str]] = []
    for cells in csv.reader(iter_lines(data)):
        fields = [restore(cell) for cell in cells]  # a list exported by Ringfence reads back
        if not fields or not fields[0].strip() or fields[0].lstrip().startswith("#"):
            continue
        text = fields[0].strip()
        if not entries and text.lower() in ("number", "pattern", "numero", "numéro"):
            continue  # a header row
        entries.append((text, ",".join(fields[1:]).strip()))
    return entries


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class RefreshResult:
    """What one refresh did."""

    subscription_id: int
    ok: bool
    entries: int = 0
    rejected: int = 0
    error: str | None = None
    kind: str = "list"


def add_subscription(db: Database, list_name: str, url: str, *, label: str = "",
                     refresh_hours: int = 24, lan: bool = False, kind: str = "list",
                     username: str = "", password_file: str | None = None) -> SubscriptionRow:
    """Register a subscription (it is fetched by the next refresh).

    `lan` says the owner knows the list is on the home network: its server may then be on a
    private, loopback or link-local address. A `kind="carddav"` subscription reads the
    address book at `url` as `username`, with the password in the file `password_file`.
    """
    try:
        name = ListName(list_name)
    except ValueError:
        raise SubscriptionError(f"list {list_name!r}: expected allow or block",
                                "list") from None
    if not 1 <= refresh_hours <= 24 * 30:
        raise SubscriptionError(f"refresh every {refresh_hours} h: expected 1 to 720 hours",
                                "refresh_hours")
    if kind not in KINDS:
        raise SubscriptionError(f"kind {kind!r}: expected list or carddav", "kind")
    location = _check_location(url)
    username = username.strip()
    if kind == "carddav":
        password_file = _check_carddav(location, username, password_file, lan)
    elif username or password_file:
        raise SubscriptionError("user: only a carddav subscription logs in", "user")
    with db.session() as s:
        row = SubscriptionRow(list=name.value, url=location[:1000],
                              label=label[:200], refresh_hours=refresh_hours, enabled=True,
                              created_at=utcnow(), entry_count=0, rejected_count=0, lan=lan,
                              kind=kind, username=username[:200], password_file=password_file)
        s.add(row)
        s.flush()
        return row


def _check_carddav(url: str, username: str, password_file: str | None, lan: bool) -> str | None:
    """The password file's absolute path, after the checks a CardDAV subscription needs."""
    if not url.lower().startswith(("http://", "https://")):
        raise SubscriptionError(
            f"{url!r}: a CardDAV address book is an http:// or https:// URL", "url")
    if password_file and not username:
        raise SubscriptionError("user: a password file needs a user name (--user)", "user")
    if username and url.lower().startswith("http://") and not lan:
        raise SubscriptionError(
            f"{url!r}: the password would cross the network unencrypted; use https://, or "
            "mark a server on your own network as a LAN source (--lan)", "url")
    if not password_file:
        return None
    path = Path(password_file).expanduser()
    if not path.is_absolute():
        raise SubscriptionError(f"password_file {password_file!r}: give the file's absolute "
                                "path", "password_file")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise SubscriptionError(f"password_file {str(path)!r}: there is no readable file there",
                                "password_file")
    return str(path)[:1000]


def list_subscriptions(db: Database) -> list[SubscriptionRow]:
    """Every subscription, oldest first."""
    with db.session() as s:
        return list(s.scalars(select(SubscriptionRow).order_by(SubscriptionRow.id)))


def remove_subscription(db: Database, settings: Settings, subscription_id: int) -> bool:
    """Delete a subscription and the entries it brought; False if there was none."""
    with db.session() as s:
        row = s.get(SubscriptionRow, subscription_id)
        if row is None:
            return False
        list_name = row.list
    ListFiles(db, settings.home_region).replace_source(list_name, source_of(subscription_id), [])
    with db.session() as s:
        row = s.get(SubscriptionRow, subscription_id)
        if row is not None:
            s.delete(row)
    return True


def _has_usable_entry(entries: list[tuple[str, str]], home_region: str) -> bool:
    # Stops at the first good line: the full check happens once, in replace_source.
    for text, _ in entries:
        try:
            classify_pattern(text, home_region)
        except EntryError:
            continue
        return True
    return False


def refresh(db: Database, settings: Settings, subscription_id: int,
            now: datetime | None = None, *, force: bool = False) -> RefreshResult:
    """Fetch one subscription and replace its entries; on any failure keep the old ones.

    A list that shrank to under a tenth of a sizeable previous list is refused too (a cut
    download or a publisher's mistake looks like that); `force` accepts it.
    """
    now = now or utcnow()
    with db.session() as s:
        row = s.get(SubscriptionRow, subscription_id)
        if row is None:
            raise SubscriptionError(f"there is no subscription {subscription_id}")
        url, list_name, previous, lan = row.url, row.list, row.entry_count, row.lan
        account = CardDavAccount(url, row.username, row.password_file, lan,
                                 _display_name(row)) if row.kind == "carddav" else None
        row.last_attempt_at = now
    limits = settings.subscriptions
    unread = 0  # what the source had that is not a number (cards' TEL values)
    try:
        if account is not None:
            book = fetch_address_book(account, limits.max_mb * 1024 * 1024, limits.timeout,
                                      settings.home_region)
            entries, unread = book.entries, len(book.rejected)
            if not entries:
                raise SubscriptionError(
                    f"the address book has no contact with a phone number ({book.cards} "
                    "cards); keeping the previous entries")
        else:
            entries = parse_list(fetch(url, limits.max_mb * 1024 * 1024, limits.timeout,
                                       lan=lan))
        if not _has_usable_entry(entries, settings.home_region):
            raise SubscriptionError("the list has no usable number; keeping the previous entries")
        if not force and previous >= SHRINK_MIN_PREVIOUS and len(entries) * 10 < previous:
            raise SubscriptionError(
                f"the list shrank from {previous} to {len(entries)} lines; keeping the previous "
                "entries (run `ringfence subscriptions refresh ID --force` to accept it)")
        report = ListFiles(db, settings.home_region).replace_source(
            list_name, source_of(subscription_id), entries)
    except SubscriptionError as exc:
        error = str(exc)[:500]
        log.warning("subscription %d (%s): %s", subscription_id, url, error)
        with db.session() as s:
            row = s.get(SubscriptionRow, subscription_id)
            if row is not None:
                row.last_error = error
        return RefreshResult(subscription_id, False, error=error)
    with db.session() as s:
        row = s.get(SubscriptionRow, subscription_id)
        if row is not None:
            row.last_error, row.last_success_at = None, now
            row.entry_count = report.added
            row.rejected_count = len(report.rejected) + unread
    log.info("subscription %d (%s): %s", subscription_id, url, report.summary())
    return RefreshResult(subscription_id, True, report.added, len(report.rejected) + unread,
                         kind="list" if account is None else "carddav")


def _display_name(row: SubscriptionRow) -> str:
    """How error messages name a subscription: its id, and its label or URL."""
    return f"CardDAV subscription {row.id} ({(row.label or row.url)[:100]})"


def is_due(row: SubscriptionRow, now: datetime) -> bool:
    """Whether a subscription should be refreshed at `now`."""
    if not row.enabled:
        return False
    if row.last_attempt_at is None:
        return True
    wait = timedelta(hours=row.refresh_hours)
    if row.last_error:
        wait = min(wait, RETRY_AFTER_FAILURE)
    return row.last_attempt_at + wait <= now


def refresh_due(db: Database, settings: Settings, now: datetime | None = None
                ) -> list[RefreshResult]:
    """Refresh every subscription whose time has come."""
    now = now or utcnow()
    results = []
    for row in list_subscriptions(db):
        if is_due(row, now):
            try:
                results.append(refresh(db, settings, row.id, now))
            except Exception:
                log.exception("subscription %d: refresh failed", row.id)
    return results
