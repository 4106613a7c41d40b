"""Hypothesis: the chunked glob/regex index finds exactly the entries that match one by one."""

from __future__ import annotations

import fnmatch

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.screening.rules import ListEntry, ListName, MatchKind
from gateway.store.screening import PatternIndex
from tests.helpers import caller

DIGITS = "0123456789"
globs = st.lists(st.sampled_from([*DIGITS[:4], "?", "*", "[0-5]", "[!7]"]), min_size=1,
                 max_size=9).map(lambda parts: "+336" + "".join(parts))
regexes = st.sampled_from([
    r"\+336.*", r"\+3361\d{7}", r"06\d{8}", r"0612.*", r"\+33(6|7)\d{8}", r"(?i)\+336.*",
    r"\+33612345678|\+33699999999", r"(?:06|07)12\d{6}", r"\+336(?=1)\d+", r"(\d)\1.*",
    r"[(]", r"\+33[0-6]{2}.*", r".*78", r"0612\d{4}78", r"\+3361\d{5}78", r"(\d)\d{8}\1",
    r"\+33612\d{3}5678$",
])
entries = st.lists(
    st.one_of(st.tuples(st.just(MatchKind.GLOB), globs),
              st.tuples(st.just(MatchKind.REGEX), regexes)),
    max_size=150,
).map(lambda kinds: [ListEntry(id=i + 1, list=ListName.BLOCK if i % 3 else ListName.ALLOW,
                               kind=kind, pattern=pattern)
                     for i, (kind, pattern) in enumerate(kinds)])
numbers = st.one_of(
    st.text(DIGITS, min_size=8, max_size=8).map(lambda d: "06" + d),
    st.sampled_from(["0612345678", "0699999999", "0711111111", "anonymous", "0162000078"]),
)


@settings(max_examples=300, deadline=None)
@given(listed=entries, number=numbers, dropped=st.integers(0, 149))
def test_the_index_matches_what_each_entry_matches(listed: list[ListEntry], number: str,
                                                   dropped: int) -> None:
    who = caller(number)
    index = PatternIndex(1, listed)
    expected = sorted(e.id for e in listed if e.matches(who))
    assert sorted(e.id for e in index.matching(who)) == expected
    # Rebuilt from the previous index (chunks reused) after one entry goes: the same again.
    fewer = [e for i, e in enumerate(listed) if i != dropped]
    again = PatternIndex(2, fewer, previous=index)
    assert sorted(e.id for e in again.matching(who)) == sorted(
        e.id for e in fewer if e.matches(who))


@settings(max_examples=300, deadline=None)
@given(pattern=globs, number=numbers)
def test_a_glob_matches_as_fnmatch_says(pattern: str, number: str) -> None:
    """Digit-and-? globs are compared position by position: the same answer as fnmatch."""
    who = caller(number)
    entry = ListEntry(id=1, list=ListName.BLOCK, kind=MatchKind.GLOB, pattern=pattern)
    expected = who.number is not None and fnmatch.fnmatchcase(who.number, pattern)
    assert entry.matches(who) == expected
