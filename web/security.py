"""Owner authentication: password and API token hashes, session secret, CSRF, login throttle.

Ringfence has one owner, so there is no user table: the password hash, the API token hash and
an "auth epoch" live in the `settings` table under `web_` keys (`store.runtime.get_private`).
Each login also gets a row in `web_sessions` (`store.web_sessions`), named by a random id in
the signed cookie: logout deletes the row, a new password bumps the epoch and deletes them all,
so a copied cookie stops working on the server, not only in the owner's browser.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from gateway.config import Settings
from gateway.store import Store
from gateway.store.settings import API_TOKEN_KEY, EPOCH_KEY, PASSWORD_KEY

MIN_PASSWORD_LENGTH = 10
LANGUAGE_KEY = "web_language"  # the owner's last chosen UI language, for new sessions

# scrypt with n=2**14, r=8 needs 16 MiB and ~50 ms on a Raspberry Pi 4: slow for a guesser,
# quick enough for one owner logging in.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class PasswordError(ValueError):
    """A new password is not acceptable; the message says why."""


def hash_password(password: str) -> str:
    """Hash a password with scrypt and a random salt, as one storable string."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R,
                            p=_SCRYPT_P, dklen=32)
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    """Check a password against a stored hash in constant time."""
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt_hex),
                                n=int(n), r=int(r), p=int(p), dklen=len(digest_hex) // 2)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest.hex(), digest_hex)


def check_new_password(password: str, confirm: str | None = None) -> None:
    """Raise PasswordError if a new password is too short or the two copies differ."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise PasswordError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if confirm is not None and password != confirm:
        raise PasswordError("the two passwords differ")


def token_hash(token: str) -> str:
    """Hash an API token; tokens are long and random, so one SHA-256 is enough."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def password_is_set(store: Store) -> bool:
    """Whether the owner has chosen a password yet."""
    return bool(store.runtime.get_private(PASSWORD_KEY))


def set_password(store: Store, password: str, confirm: str | None = None) -> None:
    """Validate and store a new owner password, logging out every existing session."""
    check_new_password(password, confirm)
    store.runtime.set_private(PASSWORD_KEY, hash_password(password))
    store.runtime.set_private(EPOCH_KEY, secrets.token_hex(8))
    store.web_sessions.end_all()


def check_password(store: Store, password: str) -> bool:
    """Whether `password` is the owner's."""
    stored = store.runtime.get_private(PASSWORD_KEY)
    return bool(stored) and verify_password(password, str(stored))


def auth_epoch(store: Store) -> str:
    """The current auth epoch; sessions from another epoch are logged out."""
    return str(store.runtime.get_private(EPOCH_KEY) or "")


def new_api_token(store: Store) -> str:
    """Create a new API token, store only its hash and return it (shown once)."""
    token = "rf_" + secrets.token_urlsafe(32)
    store.runtime.set_private(API_TOKEN_KEY, token_hash(token))
    return token


def revoke_api_token(store: Store) -> None:
    """Forget the API token so no bearer call is accepted."""
    store.runtime.set_private(API_TOKEN_KEY, None)


def api_token_is_set(store: Store) -> bool:
    """Whether an API token was created in the UI or CLI."""
    return bool(store.runtime.get_private(API_TOKEN_KEY))


def check_api_token(store: Store, token: str, file_hash: str | None = None) -> bool:
    """Whether `token` is the stored API token (or the one in `web.api_token_file`)."""
    if not token:
        return False
    given = token_hash(token)
    stored = store.runtime.get_private(API_TOKEN_KEY)
    ok = bool(stored) and hmac.compare_digest(given, str(stored))
    if file_hash:
        ok = hmac.compare_digest(given, file_hash) or ok
    return ok


def read_api_token_file(path: Path | None) -> str | None:
    """Hash of the token in `web.api_token_file`, or None when there is none."""
    if path is None:
        return None
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token_hash(token) if token else None


# ---------------------------------------------------------------------------- session secret


def secret_key_path(settings: Settings) -> Path:
    """Where the session secret lives."""
    return settings.web.secret_key_file or settings.data_dir / "web-secret"


def load_secret_key(settings: Settings) -> str:
    """Read the session secret, creating it (mode 0600) on first start."""
    path = secret_key_path(settings)
    try:
        text = path.read_text(encoding="utf-8").strip()
        if len(text) >= 32:
            return text
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    # O_EXCL: if two processes start at once, one creates it and the other reads it back.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        text = path.read_text(encoding="utf-8").strip()
        if len(text) < 32:
            raise ValueError(
                f"web.secret_key_file {str(path)!r} holds fewer than 32 characters"
            ) from None
        return text
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(secret + "\n")
    return secret


def new_csrf_token() -> str:
    """A random CSRF token for one session."""
    return secrets.token_urlsafe(24)


def csrf_matches(expected: str | None, given: str | None) -> bool:
    """Compare CSRF tokens in constant time."""
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


# ---------------------------------------------------------------------------- login throttle


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


@dataclass
class LoginThrottle:
    """Failed logins per client address, with exponential lockouts; never against a clean one.

    After `free_failures` failures from one address, each further failure locks that address
    out for `base_seconds * 2**(extra - 1)`, capped at `max_seconds`. Only the address that
    failed is ever locked: an address with no failures always gets its try, so no mix of
    strangers' requests can keep the owner out (a global lock could, with one guess per
    lockout). A distributed guesser is met instead by "guarded" mode: while
    `guard_failures` failures came from everywhere within `guard_seconds`, an address gets no
    free failures, so each stranger is locked after its first wrong guess. In memory, per
    process; at most `max_addresses` addresses are remembered (the least recent go first).
    """

    free_failures: int = 5
    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    guard_failures: int = 50
    guard_seconds: float = 3600.0
    max_addresses: int = 10_000
    clock: Callable[[], float] = time.monotonic
    _by_ip: OrderedDict[str, _Failures] = field(default_factory=OrderedDict)
    _recent: deque[float] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_seconds(self, ip: str) -> float:
        """Seconds before `ip` may try again (0 when it may try now)."""
        now = self.clock()
        with self._lock:
            mine = self._by_ip.get(ip)
            return 0.0 if mine is None else max(0.0, mine.locked_until - now)

    def guarded(self) -> bool:
        """Whether many failures from everywhere put every address on a short leash."""
        now = self.clock()
        with self._lock:
            return self._guarded(now)

    def _guarded(self, now: float) -> bool:
        while self._recent and self._recent[0] <= now - self.guard_seconds:
            self._recent.popleft()
        return len(self._recent) >= self.guard_failures

    def failure(self, ip: str) -> None:
        """Count a failed login from `ip`; lock `ip` (and only it) when it has had enough."""
        now = self.clock()
        with self._lock:
            self._recent.append(now)
            if len(self._recent) > self.guard_failures:  # the window needs no more than this
                self._recent.popleft()
            mine = self._by_ip.pop(ip, None) or _Failures()
            self._by_ip[ip] = mine  # most recent last
            while len(self._by_ip) > self.max_addresses:
                self._by_ip.popitem(last=False)
            mine.count += 1
            free = 0 if self._guarded(now) else self.free_failures
            extra = mine.count - free
            if extra > 0:
                delay = min(self.max_seconds, self.base_seconds * 2 ** min(extra - 1, 32))
                mine.locked_until = max(mine.locked_until, now + delay)

    def success(self, ip: str) -> None:
        """Forget the failures of `ip` after a good login."""
        with self._lock:
            self._by_ip.pop(ip, None)
