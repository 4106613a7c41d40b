"""SIP messages: a tolerant parser, a serialiser and the header value types we need.

Tolerant where RFC 3261 and RFC 4475 ask for it (compact header names, any case, folded and
repeated headers, empty headers such as ``Supported:``, spaces around colons and slashes, leading
blank lines) and strict where guessing would be dangerous (start line, CSeq, Content-Length, the
five headers every request needs). Every rejection raises `SipParseError` with a message that
says what was wrong and where, because that line is what ends up in the log. When the message
was a request we could read well enough to answer, the error carries it and the status to
answer with (400, 416 or 505), so the user agent can tell the sender instead of going silent.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeVar

MAX_MESSAGE_BYTES = 65535  # the largest UDP datagram; nothing we handle is legitimately bigger
MAX_HEADERS = 200  # a stranger's message with more headers than this is an attack, not a call
SIP_VERSION = "SIP/2.0"

# RFC 3261 §7.3.3 and later RFCs: compact forms of header names.
COMPACT_FORMS = {
    "a": "Accept-Contact", "b": "Referred-By", "c": "Content-Type", "d": "Request-Disposition",
    "e": "Content-Encoding", "f": "From", "i": "Call-ID", "j": "Reject-Contact", "k": "Supported",
    "l": "Content-Length", "m": "Contact", "n": "Identity-Info", "o": "Event", "r": "Refer-To",
    "s": "Subject", "t": "To", "u": "Allow-Events", "v": "Via", "x": "Session-Expires",
    "y": "Identity",
}
# Canonical spelling of the headers we write or read, keyed by lower case.
CANONICAL = {
    name.lower(): name
    for name in (
        *COMPACT_FORMS.values(), "Accept", "Allow", "Authorization", "CSeq", "Expires",
        "Max-Forwards", "Min-Expires", "P-Asserted-Identity", "Privacy", "Proxy-Authenticate",
        "Proxy-Authorization", "Reason", "Record-Route", "Remote-Party-ID", "Require", "Route",
        "Server", "Unsupported", "User-Agent", "WWW-Authenticate", "Retry-After", "Warning",
        "Timestamp", "Organization", "Date", "Content-Disposition", "Content-Language",
        "Accept-Encoding", "Accept-Language", "Alert-Info", "Call-Info", "In-Reply-To",
        "MIME-Version", "Priority", "Reply-To",
    )
}
CANONICAL["call-id"] = "Call-ID"
CANONICAL["cseq"] = "CSeq"
CANONICAL["www-authenticate"] = "WWW-Authenticate"

# Headers whose values are comma-separated lists that may also be split over several lines.
LIST_HEADERS = frozenset(
    {"via", "route", "record-route", "contact", "allow", "supported", "require", "unsupported",
     "proxy-require", "accept", "allow-events", "p-asserted-identity"}
)
REQUIRED_REQUEST_HEADERS = ("via", "from", "to", "call-id", "cseq")
# Headers a request carries once (RFC 3261 §20): two of them leave us guessing which one counts.
SINGLE_HEADERS = ("call-id", "cseq", "from", "to", "max-forwards")
# Request-URI schemes we can be reached at; another scheme gets 416 (RFC 3261 §8.2.2.1).
URI_SCHEMES = ("sip", "sips", "tel")
MAX_DIGITS = 10  # no number in a header we read is longer; 5,000 digits is an attack on int()

_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+\-.]*$")
_STATUS_LINE = re.compile(r"^SIP\s*/\s*2\.0\s+(\d{3})(?:\s+(.*))?$", re.IGNORECASE | re.ASCII)
_SIP_VERSION = re.compile(r"^SIP/[0-9]+\.[0-9]+$", re.IGNORECASE | re.ASCII)
_LINE_BREAK = re.compile(r"\r\n|\n|\r")


class SipParseError(ValueError):
    """A message we refuse to handle; the text says what is wrong and where.

    `status` is what to answer (400 Bad Request unless said otherwise) and `request` the request
    as far as it could be read, or None when nothing can be answered (a response, garbage).
    """

    def __init__(self, message: str, *, status: int = 400,
                 request: SipRequest | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.request = request


def ascii_number(text: str, *, max_digits: int = MAX_DIGITS) -> int | None:
    """The value of `text` if it is ASCII digits only, at most `max_digits` long; else None."""
    text = text.strip()
    # isdigit() alone also takes '²' and '٠'; on ASCII text it means exactly [0-9]+.
    if not text or len(text) > max_digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


def canonical_name(name: str) -> str:
    """Return the canonical spelling of a header name (compact forms expanded)."""
    # Only short names are cached (see _CACHED_NAME_LENGTH): a stranger's 60 KB names would
    # otherwise pin megabytes.
    if len(name) <= _CACHED_NAME_LENGTH:
        return _canonical_cached(name)
    return _canonical(name)


@lru_cache(maxsize=512)
def _canonical_cached(name: str) -> str:
    # A flood parses the same dozen names in every message.
    return _canonical(name)


def _canonical(name: str) -> str:
    lowered = name.strip().lower()
    if len(lowered) == 1 and lowered in COMPACT_FORMS:
        return COMPACT_FORMS[lowered]
    return CANONICAL.get(lowered, name.strip())


def split_commas(value: str) -> list[str]:
    """Split a header value on commas that are outside quotes and angle brackets."""
    if "," not in value:  # the usual case, without walking it character by character
        value = value.strip()
        return [value] if value else []
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    in_angle = False
    escaped = False
    for char in value:
        if escaped:
            current.append(char)
            escaped = False
            continue
        if in_quotes and char == "\\":
            escaped = True
            current.append(char)
            continue
        if char == '"':
            in_quotes = not in_quotes
        elif char == "<" and not in_quotes:
            in_angle = True
        elif char == ">" and not in_quotes:
            in_angle = False
        elif char == "," and not in_quotes and not in_angle:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    tail = "".join(current).strip()
    if tail or parts:
        parts.append(tail)
    return [p for p in parts if p]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_params(text: str) -> dict[str, str | None]:
    """Parse ``;a=b;c;d="e f"`` into an ordered dict (names lower-cased, quotes removed)."""
    if not text:
        return {}
    if '"' in text:
        return _parse_quoted_params(text)
    # Without quotes every ';' separates and no value needs unquoting: str.split does it all
    # (a flood's From, To and Via each carry one or two plain parameters).
    params: dict[str, str | None] = {}
    for piece in text.split(";"):
        name, sep, value = piece.partition("=")
        name = name.strip()
        if not name and not sep:
            continue  # an empty piece: ";;" or the leading ';'
        params[name.lower()] = value.strip() if sep else None
    return params


def _parse_quoted_params(text: str) -> dict[str, str | None]:
    """`parse_params` for any text, quoted values included (the reference the fast path
    agrees with)."""
    params: dict[str, str | None] = {}
    for piece in _split_semicolons(text):
        piece = piece.strip()
        if not piece:
            continue
        name, sep, value = piece.partition("=")
        params[name.strip().lower()] = _unquote(value) if sep else None
    return params


def _split_semicolons(text: str) -> list[str]:
    pieces: list[str] = []
    current: list[str] = []
    in_quotes = False
    for char in text:
        if char == '"':
            in_quotes = not in_quotes
        if char == ";" and not in_quotes:
            pieces.append("".join(current))
            current = []
            continue
        current.append(char)
    pieces.append("".join(current))
    return pieces


def format_params(params: dict[str, str | None]) -> str:
    """Serialise params as ``;a=b;c``, quoting values that need it."""
    out = []
    for name, value in params.items():
        if value is None:
            out.append(f";{name}")
        elif value == "" or re.search(r'[\s;,"<>]', value):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            out.append(f';{name}="{escaped}"')
        else:
            out.append(f";{name}={value}")
    return "".join(out)


# --------------------------------------------------------------------------- URIs


@dataclass
class SipUri:
    """A ``sip:``, ``sips:`` or ``tel:`` URI, split enough to route and compare."""

    scheme: str
    user: str | None
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""  # the raw ``?a=b`` part, kept as is
    password: str | None = None

    @property
    def transport(self) -> str:
        """The transport the URI asks for (``udp`` unless it says otherwise)."""
        value = self.params.get("transport")
        return (value or "udp").lower()

    @property
    def loose_routing(self) -> bool:
        """Whether the URI carries ``lr`` (RFC 3261 §16.12: a loose router)."""
        return "lr" in self.params

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user or self.host}{format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        headers = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{host}{port}{format_params(self.params)}{headers}"


def parse_uri(text: str) -> SipUri:
    """Parse a SIP or tel URI; raise SipParseError naming what is wrong."""
    text = text.strip()
    scheme, sep, rest = text.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sip", "sips", "tel"):
        raise SipParseError(f"unsupported URI {text[:80]!r}: expected sip:, sips: or tel:")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        if not number:
            raise SipParseError(f"tel URI {text[:80]!r} has no number")
        return SipUri("tel", number, "", None, parse_params(params))
    user: str | None = None
    password: str | None = None
    # The user part may itself contain ';' and '?' (RFC 4475 "intmeth", verstat in the user
    # part), while '@' can appear nowhere after it unescaped: split on the last '@' first.
    if "@" in rest:
        userinfo, _, hostpart = rest.rpartition("@")
        user, colon, pw = userinfo.partition(":")
        password = pw if colon else None
    else:
        hostpart = rest
    hostpart, _, headers = hostpart.partition("?")
    hostport, _, params = hostpart.partition(";")
    host, port = _split_hostport(hostport, text)
    return SipUri(scheme, user, host, port, parse_params(params), headers, password)


def _split_hostport(hostport: str, whole: str) -> tuple[str, int | None]:
    hostport = hostport.strip()
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise SipParseError(f"URI {whole[:80]!r}: unclosed '[' in the host")
        host, tail = hostport[1:end], hostport[end + 1 :]
    else:
        host, colon, port_text = hostport.partition(":")
        tail = f":{port_text}" if colon else ""
    if not host:
        raise SipParseError(f"URI {whole[:80]!r} has no host")
    if not tail:
        return host, None
    port_text = tail[1:]
    digits = port_text.strip()  # what ascii_number() takes, without the call
    port = int(digits) if 0 < len(digits) <= 5 and digits.isascii() and digits.isdigit() else None
    if port is None or not 0 < port < 65536:
        raise SipParseError(f"URI {whole[:80]!r}: port {port_text[:10]!r} is not 1-65535")
    return host, port


# --------------------------------------------------------------------------- name-addr


@dataclass
class NameAddr:
    """``"Display" <uri>;tag=x`` as in From, To, Contact, Route and P-Asserted-Identity."""

    uri: str
    display_name: str = ""
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter, if any."""
        return self.params.get("tag")

    def parsed_uri(self) -> SipUri:
        """The URI, parsed (once per `uri`: the scanner check and the dialog both ask)."""
        cached = self.__dict__.get("_parsed_uri")
        if cached is not None and cached[0] is self.uri:
            return cached[1]  # type: ignore[no-any-return]
        uri = parse_uri(self.uri)
        self.__dict__["_parsed_uri"] = (self.uri, uri)
        return uri

    def __str__(self) -> str:
        display = ""
        if self.display_name:
            escaped = self.display_name.replace("\\", "\\\\").replace('"', '\\"')
            display = f'"{escaped}" '
        return f"{display}<{self.uri}>{format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse a name-addr or addr-spec with its header parameters."""
    text = text.strip()
    # Fast paths for the shapes of nearly every From and To: ``<uri>;params`` and
    # ``"Name" <uri>;params`` with no escape in the name. Anything else (an addr-spec, an
    # unquoted or escaped display name, a missing '>') takes the full parser, which they
    # agree with (tests/property/test_sip_parse_properties.py).
    if text.startswith("<"):
        uri, closed, params = text[1:].partition(">")
        if closed:
            return NameAddr(uri.strip(), "", parse_params(params.strip().lstrip(";")))
    elif text.startswith('"'):
        end = text.find('"', 1)
        if end > 0 and "\\" not in text[1:end]:
            rest = text[end + 1 :].strip()
            if rest.startswith("<"):
                uri, closed, params = rest[1:].partition(">")
                if closed:
                    return NameAddr(uri.strip(), text[1:end],
                                    parse_params(params.strip().lstrip(";")))
    return _parse_name_addr_full(text)


def _parse_name_addr_full(text: str) -> NameAddr:
    """`parse_name_addr` for any shape, character by character through a quoted name."""
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display = ""
    rest = text
    if text.startswith('"'):
        i = 1
        chars: list[str] = []
        while i < len(text):
            char = text[i]
            if char == "\\" and i + 1 < len(text):
                chars.append(text[i + 1])
                i += 2
                continue
            if char == '"':
                break
            chars.append(char)
            i += 1
        else:
            raise SipParseError(f"address {text[:80]!r}: unterminated quoted display name")
        display = "".join(chars)
        rest = text[i + 1 :].strip()
        if not rest.startswith("<"):
            raise SipParseError(f"address {text[:80]!r}: expected '<' after the display name")
    if "<" in rest:
        before, _, after = rest.partition("<")
        uri, closed, params = after.partition(">")
        if not closed:
            raise SipParseError(f"address {text[:80]!r}: missing '>'")
        if not display:
            display = before.strip()
        return NameAddr(uri.strip(), display, parse_params(params.strip().lstrip(";")))
    # addr-spec without brackets: parameters after the URI belong to the header (RFC 3261 §20.10)
    uri, _, params = rest.partition(";")
    if " " in uri.strip():
        raise SipParseError(f"address {text[:80]!r}: spaces in a URI without '<>'")
    return NameAddr(uri.strip(), "", parse_params(params))


# --------------------------------------------------------------------------- Via


@dataclass
class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    transport: str
    host: str
    port: int | None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        """The branch parameter (the transaction id when it starts with z9hG4bK)."""
        return self.params.get("branch")

    def sent_by(self) -> str:
        """``host:port`` as the Via says, for transaction matching."""
        return f"{self.host}:{self.port or 5060}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport.upper()} {host}{port}{format_params(self.params)}"


_VIA = re.compile(r"^SIP\s*/\s*2\.0\s*/\s*([A-Za-z]+)\s+(.+)$", re.IGNORECASE)
# The common shape, which the general path below reads the same (checked by a property test):
# upper-case transport, a name or IPv4 host, a port, parameters of token characters.
_PLAIN_VIA = re.compile(
    r"SIP/2\.0/(UDP|TCP|TLS) ([A-Za-z0-9.\-]+):([0-9]{1,5})"
    r"((?:;[A-Za-z0-9.!%*_+`'~\-]+(?:=[A-Za-z0-9.!%*_+`'~\-:\[\]]*)?)*)", re.ASCII)


def parse_via(text: str) -> Via:
    """Parse one Via value (use `SipMessage.vias()` for the whole header)."""
    plain = _PLAIN_VIA.fullmatch(text.strip())
    if plain is not None:  # SIP/2.0/UDP host:port;a=b;c, as nearly every Via: one regex
        plain_port = int(plain[3])
        if 0 < plain_port < 65536:
            plain_params: dict[str, str | None] = {}
            for piece in plain[4].split(";")[1:]:
                name, sep, value = piece.partition("=")
                plain_params[name.lower()] = value if sep else None
            return Via(plain[1], plain[2], plain_port, plain_params)
    match = _VIA.match(text.strip())
    if not match:
        raise SipParseError(f"Via {text[:80]!r}: expected 'SIP/2.0/<transport> host[:port]'")
    transport, rest = match.groups()
    hostport, _, params = rest.partition(";")
    if '"' in params:  # a quoted parameter value: split with quotes in mind
        return _parse_via_full(text)
    host, port = _split_hostport(hostport, text)
    # One pass over plain parameters both checks them and builds the dict.
    parsed: dict[str, str | None] = {}
    if params:
        for piece in params.split(";"):
            name, sep, value = piece.partition("=")
            name = name.strip()
            if not name:
                # RFC 3261 §20.42: every via-param has a name (RFC 4475 "badinv01": ";;,;,,")
                raise SipParseError(f"Via {text[:80]!r}: a parameter without a name")
            parsed[name.lower()] = value.strip() if sep else None
    return Via(transport.upper(), host, port, parsed)


def _parse_via_full(text: str) -> Via:
    """`parse_via` for any Via, quoted parameter values included."""
    match = _VIA.match(text.strip())
    if not match:
        raise SipParseError(f"Via {text[:80]!r}: expected 'SIP/2.0/<transport> host[:port]'")
    transport, rest = match.groups()
    hostport, _, params = rest.partition(";")
    host, port = _split_hostport(hostport, text)
    if params and any(not piece.strip().partition("=")[0].strip()
                      for piece in _split_semicolons(params)):
        # RFC 3261 §20.42: every via-param has a name (RFC 4475 "badinv01": ";;,;,,")
        raise SipParseError(f"Via {text[:80]!r}: a parameter without a name")
    return Via(transport.upper(), host, port, _parse_quoted_params(params))


# --------------------------------------------------------------------------- messages


def _lookup_key(name: str) -> str:
    if len(name) <= _CACHED_NAME_LENGTH:
        return _lookup_key_cached(name)
    return canonical_name(name).lower()


@lru_cache(maxsize=512)
def _lookup_key_cached(name: str) -> str:
    return canonical_name(name).lower()


def _spell_header(name: str) -> tuple[str, str] | None:
    """The canonical spelling and lookup key of a header name as read (spaces around it
    allowed), or None when it is not a token."""
    name = name.strip()
    if not _TOKEN.match(name):
        return None
    canonical = canonical_name(name)
    return canonical, canonical.lower()


# Every message of a flood spells the same dozen names: cached, for names of at most
# _CACHED_NAME_LENGTH characters (512 long names would otherwise hold megabytes).
_header_spelling = lru_cache(maxsize=512)(_spell_header)
_CACHED_NAME_LENGTH = 64


_T = TypeVar("_T")


@dataclass(slots=True)
class Header:
    """One header line, name canonicalised."""

    name: str
    value: str
    # The lower-case name used for lookups, computed once (every lookup reads every header).
    key: str = field(init=False, repr=False, compare=False)
    # What was last parsed out of `value` (Via list, name-addr, CSeq…): the value it was parsed
    # from, its kind and the result. Validation parses each header once and the accessors the
    # user agent calls later reuse it; replacing `value` (or the Header, as set/add/remove do)
    # drops it. One kind per header is all a message needs (a Via is read as "vias").
    _parsed: tuple[str, str, object] | None = field(
        default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.key = self.name.lower()

    def parsed(self, kind: str, parse: Callable[[str], _T]) -> _T:
        """`parse(value)`, computed once per value (for one kind); errors raise every time."""
        memo = self._parsed
        if memo is not None and memo[0] is self.value and memo[1] == kind:
            return memo[2]  # type: ignore[return-value]  # stored under `kind` by this `parse`
        result = parse(self.value)
        self._parsed = (self.value, kind, result)
        return result

    def parsed_as(self, kind: str) -> object:
        """What `parsed(kind, …)` stored for the current value, or None."""
        memo = self._parsed
        if memo is not None and memo[0] is self.value and memo[1] == kind:
            return memo[2]
        return None


def _via_list(value: str) -> tuple[Via, ...]:
    if "," not in value:  # one Via per header line, as almost every sender writes them
        value = value.strip()
        return (parse_via(value),) if value else ()
    return tuple([parse_via(v) for v in split_commas(value)])


def _top_via(value: str) -> Via:
    values = split_commas(value)
    if not values:
        raise SipParseError("no Via header")
    return parse_via(values[0])


def _new_header(name: str, value: str) -> Header:
    """`Header(canonical_name(name), value)`; for the usual short names without the dataclass
    init: every response is built header by header (four per call of a ring + CANCEL flood)."""
    if len(name) > _CACHED_NAME_LENGTH:
        return Header(canonical_name(name), value)
    header = object.__new__(Header)
    (header.name, header.key), header.value, header._parsed = _name_and_key(name), value, None
    return header


@lru_cache(maxsize=512)
def _name_and_key(name: str) -> tuple[str, str]:
    canonical = _canonical(name)
    return canonical, canonical.lower()


class SipMessage:
    """Headers and body shared by requests and responses; header lookups ignore case."""

    def __init__(self, headers: Iterable[tuple[str, str]] = (), body: bytes = b"") -> None:
        self.headers: list[Header] = [_new_header(n, v) for n, v in headers]
        self.body = body

    # --- header access
    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header `name`, or `default`."""
        key = _lookup_key(name)
        for header in self.headers:
            if header.key == key:
                return header.value
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, with comma lists split for headers that allow them."""
        key = _lookup_key(name)
        values: list[str] = []
        if key in LIST_HEADERS:
            for header in self.headers:
                if header.key == key:
                    values.extend(split_commas(header.value))
        else:
            values = [header.value for header in self.headers if header.key == key]
        return values

    def _first(self, key: str) -> Header | None:
        """The first header whose lookup key is `key` (lower case, canonical)."""
        for header in self.headers:
            if header.key == key:
                return header
        return None

    def set(self, name: str, value: str) -> None:
        """Replace every `name` header with one value (appended if absent)."""
        new = _new_header(name, value)
        key = new.key
        for i, header in enumerate(self.headers):
            if header.key == key:
                self.headers[i] = new
                if any(h.key == key for h in self.headers[i + 1:]):
                    self.headers = [h for j, h in enumerate(self.headers)
                                    if j <= i or h.key != key]
                return
        self.headers.append(new)

    def add(self, name: str, value: str, *, first: bool = False) -> None:
        """Add a header line (at the top when `first`, as a proxy adds Via)."""
        header = _new_header(name, value)
        if first:
            self.headers.insert(0, header)
        else:
            self.headers.append(header)

    def remove(self, name: str) -> None:
        """Drop every `name` header."""
        key = _lookup_key(name)
        self.headers = [h for h in self.headers if h.key != key]

    # --- typed views
    @property
    def call_id(self) -> str:
        """The Call-ID."""
        return self.get("Call-ID") or ""

    # The typed views parse each header value once (validation already did, for a request
    # from parse_message) and hand out the same objects again: change the message through
    # set/add/remove, which drops what was parsed, not by editing a returned Via or NameAddr.
    def vias(self) -> list[Via]:
        """All Via values, top first."""
        return [via for header in self.headers if header.key == "via"
                for via in header.parsed("vias", _via_list)]

    def top_via(self) -> Via:
        """The topmost Via."""
        first = self._first("via")
        if first is None:
            raise SipParseError("no Via header")
        # Read several times per message (transaction key, responses): parsed once, again
        # only if the top Via header was replaced. The second Via need not be readable.
        every = first.parsed_as("vias")
        if every:  # validation parsed them all: the top one is the first
            return every[0]  # type: ignore[index,no-any-return]
        return first.parsed("top_via", _top_via)

    def from_(self) -> NameAddr:
        """The From header."""
        header = self._first("from")
        return parse_name_addr("") if header is None else header.parsed("addr", parse_name_addr)

    def to(self) -> NameAddr:
        """The To header."""
        header = self._first("to")
        return parse_name_addr("") if header is None else header.parsed("addr", parse_name_addr)

    def cseq(self) -> tuple[int, str]:
        """CSeq number and method."""
        header = self._first("cseq")
        return parse_cseq("") if header is None else header.parsed("cseq", parse_cseq)

    @property
    def content_type(self) -> str:
        """The media type of the body, lower case, without parameters."""
        return (self.get("Content-Type") or "").split(";")[0].strip().lower()

    def body_text(self) -> str:
        """The body decoded as UTF-8 (undecodable bytes replaced)."""
        return self.body.decode("utf-8", errors="replace")

    # --- serialising
    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise with a correct Content-Length."""
        self.set("Content-Length", str(len(self.body)))
        lines = [self._start_line()]
        lines += [f"{h.name}: {h.value}" for h in self.headers]
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class SipRequest(SipMessage):
    """A request: method, Request-URI, headers, body."""

    def __init__(
        self, method: str, uri: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.method = method
        self.uri = uri

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {SIP_VERSION}"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri} call-id={self.call_id!r}>"


class SipResponse(SipMessage):
    """A response: status code, reason phrase, headers, body."""

    def __init__(
        self, status: int, reason: str, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = reason

    def _start_line(self) -> str:
        return f"{SIP_VERSION} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason} call-id={self.call_id!r}>"


def parse_cseq(value: str) -> tuple[int, str]:
    """Parse ``CSeq: 42 INVITE``."""
    # A flood repeats the same few CSeq values ("1 INVITE", "1 ACK"), and the answer is an
    # immutable tuple: a small cache of short ones (a refusal raises, so is never cached).
    return _cached_cseq(value) if len(value) <= 40 else _parse_cseq(value)


def _parse_cseq(value: str) -> tuple[int, str]:
    parts = value.split()
    if (len(parts) != 2 or not (parts[0].isascii() and parts[0].isdigit())
            or not _TOKEN.match(parts[1])):
        raise SipParseError(f"CSeq {value[:40]!r}: expected '<number> <METHOD>'")
    number = int(parts[0]) if len(parts[0]) <= MAX_DIGITS else None
    if number is None or number >= 2**31:
        raise SipParseError(f"CSeq {value[:40]!r}: the number must be below 2**31")
    return number, parts[1].upper()


_cached_cseq = lru_cache(maxsize=128)(_parse_cseq)


def _split_head_body(data: bytes) -> tuple[bytes, bytes]:
    head, crlf_crlf, body = data.partition(b"\r\n\r\n")
    # Only an LF LF inside what precedes the first CRLF CRLF ends the headers earlier (none
    # straddles it): the usual message is split in one pass, its body never searched.
    if crlf_crlf and b"\n\n" not in head:
        return head, body
    crlf = len(head) if crlf_crlf else -1
    lf = data.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return data[:crlf], data[crlf + 4 :]
    if lf >= 0:
        return data[:lf], data[lf + 2 :]
    return data, b""


def parse_message(data: bytes, *, stream: bool = False) -> SipRequest | SipResponse:
    """Parse one SIP message; raise SipParseError with a precise message if we refuse it.

    `stream` is true for TCP, where the framer has already cut the body to Content-Length.
    A request refused after its headers were read carries itself and the status to answer
    (`SipParseError.request`, `.status`); anything else is to be dropped.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise SipParseError(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    stripped = data.lstrip(b"\r\n")  # RFC 3261 §7.5: ignore blank lines before the start line
    if not stripped:
        raise SipParseError("empty message")
    head, body = _split_head_body(stripped)
    if b"\x00" in head and not _nul_only_in_quoted_pairs(head):
        raise SipParseError("NUL byte in the header section")
    text = head.decode("utf-8", errors="replace")
    lines = text.split("\r\n")
    if text.count("\n") != len(lines) - 1 or text.count("\r") != len(lines) - 1:
        lines = _LINE_BREAK.split(text)  # a bare LF or CR somewhere: any of the three ends a line
    start = lines[0].strip()
    found = _read_headers(lines)
    headers, problem = found.headers, found.problem

    parts = start.split()
    if (parts and parts[0].upper().startswith("SIP/")) or _STATUS_LINE.match(start):
        if problem:
            raise SipParseError(problem)
        return _response(start, found, body, stream)
    if len(parts) != 3:
        raise SipParseError(f"start line {start[:80]!r}: expected 'METHOD URI SIP/2.0'",
                            request=_partial_request(parts, headers))
    method, uri, version = parts
    request = SipRequest(method, uri)
    request.headers = headers
    if version.upper() != SIP_VERSION:
        if _SIP_VERSION.match(version):  # a SIP we do not speak (RFC 4475 "badvers")
            raise SipParseError(f"start line {start[:80]!r}: unsupported version "
                                f"{version[:20]!r}", status=505, request=request)
        raise SipParseError(f"start line {start[:80]!r}: unsupported version {version[:20]!r}",
                            request=request)
    try:
        if problem:
            raise SipParseError(problem)
        if not _TOKEN.match(method):
            raise SipParseError(f"start line {start[:80]!r}: invalid method {method[:20]!r}")
        _check_request_uri(uri)
        _check_content_length(request, found, body, stream)
        _check_request(request, found)
    except SipParseError as exc:
        exc.request = request
        raise
    return request


@dataclass(slots=True)
class _Headers:
    """The header lines of a message as read, and what validation needs to know of them."""

    headers: list[Header]
    first: dict[str, Header]  # the first header of each lookup key
    repeated: set[str]  # the keys of headers that appear more than once
    problem: str | None  # the first bad header line: answered once we know the sender


def _read_headers(lines: list[str]) -> _Headers:
    """Header objects from the lines after the start line, noting the first of each name and
    which repeat in the same pass: validation then looks nothing up again."""
    headers: list[Header] = []
    first: dict[str, Header] = {}
    repeated: set[str] = set()
    problem: str | None = None
    spelled = _header_spelling
    new = object.__new__
    for number, line in enumerate(lines[1:], start=2):
        if not line:
            continue
        if line[0] in " \t":
            folded = line.strip()
            if not folded:
                continue
            if not headers:
                problem = problem or f"line {number}: continuation line before any header"
                continue
            headers[-1].value = f"{headers[-1].value} {folded}".strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            if line.strip():  # a line of other white space (form feed…) is blank too
                problem = problem or f"line {number}: header without ':': {line[:60]!r}"
            continue
        spelling = spelled(name) if len(name) <= _CACHED_NAME_LENGTH else _spell_header(name)
        if spelling is None:
            problem = problem or f"line {number}: invalid header name {name.strip()[:40]!r}"
            continue
        # Header(name, value) without its __init__ and __post_init__: the key is known, and
        # this runs for every line of every message of a flood.
        header = new(Header)
        header.name, header.key, header.value, header._parsed = (
            spelling[0], spelling[1], value.strip(), None)
        headers.append(header)
        if header.key in first:
            repeated.add(header.key)
        else:
            first[header.key] = header
        if len(headers) > MAX_HEADERS:
            raise SipParseError(f"more than {MAX_HEADERS} headers")
    return _Headers(headers, first, repeated, problem)


def _response(start: str, found: _Headers, body: bytes, stream: bool) -> SipResponse:
    status_match = _STATUS_LINE.match(start)
    if not status_match:
        raise SipParseError(f"status line {start[:80]!r}: expected 'SIP/2.0 <code> <reason>'")
    code = int(status_match.group(1))
    if not 100 <= code <= 699:
        raise SipParseError(f"status code {code} is outside 100-699")
    message = SipResponse(code, (status_match.group(2) or "").strip())
    message.headers = found.headers
    _check_content_length(message, found, body, stream)
    for key in ("via", "call-id", "cseq"):
        if key not in found.first:
            raise SipParseError(f"response {message.status}: missing {canonical_name(key)}")
    message.cseq()
    return message


def _partial_request(parts: list[str], headers: list[Header]) -> SipRequest | None:
    """A request whose start line is wrong but whose sender we can still answer (400)."""
    if not parts or not _TOKEN.match(parts[0]) or not _SIP_VERSION.match(parts[-1]):
        return None  # not even shaped like a request line: nothing to answer
    request = SipRequest(parts[0], " ".join(parts[1:-1]))
    request.headers = headers
    return request


def _nul_only_in_quoted_pairs(head: bytes) -> bool:
    """Whether every NUL is an escaped character inside a quoted string (RFC 3261 §25.1
    quoted-pair; RFC 4475 "intmeth" puts one in a display name)."""
    in_quotes = escaped = False
    for byte in head:
        if escaped:
            escaped = False
            continue
        if byte == 0:
            return False
        if in_quotes and byte == 0x5C:  # backslash
            escaped = True
        elif byte == 0x22:  # double quote
            in_quotes = not in_quotes
        elif byte == 0x0A:
            in_quotes = False  # a quoted string never runs past the end of its header line
    return True


def _check_request_uri(uri: str) -> None:
    """Refuse a Request-URI we cannot be reached at: 416 for another scheme, else 400."""
    # A flood, like every call to the line, names the same few URIs: remember the good ones
    # (a bounded cache of short strings; a refusal raises, so it is never cached).
    if len(uri) <= _CACHED_URI_LENGTH:
        _check_request_uri_cached(uri)
    else:
        _check_request_uri_uncached(uri)


_CACHED_URI_LENGTH = 256


def _check_request_uri_uncached(uri: str) -> None:
    scheme, colon, _ = uri.partition(":")
    if not colon or not _SCHEME.match(scheme):
        raise SipParseError(f"Request-URI {uri[:80]!r} does not start with a scheme")
    if scheme.lower() not in URI_SCHEMES:
        raise SipParseError(f"Request-URI scheme {scheme[:20]!r} is not sip, sips or tel",
                            status=416)
    # Escaped headers (RFC 4475 "escruri") are ignored, as the RFC allows: we route nothing by
    # the Request-URI, and a 400 would leave the fork unscreened.
    parse_uri(uri)


_check_request_uri_cached = lru_cache(maxsize=64)(_check_request_uri_uncached)


def _check_content_length(message: SipMessage, found: _Headers, body: bytes,
                          stream: bool) -> None:
    if "content-length" in found.repeated:
        values = {h.value.strip() for h in found.headers if h.key == "content-length"}
    elif "content-length" in found.first:
        values = {found.first["content-length"].value.strip()}
    else:
        values = set()
    if len(values) > 1:
        raise SipParseError(f"conflicting Content-Length headers: {sorted(values)}")
    if not values:
        # Stream transports must say how long the body is; datagrams end where they end.
        if stream and body:
            raise SipParseError("Content-Length is required on a stream transport")
        message.body = body
        return
    text = values.pop()
    length = ascii_number(text)
    if length is None:
        raise SipParseError(f"Content-Length {text[:20]!r} is not a number")
    if length > len(body):
        raise SipParseError(f"truncated body: Content-Length {length}, only {len(body)} bytes")
    message.body = body[:length]  # RFC 3261 §18.3: bytes past Content-Length are discarded


def _check_request(request: SipRequest, found: _Headers) -> None:
    # What is parsed here stays on the header for the accessors the user agent calls next.
    first, repeated = found.first, found.repeated
    for key in REQUIRED_REQUEST_HEADERS:
        if key not in first or not first[key].value:
            raise SipParseError(f"{request.method} request: missing {canonical_name(key)} header")
    if repeated:
        for key in SINGLE_HEADERS:
            if key in repeated:  # RFC 4475 "multi01"
                raise SipParseError(f"{canonical_name(key)} appears more than once")
    _, method = first["cseq"].parsed("cseq", parse_cseq)
    if method != request.method.upper():
        raise SipParseError(
            f"CSeq method {method!r} does not match the request method {request.method!r}"
        )
    # Every Via, not only the top one: responses may travel back along them.
    if "via" in repeated:
        request.vias()
    else:
        first["via"].parsed("vias", _via_list)
    first["from"].parsed("addr", parse_name_addr)
    first["to"].parsed("addr", parse_name_addr)
    if "max-forwards" in first:
        max_forwards = first["max-forwards"].value
        hops = ascii_number(max_forwards)  # "0068" is fine (RFC 4475 "wsinv")
        if hops is None or hops > 255:
            raise SipParseError(f"Max-Forwards {max_forwards[:20]!r} is not a number 0-255")


def header_params_text(value: str) -> dict[str, str | None]:
    """Parameters of a simple header like ``Reason: SIP;cause=200;text="x"``."""
    _, _, params = value.partition(";")
    return parse_params(params)
