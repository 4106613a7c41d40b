"""What streaming a message to disk costs: bytes written and memory held, then and now.

Before issue 11 a message was held in memory for the whole recording and written once at the
end (a crash lost it); now `audio.WavStream` writes each packet as it arrives, rewrites the
header's sizes every second and fsyncs every 10 s. This records one message of `--seconds`
at the real pace of RTP (20 ms packets) both ways, in a temporary folder under `--dir` (a real
disk: tmpfs counts no `write_bytes`), and prints what /proc/self/io counted and what each
way held in memory.

    python bench/voicemail_writes.py [--seconds 30] [--dir /var/tmp]

Bounded: one message each way, `--seconds` of real time for the streamed one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.media import audio  # noqa: E402

FRAME = audio.tone(440.0, 0.02, 0.3)


def write_bytes() -> int:
    """Bytes this process caused to be sent to the storage layer so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def settle() -> None:
    """Make the kernel write out what is still dirty, so it is counted now."""
    os.sync()


def streamed(path: Path, seconds: float) -> tuple[int, int]:
    path.touch()
    before = write_bytes()
    out = audio.WavStream(path)
    start = time.monotonic()
    for i in range(int(seconds * 50)):
        out.write(FRAME)
        time.sleep(max(0.0, start + (i + 1) * 0.02 - time.monotonic()))
    size = out.close()
    settle()
    return write_bytes() - before, size


def whole(path: Path, seconds: float) -> tuple[int, int]:
    before = write_bytes()
    buffer = bytearray()
    for _ in range(int(seconds * 50)):
        buffer += FRAME  # the old MediaSession.record: everything in memory until the end
    held = len(buffer)
    partial = path.with_name(path.name + ".part")
    audio.write_wav(partial, bytes(buffer))
    os.replace(partial, path)
    settle()
    return write_bytes() - before, held


def main() -> int:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--dir", type=Path, default=Path("/var/tmp"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="ringfence-bench-") as tmp:
        folder = Path(tmp)
        old_written, held = whole(folder / "old.wav", args.seconds)
        new_written, size = streamed(folder / "new.wav", args.seconds)
    print(f"message of {args.seconds:.0f} s: {size:,} B on disk")
    print(f"  written at the end (before): {old_written:,} B written, {held:,} B held in "
          "memory during the call, nothing on disk until it ends")
    print(f"  streamed (now):              {new_written:,} B written, "
          f"{audio.FRAME_BYTES:,} B held (one packet), on disk within a second")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
