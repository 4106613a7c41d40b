"""What the owner typed, as an entry: typo traps refused, broad entries counted and confirmed."""

from __future__ import annotations

import fnmatch
import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.numbers import Reach, glob_matches_count, glob_reach, prefix_reach
from gateway.screening.caller import Caller, CallerKind
from gateway.screening.rules import ListEntry, ListName, MatchKind, regex_must_end, regex_must_start
from gateway.store.entries import BROAD_NUMBERS, check_breadth, classify_pattern, entry_reach
from gateway.store.errors import BroadEntry, EntryError
from tests.helpers import Services


@pytest.mark.parametrize(("typed", "message"), [
    # The three traps: a short number became a prefix, a country, an impossible code.
    ("06 12", r"06 12 is not a complete phone number .* type 06 12\*"),
    ("+33", r"type \+33\*"),
    ("+999123", r"\+999 is not a country calling code"),
    ("+999*", r"\+999 is not a country calling code"),
    ("00999 12", r"\+999 is not a country calling code"),
    ("0612345678901", "too many digits"),
    ("06 12 34 56 78 *", r"06 12 34 56 78 \*"),  # a full number with a star: still a prefix
])
def test_typos_are_refused_or_explained(typed: str, message: str) -> None:
    try:
        kind, pattern = classify_pattern(typed, "FR")
    except EntryError as exc:
        assert re.search(message, str(exc)), str(exc)
        assert exc.field == "pattern"
    else:
        assert (kind, pattern) == (MatchKind.PREFIX, "+33612345678")


@pytest.mark.parametrize(("typed", "numbers", "countries"), [
    ("0612345678", 1, ()),
    ("0162*", 1_000_000, ()),  # an ARCEP telemarketing range: a million, no confirmation
    ("06 12*", 1_000_000, ()),
    ("061*", 10_000_000, ()),
    ("+33*", 1_000_000_000, ("FR",)),
    ("+44*", 11_010_000_000, ("GB", "GG", "IM", "JE")),
    ("06 ?? ?? ?? 99", 1_000_000, ()),
    ("06 [0-4]? ?? ?? ??", 50_000_000, ()),
    ("+336*99", 1_000_000, ()),  # exact with several positions left to the star
])
def test_reach(typed: str, numbers: int, countries: tuple[str, ...]) -> None:
    kind, pattern = classify_pattern(typed, "FR")
    reach = entry_reach(kind, pattern)
    assert reach is not None and reach.numbers == numbers
    assert set(countries) <= set(reach.countries)
    assert bool(reach.countries) == bool(countries)


def test_broad_entries_need_confirmation_and_say_how_many() -> None:
    kind, pattern = classify_pattern("+33*", "FR")
    with pytest.raises(BroadEntry) as caught:
        check_breadth(kind, pattern, "+33*", confirm=False)
    assert "about 1,000,000,000 numbers" in str(caught.value)
    assert caught.value.reach == Reach(1_000_000_000, ("FR",), (33,))
    assert caught.value.params["countries"] == ["FR"]  # the UI shows the country's name
    check_breadth(kind, pattern, "+33*", confirm=True)  # confirmed: fine
    kind, pattern = classify_pattern("0162*", "FR")
    check_breadth(kind, pattern, "0162*", confirm=False)  # not broad: no question asked
    assert entry_reach(MatchKind.REGEX, ".*") is None  # a regex cannot be counted


def test_a_prefix_shorter_than_a_calling_code_covers_every_country_it_starts() -> None:
    reach = prefix_reach("+3")
    assert {"FR", "ES", "IT", "BE"} <= set(reach.countries) and 33 in reach.codes
    with pytest.raises(BroadEntry, match="calling codes"):
        check_breadth(MatchKind.PREFIX, "+3", "+3*", confirm=False)


def test_the_store_refuses_unconfirmed_broad_entries(service: Services) -> None:
    with pytest.raises(BroadEntry):
        service.store.entries.add("block", "+33*")
    assert service.store.entries.count("block") == 0
    assert service.store.entries.add("block", "+33*", confirm=True).pattern == "+33"
    # Removing stays lenient: "0162" finds the prefix +33162 although adding needs "0162*".
    service.store.entries.add("block", "0162*")
    assert service.store.entries.remove_pattern("block", "0162")


def _brute_count(glob: str, length: int) -> int:
    compiled = re.compile(fnmatch.translate(glob))
    return sum(1 for digits in itertools.product("0123456789", repeat=length)
               if compiled.fullmatch("".join(digits)))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(["1", "7", "?", "*", "[2-5]", "[!0]"]), min_size=1,
                max_size=5).map("".join), st.integers(min_value=0, max_value=4))
def test_glob_counting_matches_brute_force(glob: str, length: int) -> None:
    # Counted with an automaton over position sets, so "*1*" does not count a number twice.
    assert glob_matches_count(glob, length) == _brute_count(glob, length)


def test_glob_reach_is_bounded_by_the_numbering_plan() -> None:
    assert glob_reach("+336??????99").numbers == 1_000_000
    assert glob_reach("+33*").countries == ("FR",)
    with pytest.raises(ValueError, match="cannot match any phone number"):
        glob_reach("+3316?00000")  # 8 digits after +33: no French number is that short
    assert BROAD_NUMBERS == 1_000_000


_REGEX_TOKENS = ["1", "3", "6", r"\+", r"\d", ".", "?", "*", "+", "{2}", "{0,2}", "[36]",
                 "(", ")", "|", "^", "(?:", r"\.", "0?"]


def _regex(tokens: list[str]) -> str | None:
    text = "".join(tokens)
    try:
        re.compile(text)
    except re.error:
        return None
    return text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_REGEX_TOKENS), min_size=1, max_size=7).map(_regex),
       st.text(alphabet="+0136.", min_size=0, max_size=8))
def test_a_regex_prefilter_never_refuses_a_match(pattern: str | None, number: str) -> None:
    # The prefilter refuses numbers without compiling: it must never refuse one that matches.
    if pattern is not None and re.fullmatch(pattern, number):
        assert number.startswith(regex_must_start(pattern)), (pattern, number)
        assert number.endswith(regex_must_end(pattern)), (pattern, number)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.lists(st.sampled_from(_REGEX_TOKENS), min_size=1, max_size=7).map(_regex)
    .filter(lambda p: p is not None).map(lambda p: (MatchKind.REGEX, p)),
    st.lists(st.sampled_from(["+", "3", "6", "1", "?", "*", "[36]", "[!1]"]), min_size=1,
             max_size=8).map(lambda t: (MatchKind.GLOB, "".join(t)))),
    st.text(alphabet="0136", min_size=0, max_size=8))
def test_entry_matching_agrees_with_a_plain_full_match(entry: tuple[MatchKind, str],
                                                     digits: str) -> None:
    # The prefilters (start, end, digit-and-? globs) only skip work, never change an answer.
    kind, pattern = entry
    expression = re.compile(fnmatch.translate(pattern) if kind is MatchKind.GLOB else pattern)
    number, national = "+33" + digits, "0" + digits
    expected = expression.fullmatch(number) is not None or (
        kind is MatchKind.REGEX and expression.fullmatch(national) is not None)
    caller = Caller(kind=CallerKind.NUMBER, raw="x", number=number, national=national)
    assert ListEntry(id=1, list=ListName.BLOCK, kind=kind, pattern=pattern).matches(
        caller) is expected


def test_an_entry_refused_by_its_start_is_never_compiled() -> None:
    entry = ListEntry(id=1, list=ListName.BLOCK, kind=MatchKind.REGEX, pattern=r"\+33750\d{6}")
    other = Caller(kind=CallerKind.NUMBER, raw="x", number="+33612345678", national="0612345678")
    assert not entry.matches(other)
    assert "_compiled" not in entry.__dict__  # cached_property: set only when compiled
    assert entry.matches(Caller(kind=CallerKind.NUMBER, raw="x", number="+33750123456",
                                national="0750123456"))
    national = ListEntry(id=2, list=ListName.BLOCK, kind=MatchKind.REGEX, pattern=r"0750\d{6}")
    assert national.matches(Caller(kind=CallerKind.NUMBER, raw="x", number="+33750123456",
                                   national="0750123456"))
