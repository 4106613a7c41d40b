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

from gateway.sip.message import NameAddr, SipParseError, SipRequest, parse_name_addr

SCANNED_METHODS = frozenset({"INVITE", "OPTIONS", "REGISTER"})
_TOOLS = re.compile(
    r"(?<![a-z0-9])(friendly-scanner|sipvicious|sipcli|vaxsipuseragent|sundayddr|sip-scan|"
    r"iwar|sivus|smap|pplsip)(?![a-z])", re.IGNORECASE)
_PLACEHOLDER_HOST = "1.1.1.1"  # sipvicious' default From and Contact host


def _name_addr(request: SipRequest, header: str) -> NameAddr | None:
    if header in ("From", "To"):  # parsed when the message was checked: no second parse
        try:
            return request.from_() if header == "From" else request.to()
        except SipParseError:
            return None
    value = request.get(header)
    if not value:
        return None
    try:
        return parse_name_addr(value)
    except SipParseError:
        return None


def _user_host(address: NameAddr | None) -> tuple[str | None, str]:
    if address is None:
        return None, ""
    try:
        uri = address.parsed_uri()
    except SipParseError:
        return None, ""
    return uri.user, uri.host


def scanner_signature(request: SipRequest) -> str | None:
    """What gives `request` away as a scanner's (e.g. "User-Agent friendly-scanner"), or None."""
    method = request.method.upper()
    if method not in SCANNED_METHODS:
        return None
    for header in ("User-Agent", "Server"):
        found = _TOOLS.search(request.get(header) or "")
        if found:
            return f"{header} {found.group(1).lower()}"
    sender, target = _name_addr(request, "From"), _name_addr(request, "To")
    for header, address in (("From", sender), ("To", target)):
        found = _TOOLS.search(address.display_name) if address is not None else None
        if found:
            return f"{header} {found.group(1).lower()}"
    from_user, from_host = _user_host(sender)
    contact_user, contact_host = _user_host(_name_addr(request, "Contact"))
    if from_host == _PLACEHOLDER_HOST and from_user == "100":
        return "From sip:100@1.1.1.1"
    if contact_host == _PLACEHOLDER_HOST and contact_user == "123":
        return "Contact sip:123@1.1.1.1"
    if method in ("INVITE", "OPTIONS") and sender is not None and target is not None:
        to_user, to_host = _user_host(target)
        if (from_user and (from_user, from_host) == (to_user, to_host)
                and sender.display_name == from_user == target.display_name):
            return "From = To (extension probe)"
    return None
