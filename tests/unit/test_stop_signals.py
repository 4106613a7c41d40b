"""The gateway's stop signals: SIGTERM always ends the main loop's wait, whenever it comes.

The handler used to call `threading.Event.set()` while the main loop waited on that event;
a signal arriving while `wait` held the event's lock deadlocked the gateway (it never
stopped). The child below waits in the tightest loop it can, so that signals land inside
`wait` as often as possible: with the Event version the first or second signal hung.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable

from gateway.call.signals import StopSignals
from tests.conftest import REPO_ROOT

ROUNDS = 2_000  # each round: install, one SIGTERM, restore
ROUND_TIMEOUT_S = 10.0

CHILD = textwrap.dedent("""
    import sys
    from gateway.call.signals import StopSignals

    for round_ in range(int(sys.argv[1])):
        stop = StopSignals()
        stop.install()
        print("ready", flush=True)
        while not stop.wait(0):
            pass
        print(stop.name, flush=True)
        stop.restore()
""")


def line_reader(process: subprocess.Popen[str]) -> Callable[[str], str]:
    """A function returning the child's next line, or failing on what it did not do in time."""
    assert process.stdout is not None
    stdout = process.stdout
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stdout:
            lines.put(line.strip())

    threading.Thread(target=read, daemon=True).start()

    def next_line(what: str) -> str:
        try:
            return lines.get(timeout=ROUND_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"the child did not {what} within {ROUND_TIMEOUT_S} s") from None

    return next_line


def test_a_stop_signal_ends_the_wait_whenever_it_arrives() -> None:
    process = subprocess.Popen([sys.executable, "-c", CHILD, str(ROUNDS)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, text=True)
    next_line = line_reader(process)
    try:
        for round_ in range(ROUNDS):
            assert next_line(f"install its handler (round {round_})") == "ready"
            process.send_signal(signal.SIGTERM)
            assert next_line(f"see SIGTERM (round {round_})") == "SIGTERM"
        assert process.wait(timeout=ROUND_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_the_handlers_and_wakeup_fd_are_put_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    wakeup_before = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup_before)
    stop = StopSignals()
    stop.install()
    assert signal.getsignal(signal.SIGTERM) is not before
    assert not stop.wait(0)
    stop.restore()
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.set_wakeup_fd(wakeup_before) == wakeup_before  # ours is not left behind
    assert stop.name == ""
