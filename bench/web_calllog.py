"""Time the call log page on a database of 100,000 calls (Flask test client, in process).

    python bench/web_calllog.py [--calls 100000] [--runs 200]

Prints p50 and p99 server time for the first page, a filtered page (action + date), a number
search and a deep page. In-process timing is the server's own time: no network, no browser.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import insert

from gateway.config import load_settings_from_text
from gateway.store import Store, open_store
from gateway.store.models import CallRow
from web import create_app
from web.security import set_password

ACTIONS = ["pass"] * 6 + ["reject:603"] * 2 + ["voicemail", "announce:sit", "challenge"]


def fill(store: Store, count: int, now: datetime) -> None:
    """Insert `count` calls spread over 60 days, in batches."""
    rng = random.Random(42)
    rows = []
    for i in range(count):
        action = rng.choice(ACTIONS)
        rows.append({
            "at": now - timedelta(seconds=rng.randrange(60 * 86400)),
            "line": "home", "number": f"+336{rng.randrange(10**8):08d}",
            "caller_kind": "number", "display_name": f"Caller {i % 500}",
            "raw_from": "", "action": action, "reason": f"reason for {action}",
            "step": "default", "unknown": True, "burst": False,
        })
        if len(rows) == 5000:
            with store.db.session() as s:
                s.execute(insert(CallRow), rows)
            rows.clear()
    if rows:
        with store.db.session() as s:
            s.execute(insert(CallRow), rows)


def measure(client: object, url: str, runs: int) -> tuple[float, float]:
    """Return p50 and p99 milliseconds of GET `url`."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def main() -> int:
    """Fill a temp database, then time the call log."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings_from_text('language = "en"', Path(folder))
        store = open_store(settings)
        now = datetime.now(UTC)
        started = time.perf_counter()
        fill(store, args.calls, now)
        print(f"filled {args.calls} calls in {time.perf_counter() - started:.1f} s")
        set_password(store, "benchmark password")
        app = create_app(settings, store)
        client = app.test_client()
        with client.session_transaction() as session:
            session["csrf"] = "bench"
        client.post("/login", data={"csrf_token": "bench", "password": "benchmark password"})
        some_number = store.calls.recent(limit=1)[0].number
        day = (now - timedelta(days=3)).astimezone().date().isoformat()
        cases = {
            "first page": "/calls",
            "filtered (action=reject, one day)": f"/calls?action=reject&date={day}",
            "number search": f"/calls?number={some_number}",
            "page 1000 (offset 49,950)": "/calls?page=1000",
            "dashboard (for comparison)": "/",
        }
        client.get("/calls")  # warm up templates and caches
        print(f"{'page':36} {'p50 ms':>8} {'p99 ms':>8}   ({args.runs} runs each)")
        for name, url in cases.items():
            p50, p99 = measure(client, url, args.runs)
            print(f"{name:36} {p50:8.1f} {p99:8.1f}")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
