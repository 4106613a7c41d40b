"""Digest authentication against RFC test vectors and our own round trips."""

from __future__ import annotations

import hashlib

import pytest

from gateway.sip.digest import DigestError, authorization, best_challenge, parse_challenge
from gateway.sip.message import parse_params, split_commas


def fields(value: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in split_commas(value.removeprefix("Digest ")):
        out.update(parse_params(item))
    return out


def test_rfc2617_md5_vector() -> None:
    """RFC 2617 §3.5's example, adapted only in method and URI semantics (HTTP there)."""
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = authorization(challenge, method="GET", uri="/dir/index.html", username="Mufasa",
                          password="Circle Of Life", cnonce="0a4f113b")
    assert fields(value)["response"] == "6629fae49393a05397450978507c4ef1"
    assert fields(value)["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"


def test_sha256_and_preference() -> None:
    challenge = best_challenge([
        'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"',
        'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"',
    ])
    assert challenge.algorithm == "SHA-256"
    value = authorization(challenge, method="REGISTER", uri="sip:r", username="u",
                          password="p", cnonce="c", nonce_count=2)

    def h(text: str) -> str:
        return hashlib.sha256(text.encode()).hexdigest()

    expected = h(f"{h('u:r:p')}:n2:00000002:c:auth:{h('REGISTER:sip:r')}")
    assert fields(value)["response"] == expected
    assert fields(value)["nc"] == "00000002"


def test_no_qop_and_errors() -> None:
    challenge = parse_challenge('Digest realm="r", nonce="n", stale=TRUE')
    assert challenge.stale
    value = authorization(challenge, method="REGISTER", uri="sip:r", username="u", password="p")

    def h(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    assert fields(value)["response"] == h(f"{h('u:r:p')}:n:{h('REGISTER:sip:r')}")
    with pytest.raises(DigestError, match="scheme"):
        parse_challenge('Basic realm="r"')
    with pytest.raises(DigestError, match="algorithm"):
        parse_challenge('Digest realm="r", nonce="n", algorithm=SHA-512-256-sess')
    with pytest.raises(DigestError, match="qop"):
        authorization(parse_challenge('Digest realm="r", nonce="n", qop="auth-int"'),
                      method="REGISTER", uri="sip:r", username="u", password="p")
