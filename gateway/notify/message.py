"""What every channel sends and raises: the message, the channel protocol, the send error."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

ERROR_LIMIT = 500  # characters of a channel's error kept in the notifications table


@dataclass(frozen=True)
class Message:
    """One notification, in every form a channel may want."""

    kind: str  # digest | voicemail | text | burst_start | burst_end | line_down | line_up | test
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


@runtime_checkable
class StagedChannel(Protocol):
    """A channel that can say when the message itself starts to leave (SMTP's DATA).

    `send_staged` calls `before_data` (which records it) right before that step: a send
    interrupted earlier may be retried without risk of a double.
    """

    @property
    def name(self) -> str:
        """As Channel.name."""
        ...

    def send(self, message: Message) -> None:
        """As Channel.send."""
        ...

    def send_staged(self, message: Message, before_data: Callable[[], None]) -> None:
        """Send; call `before_data` just before the message may reach the server."""
        ...
