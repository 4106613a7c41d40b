"""`settle_heap`: what the gateway built at start-up is kept out of the garbage collector's
walks (the flood's longest pauses were full collections over it)."""

from __future__ import annotations

import gc

from gateway.call.process import settle_heap


def test_settle_heap_freezes_what_start_up_built() -> None:
    before = gc.get_freeze_count()
    try:
        settle_heap()
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()  # back to the collector, as the test process had it
