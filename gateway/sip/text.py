"""A text message (SIP MESSAGE, RFC 3428) as the UA takes it: size, media type and charset.

Only `text/plain` is taken; its `charset` parameter says how to decode (UTF-8 when absent, as
RFC 3428 §9 and RFC 3261 §7.4.1 imply). Refusals carry the status the sender gets and a
Warning text that says exactly what was wrong, so a provider's log tells its reader.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from gateway.sip.message import SipRequest, parse_params

MAX_TEXT_BYTES = 4096
"""The largest body taken. An SMS of 10 concatenated UCS-2 parts is about 1,400 bytes of UTF-8;
RFC 3428 §7 caps MESSAGE at 1,300 bytes on paths without congestion control anyway. Past this
the sender gets 413 with the limit in its Warning, and nothing is stored."""
ACCEPTED_TYPES = ("text/plain",)


class TextRefused(ValueError):
    """A MESSAGE we do not take: `status`, `reason` and `headers` of the answer it gets."""

    def __init__(self, status: int, reason: str, detail: str,
                 headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        shown = re.sub(r'[^ -~]|["\\]', "?", detail)[:120]  # a Warning's quoted text
        self.headers = (*headers, ("Warning", f'399 ringfence "{shown}"'))


@dataclass(frozen=True)
class IncomingText:
    """The body of a MESSAGE we take, decoded."""

    text: str
    charset: str
    size: int  # bytes of the body as received


def _charset(content_type: str) -> str:
    """The charset parameter of a Content-Type value ("" when absent)."""
    _media, _, params = content_type.partition(";")
    value = parse_params(params).get("charset") or ""
    return value.strip().strip('"').lower()


def read_text(request: SipRequest) -> IncomingText:
    """The decoded body of MESSAGE `request`; raise TextRefused (413, 415) for one we refuse.

    Undecodable bytes in a known charset become U+FFFD rather than a refusal: a text a
    provider mangled still reaches the owner, marked where it is broken.
    """
    size = len(request.body)
    if size > MAX_TEXT_BYTES:
        raise TextRefused(413, "Request Entity Too Large",
                          f"body of {size} bytes; at most {MAX_TEXT_BYTES} are taken")
    media = request.content_type
    if media not in ACCEPTED_TYPES:
        shown = media or "no Content-Type"
        raise TextRefused(415, "Unsupported Media Type",
                          f"{shown[:60]} is not taken; send text/plain",
                          (("Accept", ", ".join(ACCEPTED_TYPES)),))
    charset = _charset(request.get("Content-Type") or "") or "utf-8"
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        raise TextRefused(415, "Unsupported Media Type",
                          f"charset {charset[:40]!r} is not known; send UTF-8",
                          (("Accept", "text/plain;charset=UTF-8"),)) from None
    if not getattr(codec, "_is_text_encoding", True):  # base64, rot13…: not a way to spell text
        raise TextRefused(415, "Unsupported Media Type",
                          f"charset {charset[:40]!r} is not a text encoding; send UTF-8",
                          (("Accept", "text/plain;charset=UTF-8"),))
    text = request.body.decode(codec.name, errors="replace")
    return IncomingText(text=text.replace("\x00", "\ufffd"), charset=codec.name, size=size)
