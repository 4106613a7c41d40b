"""Email over SMTP: STARTTLS, implicit TLS (SSL) or plain for a LAN relay, with optional auth."""

from __future__ import annotations

import mimetypes
import smtplib
import ssl
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Any

from gateway.config import SmtpConfig
from gateway.notify.message import Message, SendError

MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024  # most providers refuse mails above 10-25 MB


def build_email(smtp: SmtpConfig, message: Message) -> EmailMessage:
    """A multipart text + HTML email (mixed when there are attachments)."""
    mail = EmailMessage()
    mail["Subject"] = message.subject
    mail["From"] = smtp.sender
    mail["To"] = ", ".join(smtp.recipients)
    mail["Date"] = formatdate(localtime=False)
    domain = smtp.sender.rpartition("@")[2] or "ringfence.local"
    mail["Message-ID"] = make_msgid(domain=domain)
    # RFC 3834: keeps vacation auto-replies from answering the digest.
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.text, charset="utf-8")
    if message.html:
        mail.add_alternative(message.html, subtype="html", charset="utf-8")
    for name in message.attachments:
        path = Path(name)
        try:
            if path.stat().st_size > MAX_ATTACHMENT_BYTES:
                continue  # the alert text still says a message is waiting
            data = path.read_bytes()
        except OSError:
            continue  # deleted by retention between the alert and a retry
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        maintype, _, subtype = ctype.partition("/")
        mail.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    return mail


def _tls_context(smtp: SmtpConfig) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if smtp.ca_file is not None:
        context.load_verify_locations(cafile=str(smtp.ca_file))
    return context


def _response_error(code: int, text: bytes | str, what: str) -> SendError:
    shown = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    # 5xx is the server's final word (bad login, refused sender or recipient): retrying the
    # same mail would only hammer it. 4xx is temporary by definition.
    return SendError(f"SMTP {what}: {code} {shown}".strip(), permanent=500 <= code < 600)


class _BeforeData:
    """An SMTP client that calls `before_data` right before the DATA command.

    `send_message` runs MAIL and RCPT, then `data()`: up to there the server cannot have the
    message, so a send interrupted earlier may safely be tried again.
    """

    before_data: Callable[[], None] | None = None

    def data(self, msg: Any) -> tuple[int, bytes]:
        """DATA, once `before_data` has recorded that the message may now reach the server."""
        if self.before_data is not None:
            self.before_data()
        result: tuple[int, bytes] = super().data(msg)  # type: ignore[misc]
        return result


class _SMTP(_BeforeData, smtplib.SMTP):
    pass


class _SMTPSSL(_BeforeData, smtplib.SMTP_SSL):
    pass


class EmailChannel:
    """Sends messages to the configured recipients."""

    def __init__(self, smtp: SmtpConfig) -> None:
        self.smtp = smtp

    @property
    def name(self) -> str:
        """Always "email"."""
        return "email"

    def _connect(self) -> _SMTP | _SMTPSSL:
        smtp = self.smtp
        if smtp.security == "ssl":
            return _SMTPSSL(smtp.host, smtp.port, timeout=smtp.timeout,
                            context=_tls_context(smtp))
        client = _SMTP(smtp.host, smtp.port, timeout=smtp.timeout)
        try:
            if smtp.security == "starttls":
                client.starttls(context=_tls_context(smtp))
        except BaseException:
            client.close()
            raise
        return client

    def send(self, message: Message) -> None:
        """Send one email; raise SendError saying what the server said."""
        self.send_staged(message, lambda: None)

    def send_staged(self, message: Message, before_data: Callable[[], None]) -> None:
        """Send one email, calling `before_data` right before DATA; SendError on failure."""
        smtp = self.smtp
        mail = build_email(smtp, message)
        try:
            with self._connect() as client:
                client.before_data = before_data
                if smtp.username:
                    client.login(smtp.username, smtp.password)
                refused = client.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:
            raise _response_error(exc.smtp_code, exc.smtp_error, "login refused") from None
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            text = "; ".join(f"{rcpt}: {code} {msg.decode('utf-8', 'replace')}"
                             for rcpt, (code, msg) in exc.recipients.items())
            raise SendError(f"SMTP recipients refused: {text}",
                            permanent=all(c >= 500 for c in codes)) from None
        except smtplib.SMTPResponseException as exc:
            raise _response_error(exc.smtp_code, exc.smtp_error, "error") from None
        except smtplib.SMTPNotSupportedError as exc:
            # e.g. STARTTLS or AUTH asked of a server that offers neither: a setup problem.
            raise SendError(f"SMTP: {exc} (check notify.smtp.security and username)",
                            permanent=True) from None
        except ssl.SSLCertVerificationError as exc:
            raise SendError(f"TLS certificate not trusted: {exc.verify_message} "
                            "(set notify.smtp.ca_file for a private CA)", permanent=True) from None
        except (smtplib.SMTPException, OSError) as exc:  # OSError covers timeouts
            raise SendError(f"SMTP {smtp.host}:{smtp.port}: {exc or type(exc).__name__}") from None
        if refused:
            text = "; ".join(f"{rcpt}: {code}" for rcpt, (code, _) in refused.items())
            # Some recipients got it; resending would duplicate it for them, so do not retry.
            raise SendError(f"SMTP refused some recipients: {text}", permanent=True)
