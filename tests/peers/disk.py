"""A full disk the test can make: a small tmpfs (needs root) and a file that fills it."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.peers.require import missing_peer


@contextlib.contextmanager
def small_tmpfs(mount_point: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `mount_point` (needs root); always unmounted."""
    if os.geteuid() != 0:
        missing_peer("a full disk is simulated with a small tmpfs, which needs root")
    mount_point.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                              str(mount_point)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        missing_peer(f"cannot mount a tmpfs to fill: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True, check=False)


def fill(folder: Path) -> Path:
    """Write zeros into `folder` until the disk is full; return the file to delete later."""
    filler = folder / "filler"
    block = b"\0" * 65536
    # Unbuffered: a buffered file would raise ENOSPC again when closed, flushing the part of
    # the last block that did not fit (whether it does depends on how full the disk was).
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(block)
                out.flush()
        except OSError:
            pass
    return filler
