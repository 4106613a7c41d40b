"""Every number form docs/domain.md lists becomes E.164, or a withheld or invalid caller."""

from __future__ import annotations

import pytest

import gateway.numbers as numbers_module
from gateway.numbers import (
    extract_user,
    list_number,
    national_format,
    normalize_glob,
    normalize_prefix,
    parse_caller,
    parse_verstat,
    to_e164,
)
from gateway.screening.caller import CallerKind, Verstat

MOBILE = "+33612345678"


@pytest.mark.parametrize(
    "text",
    [
        "+33612345678",
        "0033612345678",
        "+0033612345678",
        "0612345678",
        "33612345678",
        "612345678",
        "06 12 34 56 78",
        "06.12.34.56.78",
        "06-12-34-56-78",
        "+33 (0)6 12 34 56 78".replace("(0)", ""),
        "tel:+33612345678",
        "tel:+33-6-12-34-56-78",
        "sip:+33612345678@sip.example.net",
        "sip:0612345678@192.168.1.1;user=phone",
        "<sip:+33612345678;verstat=TN-Validation-Passed@ims.example.net;user=phone>",
        "<sip:+33612345678@example.net;verstat=TN-Validation-Passed>",
        "sips:0033612345678@example.net",
        "sip:%2B33612345678@example.net",
    ],
)
def test_every_form_becomes_e164(text: str) -> None:
    caller = parse_caller(text, "FR")
    assert caller.kind is CallerKind.NUMBER
    assert caller.number == MOBILE
    assert caller.national == "0612345678"
    assert caller.region == "FR"
    assert caller.number_type == "MOBILE"
    assert caller.valid


@pytest.mark.parametrize(
    ("identity", "name", "privacy"),
    [
        ("sip:anonymous@anonymous.invalid", "", ""),
        ("sip:anonymous@example.net", "", ""),
        ("sip:266696687@example.net", "", ""),
        ("sip:+33612345678@example.net", "", "id"),
        ("sip:+33612345678@example.net", "", "header; id"),
        ("sip:unknown@example.net", "Unavailable", ""),
        ("sip:restricted@example.net", "", ""),
        ("sip:@example.net", "", ""),
        ("sip:+33612345678@example.net", '"Anonymous"', ""),
        ("sip:+33612345678@example.net", "Restricted", ""),
        ("sip:+33612345678@example.net", "Appel masqué", ""),
    ],
)
def test_withheld_forms(identity: str, name: str, privacy: str) -> None:
    caller = parse_caller(identity, "FR", display_name=name, privacy=privacy)
    assert caller.kind is CallerKind.WITHHELD
    assert caller.number is None


@pytest.mark.parametrize("text", ["abc", "sip:bob@example.net", "12", "+", "0" * 40,
                                  "+33 6 12 34 56 78 99 99 99"])
def test_invalid_callers(text: str) -> None:
    caller = parse_caller(text, "FR")
    assert caller.kind is CallerKind.INVALID
    assert caller.number is None


def test_outside_numbering_plan_is_a_number_but_not_valid() -> None:
    caller = parse_caller("+33012345678", "FR")  # French numbers never start 0 after +33
    assert caller.kind in (CallerKind.NUMBER, CallerKind.INVALID)
    assert not caller.valid


def test_foreign_numbers_keep_their_country() -> None:
    caller = parse_caller("+1 650 253 0000", "FR")
    assert caller.number == "+16502530000"
    assert caller.region == "US"
    assert caller.national == "+16502530000"  # national form only for home numbers
    assert parse_caller("0044 20 7946 0958", "FR").number == "+442079460958"


def test_home_region_changes_national_reading() -> None:
    assert to_e164("020 7946 0958", "GB") == "+442079460958"
    assert to_e164("(650) 253-0000", "US") == "+16502530000"


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("sip:+33612345678;verstat=TN-Validation-Passed@x", Verstat.PASSED),
        ("sip:+33612345678@x;verstat=TN-Validation-Failed", Verstat.FAILED),
        ("sip:+33612345678@x;verstat=No-TN-Validation", Verstat.NONE),
        ("sip:+33612345678@x;verstat=TN-Validation-Passed-A", Verstat.PASSED),
        ("sip:+33612345678@x;VERSTAT=tn-validation-failed-c", Verstat.FAILED),
        ("sip:+33612345678@x", None),
    ],
)
def test_verstat(text: str, status: Verstat | None) -> None:
    assert parse_verstat(text) == status
    assert parse_caller(text, "FR").verstat == status


def test_verstat_from_separate_header_text() -> None:
    caller = parse_caller("sip:+33612345678@x", "FR", verstat="verstat=TN-Validation-Failed")
    assert caller.verstat is Verstat.FAILED


def test_extract_user() -> None:
    assert extract_user("<sip:+33612345678;verstat=X@h;user=phone>") == "+33612345678"
    assert extract_user("tel:+33612345678;phone-context=x") == "+33612345678"
    assert extract_user("0612345678") == "0612345678"


def test_hostile_input_is_bounded() -> None:
    caller = parse_caller("<sip:" + "9" * 10_000 + "@x>", "FR", display_name="x" * 10_000)
    assert caller.kind is CallerKind.INVALID
    assert len(caller.raw) <= 256 and len(caller.display_name) <= 256


@pytest.mark.parametrize(
    ("text", "prefix"),
    [("0162", "+33162"), ("+44 20", "+4420"), ("0044", "+44"), ("+0033 6", "+336"),
     ("33", "+33")],
)
def test_normalize_prefix(text: str, prefix: str) -> None:
    assert normalize_prefix(text, "FR") == prefix


@pytest.mark.parametrize("text", ["abc", "", "+", "06x", "0" + "1" * 20])
def test_normalize_prefix_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        normalize_prefix(text, "FR")


def test_normalize_glob() -> None:
    assert normalize_glob("06 ?? ?? ?? 9*", "FR") == "+336??????9*"
    assert normalize_glob("*99", "FR") == "*99"
    with pytest.raises(ValueError, match="pattern"):
        normalize_glob("06a*", "FR")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("+33612345678", MOBILE), ("06 12 34 56 78", MOBILE), ("0033612345678", MOBILE),
     ("+447911123456", "+447911123456"), ("12", None), ("abc", None),
     ("+1 650 253 0000", "+16502530000")],
)
def test_list_number_fast_path_agrees(text: str, expected: str | None) -> None:
    assert list_number(text, "FR") == expected


def test_national_format() -> None:
    assert national_format(MOBILE, "FR") == "06 12 34 56 78"
    assert national_format("+442079460958", "FR") == "+44 20 7946 0958"


def test_a_repeated_caller_is_classified_once_with_the_same_answer() -> None:
    # A flood repeats its numbers: formatting and classifying run once per distinct number.
    numbers_module._number_facts.cache_clear()
    first = parse_caller("<sip:+33612345678@192.0.2.9>", "FR", display_name="A")
    second = parse_caller("sip:0612345678@192.0.2.9", "FR", display_name="B")
    assert numbers_module._number_facts.cache_info().hits == 0  # "+336…" and "06…" differ as text
    third = parse_caller("<sip:+33612345678@192.0.2.9>", "FR", display_name="C")
    assert numbers_module._number_facts.cache_info().hits == 1
    for caller in (first, second, third):
        assert (caller.number, caller.national, caller.region, caller.number_type,
                caller.valid) == (MOBILE, "0612345678", "FR", "MOBILE", True)
    assert third.display_name == "C"  # what is not a fact of the number is never cached
