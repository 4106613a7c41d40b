"""Properties of the voicemail cap shared by simultaneous messages (`gateway.call.mailbox`):
whatever the interleaving of packets, saves, commits and hang-ups, what is stored, recorded
and waiting never passes the cap, and a message that is refused or stopped had no room left."""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.call.mailbox import MIN_ROOM_BYTES, Mailbox, Slot
from gateway.media import audio
from gateway.screening.ratelimit import PastCall
from gateway.store.events import Event, VoicemailSaved, new_uid
from tests.helpers import TUESDAY_AFTERNOON as NOW

CAP = 400_000


class Store:
    """The database's side: rows committed (by uid) when the test says so."""

    def __init__(self, folder: Path, stored: int) -> None:
        self.folder = folder
        self.rows: dict[str, int] = {"old": stored}

    def bytes_used(self) -> int:
        return sum(self.rows.values())

    def relative(self, path: Path) -> str:
        return path.name


class Writer:
    """Holds saved messages until `commit`, then tells the listeners, as the call writer does."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.waiting: list[Event] = []
        self.listeners: list[Callable[[Sequence[Event]], None]] = []

    def new_uid(self) -> str:
        return new_uid()

    def submit(self, event: Event) -> None:
        self.waiting.append(event)

    def commit(self) -> None:
        events, self.waiting = self.waiting, []
        for event in events:
            assert isinstance(event, VoicemailSaved)
            self.store.rows[event.uid] = event.size_bytes
        for listener in self.listeners:
            listener(events)

    def flush(self, timeout: float | None = None) -> bool:
        return True

    def pending_calls(self) -> list[tuple[str, PastCall]]:
        return []

    def add_listener(self, listener: Callable[[Sequence[Event]], None]) -> None:
        self.listeners.append(listener)


# One step: open a message, a packet of n bytes for message i, save message i, a hang-up of
# message i with nothing saved, or the writer committing what waits.
STEPS = st.one_of(
    st.just(("open", 0)),
    st.tuples(st.just("packet"), st.integers(0, 7), st.integers(1, 40_000)),
    st.tuples(st.just("save"), st.integers(0, 7)),
    st.tuples(st.just("drop"), st.integers(0, 7)),
    st.just(("commit", 0)),
)


@settings(max_examples=150, deadline=None)
@given(stored=st.integers(0, CAP), steps=st.lists(STEPS, max_size=60))
def test_stored_recorded_and_waiting_never_pass_the_cap(
        stored: int, steps: list[tuple[object, ...]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = Store(folder, stored)
        writer = Writer(store)
        box = Mailbox(store, writer, cap_bytes=CAP, spool=folder / "spool",  # type: ignore[arg-type]
                      free=lambda _f: 10**12)
        open_slots: list[Slot] = []
        written: dict[str, int] = {}  # bytes each message holds (header included)
        done: set[str] = set()
        for step in steps:
            kind = step[0]
            if kind == "open":
                path = folder / f"{len(written)}.wav"
                path.touch()
                granted = sum(s.granted for s in open_slots)
                waiting = sum(written[uid] for uid in done if uid not in store.rows)
                left = CAP - store.bytes_used() - waiting - granted
                slot = box.open(path, at=NOW, call_ref=None, number=None, display_name="")
                if slot is None:
                    assert left < MIN_ROOM_BYTES  # refused only when a short message won't fit
                    path.unlink()
                else:
                    open_slots.append(slot)
                    written[slot.uid] = audio.WAV_HEADER_BYTES
            elif kind in ("packet", "save", "drop") and open_slots:
                slot = open_slots[int(step[1]) % len(open_slots)]  # type: ignore[call-overload]
                if kind == "packet":
                    written[slot.uid] += slot.claim(int(step[2]))  # type: ignore[call-overload]
                else:
                    open_slots.remove(slot)
                    if kind == "save":
                        slot.save(1.0, written[slot.uid])
                        done.add(slot.uid)
                    else:
                        slot.close()  # an empty file: dropped, its room given back
                        del written[slot.uid]
            elif kind == "commit":
                writer.commit()
            in_flight = sum(written[s.uid] for s in open_slots)
            waiting = sum(written[uid] for uid in done if uid not in store.rows)
            committed_here = sum(store.rows[uid] for uid in done if uid in store.rows)
            assert stored + committed_here + waiting + in_flight <= max(CAP, stored)
