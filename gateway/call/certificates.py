"""STIR/SHAKEN signers' certificates and the ES256 check of a PASSporT (the `cryptography`
adapter: no other module imports it).

A certificate is trusted for where it came from: the owner's folder (`[stir]
certificates_dir`), or a URL under one of `[stir] certificate_urls` (the certificate
repositories the owner chose). The chain up to an STI-CA is not checked. A call never waits on
the network for more than `wait_ms`: a download runs on a thread of its own, at most
`MAX_FETCHES` at once and once per URL, and the certificate it brings is kept in memory for
the calls after. Nothing is written to disk.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from gateway.config import StirConfig
from gateway.screening.caller import Signature

log = logging.getLogger(__name__)

MAX_CERTIFICATE_BYTES = 64 * 1024  # a SHAKEN certificate (and its chain) is a few KiB
MAX_CACHED = 64  # certificates (or failures) kept in memory, the oldest dropped first
MAX_FETCHES = 4  # downloads at once: a storm of spoofed calls cannot start more
FAILURE_SECONDS = 600.0  # a URL that failed is not fetched again for this long
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,128}")


@dataclass
class _Entry:
    certificate: x509.Certificate | None  # None: the download or the file failed
    until: float  # monotonic; only failures expire


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead outside the allowed URLs: refuse it."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _first_certificate(data: bytes) -> x509.Certificate:
    """The signer's certificate: the first of a PEM chain, or a DER file."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)[0]
    return x509.load_der_x509_certificate(data)


def fetch_certificate(url: str, timeout: float) -> bytes:
    """Download `url` (no redirects, at most MAX_CERTIFICATE_BYTES); OSError on failure."""
    # No proxy from the environment: the URL is the owner's choice, and so is the route.
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.ProxyHandler({}))
    if not url.startswith(("https://", "http://")):  # never file: or ftp:
        raise OSError(f"not an http(s) URL: {url!r}")
    accept = {"Accept": "application/pem-certificate-chain"}
    request = urllib.request.Request(url, headers=accept)  # noqa: S310 - http(s) checked above
    with opener.open(request, timeout=timeout) as response:
        if response.status != 200:
            raise OSError(f"HTTP {response.status}")
        data: bytes = response.read(MAX_CERTIFICATE_BYTES + 1)
    if len(data) > MAX_CERTIFICATE_BYTES:
        raise OSError(f"larger than {MAX_CERTIFICATE_BYTES} bytes")
    return data


def verify_es256(certificate: x509.Certificate, signed: bytes, signature: bytes,
                 now: datetime) -> Signature:
    """Check a raw ES256 signature (r || s, 64 bytes) with `certificate`, in force at `now`."""
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return Signature.UNUSABLE
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        return Signature.UNUSABLE
    if len(signature) != 64:
        return Signature.INVALID
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, signed, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return Signature.INVALID
    return Signature.VERIFIED


class Certificates:
    """Finds a signer's certificate (the folder, the memory, a download) and checks with it."""

    def __init__(self, config: StirConfig, *,
                 fetch: Callable[[str, float], bytes] = fetch_certificate) -> None:
        self.config = config
        self._fetch = fetch
        self._lock = threading.Lock()
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._fetching: dict[str, threading.Event] = {}

    def __call__(self, x5u: str, signed: bytes, signature: bytes, now: datetime) -> Signature:
        """What became of `signature` (a CheckSignature); never raises, waits ≤ wait_ms."""
        try:
            certificate = self._certificate(x5u)
        except Exception:  # a broken file or a library surprise: the call goes on unverified
            log.exception("certificate for %r could not be used", x5u)
            return Signature.UNUSABLE
        if isinstance(certificate, Signature):
            return certificate
        try:
            return verify_es256(certificate, signed, signature, now)
        except Exception:
            log.exception("checking a PASSporT signed by %r failed", x5u)
            return Signature.UNUSABLE

    def _certificate(self, x5u: str) -> x509.Certificate | Signature:
        local = self._local(x5u)
        if local is not None:
            return local
        if not self.allowed(x5u):
            return Signature.NO_CERTIFICATE
        with self._lock:
            entry = self._cache.get(x5u)
            if entry is not None and (entry.certificate is not None
                                      or entry.until > time.monotonic()):
                self._cache.move_to_end(x5u)
                return entry.certificate or Signature.UNUSABLE
            done = self._fetching.get(x5u)
            if done is None:
                if len(self._fetching) >= MAX_FETCHES:
                    return Signature.PENDING
                done = self._fetching[x5u] = threading.Event()
                threading.Thread(target=self._download, args=(x5u, done), daemon=True,
                                 name="stir-fetch").start()
        if not done.wait(self.config.wait_ms / 1000):
            return Signature.PENDING
        with self._lock:
            entry = self._cache.get(x5u)
        if entry is None:
            return Signature.PENDING  # pragma: no cover - set before the event
        return entry.certificate or Signature.UNUSABLE

    def allowed(self, url: str) -> bool:
        """Whether `url` lies under one of the configured certificate URLs."""
        return any(url.startswith(prefix) for prefix in self.config.certificate_urls)

    def _local(self, x5u: str) -> x509.Certificate | None:
        folder = self.config.certificates_dir
        if folder is None:
            return None
        name = Path(urlsplit(x5u).path).name
        if not _SAFE_NAME.fullmatch(name) or name.startswith("."):
            return None
        path = folder / name
        if not path.is_file():
            return None
        with self._lock:
            entry = self._cache.get(f"file:{path}")
        if entry is not None and entry.certificate is not None:
            return entry.certificate
        certificate = _first_certificate(path.read_bytes()[:MAX_CERTIFICATE_BYTES])
        self._keep(f"file:{path}", certificate)
        return certificate

    def _download(self, x5u: str, done: threading.Event) -> None:
        certificate: x509.Certificate | None = None
        try:
            data = self._fetch(x5u, self.config.fetch_timeout_ms / 1000)
            certificate = _first_certificate(data)
        except Exception as exc:  # any failure: unverified for a while, then tried again
            log.warning("could not fetch the STIR/SHAKEN certificate %r: %s", x5u, exc)
        finally:
            self._keep(x5u, certificate)
            with self._lock:
                self._fetching.pop(x5u, None)
            done.set()

    def _keep(self, key: str, certificate: x509.Certificate | None) -> None:
        with self._lock:
            self._cache[key] = _Entry(certificate, time.monotonic() + FAILURE_SECONDS)
            self._cache.move_to_end(key)
            while len(self._cache) > MAX_CACHED:
                self._cache.popitem(last=False)
