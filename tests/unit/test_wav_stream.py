"""`audio.WavStream`: a recording written as it arrives, a valid WAV at every flush; a stream
cut short (a crash) repaired by `repair_wav`; a limit or a full disk ends it, keeping what was
written."""

from __future__ import annotations

import errno
import os
import wave
from pathlib import Path

import pytest

from gateway.media import audio

SECOND = 2 * audio.SAMPLE_RATE  # bytes of PCM16 in one second
VOICE = audio.tone(440.0, 1.0, 0.3)


def frames_in(path: Path) -> int:
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        return wav.getnframes()


def test_the_file_is_a_valid_wav_up_to_the_last_flush_without_being_closed(
        tmp_path: Path) -> None:
    path = tmp_path / "m.wav"
    out = audio.WavStream(path, flush_every_s=1.0)
    try:
        assert frames_in(path) == 0  # the header is there from the start
        for _ in range(5):
            out.write(VOICE[: SECOND // 2])  # 2.5 s in half-second chunks
        # Flushed at 1 s and 2 s; the last half second is on disk but not yet in the header.
        assert frames_in(path) == 2 * audio.SAMPLE_RATE
        assert path.stat().st_size == audio.WAV_HEADER_BYTES + 5 * SECOND // 2
    finally:
        out.close()
    assert frames_in(path) == 5 * audio.SAMPLE_RATE // 2


def test_repair_counts_everything_on_disk_whatever_the_header_says(tmp_path: Path) -> None:
    path = tmp_path / "m.wav"
    out = audio.WavStream(path, flush_every_s=10.0)
    out.write(VOICE)
    out.write(VOICE[:1001])  # and an odd byte, as a write cut short by a kill would leave
    os.close(out._fd)  # the process dies: nobody closes the stream
    assert frames_in(path) == 0
    assert audio.repair_wav(path) == SECOND + 1000
    assert frames_in(path) == audio.SAMPLE_RATE + 500
    assert audio.read_wav(path)[:SECOND] == VOICE


def test_repair_of_a_file_shorter_than_a_header_empties_it(tmp_path: Path) -> None:
    path = tmp_path / "m.wav"
    path.write_bytes(b"RIFF")
    assert audio.repair_wav(path) == 0 and path.stat().st_size == 0


def test_close_trims_to_what_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "m.wav"
    out = audio.WavStream(path)
    out.write(VOICE)
    assert out.close(keep_bytes=SECOND // 4 + 1) == audio.WAV_HEADER_BYTES + SECOND // 4
    assert frames_in(path) == audio.SAMPLE_RATE // 4  # a quarter second


def test_a_claim_stops_the_stream_at_what_it_grants(tmp_path: Path) -> None:
    left = [3000]

    def claim(count: int) -> int:
        granted = min(count, left[0])
        left[0] -= granted
        return granted

    path = tmp_path / "m.wav"
    out = audio.WavStream(path, claim=claim)
    assert out.write(VOICE[:2000]) == 2000
    assert out.write(VOICE[:2000]) == 1000 and out.limited and out.stopped
    assert out.write(VOICE[:2000]) == 0
    assert out.close() == audio.WAV_HEADER_BYTES + 3000


def test_a_full_disk_ends_the_stream_and_keeps_what_was_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.wav"
    out = audio.WavStream(path)
    real_write = os.write
    room = [SECOND + 11]  # the disk takes one second and 11 bytes more

    def write(fd: int, data: bytes | memoryview) -> int:
        if fd != out._fd:
            return real_write(fd, data)
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        done = real_write(fd, bytes(data[: room[0]]))
        room[0] -= done
        return done

    monkeypatch.setattr(audio.os, "write", write)
    assert out.write(VOICE) == SECOND
    assert out.write(VOICE) == 11  # a short write, then ENOSPC
    assert out.error is not None and out.error.errno == errno.ENOSPC and out.stopped
    monkeypatch.undo()
    assert out.close() == audio.WAV_HEADER_BYTES + SECOND + 10  # whole samples only
    assert audio.read_wav(path)[:SECOND] == VOICE


def test_a_disk_full_from_the_start_raises(tmp_path: Path) -> None:
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    with pytest.raises(OSError):
        audio.WavStream(Path("/dev/full"))


def test_voiced_seconds_counts_loud_frames_only() -> None:
    pcm = audio.silence(1.0) + VOICE + audio.silence(0.5)
    assert audio.voiced_seconds(pcm) == pytest.approx(1.0, abs=0.02)
    assert audio.voiced_seconds(audio.silence(2.0)) == 0.0


def test_the_header_matches_what_the_wave_module_writes(tmp_path: Path) -> None:
    reference = tmp_path / "ref.wav"
    audio.write_wav(reference, VOICE)
    assert reference.read_bytes()[: audio.WAV_HEADER_BYTES] == audio.wav_header(len(VOICE))
