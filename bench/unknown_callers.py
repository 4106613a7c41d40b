"""Benchmark screening of unknown callers with many recent unknown calls; prints the numbers.

The published-number story: thousands of strangers in a few minutes. A fresh SQLite database
gets `--calls` unknown calls spread over the last `--minutes` minutes (committed rows, as a
running gateway would have left them), then `--callers` new strangers are screened one after
the other, each call handed to the batched call writer as the gateway does (so the next
screening sees it before it is committed). Prints p50/p99/max of `Screener.screen`.

    python bench/unknown_callers.py [--calls 3000] [--minutes 10] [--callers 2000] [--tree DIR]

`--tree DIR` runs another checkout's code (an older commit, for a before/after).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def stranger(rng: random.Random) -> str:
    """A random French mobile number, national form (no rule or list settles it)."""
    return f"06{rng.randrange(10, 39)}{rng.randrange(10**6):06d}"


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` fall (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main(argv: list[str] | None = None) -> int:
    """Fill the log, screen the strangers, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="unknown calls already logged")
    parser.add_argument("--minutes", type=float, default=10.0, help="...over this many minutes")
    parser.add_argument("--callers", type=int, default=2000, help="strangers screened")
    parser.add_argument("--dir", type=Path, help="folder for the database (default: a temp dir)")
    parser.add_argument("--tree", type=Path, help="the checkout whose code to run")
    args = parser.parse_args(argv)
    tree = (args.tree or Path(__file__).resolve().parent.parent).resolve()
    sys.path.insert(0, str(tree))
    from gateway.call.record import CallBook
    from gateway.call.screen import Screener
    from gateway.config import load_settings_from_text
    from gateway.store import open_store
    from gateway.store.batch import write_batch
    from gateway.store.events import call_logged, new_uid
    from gateway.store.writer import CallWriter

    rng = random.Random(7)
    folder = Path(tempfile.mkdtemp(prefix="rf-unknown-", dir=args.dir))
    try:
        settings = load_settings_from_text("", folder)
        store = open_store(settings)
        now = datetime.now(UTC).replace(microsecond=0)
        span = timedelta(minutes=args.minutes)
        screener = Screener(store, settings)
        events = []
        for i in range(args.calls):
            at = now - span + span * (i / max(1, args.calls))
            who = screener.caller(stranger(rng))
            events.append(call_logged(who, screener.evaluate(who, at), uid=new_uid(), at=at,
                                      sip_call_id=f"fill-{i}", line="bench"))
            if len(events) == 500:
                write_batch(store.db, events)
                events = []
        if events:
            write_batch(store.db, events)
        print(f"logged {args.calls:,} unknown calls over {args.minutes:g} minutes "
              f"({tree.name})")

        writer = CallWriter.open(store.db, folder / "data")
        writer.start()
        screener = Screener(store, settings, writer)
        book = CallBook(store, settings, writer)
        timings: list[float] = []
        cpu: list[float] = []
        steps: dict[str, int] = {}
        for i in range(args.callers):
            who = screener.caller(stranger(rng))
            at = now + timedelta(milliseconds=50 * i)
            started, started_cpu = time.perf_counter(), time.thread_time()
            decision = screener.screen(who, at)
            timings.append((time.perf_counter() - started) * 1000)
            cpu.append((time.thread_time() - started_cpu) * 1000)
            steps[decision.step.value] = steps.get(decision.step.value, 0) + 1
            book.record_call(who, decision, at=at, sip_call_id=f"bench-{i}", line="bench")
        writer.flush(30)
        writer.stop()
        print(f"screen, {len(timings):,} strangers: p50 {percentile(timings, 0.5):.3f} ms, "
              f"p99 {percentile(timings, 0.99):.3f} ms, max {max(timings):.3f} ms, "
              f"mean {statistics.fmean(timings):.3f} ms")
        print(f"  CPU time of the screening thread: p50 {percentile(cpu, 0.5):.3f} ms, "
              f"p99 {percentile(cpu, 0.99):.3f} ms")
        print(f"decisions by step: {dict(sorted(steps.items()))}; load average "
              f"{os.getloadavg()[0]:.1f}")
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
