"""`[gateway] pin_cpu`: the gateway's threads, those started before as well as after, are
kept on one CPU (run in a child process, so that this test process keeps all of its CPUs)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from gateway.config import GatewayConfig

CHILD = """
import os, threading
from gateway.call.process import pin_to_one_cpu
started = threading.Event(); stop = threading.Event()
def early():
    started.set(); stop.wait(10)
before = threading.Thread(target=early); before.start(); started.wait(10)
cpu = pin_to_one_cpu()
seen = {}
after = threading.Thread(target=lambda: seen.update(after=os.sched_getaffinity(0))); after.start()
after.join()
print(cpu, sorted(os.sched_getaffinity(0)), sorted(os.sched_getaffinity(before.native_id)),
      sorted(seen["after"]))
stop.set(); before.join()
"""


def test_pin_cpu_is_off_by_default() -> None:
    assert GatewayConfig().pin_cpu is False


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to choose from")
def test_every_thread_is_kept_on_the_last_cpu() -> None:
    last = max(os.sched_getaffinity(0))
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                         timeout=60, check=True, cwd=os.getcwd()).stdout.split(maxsplit=1)
    assert int(out[0]) == last
    assert out[1].strip() == f"[{last}] [{last}] [{last}]"
