"""Real-shaped STIR/SHAKEN Identity headers for tests: a P-256 key and certificate the test
makes, PASSporTs signed with it (RFC 8225 JWS, ES256), and ways to spoil them."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Signer:
    """A service provider's signing key and its (self-signed) STI certificate."""

    x5u: str = "https://cr.example.org/sp-1234.pem"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def certificate(self, *, days: int = 365) -> x509.Certificate:
        """A certificate for the key, in force from yesterday for `days`."""
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SHAKEN 1234 test")])
        return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(1234)
                .not_valid_before(self.now - timedelta(days=1))
                .not_valid_after(self.now + timedelta(days=days))
                .sign(self.key, hashes.SHA256()))

    def pem(self, **kwargs: Any) -> bytes:
        """The certificate as a PEM file."""
        return self.certificate(**kwargs).public_bytes(serialization.Encoding.PEM)

    def passport(self, orig: str = "33612345678", *, attest: str = "C",
                 dest: str = "33162000000", iat: int | None = None,
                 header: dict[str, Any] | None = None, claims: dict[str, Any] | None = None,
                 params: str | None = None) -> str:
        """An Identity header value: header.claims.signature;info=<x5u>;alg=ES256;ppt=shaken."""
        jws_header = {"alg": "ES256", "typ": "passport", "ppt": "shaken", "x5u": self.x5u,
                      **(header or {})}
        jws_claims = {"attest": attest, "dest": {"tn": [dest]},
                      "iat": int(self.now.timestamp()) if iat is None else iat,
                      "orig": {"tn": orig}, "origid": "123e4567-e89b-12d3-a456-426655440000",
                      **(claims or {})}
        signed = (b64url(json.dumps(jws_header, separators=(",", ":")).encode()) + "."
                  + b64url(json.dumps(jws_claims, separators=(",", ":")).encode()))
        r, s = decode_dss_signature(self.key.sign(signed.encode(), ec.ECDSA(hashes.SHA256())))
        signature = b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        tail = f";info=<{self.x5u}>;alg=ES256;ppt=shaken" if params is None else params
        return f"{signed}.{signature}{tail}"


def tamper(identity: str) -> str:
    """The same header with one claim changed after signing (the attestation C made A)."""
    token, sep, params = identity.partition(";")
    head, claims, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))
    data["attest"] = "A"
    return f"{head}.{b64url(json.dumps(data).encode())}.{signature}{sep}{params}"
