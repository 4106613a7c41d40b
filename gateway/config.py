"""Load `config.toml` into typed, validated settings.

Every section is a frozen dataclass; the loader walks the dataclass fields, so adding a key means
adding a field (with a `help` in its metadata). An error names the key, the value it found and
what is allowed, in one line, because that line is all an owner sees in `journalctl`.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import os
import tomllib
import types
import typing
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.numbers import is_supported_region
from gateway.screening.caller import InternalNumbers

CONFIG_ENV = "RINGFENCE_CONFIG"


class ConfigError(ValueError):
    """A configuration problem, worded for the owner: it names the key and what is allowed."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class HostPort:
    """An address such as ``127.0.0.1:5060`` or ``[::1]:5060``."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def cannot_listen(what: str, address: HostPort, exc: OSError, setting: str) -> str:
    """Why `address` could not be bound, in words, naming the address and the setting to change.

    "Address already in use" alone sends the owner hunting; the usual cause is a second copy
    of Ringfence (a second `make run`, or the systemd service next to a manual start).
    """
    if exc.errno == errno.EADDRINUSE:
        why = ("the address is already in use: another Ringfence (or another program) is "
               "probably listening there already. Stop it (`systemctl stop ringfence-gateway "
               "ringfence-web`, or Ctrl-C in the terminal of the other `make run`) or change "
               f"{setting} in the configuration")
    elif exc.errno == errno.EACCES:
        why = (f"permission denied (ports below 1024 need extra rights); change {setting} "
               "in the configuration")
    elif exc.errno == errno.EADDRNOTAVAIL:
        why = (f"this machine has no address {address.host}; change {setting} in the "
               "configuration")
    else:
        why = exc.strerror or str(exc)
    return f"cannot listen for {what} on {address}: {why}"


def parse_host_port(text: str, default_port: int | None = None) -> HostPort:
    """Parse ``host:port`` (IPv6 in brackets); raise ValueError saying what is wrong."""
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError("missing ']' after the IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError("expected ':port' after ']'")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:
        raise ValueError("put an IPv6 address in brackets, e.g. [::1]:5060")
    else:
        host, port_text = text, ""
    if not host:
        raise ValueError("the host is empty")
    if not port_text:
        if default_port is None:
            raise ValueError("expected host:port, e.g. 127.0.0.1:5060")
        return HostPort(host, default_port)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
    return HostPort(host, int(port_text))


PassBehaviour = Literal["ring", "busy", "unavailable", "redirect"]
Transport = Literal["udp", "tcp"]
LineKind = Literal["sip", "analogue"]
Language = Literal["fr", "en"]


@dataclass(frozen=True)
class LineConfig:
    """One SIP account that Ringfence registers, next to the owner's phone."""

    name: str = field(metadata=_help("a short name shown in logs and the UI"))
    registrar: HostPort = field(metadata=_help("the registrar, host:port"))
    username: str = field(metadata=_help("the SIP user name (also the auth name by default)"))
    password: str = field(default="", repr=False, metadata=_help("the SIP password"))
    password_file: Path | None = field(
        default=None, metadata=_help("a file holding the password instead of `password`")
    )
    auth_username: str = field(default="", metadata=_help("auth name when it differs"))
    domain: str = field(default="", metadata=_help("SIP domain; defaults to the registrar host"))
    transport: Transport = field(default="udp", metadata=_help("udp or tcp"))
    listen: HostPort = field(
        default=HostPort("0.0.0.0", 5062),  # noqa: S104 - a SIP UA must be reachable
        metadata=_help("local address this line listens on, ip:port"),
    )
    expires: int = field(default=600, metadata=_help("registration lifetime asked for, seconds"))
    pass_behaviour: PassBehaviour = field(
        default="ring",
        metadata=_help("what a passed call gets: ring (stay silent), busy (486), unavailable "
                       "(480) or redirect (302 to redirect_to)"),
    )
    redirect_to: str = field(default="", metadata=_help("SIP URI for pass_behaviour=redirect"))
    refer_to: str = field(
        default="", metadata=_help("extension a passed challenge is transferred to (REFER)")
    )
    kind: LineKind = field(
        default="sip",
        metadata=_help("sip, or analogue when calls come from an FXO adapter on an analogue "
                       "line: a block is answered (SIT and message, then hang up) and a pass "
                       "stays silent, since a refusal would not stop the phones ringing"),
    )


@dataclass(frozen=True)
class GatewayConfig:
    """The SIP side: direct listening and limits."""

    listen: HostPort = field(
        default=HostPort("127.0.0.1", 5060),
        metadata=_help("where direct SIP calls are accepted when no line is configured"),
    )
    public_address: str = field(
        default="", metadata=_help("address to put in Contact/SDP when behind NAT (empty: auto)")
    )
    rtp_ports: str = field(default="10000-10100", metadata=_help("RTP port range, low-high"))
    max_calls: int = field(default=4, metadata=_help(
        "calls answered with media at once (announce, voicemail, challenge); one more of those "
        "gets 600 Busy Everywhere and is logged. Every call is screened and ringing takes none"))
    pass_behaviour: PassBehaviour = field(
        default="ring", metadata=_help("pass behaviour for direct calls (see [[lines]])")
    )
    redirect_to: str = field(default="", metadata=_help("SIP URI for pass_behaviour=redirect"))
    kind: LineKind = field(
        default="sip",
        metadata=_help("the kind of direct calls: sip, or analogue when an FXO adapter sends "
                       "them (see [[lines]])"),
    )
    prompts_dir: Path | None = field(
        default=None, metadata=_help("folder with the owner's own WAV prompts (optional)")
    )
    user_agent: str = field(
        default="Ringfence",
        metadata=_help("the Server and User-Agent header value (empty: none); no version, "
                       "which would only help a scanner"),
    )
    internal_prefixes: tuple[str, ...] = field(
        default=("**",),
        metadata=_help("callers whose number starts so are the router's own (Fritz!Box **610, "
                       "**9): internal calls always ring, unscreened ([] for none)"),
    )
    internal_max_digits: int = field(
        default=3,
        metadata=_help("callers with a number of at most this many digits are internal "
                       "extensions (0: none)"),
    )
    pin_cpu: bool = field(
        default=False,
        metadata=_help("keep the gateway's threads on one CPU core (the last it may use): "
                       "Python runs them one at a time anyway, and moving between cores cost "
                       "a quarter of a refused call's CPU in a flood. For a Pi that runs "
                       "Ringfence alone; off lets the kernel move them"),
    )


@dataclass(frozen=True)
class VoicemailConfig:
    """How long and how much the gateway records."""

    max_seconds: int = field(default=120, metadata=_help("longest message, seconds"))
    silence_seconds: int = field(default=8, metadata=_help("hang up after this much silence"))
    max_total_mb: int = field(default=500, metadata=_help("cap on all voicemails, MiB"))


@dataclass(frozen=True)
class WebConfig:
    """The owner's web UI."""

    listen: HostPort = field(
        default=HostPort("127.0.0.1", 8080),
        metadata=_help("address the UI binds to; a LAN address, never 0.0.0.0 unless you mean it"),
    )
    secret_key_file: Path | None = field(
        default=None, metadata=_help("file with the session secret (created if missing)")
    )
    api_token_file: Path | None = field(
        default=None, metadata=_help("file with the JSON API bearer token (optional)")
    )
    metrics_enabled: bool = field(
        default=False,
        metadata=_help("serve Prometheus metrics at /metrics (no login; keep the UI on the LAN)"),
    )


@dataclass(frozen=True)
class SmtpConfig:
    """Email delivery for digests and alerts."""

    host: str = field(default="", metadata=_help("SMTP server; empty turns email off"))
    port: int = field(default=587, metadata=_help("SMTP port"))
    security: Literal["starttls", "ssl", "plain"] = field(
        default="starttls", metadata=_help("starttls, ssl or plain (LAN relay)")
    )
    username: str = field(default="", metadata=_help("SMTP login (empty: no auth)"))
    password: str = field(default="", repr=False, metadata=_help("SMTP password"))
    password_file: Path | None = field(default=None, metadata=_help("file with the password"))
    sender: str = field(default="", metadata=_help("From address"))
    recipients: tuple[str, ...] = field(default=(), metadata=_help("To addresses"))
    timeout: int = field(default=30, metadata=_help("seconds to wait for the SMTP server"))
    ca_file: Path | None = field(
        default=None,
        metadata=_help("PEM file of a CA to trust, for a LAN relay with its own certificate"),
    )

    def __post_init__(self) -> None:
        if self.host and (not self.sender or not self.recipients):
            raise ConfigError("[notify.smtp] host is set: set sender and recipients too")
        if not 1 <= self.timeout <= 600:
            raise ConfigError(f"notify.smtp.timeout = {self.timeout}: expected 1 to 600 seconds")


@dataclass(frozen=True)
class NotifyConfig:
    """Digests and alerts."""

    digest_time: str = field(default="08:00", metadata=_help("local time of the daily digest"))
    digest_enabled: bool = field(default=True, metadata=_help("send the daily digest"))
    apprise_urls: tuple[str, ...] = field(
        default=(), metadata=_help("apprise URLs (freemobile://, ntfy://, tgram://, json://...)")
    )
    smtp: SmtpConfig = field(default_factory=SmtpConfig, metadata=_help("email settings"))
    alert_voicemail: bool = field(default=True, metadata=_help("alert on each new voicemail"))
    alert_voicemail_attach: bool = field(
        default=False, metadata=_help("attach the WAV to voicemail alert emails")
    )
    alert_burst: bool = field(default=True, metadata=_help("alert when burst mode starts/ends"))
    alert_line_down_minutes: int = field(
        default=10, metadata=_help("alert when a line is unregistered this long (0: never)")
    )
    retry_minutes: tuple[int, ...] = field(
        default=(1, 5, 15, 60, 240),
        metadata=_help("waits between retries of a failed send; then it is given up"),
    )
    sms_max_parts: int = field(
        default=2, metadata=_help("SMS-style channels: most messages one digest may take")
    )

    def __post_init__(self) -> None:
        if not self.retry_minutes or any(m < 1 for m in self.retry_minutes):
            raise ConfigError(
                f"notify.retry_minutes = {list(self.retry_minutes)}: expected a list of "
                "minutes, each at least 1, e.g. [1, 5, 15, 60]"
            )
        if not 1 <= self.sms_max_parts <= 10:
            raise ConfigError(f"notify.sms_max_parts = {self.sms_max_parts}: expected 1 to 10")


@dataclass(frozen=True)
class RetentionConfig:
    """How long the call log and recordings are kept (purged daily)."""

    calls_days: int = field(default=365, metadata=_help("keep calls this many days (0: forever)"))
    voicemail_days: int = field(
        default=90, metadata=_help("keep voicemails this many days (0: until the size cap)")
    )
    notifications_days: int = field(
        default=90, metadata=_help("keep the record of sent notifications this many days")
    )
    time: str = field(default="04:15", metadata=_help("local time of the daily purge, HH:MM"))

    def __post_init__(self) -> None:
        hh, _, mm = self.time.partition(":")
        if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            raise ConfigError(f"retention.time = {self.time!r}: expected HH:MM, e.g. '04:15'")


@dataclass(frozen=True)
class SubscriptionsConfig:
    """Limits for list subscriptions (the subscriptions themselves live in the database)."""

    max_mb: int = field(default=20, metadata=_help("largest list file downloaded, MiB"))
    timeout: int = field(default=60, metadata=_help("longest download, seconds"))
    refresh_hours: int = field(default=24, metadata=_help("default refresh interval, hours"))

    def __post_init__(self) -> None:
        if not 1 <= self.max_mb <= 500:
            raise ConfigError(f"subscriptions.max_mb = {self.max_mb}: expected 1 to 500")
        if not 1 <= self.timeout <= 600:
            raise ConfigError(f"subscriptions.timeout = {self.timeout}: expected 1 to 600")
        if not 1 <= self.refresh_hours <= 24 * 30:
            raise ConfigError(
                f"subscriptions.refresh_hours = {self.refresh_hours}: expected 1 to 720"
            )


@dataclass(frozen=True)
class MessagesConfig:
    """Text messages (SIP MESSAGE): forwarding and rate limits."""

    forward: bool = field(default=False, metadata=_help(
        "send each accepted text to the owner's channels (email, apprise); held and refused "
        "texts are only counted in the digest"))
    per_sender: int = field(default=5, metadata=_help(
        "texts one sender not on the allow list may send within window_minutes; more get 486"))
    window_minutes: int = field(default=10, metadata=_help("the per-sender window, minutes"))
    burst_senders: int = field(default=5, metadata=_help(
        "this many distinct unknown senders within burst_minutes hold strangers' texts "
        "(kept, not forwarded)"))
    burst_minutes: int = field(default=10, metadata=_help("the burst window, minutes"))

    def __post_init__(self) -> None:
        for name in ("per_sender", "window_minutes", "burst_senders", "burst_minutes"):
            value = getattr(self, name)
            if not 1 <= value <= 10_000:
                raise ConfigError(f"messages.{name} = {value}: expected 1 to 10000")


@dataclass(frozen=True)
class StirConfig:
    """Checking the signature of a STIR/SHAKEN PASSporT (an INVITE's Identity header)."""

    certificates_dir: Path | None = field(
        default=None,
        metadata=_help("folder of signers' certificates (PEM), each named after the last part "
                       "of its x5u URL; trusted as they are"),
    )
    certificate_urls: tuple[str, ...] = field(
        default=(),
        metadata=_help("URL prefixes a signer's certificate may be fetched from, e.g. "
                       "'https://cr.example.org/' (empty: never fetch)"),
    )
    fetch_timeout_ms: int = field(
        default=2000, metadata=_help("longest certificate download, ms (in the background)"),
    )
    wait_ms: int = field(
        default=150,
        metadata=_help("how long a call waits for a certificate being fetched, ms; later "
                       "calls use it once it is there"),
    )

    def __post_init__(self) -> None:
        for i, url in enumerate(self.certificate_urls):
            if not url.startswith(("https://", "http://")) or len(url) < 10:
                raise ConfigError(f"stir.certificate_urls[{i}] = {url!r}: expected the start "
                                  "of an https:// URL, e.g. 'https://cr.example.org/'")
        if not 100 <= self.fetch_timeout_ms <= 10000:
            raise ConfigError(f"stir.fetch_timeout_ms = {self.fetch_timeout_ms}: expected 100 "
                              "to 10000")
        if self.wait_ms > 1000:
            raise ConfigError(f"stir.wait_ms = {self.wait_ms}: expected 0 to 1000 (a call "
                              "must not wait on a download)")

    @property
    def checks_signatures(self) -> bool:
        """Whether any certificate can be had (else signatures are left unverified)."""
        return self.certificates_dir is not None or bool(self.certificate_urls)


@dataclass(frozen=True)
class Settings:
    """Everything `config.toml` says, validated."""

    home_region: str = field(default="FR", metadata=_help("ISO country of the line, e.g. FR"))
    timezone: str = field(default="Europe/Paris", metadata=_help("IANA time zone"))
    language: Language = field(default="fr", metadata=_help("fr or en, for prompts and digests"))
    data_dir: Path = field(default=Path("data"), metadata=_help("folder for the database etc."))
    database: str = field(
        default="", metadata=_help("SQLAlchemy URL; empty means SQLite in data_dir")
    )
    log_level: Literal["debug", "info", "warning", "error"] = field(
        default="info", metadata=_help("debug, info, warning or error")
    )
    gateway: GatewayConfig = field(default_factory=GatewayConfig, metadata=_help("SIP side"))
    lines: tuple[LineConfig, ...] = field(default=(), metadata=_help("SIP accounts"))
    voicemail: VoicemailConfig = field(default_factory=VoicemailConfig, metadata=_help("limits"))
    web: WebConfig = field(default_factory=WebConfig, metadata=_help("web UI"))
    notify: NotifyConfig = field(default_factory=NotifyConfig, metadata=_help("notifications"))
    retention: RetentionConfig = field(
        default_factory=RetentionConfig, metadata=_help("how long calls and voicemails are kept")
    )
    subscriptions: SubscriptionsConfig = field(
        default_factory=SubscriptionsConfig, metadata=_help("list subscription limits")
    )
    messages: MessagesConfig = field(
        default_factory=MessagesConfig, metadata=_help("text messages (SIP MESSAGE)")
    )
    stir: StirConfig = field(
        default_factory=StirConfig, metadata=_help("STIR/SHAKEN signature checks")
    )
    source: Path | None = field(default=None, metadata={"internal": "1"})

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL, defaulting to SQLite in the data folder."""
        return self.database or f"sqlite:///{self.data_dir / 'ringfence.db'}"

    @property
    def internal_numbers(self) -> InternalNumbers:
        """The home router's own numbers (`[gateway] internal_prefixes`, `internal_max_digits`)."""
        gw = self.gateway
        return InternalNumbers(gw.internal_prefixes, gw.internal_max_digits)

    @property
    def voicemail_dir(self) -> Path:
        """Where recordings are kept."""
        return self.data_dir / "voicemail"


# --------------------------------------------------------------------------- loading


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if tp is HostPort:
        return 'an address "host:port"'
    if tp is Path:
        return "a path"
    if origin in (types.UnionType, typing.Union):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {bool: "true or false", int: "a whole number", str: "a string"}.get(tp, str(tp))


def _convert(key: str, value: Any, tp: Any, base: Path) -> Any:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if value == "" and type(None) in typing.get_args(tp):
            return None
        return _convert(key, value, inner[0], base)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{key} = {value!r}: expected {_describe(tp)}")
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{key} = {value!r}: expected {_describe(tp)}")
        item_tp = typing.get_args(tp)[0]
        return tuple(_convert(f"{key}[{i}]", v, item_tp, base) for i, v in enumerate(value))
    if tp is HostPort:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected {_describe(tp)}")
        try:
            return parse_host_port(value)
        except ValueError as exc:
            raise ConfigError(f"{key} = {value!r}: {exc}") from None
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a table, found {value!r}")
        return _build(tp, value, base, key)
    if tp is Path:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} = {value!r}: expected a path")
        path = Path(value).expanduser()
        # Relative paths follow the config file, so a copy of the example works from any folder.
        return path if path.is_absolute() else (base / path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r}: expected a whole number")
        if value < 0:
            raise ConfigError(f"{key} = {value!r}: must not be negative")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected a string")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - programming error


def _build(cls: Any, table: dict[str, Any], base: Path, prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if "internal" not in f.metadata}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        where = f"[{prefix}] " if prefix else ""
        raise ConfigError(
            f"{where}unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(fields))}"
        )
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name in table:
            kwargs[name] = _convert(key, table[name], hints[name], base)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key} is missing: expected {_describe(hints[name])}")
    return cls(**kwargs)


def _read_secret(key: str, path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key} = {str(path)!r}: cannot read it ({exc.strerror})") from None


def _resolve_secrets(settings: Settings) -> Settings:
    lines = []
    for i, line in enumerate(settings.lines):
        if line.password_file is not None:
            line = dataclasses.replace(
                line, password=_read_secret(f"lines[{i}].password_file", line.password_file)
            )
        lines.append(line)
    smtp = settings.notify.smtp
    if smtp.password_file is not None:
        smtp = dataclasses.replace(
            smtp, password=_read_secret("notify.smtp.password_file", smtp.password_file)
        )
    notify = dataclasses.replace(settings.notify, smtp=smtp)
    return dataclasses.replace(settings, lines=tuple(lines), notify=notify)


def _check_analogue(where: str, kind: str, pass_behaviour: str) -> None:
    """An analogue line lets a call through by staying silent: nothing else reaches its phones."""
    if kind == "analogue" and pass_behaviour != "ring":
        raise ConfigError(
            f"{where}.pass_behaviour = {pass_behaviour!r}: an analogue line passes a call by "
            "staying silent (the phones on the line ring anyway); set 'ring' or remove it")


def _validate(settings: Settings) -> None:
    if not is_supported_region(settings.home_region):
        raise ConfigError(
            f"home_region = {settings.home_region!r}: expected an ISO country code such as "
            "'FR', 'BE', 'CH', 'GB' or 'US'"
        )
    try:
        zoneinfo.ZoneInfo(settings.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"timezone = {settings.timezone!r}: expected an IANA zone such as 'Europe/Paris'"
        ) from None
    low_high = settings.gateway.rtp_ports.split("-")
    if (
        len(low_high) != 2
        or not all(p.isdigit() for p in low_high)
        or not 1024 <= int(low_high[0]) < int(low_high[1]) <= 65535
    ):
        raise ConfigError(
            f"gateway.rtp_ports = {settings.gateway.rtp_ports!r}: expected 'low-high' "
            "with 1024 <= low < high <= 65535"
        )
    for i, prefix in enumerate(settings.gateway.internal_prefixes):
        if not prefix.strip() or len(prefix) > 20:
            raise ConfigError(f"gateway.internal_prefixes[{i}] = {prefix!r}: expected the start "
                              "of a router's internal number, e.g. '**'")
    if settings.gateway.internal_max_digits > 6:
        raise ConfigError(f"gateway.internal_max_digits = {settings.gateway.internal_max_digits}"
                          ": expected 0 to 6 (a longer number is a real phone number)")
    if settings.gateway.max_calls < 1:
        raise ConfigError("gateway.max_calls = 0: must be at least 1")
    names = set()
    for i, line in enumerate(settings.lines):
        if line.name in names:
            raise ConfigError(f"lines[{i}].name = {line.name!r}: another line has that name")
        names.add(line.name)
        if not line.password:
            raise ConfigError(f"lines[{i}]: set password or password_file")
        if line.pass_behaviour == "redirect" and not line.redirect_to:
            raise ConfigError(f"lines[{i}].redirect_to is missing: pass_behaviour is 'redirect'")
        if not 30 <= line.expires <= 86400:
            raise ConfigError(f"lines[{i}].expires = {line.expires}: expected 30 to 86400")
        _check_analogue(f"lines[{i}]", line.kind, line.pass_behaviour)
    if settings.gateway.pass_behaviour == "redirect" and not settings.gateway.redirect_to:
        raise ConfigError("gateway.redirect_to is missing: pass_behaviour is 'redirect'")
    _check_analogue("gateway", settings.gateway.kind, settings.gateway.pass_behaviour)
    hh_mm = settings.notify.digest_time.split(":")
    if (
        len(hh_mm) != 2
        or not all(p.isdigit() for p in hh_mm)
        or not (0 <= int(hh_mm[0]) < 24 and 0 <= int(hh_mm[1]) < 60)
    ):
        raise ConfigError(
            f"notify.digest_time = {settings.notify.digest_time!r}: expected HH:MM, e.g. '08:00'"
        )
    try:
        if ipaddress.ip_address(settings.web.listen.host).is_unspecified:
            pass  # allowed, but only because the owner wrote it
    except ValueError:
        raise ConfigError(
            f"web.listen = {str(settings.web.listen)!r}: expected an IP address and port"
        ) from None


def load_settings_from_text(text: str, base: Path, source: Path | None = None) -> Settings:
    """Parse TOML text; relative paths resolve against `base`."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}") from None
    settings: Settings = _build(Settings, table, base, "")
    settings = dataclasses.replace(settings, source=source)
    if "data_dir" not in table:
        settings = dataclasses.replace(settings, data_dir=base / "data")
    settings = _resolve_secrets(settings)
    _validate(settings)
    return settings


def load_settings(path: Path | str | None = None) -> Settings:
    """Load the config from `path`, `$RINGFENCE_CONFIG`, or built-in defaults."""
    if path is None:
        env = os.environ.get(CONFIG_ENV)
        path = Path(env) if env else None
    if path is None:
        return load_settings_from_text("", Path.cwd())
    path = Path(path).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror}") from None
    try:
        return load_settings_from_text(text, path.parent, source=path)
    except ConfigError as exc:
        raise ConfigError(f"{path.name}: {exc}") from None
