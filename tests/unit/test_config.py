"""Config errors name the key, the value and what is allowed; paths follow the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, HostPort, load_settings, parse_host_port

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_with_every_default(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "config.toml"
    copy.parent.mkdir()
    copy.write_text(EXAMPLE.read_text(encoding="utf-8"), encoding="utf-8")
    settings = load_settings(copy)
    assert settings.home_region == "FR"
    assert settings.timezone == "Europe/Paris"
    # Relative data_dir resolves next to the copied file, not the working directory.
    assert settings.data_dir == copy.parent / "data"
    assert settings.database_url == f"sqlite:///{copy.parent / 'data' / 'ringfence.db'}"
    assert settings.lines == ()
    assert settings.web.listen == HostPort("127.0.0.1", 8080)


def test_environment_variable_selects_the_file(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RINGFENCE_CONFIG", str(write(tmp_path, 'home_region = "BE"\n')))
    assert load_settings().home_region == "BE"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('home_region = "XX"', "home_region = 'XX': expected an ISO country code"),
        ('timezone = "Mars/Olympus"', "timezone = 'Mars/Olympus': expected an IANA zone"),
        ('langauge = "fr"', "unknown key 'langauge'; allowed keys:"),
        ('language = "de"', "language = 'de': expected 'fr' or 'en'"),
        ("[gateway]\nmax_calls = \"four\"", "gateway.max_calls = 'four': expected a whole number"),
        ("[gateway]\nlisten = \"localhost\"", "gateway.listen = 'localhost': expected host:port"),
        ("[gateway]\nlisten = \"1.2.3.4:99999\"", "port '99999' is not a number from 1 to 65535"),
        ("[gateway]\nrtp_ports = \"20-10\"", "gateway.rtp_ports = '20-10': expected 'low-high'"),
        ("[gateway]\nlistne = \"x\"", "[gateway] unknown key 'listne'"),
        ("[web]\nlisten = \"lan:8080\"", "web.listen = 'lan:8080': expected an IP address"),
        ("[notify]\ndigest_time = \"25:00\"", "notify.digest_time = '25:00': expected HH:MM"),
        ("[[lines]]\nname = \"a\"\nregistrar = \"1.2.3.4:5060\"",
         "lines[0].username is missing"),
        ("[[lines]]\nname = \"a\"\nregistrar = \"1.2.3.4:5060\"\nusername = \"u\"",
         "lines[0]: set password or password_file"),
        ("[[lines]]\nname = \"a\"\nregistrar = \"1.2.3.4:5060\"\nusername = \"u\"\n"
         "password = \"p\"\ntransport = \"sctp\"",
         "lines[0].transport = 'sctp': expected 'udp' or 'tcp'"),
        ("[[lines]]\nname = \"a\"\nregistrar = \"1.2.3.4:5060\"\nusername = \"u\"\n"
         "password = \"p\"\npass_behaviour = \"redirect\"",
         "lines[0].redirect_to is missing"),
        ("home_region = ", "not valid TOML"),
        ("[gateway]\ninternal_prefixes = [\"\"]", "gateway.internal_prefixes[0] = '': expected"),
        ("[gateway]\ninternal_max_digits = 10", "gateway.internal_max_digits = 10: expected 0"),
        ("[gateway]\nkind = \"pots\"", "gateway.kind = 'pots': expected 'sip' or 'analogue'"),
        ("[gateway]\nkind = \"analogue\"\npass_behaviour = \"busy\"",
         "gateway.pass_behaviour = 'busy': an analogue line passes a call by staying silent"),
        ("[[lines]]\nname = \"a\"\nregistrar = \"1.2.3.4:5060\"\nusername = \"u\"\n"
         "password = \"p\"\nkind = \"analogue\"\npass_behaviour = \"unavailable\"",
         "lines[0].pass_behaviour = 'unavailable': an analogue line passes"),
    ],
)
def test_errors_name_the_key_and_what_is_allowed(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert message in str(info.value)
    assert str(info.value).startswith("config.toml: ")
    assert "\n" not in str(info.value)


def test_password_file_is_read_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret\n", encoding="utf-8")
    settings = load_settings(write(tmp_path, (
        '[[lines]]\nname = "home"\nregistrar = "192.168.1.1:5060"\nusername = "620"\n'
        'password_file = "secret"\n')))
    assert settings.lines[0].password == "s3cret"
    assert "s3cret" not in repr(settings.lines[0])  # secrets never show in logs


def test_missing_password_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"lines\[0\].password_file = .*cannot read it"):
        load_settings(write(tmp_path, (
            '[[lines]]\nname = "home"\nregistrar = "192.168.1.1:5060"\nusername = "620"\n'
            'password_file = "nope"\n')))


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [("127.0.0.1:5060", HostPort("127.0.0.1", 5060)), ("[::1]:5062", HostPort("::1", 5062)),
     ("sip.example.net:5080", HostPort("sip.example.net", 5080))],
)
def test_host_port(text: str, expected: HostPort) -> None:
    assert parse_host_port(text) == expected


def test_host_port_errors() -> None:
    for bad in ("::1:5060", "[::1:5060", ":5060", "host:abc"):
        with pytest.raises(ValueError):
            parse_host_port(bad)
    assert parse_host_port("host", default_port=5060) == HostPort("host", 5060)
