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

from gateway.config import Settings
from gateway.notify.email import EmailChannel
from gateway.notify.message import ERROR_LIMIT, Channel, Message, SendError

log = logging.getLogger(__name__)

# apprise services whose messages end up as SMS: they get the short SMS text, split into
# parts, instead of the full digest (a 2 kB digest would cost a dozen SMS, or be cut).
SMS_SCHEMES = frozenset({
    "freemobile", "twilio", "sns", "clicksend", "bulksms", "bulkvs", "burstsms", "d7sms",
    "httpsms", "kavenegar", "msg91", "msgbird", "plivo", "seven", "sinch", "smseagle",
    "smsmgr", "vonage", "nexmo", "signal", "signals", "dapnet",
})
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
    channels: list[Channel] = []
    if settings.notify.smtp.host:
        channels.append(EmailChannel(settings.notify.smtp))
    channels.extend(AppriseChannel(url) for url in settings.notify.apprise_urls)
    return channels


__all__ = ["ERROR_LIMIT", "AppriseChannel", "Channel", "Message", "SendError",
           "apprise_channel_name", "configured_channels"]
