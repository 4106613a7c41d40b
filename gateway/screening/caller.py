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


class Signature(StrEnum):
    """What became of a PASSporT's signature (ES256 over its header and claims)."""

    VERIFIED = "verified"  # with a certificate kept locally or fetched from an allowed URL
    INVALID = "invalid"  # the certificate's key does not verify it: forged or altered
    PENDING = "pending"  # the certificate is being fetched; a later call will know
    NO_CERTIFICATE = "no_certificate"  # none kept locally, and its URL is not one to fetch
    UNUSABLE = "unusable"  # the certificate could not be fetched, read or is out of date


@dataclass(frozen=True)
class Passport:
    """The STIR/SHAKEN PASSporT of an INVITE's Identity header (RFC 8224, 8225, 8588).

    `attest` is the originating network's attestation: A (it knows the caller and the number),
    B (the caller, not the number), C (only where the call entered its network). `problem` says
    why the header could not be read; then nothing else is set.
    """

    attest: str | None = None  # "A", "B" or "C"
    orig: str = ""  # the "orig" telephone number, digits only (or its URI)
    dest: tuple[str, ...] = ()
    origid: str = ""
    iat: int | None = None  # when it was signed, seconds since the epoch
    orig_matches: bool | None = None  # None when `orig` is a URI or the caller has no number
    signature: Signature = Signature.NO_CERTIFICATE
    x5u: str = ""  # where the signer's certificate is published
    problem: str = ""

    def age(self, now_epoch: float) -> float | None:
        """Seconds since `iat` (negative when signed "in the future"); None without one."""
        return None if self.iat is None else now_epoch - self.iat


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
    passport: Passport | None = None  # from the Identity header, when there is one

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
