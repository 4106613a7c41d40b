"""Time the call log page on a database of 100,000 calls (Flask test client, in process).

    python bench/web_calllog.py [--calls 100000] [--runs 200]

Prints p50 and p99 server time for the first page, a filtered page (action + date), number
searches (whole, partial in the owner's forms, digits, a name), a deep page, the live view's
polls (idle: 304; after a new call: JSON rows) and the dashboard; then one CSV export of the
whole log and a block list search over --entries entries. In-process timing is the server's
own time: no network, no browser.
"""

from __future__ import annotations

import argparse
import random
import re
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
from gateway.store.models import CallRow, ListEntryRow
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


def fill_entries(store: Store, count: int) -> None:
    """Insert `count` exact block entries."""
    rng = random.Random(7)
    rows = [{"list": "block", "kind": "exact", "pattern": f"+337{n:08d}", "label": f"spam {n}",
             "source": "manual", "once": False, "hits": 0,
             "created_at": datetime.now(UTC)} for n in rng.sample(range(10**8), count)]
    with store.db.session() as s:
        for start in range(0, len(rows), 5000):
            s.execute(insert(ListEntryRow), rows[start:start + 5000])


def measure(client: object, url: str, runs: int,
            headers: dict[str, str] | None = None) -> tuple[float, float]:
    """Return p50 and p99 milliseconds of GET `url` (a 200 or a 304)."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url, headers=headers or {})  # type: ignore[attr-defined]
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code in (200, 304), response.status_code
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def main() -> int:
    """Fill a temp database, then time the call log."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--entries", type=int, default=100_000)
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
        national = "0" + some_number[3:]
        cases: dict[str, tuple[str, dict[str, str]]] = {
            "first page": ("/calls", {}),
            "filtered (action=reject, one day)": (f"/calls?action=reject&date={day}", {}),
            "number search": (f"/calls?number={some_number}", {}),
            "partial number (q=06 12)": (f"/calls?q={national[:2]}%20{national[2:4]}", {}),
            "digits anywhere (q=3456)": ("/calls?q=3456", {}),
            "name (q=caller 42)": ("/calls?q=caller%2042", {}),
            "page 1000 (offset 49,950)": ("/calls?page=1000", {}),
            "dashboard (for comparison)": ("/", {}),
        }
        live = client.get("/calls/live?after=0")
        if live.status_code == 200:  # this version has a live view
            last = store.calls.recent(limit=1)[0].id
            etag = live.headers["ETag"]
            cases["live poll, nothing new (304)"] = (f"/calls/live?after={last}",
                                                     {"If-None-Match": etag})
            cases["live poll, 1 new call (JSON)"] = (f"/calls/live?after={last - 1}", {})
            cases["dashboard live poll, idle (304)"] = (
                f"/live/dashboard?after={last}",
                {"If-None-Match": client.get("/live/dashboard").headers["ETag"]})
        client.get("/calls")  # warm up templates and caches
        print(f"{'page':36} {'p50 ms':>8} {'p99 ms':>8}   ({args.runs} runs each)")
        for name, (url, headers) in cases.items():
            p50, p99 = measure(client, url, args.runs, headers)
            print(f"{name:36} {p50:8.1f} {p99:8.1f}")
        started = time.perf_counter()
        export = client.get("/calls/export.csv")
        if export.status_code == 200:
            print(f"CSV export of {args.calls} calls: {time.perf_counter() - started:.1f} s, "
                  f"{len(export.get_data()) / 1e6:.1f} MB")
        fill_entries(store, args.entries)
        entry = store.entries.find("block", limit=1)[0].pattern
        typed = "0" + entry[3:]  # the owner's way, which found nothing before
        for name, url in ((f"block list search ({args.entries} entries, {typed})",
                           f"/lists/block?q={typed}"),
                          ("block list search (a label word)", "/lists/block?q=SPAM%20123")):
            p50, p99 = measure(client, url, max(10, args.runs // 10))
            found = re.search(r">(\d+) entr", client.get(url).get_data(as_text=True))
            print(f"{name:36} {p50:8.1f} {p99:8.1f}   found {found[1] if found else '?'}")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
