"""Who is calling: the INVITE's identity headers turned into the screening core's `Caller`.

The network-asserted identity wins: P-Asserted-Identity, else Remote-Party-ID, else From.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime

from gateway.call.passport import CheckSignature, passport_of
from gateway.numbers import parse_caller
from gateway.screening.caller import Caller, InternalNumbers
from gateway.sip.message import SipParseError, SipRequest, parse_name_addr

log = logging.getLogger(__name__)


def identity_of(invite: SipRequest) -> tuple[str, str]:
    """The caller's identity URI and display name: PAI, else Remote-Party-ID, else From."""
    for name in ("P-Asserted-Identity", "Remote-Party-ID", "From"):
        values = invite.get_all(name)
        if not values:
            continue
        # Several PAI values may come (a sip: and a tel: URI); the first readable one wins.
        for value in values:
            try:
                address = parse_name_addr(value)
            except SipParseError:
                continue
            return address.uri, printable(address.display_name)
    return "", ""


def printable(text: str) -> str:
    """`text` without control characters: a display name may carry escaped NUL, BEL or DEL
    (RFC 4475 "intmeth"), which PostgreSQL refuses and a log or a mail has no use for."""
    return "".join(ch for ch in text if ch >= " " and ch != "\x7f")


def caller_of(invite: SipRequest, home_region: str, line: str | None, *,
              internal: InternalNumbers | None = None, now: datetime | None = None,
              check: CheckSignature | None = None) -> Caller:
    """The `Caller` of `invite`: number, display name, privacy, STIR/SHAKEN verstat and
    PASSporT (its signature checked by `check`, as of `now`); `internal` recognises the home
    router's own numbers (an internal call)."""
    identity, display = identity_of(invite)
    privacy = ", ".join(invite.get_all("Privacy"))
    verstat = " ".join([*invite.get_all("P-Asserted-Identity"), invite.get("From") or ""])
    caller = parse_caller(
        identity, home_region, display_name=display, privacy=privacy, verstat=verstat,
        line=line, internal=internal,
    )
    try:
        passport = passport_of(invite, caller, now or datetime.now(UTC), check)
    except Exception:  # a token we failed to read must not cost the call its screening
        log.exception("the Identity header of %s could not be read; screened without it",
                      invite.call_id)
        return caller
    return caller if passport is None else replace(caller, passport=passport)
