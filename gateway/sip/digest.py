"""HTTP digest authentication for SIP (RFC 3261 §22, RFC 7616, RFC 8760): MD5 and SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from gateway.sip.message import parse_params, split_commas

ALGORITHMS = {"MD5": "md5", "MD5-SESS": "md5", "SHA-256": "sha256", "SHA-256-SESS": "sha256"}
PREFERENCE = ("SHA-256", "SHA-256-SESS", "MD5", "MD5-SESS")


class DigestError(ValueError):
    """A challenge we cannot answer."""


@dataclass(frozen=True)
class Challenge:
    """One ``Digest`` challenge from WWW-Authenticate or Proxy-Authenticate."""

    realm: str
    nonce: str
    algorithm: str = "MD5"
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False


def parse_challenge(value: str) -> Challenge:
    """Parse ``Digest realm="x", nonce="y", qop="auth", algorithm=SHA-256``."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"unsupported authentication scheme {scheme[:20]!r}")
    params: dict[str, str | None] = {}
    for item in split_commas(rest):
        params.update(parse_params(item))
    realm, nonce = params.get("realm"), params.get("nonce")
    if realm is None or not nonce:
        raise DigestError("challenge without realm or nonce")
    algorithm = (params.get("algorithm") or "MD5").upper()
    if algorithm not in ALGORITHMS:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}")
    qop = tuple(q.strip().lower() for q in (params.get("qop") or "").split(",") if q.strip())
    stale = (params.get("stale") or "").lower() == "true"
    return Challenge(realm, nonce, algorithm, qop, params.get("opaque"), stale)


def best_challenge(values: list[str]) -> Challenge:
    """Pick the strongest challenge we support among several headers."""
    parsed: list[Challenge] = []
    errors: list[str] = []
    for value in values:
        try:
            parsed.append(parse_challenge(value))
        except DigestError as exc:
            errors.append(str(exc))
    if not parsed:
        raise DigestError("; ".join(errors) or "no challenge")
    return min(parsed, key=lambda c: PREFERENCE.index(c.algorithm))


def _hash(algorithm: str, text: str) -> str:
    return hashlib.new(ALGORITHMS[algorithm], text.encode("utf-8")).hexdigest()


def authorization(
    challenge: Challenge,
    *,
    method: str,
    uri: str,
    username: str,
    password: str,
    nonce_count: int = 1,
    cnonce: str | None = None,
) -> str:
    """The Authorization / Proxy-Authorization value answering `challenge`."""
    algorithm = challenge.algorithm
    cnonce = cnonce or secrets.token_hex(8)
    ha1 = _hash(algorithm, f"{username}:{challenge.realm}:{password}")
    if algorithm.endswith("-SESS"):
        ha1 = _hash(algorithm, f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = _hash(algorithm, f"{method}:{uri}")
    parts = [
        f'username="{username}"', f'realm="{challenge.realm}"', f'nonce="{challenge.nonce}"',
        f'uri="{uri}"',
    ]
    if "auth" in challenge.qop:
        nc = f"{nonce_count:08x}"
        response = _hash(algorithm, f"{ha1}:{challenge.nonce}:{nc}:{cnonce}:auth:{ha2}")
        parts += [f'response="{response}"', f"algorithm={algorithm}", f'cnonce="{cnonce}"',
                  "qop=auth", f"nc={nc}"]
    elif not challenge.qop:
        response = _hash(algorithm, f"{ha1}:{challenge.nonce}:{ha2}")
        parts += [f'response="{response}"', f"algorithm={algorithm}"]
    else:
        raise DigestError(f"unsupported qop {','.join(challenge.qop)!r} (only auth)")
    if challenge.opaque is not None:
        parts.append(f'opaque="{challenge.opaque}"')
    return "Digest " + ", ".join(parts)
