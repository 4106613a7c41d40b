"""Pure audio helpers for telephony: WAV I/O, G.711, tones, levels and tone detection.

Everything works on *PCM16*: little-endian signed 16-bit mono samples at 8 kHz (the G.711
clock), held in ``bytes``. No sockets, no threads, no numpy (a Raspberry Pi image may not have
it); the sample maths uses the stdlib ``audioop``, which is also what pyVoIP 1.6.8 relies on.
``audioop`` and ``array`` use the host's byte order, so like WAV this assumes a little-endian
host (every Raspberry Pi OS and x86 machine is).

Public API:
    SAMPLE_RATE, FRAME_SAMPLES, FRAME_BYTES
    read_wav(path, max_seconds=None) -> bytes  any PCM WAV → PCM16 8 kHz mono
    write_wav(path, pcm, rate=SAMPLE_RATE)     PCM16 mono → WAV
    WavStream(path, claim=None)                a recording written as it arrives (see there)
    repair_wav(path) -> int                    a WavStream cut short: header fixed to the data
    voiced_seconds(pcm, threshold)             seconds of 20 ms frames louder than threshold
    to_pcm16_8k_mono(frames, width, channels, rate) -> bytes
    alaw_encode / alaw_decode / ulaw_encode / ulaw_decode
    tone(freq_hz, seconds, amplitude) / silence(seconds) / sit_tone() / beep()
    rms(pcm) / is_silent(pcm, threshold) / normalise(pcm, peak)
    goertzel_power(pcm, freq_hz) / tone_ratio(pcm, freq_hz)
    dtmf_tone(key, seconds) / dtmf_key(frame) / DtmfDetector().feed(pcm) -> keys
"""

from __future__ import annotations

import array
import math
import os
import struct
import warnings
import wave
from collections.abc import Callable
from pathlib import Path

with warnings.catch_warnings():
    # audioop is deprecated in 3.11 (removed in 3.13, where the `audioop-lts` wheel brings it
    # back); pyVoIP 1.6.8 needs it anyway, so it costs us nothing extra.
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

SAMPLE_RATE = 8000
"""The G.711 sampling rate; every PCM16 buffer in Ringfence uses it."""
FRAME_SAMPLES = 160
"""Samples in one 20 ms RTP packet."""
FRAME_BYTES = FRAME_SAMPLES * 2
"""Bytes of PCM16 in one 20 ms RTP packet."""

SIT_SEGMENTS: tuple[tuple[float, float], ...] = (
    (913.8, 0.274),
    (1370.6, 0.274),
    (1776.7, 0.380),
)
"""SIT "intercept" (number not in service): (frequency Hz, duration s), played back to back."""

SILENCE_RMS = 200
"""PCM16 RMS under which a 20 ms frame counts as silence (about -44 dBFS; line noise is lower)."""
MIN_VOICED_SECONDS = 0.3
"""A recording with less sound than this is dropped (a cough, a click, a dialer's hang-up)."""
WAV_HEADER_BYTES = 44
"""The canonical PCM WAV header that `write_wav` and `WavStream` write."""

BEEP_HZ = 1000.0
BEEP_SECONDS = 0.4

# Tones sit at about -12 dBFS: clearly audible, far from clipping after G.711.
_TONE_AMPLITUDE = 0.25
# A 5 ms ramp at each end of a tone avoids the click a hard start makes.
_RAMP_SECONDS = 0.005


def to_pcm16_8k_mono(frames: bytes, width: int, channels: int, rate: int) -> bytes:
    """Convert raw PCM frames of any width/channel count/rate to PCM16 8 kHz mono."""
    if width not in (1, 2, 3, 4):
        raise ValueError(f"unsupported sample width {width} bytes")
    if channels < 1:
        raise ValueError(f"invalid channel count {channels}")
    if rate <= 0:
        raise ValueError(f"invalid sample rate {rate}")
    data = frames[: len(frames) - len(frames) % (width * channels)]
    if width == 1:
        # 8-bit WAV is unsigned; audioop works on signed samples.
        data = audioop.bias(data, 1, -128)
    if width != 2:
        data = audioop.lin2lin(data, width, 2)
    if channels == 2:
        data = audioop.tomono(data, 2, 0.5, 0.5)
    elif channels > 2:
        # Rare in practice; keep the first channel rather than guess a mix.
        samples = array.array("h", data)
        data = samples[::channels].tobytes()
    if rate >= 2 * SAMPLE_RATE:
        data = _box_filter(data, rate // SAMPLE_RATE)
    if rate != SAMPLE_RATE:
        data, _ = audioop.ratecv(data, 2, 1, rate, SAMPLE_RATE, None)
    return data


def _box_filter(pcm: bytes, taps: int) -> bytes:
    """Average `taps` neighbouring samples: a cheap low-pass before downsampling."""
    # ratecv only interpolates, so a 6 kHz sibilant in a 44.1 kHz recording would fold back
    # to 2 kHz at full strength. A moving average of rate/8000 samples puts its first null
    # near 8 kHz (about -8 dB at 6 kHz, -1.7 dB at 3 kHz), in C via audioop, no numpy.
    if taps < 2 or len(pcm) < 2 * taps:
        return pcm
    scaled = audioop.mul(pcm, 2, 1.0 / taps)
    total = scaled
    for shift in range(1, taps):
        # Add the signal delayed by `shift` samples (zeros shifted in at the start).
        delayed = bytes(2 * shift) + scaled[: len(scaled) - 2 * shift]
        total = audioop.add(total, delayed, 2)
    return total


def read_wav(path: Path, max_seconds: float | None = None) -> bytes:
    """Read a PCM WAV file (at most `max_seconds` of it) and return PCM16 8 kHz mono."""
    try:
        with wave.open(str(path), "rb") as wav:
            width = wav.getsampwidth()
            channels = wav.getnchannels()
            rate = wav.getframerate()
            count = wav.getnframes()
            if max_seconds is not None:
                # An owner's hour-long file must not be read whole into a Pi's memory.
                count = min(count, int(max_seconds * rate))
            frames = wav.readframes(count)
    except wave.Error as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc})") from exc
    return to_pcm16_8k_mono(frames, width, channels, rate)


def write_wav(path: Path, pcm: bytes, rate: int = SAMPLE_RATE) -> None:
    """Write PCM16 mono samples to a WAV file."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(pcm)


def wav_header(data_bytes: int, rate: int = SAMPLE_RATE) -> bytes:
    """The 44-byte header of a PCM16 mono WAV whose samples take `data_bytes`."""
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + data_bytes, b"WAVE", b"fmt ", 16,
                       1, 1, rate, 2 * rate, 2, 16, b"data", data_bytes)


Claim = Callable[[int], int]
"""Asked before `n` bytes are written: how many of them may be (fewer: a limit is reached)."""


class WavStream:
    """A PCM16 mono 8 kHz WAV written as the audio arrives, a valid WAV at any moment.

    Each `write` goes straight to the file (in the page cache: a killed process loses none of
    it); every `flush_every_s` of audio the header's sizes are rewritten in place, so the file
    plays up to that point even if nobody closes it, and every `sync_every_s` it is fsynced
    (a power cut loses at most that much). `repair_wav` fixes the header of a stream cut short.
    A write the disk refuses (ENOSPC, EIO) ends the stream where the last one left it: what was
    written stays, `error` says why. `claim` (optional) is asked before each write how many
    bytes may go in, e.g. what is left under a cap.
    """

    def __init__(self, path: Path, *, claim: Claim | None = None,
                 flush_every_s: float = 1.0, sync_every_s: float = 10.0) -> None:
        # O_CREAT without O_EXCL: the caller may have reserved the name by creating it empty.
        # 0600: a caller's voice is the owner's only, whatever the umask.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self.path = path
        self.claim = claim
        self.data_bytes = 0
        self.error: OSError | None = None
        self.limited = False  # `claim` refused bytes: a cap was reached
        self._flush_bytes = max(2, int(2 * SAMPLE_RATE * flush_every_s))
        self._sync_bytes = max(2, int(2 * SAMPLE_RATE * sync_every_s))
        self._flushed = 0
        self._synced = 0
        try:
            self._write_all(wav_header(0))
        except OSError:
            os.close(self._fd)
            raise

    @property
    def stopped(self) -> bool:
        """Whether a limit or the disk ended the stream (later writes are ignored)."""
        return self.limited or self.error is not None

    def _write_all(self, data: bytes) -> int:
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(self._fd, view[done:])
        return done

    def write(self, pcm: bytes) -> int:
        """Append samples; return how many bytes went in (fewer once `stopped`)."""
        if self.stopped or not pcm:
            return 0
        allowed = len(pcm) - len(pcm) % 2
        if self.claim is not None:
            granted = self.claim(allowed)
            if granted < allowed:
                self.limited = True
                allowed = max(0, granted - granted % 2)
        written = 0
        try:
            view = memoryview(pcm)[:allowed]
            while written < allowed:
                written += os.write(self._fd, view[written:])
        except OSError as exc:
            self.error = exc
        # A short write on a full disk can stop mid-sample: the header only ever counts whole
        # samples, and `close` cuts the odd byte.
        self.data_bytes += written
        if self.data_bytes - self._flushed >= self._flush_bytes:
            self.flush()
        return written

    def flush(self) -> None:
        """Rewrite the header's sizes for what is written (in place: no new disk block)."""
        data = self.data_bytes - self.data_bytes % 2
        try:
            os.pwrite(self._fd, wav_header(data), 0)
            self._flushed = self.data_bytes
            if self.data_bytes - self._synced >= self._sync_bytes:
                os.fsync(self._fd)
                self._synced = self.data_bytes
        except OSError as exc:
            if self.error is None:
                self.error = exc

    def close(self, keep_bytes: int | None = None) -> int:
        """Cut the samples to `keep_bytes` (all by default), fix the header, fsync, close.

        Returns the file's size. Shrinking and rewriting the header need no free space, so a
        stream stopped by a full disk still closes as a valid WAV.
        """
        data = self.data_bytes if keep_bytes is None else min(keep_bytes, self.data_bytes)
        data -= data % 2
        try:
            os.ftruncate(self._fd, WAV_HEADER_BYTES + data)
            os.pwrite(self._fd, wav_header(data), 0)
            try:
                os.fsync(self._fd)
            except OSError as exc:  # the data is in the page cache; the header is written
                if self.error is None:
                    self.error = exc
        finally:
            os.close(self._fd)
        self.data_bytes = data
        return WAV_HEADER_BYTES + data

    def discard(self) -> None:
        """Close and delete the file."""
        try:
            os.close(self._fd)
        finally:
            self.path.unlink(missing_ok=True)


def repair_wav(path: Path) -> int:
    """Fix the header of a `WavStream` file cut short (a crash); return its sample bytes.

    The samples are whatever the file holds after the header, whatever the header says (it
    lags the data by up to a flush), rounded down to whole samples.
    """
    with path.open("r+b") as out:
        size = out.seek(0, os.SEEK_END)
        if size < WAV_HEADER_BYTES:
            out.truncate(0)
            return 0
        data = size - WAV_HEADER_BYTES
        if data % 2:
            data -= 1
            out.truncate(WAV_HEADER_BYTES + data)
        out.seek(0)
        out.write(wav_header(data))
        out.flush()
        os.fsync(out.fileno())
    return data


def voiced_seconds(pcm: bytes, threshold: int = SILENCE_RMS) -> float:
    """Seconds of audio in 20 ms frames whose level reaches `threshold`."""
    voiced = 0
    for start in range(0, len(pcm) - len(pcm) % 2, FRAME_BYTES):
        frame = pcm[start:start + FRAME_BYTES]
        if rms(frame) >= threshold:
            voiced += len(frame)
    return voiced / (2 * SAMPLE_RATE)


def alaw_encode(pcm: bytes) -> bytes:
    """Encode PCM16 to G.711 A-law (PCMA), one byte per sample."""
    return audioop.lin2alaw(pcm, 2)


def alaw_decode(data: bytes) -> bytes:
    """Decode G.711 A-law (PCMA) to PCM16."""
    return audioop.alaw2lin(data, 2)


def ulaw_encode(pcm: bytes) -> bytes:
    """Encode PCM16 to G.711 µ-law (PCMU), one byte per sample."""
    return audioop.lin2ulaw(pcm, 2)


def ulaw_decode(data: bytes) -> bytes:
    """Decode G.711 µ-law (PCMU) to PCM16."""
    return audioop.ulaw2lin(data, 2)


def silence(seconds: float) -> bytes:
    """Return `seconds` of digital silence as PCM16."""
    return bytes(2 * max(0, round(seconds * SAMPLE_RATE)))


def tone(freq_hz: float, seconds: float, amplitude: float = _TONE_AMPLITUDE) -> bytes:
    """Return a sine tone as PCM16, with short ramps so it starts and stops without a click."""
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"amplitude must be within 0..1, got {amplitude}")
    count = max(0, round(seconds * SAMPLE_RATE))
    ramp = min(round(_RAMP_SECONDS * SAMPLE_RATE), count // 2)
    peak = amplitude * 32767.0
    step = 2.0 * math.pi * freq_hz / SAMPLE_RATE
    samples = array.array("h", bytes(2 * count))
    for i in range(count):
        gain = 1.0
        if ramp and i < ramp:
            gain = i / ramp
        elif ramp and i >= count - ramp:
            gain = (count - 1 - i) / ramp
        samples[i] = round(peak * gain * math.sin(step * i))
    return samples.tobytes()


def sit_tone() -> bytes:
    """Return the SIT "intercept" sequence (913.8, 1370.6, 1776.7 Hz) as PCM16."""
    return b"".join(tone(freq, seconds) for freq, seconds in SIT_SEGMENTS)


def beep() -> bytes:
    """Return the "speak after the tone" beep as PCM16."""
    return tone(BEEP_HZ, BEEP_SECONDS)


def rms(pcm: bytes) -> int:
    """Return the root-mean-square level of PCM16 audio (0..32767)."""
    usable = pcm[: len(pcm) - len(pcm) % 2]
    if not usable:
        return 0
    return int(audioop.rms(usable, 2))


def is_silent(pcm: bytes, threshold: int) -> bool:
    """Tell whether PCM16 audio stays below an RMS `threshold`."""
    return rms(pcm) < threshold


def _samples(pcm: bytes) -> array.array[int]:
    return array.array("h", pcm[: len(pcm) - len(pcm) % 2])


def goertzel_power(pcm: bytes, freq_hz: float, rate: int = SAMPLE_RATE) -> float:
    """Return the signal power at `freq_hz` in PCM16 audio (Goertzel), per sample squared."""
    samples = _samples(pcm)
    n = len(samples)
    if n == 0:
        return 0.0
    coeff = 2.0 * math.cos(2.0 * math.pi * freq_hz / rate)
    s_prev = 0.0
    s_prev2 = 0.0
    for x in samples:
        s = x + coeff * s_prev - s_prev2
        s_prev2 = s_prev
        s_prev = s
    power = s_prev2 * s_prev2 + s_prev * s_prev - coeff * s_prev * s_prev2
    # Scale so that a pure sine of amplitude A gives about A²/2, like its mean square.
    return max(0.0, power) * 2.0 / (n * n)


def tone_ratio(pcm: bytes, freq_hz: float, rate: int = SAMPLE_RATE) -> float:
    """Return the share (0..1) of the audio's power that lies at `freq_hz`."""
    samples = _samples(pcm)
    if not samples:
        return 0.0
    total = sum(x * x for x in samples) / len(samples)
    if total == 0:
        return 0.0
    return min(1.0, goertzel_power(pcm, freq_hz, rate) / total)


def normalise(pcm: bytes, peak: float) -> bytes:
    """Scale PCM16 audio so its loudest sample reaches `peak` (0..1) of full scale."""
    usable = pcm[: len(pcm) - len(pcm) % 2]
    current = audioop.max(usable, 2) if usable else 0
    if current == 0:
        return usable
    return audioop.mul(usable, 2, peak * 32767.0 / current)


DTMF_ROWS: tuple[float, ...] = (697.0, 770.0, 852.0, 941.0)
DTMF_COLUMNS: tuple[float, ...] = (1209.0, 1336.0, 1477.0, 1633.0)
_DTMF_KEYS = ("123A", "456B", "789C", "*0#D")
# Each of the two tones must reach about -37 dBFS (phones send -4 to -10 dBm0).
_DTMF_MIN_POWER = 1.0e5
_DTMF_MAX_TWIST = 6.3  # 8 dB between the row and column tone, as ITU-T Q.24 allows
_DTMF_PURITY = 0.7  # share of the frame's power in the two tones: speech is far below
_DTMF_NEIGHBOUR = 0.2  # any other tone of the group must be this much weaker


def dtmf_tone(key: str, seconds: float, amplitude: float = 0.2) -> bytes:
    """Return the two-tone DTMF signal for one key as PCM16."""
    for row, keys in enumerate(_DTMF_KEYS):
        if key in keys:
            column = keys.index(key)
            low = array.array("h", tone(DTMF_ROWS[row], seconds, amplitude))
            high = array.array("h", tone(DTMF_COLUMNS[column], seconds, amplitude))
            return array.array("h", (a + b for a, b in zip(low, high, strict=True))).tobytes()
    raise ValueError(f"not a DTMF key: {key!r}")


def dtmf_key(frame: bytes) -> str | None:
    """Return the DTMF key a short PCM16 frame (about 20 ms) holds, or None."""
    level = rms(frame)
    if level * level < 2 * _DTMF_MIN_POWER:
        return None  # too quiet to hold two tones: skip the costly part
    rows = [goertzel_power(frame, f) for f in DTMF_ROWS]
    columns = [goertzel_power(frame, f) for f in DTMF_COLUMNS]
    row = max(range(4), key=rows.__getitem__)
    column = max(range(4), key=columns.__getitem__)
    low, high = rows[row], columns[column]
    if low < _DTMF_MIN_POWER or high < _DTMF_MIN_POWER:
        return None
    if not 1 / _DTMF_MAX_TWIST <= low / high <= _DTMF_MAX_TWIST:
        return None
    if (low + high) < _DTMF_PURITY * level * level:
        return None
    if any(p > _DTMF_NEIGHBOUR * low for i, p in enumerate(rows) if i != row):
        return None
    if any(p > _DTMF_NEIGHBOUR * high for i, p in enumerate(columns) if i != column):
        return None
    return _DTMF_KEYS[row][column]


class DtmfDetector:
    """Find in-band DTMF key presses in a stream of PCM16 audio, each reported once."""

    def __init__(self) -> None:
        self._pending = b""
        self._key: str | None = None
        self._frames = 0
        self._reported = False

    def feed(self, pcm: bytes) -> list[str]:
        """Add audio; return the keys whose press completed in it (40 ms of steady tone)."""
        data = self._pending + pcm
        keys: list[str] = []
        end = len(data) - len(data) % FRAME_BYTES
        for start in range(0, end, FRAME_BYTES):
            key = dtmf_key(data[start : start + FRAME_BYTES])
            if key != self._key:
                self._key, self._frames, self._reported = key, 0, False
            self._frames += 1
            # Two frames in a row: a speech formant rarely holds two exact tones that long.
            if key is not None and self._frames >= 2 and not self._reported:
                keys.append(key)
                self._reported = True
        self._pending = data[end:]
        return keys
