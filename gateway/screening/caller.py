"""Who is calling, as far as the network tells us: the input of `decide()`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CallerKind(StrEnum):
    """Whether the caller's number is usable."""

    NUMBER = "number"  # parsed to E.164 (may still be outside the numbering plan: see `valid`)
    WITHHELD = "withheld"  # Privacy: id, anonymous, "Restricted", ...
    INVALID = "invalid"  # nothing that could be a phone number
    INTERNAL = "internal"  # the home router's own number (**610, 620): an internal call


class Verstat(StrEnum):
    """STIR/SHAKEN verification status, normalised (carriers add -A/-B/-C suffixes)."""

    PASSED = "TN-Validation-Passed"
    FAILED = "TN-Validation-Failed"
    NONE = "No-TN-Validation"


@dataclass(frozen=True)
class InternalNumbers:
    """The home router's own numbers: a call from one is internal and never screened.

    A Fritz!Box calls its own devices from `**610`, `**620`, `**9` (every phone) or short
    extensions such as `620`; an answer bot that picks those up breaks the family's intercom.
    """

    prefixes: tuple[str, ...] = ("**",)
    max_digits: int = 3  # all-digit user parts this short are extensions (0: none)

    def matches(self, user: str) -> bool:
        """Whether the user part of a caller's URI (before any number parsing) is internal."""
        user = user.strip()
        if not user:
            return False
        if any(prefix and user.startswith(prefix) for prefix in self.prefixes):
            return True
        return user.isascii() and user.isdigit() and len(user) <= self.max_digits


NO_INTERNAL_NUMBERS = InternalNumbers(prefixes=(), max_digits=0)


@dataclass(frozen=True)
class Caller:
    """One incoming caller; built by `gateway.numbers.parse_caller`, never by hand in SIP code."""

    kind: CallerKind
    raw: str  # what the network sent, for the log
    number: str | None = None  # E.164 when kind is NUMBER
    national: str | None = None  # national digits with trunk prefix, e.g. "0162123456"
    region: str | None = None  # ISO country of the number, e.g. "FR"
    number_type: str | None = None  # phonenumbers type name: MOBILE, PREMIUM_RATE, ...
    valid: bool = False  # inside the numbering plan (not proof the number is assigned)
    display_name: str = ""
    verstat: Verstat | None = None
    line: str | None = None

    @property
    def key(self) -> str:
        """A stable key for counting calls: the E.164 number, or the kind."""
        return self.number or self.kind.value

    def describe(self) -> str:
        """The caller in words, for reasons and logs."""
        if self.kind is CallerKind.WITHHELD:
            return "withheld number"
        if self.kind is CallerKind.INVALID:
            return f"invalid number {self.raw!r}"
        if self.kind is CallerKind.INTERNAL:
            return f"internal number {self.raw!r}"
        return self.number or "?"
