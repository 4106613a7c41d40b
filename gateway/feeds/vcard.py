"""A small vCard (3.0 and 4.0) reader: names and phone numbers, nothing else.

Handles folded lines (RFC 6350 §3.2), property groups (``item1.TEL``), parameters
(``TEL;TYPE=cell``), ``tel:`` URIs (4.0) and backslash escapes. Cards without a number are
skipped; a broken card never stops the rest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from gateway.screening.rules import ListName
from gateway.store import EntryError, Store
from gateway.store.list_files import Rejected


@dataclass
class Contact:
    """One card: its display name and its phone numbers as written."""

    name: str = ""
    numbers: list[str] = field(default_factory=list)
    line: int = 0  # where the card starts, for error reports


def _unfold(text: str) -> Iterator[tuple[int, str]]:
    """Join folded lines (a line starting with a space or tab continues the previous one)."""
    current: str | None = None
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if raw[:1] in (" ", "\t") and current is not None:
            current += raw[1:]
            continue
        if current is not None:
            yield start, current
        current, start = raw, number
    if current is not None:
        yield start, current


def _unescape(value: str) -> str:
    out: list[str] = []
    chars = iter(value)
    for c in chars:
        if c == "\\":
            nxt = next(chars, "")
            out.append("\n" if nxt in ("n", "N") else nxt)
        else:
            out.append(c)
    return "".join(out)


def _split_property(line: str) -> tuple[str, str]:
    """Return (NAME, value) of a content line, dropping group and parameters."""
    # The value starts at the first ':' outside a quoted parameter value.
    quoted = False
    for i, c in enumerate(line):
        if c == '"':
            quoted = not quoted
        elif c == ":" and not quoted:
            head, value = line[:i], line[i + 1 :]
            name = head.split(";", 1)[0].rsplit(".", 1)[-1].strip().upper()
            return name, value
    return "", ""


def parse_vcards(text: str) -> list[Contact]:
    """Parse every card in a .vcf text."""
    contacts: list[Contact] = []
    card: Contact | None = None
    structured_name = ""
    for line_no, line in _unfold(text.lstrip("\ufeff")):
        name, value = _split_property(line)
        if name == "BEGIN" and value.strip().upper() == "VCARD":
            card, structured_name = Contact(line=line_no), ""
        elif card is None:
            continue
        elif name == "END" and value.strip().upper() == "VCARD":
            if not card.name and structured_name:
                card.name = structured_name
            if card.numbers:
                contacts.append(card)
            card = None
        elif name == "FN":
            card.name = _unescape(value).strip()
        elif name == "N":
            # N is family;given;additional;prefix;suffix: show it as "given family".
            parts = [_unescape(p).strip() for p in value.split(";")]
            structured_name = " ".join(p for p in (parts[1:2] + parts[:1]) if p)
        elif name == "TEL":
            number = _unescape(value).strip()
            if number.lower().startswith("tel:"):
                number = number[4:].split(";", 1)[0]
            if number:
                card.numbers.append(number)
    return contacts


@dataclass
class ContactReport:
    """What a contacts import did."""

    cards: int = 0
    added: int = 0
    rejected: list[Rejected] = field(default_factory=list)


def import_contacts(store: Store, text: str) -> ContactReport:
    """Add every phone number of every card to the allow list, labelled with the name.

    The UI's upload, the API's POST /api/contacts and `ringfence allow import-vcard` share
    it. Entries are the owner's own (source "contact"): no subscription removes them.
    """
    report = ContactReport()
    for contact in parse_vcards(text):
        report.cards += 1
        for number in contact.numbers:
            try:
                store.entries.add(ListName.ALLOW, number, kind="exact",
                                  label=(contact.name or number)[:200], source="contact")
            except EntryError as exc:
                report.rejected.append(Rejected(contact.line, f"{contact.name}: {number}"[:80],
                                                str(exc), exc.template, exc.params))
            else:
                report.added += 1
    return report
