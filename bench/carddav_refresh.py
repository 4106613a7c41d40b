"""How long a CardDAV refresh takes and how much memory it needs; print the numbers.

Starts a Radicale server on loopback (the test harness, `tests/peers/radicale.py`), puts an
address book of `--cards` contacts (one or two numbers each, written in several forms) in one
PUT, subscribes a fresh SQLite database to it and refreshes it `--runs` times: wall time of
each refresh (download, parse, replace the entries in one transaction) and of the same
requests without the database, then one more refresh under
tracemalloc for the peak Python memory of a refresh.

    python bench/carddav_refresh.py [--cards 2000] [--runs 3]

Bounded: at most 20,000 cards (the reader's limit) and 10 runs; Radicale is always stopped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from gateway.config import load_settings_from_text  # noqa: E402
from gateway.feeds import subscriptions as subs  # noqa: E402
from gateway.store import open_store  # noqa: E402
from tests.peers.radicale import radicale_server, vcard  # noqa: E402

FORMS = ("06 {a} {b} {c} {d}", "+33 6 {a} {b} {c} {d}", "0033 6.{a}.{b}.{c}.{d}",
         "tel:+33-6-{a}-{b}-{c}-{d}")


def card(i: int) -> str:
    """Contact i: a mobile number in one of several written forms, every third a landline."""
    digits = f"{i:08d}"
    a, b, c, d = digits[0:2], digits[2:4], digits[4:6], digits[6:8]
    numbers = [FORMS[i % len(FORMS)].format(a=a, b=b, c=c, d=d)]
    if i % 3 == 0:
        numbers.append(f"01 {a} {b} {c} {d}")
    return vcard(f"c{i}", f"Contact {i}", *numbers)


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cards", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    cards, runs = min(max(args.cards, 1), 20_000), min(max(args.runs, 1), 10)
    with tempfile.TemporaryDirectory() as tmp, radicale_server() as server:
        secret = Path(tmp) / "password"
        secret.write_text(server.password + "\n", encoding="utf-8")
        book = server.book_url("big")
        started = time.perf_counter()
        status = server.request("PUT", book, "".join(card(i) for i in range(cards)),
                                timeout=600)
        assert status == 201, f"PUT of the address book: HTTP {status}"
        print(f"address book of {cards} cards stored in {time.perf_counter() - started:.1f} s")
        settings = load_settings_from_text('data_dir = "data"\n', Path(tmp))
        store = open_store(settings, upgrade=True)
        sub = subs.add_subscription(store.db, "allow", book, kind="carddav", lan=True,
                                    username=server.user, password_file=str(secret))
        times, fetches = [], []
        account = subs.CardDavAccount(book, server.user, str(secret), True, "bench")
        limits = settings.subscriptions
        for _ in range(runs):
            started = time.perf_counter()
            result = subs.refresh(store.db, settings, sub.id, force=True)
            times.append(time.perf_counter() - started)
            assert result.ok, result.error
            # The same requests without the database: what the server and the reader take.
            started = time.perf_counter()
            subs.fetch_address_book(account, limits.max_mb * 2**20, limits.timeout,
                                    settings.home_region)
            fetches.append(time.perf_counter() - started)
        tracemalloc.start()
        subs.refresh(store.db, settings, sub.id, force=True)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        print(f"refresh: {result.entries} entries from {cards} cards, median "
              f"{statistics.median(times):.2f} s (min {min(times):.2f}, max {max(times):.2f}) "
              f"over {runs} runs; {cards / statistics.median(times):.0f} cards/s")
        print(f"of which the requests, Radicale's answers and the reader (no database): median "
              f"{statistics.median(fetches):.2f} s")
        print(f"peak Python memory during a refresh: {peak / 2**20:.1f} MiB")
        store.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
