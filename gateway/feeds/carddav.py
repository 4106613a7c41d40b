"""CardDAV (RFC 6352) address books as list entries: the requests, the answers, the numbers.

Pure protocol and parsing: the requests' XML bodies, a streaming reader of the server's
207 Multi-Status answer, and the contacts' phone numbers turned into exact list entries.
Fetching (the SSRF guard, limits, credentials) is `gateway.feeds.subscriptions`'s job.

Why no CardDAV client library: an address book is read with one REPORT (addressbook-query,
every card in one answer) or, for a server that does not support it, one PROPFIND and
addressbook-multiget REPORTs; the guarded urllib opener the list subscriptions already use
does that in a few lines, and a client library would bring its own HTTP stack (requests or
httpx) around the address checks. The answer is XML from a server that may be hostile:
defusedxml refuses DTDs and entities (no entity expansion bombs, no external entities), and
the reader keeps only the cards, so a big address book is read as it arrives, not as a tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape

from defusedxml.ElementTree import DefusedXMLParser

from gateway.feeds.vcard import parse_vcards
from gateway.numbers import list_number

DAV = "{DAV:}"
CARDDAV = "{urn:ietf:params:xml:ns:carddav}"
# A personal address book has hundreds of cards, a family's a few thousand; past these
# counts the answer is refused (and the previous entries kept) rather than half used.
MAX_CARDS = 20_000
MAX_NUMBERS = 50_000
MULTIGET_BATCH = 200  # hrefs per addressbook-multiget REPORT (a request body of ~20 KB)
MAX_LABEL = 200  # the list entries' label length

QUERY_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<C:addressbook-query xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
    b"<D:prop><D:getetag/><C:address-data/></D:prop><C:filter/></C:addressbook-query>"
)
PROPFIND_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:propfind xmlns:D="DAV:"><D:prop><D:resourcetype/><D:getetag/></D:prop></D:propfind>'
)
# What the URL the owner gave is: an address book, or a principal / DAV root from which the
# address books are found (current-user-principal, then addressbook-home-set).
DISCOVER_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<D:propfind xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav"><D:prop>'
    b"<D:resourcetype/><D:displayname/><D:current-user-principal/><C:addressbook-home-set/>"
    b"</D:prop></D:propfind>"
)


class CardDavError(ValueError):
    """The server's answer cannot be used; the message says why."""


def multiget_body(hrefs: list[str]) -> bytes:
    """An addressbook-multiget REPORT body asking for the cards at `hrefs`."""
    refs = "".join(f"<D:href>{escape(href)}</D:href>" for href in hrefs)
    return ('<?xml version="1.0" encoding="utf-8"?>'
            '<C:addressbook-multiget xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:carddav">'
            f"<D:prop><D:getetag/><C:address-data/></D:prop>{refs}"
            "</C:addressbook-multiget>").encode()


@dataclass
class DavResource:
    """One <D:response> of a multistatus answer: what the reader keeps of it."""

    href: str = ""
    collection: bool = False
    address_book: bool = False  # resourcetype has CARDDAV:addressbook
    card: str | None = None  # the vCard text (address-data), when asked for and sent
    principal: str | None = None  # DAV:current-user-principal's href (RFC 5397)
    home: str | None = None  # CARDDAV:addressbook-home-set's href (RFC 6352 §7.1.1)
    name: str = ""  # DAV:displayname


class _Target:
    """ElementTree parser target that keeps each response's href, type, links and card."""

    def __init__(self, max_cards: int) -> None:
        self.max_cards = max_cards
        self.resources: list[DavResource] = []
        self.cards = 0
        self._current: DavResource | None = None
        self._text: list[str] = []
        self._open: list[str] = []  # the tags open inside the current response

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        self._text = []
        if tag == f"{DAV}response":
            self._current, self._open = DavResource(), []
            return
        current = self._current
        if current is None:
            return
        self._open.append(tag)
        if tag == f"{DAV}collection":
            current.collection = True
        elif tag == f"{CARDDAV}addressbook":
            current.address_book = True

    def data(self, text: str) -> None:
        if self._current is not None:
            self._text.append(text)

    def end(self, tag: str) -> None:
        current = self._current
        text = "".join(self._text).strip() if current is not None else ""
        self._text = []
        if current is None:
            return
        if self._open and self._open[-1] == tag:
            self._open.pop()
        parent = self._open[-1] if self._open else f"{DAV}response"
        if tag == f"{DAV}href":
            if parent == f"{DAV}response" and not current.href:
                current.href = text
            elif parent == f"{DAV}current-user-principal":
                current.principal = text
            elif parent == f"{CARDDAV}addressbook-home-set" and current.home is None:
                current.home = text
        elif tag == f"{DAV}displayname":
            current.name = text[:100]
        elif tag == f"{CARDDAV}address-data":
            current.card = text
            self.cards += 1
            if self.cards > self.max_cards:
                raise CardDavError(f"the address book has more than {self.max_cards} cards")
        elif tag == f"{DAV}response":
            self.resources.append(current)
            self._current = None

    def close(self) -> list[DavResource]:
        return self.resources


class MultistatusReader:
    """Reads a 207 Multi-Status answer fed in chunks; `close()` returns its resources."""

    def __init__(self, max_cards: int | None = None) -> None:
        self._target = _Target(MAX_CARDS if max_cards is None else max_cards)
        # A multistatus answer never has a DTD: refusing any keeps entity tricks out entirely.
        self._parser: Any = DefusedXMLParser(target=self._target, forbid_dtd=True)

    def feed(self, chunk: bytes) -> None:
        """Parse the next piece of the answer."""
        try:
            self._parser.feed(chunk)
        except CardDavError:
            raise
        except Exception as exc:  # ParseError, DTDForbidden, EntitiesForbidden, ...
            raise CardDavError(f"the server's answer is not valid CardDAV XML ({exc})") from None

    def close(self) -> list[DavResource]:
        """Finish parsing; the responses read."""
        try:
            self._parser.close()
        except CardDavError:
            raise
        except Exception as exc:
            raise CardDavError(f"the server's answer is not valid CardDAV XML ({exc})") from None
        return self._target.resources


@dataclass
class AddressBookEntries:
    """An address book as allow-list entries: (E.164 number, name) pairs and what was left."""

    entries: list[tuple[str, str]] = field(default_factory=list)
    cards: int = 0
    without_number: int = 0
    duplicates: int = 0  # numbers found on more than one card (their names are joined)
    rejected: list[str] = field(default_factory=list)  # "name: number" that is not a number


def entries_from_cards(cards: list[str], home_region: str,
                       max_numbers: int | None = None) -> AddressBookEntries:
    """Every phone number of every card, in E.164, labelled with the contact's name.

    Only complete numbers are kept: a card's TEL is never read as a prefix, glob or regex
    (``re:.*`` in an address book must not allow every caller). A number on several cards
    gets each card's name, sorted, so the label does not depend on the server's order.
    """
    result = AddressBookEntries()
    max_numbers = MAX_NUMBERS if max_numbers is None else max_numbers
    names: dict[str, list[str]] = {}
    for text in cards:
        contacts = parse_vcards(text)  # cards without a phone number are left out
        result.cards += max(1, len(contacts))
        if not contacts:
            result.without_number += 1
        for contact in contacts:
            for typed in contact.numbers:
                number = list_number(typed, home_region)
                if number is None:
                    result.rejected.append(f"{contact.name}: {typed}"[:120])
                    continue
                known = names.setdefault(number, [])
                if known:
                    result.duplicates += 1
                elif len(names) > max_numbers:
                    raise CardDavError(
                        f"the address book has more than {max_numbers} phone numbers")
                name = contact.name or typed
                if name not in known:
                    known.append(name)
    result.entries = [(number, " / ".join(sorted(known))[:MAX_LABEL])
                      for number, known in names.items()]
    return result
