"""The pure digest builder: content, both languages, escaping, SMS length."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gateway.notify.digest import (
    BurstItem,
    CallerCount,
    DigestData,
    EntryChange,
    LookItem,
    RuleChange,
    VoicemailItem,
    build_digest,
    gsm7,
    inert,
    sms_length,
    split_sms,
)

pytestmark = pytest.mark.clock

PARIS = ZoneInfo("Europe/Paris")
HOSTILE = "<img src=x onerror=alert(1)>"


def sample(**overrides: object) -> DigestData:
    end = datetime(2026, 11, 23, 8, 0, tzinfo=PARIS)
    base = DigestData(
        period="2026-11-23", start=end - timedelta(days=1), end=end, total_calls=14,
        by_action=(("pass", 5), ("reject", 6), ("voicemail", 3)),
        top_blocked=(CallerCount("01 62 00 00 01", "TELEMARKETING", 4),),
        voicemails=(VoicemailItem(end - timedelta(hours=3), "06 12 34 56 78", HOSTILE, 42.0),),
        bursts=(BurstItem(end - timedelta(hours=10), end - timedelta(hours=9), 6, 11),),
        worth_a_look=(LookItem("06 98 76 54 32", "", "repeat", 3),
                      LookItem("07 11 22 33 44", "Marie", "challenge")),
        new_entries=(EntryChange("block", "+33162000001", "pub", "manual"),),
        rule_changes=(RuleChange("added", "quiet_hours -> voicemail"),),
    )
    return DigestData(**{**base.__dict__, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize("language", ["en", "fr"])
def test_digest_has_every_section(language: str) -> None:
    digest = build_digest(sample(), language)
    rule_kind = "quiet hours" if language == "en" else "heures calmes"  # never quiet_hours
    for needle in ("06 12 34 56 78", "0:42", "01 62 00 00 01", "06 98 76 54 32",
                   "07 11 22 33 44", "+33162000001", rule_kind):
        assert needle in digest.text
        assert needle in digest.html
    assert "14" in digest.subject


def test_languages_differ() -> None:
    english, french = build_digest(sample(), "en"), build_digest(sample(), "fr")
    assert "New voicemails" in english.text and "Nouveaux messages" in french.text
    assert "for 1 h 00" in english.text and "pendant 1 h 00" in french.text
    assert "1 voicemail," in english.sms[0] and "1 message," in french.sms[0]


def test_hostile_display_name_is_escaped_in_html_and_inert_in_text() -> None:
    name = HOSTILE + "\r\nBcc: victim@example.org\u202e"
    data = sample(voicemails=(VoicemailItem(datetime(2026, 11, 23, 5, tzinfo=PARIS),
                                            "06 12 34 56 78", name, 5.0),))
    digest = build_digest(data, "en")
    assert "<img" not in digest.html
    assert "&lt;img src=x onerror=alert(1)&gt;" in digest.html
    for part in (digest.text, digest.html, *digest.sms):
        assert "\u202e" not in part
        assert "\nBcc:" not in part and "\rBcc" not in part


def test_empty_day_reads_well() -> None:
    data = DigestData(period="2026-11-23", start=datetime(2026, 11, 22, 8, tzinfo=PARIS),
                      end=datetime(2026, 11, 23, 8, tzinfo=PARIS), first_digest=True)
    digest = build_digest(data, "fr")
    assert "Aucun appel." in digest.text and "Aucun nouveau message." in digest.text
    assert digest.sms == ("Ringfence 23/11 : 0 appel",)  # French: zero takes the singular


@pytest.mark.parametrize("language", ["en", "fr"])
def test_sms_fits_one_message_with_the_essentials(language: str) -> None:
    sms = build_digest(sample(), language).sms
    assert len(sms) == 1
    assert sms_length(sms[0]) <= 160
    assert "14" in sms[0] and "06 98 76 54 32" in sms[0]
    assert gsm7(sms[0]) == sms[0]  # no character that would switch the SMS to UCS-2


def test_long_sms_is_split_at_piece_boundaries_with_markers() -> None:
    pieces = [f"piece number {i} with some words" for i in range(12)]
    parts = split_sms("Ringfence 23/11:", pieces, max_parts=10)
    assert len(parts) > 1
    assert all(sms_length(p) <= 160 for p in parts)
    assert parts[0].endswith(f"(1/{len(parts)})")
    joined = " ".join(parts)
    assert all(p in joined for p in pieces)


def test_sms_parts_are_capped() -> None:
    parts = split_sms("Head:", [f"item {i} " * 5 for i in range(40)], max_parts=2)
    assert len(parts) == 2
    assert "..." in parts[-1]
    assert all(sms_length(p) <= 160 for p in parts)


@example("0" * 38 + "\u061b")  # right-to-left text at the cap: the isolation marks count too
@given(st.text(max_size=300))
def test_inert_never_lets_a_line_break_through(text: str) -> None:
    shown = inert(text)
    assert len(shown) <= 40
    assert not any(c in shown for c in "\r\n\x00\x1b\u2028\u2029\u202e\u200f")


@given(st.lists(st.text(max_size=80), max_size=20), st.integers(min_value=1, max_value=5))
def test_sms_parts_always_fit(pieces: list[str], max_parts: int) -> None:
    parts = split_sms("Ringfence:", [inert(p, 80) for p in pieces], max_parts)
    assert 1 <= len(parts) <= max_parts
    assert all(sms_length(p) <= 160 for p in parts)
    assert all(gsm7(p) == p for p in parts)
