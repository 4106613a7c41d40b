"""Render every prompt with the real espeak-ng and check the files a call would play."""

from __future__ import annotations

import os
import shutil
import wave
from pathlib import Path

import pytest

from gateway.media import audio
from gateway.prompts import LANGUAGES, PROMPT_NAMES, TONE_PROMPTS
from gateway.prompts.generate import generate, main


def require_espeak() -> None:
    if shutil.which("espeak-ng") is None:
        if os.environ.get("RINGFENCE_REQUIRE_PEERS"):
            pytest.fail("espeak-ng is required (RINGFENCE_REQUIRE_PEERS is set) but not on PATH")
        pytest.skip("espeak-ng not installed (apt install espeak-ng)")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_espeak()
    out = tmp_path_factory.mktemp("prompts")
    written = generate(out)
    assert len(written) == len(PROMPT_NAMES) * len(LANGUAGES)
    return out


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", PROMPT_NAMES)
def test_each_prompt_is_8k_mono_16bit_and_audible(rendered: Path, name: str, language: str) -> None:
    path = rendered / language / f"{name}.wav"
    with wave.open(str(path), "rb") as wav:
        assert wav.getframerate() == 8000
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        seconds = wav.getnframes() / 8000
    assert 0.3 < seconds < 15.0  # short on purpose: long messages read as machines
    pcm = audio.read_wav(path)
    assert audio.rms(pcm) > 1000
    # Ends quietly, so the beep that follows a greeting is heard on its own.
    assert audio.is_silent(pcm[-audio.FRAME_BYTES :], 50)


@pytest.mark.parametrize("language", LANGUAGES)
def test_not_in_service_starts_with_sit(rendered: Path, language: str) -> None:
    pcm = audio.read_wav(rendered / language / "not_in_service.wav")
    offset = 0
    for freq, seconds in audio.SIT_SEGMENTS:
        size = 2 * round(seconds * 8000)
        assert audio.tone_ratio(pcm[offset : offset + size], freq) > 0.9
        offset += size
    # ...followed by speech, not more tone.
    assert audio.rms(pcm[offset + 4000 :]) > 500


def test_tone_prompts_are_the_tones(rendered: Path) -> None:
    assert "sit" in TONE_PROMPTS
    beep = audio.read_wav(rendered / "fr" / "beep.wav")
    assert audio.tone_ratio(beep[: 2 * int(audio.BEEP_SECONDS * 8000)], audio.BEEP_HZ) > 0.9


def test_second_run_skips_up_to_date_files(rendered: Path) -> None:
    assert generate(rendered) == []
    # A file that went missing is rendered again, alone.
    (rendered / "en" / "goodbye.wav").unlink()
    assert generate(rendered) == [rendered / "en" / "goodbye.wav"]


def test_cli_writes_to_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    require_espeak()
    assert main(["--out", str(tmp_path)]) == 0
    assert (tmp_path / "fr" / "spoof_shield.wav").is_file()
    assert "written to" in capsys.readouterr().out


def test_missing_espeak_fails_with_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert main(["--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "espeak-ng not found" in err
    assert "apt install espeak-ng" in err
    # The tones need no espeak-ng and were written before it failed.
    assert (tmp_path / "out" / "en" / "sit.wav").is_file()


def test_speech_is_not_taken_for_dtmf(rendered: Path) -> None:
    # "Talk-off": a caller's voice must not answer the challenge for them. Real speech from
    # every prompt, both languages, through the in-band detector.
    for path in sorted(rendered.glob("*/*.wav")):
        if path.stem in TONE_PROMPTS or path.stem == "not_in_service":
            continue
        assert audio.DtmfDetector().feed(audio.read_wav(path)) == [], path


def test_unwritable_folder_fails_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["--out", str(blocker / "prompts")]) == 2
    assert "cannot write the prompts to" in capsys.readouterr().err
