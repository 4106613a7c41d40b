"""Benchmark what a rules change costs the next call, and many glob/regex entries; prints it.

A fresh SQLite database gets `--entries` exact block entries (one CSV import) and a few
patterns. Then, `--repeat` times each: change something (a setting, an exact allow entry as an
auto-allow adds it, a glob) and time the next call's screening (`Screener.screen`); then
steady calls. A second phase adds `--patterns` glob and regex entries (half each) and times
calls from random numbers and from numbers that match one of them.

    python bench/rules_change.py [--entries 1000000] [--patterns 10000] [--tree DIR]

`--tree DIR` runs another checkout's code (an older commit, for a before/after), with the
same public calls (`store.entries.add`, `store.runtime.set`, `Screener.screen`).
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

print = functools.partial(print, flush=True)


def mobile(rng: random.Random) -> str:
    """A random French mobile number, national form."""
    return f"06{rng.randrange(10, 39)}{rng.randrange(10**6):06d}"


def pct(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def line(label: str, values: list[float]) -> str:
    """One printed figure: p50, p99 (or max when few), in ms."""
    tail = f"p99 {pct(values, 0.99):7.3f}" if len(values) >= 100 else \
        f"max {max(values):7.3f}"
    return (f"{label:<46} p50 {pct(values, 0.5):7.3f} ms   {tail} ms   "
            f"({len(values)} calls)")


def main(argv: list[str] | None = None) -> int:
    """Build the database, change things, time the calls."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--patterns", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=20, help="changes of each kind")
    parser.add_argument("--calls", type=int, default=2000, help="steady calls per phase")
    parser.add_argument("--tree", type=Path, help="the checkout whose code to run")
    parser.add_argument("--dir", type=Path, help="folder for the database (not tmpfs)")
    args = parser.parse_args(argv)
    tree = (args.tree or Path(__file__).resolve().parent.parent).resolve()
    sys.path.insert(0, str(tree))
    from gateway.call.screen import Screener
    from gateway.config import load_settings_from_text
    from gateway.store import open_store

    rng = random.Random(11)
    folder = Path(tempfile.mkdtemp(prefix="rf-rules-", dir=args.dir))
    try:
        settings = load_settings_from_text("", folder)
        store = open_store(settings)
        screener = Screener(store, settings)
        csv_path = folder / "block.csv"
        with csv_path.open("w", encoding="utf-8") as out:
            for i in range(args.entries):
                out.write(f"07{rng.randrange(50, 90)}{rng.randrange(10**6):06d},bench {i}\n")
        started = time.perf_counter()
        with csv_path.open(encoding="utf-8", newline="") as stream:
            store.list_files.import_csv(stream, "block")
        csv_path.unlink()
        print(f"{args.entries:,} exact block entries imported in "
              f"{time.perf_counter() - started:.1f} s ({tree.name})")
        for i in range(5):
            store.entries.add("block", f"01 ?? ?? ?{i} 99", label="bench glob")
        now = datetime.now(UTC)

        def call(number: str, offset: int = 0) -> float:
            who = screener.caller(number)
            t0 = time.perf_counter()
            screener.screen(who, now + timedelta(milliseconds=offset))
            return (time.perf_counter() - t0) * 1000

        call(mobile(rng))  # the first call of the process loads every cache

        def after(change: Callable[[int], Any]) -> list[float]:
            times = []
            for i in range(args.repeat):
                change(i)
                times.append(call(mobile(rng), i))
            return times

        print(line("first call after a setting changes", after(
            lambda i: store.runtime.set("challenge_digit", str(i % 10)))))
        print(line("first call after an exact allow entry is added", after(
            lambda i: store.entries.add("allow", mobile(rng), label="bench"))))
        print(line("first call after a glob is added", after(
            lambda i: store.entries.add("block", f"02 ?? ?? ?{i % 10} {i:02d}"))))
        print(line("steady calls", [call(mobile(rng), i) for i in range(args.calls)]))

        patterns: list[str] = []
        with store.db.session() as s:  # many patterns at once, as a subscription would
            from gateway.store.models import ListEntryRow

            seen: set[str] = set()
            while len(patterns) < args.patterns:
                i = len(patterns)
                if i % 2:
                    pattern = f"+336{rng.randrange(10, 39)}??{rng.randrange(10**4):04d}"
                    kind = "glob"
                else:
                    pattern = rf"\+337{rng.randrange(50, 90)}\d{{2}}{rng.randrange(10**4):04d}"
                    kind = "regex"
                if pattern in seen:
                    continue
                seen.add(pattern)
                patterns.append(pattern)
                s.add(ListEntryRow(list="block", kind=kind, pattern=pattern, label="bench",
                                   created_at=now))
        store.entries.add("block", "03 ?? ?? ?? 99")  # bumps the versions: a reload
        t0 = time.perf_counter()
        call(mobile(rng))
        print(f"{'first call after loading the patterns':<46} "
              f"{(time.perf_counter() - t0) * 1000:7.1f} ms")
        print(line(f"{args.patterns:,} glob/regex entries: random numbers",
                   [call(mobile(rng), i) for i in range(args.calls)]))

        def matching(i: int) -> str:
            pattern = patterns[i % len(patterns)]
            if pattern.startswith("+"):
                return "0" + pattern[3:].replace("?", "5")
            return "07" + pattern[6:8] + "12" + pattern[-4:]

        print(line(f"{args.patterns:,} glob/regex entries: matching numbers",
                   [call(matching(i), i) for i in range(args.calls)]))
        print(f"load average {os.getloadavg()[0]:.1f}; mean of steady calls "
              f"{statistics.fmean([call(mobile(rng)) for _ in range(200)]):.3f} ms")
        store.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
