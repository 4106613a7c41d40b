"""Pure parts of the web UI: vCard reader, WAV check, SVG chart, CLI commands (the catalogs:
tests/unit/test_catalogs.py)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.cli import main
from gateway.config import Settings
from gateway.feeds.vcard import parse_vcards
from gateway.store.calls import category
from tests.helpers import Services
from tests.web.support import wav_bytes
from web.charts import bar_chart
from web.security import API_TOKEN_KEY, check_api_token, check_password
from web.wav import WavError, check_pcm_wav

WEB = Path(__file__).resolve().parents[2] / "web"


def test_vcard_folded_lines_groups_params_escapes_and_names() -> None:
    text = ("\ufeffBEGIN:VCARD\nVERSION:3.0\nN:Dupont;Jean\\, fils;;;\nitem1.TEL;type=WORK:01 \n"
            "\t23 45 67 89\nTEL;TYPE=\"cell,voice\":+33 6 12 34 56 78\nEND:VCARD\n"
            "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Zoé\r\nTEL;VALUE=uri:tel:+44-20-7946-0000;ext=1\r\n"
            "END:VCARD\r\nstray line\nBEGIN:VCARD\nFN:Nobody\nEND:VCARD\n")
    cards = parse_vcards(text)
    assert [c.name for c in cards] == ["Jean, fils Dupont", "Zoé"]
    assert cards[0].numbers == ["01 23 45 67 89", "+33 6 12 34 56 78"]
    assert cards[1].numbers == ["+44-20-7946-0000"]
    assert cards[0].line == 1 and cards[1].line == 8


def test_vcard_reader_survives_garbage() -> None:
    assert parse_vcards("") == []
    assert parse_vcards("BEGIN:VCARD\nTEL:0612345678\n") == []  # never ended: dropped
    assert parse_vcards(":::\n\n BEGIN:VCARD") == []


def test_wav_check_accepts_pcm_and_measures_it() -> None:
    assert check_pcm_wav(wav_bytes(0.5)) == pytest.approx(0.5)
    with pytest.raises(WavError, match="compressed"):
        check_pcm_wav(wav_bytes(0.1, fmt=3))
    with pytest.raises(WavError, match="format chunk"):
        check_pcm_wav(b"RIFF\x10\x00\x00\x00WAVEdata" + struct.pack("<I", 2) + b"\0\0")


def test_bar_chart_is_escaped_scaled_svg() -> None:
    svg = str(bar_chart([{"pass": 3, "blocked": 1}, {}], ["<b>", "b"], title="T<i>"))
    assert svg.startswith("<svg") and 'viewBox="0 0 320 160"' in svg
    assert "<b>" not in svg and "&lt;b&gt;" in svg and "T&lt;i&gt;" in svg
    assert svg.count("<rect") == 2 and "style=" not in svg


def test_categories() -> None:
    assert [category(a) for a in ("pass", "reject:603", "announce:sit", "voicemail:spoof_shield",
                                  "challenge")] == ["pass", "blocked", "blocked", "voicemail",
                                                    "challenge"]


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('data_dir = "data"\nlanguage = "en"\n', encoding="utf-8")
    return path


def test_set_password_from_a_file_and_too_short(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    assert main(["--config", str(config), "db", "upgrade"]) == 0
    (tmp_path / "pw").write_text("short\n")
    assert main(["--config", str(config), "set-password", "--password-file",
                 str(tmp_path / "pw")]) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    (tmp_path / "pw").write_text("a long enough password\n")
    assert main(["--config", str(config), "set-password", "--password-file",
                 str(tmp_path / "pw")]) == 0
    from gateway.config import load_settings
    from gateway.store import open_store

    store = open_store(load_settings(config), upgrade=False)
    assert check_password(store, "a long enough password")


def test_set_password_prompts_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    main(["--config", str(config), "db", "upgrade"])
    answers = iter(["first password!", "second password"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert main(["--config", str(config), "set-password"]) == 2
    assert "differ" in capsys.readouterr().err


def test_new_api_token_prints_once_and_stores_a_hash(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    main(["--config", str(config), "db", "upgrade"])
    capsys.readouterr()
    assert main(["--config", str(config), "web", "--new-api-token"]) == 0
    token = capsys.readouterr().out.strip()
    from gateway.config import load_settings
    from gateway.store import open_store

    store = open_store(load_settings(config), upgrade=False)
    assert token.startswith("rf_") and store.runtime.get_private(API_TOKEN_KEY) != token
    assert check_api_token(store, token)


def test_web_settings_stay_out_of_the_screening_settings(
        make_settings: Callable[[str], Settings], service: Services) -> None:
    from web.security import new_api_token, set_password

    set_password(service.store, "long enough password")
    new_api_token(service.store)
    assert not any(k.startswith("web_") for k in service.store.runtime.all())
