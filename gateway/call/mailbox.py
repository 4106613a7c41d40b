"""Messages being recorded: room under the cap and on the disk, and what a crash interrupted.

`Mailbox.open` is asked before the greeting whether a message fits: at least
`MIN_ROOM_BYTES` under `[voicemail] max_total_mb` and on the disk (beyond `DISK_RESERVE_BYTES`,
left for the database and the journal). If so it returns a `Slot`: the message's share of the
cap, granted a block at a time while it is recorded, so that simultaneous messages together
stop at the cap instead of each believing the whole of it is theirs. The cap is what the
database holds plus what this process has granted or saved but not yet committed; when the
database cannot say (it is down), the message is recorded anyway, bounded by `max_seconds`
and the disk, and counted once its row is in (retention trims an overshoot).

Each slot leaves a marker in `<data_dir>/recording/<uid>.json` (which file, whose call, who
called) until its row is committed. On start, `recover` turns every marker left by a crash
into a voicemail: the WAV was written as it arrived (`gateway.media.audio.WavStream`), so its
header is fixed to what is on disk and it is saved as *interrupted*, with its real length.
Saving twice is harmless: the row's `uid` is the marker's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.media import audio
from gateway.store.events import Event, VoicemailSaved, inert
from gateway.store.voicemail import Voicemails, resolve_voicemail_path
from gateway.store.writer import CallWrites

log = logging.getLogger(__name__)

BYTES_PER_SECOND = 2 * audio.SAMPLE_RATE
MIN_ROOM_BYTES = audio.WAV_HEADER_BYTES + 5 * BYTES_PER_SECOND
"""Less room than 5 s of audio (under the cap or on the disk) and the mailbox is full."""
DISK_RESERVE_BYTES = 4 * 1024 * 1024
"""Free disk space messages never take: the database and the call log journal need it."""
GRANT_BYTES = BYTES_PER_SECOND
"""A recording asks for room a second at a time (one lock per second, not per packet)."""
MARKER_VERSION = 1


def recordings_dir(data_dir: Path) -> Path:
    """Where the markers of messages being recorded live."""
    return data_dir / "recording"


def disk_free(folder: Path) -> int:
    """Bytes free for this process on the disk that holds `folder`."""
    return shutil.disk_usage(folder).free


@dataclass
class _Unsettled:
    size: int
    committed: bool = False


class Mailbox:
    """Room for messages and their markers, for one gateway process (see the module doc)."""

    def __init__(self, voicemails: Voicemails, writer: CallWrites, *, cap_bytes: int,
                 spool: Path, free: Callable[[Path], int] = disk_free,
                 disk_reserve: int = DISK_RESERVE_BYTES, min_room: int = MIN_ROOM_BYTES) -> None:
        self.voicemails = voicemails
        self.writer = writer
        self.cap_bytes = cap_bytes
        self.spool = spool
        self.free = free
        self.disk_reserve = disk_reserve
        self.min_room = min_room
        self._lock = threading.Lock()
        self._stored = 0  # what the database held at the last look
        self._granted = 0  # granted to open slots (written or about to be)
        self._unsettled: dict[str, _Unsettled] = {}  # saved here, not yet seen in the database
        writer.add_listener(self.committed)

    @property
    def folder(self) -> Path:
        """The voicemail folder."""
        return self.voicemails.folder

    # ------------------------------------------------------------------ room

    def _disk_left(self) -> int | None:
        try:
            return self.free(self.folder) - self.disk_reserve
        except OSError as exc:  # cannot tell: the writes themselves will say
            log.warning("cannot read the free space of %s: %s", self.folder, exc)
            return None

    def _read_stored(self) -> bool:
        """Look at what the database holds; False when it cannot say."""
        with self._lock:
            seen = [uid for uid, u in self._unsettled.items() if u.committed]
        try:
            stored = self.voicemails.bytes_used()
        except Exception as exc:  # fail open: the message is recorded, counted later
            log.warning("cannot check the voicemail cap (%s: %s); recording anyway, bounded "
                        "by max_seconds", type(exc).__name__, str(exc).splitlines()[0][:200]
                        if str(exc) else "")
            return False
        with self._lock:
            self._stored = stored
            for uid in seen:  # committed before the query began: counted in `stored` now
                self._unsettled.pop(uid, None)
        return True

    def _cap_left(self) -> int:
        """Under the lock: what the cap leaves, counting what is granted and unsettled."""
        unsettled = sum(u.size for u in self._unsettled.values())
        return self.cap_bytes - self._stored - self._granted - unsettled

    def space_left(self) -> int | None:
        """Bytes a new message could take under the cap now (None: the database cannot say)."""
        if not self._read_stored():
            return None
        with self._lock:
            return self._cap_left()

    def open(self, path: Path, *, at: datetime, call_ref: str | None, number: str | None,
             display_name: str) -> Slot | None:
        """Room for a message recorded to `path` (reserved by the caller); None when full."""
        disk = self._disk_left()
        if disk is not None and disk < self.min_room:
            log.warning("voicemail: %d bytes free on the disk of %s (beyond the %d kept for "
                        "the database): the mailbox is full", disk + self.disk_reserve,
                        self.folder, self.disk_reserve)
            return None
        capped = self._read_stored()
        with self._lock:
            if capped and self._cap_left() < self.min_room:
                log.warning("voicemail: the %d MiB cap is reached: the mailbox is full",
                            self.cap_bytes // (1024 * 1024))
                return None
            self._granted += self.min_room
        slot = Slot(self, self.writer.new_uid(), path, at=at, call_ref=call_ref, number=number,
                    display_name=inert(display_name[:256]), capped=capped, granted=self.min_room)
        slot.mark()
        return slot

    def _grant(self, slot: Slot, want: int) -> int:
        """More room for `slot`: up to `want` bytes, fewer at the cap or the disk's reserve."""
        disk = self._disk_left()
        with self._lock:
            give = want
            if slot.capped:
                give = min(give, self._cap_left())
            if disk is not None:
                give = min(give, disk)
            give = max(0, give)
            self._granted += give
        return give

    def _settle(self, slot: Slot, size: int | None) -> None:
        """A slot is done: its grant becomes the file's real size (or nothing)."""
        with self._lock:
            self._granted -= slot.granted
            slot.granted = 0
            if size is not None:
                self._unsettled[slot.uid] = _Unsettled(size)

    def committed(self, events: Sequence[Event]) -> None:
        """The writer committed `events`: saved messages are now counted by the database."""
        for event in events:
            if not isinstance(event, VoicemailSaved):
                continue
            with self._lock:
                unsettled = self._unsettled.get(event.uid)
                if unsettled is not None:
                    unsettled.committed = True
            with contextlib.suppress(OSError):
                self._marker(event.uid).unlink(missing_ok=True)

    # ------------------------------------------------------------------ markers

    def _marker(self, uid: str) -> Path:
        return self.spool / f"{uid}.json"

    def _write_marker(self, uid: str, data: dict[str, Any], *, durable: bool) -> None:
        self.spool.mkdir(parents=True, exist_ok=True)
        target = self._marker(uid)
        partial = target.with_suffix(".tmp")
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(data, ensure_ascii=True).encode("ascii"))
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(partial, target)
        if durable:  # the name must survive a power cut too
            dir_fd = os.open(self.spool, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    # ------------------------------------------------------------------ after a crash

    def recover(self) -> int:
        """Save every message a crash left behind (see the module doc); return how many."""
        if not self.spool.is_dir():
            return 0
        saved = 0
        for marker in sorted(self.spool.glob("*.json")):
            try:
                if self._recover_one(marker):
                    saved += 1
            except Exception:  # one bad marker must not keep the gateway from starting
                log.exception("could not recover the recording of %s; it is kept for the "
                              "next start", marker.name)
        for partial in self.spool.glob("*.tmp"):  # a marker cut short: nothing was recorded
            partial.unlink(missing_ok=True)
        if saved:
            log.warning("%d message(s) interrupted by a crash or stop recovered", saved)
        return saved

    def _recover_one(self, marker: Path) -> bool:
        try:
            data = json.loads(marker.read_text(encoding="ascii"))
            if data.get("v") != MARKER_VERSION:
                raise ValueError(f"marker version {data.get('v')!r}")
            path = resolve_voicemail_path(self.folder, str(data["path"]))
            at = datetime.fromisoformat(str(data["at"]))
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            log.error("voicemail marker %s is unreadable (%s); set aside", marker.name, exc)
            marker.rename(marker.with_suffix(".bad"))
            return False
        uid = str(data.get("uid") or marker.stem)
        if not path.exists():
            marker.unlink()
            return False
        if data.get("finished"):  # recorded to the end; only its row was not committed
            duration, size, interrupted = float(data["duration_s"]), int(data["size_bytes"]), False
        else:
            samples = audio.repair_wav(path)
            pcm = audio.read_wav(path)
            if audio.voiced_seconds(pcm) < audio.MIN_VOICED_SECONDS:
                log.info("recording %s holds no voice; dropped", path.name)
                path.unlink(missing_ok=True)
                marker.unlink()
                return False
            duration = samples / BYTES_PER_SECOND
            size, interrupted = audio.WAV_HEADER_BYTES + samples, True
        log.info("recovering the message %s (%.1f s%s)", path.name, duration,
                 ", interrupted" if interrupted else "")
        with self._lock:
            self._unsettled[uid] = _Unsettled(size)
        self.writer.submit(VoicemailSaved(
            uid, at=at, path=self.voicemails.relative(path), duration_s=duration,
            size_bytes=size, call_uid=data.get("call_uid"), number=data.get("number"),
            display_name=str(data.get("display_name") or ""), interrupted=interrupted))
        return True


class Slot:
    """One message being recorded: its file, its share of the cap, its marker."""

    def __init__(self, mailbox: Mailbox, uid: str, path: Path, *, at: datetime,
                 call_ref: str | None, number: str | None, display_name: str, capped: bool,
                 granted: int) -> None:
        self.mailbox = mailbox
        self.uid = uid
        self.path = path
        self.at = at
        self.call_ref = call_ref
        self.number = number
        self.display_name = display_name
        self.capped = capped  # False: the database could not say what is stored
        self.granted = granted
        self.used = audio.WAV_HEADER_BYTES
        self.limited = False  # the cap or the disk stopped the message
        self.done = False

    def _marker_data(self) -> dict[str, Any]:
        return {"v": MARKER_VERSION, "uid": self.uid, "at": self.at.isoformat(),
                "path": self.mailbox.voicemails.relative(self.path), "call_uid": self.call_ref,
                "number": self.number, "display_name": self.display_name}

    def mark(self) -> None:
        """Leave the marker that lets a restart recover this message."""
        try:
            self.mailbox._write_marker(self.uid, self._marker_data(), durable=True)
        except OSError as exc:  # the message is still recorded; only a crash would lose it
            log.warning("could not write the marker of %s (%s): a crash during this message "
                        "would lose it", self.path.name, exc)

    def has_room(self) -> bool:
        """Whether the disk still takes a short message (it may fill up during the greeting);
        the cap's share was granted when the slot opened."""
        disk = self.mailbox._disk_left()
        return disk is None or disk >= self.mailbox.min_room

    def claim(self, count: int) -> int:
        """Room for `count` more bytes of audio: how many may be written (fewer at a limit)."""
        if self.used + count > self.granted:
            missing = self.used + count - self.granted
            want = -(-missing // GRANT_BYTES) * GRANT_BYTES
            self.granted += self.mailbox._grant(self, want)
        allowed = max(0, min(count, self.granted - self.used))
        if allowed < count:
            self.limited = True
        self.used += allowed
        return allowed

    def save(self, duration_s: float, size_bytes: int, *, interrupted: bool = False) -> str:
        """Hand the message to the writer; its marker goes once the row is committed."""
        self.done = True
        self.mailbox._settle(self, size_bytes)
        data = self._marker_data() | {"finished": True, "duration_s": duration_s,
                                      "size_bytes": size_bytes}
        with contextlib.suppress(OSError):  # the running marker still recovers it
            self.mailbox._write_marker(self.uid, data, durable=False)
        self.mailbox.writer.submit(VoicemailSaved(
            self.uid, at=self.at, path=self.mailbox.voicemails.relative(self.path),
            duration_s=duration_s, size_bytes=size_bytes, call_uid=self.call_ref,
            number=self.number, display_name=self.display_name, interrupted=interrupted))
        return self.uid

    def close(self) -> None:
        """End a message that was not saved: keep what it holds (as interrupted), or drop it."""
        if self.done:
            return
        self.done = True
        try:
            if self.path.exists() and self.path.stat().st_size > audio.WAV_HEADER_BYTES:
                samples = audio.repair_wav(self.path)
                pcm = audio.read_wav(self.path)
                if audio.voiced_seconds(pcm) >= audio.MIN_VOICED_SECONDS:
                    self.done = False
                    self.save(samples / BYTES_PER_SECOND, audio.WAV_HEADER_BYTES + samples,
                              interrupted=True)
                    log.warning("message %s kept as interrupted (%.1f s)", self.path.name,
                                samples / BYTES_PER_SECOND)
                    return
        except (OSError, ValueError) as exc:
            log.error("could not keep the message %s: %s; it is recovered at the next start",
                      self.path.name, exc)
            self.mailbox._settle(self, None)
            return
        self.mailbox._settle(self, None)
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.mailbox._marker(self.uid).unlink(missing_ok=True)
