"""SIGTERM and SIGINT as a stop request that the gateway's main loop waits for.

A Python signal handler runs in the main thread between two bytecodes, possibly while that
thread holds a lock. The gateway used to call `threading.Event.set()` in its handler while
the main loop slept in `Event.wait(1.0)` on the same event: a signal that came in the few
microseconds when `wait` held the event's own (non-reentrant) lock deadlocked the main
thread, and the gateway never stopped (a CI run killed it after 30 s; a tight loop of
`wait(0)` hangs on the first or second signal). This is the class of bug of
python/cpython#85300 and #126434.

So the handler takes no lock: it only stores the signal's number. What wakes the main loop is
the interpreter's C-level wakeup fd (`signal.set_wakeup_fd`), which it writes the number to
before any Python code runs; the main loop waits on that pipe with `select`.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class StopSignals:
    """Catches SIGTERM/SIGINT from `install()` to `restore()`; `wait()` says whether one came."""

    def __init__(self) -> None:
        self.received: int | None = None  # the first stop signal's number
        self._reader, self._writer = os.pipe()
        os.set_blocking(self._reader, False)
        os.set_blocking(self._writer, False)  # set_wakeup_fd requires it
        self._previous_handlers: dict[int, Handler] = {}
        self._previous_fd = -1
        self._installed = False

    def install(self) -> None:
        """Catch the stop signals (from the main thread, before any other thread starts)."""
        # warn_on_full_buffer: a flood of signals fills the pipe; the first byte is enough.
        self._previous_fd = signal.set_wakeup_fd(self._writer, warn_on_full_buffer=False)
        self._previous_handlers = {sig: signal.signal(sig, self._on_signal)
                                   for sig in STOP_SIGNALS}
        self._installed = True

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        # An assignment and nothing else: no lock, no logging (see the module docstring).
        if self.received is None:
            self.received = signum

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a stop signal; True once one has come."""
        if self.received is None:
            readable, _, _ = select.select([self._reader], [], [], timeout)
            if readable:
                self._drain()
        return self.received is not None

    def _drain(self) -> None:
        # The pipe holds the numbers of the signals that came. The Python handler may not have
        # run yet when select() returns (it runs at the main thread's next check), so the
        # number read here counts as well.
        with contextlib.suppress(BlockingIOError):
            while chunk := os.read(self._reader, 512):
                for number in chunk:
                    if number in STOP_SIGNALS and self.received is None:
                        self.received = number

    @property
    def name(self) -> str:
        """The received signal's name ("SIGTERM"), or "" if none came."""
        return "" if self.received is None else signal.Signals(self.received).name

    def restore(self) -> None:
        """Put back the handlers and the wakeup fd there were before; close the pipe."""
        if self._installed:
            for sig, handler in self._previous_handlers.items():
                signal.signal(sig, handler)
            signal.set_wakeup_fd(self._previous_fd)
            self._installed = False
        for fd in (self._reader, self._writer):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._reader = self._writer = -1
