"""The CardDAV answer reader and the cards' numbers: hostile XML, odd TEL values, duplicates."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.feeds import carddav
from gateway.feeds.carddav import CardDavError, MultistatusReader, entries_from_cards

CARD = "BEGIN:VCARD\nVERSION:3.0\nFN:{name}\nTEL:{number}\nEND:VCARD\n"


def multistatus(*responses: str) -> bytes:
    return ('<?xml version="1.0" encoding="utf-8"?><D:multistatus xmlns:D="DAV:" '
            'xmlns:C="urn:ietf:params:xml:ns:carddav">' + "".join(responses)
            + "</D:multistatus>").encode()


def card_response(href: str, card: str) -> str:
    return (f"<D:response><D:href>{href}</D:href><D:propstat><D:prop><D:getetag>\"1\""
            f"</D:getetag><C:address-data>{card}</C:address-data></D:prop>"
            "<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>")


def read(data: bytes, chunk: int = 7, max_cards: int | None = None
         ) -> list[carddav.DavResource]:
    reader = MultistatusReader(max_cards)
    for start in range(0, len(data), chunk):  # in small pieces, as it arrives
        reader.feed(data[start:start + chunk])
    return reader.close()


def test_cards_hrefs_and_collections_are_read_in_pieces() -> None:
    data = multistatus(
        "<D:response><D:href>/alice/contacts/</D:href><D:propstat><D:prop><D:resourcetype>"
        "<D:collection/><C:addressbook/></D:resourcetype></D:prop></D:propstat></D:response>",
        card_response("/alice/contacts/a.vcf", CARD.format(name="Marie &amp; Paul",
                                                           number="06 12 34 56 78")))
    folder, card = read(data)
    assert (folder.href, folder.collection, folder.card) == ("/alice/contacts/", True, None)
    assert card.href == "/alice/contacts/a.vcf" and not card.collection
    assert card.card is not None and "FN:Marie & Paul" in card.card


@pytest.mark.parametrize("hostile", [
    # An entity-expansion bomb ("billion laughs"): refused before anything expands.
    b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
    b'<D:multistatus xmlns:D="DAV:"><D:response><D:href>&b;</D:href></D:response>'
    b"</D:multistatus>",
    # An external entity reading a local file.
    b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<D:multistatus xmlns:D="DAV:"><D:response><D:href>&x;</D:href></D:response>'
    b"</D:multistatus>",
    b"<html><body>Please log in</body></html",
    b"\x00\x01binary",
])
def test_hostile_or_broken_answers_are_refused(hostile: bytes) -> None:
    with pytest.raises(CardDavError, match="not valid CardDAV XML"):
        read(hostile)


def test_too_many_cards_are_refused_while_reading() -> None:
    data = multistatus(*(card_response(f"/c/{i}.vcf", CARD.format(name=i, number="0612345678"))
                         for i in range(5)))
    assert len(read(data, max_cards=5)) == 5
    with pytest.raises(CardDavError, match="more than 4 cards"):
        read(data, max_cards=4)


def test_multiget_body_escapes_hrefs() -> None:
    body = carddav.multiget_body(["/c/a&b<c>.vcf"])
    assert b"<D:href>/c/a&amp;b&lt;c&gt;.vcf</D:href>" in body


def test_only_complete_numbers_become_entries() -> None:
    cards = [
        CARD.format(name="Marie", number="+33 (0)6 12 34 56 78"),
        CARD.format(name="Joker", number="re:.*"),
        CARD.format(name="Prefix", number="0612*"),
        CARD.format(name="Glob", number="+33 6 ?? ?? ?? ??"),
        CARD.format(name="Words", number="ask the reception"),
        "BEGIN:VCARD\nVERSION:3.0\nFN:No phone\nEMAIL:a@example.org\nEND:VCARD\n",
        CARD.format(name="Marie (work)", number="0612345678"),
        CARD.format(name="Marie", number="06.12.34.56.78"),
        "BEGIN:VCARD\nVERSION:4.0\nFN:UK\nTEL;VALUE=uri:tel:+44-20-7946-0958\nEND:VCARD\n",
    ]
    book = entries_from_cards(cards, "FR")
    assert book.entries == [("+33612345678", "Marie / Marie (work)"),
                            ("+442079460958", "UK")]
    assert book.rejected == ["Joker: re:.*", "Prefix: 0612*", "Glob: +33 6 ?? ?? ?? ??",
                             "Words: ask the reception"]
    assert (book.cards, book.without_number, book.duplicates) == (9, 1, 2)


def test_too_many_numbers_are_refused() -> None:
    cards = [CARD.format(name=i, number=f"06123456{i:02d}") for i in range(10)]
    assert len(entries_from_cards(cards, "FR", max_numbers=10).entries) == 10
    with pytest.raises(CardDavError, match="more than 9 phone numbers"):
        entries_from_cards(cards, "FR", max_numbers=9)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=64))
def test_any_answer_is_read_or_refused_with_a_reason(data: bytes, chunk: int) -> None:
    with contextlib.suppress(CardDavError):
        read(b'<?xml version="1.0"?><D:multistatus xmlns:D="DAV:">' + data, chunk)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_card_text_gives_entries_or_rejections(text: str) -> None:
    book = entries_from_cards([f"BEGIN:VCARD\nFN:x\nTEL:{text}\nEND:VCARD\n", text], "FR")
    assert all(number.startswith("+") for number, _ in book.entries)


def test_discovery_links_are_read_from_their_own_elements() -> None:
    data = multistatus(
        "<D:response><D:href>/</D:href><D:propstat><D:prop><D:resourcetype><D:collection/>"
        "</D:resourcetype><D:current-user-principal><D:href>/alice/</D:href>"
        "</D:current-user-principal><C:addressbook-home-set><D:href>/homes/alice/</D:href>"
        "</C:addressbook-home-set><D:displayname>Root</D:displayname></D:prop></D:propstat>"
        "</D:response>")
    [root] = read(data)
    assert (root.href, root.principal, root.home, root.name) == ("/", "/alice/",
                                                                 "/homes/alice/", "Root")
    assert root.collection and not root.address_book
