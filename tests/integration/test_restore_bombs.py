"""Hostile archives against `ringfence restore` in a subprocess whose memory is bounded.

The web unit runs with MemoryMax=256M: the restoring process here gets 256 MiB of address
space (RLIMIT_AS) and its peak RSS is read back with wait4, so a restore that reads a whole
member into memory fails the test instead of the Pi.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from gateway.config import load_settings
from gateway.ops.backup import backup_to
from gateway.screening.rules import ListName
from tests.helpers import Services
from tests.peers.web import REPO_ROOT, make_config, ringfence

pytestmark = pytest.mark.slow

ADDRESS_SPACE = 256 * 1024 * 1024
PEAK_RSS_LIMIT_MIB = 128  # a plain restore peaks near 70 MiB


class _Repeat(io.RawIOBase):
    """`head`, then `fill` repeated, then `tail`: a huge member without holding it."""

    def __init__(self, head: bytes, fill: bytes, count: int, tail: bytes) -> None:
        self.parts = [(part, n) for part, n in ((head, 1), (fill, count), (tail, 1)) if part]
        self.buffer = b""

    def readable(self) -> bool:
        return True

    def readinto(self, out: bytearray) -> int:  # type: ignore[override]
        while not self.buffer and self.parts:
            chunk, left = self.parts[0]
            take = min(left, max(1, (1 << 20) // len(chunk)))
            self.buffer = chunk * take
            if left > take:
                self.parts[0] = (chunk, left - take)
            else:
                self.parts.pop(0)
        n = min(len(out), len(self.buffer))
        out[:n] = self.buffer[:n]
        self.buffer = self.buffer[n:]
        return n


class _Hashing(io.RawIOBase):
    """A reader that hashes what passes through it."""

    def __init__(self, source: io.BufferedReader) -> None:
        self.source = source
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, out: bytearray) -> int:  # type: ignore[override]
        data = self.source.read(len(out))
        self.digest.update(data)
        out[:len(data)] = data
        return len(data)


def hostile(good: Path, out: Path, name: str, make: tuple[bytes, bytes, int, bytes]) -> Path:
    """`good` with member `name` replaced by a streamed body, its manifest entry made to match.

    The manifest goes last (a restore finds it wherever it is), so the body is made and
    hashed in one pass.
    """
    head, fill, count, tail = make
    size = len(head) + len(fill) * count + len(tail)
    with tarfile.open(good) as src, tarfile.open(out, "w:gz", compresslevel=1) as dst:
        manifest_info, manifest = None, b""
        for info in src.getmembers():
            data = src.extractfile(info)
            assert data is not None
            if info.name == "manifest.json":
                manifest_info, manifest = info, data.read()
            elif info.name != name:
                dst.addfile(info, data)
        assert manifest_info is not None
        if name == "manifest.json":
            manifest_info.size = size
            dst.addfile(manifest_info, io.BufferedReader(_Repeat(*make), 1 << 20))
            return out
        body = _Hashing(io.BufferedReader(_Repeat(*make), 1 << 20))
        info = tarfile.TarInfo(name)
        info.size = size
        dst.addfile(info, io.BufferedReader(body, 1 << 20))
        loaded = json.loads(manifest)
        loaded["files"][name] = {"size": size, "sha256": body.digest.hexdigest()}
        manifest = json.dumps(loaded).encode()
        manifest_info.size = len(manifest)
        dst.addfile(manifest_info, io.BytesIO(manifest))
    return out


# The restoring process sets its own limit and reports its own high-water mark (VmHWM of
# its memory map) at exit: the peak RSS a parent reads from wait4 also counts the pages of
# the parent it was forked from, which is the whole test runner here.
_BOUNDED = """
import atexit, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
def report():
    with open("/proc/self/status") as status:
        peak = next(line for line in status if line.startswith("VmHWM:"))
    sys.stderr.write("\\n" + peak)
atexit.register(report)
from gateway.cli import main
sys.exit(main(sys.argv[1:]))
"""


def bounded_restore(config: Path, archive: Path) -> tuple[int, str, float]:
    """Run `ringfence restore --yes` within RLIMIT_AS; return exit code, stderr, peak RSS MiB."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", _BOUNDED.format(limit=ADDRESS_SPACE), "--config", str(config),
         "restore", str(archive), "--yes"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False)
    err, _, peak = result.stderr.rpartition("\nVmHWM:")
    assert peak, result.stderr
    return result.returncode, err, int(peak.split()[0]) / 1024


@pytest.fixture
def home(tmp_path: Path) -> tuple[Path, Path]:
    """An installation with one entry, and a genuine backup of it."""
    config = make_config(tmp_path / "home")
    assert ringfence(config, "db", "upgrade").returncode == 0
    settings = load_settings(config)
    service = Services.open(settings)
    service.store.entries.add(ListName.BLOCK, "0162123456", label="kept")
    good = tmp_path / "good.tar.gz"
    backup_to(good, settings, db=service.db)
    service.db.dispose()
    return config, good


def test_a_genuine_restore_fits_the_bound(home: tuple[Path, Path]) -> None:
    config, good = home
    code, err, peak = bounded_restore(config, good)
    assert code == 0, err
    assert peak < PEAK_RSS_LIMIT_MIB


def test_a_400_mib_single_line_is_refused_in_bounded_memory(home: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    config, good = home
    head = b'{"id": 1, "list": "block", "kind": "exact", "pattern": "'
    bomb = hostile(good, tmp_path / "bomb.tar.gz", "lists.jsonl",
                   (head, b"0" * 64, (400 << 20) // 64, b'"}\n'))
    assert bomb.stat().st_size < 4 * 1024 * 1024  # what the owner would be sent: a few MB
    code, err, peak = bounded_restore(config, bomb)
    assert code == 2, err
    assert "lists.jsonl line 1 is longer than" in err and "nothing changed" in err
    assert "Traceback" not in err
    assert peak < PEAK_RSS_LIMIT_MIB
    assert ringfence(config, "block", "list").stdout.count("+33162123456") == 1  # untouched


def test_a_deeply_nested_manifest_is_a_clean_refusal(home: tuple[Path, Path],
                                                     tmp_path: Path) -> None:
    config, good = home
    nested = hostile(good, tmp_path / "nested.tar.gz", "manifest.json",
                     (b"[", b"[", 200_000, b""))
    code, err, peak = bounded_restore(config, nested)
    assert code == 2, err
    assert "manifest.json: JSON nested too deeply" in err and "Traceback" not in err
    assert peak < PEAK_RSS_LIMIT_MIB


def test_deep_nesting_inside_a_row_is_a_clean_refusal(home: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    config, good = home
    nested = hostile(good, tmp_path / "row.tar.gz", "rules.jsonl",
                     (b"", b"[", 60_000, b"\n"))
    code, err, _ = bounded_restore(config, nested)
    assert code == 2, err
    assert "rules.jsonl line 1: JSON nested too deeply" in err and "Traceback" not in err
