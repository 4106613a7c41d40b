"""Recognise SIP scanners (sipvicious, sipcli, VaxSIP…) so they get no service at all.

A scanner sends INVITE, OPTIONS or REGISTER to find live devices and extensions, then comes
back to guess passwords or to place toll calls. Answered like a caller, it gets voicemail, RTP
and a call row per extension; answered at all, it learns that a device is there. The user
agent calls `scanner_signature` first for these three methods and drops the request without
a response when it matches (`UserAgent.scanners` counts them). Signatures are the tools'
defaults, which the mass scans on the Internet and on a LAN keep:

- the User-Agent: ``friendly-scanner`` (sipvicious' default, long its fingerprint),
  ``sipvicious``, ``sipcli``, ``VaxSIPUserAgent``, ``sundayddr``, ``sip-scan``, ``iWar``,
  ``SIVuS``, ``smap``, ``pplsip``;
- the same names as the From or To display name, and sipvicious' placeholder identities
  (``sip:100@1.1.1.1`` in From, ``sip:123@1.1.1.1`` in Contact);
- svwar's extension probe: an INVITE or OPTIONS whose From and To are one and the same
  ``"100" <sip:100@host>`` (display name = user), a shape no phone or provider uses for a
  call to someone else.
"""

from __future__ import annotations

import re
from functools import lru_cache

from gateway.sip.message import SipParseError, SipRequest, parse_name_addr, parse_uri

SCANNED_METHODS = frozenset({"INVITE", "OPTIONS", "REGISTER"})
_TOOLS = re.compile(
    r"(?<![a-z0-9])(friendly-scanner|sipvicious|sipcli|vaxsipuseragent|sundayddr|sip-scan|"
    r"iwar|sivus|smap|pplsip)(?![a-z])", re.IGNORECASE)
_PLACEHOLDER_HOST = "1.1.1.1"  # sipvicious' default From and Contact host


_CACHED_KEY_LENGTH = 1024
"""What the check reads of one request, at most this long, is remembered (`_signature`):
floods and a line's own callers repeat the same few, and a stranger's long headers must not
pin megabytes."""

# (display name, URI) of a From or To; None when the header is missing or unreadable.
Party = tuple[str, str] | None


def _party(request: SipRequest, header: str) -> Party:
    try:  # parsed when the message was checked: no second parse
        address = request.from_() if header == "From" else request.to()
    except SipParseError:
        return None
    return address.display_name, address.uri


def _user_host(uri: str | None) -> tuple[str | None, str]:
    if uri is None:
        return None, ""
    try:
        parsed = parse_uri(uri)
    except SipParseError:
        return None, ""
    return parsed.user, parsed.host


def _contact_uri(value: str) -> str | None:
    if not value:
        return None
    try:
        return parse_name_addr(value).uri
    except SipParseError:
        return None


def scanner_signature(request: SipRequest) -> str | None:
    """What gives `request` away as a scanner's (e.g. "User-Agent friendly-scanner"), or None."""
    method = request.method.upper()
    if method not in SCANNED_METHODS:
        return None
    # Only what the check reads, not the tags and branches that change with every request.
    key = (method in ("INVITE", "OPTIONS"), request.get("User-Agent") or "",
           request.get("Server") or "", _party(request, "From"), _party(request, "To"),
           request.get("Contact") or "")
    size = sum(len(part) for part in key[1:3]) + len(key[5]) + sum(
        len(a) + len(b) for a, b in (p for p in key[3:5] if p is not None))
    if size <= _CACHED_KEY_LENGTH:
        return _signature_cached(*key)
    return _signature(*key)


def _signature(call: bool, user_agent: str, server: str, sender: Party, target: Party,
               contact: str) -> str | None:
    """`scanner_signature` of what it reads; `call`: an INVITE or OPTIONS."""
    for header, value in (("User-Agent", user_agent), ("Server", server)):
        found = _TOOLS.search(value)
        if found:
            return f"{header} {found.group(1).lower()}"
    for header, party in (("From", sender), ("To", target)):
        found = _TOOLS.search(party[0]) if party is not None else None
        if found:
            return f"{header} {found.group(1).lower()}"
    from_user, from_host = _user_host(sender[1] if sender is not None else None)
    contact_user, contact_host = _user_host(_contact_uri(contact))
    if from_host == _PLACEHOLDER_HOST and from_user == "100":
        return "From sip:100@1.1.1.1"
    if contact_host == _PLACEHOLDER_HOST and contact_user == "123":
        return "Contact sip:123@1.1.1.1"
    if call and sender is not None and target is not None:
        to_user, to_host = _user_host(target[1])
        if (from_user and (from_user, from_host) == (to_user, to_host)
                and sender[0] == from_user == target[0]):
            return "From = To (extension probe)"
    return None


_signature_cached = lru_cache(maxsize=1024)(_signature)
