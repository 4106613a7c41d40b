"""Phone numbers: the only module that imports `phonenumbers`.

Numbers arrive in every form (docs/domain.md, "Number forms"): ``+33…``, ``0033…``, ``+0033…``,
national ``0…``, bare ``33…``, ``tel:`` and ``sip:`` URIs, with spaces, dots, dashes and URI
parameters such as ``;verstat=TN-Validation-Passed``. Everything becomes E.164, or a withheld
or invalid caller.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from functools import cache, lru_cache

import phonenumbers
from phonenumbers import PhoneNumberType

from gateway.screening.caller import Caller, CallerKind, InternalNumbers, Verstat
from gateway.screening.rules import InvalidField
from gateway.screening.words import N_

# User parts and display names that mean "number withheld" (docs/domain.md). 266696687 spells
# ANONYMOUS on a keypad; some carriers send it instead of the word.
WITHHELD_USERS = frozenset(
    {"anonymous", "anonymoususer", "restricted", "unavailable", "unknown", "private",
     "withheld", "266696687", "masque", "inconnu", ""}
)
WITHHELD_NAMES = frozenset(
    {"anonymous", "restricted", "unavailable", "private", "withheld", "unknown",
     "appel masqué", "appel masque", "numéro masqué", "numero masque", "masqué", "inconnu"}
)

_VERSTAT = re.compile(r"verstat=([A-Za-z-]+)", re.IGNORECASE)
_SEPARATORS = re.compile(r"[\s.\-()/]")
_GLOB_SETS = re.compile(r"(\[[^\]]*\])")  # split keeps each [...] set as its own part
MAX_RAW_LENGTH = 256  # a stranger's header; nothing legitimate is longer


def is_supported_region(region: str) -> bool:
    """Whether `region` is an ISO country code phonenumbers knows."""
    return region in phonenumbers.SUPPORTED_REGIONS


@lru_cache(maxsize=64)
def country_code_for_region(region: str) -> int:
    """The calling code of `region`, e.g. 33 for FR."""
    return int(phonenumbers.country_code_for_region(region))


def parse_verstat(text: str) -> Verstat | None:
    """Find a STIR/SHAKEN verstat value anywhere in a URI or header; suffixes -A/-B/-C drop."""
    match = _VERSTAT.search(text)
    if not match:
        return None
    value = match.group(1).lower()
    for status in Verstat:
        if value.startswith(status.value.lower()):
            return status
    return None


def extract_user(uri: str) -> str:
    """Return the user part of a ``sip:``/``tel:`` URI (or the text itself), without parameters.

    ``<sip:+33612345678;verstat=TN-Validation-Passed@example.net;user=phone>`` gives
    ``+33612345678``.
    """
    text = uri.strip()
    if text.startswith("<") and ">" in text:
        text = text[1 : text.index(">")]
    lowered = text.lower()
    for scheme in ("sips:", "sip:", "tel:"):
        if lowered.startswith(scheme):
            text = text[len(scheme) :]
            break
    text = text.split("@", 1)[0]
    text = text.split(";", 1)[0].split("?", 1)[0]
    return urllib.parse.unquote(text).strip()


def _digits_form(user: str) -> str | None:
    """Strip visual separators; None unless what remains is digits with an optional '+'."""
    compact = _SEPARATORS.sub("", user)
    if not compact:
        return None
    body = compact[1:] if compact.startswith("+") else compact
    return compact if body.isdigit() else None


def _parse(compact: str, home_region: str) -> phonenumbers.PhoneNumber | None:
    """The number `compact` is (the valid reading if there are two), or None."""
    return _classified(compact, home_region)[0]


@lru_cache(maxsize=4096)
def _classified(compact: str, home_region: str
                ) -> tuple[phonenumbers.PhoneNumber | None, int]:
    """`_parse`'s number and its `PhoneNumberType`: classified once, since validity is a
    known type (each of `is_valid_number` and `number_type` matches the number against the
    plan's patterns, a third of the cost of a new caller)."""
    home_cc = country_code_for_region(home_region)
    candidates: list[str] = []
    if compact.startswith("+00"):
        candidates.append("+" + compact[3:])
    elif compact.startswith("+"):
        candidates.append(compact)
    elif compact.startswith("00"):
        candidates.append("+" + compact[2:])
    elif compact.startswith("0"):
        candidates.append(compact)  # national form, parsed against the home region
    else:
        # Bare digits: "33612345678" is international without its '+', "612345678" is national
        # without its trunk 0. Prefer the reading that gives a valid number.
        candidates.append("+" + compact)
        candidates.append(compact)
        if not compact.startswith(str(home_cc)):
            candidates.reverse()
    best: phonenumbers.PhoneNumber | None = None
    for candidate in candidates:
        try:
            parsed = phonenumbers.parse(candidate, home_region)
        except phonenumbers.NumberParseException:
            continue
        number_type = phonenumbers.number_type(parsed)
        if _valid(number_type):
            return parsed, number_type
        if best is None and phonenumbers.is_possible_number(parsed):
            best = parsed
    return best, PhoneNumberType.UNKNOWN


def _valid(number_type: int) -> bool:
    # is_valid_number() is number_type() != UNKNOWN: both look the region up from the country
    # code and match the same patterns (tests/property/test_numbers_properties.py checks
    # that they agree).
    return number_type != PhoneNumberType.UNKNOWN


@lru_cache(maxsize=4096)
def _number_facts(compact: str, home_region: str) -> tuple[str, str, str | None, str, bool] | None:
    """(E.164, national digits, region, type, valid) of a caller's digits; None if no number.

    Cached like `_classified`: formatting and classifying were a fifth of a refused call's
    screening, and floods repeat their numbers (a dialer retries, SIPp sends one).
    """
    parsed, number_type = _classified(compact, home_region)
    if parsed is None:
        return None
    e164 = str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
    region = phonenumbers.region_code_for_number(parsed)
    national = e164
    if region == home_region:
        formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
        national = re.sub(r"\D", "", str(formatted))
    return (e164, national, region, _TYPE_NAMES.get(number_type, "UNKNOWN"),
            _valid(number_type))


def to_e164(text: str, home_region: str) -> str | None:
    """Return `text` as an E.164 number, or None if it cannot be one."""
    compact = _digits_form(extract_user(text))
    if compact is None or len(compact) > 20:
        return None
    parsed = _parse(compact, home_region)
    if parsed is None:
        return None
    return str(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))


def normalize_prefix(text: str, home_region: str) -> str:
    """Turn a prefix the owner typed ("0162", "+44 20", "0044") into an E.164 prefix.

    Raises ValueError with a message for the owner when it is not a prefix.
    """
    compact = _digits_form(text.strip())
    if compact is None:
        raise ValueError(f"{text!r} is not a number prefix: use digits, optionally after '+'")
    if compact.startswith("+00"):
        result = "+" + compact[3:]
    elif compact.startswith("+"):
        result = compact
    elif compact.startswith("00"):
        result = "+" + compact[2:]
    elif compact.startswith("0"):
        result = f"+{country_code_for_region(home_region)}{compact[1:]}"
    else:
        result = "+" + compact
    if len(result) < 2 or len(result) > 16:
        raise ValueError(f"{text!r} is not a number prefix: it must have 1 to 15 digits")
    return result


def normalize_glob(text: str, home_region: str) -> str:
    """Normalise the literal start of a glob ("0162*", "+33 6 ?? ?? ?? ??") to E.164 form."""
    # Separators go, except a '-' inside [...], where it is a range ("[2-5]"), not punctuation.
    pattern = "".join(part if part.startswith("[") else _SEPARATORS.sub("", part)
                      for part in _GLOB_SETS.split(text.strip()))
    if not pattern or not re.fullmatch(r"\+?[0-9*?\[\]!-]+", pattern):
        raise ValueError(
            f"{text!r} is not a number pattern: use digits with * (any digits), ? (one digit) "
            "or [0-5] (one digit from a set)"
        )
    cut = next((i for i, c in enumerate(pattern) if c in "*?["), len(pattern))
    literal, rest = pattern[:cut], pattern[cut:]
    if literal in ("", "+"):
        return pattern
    return normalize_prefix(literal, home_region) + rest


def national_format(e164: str, home_region: str) -> str:
    """Format for people: national form for home numbers, international otherwise."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    fmt = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if phonenumbers.region_code_for_number(parsed) == home_region
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return str(phonenumbers.format_number(parsed, fmt))


# Built once: walking dir(PhoneNumberType) for every INVITE was 2 % of a refused call's CPU.
_TYPE_NAMES = {getattr(PhoneNumberType, name): name
               for name in sorted(dir(PhoneNumberType), reverse=True)
               if not name.startswith("_") and name.isupper()}


NUMBER_TYPES = tuple(
    sorted(n for n in dir(PhoneNumberType) if not n.startswith("_") and n.isupper())
)


def is_withheld(user: str, display_name: str, privacy: str = "") -> bool:
    """Whether the network says the caller's identity is withheld."""
    privacy_values = {p.strip().lower() for p in re.split(r"[;,]", privacy)}
    if privacy_values & {"id", "user", "header"}:
        return True
    if user.strip().lower() in WITHHELD_USERS:
        return True
    return display_name.strip().strip('"').lower() in WITHHELD_NAMES


def parse_caller(
    identity: str,
    home_region: str,
    *,
    display_name: str = "",
    privacy: str = "",
    verstat: str = "",
    line: str | None = None,
    internal: InternalNumbers | None = None,
) -> Caller:
    """Build a Caller from the best identity the network gave (PAI, else From) and its extras.

    `identity` may be a URI, a name-addr or a bare number. `verstat` is any text that may carry a
    verstat parameter (the identity itself is searched too). `internal`: the home router's own
    numbers, recognised before anything else (a call from `**610` is internal, not invalid).
    """
    raw = identity[:MAX_RAW_LENGTH]
    display_name = display_name[:MAX_RAW_LENGTH]
    status = parse_verstat(verstat) or parse_verstat(raw)
    user = extract_user(raw)
    if internal is not None and internal.matches(user):
        return Caller(kind=CallerKind.INTERNAL, raw=raw, display_name=display_name,
                      verstat=status, line=line)
    if "anonymous.invalid" in raw.lower() or is_withheld(user, display_name, privacy):
        return Caller(
            kind=CallerKind.WITHHELD, raw=raw, display_name=display_name, verstat=status,
            line=line,
        )
    compact = _digits_form(user)
    facts = _number_facts(compact, home_region) if compact and len(compact) <= 20 else None
    if facts is None:
        return Caller(
            kind=CallerKind.INVALID, raw=raw, display_name=display_name, verstat=status, line=line
        )
    e164, national, region, number_type, valid = facts
    return Caller(
        kind=CallerKind.NUMBER,
        raw=raw,
        number=e164,
        national=national,
        region=region,
        number_type=number_type,
        valid=valid,
        display_name=display_name,
        verstat=status,
        line=line,
    )


@lru_cache(maxsize=512)
def _possible_lengths(country_code: int) -> frozenset[int]:
    """National number lengths that are possible for any region sharing `country_code`."""
    lengths: set[int] = set()
    for region in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(country_code, ()):
        metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(
            country_code, region
        )
        if metadata is not None and metadata.general_desc is not None:
            lengths.update(metadata.general_desc.possible_length or ())
    return frozenset(lengths)


@lru_cache(maxsize=64)
def _trunk_prefix(region: str) -> str | None:
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    return None if metadata is None else metadata.national_prefix


def list_number(text: str, home_region: str) -> str | None:
    """Normalise a list entry to E.164 if it is a *possible* number, else None.

    Imports handle a million lines, so the common forms (international digits, or the home
    trunk prefix) are checked against the numbering plan's possible lengths directly; anything
    else goes through the full parser. `is_possible_number` is the right bar for list entries:
    validity depends on assignment data that lags behind reality.
    """
    compact = _digits_form(text.strip())
    if compact is None:
        return None
    international: str | None = None
    if compact.startswith("+"):
        international = compact[1:]
    elif compact.startswith("00"):
        international = compact[2:]
    else:
        trunk = _trunk_prefix(home_region)
        if trunk and compact.startswith(trunk) and not compact.startswith(trunk * 2):
            international = f"{country_code_for_region(home_region)}{compact[len(trunk):]}"
    if international is not None and international[:1] != "0":
        for cc_len in (1, 2, 3):
            cc = int(international[:cc_len]) if len(international) > cc_len else 0
            if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
                national = international[cc_len:]
                if len(national) in _possible_lengths(cc) and national[:1] != "0":
                    return "+" + international
                break
    return to_e164(text, home_region)


@dataclass(frozen=True)
class NumberQuery:
    """A number typed in a search box, as what to look for among stored E.164 numbers.

    ``0612``, ``06 12``, ``+33612`` and ``0033 612`` all give the start ``+33612``; bare
    digits (``3456``) are looked for anywhere; `complete` is the whole number when the text
    is one (so a list search also finds the prefix entries that cover it).
    """

    start: str | None = None
    digits: str | None = None
    complete: str | None = None


def number_query(text: str, home_region: str) -> NumberQuery | None:
    """Read a searched number in any written form; None when the text is not digits."""
    compact = _digits_form(extract_user(text))
    if compact is None or len(compact) > 20:
        return None
    complete = list_number(compact, home_region)
    trunk = _trunk_prefix(home_region)
    if compact.startswith("+00"):
        start = "+" + compact[3:]
    elif compact.startswith("+"):
        start = compact
    elif compact.startswith("00"):
        start = "+" + compact[2:]
    elif trunk and compact.startswith(trunk):
        start = f"+{country_code_for_region(home_region)}{compact[len(trunk):]}"
    else:
        return NumberQuery(digits=compact, complete=complete)
    return NumberQuery(start=start if len(start) > 1 else None, complete=complete)


# ------------------------------------------------------------------ how far an entry reaches


@dataclass(frozen=True)
class Reach:
    """How many numbers a prefix or a pattern can match, and which countries it takes whole."""

    numbers: int
    countries: tuple[str, ...] = ()  # region codes covered entirely (FR for +33*)
    codes: tuple[int, ...] = ()  # their calling codes (33)


def _calling_code(digits: str) -> int | None:
    """The country calling code `digits` starts with (1 to 3 digits), or None."""
    for length in (1, 2, 3):
        known = phonenumbers.COUNTRY_CODE_TO_REGION_CODE
        if len(digits) >= length and int(digits[:length]) in known:
            return int(digits[:length])
    return None


def _codes_starting(digits: str) -> list[int]:
    """Every calling code that begins with `digits` (a prefix shorter than a calling code)."""
    return [cc for cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE
            if str(cc).startswith(digits) and cc != 0]


def _regions(code: int) -> tuple[str, ...]:
    return tuple(r for r in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(code, ())
                 if r != "001")  # 001: non-geographic entities share no country


def _every_number(code: int) -> int:
    return sum(10**length for length in _possible_lengths(code))


def unknown_calling_code(digits: str) -> InvalidField:
    """The error for digits after '+' that no country calling code starts."""
    return InvalidField("pattern", N_("+{code} is not a country calling code: no number "
                                      "starts with it"), code=digits[:3])


def prefix_reach(prefix: str) -> Reach:
    """How far an E.164 prefix ("+33612") reaches; InvalidField if no number can start so."""
    digits = prefix.lstrip("+")
    code = _calling_code(digits)
    if code is None:
        codes = _codes_starting(digits)
        if not codes:
            raise unknown_calling_code(digits)
        # Shorter than a calling code ("+3", "+"): every country whose code starts so.
        return Reach(sum(_every_number(c) for c in codes),
                     tuple(sorted({r for c in codes for r in _regions(c)})), tuple(codes))
    national = len(digits) - len(str(code))
    numbers = sum(10 ** (length - national) for length in _possible_lengths(code)
                  if length >= national)
    if numbers == 0:
        raise InvalidField("pattern", N_("{prefix} is longer than any phone number of its "
                                         "country"), prefix=prefix)
    return Reach(numbers, *((_regions(code), (code,)) if national == 0 else ((), ())))


def _glob_tokens(pattern: str) -> list[frozenset[str] | None]:
    """A digits-only glob as tokens: a set of digits for one position, None for `*`."""
    digits = frozenset("0123456789")
    tokens: list[frozenset[str] | None] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "*":
            if not tokens or tokens[-1] is not None:  # "**" is "*"
                tokens.append(None)
        elif char == "?":
            tokens.append(digits)
        elif char == "[" and "]" in pattern[i + 1:]:
            end = pattern.index("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            body = body[1:] if negate else body
            chosen: set[str] = set()
            j = 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    chosen |= {d for d in digits if body[j] <= d <= body[j + 2]}
                    j += 3
                else:
                    chosen |= {body[j]} & digits
                    j += 1
            tokens.append(frozenset(digits - chosen if negate else chosen))
            i = end
        else:
            tokens.append(frozenset(char) & digits)
        i += 1
    return tokens


def glob_matches_count(pattern: str, length: int) -> int:
    """How many digit strings of `length` the glob matches (exactly: overlaps counted once).

    The glob is run as an automaton over sets of positions (a subset construction), so a
    pattern with several `*` does not count the same number twice.
    """
    tokens = _glob_tokens(pattern)
    end = len(tokens)

    def closure(states: set[int]) -> frozenset[int]:
        grown = set(states)
        for i in sorted(states):
            while i < end and tokens[i] is None:  # a `*` may match nothing
                i += 1
                grown.add(i)
        return frozenset(grown)

    @cache
    def count(states: frozenset[int], remaining: int) -> int:
        if remaining == 0:
            return int(end in states)
        total = 0
        for digit in "0123456789":
            after: set[int] = set()
            for i in states:
                if i == end:
                    continue
                token = tokens[i]
                if token is None:
                    after.add(i)
                elif digit in token:
                    after.add(i + 1)
            if after:
                total += count(closure(after), remaining - 1)
        return total

    result = count(closure({0}), length)
    count.cache_clear()
    return result


def glob_reach(pattern: str) -> Reach:
    """How far a normalised glob ("+336??????99", "*99") reaches."""
    body = pattern.lstrip("+")
    cut = next((i for i, c in enumerate(body) if c in "*?["), len(body))
    code = _calling_code(body[:cut])
    if code is None:
        codes = _codes_starting(body[:cut])
        if not codes:
            raise unknown_calling_code(body[:cut])
        # The country is not fixed: count over every calling code the literal start allows.
        return Reach(sum(sum(glob_matches_count(body, len(str(c)) + length)
                             for length in _possible_lengths(c)) for c in codes),
                     tuple(sorted({r for c in codes for r in _regions(c)})), tuple(codes))
    rest = body[len(str(code)):]
    numbers = sum(glob_matches_count(rest, length) for length in _possible_lengths(code))
    if numbers == 0:
        raise InvalidField("pattern", N_("{pattern} cannot match any phone number of its "
                                         "country (wrong length?)"), pattern=pattern)
    whole = numbers >= _every_number(code)
    return Reach(numbers, *((_regions(code), (code,)) if whole else ((), ())))


def why_not_a_number(text: str, home_region: str) -> InvalidField:
    """The reason what the owner typed is not a possible phone number, in words."""
    compact = _digits_form(text.strip())
    if compact is None:
        return InvalidField("pattern", N_("{text} is neither a phone number nor a pattern: a "
                                          "prefix ends with * (0162*), a pattern uses ? or * "
                                          "(06 ?? ?? ?? 99), a regular expression starts with "
                                          "re:"), text=text.strip())
    international: str | None = None
    if compact.startswith("+00"):
        international = compact[3:]
    elif compact.startswith("+"):
        international = compact[1:]
    elif compact.startswith("00"):
        international = compact[2:]
    if international is not None and _calling_code(international) is None:
        return unknown_calling_code(international)
    try:
        parsed = phonenumbers.parse(f"+{international}" if international is not None
                                    else compact, home_region)
        result = phonenumbers.is_possible_number_with_reason(parsed)
    except phonenumbers.NumberParseException:
        result = phonenumbers.ValidationResult.INVALID_LENGTH
    if result == phonenumbers.ValidationResult.TOO_LONG:
        return InvalidField("pattern", N_("{text} has too many digits to be a phone number"),
                            text=text.strip())
    if result == phonenumbers.ValidationResult.INVALID_COUNTRY_CODE:
        return unknown_calling_code(international or compact)
    # Too short, or a length no number of its country has: the classic "06 12" typo for a
    # prefix. Say how to write the prefix rather than guess it.
    return InvalidField("pattern", N_("{text} is not a complete phone number (too few digits). "
                                      "To cover every number that starts with it, type "
                                      "{text}*"), text=text.strip())
