"""The call writer's journal and status file, in `<data_dir>/journal/`.

`calls.jsonl` holds the events the database could not take yet, one JSON line each
(`gateway.store.events`), appended and fsynced per batch, read back in order and emptied once
all of it is committed. Only one process writes it: `lock` is held (flock) while a writer
has it open, so a second gateway on the same folder cannot interleave lines.

`status.json` is the writer's state (waiting events, dropped events, the last error) for
`ringfence status` and the web UI, which run in other processes and must be able to report
it precisely when the database is the thing that is down. It is rewritten only when the
state changes, and every few seconds while events wait, never per call.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.store.events import Event, EventError, from_line, to_line

log = logging.getLogger(__name__)

JOURNAL_FILE = "calls.jsonl"
REJECTED_FILE = "rejected.jsonl"
STATUS_FILE = "status.json"
LOCK_FILE = "lock"
_READ_BLOCK = 64 * 1024


class JournalBusy(OSError):
    """Another process has the journal open."""


def journal_dir(data_dir: Path) -> Path:
    """Where an installation's journal lives."""
    return data_dir / "journal"


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Journal:
    """Append-only lines of events waiting for the database, read back in order."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.path = folder / JOURNAL_FILE
        self._lock_fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise JournalBusy(exc.errno, f"{folder} is in use by another process") from None
            raise
        created = not self.path.exists()
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            if created:
                _fsync_dir(folder)  # the file's name must survive a power cut too
            self.size = os.fstat(self._fd).st_size
            self._repair_tail()
        except Exception:
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._lock_fd)

    def _repair_tail(self) -> None:
        """Cut a last line a crash left half-written, so the next append starts clean."""
        if self.size == 0:
            return
        tail_start = max(0, self.size - _READ_BLOCK)
        tail = os.pread(self._fd, self.size - tail_start, tail_start)
        if tail.endswith(b"\n"):
            return
        cut = tail.rfind(b"\n")
        keep = tail_start + cut + 1 if cut >= 0 else 0
        if cut < 0 and tail_start > 0:  # one line longer than a block: keep searching back
            keep = self._last_newline_before(tail_start) + 1
        log.warning("journal %s: discarding %d bytes of a line cut short by a crash",
                    self.path, self.size - keep)
        os.ftruncate(self._fd, keep)
        os.fsync(self._fd)
        self.size = keep

    def _last_newline_before(self, offset: int) -> int:
        while offset > 0:
            start = max(0, offset - _READ_BLOCK)
            found = os.pread(self._fd, offset - start, start).rfind(b"\n")
            if found >= 0:
                return start + found
            offset = start
        return -1

    def count_lines(self) -> int:
        """How many events the file holds (counted, for the status after a restart)."""
        count, offset = 0, 0
        while offset < self.size:
            block = os.pread(self._fd, min(_READ_BLOCK * 16, self.size - offset), offset)
            if not block:
                break
            count += block.count(b"\n")
            offset += len(block)
        return count

    def append(self, events: list[Event]) -> int:
        """Append events and fsync; return the new end. On failure nothing is left half-written."""
        data = b"".join(to_line(e) for e in events)
        start = self.size
        try:
            view = memoryview(data)
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
            os.fsync(self._fd)
        except OSError:
            # A full disk may take half a line: cut back to the last whole batch, so what is
            # in the file stays readable (truncating frees space, so this works when full).
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise
        self.size = start + len(data)
        return self.size

    def read(self, offset: int, max_events: int) -> tuple[list[Event], list[bytes], int]:
        """Up to `max_events` events from `offset`: (events, unreadable lines, next offset)."""
        events: list[Event] = []
        bad: list[bytes] = []
        pending = b""
        position = offset
        while len(events) + len(bad) < max_events and position < self.size:
            block = os.pread(self._fd, min(_READ_BLOCK, self.size - position), position)
            if not block:
                break
            position += len(block)
            pending += block
            while len(events) + len(bad) < max_events:
                end = pending.find(b"\n")
                if end < 0:
                    break
                line, pending = pending[:end], pending[end + 1:]
                offset += end + 1
                try:
                    events.append(from_line(line))
                except EventError as exc:
                    log.error("journal %s: unreadable line set aside (%s)", self.path, exc)
                    bad.append(line)
        return events, bad, offset

    def set_aside(self, lines: list[bytes]) -> None:
        """Keep lines this code cannot apply in `rejected.jsonl`, for a person to look at."""
        if not lines:
            return
        with (self.folder / REJECTED_FILE).open("ab") as out:
            out.write(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
            out.flush()
            os.fsync(out.fileno())

    def reset(self) -> None:
        """Empty the file: everything in it is committed."""
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self.size = 0

    def close(self) -> None:
        """Close the file and let another process have the folder."""
        with contextlib.suppress(OSError):
            os.close(self._fd)
        self._release_lock()


# --------------------------------------------------------------------------- status file


@dataclass
class WriterStatus:
    """The writer's state as `ringfence status` and the dashboard show it."""

    state: str = "ok"  # ok | waiting (the database is not taking rows) | stopped
    pid: int = 0
    started_at: str | None = None
    updated_at: str | None = None
    pending: int = 0  # events not in the database yet, in memory and in the journal
    in_journal: int = 0
    waiting_since: str | None = None  # when the database stopped taking rows
    last_error: str | None = None
    journal_error: str | None = None  # set while the journal cannot be written
    dropped_total: int = 0  # lost because neither the database nor the journal took them
    dropped_since_start: int = 0
    last_dropped_at: str | None = None
    rejected_total: int = 0  # events the database refused as invalid, kept in rejected.jsonl


def replace_json(path: Path, value: object) -> None:
    """Replace a small JSON file (write, then rename: a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(value, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_status(folder: Path, status: WriterStatus) -> None:
    """Replace the status file."""
    replace_json(folder / STATUS_FILE, asdict(status))


def read_status(folder: Path) -> WriterStatus | None:
    """The last status the writer wrote, or None if there is none (or it is unreadable)."""
    try:
        data = json.loads((folder / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    known = {k: v for k, v in data.items() if k in WriterStatus.__dataclass_fields__}
    try:
        return WriterStatus(**known)
    except TypeError:
        return None


def journal_backlog(folder: Path) -> int:
    """Events in the journal file, counted without taking the lock (for status reports)."""
    try:
        with (folder / JOURNAL_FILE).open("rb") as stream:
            return sum(block.count(b"\n") for block in iter(lambda: stream.read(1 << 20), b""))
    except OSError:
        return 0
