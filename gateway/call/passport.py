"""The STIR/SHAKEN `Identity` header of an INVITE, read into the screening core's `Passport`.

RFC 8224 carries a PASSporT (RFC 8225, a JWS: header.claims.signature in base64url) in the
Identity header, with `info=<certificate URL>`, `alg=ES256` and `ppt=shaken` parameters; RFC
8588 adds the `attest` (A, B, C) and `origid` claims and puts the certificate's URL in the
JWS header's `x5u`. Reading never fails a call: a header that cannot be read gives a Passport
whose `problem` says why, and the signature is checked by whatever `CheckSignature` the gateway
has (gateway.call.certificates), within its own small time budget.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gateway.screening.caller import Caller, Passport, Signature
from gateway.screening.rules import ATTESTATIONS
from gateway.sip.message import SipRequest

MAX_IDENTITY_LENGTH = 8192  # a SHAKEN Identity header is ~600-900 bytes; beyond is not one
MAX_IDENTITY_HEADERS = 4  # shaken, div (one per diversion): more is not a real network

CheckSignature = Callable[[str, bytes, bytes, datetime], Signature]
"""(x5u, the signed bytes, the raw 64-byte ES256 signature, now) -> what became of it."""

_PARAM = re.compile(r"\s*;\s*([A-Za-z0-9_.!%*+`'~-]+)\s*=\s*(<[^>]*>|\"[^\"]*\"|[^;\s]*)")


@dataclass(frozen=True)
class Token:
    """One Identity header, split: the JWS parts and the header's parameters."""

    header: dict[str, Any]
    claims: dict[str, Any]
    signed: bytes  # ASCII "<header>.<claims>", what the signature covers
    signature: bytes
    params: dict[str, str]

    @property
    def ppt(self) -> str:
        """The PASSporT extension: "shaken", "div" (a diversion), or "" for a base PASSporT."""
        return str(self.params.get("ppt") or self.header.get("ppt") or "").strip('"').lower()

    @property
    def x5u(self) -> str:
        """Where the signer's certificate is published (the JWS header, else `info`)."""
        x5u = self.header.get("x5u")
        return x5u if isinstance(x5u, str) else self.params.get("info", "").strip("<>")


class IdentityError(ValueError):
    """The Identity header is not a readable PASSporT; the message says what is wrong."""


def _b64url(part: str, what: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", part):
        raise IdentityError(f"{what} is not base64url")
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise IdentityError(f"{what} is not base64url") from None


def _json_object(part: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64url(part, what))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise IdentityError(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise IdentityError(f"{what} is not a JSON object")
    return value


def parse_identity(value: str) -> Token:
    """Split one Identity header value; IdentityError if it is not a full-form PASSporT."""
    if len(value) > MAX_IDENTITY_LENGTH:
        raise IdentityError(f"longer than {MAX_IDENTITY_LENGTH} bytes")
    text = value.strip()
    token, _sep, rest = text.partition(";")
    token = token.strip().strip('"')
    params = {m.group(1).lower(): m.group(2).strip('"') for m in _PARAM.finditer(";" + rest)}
    parts = token.split(".")
    if len(parts) != 3:
        raise IdentityError("expected header.claims.signature")
    if not parts[1]:
        # The compact form leaves the claims out, to be rebuilt from the SIP headers: not
        # something a network sends to an end device, and nothing to check against.
        raise IdentityError("compact form (no claims)")
    header = _json_object(parts[0], "the JWS header")
    claims = _json_object(parts[1], "the claims")
    signature = _b64url(parts[2], "the signature")
    return Token(header, claims, f"{parts[0]}.{parts[1]}".encode("ascii"), signature, params)


def telephone_number(value: object) -> str:
    """A `tn` claim in canonical form (RFC 8224 section 8.3): its digits, no '+' or dots."""
    if not isinstance(value, str):
        raise IdentityError("tn is not a string")
    digits = re.sub(r"[\s().+-]", "", value)
    if not digits.isascii() or not digits.isdigit() or len(digits) > 20:
        raise IdentityError("tn is not a telephone number")
    return digits


def _orig(claims: dict[str, Any]) -> tuple[str, bool]:
    """The `orig` claim and whether it is a telephone number (else a URI)."""
    orig = claims.get("orig")
    if not isinstance(orig, dict):
        raise IdentityError("no orig claim")
    if "tn" in orig:
        return telephone_number(orig["tn"]), True
    if isinstance(orig.get("uri"), str):
        return orig["uri"][:256], False
    raise IdentityError("orig has neither tn nor uri")


def _dest(claims: dict[str, Any]) -> tuple[str, ...]:
    dest = claims.get("dest")
    if not isinstance(dest, dict):
        raise IdentityError("no dest claim")
    found: list[str] = []
    for key in ("tn", "uri"):
        values = dest.get(key, [])
        if not isinstance(values, list):
            raise IdentityError(f"dest {key} is not a list")
        found += [telephone_number(v) if key == "tn" else str(v)[:256] for v in values[:10]]
    if not found:
        raise IdentityError("dest is empty")
    return tuple(found)


def same_number(orig: str, caller: Caller) -> bool | None:
    """Whether `orig` (digits) names the caller: E.164 digits, or its national form."""
    if caller.number is None:
        return None
    forms = {caller.number.lstrip("+")}
    if caller.national:
        forms.add(re.sub(r"\D", "", caller.national))
    return orig in forms


def read_passport(token: Token, caller: Caller) -> Passport:
    """The Passport of a split token, checked against the caller; the signature unchecked."""
    header, claims = token.header, token.claims
    alg = header.get("alg")
    if alg != "ES256":
        raise IdentityError(f"alg {alg!r}, not ES256")
    if token.ppt == "shaken" and claims.get("attest") not in ATTESTATIONS:
        raise IdentityError(f"attest {claims.get('attest')!r} is not A, B or C")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int):
        raise IdentityError("no iat (a whole number of seconds)")
    orig, is_tn = _orig(claims)
    attest = claims.get("attest")
    origid = claims.get("origid")
    return Passport(
        attest=attest if attest in ATTESTATIONS else None, orig=orig, dest=_dest(claims),
        origid=origid[:64] if isinstance(origid, str) else "", iat=iat,
        orig_matches=same_number(orig, caller) if is_tn else None, x5u=token.x5u[:512],
    )


def passport_of(invite: SipRequest, caller: Caller, now: datetime,
                check: CheckSignature | None) -> Passport | None:
    """The caller's Passport from the INVITE's first SHAKEN (or base) Identity header, its
    signature checked by `check` when there is one; None when the INVITE carries none."""
    values = invite.get_all("Identity")[:MAX_IDENTITY_HEADERS]
    if not values:
        return None
    problem = ""
    for value in values:
        try:
            token = parse_identity(value)
            if token.ppt not in ("shaken", ""):
                continue  # a "div" PASSporT speaks for a diversion, not for the caller
            passport = read_passport(token, caller)
        except IdentityError as exc:
            problem = problem or str(exc)
            continue
        if check is None or not passport.x5u:
            return passport
        signature = check(passport.x5u, token.signed, token.signature, now)
        return replace(passport, signature=signature)
    return Passport(problem=problem or "no SHAKEN PASSporT")
