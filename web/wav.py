"""Check uploaded prompts: a RIFF/WAVE file with PCM audio, small enough for the SD card."""

from __future__ import annotations

import struct

MAX_PROMPT_BYTES = 5 * 1024 * 1024
PROMPT_NAMES = ("greeting", "challenge", "challenge_passed", "goodbye", "spoof_shield",
                "not_in_service", "closed")


class WavError(ValueError):
    """The upload is not a usable WAV file; the message says why."""


def check_pcm_wav(data: bytes) -> float:
    """Validate a PCM WAV file and return its duration in seconds; raise WavError otherwise."""
    if len(data) > MAX_PROMPT_BYTES:
        raise WavError(f"the file is larger than {MAX_PROMPT_BYTES // (1024 * 1024)} MB")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise WavError("the file is not a WAV file (no RIFF/WAVE header)")
    offset = 12
    fmt: tuple[int, int, int, int] | None = None
    while offset + 8 <= len(data):
        chunk_id = data[offset:offset + 4]
        (size,) = struct.unpack("<I", data[offset + 4:offset + 8])
        body = data[offset + 8:offset + 8 + size]
        if chunk_id == b"fmt ":
            if len(body) < 16:
                raise WavError("the WAV format chunk is too short")
            audio_format, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if audio_format == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE
                audio_format = struct.unpack("<H", body[24:26])[0]
            fmt = (audio_format, channels, rate, bits)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavError("the WAV file has audio before its format chunk")
            audio_format, channels, rate, bits = fmt
            if audio_format != 1:
                raise WavError("the WAV file is compressed: save it as PCM (16-bit)")
            if not channels or not rate or not bits:
                raise WavError("the WAV format chunk is invalid")
            return len(body) / (channels * rate * bits / 8)
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    raise WavError("the WAV file has no audio data")
