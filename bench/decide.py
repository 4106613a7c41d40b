"""Benchmark the screening step on a large database; prints measured numbers.

Fills a fresh SQLite database with 1,000,000 block entries (imported from a generated CSV, so
the import is measured too) and 1,000 prefix/glob entries, then screens 10,000 random callers
(load + decide, as the gateway does) and prints p50/p99 latency, throughput and peak RSS.

    python bench/decide.py [--entries 1000000] [--callers 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.call.screen import Screener
from gateway.config import load_settings_from_text
from gateway.store import open_store


def french_number(rng: random.Random) -> str:
    """A random French number in a valid mobile or geographic block, national form."""
    block = rng.choice(["06", "07", "01", "02", "03", "04", "05"])
    if block == "07":
        return f"07{rng.randrange(50, 90)}{rng.randrange(10**6):06d}"
    if block == "06":
        return f"06{rng.randrange(10, 39)}{rng.randrange(10**6):06d}"
    return f"{block}{rng.randrange(10, 99)}{rng.randrange(10**6):06d}"


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` fall."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--patterns", type=int, default=1_000)
    parser.add_argument("--callers", type=int, default=10_000)
    parser.add_argument("--keep", help="keep the database in this folder")
    args = parser.parse_args()
    rng = random.Random(42)
    folder = Path(args.keep or tempfile.mkdtemp(prefix="rf-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        settings = load_settings_from_text("", folder)
        store = open_store(settings)
        screener = Screener(store, settings)

        csv_path = folder / "block.csv"
        blocked: list[str] = []
        with csv_path.open("w", encoding="utf-8") as out:
            for i in range(args.entries):
                number = french_number(rng)
                if i % 100 == 0:
                    blocked.append(number)
                out.write(f"{number},generated {i}\n")
        print(f"generated {args.entries:,} lines ({csv_path.stat().st_size / 1e6:.0f} MB)")

        started = time.perf_counter()
        with csv_path.open(encoding="utf-8", newline="") as stream:
            report = store.list_files.import_csv(stream, "block")
        import_s = time.perf_counter() - started
        print(f"import: {import_s:.1f} s for {args.entries:,} lines ({report.summary()}), "
              f"{args.entries / import_s:,.0f} lines/s")

        for i in range(args.patterns):
            digits = f"{rng.randrange(1, 10)}{rng.randrange(10, 99)}"
            if i % 2:
                store.entries.add("block", f"0{digits}{i % 10}*", label="bench prefix")
            else:
                store.entries.add("block", f"0{digits}? ?{i % 10} ?? ??", label="bench glob")
        print(f"entries: {store.entries.count('block'):,} block entries")

        callers = [rng.choice(blocked) if rng.random() < 0.3 else french_number(rng)
                   for _ in range(args.callers)]
        parsed = [screener.caller(n) for n in callers]
        now = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
        screener.evaluate(parsed[0], now)  # warm the pattern cache, as the first call would

        timings: list[float] = []
        actions: dict[str, int] = {}
        started = time.perf_counter()
        for i, who in enumerate(parsed):
            t0 = time.perf_counter()
            decision = screener.screen(who, now + timedelta(seconds=i))
            timings.append((time.perf_counter() - t0) * 1000)
            actions[str(decision.action)] = actions.get(str(decision.action), 0) + 1
        total = time.perf_counter() - started
        print(f"screen (load + decide, fail-open wrapper), {len(timings):,} callers: "
              f"p50 {percentile(timings, 0.5):.3f} ms, p99 {percentile(timings, 0.99):.3f} ms, "
              f"mean {statistics.fmean(timings):.3f} ms, {len(timings) / total:,.0f} calls/s")

        read_only: list[float] = []
        for i, who in enumerate(parsed):
            t0 = time.perf_counter()
            screener.evaluate(who, now + timedelta(seconds=i))
            read_only.append((time.perf_counter() - t0) * 1000)
        print(f"evaluate (load + decide, no writes): p50 {percentile(read_only, 0.5):.3f} ms, "
              f"p99 {percentile(read_only, 0.99):.3f} ms")
        print(f"decisions: {dict(sorted(actions.items()))}")
        print(f"peak RSS: {peak_rss_mb():.1f} MiB")
        store.close()
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
