"""Pure audio helpers, and where prompts are looked up."""

from __future__ import annotations

import array
import math
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.config import GatewayConfig, Settings
from gateway.media import audio
from gateway.prompts import (
    LANGUAGES,
    PACKAGED_DIR,
    PROMPT_NAMES,
    TEXTS,
    challenge_prompt_name,
    prompt_path,
)


def speechlike(seconds: float) -> bytes:
    """A mix of tones with a changing envelope, loud and quiet parts."""
    n = int(seconds * audio.SAMPLE_RATE)
    samples = array.array("h")
    for i in range(n):
        t = i / audio.SAMPLE_RATE
        envelope = 0.05 + 0.45 * abs(math.sin(2 * math.pi * 1.5 * t))
        value = envelope * (
            math.sin(2 * math.pi * 220 * t) + 0.5 * math.sin(2 * math.pi * 1330 * t)
        )
        samples.append(round(max(-1.0, min(1.0, value / 1.5)) * 32767))
    return samples.tobytes()


def snr_db(reference: bytes, decoded: bytes) -> float:
    ref = array.array("h", reference)
    out = array.array("h", decoded)
    signal = sum(x * x for x in ref)
    noise = sum((x - y) ** 2 for x, y in zip(ref, out, strict=True))
    return 10 * math.log10(signal / noise)


@pytest.mark.parametrize(
    ("encode", "decode"),
    [(audio.alaw_encode, audio.alaw_decode), (audio.ulaw_encode, audio.ulaw_decode)],
    ids=["alaw", "ulaw"],
)
def test_g711_round_trip_keeps_speech_quality(
    encode: Callable[[bytes], bytes], decode: Callable[[bytes], bytes]
) -> None:
    pcm = speechlike(1.0)
    encoded = encode(pcm)
    assert len(encoded) == len(pcm) // 2
    # G.711 gives about 38 dB SNR on well-levelled speech; 8-bit linear would give far less
    # on the quiet parts.
    assert snr_db(pcm, decode(encoded)) > 30


def test_alaw_and_ulaw_are_really_different_codecs() -> None:
    # The pyVoIP bug was µ-law bytes labelled A-law: the two byte streams must differ and
    # decoding one with the other's decoder must be garbage.
    pcm = audio.tone(1000, 0.2, 0.5)
    alaw = audio.alaw_encode(pcm)
    assert alaw != audio.ulaw_encode(pcm)
    assert snr_db(pcm, audio.ulaw_decode(alaw)) < 5
    assert audio.alaw_encode(bytes(2)) == b"\xd5"  # A-law zero per G.711
    assert audio.ulaw_encode(bytes(2)) == b"\xff"  # µ-law zero per G.711


def test_sit_tone_frequencies_and_durations() -> None:
    pcm = audio.sit_tone()
    assert len(pcm) == 2 * round(0.274 * 8000) * 2 + 2 * round(0.380 * 8000)
    offset = 0
    for freq, seconds in audio.SIT_SEGMENTS:
        size = 2 * round(seconds * 8000)
        segment = pcm[offset : offset + size]
        offset += size
        assert audio.tone_ratio(segment, freq) > 0.9, freq
        for other, _ in audio.SIT_SEGMENTS:
            if other != freq:
                assert audio.tone_ratio(segment, other) < 0.05, (freq, other)
    assert [f for f, _ in audio.SIT_SEGMENTS] == [913.8, 1370.6, 1776.7]


def test_beep_is_a_clean_tone() -> None:
    pcm = audio.beep()
    assert audio.tone_ratio(pcm, audio.BEEP_HZ) > 0.9
    assert audio.tone_ratio(pcm, 1400) < 0.05


def test_goertzel_power_matches_sine_power() -> None:
    pcm = audio.tone(1000, 0.5, 0.5)
    expected = (0.5 * 32767) ** 2 / 2
    assert audio.goertzel_power(pcm, 1000) == pytest.approx(expected, rel=0.05)
    assert audio.goertzel_power(b"", 1000) == 0.0
    assert audio.tone_ratio(audio.silence(0.1), 1000) == 0.0


def test_silence_detection() -> None:
    assert audio.rms(audio.silence(0.02)) == 0
    assert audio.is_silent(audio.silence(0.02), 200)
    assert not audio.is_silent(audio.tone(440, 0.02, 0.1), 200)
    # Low-level line noise stays under the threshold.
    noise = array.array("h", [(-1) ** i * 60 for i in range(160)]).tobytes()
    assert audio.is_silent(noise, 200)
    assert audio.rms(b"\x01") == 0  # an odd trailing byte is ignored, not an error


def test_tone_rejects_bad_amplitude() -> None:
    with pytest.raises(ValueError, match="amplitude"):
        audio.tone(1000, 0.1, 2.0)


def test_normalise() -> None:
    pcm = audio.tone(500, 0.1, 0.1)
    louder = audio.normalise(pcm, 0.5)
    assert max(abs(x) for x in array.array("h", louder)) == pytest.approx(0.5 * 32767, rel=0.01)
    assert audio.normalise(audio.silence(0.1), 0.5) == audio.silence(0.1)


def write_raw_wav(path: Path, frames: bytes, width: int, channels: int, rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(frames)


def test_read_wav_converts_stereo_44k_to_8k_mono(tmp_path: Path) -> None:
    rate = 44100
    n = rate // 2
    stereo = array.array("h")
    for i in range(n):
        v = round(0.4 * 32767 * math.sin(2 * math.pi * 1000 * i / rate))
        stereo.extend((v, v))
    path = tmp_path / "stereo.wav"
    write_raw_wav(path, stereo.tobytes(), 2, 2, rate)
    pcm = audio.read_wav(path)
    assert abs(len(pcm) // 2 - 4000) <= 2
    assert audio.tone_ratio(pcm, 1000) > 0.9


def test_read_wav_converts_8bit_unsigned(tmp_path: Path) -> None:
    samples = bytes(128 + round(100 * math.sin(2 * math.pi * 1000 * i / 8000)) for i in range(800))
    path = tmp_path / "u8.wav"
    write_raw_wav(path, samples, 1, 1, 8000)
    pcm = audio.read_wav(path)
    assert len(pcm) == 1600
    assert audio.tone_ratio(pcm, 1000) > 0.9


def test_read_wav_rejects_non_wav(tmp_path: Path) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(b"not a wav at all")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        audio.read_wav(path)


def test_write_then_read_wav(tmp_path: Path) -> None:
    pcm = audio.tone(700, 0.1)
    audio.write_wav(tmp_path / "t.wav", pcm)
    assert audio.read_wav(tmp_path / "t.wav") == pcm


# ---------------------------------------------------------------------------- prompts


def make_prompt(root: Path, language: str, name: str) -> Path:
    path = root / language / f"{name}.wav"
    path.parent.mkdir(parents=True, exist_ok=True)
    audio.write_wav(path, audio.tone(400, 0.1))
    return path


def test_prompt_lookup_order(tmp_path: Path) -> None:
    owner = tmp_path / "owner"
    data = tmp_path / "data"
    settings = Settings(data_dir=data, gateway=GatewayConfig(prompts_dir=owner))
    name = "zz_lookup_test"  # never generated, so the packaged folder cannot interfere
    with pytest.raises(FileNotFoundError) as caught:
        prompt_path(name, "fr", settings)
    message = str(caught.value)
    assert "'zz_lookup_test' (fr) not found" in message
    assert str(owner / "fr" / f"{name}.wav") in message
    assert str(data / "prompts" / "fr" / f"{name}.wav") in message
    assert str(PACKAGED_DIR / "fr" / f"{name}.wav") in message

    in_data = make_prompt(data / "prompts", "fr", name)
    assert prompt_path(name, "fr", settings) == in_data
    in_owner = make_prompt(owner, "fr", name)
    assert prompt_path(name, "fr", settings) == in_owner
    # Another language is looked up in its own folder.
    with pytest.raises(FileNotFoundError):
        prompt_path(name, "en", settings)


def test_prompt_lookup_without_owner_folder(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    in_data = make_prompt(tmp_path / "prompts", "en", "zz_lookup_test")
    assert prompt_path("zz_lookup_test", "en", settings) == in_data


def test_prompt_lookup_falls_back_to_packaged(tmp_path: Path) -> None:
    packaged = PACKAGED_DIR / "en" / "goodbye.wav"
    if not packaged.is_file():
        pytest.skip("packaged prompts not generated (python -m gateway.prompts.generate)")
    assert prompt_path("goodbye", "en", Settings(data_dir=tmp_path)) == packaged


@pytest.mark.parametrize(
    ("name", "language"), [("../secret", "fr"), ("greeting", "../x"), ("", "fr")]
)
def test_prompt_lookup_refuses_path_tricks(tmp_path: Path, name: str, language: str) -> None:
    with pytest.raises(ValueError, match="invalid prompt"):
        prompt_path(name, language, Settings(data_dir=tmp_path))


def test_every_spoken_prompt_has_both_languages() -> None:
    for name, texts in TEXTS.items():
        assert set(texts) == set(LANGUAGES), name
        for language, text in texts.items():
            assert 0 < len(text) < 220, (name, language)
    assert {"greeting", "challenge", "challenge_passed", "goodbye", "spoof_shield"} <= set(
        PROMPT_NAMES
    )
    assert {"not_in_service", "closed", "sit", "beep"} <= set(PROMPT_NAMES)


def test_read_wav_can_stop_early(tmp_path: Path) -> None:
    audio.write_wav(tmp_path / "long.wav", audio.tone(300, 3.0))
    assert len(audio.read_wav(tmp_path / "long.wav", max_seconds=1.0)) == 2 * 8000


@pytest.mark.parametrize("key", list("0123456789*#ABCD"))
def test_dtmf_detector_finds_every_key_once(key: str) -> None:
    detector = audio.DtmfDetector()
    signal = audio.dtmf_tone(key, 0.1) + audio.silence(0.05)
    # Fed in uneven pieces, as RTP packets and gap-fills would.
    found = (
        detector.feed(signal[:333]) + detector.feed(signal[333:1001]) + detector.feed(signal[1001:])
    )
    assert found == [key]


def test_dtmf_detector_survives_g711_and_sees_repeated_presses() -> None:
    press = audio.dtmf_tone("7", 0.06, 0.1) + audio.silence(0.05)
    through_alaw = audio.alaw_decode(audio.alaw_encode(press + press))
    assert audio.DtmfDetector().feed(through_alaw) == ["7", "7"]


@pytest.mark.parametrize(
    "signal",
    [
        audio.sit_tone(),
        audio.beep(),
        audio.tone(770, 0.5),  # a single DTMF row tone is not a key
        speechlike(1.0),
        audio.silence(0.5),
        audio.dtmf_tone("5", 0.1, 0.002),  # far too quiet
    ],
    ids=["sit", "beep", "row-tone", "speechlike", "silence", "quiet"],
)
def test_dtmf_detector_ignores_what_is_not_a_key(signal: bytes) -> None:
    assert audio.DtmfDetector().feed(signal) == []


def test_dtmf_tone_rejects_other_keys() -> None:
    with pytest.raises(ValueError, match="not a DTMF key"):
        audio.dtmf_tone("x", 0.1)


def test_a_challenge_prompt_for_every_key_the_owner_may_choose() -> None:
    assert challenge_prompt_name("5") == "challenge_5"
    assert challenge_prompt_name("*") == "challenge_star"
    assert challenge_prompt_name("#") == "challenge_hash"
    for key in "0123456789*#":
        name = challenge_prompt_name(key)
        assert name in PROMPT_NAMES
    assert "touche 7." in TEXTS["challenge_7"]["fr"]
    assert "press star." in TEXTS["challenge_star"]["en"]
    assert TEXTS["challenge_5"] == TEXTS["challenge"]
    for bad in ("", "55", "x", "../"):
        with pytest.raises(ValueError, match="no challenge prompt"):
            challenge_prompt_name(bad)


def test_downsampling_filters_what_would_fold_back() -> None:
    rate = 44100

    def level_after_conversion(freq: float) -> int:
        samples = array.array(
            "h", [round(10000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(rate // 2)]
        )
        return audio.rms(audio.to_pcm16_8k_mono(samples.tobytes(), 2, 1, rate))

    speech_band = level_after_conversion(1000)
    # 6 kHz cannot exist at 8 kHz; unfiltered it would reappear at 2 kHz at full level.
    assert level_after_conversion(6000) < speech_band / 2
    assert level_after_conversion(1000) > 0.9 * 10000 / 2**0.5
