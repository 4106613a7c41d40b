"""A caller's number is classified once (type, and validity from the type): what it gives must
be what phonenumbers' own `is_valid_number` and `number_type` say, for any digits."""

from __future__ import annotations

import phonenumbers
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import numbers

REGIONS = st.sampled_from(["FR", "GB", "US", "DE", "IT", "BE", "CH", "GP", "RE", "JP"])
PREFIXES = st.sampled_from(["", "0", "00", "+", "+00", "+33", "+44", "+1", "+39", "+590",
                            "+262", "+800", "+882", "33", "44", "06", "09"])


@settings(max_examples=600, deadline=None)
@given(prefix=PREFIXES, digits=st.text("0123456789", min_size=1, max_size=14),
       home=REGIONS)
def test_the_one_classification_agrees_with_phonenumbers(prefix: str, digits: str,
                                                         home: str) -> None:
    """Validity and type from one `number_type` call are `is_valid_number`'s and
    `number_type`'s of the number chosen, which is the first valid reading, else a possible one."""
    compact = prefix + digits
    facts = numbers._number_facts(compact, home)
    parsed = numbers._parse(compact, home)
    if parsed is None:
        assert facts is None
        return
    assert facts is not None
    _e164, _national, region, type_name, valid = facts
    assert valid == phonenumbers.is_valid_number(parsed)
    assert type_name == numbers._TYPE_NAMES.get(phonenumbers.number_type(parsed), "UNKNOWN")
    assert region == phonenumbers.region_code_for_number(parsed)
    if not valid:  # then no reading of the digits is valid
        assert not any(phonenumbers.is_valid_number(phonenumbers.parse(c, home))
                       for c in _readings(compact) if _parses(c, home))


def _readings(compact: str) -> list[str]:
    if compact.startswith("+00"):
        return ["+" + compact[3:]]
    if compact.startswith("+") or (compact.startswith("0") and not compact.startswith("00")):
        return [compact]
    if compact.startswith("00"):
        return ["+" + compact[2:]]
    return ["+" + compact, compact]


def _parses(candidate: str, home: str) -> bool:
    try:
        phonenumbers.parse(candidate, home)
    except phonenumbers.NumberParseException:
        return False
    return True
