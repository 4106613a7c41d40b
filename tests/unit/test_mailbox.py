"""`Mailbox`: room for messages under the cap and on the disk, shared by simultaneous messages;
fail open when the database cannot say; markers that let a restart save what a crash cut short
(issue 11, items 1-4). On the real store (SQLite) with the book's `DirectWriter`, or a writer
that keeps events to itself to play "not committed yet"."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.call.mailbox import BYTES_PER_SECOND, MIN_ROOM_BYTES, Mailbox, Slot, recordings_dir
from gateway.call.record import CallBook
from gateway.config import Settings
from gateway.media import audio
from gateway.screening.ratelimit import PastCall
from gateway.store.events import Event, new_uid
from gateway.store.models import VoicemailRow
from tests.helpers import TUESDAY_AFTERNOON as NOW
from tests.helpers import Services

VOICE = audio.tone(440.0, 1.0, 0.3)
MIB = 1024 * 1024


class HeldWriter:
    """A writer whose events never reach the database (a crash before the commit)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def new_uid(self) -> str:
        return new_uid()

    def submit(self, event: Event) -> None:
        self.events.append(event)

    def flush(self, timeout: float | None = None) -> bool:
        return False

    def pending_calls(self) -> list[tuple[str, PastCall]]:
        return []

    def add_listener(self, listener: Callable[[Sequence[Event]], None]) -> None:
        pass


def mailbox(service: Services, *, cap_mb: int = 1, free: int = 10**12,
            writer: object | None = None) -> Mailbox:
    settings = service.settings
    return Mailbox(service.store.voicemails, writer or service.book.writer,  # type: ignore[arg-type]
                   cap_bytes=cap_mb * MIB, spool=recordings_dir(settings.data_dir),
                   free=lambda _folder: free)


def reserve(settings: Settings, name: str = "m.wav") -> Path:
    settings.voicemail_dir.mkdir(parents=True, exist_ok=True)
    path = settings.voicemail_dir / name
    path.touch()
    return path


def open_slot(box: Mailbox, settings: Settings, name: str = "m.wav") -> Slot:
    slot = box.open(reserve(settings, name), at=NOW, call_ref=None, number="+33612345678",
                    display_name="Alice\x00")
    assert slot is not None
    return slot


def record(slot: Slot, seconds: float) -> int:
    """Record `seconds` of voice through the slot's claim; return the file size."""
    out = audio.WavStream(slot.path, claim=slot.claim)
    for _ in range(int(seconds * 50)):
        out.write(VOICE[: audio.FRAME_BYTES])
    return out.close()


def rows(service: Services) -> list[VoicemailRow]:
    with service.db.session() as s:
        return list(s.scalars(select(VoicemailRow).order_by(VoicemailRow.id)))


def markers(settings: Settings) -> list[str]:
    folder = recordings_dir(settings.data_dir)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_saved_message_is_stored_and_its_marker_goes_once_committed(
        service: Services) -> None:
    box = mailbox(service)
    slot = open_slot(box, service.settings)
    assert markers(service.settings) == [f"{slot.uid}.json"]
    size = record(slot, 2.0)
    slot.save(2.0, size)
    slot.close()  # nothing more to do
    [row] = rows(service)
    assert (row.uid, row.size_bytes, row.interrupted, row.display_name) == (
        slot.uid, size, False, "Alice\ufffd")
    assert markers(service.settings) == []  # the DirectWriter committed: the listener ran


def test_simultaneous_messages_stop_together_at_the_cap(service: Services) -> None:
    box = mailbox(service, cap_mb=1)
    slots = [open_slot(box, service.settings, f"{i}.wav") for i in range(10)]
    streams = [audio.WavStream(s.path, claim=s.claim) for s in slots]
    for _ in range(20 * 50):  # 20 s each, interleaved packet by packet: 3.2 MB offered
        for out in streams:
            out.write(VOICE[: audio.FRAME_BYTES])
    sizes = [out.close() for out in streams]
    assert all(s.limited for s in slots)
    for slot, size in zip(slots, sizes, strict=True):
        slot.save(size / BYTES_PER_SECOND, size)
    total = sum(r.size_bytes for r in rows(service))
    assert total == sum(p.stat().st_size for p in service.settings.voicemail_dir.iterdir())
    assert MIB - 10 * audio.FRAME_BYTES < total <= MIB  # stops at the cap, never past it


def test_a_full_cap_refuses_the_next_message(service: Services) -> None:
    box = mailbox(service, cap_mb=1)
    service.book.save_voicemail(None, service.settings.voicemail_dir / "old.wav", 60.0,
                                MIB - MIN_ROOM_BYTES + 1)
    assert box.open(reserve(service.settings), at=NOW, call_ref=None, number=None,
                    display_name="") is None


def test_messages_saved_but_not_committed_still_count(service: Services) -> None:
    box = mailbox(service, cap_mb=1, writer=HeldWriter())
    slot = open_slot(box, service.settings)
    size = record(slot, 30.0)
    slot.save(30.0, size)
    assert box.space_left() == MIB - size  # not in the database yet, yet counted


def test_committed_messages_are_counted_once(service: Services) -> None:
    box = mailbox(service, cap_mb=1)
    slot = open_slot(box, service.settings)
    size = record(slot, 10.0)
    slot.save(10.0, size)
    assert box.space_left() == MIB - size
    assert box.space_left() == MIB - size  # the database has it now; the ledger lets it go


def test_the_disk_reserve_refuses_a_message(service: Services) -> None:
    box = mailbox(service, free=4 * MIB + MIN_ROOM_BYTES - 1)
    assert box.open(reserve(service.settings), at=NOW, call_ref=None, number=None,
                    display_name="") is None


def test_the_disk_bounds_a_message_that_started(service: Services) -> None:
    free = [4 * MIB + 8 * BYTES_PER_SECOND]
    box = Mailbox(service.store.voicemails, service.book.writer, cap_bytes=100 * MIB,
                  spool=recordings_dir(service.settings.data_dir), free=lambda _f: free[0])
    slot = open_slot(box, service.settings)
    out = audio.WavStream(slot.path, claim=slot.claim)
    for _ in range(50 * 20):
        written = out.write(VOICE[: audio.FRAME_BYTES])
        free[0] -= written
    assert slot.limited and out.limited
    assert out.close() <= 8 * BYTES_PER_SECOND + audio.WAV_HEADER_BYTES


def test_a_database_that_cannot_say_does_not_stop_a_message(
        service: Services, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    box = mailbox(service, cap_mb=1, writer=HeldWriter())

    def down() -> int:
        raise ConnectionError("server closed the connection (test)")

    monkeypatch.setattr(service.store.voicemails, "bytes_used", down)
    slot = open_slot(box, service.settings)
    assert not slot.capped
    size = record(slot, 90.0)  # past the 1 MiB cap: the cap cannot be checked
    assert size == audio.WAV_HEADER_BYTES + 90 * BYTES_PER_SECOND
    assert "cannot check the voicemail cap" in caplog.text


def test_a_message_not_saved_is_kept_as_interrupted_if_it_holds_a_voice(
        service: Services) -> None:
    box = mailbox(service)
    slot = open_slot(box, service.settings)
    out = audio.WavStream(slot.path, claim=slot.claim)
    out.write(VOICE * 3)
    out.close()
    slot.close()  # an error after recording: nothing called save()
    [row] = rows(service)
    assert row.interrupted and row.duration_s == 3.0
    assert markers(service.settings) == []


def test_a_slot_closed_with_nothing_recorded_leaves_nothing(service: Services) -> None:
    box = mailbox(service)
    slot = open_slot(box, service.settings)
    slot.close()
    assert not slot.path.exists() and markers(service.settings) == [] and rows(service) == []
    assert box.space_left() == MIB  # its grant is given back


def crash_during(service: Services, seconds: float) -> Slot:
    """A message recorded for `seconds` when the process died: no close, no save."""
    box = mailbox(service, writer=HeldWriter())
    slot = open_slot(box, service.settings)
    out = audio.WavStream(slot.path, claim=slot.claim, flush_every_s=2.0)
    for _ in range(int(seconds * 50)):
        out.write(VOICE[: audio.FRAME_BYTES])
    os.close(out._fd)  # killed: the header says what was there at the last flush
    return slot


def test_recover_saves_an_interrupted_message_with_its_real_length(
        service: Services) -> None:
    slot = crash_during(service, 7.3)
    book = CallBook(service.store, service.settings)  # the next start
    assert book.recover_voicemails() == 1
    [row] = rows(service)
    assert row.uid == slot.uid and row.interrupted
    assert row.duration_s == pytest.approx(7.3)
    assert row.size_bytes == slot.path.stat().st_size
    assert len(audio.read_wav(slot.path)) == 73 * BYTES_PER_SECOND // 10  # the header is fixed
    assert (row.number, row.display_name) == ("+33612345678", "Alice\ufffd")
    assert markers(service.settings) == []
    assert book.recover_voicemails() == 0


def test_recover_twice_before_the_commit_stores_one_row(service: Services) -> None:
    slot = crash_during(service, 2.0)
    held = HeldWriter()
    box = mailbox(service, writer=held)
    assert box.recover() == 1  # then killed again before the writer committed
    assert mailbox(service).recover() == 1
    for event in held.events:  # the first start's event reaches the database after all
        service.book.writer.submit(event)
    assert [r.uid for r in rows(service)] == [slot.uid]


def test_recover_keeps_a_finished_message_as_not_interrupted(service: Services) -> None:
    box = mailbox(service, writer=HeldWriter())
    slot = open_slot(box, service.settings)
    size = record(slot, 4.0)
    slot.save(4.0, size)  # killed before the writer committed it
    assert mailbox(service).recover() == 1
    [row] = rows(service)
    assert (row.interrupted, row.duration_s, row.size_bytes) == (False, 4.0, size)


def test_recover_drops_a_recording_without_voice(service: Services) -> None:
    slot = open_slot(mailbox(service, writer=HeldWriter()), service.settings)
    out = audio.WavStream(slot.path)
    out.write(audio.silence(3.0))
    out.close()
    assert mailbox(service).recover() == 0
    assert not slot.path.exists() and markers(service.settings) == [] and rows(service) == []


def test_recover_sets_an_unreadable_marker_aside(service: Services) -> None:
    spool = recordings_dir(service.settings.data_dir)
    spool.mkdir(parents=True)
    (spool / "x.json").write_text("{not json")
    (spool / "y.json").write_text(json.dumps({"v": 1, "uid": "y", "at": NOW.isoformat(),
                                              "path": "../../etc/passwd"}))
    assert mailbox(service).recover() == 0
    assert markers(service.settings) == ["x.bad", "y.bad"]


def test_the_recovered_row_reaches_the_alerts_like_any_other(service: Services) -> None:
    crash_during(service, 2.0)
    book = CallBook(service.store, service.settings)
    woken: list[bool] = []
    book.on_voicemail = lambda: woken.append(True)
    book.recover_voicemails()
    assert woken == [True]


def test_the_disk_is_asked_again_before_the_beep(service: Services) -> None:
    free = [100 * MIB]
    box = Mailbox(service.store.voicemails, service.book.writer, cap_bytes=100 * MIB,
                  spool=recordings_dir(service.settings.data_dir), free=lambda _f: free[0])
    slot = open_slot(box, service.settings)
    assert slot.has_room()
    free[0] = 4 * MIB + MIN_ROOM_BYTES - 1  # another message, a log, a download filled it
    assert not slot.has_room()
