"""Channels that carry notifications: the message type, errors, and apprise for all but email.

Email has its own module (SMTP needs STARTTLS/SSL choices, auth and multipart bodies); every
other channel (Free Mobile, Twilio, ntfy, Gotify, Telegram, json://…) goes through apprise.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import Settings

log = logging.getLogger(__name__)

# apprise services whose messages end up as SMS: they get the short SMS text, split into
# parts, instead of the full digest (a 2 kB digest would cost a dozen SMS, or be cut).
SMS_SCHEMES = frozenset({
    "freemobile", "twilio", "sns", "clicksend", "bulksms", "bulkvs", "burstsms", "d7sms",
    "httpsms", "kavenegar", "msg91", "msgbird", "plivo", "seven", "sinch", "smseagle",
    "smsmgr", "vonage", "nexmo", "signal", "signals", "dapnet",
})
ERROR_LIMIT = 500  # characters of a channel's error kept in the notifications table


@dataclass(frozen=True)
class Message:
    """One notification, in every form a channel may want."""

    kind: str  # digest | voicemail | burst_start | burst_end | line_down | line_up | test
    subject: str
    text: str
    html: str | None = None
    sms: tuple[str, ...] = ()  # short form(s), each at most 160 GSM-7 characters
    attachments: tuple[str, ...] = ()  # absolute file paths (email only)

    def to_payload(self) -> dict[str, Any]:
        """A JSON-ready form, stored so a retry sends exactly what the first try sent."""
        return {"kind": self.kind, "subject": self.subject, "text": self.text,
                "html": self.html, "sms": list(self.sms), "attachments": list(self.attachments)}

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> Message:
        """Rebuild a message stored by `to_payload`."""
        return cls(kind=str(payload["kind"]), subject=str(payload["subject"]),
                   text=str(payload["text"]), html=payload.get("html"),
                   sms=tuple(payload.get("sms") or ()),
                   attachments=tuple(payload.get("attachments") or ()))


class SendError(Exception):
    """A channel could not send; `permanent` means retrying cannot help (bad login, 5xx)."""

    def __init__(self, text: str, *, permanent: bool = False) -> None:
        super().__init__(text[:ERROR_LIMIT])
        self.permanent = permanent


class Channel(Protocol):
    """Something that sends a Message or raises SendError."""

    @property
    def name(self) -> str:
        """A stable, secret-free name such as "email" or "ntfy:1a2b3c4d"."""
        ...

    def send(self, message: Message) -> None:
        """Send, or raise SendError with the channel's own error."""
        ...


def apprise_channel_name(url: str) -> str:
    """"scheme:hash": stable while the URL stays the same, and it shows no token or password."""
    scheme = url.partition("://")[0].lower() or "apprise"
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    return f"{scheme[:40]}:{digest}"


class _Capture(logging.Handler):
    """Collects apprise's warnings and errors: they hold the service's own error text."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


# apprise may send from its own worker threads, so its log records cannot be told apart by
# thread; sending one apprise notification at a time keeps each error with its channel.
_apprise_lock = threading.Lock()


@contextmanager
def _apprise_errors() -> Iterator[_Capture]:
    handler = _Capture()
    logger = logging.getLogger("apprise")
    with _apprise_lock:
        logger.addHandler(handler)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)


class AppriseChannel:
    """One apprise URL."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._name = apprise_channel_name(url)
        self.is_sms = url.partition("://")[0].lower() in SMS_SCHEMES

    @property
    def name(self) -> str:
        """Scheme and URL hash."""
        return self._name

    def send(self, message: Message) -> None:
        """Send through apprise; SMS services get the short text, one notify per part."""
        import apprise  # imported here: it is heavy, and only the sending process needs it

        target = apprise.Apprise()
        if not target.add(self.url):
            raise SendError("apprise cannot use this URL (unknown scheme or missing fields)",
                            permanent=True)
        bodies: list[tuple[str, str]]
        if self.is_sms and message.sms:
            bodies = [("", part) for part in message.sms]
        else:
            bodies = [(message.subject, message.text)]
        for title, body in bodies:
            with _apprise_errors() as capture:
                ok = target.notify(body=body, title=title)
            if not ok:
                raise SendError("; ".join(capture.lines) or "apprise reported a failure")


def configured_channels(settings: Settings) -> list[Channel]:
    """Every channel the configuration sets up (may be empty)."""
    from gateway.notify.email import EmailChannel

    channels: list[Channel] = []
    if settings.notify.smtp.host:
        channels.append(EmailChannel(settings.notify.smtp))
    channels.extend(AppriseChannel(url) for url in settings.notify.apprise_urls)
    return channels
